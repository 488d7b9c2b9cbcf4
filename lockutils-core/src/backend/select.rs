//! Which backend takes an external lock: selection by code, configuration and URL scheme
//! (see the [parent module](super)).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use parking_lot::RwLock;

use super::{ExternalBackend, FileBackend};
use crate::config::{current_config, redact_url, version};
use crate::error::Error;

/// Makes the backend of a URL (called once per distinct URL). The error is the reason, shown
/// in [`Error::Backend`] with the lock name and the redacted URL.
pub type BackendFactory = fn(url: &str) -> Result<&'static dyn ExternalBackend, String>;

/// What the scheme map holds: a registered [`BackendFactory`], or a crate's `backend(url)`
/// installed with [`install_backend`]. Cloned out of the map to run with no lock held.
type Maker = Arc<dyn Fn(&str) -> Result<&'static dyn ExternalBackend, String> + Send + Sync>;

struct State {
    schemes: HashMap<String, Maker>,
    explicit: Option<&'static dyn ExternalBackend>,
    by_url: HashMap<String, &'static dyn ExternalBackend>,
    /// The backend the configuration selected, and the configuration version it was
    /// worked out for.
    resolved: Option<(u64, &'static dyn ExternalBackend)>,
}

static STATE: LazyLock<RwLock<State>> = LazyLock::new(|| {
    let mut schemes: HashMap<String, Maker> = HashMap::new();
    schemes.insert("file".to_owned(), Arc::new(|_| Ok(&FileBackend)));
    RwLock::new(State {
        schemes,
        explicit: None,
        by_url: HashMap::new(),
        resolved: None,
    })
});

/// Registers the backend of URLs with `scheme` (e.g. `"postgres"`, without `://`; compared
/// case-insensitively). A second registration of a scheme replaces the first for URLs not
/// yet used.
pub fn register_backend(scheme: &str, factory: BackendFactory) {
    register_maker(scheme, Arc::new(factory));
}

fn register_maker(scheme: &str, maker: Maker) {
    let mut state = STATE.write();
    state.schemes.insert(scheme.to_ascii_lowercase(), maker);
    state.resolved = None;
}

/// Sets the process-wide external backend from code, over any configured URL; `None` goes
/// back to the configuration (and lock files without one).
pub fn set_external_backend(backend: Option<&'static dyn ExternalBackend>) {
    STATE.write().explicit = backend;
}

/// The backend an external acquire of lock `name` uses when the lock does not name one (see
/// the [module docs](crate::backend)).
pub fn external_backend(name: &str) -> Result<&'static dyn ExternalBackend, Error> {
    {
        let state = STATE.read();
        if let Some(backend) = state.explicit {
            return Ok(backend);
        }
        if let Some((resolved_at, backend)) = state.resolved
            && resolved_at == version()
        {
            return Ok(backend);
        }
    }
    let at = version();
    let url = current_config().backend_url;
    let backend = match url.as_deref().map(str::trim).filter(|u| !u.is_empty()) {
        None => &FileBackend as &'static dyn ExternalBackend,
        Some(url) => backend_of(name, url)?,
    };
    STATE.write().resolved = Some((at, backend));
    Ok(backend)
}

/// The backend of `url`: made by the factory registered for its scheme on first use, then
/// kept (one per distinct URL, for the life of the process). What `backend_url` and
/// `LOCKUTILS_BACKEND_URL` select; for tools such as `lockutils list --backend-url`.
pub fn backend_for_url(url: &str) -> Result<&'static dyn ExternalBackend, Error> {
    backend_of("*", url.trim())
}

/// [`backend_for_url`], with errors naming the lock `name`. The factory runs with no lock
/// held (it may connect, or ask for another URL's backend); if two threads make the same
/// URL's backend at once, the first one stored is kept.
fn backend_of(name: &str, url: &str) -> Result<&'static dyn ExternalBackend, Error> {
    let factory = {
        let state = STATE.read();
        if let Some(backend) = state.by_url.get(url) {
            return Ok(*backend);
        }
        let scheme = url_scheme(url).ok_or_else(|| {
            Error::backend(
                name,
                redact_url(url),
                "the backend URL has no scheme (expected e.g. postgres://user@host/db)",
            )
        })?;
        state.schemes.get(&scheme).cloned().ok_or_else(|| {
            Error::backend(
                name,
                redact_url(url),
                format!(
                    "no external-lock backend is registered for the URL scheme {scheme:?}: add \
                     the backend's crate and call its install() at start-up \
                     (lockutils_postgres::install() for postgres://), or unset backend_url / \
                     LOCKUTILS_BACKEND_URL to use lock files"
                ),
            )
        })?
    };
    let made = factory(url).map_err(|reason| Error::backend(name, redact_url(url), reason))?;
    Ok(*STATE.write().by_url.entry(url.to_owned()).or_insert(made))
}

/// The backends of a backend crate, one per distinct URL, made on first use and kept for the
/// life of the process (each owns its connections): what a crate's `backend(url)` hands out
/// and its `install()` registers (see [`install_backend`]).
///
/// ```
/// # use lockutils_core::{BackendsByUrl, FileBackend};
/// static BACKENDS: BackendsByUrl<FileBackend> = BackendsByUrl::new();
/// let a = BACKENDS.get_or_make("file:///x", |_| Ok(FileBackend))?;
/// let b = BACKENDS.get_or_make("file:///x", |_| unreachable!("made once per URL"))?;
/// assert!(std::ptr::eq(a, b));
/// # Ok::<(), lockutils_core::Error>(())
/// ```
pub struct BackendsByUrl<B: 'static> {
    made: parking_lot::Mutex<Option<HashMap<String, &'static B>>>,
}

impl<B: 'static> BackendsByUrl<B> {
    /// None made yet.
    pub const fn new() -> Self {
        BackendsByUrl {
            made: parking_lot::Mutex::new(None),
        }
    }

    /// The backend of `url`: the one made before, else `make(url)`'s (kept for good). An
    /// error is not kept: the next call tries again.
    pub fn get_or_make(
        &self,
        url: &str,
        make: impl FnOnce(&str) -> Result<B, Error>,
    ) -> Result<&'static B, Error> {
        if let Some(backend) = self.made.lock().as_ref().and_then(|made| made.get(url)) {
            return Ok(backend);
        }
        // Made with no lock held (it may connect, or ask for another backend); if two
        // threads make one URL's backend at once, the first stored is kept and the other
        // dropped.
        let backend = make(url)?;
        let mut made = self.made.lock();
        let made = made.get_or_insert_with(HashMap::new);
        if let Some(first) = made.get(url) {
            return Ok(first);
        }
        let backend: &'static B = Box::leak(Box::new(backend));
        made.insert(url.to_owned(), backend);
        Ok(backend)
    }
}

impl<B: 'static> Default for BackendsByUrl<B> {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers `backend` (a crate's `backend(url)`) for each of `schemes`: what a backend
/// crate's `install()` does. Its errors become the reason [`Error::Backend`] shows with the
/// lock's name and the URL.
pub fn install_backend<B: ExternalBackend + 'static>(
    schemes: &[&str],
    backend: fn(&str) -> Result<&'static B, Error>,
) {
    let maker: Maker = Arc::new(move |url: &str| match backend(url) {
        Ok(made) => Ok(made as &'static dyn ExternalBackend),
        Err(Error::Backend { reason, .. }) => Err(reason),
        Err(other) => Err(other.to_string()),
    });
    for scheme in schemes {
        register_maker(scheme, maker.clone());
    }
}

/// The scheme of `url`, lower-cased: what comes before `:`, if it is a valid scheme.
fn url_scheme(url: &str) -> Option<String> {
    let (scheme, _) = url.split_once(':')?;
    let valid = scheme.chars().next()?.is_ascii_alphabetic()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then(|| scheme.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes() {
        assert_eq!(url_scheme("postgres://x").as_deref(), Some("postgres"));
        assert_eq!(url_scheme("PostgreSQL://x").as_deref(), Some("postgresql"));
        assert_eq!(url_scheme("/var/lock"), None);
        assert_eq!(url_scheme("1x://"), None);
    }

    #[test]
    fn redacts_passwords() {
        assert_eq!(redact_url("postgres://u:p@h/d"), "postgres://u:***@h/d");
        assert_eq!(redact_url("postgres://u:p:q@h"), "postgres://u:***@h");
        assert_eq!(
            redact_url("postgres://h/d?password=p"),
            "postgres://h/d?password=***"
        );
        assert_eq!(
            redact_url("postgresql://u:a@b@h:1/d?x=1&PASSWORD=z"),
            "postgresql://u:***@h:1/d?x=1&PASSWORD=***"
        );
        assert_eq!(
            redact_url("host=h password='a b'"),
            "<connection string, password hidden>"
        );
        assert_eq!(redact_url("host=h user=u"), "host=h user=u");
        // Unescaped separators in the password.
        assert_eq!(redact_url("postgres://u:p/w@h/d"), "postgres://u:***@h/d");
        assert_eq!(redact_url("postgres://u:p?w#x@h/d"), "postgres://u:***@h/d");
        assert_eq!(
            redact_url("postgres://h/d?user=a@b&password=x&sslmode=disable"),
            "postgres://h/d?user=a@b&password=***&sslmode=disable"
        );
    }
}

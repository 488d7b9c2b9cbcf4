//! Selecting the external backend: per lock, from code, by the configured URL's scheme, and
//! the clear failure of a scheme nobody registered. One test, since the selection is
//! process-wide.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use lockutils::{
    Error, ExternalBackend, ExternalCache, ExternalTarget, FileBackend, HeldExternalLock,
    LockConfig, Wait, backend_for_url, configure, lock, register_backend, set_external_backend,
    synchronized,
};

/// A backend that only counts, standing in for a server.
struct Counting {
    acquired: AtomicUsize,
    released: AtomicUsize,
}

impl Counting {
    const fn new() -> Self {
        Self {
            acquired: AtomicUsize::new(0),
            released: AtomicUsize::new(0),
        }
    }

    fn counts(&self) -> (usize, usize) {
        (
            self.acquired.load(Ordering::SeqCst),
            self.released.load(Ordering::SeqCst),
        )
    }
}

impl ExternalBackend for Counting {
    fn acquire(
        &self,
        target: &ExternalTarget<'_>,
        cache: &mut ExternalCache,
        _wait: Wait,
    ) -> Result<(), Error> {
        *cache.get_or_insert_with(String::new) = target.name.to_owned();
        self.acquired.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn release(&self, _name: &str, cache: &mut ExternalCache) -> Result<(), Error> {
        cache.get_or_insert_with(String::new).clear();
        self.released.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn holds(&self, target: &ExternalTarget<'_>, cache: &mut ExternalCache) -> Result<bool, Error> {
        Ok(*cache.get_or_insert_with(String::new) == target.name)
    }

    fn fencing_token(&self, _cache: &mut ExternalCache) -> Option<i64> {
        Some(7)
    }

    fn list_held(&self, prefix: Option<&str>) -> Result<Vec<HeldExternalLock>, Error> {
        let all = [
            HeldExternalLock::new("app-a").with_expires_in(Duration::from_secs(5)),
            HeldExternalLock::new("other").with_detail("lease 1"),
        ];
        Ok(all
            .into_iter()
            .filter(|l| prefix.is_none_or(|p| l.name.starts_with(p)))
            .collect())
    }
}

static BY_URL: Counting = Counting::new();
static FROM_CODE: Counting = Counting::new();

#[synchronized("by-config", external = true)]
fn synchronized_site() -> Result<(), Error> {
    Ok(())
}

fn with_url(url: &str, dir: &std::path::Path) {
    configure(LockConfig {
        lock_path: Some(dir.to_owned()),
        backend_url: Some(url.to_owned()),
        ..LockConfig::default()
    });
}

#[test]
fn the_backend_comes_from_the_lock_then_code_then_the_url_then_files() {
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str| dir.path().join(name);

    // Nothing configured: lock files.
    configure(LockConfig {
        lock_path: Some(dir.path().to_owned()),
        ..LockConfig::default()
    });
    let guard = lock("files").external(true).acquire().unwrap();
    assert!(file("files").exists());
    assert_eq!(guard.fencing_token(), None);
    assert!(guard.is_external_held().unwrap());
    drop(guard);

    // A scheme nobody registered: a clear error, no file, nothing left held.
    with_url("memory://app:hunter2@store/locks", dir.path());
    let err = lock("unregistered").external(true).acquire().unwrap_err();
    let text = err.to_string();
    assert!(matches!(err, Error::Backend { .. }), "{text}");
    assert!(
        text.starts_with("lock unregistered (memory://app:***@store/locks): "),
        "{text}"
    );
    assert!(text.contains("no external-lock backend is registered for the URL scheme \"memory\""));
    assert!(text.contains("install()"), "{text}");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!file("unregistered").exists());
    assert!(lock("unregistered").blocking(false).acquire().is_ok());
    let err = synchronized_site().unwrap_err();
    assert!(matches!(err, Error::Backend { .. }), "{err}");

    // Registered: the URL's backend, with no change at the lock sites.
    register_backend("memory", |_url| Ok(&BY_URL));
    let guard = lock("by-config").external(true).acquire().unwrap();
    assert!(guard.is_external());
    assert_eq!(guard.fencing_token(), Some(7));
    assert_eq!(BY_URL.counts(), (1, 0));
    drop(guard);
    assert_eq!(BY_URL.counts(), (1, 1));
    synchronized_site().unwrap();
    assert_eq!(BY_URL.counts(), (2, 2));
    assert!(!file("by-config").exists());

    // The backend of a URL, for tools: the same one, listing what its server holds.
    let backend = backend_for_url("memory://app:hunter2@store/locks").unwrap();
    let held = backend.list_held(Some("app-")).unwrap();
    assert_eq!(
        held,
        [HeldExternalLock::new("app-a").with_expires_in(Duration::from_secs(5))]
    );
    assert_eq!(backend.list_held(None).unwrap().len(), 2);
    let Err(err) = backend_for_url("nosuch://u:hunter2@h") else {
        panic!("a scheme nobody registered has no backend");
    };
    assert!(matches!(err, Error::Backend { .. }), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    // A factory may ask for another URL's backend (a backend that wraps another): no lock is
    // held while it runs, so this does not deadlock.
    register_backend("wrap", |_url| {
        backend_for_url("memory://app:hunter2@store/locks").map_err(|e| e.to_string())
    });
    let wrapped = backend_for_url("wrap://outer").unwrap();
    assert!(std::ptr::addr_eq(wrapped, &BY_URL as &dyn ExternalBackend));

    // What a backend crate's install() does: its backend(url) registered for its schemes;
    // its errors are the reason the lock's error gives.
    fn counted(url: &str) -> Result<&'static Counting, Error> {
        if url.contains("bad") {
            Err(Error::backend("*", url, "refused: a bad URL"))
        } else {
            Ok(&FROM_CODE)
        }
    }
    lockutils::install_backend(&["counted", "counted+tls"], counted);
    let good = backend_for_url("counted+tls://good").unwrap();
    assert!(std::ptr::addr_eq(good, &FROM_CODE as &dyn ExternalBackend));
    let Err(err) = backend_for_url("counted://bad") else {
        panic!("a refused URL has no backend");
    };
    assert!(err.to_string().ends_with("refused: a bad URL"), "{err}");
    // A backend that cannot list says so.
    let err = FileBackend.list_held(None).unwrap_err();
    assert!(err.to_string().contains("cannot list"), "{err}");

    // A nested fair lock keeps the outer one's external lock; another backend is refused.
    let outer = lock("nested").fair(true).external(true).acquire().unwrap();
    let inner = lock("nested").fair(true).external(true).acquire().unwrap();
    assert_eq!(BY_URL.counts(), (3, 2));
    let err = lock("nested")
        .fair(true)
        .external(true)
        .backend(&FileBackend)
        .acquire()
        .unwrap_err();
    assert!(matches!(err, Error::InvalidOptions { .. }), "{err}");
    drop(inner);
    assert_eq!(BY_URL.counts(), (3, 2));
    drop(outer);
    assert_eq!(BY_URL.counts(), (3, 3));

    // A backend that cannot be awaited says so.
    let err =
        futures::executor::block_on(lock("awaited").external(true).acquire_async()).unwrap_err();
    assert!(err.to_string().contains("cannot be awaited"), "{err}");
    assert_eq!(BY_URL.counts(), (3, 3));

    // The lock's own backend wins over the URL.
    drop(
        lock("own")
            .external(true)
            .backend(&FileBackend)
            .acquire()
            .unwrap(),
    );
    assert!(file("own").exists());

    // The backend set from code wins over the URL, until unset.
    set_external_backend(Some(&FROM_CODE));
    drop(lock("code").external(true).acquire().unwrap());
    assert_eq!(FROM_CODE.counts(), (1, 1));
    assert_eq!(BY_URL.counts(), (3, 3));
    set_external_backend(None);
    drop(lock("code").external(true).acquire().unwrap());
    assert_eq!(BY_URL.counts(), (4, 4));

    // disable_process_locking still makes external locks in-process only.
    configure(LockConfig {
        backend_url: Some("memory://x".into()),
        disable_process_locking: true,
        ..LockConfig::default()
    });
    assert!(!lock("off").external(true).acquire().unwrap().is_external());
    assert_eq!(BY_URL.counts(), (4, 4));

    // Back to files once the URL is gone; `file://` names them too.
    with_url("file://", dir.path());
    drop(lock("files-again").external(true).acquire().unwrap());
    assert!(file("files-again").exists());
    configure(LockConfig {
        lock_path: Some(dir.path().to_owned()),
        ..LockConfig::default()
    });
    drop(lock("files-3").external(true).acquire().unwrap());
    assert!(file("files-3").exists());
    assert_eq!(BY_URL.counts(), (4, 4));
}

//! Where lock files go: oslo's `[oslo_concurrency]` options, and lock file paths.
//!
//! # Resolution of the lock directory
//! For an external lock, the first of these that is set and non-empty wins:
//! 1. the lock's own `.lock_path(..)` (or `lock_path` argument);
//! 2. the `lock_path` of the process-wide configuration set with [`configure`] (what a loaded
//!    `nova.conf` would give);
//! 3. the default set with [`set_defaults`];
//! 4. the `OSLO_LOCK_PATH` environment variable.
//!
//! With none of them, external locks fail with [`Error::LockPathRequired`].

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::LazyLock;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::RwLock;

use crate::error::Error;

mod duration;
mod ini;
mod paths;
mod url;

pub use duration::parse_duration;
pub(crate) use paths::name_too_long;
pub use paths::{lock_file_name, lock_file_path};
pub use url::redact_url;

/// The environment variable oslo reads the default lock directory from.
pub const LOCK_PATH_ENV: &str = "OSLO_LOCK_PATH";

/// The environment variable that selects the external-lock backend by URL when no
/// configuration sets `backend_url` (see [`backend`](crate::backend)).
pub const BACKEND_URL_ENV: &str = "LOCKUTILS_BACKEND_URL";

/// oslo's `[oslo_concurrency]` options.
///
/// ```
/// use lockutils::{LockConfig, get_lock_path};
///
/// let conf = LockConfig::from_ini_str(
///     "[DEFAULT]\ndebug = true\n\n[oslo_concurrency]\nlock_path = /var/lib/nova/tmp\n",
/// )?;
/// assert_eq!(get_lock_path(&conf)?, std::path::Path::new("/var/lib/nova/tmp"));
/// assert!(!conf.disable_process_locking);
/// # Ok::<(), lockutils::Error>(())
/// ```
#[derive(Clone, Default, PartialEq, Eq)]
pub struct LockConfig {
    /// Directory of the lock files of external locks.
    pub lock_path: Option<PathBuf>,
    /// When `true`, external locks are taken in-process only, as in oslo.
    pub disable_process_locking: bool,
    /// Where external locks live, as a URL whose scheme names a registered backend (e.g.
    /// `postgres://locks@db/locks`); `None` or empty for lock files in `lock_path`. The
    /// `backend_url` option of `[oslo_concurrency]`, else `LOCKUTILS_BACKEND_URL`. See
    /// [`backend`](crate::backend).
    pub backend_url: Option<String>,
}

/// Shows `backend_url` without its password.
impl fmt::Debug for LockConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockConfig")
            .field("lock_path", &self.lock_path)
            .field("disable_process_locking", &self.disable_process_locking)
            .field("backend_url", &self.backend_url.as_deref().map(redact_url))
            .finish()
    }
}

impl LockConfig {
    /// The configuration the environment gives: `lock_path` from `OSLO_LOCK_PATH`,
    /// `backend_url` from `LOCKUTILS_BACKEND_URL`.
    pub fn from_env() -> Self {
        Self {
            lock_path: env_lock_path(),
            disable_process_locking: false,
            backend_url: env_backend_url(),
        }
    }

    /// Reads the `[oslo_concurrency]` section of an oslo-style INI file such as `nova.conf`,
    /// exactly as oslo.config reads it (a Python service given the same file uses the same
    /// directory): its options `lock_path` and `disable_process_locking`, and lockutils' own
    /// `backend_url`. Other sections and unknown options are ignored.
    ///
    /// As in oslo.config: section names match case-insensitively and sections of one name are
    /// merged; keys are case-sensitive and the last assignment wins; `key = value` and
    /// `key: value` both assign; one pair of like quotes around a value is stripped (`"`
    /// alone is empty); an indented line continues the value above (joined with `\n`);
    /// `#` and `;` start comment lines only; lines end at `\n`, `\r\n` or `\r`. An
    /// `OS_OSLO_CONCURRENCY__LOCK_PATH` or `OS_OSLO_CONCURRENCY__DISABLE_PROCESS_LOCKING`
    /// environment variable wins over the file. Values undergo oslo.config's substitution:
    /// `$$` and `\$` are `$`, `$lock_path`, `$disable_process_locking` and
    /// `${oslo_concurrency.<option>}` are those options' values; a reference to any other
    /// option is refused with an error, since its value depends on the program that registers
    /// it. An empty `lock_path` counts as unset.
    ///
    /// Lines oslo.config rejects (an indented line with no value above, `= value`, `[]`, a
    /// header not ending in `]`, a line with no `=` or `:`, a key before any section), a
    /// value that is not a boolean, and references that loop fail with [`Error::Config`]
    /// naming the file, the line and the cause.
    pub fn from_ini_file(path: impl AsRef<Path>) -> Result<Self, Error> {
        let path = path.as_ref();
        let text = fs::read_to_string(path).map_err(|e| Error::Config {
            path: path.to_owned(),
            line: 0,
            reason: format!("cannot read the file: {e}"),
        })?;
        Self::parse(&text).map_err(|(line, reason)| Error::Config {
            path: path.to_owned(),
            line,
            reason,
        })
    }

    /// Like [`from_ini_file`](Self::from_ini_file), from text (errors name the file
    /// `<string>`).
    pub fn from_ini_str(text: &str) -> Result<Self, Error> {
        Self::parse(text).map_err(|(line, reason)| Error::Config {
            path: PathBuf::from("<string>"),
            line,
            reason,
        })
    }

    fn parse(text: &str) -> Result<Self, (usize, String)> {
        let set_default = GLOBAL.read().default_lock_path.clone();
        Self::parse_with_env(text, set_default, &|name| match std::env::var(name) {
            Ok(value) => Ok(Some(value)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(format!(
                "the environment variable {name} is not valid Unicode"
            )),
        })
    }

    /// [`parse`](Self::parse) with the default of [`set_defaults`] given, reading the
    /// environment through `env`.
    fn parse_with_env(
        text: &str,
        set_default: Option<PathBuf>,
        env: &dyn Fn(&str) -> Result<Option<String>, String>,
    ) -> Result<Self, (usize, String)> {
        // What `$lock_path` gives when neither the environment nor the file sets it.
        let default_lock_path = match set_default {
            Some(path) => Some((
                path.to_string_lossy().into_owned(),
                "set_defaults".to_owned(),
            )),
            // A value that is not Unicode fails nothing here (oslo.config reads the file all
            // the same): only a `$lock_path` of the file would use it, lossily.
            None => match env(LOCK_PATH_ENV) {
                Ok(value) => value,
                Err(_) => std::env::var_os(LOCK_PATH_ENV).map(|v| v.to_string_lossy().into_owned()),
            }
            .map(|v| (v, LOCK_PATH_ENV.to_owned())),
        };
        let found = ini::parse(text)?;
        let resolver = ini::Resolver::new(&found, env, default_lock_path);
        let lock_path = resolver
            .lock_path()?
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        let disable_process_locking = resolver.disable_process_locking()?;
        // A URL's password stays out of messages.
        let backend_url = resolver
            .get_own("backend_url", &|v| redact_url(v))?
            .filter(|u| !u.is_empty());
        Ok(LockConfig {
            lock_path,
            disable_process_locking,
            backend_url,
        })
    }
}

fn env_backend_url() -> Option<String> {
    std::env::var(BACKEND_URL_ENV)
        .ok()
        .filter(|v| !v.is_empty())
}

fn env_lock_path() -> Option<PathBuf> {
    std::env::var_os(LOCK_PATH_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

/// The lock directory of `conf`: oslo's `get_lock_path(conf)`.
///
/// Fails with [`Error::LockPathRequired`] when `conf` has none.
pub fn get_lock_path(conf: &LockConfig) -> Result<PathBuf, Error> {
    conf.lock_path.clone().ok_or(Error::LockPathRequired {
        name: String::new(),
    })
}

struct Global {
    configured: LockConfig,
    default_lock_path: Option<PathBuf>,
}

static GLOBAL: LazyLock<RwLock<Global>> = LazyLock::new(|| {
    RwLock::new(Global {
        configured: LockConfig::default(),
        default_lock_path: None,
    })
});

/// Bumped on every change of the process-wide options, so that lock files whose path was
/// worked out from them are worked out again.
static VERSION: AtomicU64 = AtomicU64::new(0);
static PROCESS_LOCKING_DISABLED: AtomicBool = AtomicBool::new(false);

/// Sets the default lock directory: oslo's `set_defaults(lock_path)`.
///
/// A directory from [`configure`] or from a lock's own `.lock_path(..)` still wins.
pub fn set_defaults(lock_path: impl Into<PathBuf>) {
    let path = lock_path.into();
    let mut global = GLOBAL.write();
    global.default_lock_path = (!path.as_os_str().is_empty()).then_some(path);
    VERSION.fetch_add(1, Ordering::Release);
}

/// Sets the process-wide `[oslo_concurrency]` options, as loading a config file does in oslo.
pub fn configure(conf: LockConfig) {
    let mut global = GLOBAL.write();
    PROCESS_LOCKING_DISABLED.store(conf.disable_process_locking, Ordering::Release);
    global.configured = conf;
    VERSION.fetch_add(1, Ordering::Release);
}

/// Changes with every [`set_defaults`] and [`configure`].
pub(crate) fn version() -> u64 {
    VERSION.load(Ordering::Acquire)
}

/// The options in force: the configured ones, with `lock_path` falling back to
/// [`set_defaults`] and then to `OSLO_LOCK_PATH`, and `backend_url` to
/// `LOCKUTILS_BACKEND_URL`.
pub fn current_config() -> LockConfig {
    let global = GLOBAL.read();
    LockConfig {
        backend_url: global
            .configured
            .backend_url
            .clone()
            .filter(|u| !u.is_empty())
            .or_else(env_backend_url),
        lock_path: global
            .configured
            .lock_path
            .clone()
            .or_else(|| global.default_lock_path.clone())
            .or_else(env_lock_path),
        disable_process_locking: global.configured.disable_process_locking,
    }
}

/// Whether external locks are currently in-process only.
pub(crate) fn process_locking_disabled() -> bool {
    PROCESS_LOCKING_DISABLED.load(Ordering::Acquire)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str, prefix: Option<&str>) -> Result<String, Error> {
        lock_file_name(name, prefix)
    }

    #[test]
    fn names_files_like_oslo() {
        assert_eq!(file("x/y", Some("pre")).unwrap(), "pre-x_y");
        assert_eq!(file("x/y", Some("pre-")).unwrap(), "pre-x_y");
        assert_eq!(file("x", None).unwrap(), "x");
        assert_eq!(file("x", Some("")).unwrap(), "x");
        assert_eq!(file("a/b/c", Some("nova")).unwrap(), "nova-a_b_c");
        assert_eq!(file("..x", None).unwrap(), "..x");
        assert_eq!(file("/", None).unwrap(), "_");
    }

    #[test]
    fn refuses_names_that_are_not_files() {
        for (name, prefix) in [
            ("", None),
            (".", None),
            ("..", None),
            ("a\0b", None),
            ("x", Some("../up")),
            ("x", Some("a\0")),
        ] {
            let err = file(name, prefix).unwrap_err();
            assert!(
                matches!(err, Error::InvalidName { .. }),
                "{name:?} {prefix:?}"
            );
        }
        assert!(file(&"n".repeat(255), None).is_ok());
        let err = file(&"n".repeat(252), Some("abc")).unwrap_err();
        assert!(err.to_string().contains("256 bytes"), "{err}");
    }

    #[test]
    fn explicit_path_wins_and_empty_falls_back() {
        let p = lock_file_path("n", Some("p"), Some(Path::new("/a"))).unwrap();
        assert_eq!(p, Path::new("/a/p-n"));
        // An empty explicit lock_path falls back to the configuration (oslo does the same).
        match lock_file_path("n", None, Some(Path::new(""))) {
            Ok(p) => assert!(p.ends_with("n")),
            Err(e) => assert!(matches!(e, Error::LockPathRequired { .. })),
        }
    }

    #[test]
    fn parses_oslo_ini() {
        let conf = LockConfig::from_ini_str(
            "# nova.conf\n[DEFAULT]\nlock_path = /wrong\n\n[oslo_concurrency]\n\
             lock_path=/var/lock/nova\ndisable_process_locking = True\n\
             other: x\n  continued\n[other]\nlock_path = /also/wrong\n",
        )
        .unwrap();
        assert_eq!(conf.lock_path.as_deref(), Some(Path::new("/var/lock/nova")));
        assert!(conf.disable_process_locking);
        assert_eq!(conf.backend_url, None);
        assert_eq!(LockConfig::from_ini_str("").unwrap(), LockConfig::default());
        let conf = LockConfig::from_ini_str(
            "[oslo_concurrency]\nbackend_url = postgres://locks@db:5432/locks\n",
        )
        .unwrap();
        assert_eq!(
            conf.backend_url.as_deref(),
            Some("postgres://locks@db:5432/locks")
        );
    }

    #[test]
    fn ini_values_like_oslo_config() {
        let conf =
            LockConfig::from_ini_str("[oslo_concurrency]\nlock_path = \"/quoted/path\"\n").unwrap();
        assert_eq!(conf.lock_path.as_deref(), Some(Path::new("/quoted/path")));
        let err = LockConfig::from_ini_str("[oslo_concurrency]\nlock_path = $state_path/tmp\n")
            .unwrap_err();
        assert!(err.to_string().contains("interpolation"), "{err}");
    }

    #[test]
    fn dollars_escape_and_urls_keep_their_passwords_out_of_errors_and_debug() {
        let conf = LockConfig::from_ini_str(
            "[oslo_concurrency]\nbackend_url = postgres://app:pa$$word@db/locks\n",
        )
        .unwrap();
        assert_eq!(
            conf.backend_url.as_deref(),
            Some("postgres://app:pa$word@db/locks")
        );
        let shown = format!("{conf:?}");
        assert!(shown.contains("postgres://app:***@db/locks"), "{shown}");
        assert!(!shown.contains("pa$word"), "{shown}");

        let err = LockConfig::from_ini_str(
            "[oslo_concurrency]\nbackend_url = postgres://app:pa$word@db/locks\n",
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("interpolation") && err.contains("$$"), "{err}");
        assert!(err.contains("postgres://app:***@db/locks"), "{err}");
        assert!(!err.contains("pa$word"), "{err}");
    }

    #[test]
    fn an_environment_value_that_is_not_unicode_fails_no_file_without_a_reference_to_it() {
        let env = |key: &str| -> Result<Option<String>, String> {
            if key == LOCK_PATH_ENV {
                Err(format!("{key} is not valid Unicode"))
            } else {
                Ok(None)
            }
        };
        let conf = LockConfig::parse_with_env("[oslo_concurrency]\nlock_path = /a\n", None, &env)
            .expect("the file does not refer to $lock_path");
        assert_eq!(conf.lock_path.as_deref(), Some(Path::new("/a")));
    }

    #[test]
    fn ini_errors_quote_lines_without_their_passwords() {
        for text in [
            "[database]\n= mysql+pymysql://nova:s3cret@db/nova\n",
            "[database]\n  mysql+pymysql://nova:s3cret@db/nova\n",
        ] {
            let err = LockConfig::from_ini_str(text).unwrap_err().to_string();
            assert!(!err.contains("s3cret"), "{err}");
            assert!(err.contains("nova:***@db"), "{err}");
        }
    }

    #[test]
    fn ini_errors_name_the_line() {
        let err = LockConfig::from_ini_str("[oslo_concurrency]\ndisable_process_locking = maybe\n")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "<string>:2: disable_process_locking: \"maybe\" is not a boolean"
        );
        let err = LockConfig::from_ini_str("[oslo_concurrency\n").unwrap_err();
        assert!(
            err.to_string().starts_with("<string>:1: invalid section"),
            "{err}"
        );
        let err = LockConfig::from_ini_file("/nonexistent/nova.conf").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("/nonexistent/nova.conf: cannot read"),
            "{err}"
        );
    }

    /// Parses `text` with `env` as the whole environment.
    fn parse_env(text: &str, env: &[(&str, &str)]) -> Result<LockConfig, (usize, String)> {
        let env: Vec<(String, String)> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        LockConfig::parse_with_env(text, None, &|name| {
            Ok(env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
        })
    }

    /// The `lock_path` of `text`, parsed with an empty environment.
    fn lock_path_of(text: &str) -> Option<String> {
        let conf = parse_env(text, &[]).unwrap_or_else(|e| panic!("{text:?}: {e:?}"));
        conf.lock_path
            .map(|p| p.into_os_string().into_string().unwrap())
    }

    /// The line and message of the error `text` gives.
    fn error_of(text: &str) -> (usize, String) {
        match parse_env(text, &[]) {
            Ok(conf) => panic!("{text:?} parsed as {conf:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn section_names_match_case_insensitively_and_exactly() {
        for header in [
            "[OSLO_CONCURRENCY]",
            "[Oslo_Concurrency]",
            "[oslo_concurrency]",
        ] {
            let text = format!("{header}\nlock_path = /a\n");
            assert_eq!(lock_path_of(&text).as_deref(), Some("/a"), "{header}");
        }
        // The name is everything between the brackets.
        for header in [
            "[ oslo_concurrency ]",
            "[oslo_concurrency ]",
            "[[oslo_concurrency]]",
        ] {
            let text = format!("{header}\nlock_path = /a\n");
            assert_eq!(lock_path_of(&text), None, "{header}");
        }
        // Sections of one name are merged; the last assignment wins.
        let conf = parse_env(
            "[oslo_concurrency]\nlock_path = /a\n[other]\nx = 1\n\
             [OSLO_CONCURRENCY]\ndisable_process_locking = yes\n[oslo_concurrency]\n\
             lock_path = /b\n",
            &[],
        )
        .unwrap();
        assert_eq!(conf.lock_path.as_deref(), Some(Path::new("/b")));
        assert!(conf.disable_process_locking);
    }

    #[test]
    fn quotes_as_oslo_strips_them() {
        for (value, expected) in [
            ("\"", None),
            ("'", None),
            ("\"\"", None),
            ("'/a'", Some("/a")),
            ("\"/a'", Some("\"/a'")),
            ("\"a\"b\"", Some("a\"b")),
            ("\"'/a'\"", Some("'/a'")),
            ("\" /a \"", Some(" /a ")),
        ] {
            let text = format!("[oslo_concurrency]\nlock_path = {value}\n");
            assert_eq!(lock_path_of(&text).as_deref(), expected, "{value}");
        }
    }

    #[test]
    fn continuation_lines_join_with_newlines() {
        let of = lock_path_of;
        assert_eq!(
            of("[oslo_concurrency]\nlock_path = /a\n  /continued\n").as_deref(),
            Some("/a\n/continued")
        );
        // Even an indented `#`, and after an empty first line.
        assert_eq!(
            of("[oslo_concurrency]\nlock_path = /a\n\t# note\n").as_deref(),
            Some("/a\n# note")
        );
        assert_eq!(
            of("[oslo_concurrency]\nlock_path =\n    /a\n").as_deref(),
            Some("\n/a")
        );
        // Quotes are stripped from the first line only.
        assert_eq!(
            of("[oslo_concurrency]\nlock_path = \"/a\"\n  \"b\"\n").as_deref(),
            Some("/a\n\"b\"")
        );
        // A blank line (or one of white space only) ends the value.
        let (line, reason) = error_of("[oslo_concurrency]\nlock_path = /a\n   \n  /b\n");
        assert_eq!(line, 4);
        assert!(
            reason.starts_with("unexpected continuation line"),
            "{reason}"
        );
        // A comment does too.
        let (line, _) = error_of("[oslo_concurrency]\nlock_path = /a\n# c\n  /b\n");
        assert_eq!(line, 4);
        // The last assignment is interpreted, joined: no longer a boolean.
        let (line, reason) =
            error_of("[oslo_concurrency]\ndisable_process_locking = true\n  false\n");
        assert_eq!(line, 2);
        assert!(
            reason.contains("\"true\\nfalse\" is not a boolean"),
            "{reason}"
        );
    }

    #[test]
    fn malformed_lines_are_errors_naming_their_line() {
        for (text, line, cause) in [
            (
                "[oslo_concurrency]\n  lock_path = /a\n",
                2,
                "unexpected continuation line",
            ),
            ("  lock_path = /a\n", 1, "unexpected continuation line"),
            ("[oslo_concurrency]\n= /a\n", 2, "key cannot be empty"),
            (
                "[oslo_concurrency]\n : /a\n",
                2,
                "unexpected continuation line",
            ),
            ("[x]\n\x0c= /a\n", 2, "key cannot be empty"),
            ("[]\nlock_path = /a\n", 1, "empty section name"),
            (
                "lock_path = /a\n[oslo_concurrency]\n",
                1,
                "section must be started",
            ),
            ("# c\n\nx = 1\n", 3, "section must be started"),
            ("[oslo_concurrency] # c\n", 1, "invalid section"),
            ("[oslo_concurrency\n", 1, "invalid section"),
            ("[x]\nlock_path\n", 2, "no ':' or '=' found"),
            (
                "\u{feff}[oslo_concurrency]\nlock_path = /a\n",
                1,
                "no ':' or '=' found",
            ),
            ("\u{a0}[oslo_concurrency]\n", 1, "no ':' or '=' found"),
            ("[x]\r\ny = 1\r\r  z\r\n", 4, "unexpected continuation line"),
        ] {
            let (got_line, reason) = error_of(text);
            assert_eq!(got_line, line, "{text:?}: {reason}");
            assert!(reason.starts_with(cause), "{text:?}: {reason}");
        }
    }

    #[test]
    fn keys_values_separators_and_white_space() {
        let of = |body: &str| lock_path_of(&format!("[oslo_concurrency]\n{body}\n"));
        assert_eq!(of("lock_path: /a").as_deref(), Some("/a"));
        assert_eq!(of("lock_path = a=b:c").as_deref(), Some("a=b:c"));
        assert_eq!(of("lock_path: a=b").as_deref(), Some("a=b"));
        assert_eq!(of("lock_path=:x").as_deref(), Some(":x"));
        assert_eq!(of("lock_path\t=\t/a\t").as_deref(), Some("/a"));
        assert_eq!(
            of("lock_path = /a # no comment").as_deref(),
            Some("/a # no comment")
        );
        assert_eq!(
            of("lock_path = /a ; no comment").as_deref(),
            Some("/a ; no comment")
        );
        // Python's white space: form feed, U+001C..U+001F, no-break and ideographic spaces.
        assert_eq!(of("\x0clock_path = /a\x1c").as_deref(), Some("/a"));
        assert_eq!(
            of("lock_path\u{3000}=\u{a0}/a\u{2003}").as_deref(),
            Some("/a")
        );
        // Keys are case-sensitive and spelt with `_`.
        assert_eq!(of("LOCK_PATH = /a"), None);
        assert_eq!(of("lock-path = /a"), None);
        assert_eq!(of("lock_path ="), None);
        // `;` and `#` start comments only at the start of a line.
        assert_eq!(
            of("lock_path = /a\n; lock_path = /b\n# lock_path = /c").as_deref(),
            Some("/a")
        );
        // Universal newlines.
        assert_eq!(
            lock_path_of("[oslo_concurrency]\r\nlock_path = /a\r\n").as_deref(),
            Some("/a")
        );
        assert_eq!(
            lock_path_of("[oslo_concurrency]\rlock_path = /a\r").as_deref(),
            Some("/a")
        );
        assert_eq!(
            lock_path_of("[oslo_concurrency]\r\nlock_path = /a\r  b\r\n").as_deref(),
            Some("/a\nb")
        );
        // Other line separators stay in the line.
        assert_eq!(
            of("lock_path = /a\u{2028}b").as_deref(),
            Some("/a\u{2028}b")
        );
        assert_eq!(of("lock_path = /a\x0bb").as_deref(), Some("/a\x0bb"));
    }

    #[test]
    fn only_the_last_assignment_is_interpreted() {
        let conf = parse_env(
            "[oslo_concurrency]\ndisable_process_locking = maybe\nlock_path = $nope\n\
             disable_process_locking = ON\nlock_path = /a\nother = $unknown\n",
            &[],
        )
        .unwrap();
        assert!(conf.disable_process_locking);
        assert_eq!(conf.lock_path.as_deref(), Some(Path::new("/a")));
        let (line, reason) = error_of("[oslo_concurrency]\ndisable_process_locking =\n");
        assert_eq!(line, 2);
        assert!(reason.contains("\"\" is not a boolean"), "{reason}");
    }

    #[test]
    fn substitutes_as_oslo_config_does() {
        let of = |body: &str| lock_path_of(&format!("[oslo_concurrency]\n{body}\n"));
        assert_eq!(
            of("lock_path = /x/$disable_process_locking/${oslo_concurrency.disable_process_locking}")
                .as_deref(),
            Some("/x/False/False")
        );
        assert_eq!(
            of("disable_process_locking = 1\nlock_path = /x/${disable_process_locking}").as_deref(),
            Some("/x/True")
        );
        // A `$` that starts no name stays; `$$` and `\$` are one `$`.
        assert_eq!(
            of(r"lock_path = /x/$1 $ ${a b} \$x $$ ${} $").as_deref(),
            Some("/x/$1 $ ${a b} $x $ ${} $")
        );
        // A boolean may refer to the path.
        let conf = parse_env(
            "[oslo_concurrency]\nlock_path = yes\ndisable_process_locking = $lock_path\n",
            &[],
        )
        .unwrap();
        assert!(conf.disable_process_locking);
        // Unset, lock_path substitutes as its default: OSLO_LOCK_PATH, else empty.
        let conf = parse_env(
            "[oslo_concurrency]\ndisable_process_locking = ${lock_path}false\n",
            &[],
        )
        .unwrap();
        assert!(!conf.disable_process_locking);
        let conf = parse_env(
            "[oslo_concurrency]\nlock_path = ${lock_path}/x\n",
            &[(LOCK_PATH_ENV, "/env/$$dir")],
        )
        .unwrap_err();
        assert!(conf.1.contains("loop of references"), "{conf:?}");
        let conf = parse_env(
            "[oslo_concurrency]\ndisable_process_locking = $lock_path\n",
            &[(LOCK_PATH_ENV, "$$yes")],
        );
        assert!(conf.unwrap_err().1.contains("\"$yes\" is not a boolean"));
        // The default applies later, so that set_defaults wins over OSLO_LOCK_PATH.
        let conf = parse_env("[x]\n", &[(LOCK_PATH_ENV, "/env")]).unwrap();
        assert_eq!(conf.lock_path, None);
        let conf = LockConfig::parse_with_env(
            "[oslo_concurrency]\ndisable_process_locking = $lock_path\n",
            Some(PathBuf::from("on")),
            &|name| Ok((name == LOCK_PATH_ENV).then(|| "off".to_owned())),
        );
        assert!(conf.unwrap().disable_process_locking);
    }

    #[test]
    fn substitutions_oslo_config_cannot_make_the_same_are_errors() {
        for (body, cause) in [
            ("lock_path = $state_path/tmp", "interpolation ($state_path)"),
            (
                "lock_path = ${state_path}/tmp",
                "interpolation ($state_path)",
            ),
            ("lock_path = $lock_path.d", "interpolation ($lock_path.d)"),
            ("lock_path = ${OSLO_CONCURRENCY.lock_path}", "interpolation"),
            ("lock_path = $LOCK_PATH", "interpolation ($LOCK_PATH)"),
            ("lock_path = /$\u{17f}x", "interpolation ($\u{17f}x)"),
            ("lock_path = $backend_url", "interpolation"),
            ("lock_path = ${DEFAULT.state_path}", "interpolation"),
            (
                "lock_path = /a/$lock_path",
                "loop of references through $lock_path",
            ),
            (
                "lock_path = $disable_process_locking\ndisable_process_locking = $lock_path",
                "loop of references",
            ),
        ] {
            let (line, reason) = error_of(&format!("[oslo_concurrency]\n{body}\n"));
            assert!(line == 2 || line == 3, "{body}: {line}");
            assert!(reason.contains(cause), "{body}: {reason}");
        }
    }

    #[test]
    fn the_environment_overrides_the_file_as_in_oslo_config() {
        let text = "[oslo_concurrency]\nlock_path = /file\ndisable_process_locking = no\n";
        let conf = parse_env(
            text,
            &[
                (
                    "OS_OSLO_CONCURRENCY__LOCK_PATH",
                    "/env/$disable_process_locking",
                ),
                ("OS_OSLO_CONCURRENCY__DISABLE_PROCESS_LOCKING", "true"),
            ],
        )
        .unwrap();
        assert_eq!(conf.lock_path.as_deref(), Some(Path::new("/env/True")));
        assert!(conf.disable_process_locking);
        // Set but empty still wins.
        let conf = parse_env(text, &[("OS_OSLO_CONCURRENCY__LOCK_PATH", "")]).unwrap();
        assert_eq!(conf.lock_path, None);
        let (line, reason) = parse_env(
            text,
            &[("OS_OSLO_CONCURRENCY__DISABLE_PROCESS_LOCKING", "maybe")],
        )
        .unwrap_err();
        assert_eq!(line, 0);
        assert!(
            reason.contains("OS_OSLO_CONCURRENCY__DISABLE_PROCESS_LOCKING")
                && reason.contains("not a boolean"),
            "{reason}"
        );
    }

    #[test]
    fn file_errors_name_the_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nova.conf");
        fs::write(
            &path,
            "[DEFAULT]\ndebug = true\n[oslo_concurrency]\n lock_path = /a\n",
        )
        .unwrap();
        let err = LockConfig::from_ini_file(&path).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!(
                "{}:4: unexpected continuation line \" lock_path = /a\" (a line starting with \
                 white space continues the value of the line before; here there is none)",
                path.display()
            )
        );
        assert!(matches!(err, Error::Config { line: 4, .. }));
    }

    #[test]
    fn get_lock_path_requires_one() {
        let err = get_lock_path(&LockConfig::default()).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("value required for option lock_path in group [oslo_concurrency]")
        );
    }
}

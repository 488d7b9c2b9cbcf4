//! Lock file names and paths, exactly as oslo makes them.

use std::path::{Path, PathBuf};

use super::current_config;
use crate::error::Error;

/// Path separators, replaced by `_` in names (oslo replaces `os.sep`; on Windows both `\`
/// and `/` separate).
#[cfg(not(windows))]
const SEPARATORS: &[char] = &['/'];
#[cfg(windows)]
const SEPARATORS: &[char] = &['/', '\\', ':'];

/// The longest file name (in bytes) accepted before asking the file system; 255 is the limit
/// of every common Linux file system. A file system with a lower limit reports
/// `ENAMETOOLONG`, which is turned into the same [`Error::InvalidName`].
const NAME_MAX: usize = 255;

/// The lock file for `name`, exactly as oslo names it: `/` in the name becomes `_`; a prefix is
/// joined with `-` unless it already ends in `-`; the file sits in `lock_path` (when given
/// and non-empty) or in the configured directory.
///
/// Unlike oslo, names that could not be a file in that directory are refused with
/// [`Error::InvalidName`]: empty, `.` or `..`, containing NUL, a prefix containing `/`, or
/// longer than the file system allows.
///
/// ```
/// use std::path::Path;
///
/// let path = lockutils::lock_file_path("x/y", Some("nova"), Some(Path::new("/locks")))?;
/// assert_eq!(path, Path::new("/locks/nova-x_y"));
/// # Ok::<(), lockutils::Error>(())
/// ```
pub fn lock_file_path(
    name: &str,
    prefix: Option<&str>,
    lock_path: Option<&Path>,
) -> Result<PathBuf, Error> {
    let file = lock_file_name(name, prefix)?;
    let dir = match lock_path.filter(|p| !p.as_os_str().is_empty()) {
        Some(dir) => dir.to_owned(),
        None => current_config()
            .lock_path
            .ok_or_else(|| Error::LockPathRequired {
                name: name.to_owned(),
            })?,
    };
    Ok(dir.join(file))
}

/// The file name (without directory) of the lock file of `name`: `/` in the name becomes
/// `_`, a prefix is joined with `-` unless it already ends in `-` (see [`lock_file_path`]).
/// Backends that are not files name their locks by this too, so that a name and prefix make
/// one lock whatever the backend.
///
/// ```
/// assert_eq!(lockutils::lock_file_name("x/y", Some("nova"))?, "nova-x_y");
/// assert_eq!(lockutils::lock_file_name("x", Some("nova-"))?, "nova-x");
/// assert_eq!(lockutils::lock_file_name("x", None)?, "x");
/// # Ok::<(), lockutils::Error>(())
/// ```
pub fn lock_file_name(name: &str, prefix: Option<&str>) -> Result<String, Error> {
    if name.is_empty() {
        return Err(Error::invalid_name(
            name,
            "an external lock needs a non-empty name",
        ));
    }
    if name.contains('\0') {
        return Err(Error::invalid_name(name, "the name contains a NUL byte"));
    }
    let sanitized = name.replace(SEPARATORS, "_");
    let file = match prefix.filter(|p| !p.is_empty()) {
        None => sanitized,
        Some(prefix) => {
            if prefix.contains(SEPARATORS) || prefix.contains('\0') {
                return Err(Error::invalid_name(
                    name,
                    format!("the prefix {prefix:?} contains '/' or a NUL byte"),
                ));
            }
            let sep = if prefix.ends_with('-') { "" } else { "-" };
            format!("{prefix}{sep}{sanitized}")
        }
    };
    if file == "." || file == ".." {
        return Err(Error::invalid_name(
            name,
            format!("{file:?} names a directory, not a lock file"),
        ));
    }
    if file.len() > NAME_MAX {
        return Err(name_too_long(name, &file));
    }
    Ok(file)
}

pub(crate) fn name_too_long(name: &str, file: &str) -> Error {
    Error::invalid_name(
        name,
        format!(
            "the lock file name is {} bytes long, more than the file system allows",
            file.len()
        ),
    )
}

//! Lock names to Redis keys: the keys of tooz's redis driver.
//!
//! # The mapping
//! The key of `lock(name).prefix(prefix)` is
//!
//! ```text
//! <namespace> "_" <full name> "_lock"
//! ```
//!
//! - The **namespace** is the URL's `namespace` option, `_tooz` by default (tooz's default).
//! - The **full name** joins the prefix and the name as lockutils does for every backend
//!   ([`lockutils::lock_file_name`](lockutils_core::lock_file_name)): `prefix` + `-` + `name`,
//!   without the `-` if the prefix already ends in one, and just `name` without a prefix.
//!   Unlike a lock file's name, `/` is **kept**: tooz sends the name as it is, so
//!   `lock("a/b")` is tooz's lock `a/b` (key `_tooz_a/b_lock`).
//! - The key is the UTF-8 bytes of that string, as tooz sends them (its default `encoding`).
//!
//! So cinder's `@coordination.synchronized('{volume.id}-delete_volume')`, which takes tooz's
//! lock `cinder-<id>-delete_volume`, is the same lock as
//! `lockutils::lock("<id>-delete_volume").prefix("cinder")` (or `.prefix("cinder-")`):
//!
//! | lockutils | tooz name | key |
//! |---|---|---|
//! | `lock("6f1c-delete_volume").prefix("cinder")` | `cinder-6f1c-delete_volume` | `_tooz_cinder-6f1c-delete_volume_lock` |
//! | `lock("6f1c-delete_volume").prefix("cinder-")` | `cinder-6f1c-delete_volume` | `_tooz_cinder-6f1c-delete_volume_lock` |
//! | `lock("x")` | `x` | `_tooz_x_lock` |
//! | `lock("x/y").prefix("nova")`, `namespace=app` | `nova-x/y` | `app_nova-x/y_lock` |
//!
//! An empty name, or a name or prefix containing a NUL byte, is refused
//! ([`Error::InvalidName`]).
//!
//! # Beside the lock keys
//! Fencing tokens come from one counter per namespace, the key `<namespace>_fencing_token`
//! (an integer; it never ends in `_lock`, so it is never taken for a lock). Releases are
//! announced on the channel `<key>:released` (a Pub/Sub channel, not a key).

use lockutils_core::Error;

/// The full name (tooz's lock name) of `name` with `prefix`: see the [module docs](self).
///
/// ```
/// assert_eq!(lockutils_redis::full_name("1-delete_volume", Some("cinder"))?, "cinder-1-delete_volume");
/// assert_eq!(lockutils_redis::full_name("x/y", Some("nova-"))?, "nova-x/y");
/// # Ok::<(), lockutils::Error>(())
/// ```
pub fn full_name(name: &str, prefix: Option<&str>) -> Result<String, Error> {
    if name.is_empty() {
        return Err(invalid(name, "an external lock needs a non-empty name"));
    }
    if name.contains('\0') || prefix.is_some_and(|p| p.contains('\0')) {
        return Err(invalid(name, "the name or prefix contains a NUL byte"));
    }
    Ok(match prefix.filter(|p| !p.is_empty()) {
        None => name.to_owned(),
        Some(prefix) if prefix.ends_with('-') => format!("{prefix}{name}"),
        Some(prefix) => format!("{prefix}-{name}"),
    })
}

fn invalid(name: &str, reason: &str) -> Error {
    Error::InvalidName {
        name: name.to_owned(),
        reason: reason.to_owned(),
    }
}

/// The key of the lock with full name `full_name` in `namespace`: `<namespace>_<full name>_lock`.
///
/// ```
/// assert_eq!(lockutils_redis::lock_key("_tooz", "cinder-1-delete_volume"), "_tooz_cinder-1-delete_volume_lock");
/// ```
pub fn lock_key(namespace: &str, full_name: &str) -> String {
    format!("{namespace}_{full_name}_lock")
}

/// The full name of the lock whose key is `key` in `namespace`, if it is one.
pub(crate) fn name_of_key<'a>(namespace: &str, key: &'a str) -> Option<&'a str> {
    key.strip_prefix(namespace)?
        .strip_prefix('_')?
        .strip_suffix("_lock")
        .filter(|name| !name.is_empty())
}

/// `text` matching itself in a `SCAN ... MATCH` pattern.
pub(crate) fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The fencing counter of `namespace`.
pub(crate) fn counter_key(namespace: &str) -> String {
    format!("{namespace}_fencing_token")
}

/// The channel on which releases of `key` are announced.
pub(crate) fn channel_of(key: &str) -> String {
    format!("{key}:released")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_toozs_keys() {
        let full = full_name("6f1c-delete_volume", Some("cinder")).unwrap();
        assert_eq!(full, "cinder-6f1c-delete_volume");
        assert_eq!(
            lock_key("_tooz", &full),
            "_tooz_cinder-6f1c-delete_volume_lock"
        );
        assert_eq!(full_name("x", Some("cinder-")).unwrap(), "cinder-x");
        assert_eq!(full_name("x", Some("")).unwrap(), "x");
        assert_eq!(full_name("x/y", None).unwrap(), "x/y");
        assert!(full_name("", Some("cinder")).is_err());
        assert!(full_name("a\0b", None).is_err());
        assert!(full_name("a", Some("p\0")).is_err());
        assert_eq!(name_of_key("_tooz", "_tooz_a_b_lock"), Some("a_b"));
        assert_eq!(name_of_key("_tooz", "_tooz__lock"), None);
        assert_eq!(name_of_key("_tooz", "_tooz_fencing_token"), None);
        assert_eq!(name_of_key("_tooz", "other_a_lock"), None);
        assert_eq!(glob_escape("a*b?[c]\\d"), "a\\*b\\?\\[c\\]\\\\d");
    }
}

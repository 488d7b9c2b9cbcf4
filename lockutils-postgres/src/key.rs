//! Lock names to PostgreSQL advisory-lock keys.
//!
//! # The function
//! The key of a lock is the first 8 bytes of the SHA-256 digest of its **full name** in UTF-8,
//! read as a big-endian two's-complement signed 64-bit integer: the `bigint` that
//! `pg_advisory_lock(bigint)` takes.
//!
//! The full name is the lock's file name without its directory
//! ([`lockutils::lock_file_name`](lockutils_core::lock_file_name)): `/` in the name becomes `_`,
//! and a prefix is joined with `-` unless it already ends in `-`. So `lock("x/y")
//! .prefix("nova")` is the full name `nova-x_y`, whatever the backend, and a name maps to one
//! key per prefix.
//!
//! The function depends on nothing but the bytes of the full name: the same key on every
//! platform, architecture and version of this crate. Other clients compute it so:
//!
//! ```sql
//! -- SQL (PostgreSQL 11 or later):
//! SELECT ('x' || substr(encode(sha256(convert_to('nova-x_y', 'UTF8')), 'hex'), 1, 16))::bit(64)::bigint;
//! SELECT pg_advisory_lock(('x' || substr(encode(sha256(convert_to('nova-x_y', 'UTF8')), 'hex'), 1, 16))::bit(64)::bigint);
//! ```
//!
//! ```python
//! # Python
//! import hashlib
//! key = int.from_bytes(hashlib.sha256("nova-x_y".encode()).digest()[:8], "big", signed=True)
//! ```
//!
//! # Test vectors
//! | full name | key |
//! |---|---|
//! | `""` (empty) | `-2039914840885289964` |
//! | `lock` | `865541628958336260` |
//! | `nova-x_y` | `-9035888020270672814` |
//! | `instance-42` | `4383225278894057787` |
//! | `é` (U+00E9) | `5375421630974772051` |
//!
//! Keys of distinct names collide with probability about n² / 2⁶⁵ for n names in use at once:
//! for a million names, about 3·10⁻⁸.

use sha2::{Digest, Sha256};

/// The advisory-lock key of a full lock name (see the [module docs](self) for the function).
///
/// ```
/// assert_eq!(lockutils_postgres::lock_key("nova-x_y"), -9035888020270672814);
/// ```
pub fn lock_key(full_name: &str) -> i64 {
    let digest = Sha256::digest(full_name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// The full name and advisory-lock key of lock `name` with `prefix`, as
/// `lock(name).prefix(prefix).external(true)` takes it.
///
/// ```
/// let (full, key) = lockutils_postgres::key_of("x/y", Some("nova"))?;
/// assert_eq!(full, "nova-x_y");
/// assert_eq!(key, lockutils_postgres::lock_key("nova-x_y"));
/// # Ok::<(), lockutils::Error>(())
/// ```
pub fn key_of(name: &str, prefix: Option<&str>) -> Result<(String, i64), lockutils_core::Error> {
    let full = lockutils_core::lock_file_name(name, prefix)?;
    let key = lock_key(&full);
    Ok((full, key))
}

/// The SQL expression computing the key of the full name given as the SQL expression
/// `name_sql` (a literal or a parameter such as `$1`).
///
/// ```
/// assert_eq!(
///     lockutils_postgres::key_sql("$1"),
///     "('x' || substr(encode(sha256(convert_to($1, 'UTF8')), 'hex'), 1, 16))::bit(64)::bigint"
/// );
/// ```
pub fn key_sql(name_sql: &str) -> String {
    format!(
        "('x' || substr(encode(sha256(convert_to({name_sql}, 'UTF8')), 'hex'), 1, 16))::bit(64)::bigint"
    )
}

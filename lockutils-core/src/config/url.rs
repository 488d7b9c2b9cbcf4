//! Backend URLs fit for messages: passwords hidden.

/// `url` fit for messages and logs: a password in its user information (`user:secret@`) or
/// in a `password=` query parameter becomes `***`.
///
/// ```
/// use lockutils::redact_url;
/// assert_eq!(redact_url("postgres://app:s3cret@db:5432/locks"), "postgres://app:***@db:5432/locks");
/// assert_eq!(redact_url("postgres://db/locks?user=app&password=x"), "postgres://db/locks?user=app&password=***");
/// assert_eq!(redact_url("postgres://app@db/locks"), "postgres://app@db/locks");
/// ```
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        if url.to_ascii_lowercase().contains("password") {
            // Not a URL (a `key=value` string?): where the password ends is not clear-cut.
            return "<connection string, password hidden>".to_owned();
        }
        return url.to_owned();
    };
    let mut out = String::with_capacity(url.len());
    out.push_str(scheme);
    out.push_str("://");
    // The last `@` ends the user information: a password may contain `@`, `/`, `?` or `#`
    // unescaped (too much is hidden rather than too little if `@` is elsewhere).
    let after = match rest.rfind('@') {
        Some(at) => {
            let userinfo = &rest[..at];
            match userinfo.split_once(':') {
                Some((user, _password)) => {
                    out.push_str(user);
                    out.push_str(":***");
                }
                None => out.push_str(userinfo),
            }
            out.push('@');
            &rest[at + 1..]
        }
        None => rest,
    };
    // `password=VALUE` anywhere after it (a query parameter), up to the next `&`.
    let mut remaining = after;
    while let Some(found) = remaining.to_ascii_lowercase().find("password=") {
        let value_start = found + "password=".len();
        out.push_str(&remaining[..value_start]);
        out.push_str("***");
        remaining = &remaining[value_start..];
        remaining = &remaining[remaining.find('&').unwrap_or(remaining.len())..];
    }
    out.push_str(remaining);
    out
}

//! `etcd3+http://` URLs: tooz's options, and lockutils' own.

use std::path::PathBuf;
use std::time::Duration;

use crate::{
    DEFAULT_ANSWER_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_KEY_PREFIX, DEFAULT_PORT,
    DEFAULT_TIMEOUT,
};

/// What a URL says, checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Options {
    /// `http://host:port` or `https://host:port`: where requests go, and what messages name.
    pub endpoint: String,
    /// The URL fit for messages: scheme, host and port (no options, no file names).
    pub target: String,
    pub tls: bool,
    /// The lease TTL of a held lock, in seconds (`lock_timeout`, else `timeout`).
    pub ttl: u64,
    pub key_prefix: Vec<u8>,
    pub connect_timeout: Duration,
    pub answer_timeout: Duration,
    /// The gateway's path: `v3` (etcd 3.4 and later), `v3beta` or `v3alpha`.
    pub api_version: String,
    pub ca_cert: Option<PathBuf>,
    pub cert_key: Option<PathBuf>,
    pub cert_cert: Option<PathBuf>,
}

/// The URL options this crate understands: tooz's first, then lockutils' own.
pub const OPTIONS: &[&str] = &[
    "timeout",
    "lock_timeout",
    "ca_cert",
    "cert_key",
    "cert_cert",
    "protocol",
    "api_version",
    "membership_timeout",
    "key_prefix",
    "connect_timeout",
    "answer_timeout",
];

impl Options {
    /// Parses `url`; the error is the reason only (the caller names the URL, redacted).
    pub fn parse(url: &str) -> Result<Options, String> {
        let (scheme, rest) = url
            .split_once("://")
            .ok_or("not an etcd URL (expected etcd3+http://host:port)")?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "etcd3+http" => false,
            "etcd3+https" => true,
            other => {
                return Err(format!(
                    "unknown scheme {other:?} (expected etcd3+http:// or etcd3+https://)"
                ));
            }
        };
        let (authority_path, query) = match rest.split_once('?') {
            Some((a, q)) => (a, Some(q)),
            None => (rest, None),
        };
        let authority_path = authority_path.split('#').next().unwrap_or_default();
        let (authority, path) = match authority_path.find('/') {
            Some(at) => (&authority_path[..at], &authority_path[at..]),
            None => (authority_path, ""),
        };
        if !path.is_empty() && path != "/" {
            return Err(format!(
                "an etcd URL has no path (found {path:?}; the key prefix is the option key_prefix)"
            ));
        }
        if authority.contains('@') {
            // Never echo it: it may be a password.
            return Err(
                "etcd URLs take no user or password (etcd's authentication is not \
                        supported)"
                    .to_owned(),
            );
        }
        let (host, port) = split_host_port(authority)?;
        let host = if host.is_empty() { "localhost" } else { host };

        let mut timeout: Option<u64> = None;
        let mut lock_timeout: Option<u64> = None;
        let mut options = Options {
            endpoint: String::new(),
            target: String::new(),
            tls,
            ttl: 0,
            key_prefix: DEFAULT_KEY_PREFIX.as_bytes().to_vec(),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            answer_timeout: DEFAULT_ANSWER_TIMEOUT,
            api_version: "v3".to_owned(),
            ca_cert: None,
            cert_key: None,
            cert_cert: None,
        };
        let mut seen: Vec<String> = Vec::new();
        for pair in query
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
        {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            let name = percent_decode(name)?;
            let value = String::from_utf8(percent_decode_bytes(value)?)
                .map_err(|_| format!("option {name}: not UTF-8"))?;
            if seen.contains(&name) {
                return Err(format!("option {name} given twice"));
            }
            seen.push(name.clone());
            match name.as_str() {
                "timeout" => timeout = Some(whole_seconds(&name, &value)?),
                "lock_timeout" => lock_timeout = Some(whole_seconds(&name, &value)?),
                "ca_cert" => options.ca_cert = Some(file(&name, &value)?),
                "cert_key" => options.cert_key = Some(file(&name, &value)?),
                "cert_cert" => options.cert_cert = Some(file(&name, &value)?),
                "protocol" => {
                    let wanted = if tls { "https" } else { "http" };
                    if !value.eq_ignore_ascii_case(wanted) {
                        return Err(format!(
                            "option protocol={value} contradicts the scheme {scheme} \
                             (the scheme says {wanted})"
                        ));
                    }
                }
                "api_version" => match value.as_str() {
                    "v3" | "v3beta" | "v3alpha" => options.api_version = value,
                    _ => {
                        return Err(format!(
                            "option api_version={value:?}: expected v3, v3beta or v3alpha"
                        ));
                    }
                },
                // tooz's group membership lease: nothing to do with locks, accepted so that one
                // URL serves both.
                "membership_timeout" => {
                    whole_seconds(&name, &value)?;
                }
                "key_prefix" => {
                    if value.is_empty() {
                        return Err("option key_prefix is empty: every lock would share the \
                                    key space with the rest of the cluster's keys"
                            .to_owned());
                    }
                    options.key_prefix = value.into_bytes();
                }
                "connect_timeout" => options.connect_timeout = seconds(&name, &value)?,
                "answer_timeout" => options.answer_timeout = seconds(&name, &value)?,
                _ => {
                    return Err(format!(
                        "unknown option {name:?} (known: {})",
                        OPTIONS.join(", ")
                    ));
                }
            }
        }
        if options.cert_key.is_some() != options.cert_cert.is_some() {
            return Err(
                "options cert_key and cert_cert go together (a client certificate \
                        and its key)"
                    .to_owned(),
            );
        }
        if !tls
            && (options.ca_cert.is_some()
                || options.cert_key.is_some()
                || options.cert_cert.is_some())
        {
            return Err(
                "TLS options (ca_cert, cert_key, cert_cert) with an etcd3+http:// \
                        URL: use etcd3+https://"
                    .to_owned(),
            );
        }
        options.ttl = lock_timeout.or(timeout).unwrap_or(DEFAULT_TIMEOUT);
        let http = if tls { "https" } else { "http" };
        options.endpoint = format!("{http}://{host}:{port}");
        options.target = format!("{}://{host}:{port}", scheme.to_ascii_lowercase());
        Ok(options)
    }
}

fn split_host_port(authority: &str) -> Result<(&str, u16), String> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let end = rest
            .find(']')
            .ok_or("an IPv6 address in brackets lacks its closing ]")?;
        let host = &authority[..end + 2];
        let after = &rest[end + 1..];
        match after.strip_prefix(':') {
            Some(port) => (host, Some(port)),
            None if after.is_empty() => (host, None),
            None => return Err(format!("unexpected {after:?} after the host")),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        }
    };
    let port = match port {
        None | Some("") => DEFAULT_PORT,
        Some(port) => port
            .parse::<u16>()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("port {port:?} is not a port number"))?,
    };
    Ok((host, port))
}

/// tooz reads `timeout` and `lock_timeout` with `int()`; etcd's lease TTLs are whole seconds.
fn whole_seconds(name: &str, value: &str) -> Result<u64, String> {
    value
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|s| (1..=1_000_000).contains(s))
        .ok_or_else(|| {
            format!("option {name}={value:?}: expected whole seconds, from 1 to 1000000")
        })
}

/// lockutils' own timeouts: seconds, fractions allowed (`answer_timeout=2.5`).
fn seconds(name: &str, value: &str) -> Result<Duration, String> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s > 0.0 && *s <= 86_400.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("option {name}={value:?}: expected seconds, more than 0"))
}

fn file(name: &str, value: &str) -> Result<PathBuf, String> {
    if value.is_empty() {
        return Err(format!("option {name} is empty (expected a file)"));
    }
    Ok(PathBuf::from(value))
}

fn percent_decode(text: &str) -> Result<String, String> {
    String::from_utf8(percent_decode_bytes(text)?).map_err(|_| "an option name is not UTF-8".into())
}

fn percent_decode_bytes(text: &str) -> Result<Vec<u8>, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' => {
                let hex = bytes
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or("a % in the URL's options is not followed by two hex digits")?;
                out.push(hex);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tooz_urls_get_tooz_defaults() {
        let o = Options::parse("etcd3+http://10.0.0.5:2379").unwrap();
        assert_eq!(o.endpoint, "http://10.0.0.5:2379");
        assert_eq!(o.target, "etcd3+http://10.0.0.5:2379");
        assert_eq!(o.ttl, 30);
        assert_eq!(o.key_prefix, b"/tooz/locks");
        assert_eq!(o.api_version, "v3");
        let o = Options::parse("etcd3+http://db?timeout=10").unwrap();
        assert_eq!((o.endpoint.as_str(), o.ttl), ("http://db:2379", 10));
        let o = Options::parse("etcd3+http://db:1?timeout=10&lock_timeout=3").unwrap();
        assert_eq!(o.ttl, 3);
        let o = Options::parse("ETCD3+HTTPS://[::1]:2379/?ca_cert=/etc/ca.pem").unwrap();
        assert_eq!(o.endpoint, "https://[::1]:2379");
        assert!(o.tls);
        assert_eq!(
            o.ca_cert.as_deref(),
            Some(std::path::Path::new("/etc/ca.pem"))
        );
    }

    #[test]
    fn lockutils_options() {
        let o = Options::parse(
            "etcd3+http://h?key_prefix=%2Fmy%2Flocks%2F&connect_timeout=0.5&answer_timeout=2",
        )
        .unwrap();
        assert_eq!(o.key_prefix, b"/my/locks/");
        assert_eq!(o.connect_timeout, Duration::from_millis(500));
        assert_eq!(o.answer_timeout, Duration::from_secs(2));
    }

    #[test]
    fn bad_urls_are_refused_with_the_reason() {
        for (url, says) in [
            ("etcd3+http://h?color=blue", "unknown option \"color\""),
            ("etcd3+http://h?timeout=1&timeout=2", "given twice"),
            ("etcd3+http://h?lock_timeout=0", "lock_timeout"),
            ("etcd3+http://h?lock_timeout=1.5", "whole seconds"),
            ("etcd3+http://h?answer_timeout=-1", "answer_timeout"),
            ("etcd3+http://h?answer_timeout=NaN", "answer_timeout"),
            ("etcd3+http://h:port", "not a port"),
            ("etcd3+http://h/locks", "no path"),
            ("etcd3+http://user:s3cret@h", "no user or password"),
            ("etcd3+http://h?ca_cert=/x", "use etcd3+https"),
            ("etcd3+https://h?cert_key=/x", "go together"),
            ("etcd3+https://h?protocol=http", "contradicts"),
            ("etcd3+http://h?key_prefix=", "key_prefix is empty"),
            ("etcd3+http://h?api_version=v2", "api_version"),
            ("etcd://h", "unknown scheme"),
            ("etcd3+http://h?x=%zz", "two hex digits"),
        ] {
            let err = Options::parse(url).unwrap_err();
            assert!(err.contains(says), "{url}: {err}");
            assert!(!err.contains("s3cret"), "{url}: {err}");
        }
    }
}

//! The backend URL: tooz's form (`redis://[[user]:password@]host[:port][?options]`, a Unix
//! socket as `redis:///path`, Sentinel as `?sentinel=NAME&sentinel_fallback=HOST:PORT`), and
//! this crate's options. An option nobody knows is refused rather than ignored.

use std::time::Duration;

use crate::{
    DEFAULT_ANSWER_TIMEOUT, DEFAULT_CONNECT_TIMEOUT, DEFAULT_LOCK_TIMEOUT, DEFAULT_NAMESPACE,
    MIN_LOCK_TIMEOUT,
};

/// Where the server is.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Endpoint {
    /// One server.
    Tcp { host: String, port: u16 },
    /// One server on a Unix socket.
    Unix(String),
    /// The master that these Sentinels name `master`.
    Sentinel {
        master: String,
        sentinels: Vec<(String, u16)>,
        username: Option<String>,
        password: Option<String>,
    },
}

/// TLS to the server (`rediss://`, or tooz's `ssl=true`), with the files the URL names.
#[derive(Clone, Debug, PartialEq, Default)]
pub(crate) struct Tls {
    /// `ssl_ca_certs`: the CA certificates (PEM) to trust instead of the system's.
    pub(crate) ca_certs: Option<String>,
    /// `ssl_certfile` and `ssl_keyfile`: a client certificate and its key (PEM).
    pub(crate) certfile: Option<String>,
    pub(crate) keyfile: Option<String>,
}

#[cfg(feature = "tls")]
impl Tls {
    /// The certificates the files name, if any (read at each connect: renewed files are used
    /// by the next connection).
    pub(crate) fn certificates(&self) -> Result<Option<redis::TlsCertificates>, redis::RedisError> {
        fn read(option: &str, path: &str) -> Result<Vec<u8>, redis::RedisError> {
            std::fs::read(path).map_err(|e| {
                redis::RedisError::from((
                    redis::ErrorKind::InvalidClientConfig,
                    "cannot read a TLS file",
                    format!("{option} {path}: {e}"),
                ))
            })
        }
        if *self == Tls::default() {
            return Ok(None);
        }
        let root_cert = match &self.ca_certs {
            Some(path) => Some(read("ssl_ca_certs", path)?),
            None => None,
        };
        let client_tls = match (&self.certfile, &self.keyfile) {
            (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
                client_cert: read("ssl_certfile", cert)?,
                client_key: read("ssl_keyfile", key)?,
            }),
            _ => None,
        };
        Ok(Some(redis::TlsCertificates {
            client_tls,
            root_cert,
        }))
    }
}

/// A parsed URL.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Options {
    pub(crate) endpoint: Endpoint,
    pub(crate) tls: Option<Tls>,
    pub(crate) username: Option<String>,
    pub(crate) password: Option<String>,
    pub(crate) db: i64,
    pub(crate) namespace: String,
    pub(crate) lock_timeout: Duration,
    pub(crate) answer_timeout: Duration,
    pub(crate) connect_timeout: Duration,
}

/// tooz's options that change nothing about a lock: accepted and ignored, so that a tooz URL
/// works unchanged.
const IGNORED: &[&str] = &[
    "retry_on_timeout",
    "socket_keepalive",
    "health_check_interval",
    "membership_timeout",
];

/// Seconds as a duration: a positive number (tooz takes `timeout` and `lock_timeout` as
/// integers; fractions are this crate's).
fn seconds(option: &str, value: &str) -> Result<Duration, String> {
    value
        .trim()
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .filter(|d| *d >= Duration::from_millis(1))
        .ok_or_else(|| {
            format!("{option} must be a positive number of seconds (at least 0.001), not {value:?}")
        })
}

/// Refuses an option given twice.
fn once<T>(slot: &Option<T>, option: &str) -> Result<(), String> {
    match slot {
        Some(_) => Err(format!("the option {option} is given twice")),
        None => Ok(()),
    }
}

fn host_port(option: &str, value: &str) -> Result<(String, u16), String> {
    let bad = || format!("{option} must be HOST:PORT, not {value:?}");
    let (host, port) = value.rsplit_once(':').ok_or_else(bad)?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad());
    }
    Ok((host.to_owned(), port.parse().map_err(|_| bad())?))
}

/// Parses `url` (the reason of the error never contains the password).
pub(crate) fn parse(url: &str) -> Result<Options, String> {
    let parsed = url::Url::parse(url).map_err(|e| format!("not a valid Redis URL: {e}"))?;
    let rediss = match parsed.scheme() {
        "redis" => false,
        "rediss" => true,
        other => {
            return Err(format!(
                "not a Redis URL (scheme {other:?}, expected redis:// or rediss://)"
            ));
        }
    };
    let mut ssl: Option<bool> = None;
    let mut tls_files = Tls::default();
    let username = Some(parsed.username())
        .filter(|u| !u.is_empty())
        .map(percent);
    let password = parsed.password().map(percent).filter(|p| !p.is_empty());

    let mut namespace = None;
    let mut timeout = None;
    let mut lock_timeout = None;
    let mut answer_timeout = None;
    let mut socket_timeout = None;
    let mut connect_timeout = None;
    let mut db = None;
    let mut sentinel = None;
    let mut fallbacks = Vec::new();
    let mut sentinel_username = None;
    let mut sentinel_password = None;
    for (option, value) in parsed.query_pairs() {
        let value = value.into_owned();
        match &*option {
            "namespace" => {
                once(&namespace, &option)?;
                namespace = Some(value);
            }
            "timeout" => {
                once(&timeout, &option)?;
                timeout = Some(seconds("timeout", &value)?);
            }
            "lock_timeout" => {
                once(&lock_timeout, &option)?;
                lock_timeout = Some(seconds("lock_timeout", &value)?);
            }
            crate::ANSWER_TIMEOUT_OPTION => {
                once(&answer_timeout, &option)?;
                answer_timeout = Some(seconds(crate::ANSWER_TIMEOUT_OPTION, &value)?);
            }
            "socket_timeout" => {
                once(&socket_timeout, &option)?;
                socket_timeout = Some(seconds("socket_timeout", &value)?);
            }
            "socket_connect_timeout" => {
                once(&connect_timeout, &option)?;
                connect_timeout = Some(seconds("socket_connect_timeout", &value)?);
            }
            "db" => {
                once(&db, &option)?;
                db = Some(
                    value
                        .trim()
                        .parse::<i64>()
                        .ok()
                        .filter(|d| *d >= 0)
                        .ok_or_else(|| {
                            format!("db must be a database number (0, 1, ...), not {value:?}")
                        })?,
                );
            }
            "encoding" => {
                if !matches!(value.to_ascii_lowercase().as_str(), "utf8" | "utf-8") {
                    return Err(format!(
                        "encoding {value:?} is not supported: lock names are sent as UTF-8"
                    ));
                }
            }
            "sentinel" => {
                once(&sentinel, &option)?;
                sentinel = Some(value);
            }
            "sentinel_fallback" => fallbacks.push(host_port("sentinel_fallback", &value)?),
            "sentinel_username" => sentinel_username = Some(value),
            "sentinel_password" => sentinel_password = Some(value),
            "password" | "username" => {
                return Err(format!(
                    "give the {option} in the URL's user information \
                     (redis://user:password@host), as tooz reads it"
                ));
            }
            "ssl" => {
                once(&ssl, &option)?;
                ssl = Some(match value.trim().to_ascii_lowercase().as_str() {
                    "1" | "true" | "yes" | "on" | "y" | "t" => true,
                    "0" | "false" | "no" | "off" | "n" | "f" => false,
                    _ => return Err(format!("ssl must be true or false, not {value:?}")),
                });
            }
            "ssl_ca_certs" => tls_files.ca_certs = Some(value),
            "ssl_certfile" => tls_files.certfile = Some(value),
            "ssl_keyfile" => tls_files.keyfile = Some(value),
            "sentinel_ssl" => {
                return Err(
                    "sentinel_ssl (TLS to the Sentinels) is not supported: the Sentinels are \
                     asked in the clear, the master is reached with TLS if ssl=true"
                        .to_owned(),
                );
            }
            ignored if IGNORED.contains(&ignored) => {}
            unknown => {
                return Err(format!(
                    "unknown option {unknown:?} (known: namespace, timeout, lock_timeout, \
                     {}, socket_timeout, socket_connect_timeout, db, encoding, sentinel, \
                     sentinel_fallback, sentinel_username, sentinel_password, {})",
                    crate::ANSWER_TIMEOUT_OPTION,
                    IGNORED.join(", ")
                ));
            }
        }
    }
    let path = parsed.path();
    let endpoint = match parsed.host_str().filter(|h| !h.is_empty()) {
        Some(host) => {
            if !matches!(path, "" | "/") {
                return Err(format!(
                    "the URL has a path ({path:?}): tooz ignores it; choose the database \
                     with ?db=N"
                ));
            }
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_owned();
            let port = parsed.port().unwrap_or(crate::DEFAULT_PORT);
            match sentinel {
                Some(master) => {
                    let mut sentinels = vec![(host, port)];
                    sentinels.extend(fallbacks);
                    Endpoint::Sentinel {
                        master,
                        sentinels,
                        username: sentinel_username,
                        password: sentinel_password,
                    }
                }
                None if !fallbacks.is_empty()
                    || sentinel_username.is_some()
                    || sentinel_password.is_some() =>
                {
                    return Err(
                        "sentinel_fallback, sentinel_username and sentinel_password need \
                         sentinel=MASTER_NAME"
                            .to_owned(),
                    );
                }
                None => Endpoint::Tcp { host, port },
            }
        }
        None => {
            if path.is_empty() || path == "/" {
                return Err("the URL names neither a host nor a socket path".to_owned());
            }
            if sentinel.is_some() {
                return Err("sentinel needs the Sentinel's host:port in the URL".to_owned());
            }
            Endpoint::Unix(percent(path))
        }
    };
    let tls = match (rediss, ssl) {
        (true, Some(false)) => return Err("rediss:// with ssl=false: choose one".to_owned()),
        (true, _) | (false, Some(true)) => Some(tls_files),
        (false, _) => {
            if tls_files != Tls::default() {
                return Err(
                    "ssl_ca_certs, ssl_certfile and ssl_keyfile need TLS (rediss://, or ssl=true)"
                        .to_owned(),
                );
            }
            None
        }
    };
    if let Some(tls) = &tls {
        if !cfg!(feature = "tls") {
            return Err(
                "TLS (rediss://, ssl=true) needs lockutils-redis's `tls` feature".to_owned(),
            );
        }
        if matches!(endpoint, Endpoint::Unix(_)) {
            return Err("TLS over a Unix socket is not supported".to_owned());
        }
        if tls.certfile.is_some() != tls.keyfile.is_some() {
            return Err("ssl_certfile and ssl_keyfile go together".to_owned());
        }
    }
    let namespace = namespace.unwrap_or_else(|| DEFAULT_NAMESPACE.to_owned());
    let lock_timeout = lock_timeout.or(timeout).unwrap_or(DEFAULT_LOCK_TIMEOUT);
    if lock_timeout < MIN_LOCK_TIMEOUT {
        return Err(format!(
            "the lock timeout must be at least {MIN_LOCK_TIMEOUT:?} (a held lock is extended \
             every third of it), not {lock_timeout:?}"
        ));
    }
    Ok(Options {
        endpoint,
        tls,
        username,
        password,
        db: db.unwrap_or(0),
        namespace,
        lock_timeout,
        answer_timeout: answer_timeout
            .or(socket_timeout)
            .unwrap_or(DEFAULT_ANSWER_TIMEOUT),
        connect_timeout: connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
    })
}

fn percent(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tooz_urls_parse_with_toozs_defaults() {
        let o =
            parse("redis://:s3cret@db.example:6380?namespace=cinder_ns&lock_timeout=2").unwrap();
        assert_eq!(
            o.endpoint,
            Endpoint::Tcp {
                host: "db.example".into(),
                port: 6380
            }
        );
        assert_eq!(o.password.as_deref(), Some("s3cret"));
        assert_eq!(o.username, None);
        assert_eq!(o.namespace, "cinder_ns");
        assert_eq!(o.lock_timeout, Duration::from_secs(2));
        assert_eq!(o.answer_timeout, DEFAULT_ANSWER_TIMEOUT);

        let o = parse("redis://localhost").unwrap();
        assert_eq!(o.namespace, "_tooz");
        assert_eq!(o.lock_timeout, Duration::from_secs(30));
        assert_eq!(o.db, 0);
        assert_eq!(
            o.endpoint,
            Endpoint::Tcp {
                host: "localhost".into(),
                port: 6379
            }
        );
        // `timeout` is the lock timeout unless lock_timeout is given, as in tooz.
        let o = parse("redis://h?timeout=7").unwrap();
        assert_eq!(o.lock_timeout, Duration::from_secs(7));
        let o = parse("redis://h?timeout=7&lock_timeout=3&db=2&answer_timeout=0.5").unwrap();
        assert_eq!(o.lock_timeout, Duration::from_secs(3));
        assert_eq!(o.db, 2);
        assert_eq!(o.answer_timeout, Duration::from_millis(500));
        let o = parse("redis://app:p%40ss@h?socket_timeout=4&socket_connect_timeout=1.5").unwrap();
        assert_eq!(o.username.as_deref(), Some("app"));
        assert_eq!(o.password.as_deref(), Some("p@ss"));
        assert_eq!(o.answer_timeout, Duration::from_secs(4));
        assert_eq!(o.connect_timeout, Duration::from_millis(1500));
        let o = parse("redis:///run/redis/redis.sock?db=1").unwrap();
        assert_eq!(o.endpoint, Endpoint::Unix("/run/redis/redis.sock".into()));
    }

    #[test]
    fn tls_is_rediss_or_toozs_ssl_option() {
        let plain = parse("redis://h").unwrap();
        assert_eq!(plain.tls, None);
        for url in [
            "rediss://h?ssl_ca_certs=/etc/ca.pem",
            "redis://h?ssl=true&ssl_ca_certs=/etc/ca.pem",
        ] {
            let parsed = parse(url);
            if cfg!(feature = "tls") {
                let tls = parsed.unwrap().tls.expect("TLS");
                assert_eq!(tls.ca_certs.as_deref(), Some("/etc/ca.pem"));
            } else {
                let e = parsed.unwrap_err();
                assert!(e.contains("`tls` feature"), "{url}: {e}");
            }
        }
        if cfg!(feature = "tls") {
            let e = parse("rediss://h?ssl_certfile=/c.pem").unwrap_err();
            assert!(e.contains("go together"), "{e}");
        }
    }

    #[test]
    fn sentinel_urls_list_every_sentinel() {
        let o = parse(
            "redis://:pw@s1:26379?sentinel=mymaster&sentinel_fallback=s2:26380\
             &sentinel_fallback=[::1]:26381&sentinel_password=spw",
        )
        .unwrap();
        assert_eq!(
            o.endpoint,
            Endpoint::Sentinel {
                master: "mymaster".into(),
                sentinels: vec![
                    ("s1".into(), 26379),
                    ("s2".into(), 26380),
                    ("::1".into(), 26381)
                ],
                username: None,
                password: Some("spw".into()),
            }
        );
    }

    #[test]
    fn bad_urls_are_refused_with_the_reason_and_no_password() {
        for (url, expected) in [
            (
                "redis://:s3cret@h?lock_timout=3",
                "unknown option \"lock_timout\"",
            ),
            (
                "redis://:s3cret@h?lock_timeout=0",
                "lock_timeout must be a positive",
            ),
            (
                "redis://:s3cret@h?lock_timeout=soon",
                "lock_timeout must be a positive",
            ),
            (
                "redis://:s3cret@h?answer_timeout=-1",
                "answer_timeout must be a positive",
            ),
            ("redis://:s3cret@h?db=x", "db must be a database number"),
            ("redis://:s3cret@h/2", "choose the database with ?db=N"),
            ("redis://:s3cret@h?password=x", "user information"),
            ("redis://:s3cret@h?namespace=a&namespace=b", "given twice"),
            ("redis://:s3cret@h?encoding=latin1", "not supported"),
            (
                "redis://:s3cret@h?sentinel_fallback=nohostport",
                "HOST:PORT",
            ),
            ("redis://:s3cret@h?ssl_ca_certs=/ca.pem", "need TLS"),
            ("redis://:s3cret@h?lock_timeout=0.05", "at least 100ms"),
            ("redis://:s3cret@h?timeout=0.01", "at least 100ms"),
            ("rediss://:s3cret@h?ssl=false", "choose one"),
            ("redis://:s3cret@h?ssl=maybe", "true or false"),
            ("redis://:s3cret@h?ssl=1&sentinel_ssl=1", "not supported"),
            ("postgres://:s3cret@h", "not a Redis URL"),
            ("redis://:s3cret@h:99999", "not a valid Redis URL"),
        ] {
            let err = parse(url).unwrap_err();
            assert!(err.contains(expected), "{url}: {err}");
            assert!(!err.contains("s3cret"), "{url}: {err}");
        }
        // tooz's options that change nothing about a lock are accepted.
        parse("redis://h?retry_on_timeout=true&socket_keepalive=1&health_check_interval=5&membership_timeout=9&encoding=utf8").unwrap();
    }
}

//! `etcd3+https://` against the test server's TLS port (`scripts/etcd`: its own CA, client
//! certificates required): the right settings work; wrong ones are errors that name the
//! endpoint or the option, never a key's content, and never hang.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use lockutils::lock;

/// The TLS URL and the directory of certificates, or `None` to skip.
fn tls() -> Option<(String, PathBuf)> {
    match (
        std::env::var("LOCKUTILS_TEST_ETCD_TLS_URL"),
        std::env::var_os("LOCKUTILS_TEST_ETCD_TLS_DIR"),
    ) {
        (Ok(url), Some(dir)) if !url.is_empty() => Some((url, PathBuf::from(dir))),
        _ => {
            assert!(
                std::env::var_os("LOCKUTILS_REQUIRE_ETCD").is_none(),
                "LOCKUTILS_REQUIRE_ETCD is set but LOCKUTILS_TEST_ETCD_TLS_URL is not: run under scripts/etcd"
            );
            eprintln!("skipped: no etcd server (run under scripts/etcd)");
            None
        }
    }
}

fn url(base: &str, dir: &std::path::Path, ca: &str, client: bool) -> String {
    let mut url = format!(
        "{base}?lock_timeout=2&connect_timeout=2&answer_timeout=2&ca_cert={}",
        dir.join(ca).display()
    );
    if client {
        url.push_str(&format!(
            "&cert_cert={}&cert_key={}",
            dir.join("client.pem").display(),
            dir.join("client-key.pem").display()
        ));
    }
    url
}

fn unique(name: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{name}-{}-{nanos}", std::process::id())
}

#[test]
#[ignore = "needs an etcd server: scripts/test runs it (scripts/etcd, --include-ignored)"]
fn locks_over_tls_with_a_client_certificate() {
    let Some((base, dir)) = tls() else { return };
    let etcd = lockutils_etcd::backend(&url(&base, &dir, "ca.pem", true)).unwrap();
    let name = unique("tls");
    let guard = lock(&name).external(true).backend(etcd).acquire().unwrap();
    assert!(guard.is_external_held().unwrap());
    assert!(guard.fencing_token().is_some());
    let err = lock(&name)
        .external(true)
        .backend(etcd)
        .blocking(false)
        .acquire();
    // (The in-process lock refuses first here; the other tests cover etcd refusing.)
    assert!(err.unwrap_err().is_acquire_failed());
    drop(guard);
    assert!(etcd.held(Some(&name)).unwrap().is_empty());
}

/// The error of one acquire through `url`, checked to come within the bounds.
fn failure(url: &str) -> String {
    let text = failure_text(url);
    eprintln!("{text}");
    text
}

fn failure_text(url: &str) -> String {
    let etcd = lockutils_etcd::backend(url).unwrap();
    let started = Instant::now();
    let err = lock(&unique("tls-bad"))
        .external(true)
        .backend(etcd)
        .acquire()
        .unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(5), "{err}");
    err.to_string()
}

#[test]
#[ignore = "needs an etcd server: scripts/test runs it (scripts/etcd, --include-ignored)"]
fn wrong_tls_settings_are_errors() {
    let Some((base, dir)) = tls() else { return };
    let endpoint = base.replacen("etcd3+", "", 1);

    // A CA that did not sign the server's certificate.
    let text = failure(&url(&base, &dir, "other-ca.pem", true));
    assert!(text.contains(&endpoint), "{text}");
    assert!(text.to_lowercase().contains("certificate"), "{text}");

    // No client certificate where the server requires one.
    let text = failure(&url(&base, &dir, "ca.pem", false));
    assert!(
        text.contains(&endpoint) && text.contains("cannot reach etcd"),
        "{text}"
    );

    // Plain HTTP to the TLS port.
    let plain = base.replacen("etcd3+https", "etcd3+http", 1);
    let text = failure(&plain);
    assert!(
        text.contains(&endpoint.replacen("https", "http", 1)),
        "{text}"
    );

    // TLS to the plain port.
    let http_port =
        std::env::var("LOCKUTILS_TEST_ETCD_URL")
            .unwrap()
            .replacen("etcd3+http", "etcd3+https", 1);
    let text = failure(&url(&http_port, &dir, "ca.pem", true));
    assert!(text.contains("cannot reach etcd"), "{text}");
}

#[test]
fn unusable_certificate_files_are_named_without_their_content() {
    let dir = tempfile::tempdir().unwrap();
    let secret =
        "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n-----END PRIVATE KEY-----\n";
    std::fs::write(dir.path().join("key.pem"), secret).unwrap();
    std::fs::write(dir.path().join("empty.pem"), "").unwrap();
    let d = dir.path().display();
    for (url, says) in [
        (
            format!("etcd3+https://127.0.0.1:1?ca_cert={d}/missing.pem"),
            "ca_cert",
        ),
        (
            format!("etcd3+https://127.0.0.1:1?ca_cert={d}/empty.pem"),
            "no PEM certificate",
        ),
        (
            format!("etcd3+https://127.0.0.1:1?cert_cert={d}/empty.pem&cert_key={d}/key.pem"),
            "cert_cert",
        ),
        (
            format!("etcd3+https://127.0.0.1:1?cert_cert={d}/key.pem&cert_key={d}/key.pem"),
            "cert_",
        ),
    ] {
        let err = lockutils_etcd::EtcdBackend::new(&url)
            .err()
            .expect(&url)
            .to_string();
        assert!(err.contains(says), "{url}: {err}");
        assert!(!err.contains("c2VjcmV0"), "{url}: {err}");
    }
}

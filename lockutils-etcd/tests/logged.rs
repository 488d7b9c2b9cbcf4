//! A lost lease is logged by the keep-alive, without anyone asking: the warning names the
//! lock and the server, and says why. (A binary of its own: it installs a global subscriber.)

mod support;

use std::sync::{Arc, Mutex};

use lockutils::Wait;
use support::{Raw, etcd, post, unique, wait_until};

/// Everything logged, as text.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Captured {
        self.clone()
    }
}

#[test]
#[ignore = "needs an etcd server: scripts/test runs it (scripts/etcd, --include-ignored)"]
fn the_keep_alive_logs_a_lease_revoked_from_outside() {
    let Some(etcd) = etcd() else { return };
    let captured = Captured::default();
    tracing::subscriber::set_global_default(
        tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_ansi(false)
            .finish(),
    )
    .unwrap();
    let name = unique("logged");
    let mut held = Raw::new(etcd, &name, None);
    held.acquire(Wait::Never).unwrap();
    let full = lockutils::lock_file_name(&name, None).unwrap();
    let lease = etcd.held(Some(&full)).unwrap()[0].lease;
    post("v3/lease/revoke", &format!("{{\"ID\":\"{lease}\"}}"));
    let text = || String::from_utf8_lossy(&captured.0.lock().unwrap()).into_owned();
    wait_until("the loss logged", || text().contains("lost:"));
    let text = text();
    assert!(text.contains("WARN"), "{text}");
    assert!(text.contains(&name), "{text}");
    assert!(text.contains(etcd.target()), "{text}");
    assert!(text.contains("lease expired or was revoked"), "{text}");
    // Known lost: no need to ask etcd.
    assert!(!held.is_held().unwrap());
    let err = held.release().unwrap_err().to_string();
    assert!(err.contains("lost before its release"), "{err}");
}

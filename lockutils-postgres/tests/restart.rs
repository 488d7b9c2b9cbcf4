//! Lock loss: the server restarts while a lock is held, and the guards say so. In a test
//! binary of its own, since the restart ends every session on the server.
#![cfg(target_os = "linux")]

mod support;

use std::process::Command;

use lockutils::lock;
use support::{RESTART_ENV, db, unique};

fn restart_server() {
    let script = std::env::var(RESTART_ENV).unwrap_or_else(|_| {
        panic!("{RESTART_ENV} is not set: run the tests under scripts/postgres")
    });
    let status = Command::new(&script)
        .status()
        .expect("run the restart script");
    assert!(status.success(), "{script} failed: {status}");
}

#[test]
#[ignore = "needs a PostgreSQL server: scripts/test runs it (scripts/postgres, --include-ignored)"]
fn a_server_restart_while_held_is_reported_as_lost_and_locking_recovers() {
    let Some(db) = db() else { return };
    let name = unique("restart");
    let guard = lock(&name).external(true).backend(db).acquire().unwrap();
    let own = db.lock(&unique("restart-own"), None).unwrap();
    let own_guard = own.write().unwrap();
    let token = guard.fencing_token().unwrap();
    assert!(guard.is_external_held().unwrap());
    assert!(own_guard.is_held().unwrap());
    // An idle pooled session dies with the restart too.
    drop(db.lock(&unique("pooled"), None).unwrap().write().unwrap());
    #[cfg(feature = "async")]
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    #[cfg(feature = "async")]
    let awaited = db.lock(&unique("restart-awaited"), None).unwrap();
    #[cfg(feature = "async")]
    let awaited_guard = runtime.block_on(awaited.write_async()).unwrap();
    #[cfg(feature = "async")]
    assert!(awaited_guard.is_held().unwrap());

    restart_server();

    assert!(
        !guard.is_external_held().unwrap_or(false),
        "the guard did not notice the lost session"
    );
    assert!(!own_guard.is_held().unwrap_or(false));
    // Releasing a lost lock reports it (the guard of `lock()` logs it).
    let err = own_guard.release().unwrap_err();
    assert!(err.to_string().contains("may have lost the lock"), "{err}");
    #[cfg(feature = "async")]
    {
        assert!(!awaited_guard.is_held().unwrap_or(false));
        assert!(
            !runtime
                .block_on(awaited_guard.is_held_async())
                .unwrap_or(false)
        );
        let err = awaited_guard.release().unwrap_err();
        assert!(err.to_string().contains("may have lost the lock"), "{err}");
        // An awaited acquisition recovers too.
        let again = runtime.block_on(awaited.write_async()).unwrap();
        assert!(again.is_held().unwrap());
    }
    drop(guard);

    // New acquisitions work (dead pooled sessions are replaced), with greater tokens.
    let again = lock(&name).external(true).backend(db).acquire().unwrap();
    assert!(again.is_external_held().unwrap());
    assert!(again.fencing_token().unwrap() > token);
}

//! The DEBUG lines `lock()` writes, captured by a minimal `tracing` subscriber.

use std::fmt;

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

#[derive(Debug, Clone, PartialEq)]
struct Line {
    level: Level,
    target: String,
    message: String,
    lock: Option<String>,
}

/// The process-wide subscriber of this test binary: it files each event under the thread
/// that emitted it, for that thread's `captured` call, if any.
///
/// One global subscriber, installed before any test logs, rather than one scoped subscriber
/// per test: `tracing` caches each callsite's interest when first hit, and a first hit on one
/// thread racing the installation of a scoped subscriber on another can cache "never" and
/// lose that subscriber's events.
struct Capture;

thread_local! {
    static CAPTURED: std::cell::RefCell<Option<Vec<Line>>> = const { std::cell::RefCell::new(None) };
}

struct Fields<'a>(&'a mut Line);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        match field.name() {
            "lock" => self.0.lock = Some(value.to_owned()),
            "message" => self.0.message = value.to_owned(),
            _ => {}
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if field.name() == "message" {
            self.0.message = format!("{value:?}");
        }
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut line = Line {
            level: *event.metadata().level(),
            target: event.metadata().target().to_owned(),
            message: String::new(),
            lock: None,
        };
        event.record(&mut Fields(&mut line));
        CAPTURED.with(|c| {
            if let Some(lines) = c.borrow_mut().as_mut() {
                lines.push(line);
            }
        });
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

/// Installs [`Capture`]; every test calls this (directly or through `captured`) first.
fn install() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| tracing::subscriber::set_global_default(Capture).expect("first subscriber"));
}

/// What `f` logs on this thread.
fn captured(f: impl FnOnce()) -> Vec<Line> {
    install();
    CAPTURED.with(|c| *c.borrow_mut() = Some(Vec::new()));
    f();
    CAPTURED.with(|c| c.borrow_mut().take()).unwrap_or_default()
}

fn messages(lines: &[Line]) -> Vec<&str> {
    lines.iter().map(|l| l.message.as_str()).collect()
}

#[test]
fn lock_logs_oslos_lines_with_the_name_as_a_field() {
    let lines = captured(|| {
        let _g = lockutils::lock("instance-42").acquire().unwrap();
    });
    assert_eq!(
        messages(&lines),
        [
            r#"Acquiring lock "instance-42""#,
            r#"Acquired lock "instance-42""#,
            r#"Releasing lock "instance-42""#,
        ]
    );
    for line in &lines {
        assert_eq!(line.level, Level::DEBUG);
        assert_eq!(line.target, lockutils::LOG_TARGET);
        assert_eq!(line.lock.as_deref(), Some("instance-42"));
    }
}

#[test]
fn fair_locks_log_the_same_lines() {
    let lines = captured(|| {
        let _g = lockutils::lock("fair-log").fair(true).acquire().unwrap();
    });
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[1].message, r#"Acquired lock "fair-log""#);
}

#[test]
fn a_failed_acquire_logs_only_the_attempt() {
    install();
    let _held = lockutils::lock("busy-log").acquire().unwrap();
    let lines = std::thread::scope(|s| {
        s.spawn(|| {
            captured(|| {
                assert!(
                    lockutils::lock("busy-log")
                        .blocking(false)
                        .acquire()
                        .is_err()
                );
            })
        })
        .join()
        .unwrap()
    });
    assert_eq!(messages(&lines), [r#"Acquiring lock "busy-log""#]);
}

#[test]
fn do_log_false_and_internal_lock_are_silent() {
    let lines = captured(|| {
        drop(lockutils::lock("quiet").do_log(false).acquire().unwrap());
        drop(lockutils::internal_lock("quiet", None, true).unwrap());
    });
    assert_eq!(lines, []);
}

#[test]
fn external_locks_log_the_external_semaphore_line() {
    let dir = tempfile::tempdir().unwrap();
    let lines = captured(|| {
        let _g = lockutils::lock("ext-log")
            .external(true)
            .lock_path(dir.path())
            .acquire()
            .unwrap();
    });
    assert_eq!(
        messages(&lines),
        [
            r#"Acquiring lock "ext-log""#,
            r#"Acquired lock "ext-log""#,
            r#"Acquired external semaphore "ext-log""#,
            r#"Releasing lock "ext-log""#,
        ]
    );
}

#[test]
fn a_failed_removal_logs_oslos_warning() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rm-dir");
    std::fs::create_dir(&path).unwrap();
    let lines = captured(|| {
        assert!(lockutils::remove_external_lock_file("rm-dir", None, Some(dir.path())).is_err());
    });
    let warning = lines
        .iter()
        .find(|l| l.level == Level::WARN)
        .expect("a warning");
    assert_eq!(
        warning.message,
        format!("Failed to remove file {}", path.display())
    );
    assert_eq!(warning.lock.as_deref(), Some("rm-dir"));
}

#[lockutils::synchronized("sync-log")]
fn logged_function() {}

#[lockutils::synchronized("sync-busy", blocking = false)]
fn logged_busy() -> Result<(), lockutils::Error> {
    Ok(())
}

struct Worker;

impl Worker {
    #[lockutils::synchronized("sync-method")]
    fn work(&self) {}
}

#[test]
fn synchronized_logs_oslos_lines_with_the_qualified_function_name() {
    let lines = captured(logged_function);
    let messages = messages(&lines);
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert_eq!(
        messages[0],
        r#"Acquiring lock "sync-log" by "logging::logged_function""#
    );
    assert!(
        messages[1]
            .starts_with(r#"Lock "sync-log" acquired by "logging::logged_function" :: waited 0.0"#),
        "{}",
        messages[1]
    );
    assert!(messages[1].ends_with('s') && messages[1].len() == messages[1].trim().len());
    assert!(
        messages[2]
            .starts_with(r#"Lock "sync-log" "released" by "logging::logged_function" :: held 0.0"#),
        "{}",
        messages[2]
    );
    let lines = captured(|| Worker.work());
    assert_eq!(
        lines[0].message,
        r#"Acquiring lock "sync-method" by "logging::Worker::work""#
    );
}

#[test]
fn synchronized_logs_unacquired_when_it_did_not_get_the_lock() {
    install();
    let _held = lockutils::lock("sync-busy").acquire().unwrap();
    let lines = std::thread::scope(|s| {
        s.spawn(|| captured(|| assert!(logged_busy().is_err())))
            .join()
            .unwrap()
    });
    assert_eq!(
        messages(&lines),
        [
            r#"Acquiring lock "sync-busy" by "logging::logged_busy""#,
            r#"Lock "sync-busy" "unacquired" by "logging::logged_busy" :: held N/A"#,
        ]
    );
}

//! `lockutils list --backend-url`: the locks a server reports as held.

use crate::{EXIT_ERROR, EXIT_USAGE};
use lockutils::{Error, backend_for_url, redact_url};

/// `lockutils list --backend-url URL`: prints the locks that the backend of `url` (one
/// registered for its scheme, e.g. by `lockutils_postgres::install()`) reports as held, by
/// anyone, whose name starts with `prefix`: a table (name, time left before the server
/// would let the lock go if its holder stopped renewing it, detail), or JSON.
pub fn list_held(url: &str, prefix: Option<&str>, json: bool) -> i32 {
    const PROGRAM: &str = "lockutils list";
    let listed = backend_for_url(url).and_then(|backend| backend.list_held(prefix));
    let mut held = match listed {
        Ok(held) => held,
        Err(Error::Backend { target, reason, .. }) => {
            eprintln!("{PROGRAM}: {target}: {reason}");
            // No backend for the scheme, or a URL it refuses: the command line needs fixing.
            return if backend_for_url(url).is_err() {
                EXIT_USAGE
            } else {
                EXIT_ERROR
            };
        }
        Err(e) => {
            eprintln!("{PROGRAM}: {e}");
            return EXIT_ERROR;
        }
    };
    held.sort_by(|a, b| a.name.cmp(&b.name));
    if json {
        let items: Vec<String> = held
            .iter()
            .map(|lock| {
                format!(
                    "{{\"name\":{},\"expires_in_ms\":{},\"detail\":{}}}",
                    crate::dir::json_string(&lock.name),
                    lock.expires_in
                        .map_or("null".to_owned(), |d| d.as_millis().to_string()),
                    lock.detail
                        .as_deref()
                        .map_or("null".to_owned(), crate::dir::json_string)
                )
            })
            .collect();
        println!("[{}]", items.join(","));
    } else {
        println!("# {}", redact_url(url));
        println!("{:<40} {:<12} DETAIL", "NAME", "EXPIRES IN");
        for lock in &held {
            let expires = lock
                .expires_in
                .map_or("-".to_owned(), |d| format!("{:.1}s", d.as_secs_f64()));
            println!(
                "{:<40} {:<12} {}",
                lock.name,
                expires,
                lock.detail.as_deref().unwrap_or("-")
            );
        }
    }
    0
}

//! `lockutils list` and `lockutils clean`: a lock directory as a whole.

use std::io;

use crate::{EXIT_ERROR, EXIT_USAGE};
use lockutils::lock_dir::{LockDirectory, LockFileState, Removal};

/// Opens `dir` for `list`/`clean`, or says why not (and returns the exit status).
fn open_dir(program: &str, dir: &std::path::Path) -> Result<LockDirectory, i32> {
    LockDirectory::open(dir).map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => {
            eprintln!(
                "{program}: lock directory {}: no such directory (check --lock-path or \
                 OSLO_LOCK_PATH)",
                dir.display()
            );
            EXIT_USAGE
        }
        io::ErrorKind::NotADirectory => {
            eprintln!(
                "{program}: lock directory {}: not a directory",
                dir.display()
            );
            EXIT_USAGE
        }
        _ => {
            eprintln!("{program}: lock directory {}: {e}", dir.display());
            EXIT_ERROR
        }
    })
}

pub(crate) fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `lockutils list`: prints the lock files of `dir` (with `prefix`, only those with it): a
/// table, or JSON. Entries that are not lock files are left out (with `verbose`, reported
/// on stderr with the reason). Creates nothing.
pub fn list(dir: &std::path::Path, prefix: Option<&str>, json: bool, verbose: bool) -> i32 {
    const PROGRAM: &str = "lockutils list";
    let lock_dir = match open_dir(PROGRAM, dir) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let listing = match lock_dir.list(prefix) {
        Ok(listing) => listing,
        Err(e) => {
            eprintln!("{PROGRAM}: {}: {e}", dir.display());
            return EXIT_ERROR;
        }
    };
    if verbose {
        for skipped in &listing.skipped {
            eprintln!(
                "{PROGRAM}: skipped {}: {}",
                dir.join(&skipped.name).display(),
                skipped.reason
            );
        }
    }
    for (name, e) in &listing.problems {
        eprintln!("{PROGRAM}: {}: {e}", dir.join(name).display());
    }
    let mode = |state: LockFileState| match state {
        LockFileState::Free => "free",
        LockFileState::Shared => "shared",
        LockFileState::Exclusive => "exclusive",
    };
    let pid = |info: &lockutils::lock_dir::LockFileInfo| match (info.state, info.pid) {
        (LockFileState::Free, _) => "-".to_owned(),
        (_, Some(pid)) => pid.to_string(),
        (_, None) => "unknown".to_owned(),
    };
    if json {
        let items: Vec<String> = listing
            .locks
            .iter()
            .map(|s| {
                format!(
                    "{{\"name\":{},\"held\":{},\"mode\":{},\"pid\":{}}}",
                    json_string(&s.name),
                    s.state != LockFileState::Free,
                    json_string(mode(s.state)),
                    s.pid.map_or("null".to_owned(), |p| p.to_string())
                )
            })
            .collect();
        println!("[{}]", items.join(","));
    } else {
        println!("{:<40} {:<10} PID", "NAME", "STATE");
        for s in &listing.locks {
            println!("{:<40} {:<10} {}", s.name, mode(s.state), pid(s));
        }
    }
    if listing.problems.is_empty() {
        0
    } else {
        EXIT_ERROR
    }
}

/// What `lockutils clean` takes.
#[derive(Debug, Clone, Default)]
pub struct CleanOptions {
    /// Only lock files with this prefix.
    pub prefix: Option<String>,
    /// Only files not modified for this long.
    pub older_than: Option<std::time::Duration>,
    /// Report; remove nothing.
    pub dry_run: bool,
    /// Report what is left alone, and why.
    pub verbose: bool,
}

/// `lockutils clean`: removes the lock files of `dir` that nobody holds (see
/// [`LockDirectory::remove_if_unused`]): only empty regular files, never a link, a
/// subdirectory or a file with content, each while holding its lock, all through one
/// descriptor of the directory. With `dry_run` (or `verbose`) what is left alone is
/// reported too, with the reason.
pub fn clean(dir: &std::path::Path, options: &CleanOptions) -> i32 {
    const PROGRAM: &str = "lockutils clean";
    let lock_dir = match open_dir(PROGRAM, dir) {
        Ok(d) => d,
        Err(code) => return code,
    };
    let listing = match lock_dir.list(options.prefix.as_deref()) {
        Ok(listing) => listing,
        Err(e) => {
            eprintln!("{PROGRAM}: {}: {e}", dir.display());
            return EXIT_ERROR;
        }
    };
    let report_skips = options.dry_run || options.verbose;
    if report_skips {
        for skipped in &listing.skipped {
            println!(
                "skipped {}: {}",
                dir.join(&skipped.name).display(),
                skipped.reason
            );
        }
    }
    let mut problems = listing.problems.len();
    for (name, e) in &listing.problems {
        eprintln!("{PROGRAM}: {}: {e}", dir.join(name).display());
    }
    for info in &listing.locks {
        let path = lock_dir.path_of(&info.name);
        if info.state != LockFileState::Free {
            if report_skips {
                println!("skipped {}: held", path.display());
            }
            continue;
        }
        if options.dry_run {
            let recent = options
                .older_than
                .is_some_and(|age| info.modified.elapsed().is_ok_and(|e| e < age));
            if recent {
                println!("skipped {}: modified too recently", path.display());
            } else {
                println!("would remove {}", path.display());
            }
            continue;
        }
        match lock_dir.remove_if_unused(&info.name, options.older_than) {
            Ok(Removal::Removed) => println!("removed {}", path.display()),
            Ok(Removal::Missing) => {}
            Ok(Removal::InUse) if report_skips => println!("skipped {}: held", path.display()),
            Ok(Removal::TooRecent) if report_skips => {
                println!("skipped {}: modified too recently", path.display())
            }
            Ok(Removal::NotALockFile(reason)) if report_skips => {
                println!("skipped {}: {reason}", path.display())
            }
            Ok(_) => {}
            Err(e) => {
                eprintln!("{PROGRAM}: {}: {e}", path.display());
                problems += 1;
            }
        }
    }
    if problems > 0 { EXIT_ERROR } else { 0 }
}

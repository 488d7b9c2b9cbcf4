//! `lockutils`: take lockutils (and oslo) locks from the shell.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

/// Every status the command line can return, shown by `--help`.
const EXIT_STATUSES: &str = "\
Exit statuses:
  N      run, wrapper: the command's own status (128+N if signal N killed it)
  0      list, clean: done
  1      an error while working (a message on stderr says what and where); wrapper: the
         command succeeded but its lock directory could not be removed
  2      usage error or missing configuration (a message names the flag or variable to set)
  75     run: the lock was not taken (held, with --nonblocking or --timeout)
  126    run, wrapper: the command could not be run
  127    run, wrapper: the command was not found";

#[derive(Parser)]
#[command(
    name = "lockutils",
    version,
    about = "Named locks from the shell, compatible with oslo.concurrency",
    after_help = EXIT_STATUSES
)]
struct Cli {
    #[command(subcommand)]
    command: Commands,
}

#[derive(Subcommand)]
enum Commands {
    /// Run a command holding a named lock, then release it.
    ///
    /// Exits with the command's status, or 75 if the lock was not taken
    /// (with --nonblocking or --timeout); 2 if the lock directory is missing.
    ///
    /// Example: lockutils run nova-compute --lock-path /var/lib/nova/tmp -- ./migrate.sh
    #[command(after_help = EXIT_STATUSES)]
    Run {
        /// The lock name.
        name: String,
        /// Also take the inter-process lock: a lock file, or on the server that
        /// LOCKUTILS_BACKEND_URL names (postgres://..., etcd3+http://..., redis://...).
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
        external: bool,
        /// Lock file prefix (the file is PREFIX-NAME).
        #[arg(long)]
        prefix: Option<String>,
        /// Lock directory (default: $OSLO_LOCK_PATH).
        #[arg(long, value_name = "DIR")]
        lock_path: Option<PathBuf>,
        /// Take the shared (reader) side of the inter-process reader/writer lock (a lock file,
        /// or a shared advisory lock on the LOCKUTILS_BACKEND_URL server).
        #[arg(long)]
        shared: bool,
        /// Take the fair lock: on lock files, the processes waiting for it (lockutils run
        /// --fair, and lock(name).fair(true).external(true) in Rust) get it in the order
        /// they asked, first come, first served.
        #[arg(long)]
        fair: bool,
        /// Fail at once (exit 75) if the lock is held.
        #[arg(long)]
        nonblocking: bool,
        /// Wait at most this long (e.g. 5s, 250ms), then fail with exit 75.
        #[arg(long, value_parser = parse_duration)]
        timeout: Option<Duration>,
        /// The command and its arguments (after --).
        #[arg(last = true, required = true)]
        command: Vec<OsString>,
    },
    /// List the lock files of a directory: held or free, shared or exclusive, and the
    /// holder's PID where the OS reports one ("unknown" otherwise). With --backend-url, the
    /// locks held on that server instead (name, time left before it expires unless renewed).
    ///
    /// Example: lockutils list --lock-path /var/lib/nova/tmp --json
    List {
        /// Lock directory (default: $OSLO_LOCK_PATH).
        #[arg(long, value_name = "DIR", conflicts_with = "backend_url")]
        lock_path: Option<PathBuf>,
        /// List the locks held on this server (a URL of a registered backend, such as
        /// etcd3+http://host:2379) instead of a lock directory.
        #[arg(long, value_name = "URL")]
        backend_url: Option<String>,
        /// Only lock files with this prefix (PREFIX-NAME).
        #[arg(long)]
        prefix: Option<String>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
        /// Also report, on stderr, the entries that are not lock files, and why.
        #[arg(long, short)]
        verbose: bool,
    },
    /// Remove the lock files nobody holds, each while holding its lock (safe against
    /// processes that are about to wait on it). Held files are left alone, and so is
    /// anything that is not a lock file (an empty regular file): files with content, links,
    /// directories, FIFOs, sockets and devices.
    ///
    /// Example: lockutils clean --lock-path /var/lib/nova/tmp --older-than 1h --dry-run
    Clean {
        /// Lock directory (default: $OSLO_LOCK_PATH).
        #[arg(long, value_name = "DIR")]
        lock_path: Option<PathBuf>,
        /// Only files not modified for this long (e.g. 1h).
        #[arg(long, value_parser = parse_duration, value_name = "DURATION")]
        older_than: Option<Duration>,
        /// Only lock files with this prefix (PREFIX-NAME).
        #[arg(long)]
        prefix: Option<String>,
        /// Report what would be removed, and what is left alone and why; remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Report what is left alone, and why.
        #[arg(long, short)]
        verbose: bool,
    },
    /// oslo's lockutils-wrapper: run a command with OSLO_LOCK_PATH set to a private
    /// temporary directory, removed afterwards.
    ///
    /// Example: lockutils wrapper python -m pytest tests/
    Wrapper {
        /// The command and its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
        command: Vec<OsString>,
    },
}

/// `--lock-path`, else `OSLO_LOCK_PATH`; `None` (after saying so) if neither is set.
fn lock_dir(given: Option<PathBuf>) -> Option<PathBuf> {
    let dir = given.or_else(|| lockutils::LockConfig::from_env().lock_path);
    if dir.is_none() {
        eprintln!("lockutils: no lock directory: pass --lock-path or set OSLO_LOCK_PATH");
        // (exit status 2: missing configuration)
    }
    dir
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    lockutils::parse_duration(text)
}

fn main() {
    // postgres://, etcd3+http(s):// and redis:// backend URLs (LOCKUTILS_BACKEND_URL) take
    // external locks across hosts.
    lockutils_postgres::install();
    lockutils_etcd::install();
    lockutils_redis::install();
    let cli = Cli::parse();
    let code = match cli.command {
        Commands::Run {
            name,
            external,
            prefix,
            lock_path,
            shared,
            fair,
            nonblocking,
            timeout,
            command,
        } => {
            let options = lockutils_cli::RunOptions {
                name,
                external,
                prefix,
                lock_path,
                shared,
                fair,
                nonblocking,
                timeout,
            };
            lockutils_cli::run(&options, &command)
        }
        Commands::Wrapper { command } => lockutils_cli::wrapper("lockutils wrapper", &command),
        Commands::List {
            backend_url: Some(url),
            prefix,
            json,
            ..
        } => lockutils_cli::list_held(&url, prefix.as_deref(), json),
        Commands::List {
            lock_path,
            prefix,
            json,
            verbose,
            backend_url: None,
        } => match lock_dir(lock_path) {
            Some(dir) => lockutils_cli::list(&dir, prefix.as_deref(), json, verbose),
            None => lockutils_cli::EXIT_USAGE,
        },
        Commands::Clean {
            lock_path,
            prefix,
            older_than,
            dry_run,
            verbose,
        } => match lock_dir(lock_path) {
            Some(dir) => {
                let options = lockutils_cli::CleanOptions {
                    prefix,
                    older_than,
                    dry_run,
                    verbose,
                };
                lockutils_cli::clean(&dir, &options)
            }
            None => lockutils_cli::EXIT_USAGE,
        },
    };
    std::process::exit(code);
}

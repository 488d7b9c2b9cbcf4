//! `lockutils`: take lockutils (and oslo) locks from the shell.

use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "lockutils",
    version,
    about = "Named locks from the shell, compatible with oslo.concurrency"
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
    /// (with --nonblocking or --timeout).
    ///
    /// Example: lockutils run nova-compute --lock-path /var/lib/nova/tmp -- ./migrate.sh
    Run {
        /// The lock name.
        name: String,
        /// Also take the inter-process lock file.
        #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "BOOL")]
        external: bool,
        /// Lock file prefix (the file is PREFIX-NAME).
        #[arg(long)]
        prefix: Option<String>,
        /// Lock directory (default: $OSLO_LOCK_PATH).
        #[arg(long, value_name = "DIR")]
        lock_path: Option<PathBuf>,
        /// Take the shared (reader) side of the inter-process reader/writer lock.
        #[arg(long)]
        shared: bool,
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

fn parse_duration(text: &str) -> Result<Duration, String> {
    lockutils::parse_duration(text)
}

fn main() {
    let cli = Cli::parse();
    let code = match cli.command {
        Commands::Run {
            name,
            external,
            prefix,
            lock_path,
            shared,
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
                nonblocking,
                timeout,
            };
            lockutils_cli::run(&options, &command)
        }
        Commands::Wrapper { command } => lockutils_cli::wrapper("lockutils wrapper", &command),
    };
    std::process::exit(code);
}

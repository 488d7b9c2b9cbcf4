//! `lockutils-wrapper COMMAND [ARGS...]`: oslo's wrapper. Runs the command with
//! `OSLO_LOCK_PATH` set to a private temporary directory (0700), removes the directory
//! afterwards, and exits with the command's status (128 + N if signal N killed it).

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    if matches!(args.first().and_then(|a| a.to_str()), Some("-h" | "--help")) {
        println!(
            "usage: lockutils-wrapper COMMAND [ARGS...]\n\n\
             Runs COMMAND with OSLO_LOCK_PATH set to a new private directory, removes it\n\
             afterwards, and exits with COMMAND's status (128+N if killed by signal N).\n\n\
             example: lockutils-wrapper python -m pytest tests/"
        );
        return;
    }
    std::process::exit(lockutils_cli::wrapper("lockutils-wrapper", &args));
}

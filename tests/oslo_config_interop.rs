//! Config files read as the real oslo.config reads them: a corpus of edge cases, each read by
//! [`LockConfig::from_ini_file`] and by Python's `oslo_config` (with oslo.concurrency's
//! options registered, as a service does), which must give the same `lock_path` and
//! `disable_process_locking`, or both fail.
//!
//! Like `tests/oslo_interop.rs`, this needs `LOCKUTILS_OSLO_PYTHON` (the python of
//! `scripts/oslo-venv`); with `LOCKUTILS_REQUIRE_OSLO=1` it cannot silently skip.
#![cfg(target_os = "linux")]

mod common;

use std::path::Path;
use std::process::Command;

use lockutils::LockConfig;

/// The Python side: `python -c SCRIPT FILE...` prints, for each file, `ok <lock_path as UTF-8
/// hex, or -> <disable_process_locking>` or `err <exception>`.
const SCRIPT: &str = r#"
import sys
from oslo_config import cfg
from oslo_concurrency import opts

def load(path):
    conf = cfg.ConfigOpts()
    for group, options in opts.list_opts():
        conf.register_opts(options, group=group)
    try:
        conf(["--config-file", path], default_config_files=[], default_config_dirs=[])
        lock_path = conf.oslo_concurrency.lock_path
        disable = conf.oslo_concurrency.disable_process_locking
    except BaseException as e:
        return "err " + type(e).__name__ + ": " + " ".join(str(e).split())
    shown = "-" if lock_path is None else lock_path.encode("utf-8", "surrogateescape").hex()
    return "ok " + shown + " " + str(disable)

for path in sys.argv[1:]:
    print(load(path), flush=True)
"#;

/// What is expected of a case.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The same result on both sides.
    Same,
    /// Rust refuses with an error about interpolation, whatever Python makes of it: the value
    /// refers to an option whose value depends on the Python program.
    RustRefuses,
}

use Expect::{RustRefuses, Same};

/// The corpus: (name, file contents, expectation).
const CORPUS: &[(&str, &[u8], Expect)] = &[
    // Section names.
    ("plain", b"[oslo_concurrency]\nlock_path = /a\n", Same),
    ("upper-case section", b"[OSLO_CONCURRENCY]\nlock_path = /a\n", Same),
    ("mixed-case section", b"[Oslo_Concurrency]\nlock_path = /a\n", Same),
    ("spaces inside the brackets", b"[ oslo_concurrency ]\nlock_path = /a\n", Same),
    ("space before the closing bracket", b"[oslo_concurrency ]\nlock_path = /a\n", Same),
    ("double brackets", b"[[oslo_concurrency]]\nlock_path = /a\n", Same),
    ("extra closing bracket", b"[oslo_concurrency]]\nlock_path = /a\n", Same),
    ("trailing spaces after the header", b"[oslo_concurrency]   \nlock_path = /a\n", Same),
    ("header indented", b" [oslo_concurrency]\nlock_path = /a\n", Same),
    ("comment after the header", b"[oslo_concurrency] # locks\nlock_path = /a\n", Same),
    ("text after the header", b"[oslo_concurrency]x\nlock_path = /a\n", Same),
    ("unclosed header", b"[oslo_concurrency\nlock_path = /a\n", Same),
    ("empty header", b"[]\nlock_path = /a\n", Same),
    ("only in DEFAULT", b"[DEFAULT]\nlock_path = /a\n", Same),
    ("lower-case default", b"[default]\nlock_path = /a\n", Same),
    ("no section", b"", Same),
    ("comments only", b"# nova.conf\n; nothing here\n", Same),
    ("other sections only", b"[DEFAULT]\ndebug = true\n[database]\nconnection = x\n", Same),
    (
        "sections merged",
        b"[oslo_concurrency]\nlock_path = /a\n[x]\ny = 1\n[OSLO_CONCURRENCY]\ndisable_process_locking = yes\n",
        Same,
    ),
    (
        "merged, the last wins",
        b"[OSLO_CONCURRENCY]\nlock_path = /a\n[oslo_concurrency]\nlock_path = /b\n",
        Same,
    ),
    ("key before any section", b"lock_path = /a\n[oslo_concurrency]\n", Same),
    ("key after comments before any section", b"# c\n\nx = 1\n", Same),
    // Keys.
    ("duplicate keys", b"[oslo_concurrency]\nlock_path = /a\nlock_path = /b\n", Same),
    (
        "a bad value replaced later",
        b"[oslo_concurrency]\ndisable_process_locking = maybe\ndisable_process_locking = on\n",
        Same,
    ),
    ("upper-case key", b"[oslo_concurrency]\nLOCK_PATH = /a\n", Same),
    ("dashed key", b"[oslo_concurrency]\nlock-path = /a\n", Same),
    ("key with a space", b"[oslo_concurrency]\nlock path = /a\n", Same),
    ("indented key after the header", b"[oslo_concurrency]\n  lock_path = /a\n", Same),
    ("empty key", b"[oslo_concurrency]\n= /a\n", Same),
    ("empty key with a colon", b"[x]\n:\n", Same),
    ("no separator", b"[oslo_concurrency]\nlock_path\n", Same),
    // Separators.
    ("colon", b"[oslo_concurrency]\nlock_path: /a\n", Same),
    ("equals then colon", b"[oslo_concurrency]\nlock_path = a=b:c\n", Same),
    ("colon then equals", b"[oslo_concurrency]\nlock_path: a=b\n", Same),
    ("equals colon", b"[oslo_concurrency]\nlock_path=:x\n", Same),
    ("double equals", b"[oslo_concurrency]\nlock_path==x\n", Same),
    ("equals as the value", b"[oslo_concurrency]\nlock_path = =\n", Same),
    ("no spaces", b"[oslo_concurrency]\nlock_path=/a\n", Same),
    // Quotes.
    ("one double quote", b"[oslo_concurrency]\nlock_path = \"\n", Same),
    ("one single quote", b"[oslo_concurrency]\nlock_path = '\n", Same),
    ("empty quotes", b"[oslo_concurrency]\nlock_path = \"\"\n", Same),
    ("single quotes", b"[oslo_concurrency]\nlock_path = '/a'\n", Same),
    ("double quotes", b"[oslo_concurrency]\nlock_path = \"/a\"\n", Same),
    ("mismatched quotes", b"[oslo_concurrency]\nlock_path = \"/a'\n", Same),
    ("opening quote only", b"[oslo_concurrency]\nlock_path = \"/a\n", Same),
    ("quote inside", b"[oslo_concurrency]\nlock_path = \"a\"b\"\n", Same),
    ("nested quotes", b"[oslo_concurrency]\nlock_path = \"'/a'\"\n", Same),
    ("spaces inside quotes", b"[oslo_concurrency]\nlock_path = \" /a \"\n", Same),
    ("quoted boolean", b"[oslo_concurrency]\ndisable_process_locking = \"true\"\n", Same),
    // Continuation lines.
    ("continuation", b"[oslo_concurrency]\nlock_path = /a\n  /continued\n", Same),
    ("continuation with a tab", b"[oslo_concurrency]\nlock_path = /a\n\t/b\n\t/c\n", Same),
    ("indented comment continues", b"[oslo_concurrency]\nlock_path = /a\n  # note\n", Same),
    ("indented header continues", b"[oslo_concurrency]\nlock_path = /a\n  [x]\n", Same),
    ("empty first line", b"[oslo_concurrency]\nlock_path =\n    /a\n", Same),
    ("quoted first line", b"[oslo_concurrency]\nlock_path = \"/a\"\n  \"b\"\n", Same),
    ("blank line ends the value", b"[oslo_concurrency]\nlock_path = /a\n\n  /b\n", Same),
    ("white-space line ends it", b"[oslo_concurrency]\nlock_path = /a\n   \n  /b\n", Same),
    ("comment ends it", b"[oslo_concurrency]\nlock_path = /a\n# c\n  /b\n", Same),
    ("continued boolean", b"[oslo_concurrency]\ndisable_process_locking = true\n  false\n", Same),
    ("continuation first", b"  lock_path = /a\n", Same),
    // Comments.
    ("hash after a value", b"[oslo_concurrency]\nlock_path = /a # no comment\n", Same),
    ("semicolon after a value", b"[oslo_concurrency]\nlock_path = /a ; no comment\n", Same),
    (
        "commented-out assignments",
        b"[oslo_concurrency]\nlock_path = /a\n; lock_path = /b\n#lock_path = /c\n",
        Same,
    ),
    ("hash after a boolean", b"[oslo_concurrency]\ndisable_process_locking = true # c\n", Same),
    // Empty values.
    ("empty value", b"[oslo_concurrency]\nlock_path =\n", Same),
    ("empty value then another key", b"[oslo_concurrency]\nlock_path =\nx = 1\n", Same),
    ("empty boolean", b"[oslo_concurrency]\ndisable_process_locking =\n", Same),
    // White space and line endings.
    ("tabs", b"[oslo_concurrency]\nlock_path\t=\t/a\t\n", Same),
    ("CRLF", b"[oslo_concurrency]\r\nlock_path = /a\r\ndisable_process_locking = 1\r\n", Same),
    ("CR", b"[oslo_concurrency]\rlock_path = /a\r", Same),
    ("CR continuation", b"[oslo_concurrency]\r\nlock_path = /a\r  b\r\n", Same),
    (
        "CRLF continuation",
        b"[oslo_concurrency]\r\nlock_path = /a\r\n  b\r\n",
        Same,
    ),
    ("CR blank line", b"[x]\r\ny = 1\r\r  z\r\n", Same),
    ("no final newline", b"[oslo_concurrency]\nlock_path = /a", Same),
    ("form feed before the key", b"[oslo_concurrency]\n\x0clock_path = /a\n", Same),
    ("form feed before an empty key", b"[x]\n\x0c= /a\n", Same),
    ("vertical tab inside", b"[oslo_concurrency]\nlock_path = /a\x0bb\n", Same),
    ("file separator at the end", b"[oslo_concurrency]\nlock_path = /a\x1c\n", Same),
    ("NUL inside", b"[oslo_concurrency]\nlock_path = /a\x00b\n", Same),
    (
        "no-break and ideographic spaces",
        "[oslo_concurrency]\nlock_path\u{3000}=\u{a0}/a\u{2003}\n".as_bytes(),
        Same,
    ),
    ("no-break space first", "\u{a0}[oslo_concurrency]\n".as_bytes(), Same),
    ("line separator inside", "[oslo_concurrency]\nlock_path = /a\u{2028}b\n".as_bytes(), Same),
    ("next line inside", "[oslo_concurrency]\nlock_path = /a\u{85}b\n".as_bytes(), Same),
    ("byte order mark", "\u{feff}[oslo_concurrency]\nlock_path = /a\n".as_bytes(), Same),
    ("byte order mark in a comment", "\u{feff}# c\n[oslo_concurrency]\nlock_path = /a\n".as_bytes(), Same),
    ("byte order mark inside", "[oslo_concurrency]\nlock_path = /a\u{feff}\n".as_bytes(), Same),
    ("non-ASCII path", "[oslo_concurrency]\nlock_path = /var/lock/ñova\n".as_bytes(), Same),
    ("invalid UTF-8", b"[oslo_concurrency]\nlock_path = /a\xff\n", Same),
    // Booleans.
    ("TRUE", b"[oslo_concurrency]\ndisable_process_locking = TRUE\n", Same),
    ("Yes", b"[oslo_concurrency]\ndisable_process_locking = Yes\n", Same),
    ("1", b"[oslo_concurrency]\ndisable_process_locking = 1\n", Same),
    ("off", b"[oslo_concurrency]\ndisable_process_locking = off\n", Same),
    ("maybe", b"[oslo_concurrency]\ndisable_process_locking = maybe\n", Same),
    ("2", b"[oslo_concurrency]\ndisable_process_locking = 2\n", Same),
    // Substitution.
    ("escaped dollar", b"[oslo_concurrency]\nlock_path = /a/$$b\n", Same),
    ("backslash dollar", b"[oslo_concurrency]\nlock_path = /a/\\$b\n", Same),
    ("backslash double dollar", b"[oslo_concurrency]\nlock_path = /a/\\$$b\n", Same),
    (
        "dollars that start no name",
        b"[oslo_concurrency]\nlock_path = /x/$1 $ ${a b} ${} $/ $\n",
        Same,
    ),
    (
        "reference to the boolean",
        b"[oslo_concurrency]\nlock_path = /x/$disable_process_locking\n",
        Same,
    ),
    (
        "braced reference to the boolean",
        b"[oslo_concurrency]\ndisable_process_locking = on\nlock_path = /x/${disable_process_locking}\n",
        Same,
    ),
    (
        "reference with the group",
        b"[oslo_concurrency]\nlock_path = /x/${oslo_concurrency.disable_process_locking}\n",
        Same,
    ),
    (
        "boolean refers to the path",
        b"[oslo_concurrency]\nlock_path = yes\ndisable_process_locking = $lock_path\n",
        Same,
    ),
    (
        "boolean refers to the unset path",
        b"[oslo_concurrency]\ndisable_process_locking = ${lock_path}false\n",
        Same,
    ),
    (
        "reference in another section",
        b"[oslo_concurrency]\nlock_path = /a\n[DEFAULT]\nstate_path = $nothing\n",
        Same,
    ),
    (
        "reference in another key",
        b"[oslo_concurrency]\nlock_path = /a\nother = $nothing\n",
        Same,
    ),
    ("self reference", b"[oslo_concurrency]\nlock_path = /a/$lock_path\n", Same),
    (
        "mutual references",
        b"[oslo_concurrency]\nlock_path = $disable_process_locking\ndisable_process_locking = $lock_path\n",
        Same,
    ),
    ("unregistered option", b"[oslo_concurrency]\nlock_path = $state_path/tmp\n", Same),
    (
        "unregistered option set in DEFAULT",
        b"[DEFAULT]\nstate_path = /s\n[oslo_concurrency]\nlock_path = ${state_path}/tmp\n",
        Same,
    ),
    ("unknown group", b"[oslo_concurrency]\nlock_path = ${DEFAULT.state_path}\n", Same),
    (
        "upper-case group",
        b"[oslo_concurrency]\nlock_path = ${OSLO_CONCURRENCY.lock_path}\n",
        Same,
    ),
    ("upper-case name", b"[oslo_concurrency]\nlock_path = /$LOCK_PATH\n", Same),
    ("dot after a name", b"[oslo_concurrency]\nlock_path = /$disable_process_locking.d\n", Same),
    ("long s in a name", "[oslo_concurrency]\nlock_path = /$\u{17f}x\n".as_bytes(), Same),
    ("group name", b"[oslo_concurrency]\nlock_path = /$oslo_concurrency\n", Same),
    // oslo.config substitutes options the program registers, which lockutils cannot know.
    ("oslo.config's own option", b"[oslo_concurrency]\nlock_path = /x/$config_file\n", RustRefuses),
    ("oslo.config's own directory option", b"[oslo_concurrency]\nlock_path = /x/$config_dir\n", RustRefuses),
];

fn python() -> Option<String> {
    common::oslo_python("oslo.config")
}

/// What one side made of a file: `(lock_path, disable_process_locking)`, or the error.
type Outcome = Result<(Option<String>, bool), String>;

/// Reads the Python side's lines.
fn python_outcomes(python: &str, files: &[&Path]) -> Vec<Outcome> {
    let output = Command::new(python)
        .arg("-c")
        .arg(SCRIPT)
        .args(files)
        // Python decodes the files as UTF-8, as it does in the locales services run in.
        .env("PYTHONUTF8", "1")
        .output()
        .expect("start python");
    let stdout = String::from_utf8(output.stdout).unwrap();
    assert!(
        output.status.success(),
        "python failed: {}\n{stdout}",
        String::from_utf8_lossy(&output.stderr)
    );
    let outcomes: Vec<Outcome> = stdout
        .lines()
        .map(|line| match line.split_once(' ') {
            Some(("ok", rest)) => {
                let (path, disable) = rest.split_once(' ').unwrap();
                let path = (path != "-").then(|| unhex(path));
                Ok((path.filter(|p| !p.is_empty()), disable == "True"))
            }
            Some(("err", error)) => Err(error.to_owned()),
            _ => panic!("unexpected line from python: {line:?}"),
        })
        .collect();
    assert_eq!(outcomes.len(), files.len(), "python's output:\n{stdout}");
    outcomes
}

fn unhex(hex: &str) -> String {
    let bytes: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    String::from_utf8(bytes).unwrap()
}

fn rust_outcome(path: &Path) -> Outcome {
    LockConfig::from_ini_file(path)
        .map(|conf| {
            let lock_path = conf
                .lock_path
                .map(|p| p.into_os_string().into_string().unwrap());
            (lock_path, conf.disable_process_locking)
        })
        .map_err(|e| e.to_string())
}

#[test]
#[ignore = "needs the real oslo.concurrency: scripts/test runs it (LOCKUTILS_OSLO_PYTHON, --include-ignored)"]
fn config_files_read_as_oslo_config_reads_them() {
    let Some(py) = python() else { return };
    let dir = tempfile::tempdir().unwrap();
    let paths: Vec<_> = CORPUS
        .iter()
        .enumerate()
        .map(|(i, (_, text, _))| {
            let path = dir.path().join(format!("case{i:03}.conf"));
            std::fs::write(&path, text).unwrap();
            path
        })
        .collect();
    let files: Vec<&Path> = paths.iter().map(|p| p.as_path()).collect();
    let pythons = python_outcomes(&py, &files);

    let mut differences = Vec::new();
    let mut both_failed = 0;
    for (((name, text, expect), path), python) in CORPUS.iter().zip(&paths).zip(pythons) {
        let rust = rust_outcome(path);
        let text = String::from_utf8_lossy(text);
        match expect {
            Same => match (&rust, &python) {
                (Ok(r), Ok(p)) if r == p => {}
                (Err(r), Err(_)) => {
                    both_failed += 1;
                    // Errors name the file and a line of it (or the whole file).
                    let file = path.display().to_string();
                    if !r.starts_with(&file) {
                        differences.push(format!("{name}: the error names no file: {r}"));
                    }
                }
                _ => differences.push(format!(
                    "{name} ({text:?}):\n    rust:   {rust:?}\n    python: {python:?}"
                )),
            },
            RustRefuses => match &rust {
                Err(e) if e.contains("interpolation") => {}
                _ => differences.push(format!(
                    "{name} ({text:?}): rust should refuse it\n    rust:   {rust:?}\n    \
                     python: {python:?}"
                )),
            },
        }
    }
    assert!(
        differences.is_empty(),
        "{} of {} config files read differently from oslo.config:\n{}",
        differences.len(),
        CORPUS.len(),
        differences.join("\n")
    );
    // The corpus exercises both outcomes.
    assert!(
        both_failed > 10 && both_failed < CORPUS.len() - 30,
        "{both_failed}"
    );
}

/// Set in a child run of this binary (see `the_environment_overrides_files_as_in_oslo`): the
/// file `env_child` reads.
const CHILD_FILE_ENV: &str = "LOCKUTILS_TEST_INI_FILE";

/// An outcome with the lock directory that applies (`OSLO_LOCK_PATH` when the file and the
/// environment set none) and without the error's text.
fn effective(outcome: &Outcome, env_lock_path: Option<&str>) -> String {
    match outcome {
        Ok((path, disable)) => {
            let path = path.as_deref().or(env_lock_path.filter(|p| !p.is_empty()));
            format!("ok {path:?} {disable}")
        }
        Err(_) => "err".to_owned(),
    }
}

/// In a child run: prints what `from_ini_file` makes of the file, in this environment.
#[test]
fn env_child() {
    let Some(path) = std::env::var_os(CHILD_FILE_ENV) else {
        return;
    };
    let outcome = rust_outcome(Path::new(&path));
    let env_lock_path = std::env::var("OSLO_LOCK_PATH").ok();
    println!("outcome {}", effective(&outcome, env_lock_path.as_deref()));
}

#[test]
#[ignore = "needs the real oslo.concurrency: scripts/test runs it (LOCKUTILS_OSLO_PYTHON, --include-ignored)"]
fn the_environment_overrides_files_as_in_oslo() {
    let Some(py) = python() else { return };
    let cases: &[(&[(&str, &str)], &str)] = &[
        (
            &[("OS_OSLO_CONCURRENCY__LOCK_PATH", "/env")],
            "[oslo_concurrency]\nlock_path = /file\n",
        ),
        (
            &[("OS_OSLO_CONCURRENCY__LOCK_PATH", "")],
            "[oslo_concurrency]\nlock_path = /file\n",
        ),
        (
            &[(
                "OS_OSLO_CONCURRENCY__LOCK_PATH",
                "/env/$disable_process_locking",
            )],
            "[oslo_concurrency]\ndisable_process_locking = yes\n",
        ),
        (
            &[("OS_OSLO_CONCURRENCY__LOCK_PATH", "/env/$lock_path")],
            "[oslo_concurrency]\nlock_path = /file\n",
        ),
        (
            &[("OS_OSLO_CONCURRENCY__DISABLE_PROCESS_LOCKING", "maybe")],
            "[oslo_concurrency]\ndisable_process_locking = yes\n",
        ),
        (
            &[("OS_OSLO_CONCURRENCY__DISABLE_PROCESS_LOCKING", "ON")],
            "[oslo_concurrency]\ndisable_process_locking = maybe\n",
        ),
        (&[("OSLO_LOCK_PATH", "/default")], "[DEFAULT]\n"),
        (
            &[("OSLO_LOCK_PATH", "yes")],
            "[oslo_concurrency]\ndisable_process_locking = $lock_path\n",
        ),
        (
            &[("OSLO_LOCK_PATH", "/default")],
            "[oslo_concurrency]\nlock_path = ${lock_path}/x\n",
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut differences = Vec::new();
    for (i, (vars, text)) in cases.iter().enumerate() {
        let path = dir.path().join(format!("env{i}.conf"));
        std::fs::write(&path, text).unwrap();
        let clear = |command: &mut Command| {
            for var in [
                "OS_OSLO_CONCURRENCY__LOCK_PATH",
                "OS_OSLO_CONCURRENCY__DISABLE_PROCESS_LOCKING",
                "OSLO_LOCK_PATH",
            ] {
                command.env_remove(var);
            }
            command.envs(vars.iter().copied());
        };

        let mut child = Command::new(&exe);
        child
            .args([
                "env_child",
                "--exact",
                "--nocapture",
                "--test-threads=1",
                "-q",
            ])
            .env(CHILD_FILE_ENV, &path);
        clear(&mut child);
        let output = child.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let rust = stdout
            .lines()
            .find_map(|l| l.strip_prefix("outcome "))
            .unwrap_or_else(|| panic!("no outcome from the child: {stdout}"))
            .to_owned();

        let mut python = Command::new(&py);
        python
            .arg("-c")
            .arg(SCRIPT)
            .arg(&path)
            .env("PYTHONUTF8", "1");
        clear(&mut python);
        let output = python.output().unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout.lines().next().unwrap_or("");
        let python = match line.split_once(' ') {
            Some(("ok", rest)) => {
                let (p, disable) = rest.split_once(' ').unwrap();
                let p = (p != "-").then(|| unhex(p)).filter(|p| !p.is_empty());
                effective(&Ok((p, disable == "True")), None)
            }
            _ => "err".to_owned(),
        };
        if rust != python {
            differences.push(format!(
                "{vars:?} {text:?}:\n    rust:   {rust}\n    python: {python} ({line})"
            ));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}

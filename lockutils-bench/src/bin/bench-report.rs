//! Writes the side-by-side report: `report.md` (case, lockutils, baseline, oslo, ratios,
//! goals) and `chart.svg` (lockutils, baseline and oslo per case, on a log scale).
//!
//! ```text
//! bench-report --criterion target/criterion --data target/bench-report/data \
//!              --out target/bench-report [--date TEXT]
//! ```
//!
//! It reads criterion's estimates (the median of each benchmark), the measurement files the
//! benchmarks wrote (`LOCKUTILS_BENCH_OUT`) and the Python harness's `oslo.json`. A missing
//! figure shows as "—" and its goal as "no data"; the report never invents one.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use serde_json::Value;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-report: {e}");
            ExitCode::from(2)
        }
    }
}

struct Args {
    criterion: PathBuf,
    data: PathBuf,
    out: PathBuf,
    date: Option<String>,
    require_all: bool,
    /// A smoke run: say so in the report.
    smoke: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        criterion: PathBuf::from("target/criterion"),
        data: PathBuf::from("target/bench-report/data"),
        out: PathBuf::from("target/bench-report"),
        date: None,
        require_all: false,
        smoke: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--criterion" => args.criterion = value()?.into(),
            "--data" => args.data = value()?.into(),
            "--out" => args.out = value()?.into(),
            "--date" => args.date = Some(value()?),
            "--require-all" => args.require_all = true,
            "--smoke" => {
                args.smoke = true;
                args.require_all = true;
            }
            _ => {
                return Err(format!(
                    "unknown argument {flag:?}; usage: bench-report [--criterion DIR] \
                     [--data DIR] [--out DIR] [--date TEXT] [--require-all] [--smoke]"
                ));
            }
        }
    }
    Ok(args)
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let src = Sources::load(&args);
    let rows = rows(&src);
    std::fs::create_dir_all(&args.out)
        .map_err(|e| format!("creating {}: {e}", args.out.display()))?;
    let report = markdown(&rows, &src, &args);
    let chart = svg(&rows);
    for (name, text) in [("report.md", &report), ("chart.svg", &chart)] {
        let path = args.out.join(name);
        std::fs::write(&path, text).map_err(|e| format!("writing {}: {e}", path.display()))?;
    }
    print!("{report}");
    println!("\nWrote {}", args.out.join("report.md").display());
    println!("Wrote {}", args.out.join("chart.svg").display());
    let missing = missing_figures(&rows);
    if args.require_all && !missing.is_empty() {
        return Err(format!("figures missing: {}", missing.join("; ")));
    }
    Ok(())
}

/// The figures a complete run has and this one lacks.
fn missing_figures(rows: &[Row]) -> Vec<String> {
    let mut missing = Vec::new();
    for row in rows {
        let mut lacks = |what: &str, value: Option<f64>| {
            if value.is_none() {
                missing.push(format!("{} ({what})", row.case));
            }
        };
        lacks("lockutils", row.lockutils);
        if !row.baseline_name.is_empty() {
            lacks(row.baseline_name, row.baseline);
        }
        if row.expects_oslo {
            lacks("oslo", row.oslo);
        }
    }
    missing
}

/// Everything measured: criterion's estimates and the measurement files.
struct Sources {
    criterion: PathBuf,
    data: PathBuf,
    oslo: Option<Value>,
}

fn read_json(path: &Path) -> Option<Value> {
    let text = std::fs::read(path).ok()?;
    serde_json::from_slice(&text).ok()
}

impl Sources {
    fn load(args: &Args) -> Self {
        Sources {
            criterion: args.criterion.clone(),
            data: args.data.clone(),
            oslo: read_json(&args.data.join("oslo.json")),
        }
    }

    /// The median of criterion benchmark `id` (`group/function`), in nanoseconds per
    /// iteration.
    fn crit(&self, id: &str) -> Option<f64> {
        let estimates = read_json(&self.criterion.join(id).join("new/estimates.json"))?;
        estimates["median"]["point_estimate"].as_f64()
    }

    /// A number from measurement file `file` at JSON pointer `pointer`.
    fn data(&self, file: &str, pointer: &str) -> Option<f64> {
        read_json(&self.data.join(format!("{file}.json")))?
            .pointer(pointer)?
            .as_f64()
    }

    /// A number from the Python harness's results.
    fn oslo(&self, pointer: &str) -> Option<f64> {
        self.oslo.as_ref()?.pointer(pointer)?.as_f64()
    }

    fn oslo_case(&self, case: &str) -> Option<f64> {
        self.oslo(&format!("/cases/{case}/ns"))
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Unit {
    /// Nanoseconds per operation.
    Time,
    Bytes,
    /// A plain count or rate.
    Number,
    /// A multiple of something, e.g. "1.96×".
    Times,
}

fn fmt(value: Option<f64>, unit: Unit) -> String {
    let Some(v) = value else {
        return "—".to_owned();
    };
    match unit {
        Unit::Time if v >= 1e9 => format!("{:.2} s", v / 1e9),
        Unit::Time if v >= 1e6 => format!("{:.2} ms", v / 1e6),
        Unit::Time if v >= 1e4 => format!("{:.1} µs", v / 1e3),
        Unit::Time if v >= 1e3 => format!("{:.2} µs", v / 1e3),
        Unit::Time => format!("{v:.1} ns"),
        Unit::Bytes => format!("{:.1} MB", v / 1e6),
        Unit::Number if v.fract() == 0.0 => format!("{v}"),
        Unit::Number => format!("{v:.1}"),
        Unit::Times => format!("{v:.2}×"),
    }
}

/// What a figure is measured against.
#[derive(Clone, Copy)]
enum Check {
    /// lockutils ≤ x (in the row's unit).
    AtMost(f64),
    /// lockutils ≥ x (in the row's unit).
    AtLeast(f64),
    /// lockutils ≤ x × baseline.
    BaselineRatioAtMost(f64),
    /// baseline ÷ lockutils ≥ x: a throughput (time per operation) at least x of the
    /// baseline's.
    ThroughputVsBaselineAtLeast(f64),
    /// lockutils − baseline ≤ x nanoseconds.
    OverheadAtMost(f64),
    /// oslo ÷ lockutils ≥ `by`; the goal was set from oslo taking `set_from` ns, if given.
    FasterThanOsloBy { by: f64, set_from: Option<f64> },
}

impl Check {
    fn describe(self, unit: Unit) -> String {
        match self {
            Check::AtMost(x) => format!("≤ {}", fmt(Some(x), unit)),
            Check::AtLeast(x) => format!("≥ {}", fmt(Some(x), unit)),
            Check::BaselineRatioAtMost(x) => format!("≤ {x}× baseline"),
            Check::ThroughputVsBaselineAtLeast(x) => format!("throughput ≥ {x}× baseline"),
            Check::OverheadAtMost(x) => format!("overhead ≤ {} ns", x),
            Check::FasterThanOsloBy { by, .. } => format!("≥ {by}× faster than oslo"),
        }
    }

    /// The figure the check looks at, and whether it passes; `None` without data.
    fn eval(self, row: &Row) -> Option<(String, bool)> {
        let l = row.lockutils?;
        Some(match self {
            Check::AtMost(x) => (fmt(Some(l), row.unit), l <= x),
            Check::AtLeast(x) => (fmt(Some(l), row.unit), l >= x),
            Check::BaselineRatioAtMost(x) => {
                let r = l / row.baseline?;
                (format!("{} baseline", fmt_ratio(r)), r <= x)
            }
            Check::ThroughputVsBaselineAtLeast(x) => {
                let r = row.baseline? / l;
                (format!("{} baseline", fmt_ratio(r)), r >= x)
            }
            Check::OverheadAtMost(x) => {
                let o = l - row.baseline?;
                (format!("{o:.1} ns overhead"), o <= x)
            }
            Check::FasterThanOsloBy { by, set_from } => {
                let oslo = row.oslo?;
                let r = oslo / l;
                let mut figure = format!("{} faster than oslo", fmt_ratio(r));
                if r < by {
                    // Why: oslo ran faster here than where the goal came from, or the
                    // physical floor itself is not that much faster.
                    if let Some(from) = set_from.filter(|&from| oslo < from) {
                        let _ = write!(
                            figure,
                            "; oslo took {} here, against the {} the goal was set from, so \
                             it needs ≤ {}",
                            fmt(Some(oslo), Unit::Time),
                            fmt(Some(from), Unit::Time),
                            fmt(Some(oslo / by), Unit::Time)
                        );
                    }
                    if let Some(b) = row.baseline.filter(|b| oslo / b < by) {
                        let _ = write!(
                            figure,
                            "; the baseline itself is only {} faster than oslo",
                            fmt_ratio(oslo / b)
                        );
                    }
                }
                (figure, r >= by)
            }
        })
    }
}

/// One line of the table.
struct Row {
    case: &'static str,
    unit: Unit,
    lockutils: Option<f64>,
    baseline_name: &'static str,
    baseline: Option<f64>,
    oslo: Option<f64>,
    /// oslo has this case.
    expects_oslo: bool,
    checks: Vec<Check>,
    /// Drawn in the chart (time rows only).
    chart: bool,
}

impl Row {
    fn new(case: &'static str, unit: Unit, lockutils: Option<f64>) -> Self {
        Row {
            case,
            unit,
            lockutils,
            baseline_name: "",
            baseline: None,
            oslo: None,
            expects_oslo: false,
            checks: Vec::new(),
            chart: false,
        }
    }

    fn baseline(mut self, name: &'static str, value: Option<f64>) -> Self {
        self.baseline_name = name;
        self.baseline = value;
        self
    }

    fn oslo(mut self, value: Option<f64>) -> Self {
        self.oslo = value;
        self.expects_oslo = true;
        self.chart = self.unit == Unit::Time;
        self
    }

    fn goal(mut self, check: Check) -> Self {
        self.checks.push(check);
        self
    }
}

fn div(a: Option<f64>, b: f64) -> Option<f64> {
    a.map(|a| a / b)
}

fn rows(s: &Sources) -> Vec<Row> {
    use Check::*;
    use Unit::*;
    let ext = "external_uncontended";
    let per_thousand =
        |changes: Option<f64>, increments: Option<f64>| Some(changes? * 1e3 / increments?);
    let scaling = match (
        s.crit("scaling/one_thread"),
        s.crit("scaling/two_threads_two_names"),
    ) {
        // An iteration is one pair on each thread: 2 pairs in t2 against 1 in t1.
        (Some(t1), Some(t2)) => Some(2.0 * t1 / t2),
        _ => None,
    };
    vec![
        Row::new(
            "`lock(name)` acquire+release, uncontended",
            Time,
            s.crit("uncontended/lock_instance_42"),
        )
        .baseline(
            "parking_lot `Mutex` pair",
            s.crit("uncontended/parking_lot_mutex_pair"),
        )
        .oslo(s.oslo_case("lock"))
        .goal(AtMost(60.0))
        .goal(FasterThanOsloBy {
            by: 150.0,
            set_from: Some(9_300.0),
        }),
        Row::new(
            "fair lock",
            Time,
            s.crit("uncontended/lock_instance_42_fair"),
        )
        .baseline(
            "parking_lot `FairMutex` pair",
            s.crit("uncontended/parking_lot_fair_mutex_pair"),
        )
        .oslo(s.oslo_case("lock_fair"))
        .goal(AtMost(80.0)),
        Row::new(
            "`ReaderWriterLock` read",
            Time,
            s.crit("uncontended/rwlock_read"),
        )
        .baseline(
            "parking_lot `RwLock` read",
            s.crit("uncontended/parking_lot_rwlock_read"),
        )
        .oslo(s.oslo_case("rwlock_read")),
        Row::new(
            "`ReaderWriterLock` write",
            Time,
            s.crit("uncontended/rwlock_write"),
        )
        .baseline(
            "parking_lot `RwLock` write",
            s.crit("uncontended/parking_lot_rwlock_write"),
        )
        .oslo(s.oslo_case("rwlock_write")),
        Row::new(
            "`#[synchronized(\"literal\")]` call",
            Time,
            s.crit("synchronized/literal_name"),
        )
        .baseline(
            "the undecorated function",
            s.crit("synchronized/undecorated"),
        )
        .oslo(s.oslo_case("synchronized"))
        .goal(OverheadAtMost(25.0)),
        Row::new(
            "`#[synchronized(.., external = true)]` call",
            Time,
            s.crit("synchronized/external_literal_name"),
        )
        .baseline(
            "raw OFD lock+unlock pair",
            s.crit(&format!("{ext}/raw_ofd_lock_unlock_pair")),
        )
        .oslo(s.oslo_case("synchronized_external")),
        Row::new(
            "external lock, uncontended",
            Time,
            s.crit(&format!("{ext}/lock_external")),
        )
        .baseline(
            "raw OFD lock+unlock pair",
            s.crit(&format!("{ext}/raw_ofd_lock_unlock_pair")),
        )
        .oslo(s.oslo_case("lock_external"))
        .goal(AtMost(2000.0))
        .goal(BaselineRatioAtMost(1.7))
        .goal(FasterThanOsloBy {
            by: 20.0,
            set_from: Some(38_900.0),
        }),
        Row::new(
            "external lock, uncontended (vs. fasteners' cycle)",
            Time,
            s.crit(&format!("{ext}/lock_external")),
        )
        .baseline(
            "open+lock+unlock+close cycle",
            s.crit(&format!("{ext}/open_lock_unlock_close_cycle")),
        ),
        Row::new(
            "async `lock(name).acquire_async()`",
            Time,
            s.crit("uncontended_async/lock_instance_42_acquire_async"),
        )
        .baseline(
            "tokio `Mutex::lock`",
            s.crit("uncontended_async/tokio_mutex_lock"),
        )
        .goal(AtMost(100.0)),
        Row::new(
            "async external `acquire_async()`",
            Time,
            s.crit(&format!("{ext}/lock_external_acquire_async")),
        )
        .baseline(
            "raw OFD lock+unlock pair",
            s.crit(&format!("{ext}/raw_ofd_lock_unlock_pair")),
        ),
        Row::new(
            "2 threads, 1 name (per lock+unlock)",
            Time,
            div(s.crit("scaling/two_threads_one_name"), 2.0),
        )
        .baseline(
            "parking_lot `Mutex`, 2 threads",
            div(s.crit("scaling/two_threads_one_parking_lot_mutex"), 2.0),
        ),
        Row::new(
            "2 threads, 2 names (throughput vs. 1 thread)",
            Times,
            scaling,
        )
        .baseline("1 thread", scaling.map(|_| 1.0))
        .goal(AtLeast(1.6)),
        Row::new(
            "4 processes × counter increments (per increment)",
            Time,
            div(s.crit("external_4_processes/lock_external"), 4.0),
        )
        .baseline(
            "raw OFD loop",
            div(s.crit("external_4_processes/raw_ofd_loop"), 4.0),
        )
        .oslo(s.oslo("/external_4_processes/ns_per_increment"))
        .goal(ThroughputVsBaselineAtLeast(0.8))
        .goal(FasterThanOsloBy {
            by: 20.0,
            set_from: None,
        }),
        Row::new(
            "… ownership changes per 1,000 increments",
            Number,
            per_thousand(
                s.data("external_4_processes", "/lockutils/ownership_changes"),
                s.data("external_4_processes", "/lockutils/increments"),
            ),
        )
        .baseline(
            "raw OFD loop",
            per_thousand(
                s.data("external_4_processes", "/raw/ownership_changes"),
                s.data("external_4_processes", "/raw/increments"),
            ),
        )
        .oslo(per_thousand(
            s.oslo("/external_4_processes/ownership_changes"),
            s.oslo("/external_4_processes/increments"),
        )),
        Row::new(
            "handoff to another process, median",
            Time,
            s.data("external_handoff_process", "/lockutils/median_ns"),
        )
        .baseline(
            "raw OFD waiter",
            s.data("external_handoff_process", "/raw/median_ns"),
        )
        .oslo(s.oslo("/external_handoff_process/median_ns"))
        .goal(AtMost(100_000.0)),
        Row::new(
            "handoff to another process, p99",
            Time,
            s.data("external_handoff_process", "/lockutils/p99_ns"),
        )
        .baseline(
            "raw OFD waiter",
            s.data("external_handoff_process", "/raw/p99_ns"),
        )
        .oslo(s.oslo("/external_handoff_process/p99_ns")),
        Row::new(
            "handoff to a blocked thread",
            Time,
            s.crit("external_handoff/release_to_blocked_thread"),
        ),
        Row::new(
            "handoff to an awaiting task",
            Time,
            s.crit("external_handoff/release_to_awaiting_task"),
        ),
        Row::new(
            "distinct names, per name",
            Time,
            s.crit("scale/distinct_names"),
        )
        .baseline("one name, same loop", s.crit("scale/one_name_formatted")),
        Row::new(
            "1,000,000 names, fresh process: time",
            Time,
            s.data("scale_1m_names", "/elapsed_ns"),
        ),
        Row::new(
            "1,000,000 names: peak RSS",
            Bytes,
            s.data("scale_1m_names", "/peak_rss_bytes"),
        )
        .baseline(
            "the process before",
            s.data("scale_1m_names", "/peak_rss_bytes_at_start"),
        )
        .goal(AtMost(200e6)),
        Row::new(
            "1,000,000 names: registry size after",
            Number,
            s.data("scale_1m_names", "/registry_len_after"),
        )
        .goal(AtMost(0.0)),
    ]
}

/// A ratio with the precision that keeps it honest next to a goal: 19.6× is not 20×.
fn fmt_ratio(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}×")
    } else if r >= 10.0 {
        format!("{r:.1}×")
    } else {
        format!("{r:.2}×")
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => fmt_ratio(a / b),
        _ => "—".to_owned(),
    }
}

fn markdown(rows: &[Row], s: &Sources, args: &Args) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# lockutils beside its baselines and oslo.concurrency\n"
    );
    if let Some(date) = &args.date {
        let _ = writeln!(md, "Run: {date}.\n");
    }
    if args.smoke {
        let _ = writeln!(
            md,
            "**Smoke run** (`scripts/bench-compare --smoke`): every case ran briefly to check \
             the pipeline; these figures are not measurements.\n"
        );
    }
    let _ = writeln!(
        md,
        "Reproduce with `scripts/bench-compare`. Times are per operation: criterion's median \
         (of its samples' means) for lockutils and its baselines, the median of repeated \
         loops for oslo; the 4-process, handoff and 1,000,000-name rows are measured as said \
         below.\n"
    );
    let _ = writeln!(
        md,
        "| case | lockutils | baseline | lockutils ÷ baseline | oslo | oslo ÷ lockutils | goal |"
    );
    let _ = writeln!(md, "|---|---:|---|---:|---:|---:|---|");
    let mut missed = Vec::new();
    for row in rows {
        let baseline = if row.baseline_name.is_empty() {
            "—".to_owned()
        } else {
            format!("{}: {}", row.baseline_name, fmt(row.baseline, row.unit))
        };
        let goals: Vec<String> = row
            .checks
            .iter()
            .map(|c| {
                let goal = c.describe(row.unit);
                match c.eval(row) {
                    Some((_, true)) => format!("{goal} ✓"),
                    Some((figure, false)) => {
                        missed.push(format!("{}: goal {goal}, measured {figure}", row.case));
                        format!("{goal} **MISSED** ({figure})")
                    }
                    None => {
                        missed.push(format!("{}: goal {goal}, no data", row.case));
                        format!("{goal}: no data")
                    }
                }
            })
            .collect();
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.case,
            fmt(row.lockutils, row.unit),
            baseline,
            if row.unit == Unit::Time {
                ratio(row.lockutils, row.baseline)
            } else {
                "—".to_owned()
            },
            fmt(row.oslo, row.unit),
            if row.unit == Unit::Time {
                ratio(row.oslo, row.lockutils)
            } else {
                "—".to_owned()
            },
            if goals.is_empty() {
                "—".to_owned()
            } else {
                goals.join("; ")
            },
        );
    }
    let _ = writeln!(
        md,
        "\n![lockutils, baseline and oslo per case](chart.svg)\n"
    );
    let _ = writeln!(md, "## Goals\n");
    if missed.is_empty() {
        let _ = writeln!(md, "Every goal was met in this run.\n");
    } else {
        let _ = writeln!(md, "Missed in this run:\n");
        for m in &missed {
            let _ = writeln!(md, "- {m}");
        }
        md.push('\n');
    }
    let _ = writeln!(md, "## How the cases are measured\n");
    for line in [
        "Baselines are the physical floor of each case, measured in the same run: a bare \
         parking_lot lock, a raw `F_OFD_SETLK` lock+unlock pair on an open descriptor, a raw OFD \
         loop in the same 4-process harness, a raw OFD waiter in the same handoff harness.",
        "4 processes: each increments a shared counter file under one external lock; the time \
         from the first process's start to the last one's end (`CLOCK_MONOTONIC`), divided by \
         all increments. An ownership change is an \
         increment that follows another process's: the kernel promises no fairness between \
         processes, and neither lockutils nor oslo adds any.",
        "Handoff to another process: the holder releases once the waiter is blocked in the \
         kernel (seen in `/proc/locks`); both read `CLOCK_MONOTONIC`. oslo's waiter polls with a \
         sleep that grows to 100 ms, so its holder keeps the lock 100–400 ms (spread evenly) \
         after the waiter starts, and the latency is how late the poll notices.",
        "2 threads on 2 names: the names' registry shards come from a hash with a random key, \
         so 1 run in 64 puts both names in one shard and shows less scaling.",
        "1,000,000 names: a fresh process locks and releases each name once through the global \
         registry; peak RSS is its `VmHWM`, and the registry must be empty afterwards.",
    ] {
        let _ = writeln!(md, "- {line}");
    }
    md.push('\n');
    let _ = writeln!(md, "## What was measured\n");
    for (what, version) in versions(s) {
        let _ = writeln!(md, "- {what}: {version}");
    }
    md
}

/// The versions of everything measured and the machine it ran on.
fn versions(s: &Sources) -> Vec<(&'static str, String)> {
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let lock = std::fs::read_to_string(workspace.join("Cargo.lock")).unwrap_or_default();
    let crate_version = |name: &str| {
        let needle = format!("name = \"{name}\"\nversion = \"");
        lock.find(&needle)
            .and_then(|at| lock[at + needle.len()..].split('"').next())
            .unwrap_or("unknown")
            .to_owned()
    };
    let command = |cmd: &str, args: &[&str]| {
        std::process::Command::new(cmd)
            .args(args)
            .current_dir(&workspace)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
            .unwrap_or_else(|| "unknown".to_owned())
    };
    let commit = match command("git", &["rev-parse", "--short", "HEAD"]).as_str() {
        "unknown" => "unknown".to_owned(),
        head if command("git", &["status", "--porcelain", "--untracked-files=no"]).is_empty() => {
            head.to_owned()
        }
        head => format!("{head} with uncommitted changes"),
    };
    let proc_field = |file: &str, key: &str| {
        std::fs::read_to_string(file)
            .ok()
            .and_then(|t| {
                t.lines()
                    .find(|l| l.starts_with(key))
                    .and_then(|l| l.split_once(':'))
                    .map(|(_, v)| v.trim().to_owned())
            })
            .unwrap_or_else(|| "unknown".to_owned())
    };
    let oslo = |key: &str| {
        s.oslo
            .as_ref()
            .and_then(|o| o["versions"][key].as_str().map(str::to_owned))
            .unwrap_or_else(|| "not measured".to_owned())
    };
    vec![
        (
            "lockutils",
            format!("{} (commit {commit})", env!("CARGO_PKG_VERSION")),
        ),
        ("rustc", command("rustc", &["-V"])),
        ("parking_lot", crate_version("parking_lot")),
        ("tokio", crate_version("tokio")),
        ("criterion", crate_version("criterion")),
        ("Python", oslo("python")),
        ("oslo.concurrency", oslo("oslo.concurrency")),
        ("fasteners", oslo("fasteners")),
        (
            "the rest of the virtualenv",
            s.oslo
                .as_ref()
                .and_then(|o| o["versions"]["installed"].as_array())
                .map(|all| {
                    all.iter()
                        .filter_map(|p| p.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                })
                .unwrap_or_else(|| "not measured".to_owned()),
        ),
        ("CPU", proc_field("/proc/cpuinfo", "model name")),
        (
            "cores",
            std::thread::available_parallelism()
                .map(|n| n.to_string())
                .unwrap_or_else(|_| "unknown".to_owned()),
        ),
        ("memory", proc_field("/proc/meminfo", "MemTotal")),
        ("kernel", command("uname", &["-sr"])),
    ]
}

/// A horizontal bar chart on a log scale: per case, lockutils, its baseline and oslo.
fn svg(rows: &[Row]) -> String {
    let rows: Vec<&Row> = rows.iter().filter(|r| r.chart).collect();
    const LEFT: f64 = 330.0;
    const WIDTH: f64 = 560.0;
    const BAR: f64 = 12.0;
    const GROUP: f64 = 3.0 * BAR + 16.0;
    const TOP: f64 = 60.0;
    // Decades from 1 ns to 1 s.
    let (lo, hi) = (0.0_f64, 9.0_f64);
    // Figures beyond the axis are drawn to its end; their labels give the real value.
    let x = |ns: f64| LEFT + (ns.clamp(1.0, 1e9).log10() - lo) / (hi - lo) * WIDTH;
    let height = TOP + rows.len() as f64 * GROUP + 40.0;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{height}\" \
         font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"10\" y=\"20\" font-size=\"15\" font-weight=\"bold\">lockutils vs. oslo.concurrency \
         (time per operation, log scale; shorter is faster)</text>",
        w = LEFT + WIDTH + 90.0
    );
    let legend = [
        ("lockutils", "#1f77b4"),
        ("baseline", "#aaaaaa"),
        ("oslo.concurrency", "#ff7f0e"),
    ];
    for (i, (name, color)) in legend.iter().enumerate() {
        let lx = 10.0 + i as f64 * 150.0;
        let _ = writeln!(
            out,
            "<rect x=\"{lx}\" y=\"32\" width=\"12\" height=\"12\" fill=\"{color}\"/>\
             <text x=\"{}\" y=\"43\">{name}</text>",
            lx + 16.0
        );
    }
    let axis_bottom = TOP + rows.len() as f64 * GROUP;
    let labels = [
        "1 ns", "10 ns", "100 ns", "1 µs", "10 µs", "100 µs", "1 ms", "10 ms", "100 ms", "1 s",
    ];
    for (decade, label) in labels.iter().enumerate() {
        let gx = x(10f64.powi(decade as i32));
        let _ = writeln!(
            out,
            "<line x1=\"{gx}\" y1=\"{TOP}\" x2=\"{gx}\" y2=\"{axis_bottom}\" stroke=\"#e0e0e0\"/>\
             <text x=\"{gx}\" y=\"{}\" text-anchor=\"middle\" fill=\"#555\">{label}</text>",
            axis_bottom + 16.0
        );
    }
    for (i, row) in rows.iter().enumerate() {
        let gy = TOP + i as f64 * GROUP;
        let case = row
            .case
            .replace('`', "")
            .replace('&', "&amp;")
            .replace('<', "&lt;");
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{case}</text>",
            LEFT - 8.0,
            gy + 1.5 * BAR + 4.0
        );
        let bars = [
            (row.lockutils, legend[0].1),
            (row.baseline, legend[1].1),
            (row.oslo, legend[2].1),
        ];
        for (j, (value, color)) in bars.iter().enumerate() {
            let Some(v) = *value else { continue };
            let mut label = fmt(Some(v), Unit::Time);
            if j == 2
                && let Some(l) = row.lockutils
            {
                label = if v >= l {
                    format!("{label} ({} slower)", ratio(Some(v), Some(l)))
                } else {
                    format!("{label} ({} faster)", ratio(Some(l), Some(v)))
                };
            }
            let y = gy + j as f64 * BAR;
            let _ = writeln!(
                out,
                "<rect x=\"{LEFT}\" y=\"{y}\" width=\"{:.1}\" height=\"{}\" fill=\"{color}\"/>\
                 <text x=\"{:.1}\" y=\"{}\" font-size=\"10\">{label}</text>",
                (x(v) - LEFT).max(1.0),
                BAR - 2.0,
                x(v) + 4.0,
                y + BAR - 3.0,
            );
        }
    }
    out.push_str("</svg>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A run in which only the uncontended lock and its baseline were measured, with oslo.
    fn partial_run(dir: &Path, lock_ns: f64, oslo_ns: f64) -> Args {
        let estimate = |id: &str, ns: f64| {
            let at = dir.join("criterion").join(id).join("new");
            std::fs::create_dir_all(&at).unwrap();
            let json = format!(r#"{{"median": {{"point_estimate": {ns}}}}}"#);
            std::fs::write(at.join("estimates.json"), json).unwrap();
        };
        estimate("uncontended/lock_instance_42", lock_ns);
        estimate("uncontended/parking_lot_mutex_pair", 10.0);
        std::fs::create_dir_all(dir.join("data")).unwrap();
        std::fs::write(
            dir.join("data/oslo.json"),
            format!(
                r#"{{"versions": {{"oslo.concurrency": "7.6.1"}}, "cases": {{"lock": {{"ns": {oslo_ns}}}}}}}"#
            ),
        )
        .unwrap();
        Args {
            criterion: dir.join("criterion"),
            data: dir.join("data"),
            out: dir.join("out"),
            date: Some("today".to_owned()),
            require_all: true,
            smoke: false,
        }
    }

    fn first_row(md: &str) -> &str {
        md.lines()
            .find(|l| l.starts_with("| `lock(name)`"))
            .expect("the lock row")
    }

    #[test]
    fn goals_met_are_ticked_and_ratios_computed() {
        let dir = tempfile::tempdir().unwrap();
        let args = partial_run(dir.path(), 50.0, 9300.0);
        let src = Sources::load(&args);
        let md = markdown(&rows(&src), &src, &args);
        let row = first_row(&md);
        assert!(row.contains("| 50.0 ns |"), "{row}");
        assert!(row.contains("parking_lot `Mutex` pair: 10.0 ns | 5.00× | 9.30 µs | 186× |"));
        assert!(
            row.contains("≤ 60.0 ns ✓; ≥ 150× faster than oslo ✓"),
            "{row}"
        );
        assert!(md.contains("- oslo.concurrency: 7.6.1"));
    }

    #[test]
    fn missed_goals_and_missing_figures_are_said_plainly() {
        let dir = tempfile::tempdir().unwrap();
        let args = partial_run(dir.path(), 70.0, 9300.0);
        let src = Sources::load(&args);
        let rows = rows(&src);
        let md = markdown(&rows, &src, &args);
        assert!(first_row(&md).contains("≤ 60.0 ns **MISSED** (70.0 ns)"));
        assert!(md.contains("Missed in this run:"));
        assert!(md.contains("fair lock: goal ≤ 80.0 ns, no data"));
        let missing = missing_figures(&rows);
        assert!(
            missing.contains(&"fair lock (lockutils)".to_owned()),
            "{missing:?}"
        );
        assert!(!missing.iter().any(|m| m.starts_with("`lock(name)`")));
    }

    #[test]
    fn a_missed_oslo_ratio_says_why() {
        let dir = tempfile::tempdir().unwrap();
        let args = partial_run(dir.path(), 50.0, 6000.0);
        let src = Sources::load(&args);
        let md = markdown(&rows(&src), &src, &args);
        assert!(
            first_row(&md).contains(
                "≥ 150× faster than oslo **MISSED** (120× faster than oslo; oslo took 6.00 µs \
                 here, against the 9.30 µs the goal was set from, so it needs ≤ 40.0 ns)"
            ),
            "{}",
            first_row(&md)
        );
    }

    #[test]
    fn the_chart_draws_every_case_oslo_has() {
        let dir = tempfile::tempdir().unwrap();
        let args = partial_run(dir.path(), 50.0, 9300.0);
        let chart = svg(&rows(&Sources::load(&args)));
        assert!(chart.starts_with("<svg") && chart.trim_end().ends_with("</svg>"));
        assert!(chart.contains(">lock(name) acquire+release, uncontended</text>"));
        assert!(chart.contains("9.30 µs (186× slower)"));
        assert!(chart.contains(">fair lock</text>"));
    }
}

//! `report.md`: the table, the goals, how each case is measured, and the versions measured.

use std::fmt::Write as _;
use std::path::Path;

use crate::Args;

use crate::data::*;

pub(crate) fn markdown(rows: &[Row], s: &Sources, args: &Args) -> String {
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
         processes, and neither the unfair lock nor oslo adds any; the fair lock \
         (`lock(name).fair(true).external(true)`) queues the processes first come, first \
         served. The wait per acquisition is from asking for the lock to holding it, over all \
         four processes' acquisitions.",
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
pub(crate) fn versions(s: &Sources) -> Vec<(&'static str, String)> {
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

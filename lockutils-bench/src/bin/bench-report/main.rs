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

use std::path::PathBuf;
use std::process::ExitCode;

mod data;
mod markdown;
mod svg;

use data::{Row, Sources, rows};
use markdown::markdown;
use svg::svg;

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench-report: {e}");
            ExitCode::from(2)
        }
    }
}

pub(crate) struct Args {
    pub(crate) criterion: PathBuf,
    pub(crate) data: PathBuf,
    pub(crate) out: PathBuf,
    pub(crate) date: Option<String>,
    pub(crate) require_all: bool,
    /// A smoke run: say so in the report.
    pub(crate) smoke: bool,
}

pub(crate) fn parse_args() -> Result<Args, String> {
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

pub(crate) fn run() -> Result<(), String> {
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
pub(crate) fn missing_figures(rows: &[Row]) -> Vec<String> {
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

#[cfg(test)]
mod tests {
    use std::path::Path;

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
    fn etcd_rows_compare_with_bare_round_trips_and_tooz_unless_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let args = partial_run(dir.path(), 50.0, 9300.0);
        for (id, ns) in [
            ("etcd_uncontended/lock_external_backend", 2.7e6),
            ("etcd_uncontended/put_delete_round_trip", 1.4e6),
            ("etcd_handoff/handoff_lockutils_to_lockutils", 2.5e6),
        ] {
            let at = dir.path().join("criterion").join(id).join("new");
            std::fs::create_dir_all(&at).unwrap();
            let json = format!(r#"{{"median": {{"point_estimate": {ns}}}}}"#);
            std::fs::write(at.join("estimates.json"), json).unwrap();
        }
        std::fs::write(
            dir.path().join("data/etcd_tooz_handoff.json"),
            r#"{"median_ns": 714000000.0, "max_ns": 718000000.0, "n": 10}"#,
        )
        .unwrap();
        let src = Sources::load(&args);
        let md = markdown(&rows(&src), &src, &args);
        let row = |case: &str| {
            md.lines()
                .find(|l| l.starts_with(&format!("| {case} |")))
                .unwrap_or_else(|| panic!("no row {case}: {md}"))
                .to_owned()
        };
        let lock = row("etcd lock acquire+release, uncontended");
        assert!(
            lock.contains("| 2.70 ms | bare put+delete round trips: 1.40 ms | 1.93× |"),
            "{lock}"
        );
        assert!(lock.contains("≤ 2.5× baseline ✓"), "{lock}");
        let handoff = row("etcd handoff to a waiter");
        assert!(
            handoff.contains("tooz to tooz, median: 714.00 ms"),
            "{handoff}"
        );
        assert!(handoff.contains("≤ 5.00 ms ✓"), "{handoff}");
        assert!(svg(&rows(&src)).contains(">etcd handoff to a waiter</text>"));

        std::fs::write(dir.path().join("data/etcd_skipped.json"), "{}").unwrap();
        let src = Sources::load(&args);
        assert!(!rows(&src).iter().any(|r| r.case.starts_with("etcd")));
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

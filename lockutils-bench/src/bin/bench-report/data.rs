//! The report's figures: where each comes from, its unit, its baseline and its goals.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::Args;

/// Everything measured: criterion's estimates and the measurement files.
pub(crate) struct Sources {
    pub(crate) criterion: PathBuf,
    pub(crate) data: PathBuf,
    pub(crate) oslo: Option<Value>,
}

pub(crate) fn read_json(path: &Path) -> Option<Value> {
    let text = std::fs::read(path).ok()?;
    serde_json::from_slice(&text).ok()
}

impl Sources {
    pub(crate) fn load(args: &Args) -> Self {
        Sources {
            criterion: args.criterion.clone(),
            data: args.data.clone(),
            oslo: read_json(&args.data.join("oslo.json")),
        }
    }

    /// The median of criterion benchmark `id` (`group/function`), in nanoseconds per
    /// iteration.
    pub(crate) fn crit(&self, id: &str) -> Option<f64> {
        let estimates = read_json(&self.criterion.join(id).join("new/estimates.json"))?;
        estimates["median"]["point_estimate"].as_f64()
    }

    /// A number from measurement file `file` at JSON pointer `pointer`.
    pub(crate) fn data(&self, file: &str, pointer: &str) -> Option<f64> {
        read_json(&self.data.join(format!("{file}.json")))?
            .pointer(pointer)?
            .as_f64()
    }

    /// A number from the Python harness's results.
    pub(crate) fn oslo(&self, pointer: &str) -> Option<f64> {
        self.oslo.as_ref()?.pointer(pointer)?.as_f64()
    }

    pub(crate) fn oslo_case(&self, case: &str) -> Option<f64> {
        self.oslo(&format!("/cases/{case}/ns"))
    }
}

#[derive(Clone, Copy, PartialEq)]
pub(crate) enum Unit {
    /// Nanoseconds per operation.
    Time,
    Bytes,
    /// A plain count or rate.
    Number,
    /// A multiple of something, e.g. "1.96×".
    Times,
}

pub(crate) fn fmt(value: Option<f64>, unit: Unit) -> String {
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
pub(crate) enum Check {
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
    pub(crate) fn describe(self, unit: Unit) -> String {
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
    pub(crate) fn eval(self, row: &Row) -> Option<(String, bool)> {
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
pub(crate) struct Row {
    pub(crate) case: &'static str,
    pub(crate) unit: Unit,
    pub(crate) lockutils: Option<f64>,
    pub(crate) baseline_name: &'static str,
    pub(crate) baseline: Option<f64>,
    pub(crate) oslo: Option<f64>,
    /// oslo has this case.
    pub(crate) expects_oslo: bool,
    pub(crate) checks: Vec<Check>,
    /// Drawn in the chart (time rows only).
    pub(crate) chart: bool,
}

impl Row {
    pub(crate) fn new(case: &'static str, unit: Unit, lockutils: Option<f64>) -> Self {
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

    pub(crate) fn baseline(mut self, name: &'static str, value: Option<f64>) -> Self {
        self.baseline_name = name;
        self.baseline = value;
        self
    }

    pub(crate) fn oslo(mut self, value: Option<f64>) -> Self {
        self.oslo = value;
        self.expects_oslo = true;
        self.chart = self.unit == Unit::Time;
        self
    }

    /// Drawn in the chart although oslo has no such case.
    pub(crate) fn charted(mut self) -> Self {
        self.chart = self.unit == Unit::Time;
        self
    }

    pub(crate) fn goal(mut self, check: Check) -> Self {
        self.checks.push(check);
        self
    }
}

pub(crate) fn div(a: Option<f64>, b: f64) -> Option<f64> {
    a.map(|a| a / b)
}

pub(crate) fn rows(s: &Sources) -> Vec<Row> {
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
            "fair external lock, uncontended",
            Time,
            s.crit(&format!("{ext}/lock_external_fair")),
        )
        .baseline(
            "the unfair external lock",
            s.crit(&format!("{ext}/lock_external")),
        )
        .goal(BaselineRatioAtMost(2.0)),
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
            "4 processes, fair lock (per increment)",
            Time,
            div(s.crit("external_4_processes/lock_external_fair"), 4.0),
        )
        .baseline(
            "the unfair external lock",
            div(s.crit("external_4_processes/lock_external"), 4.0),
        )
        .goal(ThroughputVsBaselineAtLeast(0.5)),
        Row::new(
            "… fair: ownership changes per 1,000 increments",
            Number,
            per_thousand(
                s.data("external_4_processes", "/fair/ownership_changes"),
                s.data("external_4_processes", "/fair/increments"),
            ),
        )
        .baseline(
            "the unfair external lock",
            per_thousand(
                s.data("external_4_processes", "/lockutils/ownership_changes"),
                s.data("external_4_processes", "/lockutils/increments"),
            ),
        )
        .goal(AtLeast(950.0)),
        Row::new(
            "… fair: wait per acquisition, median",
            Time,
            s.data("external_4_processes", "/fair/wait_median_ns"),
        )
        .baseline(
            "the unfair external lock",
            s.data("external_4_processes", "/lockutils/wait_median_ns"),
        ),
        Row::new(
            "… fair: wait per acquisition, p99",
            Time,
            s.data("external_4_processes", "/fair/wait_p99_ns"),
        )
        .baseline(
            "the unfair external lock",
            s.data("external_4_processes", "/lockutils/wait_p99_ns"),
        ),
        Row::new(
            "… fair: wait per acquisition, p99.9",
            Time,
            s.data("external_4_processes", "/fair/wait_p999_ns"),
        )
        .baseline(
            "the unfair external lock",
            s.data("external_4_processes", "/lockutils/wait_p999_ns"),
        ),
        Row::new(
            "… fair: wait per acquisition, longest",
            Time,
            s.data("external_4_processes", "/fair/wait_max_ns"),
        )
        .baseline(
            "the unfair external lock",
            s.data("external_4_processes", "/lockutils/wait_max_ns"),
        ),
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
            "Redis lock, uncontended (acquire+release)",
            Time,
            s.crit("redis_uncontended/lock_external_backend"),
        )
        .baseline(
            "bare `PING` round trip",
            s.crit("redis_uncontended/ping_round_trip"),
        )
        .goal(BaselineRatioAtMost(2.5)),
        Row::new(
            "Redis handoff to a lockutils waiter, median",
            Time,
            s.data("redis_handoff", "/lockutils/median_ns"),
        )
        .baseline(
            "tooz waiter (polls every 0.1 s)",
            s.data("redis_handoff", "/tooz/median_ns"),
        ),
        Row::new(
            "Redis handoff to a lockutils waiter, p99",
            Time,
            s.data("redis_handoff", "/lockutils/p99_ns"),
        )
        .baseline(
            "tooz waiter (polls every 0.1 s)",
            s.data("redis_handoff", "/tooz/p99_ns"),
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
    .into_iter()
    .chain(etcd_rows(s))
    .collect()
}

/// The etcd backend's rows (`lockutils-etcd`'s benchmark, run beside `scripts/etcd`), unless
/// `scripts/bench-compare` found no etcd server and said so (`etcd_skipped.json`).
fn etcd_rows(s: &Sources) -> Vec<Row> {
    if s.data.join("etcd_skipped.json").exists() {
        return Vec::new();
    }
    vec![
        Row::new(
            "etcd lock acquire+release, uncontended",
            Unit::Time,
            s.crit("etcd_uncontended/lock_external_backend"),
        )
        .baseline(
            "bare put+delete round trips",
            s.crit("etcd_uncontended/put_delete_round_trip"),
        )
        .charted()
        .goal(Check::BaselineRatioAtMost(2.5)),
        Row::new(
            "etcd handoff to a waiter",
            Unit::Time,
            s.crit("etcd_handoff/handoff_lockutils_to_lockutils"),
        )
        .baseline(
            "tooz to tooz, median",
            s.data("etcd_tooz_handoff", "/median_ns"),
        )
        .charted()
        .goal(Check::AtMost(5e6)),
    ]
}

/// A ratio with the precision that keeps it honest next to a goal: 19.6× is not 20×.
pub(crate) fn fmt_ratio(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}×")
    } else if r >= 10.0 {
        format!("{r:.1}×")
    } else if r >= 0.1 || r == 0.0 {
        format!("{r:.2}×")
    } else {
        // Far below the baseline (e.g. a watch against a polling client): 3 significant
        // digits, not "0.00×".
        let digits = (2 - r.log10().floor() as i32).max(0) as usize;
        format!("{r:.digits$}×")
    }
}

pub(crate) fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => fmt_ratio(a / b),
        _ => "—".to_owned(),
    }
}

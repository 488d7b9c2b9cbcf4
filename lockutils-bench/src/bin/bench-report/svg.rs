//! `chart.svg`: lockutils, its baseline and oslo per case, on a log scale.

use std::fmt::Write as _;

use crate::data::*;

/// A horizontal bar chart on a log scale: per case, lockutils, its baseline and oslo.
pub(crate) fn svg(rows: &[Row]) -> String {
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

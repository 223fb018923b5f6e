//! `summary.svg`: for each workload (rows), throughput and p99 latency (columns) against client
//! count, one line per system and read level, uniform keys. Both axes are logarithmic: the
//! systems differ by orders of magnitude.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::rank;
use crate::record::Record;

const WORKLOADS: [&str; 3] = ["write", "read", "mixed"];

/// A line's name in the legend; etcd's `eventual` is its serializable read.
fn series_name(r: &Record) -> String {
    match (r.system.as_str(), r.consistency.as_str()) {
        (s, "n/a") => s.to_string(),
        ("etcd", "eventual") => "etcd serializable".into(),
        (s, c) => format!("{s} {c}"),
    }
}

fn color(name: &str) -> RGBColor {
    match name {
        "raftcache" | "raftcache linearizable" => RGBColor(31, 119, 180),
        "raftcache follower" => RGBColor(23, 190, 207),
        "raftcache session" => RGBColor(148, 103, 189),
        "raftcache eventual" => RGBColor(44, 160, 44),
        "etcd" | "etcd linearizable" => RGBColor(255, 127, 14),
        "etcd serializable" => RGBColor(188, 189, 34),
        "redis" => RGBColor(214, 39, 40),
        _ => RGBColor(127, 127, 127),
    }
}

/// The lines of one panel: (system rank, level rank, name) → points (clients, record) sorted by
/// clients. The ranks order the legend.
type Lines<'a> = BTreeMap<(usize, usize, String), Vec<(f64, &'a Record)>>;

/// The lines of one workload, uniform keys.
fn series<'a>(runs: &'a [Record], workload: &str) -> Lines<'a> {
    let mut out = Lines::new();
    for r in runs.iter().filter(|r| r.workload == workload && r.keys == "uniform") {
        let system_rank = ["raftcache", "etcd", "redis"].iter().position(|s| *s == r.system).unwrap_or(9);
        out.entry((system_rank, rank(&r.consistency), series_name(r))).or_default().push((r.clients as f64, r));
    }
    for points in out.values_mut() {
        points.sort_by(|a, b| a.0.total_cmp(&b.0));
        // A repeated measurement keeps its last record.
        points.dedup_by(|later, earlier| {
            let same = later.0 == earlier.0;
            if same {
                *earlier = *later;
            }
            same
        });
    }
    out
}

/// A log axis range around `values` (all > 0).
fn log_range(values: impl Iterator<Item = f64>) -> std::ops::Range<f64> {
    let (lo, hi) = values.filter(|v| *v > 0.0).fold((f64::MAX, 0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if hi == 0.0 {
        return 1.0..10.0;
    }
    lo / 1.6..hi * 1.6
}

fn panel(
    area: &DrawingArea<SVGBackend, Shift>,
    title: &str,
    y_desc: &str,
    lines: &Lines,
    y: fn(&Record) -> f64,
) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {title}: {e}");
    if lines.is_empty() {
        area.draw(&Text::new(format!("{title}: no runs"), (20, 40), ("sans-serif", 16))).map_err(|e| err(&e))?;
        return Ok(());
    }
    let xs = log_range(lines.values().flatten().map(|p| p.0));
    let ys = log_range(lines.values().flatten().map(|p| y(p.1)));
    let mut chart = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(65)
        .build_cartesian_2d(xs.log_scale(), ys.log_scale())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("clients")
        .y_desc(y_desc)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .y_label_formatter(&|y| match *y {
            y if y >= 1000.0 => format!("{:.0}k", y / 1000.0),
            y if y >= 10.0 => format!("{y:.0}"),
            y => format!("{y:.1}"),
        })
        .draw()
        .map_err(|e| err(&e))?;
    for ((_, _, name), points) in lines {
        let c = color(name);
        let pts: Vec<(f64, f64)> = points.iter().map(|p| (p.0, y(p.1).max(1e-3))).collect();
        chart
            .draw_series(LineSeries::new(pts.clone(), c.stroke_width(2)))
            .map_err(|e| err(&e))?
            .label(name.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], c.stroke_width(2)));
        chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, c.filled()))).map_err(|e| err(&e))?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .label_font(("sans-serif", 12))
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    Ok(())
}

/// Draws the plot of `runs` into `path`.
pub fn draw(path: &Path, runs: &[Record]) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    let root = SVGBackend::new(path, (1300, 1350)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root
        .titled("raftcache, etcd and Redis: throughput and p99 against clients (uniform keys)", ("sans-serif", 20))
        .map_err(|e| err(&e))?;
    let areas = root.split_evenly((WORKLOADS.len(), 2));
    for (i, workload) in WORKLOADS.iter().enumerate() {
        let lines = series(runs, workload);
        panel(&areas[2 * i], &format!("{workload}: throughput"), "ops/s", &lines, |r| r.ops_per_sec)?;
        panel(&areas[2 * i + 1], &format!("{workload}: p99 latency"), "p99 ms", &lines, |r| r.p99_us as f64 / 1000.0)?;
    }
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(system: &str, workload: &str, consistency: &str, clients: usize, ops: f64) -> Record {
        crate::record::test_record(system, workload, consistency, clients, ops, 900)
    }

    #[test]
    fn one_line_per_system_and_level_in_client_order() {
        let runs = vec![
            rec("raftcache", "read", "eventual", 64, 3.0),
            rec("raftcache", "read", "eventual", 1, 1.0),
            rec("raftcache", "read", "eventual", 16, 2.0),
            rec("etcd", "read", "eventual", 1, 1.0),
            rec("redis", "read", "n/a", 1, 1.0),
            rec("redis", "write", "n/a", 1, 1.0),
        ];
        let s = series(&runs, "read");
        let names: Vec<&str> = s.keys().map(|k| k.2.as_str()).collect();
        assert_eq!(names, ["raftcache eventual", "etcd serializable", "redis"]);
        let xs: Vec<f64> = s.values().next().unwrap().iter().map(|p| p.0).collect();
        assert_eq!(xs, [1.0, 16.0, 64.0]);
    }

    #[test]
    fn draws_an_svg_with_every_series() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.svg");
        let runs = vec![
            rec("raftcache", "write", "n/a", 1, 100.0),
            rec("raftcache", "write", "n/a", 16, 1000.0),
            rec("etcd", "write", "n/a", 16, 300.0),
            rec("redis", "read", "n/a", 16, 50_000.0),
        ];
        draw(&path, &runs).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        for text in ["raftcache", "etcd", "redis", "write: throughput", "mixed: throughput: no runs"] {
            assert!(svg.contains(text), "{text} missing");
        }
    }
}

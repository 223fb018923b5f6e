//! Latency over time (`raftcache-bench load --timeline FILE.csv`): every operation that completes
//! in the measured window becomes a [`Sample`]; [`rows`] cuts the window into fixed intervals
//! and gives each its throughput, errors and latency percentiles, written as CSV and drawn as an
//! SVG beside it. A whole-run p99.9 says that some operations were slow; the timeline says when,
//! so a stall can be matched against the nodes' logs (an election, a snapshot, a log segment).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use plotters::prelude::*;

use crate::record::latency_histogram;

/// One completed operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sample {
    /// When it completed, µs after the measured window began.
    pub at_us: u64,
    /// Its latency, µs (0 for a failed operation: only its time counts).
    pub latency_us: u64,
    /// Whether it succeeded.
    pub ok: bool,
}

/// One interval of the window.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The interval's start, seconds into the window.
    pub start_s: f64,
    /// Successful operations completed in it, per second.
    pub ops_per_sec: f64,
    /// Failed operations completed in it.
    pub errors: u64,
    /// Latency percentiles of its successful operations, µs (0 when it had none).
    pub p50_us: u64,
    /// See `p50_us`.
    pub p99_us: u64,
    /// The slowest of its successful operations, µs.
    pub max_us: u64,
}

/// Cuts `window` into intervals of `interval` (the last may be shorter) and summarizes the
/// samples that completed in each. Samples past the window go into the last interval.
pub fn rows(samples: &[Sample], interval: Duration, window: Duration) -> Vec<Row> {
    let step = interval.as_micros().max(1) as u64;
    let total = (window.as_micros() as u64).max(1);
    let n = total.div_ceil(step) as usize;
    let mut hists: Vec<_> = (0..n).map(|_| latency_histogram()).collect();
    let mut errors = vec![0u64; n];
    for s in samples {
        let i = ((s.at_us / step) as usize).min(n - 1);
        if s.ok {
            hists[i].saturating_record(s.latency_us);
        } else {
            errors[i] += 1;
        }
    }
    hists
        .iter()
        .zip(errors)
        .enumerate()
        .map(|(i, (h, errors))| {
            let start = i as u64 * step;
            let len = step.min(total - start) as f64 / 1e6;
            let q = |q: f64| if h.is_empty() { 0 } else { h.value_at_quantile(q) };
            Row {
                start_s: start as f64 / 1e6,
                ops_per_sec: h.len() as f64 / len,
                errors,
                p50_us: q(0.5),
                p99_us: q(0.99),
                max_us: if h.is_empty() { 0 } else { h.max() },
            }
        })
        .collect()
}

/// Writes `rows` to `path` as CSV, with a header line.
pub fn write_csv(path: &Path, rows: &[Row]) -> Result<()> {
    let mut f =
        std::io::BufWriter::new(std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?);
    writeln!(f, "start_s,ops_per_sec,errors,p50_us,p99_us,max_us")?;
    for r in rows {
        writeln!(f, "{:.3},{:.0},{},{},{},{}", r.start_s, r.ops_per_sec, r.errors, r.p50_us, r.p99_us, r.max_us)?;
    }
    f.flush().with_context(|| format!("writing {}", path.display()))
}

/// The SVG drawn beside a timeline CSV: the same path with the extension `svg`.
pub fn svg_path(csv: &Path) -> PathBuf {
    csv.with_extension("svg")
}

/// Draws `rows` into `path`: throughput (and errors) on top, p50, p99 and the maximum latency
/// below on a logarithmic axis, both against time.
pub fn draw(path: &Path, title: &str, rows: &[Row]) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    let end = rows.last().map(|r| r.start_s).unwrap_or(0.0).max(0.1) * 1.02;
    let root = SVGBackend::new(path, (1200, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let root = root.titled(title, ("sans-serif", 18)).map_err(|e| err(&e))?;
    let (top, bottom) = root.split_vertically(360);

    let max_ops = rows.iter().map(|r| r.ops_per_sec.max(r.errors as f64)).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&top)
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..end, 0.0..max_ops)
        .map_err(|e| err(&e))?;
    chart.configure_mesh().x_desc("seconds").y_desc("ops/s").draw().map_err(|e| err(&e))?;
    let blue = RGBColor(31, 119, 180);
    chart
        .draw_series(LineSeries::new(rows.iter().map(|r| (r.start_s, r.ops_per_sec)), blue.stroke_width(2)))
        .map_err(|e| err(&e))?
        .label("completed ops/s")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], blue.stroke_width(2)));
    if rows.iter().any(|r| r.errors > 0) {
        chart
            .draw_series(
                rows.iter()
                    .filter(|r| r.errors > 0)
                    .map(|r| Circle::new((r.start_s, r.errors as f64), 3, RED.filled())),
            )
            .map_err(|e| err(&e))?
            .label("errors in the interval")
            .legend(|(x, y)| Circle::new((x + 8, y), 3, RED.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;

    let lat_ms = |us: u64| (us as f64 / 1000.0).max(0.01);
    let max_ms = rows.iter().map(|r| lat_ms(r.max_us)).fold(0.1, f64::max) * 1.5;
    let min_ms = rows.iter().filter(|r| r.p50_us > 0).map(|r| lat_ms(r.p50_us)).fold(max_ms, f64::min) / 1.5;
    let mut chart = ChartBuilder::on(&bottom)
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..end, (min_ms..max_ms).log_scale())
        .map_err(|e| err(&e))?;
    chart.configure_mesh().x_desc("seconds").y_desc("latency ms").draw().map_err(|e| err(&e))?;
    type Line = (&'static str, RGBColor, fn(&Row) -> u64);
    let lines: [Line; 3] = [
        ("p50", RGBColor(44, 160, 44), |r| r.p50_us),
        ("p99", RGBColor(255, 127, 14), |r| r.p99_us),
        ("max", RGBColor(214, 39, 40), |r| r.max_us),
    ];
    for (name, color, y) in lines {
        chart
            .draw_series(LineSeries::new(
                rows.iter().filter(|r| y(r) > 0).map(|r| (r.start_s, lat_ms(y(r)))),
                color.stroke_width(2),
            ))
            .map_err(|e| err(&e))?
            .label(name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 16, y)], color.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(at_ms: u64, latency_us: u64) -> Sample {
        Sample { at_us: at_ms * 1000, latency_us, ok: true }
    }

    #[test]
    fn each_interval_gets_its_own_rate_percentiles_and_errors() {
        let mut samples: Vec<Sample> = (0..100).map(|i| ok(i, 1_000)).collect(); // 0-100 ms: 1 ms each
        samples.extend((0..10).map(|i| ok(100 + i * 10, 50_000))); // 100-200 ms: a stall
        samples.push(Sample { at_us: 150_000, latency_us: 0, ok: false });
        samples.push(ok(250, 2_000)); // past the window: counted in the last interval
        let rows = rows(&samples, Duration::from_millis(100), Duration::from_millis(200));
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].start_s, 0.0);
        assert_eq!(rows[0].ops_per_sec, 1000.0);
        assert_eq!((rows[0].p50_us, rows[0].p99_us, rows[0].max_us), (1_000, 1_000, 1_000));
        assert_eq!(rows[0].errors, 0);
        assert_eq!(rows[1].start_s, 0.1);
        assert_eq!(rows[1].ops_per_sec, 110.0);
        assert_eq!(rows[1].errors, 1);
        assert_eq!(rows[1].p50_us, 50_015, "the histogram keeps 3 significant digits");
        assert_eq!(rows[1].max_us, 50_015);
    }

    #[test]
    fn a_short_last_interval_is_rated_over_its_own_length_and_an_empty_one_reads_zero() {
        let samples = vec![ok(10, 500), ok(260, 700)];
        let rows = rows(&samples, Duration::from_millis(100), Duration::from_millis(250));
        assert_eq!(rows.len(), 3);
        assert_eq!(rows[1].ops_per_sec, 0.0);
        assert_eq!((rows[1].p50_us, rows[1].max_us), (0, 0));
        // 50 ms long, one operation in it.
        assert!((rows[2].ops_per_sec - 20.0).abs() < 1e-9, "{}", rows[2].ops_per_sec);
    }

    #[test]
    fn writes_csv_and_draws_svg() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("t.csv");
        let samples: Vec<Sample> = (0..50).map(|i| ok(i * 20, 1_000 + i * 100)).collect();
        let rows = rows(&samples, Duration::from_millis(100), Duration::from_secs(1));
        write_csv(&csv, &rows).unwrap();
        let text = std::fs::read_to_string(&csv).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 11);
        assert_eq!(lines[0], "start_s,ops_per_sec,errors,p50_us,p99_us,max_us");
        assert!(lines[1].starts_with("0.000,50,0,"), "{}", lines[1]);
        let svg = svg_path(&csv);
        draw(&svg, "a title", &rows).unwrap();
        let svg = std::fs::read_to_string(&svg).unwrap();
        assert!(svg.starts_with("<svg") && svg.contains("a title") && svg.contains("p99"));
    }
}

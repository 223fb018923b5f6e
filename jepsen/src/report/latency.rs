//! `latency.svg`: every operation's latency over time, fault windows shaded.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use crate::checker::ops::{Op, Status};
use crate::nemesis::timeline::FaultWindow;

/// Points drawn at most; beyond that ok operations are sampled evenly (every fail and info is
/// kept).
const MAX_POINTS: usize = 30_000;

fn fault_color(kind: &str) -> RGBColor {
    match kind {
        "kill" => RGBColor(220, 50, 47),
        "pause" => RGBColor(181, 137, 0),
        "partition" => RGBColor(108, 113, 196),
        "delay" => RGBColor(42, 161, 152),
        "clock" => RGBColor(211, 54, 130),
        _ => RGBColor(128, 128, 128),
    }
}

/// Draws the plot of `ops` (latency = completion − invoke; `info` at the time the client gave
/// up) with `windows` shaded, over `[0, end_ns]`.
pub fn draw(path: &Path, title: &str, ops: &[Op], windows: &[FaultWindow], end_ns: u64) -> Result<()> {
    let err = |e: &dyn std::fmt::Display| anyhow!("drawing {}: {e}", path.display());
    let secs = |ns: u64| ns as f64 / 1e9;
    let t_max = secs(end_ns).max(1.0);
    let mut points: Vec<(f64, f64, Status)> = Vec::new();
    let ok_count = ops.iter().filter(|o| o.status == Status::Ok).count();
    let every = ok_count.div_ceil(MAX_POINTS).max(1);
    let mut skip = 0usize;
    for o in ops {
        let end = match o.status {
            Status::Info => o.gave_up.unwrap_or(end_ns),
            _ => o.ret,
        };
        if o.status == Status::Ok {
            if skip > 0 {
                skip -= 1;
                continue;
            }
            skip = every - 1;
        }
        let ms = (end.saturating_sub(o.call) as f64 / 1e6).max(0.05);
        points.push((secs(o.call), ms, o.status));
    }
    let y_max = points.iter().map(|p| p.1).fold(10.0f64, f64::max) * 1.5;
    let y_min = 0.05f64;

    let root = SVGBackend::new(path, (1400, 640)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(&e))?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0f64..t_max, (y_min..y_max).log_scale())
        .map_err(|e| err(&e))?;
    chart
        .configure_mesh()
        .x_desc("time since start (s)")
        .y_desc("latency (ms, log)")
        .light_line_style(WHITE.mix(0.0))
        .draw()
        .map_err(|e| err(&e))?;

    let mut labelled = std::collections::BTreeSet::new();
    for w in windows {
        let color = fault_color(&w.kind);
        let x0 = secs(w.start);
        let x1 = secs(w.end.unwrap_or(end_ns)).max(x0 + 0.01);
        let series = chart
            .draw_series(std::iter::once(Rectangle::new([(x0, y_min), (x1, y_max)], color.mix(0.15).filled())))
            .map_err(|e| err(&e))?;
        if labelled.insert(w.kind.clone()) {
            series
                .label(w.kind.clone())
                .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.mix(0.4).filled()));
        }
    }
    for (status, color, name) in [
        (Status::Ok, RGBColor(38, 139, 210), "ok"),
        (Status::Fail, RGBColor(220, 50, 47), "fail"),
        (Status::Info, RGBColor(203, 75, 22), "info"),
    ] {
        let pts: Vec<(f64, f64)> = points.iter().filter(|p| p.2 == status).map(|p| (p.0, p.1)).collect();
        if pts.is_empty() {
            continue;
        }
        let size = if status == Status::Ok { 1 } else { 2 };
        chart
            .draw_series(pts.into_iter().map(move |p| Circle::new(p, size, color.filled())))
            .map_err(|e| err(&e))?
            .label(name)
            .legend(move |(x, y)| Circle::new((x + 6, y), 3, color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .draw()
        .map_err(|e| err(&e))?;
    root.present().map_err(|e| err(&e))?;
    Ok(())
}

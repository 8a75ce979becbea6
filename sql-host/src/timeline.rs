//! The run as a picture ([`write()`]): statement latency over time per
//! client kind (above, log scale), and below it one lane per plugin
//! showing which version served when, each deploy, refusal and revert
//! marked, and each old version's drain drawn as a bar from its cut-over
//! to its end.

use std::collections::BTreeMap;
use std::path::Path;

use plotters::prelude::*;

use crate::{Mark, Report};

const KINDS: [(&str, RGBColor); 5] = [
    ("score", RGBColor(31, 119, 180)),
    ("tally", RGBColor(44, 160, 44)),
    ("matches", RGBColor(148, 103, 189)),
    ("scan", RGBColor(140, 86, 75)),
    ("slow scan", RGBColor(227, 119, 194)),
];

const VERSION_COLORS: [RGBColor; 6] = [
    RGBColor(174, 199, 232),
    RGBColor(255, 187, 120),
    RGBColor(152, 223, 138),
    RGBColor(255, 152, 150),
    RGBColor(197, 176, 213),
    RGBColor(196, 156, 148),
];

fn mark_color(what: &str) -> RGBColor {
    match what {
        "deploy" | "sql deploy" => RGBColor(0, 128, 0),
        "refused" | "sql refused" => RGBColor(214, 39, 40),
        _ => RGBColor(255, 127, 14),
    }
}

/// A stretch of time a version served: from, to (seconds), the version.
type Segment = (f64, f64, String);

/// The version each plugin served over time.
fn lanes(report: &Report, end: f64) -> Vec<(String, Vec<Segment>)> {
    let mut by_plugin: BTreeMap<String, Vec<&Mark>> = report
        .first_versions
        .keys()
        .map(|p| (p.clone(), Vec::new()))
        .collect();
    for m in report.marks.iter().filter(|m| !m.what.contains("refused")) {
        by_plugin.entry(m.plugin.clone()).or_default().push(m);
    }
    by_plugin
        .into_iter()
        .map(|(plugin, marks)| {
            let first = report
                .first_versions
                .get(&plugin)
                .cloned()
                .unwrap_or_default();
            let mut segments = Vec::new();
            let (mut from, mut version) = (0.0, first);
            for m in marks {
                segments.push((from, m.at, version));
                from = m.at;
                version = m.version.clone();
            }
            segments.push((from, end, version));
            (plugin, segments)
        })
        .collect()
}

/// Writes the timeline of `report` to `path` as SVG.
///
/// # Errors
///
/// The file could not be written, or plotters refused.
pub fn write(report: &Report, path: &Path) -> Result<(), String> {
    let e = |e: &dyn std::fmt::Display| format!("timeline: {e}");
    let end = report
        .samples
        .iter()
        .map(|s| s.0)
        .chain(report.marks.iter().map(|m| m.at))
        .fold(1.0f64, f64::max);
    let lanes = lanes(report, end);
    let root = SVGBackend::new(path, (1600, 1000)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let (top, bottom) = root.split_vertically(620);

    let max_us = report
        .samples
        .iter()
        .map(|s| s.2)
        .max()
        .unwrap_or(10)
        .max(10)
        * 2;
    let mut chart = ChartBuilder::on(&top)
        .caption(
            "SQL host: statement latency by client kind, deploys marked (green committed, red refused, orange revert)",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..end, (10u64..max_us).log_scale())
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .x_desc("seconds since the start")
        .y_desc("latency (µs)")
        .draw()
        .map_err(|x| e(&x))?;
    for m in &report.marks {
        let color = mark_color(m.what);
        chart
            .draw_series(LineSeries::new(
                [(m.at, 10), (m.at, max_us)],
                color.mix(0.35),
            ))
            .map_err(|x| e(&x))?;
    }
    for (kind, color) in KINDS {
        chart
            .draw_series(
                report
                    .samples
                    .iter()
                    .filter(|s| s.1 == kind)
                    .map(|s| Circle::new((s.0, s.2.max(10)), 2, color.mix(0.5).filled())),
            )
            .map_err(|x| e(&x))?
            .label(kind)
            .legend(move |(x, y)| Circle::new((x, y), 4, color.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(|x| e(&x))?;

    let n = lanes.len().max(1) as f64;
    let mut chart = ChartBuilder::on(&bottom)
        .caption(
            "versions serving per plugin (bars: an old version draining after its cut-over)",
            ("sans-serif", 18),
        )
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(70)
        .build_cartesian_2d(0f64..end, 0f64..n)
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(0)
        .x_desc("seconds since the start")
        .draw()
        .map_err(|x| e(&x))?;
    let mut palette: BTreeMap<String, RGBColor> = BTreeMap::new();
    for (i, (plugin, segments)) in lanes.iter().enumerate() {
        let y = n - i as f64 - 1.0;
        chart
            .draw_series(std::iter::once(Text::new(
                plugin.clone(),
                (0.0, y + 0.85),
                ("sans-serif", 14).into_font(),
            )))
            .map_err(|x| e(&x))?;
        for (from, to, version) in segments {
            let next = VERSION_COLORS[palette.len() % VERSION_COLORS.len()];
            let color = *palette.entry(version.clone()).or_insert(next);
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(*from, y + 0.15), (*to, y + 0.6)],
                    color.filled(),
                )))
                .map_err(|x| e(&x))?;
            chart
                .draw_series(std::iter::once(Text::new(
                    version.clone(),
                    (*from, y + 0.45),
                    ("sans-serif", 11).into_font(),
                )))
                .map_err(|x| e(&x))?;
        }
        for m in report.marks.iter().filter(|m| &m.plugin == plugin) {
            let color = mark_color(m.what);
            chart
                .draw_series(LineSeries::new(
                    [(m.at, y + 0.05), (m.at, y + 0.7)],
                    color.stroke_width(2),
                ))
                .map_err(|x| e(&x))?;
            if let Some(d) = m.drain {
                let to = m.at + d.as_secs_f64().max(end / 1000.0);
                chart
                    .draw_series(std::iter::once(Rectangle::new(
                        [(m.at, y + 0.05), (to, y + 0.12)],
                        BLACK.filled(),
                    )))
                    .map_err(|x| e(&x))?;
            }
        }
    }
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

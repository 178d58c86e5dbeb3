//! The report's SVG charts, drawn with plotters' SVG backend (no system fonts needed: text is
//! left to the SVG viewer).

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use crate::autoscale::Second;
use crate::measure::{ClassFigures, Figures};
use crate::sizing::{BurstPlan, ModelCheck};

fn err(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing a chart: {e}")
}

/// Images/s against threads: measured, ideal linear scaling from one thread, and the model.
pub fn throughput(path: &Path, runs: &[Figures], model: &[ModelCheck]) -> Result<()> {
    let max_threads = runs.iter().map(|r| r.threads).max().unwrap_or(1);
    let one = runs.first().map_or(0.0, |r| r.images_per_s);
    let top = runs
        .iter()
        .map(|r| r.images_per_s)
        .chain(model.iter().map(|m| m.predicted_images_per_s))
        .chain([one * max_threads as f64])
        .fold(0.0, f64::max)
        * 1.15;
    let root = SVGBackend::new(path, (720, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption("thumbd throughput against threads", ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.5f64..max_threads as f64 + 0.5, 0f64..top.max(1.0))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(max_threads)
        .x_label_formatter(&|x| format!("{x:.0}"))
        .x_desc("threads")
        .y_desc("images/s (whole corpus, median of reps)")
        .draw()
        .map_err(err)?;
    let measured: Vec<(f64, f64)> = runs
        .iter()
        .map(|r| (r.threads as f64, r.images_per_s))
        .collect();
    chart
        .draw_series(LineSeries::new(
            (1..=max_threads).map(|t| (t as f64, one * t as f64)),
            grey(),
        ))
        .map_err(err)?
        .label("linear scaling from 1 thread")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey()));
    chart
        .draw_series(LineSeries::new(measured.clone(), BLUE.stroke_width(2)))
        .map_err(err)?
        .label("measured")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    chart
        .draw_series(measured.iter().map(|&p| Circle::new(p, 4, BLUE.filled())))
        .map_err(err)?;
    chart
        .draw_series(model.iter().map(|m| {
            Cross::new(
                (m.threads as f64, m.predicted_images_per_s),
                6,
                RED.stroke_width(2),
            )
        }))
        .map_err(err)?
        .label("model (from per-class runs)")
        .legend(|(x, y)| Cross::new((x + 10, y), 5, RED.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// A bar series of the latency chart: name, colour, value of a class.
type Bars = (&'static str, RGBColor, fn(&ClassFigures) -> f64);

/// Grey for reference lines.
fn grey() -> ShapeStyle {
    RGBColor(150, 150, 150).stroke_width(1)
}

/// p50/p95/p99 per image, one group of bars per class, log scale (classes span 1–1000 ms).
pub fn latency(path: &Path, classes: &[&ClassFigures], threads: usize) -> Result<()> {
    let labels: Vec<String> = classes
        .iter()
        .map(|c| format!("{} {}", c.format, c.size_class))
        .collect();
    let max = classes.iter().map(|c| c.figures.p99_ms).fold(1.0, f64::max) * 2.0;
    let min = classes
        .iter()
        .map(|c| c.figures.p50_ms)
        .fold(f64::INFINITY, f64::min)
        .clamp(0.01, 1.0)
        / 2.0;
    let root = SVGBackend::new(path, (760, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!("thumbd latency per image by class ({threads} thread(s))"),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(-0.5f64..classes.len() as f64 - 0.5, (min..max).log_scale())
        .map_err(err)?;
    let label_of = |x: &f64| {
        let i = x.round();
        if (x - i).abs() < 1e-6 && i >= 0.0 {
            labels.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(classes.len().max(1) * 2 + 1)
        .x_label_formatter(&label_of)
        .y_desc("ms per image (log scale)")
        .draw()
        .map_err(err)?;
    let series: [Bars; 3] = [
        ("p50", RGBColor(70, 130, 180), |c| c.figures.p50_ms),
        ("p95", RGBColor(240, 160, 40), |c| c.figures.p95_ms),
        ("p99", RGBColor(200, 50, 50), |c| c.figures.p99_ms),
    ];
    for (k, (name, color, value)) in series.into_iter().enumerate() {
        let offset = (k as f64 - 1.0) * 0.27;
        chart
            .draw_series(classes.iter().enumerate().map(|(i, c)| {
                let x = i as f64 + offset;
                Rectangle::new(
                    [(x - 0.12, min), (x + 0.12, value(c).max(min))],
                    color.filled(),
                )
            }))
            .map_err(err)?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], color.filled()));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

/// Backlog (left axis) and pods (right axis) over time through a burst, with the backlog the
/// HPA sees and the burst shaded; from 10 minutes before the burst.
pub fn burst(path: &Path, plan: &BurstPlan) -> Result<()> {
    let shown: Vec<&Second> = plan
        .per_second
        .iter()
        .filter(|s| s.t >= -600 && s.t % 5 == 0)
        .collect();
    let (Some(first), Some(last)) = (shown.first(), shown.last()) else {
        return Ok(());
    };
    let x = first.t as f64..last.t as f64;
    // Headroom above the lines for the legend.
    let top = shown.iter().map(|s| s.backlog).fold(1.0, f64::max) * 1.45;
    let pods_top = plan.autoscaling.max_replicas as f64 * 1.45;
    let root = SVGBackend::new(path, (860, 460)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(
            format!(
                "thumbd burst through the HPA: {:.0} -> {:.0} images/s for {:.0} s",
                plan.steady_rate, plan.burst_rate, plan.seconds
            ),
            ("sans-serif", 20),
        )
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(70)
        .right_y_label_area_size(50)
        .build_cartesian_2d(x.clone(), 0f64..top)
        .map_err(err)?
        .set_secondary_coord(x, 0f64..pods_top);
    chart
        .configure_mesh()
        .x_desc("seconds since the burst began")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_desc("images queued in Pub/Sub")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(err)?;
    chart
        .configure_secondary_axes()
        .y_desc("pods")
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(err)?;
    let shade = RGBColor(255, 235, 200);
    chart
        .draw_series([Rectangle::new(
            [(0.0, 0.0), (plan.seconds, top)],
            shade.filled(),
        )])
        .map_err(err)?
        .label("burst")
        .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 12, y + 5)], shade.filled()));
    chart
        .draw_series(LineSeries::new(
            shown.iter().map(|s| (s.t as f64, s.backlog)),
            BLUE.stroke_width(2),
        ))
        .map_err(err)?
        .label("backlog")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE.stroke_width(2)));
    chart
        .draw_series(LineSeries::new(
            shown.iter().map(|s| (s.t as f64, s.metric.unwrap_or(0.0))),
            grey(),
        ))
        .map_err(err)?
        .label("backlog the HPA sees")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], grey()));
    let orange = RGBColor(240, 160, 40);
    chart
        .draw_secondary_series(LineSeries::new(
            shown.iter().map(|s| (s.t as f64, s.replicas as f64)),
            orange.stroke_width(2),
        ))
        .map_err(err)?
        .label("replicas set by the HPA (right)")
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], orange.stroke_width(2)));
    chart
        .draw_secondary_series(LineSeries::new(
            shown.iter().map(|s| (s.t as f64, s.serving as f64)),
            RED.stroke_width(2),
        ))
        .map_err(err)?
        .label("pods serving (right)")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], RED.stroke_width(2)));
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .draw()
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}

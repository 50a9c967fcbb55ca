//! `--plot FILE.svg`: the latency distributions, one curve per run.

use std::error::Error as StdError;
use std::path::Path;

use plotters::prelude::*;

use super::stats::Latency;

type Result<T> = std::result::Result<T, Box<dyn StdError>>;

/// The x coordinate of a percentile: its number of nines, so that 90, 99,
/// 99.9 and 99.99 are evenly spaced.
fn nines(p: f64) -> f64 {
    let rest = (100.0 - p) / 100.0;
    if rest <= 1e-6 {
        6.0
    } else {
        -rest.log10()
    }
}

pub fn latency_svg(path: &Path, title: &str, runs: &[(String, Latency)]) -> Result<()> {
    let root = SVGBackend::new(path, (1000, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let max = runs
        .iter()
        .flat_map(|(_, l)| l.curve.iter().map(|&(_, v)| v))
        .max()
        .unwrap_or(1_000)
        .max(1_000) as f64;
    let min = runs
        .iter()
        .flat_map(|(_, l)| l.curve.iter().map(|&(_, v)| v))
        .min()
        .unwrap_or(1)
        .max(1) as f64;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..6f64, (min / 1.5..max * 1.5).log_scale())?;
    chart
        .configure_mesh()
        .x_desc("percentile")
        .y_desc("one-way latency")
        .x_labels(7)
        .x_label_formatter(&|x| match x.round() as i32 {
            0 => "0".into(),
            1 => "90".into(),
            2 => "99".into(),
            3 => "99.9".into(),
            4 => "99.99".into(),
            5 => "99.999".into(),
            _ => "max".into(),
        })
        .y_label_formatter(&|y| super::stats::human_ns(*y as u64))
        .draw()?;
    for (i, (label, lat)) in runs.iter().enumerate() {
        let color = Palette99::pick(i).stroke_width(2);
        chart
            .draw_series(LineSeries::new(
                lat.curve.iter().map(|&(p, v)| (nines(p), v.max(1) as f64)),
                color,
            ))?
            .label(label.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], Palette99::pick(i)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()?;
    root.present()?;
    Ok(())
}

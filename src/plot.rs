//! Line charts as self-contained SVG files (no fonts or system libraries needed).
//!
//! [`line_chart`] serves every curve strata draws: throughput against batch size or
//! depth (`strata bench` sweeps), the LR finder's sweep, a search's best-so-far;
//! [`line_panels`] puts such charts side by side (training and validation error);
//! [`scatter_chart`] draws points alone (a search's trials against a hyperparameter).

use crate::error::{Error, Result};
use plotters::prelude::*;
use std::path::Path;

/// One named curve: `(x, y)` points in drawing order.
#[derive(Clone, Debug)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// The points.
    pub points: Vec<(f64, f64)>,
}

/// What the chart shows.
#[derive(Clone, Debug)]
pub struct Chart<'a> {
    /// Title above the plot.
    pub title: &'a str,
    /// Label of the horizontal axis.
    pub x_label: &'a str,
    /// Label of the vertical axis.
    pub y_label: &'a str,
    /// Logarithmic horizontal axis (batch sizes 32, 64, 128... read better so).
    pub log_x: bool,
}

const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

fn plot_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// Axes, curves, points and legend on a built chart (linear or logarithmic x).
fn draw<'a, X>(
    mut ctx: ChartContext<
        'a,
        SVGBackend<'a>,
        Cartesian2d<X, plotters::coord::types::RangedCoordf64>,
    >,
    chart: &Chart,
    series: &[Series],
    path: &Path,
    lines: bool,
) -> Result<()>
where
    X: Ranged<ValueType = f64> + plotters::coord::ranged1d::ValueFormatter<f64>,
{
    // A log axis reads as powers of ten (1e-3), not as 0.0009999999.
    let log_label = |v: &f64| format!("{v:.0e}");
    let mut mesh = ctx.configure_mesh();
    mesh.x_desc(chart.x_label).y_desc(chart.y_label);
    if chart.log_x {
        mesh.x_label_formatter(&log_label);
    }
    mesh.draw().map_err(|e| plot_err(path, e))?;
    for (i, s) in series.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let shown = if lines { s.points.clone() } else { vec![] };
        ctx.draw_series(LineSeries::new(shown, color.stroke_width(2)))
            .map_err(|e| plot_err(path, e))?
            .label(s.label.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
        ctx.draw_series(s.points.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(|e| plot_err(path, e))?;
    }
    ctx.configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(|e| plot_err(path, e))?;
    Ok(())
}

/// Draws `series` into an SVG file at `path` (800×500), with points marked and a legend.
pub fn line_chart(path: &Path, chart: &Chart, series: &[Series]) -> Result<()> {
    chart_svg(path, chart, series, true)
}

/// [`line_chart`] with the points alone, unjoined (trials of a search against one of
/// their hyperparameters).
pub fn scatter_chart(path: &Path, chart: &Chart, series: &[Series]) -> Result<()> {
    chart_svg(path, chart, series, false)
}

fn chart_svg(path: &Path, chart: &Chart, series: &[Series], lines: bool) -> Result<()> {
    let root = SVGBackend::new(path, (800, 500)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    draw_on(&root, chart, series, lines, path)?;
    root.present().map_err(|e| plot_err(path, e))?;
    Ok(())
}

/// [`line_chart`] as SVG text (for a page that embeds it), `width`×`height` pixels.
pub fn line_chart_svg(
    chart: &Chart,
    series: &[Series],
    (width, height): (u32, u32),
) -> Result<String> {
    let mut out = String::new();
    let here = Path::new("(inline SVG)");
    {
        let root = SVGBackend::with_string(&mut out, (width, height)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(here, e))?;
        draw_on(&root, chart, series, true, here)?;
        root.present().map_err(|e| plot_err(here, e))?;
    }
    Ok(out)
}

/// A confusion matrix as an SVG heat map: rows are the true classes, columns the
/// predicted ones, each cell shaded by its share of the row and labelled with its count.
pub fn confusion_svg(counts: &[Vec<u64>], names: &[String]) -> Result<String> {
    let here = Path::new("(inline SVG)");
    let n = counts.len();
    if n == 0 || counts.iter().any(|r| r.len() != n) {
        return Err(Error::config("plot", "confusion", "need a square matrix"));
    }
    let cell = (420 / n as u32).clamp(14, 48);
    let label_w = 130u32;
    let top = 44u32;
    let (w, h) = (label_w + cell * n as u32 + 20, top + cell * n as u32 + 20);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (w, h)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| plot_err(here, e))?;
        let font = ("sans-serif", (cell as f64 * 0.4).clamp(8.0, 13.0));
        for (i, row) in counts.iter().enumerate() {
            let total = row.iter().sum::<u64>().max(1) as f64;
            for (j, &c) in row.iter().enumerate() {
                let share = c as f64 / total;
                let x0 = (label_w + cell * j as u32) as i32;
                let y0 = (top + cell * i as u32) as i32;
                // Blue for the diagonal (right), red elsewhere (mistakes).
                let base = if i == j {
                    (31, 119, 180)
                } else {
                    (214, 39, 40)
                };
                let mix = |c: u8| (255.0 - (255.0 - f64::from(c)) * share.sqrt()) as u8;
                let color = RGBColor(mix(base.0), mix(base.1), mix(base.2));
                root.draw(&Rectangle::new(
                    [(x0, y0), (x0 + cell as i32, y0 + cell as i32)],
                    color.filled(),
                ))
                .map_err(|e| plot_err(here, e))?;
                if c > 0 {
                    let ink = if share > 0.5 { WHITE } else { BLACK };
                    root.draw(&Text::new(
                        c.to_string(),
                        (x0 + 2, y0 + cell as i32 / 3),
                        font.into_font().color(&ink),
                    ))
                    .map_err(|e| plot_err(here, e))?;
                }
            }
            let name = names.get(i).cloned().unwrap_or_else(|| i.to_string());
            root.draw(&Text::new(
                name,
                (4, (top + cell * i as u32 + cell / 3) as i32),
                font.into_font(),
            ))
            .map_err(|e| plot_err(here, e))?;
            root.draw(&Text::new(
                i.to_string(),
                (
                    (label_w + cell * i as u32 + cell / 3) as i32,
                    top as i32 - 16,
                ),
                font.into_font(),
            ))
            .map_err(|e| plot_err(here, e))?;
        }
        root.draw(&Text::new(
            "true class ↓   predicted class →",
            (4, 8),
            ("sans-serif", 13).into_font(),
        ))
        .map_err(|e| plot_err(here, e))?;
        root.present().map_err(|e| plot_err(here, e))?;
    }
    Ok(out)
}

/// Line charts side by side in one SVG file (560×450 each), each with its own axes and
/// legend; a series keeps its color from panel to panel when it has the same index (the
/// training and the validation error of the same models, say).
pub fn line_panels(path: &Path, panels: &[(Chart, Vec<Series>)]) -> Result<()> {
    if panels.is_empty() {
        return Err(Error::config("plot", "panels", "nothing to draw"));
    }
    let n = panels.len() as u32;
    let root = SVGBackend::new(path, (560 * n, 450)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    for (area, (chart, series)) in root.split_evenly((1, panels.len())).iter().zip(panels) {
        draw_on(area, chart, series, true, path)?;
    }
    root.present().map_err(|e| plot_err(path, e))?;
    Ok(())
}

fn draw_on(
    area: &DrawingArea<SVGBackend, plotters::coord::Shift>,
    chart: &Chart,
    series: &[Series],
    lines: bool,
    path: &Path,
) -> Result<()> {
    let pts = series.iter().flat_map(|s| s.points.iter());
    let (mut x0, mut x1, mut y1) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
    for &(x, y) in pts {
        if x.is_finite() && y.is_finite() {
            x0 = x0.min(x);
            x1 = x1.max(x);
            y1 = y1.max(y);
        }
    }
    if !x0.is_finite() {
        return Err(Error::config("plot", "series", "no finite point to draw"));
    }
    if x1 <= x0 {
        x1 = x0 + 1.0;
    }
    let y1 = if y1 > 0.0 { y1 * 1.1 } else { 1.0 };
    let mut builder = ChartBuilder::on(area);
    builder
        .caption(chart.title, ("sans-serif", 20))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70);
    if chart.log_x {
        let ctx = builder
            .build_cartesian_2d((x0 * 0.9..x1 * 1.1).log_scale(), 0.0..y1)
            .map_err(|e| plot_err(path, e))?;
        draw(ctx, chart, series, path, lines)
    } else {
        let ctx = builder
            .build_cartesian_2d(x0..x1, 0.0..y1)
            .map_err(|e| plot_err(path, e))?;
        draw(ctx, chart, series, path, lines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chart_has_its_title_labels_and_legend_and_empty_data_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.svg");
        let series = vec![
            Series {
                label: "resnet20, 2 threads".into(),
                points: vec![(32.0, 500.0), (64.0, 600.0), (128.0, 650.0)],
            },
            Series {
                label: "resnet20, 1 thread".into(),
                points: vec![(32.0, 260.0), (64.0, 300.0)],
            },
        ];
        for log_x in [false, true] {
            let chart = Chart {
                title: "throughput",
                x_label: "batch size",
                y_label: "images/s",
                log_x,
            };
            line_chart(&path, &chart, &series).unwrap();
            let svg = std::fs::read_to_string(&path).unwrap();
            for text in ["throughput", "batch size", "images/s", "resnet20, 1 thread"] {
                assert!(svg.contains(text), "{text} missing");
            }
            // One marker per point.
            assert_eq!(svg.matches("<circle").count(), 5);
        }
        let empty = [Series {
            label: "x".into(),
            points: vec![(f64::NAN, 1.0)],
        }];
        let chart = Chart {
            title: "t",
            x_label: "x",
            y_label: "y",
            log_x: false,
        };
        assert!(line_chart(&path, &chart, &empty).is_err());
        // Panels: two charts in one file, each with its title, the same legend twice.
        let first = Chart {
            title: "training panel",
            ..chart.clone()
        };
        let second = Chart {
            title: "validation panel",
            ..chart
        };
        line_panels(&path, &[(first, series.clone()), (second, series)]).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.contains("training panel") && svg.contains("validation panel"));
        assert_eq!(svg.matches("resnet20, 1 thread").count(), 2);
        assert!(line_panels(&path, &[]).is_err());
    }
}

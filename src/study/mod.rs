//! The lecture's experiments, reproducible on this machine: each study is a function
//! returning a result struct with the lecture's claims checked against its numbers
//! ([`Claim`]: the claim, whether it holds here, the evidence), and writes its figure.
//!
//! - [`init::init_study`] (`strata study init`): initialization in a deep plain network.
//! - [`norms::norms_study`] (`strata study norms`): the normalizations, at batch 128 and
//!   at a tiny batch; BatchNorm's training and evaluation modes.
//! - [`degradation::degradation_study`] (`strata study degradation`): deeper plain
//!   networks train worse; residual ones do not.
//!
//! The studies that train share [`runs`]: one time budget (`--minutes`) turned into the
//! same number of training images for every run.

pub mod degradation;
pub mod init;
pub mod norms;
pub mod runs;

use crate::error::{Error, Result};
use plotters::prelude::*;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One of the lecture's claims, checked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Claim {
    /// What the lecture says.
    pub claim: String,
    /// Whether this run's numbers bear it out.
    pub holds: bool,
    /// The numbers.
    pub evidence: String,
}

/// Counts of `xs` in `bins` equal bins over `range` (values outside go to the end bins).
pub fn histogram(xs: &[f32], (lo, hi): (f64, f64), bins: usize) -> Vec<u32> {
    let mut h = vec![0u32; bins.max(1)];
    let w = (hi - lo) / h.len() as f64;
    for &x in xs {
        let i = ((f64::from(x) - lo) / w).floor();
        let i = if i.is_nan() {
            0.0
        } else {
            i.clamp(0.0, (h.len() - 1) as f64)
        };
        h[i as usize] += 1;
    }
    h
}

/// Writes a study's `results.json` and `claims.txt` into `dir` (made if needed).
pub(crate) fn save<T: Serialize>(dir: &Path, results: &T, claims: &[Claim]) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    crate::method::write_json(&dir.join("results.json"), results)?;
    crate::checkpoint::write_atomic(&dir.join("claims.txt"), claims_text(claims).as_bytes())
}

/// The claims as text, one paragraph each.
pub fn claims_text(claims: &[Claim]) -> String {
    claims
        .iter()
        .map(|c| {
            format!(
                "[{}] {}\n      {}\n",
                if c.holds {
                    "holds"
                } else {
                    "does not hold here"
                },
                c.claim,
                c.evidence
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn case<'a>(
    cases: &'a [init::InitCase],
    act: &str,
    init: &str,
    norm: &str,
) -> Option<&'a init::InitCase> {
    cases
        .iter()
        .find(|c| c.activation == act && c.init == init && c.norm == norm)
}

fn stds(c: &init::InitCase) -> Vec<f64> {
    c.layers.iter().map(|l| l.std).collect()
}

/// The lecture's claims about initialization, checked on the cases.
pub fn init_claims(cases: &[init::InitCase]) -> Vec<Claim> {
    let mut out = vec![];
    if let Some(c) = case(cases, "tanh", "normal:0.01", "none") {
        let s = stds(c);
        let (first, last) = (
            s.first().copied().unwrap_or(0.0),
            s.last().copied().unwrap_or(0.0),
        );
        let falling = s.windows(2).filter(|p| p[1] < p[0]).count();
        out.push(Claim {
            claim: "tanh under N(0, 0.01²): the activations collapse towards 0, layer after layer".into(),
            holds: last < 0.1 * first && falling * 5 >= 4 * s.len().saturating_sub(1),
            evidence: format!(
                "std {first:.2e} after the first layer, {last:.2e} after the last; it fell at {falling} of {} layers",
                s.len().saturating_sub(1)
            ),
        });
    }
    if let Some(c) = case(cases, "tanh", "normal:1", "none") {
        let sat: f64 = c.layers.iter().map(|l| l.saturated_or_zero).sum::<f64>()
            / c.layers.len().max(1) as f64;
        out.push(Claim {
            claim: "tanh under N(0, 1): the activations saturate at ±1".into(),
            holds: sat > 0.5,
            evidence: format!(
                "{:.0}% of outputs within 0.02 of ±1, averaged over the layers",
                sat * 100.0
            ),
        });
    }
    if let Some(c) = case(cases, "tanh", "xavier", "none") {
        let s = stds(c);
        let (lo, hi) = s
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(a, b), &x| (a.min(x), b.max(x)));
        out.push(Claim {
            claim: "tanh under Xavier: the spread stays of one order across the layers".into(),
            holds: hi < 10.0 * lo,
            evidence: format!("std between {lo:.3} and {hi:.3}"),
        });
    }
    if let Some(c) = case(cases, "relu", "kaiming_uniform", "none") {
        // Kaiming preserves the second moment from one layer to the next: compare the
        // RMS of consecutive ReLU layers.
        let rms: Vec<f64> = c
            .layers
            .iter()
            .map(|l| (l.std * l.std + l.mean * l.mean).sqrt())
            .collect();
        let steps: Vec<f64> = rms.windows(2).map(|p| p[1] / p[0].max(1e-30)).collect();
        let worst = steps
            .iter()
            .map(|&f| f.max(1.0 / f.max(1e-30)))
            .fold(1.0f64, f64::max);
        let drift =
            rms.last().copied().unwrap_or(1.0) / rms.first().copied().unwrap_or(1.0).max(1e-30);
        // The geometric mean of the layer-to-layer factors: one random network's layers
        // scatter around what the scheme preserves in expectation.
        let per_layer = drift.powf(1.0 / steps.len().max(1) as f64);
        out.push(Claim {
            claim: "ReLU under Kaiming (fan-in): the spread is kept from layer to layer, within a factor of 2 per layer on average".into(),
            holds: (0.5..=2.0).contains(&per_layer),
            evidence: format!(
                "RMS of the ReLU outputs: {per_layer:.2}× per layer on average (the worst step {worst:.2}×; N(0, 0.01²) and N(0, 1) shrink or grow it 10× or more per layer); {drift:.2}× over the whole depth — zero padding on the 14×14 and 7×7 maps and the stride-2 convolutions lose a little at each layer"
            ),
        });
    }
    let last_std = |init: &str| {
        case(cases, "relu", init, "batch")
            .and_then(|c| c.layers.last())
            .map(|l| l.std)
    };
    let bn: Vec<f64> = ["normal:0.01", "normal:1", "xavier", "kaiming_uniform"]
        .iter()
        .filter_map(|i| last_std(i))
        .collect();
    if bn.len() == 4 {
        let (lo, hi) = bn
            .iter()
            .fold((f64::INFINITY, 0.0f64), |(a, b), &x| (a.min(x), b.max(x)));
        out.push(Claim {
            claim: "with BatchNorm, every initialization gives the same spread (ReLU)".into(),
            holds: hi <= 1.5 * lo,
            evidence: format!(
                "last layer's std between {lo:.3} and {hi:.3} over the four initializations"
            ),
        });
    }
    out
}

fn plot_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source: std::io::Error::other(e.to_string()),
    }
}

/// The histograms of the no-normalization cases: one row per (activation, init), one
/// column per activation layer (at most 10, evenly spaced in depth).
pub fn plot_histograms(path: &Path, study: &init::InitStudy) -> Result<()> {
    let rows: Vec<&init::InitCase> = study.cases.iter().filter(|c| c.norm == "none").collect();
    let n_layers = rows.first().map_or(0, |c| c.layers.len());
    if rows.is_empty() || n_layers == 0 {
        return Err(Error::config("study init", "cases", "nothing to draw"));
    }
    let cols = n_layers.min(10);
    let pick: Vec<usize> = (0..cols)
        .map(|i| i * (n_layers - 1) / (cols - 1).max(1))
        .collect();
    let root = SVGBackend::new(
        path,
        (150 * cols as u32 + 160, 110 * rows.len() as u32 + 40),
    )
    .into_drawing_area();
    root.fill(&WHITE).map_err(|e| plot_err(path, e))?;
    let root = root
        .titled(
            "activations per layer at initialization (plain network, one batch)",
            ("sans-serif", 18),
        )
        .map_err(|e| plot_err(path, e))?;
    let (labels, grid) = root.split_horizontally(160);
    let label_cells = labels.split_evenly((rows.len(), 1));
    let cells = grid.split_evenly((rows.len(), cols));
    for (r, c) in rows.iter().enumerate() {
        label_cells[r]
            .draw_text(
                &format!("{}, {}", c.activation, c.init),
                &("sans-serif", 14).into_text_style(&label_cells[r]),
                (8, 45),
            )
            .map_err(|e| plot_err(path, e))?;
        for (k, &li) in pick.iter().enumerate() {
            let l = &c.layers[li];
            let top = l.histogram.iter().copied().max().unwrap_or(1).max(1);
            let mut chart = ChartBuilder::on(&cells[r * cols + k])
                .margin(4)
                .caption(
                    format!("layer {} (std {:.1e})", li + 1, l.std),
                    ("sans-serif", 10),
                )
                .build_cartesian_2d(l.range.0..l.range.1, 0u32..top)
                .map_err(|e| plot_err(path, e))?;
            let w = (l.range.1 - l.range.0) / l.histogram.len() as f64;
            chart
                .draw_series(l.histogram.iter().enumerate().map(|(i, &h)| {
                    let x0 = l.range.0 + i as f64 * w;
                    Rectangle::new([(x0, 0), (x0 + w, h)], RGBColor(31, 119, 180).filled())
                }))
                .map_err(|e| plot_err(path, e))?;
        }
    }
    root.present().map_err(|e| plot_err(path, e))?;
    Ok(())
}

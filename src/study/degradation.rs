//! `strata study degradation`: the ResNet paper's figures 1 and 6 on this machine.
//!
//! Plain networks (`plain20`, `plain56`: the ResNets without their shortcuts) and the
//! residual ones (`resnet20`, `resnet56`), trained on the same images within one time
//! budget with the default recipe; training and validation error against epoch in one
//! figure. The lecture's claims: the deeper plain network has the *higher training*
//! error (degradation — not overfitting, which would lower it), and with residual
//! connections the deeper network is no worse than the shallower.

use super::runs::{self, Curve, Plan};
use super::Claim;
use crate::error::{Error, Result};
use crate::plot::{self, Chart, Series};
use crate::train::{Observer, TrainConfig};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What the study runs.
#[derive(Clone, Debug)]
pub struct DegradationOptions {
    /// Dataset [fashion-mnist].
    pub data: String,
    /// The shallow and the deep depth [20, 56]: `plainD` and `resnetD` for each.
    pub depths: [usize; 2],
    /// Width multiplier [1].
    pub width: f32,
    /// Budget for all four runs, minutes [15].
    pub minutes: f64,
    /// Training images per run instead of the budget's.
    pub images: Option<usize>,
    /// Epochs per run (points on the curves) [6].
    pub epochs: u64,
    /// Seed.
    pub seed: u64,
    /// Folder for the runs, results.json, degradation.svg and claims.txt.
    pub out: PathBuf,
}

impl Default for DegradationOptions {
    fn default() -> Self {
        DegradationOptions {
            data: "fashion-mnist".into(),
            depths: [20, 56],
            width: 1.0,
            minutes: 15.0,
            images: None,
            epochs: 6,
            seed: 0,
            out: "runs/study-degradation".into(),
        }
    }
}

/// What `strata study degradation` found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DegradationStudy {
    /// The plan: images per run, epochs, measured speeds.
    pub plan: Plan,
    /// plain shallow, plain deep, resnet shallow, resnet deep.
    pub runs: Vec<Curve>,
    /// The lecture's claims, checked.
    pub claims: Vec<Claim>,
    /// The figure.
    pub figure: Option<PathBuf>,
}

/// Runs the study.
pub fn degradation_study(
    opts: &DegradationOptions,
    obs: &mut dyn Observer,
) -> Result<DegradationStudy> {
    let [d1, d2] = opts.depths;
    if d1 >= d2 {
        return Err(Error::config(
            "study degradation",
            "depths",
            format!("the second depth must be the deeper: got {d1} and {d2}"),
        ));
    }
    let names = [
        format!("plain{d1}"),
        format!("plain{d2}"),
        format!("resnet{d1}"),
        format!("resnet{d2}"),
    ];
    let cfgs = names
        .iter()
        .map(|m| {
            let cfg = TrainConfig {
                model: m.clone(),
                data: opts.data.clone(),
                width: Some(opts.width),
                seed: opts.seed,
                log_every: 1_000_000,
                ..TrainConfig::default()
            };
            cfg.validate().map(|_| cfg)
        })
        .collect::<Result<Vec<_>>>()?;
    let plan = runs::plan(&cfgs, opts.minutes, opts.images, opts.epochs, obs)?;
    let mut curves = vec![];
    for (i, (name, cfg)) in names.iter().zip(&cfgs).enumerate() {
        obs.note(&format!("run {}/4: {name}", i + 1));
        let dir = opts.out.join("runs").join(name);
        curves.push(runs::train_curve(name, &plan.apply(cfg), &dir, obs)?);
    }
    let claims = claims(&curves);
    let mut study = DegradationStudy {
        plan,
        runs: curves,
        claims,
        figure: None,
    };
    let svg = opts.out.join("degradation.svg");
    plot(&svg, &study)?;
    study.figure = Some(svg);
    super::save(&opts.out, &study, &study.claims)?;
    Ok(study)
}

/// Mean training error over the last third of the epochs (at least one): the end of a
/// curve, less noisy than its last point.
fn late_train_err(c: &Curve) -> f64 {
    let n = c.points.len();
    let tail = &c.points[n - (n / 3).max(1).min(n)..];
    tail.iter().map(|p| p.train_err).sum::<f64>() / tail.len().max(1) as f64
}

/// The claims, on [plain shallow, plain deep, resnet shallow, resnet deep].
pub fn claims(runs: &[Curve]) -> Vec<Claim> {
    let [p1, p2, r1, r2] = runs else {
        return vec![];
    };
    if [p1, p2, r1, r2].iter().any(|c| c.points.is_empty()) {
        return vec![];
    }
    let (ep1, ep2, er1, er2) = (
        late_train_err(p1),
        late_train_err(p2),
        late_train_err(r1),
        late_train_err(r2),
    );
    let val = |c: &Curve| c.last().and_then(|p| p.val_err).unwrap_or(f64::NAN);
    let pct = |x: f64| format!("{:.2}%", 100.0 * x);
    vec![
        Claim {
            claim: format!(
                "degradation: the deeper plain network ({}) has a higher training error than the shallower ({})",
                p2.label, p1.label
            ),
            holds: ep2 > ep1,
            evidence: format!(
                "training error over the last epochs: {} {}, {} {}; validation error at the end {} and {}",
                p1.label, pct(ep1), p2.label, pct(ep2), pct(val(p1)), pct(val(p2))
            ),
        },
        Claim {
            claim: format!(
                "residual connections fix it: the deeper residual network ({}) trains at least as well as the deeper plain one ({})",
                r2.label, p2.label
            ),
            holds: er2 < ep2,
            evidence: format!(
                "training error over the last epochs: {} {}, {} {}",
                r2.label, pct(er2), p2.label, pct(ep2)
            ),
        },
        Claim {
            claim: format!(
                "with residual connections depth does not hurt: {} trains no worse than {}",
                r2.label, r1.label
            ),
            // Within half a point: at equal images the deeper network is not expected to
            // be far ahead yet.
            holds: er2 <= er1 + 0.005,
            evidence: format!(
                "training error over the last epochs: {} {}, {} {}; validation error at the end {} and {}",
                r1.label, pct(er1), r2.label, pct(er2), pct(val(r1)), pct(val(r2))
            ),
        },
    ]
}

/// Training error (left) and validation error (right) against epoch, the four runs.
fn plot(path: &std::path::Path, s: &DegradationStudy) -> Result<()> {
    let series = |f: &dyn Fn(&runs::Point) -> Option<f64>| -> Vec<Series> {
        s.runs
            .iter()
            .map(|c| Series {
                label: c.label.clone(),
                points: c
                    .points
                    .iter()
                    .filter_map(|p| f(p).map(|e| (p.epoch as f64, 100.0 * e)))
                    .collect(),
            })
            .collect()
    };
    let chart = |title| Chart {
        title,
        x_label: "epoch",
        y_label: "error (%)",
        log_x: false,
    };
    plot::line_panels(
        path,
        &[
            (chart("training error"), series(&|p| Some(p.train_err))),
            (chart("validation error"), series(&|p| p.val_err)),
        ],
    )
}

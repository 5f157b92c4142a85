//! `strata study norms`: which normalization, and what a tiny batch does to BatchNorm.
//!
//! The same network (fmnist-cnn by default; resnet20 with `--models`) trained with
//! BatchNorm, GroupNorm, LayerNorm, InstanceNorm and none, at batch 128 and at a tiny
//! batch (4), every run on the same images within one time budget; the learning rate
//! scaled with the batch (linear scaling: `lr × batch / 128`). Then what BatchNorm does
//! differently in training and in evaluation, on one example: in training mode an
//! image's output depends on the other images of its batch (batch statistics); in
//! evaluation mode it does not (the running statistics).

use super::runs::{self, Curve, Plan};
use super::Claim;
use crate::data::{self, Split};
use crate::error::{Error, Result};
use crate::nn::{Layer, Mode};
use crate::plot::{self, Chart, Series};
use crate::tensor::Tensor;
use crate::train::{Observer, TrainConfig};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// What the study runs.
#[derive(Clone, Debug)]
pub struct NormsOptions {
    /// Dataset [fashion-mnist].
    pub data: String,
    /// Models [fmnist-cnn].
    pub models: Vec<String>,
    /// Normalizations [batch, group:8, layer, instance, none].
    pub norms: Vec<String>,
    /// Batch sizes [128, 4].
    pub batches: Vec<usize>,
    /// Learning rate at batch 128 [0.1]; scaled linearly with the batch.
    pub lr: f32,
    /// Budget for all the runs, minutes [10].
    pub minutes: f64,
    /// Training images per run instead of the budget's (repeatable on any machine).
    pub images: Option<usize>,
    /// Epochs per run (points on the curves) [4].
    pub epochs: u64,
    /// Width multiplier of the models [1].
    pub width: f32,
    /// Seed.
    pub seed: u64,
    /// Folder for the runs, results.json, norms.svg and claims.txt.
    pub out: PathBuf,
}

impl Default for NormsOptions {
    fn default() -> Self {
        NormsOptions {
            data: "fashion-mnist".into(),
            models: vec!["fmnist-cnn".into()],
            norms: ["batch", "group:8", "layer", "instance", "none"]
                .map(String::from)
                .to_vec(),
            batches: vec![128, 4],
            lr: 0.1,
            minutes: 10.0,
            images: None,
            epochs: 4,
            width: 1.0,
            seed: 0,
            out: "runs/study-norms".into(),
        }
    }
}

/// One run: model × normalization × batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NormRun {
    /// Model.
    pub model: String,
    /// Normalization.
    pub norm: String,
    /// Batch size.
    pub batch: usize,
    /// Learning rate.
    pub lr: f32,
    /// The curve and results.
    pub curve: Curve,
}

impl NormRun {
    /// Final validation accuracy.
    pub fn val_acc(&self) -> f64 {
        self.curve
            .last()
            .and_then(|p| p.val_err)
            .map_or(0.0, |e| 1.0 - e)
    }
}

/// BatchNorm in training and in evaluation mode, on one image.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainVsEval {
    /// Largest change of the image's logits when the other images of its batch change,
    /// in training mode (batch statistics).
    pub train_mode_change: f64,
    /// The same in evaluation mode (running statistics): 0.
    pub eval_mode_change: f64,
    /// Its logits' largest difference between training and evaluation mode.
    pub train_vs_eval: f64,
    /// Batch size of the example.
    pub batch: usize,
}

/// What `strata study norms` found.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NormsStudy {
    /// The plan: images per run, epochs, measured speeds.
    pub plan: Plan,
    /// Every run.
    pub runs: Vec<NormRun>,
    /// BatchNorm's two modes on one example (the BatchNorm model of the smallest batch).
    pub train_vs_eval: Option<TrainVsEval>,
    /// The lecture's claims, checked.
    pub claims: Vec<Claim>,
    /// The figure.
    pub figure: Option<PathBuf>,
}

/// Runs the study.
pub fn norms_study(opts: &NormsOptions, obs: &mut dyn Observer) -> Result<NormsStudy> {
    if opts.models.is_empty() || opts.norms.is_empty() || opts.batches.is_empty() {
        return Err(Error::config(
            "study norms",
            "models/norms/batches",
            "need at least one of each",
        ));
    }
    let mut grid = vec![];
    for m in &opts.models {
        for &b in &opts.batches {
            for n in &opts.norms {
                let cfg = TrainConfig {
                    model: m.clone(),
                    data: opts.data.clone(),
                    batch_size: b,
                    lr: opts.lr * b as f32 / 128.0,
                    norm: Some(n.clone()),
                    width: Some(opts.width),
                    seed: opts.seed,
                    log_every: 1_000_000,
                    ..TrainConfig::default()
                };
                cfg.validate()?;
                grid.push((m.clone(), n.clone(), b, cfg));
            }
        }
    }
    let cfgs: Vec<TrainConfig> = grid.iter().map(|g| g.3.clone()).collect();
    let plan = runs::plan(&cfgs, opts.minutes, opts.images, opts.epochs, obs)?;
    let mut out = vec![];
    for (i, (m, n, b, cfg)) in grid.into_iter().enumerate() {
        let label = format!("{m}, {n}, batch {b}");
        obs.note(&format!("run {}/{}: {label}", i + 1, cfgs.len()));
        let dir = opts
            .out
            .join("runs")
            .join(format!("{m}-{}-b{b}", n.replace(':', "")));
        let curve = runs::train_curve(&label, &plan.apply(&cfg), &dir, obs)?;
        out.push(NormRun {
            model: m,
            norm: n,
            batch: b,
            lr: cfg.lr,
            curve,
        });
    }
    let tiny = opts.batches.iter().copied().min().unwrap_or(4);
    let bn_tiny = out
        .iter()
        .find(|r| r.norm == "batch" && r.batch == tiny)
        .map(|r| r.curve.dir.clone());
    let train_vs_eval = match bn_tiny {
        Some(dir) => Some(train_vs_eval(&dir, &opts.data, tiny.max(2))?),
        None => None,
    };
    let claims = claims(&out, train_vs_eval.as_ref(), &opts.batches);
    let mut study = NormsStudy {
        plan,
        runs: out,
        train_vs_eval,
        claims,
        figure: None,
    };
    let svg = opts.out.join("norms.svg");
    plot_curves(&svg, &study, &opts.batches)?;
    study.figure = Some(svg);
    super::save(&opts.out, &study, &study.claims)?;
    Ok(study)
}

/// One image in two batches (the other images differ), through the trained BatchNorm
/// model in training mode and in evaluation mode.
fn train_vs_eval(run: &std::path::Path, data: &str, batch: usize) -> Result<TrainVsEval> {
    let mut t = crate::train::load_trained(run)?;
    let set = data::load(data, Split::Test).or_else(|_| data::load(data, Split::Train))?;
    let [c, h, w] = t.model.input_shape();
    if set.shape() != [c, h, w] || set.len() < 2 * batch {
        return Err(Error::config(
            "study norms",
            "data",
            "too few images of the model's size for the example",
        ));
    }
    // The batches through the loader: the training pipeline's preprocessing.
    let images = |idx: &[usize]| -> Result<Tensor> {
        let loader = crate::data::Loader::new(
            std::sync::Arc::new(set.subset(idx)?),
            crate::data::LoaderConfig::in_order(idx.len(), t.normalize.clone()),
        )?;
        Ok(loader.batch(0, 0).x)
    };
    // Image 0 with images 1..batch, then with images batch..2·batch−1.
    let a: Vec<usize> = (0..batch).collect();
    let b: Vec<usize> = std::iter::once(0).chain(batch..2 * batch - 1).collect();
    let (xa, xb) = (images(&a)?, images(&b)?);
    let k = t.model.config.classes;
    let first = |y: &Tensor| y.data()[..k].to_vec();
    let diff = |p: &[f32], q: &[f32]| {
        p.iter()
            .zip(q)
            .map(|(x, y)| f64::from((x - y).abs()))
            .fold(0.0, f64::max)
    };
    // Training mode updates the running statistics: on a copy of the weights.
    let ev_a = first(&t.model.forward(&xa, Mode::Eval)?);
    let ev_b = first(&t.model.forward(&xb, Mode::Eval)?);
    let tr_a = first(&t.model.forward(&xa, Mode::Train)?);
    let tr_b = first(&t.model.forward(&xb, Mode::Train)?);
    Ok(TrainVsEval {
        train_mode_change: diff(&tr_a, &tr_b),
        eval_mode_change: diff(&ev_a, &ev_b),
        train_vs_eval: diff(&tr_a, &ev_a),
        batch,
    })
}

fn find<'a>(runs: &'a [NormRun], norm: &str, batch: usize) -> Option<&'a NormRun> {
    runs.iter().find(|r| r.norm == norm && r.batch == batch)
}

/// The lecture's claims about normalization, on the first model's runs.
pub fn claims(runs: &[NormRun], tve: Option<&TrainVsEval>, batches: &[usize]) -> Vec<Claim> {
    let mut out = vec![];
    let model = runs.first().map(|r| r.model.clone()).unwrap_or_default();
    let runs: Vec<NormRun> = runs.iter().filter(|r| r.model == model).cloned().collect();
    let big = batches.iter().copied().max().unwrap_or(128);
    let tiny = batches.iter().copied().min().unwrap_or(4);
    let pct = |x: f64| format!("{:.2}%", 100.0 * x);
    if let (Some(bn), Some(none)) = (find(&runs, "batch", big), find(&runs, "none", big)) {
        out.push(Claim {
            claim: format!("at batch {big}, BatchNorm trains better than no normalization"),
            holds: bn.val_acc() > none.val_acc(),
            evidence: format!(
                "{model}: validation accuracy {} with BatchNorm, {} without",
                pct(bn.val_acc()),
                pct(none.val_acc())
            ),
        });
    }
    if big != tiny {
        if let (Some(b1), Some(b2)) = (find(&runs, "batch", big), find(&runs, "batch", tiny)) {
            let bn_drop = b1.val_acc() - b2.val_acc();
            let others: Vec<(String, f64)> = ["group:8", "layer", "instance"]
                .iter()
                .filter_map(|n| {
                    let (x, y) = (find(&runs, n, big)?, find(&runs, n, tiny)?);
                    Some((n.to_string(), x.val_acc() - y.val_acc()))
                })
                .collect();
            let worst_other = others.iter().map(|o| o.1).fold(f64::NEG_INFINITY, f64::max);
            out.push(Claim {
                claim: format!(
                    "BatchNorm suffers at a tiny batch ({tiny}): it loses more accuracy going from batch {big} to {tiny} than the batch-independent normalizations"
                ),
                holds: !others.is_empty() && bn_drop > worst_other,
                evidence: format!(
                    "change from batch {big} to {tiny}: BatchNorm {:+.2} points; {}",
                    -100.0 * bn_drop,
                    others
                        .iter()
                        .map(|(n, d)| format!("{n} {:+.2}", -100.0 * d))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
    if let Some(t) = tve {
        out.push(Claim {
            claim: "BatchNorm computes differently in training and evaluation: in training an image's output depends on the rest of its batch, in evaluation (running statistics) it does not".into(),
            holds: t.train_mode_change > 1e-4 && t.eval_mode_change == 0.0,
            evidence: format!(
                "one test image in two batches of {}: its logits moved by up to {:.3} in training mode, {:.1e} in evaluation mode; training vs evaluation mode differ by {:.3}",
                t.batch, t.train_mode_change, t.eval_mode_change, t.train_vs_eval
            ),
        });
    }
    out
}

/// Validation error against epoch, one panel per batch size, one curve per
/// normalization (the first model's runs).
fn plot_curves(path: &std::path::Path, s: &NormsStudy, batches: &[usize]) -> Result<()> {
    let model = s.runs.first().map(|r| r.model.clone()).unwrap_or_default();
    let titles: Vec<String> = batches
        .iter()
        .map(|b| format!("{model}, batch {b}: validation error"))
        .collect();
    let panels: Vec<(Chart, Vec<Series>)> = batches
        .iter()
        .zip(&titles)
        .map(|(&b, title)| {
            let series = s
                .runs
                .iter()
                .filter(|r| r.batch == b && r.model == model)
                .map(|r| Series {
                    label: r.norm.clone(),
                    points: r
                        .curve
                        .points
                        .iter()
                        .filter_map(|p| p.val_err.map(|e| (p.epoch as f64, e)))
                        .collect(),
                })
                .collect();
            (
                Chart {
                    title: title.as_str(),
                    x_label: "epoch",
                    y_label: "validation error",
                    log_x: false,
                },
                series,
            )
        })
        .collect();
    plot::line_panels(path, &panels)
}

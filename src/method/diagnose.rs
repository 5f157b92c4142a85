//! `strata diagnose RUN`: reads a run's curves (and its watch records) and says which of
//! the lecture's cases it is, with the evidence, the remedies and the non-remedies.
//!
//! The rules, over the epoch records (`L` training loss, `V` validation loss, `A`/`B`
//! training/validation accuracy; the *window* is the last [`Thresholds::window`] epochs):
//!
//! | case | evidence |
//! |---|---|
//! | diverged | a non-finite loss, or `L` ending 1.5× above where it started |
//! | learning rate too high | `L` goes up (by more than 2%, at least twice) in more than [`Thresholds::oscillation`] of the epochs whose learning rate did not rise, or iteration losses spike above [`Thresholds::spike`] × their median |
//! | learning rate too low (flat) | `L` fell by less than [`Thresholds::flat`] over the run |
//! | stuck at chance | training accuracy under 1.5× chance with `L` ≈ ln C (the number of classes from `metrics.json` or the checkpoint): too high a rate when the loss blew up on the way (a collapsed network), else too low a rate or a bug |
//! | overfitting | gap `A − B` above [`Thresholds::gap`] at the end, and `V` risen [`Thresholds::val_rise`] above its minimum (reached before the window), or the gap grown over the window, or `A` at [`Thresholds::memorized`] |
//! | not trained enough | the monitored loss (`V`, else `L`) still falls by more than [`Thresholds::improving`] per epoch over the window, and `A` below [`Thresholds::memorized`] |
//! | underfitting | `L` at a plateau, `A` below [`Thresholds::underfit_acc`], no gap |
//! | healthy | none of these |
//!
//! When two of overfitting, underfitting, not trained enough and flat hold together, the
//! evidence is mixed and there is no verdict (it says so, with both). Divergence
//! outranks everything. From the watch records: ReLU layers with most channels dead (the
//! last record), weights whose median update ratio, over the records taken at half the
//! run's largest learning rate or more, is outside
//! [[`Thresholds::update_low`], [`Thresholds::update_high`]].

use super::Thresholds;
use crate::error::{Error, Result};
use crate::train::stats::Unit;
use crate::train::watch::{self, WatchRecord};
use crate::train::{History, Record, RunPaths};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The lecture's cases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Case {
    /// Nothing to fix.
    Healthy,
    /// Still improving when it stopped.
    NotTrainedEnough,
    /// Training keeps improving, validation does not.
    Overfitting,
    /// Both poor, at a plateau.
    Underfitting,
    /// The loss blew up.
    Diverged,
    /// Oscillation or spikes.
    LrTooHigh,
    /// A flat loss.
    LrTooLow,
    /// Layers whose ReLUs have died.
    DeadLayers,
    /// Layers that barely move, or move too much, per step.
    BadUpdates,
}

/// One case with what shows it and what to do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Finding {
    /// The case.
    pub case: Case,
    /// The numbers that show it.
    pub evidence: Vec<String>,
    /// What helps.
    pub remedies: Vec<String>,
    /// What does not, though it is often tried.
    pub non_remedies: Vec<String>,
}

/// What `diagnose` concluded.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Diagnosis {
    /// Epoch records read.
    pub epochs: usize,
    /// The verdict, when the evidence allows one.
    pub verdict: Option<Case>,
    /// Why there is none.
    pub no_verdict: Option<String>,
    /// Every case whose evidence holds (curves first, then layers).
    pub findings: Vec<Finding>,
    /// Watch records read.
    pub watch_records: usize,
}

fn finding(case: Case, evidence: Vec<String>, remedies: &[&str], non: &[&str]) -> Finding {
    Finding {
        case,
        evidence,
        remedies: remedies.iter().map(|s| s.to_string()).collect(),
        non_remedies: non.iter().map(|s| s.to_string()).collect(),
    }
}

/// Diagnoses the run in `dir`.
pub fn diagnose(dir: &Path, t: &Thresholds) -> Result<Diagnosis> {
    let paths = RunPaths::new(dir);
    if !paths.history().is_file() {
        return Err(Error::Format {
            path: dir.to_path_buf(),
            reason: "not a run folder: no history.jsonl (give a folder written by `strata train`)"
                .into(),
        });
    }
    let history = History::read(&paths.history())?;
    let watch = watch::read(&paths.watch())?;
    diagnose_records(&history, &watch, classes(&paths), t)
}

/// The run's number of classes: from `metrics.json`, else from the last checkpoint.
fn classes(paths: &RunPaths) -> Option<usize> {
    let from_metrics = std::fs::read_to_string(paths.metrics())
        .ok()
        .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
        .and_then(|v| v["classes"].as_array().map(Vec::len));
    from_metrics.or_else(|| {
        let meta = crate::checkpoint::read_metadata(&paths.last()).ok()?;
        let names: Vec<String> =
            serde_json::from_str(meta.get(crate::train::META_CLASSES)?).ok()?;
        Some(names.len())
    })
}

/// Diagnoses a history (and watch records) already read; `classes` (when known) lets it
/// tell a network stuck at chance.
pub fn diagnose_records(
    history: &[Record],
    watch: &[WatchRecord],
    classes: Option<usize>,
    t: &Thresholds,
) -> Result<Diagnosis> {
    let epochs: Vec<&Record> = history.iter().filter(|r| r.kind == "epoch").collect();
    if epochs.is_empty() {
        return Err(Error::config(
            "diagnose",
            "history",
            "the history has no finished epoch yet: nothing to read; train at least one epoch",
        ));
    }
    let mut findings = curve_findings(history, &epochs, classes, t);
    let exclusive = [
        Case::Overfitting,
        Case::Underfitting,
        Case::NotTrainedEnough,
        Case::LrTooLow,
    ];
    let main: Vec<Case> = findings
        .iter()
        .map(|f| f.case)
        .filter(|c| exclusive.contains(c))
        .collect();
    let (verdict, no_verdict) = if epochs.len() < t.min_epochs {
        (
            None,
            Some(format!(
                "only {} epoch(s): at least {} are needed to read trends",
                epochs.len(),
                t.min_epochs
            )),
        )
    } else if findings.iter().any(|f| f.case == Case::Diverged) {
        (Some(Case::Diverged), None)
    } else if main.len() > 1 {
        (
            None,
            Some(format!(
                "mixed evidence: {} hold at once; see each one's numbers",
                main.iter()
                    .map(|c| format!("{c:?}"))
                    .collect::<Vec<_>>()
                    .join(" and ")
            )),
        )
    } else if let Some(&c) = main.first() {
        (Some(c), None)
    } else if findings.iter().any(|f| f.case == Case::LrTooHigh) {
        (Some(Case::LrTooHigh), None)
    } else {
        (Some(Case::Healthy), None)
    };
    if epochs.len() < t.min_epochs {
        findings.clear();
    }
    findings.extend(layer_findings(watch, t));
    Ok(Diagnosis {
        epochs: epochs.len(),
        verdict,
        no_verdict,
        findings,
        watch_records: watch.len(),
    })
}

/// Relative fall per epoch of `xs` over its last `w + 1` points (positive: falling).
fn fall_per_epoch(xs: &[f64], w: usize) -> f64 {
    let n = xs.len();
    let w = w.min(n.saturating_sub(1)).max(1);
    let (a, b) = (xs[n - 1 - w.min(n - 1)], xs[n - 1]);
    (a - b) / a.abs().max(1e-12) / w as f64
}

fn curve_findings(
    history: &[Record],
    epochs: &[&Record],
    classes: Option<usize>,
    t: &Thresholds,
) -> Vec<Finding> {
    let mut out = vec![];
    let n = epochs.len();
    let w = t.window.min(n.saturating_sub(1)).max(1);
    let l: Vec<f64> = epochs.iter().map(|r| r.train_loss).collect();
    let a: Vec<f64> = epochs.iter().map(|r| r.train_acc).collect();
    let v: Option<Vec<f64>> = epochs.iter().map(|r| r.val_loss).collect();
    let b: Option<Vec<f64>> = epochs.iter().map(|r| r.val_acc).collect();
    let (l0, ll) = (l[0], l[n - 1]);

    // Diverged.
    if l.iter().any(|x| !x.is_finite()) || ll > 1.5 * l0 {
        out.push(finding(
            Case::Diverged,
            vec![format!(
                "training loss {l0:.4} at epoch 1, {ll:.4} at epoch {n}"
            )],
            &[
                "lower the learning rate (strata lr-find)",
                "warm up (--warmup-epochs 1) or clip gradients (--clip-grad 1)",
                "check the initialization (strata check)",
            ],
            &["training longer", "a bigger model"],
        ));
        return out;
    }
    // Stuck at chance: the network learned nothing (or collapsed after a blow-up).
    if let Some(c) = classes.filter(|&c| c >= 2) {
        let chance = 1.0 / c as f64;
        let ln_c = (c as f64).ln();
        let peak = l.iter().copied().fold(f64::MIN, f64::max);
        if a[n - 1] < 1.5 * chance && (ll - ln_c).abs() < 0.1 * ln_c {
            let blew_up = peak > 2.0 * ln_c;
            let mut evidence = vec![format!(
                "training accuracy {:.1}% for {c} classes (chance {:.1}%), training loss {ll:.4} ≈ ln({c}) = {ln_c:.4}: the network predicts nothing",
                a[n - 1] * 100.0,
                chance * 100.0
            )];
            if blew_up {
                evidence.push(format!(
                    "the training loss reached {peak:.1} on the way: it blew up, then collapsed to constant outputs (dead units)"
                ));
                out.push(finding(
                    Case::LrTooHigh,
                    evidence,
                    &[
                        "lower the learning rate by 10× or more (strata lr-find), warm up (--warmup-epochs)",
                        "clip gradients (--clip-grad 1)",
                    ],
                    &["training longer: a collapsed network does not recover", "a bigger model"],
                ));
            } else {
                out.push(finding(
                    Case::LrTooLow,
                    evidence,
                    &[
                        "run strata check: a network that cannot overfit 20 images has a bug",
                        "raise the learning rate (strata lr-find)",
                    ],
                    &["training longer", "a bigger model"],
                ));
            }
            return out;
        }
    }
    // Learning rate too high: oscillation, spikes.
    // Rises of more than 2% (smaller ones are the noise of a small epoch), counted over
    // the epochs whose learning rate did not go up (a warm-up raises the loss by design).
    let lr: Vec<f32> = epochs.iter().map(|r| r.lr).collect();
    let steady: Vec<usize> = (0..n.saturating_sub(1))
        .filter(|&i| lr[i + 1] <= lr[i])
        .collect();
    let ups = steady.iter().filter(|&&i| l[i + 1] > l[i] * 1.02).count();
    let iters: Vec<f64> = history
        .iter()
        .filter(|r| r.kind == "iter" && r.epoch > 1)
        .map(|r| r.train_loss)
        .collect();
    let median = {
        let mut s = iters.clone();
        s.sort_by(f64::total_cmp);
        s.get(s.len() / 2).copied().unwrap_or(f64::NAN)
    };
    let spikes = iters.iter().filter(|&&x| x > t.spike * median).count();
    if n > 2 && (ups as f64 / steady.len().max(1) as f64 > t.oscillation && ups >= 2 || spikes >= 2)
    {
        out.push(finding(
            Case::LrTooHigh,
            vec![format!(
                "the training loss rose (by > 2%) in {ups} of the {} epochs whose learning rate did not rise; {spikes} iteration losses above {}× the median {median:.4}",
                steady.len(),
                t.spike
            )],
            &[
                "lower the learning rate (by 3–10×), or decay it (cosine, one-cycle)",
                "a larger batch, or gradient clipping",
            ],
            &["more epochs at the same rate", "more regularization"],
        ));
    }
    // Flat.
    let total_fall = (l0 - ll) / l0.abs().max(1e-12);
    if total_fall < t.flat {
        out.push(finding(
            Case::LrTooLow,
            vec![format!(
                "the training loss fell {:.1}% over {n} epochs ({l0:.4} → {ll:.4})",
                total_fall * 100.0
            )],
            &[
                "raise the learning rate (strata lr-find suggests one)",
                "if a higher rate does not help: a bug — run strata check (can it overfit 20 images?)",
            ],
            &["training longer at this rate", "a bigger model"],
        ));
        return out;
    }
    // Overfitting, not trained enough, underfitting.
    let gap_at = |i: usize| b.as_ref().map(|b| a[i] - b[i]);
    let gap_end = gap_at(n - 1);
    let mut overfit = false;
    if let (Some(v), Some(g)) = (&v, gap_end) {
        let (imin, vmin) =
            v.iter().enumerate().fold(
                (0, f64::INFINITY),
                |(bi, bv), (i, &x)| if x < bv { (i, x) } else { (bi, bv) },
            );
        let rising = v[n - 1] > vmin * (1.0 + t.val_rise) && imin + w < n;
        let growing = gap_at(n - 1 - w).is_some_and(|g0| g - g0 > 0.01);
        let memorized = a[n - 1] >= t.memorized;
        if g > t.gap && (rising || growing || memorized) {
            overfit = true;
            out.push(finding(
                Case::Overfitting,
                vec![
                    format!(
                        "train − validation accuracy: {:.1} points at the end (> {:.1})",
                        g * 100.0,
                        t.gap * 100.0
                    ),
                    format!(
                        "validation loss {:.4} at its lowest (epoch {}), {:.4} at the end{}",
                        vmin,
                        imin + 1,
                        v[n - 1],
                        if growing {
                            "; the gap grew over the last epochs"
                        } else {
                            ""
                        }
                    ),
                    format!(
                        "training accuracy {:.1}%{}",
                        a[n - 1] * 100.0,
                        if memorized {
                            ": the training set is memorized, more epochs cannot close the gap"
                        } else {
                            ""
                        }
                    ),
                ],
                &[
                    "more data, or more augmentation",
                    "more regularization: weight decay, dropout, label smoothing",
                    "a smaller model",
                    "stop earlier: best.safetensors already holds the best epoch (--early-stop)",
                ],
                &[
                    "training longer",
                    "a bigger model",
                    "a higher learning rate",
                ],
            ));
        }
    }
    let watched = v.clone().unwrap_or_else(|| l.clone());
    let improving = fall_per_epoch(&watched, w);
    // Still improving — unless the training set is already memorized (then more
    // epochs cannot help: that is the overfitting case).
    if improving > t.improving && a[n - 1] < t.memorized {
        out.push(finding(
            Case::NotTrainedEnough,
            vec![format!(
                "the {} loss still fell {:.1}% per epoch over the last {w} epochs",
                if v.is_some() {
                    "validation"
                } else {
                    "training"
                },
                improving * 100.0
            )],
            &["train longer (more epochs; a schedule that ends at a low rate)"],
            &["more regularization", "a smaller model"],
        ));
    }
    if !overfit
        && fall_per_epoch(&l, w) <= t.improving
        && a[n - 1] < t.underfit_acc
        && gap_end.is_none_or(|g| g <= t.gap)
    {
        out.push(finding(
            Case::Underfitting,
            vec![format!(
                "training accuracy {:.1}% (< {:.0}%) and the training loss at a plateau ({:.2}% per epoch over the last {w} epochs){}",
                a[n - 1] * 100.0,
                t.underfit_acc * 100.0,
                fall_per_epoch(&l, w) * 100.0,
                gap_end.map_or(String::new(), |g| format!("; train − validation gap {:.1} points", g * 100.0))
            )],
            &[
                "a bigger model (--width, a deeper network)",
                "less regularization (weight decay, dropout, augmentation)",
                "a better learning rate or schedule (strata lr-find)",
            ],
            &["more data", "more augmentation or regularization"],
        ));
    }
    out
}

fn layer_findings(watch: &[WatchRecord], t: &Thresholds) -> Vec<Finding> {
    let Some(last) = watch.last() else {
        return vec![];
    };
    let mut out = vec![];
    let dead: Vec<String> = last
        .acts
        .iter()
        .filter(|s| s.unit == Unit::Relu && s.dead > t.dead)
        .map(|s| format!("{}: {:.0}% of channels dead", s.name, s.dead * 100.0))
        .collect();
    if !dead.is_empty() {
        out.push(finding(
            Case::DeadLayers,
            dead.into_iter()
                .map(|e| format!("{e} (step {})", last.step))
                .collect(),
            &[
                "a lower learning rate (large steps push units into the dead zone)",
                "LeakyReLU or GELU (--activation), or normalization before the ReLU",
            ],
            &["training longer: a dead unit gets no gradient and stays dead"],
        ));
    }
    // Update ratios at the run's working rate: the records whose learning rate is at
    // least half the largest recorded (a decaying schedule's tail moves little by design).
    let top_lr = watch.iter().map(|r| r.lr).fold(0.0f32, f32::max);
    let working: Vec<&WatchRecord> = watch.iter().filter(|r| r.lr >= 0.5 * top_lr).collect();
    let mut names: Vec<&str> = working
        .iter()
        .flat_map(|r| r.params.iter().map(|p| p.name.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    let bad: Vec<String> = names
        .into_iter()
        .filter_map(|name| {
            let mut rs: Vec<f64> = working
                .iter()
                .flat_map(|r| r.params.iter())
                .filter(|p| p.name == name)
                .filter_map(|p| p.update_ratio)
                .collect();
            rs.sort_by(f64::total_cmp);
            let r = *rs.get(rs.len() / 2)?;
            (r < t.update_low || r > t.update_high).then(|| {
                format!(
                    "{name}: median update ratio {r:.1e} over {} records at lr ≥ {:.1e} ({})",
                    rs.len(),
                    0.5 * top_lr,
                    if r < t.update_low {
                        "barely moves"
                    } else {
                        "steps too large"
                    }
                )
            })
        })
        .collect();
    if !bad.is_empty() {
        out.push(finding(
            Case::BadUpdates,
            bad,
            &["update ratios near 1e-3 are the rule of thumb: raise the learning rate where they are far below, lower it where far above"],
            &[],
        ));
    }
    out
}

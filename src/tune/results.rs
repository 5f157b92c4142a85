//! A search's results: the table (best first), `results.csv` and `results.json`,
//! `best.toml` (the best trial's configuration at the search's full length, ready for
//! `strata train --config`), the plots, which hyperparameters mattered, and the
//! narrowed space of a refinement.
//!
//! **Importance** is a first-order variance decomposition, the main-effect term of a
//! functional ANOVA estimated on bins: each field's values are split into up to 4
//! quantile bins (one per value for a choice), the mean metric of each bin computed, and
//! the field's importance is the variance of those bin means (weighted by bin size) over
//! the total variance of the metric. 1 means the field alone explains every difference
//! between trials; near 0, it does not matter (or the trials are too few to tell).

use super::plan::{self, Values};
use super::space::{Dist, SearchSpace, Strategy};
use super::trial_dir;
use crate::error::{Error, Result};
use crate::plot::{self, Chart, Series};
use crate::train::{History, RunPaths};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// One trial's outcome.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrialResult {
    /// Trial number.
    pub id: usize,
    /// Its sampled values.
    pub values: Values,
    /// Epochs trained.
    pub epochs: u64,
    /// The ranking metric at its best epoch (validation accuracy or loss).
    pub metric: Option<f64>,
    /// Validation accuracy of the best epoch.
    pub val_acc: Option<f64>,
    /// Validation loss of the best epoch.
    pub val_loss: Option<f64>,
    /// Seconds of training.
    pub time_s: f64,
    /// The error, when it failed.
    pub error: Option<String>,
}

/// The whole search.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TuneReport {
    /// Strategy.
    pub strategy: Strategy,
    /// The metric (`val_acc` or `val_loss`).
    pub metric: String,
    /// Every trial, best first (failed and unfinished trials last).
    pub trials: Vec<TrialResult>,
    /// `(field, importance)`, most important first.
    pub importance: Vec<(String, f64)>,
    /// Wall seconds of this invocation.
    pub time_s: f64,
}

impl TuneReport {
    /// The best finished trial.
    pub fn best(&self) -> Option<&TrialResult> {
        self.trials.first().filter(|t| t.metric.is_some())
    }
}

/// A value for a person: strings bare.
pub fn show(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `lr=0.1 width=2` for notes.
pub fn show_values(v: &Values) -> String {
    v.iter()
        .map(|(k, x)| format!("{k}={}", fmt_num(x)))
        .collect::<Vec<_>>()
        .join(" ")
}

fn fmt_num(v: &toml::Value) -> String {
    match v {
        toml::Value::Float(f) if *f != 0.0 && (f.abs() < 1e-2 || f.abs() >= 1e4) => {
            format!("{f:.2e}")
        }
        toml::Value::Float(f) => format!("{f:.4}"),
        other => show(other),
    }
}

/// The values of trial `id` as the search drew them.
pub fn values_of(space: &SearchSpace, id: usize) -> Option<Values> {
    match space.settings.strategy {
        Strategy::Halving => Some(plan::draw(space, id)),
        _ => plan::trials(space).into_iter().nth(id),
    }
}

/// Reads every trial folder of the search in `dir`.
pub fn gather(
    space: &SearchSpace,
    dir: &Path,
    failures: &[(usize, usize, String)],
    time_s: f64,
) -> Result<TuneReport> {
    let metric = space.settings.metric.clone();
    let n = match space.settings.strategy {
        Strategy::Grid | Strategy::Random => plan::trials(space).len(),
        Strategy::Halving => space.settings.trials,
    };
    let mut trials = vec![];
    for id in 0..n {
        let d = trial_dir(dir, id);
        if !d.exists() {
            continue;
        }
        let Some(values) = values_of(space, id) else {
            continue;
        };
        let h = History::read(&RunPaths::new(&d).history()).unwrap_or_default();
        let epochs: Vec<_> = h.iter().filter(|r| r.kind == "epoch").collect();
        let key = |r: &&crate::train::Record| match metric.as_str() {
            "val_loss" => r.val_loss.map(|v| -v),
            _ => r.val_acc,
        };
        let best = epochs.iter().filter(|r| key(r).is_some()).max_by(|a, b| {
            key(a)
                .unwrap_or(f64::MIN)
                .total_cmp(&key(b).unwrap_or(f64::MIN))
        });
        let error = failures
            .iter()
            .rev()
            .find(|(i, _, _)| *i == id)
            .map(|(_, _, e)| e.clone());
        trials.push(TrialResult {
            id,
            values,
            epochs: epochs.last().map_or(0, |r| r.epoch),
            metric: best.and_then(|r| {
                if metric == "val_loss" {
                    r.val_loss
                } else {
                    r.val_acc
                }
            }),
            val_acc: best.and_then(|r| r.val_acc),
            val_loss: best.and_then(|r| r.val_loss),
            time_s: epochs.last().map_or(0.0, |r| r.time_s),
            error,
        });
    }
    let sign = if metric == "val_loss" { -1.0 } else { 1.0 };
    trials.sort_by(|a, b| {
        let k = |t: &TrialResult| t.metric.map(|m| sign * m);
        match (k(a), k(b)) {
            (Some(x), Some(y)) => y.total_cmp(&x).then(a.id.cmp(&b.id)),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => a.id.cmp(&b.id),
        }
    });
    let importance = importance(space, &trials);
    Ok(TuneReport {
        strategy: space.settings.strategy,
        metric,
        trials,
        importance,
        time_s,
    })
}

/// A number for a value (choices by their position).
fn as_number(d: &Dist, v: &toml::Value) -> f64 {
    match (d, v) {
        (Dist::Choice(c), v) => c.iter().position(|x| x == v).unwrap_or(0) as f64,
        (_, toml::Value::Float(f)) => *f,
        (_, toml::Value::Integer(i)) => *i as f64,
        _ => 0.0,
    }
}

/// Main-effect importance of each field (see the module documentation).
pub fn importance(space: &SearchSpace, trials: &[TrialResult]) -> Vec<(String, f64)> {
    let done: Vec<&TrialResult> = trials.iter().filter(|t| t.metric.is_some()).collect();
    let ys: Vec<f64> = done.iter().filter_map(|t| t.metric).collect();
    let n = ys.len() as f64;
    let mean = ys.iter().sum::<f64>() / n.max(1.0);
    let total = ys.iter().map(|y| (y - mean).powi(2)).sum::<f64>() / n.max(1.0);
    let mut out: Vec<(String, f64)> = space
        .params
        .iter()
        .map(|(name, d)| {
            if done.len() < 3 || total <= 0.0 {
                return (name.clone(), 0.0);
            }
            let mut xs: Vec<(f64, f64)> = done
                .iter()
                .filter_map(|t| Some((as_number(d, t.values.get(name)?), t.metric?)))
                .collect();
            xs.sort_by(|a, b| a.0.total_cmp(&b.0));
            // Bins: one per distinct value for a choice; else up to 4 quantile bins.
            let bins: Vec<Vec<f64>> = match d {
                Dist::Choice(_) => {
                    let mut b: Vec<(f64, Vec<f64>)> = vec![];
                    for (x, y) in &xs {
                        match b.last_mut() {
                            Some((bx, ys)) if bx == x => ys.push(*y),
                            _ => b.push((*x, vec![*y])),
                        }
                    }
                    b.into_iter().map(|(_, ys)| ys).collect()
                }
                _ => {
                    let k = 4.min(xs.len() / 2).max(1);
                    (0..k)
                        .map(|i| {
                            xs[i * xs.len() / k..(i + 1) * xs.len() / k]
                                .iter()
                                .map(|p| p.1)
                                .collect()
                        })
                        .collect()
                }
            };
            let between = bins
                .iter()
                .filter(|b| !b.is_empty())
                .map(|b| {
                    let m = b.iter().sum::<f64>() / b.len() as f64;
                    b.len() as f64 * (m - mean).powi(2)
                })
                .sum::<f64>()
                / n;
            (name.clone(), (between / total).clamp(0.0, 1.0))
        })
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

/// Writes results.csv, results.json, best.toml and the plots into `dir`.
pub fn write(space: &SearchSpace, dir: &Path, r: &TuneReport) -> Result<()> {
    let names: Vec<&String> = space.params.keys().collect();
    let mut csv = format!(
        "rank,trial,{},epochs,{},val_acc,val_loss,time_s,error\n",
        names
            .iter()
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join(","),
        r.metric
    );
    for (rank, t) in r.trials.iter().enumerate() {
        let vals: Vec<String> = names
            .iter()
            .map(|k| {
                t.values.get(*k).map_or(String::new(), |v| {
                    v.to_string().trim_matches('"').to_string()
                })
            })
            .collect();
        let opt = |x: Option<f64>| x.map_or(String::new(), |v| v.to_string());
        csv.push_str(&format!(
            "{},{},{},{},{},{},{},{:.1},{}\n",
            rank + 1,
            t.id,
            vals.join(","),
            t.epochs,
            opt(t.metric),
            opt(t.val_acc),
            opt(t.val_loss),
            t.time_s,
            t.error.as_deref().unwrap_or("").replace([',', '\n'], ";")
        ));
    }
    crate::checkpoint::write_atomic(&dir.join("results.csv"), csv.as_bytes())?;
    crate::method::write_json(&dir.join("results.json"), r)?;
    if let Some(best) = r.best() {
        let cfg = space.config(&best.values)?;
        let text = format!(
            "# The best trial ({}) of the search in {}: {} {:.4}.\n# strata train --config {}\n{}",
            best.id,
            dir.display(),
            r.metric,
            best.metric.unwrap_or(f64::NAN),
            dir.join("best.toml").display(),
            cfg.to_toml()?
        );
        crate::checkpoint::write_atomic(&dir.join("best.toml"), text.as_bytes())?;
    }
    plots(space, dir, r)
}

fn plots(space: &SearchSpace, dir: &Path, r: &TuneReport) -> Result<()> {
    let done: Vec<&TrialResult> = r.trials.iter().filter(|t| t.metric.is_some()).collect();
    if done.is_empty() {
        return Ok(());
    }
    for (name, d) in &space.params {
        let mut pts: Vec<(f64, f64)> = done
            .iter()
            .filter_map(|t| Some((as_number(d, t.values.get(name)?), t.metric?)))
            .collect();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let x_label = match d {
            Dist::Choice(c) => format!(
                "{name} (choice: {})",
                c.iter()
                    .enumerate()
                    .map(|(i, v)| format!("{i}={}", show(v)))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => name.clone(),
        };
        plot::scatter_chart(
            &dir.join(format!("{}_vs_{name}.svg", r.metric)),
            &Chart {
                title: &format!("{} against {name}", r.metric),
                x_label: &x_label,
                y_label: &r.metric,
                log_x: d.is_log(),
            },
            &[Series {
                label: "trials".into(),
                points: pts,
            }],
        )?;
    }
    // Best so far, in trial order.
    let mut by_id: Vec<&TrialResult> = done.clone();
    by_id.sort_by_key(|t| t.id);
    let better = |a: f64, b: f64| if r.metric == "val_loss" { a < b } else { a > b };
    let mut best: Option<f64> = None;
    let pts: Vec<(f64, f64)> = by_id
        .iter()
        .filter_map(|t| {
            let m = t.metric?;
            if best.is_none_or(|b| better(m, b)) {
                best = Some(m);
            }
            Some(((t.id + 1) as f64, best?))
        })
        .collect();
    plot::line_chart(
        &dir.join("best_so_far.svg"),
        &Chart {
            title: "best so far",
            x_label: "trial",
            y_label: &r.metric,
            log_x: false,
        },
        &[Series {
            label: format!("best {}", r.metric),
            points: pts,
        }],
    )
}

/// The search space narrowed around the best trials (the top quarter, at least 2):
/// each numeric range shrinks to the span of their values, widened by half of it on each
/// side (on a log scale for log-uniform fields) and kept inside the old range; each
/// choice keeps the values the best trials used.
pub fn refine(space: &SearchSpace, report: &TuneReport) -> Result<SearchSpace> {
    let done: Vec<&TrialResult> = report
        .trials
        .iter()
        .filter(|t| t.metric.is_some())
        .collect();
    if done.len() < 2 {
        return Err(Error::config(
            "refine",
            "trials",
            "fewer than 2 finished trials: nothing to narrow around",
        ));
    }
    let k = done.len().div_ceil(4).max(2);
    let top = &done[..k];
    let mut new = space.clone();
    for (name, d) in new.params.iter_mut() {
        let nums: Vec<f64> = top
            .iter()
            .filter_map(|t| t.values.get(name))
            .map(|v| as_number(d, v))
            .collect();
        let (lo, hi) = nums
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
                (a.min(x), b.max(x))
            });
        *d = match d.clone() {
            Dist::LogUniform { low, high } => {
                let (l, h) = (lo.ln(), hi.ln());
                let pad = ((h - l) / 2.0).max(0.1);
                Dist::LogUniform {
                    low: (l - pad).exp().max(low),
                    high: (h + pad).exp().min(high),
                }
            }
            Dist::Uniform { low, high } => {
                let pad = ((hi - lo) / 2.0).max((high - low) * 0.05);
                Dist::Uniform {
                    low: (lo - pad).max(low),
                    high: (hi + pad).min(high),
                }
            }
            Dist::Int { low, high } => Dist::Int {
                low: (lo.floor() as i64 - 1).max(low),
                high: (hi.ceil() as i64 + 1).min(high),
            },
            Dist::Choice(c) => Dist::Choice(
                c.iter()
                    .filter(|v| top.iter().any(|t| t.values.get(name) == Some(v)))
                    .cloned()
                    .collect(),
            ),
        };
    }
    new.validate()?;
    Ok(new)
}

/// A search space as TOML (what `--refine` writes).
pub fn to_toml(space: &SearchSpace) -> Result<String> {
    let settings =
        toml::to_string(&space.settings).map_err(|e| Error::state("tune", e.to_string()))?;
    let fixed = toml::to_string(&space.fixed).map_err(|e| Error::state("tune", e.to_string()))?;
    let mut s = format!("[search]\n{settings}\n[fixed]\n{fixed}\n[space]\n");
    for (k, d) in &space.params {
        let line = match d {
            Dist::LogUniform { low, high } => format!("log_uniform({low:e}, {high:e})"),
            Dist::Uniform { low, high } => format!("uniform({low}, {high})"),
            Dist::Int { low, high } => format!("int({low}, {high})"),
            Dist::Choice(c) => format!(
                "choice([{}])",
                c.iter()
                    .map(|v| v.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        s.push_str(&format!("{k} = \"{}\"\n", line.replace('"', "\\\"")));
    }
    Ok(s)
}

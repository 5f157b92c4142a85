//! Training runs of a study under one time budget.
//!
//! A study compares configurations on equal terms: every run sees the same number of
//! training images. [`plan`] turns `--minutes` into that number on this machine — it
//! times a few training steps of each configuration ([`calibrate`]) and gives each run
//! the share that makes the whole study fit (15% of the budget kept for validation and
//! the test split) — unless `--images` fixes it, which makes a study repeatable on any
//! machine. The images become a per-class subset of the training split and a number of
//! epochs ([`Plan::apply`]); each run is an ordinary `strata train` run in the study's
//! folder ([`train_curve`]), its history read back as a [`Curve`].

use crate::data::{self, Split};
use crate::error::{Error, Result};
use crate::train::{self, History, Observer, Quiet, RunPaths, Setup, TrainConfig};
use serde::{Deserialize, Serialize};
use std::path::Path;
use std::time::Instant;

/// Share of the budget left for validation, test and start-up.
const EVAL_SHARE: f64 = 0.15;

/// Images per second of training `cfg` on this machine: `steps` timed steps after one
/// untimed (the first step plans the convolutions and warms the caches).
pub fn calibrate(cfg: &TrainConfig, steps: usize) -> Result<f64> {
    let mut probe = cfg.clone();
    probe.per_class = Some(probe.per_class.unwrap_or(usize::MAX).min(
        // Enough images for the steps, few enough to read quickly.
        (cfg.batch_size * (steps + 1)).div_ceil(2).max(8),
    ));
    probe.val_fraction = 0.0;
    probe.augment = cfg.resolved_augment();
    let mut s = Setup::new(&probe, false, &mut Quiet)?;
    let n = s.train_loader.len();
    let mut images = 0u64;
    let mut start = Instant::now();
    for i in 0..=steps {
        let b = s.train_loader.batch(0, i % n);
        s.trainer.step(&b, 0, i as u64, &mut [])?;
        if i == 0 {
            start = Instant::now();
        } else {
            images += b.y.len() as u64;
        }
    }
    Ok(images as f64 / start.elapsed().as_secs_f64().max(1e-9))
}

/// The training split of `cfg`'s data (its `classes`, not its `per_class`): the images
/// of its smallest class, and the number of classes.
pub fn class_sizes(cfg: &TrainConfig) -> Result<(usize, usize)> {
    let set = data::load(&cfg.data, Split::Train)?;
    let set = match &cfg.classes {
        Some(c) => set.classes_subset(c)?,
        None => set,
    };
    let smallest = set.class_counts().into_iter().min().unwrap_or(0);
    Ok((smallest, set.num_classes()))
}

/// How many images each run of a study sees, and in how many epochs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    /// Training images per run (epochs × training images per epoch).
    pub images: usize,
    /// Epochs per run (points on each curve).
    pub epochs: u64,
    /// Images per class in the subset (training + validation).
    pub per_class: Option<usize>,
    /// Measured training speed of each configuration, images/s (empty when `--images`
    /// fixed the plan).
    pub images_per_s: Vec<f64>,
    /// The budget, minutes (none when `--images` fixed the plan).
    pub minutes: Option<f64>,
}

impl Plan {
    /// `cfg` with the plan's subset and epochs.
    pub fn apply(&self, cfg: &TrainConfig) -> TrainConfig {
        TrainConfig {
            per_class: self.per_class,
            epochs: self.epochs,
            ..cfg.clone()
        }
    }
}

/// The plan for `cfgs` (which differ only in what the study compares): `images` when
/// given, else what `minutes` allow on this machine; spread over at least `epochs`
/// epochs of a per-class subset (more epochs once the subset is the whole split).
pub fn plan(
    cfgs: &[TrainConfig],
    minutes: f64,
    images: Option<usize>,
    epochs: u64,
    obs: &mut dyn Observer,
) -> Result<Plan> {
    let first = cfgs
        .first()
        .ok_or_else(|| Error::config("study", "runs", "nothing to run"))?;
    if epochs == 0 {
        return Err(Error::config("study", "epochs", "must be ≥ 1"));
    }
    let (images, ips, budget) = match images {
        Some(0) => return Err(Error::config("study", "images", "must be ≥ 1")),
        Some(n) => (n, vec![], None),
        None => {
            if !(minutes.is_finite() && minutes > 0.0) {
                return Err(Error::config(
                    "study",
                    "minutes",
                    format!("must be a positive number, got {minutes}"),
                ));
            }
            let mut ips = vec![];
            for c in cfgs {
                ips.push(calibrate(c, 3)?);
            }
            let per_image: f64 = ips.iter().map(|v| 1.0 / v).sum();
            let n = ((1.0 - EVAL_SHARE) * minutes * 60.0 / per_image) as usize;
            obs.note(&format!(
                "budget {minutes} min: {} at {} images/s → {n} training images per run",
                cfgs.len(),
                ips.iter()
                    .map(|v| format!("{v:.0}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
            (n, ips, Some(minutes))
        }
    };
    let (smallest, classes) = class_sizes(first)?;
    let classes = classes.max(1);
    let keep = 1.0 - first.val_fraction;
    // Training images of one epoch over a subset of k per class: k · classes · keep.
    let per_epoch = images as f64 / epochs as f64;
    let k = (per_epoch / (classes as f64 * keep)).ceil() as usize;
    let (per_class, epochs) = if k >= smallest {
        let full = (smallest as f64 * classes as f64 * keep).max(1.0);
        (None, ((images as f64 / full).round() as u64).max(1))
    } else {
        (Some(k.max(2)), epochs)
    };
    if images < 2 * classes * epochs as usize {
        return Err(Error::config(
            "study",
            "minutes",
            format!(
                "{images} images per run are too few for {epochs} epochs of {classes} classes: \
                 give more minutes (or --images)"
            ),
        ));
    }
    Ok(Plan {
        images,
        epochs,
        per_class,
        images_per_s: ips,
        minutes: budget,
    })
}

/// One point of a run's curve: after an epoch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Point {
    /// Epoch, from 1.
    pub epoch: u64,
    /// Training error (1 − accuracy on the epoch's augmented images, in training mode).
    pub train_err: f64,
    /// Training loss.
    pub train_loss: f64,
    /// Validation error.
    pub val_err: Option<f64>,
    /// Validation loss.
    pub val_loss: Option<f64>,
}

/// A run of a study: what it was, its curve, its result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Curve {
    /// What the run is (`plain20`, `batch, batch 4`).
    pub label: String,
    /// After each epoch.
    pub points: Vec<Point>,
    /// Test accuracy of the final model.
    pub test_acc: Option<f64>,
    /// Wall seconds.
    pub seconds: f64,
    /// The run folder.
    pub dir: std::path::PathBuf,
}

impl Curve {
    /// The last epoch's point.
    pub fn last(&self) -> Option<&Point> {
        self.points.last()
    }
}

/// Trains `cfg` in `dir` (a fresh run) and reads its curve back.
pub fn train_curve(
    label: &str,
    cfg: &TrainConfig,
    dir: &Path,
    obs: &mut dyn Observer,
) -> Result<Curve> {
    let o = train::run(cfg, &RunPaths::new(dir), false, obs)?;
    let points = History::read(&RunPaths::new(dir).history())?
        .into_iter()
        .filter(|r| r.kind == "epoch")
        .map(|r| Point {
            epoch: r.epoch,
            train_err: 1.0 - r.train_acc,
            train_loss: r.train_loss,
            val_err: r.val_acc.map(|a| 1.0 - a),
            val_loss: r.val_loss,
        })
        .collect();
    Ok(Curve {
        label: label.to_string(),
        points,
        test_acc: o.test.map(|(_, c)| c.accuracy()),
        seconds: o.time_s,
        dir: dir.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn embedded() -> TrainConfig {
        TrainConfig {
            data: concat!(env!("CARGO_MANIFEST_DIR"), "/data/embedded").into(),
            ..TrainConfig::default()
        }
    }

    #[test]
    fn a_plan_spreads_the_images_over_a_per_class_subset_or_over_more_epochs() {
        let cfg = embedded();
        let one = std::slice::from_ref(&cfg);
        // 900 images in 3 epochs of 10 classes, 10% held out: 300 per epoch → 34 per class.
        let p = plan(one, 1.0, Some(900), 3, &mut Quiet).unwrap();
        assert_eq!((p.images, p.epochs, p.per_class), (900, 3, Some(34)));
        assert_eq!(p.apply(&cfg).per_class, Some(34));
        assert!(p.images_per_s.is_empty() && p.minutes.is_none());
        // More images than the split holds: the whole split, more epochs.
        let total = crate::data::load(&cfg.data, Split::Train).unwrap().len();
        let p = plan(one, 1.0, Some(total * 4), 2, &mut Quiet).unwrap();
        assert_eq!(p.per_class, None);
        assert!(p.epochs >= 4, "{p:?}");
        // Bad input.
        assert!(plan(&[], 1.0, Some(10), 1, &mut Quiet).is_err());
        assert!(plan(one, 1.0, Some(0), 1, &mut Quiet).is_err());
        assert!(plan(one, 1.0, Some(900), 0, &mut Quiet).is_err());
        assert!(plan(one, -1.0, None, 1, &mut Quiet).is_err());
        assert!(plan(one, 1.0, Some(5), 1, &mut Quiet).is_err());
    }

    #[test]
    fn calibration_measures_a_positive_speed_and_a_budget_plans_from_it() {
        let cfg = TrainConfig {
            width: Some(0.25),
            batch_size: 8,
            ..embedded()
        };
        let ips = calibrate(&cfg, 2).unwrap();
        assert!(ips.is_finite() && ips > 0.0);
        let p = plan(&[cfg], 0.05, None, 2, &mut Quiet).unwrap();
        assert_eq!(p.images_per_s.len(), 1);
        assert_eq!(p.minutes, Some(0.05));
        assert!(p.images > 0);
    }
}

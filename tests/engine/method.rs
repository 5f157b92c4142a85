//! The method commands: `check` on deliberately broken setups, `diagnose` on synthetic
//! histories (every verdict, mixed evidence), `lr-find` and `--watch` on a small run, and
//! their bad inputs.

use std::process::Command;
use std::sync::Arc;
use strata::data::{ImageDataset, Loader, Normalize};
use strata::method::check::{self, CheckOptions, CheckReport, LayerVerdict};
use strata::method::diagnose::{diagnose_records, Case};
use strata::method::lr_find::{lr_find, LrFindOptions};
use strata::method::{Status, Thresholds};
use strata::nn::Layer;
use strata::train::{self, Quiet, Record, RunPaths, Setup, TrainConfig};

use crate::embedded;

fn small() -> TrainConfig {
    TrainConfig {
        data: embedded(),
        per_class: Some(40),
        batch_size: 64,
        width: Some(0.5),
        workers: 1,
        ..TrainConfig::default()
    }
}

fn run_check(cfg: &TrainConfig, breakage: impl FnOnce(&mut Setup)) -> CheckReport {
    let mut cfg = cfg.clone();
    cfg.augment = cfg.resolved_augment();
    let mut setup = Setup::new(&cfg, false, &mut Quiet).unwrap();
    breakage(&mut setup);
    check::check_setup(&mut setup, &cfg, &CheckOptions::default(), &mut Quiet).unwrap()
}

fn status(r: &CheckReport, name: &str) -> Status {
    r.items.iter().find(|i| i.name == name).unwrap().status
}

fn said(r: &CheckReport, name: &str) -> String {
    let i = r.items.iter().find(|i| i.name == name).unwrap();
    format!("{} {}", i.summary, i.details.join(" "))
}

#[test]
fn check_passes_a_sound_setup_and_catches_each_broken_one() {
    // Sound: the default model and data pass the initial-loss, inside and overfit checks.
    let ok = run_check(&small(), |_| {});
    assert_eq!(
        status(&ok, "initial loss"),
        Status::Pass,
        "{}",
        said(&ok, "initial loss")
    );
    assert_eq!(
        status(&ok, "network at initialization"),
        Status::Pass,
        "{ok:#?}"
    );
    assert_eq!(
        status(&ok, "overfit a small sample"),
        Status::Pass,
        "{}",
        said(&ok, "overfit a small sample")
    );
    assert_eq!(status(&ok, "data"), Status::Pass, "{}", said(&ok, "data"));

    // Weights 100× too large: the initial loss fails and the logits explode.
    let big = run_check(&small(), |s| {
        s.trainer.model.net.visit_params("", &mut |_, p| {
            for v in p.value.data_mut() {
                *v *= 100.0;
            }
        })
    });
    assert_eq!(status(&big, "initial loss"), Status::Fail);
    assert!(
        said(&big, "initial loss").contains("logits are large"),
        "{}",
        said(&big, "initial loss")
    );
    let logits = big.layers.last().unwrap();
    assert_eq!(logits.verdict, LayerVerdict::Exploding, "{logits:?}");
    assert_eq!(big.status, Status::Fail);

    // A deep plain network with a too-small initialization: the signal vanishes.
    let deep = TrainConfig {
        model: "plain20".into(),
        norm: Some("none".into()),
        init: Some("normal:0.01".into()),
        activation: Some("tanh".into()),
        ..small()
    };
    let van = run_check(&deep, |_| {});
    assert_eq!(status(&van, "network at initialization"), Status::Fail);
    assert!(
        van.layers
            .iter()
            .any(|r| r.verdict == LayerVerdict::Vanishing),
        "{}",
        said(&van, "network at initialization")
    );

    // Inputs left unnormalized: the data check says so.
    let raw = run_check(&small(), |s| {
        let mut c = s.train_loader.config().clone();
        c.normalize = Normalize::identity(1);
        s.train_loader = Loader::new(s.train_set.clone(), c).unwrap();
    });
    assert_eq!(status(&raw, "data"), Status::Warn);
    assert!(
        said(&raw, "data").contains("not normalized"),
        "{}",
        said(&raw, "data")
    );

    // Labels shuffled: the sample is still memorized, but validation stays at chance.
    let shuffled = run_check(&small(), |s| {
        let d = &s.train_set;
        let mut labels = d.labels().to_vec();
        use strata::rand::{seq::SliceRandom, SeedableRng};
        labels.shuffle(&mut strata::rand::rngs::StdRng::seed_from_u64(1));
        let new = ImageDataset::new(
            d.images().to_vec(),
            labels,
            d.shape(),
            d.class_names().to_vec(),
        )
        .unwrap();
        s.train_set = Arc::new(new);
        s.train_loader = Loader::new(s.train_set.clone(), s.train_loader.config().clone()).unwrap();
    });
    let o = said(&shuffled, "overfit a small sample");
    assert!(shuffled.overfit.reached, "{o}");
    assert_eq!(
        status(&shuffled, "overfit a small sample"),
        Status::Warn,
        "{o}"
    );
    assert!(o.contains("labels match"), "{o}");

    // A model that cannot learn (every weight frozen): the overfit fails and says why.
    let frozen = run_check(&small(), |s| {
        strata::nn::set_frozen(&mut s.trainer.model.net, true, &|_| true);
    });
    let o = said(&frozen, "overfit a small sample");
    assert_eq!(
        status(&frozen, "overfit a small sample"),
        Status::Fail,
        "{o}"
    );
    assert!(o.contains("frozen"), "{o}");
}

fn epoch(e: u64, train_loss: f64, train_acc: f64, val_loss: f64, val_acc: f64) -> Record {
    Record {
        kind: "epoch".into(),
        epoch: e,
        step: e * 100,
        lr: 0.1,
        train_loss,
        train_acc,
        val_loss: Some(val_loss),
        val_acc: Some(val_acc),
        time_s: e as f64,
        images_per_s: 1000.0,
    }
}

/// A history from (train loss, train acc, val loss, val acc) per epoch.
fn history(rows: &[(f64, f64, f64, f64)]) -> Vec<Record> {
    rows.iter()
        .enumerate()
        .map(|(i, &(l, a, v, b))| epoch(i as u64 + 1, l, a, v, b))
        .collect()
}

fn verdict(rows: &[(f64, f64, f64, f64)]) -> (Option<Case>, Vec<Case>, Option<String>) {
    let d = diagnose_records(&history(rows), &[], Some(10), &Thresholds::default()).unwrap();
    (
        d.verdict,
        d.findings.iter().map(|f| f.case).collect(),
        d.no_verdict,
    )
}

#[test]
fn diagnose_names_each_case_from_synthetic_curves_and_refuses_mixed_evidence() {
    let t = Thresholds::default();
    // Healthy: converged, small gap.
    let healthy = [
        (1.0, 0.6, 0.9, 0.65),
        (0.5, 0.85, 0.5, 0.84),
        (0.35, 0.9, 0.352, 0.89),
        (0.34, 0.9, 0.35, 0.89),
        (0.339, 0.9, 0.349, 0.89),
        (0.338, 0.905, 0.349, 0.895),
    ];
    assert_eq!(
        verdict(&healthy).0,
        Some(Case::Healthy),
        "{:?}",
        verdict(&healthy)
    );
    // Overfitting: train keeps improving, validation loss turns up, the gap grows.
    let over = [
        (1.0, 0.6, 0.9, 0.65),
        (0.5, 0.85, 0.5, 0.84),
        (0.3, 0.92, 0.4, 0.87),
        (0.2, 0.95, 0.45, 0.86),
        (0.1, 0.98, 0.5, 0.86),
        (0.05, 0.99, 0.6, 0.85),
    ];
    assert_eq!(
        verdict(&over).0,
        Some(Case::Overfitting),
        "{:?}",
        verdict(&over)
    );
    // Not trained enough: everything still falling fast.
    let short = [
        (2.0, 0.3, 1.9, 0.3),
        (1.5, 0.5, 1.4, 0.5),
        (1.1, 0.6, 1.0, 0.6),
        (0.8, 0.7, 0.75, 0.7),
    ];
    assert_eq!(
        verdict(&short).0,
        Some(Case::NotTrainedEnough),
        "{:?}",
        verdict(&short)
    );
    // Underfitting: a plateau at a low accuracy, no gap.
    let under = [
        (2.0, 0.3, 2.0, 0.3),
        (1.4, 0.5, 1.4, 0.5),
        (1.3, 0.55, 1.3, 0.55),
        (1.299, 0.55, 1.3, 0.55),
        (1.298, 0.55, 1.3, 0.55),
        (1.298, 0.551, 1.3, 0.55),
    ];
    assert_eq!(
        verdict(&under).0,
        Some(Case::Underfitting),
        "{:?}",
        verdict(&under)
    );
    // Flat: learning rate too low.
    let flat = [
        (2.30, 0.1, 2.30, 0.1),
        (2.29, 0.11, 2.29, 0.1),
        (2.28, 0.11, 2.29, 0.1),
        (2.28, 0.11, 2.28, 0.1),
    ];
    assert_eq!(
        verdict(&flat).0,
        Some(Case::LrTooLow),
        "{:?}",
        verdict(&flat)
    );
    // Diverged: the loss ends far above its start.
    let div = [
        (2.3, 0.1, 2.3, 0.1),
        (1.5, 0.4, 1.5, 0.4),
        (3.0, 0.2, 3.5, 0.2),
        (9.0, 0.1, 9.0, 0.1),
    ];
    assert_eq!(verdict(&div).0, Some(Case::Diverged), "{:?}", verdict(&div));
    // Oscillation: the training loss goes up every other epoch.
    let osc = [
        (2.0, 0.3, 2.0, 0.3),
        (1.0, 0.7, 1.0, 0.7),
        (1.3, 0.6, 1.3, 0.6),
        (0.9, 0.72, 0.9, 0.72),
        (1.2, 0.65, 1.2, 0.65),
        (0.9, 0.72, 0.9, 0.72),
        (1.1, 0.68, 1.1, 0.68),
    ];
    let (v, found, _) = verdict(&osc);
    assert!(found.contains(&Case::LrTooHigh), "{v:?} {found:?}");
    // Blown up, then stuck at chance with the loss at ln 10: a rate too high, not
    // underfitting.
    let collapsed = [
        (185.0, 0.10, 2.2e5, 0.08),
        (2.37, 0.09, 2.38, 0.1),
        (2.34, 0.10, 2.35, 0.1),
        (2.32, 0.09, 2.38, 0.1),
        (2.32, 0.10, 2.33, 0.1),
    ];
    assert_eq!(
        verdict(&collapsed).0,
        Some(Case::LrTooHigh),
        "{:?}",
        verdict(&collapsed)
    );
    // Mixed: a gap that grows (overfitting) while validation still falls fast (not trained
    // enough) — no verdict, and it says why.
    let mixed = [
        (1.0, 0.6, 1.2, 0.55),
        (0.5, 0.8, 1.0, 0.6),
        (0.3, 0.9, 0.9, 0.62),
        (0.2, 0.97, 0.8, 0.64),
        (0.1, 0.97, 0.7, 0.66),
    ];
    let (v, found, why) = verdict(&mixed);
    assert_eq!(v, None, "{found:?}");
    assert!(why.unwrap_or_default().contains("mixed"), "{found:?}");
    // Too few epochs: no verdict.
    let (v, _, why) = verdict(&healthy[..2]);
    assert_eq!(v, None);
    assert!(why.unwrap().contains("at least"));
    // No epoch at all: an error.
    assert!(diagnose_records(&[], &[], None, &t).is_err());
}

#[test]
fn lr_find_sweeps_suggests_and_probes_on_a_small_run() {
    let out = tempfile::tempdir().unwrap();
    let opts = LrFindOptions {
        iterations: 40,
        start: 1e-5,
        end: 10.0,
        probe: vec![1e-2, 1e-7],
        probe_iterations: 30,
        out: Some(out.path().to_path_buf()),
        ..LrFindOptions::default()
    };
    let r = lr_find(&small(), &opts, &mut Quiet).unwrap();
    assert!(r.points.len() >= 10 && r.points.len() <= 40);
    assert!(r.points.windows(2).all(|p| p[1].lr > p[0].lr));
    assert!(
        r.suggestion > 1e-6 && r.suggestion < 1.0,
        "{}",
        r.suggestion
    );
    assert_eq!(r.suggestion, r.min_lr / 10.0);
    assert_eq!(r.probe.len(), 2);
    // Both rates start from the same weights and batch: the same first loss.
    assert_eq!(r.probe[0].start_loss, r.probe[1].start_loss);
    // 1e-7 for 30 steps does not move the weights; 1e-2 makes the loss fall.
    assert!(r.probe[0].fall > r.probe[1].fall, "{:?}", r.probe);
    assert!(out.path().join("lr_find.svg").is_file());
    let json = std::fs::read_to_string(out.path().join("lr_find.json")).unwrap();
    assert!(json.contains("\"suggestion\""));
}

#[test]
fn watch_records_layers_gradients_and_updates_and_diagnose_reads_them() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        epochs: 3,
        watch: Some(2),
        ..small()
    };
    train::run(&cfg, &RunPaths::new(dir.path()), false, &mut Quiet).unwrap();
    let steps_per_epoch = (360f64 / 64.0).ceil() as usize;
    let records = strata::train::watch::read(&RunPaths::new(dir.path()).watch()).unwrap();
    assert_eq!(
        records.len(),
        (3 * steps_per_epoch).div_ceil(2),
        "{records:?}"
    );
    let r = &records[1];
    assert_eq!(r.step, 2);
    assert!(r.acts.iter().any(|a| a.name == "features.0"));
    assert!(r
        .params
        .iter()
        .all(|p| p.grad_norm > 0.0 && p.weight_norm > 0.0));
    assert!(r
        .params
        .iter()
        .all(|p| p.update_ratio.is_some_and(|u| u > 0.0)));
    let d = strata::method::diagnose::diagnose(dir.path(), &Thresholds::default()).unwrap();
    assert_eq!(d.watch_records, records.len());
    assert_eq!(d.epochs, 3);
}

fn strata_cmd(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["--threads", "2"])
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn method_commands_refuse_bad_input_before_writing_anything() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("out");
    let o = out.to_str().unwrap();
    let data = embedded();
    for (args, says) in [
        (vec!["lr-find", "--start", "1", "--end", "0.1"], "end"),
        (vec!["lr-find", "--probe", "0.1,-1"], "probe"),
        (vec!["lr-find", "--probe", "0"], "probe"),
        (vec!["lr-find", "--iterations", "3"], "iterations"),
        (vec!["check", "--lr", "-1"], "lr"),
        (vec!["diagnose", "/nonexistent/run"], "not a run folder"),
    ] {
        let mut full = args.clone();
        if args[0] != "diagnose" {
            full.extend(["--out", o, "--data", &data]);
        }
        let r = strata_cmd(&full);
        let err = String::from_utf8_lossy(&r.stderr);
        assert_eq!(r.status.code(), Some(2), "{full:?}: {err}");
        assert!(
            err.contains(says) && !err.contains("panicked"),
            "{full:?}: {err}"
        );
        assert!(!out.exists(), "{full:?} wrote {o}");
    }
    // A run folder whose history has no epoch yet.
    let run = tmp.path().join("run");
    std::fs::create_dir(&run).unwrap();
    std::fs::write(run.join("history.jsonl"), "").unwrap();
    let r = strata_cmd(&["diagnose", run.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&r.stderr);
    assert_eq!(r.status.code(), Some(2), "{err}");
    assert!(err.contains("no finished epoch"), "{err}");
}

//! The studies at tiny scale: they run end to end, and the effects the lecture describes
//! show where they are strong even at this scale.

use std::path::Path;
use strata::study::init::{init_study, InitOptions};

#[test]
fn the_init_study_shows_collapse_saturation_and_kaiming_holding_the_spread() {
    let out = tempfile::tempdir().unwrap();
    let opts = InitOptions {
        data: Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("data/embedded")
            .display()
            .to_string(),
        batch: 16,
        // Full width: with 4 channels a layer has too few weights for the variance a
        // scheme sets to be the variance it gets.
        width: 1.0,
        out: Some(out.path().to_path_buf()),
        ..InitOptions::default()
    };
    let r = init_study(&opts).unwrap();
    assert_eq!(r.cases.len(), 16);
    let holds = |start: &str| {
        let c = r
            .claims
            .iter()
            .find(|c| c.claim.starts_with(start))
            .unwrap_or_else(|| panic!("no claim {start}"));
        assert!(c.holds, "{}: {}", c.claim, c.evidence);
    };
    holds("tanh under N(0, 0.01²)");
    holds("tanh under N(0, 1)");
    holds("ReLU under Kaiming");
    holds("with BatchNorm");
    // The collapse, layer by layer: every tanh layer's spread below the one before.
    let small = r
        .cases
        .iter()
        .find(|c| c.activation == "tanh" && c.init == "normal:0.01" && c.norm == "none")
        .unwrap();
    assert!(
        small.layers.windows(2).all(|p| p[1].std < p[0].std),
        "{:?}",
        small.layers
    );
    for f in ["init.svg", "results.json", "claims.txt"] {
        assert!(out.path().join(f).is_file(), "{f}");
    }
    // Bad input: a batch of one image.
    let bad = InitOptions { batch: 1, ..opts };
    assert!(init_study(&bad).is_err());
}

#[test]
fn the_norms_study_runs_and_shows_batchnorm_depending_on_the_batch_in_training_only() {
    use strata::study::norms::{norms_study, NormsOptions};
    let out = tempfile::tempdir().unwrap();
    let opts = NormsOptions {
        data: super::embedded(),
        norms: vec!["batch".into(), "group:4".into(), "none".into()],
        batches: vec![32, 4],
        images: Some(400),
        epochs: 2,
        width: 0.25,
        out: out.path().to_path_buf(),
        ..NormsOptions::default()
    };
    let r = norms_study(&opts, &mut strata::train::Quiet).unwrap();
    assert_eq!(r.runs.len(), 6);
    assert_eq!(r.plan.images, 400);
    for run in &r.runs {
        assert_eq!(run.curve.points.len(), 2, "{}", run.curve.label);
        assert!(run.curve.test_acc.is_some());
        // The rate scales with the batch.
        assert!((run.lr - 0.1 * run.batch as f32 / 128.0).abs() < 1e-7);
    }
    // The strong effect, at any scale: in training mode an image's logits depend on its
    // batch companions; in evaluation mode not at all.
    let t = r.train_vs_eval.as_ref().unwrap();
    assert!(t.train_mode_change > 1e-3, "{t:?}");
    assert_eq!(t.eval_mode_change, 0.0);
    let c = r
        .claims
        .iter()
        .find(|c| c.claim.contains("training and evaluation"))
        .unwrap();
    assert!(c.holds, "{}", c.evidence);
    for f in ["norms.svg", "results.json", "claims.txt"] {
        assert!(out.path().join(f).is_file(), "{f}");
    }
    // Bad input: a normalization that does not exist fails before any training.
    let bad = NormsOptions {
        norms: vec!["batchy".into()],
        ..opts.clone()
    };
    assert!(norms_study(&bad, &mut strata::train::Quiet).is_err());
}

#[test]
fn the_degradation_study_runs_four_curves_with_train_and_validation_error() {
    use strata::study::degradation::{degradation_study, DegradationOptions};
    let out = tempfile::tempdir().unwrap();
    let opts = DegradationOptions {
        data: super::embedded(),
        depths: [20, 32],
        width: 0.25,
        images: Some(300),
        epochs: 2,
        out: out.path().to_path_buf(),
        ..DegradationOptions::default()
    };
    let r = degradation_study(&opts, &mut strata::train::Quiet).unwrap();
    let labels: Vec<&str> = r.runs.iter().map(|c| c.label.as_str()).collect();
    assert_eq!(labels, ["plain20", "plain32", "resnet20", "resnet32"]);
    assert_eq!(r.claims.len(), 3);
    for c in &r.runs {
        assert_eq!(c.points.len(), 2);
        assert!(c.points.iter().all(|p| (0.0..=1.0).contains(&p.train_err)));
    }
    let svg = std::fs::read_to_string(out.path().join("degradation.svg")).unwrap();
    assert!(svg.contains("training error") && svg.contains("validation error"));
    // The shallower depth must come first.
    let bad = DegradationOptions {
        depths: [56, 20],
        ..opts
    };
    assert!(degradation_study(&bad, &mut strata::train::Quiet).is_err());
}

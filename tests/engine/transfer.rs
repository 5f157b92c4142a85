//! Transfer learning at tiny scale: what `finetune --mode head` must leave untouched, the
//! backbone's learning-rate multiplier, bare state dicts, and the bad inputs.

use super::embedded;
use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use strata::checkpoint;
use strata::tensor::Tensor;
use strata::train::pretrained::{self, Finetune, FinetuneMode};
use strata::train::{self, Quiet, RunPaths, TrainConfig};
use strata::transfer::{self, FinetuneOptions, Mode};

/// A small run on the embedded data's classes `classes`.
fn small(classes: &[u32], epochs: u64) -> TrainConfig {
    TrainConfig {
        data: embedded(),
        classes: Some(classes.to_vec()),
        per_class: Some(40),
        epochs,
        batch_size: 32,
        width: Some(0.25),
        lr: 0.05,
        workers: 1,
        ..TrainConfig::default()
    }
}

/// A source run on classes 0–4, trained once per test binary.
fn source(dir: &Path) -> std::path::PathBuf {
    let run = dir.join("source");
    train::run(
        &small(&[0, 1, 2, 3, 4], 1),
        &RunPaths::new(&run),
        false,
        &mut Quiet,
    )
    .unwrap();
    run
}

fn tensors(path: &Path) -> BTreeMap<String, Tensor> {
    checkpoint::read_tensors(path).unwrap().0
}

fn finetune_cfg(from: &Path, mode: FinetuneMode, mult: f32) -> TrainConfig {
    let mut cfg = small(&[5, 6, 7, 8, 9], 2);
    cfg.width = None;
    cfg.finetune = Some(Finetune {
        backbone_lr_mult: mult,
        ..Finetune::new(from.display().to_string(), mode)
    });
    cfg
}

#[test]
fn head_mode_leaves_every_backbone_parameter_and_batchnorm_statistic_bit_identical() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    let before = tensors(&src.join("best.safetensors"));
    let out = dir.path().join("head");
    let cfg = finetune_cfg(&src, FinetuneMode::Head, 1.0);
    train::run(&cfg, &RunPaths::new(&out), false, &mut Quiet).unwrap();
    let after = tensors(&out.join("last.safetensors"));
    let head = ["classifier.weight", "classifier.bias"];
    let mut stats = 0;
    for (name, t) in &after {
        if head.contains(&name.as_str()) {
            assert_eq!(t.shape()[0], 5, "{name}: a head for the 5 new classes");
            continue;
        }
        let b = &before[name];
        let same = b
            .data()
            .iter()
            .zip(t.data())
            .all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(same, "{name} changed in head mode");
        stats += usize::from(name.contains("running_"));
    }
    assert!(
        stats >= 8,
        "the BatchNorm statistics were compared ({stats})"
    );
    assert_eq!(after.len(), before.len());
    // The head did learn, and the run says what it trained from.
    let saved = TrainConfig::from_toml(&out.join("config.toml")).unwrap();
    assert_eq!(saved.model, "fmnist-cnn");
    assert_eq!(saved.finetune.unwrap().mode, FinetuneMode::Head);

    // Full mode with the backbone's rate at 0: its weights stay, its BatchNorm statistics
    // move (they are batch statistics in training), the head trains.
    let out0 = dir.path().join("full0");
    let cfg = finetune_cfg(&src, FinetuneMode::Full, 0.0);
    train::run(&cfg, &RunPaths::new(&out0), false, &mut Quiet).unwrap();
    let full0 = tensors(&out0.join("last.safetensors"));
    let w = "features.0.weight";
    assert_eq!(full0[w].data(), before[w].data(), "rate 0: weights stay");
    let rm = "features.1.running_mean";
    assert_ne!(
        full0[rm].data(),
        before[rm].data(),
        "full mode: statistics move"
    );
    // And at the full rate the backbone moves.
    let out1 = dir.path().join("full1");
    train::run(
        &finetune_cfg(&src, FinetuneMode::Full, 1.0),
        &RunPaths::new(&out1),
        false,
        &mut Quiet,
    )
    .unwrap();
    assert_ne!(
        tensors(&out1.join("last.safetensors"))[w].data(),
        before[w].data()
    );

    // Head then full: two runs, the second starting from the first's head.
    let htf = dir.path().join("htf");
    let opts = |train: TrainConfig| FinetuneOptions {
        train,
        from: src.display().to_string(),
        model: None,
        normalize: None,
        mode: Mode::HeadThenFull,
        backbone_lr_mult: 1.0,
        head_epochs: 1,
        out: htf.clone(),
    };
    // The base config carries a width override: refused, a fine-tune keeps the
    // source's architecture.
    let e = transfer::finetune(&opts(small(&[5, 6, 7, 8, 9], 1)), &mut Quiet).unwrap_err();
    assert!(e.to_string().contains("width"), "{e}");
    let mut base = small(&[5, 6, 7, 8, 9], 1);
    base.width = None;
    let r = transfer::finetune(&opts(base), &mut Quiet).unwrap();
    assert_eq!(r.stages.len(), 2);
    assert_eq!(r.stages[0].mode, FinetuneMode::Head);
    assert_eq!(r.stages[1].mode, FinetuneMode::Full);
    assert!(r.test_acc().is_some());
    assert!(!r.advice.much_data, "36 images per class is little data");
    assert_eq!(r.advice.mode, Mode::Head);
    let s2 = TrainConfig::from_toml(&htf.join("config.toml")).unwrap();
    assert!(s2.finetune.as_ref().unwrap().keep_head);
    assert!((s2.lr - 0.025).abs() < 1e-7, "half the rate in stage 2");
}

#[test]
fn a_bare_state_dict_loads_by_model_name_with_the_same_logits() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    let t = train::load_trained(&src).unwrap();
    let mut model = t.model;
    // Written as torchvision writes it: names only, no header, DataParallel's prefix.
    let sd: BTreeMap<String, Tensor> = checkpoint::state_dict(&mut model)
        .into_iter()
        .map(|(k, v)| (format!("module.{k}"), v))
        .collect();
    let bare = dir.path().join("bare.safetensors");
    checkpoint::write_tensors(&bare, sd, &BTreeMap::new()).unwrap();
    // Without a model name: an error that says how to give it.
    let e = train::load_trained(&bare).err().unwrap().to_string();
    assert!(e.contains("--model"), "{e}");
    // The default configuration is width 1; this one is 0.25: the shapes say so.
    let how = train::LoadAs {
        model: Some("fmnist_cnn".into()),
        normalize: None,
    };
    let e = train::load_trained_as(&bare, &how)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("do not fit"), "{e}");
    // A full-width model, as torchvision's are at their defaults.
    let mut full = strata::models::build("fmnist-cnn", None).unwrap();
    let sd = checkpoint::state_dict(&mut full);
    checkpoint::write_tensors(&bare, sd, &BTreeMap::new()).unwrap();
    let mut loaded = train::load_trained_as(&bare, &how).unwrap();
    assert_eq!(loaded.model.name, "fmnist-cnn");
    assert_eq!(loaded.model.config.classes, 10, "classes from the head");
    assert_eq!(loaded.warnings.len(), 1, "{:?}", loaded.warnings);
    use strata::nn::{Layer, Mode};
    let x = Tensor::from_vec(
        (0..2 * 784).map(|i| (i % 7) as f32 / 7.0).collect(),
        &[2, 1, 28, 28],
    )
    .unwrap();
    let a = full.forward(&x, Mode::Eval).unwrap();
    let b = loaded.model.forward(&x, Mode::Eval).unwrap();
    assert_eq!(a.data(), b.data());
    // A bare state dict of the wrong model: the tensors that do not fit are named.
    let how = train::LoadAs {
        model: Some("resnet20".into()),
        normalize: None,
    };
    let e = train::load_trained_as(&bare, &how)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("do not fit") && e.contains("missing"), "{e}");
    // A strata checkpoint named as another model.
    let e = pretrained::Source::open(&src, Some("resnet20"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("holds a fmnist-cnn"), "{e}");
}

fn strata(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .env("STRATA_DATA_DIR", "/nonexistent")
        .output()
        .unwrap()
}

#[test]
fn finetune_refuses_bad_sources_and_data_with_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let src = source(dir.path());
    let src_s = src.display().to_string();
    let data = embedded();
    let fail = |args: &[&str], words: &[&str]| {
        let o = strata(args);
        let err = String::from_utf8_lossy(&o.stderr).to_string();
        assert_eq!(
            o.status.code(),
            Some(2),
            "input errors exit 2: {args:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        for w in words {
            assert!(err.contains(w), "{args:?}: `{w}` not in {err}");
        }
    };
    let out = dir.path().join("x").display().to_string();
    let base = [
        "finetune",
        "--data",
        data.as_str(),
        "--run-dir",
        out.as_str(),
    ];
    let with = |more: &[&'static str]| -> Vec<String> {
        base.iter()
            .map(|s| s.to_string())
            .chain(more.iter().map(|s| s.to_string()))
            .collect()
    };
    let run = |v: Vec<String>, words: &[&str]| {
        let a: Vec<&str> = v.iter().map(String::as_str).collect();
        fail(&a, words)
    };
    // No such source.
    run(
        with(&["--from", "/nonexistent/run"]),
        &["does not exist", "best.safetensors"],
    );
    // A bad mode.
    let mut v = with(&["--mode", "sideways"]);
    v.extend(["--from".into(), src_s.clone()]);
    run(v, &["head, full, head-then-full or auto"]);
    // A backbone that does not match: a checkpoint of another model named as this one.
    let mut v = with(&["--model", "resnet20"]);
    v.extend(["--from".into(), src_s.clone()]);
    run(v, &["holds a fmnist-cnn"]);
    // Architecture overrides are refused.
    let mut v = with(&["--width", "0.5"]);
    v.extend(["--from".into(), src_s.clone()]);
    run(v, &["width", "architecture"]);
    // Zero images per class.
    let mut v = with(&["--per-class", "0"]);
    v.extend(["--from".into(), src_s.clone()]);
    run(v, &["per_class", "≥ 1"]);
    // Classes that do not exist, or a backwards range.
    let mut v = with(&["--classes", "8-12"]);
    v.extend(["--from".into(), src_s.clone()]);
    run(v, &["class 10 does not exist"]);
    let mut v = with(&["--classes", "9-5"]);
    v.extend(["--from".into(), src_s.clone()]);
    run(v, &["backwards"]);
    // Images with other channels: an RGB folder for a gray model.
    let rgb = dir.path().join("rgb");
    for c in ["a", "b"] {
        std::fs::create_dir_all(rgb.join(c)).unwrap();
        for i in 0..4u8 {
            let im = image::RgbImage::from_pixel(28, 28, image::Rgb([i * 40, 10, 200]));
            im.save(rgb.join(c).join(format!("{i}.png"))).unwrap();
        }
    }
    let rgb_s = rgb.display().to_string();
    fail(
        &[
            "finetune",
            "--from",
            &src_s,
            "--data",
            &rgb_s,
            "--run-dir",
            &out,
            "--epochs",
            "1",
        ],
        &["1-channel", "3-channel"],
    );
    // Images of another size fit this backbone (its head is new): it trains, and says so.
    let gray = dir.path().join("gray32");
    for c in ["a", "b"] {
        std::fs::create_dir_all(gray.join(c)).unwrap();
        for i in 0..6u8 {
            let im = image::GrayImage::from_pixel(
                32,
                32,
                image::Luma([i * 40 + u8::from(c == "b") * 20]),
            );
            im.save(gray.join(c).join(format!("{i}.png"))).unwrap();
        }
    }
    let gray_s = gray.display().to_string();
    let o = strata(&[
        "finetune",
        "--from",
        &src_s,
        "--data",
        &gray_s,
        "--run-dir",
        &out,
        "--epochs",
        "1",
        "--val-fraction",
        "0",
        "--mode",
        "head",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("32×32") && err.contains("28×28"), "{err}");
    // The run is evaluated on its classes: eval knows the source's subset.
    let o = strata(&["eval", &src_s]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

//! End to end: a tiny model learns on the embedded Fashion-MNIST subset, and a run killed
//! after a checkpoint resumes into exactly the history of an uninterrupted run.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use strata::train::{self, History, Quiet, Record, RunPaths, TrainConfig};

use crate::embedded;

#[test]
fn a_tiny_model_learns_on_the_embedded_subset() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        data: embedded(),
        epochs: 3,
        batch_size: 64,
        lr: 0.05,
        width: Some(0.5),
        augment: String::new(),
        workers: 1,
        tta: train::tta::Tta::Flip,
        ..TrainConfig::default()
    };
    let paths = RunPaths::new(dir.path());
    let out = train::run(&cfg, &paths, false, &mut Quiet).unwrap();
    let hist = History::read(&paths.history()).unwrap();
    let epochs: Vec<&Record> = hist.iter().filter(|r| r.kind == "epoch").collect();
    assert_eq!(epochs.len(), 3);
    let steps = epochs[2].step;
    assert!(steps >= 300, "only {steps} iterations");
    let first_iter = hist.iter().find(|r| r.kind == "iter").unwrap();
    assert!(
        first_iter.train_loss > 1.0,
        "the first iterations should start near ln 10: {}",
        first_iter.train_loss
    );
    let last = epochs[2];
    assert!(
        last.train_loss < 0.7,
        "train loss {} is not well below ln(10) = 2.30",
        last.train_loss
    );
    let val = last.val_acc.unwrap();
    assert!(
        val > 0.7,
        "validation accuracy {val} is not far above chance (0.1)"
    );
    let (_, conf) = out.test.expect("the embedded subset has a test split");
    assert!(conf.accuracy() > 0.7, "test accuracy {}", conf.accuracy());
    // --tta flip: the same test with mirrored views averaged, beside the plain one.
    let (_, tta) = out.test_tta.expect("tta = flip was asked for");
    assert_eq!(tta.total(), conf.total());
    assert!(
        tta.accuracy() > 0.7,
        "test accuracy with TTA {}",
        tta.accuracy()
    );
    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(paths.metrics()).unwrap()).unwrap();
    assert_eq!(metrics["test_tta"]["views"], "flip");
    assert_eq!(
        metrics["test_tta"]["accuracy"].as_f64(),
        Some(tta.accuracy())
    );
    for f in [
        paths.last(),
        paths.optim(3),
        paths.best(),
        paths.metrics(),
        paths.config(),
    ] {
        assert!(f.exists(), "{} missing", f.display());
    }
    // the checkpoint reloads into a model that scores the same
    let t = train::load_trained(dir.path()).unwrap();
    assert_eq!(t.class_names.len(), 10);
}

#[test]
fn mixed_precision_learns_as_well_as_f32() {
    // Same seed, same data: bf16 products change the numbers a little, not the course
    // of training (on a CPU without AVX-512 BF16 both runs are f32 and equal).
    let run = |precision: &str| {
        let dir = tempfile::tempdir().unwrap();
        let cfg = TrainConfig {
            data: embedded(),
            epochs: 2,
            batch_size: 64,
            lr: 0.05,
            width: Some(0.5),
            augment: String::new(),
            workers: 1,
            precision: precision.parse().unwrap(),
            ..TrainConfig::default()
        };
        let paths = RunPaths::new(dir.path());
        let out = train::run(&cfg, &paths, false, &mut Quiet).unwrap();
        let hist = History::read(&paths.history()).unwrap();
        let last = hist.iter().rfind(|r| r.kind == "epoch").unwrap().clone();
        let saved = std::fs::read_to_string(paths.config()).unwrap();
        assert!(
            saved.contains(&format!("precision = \"{precision}\"")),
            "{saved}"
        );
        (last.train_loss, out.test.unwrap().1.accuracy())
    };
    let (loss32, acc32) = run("f32");
    let (loss16, acc16) = run("bf16");
    assert!(
        loss16 < 0.8 && acc16 > 0.7,
        "bf16: loss {loss16}, accuracy {acc16}"
    );
    assert!(
        (loss16 - loss32).abs() < 0.1 && (acc16 - acc32).abs() < 0.05,
        "bf16 loss {loss16} / accuracy {acc16} against f32 {loss32} / {acc32}"
    );
}

/// The fields of a record that must replay exactly (not the wall-clock ones).
fn replayable(r: &Record) -> Replay {
    (
        r.kind.clone(),
        r.epoch,
        r.step,
        r.lr.to_bits(),
        r.train_loss.to_bits(),
        r.train_acc.to_bits(),
        r.val_loss.map(f64::to_bits),
        r.val_acc.map(f64::to_bits),
    )
}

/// The replayable fields of every record of the run in `dir`.
pub(crate) type Replay = (String, u64, u64, u32, u64, u64, Option<u64>, Option<u64>);
pub(crate) fn replayed(dir: &Path) -> Vec<Replay> {
    History::read(&RunPaths::new(dir).history())
        .unwrap()
        .iter()
        .map(replayable)
        .collect()
}

/// Fails the test with the command's stderr unless it exited successfully.
pub(crate) fn assert_ok(out: &std::process::Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub(crate) fn strata(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_strata"));
    c.args(["--threads", "2"]).args(args);
    c
}

/// A `train` of 4 short epochs on the embedded subset (150 images per class, half
/// width, batch 32), long enough to be killed after its first checkpoint; `extra`
/// flags follow.
pub(crate) fn killable_run(extra: &[&str]) -> Command {
    let data = embedded();
    let mut c = strata(&[
        "train",
        "--data",
        &data,
        "--per-class",
        "150",
        "--epochs",
        "4",
        "--batch-size",
        "32",
        "--width",
        "0.5",
        "--log-every",
        "10",
        "--workers",
        "2",
    ]);
    c.args(extra);
    c
}

/// Runs `cmd` (a `train` into `dir`) and kills it once its first checkpoint exists;
/// fails if it finished first.
pub(crate) fn kill_after_first_checkpoint(mut cmd: Command, dir: &Path) -> RunPaths {
    let mut child = cmd.stderr(std::process::Stdio::null()).spawn().unwrap();
    let paths = RunPaths::new(dir);
    let t0 = Instant::now();
    while !paths.last().exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "no checkpoint after 2 minutes"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !paths.metrics().exists(),
        "the run finished before it could be killed; make it longer"
    );
    paths
}

#[test]
fn a_killed_run_resumes_into_the_uninterrupted_history() {
    let tmp = tempfile::tempdir().unwrap();
    let run = || killable_run(&["--dropout", "0.2"]);
    let full: PathBuf = tmp.path().join("full");
    let killed: PathBuf = tmp.path().join("killed");
    let status = run().arg("--run-dir").arg(&full).output().unwrap();
    assert_ok(&status);

    // Start the same run, kill it once the checkpoint of epoch 1 exists.
    let mut cmd = run();
    cmd.arg("--run-dir").arg(&killed);
    let paths = kill_after_first_checkpoint(cmd, &killed);
    let before = History::read(&paths.history()).unwrap();
    assert!(
        before.iter().any(|r| r.kind == "epoch"),
        "killed before the first epoch record"
    );

    let out = strata(&["train", "--resume"])
        .arg(&killed)
        .output()
        .unwrap();
    assert_ok(&out);
    let (a, b) = (replayed(&full), replayed(&paths.dir));
    assert_eq!(a.len(), b.len(), "history lengths differ");
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x, y, "history line {i} differs after resume");
    }
}

#[test]
fn bad_options_fail_before_any_work_with_exit_code_2() {
    for args in [
        vec!["train", "--epochs", "0"],
        vec!["train", "--lr", "-1"],
        vec!["train", "--model", "resnet21"],
        vec!["train", "--data", "/nonexistent/folder"],
        vec!["train", "--augment", "flip,wobble"],
        vec!["train", "--schedule", "sometimes"],
        vec!["train", "--precision", "fp16"],
        vec!["bench", "--precision", "half"],
        vec!["eval", "/nonexistent/run"],
    ] {
        let out = strata(&args).output().unwrap();
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.lines().any(|l| l.starts_with("error:")) && !err.contains("panicked"),
            "{args:?}: {err}"
        );
    }
}

#[test]
fn a_diverging_run_stops_with_exit_code_1_and_says_what_to_do() {
    let tmp = tempfile::tempdir().unwrap();
    let data = embedded();
    let out = strata(&[
        "train",
        "--data",
        &data,
        "--per-class",
        "20",
        "--epochs",
        "2",
        "--batch-size",
        "50",
        "--lr",
        "1e9",
        "--schedule",
        "constant",
        "--norm",
        "none",
        "--augment",
        "none",
    ])
    .arg("--run-dir")
    .arg(tmp.path().join("nan"))
    .output()
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("learning rate") && err.contains("--lr") && err.contains("iteration"),
        "{err}"
    );
}

#[test]
fn eval_and_predict_use_a_trained_run() {
    let tmp = tempfile::tempdir().unwrap();
    let data = embedded();
    let run = tmp.path().join("run");
    let out = strata(&[
        "train",
        "--data",
        &data,
        "--per-class",
        "40",
        "--epochs",
        "1",
        "--width",
        "0.25",
    ])
    .arg("--run-dir")
    .arg(&run)
    .output()
    .unwrap();
    assert_ok(&out);
    let eval = strata(&["eval"]).arg(&run).output().unwrap();
    let text = String::from_utf8_lossy(&eval.stdout);
    assert!(
        eval.status.success() && text.contains("accuracy") && text.contains("confusion matrix"),
        "{text}"
    );
    // a 40x30 RGB image of any content is converted to the model's 1x28x28 input
    let png = tmp.path().join("thing.png");
    image::RgbImage::from_fn(40, 30, |x, y| {
        image::Rgb([(x * 6) as u8, (y * 8) as u8, 90])
    })
    .save(&png)
    .unwrap();
    let pred = strata(&["predict", "--top-k", "2"])
        .arg(&run)
        .arg(&png)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&pred.stdout);
    assert_ok(&pred);
    assert_eq!(
        text.lines().filter(|l| l.contains('%')).count(),
        2,
        "{text}"
    );
    // --json: the top classes, the logits and their softmax, per image.
    let pred = strata(&["predict", "--json", "--top-k", "2"])
        .arg(&run)
        .arg(&png)
        .output()
        .unwrap();
    assert_ok(&pred);
    let all: Vec<strata::predict::Prediction> = serde_json::from_slice(&pred.stdout).unwrap();
    assert_eq!(all.len(), 1);
    let p = &all[0];
    assert_eq!(
        (p.logits.len(), p.probabilities.len(), p.top.len()),
        (10, 10, 2)
    );
    let max = p.logits.iter().copied().fold(f32::MIN, f32::max);
    let z: f32 = p.logits.iter().map(|l| (l - max).exp()).sum();
    for (l, q) in p.logits.iter().zip(&p.probabilities) {
        assert!(((l - max).exp() / z - q).abs() < 1e-6);
    }
    assert_eq!(p.top[0].probability, p.probabilities[p.top[0].class]);
    let bad = strata(&["predict"])
        .arg(&run)
        .arg(tmp.path().join("missing.png"))
        .output()
        .unwrap();
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn bench_sweeps_print_json_and_plot_and_reject_bad_options() {
    let dir = tempfile::tempdir().unwrap();
    let svg = dir.path().join("sweep.svg");
    let svg_arg = svg.to_str().unwrap();
    let common = ["--width", "0.25", "--iters", "1", "--warmup", "0"];
    let mut args = vec!["bench", "--model", "fmnist-cnn", "--batch", "2,4", "--json"];
    args.extend(common);
    args.extend(["--thread-counts", "1,2", "--plot", svg_arg]);
    let out = strata(&args).output().unwrap();
    assert_ok(&out);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let runs = v.as_array().unwrap();
    assert_eq!(runs.len(), 4);
    let configs: Vec<(u64, u64)> = runs
        .iter()
        .map(|r| (r["threads"].as_u64().unwrap(), r["batch"].as_u64().unwrap()))
        .collect();
    assert_eq!(configs, [(1, 2), (1, 4), (2, 2), (2, 4)]);
    assert!(runs
        .iter()
        .all(|r| r["images_per_s"].as_f64().unwrap() > 0.0));
    assert!(std::fs::read_to_string(&svg)
        .unwrap()
        .contains("batch size"));

    for bad in [
        vec!["bench", "--mode", "sideways"],
        vec!["bench", "--plot", svg_arg],
        vec!["bench", "--batch", "0"],
        vec!["bench", "--model", "resnet7"],
    ] {
        let out = strata(&bad).output().unwrap();
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(!out.stderr.is_empty());
    }
}

fn small_run(data: String) -> TrainConfig {
    TrainConfig {
        data,
        epochs: 2,
        batch_size: 64,
        per_class: Some(40),
        width: Some(0.25),
        augment: String::new(),
        workers: 1,
        ..TrainConfig::default()
    }
}

#[test]
fn a_run_folder_written_by_another_process_is_refused_with_its_pid() {
    let dir = tempfile::tempdir().unwrap();
    let paths = RunPaths::new(dir.path());
    let mut holder = std::fs::File::create(paths.lock_file()).unwrap();
    holder.try_lock().unwrap();
    std::io::Write::write_all(&mut holder, b"4242").unwrap();
    let err = train::run(&small_run(embedded()), &paths, false, &mut Quiet).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("process 4242") && msg.contains("--run-dir"),
        "{msg}"
    );
    assert!(
        !paths.history().exists(),
        "the refused run wrote its history"
    );
    // Released (as when the holder dies): the run goes ahead.
    drop(holder);
    train::run(&small_run(embedded()), &paths, false, &mut Quiet).unwrap();
}

#[test]
fn a_checkpoint_is_one_commit_and_resume_checks_and_cleans_it() {
    let dir = tempfile::tempdir().unwrap();
    let paths = RunPaths::new(dir.path());
    let mut cfg = small_run(embedded());
    train::run(&cfg, &paths, false, &mut Quiet).unwrap();
    // One optimizer file, the one `last` names; the older commit's is gone.
    let optim: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("optim-"))
        .collect();
    assert_eq!(optim, ["optim-00002.safetensors"]);
    let meta = strata::checkpoint::read_metadata(&paths.last()).unwrap();
    assert_eq!(meta["strata.optim_file"], "optim-00002.safetensors");

    // Leftovers of a killed write are removed by the resume, which goes on.
    std::fs::write(dir.path().join("last.safetensors.tmp"), b"half").unwrap();
    std::fs::write(paths.optim(3), b"a commit that never happened").unwrap();
    cfg.epochs = 3;
    train::run(&cfg, &paths, true, &mut Quiet).unwrap();
    assert!(!dir.path().join("last.safetensors.tmp").exists());
    let meta = strata::checkpoint::read_metadata(&paths.last()).unwrap();
    assert_eq!(meta["strata.epoch"], "3");
    assert!(paths.optim(3).exists() && !paths.optim(2).exists());

    // An optimizer state that is not the committed one is refused, by name.
    std::fs::write(paths.optim(3), b"tampered").unwrap();
    cfg.epochs = 4;
    let err = train::run(&cfg, &paths, true, &mut Quiet).unwrap_err();
    assert!(
        err.to_string().contains("checksum") && err.to_string().contains("optim-00003"),
        "{err}"
    );
    std::fs::remove_file(paths.optim(3)).unwrap();
    let err = train::run(&cfg, &paths, true, &mut Quiet).unwrap_err();
    assert!(err.to_string().contains("incomplete"), "{err}");
}

#[test]
fn thread_counts_out_of_range_are_refused_before_any_work() {
    for t in ["0", "100000"] {
        let out = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["--threads", t, "models"])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "--threads {t}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("--threads") && err.contains("cores"), "{err}");
    }
}

#[test]
fn resume_refuses_flags_that_change_the_run_and_records_a_new_length() {
    let dir = tempfile::tempdir().unwrap();
    let paths = RunPaths::new(dir.path());
    let cfg = TrainConfig {
        epochs: 1,
        ..small_run(embedded())
    };
    train::run(&cfg, &paths, false, &mut Quiet).unwrap();
    let run = dir.path().to_str().unwrap();
    let out = strata(&[
        "train", "--resume", run, "--lr", "0.5", "--model", "resnet20",
    ])
    .output()
    .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lr 0.1") && err.contains("model"), "{err}");
    assert!(!err.contains("epochs 1"), "{err}");
    // In the library too.
    let other = TrainConfig {
        lr: 0.5,
        ..cfg.clone()
    };
    let e = train::run(&other, &paths, true, &mut Quiet).unwrap_err();
    assert!(e.to_string().contains("lr"), "{e}");
    // A longer run is allowed, and config.toml says so afterwards.
    let out = strata(&["train", "--resume", run, "--epochs", "2", "--workers", "1"])
        .output()
        .unwrap();
    assert_ok(&out);
    let saved = TrainConfig::from_toml(&paths.config()).unwrap();
    assert_eq!(saved.epochs, 2);
    let hist = History::read(&paths.history()).unwrap();
    assert_eq!(hist.iter().filter(|r| r.kind == "epoch").count(), 2);
}

/// A copy of the embedded subset in `dir`, with `edit` applied to its files.
fn embedded_copy(dir: &Path, edit: impl Fn(&Path)) -> String {
    for e in std::fs::read_dir(embedded()).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), dir.join(e.file_name())).unwrap();
    }
    edit(dir);
    dir.display().to_string()
}

#[test]
fn a_size_changing_augmentation_evaluates_at_the_trained_size() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = TrainConfig {
        epochs: 1,
        augment: "rrc:0.5-1:0.75-1.33:24x24".into(),
        ..small_run(embedded())
    };
    let out = train::run(&cfg, &RunPaths::new(dir.path()), false, &mut Quiet).unwrap();
    let (_, conf) = out.test.expect("a test split");
    assert_eq!(conf.total(), 1000);
    let aug = strata::data::Augment::parse(&cfg.augment).unwrap();
    assert_eq!(aug.for_eval([1, 28, 28]).to_string(), "resize:24x24");
    assert!(strata::data::Augment::parse("flip,crop:2")
        .unwrap()
        .for_eval([1, 28, 28])
        .is_empty());
}

#[test]
fn a_corrupt_test_split_fails_before_training_and_an_absent_one_is_a_note() {
    let data = tempfile::tempdir().unwrap();
    let corrupt = embedded_copy(data.path(), |d| {
        std::fs::write(d.join("t10k-images-idx3-ubyte.gz"), b"not gzip").unwrap();
    });
    let run = tempfile::tempdir().unwrap();
    let paths = RunPaths::new(&run.path().join("r"));
    let err = train::run(&small_run(corrupt), &paths, false, &mut Quiet).unwrap_err();
    assert!(err.to_string().contains("t10k-images"), "{err}");
    assert!(
        !paths.history().exists(),
        "training started before the test split was read"
    );

    let data = tempfile::tempdir().unwrap();
    let absent = embedded_copy(data.path(), |d| {
        std::fs::remove_file(d.join("t10k-images-idx3-ubyte.gz")).unwrap();
        std::fs::remove_file(d.join("t10k-labels-idx1-ubyte.gz")).unwrap();
    });
    let cfg = TrainConfig {
        epochs: 1,
        ..small_run(absent)
    };
    let out = train::run(&cfg, &RunPaths::new(run.path()), false, &mut Quiet).unwrap();
    assert!(out.test.is_none());
}

#[test]
fn a_negative_learning_rate_is_refused_as_one_and_os_errors_are_said_once() {
    let out = strata(&["train", "--lr", "-1"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("lr") && err.contains("positive"), "{err}");
    let out = strata(&["eval", "/nonexistent/run"]).output().unwrap();
    assert_ne!(out.status.code(), Some(0));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.matches("No such file").count(), 1, "{err}");
}

/// The weights of a checkpoint, by name, as bits.
fn weight_bits(path: &Path) -> Vec<(String, Vec<u32>)> {
    let (t, _) = strata::checkpoint::read_tensors(path).unwrap();
    t.into_iter()
        .map(|(k, v)| (k, v.data().iter().map(|x| x.to_bits()).collect()))
        .collect()
}

#[test]
fn twenty_kills_at_random_moments_resume_into_the_uninterrupted_run() {
    use rand::{Rng, SeedableRng};
    let tmp = tempfile::tempdir().unwrap();
    let data = embedded();
    let common = [
        "train",
        "--data",
        &data,
        "--per-class",
        "60",
        "--epochs",
        "12",
        "--batch-size",
        "32",
        "--width",
        "0.25",
        "--dropout",
        "0.2",
        "--log-every",
        "4",
        "--workers",
        "1",
    ];
    let full = tmp.path().join("full");
    assert_ok(
        &strata(&common)
            .arg("--run-dir")
            .arg(&full)
            .output()
            .unwrap(),
    );

    let killed = tmp.path().join("killed");
    let paths = RunPaths::new(&killed);
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let (mut kills, mut starts) = (0, 0);
    while !paths.metrics().exists() {
        starts += 1;
        assert!(starts < 200, "the run never finished");
        let mut cmd = if paths.last().exists() {
            let mut c = strata(&["train", "--resume"]);
            c.arg(&killed);
            c
        } else {
            let mut c = strata(&common);
            c.arg("--run-dir").arg(&killed);
            c
        };
        // Slow checkpoint writes make the moments inside them likely targets.
        cmd.env("STRATA_TEST_SLOW_WRITE_MS", "40")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        if kills >= 20 {
            assert!(cmd.status().unwrap().success(), "the last resume failed");
            continue;
        }
        let mut child = cmd.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(rng.random_range(30..400)));
        if child.try_wait().unwrap().is_none() {
            child.kill().unwrap();
            kills += 1;
        }
        child.wait().unwrap();
    }
    assert!(kills >= 20, "only {kills} kills");
    let (a, b) = (replayed(&full), replayed(&paths.dir));
    assert_eq!(a, b, "the history after {kills} kills differs");
    assert_eq!(
        weight_bits(&RunPaths::new(&full).last()),
        weight_bits(&paths.last()),
        "the weights after {kills} kills differ"
    );
    let left: Vec<_> = std::fs::read_dir(&killed)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "leftovers: {left:?}");
}

#[test]
fn ctrl_c_stops_at_a_step_boundary_keeps_the_checkpoint_and_says_how_to_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let data = embedded();
    let common = [
        "train",
        "--data",
        &data,
        "--per-class",
        "60",
        "--epochs",
        "6",
        "--batch-size",
        "32",
        "--width",
        "0.25",
        "--log-every",
        "4",
        "--workers",
        "1",
    ];
    let full = tmp.path().join("full");
    assert_ok(
        &strata(&common)
            .arg("--run-dir")
            .arg(&full)
            .output()
            .unwrap(),
    );
    let run = tmp.path().join("run");
    let paths = RunPaths::new(&run);
    let child = strata(&common)
        .arg("--run-dir")
        .arg(&run)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !paths.last().exists() {
        assert!(t0.elapsed() < Duration::from_secs(60), "no checkpoint");
        std::thread::sleep(Duration::from_millis(2));
    }
    let sent = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(130), "{err}");
    assert!(
        err.contains("--resume") && err.contains("is intact"),
        "{err}"
    );
    assert!(!paths.metrics().exists());
    let leftovers = std::fs::read_dir(&run)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")
        })
        .count();
    assert_eq!(leftovers, 0);
    assert_ok(&strata(&["train", "--resume"]).arg(&run).output().unwrap());
    let (a, b) = (replayed(&full), replayed(&paths.dir));
    assert_eq!(a, b);
}

#[test]
fn the_default_augmentation_follows_the_dataset_and_a_run_records_it_resolved() {
    let with = |data: &str| TrainConfig {
        data: data.into(),
        ..TrainConfig::default()
    };
    assert_eq!(with("mnist").resolved_augment(), "crop:2");
    assert_eq!(with("/data/MNIST").resolved_augment(), "crop:2");
    assert_eq!(with("fashion-mnist").resolved_augment(), "flip,crop:2");
    assert_eq!(with("cifar10").resolved_augment(), "flip,crop:2");
    let explicit = TrainConfig {
        augment: "flip".into(),
        ..with("mnist")
    };
    assert_eq!(explicit.resolved_augment(), "flip");
    let dir = tempfile::tempdir().unwrap();
    let paths = RunPaths::new(dir.path());
    let cfg = TrainConfig {
        epochs: 1,
        augment: "auto".into(),
        ..small_run(embedded())
    };
    train::run(&cfg, &paths, false, &mut Quiet).unwrap();
    let saved = TrainConfig::from_toml(&paths.config()).unwrap();
    assert_eq!(saved.augment, "flip,crop:2");
    assert!(std::path::Path::new(&saved.data).is_absolute());
}

#[test]
fn image_folders_tell_classes_from_splits_and_idx_files_from_folders() {
    use strata::data::{self, Split};
    let root = tempfile::tempdir().unwrap();
    // Classes named `train` and `boat`, images directly inside: one split of 2 classes.
    for class in ["train", "boat"] {
        let d = root.path().join(class);
        std::fs::create_dir_all(&d).unwrap();
        for i in 0..3 {
            image::GrayImage::from_pixel(6, 6, image::Luma([40 * i as u8]))
                .save(d.join(format!("{i}.png")))
                .unwrap();
        }
    }
    let ds = data::load(root.path().to_str().unwrap(), Split::Train).unwrap();
    assert_eq!(ds.num_classes(), 2);
    assert_eq!(ds.len(), 6);

    let idx = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(idx.path().join("train-images-idx3-ubyte")).unwrap();
    let err = data::load(idx.path().to_str().unwrap(), Split::Train).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("train-images-idx3-ubyte") && msg.contains("is a folder"),
        "{msg}"
    );
}

#[test]
fn same_threads_give_the_same_bits_and_other_thread_counts_agree_closely() {
    let run = |threads: usize| {
        let dir = tempfile::tempdir().unwrap();
        let paths = RunPaths::new(dir.path());
        let cfg = TrainConfig {
            epochs: 2,
            ..small_run(embedded())
        };
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| train::run(&cfg, &paths, false, &mut Quiet))
            .unwrap();
        (replayed(dir.path()), weight_bits(&paths.last()))
    };
    let (h2, w2) = run(2);
    let (h2b, w2b) = run(2);
    assert_eq!(h2, h2b, "two runs with 2 threads differ");
    assert_eq!(w2, w2b);
    // Another thread count sums in another order: the numbers differ in the last bits,
    // and the runs stay close (docs/training.md states the tolerance).
    let (h1, _) = run(1);
    assert_eq!(h1.len(), h2.len());
    for (a, b) in h1.iter().zip(&h2) {
        let (la, lb) = (f64::from_bits(a.4), f64::from_bits(b.4));
        assert!(
            (la - lb).abs() <= 1e-3 * lb.abs().max(1.0),
            "train loss {la} (1 thread) vs {lb} (2 threads) at step {}",
            a.2
        );
    }
}

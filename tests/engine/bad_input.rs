//! The bad-input catalogue of `docs/reliability.md`, one case per entry that the other
//! tests do not already hold: configs, checkpoints, data and command-line misuse, run
//! through the real binary. Each must exit with the stated code before any training,
//! say what is wrong in words a user can act on, never panic, and write nothing.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use crate::embedded;

fn strata(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["--threads", "2"])
        .args(args)
        .output()
        .unwrap()
}

/// Runs `args`; requires exit `code`, every word of `says` in stderr, no panic, and
/// (when given) `run_dir` not created.
fn refused(args: &[&str], code: i32, says: &[&str], run_dir: Option<&Path>) -> String {
    let out = strata(args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    assert!(
        err.lines().any(|l| l.starts_with("error:")),
        "{args:?}: {err}"
    );
    for word in says {
        assert!(err.contains(word), "{args:?}: no `{word}` in: {err}");
    }
    if let Some(dir) = run_dir {
        assert!(!dir.exists(), "{args:?} wrote {}", dir.display());
    }
    err
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn bad_configs_are_refused_before_the_data_is_read_naming_the_field() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let data = embedded();
    let cases: &[(&str, &[&str])] = &[
        ("lr = \"fast\"\n", &["cfg.toml", "lr", "expected f32"]),
        (
            "learning_rate = 0.1\n",
            &["cfg.toml", "learning_rate", "lr"],
        ),
        ("[[[\n", &["cfg.toml", "line 1"]),
        ("lr = nan\n", &["lr", "positive"]),
        ("epochs = -3\n", &["cfg.toml", "-3"]),
        ("batch_size = 0\n", &["batch_size"]),
        (
            "warmup_epochs = 100.0\nepochs = 2\n",
            &["warmup_epochs", "longer than the run"],
        ),
        ("dropout = 1.5\n", &["dropout", "1.5"]),
        ("width = 0.0\n", &["width"]),
        (
            "[schedule]\nkind = \"one_cycle\"\npct_start = 2.0\n",
            &["pct_start"],
        ),
        ("[optimizer]\nkind = \"adam\"\n", &["adam", "adamw"]),
        ("[optimizer]\nkind = \"adamw\"\nbeta1 = 2.0\n", &["beta1"]),
        ("clip_grad = -1.0\n", &["clip_grad"]),
        ("augment = \"flip,spin:3\"\n", &["spin"]),
        ("norm = \"batchy\"\n", &["batchy"]),
    ];
    for (text, says) in cases {
        let cfg = write(tmp.path(), "cfg.toml", text);
        let args = [
            "train",
            "--data",
            &data,
            "--config",
            cfg.to_str().unwrap(),
            "--run-dir",
            run.to_str().unwrap(),
        ];
        let err = refused(&args, 2, says, Some(&run));
        assert!(
            !err.contains("training images"),
            "{text}: refused only after reading the data: {err}"
        );
    }
    // A folder or a missing file where the config should be.
    let dir = tmp.path().to_str().unwrap();
    refused(&["train", "--config", dir], 2, &[dir, "directory"], None);
    refused(
        &["train", "--config", "/nonexistent/cfg.toml"],
        2,
        &["/nonexistent/cfg.toml", "No such file"],
        None,
    );
}

#[test]
fn bad_checkpoints_name_the_file_and_the_problem() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let data = embedded();
    let out = strata(&[
        "train",
        "--data",
        &data,
        "--epochs",
        "1",
        "--per-class",
        "4",
        "--width",
        "0.25",
        "--run-dir",
        run.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let best = std::fs::read(run.join("best.safetensors")).unwrap();
    let image = tmp.path().join("x.png");
    std::fs::write(&image, b"not a png at all").unwrap();
    let image = image.to_str().unwrap();

    // Truncated, empty and absent checkpoints.
    let broken = tmp.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    for f in ["config.toml", "history.jsonl"] {
        std::fs::copy(run.join(f), broken.join(f)).unwrap();
    }
    let b = broken.to_str().unwrap();
    std::fs::write(broken.join("best.safetensors"), &best[..best.len() / 2]).unwrap();
    refused(&["eval", b], 2, &["best.safetensors", "truncated"], None);
    std::fs::write(broken.join("best.safetensors"), b"").unwrap();
    refused(
        &["eval", b],
        2,
        &["best.safetensors", "not a valid safetensors"],
        None,
    );
    std::fs::remove_file(broken.join("best.safetensors")).unwrap();
    refused(&["eval", b], 2, &["best.safetensors"], None);

    // A checkpoint whose header names another model: what fails to match is listed.
    let other = tmp.path().join("other.safetensors");
    let n = u64::from_le_bytes(best[..8].try_into().unwrap()) as usize;
    let header = String::from_utf8(best[8..8 + n].to_vec()).unwrap();
    let renamed = header.replace("\"fmnist-cnn\"", "\"resnet20\"  ");
    assert_eq!(renamed.len(), header.len());
    let mut bytes = best[..8].to_vec();
    bytes.extend_from_slice(renamed.as_bytes());
    bytes.extend_from_slice(&best[8 + n..]);
    std::fs::write(&other, bytes).unwrap();
    refused(
        &["predict", other.to_str().unwrap(), image],
        2,
        &["does not match the network", "missing", "unexpected"],
        None,
    );
    // Not an image.
    refused(
        &["predict", run.to_str().unwrap(), image],
        2,
        &[image, "cannot decode"],
        None,
    );
    // Not a run folder to resume.
    let cfg = write(tmp.path(), "a.toml", "epochs = 1\n");
    refused(
        &["train", "--resume", cfg.to_str().unwrap()],
        2,
        &["not a run folder", "config.toml"],
        None,
    );
}

#[test]
fn command_line_misuse_is_refused_with_what_to_do() {
    refused(&["trian"], 2, &["trian"], None);
    refused(&["train", "--epochs"], 2, &["--epochs"], None);
    refused(&["train", "--epochs", "many"], 2, &["many"], None);
    refused(&["train", "--batch-size", "0"], 2, &["batch", "1"], None);
    refused(
        &["train", "--val-fraction", "1.5"],
        2,
        &["val", "1.5"],
        None,
    );
    refused(&["train", "--per-class", "0"], 2, &["per", "1"], None);
    refused(&["predict"], 2, &["CHECKPOINT"], None);
}

#[test]
fn too_few_images_for_validation_trains_without_it_and_says_so() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let data = embedded();
    let out = strata(&[
        "train",
        "--data",
        &data,
        "--epochs",
        "1",
        "--per-class",
        "2",
        "--width",
        "0.25",
        "--run-dir",
        run.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(err.contains("no validation images"), "{err}");
}

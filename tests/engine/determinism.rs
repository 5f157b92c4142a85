//! Determinism across machines: a small seeded run (augmentation, shuffling, dropout-free
//! fmnist-cnn at width 0.25, 2 threads) must give the very bits recorded in
//! `tests/fixtures/determinism/fmnist-cnn-w025.json`, on any AVX-512 CPU (the default
//! run is bit-identical on the AMD EPYC and Intel Xeon machines this project runs on).
//! A change of kernel or of summation order that moves a single bit fails here, naming
//! the first epoch and number that moved.
//!
//! On a CPU without AVX-512 the kernels differ by design; the run must then agree with
//! the record within 1e-3 relative. After an intended numerical change, regenerate the
//! record with `STRATA_BLESS=1 cargo test --test engine determinism` and say why in the
//! commit.

use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use strata::train::{History, RunPaths};

fn golden_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/determinism/fmnist-cnn-w025.json")
}

#[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
struct Golden {
    /// How the record was made.
    command: String,
    /// `kind epoch step`, then the f64 bits (hex) of train loss, train accuracy,
    /// validation loss and accuracy, one line per record.
    records: Vec<String>,
    /// The numbers themselves, for the tolerance check on CPUs without AVX-512.
    losses: Vec<f64>,
    /// SHA-256 of the final weights (names and f32 bits, in name order).
    weights_sha256: String,
}

fn hex(x: Option<f64>) -> String {
    x.map_or("-".into(), |v| format!("{:016x}", v.to_bits()))
}

#[test]
fn a_seeded_run_gives_the_recorded_bits() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("run");
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/embedded");
    let args = [
        "--threads",
        "2",
        "train",
        "--data",
        data.to_str().unwrap(),
        "--epochs",
        "2",
        "--per-class",
        "50",
        "--batch-size",
        "64",
        "--width",
        "0.25",
        "--lr",
        "0.02",
        "--seed",
        "7",
        "--workers",
        "1",
        "--run-dir",
        run.to_str().unwrap(),
    ];
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let history = History::read(&RunPaths::new(&run).history()).unwrap();
    let records: Vec<String> = history
        .iter()
        .map(|r| {
            format!(
                "{} {} {} {} {} {} {}",
                r.kind,
                r.epoch,
                r.step,
                hex(Some(r.train_loss)),
                hex(Some(r.train_acc)),
                hex(r.val_loss),
                hex(r.val_acc)
            )
        })
        .collect();
    let losses: Vec<f64> = history.iter().map(|r| r.train_loss).collect();
    let (tensors, _) = strata::checkpoint::read_tensors(&run.join("last.safetensors")).unwrap();
    let mut h = Sha256::new();
    for (name, t) in &tensors {
        h.update(name.as_bytes());
        for v in t.data() {
            h.update(v.to_bits().to_le_bytes());
        }
    }
    let weights_sha256: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
    let now = Golden {
        command: format!("strata {}", args[..args.len() - 2].join(" "))
            .replace(data.to_str().unwrap(), "data/embedded"),
        records,
        losses,
        weights_sha256,
    };

    if std::env::var_os("STRATA_BLESS").is_some() {
        std::fs::create_dir_all(golden_path().parent().unwrap()).unwrap();
        std::fs::write(golden_path(), serde_json::to_string_pretty(&now).unwrap()).unwrap();
        return;
    }
    let text = std::fs::read_to_string(golden_path()).unwrap();
    let golden: Golden = serde_json::from_str(&text).unwrap();
    assert_eq!(now.records.len(), golden.records.len(), "number of records");
    if !std::arch::is_x86_feature_detected!("avx512f") {
        for (a, b) in now.losses.iter().zip(&golden.losses) {
            assert!((a - b).abs() <= 1e-3 * b.abs(), "loss {a} against {b}");
        }
        return;
    }
    for (i, (a, b)) in now.records.iter().zip(&golden.records).enumerate() {
        assert_eq!(a, b, "record {i} (kind epoch step, then bits) moved");
    }
    assert_eq!(
        now.weights_sha256, golden.weights_sha256,
        "final weights moved"
    );
}

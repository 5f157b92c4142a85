//! End-to-end tests of `strata data`: the binary's output and exit codes on good and
//! bad datasets (small files made in a temporary folder; no network).

use std::path::Path;
use std::process::{Command, Output};
use strata::data::idx;

fn strata(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(args)
        .env("STRATA_DATA_DIR", "/nonexistent-strata-cache")
        .output()
        .expect("the strata binary runs")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Writes a small gzip IDX pair: `n` images of 4×4, labels `i % 10`.
fn write_pair(dir: &Path, n: usize) {
    let images: Vec<u8> = (0..n * 16).map(|i| (i * 3) as u8).collect();
    let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
    let im = idx::encode_gzip(&[n, 4, 4], &images).unwrap();
    let lab = idx::encode_gzip(&[n], &labels).unwrap();
    std::fs::write(dir.join("train-images-idx3-ubyte.gz"), im).unwrap();
    std::fs::write(dir.join("train-labels-idx1-ubyte.gz"), lab).unwrap();
}

#[test]
fn stats_of_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    write_pair(dir.path(), 20);
    let out = strata(&[
        "data",
        "stats",
        "--data",
        dir.path().to_str().unwrap(),
        "--json",
    ]);
    let (stdout, stderr) = text(&out);
    assert!(out.status.success(), "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["images"], 20);
    assert_eq!(v["shape"], serde_json::json!([1, 4, 4]));
    assert_eq!(v["classes"][3]["count"], 2);
}

#[test]
fn bad_files_exit_2_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    write_pair(dir.path(), 20);
    let path = dir.path().join("train-images-idx3-ubyte.gz");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 10]).unwrap();
    let out = strata(&["data", "stats", "--data", dir.path().to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("train-images-idx3-ubyte.gz"), "{stderr}");

    write_pair(dir.path(), 20);
    let labels = idx::encode_gzip(&[19], &[0; 19]).unwrap();
    std::fs::write(dir.path().join("train-labels-idx1-ubyte.gz"), labels).unwrap();
    let out = strata(&["data", "stats", "--data", dir.path().to_str().unwrap()]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr.contains("20 images but 19 labels"), "{stderr}");
}

#[test]
fn usage_errors_exit_2() {
    let out = strata(&["data", "preview", "--augment", "flop"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out).1.contains("unknown step `flop`"));
    let out = strata(&["data", "download", "imagenet"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out)
        .1
        .contains("known datasets are mnist, fashion-mnist, cifar10"));
}

#[test]
fn preview_writes_a_png() {
    let dir = tempfile::tempdir().unwrap();
    write_pair(dir.path(), 20);
    let png = dir.path().join("grid.png");
    let out = strata(&[
        "data",
        "preview",
        "--data",
        dir.path().to_str().unwrap(),
        "--augment",
        "flip,crop:1:reflect,cutout:2",
        "--count",
        "3",
        "--variants",
        "2",
        "--out",
        png.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{}", text(&out).1);
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
}

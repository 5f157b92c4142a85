//! The CIFAR-10 and CIFAR-100 binary formats.
//!
//! CIFAR-10 (`cifar-10-batches-bin/`): `data_batch_1.bin` … `data_batch_5.bin` (train)
//! and `test_batch.bin`, each a sequence of 3073-byte records: 1 label byte, then the
//! 32×32 image as 1024 red, 1024 green and 1024 blue bytes (already `[C, H, W]`).
//! Class names are in `batches.meta.txt`, one per line.
//!
//! CIFAR-100 (`cifar-100-binary/`): `train.bin` and `test.bin`, 3074-byte records:
//! a coarse label (20 superclasses), a fine label (100 classes), then the image. Names in
//! `fine_label_names.txt` / `coarse_label_names.txt`. We label by the fine class unless
//! asked for the coarse one.
//!
//! A file whose length is not a whole number of records (truncation), an empty file, or
//! a label outside the classes is an error naming the file, the record and the value.

use crate::data::dataset::ImageDataset;
use crate::data::split::Split;
use crate::error::{Error, Result};
use std::path::{Path, PathBuf};

/// Bytes of one 3×32×32 image.
pub const IMAGE_BYTES: usize = 3 * 32 * 32;

/// Which CIFAR variant and label to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CifarKind {
    /// CIFAR-10: one label byte per record, 10 classes.
    Ten,
    /// CIFAR-100 labelled by its 100 fine classes.
    HundredFine,
    /// CIFAR-100 labelled by its 20 coarse superclasses.
    HundredCoarse,
}

impl CifarKind {
    /// Label bytes before each image.
    pub fn label_bytes(self) -> usize {
        match self {
            CifarKind::Ten => 1,
            _ => 2,
        }
    }

    /// Bytes per record.
    pub fn record_bytes(self) -> usize {
        self.label_bytes() + IMAGE_BYTES
    }

    /// Number of classes.
    pub fn num_classes(self) -> usize {
        match self {
            CifarKind::Ten => 10,
            CifarKind::HundredFine => 100,
            CifarKind::HundredCoarse => 20,
        }
    }

    fn name(self) -> &'static str {
        match self {
            CifarKind::Ten => "CIFAR-10",
            CifarKind::HundredFine => "CIFAR-100 (fine labels)",
            CifarKind::HundredCoarse => "CIFAR-100 (coarse labels)",
        }
    }
}

/// CIFAR-10's class names, used when `batches.meta.txt` is absent.
pub const CIFAR10_CLASSES: [&str; 10] = [
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
];

fn format_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Format {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Parses one binary batch: returns images `[N, 3, 32, 32]` and labels `[N]`.
pub fn parse(bytes: &[u8], path: &Path, kind: CifarKind) -> Result<(Vec<u8>, Vec<u32>)> {
    let rec = kind.record_bytes();
    if bytes.is_empty() {
        return Err(format_err(
            path,
            format!("empty file: no {} records", kind.name()),
        ));
    }
    if !bytes.len().is_multiple_of(rec) {
        return Err(format_err(
            path,
            format!(
                "truncated or not {}: {} bytes is {} whole {rec}-byte records and {} bytes left over",
                kind.name(),
                bytes.len(),
                bytes.len() / rec,
                bytes.len() % rec
            ),
        ));
    }
    let n = bytes.len() / rec;
    let mut images = Vec::with_capacity(n * IMAGE_BYTES);
    let mut labels = Vec::with_capacity(n);
    for (i, record) in bytes.chunks_exact(rec).enumerate() {
        let (label, limit, what) = match kind {
            CifarKind::Ten => (record[0], 10, "label"),
            CifarKind::HundredFine => (record[1], 100, "fine label"),
            CifarKind::HundredCoarse => (record[0], 20, "coarse label"),
        };
        // Check the label we do not use too: a bad one means the file is not CIFAR-100.
        let other = match kind {
            CifarKind::Ten => None,
            CifarKind::HundredFine => Some((record[0], 20, "coarse label")),
            CifarKind::HundredCoarse => Some((record[1], 100, "fine label")),
        };
        for (value, limit, what) in std::iter::once((label, limit, what)).chain(other) {
            if value as usize >= limit {
                return Err(format_err(
                    path,
                    format!(
                        "record {i} (byte offset {}) has {what} {value}; {} has {limit} classes (0..{})",
                        i * rec,
                        kind.name(),
                        limit - 1
                    ),
                ));
            }
        }
        labels.push(u32::from(label));
        images.extend_from_slice(&record[kind.label_bytes()..]);
    }
    Ok((images, labels))
}

fn read_file(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Class names from a `*.txt` meta file (non-empty lines), or `fallback` if it is absent.
fn class_names(path: &Path, expected: usize, fallback: Vec<String>) -> Result<Vec<String>> {
    if !path.exists() {
        return Ok(fallback);
    }
    let text = String::from_utf8(read_file(path)?)
        .map_err(|_| format_err(path, "class-name file is not UTF-8 text"))?;
    let names: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect();
    if names.len() != expected {
        return Err(format_err(
            path,
            format!("expected {expected} class names, found {}", names.len()),
        ));
    }
    Ok(names)
}

/// The batch files of `split` for `kind` under `dir` (the extracted folder).
pub fn batch_files(dir: &Path, kind: CifarKind, split: Split) -> Vec<PathBuf> {
    match (kind, split) {
        (CifarKind::Ten, Split::Train) => (1..=5)
            .map(|i| dir.join(format!("data_batch_{i}.bin")))
            .collect(),
        (CifarKind::Ten, Split::Test) => vec![dir.join("test_batch.bin")],
        (_, Split::Train) => vec![dir.join("train.bin")],
        (_, Split::Test) => vec![dir.join("test.bin")],
    }
}

/// Loads `split` from an extracted CIFAR folder (`cifar-10-batches-bin` or
/// `cifar-100-binary`).
pub fn load_dir(dir: &Path, kind: CifarKind, split: Split) -> Result<ImageDataset> {
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for file in batch_files(dir, kind, split) {
        let (im, lab) = parse(&read_file(&file)?, &file, kind)?;
        images.extend_from_slice(&im);
        labels.extend_from_slice(&lab);
    }
    let names = match kind {
        CifarKind::Ten => class_names(
            &dir.join("batches.meta.txt"),
            10,
            CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect(),
        )?,
        CifarKind::HundredFine => class_names(
            &dir.join("fine_label_names.txt"),
            100,
            crate::data::dataset::numbered_classes(100),
        )?,
        CifarKind::HundredCoarse => class_names(
            &dir.join("coarse_label_names.txt"),
            20,
            crate::data::dataset::numbered_classes(20),
        )?,
    };
    ImageDataset::new(images, labels, [3, 32, 32], names)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(labels: &[u8], fill: u8) -> Vec<u8> {
        let mut r = labels.to_vec();
        r.extend(std::iter::repeat_n(fill, IMAGE_BYTES));
        r
    }

    #[test]
    fn parses_cifar10_and_cifar100_records() {
        let mut bytes = record(&[3], 10);
        bytes.extend(record(&[9], 20));
        let (im, lab) = parse(&bytes, Path::new("b.bin"), CifarKind::Ten).unwrap();
        assert_eq!(lab, vec![3, 9]);
        assert_eq!(im.len(), 2 * IMAGE_BYTES);
        assert_eq!((im[0], im[IMAGE_BYTES]), (10, 20));
        let bytes = record(&[19, 99], 1);
        let (_, fine) = parse(&bytes, Path::new("t.bin"), CifarKind::HundredFine).unwrap();
        let (_, coarse) = parse(&bytes, Path::new("t.bin"), CifarKind::HundredCoarse).unwrap();
        assert_eq!((fine, coarse), (vec![99], vec![19]));
    }

    #[test]
    fn bad_files_are_errors_naming_file_and_record() {
        let p = Path::new("data_batch_1.bin");
        let err = parse(&[], p, CifarKind::Ten).unwrap_err().to_string();
        assert!(
            err.contains("empty") && err.contains("data_batch_1.bin"),
            "{err}"
        );
        let mut bytes = record(&[1], 0);
        bytes.extend(record(&[2], 0));
        let err = parse(&bytes[..5000], p, CifarKind::Ten)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("1 whole 3073-byte records and 1927 bytes left over"),
            "{err}"
        );
        let mut bad = record(&[1], 0);
        bad.extend(record(&[10], 0));
        let err = parse(&bad, p, CifarKind::Ten).unwrap_err().to_string();
        assert!(
            err.contains("record 1 (byte offset 3073) has label 10"),
            "{err}"
        );
        let err = parse(&record(&[20, 5], 0), p, CifarKind::HundredFine).unwrap_err();
        assert!(err.to_string().contains("coarse label 20"), "{err}");
        // A CIFAR-10 file read as CIFAR-100 almost never has whole records.
        assert!(parse(&record(&[1], 0), p, CifarKind::HundredFine).is_err());
    }

    #[test]
    fn load_dir_reads_all_batches_and_names() {
        let dir = tempfile::tempdir().unwrap();
        for i in 1..=5u8 {
            let name = format!("data_batch_{i}.bin");
            std::fs::write(dir.path().join(name), record(&[i], i)).unwrap();
        }
        std::fs::write(dir.path().join("test_batch.bin"), record(&[0], 0)).unwrap();
        let d = load_dir(dir.path(), CifarKind::Ten, Split::Train).unwrap();
        assert_eq!(d.labels(), &[1, 2, 3, 4, 5]);
        assert_eq!(d.shape(), [3, 32, 32]);
        assert_eq!(d.class_names()[0], "airplane");
        let names: String = (0..10).map(|i| format!("c{i}\n")).collect();
        std::fs::write(dir.path().join("batches.meta.txt"), names + "\n").unwrap();
        let t = load_dir(dir.path(), CifarKind::Ten, Split::Test).unwrap();
        assert_eq!(t.class_names()[9], "c9");
        std::fs::remove_file(dir.path().join("data_batch_3.bin")).unwrap();
        let err = load_dir(dir.path(), CifarKind::Ten, Split::Train).unwrap_err();
        assert!(err.to_string().contains("data_batch_3.bin"), "{err}");
    }
}

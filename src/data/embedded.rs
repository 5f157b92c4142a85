//! The Fashion-MNIST subset built into the binary, so `strata` runs with nothing
//! installed.
//!
//! 800 training and 100 test images per class (8,000 + 1,000), chosen per class with a
//! fixed seed from the full dataset by `examples/make_subset.rs`, stored as gzip IDX in
//! `data/embedded/` (with its licence: Fashion-MNIST is MIT-licensed, © 2017 Zalando SE).
//! Enough to see a network learn; not enough to reproduce published accuracies, which is
//! why [`NOTICE`] is printed whenever it is used.

use crate::data::dataset::ImageDataset;
use crate::data::idx;
use crate::data::split::Split;
use crate::error::Result;

/// Fashion-MNIST's class names (Xiao, Rasul & Vollgraf 2017).
pub const FASHION_MNIST_CLASSES: [&str; 10] = [
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
];
use std::path::Path;

const TRAIN_IMAGES: &[u8] = include_bytes!("../../data/embedded/train-images-idx3-ubyte.gz");
const TRAIN_LABELS: &[u8] = include_bytes!("../../data/embedded/train-labels-idx1-ubyte.gz");
const TEST_IMAGES: &[u8] = include_bytes!("../../data/embedded/t10k-images-idx3-ubyte.gz");
const TEST_LABELS: &[u8] = include_bytes!("../../data/embedded/t10k-labels-idx1-ubyte.gz");

/// Printed on stderr when the subset is used.
pub const NOTICE: &str = "\
strata: WARNING: using the EMBEDDED Fashion-MNIST SUBSET (800 train / 100 test images per class,
strata:          9,000 images instead of 70,000): results will be below published numbers.
strata:          For the full dataset: `apt install dataset-fashion-mnist`, or
strata:          `strata data download fashion-mnist`, or pass --data DIR.";

/// Decodes `split` of the embedded subset.
pub fn load(split: Split) -> Result<ImageDataset> {
    let (images, labels, prefix) = match split {
        Split::Train => (TRAIN_IMAGES, TRAIN_LABELS, "train"),
        Split::Test => (TEST_IMAGES, TEST_LABELS, "t10k"),
    };
    let images_path = format!("<embedded>/{prefix}-images-idx3-ubyte.gz");
    let labels_path = format!("<embedded>/{prefix}-labels-idx1-ubyte.gz");
    let (ip, lp) = (Path::new(&images_path), Path::new(&labels_path));
    idx::to_dataset(
        idx::decode(images, ip)?,
        ip,
        idx::decode(labels, lp)?,
        lp,
        FASHION_MNIST_CLASSES
            .iter()
            .map(|s| s.to_string())
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subset_is_balanced_and_decodes() {
        let train = load(Split::Train).unwrap();
        assert_eq!(train.shape(), [1, 28, 28]);
        assert_eq!(train.class_counts(), vec![800; 10]);
        let test = load(Split::Test).unwrap();
        assert_eq!(test.class_counts(), vec![100; 10]);
        assert!(
            train.images().iter().any(|&p| p > 200),
            "real images, not zeros"
        );
    }
}

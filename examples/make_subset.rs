//! Makes the embedded Fashion-MNIST subset in `data/embedded/` from the full dataset.
//!
//! ```text
//! cargo run --release --example make_subset -- [SOURCE_DIR] [TRAIN_PER_CLASS] [TEST_PER_CLASS]
//! ```
//!
//! SOURCE_DIR defaults to `/usr/share/datasets/fashion-mnist` (Debian's
//! `dataset-fashion-mnist`); the counts default to 800 and 100 per class. Images are
//! chosen per class with a fixed seed, kept in dataset order, and written as gzip IDX.
//! The subset is balanced: every class has exactly the requested count.

use std::path::{Path, PathBuf};
use strata::data::idx;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let src = PathBuf::from(
        args.first()
            .map_or("/usr/share/datasets/fashion-mnist", String::as_str),
    );
    let train_n: usize = args.get(1).map_or(Ok(800), |s| s.parse())?;
    let test_n: usize = args.get(2).map_or(Ok(100), |s| s.parse())?;
    let out = Path::new("data/embedded");
    std::fs::create_dir_all(out)?;
    let names = strata::data::source::FASHION_MNIST_CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect::<Vec<_>>();
    for (prefix, per_class) in [("train", train_n), ("t10k", test_n)] {
        let images = src.join(format!("{prefix}-images-idx3-ubyte.gz"));
        let labels = src.join(format!("{prefix}-labels-idx1-ubyte.gz"));
        let full = idx::load(&images, &labels, names.clone())?;
        let subset = full.per_class(per_class, 2026)?;
        let [_, h, w] = subset.shape();
        let label_bytes: Vec<u8> = subset.labels().iter().map(|&l| l as u8).collect();
        let img_gz = idx::encode_gzip(&[subset.len(), h, w], subset.images())?;
        let lab_gz = idx::encode_gzip(&[subset.len()], &label_bytes)?;
        std::fs::write(out.join(format!("{prefix}-images-idx3-ubyte.gz")), &img_gz)?;
        std::fs::write(out.join(format!("{prefix}-labels-idx1-ubyte.gz")), &lab_gz)?;
        println!(
            "{prefix}: {} images ({per_class} per class), {} + {} bytes",
            subset.len(),
            img_gz.len(),
            lab_gz.len()
        );
    }
    Ok(())
}

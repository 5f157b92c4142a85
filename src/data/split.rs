//! Splits: which part of a dataset ([`Split`]), and the stratified, seeded
//! train/validation split of its indices.
//!
//! Every class gives `round(n_c · val_fraction)` of its images to validation (at least
//! one image stays in training), chosen by a seeded shuffle of that class's images, so
//! class proportions are the same on both sides (scikit-learn's `stratify=y`). Both
//! halves keep dataset order. The same `(dataset, val_fraction, seed)` always gives the
//! same split; a different seed gives a different one.

use crate::data::rng::DataRng;
use crate::error::{Error, Result};
use std::fmt;
use std::str::FromStr;

/// Which part of a dataset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Split {
    /// The training split.
    #[default]
    Train,
    /// The test split.
    Test,
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Split::Train => "train",
            Split::Test => "test",
        })
    }
}

impl FromStr for Split {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "train" => Ok(Split::Train),
            "test" | "t10k" => Ok(Split::Test),
            other => Err(Error::config(
                "split",
                "split",
                format!("`{other}` is not train or test"),
            )),
        }
    }
}

/// Indices `(train, val)` of a stratified split of `labels` over `num_classes` classes.
pub fn split_indices(
    labels: &[u32],
    num_classes: usize,
    val_fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>)> {
    if !(0.0..1.0).contains(&val_fraction) {
        return Err(Error::config(
            "stratified_split",
            "val_fraction",
            format!("must be in [0, 1), got {val_fraction}"),
        ));
    }
    let mut by_class = vec![Vec::new(); num_classes];
    for (i, &l) in labels.iter().enumerate() {
        let slot = by_class.get_mut(l as usize).ok_or_else(|| {
            Error::config(
                "stratified_split",
                "labels",
                format!("label {i} is {l}, but there are only {num_classes} classes"),
            )
        })?;
        slot.push(i);
    }
    let (mut train, mut val) = (Vec::new(), Vec::new());
    for (class, mut members) in by_class.into_iter().enumerate() {
        let n = members.len();
        let n_val = ((n as f64 * val_fraction).round() as usize).min(n.saturating_sub(1));
        DataRng::for_stream(seed, &[0x0073_706c_6974, class as u64]).shuffle(&mut members);
        val.extend_from_slice(&members[..n_val]);
        train.extend_from_slice(&members[n_val..]);
    }
    train.sort_unstable();
    val.sort_unstable();
    Ok((train, val))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::dataset::tests::toy;

    #[test]
    fn split_is_stratified_disjoint_and_complete() {
        let d = toy(100, 4); // 25 per class
        let (train, val) = split_indices(d.labels(), 4, 0.2, 9).unwrap();
        assert_eq!(val.len(), 4 * 5);
        assert_eq!(train.len(), 80);
        let mut all: Vec<usize> = train.iter().chain(&val).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        let (t, v) = d.stratified_split(0.2, 9).unwrap();
        assert_eq!(v.class_counts(), vec![5; 4]);
        assert_eq!(t.class_counts(), vec![20; 4]);
    }

    #[test]
    fn split_is_seeded() {
        let d = toy(100, 4);
        let a = split_indices(d.labels(), 4, 0.3, 1).unwrap();
        assert_eq!(a, split_indices(d.labels(), 4, 0.3, 1).unwrap());
        assert_ne!(a.1, split_indices(d.labels(), 4, 0.3, 2).unwrap().1);
    }

    #[test]
    fn split_keeps_one_training_image_per_class_and_rejects_bad_fractions() {
        let d = toy(2, 2); // one image per class
        let (train, val) = split_indices(d.labels(), 2, 0.9, 0).unwrap();
        assert_eq!((train.len(), val.len()), (2, 0));
        assert!(split_indices(d.labels(), 2, 1.0, 0).is_err());
        assert!(split_indices(d.labels(), 2, -0.1, 0).is_err());
        assert!(split_indices(d.labels(), 2, f64::NAN, 0).is_err());
        assert!(split_indices(&[5], 2, 0.5, 0).is_err());
    }
}

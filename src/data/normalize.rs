//! Preprocessing: scaling to `[0, 1]` and per-channel standardization.
//!
//! `x = (p / 255 − mean_c) / std_c`
//!
//! Where: `p` the `u8` pixel, `c` its channel, `mean_c` and `std_c` the mean and the
//! (population) standard deviation of channel `c` over every pixel of the *training*
//! split, in `[0, 1]` units (torchvision's `ToTensor` then `Normalize(mean, std)`).
//!
//! The statistics belong to the model: compute them once from the training data, store
//! them with the checkpoint ([`Normalize::to_metadata`], string pairs for safetensors'
//! header) and read them back for evaluation and prediction, so every split is
//! preprocessed identically. Sums are accumulated in `u64` (exact) per channel.

use crate::data::dataset::ImageDataset;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Per-channel mean and standard deviation, in `[0, 1]` pixel units.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalize {
    /// Mean of each channel.
    pub mean: Vec<f32>,
    /// Standard deviation of each channel (> 0).
    pub std: Vec<f32>,
}

/// Metadata key for the mean (a JSON array).
pub const MEAN_KEY: &str = "strata.normalize.mean";
/// Metadata key for the standard deviation (a JSON array).
pub const STD_KEY: &str = "strata.normalize.std";

/// Smallest standard deviation used; a constant channel divides by 1 instead of 0.
const MIN_STD: f64 = 1e-6;

impl Normalize {
    /// Checks that mean and std have one positive-std entry per channel.
    pub fn new(mean: Vec<f32>, std: Vec<f32>) -> Result<Self> {
        if mean.is_empty() || mean.len() != std.len() {
            return Err(Error::config(
                "Normalize",
                "mean/std",
                format!(
                    "need one mean and one std per channel, got {} and {}",
                    mean.len(),
                    std.len()
                ),
            ));
        }
        if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(Error::config(
                "Normalize",
                "std",
                format!("every std must be finite and > 0, got {s}"),
            ));
        }
        if let Some(m) = mean.iter().find(|m| !m.is_finite()) {
            return Err(Error::config(
                "Normalize",
                "mean",
                format!("not finite: {m}"),
            ));
        }
        Ok(Normalize { mean, std })
    }

    /// Scaling to `[0, 1]` only (mean 0, std 1 for each of `channels`).
    pub fn identity(channels: usize) -> Self {
        Normalize {
            mean: vec![0.0; channels],
            std: vec![1.0; channels],
        }
    }

    /// Statistics of `dataset` (use the training split). A constant channel gets std 1.
    pub fn from_dataset(dataset: &ImageDataset) -> Self {
        let [c, h, w] = dataset.shape();
        let hw = h * w;
        let mut sum = vec![0u64; c];
        let mut sum_sq = vec![0u64; c];
        for i in 0..dataset.len() {
            for (ch, plane) in dataset.image(i).chunks_exact(hw).enumerate() {
                let (mut s, mut s2) = (0u64, 0u64);
                for &p in plane {
                    s += p as u64;
                    s2 += (p as u64) * (p as u64);
                }
                sum[ch] += s;
                sum_sq[ch] += s2;
            }
        }
        let count = (dataset.len() * hw).max(1) as f64;
        let mut mean = Vec::with_capacity(c);
        let mut std = Vec::with_capacity(c);
        for ch in 0..c {
            let m = sum[ch] as f64 / count;
            let var = (sum_sq[ch] as f64 / count - m * m).max(0.0);
            let s = var.sqrt() / 255.0;
            mean.push((m / 255.0) as f32);
            std.push(if s < MIN_STD { 1.0 } else { s as f32 });
        }
        Normalize { mean, std }
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.mean.len()
    }

    /// Normalizes a `[C, H, W]` image already scaled to `[0, 1]`, in place.
    pub fn apply(&self, image: &mut [f32], hw: usize) {
        for (ch, plane) in image.chunks_exact_mut(hw).enumerate() {
            let (m, inv) = (self.mean[ch], 1.0 / self.std[ch]);
            plane.iter_mut().for_each(|v| *v = (*v - m) * inv);
        }
    }

    /// Undoes [`Normalize::apply`] (for previews).
    pub fn invert(&self, image: &mut [f32], hw: usize) {
        for (ch, plane) in image.chunks_exact_mut(hw).enumerate() {
            let (m, s) = (self.mean[ch], self.std[ch]);
            plane.iter_mut().for_each(|v| *v = *v * s + m);
        }
    }

    /// The statistics as string pairs for a checkpoint header.
    pub fn to_metadata(&self) -> Vec<(String, String)> {
        let json = |v: &[f32]| serde_json::to_string(v).unwrap_or_default();
        vec![
            (MEAN_KEY.to_string(), json(&self.mean)),
            (STD_KEY.to_string(), json(&self.std)),
        ]
    }

    /// Reads statistics written by [`Normalize::to_metadata`]; `None` if absent.
    pub fn from_metadata(meta: &HashMap<String, String>) -> Result<Option<Self>> {
        let (Some(mean), Some(std)) = (meta.get(MEAN_KEY), meta.get(STD_KEY)) else {
            return Ok(None);
        };
        let parse = |key: &str, s: &str| -> Result<Vec<f32>> {
            serde_json::from_str(s).map_err(|e| {
                Error::config("Normalize", key, format!("not a JSON list of numbers: {e}"))
            })
        };
        Self::new(parse(MEAN_KEY, mean)?, parse(STD_KEY, std)?).map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::dataset::numbered_classes;

    #[test]
    fn statistics_match_a_direct_computation() {
        // Two 2-channel 1×2 images: channel 0 = {0, 255, 51, 102}, channel 1 constant 10.
        let images = vec![0, 255, 10, 10, 51, 102, 10, 10];
        let d = ImageDataset::new(images, vec![0, 0], [2, 1, 2], numbered_classes(1)).unwrap();
        let n = Normalize::from_dataset(&d);
        let vals = [0.0f64, 1.0, 0.2, 0.4];
        let mean = vals.iter().sum::<f64>() / 4.0;
        let std = (vals.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / 4.0).sqrt();
        assert!((n.mean[0] as f64 - mean).abs() < 1e-6, "{n:?}");
        assert!((n.std[0] as f64 - std).abs() < 1e-6, "{n:?}");
        assert!((n.mean[1] - 10.0 / 255.0).abs() < 1e-7);
        assert_eq!(n.std[1], 1.0, "constant channel divides by 1");
        let mut img = vec![1.0, 0.0, 0.5, 0.5];
        n.apply(&mut img, 2);
        assert!((img[0] as f64 - (1.0 - mean) / std).abs() < 1e-5);
        n.invert(&mut img, 2);
        assert!((img[0] - 1.0).abs() < 1e-6 && (img[3] - 0.5).abs() < 1e-6);
    }

    #[test]
    fn metadata_roundtrip_and_validation() {
        let n = Normalize::new(vec![0.5, 0.25], vec![0.2, 0.1]).unwrap();
        let meta: HashMap<String, String> = n.to_metadata().into_iter().collect();
        assert_eq!(Normalize::from_metadata(&meta).unwrap(), Some(n));
        assert_eq!(Normalize::from_metadata(&HashMap::new()).unwrap(), None);
        let mut bad = meta.clone();
        bad.insert(STD_KEY.into(), "[0.0, 1.0]".into());
        assert!(Normalize::from_metadata(&bad).is_err());
        bad.insert(STD_KEY.into(), "oops".into());
        assert!(Normalize::from_metadata(&bad).is_err());
        assert!(Normalize::new(vec![0.0], vec![]).is_err());
    }
}

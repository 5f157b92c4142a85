//! Classifying images with a trained model: load a run, preprocess an image as training
//! did, softmax, top-k.
//!
//! Preprocessing is the training pipeline's without augmentation: the image is brought
//! to the model's channels (gray or RGB) and input size (bilinear resize, as the image
//! folder loader does), scaled to `[0, 1]`, and normalized with the per-channel mean
//! and standard deviation stored in the checkpoint.
//!
//! ```no_run
//! let mut p = strata::predict::Predictor::load("runs/fmnist-cnn-fashion-mnist".as_ref()).unwrap();
//! for guess in p.predict_file("shoe.png".as_ref(), 3).unwrap() {
//!     println!("{:6.2}%  {}", 100.0 * guess.probability, guess.name);
//! }
//! ```

use crate::data::folder;
use crate::error::{Error, Result};
use crate::kernels::softmax::softmax_rows;
use crate::nn::{Layer, Mode};
use crate::tensor::Tensor;
use crate::train::{load_trained, Trained};
use image::DynamicImage;
use std::path::Path;

/// One class of a prediction.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Guess {
    /// Class index.
    pub class: usize,
    /// Class name (the dataset's, or the index).
    pub name: String,
    /// Softmax probability.
    pub probability: f32,
}

/// A trained model ready to classify images.
pub struct Predictor {
    /// The model, its normalization and class names.
    pub trained: Trained,
}

impl Predictor {
    /// Loads a run folder (its `best.safetensors`) or a checkpoint file.
    pub fn load(path: &Path) -> Result<Self> {
        Ok(Predictor {
            trained: load_trained(path)?,
        })
    }

    /// `[1, C, H, W]`: `im` brought to the model's channels and size, scaled to `[0, 1]`
    /// and normalized as in training.
    pub fn preprocess(&self, im: DynamicImage) -> Result<Tensor> {
        let [c, h, w] = self.trained.model.input_shape();
        if c != 1 && c != 3 {
            return Err(Error::config(
                "Predictor",
                "channels",
                format!("the model takes {c}-channel images; only 1 (gray) and 3 (RGB) can come from image files"),
            ));
        }
        let im = folder::fit(im, [h, w]);
        let mut x: Vec<f32> = folder::planes(&im, c == 1)
            .into_iter()
            .map(|p| p as f32 / 255.0)
            .collect();
        self.trained.normalize.apply(&mut x, h * w);
        Tensor::from_vec(x, &[1, c, h, w])
    }

    /// The raw logits of each image of a preprocessed batch `[N, C, H, W]`.
    pub fn logits(&mut self, x: &Tensor) -> Result<Vec<Vec<f32>>> {
        let logits = self.trained.model.forward(x, Mode::Eval)?;
        let classes = logits.shape().get(1).copied().unwrap_or(1).max(1);
        Ok(logits.data().chunks(classes).map(<[f32]>::to_vec).collect())
    }

    /// Class probabilities of each image of a preprocessed batch `[N, C, H, W]`.
    pub fn probabilities(&mut self, x: &Tensor) -> Result<Vec<Vec<f32>>> {
        Ok(self.logits(x)?.iter().map(|l| softmax(l)).collect())
    }

    /// Everything about one image file: logits, probabilities and the `k` best classes.
    pub fn explain_file(&mut self, path: &Path, k: usize) -> Result<Prediction> {
        let im = read_image(path)?;
        let x = self.preprocess(im)?;
        let logits = self.logits(&x)?.pop().unwrap_or_default();
        let probabilities = softmax(&logits);
        let top = self.top(&probabilities, k);
        Ok(Prediction {
            image: path.to_path_buf(),
            top,
            logits,
            probabilities,
        })
    }

    fn top(&self, probs: &[f32], k: usize) -> Vec<Guess> {
        let mut order: Vec<usize> = (0..probs.len()).collect();
        order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
        order
            .into_iter()
            .take(k.max(1))
            .map(|class| Guess {
                class,
                name: self
                    .trained
                    .class_names
                    .get(class)
                    .cloned()
                    .unwrap_or_else(|| class.to_string()),
                probability: probs[class],
            })
            .collect()
    }

    /// The `k` most probable classes of `im`, most probable first.
    pub fn predict_image(&mut self, im: DynamicImage, k: usize) -> Result<Vec<Guess>> {
        let x = self.preprocess(im)?;
        let probs = self.probabilities(&x)?.pop().unwrap_or_default();
        Ok(self.top(&probs, k))
    }

    /// [`Predictor::predict_image`] of an image file (PNG or JPEG).
    pub fn predict_file(&mut self, path: &Path, k: usize) -> Result<Vec<Guess>> {
        let im = read_image(path)?;
        self.predict_image(im, k)
    }
}

/// What `strata predict --json` says of one image.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Prediction {
    /// The image file.
    pub image: std::path::PathBuf,
    /// The most probable classes, most probable first.
    pub top: Vec<Guess>,
    /// The network's raw outputs, one per class.
    pub logits: Vec<f32>,
    /// Their softmax.
    pub probabilities: Vec<f32>,
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let mut p = vec![0.0f32; logits.len()];
    softmax_rows(logits.len().max(1), logits, &mut p);
    p
}

fn read_image(path: &Path) -> Result<DynamicImage> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    image::load_from_memory(&bytes).map_err(|e| Error::Format {
        path: path.to_path_buf(),
        reason: format!("cannot decode as an image (PNG or JPEG): {e}"),
    })
}

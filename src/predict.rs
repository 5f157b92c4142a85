//! Classifying images with a trained model: load a run, preprocess an image as training
//! did, softmax, top-k.
//!
//! Preprocessing is torchvision's evaluation transform: the image is brought to the
//! model's channels (gray or RGB), its short side resized (bilinear) and the center
//! cropped to the model's input size ([`Resize::CenterCrop`]: for inputs of 128 px and
//! more the short side goes to size/0.875 first, ImageNet's 256 → 224; smaller models
//! crop nothing more than the aspect ratio), scaled to `[0, 1]`, and normalized with the
//! per-channel mean and standard deviation stored in the checkpoint.
//! [`Resize::Stretch`] resizes the whole image to the input size instead, as the image
//! folder loader does.
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
use crate::train::{load_trained_as, LoadAs, Trained};
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

/// How an image file is brought to the model's input size.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Resize {
    /// Resize the short side (to size/0.875 for inputs ≥ 128 px, to the size below),
    /// then crop the center: torchvision's evaluation transform, aspect ratio kept.
    #[default]
    CenterCrop,
    /// Resize the whole image to the input size (the aspect ratio may change).
    Stretch,
}

impl std::str::FromStr for Resize {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "center-crop" | "crop" => Ok(Resize::CenterCrop),
            "stretch" => Ok(Resize::Stretch),
            _ => Err(Error::config(
                "predict",
                "resize",
                format!("`{s}`: use center-crop or stretch"),
            )),
        }
    }
}

/// `im` as torchvision's `Resize(round(s / ratio))` + `CenterCrop((h, w))` makes it, with
/// `s` the larger side of the target and `ratio` 0.875 for targets of 128 px and more,
/// else 1.
pub fn center_crop(im: DynamicImage, [h, w]: [usize; 2]) -> DynamicImage {
    let ratio = if h.min(w) >= 128 { 0.875 } else { 1.0 };
    if ratio == 1.0 && (im.height() as usize, im.width() as usize) == (h, w) {
        return im;
    }
    let (ih, iw) = (f64::from(im.height().max(1)), f64::from(im.width().max(1)));
    // The short side to the target's larger side / ratio: the image covers the crop.
    let short = (h.max(w) as f64 / ratio).round();
    let scale = (short / ih.min(iw)).max(h as f64 / ih).max(w as f64 / iw);
    let (nh, nw) = (
        ((ih * scale).round() as u32).max(h as u32),
        ((iw * scale).round() as u32).max(w as u32),
    );
    let im = im.resize_exact(nw, nh, image::imageops::FilterType::Triangle);
    let (top, left) = ((nh - h as u32) / 2, (nw - w as u32) / 2);
    im.crop_imm(left, top, w as u32, h as u32)
}

/// A trained model ready to classify images.
pub struct Predictor {
    /// The model, its normalization and class names.
    pub trained: Trained,
    /// How images are brought to the input size.
    pub resize: Resize,
}

impl Predictor {
    /// Loads a run folder (its `best.safetensors`) or a checkpoint file.
    pub fn load(path: &Path) -> Result<Self> {
        Self::load_as(path, &LoadAs::default())
    }

    /// Loads any weights, a bare state dict too ([`crate::train::load_trained_as`]).
    pub fn load_as(path: &Path, how: &LoadAs) -> Result<Self> {
        Ok(Predictor {
            trained: load_trained_as(path, how)?,
            resize: Resize::default(),
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
        let im = match self.resize {
            Resize::CenterCrop => center_crop(im, [h, w]),
            Resize::Stretch => folder::fit(im, [h, w]),
        };
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

/// The softmax of one row of logits.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A `w`×`h` gray image whose pixel is its column (so a crop's offset shows).
    fn ramp(w: u32, h: u32) -> DynamicImage {
        DynamicImage::ImageLuma8(image::GrayImage::from_fn(w, h, |x, _| {
            image::Luma([(x * 255 / (w - 1)) as u8])
        }))
    }

    #[test]
    fn center_crop_keeps_the_aspect_ratio_and_the_center() {
        // ImageNet size: a 400×300 image → short side 256 (341×256) → center 224×224.
        let out = center_crop(ramp(400, 300), [224, 224]);
        assert_eq!((out.width(), out.height()), (224, 224));
        let g = out.to_luma8();
        let (left, right) = (g.get_pixel(0, 100)[0], g.get_pixel(223, 100)[0]);
        // The crop is the middle 224 of 341 columns: from 58/341 to 282/341 of the ramp.
        assert!((35..=50).contains(&left), "{left}");
        assert!((205..=220).contains(&right), "{right}");
        // A small model: the short side to the size, nothing else cropped.
        let out = center_crop(ramp(56, 28), [28, 28]);
        assert_eq!((out.width(), out.height()), (28, 28));
        let g = out.to_luma8();
        assert!(g.get_pixel(0, 0)[0] > 50 && g.get_pixel(27, 0)[0] < 205);
        // An image already of the size is left alone below 128 px.
        let im = ramp(28, 28);
        assert_eq!(center_crop(im.clone(), [28, 28]), im);
        // Tall images, non-square targets.
        let out = center_crop(ramp(30, 90), [20, 40]);
        assert_eq!((out.width(), out.height()), (40, 20));
        assert!("stretch".parse::<Resize>().is_ok() && "fill".parse::<Resize>().is_err());
    }
}

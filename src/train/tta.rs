//! Test-time augmentation: each test image is classified as it is and as its mirror
//! image, and the two softmax distributions are averaged (timm's `--tta`, fastai's
//! `Learner.tta`, the flip averaging of the fast CIFAR-10 training runs).
//!
//! A network trained with horizontal flips has seen both orientations of every class;
//! its two answers for one image disagree where it is unsure, and their average is a
//! better guess than either — at twice the evaluation's forward passes, none in training.
//! The loss reported is the cross-entropy of the averaged distribution,
//! `−ln(½(p(x) + p(flip x))_y)`. It is a property of the evaluation only: the weights,
//! the training and the validation that picks `best.safetensors` are the same with or
//! without it, so `strata train --tta flip` reports the plain test accuracy and the
//! augmented one side by side.

use super::metrics::Confusion;
use crate::data::Loader;
use crate::error::{Error, Result};
use crate::kernels::eltwise::{add_into, scale};
use crate::kernels::softmax::softmax_rows;
use crate::nn::{Layer, Mode};
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// Which views of a test image are averaged (`--tta`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tta {
    /// The image alone (plain evaluation).
    #[default]
    None,
    /// The image and its horizontal mirror.
    Flip,
}

impl Tta {
    /// The name `--tta` takes.
    pub fn name(self) -> &'static str {
        match self {
            Tta::None => "none",
            Tta::Flip => "flip",
        }
    }

    /// Whether this is plain evaluation.
    pub fn is_none(&self) -> bool {
        *self == Tta::None
    }
}

impl std::str::FromStr for Tta {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Tta::None),
            "flip" | "hflip" => Ok(Tta::Flip),
            other => Err(Error::config(
                "train",
                "tta",
                format!("`{other}`: use none or flip"),
            )),
        }
    }
}

/// `x: [N, C, H, W]` mirrored left to right (each row reversed).
pub fn flip_horizontal(x: &Tensor) -> Result<Tensor> {
    let [_, _, _, w] = x.dims4("tta")?;
    let mut out = x.clone();
    if w > 0 {
        // (As the flip of the training augmentation, `data::transform`.)
        out.data_mut()
            .chunks_exact_mut(w)
            .for_each(|row| row.reverse());
    }
    Ok(out)
}

/// Loss and confusion matrix of `model` over `loader` in [`Mode::Eval`] with each batch
/// and its mirror image averaged ([`Tta::Flip`]; `train::evaluate_tta` dispatches on
/// the [`Tta`]).
pub fn evaluate_flip(
    model: &mut dyn Layer,
    loader: &Loader,
    classes: usize,
) -> Result<(f64, Confusion)> {
    let mut conf = Confusion::new(classes);
    let (mut sum, mut n) = (0.0f64, 0usize);
    for batch in loader.epoch(0) {
        let p = flip_averaged(model, &batch.x, classes)?;
        sum += nll_sum(&p, &batch.y, classes);
        n += batch.y.len();
        conf.add_logits(&p, &batch.y);
    }
    Ok((sum / n.max(1) as f64, conf))
}

/// `½(softmax(model(x)) + softmax(model(flip x)))`, `[N, classes]` row-major.
pub fn flip_averaged(model: &mut dyn Layer, x: &Tensor, classes: usize) -> Result<Vec<f32>> {
    let plain = model.forward(x, Mode::Eval)?;
    let mirrored = model.forward(&flip_horizontal(x)?, Mode::Eval)?;
    let [rows, c] = plain.dims2("tta")?;
    if c != classes || mirrored.shape() != plain.shape() {
        return Err(Error::shape(
            "tta",
            format!("[{rows}, {classes}] logits for both views"),
            mirrored.shape(),
        ));
    }
    let mut p = vec![0.0f32; rows * c];
    let mut q = vec![0.0f32; rows * c];
    softmax_rows(c, plain.data(), &mut p);
    softmax_rows(c, mirrored.data(), &mut q);
    add_into(&mut p, &q);
    scale(&mut p, 0.5);
    Ok(p)
}

/// `Σ −ln p[i, y_i]` over the rows of `p: [N, classes]` (a probability of 0 counts as
/// the smallest positive double, so the sum stays finite).
fn nll_sum(p: &[f32], targets: &[usize], classes: usize) -> f64 {
    p.chunks_exact(classes.max(1))
        .zip(targets)
        .map(|(row, &t)| {
            let pt = row.get(t).copied().unwrap_or(0.0) as f64;
            -pt.max(f64::MIN_POSITIVE).ln()
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{Flatten, Linear, Sequential};
    use rand::SeedableRng;

    #[test]
    fn flip_reverses_each_row_and_twice_is_identity() {
        let x = Tensor::from_vec((0..24).map(|v| v as f32).collect(), &[1, 2, 3, 4]).unwrap();
        let f = flip_horizontal(&x).unwrap();
        assert_eq!(&f.data()[..8], &[3.0, 2.0, 1.0, 0.0, 7.0, 6.0, 5.0, 4.0]);
        assert_eq!(flip_horizontal(&f).unwrap().data(), x.data());
        assert!(flip_horizontal(&Tensor::zeros(&[2, 3])).is_err());
    }

    #[test]
    fn names_parse_and_bad_ones_say_what_to_use() {
        assert_eq!("flip".parse::<Tta>().unwrap(), Tta::Flip);
        assert_eq!("none".parse::<Tta>().unwrap(), Tta::None);
        let e = "crop".parse::<Tta>().unwrap_err().to_string();
        assert!(e.contains("none or flip"), "{e}");
    }

    /// A model that reads only the left pixel of a 1×1×2 image: its answer for the
    /// mirror image is the answer for the right pixel, so the average of the views
    /// can be worked out by hand.
    #[test]
    fn flip_averages_the_two_views_distributions() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let mut lin = Linear::new(2, 2, true, &mut rng).unwrap();
        // Logits (a, −a) for the image [a, b].
        lin.visit_params("", &mut |n, p| {
            let v: &[f32] = if n == "weight" {
                &[1.0, 0.0, -1.0, 0.0]
            } else {
                &[0.0, 0.0]
            };
            p.value.data_mut().copy_from_slice(v);
        });
        let mut model = Sequential::new()
            .push("flatten", Flatten::new())
            .push("fc", lin);
        // Image 0: [2, −3], target 1: the plain view says class 0, the mirror says
        // class 1 more strongly. Image 1: [1, 0.5], target 0: both views say class 0.
        let x = Tensor::from_vec(vec![2.0, -3.0, 1.0, 0.5], &[2, 1, 1, 2]).unwrap();
        let y = [1usize, 0];
        let p = flip_averaged(&mut model, &x, 2).unwrap();
        let mut conf = Confusion::new(2);
        conf.add_logits(&p, &y);
        assert_eq!(conf.correct(), 2);
        let p0 = |z: f64| 1.0 / (1.0 + (-2.0 * z).exp()); // p(class 0) for logits (z, −z)
        let want0 = 0.5 * ((1.0 - p0(2.0)) + (1.0 - p0(-3.0)));
        let want1 = 0.5 * (p0(1.0) + p0(0.5));
        assert!((p[1] as f64 - want0).abs() < 1e-6 && (p[2] as f64 - want1).abs() < 1e-6);
        let loss = nll_sum(&p, &y, 2) / 2.0;
        assert!((loss - -(want0.ln() + want1.ln()) / 2.0).abs() < 1e-5);
        // The plain view alone gets image 0 wrong.
        let plain = model.forward(&x, Mode::Eval).unwrap();
        let mut c1 = Confusion::new(2);
        c1.add_logits(plain.data(), &y);
        assert_eq!(c1.correct(), 1);
        // Logits of the wrong width are an error, not a silent misread.
        assert!(flip_averaged(&mut model, &x, 3).is_err());
    }
}

//! Weight initialization: Kaiming (He), Xavier (Glorot), plain normal and constant.
//!
//! For a weight of shape `[out, in, k...]`, `fan_in = in·Πk` and `fan_out = out·Πk`.
//! - Kaiming normal: `std = gain / √fan`; Kaiming uniform: `bound = gain·√(3 / fan)`.
//! - Xavier normal: `std = gain·√(2 / (fan_in + fan_out))`; uniform: `bound = √3·std`.
//!
//! Gains follow `torch.nn.init.calculate_gain`: linear/sigmoid 1, tanh 5/3, ReLU √2,
//! leaky ReLU `√(2 / (1 + slope²))`. PyTorch's own default for `Conv2d` and `Linear` is
//! Kaiming uniform with slope √5, i.e. `bound = 1/√fan_in` — see [`pytorch_default`].
//! Reference: He et al. 2015, "Delving Deep into Rectifiers" (arXiv:1502.01852).

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use rand::Rng;

/// Which fan a scheme divides by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FanMode {
    /// Preserve the variance of activations in the forward pass.
    FanIn,
    /// Preserve the variance of gradients in the backward pass.
    FanOut,
}

/// The nonlinearity that follows the layer, which sets the gain.
#[derive(Clone, Copy, Debug, PartialEq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Nonlinearity {
    /// Gain 1.
    Linear,
    /// Gain 1.
    Sigmoid,
    /// Gain 5/3.
    Tanh,
    /// Gain √2.
    Relu,
    /// Gain √(2 / (1 + slope²)).
    LeakyRelu(f32),
}

impl Nonlinearity {
    /// The recommended gain.
    pub fn gain(self) -> f32 {
        match self {
            Nonlinearity::Linear | Nonlinearity::Sigmoid => 1.0,
            Nonlinearity::Tanh => 5.0 / 3.0,
            Nonlinearity::Relu => std::f32::consts::SQRT_2,
            Nonlinearity::LeakyRelu(s) => (2.0 / (1.0 + s * s)).sqrt(),
        }
    }
}

/// `(fan_in, fan_out)` of a weight shaped `[out, in, k...]` (rank ≥ 2).
pub fn fans(shape: &[usize]) -> Result<(usize, usize)> {
    if shape.len() < 2 {
        return Err(Error::shape(
            "init::fans",
            "a weight of rank ≥ 2 [out, in, ...]",
            shape,
        ));
    }
    let receptive: usize = shape[2..].iter().product();
    Ok((shape[1] * receptive, shape[0] * receptive))
}

fn fan(shape: &[usize], mode: FanMode) -> Result<usize> {
    let (fi, fo) = fans(shape)?;
    let f = match mode {
        FanMode::FanIn => fi,
        FanMode::FanOut => fo,
    };
    if f == 0 {
        return Err(Error::shape("init", "a weight with a non-zero fan", shape));
    }
    Ok(f)
}

/// Kaiming normal: `N(0, (gain/√fan)²)`.
pub fn kaiming_normal(
    t: &mut Tensor,
    mode: FanMode,
    nl: Nonlinearity,
    rng: &mut impl Rng,
) -> Result<()> {
    let std = nl.gain() / (fan(t.shape(), mode)? as f32).sqrt();
    t.fill_normal(0.0, std, rng);
    Ok(())
}

/// Kaiming uniform: `U(−b, b)` with `b = gain·√(3/fan)`.
pub fn kaiming_uniform(
    t: &mut Tensor,
    mode: FanMode,
    nl: Nonlinearity,
    rng: &mut impl Rng,
) -> Result<()> {
    let bound = nl.gain() * (3.0 / fan(t.shape(), mode)? as f32).sqrt();
    t.fill_uniform(-bound, bound, rng);
    Ok(())
}

/// Xavier normal: `N(0, gain²·2/(fan_in+fan_out))`.
pub fn xavier_normal(t: &mut Tensor, gain: f32, rng: &mut impl Rng) -> Result<()> {
    let (fi, fo) = fans(t.shape())?;
    let std = gain * (2.0 / (fi + fo).max(1) as f32).sqrt();
    t.fill_normal(0.0, std, rng);
    Ok(())
}

/// Xavier uniform: `U(−b, b)` with `b = gain·√(6/(fan_in+fan_out))`.
pub fn xavier_uniform(t: &mut Tensor, gain: f32, rng: &mut impl Rng) -> Result<()> {
    let (fi, fo) = fans(t.shape())?;
    let bound = gain * (6.0 / (fi + fo).max(1) as f32).sqrt();
    t.fill_uniform(-bound, bound, rng);
    Ok(())
}

/// `N(0, std²)`: the lecture's "too small" (0.01) or "too large" (1.0) initializations.
pub fn normal(t: &mut Tensor, std: f32, rng: &mut impl Rng) {
    t.fill_normal(0.0, std, rng);
}

/// Every element set to `value`.
pub fn constant(t: &mut Tensor, value: f32) {
    t.fill(value);
}

/// PyTorch's default for `Conv2d`/`Linear`: weight and bias from `U(−1/√fan_in, 1/√fan_in)`.
pub fn pytorch_default(
    weight: &mut Tensor,
    bias: Option<&mut Tensor>,
    rng: &mut impl Rng,
) -> Result<()> {
    let (fi, _) = fans(weight.shape())?;
    let bound = 1.0 / (fi.max(1) as f32).sqrt();
    weight.fill_uniform(-bound, bound, rng);
    if let Some(b) = bias {
        b.fill_uniform(-bound, bound, rng);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn std_of(t: &Tensor) -> f64 {
        let n = t.len() as f64;
        let m = t.data().iter().map(|&v| v as f64).sum::<f64>() / n;
        (t.data()
            .iter()
            .map(|&v| (v as f64 - m).powi(2))
            .sum::<f64>()
            / n)
            .sqrt()
    }

    #[test]
    fn kaiming_std_matches_the_formula_for_both_fans_and_distributions() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let mut w = Tensor::zeros(&[64, 32, 3, 3]);
        kaiming_normal(&mut w, FanMode::FanIn, Nonlinearity::Relu, &mut rng).unwrap();
        let want = (2.0f64 / 288.0).sqrt();
        assert!((std_of(&w) / want - 1.0).abs() < 0.03, "{}", std_of(&w));
        kaiming_uniform(
            &mut w,
            FanMode::FanOut,
            Nonlinearity::LeakyRelu(0.2),
            &mut rng,
        )
        .unwrap();
        let want = (2.0f64 / 1.04).sqrt() / (576.0f64).sqrt();
        assert!((std_of(&w) / want - 1.0).abs() < 0.03, "{}", std_of(&w));
    }

    #[test]
    fn xavier_and_pytorch_default_bounds() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(6);
        let mut w = Tensor::zeros(&[50, 20]);
        xavier_uniform(&mut w, 1.0, &mut rng).unwrap();
        let b = (6.0f32 / 70.0).sqrt();
        assert!(w.data().iter().all(|v| v.abs() <= b));
        let mut bias = Tensor::zeros(&[50]);
        pytorch_default(&mut w, Some(&mut bias), &mut rng).unwrap();
        let b = 1.0 / 20f32.sqrt();
        assert!(w.data().iter().chain(bias.data()).all(|v| v.abs() <= b));
        assert!(w.data().iter().any(|v| v.abs() > 0.9 * b));
    }

    #[test]
    fn rank_1_weight_is_an_error() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let mut w = Tensor::zeros(&[5]);
        assert!(kaiming_normal(&mut w, FanMode::FanIn, Nonlinearity::Relu, &mut rng).is_err());
    }
}

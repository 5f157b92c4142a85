//! `Sequential`: named layers applied in order; backward runs them in reverse.
//!
//! Child names become state-dict path segments: a child `"conv1"` of a container at
//! `"layer1.0"` has its weight at `layer1.0.conv1.weight`.

use super::fuse::Fuse;
use super::{join, Layer, Mode, Param, ReluOutput};
use crate::error::Result;
use crate::tensor::Tensor;

/// An ordered list of named layers.
#[derive(Debug, Default)]
pub struct Sequential {
    pub(super) layers: Vec<(String, Box<dyn Layer>)>,
}

impl Sequential {
    /// An empty container.
    pub fn new() -> Self {
        Sequential::default()
    }

    /// Appends `layer` under `name` (builder style).
    pub fn push(mut self, name: impl Into<String>, layer: impl Layer + 'static) -> Self {
        self.add(name, Box::new(layer));
        self
    }

    /// Appends a boxed layer under `name`.
    pub fn add(&mut self, name: impl Into<String>, layer: Box<dyn Layer>) {
        self.layers.push((name.into(), layer));
    }

    /// The number of children.
    pub fn len(&self) -> usize {
        self.layers.len()
    }

    /// True without children.
    pub fn is_empty(&self) -> bool {
        self.layers.is_empty()
    }
}

/// Whether any parameter of `layer` is not frozen.
pub fn has_trainable(layer: &mut dyn Layer) -> bool {
    let mut any = false;
    layer.visit_params("", &mut |_, p| any |= !p.frozen);
    any
}

/// Freezes (or unfreezes) every parameter whose state-dict name satisfies `pick`; returns
/// how many parameters changed state.
pub fn set_frozen(layer: &mut dyn Layer, frozen: bool, pick: &dyn Fn(&str) -> bool) -> usize {
    let mut n = 0;
    layer.visit_params("", &mut |name, p| {
        if pick(name) && p.frozen != frozen {
            p.frozen = frozen;
            n += 1;
        }
    });
    n
}

impl Sequential {
    /// [`super::forward_traced`] over the children, in order.
    pub fn forward_traced(
        &mut self,
        x: &Tensor,
        mode: Mode,
        prefix: &str,
        f: &mut dyn FnMut(&str, &Tensor),
    ) -> Result<Tensor> {
        let mut h: Option<Tensor> = None;
        for (name, layer) in &mut self.layers {
            let input = h.as_ref().unwrap_or(x);
            let y = super::forward_traced(layer.as_mut(), input, mode, &join(prefix, name), f)?;
            h = Some(y);
        }
        Ok(h.unwrap_or_else(|| x.clone()))
    }
}

impl Layer for Sequential {
    fn kind(&self) -> &'static str {
        "Sequential"
    }

    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        self.forward_fused(x, mode)
    }

    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        self.backward_fused(dy, false, false)
    }

    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        let mut s = input.to_vec();
        for (_, layer) in &self.layers {
            s = layer.output_shape(&s)?;
        }
        Ok(s)
    }

    fn reseed(&mut self, seed: u64) {
        for (i, (_, layer)) in self.layers.iter_mut().enumerate() {
            layer.reseed(
                seed.wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    .wrapping_add(i as u64 + 1),
            );
        }
    }

    fn children(&self) -> Vec<(&str, &dyn Layer)> {
        self.layers
            .iter()
            .map(|(n, l)| (n.as_str(), l.as_ref()))
            .collect()
    }

    fn children_mut(&mut self) -> Vec<(&str, &mut dyn Layer)> {
        self.layers
            .iter_mut()
            .map(|(n, l)| (n.as_str(), l.as_mut() as &mut dyn Layer))
            .collect()
    }

    fn backward_params(&mut self, dy: &Tensor) -> Result<()> {
        // No work below the first child with a trainable parameter, and that child's
        // own input gradient is not needed either; the ReLU masks move across the
        // children's boundaries as in `backward`.
        self.backward_params_fused(dy)
    }

    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        for (name, layer) in &mut self.layers {
            layer.visit_params(&join(prefix, name), f);
        }
    }

    fn visit_buffers(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        for (name, layer) in &mut self.layers {
            layer.visit_buffers(&join(prefix, name), f);
        }
    }
}

impl Fuse for Sequential {
    fn relu_output(&self) -> ReluOutput {
        match self.layers.last().map(|(_, l)| l.relu_output()) {
            Some(ReluOutput::Applies) => ReluOutput::Applies,
            _ => ReluOutput::No,
        }
    }

    fn masks_relu_input(&self) -> bool {
        self.layers
            .first()
            .is_some_and(|(_, l)| l.masks_relu_input())
    }

    fn backward_relu(&mut self, dy: &Tensor, premasked: bool, mask_input: bool) -> Result<Tensor> {
        let premasked = premasked && self.relu_output() == ReluOutput::Applies;
        let mask_input = mask_input && self.masks_relu_input();
        self.backward_fused(dy, premasked, mask_input)
    }

    fn fuse(&mut self) -> usize {
        let mut n = 0;
        for i in 1..self.layers.len() {
            let (head, tail) = self.layers.split_at_mut(i);
            let prev = &mut head[i - 1].1;
            if let Some(flag) = tail[0].1.relu_fusion_flag() {
                if prev.absorb_relu() {
                    *flag = true;
                    n += 1;
                }
            }
        }
        n + self.layers.iter_mut().map(|(_, l)| l.fuse()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::eltwise::Act;
    use crate::nn::{Activation, BatchNorm2d, Conv2d, Conv2dConfig, Skip};
    use rand::{Rng, SeedableRng};

    /// conv → BN (γ, β and running statistics away from their defaults) → ReLU, twice
    /// from one seed; BN statistics frozen in the second so that a training-mode
    /// forward (never folded) computes the eval-mode numbers layer by layer.
    fn block(seed: u64, bias: bool, stride: usize, freeze: bool) -> Sequential {
        block_ch(seed, (3, 5), bias, stride, freeze)
    }

    fn block_ch(
        seed: u64,
        (c_in, c_out): (usize, usize),
        bias: bool,
        stride: usize,
        freeze: bool,
    ) -> Sequential {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut cfg = Conv2dConfig::new(c_in, c_out, 3).stride(stride);
        cfg.padding = [1, 1];
        cfg.bias = bias;
        let conv = Conv2d::new(cfg, &mut rng).unwrap();
        let mut bn = BatchNorm2d::new(c_out).unwrap();
        bn.freeze_stats(freeze);
        let mut seq = Sequential::new()
            .push("conv", conv)
            .push("bn", bn)
            .push("relu", Activation::new(Act::Relu));
        seq.visit_params("", &mut |n, p| {
            if n.starts_with("bn.") {
                p.value
                    .data_mut()
                    .iter_mut()
                    .for_each(|v| *v = rng.random_range(0.5..1.5));
            }
        });
        seq.visit_buffers("", &mut |n, b| {
            let r = if n.ends_with("running_var") {
                0.2..3.0
            } else {
                -1.0..1.0
            };
            b.data_mut()
                .iter_mut()
                .for_each(|v| *v = rng.random_range(r.clone()));
        });
        seq
    }

    /// In training, the normalization after a convolution takes its statistics from
    /// the moments the convolution computed: the same outputs, running statistics and
    /// gradients, bit for bit, as the two layers run one after the other (BatchNorm and
    /// GroupNorm; strides, bias, a batch of 3 split over the threads).
    #[test]
    fn training_forward_hands_moments_to_the_normalization() {
        use crate::kernels::norm::seg_moments;
        use crate::nn::GroupNorm;
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let x = Tensor::randn(&[3, 3, 9, 7], 0.3, 1.5, &mut rng);
        for (group, bias, stride) in [(false, false, 1), (false, true, 2), (true, true, 1)] {
            let make = || {
                let mut cfg = Conv2dConfig::new(3, 6, 3).stride(stride);
                cfg.padding = [1, 1];
                cfg.bias = bias;
                let mut r = rand::rngs::StdRng::seed_from_u64(5);
                let conv = Conv2d::new(cfg, &mut r).unwrap();
                let norm: Box<dyn Layer> = if group {
                    Box::new(GroupNorm::new(2, 6).unwrap())
                } else {
                    Box::new(BatchNorm2d::new(6).unwrap())
                };
                let mut seq = Sequential::new().push("conv", conv);
                seq.add("norm", norm);
                seq
            };
            let mut fused = make();
            let mut apart = make();
            assert!(fused.layers[1].1.takes_moments(Mode::Train));
            // The convolution's moments are those of its output planes.
            let (y, m) = apart.layers[0]
                .1
                .forward_moments(&x, Mode::Train)
                .unwrap()
                .unwrap();
            let planes: Vec<(f64, f64)> = y
                .data()
                .chunks_exact(y.shape()[2] * y.shape()[3])
                .map(seg_moments)
                .collect();
            assert_eq!(m, planes);
            let got = fused.forward(&x, Mode::Train).unwrap();
            let h = apart.layers[0].1.forward(&x, Mode::Train).unwrap();
            let want = apart.layers[1].1.forward(&h, Mode::Train).unwrap();
            assert_eq!(got.data(), want.data());
            let dy = Tensor::randn(got.shape(), 0.0, 1.0, &mut rng);
            let dx_got = fused.backward(&dy).unwrap();
            let d = apart.layers[1].1.backward(&dy).unwrap();
            let dx_want = apart.layers[0].1.backward(&d).unwrap();
            assert_eq!(dx_got.data(), dx_want.data());
            let mut bufs = Vec::new();
            fused.visit_buffers("", &mut |n, b| {
                bufs.push((n.to_string(), b.data().to_vec()))
            });
            let mut i = 0;
            apart.visit_buffers("", &mut |n, b| {
                assert_eq!((n, b.data()), (bufs[i].0.as_str(), &bufs[i].1[..]));
                i += 1;
            });
            assert_eq!(i, bufs.len());
        }
    }

    /// conv(2→4) → BatchNorm → ReLU [→ `mid`] → conv(4→4), with the ReLU fused into the
    /// norm when `fuse`; the same weights for every call with the same `seed`.
    fn relu_chain(seed: u64, fuse: bool, mid: Option<Box<dyn Layer>>) -> Sequential {
        let mut r = rand::rngs::StdRng::seed_from_u64(seed);
        let conv = |c_in, r: &mut rand::rngs::StdRng| {
            let mut cfg = Conv2dConfig::new(c_in, 4, 3);
            cfg.padding = [1, 1];
            Conv2d::new(cfg, r).unwrap()
        };
        let mut seq = Sequential::new()
            .push("conv1", conv(2, &mut r))
            .push("bn", BatchNorm2d::new(4).unwrap())
            .push("relu", Activation::new(Act::Relu));
        if let Some(m) = mid {
            seq.add("mid", m);
        }
        let mut seq = seq.push("conv2", conv(4, &mut r));
        if fuse {
            assert_eq!(seq.fuse(), 1);
        }
        seq
    }

    /// `handed` (the container's forward and backward, masks handed across layers)
    /// against `apart` (its layers run one by one): outputs, input gradients and
    /// parameter gradients equal bit for bit.
    fn assert_handed_equals_apart(
        handed: &mut Sequential,
        apart: &mut Sequential,
        x: &Tensor,
        rng: &mut rand::rngs::StdRng,
        what: &str,
    ) {
        let y = handed.forward(x, Mode::Train).unwrap();
        let mut h = x.clone();
        for (_, l) in apart.layers.iter_mut() {
            h = l.forward(&h, Mode::Train).unwrap();
        }
        assert_eq!(y.data(), h.data(), "{what}");
        let dy = Tensor::randn(y.shape(), 0.0, 1.0, rng);
        let got = handed.backward(&dy).unwrap();
        let mut d = dy.clone();
        for (_, l) in apart.layers.iter_mut().rev() {
            d = l.backward(&d).unwrap();
        }
        assert_eq!(got.data(), d.data(), "{what}");
        let grads = |s: &mut Sequential| {
            let mut v = Vec::new();
            s.visit_params("", &mut |_, p| v.extend_from_slice(p.grad.data()));
            v
        };
        assert_eq!(grads(handed), grads(apart), "{what}");
    }

    /// A convolution whose input is a ReLU's output masks its input gradient itself and
    /// the ReLU's owner skips the mask: gradients equal, bit for bit, the layers'
    /// backward passes run one by one — with the ReLU fused into the BatchNorm (a
    /// pass-through layer between) and on its own.
    #[test]
    fn backward_hands_the_relu_mask_to_the_next_convolution() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        let x = Tensor::randn(&[3, 2, 8, 6], 0.0, 1.0, &mut rng);
        for fuse in [true, false] {
            let (mut handed, mut apart) = (relu_chain(3, fuse, None), relu_chain(3, fuse, None));
            assert_eq!(
                super::super::exec::relu_mask_owner(&handed.layers, 3),
                Some(if fuse { 1 } else { 2 })
            );
            assert!(apart.layers[3].1.children().is_empty());
            assert_handed_equals_apart(&mut handed, &mut apart, &x, &mut rng, &format!("{fuse}"));
        }
    }

    /// A 2×2 max pool after a ReLU routes the gradient only to windows whose maximum is
    /// positive, and the ReLU's owner skips its mask: bit for bit the layers' plain
    /// backward passes (fused BatchNorm + ReLU and a standalone ReLU; ties and zeros in
    /// the windows from the ReLU).
    #[test]
    fn a_max_pool_after_a_relu_applies_its_mask() {
        use crate::nn::{MaxPool2d, PoolConfig};
        let mut rng = rand::rngs::StdRng::seed_from_u64(15);
        let x = Tensor::randn(&[3, 2, 8, 6], 0.0, 1.0, &mut rng);
        let pool = || -> Option<Box<dyn Layer>> {
            let cfg: PoolConfig = serde_json::from_str(r#"{"kernel": [2, 2]}"#).unwrap();
            Some(Box::new(MaxPool2d::new(cfg).unwrap()))
        };
        for fuse in [true, false] {
            let (mut handed, mut apart) =
                (relu_chain(4, fuse, pool()), relu_chain(4, fuse, pool()));
            assert_eq!(
                super::super::exec::relu_mask_owner(&handed.layers, 3),
                Some(if fuse { 1 } else { 2 })
            );
            assert!(handed.layers[3].1.masks_relu_input());
            assert_handed_equals_apart(&mut handed, &mut apart, &x, &mut rng, &format!("{fuse}"));
        }
    }

    /// The training step's backward ([`Layer::backward_params`]: no input gradient for
    /// the data) hands the ReLU masks across layers as `backward` does, inside nested
    /// containers too: parameter gradients equal bit for bit those of the layers run one
    /// by one; with the first layers frozen, they get no gradient and the rest the same.
    #[test]
    fn backward_params_hands_the_masks_as_backward_does() {
        use crate::nn::{MaxPool2d, PoolConfig};
        let mut rng = rand::rngs::StdRng::seed_from_u64(21);
        let x = Tensor::randn(&[3, 2, 8, 6], 0.0, 1.0, &mut rng);
        let pool = || -> Option<Box<dyn Layer>> {
            let cfg: PoolConfig = serde_json::from_str(r#"{"kernel": [2, 2]}"#).unwrap();
            Some(Box::new(MaxPool2d::new(cfg).unwrap()))
        };
        let grads = |s: &mut Sequential| {
            let mut v = Vec::new();
            s.visit_params("", &mut |_, p| v.extend_from_slice(p.grad.data()));
            v
        };
        for frozen in [false, true] {
            let make = || {
                let mut inner = relu_chain(4, true, pool());
                if frozen {
                    set_frozen(&mut inner, true, &|n| n.starts_with("conv1"));
                }
                Sequential::new()
                    .push("features", inner)
                    .push("bn", BatchNorm2d::new(4).unwrap())
                    .push("relu", Activation::new(Act::Relu))
            };
            let (mut handed, mut apart) = (make(), make());
            handed.fuse();
            let y = handed.forward(&x, Mode::Train).unwrap();
            let mut h = x.clone();
            let mut flat: Vec<&mut Box<dyn Layer>> = vec![];
            for (name, l) in apart.layers.iter_mut() {
                if name == "features" {
                    let any: &mut dyn std::any::Any = l.as_mut();
                    let inner = any.downcast_mut::<Sequential>().unwrap();
                    flat.extend(inner.layers.iter_mut().map(|(_, l)| l));
                } else {
                    flat.push(l);
                }
            }
            for l in flat.iter_mut() {
                h = l.forward(&h, Mode::Train).unwrap();
            }
            assert_eq!(y.data(), h.data());
            let dy = Tensor::randn(y.shape(), 0.0, 1.0, &mut rng);
            handed.backward_params(&dy).unwrap();
            let mut d = dy.clone();
            for l in flat.iter_mut().rev() {
                d = l.backward(&d).unwrap();
            }
            let (g_handed, g_apart) = (grads(&mut handed), grads(&mut apart));
            if frozen {
                // conv1's weight and bias come first: untouched, and the rest equal.
                let n = 4 * 2 * 9 + 4;
                assert!(g_handed[..n].iter().all(|&v| v == 0.0));
                assert_eq!(g_handed[n..], g_apart[n..]);
            } else {
                assert_eq!(g_handed, g_apart);
            }
            assert!(g_handed.iter().any(|&v| v != 0.0));
        }
    }

    /// The same across residual blocks and nested containers: a block whose input is
    /// the previous block's fused sum + ReLU masks its input gradient in the pass that
    /// adds its two branches, and the previous block skips its mask; bit for bit the
    /// gradients of the top-level layers' plain backward passes.
    #[test]
    fn residual_blocks_hand_the_relu_mask_across() {
        use crate::nn::Residual;
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        let x = Tensor::randn(&[3, 4, 6, 6], 0.0, 1.0, &mut rng);
        type Rng = rand::rngs::StdRng;
        fn conv(r: &mut Rng) -> Conv2d {
            let mut cfg = Conv2dConfig::new(4, 4, 3);
            cfg.padding = [1, 1];
            Conv2d::new(cfg, r).unwrap()
        }
        fn block(r: &mut Rng, proj: bool) -> Residual {
            let body = Sequential::new()
                .push("conv1", conv(r))
                .push("bn1", BatchNorm2d::new(4).unwrap())
                .push("relu1", Activation::new(Act::Relu))
                .push("conv2", conv(r))
                .push("bn2", BatchNorm2d::new(4).unwrap());
            let skip = if proj {
                Skip::Projection(Sequential::new().push("0", conv(r)))
            } else {
                Skip::Identity
            };
            Residual::new(body, skip, Some(Activation::new(Act::Relu)))
        }
        let make = || {
            let mut r = Rng::seed_from_u64(6);
            let stage = Sequential::new()
                .push("0", block(&mut r, false))
                .push("1", block(&mut r, true));
            let mut seq = Sequential::new()
                .push("conv", conv(&mut r))
                .push("bn", BatchNorm2d::new(4).unwrap())
                .push("relu", Activation::new(Act::Relu))
                .push("stage", stage)
                .push("last", block(&mut r, false));
            seq.fuse();
            seq
        };
        let (mut handed, mut apart) = (make(), make());
        let y = handed.forward(&x, Mode::Train).unwrap();
        let mut h = x.clone();
        for (_, l) in apart.layers.iter_mut() {
            h = l.forward(&h, Mode::Train).unwrap();
        }
        assert_eq!(y.data(), h.data());
        assert!(y.data().contains(&0.0), "the last ReLU clips nothing");
        let dy = Tensor::randn(y.shape(), 0.0, 1.0, &mut rng);
        let got = handed.backward(&dy).unwrap();
        let mut d = dy.clone();
        for (_, l) in apart.layers.iter_mut().rev() {
            d = l.backward(&d).unwrap();
        }
        assert_eq!(got.data(), d.data());
        let grads = |s: &mut Sequential| {
            let mut v = Vec::new();
            s.visit_params("", &mut |_, p| v.extend_from_slice(p.grad.data()));
            v
        };
        assert_eq!(grads(&mut handed), grads(&mut apart));
    }

    /// conv → BatchNorm → ReLU → MaxPool2d in eval mode: the pool applied by the
    /// convolution (in the Winograd epilogue for 2×2, on each image's output otherwise)
    /// gives the layers' outputs, with the ReLU fused into the norm or standing alone,
    /// even and odd sizes, strided convolutions and padded, overlapping pools.
    #[test]
    fn eval_applies_a_following_max_pool_in_the_convolution() {
        use crate::nn::{MaxPool2d, PoolConfig};
        let mut rng = rand::rngs::StdRng::seed_from_u64(10);
        let two = r#"{"kernel": [2, 2]}"#;
        let three = r#"{"kernel": [3, 3], "stride": [2, 2], "padding": [1, 1]}"#;
        let ceil = r#"{"kernel": [3, 3], "stride": [2, 2], "ceil_mode": true}"#;
        for (h, w, bias, fuse, stride, json) in [
            (8, 8, false, true, 1, two),
            (9, 11, true, false, 1, two),
            (7, 6, true, true, 1, two),
            (12, 10, true, true, 2, three),
            (11, 11, false, false, 1, three),
            (9, 13, true, true, 1, ceil),
        ] {
            let x = Tensor::randn(&[3, 16, h, w], 0.0, 1.0, &mut rng);
            let cfg: PoolConfig = serde_json::from_str(json).unwrap();
            let pool = || MaxPool2d::new(cfg.clone()).unwrap();
            let mut fused = block_ch(2, (16, 24), bias, stride, false).push("pool", pool());
            let mut plain = block_ch(2, (16, 24), bias, stride, true).push("pool", pool());
            if fuse {
                assert_eq!(fused.fuse(), 1);
            }
            let steps = fused.execution(Mode::Eval);
            assert_eq!(steps.len(), 1, "{steps:?}");
            assert!(steps[0].ends_with("(folded, pooled)"), "{steps:?}");
            let got = fused.forward(&x, Mode::Eval).unwrap();
            let want = plain.forward(&x, Mode::Train).unwrap();
            assert_eq!(got.shape(), want.shape());
            assert!(want.data().contains(&0.0), "the ReLU clips nothing");
            for (a, b) in got.data().iter().zip(want.data()) {
                assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
            }
            // The convolution itself applied the pool.
            let a = fused.layers[1].1.eval_affine().unwrap();
            let direct = fused.layers[0].1.forward_folded_pooled(&x, &a, &cfg);
            assert_eq!(direct.unwrap().unwrap().shape(), want.shape());
        }
    }

    /// Inference keeps the folded (and packed) weights between batches, and folds
    /// again when the weights or the normalization's statistics change: the outputs
    /// stay those of the layers run apart (Winograd, direct and gathered layers).
    #[test]
    fn eval_folds_again_after_the_weights_or_the_statistics_change() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(12);
        for (ch, hw, stride) in [((16, 24), 14, 1), ((3, 5), 16, 2), ((16, 16), 8, 1)] {
            let x = Tensor::randn(&[2, ch.0, hw, hw], 0.0, 1.0, &mut rng);
            let mut folded = block_ch(3, ch, true, stride, false);
            let mut plain = block_ch(3, ch, true, stride, true);
            let check = |folded: &mut Sequential, plain: &mut Sequential| {
                let got = folded.forward(&x, Mode::Eval).unwrap();
                let want = plain.forward(&x, Mode::Train).unwrap();
                for (a, b) in got.data().iter().zip(want.data()) {
                    assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
                }
                got
            };
            let first = check(&mut folded, &mut plain);
            assert_eq!(check(&mut folded, &mut plain), first, "the kept fold");
            // An optimizer step on the convolution's weight, then new statistics.
            for s in [&mut folded, &mut plain] {
                s.visit_params("", &mut |n, p| {
                    if n == "conv.weight" {
                        p.value.data_mut().iter_mut().for_each(|v| *v = 0.5 - *v);
                    }
                });
            }
            let second = check(&mut folded, &mut plain);
            assert_ne!(second, first);
            for s in [&mut folded, &mut plain] {
                s.visit_buffers("", &mut |n, b| {
                    if n == "bn.running_mean" {
                        b.data_mut().iter_mut().for_each(|v| *v += 0.25);
                    }
                });
            }
            assert_ne!(check(&mut folded, &mut plain), second);
        }
    }

    #[test]
    fn eval_folds_batchnorm_into_the_convolution_before_it() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let x = Tensor::randn(&[2, 3, 9, 7], 0.0, 1.0, &mut rng);
        for (bias, stride, fuse) in [(false, 1, true), (true, 2, false), (true, 1, true)] {
            let mut folded = block(1, bias, stride, false);
            let mut plain = block(1, bias, stride, true);
            if fuse {
                assert_eq!(folded.fuse(), 1);
                assert_eq!(plain.fuse(), 1);
            }
            assert!(folded.layers[1].1.eval_affine().is_some());
            let got = folded.forward(&x, Mode::Eval).unwrap();
            let want = plain.forward(&x, Mode::Train).unwrap();
            assert_eq!(got.shape(), want.shape());
            assert!(want.data().contains(&0.0), "the ReLU clips nothing");
            for (a, b) in got.data().iter().zip(want.data()) {
                assert!((a - b).abs() <= 1e-5 * (1.0 + b.abs()), "{a} vs {b}");
            }
        }
    }
}

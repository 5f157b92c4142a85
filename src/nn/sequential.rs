//! `Sequential`: named layers applied in order; backward runs them in reverse.
//!
//! Child names become state-dict path segments: a child `"conv1"` of a container at
//! `"layer1.0"` has its weight at `layer1.0.conv1.weight`.

use super::{join, Layer, Mode, Param};
use crate::error::Result;
use crate::profile::{self, Phase};
use crate::tensor::Tensor;

/// An ordered list of named layers.
#[derive(Debug, Default)]
pub struct Sequential {
    layers: Vec<(String, Box<dyn Layer>)>,
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

impl Layer for Sequential {
    fn kind(&self) -> &'static str {
        "Sequential"
    }

    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        let mut iter = self.layers.iter_mut();
        let Some((name, first)) = iter.next() else {
            return Ok(x.clone());
        };
        let mut h = profile::layer(name, first.as_mut(), Phase::Forward, |l| l.forward(x, mode))?;
        for (name, layer) in iter {
            h = profile::layer(name, layer.as_mut(), Phase::Forward, |l| {
                l.forward(&h, mode)
            })?;
        }
        Ok(h)
    }

    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        let mut iter = self.layers.iter_mut().rev();
        let Some((name, last)) = iter.next() else {
            return Ok(dy.clone());
        };
        let mut d = profile::layer(name, last.as_mut(), Phase::Backward, |l| l.backward(dy))?;
        for (name, layer) in iter {
            d = profile::layer(name, layer.as_mut(), Phase::Backward, |l| l.backward(&d))?;
        }
        Ok(d)
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

    fn backward_params(&mut self, dy: &Tensor) -> Result<()> {
        // No work below the first child with a trainable parameter, and that child's
        // own input gradient is not needed either.
        let Some(first) = self
            .layers
            .iter_mut()
            .position(|(_, l)| has_trainable(l.as_mut()))
        else {
            return Ok(());
        };
        let mut d = dy.clone();
        for (name, layer) in self.layers[first + 1..].iter_mut().rev() {
            d = profile::layer(name, layer.as_mut(), Phase::Backward, |l| l.backward(&d))?;
        }
        let (name, layer) = &mut self.layers[first];
        profile::layer(name, layer.as_mut(), Phase::Backward, |l| {
            l.backward_params(&d)
        })
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

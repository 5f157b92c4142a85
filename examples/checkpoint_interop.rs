//! Moves weights between strata and PyTorch, both ways, and checks the logits.
//!
//! ```text
//! # strata -> PyTorch: write a strata checkpoint and a probe (input + strata's logits)
//! cargo run --release --example checkpoint_interop -- export resnet18 /tmp/r18.safetensors
//! /opt/torchenv/bin/python tools/check_checkpoint.py /tmp/r18.safetensors
//!
//! # PyTorch -> strata: a torchvision state dict and its probe, checked here
//! /opt/torchenv/bin/python tools/export_torchvision.py resnet18 /tmp/tv_r18.safetensors
//! cargo run --release --example checkpoint_interop -- check resnet18 /tmp/tv_r18.safetensors
//! ```
//! The probe is `<checkpoint>.probe.safetensors` with tensors `x` and `logits` (eval mode).

use anyhow::{bail, Context, Result};
use rand::SeedableRng;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use strata::nn::{Layer, Mode};
use strata::{checkpoint, models, Tensor};

fn probe_path(ckpt: &Path) -> PathBuf {
    let mut s = ckpt.as_os_str().to_owned();
    s.push(".probe.safetensors");
    PathBuf::from(s)
}

/// A one-layer "network" holding the probe tensors, so the checkpoint code writes them.
#[derive(Debug)]
struct Probe(BTreeMap<String, Tensor>);

impl Layer for Probe {
    fn kind(&self) -> &'static str {
        "Probe"
    }
    fn forward(&mut self, x: &Tensor, _: Mode) -> strata::Result<Tensor> {
        Ok(x.clone())
    }
    fn backward(&mut self, dy: &Tensor) -> strata::Result<Tensor> {
        Ok(dy.clone())
    }
    fn output_shape(&self, input: &[usize]) -> strata::Result<Vec<usize>> {
        Ok(input.to_vec())
    }
    fn visit_buffers(&mut self, _: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        for (k, v) in &mut self.0 {
            f(k, v);
        }
    }
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["export", name, out] => {
            let mut model = models::build(name, None)?;
            let [c, h, w] = model.input_shape();
            let x = Tensor::randn(
                &[2, c, h, w],
                0.0,
                1.0,
                &mut rand::rngs::StdRng::seed_from_u64(3),
            );
            // one training forward gives the BatchNorm layers non-trivial running statistics
            model.forward(&x, Mode::Train)?;
            let logits = model.forward(&x, Mode::Eval)?;
            let meta = model.metadata()?;
            checkpoint::save(&mut model, Path::new(out), &meta)?;
            let mut probe = Probe([("x".into(), x), ("logits".into(), logits)].into());
            checkpoint::save(&mut probe, &probe_path(Path::new(out)), &BTreeMap::new())?;
            println!("wrote {out} and its probe");
        }
        ["check", name, ckpt] => {
            // The bare torchvision state dict, as `strata predict --model NAME` reads it
            // (torchvision's spelling of NAME accepted; every tensor must fit).
            let path = Path::new(ckpt);
            let how = strata::train::LoadAs {
                model: Some(name.to_string()),
                normalize: None,
            };
            let mut model = strata::train::load_trained_as(path, &how)?.model;
            println!("loaded a bare state dict as {}", model.name);
            let mut probe = Probe(
                [
                    ("x".into(), Tensor::zeros(&[0])),
                    ("logits".into(), Tensor::zeros(&[0])),
                ]
                .into(),
            );
            let bytes = std::fs::read(probe_path(path)).context("reading the probe")?;
            let st = safetensors::SafeTensors::deserialize(&bytes)?;
            for (k, v) in probe.0.iter_mut() {
                let view = st.tensor(k)?;
                let data = view
                    .data()
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .collect();
                *v = Tensor::from_vec(data, view.shape())?;
            }
            let logits = model.forward(&probe.0["x"], Mode::Eval)?;
            let want = &probe.0["logits"];
            let diff = logits.max_abs_diff(want)?;
            let scale = want.data().iter().fold(0.0f32, |m, v| m.max(v.abs()));
            println!("max |strata - pytorch| = {diff:.3e} (logits up to {scale:.3})");
            if diff > 1e-4 * scale.max(1.0) {
                bail!("logits differ");
            }
        }
        _ => bail!("usage: checkpoint_interop export MODEL OUT | check MODEL CKPT"),
    }
    Ok(())
}

//! PyTorch parity: every layer's forward output, input gradient, parameter gradients
//! and buffers against the committed fixtures. Every failure across all cases is
//! collected and reported at once; the test fails if any case fails.

use crate::fixtures::{load_all, Fixture};
use std::collections::BTreeMap;
use strata::loss::CrossEntropy;
use strata::nn::spec::LayerSpec;
use strata::nn::{Layer, Mode};
use strata::Tensor;

/// f32 layer vs PyTorch f32: the two sum in different orders, so results differ by a
/// few ulps of the largest partial sum; 1e-4 relative with a 1e-5 absolute floor for
/// values near zero.
const RTOL: f32 = 1e-4;
const ATOL: f32 = 1e-5;
/// Running statistics are a short affine recurrence: held tighter (a biased variance
/// would be off by a factor M/(M−1), far outside this).
const BUF_RTOL: f32 = 1e-5;
const BUF_ATOL: f32 = 1e-6;

fn compare(what: &str, got: &Tensor, want: &Tensor, rtol: f32, atol: f32) -> Result<(), String> {
    // PyTorch's scalar buffers are [] or [1]; compare those by value.
    if got.shape() != want.shape() && !(got.len() == 1 && want.len() == 1) {
        return Err(format!(
            "{what}: shape {:?}, PyTorch {:?}",
            got.shape(),
            want.shape()
        ));
    }
    let mut worst: Option<(usize, f32, f32, f32)> = None;
    for (i, (&a, &b)) in got.data().iter().zip(want.data()).enumerate() {
        let err = (a - b).abs();
        let excess = err - (atol + rtol * b.abs());
        let bad = excess > 0.0 || a.is_nan() != b.is_nan();
        if bad && worst.is_none_or(|w| excess > w.3) {
            worst = Some((i, a, b, excess));
        }
    }
    match worst {
        Some((i, a, b, _)) => Err(format!("{what}[{i}]: strata {a}, PyTorch {b}")),
        None => Ok(()),
    }
}

fn build(fx: &Fixture) -> Result<Box<dyn Layer>, String> {
    let layer = fx.meta("layer")?;
    let mut config: serde_json::Value =
        serde_json::from_str(fx.meta("config")?).map_err(|e| format!("config: {e}"))?;
    let obj = config
        .as_object_mut()
        .ok_or("config is not a JSON object")?;
    obj.insert("layer".into(), serde_json::Value::String(layer.into()));
    let spec: LayerSpec = serde_json::from_value(config).map_err(|e| format!("spec: {e}"))?;
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    spec.build(&mut rng).map_err(|e| e.to_string())
}

fn check_layer(fx: &Fixture) -> Result<(), String> {
    let mut layer = build(fx)?;
    let mode = fx.meta("mode")?;
    // Load the parameters and buffers PyTorch used, by state-dict name.
    let mut missing = vec![];
    let mut loaded = vec![];
    layer.visit_params(
        "",
        &mut |name, p| match fx.tensors.get(&format!("param.{name}")) {
            Some(t) if t.shape() == p.value.shape() => {
                p.value = t.clone();
                loaded.push(name.to_string());
            }
            Some(t) => missing.push(format!(
                "param {name}: strata {:?}, PyTorch {:?}",
                p.value.shape(),
                t.shape()
            )),
            None => missing.push(format!("param {name} not in fixture")),
        },
    );
    layer.visit_buffers(
        "",
        &mut |name, b| match fx.tensors.get(&format!("buffer_in.{name}")) {
            Some(t) if t.len() == b.len() => b.data_mut().copy_from_slice(t.data()),
            _ => missing.push(format!("buffer {name} not in fixture")),
        },
    );
    let mut expected = fx.with_prefix("param");
    expected.sort();
    loaded.sort();
    if expected != loaded {
        missing.push(format!(
            "fixture params {expected:?}, strata params {loaded:?}"
        ));
    }
    if !missing.is_empty() {
        return Err(missing.join("; "));
    }

    let x = fx.get("x")?;
    let is_dropout = matches!(fx.meta("layer")?, "dropout" | "dropout2d");
    if is_dropout {
        // Eval-mode dropout is the identity, forward and backward; masks cannot match
        // PyTorch's RNG, so the training behaviour is checked by the layer's own tests.
        let y = layer.forward(x, Mode::Eval).map_err(|e| e.to_string())?;
        compare("y", &y, fx.get("y")?, 0.0, 0.0)?;
        let y = layer
            .forward(x, Mode::EvalGrad)
            .map_err(|e| e.to_string())?;
        compare("y (EvalGrad)", &y, fx.get("y")?, 0.0, 0.0)?;
        let dx = layer.backward(fx.get("dy")?).map_err(|e| e.to_string())?;
        return compare("dx", &dx, fx.get("dx")?, 0.0, 0.0);
    }
    // PyTorch's eval mode with autograd is strata's Mode::EvalGrad: eval numbers, and a
    // backward after them.
    let forward_mode = if mode == "eval" {
        let y = layer.forward(x, Mode::Eval).map_err(|e| e.to_string())?;
        compare("y (eval)", &y, fx.get("y")?, RTOL, ATOL)?;
        Mode::EvalGrad
    } else {
        Mode::Train
    };
    let y = layer.forward(x, forward_mode).map_err(|e| e.to_string())?;
    compare("y", &y, fx.get("y")?, RTOL, ATOL)?;
    let dx = layer.backward(fx.get("dy")?).map_err(|e| e.to_string())?;
    compare("dx", &dx, fx.get("dx")?, RTOL, ATOL)?;
    let mut errs = vec![];
    layer.visit_params("", &mut |name, p| {
        if let Ok(want) = fx.get(&format!("grad.{name}")) {
            if let Err(e) = compare(&format!("grad.{name}"), &p.grad, want, RTOL, ATOL) {
                errs.push(e);
            }
        } else {
            errs.push(format!("grad.{name} not in fixture"));
        }
    });
    layer.visit_buffers("", &mut |name, b| {
        if let Ok(want) = fx.get(&format!("buffer_out.{name}")) {
            if let Err(e) = compare(&format!("buffer.{name}"), b, want, BUF_RTOL, BUF_ATOL) {
                errs.push(e);
            }
        }
    });
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("; "))
    }
}

fn check_cross_entropy(fx: &Fixture) -> Result<(), String> {
    let config: serde_json::Value =
        serde_json::from_str(fx.meta("config")?).map_err(|e| e.to_string())?;
    let eps = config["label_smoothing"]
        .as_f64()
        .ok_or("config.label_smoothing")? as f32;
    let targets: Vec<usize> = fx
        .get("target")?
        .data()
        .iter()
        .map(|&t| t as usize)
        .collect();
    let logits = fx.get("x")?;
    let out = CrossEntropy::with_label_smoothing(eps)
        .and_then(|ce| ce.forward(logits, &targets))
        .map_err(|e| e.to_string())?;
    let loss = Tensor::from_vec(vec![out.loss as f32], &[1]).map_err(|e| e.to_string())?;
    compare("loss", &loss, fx.get("y")?, RTOL, ATOL)?;
    // The fixture's upstream gradient is a random scalar: dlogits scale with it.
    let mut dz = out.dlogits;
    let s = fx.get("dy")?.data()[0];
    dz.data_mut().iter_mut().for_each(|v| *v *= s);
    compare("dlogits", &dz, fx.get("dx")?, RTOL, ATOL)
}

#[test]
fn every_layer_matches_pytorch_on_every_fixture() {
    let all = load_all();
    let mut per_kind: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = vec![];
    for fx in &all {
        let kind = fx.meta("layer").unwrap_or("?").to_string();
        *per_kind.entry(kind.clone()).or_default() += 1;
        let result = if kind == "cross_entropy" {
            check_cross_entropy(fx)
        } else {
            check_layer(fx)
        };
        if let Err(e) = result {
            failures.push(format!("{}: {e}", fx.name));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} fixtures differ from PyTorch:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
    // Every layer of the table, and the loss.
    let expected_kinds = strata::nn::registry::LAYERS
        .iter()
        .map(|l| l.name)
        .chain(["cross_entropy"]);
    for k in expected_kinds {
        let n = per_kind.get(k).copied().unwrap_or(0);
        assert!(
            n >= 3,
            "only {n} fixtures for {k}; each layer needs at least three configurations"
        );
    }
}

//! Whole models against PyTorch: the registry (parameter counts, multiply-adds by an
//! independent count, every state-dict key and shape) and one training step of
//! resnet20 and vgg11-bn-cifar (logits, loss, every gradient, running statistics), plus
//! torchvision's resnet18 forward. Fixtures: `tools/make_model_fixtures.py`.

use crate::fixtures::{load, REGENERATE};
use std::collections::BTreeMap;
use std::path::PathBuf;
use strata::checkpoint::state_dict;
use strata::loss::CrossEntropy;
use strata::models::{self, Model};
use strata::nn::{Layer, Mode};
use strata::Tensor;

fn dir() -> PathBuf {
    crate::fixtures::dir().join("models")
}

/// The deterministic parameters of `tools/torch_models.py::formula_state`.
fn set_formula_state(model: &mut Model) {
    let names: Vec<String> = state_dict(model).into_keys().collect(); // sorted, as in Python
    let index: BTreeMap<String, usize> =
        names.into_iter().enumerate().map(|(i, n)| (n, i)).collect();
    let fill = |name: &str, t: &mut Tensor| {
        let ti = index[name] as f64;
        let fan_in: usize = t.shape().iter().skip(1).product();
        let rank = t.shape().len();
        for (i, v) in t.data_mut().iter_mut().enumerate() {
            let b = (0.7 * i as f64 + 1.3 * ti).sin();
            let x = if name.ends_with("num_batches_tracked") {
                0.0
            } else if name.ends_with("running_mean") {
                0.1 * b
            } else if name.ends_with("running_var") {
                1.0 + 0.5 * b.abs()
            } else if name.ends_with("weight") && rank >= 2 {
                2.0 * b / (fan_in as f64).sqrt()
            } else if name.ends_with("weight") {
                1.0 + 0.2 * b
            } else {
                0.1 * b
            };
            *v = x as f32;
        }
    };
    model.visit_params("", &mut |n, p| fill(n, &mut p.value));
    model.visit_buffers("", &mut |n, b| fill(n, b));
}

/// Whole-model tolerance: 1e-4 relative per element, with an absolute floor of 1e-4 of
/// the tensor's largest magnitude (twenty layers of f32 sums in different orders; a
/// wrong layer is off by far more), and of 1e-6 for gradients that are exactly zero in
/// exact arithmetic (a conv bias followed by BatchNorm: both sides return ~1e-8 noise).
fn close(what: &str, got: &Tensor, want: &Tensor) -> Result<(), String> {
    if got.len() != want.len() {
        return Err(format!(
            "{what}: shape {:?}, PyTorch {:?}",
            got.shape(),
            want.shape()
        ));
    }
    let scale = want.data().iter().fold(0.0f32, |m, v| m.max(v.abs()));
    for (i, (&a, &b)) in got.data().iter().zip(want.data()).enumerate() {
        if (a - b).abs() > 1e-4 * b.abs() + 1e-4 * scale + 1e-6 || a.is_nan() {
            return Err(format!(
                "{what}[{i}]: strata {a}, PyTorch {b} (scale {scale})"
            ));
        }
    }
    Ok(())
}

#[test]
fn every_model_matches_pytorch_in_parameters_macs_and_state_dict_names() {
    let path = dir().join("registry.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; {REGENERATE}", path.display()));
    let registry: serde_json::Value = serde_json::from_str(&text).unwrap();
    let registry = registry.as_object().unwrap();
    let mut failures = vec![];
    for info in models::catalog() {
        let Some(want) = registry.get(info.name) else {
            failures.push(format!("{}: not in registry.json; {REGENERATE}", info.name));
            continue;
        };
        let mut model = models::build(info.name, None).unwrap();
        let params = strata::nn::param_count(&mut model) as u64;
        if Some(params) != want["params"].as_u64() {
            failures.push(format!(
                "{}: {params} parameters, PyTorch {}",
                info.name, want["params"]
            ));
        }
        let summary = strata::summary::summarize(&model, &model.input_shape()).unwrap();
        if Some(summary.macs) != want["macs"].as_u64() {
            failures.push(format!(
                "{}: {} MACs, PyTorch {}",
                info.name, summary.macs, want["macs"]
            ));
        }
        let ours: BTreeMap<String, Vec<u64>> = state_dict(&mut model)
            .into_iter()
            .map(|(k, t)| {
                let shape = if k.ends_with("num_batches_tracked") {
                    vec![]
                } else {
                    t.shape().iter().map(|&d| d as u64).collect()
                };
                (k, shape)
            })
            .collect();
        let theirs: BTreeMap<String, Vec<u64>> = want["state_dict"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| {
                (
                    k.clone(),
                    v.as_array()
                        .unwrap()
                        .iter()
                        .map(|d| d.as_u64().unwrap())
                        .collect(),
                )
            })
            .collect();
        if ours != theirs {
            let only_ours: Vec<_> = ours
                .keys()
                .filter(|k| !theirs.contains_key(*k))
                .take(3)
                .collect();
            let only_theirs: Vec<_> = theirs
                .keys()
                .filter(|k| !ours.contains_key(*k))
                .take(3)
                .collect();
            let shape: Vec<_> = ours
                .iter()
                .filter(|(k, s)| theirs.get(*k).is_some_and(|t| t != *s))
                .take(3)
                .collect();
            failures.push(format!("{}: state dict differs: only strata {only_ours:?}, only PyTorch {only_theirs:?}, shapes {shape:?}", info.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

fn check_train_step(name: &str) -> Result<(), String> {
    let fx = load(&dir().join(format!("train_step_{name}.safetensors")))?;
    let width: f32 = fx
        .meta("width")?
        .parse()
        .map_err(|e| format!("width: {e}"))?;
    let mut cfg = models::default_config(name).map_err(|e| e.to_string())?;
    cfg.width = width;
    let mut model = models::build(name, Some(cfg)).map_err(|e| e.to_string())?;
    set_formula_state(&mut model);
    let x = fx.get("x")?;
    let targets: Vec<usize> = fx
        .get("target")?
        .data()
        .iter()
        .map(|&t| t as usize)
        .collect();
    let logits = model.forward(x, Mode::Train).map_err(|e| e.to_string())?;
    close("logits", &logits, fx.get("logits")?)?;
    let out = CrossEntropy::default()
        .forward(&logits, &targets)
        .map_err(|e| e.to_string())?;
    let loss = Tensor::from_vec(vec![out.loss as f32], &[1]).map_err(|e| e.to_string())?;
    close("loss", &loss, fx.get("loss")?)?;
    model.backward(&out.dlogits).map_err(|e| e.to_string())?;
    let mut errs = vec![];
    let mut seen = 0;
    model.visit_params("", &mut |n, p| match fx.get(&format!("grad.{n}")) {
        Ok(want) => {
            seen += 1;
            if let Err(e) = close(&format!("grad.{n}"), &p.grad, want) {
                errs.push(e);
            }
        }
        Err(e) => errs.push(e),
    });
    model.visit_buffers("", &mut |n, b| match fx.get(&format!("buffer_out.{n}")) {
        Ok(want) => {
            if let Err(e) = close(&format!("buffer.{n}"), b, want) {
                errs.push(e);
            }
        }
        Err(e) => errs.push(e),
    });
    if seen != fx.with_prefix("grad").len() {
        errs.push(format!(
            "{seen} strata parameters, {} in the fixture",
            fx.with_prefix("grad").len()
        ));
    }
    let eval = model.forward(x, Mode::Eval).map_err(|e| e.to_string())?;
    if let Err(e) = close("eval_logits", &eval, fx.get("eval_logits")?) {
        errs.push(e);
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join("\n"))
    }
}

#[test]
fn resnet20_training_step_matches_pytorch() {
    check_train_step("resnet20").unwrap_or_else(|e| panic!("resnet20:\n{e}"));
}

#[test]
fn vgg11_bn_training_step_matches_pytorch() {
    check_train_step("vgg11-bn-cifar").unwrap_or_else(|e| panic!("vgg11-bn-cifar:\n{e}"));
}

#[test]
fn torchvision_resnet18_forward_matches() {
    let fx = load(&dir().join("forward_resnet18.safetensors")).unwrap_or_else(|e| panic!("{e}"));
    let mut cfg = models::default_config("resnet18").unwrap();
    cfg.input_size = [64, 64];
    let mut model = models::build("resnet18", Some(cfg)).unwrap();
    set_formula_state(&mut model);
    let logits = model.forward(fx.get("x").unwrap(), Mode::Train).unwrap();
    close("logits", &logits, fx.get("logits").unwrap()).unwrap();
}

#[test]
fn a_state_dict_written_by_pytorch_loads_strictly_and_gives_its_logits() {
    let mut model = models::build("resnet20", None).unwrap();
    let (report, _) = strata::checkpoint::load(
        &mut model,
        &dir().join("torch_state_resnet20.safetensors"),
        true,
    )
    .unwrap();
    assert!(report.is_exact(), "{}", report.describe());
    let probe = load(&dir().join("torch_state_resnet20_probe.safetensors")).unwrap();
    let logits = model.forward(probe.get("x").unwrap(), Mode::Eval).unwrap();
    close("logits", &logits, probe.get("logits").unwrap()).unwrap();
    let mut counters = vec![];
    model.visit_buffers("", &mut |n, b| {
        if n.ends_with("num_batches_tracked") {
            counters.push(b.data()[0]);
        }
    });
    assert!(
        counters.iter().all(|&c| c == 1.0),
        "num_batches_tracked from int64: {counters:?}"
    );
}

#[test]
fn a_few_optimizer_steps_reproduce_pytorchs_losses() {
    use strata::optim::{Optimizer, OptimizerConfig};
    let fx = load(&dir().join("trajectory_resnet20.safetensors")).unwrap_or_else(|e| panic!("{e}"));
    let x = fx.get("x").unwrap();
    let targets: Vec<usize> = fx
        .get("target")
        .unwrap()
        .data()
        .iter()
        .map(|&t| t as usize)
        .collect();
    let runs = [
        (
            "sgd",
            OptimizerConfig::Sgd {
                momentum: 0.9,
                nesterov: true,
                weight_decay: 5e-4,
            },
            0.05,
        ),
        (
            "adamw",
            OptimizerConfig::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.05,
            },
            1e-3,
        ),
    ];
    for (tag, config, lr) in runs {
        let mut model = models::build("resnet20", None).unwrap();
        set_formula_state(&mut model);
        let mut opt = Optimizer::new(config).unwrap();
        let mut losses = vec![];
        for _ in 0..4 {
            strata::nn::zero_grad(&mut model);
            let logits = model.forward(x, Mode::Train).unwrap();
            let out = CrossEntropy::default().forward(&logits, &targets).unwrap();
            model.backward(&out.dlogits).unwrap();
            losses.push(out.loss as f32);
            opt.step(&mut model, lr);
        }
        let got = Tensor::from_vec(losses, &[4]).unwrap();
        close(
            &format!("{tag} losses"),
            &got,
            fx.get(&format!("losses_{tag}")).unwrap(),
        )
        .unwrap();
    }
}

#[test]
fn a_frozen_backbone_gets_no_gradient_work_and_the_head_the_same_gradient() {
    let x = Tensor::randn(
        &[4, 3, 32, 32],
        0.0,
        1.0,
        &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(2),
    );
    let targets = [1usize, 2, 3, 4];
    let grads = |freeze: bool| {
        let mut m = models::build("resnet20", None).unwrap();
        if freeze {
            let n = strata::nn::set_frozen(&mut m, true, &|name| !name.starts_with("fc."));
            assert_eq!(n, strata::nn::param_names(&mut m).len() - 2);
        }
        let logits = m.forward(&x, Mode::Train).unwrap();
        let out = CrossEntropy::default().forward(&logits, &targets).unwrap();
        m.net.backward_params(&out.dlogits).unwrap();
        state_dict_grads(&mut m)
    };
    let full = grads(false);
    let frozen = grads(true);
    assert_eq!(full["fc.weight"], frozen["fc.weight"]);
    assert_eq!(full["fc.bias"], frozen["fc.bias"]);
    assert!(full["conv1.weight"].data().iter().any(|&v| v != 0.0));
    assert!(
        frozen["conv1.weight"].data().iter().all(|&v| v == 0.0),
        "backward ran through the frozen backbone"
    );
}

fn state_dict_grads(m: &mut Model) -> BTreeMap<String, Tensor> {
    let mut out = BTreeMap::new();
    m.visit_params("", &mut |n, p| {
        out.insert(n.to_string(), p.grad.clone());
    });
    out
}

#[test]
fn fused_relus_give_bit_identical_steps() {
    let names = [
        ("resnet20", 0.25),
        ("fmnist-cnn", 0.25),
        ("vgg11-bn-cifar", 0.125),
    ];
    for (name, width) in names {
        let mut cfg = models::default_config(name).unwrap();
        cfg.width = width;
        let mut fused = models::build_with(name, Some(cfg.clone()), true).unwrap();
        let mut plain = models::build_with(name, Some(cfg), false).unwrap();
        assert!(fused.fuse() == 0, "{name}: already fused");
        assert!(plain.fuse() > 0, "{name}: nothing to fuse");
        let mut plain = models::build_with(name, Some(plain.config.clone()), false).unwrap();
        let [c, h, w] = fused.input_shape();
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(5);
        let x = Tensor::randn(&[3, c, h, w], 0.0, 1.0, &mut rng);
        let y = [1, 7, 3];
        let mut out = vec![];
        for m in [&mut fused, &mut plain] {
            let logits = m.forward(&x, Mode::Train).unwrap();
            let l = CrossEntropy::default().forward(&logits, &y).unwrap();
            let dx = m.backward(&l.dlogits).unwrap();
            let eval = m.forward(&x, Mode::Eval).unwrap();
            out.push((logits, dx, eval, state_dict_grads(m), state_dict(m)));
        }
        let (a, b) = (&out[0], &out[1]);
        assert_eq!(a.0, b.0, "{name}: logits");
        assert_eq!(a.1, b.1, "{name}: input gradient");
        assert_eq!(a.2, b.2, "{name}: eval logits");
        assert_eq!(a.3, b.3, "{name}: parameter gradients");
        assert_eq!(
            a.4.keys().collect::<Vec<_>>(),
            b.4.keys().collect::<Vec<_>>()
        );
        for (k, v) in &a.4 {
            assert_eq!(v, &b.4[k], "{name}: {k}");
        }
    }
}

#[test]
fn backward_params_skips_the_input_gradient_but_not_a_parameter_gradient() {
    for name in ["fmnist-cnn", "resnet20"] {
        let mut cfg = models::default_config(name).unwrap();
        cfg.width = 0.25;
        let mut a = models::build(name, Some(cfg.clone())).unwrap();
        let mut b = models::build(name, Some(cfg)).unwrap();
        let [c, h, w] = a.input_shape();
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(9);
        let x = Tensor::randn(&[2, c, h, w], 0.0, 1.0, &mut rng);
        let la = a.forward(&x, Mode::Train).unwrap();
        let lb = b.forward(&x, Mode::Train).unwrap();
        let ga = CrossEntropy::default().forward(&la, &[3, 4]).unwrap();
        let gb = CrossEntropy::default().forward(&lb, &[3, 4]).unwrap();
        a.backward(&ga.dlogits).unwrap();
        b.backward_params(&gb.dlogits).unwrap();
        let (ga, gb) = (state_dict_grads(&mut a), state_dict_grads(&mut b));
        assert!(ga.values().any(|t| t.data().iter().any(|&v| v != 0.0)));
        assert_eq!(ga, gb, "{name}");
    }
}

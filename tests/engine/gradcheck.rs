//! Finite-difference gradient checks of every layer, its input and every parameter.
//!
//! The loss is `L = Σ y·r` with a random `r` (never a plain sum, which would hide index
//! bugs), accumulated in f64. Each derivative is a centered difference
//! `(L(v + h) − L(v − h)) / 2h` over a random sample of coordinates; a tensor passes when
//! `‖fd − analytic‖ / max(‖fd‖, ‖analytic‖) < TOL`. The layers compute in f32, so `h` is
//! large (1e-2) to keep rounding out of the difference; inputs of kinked functions (ReLU,
//! max pooling) are kept farther than `h` from their kinks.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use strata::loss::CrossEntropy;
use strata::nn::spec::LayerSpec;
use strata::nn::{BatchNorm2d, Conv2d, Conv2dConfig, Layer, Mode, Residual, Sequential};
use strata::Tensor;

const H: f32 = 1e-2;
/// f32 forward passes: rounding of L is ~1e-7·|L| / 2h; measured errors are ~1e-4.
const TOL: f64 = 3e-3;
const COORDS: usize = 48;

use strata::nn::registry::{Values as Gen, LAYERS};

fn input(shape: &[usize], gen: Gen, rng: &mut StdRng) -> Tensor {
    let n: usize = shape.iter().product();
    let data: Vec<f32> = match gen {
        Gen::Normal => (0..n).map(|_| rng.random_range(-2.0..2.0)).collect(),
        Gen::AwayFromZero => (0..n)
            .map(|_| {
                let m = rng.random_range(0.2..1.5f32);
                if rng.random::<bool>() {
                    m
                } else {
                    -m
                }
            })
            .collect(),
        Gen::Distinct => {
            let mut v: Vec<f32> = (0..n).map(|i| (i as f32 - n as f32 / 2.0) * 0.05).collect();
            for i in (1..n).rev() {
                v.swap(i, rng.random_range(0..=i));
            }
            v
        }
    };
    Tensor::from_vec(data, shape).unwrap()
}

fn loss(layer: &mut dyn Layer, x: &Tensor, r: &Tensor) -> f64 {
    let y = layer.forward(x, Mode::Train).unwrap();
    y.data()
        .iter()
        .zip(r.data())
        .map(|(&a, &b)| a as f64 * b as f64)
        .sum()
}

fn rel_err(fd: &[f64], an: &[f64]) -> f64 {
    let diff: f64 = fd
        .iter()
        .zip(an)
        .map(|(a, b)| (a - b).powi(2))
        .sum::<f64>()
        .sqrt();
    let scale = fd
        .iter()
        .map(|a| a * a)
        .sum::<f64>()
        .sqrt()
        .max(an.iter().map(|a| a * a).sum::<f64>().sqrt());
    if scale < 1e-9 {
        0.0
    } else {
        diff / scale
    }
}

fn coords(len: usize, rng: &mut StdRng) -> Vec<usize> {
    if len <= COORDS {
        (0..len).collect()
    } else {
        (0..COORDS).map(|_| rng.random_range(0..len)).collect()
    }
}

/// Checks dx and every parameter gradient of `layer` at an input of `shape`.
fn check(name: &str, layer: &mut dyn Layer, shape: &[usize], gen: Gen) -> Result<(), String> {
    let mut rng =
        StdRng::seed_from_u64(name.len() as u64 * 7919 + shape.iter().sum::<usize>() as u64);
    // Parameters away from their defaults (γ = 1, β = 0 hide mistakes).
    layer.visit_params("", &mut |_, p| {
        let shift = p.value.data().iter().sum::<f32>() / p.value.len().max(1) as f32;
        p.value = Tensor::randn(p.value.shape(), shift, 0.4, &mut rng);
    });
    let x = input(shape, gen, &mut rng);
    let y = layer.forward(&x, Mode::Train).map_err(|e| e.to_string())?;
    let r = Tensor::randn(y.shape(), 0.0, 1.0, &mut rng);
    strata::nn::zero_grad(layer);
    let dx = layer.backward(&r).map_err(|e| e.to_string())?;
    let mut grads = vec![];
    layer.visit_params("", &mut |n, p| grads.push((n.to_string(), p.grad.clone())));

    let mut errs = vec![];
    // input
    let (mut fd, mut an) = (vec![], vec![]);
    for i in coords(x.len(), &mut rng) {
        let mut xp = x.clone();
        xp.data_mut()[i] += H;
        let lp = loss(layer, &xp, &r);
        xp.data_mut()[i] -= 2.0 * H;
        let lm = loss(layer, &xp, &r);
        fd.push((lp - lm) / (2.0 * H as f64));
        an.push(dx.data()[i] as f64);
    }
    let e = rel_err(&fd, &an);
    if e.is_nan() || e >= TOL {
        errs.push(format!("dx rel err {e:.2e}"));
    }
    // parameters
    for (k, (pname, grad)) in grads.iter().enumerate() {
        let (mut fd, mut an) = (vec![], vec![]);
        for i in coords(grad.len(), &mut rng) {
            let mut l = [0.0; 2];
            for (s, sign) in [1.0f32, -1.0].iter().enumerate() {
                let mut idx = 0;
                layer.visit_params("", &mut |_, p| {
                    if idx == k {
                        p.value.data_mut()[i] += sign * H;
                    }
                    idx += 1;
                });
                l[s] = loss(layer, &x, &r);
                let mut idx = 0;
                layer.visit_params("", &mut |_, p| {
                    if idx == k {
                        p.value.data_mut()[i] -= sign * H;
                    }
                    idx += 1;
                });
            }
            fd.push((l[0] - l[1]) / (2.0 * H as f64));
            an.push(grad.data()[i] as f64);
        }
        let e = rel_err(&fd, &an);
        if e.is_nan() || e >= TOL {
            errs.push(format!("{pname} rel err {e:.2e}"));
        }
    }
    if errs.is_empty() {
        Ok(())
    } else {
        Err(errs.join(", "))
    }
}

/// (spec, input shape, input generator)

#[test]
fn every_layer_passes_finite_differences() {
    let mut failures = vec![];
    let cases = LAYERS.iter().flat_map(|l| l.checks);
    for (i, c) in cases.enumerate() {
        let spec_v: LayerSpec =
            serde_json::from_str(c.spec).unwrap_or_else(|e| panic!("{}: {e}", c.spec));
        let mut layer = spec_v.build(&mut StdRng::seed_from_u64(i as u64)).unwrap();
        if let Err(e) = check(c.spec, layer.as_mut(), c.input, c.values) {
            failures.push(format!("{} at {:?}: {e}", c.spec, c.input));
        }
    }
    // Every deterministic layer is checked, and each case builds the layer it is under.
    for l in LAYERS {
        let stochastic = l.name.starts_with("dropout");
        assert!(
            stochastic || !l.checks.is_empty(),
            "{}: no gradient check",
            l.name
        );
        for c in l.checks {
            assert!(
                c.spec.contains(&format!("\"layer\":\"{}\"", l.name)),
                "{}",
                c.spec
            );
        }
    }
    assert!(
        failures.is_empty(),
        "gradient checks failed:\n{}",
        failures.join("\n")
    );
}

#[test]
fn residual_block_with_projection_passes_finite_differences() {
    let mut rng = StdRng::seed_from_u64(11);
    let body = Sequential::new()
        .push(
            "conv1",
            Conv2d::new(
                Conv2dConfig::new(2, 4, 3).stride(2).padding(1).bias(false),
                &mut rng,
            )
            .unwrap(),
        )
        .push("bn1", BatchNorm2d::new(4).unwrap())
        .push("relu", strata::nn::Activation::gelu())
        .push(
            "conv2",
            Conv2d::new(Conv2dConfig::new(4, 4, 3).padding(1).bias(false), &mut rng).unwrap(),
        );
    let proj = Sequential::new()
        .push(
            "0",
            Conv2d::new(Conv2dConfig::new(2, 4, 1).stride(2).bias(false), &mut rng).unwrap(),
        )
        .push("1", BatchNorm2d::new(4).unwrap());
    let mut block = Residual::projected(body, proj);
    assert_eq!(
        strata::nn::param_names(&mut block),
        [
            "conv1.weight",
            "bn1.weight",
            "bn1.bias",
            "conv2.weight",
            "downsample.0.weight",
            "downsample.1.weight",
            "downsample.1.bias"
        ]
    );
    check("residual", &mut block, &[2, 2, 5, 6], Gen::Normal).unwrap();
    let mut identity = Residual::identity(Sequential::new().push(
        "conv1",
        Conv2d::new(Conv2dConfig::new(3, 3, 3).padding(1), &mut rng).unwrap(),
    ));
    check("identity", &mut identity, &[1, 3, 4, 4], Gen::Normal).unwrap();
}

#[test]
fn cross_entropy_passes_finite_differences() {
    let mut rng = StdRng::seed_from_u64(5);
    for eps in [0.0f32, 0.1] {
        let ce = CrossEntropy::with_label_smoothing(eps).unwrap();
        let z = Tensor::randn(&[4, 5], 0.0, 2.0, &mut rng);
        let t = [0usize, 4, 2, 2];
        let an = ce.forward(&z, &t).unwrap().dlogits;
        let (mut fd, mut a) = (vec![], vec![]);
        for i in 0..z.len() {
            let mut zp = z.clone();
            zp.data_mut()[i] += H;
            let lp = ce.forward(&zp, &t).unwrap().loss;
            zp.data_mut()[i] -= 2.0 * H;
            let lm = ce.forward(&zp, &t).unwrap().loss;
            fd.push((lp - lm) / (2.0 * H as f64));
            a.push(an.data()[i] as f64);
        }
        let e = rel_err(&fd, &a);
        assert!(e < TOL, "label smoothing {eps}: rel err {e:.2e}");
    }
}

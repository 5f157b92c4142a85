//! The `Trainer` and its hooks: a traced step is the plain step, hooks see the
//! activations and gradients, a hook can stop an epoch, divergence is an error.

use std::sync::Arc;
use strata::data::{Batch, ImageDataset, Loader, LoaderConfig, Normalize};
use strata::models::{self, ModelConfig};
use strata::nn::{self, Layer, Mode};
use strata::optim::{LrSchedule, Optimizer, OptimizerConfig, Schedule};
use strata::train::{Control, ForwardView, Hook, StepInfo, StepResult, Trainer};
use strata::{Error, Tensor};

fn trainer(name: &str, lr: f32) -> Trainer {
    let mut cfg = models::default_config(name).unwrap();
    cfg.classes = 4;
    cfg.in_channels = 1;
    cfg.input_size = [12, 12];
    cfg.width = 0.25;
    cfg.seed = 3;
    let model = models::build(name, Some(ModelConfig { ..cfg })).unwrap();
    let opt = Optimizer::new(OptimizerConfig::Sgd {
        momentum: 0.9,
        nesterov: true,
        weight_decay: 5e-4,
    })
    .unwrap();
    let sched = LrSchedule::new(lr, 100, 0, Schedule::Constant).unwrap();
    Trainer::new(model, opt, sched)
}

fn batch(seed: u64, n: usize) -> Batch {
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    Batch {
        x: Tensor::randn(&[n, 1, 12, 12], 0.0, 1.0, &mut rng),
        y: (0..n).map(|i| i % 4).collect(),
        indices: (0..n).collect(),
    }
}

fn weights(t: &mut Trainer) -> Vec<f32> {
    let mut w = vec![];
    t.model
        .visit_params("", &mut |_, p| w.extend_from_slice(p.value.data()));
    t.model
        .visit_buffers("", &mut |_, b| w.extend_from_slice(b.data()));
    w
}

/// Records activation names and shapes, and the gradient norm of every parameter.
#[derive(Default)]
struct Recorder {
    activations: Vec<(String, Vec<usize>)>,
    grad_norms: Vec<(String, f32)>,
    losses: Vec<f64>,
    stop_after: Option<u64>,
}

impl Hook for Recorder {
    fn wants_activations(&self, _s: &StepInfo) -> bool {
        true
    }
    fn after_forward(&mut self, _s: &StepInfo, f: &ForwardView) {
        self.activations = f
            .activations
            .unwrap()
            .iter()
            .map(|(n, t)| (n.clone(), t.shape().to_vec()))
            .collect();
        self.losses.push(f.loss);
    }
    fn after_backward(&mut self, _s: &StepInfo, model: &mut strata::models::Model) {
        self.grad_norms.clear();
        model.visit_params("", &mut |n, p| {
            let g = p.grad.data().iter().map(|v| v * v).sum::<f32>().sqrt();
            self.grad_norms.push((n.to_string(), g));
        });
    }
    fn after_step(&mut self, s: &StepInfo, _r: &StepResult) -> Control {
        match self.stop_after {
            Some(k) if s.iteration + 1 >= k => Control::Stop,
            _ => Control::Continue,
        }
    }
}

#[test]
fn a_traced_step_is_the_plain_step_bit_for_bit() {
    for name in ["fmnist-cnn", "resnet20"] {
        let (mut plain, mut traced) = (trainer(name, 0.05), trainer(name, 0.05));
        let mut rec = Recorder::default();
        for i in 0..3 {
            let b = batch(i, 6);
            let (a, _) = plain.step(&b, 0, i, &mut []).unwrap();
            let (t, _) = traced.step(&b, 0, i, &mut [&mut rec]).unwrap();
            assert_eq!(a, t, "{name}: step {i}");
        }
        assert_eq!(plain.step, 3);
        assert_eq!(weights(&mut plain), weights(&mut traced), "{name}");
        // Every leaf reported, in order, ending with the logits.
        assert!(rec.activations.len() >= 6, "{name}: {:?}", rec.activations);
        assert_eq!(rec.activations.last().unwrap().1, vec![6, 4], "{name}");
        let names: Vec<&str> = rec.activations.iter().map(|a| a.0.as_str()).collect();
        let mut summary_leaves = vec![];
        collect_leaves(&plain.model.net, "", &mut summary_leaves);
        for leaf in &summary_leaves {
            assert!(names.contains(&leaf.as_str()), "{name}: {leaf} not traced");
        }
        // Gradients reach every parameter.
        let mut params = 0;
        plain.model.visit_params("", &mut |_, _| params += 1);
        assert_eq!(rec.grad_norms.len(), params);
        assert!(rec.grad_norms.iter().all(|(_, g)| g.is_finite()));
        assert!(rec.grad_norms.iter().filter(|(_, g)| *g > 0.0).count() > params / 2);
    }
}

fn collect_leaves(l: &dyn Layer, prefix: &str, out: &mut Vec<String>) {
    let children = l.children();
    if children.is_empty() {
        out.push(prefix.to_string());
    }
    for (n, c) in children {
        // A residual block's post-activation runs inside the block's sum.
        if n != "post" {
            collect_leaves(c, &nn::join(prefix, n), out);
        }
    }
}

#[test]
fn the_traced_forward_gives_the_fused_forward_numbers() {
    let mut t = trainer("resnet20", 0.05);
    let b = batch(9, 5);
    for mode in [Mode::Train, Mode::Eval] {
        let y = t.model.forward(&b.x, mode).unwrap();
        let mut last = None;
        let z = nn::forward_traced(&mut t.model.net, &b.x, mode, "", &mut |n, a| {
            last = Some((n.to_string(), a.clone()))
        })
        .unwrap();
        if mode == Mode::Train {
            assert_eq!(y, z);
        } else {
            // Unfolded normalizations: the last bits differ.
            let err = y
                .data()
                .iter()
                .zip(z.data())
                .map(|(a, b)| (a - b).abs())
                .fold(0.0f32, f32::max);
            assert!(err < 1e-4, "{err}");
        }
        assert_eq!(last.unwrap().1, z);
    }
}

#[test]
fn a_hook_stops_the_epoch_and_the_loader_drives_it() {
    let images: Vec<u8> = (0..40 * 144).map(|i| (i * 7 % 251) as u8).collect();
    let labels: Vec<u32> = (0..40).map(|i| i % 4).collect();
    let ds = ImageDataset::new(
        images,
        labels,
        [1, 12, 12],
        (0..4).map(|c| format!("c{c}")).collect(),
    )
    .unwrap();
    let loader = Loader::new(
        Arc::new(ds),
        LoaderConfig {
            batch_size: 4,
            normalize: Normalize::identity(1),
            workers: 1,
            ..LoaderConfig::default()
        },
    )
    .unwrap();
    let mut t = trainer("fmnist-cnn", 0.01);
    let mut rec = Recorder {
        stop_after: Some(3),
        ..Recorder::default()
    };
    let s = t.epoch(&loader, 0, &mut [&mut rec]).unwrap();
    assert!(s.stopped);
    assert_eq!((s.steps, s.images, t.step), (3, 12, 3));
    let full = t.epoch(&loader, 1, &mut []).unwrap();
    assert!(!full.stopped);
    assert_eq!((full.steps, full.images, t.step), (10, 40, 13));
    let (loss, conf) = t.evaluate(&loader).unwrap();
    assert!(loss.is_finite());
    assert_eq!(conf.total(), 40);
}

#[test]
fn a_diverging_step_is_an_error_before_the_weights_change() {
    let mut t = trainer("fmnist-cnn", 0.05);
    let b = batch(1, 4);
    // A NaN in the last layer's bias: the logits, and so the loss, are NaN.
    let mut last = String::new();
    t.model.visit_params("", &mut |n, _| last = n.to_string());
    t.model.visit_params("", &mut |n, p| {
        if n == last {
            p.value.data_mut()[0] = f32::NAN;
        }
    });
    let before = weights(&mut t);
    match t.step(&b, 2, 7, &mut []) {
        Err(Error::Diverged {
            epoch, iteration, ..
        }) => assert_eq!((epoch, iteration), (3, 8)),
        other => panic!("expected Diverged, got {other:?}"),
    }
    assert_eq!(t.step, 0);
    // BatchNorm's running statistics may have moved; the parameters have not.
    let mut after = vec![];
    t.model
        .visit_params("", &mut |_, p| after.extend_from_slice(p.value.data()));
    let same = |a: &f32, b: &f32| a.to_bits() == b.to_bits();
    assert!(before.iter().zip(&after).all(|(a, b)| same(a, b)));
}

#[test]
fn a_predictor_preprocesses_as_training_did_and_ranks_the_classes() {
    use strata::checkpoint;
    use strata::predict::Predictor;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.safetensors");
    let mut t = trainer("fmnist-cnn", 0.05);
    t.step(&batch(2, 4), 0, 0, &mut []).unwrap();
    let mut meta = t.model.metadata().unwrap();
    let norm = Normalize::new(vec![0.25], vec![0.5]).unwrap();
    meta.extend(norm.to_metadata());
    meta.insert(
        strata::train::META_CLASSES.into(),
        r#"["a","b","c","d"]"#.into(),
    );
    checkpoint::save(&mut t.model, &path, &meta).unwrap();

    let mut p = Predictor::load(&path).unwrap();
    // By default, torchvision's evaluation transform: the short side to 12, the center.
    let im = image::RgbImage::from_fn(20, 17, |x, y| {
        image::Rgb([(x * 12) as u8, (y * 15) as u8, 77])
    });
    let x = p
        .preprocess(image::DynamicImage::ImageRgb8(im.clone()))
        .unwrap();
    let crop = strata::predict::center_crop(image::DynamicImage::ImageRgb8(im.clone()), [12, 12]);
    let want = (crop.to_luma8().as_raw()[0] as f32 / 255.0 - 0.25) / 0.5;
    assert!(
        (x.data()[0] - want).abs() < 1e-6,
        "{} vs {want}",
        x.data()[0]
    );
    p.resize = strata::predict::Resize::Stretch;
    // Stretched: an RGB image of another size made gray and 12×12, scaled, normalized.
    let im = image::RgbImage::from_fn(20, 17, |x, y| {
        image::Rgb([(x * 12) as u8, (y * 15) as u8, 77])
    });
    let x = p
        .preprocess(image::DynamicImage::ImageRgb8(im.clone()))
        .unwrap();
    assert_eq!(x.shape(), &[1, 1, 12, 12]);
    let gray = image::DynamicImage::ImageRgb8(im.clone())
        .resize_exact(12, 12, image::imageops::FilterType::Triangle)
        .to_luma8();
    let want = (gray.as_raw()[0] as f32 / 255.0 - 0.25) / 0.5;
    assert!(
        (x.data()[0] - want).abs() < 1e-6,
        "{} vs {want}",
        x.data()[0]
    );

    let probs = p.probabilities(&x).unwrap().remove(0);
    assert_eq!(probs.len(), 4);
    assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    let guesses = p
        .predict_image(image::DynamicImage::ImageRgb8(im), 3)
        .unwrap();
    assert_eq!(guesses.len(), 3);
    let best = (0..4)
        .max_by(|&a, &b| probs[a].total_cmp(&probs[b]))
        .unwrap();
    assert_eq!(guesses[0].class, best);
    assert_eq!(guesses[0].name, ["a", "b", "c", "d"][best]);
    assert!(guesses
        .windows(2)
        .all(|w| w[0].probability >= w[1].probability));
}

#[test]
fn a_state_dict_in_memory_loads_strictly_or_leaves_a_new_head_alone() {
    use strata::checkpoint::{load_state_dict, state_dict};
    let mut a = trainer("fmnist-cnn", 0.05);
    let mut b = trainer("fmnist-cnn", 0.05);
    b.step(&batch(5, 4), 0, 0, &mut []).unwrap();
    let sd = state_dict(&mut b.model);
    let report = load_state_dict(&mut a.model, &sd, true).unwrap();
    assert!(report.is_exact());
    assert_eq!(weights(&mut a), weights(&mut b));

    // Another number of classes: strict refuses and changes nothing; non-strict loads
    // everything but the head.
    let mut cfg = a.model.config.clone();
    cfg.classes = 7;
    let mut c = models::build("fmnist-cnn", Some(cfg)).unwrap();
    let before = state_dict(&mut c);
    assert!(load_state_dict(&mut c, &sd, true).is_err());
    assert_eq!(state_dict(&mut c), before);
    let report = load_state_dict(&mut c, &sd, false).unwrap();
    assert_eq!(report.mismatched.len(), 2, "{}", report.describe());
    assert!(report.missing.is_empty() && report.unexpected.is_empty());
    let after = state_dict(&mut c);
    for (k, v) in &after {
        if report.mismatched.iter().any(|m| &m.0 == k) {
            assert_eq!(v, &before[k], "{k}");
        } else {
            assert_eq!(v, &sd[k], "{k}");
        }
    }
}

#[test]
fn a_backward_after_an_eval_forward_gives_the_gradient_of_the_eval_network() {
    let mut cfg = models::default_config("resnet20").unwrap();
    cfg.in_channels = 1;
    cfg.input_size = [8, 8];
    cfg.width = 0.25;
    cfg.dropout = 0.5;
    let mut m = models::build("resnet20", Some(cfg)).unwrap();
    // Running statistics away from their defaults.
    for i in 0..3 {
        m.forward(&small(i), Mode::Train).unwrap();
    }
    let x = small(7);
    let mut buffers = vec![];
    m.visit_buffers("", &mut |_, b| buffers.extend_from_slice(b.data()));
    let y_eval = m.forward(&x, Mode::Eval).unwrap();
    let y = m.forward(&x, Mode::EvalGrad).unwrap();
    let err = y
        .data()
        .iter()
        .zip(y_eval.data())
        .fold(0.0f32, |e, (a, b)| e.max((a - b).abs()));
    assert!(err < 1e-4, "EvalGrad and Eval differ by {err}");
    let mut after = vec![];
    m.visit_buffers("", &mut |_, b| after.extend_from_slice(b.data()));
    assert_eq!(buffers, after, "EvalGrad moved the running statistics");
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(3);
    let r = Tensor::randn(y.shape(), 0.0, 1.0, &mut rng);
    let dx = m.backward(&r).unwrap();
    // The same again: dropout is off, so the gradient is a function of x.
    m.forward(&x, Mode::EvalGrad).unwrap();
    assert_eq!(m.backward(&r).unwrap(), dx);
    // Finite differences of L = Σ y·r in the input, at a few coordinates (f64 sums).
    let loss = |m: &mut strata::models::Model, x: &Tensor| -> f64 {
        let y = m.forward(x, Mode::Eval).unwrap();
        y.data()
            .iter()
            .zip(r.data())
            .map(|(a, b)| *a as f64 * *b as f64)
            .sum()
    };
    // A small step: a ReLU kink within h of a coordinate spoils its difference.
    let h = 2e-3f32;
    for i in [0, 17, 40, 63, 100] {
        let (mut xp, mut xm) = (x.clone(), x.clone());
        xp.data_mut()[i] += h;
        xm.data_mut()[i] -= h;
        let fd = (loss(&mut m, &xp) - loss(&mut m, &xm)) / (2.0 * h as f64);
        let an = dx.data()[i] as f64;
        assert!(
            (fd - an).abs() <= 2e-2 * fd.abs().max(an.abs()).max(0.1),
            "x[{i}]: finite difference {fd}, backward {an}"
        );
    }
}

fn small(seed: u64) -> Tensor {
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
    Tensor::randn(&[2, 1, 8, 8], 0.0, 1.0, &mut rng)
}

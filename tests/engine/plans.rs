//! Convolution plans: chosen once per geometry and precision, printable, timed on
//! request, and set on a whole model.

use rand::SeedableRng;
use strata::kernels::bf16::Precision;
use strata::kernels::conv::{ConvGeom, ConvPlan, Path, Tuning};
use strata::models;
use strata::nn::{self, Conv2d, Conv2dConfig, Layer, Mode};
use strata::Tensor;

#[test]
fn a_timed_plan_computes_what_the_static_one_does() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let cfg = Conv2dConfig::new(16, 16, 3).padding(1);
    let mut a = Conv2d::new(cfg.clone(), &mut rng).unwrap();
    let mut b = Conv2d::new(cfg, &mut rand::rngs::StdRng::seed_from_u64(1)).unwrap();
    b.set_tuning(Tuning::Timed);
    let x = Tensor::randn(&[4, 16, 10, 9], 0.0, 1.0, &mut rng);
    let ya = a.forward(&x, Mode::Train).unwrap();
    let yb = b.forward(&x, Mode::Train).unwrap();
    let (pa, pb) = (*a.plan().unwrap(), *b.plan().unwrap());
    assert!(!pa.tuned && pb.tuned, "{pa:?} {pb:?}");
    assert_eq!(pa.forward, Path::Winograd);
    assert!(Path::candidates(&pa.geom).contains(&pb.forward));
    let err = ya
        .data()
        .iter()
        .zip(yb.data())
        .fold(0.0f32, |e, (p, q)| e.max((p - q).abs()));
    assert!(err < 1e-4, "{err}");
    // The plan is kept for the geometry, and renewed when the input size changes.
    b.forward(&x, Mode::Eval).unwrap();
    assert_eq!(*b.plan().unwrap(), pb);
    let x2 = Tensor::randn(&[2, 16, 6, 6], 0.0, 1.0, &mut rng);
    b.forward(&x2, Mode::Eval).unwrap();
    assert_eq!(b.plan().unwrap().geom.h, 6);
    // Backward follows whichever forward ran.
    b.forward(&x, Mode::Train).unwrap();
    let dx = b.backward(&Tensor::full(yb.shape(), 0.5)).unwrap();
    assert_eq!(dx.shape(), x.shape());
}

#[test]
fn a_timed_bf16_plan_is_either_bf16_or_entirely_f32_and_computes_the_same() {
    use strata::kernels::bf16;
    let mut rng = rand::rngs::StdRng::seed_from_u64(2);
    // A thin first layer (bf16's weakest case) and a wide one.
    for (c_in, c_out) in [(8, 16), (32, 32)] {
        let cfg = Conv2dConfig::new(c_in, c_out, 3).padding(1);
        let mut f = Conv2d::new(cfg.clone(), &mut rand::rngs::StdRng::seed_from_u64(3)).unwrap();
        let mut b = Conv2d::new(cfg, &mut rand::rngs::StdRng::seed_from_u64(3)).unwrap();
        b.set_precision(Precision::Bf16);
        b.set_tuning(Tuning::Timed);
        let x = Tensor::randn(&[4, c_in, 12, 12], 0.0, 1.0, &mut rng);
        let yf = f.forward(&x, Mode::Train).unwrap();
        let yb = b.forward(&x, Mode::Train).unwrap();
        let p = *b.plan().unwrap();
        assert!(p.tuned);
        if !bf16::available() {
            assert!(!p.bf16_forward, "no bf16 on this CPU");
        }
        // Whatever the timing chose, the layer is coherent: an f32 forward means f32
        // products in every pass.
        if !p.bf16_forward {
            assert!(!p.bf16_weight_grad && !p.bf16_input_grad, "{p:?}");
            assert!(!p.describe().contains("-bf16"), "{}", p.describe());
        }
        // The same convolution, within bf16's rounding when bf16 won.
        let scale = yf.data().iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let err = yf
            .data()
            .iter()
            .zip(yb.data())
            .fold(0.0f32, |e, (p, q)| e.max((p - q).abs()));
        assert!(err <= 2e-2 * scale, "{c_in}→{c_out}: {err} of {scale}");
        let dx = b.backward(&Tensor::full(yb.shape(), 0.5)).unwrap();
        let dxf = f.backward(&Tensor::full(yf.shape(), 0.5)).unwrap();
        let dscale = dxf.data().iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let derr = dxf
            .data()
            .iter()
            .zip(dx.data())
            .fold(0.0f32, |e, (p, q)| e.max((p - q).abs()));
        assert!(
            derr <= 2e-2 * dscale,
            "dx {c_in}→{c_out}: {derr} of {dscale}"
        );
        if !p.bf16_forward {
            // Entirely f32: the same kernels as the f32 layer on the chosen path, so
            // the input gradient agrees to f32 rounding.
            assert!(derr <= 1e-4 * dscale.max(1.0), "{derr}");
        }
    }
}

#[test]
fn plans_name_their_kernels_and_follow_the_model_precision() {
    let g = ConvGeom::new(16, 8, 8, 16, (3, 3), (1, 1), (1, 1), (1, 1), 1).unwrap();
    let p = ConvPlan::f32(g);
    assert_eq!(
        p.describe(),
        "fwd winograd · dx winograd · dw winograd (f32)"
    );
    let strided = ConvGeom::new(16, 8, 8, 32, (1, 1), (2, 2), (0, 0), (1, 1), 1).unwrap();
    assert!(ConvPlan::f32(strided).describe().starts_with("fwd gemm"));
    assert_eq!(p.with_forward(Path::Gemm).unwrap().forward_name(), "gemm");
    assert!(ConvPlan::f32(strided)
        .with_forward(Path::Winograd)
        .is_none());

    let mut cfg = models::default_config("resnet20").unwrap();
    cfg.width = 0.25;
    let mut m = models::build("resnet20", Some(cfg)).unwrap();
    nn::set_precision(&mut m, Precision::Bf16);
    let x = Tensor::randn(
        &[2, 3, 32, 32],
        0.0,
        1.0,
        &mut rand::rngs::StdRng::seed_from_u64(4),
    );
    m.forward(&x, Mode::Eval).unwrap();
    let plans = nn::conv_plans(&mut m);
    assert_eq!(plans.len(), 21, "{plans:?}");
    assert_eq!(plans[0].0, "conv1");
    assert!(plans.iter().all(|(_, p)| p.precision == Precision::Bf16));
    nn::set_precision(&mut m, Precision::F32);
    m.forward(&x, Mode::Eval).unwrap();
    assert!(nn::conv_plans(&mut m)
        .iter()
        .all(|(_, p)| p.precision == Precision::F32 && !p.bf16_forward));
}

#[test]
fn the_fusion_pass_lists_the_fused_steps_of_each_mode() {
    let m = models::build("fmnist-cnn", None).unwrap();
    let children = m.net.children();
    let features = children
        .iter()
        .find(|(n, _)| *n == "features")
        .and_then(|(_, l)| (*l as &dyn std::any::Any).downcast_ref::<nn::Sequential>())
        .expect("fmnist-cnn has a features block");
    let train = features.execution(Mode::Train);
    let eval = features.execution(Mode::Eval);
    assert_eq!(
        train[..3],
        ["0 + 1 (moments)", "2", "3 + 4 (moments)"],
        "{train:?}"
    );
    assert_eq!(
        eval[..3],
        ["0 + 1 (folded)", "2", "3 + 4 + 5 + 6 (folded, pooled)"],
        "{eval:?}"
    );
    // EvalGrad keeps the caches: nothing is folded, moments are handed as in training
    // only where the normalization uses batch statistics (not in EvalGrad).
    let grad = features.execution(Mode::EvalGrad);
    assert!(
        grad.iter()
            .all(|s| !s.contains("folded") && !s.contains("moments")),
        "{grad:?}"
    );
    // Unfused (each ReLU its own layer), training still hands the moments over.
    let plain = models::build_with("fmnist-cnn", None, false).unwrap();
    let pc = plain.net.children();
    let pf = pc
        .iter()
        .find(|(n, _)| *n == "features")
        .and_then(|(_, l)| (*l as &dyn std::any::Any).downcast_ref::<nn::Sequential>())
        .unwrap();
    assert_eq!(pf.execution(Mode::Train)[..2], ["0 + 1 (moments)", "2"]);
}

/// A timed run records its kernel choices in the run folder, shares them with the next
/// run on this CPU through the cache, and a killed run resumed with a cache that says
/// otherwise still replays the uninterrupted history (its own record wins).
#[test]
fn a_timed_run_records_its_choices_and_a_resume_replays_them_over_the_cache() {
    use super::train::{assert_ok, kill_after_first_checkpoint, killable_run, replayed, strata};
    use strata::train::RunPaths;
    let tmp = tempfile::tempdir().unwrap();
    let cache = tmp.path().join("cache.json");
    let run = || killable_run(&["--precision", "bf16", "--conv-tuning", "timed"]);
    let full = tmp.path().join("full");
    let out = run()
        .arg("--run-dir")
        .arg(&full)
        .env("STRATA_PLAN_CACHE", &cache)
        .output()
        .unwrap();
    assert_ok(&out);
    // fmnist-cnn at half width: four convolutions of four geometries, each timed where
    // more than one kernel takes it (all four on AVX-512 CPUs).
    let timed = [(1, 28, 16), (16, 28, 16), (16, 14, 32), (32, 14, 32)]
        .iter()
        .filter(|&&(ci, hw, co)| {
            let g = ConvGeom::new(ci, hw, hw, co, (3, 3), (1, 1), (1, 1), (1, 1), 1).unwrap();
            Path::candidates(&g).len() > 1
        })
        .count();
    let plans = RunPaths::new(&full).plans();
    if timed == 0 {
        // Nothing to time on this CPU: no choice to record or replay.
        assert!(!plans.exists());
        return;
    }
    let rec: serde_json::Value = serde_json::from_slice(&std::fs::read(&plans).unwrap()).unwrap();
    let choices = rec["choices"].as_object().unwrap().clone();
    assert_eq!(choices.len(), timed, "{rec}");
    let cached: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&cache).unwrap()).unwrap();
    let cpu = rec["cpu"].as_str().unwrap();
    assert_eq!(cached["cpus"][cpu].as_object().unwrap(), &choices);

    // The same run again, killed after its first checkpoint: the cache gives it the
    // full run's choices.
    let killed = tmp.path().join("killed");
    let mut cmd = run();
    cmd.arg("--run-dir")
        .arg(&killed)
        .env("STRATA_PLAN_CACHE", &cache);
    kill_after_first_checkpoint(cmd, &killed);

    // A cache that says GEMM in f32 for every layer: the resume must not follow it.
    let other: serde_json::Map<String, serde_json::Value> = choices
        .keys()
        .map(|k| {
            (
                k.clone(),
                serde_json::json!({"forward": "gemm", "bf16": false}),
            )
        })
        .collect();
    let other_cache = tmp.path().join("other.json");
    let text = serde_json::json!({ "cpus": { cpu: other } }).to_string();
    std::fs::write(&other_cache, text).unwrap();
    let out = strata(&["train", "--resume"])
        .arg(&killed)
        .env("STRATA_PLAN_CACHE", &other_cache)
        .output()
        .unwrap();
    assert_ok(&out);
    let (a, b) = (replayed(&full), replayed(&killed));
    assert_eq!(a.len(), b.len());
    for (i, (x, y)) in a.iter().zip(&b).enumerate() {
        assert_eq!(x, y, "history line {i} differs after resume");
    }
}

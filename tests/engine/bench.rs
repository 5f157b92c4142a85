//! `strata::bench` and the per-layer profiler: the report is complete and consistent.

use strata::bench::{self, BenchMode, BenchOptions};
use strata::kernels::bf16::{self, Precision};
use strata::models;
use strata::profile;
use strata::summary::summarize;

fn tiny(name: &str, width: f32) -> models::Model {
    let mut c = models::default_config(name).unwrap();
    c.width = width;
    models::build(name, Some(c)).unwrap()
}

#[test]
fn the_profile_names_every_leaf_layer_as_the_summary_does() {
    let mut model = tiny("resnet20", 0.25);
    let summary = summarize(&model, &model.input_shape()).unwrap();
    let opts = BenchOptions {
        batch: 4,
        warmup: 1,
        iters: 2,
        profile_iters: 2,
        ..BenchOptions::default()
    };
    let r = bench::run(&mut model, &opts).unwrap();
    let names: Vec<&str> = r
        .layers
        .iter()
        .filter(|l| !l.kind.starts_with("Add"))
        .map(|l| l.name.as_str())
        .collect();
    // A block's ReLU after the sum runs inside the sum (`Add+ReLU`), so it has no row.
    let want: Vec<&str> = summary
        .rows
        .iter()
        .map(|r| r.name.as_str())
        .filter(|n| !n.ends_with(".post"))
        .collect();
    // Same layers; the shortcut runs before the residual sum in both orders.
    let (mut a, mut b) = (names.clone(), want.clone());
    a.sort();
    b.sort();
    assert_eq!(a, b);
    // Nine blocks, one sum each, with the block's ReLU.
    assert_eq!(r.layers.iter().filter(|l| l.kind == "Add+ReLU").count(), 9);
    for l in &r.layers {
        assert!(l.forward_ms > 0.0, "{} has no forward time", l.name);
        if l.kind == "Conv2d" {
            assert!(l.backward_ms > 0.0, "{} has no backward time", l.name);
            assert!(l.macs > 0 && l.gflops(BenchMode::Train) > 0.0, "{}", l.name);
        }
    }
    assert!(r.images_per_s > 0.0 && r.images_per_s.is_finite());
    assert!(r.min_s <= r.median_s && r.median_s <= r.max_s);
    let step_gflop = 3.0 * 2.0 * summary.macs as f64 * 4.0 / 1e9;
    assert!((r.gflop_per_step - step_gflop).abs() < 1e-9 * step_gflop.max(1.0));
    if cfg!(target_os = "linux") {
        assert!(r.rss_peak.unwrap_or(0) >= r.rss_start.unwrap_or(u64::MAX));
    }
    let text = r.render();
    assert!(
        text.contains("layer1.0.conv1") && text.contains("images/s"),
        "{text}"
    );
    // Profiling is switched off again and leaves nothing behind.
    assert!(!profile::enabled());
    assert!(profile::take().is_empty());
}

#[test]
fn inference_has_no_backward_and_bad_options_are_errors() {
    let mut model = tiny("fmnist-cnn", 0.25);
    let opts = BenchOptions {
        batch: 3,
        mode: BenchMode::Infer,
        warmup: 0,
        iters: 1,
        profile_iters: 1,
        seed: 1,
        precision: Precision::F32,
        ..BenchOptions::default()
    };
    let r = bench::run(&mut model, &opts).unwrap();
    assert!(r.layers.iter().all(|l| l.backward_ms == 0.0));
    assert_eq!(
        r.layers.len(),
        summarize(&model, &model.input_shape()).unwrap().rows.len()
    );
    let zero = BenchOptions {
        iters: 0,
        ..opts.clone()
    };
    assert!(bench::run(&mut model, &zero).is_err());
    assert!("sideways".parse::<BenchMode>().is_err());
    assert_eq!("infer".parse::<BenchMode>().unwrap(), BenchMode::Infer);
}

#[test]
fn a_bf16_bench_reports_its_precision_and_its_plans() {
    let mut model = tiny("resnet20", 0.5);
    let opts = BenchOptions {
        batch: 4,
        mode: BenchMode::Train,
        warmup: 1,
        iters: 2,
        profile_iters: 1,
        seed: 2,
        precision: Precision::Bf16,
        ..BenchOptions::default()
    };
    let r = bench::run(&mut model, &opts).unwrap();
    assert_eq!(r.precision, Precision::Bf16);
    assert!(r.render().contains("bf16 products"), "{}", r.render());
    assert!(r.images_per_s > 0.0);
    // Every convolution's plan is in the table, at the precision asked for; the layers
    // keep it (no thread state).
    let convs: Vec<_> = r.layers.iter().filter(|l| l.kind == "Conv2d").collect();
    assert!(!convs.is_empty());
    for l in &convs {
        let plan = l.plan.as_deref().unwrap_or_default();
        assert!(
            plan.starts_with("fwd ") && plan.ends_with("(bf16)"),
            "{}: {plan}",
            l.name
        );
    }
    let plans = strata::nn::conv_plans(&mut model);
    assert_eq!(plans.len(), convs.len());
    assert!(plans.iter().all(|(_, p)| p.precision == Precision::Bf16));
    assert_eq!(
        plans.iter().any(|(_, p)| p.bf16_forward),
        bf16::available(),
        "bf16 kernels run exactly where the CPU has them"
    );
    let json = serde_json::to_value(&r).unwrap();
    assert_eq!(json["precision"], "bf16");
}

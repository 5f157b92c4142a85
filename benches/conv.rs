//! The conv2d kernels, forward and backward (dx and dw), at batch 128 on the layer shapes of the
//! reference models (fmnist-cnn and resnet20, see DESIGN.md). Throughput is reported in
//! elements/s where one element is one FLOP: read "Gelem/s" as GFLOP/s. Forward is
//! 2·MACs; backward is 4·MACs (dx and dw each cost one forward). Buffers are allocated
//! once, outside the timed loop, as a layer keeps them between steps. Layers the bf16
//! kernels take are measured a second time with bf16 products (`…_bf16`).

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use rand::SeedableRng;
use std::time::Duration;
use strata::kernels::bf16::{self, Precision};
use strata::kernels::conv::{conv2d_backward, conv2d_forward, ConvGeom, ConvPlan, ConvWorkspace};
use strata::Tensor;

const BATCH: usize = 128;

/// (label, c_in, c_out, input size, kernel, stride, padding)
const SHAPES: &[(&str, usize, usize, usize, usize, usize, usize)] = &[
    ("fmnist_conv1_1to32_28", 1, 32, 28, 3, 1, 1),
    ("fmnist_conv2_32to32_28", 32, 32, 28, 3, 1, 1),
    ("fmnist_conv3_32to64_14", 32, 64, 14, 3, 1, 1),
    ("fmnist_conv4_64to64_14", 64, 64, 14, 3, 1, 1),
    ("resnet_stem_3to16_32", 3, 16, 32, 3, 1, 1),
    ("resnet_s1_16to16_32", 16, 16, 32, 3, 1, 1),
    ("resnet_s2in_16to32_32s2", 16, 32, 32, 3, 2, 1),
    ("resnet_s2_32to32_16", 32, 32, 16, 3, 1, 1),
    ("resnet_s2sc_1x1_16to32_s2", 16, 32, 32, 1, 2, 0),
    ("resnet_s3_64to64_8", 64, 64, 8, 3, 1, 1),
];

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("conv2d_b128");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    for &(label, c_in, c_out, size, k, s, p) in SHAPES {
        let geom =
            ConvGeom::new(c_in, size, size, c_out, (k, k), (s, s), (p, p), (1, 1), 1).unwrap();
        let x = Tensor::randn(&[BATCH, c_in, size, size], 0.0, 1.0, &mut rng);
        let w = Tensor::randn(&[c_out, c_in, k, k], 0.0, 0.1, &mut rng);
        let mut y = vec![0.0f32; BATCH * c_out * geom.ohw()];
        let dy = Tensor::randn(&[BATCH, c_out, geom.oh, geom.ow], 0.0, 1.0, &mut rng);
        let mut dx = vec![0.0f32; x.len()];
        let mut dw = vec![0.0f32; w.len()];
        let mut ws = ConvWorkspace::default();
        let macs = (BATCH * geom.macs_per_image()) as u64;
        // f32, then bf16 products (`--precision bf16`) on layers and CPUs that take them.
        let mut precisions = vec![("", Precision::F32)];
        if bf16::active_for(&geom, Precision::Bf16) {
            precisions.push(("_bf16", Precision::Bf16));
        }
        for (suffix, p) in precisions {
            let plan = ConvPlan::new(geom, p);
            g.throughput(Throughput::Elements(2 * macs));
            g.bench_function(BenchmarkId::new(format!("forward{suffix}"), label), |b| {
                b.iter(|| {
                    conv2d_forward(&plan, BATCH, x.data(), w.data(), None, &mut y, &mut ws).unwrap()
                })
            });
            g.throughput(Throughput::Elements(4 * macs));
            g.bench_function(BenchmarkId::new(format!("backward{suffix}"), label), |b| {
                b.iter(|| {
                    conv2d_backward(
                        &plan,
                        BATCH,
                        x.data(),
                        w.data(),
                        dy.data(),
                        Some(&mut dx),
                        &mut dw,
                        None,
                        &mut ws,
                    )
                    .unwrap()
                })
            });
        }
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

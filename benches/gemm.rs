//! GEMM throughput on square products and on the thin products that im2col makes of
//! the reference models' convolutions, for the `gemm` crate (our choice) and the
//! `matrixmultiply` crate (the main pure-Rust alternative), both on all rayon threads.
//! Throughput is reported in elements/s where one element is one FLOP (2·m·n·k per
//! product): read "Gelem/s" as GFLOP/s.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use std::time::Duration;
use strata::kernels::gemm::{matmul, Accumulate, Par, Trans};

/// (label, m, n, k): m = output channels, n = output pixels (per image, or the batch
/// of 8 images), k = c_in·kh·kw.
const SHAPES: &[(&str, usize, usize, usize)] = &[
    ("square512", 512, 512, 512),
    ("square1024", 1024, 1024, 1024),
    ("fmnist_conv2_img", 32, 784, 288),
    ("fmnist_conv4_img", 64, 196, 576),
    ("resnet_s1_img", 16, 1024, 144),
    ("resnet_s3_img", 64, 64, 576),
    ("resnet_s1_8img", 16, 8192, 144),
    ("resnet_s3_8img", 64, 512, 576),
];

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("gemm");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for &(label, m, n, k) in SHAPES {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 17) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 13) as f32 * 0.1).collect();
        let mut out = vec![0.0f32; m * n];
        g.throughput(Throughput::Elements((2 * m * n * k) as u64));
        g.bench_function(BenchmarkId::new("gemm-crate", label), |bch| {
            bch.iter(|| {
                matmul(
                    m,
                    n,
                    k,
                    &a,
                    Trans::No,
                    &b,
                    Trans::No,
                    &mut out,
                    Accumulate::No,
                    Par::Rayon,
                )
                .unwrap()
            })
        });
        g.bench_function(BenchmarkId::new("matrixmultiply", label), |bch| {
            bch.iter(|| {
                // SAFETY: a is m×k, b is k×n, out is m×n, all row-major and in bounds.
                unsafe {
                    matrixmultiply::sgemm(
                        m,
                        k,
                        n,
                        1.0,
                        a.as_ptr(),
                        k as isize,
                        1,
                        b.as_ptr(),
                        n as isize,
                        1,
                        0.0,
                        out.as_mut_ptr(),
                        n as isize,
                        1,
                    )
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

//! 2-D convolution in NCHW by im2col + GEMM, forward and backward.
//!
//! Dimensions: `n` batch, `c_in`/`c_out` channels, `h, w` input size, `kh, kw` kernel,
//! `oh, ow` output size, `g` groups, `cg_in = c_in / g`, `cg_out = c_out / g`,
//! `kg = cg_in·kh·kw` (the reduction length of one group).
//!
//! Forward, per image and group: `y_g[cg_out, oh·ow] = w_g[cg_out, kg] · col_g[kg, oh·ow]`,
//! where `col = im2col(x)` lays each receptive field out as a column.
//! Backward, per image and group:
//! - `dw_gᵀ += col_g · dy_gᵀ` (partial sums per thread, transposed and combined in a
//!   fixed order; the transposed product is the fast one, see `docs/conv.md`),
//! - `dcol_g = w_gᵀ · dy_g`, then `dx = col2im(dcol)` (scatter-add of the columns),
//! - `db[c] = Σ_{n,oh,ow} dy[n, c]`.
//!
//! A 1×1 convolution with stride 1 and no padding skips im2col: `col` is the image itself.
//! The batch is cut into one chunk per rayon thread; each chunk owns its buffers in a
//! [`ConvWorkspace`], so the steady state allocates nothing.

mod backward;
pub mod bf16;
pub mod book;
pub mod direct;
mod forward;
pub mod gathered;
mod gathered_dw;
mod geom;
mod im2col;
mod plan;
pub(crate) mod strided;
pub mod winograd;
mod winograd_bf16;
pub mod winograd_dw;
mod winograd_dw_wide;
mod winograd_input;
mod winograd_plan;
mod winograd_tile;
mod workspace;

pub use backward::{conv2d_backward, conv2d_backward_relu_input};
pub use book::{Choice, PlanBook};
pub use forward::{
    autotune_forward, conv2d_forward, conv2d_forward_max_pooled, conv2d_forward_moments,
    conv2d_forward_pooled, conv2d_forward_relu, pooled_applies,
};
pub(crate) use geom::has_avx512;
pub use geom::{out_size, ConvGeom};
pub use im2col::{col2im, im2col};
pub use plan::{ConvPlan, Path, Tuning, WeightGrad};
pub use workspace::ConvWorkspace;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::naive;
    use plan::direct_input_grad;
    use rand::{Rng, SeedableRng};
    use workspace::relu_mask;

    fn rand_vec(len: usize, rng: &mut impl Rng) -> Vec<f32> {
        (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    #[test]
    fn out_size_follows_pytorch() {
        assert_eq!(out_size(28, 3, 1, 1, 1, false), Some(28));
        assert_eq!(out_size(32, 3, 2, 1, 1, false), Some(16));
        assert_eq!(out_size(7, 3, 2, 0, 2, false), Some(2));
        assert_eq!(out_size(2, 3, 1, 0, 1, false), None);
        // ceil mode: 5 with k2 s2 -> 3 windows, the last one starting inside the input
        assert_eq!(out_size(5, 2, 2, 0, 1, true), Some(3));
        // ... but a window starting in the right padding is dropped
        assert_eq!(out_size(4, 2, 2, 1, 1, true), Some(3));
        assert_eq!(out_size(4, 3, 0, 1, 1, false), None);
    }

    /// (n, c_in, h, w, c_out, k, stride, pad, dilation, groups)
    type Case = (
        usize,
        usize,
        usize,
        usize,
        usize,
        (usize, usize),
        (usize, usize),
        (usize, usize),
        (usize, usize),
        usize,
    );

    const CASES: &[Case] = &[
        (1, 1, 5, 5, 1, (3, 3), (1, 1), (0, 0), (1, 1), 1),
        (2, 3, 7, 5, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1),
        (3, 4, 9, 8, 6, (3, 2), (2, 1), (1, 0), (1, 1), 2),
        (2, 4, 6, 6, 4, (3, 3), (1, 1), (2, 2), (2, 2), 4),
        (2, 6, 5, 7, 3, (1, 1), (1, 1), (0, 0), (1, 1), 1),
        (2, 6, 5, 7, 4, (1, 1), (2, 2), (0, 0), (1, 1), 2),
        (5, 2, 4, 4, 3, (4, 4), (1, 1), (0, 0), (1, 1), 1),
        (1, 3, 11, 3, 2, (5, 1), (3, 1), (2, 0), (1, 1), 1),
        (0, 3, 5, 5, 2, (3, 3), (1, 1), (1, 1), (1, 1), 1),
        // Shapes the direct kernel takes (stride 1, ≥ 12 output columns), forward and
        // input gradient: odd rows, c_out not a multiple of 8, no padding, 5x5, 1x1.
        (2, 3, 9, 16, 5, (3, 3), (1, 1), (1, 1), (1, 1), 1),
        (3, 2, 6, 20, 9, (3, 3), (1, 1), (0, 0), (1, 1), 1),
        (2, 4, 5, 13, 8, (5, 5), (1, 1), (2, 2), (1, 1), 1),
        (2, 2, 4, 14, 3, (1, 1), (1, 1), (0, 0), (1, 1), 1),
        (1, 16, 12, 12, 17, (3, 3), (1, 1), (1, 1), (1, 1), 1),
        // Shapes the gathered kernel takes (and, with ≥ 8 input channels, the bf16 ones):
        // 8-column maps (forward and input gradient),
        // stride 2 (3×3, a 7×7 stem), stride (2, 1) with a 3×2 kernel and a
        // one-vector tail, dilation, padding as large as the kernel.
        (3, 9, 8, 8, 11, (3, 3), (1, 1), (1, 1), (1, 1), 1),
        (2, 10, 16, 16, 9, (3, 3), (2, 2), (1, 1), (1, 1), 1),
        (1, 3, 32, 32, 8, (7, 7), (2, 2), (3, 3), (1, 1), 1),
        (2, 8, 10, 9, 6, (3, 2), (2, 1), (1, 0), (1, 1), 1),
        (2, 11, 12, 10, 4, (3, 3), (1, 1), (2, 2), (2, 2), 1),
        (1, 9, 6, 6, 3, (2, 2), (1, 1), (2, 2), (1, 1), 1),
        // Shapes the Winograd kernel takes (3×3, stride 1, ≥ 16 channels each way),
        // forward and input gradient: odd sizes, c_out not a multiple of 8, paddings 0
        // and 2 (the input gradient's padding is 2 and 0), a map narrower than a vector.
        (2, 16, 9, 11, 17, (3, 3), (1, 1), (1, 1), (1, 1), 1),
        (1, 24, 8, 8, 16, (3, 3), (1, 1), (0, 0), (1, 1), 1),
        (1, 16, 6, 5, 20, (3, 3), (1, 1), (2, 2), (1, 1), 1),
        (3, 32, 14, 14, 32, (3, 3), (1, 1), (1, 1), (1, 1), 1),
        // An image over 128 KiB (copied into the padded buffer, not read in place),
        // and its dy likewise for the input gradient.
        (1, 24, 48, 48, 16, (3, 3), (1, 1), (1, 1), (1, 1), 1),
        // ... and its weight gradient (≥ 32 output channels, more than 16 input ones):
        // three vectors of output channels, odd sizes, paddings 0 and 2.
        (2, 20, 9, 7, 40, (3, 3), (1, 1), (1, 1), (1, 1), 1),
        (1, 17, 9, 6, 33, (3, 3), (1, 1), (0, 2), (1, 1), 1),
        (2, 40, 9, 9, 64, (3, 3), (1, 1), (1, 1), (1, 1), 1),
        (2, 16, 9, 10, 16, (3, 3), (1, 1), (1, 1), (1, 1), 1),
        // A gathered buffer larger than one pass of the gathered kernel reads
        // (`chunk_positions`: 384 slabs, passes of 320 of the 400 positions).
        (2, 64, 40, 40, 9, (3, 3), (2, 2), (1, 1), (1, 1), 1),
        // Transformed weights over 1 MiB: several images per band in the forward.
        (5, 136, 13, 15, 130, (3, 3), (1, 1), (1, 1), (1, 1), 1),
        // Small planes on GEMM, several images per product (blocks cut by the chunks):
        // 2×2, a pointwise 3×3, a strided 3×3 (input gradient by phases).
        (5, 6, 2, 2, 7, (3, 3), (1, 1), (1, 1), (1, 1), 1),
        (4, 3, 3, 3, 5, (1, 1), (1, 1), (0, 0), (1, 1), 1),
        (3, 4, 5, 5, 6, (3, 3), (2, 2), (1, 1), (1, 1), 1),
        // A large layer (kg · c_out ≥ 2²⁰): up to 512 columns per product, and the
        // weight gradient as one product over the batch (also pointwise and strided).
        (3, 128, 2, 2, 1024, (3, 3), (1, 1), (1, 1), (1, 1), 1),
        (2, 1024, 3, 3, 1024, (1, 1), (1, 1), (0, 0), (1, 1), 1),
        (3, 128, 5, 6, 1024, (3, 3), (2, 2), (1, 1), (1, 1), 1),
        // Three row phases (stride 3), and dilation with stride 2.
        (1, 12, 17, 46, 3, (3, 3), (3, 3), (1, 1), (1, 1), 1),
        (1, 8, 20, 20, 4, (3, 3), (2, 2), (2, 2), (2, 2), 1),
    ];

    /// Runs every case through forward and backward and compares with the naive twin
    /// within `tol` (relative to 1 + |value|); `prep` maps every operand first. Returns
    /// how many cases the bf16 kernels took.
    fn compare_cases(prep: fn(f32) -> f32, tol: f32, prec: bf16::Precision) -> usize {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut vec =
            |len: usize| -> Vec<f32> { rand_vec(len, &mut rng).into_iter().map(prep).collect() };
        // One workspace for all cases, as a layer whose input size changes would reuse
        // it: stale buffers of another geometry must not leak into a result.
        let mut ws = ConvWorkspace::default();
        let mut bf_cases = 0;
        // The bf16 Winograd kernel rounds the *transformed* operands (sums of up to four
        // inputs, of up to nine weights) to bf16, not the operands themselves: its error
        // is a few times that of bf16 products, checked here against the output's rms
        // (its own test in `winograd` checks it against the same arithmetic, tightly).
        let winograd_bf16 = |t: &ConvGeom| {
            bf16::active_for(t, prec) && winograd::applies(t) && winograd_bf16::bf16_available()
        };
        let check = |got: &[f32], want: &[f32], what: &str, g: &ConvGeom, wino: bool| {
            if wino {
                assert_close_rms(got, want, what, g, 0.03);
            } else {
                assert_close(got, want, what, g, tol);
            }
        };
        for &(n, c_in, h, w, c_out, k, s, p, d, grp) in CASES {
            let g = ConvGeom::new(c_in, h, w, c_out, k, s, p, d, grp).unwrap();
            // bf16's tolerance holds for sums of up to a few hundred products; the large
            // layers (sums of 576 and over a thousand, or a weight gradient over 2,304
            // positions) are there for the f32 kernels' passes, batching and copies.
            if prec == bf16::Precision::Bf16 && (g.kg() > 500 || n * g.ohw() > 1000) {
                continue;
            }
            bf_cases += usize::from(bf16::active_for(&g, prec));
            let plan = ConvPlan::new(g, prec);
            let x = vec(n * c_in * h * w);
            let wt = vec(c_out * g.kg());
            let b = vec(c_out);
            let mut y = vec![0.0; n * c_out * g.ohw()];
            conv2d_forward(&plan, n, &x, &wt, Some(&b), &mut y, &mut ws).unwrap();
            let want = naive::conv2d_forward(&g, n, &x, &wt, Some(&b));
            check(&y, &want, "y", &g, winograd_bf16(&g));
            // Every other kernel that takes the geometry (what autotuning may pick).
            if prec == bf16::Precision::F32 {
                for path in Path::candidates(&g) {
                    let forced = plan.with_forward(path).unwrap();
                    let mut yp = vec![0.0; y.len()];
                    conv2d_forward(&forced, n, &x, &wt, Some(&b), &mut yp, &mut ws).unwrap();
                    check(&yp, &want, path.name(), &g, false);
                }
            }

            let dy = vec(y.len());
            let mut dx = vec![9.0; x.len()];
            let mut dw = vec![0.5; wt.len()];
            let mut db = vec![0.25; c_out];
            conv2d_backward(
                &plan,
                n,
                &x,
                &wt,
                &dy,
                Some(&mut dx),
                &mut dw,
                Some(&mut db),
                &mut ws,
            )
            .unwrap();
            let (wdx, wdw, wdb) = naive::conv2d_backward(&g, n, &x, &wt, &dy);
            let dx_wino = direct_input_grad(&g).is_some_and(|t| winograd_bf16(&t));
            check(&dx, &wdx, "dx", &g, dx_wino);
            let wdw: Vec<f32> = wdw.iter().map(|v| v + 0.5).collect();
            let wdb: Vec<f32> = wdb.iter().map(|v| v + 0.25).collect();
            assert_close(&dw, &wdw, "dw", &g, tol);
            assert_close(&db, &wdb, "db", &g, tol);
        }
        bf_cases
    }

    #[test]
    fn forward_and_backward_match_the_naive_twin() {
        assert_eq!(compare_cases(|v| v, 1e-4, bf16::Precision::F32), 0);
    }

    /// A 7×7 map whose transformed weights exceed L2 (136 channels each way): the
    /// forward takes Winograd several images per band with enough images per thread,
    /// and the per-image kernel (im2col + GEMM) with fewer — the same values either way.
    #[test]
    fn batched_winograd_forward_of_a_small_map_matches_the_naive_twin() {
        let g = ConvGeom::new(136, 7, 7, 136, (3, 3), (1, 1), (1, 1), (1, 1), 1).unwrap();
        let plan = ConvPlan::f32(g);
        if !has_avx512() {
            assert_eq!(plan.forward, Path::Gemm);
            return;
        }
        assert!(!winograd::applies(&g), "the per-image rule would take it");
        assert_eq!(plan.forward, Path::Winograd);
        let mut rng = rand::rngs::StdRng::seed_from_u64(17);
        let mut ws = ConvWorkspace::default();
        let threads = rayon::current_num_threads();
        for n in [1, winograd::MIN_BATCHED * threads + 1] {
            let x = rand_vec(n * 136 * 49, &mut rng);
            let wt = rand_vec(136 * g.kg(), &mut rng);
            let b = rand_vec(136, &mut rng);
            let mut y = vec![f32::NAN; n * 136 * 49];
            conv2d_forward(&plan, n, &x, &wt, Some(&b), &mut y, &mut ws).unwrap();
            let want = naive::conv2d_forward(&g, n, &x, &wt, Some(&b));
            assert_close(&y, &want, "y", &g, 1e-4);
        }
    }

    /// The input gradient of that 7×7 map: batched Winograd with enough images per
    /// thread (the plan names it), im2col + GEMM + col2im with fewer — equal to the naive
    /// twin either way, and its ReLU-masked form equal to masking after, bit for bit.
    #[test]
    fn batched_winograd_input_gradient_of_a_small_map_matches_the_naive_twin() {
        let g = ConvGeom::new(136, 7, 7, 136, (3, 3), (1, 1), (1, 1), (1, 1), 1).unwrap();
        let plan = ConvPlan::f32(g);
        if !has_avx512() {
            assert_eq!(plan.input_grad_name(), "gemm+col2im");
            return;
        }
        assert!(
            direct_input_grad(&g).is_none(),
            "a per-image kernel would take it"
        );
        assert_eq!(plan.input_grad_name(), "winograd");
        let mut rng = rand::rngs::StdRng::seed_from_u64(19);
        let mut ws = ConvWorkspace::default();
        let threads = rayon::current_num_threads();
        for n in [1, winograd::MIN_BATCHED * threads + 1] {
            let x = rand_vec(n * 136 * 49, &mut rng);
            let wt = rand_vec(136 * g.kg(), &mut rng);
            let dy = rand_vec(n * 136 * 49, &mut rng);
            let (mut dx, mut dw) = (vec![f32::NAN; x.len()], vec![0.0; wt.len()]);
            conv2d_backward(
                &plan,
                n,
                &x,
                &wt,
                &dy,
                Some(&mut dx),
                &mut dw,
                None,
                &mut ws,
            )
            .unwrap();
            let (want_dx, want_dw, _) = naive::conv2d_backward(&g, n, &x, &wt, &dy);
            assert_close(&dx, &want_dx, "dx", &g, 1e-4);
            assert_close(&dw, &want_dw, "dw", &g, 1e-4);
            let (mut dx2, mut dw2) = (vec![f32::NAN; x.len()], vec![0.0; wt.len()]);
            conv2d_backward_relu_input(&plan, n, &x, &wt, &dy, &mut dx2, &mut dw2, None, &mut ws)
                .unwrap();
            relu_mask(&mut dx, &x);
            assert_eq!(dx, dx2, "n = {n}");
        }
    }

    /// A 7×7 layer large enough for the batch-wide weight gradient (`kg · c_out ≥ 2²⁰`)
    /// takes it as Winograd products over the batch's tiles (the plan names it), equal
    /// to the naive twin through `conv2d_backward`.
    #[test]
    fn wide_layer_weight_gradient_runs_on_winograd_products() {
        let g = ConvGeom::new(344, 7, 7, 344, (3, 3), (1, 1), (1, 1), (1, 1), 1).unwrap();
        let plan = ConvPlan::f32(g);
        if !has_avx512() {
            assert_eq!(plan.weight_grad_name(), "gemm-batch");
            return;
        }
        assert_eq!(plan.weight_grad_name(), "winograd-batch");
        let mut rng = rand::rngs::StdRng::seed_from_u64(29);
        let n = 2;
        let x = rand_vec(n * 344 * 49, &mut rng);
        let wt = rand_vec(344 * g.kg(), &mut rng);
        let dy = rand_vec(n * 344 * 49, &mut rng);
        let mut dw = vec![0.0; wt.len()];
        let mut ws = ConvWorkspace::default();
        conv2d_backward(&plan, n, &x, &wt, &dy, None, &mut dw, None, &mut ws).unwrap();
        let (_, want_dw, _) = naive::conv2d_backward(&g, n, &x, &wt, &dy);
        assert_close(&dw, &want_dw, "dw", &g, 1e-4);
    }

    /// A forward told that its weights are those of an earlier call's key
    /// (`ConvWorkspace::same_weights`) computes with the weights packed then — shown by
    /// passing other weights under the same key; a new key, or a forward without one in
    /// between, packs the weights it is given. GEMM packs nothing and always reads them.
    #[test]
    fn a_forward_under_the_same_key_reuses_its_packed_weights() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(23);
        let mut packing = 0;
        for (c, hw, k, s, path) in [
            (16, 14, 3, 1, Path::Winograd),
            (16, 14, 3, 1, Path::Direct),
            (5, 16, 3, 2, Path::Gathered),
            (8, 6, 1, 1, Path::Gemm),
        ] {
            let g = ConvGeom::new(c, hw, hw, c, (k, k), (s, s), (k / 2, k / 2), (1, 1), 1).unwrap();
            let Some(plan) = ConvPlan::f32(g).with_forward(path) else {
                continue; // the kernel does not take it on this CPU
            };
            let n = 2;
            let x = rand_vec(n * c * hw * hw, &mut rng);
            let (w1, w2) = (
                rand_vec(c * g.kg(), &mut rng),
                rand_vec(c * g.kg(), &mut rng),
            );
            let mut ws = ConvWorkspace::default();
            let mut run = |w: &[f32], key: Option<u64>| {
                if let Some(key) = key {
                    ws.same_weights(key);
                }
                let mut y = vec![f32::NAN; n * c * g.ohw()];
                conv2d_forward(&plan, n, &x, w, None, &mut y, &mut ws).unwrap();
                y
            };
            let (y1, y2) = (run(&w1, None), run(&w2, None));
            assert_ne!(y1, y2);
            assert_eq!(run(&w1, Some(7)), y1);
            packing += usize::from(path != Path::Gemm);
            let reused = if path == Path::Gemm { &y2 } else { &y1 };
            assert_eq!(&run(&w2, Some(7)), reused, "{path:?}");
            assert_eq!(run(&w2, Some(8)), y2, "{path:?}: a new key packs");
            assert_eq!(run(&w1, None), y1);
            assert_eq!(run(&w2, Some(8)), y2, "{path:?}: a keyless forward forgets");
        }
        assert!(
            packing >= usize::from(has_avx512()) * 3,
            "{packing} packing kernels"
        );
    }

    #[test]
    fn bf16_products_of_bf16_operands_are_exact() {
        if !bf16::available() {
            return; // f32 everywhere on this CPU: the test above covers it
        }
        // Operands already in bf16: their products are exact in f32 and only the order
        // of the f32 sums differs from the twin (except on the bf16 Winograd kernel,
        // which rounds transformed operands: see `compare_cases`).
        let taken = compare_cases(bf16::round, 1e-4, bf16::Precision::Bf16);
        assert!(taken >= 8, "the bf16 kernels took only {taken} cases");
    }

    #[test]
    fn bf16_products_of_f32_operands_are_within_bf16_rounding() {
        if !bf16::available() {
            return;
        }
        // Each operand rounded to 8 significant bits: relative error ≤ 2⁻⁸ per factor,
        // so a few 1e-3 on sums of up to ~200 unit-sized products of random sign.
        compare_cases(|v| v, 5e-2, bf16::Precision::Bf16);
    }

    fn assert_close_rms(got: &[f32], want: &[f32], what: &str, g: &ConvGeom, frac: f32) {
        assert_eq!(got.len(), want.len(), "{what} length for {g:?}");
        let rms = (want.iter().map(|v| v * v).sum::<f32>() / want.len().max(1) as f32).sqrt();
        for (i, (a, b)) in got.iter().zip(want).enumerate() {
            assert!(
                (a - b).abs() <= frac * rms,
                "{what}[{i}] {a} vs {b} (rms {rms}) for {g:?}"
            );
        }
    }

    fn assert_close(got: &[f32], want: &[f32], what: &str, g: &ConvGeom, tol: f32) {
        assert_eq!(got.len(), want.len(), "{what} length for {g:?}");
        for (i, (a, b)) in got.iter().zip(want).enumerate() {
            assert!(
                (a - b).abs() <= tol * (1.0 + b.abs()),
                "{what}[{i}] {a} vs {b} for {g:?}"
            );
        }
    }

    /// The input gradient masked for a ReLU before the layer equals the plain one with
    /// the mask applied after, bit for bit, on every kernel path: direct, gathered,
    /// Winograd (one image and several per band), and GEMM with several images per
    /// product (2×2 and pointwise planes).
    #[test]
    fn relu_masked_input_gradient_equals_masking_after() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(21);
        let cases = [
            (5, 6, 2, 2, 7, 3, 1),
            (4, 3, 3, 3, 5, 1, 0),
            (3, 16, 10, 10, 16, 3, 1),
            (3, 4, 16, 16, 5, 3, 1),
            (2, 3, 8, 8, 4, 3, 1),
            // Winograd's transformed weights over 1 MiB: several images per band.
            (5, 136, 13, 15, 130, 3, 1),
        ];
        for (n, ci, h, w, co, k, p) in cases {
            let g = ConvGeom::new(ci, h, w, co, (k, k), (1, 1), (p, p), (1, 1), 1).unwrap();
            let x: Vec<f32> = rand_vec(n * ci * h * w, &mut rng);
            let wt = rand_vec(co * g.kg(), &mut rng);
            let dy = rand_vec(n * co * g.ohw(), &mut rng);
            let mut ws = ConvWorkspace::default();
            let (mut dx, mut dw) = (vec![0.0; x.len()], vec![0.0; wt.len()]);
            let plan = ConvPlan::f32(g);
            conv2d_backward(
                &plan,
                n,
                &x,
                &wt,
                &dy,
                Some(&mut dx),
                &mut dw,
                None,
                &mut ws,
            )
            .unwrap();
            relu_mask(&mut dx, &x);
            let (mut dx2, mut dw2) = (vec![0.0; x.len()], vec![0.0; wt.len()]);
            conv2d_backward_relu_input(&plan, n, &x, &wt, &dy, &mut dx2, &mut dw2, None, &mut ws)
                .unwrap();
            assert_eq!(dx, dx2, "{g:?}");
            assert_eq!(dw, dw2, "{g:?}");
        }
    }

    #[test]
    fn kernel_larger_than_padded_input_is_an_error() {
        let err = ConvGeom::new(3, 2, 2, 4, (5, 5), (1, 1), (1, 1), (1, 1), 1).unwrap_err();
        assert!(err.to_string().contains("[3, 2, 2]"), "{err}");
        assert!(ConvGeom::new(3, 8, 8, 4, (3, 3), (1, 1), (1, 1), (1, 1), 2).is_err());
    }
}

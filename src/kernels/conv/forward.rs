//! The forward pass: the public entry points and the dispatch over the kernels.

use super::bf16;
use super::direct::{self, Padded};
use super::gathered::{self, Gathered};
use super::im2col::*;
use super::plan::*;
use super::winograd;
use super::winograd_bf16;
use super::workspace::*;
use crate::error::{Error, Result};
use crate::kernels::gemm::{matmul, Accumulate, Par, Trans};
use crate::kernels::pool::{max_pool_values_serial, PoolGeom};
use crate::kernels::{chunk_count, split_ranges};
use rayon::prelude::*;

/// `y[n, c_out, oh, ow] = conv(x[n, c_in, h, w], weight[c_out, c_in/g, kh, kw]) + bias`.
pub fn conv2d_forward(
    plan: &ConvPlan,
    n: usize,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    ws: &mut ConvWorkspace,
) -> Result<()> {
    forward(plan, n, x, weight, bias, y, None, Then::default(), ws)
}

/// [`conv2d_forward`] followed by a ReLU, applied to each image's output while it is in
/// cache (in the output transform of the Winograd kernel): the eval-mode path of a
/// convolution with a folded BatchNorm + ReLU after it.
pub fn conv2d_forward_relu(
    plan: &ConvPlan,
    n: usize,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    ws: &mut ConvWorkspace,
) -> Result<()> {
    forward(plan, n, x, weight, bias, y, None, Then::relu(true), ws)
}

/// Whether [`conv2d_forward_pooled`] takes `g` now: layers the Winograd kernel computes
/// (f32, or bf16 where the CPU runs its bf16 form), with at least a 2×2 output.
pub fn pooled_applies(plan: &ConvPlan) -> bool {
    let g = &plan.geom;
    plan.forward == Path::Winograd
        && winograd::applies(g)
        && g.oh >= 2
        && g.ow >= 2
        && (!plan.bf16_forward || winograd_bf16::bf16_available())
}

/// [`conv2d_forward`], optionally a ReLU, then a 2×2 max pool with stride 2 (floor mode,
/// NaN wins), in the Winograd kernel's output transform — each 2×2 output tile is one
/// pooling window, so the full-size output is never written: the eval-mode path of
/// convolution → BatchNorm → ReLU → MaxPool2d(2). `y` is `[n, c_out, oh/2, ow/2]`.
/// An error unless [`pooled_applies`].
#[allow(clippy::too_many_arguments)]
pub fn conv2d_forward_pooled(
    plan: &ConvPlan,
    n: usize,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    y: &mut [f32],
    ws: &mut ConvWorkspace,
) -> Result<()> {
    if !pooled_applies(plan) {
        return Err(Error::config(
            "conv2d_forward_pooled",
            "geometry",
            format!("{:?} is not one the Winograd kernel computes; run the convolution and the pool apart", plan.geom),
        ));
    }
    let then = Then {
        tile_pool: true,
        ..Then::relu(relu)
    };
    forward(plan, n, x, weight, bias, y, None, then, ws)
}

/// [`conv2d_forward`], optionally a ReLU, then the max pool `pool` (any window, stride,
/// padding, dilation and rounding; `pool.h × pool.w` must be the convolution's output
/// size): the eval-mode path of convolution → BatchNorm → ReLU → MaxPool2d. Where
/// [`pooled_applies`] and the pool is 2×2 with stride 2 (no padding, floor mode), the
/// pool is the Winograd epilogue's ([`conv2d_forward_pooled`]); otherwise each image's
/// output is computed into a per-thread buffer and pooled from there while it is in
/// cache (ResNet's 7×7/2 stem and 3×3/2 pool), so the full-size output is never
/// written to `y`, which is `[n, c_out, pool.oh, pool.ow]`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_forward_max_pooled(
    plan: &ConvPlan,
    n: usize,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    relu: bool,
    pool: &PoolGeom,
    y: &mut [f32],
    ws: &mut ConvWorkspace,
) -> Result<()> {
    let g = &plan.geom;
    if (pool.h, pool.w) != (g.oh, g.ow) {
        return Err(Error::config(
            "conv2d_forward_max_pooled",
            "pool",
            format!(
                "the pool is for {}×{} inputs but the convolution's output is {}×{}",
                pool.h, pool.w, g.oh, g.ow
            ),
        ));
    }
    let tile = pool.kernel == (2, 2)
        && pool.stride == (2, 2)
        && pool.pad == (0, 0)
        && pool.dilation == (1, 1)
        && (pool.oh, pool.ow) == (g.oh / 2, g.ow / 2);
    if tile && pooled_applies(plan) {
        return conv2d_forward_pooled(plan, n, x, weight, bias, relu, y, ws);
    }
    let then = Then {
        pool: Some(pool),
        ..Then::relu(relu)
    };
    forward(plan, n, x, weight, bias, y, None, then, ws)
}

/// What [`forward`] applies to each image's output in its pass over it.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Then<'a> {
    /// A ReLU after the bias.
    relu: bool,
    /// The Winograd epilogue's 2×2 max pool (`y` is then the pooled size).
    tile_pool: bool,
    /// A max pool of each image's finished output, from a per-thread buffer.
    pool: Option<&'a PoolGeom>,
}

impl Then<'_> {
    fn relu(relu: bool) -> Self {
        Then {
            relu,
            ..Then::default()
        }
    }
}

/// [`conv2d_forward`], and the [`seg_moments`] (mean, M2) of every output plane `(n,
/// c_out)` into `moments`, computed from each image's output while it is still in
/// cache: what a normalization after this layer needs ([`super::norm::norm_stats_from`]),
/// without reading the output back from memory.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_forward_moments(
    plan: &ConvPlan,
    n: usize,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    moments: &mut [(f64, f64)],
    ws: &mut ConvWorkspace,
) -> Result<()> {
    check_len(
        "conv2d_forward",
        "moments",
        moments.len(),
        n * plan.geom.c_out,
    )?;
    forward(
        plan,
        n,
        x,
        weight,
        bias,
        y,
        Some(moments),
        Then::default(),
        ws,
    )
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    plan: &ConvPlan,
    n: usize,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    y: &mut [f32],
    moments: Option<&mut [(f64, f64)]>,
    then: Then,
    ws: &mut ConvWorkspace,
) -> Result<()> {
    let g = &plan.geom;
    let (relu, pool, post) = (then.relu, then.tile_pool, then.pool);
    // The caller's key holds for this call only.
    let key = ws.next_key.take();
    let ep_len = winograd::Epilogue {
        bias: None,
        relu,
        pool,
    };
    // One image's output as the kernel computes it, and as `y` holds it.
    let full = g.c_out * g.ohw();
    let y_img = match post {
        Some(p) => g.c_out * p.oh * p.ow,
        None => ep_len.out_len(g),
    };
    let x_img = g.c_in * g.h * g.w;
    check_len("conv2d_forward", "x", x.len(), n * x_img)?;
    check_len("conv2d_forward", "y", y.len(), n * y_img)?;
    check_len("conv2d_forward", "weight", weight.len(), g.c_out * g.kg())?;
    if let Some(b) = bias {
        check_len("conv2d_forward", "bias", b.len(), g.c_out)?;
    }
    if n == 0 || y_img == 0 {
        return Ok(());
    }
    let chunks = chunk_count(n);
    // A small map that only the batched Winograd forward takes: with few images per
    // thread, or bf16 products (whose Winograd form runs one image at a time), each
    // band would stream all the transformed weights for a few tiles — the per-image
    // forward's kernel instead.
    let path = match plan.forward {
        Path::Winograd
            if !winograd::applies(g)
                && (plan.bf16_forward || n / chunks < winograd::MIN_BATCHED) =>
        {
            Path::forward_per_image(g)
        }
        p => p,
    };
    let gd = Gathered::of(g);
    // f32 Winograd on layers whose transformed weights exceed L2: several images per
    // band (`winograd::images`).
    let wb = match path {
        Path::Winograd if !plan.bf16_forward => winograd::Plan::batch_for(g),
        _ => 1,
    };
    let wplan = winograd::Plan::batched(g, wb);
    let col_len = match path {
        Path::Winograd => wplan.work_len(g),
        Path::Direct => 0,
        Path::Gathered => gd.len(g),
        Path::Gemm if g.is_pointwise() => 0,
        Path::Gemm => g.kg() * g.groups * g.ohw(),
    };
    // Small planes on GEMM: several images per product (one image's columns, then the
    // batch's input columns and outputs).
    let gb = if path == Path::Gemm {
        gemm_images(g)
    } else {
        1
    };
    let col_len = if gb > 1 {
        g.kg() * g.ohw() + (g.kg() + g.c_out) * gb * g.ohw()
    } else {
        col_len
    };
    ws.prepare(chunks, col_len, 0);
    // Images computed at once into the buffer a pool reads (`post`).
    let pre_len = match post {
        Some(_) => full * gb.max(wb),
        None => 0,
    };
    let bf = plan.bf16_forward;
    // bf16 products of a layer the Winograd kernel takes: its bf16 form.
    let wbf = bf && path == Path::Winograd && winograd_bf16::bf16_available();
    let bf_len = gd.len(&bf16::paired_geom(g));
    let layout = if wbf {
        Some(PackLayout::WinogradBf16)
    } else if bf {
        Some(PackLayout::Bf16)
    } else if path == Path::Winograd {
        Some(PackLayout::Winograd)
    } else if path != Path::Gemm {
        Some(PackLayout::Direct)
    } else {
        None // GEMM reads the weights as they are
    };
    if let Some(layout) = layout {
        let want = key.map(|key| PackedFor {
            key,
            layout,
            geom: *g,
        });
        if want.is_none() || want != ws.packed_for {
            match layout {
                PackLayout::WinogradBf16 => {
                    winograd_bf16::pack_weights_bf16(g, weight, &mut ws.packed_bf)
                }
                PackLayout::Bf16 => bf16::pack_weights(g, weight, &mut ws.packed_bf),
                PackLayout::Winograd => winograd::pack_weights(g, weight, &mut ws.packed),
                PackLayout::Direct => direct::pack_weights(g, weight, &mut ws.packed),
            }
            ws.packed_for = want;
        }
    }
    let (packed, packed_bf) = (&ws.packed, &ws.packed_bf);
    let pd = Padded::of(g);
    let ranges = split_ranges(n, chunks);
    let (cg_out, kg, ohw) = (g.c_out / g.groups, g.kg(), g.ohw());
    // Hand each chunk of images its slice of y (and of the moments) and its buffers.
    let mut jobs = Vec::with_capacity(chunks);
    let mut rest = y;
    let mut rest_m = moments;
    for (range, buf) in ranges.iter().zip(ws.chunks.iter_mut()) {
        let (mine, tail) = rest.split_at_mut(range.len() * y_img);
        rest = tail;
        let mine_m = match rest_m.take() {
            Some(m) => {
                let (mine_m, tail_m) = m.split_at_mut(range.len() * g.c_out);
                rest_m = Some(tail_m);
                Some(mine_m)
            }
            None => None,
        };
        jobs.push((range.clone(), mine, mine_m, buf));
    }
    jobs.into_par_iter()
        .try_for_each(|(range, y_chunk, mut m_chunk, buf)| -> Result<()> {
            grown(&mut buf.pre_pool, pre_len);
            // Pools image `j` of the buffer into image `to` of this chunk's `y`.
            let pool_out = |pre: &[f32], j: usize, y_chunk: &mut [f32], to: usize| {
                if let Some(p) = post {
                    let yi = &mut y_chunk[to * y_img..(to + 1) * y_img];
                    max_pool_values_serial(p, &pre[j * full..(j + 1) * full], yi);
                }
            };
            if gb > 1 {
                // y_b[c_out, images·ohw] = w · col_b, then each image's planes out.
                let (one, rest) = buf.col[..col_len].split_at_mut(kg * ohw);
                let (colb, yb) = rest.split_at_mut(kg * gb * ohw);
                let mut i0 = 0;
                while i0 < range.len() {
                    let bn = gb.min(range.len() - i0);
                    let cols = bn * ohw;
                    for b in 0..bn {
                        let img = range.start + i0 + b;
                        let xi = &x[img * x_img..(img + 1) * x_img];
                        if g.is_pointwise() {
                            put_block(xi, ohw, b, cols, colb);
                        } else {
                            im2col(g, xi, one);
                            put_block(one, ohw, b, cols, colb);
                        }
                    }
                    let yb = &mut yb[..g.c_out * cols];
                    matmul(
                        g.c_out,
                        cols,
                        kg,
                        weight,
                        Trans::No,
                        &colb[..kg * cols],
                        Trans::No,
                        yb,
                        Accumulate::No,
                        Par::Seq,
                    )?;
                    for b in 0..bn {
                        let j = i0 + b;
                        let yi = match post {
                            Some(_) => &mut buf.pre_pool[..full],
                            None => &mut y_chunk[j * y_img..(j + 1) * y_img],
                        };
                        take_block(yb, ohw, b, cols, yi);
                        let mj = m_chunk
                            .as_deref_mut()
                            .map(|m| &mut m[j * g.c_out..(j + 1) * g.c_out]);
                        finish_image(yi, ohw, bias, relu, mj);
                        pool_out(&buf.pre_pool, 0, y_chunk, j);
                    }
                    i0 += bn;
                }
                return Ok(());
            }
            if wb > 1 {
                let mut i0 = 0;
                while i0 < range.len() {
                    let bn = wb.min(range.len() - i0);
                    let first = &x[(range.start + i0) * x_img..];
                    let xs = winograd_source(&mut buf.pad, &mut buf.pad_for, g, &wplan, first, bn);
                    let ep = winograd::Epilogue { bias, relu, pool };
                    let (yb, stride) = match post {
                        Some(_) => (&mut buf.pre_pool[..bn * full], full),
                        None => (&mut y_chunk[i0 * y_img..(i0 + bn) * y_img], y_img),
                    };
                    winograd::images(g, &wplan, bn, xs, packed, ep, yb, &mut buf.col[..col_len]);
                    for j in 0..bn {
                        let yi = &mut yb[j * stride..(j + 1) * stride];
                        let mj = m_chunk
                            .as_deref_mut()
                            .map(|m| &mut m[(i0 + j) * g.c_out..(i0 + j + 1) * g.c_out]);
                        finish_image(yi, ohw, None, false, mj);
                    }
                    for j in 0..bn {
                        pool_out(&buf.pre_pool, j, y_chunk, i0 + j);
                    }
                    i0 += bn;
                }
                return Ok(());
            }
            for (i, img) in range.enumerate() {
                let xi = &x[img * x_img..(img + 1) * x_img];
                let yi = match post {
                    Some(_) => &mut buf.pre_pool[..full],
                    None => &mut y_chunk[i * y_img..(i + 1) * y_img],
                };
                // Whether the kernel applied the ReLU itself; the bias left to add (GEMM).
                let mut relu_done = false;
                let mut gemm_bias = None;
                'image: {
                    if wbf {
                        let len = wplan.pad_len(g);
                        let p = padded(&mut buf.pad, &mut buf.pad_for, g, path, len);
                        direct::pad_image(g, wplan.padded(), xi, p);
                        let q = grown(&mut buf.pairs, wplan.pairs_len(g));
                        let work = &mut buf.col[..col_len];
                        let ep = winograd::Epilogue { bias, relu, pool };
                        winograd_bf16::image_bf16(g, &wplan, p, packed_bf, ep, yi, q, work);
                        relu_done = true;
                        break 'image;
                    }
                    if bf {
                        let q = grown(&mut buf.pairs, bf_len);
                        bf16::gather_pairs(g, gd, xi, &mut buf.conv_pairs, q);
                        bf16::image(g, gd, q, packed_bf, bias, yi);
                        break 'image;
                    }
                    match path {
                        Path::Winograd => {
                            let (pad, pad_for) = (&mut buf.pad, &mut buf.pad_for);
                            let src = winograd_source(pad, pad_for, g, &wplan, xi, 1);
                            let work = &mut buf.col[..col_len];
                            let ep = winograd::Epilogue { bias, relu, pool };
                            winograd::image(g, &wplan, src, packed, ep, yi, work);
                            relu_done = true;
                            break 'image;
                        }
                        Path::Direct => {
                            let p = padded(&mut buf.pad, &mut buf.pad_for, g, path, pd.len(g));
                            direct::pad_image(g, pd, xi, p);
                            direct::image(g, pd, p, packed, bias, yi);
                            break 'image;
                        }
                        Path::Gathered => {
                            let q = &mut buf.col[..col_len];
                            gathered::gather_f32(g, gd, xi, &mut buf.conv_pairs, q);
                            gathered::image(g, gd, q, packed, bias, yi);
                            break 'image;
                        }
                        Path::Gemm => {}
                    }
                    let col: &[f32] = if g.is_pointwise() {
                        xi
                    } else {
                        im2col(g, xi, &mut buf.col[..col_len]);
                        &buf.col[..col_len]
                    };
                    for grp in 0..g.groups {
                        matmul(
                            cg_out,
                            ohw,
                            kg,
                            &weight[grp * cg_out * kg..(grp + 1) * cg_out * kg],
                            Trans::No,
                            &col[grp * kg * ohw..(grp + 1) * kg * ohw],
                            Trans::No,
                            &mut yi[grp * cg_out * ohw..(grp + 1) * cg_out * ohw],
                            Accumulate::No,
                            Par::Seq,
                        )?;
                    }
                    gemm_bias = bias;
                }
                let mi = m_chunk
                    .as_deref_mut()
                    .map(|m| &mut m[i * g.c_out..(i + 1) * g.c_out]);
                finish_image(yi, ohw, gemm_bias, relu && !relu_done, mi);
                pool_out(&buf.pre_pool, 0, y_chunk, i);
            }
            Ok(())
        })
}

/// How much faster than the best f32 plan a bf16 plan must time to be chosen.
const BF16_MARGIN: f64 = 1.05;

/// Timed runs of each candidate in [`autotune_forward`] (taken in turns, the best kept).
const TUNING_ROUNDS: usize = 3;

/// Times the forward of every f32 candidate path of `plan`'s geometry on this batch (one
/// untimed run to size the buffers, then the best of three, the candidates timed in
/// turns) and returns the plan with the
/// fastest. Under bf16 the bf16 plan is one more candidate, judged on its whole training
/// step when `step` (the forward and the backward — input and weight gradient — of the
/// bf16 plan against those of the fastest f32 one; the forward alone for inference);
/// when f32 wins, the layer falls back to f32
/// products in every pass, so that `--precision bf16` with timing is not slower than f32
/// on a layer where bf16 does not pay (the 1- and 3-channel first layers, thin layers,
/// CPUs whose bf16 units are slow). The candidates compute the same convolution; their
/// results differ in rounding only.
#[allow(clippy::too_many_arguments)]
pub fn autotune_forward(
    plan: &ConvPlan,
    n: usize,
    x: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    step: bool,
    ws: &mut ConvWorkspace,
) -> Result<ConvPlan> {
    let candidates = Path::candidates(&plan.geom);
    if (candidates.len() < 2 && !plan.bf16_forward) || n == 0 {
        return Ok(*plan);
    }
    let g = &plan.geom;
    let mut y = vec![0.0f32; n * g.c_out * g.ohw()];
    let timed = |f: &mut dyn FnMut() -> Result<()>| -> Result<f64> {
        let start = std::time::Instant::now();
        f()?;
        Ok(start.elapsed().as_secs_f64())
    };
    let f32_plan = ConvPlan {
        bf16_forward: false,
        bf16_weight_grad: false,
        bf16_input_grad: false,
        ..*plan
    };
    let plans: Vec<ConvPlan> = candidates
        .into_iter()
        .filter_map(|path| f32_plan.with_forward(path))
        .collect();
    // One untimed run each (it sizes the buffers), then rounds that time every
    // candidate once in turn, keeping each one's best: a drift of the machine's speed
    // during the tuning (this project's machines move 20–40% within minutes) then hits
    // all candidates alike instead of whichever was timed in the slow stretch.
    let mut best_t = vec![f64::INFINITY; plans.len()];
    for p in &plans {
        forward(p, n, x, weight, bias, &mut y, None, Then::default(), ws)?;
    }
    for _ in 0..TUNING_ROUNDS {
        for (p, bt) in plans.iter().zip(best_t.iter_mut()) {
            let t =
                timed(&mut || forward(p, n, x, weight, bias, &mut y, None, Then::default(), ws))?;
            *bt = bt.min(t);
        }
    }
    let mut best: Option<(f64, ConvPlan)> = None;
    for (p, &t) in plans.iter().zip(&best_t) {
        if best.as_ref().is_none_or(|(bt, _)| t < *bt) {
            best = Some((t, *p));
        }
    }
    let Some((_, best_f32)) = best else {
        return Ok(*plan);
    };
    if !plan.bf16_forward {
        return Ok(ConvPlan {
            tuned: true,
            ..best_f32
        });
    }
    // bf16 against the fastest f32 plan, forward + backward (the f32 candidates share
    // their backward kernels, so it decides nothing among them), in turns as above.
    let mut dx = vec![0.0f32; x.len()];
    let mut dw = vec![0.0f32; weight.len()];
    let mut once = |p: &ConvPlan, y: &mut Vec<f32>| -> Result<f64> {
        let fwd = timed(&mut || forward(p, n, x, weight, bias, y, None, Then::default(), ws))?;
        if !step {
            return Ok(fwd);
        }
        let dy = y.clone();
        let bwd = timed(&mut || {
            super::backward::conv2d_backward(p, n, x, weight, &dy, Some(&mut dx), &mut dw, None, ws)
        })?;
        Ok(fwd + bwd)
    };
    once(plan, &mut y)?;
    once(&best_f32, &mut y)?;
    let (mut t_bf16, mut t_f32) = (f64::INFINITY, f64::INFINITY);
    for _ in 0..TUNING_ROUNDS {
        t_bf16 = t_bf16.min(once(plan, &mut y)?);
        t_f32 = t_f32.min(once(&best_f32, &mut y)?);
    }
    // f32 is the safe side: bf16 must win by more than the timing's noise (a few
    // percent on a busy machine), or a layer would flip to bf16 on a lucky run.
    let chosen = if t_bf16 * BF16_MARGIN < t_f32 {
        *plan
    } else {
        best_f32
    };
    Ok(ConvPlan {
        tuned: true,
        ..chosen
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::bf16::Precision;
    use crate::kernels::conv::ConvGeom;
    use crate::kernels::pool::max_pool_forward_values;
    use rand::{Rng, SeedableRng};

    /// The pooled forward gives, bit for bit, the forward with its ReLU and then the
    /// pool — for every kernel that takes the geometry (per image, several images per
    /// GEMM on a small plane, several per Winograd band for wide layers), for pools
    /// the Winograd epilogue applies and those applied per image (padding, ceil mode,
    /// dilation, a stride the vector kernel does not take), f32 and bf16 plans.
    #[test]
    fn max_pooled_forward_equals_the_forward_then_the_pool() {
        // Two threads on any machine: the 9-image layer then runs bands of several
        // images (at least `winograd::MIN_BATCHED` a thread).
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(max_pooled_cases);
    }

    fn max_pooled_cases() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(41);
        let pools = [
            ((3, 3), (2, 2), (1, 1), (1, 1), false),
            ((2, 2), (2, 2), (0, 0), (1, 1), false),
            ((2, 2), (2, 2), (0, 0), (1, 1), true),
            ((3, 3), (1, 1), (1, 1), (2, 2), false),
            ((3, 3), (3, 3), (0, 0), (1, 1), true),
        ];
        // (n, c_in, size, c_out, k, stride, pad)
        let convs = [
            (3, 3, 23, 8, 7, 2, 3),   // a stem: gathered, GEMM, direct
            (2, 16, 12, 24, 3, 1, 1), // Winograd (tile pool), direct, GEMM
            (5, 8, 6, 8, 3, 1, 1),    // GEMM on several images at once
            (9, 96, 8, 192, 3, 1, 1), // Winograd bands of several images
        ];
        for &(n, c_in, size, c_out, k, s, p) in &convs {
            let g =
                ConvGeom::new(c_in, size, size, c_out, (k, k), (s, s), (p, p), (1, 1), 1).unwrap();
            let mut v = |len: usize| -> Vec<f32> {
                (0..len).map(|_| rng.random_range(-1.0f32..1.0)).collect()
            };
            let (x, w, b) = (v(n * g.c_in * g.h * g.w), v(c_out * g.kg()), v(c_out));
            for &(kernel, stride, pad, dil, ceil) in &pools {
                let pg = PoolGeom::new("t", (g.oh, g.ow), kernel, stride, pad, dil, ceil);
                let Ok(pg) = pg else { continue };
                let mut plans: Vec<ConvPlan> = Path::candidates(&g)
                    .into_iter()
                    .filter_map(|path| ConvPlan::f32(g).with_forward(path))
                    .collect();
                plans.push(ConvPlan::new(g, Precision::Bf16));
                for plan in plans {
                    let (mut ws, mut ws2) = (ConvWorkspace::default(), ConvWorkspace::default());
                    for relu in [true, false] {
                        let mut full = vec![0.0; n * c_out * g.ohw()];
                        let conv = if relu {
                            conv2d_forward_relu
                        } else {
                            conv2d_forward
                        };
                        conv(&plan, n, &x, &w, Some(&b), &mut full, &mut ws).unwrap();
                        assert_eq!(full.contains(&0.0), relu, "the ReLU clips something");
                        let mut want = vec![0.0; n * c_out * pg.oh * pg.ow];
                        max_pool_forward_values(&pg, &full, &mut want);
                        let mut got = vec![f32::NAN; want.len()];
                        conv2d_forward_max_pooled(
                            &plan,
                            n,
                            &x,
                            &w,
                            Some(&b),
                            relu,
                            &pg,
                            &mut got,
                            &mut ws2,
                        )
                        .unwrap();
                        let what = format!("{:?} {:?} {:?} relu {relu}", g, plan.forward, pg);
                        assert!(
                            got.iter()
                                .zip(&want)
                                .all(|(a, b)| a.to_bits() == b.to_bits()),
                            "{what}"
                        );
                    }
                }
            }
        }
    }

    /// A pool for another size than the convolution's output is an error, not a
    /// wrong read.
    #[test]
    fn max_pooled_forward_rejects_a_pool_of_another_size() {
        let g = ConvGeom::new(2, 8, 8, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1).unwrap();
        let pg = PoolGeom::new("t", (6, 6), (2, 2), (2, 2), (0, 0), (1, 1), false).unwrap();
        let (x, w) = (vec![0.5; 2 * 64], vec![0.1; 4 * 18]);
        let mut y = vec![0.0; 4 * 9];
        let mut ws = ConvWorkspace::default();
        let plan = ConvPlan::f32(g);
        let r = conv2d_forward_max_pooled(&plan, 1, &x, &w, None, true, &pg, &mut y, &mut ws);
        assert!(r.is_err());
    }
}

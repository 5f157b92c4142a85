//! The backward pass: input and weight gradients, dispatched over the kernels.

use super::bf16;
use super::direct::{self, Padded};
use super::gathered::{self, Gathered};
use super::gathered_dw;
use super::geom::*;
use super::im2col::*;
use super::plan::*;
use super::strided;
use super::winograd;
use super::winograd_bf16;
use super::winograd_dw;
use super::winograd_dw_wide;
use super::workspace::*;
use crate::error::Result;
use crate::kernels::gemm::{matmul, Accumulate, Par, Trans};
use crate::kernels::{chunk_count, split_ranges};
use crate::tensor::Tensor;
use rayon::prelude::*;

/// Gradients of [`conv2d_forward`]: `dx` is overwritten (if asked for), `dweight` and
/// `dbias` are accumulated into (`+=`).
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward(
    plan: &ConvPlan,
    n: usize,
    x: &[f32],
    weight: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dweight: &mut [f32],
    dbias: Option<&mut [f32]>,
    ws: &mut ConvWorkspace,
) -> Result<()> {
    backward(plan, n, x, weight, dy, dx, dweight, dbias, false, ws)
}

/// [`conv2d_backward`] for an input that is a ReLU's output: `dx` is zero where `x` is
/// not positive — the ReLU's backward, applied to each image's `dx` while it is still in
/// cache (what `eltwise::relu_backward_from_output` would compute from `dx`, bit for
/// bit), so the ReLU's own pass can be skipped.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_backward_relu_input(
    plan: &ConvPlan,
    n: usize,
    x: &[f32],
    weight: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    dweight: &mut [f32],
    dbias: Option<&mut [f32]>,
    ws: &mut ConvWorkspace,
) -> Result<()> {
    backward(plan, n, x, weight, dy, Some(dx), dweight, dbias, true, ws)
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn backward(
    plan: &ConvPlan,
    n: usize,
    x: &[f32],
    weight: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dweight: &mut [f32],
    dbias: Option<&mut [f32]>,
    mask_by_input: bool,
    ws: &mut ConvWorkspace,
) -> Result<()> {
    let g = &plan.geom;
    let (x_img, y_img) = (g.c_in * g.h * g.w, g.c_out * g.ohw());
    let w_len = g.c_out * g.kg();
    check_len("conv2d_backward", "x", x.len(), n * x_img)?;
    check_len("conv2d_backward", "dy", dy.len(), n * y_img)?;
    check_len("conv2d_backward", "weight", weight.len(), w_len)?;
    check_len("conv2d_backward", "dweight", dweight.len(), w_len)?;
    let (cg_out, kg, ohw) = (g.c_out / g.groups, g.kg(), g.ohw());
    if let Some(db) = dbias {
        check_len("conv2d_backward", "dbias", db.len(), g.c_out)?;
        db.par_iter_mut().enumerate().for_each(|(c, d)| {
            let mut s = 0.0f64;
            for img in 0..n {
                let start = img * y_img + c * ohw;
                s += dy[start..start + ohw]
                    .iter()
                    .map(|&v| v as f64)
                    .sum::<f64>();
            }
            *d += s as f32;
        });
    }
    let mut dx = dx;
    // The input gradient as a direct convolution of dy, where the kernel takes it.
    let dgeom = dx.as_ref().and_then(|_| direct_input_grad(g));
    // ... or as batched Winograd over each chunk's images (f32; with enough images per
    // thread, as the forward): `wdx` is its geometry as a convolution of dy.
    let enough = n >= winograd::MIN_BATCHED * chunk_count(n);
    let wdx = match (&dx, &dgeom) {
        (Some(_), None) if enough && !plan.bf16_input_grad => batched_winograd_input_grad(g),
        _ => None,
    };
    // A strided layer's input gradient phase by phase on the gathered kernels
    // ([`strided`]), where AVX-512 runs them.
    let phases = match (&dx, &dgeom) {
        (Some(_), None) if super::geom::has_avx512() && !large_layer(g) && wdx.is_none() => {
            strided::phases(g, weight)
        }
        _ => None,
    };
    if let Some(d) = dx.as_deref_mut() {
        check_len("conv2d_backward", "dx", d.len(), n * x_img)?;
        if dgeom.is_none() && phases.is_none() && wdx.is_none() {
            d.iter_mut().for_each(|v| *v = 0.0);
        }
    }
    if n == 0 || y_img == 0 {
        return Ok(());
    }
    let chunks = chunk_count(n);
    let col_len = g.kg() * g.groups * ohw;
    // The input gradient's kernel, and its gathered buffer (in `col`, after the
    // weight gradient is done with it) when it is the gathered one.
    let dpath = dgeom.as_ref().map_or(Path::Gemm, Path::of);
    let gdt = dgeom.as_ref().map(Gathered::of);
    let gdt_len = match (&dgeom, gdt) {
        (Some(gt), Some(gd)) if dpath == Path::Gathered => gd.len(gt),
        (Some(gt), _) if dpath == Path::Winograd => winograd::Plan::of(gt).work_len(gt),
        _ => 0,
    };
    // bf16 products: the weight gradient (transposed accumulator in `dw`), and the
    // input gradient of a stride-1 layer.
    let bf_dw = plan.bf16_weight_grad;
    let bf_dx = plan.bf16_input_grad
        && dgeom
            .as_ref()
            .is_some_and(|t| bf16::active_for(t, plan.precision));
    let wbf_dx = bf_dx && dpath == Path::Winograd && winograd_bf16::bf16_available();
    let gd = Gathered::of(g);
    // The weight gradient's kernel ([`ConvPlan::weight_grad`]). The direct one
    // accumulates in the natural layout; Winograd's `dU` follows it in `dw`.
    let wk = plan.weight_grad();
    let wino_dw = wk == WeightGrad::Winograd;
    let direct_dw = wk == WeightGrad::Direct;
    let gath_dw = wk == WeightGrad::Gathered;
    let dw_len = if bf_dw {
        w_len.max(bf16::wgrad_acc_len(g))
    } else if gath_dw {
        w_len.max(gathered_dw::acc_len(g))
    } else if wino_dw {
        w_len + winograd_dw::wgrad_acc_len(g)
    } else {
        w_len
    };
    let wino_work = if wino_dw {
        winograd_dw::wgrad_work_len(g)
    } else {
        0
    };
    // A GEMM weight gradient of a small plane: several images per product (their
    // columns and dy side by side, after the per-image buffers in `col`).
    let gemm_dw = !direct_dw && !bf_dw && !wino_dw && !gath_dw;
    let gbw = if gemm_dw { gemm_images(g) } else { 1 };
    // A large layer's GEMM weight gradient (`kg·c_out ≥ 2²⁰`, the 7×7 maps of 512
    // channels of ImageNet ResNets) as one product over the whole batch after the
    // chunks ([`wide_weight_grad`]), the GEMM splitting the output between the threads:
    // per chunk, the product reduced over that chunk's images only and each thread
    // kept a 9 MiB partial sum to add up.
    let wide_dw = gemm_dw && g.groups == 1 && large_layer(g);
    let chunk_dw = gemm_dw && !wide_dw;
    // The batch-wide weight gradient writes `dweight` itself: no per-chunk accumulator
    // (9 MiB a chunk on the 7×7 × 512 layers, zeroed every call before).
    let dw_len = if wide_dw { 0 } else { dw_len };
    // ... and its input gradient too, when that is GEMM + col2im (`dcol` of the block
    // after the columns and dy).
    let batch_dx = gbw > 1 && dx.is_some() && dgeom.is_none() && phases.is_none() && wdx.is_none();
    let batch_len = if gbw > 1 {
        (kg + g.c_out + if batch_dx { kg } else { 0 }) * gbw * ohw
    } else {
        0
    };
    let gath_len = if gath_dw { gd.len(g) } else { 0 };
    // The batched Winograd input gradient: images per band, its plan and work buffer.
    let wdx_b = wdx.as_ref().map_or(1, winograd::Plan::batch_for);
    let wdx_plan = wdx.as_ref().map(|t| (t, winograd::Plan::batched(t, wdx_b)));
    let wdx_work = wdx_plan.map_or(0, |(t, p)| p.work_len(t));
    ws.prepare(
        chunks,
        col_len
            .max(gdt_len)
            .max(wino_work)
            .max(gath_len)
            .max(wdx_work),
        dw_len,
    );
    let ranges = split_ranges(n, chunks);
    let pointwise = g.is_pointwise();
    let pd = Padded::of(g);
    if let Some(gt) = &dgeom {
        if wbf_dx {
            winograd_bf16::pack_weights_bf16(gt, &flip_transpose(g, weight), &mut ws.packed_bf_t);
        } else if bf_dx {
            bf16::pack_weights(gt, &flip_transpose(g, weight), &mut ws.packed_bf_t);
        } else if dpath == Path::Winograd {
            winograd::pack_input_grad_weights(gt, weight, &mut ws.packed_t);
        } else {
            direct::pack_weights(gt, &flip_transpose(g, weight), &mut ws.packed_t);
        }
    } else if let Some(t) = &wdx {
        winograd::pack_input_grad_weights(t, weight, &mut ws.packed_t);
    }
    // Each phase's weights, packed for the bf16 kernel (enough channels of dy to pair)
    // or the f32 one.
    let phase_bf = |pg: &ConvGeom| {
        plan.bf16_input_grad
            && plan.precision == bf16::Precision::Bf16
            && pg.c_in >= 8
            && bf16::available()
    };
    let phase_packs: Vec<Packed> = phases
        .iter()
        .flatten()
        .map(|ph| match &ph.conv {
            Some((pg, pw)) if phase_bf(pg) => {
                let mut v = Vec::new();
                bf16::pack_weights(pg, pw, &mut v);
                Packed::Bf16(v)
            }
            Some((pg, pw)) => {
                let mut v = Vec::new();
                direct::pack_weights(pg, pw, &mut v);
                Packed::F32(v)
            }
            None => Packed::F32(Vec::new()),
        })
        .collect();
    let (packed_t, packed_bf_t) = (&ws.packed_t, &ws.packed_bf_t);
    let mut jobs = Vec::with_capacity(chunks);
    let mut rest = dx;
    for (range, buf) in ranges.iter().zip(ws.chunks.iter_mut()) {
        let mine = match rest.take() {
            Some(r) => {
                let (mine, tail) = r.split_at_mut(range.len() * x_img);
                rest = Some(tail);
                Some(mine)
            }
            None => None,
        };
        jobs.push((range.clone(), mine, buf));
    }
    jobs.into_par_iter()
        .try_for_each(|(range, mut dx_chunk, buf)| -> Result<()> {
            let ChunkBuf {
                col,
                dw,
                pad,
                pad_for,
                pad_dy,
                pad_dy_for,
                pad_cl,
                pad_cl_for,
                pairs,
                plain,
                dy_pairs,
                conv_pairs,
                phase_out,
                batch,
                pre_pool: _,
            } = buf;
            dw[..dw_len].iter_mut().for_each(|v| *v = 0.0);
            let (images, first) = (range.len(), range.start);
            for (i, img) in range.enumerate() {
                let xi = &x[img * x_img..(img + 1) * x_img];
                let dyi = &dy[img * y_img..(img + 1) * y_img];
                if bf_dw {
                    let q = grown(plain, bf16::wgrad_input_len(g, gd));
                    bf16::gather_plain(g, gd, xi, conv_pairs, q);
                    let d = grown(dy_pairs, bf16::wgrad_dy_len(g));
                    bf16::pair_dy(g, dyi, conv_pairs, d);
                    bf16::weight_grad(g, gd, q, d, &mut dw[..dw_len]);
                } else if gath_dw {
                    // (the gathered image in `col`: the input gradient's phases
                    // gather into it after this)
                    let q = &mut col[..gath_len];
                    gathered::gather_f32(g, gd, xi, conv_pairs, q);
                    let dyt = grown(batch, gathered_dw::dy_len(g));
                    gathered_dw::weight_grad_image(g, gd, q, dyi, dyt, &mut dw[..dw_len]);
                } else if direct_dw {
                    let p = padded(pad, pad_for, g, Path::Direct, pd.len(g));
                    direct::pad_image(g, pd, xi, p);
                    direct::weight_grad(g, pd, p, dyi, &mut dw[..w_len]);
                } else if wino_dw {
                    let len = winograd_dw::wgrad_pad_len(g);
                    if *pad_cl_for != Some(*g) {
                        pad_cl.clear();
                        pad_cl.resize(len, 0.0);
                        *pad_cl_for = Some(*g);
                    }
                    let acc = &mut dw[w_len..dw_len];
                    let work = &mut col[..wino_work];
                    winograd_dw::weight_grad_image(g, xi, dyi, acc, &mut pad_cl[..len], work);
                }
                // dw_gᵀ[kg, cg_out] += col_g · dy_gᵀ. The transposed product keeps the
                // long dimension (kg) in the GEMM's rows: 2–6× faster than dy_g · col_gᵀ
                // when cg_out is small (docs/conv.md).
                if gbw > 1 {
                    // Image i's columns and dy into slot b of its block; the block's
                    // product when it is full.
                    let i0 = i / gbw * gbw;
                    let (bn, b) = (gbw.min(images - i0), i - i0);
                    let cols = bn * ohw;
                    let batch = grown(batch, batch_len);
                    let (colb, rest) = batch.split_at_mut(kg * gbw * ohw);
                    let (dyb, dcolb) = rest.split_at_mut(g.c_out * gbw * ohw);
                    if wide_dw {
                        // (the weight gradient comes after the chunks)
                    } else if pointwise {
                        put_block(xi, ohw, b, cols, colb);
                    } else {
                        im2col(g, xi, &mut col[..col_len]);
                        put_block(&col[..col_len], ohw, b, cols, colb);
                    }
                    if batch_dx || !wide_dw {
                        put_block(dyi, ohw, b, cols, dyb);
                    }
                    if b + 1 == bn && !wide_dw {
                        matmul(
                            kg,
                            g.c_out,
                            cols,
                            &colb[..kg * cols],
                            Trans::No,
                            &dyb[..g.c_out * cols],
                            Trans::Yes,
                            &mut dw[..w_len],
                            Accumulate::Yes,
                            Par::Seq,
                        )?;
                    }
                    // dcol_b = wᵀ · dy_b, then each image's dx = col2im(its columns),
                    // masked for a ReLU before this layer.
                    if let (true, true, Some(dxc)) =
                        (batch_dx, b + 1 == bn, dx_chunk.as_deref_mut())
                    {
                        let dcolb = &mut dcolb[..kg * cols];
                        matmul(
                            kg,
                            cols,
                            g.c_out,
                            weight,
                            Trans::Yes,
                            &dyb[..g.c_out * cols],
                            Trans::No,
                            dcolb,
                            Accumulate::No,
                            Par::Seq,
                        )?;
                        for bb in 0..bn {
                            let j = i0 + bb;
                            let dxj = &mut dxc[j * x_img..(j + 1) * x_img];
                            if pointwise {
                                take_block(dcolb, ohw, bb, cols, dxj);
                            } else {
                                take_block(dcolb, ohw, bb, cols, &mut col[..col_len]);
                                col2im(g, &col[..col_len], dxj);
                            }
                            if mask_by_input {
                                let xj = &x[(first + j) * x_img..(first + j + 1) * x_img];
                                relu_mask(dxj, xj);
                            }
                        }
                    }
                }
                let col_ref: &[f32] = if pointwise || gbw > 1 {
                    xi
                } else if direct_dw || bf_dw || wino_dw || wide_dw || gath_dw {
                    &[]
                } else {
                    im2col(g, xi, &mut col[..col_len]);
                    &col[..col_len]
                };
                for grp in (0..g.groups).filter(|_| chunk_dw && gbw == 1) {
                    matmul(
                        kg,
                        cg_out,
                        ohw,
                        &col_ref[grp * kg * ohw..(grp + 1) * kg * ohw],
                        Trans::No,
                        &dyi[grp * cg_out * ohw..(grp + 1) * cg_out * ohw],
                        Trans::Yes,
                        &mut dw[grp * cg_out * kg..(grp + 1) * cg_out * kg],
                        Accumulate::Yes,
                        Par::Seq,
                    )?;
                }
                'dx: {
                    if let (Some(dxc), Some(phs)) = (dx_chunk.as_deref_mut(), &phases) {
                        let dxi = &mut dxc[i * x_img..(i + 1) * x_img];
                        // The column phase whose gathered dy is in the buffer: the
                        // phases of one `b` share it (same padding and kernel width).
                        let mut have: Option<(usize, bool)> = None;
                        for (ph, pack) in phs.iter().zip(&phase_packs) {
                            let Some((pg, _)) = &ph.conv else {
                                strided::scatter(g, ph, &[], dxi);
                                continue;
                            };
                            let pgd = Gathered::of(pg);
                            let out = grown(phase_out, pg.c_out * pg.ohw());
                            let fresh = have != Some((ph.b, matches!(pack, Packed::Bf16(_))));
                            match pack {
                                Packed::Bf16(wp) => {
                                    let q = grown(pairs, pgd.len(&bf16::paired_geom(pg)));
                                    if fresh {
                                        bf16::gather_pairs(pg, pgd, dyi, conv_pairs, q);
                                    }
                                    bf16::image(pg, pgd, q, wp, None, out);
                                    have = Some((ph.b, true));
                                }
                                Packed::F32(wp) => {
                                    let q = grown(col, pgd.len(pg));
                                    if fresh {
                                        gathered::gather_f32(pg, pgd, dyi, conv_pairs, q);
                                    }
                                    gathered::image(pg, pgd, q, wp, None, out);
                                    have = Some((ph.b, false));
                                }
                            }
                            strided::scatter(g, ph, out, dxi);
                        }
                        break 'dx;
                    }
                    // dx as a direct convolution of dy with the flipped, transposed weights
                    if let (Some(dxc), Some(gt), Some(gd)) = (dx_chunk.as_deref_mut(), &dgeom, gdt)
                    {
                        let dxi = &mut dxc[i * x_img..(i + 1) * x_img];
                        if wbf_dx {
                            let plan = winograd::Plan::of(gt);
                            let p = padded(pad_dy, pad_dy_for, gt, dpath, plan.pad_len(gt));
                            direct::pad_image(gt, plan.padded(), dyi, p);
                            let q = grown(pairs, plan.pairs_len(gt));
                            let work = &mut col[..gdt_len];
                            let ep = winograd::Epilogue::default();
                            winograd_bf16::image_bf16(gt, &plan, p, packed_bf_t, ep, dxi, q, work);
                            break 'dx;
                        }
                        if bf_dx {
                            let q = grown(pairs, gd.len(&bf16::paired_geom(gt)));
                            bf16::gather_pairs(gt, gd, dyi, conv_pairs, q);
                            bf16::image(gt, gd, q, packed_bf_t, None, dxi);
                            break 'dx;
                        }
                        if dpath == Path::Gathered {
                            let q = &mut col[..gdt_len];
                            gathered::gather_f32(gt, gd, dyi, conv_pairs, q);
                            gathered::image(gt, gd, q, packed_t, None, dxi);
                            break 'dx;
                        }
                        if dpath == Path::Winograd {
                            let plan = winograd::Plan::of(gt);
                            let src = winograd_source(pad_dy, pad_dy_for, gt, &plan, dyi, 1);
                            let work = &mut col[..gdt_len];
                            let ep = winograd::Epilogue::default();
                            winograd::image(gt, &plan, src, packed_t, ep, dxi, work);
                            break 'dx;
                        }
                        let pdt = Padded::of(gt);
                        let p = padded(pad_dy, pad_dy_for, gt, dpath, pdt.len(gt));
                        direct::pad_image(gt, pdt, dyi, p);
                        direct::image(gt, pdt, p, packed_t, None, dxi);
                        break 'dx;
                    }
                    // dcol_g = w_gᵀ · dy_g, then dx = col2im(dcol)
                    if batch_dx || wdx.is_some() {
                        break 'dx; // at the end of the image's block, above; or below
                    }
                    if let Some(dxc) = dx_chunk.as_deref_mut() {
                        let dxi = &mut dxc[i * x_img..(i + 1) * x_img];
                        let dcol: &mut [f32] = if pointwise { dxi } else { &mut col[..col_len] };
                        for grp in 0..g.groups {
                            matmul(
                                kg,
                                ohw,
                                cg_out,
                                &weight[grp * cg_out * kg..(grp + 1) * cg_out * kg],
                                Trans::Yes,
                                &dyi[grp * cg_out * ohw..(grp + 1) * cg_out * ohw],
                                Trans::No,
                                &mut dcol[grp * kg * ohw..(grp + 1) * kg * ohw],
                                Accumulate::No,
                                Par::Seq,
                            )?;
                        }
                        if !pointwise {
                            col2im(g, &col[..col_len], dxi);
                        }
                    }
                }
                // The ReLU before this layer, masked here while dx is in cache.
                if let (true, false, Some(dxc)) = (
                    mask_by_input,
                    batch_dx || wdx.is_some(),
                    dx_chunk.as_deref_mut(),
                ) {
                    relu_mask(&mut dxc[i * x_img..(i + 1) * x_img], xi);
                }
            }
            // The batched Winograd input gradient, `wdx_b` images per band.
            if let (Some((t, wplan)), Some(dxc)) = (wdx_plan, dx_chunk.as_deref_mut()) {
                let mut i0 = 0;
                while i0 < images {
                    let bn = wdx_b.min(images - i0);
                    let dys = &dy[(first + i0) * y_img..];
                    let src = winograd_source(pad_dy, pad_dy_for, t, &wplan, dys, bn);
                    let ep = winograd::Epilogue::default();
                    let out = &mut dxc[i0 * x_img..(i0 + bn) * x_img];
                    winograd::images(t, &wplan, bn, src, packed_t, ep, out, &mut col[..wdx_work]);
                    for j in (i0..i0 + bn).filter(|_| mask_by_input) {
                        let xj = &x[(first + j) * x_img..(first + j + 1) * x_img];
                        relu_mask(&mut dxc[j * x_img..(j + 1) * x_img], xj);
                    }
                    i0 += bn;
                }
            }
            if wino_dw {
                let (d, acc) = dw[..dw_len].split_at_mut(w_len);
                winograd_dw::weight_grad_finish(g, acc, d);
            }
            Ok(())
        })?;
    if wide_dw {
        // (3×3 stride 1: as Winograd products over the batch's tiles.)
        if winograd_dw_wide::applies(g) {
            return winograd_dw_wide::weight_grad(g, n, x, dy, dweight);
        }
        return wide_weight_grad(g, n, x, dy, dweight);
    }
    // Combine the per-chunk weight gradients in chunk order (reproducible).
    for buf in &ws.chunks[..chunks] {
        if bf_dw || gath_dw {
            bf16::add_transposed(g, &buf.dw[..dw_len], dweight);
            continue;
        }
        if direct_dw || wino_dw {
            dweight
                .iter_mut()
                .zip(&buf.dw[..w_len])
                .for_each(|(d, v)| *d += v);
            continue;
        }
        for grp in 0..g.groups {
            let dwt = &buf.dw[grp * cg_out * kg..(grp + 1) * cg_out * kg];
            let dst = &mut dweight[grp * cg_out * kg..(grp + 1) * cg_out * kg];
            for (r, row) in dwt.chunks_exact(cg_out).enumerate() {
                for (co, &v) in row.iter().enumerate() {
                    dst[co * kg + r] += v;
                }
            }
        }
    }
    Ok(())
}

/// `dweight[c_out, kg] += dy_all · col_allᵀ` over the whole batch: `dy_all[c_out, n·ohw]`
/// and `col_all[kg, n·ohw]` with the images side by side (filled in parallel by rows),
/// then one product whose output the GEMM splits between the threads (each element
/// summed over the batch in one fixed order: reproducible for a thread count).
fn wide_weight_grad(
    g: &ConvGeom,
    n: usize,
    x: &[f32],
    dy: &[f32],
    dweight: &mut [f32],
) -> Result<()> {
    let (kg, ohw) = (g.kg(), g.ohw());
    let k_all = n * ohw;
    if k_all == 0 {
        return Ok(());
    }
    // Both buffers are written in full below: taken from the tensor pool unzeroed
    // (14 MiB for resnet18's 7×7 × 512 layers at batch 16, zeroed every call before).
    let mut col_t = Tensor::for_overwrite(&[kg * k_all]);
    let col_all = col_t.data_mut();
    let rows = 64usize;
    col_all
        .par_chunks_mut(rows * k_all)
        .enumerate()
        .for_each(|(t, band)| im2col_batch_rows(g, x, n, t * rows, band));
    let mut dy_t = Tensor::for_overwrite(&[g.c_out * k_all]);
    let dy_all = dy_t.data_mut();
    let y_img = g.c_out * ohw;
    dy_all
        .par_chunks_mut(k_all)
        .enumerate()
        .for_each(|(c, row)| {
            for (img, part) in row.chunks_exact_mut(ohw).enumerate() {
                let at = img * y_img + c * ohw;
                part.copy_from_slice(&dy[at..at + ohw]);
            }
        });
    matmul(
        g.c_out,
        kg,
        k_all,
        dy_all,
        Trans::No,
        col_all,
        Trans::Yes,
        dweight,
        Accumulate::Yes,
        Par::Rayon,
    )
}

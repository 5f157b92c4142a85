//! The geometry of a convolution: shapes, output sizes, valid ranges, and the CPU
//! features the kernels test for. A leaf: every other convolution file stands on it.

use crate::error::{Error, Result};

/// Output length of a sliding window (convolution or pooling) along one axis.
///
/// `floor_or_ceil((input + 2·pad − dilation·(kernel−1) − 1) / stride) + 1`; with
/// `ceil_mode` the last window must still start inside the input or left padding
/// (PyTorch's rule). `None` when the window does not fit or a parameter is zero.
pub fn out_size(
    input: usize,
    kernel: usize,
    stride: usize,
    pad: usize,
    dilation: usize,
    ceil_mode: bool,
) -> Option<usize> {
    if kernel == 0 || stride == 0 || dilation == 0 {
        return None;
    }
    let span = dilation * (kernel - 1) + 1;
    let padded = input + 2 * pad;
    if padded < span {
        return None;
    }
    let room = padded - span;
    let mut out = if ceil_mode {
        room.div_ceil(stride) + 1
    } else {
        room / stride + 1
    };
    if ceil_mode && (out - 1) * stride >= input + pad {
        out -= 1;
    }
    Some(out)
}

/// The geometry of one convolution, validated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    /// Input channels.
    pub c_in: usize,
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Output channels.
    pub c_out: usize,
    /// Kernel height.
    pub kh: usize,
    /// Kernel width.
    pub kw: usize,
    /// Stride (vertical, horizontal).
    pub stride: (usize, usize),
    /// Zero padding (vertical, horizontal).
    pub pad: (usize, usize),
    /// Dilation (vertical, horizontal).
    pub dilation: (usize, usize),
    /// Channel groups.
    pub groups: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
}

impl ConvGeom {
    /// Validates the parameters and computes the output size.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        c_in: usize,
        h: usize,
        w: usize,
        c_out: usize,
        (kh, kw): (usize, usize),
        stride: (usize, usize),
        pad: (usize, usize),
        dilation: (usize, usize),
        groups: usize,
    ) -> Result<Self> {
        if groups == 0 || !c_in.is_multiple_of(groups) || !c_out.is_multiple_of(groups) {
            return Err(Error::config(
                "Conv2d",
                "groups",
                format!("{groups} groups must divide c_in={c_in} and c_out={c_out}"),
            ));
        }
        let oh = out_size(h, kh, stride.0, pad.0, dilation.0, false);
        let ow = out_size(w, kw, stride.1, pad.1, dilation.1, false);
        let (Some(oh), Some(ow)) = (oh, ow) else {
            return Err(Error::shape(
                "Conv2d",
                format!(
                    "an input at least as large as the dilated kernel {}x{} after padding {:?} (stride {:?})",
                    dilation.0 * kh.saturating_sub(1) + 1,
                    dilation.1 * kw.saturating_sub(1) + 1,
                    pad,
                    stride
                ),
                &[c_in, h, w],
            ));
        };
        Ok(ConvGeom {
            c_in,
            h,
            w,
            c_out,
            kh,
            kw,
            stride,
            pad,
            dilation,
            groups,
            oh,
            ow,
        })
    }

    /// Reduction length of one group: `c_in/groups · kh · kw`.
    pub fn kg(&self) -> usize {
        self.c_in / self.groups * self.kh * self.kw
    }

    /// Output pixels per channel.
    pub fn ohw(&self) -> usize {
        self.oh * self.ow
    }

    /// True when the im2col matrix is the input itself.
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == (1, 1) && self.pad == (0, 0)
    }

    /// Multiply-adds of the forward pass for one image.
    pub fn macs_per_image(&self) -> usize {
        self.c_out * self.kg() * self.ohw()
    }
}

/// The output columns `ox` in `lo..hi` whose input column `ox·stride + offset − pad`
/// lies inside `0..w`.
pub(crate) fn valid_range(
    ow: usize,
    w: usize,
    stride: usize,
    pad: usize,
    offset: usize,
) -> (usize, usize) {
    // ox·stride + offset ≥ pad  ⇔  ox ≥ ceil((pad − offset) / stride)
    let lo = if offset >= pad {
        0
    } else {
        (pad - offset).div_ceil(stride)
    };
    // ox·stride + offset − pad ≤ w − 1  ⇔  ox ≤ (w − 1 + pad − offset) / stride
    let hi = if w + pad > offset {
        ((w - 1 + pad - offset) / stride + 1).min(ow)
    } else {
        0
    };
    (lo.min(ow), hi.max(lo.min(ow)))
}

/// Output channels per register tile.
pub(crate) const COB: usize = 8;

pub(crate) fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// `(1 << n) − 1` as a lane mask, for `n ≤ 16`.
#[cfg(target_arch = "x86_64")]
pub(crate) fn lane_mask(n: usize) -> u16 {
    if n >= 16 {
        0xFFFF
    } else {
        ((1u32 << n) - 1) as u16
    }
}

//! Augmentations: seeded random transforms of `[C, H, W]` `f32` images.
//!
//! Each [`Transform`] draws its randomness from the [`DataRng`] it is handed; the loader
//! seeds one per image from `(seed, epoch, index)`, so an image's augmentation never
//! depends on the thread that made it. An [`Augment`] is an ordered list of transforms.
//!
//! Pixel transforms (flip, crop, resized crop, color jitter) run on values in `[0, 1]`,
//! before normalization. Erasing and cutout run *after* normalization, as in
//! torchvision (`RandomErasing` follows `Normalize`), so the erased value 0 is the
//! dataset mean. Which transforms come first is fixed by that rule; within each group
//! the given order is kept.
//!
//! Semantics follow torchvision where it has the transform:
//! - `Flip { p }`: `RandomHorizontalFlip(p)`.
//! - `Crop { padding, mode }`: `RandomCrop(size, padding, padding_mode)` with size = input
//!   size; mode `zero` (constant 0) or `reflect` (mirror without repeating the edge).
//! - `ResizedCrop { scale, ratio, size }`: `RandomResizedCrop`: 10 tries to find a box of
//!   area `scale`·H·W and aspect `ratio` (log-uniform), else the central box with the
//!   ratio clamped; resized bilinearly (half-pixel centers, no antialias) to `size`
//!   (default: the input size).
//! - `Jitter { brightness, contrast, saturation, hue }`: `ColorJitter`, the four in a
//!   random order; factors uniform in `[max(0, 1−b), 1+b]`, hue shift in `[−hue, hue]`.
//!   Grayscale images have no saturation or hue: those two are no-ops for them.
//! - `Erase { p, scale, ratio }`: `RandomErasing` with value 0.
//! - `Cutout { size, p }`: DeVries & Taylor 2017: a `size`×`size` square (clipped at
//!   the border) centred on a uniform random pixel, set to 0.
//!
//! The CLI syntax (`--augment`) is a comma-separated list; see [`Augment::parse`].

pub use crate::data::augment::{Augment, AUGMENT_SYNTAX};
use crate::data::rng::DataRng;
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};

/// An image being transformed: `data: [C, H, W]` row-major.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Image {
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
    /// Pixels, `c·h·w` values.
    pub data: Vec<f32>,
}

impl Image {
    /// Fills `self` with `pixels: [c, h, w]` scaled from `u8` to `[0, 1]`.
    pub fn load_u8(&mut self, pixels: &[u8], [c, h, w]: [usize; 3]) {
        self.c = c;
        self.h = h;
        self.w = w;
        self.data.clear();
        self.data
            .extend(pixels.iter().map(|&p| p as f32 * (1.0 / 255.0)));
    }
}

/// How [`Transform::Crop`] fills the padding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PadMode {
    /// Constant 0 (black before normalization).
    #[default]
    Zero,
    /// Mirror image without repeating the edge pixel (`numpy.pad(mode="reflect")`).
    Reflect,
}

fn half() -> f32 {
    0.5
}
fn one() -> f32 {
    1.0
}
pub(crate) fn rrc_scale() -> [f32; 2] {
    [0.08, 1.0]
}
pub(crate) fn rrc_ratio() -> [f32; 2] {
    [3.0 / 4.0, 4.0 / 3.0]
}
pub(crate) fn erase_scale() -> [f32; 2] {
    [0.02, 0.33]
}
pub(crate) fn erase_ratio() -> [f32; 2] {
    [0.3, 3.3]
}

/// One augmentation step. Serialized with a `kind` tag, e.g. `{"kind": "crop",
/// "padding": 4, "mode": "reflect"}`; omitted fields take torchvision's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Transform {
    /// Horizontal flip with probability `p` (default 0.5).
    Flip {
        /// Probability of flipping.
        #[serde(default = "half")]
        p: f32,
    },
    /// Pad by `padding` on every side, then crop back to the input size at random.
    Crop {
        /// Pixels of padding on each side.
        padding: usize,
        /// Fill of the padding. Default: zero.
        #[serde(default)]
        mode: PadMode,
    },
    /// Random area/aspect crop resized to `size` (default: input size).
    ResizedCrop {
        /// Range of the crop's area as a fraction of the image. Default: [0.08, 1].
        #[serde(default = "rrc_scale")]
        scale: [f32; 2],
        /// Range of the crop's aspect ratio w/h. Default: [3/4, 4/3].
        #[serde(default = "rrc_ratio")]
        ratio: [f32; 2],
        /// Output `[H, W]`. Default: the input size.
        #[serde(default)]
        size: Option<[usize; 2]>,
    },
    /// The whole image resized to `size` (bilinear, as [`Transform::ResizedCrop`]
    /// resizes): deterministic; what evaluation uses when a training augmentation changes
    /// the image size.
    Resize {
        /// Output `[H, W]`.
        size: [usize; 2],
    },
    /// Color jitter; 0 disables a component.
    Jitter {
        /// Brightness strength b: factor in [max(0, 1−b), 1+b].
        #[serde(default)]
        brightness: f32,
        /// Contrast strength.
        #[serde(default)]
        contrast: f32,
        /// Saturation strength (RGB only).
        #[serde(default)]
        saturation: f32,
        /// Hue shift in [−hue, hue] turns, hue ≤ 0.5 (RGB only).
        #[serde(default)]
        hue: f32,
    },
    /// Random erasing of a rectangle (after normalization).
    Erase {
        /// Probability of erasing. Default: 0.5.
        #[serde(default = "half")]
        p: f32,
        /// Range of the erased area as a fraction of the image. Default: [0.02, 0.33].
        #[serde(default = "erase_scale")]
        scale: [f32; 2],
        /// Range of the erased aspect ratio. Default: [0.3, 3.3].
        #[serde(default = "erase_ratio")]
        ratio: [f32; 2],
    },
    /// Cutout: a square of side `size` set to 0 (after normalization).
    Cutout {
        /// Side of the square in pixels.
        size: usize,
        /// Probability of applying it. Default: 1.
        #[serde(default = "one")]
        p: f32,
    },
}

fn invalid(field: &str, reason: impl Into<String>) -> Error {
    Error::config("augment", field, reason)
}

fn check_prob(field: &str, p: f32) -> Result<()> {
    if (0.0..=1.0).contains(&p) {
        Ok(())
    } else {
        Err(invalid(
            field,
            format!("probability must be in [0, 1], got {p}"),
        ))
    }
}

fn check_range(field: &str, [lo, hi]: [f32; 2], max: Option<f32>) -> Result<()> {
    let ok =
        lo.is_finite() && hi.is_finite() && lo > 0.0 && lo <= hi && max.is_none_or(|m| hi <= m);
    if ok {
        Ok(())
    } else {
        let bound = max.map_or(String::new(), |m| format!(" ≤ {m}"));
        Err(invalid(
            field,
            format!("need 0 < low ≤ high{bound}, got {lo}-{hi}"),
        ))
    }
}

impl Transform {
    /// Checks the parameters; called by [`Augment::new`] and [`Augment::parse`].
    pub fn validate(&self) -> Result<()> {
        match *self {
            Transform::Flip { p } => check_prob("flip.p", p),
            Transform::Crop { padding, .. } if padding > 4096 => Err(invalid(
                "crop.padding",
                format!("{padding} pixels is not plausible"),
            )),
            Transform::Crop { .. } => Ok(()),
            Transform::Resize { size: [h, w] } => {
                if h == 0 || w == 0 || h > 4096 || w > 4096 {
                    Err(invalid("resize", format!("{h}x{w} is not a usable size")))
                } else {
                    Ok(())
                }
            }
            Transform::ResizedCrop { scale, ratio, size } => {
                check_range("rrc.scale", scale, Some(1.0))?;
                check_range("rrc.ratio", ratio, None)?;
                match size {
                    Some([h, w]) if h == 0 || w == 0 || h > 4096 || w > 4096 => {
                        Err(invalid("rrc.size", format!("{h}x{w} is not a usable size")))
                    }
                    _ => Ok(()),
                }
            }
            Transform::Jitter {
                brightness,
                contrast,
                saturation,
                hue,
            } => {
                for (name, v) in [
                    ("jitter.brightness", brightness),
                    ("jitter.contrast", contrast),
                    ("jitter.saturation", saturation),
                ] {
                    if !(v.is_finite() && v >= 0.0) {
                        return Err(invalid(name, format!("must be ≥ 0, got {v}")));
                    }
                }
                if !(0.0..=0.5).contains(&hue) {
                    return Err(invalid(
                        "jitter.hue",
                        format!("must be in [0, 0.5], got {hue}"),
                    ));
                }
                Ok(())
            }
            Transform::Erase { p, scale, ratio } => {
                check_prob("erase.p", p)?;
                check_range("erase.scale", scale, Some(1.0))?;
                check_range("erase.ratio", ratio, None)
            }
            Transform::Cutout { size, p } => {
                check_prob("cutout.p", p)?;
                if size == 0 {
                    return Err(invalid("cutout.size", "must be at least 1 pixel"));
                }
                Ok(())
            }
        }
    }

    /// `true` for the steps that run after normalization (erase, cutout).
    pub fn after_normalize(&self) -> bool {
        matches!(self, Transform::Erase { .. } | Transform::Cutout { .. })
    }

    /// Output `[C, H, W]` for an input of `shape`.
    pub fn output_shape(&self, [c, h, w]: [usize; 3]) -> [usize; 3] {
        match self {
            Transform::ResizedCrop {
                size: Some([oh, ow]),
                ..
            }
            | Transform::Resize { size: [oh, ow] } => [c, *oh, *ow],
            _ => [c, h, w],
        }
    }

    /// Applies the transform to `img`, using `scratch` as a work buffer.
    pub fn apply(&self, img: &mut Image, scratch: &mut Vec<f32>, rng: &mut DataRng) {
        match *self {
            Transform::Flip { p } => {
                if rng.bernoulli(p) {
                    for row in img.data.chunks_exact_mut(img.w) {
                        row.reverse();
                    }
                }
            }
            Transform::Crop { padding, mode } => crop(img, scratch, rng, padding, mode),
            Transform::Resize { size: [oh, ow] } => {
                if (img.h, img.w) != (oh, ow) {
                    resize_bilinear(img, scratch, (0, 0, img.h, img.w), (oh, ow));
                }
            }
            Transform::ResizedCrop { scale, ratio, size } => {
                let [oh, ow] = size.unwrap_or([img.h, img.w]);
                let (top, left, ch, cw) = rrc_box(img.h, img.w, scale, ratio, rng);
                resize_bilinear(img, scratch, (top, left, ch, cw), (oh, ow));
            }
            Transform::Jitter {
                brightness,
                contrast,
                saturation,
                hue,
            } => jitter(img, rng, [brightness, contrast, saturation, hue]),
            Transform::Erase { p, scale, ratio } => {
                if rng.bernoulli(p) {
                    erase(img, rng, scale, ratio);
                }
            }
            Transform::Cutout { size, p } => {
                if rng.bernoulli(p) {
                    let cy = rng.below(img.h) as isize;
                    let cx = rng.below(img.w) as isize;
                    let half = (size / 2) as isize;
                    let clip = |v: isize, n: usize| v.clamp(0, n as isize) as usize;
                    let (y0, y1) = (clip(cy - half, img.h), clip(cy + half, img.h));
                    let (x0, x1) = (clip(cx - half, img.w), clip(cx + half, img.w));
                    fill_rect(img, y0, y1, x0, x1);
                }
            }
        }
    }
}

/// Mirror index `i` into `0..n` without repeating the edge (numpy's "reflect").
fn reflect(i: isize, n: usize) -> usize {
    if n == 1 {
        return 0;
    }
    let period = 2 * (n as isize - 1);
    let m = i.rem_euclid(period);
    (if m >= n as isize { period - m } else { m }) as usize
}

fn crop(img: &mut Image, scratch: &mut Vec<f32>, rng: &mut DataRng, pad: usize, mode: PadMode) {
    if pad == 0 {
        return;
    }
    let (h, w) = (img.h, img.w);
    let oy = rng.below(2 * pad + 1) as isize - pad as isize;
    let ox = rng.below(2 * pad + 1) as isize - pad as isize;
    let src_index = |i: isize, n: usize| -> Option<usize> {
        if (0..n as isize).contains(&i) {
            Some(i as usize)
        } else if mode == PadMode::Reflect {
            Some(reflect(i, n))
        } else {
            None
        }
    };
    scratch.clear();
    scratch.resize(img.data.len(), 0.0);
    for (plane_out, plane_in) in scratch
        .chunks_exact_mut(h * w)
        .zip(img.data.chunks_exact(h * w))
    {
        for y in 0..h {
            let Some(sy) = src_index(y as isize + oy, h) else {
                continue;
            };
            let row_in = &plane_in[sy * w..(sy + 1) * w];
            let row_out = &mut plane_out[y * w..(y + 1) * w];
            for (x, out) in row_out.iter_mut().enumerate() {
                if let Some(sx) = src_index(x as isize + ox, w) {
                    *out = row_in[sx];
                }
            }
        }
    }
    std::mem::swap(&mut img.data, scratch);
}

/// torchvision's `RandomResizedCrop.get_params`: `(top, left, height, width)`.
fn rrc_box(
    h: usize,
    w: usize,
    scale: [f32; 2],
    ratio: [f32; 2],
    rng: &mut DataRng,
) -> (usize, usize, usize, usize) {
    let area = (h * w) as f32;
    let (log_lo, log_hi) = (ratio[0].ln(), ratio[1].ln());
    for _ in 0..10 {
        let target = area * rng.uniform(scale[0], scale[1]);
        let aspect = rng.uniform(log_lo, log_hi).exp();
        let cw = (target * aspect).sqrt().round() as usize;
        let ch = (target / aspect).sqrt().round() as usize;
        if 0 < cw && cw <= w && 0 < ch && ch <= h {
            let top = rng.below(h - ch + 1);
            let left = rng.below(w - cw + 1);
            return (top, left, ch, cw);
        }
    }
    // Fallback: the central crop with the aspect clamped into range.
    let in_ratio = w as f32 / h as f32;
    let (ch, cw) = if in_ratio < ratio[0] {
        (((w as f32 / ratio[0]).round() as usize).clamp(1, h), w)
    } else if in_ratio > ratio[1] {
        (h, ((h as f32 * ratio[1]).round() as usize).clamp(1, w))
    } else {
        (h, w)
    };
    ((h - ch) / 2, (w - cw) / 2, ch, cw)
}

/// Resizes the box `(top, left, bh, bw)` of `img` to `oh × ow`, bilinear, half-pixel
/// centres (PyTorch `interpolate(mode="bilinear", align_corners=False)`).
fn resize_bilinear(
    img: &mut Image,
    scratch: &mut Vec<f32>,
    (top, left, bh, bw): (usize, usize, usize, usize),
    (oh, ow): (usize, usize),
) {
    let (h, w) = (img.h, img.w);
    if (top, left, bh, bw, oh, ow) == (0, 0, h, w, h, w) {
        return;
    }
    let taps = |o: usize, n_out: usize, n_in: usize| -> (usize, usize, f32) {
        let s = ((o as f32 + 0.5) * n_in as f32 / n_out as f32 - 0.5).max(0.0);
        let i0 = (s as usize).min(n_in - 1);
        let i1 = (i0 + 1).min(n_in - 1);
        (i0, i1, s - i0 as f32)
    };
    let xs: Vec<(usize, usize, f32)> = (0..ow).map(|x| taps(x, ow, bw)).collect();
    scratch.clear();
    scratch.resize(img.c * oh * ow, 0.0);
    for (plane_out, plane_in) in scratch
        .chunks_exact_mut(oh * ow)
        .zip(img.data.chunks_exact(h * w))
    {
        for y in 0..oh {
            let (y0, y1, fy) = taps(y, oh, bh);
            let r0 = &plane_in[(top + y0) * w + left..];
            let r1 = &plane_in[(top + y1) * w + left..];
            for (x, out) in plane_out[y * ow..(y + 1) * ow].iter_mut().enumerate() {
                let (x0, x1, fx) = xs[x];
                let a = r0[x0] + (r0[x1] - r0[x0]) * fx;
                let b = r1[x0] + (r1[x1] - r1[x0]) * fx;
                *out = a + (b - a) * fy;
            }
        }
    }
    img.h = oh;
    img.w = ow;
    std::mem::swap(&mut img.data, scratch);
}

/// Luma of RGB (ITU-R 601, torchvision's `rgb_to_grayscale`).
fn luma(r: f32, g: f32, b: f32) -> f32 {
    0.299 * r + 0.587 * g + 0.114 * b
}

fn jitter(img: &mut Image, rng: &mut DataRng, strength: [f32; 4]) {
    let mut order = [0usize, 1, 2, 3];
    rng.shuffle(&mut order);
    let factor = |rng: &mut DataRng, s: f32| rng.uniform((1.0 - s).max(0.0), 1.0 + s);
    let hw = img.h * img.w;
    let rgb = img.c == 3;
    for op in order {
        let s = strength[op];
        if s == 0.0 {
            continue;
        }
        match op {
            0 => {
                let f = factor(rng, s);
                img.data
                    .iter_mut()
                    .for_each(|v| *v = (*v * f).clamp(0.0, 1.0));
            }
            1 => {
                let f = factor(rng, s);
                let mean = if rgb {
                    let (r, rest) = img.data.split_at(hw);
                    let (g, b) = rest.split_at(hw);
                    let sum: f64 = (0..hw).map(|i| luma(r[i], g[i], b[i]) as f64).sum();
                    (sum / hw as f64) as f32
                } else {
                    (img.data.iter().map(|&v| v as f64).sum::<f64>() / img.data.len() as f64) as f32
                };
                let offset = (1.0 - f) * mean;
                img.data
                    .iter_mut()
                    .for_each(|v| *v = (f * *v + offset).clamp(0.0, 1.0));
            }
            2 if rgb => {
                let f = factor(rng, s);
                let (r, rest) = img.data.split_at_mut(hw);
                let (g, b) = rest.split_at_mut(hw);
                for i in 0..hw {
                    let gray = (1.0 - f) * luma(r[i], g[i], b[i]);
                    r[i] = (f * r[i] + gray).clamp(0.0, 1.0);
                    g[i] = (f * g[i] + gray).clamp(0.0, 1.0);
                    b[i] = (f * b[i] + gray).clamp(0.0, 1.0);
                }
            }
            3 if rgb => {
                let shift = rng.uniform(-s, s);
                let (r, rest) = img.data.split_at_mut(hw);
                let (g, b) = rest.split_at_mut(hw);
                for i in 0..hw {
                    (r[i], g[i], b[i]) = hue_shift(r[i], g[i], b[i], shift);
                }
            }
            _ => {} // saturation and hue do nothing to grayscale
        }
    }
}

/// Rotates the hue of one RGB pixel by `shift` turns (via HSV, like torchvision).
fn hue_shift(r: f32, g: f32, b: f32, shift: f32) -> (f32, f32, f32) {
    let max = r.max(g).max(b);
    let min = r.min(g).min(b);
    let delta = max - min;
    if delta <= 0.0 {
        return (r, g, b);
    }
    let s = delta / max;
    let mut h = if max == r {
        ((g - b) / delta).rem_euclid(6.0)
    } else if max == g {
        (b - r) / delta + 2.0
    } else {
        (r - g) / delta + 4.0
    } / 6.0;
    h = (h + shift).rem_euclid(1.0);
    let v = max;
    let h6 = h * 6.0;
    let sector = (h6.floor() as i32).rem_euclid(6);
    let f = h6 - h6.floor();
    let p = v * (1.0 - s);
    let q = v * (1.0 - s * f);
    let t = v * (1.0 - s * (1.0 - f));
    match sector {
        0 => (v, t, p),
        1 => (q, v, p),
        2 => (p, v, t),
        3 => (p, q, v),
        4 => (t, p, v),
        _ => (v, p, q),
    }
}

fn fill_rect(img: &mut Image, y0: usize, y1: usize, x0: usize, x1: usize) {
    let (h, w) = (img.h, img.w);
    for plane in img.data.chunks_exact_mut(h * w) {
        for y in y0..y1 {
            plane[y * w + x0..y * w + x1].fill(0.0);
        }
    }
}

fn erase(img: &mut Image, rng: &mut DataRng, scale: [f32; 2], ratio: [f32; 2]) {
    let (h, w) = (img.h, img.w);
    let area = (h * w) as f32;
    let (log_lo, log_hi) = (ratio[0].ln(), ratio[1].ln());
    for _ in 0..10 {
        let target = area * rng.uniform(scale[0], scale[1]);
        let aspect = rng.uniform(log_lo, log_hi).exp();
        let eh = (target * aspect).sqrt().round() as usize;
        let ew = (target / aspect).sqrt().round() as usize;
        if eh < h && ew < w {
            let top = rng.below(h - eh + 1);
            let left = rng.below(w - ew + 1);
            fill_rect(img, top, top + eh, left, left + ew);
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(c: usize, h: usize, w: usize) -> Image {
        let n = c * h * w;
        Image {
            c,
            h,
            w,
            data: (0..n).map(|i| i as f32 / n as f32).collect(),
        }
    }

    fn run(t: Transform, img: &Image, seed: u64) -> Image {
        let mut out = img.clone();
        t.apply(&mut out, &mut Vec::new(), &mut DataRng::new(seed));
        out
    }

    #[test]
    fn flip_reverses_rows_when_it_fires() {
        let img = ramp(2, 2, 3);
        let out = run(Transform::Flip { p: 1.0 }, &img, 0);
        assert_eq!(&out.data[..3], &[img.data[2], img.data[1], img.data[0]]);
        assert_eq!(run(Transform::Flip { p: 0.0 }, &img, 0), img);
    }

    #[test]
    fn crop_shifts_content_and_pads() {
        let img = ramp(1, 4, 4);
        let mut seen_shift = false;
        for seed in 0..50 {
            let out = run(
                Transform::Crop {
                    padding: 2,
                    mode: PadMode::Zero,
                },
                &img,
                seed,
            );
            assert_eq!((out.h, out.w, out.data.len()), (4, 4, 16));
            // Every output pixel is either padding (0) or an input pixel.
            assert!(out.data.iter().all(|v| *v == 0.0 || img.data.contains(v)));
            seen_shift |= out != img;
            let refl = run(
                Transform::Crop {
                    padding: 2,
                    mode: PadMode::Reflect,
                },
                &img,
                seed,
            );
            assert!(
                refl.data.iter().all(|v| img.data.contains(v)),
                "reflect never pads with 0 here except pixel 0"
            );
        }
        assert!(seen_shift);
    }

    #[test]
    fn reflect_mirrors_without_repeating_the_edge() {
        let got: Vec<usize> = (-3..7).map(|i| reflect(i, 4)).collect();
        assert_eq!(got, vec![3, 2, 1, 0, 1, 2, 3, 2, 1, 0]);
        assert_eq!(reflect(-5, 1), 0);
    }

    #[test]
    fn resized_crop_of_the_whole_image_is_identity_and_sizes_are_honoured() {
        let img = ramp(3, 6, 8);
        let full = Transform::ResizedCrop {
            scale: [1.0, 1.0],
            ratio: [8.0 / 6.0, 8.0 / 6.0],
            size: None,
        };
        assert_eq!(run(full, &img, 3), img);
        let small = Transform::ResizedCrop {
            scale: [0.2, 1.0],
            ratio: [0.75, 1.33],
            size: Some([5, 7]),
        };
        for seed in 0..20 {
            let out = run(small.clone(), &img, seed);
            assert_eq!((out.c, out.h, out.w, out.data.len()), (3, 5, 7, 105));
            assert!(out.data.iter().all(|v| (0.0..=1.0).contains(v)));
        }
    }

    #[test]
    fn bilinear_downscale_by_two_averages_pairs() {
        // align_corners=False at exactly half size samples midway between pixel pairs.
        let mut img = Image {
            c: 1,
            h: 2,
            w: 4,
            data: vec![0.0, 2.0, 4.0, 6.0, 0.0, 2.0, 4.0, 6.0],
        };
        resize_bilinear(&mut img, &mut Vec::new(), (0, 0, 2, 4), (1, 2));
        assert_eq!(img.data, vec![1.0, 5.0]);
    }

    #[test]
    fn jitter_respects_grayscale_and_range() {
        let gray = ramp(1, 4, 4);
        let sat_hue_only = Transform::Jitter {
            brightness: 0.0,
            contrast: 0.0,
            saturation: 0.9,
            hue: 0.5,
        };
        assert_eq!(
            run(sat_hue_only.clone(), &gray, 1),
            gray,
            "no-op on grayscale"
        );
        let rgb = ramp(3, 4, 4);
        let out = run(sat_hue_only, &rgb, 1);
        assert_ne!(out, rgb);
        let all = Transform::Jitter {
            brightness: 0.8,
            contrast: 0.8,
            saturation: 0.8,
            hue: 0.2,
        };
        for seed in 0..10 {
            assert!(run(all.clone(), &rgb, seed)
                .data
                .iter()
                .all(|v| (0.0..=1.0).contains(v)));
        }
    }

    #[test]
    fn hue_shift_by_a_full_turn_or_on_gray_is_identity() {
        let (r, g, b) = hue_shift(0.8, 0.3, 0.1, 1.0);
        assert!((r - 0.8).abs() < 1e-5 && (g - 0.3).abs() < 1e-5 && (b - 0.1).abs() < 1e-5);
        assert_eq!(hue_shift(0.4, 0.4, 0.4, 0.3), (0.4, 0.4, 0.4));
        // Red shifted by a third of a turn becomes green.
        let (r, g, b) = hue_shift(1.0, 0.0, 0.0, 1.0 / 3.0);
        assert!(
            r.abs() < 1e-5 && (g - 1.0).abs() < 1e-5 && b.abs() < 1e-5,
            "{r} {g} {b}"
        );
    }

    #[test]
    fn erase_and_cutout_zero_a_rectangle() {
        let img = Image {
            c: 2,
            h: 8,
            w: 8,
            data: vec![1.0; 128],
        };
        let out = run(
            Transform::Erase {
                p: 1.0,
                scale: [0.1, 0.2],
                ratio: [0.5, 2.0],
            },
            &img,
            4,
        );
        let zeros = out.data.iter().filter(|v| **v == 0.0).count();
        assert!((2 * 4..=2 * 20).contains(&zeros), "{zeros}");
        let out = run(Transform::Cutout { size: 4, p: 1.0 }, &img, 5);
        let zeros = out.data.iter().filter(|v| **v == 0.0).count();
        assert!(zeros > 0 && zeros <= 2 * 16, "{zeros}");
    }
}

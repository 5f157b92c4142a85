//! The Winograd kernel's buffer plan ([`Plan`]): tiles, lanes, bands and the layouts of
//! `V` and `M`, for one image or several side by side; and the chunks of tile rows the
//! transforms walk ([`chunks`]). Apart from [`super::winograd`] so that the transforms
//! ([`super::winograd_input`]) and the kernel can both use it without importing each
//! other.

use super::direct::Padded;
use super::geom::ConvGeom;
use super::winograd_tile::XI;

/// Tiles per vector.
pub(crate) const LANES: usize = 16;
/// Output channels per register tile.
pub(crate) const KB: usize = 8;
/// Vectors of tiles per register tile.
pub(crate) const NT: usize = 3;
/// The bands' `V` and `M` together stay under about this many floats (384 KiB).
pub(crate) const BAND_FLOATS: usize = 96 * 1024;

/// The most bytes of transformed weights that a map of few tiles may stream per image.
pub(super) const U_CACHED_BYTES: usize = 1 << 20;

/// Sizes of one layer's buffers.
#[derive(Clone, Copy, Debug)]
pub struct Plan {
    /// Tile rows and columns (`⌈oh/2⌉`, `⌈ow/2⌉`).
    pub(super) th: usize,
    pub(crate) tw: usize,
    /// Lanes per tile row: `tw` rounded up to a power of two below 16, to whole vectors
    /// from 16, so that every chunk of a row starts on its own aligned piece of a
    /// vector (its stores and loads touch whole lines, not two halves).
    pub(super) pitch: usize,
    /// Tile rows per band, and the band's stride in `V` and `M` (whole vectors).
    pub(super) rows: usize,
    pub(super) bandp: usize,
    /// Floats from one channel's rows of `V` (or `M`) to the next. One band
    /// ([`Plan::of`]): `16·bandp` and one cache line more, the 16 rows of a channel
    /// side by side, so that the channels of a column of `V` do not all fall in the same
    /// few L1 sets (`16·bandp` floats is a multiple of 4 KiB for some maps). Several
    /// images ([`Plan::batched`]): `bandp`, each `ξ`'s rows one matrix (`xs_v`, `xs_m`).
    pub(super) cs: usize,
    /// Floats from one `ξ`'s row to the next in `V` and in `M`: `bandp` for one band;
    /// for several images a whole matrix of rows and one cache line, so that a product
    /// reads its `V_ξ` as one block (on 8 images of 7×7 × 512 channels `V` is 4 MiB:
    /// read across it, each channel's rows on pages of their own, the products ran at
    /// half speed).
    pub(super) xs_v: usize,
    pub(super) xs_m: usize,
    /// Output channels rounded up to whole register tiles.
    pub(super) kp: usize,
    /// The zero-padded image: rows per channel, row stride.
    pub(crate) pd: Padded,
    /// Images side by side in one band ([`Plan::batched`], [`images`]); 1 otherwise.
    pub(crate) images: usize,
}

impl Plan {
    /// The buffer sizes for `g`.
    pub fn of(g: &ConvGeom) -> Self {
        let (th, tw) = (g.oh.div_ceil(2), g.ow.div_ceil(2));
        let pitch = if tw < LANES {
            tw.next_power_of_two()
        } else {
            tw.div_ceil(LANES) * LANES
        };
        let kp = g.c_out.div_ceil(KB) * KB;
        // Bands of equal height, each at most what fits the cache budget; but when the
        // transformed weights do not fit L2 (they are read once per band) the whole
        // image is one band: on 14×14 maps of 256 channels bands of one tile row (8
        // lanes) ran at 136 GFLOP/s.
        let most = if XI * kp * g.c_in * 4 > U_CACHED_BYTES {
            th
        } else {
            (BAND_FLOATS / (XI * (g.c_in + kp)) / pitch).max(1)
        };
        let bands = th.div_ceil(most).max(1);
        let rows = th.div_ceil(bands).max(1);
        let bandp = (rows * pitch).div_ceil(LANES) * LANES;
        // Rows up to 2·th + 1 and columns up to 2·tw + 1 are read (the loads are masked
        // to the columns their tiles need).
        let pd = Padded {
            hp: (2 * th + 2).max(g.h + 2 * g.pad.0),
            rs: (2 * tw + 2).max(g.w + 2 * g.pad.1),
        };
        Plan {
            th,
            tw,
            pitch,
            rows,
            bandp,
            cs: XI * bandp + LANES,
            xs_v: bandp,
            xs_m: bandp,
            kp,
            pd,
            images: 1,
        }
    }

    /// The plan of [`images`]: `images` whole images per band, image `b`'s tiles from
    /// lane `b · th · pitch` ([`Plan::of`] for one image: its L2-sized bands).
    pub fn batched(g: &ConvGeom, images: usize) -> Self {
        let p = Plan::of(g);
        if images <= 1 {
            return p;
        }
        let bandp = (images * p.th * p.pitch).div_ceil(LANES) * LANES;
        Plan {
            rows: p.th,
            bandp,
            cs: bandp,
            xs_v: g.c_in * bandp + LANES,
            xs_m: p.kp * bandp + LANES,
            images,
            ..p
        }
    }

    /// Images per band for `g` in [`images`]: where the transformed weights exceed L2,
    /// enough images for 256 lanes (each image alone would read all of `U` for its few
    /// tiles); 1 elsewhere.
    pub fn batch_for(g: &ConvGeom) -> usize {
        let p = Plan::of(g);
        if XI * p.kp * g.c_in * 4 > U_CACHED_BYTES {
            256usize.div_ceil(p.th * p.pitch).max(1)
        } else {
            1
        }
    }

    /// The padded image's geometry (for [`direct::pad_image`]).
    pub fn padded(&self) -> Padded {
        self.pd
    }

    /// Elements of the padded image buffer.
    pub fn pad_len(&self, g: &ConvGeom) -> usize {
        g.c_in * self.pd.hp * self.pd.rs
    }

    /// Elements of the work buffer: a band's `V`, its `M`, one vector of slack (the
    /// output transform reads whole vectors) and one to align the start to 64 bytes.
    pub fn work_len(&self, g: &ConvGeom) -> usize {
        self.v_len(g) + self.m_len() + 2 * LANES
    }

    /// Elements of a band's `V` in the work buffer.
    pub(super) fn v_len(&self, g: &ConvGeom) -> usize {
        (g.c_in * self.cs).max(XI * self.xs_v)
    }

    /// Elements of a band's `M`.
    fn m_len(&self) -> usize {
        (self.kp * self.cs).max(XI * self.xs_m)
    }

    /// Elements of the packed, transformed weights.
    pub fn packed_len(&self, g: &ConvGeom) -> usize {
        XI * self.kp * g.c_in
    }

    /// Elements (u32) of a band's `V` in bf16 channel pairs ([`super::winograd_bf16::image_bf16`]), with one
    /// vector to align its start to 64 bytes.
    pub fn pairs_len(&self, g: &ConvGeom) -> usize {
        g.c_in.div_ceil(2) * self.cs + LANES
    }
}

/// The pieces of tile rows `ty0..ty0 + rows`, at most 16 tiles each: `(tile row, first
/// tile column, tiles, lane of the first in the band)`.
pub(super) fn chunks(
    plan: &Plan,
    ty0: usize,
    rows: usize,
) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    let (tw, pitch) = (plan.tw, plan.pitch);
    (0..rows).flat_map(move |r| {
        (0..tw)
            .step_by(LANES)
            .map(move |tx0| (ty0 + r, tx0, (tw - tx0).min(LANES), r * pitch + tx0))
    })
}

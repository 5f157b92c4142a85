//! A PNG grid of images before and after augmentation ("what the network sees").
//!
//! One row per image: the original, then `variants` augmented versions (epochs
//! `0..variants`, with the loader's own per-image generator, so the grid shows exactly
//! what training will get). Erasing and cutout run after normalization in the loader;
//! here the image is normalized with the dataset's statistics, erased, and un-normalized
//! for display, so an erased patch shows the mean colour. Cells are enlarged by an
//! integer `scale` (nearest neighbour) and separated by a gray gap.

use crate::data::dataset::ImageDataset;
use crate::data::loader::augment_rng;
use crate::data::normalize::Normalize;
use crate::data::transform::{Augment, Image};
use crate::error::{Error, Result};
use image::{Rgb, RgbImage};
use std::path::Path;

/// What to draw.
#[derive(Clone, Debug, PartialEq)]
pub struct PreviewOptions {
    /// Augmented versions per image. Default: 5.
    pub variants: usize,
    /// Seed (the loader's `seed`). Default: 0.
    pub seed: u64,
    /// Pixel enlargement. Default: 4.
    pub scale: usize,
}

impl Default for PreviewOptions {
    fn default() -> Self {
        PreviewOptions {
            variants: 5,
            seed: 0,
            scale: 4,
        }
    }
}

const GAP: usize = 2;

/// Draws the grid for the images at `indices`.
pub fn grid(
    dataset: &ImageDataset,
    augment: &Augment,
    indices: &[usize],
    options: &PreviewOptions,
) -> Result<RgbImage> {
    if indices.is_empty() {
        return Err(Error::config("preview", "count", "nothing to draw"));
    }
    if let Some(&bad) = indices.iter().find(|&&i| i >= dataset.len()) {
        return Err(Error::config(
            "preview",
            "indices",
            format!("image {bad} does not exist ({} images)", dataset.len()),
        ));
    }
    let scale = options.scale.clamp(1, 32);
    let in_shape = dataset.shape();
    let [c, oh, ow] = augment.output_shape(in_shape);
    let cell_h = oh.max(in_shape[1]) * scale;
    let cell_w = ow.max(in_shape[2]) * scale;
    let cols = options.variants + 1;
    let width = cols * cell_w + (cols + 1) * GAP;
    let height = indices.len() * cell_h + (indices.len() + 1) * GAP;
    let too_big = || {
        Error::config(
            "preview",
            "size",
            format!("{width}×{height} pixels is too large"),
        )
    };
    let mut canvas = RgbImage::from_pixel(
        u32::try_from(width).map_err(|_| too_big())?,
        u32::try_from(height).map_err(|_| too_big())?,
        Rgb([128, 128, 128]),
    );
    if width.saturating_mul(height) > 100_000_000 {
        return Err(too_big());
    }
    let normalize = Normalize::from_dataset(dataset);
    let (mut img, mut scratch) = (Image::default(), Vec::new());
    for (row, &i) in indices.iter().enumerate() {
        for col in 0..cols {
            img.load_u8(dataset.image(i), in_shape);
            if col > 0 {
                let mut rng = augment_rng(options.seed, (col - 1) as u64, i);
                augment.apply_pixels(&mut img, &mut scratch, &mut rng);
                normalize.apply(&mut img.data, img.h * img.w);
                augment.apply_normalized(&mut img, &mut scratch, &mut rng);
                normalize.invert(&mut img.data, img.h * img.w);
            }
            let x0 = GAP + col * (cell_w + GAP);
            let y0 = GAP + row * (cell_h + GAP);
            draw(&mut canvas, &img, c, scale, x0, y0);
        }
    }
    Ok(canvas)
}

fn draw(canvas: &mut RgbImage, img: &Image, c: usize, scale: usize, x0: usize, y0: usize) {
    let hw = img.h * img.w;
    let byte = |v: f32| (v.clamp(0.0, 1.0) * 255.0).round() as u8;
    for y in 0..img.h * scale {
        for x in 0..img.w * scale {
            let p = (y / scale) * img.w + x / scale;
            let px = if c >= 3 {
                Rgb([
                    byte(img.data[p]),
                    byte(img.data[hw + p]),
                    byte(img.data[2 * hw + p]),
                ])
            } else {
                let g = byte(img.data[p]);
                Rgb([g, g, g])
            };
            canvas.put_pixel((x0 + x) as u32, (y0 + y) as u32, px);
        }
    }
}

/// Writes `image` as PNG to `path` atomically (a temporary file, then a rename).
pub fn write_png(image: &RgbImage, path: &Path) -> Result<()> {
    let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
    tmp_name.push(".tmp");
    let tmp = path.with_file_name(tmp_name);
    image
        .save_with_format(&tmp, image::ImageFormat::Png)
        .map_err(|e| Error::Io {
            path: tmp.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
    std::fs::rename(&tmp, path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::dataset::numbered_classes;

    #[test]
    fn grid_has_one_row_per_image_and_shows_the_original_first() {
        let images: Vec<u8> = (0..2 * 3 * 4 * 4).map(|i| (i * 5) as u8).collect();
        let d = ImageDataset::new(images, vec![0, 1], [3, 4, 4], numbered_classes(2)).unwrap();
        let aug = Augment::parse("flip:1").unwrap();
        let opts = PreviewOptions {
            variants: 2,
            seed: 0,
            scale: 2,
        };
        let g = grid(&d, &aug, &[1, 0], &opts).unwrap();
        assert_eq!(
            (g.width(), g.height()),
            (3 * 8 + 4 * GAP as u32, 2 * 8 + 3 * GAP as u32)
        );
        // Top-left pixel of the first cell is image 1's pixel (0, 0).
        let first = d.image(1);
        assert_eq!(g.get_pixel(2, 2).0, [first[0], first[16], first[32]]);
        // The flipped copy starts with the last pixel of the first row.
        assert_eq!(
            g.get_pixel(2 + 8 + 2, 2).0,
            [first[3], first[19], first[35]]
        );
        assert!(grid(&d, &aug, &[5], &opts).is_err());
        assert!(grid(&d, &aug, &[], &opts).is_err());
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("p.png");
        write_png(&g, &out).unwrap();
        assert_eq!(image::open(&out).unwrap().width(), g.width());
    }
}

//! Image folders in torchvision's `ImageFolder` layout: `root/<class>/<image>`.
//!
//! Classes are the sub-folders of `root`, sorted by name (label 0 is the first), as in
//! torchvision. Images are the files ending in `.png`, `.jpg` or `.jpeg` (any case),
//! sorted by name; other files and hidden entries are ignored. Decoding runs on rayon's
//! threads.
//!
//! Color: [`ColorMode::Auto`] makes a grayscale dataset when every image is grayscale
//! and an RGB one otherwise (gray images are then replicated to three channels);
//! `Gray` and `Rgb` force it (RGB to gray by ITU-R 601 luma, as `PIL.convert("L")`).
//! Alpha is dropped.
//!
//! Size: with `resize = Some([h, w])` every image is resized to it (bilinear, the
//! `image` crate's triangle filter); without it all images must have the size of the
//! first one, and one that differs is a bad file.
//!
//! Bad files (unreadable, not decodable, wrong size) are errors naming the file, unless
//! `skip_bad` is set: then they are left out and listed in [`FolderReport::skipped`].
//! An empty root, or a class with no usable image, is always an error.

use crate::data::dataset::ImageDataset;
use crate::error::{Error, Result};
use image::{DynamicImage, GenericImageView};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Channel handling for [`load`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ColorMode {
    /// Grayscale if every image is, RGB otherwise.
    #[default]
    Auto,
    /// One channel.
    Gray,
    /// Three channels.
    Rgb,
}

/// Options of [`load`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FolderOptions {
    /// Channel handling. Default: auto.
    pub color: ColorMode,
    /// Resize every image to `[H, W]`. Default: none (all sizes must agree).
    pub resize: Option<[usize; 2]>,
    /// Leave out bad files instead of failing. Default: false.
    pub skip_bad: bool,
}

/// What [`load`] left out.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FolderReport {
    /// Each skipped file and why.
    pub skipped: Vec<(PathBuf, String)>,
}

const EXTENSIONS: [&str; 3] = ["png", "jpg", "jpeg"];

fn io_err(path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn format_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Format {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Sorted, non-hidden entries of `dir` for which `keep` holds.
fn sorted_entries(dir: &Path, keep: impl Fn(&Path) -> bool) -> Result<Vec<PathBuf>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_err(dir, e))? {
        let path = entry.map_err(|e| io_err(dir, e))?.path();
        let hidden = path
            .file_name()
            .and_then(|n| n.to_str())
            .is_none_or(|n| n.starts_with('.'));
        if !hidden && keep(&path) {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

fn is_image_file(path: &Path) -> bool {
    path.is_file()
        && path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
}

/// The class folders and, for each, its image files.
pub fn scan(root: &Path) -> Result<Vec<(String, Vec<PathBuf>)>> {
    let classes = sorted_entries(root, Path::is_dir)?;
    if classes.is_empty() {
        return Err(format_err(
            root,
            "no class folders: expected root/<class>/<image>.png|jpg (torchvision's ImageFolder layout)",
        ));
    }
    classes
        .into_iter()
        .map(|dir| {
            let name = dir
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let files = sorted_entries(&dir, is_image_file)?;
            if files.is_empty() {
                return Err(format_err(
                    &dir,
                    format!("class `{name}` has no .png/.jpg/.jpeg images"),
                ));
            }
            Ok((name, files))
        })
        .collect()
}

/// The pixels of `im` as channel planes (CHW): one gray plane, or R, G and B.
pub fn planes(im: &DynamicImage, gray: bool) -> Vec<u8> {
    if gray {
        return im.to_luma8().into_raw();
    }
    // HWC interleaved → CHW planes.
    let rgb = im.to_rgb8();
    let raw = rgb.as_raw();
    (0..3)
        .flat_map(|ch| raw.iter().skip(ch).step_by(3).copied())
        .collect()
}

/// Resizes `im` to `[h, w]` as the folder loader does (bilinear, `Triangle`), unless it
/// has that size already.
pub fn fit(im: DynamicImage, [h, w]: [usize; 2]) -> DynamicImage {
    if (im.height() as usize, im.width() as usize) == (h, w) {
        return im;
    }
    im.resize_exact(w as u32, h as u32, image::imageops::FilterType::Triangle)
}

/// Decodes one file, checking its size when no resize is asked for.
fn decode(path: &Path) -> std::result::Result<DynamicImage, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    decode_bytes(&bytes)
}

/// Decodes one image file's bytes (PNG, JPEG; what the folder loader reads), or says
/// why it cannot. The entry point of the `image` fuzz target.
pub fn decode_bytes(bytes: &[u8]) -> std::result::Result<DynamicImage, String> {
    image::load_from_memory(bytes).map_err(|e| format!("cannot decode image: {e}"))
}

/// Loads an image folder; see the module documentation.
pub fn load(root: &Path, options: &FolderOptions) -> Result<(ImageDataset, FolderReport)> {
    let classes = scan(root)?;
    let files: Vec<(u32, &PathBuf)> = classes
        .iter()
        .enumerate()
        .flat_map(|(c, (_, files))| files.iter().map(move |f| (c as u32, f)))
        .collect();
    let decoded: Vec<std::result::Result<DynamicImage, String>> =
        files.par_iter().map(|(_, f)| decode(f)).collect();

    let gray = match options.color {
        ColorMode::Gray => true,
        ColorMode::Rgb => false,
        ColorMode::Auto => decoded.iter().flatten().all(|im| !im.color().has_color()),
    };
    let channels = if gray { 1 } else { 3 };
    let first_size = decoded.iter().flatten().next().map(|im| im.dimensions());
    let [h, w] = match (options.resize, first_size) {
        (Some([h, w]), _) if h > 0 && w > 0 => [h, w],
        (Some(_), _) => {
            return Err(Error::config(
                "image folder",
                "resize",
                "sizes must be at least 1",
            ))
        }
        (None, Some((w, h))) => [h as usize, w as usize],
        (None, None) => [1, 1], // every file is bad; reported below
    };

    let mut images = Vec::new();
    let mut labels = Vec::new();
    let mut report = FolderReport::default();
    for ((label, path), result) in files.iter().zip(decoded) {
        let converted = result.and_then(|im| {
            let (iw, ih) = im.dimensions();
            let im = match options.resize {
                Some(_) => fit(im, [h, w]),
                None if (ih as usize, iw as usize) != (h, w) => {
                    return Err(format!(
                        "image is {iw}×{ih}, the others are {w}×{h}; pass a resize size to make them agree"
                    ))
                }
                None => im,
            };
            Ok(im)
        });
        match converted {
            Ok(im) => {
                images.extend(planes(&im, gray));
                labels.push(*label);
            }
            Err(reason) if options.skip_bad => report.skipped.push(((*path).clone(), reason)),
            Err(reason) => return Err(format_err(path, reason)),
        }
    }
    let counts = labels
        .iter()
        .fold(vec![0usize; classes.len()], |mut acc, &l| {
            acc[l as usize] += 1;
            acc
        });
    if let Some(c) = counts.iter().position(|&n| n == 0) {
        return Err(format_err(
            &root.join(&classes[c].0),
            format!(
                "class `{}` has no usable image ({} skipped as bad)",
                classes[c].0,
                report.skipped.len()
            ),
        ));
    }
    let names = classes.into_iter().map(|(name, _)| name).collect();
    let dataset = ImageDataset::new(images, labels, [channels, h, w], names)?;
    Ok((dataset, report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Luma, Rgb};

    fn gray(dir: &Path, name: &str, w: u32, h: u32, v: u8) {
        let im: ImageBuffer<Luma<u8>, Vec<u8>> = ImageBuffer::from_pixel(w, h, Luma([v]));
        im.save(dir.join(name)).unwrap();
    }

    fn tree(classes: &[&str]) -> tempfile::TempDir {
        let root = tempfile::tempdir().unwrap();
        for c in classes {
            std::fs::create_dir(root.path().join(c)).unwrap();
        }
        root
    }

    #[test]
    fn loads_sorted_classes_gray_and_rgb() {
        let root = tree(&["b_cat", "a_dog"]);
        let r = root.path();
        gray(&r.join("a_dog"), "1.png", 4, 3, 10);
        gray(&r.join("a_dog"), "0.PNG", 4, 3, 20);
        gray(&r.join("b_cat"), "x.png", 4, 3, 30);
        std::fs::write(r.join("b_cat").join("notes.txt"), "ignored").unwrap();
        let (d, rep) = load(r, &FolderOptions::default()).unwrap();
        assert!(rep.skipped.is_empty());
        assert_eq!(d.class_names(), &["a_dog", "b_cat"]);
        assert_eq!(d.shape(), [1, 3, 4]);
        assert_eq!(d.labels(), &[0, 0, 1]);
        assert_eq!(
            (d.image(0)[0], d.image(1)[0]),
            (20, 10),
            "files sorted by name"
        );

        let color: ImageBuffer<Rgb<u8>, Vec<u8>> = ImageBuffer::from_pixel(4, 3, Rgb([1, 2, 3]));
        color.save(r.join("b_cat").join("y.jpg")).unwrap();
        let (d, _) = load(r, &FolderOptions::default()).unwrap();
        assert_eq!(d.shape(), [3, 3, 4]);
        assert_eq!(&d.image(0)[..1], &[20]);
        assert_eq!(d.image(0)[12], 20, "gray replicated to green plane");
        let opts = FolderOptions {
            color: ColorMode::Gray,
            resize: Some([2, 2]),
            skip_bad: false,
        };
        let (d, _) = load(r, &opts).unwrap();
        assert_eq!((d.shape(), d.len()), ([1, 2, 2], 4));
    }

    #[test]
    fn bad_files_are_errors_or_skipped_and_counted() {
        let root = tree(&["a", "b"]);
        let r = root.path();
        gray(&r.join("a"), "0.png", 4, 4, 1);
        gray(&r.join("b"), "0.png", 4, 4, 2);
        gray(&r.join("b"), "1.png", 5, 4, 2);
        std::fs::write(r.join("b").join("2.jpg"), b"not a jpeg").unwrap();
        let err = load(r, &FolderOptions::default()).unwrap_err().to_string();
        assert!(err.contains("1.png") && err.contains("5×4"), "{err}");
        let opts = FolderOptions {
            skip_bad: true,
            ..FolderOptions::default()
        };
        let (d, rep) = load(r, &opts).unwrap();
        assert_eq!(d.len(), 2);
        assert_eq!(rep.skipped.len(), 2);
        assert!(rep.skipped[1].0.ends_with("2.jpg") && rep.skipped[1].1.contains("decode"));
    }

    #[test]
    fn empty_root_and_empty_class_are_errors() {
        let root = tree(&[]);
        let err = load(root.path(), &FolderOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("no class folders"), "{err}");
        let root = tree(&["a", "empty"]);
        gray(&root.path().join("a"), "0.png", 2, 2, 1);
        let err = load(root.path(), &FolderOptions::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("class `empty` has no"), "{err}");
        let root = tree(&["a"]);
        std::fs::write(root.path().join("a").join("0.png"), b"junk").unwrap();
        let opts = FolderOptions {
            skip_bad: true,
            ..FolderOptions::default()
        };
        let err = load(root.path(), &opts).unwrap_err().to_string();
        assert!(err.contains("no usable image (1 skipped"), "{err}");
        assert!(load(Path::new("/nonexistent-strata"), &opts).is_err());
    }
}

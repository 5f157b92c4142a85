//! `ImageDataset`: labelled images held in memory as `u8`, and the `Dataset` trait.
//!
//! Storage: `images: [N, C, H, W]` row-major `u8` (0..=255, what every on-disk format
//! holds), `labels: [N]` class ids in `0..class_names.len()`. Four bytes per pixel less
//! than `f32`: the full CIFAR-10 training set takes 150 MiB instead of 600 MiB. The
//! loader converts to `f32` in `[0, 1]` one batch at a time.
//!
//! Subsets (`subset`, `classes_subset`, `per_class`) and the stratified split (`split.rs`)
//! return new datasets that own their images; copying is cheap next to training.

use crate::data::rng::DataRng;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// What the loader needs from a labelled image collection.
///
/// Implemented by [`ImageDataset`]; a dataset that decodes lazily could implement it too.
pub trait Dataset: Send + Sync {
    /// Number of samples.
    fn len(&self) -> usize;
    /// `true` when there are no samples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// `[C, H, W]` of every image.
    fn image_shape(&self) -> [usize; 3];
    /// Number of classes (labels are `0..num_classes()`).
    fn num_classes(&self) -> usize;
    /// Pixels of sample `i`, `[C, H, W]` row-major. Panics if `i >= len()` (a caller bug).
    fn image(&self, i: usize) -> &[u8];
    /// Class id of sample `i`. Panics if `i >= len()`.
    fn label(&self, i: usize) -> u32;
}

/// Labelled images in memory: `images: [N, C, H, W]` `u8`, `labels: [N]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ImageDataset {
    images: Vec<u8>,
    labels: Vec<u32>,
    channels: usize,
    height: usize,
    width: usize,
    class_names: Vec<String>,
}

impl ImageDataset {
    /// Builds a dataset, checking that the buffer holds `labels.len()` images of
    /// `channels × height × width` and that every label names a class.
    pub fn new(
        images: Vec<u8>,
        labels: Vec<u32>,
        [channels, height, width]: [usize; 3],
        class_names: Vec<String>,
    ) -> Result<Self> {
        let op = "ImageDataset::new";
        if channels == 0 || height == 0 || width == 0 {
            return Err(Error::config(
                op,
                "shape",
                format!("image shape [{channels}, {height}, {width}] has a zero dimension"),
            ));
        }
        if class_names.is_empty() {
            return Err(Error::config(
                op,
                "class_names",
                "at least one class is needed",
            ));
        }
        let per_image = channels
            .checked_mul(height)
            .and_then(|v| v.checked_mul(width));
        let expected = per_image.and_then(|p| labels.len().checked_mul(p));
        let per_image = per_image.unwrap_or(usize::MAX);
        if expected != Some(images.len()) {
            return Err(Error::shape(
                op,
                format!(
                    "{} bytes ({} labels × {channels}×{height}×{width})",
                    labels.len() as u128 * per_image as u128,
                    labels.len()
                ),
                &[images.len()],
            ));
        }
        if let Some((i, &l)) = labels
            .iter()
            .enumerate()
            .find(|(_, &l)| l as usize >= class_names.len())
        {
            return Err(Error::config(
                op,
                "labels",
                format!(
                    "label {i} is {l}, but there are only {} classes",
                    class_names.len()
                ),
            ));
        }
        Ok(ImageDataset {
            images,
            labels,
            channels,
            height,
            width,
            class_names,
        })
    }

    /// From an in-memory tensor `x: [N, C, H, W]` with values in `[0, 1]`.
    ///
    /// Values are stored as `round(255·v)`, the resolution of 8-bit images; a value
    /// outside `[0, 1]` (or NaN) is an error rather than being clamped silently.
    pub fn from_tensor(x: &Tensor, labels: Vec<u32>, class_names: Vec<String>) -> Result<Self> {
        let [n, c, h, w] = x.dims4("ImageDataset::from_tensor")?;
        if n != labels.len() {
            return Err(Error::shape(
                "ImageDataset::from_tensor",
                format!("{} images, one per label", labels.len()),
                x.shape(),
            ));
        }
        let mut images = Vec::with_capacity(x.len());
        for (i, &v) in x.data().iter().enumerate() {
            if !(0.0..=1.0).contains(&v) {
                return Err(Error::config(
                    "ImageDataset::from_tensor",
                    "x",
                    format!("element {i} is {v}; pixel values must be in [0, 1] (scale first)"),
                ));
            }
            images.push((v * 255.0).round() as u8);
        }
        Self::new(images, labels, [c, h, w], class_names)
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// `true` when there are no images.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Channels per image (1 grayscale, 3 RGB).
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Image height in pixels.
    pub fn height(&self) -> usize {
        self.height
    }

    /// Image width in pixels.
    pub fn width(&self) -> usize {
        self.width
    }

    /// `[C, H, W]`.
    pub fn shape(&self) -> [usize; 3] {
        [self.channels, self.height, self.width]
    }

    /// Bytes per image, `C·H·W`.
    pub fn image_len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Class names, indexed by label.
    pub fn class_names(&self) -> &[String] {
        &self.class_names
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// All pixels, `[N, C, H, W]`.
    pub fn images(&self) -> &[u8] {
        &self.images
    }

    /// All labels, `[N]`.
    pub fn labels(&self) -> &[u32] {
        &self.labels
    }

    /// Pixels of image `i`, `[C, H, W]`. Panics if `i >= len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// Label of image `i`. Panics if `i >= len()`.
    pub fn label(&self, i: usize) -> u32 {
        self.labels[i]
    }

    /// Number of images of each class, indexed by label.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0; self.num_classes()];
        for &l in &self.labels {
            counts[l as usize] += 1;
        }
        counts
    }

    /// Indices of the images of each class, in dataset order.
    pub fn indices_by_class(&self) -> Vec<Vec<usize>> {
        let mut by_class = vec![Vec::new(); self.num_classes()];
        for (i, &l) in self.labels.iter().enumerate() {
            by_class[l as usize].push(i);
        }
        by_class
    }

    /// The images at `indices`, in that order (repeats allowed), same classes.
    pub fn subset(&self, indices: &[usize]) -> Result<Self> {
        if let Some(&bad) = indices.iter().find(|&&i| i >= self.len()) {
            return Err(Error::config(
                "ImageDataset::subset",
                "indices",
                format!("index {bad} is out of range for {} images", self.len()),
            ));
        }
        let n = self.image_len();
        let mut images = Vec::with_capacity(indices.len() * n);
        for &i in indices {
            images.extend_from_slice(self.image(i));
        }
        Ok(ImageDataset {
            images,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            channels: self.channels,
            height: self.height,
            width: self.width,
            class_names: self.class_names.clone(),
        })
    }

    /// Only the images of `classes`, relabelled `0..classes.len()` in the order given
    /// (so `[3, 7]` makes class 3 label 0 and class 7 label 1), with their names.
    ///
    /// This is what a new classification head needs: "classes 0–4" is `&[0, 1, 2, 3, 4]`.
    pub fn classes_subset(&self, classes: &[u32]) -> Result<Self> {
        let op = "ImageDataset::classes_subset";
        if classes.is_empty() {
            return Err(Error::config(op, "classes", "name at least one class"));
        }
        let mut new_label = vec![None; self.num_classes()];
        for (pos, &c) in classes.iter().enumerate() {
            let slot = new_label.get_mut(c as usize).ok_or_else(|| {
                Error::config(
                    op,
                    "classes",
                    format!(
                        "class {c} does not exist (there are {})",
                        self.num_classes()
                    ),
                )
            })?;
            if slot.is_some() {
                return Err(Error::config(
                    op,
                    "classes",
                    format!("class {c} is listed twice"),
                ));
            }
            *slot = Some(pos as u32);
        }
        let indices: Vec<usize> = (0..self.len())
            .filter(|&i| new_label[self.labels[i] as usize].is_some())
            .collect();
        let mut out = self.subset(&indices)?;
        for l in &mut out.labels {
            *l = new_label[*l as usize].unwrap_or(0);
        }
        out.class_names = classes
            .iter()
            .map(|&c| self.class_names[c as usize].clone())
            .collect();
        Ok(out)
    }

    /// `count` images of every class, drawn at random (seeded) without replacement, kept in
    /// dataset order. A class with fewer than `count` images is an error naming it.
    pub fn per_class(&self, count: usize, seed: u64) -> Result<Self> {
        let mut keep = Vec::with_capacity(count * self.num_classes());
        for (class, mut members) in self.indices_by_class().into_iter().enumerate() {
            if members.len() < count {
                return Err(Error::config(
                    "training data",
                    "per_class",
                    format!(
                        "class {class} ({}) has only {} images, {count} were asked for",
                        self.class_names[class],
                        members.len()
                    ),
                ));
            }
            DataRng::for_stream(seed, &[0x7065_725f_636c, class as u64]).shuffle(&mut members);
            keep.extend_from_slice(&members[..count]);
        }
        keep.sort_unstable();
        self.subset(&keep)
    }

    /// Stratified, seeded train/validation split; see [`crate::data::split`].
    pub fn stratified_split(&self, val_fraction: f64, seed: u64) -> Result<(Self, Self)> {
        let (train, val) = crate::data::split::split_indices(
            self.labels(),
            self.num_classes(),
            val_fraction,
            seed,
        )?;
        Ok((self.subset(&train)?, self.subset(&val)?))
    }
}

impl Dataset for ImageDataset {
    fn len(&self) -> usize {
        ImageDataset::len(self)
    }
    fn image_shape(&self) -> [usize; 3] {
        self.shape()
    }
    fn num_classes(&self) -> usize {
        ImageDataset::num_classes(self)
    }
    fn image(&self, i: usize) -> &[u8] {
        ImageDataset::image(self, i)
    }
    fn label(&self, i: usize) -> u32 {
        ImageDataset::label(self, i)
    }
}

/// Class names `"0"`, `"1"`, … for datasets that carry none.
pub fn numbered_classes(n: usize) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// `n` images of 1×2×3 whose first pixel is the index, labels `i % classes`.
    pub(crate) fn toy(n: usize, classes: usize) -> ImageDataset {
        let mut images = Vec::new();
        for i in 0..n {
            images.extend_from_slice(&[i as u8, 1, 2, 3, 4, 5]);
        }
        let labels = (0..n).map(|i| (i % classes) as u32).collect();
        ImageDataset::new(images, labels, [1, 2, 3], numbered_classes(classes)).unwrap()
    }

    #[test]
    fn new_rejects_bad_sizes_and_labels() {
        let names = numbered_classes(2);
        assert!(ImageDataset::new(vec![0; 5], vec![0], [1, 2, 3], names.clone()).is_err());
        assert!(ImageDataset::new(vec![0; 6], vec![2], [1, 2, 3], names.clone()).is_err());
        assert!(ImageDataset::new(vec![], vec![], [0, 2, 3], names.clone()).is_err());
        assert!(ImageDataset::new(vec![0; 6], vec![1], [1, 2, 3], vec![]).is_err());
        let ok = ImageDataset::new(vec![9; 6], vec![1], [1, 2, 3], names).unwrap();
        assert_eq!(ok.image(0), &[9; 6]);
        assert_eq!(ok.label(0), 1);
    }

    #[test]
    fn from_tensor_quantizes_and_rejects_out_of_range() {
        let x = Tensor::from_vec(vec![0.0, 0.5, 1.0, 0.2], &[1, 1, 2, 2]).unwrap();
        let d = ImageDataset::from_tensor(&x, vec![0], numbered_classes(1)).unwrap();
        assert_eq!(d.image(0), &[0, 128, 255, 51]);
        let bad = Tensor::from_vec(vec![0.0, 1.5, 1.0, 0.2], &[1, 1, 2, 2]).unwrap();
        let err = ImageDataset::from_tensor(&bad, vec![0], numbered_classes(1)).unwrap_err();
        assert!(err.to_string().contains("element 1 is 1.5"), "{err}");
    }

    #[test]
    fn subset_keeps_images_with_their_labels() {
        let d = toy(10, 3);
        let s = d.subset(&[7, 2, 2]).unwrap();
        assert_eq!(s.len(), 3);
        assert_eq!(s.image(0)[0], 7);
        assert_eq!(s.labels(), &[1, 2, 2]);
        assert!(d.subset(&[10]).is_err());
    }

    #[test]
    fn classes_subset_relabels_in_given_order() {
        let d = toy(12, 4);
        let s = d.classes_subset(&[3, 1]).unwrap();
        assert_eq!(s.class_names(), &["3", "1"]);
        assert_eq!(s.len(), 6);
        for i in 0..s.len() {
            let original = s.image(i)[0] as u32 % 4;
            assert_eq!(if original == 3 { 0 } else { 1 }, s.label(i));
        }
        assert!(d.classes_subset(&[4]).is_err());
        assert!(d.classes_subset(&[1, 1]).is_err());
        assert!(d.classes_subset(&[]).is_err());
    }

    #[test]
    fn per_class_takes_count_of_each_seeded() {
        let d = toy(40, 4);
        let a = d.per_class(3, 1).unwrap();
        assert_eq!(a.class_counts(), vec![3; 4]);
        assert_eq!(a, d.per_class(3, 1).unwrap());
        assert_ne!(a, d.per_class(3, 2).unwrap());
        let err = d.per_class(11, 0).unwrap_err();
        assert!(err.to_string().contains("only 10 images"), "{err}");
    }
}

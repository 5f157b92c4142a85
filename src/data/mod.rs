//! Data: datasets on disk and in memory, preprocessing, augmentation, and the loader.
//!
//! ```text
//! files ──► idx / cifar / folder / embedded ──► ImageDataset (u8, in memory)
//!                 (source::load picks where)        │ subset, per_class, stratified_split
//!                                                   ▼
//!   Loader: seeded shuffle ─► worker threads: u8→[0,1] ─► Augment ─► Normalize ─► erase
//!                                                   │ Batch { x: [B, C, H, W], y }
//!                                                   ▼
//!                                                training
//! ```
//!
//! - [`dataset`]: [`ImageDataset`] and the [`Dataset`] trait.
//! - [`idx`], [`cifar`], [`folder`]: readers for IDX (MNIST, Fashion-MNIST), CIFAR-10/100
//!   binary and torchvision-style image folders.
//! - [`source`]: where a named dataset comes from (`--data DIR`, the Debian package, the
//!   download cache, the embedded Fashion-MNIST subset); [`download`] fills the cache.
//! - [`split`]: stratified train/validation split.
//! - [`normalize`]: per-channel mean/std; [`transform`]: augmentations.
//! - [`loader`]: batches built on worker threads, deterministic for a seed.
//!
//! ```
//! use std::sync::Arc;
//! use strata::data::{ImageDataset, Loader, LoaderConfig, Normalize, Augment};
//! let labels: Vec<u32> = (0..10).map(|i| i % 2).collect();
//! let images: Vec<u8> = (0..10 * 16).map(|i| i as u8).collect();
//! let names = vec!["even".to_string(), "odd".to_string()];
//! let data = ImageDataset::new(images, labels, [1, 4, 4], names).unwrap();
//! let (train, val) = data.stratified_split(0.2, 0).unwrap();
//! assert_eq!((train.len(), val.len()), (8, 2));
//! let config = LoaderConfig {
//!     batch_size: 4,
//!     augment: Augment::parse("flip,crop:1").unwrap(),
//!     normalize: Normalize::from_dataset(&train),
//!     ..LoaderConfig::default()
//! };
//! let loader = Loader::new(Arc::new(train), config).unwrap();
//! let batches: Vec<_> = loader.epoch(0).collect();
//! assert_eq!(batches.len(), 2);
//! assert_eq!(batches[0].x.shape(), &[4, 1, 4, 4]);
//! ```

pub mod augment;
pub mod cifar;
pub mod dataset;
pub mod download;
pub mod embedded;
pub mod folder;
pub mod idx;
pub mod loader;
pub mod normalize;
pub mod preview;
pub mod rng;
pub mod source;
pub mod split;
pub mod transform;

pub use dataset::{Dataset, ImageDataset};
pub use loader::{Batch, Loader, LoaderConfig};
pub use normalize::Normalize;
pub use source::{load, Split};
pub use transform::{Augment, Transform};

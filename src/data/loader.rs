//! `Loader`: shuffled, augmented, normalized batches built on worker threads.
//!
//! For epoch `e`, the order of the dataset is a Fisher–Yates shuffle seeded by
//! `(seed, e)` (or dataset order without `shuffle`); batch `b` holds positions
//! `b·B .. (b+1)·B` of that order (the last one shorter unless `drop_last`). Image `i`
//! is augmented with a generator seeded by `(seed, e, i)`. So the batches of an epoch
//! are a pure function of `(dataset, config, e)`: the same whatever `workers` is and
//! whichever thread finishes first.
//!
//! With `workers = 0` batches are built on the caller's thread when asked for. With
//! `workers = k ≥ 1`, `k` threads claim batch numbers in order and build them while the
//! caller trains; at most `max(prefetch, workers)` batches are built ahead of the one
//! the caller is waiting for, and they are handed out in order. Dropping the iterator
//! early stops and joins the workers.
//!
//! Per image: `u8 → [0, 1]`, pixel augmentations, normalization, then erasing/cutout
//! (see `transform.rs`). `Batch::x` is `[B, C, H, W]` `f32`.

use crate::data::dataset::ImageDataset;
use crate::data::normalize::Normalize;
use crate::data::rng::DataRng;
use crate::data::transform::{Augment, Image};
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use std::collections::BTreeMap;
use std::sync::mpsc::{channel, Receiver};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// Stream tags, so order and augmentation draws never share a generator stream.
const ORDER_TAG: u64 = 0x006f_7264_6572;
const AUGMENT_TAG: u64 = 0x6175_676d;

/// The generator that augments image `index` in `epoch` (what the loader uses; the
/// preview uses it too, so it shows exactly what the network sees).
pub fn augment_rng(seed: u64, epoch: u64, index: usize) -> DataRng {
    DataRng::for_stream(seed, &[AUGMENT_TAG, epoch, index as u64])
}

/// How batches are made.
#[derive(Clone, Debug, PartialEq)]
pub struct LoaderConfig {
    /// Images per batch. Default: 128.
    pub batch_size: usize,
    /// Reshuffle every epoch. Default: true.
    pub shuffle: bool,
    /// Drop the last batch if it is short. Default: false (keep it).
    pub drop_last: bool,
    /// Seed of shuffling and augmentation. Default: 0.
    pub seed: u64,
    /// Worker threads; 0 builds batches on the caller's thread. Default: 2.
    pub workers: usize,
    /// Batches built ahead of the consumer (at least `workers` are). Default: 4.
    pub prefetch: usize,
    /// Augmentation pipeline. Default: none.
    pub augment: Augment,
    /// Per-channel normalization; empty `mean`/`std` means scaling to `[0, 1]` only.
    /// Default: empty.
    pub normalize: Normalize,
}

impl Default for LoaderConfig {
    fn default() -> Self {
        LoaderConfig {
            batch_size: 128,
            shuffle: true,
            drop_last: false,
            seed: 0,
            workers: 2,
            prefetch: 4,
            augment: Augment::none(),
            normalize: Normalize {
                mean: Vec::new(),
                std: Vec::new(),
            },
        }
    }
}

impl LoaderConfig {
    /// Evaluation batches: the images in dataset order, `normalize`d, no augmentation,
    /// built on the caller's thread (what `eval`, a report or a study reads).
    pub fn in_order(batch_size: usize, normalize: Normalize) -> Self {
        LoaderConfig {
            batch_size,
            shuffle: false,
            workers: 0,
            normalize,
            ..LoaderConfig::default()
        }
    }
}

/// One batch: inputs, targets, and which dataset images they are.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// `[B, C, H, W]`, augmented and normalized.
    pub x: Tensor,
    /// Class of each image, `[B]`.
    pub y: Vec<usize>,
    /// Dataset index of each image, `[B]`.
    pub indices: Vec<usize>,
}

/// What every worker shares.
struct Shared {
    dataset: Arc<ImageDataset>,
    config: LoaderConfig,
    normalize: Normalize,
    out_shape: [usize; 3],
}

/// Per-thread buffers, reused from image to image.
#[derive(Default)]
struct Workspace {
    img: Image,
    scratch: Vec<f32>,
}

/// Makes batches of a dataset; see the module documentation.
pub struct Loader {
    shared: Arc<Shared>,
}

impl Loader {
    /// Checks the configuration against the dataset.
    pub fn new(dataset: Arc<ImageDataset>, config: LoaderConfig) -> Result<Self> {
        let op = "data loader";
        if config.batch_size == 0 {
            return Err(Error::config(op, "batch_size", "must be at least 1"));
        }
        if dataset.is_empty() {
            return Err(Error::config(op, "dataset", "the dataset has no images"));
        }
        if config.drop_last && dataset.len() < config.batch_size {
            return Err(Error::config(
                op,
                "drop_last",
                format!(
                    "{} images make no full batch of {}: lower the batch size or keep the last batch",
                    dataset.len(),
                    config.batch_size
                ),
            ));
        }
        if config.workers > 256 {
            return Err(Error::config(
                op,
                "workers",
                format!("{} is too many", config.workers),
            ));
        }
        let c = dataset.channels();
        let normalize = if config.normalize.mean.is_empty() && config.normalize.std.is_empty() {
            Normalize::identity(c)
        } else {
            let n = Normalize::new(config.normalize.mean.clone(), config.normalize.std.clone())?;
            if n.channels() != c {
                return Err(Error::config(
                    op,
                    "normalize",
                    format!(
                        "statistics for {} channels, but the images have {c}",
                        n.channels()
                    ),
                ));
            }
            n
        };
        config.augment.steps.iter().try_for_each(|t| t.validate())?;
        let out_shape = config.augment.output_shape(dataset.shape());
        Ok(Loader {
            shared: Arc::new(Shared {
                dataset,
                config,
                normalize,
                out_shape,
            }),
        })
    }

    /// The dataset.
    pub fn dataset(&self) -> &Arc<ImageDataset> {
        &self.shared.dataset
    }

    /// The configuration.
    pub fn config(&self) -> &LoaderConfig {
        &self.shared.config
    }

    /// The normalization in use (identity when none was given).
    pub fn normalize(&self) -> &Normalize {
        &self.shared.normalize
    }

    /// `[C, H, W]` of the images in a batch.
    pub fn output_shape(&self) -> [usize; 3] {
        self.shared.out_shape
    }

    /// Batches per epoch.
    pub fn len(&self) -> usize {
        let (n, b) = (self.shared.dataset.len(), self.shared.config.batch_size);
        if self.shared.config.drop_last {
            n / b
        } else {
            n.div_ceil(b)
        }
    }

    /// `true` when an epoch has no batches (never, for a validated loader).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The order of dataset indices in `epoch`.
    pub fn order(&self, epoch: u64) -> Vec<usize> {
        self.shared.order(epoch)
    }

    /// Builds batch `b` of `epoch` on the calling thread. Panics if `b >= len()`.
    pub fn batch(&self, epoch: u64, b: usize) -> Batch {
        let order = self.order(epoch);
        self.shared
            .build(epoch, &order, b, &mut Workspace::default())
    }

    /// The batches of `epoch`, in order.
    pub fn epoch(&self, epoch: u64) -> Epoch {
        let total = self.len();
        let order = Arc::new(self.order(epoch));
        if self.shared.config.workers == 0 {
            return Epoch {
                next: 0,
                total,
                mode: Mode::Inline {
                    shared: Arc::clone(&self.shared),
                    order,
                    epoch,
                    ws: Workspace::default(),
                },
            };
        }
        let workers = self.shared.config.workers;
        let window = Arc::new(Window {
            state: Mutex::new(WindowState {
                next_claim: 0,
                consumed: 0,
                stop: false,
            }),
            changed: Condvar::new(),
            capacity: self.shared.config.prefetch.max(workers).max(1),
            total,
        });
        let (tx, rx) = channel();
        let handles = (0..workers)
            .map(|_| {
                let (shared, order, window, tx) = (
                    Arc::clone(&self.shared),
                    Arc::clone(&order),
                    Arc::clone(&window),
                    tx.clone(),
                );
                std::thread::spawn(move || {
                    let mut ws = Workspace::default();
                    while let Some(b) = window.claim() {
                        let batch = shared.build(epoch, &order, b, &mut ws);
                        if tx.send((b, batch)).is_err() {
                            return;
                        }
                    }
                })
            })
            .collect();
        Epoch {
            next: 0,
            total,
            mode: Mode::Threads {
                rx,
                pending: BTreeMap::new(),
                window,
                handles,
            },
        }
    }
}

impl Shared {
    fn order(&self, epoch: u64) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.dataset.len()).collect();
        if self.config.shuffle {
            DataRng::for_stream(self.config.seed, &[ORDER_TAG, epoch]).shuffle(&mut order);
        }
        order
    }

    fn build(&self, epoch: u64, order: &[usize], b: usize, ws: &mut Workspace) -> Batch {
        let bs = self.config.batch_size;
        let indices = order[b * bs..((b + 1) * bs).min(order.len())].to_vec();
        let [c, h, w] = self.out_shape;
        let per = c * h * w;
        let mut x = vec![0.0f32; indices.len() * per];
        let in_shape = self.dataset.shape();
        for (&i, out) in indices.iter().zip(x.chunks_exact_mut(per)) {
            let mut rng = augment_rng(self.config.seed, epoch, i);
            ws.img.load_u8(self.dataset.image(i), in_shape);
            let aug = &self.config.augment;
            aug.apply_pixels(&mut ws.img, &mut ws.scratch, &mut rng);
            self.normalize.apply(&mut ws.img.data, h * w);
            aug.apply_normalized(&mut ws.img, &mut ws.scratch, &mut rng);
            out.copy_from_slice(&ws.img.data);
        }
        let y = indices
            .iter()
            .map(|&i| self.dataset.label(i) as usize)
            .collect();
        let n = indices.len();
        Batch {
            // The length is n·c·h·w by construction.
            x: Tensor::from_vec(x, &[n, c, h, w]).unwrap_or_else(|_| Tensor::zeros(&[n, c, h, w])),
            y,
            indices,
        }
    }
}

struct WindowState {
    next_claim: usize,
    consumed: usize,
    stop: bool,
}

/// Bounds how far the workers run ahead of the consumer.
struct Window {
    state: Mutex<WindowState>,
    changed: Condvar,
    capacity: usize,
    total: usize,
}

impl Window {
    /// The next batch number to build, waiting while the window is full; `None` at the
    /// end of the epoch or when the consumer has gone.
    fn claim(&self) -> Option<usize> {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if s.stop || s.next_claim >= self.total {
                return None;
            }
            if s.next_claim < s.consumed + self.capacity {
                s.next_claim += 1;
                return Some(s.next_claim - 1);
            }
            s = self.changed.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn update(&self, f: impl FnOnce(&mut WindowState)) {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        f(&mut s);
        self.changed.notify_all();
    }
}

enum Mode {
    Inline {
        shared: Arc<Shared>,
        order: Arc<Vec<usize>>,
        epoch: u64,
        ws: Workspace,
    },
    Threads {
        rx: Receiver<(usize, Batch)>,
        pending: BTreeMap<usize, Batch>,
        window: Arc<Window>,
        handles: Vec<JoinHandle<()>>,
    },
}

/// The batches of one epoch, in order; see [`Loader::epoch`].
pub struct Epoch {
    next: usize,
    total: usize,
    mode: Mode,
}

impl Iterator for Epoch {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        if self.next >= self.total {
            return None;
        }
        let b = self.next;
        let batch = match &mut self.mode {
            Mode::Inline {
                shared,
                order,
                epoch,
                ws,
            } => shared.build(*epoch, order, b, ws),
            Mode::Threads {
                rx,
                pending,
                window,
                handles,
            } => loop {
                if let Some(batch) = pending.remove(&b) {
                    window.update(|s| s.consumed = b + 1);
                    break batch;
                }
                match rx.recv() {
                    Ok((i, batch)) => {
                        pending.insert(i, batch);
                    }
                    Err(_) => {
                        // Every worker is gone without sending batch b: one panicked.
                        for h in handles.drain(..) {
                            if let Err(payload) = h.join() {
                                std::panic::resume_unwind(payload);
                            }
                        }
                        panic!("loader workers stopped before batch {b}");
                    }
                }
            },
        };
        self.next += 1;
        Some(batch)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.total - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Epoch {}

impl Drop for Epoch {
    fn drop(&mut self) {
        if let Mode::Threads {
            window, handles, ..
        } = &mut self.mode
        {
            window.update(|s| s.stop = true);
            for h in handles.drain(..) {
                let _ = h.join();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::dataset::numbered_classes;

    fn data(n: usize) -> Arc<ImageDataset> {
        let images: Vec<u8> = (0..n * 3 * 8 * 8).map(|i| (i * 7 % 251) as u8).collect();
        let labels = (0..n).map(|i| (i % 3) as u32).collect();
        Arc::new(ImageDataset::new(images, labels, [3, 8, 8], numbered_classes(3)).unwrap())
    }

    fn config(workers: usize) -> LoaderConfig {
        LoaderConfig {
            batch_size: 7,
            workers,
            prefetch: 2,
            seed: 11,
            augment: Augment::parse(
                "flip,crop:2:reflect,rrc:0.3-1,jitter:0.3:0.3:0.3:0.1,erase,cutout:3",
            )
            .unwrap(),
            normalize: Normalize::new(vec![0.5, 0.4, 0.3], vec![0.2, 0.25, 0.3]).unwrap(),
            ..LoaderConfig::default()
        }
    }

    #[test]
    fn same_batches_whatever_the_worker_count() {
        let d = data(40);
        let reference: Vec<Batch> = Loader::new(Arc::clone(&d), config(0))
            .unwrap()
            .epoch(3)
            .collect();
        assert_eq!(reference.len(), 6);
        assert_eq!(reference[5].y.len(), 5, "last partial batch kept");
        for workers in [1, 2, 5] {
            let got: Vec<Batch> = Loader::new(Arc::clone(&d), config(workers))
                .unwrap()
                .epoch(3)
                .collect();
            assert_eq!(got, reference, "workers = {workers}");
        }
    }

    #[test]
    fn epochs_differ_and_cover_the_dataset() {
        let d = data(40);
        let loader = Loader::new(Arc::clone(&d), config(2)).unwrap();
        let e0: Vec<usize> = loader.epoch(0).flat_map(|b| b.indices).collect();
        let e1: Vec<usize> = loader.epoch(1).flat_map(|b| b.indices).collect();
        assert_ne!(e0, e1);
        let mut sorted = e0.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..40).collect::<Vec<_>>());
        // The augmentation of an image depends on (seed, epoch, index), not its position.
        let b = loader.batch(0, 0);
        assert_eq!(b.indices, e0[..7]);
        assert_eq!(b.y, b.indices.iter().map(|i| i % 3).collect::<Vec<_>>());
    }

    #[test]
    fn unshuffled_unaugmented_batches_are_the_normalized_images() {
        let d = data(10);
        let norm = Normalize::new(vec![0.5, 0.4, 0.3], vec![0.2, 0.25, 0.3]).unwrap();
        let cfg = LoaderConfig {
            batch_size: 4,
            shuffle: false,
            drop_last: true,
            workers: 1,
            normalize: norm.clone(),
            ..LoaderConfig::default()
        };
        let loader = Loader::new(Arc::clone(&d), cfg).unwrap();
        let batches: Vec<Batch> = loader.epoch(0).collect();
        assert_eq!(batches.len(), 2, "last partial batch dropped");
        assert_eq!(batches[1].indices, vec![4, 5, 6, 7]);
        let x = batches[1].x.data();
        let p = d.image(5)[64 + 3]; // channel 1, pixel 3
        let want = (p as f32 / 255.0 - 0.4) / 0.25;
        assert!((x[192 + 64 + 3] - want).abs() < 1e-6);
    }

    #[test]
    fn early_drop_stops_workers() {
        let loader = Loader::new(data(200), config(3)).unwrap();
        let mut it = loader.epoch(0);
        assert!(it.next().is_some());
        drop(it); // must not hang
        assert_eq!(loader.epoch(1).len(), 29);
    }

    #[test]
    fn bad_configs_are_errors() {
        let d = data(5);
        let with = |f: fn(&mut LoaderConfig)| {
            let mut c = LoaderConfig::default();
            f(&mut c);
            Loader::new(Arc::clone(&d), c)
        };
        assert!(with(|c| c.batch_size = 0).is_err());
        assert!(with(|c| {
            c.batch_size = 6;
            c.drop_last = true
        })
        .is_err());
        assert!(with(|c| c.normalize = Normalize::identity(1)).is_err());
        assert!(with(|c| c.normalize.std = vec![1.0]).is_err());
        assert!(with(|_| {}).is_ok());
    }
}

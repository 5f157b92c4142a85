//! strata: a convolutional-network toolkit for the CPU, numerically equal to PyTorch.
//!
//! - [`tensor`]: the contiguous `f32` [`Tensor`].
//! - [`kernels`]: the hot loops (GEMM, im2col, pooling, normalization, maps, softmax).
//! - [`nn`]: layers with explicit forward/backward and state-dict names.
//! - [`init`]: Kaiming, Xavier and PyTorch's default initializations.
//! - [`loss`]: fused softmax cross-entropy.
//! - [`models`]: the table of models (fmnist-cnn, VGG, ResNet, plain nets) and their builder.
//! - [`optim`]: SGD, Nesterov, AdamW, learning-rate schedules, gradient clipping.
//! - [`train`]: the [`train::Trainer`] (step, epoch, evaluate, hooks) and `strata train`'s run.
//! - [`data`]: datasets (IDX, CIFAR, image folders), augmentation, the threaded loader.
//! - [`recipe`]: the lecture's seven steps of hyperparameter tuning in one budget.
//! - [`report`]: `report.html`, one self-contained page per run, search, sweep or study.
//! - [`transfer`]: fine-tuning pretrained weights (`strata finetune`).
//! - [`checkpoint`]: safetensors state dicts with torchvision names.
//! - [`predict`]: a trained model classifying image files (preprocessing as in training).
//! - [`summary`], [`bench`], [`profile`]: per-layer shapes and costs, speed, timings.
//! - [`plot`]: SVG charts; [`alloc`]: the allocator setting; [`error`]: typed errors.
//!
//! `docs/architecture.md` draws how these stand on each other and how one batch travels.
//!
//! ```
//! use strata::{Tensor, loss::CrossEntropy};
//! let logits = Tensor::from_vec(vec![2.0, 0.5, -1.0, 0.0, 0.0, 3.0], &[2, 3]).unwrap();
//! let out = CrossEntropy::default().forward(&logits, &[0, 2]).unwrap();
//! assert!(out.loss > 0.0 && out.loss < 1.0);
//! assert_eq!(out.dlogits.shape(), &[2, 3]);
//! ```

pub mod alloc;
pub mod bench;
pub mod checkpoint;
pub mod data;
pub mod error;
pub mod init;
pub mod kernels;
pub mod loss;
pub mod method;
pub mod models;
pub mod nn;
pub mod optim;
pub mod plot;
pub mod predict;
pub mod profile;
pub mod recipe;
pub mod report;
pub mod study;
pub mod summary;
pub mod tensor;
pub mod train;
pub mod transfer;
pub mod tune;

pub use error::{Error, Result};
/// The random-number crate of the layer constructors' `rng` arguments.
pub use rand;
pub use tensor::Tensor;

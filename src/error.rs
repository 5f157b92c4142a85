//! The library's one error type.
//!
//! Every variant names the operation or layer concerned and what was expected, so a
//! message can be acted on without reading the source.

use std::path::PathBuf;

/// Errors returned by strata's library functions.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor had the wrong shape for an operation.
    #[error("{op}: expected shape {expected}, got {got:?}")]
    ShapeMismatch {
        /// The operation or layer that checked the shape.
        op: String,
        /// What was expected, in words or as a shape (e.g. `[N, 3, H, W]`).
        expected: String,
        /// The shape that was received.
        got: Vec<usize>,
    },
    /// A layer or kernel was configured with an impossible value.
    #[error("{layer}: invalid `{field}`: {reason}")]
    InvalidConfig {
        /// The layer or component being configured.
        layer: String,
        /// The offending field.
        field: String,
        /// Why the value is invalid and what would be valid.
        reason: String,
    },
    /// A method was called in the wrong order (e.g. backward before a training forward).
    #[error("{layer}: {reason}")]
    State {
        /// The layer concerned.
        layer: String,
        /// What went wrong and how to fix it.
        reason: String,
    },
    /// Training diverged: the loss became NaN or infinite.
    #[error(
        "the loss became {loss} at epoch {epoch}, iteration {iteration} (step {step}) with learning rate {lr:.3e}; \
         nothing of this epoch was saved (the checkpoint of the last finished epoch, if there is one, \
         is intact). Try a learning rate 3-10x lower (--lr), gradient clipping \
         (--clip-grad 1.0) or a warm-up (--warmup-epochs 1)"
    )]
    Diverged {
        /// The non-finite loss value.
        loss: f64,
        /// Epoch, from 1.
        epoch: u64,
        /// Iteration within the epoch, from 1.
        iteration: u64,
        /// Optimizer steps taken before.
        step: u64,
        /// Learning rate of that step.
        lr: f32,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A file was readable but its content is not what was expected.
    #[error("{path}: {reason}")]
    Format {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A download failed or delivered the wrong bytes.
    #[error("download of {url} failed: {reason}")]
    Download {
        /// What was being fetched.
        url: String,
        /// What went wrong and what to do about it.
        reason: String,
    },
    /// A named dataset is not available anywhere strata looks.
    #[error("dataset `{name}` not found: {reason}")]
    NotFound {
        /// The dataset asked for.
        name: String,
        /// Where strata looked and how to get it.
        reason: String,
    },
}

/// Shorthand for `std::result::Result<T, strata::Error>`.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// A [`Error::ShapeMismatch`] built from displayable parts.
    pub fn shape(op: impl Into<String>, expected: impl Into<String>, got: &[usize]) -> Self {
        Error::ShapeMismatch {
            op: op.into(),
            expected: expected.into(),
            got: got.to_vec(),
        }
    }

    /// A [`Error::InvalidConfig`] built from displayable parts.
    pub fn config(
        layer: impl Into<String>,
        field: impl Into<String>,
        reason: impl Into<String>,
    ) -> Self {
        Error::InvalidConfig {
            layer: layer.into(),
            field: field.into(),
            reason: reason.into(),
        }
    }

    /// A [`Error::State`] built from displayable parts.
    pub fn state(layer: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::State {
            layer: layer.into(),
            reason: reason.into(),
        }
    }
}

//! The run's history: one JSON object per line in `runs/<name>/history.jsonl`, every
//! `log_every` iterations (`"kind": "iter"`) and at the end of every epoch
//! (`"kind": "epoch"`). Plots and the diagnosis read this file.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One line of the history.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// `"iter"` or `"epoch"`.
    pub kind: String,
    /// Epoch, from 1.
    pub epoch: u64,
    /// Optimizer steps so far.
    pub step: u64,
    /// Learning rate of the last step.
    pub lr: f32,
    /// Mean training loss (over the last `log_every` iterations, or the epoch).
    pub train_loss: f64,
    /// Training accuracy over the same span (on augmented images, in training mode).
    pub train_acc: f64,
    /// Validation loss (epoch records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    /// Validation accuracy (epoch records).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_acc: Option<f64>,
    /// Seconds since the run started (cumulative over resumes).
    pub time_s: f64,
    /// Training images per second over the span.
    pub images_per_s: f64,
}

/// Appends records to the history file, one flushed line each.
pub struct History {
    path: PathBuf,
}

impl History {
    /// The history at `path` (created on the first append).
    pub fn new(path: &Path) -> Self {
        History {
            path: path.to_path_buf(),
        }
    }

    /// Appends one record.
    pub fn append(&self, r: &Record) -> Result<()> {
        let io = |source| Error::Io {
            path: self.path.clone(),
            source,
        };
        let line = serde_json::to_string(r).map_err(|e| Error::state("history", e.to_string()))?;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)
            .map_err(io)?;
        writeln!(f, "{line}").map_err(io)
    }

    /// Every record in the file.
    pub fn read(path: &Path) -> Result<Vec<Record>> {
        read_jsonl(path, "history record")
    }

    /// Keeps only the records of epochs `≤ epoch` (used when resuming from the
    /// checkpoint of that epoch), rewriting the file atomically.
    pub fn truncate_after(&self, epoch: u64) -> Result<()> {
        let kept: Vec<Record> = Self::read(&self.path)?
            .into_iter()
            .filter(|r| r.epoch <= epoch)
            .collect();
        let mut text = String::new();
        for r in &kept {
            text.push_str(
                &serde_json::to_string(r).map_err(|e| Error::state("history", e.to_string()))?,
            );
            text.push('\n');
        }
        crate::checkpoint::write_atomic(&self.path, text.as_bytes())
    }
}

/// Every line of a JSON-lines file as a `T` (none when the file does not exist); a bad
/// line is an error naming the file, the line and `what` it should have been.
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<Vec<T>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(source) => {
            return Err(Error::Io {
                path: path.to_path_buf(),
                source,
            })
        }
    };
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l).map_err(|e| Error::Format {
                path: path.to_path_buf(),
                reason: format!("line {}: not a {what} ({e})", i + 1),
            })
        })
        .collect()
}

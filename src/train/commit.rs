//! A run folder's checkpoint as one atomic unit, and the lock on the folder.
//!
//! After each epoch: `best.safetensors` (when the epoch improved), then the optimizer
//! state under a new name (`optim-EPOCH.safetensors`), then `last.safetensors`, whose
//! header names that optimizer file and its SHA-256. Each file is written to `*.tmp`,
//! synced and renamed; the rename of `last` is the commit point. A process killed at any
//! moment leaves either the previous commit (its optimizer file is deleted only after
//! the new `last` is in place) or the new one, never a mix: resuming reads the optimizer
//! file `last` names and refuses one whose checksum differs. Leftovers of a killed write
//! (`*.tmp`, optimizer files no `last` names) are removed when the run resumes.
//!
//! A process writing a run holds an advisory lock on `RUN/.lock` (released by the
//! operating system when the process ends, however it ends); a second `strata train` or
//! `--resume` on the same folder is refused with the holder's PID.

use super::{RunPaths, Trainer};
use crate::checkpoint;
use crate::error::{Error, Result};
use crate::tensor::Tensor;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::{Read, Seek, Write};
use std::path::Path;

/// Header key of `last`: the optimizer state file of the same commit.
pub const META_OPTIM_FILE: &str = "strata.optim_file";
/// Header key of `last`: the SHA-256 (hex) of that file.
pub const META_OPTIM_SHA256: &str = "strata.optim_sha256";

fn io_err(path: &Path) -> impl Fn(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Takes the run folder's lock, or says which process holds it. Keep the file open for
/// as long as the run is written.
pub(super) fn lock(paths: &RunPaths) -> Result<std::fs::File> {
    let path = paths.lock_file();
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(io_err(&path))?;
    match f.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            let mut pid = String::new();
            let _ = f.read_to_string(&mut pid);
            let pid = pid.trim();
            let holder = if pid.is_empty() {
                "another process".to_string()
            } else {
                format!("process {pid}")
            };
            return Err(Error::state(
                "run folder",
                format!(
                    "{} is being written by {holder} (another `strata train` or `--resume`); \
                     wait for it to finish, stop it, or give this run another --run-dir",
                    paths.dir.display()
                ),
            ));
        }
        Err(std::fs::TryLockError::Error(e)) => return Err(io_err(&path)(e)),
    }
    let pid = std::process::id().to_string();
    (|| -> std::io::Result<()> {
        f.set_len(0)?;
        f.rewind()?;
        f.write_all(pid.as_bytes())?;
        f.flush()
    })()
    .map_err(io_err(&path))?;
    Ok(f)
}

/// Commits the state after `epoch` epochs: the optimizer file, then `last` naming it
/// (in `meta`), then removes the optimizer files of earlier commits.
pub(super) fn commit_epoch(
    paths: &RunPaths,
    trainer: &mut Trainer,
    epoch: u64,
    meta: &mut BTreeMap<String, String>,
) -> Result<()> {
    let optim = paths.optim(epoch);
    let header = BTreeMap::from([(super::META_EPOCH.to_string(), epoch.to_string())]);
    let bytes = checkpoint::tensors_to_bytes(trainer.optimizer.state_tensors(), &header)?;
    checkpoint::write_atomic(&optim, &bytes)?;
    let name = optim
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    meta.insert(META_OPTIM_FILE.into(), name);
    meta.insert(META_OPTIM_SHA256.into(), sha256_hex(&bytes));
    checkpoint::save(&mut trainer.model, &paths.last(), meta)?;
    clean(paths, Some(&optim))
}

/// The optimizer state of the commit whose `last` header is `meta`, checked against the
/// checksum recorded there; a run written before checksums reads `last.optim.safetensors`.
pub(super) fn read_optimizer(
    paths: &RunPaths,
    meta: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, Tensor>> {
    let Some(name) = meta.get(META_OPTIM_FILE) else {
        return Ok(checkpoint::read_tensors(&paths.last_optim())?.0);
    };
    let bad_name = name.contains('/') || name.contains('\\') || name.starts_with('.');
    let path = paths.dir.join(name);
    if bad_name {
        return Err(Error::Format {
            path: paths.last(),
            reason: format!(
                "names the optimizer file `{name}`, which is not a file of the run folder"
            ),
        });
    }
    let bytes = std::fs::read(&path).map_err(|e| Error::Format {
        path: path.clone(),
        reason: format!(
            "cannot read the optimizer state that last.safetensors was committed with ({e}); \
             the run folder is incomplete: start the run again, or train from its weights \
             with a fresh optimizer"
        ),
    })?;
    let want = meta
        .get(META_OPTIM_SHA256)
        .map(String::as_str)
        .unwrap_or("");
    if sha256_hex(&bytes) != want {
        return Err(Error::Format {
            path,
            reason: "does not match the checksum recorded in last.safetensors: the optimizer \
                     state is not the one the weights were saved with (was the folder edited \
                     or copied in part?)"
                .into(),
        });
    }
    Ok(checkpoint::read_tensors(&path)?.0)
}

/// Removes `*.tmp` leftovers and every optimizer file but `keep` (and, once a commit
/// names its own, the old-style `last.optim.safetensors`).
pub(super) fn clean(paths: &RunPaths, keep: Option<&Path>) -> Result<()> {
    let entries = std::fs::read_dir(&paths.dir).map_err(io_err(&paths.dir))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        let optim = (name.starts_with("optim-") && name.ends_with(".safetensors"))
            || name == "last.optim.safetensors";
        let stale = name.ends_with(".tmp") || (optim && keep.is_some_and(|k| k != path));
        if stale {
            std::fs::remove_file(&path).map_err(io_err(&path))?;
        }
    }
    Ok(())
}

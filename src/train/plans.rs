//! Where a run's timed kernel choices live between processes ([`PlanBook`]).
//!
//! - The run folder's `plans.json` holds the choices the run used, with the CPU they
//!   were timed on. A resumed run reads them back before its first step and applies them
//!   over anything else, so the resumed steps compute what the uninterrupted ones would
//!   have (a choice decides the rounding of a layer's sums).
//! - A cache file keyed by CPU model (`$STRATA_PLAN_CACHE`, else
//!   `$XDG_CACHE_HOME/strata/conv-plans.json`, else `~/.cache/strata/conv-plans.json`;
//!   `STRATA_PLAN_CACHE=off` for none) gives a new run on the same kind of CPU the
//!   choices of earlier runs, so it times only geometries it has not seen. A cache that
//!   cannot be read is ignored (a note says so); it is only a cache.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::checkpoint::write_atomic;
use crate::error::{Error, Result};
use crate::kernels::conv::{Choice, PlanBook};

/// The CPU model as `/proc/cpuinfo` names it (`unknown` elsewhere).
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The cache file, or `None` when turned off or no home is known.
pub fn cache_path() -> Option<PathBuf> {
    if let Some(v) = std::env::var_os("STRATA_PLAN_CACHE") {
        return (!v.is_empty() && v != "off").then(|| PathBuf::from(v));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("strata").join("conv-plans.json"))
}

/// The cache file's content: choices per CPU model.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CacheFile {
    cpus: BTreeMap<String, BTreeMap<String, Choice>>,
}

/// A run folder's `plans.json`.
#[derive(Debug, Serialize, Deserialize)]
pub struct RunPlans {
    /// The CPU the choices were timed on.
    pub cpu: String,
    /// The choices, by key (`kernels::conv::book::key`).
    pub choices: BTreeMap<String, Choice>,
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<Option<T>> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| Error::Format {
                path: path.to_path_buf(),
                reason: e.to_string(),
            }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn write_json<T: Serialize>(path: &Path, v: &T) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let text = serde_json::to_string_pretty(v).map_err(|e| Error::state("plans", e.to_string()))?;
    write_atomic(path, text.as_bytes())
}

/// The cached choices for `cpu` in `path` (none when the file does not exist).
pub fn load_cache(path: &Path, cpu: &str) -> Result<BTreeMap<String, Choice>> {
    Ok(read_json::<CacheFile>(path)?
        .and_then(|mut f| f.cpus.remove(cpu))
        .unwrap_or_default())
}

/// Adds `choices` under `cpu` to the cache file (kept entries are replaced).
pub fn save_cache(path: &Path, cpu: &str, choices: &BTreeMap<String, Choice>) -> Result<()> {
    // A cache that cannot be read is replaced rather than kept broken.
    let mut f = read_json::<CacheFile>(path)
        .ok()
        .flatten()
        .unwrap_or_default();
    let mine = f.cpus.entry(cpu.to_string()).or_default();
    let before = mine.clone();
    mine.extend(choices.iter().map(|(k, c)| (k.clone(), *c)));
    if *mine == before && path.exists() {
        return Ok(());
    }
    write_json(path, &f)
}

/// A run folder's choices (`None` when it has no `plans.json`).
pub fn load_run(path: &Path) -> Result<Option<RunPlans>> {
    read_json(path).map_err(|e| match e {
        Error::Format { path, reason } => Error::Format {
            path,
            reason: format!(
                "{reason} (the run's kernel choices; delete the file to time them again, \
                 and the resumed epochs may then round differently)"
            ),
        },
        other => other,
    })
}

/// Writes a run folder's `plans.json` with what `book` used, if anything.
pub fn save_run(path: &Path, book: &PlanBook) -> Result<()> {
    let choices = book.used();
    if choices.is_empty() {
        return Ok(());
    }
    if let Ok(Some(old)) = load_run(path) {
        if old.choices == choices {
            return Ok(());
        }
    }
    write_json(
        path,
        &RunPlans {
            cpu: cpu_model(),
            choices,
        },
    )
}

/// A book for a new run: the cached choices of this CPU (a note when the cache cannot
/// be read).
pub fn new_book(note: &mut dyn FnMut(&str)) -> PlanBook {
    let Some(path) = cache_path() else {
        return PlanBook::default();
    };
    match load_cache(&path, &cpu_model()) {
        Ok(c) => PlanBook::with(c),
        Err(e) => {
            note(&format!("ignoring the kernel-choice cache: {e}"));
            PlanBook::default()
        }
    }
}

/// Records what `book` used: the run folder's `plans.json` and the cache file (whose
/// failure is a note, not an error).
pub fn record(run_file: &Path, book: &PlanBook, note: &mut dyn FnMut(&str)) -> Result<()> {
    save_run(run_file, book)?;
    // Only what was timed here: choices pinned from a run timed elsewhere are not this
    // CPU's.
    let timed = book.timed();
    if !timed.is_empty() {
        if let Some(path) = cache_path() {
            if let Err(e) = save_cache(&path, &cpu_model(), &timed) {
                note(&format!("could not update the kernel-choice cache: {e}"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::conv::Path as Kernel;

    #[test]
    fn the_cache_keeps_each_cpu_apart_and_a_run_file_round_trips() {
        let dir = std::env::temp_dir().join(format!("strata-plans-{}", std::process::id()));
        let cache = dir.join("sub").join("conv-plans.json");
        let c = |forward, bf16| Choice { forward, bf16 };
        let a = BTreeMap::from([("k1".to_string(), c(Kernel::Gemm, false))]);
        let b = BTreeMap::from([("k1".to_string(), c(Kernel::Direct, true))]);
        assert!(load_cache(&cache, "cpu A").unwrap().is_empty());
        save_cache(&cache, "cpu A", &a).unwrap();
        save_cache(&cache, "cpu B", &b).unwrap();
        assert_eq!(load_cache(&cache, "cpu A").unwrap(), a);
        assert_eq!(load_cache(&cache, "cpu B").unwrap(), b);
        assert!(load_cache(&cache, "cpu C").unwrap().is_empty());
        // A broken cache is an error to read and replaced on the next write.
        std::fs::write(&cache, "{not json").unwrap();
        assert!(load_cache(&cache, "cpu A").is_err());
        save_cache(&cache, "cpu A", &a).unwrap();
        assert_eq!(load_cache(&cache, "cpu A").unwrap(), a);

        let run = dir.join("plans.json");
        let book = PlanBook::default();
        save_run(&run, &book).unwrap();
        assert!(
            load_run(&run).unwrap().is_none(),
            "nothing used, nothing written"
        );
        book.insert("k2".into(), c(Kernel::Winograd, false));
        save_run(&run, &book).unwrap();
        let back = load_run(&run).unwrap().unwrap();
        assert_eq!(back.choices, book.used());
        assert_eq!(back.cpu, cpu_model());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

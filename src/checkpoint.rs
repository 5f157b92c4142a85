//! Checkpoints in safetensors, with torchvision's state-dict names.
//!
//! A checkpoint holds every parameter and buffer of a network under its state-dict name
//! (`layer1.0.conv1.weight`, `bn1.running_var`, `fc.bias`), as little-endian f32 —
//! except `num_batches_tracked`, stored as an int64 scalar like PyTorch's — and string
//! metadata in the header (model name, config, normalization, class names). A torchvision
//! state dict saved with `safetensors.torch.save_file` therefore loads here, and a strata
//! checkpoint loads into torchvision with `load_state_dict`.
//!
//! Writes are atomic: the bytes go to `<path>.tmp` in the same folder, are synced, then
//! renamed over `<path>`; a failed write leaves no half file behind. Loading reports
//! missing and unexpected keys and shape mismatches; strict loading refuses any of them
//! and changes nothing, non-strict loading takes what matches (transfer learning).

use crate::error::{Error, Result};
use crate::nn::Layer;
use crate::tensor::Tensor;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

/// What a load found, key by key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct LoadReport {
    /// Keys loaded into the network.
    pub loaded: Vec<String>,
    /// Keys of the network that the file lacks.
    pub missing: Vec<String>,
    /// Keys of the file that the network lacks.
    pub unexpected: Vec<String>,
    /// `(key, network shape, file shape)` where they differ.
    pub mismatched: Vec<(String, Vec<usize>, Vec<usize>)>,
}

impl LoadReport {
    /// True when every key matched in name and shape.
    pub fn is_exact(&self) -> bool {
        self.missing.is_empty() && self.unexpected.is_empty() && self.mismatched.is_empty()
    }

    /// A few lines for a person: counts, then the first keys of each kind.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "{} loaded, {} missing, {} unexpected, {} with another shape",
            self.loaded.len(),
            self.missing.len(),
            self.unexpected.len(),
            self.mismatched.len()
        );
        let list = |v: &[String]| {
            let mut l = v.iter().take(5).cloned().collect::<Vec<_>>().join(", ");
            if v.len() > 5 {
                l.push_str(&format!(", … ({} more)", v.len() - 5));
            }
            l
        };
        if !self.missing.is_empty() {
            s.push_str(&format!("\n  missing: {}", list(&self.missing)));
        }
        if !self.unexpected.is_empty() {
            s.push_str(&format!("\n  unexpected: {}", list(&self.unexpected)));
        }
        for (k, net, file) in self.mismatched.iter().take(5) {
            s.push_str(&format!("\n  shape of {k}: network {net:?}, file {file:?}"));
        }
        s
    }
}

fn is_counter(name: &str) -> bool {
    name.ends_with("num_batches_tracked")
}

/// Every parameter and buffer of `net` by name (a copy).
pub fn state_dict(net: &mut dyn Layer) -> BTreeMap<String, Tensor> {
    let mut out = BTreeMap::new();
    net.visit_params("", &mut |n, p| {
        out.insert(n.to_string(), p.value.clone());
    });
    net.visit_buffers("", &mut |n, b| {
        out.insert(n.to_string(), b.clone());
    });
    out
}

/// The safetensors bytes of `net`'s state and `metadata`.
pub fn to_bytes(net: &mut dyn Layer, metadata: &BTreeMap<String, String>) -> Result<Vec<u8>> {
    tensors_to_bytes(state_dict(net), metadata)
}

/// Writes named tensors (not a network's state: optimizer state, probes) atomically.
pub fn write_tensors(
    path: &Path,
    tensors: BTreeMap<String, Tensor>,
    metadata: &BTreeMap<String, String>,
) -> Result<()> {
    write_atomic(path, &tensors_to_bytes(tensors, metadata)?)
}

fn not_safetensors(path: &Path, e: safetensors::SafeTensorError) -> Error {
    format_err(
        path,
        format!("not a valid safetensors file ({e}); was it truncated or written by another tool?"),
    )
}

/// Reads every tensor of a safetensors file as f32, with the file's metadata.
pub fn read_tensors(path: &Path) -> Result<(BTreeMap<String, Tensor>, BTreeMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    tensors_from_bytes(&bytes, path)
}

/// [`read_tensors`] from bytes already in memory (`path` names them in errors).
pub fn tensors_from_bytes(
    bytes: &[u8],
    path: &Path,
) -> Result<(BTreeMap<String, Tensor>, BTreeMap<String, String>)> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| not_safetensors(path, e))?;
    let (_, header) =
        SafeTensors::read_metadata(bytes).map_err(|e| format_err(path, e.to_string()))?;
    let mut out = BTreeMap::new();
    for (name, view) in st.tensors() {
        let data = decode(path, &name, &view)?;
        let t =
            Tensor::from_vec(data, view.shape()).map_err(|e| format_err(path, e.to_string()))?;
        out.insert(name, t);
    }
    Ok((
        out,
        header
            .metadata()
            .clone()
            .unwrap_or_default()
            .into_iter()
            .collect(),
    ))
}

pub(crate) fn tensors_to_bytes(
    state: BTreeMap<String, Tensor>,
    metadata: &BTreeMap<String, String>,
) -> Result<Vec<u8>> {
    // Owned little-endian bytes first; the views borrow them.
    let encoded: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = state
        .into_iter()
        .map(|(name, t)| {
            if is_counter(&name) {
                let v = t.data().first().copied().unwrap_or(0.0) as i64;
                (name, Dtype::I64, vec![], v.to_le_bytes().to_vec())
            } else {
                let bytes = t.data().iter().flat_map(|v| v.to_le_bytes()).collect();
                (name, Dtype::F32, t.shape().to_vec(), bytes)
            }
        })
        .collect();
    let mut views = Vec::with_capacity(encoded.len());
    for (name, dtype, shape, bytes) in &encoded {
        let view = TensorView::new(*dtype, shape.clone(), bytes)
            .map_err(|e| Error::state("checkpoint", format!("cannot encode {name}: {e}")))?;
        views.push((name.clone(), view));
    }
    let meta: HashMap<String, String> = metadata
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    safetensors::serialize(views, Some(meta))
        .map_err(|e| Error::state("checkpoint", format!("cannot serialize: {e}")))
}

/// Writes `net`'s state to `path` atomically (temporary file, sync, rename).
pub fn save(net: &mut dyn Layer, path: &Path, metadata: &BTreeMap<String, String>) -> Result<()> {
    let bytes = to_bytes(net, metadata)?;
    write_atomic(path, &bytes)
}

/// For the kill tests: `STRATA_TEST_SLOW_WRITE_MS=N` sleeps N ms between writing a
/// temporary file and renaming it, so that a test's kills can land inside checkpoint
/// writes. Unset (always, outside those tests), it costs one cached lookup.
fn slow_write_hook() {
    static DELAY: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    let delay = DELAY.get_or_init(|| {
        std::env::var("STRATA_TEST_SLOW_WRITE_MS")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    if let Some(ms) = *delay {
        std::thread::sleep(std::time::Duration::from_millis(ms));
    }
}

/// Writes `bytes` to `path` through `<path>.tmp` and a rename.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = PathBuf::from(tmp);
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let result = (|| -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        slow_write_hook();
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(e));
    }
    Ok(())
}

fn format_err(path: &Path, reason: impl Into<String>) -> Error {
    Error::Format {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Decodes one tensor of the file to f32.
fn decode(path: &Path, name: &str, view: &TensorView) -> Result<Vec<f32>> {
    let b = view.data();
    Ok(match view.dtype() {
        Dtype::F32 => b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
        Dtype::F64 => b
            .chunks_exact(8)
            .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        Dtype::BF16 => b.chunks_exact(2).map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16)).collect(),
        Dtype::I64 => b
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f32)
            .collect(),
        other => {
            return Err(format_err(
                path,
                format!("tensor {name} has dtype {other:?}; strata reads F32, F64, BF16 and I64 (convert with torch: t.float())"),
            ))
        }
    })
}

/// Reads the string metadata of a safetensors file.
pub fn read_metadata(path: &Path) -> Result<BTreeMap<String, String>> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| not_safetensors(path, e))?;
    Ok(header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect())
}

/// Loads `path` into `net`. Strict: any missing, unexpected or mis-shaped key is an
/// error and `net` is left unchanged. Non-strict: matching keys are loaded, the rest is
/// reported. Returns the report and the file's metadata.
pub fn load(
    net: &mut dyn Layer,
    path: &Path,
    strict: bool,
) -> Result<(LoadReport, BTreeMap<String, String>)> {
    let bytes = std::fs::read(path).map_err(|source| Error::Io {
        path: path.to_path_buf(),
        source,
    })?;
    load_bytes(net, &bytes, path, strict)
}

/// [`load`] from bytes already in memory (`path` names them in errors).
pub fn load_bytes(
    net: &mut dyn Layer,
    bytes: &[u8],
    path: &Path,
    strict: bool,
) -> Result<(LoadReport, BTreeMap<String, String>)> {
    let st = SafeTensors::deserialize(bytes).map_err(|e| not_safetensors(path, e))?;
    let (_, header) =
        SafeTensors::read_metadata(bytes).map_err(|e| format_err(path, e.to_string()))?;
    let metadata: BTreeMap<String, String> = header
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();

    let mut shapes = vec![];
    for name in st.names() {
        let view = st
            .tensor(name)
            .map_err(|e| format_err(path, format!("tensor {name}: {e}")))?;
        shapes.push((name.to_string(), view.shape().to_vec()));
    }
    let get = |name: &str| {
        let view = st
            .tensor(name)
            .map_err(|e| format_err(path, format!("tensor {name}: {e}")))?;
        decode(path, name, &view)
    };
    let report = put_matching(net, &shapes, get, strict, |reason| format_err(path, reason))?;
    Ok((report, metadata))
}

/// Loads a state dict held in memory (names as [`state_dict`] gives them) into `net`:
/// strictly (every name and shape must match, else an error that lists the differences
/// and nothing is loaded) or not (the tensors that match are loaded; the report says
/// what was missing, unexpected or of another shape — for a new head, say).
pub fn load_state_dict(
    net: &mut dyn Layer,
    tensors: &BTreeMap<String, Tensor>,
    strict: bool,
) -> Result<LoadReport> {
    let shapes: Vec<(String, Vec<usize>)> = tensors
        .iter()
        .map(|(k, t)| (k.clone(), t.shape().to_vec()))
        .collect();
    let get = |name: &str| -> Result<Vec<f32>> {
        Ok(tensors
            .get(name)
            .map(|t| t.data().to_vec())
            .unwrap_or_default())
    };
    put_matching(net, &shapes, get, strict, |reason| {
        Error::state("load_state_dict", format!("the state dict {reason}"))
    })
}

/// Matches `(name, shape)` of a source against `net`, then copies the matching tensors
/// (values from `get`) into it.
fn put_matching(
    net: &mut dyn Layer,
    source: &[(String, Vec<usize>)],
    get: impl Fn(&str) -> Result<Vec<f32>>,
    strict: bool,
    err: impl Fn(String) -> Error,
) -> Result<LoadReport> {
    let ours: BTreeMap<String, Vec<usize>> = state_dict(net)
        .into_iter()
        .map(|(k, t)| (k, t.shape().to_vec()))
        .collect();
    let mut report = LoadReport::default();
    let mut values: BTreeMap<String, Vec<f32>> = BTreeMap::new();
    for (name, file_shape) in source {
        match ours.get(name) {
            None => report.unexpected.push(name.clone()),
            Some(shape) => {
                let scalar_both = shape.iter().product::<usize>() == 1
                    && file_shape.iter().product::<usize>() == 1;
                if shape != file_shape && !scalar_both {
                    report
                        .mismatched
                        .push((name.clone(), shape.clone(), file_shape.clone()));
                } else {
                    values.insert(name.clone(), get(name)?);
                }
            }
        }
    }
    report.missing = ours
        .keys()
        .filter(|k| !source.iter().any(|(n, _)| n == *k))
        .cloned()
        .collect();
    report.unexpected.sort();
    report.mismatched.sort();
    if strict && !report.is_exact() {
        return Err(err(format!(
            "does not match the network: {}\n(load non-strictly to take only the matching tensors)",
            report.describe()
        )));
    }
    let put = |name: &str, t: &mut Tensor, loaded: &mut Vec<String>| {
        if let Some(v) = values.get(name) {
            t.data_mut().copy_from_slice(v);
            loaded.push(name.to_string());
        }
    };
    let mut loaded = vec![];
    net.visit_params("", &mut |n, p| put(n, &mut p.value, &mut loaded));
    net.visit_buffers("", &mut |n, b| put(n, b, &mut loaded));
    report.loaded = loaded;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::Mode;

    fn tmp(name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("strata-ckpt-{}-{name}", std::process::id()))
    }

    #[test]
    fn save_load_round_trip_gives_identical_outputs() {
        let mut a = crate::models::build("resnet20", None).unwrap();
        let mut cfg = a.config.clone();
        cfg.seed = 99;
        let mut b = crate::models::build("resnet20", Some(cfg)).unwrap();
        // make the buffers non-trivial
        let x = Tensor::randn(
            &[2, 3, 32, 32],
            0.0,
            1.0,
            &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1),
        );
        a.forward(&x, Mode::Train).unwrap();
        let path = tmp("rt.safetensors");
        let meta = BTreeMap::from([("model".to_string(), "resnet20".to_string())]);
        save(&mut a, &path, &meta).unwrap();
        let (report, m) = load(&mut b, &path, true).unwrap();
        assert!(report.is_exact(), "{}", report.describe());
        assert_eq!(m.get("model").map(String::as_str), Some("resnet20"));
        let ya = a.forward(&x, Mode::Eval).unwrap();
        let yb = b.forward(&x, Mode::Eval).unwrap();
        assert_eq!(ya, yb);
        assert_eq!(state_dict(&mut a), state_dict(&mut b));
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn truncated_foreign_and_mismatched_files_are_errors_that_say_what_is_wrong() {
        let mut net = crate::models::build("fmnist-cnn", None).unwrap();
        let bytes = to_bytes(&mut net, &BTreeMap::new()).unwrap();
        let p = Path::new("x.safetensors");
        for cut in [0, 7, 8, 100, bytes.len() / 2, bytes.len() - 1] {
            let err = load_bytes(&mut net, &bytes[..cut], p, true)
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("x.safetensors") && err.contains("safetensors"),
                "{err}"
            );
        }
        let err = load_bytes(&mut net, b"PK\x03\x04 this is a zip file", p, true).unwrap_err();
        assert!(err.to_string().contains("not a valid safetensors"), "{err}");
        // another model: strict refuses and names keys; non-strict loads what matches
        let mut other = crate::models::build("resnet20", None).unwrap();
        let before = state_dict(&mut other);
        let err = load_bytes(&mut other, &bytes, p, true)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("missing: bn1.bias") && err.contains("unexpected: classifier.bias"),
            "{err}"
        );
        assert_eq!(
            state_dict(&mut other),
            before,
            "strict failure must change nothing"
        );
        let (report, _) = load_bytes(&mut other, &bytes, p, false).unwrap();
        assert!(report.loaded.is_empty() && !report.missing.is_empty());
    }

    #[test]
    fn a_model_comes_back_from_its_checkpoint_with_its_config() {
        let mut cfg = crate::models::default_config("fmnist-cnn").unwrap();
        cfg.width = 0.5;
        cfg.classes = 7;
        let mut m = crate::models::build("fmnist-cnn", Some(cfg)).unwrap();
        let path = tmp("meta.safetensors");
        let mut meta = m.metadata().unwrap();
        meta.insert("strata.classes".into(), "a,b,c".into());
        save(&mut m, &path, &meta).unwrap();
        let (mut back, meta2) = crate::models::Model::from_checkpoint(&path).unwrap();
        assert_eq!(back.config, m.config);
        assert_eq!(
            meta2.get("strata.classes").map(String::as_str),
            Some("a,b,c")
        );
        assert_eq!(state_dict(&mut back), state_dict(&mut m));
        // a file without the header is refused with a hint
        save(&mut m, &path, &BTreeMap::new()).unwrap();
        let err = crate::models::Model::from_checkpoint(&path)
            .unwrap_err()
            .to_string();
        assert!(err.contains("strata.model"), "{err}");
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn non_strict_load_reports_shape_mismatch_and_loads_the_rest() {
        let mut ten = crate::models::build("resnet20", None).unwrap();
        let mut cfg = ten.config.clone();
        cfg.classes = 5;
        let mut five = crate::models::build("resnet20", Some(cfg)).unwrap();
        let bytes = to_bytes(&mut ten, &BTreeMap::new()).unwrap();
        let (report, _) = load_bytes(&mut five, &bytes, Path::new("m"), false).unwrap();
        let names: Vec<&str> = report.mismatched.iter().map(|m| m.0.as_str()).collect();
        assert_eq!(names, ["fc.bias", "fc.weight"]);
        assert_eq!(report.mismatched[1].1, vec![5, 64]);
        assert_eq!(report.loaded.len(), state_dict(&mut five).len() - 2);
    }
}

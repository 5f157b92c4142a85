//! Reader for the `strata-fixture-v1` files made by `tools/make_fixtures.py`.

use safetensors::SafeTensors;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use strata::Tensor;

pub const REGENERATE: &str =
    "regenerate them with `/opt/torchenv/bin/python tools/make_fixtures.py` \
     (see tests/fixtures/README.md for installing torch)";

/// One fixture case: its tensors by name and its metadata.
pub struct Fixture {
    pub name: String,
    pub tensors: BTreeMap<String, Tensor>,
    pub meta: BTreeMap<String, String>,
}

impl Fixture {
    pub fn get(&self, name: &str) -> Result<&Tensor, String> {
        self.tensors
            .get(name)
            .ok_or_else(|| format!("{}: tensor `{name}` missing; {REGENERATE}", self.name))
    }

    pub fn meta(&self, key: &str) -> Result<&str, String> {
        self.meta
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| format!("{}: metadata `{key}` missing; {REGENERATE}", self.name))
    }

    /// Names after `prefix.` of the tensors that start with it.
    pub fn with_prefix(&self, prefix: &str) -> Vec<String> {
        self.tensors
            .keys()
            .filter_map(|k| k.strip_prefix(prefix).and_then(|r| r.strip_prefix('.')))
            .map(str::to_string)
            .collect()
    }
}

pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("fixtures")
}

pub fn load(path: &Path) -> Result<Fixture, String> {
    let name = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let bytes =
        std::fs::read(path).map_err(|e| format!("{}: {e}; {REGENERATE}", path.display()))?;
    let (_, header) =
        SafeTensors::read_metadata(&bytes).map_err(|e| format!("{name}: {e}; {REGENERATE}"))?;
    let meta: BTreeMap<String, String> = header
        .metadata()
        .as_ref()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let format = meta.get("format").map(String::as_str);
    if !matches!(
        format,
        Some("strata-fixture-v1" | "strata-model-fixture-v1")
    ) {
        return Err(format!(
            "{name}: not a strata-fixture-v1 file; {REGENERATE}"
        ));
    }
    let st = SafeTensors::deserialize(&bytes).map_err(|e| format!("{name}: {e}; {REGENERATE}"))?;
    let mut tensors = BTreeMap::new();
    for (tname, view) in st.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(format!(
                "{name}: tensor {tname} is {:?}, expected F32",
                view.dtype()
            ));
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();
        let t = Tensor::from_vec(data, view.shape()).map_err(|e| format!("{name}: {e}"))?;
        tensors.insert(tname, t);
    }
    Ok(Fixture {
        name,
        tensors,
        meta,
    })
}

/// Every fixture in the folder, sorted by name.
pub fn load_all() -> Vec<Fixture> {
    let dir = dir();
    let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}; {REGENERATE}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| load(p).unwrap_or_else(|e| panic!("{e}")))
        .collect()
}

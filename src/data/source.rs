//! Where a dataset comes from.
//!
//! [`load`]`(name_or_dir, split)` looks, in order:
//! 1. a directory: if `name_or_dir` is one (the CLI's `--data DIR`), it is read in the
//!    format found there (IDX files, CIFAR binary batches, or an image folder);
//! 2. the Debian package `dataset-fashion-mnist` (`/usr/share/datasets/fashion-mnist`),
//!    for `fashion-mnist`;
//! 3. the download cache (`strata data download NAME`): `$STRATA_DATA_DIR`, else
//!    `$XDG_CACHE_HOME/strata/datasets`, else `~/.cache/strata/datasets`, one folder per
//!    dataset;
//! 4. the Fashion-MNIST subset embedded in the binary (`embedded.rs`), announced loudly
//!    on stderr with the ways to get the full set.
//!
//! Names: `mnist`, `fashion-mnist` (also `fmnist`), `cifar10`, `cifar100` (fine labels),
//! `cifar100-coarse`; case, `-` and `_` are ignored.
//!
//! Inside a directory: IDX files are `train-images-idx3-ubyte[.gz]`,
//! `train-labels-idx1-ubyte[.gz]` and the same with `t10k` for the test split; their
//! class names come from `classes.txt` (one per line) if present, else from the dataset
//! name or the folder name (`fashion` in it means Fashion-MNIST's names), else `0`–`9`.
//! CIFAR folders may be given directly or as their parent. An image folder with
//! `train/` and `test/` (or `val/`) sub-folders gives one split each; one without gives
//! its images as the training split.

use crate::data::cifar::{self, CifarKind};
use crate::data::dataset::{numbered_classes, ImageDataset};
use crate::data::embedded;
use crate::data::folder::{self, FolderOptions};
use crate::data::idx;
use crate::error::{Error, Result};
use std::fmt;
use std::path::{Path, PathBuf};

pub use crate::data::embedded::FASHION_MNIST_CLASSES;
pub use crate::data::split::Split;

/// Where the Debian package `dataset-fashion-mnist` installs its files.
pub const DEBIAN_FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

/// The datasets strata knows by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Known {
    /// MNIST digits.
    Mnist,
    /// Fashion-MNIST.
    FashionMnist,
    /// CIFAR-10.
    Cifar10,
    /// CIFAR-100, fine labels.
    Cifar100,
    /// CIFAR-100, coarse labels.
    Cifar100Coarse,
}

impl Known {
    /// Parses a dataset name; `None` if it is not one we know.
    pub fn parse(name: &str) -> Option<Self> {
        let key: String = name
            .chars()
            .filter(|c| *c != '-' && *c != '_')
            .collect::<String>()
            .to_ascii_lowercase();
        match key.as_str() {
            "mnist" => Some(Known::Mnist),
            "fashionmnist" | "fmnist" => Some(Known::FashionMnist),
            "cifar10" => Some(Known::Cifar10),
            "cifar100" => Some(Known::Cifar100),
            "cifar100coarse" => Some(Known::Cifar100Coarse),
            _ => None,
        }
    }

    /// The canonical name, also the cache folder's name.
    pub fn name(self) -> &'static str {
        match self {
            Known::Mnist => "mnist",
            Known::FashionMnist => "fashion-mnist",
            Known::Cifar10 => "cifar10",
            Known::Cifar100 | Known::Cifar100Coarse => "cifar100",
        }
    }
}

/// Where a dataset was found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A directory given by the user.
    Dir(PathBuf),
    /// The Debian package.
    Debian(PathBuf),
    /// The download cache.
    Cache(PathBuf),
    /// The subset embedded in the binary.
    Embedded,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Dir(p) => write!(f, "{}", p.display()),
            Origin::Debian(p) => write!(f, "{} (Debian package)", p.display()),
            Origin::Cache(p) => write!(f, "{} (download cache)", p.display()),
            Origin::Embedded => write!(f, "embedded Fashion-MNIST subset"),
        }
    }
}

/// A loaded dataset and where it came from.
#[derive(Clone, Debug)]
pub struct Loaded {
    /// The images.
    pub dataset: ImageDataset,
    /// Where they were found.
    pub origin: Origin,
    /// Image-folder files left out as bad (with `skip_bad`).
    pub skipped: Vec<(PathBuf, String)>,
}

/// The places [`Sources::load`] looks; [`Default`] is the documented order.
#[derive(Clone, Debug)]
pub struct Sources {
    /// The Debian package folder for Fashion-MNIST.
    pub debian_dir: PathBuf,
    /// The download cache (one sub-folder per dataset).
    pub cache_dir: PathBuf,
    /// Fall back to the embedded Fashion-MNIST subset.
    pub allow_embedded: bool,
    /// How image folders are read.
    pub folder: FolderOptions,
}

impl Default for Sources {
    fn default() -> Self {
        Sources {
            debian_dir: PathBuf::from(DEBIAN_FASHION_MNIST),
            cache_dir: default_cache_dir(),
            allow_embedded: true,
            folder: FolderOptions::default(),
        }
    }
}

/// The download cache: `$STRATA_DATA_DIR`, `$XDG_CACHE_HOME/strata/datasets`,
/// `~/.cache/strata/datasets`, or `./.strata-data` when none of those is set.
pub fn default_cache_dir() -> PathBuf {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    if let Some(dir) = env("STRATA_DATA_DIR") {
        return dir;
    }
    if let Some(dir) = env("XDG_CACHE_HOME") {
        return dir.join("strata").join("datasets");
    }
    if let Some(home) = env("HOME") {
        return home.join(".cache").join("strata").join("datasets");
    }
    PathBuf::from(".strata-data")
}

/// Loads `split` of a named dataset or a directory; see the module documentation.
/// Prints a warning on stderr when the embedded subset is used, and a note when image
/// files were skipped.
pub fn load(name_or_dir: &str, split: Split) -> Result<ImageDataset> {
    let loaded = Sources::default().load(name_or_dir, split)?;
    if loaded.origin == Origin::Embedded {
        eprintln!("{}", embedded::NOTICE);
    }
    if !loaded.skipped.is_empty() {
        eprintln!("strata: skipped {} bad image files", loaded.skipped.len());
    }
    Ok(loaded.dataset)
}

fn idx_file(dir: &Path, prefix: &str, kind: &str) -> Option<PathBuf> {
    let base = format!("{prefix}-{kind}");
    [format!("{base}.gz"), base]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
}

fn idx_prefix(split: Split) -> &'static str {
    match split {
        Split::Train => "train",
        Split::Test => "t10k",
    }
}

fn class_names_for(dir: &Path, hint: Option<Known>) -> Result<Vec<String>> {
    let listed = dir.join("classes.txt");
    if listed.is_file() {
        let text = std::fs::read_to_string(&listed).map_err(|source| Error::Io {
            path: listed.clone(),
            source,
        })?;
        let names: Vec<String> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(String::from)
            .collect();
        if names.is_empty() {
            return Err(Error::Format {
                path: listed,
                reason: "no class names (one per line expected)".into(),
            });
        }
        return Ok(names);
    }
    let fashion = hint == Some(Known::FashionMnist)
        || (hint.is_none()
            && dir
                .to_string_lossy()
                .to_ascii_lowercase()
                .contains("fashion"));
    Ok(if fashion {
        FASHION_MNIST_CLASSES
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        numbered_classes(10)
    })
}

/// What kind of data a directory holds, if we can tell.
enum Layout {
    Idx,
    Cifar(PathBuf, CifarKind),
    Folder(PathBuf),
}

/// Whether `p` is a folder with at least one folder in it (a split of class folders,
/// not a class folder of images).
fn has_subdirs(p: &Path) -> bool {
    std::fs::read_dir(p).is_ok_and(|entries| entries.flatten().any(|e| e.path().is_dir()))
}

fn detect(dir: &Path, split: Split, hint: Option<Known>) -> Result<Layout> {
    for name in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
        let p = dir.join(name);
        if p.is_dir() {
            return Err(Error::Format {
                path: p,
                reason: "is a folder, where an IDX dataset has a file of that name (or the same \
                         name with .gz): put the file itself here"
                    .into(),
            });
        }
    }
    if idx_file(dir, "train", "images-idx3-ubyte").is_some()
        || idx_file(dir, "t10k", "images-idx3-ubyte").is_some()
    {
        return Ok(Layout::Idx);
    }
    let hundred = if hint == Some(Known::Cifar100Coarse) {
        CifarKind::HundredCoarse
    } else {
        CifarKind::HundredFine
    };
    for (sub, marker, kind) in [
        ("cifar-10-batches-bin", "data_batch_1.bin", CifarKind::Ten),
        ("cifar-10-batches-bin", "test_batch.bin", CifarKind::Ten),
        ("cifar-100-binary", "train.bin", hundred),
        ("cifar-100-binary", "test.bin", hundred),
    ] {
        if dir.join(marker).is_file() {
            return Ok(Layout::Cifar(dir.to_path_buf(), kind));
        }
        if dir.join(sub).join(marker).is_file() {
            return Ok(Layout::Cifar(dir.join(sub), kind));
        }
    }
    let split_dirs: &[&str] = match split {
        Split::Train => &["train"],
        Split::Test => &["test", "val"],
    };
    // Split folders hold class folders; a `train` folder of images is a class.
    let has_splits = ["train", "test", "val"]
        .iter()
        .any(|s| has_subdirs(&dir.join(s)));
    if has_splits {
        return split_dirs
            .iter()
            .map(|s| dir.join(s))
            .find(|p| p.is_dir())
            .map(Layout::Folder)
            .ok_or_else(|| Error::Format {
                path: dir.to_path_buf(),
                reason: format!(
                    "no `{}` folder for the {split} split",
                    split_dirs.join("` or `")
                ),
            });
    }
    if split == Split::Test {
        return Err(Error::Format {
            path: dir.to_path_buf(),
            reason:
                "an image folder without train/ and test/ sub-folders has only a training split"
                    .into(),
        });
    }
    Ok(Layout::Folder(dir.to_path_buf()))
}

impl Sources {
    /// Loads `split` of a named dataset or a directory, in the documented order.
    pub fn load(&self, name_or_dir: &str, split: Split) -> Result<Loaded> {
        let path = Path::new(name_or_dir);
        if path.is_dir() {
            return self.load_dir(path, split, None);
        }
        let Some(known) = Known::parse(name_or_dir) else {
            return Err(Error::NotFound {
                name: name_or_dir.to_string(),
                reason: "it is neither a directory nor a known dataset (mnist, fashion-mnist, cifar10, cifar100, cifar100-coarse)".into(),
            });
        };
        let mut looked = Vec::new();
        if known == Known::FashionMnist {
            let prefix = idx_prefix(split);
            if idx_file(&self.debian_dir, prefix, "images-idx3-ubyte").is_some() {
                let mut loaded = self.load_dir(&self.debian_dir, split, Some(known))?;
                loaded.origin = Origin::Debian(self.debian_dir.clone());
                return Ok(loaded);
            }
            looked.push(format!(
                "{} (Debian package dataset-fashion-mnist)",
                self.debian_dir.display()
            ));
        }
        let cached = self.cache_dir.join(known.name());
        if cached.is_dir() {
            match self.load_dir(&cached, split, Some(known)) {
                Ok(mut loaded) => {
                    loaded.origin = Origin::Cache(cached);
                    return Ok(loaded);
                }
                // An empty or half-filled cache folder is "not there"; a corrupt file is not.
                Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
                Err(Error::Format { ref reason, .. })
                    if reason.contains("no class folders")
                        || reason.contains("only a training split") => {}
                Err(e) => return Err(e),
            }
        }
        looked.push(format!("{} (download cache)", cached.display()));
        if known == Known::FashionMnist && self.allow_embedded {
            return Ok(Loaded {
                dataset: embedded::load(split)?,
                origin: Origin::Embedded,
                skipped: Vec::new(),
            });
        }
        let download = match known {
            Known::Cifar100 | Known::Cifar100Coarse => {
                String::from("download cifar-100-binary.tar.gz yourself and pass --data DIR")
            }
            _ => format!(
                "run `strata data download {}` or pass --data DIR",
                known.name()
            ),
        };
        Err(Error::NotFound {
            name: name_or_dir.to_string(),
            reason: format!("looked in {}; {download}", looked.join(", ")),
        })
    }

    /// Loads `split` from a directory, detecting its format; `hint` names the dataset.
    pub fn load_dir(&self, dir: &Path, split: Split, hint: Option<Known>) -> Result<Loaded> {
        let origin = Origin::Dir(dir.to_path_buf());
        let (dataset, skipped) = match detect(dir, split, hint)? {
            Layout::Idx => {
                let prefix = idx_prefix(split);
                let missing = |kind: &str| Error::Io {
                    path: dir.join(format!("{prefix}-{kind}[.gz]")),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "file not found"),
                };
                let images = idx_file(dir, prefix, "images-idx3-ubyte")
                    .ok_or_else(|| missing("images-idx3-ubyte"))?;
                let labels = idx_file(dir, prefix, "labels-idx1-ubyte")
                    .ok_or_else(|| missing("labels-idx1-ubyte"))?;
                (
                    idx::load(&images, &labels, class_names_for(dir, hint)?)?,
                    Vec::new(),
                )
            }
            Layout::Cifar(root, kind) => (cifar::load_dir(&root, kind, split)?, Vec::new()),
            Layout::Folder(root) => {
                let (d, report) = folder::load(&root, &self.folder)?;
                (d, report.skipped)
            }
        };
        Ok(Loaded {
            dataset,
            origin,
            skipped,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_idx(dir: &Path, prefix: &str, n: usize, gz: bool) {
        let images: Vec<u8> = (0..n * 4).map(|i| i as u8).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let enc = |dims: &[usize], d: &[u8]| {
            if gz {
                idx::encode_gzip(dims, d).unwrap()
            } else {
                idx::encode(dims, d).unwrap()
            }
        };
        let ext = if gz { ".gz" } else { "" };
        std::fs::write(
            dir.join(format!("{prefix}-images-idx3-ubyte{ext}")),
            enc(&[n, 2, 2], &images),
        )
        .unwrap();
        std::fs::write(
            dir.join(format!("{prefix}-labels-idx1-ubyte{ext}")),
            enc(&[n], &labels),
        )
        .unwrap();
    }

    fn sources(debian: &Path, cache: &Path) -> Sources {
        Sources {
            debian_dir: debian.to_path_buf(),
            cache_dir: cache.to_path_buf(),
            allow_embedded: true,
            folder: FolderOptions::default(),
        }
    }

    #[test]
    fn lookup_order_dir_debian_cache_embedded() {
        let tmp = tempfile::tempdir().unwrap();
        let (deb, cache, user) = (
            tmp.path().join("deb"),
            tmp.path().join("cache"),
            tmp.path().join("mine"),
        );
        for d in [&deb, &cache.join("fashion-mnist"), &user] {
            std::fs::create_dir_all(d).unwrap();
        }
        let s = sources(&deb, &cache);
        // Nothing installed: the embedded subset.
        let l = s.load("Fashion_MNIST", Split::Test).unwrap();
        assert_eq!(l.origin, Origin::Embedded);
        assert_eq!(l.dataset.class_names()[9], "Ankle boot");
        // Cache beats embedded.
        write_idx(&cache.join("fashion-mnist"), "t10k", 20, false);
        let l = s.load("fmnist", Split::Test).unwrap();
        assert!(matches!(l.origin, Origin::Cache(_)));
        assert_eq!(l.dataset.len(), 20);
        assert_eq!(l.dataset.class_names()[0], "T-shirt/top");
        // Debian beats cache.
        write_idx(&deb, "t10k", 30, true);
        let l = s.load("fashion-mnist", Split::Test).unwrap();
        assert!(matches!(l.origin, Origin::Debian(_)));
        assert_eq!(l.dataset.len(), 30);
        // A directory is read as it is; names are digits without a hint.
        write_idx(&user, "train", 12, true);
        let l = s.load(user.to_str().unwrap(), Split::Train).unwrap();
        assert_eq!(
            (l.dataset.len(), l.dataset.class_names()[3].as_str()),
            (12, "3")
        );
        std::fs::write(
            user.join("classes.txt"),
            (0..10).map(|i| format!("k{i}\n")).collect::<String>(),
        )
        .unwrap();
        let l = s.load(user.to_str().unwrap(), Split::Train).unwrap();
        assert_eq!(l.dataset.class_names()[3], "k3");
        let err = s
            .load(user.to_str().unwrap(), Split::Test)
            .unwrap_err()
            .to_string();
        assert!(err.contains("t10k-images-idx3-ubyte"), "{err}");
    }

    #[test]
    fn unknown_and_missing_datasets_say_what_to_do() {
        let tmp = tempfile::tempdir().unwrap();
        let s = sources(tmp.path(), tmp.path());
        let err = s.load("imagenet", Split::Train).unwrap_err().to_string();
        assert!(err.contains("known dataset"), "{err}");
        let err = s.load("cifar10", Split::Train).unwrap_err().to_string();
        assert!(err.contains("strata data download cifar10"), "{err}");
        let no_embedded = Sources {
            allow_embedded: false,
            ..s
        };
        assert!(no_embedded.load("fashion-mnist", Split::Train).is_err());
    }

    #[test]
    fn corrupt_cache_is_an_error_not_a_fallback() {
        let tmp = tempfile::tempdir().unwrap();
        let cache = tmp.path().join("cache");
        let dir = cache.join("fashion-mnist");
        std::fs::create_dir_all(&dir).unwrap();
        write_idx(&dir, "train", 10, true);
        let path = dir.join("train-images-idx3-ubyte.gz");
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let err = sources(tmp.path(), &cache)
            .load("fashion-mnist", Split::Train)
            .unwrap_err();
        assert!(
            err.to_string().contains("train-images-idx3-ubyte.gz"),
            "{err}"
        );
    }

    #[test]
    fn split_names_parse() {
        assert_eq!("test".parse::<Split>().unwrap(), Split::Test);
        assert!("valid".parse::<Split>().is_err());
        assert_eq!(Known::parse("CIFAR-10"), Some(Known::Cifar10));
    }
}

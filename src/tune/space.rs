//! Search spaces: a TOML file with the search's settings, the fixed training fields and
//! a distribution for each searched field.
//!
//! ```toml
//! [search]
//! strategy = "random"      # grid | random | halving
//! trials = 20
//! seed = 0
//!
//! [fixed]                  # any TrainConfig field, as in `strata train --config`
//! epochs = 3
//! per_class = 1000
//!
//! [space]
//! lr = "log_uniform(1e-3, 1)"
//! weight_decay = "log_uniform(1e-5, 1e-2)"     # optimizer.weight_decay
//! momentum = "uniform(0.8, 0.99)"               # optimizer.momentum
//! batch_size = "choice([64, 128, 256])"
//! width = "int(1, 2)"
//! ```
//!
//! A field is a `TrainConfig` key, a dotted path into it (`optimizer.weight_decay`,
//! `schedule.pct_start`), or one of the shortcuts `momentum`, `weight_decay`, `nesterov`,
//! `beta1`, `beta2` (the optimizer's). Every trial's configuration is the default, then
//! `[fixed]`, then the sampled values, checked as `strata train` checks a config file —
//! so an unknown field or a wrong type fails before any trial runs.

use crate::error::{Error, Result};
use crate::train::TrainConfig;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// How one field is searched.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Dist {
    /// `exp(U(ln low, ln high))`: rates and regularization strengths.
    LogUniform {
        /// Lower bound (> 0).
        low: f64,
        /// Upper bound (> low).
        high: f64,
    },
    /// `U(low, high)`.
    Uniform {
        /// Lower bound.
        low: f64,
        /// Upper bound (> low).
        high: f64,
    },
    /// A whole number in `[low, high]`, each equally likely.
    Int {
        /// Lower bound.
        low: i64,
        /// Upper bound (≥ low).
        high: i64,
    },
    /// One of the values, each equally likely.
    Choice(Vec<toml::Value>),
}

impl Dist {
    /// Parses `log_uniform(a, b)`, `uniform(a, b)`, `int(a, b)`, `choice([x, y, ...])`.
    pub fn parse(field: &str, s: &str) -> Result<Dist> {
        let bad = |r: String| Error::config("search space", field, r);
        let s = s.trim();
        let (name, rest) = s.split_once('(').ok_or_else(|| {
            bad(format!(
                "`{s}`: write log_uniform(low, high), uniform(low, high), int(low, high) or choice([a, b, ...])"
            ))
        })?;
        let args = rest
            .strip_suffix(')')
            .ok_or_else(|| bad(format!("`{s}`: missing the closing parenthesis")))?;
        let two = |args: &str| -> Result<(f64, f64)> {
            let v: Vec<&str> = args.split(',').map(str::trim).collect();
            match v[..] {
                [a, b] => Ok((
                    a.parse()
                        .map_err(|_| bad(format!("`{a}` is not a number")))?,
                    b.parse()
                        .map_err(|_| bad(format!("`{b}` is not a number")))?,
                )),
                _ => Err(bad(format!("`{s}`: give two numbers, low and high"))),
            }
        };
        let d = match name.trim() {
            "log_uniform" | "loguniform" => {
                let (low, high) = two(args)?;
                Dist::LogUniform { low, high }
            }
            "uniform" => {
                let (low, high) = two(args)?;
                Dist::Uniform { low, high }
            }
            "int" | "randint" => {
                let (low, high) = two(args)?;
                if low.fract() != 0.0 || high.fract() != 0.0 {
                    return Err(bad(format!("`{s}`: int bounds must be whole numbers")));
                }
                Dist::Int {
                    low: low as i64,
                    high: high as i64,
                }
            }
            "choice" => {
                let v: toml::Value = toml::from_str::<toml::Table>(&format!("v = {args}"))
                    .map_err(|e| bad(format!("`{s}`: the choices must be a TOML list ({e})")))?
                    .remove("v")
                    .unwrap_or(toml::Value::Array(vec![]));
                match v {
                    toml::Value::Array(a) => Dist::Choice(a),
                    _ => return Err(bad(format!("`{s}`: write choice([a, b, ...])"))),
                }
            }
            other => {
                return Err(bad(format!(
                    "unknown distribution `{other}`; use log_uniform, uniform, int or choice"
                )))
            }
        };
        d.validate(field)?;
        Ok(d)
    }

    /// Checks the bounds.
    pub fn validate(&self, field: &str) -> Result<()> {
        let bad = |r: String| Err(Error::config("search space", field, r));
        match self {
            Dist::LogUniform { low, high } => {
                if !(*low > 0.0 && low.is_finite()) {
                    return bad(format!("log_uniform needs low > 0, got {low}"));
                }
                if !(high > low && high.is_finite()) {
                    return bad(format!("needs low < high, got {low} and {high}"));
                }
            }
            Dist::Uniform { low, high } => {
                if !(low.is_finite() && high.is_finite() && high > low) {
                    return bad(format!("needs finite low < high, got {low} and {high}"));
                }
            }
            Dist::Int { low, high } => {
                if high < low {
                    return bad(format!("needs low ≤ high, got {low} and {high}"));
                }
            }
            Dist::Choice(v) => {
                if v.is_empty() {
                    return bad("choice([]) has nothing to choose from".into());
                }
            }
        }
        Ok(())
    }

    /// Whether the field varies on a log scale (plots and refinement use it).
    pub fn is_log(&self) -> bool {
        matches!(self, Dist::LogUniform { .. })
    }

    /// `n` evenly spaced values for a grid (log-spaced for log-uniform; every value of
    /// a choice or of a small int range).
    pub fn grid(&self, n: usize) -> Vec<toml::Value> {
        let n = n.max(1);
        let frac = |i: usize| {
            if n == 1 {
                0.5
            } else {
                i as f64 / (n - 1) as f64
            }
        };
        match self {
            Dist::LogUniform { low, high } => (0..n)
                .map(|i| toml::Value::Float((low.ln() + frac(i) * (high / low).ln()).exp()))
                .collect(),
            Dist::Uniform { low, high } => (0..n)
                .map(|i| toml::Value::Float(low + frac(i) * (high - low)))
                .collect(),
            Dist::Int { low, high } => {
                let span = (high - low) as usize + 1;
                if span <= n {
                    (*low..=*high).map(toml::Value::Integer).collect()
                } else {
                    let mut v: Vec<i64> = (0..n)
                        .map(|i| low + (frac(i) * (high - low) as f64).round() as i64)
                        .collect();
                    v.dedup();
                    v.into_iter().map(toml::Value::Integer).collect()
                }
            }
            Dist::Choice(v) => v.clone(),
        }
    }

    /// One draw.
    pub fn sample(&self, rng: &mut impl rand::Rng) -> toml::Value {
        match self {
            Dist::LogUniform { low, high } => {
                toml::Value::Float((low.ln() + rng.random::<f64>() * (high / low).ln()).exp())
            }
            Dist::Uniform { low, high } => {
                toml::Value::Float(low + rng.random::<f64>() * (high - low))
            }
            Dist::Int { low, high } => toml::Value::Integer(rng.random_range(*low..=*high)),
            Dist::Choice(v) => v[rng.random_range(0..v.len())].clone(),
        }
    }
}

/// How to search.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Every combination (continuous fields at `grid_points` values).
    Grid,
    /// Independent draws.
    Random,
    /// Asynchronous successive halving (ASHA): random draws started at the lowest rung;
    /// the top 1/η of each rung go on to η× the epochs.
    Halving,
}

/// The `[search]` table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SearchSettings {
    /// Strategy [random].
    pub strategy: Strategy,
    /// Trials to run (grid: at most this many of the combinations; 0: all of them) [16].
    pub trials: usize,
    /// Wall-clock budget: no trial starts after it [none].
    pub minutes: Option<f64>,
    /// Seed of the draws [0].
    pub seed: u64,
    /// Values per continuous field in a grid [3].
    pub grid_points: usize,
    /// Which number ranks trials: val_acc (higher is better) or val_loss [val_acc].
    pub metric: String,
    /// Halving: the reduction factor η [3].
    pub eta: usize,
    /// Halving: epochs of the lowest rung [1]; rung k trains min_epochs·η^k epochs, up to
    /// the fixed `epochs`.
    pub min_epochs: u64,
}

impl Default for SearchSettings {
    fn default() -> Self {
        SearchSettings {
            strategy: Strategy::Random,
            trials: 16,
            minutes: None,
            seed: 0,
            grid_points: 3,
            metric: "val_acc".into(),
            eta: 3,
            min_epochs: 1,
        }
    }
}

/// A whole search space file.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchSpace {
    /// `[search]`.
    pub settings: SearchSettings,
    /// `[fixed]`: training fields every trial shares.
    pub fixed: toml::Table,
    /// `[space]`: the searched fields, in name order.
    pub params: BTreeMap<String, Dist>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SpaceFile {
    #[serde(default)]
    search: SearchSettings,
    #[serde(default)]
    fixed: toml::Table,
    #[serde(default)]
    space: BTreeMap<String, String>,
}

/// Where a shortcut field lives in a `TrainConfig`.
fn path_of(field: &str) -> String {
    match field {
        "momentum" | "weight_decay" | "nesterov" | "beta1" | "beta2" | "eps" => {
            format!("optimizer.{field}")
        }
        "pct_start" | "min_lr" => format!("schedule.{field}"),
        other => other.to_string(),
    }
}

fn set_path(table: &mut toml::Table, path: &str, value: toml::Value) -> Result<()> {
    let mut parts: Vec<&str> = path.split('.').collect();
    let last = parts.pop().unwrap_or_default();
    let mut t = table;
    for p in parts {
        t = t
            .entry(p.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .ok_or_else(|| {
                Error::config(
                    "search space",
                    path,
                    format!("`{p}` is not a table of fields"),
                )
            })?;
    }
    t.insert(last.to_string(), value);
    Ok(())
}

impl SearchSpace {
    /// Reads and checks a search space file; see the module documentation.
    pub fn from_toml(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text).map_err(|e| match e {
            Error::Format { reason, .. } => Error::Format {
                path: path.to_path_buf(),
                reason,
            },
            other => other,
        })
    }

    /// [`SearchSpace::from_toml`] from text.
    pub fn parse(text: &str) -> Result<Self> {
        let file: SpaceFile = toml::from_str(text).map_err(|e| Error::Format {
            path: "search space".into(),
            reason: e.to_string(),
        })?;
        let mut params = BTreeMap::new();
        for (k, v) in &file.space {
            params.insert(k.clone(), Dist::parse(k, v)?);
        }
        let space = SearchSpace {
            settings: file.search,
            fixed: file.fixed,
            params,
        };
        space.validate()?;
        Ok(space)
    }

    /// Checks the settings, and that the lowest and highest value of every field make a
    /// valid training configuration (unknown fields and wrong types are found here).
    pub fn validate(&self) -> Result<()> {
        let s = &self.settings;
        let bad = |f: &str, r: String| Err(Error::config("search", f, r));
        if s.trials == 0 && s.strategy != Strategy::Grid {
            return bad(
                "trials",
                "a budget of 0 trials runs nothing; give ≥ 1".into(),
            );
        }
        if let Some(m) = s.minutes {
            if !(m > 0.0 && m.is_finite()) {
                return bad("minutes", format!("must be > 0, got {m}"));
            }
        }
        if s.grid_points == 0 {
            return bad("grid_points", "must be ≥ 1".into());
        }
        if s.eta < 2 {
            return bad("eta", format!("must be ≥ 2, got {}", s.eta));
        }
        if s.min_epochs == 0 {
            return bad("min_epochs", "must be ≥ 1".into());
        }
        if s.metric != "val_acc" && s.metric != "val_loss" {
            return bad("metric", format!("`{}`: use val_acc or val_loss", s.metric));
        }
        self.config(&BTreeMap::new())?;
        for (k, d) in &self.params {
            for v in d.grid(2) {
                let one = BTreeMap::from([(k.clone(), v)]);
                self.config(&one)?;
            }
        }
        Ok(())
    }

    /// The training configuration of a trial with these sampled values.
    pub fn config(&self, values: &BTreeMap<String, toml::Value>) -> Result<TrainConfig> {
        let base = toml::Table::try_from(TrainConfig::default())
            .map_err(|e| Error::state("search", e.to_string()))?;
        let mut t = base;
        for (k, v) in &self.fixed {
            merge(&mut t, k, v.clone())?;
        }
        for (k, v) in values {
            // A float where the field is a whole number (batch_size = 64.0) is refused
            // by the config's own types, so values go in as sampled.
            set_path(&mut t, &path_of(k), v.clone())?;
        }
        let cfg: TrainConfig = t.try_into().map_err(|e: toml::de::Error| {
            Error::config("search space", "fields", format!("{e}"))
        })?;
        cfg.validate()?;
        Ok(cfg)
    }
}

/// Merges a `[fixed]` entry: tables merge field by field (so `[fixed.optimizer]` can set
/// the momentum alone), other values replace.
fn merge(t: &mut toml::Table, key: &str, v: toml::Value) -> Result<()> {
    match (t.get_mut(key), v) {
        (Some(toml::Value::Table(dst)), toml::Value::Table(src)) => {
            // A new optimizer or schedule kind replaces the whole table.
            if src.contains_key("kind") {
                *dst = src;
            } else {
                for (k, v) in src {
                    merge(dst, &k, v)?;
                }
            }
        }
        (_, v) => {
            t.insert(key.to_string(), v);
        }
    }
    Ok(())
}

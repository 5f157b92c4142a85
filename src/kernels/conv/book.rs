//! The timed choices of a run, kept so that each geometry is timed once and a choice,
//! once made, is the one every later step (and a resumed run) uses.
//!
//! A [`PlanBook`] maps a key — the geometry, the precision, the images per call and the
//! worker threads — to a [`Choice`]: which f32 forward kernel won, and whether the bf16
//! plan beat it. [`super::autotune_forward`] fills it; `Conv2d` looks a key up before
//! timing. The book is shared by every convolution of a model (an `Arc`), and written
//! out by the training loop: into the run folder (`plans.json`, read back on resume) and
//! into a cache file keyed by CPU model for the next run on the same kind of machine
//! (`train::plans`).

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::bf16::Precision;
use super::geom::ConvGeom;
use super::plan::{ConvPlan, Path};

/// What timing decided for one key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Choice {
    /// The forward kernel of the f32 plan (`winograd`, `direct`, `gathered`, `gemm`).
    pub forward: Path,
    /// Whether the layer runs the bf16 plan (under `--precision bf16`; false in f32).
    pub bf16: bool,
}

impl Choice {
    /// What `plan` (a timed result) chose.
    pub fn of(plan: &ConvPlan) -> Self {
        Choice {
            forward: plan.forward,
            bf16: plan.bf16_forward,
        }
    }

    /// The static plan `base` with this choice applied; `None` when it does not fit
    /// (the kernel does not take the geometry on this CPU, or bf16 was chosen for a
    /// layer whose static plan has no bf16 forward): the caller times afresh.
    pub fn apply(&self, base: &ConvPlan) -> Option<ConvPlan> {
        if self.bf16 {
            return (base.bf16_forward && base.forward == self.forward).then_some(ConvPlan {
                tuned: true,
                ..*base
            });
        }
        let f32_plan = ConvPlan {
            bf16_forward: false,
            bf16_weight_grad: false,
            bf16_input_grad: false,
            tuned: true,
            ..*base
        };
        f32_plan.with_forward(self.forward)
    }
}

/// The key of a timed choice: geometry, precision, images per call, threads, and
/// whether the whole training step was timed or the forward alone, as text
/// (`3x32x32>16 k3x3 s1x1 p1x1 d1x1 g1 bf16 n128 t2 step`).
pub fn key(g: &ConvGeom, precision: Precision, n: usize, threads: usize, step: bool) -> String {
    format!(
        "{}x{}x{}>{} k{}x{} s{}x{} p{}x{} d{}x{} g{} {} n{} t{} {}",
        g.c_in,
        g.h,
        g.w,
        g.c_out,
        g.kh,
        g.kw,
        g.stride.0,
        g.stride.1,
        g.pad.0,
        g.pad.1,
        g.dilation.0,
        g.dilation.1,
        g.groups,
        precision,
        n,
        threads,
        if step { "step" } else { "fwd" }
    )
}

/// The choices of one run (see the module documentation). Entries are either given
/// (read from a file) or timed in this process; [`PlanBook::used`] lists those looked up
/// or timed, which is what a run folder records.
#[derive(Debug, Default)]
pub struct PlanBook {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    choices: BTreeMap<String, Choice>,
    used: BTreeMap<String, Choice>,
    /// The choices timed in this process (what a cache of this CPU may learn).
    timed: BTreeMap<String, Choice>,
}

impl PlanBook {
    /// A book holding `choices` (from a run folder or a cache file).
    pub fn with(choices: BTreeMap<String, Choice>) -> Self {
        PlanBook {
            inner: Mutex::new(Inner {
                choices,
                ..Inner::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic elsewhere while holding the lock leaves a map that is still whole.
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The choice for `key`, marked used.
    pub fn get(&self, key: &str) -> Option<Choice> {
        let mut inner = self.lock();
        let c = inner.choices.get(key).copied()?;
        inner.used.insert(key.to_string(), c);
        Some(c)
    }

    /// Records a choice just timed.
    pub fn insert(&self, key: String, c: Choice) {
        let mut inner = self.lock();
        inner.choices.insert(key.clone(), c);
        inner.used.insert(key.clone(), c);
        inner.timed.insert(key, c);
    }

    /// Adds `choices` where the book has none (a cache file under a run's own record).
    pub fn fill(&self, choices: BTreeMap<String, Choice>) {
        let mut inner = self.lock();
        for (k, c) in choices {
            inner.choices.entry(k).or_insert(c);
        }
    }

    /// Puts `choices` over the book's own (a resumed run's record over a cache).
    pub fn pin(&self, choices: BTreeMap<String, Choice>) {
        self.lock().choices.extend(choices);
    }

    /// The choices this process looked up or timed.
    pub fn used(&self) -> BTreeMap<String, Choice> {
        self.lock().used.clone()
    }

    /// The choices this process timed (none when every one came from a file).
    pub fn timed(&self) -> BTreeMap<String, Choice> {
        self.lock().timed.clone()
    }
}

impl Serialize for Path {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

impl<'de> Deserialize<'de> for Path {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        [Path::Winograd, Path::Direct, Path::Gathered, Path::Gemm]
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| {
                serde::de::Error::custom(format!(
                    "unknown kernel `{name}` (winograd, direct, gathered, gemm)"
                ))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_choice_applies_only_where_it_fits_and_survives_json() {
        let g = ConvGeom::new(16, 12, 12, 16, (3, 3), (1, 1), (1, 1), (1, 1), 1).unwrap();
        let base = ConvPlan::f32(g);
        let direct = Choice {
            forward: Path::Direct,
            bf16: false,
        };
        let p = direct.apply(&base).unwrap();
        assert_eq!(
            (p.forward, p.bf16_forward, p.tuned),
            (Path::Direct, false, true)
        );
        // gathered does not take a stride-1 map this wide; GEMM always does.
        let gemm = Choice {
            forward: Path::Gemm,
            bf16: false,
        };
        assert_eq!(gemm.apply(&base).unwrap().forward, Path::Gemm);
        // bf16 asked of an f32 plan: no.
        let bf = Choice {
            forward: base.forward,
            bf16: true,
        };
        assert!(bf.apply(&base).is_none());
        let json = serde_json::to_string(&direct).unwrap();
        assert_eq!(json, r#"{"forward":"direct","bf16":false}"#);
        assert_eq!(serde_json::from_str::<Choice>(&json).unwrap(), direct);
        assert!(serde_json::from_str::<Choice>(r#"{"forward":"fft","bf16":false}"#).is_err());
    }

    #[test]
    fn the_book_marks_what_was_used_and_keeps_its_own_over_a_fill() {
        let g = ConvGeom::new(3, 8, 8, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1).unwrap();
        let k = key(&g, Precision::Bf16, 32, 2, true);
        assert_eq!(k, "3x8x8>4 k3x3 s1x1 p1x1 d1x1 g1 bf16 n32 t2 step");
        let c = Choice {
            forward: Path::Gemm,
            bf16: false,
        };
        let book = PlanBook::with(BTreeMap::from([(k.clone(), c)]));
        assert!(book.used().is_empty());
        let other = Choice {
            forward: Path::Direct,
            bf16: false,
        };
        book.fill(BTreeMap::from([
            (k.clone(), other),
            ("x".to_string(), other),
        ]));
        assert_eq!(book.get(&k), Some(c));
        assert_eq!(book.used().len(), 1);
        assert!(book.timed().is_empty());
        book.insert("y".into(), other);
        assert_eq!((book.used().len(), book.timed().len()), (2, 1));
    }
}

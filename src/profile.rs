//! Per-layer wall-clock timing of forward and backward passes, for `strata bench`.
//!
//! Off by default; then the containers pay one thread-local flag read per child call.
//! Profiling is per thread: when [`enable`]d on a thread, the networks run on that thread
//! are timed — [`crate::nn::Sequential`] and [`crate::nn::Residual`] time each
//! child's `forward`/`backward` under its state-dict path (`layer1.0.conv1`), the same
//! names [`crate::summary`] uses, so a time can be joined with the layer's MACs. The
//! residual sum is timed as `<block>.add`. Containers are recorded too (with
//! `leaf = false`), so the time a block spends outside its children can be found.
//!
//! The kernels inside a layer fan out to rayon's pool and join before the layer returns,
//! so the time of a layer is its wall-clock time on the thread that runs the network.

use std::cell::Cell;
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::Instant;

thread_local! {
    static ENABLED: Cell<bool> = const { Cell::new(false) };
    static PATH: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
    static RECORDS: RefCell<Vec<Timing>> = const { RefCell::new(Vec::new()) };
}

/// Forward or backward.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Phase {
    /// `Layer::forward`.
    Forward,
    /// `Layer::backward`.
    Backward,
}

/// Accumulated time of one layer in one phase.
#[derive(Clone, Debug, PartialEq)]
pub struct Timing {
    /// State-dict path (`layer1.0.conv1`; `layer1.0.add` for a residual sum).
    pub path: String,
    /// Layer type (`Conv2d`, `Add`, `Sequential`...).
    pub kind: String,
    /// Whether the layer has no children.
    pub leaf: bool,
    /// Forward or backward.
    pub phase: Phase,
    /// Number of calls timed.
    pub calls: u64,
    /// Total seconds over all calls.
    pub seconds: f64,
}

/// Turns timing on or off for networks run on this thread.
pub fn enable(on: bool) {
    ENABLED.with(|e| e.set(on));
}

/// Whether timing is on for this thread.
#[inline]
pub fn enabled() -> bool {
    ENABLED.with(|e| e.get())
}

/// What this thread has recorded since the last call, one entry per (path, phase), in
/// the order the layers first ran; the record is emptied.
pub fn take() -> Vec<Timing> {
    RECORDS.with(|r| std::mem::take(&mut *r.borrow_mut()))
}

/// Runs `f` on `layer`, the child `name` of the current container, timing it when
/// profiling is on for this thread.
#[inline]
pub(crate) fn layer<T>(
    name: &str,
    layer: &mut dyn crate::nn::Layer,
    phase: Phase,
    f: impl FnOnce(&mut dyn crate::nn::Layer) -> T,
) -> T {
    if !enabled() {
        return f(layer);
    }
    let (kind, leaf) = (layer.kind(), layer.children().is_empty());
    op(name, kind, leaf, phase, || f(layer))
}

/// Runs `f`, an operation of the current container (a residual sum), under `name`.
#[inline]
pub(crate) fn op<T>(name: &str, kind: &str, leaf: bool, phase: Phase, f: impl FnOnce() -> T) -> T {
    if !enabled() {
        return f();
    }
    let path = PATH.with(|p| {
        let mut p = p.borrow_mut();
        p.push(name.to_string());
        p.join(".")
    });
    let t = Instant::now();
    let out = f();
    let seconds = t.elapsed().as_secs_f64();
    PATH.with(|p| p.borrow_mut().pop());
    record(path, kind, leaf, phase, seconds);
    out
}

fn record(path: String, kind: &str, leaf: bool, phase: Phase, seconds: f64) {
    RECORDS.with(|r| {
        let mut r = r.borrow_mut();
        // Few distinct layers (tens to hundreds): a linear scan from the end is fast enough
        // and keeps first-run order without a second index.
        if let Some(t) = r
            .iter_mut()
            .rev()
            .find(|t| t.phase == phase && t.path == path)
        {
            t.calls += 1;
            t.seconds += seconds;
            return;
        }
        r.push(Timing {
            path,
            kind: kind.to_string(),
            leaf,
            phase,
            calls: 1,
            seconds,
        });
    });
}

/// Forward and backward seconds per call of each leaf, by path, in first-run order.
pub fn per_leaf(timings: &[Timing]) -> Vec<(String, String, f64, f64)> {
    let mut order: Vec<(String, String)> = vec![];
    let mut fwd: HashMap<&str, f64> = HashMap::new();
    let mut bwd: HashMap<&str, f64> = HashMap::new();
    for t in timings.iter().filter(|t| t.leaf) {
        let per_call = t.seconds / t.calls.max(1) as f64;
        let map = match t.phase {
            Phase::Forward => &mut fwd,
            Phase::Backward => &mut bwd,
        };
        if !order.iter().any(|(p, _)| p == &t.path) {
            order.push((t.path.clone(), t.kind.clone()));
        }
        map.insert(t.path.as_str(), per_call);
    }
    order
        .into_iter()
        .map(|(p, k)| {
            let f = fwd.get(p.as_str()).copied().unwrap_or(0.0);
            let b = bwd.get(p.as_str()).copied().unwrap_or(0.0);
            (p, k, f, b)
        })
        .collect()
}

//! Which trials a search runs: a grid, independent random draws, or asynchronous
//! successive halving ([`Asha`]).

use super::space::{SearchSpace, Strategy};
use rand::SeedableRng;
use std::collections::BTreeMap;

/// The sampled values of one trial.
pub type Values = BTreeMap<String, toml::Value>;

/// Every combination of the grid, in a fixed order (the first field varies slowest).
pub fn grid(space: &SearchSpace) -> Vec<Values> {
    let mut out = vec![Values::new()];
    for (name, dist) in &space.params {
        let values = dist.grid(space.settings.grid_points);
        out = out
            .into_iter()
            .flat_map(|base| {
                values.iter().map(move |v| {
                    let mut b = base.clone();
                    b.insert(name.clone(), v.clone());
                    b
                })
            })
            .collect();
    }
    out
}

/// Trial `id`'s random draw: a function of the search seed and the id alone, so a
/// resumed search draws what the first run drew.
pub fn draw(space: &SearchSpace, id: usize) -> Values {
    let mut rng = rand::rngs::StdRng::seed_from_u64(
        space.settings.seed ^ (id as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
    );
    space
        .params
        .iter()
        .map(|(k, d)| (k.clone(), d.sample(&mut rng)))
        .collect()
}

/// The trials of a grid or random search, in order (halving plans as it goes).
pub fn trials(space: &SearchSpace) -> Vec<Values> {
    let n = space.settings.trials;
    match space.settings.strategy {
        Strategy::Grid => {
            let g = grid(space);
            let keep = if n == 0 { g.len() } else { n.min(g.len()) };
            g.into_iter().take(keep).collect()
        }
        Strategy::Random | Strategy::Halving => (0..n).map(|i| draw(space, i)).collect(),
    }
}

/// What ASHA asks for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Train trial `id` to rung `rung` (from where it stopped, or from scratch).
    Run {
        /// The trial.
        id: usize,
        /// The rung to reach.
        rung: usize,
    },
    /// Nothing can start until a running job ends.
    Wait,
    /// The search is over.
    Done,
}

/// Asynchronous successive halving (Li et al., 2018): whenever a worker is free, promote
/// a trial that is in the top 1/η of its rung's finished trials and not yet promoted
/// (highest rung first); otherwise start a new trial at rung 0. Rung k trains
/// `min_epochs · η^k` epochs, capped at the search's full length.
#[derive(Clone, Debug)]
pub struct Asha {
    /// Epochs of each rung.
    pub rungs: Vec<u64>,
    eta: usize,
    budget: usize,
    started: usize,
    /// `(id, score)` of the trials that finished each rung (higher is better).
    done: Vec<Vec<(usize, f64)>>,
    /// Trials already promoted out of each rung.
    promoted: Vec<Vec<usize>>,
    /// Trials that failed (never promoted).
    failed: Vec<usize>,
    /// Trials of a resumed search that started rung 0 but never finished it: run first.
    unfinished: Vec<usize>,
    running: usize,
}

impl Asha {
    /// A schedule of at most `budget` new trials, rungs from `min_epochs` by factors of
    /// `eta` up to `max_epochs`.
    pub fn new(eta: usize, min_epochs: u64, max_epochs: u64, budget: usize) -> Asha {
        let mut rungs = vec![min_epochs.min(max_epochs)];
        while let Some(&last) = rungs.last() {
            if last >= max_epochs {
                break;
            }
            rungs.push((last * eta as u64).min(max_epochs));
        }
        let n = rungs.len();
        Asha {
            rungs,
            eta,
            budget,
            started: 0,
            done: vec![vec![]; n],
            promoted: vec![vec![]; n],
            failed: vec![],
            unfinished: vec![],
            running: 0,
        }
    }

    /// The next job for a free worker.
    pub fn next_job(&mut self) -> Next {
        for k in (0..self.rungs.len().saturating_sub(1)).rev() {
            let mut ranked = self.done[k].clone();
            ranked.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
            let top = ranked.len() / self.eta;
            if let Some(&(id, _)) = ranked
                .iter()
                .take(top)
                .find(|(id, _)| !self.promoted[k].contains(id))
            {
                self.promoted[k].push(id);
                self.running += 1;
                return Next::Run { id, rung: k + 1 };
            }
        }
        if let Some(id) = self.unfinished.pop() {
            self.running += 1;
            return Next::Run { id, rung: 0 };
        }
        if self.started < self.budget {
            let id = self.started;
            self.started += 1;
            self.running += 1;
            return Next::Run { id, rung: 0 };
        }
        if self.running > 0 {
            Next::Wait
        } else {
            Next::Done
        }
    }

    /// Trial `id` finished rung `rung` with `score` (higher is better), or failed.
    pub fn report(&mut self, id: usize, rung: usize, score: Option<f64>) {
        self.running = self.running.saturating_sub(1);
        match score {
            Some(s) if s.is_finite() => self.done[rung].push((id, s)),
            _ => self.failed.push(id),
        }
    }

    /// After [`Asha::restore`] of a resumed search: the trials below the highest started
    /// one that never finished rung 0 (killed, or running elsewhere when the search
    /// stopped, or failed) run again before any new trial. `present(id)`: whether trial
    /// `id` has a folder.
    pub fn requeue_unfinished(&mut self, present: impl Fn(usize) -> bool) {
        let done: Vec<usize> = self.done[0].iter().map(|d| d.0).collect();
        self.unfinished = (0..self.started)
            .rev()
            .filter(|id| !done.contains(id) && present(*id))
            .collect(); // descending: `pop` takes the lowest id first
    }

    /// Records a rung finished before (a resumed search), without a job having run.
    pub fn restore(&mut self, id: usize, rung: usize, score: f64, started: bool) {
        if started && id >= self.started {
            self.started = id + 1;
        }
        if rung > 0 && !self.promoted[rung - 1].contains(&id) {
            self.promoted[rung - 1].push(id);
        }
        self.done[rung].push((id, score));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asha_promotes_the_top_third_of_each_rung() {
        let mut a = Asha::new(3, 1, 9, 9);
        assert_eq!(a.rungs, vec![1, 3, 9]);
        // Three trials start at rung 0 (nothing to promote until three have finished).
        for id in 0..3 {
            assert_eq!(a.next_job(), Next::Run { id, rung: 0 });
        }
        // Scores: trial 1 best, then 0, then 2.
        a.report(0, 0, Some(0.5));
        a.report(1, 0, Some(0.9));
        a.report(2, 0, Some(0.1));
        // Top 1/3 of 3 finished = 1 trial: trial 1 goes to rung 1.
        assert_eq!(a.next_job(), Next::Run { id: 1, rung: 1 });
        // No second promotion from 3 finished trials; a new trial starts.
        assert_eq!(a.next_job(), Next::Run { id: 3, rung: 0 });
        a.report(3, 0, Some(0.95));
        a.report(1, 1, Some(0.2));
        // Four finished rung 0: the top one is now 3 (0.95), not yet promoted.
        assert_eq!(a.next_job(), Next::Run { id: 3, rung: 1 });
        a.report(3, 1, Some(0.8));
        // Rung 1 has two (top 0 of 2); rung 0's top one is promoted: new trials.
        for id in 4..6 {
            assert_eq!(a.next_job(), Next::Run { id, rung: 0 });
            a.report(id, 0, Some(0.0));
        }
        assert_eq!(a.next_job(), Next::Run { id: 6, rung: 0 });
        a.report(6, 0, None); // a failed trial is never promoted
        assert_eq!(a.next_job(), Next::Run { id: 7, rung: 0 });
        a.report(7, 0, Some(0.99));
        // Seven scored at rung 0: the top two are 7 (0.99) and 3 → 7 goes up.
        assert_eq!(a.next_job(), Next::Run { id: 7, rung: 1 });
        a.report(7, 1, Some(0.9));
        // Rung 1: three finished → the top one, 7 (0.9), reaches the last rung.
        assert_eq!(a.next_job(), Next::Run { id: 7, rung: 2 });
        a.report(7, 2, Some(0.91));
        assert_eq!(a.next_job(), Next::Run { id: 8, rung: 0 });
        a.report(8, 0, Some(0.0));
        assert_eq!(a.next_job(), Next::Done);
    }

    #[test]
    fn a_resumed_halving_reruns_the_rung_zero_trials_that_never_finished() {
        let mut a = Asha::new(3, 1, 9, 6);
        // Trials 0, 1 and 3 finished rung 0 before the kill; 2 was still running.
        for (id, s) in [(0, 0.5), (1, 0.4), (3, 0.3)] {
            a.restore(id, 0, s, true);
        }
        a.requeue_unfinished(|id| id == 2);
        // Three finished: the best (0) is promoted first, then 2 runs again, then new ids.
        assert_eq!(a.next_job(), Next::Run { id: 0, rung: 1 });
        assert_eq!(a.next_job(), Next::Run { id: 2, rung: 0 });
        assert_eq!(a.next_job(), Next::Run { id: 4, rung: 0 });
    }
}

//! `strata tune`: hyperparameter search — grid, random, asynchronous successive halving —
//! over any training field, on this machine or a Ray cluster.
//!
//! A search lives in a folder: `space.toml` (the search space as given), `trials/NNNN/`
//! (one run folder per trial, with its resolved `trial.toml`), and the results
//! (`results.csv`, `results.json`, `best.toml`, plots; see [`results`]). Running the same
//! search folder again continues it: finished trials are read back, not redone; a trial
//! that was killed resumes from its last checkpoint (exactly, see `strata train
//! --resume`), or starts over when it had none.

pub mod exec;
pub mod plan;
pub mod results;
pub mod space;

pub use exec::{Executor, Job, Local};
pub use results::{TrialResult, TuneReport};
pub use space::{Dist, SearchSpace, Strategy};

use crate::error::{Error, Result};
use crate::train::{History, Observer, RunPaths, TrainConfig};
use plan::{Asha, Next, Values};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The folder of trial `id`.
pub fn trial_dir(search: &Path, id: usize) -> PathBuf {
    search.join("trials").join(format!("{id:04}"))
}

/// The ranking score of an epoch record: validation accuracy, or minus the validation
/// loss (higher is better either way).
fn score(metric: &str, r: &crate::train::Record) -> Option<f64> {
    match metric {
        "val_loss" => r.val_loss.map(|v| -v),
        _ => r.val_acc,
    }
}

/// How far a trial's run folder got: the last epoch record, if any.
fn progress(dir: &Path) -> Option<crate::train::Record> {
    History::read(&RunPaths::new(dir).history())
        .ok()?
        .into_iter()
        .rev()
        .find(|r| r.kind == "epoch")
}

/// The job that brings trial `id` to `epochs`, or `None` when its folder already holds
/// that epoch (a finished trial of a resumed search).
fn job_for(
    search: &Path,
    id: usize,
    rung: usize,
    epochs: u64,
    cfg: &TrainConfig,
) -> Result<Option<Job>> {
    let dir = trial_dir(search, id);
    let paths = RunPaths::new(&dir);
    if progress(&dir).is_some_and(|r| r.epoch >= epochs) && paths.metrics().exists() {
        return Ok(None);
    }
    std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
        path: dir.clone(),
        source,
    })?;
    let resume = paths.last().exists();
    if !resume {
        crate::checkpoint::write_atomic(&dir.join("trial.toml"), cfg.to_toml()?.as_bytes())?;
    }
    Ok(Some(Job {
        id,
        rung,
        dir,
        epochs,
        resume,
    }))
}

/// Runs (or continues) the search `space` in folder `dir` on `exec`.
pub fn run(
    space: &SearchSpace,
    space_text: &str,
    dir: &Path,
    exec: &mut dyn Executor,
    obs: &mut dyn Observer,
) -> Result<TuneReport> {
    space.validate()?;
    let val_fraction = space.config(&Values::new())?.val_fraction;
    if val_fraction <= 0.0 {
        return Err(Error::config(
            "search",
            "val_fraction",
            "a search ranks trials on validation: set val_fraction > 0 in [fixed]",
        ));
    }
    std::fs::create_dir_all(dir.join("trials")).map_err(|source| Error::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let saved = dir.join("space.toml");
    match std::fs::read_to_string(&saved) {
        Ok(old) if SearchSpace::parse(&old)? != *space => {
            return Err(Error::config(
                "search",
                "space",
                format!(
                    "{} holds a different search; continue it with its own space.toml, or use another --dir",
                    dir.display()
                ),
            ))
        }
        Ok(_) => obs.note(&format!("continuing the search in {}", dir.display())),
        Err(_) => crate::checkpoint::write_atomic(&saved, space_text.as_bytes())?,
    }
    let s = &space.settings;
    let full_epochs = space.config(&Values::new())?.epochs;
    let start = Instant::now();
    let out_of_time = || {
        s.minutes
            .is_some_and(|m| start.elapsed().as_secs_f64() > m * 60.0)
    };
    let mut failures: Vec<(usize, usize, String)> = vec![];

    match s.strategy {
        Strategy::Grid | Strategy::Random => {
            let trials = plan::trials(space);
            let mut queue = trials.iter().enumerate();
            let mut running = 0;
            loop {
                while running < exec.slots() && !out_of_time() && !obs.should_stop() {
                    let Some((id, values)) = queue.next() else {
                        break;
                    };
                    let cfg = match space.config(values) {
                        Ok(c) => c,
                        Err(e) => {
                            invalid(dir, id, 0, &e, &mut failures, obs)?;
                            continue;
                        }
                    };
                    if let Some(job) = job_for(dir, id, 0, cfg.epochs, &cfg)? {
                        obs.note(&format!("trial {id}: {}", results::show_values(values)));
                        exec.start(job)?;
                        running += 1;
                    }
                }
                if running == 0 {
                    break;
                }
                let (job, err) = exec.wait()?;
                running -= 1;
                report_job(&job, err, &mut failures, obs);
            }
        }
        Strategy::Halving => {
            let mut asha = Asha::new(s.eta, s.min_epochs, full_epochs, s.trials);
            // A resumed search: every rung each trial's history already shows.
            for id in 0..s.trials {
                let Ok(h) = History::read(&RunPaths::new(&trial_dir(dir, id)).history()) else {
                    continue;
                };
                for (k, &e) in asha.rungs.clone().iter().enumerate() {
                    if let Some(sc) = h
                        .iter()
                        .find(|r| r.kind == "epoch" && r.epoch == e)
                        .and_then(|r| score(&s.metric, r))
                    {
                        asha.restore(id, k, sc, k == 0);
                    }
                }
            }
            asha.requeue_unfinished(|id| trial_dir(dir, id).exists());
            let mut running = 0;
            loop {
                let next = if out_of_time() || obs.should_stop() {
                    if running == 0 {
                        Next::Done
                    } else {
                        Next::Wait
                    }
                } else if running < exec.slots() {
                    asha.next_job()
                } else {
                    Next::Wait
                };
                match next {
                    Next::Run { id, rung } => {
                        let values = plan::draw(space, id);
                        let cfg = match space.config(&values) {
                            Ok(c) => c,
                            Err(e) => {
                                invalid(dir, id, rung, &e, &mut failures, obs)?;
                                asha.report(id, rung, None);
                                continue;
                            }
                        };
                        let epochs = asha.rungs[rung];
                        match job_for(dir, id, rung, epochs, &cfg)? {
                            Some(job) => {
                                obs.note(&format!(
                                    "trial {id} to {epochs} epochs: {}",
                                    results::show_values(&values)
                                ));
                                exec.start(job)?;
                                running += 1;
                            }
                            None => asha.report(id, rung, rung_score(dir, id, epochs, &s.metric)),
                        }
                    }
                    Next::Wait if running > 0 => {
                        let (job, err) = exec.wait()?;
                        running -= 1;
                        let sc = match &err {
                            None => rung_score(dir, job.id, job.epochs, &s.metric),
                            Some(_) => None,
                        };
                        asha.report(job.id, job.rung, sc);
                        report_job(&job, err, &mut failures, obs);
                    }
                    _ => break,
                }
            }
        }
    }
    let report = results::gather(space, dir, &failures, start.elapsed().as_secs_f64())?;
    results::write(space, dir, &report)?;
    Ok(report)
}

/// A drawn combination that is not a valid configuration (say a warm-up longer than a
/// drawn number of epochs): the trial fails with the reason, the search goes on.
fn invalid(
    dir: &Path,
    id: usize,
    rung: usize,
    e: &Error,
    failures: &mut Vec<(usize, usize, String)>,
    obs: &mut dyn Observer,
) -> Result<()> {
    let d = trial_dir(dir, id);
    std::fs::create_dir_all(&d).map_err(|source| Error::Io {
        path: d.clone(),
        source,
    })?;
    obs.note(&format!("trial {id} is not a valid configuration: {e}"));
    failures.push((id, rung, format!("invalid configuration: {e}")));
    Ok(())
}

fn rung_score(dir: &Path, id: usize, epochs: u64, metric: &str) -> Option<f64> {
    History::read(&RunPaths::new(&trial_dir(dir, id)).history())
        .ok()?
        .iter()
        .find(|r| r.kind == "epoch" && r.epoch == epochs)
        .and_then(|r| score(metric, r))
}

fn report_job(
    job: &Job,
    err: Option<String>,
    failures: &mut Vec<(usize, usize, String)>,
    obs: &mut dyn Observer,
) {
    match err {
        Some(e) => {
            obs.note(&format!("trial {} failed: {e}", job.id));
            failures.push((job.id, job.rung, e));
        }
        None => {
            let r = progress(&job.dir);
            obs.note(&format!(
                "trial {} done ({} epochs): val acc {}",
                job.id,
                job.epochs,
                r.and_then(|r| r.val_acc)
                    .map_or("-".into(), |a| format!("{:.2}%", a * 100.0))
            ));
        }
    }
}

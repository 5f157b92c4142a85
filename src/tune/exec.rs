//! Executors: where a trial's training runs. Each trial is a `strata train` of its own
//! (its own process, run folder and resolved config), so a trial is exactly the run a
//! user would get from `strata train --config TRIAL/trial.toml`.
//!
//! - [`Local`]: several processes at once on this machine, the cores split between them;
//! - [`Ray`]: each trial a task on an existing Ray cluster, through the Python shim
//!   `tools/ray_trials.py` (Ray's API is Python's); the run folders come back into the
//!   search folder.

use crate::error::{Error, Result};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One training job: a trial to a number of epochs, in its run folder.
#[derive(Clone, Debug, PartialEq)]
pub struct Job {
    /// Trial number.
    pub id: usize,
    /// Halving rung (0 for grid and random).
    pub rung: usize,
    /// The trial's run folder (holds `trial.toml`).
    pub dir: PathBuf,
    /// Train to this many epochs.
    pub epochs: u64,
    /// Continue the run in `dir` (it holds a checkpoint) rather than start it.
    pub resume: bool,
}

/// Runs jobs, several at a time.
pub trait Executor {
    /// How many jobs may run at once.
    fn slots(&self) -> usize;
    /// Starts a job.
    fn start(&mut self, job: Job) -> Result<()>;
    /// Waits until a started job ends: the job, and its error text if it failed.
    fn wait(&mut self) -> Result<(Job, Option<String>)>;
}

/// The `strata train` arguments of a job.
pub fn train_args(job: &Job, threads: usize) -> Vec<String> {
    let dir = job.dir.display().to_string();
    let mut a = vec!["--threads".to_string(), threads.to_string(), "train".into()];
    if job.resume {
        a.extend(["--resume".into(), dir]);
    } else {
        a.extend([
            "--config".into(),
            job.dir.join("trial.toml").display().to_string(),
            "--run-dir".into(),
            dir,
        ]);
    }
    a.extend(["--epochs".into(), job.epochs.to_string()]);
    a
}

/// Trials as child processes of this machine.
pub struct Local {
    binary: PathBuf,
    slots: usize,
    threads: usize,
    running: Vec<(Job, Child)>,
}

impl Local {
    /// `parallel` trials at once with `threads` math threads each, running `binary`
    /// (the `strata` executable).
    pub fn new(binary: &Path, parallel: usize, threads: usize) -> Local {
        Local {
            binary: binary.to_path_buf(),
            slots: parallel.max(1),
            threads: threads.max(1),
            running: vec![],
        }
    }
}

impl Executor for Local {
    fn slots(&self) -> usize {
        self.slots
    }

    fn start(&mut self, job: Job) -> Result<()> {
        let log = std::fs::File::create(job.dir.join("train.log")).map_err(|source| Error::Io {
            path: job.dir.join("train.log"),
            source,
        })?;
        let mut cmd = Command::new(&self.binary);
        die_with_parent(&mut cmd);
        let child = cmd
            .args(train_args(&job, self.threads))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|source| Error::Io {
                path: self.binary.clone(),
                source,
            })?;
        self.running.push((job, child));
        Ok(())
    }

    fn wait(&mut self) -> Result<(Job, Option<String>)> {
        loop {
            for i in 0..self.running.len() {
                let status = self.running[i].1.try_wait().map_err(|source| Error::Io {
                    path: self.binary.clone(),
                    source,
                })?;
                if let Some(status) = status {
                    let (job, _) = self.running.swap_remove(i);
                    let err = (!status.success()).then(|| last_error(&job.dir, status.code()));
                    return Ok((job, err));
                }
            }
            if self.running.is_empty() {
                return Err(Error::state("tune", "waiting with no job running"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Local {
    fn drop(&mut self) {
        // A search that stops (an error, Ctrl-C) does not leave trials training.
        for (_, child) in &mut self.running {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// A trial process dies with the search that started it, even when the search is
/// killed (SIGKILL leaves no time for `Drop`): Linux's parent-death signal. Otherwise a
/// trial would go on writing its folder, and the resumed search would find it locked.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn die_with_parent(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the child between fork and exec and only calls
    // prctl(2), which is async-signal-safe; it touches no memory of the parent.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn die_with_parent(_cmd: &mut Command) {}

/// The `error:` line of a failed trial's log, or its exit code.
pub fn last_error(dir: &Path, code: Option<i32>) -> String {
    std::fs::read_to_string(dir.join("train.log"))
        .ok()
        .and_then(|log| {
            log.lines()
                .rev()
                .find(|l| l.starts_with("error:"))
                .map(|l| l.trim_start_matches("error:").trim().to_string())
        })
        .unwrap_or_else(|| format!("exited with code {code:?}"))
}

/// Trials as Ray tasks: the jobs go to `tools/ray_trials.py` (one Python process for the
/// whole search, connected to the cluster at `address`), which runs each as a task that
/// calls the `strata` binary on its node and sends the run folder back.
pub struct Ray {
    shim: Child,
    stdin: std::process::ChildStdin,
    lines: std::io::Lines<std::io::BufReader<std::process::ChildStdout>>,
    slots: usize,
    running: Vec<Job>,
}

impl Ray {
    /// Connects to the Ray cluster at `address` through `python` running `shim`; each
    /// trial's task asks for `threads` CPUs and runs `binary` (a path valid on every node).
    pub fn new(
        python: &str,
        shim: &Path,
        address: &str,
        binary: &Path,
        parallel: usize,
        threads: usize,
    ) -> Result<Ray> {
        let mut child = Command::new(python)
            .arg(shim)
            .args(["--address", address, "--binary"])
            .arg(binary)
            .args(["--threads", &threads.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|source| Error::Io {
                path: PathBuf::from(python),
                source,
            })?;
        let io = |what: &str| Error::state("ray", format!("the shim has no {what}"));
        let stdin = child.stdin.take().ok_or_else(|| io("stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| io("stdout"))?;
        use std::io::BufRead;
        let mut lines = std::io::BufReader::new(stdout).lines();
        // The shim says `ready` once connected, or exits with Ray's error.
        match lines.next() {
            Some(Ok(l)) if l.trim() == "ready" => {}
            other => {
                let _ = child.kill();
                return Err(Error::state(
                    "ray",
                    format!(
                        "could not connect to the Ray cluster at {address} ({}); is `ray start --head` running, and `pip install ray` done for {python}?",
                        match other {
                            Some(Ok(l)) => l,
                            _ => "the shim exited".into(),
                        }
                    ),
                ));
            }
        }
        Ok(Ray {
            shim: child,
            stdin,
            lines,
            slots: parallel.max(1),
            running: vec![],
        })
    }
}

impl Executor for Ray {
    fn slots(&self) -> usize {
        self.slots
    }

    fn start(&mut self, job: Job) -> Result<()> {
        use std::io::Write;
        let msg = serde_json::json!({
            "id": job.id,
            "rung": job.rung,
            "dir": job.dir,
            "args": train_args(&job, 0)[2..].to_vec(),
        });
        writeln!(self.stdin, "{msg}")
            .and_then(|_| self.stdin.flush())
            .map_err(|e| Error::state("ray", format!("the shim stopped: {e}")))?;
        self.running.push(job);
        Ok(())
    }

    fn wait(&mut self) -> Result<(Job, Option<String>)> {
        let line = match self.lines.next() {
            Some(Ok(l)) => l,
            _ => {
                return Err(Error::state(
                    "ray",
                    "the shim stopped before every trial came back",
                ))
            }
        };
        let v: serde_json::Value = serde_json::from_str(&line)
            .map_err(|e| Error::state("ray", format!("bad reply from the shim ({e}): {line}")))?;
        let id = v["id"].as_u64().unwrap_or(u64::MAX) as usize;
        let rung = v["rung"].as_u64().unwrap_or(0) as usize;
        let i = self
            .running
            .iter()
            .position(|j| j.id == id && j.rung == rung)
            .ok_or_else(|| {
                Error::state("ray", format!("a reply for a trial not running: {line}"))
            })?;
        let job = self.running.swap_remove(i);
        let err = v["error"].as_str().map(str::to_string);
        Ok((job, err))
    }
}

impl Drop for Ray {
    fn drop(&mut self) {
        let _ = self.shim.kill();
        let _ = self.shim.wait();
    }
}

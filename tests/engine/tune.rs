//! `strata tune`: the plans (grid coverage, random distributions), importance, bad search
//! spaces, and real searches — local, killed and continued, with a failing trial, and on
//! a local Ray head when Ray is installed.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use strata::train::{Quiet, TrainConfig};
use strata::tune::{self, plan, results, Dist, SearchSpace, TrialResult};

use crate::embedded;

fn space(strategy: &str, trials: usize, space: &str) -> String {
    format!(
        "[search]\nstrategy = \"{strategy}\"\ntrials = {trials}\nseed = 3\n\n\
         [fixed]\ndata = \"{}\"\nepochs = 1\nper_class = 30\nwidth = 0.25\nworkers = 1\nbatch_size = 64\n\n\
         [space]\n{space}",
        embedded()
    )
}

#[test]
fn a_grid_covers_the_declared_space_exactly() {
    let s = SearchSpace::parse(&format!(
        "{}\n[search]\nstrategy = \"grid\"\ntrials = 0\ngrid_points = 3\n",
        "[space]\nlr = \"log_uniform(1e-3, 1e-1)\"\nbatch_size = \"choice([32, 64])\"\nwidth = \"int(1, 2)\"\n"
    ))
    .unwrap();
    let g = plan::trials(&s);
    assert_eq!(g.len(), 3 * 2 * 2);
    let keys: BTreeSet<String> = g.iter().map(|v| format!("{v:?}")).collect();
    assert_eq!(keys.len(), g.len(), "a combination twice");
    let lrs: BTreeSet<String> = g
        .iter()
        .map(|v| format!("{:.6}", v["lr"].as_float().unwrap()))
        .collect();
    assert_eq!(
        lrs,
        BTreeSet::from(["0.001000".into(), "0.010000".into(), "0.100000".into()])
    );
    for v in &g {
        assert!([32, 64].contains(&v["batch_size"].as_integer().unwrap()));
        assert!([1, 2].contains(&v["width"].as_integer().unwrap()));
    }
}

/// Kolmogorov–Smirnov distance between samples and the uniform law on [0, 1].
fn ks_uniform(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len() as f64;
    xs.iter()
        .enumerate()
        .map(|(i, &x)| ((i + 1) as f64 / n - x).abs().max((x - i as f64 / n).abs()))
        .fold(0.0, f64::max)
}

#[test]
fn random_draws_follow_each_distribution() {
    let s = SearchSpace::parse(
        "[search]\ntrials = 2000\nseed = 11\n[space]\nlr = \"log_uniform(1e-4, 1)\"\nmomentum = \"uniform(0.8, 0.99)\"\nwidth = \"int(1, 4)\"\nnorm = \"choice(['batch', 'group:4', 'none'])\"\n",
    )
    .unwrap();
    let draws = plan::trials(&s);
    let n = draws.len() as f64;
    // 5% critical value of the KS statistic: 1.36/√n.
    let crit = 1.36 / n.sqrt();
    let lr: Vec<f64> = draws
        .iter()
        .map(|v| (v["lr"].as_float().unwrap().log10() + 4.0) / 4.0)
        .collect();
    assert!(
        ks_uniform(lr.clone()) < crit,
        "log-uniform lr: D = {}",
        ks_uniform(lr)
    );
    let m: Vec<f64> = draws
        .iter()
        .map(|v| (v["momentum"].as_float().unwrap() - 0.8) / 0.19)
        .collect();
    assert!(
        ks_uniform(m.clone()) < crit,
        "uniform momentum: D = {}",
        ks_uniform(m)
    );
    // Chi-square over the int values (3 degrees of freedom, 5%: 7.81) and the choices (2: 5.99).
    let chi = |counts: &[f64]| {
        let e = n / counts.len() as f64;
        counts.iter().map(|c| (c - e).powi(2) / e).sum::<f64>()
    };
    let mut w = [0.0; 4];
    for v in &draws {
        w[v["width"].as_integer().unwrap() as usize - 1] += 1.0;
    }
    assert!(chi(&w) < 7.81, "int width: {w:?}");
    let mut c = [0.0; 3];
    for v in &draws {
        let i = ["batch", "group:4", "none"]
            .iter()
            .position(|x| Some(*x) == v["norm"].as_str())
            .unwrap();
        c[i] += 1.0;
    }
    assert!(chi(&c) < 5.99, "choice norm: {c:?}");
    // The same seed draws the same trials; another seed others.
    assert_eq!(plan::trials(&s)[..5], draws[..5]);
    let mut other = s.clone();
    other.settings.seed = 12;
    assert_ne!(plan::trials(&other)[..5], draws[..5]);
}

#[test]
fn importance_ranks_the_parameter_that_decides_first() {
    let s = SearchSpace::parse(
        "[space]\nlr = \"log_uniform(1e-4, 1)\"\nmomentum = \"uniform(0.8, 0.99)\"\nbatch_size = \"choice([32, 64, 128])\"\n",
    )
    .unwrap();
    let trials: Vec<TrialResult> = (0..60)
        .map(|id| {
            let values = plan::draw(&s, id);
            let lr = values["lr"].as_float().unwrap().log10();
            let m = values["momentum"].as_float().unwrap();
            // The metric peaks at lr = 1e-2; momentum adds a little, batch size nothing.
            let metric = 0.9 - 0.05 * (lr + 2.0).powi(2) + 0.02 * (m - 0.9);
            TrialResult {
                id,
                values,
                epochs: 1,
                metric: Some(metric),
                val_acc: Some(metric),
                val_loss: None,
                time_s: 0.0,
                error: None,
            }
        })
        .collect();
    let imp = results::importance(&s, &trials);
    assert_eq!(imp[0].0, "lr", "{imp:?}");
    assert!(imp[0].1 > 0.5 && imp[1].1 < 0.2, "{imp:?}");
}

#[test]
fn bad_search_spaces_are_refused_before_any_trial() {
    for (text, says) in [
        ("[space]\nlr = \"log_uniform(0, 1)\"\n", "low > 0"),
        ("[space]\nlr = \"log_uniform(1, 0.1)\"\n", "low < high"),
        ("[space]\nlr = \"uniform(2, 2)\"\n", "low < high"),
        ("[space]\nnorm = \"choice([])\"\n", "nothing to choose"),
        (
            "[space]\nlearning_rate = \"log_uniform(1e-3, 1)\"\n",
            "learning_rate",
        ),
        (
            "[space]\nbatch_size = \"choice(['big', 'small'])\"\n",
            "batch_size",
        ),
        ("[space]\nlr = \"gaussian(0, 1)\"\n", "unknown distribution"),
        (
            "[search]\ntrials = 0\n[space]\nlr = \"uniform(0.1, 0.2)\"\n",
            "0 trials",
        ),
        ("[search]\nstrategy = \"bayes\"\n", "bayes"),
        ("[fixed]\nepochs = 0\n", "epochs"),
    ] {
        let err = SearchSpace::parse(text).unwrap_err().to_string();
        assert!(err.contains(says), "{text}: {err}");
    }
    // Through the command: exit 2, no search folder.
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("bad.toml");
    std::fs::write(&bad, "[space]\nlr = \"log_uniform(-1, 1)\"\n").unwrap();
    let dir = tmp.path().join("search");
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "tune",
            bad.to_str().unwrap(),
            "--dir",
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("bad.toml") && err.contains("low > 0"), "{err}");
    assert!(!dir.exists());
}

fn table(r: &tune::TuneReport) -> Vec<(usize, String, u64, Option<u64>)> {
    r.trials
        .iter()
        .map(|t| {
            // Values to 12 digits: JSON's shortest float text may move the last bit.
            let values = t
                .values
                .iter()
                .map(|(k, v)| format!("{k}={:.12e}", v.as_float().unwrap_or(f64::NAN)))
                .collect::<Vec<_>>()
                .join(" ");
            (t.id, values, t.epochs, t.metric.map(f64::to_bits))
        })
        .collect()
}

#[test]
fn a_local_search_writes_its_results_and_a_killed_one_continues_to_the_same_table() {
    let tmp = tempfile::tempdir().unwrap();
    let text = space(
        "random",
        4,
        "lr = \"log_uniform(1e-3, 0.3)\"\nweight_decay = \"log_uniform(1e-5, 1e-3)\"\n",
    );
    let s = SearchSpace::parse(&text).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_strata"));
    let whole = tmp.path().join("whole");
    let mut ex = tune::Local::new(bin, 1, 2);
    let r = tune::run(&s, &text, &whole, &mut ex, &mut Quiet).unwrap();
    assert_eq!(r.trials.len(), 4);
    assert!(
        r.trials
            .iter()
            .all(|t| t.metric.is_some() && t.error.is_none()),
        "{r:#?}"
    );
    let m: Vec<f64> = r.trials.iter().filter_map(|t| t.metric).collect();
    assert!(m.windows(2).all(|p| p[0] >= p[1]), "not best first: {m:?}");
    for f in [
        "results.csv",
        "results.json",
        "best.toml",
        "best_so_far.svg",
        "val_acc_vs_lr.svg",
    ] {
        assert!(whole.join(f).is_file(), "{f}");
    }
    assert_eq!(
        std::fs::read_to_string(whole.join("results.csv"))
            .unwrap()
            .lines()
            .count(),
        5
    );
    let best = TrainConfig::from_toml(&whole.join("best.toml")).unwrap();
    assert_eq!(best, s.config(&r.trials[0].values).unwrap());

    // The same search through the command, killed once the second trial has started,
    // then run again on its folder.
    let space_file = tmp.path().join("space.toml");
    std::fs::write(&space_file, &text).unwrap();
    let killed = tmp.path().join("killed");
    let mut child = Command::new(bin)
        .args([
            "--threads",
            "2",
            "tune",
            space_file.to_str().unwrap(),
            "--dir",
            killed.to_str().unwrap(),
        ])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while !tune::trial_dir(&killed, 1).join("trial.toml").exists() {
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "the search did not start"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let out = Command::new(bin)
        .args([
            "--threads",
            "2",
            "tune",
            "--dir",
            killed.to_str().unwrap(),
            "--json",
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let again: tune::TuneReport = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(table(&again), table(&r));
}

#[test]
fn halving_promotes_by_rungs_and_a_failing_trial_is_reported_while_the_search_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    // per_class 100000 is more than the embedded subset has: those trials fail at data
    // loading; the search goes on with the others.
    let text = space(
        "random",
        4,
        "lr = \"log_uniform(1e-3, 0.3)\"\nper_class = \"choice([30, 100000])\"\n",
    );
    let s = SearchSpace::parse(&text).unwrap();
    let bin = Path::new(env!("CARGO_BIN_EXE_strata"));
    let mut ex = tune::Local::new(bin, 2, 1);
    let r = tune::run(&s, &text, &tmp.path().join("f"), &mut ex, &mut Quiet).unwrap();
    let failed: Vec<&TrialResult> = r.trials.iter().filter(|t| t.error.is_some()).collect();
    assert!(!failed.is_empty() && failed.len() < 4, "{r:#?}");
    for t in &failed {
        assert_eq!(t.values["per_class"].as_integer(), Some(100000));
        assert!(t.error.as_deref().unwrap().contains("per"), "{t:?}");
    }
    assert!(r.best().is_some());

    // Halving: 6 trials, rungs of 1 and 3 epochs with η = 3 → the top 2 reach 3 epochs.
    let text = space("halving", 6, "lr = \"log_uniform(1e-3, 0.3)\"\n")
        .replace("epochs = 1", "epochs = 3")
        .replace("[search]\n", "[search]\neta = 3\nmin_epochs = 1\n");
    let s = SearchSpace::parse(&text).unwrap();
    let mut ex = tune::Local::new(bin, 1, 2);
    let r = tune::run(&s, &text, &tmp.path().join("h"), &mut ex, &mut Quiet).unwrap();
    let mut epochs: Vec<u64> = r.trials.iter().map(|t| t.epochs).collect();
    epochs.sort();
    assert_eq!(epochs, vec![1, 1, 1, 1, 3, 3], "{r:#?}");
    // The promoted ones were among the best after one epoch.
    assert!(matches!(s.params["lr"], Dist::LogUniform { .. }));
}

#[test]
fn a_search_on_a_local_ray_head_brings_every_trial_back() {
    // Ray is a Python package: this test runs where `ray` is importable — the Python of
    // STRATA_RAY_PYTHON, else .venv-ray/bin/python (what .ci/run installs), else python3 —
    // and says so where it is not. CI sets STRATA_REQUIRE_RAY so that it cannot skip.
    let venv = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv-ray/bin/python");
    let python = std::env::var("STRATA_RAY_PYTHON").unwrap_or_else(|_| {
        if venv.is_file() {
            venv.display().to_string()
        } else {
            "python3".into()
        }
    });
    let has_ray = Command::new(&python)
        .args(["-c", "import ray"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_ray {
        assert!(
            std::env::var_os("STRATA_REQUIRE_RAY").is_none(),
            "STRATA_REQUIRE_RAY is set but {python} cannot import ray"
        );
        eprintln!("skipped: {python} has no ray (set STRATA_RAY_PYTHON)");
        return;
    }
    let ray = Path::new(&python).with_file_name("ray");
    let tmp = tempfile::tempdir().unwrap();
    let port = 6380 + (std::process::id() % 200) as u16;
    let address = format!("127.0.0.1:{port}");
    let start = Command::new(&ray)
        .args([
            "start",
            "--head",
            "--port",
            &port.to_string(),
            "--num-cpus",
            "2",
            "--include-dashboard=false",
            "--disable-usage-stats",
        ])
        .env("RAY_TMPDIR", tmp.path())
        .output()
        .unwrap();
    assert!(
        start.status.success(),
        "{}",
        String::from_utf8_lossy(&start.stderr)
    );
    struct Stop(std::path::PathBuf);
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = Command::new(&self.0).args(["stop", "--force"]).output();
        }
    }
    let _stop = Stop(ray.clone());
    let text = space(
        "random",
        3,
        "lr = \"log_uniform(1e-3, 0.3)\"\nper_class = \"choice([30, 100000])\"\n",
    );
    let space_file = tmp.path().join("space.toml");
    std::fs::write(&space_file, &text).unwrap();
    let dir = tmp.path().join("search");
    let out = Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([
            "tune",
            space_file.to_str().unwrap(),
            "--dir",
            dir.to_str().unwrap(),
            "--ray",
            &address,
            "--python",
            &python,
            "--parallel",
            "2",
            "--trial-threads",
            "1",
            "--json",
        ])
        .env(
            "STRATA_RAY_SHIM",
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/ray_trials.py"),
        )
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: tune::TuneReport = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(r.trials.len(), 3);
    for t in &r.trials {
        let big = t.values["per_class"].as_integer() == Some(100000);
        assert_eq!(t.error.is_some(), big, "{t:?}");
        assert_eq!(t.metric.is_some(), !big, "{t:?}");
        // The run folder came back from the worker.
        let d = tune::trial_dir(&dir, t.id);
        assert!(d.join("train.log").is_file(), "{t:?}");
        assert_eq!(d.join("history.jsonl").is_file(), !big, "{t:?}");
    }
}

#[test]
fn refine_narrows_each_range_around_the_best_trials_and_round_trips() {
    let s = SearchSpace::parse(
        "[search]\ntrials = 8\n[fixed]\nepochs = 2\n[space]\nlr = \"log_uniform(1e-4, 1)\"\nmomentum = \"uniform(0.5, 0.99)\"\nbatch_size = \"choice([32, 64, 128])\"\n",
    )
    .unwrap();
    // The best two trials have lr 1e-2 and 4e-2, momentum 0.9 and 0.95, batch 64.
    let trial = |id: usize, lr: f64, m: f64, b: i64, acc: f64| TrialResult {
        id,
        values: [
            ("lr".to_string(), toml::Value::Float(lr)),
            ("momentum".to_string(), toml::Value::Float(m)),
            ("batch_size".to_string(), toml::Value::Integer(b)),
        ]
        .into(),
        epochs: 2,
        metric: Some(acc),
        val_acc: Some(acc),
        val_loss: None,
        time_s: 1.0,
        error: None,
    };
    let trials = vec![
        trial(0, 1e-2, 0.9, 64, 0.9),
        trial(1, 4e-2, 0.95, 64, 0.88),
        trial(2, 1e-4, 0.5, 32, 0.5),
        trial(3, 0.9, 0.6, 128, 0.1),
        trial(4, 3e-4, 0.7, 32, 0.6),
        trial(5, 0.5, 0.8, 128, 0.2),
        trial(6, 2e-3, 0.55, 128, 0.7),
        trial(7, 0.2, 0.98, 32, 0.3),
    ];
    let report = tune::TuneReport {
        strategy: tune::Strategy::Random,
        metric: "val_acc".into(),
        importance: vec![],
        trials,
        time_s: 0.0,
    };
    let r = results::refine(&s, &report).unwrap();
    match r.params["lr"] {
        Dist::LogUniform { low, high } => {
            // Span 1e-2..4e-2 (ln ratio 1.39), widened by half of it on each side.
            // ln(4e-2 / 1e-2) = ln 4, padded by ln 2 on each side: 5e-3 .. 8e-2.
            assert!(
                (low - 5e-3).abs() < 1e-9 && (high - 8e-2).abs() < 1e-9,
                "{low} {high}"
            );
        }
        ref d => panic!("{d:?}"),
    }
    match r.params["momentum"] {
        Dist::Uniform { low, high } => {
            assert!(
                (low - 0.875).abs() < 1e-9 && (high - 0.975).abs() < 1e-9,
                "{low} {high}"
            )
        }
        ref d => panic!("{d:?}"),
    }
    assert_eq!(
        r.params["batch_size"],
        Dist::Choice(vec![toml::Value::Integer(64)])
    );
    let back = SearchSpace::parse(&results::to_toml(&r).unwrap()).unwrap();
    assert_eq!(back, r);
}

#[test]
fn a_drawn_combination_that_is_not_a_valid_config_is_a_failed_trial() {
    // Each field's extremes are valid alone; a warm-up of 3 epochs with 1 epoch is not.
    let text = space(
        "grid",
        0,
        "epochs = \"choice([1, 2])\"\nwarmup_epochs = \"choice([0.0, 1.5])\"\n",
    )
    .replace("epochs = 1\n", "epochs = 2\n");
    let s = SearchSpace::parse(&text).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let mut ex = tune::Local::new(Path::new(env!("CARGO_BIN_EXE_strata")), 1, 2);
    let r = tune::run(&s, &text, tmp.path(), &mut ex, &mut Quiet).unwrap();
    assert_eq!(r.trials.len(), 4);
    let bad: Vec<&TrialResult> = r.trials.iter().filter(|t| t.error.is_some()).collect();
    assert_eq!(bad.len(), 1, "{r:#?}");
    assert!(
        bad[0].error.as_deref().unwrap().contains("warmup"),
        "{:?}",
        bad[0]
    );
}

//! `strata tune`: a search space file in, a results folder out.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::path::PathBuf;
use strata::tune::{self, results, SearchSpace};

/// `strata tune` arguments.
#[derive(Args, Debug)]
pub struct TuneArgs {
    /// The search space (TOML: [search], [fixed], [space]; see docs/tuning.md). Not
    /// needed with --refine or to continue a search folder that has its space.toml.
    pub space: Option<PathBuf>,
    /// The search folder. Default: runs/tune-<space file name>. Running again on a
    /// folder continues its search (finished trials are kept).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Narrow the ranges of the search in this folder around its best trials, and run
    /// the narrowed search (in DIR-refined unless --dir is given).
    #[arg(long, value_name = "SEARCH_DIR", conflicts_with = "space")]
    pub refine: Option<PathBuf>,
    /// Trials at once. Default: 1 (on 2 cores, one trial with 2 threads beats two with
    /// one each; see docs/tuning.md).
    #[arg(long, default_value_t = 1)]
    pub parallel: usize,
    /// Math threads per trial. Default: the cores divided among the parallel trials.
    #[arg(long, value_name = "N")]
    pub trial_threads: Option<usize>,
    /// Run each trial as a task on the Ray cluster at this address (e.g. 127.0.0.1:6379,
    /// or `auto`); needs `pip install ray` for --python and the strata binary at the same
    /// path on every node.
    #[arg(long, value_name = "ADDRESS")]
    pub ray: Option<String>,
    /// The Python that has Ray (for --ray).
    #[arg(long, default_value = "python3")]
    pub python: String,
    /// Print the results as JSON on stdout instead of a table.
    #[arg(long)]
    pub json: bool,
}

fn read_space(path: &PathBuf) -> Result<(SearchSpace, String)> {
    let text = std::fs::read_to_string(path).with_context(|| format!("{}", path.display()))?;
    let space = SearchSpace::parse(&text).with_context(|| format!("{}", path.display()))?;
    Ok((space, text))
}

/// `strata tune`.
pub fn run(args: &TuneArgs) -> Result<()> {
    let (space, text, dir) = match (&args.refine, &args.space) {
        (Some(old), _) => {
            let (space, _) = read_space(&old.join("space.toml"))?;
            let report = tune::results::gather(&space, old, &[], 0.0)?;
            let narrowed = results::refine(&space, &report)?;
            let text = results::to_toml(&narrowed)?;
            let dir = args
                .dir
                .clone()
                .unwrap_or_else(|| PathBuf::from(format!("{}-refined", old.display())));
            eprintln!("refined space of {}:\n{text}", old.display());
            (narrowed, text, dir)
        }
        (None, Some(p)) => {
            let (space, text) = read_space(p)?;
            let dir = args.dir.clone().unwrap_or_else(|| {
                let stem = p
                    .file_stem()
                    .map_or("search".into(), |s| s.to_string_lossy().into_owned());
                PathBuf::from("runs").join(format!("tune-{stem}"))
            });
            (space, text, dir)
        }
        (None, None) => match &args.dir {
            Some(d) if d.join("space.toml").is_file() => {
                let (space, text) = read_space(&d.join("space.toml"))?;
                (space, text, d.clone())
            }
            _ => bail!(
                "give a search space file, --refine SEARCH_DIR, or --dir of a search to continue"
            ),
        },
    };
    if args.parallel == 0 {
        bail!("--parallel 0: give 1 or more trials at once");
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let threads = args.trial_threads.unwrap_or((cores / args.parallel).max(1));
    let binary = std::env::current_exe().context("cannot find the strata executable")?;
    let mut notes = super::method::Notes;
    let report = match &args.ray {
        Some(address) => {
            let shim = ray_shim()?;
            let mut ex = tune::exec::Ray::new(
                &args.python,
                &shim,
                address,
                &binary,
                args.parallel,
                threads,
            )?;
            tune::run(&space, &text, &dir, &mut ex, &mut notes)?
        }
        None => {
            let mut ex = tune::Local::new(&binary, args.parallel, threads);
            tune::run(&space, &text, &dir, &mut ex, &mut notes)?
        }
    };
    let page = super::report::leave(&dir);
    if args.json {
        eprint!("{page}");
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(());
    }
    let names: Vec<&String> = space.params.keys().collect();
    let mut s = format!(
        "\n{:?} search, {} trials, ranked by {} (best first):\n\n  {:>4} {:>5}",
        report.strategy,
        report.trials.len(),
        report.metric,
        "rank",
        "trial"
    )
    .to_lowercase();
    for n in &names {
        s.push_str(&format!(" {:>12}", n));
    }
    s.push_str(&format!(" {:>6} {:>9}\n", "epochs", report.metric));
    for (i, t) in report.trials.iter().enumerate() {
        s.push_str(&format!("  {:>4} {:>5}", i + 1, t.id));
        for n in &names {
            let v = t.values.get(*n).map_or(String::new(), |v| match v {
                toml::Value::Float(f) if *f != 0.0 && f.abs() < 1e-2 => format!("{f:.3e}"),
                toml::Value::Float(f) => format!("{f:.4}"),
                other => results::show(other),
            });
            s.push_str(&format!(" {v:>12}"));
        }
        let m = match (t.metric, &t.error) {
            (Some(m), _) => format!("{m:.4}"),
            (None, Some(e)) => format!("failed: {e}"),
            (None, None) => "-".into(),
        };
        s.push_str(&format!(" {:>6} {:>9}\n", t.epochs, m));
    }
    s.push_str(
        "\nwhich hyperparameters mattered (share of the metric's variance each explains alone):\n",
    );
    for (k, v) in &report.importance {
        s.push_str(&format!("  {k:<16} {:>5.1}%\n", v * 100.0));
    }
    s.push_str(&format!(
        "\nresults: {}/results.csv, results.json; plots: {}/*.svg\n",
        dir.display(),
        dir.display()
    ));
    if report.best().is_some() {
        s.push_str(&format!(
            "best configuration: strata train --config {}\n",
            dir.join("best.toml").display()
        ));
    }
    s.push_str(&page);
    super::models::out(&s)
}

/// `tools/ray_trials.py`, beside the repository's binary or from STRATA_RAY_SHIM.
fn ray_shim() -> Result<PathBuf> {
    if let Some(p) = std::env::var_os("STRATA_RAY_SHIM") {
        return Ok(PathBuf::from(p));
    }
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tools/ray_trials.py");
    if here.is_file() {
        return Ok(here);
    }
    bail!("tools/ray_trials.py not found; set STRATA_RAY_SHIM to its path")
}

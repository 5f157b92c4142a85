//! `strata check`, `strata lr-find`, `strata diagnose`: the library's method functions,
//! parsed and printed.

use super::train::RunFlags;
use anyhow::Result;
use clap::Args;
use std::path::{Path, PathBuf};
use strata::method::check::{self, CheckOptions, CheckReport, LayerVerdict};
use strata::method::{Status, Thresholds};
use strata::train::{Observer, TrainConfig};

/// Notes on stderr, as the work goes.
pub struct Notes;
impl Observer for Notes {
    fn note(&mut self, msg: &str) {
        eprintln!("{msg}");
    }
}

/// The thresholds: the defaults, or a TOML file's overrides.
pub fn thresholds(file: &Option<PathBuf>) -> Result<Thresholds> {
    Ok(match file {
        Some(p) => Thresholds::from_toml(p)?,
        None => Thresholds::default(),
    })
}

/// A default output folder: runs/<what>-<model>-<data>.
pub fn default_out(what: &str, cfg: &TrainConfig) -> PathBuf {
    let data = Path::new(&cfg.data)
        .file_name()
        .map_or("data".into(), |s| s.to_string_lossy().into_owned());
    PathBuf::from("runs").join(format!("{what}-{}-{data}", cfg.model))
}

/// `strata check` arguments.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Folder for check.json and preview.png. Default: runs/check-<model>-<data>.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// A TOML file overriding any threshold (see `strata::method::Thresholds` in
    /// docs/method.md).
    #[arg(long, value_name = "FILE")]
    pub thresholds: Option<PathBuf>,
    /// Print the report as JSON on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub run: RunFlags,
}

/// `strata check`: exit 0 when nothing failed, 1 when a check failed.
pub fn check(args: &CheckArgs) -> Result<()> {
    let cfg = args.run.resolve()?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out("check", &cfg));
    let opts = CheckOptions {
        thresholds: thresholds(&args.thresholds)?,
        out: Some(out.clone()),
    };
    let report = check::check(&cfg, &opts, &mut Notes)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        super::models::out(&render_check(&report, &out))?;
    }
    if report.status == Status::Fail {
        std::process::exit(1);
    }
    Ok(())
}

fn render_check(r: &CheckReport, out: &Path) -> String {
    let mut s = format!(
        "\ncheck: {} on {} ({} classes)\n\n",
        r.model,
        r.data,
        r.classes.len()
    );
    for item in &r.items {
        s.push_str(&format!(
            "[{}] {}: {}\n",
            item.status.label(),
            item.name,
            item.summary
        ));
        for d in &item.details {
            s.push_str(&format!("       {d}\n"));
        }
        s.push('\n');
    }
    s.push_str("the network at initialization, layer by layer (one batch, training mode):\n");
    s.push_str(&format!(
        "  {:<26} {:>8} {:>9} {:>9} {:>7} {:>7} {:>10}  verdict\n",
        "layer", "unit", "mean", "std", "dead", "satur.", "|dW|/|W|"
    ));
    for row in &r.layers {
        let a = &row.act;
        let unit = format!("{:?}", a.unit).to_lowercase();
        s.push_str(&format!(
            "  {:<26} {:>8} {:>+9.3} {:>9.3} {:>6.0}% {:>6.0}% {:>10}  {}{}\n",
            a.name,
            unit,
            a.mean,
            a.std,
            a.dead * 100.0,
            a.saturated * 100.0,
            row.grad_ratio.map_or("".into(), |g| format!("{g:.2e}")),
            format!("{:?}", row.verdict).to_lowercase(),
            row.reason
                .as_ref()
                .filter(|_| row.verdict != LayerVerdict::Healthy)
                .map_or(String::new(), |w| format!(" ({w})"))
        ));
    }
    let count = |st: Status| r.items.iter().filter(|i| i.status == st).count();
    s.push_str(&format!(
        "\nsummary: {} passed, {} warnings, {} failed\n",
        count(Status::Pass),
        count(Status::Warn),
        count(Status::Fail)
    ));
    if let Some(p) = &r.preview {
        s.push_str(&format!(
            "preview of augmented training images: {} (rows: {})\n",
            p.display(),
            r.preview_labels.join(", ")
        ));
    }
    s.push_str(&format!("report: {}\n", out.join("check.json").display()));
    s
}

/// `strata lr-find` arguments.
#[derive(Args, Debug)]
pub struct LrFindArgs {
    /// First rate of the sweep.
    #[arg(long, default_value_t = 1e-7)]
    pub start: f64,
    /// Last rate of the sweep.
    #[arg(long, default_value_t = 10.0)]
    pub end: f64,
    /// Steps of the sweep (one batch each).
    #[arg(long, default_value_t = 200)]
    pub iterations: usize,
    /// Also train from the same initialization at each of these rates (comma-separated,
    /// e.g. 1e-1,1e-2,1e-3,1e-4) and table how much the loss fell: the lecture's step 3.
    #[arg(long, value_name = "RATES", value_delimiter = ',')]
    pub probe: Vec<f64>,
    /// Steps per probed rate.
    #[arg(long, default_value_t = 100)]
    pub probe_iterations: usize,
    /// Folder for lr_find.json and lr_find.svg. Default: runs/lr-find-<model>-<data>.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the report as JSON on stdout instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub run: RunFlags,
}

/// `strata lr-find`.
pub fn lr_find(args: &LrFindArgs) -> Result<()> {
    use strata::method::lr_find::{self, LrFindOptions};
    let cfg = args.run.resolve()?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| default_out("lr-find", &cfg));
    let opts = LrFindOptions {
        start: args.start,
        end: args.end,
        iterations: args.iterations,
        probe: args.probe.clone(),
        probe_iterations: args.probe_iterations,
        out: Some(out.clone()),
        ..LrFindOptions::default()
    };
    // Bad ranges fail before the data is read.
    opts.validate()?;
    let r = lr_find::lr_find(&cfg, &opts, &mut Notes)?;
    let report = super::report::leave(&out);
    if args.json {
        eprint!("{report}");
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let mut s = format!(
        "\nlr-find: {} on {}, {} steps; {}\n\n",
        r.model,
        r.data,
        r.points.len(),
        r.stopped
    );
    s.push_str(&format!(
        "  {:>10}  {:>9}  {:>9}\n",
        "lr", "loss", "smoothed"
    ));
    let step = (r.points.len() / 12).max(1);
    for p in r.points.iter().step_by(step) {
        s.push_str(&format!(
            "  {:>10.2e}  {:>9.4}  {:>9.4}\n",
            p.lr, p.loss, p.smoothed
        ));
    }
    s.push_str(&format!(
        "\nlowest smoothed loss at lr {:.2e}; steepest fall at {:.2e}\n\
         suggested learning rate: {:.2e}  ({})\n\
         the configuration's rate: {:.2e}\n",
        r.min_lr, r.steepest_lr, r.suggestion, r.rule, r.config_lr
    ));
    if !r.probe.is_empty() {
        s.push_str(&format!(
            "\nprobe: {} steps from the same initialization at each rate\n  {:>10}  {:>10}  {:>10}  {:>8}\n",
            args.probe_iterations, "lr", "first", "last 10", "fall"
        ));
        for p in &r.probe {
            s.push_str(&format!(
                "  {:>10.2e}  {:>10.4}  {:>10.4}  {:>7.1}%{}\n",
                p.lr,
                p.start_loss,
                p.end_loss,
                p.fall * 100.0,
                if p.diverged { "  (diverged)" } else { "" }
            ));
        }
        if let Some(best) = r
            .probe
            .iter()
            .filter(|p| !p.diverged)
            .max_by(|a, b| a.fall.total_cmp(&b.fall))
        {
            s.push_str(&format!("  the loss fell most at lr {:.2e}\n", best.lr));
        }
    }
    if let Some(p) = &r.plot {
        s.push_str(&format!("\nplot: {}\n", p.display()));
    }
    s.push_str(&format!(
        "results: {}\n",
        out.join("lr_find.json").display()
    ));
    s.push_str(&report);
    super::models::out(&s)
}

/// `strata diagnose` arguments.
#[derive(Args, Debug)]
pub struct DiagnoseArgs {
    /// A run folder (history.jsonl, and watch.jsonl when trained with --watch).
    pub run: PathBuf,
    /// A TOML file overriding any threshold (docs/method.md lists them).
    #[arg(long, value_name = "FILE")]
    pub thresholds: Option<PathBuf>,
    /// Print the diagnosis as JSON on stdout instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `strata diagnose`.
pub fn diagnose(args: &DiagnoseArgs) -> Result<()> {
    let t = thresholds(&args.thresholds)?;
    let d = strata::method::diagnose::diagnose(&args.run, &t)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&d)?);
        return Ok(());
    }
    let name = |c: strata::method::diagnose::Case| {
        let s = format!("{c:?}");
        s.chars()
            .enumerate()
            .flat_map(|(i, ch)| {
                let sep = (i > 0 && ch.is_uppercase()).then_some(' ');
                sep.into_iter().chain(ch.to_lowercase())
            })
            .collect::<String>()
    };
    let mut s = format!(
        "\ndiagnosis of {} ({} epochs{}):\n",
        args.run.display(),
        d.epochs,
        if d.watch_records > 0 {
            format!(", {} watch records", d.watch_records)
        } else {
            String::new()
        }
    );
    match (&d.verdict, &d.no_verdict) {
        (Some(c), _) => s.push_str(&format!("verdict: {}\n", name(*c))),
        (None, Some(why)) => s.push_str(&format!("no verdict: {why}\n")),
        (None, None) => s.push_str("no verdict\n"),
    }
    for f in &d.findings {
        s.push_str(&format!("\n{}\n", name(f.case)));
        for e in &f.evidence {
            s.push_str(&format!("  evidence: {e}\n"));
        }
        for r in &f.remedies {
            s.push_str(&format!("  do:       {r}\n"));
        }
        for r in &f.non_remedies {
            s.push_str(&format!("  not:      {r}\n"));
        }
    }
    super::models::out(&s)
}

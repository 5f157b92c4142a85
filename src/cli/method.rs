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

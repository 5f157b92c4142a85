//! `strata recipe`: [`strata::recipe::recipe`], parsed and printed.

use super::train::RunFlags;
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use strata::recipe::{self, RecipeOptions};

/// `strata recipe` arguments.
#[derive(Args, Debug)]
pub struct RecipeArgs {
    /// The whole budget, in minutes: the checks and the learning-rate sweep, then a coarse
    /// search (25%), a fine search (20%), the final run (the rest).
    #[arg(long, default_value_t = 30.0)]
    pub minutes: f64,
    /// Folder for every step and the report. Default: runs/recipe-<model>-<data>.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Trials of the coarse search.
    #[arg(long, default_value_t = 6)]
    pub coarse_trials: usize,
    /// Trials of the fine search.
    #[arg(long, default_value_t = 4)]
    pub fine_trials: usize,
    /// Print the record as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// The model, the data and the fixed training settings (the recipe searches --lr
    /// and --weight-decay).
    #[command(flatten)]
    pub run: RunFlags,
}

/// `strata recipe`: exit 0 when every step ran, 1 when it stopped early.
pub fn run(args: &RecipeArgs) -> Result<()> {
    let cfg = args.run.resolve()?;
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| super::method::default_out("recipe", &cfg));
    let opts = RecipeOptions {
        train: cfg,
        minutes: args.minutes,
        out: out.clone(),
        binary: std::env::current_exe()?,
        coarse_trials: args.coarse_trials,
        fine_trials: args.fine_trials,
    };
    let r = recipe::recipe(&opts, &mut super::method::Notes)?;
    let mut pages = String::new();
    for d in ["lr-find", "coarse", "fine", "final"] {
        if out.join(d).is_dir() {
            super::report::leave(&out.join(d));
        }
    }
    pages.push_str(&super::report::leave(&out));
    if args.json {
        eprint!("{pages}");
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        let mut s = format!(
            "\nthe recipe on {} / {} ({} minutes):\n",
            r.model, r.data, r.minutes
        );
        for st in &r.steps {
            s.push_str(&format!(
                "\n{} [{}, {:.0} s]\n  ran:      {}\n  showed:   {}\n  decision: {}\n",
                st.name,
                st.status.label(),
                st.seconds,
                st.ran,
                st.showed,
                st.decision
            ));
        }
        if let Some(a) = r.test_acc {
            s.push_str(&format!("\nfinal test accuracy {:.2}%\n", 100.0 * a));
        }
        if let Some(why) = &r.stopped {
            s.push_str(&format!("\nstopped early: {why}\n"));
        }
        s.push_str(&format!("took {:.1} minutes\n", r.seconds / 60.0));
        s.push_str(&pages);
        super::models::out(&s)?;
    }
    if r.stopped.is_some() {
        std::process::exit(1);
    }
    Ok(())
}

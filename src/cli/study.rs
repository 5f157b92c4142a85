//! `strata study`: the lecture's experiments.

use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use strata::study::{self, init};

/// `strata study` arguments.
#[derive(Args, Debug)]
pub struct StudyArgs {
    #[command(subcommand)]
    pub which: Which,
}

/// The studies.
#[derive(Subcommand, Debug)]
pub enum Which {
    /// Initialization in a deep plain network: tanh and ReLU, with and without BatchNorm,
    /// under N(0, 0.01²), N(0, 1), Xavier and Kaiming — per layer the activations' mean,
    /// std and histogram, and the gradient norms after one backward.
    Init(InitArgs),
}

/// `strata study init` arguments.
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Dataset whose first batch goes through the networks.
    #[arg(long, default_value = "fashion-mnist")]
    pub data: String,
    /// Images in the batch.
    #[arg(long, default_value_t = 128)]
    pub batch: usize,
    /// A plain network (`strata models`: plain20 ... plain110).
    #[arg(long, default_value = "plain20")]
    pub model: String,
    /// Width multiplier of the network.
    #[arg(long, default_value_t = 1.0)]
    pub width: f32,
    /// Seed of the weights and the batch.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Folder for results.json, init.svg and claims.txt. Default: runs/study-init.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the result as JSON on stdout instead of tables.
    #[arg(long)]
    pub json: bool,
}

/// `strata study`.
pub fn run(args: &StudyArgs) -> Result<()> {
    match &args.which {
        Which::Init(a) => {
            let out = a
                .out
                .clone()
                .unwrap_or_else(|| PathBuf::from("runs/study-init"));
            let opts = init::InitOptions {
                data: a.data.clone(),
                batch: a.batch,
                model: a.model.clone(),
                width: a.width,
                seed: a.seed,
                out: Some(out.clone()),
                ..init::InitOptions::default()
            };
            let r = init::init_study(&opts)?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&r)?);
                return Ok(());
            }
            let mut s =
                String::from("\nstd of each activation layer's output, by depth (one batch):\n");
            for c in &r.cases {
                let stds: Vec<String> = c.layers.iter().map(|l| format!("{:.1e}", l.std)).collect();
                let first_grad = c.grad_norms.first().map_or(0.0, |g| g.1);
                let last_grad = c.grad_norms.last().map_or(0.0, |g| g.1);
                s.push_str(&format!(
                    "  {:<5} {:<12} norm {:<6} loss {:>9.3}  |dW| first/last {:.1e}/{:.1e}\n    {}\n",
                    c.activation,
                    c.init,
                    c.norm,
                    c.loss,
                    first_grad,
                    last_grad,
                    stds.join(" ")
                ));
            }
            s.push_str("\nthe lecture's claims, on these numbers:\n");
            s.push_str(&study::claims_text(&r.claims));
            if let Some(f) = &r.figure {
                s.push_str(&format!(
                    "\nfigure: {}\nresults: {}\n",
                    f.display(),
                    out.join("results.json").display()
                ));
            }
            super::models::out(&s)
        }
    }
}

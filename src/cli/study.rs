//! `strata study`: the lecture's experiments.

use anyhow::Result;
use clap::{Args, Subcommand};
use std::path::PathBuf;
use strata::study::{self, degradation, init, norms};

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
    /// BatchNorm, GroupNorm, LayerNorm, InstanceNorm and none, at batch 128 and at a tiny
    /// batch, on the same images within one time budget; validation curves, a table, and
    /// BatchNorm's training vs evaluation mode on one example.
    Norms(NormsArgs),
    /// Plain networks against residual ones at two depths (plain20/56, resnet20/56):
    /// training and validation error curves in one figure (the ResNet paper's figure 1).
    Degradation(DegradationArgs),
}

/// What every training study shares: the data, the budget, the seed, the folder.
#[derive(Args, Debug)]
pub struct BudgetArgs {
    /// Dataset (a name or a folder).
    #[arg(long, default_value = "fashion-mnist")]
    pub data: String,
    /// Time budget for all the runs, in minutes: a few steps of each configuration are
    /// timed and every run gets the same number of training images to fit it.
    #[arg(long)]
    pub minutes: Option<f64>,
    /// Training images per run instead of what the budget allows: the same study on any
    /// machine.
    #[arg(long, value_name = "N", conflicts_with = "minutes")]
    pub images: Option<usize>,
    /// Epochs per run (points on each curve).
    #[arg(long)]
    pub epochs: Option<u64>,
    /// Width multiplier of the models.
    #[arg(long, default_value_t = 1.0)]
    pub width: f32,
    /// Seed of every run.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Folder for the runs, results.json, the figure and claims.txt.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `strata study norms` arguments.
#[derive(Args, Debug)]
pub struct NormsArgs {
    /// Models, comma-separated (fmnist-cnn, resnet20, ...).
    #[arg(long, default_value = "fmnist-cnn")]
    pub models: String,
    /// Normalizations, comma-separated (batch, group:G, layer, instance, none).
    #[arg(long, default_value = "batch,group:8,layer,instance,none")]
    pub norms: String,
    /// Batch sizes, comma-separated; the learning rate scales with them (lr × batch / 128).
    #[arg(long, default_value = "128,4")]
    pub batches: String,
    #[command(flatten)]
    pub budget: BudgetArgs,
}

/// `strata study degradation` arguments.
#[derive(Args, Debug)]
pub struct DegradationArgs {
    /// The shallow and the deep depth, `D1,D2` (6n+2: 20, 32, 44, 56, 110).
    #[arg(long, default_value = "20,56")]
    pub depths: String,
    #[command(flatten)]
    pub budget: BudgetArgs,
}

fn split<T: std::str::FromStr>(s: &str, what: &str) -> Result<Vec<T>> {
    s.split(',')
        .map(|x| {
            x.trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("--{what} `{s}`: `{x}` is not valid"))
        })
        .collect()
}

fn print_curves(runs: &[&study::runs::Curve]) -> String {
    let mut s = format!(
        "  {:<32} {:>10} {:>10} {:>10} {:>8}\n",
        "run", "train err", "val err", "test acc", "seconds"
    );
    for c in runs {
        let last = c.last();
        s.push_str(&format!(
            "  {:<32} {:>9.2}% {:>10} {:>10} {:>8.0}\n",
            c.label,
            100.0 * last.map_or(f64::NAN, |p| p.train_err),
            last.and_then(|p| p.val_err)
                .map_or("-".into(), |e| format!("{:.2}%", 100.0 * e)),
            c.test_acc
                .map_or("-".into(), |a| format!("{:.2}%", 100.0 * a)),
            c.seconds
        ));
    }
    s
}

fn print_study(
    plan: &study::runs::Plan,
    runs: &[&study::runs::Curve],
    claims: &[study::Claim],
    figure: &Option<PathBuf>,
    out: &std::path::Path,
) -> Result<()> {
    let mut s = format!(
        "\n{} training images per run ({} epochs{}):\n",
        plan.images,
        plan.epochs,
        plan.per_class
            .map_or(String::new(), |k| format!(" of {k} images per class"))
    );
    s.push_str(&print_curves(runs));
    s.push_str("\nthe lecture's claims, on these numbers:\n");
    s.push_str(&study::claims_text(claims));
    if let Some(f) = figure {
        s.push_str(&format!(
            "\nfigure: {}\nresults: {}\n",
            f.display(),
            out.join("results.json").display()
        ));
    }
    s.push_str(&super::report::leave(out));
    super::models::out(&s)
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
            let page = super::report::leave(&out);
            if a.json {
                eprint!("{page}");
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
            s.push_str(&page);
            super::models::out(&s)
        }
        Which::Norms(a) => {
            let b = &a.budget;
            let d = norms::NormsOptions::default();
            let opts = norms::NormsOptions {
                data: b.data.clone(),
                models: split(&a.models, "models")?,
                norms: split(&a.norms, "norms")?,
                batches: split(&a.batches, "batches")?,
                minutes: b.minutes.unwrap_or(d.minutes),
                images: b.images,
                epochs: b.epochs.unwrap_or(d.epochs),
                width: b.width,
                seed: b.seed,
                out: b.out.clone().unwrap_or(d.out),
                ..d
            };
            let r = norms::norms_study(&opts, &mut super::method::Notes)?;
            if b.json {
                eprint!("{}", super::report::leave(&opts.out));
                println!("{}", serde_json::to_string_pretty(&r)?);
                return Ok(());
            }
            let curves: Vec<&study::runs::Curve> = r.runs.iter().map(|x| &x.curve).collect();
            print_study(&r.plan, &curves, &r.claims, &r.figure, &opts.out)
        }
        Which::Degradation(a) => {
            let b = &a.budget;
            let d = degradation::DegradationOptions::default();
            let depths: Vec<usize> = split(&a.depths, "depths")?;
            let [d1, d2] = depths[..] else {
                anyhow::bail!("--depths `{}`: give two depths, e.g. 20,56", a.depths);
            };
            let opts = degradation::DegradationOptions {
                data: b.data.clone(),
                depths: [d1, d2],
                width: b.width,
                minutes: b.minutes.unwrap_or(d.minutes),
                images: b.images,
                epochs: b.epochs.unwrap_or(d.epochs),
                seed: b.seed,
                out: b.out.clone().unwrap_or(d.out),
            };
            let r = degradation::degradation_study(&opts, &mut super::method::Notes)?;
            if b.json {
                eprint!("{}", super::report::leave(&opts.out));
                println!("{}", serde_json::to_string_pretty(&r)?);
                return Ok(());
            }
            let curves: Vec<&study::runs::Curve> = r.runs.iter().collect();
            print_study(&r.plan, &curves, &r.claims, &r.figure, &opts.out)
        }
    }
}

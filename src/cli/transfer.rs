//! `strata finetune`: [`strata::transfer::finetune`], parsed and printed.

use super::train::{stop_on_ctrl_c, Progress, RunFlags};
use anyhow::Result;
use clap::Args;
use std::path::PathBuf;
use strata::transfer::{self, FinetuneOptions, Mode};

/// `strata finetune` arguments.
#[derive(Args, Debug)]
pub struct FinetuneArgs {
    /// The pretrained weights: a run folder (its best.safetensors), a strata checkpoint,
    /// or a bare state dict in safetensors (torchvision's names; then say --model).
    #[arg(long, value_name = "RUN|FILE")]
    pub from: PathBuf,
    /// What trains: `head` (the new head only; the backbone's weights and BatchNorm
    /// statistics frozen), `full` (every layer), `head-then-full` (the head for
    /// --head-epochs, then every layer at half the rate for --epochs), or `auto` (head
    /// with little data, full with much: the lecture's advice, printed first).
    #[arg(long, default_value = "auto", value_name = "MODE")]
    pub mode: String,
    /// The backbone's learning rate as a fraction of the head's, when every layer
    /// trains (e.g. 0.1).
    #[arg(long, default_value_t = 1.0, value_name = "MULT")]
    pub backbone_lr_mult: f32,
    /// Epochs of the head stage of head-then-full.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub head_epochs: u64,
    /// Normalization of the inputs: source (the checkpoint's), data (the new images'),
    /// imagenet, or MEAN,.../STD,... on a 0–1 scale. Default: the source's; for a bare
    /// state dict ImageNet's on RGB images, with a warning.
    #[arg(long, value_name = "SPEC")]
    pub normalize: Option<String>,
    /// Run folder. Default: runs/finetune-<model>-<data>.
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// The new data and the training (--data, --classes, --per-class, --epochs, --lr ...;
    /// defaults as `strata train`, but 5 epochs and lr 0.01). --model names the model of
    /// a bare state dict (torchvision's spelling accepted: resnet18, vgg11_bn).
    #[command(flatten)]
    pub run: RunFlags,
}

/// `strata finetune`.
pub fn run(args: &FinetuneArgs) -> Result<()> {
    // Fine-tuning's defaults: a short run at a tenth of training's rate.
    let mut base = strata::train::TrainConfig {
        epochs: 5,
        lr: 0.01,
        ..Default::default()
    };
    if let Some(p) = &args.run.config {
        base = strata::train::TrainConfig::from_toml(p)?;
    }
    // --model names the source's model, not an architecture to build: it stays out of
    // the training config.
    let flags_model = args.run.model.clone();
    let mut flags = args.run.clone();
    flags.model = None;
    let mut cfg = flags.resolve_onto(base)?;
    let from = args.from.display().to_string();
    cfg.model = strata::train::pretrained::model_name(&strata::train::pretrained::Finetune {
        model: flags_model.clone(),
        ..strata::train::pretrained::Finetune::new(from.clone(), Default::default())
    })?;
    let out = args
        .run_dir
        .clone()
        .unwrap_or_else(|| super::method::default_out("finetune", &cfg));
    let opts = FinetuneOptions {
        train: cfg.clone(),
        from,
        model: flags_model,
        normalize: args.normalize.clone(),
        mode: args.mode.parse::<Mode>()?,
        backbone_lr_mult: args.backbone_lr_mult,
        head_epochs: args.head_epochs,
        out,
    };
    let mut progress = Progress::new(cfg.log_every, stop_on_ctrl_c());
    let r = transfer::finetune(&opts, &mut progress)?;
    let reports: String = r
        .stages
        .iter()
        .map(|st| super::report::leave(&st.dir))
        .collect();
    if args.json {
        eprint!("{reports}");
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(());
    }
    let mut s = format!("\nfinetune {} ({:?}):\n", r.model, r.mode);
    for st in &r.stages {
        s.push_str(&format!(
            "  {:<4} {} epochs, lr {}: best val {}, test {} ({:.0} s) → {}\n",
            format!("{:?}", st.mode).to_lowercase(),
            st.epochs,
            st.lr,
            st.best_val
                .map_or("-".into(), |v| format!("{:.2}%", 100.0 * v)),
            st.test_acc
                .map_or("-".into(), |v| format!("{:.2}%", 100.0 * v)),
            st.time_s,
            st.dir.display()
        ));
    }
    s.push_str(&reports);
    super::models::out(&s)
}

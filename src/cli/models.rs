//! `strata models` and `strata summary`.

use anyhow::{bail, Context, Result};
use clap::Args;
use std::io::Write;
use strata::models::{self, ActKind, InitScheme, ModelConfig, NormKind};

/// Architecture flags shared by `summary` and `train` (each defaults to the model's own).
#[derive(Args, Debug, Clone, Default)]
pub struct ArchFlags {
    /// Channel width multiplier (0.5 halves every layer). Default: 1.
    #[arg(long)]
    pub width: Option<f32>,
    /// Normalization: batch, group:G, layer, instance or none. Default: batch
    /// (none for plain VGG).
    #[arg(long, value_name = "KIND")]
    pub norm: Option<String>,
    /// Activation: relu, leaky_relu, elu, gelu, silu, sigmoid, tanh. Default: relu.
    #[arg(long, value_name = "NAME")]
    pub activation: Option<String>,
    /// Dropout probability before the classifier. Default: 0 (0.5 in VGG's ImageNet head).
    #[arg(long, value_name = "P")]
    pub dropout: Option<f32>,
    /// Weight init: kaiming, kaiming_uniform, xavier, pytorch, normal:STD. Default: kaiming.
    #[arg(long, value_name = "SCHEME")]
    pub init: Option<String>,
}

/// Flags that change a model's configuration (each defaults to the model's own).
#[derive(Args, Debug, Clone, Default)]
pub struct ModelFlags {
    /// Input shape of one image, CxHxW (e.g. 3x32x32, 1x28x28). Default: the model's.
    #[arg(long, value_name = "CxHxW")]
    pub input: Option<String>,
    /// Output classes. Default: the model's (10; 1000 for ImageNet models).
    #[arg(long)]
    pub classes: Option<usize>,
    #[command(flatten)]
    pub arch: ArchFlags,
    /// Seed of the weight initialization. Default: 0.
    #[arg(long)]
    pub seed: Option<u64>,
}

/// Parses `CxHxW` into `(channels, [height, width])`.
pub fn parse_input(s: &str) -> Result<(usize, [usize; 2])> {
    let parts: Vec<&str> = s.split(['x', 'X', ',']).collect();
    let nums: Vec<usize> = parts
        .iter()
        .map(|p| p.trim().parse::<usize>())
        .collect::<std::result::Result<_, _>>()
        .with_context(|| format!("--input `{s}`: expected CxHxW such as 3x32x32"))?;
    match nums[..] {
        [c, h, w] if c > 0 && h > 0 && w > 0 => Ok((c, [h, w])),
        _ => bail!("--input `{s}`: expected CxHxW with positive sizes, such as 3x32x32"),
    }
}

impl ModelFlags {
    /// The model's default configuration with these flags applied.
    pub fn resolve(&self, name: &str) -> Result<ModelConfig> {
        let mut c = models::default_config(name)?;
        if let Some(s) = &self.input {
            let (ch, hw) = parse_input(s)?;
            c.in_channels = ch;
            c.input_size = hw;
        }
        if let Some(v) = self.classes {
            c.classes = v;
        }
        let a = &self.arch;
        if let Some(v) = a.width {
            c.width = v;
        }
        if let Some(s) = &a.norm {
            c.norm = s.parse::<NormKind>()?;
        }
        if let Some(s) = &a.activation {
            c.activation = s.parse::<ActKind>()?;
        }
        if let Some(v) = a.dropout {
            c.dropout = v;
        }
        if let Some(s) = &a.init {
            c.init = s.parse::<InitScheme>()?;
        }
        if let Some(v) = self.seed {
            c.seed = v;
        }
        c.validate()?;
        Ok(c)
    }
}

/// `strata summary` arguments.
#[derive(Args, Debug)]
pub struct SummaryArgs {
    /// Model name (see `strata models`).
    pub model: String,
    #[command(flatten)]
    pub flags: ModelFlags,
    /// Print the table as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// Writes to stdout, treating a closed pipe (`strata models | head`) as success.
pub fn out(text: &str) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|_| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => Ok(r?),
    }
}

/// `strata models`: the registry, one line each.
pub fn list() -> Result<()> {
    let mut s = String::new();
    for m in models::catalog() {
        s.push_str(&format!("{:<16} {}\n", m.name, m.description));
    }
    out(&s)
}

/// `strata summary MODEL`.
pub fn summary(args: &SummaryArgs) -> Result<()> {
    let config = args.flags.resolve(&args.model)?;
    let model = models::build(&args.model, Some(config))
        .with_context(|| format!("cannot build {}", args.model))?;
    let summary = strata::summary::summarize(&model, &model.input_shape())?;
    if args.json {
        out(&(serde_json::to_string_pretty(&summary)? + "\n"))
    } else {
        out(&format!("{}\n{}", args.model, summary.render()))
    }
}

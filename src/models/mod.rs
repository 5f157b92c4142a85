//! The lecture's architectures as configurable builders, found by name.
//!
//! - `fmnist-cnn`: the small Fashion-MNIST network of DESIGN.md (4 convs, 2 pools, linear).
//! - `vgg11|13|16|19[-bn]`: stacked 3×3 convolutions (Simonyan & Zisserman 2014); the
//!   torchvision ImageNet head for inputs ≥ 128 px, a compact head (global pool + linear)
//!   for small inputs such as CIFAR's 32×32.
//! - `resnet20|32|44|56|110`: the CIFAR ResNets of He et al. 2015 (BasicBlocks at
//!   16/32/64 channels, projection shortcuts where the shape changes);
//!   `plain20|32|44|56|110`: the same networks without the shortcuts.
//! - `resnet18|34|50`: the ImageNet ResNets (torchvision layout and names).
//!
//! Parameter and buffer names are torchvision's, so state dicts move between the two.
//!
//! ```
//! let mut m = strata::models::build("resnet20", None).unwrap();
//! assert_eq!(strata::nn::param_count(&mut m), 272_474);
//! ```

mod config;
mod replicas;
mod resnet;
mod small;
mod vgg;

pub use config::{ActKind, InitScheme, ModelConfig, NormKind};

use crate::error::{Error, Result};
use crate::nn::{
    Activation, BatchNorm2d, Conv2d, Conv2dConfig, GroupNorm, InstanceNorm2d, Layer, Linear, Mode,
    Param, PerChannelLayerNorm, Receptive, Sequential,
};
use crate::tensor::Tensor;
use rand::rngs::StdRng;
use rand::SeedableRng;

/// A named model: its configuration and its layers.
#[derive(Debug)]
pub struct Model {
    /// Registry name (`resnet20`).
    pub name: String,
    /// The configuration it was built with.
    pub config: ModelConfig,
    /// The layers.
    pub net: Sequential,
    /// Eval-mode inference split by images across threads ([`replicas`]).
    split: replicas::Split,
}

/// Header key of the model name in a checkpoint.
pub const META_MODEL: &str = "strata.model";
/// Header key of the model configuration (JSON) in a checkpoint.
pub const META_CONFIG: &str = "strata.config";

impl Model {
    /// Checkpoint metadata that rebuilds this model: name and configuration (JSON).
    pub fn metadata(&self) -> Result<std::collections::BTreeMap<String, String>> {
        let config = serde_json::to_string(&self.config)
            .map_err(|e| Error::state("Model", format!("cannot encode the config: {e}")))?;
        Ok([
            (META_MODEL.to_string(), self.name.clone()),
            (META_CONFIG.to_string(), config),
        ]
        .into())
    }

    /// Rebuilds the model a checkpoint was saved from (name and configuration from its
    /// header) and loads its weights strictly. Returns the model and the header.
    pub fn from_checkpoint(
        path: &std::path::Path,
    ) -> Result<(Model, std::collections::BTreeMap<String, String>)> {
        let meta = crate::checkpoint::read_metadata(path)?;
        let missing = |key: &str| {
            Error::Format {
            path: path.to_path_buf(),
            reason: format!("no `{key}` in the header: not a strata checkpoint (load it into a model built by name instead)"),
        }
        };
        let name = meta.get(META_MODEL).ok_or_else(|| missing(META_MODEL))?;
        let config: ModelConfig =
            serde_json::from_str(meta.get(META_CONFIG).ok_or_else(|| missing(META_CONFIG))?)
                .map_err(|e| Error::Format {
                    path: path.to_path_buf(),
                    reason: format!("bad `{META_CONFIG}`: {e}"),
                })?;
        let mut model = build(name, Some(config))?;
        let (_, meta) = crate::checkpoint::load(&mut model, path, true)?;
        Ok((model, meta))
    }

    /// The fusion pass over the network ([`crate::nn::fuse::fuse`]); models are built
    /// fused, so this finds nothing more to do unless built with `fuse = false`.
    pub fn fuse(&mut self) -> usize {
        crate::nn::fuse::fuse(&mut self.net)
    }

    /// The eval-mode forward split by images across the threads ([`replicas`]), where
    /// it is taken.
    fn forward_split(&mut self, x: &Tensor) -> Option<Result<Tensor>> {
        let mut split = std::mem::take(&mut self.split);
        let y = split.forward(self, x);
        self.split = split;
        y
    }

    /// The input shape of one image, `[C, H, W]`.
    pub fn input_shape(&self) -> [usize; 3] {
        [
            self.config.in_channels,
            self.config.input_size[0],
            self.config.input_size[1],
        ]
    }
}

impl Layer for Model {
    fn kind(&self) -> &'static str {
        "Model"
    }
    fn forward(&mut self, x: &Tensor, mode: Mode) -> Result<Tensor> {
        if mode == Mode::Eval {
            if let Some(y) = self.forward_split(x) {
                return y;
            }
        }
        self.net.forward(x, mode)
    }
    fn backward(&mut self, dy: &Tensor) -> Result<Tensor> {
        self.net.backward(dy)
    }
    fn output_shape(&self, input: &[usize]) -> Result<Vec<usize>> {
        self.net.output_shape(input)
    }
    fn visit_params(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Param)) {
        self.net.visit_params(prefix, f)
    }
    fn visit_buffers(&mut self, prefix: &str, f: &mut dyn FnMut(&str, &mut Tensor)) {
        self.net.visit_buffers(prefix, f)
    }
    fn children(&self) -> Vec<(&str, &dyn Layer)> {
        self.net.children()
    }
    fn children_mut(&mut self) -> Vec<(&str, &mut dyn Layer)> {
        self.net.children_mut()
    }
    fn reseed(&mut self, seed: u64) {
        self.net.reseed(seed)
    }
    fn backward_params(&mut self, dy: &Tensor) -> Result<()> {
        self.net.backward_params(dy)
    }
    fn receptive(&self) -> Receptive {
        Receptive::Pointwise
    }
}

/// An entry of the table of models: adding a model is its builder and one entry.
pub struct ModelInfo {
    /// Name used on the command line.
    pub name: &'static str,
    /// One line for `strata models`.
    pub description: &'static str,
    /// The default configuration (torchvision's for the ImageNet models).
    pub config: fn() -> ModelConfig,
    /// Builds the network from a configuration (through [`Builder`]).
    pub build: fn(&mut Builder) -> Result<Sequential>,
}

/// The table of models, family by family.
pub fn catalog() -> impl Iterator<Item = &'static ModelInfo> {
    small::MODELS
        .iter()
        .chain(vgg::MODELS)
        .chain(resnet::MODELS)
}

/// The entry of `name`.
pub fn find(name: &str) -> Result<&'static ModelInfo> {
    catalog()
        .find(|m| m.name == name)
        .ok_or_else(|| unknown(name))
}

/// The default configuration of a model (torchvision's for the ImageNet ones).
pub fn default_config(name: &str) -> Result<ModelConfig> {
    Ok((find(name)?.config)())
}

fn unknown(name: &str) -> Error {
    let names: Vec<&str> = catalog().map(|m| m.name).collect();
    Error::config(
        "models",
        "name",
        format!("unknown model `{name}`; known: {}", names.join(", ")),
    )
}

/// Builds a model by name, from `config` or the model's default configuration, with
/// each ReLU fused into the normalization before it ([`Layer::fuse`]: same numbers, one
/// memory pass fewer each way).
pub fn build(name: &str, config: Option<ModelConfig>) -> Result<Model> {
    build_with(name, config, true)
}

/// [`build`], choosing whether to fuse (unfused: every layer runs on its own, as the
/// summary lists them).
pub fn build_with(name: &str, config: Option<ModelConfig>, fuse: bool) -> Result<Model> {
    let info = find(name)?;
    let config = match config {
        Some(c) => c,
        None => (info.config)(),
    };
    config.validate()?;
    let mut b = Builder::new(&config);
    let mut net = (info.build)(&mut b)?;
    // Check the whole chain of shapes once, so a bad input size fails here.
    let input = [
        1,
        config.in_channels,
        config.input_size[0],
        config.input_size[1],
    ];
    let out = net.output_shape(&input)?;
    if out != [1, config.classes] {
        return Err(Error::shape(
            name,
            format!("logits [1, {}]", config.classes),
            &out,
        ));
    }
    if fuse {
        crate::nn::fuse::fuse(&mut net);
    }
    Ok(Model {
        name: name.to_string(),
        config,
        net,
        split: replicas::Split::default(),
    })
}

/// What a model builder ([`ModelInfo::build`]) is given: the configuration, and layers
/// made with its norm, activation, width and initialization (one seeded generator, so a
/// model is a function of its configuration).
pub struct Builder<'a> {
    /// The configuration being built.
    pub cfg: &'a ModelConfig,
    rng: StdRng,
}

impl<'a> Builder<'a> {
    fn new(cfg: &'a ModelConfig) -> Self {
        Builder {
            cfg,
            rng: StdRng::seed_from_u64(cfg.seed),
        }
    }

    /// Width-scaled channel count.
    pub fn ch(&self, c: usize) -> usize {
        self.cfg.channels(c)
    }

    /// A `k×k` convolution; `bias` is forced on when the model has no normalization.
    pub fn conv(
        &mut self,
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
        bias: bool,
    ) -> Result<Conv2d> {
        let bias = bias || self.cfg.norm == NormKind::None;
        let mut conv = Conv2d::new(
            Conv2dConfig::new(c_in, c_out, k)
                .stride(stride)
                .padding(pad)
                .bias(bias),
            &mut self.rng,
        )?;
        let b = conv.bias.as_mut().map(|p| &mut p.value);
        self.cfg.init.apply(
            self.cfg.activation,
            &mut conv.weight.value,
            b,
            &mut self.rng,
        )?;
        Ok(conv)
    }

    /// The configured normalization over `c` channels, if any.
    pub fn norm(&self, c: usize) -> Result<Option<Box<dyn Layer>>> {
        Ok(match self.cfg.norm {
            NormKind::Batch => Some(Box::new(BatchNorm2d::new(c)?)),
            NormKind::Group(g) => Some(Box::new(GroupNorm::new(g, c)?)),
            NormKind::Layer => Some(Box::new(PerChannelLayerNorm::new(c)?)),
            NormKind::Instance => Some(Box::new(InstanceNorm2d::new(c)?)),
            NormKind::None => None,
        })
    }

    /// The configured activation.
    pub fn act(&self) -> Activation {
        Activation::new(self.cfg.activation.act())
    }

    /// A linear layer with PyTorch's default initialization.
    pub fn linear(&mut self, fin: usize, fout: usize) -> Result<Linear> {
        Linear::new(fin, fout, true, &mut self.rng)
    }

    /// A dropout layer with a seed derived from the model's.
    pub fn dropout(&mut self, p: f32) -> Result<crate::nn::Dropout> {
        crate::nn::Dropout::new(p, rand::Rng::random(&mut self.rng))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_cataloged_model_builds_with_its_defaults_except_the_huge_ones() {
        for m in catalog() {
            if [
                "vgg16", "vgg19", "vgg16-bn", "vgg19-bn", "vgg13", "vgg13-bn", "vgg11", "vgg11-bn",
                "resnet50", "resnet34",
            ]
            .contains(&m.name)
            {
                continue; // built in the integration tests (large allocations)
            }
            let model = build(m.name, None).unwrap_or_else(|e| panic!("{}: {e}", m.name));
            assert_eq!(model.name, m.name);
        }
        assert!(build("resnet21", None)
            .unwrap_err()
            .to_string()
            .contains("resnet20"));
    }

    #[test]
    fn config_strings_parse_and_bad_ones_say_what_is_allowed() {
        assert_eq!("group:8".parse::<NormKind>().unwrap(), NormKind::Group(8));
        assert!("group:0".parse::<NormKind>().is_err());
        assert!("batchy"
            .parse::<NormKind>()
            .unwrap_err()
            .to_string()
            .contains("group:G"));
        assert_eq!(
            "normal:0.01".parse::<InitScheme>().unwrap(),
            InitScheme::Normal(0.01)
        );
        assert!("normal:-1".parse::<InitScheme>().is_err());
        assert_eq!("gelu".parse::<ActKind>().unwrap(), ActKind::Gelu);
    }
}

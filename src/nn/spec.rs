//! Layers described as data: a [`LayerSpec`] deserializes from JSON or TOML
//! (`{"layer": "conv2d", "c_in": 3, ...}`) and builds the layer through the table of
//! layers ([`super::registry`]). Field names and defaults are PyTorch's; the parity
//! fixtures in `tests/fixtures` use these specs.

use super::registry;
use super::Layer;
use crate::error::{Error, Result};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// A layer as data: its registry name and its options. Deserializing checks that the
/// name is in the table and that the options have the right fields and types; the
/// values are checked when the layer is built.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LayerSpec {
    /// Registry name (`"conv2d"`).
    pub layer: String,
    /// Everything else.
    #[serde(flatten)]
    pub options: serde_json::Map<String, serde_json::Value>,
}

impl<'de> Deserialize<'de> for LayerSpec {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        use serde::de::Error as _;
        let mut options = serde_json::Map::<String, serde_json::Value>::deserialize(d)?;
        let layer = match options.remove("layer") {
            Some(serde_json::Value::String(s)) => s,
            _ => return Err(D::Error::custom("a layer spec needs `\"layer\": NAME`")),
        };
        let info = registry::find(&layer).ok_or_else(|| {
            D::Error::custom(format!(
                "unknown layer `{layer}`; known: {}",
                registry::names().join(", ")
            ))
        })?;
        (info.parse)(&serde_json::Value::Object(options.clone()))
            .map_err(|e| D::Error::custom(format!("`{layer}`: {e}")))?;
        Ok(LayerSpec { layer, options })
    }
}

impl LayerSpec {
    /// Builds the layer; parameters are initialized from `rng` (PyTorch's defaults).
    pub fn build(&self, rng: &mut impl Rng) -> Result<Box<dyn Layer>> {
        let info = registry::find(&self.layer).ok_or_else(|| {
            Error::config(
                "LayerSpec",
                "layer",
                format!(
                    "unknown layer `{}`; known: {}",
                    self.layer,
                    registry::names().join(", ")
                ),
            )
        })?;
        (info.build)(&serde_json::Value::Object(self.options.clone()), rng)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::param_names;
    use rand::SeedableRng;

    #[test]
    fn specs_parse_with_defaults_and_reject_bad_values() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let s: LayerSpec =
            serde_json::from_str(r#"{"layer": "conv2d", "c_in": 3, "c_out": 8, "kernel": [3, 3]}"#)
                .unwrap();
        let mut l = s.build(&mut rng).unwrap();
        assert_eq!(l.output_shape(&[2, 3, 10, 9]).unwrap(), vec![2, 8, 8, 7]);
        assert_eq!(param_names(l.as_mut()), ["weight", "bias"]);
        let bad: LayerSpec =
            serde_json::from_str(r#"{"layer": "group_norm", "num_groups": 3, "num_channels": 8}"#)
                .unwrap();
        assert!(bad.build(&mut rng).is_err());
        assert!(serde_json::from_str::<LayerSpec>(r#"{"layer": "conv9d"}"#).is_err());
    }
}

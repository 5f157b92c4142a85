//! `Augment`: an ordered pipeline of [`Transform`]s, and its CLI syntax.
//!
//! `--augment flip,crop:4:reflect,jitter:0.2,erase` ([`AUGMENT_SYNTAX`]); in a config
//! file either the same string or a list of tagged tables
//! (`[{kind = "crop", padding = 4}, {kind = "flip"}]`). [`fmt::Display`] writes the
//! string form back, so a run folder can record the resolved pipeline.

use crate::data::rng::DataRng;
use crate::data::transform::{Image, PadMode, Transform};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::fmt;

fn invalid(field: &str, reason: impl Into<String>) -> Error {
    Error::config("augment", field, reason)
}

/// An ordered list of transforms, applied per image. Deserializes from either a
/// CLI-style string (`"flip,crop:4"`) or a list of tagged tables.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(transparent)]
pub struct Augment {
    /// The steps, in the order given.
    pub steps: Vec<Transform>,
}

impl<'de> Deserialize<'de> for Augment {
    fn deserialize<D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Spec(String),
            Steps(Vec<Transform>),
        }
        let aug = match Repr::deserialize(deserializer)? {
            Repr::Spec(s) => Augment::parse(&s),
            Repr::Steps(steps) => Augment::new(steps),
        };
        aug.map_err(serde::de::Error::custom)
    }
}

/// The `--augment` syntax, for `--help` texts.
pub const AUGMENT_SYNTAX: &str = "\
comma-separated steps, applied in order (erase and cutout always after normalization):
  flip[:P]                 horizontal flip with probability P (0.5)
  crop:PAD[:zero|reflect]  pad by PAD pixels on each side, random crop back to size
  rrc[:SMIN-SMAX[:RMIN-RMAX[:HxW]]]
                           random resized crop, area scale (0.08-1), aspect ratio
                           (0.75-1.333), output size (input size)
  resize:HxW                the whole image resized to HxW (bilinear)
  jitter:S | jitter:B:C:S:H
                           color jitter; one value sets brightness = contrast =
                           saturation = S, hue 0 (saturation and hue: RGB only)
  erase[:P]                random erasing with probability P (0.5), area 0.02-0.33
  cutout:SIZE[:P]          SIZE×SIZE square set to 0, probability P (1)
  none                     no augmentation
example: --augment flip,crop:4:reflect,jitter:0.2,erase";

fn parse_f32(tok: &str, field: &str) -> Result<f32> {
    tok.trim()
        .parse::<f32>()
        .map_err(|_| invalid(field, format!("`{tok}` is not a number")))
}

fn parse_range(tok: &str, field: &str) -> Result<[f32; 2]> {
    let (lo, hi) = tok
        .split_once('-')
        .ok_or_else(|| invalid(field, format!("`{tok}` is not a range LOW-HIGH")))?;
    Ok([parse_f32(lo, field)?, parse_f32(hi, field)?])
}

impl Augment {
    /// A validated pipeline.
    pub fn new(steps: Vec<Transform>) -> Result<Self> {
        steps.iter().try_for_each(Transform::validate)?;
        Ok(Augment { steps })
    }

    /// No augmentation.
    pub fn none() -> Self {
        Augment::default()
    }

    /// What evaluation applies to images of `shape` for a model trained on this
    /// pipeline's output: nothing, or a resize to the training output size when the
    /// pipeline changes the size (a `rrc:…:HxW` crop), so that validation, test and
    /// prediction images reach the network at the size it was built for.
    pub fn for_eval(&self, shape: [usize; 3]) -> Self {
        let [_, h, w] = self.output_shape(shape);
        if [h, w] == [shape[1], shape[2]] {
            Augment::none()
        } else {
            Augment {
                steps: vec![Transform::Resize { size: [h, w] }],
            }
        }
    }

    /// Parses the CLI syntax ([`AUGMENT_SYNTAX`]); errors name the bad step.
    pub fn parse(spec: &str) -> Result<Self> {
        let mut steps = Vec::new();
        for token in spec.split(',').map(str::trim).filter(|t| !t.is_empty()) {
            let mut parts = token.split(':');
            let name = parts.next().unwrap_or_default();
            let args: Vec<&str> = parts.collect();
            let arity = |max: usize, min: usize| -> Result<()> {
                if args.len() < min || args.len() > max {
                    Err(invalid(
                        name,
                        format!("`{token}` takes {min} to {max} arguments; see --help"),
                    ))
                } else {
                    Ok(())
                }
            };
            let step = match name {
                "none" => {
                    arity(0, 0)?;
                    continue;
                }
                "flip" | "hflip" => {
                    arity(1, 0)?;
                    let p = args.first().map_or(Ok(0.5), |a| parse_f32(a, "flip.p"))?;
                    Transform::Flip { p }
                }
                "crop" => {
                    arity(2, 1)?;
                    let padding = args[0].parse().map_err(|_| {
                        invalid("crop.padding", format!("`{}` is not a pixel count", args[0]))
                    })?;
                    let mode = match args.get(1).copied() {
                        None | Some("zero") => PadMode::Zero,
                        Some("reflect") => PadMode::Reflect,
                        Some(other) => {
                            return Err(invalid(
                                "crop.mode",
                                format!("`{other}` is not zero or reflect"),
                            ))
                        }
                    };
                    Transform::Crop { padding, mode }
                }
                "rrc" | "resized_crop" => {
                    arity(3, 0)?;
                    let scale = args.first().map_or(Ok(crate::data::transform::rrc_scale()), |a| parse_range(a, "rrc.scale"))?;
                    let ratio = args.get(1).map_or(Ok(crate::data::transform::rrc_ratio()), |a| parse_range(a, "rrc.ratio"))?;
                    let size = match args.get(2) {
                        None => None,
                        Some(a) => {
                            let bad = || invalid("rrc.size", format!("`{a}` is not HxW"));
                            let (h, w) = a.split_once('x').ok_or_else(bad)?;
                            Some([h.parse().map_err(|_| bad())?, w.parse().map_err(|_| bad())?])
                        }
                    };
                    Transform::ResizedCrop { scale, ratio, size }
                }
                "resize" => {
                    arity(1, 1)?;
                    let a = args[0];
                    let bad = || invalid("resize", format!("`{a}` is not HxW"));
                    let (h, w) = a.split_once('x').ok_or_else(bad)?;
                    Transform::Resize {
                        size: [h.parse().map_err(|_| bad())?, w.parse().map_err(|_| bad())?],
                    }
                }
                "jitter" => {
                    if args.len() == 1 {
                        let s = parse_f32(args[0], "jitter")?;
                        Transform::Jitter {
                            brightness: s,
                            contrast: s,
                            saturation: s,
                            hue: 0.0,
                        }
                    } else {
                        arity(4, 4)?;
                        Transform::Jitter {
                            brightness: parse_f32(args[0], "jitter.brightness")?,
                            contrast: parse_f32(args[1], "jitter.contrast")?,
                            saturation: parse_f32(args[2], "jitter.saturation")?,
                            hue: parse_f32(args[3], "jitter.hue")?,
                        }
                    }
                }
                "erase" => {
                    arity(1, 0)?;
                    let p = args.first().map_or(Ok(0.5), |a| parse_f32(a, "erase.p"))?;
                    Transform::Erase {
                        p,
                        scale: crate::data::transform::erase_scale(),
                        ratio: crate::data::transform::erase_ratio(),
                    }
                }
                "cutout" => {
                    arity(2, 1)?;
                    let size = args[0].parse().map_err(|_| {
                        invalid("cutout.size", format!("`{}` is not a pixel count", args[0]))
                    })?;
                    let p = args.get(1).map_or(Ok(1.0), |a| parse_f32(a, "cutout.p"))?;
                    Transform::Cutout { size, p }
                }
                other => {
                    return Err(invalid(
                        "augment",
                        format!(
                            "unknown step `{other}`; known: flip, crop, rrc, jitter, erase, cutout, none"
                        ),
                    ))
                }
            };
            steps.push(step);
        }
        Augment::new(steps)
    }

    /// `true` when there is nothing to do.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Output `[C, H, W]` for inputs of `shape`.
    pub fn output_shape(&self, shape: [usize; 3]) -> [usize; 3] {
        self.steps.iter().fold(shape, |s, t| t.output_shape(s))
    }

    /// Runs the pixel steps (before normalization) on `img`.
    pub fn apply_pixels(&self, img: &mut Image, scratch: &mut Vec<f32>, rng: &mut DataRng) {
        for t in self.steps.iter().filter(|t| !t.after_normalize()) {
            t.apply(img, scratch, rng);
        }
    }

    /// Runs the steps that follow normalization (erase, cutout) on `img`.
    pub fn apply_normalized(&self, img: &mut Image, scratch: &mut Vec<f32>, rng: &mut DataRng) {
        for t in self.steps.iter().filter(|t| t.after_normalize()) {
            t.apply(img, scratch, rng);
        }
    }
}

impl fmt::Display for Augment {
    /// The CLI syntax, which [`Augment::parse`] reads back to an equal pipeline.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.steps.is_empty() {
            return write!(f, "none");
        }
        let parts: Vec<String> = self
            .steps
            .iter()
            .map(|t| match *t {
                Transform::Flip { p } => format!("flip:{p}"),
                Transform::Crop { padding, mode } => match mode {
                    PadMode::Zero => format!("crop:{padding}"),
                    PadMode::Reflect => format!("crop:{padding}:reflect"),
                },
                Transform::Resize { size: [h, w] } => format!("resize:{h}x{w}"),
                Transform::ResizedCrop { scale, ratio, size } => {
                    let mut s = format!("rrc:{}-{}:{}-{}", scale[0], scale[1], ratio[0], ratio[1]);
                    if let Some([h, w]) = size {
                        s += &format!(":{h}x{w}");
                    }
                    s
                }
                Transform::Jitter {
                    brightness,
                    contrast,
                    saturation,
                    hue,
                } => format!("jitter:{brightness}:{contrast}:{saturation}:{hue}"),
                Transform::Erase { p, .. } => format!("erase:{p}"),
                Transform::Cutout { size, p } => format!("cutout:{size}:{p}"),
            })
            .collect();
        write!(f, "{}", parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_display_and_serde_agree() {
        let a = Augment::parse("flip, crop:4:reflect,rrc:0.5-1:0.8-1.25:24x24,jitter:0.1:0.2:0.3:0.05,erase:0.25,cutout:8").unwrap();
        assert_eq!(a.steps.len(), 6);
        assert_eq!(Augment::parse(&a.to_string()).unwrap(), a);
        assert_eq!(a.output_shape([3, 32, 32]), [3, 24, 24]);
        let json = serde_json::to_string(&a).unwrap();
        assert_eq!(serde_json::from_str::<Augment>(&json).unwrap(), a);
        let from_str: Augment = serde_json::from_str("\"flip,crop:2\"").unwrap();
        assert_eq!(from_str.steps.len(), 2);
        let tables: Augment =
            serde_json::from_str(r#"[{"kind": "crop", "padding": 4}, {"kind": "flip"}]"#).unwrap();
        assert_eq!(tables.steps[1], Transform::Flip { p: 0.5 });
        assert!(Augment::parse("none").unwrap().is_empty());
    }

    #[test]
    fn parse_errors_name_the_step() {
        for (spec, want) in [
            ("flop", "unknown step `flop`"),
            ("crop", "takes 1 to 2"),
            ("crop:x", "not a pixel count"),
            ("crop:4:wrap", "not zero or reflect"),
            ("flip:2", "probability"),
            ("rrc:0.5", "not a range"),
            ("rrc:0.9-0.1", "0 < low ≤ high"),
            ("jitter:0.1:0.2", "takes 4 to 4"),
            ("jitter:0:0:0:0.7", "jitter.hue"),
            ("cutout:0", "at least 1"),
        ] {
            let err = Augment::parse(spec).unwrap_err().to_string();
            assert!(err.contains(want), "{spec}: {err}");
        }
        assert!(serde_json::from_str::<Augment>("\"flip:9\"").is_err());
    }
}

//! A per-layer table of a network's arithmetic: output shape, parameters, multiply-adds,
//! receptive field and jump (the input-pixel distance between neighbouring outputs).
//!
//! Receptive field along one axis, layer by layer: `rf ← rf + (k_eff − 1)·jump`,
//! `jump ← jump·stride`, with `k_eff = dilation·(k − 1) + 1`; a global pool widens `rf` to
//! the whole input. In a residual block the field is the wider of the two paths.
//! This is what makes the lecture's VGG fact visible: three stacked 3×3 convolutions end
//! with `rf = 7`, like one 7×7, with `3·9·C² = 27·C²` weights instead of `49·C²`.
//!
//! Multiply-adds count convolutions and linear layers (the usual convention); shapes and
//! MACs are per image.

use crate::error::Result;
use crate::nn::{Layer, Receptive};
use serde::Serialize;

/// One leaf layer of the table.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Row {
    /// State-dict path of the layer (`layer1.0.conv1`).
    pub name: String,
    /// Layer type.
    pub kind: String,
    /// Output shape of one image.
    pub output: Vec<usize>,
    /// Learnable scalars.
    pub params: usize,
    /// Multiply-adds for one image.
    pub macs: u64,
    /// Receptive field `(height, width)` in input pixels after this layer.
    pub rf: (usize, usize),
    /// Jump `(height, width)` after this layer.
    pub jump: (usize, usize),
}

/// The whole table and its totals.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Summary {
    /// Input shape of one image.
    pub input: Vec<usize>,
    /// Leaf layers in forward order (a block's shortcut after its body).
    pub rows: Vec<Row>,
    /// Total learnable scalars.
    pub params: usize,
    /// Total multiply-adds per image.
    pub macs: u64,
}

#[derive(Clone, Debug)]
struct State {
    shape: Vec<usize>,
    rf: (usize, usize),
    jump: (usize, usize),
}

/// Summarizes `net` for one image of shape `input` (`[C, H, W]`).
pub fn summarize(net: &dyn Layer, input: &[usize]) -> Result<Summary> {
    let mut shape = vec![1];
    shape.extend_from_slice(input);
    let mut rows = vec![];
    walk(
        net,
        "",
        State {
            shape,
            rf: (1, 1),
            jump: (1, 1),
        },
        &mut rows,
    )?;
    let params = rows.iter().map(|r| r.params).sum();
    let macs = rows.iter().map(|r| r.macs).sum();
    Ok(Summary {
        input: input.to_vec(),
        rows,
        params,
        macs,
    })
}

fn path(prefix: &str, name: &str) -> String {
    crate::nn::join(prefix, name)
}

fn walk(layer: &dyn Layer, name: &str, st: State, rows: &mut Vec<Row>) -> Result<State> {
    let children = layer.children();
    if (layer as &dyn std::any::Any).is::<crate::nn::Residual>() {
        let mut body = st.clone();
        let mut skip = st.clone();
        let mut post = None;
        for (child, l) in children {
            match child {
                "downsample" => skip = walk(l, &path(name, child), st.clone(), rows)?,
                "post" => post = Some(l),
                _ => body = walk(l, &path(name, child), body, rows)?,
            }
        }
        let merged = State {
            shape: body.shape,
            rf: (body.rf.0.max(skip.rf.0), body.rf.1.max(skip.rf.1)),
            jump: body.jump,
        };
        return match post {
            Some(l) => walk(l, &path(name, "post"), merged, rows),
            None => Ok(merged),
        };
    }
    if !children.is_empty() {
        let mut s = st;
        for (child, l) in children {
            s = walk(l, &path(name, child), s, rows)?;
        }
        return Ok(s);
    }
    let out = layer.output_shape(&st.shape)?;
    let (mut rf, mut jump) = (st.rf, st.jump);
    match layer.receptive() {
        Receptive::Pointwise => {}
        Receptive::Window {
            kernel,
            stride,
            dilation,
        } => {
            rf.0 += dilation.0 * (kernel.0 - 1) * jump.0;
            rf.1 += dilation.1 * (kernel.1 - 1) * jump.1;
            jump = (jump.0 * stride.0, jump.1 * stride.1);
        }
        Receptive::Global => {
            if let [_, _, h, w] = st.shape[..] {
                rf = (rf.0 + (h - 1) * jump.0, rf.1 + (w - 1) * jump.1);
            }
        }
    }
    rows.push(Row {
        name: name.to_string(),
        kind: layer.kind().to_string(),
        output: out[1..].to_vec(),
        params: layer.own_param_count(),
        macs: layer.macs(&st.shape),
        rf,
        jump,
    });
    Ok(State {
        shape: out,
        rf,
        jump,
    })
}

/// Rows of cells as aligned text: the first `left` columns left-aligned, the rest
/// right-aligned (numbers), two spaces apart; a rule under the first row when `rule`.
pub fn text_table<R: AsRef<[String]>>(rows: &[R], left: usize, rule: bool) -> String {
    let cols = rows.iter().map(|r| r.as_ref().len()).max().unwrap_or(0);
    let mut widths = vec![0usize; cols];
    for r in rows {
        for (w, c) in widths.iter_mut().zip(r.as_ref()) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for (i, r) in rows.iter().enumerate() {
        let cells: Vec<String> = r
            .as_ref()
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(j, (c, &w))| {
                if j < left {
                    format!("{c:<w$}")
                } else {
                    format!("{c:>w$}")
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
        if i == 0 && rule {
            out.push_str(&"-".repeat(widths.iter().sum::<usize>() + 2 * cols.saturating_sub(1)));
            out.push('\n');
        }
    }
    out
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1_000_000_000 => format!("{:.2}G", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{:.2}M", n as f64 / 1e6),
        n if n >= 10_000 => format!("{:.1}K", n as f64 / 1e3),
        n => n.to_string(),
    }
}

impl Summary {
    /// The table as aligned text.
    pub fn render(&self) -> String {
        let shape = |s: &[usize]| {
            s.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join("x")
        };
        let header = ["layer", "type", "output", "params", "MACs", "RF", "jump"];
        let mut lines: Vec<[String; 7]> = vec![header.map(String::from)];
        for r in &self.rows {
            lines.push([
                r.name.clone(),
                r.kind.clone(),
                shape(&r.output),
                if r.params == 0 {
                    "-".into()
                } else {
                    r.params.to_string()
                },
                if r.macs == 0 {
                    "-".into()
                } else {
                    human(r.macs)
                },
                format!("{}x{}", r.rf.0, r.rf.1),
                format!("{}x{}", r.jump.0, r.jump.1),
            ]);
        }
        let mut out = text_table(&lines, 3, true);
        let last_rf = self.rows.last().map_or((1, 1), |r| r.rf);
        out.push_str(&format!(
            "input {}  ·  {} parameters ({:.2} MB as f32)  ·  {} multiply-adds per image ({} FLOP)  ·  final receptive field {}x{}\n",
            shape(&self.input),
            self.params,
            self.params as f64 * 4.0 / 1e6,
            human(self.macs),
            human(2 * self.macs),
            last_rf.0,
            last_rf.1
        ));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{Conv2d, Conv2dConfig, Sequential};
    use rand::SeedableRng;

    #[test]
    fn three_stacked_3x3_convs_see_7x7_with_27c2_weights_against_49c2() {
        let c = 16;
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let conv = |k: usize, rng: &mut rand::rngs::StdRng| {
            Conv2d::new(Conv2dConfig::new(c, c, k).padding(k / 2).bias(false), rng).unwrap()
        };
        let stacked = Sequential::new()
            .push("0", conv(3, &mut rng))
            .push("1", conv(3, &mut rng))
            .push("2", conv(3, &mut rng));
        let single = Sequential::new().push("0", conv(7, &mut rng));
        let a = summarize(&stacked, &[c, 20, 20]).unwrap();
        let b = summarize(&single, &[c, 20, 20]).unwrap();
        assert_eq!(a.rows.last().unwrap().rf, (7, 7));
        assert_eq!(b.rows.last().unwrap().rf, (7, 7));
        assert_eq!(a.params, 27 * c * c);
        assert_eq!(b.params, 49 * c * c);
        assert_eq!(a.macs, 27 * (c * c * 400) as u64);
        assert!(a.render().contains("7x7"));
    }

    #[test]
    fn strides_multiply_the_jump() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let net = Sequential::new()
            .push(
                "a",
                Conv2d::new(Conv2dConfig::new(1, 2, 3).stride(2), &mut rng).unwrap(),
            )
            .push(
                "b",
                Conv2d::new(Conv2dConfig::new(2, 2, 3).dilation(2), &mut rng).unwrap(),
            );
        let s = summarize(&net, &[1, 21, 21]).unwrap();
        assert_eq!(s.rows[0].rf, (3, 3));
        assert_eq!(s.rows[0].jump, (2, 2));
        // dilated 3x3 spans 5 positions of a jump-2 grid: 3 + 4·2 = 11
        assert_eq!(s.rows[1].rf, (11, 11));
        assert_eq!(s.rows[1].output, vec![2, 6, 6]);
    }
}

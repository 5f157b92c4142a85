//! Inference split by images across threads: one replica of the model per thread, each
//! running its share of the batch through the whole network on a one-thread pool, a few
//! images at a time.
//!
//! A training step's kernels split each layer's batch over the threads and meet at the
//! end of every layer, and each layer's whole-batch activations (8 MiB for resnet20 at
//! batch 128) live in L3. In eval mode images are independent, so the batch can instead
//! be cut into one contiguous share per thread, and each share run through every layer
//! in micro-batches of [`MIN_IMAGES`] images whose activations stay in the core's L2,
//! without the threads meeting at each layer. Taken where the model's largest
//! activations for a micro-batch, a layer's input and output, fit in [`SPLIT_BYTES`]
//! (resnet20 and the CIFAR ResNets; not the ImageNet models — their 224×224
//! activations exceed L2 for a single image, and replicas only add their own folded
//! and packed weights: resnet18 at batch 16 ran 61–71 against 66–78 images/s, 764
//! against 470 MB).
//!
//! The replicas are built from the model's name and configuration and hold the model's
//! own parameter and buffer tensors (shared, not copied: [`Tensor`] clones share their
//! elements until written), refreshed whenever a stamp changes; a model whose
//! parameters no longer match its configuration (a replaced head), or whose replica
//! disagrees with it on the first images (a layer swapped after the build), is not
//! split. Each image's logits are computed by the same layers with the same weights;
//! the kernels' choices within a micro-batch may differ from the whole batch's (a last
//! rounding bit), and they are a function of the batch size and the thread count only,
//! so results are reproducible. Not a timed choice, for that reason.

use super::{build_with, Model};
use crate::error::{Error, Result};
use crate::kernels::bf16::Precision;
use crate::kernels::conv::{ConvPlan, Tuning};
use crate::nn::{visit_layers_mut, Conv2d, Layer, Mode};
use crate::tensor::Tensor;

/// Images each thread's share must hold for the split to be taken: below it the layers'
/// kernels batch too few images per call (the batched Winograd bands take 4).
pub const MIN_IMAGES: usize = 4;

/// The replicas of one model, one per thread, each with its one-thread pool.
#[derive(Debug)]
pub(crate) struct Replicas {
    models: Vec<Model>,
    pools: Vec<rayon::ThreadPool>,
    /// The stamps of the model's parameters and buffers the replicas hold, in visiting
    /// order, and its convolutions' settings and plans.
    stamps: Vec<u64>,
    settings: Vec<Setting>,
}

/// The model's parameter and buffer tensors (shared clones), with their names.
fn state(model: &mut Model) -> Vec<(String, Tensor)> {
    let mut v = Vec::new();
    model.visit_params("", &mut |n, p| v.push((n.to_string(), p.value.clone())));
    model.visit_buffers("", &mut |n, b| v.push((n.to_string(), b.clone())));
    v
}

/// Which layers apply a ReLU in their own pass, in visiting order: what the fusion
/// pass changed (a normalization that absorbed the ReLU after it, the ReLU then a
/// pass-through).
fn fusion_state(model: &mut Model) -> Vec<crate::nn::ReluOutput> {
    let mut v = Vec::new();
    visit_layers_mut(&mut model.net, "", &mut |_, l| v.push(l.relu_output()));
    v
}

/// A convolution's precision, tuning and plan (`None` before its first forward).
type Setting = (Precision, Tuning, Option<ConvPlan>);

/// The [`Setting`] of each convolution, in visiting order. The replicas run the plans
/// their model chose: a timed choice (`--conv-tuning timed`, bf16) is the model's,
/// replayed from its plan book on a resume, so the replicas' eval outputs are the same
/// bits in a resumed run as in the full one.
fn settings(model: &mut Model) -> Vec<Setting> {
    let mut v = Vec::new();
    visit_layers_mut(&mut model.net, "", &mut |_, l| {
        if let Some(c) = (l as &mut dyn std::any::Any).downcast_mut::<Conv2d>() {
            v.push((c.precision(), c.tuning(), c.plan().copied()));
        }
    });
    v
}

impl Replicas {
    /// `threads` replicas of `model`, or `None` when it cannot be rebuilt from its name
    /// and configuration with the same parameters and buffers (names and shapes) and
    /// the same fused steps.
    pub(crate) fn new(model: &mut Model, threads: usize) -> Option<Replicas> {
        let want: Vec<(String, Vec<usize>)> = state(model)
            .into_iter()
            .map(|(n, t)| (n, t.shape().to_vec()))
            .collect();
        let mut models = Vec::with_capacity(threads);
        let mut pools = Vec::with_capacity(threads);
        // Built fused or not as the model is (`strata bench --no-fuse` measures the
        // unfused layers): the same ReLUs absorbed by the same layers.
        let fusion = fusion_state(model);
        let fused = {
            let mut m = build_with(&model.name, Some(model.config.clone()), true).ok()?;
            fusion_state(&mut m) == fusion
        };
        for _ in 0..threads {
            let mut m = build_with(&model.name, Some(model.config.clone()), fused).ok()?;
            if fusion_state(&mut m) != fusion {
                return None;
            }
            let got: Vec<(String, Vec<usize>)> = state(&mut m)
                .into_iter()
                .map(|(n, t)| (n, t.shape().to_vec()))
                .collect();
            if got != want {
                return None;
            }
            models.push(m);
            pools.push(
                rayon::ThreadPoolBuilder::new()
                    .num_threads(1)
                    .build()
                    .ok()?,
            );
        }
        Some(Replicas {
            models,
            pools,
            stamps: Vec::new(),
            settings: Vec::new(),
        })
    }

    /// How many replicas (threads) there are.
    pub(crate) fn threads(&self) -> usize {
        self.models.len()
    }

    /// Gives the replicas the model's current tensors and convolution settings, where
    /// they changed since the last call.
    fn sync(&mut self, model: &mut Model) {
        let src = state(model);
        let stamps: Vec<u64> = src.iter().map(|(_, t)| t.stamp()).collect();
        if stamps != self.stamps {
            for m in &mut self.models {
                let mut it = src.iter();
                m.visit_params("", &mut |_, p| {
                    if let Some((_, t)) = it.next() {
                        p.value = t.clone();
                    }
                });
                m.visit_buffers("", &mut |_, b| {
                    if let Some((_, t)) = it.next() {
                        *b = t.clone();
                    }
                });
            }
            self.stamps = stamps;
        }
        let now = settings(model);
        if now != self.settings {
            for m in &mut self.models {
                let mut it = now.iter();
                visit_layers_mut(&mut m.net, "", &mut |_, l| {
                    if let Some(c) = (l as &mut dyn std::any::Any).downcast_mut::<Conv2d>() {
                        if let Some(&(p, t, plan)) = it.next() {
                            c.set_precision(p);
                            c.set_tuning(t);
                            if let Some(plan) = plan {
                                c.adopt_plan(plan);
                            }
                        }
                    }
                });
            }
            self.settings = now;
        }
    }

    /// Whether a replica computes what `model` itself does on the first images of `x`
    /// (within float rounding): a model changed after it was built in a way its
    /// parameters' names and shapes do not show (a layer swapped for a parameter-free
    /// one) is then not split.
    fn agrees(&mut self, model: &mut Model, x: &Tensor) -> Result<bool> {
        self.sync(model);
        let xs = images(x, 0..x.shape()[0].min(MIN_IMAGES))?;
        let want = model.net.forward(&xs, Mode::Eval)?;
        let (m, pool) = (&mut self.models[0], &self.pools[0]);
        let got = pool.install(|| m.forward(&xs, Mode::Eval))?;
        Ok(got.shape() == want.shape()
            && got
                .data()
                .iter()
                .zip(want.data())
                .all(|(a, b)| (a - b).abs() <= 1e-4 * (1.0 + b.abs())))
    }

    /// The eval-mode forward of `x` (`[n, ...]`, `n ≥ 1`): contiguous shares of the
    /// images, one per replica, each on its own thread; the outputs in image order.
    pub(crate) fn forward(&mut self, model: &mut Model, x: &Tensor) -> Result<Tensor> {
        self.sync(model);
        let n = x.shape()[0];
        let t = self.models.len().min(n).max(1);
        let outs: Vec<Result<Tensor>> = std::thread::scope(|s| {
            let handles: Vec<_> = self
                .models
                .iter_mut()
                .zip(&self.pools)
                .enumerate()
                .take(t)
                .map(|(i, (m, pool))| {
                    let share = i * n / t..(i + 1) * n / t;
                    s.spawn(move || pool.install(|| micro_forward(m, x, share)))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(Error::state("eval", "a replica's thread panicked"))
                    })
                })
                .collect()
        });
        let outs = outs.into_iter().collect::<Result<Vec<Tensor>>>()?;
        let mut shape = outs[0].shape().to_vec();
        shape[0] = n;
        let mut data = Vec::with_capacity(outs.iter().map(|o| o.len()).sum());
        for o in &outs {
            data.extend_from_slice(o.data());
        }
        Tensor::from_vec(data, &shape)
    }
}

/// Images `range` of the batch `x` (`[n, ...]`, `range.end ≤ n`), copied.
fn images(x: &Tensor, range: std::ops::Range<usize>) -> Result<Tensor> {
    let per = x.len() / x.shape()[0].max(1);
    let mut shape = x.shape().to_vec();
    shape[0] = range.len();
    Tensor::from_vec(
        x.data()[range.start * per..range.end * per].to_vec(),
        &shape,
    )
}

/// The eval forward of images `share` of `x` in micro-batches of [`MIN_IMAGES`]
/// images, the outputs in image order.
fn micro_forward(m: &mut Model, x: &Tensor, share: std::ops::Range<usize>) -> Result<Tensor> {
    let (mut data, mut shape) = (Vec::new(), Vec::new());
    for a in share.clone().step_by(MIN_IMAGES) {
        let xs = images(x, a..(a + MIN_IMAGES).min(share.end))?;
        let y = m.forward(&xs, Mode::Eval)?;
        shape = y.shape().to_vec();
        data.extend_from_slice(y.data());
    }
    shape[0] = share.len();
    Tensor::from_vec(data, &shape)
}

/// Bytes a micro-batch's largest activations, a layer's input and output, may take
/// for the split: half of a 1 MiB L2, the smallest per-core L2 of the server CPUs this
/// project runs on (2 MiB on the Xeons, 1 MiB on AMD's EPYCs). A constant, not this
/// CPU's measured L2: the split changes the last bits of eval outputs (the kernels
/// batch a micro-batch differently from a whole share), so it must be the same choice
/// on every CPU for a given batch and thread count, as the default run's numbers are.
pub const SPLIT_BYTES: usize = 512 << 10;

/// Whether a micro-batch's activations of `model` for images of `input` (`[C, H, W]`),
/// a layer's input and output, fit in [`SPLIT_BYTES`].
fn fits(model: &Model, input: &[usize]) -> bool {
    let Ok(s) = crate::summary::summarize(&model.net, input) else {
        return false;
    };
    let most = s
        .rows
        .iter()
        .map(|r| r.output.iter().product::<usize>())
        .chain(std::iter::once(input.iter().product()))
        .max()
        .unwrap_or(0);
    2 * MIN_IMAGES * most * std::mem::size_of::<f32>() <= SPLIT_BYTES
}

/// A model's eval-mode split (kept in [`Model`]): for which image shape and thread
/// count it was decided, and the replicas where it is taken.
#[derive(Debug, Default)]
pub(crate) struct Split {
    decided: Option<(Vec<usize>, usize)>,
    replicas: Option<Box<Replicas>>,
}

impl Split {
    /// The eval forward of `x` split by images, or `None` where it is not taken: one
    /// thread, fewer than [`MIN_IMAGES`] images a thread, a profiled run (its
    /// per-layer table is the whole batch's), activations too large for L2, or a model
    /// its configuration does not rebuild.
    pub(crate) fn forward(&mut self, model: &mut Model, x: &Tensor) -> Option<Result<Tensor>> {
        let threads = rayon::current_num_threads();
        let (n, image) = x.shape().split_first()?;
        if threads < 2 || *n < threads * MIN_IMAGES || crate::profile::enabled() {
            return None;
        }
        let key = (image.to_vec(), threads);
        if self.decided.as_ref() != Some(&key) {
            let keep = self.replicas.take().filter(|r| r.threads() == threads);
            self.replicas = if fits(model, image) {
                keep.or_else(|| Replicas::new(model, threads).map(Box::new))
            } else {
                None
            };
            if let Some(r) = self.replicas.as_mut() {
                match r.agrees(model, x) {
                    Ok(true) => {}
                    Ok(false) => self.replicas = None,
                    Err(e) => return Some(Err(e)),
                }
            }
            self.decided = Some(key);
        }
        let r = self.replicas.as_mut()?;
        Some(r.forward(model, x))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::build;
    use crate::nn::Activation;
    use rand::SeedableRng;

    fn close(a: &Tensor, b: &Tensor) -> bool {
        a.shape() == b.shape()
            && a.data()
                .iter()
                .zip(b.data())
                .all(|(x, y)| x.to_bits() == y.to_bits())
    }

    /// Split inference on two threads gives the whole batch's logits (9 images: shares
    /// of 4 and 5, a last micro-batch of one), the same bits on every call, follows
    /// the model's weights when they change, and is declined for a model changed after
    /// it was built (a layer without parameters appended) — with that model's own
    /// logits.
    #[test]
    fn split_inference_gives_the_whole_batch_logits() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .unwrap();
        pool.install(|| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(3);
            let mut m = build("resnet20", None).unwrap();
            let x = Tensor::randn(&[9, 3, 32, 32], 0.0, 1.0, &mut rng);
            let whole = m.net.forward(&x, Mode::Eval).unwrap();
            let split = m.forward(&x, Mode::Eval).unwrap();
            assert!(m.split.replicas.is_some());
            assert!(close(&split, &whole));
            let again = m.forward(&x, Mode::Eval).unwrap();
            assert_eq!(split.data(), again.data());
            m.visit_params("", &mut |n, p| {
                if n == "fc.weight" {
                    p.value.data_mut().iter_mut().for_each(|v| *v *= -2.0);
                }
            });
            let whole = m.net.forward(&x, Mode::Eval).unwrap();
            let split = m.forward(&x, Mode::Eval).unwrap();
            assert!(close(&split, &whole));
            assert!(!close(&split, &again), "the new weights are used");
            // The replicas run the model's plans (a timed or replayed choice), here a
            // GEMM forward forced on the first convolution.
            let first = crate::nn::conv_plans(&mut m.net)[0].clone();
            let gemm = first
                .1
                .with_forward(crate::kernels::conv::Path::Gemm)
                .unwrap();
            visit_layers_mut(&mut m.net, "", &mut |name, l| {
                if name == first.0 {
                    let c = (l as &mut dyn std::any::Any)
                        .downcast_mut::<Conv2d>()
                        .unwrap();
                    c.adopt_plan(gemm);
                }
            });
            m.forward(&x, Mode::Eval).unwrap();
            let r = m.split.replicas.as_mut().unwrap();
            for replica in &mut r.models {
                let plans = crate::nn::conv_plans(&mut replica.net);
                assert_eq!(plans[0], (first.0.clone(), gemm));
            }
            // Fewer than MIN_IMAGES a thread: the whole batch.
            let few = Tensor::randn(&[3, 3, 32, 32], 0.0, 1.0, &mut rng);
            assert!(Split::default().forward(&mut m, &few).is_none());

            // An unfused model (`--no-fuse`) gets unfused replicas.
            let mut plain = crate::models::build_with("resnet20", None, false).unwrap();
            let want = plain.net.forward(&x, Mode::Eval).unwrap();
            let got = plain.forward(&x, Mode::Eval).unwrap();
            assert_eq!(got.data(), want.data());
            let state = fusion_state(&mut plain);
            for replica in &mut plain.split.replicas.as_mut().unwrap().models {
                assert_eq!(fusion_state(replica), state);
            }
            assert_ne!(fusion_state(&mut m), state, "fused and unfused differ");

            let mut changed = build("resnet20", None).unwrap();
            changed.net.add(
                "extra",
                Box::new(Activation::new(crate::kernels::eltwise::Act::Gelu)),
            );
            let want = changed.net.forward(&x, Mode::Eval).unwrap();
            let got = changed.forward(&x, Mode::Eval).unwrap();
            assert!(changed.split.replicas.is_none());
            assert_eq!(got.data(), want.data());
        });
    }

    /// An ImageNet model's activations exceed the budget even for a micro-batch: not
    /// split; resnet20's (16 × 32 × 32 floats an image) fit it.
    #[test]
    fn imagenet_activations_are_not_split() {
        let m = build("resnet18", None).unwrap();
        assert!(!fits(&m, &[3, 224, 224]));
        assert!(fits(&build("resnet20", None).unwrap(), &[3, 32, 32]));
    }
}

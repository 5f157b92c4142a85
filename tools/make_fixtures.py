"""Generate PyTorch reference fixtures for strata's layer parity tests.

What it makes
-------------
One safetensors file per case in ``tests/fixtures/<case>.safetensors``
("strata-fixture-v1" format, described in ``tests/fixtures/README.md``).
Each file holds the input ``x``, forward output ``y``, a random upstream
gradient ``dy``, the input gradient ``dx``, and for layers with parameters /
buffers ``param.<name>``, ``grad.<name>``, ``buffer_in.<name>`` and
``buffer_out.<name>``. All tensors are float32, contiguous, NCHW. Metadata
(all strings): ``format``, ``layer``, ``config`` (JSON), ``mode``,
``torch_version``, ``seed``.

Everything is computed in float32 on the CPU with PyTorch's default code path
(deterministic algorithms, one thread), because that is what strata must match.

How to run
----------
    python -m venv /opt/torchenv
    /opt/torchenv/bin/pip install torch safetensors numpy
    cd <repo root>
    /opt/torchenv/bin/python tools/make_fixtures.py

The script deletes every stale ``*.safetensors`` in ``tests/fixtures`` first,
so the folder always matches this script exactly. Each case has its own fixed
seed, so adding or removing a case does not change the others.

Pinned torch version: see ``PINNED_TORCH`` below (the fixtures in the repo were
made with it; a different version prints a warning because float32 results
may differ in the last bits).
"""

import json
import math
import os
import struct
import sys
import zlib

import torch
import torch.nn.functional as F
from safetensors.torch import save_file

PINNED_TORCH = "2.15.0"
FORMAT = "strata-fixture-v1"

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT_DIR = os.path.join(REPO_ROOT, "tests", "fixtures")

DT = torch.float32


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------


def seed_of(name):
    """Stable per-case seed derived from the case name."""
    return zlib.crc32(name.encode("utf-8")) & 0x7FFFFFFF


def randn(*shape, scale=1.0):
    return torch.randn(*shape, dtype=DT) * scale


def away_from_zero(t, margin=0.05):
    """Push values so |x| > margin (keeps relu-like kinks out of reach)."""
    s = torch.where(t >= 0, torch.ones_like(t), -torch.ones_like(t))
    return t + s * (2 * margin)


def distinct(*shape):
    """Random permutation of distinct, exactly-representable values (no ties)."""
    n = math.prod(shape)
    perm = torch.randperm(n).to(DT)
    return ((perm - n / 2) / 8.0).reshape(shape)


def leaf(t):
    return t.detach().clone().to(DT).contiguous().requires_grad_(True)


def out(t):
    return t.detach().to(DT).contiguous().clone()


CASES = []


def case(name, layer, config, mode="train"):
    def deco(fn):
        CASES.append((name, layer, config, mode, fn))
        return fn

    return deco


def run_case(name, layer, config, mode, fn):
    """fn(cfg) -> dict with keys:
    x (leaf), forward (callable x -> y), params {name: leaf},
    buffers {name: tensor} (mutated by forward), extra {name: tensor}.
    """
    seed = seed_of(name)
    torch.manual_seed(seed)
    spec = fn(config)
    x = spec["x"]
    params = spec.get("params", {})
    buffers = spec.get("buffers", {})
    extra = spec.get("extra", {})

    buffer_in = {k: out(v) for k, v in buffers.items()}
    y = spec["forward"](x)
    scalar = y.dim() == 0
    if scalar:
        dy = torch.randn(1, dtype=DT)
        y.backward(dy.reshape(()))
        y_saved = out(y.reshape(1))
    else:
        dy = torch.randn(y.shape, dtype=DT)
        y.backward(dy)
        y_saved = out(y)

    tensors = {"x": out(x), "y": y_saved, "dy": out(dy)}
    if x.requires_grad:
        assert x.grad is not None, name
        tensors["dx"] = out(x.grad)
    for k, v in extra.items():
        tensors[k] = out(v)
    for k, p in params.items():
        tensors["param." + k] = out(p)
        assert p.grad is not None, (name, k)
        tensors["grad." + k] = out(p.grad)
    for k, v in buffer_in.items():
        tensors["buffer_in." + k] = v
    for k, v in buffers.items():
        tensors["buffer_out." + k] = out(v)

    for k, v in tensors.items():
        assert v.dtype == DT and v.is_contiguous(), (name, k)
        assert torch.isfinite(v).all(), (name, k)

    meta = {
        "format": FORMAT,
        "layer": layer,
        "config": json.dumps(config),
        "mode": mode,
        "torch_version": torch.__version__,
        "seed": str(seed),
    }
    path = os.path.join(OUT_DIR, name + ".safetensors")
    save_file(tensors, path, metadata=meta)
    canonicalize_header(path)
    shapes = " ".join(
        f"{k}={list(v.shape)}" for k, v in tensors.items() if k in ("x", "y")
    )
    n_el = sum(v.numel() for v in tensors.values())
    print(f"{name:<44} {layer:<20} {mode:<5} seed={seed:<10} {shapes} "
          f"tensors={len(tensors)} elems={n_el} bytes={os.path.getsize(path)}")
    return n_el


def canonicalize_header(path):
    """Rewrite the safetensors JSON header with metadata keys in sorted order.

    safetensors stores ``__metadata__`` in a Rust HashMap, so save_file writes
    the keys in a random order and two runs give different bytes. Reordering
    the keys keeps the header the same length, so the tensor data is untouched
    and re-running the script reproduces the files byte for byte.
    """
    with open(path, "rb") as f:
        raw = f.read()
    n = struct.unpack("<Q", raw[:8])[0]
    header = json.loads(raw[8:8 + n])
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    new = json.dumps(header, separators=(",", ":")).encode("ascii")
    assert len(new) <= n, path
    new = new + b" " * (n - len(new))
    with open(path, "wb") as f:
        f.write(raw[:8] + new + raw[8 + n:])


def pair(v):
    return list(v) if isinstance(v, (list, tuple)) else [v, v]


# --------------------------------------------------------------------------
# conv2d
# --------------------------------------------------------------------------


def conv_case(name, n, h, w, c_in, c_out, kernel, stride=1, padding=0,
              dilation=1, groups=1, bias=True):
    cfg = {
        "c_in": c_in, "c_out": c_out, "kernel": pair(kernel),
        "stride": pair(stride), "padding": pair(padding),
        "dilation": pair(dilation), "groups": groups, "bias": bias,
    }

    @case(name, "conv2d", cfg)
    def _(c):
        kh, kw = c["kernel"]
        fan_in = (c["c_in"] // c["groups"]) * kh * kw
        x = leaf(randn(n, c["c_in"], h, w))
        params = {"weight": leaf(randn(c["c_out"], c["c_in"] // c["groups"], kh, kw,
                                       scale=1.0 / math.sqrt(fan_in)))}
        if c["bias"]:
            params["bias"] = leaf(randn(c["c_out"], scale=0.5))

        def fwd(x):
            return F.conv2d(x, params["weight"], params.get("bias"),
                            stride=c["stride"], padding=c["padding"],
                            dilation=c["dilation"], groups=c["groups"])

        return {"x": x, "forward": fwd, "params": params}


conv_case("conv2d_3x3_bias_5x7", 2, 5, 7, 3, 4, 3)
conv_case("conv2d_stride2_pad1_bias", 2, 7, 6, 3, 4, 3, stride=2, padding=1)
conv_case("conv2d_dilation2_pad2_nobias_b1", 1, 9, 8, 2, 3, 3, padding=2,
          dilation=2, bias=False)
conv_case("conv2d_groups2_k3x2_s2x1_p1x0_d1x2", 2, 7, 8, 4, 6, [3, 2],
          stride=[2, 1], padding=[1, 0], dilation=[1, 2], groups=2)
conv_case("conv2d_depthwise_s2_pad1", 2, 7, 5, 4, 4, 3, stride=2, padding=1,
          groups=4)
conv_case("conv2d_depthwise_mult2_k5_pad2", 1, 6, 5, 3, 6, 5, padding=2,
          groups=3)
conv_case("conv2d_depthwise_k7_pad3_tiny_input", 2, 4, 5, 4, 4, 7, padding=3,
          groups=4)
conv_case("conv2d_1x1_nobias", 3, 3, 4, 5, 3, 1, bias=False)
conv_case("conv2d_k1x3_s1x2_asym_pad", 2, 5, 9, 3, 2, [1, 3], stride=[1, 2],
          padding=[0, 2])
# 3x3, stride 1, >= 16 channels each way: strata computes it (forward and input
# gradient) with its Winograd F(2x2, 3x3) kernel on AVX-512 machines.
conv_case("conv2d_3x3_c16_to_c17_pad1_9x11", 2, 9, 11, 16, 17, 3, padding=1)
# ... and its weight gradient (more than 16 input, at least 32 output channels).
conv_case("conv2d_3x3_c20_to_c32_pad1_7x9", 2, 7, 9, 20, 32, 3, padding=1)

# --------------------------------------------------------------------------
# linear
# --------------------------------------------------------------------------


def linear_case(name, n, fin, fout, bias):
    cfg = {"in_features": fin, "out_features": fout, "bias": bias}

    @case(name, "linear", cfg)
    def _(c):
        x = leaf(randn(n, c["in_features"]))
        params = {"weight": leaf(randn(c["out_features"], c["in_features"],
                                       scale=1.0 / math.sqrt(c["in_features"])))}
        if c["bias"]:
            params["bias"] = leaf(randn(c["out_features"], scale=0.5))
        return {"x": x, "params": params,
                "forward": lambda x: F.linear(x, params["weight"], params.get("bias"))}


linear_case("linear_5to3_bias", 4, 5, 3, True)
linear_case("linear_7to2_nobias_b1", 1, 7, 2, False)
linear_case("linear_16to9_bias", 3, 16, 9, True)

# --------------------------------------------------------------------------
# pooling
# --------------------------------------------------------------------------


def max_pool_case(name, shape, kernel, stride, padding=0, dilation=1,
                  ceil_mode=False):
    cfg = {"kernel": pair(kernel), "stride": pair(stride),
           "padding": pair(padding), "dilation": pair(dilation),
           "ceil_mode": ceil_mode}

    @case(name, "max_pool2d", cfg)
    def _(c):
        x = leaf(distinct(*shape))
        return {"x": x, "forward": lambda x: F.max_pool2d(
            x, c["kernel"], c["stride"], c["padding"], c["dilation"],
            ceil_mode=c["ceil_mode"])}


max_pool_case("max_pool2d_k2s2", (2, 3, 6, 8), 2, 2)
max_pool_case("max_pool2d_k3s2_pad1_odd_b1", (1, 2, 7, 5), 3, 2, padding=1)
max_pool_case("max_pool2d_k3s2_ceil", (2, 2, 8, 7), 3, 2, ceil_mode=True)
max_pool_case("max_pool2d_k3s2_pad1_ceil", (1, 2, 6, 9), 3, 2, padding=1,
              ceil_mode=True)
max_pool_case("max_pool2d_k2x3_s1x2_pad1_dil2", (1, 2, 9, 8), [2, 3], [1, 2],
              padding=[1, 1], dilation=2)


def avg_pool_case(name, shape, kernel, stride, padding=0, ceil_mode=False,
                  count_include_pad=True):
    cfg = {"kernel": pair(kernel), "stride": pair(stride),
           "padding": pair(padding), "ceil_mode": ceil_mode,
           "count_include_pad": count_include_pad}

    @case(name, "avg_pool2d", cfg)
    def _(c):
        x = leaf(randn(*shape))
        return {"x": x, "forward": lambda x: F.avg_pool2d(
            x, c["kernel"], c["stride"], c["padding"], ceil_mode=c["ceil_mode"],
            count_include_pad=c["count_include_pad"])}


avg_pool_case("avg_pool2d_k2s2", (2, 3, 6, 4), 2, 2)
avg_pool_case("avg_pool2d_k3s2_pad1_incl_pad", (1, 2, 7, 5), 3, 2, padding=1)
avg_pool_case("avg_pool2d_k3s2_pad1_excl_pad", (2, 2, 7, 6), 3, 2, padding=1,
              count_include_pad=False)
avg_pool_case("avg_pool2d_k3s2_pad1_ceil_excl_pad", (2, 2, 8, 6), 3, 2,
              padding=1, ceil_mode=True, count_include_pad=False)
avg_pool_case("avg_pool2d_k2x3_s2_pad0x1_ceil_incl_pad", (1, 3, 5, 7), [2, 3],
              2, padding=[0, 1], ceil_mode=True, count_include_pad=True)


def adaptive_case(name, shape, output):
    cfg = {"output": list(output)}

    @case(name, "adaptive_avg_pool2d", cfg)
    def _(c):
        x = leaf(randn(*shape))
        return {"x": x,
                "forward": lambda x: F.adaptive_avg_pool2d(x, c["output"])}


adaptive_case("adaptive_avg_pool2d_5x7_to_3x2", (2, 3, 5, 7), (3, 2))
adaptive_case("adaptive_avg_pool2d_6x4_to_1x1", (3, 4, 6, 4), (1, 1))
adaptive_case("adaptive_avg_pool2d_4x4_to_2x2_b1", (1, 2, 4, 4), (2, 2))
adaptive_case("adaptive_avg_pool2d_3x5_to_4x6_upsample", (2, 2, 3, 5), (4, 6))

# --------------------------------------------------------------------------
# flatten
# --------------------------------------------------------------------------


def flatten_case(name, shape):
    @case(name, "flatten", {})
    def _(c):
        x = leaf(randn(*shape))
        return {"x": x, "forward": lambda x: torch.flatten(x, 1)}


flatten_case("flatten_2x3x4x5", (2, 3, 4, 5))
flatten_case("flatten_1x4x1x1", (1, 4, 1, 1))
flatten_case("flatten_3x2x3x1", (3, 2, 3, 1))

# --------------------------------------------------------------------------
# activations
# --------------------------------------------------------------------------

ACT_SHAPES = [
    ("4d", (2, 3, 5, 4), 2.0),
    ("b1_odd", (1, 2, 3, 7), 1.0),
    ("2d", (3, 11), 3.0),
]


def act_case(name, layer, cfg, fwd, shape, scale, kink):
    @case(name, layer, cfg)
    def _(c):
        x = randn(*shape, scale=scale)
        if kink:
            x = away_from_zero(x)
        return {"x": leaf(x), "forward": lambda x: fwd(x, c)}


ACTS = [
    ("relu", None, lambda x, c: F.relu(x), True),
    ("sigmoid", None, lambda x, c: torch.sigmoid(x), False),
    ("tanh", None, lambda x, c: torch.tanh(x), False),
    ("silu", None, lambda x, c: F.silu(x), False),
    ("mish", None, lambda x, c: F.mish(x), False),
]
for layer, _cfg, fwd, kink in ACTS:
    for tag, shape, scale in ACT_SHAPES:
        act_case(f"{layer}_{tag}", layer, {}, fwd, shape, scale, kink)
# saturating inputs for the smooth activations
for layer, _cfg, fwd, kink in ACTS[1:]:
    act_case(f"{layer}_saturating", layer, {}, fwd, (2, 2, 3, 3), 12.0, kink)

for (tag, shape, scale), slope in zip(ACT_SHAPES, [0.01, 0.2, 1.5]):
    act_case(f"leaky_relu_{tag}_slope{slope}", "leaky_relu",
             {"negative_slope": slope},
             lambda x, c: F.leaky_relu(x, c["negative_slope"]), shape, scale, True)

for (tag, shape, scale), alpha in zip(ACT_SHAPES, [1.0, 0.5, 2.0]):
    act_case(f"elu_{tag}_alpha{alpha}", "elu", {"alpha": alpha},
             lambda x, c: F.elu(x, c["alpha"]), shape, scale, True)

for tag, shape, scale in ACT_SHAPES:
    for approx in ("none", "tanh"):
        act_case(f"gelu_{approx}_{tag}", "gelu", {"approximate": approx},
                 lambda x, c: F.gelu(x, approximate=c["approximate"]),
                 shape, scale, False)

# --------------------------------------------------------------------------
# normalisation
# --------------------------------------------------------------------------


def affine_params(ch):
    return {"weight": leaf(1.0 + 0.3 * torch.randn(ch, dtype=DT)),
            "bias": leaf(0.3 * torch.randn(ch, dtype=DT))}


def batch_norm_case(name, shape, eps, momentum, mode, nbt=7):
    ch = shape[1]
    cfg = {"num_features": ch, "eps": eps, "momentum": momentum}

    @case(name, "batch_norm2d", cfg, mode)
    def _(c):
        x = leaf(randn(*shape, scale=1.5) + 0.7)
        params = affine_params(ch)
        buffers = {
            "running_mean": 0.5 * torch.randn(ch, dtype=DT),
            "running_var": 0.5 + torch.rand(ch, dtype=DT) * 1.5,
            "num_batches_tracked": torch.tensor([float(nbt)], dtype=DT),
        }
        m = torch.nn.BatchNorm2d(ch, eps=c["eps"], momentum=c["momentum"])
        with torch.no_grad():
            m.running_mean.copy_(buffers["running_mean"])
            m.running_var.copy_(buffers["running_var"])
            m.num_batches_tracked.fill_(nbt)
        m.weight = torch.nn.Parameter(params["weight"])
        m.bias = torch.nn.Parameter(params["bias"])
        params = {"weight": m.weight, "bias": m.bias}
        m.train(mode == "train")

        def fwd(x):
            y = m(x)
            buffers["running_mean"] = m.running_mean
            buffers["running_var"] = m.running_var
            buffers["num_batches_tracked"] = m.num_batches_tracked.to(DT).reshape(1)
            return y

        return {"x": x, "forward": fwd, "params": params, "buffers": buffers}


batch_norm_case("batch_norm2d_train_b1_3x4", (1, 3, 3, 4), 1e-5, 0.1, "train")
batch_norm_case("batch_norm2d_train_b3_5x3", (3, 2, 5, 3), 1e-5, 0.1, "train")
batch_norm_case("batch_norm2d_train_b2_1x3_mom0.3_eps1e-3", (2, 4, 1, 3), 1e-3,
                0.3, "train", nbt=0)
batch_norm_case("batch_norm2d_eval_b2_4x5", (2, 3, 4, 5), 1e-5, 0.1, "eval")
batch_norm_case("batch_norm2d_eval_b1_3x3_eps1e-3", (1, 2, 3, 3), 1e-3, 0.1,
                "eval")


def group_norm_case(name, layer, shape, groups, eps):
    ch = shape[1]
    if layer == "per_channel_layer_norm":
        cfg = {"num_channels": ch, "eps": eps}
    else:
        cfg = {"num_groups": groups, "num_channels": ch, "eps": eps}

    @case(name, layer, cfg)
    def _(c):
        x = leaf(randn(*shape, scale=1.5) + 0.4)
        params = affine_params(ch)
        return {"x": x, "params": params, "forward": lambda x: F.group_norm(
            x, groups, params["weight"], params["bias"], eps)}


group_norm_case("group_norm_g1_c4", "group_norm", (2, 4, 3, 5), 1, 1e-5)
group_norm_case("group_norm_g4_c4_per_channel", "group_norm", (2, 4, 3, 3), 4, 1e-5)
group_norm_case("group_norm_g3_c6_b1", "group_norm", (1, 6, 5, 3), 3, 1e-5)
group_norm_case("group_norm_g2_c8_eps1e-3_b3", "group_norm", (3, 8, 2, 3), 2, 1e-3)

group_norm_case("per_channel_layer_norm_c4_b2", "per_channel_layer_norm",
                (2, 4, 3, 5), 1, 1e-5)
group_norm_case("per_channel_layer_norm_c3_b1_1x1", "per_channel_layer_norm",
                (1, 3, 1, 1), 1, 1e-5)
group_norm_case("per_channel_layer_norm_c5_b3_eps1e-6", "per_channel_layer_norm",
                (3, 5, 2, 3), 1, 1e-6)


def layer_norm_case(name, shape, normalized_shape, eps=1e-5, affine=True,
                    bias=True):
    """PyTorch's nn.LayerNorm: one weight and bias per element of normalized_shape."""
    ns = list(normalized_shape)
    cfg = {"normalized_shape": ns, "eps": eps, "elementwise_affine": affine,
           "bias": bias}

    @case(name, "layer_norm", cfg)
    def _(c):
        x = leaf(randn(*shape, scale=1.5) + 0.4)
        params = {}
        if affine:
            params["weight"] = leaf(1.0 + 0.3 * randn(*ns))
            if bias:
                params["bias"] = leaf(0.2 * randn(*ns))
        return {"x": x, "params": params, "forward": lambda x: F.layer_norm(
            x, ns, params.get("weight"), params.get("bias"), eps)}


layer_norm_case("layer_norm_chw_b2", (2, 4, 3, 5), (4, 3, 5))
layer_norm_case("layer_norm_w_3d", (3, 2, 7), (7,), eps=1e-6)
layer_norm_case("layer_norm_hw_no_affine", (2, 3, 4, 4), (4, 4), affine=False)
layer_norm_case("layer_norm_chw_no_bias_b1", (1, 3, 2, 2), (3, 2, 2), bias=False)


def instance_norm_case(name, shape, eps, affine):
    ch = shape[1]
    cfg = {"num_features": ch, "eps": eps, "affine": affine}

    @case(name, "instance_norm2d", cfg)
    def _(c):
        x = leaf(randn(*shape, scale=1.5) - 0.3)
        m = torch.nn.InstanceNorm2d(ch, eps=eps, affine=affine,
                                    track_running_stats=False)
        params = {}
        if affine:
            p = affine_params(ch)
            m.weight = torch.nn.Parameter(p["weight"])
            m.bias = torch.nn.Parameter(p["bias"])
            params = {"weight": m.weight, "bias": m.bias}
        m.train()
        return {"x": x, "params": params, "forward": m}


instance_norm_case("instance_norm2d_affine_b2_3x5", (2, 3, 3, 5), 1e-5, True)
instance_norm_case("instance_norm2d_noaffine_b1_4x4", (1, 4, 4, 4), 1e-5, False)
instance_norm_case("instance_norm2d_affine_b3_2x1_eps1e-3", (3, 2, 2, 1), 1e-3, True)


def channel_ln_case(name, shape, eps):
    ch = shape[1]
    cfg = {"num_channels": ch, "eps": eps}

    @case(name, "channel_layer_norm", cfg)
    def _(c):
        x = leaf(randn(*shape, scale=1.5) + 0.2)
        params = affine_params(ch)

        def fwd(x):
            return F.layer_norm(x.permute(0, 2, 3, 1), (ch,), params["weight"],
                                params["bias"], eps).permute(0, 3, 1, 2)

        return {"x": x, "params": params, "forward": fwd}


channel_ln_case("channel_layer_norm_c4_b2_3x5", (2, 4, 3, 5), 1e-6)
channel_ln_case("channel_layer_norm_c3_b1_2x2", (1, 3, 2, 2), 1e-5)
channel_ln_case("channel_layer_norm_c8_b3_1x3", (3, 8, 1, 3), 1e-6)

# --------------------------------------------------------------------------
# dropout (eval only => identity)
# --------------------------------------------------------------------------


def dropout_case(name, layer, shape, p):
    @case(name, layer, {"p": p}, "eval")
    def _(c):
        x = leaf(randn(*shape))
        if layer == "dropout":
            fwd = lambda x: F.dropout(x, c["p"], training=False)  # noqa: E731
        else:
            fwd = lambda x: F.dropout2d(x, c["p"], training=False)  # noqa: E731
        return {"x": x, "forward": fwd}


for layer in ("dropout", "dropout2d"):
    dropout_case(f"{layer}_eval_p0.5", layer, (2, 3, 4, 5), 0.5)
    dropout_case(f"{layer}_eval_p0.1_b1", layer, (1, 2, 3, 3), 0.1)
    dropout_case(f"{layer}_eval_p0.0", layer, (3, 4, 2, 1), 0.0)

# --------------------------------------------------------------------------
# cross entropy
# --------------------------------------------------------------------------


def ce_case(name, n, classes, ls, scale=2.0):
    cfg = {"label_smoothing": ls}

    @case(name, "cross_entropy", cfg)
    def _(c):
        x = leaf(randn(n, classes, scale=scale))
        target = torch.randint(0, classes, (n,))
        return {"x": x, "extra": {"target": target.to(DT)},
                "forward": lambda x: F.cross_entropy(
                    x, target, label_smoothing=c["label_smoothing"])}


ce_case("cross_entropy_n5_c4_ls0", 5, 4, 0.0)
ce_case("cross_entropy_n3_c7_ls0.1", 3, 7, 0.1)
ce_case("cross_entropy_n1_c3_ls0.1", 1, 3, 0.1)
ce_case("cross_entropy_n4_c5_ls0_large_logits", 4, 5, 0.0, scale=30.0)


# --------------------------------------------------------------------------


def main():
    base = torch.__version__.split("+")[0]
    if base != PINNED_TORCH:
        print(f"WARNING: running torch {torch.__version__}, fixtures are pinned "
              f"to torch {PINNED_TORCH}; float32 results may differ in the last "
              f"bits", file=sys.stderr)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)

    names = [c[0] for c in CASES]
    dup = {n for n in names if names.count(n) > 1}
    assert not dup, f"duplicate case names: {dup}"

    os.makedirs(OUT_DIR, exist_ok=True)
    stale = [f for f in os.listdir(OUT_DIR) if f.endswith(".safetensors")]
    for f in stale:
        os.remove(os.path.join(OUT_DIR, f))
    print(f"torch {torch.__version__}: removed {len(stale)} old fixture(s), "
          f"writing {len(CASES)} case(s) to {OUT_DIR}")

    for name, layer, config, mode, fn in CASES:
        run_case(name, layer, config, mode, fn)

    total = sum(os.path.getsize(os.path.join(OUT_DIR, f))
                for f in os.listdir(OUT_DIR) if f.endswith(".safetensors"))
    print(f"done: {len(CASES)} cases, {total} bytes")


if __name__ == "__main__":
    main()

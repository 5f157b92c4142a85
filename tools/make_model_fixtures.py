"""Whole-model PyTorch reference fixtures for strata's model tests.

Writes into ``tests/fixtures/models/``:

- ``registry.json``: for every named model, the parameter count, the multiply-adds
  of one image (forward hooks on Conv2d/Linear — an independent count) and every
  state-dict key with its shape (torchvision's own models for the ImageNet names,
  the twins of ``tools/torch_models.py`` for the CIFAR ones).
- ``train_step_<model>.safetensors``: one training step of ``resnet20`` and of
  ``vgg11-bn-cifar`` at width 0.125, from the deterministic parameters of
  ``torch_models.formula_state`` (recomputed in Rust, so they are not stored): input
  ``x``, ``target``, train-mode ``logits`` and ``loss``, every gradient
  ``grad.<name>``, the buffers after the step ``buffer_out.<name>``, then eval-mode
  ``eval_logits``.
- ``torch_state_resnet20.safetensors``: a state dict written by
  ``safetensors.torch.save_file(model.state_dict())`` (what users will bring), and
  ``torch_state_resnet20_probe.safetensors`` with an input and its eval logits.
- ``trajectory_resnet20.safetensors``: the losses of four training steps of resnet20 with
  SGD (momentum 0.9, Nesterov, weight decay 5e-4) and with AdamW, on one batch.
- ``forward_resnet18.safetensors``: torchvision resnet18, formula parameters, input
  ``x`` of 2×3×64×64 and its train-mode ``logits`` (batch statistics keep the
  activations in range; the formula's running statistics would let them grow).

Run (see tests/fixtures/README.md for the venv):
    /opt/torchenv/bin/pip install torchvision
    /opt/torchenv/bin/python tools/make_model_fixtures.py
"""

import json
import os
import sys

import torch
import torch.nn as nn
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models as tm  # noqa: E402
from make_fixtures import canonicalize_header  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "tests", "fixtures", "models")

NAMES = [
    "fmnist-cnn", "vgg11", "vgg11-bn", "vgg13", "vgg13-bn", "vgg16", "vgg16-bn", "vgg19", "vgg19-bn",
    "vgg11-bn-cifar", "resnet20", "resnet32", "resnet44", "resnet56", "resnet110",
    "plain20", "plain32", "plain44", "plain56", "plain110", "resnet18", "resnet34", "resnet50",
]


def count_macs(model, shape):
    macs = [0]

    def hook(mod, inp, out):
        if isinstance(mod, nn.Conv2d):
            k = mod.in_channels // mod.groups * mod.kernel_size[0] * mod.kernel_size[1]
            macs[0] += out.numel() * k
        elif isinstance(mod, nn.Linear):
            macs[0] += out.numel() * mod.in_features

    hs = [m.register_forward_hook(hook) for m in model.modules()]
    model.eval()
    with torch.no_grad():
        model(torch.zeros(1, *shape))
    for h in hs:
        h.remove()
    return macs[0]


def registry():
    out = {}
    for name in NAMES:
        model, shape = tm.build(name)
        sd = model.state_dict()
        out[name] = {
            "input": list(shape),
            "params": sum(p.numel() for p in model.parameters()),
            "macs": count_macs(model, shape),
            "state_dict": {k: list(v.shape) for k, v in sd.items()},
        }
        print(f"{name:16s} {out[name]['params']:>11,d} params {out[name]['macs']:>15,d} MACs")
    with open(os.path.join(OUT, "registry.json"), "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")


def meta(**kw):
    m = {"format": "strata-model-fixture-v1", "torch_version": torch.__version__}
    m.update({k: str(v) for k, v in kw.items()})
    return m


def train_step(name, width):
    torch.manual_seed(7)
    model, shape = tm.build(name, width=width)
    model.load_state_dict(tm.formula_state(model))
    x = torch.randn(4, *shape)
    target = torch.tensor([3, 0, 9, 3])
    model.train()
    logits = model(x)
    loss = nn.functional.cross_entropy(logits, target)
    loss.backward()
    t = {"x": x, "target": target.float(), "logits": logits.detach(), "loss": loss.detach().reshape(1)}
    for k, p in model.named_parameters():
        t["grad." + k] = p.grad.detach().clone()
    for k, b in model.named_buffers():
        t["buffer_out." + k] = b.detach().float().clone().reshape(b.shape)
    model.eval()
    with torch.no_grad():
        t["eval_logits"] = model(x)
    path = os.path.join(OUT, f"train_step_{name}.safetensors")
    save_file({k: v.contiguous() for k, v in t.items()}, path, metadata=meta(model=name, width=width))
    canonicalize_header(path)
    print(f"{path}: loss {loss.item():.6f}")


def trajectory_resnet20():
    """Losses of a few optimizer steps from the formula parameters (STYLE.md #5)."""
    torch.manual_seed(13)
    x = torch.randn(8, 3, 32, 32)
    target = torch.tensor([1, 5, 0, 9, 3, 3, 7, 2])
    t = {"x": x, "target": target.float()}
    for tag, make in [
        ("sgd", lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)),
        ("adamw", lambda ps: torch.optim.AdamW(ps, lr=1e-3, weight_decay=0.05)),
    ]:
        model, _ = tm.build("resnet20")
        model.load_state_dict(tm.formula_state(model))
        model.train()
        opt = make(model.parameters())
        losses = []
        for _ in range(4):
            opt.zero_grad()
            loss = nn.functional.cross_entropy(model(x), target)
            loss.backward()
            losses.append(loss.item())
            opt.step()
        t["losses_" + tag] = torch.tensor(losses)
        print(f"trajectory {tag}: {losses}")
    path = os.path.join(OUT, "trajectory_resnet20.safetensors")
    save_file(t, path, metadata=meta(model="resnet20", width=1.0))
    canonicalize_header(path)


def torch_checkpoint_resnet20():
    """A state dict written by PyTorch itself (int64 counters, shape []), for loading."""
    torch.manual_seed(5)
    model, _ = tm.build("resnet20")
    model.train()
    with torch.no_grad():
        model(torch.randn(8, 3, 32, 32))  # non-trivial running statistics
    model.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        logits = model(x)
    save_file(model.state_dict(), os.path.join(OUT, "torch_state_resnet20.safetensors"))
    probe = os.path.join(OUT, "torch_state_resnet20_probe.safetensors")
    save_file({"x": x, "logits": logits}, probe, metadata=meta(model="resnet20", width=1.0))
    canonicalize_header(probe)
    print("torch_state_resnet20: written")


def forward_resnet18():
    torch.manual_seed(11)
    model, _ = tm.build("resnet18")
    model.load_state_dict(tm.formula_state(model))
    model.train()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits = model(x)
    path = os.path.join(OUT, "forward_resnet18.safetensors")
    save_file({"x": x, "logits": logits}, path, metadata=meta(model="resnet18", width=1.0))
    canonicalize_header(path)
    print(f"{path}: logits[:3] {logits[0, :3].tolist()}")


if __name__ == "__main__":
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(1)
    os.makedirs(OUT, exist_ok=True)
    registry()
    train_step("resnet20", 1.0)
    train_step("vgg11-bn-cifar", 0.125)
    forward_resnet18()
    torch_checkpoint_resnet20()
    trajectory_resnet20()

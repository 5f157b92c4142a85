"""Check that a strata checkpoint loads into PyTorch and gives strata's logits.

    /opt/torchenv/bin/python tools/check_checkpoint.py CKPT.safetensors

Reads the model name and width from the checkpoint header (``strata.model``,
``strata.config``), builds the torchvision model or its twin (tools/torch_models.py),
loads the state dict with ``strict=True``, runs the probe input written beside the
checkpoint (``CKPT.probe.safetensors``: ``x`` and strata's eval-mode ``logits``) and
exits non-zero if the logits differ by more than 1e-4 of their scale.
"""

import json
import os
import sys

import torch
from safetensors import safe_open
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models as tm  # noqa: E402


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    path = sys.argv[1]
    with safe_open(path, "pt") as f:
        meta = f.metadata() or {}
    if "strata.model" not in meta:
        sys.exit(f"{path}: no strata.model in the header; not a strata checkpoint")
    name = meta["strata.model"]
    width = json.loads(meta.get("strata.config", "{}")).get("width", 1.0)
    model, _ = tm.build(name, width=width)
    state = load_file(path)
    model.load_state_dict(state, strict=True)
    model.eval()
    probe = load_file(path + ".probe.safetensors")
    with torch.no_grad():
        logits = model(probe["x"])
    diff = (logits - probe["logits"]).abs().max().item()
    scale = max(probe["logits"].abs().max().item(), 1.0)
    print(f"{name}: loaded {len(state)} tensors strictly into PyTorch; max |pytorch - strata| = {diff:.3e} (scale {scale:.3f})")
    sys.exit(0 if diff <= 1e-4 * scale else 1)


if __name__ == "__main__":
    main()

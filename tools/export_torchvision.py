"""Export a torchvision (or twin) model's state dict to safetensors, with a probe.

    /opt/torchenv/bin/python tools/export_torchvision.py resnet18 /tmp/tv_r18.safetensors [--weights FILE.pth]

Writes the state dict (torchvision names, float32, num_batches_tracked int64) and
``<out>.probe.safetensors`` holding an input ``x`` and the model's eval-mode ``logits``,
for ``cargo run --example checkpoint_interop -- check MODEL OUT``. Without ``--weights``
the model is randomly initialized (seed 0) and run once in training mode so that its
BatchNorm statistics are not trivial; with it, a local .pth state dict is loaded (this
tool never downloads).
"""

import argparse
import os
import sys

import torch
from safetensors.torch import save_file

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import torch_models as tm  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model", help="strata model name, e.g. resnet18, vgg11-bn, resnet20")
    ap.add_argument("out", help="output .safetensors path")
    ap.add_argument("--weights", help="a local .pth state dict to load first")
    args = ap.parse_args()
    torch.manual_seed(0)
    model, shape = tm.build(args.model)
    if args.weights:
        model.load_state_dict(torch.load(args.weights, map_location="cpu"))
    else:
        model.train()
        with torch.no_grad():
            model(torch.randn(4, *shape))
    model.eval()
    x = torch.randn(2, *shape)
    with torch.no_grad():
        logits = model(x)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, args.out)
    save_file({"x": x, "logits": logits}, args.out + ".probe.safetensors")
    print(f"wrote {args.out} ({len(model.state_dict())} tensors) and its probe")


if __name__ == "__main__":
    main()

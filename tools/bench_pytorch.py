#!/usr/bin/env python3
"""The `strata bench` measurement, made in PyTorch, for side-by-side ratios.

Same models (tools/torch_models.py, layer for layer as strata's), same batch, same
thread count, same step: zero the gradients, forward in train mode, cross-entropy,
backward, SGD (momentum 0.9) update; or a forward pass in eval mode for inference.
Warm-up steps are untimed, then each timed step is timed alone and the median is
quoted (as strata does). Variants: eager NCHW, eager channels_last, torch.compile
(default mode; its compile time is spent in the warm-up), and mixed precision with
torch.autocast to bf16 (`bf16` on NCHW, `channels_last_bf16`), the counterpart of
`strata bench --precision bf16`. For inference, `onnxruntime`: the same twin exported
to ONNX (eval mode, opset 17) and run by ONNX Runtime's CPU provider with the same
thread count (all graph optimizations on) — the fastest f32 inference peer (issue 19);
it needs `pip install onnxruntime onnx`.

Peak memory: the process's peak resident set (ru_maxrss), and the same figure minus
the resident set right after `import torch` (the "working set" of the measurement).

Run it in its own process per model so that the peak memory belongs to that model:

    /opt/torchenv/bin/python tools/bench_pytorch.py --model fmnist-cnn --threads 2
    /opt/torchenv/bin/python tools/bench_pytorch.py --model resnet20 --mode infer --json

Needs torch and torchvision (see tools/make_fixtures.py for the environment).
"""

import argparse
import json
import os
import resource
import statistics
import sys
import time


def rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def peak_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="fmnist-cnn", help="fmnist-cnn, resnet20, resnet56, vgg11-bn-cifar, ...")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--mode", choices=["train", "infer"], default="train")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument(
        "--variants",
        default="eager,channels_last,compile",
        help="comma-separated subset of eager, channels_last, compile, bf16, "
        "channels_last_bf16 (these two: torch.autocast to bf16), onnxruntime (--mode infer)",
    )
    ap.add_argument("--json", action="store_true", help="print one JSON object per variant")
    args = ap.parse_args()

    # Threads must be set before torch starts its pools.
    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch
    import torch.nn as nn

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import torch_models

    torch.set_num_threads(args.threads)
    rss_import = rss_bytes()

    def record(variant, framework, threads, times, warm_s):
        med = statistics.median(times)
        return {
            "framework": framework,
            "variant": variant,
            "model": args.model,
            "mode": args.mode,
            "batch": args.batch,
            "threads": threads,
            "iters": args.iters,
            "median_s": med,
            "min_s": min(times),
            "max_s": max(times),
            "images_per_s": args.batch / med,
            "warmup_s": warm_s,
            "rss_import": rss_import,
            "rss_peak": peak_bytes(),
        }

    def measure_ort():
        import tempfile

        import onnxruntime as ort

        if args.mode != "infer":
            raise ValueError("onnxruntime measures inference only (--mode infer)")
        torch.manual_seed(0)
        model, in_shape = torch_models.build(args.model)
        model.eval()
        x = torch.randn(args.batch, *in_shape)
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "model.onnx")
            torch.onnx.export(model, (x,), path, opset_version=17, dynamo=False,
                              input_names=["x"], output_names=["logits"])
            so = ort.SessionOptions()
            so.intra_op_num_threads = args.threads
            so.inter_op_num_threads = 1
            so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
        feed = {"x": x.numpy()}
        t_warm = time.perf_counter()
        for _ in range(args.warmup):
            sess.run(None, feed)
        warm_s = time.perf_counter() - t_warm
        times = []
        for _ in range(args.iters):
            t = time.perf_counter()
            sess.run(None, feed)
            times.append(time.perf_counter() - t)
        return record("onnxruntime", f"onnxruntime {ort.__version__}", args.threads, times, warm_s)

    def measure(variant):
        if variant == "onnxruntime":
            return measure_ort()
        torch.manual_seed(0)
        model, in_shape = torch_models.build(args.model)
        x = torch.randn(args.batch, *in_shape)
        y = torch.arange(args.batch) % 10
        if variant.startswith("channels_last"):
            model = model.to(memory_format=torch.channels_last)
            x = x.contiguous(memory_format=torch.channels_last)
        # Mixed precision as PyTorch offers it on CPUs: autocast to bf16 (convolutions
        # and matrix products in bf16, reductions and the loss in f32).
        amp = variant.endswith("bf16")
        cast = lambda: torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp)
        opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        loss_fn = nn.CrossEntropyLoss()
        if args.mode == "train":
            model.train()

            def step(m):
                opt.zero_grad(set_to_none=True)
                with cast():
                    loss = loss_fn(m(x), y)
                loss.backward()
                opt.step()

        else:
            model.eval()

            def step(m):
                with torch.inference_mode(), cast():
                    m(x)

        run = model
        if variant == "compile":
            run = torch.compile(model)
        t_warm = time.perf_counter()
        for _ in range(args.warmup):
            step(run)
        warm_s = time.perf_counter() - t_warm
        times = []
        for _ in range(args.iters):
            t = time.perf_counter()
            step(run)
            times.append(time.perf_counter() - t)
        return record(variant, f"pytorch {torch.__version__}", torch.get_num_threads(), times, warm_s)

    for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
        try:
            r = measure(variant)
        except Exception as e:  # a failing torch.compile should not hide the others
            print(f"{variant}: failed: {e}", file=sys.stderr)
            continue
        if args.json:
            print(json.dumps(r))
        else:
            print(
                f"{r['model']} {r['mode']} {variant:<14} batch {r['batch']}, {r['threads']} threads: "
                f"{r['images_per_s']:.1f} images/s ({1e3 * r['median_s']:.2f} ms/step, "
                f"min {1e3 * r['min_s']:.2f}, max {1e3 * r['max_s']:.2f}); "
                f"peak RSS {r['rss_peak'] / 1e6:.0f} MB "
                f"({(r['rss_peak'] - r['rss_import']) / 1e6:.0f} MB above the import)"
            )
            sys.stdout.flush()


if __name__ == "__main__":
    main()

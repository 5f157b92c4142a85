#!/usr/bin/env python3
"""One round of BENCHMARKS.md's per-CPU table: strata against PyTorch and ONNX Runtime,
the same models, batch and threads, in one session (issue 19).

For each (model, mode, batch) it runs, one after another:
  strata bench --precision f32 (static rules), --precision bf16 (timed per layer),
  --precision f32 --conv-tuning timed;
  tools/bench_pytorch.py with its f32 variants (eager, channels_last, and torch.compile
  where asked), its bf16 variants (bf16 and channels_last_bf16: torch.autocast), and
  ONNX Runtime for inference;
and prints one markdown row: images/s of each, PyTorch's best f32 and best bf16 named,
and the ratios strata f32 / PyTorch best f32, strata bf16 / PyTorch best bf16,
strata bf16 / strata f32 (and strata f32 / ONNX Runtime for inference).

    python tools/bench_table.py --threads 2 > /tmp/round.md
    python tools/bench_table.py --only fmnist-cnn:train:128

The CPU model (from /proc/cpuinfo), the date and the strata commit head the output.
Machines drift from minute to minute (this project's have moved 20% between rounds):
compare figures within one round only.
"""
import argparse
import datetime
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (model, mode, batch, warmup, iters, compile?)
CASES = [
    ("fmnist-cnn", "train", 128, 3, 10, True),
    ("fmnist-cnn", "infer", 128, 3, 10, True),
    ("resnet20", "train", 128, 3, 10, True),
    ("resnet20", "infer", 128, 3, 10, True),
    ("resnet18", "train", 16, 2, 5, False),
    ("resnet18", "infer", 16, 2, 5, False),
    ("resnet50", "train", 16, 1, 3, False),
    ("resnet50", "infer", 16, 2, 5, False),
    ("vgg16", "infer", 16, 1, 3, False),
]


def cpu_model():
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


def strata(model, mode, batch, warmup, iters, threads, *extra):
    exe = ROOT / "target" / "release" / "strata"
    cmd = [str(exe), "--threads", str(threads), "bench", "--model", model, "--mode", mode,
           "--batch", str(batch), "--warmup", str(warmup), "--iters", str(iters),
           "--profile-iters", "0", "--json", *extra]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out)["images_per_s"]


def pytorch(python, model, mode, batch, warmup, iters, threads, variants):
    cmd = [python, str(ROOT / "tools" / "bench_pytorch.py"), "--model", model, "--mode", mode,
           "--batch", str(batch), "--warmup", str(warmup), "--iters", str(iters),
           "--threads", str(threads), "--variants", ",".join(variants), "--json"]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    return {r["variant"]: r["images_per_s"] for r in rows}


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--python", default=sys.executable,
                    help="the Python with torch (and onnxruntime)")
    ap.add_argument("--only", action="append", default=[],
                    help="MODEL:MODE:BATCH, repeatable (default: every case)")
    args = ap.parse_args()
    cases = CASES
    if args.only:
        want = {tuple(o.split(":")) for o in args.only}
        cases = [c for c in CASES if (c[0], c[1], str(c[2])) in want]
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True).stdout.strip()
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"CPU: {cpu_model()} · {args.threads} threads · {now} · strata {head}\n")
    print("| model | mode | batch | strata f32 | strata bf16 | strata f32 timed "
          "| PyTorch best f32 | PyTorch best bf16 | ONNX Runtime "
          "| f32 ratio | bf16 ratio | bf16/f32 | f32/ORT |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for model, mode, batch, warmup, iters, comp in cases:
        t = (model, mode, batch, warmup, iters, args.threads)
        s32 = strata(*t, "--precision", "f32")
        s16 = strata(*t, "--precision", "bf16")
        s32t = strata(*t, "--precision", "f32", "--conv-tuning", "timed")
        variants = ["eager", "channels_last"] + (["compile"] if comp else [])
        variants += ["bf16", "channels_last_bf16"]
        if mode == "infer":
            variants.append("onnxruntime")
        pt = pytorch(args.python, model, mode, batch, warmup, iters, args.threads, variants)
        f32 = {k: v for k, v in pt.items() if k in ("eager", "channels_last", "compile")}
        b16 = {k: v for k, v in pt.items() if k in ("bf16", "channels_last_bf16")}
        bf = max(f32, key=f32.get)
        bb = max(b16, key=b16.get)
        ort = pt.get("onnxruntime")
        ort_s = f"{ort:,.1f}" if ort else "–"
        ort_r = f"{s32 / ort:.2f}×" if ort else "–"
        print(f"| {model} | {mode} | {batch} | {s32:,.1f} | {s16:,.1f} | {s32t:,.1f} "
              f"| {f32[bf]:,.1f} ({bf}) | {b16[bb]:,.1f} ({bb}) | {ort_s} "
              f"| {s32 / f32[bf]:.2f}× | {s16 / b16[bb]:.2f}× | {s16 / s32:.2f}× | {ort_r} |",
              flush=True)


if __name__ == "__main__":
    main()

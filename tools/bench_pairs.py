#!/usr/bin/env python3
"""Alternated pairs: the one ratio this project quotes on a machine that drifts (issue 19).

This project's machines change speed from minute to minute (20-40% between two runs of
the same binary, sometimes 2-3x in a slow phase), so one run of strata and one of a peer
a minute apart compare the machine's two states more than the two programs. This tool
runs them in turns, A B A B ..., each run a full `bench` process, and quotes the median
of the per-pair ratios A/B with its spread; a pair's two runs are seconds apart, so the
drift mostly cancels in each ratio.

Two kinds of B:
  a peer (`--peer VARIANT`): tools/bench_pytorch.py's variant — eager, channels_last,
    compile, bf16, channels_last_bf16, onnxruntime (inference) — with the same model,
    mode, batch, threads and iterations; A is `strata bench` (`--precision`);
  another strata binary (`--baseline PATH`): an A/B of two builds, e.g. the commit
    before a change built in a worktree:
        git worktree add /tmp/old HEAD~1
        (cd /tmp/old && CARGO_TARGET_DIR=/tmp/old-target cargo build --release)
        python tools/bench_pairs.py --model resnet20 --mode infer \\
            --baseline /tmp/old-target/release/strata
  or the same binary at another precision (`--baseline-precision`): bf16 against f32,
        python tools/bench_pairs.py --model resnet20 --precision bf16 \\
            --baseline target/release/strata --baseline-precision f32

    python tools/bench_pairs.py --model resnet20 --mode infer --peer onnxruntime
    python tools/bench_pairs.py --model resnet20 --peer compile --pairs 7 --json

Each line: the pair's images/s and ratio; then the median ratio, the lowest and the
highest, and the CPU model (compare only within one machine). Do not build or run
anything else meanwhile: it lands in one side of a pair, not both.
"""
import argparse
import datetime
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_table import cpu_model  # noqa: E402


def run_json(cmd):
    """The last JSON object a bench command prints; exits with its error otherwise."""
    try:
        r = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as e:
        raise SystemExit(f"cannot run {cmd[0]}: {e} (--python names the Python with torch)")
    rows = [line for line in r.stdout.splitlines() if line.lstrip().startswith("{")]
    if r.returncode != 0 or not r.stdout.strip():
        tail = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise SystemExit(f"{' '.join(cmd[:2])} ... failed (exit {r.returncode}): {tail}")
    return r.stdout, rows


def strata_run(exe, args, precision):
    cmd = [str(exe), "--threads", str(args.threads), "bench", "--model", args.model,
           "--mode", args.mode, "--batch", str(args.batch), "--warmup", str(args.warmup),
           "--iters", str(args.iters), "--profile-iters", "0", "--precision",
           precision, "--json"]
    out, _ = run_json(cmd)
    try:
        return json.loads(out)["images_per_s"]
    except (ValueError, KeyError) as e:
        raise SystemExit(f"strata bench printed no result: {e}")


def peer_run(args):
    cmd = [args.python, str(ROOT / "tools" / "bench_pytorch.py"), "--model", args.model,
           "--mode", args.mode, "--batch", str(args.batch), "--warmup", str(args.warmup),
           "--iters", str(args.iters), "--threads", str(args.threads), "--variants",
           args.peer, "--json"]
    _, lines = run_json(cmd)
    rows = [json.loads(line) for line in lines]
    if not rows:
        raise SystemExit(f"bench_pytorch.py printed no result for {args.peer}")
    return rows[-1]["images_per_s"]


def summary(ratios):
    """Median, lowest and highest of the per-pair ratios."""
    return statistics.median(ratios), min(ratios), max(ratios)


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--mode", choices=["train", "infer"], default="train")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--pairs", type=int, default=5, help="A/B pairs (default 5)")
    ap.add_argument("--precision", choices=["f32", "bf16"], default="f32",
                    help="strata's --precision (of A; of B too with --baseline)")
    ap.add_argument("--baseline-precision", choices=["f32", "bf16"],
                    help="B's --precision with --baseline (default: --precision): "
                         "`--baseline target/release/strata --precision bf16 "
                         "--baseline-precision f32` is bf16 against f32")
    ap.add_argument("--strata", default=str(ROOT / "target" / "release" / "strata"),
                    help="the strata binary A (default: this checkout's release build)")
    who = ap.add_mutually_exclusive_group(required=True)
    who.add_argument("--peer", help="bench_pytorch.py variant as B (compile, onnxruntime, ...)")
    who.add_argument("--baseline", help="another strata binary as B")
    ap.add_argument("--python", default=sys.executable,
                    help="the Python with torch (and onnxruntime) for --peer")
    ap.add_argument("--json", action="store_true", help="print the result as JSON")
    args = ap.parse_args()
    if args.pairs < 1:
        ap.error("--pairs must be at least 1")
    exe = Path(args.strata)
    if not exe.is_file():
        ap.error(f"{exe} does not exist: build it with `cargo build --release`")
    if args.baseline and not Path(args.baseline).is_file():
        ap.error(f"--baseline {args.baseline} does not exist")
    if args.baseline_precision and not args.baseline:
        ap.error("--baseline-precision needs --baseline")
    b_name = args.peer or f"baseline {args.baseline}"
    if args.baseline and args.baseline_precision:
        b_name += f" ({args.baseline_precision})"
    log = sys.stderr if args.json else sys.stdout
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    print(f"{args.model} {args.mode}, batch {args.batch}, {args.threads} threads, "
          f"{args.pairs} pairs · CPU: {cpu_model()} · {now}", file=log)
    pairs = []
    for i in range(args.pairs):
        a = strata_run(exe, args, args.precision)
        b = (strata_run(Path(args.baseline), args, args.baseline_precision or args.precision)
             if args.baseline else peer_run(args))
        pairs.append((a, b))
        print(f"pair {i + 1}: strata {a:,.1f}  {b_name} {b:,.1f} images/s  "
              f"ratio {a / b:.3f}", file=log, flush=True)
    med, lo, hi = summary([a / b for a, b in pairs])
    print(f"median ratio {med:.3f} (lowest {lo:.3f}, highest {hi:.3f})", file=log)
    if args.json:
        print(json.dumps({
            "model": args.model, "mode": args.mode, "batch": args.batch,
            "threads": args.threads, "precision": args.precision, "b": b_name,
            "cpu": cpu_model(), "date": now,
            "pairs": [{"strata": a, "b": b, "ratio": a / b} for a, b in pairs],
            "median_ratio": med, "lowest": lo, "highest": hi,
        }))


if __name__ == "__main__":
    main()

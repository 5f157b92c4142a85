#!/usr/bin/env python3
"""Runs strata search trials as Ray tasks: the shim between `strata tune --ray` and a Ray
cluster (Ray's API is Python's).

Protocol (one JSON object per line):
  strata -> shim, stdin:  {"id": 3, "rung": 0, "dir": "/search/trials/0003",
                           "args": ["train", "--config", "/search/trials/0003/trial.toml", ...]}
  shim -> strata, stdout: "ready" once connected, then per finished trial
                          {"id": 3, "rung": 0} or {"id": 3, "rung": 0, "error": "..."}

Each task receives the trial folder's files (the resolved trial.toml, and the checkpoint
when the trial resumes), runs the strata binary on its node in a temporary folder, and
returns every file of it; the shim writes them back into the trial folder of the search.
Usage: ray_trials.py --address ADDRESS --binary /path/to/strata --threads N
"""

import argparse
import json
import os
import select
import subprocess
import sys
import tempfile

import ray

PLACEHOLDER = "\x00TRIAL_DIR\x00"


def read_folder(path):
    files = {}
    if os.path.isdir(path):
        for name in os.listdir(path):
            full = os.path.join(path, name)
            if os.path.isfile(full) and not name.endswith(".tmp"):
                with open(full, "rb") as f:
                    files[name] = f.read()
    return files


@ray.remote
def run_trial(binary, threads, files, args):
    with tempfile.TemporaryDirectory(prefix="strata-trial-") as tmp:
        for name, data in files.items():
            with open(os.path.join(tmp, name), "wb") as f:
                f.write(data)
        argv = [binary, "--threads", str(threads)] + [a.replace(PLACEHOLDER, tmp) for a in args]
        proc = subprocess.run(argv, capture_output=True, text=True)
        out = read_folder(tmp)
        out.pop(".lock", None)
        error = None
        if proc.returncode != 0:
            lines = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
            error = lines[-1][len("error:"):].strip() if lines else f"exited with code {proc.returncode}"
        out["train.log"] = proc.stderr.encode()
        return {"files": out, "error": error, "node": ray.util.get_node_ip_address()}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--address", required=True)
    p.add_argument("--binary", required=True)
    p.add_argument("--threads", type=int, default=1)
    a = p.parse_args()
    try:
        ray.init(address=a.address, logging_level="ERROR", log_to_driver=False)
    except Exception as e:  # Ray raises many kinds; say which and stop.
        print(f"{type(e).__name__}: {e}".replace("\n", " "), flush=True)
        return 1
    print("ready", flush=True)
    task = run_trial.options(num_cpus=a.threads)
    pending = {}  # ref -> job
    stdin_open = True
    while stdin_open or pending:
        if stdin_open:
            ready, _, _ = select.select([sys.stdin], [], [], 0.05)
            if ready:
                line = sys.stdin.readline()
                if not line:
                    stdin_open = False
                elif line.strip():
                    job = json.loads(line)
                    args = [s.replace(job["dir"], PLACEHOLDER) for s in job["args"]]
                    ref = task.remote(a.binary, a.threads, read_folder(job["dir"]), args)
                    pending[ref] = job
        if pending:
            done, _ = ray.wait(list(pending), num_returns=1, timeout=0.05)
            for ref in done:
                job = pending.pop(ref)
                reply = {"id": job["id"], "rung": job["rung"]}
                try:
                    result = ray.get(ref)
                    os.makedirs(job["dir"], exist_ok=True)
                    for name, data in result["files"].items():
                        with open(os.path.join(job["dir"], name), "wb") as f:
                            f.write(data)
                    if result["error"]:
                        reply["error"] = result["error"]
                except Exception as e:  # a task that died (node lost, out of memory)
                    reply["error"] = f"the Ray task failed: {type(e).__name__}: {e}".replace("\n", " ")
                print(json.dumps(reply), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""`strata train`'s default recipe in PyTorch, for a side-by-side time to accuracy.

The same model (fmnist-cnn from tools/torch_models.py, or any twin there), the same data
(Fashion-MNIST IDX files, 10% stratified validation split, per-channel mean/std of the
training split), the same augmentation (horizontal flip, pad-2 zero-padded random crop),
the same optimizer (SGD, Nesterov momentum 0.9, weight decay 5e-4 on every parameter),
the same one-cycle schedule (OneCycleLR: peak 0.1, pct_start 0.3, div 25, final_div 1e4,
cosine, stepped per batch), batch 128, the same number of epochs. Prints one line per
epoch (train loss/accuracy, validation accuracy, wall time) and the test accuracy at the
end; wall time counts everything after the data is in memory, as `strata train` does.

    /opt/torchenv/bin/python tools/train_pytorch.py --epochs 15 --threads 2
    /opt/torchenv/bin/python tools/train_pytorch.py --channels-last --epochs 10

Data: --data DIR with the four IDX files (gz or not); default: the Debian package
`dataset-fashion-mnist` at /usr/share/datasets/fashion-mnist.
"""

import argparse
import gzip
import os
import sys
import time

import numpy as np


def read_idx(path):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def find(root, stem):
    for name in (stem, stem + ".gz"):
        p = os.path.join(root, name)
        if os.path.exists(p):
            return p
    sys.exit(f"no {stem}[.gz] in {root}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--model", default="fmnist-cnn")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--compile", action="store_true", help="torch.compile the model (compile time counts)")
    ap.add_argument("--limit", type=int, default=0, help="use only the first N training images (smoke test)")
    args = ap.parse_args()

    os.environ.setdefault("OMP_NUM_THREADS", str(args.threads))
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import torch_models

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    xtr = read_idx(find(args.data, "train-images-idx3-ubyte"))
    ytr = read_idx(find(args.data, "train-labels-idx1-ubyte")).astype(np.int64)
    if args.limit:
        xtr, ytr = xtr[: args.limit], ytr[: args.limit]
    xte = read_idx(find(args.data, "t10k-images-idx3-ubyte"))
    yte = read_idx(find(args.data, "t10k-labels-idx1-ubyte")).astype(np.int64)
    # Stratified 10% validation split.
    val_idx = []
    for c in range(10):
        idx = np.flatnonzero(ytr == c)
        rng.shuffle(idx)
        val_idx.extend(idx[: len(idx) // 10])
    mask = np.zeros(len(ytr), bool)
    mask[val_idx] = True
    xval, yval, xtr, ytr = xtr[mask], ytr[mask], xtr[~mask], ytr[~mask]
    mean = float(xtr.mean() / 255.0)
    std = float((xtr / 255.0).std())

    def tensor(x):
        return ((torch.from_numpy(x.astype(np.float32)) / 255.0 - mean) / std).unsqueeze(1)

    xtr_t, xval_t, xte_t = tensor(xtr), tensor(xval), tensor(xte)
    ytr_t, yval_t, yte_t = torch.from_numpy(ytr), torch.from_numpy(yval), torch.from_numpy(yte)

    model, _ = torch_models.build(args.model)
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt)
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    steps = args.epochs * ((len(ytr) + args.batch_size - 1) // args.batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=args.lr, total_steps=steps, pct_start=0.3, div_factor=25.0, final_div_factor=1e4
    )
    run = torch.compile(model) if args.compile else model
    # Normalized value of a zero (black) pixel: the crop's padding.
    pad_value = (0.0 - mean) / std

    def augment(x):
        flip = torch.rand(x.shape[0]) < 0.5
        x = torch.where(flip[:, None, None, None], x.flip(3), x)
        padded = F.pad(x, (2, 2, 2, 2), value=pad_value)
        dy = torch.randint(0, 5, (x.shape[0],))
        dx = torch.randint(0, 5, (x.shape[0],))
        rows = (dy[:, None] + torch.arange(28)[None, :])[:, None, :, None]
        cols = (dx[:, None] + torch.arange(28)[None, :])[:, None, None, :]
        n = torch.arange(x.shape[0])[:, None, None, None]
        return padded[n, torch.zeros_like(n), rows, cols]

    def accuracy(x, y):
        model.eval()
        correct = 0
        with torch.inference_mode():
            for i in range(0, len(y), 1000):
                xb = x[i : i + 1000].contiguous(memory_format=fmt)
                correct += (run(xb).argmax(1) == y[i : i + 1000]).sum().item()
        return correct / len(y)

    t0 = time.perf_counter()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(ytr_t))
        loss_sum, correct, seen = 0.0, 0, 0
        for i in range(0, len(perm), args.batch_size):
            idx = perm[i : i + args.batch_size]
            xb = augment(xtr_t[idx]).contiguous(memory_format=fmt)
            yb = ytr_t[idx]
            opt.zero_grad(set_to_none=True)
            out = run(xb)
            loss = F.cross_entropy(out, yb)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.item() * len(idx)
            correct += (out.argmax(1) == yb).sum().item()
            seen += len(idx)
        val = accuracy(xval_t, yval_t)
        el = time.perf_counter() - t0
        print(
            f"epoch {epoch + 1}/{args.epochs}: train loss {loss_sum / seen:.4f} acc {100 * correct / seen:.2f}%, "
            f"val acc {100 * val:.2f}%, {el:.0f}s",
            flush=True,
        )
    test = accuracy(xte_t, yte_t)
    print(f"test accuracy {100 * test:.2f}% after {args.epochs} epochs, {time.perf_counter() - t0:.0f}s "
          f"(pytorch {torch.__version__}, {torch.get_num_threads()} threads)")


if __name__ == "__main__":
    main()

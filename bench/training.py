"""Training speed: one epoch of the same model, data, batch and optimizer in
shenjing and in PyTorch, each library in its own process, alternating, the
median epoch over all rounds (BENCHMARKING.md).

    python bench/training.py [--rounds 3] [--epochs 3]

Before timing, shenjing's first-batch loss is checked against the float64
NumPy reference of the same network with the same weights.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

CASES = ["mlp_digits", "cnn_digits", "mlp_784_60k"]
TARGETS = {"mlp_digits": 2.0, "cnn_digits": 1.5, "mlp_784_60k": 1.0}
TITLES = {"mlp_digits": "MLP 64-128-10, digits, batch 64, Adam",
          "cnn_digits": "CNN 1-16-32 3x3, digits, batch 64, Adam",
          "mlp_784_60k": "MLP 784-256-10, 60k random, batch 128, SGD+momentum"}


def data(case):
    if case == "mlp_784_60k":
        rng = np.random.default_rng(0)
        return rng.standard_normal((60000, 784)).astype(np.float32), rng.integers(0, 10, 60000), 128
    import shenjing
    X, y = shenjing.datasets.load_digits()
    if case == "cnn_digits":
        X = X.reshape(-1, 1, 8, 8)
    return X, y, 64


def shenjing_setup(case):
    import shenjing
    from shenjing import nn, optim
    shenjing.manual_seed(0)
    if case == "mlp_digits":
        net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
        opt = optim.Adam(net.parameters(), lr=1e-3)
    elif case == "cnn_digits":
        net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Flatten(), nn.Linear(128, 10))
        opt = optim.Adam(net.parameters(), lr=1e-3)
    else:
        net = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
        opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def step(xb, yb):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(shenjing.Tensor(xb)), yb)
        loss.backward()
        opt.step()
        return loss.data

    return net, step


def reference_loss(case, net, xb, yb):
    """The first batch's loss in float64 NumPy, with the network's weights."""
    import shenjing._reference as R
    w = [p.data.astype(np.float64) for p in net.parameters()]
    x = xb.astype(np.float64)
    if case == "cnn_digits":
        h = R.max_pool2d(R.relu(R.conv2d(x, w[0], w[1], padding=1)), 2)
        h = R.max_pool2d(R.relu(R.conv2d(h, w[2], w[3], padding=1)), 2)
        logits = h.reshape(len(x), -1) @ w[4].T + w[5]
    else:
        logits = R.relu(x @ w[0].T + w[1]) @ w[2].T + w[3]
    return float(R.cross_entropy(logits, yb))


def torch_setup(case):
    import torch
    torch.manual_seed(0)
    nn = torch.nn
    if case == "mlp_digits":
        net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    elif case == "cnn_digits":
        net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                            nn.Flatten(), nn.Linear(128, 10))
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    else:
        net = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
        opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)

    def step(xb, yb):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(net(torch.from_numpy(xb)), torch.from_numpy(yb))
        loss.backward()
        opt.step()
        return loss.detach().numpy()

    return net, step


def worker(lib, epochs):
    results = {}
    for case in CASES:
        X, y, batch = data(case)
        net, step = (shenjing_setup if lib == "shenjing" else torch_setup)(case)
        if lib == "shenjing":
            expected = reference_loss(case, net, X[:batch], y[:batch])
            got = float(step(X[:batch], y[:batch]))
            if abs(got - expected) > 1e-4 * max(1.0, abs(expected)):
                results[case] = {"error": f"first-batch loss {got} vs reference {expected}"}
                continue
        order_rng = np.random.default_rng(1)
        times, losses = [], []
        for _ in range(epochs + 1):  # the first epoch warms up
            order = order_rng.permutation(len(X))
            start = time.perf_counter()
            total = 0.0
            for i in range(0, len(X), batch):
                idx = order[i:i + batch]
                total += float(step(X[idx], y[idx]))
            times.append(time.perf_counter() - start)
            losses.append(total)
        results[case] = {"times": times[1:], "losses": losses}
    print(json.dumps(results))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--worker", choices=["shenjing", "torch"])
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.epochs)
        return
    times = {c: {"shenjing": [], "torch": []} for c in CASES}
    errors = []
    for _ in range(args.rounds):
        for lib in ("shenjing", "torch"):
            env = dict(os.environ, OPENBLAS_NUM_THREADS="1")
            out = subprocess.run([sys.executable, os.path.abspath(__file__), "--worker", lib, "--epochs",
                                  str(args.epochs)], capture_output=True, text=True, env=env)
            if out.returncode != 0:
                if lib == "torch" and "No module named 'torch'" in out.stderr:
                    continue
                raise SystemExit(out.stderr)
            for case, r in json.loads(out.stdout.strip().splitlines()[-1]).items():
                if "error" in r:
                    errors.append(f"{case}: {r['error']}")
                    continue
                if r["losses"][-1] >= r["losses"][0]:
                    errors.append(f"{case}: {lib} did not learn ({r['losses']})")
                times[case][lib].extend(r["times"])
    print(f"one epoch, median of {args.rounds} rounds x {args.epochs} epochs, one process per library")
    print(f"{'case':55} {'shenjing':>10} {'torch':>10} {'x torch':>8}  target")
    for case in CASES:
        ours = statistics.median(times[case]["shenjing"]) if times[case]["shenjing"] else None
        theirs = statistics.median(times[case]["torch"]) if times[case]["torch"] else None
        ratio = theirs / ours if ours and theirs else None
        verdict = "" if ratio is None else ("ok" if ratio >= TARGETS[case] else "MISS")
        print(f"{TITLES[case]:55} {ours * 1e3 if ours else float('nan'):8.1f}ms "
              f"{theirs * 1e3 if theirs else float('nan'):8.1f}ms {ratio or float('nan'):7.2f}x  "
              f">={TARGETS[case]}x {verdict}")
    for e in errors:
        print("CHECK FAILED:", e)
    if errors:
        raise SystemExit(1)


if __name__ == "__main__":
    main()

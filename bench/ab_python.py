"""A/B of two trees of the Python package in one process, epoch by epoch.

    git archive REV python/shenjing | tar -x -C /tmp/old          # the old tree
    cp "$(python -c 'import shenjing._core as c; print(c.__file__)')" /tmp/old/python/shenjing/
    python bench/ab_python.py /tmp/old/python/shenjing mlp_digits [PAIRS]

bench/ab.py compares two builds of the C++ core under one Python package; this
compares two versions of the Python code (autograd, layers, optimizers, ops'
wrappers) over whatever core each tree holds (give the old tree the installed
core to see the Python change alone). The old tree is loaded as a package of
its own, ``shenjing_ab_old``, beside the installed ``shenjing``, and the two
train the same model on the same batches in turn (ABBA order); the answer is
the median of the per-pair time ratios NEW/OLD, so the machine's drift hits
both halves of a pair alike. Both must reach the same first-epoch loss.

CASE: mlp_digits | cnn_digits | mlp_784_60k (bench/training.py's models; the
last on its first 12,000 samples).
"""

from __future__ import annotations

import os
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np


def load_old(tree: str):
    """The package at `tree` (a directory named like python/shenjing) as shenjing_ab_old."""
    root = tempfile.mkdtemp(prefix="shenjing_ab_python_")
    shutil.copytree(tree, os.path.join(root, "shenjing_ab_old"))
    sys.path.insert(0, root)
    import shenjing_ab_old  # noqa: E402  (its imports are relative, so it is whole on its own)
    return shenjing_ab_old


def setup(sj, case):
    """One epoch of the case's model, data and optimizer, built from package `sj`."""
    import shenjing
    nn, optim = sj.nn, sj.optim
    sj.manual_seed(0)
    if case == "mlp_784_60k":
        rng = np.random.default_rng(0)
        X, y, batch = rng.standard_normal((12000, 784)).astype(np.float32), rng.integers(0, 10, 12000), 128
        net = nn.Sequential(nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
        opt = optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    else:
        X, y = shenjing.datasets.load_digits()
        batch = 64
        if case == "cnn_digits":
            X = X.reshape(-1, 1, 8, 8)
            net = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                nn.Flatten(), nn.Linear(128, 10))
        elif case == "mlp_digits":
            net = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))
        else:
            raise SystemExit(f"unknown case {case!r}: mlp_digits, cnn_digits or mlp_784_60k")
        opt = optim.Adam(net.parameters(), lr=1e-3)
    order = np.random.default_rng(1).permutation(len(X))

    def epoch():
        total = 0.0
        for i in range(0, len(X), batch):
            idx = order[i:i + batch]
            opt.zero_grad()
            loss = nn.functional.cross_entropy(net(sj.Tensor(X[idx])), y[idx])
            loss.backward()
            opt.step()
            total += float(loss.data)
        return total

    return epoch


def main():
    if len(sys.argv) < 3:
        raise SystemExit(__doc__)
    tree, case = sys.argv[1], sys.argv[2]
    pairs = int(sys.argv[3]) if len(sys.argv) > 3 else 20
    import shenjing
    old, new = setup(load_old(tree), case), setup(shenjing, case)
    old_loss, new_loss = old(), new()
    if abs(old_loss - new_loss) > 1e-4 * abs(old_loss):
        raise SystemExit(f"the trees disagree: first-epoch loss {old_loss} (old) against {new_loss} (new)")
    for _ in range(2):
        old(), new()
    ratios, old_times, new_times = [], [], []
    for _ in range(pairs):
        pair = {}
        for name, run in (("old", old), ("new", new), ("new", new), ("old", old)):
            start = time.perf_counter()
            run()
            pair.setdefault(name, []).append(time.perf_counter() - start)
        old_times += pair["old"]
        new_times += pair["new"]
        ratios.append(sum(pair["new"]) / sum(pair["old"]))
    print(f"{case} epoch: old median {statistics.median(old_times) * 1e3:.2f} ms, new median "
          f"{statistics.median(new_times) * 1e3:.2f} ms; new/old {statistics.median(ratios):.3f} "
          f"(median of {pairs} pairs)")


if __name__ == "__main__":
    main()

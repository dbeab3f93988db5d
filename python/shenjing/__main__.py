"""``python -m shenjing``: the backend, then a small CNN trained on the digits."""

from __future__ import annotations

import time

import numpy as np

import shenjing
from shenjing import nn


def main() -> None:
    info = shenjing.backend_info()
    print(f"shenjing {info['version']} on {info['isa']}, {info['threads']} threads "
          f"(supported: {', '.join(info['supported_isas'])}; OpenMP {'on' if info['openmp'] else 'off'})\n")

    shenjing.manual_seed(0)
    X, y = shenjing.datasets.load_digits()
    X = X.reshape(-1, 1, 8, 8)
    order = np.random.default_rng(0).permutation(len(X))
    test, train = order[:360], order[360:]

    net = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 2 * 2, 10),
    )
    model = shenjing.Model(net)
    model.compile(loss="cross_entropy", optimizer="adam", metrics=["accuracy"], lr=3e-3)
    model.summary(input_shape=(1, 8, 8))
    print()
    epochs = 15
    start = time.perf_counter()
    model.fit(X[train], y[train], epochs=epochs, batch_size=64, validation_split=0.1)
    seconds = (time.perf_counter() - start) / epochs
    result = model.evaluate(X[test], y[test])
    print(f"\ntest accuracy {result['accuracy']:.4f} on {len(test)} held-out digits, "
          f"{seconds:.3f} s per epoch")


if __name__ == "__main__":
    main()

"""Image classification: a small CNN on the 8x8 digits.

    python examples/digits_cnn.py [--epochs N]
"""

import argparse

import numpy as np

import shenjing
from shenjing import nn


def main(epochs: int = 20, verbose: int = 1) -> float:
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
    model.fit(X[train], y[train], epochs=epochs, batch_size=64, verbose=verbose)
    accuracy = model.evaluate(X[test], y[test])["accuracy"]
    print(f"CNN test accuracy: {accuracy:.4f}")
    return accuracy


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=20)
    main(parser.parse_args().epochs)

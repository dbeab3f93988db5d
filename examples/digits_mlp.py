"""Image classification: an MLP on the 8x8 digits (shipped with shenjing).

    python examples/digits_mlp.py [--epochs N]
"""

import argparse

import numpy as np

import shenjing
from shenjing import nn


def main(epochs: int = 30, verbose: int = 1) -> float:
    shenjing.manual_seed(0)
    X, y = shenjing.datasets.load_digits()
    order = np.random.default_rng(0).permutation(len(X))
    test, train = order[:360], order[360:]
    model = shenjing.Model(nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10)))
    model.compile(loss="cross_entropy", optimizer="adam", metrics=["accuracy"], lr=1e-3)
    model.fit(X[train], y[train], epochs=epochs, batch_size=64, verbose=verbose)
    accuracy = model.evaluate(X[test], y[test])["accuracy"]
    print(f"MLP test accuracy: {accuracy:.4f}")
    return accuracy


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--epochs", type=int, default=30)
    main(parser.parse_args().epochs)

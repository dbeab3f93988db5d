"""Binary classification: two interleaved half moons, an MLP with one logit,
sigmoid + BCE (BCEWithLogitsLoss, stable for any logit).

    python examples/binary_classification.py
"""

import numpy as np

import shenjing
from shenjing import nn


def moons(n: int, rng) -> tuple:
    t = rng.uniform(0, np.pi, n)
    upper = rng.random(n) < 0.5
    x = np.where(upper, np.cos(t), 1 - np.cos(t))
    y = np.where(upper, np.sin(t), 0.5 - np.sin(t))
    points = np.stack([x, y], axis=1) + 0.1 * rng.standard_normal((n, 2))
    return points.astype(np.float32), upper.astype(np.float32)


def main(epochs: int = 60, verbose: int = 0) -> float:
    shenjing.manual_seed(0)
    rng = np.random.default_rng(0)
    x, y = moons(1000, rng)
    x_test, y_test = moons(400, rng)
    model = shenjing.Model(nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 32), nn.Tanh(), nn.Linear(32, 1)))
    model.compile(loss="bce_with_logits", optimizer="adam", metrics=["accuracy"], lr=1e-2)
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=verbose)
    accuracy = model.evaluate(x_test, y_test)["accuracy"]
    print(f"half-moons test accuracy: {accuracy:.4f}")
    return accuracy


if __name__ == "__main__":
    main(verbose=1)

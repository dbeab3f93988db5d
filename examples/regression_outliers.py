"""Regression with outliers: the same linear model fitted with MSE and with L1.

y = 3 x - 2 + noise, with 10% of the targets thrown far off. MSE is pulled
towards the outliers; L1 (the median's loss) mostly ignores them.

    python examples/regression_outliers.py
"""

import numpy as np

import shenjing
from shenjing import nn


def fit(loss: str, x, y, epochs: int) -> tuple:
    shenjing.manual_seed(0)
    model = shenjing.Model(nn.Linear(1, 1))
    model.compile(loss=loss, optimizer="adam", metrics=[], lr=0.05)
    model.fit(x, y, epochs=epochs, batch_size=32, verbose=0)
    layer = model.module
    return float(layer.weight.data[0, 0]), float(layer.bias.data[0])


def main(epochs: int = 60) -> dict:
    rng = np.random.default_rng(1)
    x = rng.uniform(-2, 2, (400, 1)).astype(np.float32)
    y = (3 * x[:, 0] - 2 + 0.1 * rng.standard_normal(400)).astype(np.float32)
    outliers = rng.choice(400, 40, replace=False)
    y[outliers] += 25.0
    results = {loss: fit(loss, x, y, epochs) for loss in ("mse", "l1")}
    for loss, (w, b) in results.items():
        print(f"{loss:>3}: y = {w:.3f} x + {b:.3f}   (true: y = 3 x - 2)")
    return results


if __name__ == "__main__":
    main()

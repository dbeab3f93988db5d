"""Small datasets shipped inside the package, so nothing is downloaded."""

from __future__ import annotations

import os

import numpy as np

__all__ = ["load_digits"]

_HERE = os.path.dirname(os.path.abspath(__file__))


def load_digits():
    """The 1,797 8x8 handwritten digits (the test set of the UCI optical
    recognition of handwritten digits data, E. Alpaydin and C. Kaynak, 1998),
    in their original order. Returns (X, y): X float32 (1797, 64) with pixels
    scaled to [0, 1] (count / 16), y int64 labels 0-9."""
    with np.load(os.path.join(_HERE, "digits.npz"), allow_pickle=False) as f:
        images, labels = f["images"], f["labels"]
    return (images.astype(np.float32) / 16.0), labels.astype(np.int64)

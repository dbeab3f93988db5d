"""The random generator behind initialisation, dropout and shuffling.

``manual_seed(n)`` makes every run that follows bit-identical: the same
initial weights, dropout masks and batch orders.
"""

from __future__ import annotations

import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed: int) -> np.random.Generator:
    """Reseed shenjing's generator; returns it."""
    global _generator
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"manual_seed: seed must be an int, got {type(seed).__name__}")
    seed = int(seed)
    if not -(1 << 63) <= seed < (1 << 64):
        raise ValueError(f"manual_seed: seed must be in [-2**63, 2**64), got {seed}")
    if seed < 0:  # PyTorch's mapping of a negative seed (NumPy refuses them)
        seed += (1 << 64) - 1
    _generator = np.random.default_rng(seed)
    return _generator


def default_generator() -> np.random.Generator:
    return _generator

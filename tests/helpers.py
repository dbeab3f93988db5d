"""Checks shared by the op tests: compare with shenjing._reference in
float64, check gradients by finite differences, check error messages."""

from __future__ import annotations

import os
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# The property and fuzz tests' budget: small in the suite; SHENJING_FUZZ_EXAMPLES=20000 is the
# long run by hand (README, "For developers").
FUZZ_SETTINGS = settings(max_examples=int(os.environ.get("SHENJING_FUZZ_EXAMPLES", "60")), deadline=None,
                         suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

# sizes that do not fit vector widths or chunks, empty and 1 included, 2-D and 4-D
SHAPES = [(0,), (1,), (7,), (33,), (1001,), (5, 33), (2, 3, 4, 5), (3, 17000)]

# float32 result vs the float64 oracle
TOL = {np.float32: dict(rtol=2e-5, atol=2e-6), np.float64: dict(rtol=1e-12, atol=1e-13)}


def assert_close(got, expected, dtype, *, tol=None, what=""):
    """``got`` has ``dtype`` and the shape of ``expected`` and matches it to the
    dtype's rounding; NaN must sit where the reference has NaN."""
    got = np.asarray(got)
    expected = np.asarray(expected)
    assert got.dtype == np.dtype(dtype), f"{what}: dtype {got.dtype}, expected {np.dtype(dtype)}"
    assert got.shape == expected.shape, f"{what}: shape {got.shape}, expected {expected.shape}"
    np.testing.assert_allclose(got.astype(np.float64), expected.astype(np.float64), err_msg=what,
                               equal_nan=True, **(tol or TOL[dtype]))


def finite_difference(f, inputs, index, weights, eps=1e-6):
    """d/dx_index of sum(weights * f(*inputs)) by central differences, float64."""
    x = inputs[index]
    grad = np.zeros_like(x)
    flat = x.reshape(-1)
    gflat = grad.reshape(-1)
    for i in range(flat.size):
        old = flat[i]
        flat[i] = old + eps
        plus = np.sum(weights * f(*inputs))
        flat[i] = old - eps
        minus = np.sum(weights * f(*inputs))
        flat[i] = old
        gflat[i] = (plus - minus) / (2 * eps)
    return grad


def raises(exc, *fragments):
    """pytest.raises whose message must contain every fragment (op, argument, shapes)."""
    pattern = "".join(f"(?=.*{re.escape(f)})" for f in fragments)
    return pytest.raises(exc, match=re.compile(pattern, re.S))


def at_odd_byte(a: np.ndarray) -> np.ndarray:
    """A writable copy of ``a`` whose data starts one byte past an element boundary
    (flags.aligned is False), as np.frombuffer(buffer, offset=1) gives."""
    raw = np.zeros(a.nbytes + 1, np.uint8)
    view = np.frombuffer(raw.data, dtype=a.dtype, count=a.size, offset=1).reshape(a.shape)
    np.copyto(view, a)
    assert not view.flags.aligned or a.size == 0 or a.itemsize == 1  # (NumPy calls an empty array aligned)
    return view

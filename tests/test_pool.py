"""Pooling: max (indices, padding, dilation, ceil_mode), average
(count_include_pad, divisor_override) and adaptive average, with backward,
against the float64 reference and PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

import shenjing._reference as R
from shenjing import ops

from helpers import assert_close, finite_difference, raises

try:
    import torch
    import torch.nn.functional as F
except ImportError:  # PyTorch is an optional test dependency
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")

SHAPES = [(2, 3, 9, 11), (1, 1, 1, 1), (4, 2, 8, 8), (3, 7, 6), (2, 2, 5, 71)]  # 71: rows of several vectors
MAX = [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
       dict(kernel_size=(3, 2), stride=(2, 3), dilation=(2, 1)), dict(kernel_size=1), dict(kernel_size=3, stride=1)]
AVG = [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
       dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False),
       dict(kernel_size=(3, 2), stride=(2, 3), divisor_override=5), dict(kernel_size=3, stride=1, padding=1)]
ADAPTIVE = [(1, 1), (4, 5), (3, None), (7, 7)]


def _fits(shape, kw):
    k = kw["kernel_size"]
    kh, kwid = (k, k) if isinstance(k, int) else k
    d = kw.get("dilation", 1)
    dh, dw = (d, d) if isinstance(d, int) else d
    p = kw.get("padding", 0)
    return shape[-2] + 2 * p >= dh * (kh - 1) + 1 and shape[-1] + 2 * p >= dw * (kwid - 1) + 1


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", MAX, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_max_pool2d_matches_reference(backend, rng, shape, kw, dtype):
    if not _fits(shape, kw):
        with raises(ValueError, "max_pool2d"):
            ops.max_pool2d(np.zeros(shape, dtype), **kw)
        return
    x = rng.standard_normal(shape).astype(dtype)
    y, idx = ops.max_pool2d(x, return_indices=True, **kw)
    y_ref, idx_ref = R.max_pool2d(x.astype(np.float64), return_indices=True, **kw)
    assert_close(y, y_ref, dtype, what="max_pool2d")
    np.testing.assert_array_equal(idx, idx_ref)
    g = rng.standard_normal(y.shape).astype(dtype)
    assert_close(ops.max_pool2d_backward(g, x, idx, **kw), R.max_pool2d_backward(g.astype(np.float64), x, idx_ref, **kw),
                 dtype, what="max_pool2d backward")


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", AVG, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_avg_pool2d_matches_reference(backend, rng, shape, kw, dtype):
    if not _fits(shape, kw):
        return
    x = rng.standard_normal(shape).astype(dtype)
    y = ops.avg_pool2d(x, **kw)
    assert_close(y, R.avg_pool2d(x.astype(np.float64), **kw), dtype, what="avg_pool2d")
    g = rng.standard_normal(y.shape).astype(dtype)
    assert_close(ops.avg_pool2d_backward(g, x, **kw), R.avg_pool2d_backward(g.astype(np.float64), x.astype(np.float64), **kw),
                 dtype, what="avg_pool2d backward")


@pytest.mark.parametrize("output_size", ADAPTIVE, ids=str)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_adaptive_avg_pool2d_matches_reference(backend, rng, shape, output_size):
    x = rng.standard_normal(shape)
    y = ops.adaptive_avg_pool2d(x, output_size)
    assert_close(y, R.adaptive_avg_pool2d(x, output_size), np.float64, what="adaptive_avg_pool2d")
    g = rng.standard_normal(y.shape)
    assert_close(ops.adaptive_avg_pool2d_backward(g, x), R.adaptive_avg_pool2d_backward(g, x), np.float64,
                 what="adaptive_avg_pool2d backward")


@pytest.mark.parametrize("kind", ["avg", "adaptive", "max"])
def test_pool_gradients_by_finite_differences(rng, kind):
    x = rng.standard_normal((2, 2, 7, 6))
    if kind == "avg":
        kw = dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False)
        f, back = lambda v: ops.avg_pool2d(v, **kw), lambda g: ops.avg_pool2d_backward(g, x, **kw)
    elif kind == "adaptive":
        f, back = lambda v: ops.adaptive_avg_pool2d(v, (3, 4)), lambda g: ops.adaptive_avg_pool2d_backward(g, x)
    else:
        kw = dict(kernel_size=2, stride=2)
        _, idx = ops.max_pool2d(x, return_indices=True, **kw)
        f, back = lambda v: ops.max_pool2d(v, **kw), lambda g: ops.max_pool2d_backward(g, x, idx, **kw)
    w = rng.standard_normal(f(x).shape)
    np.testing.assert_allclose(back(w), finite_difference(f, [x], 0, w), rtol=1e-6, atol=1e-8)


def test_max_pool2d_nan_wins_and_padding_never_does():
    x = np.array([[[[1.0, np.nan], [3.0, 2.0]]]], np.float32)
    assert np.isnan(ops.max_pool2d(x, 2)).all()
    neg = -np.ones((1, 1, 2, 2), np.float32)
    np.testing.assert_array_equal(ops.max_pool2d(neg, 3, stride=1, padding=1), -1)


def test_pool_bad_input():
    x = np.zeros((1, 2, 4, 4), np.float32)
    with raises(ValueError, "max_pool2d", "padding", "half"):
        ops.max_pool2d(x, 2, padding=2)
    with raises(ValueError, "max_pool2d", "stride", ">= 1"):
        ops.max_pool2d(x, 2, stride=0)
    with raises(ValueError, "avg_pool2d", "too small", "5x5"):
        ops.avg_pool2d(x, 5)
    with raises(ValueError, "adaptive_avg_pool2d", "output_size"):
        ops.adaptive_avg_pool2d(x, 0)
    with raises(ValueError, "max_pool2d_backward", "indices", "holds 99"):
        y, idx = ops.max_pool2d(x, 2, return_indices=True)
        idx[0, 0, 0, 0] = 99
        ops.max_pool2d_backward(np.ones_like(y), x, idx, 2)
    with raises(ValueError, "max_pool2d", "input", "(N, C, H, W)"):
        ops.max_pool2d(np.zeros((4, 4), np.float32), 2)


def test_max_pool_backward_names_the_first_bad_index(backend):
    # the indices are checked in chunks on the threads: the message names the first bad
    # position overall, wherever the chunks' checks finish
    x = np.random.default_rng(0).standard_normal((8, 32, 40, 40)).astype(np.float32)
    y, idx = ops.max_pool2d(x, 2, return_indices=True)
    for positions, first in (((50_000, 20_000), 20_000), ((99_999,), 99_999), ((0, 60_000), 0)):
        bad = idx.copy()
        for p in positions:
            bad.flat[p] = -7
        with raises(ValueError, "max_pool2d_backward", "indices", f"flat position {first},"):
            ops.max_pool2d_backward(np.ones_like(y), x, bad, 2)


@needs_torch
@pytest.mark.parametrize("kw", MAX, ids=str)
def test_max_pool2d_matches_pytorch(rng, kw):
    x = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    yt, it = F.max_pool2d(xt, return_indices=True, **kw)
    g = rng.standard_normal(tuple(yt.shape)).astype(np.float32)
    yt.backward(torch.tensor(g))
    y, idx = ops.max_pool2d(x, return_indices=True, **kw)
    np.testing.assert_array_equal(y, yt.detach().numpy())
    np.testing.assert_array_equal(idx, it.numpy())
    np.testing.assert_allclose(ops.max_pool2d_backward(g, x, idx, **kw), xt.grad.numpy(), rtol=1e-6)


@needs_torch
@pytest.mark.parametrize("kw", AVG, ids=str)
def test_avg_pool2d_matches_pytorch(rng, kw):
    x = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    yt = F.avg_pool2d(xt, **kw)
    g = rng.standard_normal(tuple(yt.shape)).astype(np.float32)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(ops.avg_pool2d(x, **kw), yt.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ops.avg_pool2d_backward(g, x, **kw), xt.grad.numpy(), rtol=1e-5, atol=1e-6)


@needs_torch
@pytest.mark.parametrize("output_size", ADAPTIVE, ids=str)
def test_adaptive_avg_pool2d_matches_pytorch(rng, output_size):
    x = rng.standard_normal((2, 3, 9, 11)).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    yt = F.adaptive_avg_pool2d(xt, output_size)
    g = rng.standard_normal(tuple(yt.shape)).astype(np.float32)
    yt.backward(torch.tensor(g))
    np.testing.assert_allclose(ops.adaptive_avg_pool2d(x, output_size), yt.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ops.adaptive_avg_pool2d_backward(g, x), xt.grad.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(64, 16, 8, 8), (8, 32, 4, 4), (3, 5, 6, 10), (2, 1, 2, 2), (130, 1, 2, 4),
                                   (2, 3, 18, 20), (1, 1, 2, 200)], ids=str)  # the last two: a table per output row
def test_max_pool2d_2x2_ties_and_nans(backend, rng, shape):
    """The tabulated 2x2/stride-2 path: ties report the first maximum, NaN wins (the last NaN's
    index), exactly as the general path and the reference do."""
    x = rng.integers(0, 3, shape).astype(np.float32)  # many ties
    y, idx = ops.max_pool2d(x, 2, return_indices=True)
    y_ref, idx_ref = R.max_pool2d(x.astype(np.float64), 2, return_indices=True)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(idx, idx_ref)
    x[rng.random(shape) < 0.2] = np.nan
    y, idx = ops.max_pool2d(x, 2, return_indices=True)
    *lead, H, W = shape
    taps = x.reshape(*lead, H // 2, 2, W // 2, 2).swapaxes(-3, -2).reshape(*lead, H // 2, W // 2, 4)
    nan = np.isnan(taps)
    tap = np.where(nan.any(-1), 3 - np.argmax(nan[..., ::-1], axis=-1), np.argmax(np.nan_to_num(taps, nan=-1), -1))
    oh, ow = np.arange(H // 2)[:, None], np.arange(W // 2)[None, :]
    np.testing.assert_array_equal(idx, (2 * oh + tap // 2) * W + 2 * ow + tap % 2)
    assert np.array_equal(np.isnan(y), nan.any(-1))
    planes = x.reshape(-1, shape[-2] * shape[-1])
    picked = np.take_along_axis(planes, idx.reshape(len(planes), -1), axis=1)
    np.testing.assert_array_equal(picked.reshape(y.shape), y)  # the index points at the reported value

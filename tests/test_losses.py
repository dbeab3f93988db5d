"""Losses: values and input gradients against the float64 reference and
PyTorch, every reduction, odd shapes, every ISA and 1 and 2 threads."""

from __future__ import annotations

import warnings

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

SHAPES = [(0,), (1,), (7,), (33,), (5, 33), (2, 3, 4, 5), (3, 17000)]
DTYPES = [np.float32, np.float64]


def _inputs(name, rng, shape):
    """(input, target) in each loss's domain."""
    if name == "binary_cross_entropy":
        return rng.uniform(0.01, 0.99, shape), rng.uniform(0, 1, shape)
    if name == "kl_div":
        return np.log(rng.uniform(0.01, 1, shape)), np.where(rng.uniform(size=shape) < 0.2, 0.0, rng.uniform(0, 1, shape))
    if name == "kl_div_log_target":
        return np.log(rng.uniform(0.01, 1, shape)), np.log(rng.uniform(0.01, 1, shape))
    return rng.standard_normal(shape) * 2, rng.standard_normal(shape) * 2


# name -> (kwargs for ops/_reference, reductions, torch function or None)
POINTWISE = {
    "mse_loss": ({}, ["none", "mean", "sum"]),
    "l1_loss": ({}, ["none", "mean", "sum"]),
    "smooth_l1_loss": ({"beta": 0.5}, ["none", "mean", "sum"]),
    "binary_cross_entropy": ({}, ["none", "mean", "sum"]),
    "binary_cross_entropy_with_logits": ({}, ["none", "mean", "sum"]),
    "kl_div": ({}, ["none", "mean", "sum", "batchmean"]),
    "kl_div_log_target": ({"log_target": True}, ["none", "mean", "sum", "batchmean"]),
}
CASES = [(n, r) for n, (_, rs) in POINTWISE.items() for r in rs]


def _fn(name):
    return "kl_div" if name.startswith("kl_div") else name


def _grad_for(reduction, loss_shape, rng, dtype):
    return rng.standard_normal(loss_shape).astype(dtype) if reduction == "none" else dtype(0.7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name,reduction", CASES, ids=[f"{n}-{r}" for n, r in CASES])
def test_pointwise_loss_matches_reference(backend, rng, name, reduction, shape, dtype):
    kwargs, _ = POINTWISE[name]
    x, t = (a.astype(dtype) for a in _inputs(name, rng, shape))
    fn = _fn(name)
    loss = getattr(ops, fn)(x, t, reduction, **kwargs)
    with np.errstate(invalid="ignore", divide="ignore"):
        expected = getattr(R, fn)(x.astype(np.float64), t.astype(np.float64), reduction, **kwargs)
    tol = dict(rtol=2e-5, atol=2e-6 * np.sqrt(max(x.size, 1))) if dtype == np.float32 else None
    assert_close(loss, expected, dtype, tol=tol, what=f"{name} {reduction}")
    g = _grad_for(reduction, x.shape, rng, dtype)
    dx = getattr(ops, fn + "_backward")(g, x, t, reduction, **kwargs)
    dx_ref = getattr(R, fn + "_backward")(np.float64(g) if np.ndim(g) == 0 else g.astype(np.float64),
                                          x.astype(np.float64), t.astype(np.float64), reduction, **kwargs)
    assert_close(dx, dx_ref, dtype, what=f"{name} {reduction} backward")


@pytest.mark.parametrize("name,reduction", CASES, ids=[f"{n}-{r}" for n, r in CASES])
def test_pointwise_loss_gradient_by_finite_differences(rng, name, reduction):
    kwargs, _ = POINTWISE[name]
    x, t = _inputs(name, rng, (4, 5))
    if name in ("l1_loss", "smooth_l1_loss"):
        x = np.where(np.abs(x - t) < 0.05, x + 0.2, x)  # away from the kinks
        x = np.where(np.abs(np.abs(x - t) - 0.5) < 0.05, x + 0.2, x)
    fn = _fn(name)
    w = rng.standard_normal(x.shape) if reduction == "none" else np.float64(1.3)
    numeric = finite_difference(lambda v: getattr(ops, fn)(v, t, reduction, **kwargs), [x], 0, w)
    analytic = getattr(ops, fn + "_backward")(w, x, t, reduction, **kwargs)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-5, atol=1e-7)


def test_bce_with_logits_is_finite_for_huge_logits(backend):
    x = np.array([-1e4, -100, -30, 0, 30, 100, 1e4, 3e38, -3e38], dtype=np.float32)
    t = np.array([0, 1, 0.5, 1, 0, 1, 0, 1, 0], dtype=np.float32)
    loss = ops.binary_cross_entropy_with_logits(x, t, "none")
    assert np.isfinite(loss).all()
    expected = R.binary_cross_entropy_with_logits(x.astype(np.float64), t.astype(np.float64), "none")
    assert_close(loss, expected.astype(np.float32), np.float32, what="bce_with_logits at extremes")
    grad = ops.binary_cross_entropy_with_logits_backward(np.float32(1), x, t, "sum")
    assert np.isfinite(grad).all()


def test_bce_clamps_log_at_minus_100(backend):
    p = np.array([0.0, 1.0, 0.0, 1.0], dtype=np.float32)
    t = np.array([1.0, 0.0, 0.0, 1.0], dtype=np.float32)
    np.testing.assert_array_equal(ops.binary_cross_entropy(p, t, "none"), [100, 100, 0, 0])
    assert np.isfinite(ops.binary_cross_entropy_backward(np.float32(1), p, t, "mean")).all()


def test_loss_nan_propagates(backend):
    x = np.array([0.0, np.nan, 1.0], dtype=np.float32)
    t = np.zeros(3, dtype=np.float32)
    for fn in ("mse_loss", "l1_loss", "smooth_l1_loss", "binary_cross_entropy_with_logits"):
        assert np.isnan(getattr(ops, fn)(x, t)), fn
        assert np.isnan(getattr(ops, fn)(x, t, "none")[1]), fn


def test_reduced_loss_is_a_0d_array_of_the_input_dtype():
    x = np.ones((3, 4), dtype=np.float32)
    loss = ops.mse_loss(x, x * 2)
    assert loss.shape == () and loss.dtype == np.float32 and float(loss) == 1.0
    assert ops.mse_loss(x.astype(np.float64), x).dtype == np.float64


# --- cross entropy and NLL ----------------------------------------------------------

CLASS_SHAPES = [(1, 1), (7, 3), (33, 10), (64, 1000), (4, 5, 3), (2, 3, 4, 5), (5,), (0, 4)]


def _class_inputs(rng, shape, dtype, ignore_some=True):
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    C = shape[0] if len(shape) == 1 else shape[1]
    tshape = () if len(shape) == 1 else (shape[0],) + shape[2:]
    t = rng.integers(0, C, size=tshape)
    if ignore_some and t.size > 2:
        t.reshape(-1)[::3] = -100
    return x, t


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", CLASS_SHAPES, ids=str)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_matches_reference(backend, rng, reduction, shape, dtype, smoothing):
    x, t = _class_inputs(rng, shape, dtype)
    kw = dict(reduction=reduction, label_smoothing=smoothing)
    loss = ops.cross_entropy(x, t, **kw)
    expected = R.cross_entropy(x.astype(np.float64), t, **kw)
    assert_close(loss, expected, dtype, what="cross_entropy")
    g = _grad_for(reduction, t.shape, rng, dtype)
    dx = ops.cross_entropy_backward(g, x, t, **kw)
    dx_ref = R.cross_entropy_backward(np.float64(g) if np.ndim(g) == 0 else g.astype(np.float64),
                                      x.astype(np.float64), t, **kw)
    assert_close(dx, dx_ref, dtype, what="cross_entropy backward")


@pytest.mark.parametrize("reduction,smoothing", [("none", 0.0), ("mean", 0.1)])
def test_cross_entropy_backward_large(backend, rng, reduction, smoothing):
    """A gradient large enough for streaming stores (rows of 4099 classes, each starting at
    another alignment), with ignored samples and targets at a row's first and last class."""
    x = (rng.standard_normal((1025, 4099)) * 3).astype(np.float32)
    t = rng.integers(0, 4099, 1025)
    t[:3] = [0, 4098, -100]
    kw = dict(reduction=reduction, label_smoothing=smoothing)
    g = rng.standard_normal(1025).astype(np.float32) if reduction == "none" else np.float32(1.5)
    dx = ops.cross_entropy_backward(g, x, t, **kw)
    expected = R.cross_entropy_backward(np.asarray(g, np.float64), x.astype(np.float64), t, **kw)
    assert_close(dx, expected, np.float32, what="cross_entropy backward, large")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", CLASS_SHAPES, ids=str)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_nll_loss_matches_reference(backend, rng, reduction, shape, dtype):
    x, t = _class_inputs(rng, shape, dtype)
    axis = 0 if len(shape) == 1 else 1
    logp = ops.log_softmax(x, axis)
    loss = ops.nll_loss(logp, t, reduction)
    assert_close(loss, R.nll_loss(logp.astype(np.float64), t, reduction), dtype, what="nll_loss")
    g = _grad_for(reduction, t.shape, rng, dtype)
    dx = ops.nll_loss_backward(g, logp, t, reduction)
    dx_ref = R.nll_loss_backward(np.float64(g) if np.ndim(g) == 0 else g.astype(np.float64),
                                 logp.astype(np.float64), t, reduction)
    assert_close(dx, dx_ref, dtype, what="nll_loss backward")


@pytest.mark.parametrize("smoothing", [0.0, 0.2])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_cross_entropy_gradient_by_finite_differences(rng, reduction, smoothing):
    x, t = _class_inputs(rng, (4, 5, 2), np.float64)
    w = rng.standard_normal(t.shape) if reduction == "none" else np.float64(0.9)
    kw = dict(reduction=reduction, label_smoothing=smoothing)
    numeric = finite_difference(lambda v: ops.cross_entropy(v, t, **kw), [x], 0, w)
    np.testing.assert_allclose(ops.cross_entropy_backward(w, x, t, **kw), numeric, rtol=1e-6, atol=1e-8)


def test_nll_loss_gradient_by_finite_differences(rng):
    x, t = _class_inputs(rng, (6, 4), np.float64)
    numeric = finite_difference(lambda v: ops.nll_loss(v, t), [x], 0, np.float64(1.0))
    np.testing.assert_allclose(ops.nll_loss_backward(1.0, x, t), numeric, rtol=1e-6, atol=1e-8)


def test_cross_entropy_is_stable_for_huge_logits(backend):
    x = np.array([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [0.0, 1e4, 1e4]], dtype=np.float32)
    t = np.array([1, 2, 0])
    loss = ops.cross_entropy(x, t, "none")
    assert np.isfinite(loss).all()
    assert_close(loss, R.cross_entropy(x.astype(np.float64), t, "none"), np.float32, what="CE at +-1e4")
    assert np.isfinite(ops.cross_entropy_backward(np.float32(1), x, t)).all()


@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_of_spread_logits_has_no_subnormal_gradient(backend, rng, smoothing):
    """Softmax terms of the gradient that would be subnormal are 0 (each subnormal took a
    microcode assist: 40 N(0, 1) logits ran 2.7x as long); the gradient still matches the
    reference, to the rounding of 1 - softmax at the target where the softmax is near 1."""
    x = (rng.standard_normal((64, 200)) * 40).astype(np.float32)
    x[0, 100:] = -1e4
    t = rng.integers(0, 100, 64)
    for n in (64, 5000):  # also a large output, written with streaming stores
        xs = np.resize(x, (n, 200))
        ts = np.resize(t, n)
        loss, dx = ops.cross_entropy_forward_backward(xs, ts, label_smoothing=smoothing)
        expected = R.cross_entropy_backward(1.0, xs.astype(np.float64), ts, label_smoothing=smoothing)
        np.testing.assert_allclose(dx, expected, rtol=1e-5, atol=1.2e-7 / n)
        assert not ((dx != 0) & (np.abs(dx) < np.finfo(np.float32).tiny)).any()
        assert loss == pytest.approx(R.cross_entropy(xs.astype(np.float64), ts, label_smoothing=smoothing), rel=1e-5)


def test_cross_entropy_all_ignored_is_nan_for_mean_and_zero_for_sum():
    x = np.zeros((3, 4), dtype=np.float32)
    t = np.full(3, -100)
    assert np.isnan(ops.cross_entropy(x, t))
    assert float(ops.cross_entropy(x, t, "sum")) == 0.0
    np.testing.assert_array_equal(ops.cross_entropy_backward(np.float32(1), x, t, "sum"), 0)


def test_cross_entropy_custom_ignore_index(rng):
    x, _ = _class_inputs(rng, (6, 5), np.float32, ignore_some=False)
    t = np.array([0, 3, 3, 1, 4, 3])
    got = ops.cross_entropy(x, t, ignore_index=3)
    keep = t != 3
    expected = R.cross_entropy(x[keep].astype(np.float64), t[keep])
    assert_close(got, expected, np.float32, what="ignore_index=3")


def test_class_target_out_of_range_raises_and_names_it():
    x = np.zeros((4, 3), dtype=np.float32)
    with raises(ValueError, "cross_entropy", "target", "class 3", "[0, 3)"):
        ops.cross_entropy(x, np.array([0, 1, 3, 2]))
    with raises(ValueError, "cross_entropy_backward", "class -1"):
        ops.cross_entropy_backward(np.float32(1), x, np.array([0, -1, 1, 2]))
    with raises(ValueError, "nll_loss", "class 7"):
        ops.nll_loss(x, np.array([0, 7, 1, 2]))
    with raises(ValueError, "nll_loss_backward", "class 5"):
        ops.nll_loss_backward(np.float32(1), x, np.array([0, 5, 1, 2]))


# --- against PyTorch --------------------------------------------------------------------

TORCH_POINTWISE = {
    "mse_loss": lambda x, t, r: F.mse_loss(x, t, reduction=r),
    "l1_loss": lambda x, t, r: F.l1_loss(x, t, reduction=r),
    "smooth_l1_loss": lambda x, t, r: F.smooth_l1_loss(x, t, reduction=r, beta=0.5),
    "binary_cross_entropy": lambda x, t, r: F.binary_cross_entropy(x, t, reduction=r),
    "binary_cross_entropy_with_logits": lambda x, t, r: F.binary_cross_entropy_with_logits(x, t, reduction=r),
    "kl_div": lambda x, t, r: F.kl_div(x, t, reduction=r),
    "kl_div_log_target": lambda x, t, r: F.kl_div(x, t, reduction=r, log_target=True),
}


@needs_torch
@pytest.mark.parametrize("name,reduction", CASES, ids=[f"{n}-{r}" for n, r in CASES])
def test_pointwise_loss_matches_pytorch(rng, name, reduction):
    kwargs, _ = POINTWISE[name]
    x, t = (a.astype(np.float32) for a in _inputs(name, rng, (16, 33)))
    xt = torch.tensor(x, requires_grad=True)
    with warnings.catch_warnings():  # kl_div's 'mean' warns that it is not 'batchmean'
        warnings.simplefilter("ignore", UserWarning)
        out = TORCH_POINTWISE[name](xt, torch.tensor(t), reduction)
    g = _grad_for(reduction, x.shape, rng, np.float32)
    out.backward(torch.tensor(g))
    fn = _fn(name)
    np.testing.assert_allclose(getattr(ops, fn)(x, t, reduction, **kwargs), out.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(getattr(ops, fn + "_backward")(g, x, t, reduction, **kwargs), xt.grad.numpy(),
                               rtol=1e-5, atol=1e-7)


@needs_torch
@pytest.mark.parametrize("shape", [(64, 1000), (4, 5, 3, 2), (7,)], ids=str)
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_matches_pytorch(rng, shape, reduction, smoothing):
    x, t = _class_inputs(rng, shape, np.float32)
    xt = torch.tensor(x, requires_grad=True)
    out = F.cross_entropy(xt, torch.tensor(t), reduction=reduction, label_smoothing=smoothing)
    g = _grad_for(reduction, t.shape, rng, np.float32)
    out.backward(torch.tensor(g))
    kw = dict(reduction=reduction, label_smoothing=smoothing)
    np.testing.assert_allclose(ops.cross_entropy(x, t, **kw), out.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ops.cross_entropy_backward(g, x, t, **kw), xt.grad.numpy(), rtol=1e-5, atol=1e-7)
    logp = ops.log_softmax(x, 0 if len(shape) == 1 else 1)
    lt = torch.tensor(logp, requires_grad=True)
    out = F.nll_loss(lt, torch.tensor(t), reduction=reduction)
    out.backward(torch.tensor(g))
    np.testing.assert_allclose(ops.nll_loss(logp, t, reduction), out.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ops.nll_loss_backward(g, logp, t, reduction), lt.grad.numpy(), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", CLASS_SHAPES, ids=str)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
@pytest.mark.parametrize("smoothing", [0.0, 0.1])
def test_cross_entropy_forward_backward_is_both_in_one_call(backend, rng, reduction, shape, dtype, smoothing):
    x, t = _class_inputs(rng, shape, dtype)
    kw = dict(reduction=reduction, label_smoothing=smoothing)
    loss, dx = ops.cross_entropy_forward_backward(x, t, grad=dtype(0.5), **kw)
    ref_loss, ref_dx = R.cross_entropy_forward_backward(x.astype(np.float64), t, grad=0.5, **kw)
    assert_close(loss, ref_loss, dtype, what="fused loss")
    assert_close(dx, ref_dx, dtype, what="fused gradient")
    np.testing.assert_array_equal(dx, ops.cross_entropy_backward(dtype(0.5), x, t, **kw))


def test_cross_entropy_forward_backward_needs_a_reduction():
    with raises(ValueError, "cross_entropy_forward_backward", "reduction", "'mean' or 'sum'"):
        ops.cross_entropy_forward_backward(np.zeros((2, 3), np.float32), np.zeros(2, np.int64), "none")

"""Property tests with hypothesis (small budget in the suite): random shapes,
axes, dtypes and values, NaN and Inf included, agree with the float64
reference or raise a clear error; nothing crashes."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import shenjing._reference as R
from shenjing import ops

from helpers import FUZZ_SETTINGS as SETTINGS

shapes = hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=9)
finite = st.floats(-50, 50, width=32)
anything = st.floats(width=32, allow_nan=True, allow_infinity=True)


def float_arrays(elements=finite, shape=shapes):
    return st.sampled_from([np.float32, np.float64]).flatmap(
        lambda dt: hnp.arrays(dt, shape, elements=elements))


def _close(got, expected, dtype):
    tol = dict(rtol=1e-4, atol=1e-5) if dtype == np.float32 else dict(rtol=1e-10, atol=1e-12)
    assert got.dtype == dtype and got.shape == np.shape(expected)
    np.testing.assert_allclose(got, expected, equal_nan=True, **tol)


@SETTINGS
@given(x=float_arrays(), name=st.sampled_from(["relu", "sigmoid", "tanh", "gelu"]))
def test_elementwise_any_shape(x, name):
    _close(getattr(ops, name)(x), getattr(R, name)(x.astype(np.float64)), x.dtype)


@SETTINGS
@given(x=float_arrays(elements=anything), name=st.sampled_from(["relu", "sigmoid", "tanh", "leaky_relu"]))
def test_elementwise_with_nan_and_inf(x, name):
    with np.errstate(all="ignore"):
        expected = getattr(R, name)(x.astype(np.float64)).astype(x.dtype)
    _close(getattr(ops, name)(x), expected, x.dtype)


@SETTINGS
@given(x=float_arrays(shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=9)), data=st.data(),
       log=st.booleans())
def test_softmax_any_axis(x, data, log):
    axis = data.draw(st.integers(-x.ndim, x.ndim - 1))
    name = "log_softmax" if log else "softmax"
    _close(getattr(ops, name)(x, axis), getattr(R, name)(x.astype(np.float64), axis), x.dtype)


@SETTINGS
@given(x=float_arrays(), data=st.data(),
       name=st.sampled_from(["mse_loss", "l1_loss", "smooth_l1_loss", "binary_cross_entropy_with_logits"]),
       reduction=st.sampled_from(["none", "mean", "sum"]))
def test_pointwise_losses_any_shape(x, data, name, reduction):
    t = data.draw(hnp.arrays(x.dtype, x.shape, elements=finite))
    with np.errstate(all="ignore"):
        expected = getattr(R, name)(x.astype(np.float64), t.astype(np.float64), reduction)
    got = getattr(ops, name)(x, t, reduction)
    tol = dict(rtol=1e-4, atol=1e-4) if x.dtype == np.float32 else dict(rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(got, expected, equal_nan=True, **tol)


@SETTINGS
@given(n=st.integers(0, 12), c=st.integers(1, 12), rest=st.lists(st.integers(1, 4), max_size=2),
       seed=st.integers(0, 2**31), smoothing=st.sampled_from([0.0, 0.3]),
       reduction=st.sampled_from(["none", "mean", "sum"]))
def test_cross_entropy_any_shape(n, c, rest, seed, smoothing, reduction):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, c, *rest)).astype(np.float32) * 5
    t = rng.integers(-1, c, size=(n, *rest))
    t[t == -1] = -100
    kw = dict(reduction=reduction, label_smoothing=smoothing)
    _close(ops.cross_entropy(x, t, **kw), R.cross_entropy(x.astype(np.float64), t, **kw), np.float32)
    g = rng.standard_normal(t.shape).astype(np.float32) if reduction == "none" else np.float32(1.0)
    _close(ops.cross_entropy_backward(g, x, t, **kw),
           R.cross_entropy_backward(np.float64(g) if reduction != "none" else g.astype(np.float64),
                                    x.astype(np.float64), t, **kw), np.float32)


@SETTINGS
@given(m=st.integers(0, 20), n=st.integers(0, 20), k=st.integers(0, 20), ta=st.booleans(), tb=st.booleans(),
       seed=st.integers(0, 2**31))
def test_gemm_any_shape(m, n, k, ta, tb, seed):
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((k, m) if ta else (m, k)).astype(np.float32)
    b = rng.standard_normal((n, k) if tb else (k, n)).astype(np.float32)
    _close(ops.gemm(a, b, trans_a=ta, trans_b=tb),
           R.gemm(a.astype(np.float64), b.astype(np.float64), trans_a=ta, trans_b=tb), np.float32)


weird_arrays = st.one_of(
    hnp.arrays(st.sampled_from([np.int8, np.int64, np.bool_, np.float16, np.complex64, np.uint8]), shapes),
    float_arrays(elements=anything),
    st.builds(lambda a: np.asfortranarray(a), float_arrays()),
    st.builds(lambda a: a[::-1], float_arrays(shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=6))),
)
OPS_ONE_ARRAY = ["relu", "sigmoid", "tanh", "gelu", "softmax", "log_softmax", "sum", "mean", "copy"]


@SETTINGS
@given(x=weird_arrays, name=st.sampled_from(OPS_ONE_ARRAY))
def test_any_array_gives_a_result_or_a_clear_error(x, name):
    """Every input a caller can build: a float result of the input's shape, or TypeError/ValueError naming the op."""
    from shenjing import ops
    try:
        with np.errstate(all="ignore"):
            y = getattr(ops, name)(x)
    except (TypeError, ValueError) as e:
        assert name in str(e)
        return
    assert y.dtype in (np.float32, np.float64)
    if name not in ("sum", "mean"):
        assert y.shape == x.shape


@SETTINGS
@given(x=weird_arrays, w=weird_arrays, stride=st.integers(-1, 3), padding=st.integers(-1, 3),
       groups=st.integers(-1, 3))
def test_conv2d_never_crashes(x, w, stride, padding, groups):
    from shenjing import ops
    try:
        with np.errstate(all="ignore"):
            ops.conv2d(x, w, stride=stride, padding=padding, groups=groups)
    except (TypeError, ValueError) as e:
        assert "conv2d" in str(e)

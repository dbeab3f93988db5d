"""Activations: forward and backward against the float64 reference, by finite
differences, at odd sizes, extreme values, every ISA and 1 and 2 threads."""

from __future__ import annotations

import numpy as np
import pytest

import shenjing
import shenjing._reference as R
from shenjing import ops

from helpers import SHAPES, TOL, assert_close, finite_difference

# name -> (forward(module, x), backward(module, grad, x, y))
ELEMENTWISE = {
    "relu": (lambda m, x: m.relu(x), lambda m, g, x, y: m.relu_backward(g, x)),
    "leaky_relu": (lambda m, x: m.leaky_relu(x, 0.1), lambda m, g, x, y: m.leaky_relu_backward(g, x, 0.1)),
    "sigmoid": (lambda m, x: m.sigmoid(x), lambda m, g, x, y: m.sigmoid_backward(g, y)),
    "tanh": (lambda m, x: m.tanh(x), lambda m, g, x, y: m.tanh_backward(g, y)),
    "gelu": (lambda m, x: m.gelu(x), lambda m, g, x, y: m.gelu_backward(g, x)),
    "gelu_tanh": (lambda m, x: m.gelu(x, "tanh"), lambda m, g, x, y: m.gelu_backward(g, x, "tanh")),
}
DTYPES = [np.float32, np.float64]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_matches_reference(backend, rng, name, shape, dtype):
    forward, backward = ELEMENTWISE[name]
    x = (rng.standard_normal(shape) * 3).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    y = forward(ops, x)
    y_ref = forward(R, x.astype(np.float64))
    assert_close(y, y_ref, dtype, what=f"{name} forward")
    dx = backward(ops, g, x, y)
    dx_ref = backward(R, g.astype(np.float64), x.astype(np.float64), y_ref)
    assert_close(dx, dx_ref, dtype, what=f"{name} backward")


STREAMED = (1 << 22) + 21  # float32 outputs from 16 MiB are written with streaming stores


@pytest.fixture(scope="module")
def large():
    """Inputs of STREAMED floats starting 3 elements off a vector boundary, and their
    float64 results (computed once for every backend)."""
    rng = np.random.default_rng(11)
    x = (rng.standard_normal(STREAMED + 3) * 3).astype(np.float32)[3:]
    g = rng.standard_normal(STREAMED + 3).astype(np.float32)[3:]
    x64, g64 = x.astype(np.float64), g.astype(np.float64)
    y = R.sigmoid(x64)
    return {"x": x, "g": g, "sigmoid": y, "sigmoid_backward": R.sigmoid_backward(g64, y.astype(np.float32)),
            "relu_backward": R.relu_backward(g64, x64)}


def test_elementwise_large_outputs(backend, large):
    """Outputs large enough for streaming stores (an unaligned head, aligned vectors, a
    tail in every chunk), into fresh arrays, into a view that starts off a vector
    boundary, and in place (not streamed)."""
    x, g = large["x"], large["g"]
    assert_close(ops.sigmoid(x), large["sigmoid"], np.float32, what="sigmoid, large")  # interleaved map
    y32 = large["sigmoid"].astype(np.float32)
    assert_close(ops.sigmoid_backward(g, y32), large["sigmoid_backward"], np.float32, what="sigmoid backward, large")
    np.testing.assert_array_equal(ops.relu_backward(g, x), large["relu_backward"].astype(np.float32))  # binary map
    out = np.empty(STREAMED + 5, np.float32)[5:]
    np.testing.assert_array_equal(ops.copy(x, out=out), x)  # unary map, unaligned out
    inplace = x.copy()
    assert ops.relu(inplace, out=inplace) is inplace
    np.testing.assert_array_equal(inplace, np.maximum(x, 0))


def test_softmax_large_outputs(backend, rng):
    """Rows of an output large enough for streaming stores, each starting at another
    alignment (4099 floats a row), into a fresh array and an unaligned out, and in place."""
    x = (rng.standard_normal((1025, 4099)) * 4).astype(np.float32)
    x64 = x.astype(np.float64)
    for f, ref in ((ops.softmax, R.softmax), (ops.log_softmax, R.log_softmax)):
        expected = ref(x64)
        assert_close(f(x), expected, np.float32, what=f"{f.__name__}, large")
        out = np.empty(x.size + 1, np.float32)[1:].reshape(x.shape)
        assert f(x, out=out) is out
        assert_close(out, expected, np.float32, what=f"{f.__name__} into an unaligned out")
        inplace = x.copy()
        assert f(inplace, out=inplace) is inplace
        assert_close(inplace, expected, np.float32, what=f"{f.__name__} in place")


@pytest.mark.parametrize("length", [5, 31, 33, 48, 64, 100])
def test_softmax_large_outputs_of_short_rows(isa, rng, length):
    """Streamed outputs whose rows are shorter than a step of the next row's exp pass
    (which writes the row before it) or end in a partial step, with a NaN row, across
    the threads' runs of rows: bit-identical with 1 and 2 threads."""
    rows = STREAMED // length + 3
    x = (rng.standard_normal((rows, length)) * 4).astype(np.float32)
    nan_row = rows // 2 + 1  # the first row of the second thread's run
    x[nan_row, length // 2] = np.nan
    x64 = x.astype(np.float64)
    old = shenjing.get_num_threads()
    try:
        for f, ref in ((ops.softmax, R.softmax), (ops.log_softmax, R.log_softmax)):
            shenjing.set_num_threads(1)
            one = f(x)
            shenjing.set_num_threads(2)
            out = np.empty(x.size + 3, np.float32)[3:].reshape(x.shape)
            assert f(x, out=out) is out
            np.testing.assert_array_equal(out, one)
            assert np.isnan(out[nan_row]).all()
            assert_close(np.delete(out, nan_row, 0), np.delete(ref(x64), nan_row, 0), np.float32,
                         what=f"{f.__name__} of {length}-long rows, large")
    finally:
        shenjing.set_num_threads(old)


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_gradient_by_finite_differences(rng, name):
    forward, backward = ELEMENTWISE[name]
    x = rng.standard_normal((3, 7)) * 2
    x = np.where(np.abs(x) < 0.05, 0.3, x)  # keep away from relu's kink
    w = rng.standard_normal(x.shape)
    numeric = finite_difference(lambda v: forward(ops, v), [x], 0, w)
    analytic = backward(ops, w, x, forward(ops, x))
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


EXTREMES = np.array([-1e4, -100.0, -88.8, -20.0, -1e-30, -0.0, 0.0, 1e-30, 20.0, 88.8, 100.0, 1e4,
                     np.inf, -np.inf, np.nan, 3e38, -3e38, 1e-40])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_extreme_values_and_nan(backend, name, dtype):
    forward, backward = ELEMENTWISE[name]
    with np.errstate(over="ignore"):
        x = EXTREMES.astype(dtype)
    y = forward(ops, x)
    with np.errstate(all="ignore"):
        y_ref = forward(R, x.astype(np.float64))
        tol = dict(TOL[dtype], atol=1e-30)
        assert_close(y, y_ref.astype(dtype).astype(np.float64), dtype, tol=tol, what=f"{name} at extremes")
        assert np.isnan(y[np.isnan(x)]).all(), f"{name} must propagate NaN"
        dx = backward(ops, np.ones_like(x), x, y)
        # from our output: sigmoid(20) rounds to 1 in float32, so y (1 - y) is 0 there (as in PyTorch)
        dx_ref = backward(R, np.ones_like(x, dtype=np.float64), x.astype(np.float64), y.astype(np.float64))
    assert_close(dx, dx_ref, dtype, tol=tol, what=f"{name} backward at extremes")


@pytest.mark.parametrize("name,bound", [("sigmoid", 15.75), ("gelu_tanh", 4.8), ("gelu", 3.9375)])
def test_table_form_blocks(backend, rng, name, bound):
    """sigmoid and both GELUs read a table for blocks of 256 inputs all within a bound
    (AVX-512) and take the exp form for other blocks, and unchecked for a while after
    them: one value past the bound (or inf, or NaN) anywhere in a block of in-range
    values, runs of out-of-range blocks then in-range ones, each block's first and last
    lanes and a partial last vector must all come out right."""
    forward = ELEMENTWISE[name][0]
    n = 40 * 256 + 13
    for odd in [bound, -bound, 2 * bound, -2 * bound, 100.0, -100.0, np.inf, -np.inf, np.nan]:
        for at in [0, 255, 256, 511, 3000, n - 1]:
            x = rng.uniform(-0.99 * bound, 0.99 * bound, n).astype(np.float32)
            x[at] = odd
            y = forward(ops, x)
            with np.errstate(all="ignore"):
                assert_close(y, forward(R, x.astype(np.float64)), np.float32,
                             tol=dict(TOL[np.float32], atol=1e-30), what=f"{name}: {odd} at {at}")
    # 20 blocks mostly past the bound (the check backs off), then in range, then mixed
    x = rng.uniform(-0.99 * bound, 0.99 * bound, n).astype(np.float32)
    x[:20 * 256] *= 3
    x[30 * 256 + 7::97] = 3 * bound
    assert_close(forward(ops, x), forward(R, x.astype(np.float64)), np.float32, what=f"{name}: runs of blocks")


@pytest.mark.parametrize("name", ELEMENTWISE)
def test_elementwise_in_place_and_out(rng, name):
    forward, _ = ELEMENTWISE[name]
    x = rng.standard_normal(1000).astype(np.float32)
    expected = forward(ops, x)
    buf = x.copy()
    if name == "leaky_relu":
        result = ops.leaky_relu(buf, 0.1, out=buf)
    elif name == "gelu_tanh":
        result = ops.gelu(buf, "tanh", out=buf)
    else:
        result = getattr(ops, name)(buf, out=buf)
    assert result is buf
    np.testing.assert_array_equal(buf, expected)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "gelu", "gelu_tanh", "relu", "softmax", "log_softmax"])
def test_results_do_not_depend_on_where_the_arrays_lie(rng, name):
    """Elementwise maps align their vectors to the output's cache lines; the two-form maps
    (sigmoid, both GELUs: a table inside a bound, exp outside, decided a block at a time)
    keep their blocks where the array starts, so the bits never depend on the address."""
    x = (rng.standard_normal((7, 1000)) * 2).astype(np.float32)  # blocks on both sides of the bounds
    f = (lambda v, out=None: ops.gelu(v, "tanh", out=out)) if name == "gelu_tanh" else getattr(ops, name)
    expected = f(x)
    raw_x, raw_y = np.empty(x.size + 16, np.float32), np.empty(x.size + 16, np.float32)
    for x_off, y_off in [(1, 1), (4, 4), (1, 7), (15, 0)]:
        xv = raw_x[x_off:x_off + x.size].reshape(x.shape)
        xv[...] = x
        yv = raw_y[y_off:y_off + x.size].reshape(x.shape)
        np.testing.assert_array_equal(f(xv, out=yv), expected, err_msg=f"offsets {x_off}, {y_off}")


def test_converted_inputs_give_the_same_result(rng):
    x = rng.standard_normal((40, 30)).astype(np.float32)
    expected = ops.sigmoid(x)
    fortran = np.asfortranarray(x)
    reversed_view = x[::-1, ::-1][::-1, ::-1]
    readonly = x.copy()
    readonly.flags.writeable = False
    for variant in (fortran, reversed_view, readonly, x.T.T):
        np.testing.assert_array_equal(ops.sigmoid(variant), expected)
    np.testing.assert_array_equal(ops.sigmoid(x[:, ::2]), expected[:, ::2])
    ints = np.arange(-5, 5)
    assert ops.relu(ints).dtype == np.float32
    np.testing.assert_array_equal(ops.relu(ints), np.maximum(ints, 0))


# --- softmax and log_softmax ---------------------------------------------------------

SOFTMAX_CASES = [((1,), -1), ((7,), 0), ((5, 33), -1), ((5, 33), 0), ((2, 3, 4, 5), 1), ((2, 3, 4, 5), -2),
                 ((3, 1001), 1), ((64, 1000), -1), ((4, 17, 3), 1), ((0, 5), 1), ((5, 0), 1), ((3, 40000), -1),
                 # long sums: a running float sum over 300000 terms was 27x the tolerance off
                 ((2, 300000), -1), ((300000, 2), 0)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape,axis", SOFTMAX_CASES, ids=str)
@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
def test_softmax_matches_reference(backend, rng, log, shape, axis, dtype):
    fwd, bwd = ("log_softmax", "log_softmax_backward") if log else ("softmax", "softmax_backward")
    x = (rng.standard_normal(shape) * 4).astype(dtype)
    g = rng.standard_normal(shape).astype(dtype)
    y = getattr(ops, fwd)(x, axis)
    y_ref = getattr(R, fwd)(x.astype(np.float64), axis)
    assert_close(y, y_ref, dtype, what=fwd)
    dx = getattr(ops, bwd)(g, y, axis)
    dx_ref = getattr(R, bwd)(g.astype(np.float64), y_ref, axis)
    # dx = g - p * sum(g) cancels: the sum over the axis sets the error, which grows with its length
    n = np.sqrt(max(x.size, 1))
    tol = dict(rtol=2e-5, atol=1e-6 * n) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14 * n)
    assert_close(dx, dx_ref, dtype, tol=tol, what=bwd)


@pytest.mark.parametrize("log", [False, True], ids=["softmax", "log_softmax"])
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_softmax_gradient_by_finite_differences(rng, log, axis):
    fwd, bwd = ("log_softmax", "log_softmax_backward") if log else ("softmax", "softmax_backward")
    x = rng.standard_normal((3, 4, 5))
    w = rng.standard_normal(x.shape)
    numeric = finite_difference(lambda v: getattr(ops, fwd)(v, axis), [x], 0, w)
    analytic = getattr(ops, bwd)(w, getattr(ops, fwd)(x, axis), axis)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_is_stable_for_huge_logits(backend, dtype):
    x = np.array([[1e4, -1e4, 0.0, 1e4 - 1], [-1e4, -1e4, -1e4, -1e4], [3e38, 0, -3e38, 1]], dtype=dtype)
    y = ops.softmax(x)
    assert np.isfinite(y).all()
    assert_close(y, R.softmax(x.astype(np.float64)), dtype, what="softmax at +-1e4")
    ly = ops.log_softmax(x)
    with np.errstate(invalid="ignore", over="ignore"):
        expected = R.log_softmax(x.astype(np.float64)).astype(dtype)  # -6e38 is -inf in float32
    assert_close(ly, expected, dtype, what="log_softmax at +-1e4")


@pytest.mark.parametrize("axis", [1, 0])
def test_softmax_of_masked_and_spread_rows(backend, rng, axis):
    """exp past -87.33 is 0, not a subnormal (each took a microcode assist: a half-masked
    attention row ran 6.5x as long): masked entries come out 0, and everything matches the
    reference to within the least normal float, the backward of log_softmax too."""
    x = rng.standard_normal((6, 300)).astype(np.float32)
    x[0, 150:] = -1e4
    x[1, ::3] = -np.inf
    x[2:] *= 40  # logits spread past exp's normal range
    x[3, :] = np.linspace(-95, 0, 300)  # across the floor
    xa = x if axis == 1 else np.ascontiguousarray(x.T)
    tiny = np.finfo(np.float32).tiny
    # (log_softmax to its absolute rounding: -log(sum) of a sum 1 + 5e-14 is 0 in float32)
    for f, ref, atol in ((ops.softmax, R.softmax, tiny), (ops.log_softmax, R.log_softmax, 1e-6)):
        y = f(xa, axis=axis)
        with np.errstate(all="ignore"):
            expected = ref(xa.astype(np.float64), axis=axis)
        assert_close(y, expected, np.float32, tol=dict(TOL[np.float32], atol=atol), what=f.__name__)
    masked = ops.softmax(xa, axis=axis)
    masked = masked if axis == 1 else masked.T
    assert (masked[0, 150:] == 0).all() and (masked[1, ::3] == 0).all()
    g = rng.standard_normal(xa.shape).astype(np.float32)
    dx = ops.log_softmax_backward(g, ops.log_softmax(xa, axis=axis), axis=axis)
    expected = R.log_softmax_backward(g.astype(np.float64), R.log_softmax(xa.astype(np.float64), axis=axis), axis=axis)
    assert_close(dx, expected, np.float32, tol=dict(TOL[np.float32], atol=1e-6), what="log_softmax_backward")


def test_softmax_nan_and_inf_rows():
    x = np.array([[0.0, np.nan, 1.0], [np.inf, 0.0, 1.0], [-np.inf, 0.0, 1.0]], dtype=np.float32)
    y = ops.softmax(x)
    assert np.isnan(y[0]).all()  # NaN anywhere in a row spreads to the row, as in PyTorch
    assert np.isnan(y[1, 0])  # inf - inf
    np.testing.assert_allclose(y[2], R.softmax(np.array([-np.inf, 0.0, 1.0])), rtol=1e-6)


@pytest.mark.parametrize("axis", [1, 0])
def test_softmax_nan_anywhere_spreads_over_its_row(backend, axis):
    # the row maximum only shifts exp's argument and may drop a NaN (one vmaxps); the
    # NaN must still come back through exp, wherever it lies: in each of the
    # interleaved maxima, the single-vector loop or the tail
    length = 200
    for at in (0, 17, 33, 50, 63, 64, 150, 191, 199):
        x = np.linspace(-3, 3, 3 * length, dtype=np.float32).reshape(3, length)
        x[1, at] = np.nan
        x = x if axis == 1 else np.ascontiguousarray(x.T)
        for f in (ops.softmax, ops.log_softmax):
            y = f(x, axis=axis)
            y = y if axis == 1 else y.T
            assert np.isnan(y[1]).all(), f"{f.__name__}: NaN at {at} did not spread"
            assert np.isfinite(y[[0, 2]]).all(), f"{f.__name__}: NaN at {at} leaked into other rows"
        if axis == 1:
            target = np.array([0, 1, 2])
            loss = ops.cross_entropy(x, target, reduction="none")
            assert np.isnan(loss[1]) and np.isfinite(loss[[0, 2]]).all()
            grad = ops.cross_entropy_backward(np.ones(3, np.float32), x, target, reduction="none")
            assert np.isnan(grad[1]).all() and np.isfinite(grad[[0, 2]]).all()


def test_softmax_rows_sum_to_one(rng):
    x = rng.standard_normal((100, 257)).astype(np.float32) * 10
    np.testing.assert_allclose(ops.softmax(x).sum(axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.exp(ops.log_softmax(x)).sum(axis=1), 1.0, rtol=1e-5)

"""Bad input gets a TypeError or ValueError naming the op, the argument and
the shapes; awkward but valid input (lists, ints, views, Fortran order,
read-only) is converted once and gives the right answer. Nothing crashes,
including direct calls into shenjing._core."""

from __future__ import annotations

import numpy as np
import pytest

import shenjing._core as core
from shenjing import ops

from helpers import at_odd_byte, raises

X = np.zeros((2, 3), np.float32)

UNARY = ["relu", "sigmoid", "tanh", "gelu", "leaky_relu", "softmax", "log_softmax"]
GRAD_PAIRS = [("relu_backward", "x"), ("sigmoid_backward", "output"), ("tanh_backward", "output"),
              ("gelu_backward", "x"), ("leaky_relu_backward", "x"), ("softmax_backward", "output"),
              ("log_softmax_backward", "output")]
POINTWISE = ["mse_loss", "l1_loss", "smooth_l1_loss", "binary_cross_entropy",
             "binary_cross_entropy_with_logits", "kl_div"]


@pytest.mark.parametrize("name", UNARY)
@pytest.mark.parametrize("bad", [np.zeros(3, np.complex64), np.array(["a", "b"]), np.array([None, 1], dtype=object)],
                         ids=["complex", "str", "object"])
def test_unary_rejects_non_real_dtypes(name, bad):
    with raises(TypeError, name, "x", str(bad.dtype)):
        getattr(ops, name)(bad)


@pytest.mark.parametrize("name,z", GRAD_PAIRS)
def test_gradient_shape_mismatch_names_both_shapes(name, z):
    with raises(ValueError, name, "grad", "(3, 2)", z, "(2, 3)"):
        getattr(ops, name)(np.zeros((3, 2), np.float32), X)


@pytest.mark.parametrize("name", POINTWISE)
def test_loss_target_shape_mismatch(name):
    with raises(ValueError, name, "target", "(2, 4)", "input", "(2, 3)"):
        getattr(ops, name)(X, np.zeros((2, 4), np.float32))


@pytest.mark.parametrize("name", POINTWISE + ["cross_entropy", "nll_loss"])
def test_loss_rejects_unknown_reduction(name):
    target = np.zeros(2, np.int64) if name in ("cross_entropy", "nll_loss") else X
    with raises(ValueError, name, "reduction", "'avg'"):
        getattr(ops, name)(X, target, reduction="avg")


@pytest.mark.parametrize("name", POINTWISE)
def test_reduced_loss_backward_needs_a_scalar_grad(name):
    with raises(ValueError, name + "_backward", "grad", "scalar", "(2, 3)"):
        getattr(ops, name + "_backward")(np.ones((2, 3), np.float32), X, X, "mean")
    with raises(ValueError, name + "_backward", "grad", "(3,)", "(2, 3)", "none"):
        getattr(ops, name + "_backward")(np.ones(3, np.float32), X, X, "none")


def test_softmax_axis_out_of_range():
    with raises(ValueError, "softmax", "axis 2", "(2, 3)"):
        ops.softmax(X, axis=2)
    with raises(ValueError, "log_softmax_backward", "axis -3", "(2, 3)"):
        ops.log_softmax_backward(X, X, axis=-3)
    with raises(TypeError, "softmax", "axis"):
        ops.softmax(X, axis=1.0)


def test_hyperparameters_are_validated():
    with raises(ValueError, "gelu", "approximate", "'fast'"):
        ops.gelu(X, approximate="fast")
    with raises(ValueError, "smooth_l1_loss", "beta", "-1"):
        ops.smooth_l1_loss(X, X, beta=-1.0)
    with raises(ValueError, "cross_entropy", "label_smoothing", "1.5"):
        ops.cross_entropy(X, np.zeros(2, np.int64), label_smoothing=1.5)
    with raises(TypeError, "leaky_relu", "negative_slope"):
        ops.leaky_relu(X, negative_slope="0.1")
    with raises(ValueError, "leaky_relu", "NaN"):
        ops.leaky_relu(X, negative_slope=float("nan"))


def test_class_losses_check_target_shape_and_type():
    with raises(ValueError, "cross_entropy", "target", "(3,)", "(2,)", "(2, 3)"):
        ops.cross_entropy(X, np.zeros(3, np.int64))
    with raises(TypeError, "cross_entropy", "class-probability"):
        ops.cross_entropy(X, np.zeros((2, 3), np.float32))
    with raises(TypeError, "nll_loss", "target", "integer"):
        ops.nll_loss(X, np.zeros(2, np.float32))
    with raises(ValueError, "cross_entropy", "class dimension"):
        ops.cross_entropy(np.float32(1.0), np.int64(0))
    with raises(TypeError, "cross_entropy", "ignore_index"):
        ops.cross_entropy(X, np.zeros(2, np.int64), ignore_index=1.5)


def test_out_is_checked():
    with raises(ValueError, "relu", "out", "(3, 2)", "(2, 3)"):
        ops.relu(X, out=np.zeros((3, 2), np.float32))
    with raises(TypeError, "relu", "out", "float64", "float32"):
        ops.relu(X, out=np.zeros((2, 3), np.float64))
    with raises(ValueError, "relu", "out", "C-contiguous"):
        ops.relu(X, out=np.zeros((3, 2), np.float32).T)
    ro = np.zeros((2, 3), np.float32)
    ro.flags.writeable = False
    with raises(ValueError, "relu", "out", "read-only"):
        ops.relu(X, out=ro)
    with raises(TypeError, "relu", "out", "list"):
        ops.relu(X, out=[0.0] * 6)


def test_awkward_but_valid_inputs_are_converted():
    np.testing.assert_array_equal(ops.relu([[-1, 2], [3, -4]]), [[0, 2], [3, 0]])
    assert ops.sigmoid(np.float32(0.0)).shape == ()
    assert float(ops.sigmoid(0.0)) == 0.5
    assert ops.softmax(np.ones((2, 3), np.int64)).dtype == np.float32
    assert ops.softmax(np.ones((2, 3), np.float16)).dtype == np.float32
    assert ops.tanh(np.ones(3, bool)).dtype == np.float32
    neg = np.arange(10, dtype=np.float32)[::-2]
    np.testing.assert_allclose(ops.tanh(neg), np.tanh(neg), rtol=1e-6)
    # a float64 target with a float32 input follows the input
    assert ops.mse_loss(X, np.ones((2, 3))).dtype == np.float32
    # targets as lists and uint8
    assert np.isfinite(ops.cross_entropy(X, [0, 2]))
    assert np.isfinite(ops.cross_entropy(X, np.array([0, 2], np.uint8)))


def test_arrays_not_aligned_to_their_elements_are_converted(rng):
    """A buffer viewed at an odd byte offset is copied before the kernels see it (they read
    whole elements and align their vectors: a streamed 4M-float sigmoid into such an out=
    had come back with errors of 0.99)."""
    x = rng.standard_normal((1 << 22) + 5).astype(np.float32)
    np.testing.assert_array_equal(ops.sigmoid(at_odd_byte(x)), ops.sigmoid(x))
    rows = x[:4096 * 64].reshape(64, 4096)
    np.testing.assert_array_equal(ops.softmax(at_odd_byte(rows)), ops.softmax(rows))
    a, b = rng.standard_normal((30, 40)).astype(np.float32), rng.standard_normal((40, 7)).astype(np.float32)
    np.testing.assert_array_equal(ops.gemm(at_odd_byte(a), at_odd_byte(b)), ops.gemm(a, b))
    np.testing.assert_array_equal(ops.matmul(at_odd_byte(a), b), ops.matmul(a, b))
    logits, target = rng.standard_normal((8, 5)).astype(np.float32), rng.integers(0, 5, 8)
    assert ops.cross_entropy(at_odd_byte(logits), at_odd_byte(target)) == ops.cross_entropy(logits, target)
    img = rng.standard_normal((2, 3, 6, 6)).astype(np.float32)
    y, idx = ops.max_pool2d(img, 2, return_indices=True)
    np.testing.assert_array_equal(ops.max_pool2d_backward(at_odd_byte(y), img, at_odd_byte(idx), 2),
                                  ops.max_pool2d_backward(y, img, idx, 2))


def test_out_not_aligned_to_its_elements_is_refused(rng):
    x = rng.standard_normal((1 << 22) + 5).astype(np.float32)
    with raises(ValueError, "sigmoid", "out", "aligned"):
        ops.sigmoid(x, out=at_odd_byte(np.zeros_like(x)))
    with raises(ValueError, "gemm", "out", "aligned"):
        ops.gemm(X, X.T, out=at_odd_byte(np.zeros((2, 2), np.float32)))
    p = np.zeros(6, np.float32)
    with raises(ValueError, "adam_step", "params[0]", "aligned"):
        ops.adam_step([at_odd_byte(p)], [p], [p.copy()], [p.copy()], step=1, lr=0.1)
    with raises(ValueError, "relu", "out", "aligned"):
        core.relu_forward(at_odd_byte(np.zeros(10, np.float32)), np.zeros(10, np.float32))


# --- direct calls into _core never crash -------------------------------------------

def test_core_checks_sizes_dtypes_and_writability():
    x = np.zeros(10, np.float32)
    with raises(ValueError, "relu", "out", "9 elements"):
        core.relu_forward(np.zeros(9, np.float32), x)
    with raises(TypeError, "relu", "out", "float32"):
        core.relu_forward(np.zeros(10, np.float64), x)
    with raises(TypeError, "relu", "x", "int64"):
        core.relu_forward(np.zeros(10, np.int64), np.zeros(10, np.int64))
    ro = np.zeros(10, np.float32)
    ro.flags.writeable = False
    with raises(ValueError, "relu", "out", "read-only"):
        core.relu_forward(ro, x)
    with raises(ValueError, "relu", "C-contiguous"):
        core.relu_forward(np.zeros(20, np.float32)[::2], x)
    with raises(ValueError, "softmax", "outer", ">= 0"):
        core.softmax_forward(x, x, -1, 5, -2)
    with raises(ValueError, "softmax", "x", "10 elements", "expected 12"):
        core.softmax_forward(x, x, 3, 4, 1)
    with raises(ValueError, "softmax", "overflows"):
        core.softmax_forward(x, x, 2**40, 2**40, 2**40)
    with raises(ValueError, "gemm", "a"):
        core.gemm(np.zeros(4, np.float32), x, x, 2, 2, 3, False, False, 1.0, 0.0, None, 0, 0, False)
    with raises(ValueError, "gemm", "activation"):
        core.gemm(np.zeros(4, np.float32), x, x, 2, 2, 5, False, False, 1.0, 0.0, None, 0, 9, False)
    with raises(ValueError, "cross_entropy", "target"):
        core.cross_entropy_forward(None, x, np.zeros(3, np.int64), 2, 5, 1, 1, -100, 0.0)
    with raises(ValueError, "pointwise_loss", "kind"):
        core.pointwise_loss_forward(None, x, x, 42, 1, 0.0, 1)
    with raises(TypeError, "sgd_step", "params[0]", "NumPy array"):
        core.sgd_step([[1.0, 2.0]], [x], [None], [True], 0.1, 0.0, 0.0, 0.0, False, False)
    pool_shape = (2, 4, 4, 2, 2, 2, 2, 2, 2, 0, 0, 1, 1)
    with raises(ValueError, "avg_pool2d", "out", "3 elements", "expected 8"):
        core.avg_pool2d_forward(np.zeros(3, np.float32), np.zeros(32, np.float32), pool_shape, True, 0)
    with raises(ValueError, "adaptive_avg_pool2d_backward", "grad", "expected 8"):
        core.adaptive_avg_pool2d_backward(np.zeros(32, np.float32), np.zeros(5, np.float32), pool_shape)
    with raises(ValueError, "conv2d", "groups"):
        core.conv2d_forward(x, x, x, None, (1, 3, 2, 2, 2, 1, 1, 2, 2, 1, 1, 0, 0, 1, 1, 2))
    with raises(ValueError, "adam_step", "steps"):
        core.adam_step([x], [x], [x.copy()], [x.copy()], None, [0], 0.1, 0.9, 0.99, 1e-8, 0.0, False, False, False)


def test_binary_cross_entropy_needs_probabilities():
    p = np.array([0.2, 1.5, 0.3], np.float32)
    with raises(ValueError, "binary_cross_entropy", "input", "[0, 1]", "1.5", "index 1", "(3,)"):
        ops.binary_cross_entropy(p, np.zeros(3, np.float32))
    with raises(ValueError, "binary_cross_entropy_backward", "input", "-0.5"):
        ops.binary_cross_entropy_backward(np.float32(1), np.array([-0.5, 0.5]), np.zeros(2))
    assert np.isnan(ops.binary_cross_entropy(np.array([0.5, np.nan], np.float32), np.zeros(2, np.float32)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binary_cross_entropy_names_the_first_bad_probability(backend, dtype):
    """The check runs a chunk of 16384 at a time on every thread: the first bad value
    is found wherever it lies, whatever lies in the later chunks, and NaN passes."""
    n = 5 * 16384 + 7
    for first in (0, 16383, 16384, 2 * 16384 + 5, n - 1):
        p = np.full(n, 0.5, dtype)
        p[3] = np.nan
        p[first] = -0.25
        p[first + 1:][::997] = 2.0  # later ones, some in later chunks
        for fn, args in ((ops.binary_cross_entropy, (p, np.zeros(n, dtype))),
                         (ops.binary_cross_entropy_backward, (dtype(1), p, np.zeros(n, dtype)))):
            with raises(ValueError, fn.__name__, "input", "-0.25", f"index {first}", f"({n},)"):
                fn(*args)

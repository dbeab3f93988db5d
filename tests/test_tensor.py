"""Tensor and autograd: every op's gradient by finite differences, zero-copy
views, no_grad, deep graphs without recursion, clear errors."""

from __future__ import annotations

import numpy as np
import pytest

import shenjing
from shenjing import functional as F
from shenjing import gradcheck, tensor

from helpers import raises

R = np.random.default_rng(5)


def rand(*shape, positive=False):
    a = R.standard_normal(shape)
    return np.abs(a) + 0.5 if positive else a


OPS = {
    "add": (lambda a, b: a + b, [rand(3, 4), rand(4)]),
    "sub": (lambda a, b: a - b, [rand(3, 1), rand(3, 4)]),
    "mul": (lambda a, b: a * b, [rand(2, 3), rand(2, 3)]),
    "div": (lambda a, b: a / b, [rand(2, 3), rand(2, 3, positive=True)]),
    "neg_pow": (lambda a: -(a ** 3), [rand(5)]),
    "matmul": (lambda a, b: a @ b, [rand(3, 4), rand(4, 5)]),
    "matmul_batched": (lambda a, b: a @ b, [rand(2, 3, 4), rand(4, 2)]),
    "matmul_broadcast": (lambda a, b: a @ b, [rand(2, 1, 3, 4), rand(5, 4, 2)]),
    "matmul_vector": (lambda a, b: a @ b, [rand(3, 4), rand(4)]),
    "sum_axis": (lambda a: a.sum(axis=1), [rand(3, 4)]),
    "mean_keepdims": (lambda a: a.mean(axis=0, keepdims=True), [rand(3, 4)]),
    "max": (lambda a: a.max(axis=1), [rand(3, 4)]),
    "reshape_transpose": (lambda a: a.reshape(4, 3).transpose(0, 1) * 2, [rand(3, 4)]),
    "permute": (lambda a: a.permute(2, 0, 1), [rand(2, 3, 4)]),
    "getitem": (lambda a: a[1:, ::2] * 3, [rand(3, 4)]),
    "fancy_index": (lambda a: a[np.array([0, 2, 0])], [rand(3, 4)]),
    "cat": (lambda a, b: shenjing.cat([a, b], dim=1), [rand(2, 3), rand(2, 2)]),
    "stack": (lambda a, b: shenjing.stack([a, b], dim=0), [rand(2, 3), rand(2, 3)]),
    "exp_log": (lambda a: (a.exp() + 1).log(), [rand(3, 3)]),
    "sqrt_abs": (lambda a: a.abs().sqrt(), [rand(3, 3, positive=True)]),
    "clamp": (lambda a: a.clamp(-0.5, 0.5), [rand(4, 4) * 0.3 + 0.7]),
    "relu": (F.relu, [rand(3, 5) + 0.05]),
    "sigmoid": (F.sigmoid, [rand(3, 5)]),
    "tanh": (F.tanh, [rand(3, 5)]),
    "gelu": (F.gelu, [rand(3, 5)]),
    "softmax": (lambda a: F.softmax(a, dim=1), [rand(3, 5)]),
    "log_softmax": (lambda a: F.log_softmax(a, dim=0), [rand(3, 5)]),
    "linear": (F.linear, [rand(4, 3), rand(5, 3), rand(5)]),
    "conv2d": (lambda x, w, b: F.conv2d(x, w, b, padding=1), [rand(2, 2, 5, 4), rand(3, 2, 3, 3), rand(3)]),
    "max_pool2d": (lambda x: F.max_pool2d(x, 2), [rand(1, 2, 4, 4)]),
    "avg_pool2d": (lambda x: F.avg_pool2d(x, 2, padding=1), [rand(1, 2, 4, 4)]),
    "cross_entropy": (lambda x: F.cross_entropy(x, np.array([1, 0, 3])), [rand(3, 4)]),
    "mse": (lambda x: F.mse_loss(x, np.ones((3, 4))), [rand(3, 4)]),
    "batch_norm_train": (lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True), [rand(4, 3), rand(3), rand(3)]),
}


@pytest.mark.parametrize("name", OPS)
def test_gradients_by_finite_differences(name):
    fn, inputs = OPS[name]
    assert gradcheck(fn, inputs)


def test_zero_copy_both_ways():
    a = np.arange(6, dtype=np.float32).reshape(2, 3)
    t = tensor(a)
    assert np.shares_memory(t.numpy(), a)
    t.numpy()[0, 0] = 42
    assert a[0, 0] == 42
    assert tensor([1.0, 2.0]).dtype == np.float32
    assert tensor(np.zeros(2)).dtype == np.float64


def test_backward_accumulates_into_leaves_and_needs_a_scalar():
    x = tensor(np.array([1.0, 2.0, 3.0], np.float32), requires_grad=True)
    (x * x).sum().backward()
    (x * 2).sum().backward()
    np.testing.assert_allclose(x.grad, 2 * x.data + 2)
    with raises(RuntimeError, "backward", "scalar", "(3,)"):
        (x * 2).backward()
    with raises(RuntimeError, "does not require grad"):
        tensor([1.0]).backward()


def test_no_grad_builds_no_graph():
    x = tensor([1.0, 2.0], requires_grad=True)
    with shenjing.no_grad():
        y = x * 3
    assert not y.requires_grad
    assert y.is_leaf


def test_deep_graph_has_no_recursion_limit():
    x = tensor(np.ones(3, np.float32), requires_grad=True)
    y = x
    for _ in range(20000):
        y = y * 1.0001
    y.sum().backward()
    np.testing.assert_allclose(x.grad, 1.0001 ** 20000, rtol=1e-3)


def test_shared_subexpressions_get_their_gradient_once():
    x = tensor([2.0], requires_grad=True)
    y = x * x
    (y + y).sum().backward()
    np.testing.assert_allclose(x.grad, [8.0])


def test_detach_and_item():
    x = tensor([3.0], requires_grad=True)
    assert not x.detach().requires_grad
    assert (x * 2).item() == 6.0
    with raises(ValueError, "item", "(2,)"):
        tensor([1.0, 2.0]).item()


def test_matmul_shape_error():
    with raises(ValueError, "matmul", "(2, 3)", "(4, 2)"):
        tensor(np.zeros((2, 3))) @ tensor(np.zeros((4, 2)))


def test_manual_seed_makes_initialisation_reproducible():
    shenjing.manual_seed(3)
    a = shenjing.nn.Linear(4, 3).weight.data.copy()
    shenjing.manual_seed(3)
    b = shenjing.nn.Linear(4, 3).weight.data.copy()
    np.testing.assert_array_equal(a, b)


def test_detect_anomaly_names_the_first_op_that_made_nan():
    x = tensor(np.array([1.0, -1.0, 4.0], np.float32), requires_grad=True)
    with raises(FloatingPointError, "detect_anomaly", "sqrt", "forward", "1 NaN", "input 0"):
        with shenjing.detect_anomaly():
            (x.sqrt() * 2).sum()
    y = (x.sqrt() * 2).sum()  # outside: NaN flows silently, as in NumPy
    assert np.isnan(y.data)


def test_detect_anomaly_checks_gradients():
    x = tensor(np.array([0.0, 1.0], np.float32), requires_grad=True)
    with shenjing.detect_anomaly():
        y = x.sqrt().sum()  # sqrt(0) is fine; its gradient 1/(2 sqrt 0) is not
        with raises(FloatingPointError, "sqrt", "backward", "Inf"):
            y.backward()


def test_shape_errors_name_the_op():
    """NumPy's shape errors come back naming the op and the shapes it was given."""
    a = shenjing.tensor(np.ones((2, 3), np.float32), requires_grad=True)
    with raises(ValueError, "cat", "at least one"):
        shenjing.cat([])
    with raises(ValueError, "cat", "(2, 3), (2, 4)"):
        shenjing.cat([a, shenjing.tensor(np.ones((2, 4), np.float32))], dim=0)
    with raises(ValueError, "cat", "axis 5"):
        shenjing.cat([a, a], dim=5)
    with raises(ValueError, "stack", "at least one"):
        shenjing.stack([])
    with raises(ValueError, "stack", "(2, 3), (3, 2)"):
        shenjing.stack([a, shenjing.tensor(np.ones((3, 2), np.float32))])
    with raises(ValueError, "reshape", "(4,2)", "(2, 3)"):
        a.reshape(4, 2)
    for axes in [(0, 0), (0,), (0, 2), (1.5, 0)]:
        with raises(ValueError, "permute", "(2, 3)"):
            a.permute(*axes)
    assert a.permute(-1, 0).shape == (3, 2) and shenjing.cat([a, a], dim=-1).shape == (2, 6)


def test_comparisons_truth_values_and_powers(rng):
    """== and != are elementwise (they compared identities: tensor == 1 was False), a tensor
    of more than one value has no truth value (it was always True), a number ** tensor has
    the gradient b^x log b, x ** 0 has gradient 0 at x = 0 (0 * inf was NaN), and item
    assignment is refused by name; tensors stay usable as dict keys."""
    a = tensor(np.array([0.0, 1.0, 2.0], np.float32), requires_grad=True)
    np.testing.assert_array_equal((a == 1).numpy(), [False, True, False])
    np.testing.assert_array_equal((a != a).numpy(), [False, False, False])
    assert {a: "key"}[a] == "key"
    assert bool(tensor(np.ones(1, np.float32))) and not bool(tensor(np.float32(0)))
    for shape in [(3,), (0,)]:
        with raises(ValueError, "bool", str(shape), "ambiguous"):
            bool(tensor(np.ones(shape, np.float32)))
    y = 2.5 ** a
    y.sum().backward()
    np.testing.assert_allclose(y.numpy(), 2.5 ** a.numpy(), rtol=1e-6)
    np.testing.assert_allclose(a.grad, 2.5 ** a.numpy() * np.log(2.5), rtol=1e-6)
    a.grad = None
    (a ** 0).sum().backward()
    np.testing.assert_array_equal(a.grad, np.zeros(3, np.float32))
    with raises(TypeError, "item assignment"):
        a[0] = 1.0


def test_axes_out_of_range_are_refused():
    """An axis outside [-ndim, ndim) is an error (it wrapped round: a matrix's sum over axis 5
    summed axis 1, its flatten(5) added a dimension); a 0-d tensor takes 0 and -1, as PyTorch's."""
    m = tensor(np.arange(6, dtype=np.float32).reshape(2, 3), requires_grad=True)
    for call, op in [(lambda: m.sum(axis=5), "sum"), (lambda: m.max(axis=-3), "max"), (lambda: m.mean(axis=2), "mean"),
                     (lambda: m.flatten(5), "flatten"), (lambda: m.transpose(0, 5), "transpose")]:
        with raises(ValueError, op, "out of range", "2 dimensions"):
            call()
    with raises(ValueError, "sum", "twice"):
        m.sum(axis=(0, -2))
    with raises(TypeError, "sum", "int"):
        m.sum(axis=1.0)
    with raises(ValueError, "max", "(0, 3)", "empty axis"):
        tensor(np.ones((0, 3), np.float32)).max(axis=0)
    np.testing.assert_array_equal(m.sum(axis=-1).numpy(), [3, 12])
    assert m.flatten(-1).shape == (2, 3) and m.transpose(-1, 0).shape == (3, 2)
    s = tensor(np.float32(3), requires_grad=True)
    assert s.sum(axis=0).item() == 3 and s.max(axis=-1).item() == 3 and s.flatten().shape == (1,)


def test_mean_of_no_values_is_nan():
    """As NumPy and PyTorch (a count floored at 1 had made it 0), and its gradient is empty."""
    e = tensor(np.ones((0, 3), np.float32), requires_grad=True)
    assert np.isnan(e.mean().item())
    assert np.isnan(e.mean(axis=0).numpy()).all() and e.mean(axis=1).shape == (0,)
    e.mean(axis=0).sum().backward()
    assert e.grad.shape == (0, 3)

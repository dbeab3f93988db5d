"""Reverse-mode automatic differentiation: a tape of (parents, backward) pairs.

Every differentiable op makes its output with ``record(data, parents,
backward)``; ``backward(grad)`` returns one gradient per parent (or None).
``Tensor.backward`` orders the graph once, iteratively (no recursion limit on
deep graphs), and walks it in reverse. Gradients of broadcast operands are
summed back to their shapes here, once for all ops.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Callable, Optional, Sequence

import numpy as np

_state = threading.local()


def is_grad_enabled() -> bool:
    return getattr(_state, "enabled", True)


@contextlib.contextmanager
def no_grad():
    """Inside, ops record nothing: no graph is built and outputs need no gradient."""
    previous = is_grad_enabled()
    _state.enabled = False
    try:
        yield
    finally:
        _state.enabled = previous


@contextlib.contextmanager
def enable_grad():
    previous = is_grad_enabled()
    _state.enabled = True
    try:
        yield
    finally:
        _state.enabled = previous


def is_anomaly_enabled() -> bool:
    return getattr(_state, "anomaly", False)


@contextlib.contextmanager
def detect_anomaly():
    """Inside, every op checks its output (and every backward its gradients) for
    NaN and Inf, and the first one that makes them raises FloatingPointError
    naming the op and describing its inputs."""
    previous = is_anomaly_enabled()
    _state.anomaly = True
    try:
        yield
    finally:
        _state.anomaly = previous


def _op_name(backward) -> str:
    # the function that recorded the op: "relu.<locals>.<lambda>" -> "relu"
    name = getattr(backward, "__qualname__", "op").split(".<locals>")[0]
    return name.replace("Tensor.", "").strip("_") or "op"


def _describe(arrays) -> str:
    parts = []
    for i, a in enumerate(arrays):
        a = np.asarray(a)
        if a.dtype.kind != "f" or a.size == 0:
            parts.append(f"input {i}: shape {a.shape}, dtype {a.dtype}")
            continue
        finite = a[np.isfinite(a)]
        stats = f"min {finite.min():.4g}, max {finite.max():.4g}, mean {finite.mean():.4g}" if finite.size else "no finite values"
        parts.append(f"input {i}: shape {a.shape}, {int(np.isnan(a).sum())} NaN, {int(np.isinf(a).sum())} Inf, {stats}")
    return "; ".join(parts)


def _check_finite(data, arrays, backward, stage: str) -> None:
    data = np.asarray(data)
    if data.dtype.kind != "f" or np.isfinite(data).all():
        return
    already = [i for i, a in enumerate(arrays) if np.asarray(a).dtype.kind == "f" and not np.isfinite(a).all()]
    origin = f" (input {already[0]} was already non-finite)" if already else ""
    raise FloatingPointError(f"detect_anomaly: {_op_name(backward)} {stage} produced {int(np.isnan(data).sum())} NaN "
                             f"and {int(np.isinf(data).sum())} Inf values in shape {data.shape}{origin}; "
                             + _describe(arrays))


def unbroadcast(grad: np.ndarray, shape: tuple) -> np.ndarray:
    """Sum ``grad`` over the axes that broadcasting added or stretched to reach ``shape``."""
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(i for i, n in enumerate(shape) if n == 1 and grad.shape[i] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


def record(data: np.ndarray, parents: Sequence, backward: Callable[[np.ndarray], Sequence[Optional[np.ndarray]]]):
    """The output Tensor of an op: tracked when grad is enabled and a parent needs a gradient."""
    needs = False
    if getattr(_state, "enabled", True):
        for p in parents:  # (a loop: any() over a generator costs a frame and its closing)
            if p.requires_grad:
                needs = True
                break
    if getattr(_state, "anomaly", False):
        _check_finite(data, [p.data for p in parents], backward, "forward")
    Tensor = _tensor_class()
    if type(data) is np.ndarray and data.dtype in _FLOATS:  # an op's result: no checks or conversions needed
        out = object.__new__(Tensor)
        out.data, out.grad, out.requires_grad, out._parents, out._backward = data, None, needs, (), None
    else:
        out = Tensor(data, requires_grad=needs)
    if needs:
        out._parents = tuple(parents)
        out._backward = backward
    return out


_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


_TENSOR = None


def _tensor_class():
    """shenjing.Tensor, looked up once (tensor.py imports this module, so not at import time)."""
    global _TENSOR
    if _TENSOR is None:
        from .tensor import Tensor
        _TENSOR = Tensor
    return _TENSOR


def _topological_order(root) -> list:
    """Nodes that lead to ``root`` and need gradients, parents before children."""
    order, seen = [], set()
    stack = [(root, False)]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        stack.append((node, True))
        for parent in node._parents:
            if parent.requires_grad and id(parent) not in seen:
                stack.append((parent, False))
    return order


def run_backward(root, grad: np.ndarray) -> None:
    grads = {id(root): grad}
    anomaly = is_anomaly_enabled()
    with np.errstate(all="ignore"):  # NaN and Inf are values here; detect_anomaly reports them
        for node in reversed(_topological_order(root)):
            g = grads.pop(id(node), None)
            if g is None:
                continue
            if node._backward is None:  # a leaf: accumulate, as PyTorch does
                node.grad = g.copy() if node.grad is None else node.grad + g
                continue
            parent_grads = node._backward(g)
            for parent, pg in zip(node._parents, parent_grads):
                if pg is None or not parent.requires_grad:
                    continue
                if anomaly:
                    _check_finite(pg, [g] + [p.data for p in node._parents], node._backward, "backward")
                if type(pg) is not np.ndarray:
                    pg = np.asarray(pg)
                shape = parent.data.shape
                if pg.shape != shape:
                    pg = unbroadcast(pg, shape)
                if pg.dtype != parent.data.dtype:
                    pg = pg.astype(parent.data.dtype)
                key = id(parent)
                grads[key] = pg if key not in grads else grads[key] + pg


def gradcheck(fn: Callable, inputs: Sequence, eps: float = 1e-6, rtol: float = 1e-4, atol: float = 1e-6) -> bool:
    """Compare the gradients of ``sum(w * fn(*inputs))`` (random w) with central
    finite differences in float64. Raises AssertionError naming the input on a mismatch."""
    from .tensor import Tensor

    rng = np.random.default_rng(0)
    xs = [Tensor(np.array(x.data if isinstance(x, Tensor) else x, dtype=np.float64), requires_grad=True) for x in inputs]
    out = fn(*xs)
    weights = rng.standard_normal(out.shape)
    (out * Tensor(weights)).sum().backward()
    for index, x in enumerate(xs):
        numeric = np.zeros_like(x.data)
        flat, nflat = x.data.reshape(-1), numeric.reshape(-1)
        for i in range(flat.size):
            old = flat[i]
            flat[i] = old + eps
            with no_grad():
                plus = float(np.sum(weights * fn(*xs).data))
            flat[i] = old - eps
            with no_grad():
                minus = float(np.sum(weights * fn(*xs).data))
            flat[i] = old
            nflat[i] = (plus - minus) / (2 * eps)
        analytic = x.grad if x.grad is not None else np.zeros_like(x.data)
        if not np.allclose(analytic, numeric, rtol=rtol, atol=atol):
            worst = np.max(np.abs(analytic - numeric))
            raise AssertionError(f"gradcheck: input {index} (shape {x.shape}): analytic and numeric gradients "
                                 f"differ by up to {worst:.3g}")
    return True

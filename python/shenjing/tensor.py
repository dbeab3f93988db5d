"""Tensor: a NumPy array on the CPU, with a gradient and a place on the tape.

``shenjing.tensor(a)`` shares memory with a float32 C-contiguous ``a``, and
``t.numpy()`` is a view. Arithmetic broadcasts as NumPy does; every op is
differentiable (see autograd.py). Elementwise arithmetic runs in NumPy; the
layers' heavy ops (GEMM, convolution, pooling, activations, losses) call
``shenjing.ops``.
"""

from __future__ import annotations

import builtins
import math
import numbers
import operator
from typing import Optional, Sequence, Union

import numpy as np

from . import autograd, ops

ArrayLike = Union["Tensor", np.ndarray, numbers.Number, Sequence]


def _as_data(value, dtype=None) -> np.ndarray:
    if isinstance(value, Tensor):
        return value.data
    a = np.asarray(value)
    if dtype is not None:
        return np.asarray(a, dtype=dtype)
    if a.dtype.kind == "f":
        # Python floats and lists become float32, the default dtype (as in PyTorch)
        return a if isinstance(value, np.ndarray) or a.dtype != np.float64 else a.astype(np.float32)
    if a.dtype.kind in "biu":
        return a
    raise TypeError(f"tensor: data must be numeric, got dtype {a.dtype}")


class Tensor:
    """An n-dimensional array with an optional gradient."""

    __slots__ = ("data", "grad", "requires_grad", "_parents", "_backward", "__weakref__")
    __array_priority__ = 1000  # numpy_array + tensor calls Tensor.__radd__

    def __init__(self, data, requires_grad: bool = False, dtype=None):
        a = _as_data(data, dtype)
        if a.dtype.kind == "f" and a.dtype not in (np.float32, np.float64):
            a = a.astype(np.float32)
        if requires_grad and a.dtype.kind != "f":
            raise TypeError(f"tensor: only floating-point tensors can require gradients, got dtype {a.dtype}")
        self.data = a
        self.grad: Optional[np.ndarray] = None
        self.requires_grad = bool(requires_grad)
        self._parents: tuple = ()
        self._backward = None

    # --- NumPy views and basic properties -----------------------------------------------
    @property
    def shape(self) -> tuple:
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def ndim(self) -> int:
        return self.data.ndim

    def size(self, dim: Optional[int] = None):
        return self.data.shape if dim is None else self.data.shape[dim]

    def numel(self) -> int:
        return self.data.size

    def __len__(self) -> int:
        return len(self.data)

    def numpy(self) -> np.ndarray:
        """The data itself (a view, not a copy)."""
        return self.data

    def item(self):
        if self.data.size != 1:
            raise ValueError(f"item: only one-element tensors can be converted, got shape {self.shape}")
        return self.data.reshape(()).item()

    def detach(self) -> "Tensor":
        """The same data, cut from the graph."""
        return Tensor(self.data)

    def requires_grad_(self, flag: bool = True) -> "Tensor":
        if flag and self.data.dtype.kind != "f":
            raise TypeError(f"requires_grad_: only floating-point tensors can require gradients, got {self.dtype}")
        self.requires_grad = bool(flag)
        return self

    @property
    def is_leaf(self) -> bool:
        return self._backward is None

    def __repr__(self) -> str:
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"tensor({np.array2string(self.data, separator=', ', threshold=20)}{grad})"

    def backward(self, grad=None) -> None:
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``."""
        if not self.requires_grad:
            raise RuntimeError("backward: this tensor does not require grad and has no graph "
                               "(was it made under no_grad, or from tensors without requires_grad=True?)")
        if grad is None:
            if self.data.size != 1:
                raise RuntimeError(f"backward: grad can be implicitly created only for a scalar output, "
                                   f"this one has shape {self.shape}; pass grad=")
            g = np.ones_like(self.data)
        else:
            g = np.asarray(_as_data(grad), dtype=self.data.dtype)
            if g.shape != self.shape:
                raise ValueError(f"backward: grad has shape {g.shape}, expected {self.shape}")
        autograd.run_backward(self, g)

    # --- arithmetic ---------------------------------------------------------------------
    def _other(self, other, op: str = "arithmetic") -> "Tensor":
        if isinstance(other, Tensor):
            return other
        try:
            return Tensor(np.asarray(other, dtype=self.data.dtype if self.data.dtype.kind == "f" else None))
        except (TypeError, ValueError):
            raise TypeError(f"{op}: cannot combine a Tensor of shape {self.shape} with {type(other).__name__} "
                            f"{other!r:.60}") from None

    def __add__(self, other):
        o = self._other(other, "add")
        return autograd.record(_broadcasting("add", np.add, self.data, o.data), (self, o), lambda g: (g, g))

    __radd__ = __add__

    def __sub__(self, other):
        o = self._other(other, "sub")
        return autograd.record(_broadcasting("sub", np.subtract, self.data, o.data), (self, o), lambda g: (g, -g))

    def __rsub__(self, other):
        return self._other(other, "sub") - self

    def __mul__(self, other):
        o = self._other(other, "mul")
        a, b = self.data, o.data
        return autograd.record(_broadcasting("mul", np.multiply, a, b), (self, o), lambda g: (g * b, g * a))

    __rmul__ = __mul__

    def __truediv__(self, other):
        o = self._other(other, "div")
        a, b = self.data, o.data
        with _quiet():
            y = _broadcasting("div", np.true_divide, a, b)
        return autograd.record(y, (self, o), lambda g: (g / b, -g * a / (b * b)))

    def __rtruediv__(self, other):
        return self._other(other, "div") / self

    def __neg__(self):
        return autograd.record(-self.data, (self,), lambda g: (-g,))

    def __pow__(self, exponent):
        if isinstance(exponent, Tensor):
            return exp(log(self) * exponent)
        if not isinstance(exponent, numbers.Real):
            raise TypeError(f"pow: exponent must be a number or a Tensor, got {type(exponent).__name__}")
        a, e = self.data, exponent
        with _quiet():
            y = a ** e
        if e == 0:  # a constant: its gradient is 0, also at a = 0 (where e a^(e-1) is 0 * inf)
            return autograd.record(y, (self,), lambda g: (np.zeros_like(g),))
        return autograd.record(y, (self,), lambda g: (g * e * a ** (e - 1),))

    def __rpow__(self, base):
        """base ** self for a number base: d/dx b^x = b^x log b."""
        if not isinstance(base, numbers.Real):
            raise TypeError(f"pow: base must be a number or a Tensor, got {type(base).__name__}")
        b = np.asarray(base, dtype=self.data.dtype if self.data.dtype.kind == "f" else np.float32)
        with _quiet():
            y = b ** self.data
            log_b = np.log(b)
        return autograd.record(y, (self,), lambda g: (g * y * log_b,))

    def __matmul__(self, other):
        return matmul(self, self._other(other, "matmul"))

    def __rmatmul__(self, other):
        return matmul(self._other(other, "matmul"), self)

    # comparisons give plain boolean arrays (no gradient)
    def __lt__(self, other):
        return Tensor(self.data < _as_data(other))

    def __le__(self, other):
        return Tensor(self.data <= _as_data(other))

    def __gt__(self, other):
        return Tensor(self.data > _as_data(other))

    def __ge__(self, other):
        return Tensor(self.data >= _as_data(other))

    def __eq__(self, other):  # elementwise, as NumPy and PyTorch (it compared identities)
        return Tensor(self.data == _as_data(other))

    def __ne__(self, other):
        return Tensor(self.data != _as_data(other))

    __hash__ = object.__hash__  # (still a dict key by identity, as PyTorch's tensors are)

    def __bool__(self):  # `if loss:` on a vector is ambiguous, as in NumPy (it was always True)
        if self.data.size != 1:
            raise ValueError(f"bool: the truth value of a tensor of shape {self.shape} is ambiguous; "
                             f"use .any() or .all() on .numpy()")
        return bool(self.data.reshape(()))

    def __setitem__(self, index, value):
        raise TypeError("Tensor does not support item assignment (an in-place change would bypass autograd); "
                        "build a new tensor, or assign into .numpy() outside the graph")

    # --- reductions and shape -------------------------------------------------------------
    def sum(self, axis=None, keepdims: bool = False):
        return sum(self, axis, keepdims)

    def mean(self, axis=None, keepdims: bool = False):
        return mean(self, axis, keepdims)

    def max(self, axis=None, keepdims: bool = False):
        return max(self, axis, keepdims)

    def reshape(self, *shape):
        shape = shape[0] if len(shape) == 1 and isinstance(shape[0], (tuple, list)) else shape
        return reshape(self, tuple(shape))

    view = reshape

    def flatten(self, start_dim: int = 0):
        start = _axis(start_dim, self.ndim, "flatten")
        return reshape(self, self.shape[:builtins.max(start, 0)] + (-1,))

    def transpose(self, dim0: int = 0, dim1: int = 1):
        axes = list(range(self.ndim))
        i, j = _axis(dim0, self.ndim, "transpose"), _axis(dim1, self.ndim, "transpose")
        if self.ndim:
            axes[i], axes[j] = axes[j], axes[i]
        return permute(self, axes)

    @property
    def T(self):
        return permute(self, list(reversed(range(self.ndim))))

    def permute(self, *axes):
        axes = axes[0] if len(axes) == 1 and isinstance(axes[0], (tuple, list)) else axes
        return permute(self, axes)

    def __getitem__(self, index):
        if isinstance(index, Tensor):
            index = index.data
        out = self.data[index]
        shape, dtype = self.data.shape, self.data.dtype

        def backward(g):
            full = np.zeros(shape, dtype=dtype)
            np.add.at(full, index, g)
            return (full,)

        return autograd.record(np.array(out, copy=True) if np.shares_memory(out, self.data) else out, (self,), backward)

    # --- elementwise math ------------------------------------------------------------------
    def exp(self):
        return exp(self)

    def log(self):
        return log(self)

    def sqrt(self):
        return sqrt(self)

    def abs(self):
        return abs(self)

    def clamp(self, min=None, max=None):
        return clamp(self, min, max)

    def relu(self):
        from . import functional as F
        return F.relu(self)

    def sigmoid(self):
        from . import functional as F
        return F.sigmoid(self)

    def tanh(self):
        from . import functional as F
        return F.tanh(self)

    def softmax(self, dim: int = -1):
        from . import functional as F
        return F.softmax(self, dim)

    def log_softmax(self, dim: int = -1):
        from . import functional as F
        return F.log_softmax(self, dim)


def _quiet():
    """NaN and Inf flow through tensor math as values, as in PyTorch, without NumPy's warnings
    (shenjing.detect_anomaly finds where they start)."""
    return np.errstate(all="ignore")


def tensor(data, requires_grad: bool = False, dtype=None) -> Tensor:
    """A Tensor on ``data``; a float32 C-contiguous array is shared, not copied."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


# --- functions of tensors -----------------------------------------------------------------

def _t(x) -> Tensor:
    return x if isinstance(x, Tensor) else Tensor(x)


def exp(x):
    x = _t(x)
    with _quiet():
        y = np.exp(x.data)
    return autograd.record(y, (x,), lambda g: (g * y,))


def log(x):
    x = _t(x)
    a = x.data
    with _quiet():
        y = np.log(a)
    return autograd.record(y, (x,), lambda g: (g / a,))


def sqrt(x):
    x = _t(x)
    with _quiet():
        y = np.sqrt(x.data)
    return autograd.record(y, (x,), lambda g: (g / (2 * y),))


def abs(x):  # noqa: A001 - the name users expect
    x = _t(x)
    a = x.data
    return autograd.record(np.abs(a), (x,), lambda g: (g * np.sign(a),))


def clamp(x, min=None, max=None):  # noqa: A002
    x = _t(x)
    a = x.data
    y = np.clip(a, min, max)
    inside = np.ones_like(a, dtype=bool)
    if min is not None:
        inside &= a >= min
    if max is not None:
        inside &= a <= max
    return autograd.record(y, (x,), lambda g: (g * inside,))


def _axis(a, ndim: int, op: str) -> int:
    """One axis in [-ndim, ndim) as its index in [0, ndim) (a 0-d tensor takes 0 and -1, as in
    PyTorch, and has no axis to give back: -1)."""
    if isinstance(a, (bool, np.bool_)) or not isinstance(a, (int, np.integer)):
        raise TypeError(f"{op}: an axis must be an int, got {a!r}")
    if ndim == 0 and a in (0, -1):
        return -1
    if not -ndim <= a < ndim:  # (a % ndim had wrapped it round: sum over axis 5 of a matrix summed axis 1)
        raise ValueError(f"{op}: axis {a} is out of range for a tensor of {ndim} dimensions")
    return int(a) % ndim


def _axes(axis, ndim: int, op: str):
    if axis is None:
        return tuple(range(ndim))
    axes = [_axis(a, ndim, op) for a in (axis if isinstance(axis, (tuple, list)) else (axis,))]
    axes = tuple(a for a in axes if a >= 0)
    if len(set(axes)) != len(axes):
        raise ValueError(f"{op}: axis {axis!r} names a dimension twice")
    return axes


def sum(x, axis=None, keepdims: bool = False):  # noqa: A001
    x = _t(x)
    shape = x.shape
    axes = _axes(axis, x.ndim, "sum")
    y = np.sum(x.data, axis=axes, keepdims=keepdims)

    def backward(g):
        if not keepdims:
            g = np.expand_dims(g, axes)
        return (np.broadcast_to(g, shape),)

    return autograd.record(np.asarray(y), (x,), backward)


def mean(x, axis=None, keepdims: bool = False):
    x = _t(x)
    axes = _axes(axis, x.ndim, "mean")
    count = int(np.prod([x.shape[a] for a in axes])) if axes else 1
    # (the mean of no values is NaN, as in NumPy and PyTorch; a count floored at 1 had made it 0)
    return sum(x, axis, keepdims) * (1.0 / count if count else math.nan)


def max(x, axis=None, keepdims: bool = False):  # noqa: A001
    x = _t(x)
    axes = _axes(axis, x.ndim, "max")
    if any(x.shape[a] == 0 for a in axes):
        raise ValueError(f"max: a tensor of shape {x.shape} has no maximum along an empty axis")
    y = np.max(x.data, axis=axes, keepdims=True)
    mask = x.data == y
    share = mask / np.sum(mask, axis=axes, keepdims=True)  # ties split the gradient

    def backward(g):
        if not keepdims:
            g = np.expand_dims(g, axes)
        return (g * share,)

    return autograd.record(y if keepdims else np.squeeze(y, axis=axes), (x,), backward)


class _NamedErrors:
    """Re-raises NumPy's shape errors as ValueErrors that name the op and the shapes."""

    def __init__(self, op: str, shapes):
        self.op, self.shapes = op, shapes

    def __enter__(self):
        return self

    def __exit__(self, kind, error, trace):
        if kind is not None and issubclass(kind, (ValueError, IndexError, TypeError)):
            shapes = f" (input shapes {', '.join(str(s) for s in self.shapes)})" if self.shapes else ""
            raise ValueError(f"{self.op}: {error}{shapes}") from error
        return False


def reshape(x, shape):
    x = _t(x)
    old = x.shape
    with _NamedErrors("reshape", [old]):
        y = x.data.reshape(shape)
    return autograd.record(y, (x,), lambda g: (g.reshape(old),))


def permute(x, axes):
    x = _t(x)
    with _NamedErrors("permute", [x.shape]):
        axes = tuple(operator.index(a) for a in axes)  # ints only: 1.5 is not an axis
        if sorted(a % x.ndim for a in axes) != list(range(x.ndim)) or any(not -x.ndim <= a < x.ndim for a in axes):
            raise ValueError(f"axes {axes} are not a permutation of the {x.ndim} dimensions")
        axes = tuple(a % x.ndim for a in axes)
        inverse = tuple(np.argsort(axes))
        y = np.transpose(x.data, axes)
    return autograd.record(y, (x,), lambda g: (np.transpose(g, inverse),))


def cat(tensors, dim: int = 0):
    tensors = [_t(t) for t in tensors]
    with _NamedErrors("cat", [t.shape for t in tensors]):
        if not tensors:
            raise ValueError("needs at least one tensor")
        y = np.concatenate([t.data for t in tensors], axis=dim)
        sizes = [t.shape[dim] for t in tensors]
    bounds = np.cumsum(sizes)[:-1]
    return autograd.record(y, tuple(tensors), lambda g: tuple(np.split(g, bounds, axis=dim)))


def stack(tensors, dim: int = 0):
    tensors = [_t(t) for t in tensors]
    with _NamedErrors("stack", [t.shape for t in tensors]):
        if not tensors:
            raise ValueError("needs at least one tensor")
        y = np.stack([t.data for t in tensors], axis=dim)
    return autograd.record(y, tuple(tensors), lambda g: tuple(np.moveaxis(g, dim, 0)))


def matmul(a, b):
    """a @ b; 2-D products run on shenjing's GEMM, batched ones broadcast as NumPy."""
    a, b = _t(a), _t(b)
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: both operands need at least one dimension, got shapes {a.shape} and {b.shape}")
    if a.ndim == 1 and b.ndim == 1:
        if a.shape != b.shape:
            raise ValueError(f"matmul: vectors of shapes {a.shape} and {b.shape} have different lengths")
        return sum(a * b)
    if a.ndim == 1:
        out = matmul(reshape(a, (1, -1)), b)
        return reshape(out, out.shape[:-2] + out.shape[-1:])
    if b.ndim == 1:
        out = matmul(a, reshape(b, (-1, 1)))
        return reshape(out, out.shape[:-1])
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not match ({a.shape[-1]} != {b.shape[-2]})")
    A, B = a.data, b.data
    if a.ndim == 2 and b.ndim == 2 and a.dtype == b.dtype:
        y = ops.gemm(A, B)
        return autograd.record(y, (a, b), lambda g: (ops.gemm(g, B, trans_b=True), ops.gemm(A, g, trans_a=True)))
    y = ops.matmul(A, B)  # batched, broadcast (its errors name matmul and both shapes)

    def backward(g):
        # the transposes are views the GEMM reads as they lie; record() sums broadcast dimensions
        da = ops.matmul(g, np.swapaxes(B, -1, -2))
        db = ops.matmul(np.swapaxes(A, -1, -2), g)
        return da.astype(A.dtype, copy=False), db.astype(B.dtype, copy=False)

    return autograd.record(y, (a, b), backward)


def _broadcasting(op: str, ufunc, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """ufunc(a, b), with an error that names the op and both shapes when they do not broadcast."""
    try:
        return ufunc(a, b)
    except ValueError:
        raise ValueError(f"{op}: shapes {a.shape} and {b.shape} cannot be broadcast together") from None

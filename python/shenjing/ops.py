"""The kernels as functions: NumPy arrays in, NumPy arrays out.

Every function takes float32 or float64 arrays (other real arrays are
converted once to float32; non-contiguous, Fortran-ordered or read-only
arrays are copied once), checks shapes, allocates its output unless ``out=``
is given, and makes one call into ``shenjing._core``, which releases the
GIL. ``shenjing._reference`` has the same names in plain NumPy.

Backward functions take the gradient of the output first:
``relu_backward(grad, x)`` returns ``grad * relu'(x)``.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Optional, Sequence, Union

import numpy as np

from . import _core

__all__ = [
    "relu", "relu_backward", "leaky_relu", "leaky_relu_backward",
    "sigmoid", "sigmoid_backward", "tanh", "tanh_backward",
    "gelu", "gelu_backward",
    "softmax", "softmax_backward", "log_softmax", "log_softmax_backward",
    "mse_loss", "mse_loss_backward", "l1_loss", "l1_loss_backward",
    "smooth_l1_loss", "smooth_l1_loss_backward",
    "binary_cross_entropy", "binary_cross_entropy_backward",
    "binary_cross_entropy_with_logits", "binary_cross_entropy_with_logits_backward",
    "kl_div", "kl_div_backward",
    "cross_entropy", "cross_entropy_backward", "cross_entropy_forward_backward", "nll_loss", "nll_loss_backward",
    "sgd_step", "adam_step",
    "sum", "mean", "sum_of_squares", "copy",
    "gemm", "matmul", "linear", "linear_backward",
    "conv2d", "conv2d_backward", "conv1d", "conv1d_backward",
    "max_pool2d", "max_pool2d_backward", "avg_pool2d", "avg_pool2d_backward",
    "adaptive_avg_pool2d", "adaptive_avg_pool2d_backward",
]

_FLOAT_TYPES = (np.dtype(np.float32), np.dtype(np.float64))
_F32, _F64 = _FLOAT_TYPES  # (NumPy's native float dtypes are singletons: `is` tells them cheaply)


# --- argument handling ----------------------------------------------------------

def _float_array(x, op: str, arg: str, dtype=None) -> np.ndarray:
    """``x`` as a C-contiguous float32/float64 array, converted at most once.

    float32 and float64 keep their type (unless ``dtype`` says otherwise);
    integer and boolean arrays become float32; anything else is a TypeError.
    """
    if (type(x) is np.ndarray and x.flags.c_contiguous and x.flags.aligned
            and (x.dtype == dtype if dtype is not None else x.dtype in _FLOAT_TYPES)):
        return x  # the common case, decided without building anything
    try:
        a = x if isinstance(x, np.ndarray) else np.asarray(x)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{op}: {arg} cannot be made an array ({e})") from None
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{op}: {arg} must be a real numeric array, got dtype {a.dtype} with shape {a.shape}")
    if dtype is None:
        dtype = a.dtype if a.dtype in _FLOAT_TYPES else np.dtype(np.float32)
    _check_size(a.shape, dtype, op, f"contiguous copy of {arg}")
    return np.require(a, dtype, "CA")  # C-contiguous and aligned (a buffer at an odd byte offset is copied)


def _any_array(x, op: str, arg: str) -> np.ndarray:
    """``x`` as an array of any dtype (class targets, indices), with a clear error for ragged input."""
    if isinstance(x, np.ndarray):
        return x
    try:
        return np.asarray(x)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{op}: {arg} cannot be made an array ({e})") from None


# Below this many bytes an array is allocated without asking how much memory is free.
_ASK_ABOVE_BYTES = _core.ASK_ABOVE_BYTES  # 256 MiB; _core.product declines such results


def _available_bytes() -> Optional[int]:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _check_size(shape, dtype, op: str, what: str = "result") -> None:
    """MemoryError before allocating an array larger than the free memory: the kernel
    would write every byte, and an over-committed allocation ends in a kill, not an error."""
    nbytes = math.prod(shape) * np.dtype(dtype).itemsize  # Python ints: no overflow
    if nbytes >= _ASK_ABOVE_BYTES:
        available = _available_bytes()
        if available is not None and nbytes > available:
            raise MemoryError(f"{op}: the {what} of shape {tuple(shape)} ({np.dtype(dtype)}) needs "
                              f"{nbytes / 2**30:.1f} GiB, more than the {available / 2**30:.1f} GiB available")


# Results of at least this many elements come from _core.empty, whose buffers return to a cache
# when their arrays die: a repeated op then finds its output's pages already mapped
# (cpp/bindings/bind_buffers.cpp). Smaller ones are NumPy's, which malloc reuses. From 128 KiB
# (32k float32) malloc maps each block afresh and unmaps it on free, so every training step
# page-faulted its activations in again: the digits CNN's epoch took 0.76x the time when the
# cache started here instead of at 1 MiB (bench/ab_python.py). (32k elements: _core.product
# allocates by the same rule.)
_CACHED_ABOVE_ELEMENTS = _core.CACHED_ABOVE_ELEMENTS


def _empty(shape, dtype, op: str, what: str = "result") -> np.ndarray:
    size = math.prod(shape)
    if size < _CACHED_ABOVE_ELEMENTS:
        return np.empty(shape, dtype=dtype)
    if size * 8 >= _ASK_ABOVE_BYTES:  # 8: the widest dtype here; skips the dtype lookup
        _check_size(shape, dtype, op, what)
    return _core.empty(shape, np.dtype(dtype))


def _short(value) -> str:
    """A value for an error message: arrays by shape and dtype, other things by a short repr."""
    if isinstance(value, np.ndarray):
        return f"an array of shape {value.shape} and dtype {value.dtype}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _flag(value, op: str, name: str) -> bool:
    """A bool argument: True/False (NumPy's too) or 0/1."""
    if value is False or value is True:
        return value
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral) and value in (0, 1):
        return bool(value)
    raise TypeError(f"{op}: {name} must be a bool, got {_short(value)}")


def _sequence(value, op: str, name: str, what: str = "arrays") -> list:
    """A list or tuple argument as a list (a single array or a generator is refused)."""
    if not isinstance(value, (list, tuple)):
        raise TypeError(f"{op}: {name} must be a list or tuple of {what}, got {_short(value)}")
    return list(value)


def _output(out, shape, dtype, op: str, inputs=(), in_place: bool = True) -> np.ndarray:
    """A new output array, or ``out`` after checking it can take the result.

    ``out`` may be exactly one of ``inputs`` when ``in_place`` (an elementwise op reads
    each element before it writes it); any other overlap with an input is refused, since
    the op would overwrite values it has still to read."""
    if out is None:
        return _empty(shape, dtype, op)
    if not isinstance(out, np.ndarray):
        raise TypeError(f"{op}: out must be a NumPy array, got {type(out).__name__}")
    if out.dtype != dtype:
        raise TypeError(f"{op}: out has dtype {out.dtype}, expected {np.dtype(dtype)}")
    if tuple(out.shape) != tuple(shape):
        raise ValueError(f"{op}: out has shape {out.shape}, expected {tuple(shape)}")
    if not out.flags.c_contiguous:
        raise ValueError(f"{op}: out must be C-contiguous (shape {out.shape}, strides {out.strides})")
    if not out.flags.writeable:
        raise ValueError(f"{op}: out is read-only (shape {out.shape})")
    if not out.flags.aligned:
        raise ValueError(f"{op}: out is not aligned to its {out.dtype} elements (shape {out.shape}); the kernels "
                         f"read and write whole elements")
    for a in inputs:
        if a is None or (a is not out and a.base is None and out.base is None) or not np.may_share_memory(out, a):
            continue  # (two distinct arrays that each own their memory cannot overlap: no bounds to compute)
        same = (in_place and a.dtype == out.dtype and a.shape == out.shape and a.flags.c_contiguous
                and a.ctypes.data == out.ctypes.data)
        if not same:
            raise ValueError(f"{op}: out (shape {out.shape}) overlaps an input of shape {a.shape}; the result "
                             f"would overwrite values still to be read (pass a separate array"
                             f"{', or the input itself' if in_place else ''})")
    return out


def _same_shape(a: np.ndarray, b: np.ndarray, op: str, a_name: str, b_name: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{op}: {b_name} has shape {b.shape} but {a_name} has shape {a.shape}; they must match")


def _axis(axis, ndim: int, op: str, shape) -> int:
    if isinstance(axis, bool) or not isinstance(axis, numbers.Integral):
        raise TypeError(f"{op}: axis must be an int, got {type(axis).__name__}")
    if not -max(ndim, 1) <= axis < max(ndim, 1):
        raise ValueError(f"{op}: axis {axis} is out of range for an input of shape {tuple(shape)}")
    return int(axis) % max(ndim, 1)


def _split_at(shape, axis: int):
    """(outer, len, inner) sizes around ``axis`` of ``shape``."""
    if len(shape) == 0:
        return 1, 1, 1
    return math.prod(shape[:axis]), shape[axis], math.prod(shape[axis + 1:])


def _real(value, op: str, name: str) -> float:
    if type(value) is float and value == value:
        return value
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{op}: {name} must be a real number, got {type(value).__name__}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{op}: {name} must not be NaN")
    return value


# --- activations -------------------------------------------------------------------

def _unary(kernel, x, out, op: str) -> np.ndarray:
    x = _float_array(x, op, "x")
    y = _output(out, x.shape, x.dtype, op, (x,))
    kernel(y, x)
    return y


def _grad_pair(kernel, grad, z, out, op: str, z_name: str) -> np.ndarray:
    z = _float_array(z, op, z_name)
    grad = _float_array(grad, op, "grad", z.dtype)
    _same_shape(z, grad, op, z_name, "grad")
    dx = _output(out, z.shape, z.dtype, op, (grad, z))
    kernel(dx, grad, z)
    return dx


def relu(x, *, out=None) -> np.ndarray:
    """max(x, 0); NaN stays NaN."""
    return _unary(_core.relu_forward, x, out, "relu")


def relu_backward(grad, x, *, out=None) -> np.ndarray:
    """grad * (x > 0)"""
    return _grad_pair(_core.relu_backward, grad, x, out, "relu_backward", "x")


def _slope(negative_slope, op):
    return _real(negative_slope, op, "negative_slope")


def leaky_relu(x, negative_slope: float = 0.01, *, out=None) -> np.ndarray:
    """x if x > 0 else negative_slope * x"""
    s = _slope(negative_slope, "leaky_relu")
    return _unary(lambda y, a: _core.leaky_relu_forward(y, a, s), x, out, "leaky_relu")


def leaky_relu_backward(grad, x, negative_slope: float = 0.01, *, out=None) -> np.ndarray:
    """grad if x > 0 else negative_slope * grad"""
    s = _slope(negative_slope, "leaky_relu_backward")
    return _grad_pair(lambda d, g, a: _core.leaky_relu_backward(d, g, a, s), grad, x, out, "leaky_relu_backward", "x")


def sigmoid(x, *, out=None) -> np.ndarray:
    """1 / (1 + exp(-x))"""
    return _unary(_core.sigmoid_forward, x, out, "sigmoid")


def sigmoid_backward(grad, output, *, out=None) -> np.ndarray:
    """grad * y * (1 - y), from the forward output y"""
    return _grad_pair(_core.sigmoid_backward, grad, output, out, "sigmoid_backward", "output")


def tanh(x, *, out=None) -> np.ndarray:
    return _unary(_core.tanh_forward, x, out, "tanh")


def tanh_backward(grad, output, *, out=None) -> np.ndarray:
    """grad * (1 - y^2), from the forward output y"""
    return _grad_pair(_core.tanh_backward, grad, output, out, "tanh_backward", "output")


def _approximate(approximate, op: str) -> int:
    if not isinstance(approximate, str):
        raise TypeError(f"{op}: approximate must be 'none' or 'tanh', got {_short(approximate)}")
    if approximate == "none":
        return 0
    if approximate == "tanh":
        return 1
    raise ValueError(f"{op}: approximate must be 'none' or 'tanh', got {approximate!r}")


def gelu(x, approximate: str = "none", *, out=None) -> np.ndarray:
    """x Phi(x), or with approximate='tanh' 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))"""
    a = _approximate(approximate, "gelu")
    return _unary(lambda y, v: _core.gelu_forward(y, v, a), x, out, "gelu")


def gelu_backward(grad, x, approximate: str = "none", *, out=None) -> np.ndarray:
    a = _approximate(approximate, "gelu_backward")
    return _grad_pair(lambda d, g, v: _core.gelu_backward(d, g, v, a), grad, x, out, "gelu_backward", "x")


def _softmax_like(kernel, x, axis, out, op: str) -> np.ndarray:
    x = _float_array(x, op, "x")
    ax = _axis(axis, x.ndim, op, x.shape)
    y = _output(out, x.shape, x.dtype, op, (x,))
    kernel(y, x, *_split_at(x.shape, ax))
    return y


def _softmax_like_backward(kernel, grad, output, axis, out, op: str) -> np.ndarray:
    output = _float_array(output, op, "output")
    grad = _float_array(grad, op, "grad", output.dtype)
    _same_shape(output, grad, op, "output", "grad")
    ax = _axis(axis, output.ndim, op, output.shape)
    dx = _output(out, output.shape, output.dtype, op, (grad, output))
    kernel(dx, grad, output, *_split_at(output.shape, ax))
    return dx


def softmax(x, axis: int = -1, *, out=None) -> np.ndarray:
    """exp(x - max) / sum(exp(x - max)) along ``axis``"""
    return _softmax_like(_core.softmax_forward, x, axis, out, "softmax")


def softmax_backward(grad, output, axis: int = -1, *, out=None) -> np.ndarray:
    """y * (grad - sum(grad * y)), from the forward output y"""
    return _softmax_like_backward(_core.softmax_backward, grad, output, axis, out, "softmax_backward")


def log_softmax(x, axis: int = -1, *, out=None) -> np.ndarray:
    """x - max - log(sum(exp(x - max))) along ``axis``"""
    return _softmax_like(_core.log_softmax_forward, x, axis, out, "log_softmax")


def log_softmax_backward(grad, output, axis: int = -1, *, out=None) -> np.ndarray:
    """grad - exp(y) * sum(grad), from the forward output y"""
    return _softmax_like_backward(_core.log_softmax_backward, grad, output, axis, out, "log_softmax_backward")


# --- losses ------------------------------------------------------------------------

_REDUCTIONS = {"none": 0, "mean": 1, "sum": 2}
_KINDS = {
    "mse_loss": 0, "l1_loss": 1, "smooth_l1_loss": 2, "binary_cross_entropy": 3,
    "binary_cross_entropy_with_logits": 4, "kl_div": 5, "kl_div_log_target": 6,
}


def _reduction(reduction, op: str, allow_batchmean: bool = False) -> int:
    if not isinstance(reduction, str):
        raise TypeError(f"{op}: reduction must be a str such as 'mean', got {_short(reduction)}")
    if allow_batchmean and reduction == "batchmean":
        return 3
    if reduction not in _REDUCTIONS:
        allowed = "'none', 'mean', 'sum'" + (" or 'batchmean'" if allow_batchmean else "")
        raise ValueError(f"{op}: reduction must be one of {allowed}, got {reduction!r}")
    return _REDUCTIONS[reduction]


def _loss_grad(grad, reduction: int, shape, dtype, op: str) -> np.ndarray:
    """The incoming gradient: one per loss element (reduction none) or one scalar."""
    g = _float_array(grad, op, "grad", dtype)
    if reduction == 0:
        if g.shape != tuple(shape):
            raise ValueError(f"{op}: grad has shape {g.shape}, expected {tuple(shape)} for reduction='none'")
        return g
    if g.size != 1:
        raise ValueError(f"{op}: grad must be a scalar for a reduced loss, got shape {g.shape}")
    return g.reshape(1)


def _pointwise_inputs(input, target, op: str):
    x = _float_array(input, op, "input")
    t = _float_array(target, op, "target", x.dtype)
    _same_shape(x, t, op, "input", "target")
    return x, t


def _pointwise_forward(kind: str, input, target, reduction, param=0.0, op=None, out=None):
    op = op or kind
    r = _reduction(reduction, op, allow_batchmean=kind.startswith("kl_div"))
    x, t = _pointwise_inputs(input, target, op)
    batch = x.shape[0] if x.ndim else 1
    o = _output(out, x.shape, x.dtype, op, (x, t)) if r == 0 else None
    value = _core.pointwise_loss_forward(o, x, t, _KINDS[kind], r, param, batch)
    return o if r == 0 else np.asarray(value, dtype=x.dtype)


def _pointwise_backward(kind: str, grad, input, target, reduction, param=0.0, op=None, out=None):
    op = op or kind + "_backward"
    r = _reduction(reduction, op, allow_batchmean=kind.startswith("kl_div"))
    x, t = _pointwise_inputs(input, target, op)
    g = _loss_grad(grad, r, x.shape, x.dtype, op)
    batch = x.shape[0] if x.ndim else 1
    dx = _output(out, x.shape, x.dtype, op, (g, x, t))
    _core.pointwise_loss_backward(dx, g, x, t, _KINDS[kind], r, param, batch)
    return dx


def mse_loss(input, target, reduction: str = "mean", *, out=None):
    """(input - target)^2, reduced"""
    return _pointwise_forward("mse_loss", input, target, reduction, out=out)


def mse_loss_backward(grad, input, target, reduction: str = "mean", *, out=None):
    return _pointwise_backward("mse_loss", grad, input, target, reduction, out=out)


def l1_loss(input, target, reduction: str = "mean", *, out=None):
    """|input - target|, reduced"""
    return _pointwise_forward("l1_loss", input, target, reduction, out=out)


def l1_loss_backward(grad, input, target, reduction: str = "mean", *, out=None):
    return _pointwise_backward("l1_loss", grad, input, target, reduction, out=out)


def _beta(beta, op):
    beta = _real(beta, op, "beta")
    if beta < 0:
        raise ValueError(f"{op}: beta must be >= 0, got {beta}")
    return beta


def smooth_l1_loss(input, target, reduction: str = "mean", beta: float = 1.0, *, out=None):
    """0.5 d^2 / beta where |d| < beta, else |d| - beta / 2 (d = input - target)"""
    b = _beta(beta, "smooth_l1_loss")
    return _pointwise_forward("smooth_l1_loss", input, target, reduction, b, out=out)


def smooth_l1_loss_backward(grad, input, target, reduction: str = "mean", beta: float = 1.0, *, out=None):
    b = _beta(beta, "smooth_l1_loss_backward")
    return _pointwise_backward("smooth_l1_loss", grad, input, target, reduction, b, out=out)


def binary_cross_entropy(input, target, reduction: str = "mean", *, out=None):
    """-(t log p + (1 - t) log(1 - p)) on probabilities p, logs clamped at -100"""
    return _pointwise_forward("binary_cross_entropy", input, target, reduction, out=out)


def binary_cross_entropy_backward(grad, input, target, reduction: str = "mean", *, out=None):
    """(p - t) / max(p (1 - p), 1e-12), as PyTorch"""
    return _pointwise_backward("binary_cross_entropy", grad, input, target, reduction, out=out)


def binary_cross_entropy_with_logits(input, target, reduction: str = "mean", *, out=None):
    """max(x, 0) - x t + log(1 + exp(-|x|)): BCE of sigmoid(x), finite for every finite x"""
    return _pointwise_forward("binary_cross_entropy_with_logits", input, target, reduction, out=out)


def binary_cross_entropy_with_logits_backward(grad, input, target, reduction: str = "mean", *, out=None):
    """sigmoid(x) - t"""
    return _pointwise_backward("binary_cross_entropy_with_logits", grad, input, target, reduction, out=out)


def kl_div(input, target, reduction: str = "mean", log_target: bool = False, *, out=None):
    """t (log t - input) on log-probability input (0 where t = 0);
    exp(t) (t - input) with log_target. 'batchmean' divides the sum by input.shape[0]."""
    kind = "kl_div_log_target" if _flag(log_target, "kl_div", "log_target") else "kl_div"
    return _pointwise_forward(kind, input, target, reduction, op="kl_div", out=out)


def kl_div_backward(grad, input, target, reduction: str = "mean", log_target: bool = False, *, out=None):
    kind = "kl_div_log_target" if _flag(log_target, "kl_div_backward", "log_target") else "kl_div"
    return _pointwise_backward(kind, grad, input, target, reduction, op="kl_div_backward", out=out)


def _class_inputs(input, target, op: str, ignore_index):
    """(logits, int64 targets, N, C, inner) for input (N, C, *rest) or (C,)."""
    x = _float_array(input, op, "input")
    t = _any_array(target, op, "target")
    if t.dtype.kind not in "iu":
        if t.dtype.kind == "f" and t.shape == x.shape:
            raise TypeError(f"{op}: class-probability targets (float target of the input's shape {t.shape}) "
                            "are not supported; pass integer class indices")
        raise TypeError(f"{op}: target must hold integer class indices, got dtype {t.dtype} with shape {t.shape}")
    if isinstance(ignore_index, bool) or not isinstance(ignore_index, numbers.Integral):
        raise TypeError(f"{op}: ignore_index must be an int, got {type(ignore_index).__name__}")
    if not -2 ** 63 <= ignore_index < 2 ** 63:
        raise ValueError(f"{op}: ignore_index must fit in int64, got {ignore_index}")
    if x.ndim == 0:
        raise ValueError(f"{op}: input must have a class dimension: shape (C,), (N, C) or (N, C, d1, ...), got shape ()")
    if x.ndim == 1:
        expected = ()
        N, C, inner = 1, x.shape[0], 1
    else:
        expected = (x.shape[0],) + x.shape[2:]
        N, C, inner = x.shape[0], x.shape[1], math.prod(x.shape[2:])
    if t.shape != expected:
        raise ValueError(f"{op}: target has shape {t.shape}, expected {expected} for input of shape {x.shape}")
    if t.dtype == np.uint64 and t.size and int(t.max()) > np.iinfo(np.int64).max:
        raise ValueError(f"{op}: target holds a class index beyond int64")
    t = np.require(t, np.int64, "CA")
    return x, t, N, C, inner, expected


def _label_smoothing(value, op):
    value = _real(value, op, "label_smoothing")
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{op}: label_smoothing must be in [0, 1], got {value}")
    return value


def cross_entropy(input, target, reduction: str = "mean", ignore_index: int = -100,
                  label_smoothing: float = 0.0, *, out=None):
    """log_softmax + nll in one pass: lse(x) - x[target], with label smoothing
    (1-e) nll + e/C sum_c (lse - x_c). input: (N, C, *) logits, target: (N, *) ints.
    'mean' divides by the number of targets that are not ignore_index."""
    op = "cross_entropy"
    r = _reduction(reduction, op)
    eps = _label_smoothing(label_smoothing, op)
    x, t, N, C, inner, tshape = _class_inputs(input, target, op, ignore_index)
    o = _output(out, tshape, x.dtype, op, (x, t)) if r == 0 else None
    value = _core.cross_entropy_forward(o, x, t, N, C, inner, r, int(ignore_index), eps)
    return o if r == 0 else np.asarray(value, dtype=x.dtype)


def cross_entropy_backward(grad, input, target, reduction: str = "mean", ignore_index: int = -100,
                           label_smoothing: float = 0.0, *, out=None):
    """scale * (softmax(x) - (1-e) onehot(target) - e/C)"""
    op = "cross_entropy_backward"
    r = _reduction(reduction, op)
    eps = _label_smoothing(label_smoothing, op)
    x, t, N, C, inner, tshape = _class_inputs(input, target, op, ignore_index)
    g = _loss_grad(grad, r, tshape, x.dtype, op)
    dx = _output(out, x.shape, x.dtype, op, (g, x, t), in_place=False)
    _core.cross_entropy_backward(dx, g, x, t, N, C, inner, r, int(ignore_index), eps, False)
    return dx


def cross_entropy_forward_backward(input, target, reduction: str = "mean", ignore_index: int = -100,
                                   label_smoothing: float = 0.0, grad=1.0, *, out=None):
    """``(cross_entropy(...), cross_entropy_backward(grad, ...))`` in one pass over
    the logits: what a training step needs from its loss. reduction 'mean' or 'sum'."""
    op = "cross_entropy_forward_backward"
    r = _reduction(reduction, op)
    if r == 0:
        raise ValueError(f"{op}: reduction must be 'mean' or 'sum' (a per-sample loss needs its gradient first)")
    eps = _label_smoothing(label_smoothing, op)
    x, t, N, C, inner, tshape = _class_inputs(input, target, op, ignore_index)
    g = _loss_grad(grad, r, tshape, x.dtype, op)
    dx = _output(out, x.shape, x.dtype, op, (g, x, t), in_place=False)
    loss = _core.cross_entropy_backward(dx, g, x, t, N, C, inner, r, int(ignore_index), eps, True)
    return np.asarray(loss, dtype=x.dtype), dx


def nll_loss(input, target, reduction: str = "mean", ignore_index: int = -100, *, out=None):
    """-input[target] on log-probabilities; input (N, C, *), target (N, *) ints"""
    op = "nll_loss"
    r = _reduction(reduction, op)
    x, t, N, C, inner, tshape = _class_inputs(input, target, op, ignore_index)
    o = _output(out, tshape, x.dtype, op, (x, t)) if r == 0 else None
    value = _core.nll_loss_forward(o, x, t, N, C, inner, r, int(ignore_index))
    return o if r == 0 else np.asarray(value, dtype=x.dtype)


def nll_loss_backward(grad, input, target, reduction: str = "mean", ignore_index: int = -100, *, out=None):
    op = "nll_loss_backward"
    r = _reduction(reduction, op)
    x, t, N, C, inner, tshape = _class_inputs(input, target, op, ignore_index)
    g = _loss_grad(grad, r, tshape, x.dtype, op)
    dx = _output(out, x.shape, x.dtype, op, (g, x, t), in_place=False)
    _core.nll_loss_backward(dx, g, t, N, C, inner, r, int(ignore_index))
    return dx


# --- optimizer steps ---------------------------------------------------------------

def _state_list(arrays, op: str, name: str, n: int, dtype, writable: bool, shapes) -> list:
    arrays = _sequence(arrays, op, name)
    if len(arrays) != n:
        raise ValueError(f"{op}: {name} has {len(arrays)} arrays but params has {n}")
    if writable and all(type(a) is np.ndarray and a.dtype == dtype and a.shape == shape and a.flags.carray
                        for a, shape in zip(arrays, shapes)):
        return arrays  # the common case: C-contiguous, aligned, writable arrays of the right dtype and shape
    result = []
    for i, (a, shape) in enumerate(zip(arrays, shapes)):
        if writable:
            if not isinstance(a, np.ndarray):
                raise TypeError(f"{op}: {name}[{i}] must be a NumPy array (updated in place), got {type(a).__name__}")
            if a.dtype != dtype:
                raise TypeError(f"{op}: {name}[{i}] has dtype {a.dtype}, expected {np.dtype(dtype)} like params")
            if not a.flags.c_contiguous or not a.flags.writeable or not a.flags.aligned:
                raise ValueError(f"{op}: {name}[{i}] must be C-contiguous, aligned and writable to be updated in "
                                 f"place (shape {a.shape})")
        else:
            a = _float_array(a, op, f"{name}[{i}]", dtype)
        if a.shape != shape:
            raise ValueError(f"{op}: {name}[{i}] has shape {a.shape} but params[{i}] has shape {shape}")
        result.append(a)
    return result


def _arrays_of_shapes(arrays, shapes) -> bool:
    """Whether ``arrays`` is a list of ndarrays with exactly these shapes: an optimizer
    step then tries the C++ call first, which checks dtype, layout and writability
    itself, before touching anything, and refuses what it cannot use as it is (the
    Python checks then convert what can be converted, or name the problem)."""
    if type(arrays) is not list or len(arrays) != len(shapes):
        return False
    for a, shape in zip(arrays, shapes):  # (a loop: all() over a generator costs twice as much here)
        if type(a) is not np.ndarray or a.shape != shape:
            return False
    return True


def _shapes_of_arrays(params):
    """The shapes of a list of ndarrays (the parameters of an optimizer step's fast path), else None."""
    if type(params) is not list:
        return None
    for p in params:
        if type(p) is not np.ndarray:
            return None
    return [p.shape for p in params]


def _small_positive_ints(values) -> bool:
    for v in values:
        if type(v) is not int or not 1 <= v < 2 ** 62:
            return False
    return True


def _params(params, op: str):
    params = _sequence(params, op, "params")
    if not params:
        return params, None
    dtype = params[0].dtype if isinstance(params[0], np.ndarray) else None
    if dtype not in _FLOAT_TYPES:
        raise TypeError(f"{op}: params must be float32 or float64 arrays, got {dtype if dtype else type(params[0]).__name__}")
    params = _state_list(params, op, "params", len(params), dtype, True, [getattr(p, "shape", None) for p in params])
    return params, dtype


def _nonnegative(value, op, name):
    value = _real(value, op, name)
    if value < 0:
        raise ValueError(f"{op}: Invalid {name} value: {value} (must be >= 0)")
    return value


def sgd_step(params: Sequence[np.ndarray], grads: Sequence[np.ndarray],
             momentum_buffers: Optional[Sequence[np.ndarray]] = None, *, lr: float,
             momentum: float = 0.0, dampening: float = 0.0, nesterov: bool = False,
             weight_decay: float = 0.0, maximize: bool = False,
             first_step: Union[bool, Sequence[bool]] = False) -> None:
    """One SGD step for every parameter, in place, one C++ call (torch.optim.SGD):

        g = grad (or -grad if maximize) + weight_decay * p
        buf = g if first_step else momentum * buf + (1 - dampening) * g
        g = g + momentum * buf if nesterov else buf      (when momentum != 0)
        p = p - lr * g
    """
    op = "sgd_step"
    lr = _nonnegative(lr, op, "learning rate")
    momentum = _nonnegative(momentum, op, "momentum")
    dampening = _real(dampening, op, "dampening")
    weight_decay = _nonnegative(weight_decay, op, "weight_decay")
    nesterov, maximize = _flag(nesterov, op, "nesterov"), _flag(maximize, op, "maximize")
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError(f"{op}: Nesterov momentum requires a momentum and zero dampening")
    shapes = _shapes_of_arrays(params)
    if shapes is not None:
        n = len(params)
        fast_firsts = ([first_step] * n if first_step is False or first_step is True
                       else first_step if type(first_step) is list and all(f is False or f is True for f in first_step)
                       else None)
        if (fast_firsts is not None and len(fast_firsts) == n and _arrays_of_shapes(grads, shapes)
                and (_arrays_of_shapes(momentum_buffers, shapes) if momentum != 0 else True)):
            try:
                _core.sgd_step(params, grads, momentum_buffers if momentum != 0 else [None] * n, fast_firsts, lr,
                               momentum, dampening, weight_decay, nesterov, maximize)
                return
            except (TypeError, ValueError):
                pass  # (nothing was written) the checks below convert, or say what is wrong
    params, dtype = _params(params, op)
    n = len(params)
    shapes = [p.shape for p in params]
    grads = _state_list(grads, op, "grads", n, dtype, False, shapes)
    if momentum != 0:
        if momentum_buffers is None:
            raise ValueError(f"{op}: momentum_buffers are needed when momentum != 0")
        buffers = _state_list(momentum_buffers, op, "momentum_buffers", n, dtype, True, shapes)
    else:
        buffers = [None] * n
    if isinstance(first_step, (list, tuple)):
        if len(first_step) != n:
            raise ValueError(f"{op}: first_step has {len(first_step)} entries but params has {n}")
        firsts = [_flag(f, op, "first_step") for f in first_step]
    else:
        firsts = [_flag(first_step, op, "first_step")] * n
    _core.sgd_step(params, grads, buffers, firsts, lr, momentum, dampening, weight_decay, nesterov, maximize)


def adam_step(params: Sequence[np.ndarray], grads: Sequence[np.ndarray], exp_avgs: Sequence[np.ndarray],
              exp_avg_sqs: Sequence[np.ndarray], max_exp_avg_sqs: Optional[Sequence[np.ndarray]] = None, *,
              step: Union[int, Sequence[int]], lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8,
              weight_decay: float = 0.0, amsgrad: bool = False, maximize: bool = False,
              decoupled_weight_decay: bool = False) -> None:
    """One Adam (or AdamW, with decoupled_weight_decay) step, in place, one C++ call:

        g = grad (or -grad);  AdamW: p *= 1 - lr wd;  Adam: g += wd p
        m = beta1 m + (1 - beta1) g;  v = beta2 v + (1 - beta2) g^2;  amsgrad: vmax = max(vmax, v)
        p -= lr / (1 - beta1^t) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)

    ``step`` is t, the count after this step (1 on the first), one for all or one per parameter.
    """
    op = "adam_step"
    lr = _nonnegative(lr, op, "learning rate")
    eps = _nonnegative(eps, op, "epsilon")
    weight_decay = _nonnegative(weight_decay, op, "weight_decay")
    try:
        beta1, beta2 = betas
    except (TypeError, ValueError):
        raise TypeError(f"{op}: betas must be a pair of floats, got {betas!r}") from None
    for i, b in enumerate((beta1, beta2)):
        b = _real(b, op, f"beta parameter at index {i}")
        if not 0.0 <= b < 1.0:
            raise ValueError(f"{op}: Invalid beta parameter at index {i}: {b} (must be in [0, 1))")
    amsgrad = _flag(amsgrad, op, "amsgrad")
    maximize = _flag(maximize, op, "maximize")
    decoupled_weight_decay = _flag(decoupled_weight_decay, op, "decoupled_weight_decay")
    shapes = _shapes_of_arrays(params)
    if shapes is not None:
        fast_steps = [step] * len(params) if type(step) is int else step if type(step) is list else None
        if (fast_steps is not None and len(fast_steps) == len(params) and _small_positive_ints(fast_steps)
                and _arrays_of_shapes(grads, shapes) and _arrays_of_shapes(exp_avgs, shapes)
                and _arrays_of_shapes(exp_avg_sqs, shapes) and (not amsgrad or _arrays_of_shapes(max_exp_avg_sqs, shapes))):
            try:
                _core.adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs if amsgrad else None, fast_steps,
                                lr, float(beta1), float(beta2), eps, weight_decay, amsgrad, maximize,
                                decoupled_weight_decay)
                return
            except (TypeError, ValueError):
                pass  # (nothing was written) the checks below convert, or say what is wrong
    params, dtype = _params(params, op)
    n = len(params)
    shapes = [p.shape for p in params]
    grads = _state_list(grads, op, "grads", n, dtype, False, shapes)
    exp_avgs = _state_list(exp_avgs, op, "exp_avgs", n, dtype, True, shapes)
    exp_avg_sqs = _state_list(exp_avg_sqs, op, "exp_avg_sqs", n, dtype, True, shapes)
    maxes = _state_list(max_exp_avg_sqs, op, "max_exp_avg_sqs", n, dtype, True, shapes) if amsgrad else None
    steps = _sequence(step, op, "step", "ints") if isinstance(step, (list, tuple)) else [step] * n
    if len(steps) != n:
        raise ValueError(f"{op}: step has {len(steps)} entries but params has {n}")
    for s in steps:
        if isinstance(s, bool) or not isinstance(s, numbers.Integral):
            raise TypeError(f"{op}: step must be an int or a list of ints, got {_short(s)}")
        if not 1 <= s < 2 ** 62:
            raise ValueError(f"{op}: step must be >= 1 (the count after this step), got {s}")
    steps = [int(s) for s in steps]
    _core.adam_step(params, grads, exp_avgs, exp_avg_sqs, maxes, steps, lr, float(beta1), float(beta2), eps,
                    weight_decay, amsgrad, maximize, decoupled_weight_decay)


# --- reductions --------------------------------------------------------------------

def _sum(x, axis, keepdims, op: str):
    """(the sum of float array x over all elements or one axis, the count of summed elements);
    errors name ``op``."""
    keepdims = _flag(keepdims, op, "keepdims")
    if axis is None:
        total = np.asarray(_core.sum_all(x), dtype=x.dtype)
        return (total.reshape((1,) * x.ndim) if keepdims else total), x.size
    ax = _axis(axis, x.ndim, op, x.shape)
    if x.ndim == 0:
        return x.copy(), 1
    shape = x.shape[:ax] + x.shape[ax + 1:]
    y = _empty(shape, x.dtype, op)
    _core.sum_axis(y, x, *_split_at(x.shape, ax))
    return (np.expand_dims(y, ax) if keepdims else y), x.shape[ax]


def sum(x, axis: Optional[int] = None, keepdims: bool = False):  # noqa: A001 - NumPy's name
    """Sum of all elements (a 0-d array), or along one axis. Accumulated per
    fixed chunk in a fixed order: the same result with any thread count."""
    return _sum(_float_array(x, "sum", "x"), axis, keepdims, "sum")[0]


def mean(x, axis: Optional[int] = None, keepdims: bool = False):
    """sum / count, as ``sum``; NaN for an empty reduction, as NumPy."""
    s, count = _sum(_float_array(x, "mean", "x"), axis, keepdims, "mean")
    with np.errstate(invalid="ignore", divide="ignore"):
        return (s / s.dtype.type(count)).astype(s.dtype, copy=False)


def sum_of_squares(x) -> float:
    """sum(x * x) over all elements, accumulated in double (for gradient norms)."""
    return _core.sum_of_squares(_float_array(x, "sum_of_squares", "x"))


def copy(x, *, out=None) -> np.ndarray:
    """A copy of ``x``, split over threads: the bandwidth yardstick of the benchmarks."""
    x = _float_array(x, "copy", "x")
    y = _output(out, x.shape, x.dtype, "copy", (x,))
    _core.copy(y, x)
    return y


# --- GEMM --------------------------------------------------------------------------

_ACTIVATIONS = {None: 0, "relu": 1, "gelu": 2, "gelu_tanh": 3, "sigmoid": 4, "tanh": 5}


def gemm(a, b, *, trans_a: bool = False, trans_b: bool = False, alpha: float = 1.0, beta: float = 0.0,
         c=None, bias=None, activation: Optional[str] = None, out=None, _reference_kernel: bool = False) -> np.ndarray:
    """act(alpha * op(a) @ op(b) + beta * c + bias), op = transpose where asked.

    a: (M, K) or (K, M) with trans_a; b: (K, N) or (N, K) with trans_b;
    c: (M, N), read only when beta != 0; bias: (N,) added to every row, or
    (M, 1) added to every column; activation: None, 'relu', 'gelu',
    'gelu_tanh', 'sigmoid' or 'tanh'. ``out`` may be ``c`` itself.
    (``_reference_kernel`` runs the plain C++ loops the tests hold the fast kernel to.)
    """
    op = "gemm"
    if (c is None and bias is None and activation is None
            and (trans_a is False or trans_a is True) and (trans_b is False or trans_b is True)
            and type(alpha) is float and alpha == 1.0 and type(beta) is float and beta == 0.0
            and not _reference_kernel):
        # the plain product of two float matrices of one dtype, in one call (1x1 @ 1x1: 1.1 us
        # against 2.2 through the checks below); None when the kernel cannot take them (or out)
        # as they lie
        result = _core.product(a, b, trans_a, trans_b, out)
        if result is not None:
            return result
    trans_a, trans_b = _flag(trans_a, op, "trans_a"), _flag(trans_b, op, "trans_b")
    a = _float_array(a, op, "a")
    b = _float_array(b, op, "b", a.dtype)
    if a.ndim != 2 or b.ndim != 2:
        raise ValueError(f"{op}: a and b must be 2-D, got shapes {a.shape} and {b.shape}")
    M, K = (a.shape[1], a.shape[0]) if trans_a else a.shape
    Kb, N = (b.shape[1], b.shape[0]) if trans_b else b.shape
    if K != Kb:
        raise ValueError(f"{op}: inner dimensions differ: op(a) is ({M}, {K}) from a{a.shape}"
                         f"{' transposed' if trans_a else ''}, op(b) is ({Kb}, {N}) from b{b.shape}"
                         f"{' transposed' if trans_b else ''}")
    if activation is not None and not isinstance(activation, str) or activation not in _ACTIVATIONS:
        raise ValueError(f"{op}: activation must be one of None, 'relu', 'gelu', 'gelu_tanh', 'sigmoid', 'tanh', "
                         f"got {_short(activation)}")
    alpha = _real(alpha, op, "alpha")
    beta = _real(beta, op, "beta")
    bias_kind, bias_arr = 0, None
    if bias is not None:
        bias_arr = _float_array(bias, op, "bias", a.dtype)
        if bias_arr.shape == (N,):
            bias_kind = 1
        elif bias_arr.shape == (M, 1):
            bias_kind = 2
        else:
            raise ValueError(f"{op}: bias has shape {bias_arr.shape}, expected ({N},) or ({M}, 1) for a ({M}, {N}) result")
    result = _output(out, (M, N), a.dtype, op, (a, b, bias_arr), in_place=False)  # c may be out: it is read first
    if beta != 0.0:
        if c is None:
            raise ValueError(f"{op}: c is needed when beta != 0")
        c_arr = _float_array(c, op, "c", a.dtype)
        if c_arr.shape != (M, N):
            raise ValueError(f"{op}: c has shape {c_arr.shape}, expected ({M}, {N})")
        if c_arr is not result:
            np.copyto(result, c_arr)
    _core.gemm(result, a, b, M, N, K, bool(trans_a), bool(trans_b), alpha, beta, bias_arr, bias_kind,
               _ACTIVATIONS[activation], bool(_reference_kernel))
    return result


def _gemm_operand(x):
    """(array, transposed): ``x`` as row-major matrices the GEMM reads as they lie: ``x``
    itself, or, when the swap of its last two axes is C-contiguous (``w.T``, a Fortran-
    ordered matrix, ``np.swapaxes(x, -1, -2)``), that swap read transposed; else a copy."""
    if not x.flags.aligned:
        return np.require(x, None, "CA"), False
    if x.flags.c_contiguous:
        return x, False
    swapped = np.swapaxes(x, -1, -2)
    if swapped.flags.c_contiguous:
        return swapped, True
    return np.ascontiguousarray(x), False


def _batch_offsets(batch_shape, full_shape, matrix: int) -> np.ndarray:
    """Element offsets of each matrix of an operand with batch dimensions ``batch_shape``,
    broadcast to ``full_shape`` (a broadcast operand repeats its offsets)."""
    if batch_shape == full_shape:  # one matrix after another (np.broadcast_to took 4 us)
        return np.arange(0, math.prod(full_shape) * matrix, matrix, dtype=np.int64)
    index = np.arange(math.prod(batch_shape), dtype=np.int64).reshape(batch_shape)
    return np.ascontiguousarray(np.broadcast_to(index, full_shape).reshape(-1)) * np.int64(matrix)


def matmul(a, b, *, out=None) -> np.ndarray:
    """a @ b with NumPy's semantics, on shenjing's GEMM.

    A 1-D a is a row (1, K) and a 1-D b a column (K, 1), the added dimension dropped
    from the result; the dimensions before the last two are batch dimensions,
    broadcast against each other. Integer and boolean input become float32, as
    everywhere in ``ops``; two float types give float64 unless both are float32.
    Transposed views (``w.T``, ``np.swapaxes(x, -1, -2)``) are read as they lie.
    Small products of a batch run one per thread.
    """
    op = "matmul"
    if (type(a) is np.ndarray and type(b) is np.ndarray and (a.dtype is _F32 or a.dtype is _F64)
            and b.dtype is a.dtype and a.flags.c_contiguous and a.size and b.size):
        # float arrays of one dtype in one call, None when the kernel cannot take them as they
        # lie (the checks below then convert them or name the problem)
        if a.ndim == b.ndim and a.ndim >= 2:
            # two matrices, or two stacks of them with the same batch dimensions, b as it lies
            # or with its last two axes swapped (w.T, attention's q @ k^T): a 2-D product saves
            # ~5 us, a batch of one 4x4x4 product took 8.5 us through the checks below and now
            # 1.2, NumPy 0.9
            trans_b = not b.flags.c_contiguous
            bt = np.swapaxes(b, -1, -2) if trans_b else b
            if bt.flags.c_contiguous:
                result = (_core.product(a, bt, False, trans_b, out) if a.ndim == 2
                          else _core.batched_product(a, bt, trans_b, out))
                if result is not None:
                    return result
        elif a.ndim + b.ndim == 3 and out is None and b.flags.c_contiguous:
            # a vector and a matrix, as a (1, K) row or a (K, 1) column (7 us where the path
            # below took 12.5 for a 256-vector times a 256x256 matrix)
            result = (_core.product(a.reshape(1, -1), b, False, False, None) if a.ndim == 1
                      else _core.product(a, b.reshape(-1, 1), False, False, None))
            if result is not None:
                return result.reshape(-1)
    a, b = _any_array(a, op, "a"), _any_array(b, op, "b")
    for arg, x in (("a", a), ("b", b)):
        if x.dtype.kind not in "biuf":
            raise TypeError(f"{op}: {arg} must be a real numeric array, got dtype {x.dtype} with shape {x.shape}")
        if x.ndim == 0:
            raise ValueError(f"{op}: {arg} must have at least one dimension, got shapes {a.shape} and {b.shape}")
    dtype = np.result_type(*(x.dtype if x.dtype in _FLOAT_TYPES else np.float32 for x in (a, b)))
    dtype = _F32 if dtype == _F32 else _F64
    row, column = a.ndim == 1, b.ndim == 1
    A = a.reshape(1, -1) if row else a
    B = b.reshape(-1, 1) if column else b
    M, K = A.shape[-2:]
    Kb, N = B.shape[-2:]
    if K != Kb:
        raise ValueError(f"{op}: shapes {a.shape} and {b.shape} do not match: {K} (last of a) != {Kb} "
                         f"({'only' if column else 'second-to-last'} of b)")
    try:
        batch = np.broadcast_shapes(A.shape[:-2], B.shape[:-2])
    except ValueError:
        raise ValueError(f"{op}: batch dimensions of shapes {a.shape} and {b.shape} cannot be broadcast "
                         f"together") from None
    shape = batch + ((() if row else (M,)) + (() if column else (N,)))
    _check_size(shape, dtype, op, "result")
    result = _output(out, shape, dtype, op, (a, b), in_place=False)
    if result.size == 0:
        return result
    if K == 0:
        result.fill(0)
        return result
    A, trans_a = _gemm_operand(np.asarray(A, dtype=dtype))
    B, trans_b = _gemm_operand(np.asarray(B, dtype=dtype))
    if not batch:
        _core.gemm(result, A, B, M, N, K, trans_a, trans_b, 1.0, 0.0, None, 0, 0, False)
        return result
    a_offsets = _batch_offsets(A.shape[:-2], batch, M * K)
    b_offsets = _batch_offsets(B.shape[:-2], batch, K * N)
    _core.gemm_batched(result, A, B, a_offsets, b_offsets, M, N, K, trans_a, trans_b)
    return result


def _plain_matrix(a, dtype) -> bool:
    """A C-contiguous float matrix of ``dtype``: what the kernels take as it is (they check again).
    (Asked first, so that other input goes to the converting checks without a failed call.)"""
    return type(a) is np.ndarray and a.ndim == 2 and a.dtype == dtype and a.flags.c_contiguous and a.flags.aligned


def _linear_shapes(x, weight, op: str):
    """(M, N, K) for x (M, K) and weight (N, K), after checking both are matrices that agree."""
    if x.ndim != 2 or weight.ndim != 2 or x.shape[1] != weight.shape[1]:
        raise ValueError(f"{op}: x must be (M, K) and weight (N, K) with the same K, got shapes {x.shape} and "
                         f"{weight.shape}")
    return x.shape[0], weight.shape[0], x.shape[1]


def linear(x, weight, bias=None) -> np.ndarray:
    """x @ weight.T + bias, a linear layer's forward: x (M, K), weight (N, K), bias (N,) or None -> (M, N)."""
    op = "linear"
    if type(x) is np.ndarray and x.dtype in _FLOAT_TYPES and _plain_matrix(x, x.dtype) \
            and _plain_matrix(weight, x.dtype) and x.shape[1] == weight.shape[1] and (
            bias is None or type(bias) is np.ndarray and bias.shape == (weight.shape[0],)):
        M, N = x.shape[0], weight.shape[0]
        out = _empty((M, N), x.dtype, op)
        try:
            _core.gemm(out, x, weight, M, N, x.shape[1], False, True, 1.0, 0.0, bias, 0 if bias is None else 1, 0,
                       False)
            return out
        except (TypeError, ValueError):
            pass  # a dtype or layout the kernel does not take: gemm converts it, or says what is wrong
    x = _float_array(x, op, "x")
    weight = _float_array(weight, op, "weight", x.dtype)
    M, N, K = _linear_shapes(x, weight, op)
    if bias is not None:
        bias = _float_array(bias, op, "bias", x.dtype)
        if bias.shape != (N,):
            raise ValueError(f"{op}: bias has shape {bias.shape}, expected ({N},) for weight of shape {weight.shape}")
    return gemm(x, weight, trans_b=True, bias=bias)


def linear_backward(grad, x, weight, *, input_grad: bool = True, weight_grad: bool = True, bias_grad: bool = True):
    """(dx, dw, db) of y = x @ weight.T + bias for grad = dL/dy (M, N), x (M, K), weight (N, K):
    dx = grad @ weight, dw = grad.T @ x, db = grad summed over rows; each None unless asked for.
    One C++ call for all three."""
    op = "linear_backward"
    if type(grad) is np.ndarray and grad.dtype in _FLOAT_TYPES and _plain_matrix(grad, grad.dtype) \
            and _plain_matrix(x, grad.dtype) and _plain_matrix(weight, grad.dtype) and x.shape[1] == weight.shape[1] \
            and grad.shape == (x.shape[0], weight.shape[0]) and type(input_grad) is bool \
            and type(weight_grad) is bool and type(bias_grad) is bool:
        (M, K), N = x.shape, weight.shape[0]
        dtype = grad.dtype
        dx = _empty((M, K), dtype, op) if input_grad else None
        dw = _empty((N, K), dtype, op) if weight_grad else None
        db = _empty((N,), dtype, op) if bias_grad else None
        try:
            _core.linear_backward(grad, x, weight, dx, dw, db, M, N, K)
            return dx, dw, db
        except (TypeError, ValueError):
            pass  # (the outputs are new arrays) the checks below convert, or say what is wrong
    input_grad, weight_grad = _flag(input_grad, op, "input_grad"), _flag(weight_grad, op, "weight_grad")
    bias_grad = _flag(bias_grad, op, "bias_grad")
    grad = _float_array(grad, op, "grad")
    x = _float_array(x, op, "x", grad.dtype)
    weight = _float_array(weight, op, "weight", grad.dtype)
    M, N, K = _linear_shapes(x, weight, op)
    if grad.shape != (M, N):
        raise ValueError(f"{op}: grad has shape {grad.shape}, expected ({M}, {N}) for x {x.shape} and weight "
                         f"{weight.shape}")
    return (gemm(grad, weight) if input_grad else None, gemm(grad, x, trans_a=True) if weight_grad else None,
            _sum(grad, 0, False, op)[0] if bias_grad else None)


# --- convolution ---------------------------------------------------------------------

_MAX_EXTENT = 2 ** 31 - 1  # sizes, strides and paddings past this are refused before they reach C++


def _pair(value, op: str, name: str, minimum: int):
    """An int or a pair of ints, each in [minimum, 2^31), as a pair."""
    if type(value) is int and minimum <= value <= _MAX_EXTENT:  # the common case, without the numbers ABCs
        return value, value
    if type(value) is tuple and len(value) == 2 and type(value[0]) is int and type(value[1]) is int \
            and minimum <= value[0] <= _MAX_EXTENT and minimum <= value[1] <= _MAX_EXTENT:
        return value
    items = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(items) != 2 or any(isinstance(v, bool) or not isinstance(v, numbers.Integral) for v in items):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {_short(value)}")
    if any(v < minimum for v in items):
        raise ValueError(f"{op}: {name} must be >= {minimum}, got {value!r}")
    if any(v > _MAX_EXTENT for v in items):
        raise ValueError(f"{op}: {name} must be below 2**31, got {value!r}")
    return int(items[0]), int(items[1])


def _batched(x: np.ndarray, dims: int, op: str, name: str = "input"):
    """(x with a batch axis, whether one was added) for an input of `dims` spatial dims."""
    if x.ndim == dims + 1:
        return x[None], True
    if x.ndim != dims + 2:
        expected = "(N, C, H, W) or (C, H, W)" if dims == 2 else "(N, C, L) or (C, L)"
        raise ValueError(f"{op}: {name} must be {expected}, got shape {x.shape}")
    return x, False


def _conv_geometry(x, w, stride, padding, dilation, groups, op):
    """ConvShape tuple and the (before, after) paddings for 4-D x and w."""
    if isinstance(groups, bool) or not isinstance(groups, numbers.Integral) or groups < 1:
        raise ValueError(f"{op}: groups must be an int >= 1, got {groups!r}")
    N, C, H, W = x.shape
    if w.ndim != 4:
        raise ValueError(f"{op}: weight must be (O, C/groups, KH, KW), got shape {w.shape}")
    O, Cg, KH, KW = w.shape
    if KH < 1 or KW < 1:  # (an empty kernel made the output wider than the padded input, and the kernels crash)
        raise ValueError(f"{op}: weight {w.shape} has an empty kernel ({KH}x{KW}); each side must be at least 1")
    if C % groups or O % groups:
        raise ValueError(f"{op}: groups={groups} must divide the input channels ({C}) and the output channels ({O})")
    if Cg * groups != C:
        raise ValueError(f"{op}: weight {w.shape} expects {Cg * groups} input channels (C/groups = {Cg}, "
                         f"groups = {groups}), input {x.shape} has {C}")
    sh, sw = _pair(stride, op, "stride", 1)
    dh, dw = _pair(dilation, op, "dilation", 1)
    if isinstance(padding, str):
        if padding == "valid":
            pads = ((0, 0), (0, 0))
        elif padding == "same":
            if (sh, sw) != (1, 1):
                raise ValueError(f"{op}: padding='same' needs stride 1, got stride {stride!r}")
            th, tw = dh * (KH - 1), dw * (KW - 1)
            pads = ((th // 2, th - th // 2), (tw // 2, tw - tw // 2))  # PyTorch's split, the extra after
        else:
            raise ValueError(f"{op}: padding must be an int, a pair, 'same' or 'valid', got {padding!r}")
    else:
        ph, pw = _pair(padding, op, "padding", 0)
        pads = ((ph, ph), (pw, pw))
    ext_h, ext_w = dh * (KH - 1) + 1, dw * (KW - 1) + 1
    padded_h, padded_w = H + pads[0][0] + pads[0][1], W + pads[1][0] + pads[1][1]
    if ext_h > padded_h or ext_w > padded_w:
        raise ValueError(f"{op}: kernel {KH}x{KW} (dilated {ext_h}x{ext_w}) is larger than the padded input "
                         f"{padded_h}x{padded_w} (input {x.shape}, padding {padding!r})")
    OH = (padded_h - ext_h) // sh + 1
    OW = (padded_w - ext_w) // sw + 1
    shape = (N, C, H, W, O, KH, KW, OH, OW, sh, sw, pads[0][0], pads[1][0], dh, dw, int(groups))
    return shape


def _conv_inputs(input, weight, op, dims):
    x = _float_array(input, op, "input")
    w = _float_array(weight, op, "weight", x.dtype)
    xb, added = _batched(x, dims, op)
    if dims == 1:
        if w.ndim != 3:
            raise ValueError(f"{op}: weight must be (O, C/groups, K), got shape {w.shape}")
        xb, w = xb[:, :, None, :], w[:, :, None, :]
    return xb, w, added


def _conv_setup(input, weight, stride, padding, dilation, groups, op, dims):
    """(x, w as 4-D, the ConvShape tuple, the output's shape as the caller sees it)."""
    x, w, added = _conv_inputs(input, weight, op, dims)
    if dims == 1:  # a 1-D convolution is a 2-D one over rows of height 1
        stride, dilation = (1, stride), (1, dilation)
        padding = padding if isinstance(padding, str) else (0, padding)
    shape = _conv_geometry(x, w, stride, padding, dilation, groups, op)
    N, O, OH, OW = shape[0], shape[4], shape[7], shape[8]
    out_shape = (N, O, OW) if dims == 1 else (N, O, OH, OW)
    return x, w, shape, out_shape[1:] if added else out_shape


def _conv_forward(input, weight, bias, stride, padding, dilation, groups, out, op, dims):
    x, w, shape, out_shape = _conv_setup(input, weight, stride, padding, dilation, groups, op, dims)
    O = shape[4]
    b = None
    if bias is not None:
        b = _float_array(bias, op, "bias", x.dtype)
        if b.shape != (O,):
            raise ValueError(f"{op}: bias has shape {b.shape}, expected ({O},)")
    y = _output(out, out_shape, x.dtype, op, (x, w, b), in_place=False)
    _core.conv2d_forward(y, x, w, b, shape)
    return y


def _conv_backward(grad, input, weight, stride, padding, dilation, groups, op, dims, input_grad=True):
    x, w, shape, expected = _conv_setup(input, weight, stride, padding, dilation, groups, op, dims)
    O = shape[4]
    g = _float_array(grad, op, "grad", x.dtype)
    if g.shape != expected:
        raise ValueError(f"{op}: grad has shape {g.shape}, expected {expected} (the output's shape)")
    dx = _empty(np.shape(input), x.dtype, op) if _flag(input_grad, op, "input_grad") else None
    dw = _empty(np.shape(weight), x.dtype, op)
    db = _empty((O,), x.dtype, op)
    _core.conv2d_backward(dx, dw, db, g, x, w, shape)
    return dx, dw, db


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, out=None) -> np.ndarray:
    """2-D convolution (cross-correlation, as PyTorch): input (N, C, H, W) or (C, H, W),
    weight (O, C/groups, KH, KW), bias (O,); padding an int, a pair, 'same' or 'valid'."""
    return _conv_forward(input, weight, bias, stride, padding, dilation, groups, out, "conv2d", 2)


def conv2d_backward(grad, input, weight, stride=1, padding=0, dilation=1, groups=1, *, input_grad=True):
    """(d input, d weight, d bias) of conv2d for the output gradient ``grad``;
    d input is None (and not computed) with input_grad=False, as for a first layer."""
    return _conv_backward(grad, input, weight, stride, padding, dilation, groups, "conv2d_backward", 2, input_grad)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1, *, out=None) -> np.ndarray:
    """1-D convolution: input (N, C, L) or (C, L), weight (O, C/groups, K), bias (O,)."""
    return _conv_forward(input, weight, bias, stride, padding, dilation, groups, out, "conv1d", 1)


def conv1d_backward(grad, input, weight, stride=1, padding=0, dilation=1, groups=1, *, input_grad=True):
    """(d input, d weight, d bias) of conv1d for the output gradient ``grad`` (see conv2d_backward)."""
    return _conv_backward(grad, input, weight, stride, padding, dilation, groups, "conv1d_backward", 1, input_grad)


# --- pooling ---------------------------------------------------------------------------

def _pool_size(size, kernel, stride, pad, dilation, ceil_mode):
    """PyTorch's pooling output size (a window must start inside the input or its left padding)."""
    span = size + 2 * pad - dilation * (kernel - 1) - 1
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + pad:
        out -= 1
    return out


def _pool_geometry(x, kernel_size, stride, padding, dilation, ceil_mode, op):
    ceil_mode = _flag(ceil_mode, op, "ceil_mode")
    xb, added = _batched(x, 2, op)
    N, C, H, W = xb.shape
    KH, KW = _pair(kernel_size, op, "kernel_size", 1)
    sh, sw = _pair(kernel_size if stride is None else stride, op, "stride", 1)
    ph, pw = _pair(padding, op, "padding", 0)
    dh, dw = _pair(dilation, op, "dilation", 1)
    if ph > KH // 2 or pw > KW // 2:
        raise ValueError(f"{op}: padding {padding!r} must be at most half the kernel size {kernel_size!r}")
    OH = _pool_size(H, KH, sh, ph, dh, ceil_mode)
    OW = _pool_size(W, KW, sw, pw, dw, ceil_mode)
    if OH < 1 or OW < 1:
        raise ValueError(f"{op}: input {x.shape} is too small for kernel {KH}x{KW} with padding {padding!r} "
                         f"and dilation {dilation!r}: the output would be {OH}x{OW}")
    shape = (N * C, H, W, KH, KW, OH, OW, sh, sw, ph, pw, dh, dw)
    out_shape = (C, OH, OW) if added else (N, C, OH, OW)
    return xb, shape, out_shape


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    """Max over each window (input (N, C, H, W) or (C, H, W)); with return_indices, also
    the flat index h W + w of each maximum in its plane, as PyTorch returns."""
    op = "max_pool2d"
    x = _float_array(input, op, "input")
    xb, shape, out_shape = _pool_geometry(x, kernel_size, stride, padding, dilation, ceil_mode, op)
    y = _empty(out_shape, x.dtype, op)
    indices = _empty(out_shape, np.int64, op, "indices")
    _core.max_pool2d_forward(y, indices, xb, shape)
    return (y, indices) if _flag(return_indices, op, "return_indices") else y


def max_pool2d_backward(grad, input, indices, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    """d input of max_pool2d: ``grad`` added at the ``indices`` max_pool2d returned."""
    op = "max_pool2d_backward"
    x = _float_array(input, op, "input")
    xb, shape, out_shape = _pool_geometry(x, kernel_size, stride, padding, dilation, ceil_mode, op)
    g = _float_array(grad, op, "grad", x.dtype)
    idx = _any_array(indices, op, "indices")
    if g.shape != out_shape or idx.shape != out_shape:
        raise ValueError(f"{op}: grad {g.shape} and indices {idx.shape} must have the output's shape {out_shape}")
    if idx.dtype.kind not in "iu":
        raise TypeError(f"{op}: indices must be integers, got {idx.dtype}")
    dx = _empty(x.shape, x.dtype, op)
    _core.max_pool2d_backward(dx, g, np.require(idx, np.int64, "CA"), shape)
    return dx


def _divisor(divisor_override, op):
    if divisor_override is None:
        return 0
    if isinstance(divisor_override, bool) or not isinstance(divisor_override, numbers.Integral) or not 1 <= divisor_override <= _MAX_EXTENT:
        raise ValueError(f"{op}: divisor_override must be a positive int below 2**31, got {_short(divisor_override)}")
    return int(divisor_override)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    """Mean over each window, as PyTorch's avg_pool2d (padding counted unless
    count_include_pad=False; divisor_override replaces the count)."""
    op = "avg_pool2d"
    x = _float_array(input, op, "input")
    xb, shape, out_shape = _pool_geometry(x, kernel_size, stride, padding, 1, ceil_mode, op)
    y = _empty(out_shape, x.dtype, op)
    include_pad = _flag(count_include_pad, op, "count_include_pad")
    _core.avg_pool2d_forward(y, xb, shape, include_pad, _divisor(divisor_override, op))
    return y


def avg_pool2d_backward(grad, input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                        divisor_override=None):
    op = "avg_pool2d_backward"
    x = _float_array(input, op, "input")
    xb, shape, out_shape = _pool_geometry(x, kernel_size, stride, padding, 1, ceil_mode, op)
    g = _float_array(grad, op, "grad", x.dtype)
    if g.shape != out_shape:
        raise ValueError(f"{op}: grad has shape {g.shape}, expected the output's shape {out_shape}")
    dx = _empty(x.shape, x.dtype, op)
    include_pad = _flag(count_include_pad, op, "count_include_pad")
    _core.avg_pool2d_backward(dx, g, shape, include_pad, _divisor(divisor_override, op))
    return dx


def _adaptive_geometry(x, output_size, op):
    xb, added = _batched(x, 2, op)
    N, C, H, W = xb.shape
    sizes = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    if len(sizes) != 2:
        raise ValueError(f"{op}: output_size must be an int or a pair, got {output_size!r}")
    OH, OW = (H if sizes[0] is None else sizes[0]), (W if sizes[1] is None else sizes[1])
    for v in (OH, OW):
        if isinstance(v, bool) or not isinstance(v, numbers.Integral) or not 1 <= v <= _MAX_EXTENT:
            raise ValueError(f"{op}: output_size must hold positive ints below 2**31 (or None), "
                             f"got {_short(output_size)}")
    if (H == 0 or W == 0) and N * C:
        raise ValueError(f"{op}: input {x.shape} has an empty plane")
    shape = (N * C, H, W, 1, 1, int(OH), int(OW), 1, 1, 0, 0, 1, 1)
    return xb, shape, ((C, OH, OW) if added else (N, C, OH, OW))


def adaptive_avg_pool2d(input, output_size):
    """Average over the adaptive windows [floor(i H/OH), ceil((i+1) H/OH)); output_size (1, 1)
    is global average pooling."""
    op = "adaptive_avg_pool2d"
    x = _float_array(input, op, "input")
    xb, shape, out_shape = _adaptive_geometry(x, output_size, op)
    y = _empty(out_shape, x.dtype, op)
    _core.adaptive_avg_pool2d_forward(y, xb, shape)
    return y


def adaptive_avg_pool2d_backward(grad, input, output_size=None):
    op = "adaptive_avg_pool2d_backward"
    x = _float_array(input, op, "input")
    g = _float_array(grad, op, "grad", x.dtype)
    xb, shape, out_shape = _adaptive_geometry(x, g.shape[-2:] if output_size is None else output_size, op)
    if g.shape != out_shape:
        raise ValueError(f"{op}: grad has shape {g.shape}, expected {out_shape}")
    dx = _empty(x.shape, x.dtype, op)
    _core.adaptive_avg_pool2d_backward(dx, g, shape)
    return dx

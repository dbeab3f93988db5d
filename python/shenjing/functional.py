"""Functional forms of the layers, activations and losses, on Tensors.

Each function calls ``shenjing.ops`` for its forward and records the matching
``*_backward`` kernel on the tape. Names and arguments follow
``torch.nn.functional``.
"""

from __future__ import annotations

import math

import numpy as np

from . import ops
from .autograd import is_grad_enabled, record
from .tensor import Tensor, _t

__all__ = [
    "relu", "leaky_relu", "sigmoid", "tanh", "gelu", "softmax", "log_softmax",
    "linear", "conv1d", "conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d", "flatten", "dropout",
    "batch_norm",
    "mse_loss", "l1_loss", "smooth_l1_loss", "binary_cross_entropy", "binary_cross_entropy_with_logits",
    "cross_entropy", "nll_loss", "kl_div",
]


# --- activations ----------------------------------------------------------------------

def relu(x):
    x = _t(x)
    a = x.data
    return record(ops.relu(a), (x,), lambda g: (ops.relu_backward(g, a),))


def leaky_relu(x, negative_slope: float = 0.01):
    x = _t(x)
    a = x.data
    return record(ops.leaky_relu(a, negative_slope), (x,), lambda g: (ops.leaky_relu_backward(g, a, negative_slope),))


def sigmoid(x):
    x = _t(x)
    y = ops.sigmoid(x.data)
    return record(y, (x,), lambda g: (ops.sigmoid_backward(g, y),))


def tanh(x):
    x = _t(x)
    y = ops.tanh(x.data)
    return record(y, (x,), lambda g: (ops.tanh_backward(g, y),))


def gelu(x, approximate: str = "none"):
    x = _t(x)
    a = x.data
    return record(ops.gelu(a, approximate), (x,), lambda g: (ops.gelu_backward(g, a, approximate),))


def softmax(x, dim: int = -1):
    x = _t(x)
    y = ops.softmax(x.data, dim)
    return record(y, (x,), lambda g: (ops.softmax_backward(g, y, dim),))


def log_softmax(x, dim: int = -1):
    x = _t(x)
    y = ops.log_softmax(x.data, dim)
    return record(y, (x,), lambda g: (ops.log_softmax_backward(g, y, dim),))


# --- layers ---------------------------------------------------------------------------

def linear(x, weight, bias=None):
    """x @ weight.T + bias in one GEMM call, its backward in one more; x: (..., in), weight: (out, in)."""
    x, weight = _t(x), _t(weight)
    if x.ndim < 1 or weight.ndim != 2 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input has {x.shape[-1] if x.ndim else 0} features, expected {weight.shape[1]}; "
                         f"input shape {x.shape}, weight shape {weight.shape}")
    lead = x.shape[:-1]
    rows = math.prod(lead)  # (not -1: a reshape of 0 values cannot infer it)
    a = x.data.reshape(rows, x.shape[-1])
    w = weight.data
    parents = (x, weight) if bias is None else (x, weight, _t(bias))
    b = None if bias is None else parents[2].data
    if b is not None and b.shape != (w.shape[0],):
        raise ValueError(f"linear: bias has shape {b.shape}, expected ({w.shape[0]},) for weight of shape {w.shape}")
    y = ops.linear(a, w, b)

    def backward(g):
        dx, dw, db = ops.linear_backward(g.reshape(rows, w.shape[0]), a, w, input_grad=x.requires_grad,
                                         weight_grad=weight.requires_grad,
                                         bias_grad=b is not None and parents[2].requires_grad)
        if dx is not None:
            dx = dx.reshape(lead + (w.shape[1],))
        return (dx, dw) if b is None else (dx, dw, db)

    return record(y.reshape(lead + (w.shape[0],)) if len(lead) != 1 else y, parents, backward)


def _conv(x, weight, bias, stride, padding, dilation, groups, forward, backward_op):
    x, weight = _t(x), _t(weight)
    parents = (x, weight) if bias is None else (x, weight, _t(bias))
    b = None if bias is None else parents[2].data
    a, w = x.data, weight.data
    y = forward(a, w, b, stride, padding, dilation, groups)

    def backward(g):  # no input gradient for a first layer, whose input needs none
        dx, dw, db = backward_op(g, a, w, stride, padding, dilation, groups, input_grad=x.requires_grad)
        return (dx, dw) if bias is None else (dx, dw, db)

    return record(y, parents, backward)


def conv2d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return _conv(x, weight, bias, stride, padding, dilation, groups, ops.conv2d, ops.conv2d_backward)


def conv1d(x, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    return _conv(x, weight, bias, stride, padding, dilation, groups, ops.conv1d, ops.conv1d_backward)


def max_pool2d(x, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    x = _t(x)
    a = x.data
    y, idx = ops.max_pool2d(a, kernel_size, stride, padding, dilation, ceil_mode, return_indices=True)
    return record(y, (x,), lambda g: (ops.max_pool2d_backward(g, a, idx, kernel_size, stride, padding, dilation,
                                                              ceil_mode),))


def avg_pool2d(x, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True, divisor_override=None):
    x = _t(x)
    a = x.data
    kw = dict(stride=stride, padding=padding, ceil_mode=ceil_mode, count_include_pad=count_include_pad,
              divisor_override=divisor_override)
    return record(ops.avg_pool2d(a, kernel_size, **kw), (x,), lambda g: (ops.avg_pool2d_backward(g, a, kernel_size, **kw),))


def adaptive_avg_pool2d(x, output_size):
    x = _t(x)
    a = x.data
    return record(ops.adaptive_avg_pool2d(a, output_size), (x,), lambda g: (ops.adaptive_avg_pool2d_backward(g, a),))


def flatten(x, start_dim: int = 1):
    x = _t(x)
    return x.reshape(x.shape[:start_dim] + (-1,))


def dropout(x, p: float = 0.5, training: bool = True, generator=None):
    """Zero each element with probability p and scale the rest by 1/(1-p) (training only)."""
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    x = _t(x)
    if not training or p == 0.0:
        return x
    from .random import default_generator

    rng = generator or default_generator()
    keep = (rng.random(x.shape) >= p).astype(x.dtype)
    scale = keep / (1.0 - p) if p < 1.0 else keep
    return record(x.data * scale, (x,), lambda g: (g * scale,))


def batch_norm(x, running_mean, running_var, weight=None, bias=None, training=False, momentum=0.1, eps=1e-5):
    """Normalise over every axis but 1 (the channels), as torch.nn.functional.batch_norm."""
    x = _t(x)
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    n = x.data.size // x.shape[1] if x.shape[1] else 0
    if training and n == 1:  # its variance is 0 and its unbiased variance 0/0 (PyTorch refuses it too)
        raise ValueError(f"batch_norm: expected more than 1 value per channel when training, got input shape {x.shape}")
    if training and n == 0:  # an empty batch: nothing to normalise, no statistics to update
        mean = var = np.zeros(x.shape[1], x.dtype)
    elif training:
        mean = x.data.mean(axis=axes)
        var = x.data.var(axis=axes)
        if running_mean is not None:
            running_mean *= 1 - momentum
            running_mean += momentum * mean
            running_var *= 1 - momentum
            running_var += momentum * var * n / max(n - 1, 1)
    else:
        mean, var = running_mean, running_var
    inv = (1.0 / np.sqrt(var + eps)).astype(x.dtype)
    xhat = (x.data - mean.reshape(shape)) * inv.reshape(shape)
    parents = [x]
    y = xhat
    if weight is not None:
        parents += [_t(weight), _t(bias)]
        y = xhat * parents[1].data.reshape(shape) + parents[2].data.reshape(shape)

    def backward(g):
        gw = g * parents[1].data.reshape(shape) if weight is not None else g
        if training and n > 0:
            dx = (inv.reshape(shape) / n) * (n * gw - gw.sum(axis=axes, keepdims=True)
                                             - xhat * (gw * xhat).sum(axis=axes, keepdims=True))
        else:
            dx = gw * inv.reshape(shape)
        if weight is None:
            return (dx,)
        return dx, (g * xhat).sum(axis=axes), g.sum(axis=axes)

    return record(y.astype(x.dtype, copy=False), tuple(parents), backward)


# --- losses ---------------------------------------------------------------------------

def _pointwise_loss(name, input, target, reduction, **kwargs):
    x = _t(input)
    t = target.data if isinstance(target, Tensor) else np.asarray(target, dtype=x.dtype)
    loss = getattr(ops, name)(x.data, t, reduction, **kwargs)
    a = x.data
    return record(np.asarray(loss), (x,), lambda g: (getattr(ops, name + "_backward")(g, a, t, reduction, **kwargs),))


def mse_loss(input, target, reduction: str = "mean"):
    return _pointwise_loss("mse_loss", input, target, reduction)


def l1_loss(input, target, reduction: str = "mean"):
    return _pointwise_loss("l1_loss", input, target, reduction)


def smooth_l1_loss(input, target, reduction: str = "mean", beta: float = 1.0):
    return _pointwise_loss("smooth_l1_loss", input, target, reduction, beta=beta)


def binary_cross_entropy(input, target, reduction: str = "mean"):
    return _pointwise_loss("binary_cross_entropy", input, target, reduction)


def binary_cross_entropy_with_logits(input, target, reduction: str = "mean"):
    return _pointwise_loss("binary_cross_entropy_with_logits", input, target, reduction)


def kl_div(input, target, reduction: str = "mean", log_target: bool = False):
    return _pointwise_loss("kl_div", input, target, reduction, log_target=log_target)


def _labels(target):
    return target.data if isinstance(target, Tensor) else np.asarray(target)


def cross_entropy(input, target, reduction: str = "mean", ignore_index: int = -100, label_smoothing: float = 0.0):
    """log_softmax + nll in one kernel. For a reduced loss under autograd, the
    gradient is computed in the same pass as the loss and only scaled later."""
    x = _t(input)
    t = _labels(target)
    a = x.data
    kw = dict(reduction=reduction, ignore_index=ignore_index, label_smoothing=label_smoothing)
    if reduction != "none" and x.requires_grad and is_grad_enabled():
        loss, dx = ops.cross_entropy_forward_backward(a, t, **kw)
        return record(loss, (x,), lambda g: (dx if float(g) == 1.0 else dx * np.asarray(g, dtype=dx.dtype),))
    loss = ops.cross_entropy(a, t, **kw)
    return record(np.asarray(loss), (x,), lambda g: (ops.cross_entropy_backward(g, a, t, **kw),))


def nll_loss(input, target, reduction: str = "mean", ignore_index: int = -100):
    x = _t(input)
    t = _labels(target)
    a = x.data
    loss = ops.nll_loss(a, t, reduction, ignore_index)
    return record(np.asarray(loss), (x,), lambda g: (ops.nll_loss_backward(g, a, t, reduction, ignore_index),))

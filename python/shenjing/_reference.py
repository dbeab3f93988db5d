"""The kernels of ``shenjing.ops`` in plain NumPy: the oracle of the tests and
the NumPy side of the benchmarks.

Same names and arguments as ``shenjing.ops``; computed in the dtype given
(call with float64 arrays for the oracle). Written for clarity, not speed.
"""

from __future__ import annotations

import math

import numpy as np

_erfc = np.vectorize(math.erfc, otypes=[np.float64])


# --- activations -------------------------------------------------------------------

def relu(x):
    return np.where(x < 0, np.zeros_like(x), x)


def relu_backward(grad, x):
    return np.where(x > 0, grad, np.zeros_like(grad))


def leaky_relu(x, negative_slope=0.01):
    return np.where(x > 0, x, x * negative_slope)


def leaky_relu_backward(grad, x, negative_slope=0.01):
    return np.where(x > 0, grad, grad * negative_slope)


def sigmoid(x):
    # the two-sided form avoids overflow of exp(-x) for very negative x
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def sigmoid_backward(grad, output):
    return grad * (1 - output) * output


def tanh(x):
    return np.tanh(x)


def tanh_backward(grad, output):
    return grad * (1 - output * output)


def _normal_cdf(x):
    # erfc keeps the lower tail accurate, where 1 + erf(x) cancels
    return (0.5 * _erfc(-np.asarray(x, dtype=np.float64) / math.sqrt(2))).astype(np.asarray(x).dtype)


def gelu(x, approximate="none"):
    if approximate == "tanh":
        # 0.5 x (1 + tanh(u)) written as x sigmoid(2u), exact in the negative tail
        return x * sigmoid(2 * math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))
    return x * _normal_cdf(x)


def gelu_backward(grad, x, approximate="none"):
    x = np.clip(x, -30, 30)  # the derivative is exactly 0 or 1 in double beyond +-30
    if approximate == "tanh":
        k = math.sqrt(2 / math.pi)
        s = sigmoid(2 * k * (x + 0.044715 * x**3))  # 0.5 (1 + tanh(u))
        return grad * (s + x * s * (1 - s) * 2 * k * (1 + 3 * 0.044715 * x * x))
    pdf = np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)
    return grad * (_normal_cdf(x) + x * pdf)


def softmax(x, axis=-1):
    with np.errstate(all="ignore"):  # an empty axis or inf - inf gives NaN, as in the kernels
        e = np.exp(x - np.max(x, axis=axis, keepdims=True, initial=-np.inf))
        return e / np.sum(e, axis=axis, keepdims=True)


def softmax_backward(grad, output, axis=-1):
    return output * (grad - np.sum(grad * output, axis=axis, keepdims=True))


def log_softmax(x, axis=-1):
    with np.errstate(all="ignore"):
        shifted = x - np.max(x, axis=axis, keepdims=True, initial=-np.inf)
        return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def log_softmax_backward(grad, output, axis=-1):
    return grad - np.exp(output) * np.sum(grad, axis=axis, keepdims=True)


# --- losses ------------------------------------------------------------------------

def _reduce(loss, reduction, batch=None):
    if reduction == "none":
        return loss
    if reduction == "sum":
        return np.sum(loss)
    with np.errstate(divide="ignore", invalid="ignore"):  # empty input: NaN, as the kernels
        if reduction == "batchmean":
            return np.sum(loss) / np.asarray(batch, dtype=loss.dtype)
        return np.sum(loss) / np.asarray(loss.size, dtype=loss.dtype)


def _scale(grad, reduction, n, batch=None):
    grad = np.asarray(grad)
    with np.errstate(divide="ignore", invalid="ignore"):  # an empty input: nothing is scaled
        if reduction == "mean":
            return grad / n
        if reduction == "batchmean":
            return grad / batch
    return grad


def mse_loss(input, target, reduction="mean"):
    return _reduce((input - target) ** 2, reduction)


def mse_loss_backward(grad, input, target, reduction="mean"):
    return 2 * (input - target) * _scale(grad, reduction, input.size)


def l1_loss(input, target, reduction="mean"):
    return _reduce(np.abs(input - target), reduction)


def l1_loss_backward(grad, input, target, reduction="mean"):
    return np.sign(input - target) * _scale(grad, reduction, input.size)


def smooth_l1_loss(input, target, reduction="mean", beta=1.0):
    d = np.abs(input - target)
    with np.errstate(divide="ignore", invalid="ignore"):
        loss = np.where(d < beta, 0.5 * d * d / (beta if beta else 1), d - 0.5 * beta)
    return _reduce(loss, reduction)


def smooth_l1_loss_backward(grad, input, target, reduction="mean", beta=1.0):
    d = input - target
    with np.errstate(divide="ignore", invalid="ignore"):
        g = np.where(np.abs(d) < beta, d / (beta if beta else 1), np.sign(d))
    return g * _scale(grad, reduction, input.size)


def binary_cross_entropy(input, target, reduction="mean"):
    with np.errstate(divide="ignore"):
        log_p = np.maximum(np.log(input), -100)
        log_1mp = np.maximum(np.log1p(-input), -100)
    return _reduce((target - 1) * log_1mp - target * log_p, reduction)


def binary_cross_entropy_backward(grad, input, target, reduction="mean"):
    g = (input - target) / np.maximum((1 - input) * input, 1e-12)
    return g * _scale(grad, reduction, input.size)


def binary_cross_entropy_with_logits(input, target, reduction="mean"):
    loss = np.maximum(input, 0) - input * target + np.log1p(np.exp(-np.abs(input)))
    return _reduce(loss, reduction)


def binary_cross_entropy_with_logits_backward(grad, input, target, reduction="mean"):
    return (sigmoid(input) - target) * _scale(grad, reduction, input.size)


def kl_div(input, target, reduction="mean", log_target=False):
    if log_target:
        loss = np.exp(target) * (target - input)
    else:
        with np.errstate(divide="ignore", invalid="ignore"):
            tlogt = np.where(target == 0, 0.0, target * np.log(np.where(target == 0, 1, target)))
        loss = tlogt - target * input
    return _reduce(loss, reduction, input.shape[0] if input.ndim else 1)


def kl_div_backward(grad, input, target, reduction="mean", log_target=False):
    g = -np.exp(target) if log_target else -target
    return g * _scale(grad, reduction, input.size, input.shape[0] if input.ndim else 1)


def _classes_last(input, target):
    """(samples, C) logits and (samples,) targets from (N, C, *) and (N, *)."""
    if input.ndim == 1:
        return input[None, :], np.asarray(target).reshape(1)
    moved = np.moveaxis(input, 1, -1)
    return moved.reshape(-1, input.shape[1]), np.asarray(target).reshape(-1)


def _restore(rows, input):
    """inverse of _classes_last for an array of logits' shape"""
    if input.ndim == 1:
        return rows[0]
    shape = (input.shape[0],) + input.shape[2:] + (input.shape[1],)
    return np.moveaxis(rows.reshape(shape), -1, 1)


def cross_entropy(input, target, reduction="mean", ignore_index=-100, label_smoothing=0.0):
    x, t = _classes_last(input, target)
    C = x.shape[1]
    keep = t != ignore_index
    logp = log_softmax(x, axis=1)
    safe = np.where(keep, t, 0)
    nll = -logp[np.arange(len(t)), safe]
    smooth = -np.sum(logp, axis=1)
    loss = np.where(keep, (1 - label_smoothing) * nll + label_smoothing / C * smooth, 0.0)
    if reduction == "none":
        return loss.reshape(np.shape(target))
    if reduction == "sum":
        return np.sum(loss)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(loss) / np.sum(keep)


def cross_entropy_backward(grad, input, target, reduction="mean", ignore_index=-100, label_smoothing=0.0):
    x, t = _classes_last(input, target)
    C = x.shape[1]
    keep = t != ignore_index
    p = softmax(x, axis=1)
    onehot = np.zeros_like(p)
    onehot[np.arange(len(t))[keep], t[keep]] = 1
    g = p - (1 - label_smoothing) * onehot - label_smoothing / C
    if reduction == "none":
        scale = np.asarray(grad).reshape(-1)
    elif reduction == "sum":
        scale = np.full(len(t), np.asarray(grad).reshape(()))
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = np.full(len(t), np.asarray(grad).reshape(()) / np.sum(keep))
    g = np.where(keep[:, None], g * scale[:, None], 0.0)
    return _restore(g, input)


def cross_entropy_forward_backward(input, target, reduction="mean", ignore_index=-100, label_smoothing=0.0, grad=1.0):
    kw = dict(reduction=reduction, ignore_index=ignore_index, label_smoothing=label_smoothing)
    return cross_entropy(input, target, **kw), cross_entropy_backward(grad, input, target, **kw)


def nll_loss(input, target, reduction="mean", ignore_index=-100):
    x, t = _classes_last(input, target)
    keep = t != ignore_index
    loss = np.where(keep, -x[np.arange(len(t)), np.where(keep, t, 0)], 0.0)
    if reduction == "none":
        return loss.reshape(np.shape(target))
    if reduction == "sum":
        return np.sum(loss)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(loss) / np.sum(keep)


def nll_loss_backward(grad, input, target, reduction="mean", ignore_index=-100):
    x, t = _classes_last(input, target)
    keep = t != ignore_index
    if reduction == "none":
        scale = np.asarray(grad).reshape(-1)
    elif reduction == "sum":
        scale = np.full(len(t), np.asarray(grad).reshape(()))
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            scale = np.full(len(t), np.asarray(grad).reshape(()) / np.sum(keep))
    g = np.zeros_like(x)
    rows = np.arange(len(t))[keep]
    g[rows, t[keep]] = -scale[keep]
    return _restore(g, input)


# --- optimizer steps ---------------------------------------------------------------

def sgd_step(params, grads, momentum_buffers=None, *, lr, momentum=0.0, dampening=0.0, nesterov=False,
             weight_decay=0.0, maximize=False, first_step=False):
    firsts = [first_step] * len(params) if isinstance(first_step, bool) else list(first_step)
    for i, (p, g) in enumerate(zip(params, grads)):
        g = -g if maximize else g
        if weight_decay != 0:
            g = g + weight_decay * p
        if momentum != 0:
            buf = momentum_buffers[i]
            if firsts[i]:
                buf[...] = g
            else:
                buf *= momentum
                buf += (1 - dampening) * g
            g = g + momentum * buf if nesterov else buf
        p -= lr * g


def adam_step(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs=None, *, step, lr=1e-3, betas=(0.9, 0.999),
              eps=1e-8, weight_decay=0.0, amsgrad=False, maximize=False, decoupled_weight_decay=False):
    beta1, beta2 = betas
    steps = [step] * len(params) if np.isscalar(step) else list(step)
    for i, (p, g) in enumerate(zip(params, grads)):
        g = -g if maximize else g
        if weight_decay != 0:
            if decoupled_weight_decay:
                p *= 1 - lr * weight_decay
            else:
                g = g + weight_decay * p
        m, v = exp_avgs[i], exp_avg_sqs[i]
        m += (1 - beta1) * (g - m)
        v *= beta2
        v += (1 - beta2) * g * g
        if amsgrad:
            np.maximum(max_exp_avg_sqs[i], v, out=max_exp_avg_sqs[i])
            v = max_exp_avg_sqs[i]
        t = steps[i]
        denom = np.sqrt(v) / math.sqrt(1 - beta2**t) + eps
        p -= lr / (1 - beta1**t) * m / denom


# --- reductions --------------------------------------------------------------------

def sum(x, axis=None, keepdims=False):  # noqa: A001 - NumPy's name
    return np.sum(x, axis=axis, keepdims=keepdims)


def mean(x, axis=None, keepdims=False):
    count = x.size if axis is None else (x.shape[axis] if x.ndim else 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.sum(x, axis=axis, keepdims=keepdims) / np.asarray(count, dtype=x.dtype)


def copy(x):
    return np.array(x, copy=True)


def sum_of_squares(x):
    return float(np.sum(np.asarray(x, dtype=np.float64) ** 2))


# --- GEMM --------------------------------------------------------------------------

def gemm(a, b, *, trans_a=False, trans_b=False, alpha=1.0, beta=0.0, c=None, bias=None, activation=None):
    r = alpha * ((a.T if trans_a else a) @ (b.T if trans_b else b))
    if beta != 0:
        r = r + beta * c
    if bias is not None:
        r = r + bias
    if activation == "relu":
        r = relu(r)
    elif activation == "gelu":
        r = gelu(r)
    elif activation == "gelu_tanh":
        r = gelu(r, "tanh")
    elif activation == "sigmoid":
        r = sigmoid(r)
    elif activation == "tanh":
        r = np.tanh(r)
    return r

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
    # NumPy sums pairwise only along a contiguous axis; down a strided one it adds in
    # order, 1e-12 off over 40000 float64 terms. The reduced axis is made the
    # contiguous one first, so the reference stays the more accurate side.
    x = np.asarray(x)
    if axis is None or x.ndim == 0:
        return np.sum(x.ravel(), keepdims=keepdims).reshape((1,) * x.ndim if keepdims else ())
    axis = axis % x.ndim
    result = np.sum(np.ascontiguousarray(np.moveaxis(x, axis, -1)), axis=-1)
    return np.expand_dims(result, axis) if keepdims else result


def mean(x, axis=None, keepdims=False):
    x = np.asarray(x)
    count = x.size if axis is None else (x.shape[axis] if x.ndim else 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return sum(x, axis=axis, keepdims=keepdims) / np.asarray(count, dtype=x.dtype)


def copy(x):
    return np.array(x, copy=True)


def sum_of_squares(x):
    return float(np.sum(np.asarray(x, dtype=np.float64) ** 2))


# --- GEMM --------------------------------------------------------------------------

def matmul(a, b):
    return np.matmul(a, b)


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


# --- convolution: sliding windows and einsum ---------------------------------------------

def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _conv_pads(w_shape, padding, dilation):
    KH, KW = w_shape[2:]
    dh, dw = _pair(dilation)
    if padding == "valid":
        return (0, 0), (0, 0)
    if padding == "same":
        th, tw = dh * (KH - 1), dw * (KW - 1)
        return (th // 2, th - th // 2), (tw // 2, tw - tw // 2)
    ph, pw = _pair(padding)
    return (ph, ph), (pw, pw)


def _windows(xp, KH, KW, stride, dilation, OH, OW):
    """(N, C, OH, OW, KH, KW) views of the padded input's windows."""
    sh, sw = stride
    dh, dw = dilation
    win = np.lib.stride_tricks.sliding_window_view(xp, (dh * (KH - 1) + 1, dw * (KW - 1) + 1), axis=(2, 3))
    return win[:, :, : (OH - 1) * sh + 1 : sh, : (OW - 1) * sw + 1 : sw, ::dh, ::dw]


def _conv_setup(x, w, stride, padding, dilation):
    pads = _conv_pads(w.shape, padding, dilation)
    xp = np.pad(x, ((0, 0), (0, 0)) + pads)
    KH, KW = w.shape[2:]
    sh, sw = _pair(stride)
    dh, dw = _pair(dilation)
    OH = (xp.shape[2] - dh * (KH - 1) - 1) // sh + 1
    OW = (xp.shape[3] - dw * (KW - 1) - 1) // sw + 1
    return xp, pads, (sh, sw), (dh, dw), OH, OW


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    x, w = input, weight
    unbatched = x.ndim == 3
    if unbatched:
        x = x[None]
    xp, _, st, dl, OH, OW = _conv_setup(x, w, stride, padding, dilation)
    win = _windows(xp, w.shape[2], w.shape[3], st, dl, OH, OW)
    Cg, Og = x.shape[1] // groups, w.shape[0] // groups
    y = np.concatenate([np.einsum("ncpqhw,ochw->nopq", win[:, g * Cg:(g + 1) * Cg], w[g * Og:(g + 1) * Og], optimize=True)
                        for g in range(groups)], axis=1)
    if bias is not None:
        y = y + bias[None, :, None, None]
    return y[0] if unbatched else y


def conv2d_backward(grad, input, weight, stride=1, padding=0, dilation=1, groups=1):
    x, w, g = input, weight, grad
    unbatched = x.ndim == 3
    if unbatched:
        x, g = x[None], g[None]
    xp, pads, (sh, sw), (dh, dw), OH, OW = _conv_setup(x, w, stride, padding, dilation)
    KH, KW = w.shape[2:]
    win = _windows(xp, KH, KW, (sh, sw), (dh, dw), OH, OW)
    Cg, Og = x.shape[1] // groups, w.shape[0] // groups
    dw_ = np.concatenate([np.einsum("nopq,ncpqhw->ochw", g[:, k * Og:(k + 1) * Og], win[:, k * Cg:(k + 1) * Cg], optimize=True)
                          for k in range(groups)], axis=0)
    dxp = np.zeros_like(xp)
    for k in range(groups):
        dcols = np.einsum("nopq,ochw->ncpqhw", g[:, k * Og:(k + 1) * Og], w[k * Og:(k + 1) * Og], optimize=True)
        for kh in range(KH):
            for kw in range(KW):
                h0, w0 = kh * dh, kw * dw
                dxp[:, k * Cg:(k + 1) * Cg, h0:h0 + (OH - 1) * sh + 1:sh, w0:w0 + (OW - 1) * sw + 1:sw] += dcols[..., kh, kw]
    dx = dxp[:, :, pads[0][0]:pads[0][0] + x.shape[2], pads[1][0]:pads[1][0] + x.shape[3]]
    db = g.sum(axis=(0, 2, 3))
    return (dx[0] if unbatched else dx), dw_, db


def _as_2d(x, w, stride, padding, dilation):
    padding = padding if isinstance(padding, str) else (0, padding)
    return x[..., None, :], w[:, :, None, :], (1, stride), padding, (1, dilation)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    x, w, st, pd, dl = _as_2d(input, weight, stride, padding, dilation)
    return conv2d(x, w, bias, st, pd, dl, groups)[..., 0, :]


def conv1d_backward(grad, input, weight, stride=1, padding=0, dilation=1, groups=1):
    x, w, st, pd, dl = _as_2d(input, weight, stride, padding, dilation)
    dx, dw, db = conv2d_backward(grad[..., None, :], x, w, st, pd, dl, groups)
    return dx[..., 0, :], dw[:, :, 0, :], db


# --- pooling -------------------------------------------------------------------------------

def _pool_out(size, k, s, p, d, ceil_mode):
    span = size + 2 * p - d * (k - 1) - 1
    out = (-(-span // s) if ceil_mode else span // s) + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _pool_setup(x, kernel_size, stride, padding, dilation, ceil_mode, fill):
    KH, KW = _pair(kernel_size)
    sh, sw = _pair(kernel_size if stride is None else stride)
    ph, pw = _pair(padding)
    dh, dw = _pair(dilation)
    H, W = x.shape[-2:]
    OH, OW = _pool_out(H, KH, sh, ph, dh, ceil_mode), _pool_out(W, KW, sw, pw, dw, ceil_mode)
    # pad enough on the far side for ceil_mode's last window
    extra_h = max(0, (OH - 1) * sh + dh * (KH - 1) + 1 - (H + 2 * ph))
    extra_w = max(0, (OW - 1) * sw + dw * (KW - 1) + 1 - (W + 2 * pw))
    xp = np.pad(x, ((0, 0),) * (x.ndim - 2) + ((ph, ph + extra_h), (pw, pw + extra_w)), constant_values=fill)
    win = np.lib.stride_tricks.sliding_window_view(xp, (dh * (KH - 1) + 1, dw * (KW - 1) + 1), axis=(-2, -1))
    win = win[..., : (OH - 1) * sh + 1 : sh, : (OW - 1) * sw + 1 : sw, ::dh, ::dw]
    return win, (KH, KW, sh, sw, ph, pw, dh, dw, OH, OW)


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False, return_indices=False):
    win, (KH, KW, sh, sw, ph, pw, dh, dw, OH, OW) = _pool_setup(input, kernel_size, stride, padding, dilation,
                                                                 ceil_mode, -np.inf)
    flat = win.reshape(win.shape[:-2] + (KH * KW,))
    # NaN wins, as in PyTorch (argmax finds the first NaN, the kernel the last: both give NaN)
    y = np.max(flat, axis=-1)
    if not return_indices:
        return y
    pick = np.argmax(flat, axis=-1)
    kh, kw = pick // KW, pick % KW
    oh = np.arange(OH)[:, None]
    ow = np.arange(OW)[None, :]
    ih = oh * sh - ph + kh * dh
    iw = ow * sw - pw + kw * dw
    return y, (ih * input.shape[-1] + iw).astype(np.int64)


def max_pool2d_backward(grad, input, indices, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
    H, W = input.shape[-2:]
    planes = grad.reshape(-1, grad.shape[-2] * grad.shape[-1])
    idx = indices.reshape(planes.shape)
    dx = np.zeros((planes.shape[0], H * W), dtype=grad.dtype)
    for p in range(planes.shape[0]):
        np.add.at(dx[p], idx[p], planes[p])
    return dx.reshape(input.shape)


def _avg_divisors(H, W, KH, KW, sh, sw, ph, pw, OH, OW, count_include_pad, divisor_override):
    if divisor_override:
        return np.full((OH, OW), float(divisor_override))

    def counts(size, k, s, p, out):
        start = np.arange(out) * s - p
        end = np.minimum(start + k, size + p)
        padded = end - start
        valid = np.minimum(end, size) - np.maximum(start, 0)
        return padded if count_include_pad else valid

    return np.outer(counts(H, KH, sh, ph, OH), counts(W, KW, sw, pw, OW)).astype(float)


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
               divisor_override=None):
    win, (KH, KW, sh, sw, ph, pw, _, _, OH, OW) = _pool_setup(input, kernel_size, stride, padding, 1, ceil_mode, 0.0)
    div = _avg_divisors(*input.shape[-2:], KH, KW, sh, sw, ph, pw, OH, OW, count_include_pad, divisor_override)
    return (win.sum(axis=(-2, -1)) / div).astype(input.dtype)


def avg_pool2d_backward(grad, input, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                        divisor_override=None):
    _, (KH, KW, sh, sw, ph, pw, _, _, OH, OW) = _pool_setup(input, kernel_size, stride, padding, 1, ceil_mode, 0.0)
    H, W = input.shape[-2:]
    div = _avg_divisors(H, W, KH, KW, sh, sw, ph, pw, OH, OW, count_include_pad, divisor_override)
    g = grad / div
    Hp, Wp = (OH - 1) * sh + KH, (OW - 1) * sw + KW
    dxp = np.zeros(input.shape[:-2] + (max(Hp, H + ph), max(Wp, W + pw)), dtype=grad.dtype)
    for kh in range(KH):
        for kw in range(KW):
            dxp[..., kh:kh + (OH - 1) * sh + 1:sh, kw:kw + (OW - 1) * sw + 1:sw] += g
    return dxp[..., ph:ph + H, pw:pw + W]


def _adaptive_bounds(size, out):
    i = np.arange(out)
    return (i * size) // out, -((-(i + 1) * size) // out)


def adaptive_avg_pool2d(input, output_size):
    H, W = input.shape[-2:]
    OH, OW = _pair(output_size)
    OH, OW = (H if OH is None else OH), (W if OW is None else OW)
    h0, h1 = _adaptive_bounds(H, OH)
    w0, w1 = _adaptive_bounds(W, OW)
    y = np.empty(input.shape[:-2] + (OH, OW), dtype=input.dtype)
    for i in range(OH):
        for j in range(OW):
            y[..., i, j] = input[..., h0[i]:h1[i], w0[j]:w1[j]].mean(axis=(-2, -1))
    return y


def adaptive_avg_pool2d_backward(grad, input, output_size=None):
    H, W = input.shape[-2:]
    OH, OW = grad.shape[-2:]
    h0, h1 = _adaptive_bounds(H, OH)
    w0, w1 = _adaptive_bounds(W, OW)
    dx = np.zeros(input.shape, dtype=grad.dtype)
    for i in range(OH):
        for j in range(OW):
            area = (h1[i] - h0[i]) * (w1[j] - w0[j])
            dx[..., h0[i]:h1[i], w0[j]:w1[j]] += grad[..., i, j][..., None, None] / area
    return dx

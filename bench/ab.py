"""A/B of two builds of the C++ core in one process, call by call.

    python bench/ab.py OLD.so NEW.so CASE [PAIRS]      (SHENJING_AB_THREADS: threads, default 2)

This machine is shared: the same run can be 30% slower a minute later, so two
builds timed in separate processes, or even alternating processes, are hard to
tell apart when they differ by less than that. Here both builds of
``_core*.so`` (copy the installed one aside before rebuilding) are loaded
side by side under different module names, and every call of the case goes
to one or the other, alternating (ABBA order), for PAIRS pairs. The answer
is the median of the per-pair time ratios NEW/OLD: drift hits both halves of
a pair alike. The result of each build is checked against the other's first.

CASE is a Python expression over these makers (shapes as in the issues):
    gemm(M, N, K, trans_a=False, trans_b=False)
    matmul(batch, M, N, K)             a batch of products, (batch, M, K) @ (batch, K, N)
    conv(N, C, H, O, K, pad, stride=1) conv2d forward, backward, and backward_no_dx (dW and db alone); square images
    dwconv(N, C, H, K, stride, pad, mult=1)  the same, depthwise (groups = C)
    act(n, "gelu" | "gelu_tanh" | "sigmoid" | "tanh" | "relu" | "copy", scale=1.0, backward=False)
                                       on scale * N(0, 1) (bench/report.py's inputs have scale 3);
                                       backward=True times the gradient instead (not for copy)
    softmax(rows, length)              softmax, log_softmax, cross_entropy (forward, then backward) and
                                       cross_entropy_forward_backward (one call) along rows
    pool(N, C, H, "avg" | "max", K, stride=None, pad=0)  pooling forward and backward; square images
    chain(n)                           tanh, then sigmoid of its result, then the sum (new outputs each time):
                                       whether an output left in cache, or streamed past it, serves the next op
    adam(shape, ..., offset=None)      one Adam step over tensors of these shapes (offset: bytes past a
                                       64-byte boundary where every array starts)
    train("mlp_digits" | "cnn_digits" | "mlp_784_60k")   one epoch (bench/training.py's setup;
                                                          mlp_784_60k on its first 12,000 samples)
The builds must come from the same Python sources: only ``shenjing.ops._core`` is swapped.
(For two versions of the Python code itself, bench/ab_python.py does the same with package trees.)
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import os
import shutil
import sys
import tempfile
import time

import numpy as np

import shenjing
from shenjing import ops

HERE = os.path.dirname(os.path.abspath(__file__))


def load_build(tag: str, path: str):
    """The extension at `path` as a module of its own (a copy, so a rebuild cannot change it)."""
    directory = tempfile.mkdtemp(prefix=f"shenjing_ab_{tag}_")
    copy = os.path.join(directory, os.path.basename(path) if path.endswith(".so") else "_core.so")
    shutil.copy(path, copy)
    name = f"shenjing_ab_{tag}._core"  # the last component picks the init function: PyInit__core
    loader = importlib.machinery.ExtensionFileLoader(name, copy)
    spec = importlib.util.spec_from_file_location(name, copy, loader=loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


rng = np.random.default_rng(0)


def gemm(M, N, K, trans_a=False, trans_b=False):
    a = rng.standard_normal((K, M) if trans_a else (M, K), dtype=np.float32)
    b = rng.standard_normal((N, K) if trans_b else (K, N), dtype=np.float32)
    c = np.empty((M, N), np.float32)
    return {"gemm": lambda: ops.gemm(a, b, trans_a=trans_a, trans_b=trans_b, out=c)}


def matmul(batch, M, N, K):
    a = rng.standard_normal((batch, M, K), dtype=np.float32)
    b = rng.standard_normal((batch, K, N), dtype=np.float32)
    return {"matmul": lambda: ops.matmul(a, b)}


def conv(N, C, H, O, K, pad, stride=1):
    x = rng.standard_normal((N, C, H, H), dtype=np.float32)
    w = rng.standard_normal((O, C, K, K), dtype=np.float32)
    kw = dict(stride=stride, padding=pad)
    g = rng.standard_normal(ops.conv2d(x, w, **kw).shape, dtype=np.float32)
    return {"forward": lambda: ops.conv2d(x, w, **kw),
            "backward": lambda: ops.conv2d_backward(g, x, w, **kw),
            "backward_no_dx": lambda: ops.conv2d_backward(g, x, w, input_grad=False, **kw)[1:]}


def dwconv(N, C, H, K, stride, pad, mult=1):
    """depthwise conv2d (groups = C, `mult` outputs a channel), forward and backward"""
    x = rng.standard_normal((N, C, H, H), dtype=np.float32)
    w = rng.standard_normal((C * mult, 1, K, K), dtype=np.float32)
    kw = dict(stride=stride, padding=pad, groups=C)
    g = rng.standard_normal(ops.conv2d(x, w, **kw).shape, dtype=np.float32)
    return {"forward": lambda: ops.conv2d(x, w, **kw),
            "backward": lambda: ops.conv2d_backward(g, x, w, **kw),
            "backward_no_dx": lambda: ops.conv2d_backward(g, x, w, input_grad=False, **kw)[1:]}


def act(n, name, scale=1.0, backward=False):
    x = rng.standard_normal(n, dtype=np.float32) * np.float32(scale)
    y = np.empty_like(x)
    if backward:  # grad N(0, 1); sigmoid and tanh take their forward output, the others x
        g = rng.standard_normal(n, dtype=np.float32)
        kernels = {"gelu": lambda: ops.gelu_backward(g, x, out=y),
                   "gelu_tanh": lambda: ops.gelu_backward(g, x, approximate="tanh", out=y),
                   "sigmoid": (lambda s: lambda: ops.sigmoid_backward(g, s, out=y))(ops.sigmoid(x)),
                   "tanh": (lambda t: lambda: ops.tanh_backward(g, t, out=y))(ops.tanh(x)),
                   "relu": lambda: ops.relu_backward(g, x, out=y)}
        return {name + " backward": kernels[name]}
    kernels = {"gelu": lambda: ops.gelu(x, out=y), "gelu_tanh": lambda: ops.gelu(x, approximate="tanh", out=y),
               "sigmoid": lambda: ops.sigmoid(x, out=y), "tanh": lambda: ops.tanh(x, out=y),
               "relu": lambda: ops.relu(x, out=y), "copy": lambda: ops.copy(x, out=y)}
    return {name: kernels[name]}


def pool(N, C, H, kind, K, stride=None, pad=0):
    """avg_pool2d or max_pool2d ("avg" / "max"), forward and backward, on square images"""
    x = rng.standard_normal((N, C, H, H), dtype=np.float32)
    kw = dict(stride=stride, padding=pad)
    if kind == "avg":
        g = rng.standard_normal(ops.avg_pool2d(x, K, **kw).shape, dtype=np.float32)
        return {"forward": lambda: ops.avg_pool2d(x, K, **kw), "backward": lambda: ops.avg_pool2d_backward(g, x, K, **kw)}
    y, indices = ops.max_pool2d(x, K, return_indices=True, **kw)
    g = rng.standard_normal(y.shape, dtype=np.float32)
    return {"forward": lambda: ops.max_pool2d(x, K, **kw),
            "backward": lambda: ops.max_pool2d_backward(g, x, indices, K, **kw)}


def chain(n, scale=3.0):
    x = rng.standard_normal(n, dtype=np.float32) * np.float32(scale)
    return {"tanh -> sigmoid -> sum": lambda: ops.sum(ops.sigmoid(ops.tanh(x)))}


def softmax(rows, length):
    x = rng.standard_normal((rows, length), dtype=np.float32)
    y = np.empty_like(x)
    target = rng.integers(0, length, rows)
    return {"softmax": lambda: ops.softmax(x, axis=-1, out=y),
            "log_softmax": lambda: ops.log_softmax(x, axis=-1, out=y),
            "cross_entropy": lambda: (ops.cross_entropy(x, target), ops.cross_entropy_backward(np.float32(1), x, target)),
            # as bench/report.py times it: the loss and its gradient in one call
            "cross_entropy_forward_backward": lambda: ops.cross_entropy_forward_backward(x, target, out=y)}


def _at_offset(a, offset):
    """a copy of a whose data starts `offset` bytes past a 64-byte boundary"""
    raw = np.empty(a.nbytes + 128, np.uint8)
    start = (offset - raw.ctypes.data) % 64
    out = raw[start:start + a.nbytes].view(a.dtype).reshape(a.shape)
    out[...] = a
    return out


def adam(*shapes, offset=None):
    """offset: where every array starts past a 64-byte boundary (None: wherever NumPy puts it,
    16 bytes past one for large arrays)"""
    place = (lambda a: a) if offset is None else (lambda a: _at_offset(a, offset))
    params = [place(rng.random(s, dtype=np.float32)) for s in shapes]
    grads = [place(rng.random(s, dtype=np.float32)) for s in shapes]
    exp_avgs = [place(np.zeros(s, np.float32)) for s in shapes]
    exp_avg_sqs = [place(np.zeros(s, np.float32)) for s in shapes]
    return {"adam": lambda: ops.adam_step(params, grads, exp_avgs, exp_avg_sqs, step=3)}


def train(case):
    sys.path.insert(0, HERE)
    import training
    X, y, batch = training.data(case)
    if case == "mlp_784_60k":
        X, y = X[:12000], y[:12000]
    _, step = training.shenjing_setup(case)

    def epoch():
        for i in range(0, len(X), batch):
            step(X[i:i + batch], y[i:i + batch])
    return {"epoch": epoch}


def _snapshot(out):
    """A copy of a kernel's result(s) as a list of arrays, or None for a step that returns nothing."""
    if out is None:
        return None
    return [np.array(a, copy=True) for a in (out if isinstance(out, tuple) else (out,))]


def main() -> None:
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    old_path, new_path, case = sys.argv[1:4]
    pairs = int(sys.argv[4]) if len(sys.argv) > 4 else 21
    builds = [load_build("old", old_path), load_build("new", new_path)]
    threads = int(os.environ.get("SHENJING_AB_THREADS", "2"))
    for build in builds:
        build.set_num_threads(threads)
    makers = {"gemm": gemm, "matmul": matmul, "conv": conv, "dwconv": dwconv, "act": act, "pool": pool, "chain": chain, "softmax": softmax,
              "adam": adam, "train": train}
    kernels = eval(case, makers)
    original = ops._core
    try:
        for name, f in kernels.items():
            results = []
            for build in builds:  # warm up, and compare the two builds' results
                ops._core = build
                results.append(_snapshot(f()))
                f()
            # (atol scaled by the output's size: a convolution's dW sums 100,000 terms of
            # hundreds, and two float32 orders of that sum differ by 1e-3 where it is near 0)
            if results[0] is not None and not all(np.allclose(a, b, rtol=1e-4, atol=1e-4 * max(1.0, float(np.abs(a).max(initial=0))))
                                                  for a, b in zip(results[0], results[1])):
                sys.exit(f"{case} {name}: the two builds' results differ")
            times = [[], []]
            for r in range(pairs):
                for i in (0, 1) if r % 2 == 0 else (1, 0):
                    ops._core = builds[i]
                    start = time.perf_counter()
                    f()
                    times[i].append(time.perf_counter() - start)
            old, new = np.array(times[0]), np.array(times[1])
            print(f"{case} {name}: old median {np.median(old) * 1e3:.3f} ms (min {old.min() * 1e3:.3f}), "
                  f"new median {np.median(new) * 1e3:.3f} ms (min {new.min() * 1e3:.3f}); "
                  f"new/old {np.median(new / old):.3f} (median of {pairs} pairs, {threads} threads)")
    finally:
        ops._core = original


if __name__ == "__main__":
    main()

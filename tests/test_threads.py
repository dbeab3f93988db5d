"""Results do not depend on the thread count: every kernel family, and a short
training run, give bit-identical results with 1 thread and with each count in
SHENJING_TEST_THREADS (default "2,3": 3 threads on this 2-core machine splits work
unlike 1 or 2 do). On a many-core machine: SHENJING_TEST_THREADS=2,3,5,8,16."""

from __future__ import annotations

import os

import numpy as np
import pytest

import shenjing
from shenjing import nn, ops

THREADS = [int(t) for t in os.environ.get("SHENJING_TEST_THREADS", "2,3").split(",")]


def _rand(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


def _gemm(rng):
    # (M, N, K): shared B panels (M > MC, large), columns split, columns split over more
    # than MC rows (even row blocks), rows split, one row tile
    shapes = [(400, 300, 600), (37, 613, 300), (256, 200, 64), (130, 10, 256), (12, 700, 90)]
    out = []
    for M, N, K in shapes:
        for ta in (False, True):
            for tb in (False, True):
                a = _rand(rng, *((K, M) if ta else (M, K)))
                b = _rand(rng, *((N, K) if tb else (K, N)))
                out.append(lambda a=a, b=b, ta=ta, tb=tb: ops.gemm(a, b, trans_a=ta, trans_b=tb))
    a, b, bias = _rand(rng, 300, 200), _rand(rng, 200, 100), _rand(rng, 100)
    out.append(lambda: ops.gemm(a, b, bias=bias, activation="gelu"))
    x, y = _rand(rng, 40, 20, 30), _rand(rng, 40, 30, 25)
    out.append(lambda: ops.matmul(x, y))
    big_x, big_y = _rand(rng, 3, 150, 200), _rand(rng, 200, 170)
    out.append(lambda: ops.matmul(big_x, big_y))
    return out


def _conv(rng):
    out = []
    for (n, c, h, o, k, kw) in [(9, 3, 20, 16, 5, dict(padding=2)), (5, 6, 13, 8, 3, dict(padding=1, stride=2)),
                                (4, 16, 31, 32, 3, dict(padding="same", dilation=2)),
                                (6, 8, 17, 8, 3, dict(padding=1, groups=8)), (3, 64, 14, 64, 3, dict(padding=1))]:
        x = _rand(rng, n, c, h, h)
        w = _rand(rng, o, c // kw.get("groups", 1), k, k)
        g = ops.conv2d(x, w, **kw)
        g = _rand(rng, *g.shape)
        out.append(lambda x=x, w=w, kw=kw: ops.conv2d(x, w, **kw))
        out.append(lambda g=g, x=x, w=w, kw=kw: ops.conv2d_backward(g, x, w, **kw))
    s, f = _rand(rng, 7, 5, 300), _rand(rng, 9, 5, 7)
    gs = _rand(rng, *ops.conv1d(s, f, padding=3).shape)
    out.append(lambda: ops.conv1d_backward(gs, s, f, padding=3))
    return out


def _pool(rng):
    x = _rand(rng, 6, 10, 25, 23)
    y, idx = ops.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True, return_indices=True)
    g = _rand(rng, *y.shape)
    ga = _rand(rng, *ops.avg_pool2d(x, 2).shape)
    gd = _rand(rng, 6, 10, 4, 5)
    return [lambda: ops.max_pool2d(x, 3, stride=2, padding=1, ceil_mode=True, return_indices=True),
            lambda: ops.max_pool2d_backward(g, x, idx, 3, stride=2, padding=1, ceil_mode=True),
            lambda: ops.avg_pool2d(x, 2), lambda: ops.avg_pool2d_backward(ga, x, 2),
            lambda: ops.adaptive_avg_pool2d(x, (4, 5)), lambda: ops.adaptive_avg_pool2d_backward(gd, x)]


def _rows(rng):
    big = _rand(rng, 1031, 4099)  # large enough for streaming stores
    small, cols = _rand(rng, 300, 37), _rand(rng, 50, 37, 21)
    target = rng.integers(0, 4099, 1031)
    ys = ops.softmax(small, axis=-1)
    g = _rand(rng, *small.shape)
    return [lambda: ops.softmax(big, axis=-1), lambda: ops.log_softmax(big, axis=-1),
            lambda: ops.softmax(small, axis=-1), lambda: ops.softmax(cols, axis=1),
            lambda: ops.log_softmax(cols, axis=0), lambda: ops.softmax_backward(g, ys, axis=-1),
            lambda: ops.cross_entropy_forward_backward(big, target, label_smoothing=0.1),
            lambda: ops.cross_entropy(big, target, reduction="none"),
            lambda: ops.sum(big), lambda: ops.mean(big, axis=0), lambda: ops.sum_of_squares(big),
            lambda: ops.gelu(big), lambda: ops.mse_loss(big, big[::-1].copy())]


def _optim(rng):
    shapes = [(300, 200), (4099,), (7,), (1 << 20,)]

    def adam():
        r = np.random.default_rng(3)
        params = [r.standard_normal(s).astype(np.float32) for s in shapes]
        grads = [r.standard_normal(s).astype(np.float32) for s in shapes]
        m = [np.zeros(s, np.float32) for s in shapes]
        v = [np.zeros(s, np.float32) for s in shapes]
        for step in (1, 2, 3):
            ops.adam_step(params, grads, m, v, step=step, weight_decay=0.01, decoupled_weight_decay=True)
        return tuple(params + m + v)

    return [adam]


FAMILIES = {"gemm": _gemm, "conv": _conv, "pool": _pool, "rows": _rows, "optim": _optim}


def _with_threads(threads, f):
    old = shenjing.get_num_threads()
    shenjing.set_num_threads(threads)
    try:
        result = f()
    finally:
        shenjing.set_num_threads(old)
    return [np.array(r, copy=True) for r in (result if isinstance(result, tuple) else (result,))]


@pytest.mark.parametrize("family", FAMILIES)
def test_kernels_bit_identical_across_thread_counts(isa, rng, family):
    for i, f in enumerate(FAMILIES[family](rng)):
        one = _with_threads(1, f)
        for threads in THREADS:
            for a, b in zip(one, _with_threads(threads, f)):
                np.testing.assert_array_equal(a, b, err_msg=f"{family} case {i}: 1 vs {threads} threads")


def test_training_run_bit_identical_across_thread_counts():
    X = np.random.default_rng(0).standard_normal((96, 1, 12, 12)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 10, 96)

    def run():
        shenjing.manual_seed(5)
        net = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2), nn.Conv2d(8, 16, 3),
                            nn.GELU(), nn.AvgPool2d(2), nn.Flatten(), nn.Linear(64, 10))
        model = shenjing.Model(net)
        model.compile(loss="cross_entropy", optimizer="adam")
        model.fit(X, y, epochs=2, batch_size=32, verbose=0)
        return tuple(p.data for p in model.parameters())

    one = _with_threads(1, run)
    for threads in THREADS:
        for a, b in zip(one, _with_threads(threads, run)):
            np.testing.assert_array_equal(a, b, err_msg=f"training: 1 vs {threads} threads")

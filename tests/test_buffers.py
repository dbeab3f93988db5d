"""The output-buffer cache (cpp/bindings/bind_buffers.cpp): large results come back
as ordinary writable arrays, a dead result's buffer is reused by the next request of
its size, a buffer that a view still uses is never handed out, and the cache is
thread-safe, bounded and can be emptied or turned off."""

from __future__ import annotations

import os
import subprocess
import sys
import threading

import numpy as np

import shenjing
from shenjing import _core, ops

BIG = (512, 1024)  # above ops' threshold for cached outputs


def test_large_results_are_ordinary_arrays():
    x = np.random.default_rng(0).standard_normal(BIG).astype(np.float32)
    y = ops.relu(x)
    assert y.shape == BIG and y.dtype == np.float32 and y.flags.c_contiguous and y.flags.writeable
    np.testing.assert_array_equal(y, np.maximum(x, 0))
    y[0, 0] = 7.0
    assert y[0, 0] == 7.0
    e = _core.empty([3, 0, 2], np.dtype(np.float64))
    assert e.shape == (3, 0, 2) and e.dtype == np.float64


def test_a_dead_result_is_reused_and_a_live_view_is_not():
    x = np.ones(BIG, np.float32)
    shenjing.empty_cache()
    before = _core.buffer_cache_info()
    y = ops.sigmoid(x)
    address = y.ctypes.data
    del y
    z = ops.sigmoid(x)
    after = _core.buffer_cache_info()
    assert after["hits"] == before["hits"] + 1 and z.ctypes.data == address
    view = z[1:]
    del z
    w = ops.tanh(x)  # same size, but the view still uses the old buffer
    assert w.ctypes.data != address
    np.testing.assert_allclose(view, 1 / (1 + np.exp(-1.0)), rtol=1e-6)  # untouched by tanh
    np.testing.assert_allclose(w, np.tanh(1.0), rtol=1e-6)


def test_threads_share_the_cache_safely():
    x = np.random.default_rng(1).standard_normal(BIG).astype(np.float32)
    expected = ops.gelu(x)
    errors = []

    def work():
        for _ in range(30):
            y = ops.gelu(x)
            if not np.array_equal(y, expected):
                errors.append("mismatch")

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_empty_cache_and_the_limit():
    x = np.ones(BIG, np.float32)
    del_me = ops.relu(x)
    del del_me
    held = shenjing.empty_cache()
    assert held["cached_bytes"] >= x.nbytes
    assert _core.buffer_cache_info()["cached_bytes"] == 0
    code = ("import numpy as np; from shenjing import ops, _core; y = ops.relu(np.ones((512, 1024), np.float32)); "
            "del y; print(_core.buffer_cache_info()['cached_bytes'], _core.buffer_cache_info()['limit_bytes'])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=dict(os.environ, SHENJING_BUFFER_CACHE_MB="0"))
    assert out.stdout.split() == ["0", "0"]

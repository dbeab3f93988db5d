"""Inputs that end on the last element before an unreadable page: a kernel must not read
past the end of an array (its partial last vector goes through masked loads), or the
process dies with SIGSEGV. Each (ISA, op) set runs in a child process, so a crash
fails one test with its name instead of taking the whole run down."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

import shenjing

SCRIPT = textwrap.dedent("""
    import ctypes, mmap, sys
    import numpy as np
    import shenjing
    from shenjing import ops

    shenjing.set_isa(sys.argv[1])
    PAGE = mmap.PAGESIZE
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]

    def at_page_end(values):
        # values copied to the end of a readable region whose next page is PROT_NONE
        data_pages = -(-values.nbytes // PAGE) + 1
        region = mmap.mmap(-1, (data_pages + 1) * PAGE)
        base = ctypes.addressof(ctypes.c_char.from_buffer(region))
        assert libc.mprotect(base + data_pages * PAGE, PAGE, 0) == 0, ctypes.get_errno()
        start = data_pages * PAGE - values.nbytes
        out = np.frombuffer(region, dtype=values.dtype, count=values.size, offset=start)
        out[:] = values.reshape(-1)
        at_page_end.keep.append(region)  # the region must outlive the array
        return out.reshape(values.shape)
    at_page_end.keep = []

    rng = np.random.default_rng(0)
    for n in [1, 5, 13, 16, 17, 31, 255, 269, 4103]:
        for scale in [3.0, 30.0]:  # within the table forms' bounds, and past them
            x = at_page_end((rng.standard_normal(n) * scale).astype(np.float32))
            g = at_page_end(rng.standard_normal(n).astype(np.float32))
            for f in [ops.relu, ops.sigmoid, ops.tanh, ops.gelu, lambda v: ops.gelu(v, "tanh"),
                      lambda v: ops.softmax(v), lambda v: ops.log_softmax(v)]:
                y = f(x)
                assert np.isfinite(y).all()
            y = at_page_end(ops.sigmoid(x))
            ops.sigmoid_backward(g, y)
            ops.gelu_backward(g, x)
            ops.gelu_backward(g, x, "tanh")
            ops.softmax_backward(g, at_page_end(ops.softmax(x)))
            ops.log_softmax_backward(g, at_page_end(ops.log_softmax(x)))
            ops.mse_loss(x, g)
            ops.binary_cross_entropy_with_logits(x, at_page_end((g > 0).astype(np.float32)))
            p, m, v = (at_page_end(rng.standard_normal(n).astype(np.float32)) for _ in range(3))
            ops.adam_step([p], [g], [m], [v], step=1)
            ops.sgd_step([p], [g], [at_page_end(np.zeros(n, np.float32))], lr=0.1, momentum=0.9)
    for M, N, K in [(1, 1, 1), (3, 5, 7), (13, 17, 33), (37, 61, 151)]:
        for ta in (False, True):
            for tb in (False, True):
                a = at_page_end(rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32))
                b = at_page_end(rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32))
                ops.gemm(a, b, trans_a=ta, trans_b=tb, bias=at_page_end(np.ones(N, np.float32)))
        logits = at_page_end(rng.standard_normal((M, N)).astype(np.float32))
        ops.cross_entropy(logits, at_page_end(rng.integers(0, N, M)))
    for C, H, O, K in [(1, 5, 3, 3), (3, 9, 5, 2), (17, 7, 3, 5)]:
        x = at_page_end(rng.standard_normal((2, C, H, H)).astype(np.float32))
        w = at_page_end(rng.standard_normal((O, C, K, K)).astype(np.float32))
        y = ops.conv2d(x, w, at_page_end(np.ones(O, np.float32)), padding=1)
        ops.conv2d_backward(at_page_end(np.ascontiguousarray(y)), x, w, padding=1)
        ops.max_pool2d(x, 2)
        ops.avg_pool2d(x, 2)
    print("ok")
""")


@pytest.mark.parametrize("isa_name", shenjing.backend_info()["supported_isas"])
def test_no_read_past_the_end(isa_name):
    run = subprocess.run([sys.executable, "-c", SCRIPT, isa_name], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and run.stdout.strip() == "ok", (
        f"{isa_name}: exit {run.returncode}\n{run.stdout[-2000:]}\n{run.stderr[-2000:]}")

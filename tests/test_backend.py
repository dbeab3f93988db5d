"""Backend information, threads and the run-time choice of instruction set."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import shenjing
from shenjing import ops

from helpers import raises


def test_backend_info_reports_the_build():
    info = shenjing.backend_info()
    assert info["version"] == shenjing.__version__
    assert info["isa"] in info["supported_isas"]
    assert info["supported_isas"][0] == "generic"
    assert isinstance(info["openmp"], bool)
    assert info["threads"] == shenjing.get_num_threads() >= 1
    assert "-O3" in info["flags"] and "march=native" not in info["flags"]
    assert info["compiler"]
    assert info["cuda_available"] is False


def test_default_isa_is_the_best_supported():
    code = "import shenjing; i = shenjing.backend_info(); print(i['isa'], i['supported_isas'][-1])"
    env = {k: v for k, v in os.environ.items() if k != "SHENJING_ISA"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    chosen, best = out.stdout.split()
    assert chosen == best


@pytest.mark.parametrize("isa", shenjing.backend_info()["supported_isas"])
def test_environment_variable_forces_an_isa(isa):
    code = "import shenjing; print(shenjing.get_isa())"
    out = subprocess.run([sys.executable, "-c", code], env=dict(os.environ, SHENJING_ISA=isa),
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == isa


@pytest.mark.parametrize("value", ["sse9", "AVX2 ", "amx"])
def test_unknown_or_unsupported_isa_is_a_clear_error_at_import(value):
    out = subprocess.run([sys.executable, "-c", "import shenjing"], env=dict(os.environ, SHENJING_ISA=value),
                         capture_output=True, text=True)
    assert out.returncode != 0
    assert "SHENJING_ISA=" in out.stderr and "ImportError" in out.stderr


def test_set_isa_validates():
    with raises(ValueError, "set_isa", "neon"):
        shenjing.set_isa("neon")
    with raises(TypeError, "set_isa"):
        shenjing.set_isa(2)


def test_set_num_threads_round_trips_and_validates():
    old = shenjing.get_num_threads()
    try:
        shenjing.set_num_threads(1)
        assert shenjing.get_num_threads() == 1
        assert shenjing.backend_info()["threads"] == 1
        shenjing.set_num_threads(3)
        assert shenjing.get_num_threads() == 3
        x = np.random.default_rng(0).standard_normal(100_000).astype(np.float32)
        np.testing.assert_array_equal(ops.relu(x), np.maximum(x, 0))
    finally:
        shenjing.set_num_threads(old)
    with raises(ValueError, "set_num_threads", "0"):
        shenjing.set_num_threads(0)
    with raises(TypeError, "set_num_threads"):
        shenjing.set_num_threads(1.5)


def test_kernels_release_the_gil_and_are_thread_safe():
    """Eight Python threads on shared read-only inputs get the serial results, for a
    kernel of every family (the conv and GEMM ones use per-thread scratch buffers)."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(1)
    x = rng.standard_normal((64, 1000)).astype(np.float32)
    t = rng.integers(0, 1000, 64)
    w = rng.standard_normal((300, 1000)).astype(np.float32)
    img = rng.standard_normal((8, 3, 12, 12)).astype(np.float32)
    tiny = rng.standard_normal((40, 4, 4, 4)).astype(np.float32)  # the position-major conv path
    k, k_tiny = rng.standard_normal((6, 3, 3, 3)).astype(np.float32), rng.standard_normal((5, 4, 3, 3)).astype(np.float32)
    gy = rng.standard_normal((8, 6, 12, 12)).astype(np.float32)
    gy_tiny = rng.standard_normal((40, 5, 4, 4)).astype(np.float32)
    for a in (x, t, w, img, tiny, k, k_tiny, gy, gy_tiny):
        a.flags.writeable = False

    def work(_):
        p = [x.copy()]  # an optimizer step updates its own copy
        ops.adam_step(p, [x], [np.zeros_like(x)], [np.zeros_like(x)], step=1)
        return [ops.softmax(x), ops.cross_entropy_backward(np.float32(1), x, t), ops.gelu(x), ops.tanh(x),
                ops.gemm(x, w, trans_b=True), ops.sum(x, 0), p[0],
                ops.conv2d(img, k, padding=1), *ops.conv2d_backward(gy, img, k, padding=1),
                ops.conv2d(tiny, k_tiny, padding=1), *ops.conv2d_backward(gy_tiny, tiny, k_tiny, padding=1),
                *ops.max_pool2d(img, 2, return_indices=True), ops.avg_pool2d(img, 3, 2, 1)]

    serial = work(None)
    with ThreadPoolExecutor(8) as pool:
        for result in pool.map(work, range(32)):
            for i, (got, expected) in enumerate(zip(result, serial)):
                np.testing.assert_array_equal(got, expected, err_msg=f"result {i}")


def test_demo_trains_the_digits_cnn():
    out = subprocess.run([sys.executable, "-m", "shenjing"], capture_output=True, text=True, check=True)
    assert "avx" in out.stdout or "generic" in out.stdout
    assert "Epoch 15/15" in out.stdout and "s per epoch" in out.stdout
    accuracy = float(out.stdout.split("test accuracy ")[1].split()[0])
    assert accuracy >= 0.93

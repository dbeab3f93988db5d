"""Shared fixtures: every kernel test runs under each instruction set this
CPU supports and with 1 and 2 threads."""

from __future__ import annotations

import os
import zlib

import numpy as np
import pytest

import shenjing

ISAS = shenjing.backend_info()["supported_isas"]
THREADS = [1, 2]


@pytest.fixture(params=[(isa, t) for isa in ISAS for t in THREADS], ids=lambda p: f"{p[0]}-{p[1]}t")
def backend(request):
    """Switches the kernels to one (instruction set, thread count) for a test."""
    isa, threads = request.param
    old_isa, old_threads = shenjing.get_isa(), shenjing.get_num_threads()
    shenjing.set_isa(isa)
    shenjing.set_num_threads(threads)
    yield request.param
    shenjing.set_isa(old_isa)
    shenjing.set_num_threads(old_threads)


@pytest.fixture
def rng(request):
    """A generator seeded from the test's name: fresh inputs per test, reproducible runs.
    SHENJING_TEST_SEED=<any text> reseeds every test (a tolerance that holds only for the
    default data shows up there)."""
    return np.random.default_rng(zlib.crc32((os.environ.get("SHENJING_TEST_SEED", "") + request.node.nodeid).encode()))


@pytest.fixture(params=ISAS)
def isa(request):
    """Switches the kernels to one instruction set (threads unchanged)."""
    old = shenjing.get_isa()
    shenjing.set_isa(request.param)
    yield request.param
    shenjing.set_isa(old)

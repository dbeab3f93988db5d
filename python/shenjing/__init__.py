"""shenjing (神经): deep learning on the CPU with a C++ core.

The kernels live in ``shenjing._core`` (C++, OpenMP, AVX2 / AVX-512 chosen
at run time); ``shenjing.ops`` is their NumPy-in, NumPy-out interface and
``shenjing._reference`` the same functions in plain NumPy (float64 oracle).
"""

from __future__ import annotations

from . import _core, _reference, ops

__version__ = _core.backend_info()["version"]

__all__ = [
    "__version__",
    "backend_info",
    "get_isa",
    "get_num_threads",
    "ops",
    "set_isa",
    "set_num_threads",
]


def backend_info() -> dict:
    """What the C++ core runs on: version, chosen and supported instruction
    sets, OpenMP, threads, compiler and flags, CUDA availability."""
    return dict(_core.backend_info())


def get_num_threads() -> int:
    """Threads each kernel may use (default: the CPUs this process may use)."""
    return _core.get_num_threads()


def set_num_threads(n: int) -> None:
    """Use at most ``n`` threads in every kernel."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"set_num_threads: n must be an int, got {type(n).__name__}")
    _core.set_num_threads(n)


def get_isa() -> str:
    """The instruction set whose kernels are in use: generic, avx2 or avx512."""
    return _core.get_isa()


def set_isa(name: str) -> None:
    """Use the kernels of one instruction set (as ``SHENJING_ISA`` does at import).

    Raises ValueError for an unknown name or one this CPU cannot run."""
    if not isinstance(name, str):
        raise TypeError(f"set_isa: name must be a str, got {type(name).__name__}")
    _core.set_isa(name)

"""shenjing (神经): deep learning on the CPU with a C++ core.

The concepts of the text, one module each: ``data`` and ``datasets``,
``layers`` (the model), ``activations``, ``losses``, ``optimizers``, and
``Model`` for the training loop; ``nn`` and ``optim`` re-export them under
PyTorch's names. Underneath, ``Tensor`` records a tape for autograd and
``shenjing.ops`` calls the kernels of ``shenjing._core`` (C++, OpenMP, AVX2 /
AVX-512 chosen at run time); ``shenjing._reference`` is the same functions in
plain NumPy (the float64 oracle).
"""

from __future__ import annotations

from . import _core, _reference, ops
from . import functional, init, data, datasets, layers, activations, losses, optimizers  # noqa: E401
from . import nn, optim  # noqa: E401
from . import files
from .files import load, save
from .autograd import detect_anomaly, enable_grad, gradcheck, no_grad
from .model import Callback, EarlyStopping, History, Model, ModelCheckpoint
from .random import manual_seed
from .tensor import Tensor, cat, matmul, stack, tensor

__version__ = _core.backend_info()["version"]

__all__ = [
    "__version__", "backend_info", "empty_cache", "get_isa", "get_num_threads", "set_isa", "set_num_threads",
    "ops", "functional", "init", "data", "datasets", "layers", "activations", "losses", "optimizers", "nn", "optim",
    "Tensor", "tensor", "cat", "stack", "matmul", "no_grad", "enable_grad", "gradcheck", "detect_anomaly",
    "manual_seed", "save", "load", "files",
    "Model", "History", "Callback", "EarlyStopping", "ModelCheckpoint",
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


def empty_cache() -> dict:
    """Free the buffers that large results left for reuse (ops keep up to
    SHENJING_BUFFER_CACHE_MB, default 1024 or an eighth of the memory, of them so a repeated op does not
    page-fault its output again); returns what the cache held before."""
    info = dict(_core.buffer_cache_info())
    _core.empty_buffer_cache()
    return info

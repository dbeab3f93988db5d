"""Weights on disk: one ``.npz`` (a zip of ``.npy`` arrays), never pickle.

``shenjing.save(module.state_dict(), path)`` and ``module.load_state_dict(shenjing.load(path))``
are PyTorch's ``torch.save`` / ``torch.load`` for weights; ``Model.save`` / ``Model.load`` add
the architecture. Reading never runs code from the file and checks every array's header
(dtype, shape, size) before reading its data, so a truncated, corrupted or hostile file (an
object array, a pickle, a zip bomb, a declared size larger than memory) raises a ValueError
that names the file and leaves everything as it was.
"""

from __future__ import annotations

import os
import struct
import zipfile
import zlib
from collections import OrderedDict
from typing import Mapping, Optional

import numpy as np

from .ops import _check_size
from .tensor import Tensor

__all__ = ["save", "load"]

_MAX_TEXT_BYTES = 1 << 24  # the architecture description: far more than any model needs

# what zipfile, zlib and numpy's .npy reader raise on a damaged file
_READ_ERRORS = (zipfile.BadZipFile, zlib.error, OSError, EOFError, ValueError, TypeError, KeyError, SyntaxError,
                UnicodeDecodeError, NotImplementedError, RuntimeError, struct.error, OverflowError)
_WEIGHT_PREFIX = "weight:"  # Model.save's names for the weights beside "__architecture__"


class FileFormatError(ValueError):
    """The file is not what it should be (the message names the file and the reason)."""


def save(state_dict: Mapping[str, np.ndarray], path) -> None:
    """Write a mapping of names to numeric arrays (a ``state_dict``) to one ``.npz`` file."""
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"save: state_dict must be a mapping of names to arrays, got {type(state_dict).__name__}")
    arrays = {}
    for name, value in state_dict.items():
        if not isinstance(name, str):
            raise TypeError(f"save: keys must be str, got {type(name).__name__}")
        array = np.asarray(value.data if isinstance(value, Tensor) else value)
        if array.dtype.kind not in "biuf":
            raise TypeError(f"save: {name} has dtype {array.dtype}; only numeric arrays are saved")
        arrays[name] = array
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def load(path) -> "OrderedDict[str, np.ndarray]":
    """The mapping ``save`` wrote, for ``module.load_state_dict``; from a ``Model.save`` file,
    its weights."""
    with NpzReader(path, "load") as reader:
        names = reader.names()
        if "__architecture__" in names:
            return OrderedDict((n[len(_WEIGHT_PREFIX):], reader.array(n)) for n in names
                               if n.startswith(_WEIGHT_PREFIX))
        return OrderedDict((name, reader.array(name)) for name in names)


class NpzReader:
    """Reads the arrays of an ``.npz`` one by one, header first; every failure is a FileFormatError."""

    def __init__(self, path, op: str):
        self.op, self.path = op, os.fspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(f"{op}: no file {self.path!r}")
        try:
            self.zip = zipfile.ZipFile(self.path)
            members = self.zip.namelist()
        except _READ_ERRORS as e:
            raise self.error(f"not an .npz file ({e})") from None
        self.members = {m[:-4]: m for m in members if m.endswith(".npy")}

    def error(self, reason: str) -> FileFormatError:
        return FileFormatError(f"{self.op}: {self.path!r}: {reason}")

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.zip.close()

    def names(self):
        return list(self.members)

    def header(self, name: str):
        """(shape, dtype) of one array, from its header alone."""
        try:
            with self.zip.open(self.members[name]) as f:
                return self._read_header(f, name)
        except FileFormatError:
            raise
        except _READ_ERRORS as e:
            raise self.error(f"the header of {name!r} is unreadable ({e})") from None

    def _read_header(self, f, name: str):
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
        elif version == (2, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
        else:
            raise self.error(f"{name!r} has an unsupported .npy version {version}")
        if dtype.hasobject:
            raise self.error(f"{name!r} holds Python objects (dtype {dtype}); they are never loaded (no pickle)")
        return tuple(shape), dtype

    def array(self, name: str, expected_shape: Optional[tuple] = None, kinds: str = "biuf",
              max_bytes: Optional[int] = None) -> np.ndarray:
        """One array, after its header passed: a numeric dtype (``kinds``), the expected shape if
        given, and a size that fits (``max_bytes``, else the free memory)."""
        if name not in self.members:
            raise self.error(f"it has no array {name!r}")
        shape, dtype = self.header(name)
        if dtype.kind not in kinds:
            raise self.error(f"{name!r} has dtype {dtype}, expected one of kinds {kinds!r}")
        if expected_shape is not None and shape != tuple(expected_shape):
            raise self.error(f"{name!r} has shape {shape}, the model's has {tuple(expected_shape)}")
        nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
        if max_bytes is not None and nbytes > max_bytes:
            raise self.error(f"{name!r} declares {nbytes} bytes, more than the {max_bytes} allowed")
        try:
            _check_size(shape, dtype, self.op, f"array {name!r} of the file")
            with self.zip.open(self.members[name]) as f:
                return np.lib.format.read_array(f, allow_pickle=False)
        except MemoryError as e:
            raise self.error(str(e)) from None
        except _READ_ERRORS as e:
            raise self.error(f"the data of {name!r} is truncated or corrupted ({e})") from None

    def text(self, name: str) -> str:
        """A 0-d string array (such as the architecture description), bounded in size."""
        array = self.array(name, expected_shape=(), kinds="U", max_bytes=_MAX_TEXT_BYTES)
        return str(array)

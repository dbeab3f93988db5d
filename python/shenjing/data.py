"""Data: datasets, batches and splits, collated into NumPy arrays."""

from __future__ import annotations

import math
import numbers
from typing import Optional, Sequence

import numpy as np

from .random import default_generator
from .tensor import Tensor

__all__ = ["Dataset", "TensorDataset", "DataLoader", "random_split", "Subset", "standardize", "StandardScaler"]


class Dataset:
    """Anything with __len__ and __getitem__(i) -> a sample (a tuple of arrays)."""

    def __len__(self) -> int:
        raise NotImplementedError

    def __getitem__(self, index):
        raise NotImplementedError


def _array(x):
    return x.data if isinstance(x, Tensor) else np.asarray(x)


class TensorDataset(Dataset):
    """Samples are the i-th rows of arrays of equal length."""

    def __init__(self, *arrays):
        if not arrays:
            raise ValueError("TensorDataset: needs at least one array")
        self.arrays = [_array(a) for a in arrays]
        lengths = {len(a) for a in self.arrays}
        if len(lengths) != 1:
            raise ValueError(f"TensorDataset: arrays have different lengths {[len(a) for a in self.arrays]}")

    def __len__(self):
        return len(self.arrays[0])

    def __getitem__(self, index):
        return tuple(a[index] for a in self.arrays)


class Subset(Dataset):
    def __init__(self, dataset, indices):
        self.dataset, self.indices = dataset, np.asarray(indices)

    def __len__(self):
        return len(self.indices)

    def __getitem__(self, index):
        return self.dataset[self.indices[index]]


def random_split(dataset, lengths: Sequence, generator: Optional[np.random.Generator] = None):
    """Split into non-overlapping Subsets of the given lengths (or fractions summing to 1)."""
    n = len(dataset)
    lengths = list(lengths)
    if any(not isinstance(x, numbers.Real) or isinstance(x, bool) or not x >= 0 for x in lengths):
        raise ValueError(f"random_split: lengths must be counts or fractions >= 0, got {lengths}")
    if lengths and all(isinstance(x, float) for x in lengths) and math.isclose(sum(lengths), 1.0):
        counts = [int(math.floor(n * f)) for f in lengths]  # fractions, as PyTorch reads them
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
    else:
        counts = [int(x) for x in lengths]
        if counts != lengths:
            raise ValueError(f"random_split: lengths {lengths} are neither counts nor fractions that add up to 1")
    if sum(counts) != n:
        raise ValueError(f"random_split: lengths {lengths} do not add up to the dataset's {n}")
    order = (generator or default_generator()).permutation(n)
    out, start = [], 0
    for c in counts:
        out.append(Subset(dataset, order[start:start + c]))
        start += c
    return out


class DataLoader:
    """Batches of a dataset: each item of the sample tuple stacked into one array.
    TensorDatasets (and Subsets of them) are sliced whole, without a Python loop over samples."""

    def __init__(self, dataset, batch_size: int = 1, shuffle: bool = False, drop_last: bool = False,
                 seed: Optional[int] = None):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be a positive int, got {batch_size!r}")
        self.dataset, self.batch_size, self.shuffle, self.drop_last = dataset, batch_size, shuffle, drop_last
        self.generator = np.random.default_rng(seed) if seed is not None else None

    def __len__(self):
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _arrays(self):
        d, index = self.dataset, None
        while isinstance(d, Subset):
            index = d.indices if index is None else d.indices[index]
            d = d.dataset
        if isinstance(d, TensorDataset):
            return d.arrays, index
        return None, None

    def __iter__(self):
        n = len(self.dataset)
        order = (self.generator or default_generator()).permutation(n) if self.shuffle else np.arange(n)
        arrays, base = self._arrays()
        for start in range(0, n, self.batch_size):
            idx = order[start:start + self.batch_size]
            if self.drop_last and len(idx) < self.batch_size:
                return
            if arrays is not None:
                rows = idx if base is None else base[idx]
                yield tuple(a[rows] for a in arrays)
            else:
                samples = [self.dataset[int(i)] for i in idx]
                yield tuple(np.stack([np.asarray(s[k]) for s in samples]) for k in range(len(samples[0])))


class StandardScaler:
    """Per-feature standardisation: fit on training data, apply anywhere."""

    def fit(self, x):
        x = _array(x)
        self.mean_ = x.mean(axis=0)
        self.scale_ = x.std(axis=0)
        self.scale_[self.scale_ == 0] = 1.0
        return self

    def transform(self, x):
        if not hasattr(self, "mean_"):
            raise RuntimeError("StandardScaler.transform: call fit (or fit_transform) first")
        x = _array(x)
        if x.shape[1:] != self.mean_.shape:
            raise ValueError(f"StandardScaler.transform: x has shape {x.shape}, fitted on samples of shape "
                             f"{self.mean_.shape}")
        return ((x - self.mean_) / self.scale_).astype(np.float32)

    def fit_transform(self, x):
        return self.fit(x).transform(x)


def standardize(x, mean=None, std=None):
    """(x - mean) / std per feature (the statistics of x itself when not given); returns (z, mean, std)."""
    x = _array(x)
    mean = x.mean(axis=0) if mean is None else np.asarray(mean)
    std = x.std(axis=0) if std is None else np.asarray(std)
    std = np.where(std == 0, 1.0, std)
    return ((x - mean) / std).astype(np.float32), mean, std

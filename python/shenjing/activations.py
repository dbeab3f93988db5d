"""Activations as layers (PyTorch's names); the functions are in shenjing.functional."""

from __future__ import annotations

import numbers

from . import functional as F
from .layers import Module
from .ops import _flag, _real, _short


def _dim(dim, owner: str) -> int:
    if isinstance(dim, bool) or not isinstance(dim, numbers.Integral):
        raise TypeError(f"{owner}: dim must be an int, got {_short(dim)}")
    return int(dim)

__all__ = ["ReLU", "LeakyReLU", "Sigmoid", "Tanh", "GELU", "Softmax", "LogSoftmax"]


class ReLU(Module):
    """max(x, 0). ``inplace`` is taken for PyTorch's signature (``nn.ReLU(inplace=True)`` is
    common in model code) and the result is a new tensor either way, as autograd needs."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = _flag(inplace, "ReLU", "inplace")

    def forward(self, x):
        return F.relu(x)


class LeakyReLU(Module):
    """x if x > 0 else negative_slope * x"""

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):  # (inplace: as ReLU's)
        super().__init__()
        self.negative_slope = _real(negative_slope, "LeakyReLU", "negative_slope")
        self.inplace = _flag(inplace, "LeakyReLU", "inplace")

    def forward(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self):
        return f"negative_slope={self.negative_slope}"


class Sigmoid(Module):
    """1 / (1 + exp(-x))"""

    def forward(self, x):
        return F.sigmoid(x)


class Tanh(Module):
    def forward(self, x):
        return F.tanh(x)


class GELU(Module):
    """x Phi(x), or its tanh approximation"""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        if not isinstance(approximate, str) or approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {_short(approximate)}")
        self.approximate = approximate

    def forward(self, x):
        return F.gelu(x, self.approximate)

    def extra_repr(self):
        return f"approximate={self.approximate!r}"


class Softmax(Module):
    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = _dim(dim, "Softmax")

    def forward(self, x):
        return F.softmax(x, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"


class LogSoftmax(Module):
    def __init__(self, dim: int = -1):
        super().__init__()
        self.dim = _dim(dim, "LogSoftmax")

    def forward(self, x):
        return F.log_softmax(x, self.dim)

    def extra_repr(self):
        return f"dim={self.dim}"

"""Losses as layers (PyTorch's names and ``reduction``); the functions are in shenjing.functional."""

from __future__ import annotations

import numbers

from . import functional as F
from .layers import Module, _in_range
from .ops import _flag, _short


def _index(value, owner: str) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: ignore_index must be an int, got {_short(value)}")
    if not -2 ** 63 <= value < 2 ** 63:
        raise ValueError(f"{owner}: ignore_index must fit in int64, got {value}")
    return int(value)

__all__ = ["MSELoss", "L1Loss", "SmoothL1Loss", "BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "NLLLoss",
           "KLDivLoss"]


class _Loss(Module):
    reductions = ("none", "mean", "sum")

    def __init__(self, reduction: str = "mean"):
        super().__init__()
        if not isinstance(reduction, str) or reduction not in self.reductions:
            raise ValueError(f"{type(self).__name__}: reduction must be one of {self.reductions}, got {_short(reduction)}")
        self.reduction = reduction

    def extra_repr(self):
        return f"reduction={self.reduction!r}"


class MSELoss(_Loss):
    """(input - target)^2"""

    def forward(self, input, target):
        return F.mse_loss(input, target, self.reduction)


class L1Loss(_Loss):
    """|input - target|"""

    def forward(self, input, target):
        return F.l1_loss(input, target, self.reduction)


class SmoothL1Loss(_Loss):
    def __init__(self, reduction: str = "mean", beta: float = 1.0):
        super().__init__(reduction)
        self.beta = _in_range(beta, "SmoothL1Loss", "beta", 0.0)

    def forward(self, input, target):
        return F.smooth_l1_loss(input, target, self.reduction, self.beta)


class BCELoss(_Loss):
    """binary cross entropy on probabilities"""

    def forward(self, input, target):
        return F.binary_cross_entropy(input, target, self.reduction)


class BCEWithLogitsLoss(_Loss):
    """binary cross entropy on logits: sigmoid + BCE, stable for any logit"""

    def forward(self, input, target):
        return F.binary_cross_entropy_with_logits(input, target, self.reduction)


class CrossEntropyLoss(_Loss):
    """log_softmax + NLL on logits (N, C, ...) and class indices (N, ...)"""

    def __init__(self, reduction: str = "mean", ignore_index: int = -100, label_smoothing: float = 0.0):
        super().__init__(reduction)
        self.ignore_index = _index(ignore_index, "CrossEntropyLoss")
        self.label_smoothing = _in_range(label_smoothing, "CrossEntropyLoss", "label_smoothing", 0.0, 1.0)

    def forward(self, input, target):
        return F.cross_entropy(input, target, self.reduction, self.ignore_index, self.label_smoothing)


class NLLLoss(_Loss):
    """-input[target] on log-probabilities"""

    def __init__(self, reduction: str = "mean", ignore_index: int = -100):
        super().__init__(reduction)
        self.ignore_index = _index(ignore_index, "NLLLoss")

    def forward(self, input, target):
        return F.nll_loss(input, target, self.reduction, self.ignore_index)


class KLDivLoss(_Loss):
    reductions = ("none", "mean", "sum", "batchmean")

    def __init__(self, reduction: str = "mean", log_target: bool = False):
        super().__init__(reduction)
        self.log_target = _flag(log_target, "KLDivLoss", "log_target")

    def forward(self, input, target):
        return F.kl_div(input, target, self.reduction, self.log_target)

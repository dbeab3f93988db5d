"""``shenjing.optim``: the optimizers under PyTorch's module name."""

from .optimizers import SGD, Adam, AdamW, Optimizer, clip_grad_norm_, lr_scheduler  # noqa: F401

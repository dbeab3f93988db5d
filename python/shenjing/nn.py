"""``shenjing.nn``: layers, activations, losses and init under PyTorch's module name."""

from . import functional, init  # noqa: F401
from .activations import *  # noqa: F401,F403
from .layers import *  # noqa: F401,F403
from .losses import *  # noqa: F401,F403

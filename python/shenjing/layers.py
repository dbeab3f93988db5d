"""Layers: the model's building blocks, with PyTorch's names, signatures and
default initialisations. Each layer keeps its configuration, owns its
Parameters, and calls the functional form in ``forward``."""

from __future__ import annotations

import math
import numbers
from collections import OrderedDict
from typing import Iterator, Mapping, Tuple

import numpy as np

from . import functional as F
from . import init
from .ops import _MAX_EXTENT, _check_size, _flag, _real, _short
from .tensor import Tensor

__all__ = ["Parameter", "Module", "Sequential", "Linear", "Conv1d", "Conv2d", "MaxPool2d", "AvgPool2d",
           "AdaptiveAvgPool2d", "Flatten", "Dropout", "BatchNorm1d", "BatchNorm2d", "Identity"]


# --- hyper-parameter checks: every layer refuses a bad value when it is built, naming itself ------

def _count(value, owner: str, name: str, minimum: int = 0) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {name} must be an int, got {_short(value)}")
    if not minimum <= value <= _MAX_EXTENT:
        raise ValueError(f"{owner}: {name} must be an int >= {minimum} (and below 2**31), got {value}")
    return int(value)


def _sizes(value, owner: str, name: str, dims: int, minimum: int):
    """An int (kept as an int) or ``dims`` ints (as a tuple), each >= minimum."""
    if not isinstance(value, (tuple, list)):
        return _count(value, owner, name, minimum)
    if len(value) != dims:
        raise ValueError(f"{owner}: {name} must be an int or {dims} ints, got {_short(value)}")
    return tuple(_count(v, owner, name, minimum) for v in value)


def _in_range(value, owner: str, name: str, low: float, high: float = math.inf) -> float:
    value = _real(value, owner, name)
    if not low <= value <= high:
        raise ValueError(f"{owner}: {name} must be in [{low}, {high}], got {value}")
    return value


def _as_pair(value):
    return value if isinstance(value, tuple) else (value, value)


def _new_array(shape, owner: str, what: str, fill=np.empty) -> np.ndarray:
    _check_size(shape, np.float32, owner, what)
    return fill(shape, np.float32)


class Parameter(Tensor):
    """A Tensor that a Module owns and an optimizer updates (requires_grad by default)."""

    __slots__ = ()

    def __init__(self, data, requires_grad: bool = True):
        # C-contiguous and aligned, as the optimizers' in-place steps need: a float32 array
        # that already is one is shared, not copied
        super().__init__(np.require(data, np.float32, "CA") if not isinstance(data, Tensor)
                         else data.data, requires_grad=requires_grad)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class Module:
    """Base class: parameters, sub-modules and buffers are found by attribute."""

    def __init__(self):
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "training", True)

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(f"{type(self).__name__}: call super().__init__() before assigning attributes")
        # as PyTorch: a parameter or a sub-module is replaced only by its like or None (anything
        # else had dropped it from parameters() silently, so no optimizer would train it), and
        # an array assigned to a buffer stays a buffer (it had dropped out of state_dict())
        kinds = ((self._parameters, Parameter, "parameter", "Parameter"),
                 (self._modules, Module, "child module", "Module"))
        for table, kind, what, kind_name in kinds:
            if name in table and value is not None and not isinstance(value, kind):
                raise TypeError(f"{type(self).__name__}: cannot assign {type(value).__name__} as {what} '{name}' "
                                f"({kind_name} or None expected)")
        if name in self._buffers and isinstance(value, np.ndarray):
            self._buffers[name] = value
            object.__setattr__(self, name, value)
            return
        for table in (self._parameters, self._modules, self._buffers):
            table.pop(name, None)
        if isinstance(value, Parameter):
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def __delattr__(self, name):
        for table in (self._parameters, self._modules, self._buffers):  # (it stayed in parameters())
            table.pop(name, None)
        object.__delattr__(self, name)

    def register_buffer(self, name: str, array: np.ndarray) -> None:
        """A state array saved with the model but not trained (running statistics)."""
        self._buffers[name] = array
        object.__setattr__(self, name, array)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no forward")

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    # --- traversal ----------------------------------------------------------------------
    def named_children(self) -> Iterator[Tuple[str, "Module"]]:
        return iter(self._modules.items())

    def children(self):
        return iter(self._modules.values())

    def named_modules(self, prefix: str = ""):
        yield prefix, self
        for name, child in self._modules.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def named_parameters(self, prefix: str = ""):
        seen = set()
        for module_name, module in self.named_modules(prefix):
            for name, p in module._parameters.items():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{module_name}.{name}" if module_name else name), p

    def parameters(self):
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self):
        for module_name, module in self.named_modules():
            for name, b in module._buffers.items():
                yield (f"{module_name}.{name}" if module_name else name), b

    # --- state ----------------------------------------------------------------------------
    def state_dict(self) -> "OrderedDict[str, np.ndarray]":
        """Copies of every parameter and buffer, by dotted name."""
        state = OrderedDict((name, p.data.copy()) for name, p in self.named_parameters())
        state.update((name, np.array(b, copy=True)) for name, b in self.named_buffers())
        return state

    def load_state_dict(self, state, strict: bool = True) -> None:
        """Copy arrays into the parameters and buffers; checks names and shapes first, so a
        failed load leaves the module as it was."""
        if not isinstance(state, Mapping):
            raise TypeError(f"load_state_dict: state must be a mapping of names to arrays (a state_dict, or "
                            f"shenjing.load(path)), got {type(state).__name__}")
        targets = OrderedDict((name, p.data) for name, p in self.named_parameters())
        targets.update(self.named_buffers())
        missing = [k for k in targets if k not in state]
        unexpected = [k for k in state if k not in targets]
        if strict and (missing or unexpected):
            raise KeyError(f"load_state_dict: missing keys {missing}, unexpected keys {unexpected}")
        for name, target in targets.items():
            if name not in state:
                continue
            try:
                value = np.asarray(state[name].data if isinstance(state[name], Tensor) else state[name])
            except (TypeError, ValueError) as e:
                raise ValueError(f"load_state_dict: {name} cannot be made an array ({e})") from None
            if value.dtype.kind not in "biuf":
                raise TypeError(f"load_state_dict: {name} has dtype {value.dtype}, expected numbers")
            if value.shape != target.shape:
                raise ValueError(f"load_state_dict: {name} has shape {value.shape}, the model's has {target.shape}")
        for name, target in targets.items():
            if name in state:
                value = state[name].data if isinstance(state[name], Tensor) else state[name]
                target[...] = np.asarray(value, dtype=target.dtype)

    def train(self, mode: bool = True) -> "Module":
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = None

    # --- printing -------------------------------------------------------------------------
    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"({name}): " + repr(child).replace("\n", "\n  ") for name, child in self._modules.items()]
        head = f"{type(self).__name__}({self.extra_repr()}"
        if not lines:
            return head + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"


class Sequential(Module):
    """Modules applied in order."""

    def __init__(self, *modules):
        super().__init__()
        if len(modules) == 1 and isinstance(modules[0], OrderedDict):
            modules = modules[0].items()
        else:
            modules = ((str(i), m) for i, m in enumerate(modules))
        for name, m in modules:
            if not isinstance(m, Module):
                raise TypeError(f"Sequential: item {name} is a {type(m).__name__}, not a Module")
            setattr(self, name, m)

    def forward(self, x):
        for m in self._modules.values():
            x = m(x)
        return x

    def __getitem__(self, index):
        items = list(self._modules.values())
        return Sequential(*items[index]) if isinstance(index, slice) else items[index]

    def __len__(self):
        return len(self._modules)

    def __iter__(self):
        return iter(self._modules.values())


class Identity(Module):
    def forward(self, x):
        return x


class Linear(Module):
    """y = x W^T + b; W: (out_features, in_features), both Kaiming-uniform as in PyTorch."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        in_features = _count(in_features, "Linear", "in_features")
        out_features = _count(out_features, "Linear", "out_features")
        self.in_features, self.out_features = in_features, out_features
        self.weight = Parameter(_new_array((out_features, in_features), "Linear", "weight"))
        self.bias = Parameter(_new_array((out_features,), "Linear", "bias")) if _flag(bias, "Linear", "bias") else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.in_features) if self.in_features > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, x):
        x = x if isinstance(x, Tensor) else Tensor(x)
        if x.ndim < 1 or x.shape[-1] != self.in_features:
            raise ValueError(f"Linear({self.in_features} -> {self.out_features}): input has "
                             f"{x.shape[-1] if x.ndim else 0} features, expected {self.in_features}; "
                             f"input shape {x.shape}")
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


class _ConvNd(Module):
    dims = 2

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True):
        super().__init__()
        name = type(self).__name__
        in_channels = _count(in_channels, name, "in_channels", 1)
        out_channels = _count(out_channels, name, "out_channels", 1)
        groups = _count(groups, name, "groups", 1)
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"{name}: groups={groups} must divide in_channels ({in_channels}) "
                             f"and out_channels ({out_channels})")
        k = _sizes(kernel_size, name, "kernel_size", self.dims, 1)
        k = (k,) * self.dims if isinstance(k, int) else k
        stride = _sizes(stride, name, "stride", self.dims, 1)
        dilation = _sizes(dilation, name, "dilation", self.dims, 1)
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"{name}: padding must be an int, {self.dims} ints, 'same' or 'valid', got {padding!r}")
            if padding == "same" and stride not in (1, (1,) * self.dims):
                raise ValueError(f"{name}: padding='same' needs stride 1, got stride {stride!r}")
        else:
            padding = _sizes(padding, name, "padding", self.dims, 0)
        self.in_channels, self.out_channels, self.kernel_size = in_channels, out_channels, k
        self.stride, self.padding, self.dilation, self.groups = stride, padding, dilation, groups
        self.weight = Parameter(_new_array((out_channels, in_channels // groups) + k, name, "weight"))
        self.bias = Parameter(_new_array((out_channels,), name, "bias")) if _flag(bias, name, "bias") else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.weight.shape[1] * int(np.prod(self.kernel_size))
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0
            init.uniform_(self.bias, -bound, bound)

    def _check(self, x):
        x = x if isinstance(x, Tensor) else Tensor(x)
        if x.ndim not in (self.dims + 1, self.dims + 2) or x.shape[-self.dims - 1] != self.in_channels:
            raise ValueError(f"{type(self).__name__}({self.in_channels} -> {self.out_channels}): input has shape "
                             f"{x.shape}, expected {self.in_channels} channels in dimension {-self.dims - 1}")
        return x

    def extra_repr(self) -> str:
        ones = (1, (1,) * self.dims)
        return (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, stride={self.stride}, "
                f"padding={self.padding}" + (f", dilation={self.dilation}" if self.dilation not in ones else "")
                + (f", groups={self.groups}" if self.groups != 1 else "") + (", bias=False" if self.bias is None else ""))


class Conv2d(_ConvNd):
    """2-D convolution over (N, C, H, W)."""

    dims = 2

    def forward(self, x):
        return F.conv2d(self._check(x), self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class Conv1d(_ConvNd):
    """1-D convolution over (N, C, L)."""

    dims = 1

    def forward(self, x):
        return F.conv1d(self._check(x), self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


def _pool_arguments(owner, kernel_size, stride, padding):
    kernel_size = _sizes(kernel_size, owner, "kernel_size", 2, 1)
    stride = None if stride is None else _sizes(stride, owner, "stride", 2, 1)
    padding = _sizes(padding, owner, "padding", 2, 0)
    if any(p > k // 2 for p, k in zip(_as_pair(padding), _as_pair(kernel_size))):
        raise ValueError(f"{owner}: padding {padding!r} must be at most half the kernel size {kernel_size!r}")
    return kernel_size, stride, padding


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False):
        super().__init__()
        self.kernel_size, self.stride, self.padding = _pool_arguments("MaxPool2d", kernel_size, stride, padding)
        self.dilation = _sizes(dilation, "MaxPool2d", "dilation", 2, 1)
        self.ceil_mode = _flag(ceil_mode, "MaxPool2d", "ceil_mode")

    def forward(self, x):
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}, padding={self.padding}"


class AvgPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True,
                 divisor_override=None):
        super().__init__()
        self.kernel_size, self.stride, self.padding = _pool_arguments("AvgPool2d", kernel_size, stride, padding)
        self.ceil_mode = _flag(ceil_mode, "AvgPool2d", "ceil_mode")
        self.count_include_pad = _flag(count_include_pad, "AvgPool2d", "count_include_pad")
        self.divisor_override = (None if divisor_override is None
                                 else _count(divisor_override, "AvgPool2d", "divisor_override", 1))

    def forward(self, x):
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.ceil_mode, self.count_include_pad,
                            self.divisor_override)

    def extra_repr(self):
        return f"kernel_size={self.kernel_size}, stride={self.stride or self.kernel_size}, padding={self.padding}"


class AdaptiveAvgPool2d(Module):
    def __init__(self, output_size):
        super().__init__()
        if isinstance(output_size, (tuple, list)):
            if len(output_size) != 2:
                raise ValueError(f"AdaptiveAvgPool2d: output_size must be an int or a pair, got {_short(output_size)}")
            output_size = tuple(None if v is None else _count(v, "AdaptiveAvgPool2d", "output_size", 1)
                                for v in output_size)
        else:
            output_size = _count(output_size, "AdaptiveAvgPool2d", "output_size", 1)
        self.output_size = output_size

    def forward(self, x):
        return F.adaptive_avg_pool2d(x, self.output_size)

    def extra_repr(self):
        return f"output_size={self.output_size}"


class Flatten(Module):
    def __init__(self, start_dim: int = 1):
        super().__init__()
        if isinstance(start_dim, (bool, np.bool_)) or not isinstance(start_dim, numbers.Integral):
            raise TypeError(f"Flatten: start_dim must be an int, got {_short(start_dim)}")
        self.start_dim = int(start_dim)

    def forward(self, x):
        return F.flatten(x, self.start_dim)


class Dropout(Module):
    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = _in_range(p, "Dropout", "p", 0.0, 1.0)

    def forward(self, x):
        return F.dropout(x, self.p, self.training)

    def extra_repr(self):
        return f"p={self.p}"


class _BatchNorm(Module):
    expected_dims: Tuple[int, ...] = (2, 3)

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1, affine: bool = True,
                 track_running_stats: bool = True):
        super().__init__()
        name = type(self).__name__
        num_features = _count(num_features, name, "num_features", 1)
        eps = _in_range(eps, name, "eps", 0.0)
        if momentum is None:
            raise ValueError(f"{name}: momentum=None (a cumulative average of the statistics) is not supported; "
                             f"pass a number in [0, 1]")
        momentum = _in_range(momentum, name, "momentum", 0.0, 1.0)
        affine, track_running_stats = _flag(affine, name, "affine"), _flag(track_running_stats, name, "track_running_stats")
        self.num_features, self.eps, self.momentum = num_features, eps, momentum
        self.affine, self.track_running_stats = affine, track_running_stats
        shape = (num_features,)
        self.weight = Parameter(_new_array(shape, name, "weight", np.ones)) if affine else None
        self.bias = Parameter(_new_array(shape, name, "bias", np.zeros)) if affine else None
        if track_running_stats:
            self.register_buffer("running_mean", _new_array(shape, name, "running_mean", np.zeros))
            self.register_buffer("running_var", _new_array(shape, name, "running_var", np.ones))
        else:
            self.running_mean = self.running_var = None

    def forward(self, x):
        x = x if isinstance(x, Tensor) else Tensor(x)
        if x.ndim not in self.expected_dims or x.shape[1] != self.num_features:
            raise ValueError(f"{type(self).__name__}({self.num_features}): input has shape {x.shape}, expected "
                             f"{self.num_features} features in dimension 1 and {self.expected_dims} dimensions")
        use_batch = self.training or self.running_mean is None
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight, self.bias, use_batch,
                            self.momentum, self.eps)

    def extra_repr(self):
        return f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, affine={self.affine}"


class BatchNorm1d(_BatchNorm):
    expected_dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    expected_dims = (4,)

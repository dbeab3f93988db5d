"""Optimizers (torch.optim's names, arguments and update rules). ``step()``
makes one C++ call per parameter group for all its parameters."""

from __future__ import annotations

import math
import numbers
from typing import Iterable, Mapping

import numpy as np

from . import _core, ops
from .ops import _flag, _real, _short
from .tensor import Tensor

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "clip_grad_norm_", "lr_scheduler"]


def _plain_rates(*values) -> bool:
    """Finite floats >= 0, as _validate leaves them: the step may skip ops' checks and call the kernel."""
    for v in values:
        if type(v) is not float or not 0.0 <= v < math.inf:
            return False
    return True


class Optimizer:
    """Parameter groups (dicts with "params" and hyper-parameters) and per-parameter state."""

    def __init__(self, params, defaults: dict):
        name = type(self).__name__
        if isinstance(params, (Tensor, np.ndarray, dict)) or not isinstance(params, Iterable):
            raise TypeError(f"{name}: params must be an iterable of Parameters or of parameter-group dicts, "
                            f"got {_short(params)}")
        params = list(params)
        if not params:
            raise ValueError(f"{name}: got an empty parameter list")
        groups = params if isinstance(params[0], dict) else [{"params": params}]
        self.defaults = defaults
        self.param_groups = []
        self.state = {}
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group: dict) -> None:
        name = type(self).__name__
        if not isinstance(group, dict) or "params" not in group:
            raise TypeError(f"{name}: a parameter group must be a dict with a 'params' entry, got {_short(group)}")
        group = dict(group)
        params = group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (np.ndarray, dict)) or not isinstance(params, Iterable):
            raise TypeError(f"{name}: params must be Parameters, got {_short(params)}")
        group["params"] = list(params)
        for p in group["params"]:
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}: params must be Parameters (shenjing Tensors), got {_short(p)}")
            if p.data.dtype not in (np.float32, np.float64):
                raise TypeError(f"{name}: a parameter has dtype {p.data.dtype}; only float32 and float64 are trained")
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self._validate(group)
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for p in group["params"]:
            if id(p) in seen:
                raise ValueError(f"{type(self).__name__}: a parameter appears in more than one group")
        self.param_groups.append(group)

    def _validate(self, group: dict) -> None:
        self._nonnegative(group, "lr", "learning rate")

    def _nonnegative(self, group: dict, key: str, what: str) -> None:
        """group[key] as a finite float >= 0 (TypeError for a non-number, ValueError otherwise)."""
        value = _real(group[key], type(self).__name__, what)
        if not 0 <= value < math.inf:
            raise ValueError(f"{type(self).__name__}: Invalid {what}: {value} (must be a finite number >= 0)")
        group[key] = value

    def zero_grad(self, set_to_none: bool = True) -> None:
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    p.grad = None
                elif p.grad is not None:
                    p.grad = np.zeros_like(p.data)

    def _with_grads(self, group):
        """(parameter, data, grad) for each of the group's parameters that has a gradient, and
        whether every such gradient is an ndarray of its parameter's shape: the step may then
        call the kernel straight away (it checks dtypes, sizes and writability itself)."""
        entries, plain = [], True
        for p in group["params"]:
            grad = p.grad
            if grad is not None:
                data = p.data
                entries.append((p, data, grad))
                if type(grad) is not np.ndarray or grad.shape != data.shape:
                    plain = False
        return entries, plain

    def state_dict(self) -> dict:
        index = {id(p): i for i, p in enumerate(p for g in self.param_groups for p in g["params"])}
        state = {index[k]: {name: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v) for name, v in s.items()}
                 for k, s in self.state.items() if k in index}
        groups = [{k: v for k, v in g.items() if k != "params"} | {"params": [index[id(p)] for p in g["params"]]}
                  for g in self.param_groups]
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        params = [p for g in self.param_groups for p in g["params"]]
        if not isinstance(state_dict, Mapping) or not {"state", "param_groups"} <= set(state_dict):
            raise TypeError(f"load_state_dict: expected the dict of an optimizer's state_dict() (with 'state' and "
                            f"'param_groups'), got {type(state_dict).__name__}")
        groups = state_dict["param_groups"]
        def valid(i):  # an index (or its string, as a JSON round trip leaves it) of a parameter
            try:
                return 0 <= int(i) < len(params)
            except (TypeError, ValueError):
                return False
        bad = [i for i in state_dict["state"] if not valid(i)]
        if bad:
            raise ValueError(f"load_state_dict: state for parameters {bad[:5]}, this optimizer has {len(params)}")
        if len(groups) != len(self.param_groups) or any(len(a["params"]) != len(b["params"])
                                                        for a, b in zip(groups, self.param_groups)):
            raise ValueError("load_state_dict: the saved parameter groups do not match this optimizer's")
        for group, saved in zip(self.param_groups, groups):
            group.update({k: v for k, v in saved.items() if k != "params"})
        self.state = {id(params[int(i)]): {k: (np.array(v, copy=True) if isinstance(v, np.ndarray) else v)
                                           for k, v in s.items()} for i, s in state_dict["state"].items()}

    def step(self):
        raise NotImplementedError


class SGD(Optimizer):
    """g = grad (+ weight_decay p); buf = momentum buf + (1 - dampening) g;
    g = g + momentum buf (nesterov) or buf; p -= lr g"""

    def __init__(self, params, lr: float = 1e-3, momentum: float = 0.0, dampening: float = 0.0,
                 weight_decay: float = 0.0, nesterov: bool = False, maximize: bool = False):
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
                                      nesterov=nesterov, maximize=maximize))

    def _validate(self, group):
        super()._validate(group)
        name = type(self).__name__
        self._nonnegative(group, "momentum", "momentum")
        self._nonnegative(group, "weight_decay", "weight_decay")
        group["dampening"] = _real(group["dampening"], name, "dampening")
        group["nesterov"], group["maximize"] = _flag(group["nesterov"], name, "nesterov"), _flag(group["maximize"], name, "maximize")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError(f"{name}: Nesterov momentum requires a momentum and zero dampening")

    def step(self):
        for group in self.param_groups:
            entries, plain = self._with_grads(group)
            if not entries:
                continue
            momentum = group["momentum"]
            params, grads, buffers, firsts = [], [], [], []
            for p, data, grad in entries:
                state = self.state.setdefault(id(p), {})
                first = momentum != 0 and "momentum_buffer" not in state
                if first:
                    state["momentum_buffer"] = np.zeros_like(data)
                params.append(data)
                grads.append(grad)
                buffers.append(state.get("momentum_buffer"))
                firsts.append(first)
            lr, dampening, weight_decay = group["lr"], group["dampening"], group["weight_decay"]
            nesterov, maximize = group["nesterov"], group["maximize"]
            if plain and _plain_rates(lr, momentum, weight_decay) and type(dampening) is float \
                    and dampening == dampening and type(nesterov) is bool and type(maximize) is bool \
                    and (not nesterov or momentum > 0 and dampening == 0):
                try:  # (validated at construction) the kernel checks the arrays before it writes anything
                    _core.sgd_step(params, grads, buffers if momentum != 0 else [None] * len(params), firsts, lr,
                                   momentum, dampening, weight_decay, nesterov, maximize)
                    continue
                except (TypeError, ValueError):
                    pass  # ops.sgd_step converts what it can, or names the problem
            ops.sgd_step(params, grads, buffers if momentum != 0 else None, lr=lr, momentum=momentum,
                         dampening=dampening, nesterov=nesterov, weight_decay=weight_decay, maximize=maximize,
                         first_step=firsts)


class Adam(Optimizer):
    """m = beta1 m + (1 - beta1) g; v = beta2 v + (1 - beta2) g^2;
    p -= lr / (1 - beta1^t) m / (sqrt(v) / sqrt(1 - beta2^t) + eps)"""

    decoupled = False

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 amsgrad: bool = False, maximize: bool = False):
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad,
                                      maximize=maximize))

    def _validate(self, group):
        super()._validate(group)
        name = type(self).__name__
        self._nonnegative(group, "eps", "epsilon value")
        self._nonnegative(group, "weight_decay", "weight_decay")
        betas = group["betas"]
        if not isinstance(betas, (tuple, list)) or len(betas) != 2:
            raise TypeError(f"{name}: betas must be a pair of floats, got {_short(betas)}")
        for i, b in enumerate(betas):
            if not 0.0 <= _real(b, name, f"beta at index {i}") < 1.0:
                raise ValueError(f"{name}: Invalid beta parameter at index {i}: {b} (must be in [0, 1))")
        group["betas"] = (float(betas[0]), float(betas[1]))
        group["amsgrad"], group["maximize"] = _flag(group["amsgrad"], name, "amsgrad"), _flag(group["maximize"], name, "maximize")

    def step(self):
        for group in self.param_groups:
            entries, plain = self._with_grads(group)
            if not entries:
                continue
            amsgrad = group["amsgrad"]
            params, grads, exp_avgs, exp_avg_sqs, maxes, steps = [], [], [], [], [], []
            for p, data, grad in entries:
                state = self.state.get(id(p))
                if not state:
                    state = self.state[id(p)] = {"step": 0, "exp_avg": np.zeros_like(data),
                                                 "exp_avg_sq": np.zeros_like(data)}
                if amsgrad and "max_exp_avg_sq" not in state:
                    state["max_exp_avg_sq"] = np.zeros_like(data)
                state["step"] += 1
                params.append(data)
                grads.append(grad)
                exp_avgs.append(state["exp_avg"])
                exp_avg_sqs.append(state["exp_avg_sq"])
                if amsgrad:
                    maxes.append(state["max_exp_avg_sq"])
                steps.append(state["step"])
            lr, eps, weight_decay, betas = group["lr"], group["eps"], group["weight_decay"], group["betas"]
            maximize = group["maximize"]
            if plain and _plain_rates(lr, eps, weight_decay) and type(betas) is tuple and len(betas) == 2 \
                    and _plain_rates(*betas) and betas[0] < 1.0 and betas[1] < 1.0 \
                    and type(amsgrad) is bool and type(maximize) is bool:
                try:  # (validated at construction) the kernel checks the arrays before it writes anything
                    _core.adam_step(params, grads, exp_avgs, exp_avg_sqs, maxes if amsgrad else None, steps, lr,
                                    betas[0], betas[1], eps, weight_decay, amsgrad, maximize, self.decoupled)
                    continue
                except (TypeError, ValueError):
                    pass  # ops.adam_step converts what it can, or names the problem
            ops.adam_step(params, grads, exp_avgs, exp_avg_sqs, maxes if amsgrad else None, step=steps, lr=lr,
                          betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, maximize=maximize,
                          decoupled_weight_decay=self.decoupled)


class AdamW(Adam):
    """Adam with decoupled weight decay: p *= 1 - lr weight_decay before the Adam step."""

    decoupled = True

    def __init__(self, params, lr: float = 1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2,
                 amsgrad: bool = False, maximize: bool = False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize)


def clip_grad_norm_(parameters: Iterable, max_norm: float, norm_type: float = 2.0) -> float:
    """Scale all gradients so their joint 2-norm is at most max_norm; returns the norm before."""
    if norm_type != 2.0:
        raise ValueError(f"clip_grad_norm_: only norm_type=2 is supported, got {norm_type}")
    if not max_norm >= 0:  # (NaN too) a negative bound would flip every gradient's sign
        raise ValueError(f"clip_grad_norm_: max_norm must be >= 0, got {max_norm}")
    grads = [p.grad for p in parameters if p.grad is not None]
    total = math.sqrt(sum(ops.sum_of_squares(g) for g in grads))
    scale = max_norm / (total + 1e-6)
    if scale < 1.0:
        for g in grads:
            g *= scale
    return total


def _positive_int(value, owner: str, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{owner}: {name} must be an int, got {_short(value)}")
    if value < minimum:
        raise ValueError(f"{owner}: {name} must be >= {minimum}, got {value}")
    return int(value)


def _finite_nonnegative(value, owner: str, name: str) -> float:
    value = _real(value, owner, name)
    if not 0 <= value < math.inf:
        raise ValueError(f"{owner}: {name} must be a finite number >= 0, got {value}")
    return value


def _worst(mode: str) -> float:
    """A monitor's best value to start from ('min' or 'max' mode), as PyTorch and Keras do:
    every number beats it and a NaN does not (a first NaN had become the best, and no later
    value could beat it)."""
    return math.inf if mode == "min" else -math.inf


class _Schedulers:
    """torch.optim.lr_scheduler's StepLR, CosineAnnealingLR, ReduceLROnPlateau."""

    class _Scheduler:
        def __init__(self, optimizer: Optimizer):
            if not isinstance(optimizer, Optimizer):
                raise TypeError(f"{type(self).__name__}: optimizer must be a shenjing Optimizer, got {_short(optimizer)}")
            self.optimizer = optimizer
            self.base_lrs = [g["lr"] for g in optimizer.param_groups]
            self.last_epoch = 0

        def get_last_lr(self):
            return [g["lr"] for g in self.optimizer.param_groups]

    class StepLR(_Scheduler):
        def __init__(self, optimizer, step_size: int, gamma: float = 0.1):
            super().__init__(optimizer)
            self.step_size = _positive_int(step_size, "StepLR", "step_size")
            self.gamma = _finite_nonnegative(gamma, "StepLR", "gamma")

        def step(self):
            self.last_epoch += 1
            for g, base in zip(self.optimizer.param_groups, self.base_lrs):
                g["lr"] = base * self.gamma ** (self.last_epoch // self.step_size)

    class CosineAnnealingLR(_Scheduler):
        def __init__(self, optimizer, T_max: int, eta_min: float = 0.0):
            super().__init__(optimizer)
            self.T_max = _positive_int(T_max, "CosineAnnealingLR", "T_max")
            self.eta_min = _finite_nonnegative(eta_min, "CosineAnnealingLR", "eta_min")

        def step(self):
            self.last_epoch += 1
            for g, base in zip(self.optimizer.param_groups, self.base_lrs):
                g["lr"] = self.eta_min + (base - self.eta_min) * (1 + math.cos(math.pi * self.last_epoch / self.T_max)) / 2

    class ReduceLROnPlateau(_Scheduler):
        """PyTorch's, with its relative threshold: a metric is better when it beats the best
        by a factor of 1 -+ threshold."""

        def __init__(self, optimizer, mode: str = "min", factor: float = 0.1, patience: int = 10, min_lr: float = 0.0,
                     threshold: float = 1e-4):
            super().__init__(optimizer)
            if not isinstance(mode, str) or mode not in ("min", "max"):
                raise ValueError(f"ReduceLROnPlateau: mode must be 'min' or 'max', got {_short(mode)}")
            if not 0 < _real(factor, "ReduceLROnPlateau", "factor") < 1:
                raise ValueError(f"ReduceLROnPlateau: factor must be in (0, 1), got {factor}")
            self.mode, self.factor = mode, float(factor)
            self.patience = _positive_int(patience, "ReduceLROnPlateau", "patience", minimum=0)
            self.min_lr = _finite_nonnegative(min_lr, "ReduceLROnPlateau", "min_lr")
            self.threshold = _finite_nonnegative(threshold, "ReduceLROnPlateau", "threshold")
            self.best, self.bad_epochs = _worst(mode), 0

        def step(self, metric: float):
            try:  # (a NaN is taken, and is never better)
                metric = float(metric.item() if isinstance(metric, Tensor) else metric)
            except (TypeError, ValueError):
                raise TypeError(f"ReduceLROnPlateau.step: metric must be a number, got {_short(metric)}") from None
            better = (metric < self.best * (1 - self.threshold) if self.mode == "min"
                      else metric > self.best * (1 + self.threshold))
            if better:
                self.best, self.bad_epochs = metric, 0
            else:
                self.bad_epochs += 1
            if self.bad_epochs > self.patience:
                for g in self.optimizer.param_groups:
                    g["lr"] = max(g["lr"] * self.factor, self.min_lr)
                self.bad_epochs = 0


lr_scheduler = _Schedulers

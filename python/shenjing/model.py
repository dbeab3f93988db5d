"""Model: the Keras-like training loop over a Module.

    model = shenjing.Model(net)
    model.compile(loss="cross_entropy", optimizer="adam", metrics=["accuracy"])
    history = model.fit(x, y, epochs=10, batch_size=64, validation_split=0.1)
    model.evaluate(x_test, y_test); model.predict(x_new); model.save("net.npz")
"""

from __future__ import annotations

import json
import math
import numbers
import sys
import time

import numpy as np

from . import activations, files, layers, losses, optimizers
from .autograd import detect_anomaly, no_grad
from .data import DataLoader, TensorDataset
from .tensor import Tensor

__all__ = ["Model", "History", "Callback", "EarlyStopping", "ModelCheckpoint"]

_LOSSES = {"cross_entropy": losses.CrossEntropyLoss, "mse": losses.MSELoss, "mse_loss": losses.MSELoss,
           "l1": losses.L1Loss, "l1_loss": losses.L1Loss, "smooth_l1": losses.SmoothL1Loss,
           "bce": losses.BCELoss, "binary_cross_entropy": losses.BCELoss,
           "bce_with_logits": losses.BCEWithLogitsLoss, "binary_cross_entropy_with_logits": losses.BCEWithLogitsLoss,
           "nll": losses.NLLLoss, "nll_loss": losses.NLLLoss, "kl_div": losses.KLDivLoss}
_OPTIMIZERS = {"sgd": optimizers.SGD, "adam": optimizers.Adam, "adamw": optimizers.AdamW}


class History:
    """What fit recorded: ``history`` maps "loss", each metric and their "val_" forms to per-epoch lists."""

    def __init__(self):
        self.history = {}
        self.epoch = []

    def record(self, epoch: int, logs: dict) -> None:
        self.epoch.append(epoch)
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)


class Callback:
    model: "Model"

    def on_epoch_end(self, epoch: int, logs: dict) -> None:
        pass


def _monitor_mode(mode, monitor: str, owner: str) -> str:
    """'min' or 'max' ('auto': max for an accuracy, as Keras guesses)."""
    if mode not in ("auto", "min", "max"):  # (a typo such as 'minimum' had meant 'max')
        raise ValueError(f"{owner}: mode must be 'auto', 'min' or 'max', got {mode!r}")
    return ("max" if "acc" in monitor else "min") if mode == "auto" else mode


class EarlyStopping(Callback):
    """Stop when `monitor` has not improved by min_delta for `patience` epochs."""

    def __init__(self, monitor: str = "val_loss", patience: int = 3, min_delta: float = 0.0, mode: str = "auto",
                 restore_best_weights: bool = False):
        self.monitor = monitor
        self.patience = optimizers._positive_int(patience, "EarlyStopping", "patience", minimum=0)
        self.min_delta = optimizers._finite_nonnegative(min_delta, "EarlyStopping", "min_delta")
        self.mode = _monitor_mode(mode, monitor, "EarlyStopping")
        self.restore_best_weights = restore_best_weights
        self.best, self.wait, self.best_state = optimizers._worst(self.mode), 0, None

    def on_epoch_end(self, epoch, logs):
        value = logs.get(self.monitor)
        if value is None:
            raise KeyError(f"EarlyStopping: '{self.monitor}' is not among the logged values {sorted(logs)}")
        improved = value < self.best - self.min_delta if self.mode == "min" else value > self.best + self.min_delta
        if improved:
            self.best, self.wait = value, 0
            if self.restore_best_weights:
                self.best_state = self.model.module.state_dict()
        else:
            self.wait += 1
            if self.wait >= self.patience:
                self.model.stop_training = True
                if self.restore_best_weights and self.best_state is not None:
                    self.model.module.load_state_dict(self.best_state)


class ModelCheckpoint(Callback):
    """Save the model after each epoch (or only when `monitor` improves)."""

    def __init__(self, filepath: str, monitor: str = "val_loss", save_best_only: bool = False, mode: str = "auto"):
        self.filepath, self.monitor, self.save_best_only = filepath, monitor, save_best_only
        self.mode = _monitor_mode(mode, monitor, "ModelCheckpoint")
        self.best = optimizers._worst(self.mode)

    def on_epoch_end(self, epoch, logs):
        path = self.filepath.format(epoch=epoch + 1, **logs)
        if not self.save_best_only:
            self.model.save(path)
            return
        value = logs.get(self.monitor)
        if value is None:
            raise KeyError(f"ModelCheckpoint: '{self.monitor}' is not among the logged values {sorted(logs)}")
        if value < self.best if self.mode == "min" else value > self.best:
            self.best = value
            self.model.save(path)


def _check_batch_size(batch_size, op: str) -> None:
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral) or batch_size < 1:
        raise ValueError(f"{op}: batch_size must be a positive int, got {batch_size!r}")


def _accuracy(output: np.ndarray, target: np.ndarray) -> float:
    if output.ndim >= 2 and output.shape[1] > 1:
        predicted = output.argmax(axis=1)
    else:  # one logit or probability per sample
        threshold = 0.5 if output.min() >= 0 and output.max() <= 1 else 0.0
        predicted = (output.reshape(target.shape) > threshold).astype(target.dtype)
    return float(np.mean(predicted == target.reshape(predicted.shape)))


_METRICS = {"accuracy": _accuracy, "acc": _accuracy}


class _Progress:
    """One line per epoch: a bar that redraws in place on a terminal, plain lines otherwise."""

    def __init__(self, total: int, verbose: int, epoch: int, epochs: int):
        self.total, self.verbose, self.start = total, verbose, time.perf_counter()
        self.tty = sys.stdout.isatty()
        if verbose:
            print(f"Epoch {epoch + 1}/{epochs}")

    def update(self, step: int, logs: dict, final: bool = False) -> None:
        if not self.verbose or (not self.tty and not final):
            return
        width = 30
        done = int(width * step / max(self.total, 1))
        bar = "=" * done + (">" if done < width else "") + "." * (width - done - 1)
        values = " - ".join(f"{k}: {v:.4f}" for k, v in logs.items())
        elapsed = time.perf_counter() - self.start
        line = f"{step}/{self.total} [{bar}] - {elapsed:.2f}s - {values}"
        if self.tty:
            print("\r" + line, end="\n" if final else "", flush=True)
        else:
            print(line, flush=True)


class Model:
    """Keras-like training of a Module: compile, fit, evaluate, predict, summary, save and load."""

    def __init__(self, module: layers.Module):
        if not isinstance(module, layers.Module):
            raise TypeError(f"Model: expected a Module, got {type(module).__name__}")
        self.module = module
        self.loss_fn = None
        self.optimizer = None
        self.metrics = []
        self.stop_training = False

    def parameters(self):
        return self.module.parameters()

    def __call__(self, x):
        return self.module(x)

    def compile(self, loss, optimizer="adam", metrics=("accuracy",), **optimizer_kwargs) -> "Model":
        """loss: a loss module or a name ('cross_entropy', 'mse', ...); optimizer: an Optimizer or
        a name ('sgd', 'adam', 'adamw') with its keyword arguments; metrics: names ('accuracy')."""
        if isinstance(loss, str):
            if loss not in _LOSSES:
                raise ValueError(f"compile: unknown loss {loss!r}; choose from {sorted(_LOSSES)}")
            loss = _LOSSES[loss]()
        if not callable(loss):
            raise TypeError(f"compile: loss must be a loss module or a name, got {type(loss).__name__}")
        if isinstance(optimizer, str):
            if optimizer.lower() not in _OPTIMIZERS:
                raise ValueError(f"compile: unknown optimizer {optimizer!r}; choose from {sorted(_OPTIMIZERS)}")
            kwargs = dict(optimizer_kwargs)
            if optimizer.lower() == "sgd":
                kwargs.setdefault("lr", 0.01)
            optimizer = _OPTIMIZERS[optimizer.lower()](self.module.parameters(), **kwargs)
        if not isinstance(optimizer, optimizers.Optimizer):
            raise TypeError(f"compile: optimizer must be an Optimizer or a name, got {type(optimizer).__name__}")
        for m in metrics or ():
            if m not in _METRICS:
                raise ValueError(f"compile: unknown metric {m!r}; choose from {sorted(_METRICS)}")
        self.loss_fn, self.optimizer, self.metrics = loss, optimizer, list(metrics or ())
        return self

    def _require_compiled(self, what: str):
        if self.loss_fn is None:
            raise RuntimeError(f"{what}: call compile(loss=..., optimizer=...) first")

    @staticmethod
    def _arrays(x, y):
        x = x.data if isinstance(x, Tensor) else np.asarray(x)
        if x.dtype.kind == "f" and x.dtype != np.float32:
            x = x.astype(np.float32)
        if y is None:
            return x, None
        y = y.data if isinstance(y, Tensor) else np.asarray(y)
        if y.dtype.kind == "f" and y.dtype != np.float32:
            y = y.astype(np.float32)
        if len(x) != len(y):
            raise ValueError(f"fit: x has {len(x)} samples but y has {len(y)}")
        return x, y

    def _batch_loss(self, xb, yb):
        out = self.module(Tensor(xb))
        yb_ = yb  # a (N,) float target for a (N, 1) output is what a user of BCE or MSE means
        if out.ndim == 2 and out.shape[1] == 1 and yb.ndim == 1 and yb.dtype.kind == "f":
            yb_ = yb.reshape(-1, 1)
        return out, self.loss_fn(out, yb_)

    def _guarded_step(self, xb, yb):
        """One step under detect_anomaly; a non-finite value is traced to the layer that made it."""
        try:
            with detect_anomaly():
                out, loss = self._batch_loss(xb, yb)
                loss.backward()
            return out, loss
        except FloatingPointError as error:
            layer = self._first_non_finite_layer(xb)
            raise FloatingPointError(f"fit(nan_guard=True): {layer}: {error}" if layer else str(error)) from None

    def _first_non_finite_layer(self, xb):
        if not isinstance(self.module, layers.Sequential):
            return None
        h = Tensor(xb)
        with no_grad():
            for i, child in enumerate(self.module):
                h = child(h)
                if h.data.dtype.kind == "f" and not np.isfinite(h.data).all():
                    return f"layer {i} ({child!r}) produced non-finite outputs"
        return None

    def fit(self, x, y, epochs: int = 1, batch_size: int = 32, validation_data=None, validation_split: float = 0.0,
            shuffle: bool = True, callbacks=(), verbose: int = 1, nan_guard: bool = False) -> History:
        """Train for `epochs` over (x, y) in shuffled batches; with nan_guard, every op
        checks for NaN/Inf and the first layer that makes one is named."""
        self._require_compiled("fit")
        x, y = self._arrays(x, y)
        if not 0.0 <= validation_split < 1.0:
            raise ValueError(f"fit: validation_split must be in [0, 1), got {validation_split}")
        if validation_split and validation_data is None:
            cut = len(x) - int(math.floor(len(x) * validation_split))
            if cut == len(x):
                raise ValueError(f"fit: validation_split={validation_split} of {len(x)} samples leaves no "
                                 f"validation samples")
            x, validation_data = x[:cut], (x[cut:], y[cut:])
            y = y[:cut]
        if len(x) == 0:
            raise ValueError(f"fit: no training samples (x has shape {x.shape})")
        loader = DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=shuffle)
        history = History()
        callbacks = list(callbacks)
        for cb in callbacks:
            cb.model = self
        self.stop_training = False
        for epoch in range(epochs):
            self.module.train()
            progress = _Progress(len(loader), verbose, epoch, epochs)
            total_loss, seen = 0.0, 0
            metric_sums = {m: 0.0 for m in self.metrics}
            for step, (xb, yb) in enumerate(loader, 1):
                self.optimizer.zero_grad()
                if nan_guard:
                    out, loss = self._guarded_step(xb, yb)
                else:
                    out, loss = self._batch_loss(xb, yb)
                    loss.backward()
                self.optimizer.step()
                value = float(loss.data)
                if not math.isfinite(value):
                    raise FloatingPointError(f"fit: the loss became {value} at epoch {epoch + 1}, step {step}")
                total_loss += value * len(xb)
                seen += len(xb)
                for m in self.metrics:
                    metric_sums[m] += _METRICS[m](out.data, yb) * len(xb)
                logs = {"loss": total_loss / seen, **{m: s / seen for m, s in metric_sums.items()}}
                progress.update(step, logs)
            if validation_data is not None:
                val = self.evaluate(*validation_data, batch_size=batch_size)
                logs.update({f"val_{k}": v for k, v in val.items()})
            progress.update(len(loader), logs, final=True)
            history.record(epoch, logs)
            for cb in callbacks:
                cb.on_epoch_end(epoch, logs)
            if self.stop_training:
                break
        return history

    def evaluate(self, x, y, batch_size: int = 256) -> dict:
        """Mean loss and metrics over (x, y), in eval mode without a graph."""
        self._require_compiled("evaluate")
        x, y = self._arrays(x, y)
        _check_batch_size(batch_size, "evaluate")
        if len(x) == 0:  # a mean over no samples has no value (0 would pass for a perfect score)
            raise ValueError(f"evaluate: no samples (x has shape {x.shape})")
        self.module.eval()
        total, sums = 0.0, {m: 0.0 for m in self.metrics}
        with no_grad():
            for start in range(0, len(x), batch_size):
                xb, yb = x[start:start + batch_size], y[start:start + batch_size]
                out, loss = self._batch_loss(xb, yb)
                total += float(loss.data) * len(xb)
                for m in self.metrics:
                    sums[m] += _METRICS[m](out.data, yb) * len(xb)
        n = len(x)
        return {"loss": total / n, **{m: s / n for m, s in sums.items()}}

    def predict(self, x, batch_size: int = 256) -> np.ndarray:
        """The module's outputs as one NumPy array, in eval mode without a graph."""
        x, _ = self._arrays(x, None)
        _check_batch_size(batch_size, "predict")
        self.module.eval()
        outs = []
        with no_grad():  # (no samples: one empty batch, so the result has the outputs' shape)
            for start in range(0, max(len(x), 1), batch_size):
                outs.append(self.module(Tensor(x[start:start + batch_size])).data)
        return np.concatenate(outs)

    def summary(self, input_shape=None) -> str:
        """Layers, output shapes (when input_shape, without the batch, is given) and parameter counts."""
        rows = [("Layer", "Output shape", "Params")]
        x = Tensor(np.zeros((1,) + tuple(input_shape), np.float32)) if input_shape is not None else None
        children = list(self.module.children()) if isinstance(self.module, layers.Sequential) else [self.module]
        with no_grad():
            for i, child in enumerate(children):
                shape = "?"
                if x is not None:
                    x = child(x)
                    shape = str((None,) + x.shape[1:])
                count = sum(p.data.size for p in child.parameters())
                rows.append((f"{type(child).__name__}-{i}", shape, f"{count:,}"))
        total = sum(p.data.size for p in self.module.parameters())
        widths = [max(len(r[i]) for r in rows) for i in range(3)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)) for r in rows]
        lines.insert(1, "-" * len(lines[0]))
        lines.append(f"Total params: {total:,}")
        text = "\n".join(lines)
        print(text)
        return text

    # --- files: one .npz, the architecture as JSON and the weights, never pickle ---------------
    def save(self, path: str) -> None:
        architecture = json.dumps(_describe(self.module))
        arrays = {files._WEIGHT_PREFIX + k: v for k, v in self.module.state_dict().items()}
        with open(path, "wb") as f:
            np.savez(f, __architecture__=np.array(architecture), **arrays)

    @classmethod
    def load(cls, path: str) -> "Model":
        """The model ``save`` wrote. The architecture is built first; then each weight's header
        must match the built layer's shape before its data is read. A truncated, corrupted,
        wrong-architecture or hostile file raises ValueError (FileNotFoundError if missing)."""
        with files.NpzReader(path, "Model.load") as reader:
            if "__architecture__" not in reader.names():
                raise reader.error("it is not a shenjing model file (no architecture description)")
            try:
                architecture = json.loads(reader.text("__architecture__"))
                module = _build(architecture)
            except files.FileFormatError:
                raise
            except (ValueError, TypeError, KeyError, MemoryError, RecursionError) as e:
                raise reader.error(f"the architecture cannot be built ({type(e).__name__}: {e})") from None
            expected = module.state_dict()
            stored = {n[len(files._WEIGHT_PREFIX):] for n in reader.names() if n.startswith(files._WEIGHT_PREFIX)}
            missing, unexpected = sorted(set(expected) - stored), sorted(stored - set(expected))
            if missing or unexpected:
                raise reader.error(f"its weights do not fit the architecture: missing {missing}, "
                                   f"unexpected {unexpected}")
            state = {name: reader.array(files._WEIGHT_PREFIX + name, target.shape) for name, target in expected.items()}
        module.load_state_dict(state)
        return cls(module)


# --- architecture description ---------------------------------------------------------------

_LAYER_CONFIG = {
    "Linear": lambda m: dict(in_features=m.in_features, out_features=m.out_features, bias=m.bias is not None),
    "Conv2d": lambda m: dict(in_channels=m.in_channels, out_channels=m.out_channels, kernel_size=list(m.kernel_size),
                             stride=m.stride, padding=m.padding, dilation=m.dilation, groups=m.groups,
                             bias=m.bias is not None),
    "Conv1d": lambda m: dict(in_channels=m.in_channels, out_channels=m.out_channels, kernel_size=list(m.kernel_size),
                             stride=m.stride, padding=m.padding, dilation=m.dilation, groups=m.groups,
                             bias=m.bias is not None),
    "MaxPool2d": lambda m: dict(kernel_size=m.kernel_size, stride=m.stride, padding=m.padding, dilation=m.dilation,
                                ceil_mode=m.ceil_mode),
    "AvgPool2d": lambda m: dict(kernel_size=m.kernel_size, stride=m.stride, padding=m.padding, ceil_mode=m.ceil_mode,
                                count_include_pad=m.count_include_pad, divisor_override=m.divisor_override),
    "AdaptiveAvgPool2d": lambda m: dict(output_size=m.output_size),
    "Flatten": lambda m: dict(start_dim=m.start_dim),
    "Dropout": lambda m: dict(p=m.p),
    "BatchNorm1d": lambda m: dict(num_features=m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine),
    "BatchNorm2d": lambda m: dict(num_features=m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine),
    "Identity": lambda m: {},
    "ReLU": lambda m: {}, "Sigmoid": lambda m: {}, "Tanh": lambda m: {},
    "LeakyReLU": lambda m: dict(negative_slope=m.negative_slope),
    "GELU": lambda m: dict(approximate=m.approximate),
    "Softmax": lambda m: dict(dim=m.dim), "LogSoftmax": lambda m: dict(dim=m.dim),
}


def _jsonable(v):
    return list(v) if isinstance(v, tuple) else v


def _describe(module) -> dict:
    name = type(module).__name__
    if isinstance(module, layers.Sequential):
        return {"class": "Sequential", "children": [_describe(m) for m in module]}
    if name not in _LAYER_CONFIG or type(module).__module__ not in (layers.__name__, activations.__name__):
        raise TypeError(f"Model.save: {name} is not a built-in layer, so its architecture cannot be described; "
                        f"save its weights with module.state_dict() instead")
    return {"class": name, "config": {k: _jsonable(v) for k, v in _LAYER_CONFIG[name](module).items()}}


def _build(description) -> layers.Module:
    if not isinstance(description, dict) or "class" not in description:
        raise ValueError("Model.load: the architecture description is malformed")
    name = description["class"]
    if not isinstance(name, str):
        raise ValueError("Model.load: a layer's class name is not a string")
    if name == "Sequential":
        children = description.get("children", [])
        if not isinstance(children, list):
            raise ValueError("Model.load: the children of a Sequential are not a list")
        return layers.Sequential(*[_build(d) for d in children])
    cls = getattr(layers, name, None) or getattr(activations, name, None)
    if name not in _LAYER_CONFIG or cls is None:
        raise ValueError(f"Model.load: unknown layer {name!r} in the file")
    config = description.get("config", {})
    if not isinstance(config, dict):
        raise ValueError(f"Model.load: the configuration of {name} is malformed")
    config = {k: (tuple(v) if isinstance(v, list) else v) for k, v in config.items()}
    return cls(**config)

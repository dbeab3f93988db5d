"""Mutation fuzzing of the whole public surface: every ``shenjing.ops`` function
and every layer, loss, optimizer and scheduler constructor is called with a
valid set of arguments in which one argument is replaced by something hostile
(wrong dtypes, shapes and ranks, NaN and Inf, huge declared sizes, negative
strides, read-only or Fortran arrays, ``out=`` aliasing an input, absurd
hyper-parameters). Each call must give a result or raise TypeError,
ValueError or MemoryError whose message names the op or class; anything else
(a crash, a hang, an IndexError from deep inside) fails.

The suite runs a small budget; ``SHENJING_FUZZ_EXAMPLES=20000 python -m pytest
tests/test_fuzz.py tests/test_properties.py`` is the long run (README, "For developers").
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import shenjing
from shenjing import nn, ops, optim

from helpers import FUZZ_SETTINGS as SETTINGS
from helpers import at_odd_byte

ACCEPTED = (TypeError, ValueError, MemoryError)


def f32(*shape, seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def probs(*shape):
    return np.random.default_rng(1).uniform(0.05, 0.95, shape).astype(np.float32)


def labels(n, c):
    return (np.arange(n) % c).astype(np.int64)


# One valid call per op: (positional args, keyword args). Small shapes keep the fuzzer quick.
def _valid_calls():
    x, g = f32(3, 5), f32(3, 5, seed=1)
    x4, w4 = f32(2, 3, 6, 6), f32(4, 3, 3, 3)
    y4 = ops.conv2d(x4, w4, padding=1)
    x3, w3 = f32(2, 3, 9), f32(4, 3, 3)
    y3 = ops.conv1d(x3, w3)
    p, pi = ops.max_pool2d(x4, 2, return_indices=True)
    scalar = np.float32(1.0)
    calls = {
        "relu": ([x], {}), "relu_backward": ([g, x], {}),
        "leaky_relu": ([x, 0.1], {}), "leaky_relu_backward": ([g, x, 0.1], {}),
        "sigmoid": ([x], {}), "sigmoid_backward": ([g, ops.sigmoid(x)], {}),
        "tanh": ([x], {}), "tanh_backward": ([g, ops.tanh(x)], {}),
        "gelu": ([x, "tanh"], {}), "gelu_backward": ([g, x, "none"], {}),
        "softmax": ([x, 1], {}), "softmax_backward": ([g, ops.softmax(x), 1], {}),
        "log_softmax": ([x, 0], {}), "log_softmax_backward": ([g, ops.log_softmax(x), -1], {}),
        "mse_loss": ([x, g, "none"], {}), "mse_loss_backward": ([scalar, x, g, "mean"], {}),
        "l1_loss": ([x, g, "sum"], {}), "l1_loss_backward": ([g, x, g, "none"], {}),
        "smooth_l1_loss": ([x, g, "mean", 0.5], {}), "smooth_l1_loss_backward": ([scalar, x, g, "sum", 0.5], {}),
        "binary_cross_entropy": ([probs(3, 5), probs(3, 5)], {}),
        "binary_cross_entropy_backward": ([scalar, probs(3, 5), probs(3, 5)], {}),
        "binary_cross_entropy_with_logits": ([x, probs(3, 5), "none"], {}),
        "binary_cross_entropy_with_logits_backward": ([g, x, probs(3, 5), "none"], {}),
        "kl_div": ([ops.log_softmax(x), ops.softmax(g), "batchmean"], {}),
        "kl_div_backward": ([scalar, ops.log_softmax(x), ops.softmax(g), "batchmean"], {}),
        "cross_entropy": ([x, labels(3, 5), "mean", -100, 0.1], {}),
        "cross_entropy_backward": ([scalar, x, labels(3, 5)], {}),
        "cross_entropy_forward_backward": ([x, labels(3, 5)], {}),
        "nll_loss": ([ops.log_softmax(x), labels(3, 5), "none"], {}),
        "nll_loss_backward": ([g[:, 0].copy(), ops.log_softmax(x), labels(3, 5), "none"], {}),
        "sgd_step": ([[x.copy()], [g], [np.zeros_like(x)]], dict(lr=0.1, momentum=0.9, first_step=True)),
        "adam_step": ([[x.copy()], [g], [np.zeros_like(x)], [np.zeros_like(x)]], dict(step=1, lr=1e-3)),
        "sum": ([x, 1], {}), "mean": ([x, None, True], {}), "sum_of_squares": ([x], {}), "copy": ([x], {}),
        "gemm": ([x, g], dict(trans_b=True, alpha=2.0, beta=1.0, c=f32(3, 3), bias=f32(3), activation="relu")),
        "matmul": ([f32(2, 3, 5), f32(5, 4)], {}),
        "linear": ([x, f32(4, 5), f32(4)], {}),
        "linear_backward": ([f32(3, 4), x, f32(4, 5)], dict(input_grad=True, weight_grad=False, bias_grad=True)),
        "conv2d": ([x4, w4, f32(4), 1, 1, 1, 1], {}),
        "conv2d_backward": ([y4, x4, w4, 1, 1], {}),
        "conv1d": ([x3, w3, None, 1, 0], {}),
        "conv1d_backward": ([y3, x3, w3], {}),
        "max_pool2d": ([x4, 2, None, 1, 1, True, True], {}),
        "max_pool2d_backward": ([p, x4, pi, 2], {}),
        "avg_pool2d": ([x4, 3, 2, 1, True, False, None], {}),
        "avg_pool2d_backward": ([ops.avg_pool2d(x4, 2), x4, 2], {}),
        "adaptive_avg_pool2d": ([x4, (4, 3)], {}),
        "adaptive_avg_pool2d_backward": ([f32(2, 3, 4, 3), x4], {}),
    }
    assert sorted(calls) == sorted(ops.__all__), "every public op has a valid call here"
    return calls


VALID = _valid_calls()


def _copy_args(args, kwargs):
    """Fresh copies, so that in-place ops (the optimizer steps) cannot leak state between examples."""
    def cp(v):
        if isinstance(v, np.ndarray):
            return v.copy()
        if isinstance(v, list):
            return [cp(i) for i in v]
        return v
    return [cp(a) for a in args], {k: cp(v) for k, v in kwargs.items()}


def test_every_valid_call_works():
    for name, (args, kwargs) in VALID.items():
        args, kwargs = _copy_args(args, kwargs)
        getattr(ops, name)(*args, **kwargs)


# --- hostile values -----------------------------------------------------------------------

HUGE = 2 ** 62
scalars = st.sampled_from([None, True, False, 0, -1, 1, 3, HUGE, -HUGE, 2 ** 70, 1.5, -0.5, float("nan"),
                           float("inf"), -float("inf"), 1e300, "same", "mean", "tanh", "", (), (1,), (2, 2),
                           (1, 2, 3), (HUGE, 1), [0, -1], 1 + 2j, object(), b"x", np.int64(2), np.float32(0.5)])
small_shapes = hnp.array_shapes(min_dims=0, max_dims=5, min_side=0, max_side=6)
values = st.floats(width=32, allow_nan=True, allow_infinity=True)


def _views(a):
    return st.sampled_from(["plain", "fortran", "reversed", "readonly", "strided", "unaligned"]).map(
        lambda kind: _view(a, kind))


def _view(a, kind):
    if kind == "fortran":
        return np.asfortranarray(a)
    if kind == "reversed" and a.ndim:
        return a[::-1]
    if kind == "readonly":
        a = a.copy()
        a.flags.writeable = False
        return a
    if kind == "strided" and a.ndim:
        return np.repeat(a, 2, axis=0)[::2]
    if kind == "unaligned":
        return at_odd_byte(a)
    return a


arrays = st.one_of(
    hnp.arrays(st.sampled_from([np.float32, np.float64]), small_shapes, elements=values).flatmap(_views),
    hnp.arrays(st.sampled_from([np.int8, np.int64, np.uint8, np.bool_, np.float16, np.complex64]), small_shapes),
    st.builds(lambda s: np.full(s, None, dtype=object), small_shapes),
    st.builds(lambda s: np.full(s, "a"), small_shapes),
    # huge declared sizes that take no memory until someone copies them
    st.sampled_from([(2 ** 40,), (2 ** 20, 2 ** 20), (2 ** 16, 2 ** 16, 64), (1, 2 ** 33)]).map(
        lambda s: np.broadcast_to(np.float32(1.0), s)),
)
hostile = st.one_of(scalars, arrays, st.lists(arrays, max_size=3))


def _check_outcome(name, call):
    _check_class_outcome([name.replace("_forward_backward", "").replace("_backward", "")], call)


@SETTINGS
@given(name=st.sampled_from(sorted(VALID)), data=st.data())
def test_any_op_with_one_hostile_argument(name, data):
    args, kwargs = _copy_args(*VALID[name])
    slots = [("pos", i) for i in range(len(args))] + [("kw", k) for k in kwargs]
    if "out" in _parameters(name):
        slots.append(("kw", "out"))
    where, key = data.draw(st.sampled_from(slots))
    value = data.draw(hostile)
    if where == "pos":
        args[key] = value
    else:
        kwargs[key] = value
    _check_outcome(name, lambda: getattr(ops, name)(*args, **kwargs))


def _parameters(name):
    import inspect
    return inspect.signature(getattr(ops, name)).parameters


# --- out= that aliases an input ------------------------------------------------------------

OPS_WITH_OUT = sorted(n for n in VALID if "out" in _parameters(n))


@pytest.mark.parametrize("name", OPS_WITH_OUT)
def test_out_aliasing_an_input_is_exact_or_refused(name):
    """out= the very array of an input, or a shifted view of the same memory: either the
    result equals the one computed into a fresh array, or a ValueError names the op."""
    args, kwargs = _copy_args(*VALID[name])
    expected = getattr(ops, name)(*args, **kwargs)
    if not isinstance(expected, np.ndarray) or expected.ndim == 0:
        return
    inputs = [i for i, a in enumerate(args) if isinstance(a, np.ndarray) and a.dtype == expected.dtype]
    for i in inputs:
        for shifted in (False, True):
            trial_args, trial_kwargs = _copy_args(args, kwargs)
            if shifted:
                # the input sits one element further on in the same buffer as out
                buf = np.zeros(expected.size + trial_args[i].size + 1, expected.dtype)
                out = buf[:expected.size].reshape(expected.shape)
                view = buf[1:1 + trial_args[i].size].reshape(trial_args[i].shape)
                view[...] = trial_args[i]
                trial_args[i] = view
            else:
                if trial_args[i].shape != expected.shape:
                    continue
                out = trial_args[i]
            try:
                got = getattr(ops, name)(*trial_args, **trial_kwargs, out=out)
            except ValueError as e:
                assert name in str(e) and "overlap" in str(e), e
                continue
            assert got is out
            np.testing.assert_array_equal(got, expected, err_msg=f"{name}: out aliasing argument {i}")


# --- constructors ------------------------------------------------------------------------------

CONSTRUCTORS = {
    # class: (valid kwargs, a valid input for forward or None)
    nn.Linear: (dict(in_features=5, out_features=3, bias=True), lambda: f32(2, 5)),
    nn.Conv1d: (dict(in_channels=3, out_channels=4, kernel_size=3, stride=1, padding=1, dilation=1, groups=1,
                     bias=True), lambda: f32(2, 3, 9)),
    nn.Conv2d: (dict(in_channels=3, out_channels=3, kernel_size=(3, 2), stride=1, padding="same", dilation=1,
                     groups=3, bias=False), lambda: f32(2, 3, 6, 6)),
    nn.MaxPool2d: (dict(kernel_size=2, stride=None, padding=1, dilation=1, ceil_mode=False), lambda: f32(2, 3, 6, 6)),
    nn.AvgPool2d: (dict(kernel_size=3, stride=2, padding=1, ceil_mode=True, count_include_pad=False,
                        divisor_override=None), lambda: f32(2, 3, 6, 6)),
    nn.AdaptiveAvgPool2d: (dict(output_size=(2, 3)), lambda: f32(2, 3, 6, 6)),
    nn.Flatten: (dict(start_dim=1), lambda: f32(2, 3, 4)),
    nn.Dropout: (dict(p=0.3), lambda: f32(2, 3)),
    nn.BatchNorm1d: (dict(num_features=3, eps=1e-5, momentum=0.1, affine=True), lambda: f32(4, 3)),
    nn.BatchNorm2d: (dict(num_features=3, eps=1e-5, momentum=0.1, affine=False), lambda: f32(2, 3, 4, 4)),
    nn.LeakyReLU: (dict(negative_slope=0.1), lambda: f32(2, 3)),
    nn.GELU: (dict(approximate="tanh"), lambda: f32(2, 3)),
    nn.Softmax: (dict(dim=1), lambda: f32(2, 3)),
    nn.LogSoftmax: (dict(dim=-1), lambda: f32(2, 3)),
    nn.MSELoss: (dict(reduction="mean"), None),
    nn.L1Loss: (dict(reduction="sum"), None),
    nn.SmoothL1Loss: (dict(reduction="mean", beta=0.5), None),
    nn.BCELoss: (dict(reduction="mean"), None),
    nn.BCEWithLogitsLoss: (dict(reduction="none"), None),
    nn.CrossEntropyLoss: (dict(reduction="mean", ignore_index=-100, label_smoothing=0.1), None),
    nn.NLLLoss: (dict(reduction="sum", ignore_index=1), None),
    nn.KLDivLoss: (dict(reduction="batchmean", log_target=False), None),
}
LOSS_INPUTS = {
    nn.CrossEntropyLoss: lambda: (f32(4, 3), labels(4, 3)),
    nn.NLLLoss: lambda: (ops.log_softmax(f32(4, 3)), labels(4, 3)),
    nn.BCELoss: lambda: (probs(4, 3), probs(4, 3)),
    nn.KLDivLoss: lambda: (ops.log_softmax(f32(4, 3)), ops.softmax(f32(4, 3, seed=2))),
}
ctor_values = st.one_of(scalars, st.sampled_from([0, 2, 10 ** 6, 10 ** 12, -3, 0.0, 1.0, 2.0, (0, 1), (3, 3, 3)]))


def _run_layer(cls, kwargs, make_input):
    module = cls(**kwargs)
    if make_input is not None:
        module(shenjing.tensor(make_input()))
    else:
        a, b = LOSS_INPUTS.get(cls, lambda: (f32(4, 3), f32(4, 3, seed=3)))()
        module(shenjing.tensor(a), b if b.dtype == np.int64 else shenjing.tensor(b))


def _check_class_outcome(names, call):
    """call() answers, or raises MemoryError, or TypeError/ValueError naming one of ``names``;
    any other exception propagates and fails the test."""
    try:
        with np.errstate(all="ignore"):
            call()
    except MemoryError:
        pass
    except (TypeError, ValueError) as e:
        assert any(n in str(e) for n in names), f"the message does not name {names}: {e!r}"


@pytest.mark.parametrize("cls", list(CONSTRUCTORS), ids=lambda c: c.__name__)
def test_valid_constructors_work(cls):
    kwargs, make_input = CONSTRUCTORS[cls]
    _run_layer(cls, kwargs, make_input)


def _op_names(cls):
    """The class and the functional ops its forward calls: an error may name either."""
    name = cls.__name__
    extra = {"Linear": ["linear", "gemm"], "Conv1d": ["conv1d"], "Conv2d": ["conv2d"], "MaxPool2d": ["max_pool2d"],
             "AvgPool2d": ["avg_pool2d"], "AdaptiveAvgPool2d": ["adaptive_avg_pool2d"], "Flatten": ["flatten"],
             "Softmax": ["softmax"], "LogSoftmax": ["log_softmax"], "GELU": ["gelu"], "LeakyReLU": ["leaky_relu"],
             "Dropout": ["dropout"], "BatchNorm1d": ["batch_norm"], "BatchNorm2d": ["batch_norm"]}
    return [name] + extra.get(name, [])


@SETTINGS
@given(cls=st.sampled_from(list(CONSTRUCTORS)), data=st.data())
def test_any_layer_or_loss_with_one_hostile_hyperparameter(cls, data):
    kwargs, make_input = CONSTRUCTORS[cls]
    kwargs = dict(kwargs)
    kwargs[data.draw(st.sampled_from(sorted(kwargs)))] = data.draw(ctor_values)
    _check_class_outcome(_op_names(cls), lambda: _run_layer(cls, kwargs, make_input))


OPTIMIZERS = {
    optim.SGD: dict(lr=0.1, momentum=0.9, dampening=0.0, weight_decay=1e-4, nesterov=True, maximize=False),
    optim.Adam: dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, amsgrad=True, maximize=False),
    optim.AdamW: dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=1e-2, amsgrad=False, maximize=True),
}
optimizer_values = st.one_of(scalars, st.sampled_from([(0.5, 1.0), (0.9,), (-0.1, 0.9), (0.9, float("nan")), 0.0]))


def _optimizer_step(cls, kwargs, params=None):
    layer = nn.Linear(3, 2)
    opt = cls(layer.parameters() if params is None else params, **kwargs)
    layer(shenjing.tensor(f32(4, 3))).sum().backward()
    opt.step()
    return layer


@SETTINGS
@given(cls=st.sampled_from(list(OPTIMIZERS)), data=st.data())
def test_any_optimizer_with_one_hostile_hyperparameter(cls, data):
    kwargs = dict(OPTIMIZERS[cls])
    if data.draw(st.booleans()):
        kwargs[data.draw(st.sampled_from(sorted(kwargs)))] = data.draw(optimizer_values)
        _check_class_outcome([cls.__name__], lambda: _optimizer_step(cls, kwargs))
    else:
        params = data.draw(st.one_of(scalars, st.lists(scalars, max_size=3), arrays))
        _check_class_outcome([cls.__name__], lambda: _optimizer_step(cls, kwargs, params))


def _scheduler(kind, value):
    opt = optim.SGD(nn.Linear(2, 2).parameters(), lr=0.1)
    sched = {"StepLR": lambda: optim.lr_scheduler.StepLR(opt, step_size=value),
             "StepLR.gamma": lambda: optim.lr_scheduler.StepLR(opt, step_size=2, gamma=value),
             "CosineAnnealingLR": lambda: optim.lr_scheduler.CosineAnnealingLR(opt, T_max=value),
             "CosineAnnealingLR.eta_min": lambda: optim.lr_scheduler.CosineAnnealingLR(opt, 5, eta_min=value),
             "ReduceLROnPlateau": lambda: optim.lr_scheduler.ReduceLROnPlateau(opt, factor=value),
             "ReduceLROnPlateau.patience": lambda: optim.lr_scheduler.ReduceLROnPlateau(opt, patience=value),
             "ReduceLROnPlateau.mode": lambda: optim.lr_scheduler.ReduceLROnPlateau(opt, mode=value)}[kind]()
    for _ in range(3):
        sched.step(1.0) if kind.startswith("ReduceLROnPlateau") else sched.step()
    assert all(g["lr"] >= 0 for g in opt.param_groups), opt.param_groups  # NaN fails this too


@SETTINGS
@given(kind=st.sampled_from(["StepLR", "StepLR.gamma", "CosineAnnealingLR", "CosineAnnealingLR.eta_min",
                             "ReduceLROnPlateau", "ReduceLROnPlateau.patience", "ReduceLROnPlateau.mode"]),
       value=ctor_values)
def test_any_scheduler_with_one_hostile_hyperparameter(kind, value):
    _check_class_outcome([kind.split(".")[0]], lambda: _scheduler(kind, value))

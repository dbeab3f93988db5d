"""Optimizer steps: the update of torch.optim's SGD / Adam / AdamW, checked
against the float64 reference over several steps and against PyTorch."""

from __future__ import annotations

import numpy as np
import pytest

import shenjing._reference as R
from shenjing import ops

from helpers import raises

try:
    import torch
except ImportError:  # PyTorch is an optional test dependency
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")

# a list with odd sizes, an empty tensor and one large tensor (split over threads)
SHAPES = [(7,), (33, 5), (0,), (1,), (3, 4, 5), (70001,)]

SGD_CONFIGS = [
    dict(lr=0.1),
    dict(lr=0.05, momentum=0.9),
    dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01),
    dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1),
    dict(lr=0.01, momentum=0.5, maximize=True),
]
ADAM_CONFIGS = [
    dict(lr=1e-2),
    dict(lr=1e-2, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1),
    dict(lr=1e-2, amsgrad=True),
    dict(lr=1e-2, weight_decay=0.05, decoupled_weight_decay=True),
    dict(lr=1e-3, maximize=True, amsgrad=True, weight_decay=0.01),
]


def _state(rng, dtype, shapes=SHAPES):
    params = [rng.standard_normal(s).astype(dtype) for s in shapes]
    grads = [[rng.standard_normal(s).astype(dtype) for s in shapes] for _ in range(4)]
    return params, grads


def _run_sgd(module, params, grads_per_step, config):
    bufs = [np.zeros_like(p) for p in params]
    for i, grads in enumerate(grads_per_step):
        module.sgd_step(params, grads, bufs, first_step=(i == 0), **config)
    return params


def _run_adam(module, params, grads_per_step, config):
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    vmax = [np.zeros_like(p) for p in params]
    for i, grads in enumerate(grads_per_step):
        module.adam_step(params, grads, m, v, vmax, step=i + 1, **config)
    return params


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("config", SGD_CONFIGS, ids=str)
def test_sgd_matches_reference(backend, rng, config, dtype):
    params, grads = _state(rng, dtype)
    expected = _run_sgd(R, [p.astype(np.float64) for p in params], [[g.astype(np.float64) for g in gs] for gs in grads], config)
    got = _run_sgd(ops, params, grads, config)
    tol = dict(rtol=1e-6, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-13, atol=1e-13)
    for p, e in zip(got, expected):
        assert p.dtype == dtype
        np.testing.assert_allclose(p, e, **tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("config", ADAM_CONFIGS, ids=str)
def test_adam_matches_reference(backend, rng, config, dtype):
    params, grads = _state(rng, dtype)
    # Gradients at least 0.5 in size: with coupled weight decay, g + wd p can cancel to
    # ~1e-7, where Adam's m / (sqrt(v) + eps) turns float32's rounding of that sum into
    # a 1e-5 change of the parameter (as in torch.optim); the float64 reference is then
    # no yardstick for the kernel.
    grads = [[(np.sign(g) * (0.5 + np.abs(g))).astype(dtype) for g in gs] for gs in grads]
    expected = _run_adam(R, [p.astype(np.float64) for p in params], [[g.astype(np.float64) for g in gs] for gs in grads], config)
    got = _run_adam(ops, params, grads, config)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)
    for p, e in zip(got, expected):
        np.testing.assert_allclose(p, e, **tol)


@pytest.mark.parametrize("kind", ["sgd", "adam"])
def test_step_is_bit_identical_with_1_and_2_threads(isa, rng, kind):
    import shenjing

    params, grads = _state(rng, np.float32)
    results = []
    old = shenjing.get_num_threads()
    try:
        for threads in (1, 2):
            shenjing.set_num_threads(threads)
            p = [x.copy() for x in params]
            if kind == "sgd":
                _run_sgd(ops, p, grads, SGD_CONFIGS[2])
            else:
                _run_adam(ops, p, grads, ADAM_CONFIGS[1])
            results.append(p)
    finally:
        shenjing.set_num_threads(old)
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b, err_msg=f"{kind} on {isa}")


def test_sgd_without_momentum_needs_no_buffers(rng):
    p = [rng.standard_normal(10).astype(np.float32)]
    g = [np.ones(10, dtype=np.float32)]
    before = p[0].copy()
    ops.sgd_step(p, g, lr=0.5)
    np.testing.assert_allclose(p[0], before - 0.5, rtol=1e-6)


def test_steps_per_parameter(rng):
    params, grads = _state(rng, np.float64, [(5,), (6,)])
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    a = [p.copy() for p in params]
    ops.adam_step(a, grads[0], m, v, step=[1, 3])
    for i, t in enumerate([1, 3]):
        b = [params[i].copy()]
        R.adam_step(b, [grads[0][i]], [np.zeros_like(b[0])], [np.zeros_like(b[0])], step=t)
        np.testing.assert_allclose(a[i], b[0], rtol=1e-13)


def test_optimizer_hyperparameters_are_validated():
    p = [np.zeros(3, dtype=np.float32)]
    g = [np.zeros(3, dtype=np.float32)]
    with raises(ValueError, "sgd_step", "learning rate", "-1.0"):
        ops.sgd_step(p, g, lr=-1.0)
    with raises(ValueError, "sgd_step", "Nesterov"):
        ops.sgd_step(p, g, [np.zeros(3, dtype=np.float32)], lr=0.1, nesterov=True)
    with raises(ValueError, "sgd_step", "momentum_buffers"):
        ops.sgd_step(p, g, lr=0.1, momentum=0.9)
    with raises(ValueError, "adam_step", "beta parameter at index 1"):
        ops.adam_step(p, g, [np.zeros(3, np.float32)], [np.zeros(3, np.float32)], step=1, betas=(0.9, 1.0))
    with raises(ValueError, "adam_step", "epsilon"):
        ops.adam_step(p, g, [np.zeros(3, np.float32)], [np.zeros(3, np.float32)], step=1, eps=-1e-8)
    with raises(ValueError, "adam_step", "step"):
        ops.adam_step(p, g, [np.zeros(3, np.float32)], [np.zeros(3, np.float32)], step=0)
    with raises(ValueError, "adam_step", "exp_avgs", "1 arrays", "params has 2"):
        ops.adam_step(p * 2, g * 2, [np.zeros(3, np.float32)], [np.zeros(3, np.float32)] * 2, step=1)
    with raises(ValueError, "adam_step", "grads[0]", "shape (4,)", "(3,)"):
        ops.adam_step(p, [np.zeros(4, np.float32)], [np.zeros(3, np.float32)], [np.zeros(3, np.float32)], step=1)
    with raises(TypeError, "adam_step", "exp_avg_sqs[0]", "float64", "float32"):
        ops.adam_step(p, g, [np.zeros(3, np.float32)], [np.zeros(3, np.float64)], step=1)
    with raises(ValueError, "sgd_step", "params[0]", "C-contiguous"):
        ops.sgd_step([np.zeros((3, 4), np.float32).T], [np.zeros((4, 3), np.float32)], lr=0.1)
    readonly = np.zeros(3, np.float32)
    readonly.flags.writeable = False
    with raises(ValueError, "sgd_step", "params[0]", "writable"):
        ops.sgd_step([readonly], g, lr=0.1)


def test_empty_parameter_list_is_a_no_op():
    ops.sgd_step([], [], lr=0.1)
    ops.adam_step([], [], [], [], step=1)


# --- against PyTorch --------------------------------------------------------------------

def _torch_steps(opt, tparams, grads_per_step):
    """Runs torch's optimizer over the steps; returns, per tensor, the largest |p| and
    step size seen along the way (what _assert_same_steps scales its tolerance by)."""
    largest = [np.abs(tp.detach().numpy()) for tp in tparams]
    for grads in grads_per_step:
        for tp, g in zip(tparams, grads):
            tp.grad = torch.tensor(g)
        before = [tp.detach().numpy().copy() for tp in tparams]
        opt.step()
        largest = [np.maximum.reduce([l, np.abs(tp.detach().numpy()), np.abs(tp.detach().numpy() - b)])
                   for l, tp, b in zip(largest, tparams, before)]
    return largest


def _assert_same_steps(got, want, largest):
    """The same float32 updates as torch.optim, to rounding: each of the 4 steps may round
    the update and p - update one ulp of their own size apart (an FMA or not), so a
    parameter that cancels towards 0 keeps an absolute error of a few ulps of the largest
    |p| or step on its way (1 ulp at 1 is 1.2e-7: an atol of 1e-7 failed on 1 element in
    70,001 under a reseed). Measured over 60 reseeds: at most 5 such ulps."""
    scale = np.spacing(largest.astype(np.float32)).astype(np.float64)
    np.testing.assert_array_less(np.abs(got.astype(np.float64) - want), 1e-6 * np.abs(want) + 8 * scale + 1e-30)


@needs_torch
@pytest.mark.parametrize("config", SGD_CONFIGS, ids=str)
def test_sgd_matches_torch_optim(rng, config):
    params, grads = _state(rng, np.float32)
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    largest = _torch_steps(torch.optim.SGD(tparams, **config), tparams, grads)
    got = _run_sgd(ops, params, grads, config)
    for p, tp, l in zip(got, tparams, largest):
        _assert_same_steps(p, tp.detach().numpy(), l)


@needs_torch
@pytest.mark.parametrize("config", ADAM_CONFIGS, ids=str)
def test_adam_matches_torch_optim(rng, config):
    params, grads = _state(rng, np.float32)
    tparams = [torch.tensor(p.copy(), requires_grad=True) for p in params]
    config = dict(config)
    decoupled = config.pop("decoupled_weight_decay", False)
    cls = torch.optim.AdamW if decoupled else torch.optim.Adam
    if decoupled:
        config.setdefault("weight_decay", 0.0)
    largest = _torch_steps(cls(tparams, foreach=False, **config), tparams, grads)
    got = _run_adam(ops, params, grads, dict(config, decoupled_weight_decay=decoupled))
    for p, tp, l in zip(got, tparams, largest):
        _assert_same_steps(p, tp.detach().numpy(), l)

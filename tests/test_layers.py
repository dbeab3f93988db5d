"""Layers, losses and optimizers against PyTorch with the same weights and
inputs: values and every gradient to float32 rounding."""

from __future__ import annotations

import numpy as np
import pytest

from shenjing import nn, optim, tensor

from helpers import at_odd_byte, raises

try:
    import torch
except ImportError:  # PyTorch is an optional test dependency
    torch = None

needs_torch = pytest.mark.skipif(torch is None, reason="PyTorch is not installed")


def _pair(ours_factory, theirs_factory):
    """The same layer in both libraries, with our (random) weights copied into PyTorch's."""
    ours, theirs = ours_factory(), theirs_factory()
    with torch.no_grad():
        for (name, p), (tname, tp) in zip(ours.named_parameters(), theirs.named_parameters()):
            assert tuple(p.shape) == tuple(tp.shape), (name, tname)
            tp.copy_(torch.from_numpy(p.data.copy()))
    return ours, theirs


LAYERS = [
    ("Linear", lambda: nn.Linear(7, 5), lambda: torch.nn.Linear(7, 5), (4, 7)),
    ("Linear3d", lambda: nn.Linear(7, 5, bias=False), lambda: torch.nn.Linear(7, 5, bias=False), (2, 3, 7)),
    ("Conv2d", lambda: nn.Conv2d(3, 4, 3, stride=2, padding=1), lambda: torch.nn.Conv2d(3, 4, 3, stride=2, padding=1),
     (2, 3, 9, 8)),
    ("Conv2d_groups", lambda: nn.Conv2d(4, 6, (3, 1), groups=2), lambda: torch.nn.Conv2d(4, 6, (3, 1), groups=2),
     (2, 4, 6, 5)),
    ("Conv1d", lambda: nn.Conv1d(3, 4, 5, padding=2), lambda: torch.nn.Conv1d(3, 4, 5, padding=2), (2, 3, 17)),
    ("MaxPool2d", lambda: nn.MaxPool2d(2), lambda: torch.nn.MaxPool2d(2), (2, 3, 8, 8)),
    ("AvgPool2d", lambda: nn.AvgPool2d(3, stride=2, padding=1), lambda: torch.nn.AvgPool2d(3, stride=2, padding=1),
     (2, 3, 7, 7)),
    ("AdaptiveAvgPool2d", lambda: nn.AdaptiveAvgPool2d((2, 3)), lambda: torch.nn.AdaptiveAvgPool2d((2, 3)), (2, 3, 7, 8)),
    ("Flatten", lambda: nn.Flatten(), lambda: torch.nn.Flatten(), (2, 3, 4)),
    ("ReLU", lambda: nn.ReLU(), lambda: torch.nn.ReLU(), (3, 5)),
    ("LeakyReLU", lambda: nn.LeakyReLU(0.2), lambda: torch.nn.LeakyReLU(0.2), (3, 5)),
    ("Sigmoid", lambda: nn.Sigmoid(), lambda: torch.nn.Sigmoid(), (3, 5)),
    ("Tanh", lambda: nn.Tanh(), lambda: torch.nn.Tanh(), (3, 5)),
    ("GELU", lambda: nn.GELU(), lambda: torch.nn.GELU(), (3, 5)),
    ("GELU_tanh", lambda: nn.GELU("tanh"), lambda: torch.nn.GELU("tanh"), (3, 5)),
    ("Softmax", lambda: nn.Softmax(dim=1), lambda: torch.nn.Softmax(dim=1), (3, 5)),
    ("LogSoftmax", lambda: nn.LogSoftmax(dim=1), lambda: torch.nn.LogSoftmax(dim=1), (3, 5)),
    ("BatchNorm1d", lambda: nn.BatchNorm1d(5), lambda: torch.nn.BatchNorm1d(5), (8, 5)),
    ("BatchNorm2d", lambda: nn.BatchNorm2d(3), lambda: torch.nn.BatchNorm2d(3), (4, 3, 5, 5)),
]


@needs_torch
@pytest.mark.parametrize("name,ours_f,theirs_f,shape", LAYERS, ids=[l[0] for l in LAYERS])
def test_layer_matches_pytorch(rng, name, ours_f, theirs_f, shape):
    ours, theirs = _pair(ours_f, theirs_f)
    x = rng.standard_normal(shape).astype(np.float32)
    xo = tensor(x.copy(), requires_grad=True)
    xt = torch.tensor(x, requires_grad=True)
    yo, yt = ours(xo), theirs(xt)
    np.testing.assert_allclose(yo.data, yt.detach().numpy(), rtol=1e-4, atol=1e-5)
    g = rng.standard_normal(yo.shape).astype(np.float32)
    yo.backward(g)
    yt.backward(torch.from_numpy(g))
    np.testing.assert_allclose(xo.grad, xt.grad.numpy(), rtol=1e-4, atol=1e-5)
    for (pn, p), (_, tp) in zip(ours.named_parameters(), theirs.named_parameters()):
        np.testing.assert_allclose(p.grad, tp.grad.numpy(), rtol=1e-4, atol=1e-4, err_msg=pn)
    for (bn, b), (_, tb) in zip(ours.named_buffers(), theirs.named_buffers()):
        if tb.dtype.is_floating_point:
            np.testing.assert_allclose(b, tb.numpy(), rtol=1e-5, atol=1e-6, err_msg=bn)


LOSSES = [
    ("CrossEntropyLoss", lambda: nn.CrossEntropyLoss(label_smoothing=0.1),
     lambda: torch.nn.CrossEntropyLoss(label_smoothing=0.1), "classes"),
    ("NLLLoss", lambda: nn.NLLLoss(), lambda: torch.nn.NLLLoss(), "classes"),
    ("MSELoss", lambda: nn.MSELoss(), lambda: torch.nn.MSELoss(), "values"),
    ("L1Loss", lambda: nn.L1Loss(reduction="sum"), lambda: torch.nn.L1Loss(reduction="sum"), "values"),
    ("SmoothL1Loss", lambda: nn.SmoothL1Loss(beta=0.5), lambda: torch.nn.SmoothL1Loss(beta=0.5), "values"),
    ("BCELoss", lambda: nn.BCELoss(), lambda: torch.nn.BCELoss(), "probabilities"),
    ("BCEWithLogitsLoss", lambda: nn.BCEWithLogitsLoss(), lambda: torch.nn.BCEWithLogitsLoss(), "binary"),
    ("KLDivLoss", lambda: nn.KLDivLoss(reduction="batchmean"), lambda: torch.nn.KLDivLoss(reduction="batchmean"),
     "distributions"),
]


@needs_torch
@pytest.mark.parametrize("name,ours_f,theirs_f,kind", LOSSES, ids=[l[0] for l in LOSSES])
def test_loss_module_matches_pytorch(rng, name, ours_f, theirs_f, kind):
    x = rng.standard_normal((6, 4)).astype(np.float32)
    if kind == "classes":
        t = rng.integers(0, 4, 6)
        if name == "NLLLoss":
            x = np.log(np.exp(x) / np.exp(x).sum(1, keepdims=True)).astype(np.float32)
        tt = torch.from_numpy(t)
    else:
        if kind == "probabilities":
            x = (1 / (1 + np.exp(-x))).astype(np.float32)
        t = rng.uniform(0, 1, x.shape).astype(np.float32) if kind != "values" else rng.standard_normal(x.shape).astype(np.float32)
        if kind == "distributions":
            x = np.log(np.exp(x) / np.exp(x).sum(1, keepdims=True)).astype(np.float32)
            t = (t / t.sum(1, keepdims=True)).astype(np.float32)
        tt = torch.from_numpy(t)
    xo, xt = tensor(x, requires_grad=True), torch.tensor(x, requires_grad=True)
    lo, lt = ours_f()(xo, t), theirs_f()(xt, tt)
    np.testing.assert_allclose(lo.data, lt.detach().numpy(), rtol=1e-5, atol=1e-6)
    (lo * 2.0).backward()
    (lt * 2.0).backward()
    np.testing.assert_allclose(xo.grad, xt.grad.numpy(), rtol=1e-5, atol=1e-6)


OPTIMIZERS = [
    ("SGD", lambda p: optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)),
    ("Adam", lambda p: optim.Adam(p, lr=1e-2, amsgrad=True), lambda p: torch.optim.Adam(p, lr=1e-2, amsgrad=True, foreach=False)),
    ("AdamW", lambda p: optim.AdamW(p, lr=1e-2), lambda p: torch.optim.AdamW(p, lr=1e-2, foreach=False)),
]


@needs_torch
@pytest.mark.parametrize("name,ours_f,theirs_f", OPTIMIZERS, ids=[o[0] for o in OPTIMIZERS])
def test_training_steps_match_pytorch(rng, name, ours_f, theirs_f):
    ours, theirs = _pair(lambda: nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 3)),
                         lambda: torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.Tanh(), torch.nn.Linear(8, 3)))
    opt_o, opt_t = ours_f(list(ours.parameters())), theirs_f(list(theirs.parameters()))
    for _ in range(5):
        x = rng.standard_normal((10, 6)).astype(np.float32)
        y = rng.integers(0, 3, 10)
        opt_o.zero_grad()
        nn.functional.cross_entropy(ours(tensor(x)), y).backward()
        opt_o.step()
        opt_t.zero_grad()
        torch.nn.functional.cross_entropy(theirs(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        opt_t.step()
    for (n, p), (_, tp) in zip(ours.named_parameters(), theirs.named_parameters()):
        np.testing.assert_allclose(p.data, tp.detach().numpy(), rtol=1e-5, atol=1e-6, err_msg=n)


def test_module_parameters_state_dict_and_modes():
    net = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
    names = [n for n, _ in net.named_parameters()]
    assert names == ["0.weight", "0.bias", "1.weight", "1.bias", "4.weight", "4.bias"]
    state = net.state_dict()
    assert set(state) == set(names) | {"1.running_mean", "1.running_var"}
    other = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.ReLU(), nn.Flatten(), nn.Linear(8, 3))
    other.load_state_dict(state)
    for (n, p), (_, q) in zip(net.named_parameters(), other.named_parameters()):
        np.testing.assert_array_equal(p.data, q.data)
    net.eval()
    assert not any(m.training for m in net.modules())
    assert "Conv2d(1, 2" in repr(net)
    bad = dict(state)
    bad["4.weight"] = np.zeros((3, 9), np.float32)
    before = other[4].weight.data.copy()
    with raises(ValueError, "load_state_dict", "4.weight", "(3, 9)", "(3, 8)"):
        other.load_state_dict(bad)
    np.testing.assert_array_equal(other[4].weight.data, before)  # left as it was
    with raises(KeyError, "missing keys"):
        other.load_state_dict({})


def test_layer_shape_errors_name_the_layer():
    with raises(ValueError, "Linear(8 -> 4)", "9 features", "expected 8", "(2, 9)"):
        nn.Linear(8, 4)(tensor(np.zeros((2, 9), np.float32)))
    with raises(ValueError, "Conv2d(3 -> 4)", "(2, 2, 5, 5)", "3 channels"):
        nn.Conv2d(3, 4, 3)(tensor(np.zeros((2, 2, 5, 5), np.float32)))
    with raises(ValueError, "groups=3", "in_channels (4)"):
        nn.Conv2d(4, 6, 3, groups=3)


def test_linear_with_frozen_parameters():
    """Frozen weight or bias: no gradient is computed for them, the others still are."""
    rng = np.random.default_rng(5)
    layer = nn.Linear(4, 3)
    x = tensor(rng.standard_normal((5, 4)).astype(np.float32), requires_grad=True)
    g = rng.standard_normal((5, 3)).astype(np.float32)
    layer.weight.requires_grad_(False)
    layer.bias.requires_grad_(False)
    layer(x).backward(g)
    assert layer.weight.grad is None and layer.bias.grad is None
    np.testing.assert_allclose(x.grad, g.astype(np.float64) @ layer.weight.data, rtol=1e-5, atol=1e-6)
    layer.bias.requires_grad_(True)
    x.grad = None
    layer(x).backward(g)
    assert layer.weight.grad is None
    np.testing.assert_allclose(layer.bias.grad, g.sum(0, dtype=np.float64), rtol=1e-5, atol=1e-6)


def test_optimizer_validation():
    p = [nn.Linear(2, 2).weight]
    with raises(ValueError, "Invalid learning rate: -1"):
        optim.SGD(p, lr=-1)
    with raises(ValueError, "Invalid beta parameter at index 0"):
        optim.Adam(p, betas=(1.0, 0.9))
    with raises(ValueError, "empty parameter list"):
        optim.Adam([])


@pytest.mark.parametrize("make", [lambda p: optim.SGD(p, lr=0.1, momentum=0.9), lambda p: optim.Adam(p, lr=0.1),
                                  lambda p: optim.AdamW(p, lr=0.1, amsgrad=True)], ids=["SGD", "Adam", "AdamW"])
def test_optimizer_step_takes_odd_gradients_or_names_them(make):
    """A step calls the kernel straight away on plain gradients; anything else goes through
    ops' checks: converted when it can be (same update), refused by name when not."""
    plain, odd = nn.Linear(3, 2), nn.Linear(3, 2)
    odd.load_state_dict(plain.state_dict())
    opt_plain, opt_odd = make(plain.parameters()), make(odd.parameters())
    rng = np.random.default_rng(0)
    for _ in range(2):
        grads = [rng.standard_normal(p.shape).astype(np.float32) for p in plain.parameters()]
        for p, g in zip(plain.parameters(), grads):
            p.grad = g
        for p, g in zip(odd.parameters(), grads):
            p.grad = np.asfortranarray(g.astype(np.float64)) if g.ndim == 2 else g.tolist()
        opt_plain.step()
        opt_odd.step()
    for a, b in zip(plain.parameters(), odd.parameters()):
        np.testing.assert_allclose(b.data, a.data, rtol=1e-6, atol=1e-7)
    odd.weight.grad = np.zeros((3, 2), np.float32)  # the right size, the wrong shape
    with raises(ValueError, "grads[0]", "(3, 2)", "(2, 3)"):
        opt_odd.step()
    odd.weight.grad = np.zeros((2, 3), np.float32)
    opt_odd.param_groups[0]["lr"] = -1.0  # set by hand, past the constructor's checks
    with raises(ValueError, "learning rate", "-1"):
        opt_odd.step()


def test_parameter_groups_and_schedulers():
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    opt = optim.SGD([{"params": a.parameters()}, {"params": b.parameters(), "lr": 0.5}], lr=0.1)
    assert [g["lr"] for g in opt.param_groups] == [0.1, 0.5]
    sched = optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)
    for _ in range(2):
        sched.step()
    np.testing.assert_allclose(sched.get_last_lr(), [0.01, 0.05])
    cos = optim.lr_scheduler.CosineAnnealingLR(optim.SGD(a.parameters(), lr=1.0), T_max=4)
    for _ in range(4):
        cos.step()
    assert cos.get_last_lr()[0] == pytest.approx(0.0, abs=1e-12)
    plateau = optim.lr_scheduler.ReduceLROnPlateau(optim.SGD(b.parameters(), lr=1.0), patience=1, factor=0.5)
    for v in [1.0, 1.0, 1.0]:
        plateau.step(v)
    assert plateau.get_last_lr()[0] == 0.5


@pytest.mark.parametrize("mode,metrics,lrs", [
    # a first NaN is never the best (it was, and then nothing could beat it: 0.5 at step 3)
    ("min", [float("nan"), 1.0, 0.9, 0.8, 0.7], [1.0, 1.0, 1.0, 1.0, 1.0]),
    # within PyTorch's relative threshold 1e-4 a metric is not better
    ("min", [1.0, 0.99995, 0.99991, 0.5], [1.0, 1.0, 0.5, 0.5]),
    ("max", [1.0, 1.00005, 2.0, 2.0, 2.0], [1.0, 1.0, 1.0, 1.0, 0.5]),
], ids=["nan first", "min threshold", "max threshold"])
def test_reduce_lr_on_plateau_as_pytorch(mode, metrics, lrs):
    """The learning rates PyTorch's ReduceLROnPlateau gives for these metrics (patience 1,
    factor 0.5; checked against torch 2.13)."""
    plateau = optim.lr_scheduler.ReduceLROnPlateau(optim.SGD(nn.Linear(1, 1).parameters(), lr=1.0), mode=mode,
                                                   patience=1, factor=0.5)
    got = []
    for m in metrics:
        plateau.step(m)
        got.append(plateau.get_last_lr()[0])
    assert got == lrs
    with raises(TypeError, "ReduceLROnPlateau.step", "metric", "'x'"):
        plateau.step("x")


def test_clip_grad_norm():
    lin = nn.Linear(3, 2)
    lin.weight.grad = np.full((2, 3), 3.0, np.float32)
    lin.bias.grad = np.full(2, 4.0, np.float32)
    norm = optim.clip_grad_norm_(lin.parameters(), 1.0)
    assert norm == pytest.approx(np.sqrt(6 * 9 + 2 * 16))
    total = np.sqrt((lin.weight.grad ** 2).sum() + (lin.bias.grad ** 2).sum())
    assert total == pytest.approx(1.0, rel=1e-4)
    for bad in (-1.0, float("nan")):  # a negative bound would have flipped every gradient
        with raises(ValueError, "clip_grad_norm_", "max_norm", str(bad)):
            optim.clip_grad_norm_(lin.parameters(), bad)


def test_optimizer_load_state_dict_names_bad_input():
    opt = optim.Adam(nn.Linear(2, 2).parameters())
    for bad in (None, {"x": 1}, [1, 2]):
        with raises(TypeError, "load_state_dict", "'state' and 'param_groups'"):
            opt.load_state_dict(bad)
    saved = opt.state_dict()
    with raises(ValueError, "load_state_dict", "[7]", "has 2"):
        opt.load_state_dict({"state": {7: {}}, "param_groups": saved["param_groups"]})
    opt.load_state_dict(saved)  # its own state loads


@pytest.mark.parametrize("make,shape", [(lambda: nn.BatchNorm1d(3), (0, 3)), (lambda: nn.BatchNorm2d(3), (0, 3, 4, 4)),
                                        (lambda: nn.BatchNorm2d(3), (2, 3, 0, 5))])
def test_batch_norm_of_an_empty_batch_keeps_its_statistics(rng, make, shape):
    """An empty batch gives an empty output and gradient, and leaves the running statistics
    as they were (their update divided 0 by 0 and made them NaN)."""
    bn = make()
    x = tensor(rng.standard_normal(shape).astype(np.float32), requires_grad=True)
    y = bn(x)
    y.sum().backward()
    assert y.shape == shape and x.grad.shape == shape
    np.testing.assert_array_equal(bn.running_mean, np.zeros(3, np.float32))
    np.testing.assert_array_equal(bn.running_var, np.ones(3, np.float32))


@pytest.mark.parametrize("make,shape", [(lambda: nn.BatchNorm1d(3), (1, 3)), (lambda: nn.BatchNorm1d(3), (1, 3, 1)),
                                        (lambda: nn.BatchNorm2d(3), (1, 3, 1, 1))])
def test_batch_norm_refuses_one_value_per_channel_when_training(rng, make, shape):
    """One value per channel has no variance to normalise by (PyTorch refuses it too); the
    running statistics stay untouched, and in eval mode the same input is fine."""
    bn = make()
    x = tensor(rng.standard_normal(shape).astype(np.float32))
    with raises(ValueError, "batch_norm", "more than 1 value per channel", str(shape)):
        bn(x)
    np.testing.assert_array_equal(bn.running_var, np.ones(3, np.float32))
    bn.eval()
    assert bn(x).shape == shape


@pytest.mark.parametrize("features,lead", [((0, 3), (2,)), ((3, 0), (2,)), ((0, 0), (2,)), ((3, 2), (0,)),
                                           ((3, 2), (2, 0, 4)), ((0, 3), ())], ids=str)
def test_linear_with_zero_sizes(rng, features, lead):
    """Zero features in or out, or an empty batch: y = x W^T + b (the bias alone over 0
    features) and gradients of the right shapes (a reshape to (-1, 0) had failed)."""
    layer = nn.Linear(*features)
    x = tensor(rng.standard_normal(lead + (features[0],)).astype(np.float32), requires_grad=True)
    y = layer(x)
    expected = x.data @ layer.weight.data.T + layer.bias.data
    assert y.shape == expected.shape
    np.testing.assert_allclose(y.numpy(), expected, rtol=1e-6, atol=1e-6)
    y.sum().backward()
    assert x.grad.shape == x.shape and layer.weight.grad.shape == layer.weight.shape
    np.testing.assert_allclose(layer.bias.grad, np.full(features[1], float(np.prod(lead))), rtol=1e-6)


def test_module_attribute_assignment_as_pytorch():
    """A parameter is replaced only by a Parameter or None and a sub-module only by a Module or
    None (an array had silently dropped the weight from parameters(), so no optimizer trained
    it); an array assigned to a buffer stays in state_dict(); del removes a parameter."""
    lin = nn.Linear(2, 3)
    with raises(TypeError, "Linear", "cannot assign ndarray as parameter 'weight'"):
        lin.weight = np.ones((3, 2), np.float32)
    assert [n for n, _ in lin.named_parameters()] == ["weight", "bias"]
    lin.bias = None
    assert [n for n, _ in lin.named_parameters()] == ["weight"]
    assert lin(tensor(np.ones((1, 2), np.float32))).shape == (1, 3)
    del lin.weight
    assert list(lin.named_parameters()) == []
    seq = nn.Sequential(nn.Linear(2, 2))
    with raises(TypeError, "Sequential", "child module '0'"):
        setattr(seq, "0", 3)
    bn = nn.BatchNorm1d(3)
    bn.running_mean = np.full(3, 7.0, np.float32)
    np.testing.assert_array_equal(bn.state_dict()["running_mean"], [7, 7, 7])
    assert repr(nn.Conv2d(1, 2, 3, dilation=2, bias=False)).endswith("dilation=2, bias=False)")


def test_parameter_from_an_unaligned_buffer_trains():
    """A float32 array at an odd byte offset (np.frombuffer) becomes an aligned copy: the
    optimizers' in-place steps refuse unaligned arrays. An aligned float32 array is shared."""
    unaligned = at_odd_byte(np.zeros((2, 3), np.float32))
    lin = nn.Linear(3, 2)
    lin.weight = nn.Parameter(unaligned)
    assert lin.weight.data.flags.aligned
    opt = optim.Adam(lin.parameters(), lr=0.1)
    lin(tensor(np.ones((4, 3), np.float32))).sum().backward()
    opt.step()
    np.testing.assert_allclose(lin.weight.data, np.full((2, 3), -0.1), rtol=1e-5)
    shared = np.ones((2, 3), np.float32)
    assert np.shares_memory(nn.Parameter(shared).data, shared)


def test_activation_layers_take_pytorchs_inplace(rng):
    """nn.ReLU(inplace=True) and nn.LeakyReLU(0.2, inplace=True), common in PyTorch model
    code, are taken (a TypeError before) and give the same values and gradients; the input is
    left as it was, as autograd needs."""
    x = rng.standard_normal((3, 4)).astype(np.float32)
    for layer, expected in [(nn.ReLU(inplace=True), np.maximum(x, 0)),
                            (nn.LeakyReLU(0.2, inplace=True), np.where(x > 0, x, 0.2 * x))]:
        a = tensor(x.copy(), requires_grad=True)
        y = layer(a)
        y.sum().backward()
        np.testing.assert_allclose(y.numpy(), expected, rtol=1e-6)
        np.testing.assert_allclose(a.grad, np.where(x > 0, 1.0, 0.0 if isinstance(layer, nn.ReLU) else 0.2), rtol=1e-6)
        np.testing.assert_array_equal(a.data, x)
    with raises(TypeError, "ReLU", "inplace"):
        nn.ReLU(inplace="yes")

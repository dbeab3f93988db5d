"""The benchmark cases shared by bench/report.py and the pytest-benchmark files.

Each case builds random inputs, says how much work one call is (bytes moved
once or flops), and gives one callable per library: shenjing, NumPy (the
expression a NumPy user writes) and, where it is installed, PyTorch. Every
callable's result is checked against shenjing._reference in float64 before it
is timed (``check``).
"""

from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Callable, Dict, Optional

import numpy as np

import shenjing._reference as R
from shenjing import ops

F32 = 4  # bytes


@dataclass
class Case:
    name: str
    unit: str                      # "GB/s" or "GFLOP/s"
    work: float                    # bytes or flops of one call
    make: Callable[[np.random.Generator], dict]
    expected: Callable[[dict], np.ndarray]
    # per library: data -> the call to time. "shenjing_out" writes into a
    # preallocated output: the kernel alone, without the page faults of a
    # fresh 64 MB array that every library pays on its API call.
    runners: Dict[str, Callable[[dict], Callable[[], object]]] = field(default_factory=dict)
    rtol: float = 1e-4
    atol: float = 1e-5
    # which result of the call to compare (some calls return (loss, grad))
    pick: Callable[[object], np.ndarray] = lambda r: r
    # shenjing's timed calls each follow a short run of the FMA peak, so the row's share
    # of the peak compares two rates measured moments apart (the large GEMMs)
    paired_peak: bool = False


def _torch():
    try:
        import torch
    except ImportError:
        return None
    return torch


# --- inputs the caches do not hold -------------------------------------------------------
# A 64 MB input timed call after call stays in this machine's 260 MB L3 between calls: the copy
# of 16M floats then reads it from there (about 60 GB/s, against 37 from memory), as does every
# kernel whose inputs fit, while Adam's 256 MB of state does not. So each memory-bound row also
# has a "shenjing_cold" runner: the out= call on inputs taken, call by call, from a ring of copies
# of more than twice the L3, so that every call reads its inputs from memory.

def _l3_bytes() -> int:
    try:
        with open("/sys/devices/system/cpu/cpu0/cache/index3/size") as f:
            text = f.read().strip()
    except OSError:
        return 0
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    try:
        return int(text[:-1]) * units[text[-1]] if text[-1] in units else int(text)
    except ValueError:
        return 0


COLD_RING_BYTES = max(2 * _l3_bytes(), 256 << 20)


def _cold(call, *arrays):
    """A callable that runs call(*copies of arrays), with the next set of copies each time
    from a ring of more than COLD_RING_BYTES (the first set is the arrays themselves)."""
    count = max(2, math.ceil(COLD_RING_BYTES / sum(a.nbytes for a in arrays)))
    sets = [arrays] + [tuple(a.copy() for a in arrays) for _ in range(count - 1)]
    turn = itertools.count()
    return lambda: call(*sets[next(turn) % count])


def _cold_out(f):
    """the "shenjing_cold" runner of f(x, out=y) on d["x"], into one preallocated y"""
    return lambda d: _cold(lambda x, y=np.empty_like(d["x"]): f(x, out=y), d["x"])


# --- activations ------------------------------------------------------------------------

N_ELEMENTWISE = 16 * 1024 * 1024
CHECKED = 1 << 20  # elementwise results are checked on their first 1M values (erfc in Python is slow)


def _vector(rng):
    return {"x": (rng.standard_normal(N_ELEMENTWISE) * 3).astype(np.float32)}


def _torch_unary(fn_name):
    def runner(d):
        torch = _torch()
        x = torch.from_numpy(d["x"])
        fn = {"sigmoid": torch.sigmoid, "tanh": torch.tanh,
              "gelu": lambda v: torch.nn.functional.gelu(v),
              "gelu_tanh": lambda v: torch.nn.functional.gelu(v, approximate="tanh")}[fn_name]
        return lambda: fn(x).numpy()
    return runner


def _copy_case():
    return Case(
        "copy 16M", "GB/s", 2 * N_ELEMENTWISE * F32, _vector,
        expected=lambda d: d["x"][:CHECKED].astype(np.float64),
        pick=lambda r: r[:CHECKED],
        runners={
            "shenjing": lambda d: (lambda: ops.copy(d["x"])),
            "shenjing_out": lambda d: (lambda y=np.empty_like(d["x"]): ops.copy(d["x"], out=y)),
            "shenjing_cold": _cold_out(ops.copy),
            "numpy": lambda d: (lambda: d["x"].copy()),
            "torch": lambda d: (lambda t=_torch(): t.from_numpy(d["x"]).clone().numpy()),
        },
        rtol=0, atol=0)


def _activation_cases():
    sqrt_2_over_pi = np.float32(math.sqrt(2 / math.pi))
    numpy_gelu_tanh = lambda x: np.float32(0.5) * x * (1 + np.tanh(sqrt_2_over_pi * (x + np.float32(0.044715) * x**3)))
    cases = [
        ("sigmoid", ops.sigmoid, lambda x: 1 / (1 + np.exp(-x)), lambda x: R.sigmoid(x)),
        ("tanh", ops.tanh, np.tanh, np.tanh),
        ("gelu_tanh", lambda x, out=None: ops.gelu(x, "tanh", out=out), numpy_gelu_tanh, lambda x: R.gelu(x, "tanh")),
    ]
    out = []
    for name, ours, numpy_expr, ref in cases:
        out.append(Case(
            f"{name} 16M", "GB/s", 2 * N_ELEMENTWISE * F32, _vector,
            expected=lambda d, ref=ref: ref(d["x"][:CHECKED].astype(np.float64)),
            pick=lambda r: r[:CHECKED],
            runners={
                "shenjing": lambda d, f=ours: (lambda: f(d["x"])),
                "shenjing_out": lambda d, f=ours: (lambda y=np.empty_like(d["x"]): f(d["x"], out=y)),
                "shenjing_cold": _cold_out(ours),
                "numpy": lambda d, f=numpy_expr: (lambda: f(d["x"])),
                "torch": _torch_unary(name),
            },
            atol=1e-5))
    # exact GELU: NumPy has no erf, so its side is the tanh form a NumPy user writes (checked loosely)
    out.append(Case(
        "gelu 16M", "GB/s", 2 * N_ELEMENTWISE * F32, _vector,
        expected=lambda d: R.gelu(d["x"][:CHECKED].astype(np.float64)),
        pick=lambda r: r[:CHECKED],
        runners={
            "shenjing": lambda d: (lambda: ops.gelu(d["x"])),
            "shenjing_out": lambda d: (lambda y=np.empty_like(d["x"]): ops.gelu(d["x"], out=y)),
            "shenjing_cold": _cold_out(ops.gelu),
            "numpy": lambda d: (lambda: numpy_gelu_tanh(d["x"])),
            "torch": _torch_unary("gelu"),
        },
        rtol=1e-2, atol=2e-3))
    return out


def _matrix(rng):
    return {"x": (rng.standard_normal((4096, 4096)) * 3).astype(np.float32)}


def _softmax_case():
    def numpy_softmax(x):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    return Case(
        "softmax 4096x4096", "GB/s", 2 * 4096 * 4096 * F32, _matrix,
        expected=lambda d: R.softmax(d["x"].astype(np.float64), axis=1),
        runners={
            "shenjing": lambda d: (lambda: ops.softmax(d["x"], axis=1)),
            "shenjing_out": lambda d: (lambda y=np.empty_like(d["x"]): ops.softmax(d["x"], axis=1, out=y)),
            "shenjing_cold": _cold_out(lambda x, out: ops.softmax(x, axis=1, out=out)),
            "numpy": lambda d: (lambda: numpy_softmax(d["x"])),
            "torch": lambda d: (lambda t=_torch(): t.softmax(t.from_numpy(d["x"]), dim=1).numpy()),
        },
        rtol=1e-4, atol=1e-7)


# --- losses -------------------------------------------------------------------------------

def _logits(rng):
    return {"x": (rng.standard_normal((4096, 1000)) * 2).astype(np.float32), "t": rng.integers(0, 1000, 4096)}


def _cross_entropy_case():
    def numpy_ce(x, t):
        shifted = x - x.max(axis=1, keepdims=True)
        e = np.exp(shifted)
        s = e.sum(axis=1, keepdims=True)
        loss = np.mean(np.log(s[:, 0]) - shifted[np.arange(len(t)), t])
        grad = e / s
        grad[np.arange(len(t)), t] -= 1
        return loss, grad / len(t)

    def torch_ce(d):
        torch = _torch()
        x = torch.from_numpy(d["x"])
        t = torch.from_numpy(d["t"])

        def run():
            xr = x.detach().requires_grad_(True)
            loss = torch.nn.functional.cross_entropy(xr, t)
            loss.backward()
            return float(loss.detach()), xr.grad.numpy()
        return run

    # the loss and its gradient in one pass, as a training step takes them
    def ours(d):
        x, t = d["x"], d["t"]
        return lambda: ops.cross_entropy_forward_backward(x, t)

    def ours_out(d):
        x, t, dx = d["x"], d["t"], np.empty_like(d["x"])
        return lambda: ops.cross_entropy_forward_backward(x, t, out=dx)

    def ours_cold(d):
        t, dx = d["t"], np.empty_like(d["x"])
        return _cold(lambda x: ops.cross_entropy_forward_backward(x, t, out=dx), d["x"])

    # forward reads the logits, backward reads them and writes the gradient
    return Case(
        "cross_entropy fwd+bwd 4096x1000", "GB/s", 3 * 4096 * 1000 * F32, _logits,
        expected=lambda d: R.cross_entropy_backward(1.0, d["x"].astype(np.float64), d["t"]),
        runners={"shenjing": ours, "shenjing_out": ours_out, "shenjing_cold": ours_cold,
                 "numpy": lambda d: (lambda: numpy_ce(d["x"], d["t"])),
                 "torch": torch_ce},
        pick=lambda r: r[1], rtol=1e-4, atol=1e-9)


# --- optimizer ----------------------------------------------------------------------------

N_PARAMS = 16 * 1024 * 1024


def _adam_state(rng):
    p = rng.standard_normal(N_PARAMS).astype(np.float32)
    return {"p": p, "p0": p.copy(), "g": rng.standard_normal(N_PARAMS).astype(np.float32),
            "m": np.zeros(N_PARAMS, np.float32), "v": np.zeros(N_PARAMS, np.float32)}


ADAM = dict(lr=1e-3, betas=(0.9, 0.999), eps=1e-8)


def _adam_case():
    # Each runner restarts from the same state every call, so the result checked
    # is one step from p0 whatever was run before; the reset is outside the timed step.
    def ours(d):
        p, m, v = d["p0"].copy(), np.zeros_like(d["m"]), np.zeros_like(d["v"])

        def run():
            ops.adam_step([p], [d["g"]], [m], [v], step=1, **ADAM)
            return p
        return run

    def ours_cold(d):
        def step(p, g, m, v):
            ops.adam_step([p], [g], [m], [v], step=1, **ADAM)
            return p
        return _cold(step, d["p0"].copy(), d["g"], np.zeros_like(d["m"]), np.zeros_like(d["v"]))

    def numpy_adam(d):
        p, m, v = d["p0"].copy(), np.zeros_like(d["m"]), np.zeros_like(d["v"])
        b1, b2 = ADAM["betas"]

        def run():
            g = d["g"]
            m[...] = b1 * m + (1 - b1) * g
            v[...] = b2 * v + (1 - b2) * g * g
            p[...] -= np.float32(ADAM["lr"] / (1 - b1)) * m / (np.sqrt(v) / np.float32(math.sqrt(1 - b2)) + np.float32(ADAM["eps"]))
            return p
        return run

    def torch_adam(d):
        torch = _torch()
        p = torch.nn.Parameter(torch.from_numpy(d["p0"].copy()))
        p.grad = torch.from_numpy(d["g"])
        opt = torch.optim.Adam([p], fused=True, **ADAM)

        def run():
            opt.step()
            return p.detach().numpy()
        return run

    def expected(d):
        p = [d["p0"].astype(np.float64)]
        R.adam_step(p, [d["g"].astype(np.float64)], [np.zeros_like(p[0])], [np.zeros_like(p[0])], step=1, **ADAM)
        return p[0]

    # reads p, g, m, v and writes p, m, v
    return Case("adam_step 16M params", "GB/s", 7 * N_PARAMS * F32, _adam_state, expected,
                runners={"shenjing": ours, "shenjing_out": ours, "shenjing_cold": ours_cold, "numpy": numpy_adam,
                         "torch": torch_adam},
        rtol=1e-5, atol=1e-6)


# --- GEMM -----------------------------------------------------------------------------------

# the small products the GEMM issue names (M x N x K), each also with a or b stored transposed
SMALL_GEMMS = [(64, 128, 784), (128, 10, 256), (37, 613, 1511)]


def _gemm_case(M, N, K, trans=""):
    """op(a) (M, K) @ op(b) (K, N); trans "a" stores a as (K, M), "b" stores b as (N, K)
    (a Linear layer's backward and forward): each library reads the stored layout."""
    ta, tb = "a" in trans, "b" in trans

    def make(rng):
        return {"a": rng.standard_normal((K, M) if ta else (M, K)).astype(np.float32),
                "b": rng.standard_normal((N, K) if tb else (K, N)).astype(np.float32)}

    def op_a(d):
        return d["a"].T if ta else d["a"]

    def op_b(d):
        return d["b"].T if tb else d["b"]

    return Case(
        f"sgemm {M}x{N}x{K}" + (f" t{trans}" if trans else ""), "GFLOP/s", 2.0 * M * N * K, make,
        expected=lambda d: op_a(d).astype(np.float64) @ op_b(d).astype(np.float64),
        runners={
            "shenjing": lambda d: (lambda: ops.gemm(d["a"], d["b"], trans_a=ta, trans_b=tb)),
            "numpy": lambda d: (lambda: op_a(d) @ op_b(d)),
            "torch": lambda d: (lambda t=_torch(): (t.from_numpy(op_a(d)) @ t.from_numpy(op_b(d))).numpy()),
        },
        rtol=1e-4, atol=1e-3 * math.sqrt(K))


def _matmul_case(batch, M, N, K):
    """A batch of small products (attention heads, per-sample layers): matmul's batched path."""

    def make(rng):
        return {"a": rng.standard_normal((batch, M, K)).astype(np.float32),
                "b": rng.standard_normal((batch, K, N)).astype(np.float32)}

    return Case(
        f"matmul {batch}x({M}x{N}x{K})", "GFLOP/s", 2.0 * batch * M * N * K, make,
        expected=lambda d: d["a"].astype(np.float64) @ d["b"].astype(np.float64),
        runners={
            "shenjing": lambda d: (lambda: ops.matmul(d["a"], d["b"])),
            "numpy": lambda d: (lambda: d["a"] @ d["b"]),
            "torch": lambda d: (lambda t=_torch(): (t.from_numpy(d["a"]) @ t.from_numpy(d["b"])).numpy()),
        },
        rtol=1e-4, atol=1e-3 * math.sqrt(K))


# --- the FMA peak: GEMM's yardstick --------------------------------------------------------

PEAK_ITERATIONS = 4_000_000
PAIRED_PEAK_ITERATIONS = 1_000_000  # ~3 ms: the peak just before each timed large GEMM


def _paired(case: Case) -> Case:
    case.paired_peak = True
    return case


def paired_peak_run():
    """One short FMA-peak run on every thread: (seconds, flops)."""
    import shenjing
    from shenjing import _core
    lanes = _core.fma_peak(0, False)[1]
    start = time.perf_counter()
    _core.fma_peak(PAIRED_PEAK_ITERATIONS, False)
    return time.perf_counter() - start, 2.0 * lanes * PAIRED_PEAK_ITERATIONS * shenjing.get_num_threads()


def _peak_case():
    import shenjing
    from shenjing import _core

    threads = shenjing.get_num_threads()
    lanes = _core.fma_peak(0, False)[1]

    def expected(d):
        # every chain c runs x <- m x + a from x = c 1e-3 (in float32: m and a rounded); the
        # closed form, summed. float32 rounding at the fixed point a/(1-m) drifts by up to a
        # few percent, so this checks that the loop ran, not its last bits.
        m, a, n = float(np.float32(0.999999)), float(np.float32(1e-7)), PEAK_ITERATIONS
        per_lane = sum(m**n * (c * 1e-3) + a * (1 - m**n) / (1 - m) for c in range(12))
        return np.asarray(per_lane * (lanes // 12) * threads)

    return Case(
        "fma peak", "GFLOP/s", 2.0 * lanes * PEAK_ITERATIONS * threads, lambda rng: {},
        expected=expected,
        runners={"shenjing": lambda d: (lambda: np.asarray(_core.fma_peak(PEAK_ITERATIONS, False)[0]))},
        rtol=5e-2, atol=0)


# --- convolution and pooling ------------------------------------------------------------------

def _conv_case(N, C, H, O, K, pad):
    OH = H + 2 * pad - K + 1

    def make(rng):
        return {"x": rng.standard_normal((N, C, H, H)).astype(np.float32),
                "w": (rng.standard_normal((O, C, K, K)) / np.sqrt(C * K * K)).astype(np.float32),
                "b": rng.standard_normal(O).astype(np.float32),
                "g": rng.standard_normal((N, O, OH, OH)).astype(np.float32)}

    def ours(d):
        def run():
            ops.conv2d(d["x"], d["w"], d["b"], padding=pad)
            return ops.conv2d_backward(d["g"], d["x"], d["w"], padding=pad)
        return run

    def numpy_ref(d):
        def run():
            R.conv2d(d["x"], d["w"], d["b"], padding=pad)
            return R.conv2d_backward(d["g"], d["x"], d["w"], padding=pad)
        return run

    def torch_conv(d):
        torch = _torch()
        x, w, b, g = (torch.from_numpy(d[k]) for k in "xwbg")

        def run():
            xr, wr, br = (t.detach().requires_grad_(True) for t in (x, w, b))
            torch.nn.functional.conv2d(xr, wr, br, padding=pad).backward(g)
            return xr.grad.numpy(), wr.grad.numpy(), br.grad.numpy()
        return run

    def expected(d):
        return R.conv2d_backward(d["g"].astype(np.float64), d["x"].astype(np.float64), d["w"].astype(np.float64),
                                 padding=pad)[1]

    # forward, then the gradients of input and weight: 3 x 2 N O OH OW C KH KW
    return Case(f"conv2d fwd+bwd {N}x{C}x{H}x{H} {O}@{K}x{K}", "GFLOP/s", 3 * 2.0 * N * O * OH * OH * C * K * K, make,
                expected, runners={"shenjing": ours, "numpy": numpy_ref, "torch": torch_conv},
                pick=lambda r: r[1], rtol=1e-3, atol=1e-3 * np.sqrt(N * OH * OH))


def _pool_case(kind):
    shape = (64, 32, 24, 24)

    def make(rng):
        return {"x": rng.standard_normal(shape).astype(np.float32),
                "g": rng.standard_normal((64, 32, 12, 12)).astype(np.float32)}

    if kind == "max":
        def ours(d):
            def run():
                _, idx = ops.max_pool2d(d["x"], 2, return_indices=True)
                return ops.max_pool2d_backward(d["g"], d["x"], idx, 2)
            return run

        def numpy_ref(d):
            def run():
                _, idx = R.max_pool2d(d["x"], 2, return_indices=True)
                return R.max_pool2d_backward(d["g"], d["x"], idx, 2)
            return run

        def expected(d):
            _, idx = R.max_pool2d(d["x"].astype(np.float64), 2, return_indices=True)
            return R.max_pool2d_backward(d["g"].astype(np.float64), d["x"], idx, 2)

        torch_fn = lambda t, x: t.nn.functional.max_pool2d(x, 2)
    else:
        def ours(d):
            def run():
                ops.avg_pool2d(d["x"], 2)
                return ops.avg_pool2d_backward(d["g"], d["x"], 2)
            return run

        def numpy_ref(d):
            def run():
                R.avg_pool2d(d["x"], 2)
                return R.avg_pool2d_backward(d["g"], d["x"], 2)
            return run

        def expected(d):
            return R.avg_pool2d_backward(d["g"].astype(np.float64), d["x"].astype(np.float64), 2)

        torch_fn = lambda t, x: t.nn.functional.avg_pool2d(x, 2)

    def torch_pool(d):
        torch = _torch()
        x, g = torch.from_numpy(d["x"]), torch.from_numpy(d["g"])

        def run():
            xr = x.detach().requires_grad_(True)
            torch_fn(torch, xr).backward(g)
            return xr.grad.numpy()
        return run

    # forward reads x and writes y; backward reads dy (and the indices) and writes dx
    x_bytes, y_bytes = 64 * 32 * 24 * 24 * F32, 64 * 32 * 12 * 12 * F32
    return Case(f"{kind}_pool2d fwd+bwd 64x32x24x24 2x2", "GB/s", 2 * x_bytes + 2 * y_bytes, make, expected,
                runners={"shenjing": ours, "numpy": numpy_ref, "torch": torch_pool}, rtol=1e-5, atol=1e-6)


def all_cases():
    return ([_copy_case(), _peak_case()] + _activation_cases() + [_softmax_case(), _cross_entropy_case(), _adam_case()]
            + [_gemm_case(M, N, K, trans) for M, N, K in SMALL_GEMMS for trans in ("", "a", "b")]
            + [_paired(_gemm_case(1024, 1024, 1024)), _paired(_gemm_case(2048, 2048, 2048))]
            + [_matmul_case(256, 64, 64, 64)]
            + [_conv_case(64, 1, 28, 32, 5, 0), _conv_case(64, 32, 12, 64, 5, 0), _conv_case(32, 64, 56, 64, 3, 1)]
            + [_pool_case("max"), _pool_case("avg")])


def check(case: Case, data: dict, result) -> Optional[str]:
    """None if the result matches the float64 reference, else what is wrong."""
    got = np.asarray(case.pick(result), dtype=np.float64)
    expected = case.expected(data)
    if got.shape != expected.shape:
        return f"shape {got.shape}, expected {expected.shape}"
    bad = ~np.isclose(got, expected, rtol=case.rtol, atol=case.atol, equal_nan=True)
    if bad.any():
        i = int(np.argmax(bad))
        return f"{bad.sum()} values differ, e.g. {got.reshape(-1)[i]!r} vs {expected.reshape(-1)[i]!r}"
    return None

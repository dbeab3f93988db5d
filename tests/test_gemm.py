"""GEMM (first, cache-blocked version) against the float64 reference: every
transpose, edge sizes, alpha / beta / bias / activation epilogue."""

from __future__ import annotations

import numpy as np
import pytest

import shenjing
import shenjing._reference as R
from shenjing import _core, ops

from helpers import assert_close, raises

SIZES = [(0, 3, 4), (3, 0, 4), (3, 4, 0), (1, 1, 1), (7, 5, 3), (17, 1, 9), (1, 31, 1), (72, 73, 74),
         (300, 7, 2), (5, 600, 257), (64, 128, 784), (37, 613, 151),
         # one row tile with B read in place over several passes; one-vector-wide panels
         # (N <= 16) over several row tiles; a depth split into uneven passes
         (5, 40, 1500), (128, 10, 256), (40, 16, 300), (30, 50, 513),
         # B read in place by wide rows: passes as shallow as fit 256 KiB of its rows (at least 32)
         (3, 1100, 700), (1, 2100, 300),
         # edge row tiles of every even height below MR (and one row), beside full ones
         (16, 33, 40), (20, 48, 64), (200, 70, 300), (14, 70, 33), (22, 40, 50), (18, 96, 20), (10, 128, 256),
         # fewer panels than threads: the rows are split
         (150, 20, 600),
         # narrow outputs computed as their transpose (N <= 16, M >= 64)
         (100, 16, 50), (70, 3, 33),
         # narrow outputs as dot products along k (N <= 12): an odd row, one row, a k tail,
         # row tasks on both threads
         (33, 12, 100), (1, 5, 40), (200, 11, 64)]


def _operands(rng, M, N, K, ta, tb, dtype):
    a = rng.standard_normal((K, M) if ta else (M, K)).astype(dtype)
    b = rng.standard_normal((N, K) if tb else (K, N)).astype(dtype)
    return a, b


def _operands_product(a, b, ta, tb):
    a, b = a.astype(np.float64), b.astype(np.float64)
    return (a.T if ta else a) @ (b.T if tb else b)


def _tol(dtype, K):
    return dict(rtol=1e-5, atol=1e-5 * np.sqrt(max(K, 1))) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("ta,tb", [(False, False), (True, False), (False, True), (True, True)])
@pytest.mark.parametrize("M,N,K", SIZES, ids=str)
def test_gemm_matches_reference(backend, rng, M, N, K, ta, tb, dtype):
    a, b = _operands(rng, M, N, K, ta, tb, dtype)
    got = ops.gemm(a, b, trans_a=ta, trans_b=tb)
    expected = R.gemm(a.astype(np.float64), b.astype(np.float64), trans_a=ta, trans_b=tb)
    assert_close(got, expected, dtype, tol=_tol(dtype, K), what="gemm")


@pytest.mark.parametrize("activation", [None, "relu", "gelu", "gelu_tanh", "sigmoid", "tanh"])
@pytest.mark.parametrize("bias_shape", [None, "row", "column"])
@pytest.mark.parametrize("M,N,K", [(33, 70, 19), (33, 10, 300), (80, 10, 30)], ids=str)
def test_gemm_epilogue(backend, rng, activation, bias_shape, M, N, K):
    a, b = _operands(rng, M, N, K, False, True, np.float32)
    c = rng.standard_normal((M, N)).astype(np.float32)
    bias = {None: None, "row": rng.standard_normal(N), "column": rng.standard_normal((M, 1))}[bias_shape]
    bias = None if bias is None else bias.astype(np.float32)
    got = ops.gemm(a, b, trans_b=True, alpha=0.5, beta=-1.5, c=c, bias=bias, activation=activation)
    expected = R.gemm(a.astype(np.float64), b.astype(np.float64), trans_b=True, alpha=0.5, beta=-1.5,
                      c=c.astype(np.float64), bias=None if bias is None else bias.astype(np.float64),
                      activation=activation)
    assert_close(got, expected, np.float32, tol=_tol(np.float32, K), what=f"gemm epilogue {activation}")


@pytest.mark.parametrize("activation", [None, "relu", "sigmoid"])
@pytest.mark.parametrize("bias_shape", [None, "row", "column"])
@pytest.mark.parametrize("M,N,K", [(128, 10, 256), (67, 16, 33), (100, 1, 17)], ids=str)
def test_gemm_narrow_transposed_epilogue(backend, rng, activation, bias_shape, M, N, K):
    """A narrow product of a transposed A (computed as C^T and transposed back) with beta 0,
    a bias and an activation: the epilogue after the transpose."""
    a, b = _operands(rng, M, N, K, True, False, np.float32)
    bias = {None: None, "row": rng.standard_normal(N), "column": rng.standard_normal((M, 1))}[bias_shape]
    bias = None if bias is None else bias.astype(np.float32)
    out = np.full((M, N), np.nan, np.float32)  # beta 0: C is never read
    got = ops.gemm(a, b, trans_a=True, bias=bias, activation=activation, out=out)
    expected = R.gemm(a.astype(np.float64), b.astype(np.float64), trans_a=True,
                      bias=None if bias is None else bias.astype(np.float64), activation=activation)
    assert_close(got, expected, np.float32, tol=_tol(np.float32, K), what=f"gemm narrow epilogue {activation}")


def _off_line(array: np.ndarray, floats: int) -> np.ndarray:
    """A copy of array that starts `floats` floats past a 64-byte line."""
    raw = np.empty(array.size + 32, array.dtype)
    start = (-raw.ctypes.data % 64) // array.itemsize + floats
    view = raw[start:start + array.size].reshape(array.shape)
    view[...] = array
    return view


@pytest.mark.parametrize("tb", [False, True])
@pytest.mark.parametrize("b_offset", [0, 1, 4])
@pytest.mark.parametrize("M,N,K", [(128, 10, 256), (15, 7, 40), (16, 12, 33), (70, 1, 130), (40, 12, 6000)],
                         ids=str)
def test_gemm_narrow_rows_any_alignment(backend, rng, M, N, K, tb, b_offset):
    """Dot-product narrow products (N <= 12) read B^T from a line-aligned copy, one per thread
    (or one shared when large: 12 x 6000), or in place when b is transposed and aligned or M
    is short: every offset of b from a cache line, k tails, give the same products."""
    a, b = _operands(rng, M, N, K, False, tb, np.float32)
    a, b = _off_line(a, 3), _off_line(b, b_offset)
    got = ops.gemm(a, b, trans_b=tb)
    expected = R.gemm(a.astype(np.float64), b.astype(np.float64), trans_b=tb)
    assert_close(got, expected, np.float32, tol=_tol(np.float32, K), what="gemm narrow rows")


@pytest.mark.parametrize("ta", [False, True])
@pytest.mark.parametrize("b_offset", [0, 3])
@pytest.mark.parametrize("M,N,K", [(25, 96, 600), (13, 40, 300), (49, 613, 151)], ids=str)
def test_gemm_first_row_tile_packs_b(backend, rng, M, N, K, ta, b_offset):
    """B as it lies under several row tiles: the first tile of each task reads every full
    panel of B in place (at any offset from a cache line) and packs it for the tiles after
    it, pass after pass; the last tile may be a single row (25 = 12 + 12 + 1). With alpha,
    beta, C, a bias and an activation, which the packing tile's results go through too."""
    a, b = _operands(rng, M, N, K, ta, False, np.float32)
    b = _off_line(b, b_offset)
    c = rng.standard_normal((M, N)).astype(np.float32)
    bias = rng.standard_normal(N).astype(np.float32)
    got = ops.gemm(a, b, trans_a=ta, alpha=0.5, beta=-1.5, c=c, bias=bias, activation="relu")
    expected = R.gemm(a.astype(np.float64), b.astype(np.float64), trans_a=ta, alpha=0.5, beta=-1.5,
                      c=c.astype(np.float64), bias=bias.astype(np.float64), activation="relu")
    assert_close(got, expected, np.float32, tol=_tol(np.float32, K), what="gemm, B packed by the first tile")


@pytest.mark.parametrize("b_offset", [None, 5])
@pytest.mark.parametrize("M,N,K", [(1, 300, 70), (2, 200, 90), (1, 64, 33), (2, 4100, 20), (1, 101, 40), (1, 72, 9)],
                         ids=str)
def test_gemm_one_or_two_rows_over_several_panels(backend, rng, M, N, K, b_offset):
    """A product of one or two rows reads B in place, whole groups of panels a call (four for
    one row, two for two), the panels left over one by one and the right edge packed; B at
    an offset from a cache line, or in an allocation of its own size (so that the sanitizer
    build sees a read past its last row), with the epilogue."""
    a, b = _operands(rng, M, N, K, False, False, np.float32)
    if b_offset is not None:
        b = _off_line(b, b_offset)
    c = rng.standard_normal((M, N)).astype(np.float32)
    bias = rng.standard_normal(N).astype(np.float32)
    got = ops.gemm(a, b, alpha=2.0, beta=0.5, c=c, bias=bias, activation="tanh")
    expected = R.gemm(a.astype(np.float64), b.astype(np.float64), alpha=2.0, beta=0.5, c=c.astype(np.float64),
                      bias=bias.astype(np.float64), activation="tanh")
    assert_close(got, expected, np.float32, tol=_tol(np.float32, K), what="gemm of one or two rows")


def test_gemm_never_reads_c_when_beta_is_zero(rng):
    a, b = _operands(rng, 9, 10, 11, False, False, np.float32)
    out = np.full((9, 10), np.nan, dtype=np.float32)
    ops.gemm(a, b, out=out)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out, a @ b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("M,N,K", [(9, 10, 11), (41, 10, 70)], ids=str)
def test_gemm_in_place_on_c(rng, M, N, K):
    a, b = _operands(rng, M, N, K, False, False, np.float32)
    c = rng.standard_normal((M, N)).astype(np.float32)
    expected = 0.5 * (a.astype(np.float64) @ b) + 2 * c
    result = ops.gemm(a, b, alpha=0.5, beta=2.0, c=c, out=c)
    assert result is c
    np.testing.assert_allclose(c, expected, rtol=1e-5, atol=1e-5)


def test_gemm_propagates_nan_and_inf(rng):
    a = np.ones((4, 3), np.float32)
    b = np.ones((3, 5), np.float32)
    a[1, 2] = np.nan
    b[0, 3] = np.inf
    got = ops.gemm(a, b)
    expected = a.astype(np.float64) @ b
    np.testing.assert_array_equal(np.isnan(got), np.isnan(expected))
    np.testing.assert_array_equal(np.isinf(got), np.isinf(expected))


# packed and shared B; B read in place by one row tile (a batch of 8, a narrow ta product
# as its transpose), split over the threads from a smaller size
@pytest.mark.parametrize("M, N, K, ta, tb", [(200, 300, 500, True, True), (8, 256, 256, False, False),
                                             (1, 512, 512, False, False), (128, 10, 256, True, False)])
def test_gemm_is_bit_identical_with_1_and_2_threads(rng, M, N, K, ta, tb):
    a, b = _operands(rng, M, N, K, ta, tb, np.float32)
    old = shenjing.get_num_threads()
    try:
        shenjing.set_num_threads(1)
        one = ops.gemm(a, b, trans_a=ta, trans_b=tb)
        shenjing.set_num_threads(2)
        two = ops.gemm(a, b, trans_a=ta, trans_b=tb)
    finally:
        shenjing.set_num_threads(old)
    np.testing.assert_array_equal(one, two)
    np.testing.assert_allclose(one, _operands_product(a, b, ta, tb), **_tol(np.float32, K))


@pytest.mark.parametrize("case", ["f32", "f64", "ta", "tb", "subclass", "mixed", "fortran", "strided", "unaligned",
                                  "mismatch", "zero"])
def test_plain_product_in_one_call_or_declined(rng, case):
    """ops.gemm and ops.matmul send a plain product of two float matrices to _core.product in
    one call; it takes only C-contiguous, aligned ndarrays of one float dtype and declines
    the rest (None), which the general path converts. Both ways give the same numbers."""
    from helpers import at_odd_byte
    a = rng.standard_normal((9, 7)).astype(np.float32)
    b = rng.standard_normal((7, 5)).astype(np.float32)
    ta = tb = False
    takes = True
    if case == "f64":
        a, b = a.astype(np.float64), b.astype(np.float64)
    elif case == "ta":
        a, ta = np.ascontiguousarray(a.T), True
    elif case == "tb":
        b, tb = np.ascontiguousarray(b.T), True
    elif case == "subclass":  # np.matrix, a masked array: not read as plain data
        a, takes = a.view(type("Sub", (np.ndarray,), {})), False
    elif case == "mixed":
        b, takes = b.astype(np.float64), False
    elif case == "fortran":
        a, takes = np.asfortranarray(a), False
    elif case == "strided":
        a, takes = rng.standard_normal((9, 14)).astype(np.float32)[:, ::2], False
    elif case == "unaligned":
        a, takes = at_odd_byte(a), False
    elif case == "mismatch":
        b, takes = rng.standard_normal((6, 5)).astype(np.float32), False
    elif case == "zero":
        a, b = a[:, :0], b[:0]
    got = _core.product(a, b, ta, tb, None)
    assert (got is not None) == takes
    if case == "mismatch":
        with raises(ValueError, "gemm", "inner dimensions", "(9, 7)", "(6, 5)"):
            ops.gemm(a, b)
        return
    A = np.asarray(a, np.float64).T if ta else np.asarray(a, np.float64)
    B = np.asarray(b, np.float64).T if tb else np.asarray(b, np.float64)
    expected = A @ B
    for result in ([got] if takes else []) + [ops.gemm(a, b, trans_a=ta, trans_b=tb)]:
        assert type(result) is np.ndarray and result.shape == expected.shape and result.flags.c_contiguous
        assert result.dtype == (np.float64 if case == "f64" else np.float32)  # gemm: a's dtype
        np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["fresh", "wrong shape", "wrong dtype", "read-only", "overlaps a", "fortran",
                                  "unaligned"])
def test_plain_product_into_out(rng, case):
    """With out=, _core.product writes into out when it can take it as it lies, and declines
    (None) an out the general path must refuse, with the general path's message."""
    from helpers import at_odd_byte
    a = rng.standard_normal((9, 7)).astype(np.float32)
    b = rng.standard_normal((7, 5)).astype(np.float32)
    out = np.full((9, 5), np.nan, np.float32)
    problem = None
    if case == "wrong shape":
        out, problem = np.empty((5, 9), np.float32), (ValueError, "out has shape (5, 9), expected (9, 5)")
    elif case == "wrong dtype":
        out, problem = np.empty((9, 5), np.float64), (TypeError, "out has dtype float64")
    elif case == "read-only":
        out.flags.writeable = False
        problem = (ValueError, "out is read-only")
    elif case == "overlaps a":  # out's last 5 values are a's first
        big = rng.standard_normal(103).astype(np.float32)
        out, a = big[:45].reshape(9, 5), big[40:].reshape(9, 7)
        problem = (ValueError, "overlaps an input")
    elif case == "fortran":
        out, problem = np.asfortranarray(out), (ValueError, "out must be C-contiguous")
    elif case == "unaligned":
        out, problem = at_odd_byte(out), (ValueError, "out is not aligned")
    assert (_core.product(a, b, False, False, out) is None) == (problem is not None)
    for f in (lambda: ops.gemm(a, b, out=out), lambda: ops.matmul(a, b, out=out)):
        if problem:
            with raises(problem[0], problem[1]):
                f()
        else:
            assert f() is out
            np.testing.assert_allclose(out, a.astype(np.float64) @ b.astype(np.float64), rtol=1e-5, atol=1e-5)


def test_gemm_bad_input():
    a = np.zeros((3, 4), np.float32)
    with raises(ValueError, "gemm", "inner dimensions", "(3, 4)", "(5, 2)"):
        ops.gemm(a, np.zeros((5, 2), np.float32))
    with raises(ValueError, "gemm", "2-D", "(3,)"):
        ops.gemm(np.zeros(3, np.float32), a)
    with raises(ValueError, "gemm", "bias", "(3,)", "(2,)"):
        ops.gemm(a, np.zeros((4, 2), np.float32), bias=np.zeros(3, np.float32))
    with raises(ValueError, "gemm", "c is needed"):
        ops.gemm(a, np.zeros((4, 2), np.float32), beta=1.0)
    with raises(ValueError, "gemm", "activation", "swish"):
        ops.gemm(a, np.zeros((4, 2), np.float32), activation="swish")
    with raises(ValueError, "gemm", "out", "overlap"):
        sq = np.zeros((4, 4), np.float32)
        ops.gemm(sq, sq, out=sq)
    with raises(TypeError, "gemm", "a", "complex"):
        ops.gemm(np.zeros((2, 2), np.complex64), np.zeros((2, 2), np.float32))


# --- matmul: NumPy's semantics on the GEMM ------------------------------------------------

MATMUL_SHAPES = [((3, 4), (4, 5)), ((4,), (4, 5)), ((3, 4), (4,)), ((4,), (4,)),
                 ((2, 3, 4), (4, 5)), ((3, 4), (2, 4, 5)), ((2, 1, 3, 4), (5, 4, 6)), ((7, 1, 3, 4), (1, 6, 4, 2)),
                 ((5,), (2, 5, 3)), ((2, 3, 5), (5,)),
                 # a vector and a matrix, in one call as a row or a column (and empty)
                 ((300,), (300, 70)), ((70, 300), (300,)), ((0,), (0, 5)), ((5,), (5, 0)), ((0, 5), (5,)),
                 # small products split over the threads; large ones each on all threads
                 ((64, 16, 24), (64, 24, 8)), ((3, 130, 70), (70, 90)), ((2, 33, 12), (2, 12, 100)),
                 # empty batch, rows, columns and depth
                 ((0, 3, 4), (4, 5)), ((2, 0, 4), (4, 5)), ((2, 3, 4), (2, 4, 0)), ((3, 0), (0, 5)), ((2, 3, 0), (0,))]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shapes", MATMUL_SHAPES, ids=str)
def test_matmul_matches_numpy(backend, rng, shapes, dtype):
    a = rng.standard_normal(shapes[0]).astype(dtype)
    b = rng.standard_normal(shapes[1]).astype(dtype)
    y = ops.matmul(a, b)
    expected = R.matmul(a.astype(np.float64), b.astype(np.float64))
    assert y.shape == np.shape(expected) and y.dtype == dtype
    np.testing.assert_allclose(y, expected, **_tol(dtype, shapes[0][-1]))


@pytest.mark.parametrize("layout", ["a.T", "b.T", "swapaxes", "fortran", "strided", "ints", "mixed"])
def test_matmul_takes_any_layout_and_type(rng, layout):
    a = rng.standard_normal((3, 5, 4)).astype(np.float32)
    b = rng.standard_normal((3, 4, 6)).astype(np.float32)
    if layout == "a.T":  # a 2-D transposed view, read transposed in place
        x, y = rng.standard_normal((4, 5)).astype(np.float32).T, b[0]
    elif layout == "b.T":  # x @ w.T, a linear layer's product
        x, y = a[0], rng.standard_normal((6, 4)).astype(np.float32).T
    elif layout == "swapaxes":
        x, y = np.swapaxes(np.ascontiguousarray(np.swapaxes(a, -1, -2)), -1, -2), np.swapaxes(np.swapaxes(b, -1, -2).copy(), -1, -2)
    elif layout == "fortran":
        x, y = np.asfortranarray(a[0]), np.asfortranarray(b[0])
    elif layout == "strided":  # neither way contiguous: copied once
        x, y = rng.standard_normal((3, 10, 4)).astype(np.float32)[:, ::2], b
    elif layout == "ints":
        x, y = np.arange(12).reshape(3, 4), np.ones((4, 2), np.int32)
    else:  # float32 with float64: float64
        x, y = a, b.astype(np.float64)
    got = ops.matmul(x, y)
    expected = np.matmul(np.asarray(x, np.float64), np.asarray(y, np.float64))
    assert got.dtype == (np.float64 if layout == "mixed" else np.float32)
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("case", ["f32", "f64", "swapped b", "4-D", "out", "tiny batch", "broadcast", "mixed",
                                  "strided a", "subclass", "out overlaps b"])
def test_batched_product_in_one_call_or_declined(rng, case):
    """ops.matmul sends two stacks of float matrices with the same batch dimensions to
    _core.batched_product (b as it lies, or with its last two axes swapped); it declines
    (None) the rest, which the general path converts or refuses. Both give NumPy's numbers."""
    a = rng.standard_normal((5, 6, 7)).astype(np.float32)
    b = rng.standard_normal((5, 7, 3)).astype(np.float32)
    out, takes, trans_b = None, True, False
    if case == "f64":
        a, b = a.astype(np.float64), b.astype(np.float64)
    elif case == "swapped b":  # attention's q @ k^T
        b, trans_b = np.swapaxes(rng.standard_normal((5, 3, 7)).astype(np.float32), -1, -2), True
    elif case == "4-D":
        a, b = a.reshape(5, 1, 6, 7).repeat(2, axis=1), b.reshape(5, 1, 7, 3).repeat(2, axis=1)
    elif case == "out":
        out = np.full((5, 6, 3), np.nan, np.float32)
    elif case == "tiny batch":  # on one thread without a parallel region
        a, b = rng.standard_normal((300, 2, 3)).astype(np.float32), rng.standard_normal((300, 3, 4)).astype(np.float32)
    elif case == "broadcast":
        b, takes = b[:1], False
    elif case == "mixed":
        b, takes = b.astype(np.float64), False
    elif case == "strided a":
        a, takes = rng.standard_normal((5, 6, 14)).astype(np.float32)[:, :, ::2], False
    elif case == "subclass":
        a, takes = a.view(type("Sub", (np.ndarray,), {})), False
    elif case == "out overlaps b":
        big = rng.standard_normal(5 * 7 * 3 + 10).astype(np.float32)
        b, out, takes = big[:105].reshape(5, 7, 3), big[10:100].reshape(5, 6, 3), False
    bt = np.swapaxes(b, -1, -2) if trans_b else b
    got = _core.batched_product(a, bt, trans_b, out) if bt.flags.c_contiguous else None
    assert (got is not None) == takes
    if case == "out overlaps b":
        with raises(ValueError, "matmul", "overlaps an input"):
            ops.matmul(a, b, out=out)
        return
    expected = np.matmul(np.asarray(a, np.float64), np.asarray(b, np.float64))
    for result in ([got] if takes else []) + [ops.matmul(a, b, out=out)]:
        assert type(result) is np.ndarray and result.shape == expected.shape
        if out is not None:
            assert result is out
        np.testing.assert_allclose(result, expected, rtol=1e-5, atol=1e-5)


def test_matmul_out_and_bit_identical_threads(rng):
    a = rng.standard_normal((40, 20, 30)).astype(np.float32)  # small products: split over threads
    b = rng.standard_normal((30, 25)).astype(np.float32)
    big_a = rng.standard_normal((2, 300, 200)).astype(np.float32)  # large: one after another
    old = shenjing.get_num_threads()
    try:
        results = []
        for threads in (1, 2):
            shenjing.set_num_threads(threads)
            out = np.empty((40, 20, 25), np.float32)
            assert ops.matmul(a, b, out=out) is out
            results.append((out, ops.matmul(big_a, np.swapaxes(big_a, -1, -2))))
    finally:
        shenjing.set_num_threads(old)
    for x, y in zip(*results):
        np.testing.assert_array_equal(x, y)
    for i in range(40):  # each product of the batch is the 2-D GEMM's
        np.testing.assert_array_equal(results[0][0][i], ops.gemm(a[i], b))


def test_matmul_bad_input():
    with raises(ValueError, "matmul", "(3, 4)", "(5, 6)", "do not match"):
        ops.matmul(np.ones((3, 4)), np.ones((5, 6)))
    with raises(ValueError, "matmul", "(4,)", "(5, 6)", "do not match"):  # a vector and a matrix
        ops.matmul(np.ones(4, np.float32), np.ones((5, 6), np.float32))
    with raises(ValueError, "matmul", "(5, 6)", "(4,)", "do not match"):
        ops.matmul(np.ones((5, 6), np.float32), np.ones(4, np.float32))
    with raises(ValueError, "matmul", "(2, 3, 4)", "(3, 4, 5)", "broadcast"):
        ops.matmul(np.ones((2, 3, 4)), np.ones((3, 4, 5)))
    with raises(ValueError, "matmul", "at least one dimension"):
        ops.matmul(np.float32(2), np.ones(3))
    with raises(TypeError, "matmul", "b", "complex"):
        ops.matmul(np.ones((2, 2)), np.ones((2, 2), np.complex64))
    with raises(ValueError, "matmul", "out", "(2, 2)"):
        ops.matmul(np.ones((2, 3)), np.ones((3, 4)), out=np.empty((2, 2)))
    with raises(ValueError, "matmul", "cannot be made an array"):
        ops.matmul([[1, 2], [3]], np.ones((2, 2)))
    # _core itself refuses offsets outside the operands, instead of reading past them
    a, b, c = np.ones((2, 3, 4), np.float32), np.ones((4, 5), np.float32), np.empty((2, 3, 5), np.float32)
    with raises(ValueError, "matmul", "a_offsets", "outside"):
        shenjing.ops._core.gemm_batched(c, a, b, np.array([0, 13], np.int64), np.zeros(2, np.int64), 3, 5, 4, False, False)
    with raises(ValueError, "matmul", "b_offsets", "entries"):
        shenjing.ops._core.gemm_batched(c, a, b, np.array([0, 12], np.int64), np.zeros(3, np.int64), 3, 5, 4, False, False)


# --- a linear layer's forward and backward ---------------------------------------------

LINEAR_SIZES = [(64, 128, 64), (64, 10, 128), (1, 1, 1), (0, 3, 4), (3, 0, 4), (3, 4, 0), (37, 613, 151), (130, 7, 33)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("M,N,K", LINEAR_SIZES, ids=str)
def test_linear_and_its_backward_match_reference(backend, rng, M, N, K, dtype):
    x, w = rng.standard_normal((M, K)).astype(dtype), rng.standard_normal((N, K)).astype(dtype)
    b, g = rng.standard_normal(N).astype(dtype), rng.standard_normal((M, N)).astype(dtype)
    X, W, G = (v.astype(np.float64) for v in (x, w, g))
    tol = _tol(dtype, max(K, M, N))
    y = ops.linear(x, w, b)
    assert_close(y, X @ W.T + b, dtype, tol=tol, what="linear")
    assert_close(ops.linear(x, w), X @ W.T, dtype, tol=tol, what="linear")
    dx, dw, db = ops.linear_backward(g, x, w)
    assert_close(dx, G @ W, dtype, tol=tol, what="dx")
    assert_close(dw, G.T @ X, dtype, tol=tol, what="dw")
    assert_close(db, G.sum(0), dtype, tol=tol, what="db")
    none_x, only_w, none_b = ops.linear_backward(g, x, w, input_grad=False, bias_grad=False)
    assert none_x is None and none_b is None
    np.testing.assert_array_equal(only_w, dw)


def test_linear_converts_what_the_kernel_does_not_take(rng):
    x = rng.standard_normal((6, 5)).astype(np.float32)
    w = rng.standard_normal((4, 5)).astype(np.float32)
    g = rng.standard_normal((6, 4)).astype(np.float32)
    expected = x.astype(np.float64) @ w.T.astype(np.float64)
    assert_close(ops.linear(np.asfortranarray(x), w), expected, np.float32, what="Fortran-order x")
    assert_close(ops.linear(x.tolist(), w), expected, np.float64, tol=dict(rtol=1e-6, atol=1e-6),
                 what="a nested list: float64, as NumPy makes it")
    assert_close(ops.linear(x.astype(np.float64), w), expected, np.float64, tol=dict(rtol=1e-6, atol=1e-6),
                 what="mixed dtypes: x's")
    dx, dw, db = ops.linear_backward(g[::-1], x[::-1], w)  # reversed views: copied
    assert_close(dw, g.T.astype(np.float64) @ x, np.float32, what="dw")
    assert_close(dx, (g @ w.astype(np.float64))[::-1], np.float32, what="dx")
    assert_close(db, g.sum(0, dtype=np.float64), np.float32, what="db")


def test_linear_bad_input():
    x, w = np.zeros((3, 4), np.float32), np.zeros((2, 4), np.float32)
    with raises(ValueError, "linear", "(3, 4)", "(2, 5)"):
        ops.linear(x, np.zeros((2, 5), np.float32))
    with raises(ValueError, "linear", "bias", "(3,)", "(2,)"):
        ops.linear(x, w, np.zeros(3, np.float32))
    with raises(ValueError, "linear", "(4,)"):
        ops.linear(np.zeros(4, np.float32), w)
    with raises(TypeError, "linear", "x", "complex"):
        ops.linear(np.zeros((3, 4), np.complex64), w)
    with raises(ValueError, "linear_backward", "grad", "(3, 3)", "(3, 2)"):
        ops.linear_backward(np.zeros((3, 3), np.float32), x, w)
    with raises(ValueError, "linear_backward", "(3, 4)", "(2, 3)"):
        ops.linear_backward(np.zeros((3, 2), np.float32), x, np.zeros((2, 3), np.float32))
    with raises(TypeError, "linear_backward", "input_grad"):
        ops.linear_backward(np.zeros((3, 2), np.float32), x, w, input_grad="yes")


# --- reductions ------------------------------------------------------------------------

REDUCE_CASES = [((0,), None), ((7,), None), ((7,), 0), ((5, 33), 0), ((5, 33), 1), ((5, 33), -1),
                ((2, 3, 4, 5), 2), ((3, 40000), 1), ((40000, 3), 0), ((3, 0), 1), ((0, 3), 0), ((), None)]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("keepdims", [False, True])
@pytest.mark.parametrize("shape,axis", REDUCE_CASES, ids=str)
def test_sum_and_mean_match_reference(backend, rng, shape, axis, keepdims, dtype):
    x = rng.standard_normal(shape).astype(dtype)
    n = max(x.size, 1)
    tol = dict(rtol=1e-5, atol=1e-6 * np.sqrt(n)) if dtype == np.float32 else None
    assert_close(ops.sum(x, axis, keepdims), R.sum(x.astype(np.float64), axis, keepdims), dtype, tol=tol, what="sum")
    assert_close(ops.mean(x, axis, keepdims), R.mean(x.astype(np.float64), axis, keepdims), dtype, tol=tol, what="mean")


def test_sum_is_bit_identical_with_1_and_2_threads(rng):
    x = rng.standard_normal(1_000_003).astype(np.float32)
    old = shenjing.get_num_threads()
    try:
        shenjing.set_num_threads(1)
        one = (ops.sum(x), ops.sum_of_squares(x), ops.sum(x.reshape(1000003, 1), 0))
        shenjing.set_num_threads(2)
        two = (ops.sum(x), ops.sum_of_squares(x), ops.sum(x.reshape(1000003, 1), 0))
    finally:
        shenjing.set_num_threads(old)
    for u, v in zip(one, two):
        np.testing.assert_array_equal(u, v)
    assert ops.sum_of_squares(x) == pytest.approx(float(np.sum(x.astype(np.float64) ** 2)), rel=1e-6)

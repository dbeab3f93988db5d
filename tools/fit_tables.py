"""Fits the piecewise tables behind two AVX-512 kernels in cpp/include/shenjing/simd.h.

    python tools/fit_tables.py normal_tail > cpp/include/shenjing/normal_tail_table.h
    python tools/fit_tables.py tanh > cpp/include/shenjing/tanh_table.h
    python tools/fit_tables.py sigmoid > cpp/include/shenjing/sigmoid_table.h
    python tools/fit_tables.py normal_lower > cpp/include/shenjing/normal_lower_table.h

Each table approximates a smooth function of a >= 0 by 32 polynomials, one per
interval, and vpermt2ps picks each coefficient out of a 32-entry table by the interval's
five-bit index. Three ways to cut the intervals:

- octaves: a + 1 in [1, 16), eight intervals per octave, so the index is five bits of
  a + 1 read straight off its float bits (the two low exponent bits and the three high
  mantissa bits); the polynomial is in u = a - start, start read off a table too. Fine
  near 0 and coarse far out, for functions that flatten.
- halves: intervals of width 1/2 centred at k/2, k = 0 .. 31 (so a < 15.75), whose index
  k = round(2a) is the low bits of 2a + 1.5 * 2^23 as a float; the polynomial is in
  u = 2a - k in [-1/2, 1/2]. Even everywhere, for a function that keeps falling.
- eighths: the same with width 1/8 (k = round(8a), u = 8a - k, a < 3.9375), for one
  that falls like a Gaussian.

- normal_tail: R(a) = Phi(-a) exp(a^2/2) = erfc(a/sqrt2)/2 exp(a^2/2), smooth and falling
  slowly from 1/2; exact GELU's lower tail is exp(-a^2/2) R(a). Degree 4.
- tanh: T(a) = tanh(a)/a (1 at 0), so tanh(a) = a T(a) keeps its relative accuracy
  near 0. Degree 5 (degree 4 came to 3.1 ulp in a float32 emulation, against the
  test's 3.5).
- sigmoid: S(a) = sigmoid(-a) = 1 / (1 + e^a), from 1/2 down to 1.4e-7 at 15.75 and
  falling like e^-a, hence the halves. Degree 5; sigmoid(x) is S(|x|) for x < 0 and
  1 - S(|x|) for x >= 0.
- normal_lower: Phi(-a) itself, from 1/2 down to 4.1e-5 at 3.9375, so exact GELU needs
  no exp where |x| < 3.9375: x Phi(-|x|) for x < 0, x - x Phi(-|x|) above. Degree 5
  (degree 4 came to 3.5e-7). Quarters to 7.875 took degree 7 for 4.7e-7, Phi falling
  by e^2 across the far pieces, and ran 1.3x slower.

Each interval is fitted in float64 for least relative error (Lawson's reweighted least
squares on Chebyshev nodes), the coefficients are rounded to float32, and the header
states the largest relative error of the float32 Horner evaluation on a dense grid.
Uses only NumPy and math.
"""

from __future__ import annotations

import math
import sys

import numpy as np


def normal_tail_ratio(a: np.ndarray) -> np.ndarray:
    """R(a) = Phi(-a) exp(a^2/2), in float64."""
    erfc = np.vectorize(math.erfc)
    return 0.5 * erfc(a / math.sqrt(2.0)) * np.exp(0.5 * a * a)


def tanh_ratio(a: np.ndarray) -> np.ndarray:
    """T(a) = tanh(a) / a, 1 at 0, in float64."""
    a = np.asarray(a, np.float64)
    out = np.ones_like(a)
    nonzero = a != 0
    out[nonzero] = np.tanh(a[nonzero]) / a[nonzero]
    return out


def sigmoid_of_negative(a: np.ndarray) -> np.ndarray:
    """S(a) = sigmoid(-a) = 1 / (1 + e^a), in float64."""
    return 1.0 / (1.0 + np.exp(np.asarray(a, np.float64)))


def normal_lower(a: np.ndarray) -> np.ndarray:
    """Phi(-a) = erfc(a/sqrt2)/2, in float64."""
    erfc = np.vectorize(math.erfc)
    return 0.5 * erfc(np.asarray(a, np.float64) / math.sqrt(2.0))


# name -> (function, degree, C++ prefix, what it is, intervals)
TABLES = {
    "normal_tail": (normal_tail_ratio, 4, "kNormalTail", "R(a) = Phi(-a) exp(a^2/2)", "octaves"),
    "tanh": (tanh_ratio, 5, "kTanhRatio", "T(a) = tanh(a) / a", "octaves"),
    "sigmoid": (sigmoid_of_negative, 5, "kSigmoidNegative", "S(a) = sigmoid(-a)", "halves"),
    "normal_lower": (normal_lower, 5, "kNormalLower", "Phi(-a)", "eighths"),
}
PIECES_PER_UNIT = {"halves": 2, "eighths": 8}
MANTISSA_BITS = 3  # 8 intervals per octave of a + 1, 4 octaves: 32 table entries


def intervals():
    """(table index, lower end, width) of each interval of a."""
    for octave in range(4):
        for m in range(1 << MANTISSA_BITS):
            index = (((127 + octave) & 3) << MANTISSA_BITS) | m  # bits 20..24 of float(a + 1)
            width = 2.0**octave / (1 << MANTISSA_BITS)
            yield index, 2.0**octave * (1 + m / (1 << MANTISSA_BITS)) - 1.0, width


def fit_interval(h, degree: int, lo: float, hi: float) -> np.ndarray:
    """The coefficients of the polynomial in v closest to h(v) in relative error on [lo, hi]."""
    nodes = 400
    v = lo + (1 - np.cos((np.arange(nodes) + 0.5) * np.pi / nodes)) / 2 * (hi - lo)
    scaled = np.vander(v, degree + 1, increasing=True) / h(v)[:, None]
    weights = np.full(nodes, 1.0 / nodes)
    for _ in range(40):  # Lawson: weight the nodes by their error, towards equal ripple
        root = np.sqrt(weights)
        coef = np.linalg.lstsq(scaled * root[:, None], root, rcond=None)[0]
        error = np.abs(scaled @ coef - 1.0)
        weights = weights * error
        weights /= weights.sum()
    return coef.astype(np.float32)


def horner_float32(coef: np.ndarray, u: np.ndarray) -> np.ndarray:
    p = np.full_like(u, coef[-1])
    for c in coef[-2::-1]:
        p = (p * u + c).astype(np.float32)
    return p


def fit_octaves(f, degree: int):
    """Row 0: each interval's lower end; rows 1..: its coefficients in u = a - start."""
    table = np.zeros((degree + 2, 32), dtype=np.float32)
    worst = 0.0
    for index, lo, width in intervals():
        coef = fit_interval(lambda u: f(lo + u), degree, 0.0, width)
        table[0, index] = lo
        table[1:, index] = coef
        a = (np.float32(lo) + np.linspace(0, width, 20001).astype(np.float32)).astype(np.float32)
        a = a[a < np.float32(lo + width)]
        got = horner_float32(coef, (a - np.float32(lo)).astype(np.float32)).astype(np.float64)
        worst = max(worst, float(np.max(np.abs(got / f(a.astype(np.float64)) - 1.0))))
    return table, worst


def fit_even(f, degree: int, per: int):
    """Column k: the coefficients of interval k in u = per a - k (exact in float32, as the FMA
    gives it, per being a power of two)."""
    table = np.zeros((degree + 1, 32), dtype=np.float32)
    worst = 0.0
    for k in range(32):
        coef = fit_interval(lambda u: f((k + u) / per), degree, -0.5, 0.5)
        table[:, k] = coef
        a = np.linspace(max(0.0, (k - 0.5) / per), (k + 0.5) / per, 20001).astype(np.float32)
        a = a[np.rint(per * a.astype(np.float64)) == k]  # round half to even, as the magic add does
        got = horner_float32(coef, (per * a.astype(np.float64) - k).astype(np.float32)).astype(np.float64)
        worst = max(worst, float(np.max(np.abs(got / f(a.astype(np.float64)) - 1.0))))
    return table, worst


def main(name: str) -> None:
    f, degree, prefix, what, cut = TABLES[name]
    if cut == "octaves":
        table, worst = fit_octaves(f, degree)
        header = HEADER
    else:
        per = PIECES_PER_UNIT[cut]
        table, worst = fit_even(f, degree, per)
        header = HEADER_EVEN.replace("{per}", str(per)).replace("{bound}", f"{31.5 / per:g}")
    print(header.format(name=name, what=what, degree=degree, terms=horner_text(degree), error=worst))
    print("namespace shenjing {")
    names = ([f"{prefix}Start"] if cut == "octaves" else []) + [f"{prefix}C{i}" for i in range(degree + 1)]
    for table_name, row in zip(names, table):
        values = [f"{np.format_float_positional(v, unique=True, trim='0')}f" for v in row]
        lines = [", ".join(values[i:i + 6]) for i in range(0, 32, 6)]
        print(f"alignas(64) static const float {table_name}[32] = {{\n    " + ",\n    ".join(lines) + "};")
    print("}  // namespace shenjing")


def horner_text(degree: int) -> str:
    text = f"c{degree}"
    for i in range(degree - 1, -1, -1):
        text = f"c{i} + u ({text})" if i < degree - 1 else f"c{i} + u {text}"
    return text


HEADER = """// Generated by tools/fit_tables.py {name}: do not edit by hand.
// {what} on 32 intervals of a + 1 in [1, 16), indexed by bits 20..24 of float(a + 1):
// value(start + u) = {terms} (degree {degree}).
// Largest relative error of the float32 evaluation: {error:.3g}.
#pragma once"""

HEADER_EVEN = """// Generated by tools/fit_tables.py {name}: do not edit by hand.
// {what} on 32 intervals of width 1/{per} centred at k/{per} (a < {bound}), indexed by k = round({per}a):
// value(a) = {terms} (degree {degree}) in u = {per}a - k.
// Largest relative error of the float32 evaluation: {error:.3g}.
#pragma once"""


if __name__ == "__main__":
    if len(sys.argv) != 2 or sys.argv[1] not in TABLES:
        sys.exit(f"usage: python tools/fit_tables.py {{{'|'.join(TABLES)}}}")
    main(sys.argv[1])

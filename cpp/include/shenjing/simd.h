// Portable SIMD for the per-instruction-set kernel files.
//
// Each kernel family (activations.cpp, losses.cpp, ...) is compiled once per
// instruction set with SJ_ISA set to the namespace name (generic, avx2,
// avx512) and SJ_VECTOR_BYTES to the register width (16, 32, 64). Kernels are
// written once against `Simd<T>::V`: for float it is a GCC vector of
// SJ_VECTOR_BYTES bytes (the compiler emits SSE2, AVX2 or AVX-512 code from
// it), for double it is plain `double` and the math goes through libm, so the
// float64 kernels are reference-accurate.
//
// Everything here lives in the instruction-set namespace, so no inline
// function compiled with -mavx512f can be merged by the linker into code
// that runs on a CPU without it.
#pragma once

#include <cstdint>
#include <cstring>
#include <cmath>
#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#endif

#include "shenjing/normal_lower_table.h"
#include "shenjing/normal_tail_table.h"
#include "shenjing/sigmoid_table.h"
#include "shenjing/tanh_table.h"

#ifndef SJ_ISA
#error "simd.h is only for the kernel files compiled once per instruction set"
#endif

namespace shenjing {
namespace SJ_ISA {

typedef float vfloat __attribute__((vector_size(SJ_VECTOR_BYTES)));
typedef int32_t vint __attribute__((vector_size(SJ_VECTOR_BYTES)));
constexpr int64_t kFloatLanes = SJ_VECTOR_BYTES / 4;

template <class T> struct Simd;
template <> struct Simd<float> {
  using V = vfloat;
  static constexpr int64_t lanes = kFloatLanes;
};
template <> struct Simd<double> {
  using V = double;
  static constexpr int64_t lanes = 1;
};

#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
// --- lane masks (AVX-512, 16 float lanes) ------------------------------------
// lanes [a, b) of 16; either end may lie outside, an empty range is 0
static inline __mmask16 lanes_between(int64_t a, int64_t b) {
  a = a < 0 ? 0 : (a > 16 ? 16 : a);
  b = b < 0 ? 0 : (b > 16 ? 16 : b);
  return __mmask16(a >= b ? 0u : (((1u << b) - 1u) & ~((1u << a) - 1u)));
}
// the first n lanes (n may be <= 0 or >= 16)
static inline __mmask16 lanes_below(int64_t n) { return lanes_between(0, n); }
#endif

// --- load / store / broadcast ----------------------------------------------
static inline vfloat vload(const float* p) { vfloat v; std::memcpy(&v, p, sizeof v); return v; }
static inline void vstore(float* p, vfloat v) { std::memcpy(p, &v, sizeof v); }
// one broadcast (vfloat{} + s would add 0.0f first, which the compiler must
// keep: -0.0f + 0.0f is +0.0f)
static inline vfloat vsplat(float s) {
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
  return _mm512_set1_ps(s);
#elif defined(__AVX__) && SJ_VECTOR_BYTES == 32
  return _mm256_set1_ps(s);
#elif defined(__SSE2__) && SJ_VECTOR_BYTES == 16
  return _mm_set1_ps(s);
#else
  vfloat v;
  for (int64_t i = 0; i < kFloatLanes; ++i) v[i] = s;
  return v;
#endif
}
static inline double vload(const double* p) { return *p; }
static inline void vstore(double* p, double v) { *p = v; }
static inline double vsplat(double s) { return s; }

// The last, partial vector of a row (0 < n < lanes): lanes past n hold
// `fill` on load and are not written on store. Masked loads and stores where
// the instruction set has them (no memory past n is touched), memcpy else.
static inline vfloat vload_partial(const float* p, int64_t n, float fill) {
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
  return _mm512_mask_loadu_ps(vsplat(fill), lanes_below(n), p);
#else
  vfloat v = vsplat(fill);
  std::memcpy(&v, p, sizeof(float) * n);
  return v;
#endif
}
static inline void vstore_partial(float* p, vfloat v, int64_t n) {
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
  _mm512_mask_storeu_ps(p, lanes_below(n), v);
#else
  std::memcpy(p, &v, sizeof(float) * n);
#endif
}
static inline double vload_partial(const double* p, int64_t, double) { return *p; }
// the first `lanes` values at p (a whole vector when lanes is the width), 0 past them
template <class T> static inline typename Simd<T>::V vload_lanes(const T* p, int64_t lanes) {
  return lanes == Simd<T>::lanes ? vload(p) : vload_partial(p, lanes, T(0));
}
static inline void vstore_partial(double* p, double v, int64_t) { *p = v; }

// --- horizontal reductions ----------------------------------------------------
static inline float hsum(vfloat v) {
  float s = 0.f;
  for (int64_t i = 0; i < kFloatLanes; ++i) s += v[i];
  return s;
}
static inline double hsum(double v) { return v; }
static inline float hmax(vfloat v) {
  float m = v[0];
  for (int64_t i = 1; i < kFloatLanes; ++i) m = (v[i] > m || v[i] != v[i]) ? v[i] : m;
  return m;
}
static inline double hmax(double v) { return v; }

// A running sum of many terms in T, kept in runs: each lane sums kRun terms on
// their own, then the run joins the total. The rounding error then grows with
// kRun + terms / kRun instead of with the number of terms (a float softmax over
// 40000-long rows had its sum 1.3e-5 off, five times its tolerance).
template <class V> struct RunningSum {
  static constexpr int kRun = 64;
  V total = V(), run = V();
  int count = 0;
  void add(V v) {
    run += v;
    if (++count == kRun) total += run, run = V(), count = 0;
  }
  V value() const { return total + run; }
};
static inline float lane(vfloat v, int64_t k) { return v[k]; }
static inline double lane(double v, int64_t) { return v; }
// v with d taken from lane k
static inline vfloat vsub_lane(vfloat v, int64_t k, float d) { v[k] -= d; return v; }
static inline double vsub_lane(double v, int64_t, double d) { return v - d; }

// --- bit-level helpers ---------------------------------------------------------
static inline vfloat vabs(vfloat x) { return (vfloat)((vint)x & 0x7fffffff); }
static inline double vabs(double x) { return std::fabs(x); }
// copysign(magnitude, sign_of): magnitude must be >= 0.
static inline vfloat vcopysign(vfloat mag, vfloat sign_of) {
  return (vfloat)(((vint)mag) | ((vint)sign_of & (int32_t)0x80000000u));
}
static inline double vcopysign(double mag, double sign_of) { return std::copysign(mag, sign_of); }
// max that propagates NaN from either side, as torch.maximum does
static inline vfloat vmax_nan(vfloat a, vfloat b) { return (a > b || a != a) ? a : b; }
static inline double vmax_nan(double a, double b) { return (a > b || a != a) ? a : b; }
static inline vfloat vsqrt(vfloat x) {
  // The loop is turned into vsqrtps by the compiler: -fno-math-errno is set.
  vfloat r;
  for (int64_t i = 0; i < kFloatLanes; ++i) r[i] = __builtin_sqrtf(x[i]);
  return r;
}
static inline double vsqrt(double x) { return std::sqrt(x); }

// --- min / max as the instructions do them, and the clamps built on them ---------
// vminps / vmaxps: a < b ? a : b and a > b ? a : b, the second operand when unordered.
// The compiler emits a compare and a blend for such a ternary, since it may not swap
// the operands itself (that would change which NaN or signed zero comes back).
static inline vfloat vmin_op(vfloat a, vfloat b) {
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
  return _mm512_min_ps(a, b);
#elif defined(__AVX__) && SJ_VECTOR_BYTES == 32
  return _mm256_min_ps(a, b);
#elif defined(__SSE2__) && SJ_VECTOR_BYTES == 16
  return _mm_min_ps(a, b);
#else
  return a < b ? a : b;
#endif
}
static inline vfloat vmax_op(vfloat a, vfloat b) {
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
  return _mm512_max_ps(a, b);
#elif defined(__AVX__) && SJ_VECTOR_BYTES == 32
  return _mm256_max_ps(a, b);
#elif defined(__SSE2__) && SJ_VECTOR_BYTES == 16
  return _mm_max_ps(a, b);
#else
  return a > b ? a : b;
#endif
}
static inline double vmin_op(double a, double b) { return a < b ? a : b; }
static inline double vmax_op(double a, double b) { return a > b ? a : b; }

// x > c ? c : x and x < c ? c : x, a NaN x kept (it is the second operand)
template <class V, class T> static inline V vclamp_above(V x, T c) { return vmin_op(vsplat(c), x); }
template <class V, class T> static inline V vclamp_below(V x, T c) { return vmax_op(vsplat(c), x); }
// max(a, b) for a maximum that only shifts exp's argument (softmax, log-sum-exp):
// a NaN may be kept or dropped, since a NaN input comes back through exp(x - max)
// itself. One vmaxps where vmax_nan takes two compares and a blend.
template <class V> static inline V vmax_shift(V a, V b) { return vmax_op(a, b); }

// --- reciprocal -----------------------------------------------------------------
// 1/d. AVX-512: rcp14 (14 bits) and one Newton step (~28 bits, below float's
// rounding); elsewhere a division. d must be finite and non-zero.
static inline vfloat vrecip(vfloat d) {
#if defined(__AVX512F__)
  vfloat r = _mm512_rcp14_ps(d);
  return r + r * (1.0f - d * r);
#else
  return 1.0f / d;
#endif
}
static inline double vrecip(double d) { return 1.0 / d; }

// --- exp -----------------------------------------------------------------------
// Cephes expf: x = n ln2 + r with |r| <= ln2/2 (ln2 split in two so n*C1 is
// exact), e^r by a degree-6 polynomial, then e^r 2^n. exp(x + lo) takes lo
// (|lo| < 2) into the reduced argument r = (x - n C1) - n C2 + lo, so it keeps
// the bits that rounding x + lo would lose (used for exp(-x^2/2)). Measured over [-104, 88.7]: 0.88 ulp,
// 1.14 in the generic build, which has no FMA (tests/test_vector_math.py).
// round(v log2(e)) for |v| < 2^21, as a float: adding 1.5 * 2^23 in the FMA leaves the
// nearest integer in the low bits (two instructions where vrndscaleps takes three uops)
static inline vfloat vround_log2e(vfloat v) {
  const float round_magic = 12582912.0f;
  return (v * 1.44269504088896341f + round_magic) - round_magic;
}
// v - n ln2 with ln2 in two parts (Cody and Waite): n 0.693359375 is exact for the n here,
// so the reduced argument keeps v's bits (exp's 0.88 ulp)
static inline vfloat vreduce_ln2(vfloat v, vfloat n) {
  const vfloat r = v - n * 0.693359375f;
  return r - n * -2.12194440e-4f;
}
// the same with ln2 in one float, off by |n| 1.9e-9: one FMA, for the GELUs, whose own
// arguments round coarser than that
static inline vfloat vreduce_ln2_short(vfloat v, vfloat n) { return v - n * 0.693147180559945f; }
// p(r) with e^r = 1 + r + r^2 p(r) on |r| <= ln2/2: degree 4, fitted for least relative
// error of e^r (Lawson's reweighted least squares, coefficients rounded to float32). In a
// float32 emulation of vexp over [-104, 88.7] it gives 0.88 ulp, and Cephes expf's degree-5
// p (one FMA more in every exp) 0.86.
static inline vfloat vexp_poly(vfloat r) {
  vfloat p = vsplat(0.0013814569f);
  p = p * r + 0.008368731f;
  p = p * r + 0.04166839f;
  p = p * r + 0.16666521f;
  return p * r + 0.49999994f;
}
// e^r = 1 + r + r^2 p(r) as one Horner chain of six FMAs (one instruction fewer than
// p(r) r^2 + r + 1, the same error)
static inline vfloat vexp_reduced(vfloat r) { return (vexp_poly(r) * r + 1.0f) * r + 1.0f; }
// The same with p one degree lower, fitted the same way: 1.05e-7 relative error of e^r (2.1 ulp
// in a float32 emulation), for tanh GELU's sigmoid, whose own argument rounds coarser
static inline vfloat vexp_reduced_short(vfloat r) {
  vfloat p = vsplat(0.008312522f);
  p = p * r + 0.04189016f;
  p = p * r + 0.16667114f;
  p = p * r + 0.4999923f;
  return (p * r + 1.0f) * r + 1.0f;
}
// Clamping keeps inf - inf out of the reduction (NaN compares false and stays
// NaN); kUpper = false skips the upper clamp for arguments known to be <= 0.
template <bool kWithLo, bool kUpper = true> static inline vfloat vexp_impl(vfloat x, vfloat lo) {
  if (kUpper) x = vclamp_above(x, 88.8f);
  x = vclamp_below(x, -104.0f);
  const vfloat arg = kWithLo ? x + lo : x;
#if defined(__AVX512F__)
  // vscalefps multiplies by 2^n with one rounding, overflow to inf and
  // gradual underflow included
  vfloat n = vround_log2e(arg);
  vfloat r = vreduce_ln2(x, n);
  if (kWithLo) r = r + lo;
  return _mm512_scalef_ps(vexp_reduced(r), n);
#else
  const float round_magic = 12582912.0f;  // 1.5 * 2^23: adding it rounds to an integer
  vfloat t = arg * 1.44269504088896341f + round_magic;
  vfloat n = t - round_magic;
  vint ni = (vint)t - (vint)vsplat(round_magic);
  vfloat r = vreduce_ln2(x, n);
  if (kWithLo) r = r + lo;
  // 2^n built in the exponent bits in two halves, so n in [-152, 131]
  // gives gradual underflow and overflow to inf
  vint n1 = ni >> 1;
  vint n2 = ni - n1;
  vfloat s1 = (vfloat)((n1 + 127) << 23);
  vfloat s2 = (vfloat)((n2 + 127) << 23);
  return vexp_reduced(r) * s1 * s2;
#endif
}
static inline vfloat vexp(vfloat x, vfloat lo) { return vexp_impl<true>(x, lo); }
static inline vfloat vexp(vfloat x) { return vexp_impl<false>(x, x); }
// exp(x), and 0 below -87.33, where exp(x) would be subnormal (from 1.18e-38): each
// instruction that makes or reads a subnormal takes a microcode assist, so a softmax over a
// row half masked with -1e4 or -inf (attention) ran 6.5x as long as over the plain row, its
// log_softmax backward 7x, and over logits of 40 N(0, 1) 16x; a sum of exps, a probability
// or a gradient loses nothing that float32 keeps beside its other terms. AVX-512: a
// zero-masked vscalefps, so those lanes need no clamp either; elsewhere the argument is
// clamped and the lane set to 0. kUpper = false for arguments known to be <= 0 (or NaN).
constexpr float kExpNormalFloor = -87.33f;  // exp of it: 1.1806e-38, above FLT_MIN by 0.4%
template <bool kUpper = true> static inline vfloat vexp_flushed(vfloat x) {
#if defined(__AVX512F__)
  if (kUpper) x = vclamp_above(x, 88.8f);
  const __mmask16 normal = _mm512_cmp_ps_mask(x, vsplat(kExpNormalFloor), _CMP_NLT_UQ);  // NaN: kept
  const vfloat n = vround_log2e(x);
  return _mm512_maskz_scalef_ps(normal, vexp_reduced(vreduce_ln2(x, n)), n);
#else
  const vfloat e = vexp_impl<false, kUpper>(vclamp_below(x, kExpNormalFloor), x);
  return x < kExpNormalFloor ? vsplat(0.0f) : e;  // NaN compares false: e, NaN
#endif
}
static inline vfloat vexp_nonpositive(vfloat x) { return vexp_flushed<false>(x); }
static inline double vexp_flushed(double x) { return std::exp(x); }
static inline double vexp(double x) { return std::exp(x); }
static inline double vexp_nonpositive(double x) { return std::exp(x); }

// exp(p[i] - shift) in the first n lanes (0 < n < lanes), 0 in the rest: the tail
// of a row. The rest are loaded as `shift` (exp(0)) and dropped after, because a
// -inf fill would underflow exp to a subnormal, and each instruction producing one
// costs a microcode assist (a 10-class cross-entropy row took 3x as long as a 16-class one).
static inline vfloat vexp_partial(const float* p, int64_t n, float shift) {
  const vfloat e = vexp_nonpositive(vload_partial(p, n, shift) - shift);
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
  return _mm512_maskz_mov_ps(lanes_below(n), e);
#else
  vfloat r = e;
  for (int64_t i = n; i < kFloatLanes; ++i) r[i] = 0.0f;
  return r;
#endif
}
static inline double vexp_partial(const double* p, int64_t, double shift) { return std::exp(*p - shift); }

// --- log -----------------------------------------------------------------------
// Cephes logf: x = m 2^e with m in [sqrt(1/2), sqrt(2)), log(m) by a degree-9
// polynomial in m-1. Subnormals are scaled by 2^23 first. log(0) = -inf,
// log(x<0) = NaN, log(inf) = inf, NaN stays NaN.
static inline vfloat vlog(vfloat x) {
  vint subnormal = x < 1.17549435e-38f;
  vfloat xs = subnormal ? x * 8388608.0f : x;
  vint bits = (vint)xs;
  vint e = ((bits >> 23) & 0xff) - 126;
  e = subnormal ? e - 23 : e;
  vfloat m = (vfloat)((bits & 0x007fffff) | 0x3f000000);  // [0.5, 1)
  vfloat ef = __builtin_convertvector(e, vfloat);
  vint small = m < 0.707106781186547524f;
  ef = small ? ef - 1.0f : ef;
  m = small ? m + m - 1.0f : m - 1.0f;
  vfloat z = m * m;
  vfloat y = vsplat(7.0376836292e-2f);
  y = y * m - 1.1514610310e-1f;
  y = y * m + 1.1676998740e-1f;
  y = y * m - 1.2420140846e-1f;
  y = y * m + 1.4249322787e-1f;
  y = y * m - 1.6668057665e-1f;
  y = y * m + 2.0000714765e-1f;
  y = y * m - 2.4999993993e-1f;
  y = y * m + 3.3333331174e-1f;
  y = y * m * z;
  y = y + ef * -2.12194440e-4f;
  y = y - 0.5f * z;
  vfloat r = m + y;
  r = r + ef * 0.693359375f;
  r = x < 0.0f ? vsplat(__builtin_nanf("")) : r;
  r = x == 0.0f ? vsplat(-__builtin_inff()) : r;
  r = x == __builtin_inff() ? x : r;
  r = x != x ? x : r;
  return r;
}
static inline double vlog(double x) { return std::log(x); }

// log(1 + u) for u >= -1, accurate for tiny u: log(w) * u / (w - 1) with
// w = 1 + u corrects the rounding of w (Goldberg's trick).
static inline vfloat vlog1p(vfloat u) {
  vfloat w = u + 1.0f;
  vfloat d = w - 1.0f;
  vfloat r = vlog(w) * (u / d);
  r = d == 0.0f ? u : r;
  r = u == __builtin_inff() ? u : r;
  return r;
}
static inline double vlog1p(double u) { return std::log1p(u); }

// --- sigmoid and tanh ---------------------------------------------------------
// sigmoid through e = exp(-|x|) <= 1: 1/(1+e) for x >= 0, e/(1+e) for x < 0,
// so tiny results for very negative x keep their relative accuracy (down to x = -87.33,
// below which e, and the result, is 0: see vexp_flushed).
static inline vfloat vsigmoid(vfloat x) {
  vfloat e = vexp_nonpositive(-vabs(x));
  vfloat s = vrecip(e + 1.0f);  // 1 + e in (1, 2]
  return x >= 0.0f ? s : e * s;
}
static inline double vsigmoid(double x) {
  double e = std::exp(-std::fabs(x));
  double s = 1.0 / (1.0 + e);
  return x >= 0.0 ? s : e * s;
}

// expm1(y) for -20 <= y <= 0 (or NaN): with y = n ln2 + r,
// expm1(y) = 2^n (r + r^2 p(r)) + (2^n - 1), where 2^n - 1 is exact, so small
// |y| keeps its relative accuracy (exp(y) - 1 would cancel).
static inline vfloat vexpm1_nonpositive(vfloat y) {
  const vfloat n = vround_log2e(y);
  const vfloat r = vreduce_ln2(y, n);
  const vfloat q = vexp_poly(r) * (r * r) + r;                         // e^r - 1
  const vfloat scale = (vfloat)((__builtin_convertvector(n, vint) + 127) << 23);  // 2^n, n in [-29, 0]
  return scale * q + (scale - 1.0f);
}

#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
// table[index & 31] in each lane: one vpermt2ps from the table's two registers
static inline vfloat vtable32(const float* table, __m512i index) {
  return _mm512_permutex2var_ps(_mm512_load_ps(table), index, _mm512_load_ps(table + 16));
}
// c0 + u (c1 + u (... + u cN)) by Horner, each coefficient read off its table at index;
// the tables come highest first: vtable_horner(index, u, cN, ..., c1, c0)
template <class... Lower>
static inline vfloat vtable_horner(__m512i index, vfloat u, const float* highest, Lower... lower) {
  vfloat p = vtable32(highest, index);
  ((p = p * u + vtable32(lower, index)), ...);
  return p;
}

// sigmoid(x) for |x| < 15.75 (kSigmoidTableBound): S(a) for x < 0 and 1 - S(a) for
// x >= 0, a = |x|, with S(a) = sigmoid(-a) read off 32 fitted degree-5 pieces of width 1/2
// (sigmoid_table.h, tools/fit_tables.py; relative error 1.4e-7), so tiny results keep their
// relative accuracy. About 17 instructions a vector where the exp form above takes 23,
// with a slower reciprocal among them. Past the bound the index wraps: the caller checks
// (map_unary_two_forms) and takes vsigmoid there.
// a's piece of a table cut in even pieces of width 1/kPer centred at k/kPer (the halves and
// eighths of tools/fit_tables.py): k = round(kPer a) in the low bits of a magic add's float
// (vpermt2ps reads its low five), and u = kPer a - k, exact, in [-1/2, 1/2]
struct EvenPiece {
  __m512i index;
  vfloat u;
};
template <int kPer> static inline EvenPiece veven_piece(vfloat a) {
  const float round_magic = 12582912.0f;  // 1.5 * 2^23: its low mantissa bits get round(kPer a)
  const vfloat t = a * float(kPer) + round_magic;
  return {_mm512_castps_si512(t), a * float(kPer) - (t - round_magic)};
}

constexpr bool kHasSigmoidTable = true;
constexpr float kSigmoidTableBound = 15.75f;
static inline vfloat vsigmoid_table(vfloat x) {
  const EvenPiece piece = veven_piece<2>(vabs(x));
  const vfloat p = vtable_horner(piece.index, piece.u, kSigmoidNegativeC5, kSigmoidNegativeC4, kSigmoidNegativeC3,
                                 kSigmoidNegativeC2, kSigmoidNegativeC1, kSigmoidNegativeC0);
  return _mm512_mask_sub_ps(p, _mm512_cmp_ps_mask(x, vsplat(0.0f), _CMP_GE_OQ), vsplat(1.0f), p);
}

// tanh(a) = a T(a), a = |x|, with T = tanh(a)/a read off 32 fitted degree-5 pieces
// (tanh_table.h, tools/fit_tables.py; relative error 1.2e-7), so tanh keeps its
// relative accuracy near 0; the sign comes back by one bit select (vpternlogd:
// sign ? x : t). About 19 instructions a vector where the expm1 form below takes 26.
// a is clamped at 9.02, from where tanh rounds to 1.0f. Measured: max 2.4 ulp
// (tests/test_vector_math.py).
static inline vfloat vtanh(vfloat x) {
  const vfloat a = vclamp_above(vabs(x), 9.02f);  // NaN stays NaN
  const __m512i index = _mm512_srli_epi32(_mm512_castps_si512(a + 1.0f), 20);
  const vfloat u = a - vtable32(kTanhRatioStart, index);
  const vfloat p =
      vtable_horner(index, u, kTanhRatioC5, kTanhRatioC4, kTanhRatioC3, kTanhRatioC2, kTanhRatioC1, kTanhRatioC0);
  const __m512i t = _mm512_castps_si512(a * p);
  return _mm512_castsi512_ps(_mm512_ternarylogic_epi32(t, _mm512_castps_si512(x), _mm512_set1_epi32(INT32_MIN), 0xD8));
}
#else
// no table here: the kernels test kHasSigmoidTable and never take the table form, but
// their discarded branches still name it
constexpr bool kHasSigmoidTable = false;
constexpr float kSigmoidTableBound = 0.0f;
static inline vfloat vsigmoid_table(vfloat x) { return vsigmoid(x); }

// tanh(|x|) = -e / (2 + e) with e = expm1(-2|x|): one path, accurate near 0
// and saturating to 1 (|x| is clamped at 10, where tanh is 1.0f). Measured:
// max 3.0 ulp (tests/test_vector_math.py).
static inline vfloat vtanh(vfloat x) {
  vfloat ax = vabs(x);
  ax = vclamp_above(ax, 10.0f);  // NaN stays NaN
  const vfloat e = vexpm1_nonpositive(-2.0f * ax);
  return vcopysign(-e * vrecip(2.0f + e), x);
}
#endif
static inline double vtanh(double x) { return std::tanh(x); }

// --- the normal distribution, for exact GELU -----------------------------------
// Past |x| = 12.9, Phi(-|x|) < 2.3e-38 and phi(x) < 3e-37 lie at or near float's
// subnormals, and each instruction that makes or reads one takes a microcode assist:
// exact GELU of 8 N(0, 1), 5% of it past 12.9, took 12x the time of N(0, 1) on
// AVX-512 and 5x on AVX2 (backward alike). There both are 0, so GELU is x above and
// -0 below (|gelu| < 3e-37 there), and its derivative 1 or 0 (|error| < 4e-36).
constexpr float kNormalFlushAbove = 12.9f;
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
// Phi(-a) = exp(-a^2/2) R(a), a = |x|, with R read off 32 fitted degree-4 pieces
// (normal_tail_table.h, tools/fit_tables.py; relative error 1.3e-7), so
// the tail keeps its relative accuracy in about 36 instructions a vector of
// GELU where the Chebyshev erfc below takes 54 (a reciprocal, a degree-9
// polynomial, a split square and clamped exp): exact GELU measured 0.66x the
// time in cache and 0.71x on 16M floats (bench/ab.py, 2 threads), and its
// error fell from 7.1 to 3.7 ulp (tests/test_vector_math.py).

// a = |x| clamped at kNormalFlushAbove, and the lanes whose Phi(-a) and phi(a) are kept
// (|x| below it, or NaN); the rest are 0
struct NormalArgument {
  vfloat a;
  __mmask16 kept;
};
static inline NormalArgument vnormal_argument(vfloat x) {
  const vfloat ax = vabs(x);
  return {vclamp_above(ax, kNormalFlushAbove), _mm512_cmp_ps_mask(ax, vsplat(kNormalFlushAbove), _CMP_NGE_UQ)};
}
// exp(-a^2/2) as mantissa * 2^exponent, taken apart so the caller can multiply
// the mantissa first and round once through vscalefps. a^2 = hi + lo exactly
// (-a/2 and the FMA are exact), and lo goes into the reduced argument. a <= 12.9,
// so no clamp (the exponent n >= -121). One FMA
// reduces hi (n ln2 off by |n| 1.9e-9): 3.6 ulp for x >= -5 and 3.7e-7 relative
// below, where ln2 in two parts gave 3.5 and 2.5e-7 (tests/test_vector_math.py);
// bench/ab.py, 16M floats, 2 threads: exact GELU 0.95x, its backward 0.97x.
struct ScaledExp { vfloat mantissa, exponent; };
static inline ScaledExp vexp_neg_half_square_parts(vfloat a) {
  const vfloat h = a * -0.5f;
  const vfloat hi = h * a;
  const vfloat lo = _mm512_fmsub_ps(h, a, hi);
  const vfloat n = vround_log2e(hi);
  return {vexp_reduced(vreduce_ln2_short(hi, n) + lo), n};
}
// factor exp(-a^2/2), 0 in the lanes not kept
static inline vfloat vscaled(ScaledExp e, vfloat factor, __mmask16 kept) {
  return _mm512_maskz_scalef_ps(kept, e.mantissa * factor, e.exponent);
}
// R(a) for 0 <= a < 15
static inline vfloat vnormal_tail_ratio(vfloat a) {
  const __m512i index = _mm512_srli_epi32(_mm512_castps_si512(a + 1.0f), 20);
  const vfloat u = a - vtable32(kNormalTailStart, index);
  return vtable_horner(index, u, kNormalTailC4, kNormalTailC3, kNormalTailC2, kNormalTailC1, kNormalTailC0);
}
// Phi(-|x|)
static inline vfloat vnormal_lower_tail(vfloat x) {
  const NormalArgument arg = vnormal_argument(x);
  return vscaled(vexp_neg_half_square_parts(arg.a), vnormal_tail_ratio(arg.a), arg.kept);
}
// exact GELU for |x| < 3.9375 (kGeluTableBound): x S for x <= 0 and x - x S above, with
// S = Phi(-|x|) read off 32 fitted degree-5 pieces of width 1/8 (normal_lower_table.h,
// tools/fit_tables.py; relative error 1.2e-7), so no exp: about 18 instructions a vector
// where x vnormal_cdf(x) takes 34, and 1.9 ulp where that gave 3.6. bench/ab.py, 16M
// floats, 2 threads: 0.65x on N(0, 1), 1.02-1.04x on 3 N(0, 1), whose blocks pass the
// bound too seldom. Past the bound the index wraps: the caller checks
// (map_unary_two_forms) and takes vgelu there.
constexpr bool kHasGeluTable = true;
constexpr float kGeluTableBound = 3.9375f;
static inline vfloat vgelu_table(vfloat x) {
  const EvenPiece piece = veven_piece<8>(vabs(x));
  const vfloat s = vtable_horner(piece.index, piece.u, kNormalLowerC5, kNormalLowerC4, kNormalLowerC3,
                                 kNormalLowerC2, kNormalLowerC1, kNormalLowerC0);
  const vfloat xs = x * s;
  return _mm512_mask_sub_ps(xs, _mm512_cmp_ps_mask(x, vsplat(0.0f), _CMP_GT_OQ), x, xs);
}
#else
// exp(-x^2/2 + extra) without the rounding of x*x in the exponent: x = xh + xl
// with xh holding 12 significant bits, so -xh*xh/2 is exact and the rest goes
// in as the low part of one exp. ax <= kNormalFlushAbove (vnormal_clamped).
static inline vfloat vexp_neg_half_square(vfloat ax, vfloat extra) {
  vfloat xh = (vfloat)((vint)ax & (int32_t)0xfffff000u);
  vfloat lo = (ax - xh) * (ax + xh);
  return vexp(-0.5f * (xh * xh), extra - 0.5f * lo);
}
static inline vfloat vnormal_clamped(vfloat ax) { return vclamp_above(ax, kNormalFlushAbove); }  // NaN stays
// f where |x| < kNormalFlushAbove or NaN, 0 past it
static inline vfloat vnormal_flushed(vfloat ax, vfloat f) { return ax >= kNormalFlushAbove ? vsplat(0.0f) : f; }
// Phi(-|x|) = erfc(|x|/sqrt2)/2 by the Chebyshev fit of Numerical Recipes'
// erfcc (fractional error < 1.2e-7 everywhere), so the lower tail keeps its
// relative accuracy.
static inline vfloat vnormal_lower_tail(vfloat x) {
  const vfloat abs_x = vabs(x);
  const vfloat ax = vnormal_clamped(abs_x);
  vfloat t = vrecip(1.0f + 0.35355339059327376f * ax);  // 1 / (1 + z/2), z = |x|/sqrt2
  vfloat p = vsplat(0.17087277f);
  p = p * t - 0.82215223f;
  p = p * t + 1.48851587f;
  p = p * t - 1.13520398f;
  p = p * t + 0.27886807f;
  p = p * t - 0.18628806f;
  p = p * t + 0.09678418f;
  p = p * t + 0.37409196f;
  p = p * t + 1.00002368f;
  p = p * t - 1.26551223f;
  return vnormal_flushed(abs_x, 0.5f * t * vexp_neg_half_square(ax, p));
}
// phi(x), the standard normal density
static inline vfloat vnormal_pdf(vfloat x) {
  const vfloat abs_x = vabs(x);
  return vnormal_flushed(abs_x, 0.39894228040143268f * vexp_neg_half_square(vnormal_clamped(abs_x), vsplat(0.0f)));
}
// no table here, as for vsigmoid_table
constexpr bool kHasGeluTable = false;
constexpr float kGeluTableBound = 0.0f;
#endif
static inline double vnormal_pdf(double x) { return 0.39894228040143267794 * std::exp(-0.5 * x * x); }
// Phi(x), the standard normal CDF
static inline vfloat vnormal_cdf(vfloat x) {
  vfloat q = vnormal_lower_tail(x);
  return x < 0.0f ? q : 1.0f - q;
}
static inline double vnormal_cdf(double x) { return 0.5 * std::erfc(-x * 0.70710678118654752440); }

// --- GELU ---------------------------------------------------------------------
// Exact: x Phi(x). Tanh form: 0.5 x (1 + tanh(u)) = x sigmoid(2u) with
// u = sqrt(2/pi) (x + 0.044715 x^3); the sigmoid form keeps the relative
// accuracy of the negative tail, where 1 + tanh(u) cancels.
constexpr double kSqrt2OverPi = 0.79788456080286535588;
constexpr double kGeluCubic = 0.044715;

// Beyond |x| = 30 both derivatives are 0 or 1 even in double; clamping there
// keeps x^2 from overflowing into inf * 0 = NaN (NaN stays NaN).
template <class V> static inline V vclamp30(V x) {
  using T = decltype(hsum(x));
  return vclamp_below(vclamp_above(x, T(30)), T(-30));
}

template <class V> static inline V vgelu(V x) { return x * vnormal_cdf(x); }
#if !(defined(__AVX512F__) && SJ_VECTOR_BYTES == 64)
static inline vfloat vgelu_table(vfloat x) { return vgelu(x); }
#endif
template <class V> static inline V vgelu_derivative(V x) {
  x = vclamp30(x);
  return vnormal_cdf(x) + x * vnormal_pdf(x);
}
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
// the same with one exp(-x^2/2) for Phi and phi (bench/ab.py, 16M floats, 2 threads: 0.85x)
static inline vfloat vgelu_derivative(vfloat x) {
  x = vclamp30(x);
  const NormalArgument arg = vnormal_argument(x);
  const ScaledExp e = vexp_neg_half_square_parts(arg.a);
  const vfloat q = vscaled(e, vnormal_tail_ratio(arg.a), arg.kept);  // Phi(-|x|)
  const vfloat cdf = _mm512_mask_sub_ps(q, _mm512_cmp_ps_mask(x, vsplat(0.0f), _CMP_NLT_UQ), vsplat(1.0f), q);
  return cdf + x * vscaled(e, vsplat(0.39894228040143268f), arg.kept);
}
#endif
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
// Tanh GELU in float on AVX-512: x sigmoid(z), z = x (k + k c x^2), with sigmoid(z) = 1/d
// (z >= 0) or e/d (z < 0), e = exp(-|z|), d = 1 + e. Where |z| > 87.33 exp(-|z|) would be
// subnormal, and each instruction that makes or reads one takes a microcode assist (3 N(0, 1)
// inputs ran 1.2x slower for the 1% of vectors with a lane below x = -9.6); there e is 0 by
// a zero-masked vscalefps (as in vexp_flushed), so the result is x above and 0 below (|gelu|
// < 1.2e-37 there, x < -10, where PyTorch's 0.5 x (1 + tanh(u)) is 0 from x ~ -5). A masked
// lane's argument never reaches a result, so exp needs no clamp, one FMA reduces it (n ln2
// off by |n| 1.9e-9, n <= 126) and a shorter polynomial serves (vexp_reduced_short): 3.8 ulp
// for x >= -1, relative 9.8e-6 below (tests/test_vector_math.py). 22 instructions a vector
// where x vsigmoid(z) took 27: bench/ab.py, 16M floats, 2 threads, forward 0.65x on
// 3 N(0, 1) (blocks past the table's bound; 0.99x on N(0, 1), whose blocks mostly read it),
// backward 0.79x (0.88x on N(0, 1)).
struct TanhGeluSigmoid {
  vfloat e, d;
  __mmask16 negative;  // z < 0
};
static inline TanhGeluSigmoid vtanh_gelu_sigmoid(vfloat z) {
  const vfloat m = _mm512_or_ps(z, vsplat(-0.0f));  // -|z|; NaN stays NaN (and kept below)
  const __mmask16 normal = _mm512_cmp_ps_mask(m, vsplat(kExpNormalFloor), _CMP_NLT_UQ);
  const vfloat n = vround_log2e(m);
  const vfloat e = _mm512_maskz_scalef_ps(normal, vexp_reduced_short(vreduce_ln2_short(m, n)), n);
  const vfloat d = e + 1.0f;
  return {e, d, _mm512_cmp_ps_mask(z, vsplat(0.0f), _CMP_LT_OQ)};
}
static inline vfloat vtanh_gelu_argument(vfloat x, vfloat x2) {
  return x * (vsplat(float(2 * kSqrt2OverPi * kGeluCubic)) * x2 + float(2 * kSqrt2OverPi));
}
static inline vfloat vgelu_tanh(vfloat x) {
  const TanhGeluSigmoid s = vtanh_gelu_sigmoid(vtanh_gelu_argument(x, x * x));
  const vfloat xn = _mm512_mask_mul_ps(x, s.negative, x, s.e);  // x e below 0
  return xn * vrecip(s.d);                                       // xn / d
}
// sigmoid(z) + x sigmoid(z) (1 - sigmoid(z)) du/dx, with sigmoid (1 - sigmoid) = e / d^2
// on both sides of 0; 1 above x = 30 and 0 below -30, as in double (the clamp keeps x^2
// finite), and 0 where e is (x < -10, where it is under 1e-35)
static inline vfloat vgelu_tanh_derivative(vfloat x) {
  x = vclamp30(x);
  const vfloat x2 = x * x;
  const TanhGeluSigmoid s = vtanh_gelu_sigmoid(vtanh_gelu_argument(x, x2));
  const vfloat q = vrecip(s.d);
  const vfloat sigmoid = _mm512_mask_mul_ps(q, s.negative, s.e, q);
  const vfloat du = vsplat(float(6 * kSqrt2OverPi * kGeluCubic)) * x2 + float(2 * kSqrt2OverPi);
  return (x * du) * (s.e * q) * q + sigmoid;
}
#endif
template <class V> static inline V vgelu_tanh(V x) {
  using T = decltype(hsum(x));
  return x * vsigmoid((T(2 * kSqrt2OverPi) * x) * (T(1) + T(kGeluCubic) * x * x));
}
// vgelu_tanh through vsigmoid_table, for |x| < kGeluTanhTableBound: there the argument
// 2 sqrt(2/pi) (x + 0.044715 x^3) stays within +-15.55, under kSigmoidTableBound
constexpr float kGeluTanhTableBound = 4.8f;
static inline vfloat vgelu_tanh_table(vfloat x) {
  return x * vsigmoid_table((float(2 * kSqrt2OverPi) * x) * (1.0f + float(kGeluCubic) * x * x));
}
template <class V> static inline V vgelu_tanh_derivative(V x) {
  using T = decltype(hsum(x));
  x = vclamp30(x);
  V x2 = x * x;
  V s = vsigmoid((T(2 * kSqrt2OverPi) * x) * (T(1) + T(kGeluCubic) * x2));
  V du = T(2 * kSqrt2OverPi) * (T(1) + T(3 * kGeluCubic) * x2);
  return s + x * s * (T(1) - s) * du;
}

}  // namespace SJ_ISA
}  // namespace shenjing

// The Fourier form of convolution (float32, AVX2 and AVX-512): stride 1, no dilation, one
// group, wide kernels (5x5 and up) on small images. conv.cpp picks it per shape
// (fourier_forward and fourier_backward say where it pays). Compiled per instruction set like
// the rest; the generic (SSE2) build goes without it.
//
// Over a grid of Lh x Lw = (OH + KH - 1) x (OW + KW - 1), the padded image's size, the
// convolution's windows never wrap around, so each of the three products is a pointwise
// product of discrete Fourier transforms, summed over channels or samples:
//   forward  y = x (*) w:   Y_q (O, n) = conj(W_q) (O, C) X_q (C, n)
//   dx       dx = dy * w:   DX_q (C, n) = W_q^T (C, O) DY_q (O, n)
//   dW       dW = x (*) dy: DW_q (O, C) = sum over n of conj(DY_q) (O, n) X_q^T (n, C)
// one complex product per frequency q (Lh (Lw / 2 + 1) of them: the last axis' transform is
// of real data), where the direct sum takes KH KW products a pixel: LeNet's conv2 (5x5 on
// 12x12, 8x8 outputs) does 84 complex (336 real) products a channel pair where the direct
// sum does 1600. Each complex product is one real GEMM, its real and imaginary parts as
// blocks: [Yr; Yi] = [[Wr, Wi], [-Wi, Wr]] [Xr; Xi], the weights' block matrix E (2O, 2C);
// dx's is E^T, and dW's [DYr; DYi] [Xr; Xi]^T holds the four products that make DW. (The
// spectra are stored transposed, (samples, 2 channels) a frequency, so a transform's planes
// are channels of one sample: contiguous planes, read and written through transposes.) The
// transforms are small DFTs as products with cos and sin tables (computed in double), a
// vector's lanes of planes at a time (16 on AVX-512, 8 on AVX2); on LeNet's conv2 they take
// a little less time than the GEMMs (a fast Fourier transform's factoring would cut them).
// Error: a sum over the whole plane rather than the window, so it is bounded by the plane's
// norm rather than each window's (as for FFT convolution anywhere: an output near a huge
// value elsewhere in its plane gets that value's rounding); on normal data it is below the
// direct sum's (LeNet's conv2 against float64: 0.9e-6 where the direct float sum strays 2.5e-6).
// A value not finite, or an overflow in the transforms, would spread over a whole plane: a
// call whose result holds a value not finite is redone the direct way (the callers).
#include <cmath>
#include <vector>

#include "shenjing/conv_internal.h"
#include "shenjing/elementwise.h"

namespace shenjing {
namespace SJ_ISA {
namespace conv_detail {

#if SJ_VECTOR_BYTES >= 32
constexpr int64_t kFourierMostSide = 64;  // grid sides up to this (the tables' products cost L^3 a plane)
constexpr int64_t kPlanes = kFloatLanes;   // planes a vector
constexpr int64_t kFiniteChunk = int64_t(1) << 16;  // values a task of all_finite

// the first count lanes of a vector (count >= 1; the rest 0 on load, not written on store)
inline vfloat load_lanes(const float* p, int64_t count) {
  return count >= kPlanes ? vload(p) : vload_partial(p, count, 0.0f);
}
inline void store_lanes(float* p, vfloat v, int64_t count) {
  if (count >= kPlanes) vstore(p, v);
  else vstore_partial(p, v, count);
}

// Where it pays, measured (bench/ab.py, 2 threads, new/old time, forward / backward):
// - 5x5: LeNet's conv2 (32 -> 64 channels, 12x12, batch 64) 0.65 / 0.64, batch 32 0.78 / 0.75,
//   16 0.94 / 0.97 but 8 1.21 / 1.01 (the weights' matrices, built once a call, are paid over
//   too few samples); 128 -> 128 on 8x8 pad 2 0.47 / 0.50; 32 on 16x16 pad 2 0.59 / 0.65; 64 on
//   28x28 pad 2, batch 16, 0.46 / 0.53; 64 on 40x40 0.46 / 0.53; 32 on 56x56 0.83 / 0.80 (the
//   tables' products cost L^3 a plane); 16 -> 16 channels 1.05 / 0.63 (the forward keeps the
//   direct forms under 32).
// - 7x7 (pad 3): 64 on 24x24, batch 32, 0.23 / 0.25; 32 on 12x12, batch 4, 0.79 / 0.95; 32 on
//   56x56, batch 8, 0.54 / 0.65.
// The backward's dW products (Q (2O) (2C) floats) are kept to 64 MiB.
// AVX2 (SHENJING_ISA=avx2, against its own direct forms): LeNet's conv2 0.58 / 0.75, batch 16
// 0.66 / 0.76; 7x7 64 on 24x24 0.31 / 0.31, 32 on 12x12 batch 4 0.59 / 0.78; 5x5 64 on 28x28
// 0.54 / 0.58, 64 on 40x40 0.63 / 0.65, but 32 on 40x40 0.97 / 0.93 and on 56x56 1.15 / 1.03:
// with 8 planes a vector and transposes not in registers, grids past 32 a side pay there only
// with 64 channels or more.
// 3x3 windows stay with Winograd (AVX-512: the Fourier form 1.3-2.1x its time) or the direct
// forms (AVX2: 0.97-2.1x), whose sums are shorter than a 3x3 grid's transforms pay for.
bool fourier_shape(const ConvShape& s, const Geometry& g) {
  const int64_t Lh = s.OH + s.KH - 1, Lw = s.OW + s.KW - 1;
  return s.groups == 1 && s.sh == 1 && s.sw == 1 && s.dh == 1 && s.dw == 1 && s.KH >= 5 && s.KW >= 5 &&
         Lh <= kFourierMostSide && Lw <= kFourierMostSide && g.Cg >= 16 && g.Og >= 16 &&
         (SJ_VECTOR_BYTES >= 64 || (Lh <= 32 && Lw <= 32) || (g.Cg >= 64 && g.Og >= 64)) &&
         s.N >= (s.KH * s.KW >= 49 ? 4 : 16);
}
bool fourier_forward(const ConvShape& s, const Geometry& g) { return fourier_shape(s, g) && g.Cg >= 32 && g.Og >= 32; }
bool fourier_backward(const ConvShape& s, const Geometry& g) {
  const int64_t Q = (s.OH + s.KH - 1) * ((s.OW + s.KW - 1) / 2 + 1);
  return fourier_shape(s, g) && 16 * Q * s.O * s.C <= (int64_t(64) << 20);  // (dW's products, Q (2O) (2C) floats)
}

namespace {

// The DFT tables of one grid: rows (along w, real data) to Fw = Lw / 2 + 1 frequencies,
// columns (along h) complex; the inverse's row weights fold in 1 / (Lh Lw) and the
// doubling of the frequencies whose mirror image is not stored.
struct Dft {
  int64_t Lh = 0, Lw = 0, Fw = 0, Q = 0;
  std::vector<float> er, ei;  // (Fw, Lw): cos, -sin of 2 pi f w / Lw
  std::vector<float> cr, ci, sn;  // (Lh, Lh): cos, -sin, sin of 2 pi i h / Lh
  std::vector<float> sr_t, si_t;  // (Lw, Fw): er, ei times the inverse's weight of f, transposed
};

const Dft& dft_tables(int64_t Lh, int64_t Lw) {
  static thread_local Dft d;  // built on the calling thread, before the parallel loops
  if (d.Lh == Lh && d.Lw == Lw) return d;
  d.Lh = Lh, d.Lw = Lw, d.Fw = Lw / 2 + 1, d.Q = Lh * d.Fw;
  const double two_pi = 6.283185307179586476925;
  d.er.assign(size_t(d.Fw * Lw), 0.0f), d.ei.assign(size_t(d.Fw * Lw), 0.0f);
  d.sr_t.assign(size_t(d.Fw * Lw), 0.0f), d.si_t.assign(size_t(d.Fw * Lw), 0.0f);
  for (int64_t f = 0; f < d.Fw; ++f) {
    // f = 0 and the Nyquist frequency stand for themselves, the others for their mirror too
    const double weight = (f == 0 || 2 * f == Lw ? 1.0 : 2.0) / double(Lh * Lw);
    for (int64_t w = 0; w < Lw; ++w) {
      const double angle = two_pi * double((f * w) % Lw) / double(Lw);
      d.er[size_t(f * Lw + w)] = float(std::cos(angle));
      d.ei[size_t(f * Lw + w)] = float(-std::sin(angle));
      d.sr_t[size_t(w * d.Fw + f)] = float(weight * std::cos(angle));
      d.si_t[size_t(w * d.Fw + f)] = float(-weight * std::sin(angle));
    }
  }
  d.cr.assign(size_t(Lh * Lh), 0.0f), d.ci.assign(size_t(Lh * Lh), 0.0f), d.sn.assign(size_t(Lh * Lh), 0.0f);
  for (int64_t i = 0; i < Lh; ++i)
    for (int64_t h = 0; h < Lh; ++h) {
      const double angle = two_pi * double((i * h) % Lh) / double(Lh);
      d.cr[size_t(i * Lh + h)] = float(std::cos(angle));
      d.ci[size_t(i * Lh + h)] = float(-std::sin(angle));
      d.sn[size_t(i * Lh + h)] = float(std::sin(angle));
    }
  return d;
}

// Products of small float matrices with matrices of vectors (a vector's planes, one a lane),
// register-blocked 4 x 4 so sixteen sums run side by side (one sum at a time waited on
// each FMA's latency):
//   left:  out[a][f] (+)= sum_b m[a][b] in[b][f]     (a < A, b < B, f < F)
//   right: out[a][f] (+)= sum_b in[a][b] m[f][b]
// with row strides os, ms, is; `add` keeps what out holds. (m's values are broadcast from
// memory, a load each: a sign applied to them first took the shuffle port that half the
// FMAs use.)
template <int kA, int kF, bool kLeft>
inline void product_block(vfloat* out, int64_t os, const float* m, int64_t ms, const vfloat* in, int64_t is,
                          int64_t a0, int64_t f0, int64_t B, bool add) {
  vfloat acc[kA][kF];
  for (int a = 0; a < kA; ++a)
    for (int f = 0; f < kF; ++f) acc[a][f] = add ? out[(a0 + a) * os + f0 + f] : vsplat(0.0f);
  for (int64_t b = 0; b < B; ++b) {
    vfloat v[kLeft ? kF : kA];
    float c[kLeft ? kA : kF];
    if (kLeft) {
      for (int f = 0; f < kF; ++f) v[f] = in[b * is + f0 + f];
      for (int a = 0; a < kA; ++a) c[a] = m[(a0 + a) * ms + b];
      for (int a = 0; a < kA; ++a)
        for (int f = 0; f < kF; ++f) acc[a][f] += c[a] * v[f];
    } else {
      for (int a = 0; a < kA; ++a) v[a] = in[(a0 + a) * is + b];
      for (int f = 0; f < kF; ++f) c[f] = m[(f0 + f) * ms + b];
      for (int a = 0; a < kA; ++a)
        for (int f = 0; f < kF; ++f) acc[a][f] += v[a] * c[f];
    }
  }
  for (int a = 0; a < kA; ++a)
    for (int f = 0; f < kF; ++f) out[(a0 + a) * os + f0 + f] = acc[a][f];
}
// the blocks of kA rows a0 .. a0 + kA: 4 columns at a time, then the 1 to 3 left over in one
// block (blocks of one column kept four sums, too few to cover an FMA's latency)
template <int kA, bool kLeft>
void product_rows(vfloat* out, int64_t os, const float* m, int64_t ms, const vfloat* in, int64_t is, int64_t a0,
                  int64_t B, int64_t F, bool add) {
  int64_t f0 = 0;
  for (; f0 + 4 <= F; f0 += 4) product_block<kA, 4, kLeft>(out, os, m, ms, in, is, a0, f0, B, add);
  switch (F - f0) {
    case 3: product_block<kA, 3, kLeft>(out, os, m, ms, in, is, a0, f0, B, add); break;
    case 2: product_block<kA, 2, kLeft>(out, os, m, ms, in, is, a0, f0, B, add); break;
    case 1: product_block<kA, 1, kLeft>(out, os, m, ms, in, is, a0, f0, B, add); break;
    default: break;
  }
}
template <bool kLeft>
void small_product(vfloat* out, int64_t os, const float* m, int64_t ms, const vfloat* in, int64_t is, int64_t A,
                   int64_t B, int64_t F, bool add) {
  int64_t a0 = 0;
  for (; a0 + 4 <= A; a0 += 4) product_rows<4, kLeft>(out, os, m, ms, in, is, a0, B, F, add);
  switch (A - a0) {
    case 3: product_rows<3, kLeft>(out, os, m, ms, in, is, a0, B, F, add); break;
    case 2: product_rows<2, kLeft>(out, os, m, ms, in, is, a0, B, F, add); break;
    case 1: product_rows<1, kLeft>(out, os, m, ms, in, is, a0, B, F, add); break;
    default: break;
  }
}

// The spectra (re, im: Q vectors, q = i Fw + f) of kPlanes planes whose only non-zero values
// lie in rows [h0, h1) and columns [w0, w1) of the grid: tile, (h1 - h0) x (w1 - w0) vectors.
// rows[]: scratch of 4 Lh Fw + 4 Fw vectors.
void dft_forward(const Dft& d, const vfloat* tile, int64_t h0, int64_t h1, int64_t w0, int64_t w1, vfloat* rows,
                 vfloat* re, vfloat* im) {
  const int64_t Fw = d.Fw, Lw = d.Lw, Lh = d.Lh, width = w1 - w0, height = h1 - h0;
  vfloat* r1 = rows;  // (height, Fw): each row's transform
  vfloat* i1 = rows + Lh * Fw;
  small_product<false>(r1, Fw, d.er.data() + w0, Lw, tile, width, height, width, Fw, false);
  small_product<false>(i1, Fw, d.ei.data() + w0, Lw, tile, width, height, width, Fw, false);
  // the columns': re = Cr r1 - Ci i1, im = Cr i1 + Ci r1 (C's columns h0 .. h1). Row Lh - i of
  // Cr is row i's and of Ci its negative, so the four products run over rows 0 .. Lh / 2 alone
  // and make both (0.58 of the products for Lh = 12)
  const int64_t half = Lh / 2 + 1;
  vfloat* cos_r = rows + 2 * Lh * Fw;  // (half, Fw) each: Cr r1, Ci i1, Cr i1, Ci r1
  vfloat* sin_i = cos_r + half * Fw;
  vfloat* cos_i = sin_i + half * Fw;
  vfloat* sin_r = cos_i + half * Fw;
  const float* cr = d.cr.data() + h0;
  const float* ci = d.ci.data() + h0;
  small_product<true>(cos_r, Fw, cr, Lh, r1, Fw, half, height, Fw, false);
  small_product<true>(sin_i, Fw, ci, Lh, i1, Fw, half, height, Fw, false);
  small_product<true>(cos_i, Fw, cr, Lh, i1, Fw, half, height, Fw, false);
  small_product<true>(sin_r, Fw, ci, Lh, r1, Fw, half, height, Fw, false);
  for (int64_t i = 0; i < half; ++i)
    for (int64_t f = 0; f < Fw; ++f) {
      const int64_t k = i * Fw + f;
      re[k] = cos_r[k] - sin_i[k], im[k] = cos_i[k] + sin_r[k];
      if (i > 0 && 2 * i < Lh) {
        const int64_t mirror = (Lh - i) * Fw + f;
        re[mirror] = cos_r[k] + sin_i[k], im[mirror] = cos_i[k] - sin_r[k];
      }
    }
}

// the range [lo, hi] of the mirror index min(k, L - k) (0 for k = 0) over k in [k0, k1)
inline void mirror_range(int64_t k0, int64_t k1, int64_t L, int64_t* lo, int64_t* hi) {
  *lo = L, *hi = -1;
  for (int64_t k = k0; k < k1; ++k) {
    const int64_t m = k < L - k ? k : (k == 0 ? 0 : L - k);
    *lo = m < *lo ? m : *lo, *hi = m > *hi ? m : *hi;
  }
}

// Rows [p0, p1) and columns [q0, q1) of the real planes whose spectra are re, im (see
// dft_forward): out, (p1 - p0) x (q1 - q0) vectors. re and im are overwritten (the row pass's
// scratch); rows[]: scratch of 4 Lh Fw + 4 Fw vectors. As in dft_forward, row k and row L - k
// of a pass's cos table are equal and of its sin table opposite, so a pass's products can run
// over the mirror rows alone and make both: where that saves a quarter of them or more (dx's
// whole 12 x 12 grid: 7 rows of 12 each way), as its second sum and pass over the products
// cost more than an eighth (LeNet's conv2's 8 x 8 outputs, 7 rows of 8, took 1.05x the time
// that way). bench/ab.py: 7x7 on 24x24 0.92 / 0.94, LeNet's conv2 0.99 / 0.975
void dft_inverse(const Dft& d, vfloat* re, vfloat* im, int64_t p0, int64_t p1, int64_t q0, int64_t q1, vfloat* rows,
                 vfloat* out) {
  const int64_t Fw = d.Fw, Lw = d.Lw, Lh = d.Lh, width = q1 - q0, height = p1 - p0;
  // the columns' inverse (the conjugate transform) at the rows wanted, (height, Fw):
  // zr = cr re + ci im, zi = cr im - ci re
  vfloat* zr = rows;
  vfloat* zi = rows + Lh * Fw;
  int64_t b0, b1;
  mirror_range(p0, p1, Lh, &b0, &b1);
  const int64_t mirrors = b1 - b0 + 1;
  if (4 * mirrors > 3 * height) {  // from the rows wanted themselves
    const float* cr = d.cr.data() + p0 * Lh;
    small_product<true>(zr, Fw, cr, Lh, re, Fw, height, Lh, Fw, false);
    small_product<true>(zr, Fw, d.ci.data() + p0 * Lh, Lh, im, Fw, height, Lh, Fw, true);
    small_product<true>(zi, Fw, cr, Lh, im, Fw, height, Lh, Fw, false);
    small_product<true>(zi, Fw, d.sn.data() + p0 * Lh, Lh, re, Fw, height, Lh, Fw, true);  // - ci
  } else {  // from the mirror rows [b0, b1]
    vfloat* cos_re = rows + 2 * Lh * Fw;  // (mirrors, Fw) each: cr re, ci im, cr im, sn re
    vfloat* ci_im = cos_re + mirrors * Fw;
    vfloat* cos_im = ci_im + mirrors * Fw;
    vfloat* sin_re = cos_im + mirrors * Fw;
    small_product<true>(cos_re, Fw, d.cr.data() + b0 * Lh, Lh, re, Fw, mirrors, Lh, Fw, false);
    small_product<true>(ci_im, Fw, d.ci.data() + b0 * Lh, Lh, im, Fw, mirrors, Lh, Fw, false);
    small_product<true>(cos_im, Fw, d.cr.data() + b0 * Lh, Lh, im, Fw, mirrors, Lh, Fw, false);
    small_product<true>(sin_re, Fw, d.sn.data() + b0 * Lh, Lh, re, Fw, mirrors, Lh, Fw, false);
    for (int64_t p = p0; p < p1; ++p) {
      const bool low = p <= Lh - p;  // p is its own mirror row, else Lh - p is
      const int64_t k = ((low ? p : Lh - p) - b0) * Fw;
      for (int64_t f = 0; f < Fw; ++f) {
        zr[(p - p0) * Fw + f] = low ? cos_re[k + f] + ci_im[k + f] : cos_re[k + f] - ci_im[k + f];
        zi[(p - p0) * Fw + f] = low ? cos_im[k + f] + sin_re[k + f] : cos_im[k + f] - sin_re[k + f];
      }
    }
  }
  // the rows': out[p][q] = sum over f of sr[f][q] zr[p][f] + si[f][q] zi[p][f] (the tables
  // transposed to (q, f) for the right product)
  int64_t c0, c1;
  mirror_range(q0, q1, Lw, &c0, &c1);
  const int64_t columns = c1 - c0 + 1;
  if (4 * columns > 3 * width) {  // at the columns wanted themselves
    small_product<false>(out, width, d.sr_t.data() + q0 * Fw, Fw, zr, Fw, height, Fw, width, false);
    small_product<false>(out, width, d.si_t.data() + q0 * Fw, Fw, zi, Fw, height, Fw, width, true);
    return;
  }
  vfloat* cos_part = re;  // at the mirror columns [c0, c1]: (height, columns) each
  vfloat* sin_part = im;
  small_product<false>(cos_part, columns, d.sr_t.data() + c0 * Fw, Fw, zr, Fw, height, Fw, columns, false);
  small_product<false>(sin_part, columns, d.si_t.data() + c0 * Fw, Fw, zi, Fw, height, Fw, columns, false);
  for (int64_t p = 0; p < height; ++p)
    for (int64_t q = q0; q < q1; ++q) {
      const bool low = q <= Lw - q;
      const int64_t k = p * columns + (low ? q : Lw - q) - c0;
      out[p * width + q - q0] = low ? cos_part[k] + sin_part[k] : cos_part[k] - sin_part[k];
    }
}

// A frequency's matrix of `size` floats takes size + 16: a transform writes (and the inverse
// reads) one vector of each of the Q frequencies' matrices, and at strides of a multiple of
// 4 KiB all of them fell in one set of the L1 cache (LeNet's conv2: 16 KiB)
inline int64_t frequency_stride(int64_t size) { return size + 16; }

// A vector of a frequency's matrix, written by a transform: a streaming store when it is a
// whole, aligned line (rows of a channel count not a multiple of 16 leave most unaligned).
// The transforms' tasks split the planes and the GEMMs the frequencies, so a cached store
// would first read in a line that the other core's GEMM had last; the GEMMs read them from
// memory instead (bench/ab.py, LeNet's conv2: backward 0.965, forward 0.99). The tasks fence
// their stores (spectrum_fence) before the GEMMs start.
inline void spectrum_store(float* p, vfloat v, int64_t count) {
  if (count >= kPlanes && reinterpret_cast<uintptr_t>(p) % sizeof(vfloat) == 0) vstream(p, v);
  else store_lanes(p, v, count);
}
inline void spectrum_fence() { stream_fence(); }

// Per-thread scratch of one transform: the tile, the row pass, the spectrum
struct Work {
  std::vector<vfloat> tile, rows, re, im;
  void fit(const Dft& d) {
    const size_t grid = size_t(d.Lh * d.Lw), spectrum = size_t(d.Q);
    if (tile.size() < grid) tile.resize(grid);
    if (rows.size() < 4 * spectrum + 4 * size_t(d.Fw)) rows.resize(4 * spectrum + 4 * size_t(d.Fw));
    if (re.size() < spectrum) re.resize(spectrum), im.resize(spectrum);
  }
};
Work& work(const Dft& d) {
  static thread_local Work w;
  w.fit(d);
  return w;
}

// Runs f(task) over [0, tasks) on every thread when there is enough of them
template <class F> void for_planes(int64_t tasks, F f) {
  run_indices(tasks, tasks > 1, thread_count(), Schedule::blocks, f);
}

// The spectra of kPlanes planes, lane j < count from the plane at base + j stride (the lanes
// past count: zero planes), each a contiguous (rows, cols) block placed at (h0, w0) of
// the grid, read through 16x16 register transposes; store(q, re, im) takes each frequency's.
template <class Store>
void transform_planes(const Dft& d, const float* base, int64_t stride, int64_t count, int64_t rows, int64_t cols,
                      int64_t h0, int64_t w0, Store store) {
  Work& wk = work(d);
  float* tile = reinterpret_cast<float*>(wk.tile.data());  // (rows cols, 16)
  if (count < kPlanes) std::memset(tile, 0, sizeof(vfloat) * size_t(rows * cols));
  transpose_into(tile, kPlanes, base, stride, count, rows * cols);
  dft_forward(d, wk.tile.data(), h0, h0 + rows, w0, w0 + cols, wk.rows.data(), wk.re.data(), wk.im.data());
  for (int64_t q = 0; q < d.Q; ++q) store(q, wk.re[size_t(q)], wk.im[size_t(q)]);
}

// The rows [p0, p1) and columns [q0, q1) of kPlanes planes from their spectra (load(q, re, im)
// sets frequency q's vectors), plus add, lane j < count written to the plane at
// base + j stride as a contiguous block
template <class Load>
void inverse_planes(const Dft& d, Load load, int64_t count, int64_t p0, int64_t p1, int64_t q0, int64_t q1,
                    float* base, int64_t stride, vfloat add) {
  Work& wk = work(d);
  for (int64_t q = 0; q < d.Q; ++q) load(q, wk.re[size_t(q)], wk.im[size_t(q)]);
  vfloat* out = wk.tile.data();
  dft_inverse(d, wk.re.data(), wk.im.data(), p0, p1, q0, q1, wk.rows.data(), out);
  const int64_t pixels = (p1 - p0) * (q1 - q0);
  for (int64_t k = 0; k < pixels; ++k) out[k] += add;
  transpose_into(base, stride, reinterpret_cast<const float*>(out), kPlanes, pixels, count);
}

// The weights' block matrix of one frequency q = (i, f): E_q (2O, 2C) = [[Wr, Wi], [-Wi, Wr]]
// (see the top), or with kTransposed its transpose F_q (2C, 2O) = [[Wr^T, -Wi^T], [Wi^T, Wr^T]],
// which the forward's product reads in place where E^T would be packed. Each GEMM task builds
// the matrices of its own frequencies just before their products, in its own cache: a pass
// transforming every weight plane to all Q frequencies first wrote 2.75 MB (LeNet's conv2),
// a frequency in each line, which the other core's GEMMs then read in (it took 0.2 ms a call
// for 30 us of arithmetic). The weights are read as runs of 16 along a row of the matrix
// (outputs o for F, channels c for E): wt (across, KH, KW, along rounded up to a vector), zero-padded.
template <bool kTransposed> struct WeightSpectra {
  const Dft& d;
  const ConvShape& s;
  int64_t along, across, padded;  // a run's length (O for F, C for E), the runs, along rounded up
  const float* wt;
  // (KH, across, padded) each: the row pass at frequency column f, Rr + i Ri
  float* rr;
  float* ri;

  static int64_t padded_of(const ConvShape& s) { return ceil_div(kTransposed ? s.O : s.C, kPlanes) * kPlanes; }
  // wt from w (O, C, KH, KW)
  static void arrange(float* wt, const float* w, const ConvShape& s) {
    const int64_t along = kTransposed ? s.O : s.C, across = kTransposed ? s.C : s.O, taps = s.KH * s.KW;
    const int64_t padded = padded_of(s);
    for_planes(across, [&](int64_t r) {
      float* out = wt + r * taps * padded;
      for (int64_t t = 0; t < taps; ++t)
        for (int64_t j = 0; j < padded; ++j)
          out[t * padded + j] = j < along ? w[((kTransposed ? j * s.C + r : r * s.C + j) * taps) + t] : 0.0f;
    });
  }
  // the row pass of column f: R[kh][r][j] = sum over kw of wt[r][kh][kw][j] (er + i ei)[f][kw]
  void rows_at(int64_t f) {
    const float* er = d.er.data() + f * d.Lw;
    const float* ei = d.ei.data() + f * d.Lw;
    for (int64_t r = 0; r < across; ++r)
      for (int64_t kh = 0; kh < s.KH; ++kh)
        for (int64_t j = 0; j < padded; j += kPlanes) {
          vfloat ar = vsplat(0.0f), ai = vsplat(0.0f);
          const float* in = wt + (r * s.KH + kh) * s.KW * padded + j;
          for (int64_t kw = 0; kw < s.KW; ++kw) {
            const vfloat v = vload(in + kw * padded);
            ar += er[kw] * v, ai += ei[kw] * v;
          }
          vstore(rr + (kh * across + r) * padded + j, ar);
          vstore(ri + (kh * across + r) * padded + j, ai);
        }
  }
  // the matrices (2 across, 2 along) of frequencies (i, f) and (Lh - i, f), f the column of
  // the last rows_at, into m and mirror (mirror untouched where i is its own mirror row, 0 or
  // Lh / 2): rows i and Lh - i of the column tables have the same cos and opposite sin, so
  // one set of sums makes both
  void matrices_at(float* m, float* mirror, int64_t i) const {
    const float* cr = d.cr.data() + i * d.Lh;
    const float* ci = d.ci.data() + i * d.Lh;
    const bool paired = i > 0 && 2 * i != d.Lh;
    const int64_t row = 2 * along;
    auto store = [&](float* out, int64_t r, int64_t j, vfloat wr, vfloat wi) {
      const int64_t count = along - j;
      float* top = out + r * row + j;                // row r: Wr, then Wi (E) or -Wi (F)
      float* bottom = out + (across + r) * row + j;  // row across + r: -Wi (E) or Wi (F), then Wr
      store_lanes(top, wr, count);
      store_lanes(top + along, kTransposed ? -wi : wi, count);
      store_lanes(bottom, kTransposed ? wi : -wi, count);
      store_lanes(bottom + along, wr, count);
    };
    for (int64_t r = 0; r < across; ++r)
      for (int64_t j = 0; j < padded; j += kPlanes) {
        // W = sum over kh of R (cr + i ci)[i][kh]: real cr Rr - ci Ri, imaginary ci Rr + cr Ri
        vfloat cos_r = vsplat(0.0f), sin_i = vsplat(0.0f), sin_r = vsplat(0.0f), cos_i = vsplat(0.0f);
        for (int64_t kh = 0; kh < s.KH; ++kh) {
          const vfloat a = vload(rr + (kh * across + r) * padded + j), b = vload(ri + (kh * across + r) * padded + j);
          cos_r += cr[kh] * a, sin_i += ci[kh] * b, sin_r += ci[kh] * a, cos_i += cr[kh] * b;
        }
        store(m, r, j, cos_r - sin_i, sin_r + cos_i);
        if (paired) store(mirror, r, j, cos_r + sin_i, cos_i - sin_r);
      }
  }
};

// The spectra of the `channels` planes of each of `samples` samples (plane (n, c) at
// src + n sample_stride + c rows cols, placed at (h0, w0) of the grid) as
// spec_q (samples, 2 channels): sample n a row, [real | imaginary] by channel.
void transform_samples(float* spec, const float* src, int64_t samples, int64_t channels, int64_t sample_stride,
                       int64_t rows, int64_t cols, int64_t h0, int64_t w0, const Dft& d) {
  const int64_t plane_size = rows * cols, groups = ceil_div(channels, kPlanes),
                q_stride = frequency_stride(2 * channels * samples);
  for_planes(samples * groups, [&](int64_t task) {
    const int64_t n = task / groups, c0 = (task % groups) * kPlanes;
    const int64_t count = channels - c0 < kPlanes ? channels - c0 : kPlanes;
    float* re = spec + n * 2 * channels + c0;
    transform_planes(d, src + n * sample_stride + c0 * plane_size, plane_size, count, rows, cols, h0, w0,
                     [&](int64_t q, vfloat real, vfloat imaginary) {
                       spectrum_store(re + q * q_stride, real, count);
                       spectrum_store(re + q * q_stride + channels, imaginary, count);
                     });
    spectrum_fence();
  });
}

// The inverse of transform_samples: rows [p0, p1) and columns [q0, q1) of each plane (n, c)
// to dst + n sample_stride + c plane_size (a contiguous block), plus bias[c] (bias may be null)
void inverse_samples(float* dst, const float* spec, int64_t samples, int64_t channels, int64_t sample_stride,
                     int64_t p0, int64_t p1, int64_t q0, int64_t q1, const float* bias, const Dft& d) {
  const int64_t plane_size = (p1 - p0) * (q1 - q0), groups = ceil_div(channels, kPlanes),
                q_stride = frequency_stride(2 * channels * samples);
  for_planes(samples * groups, [&](int64_t task) {
    const int64_t n = task / groups, c0 = (task % groups) * kPlanes;
    const int64_t count = channels - c0 < kPlanes ? channels - c0 : kPlanes;
    const float* re = spec + n * 2 * channels + c0;
    const vfloat add = bias ? load_lanes(bias + c0, count) : vsplat(0.0f);
    inverse_planes(
        d,
        [&](int64_t q, vfloat& real, vfloat& imaginary) {
          real = load_lanes(re + q * q_stride, count);
          imaginary = load_lanes(re + q * q_stride + channels, count);
        },
        count, p0, p1, q0, q1, dst + n * sample_stride + c0 * plane_size, plane_size, add);
  });
}

// asks for the n floats at p, a line at a time: a GEMM's operands, which a transform wrote
// out on the other core (bench/ab.py, LeNet's conv2: dW alone 0.94)
inline void prefetch_floats(const float* p, int64_t n) {
  for (int64_t i = 0; i < n; i += 16) _mm_prefetch(reinterpret_cast<const char*>(p + i), _MM_HINT_T0);
}

// One GEMM a frequency, C_q = op(A_q) op(B_q) (+ C_q where accumulate), in parallel over q,
// each task asking for its operands first
template <class AOf, class BOf>
void gemm_per_frequency(float* c, int64_t c_stride, int64_t Q, int64_t M, int64_t N, int64_t K, bool accumulate,
                        AOf a_of, BOf b_of) {
  for_tasks(Q, 2.0 * M * N * K, [&](int64_t q, int gemm_threads) {
    const auto a = a_of(q);
    const auto b = b_of(q);
    prefetch_floats(a.a, M * K);
    prefetch_floats(b.b, N * K);
    gemm_detail::gemm_driver(c + q * c_stride, a, b, M, N, K, 1.0f, accumulate ? 1.0f : 0.0f,
                             static_cast<const float*>(nullptr), GemmBias::none, GemmActivation::none, gemm_threads);
  });
}

// The GEMMs with the weights' matrices (see WeightSpectra): out_q (M, N) = A_q (M, K) B_q with
// B_q the weights' matrix of q, (K, N) row-major, built by the task. A task takes one
// frequency column f and half its mirror pairs of rows i, Lh - i (so the row pass, once a
// task, is paid twice a column, and 2 Fw tasks share out about evenly).
template <bool kTransposed, class AOf>
void gemm_with_weights(float* out, int64_t out_stride, const Dft& d, const ConvShape& s, const float* wt, int64_t M,
                       int64_t N, int64_t K, AOf a_of) {
  using Spectra = WeightSpectra<kTransposed>;
  const int64_t along = kTransposed ? s.O : s.C, across = kTransposed ? s.C : s.O, padded = Spectra::padded_of(s);
  constexpr int64_t halves = 2;
  const int64_t pairs = d.Lh / 2 + 1, pairs_a_half = ceil_div(pairs, halves);  // mirror rows 0 .. Lh / 2
  for_tasks(d.Fw * halves, 2.0 * M * N * K * double(2 * pairs_a_half), [&](int64_t task, int gemm_threads) {
    static thread_local std::vector<float> row_buffer, matrix_buffer;
    const int64_t f = task / halves, b0 = (task % halves) * pairs_a_half;
    const int64_t b1 = b0 + pairs_a_half < pairs ? b0 + pairs_a_half : pairs;
    float* rows = scratch(row_buffer, size_t(2 * s.KH * across * padded));
    Spectra spectra{d, s, along, across, padded, wt, rows, rows + s.KH * across * padded};
    spectra.rows_at(f);
    float* m = scratch(matrix_buffer, size_t(8 * along * across));
    float* mirror = m + 4 * along * across;
    auto product = [&](int64_t i, const float* matrix) {
      const int64_t q = i * d.Fw + f;
      const auto a = a_of(q);
      prefetch_floats(a.a, M * K);
      gemm_detail::gemm_driver(out + q * out_stride, a, gemm_detail::MatrixB<float>{matrix, false, N, K}, M, N, K,
                               1.0f, 0.0f, static_cast<const float*>(nullptr), GemmBias::none, GemmActivation::none,
                               gemm_threads);
    };
    for (int64_t i = b0; i < b1; ++i) {
      spectra.matrices_at(m, mirror, i);
      product(i, m);
      if (i > 0 && 2 * i != d.Lh) product(d.Lh - i, mirror);
    }
  });
}

// whether every value of p[0, n) is finite
bool all_finite(const float* p, int64_t n) {
  std::vector<char> finite(size_t(ceil_div(n, kFiniteChunk)), 1);
  for_planes(int64_t(finite.size()), [&](int64_t chunk) {
    const int64_t begin = chunk * kFiniteChunk, end = begin + kFiniteChunk < n ? begin + kFiniteChunk : n;
    vfloat check = vsplat(0.0f);  // a sum of x * 0: NaN from the first inf or NaN on
    int64_t i = begin;
    for (; i + kPlanes <= end; i += kPlanes) check += vload(p + i) * 0.0f;
    if (i < end) check += vload_partial(p + i, end - i, 0.0f) * 0.0f;
    for (int64_t j = 0; j < kPlanes; ++j)
      if (!(check[j] == 0.0f)) finite[size_t(chunk)] = 0;
  });
  return all_set(finite);
}

// samples a chunk: their spectra within about 16 MiB, and at most 128; the chunks of a batch
// made even (a 16-sample batch whose 15 fit took a last chunk of one, its GEMMs of one row)
int64_t chunk_samples(const ConvShape& s, const Dft& d) {
  const int64_t per_sample = 2 * d.Q * (s.C + s.O) * int64_t(sizeof(float));
  const int64_t fit = (int64_t(16) << 20) / per_sample;
  const int64_t most = fit < 1 ? 1 : (fit < 128 ? fit : 128);
  return ceil_div(s.N, ceil_div(s.N, most));
}

}  // namespace

bool fourier_conv2d_forward(float* y, const float* x, const float* w, const float* bias, const ConvShape& s,
                            const Geometry& g) {
  const Dft& d = dft_tables(s.OH + s.KH - 1, s.OW + s.KW - 1);
  const int64_t O = s.O, C = s.C, Q = d.Q;
  if (s.H > d.Lh - s.ph || s.W > d.Lw - s.pw) return false;  // an image past the grid (not fourier_shape's)
  static thread_local std::vector<float> wt_buffer, x_buffer, y_buffer;
  float* const wt = scratch(wt_buffer, size_t(C * s.KH * s.KW * WeightSpectra<true>::padded_of(s)));
  WeightSpectra<true>::arrange(wt, w, s);
  const int64_t Nb = chunk_samples(s, d);
  float* const xs = scratch(x_buffer, size_t(Q * frequency_stride(2 * C * Nb)));
  float* const ys = scratch(y_buffer, size_t(Q * frequency_stride(2 * O * Nb)));
  for (int64_t n0 = 0; n0 < s.N; n0 += Nb) {
    const int64_t samples = s.N - n0 < Nb ? s.N - n0 : Nb;
    const int64_t x_stride = frequency_stride(2 * C * samples), y_stride = frequency_stride(2 * O * samples);
    transform_samples(xs, x + n0 * C * g.HW, samples, C, C * g.HW, s.H, s.W, s.ph, s.pw, d);
    // Y_q^T (n, 2O) = X_q (n, 2C) F_q
    gemm_with_weights<true>(ys, y_stride, d, s, wt, samples, 2 * O, 2 * C, [&](int64_t q) {
      return gemm_detail::MatrixA<float>{xs + q * x_stride, false, samples, 2 * C};
    });
    inverse_samples(y + n0 * O * g.P, ys, samples, O, O * g.P, 0, s.OH, 0, s.OW, bias, d);
  }
  return all_finite(y, s.N * O * g.P);
}

bool fourier_conv2d_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                             const ConvShape& s, const Geometry& g) {
  const Dft& d = dft_tables(s.OH + s.KH - 1, s.OW + s.KW - 1);
  const int64_t O = s.O, C = s.C, Q = d.Q;
  if (s.H > d.Lh - s.ph || s.W > d.Lw - s.pw) return false;  // an image past the grid (not fourier_shape's)
  static thread_local std::vector<float> wt_buffer, x_buffer, dy_buffer, dx_buffer, p_buffer;
  const int64_t products_stride = frequency_stride(4 * O * C), Nb = chunk_samples(s, d);
  float* const wt = dx ? scratch(wt_buffer, size_t(O * s.KH * s.KW * WeightSpectra<false>::padded_of(s))) : nullptr;
  if (dx) WeightSpectra<false>::arrange(wt, w, s);
  float* const dys = scratch(dy_buffer, size_t(Q * frequency_stride(2 * O * Nb)));
  float* const xs = dw ? scratch(x_buffer, size_t(Q * frequency_stride(2 * C * Nb))) : nullptr;
  float* const dxs = dx ? scratch(dx_buffer, size_t(Q * frequency_stride(2 * C * Nb))) : nullptr;
  // [DYr; DYi] [Xr; Xi]^T a frequency, (2O, 2C) at products_stride
  float* const products = dw ? scratch(p_buffer, size_t(Q * products_stride)) : nullptr;
  for (int64_t n0 = 0; n0 < s.N; n0 += Nb) {
    const int64_t samples = s.N - n0 < Nb ? s.N - n0 : Nb;
    const int64_t x_stride = frequency_stride(2 * C * samples), y_stride = frequency_stride(2 * O * samples);
    transform_samples(dys, dy + n0 * O * g.P, samples, O, O * g.P, s.OH, s.OW, 0, 0, d);
    if (dx) {  // DX_q^T (n, 2C) = DY_q (n, 2O) E_q
      gemm_with_weights<false>(dxs, x_stride, d, s, wt, samples, 2 * C, 2 * O, [&](int64_t q) {
        return gemm_detail::MatrixA<float>{dys + q * y_stride, false, samples, 2 * O};
      });
      // the grid's rows and columns that hold the image: dx itself
      inverse_samples(dx + n0 * C * g.HW, dxs, samples, C, C * g.HW, s.ph, s.ph + s.H, s.pw, s.pw + s.W, nullptr, d);
    }
    if (dw) {  // products_q (2O, 2C) += DY_q^T (2O, n) X_q (n, 2C), the chunks in order
      transform_samples(xs, x + n0 * C * g.HW, samples, C, C * g.HW, s.H, s.W, s.ph, s.pw, d);
      gemm_per_frequency(
          products, products_stride, Q, 2 * O, 2 * C, samples, n0 > 0,
          [&](int64_t q) { return gemm_detail::MatrixA<float>{dys + q * y_stride, true, 2 * O, samples}; },
          [&](int64_t q) { return gemm_detail::MatrixB<float>{xs + q * x_stride, false, 2 * C, samples}; });
    }
  }
  if (dw) {
    // DW_q = conj(DY) X: real DYr Xr + DYi Xi, imaginary DYr Xi - DYi Xr, from the four blocks
    // of the products (rows o and O + o, columns c and C + c), then planes (o, c)
    const int64_t groups = ceil_div(C, kPlanes), taps = s.KH * s.KW, rs = 2 * C;
    for_planes(O * groups, [&](int64_t task) {
      const int64_t o = task / groups, c0 = (task % groups) * kPlanes, count = C - c0 < kPlanes ? C - c0 : kPlanes;
      inverse_planes(
          d,
          [&](int64_t q, vfloat& real, vfloat& imaginary) {
            const float* top = products + q * products_stride + o * rs + c0;
            const float* bottom = top + O * rs;
            real = load_lanes(top, count) + load_lanes(bottom + C, count);
            imaginary = load_lanes(top + C, count) - load_lanes(bottom, count);
          },
          count, 0, s.KH, 0, s.KW, dw + (o * C + c0) * taps, taps, vsplat(0.0f));
    });
  }
  if (db)
    for_planes(O, [&](int64_t o) {
      double total = 0.0;
      for (int64_t n = 0; n < s.N; ++n) total += sum_in_double(dy + (n * O + o) * g.P, g.P);
      db[o] = float(total);
    });
  return (!dx || all_finite(dx, s.N * C * g.HW)) && (!dw || all_finite(dw, O * C * s.KH * s.KW)) &&
         (!db || all_finite(db, O));
}
#endif

}  // namespace conv_detail
}  // namespace SJ_ISA
}  // namespace shenjing

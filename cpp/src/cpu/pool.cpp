// Pooling (see shenjing/pool.h): one plane per task; within a plane the
// backward scatters in a fixed order, so results do not depend on threads.
#include "shenjing/pool.h"

#include <cstring>
#include <limits>
#include <vector>

#include "shenjing/dispatch.h"
#include "shenjing/elementwise.h"

namespace shenjing {
namespace SJ_ISA {
namespace {

template <class F> void for_planes(const PoolShape& s, int64_t work_per_plane, F f) {
  parallel_for(s.planes, work_per_plane, f);
}

// First and one-past-last window tap k with 0 <= o stride - pad + k dilation < size.
inline void tap_range(int64_t o, int64_t stride, int64_t pad, int64_t dilation, int64_t taps, int64_t size,
                      int64_t* k0, int64_t* k1) {
  const int64_t start = o * stride - pad;
  int64_t lo, hi;
  if (dilation == 1) {  // without divisions
    lo = start >= 0 ? 0 : -start;
    hi = size - start;
  } else {
    lo = start >= 0 ? 0 : (-start + dilation - 1) / dilation;
    hi = size - start <= 0 ? 0 : (size - start + dilation - 1) / dilation;
  }
  *k0 = lo < taps ? lo : taps;
  *k1 = hi < taps ? (hi > *k0 ? hi : *k0) : taps;
}

#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
// The loop of max_pool2d_forward_2x2's run, 16 outputs at a time: the four taps by
// gathers from the offset table, the same comparisons as masks, the same answer
// (the compiler left the scalar loop scalar: 0.4-0.5 G inputs/s).
inline void max_pool_2x2_run(const float* xs, float* ys, int64_t* is, int64_t count, int64_t shift,
                             const int32_t* off, const int64_t* base_index, int64_t W) {
  const __m512i one = _mm512_set1_epi32(1), two = _mm512_set1_epi32(2), three = _mm512_set1_epi32(3);
  const __m512i down = _mm512_set1_epi32(int32_t(W));  // the tap below; the one to the right is + one
  const __m512i row_step = _mm512_set1_epi64(W), shift_v = _mm512_set1_epi64(shift);
  for (int64_t j = 0; j < count; j += 16) {
    const __mmask16 m = lanes_below(count - j);
    const __m512i o = _mm512_maskz_loadu_epi32(m, off + j);
    const __m512 zero = _mm512_setzero_ps();
    const __m512 a = _mm512_mask_i32gather_ps(zero, m, o, xs, 4);
    const __m512 b = _mm512_mask_i32gather_ps(zero, m, _mm512_add_epi32(o, one), xs, 4);
    const __m512 c = _mm512_mask_i32gather_ps(zero, m, _mm512_add_epi32(o, down), xs, 4);
    const __m512 d = _mm512_mask_i32gather_ps(zero, m, _mm512_add_epi32(_mm512_add_epi32(o, down), one), xs, 4);
    const __mmask16 b_wins = _mm512_cmp_ps_mask(b, a, _CMP_GT_OQ), d_wins = _mm512_cmp_ps_mask(d, c, _CMP_GT_OQ);
    const __m512 ab = _mm512_mask_blend_ps(b_wins, a, b), cd = _mm512_mask_blend_ps(d_wins, c, d);
    const __mmask16 later = _mm512_cmp_ps_mask(cd, ab, _CMP_GT_OQ);
    __m512 best = _mm512_mask_blend_ps(later, ab, cd);
    __m512i tap = _mm512_mask_blend_epi32(later, _mm512_maskz_mov_epi32(b_wins, one),
                                          _mm512_mask_blend_epi32(d_wins, two, three));
    // a NaN wins, and the last NaN tap with it
    const __mmask16 na = _mm512_cmp_ps_mask(a, a, _CMP_UNORD_Q), nb = _mm512_cmp_ps_mask(b, b, _CMP_UNORD_Q);
    const __mmask16 nc = _mm512_cmp_ps_mask(c, c, _CMP_UNORD_Q), nd = _mm512_cmp_ps_mask(d, d, _CMP_UNORD_Q);
    tap = _mm512_mask_mov_epi32(tap, na | nb | nc | nd, _mm512_setzero_si512());
    tap = _mm512_mask_mov_epi32(tap, nb, one);
    tap = _mm512_mask_mov_epi32(tap, nc, two);
    tap = _mm512_mask_mov_epi32(tap, nd, three);
    best = _mm512_mask_mov_ps(best, na, a);
    best = _mm512_mask_mov_ps(best, nb, b);
    best = _mm512_mask_mov_ps(best, nc, c);
    best = _mm512_mask_mov_ps(best, nd, d);
    _mm512_mask_storeu_ps(ys + j, m, best);
    // index: shift + the window's first input + (tap & 1) + (tap >> 1) W, in two halves of 8
    const __m512i column = _mm512_and_si512(tap, one), row = _mm512_srli_epi32(tap, 1);
    for (int h = 0; h < 2; ++h) {
      const __mmask8 mh = __mmask8(m >> (8 * h));
      if (!mh) break;
      const __m512i col64 = _mm512_cvtepi32_epi64(h ? _mm512_extracti64x4_epi64(column, 1) : _mm512_castsi512_si256(column));
      const __m512i row64 = _mm512_cvtepi32_epi64(h ? _mm512_extracti64x4_epi64(row, 1) : _mm512_castsi512_si256(row));
      __m512i index = _mm512_maskz_loadu_epi64(mh, base_index + j + 8 * h);
      index = _mm512_add_epi64(_mm512_add_epi64(index, shift_v), _mm512_add_epi64(col64, _mm512_mullo_epi64(row64, row_step)));
      _mm512_mask_storeu_epi64(is + j + 8 * h, mh, index);
    }
  }
}
#endif

// The 2x2, stride-2 window tiling the input exactly (H = 2 OH, W = 2 OW), as in most
// networks. Planes go in spans of at least 64 outputs whose window offsets are
// tabulated once, so the loop over a span's outputs is long and has no branches
// (AVX-512 runs it 16 outputs at a time, above); the general loop below spends its
// time on mispredicted compares in four-tap windows. Same answer: the maximum and the index
// of its first occurrence, or NaN and the index of the last NaN.
template <class T> bool max_pool2d_forward_2x2(T* y, int64_t* indices, const T* x, const PoolShape& s) {
  if (s.KH != 2 || s.KW != 2 || s.sh != 2 || s.sw != 2 || s.ph != 0 || s.pw != 0 || s.dh != 1 || s.dw != 1 ||
      s.H != 2 * s.OH || s.W != 2 * s.OW)
    return false;
  const int64_t per_plane = s.OH * s.OW, plane = s.H * s.W, W = s.W;
  // A unit is what one table covers: a span of whole planes when they are small, else one
  // output row, so the tables stay a few hundred entries for any image size.
  const bool whole_planes = per_plane < 64;
  const int64_t span = whole_planes ? ceil_div(64, per_plane) : 1;
  const int64_t unit = whole_planes ? span * per_plane : s.OW;
  std::vector<int32_t> offset(static_cast<size_t>(unit));  // tap a of output j, from the unit's first input
  std::vector<int64_t> first(static_cast<size_t>(unit));   // tap a of output j, in its plane (first row of the unit)
  for (int64_t j = 0; j < unit; ++j) {
    const int64_t p = j / per_plane, oh = (j % per_plane) / s.OW, ow = j % s.OW;
    first[size_t(j)] = whole_planes ? 2 * oh * W + 2 * ow : 2 * ow;
    offset[size_t(j)] = int32_t((whole_planes ? p * plane : 0) + first[size_t(j)]);
  }
  const int32_t* off = offset.data();
  const int64_t* base_index = first.data();
  // count outputs from xs / ys / is; `shift` is the unit's first input row within its plane
  auto run = [=](const T* xs, T* ys, int64_t* is, int64_t count, int64_t shift) {
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
    if constexpr (sizeof(T) == 4) return max_pool_2x2_run(xs, ys, is, count, shift, off, base_index, W);
#endif
    for (int64_t j = 0; j < count; ++j) {
      const T* win = xs + off[j];
      const T a = win[0], b = win[1], c = win[W], d = win[W + 1];
      const T ab = b > a ? b : a, cd = d > c ? d : c;
      const int64_t t_ab = b > a ? 1 : 0, t_cd = d > c ? 3 : 2;
      const bool later = cd > ab;
      T best = later ? cd : ab;
      int64_t tap = later ? t_cd : t_ab;
      const bool nan = (a != a) | (b != b) | (c != c) | (d != d);
      const int64_t last_nan = d != d ? 3 : (c != c ? 2 : (b != b ? 1 : 0));
      tap = nan ? last_nan : tap;
      best = nan ? (tap == 3 ? d : (tap == 2 ? c : (tap == 1 ? b : a))) : best;
      ys[j] = best;
      is[j] = shift + base_index[j] + (tap & 1) + (tap >> 1) * W;
    }
  };
  if (whole_planes) {
    const int64_t spans = s.planes / span, rest = s.planes - spans * span;
    parallel_for(spans, 4 * unit, [=](int64_t i) {
      run(x + i * span * plane, y + i * unit, indices + i * unit, unit, 0);
    });
    if (rest) run(x + spans * span * plane, y + spans * unit, indices + spans * unit, rest * per_plane, 0);
  } else {
    parallel_for(s.planes * s.OH, 4 * unit, [=](int64_t i) {  // output row oh of plane p
      const int64_t p = i / s.OH, oh = i % s.OH;
      run(x + p * plane + 2 * oh * W, y + i * unit, indices + i * unit, unit, 2 * oh * W);
    });
  }
  return true;
}

// The window's valid taps are found first, so the tap loops check no bounds.
template <class T> void max_pool2d_forward(T* y, int64_t* indices, const T* x, const PoolShape& shape) {
  const PoolShape s = shape;  // captured by value: stores through y cannot alias it
  if (max_pool2d_forward_2x2(y, indices, x, s)) return;
  for_planes(s, s.OH * s.OW * s.KH * s.KW, [=](int64_t p) {
    const T* xp = x + p * s.H * s.W;
    T* yp = y + p * s.OH * s.OW;
    int64_t* ip = indices + p * s.OH * s.OW;
    for (int64_t oh = 0; oh < s.OH; ++oh) {
      int64_t kh0, kh1;
      tap_range(oh, s.sh, s.ph, s.dh, s.KH, s.H, &kh0, &kh1);
      for (int64_t ow = 0; ow < s.OW; ++ow) {
        int64_t kw0, kw1;
        tap_range(ow, s.sw, s.pw, s.dw, s.KW, s.W, &kw0, &kw1);
        T best = -std::numeric_limits<T>::infinity();
        int64_t best_index = -1;
        if (kh0 < kh1 && kw0 < kw1) {
          const int64_t ih0 = oh * s.sh - s.ph, iw0 = ow * s.sw - s.pw;
          // Two short passes instead of one long dependency chain through
          // (value, index): the maximum (and whether a NaN is there), then the
          // index of its first occurrence, or of the last NaN, as PyTorch reports.
          bool nan = false;
          for (int64_t kh = kh0; kh < kh1; ++kh) {
            const T* row = xp + (ih0 + kh * s.dh) * s.W + iw0;
            for (int64_t kw = kw0; kw < kw1; ++kw) {
              const T v = row[kw * s.dw];
              best = v > best ? v : best;
              nan |= v != v;
            }
          }
          for (int64_t kh = kh1 - 1; kh >= kh0; --kh) {  // backwards: the first match found last wins
            const int64_t row = (ih0 + kh * s.dh) * s.W + iw0;
            for (int64_t kw = kw1 - 1; kw >= kw0; --kw) {
              const T v = xp[row + kw * s.dw];
              best_index = (nan ? v != v && best_index < 0 : v == best) ? row + kw * s.dw : best_index;
            }
          }
          if (nan) best = xp[best_index];
        }
        yp[oh * s.OW + ow] = best;
        ip[oh * s.OW + ow] = best_index;
      }
    }
  });
}

template <class T> int64_t max_pool2d_backward(T* dx, const T* dy, const int64_t* indices, const PoolShape& s) {
  const int64_t outputs = s.planes * s.OH * s.OW, plane = s.H * s.W;
  // the indices checked before anything is written, chunk by chunk on the threads (one
  // thread's pass took a third of a 64x32x24x24 backward); the first bad one overall
  std::vector<int64_t> first_bad(size_t(ceil_div(outputs, kElementChunk)), -1);
  parallel_chunks(outputs, kElementChunk, 1, [&](int64_t chunk, int64_t begin, int64_t end) {
    for (int64_t o = begin; o < end; ++o)
      if (indices[o] < -1 || indices[o] >= plane) {
        first_bad[size_t(chunk)] = o;
        return;
      }
  });
  for (const int64_t o : first_bad)
    if (o >= 0) return o;
  for_planes(s, s.H * s.W + s.OH * s.OW, [&](int64_t p) {
    T* dxp = dx + p * s.H * s.W;
    std::memset(dxp, 0, sizeof(T) * size_t(s.H * s.W));
    const T* dyp = dy + p * s.OH * s.OW;
    const int64_t* ip = indices + p * s.OH * s.OW;
    for (int64_t o = 0; o < s.OH * s.OW; ++o)
      if (ip[o] >= 0) dxp[ip[o]] += dyp[o];
  });
  return -1;
}

// --- average pooling: the window sums are separable --------------------------------
// Each output row sums its window's input rows into one row of W (vector adds),
// then each output sums its window's columns of that row: KH W + KW adds an
// output row instead of a bounds check and KH KW scalar adds per output (a 2x2
// average pool ran at 8 ns an output). The backward does the same in reverse.

// Windows along one axis, per output index: the taps [lo, hi) clipped to the input,
// and `padded`, the window's length counting padding (PyTorch's count_include_pad).
struct AxisWindows {
  std::vector<int64_t> lo, hi, padded;
  explicit AxisWindows(int64_t n) : lo(size_t(n)), hi(size_t(n)), padded(size_t(n)) {}
};
// a strided window (PyTorch: the padded window ends at most at size + pad)
inline AxisWindows strided_windows(int64_t out, int64_t size, int64_t stride, int64_t pad, int64_t taps) {
  AxisWindows a(out);
  for (int64_t o = 0; o < out; ++o) {
    const int64_t start = o * stride - pad, end = start + taps < size + pad ? start + taps : size + pad;
    a.padded[size_t(o)] = end - start;
    a.lo[size_t(o)] = start > 0 ? start : 0;
    a.hi[size_t(o)] = end < size ? end : size;
  }
  return a;
}
inline int64_t adaptive_start(int64_t i, int64_t in, int64_t out) { return (i * in) / out; }
inline int64_t adaptive_end(int64_t i, int64_t in, int64_t out) { return ((i + 1) * in + out - 1) / out; }
inline AxisWindows adaptive_windows(int64_t out, int64_t size) {
  AxisWindows a(out);
  for (int64_t o = 0; o < out; ++o) {
    a.lo[size_t(o)] = adaptive_start(o, size, out);
    a.hi[size_t(o)] = adaptive_end(o, size, out);
    a.padded[size_t(o)] = a.hi[size_t(o)] - a.lo[size_t(o)];
  }
  return a;
}

// What each window's sum is divided by, as a row factor times a column factor (small
// integers, so their float product is exact): `divisor` when given (> 0), else the
// window's size with or without its padding. An empty window has sum 0 and size 0:
// its output is 0/0 = NaN, as PyTorch's.
template <class T> struct AvgDivisors {
  std::vector<T> row, col;
  bool uniform = false;  // every window has the same divisor, `plane` (as without padding)
  T plane = T(1);
  AvgDivisors(const AxisWindows& rows, const AxisWindows& cols, bool count_include_pad, int64_t divisor)
      : row(rows.lo.size()), col(cols.lo.size()) {
    auto factor = [&](const AxisWindows& a, size_t o) {
      const int64_t clipped = a.hi[o] > a.lo[o] ? a.hi[o] - a.lo[o] : 0;
      return T(count_include_pad ? a.padded[o] : clipped);
    };
    for (size_t o = 0; o < row.size(); ++o) row[o] = divisor > 0 ? T(divisor) : factor(rows, o);
    for (size_t o = 0; o < col.size(); ++o) col[o] = divisor > 0 ? T(1) : factor(cols, o);
    uniform = !row.empty() && !col.empty();
    for (const T r : row) uniform = uniform && r == row[0];
    for (const T c : col) uniform = uniform && c == col[0];
    if (uniform) plane = row[0] * col[0];
  }
};

// Windows of two columns tiling the row (2 wide, stride 2, no padding, none clipped):
// the horizontal step of a 2x2 pool is then pairwise sums, and its backward spreads
// each gradient to a pair, both a vector at a time (the scalar loops took 60% of the
// time of a 64x32x24x24 pool).
inline bool column_pairs(const PoolShape& s) { return s.KW == 2 && s.sw == 2 && s.pw == 0 && 2 * s.OW <= s.W; }  // strided windows

// y[o] = r[2o] + r[2o + 1] for o < n
template <class T> inline void pair_sums(T* __restrict y, const T* __restrict r, int64_t n) {
  int64_t o = 0;
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
  if constexpr (sizeof(T) == 4) {
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    for (; o < n; o += 16) {
      const __m512 lo = _mm512_maskz_loadu_ps(lanes_below(2 * (n - o)), r + 2 * o);
      const __m512 hi = _mm512_maskz_loadu_ps(lanes_below(2 * (n - o) - 16), r + 2 * o + 16);
      const __m512 sums = _mm512_add_ps(_mm512_permutex2var_ps(lo, even, hi), _mm512_permutex2var_ps(lo, odd, hi));
      _mm512_mask_storeu_ps(y + o, lanes_below(n - o), sums);
    }
  }
#endif
  for (; o < n; ++o) y[o] = r[2 * o] + r[2 * o + 1];
}

// t[2o] = t[2o + 1] = g[o] for o < n
template <class T> inline void pair_spread(T* __restrict t, const T* __restrict g, int64_t n) {
  int64_t o = 0;
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
  if constexpr (sizeof(T) == 4) {
    const __m512i first = _mm512_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7);
    const __m512i second = _mm512_add_epi32(first, _mm512_set1_epi32(8));
    for (; o < n; o += 16) {
      const __m512 v = _mm512_maskz_loadu_ps(lanes_below(n - o), g + o);
      _mm512_mask_storeu_ps(t + 2 * o, lanes_below(2 * (n - o)), _mm512_permutexvar_ps(first, v));
      _mm512_mask_storeu_ps(t + 2 * o + 16, lanes_below(2 * (n - o) - 16), _mm512_permutexvar_ps(second, v));
    }
  }
#endif
  for (; o < n; ++o) t[2 * o] = t[2 * o + 1] = g[o];
}

// y (planes, OH, OW) = the window sums of x (planes, H, W) over their divisors. A plane
// at a time: its window rows summed into rows of W, then their columns, then (when every
// window has the same divisor, as without padding) one division over the plane's outputs;
// row by row, each step a few values long, a 64x128x8x8 pool took 6.5x a max pool's time.
// Each sum starts from +0 and adds its taps in order, as before.
template <class T>
void avg_pool_forward(T* y, const T* x, const PoolShape& s, const AxisWindows& rows, const AxisWindows& cols,
                      const AvgDivisors<T>& div, bool pairs) {
  // the row sums of a plane lie in one buffer, so 2x2 windows tiling it sum their
  // column pairs in one pass over all of it
  const bool flat_pairs = pairs && 2 * s.OW == s.W;
  for_planes(s, s.OH * (s.KH * s.W + s.OW * s.KW), [&](int64_t p) {
    static thread_local std::vector<T> row_buffer;
    T* __restrict r = scratch(row_buffer, size_t(s.OH * s.W));
    const T* xp = x + p * s.H * s.W;
    T* __restrict yp = y + p * s.OH * s.OW;
    for (int64_t oh = 0; oh < s.OH; ++oh) {
      T* __restrict ro = r + oh * s.W;
      const int64_t h0 = rows.lo[size_t(oh)], h1 = rows.hi[size_t(oh)];
      if (h0 < h1) {
        const T* __restrict x0 = xp + h0 * s.W;
        for (int64_t w = 0; w < s.W; ++w) ro[w] = T(0) + x0[w];
      } else {
        for (int64_t w = 0; w < s.W; ++w) ro[w] = T(0);
      }
      for (int64_t h = h0 + 1; h < h1; ++h) {
        const T* __restrict xr = xp + h * s.W;
        for (int64_t w = 0; w < s.W; ++w) ro[w] += xr[w];
      }
      if (flat_pairs) continue;
      T* __restrict yr = yp + oh * s.OW;
      if (pairs) {
        pair_sums(yr, ro, s.OW);
      } else {
        for (int64_t ow = 0; ow < s.OW; ++ow) {
          T sum = 0;
          for (int64_t w = cols.lo[size_t(ow)]; w < cols.hi[size_t(ow)]; ++w) sum += ro[w];
          yr[ow] = sum;
        }
      }
    }
    if (flat_pairs) pair_sums(yp, r, s.OH * s.OW);
    if (div.uniform) {
      for (int64_t i = 0; i < s.OH * s.OW; ++i) yp[i] /= div.plane;  // a vector division
    } else {
      for (int64_t oh = 0; oh < s.OH; ++oh) {
        const T row_div = div.row[size_t(oh)];
        const T* __restrict col_div = div.col.data();
        T* __restrict yr = yp + oh * s.OW;
        for (int64_t ow = 0; ow < s.OW; ++ow) yr[ow] /= row_div * col_div[ow];
      }
    }
  });
}

// whether the windows along an axis cut it into consecutive runs, each element in one
// (a 2x2, stride-2 pool of an even size)
inline bool tiles_exactly(const AxisWindows& a, int64_t size) {
  int64_t next = 0;
  for (size_t o = 0; o < a.lo.size(); ++o) {
    if (a.lo[o] != next || a.hi[o] < a.lo[o]) return false;
    next = a.hi[o];
  }
  return next == size;
}

// dx (planes, H, W) = each dy over its divisor, spread over its window (dx overwritten).
// A plane at a time, as the forward: the divisions over the whole plane when they are
// all the same, and rows that belong to one window each written once instead of zeroed
// and added to (dx = 0 + t as before, so -0 still comes out +0).
template <class T>
void avg_pool_backward(T* dx, const T* dy, const PoolShape& s, const AxisWindows& rows, const AxisWindows& cols,
                       const AvgDivisors<T>& div, bool pairs) {
  const bool row_tiling = tiles_exactly(rows, s.H);
  for_planes(s, s.H * s.W + s.OH * (s.KH * s.W + s.OW * s.KW), [&](int64_t p) {
    static thread_local std::vector<T> buffer;
    T* __restrict g = scratch(buffer, size_t(s.OH * s.OW + s.W + 16));
    T* __restrict t = g + (s.OH * s.OW + 15) / 16 * 16;
    const T* __restrict dyp = dy + p * s.OH * s.OW;
    T* dxp = dx + p * s.H * s.W;
    if (div.uniform) {
      for (int64_t i = 0; i < s.OH * s.OW; ++i) g[i] = dyp[i] / div.plane;
    } else {
      for (int64_t oh = 0; oh < s.OH; ++oh) {
        const T row_div = div.row[size_t(oh)];
        const T* __restrict col_div = div.col.data();
        for (int64_t ow = 0; ow < s.OW; ++ow) g[oh * s.OW + ow] = dyp[oh * s.OW + ow] / (row_div * col_div[ow]);
      }
    }
    if (!row_tiling) std::memset(dxp, 0, sizeof(T) * size_t(s.H * s.W));
    for (int64_t oh = 0; oh < s.OH; ++oh) {
      const T* __restrict gr = g + oh * s.OW;
      if (pairs) {
        pair_spread(t, gr, s.OW);
        for (int64_t w = 2 * s.OW; w < s.W; ++w) t[w] = T(0);
      } else {
        for (int64_t w = 0; w < s.W; ++w) t[w] = T(0);
        for (int64_t ow = 0; ow < s.OW; ++ow)  // (an empty window, whose g is not finite, adds nothing)
          for (int64_t w = cols.lo[size_t(ow)]; w < cols.hi[size_t(ow)]; ++w) t[w] += gr[ow];
      }
      for (int64_t h = rows.lo[size_t(oh)]; h < rows.hi[size_t(oh)]; ++h) {
        T* __restrict dr = dxp + h * s.W;
        if (row_tiling)
          for (int64_t w = 0; w < s.W; ++w) dr[w] = T(0) + t[w];
        else
          for (int64_t w = 0; w < s.W; ++w) dr[w] += t[w];
      }
    }
  });
}

template <class T>
void avg_pool2d_forward(T* y, const T* x, const PoolShape& s, bool count_include_pad, int64_t divisor) {
  const AxisWindows rows = strided_windows(s.OH, s.H, s.sh, s.ph, s.KH), cols = strided_windows(s.OW, s.W, s.sw, s.pw, s.KW);
  avg_pool_forward(y, x, s, rows, cols, AvgDivisors<T>(rows, cols, count_include_pad, divisor), column_pairs(s));
}
template <class T>
void avg_pool2d_backward(T* dx, const T* dy, const PoolShape& s, bool count_include_pad, int64_t divisor) {
  const AxisWindows rows = strided_windows(s.OH, s.H, s.sh, s.ph, s.KH), cols = strided_windows(s.OW, s.W, s.sw, s.pw, s.KW);
  avg_pool_backward(dx, dy, s, rows, cols, AvgDivisors<T>(rows, cols, count_include_pad, divisor), column_pairs(s));
}
template <class T> void adaptive_avg_pool2d_forward(T* y, const T* x, const PoolShape& s) {
  const AxisWindows rows = adaptive_windows(s.OH, s.H), cols = adaptive_windows(s.OW, s.W);
  avg_pool_forward(y, x, s, rows, cols, AvgDivisors<T>(rows, cols, false, 0), false);
}
template <class T> void adaptive_avg_pool2d_backward(T* dx, const T* dy, const PoolShape& s) {
  const AxisWindows rows = adaptive_windows(s.OH, s.H), cols = adaptive_windows(s.OW, s.W);
  avg_pool_backward(dx, dy, s, rows, cols, AvgDivisors<T>(rows, cols, false, 0), false);
}

template <class T> void fill(PoolKernels<T>& k) {
  k.max_pool2d_forward = max_pool2d_forward<T>;
  k.max_pool2d_backward = max_pool2d_backward<T>;
  k.avg_pool2d_forward = avg_pool2d_forward<T>;
  k.avg_pool2d_backward = avg_pool2d_backward<T>;
  k.adaptive_avg_pool2d_forward = adaptive_avg_pool2d_forward<T>;
  k.adaptive_avg_pool2d_backward = adaptive_avg_pool2d_backward<T>;
}

}  // namespace

void register_pool(KernelSet& k) {
  fill(k.f32.pool);
  fill(k.f64.pool);
}

}  // namespace SJ_ISA
}  // namespace shenjing

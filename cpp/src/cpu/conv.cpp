// Convolution (see shenjing/conv.h) as GEMM through the driver of
// gemm_driver.h, whose B panels are packed straight from the image (no
// im2col buffer for the forward or the weight gradient):
//   forward  y_ng (Og, P)  = W_g (Og, Kc) col_ng (Kc, P) + bias
//   weight   dW_g^T (Kc, Og) = col (Kc, S P) dy^T (S P, Og) over a chunk of S samples,
//            or for stride 1 and 16+ channels dW_g (Og, Kc) = dy^T shifted from
//            channels-last copies (see ShiftedChannelsB), or for fewer channels
//            (AVX-512) dot products along output rows (see direct_tile)
//   input    dcol (Kc, P)  = W_g^T dy_ng, scattered back by col2im (one
//            sample's columns per thread)
// with col(k = (c, kh, kw), p = (oh, ow)) = x[c, oh sh - ph + kh dh, ow sw - pw + kw dw]
// (0 outside the image). 1x1 convolutions with stride 1 and no padding read x
// as the columns. On AVX-512, 3x3 and 5x5 windows at stride 1 with enough channels take
// Winograd F(2x2, 3x3) instead, where it measured faster (conv_winograd.cpp); on AVX2 and
// AVX-512, 5x5 and wider ones (grids up to 64 a side, batches of 16+) the Fourier form
// (conv_fourier.cpp).
//
// Threads take (sample, group) or (chunk, group) tasks with one-thread GEMMs
// when there are enough of them, else the GEMMs use every thread. dW and db
// are summed per fixed chunk of samples and the chunks added in order, so
// every result is bit-identical with any thread count.
#include "shenjing/conv.h"

#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "shenjing/dispatch.h"
#include "shenjing/elementwise.h"
#include "shenjing/conv_internal.h"
#include "shenjing/gemm_driver.h"
#include "shenjing/gemm_internal.h"

namespace shenjing {
namespace SJ_ISA {
using namespace conv_detail;  // Geometry, the channels-last copies, for_tasks, Winograd
namespace {

// Rows and columns of the zero-padded input that the windows reach (the padded copies' Hp, Wp)
inline int64_t reach_rows(const ConvShape& s) { return (s.OH - 1) * s.sh + (s.KH - 1) * s.dh + 1; }
inline int64_t reach_cols(const ConvShape& s) { return (s.OW - 1) * s.sw + (s.KW - 1) * s.dw + 1; }

// The u in [0, count) whose input column offset + u stride lies in [0, size): [lo, hi).
inline void valid_range(int64_t offset, int64_t stride, int64_t size, int64_t count, int64_t* lo, int64_t* hi) {
  int64_t l, h;
  if (stride == 1) {  // the common case, without divisions
    l = offset >= 0 ? 0 : -offset;
    h = size - offset;
  } else {
    l = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
    h = size - offset <= 0 ? 0 : (size - offset + stride - 1) / stride;
  }
  l = l < count ? l : count;
  h = h < count ? h : count;
  *lo = l;
  *hi = h > l ? h : l;
}

#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
constexpr int64_t kMaxGatheredTaps = 64;  // kernel widths col2im_rows takes (wider ones scatter)

// col2im_add for width stride 1, gathered by output instead of scattered: each 16 pixels
// of a dx row add up every tap that reaches them, (kh, kw) -> column row (c, kh, kw),
// output row ih + ph - kh dh, the 16 columns shifted by kw dw - pw (a masked load: lanes
// whose output column is off the grid read nothing), and are stored once. The scatter
// added each tap's run into dx in turn, so every add waited for the previous one's store
// to the same pixels (a fifth of LeNet conv2's backward).
void col2im_rows(float* dx, const float* col, const ConvShape& s, int64_t Cg) {
  const int64_t P = s.OH * s.OW;
  __mmask16 valid[kMaxGatheredTaps];  // per kw, for one 16-column chunk of dx rows
  int64_t shift[kMaxGatheredTaps];    // lane l of tap kw reads output column shift[kw] + l
  for (int64_t iw0 = 0; iw0 < s.W; iw0 += 16) {
    for (int64_t kw = 0; kw < s.KW; ++kw) {
      shift[kw] = iw0 + s.pw - kw * s.dw;
      valid[kw] = lanes_between(-shift[kw], s.OW - shift[kw]);
    }
    const __mmask16 row = lanes_below(s.W - iw0);
    for (int64_t c = 0; c < Cg; ++c) {
      const float* col_c = col + c * s.KH * s.KW * P;
      for (int64_t ih = 0; ih < s.H; ++ih) {
        // four sums, taps dealt in turn: one chain of 25 dependent adds was the bound
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t kh = 0; kh < s.KH; ++kh) {
          int64_t oh = ih + s.ph - kh * s.dh;  // the output row whose window row kh is ih
          if (s.sh != 1) {                      // (stride sh: only rows it divides)
            if (oh < 0 || oh % s.sh != 0) continue;
            oh /= s.sh;
          }
          if (oh < 0 || oh >= s.OH) continue;
          const float* taps = col_c + kh * s.KW * P + oh * s.OW;  // tap kw's row: taps + kw P
          auto tap = [&](int64_t kw) { return _mm512_maskz_loadu_ps(valid[kw], taps + kw * P + shift[kw]); };
          int64_t kw = 0;
          for (; kw + 4 <= s.KW; kw += 4) {
            a0 = _mm512_add_ps(a0, tap(kw));
            a1 = _mm512_add_ps(a1, tap(kw + 1));
            a2 = _mm512_add_ps(a2, tap(kw + 2));
            a3 = _mm512_add_ps(a3, tap(kw + 3));
          }
          if (kw < s.KW) a0 = _mm512_add_ps(a0, tap(kw));
          if (kw + 1 < s.KW) a1 = _mm512_add_ps(a1, tap(kw + 1));
          if (kw + 2 < s.KW) a2 = _mm512_add_ps(a2, tap(kw + 2));
          __m512 t = a0;  // rotate, so that the next row's first taps go to other sums
          a0 = a1, a1 = a2, a2 = a3, a3 = t;
        }
        float* out = dx + c * s.H * s.W + ih * s.W + iw0;
        const __m512 total = _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3));
        _mm512_mask_storeu_ps(out, row, _mm512_add_ps(total, _mm512_maskz_loadu_ps(row, out)));
      }
    }
  }
}
#endif

// dx: (Cg, H, W) += the columns col (Kc, P) scattered back (the adjoint of im2col)
template <class T> void col2im_add(T* dx, const T* col, const ConvShape& s, int64_t Cg) {
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
  if constexpr (sizeof(T) == 4) {
    if (s.sw == 1 && s.KW <= kMaxGatheredTaps) return col2im_rows(dx, col, s, Cg);
  }
#endif
  const int64_t P = s.OH * s.OW;
  for (int64_t c = 0; c < Cg; ++c) {
    T* dxc = dx + c * s.H * s.W;
    for (int64_t kh = 0; kh < s.KH; ++kh) {
      for (int64_t kw = 0; kw < s.KW; ++kw) {
        const T* row = col + ((c * s.KH + kh) * s.KW + kw) * P;
        int64_t lo, hi;
        valid_range(kw * s.dw - s.pw, s.sw, s.W, s.OW, &lo, &hi);
        for (int64_t oh = 0; oh < s.OH; ++oh) {
          const int64_t ih = oh * s.sh - s.ph + kh * s.dh;
          if (ih < 0 || ih >= s.H) continue;
          T* dr = dxc + ih * s.W + kw * s.dw - s.pw;
          const T* in = row + oh * s.OW;
          if (s.sw == 1) {
            for (int64_t ow = lo; ow < hi; ++ow) dr[ow] += in[ow];
          } else {
            for (int64_t ow = lo; ow < hi; ++ow) dr[ow * s.sw] += in[ow];
          }
        }
      }
    }
  }
}

// out[t] = in[t] for t in [lo, hi), 0 for the rest of [0, length): one row of
// a panel. Short runs are the rule on small images, so AVX-512 does it with
// masked loads and stores (masked-off lanes touch no memory) instead of
// memcpy calls and fill loops.
template <class T> inline void copy_window(T* out, const T* in, int64_t length, int64_t lo, int64_t hi) {
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
  if constexpr (sizeof(T) == 4) {
    for (int64_t t0 = 0; t0 < length; t0 += 16) {
      const __m512 v = _mm512_maskz_loadu_ps(lanes_between(lo - t0, hi - t0), in + t0);
      _mm512_mask_storeu_ps(out + t0, lanes_below(length - t0), v);
    }
    return;
  }
#endif
  for (int64_t t = 0; t < lo; ++t) out[t] = T(0);
  for (int64_t t = lo; t < hi; ++t) out[t] = in[t];
  for (int64_t t = hi; t < length; ++t) out[t] = T(0);
}

// out[t] = in[t] for t in [0, length): copy_window for a run that lies inside its
// input row, without the window's two masks per vector
template <class T> inline void copy_run(T* out, const T* in, int64_t length) {
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
  if constexpr (sizeof(T) == 4) {
    for (int64_t t0 = 0; t0 < length; t0 += 16) {
      const __mmask16 m = lanes_below(length - t0);
      _mm512_mask_storeu_ps(out + t0, m, _mm512_maskz_loadu_ps(m, in + t0));
    }
    return;
  }
#endif
  std::memcpy(out, in, sizeof(T) * size_t(length));
}

#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
// A row for the lanes past a panel's columns: below the image whatever the tap adds.
constexpr int32_t kNoRow = -(1 << 30);

// Whether a channel's offsets, a window corner plus a tap, and the row marker above all
// stay in int32 (the gathers index a channel with 32-bit lanes).
inline bool gather_offsets_fit(const ConvShape& c) {
  constexpr int64_t kLimit = int64_t(1) << 28;
  return c.H * c.W < kLimit && c.H < kLimit && c.W < kLimit && (c.KH - 1) * c.dh < kLimit &&
         (c.KW - 1) * c.dw < kLimit && (c.OH - 1) * c.sh + c.ph < kLimit && (c.OW - 1) * c.sw + c.pw < kLimit &&
         c.ph < kLimit && c.pw < kLimit;
}
#endif

// Output rows of 8 pixels whose window rows fit 16 lanes, which ImageColumnsB packs as
// pairs (pack_row_pairs, AVX-512 float)
inline bool row_pairs_fit(const ConvShape& c) { return c.OW == 8 && c.sw == 1 && 7 + (c.KW - 1) * c.dw < 16; }

// op(B) = col of one (sample, group): (Kc, P), k = (c, kh, kw), j = (oh, ow)
template <class T> struct ImageColumnsB : gemm_detail::PackedOperand<T> {
  const T* x;  // (Cg, H, W)
  const ConvShape* s;
  // Each k row of a panel holds the output columns j0 .. j0+n: runs of
  // consecutive ow within one output row, which read one input row at stride sw.
  void pack(T* dst, int64_t k0, int64_t kc, int64_t j0, int64_t n) const {
    constexpr int64_t NR = GemmBlocking<T>::NV * Simd<T>::lanes;
    const ConvShape& c = *s;
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
    if constexpr (sizeof(T) == 4 && NR == 32) {
      if (row_pairs_fit(c)) return pack_row_pairs(dst, k0, kc, j0, n);
      if (c.OW < 16 && gather_offsets_fit(c)) return pack_gathered(dst, k0, kc, j0, n);
    }
#endif
    int64_t run_start[NR], run_length[NR], run_ih[NR], run_iw[NR], runs = 0;
    for (int64_t j = 0; j < n;) {
      const int64_t p = j0 + j, oh = p / c.OW, ow = p % c.OW;
      const int64_t length = n - j < c.OW - ow ? n - j : c.OW - ow;
      run_start[runs] = j, run_length[runs] = length;
      run_ih[runs] = oh * c.sh - c.ph, run_iw[runs] = ow * c.sw - c.pw;
      ++runs;
      j += length;
    }
    const int64_t taps = c.KH * c.KW;
    int64_t ch = k0 / taps, kh = (k0 % taps) / c.KW, kw = k0 % c.KW;
    for (int64_t k = 0; k < kc; ++k) {
      const T* xc = x + ch * c.H * c.W;
      T* row = dst + k * NR;
      for (int64_t r = 0; r < runs; ++r) {
        T* out = row + run_start[r];
        const int64_t length = run_length[r];
        const int64_t ih = run_ih[r] + kh * c.dh;
        if (uint64_t(ih) >= uint64_t(c.H)) {
          for (int64_t t = 0; t < length; ++t) out[t] = T(0);
          continue;
        }
        const int64_t iw0 = run_iw[r] + kw * c.dw;  // input column of out[t] is iw0 + t sw
        const T* in = xc + ih * c.W + iw0;
        if (c.sw == 1 && iw0 >= 0 && iw0 + length <= c.W) {  // inside the row: a plain copy, no edges to find
          copy_run(out, in, length);
          continue;
        }
        int64_t lo, hi;
        valid_range(iw0, c.sw, c.W, length, &lo, &hi);
        if (c.sw == 1) {
          copy_window(out, in, length, lo, hi);
        } else {
          for (int64_t t = 0; t < lo; ++t) out[t] = T(0);
          for (int64_t t = lo; t < hi; ++t) out[t] = in[t * c.sw];
          for (int64_t t = hi; t < length; ++t) out[t] = T(0);
        }
      }
      for (int64_t j = n; j < NR; ++j) row[j] = T(0);
      if (++kw == c.KW) {
        kw = 0;
        if (++kh == c.KH) kh = 0, ++ch;
      }
    }
  }

#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
  // Output rows of 8 pixels, width stride 1, a window row within 16 lanes (LeNet conv2:
  // 12x12 under 5x5; 8x8 under 3x3, padded): each 16 columns of a panel are two output
  // rows, and for one (channel, kernel row) the window rows they read are two input
  // rows, loaded once (masked to the image, so the padding is 0). Every tap kw of that
  // kernel row is then one two-source permute of the pair: lanes 0-7 from the first row
  // at kw dw + ow, 8-15 from the second. (The gathers took 16 cycles a vector.)
  void pack_row_pairs(float* dst, int64_t k0, int64_t kc, int64_t j0, int64_t n) const {
    const ConvShape& c = *s;
    int64_t ih0[4];  // window top row of each output row of the panel (a row past n: none)
    for (int64_t q = 0; q < 4; ++q) ih0[q] = 8 * q < n ? ((j0 + 8 * q) / 8) * c.sh - c.ph : kNoRow;
    const __mmask16 inside = lanes_between(c.pw, c.pw + c.W);  // lane t: input column t - pw
    const __mmask16 live[2] = {lanes_below(n), lanes_below(n - 16)};
    const __m512i lane = _mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0);
    // lane l < 8 takes the first row's lane l, lane l >= 8 the second row's lane l - 8 (index
    // bit 4 picks the second source), each shifted by the tap
    const __m512i pair_index = _mm512_add_epi32(_mm512_and_si512(lane, _mm512_set1_epi32(7)),
                                                _mm512_slli_epi32(_mm512_and_si512(lane, _mm512_set1_epi32(8)), 1));
    const int64_t taps = c.KH * c.KW;
    int64_t ch = k0 / taps, kh = (k0 % taps) / c.KW, kw = k0 % c.KW;
    __m512 rows[4];
    bool loaded = false;
    for (int64_t k = 0; k < kc; ++k) {
      if (!loaded) {  // the window rows of (ch, kh) for the panel's four output rows
        const float* xc = x + ch * c.H * c.W - c.pw;
        for (int64_t q = 0; q < 4; ++q) {
          const int64_t ih = ih0[q] + kh * c.dh;
          rows[q] = uint64_t(ih) < uint64_t(c.H) ? _mm512_maskz_loadu_ps(inside, xc + ih * c.W) : _mm512_setzero_ps();
        }
        loaded = true;
      }
      const __m512i index = _mm512_add_epi32(pair_index, _mm512_set1_epi32(int32_t(kw * c.dw)));
      _mm512_storeu_ps(dst + k * 32, _mm512_maskz_permutex2var_ps(live[0], rows[0], index, rows[1]));
      _mm512_storeu_ps(dst + k * 32 + 16, _mm512_maskz_permutex2var_ps(live[1], rows[2], index, rows[3]));
      if (++kw == c.KW) {
        kw = 0, loaded = false;
        if (++kh == c.KH) kh = 0, ++ch;
      }
    }
  }

  // Output rows shorter than a vector (8 pixels under a 5x5 kernel) cut each panel row
  // into several runs, and copying them one by one cost as much as the products. Here
  // each lane keeps its output pixel's window corner, and a panel row is two masked
  // gathers at that corner plus the tap's offset (lanes whose tap falls in the padding,
  // or past the panel's n columns, read nothing and hold 0).
  void pack_gathered(float* dst, int64_t k0, int64_t kc, int64_t j0, int64_t n) const {
    const ConvShape& c = *s;
    alignas(64) int32_t corner_h[32], corner_w[32];
    for (int64_t j = 0; j < 32; ++j) {
      const int64_t p = j0 + j, oh = p / c.OW, ow = p % c.OW;
      corner_h[j] = j < n ? int32_t(oh * c.sh - c.ph) : kNoRow;
      corner_w[j] = j < n ? int32_t(ow * c.sw - c.pw) : 0;
    }
    __m512i ih0[2], iw0[2], offset0[2];
    const __m512i width = _mm512_set1_epi32(int32_t(c.W)), height = _mm512_set1_epi32(int32_t(c.H));
    for (int v = 0; v < 2; ++v) {
      ih0[v] = _mm512_load_si512(corner_h + 16 * v);
      iw0[v] = _mm512_load_si512(corner_w + 16 * v);
      offset0[v] = _mm512_add_epi32(_mm512_mullo_epi32(ih0[v], width), iw0[v]);
    }
    const int64_t taps = c.KH * c.KW;
    int64_t ch = k0 / taps, kh = (k0 % taps) / c.KW, kw = k0 % c.KW;
    for (int64_t k = 0; k < kc; ++k) {
      const float* xc = x + ch * c.H * c.W;
      const __m512i dh = _mm512_set1_epi32(int32_t(kh * c.dh)), dw = _mm512_set1_epi32(int32_t(kw * c.dw));
      const __m512i shift = _mm512_set1_epi32(int32_t(kh * c.dh * c.W + kw * c.dw));
      for (int v = 0; v < 2; ++v) {
        // unsigned compares: a negative row or column is past the image too
        const __mmask16 inside = _mm512_cmplt_epu32_mask(_mm512_add_epi32(ih0[v], dh), height) &
                                 _mm512_cmplt_epu32_mask(_mm512_add_epi32(iw0[v], dw), width);
        const __m512 values = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), inside,
                                                       _mm512_add_epi32(offset0[v], shift), xc, 4);
        _mm512_storeu_ps(dst + k * 32 + 16 * v, values);
      }
      if (++kw == c.KW) {
        kw = 0;
        if (++kh == c.KH) kh = 0, ++ch;
      }
    }
  }
#endif
};

// op(A) = col over S consecutive samples: (Kc, S P), row q = (c, kh, kw),
// column k = (sample, oh, ow). A row of a block reads runs of consecutive ow
// from one input row; the runs are found once per block.
template <class T> struct ImageColumnsA : gemm_detail::PackedOperand<T> {
  const T* x;  // (Cg, H, W) of the first sample; the next one is sample_stride further
  const ConvShape* s;
  int64_t sample_stride;
  struct Run {  // panel columns k .. k+length: consecutive ow of one output row
    int64_t k, length, sample_offset, ih, iw;
  };
  void pack(T* dst, int64_t i0, int64_t m, int64_t k0, int64_t kc) const {
    constexpr int MR = GemmBlocking<T>::MR;
    const ConvShape& c = *s;
    const int64_t P = c.OH * c.OW, taps = c.KH * c.KW;
    static thread_local std::vector<Run> runs;
    runs.clear();
    for (int64_t k = 0; k < kc;) {
      const int64_t kk = k0 + k, sample = kk / P, p = kk % P, oh = p / c.OW, ow = p % c.OW;
      const int64_t length = kc - k < c.OW - ow ? kc - k : c.OW - ow;
      runs.push_back({k, length, sample * sample_stride, oh * c.sh - c.ph, ow * c.sw - c.pw});
      k += length;
    }
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
    if constexpr (sizeof(T) == 4 && MR <= 16) {
      if (c.sw == 1) return pack_transposed(dst, i0, m, kc, runs);
    }
#endif
    for (int64_t t = 0; t * MR < m; ++t) {
      T* panel = dst + t * kc * MR;
      for (int64_t r = 0; r < MR; ++r) {
        const int64_t q = i0 + t * MR + r;
        if (t * MR + r >= m) {
          for (int64_t k = 0; k < kc; ++k) panel[k * MR + r] = T(0);
          continue;
        }
        const int64_t channel = (q / taps) * c.H * c.W, dh = ((q % taps) / c.KW) * c.dh, dw = (q % c.KW) * c.dw;
        for (const Run& run : runs) {
          T* out = panel + run.k * MR + r;  // out[t MR] is column run.k + t
          const int64_t ih = run.ih + dh;
          if (uint64_t(ih) >= uint64_t(c.H)) {
            for (int64_t u = 0; u < run.length; ++u) out[u * MR] = T(0);
            continue;
          }
          const int64_t iw = run.iw + dw;  // input column of out[u MR] is iw + u sw
          int64_t lo, hi;
          valid_range(iw, c.sw, c.W, run.length, &lo, &hi);
          const T* in = x + run.sample_offset + channel + ih * c.W + iw;
          for (int64_t u = 0; u < lo; ++u) out[u * MR] = T(0);
          for (int64_t u = lo; u < hi; ++u) out[u * MR] = in[u * c.sw];
          for (int64_t u = hi; u < run.length; ++u) out[u * MR] = T(0);
        }
      }
    }
  }

#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
  // The same panels for width stride 1, 16 columns at a time: each of a tile's
  // rows loads 16 consecutive input pixels of its run (masked to the image), one
  // register transpose turns them into 16 panel rows.
  void pack_transposed(float* dst, int64_t i0, int64_t m, int64_t kc, const std::vector<Run>& runs) const {
    constexpr int MR = GemmBlocking<float>::MR;
    const ConvShape& c = *s;
    const int64_t taps = c.KH * c.KW;
    for (int64_t t = 0; t * MR < m; ++t) {
      float* panel = dst + t * kc * MR;
      const int64_t rows = m - t * MR < MR ? m - t * MR : MR;
      int64_t channel[MR], dh[MR], dw[MR];
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t q = i0 + t * MR + r;
        channel[r] = (q / taps) * c.H * c.W, dh[r] = ((q % taps) / c.KW) * c.dh, dw[r] = (q % c.KW) * c.dw;
      }
      for (const auto& run : runs) {
        for (int64_t u0 = 0; u0 < run.length; u0 += 16) {
          const int64_t count = run.length - u0 < 16 ? run.length - u0 : 16;
          __m512 v[16];
          for (int64_t r = 0; r < 16; ++r) {
            const int64_t ih = r < rows ? run.ih + dh[r] : -1;
            if (uint64_t(ih) >= uint64_t(c.H)) {
              v[r] = _mm512_setzero_ps();
              continue;
            }
            const int64_t iw = run.iw + dw[r] + u0;  // lane l reads input column iw + l
            const float* in = x + run.sample_offset + channel[r] + ih * c.W;
            v[r] = _mm512_maskz_loadu_ps(lanes_between(-iw, count < c.W - iw ? count : c.W - iw), in + iw);
          }
          gemm_detail::transpose_store(v, panel + (run.k + u0) * MR, MR, lanes_below(MR), count);
        }
      }
    }
  }
#endif
};

// op(B) = dy^T over S consecutive samples: (S P, Og), B((sample, p), o) = dy[sample, o, p]
template <class T> struct SamplesTransposedB : gemm_detail::PackedOperand<T> {
  const T* dy;  // (Og, P) of the first sample; the next one is sample_stride further
  int64_t P, sample_stride;
  // each sample's stretch of k is a transposed panel of its dy (Og, P): packed as
  // GEMM packs a transposed B (16x16 register transposes on AVX-512)
  void pack(T* dst, int64_t k0, int64_t kc, int64_t j0, int64_t n) const {
    constexpr int64_t NR = GemmBlocking<T>::NV * Simd<T>::lanes;
    for (int64_t k = 0; k < kc;) {
      const int64_t sample = (k0 + k) / P, p = (k0 + k) % P, length = kc - k < P - p ? kc - k : P - p;
      gemm_detail::pack_b_panel(dst + k * NR, dy + sample * sample_stride, true, int64_t(0), P, p, length, j0, n);
      k += length;
    }
  }
};

// --- position-major form, for tiny images -----------------------------------
// With a few output pixels per sample the per-sample GEMMs (Og x P) are too
// small to pay for their setup; stacking the pixels of S samples as rows gives
// one GEMM instead: Y^T (S P, Og) = patches (S P, Kc) W_g^T (Kc, Og), whose
// result is then transposed into y.

// A block of S samples zero-padded to every window's reach (see padded_block):
// (S, Cg, Hp, Wp). Output pixel q = (sample, oh, ow) has its window at
// window(q), and tap q = (c, kh, kw) of every window is tap(q) further on, so
// the operands packed from it are plain gathers without bounds checks.
template <class T> struct PaddedBlock : gemm_detail::PackedOperand<T> {
  const T* xp;
  const ConvShape* s;
  int64_t Cg, Hp, Wp;
  int64_t window(int64_t q) const {
    const int64_t P = s->OH * s->OW, p = q % P;
    return (q / P) * Cg * Hp * Wp + (p / s->OW) * s->sh * Wp + (p % s->OW) * s->sw;
  }
  int64_t tap(int64_t q) const {
    const int64_t taps = s->KH * s->KW;
    return (q / taps) * Hp * Wp + ((q % taps) / s->KW) * s->dh * Wp + (q % s->KW) * s->dw;
  }
};

// op(A) = patches: (S P, Kc), A((sample, oh, ow), (c, kh, kw)) = x[sample, c, oh sh - ph + kh dh, ow sw - pw + kw dw]
template <class T> struct ImagePatchesA : PaddedBlock<T> {
  void pack(T* dst, int64_t i0, int64_t m, int64_t k0, int64_t kc) const {
    constexpr int MR = GemmBlocking<T>::MR;
    static thread_local std::vector<int64_t> taps;  // column k -> its tap's offset
    if (taps.size() < size_t(kc)) taps.resize(size_t(kc));
    for (int64_t k = 0; k < kc; ++k) taps[size_t(k)] = this->tap(k0 + k);
    for (int64_t t = 0; t * MR < m; ++t) {
      T* panel = dst + t * kc * MR;
      const int64_t rows = m - t * MR < MR ? m - t * MR : MR;
      int64_t base[MR];  // per row, its window; rows past m repeat the last (never stored)
      for (int64_t r = 0; r < MR; ++r) base[r] = this->window(i0 + t * MR + (r < rows ? r : rows - 1));
      for (int64_t k = 0; k < kc; ++k) {
        const T* src = this->xp + taps[size_t(k)];
        T* out = panel + k * MR;
        for (int64_t r = 0; r < MR; ++r) out[r] = src[base[r]];
      }
    }
  }
};

// The S samples' channels of one group, zero-padded to every window's reach:
// (S, Cg, Hp, Wp), row ih + ph and column iw + pw holding x[.., ih, iw], and
// `tail` more zeros after the block.
template <class T>
T* padded_block(std::vector<T>& buffer, const T* x, const ConvShape& s, int64_t samples, int64_t Cg, int64_t Hp,
                int64_t Wp, int64_t tail = 0) {
  T* xp = scratch(buffer, size_t(samples * Cg * Hp * Wp + tail));
  std::memset(xp, 0, sizeof(T) * size_t(samples * Cg * Hp * Wp + tail));
  const int64_t rows = s.H < Hp - s.ph ? s.H : Hp - s.ph, cols = s.W < Wp - s.pw ? s.W : Wp - s.pw;
  if (rows <= 0 || cols <= 0) return xp;  // every window lies in the padding
  for (int64_t n = 0; n < samples; ++n)
    for (int64_t c = 0; c < Cg; ++c) {
      const T* src = x + (n * s.C + c) * s.H * s.W;
      T* dst = xp + ((n * Cg + c) * Hp + s.ph) * Wp + s.pw;
      for (int64_t ih = 0; ih < rows; ++ih) copy_run(dst + ih * Wp, src + ih * s.W, cols);
    }
  return xp;
}

// --- channels-last form of the weight gradient, for stride 1 ----------------
// dW_g (Og, taps Cg) = dy^T (Og, S P) shifted (S P, taps Cg), column j = (kh, kw, c):
// shifted((sample, oh, ow), (kh, kw, c)) = xt[sample, oh + kh dh, ow + kw dw, c], with xt
// the chunk's zero-padded channels-last copy (S, Hp, Wp, Cg) and dy^T the chunk's dy
// transposed to (S P, Og). Each copy is a transpose of the raw data, every value once,
// and a panel of `shifted` packs as plain runs of channels; the col (Kc, S P) form
// transposes every tap's copy of the image while packing (a 16x16 register transpose per
// 256 values, each value then used by only Og columns: 47 of 113 ms of a 64-channel
// 56x56 backward, against 30 for dx). The copies' helpers are in conv_internal.h.

// ShiftedChannelsB and WideColumnsB are read in place through row tables (see
// PackedOperand::row_table) in float; double, the portable fallback, packs them (the
// library's size: each driver compiles its micro-kernels once more for a row table).
template <class T> constexpr bool kFloatRowTables = std::is_same_v<T, float>;

// op(B) = shifted over S samples: (S P, taps Cg), read from xt (S, Hp, Wp, Cg). When Cg is
// a multiple of NR, each panel is NR channels of one tap, a run of xt at the pixel's offset
// ((sample Hp + oh) Wp + ow) Cg (`rows`, the row table) plus the tap's and the channels'
// (panel()), and the driver reads it there instead of packing it (bench/ab.py, 2 threads,
// dW alone: 64 channels on 56x56 0.86, LeNet conv2 0.82); else rows is null and panels pack.
template <class T> struct ShiftedChannelsB : gemm_detail::PackedOperand<T> {
  static constexpr bool kMayHaveRowTable = kFloatRowTables<T>;
  const T* xt;
  const ConvShape* s;
  int64_t Cg, Hp, Wp;
  const int64_t* rows;  // (S P,) or null
  const int64_t* row_table() const { return rows; }
  const T* panel(int64_t j0) const {
    const int64_t tap = j0 / Cg;
    return xt + ((tap / s->KW) * s->dh * Wp + (tap % s->KW) * s->dw) * Cg + j0 % Cg;
  }
  void pack(T* dst, int64_t k0, int64_t kc, int64_t j0, int64_t n) const {
    constexpr int64_t NR = GemmBlocking<T>::NV * Simd<T>::lanes;
    const ConvShape& c = *s;
    // the panel's columns as runs of channels of one tap: where each starts in the
    // panel, its offset from a window's corner in xt, its length
    int64_t run_col[NR], run_offset[NR], run_length[NR], runs = 0;
    for (int64_t j = 0; j < n; j += run_length[runs++]) {
      const int64_t tap = (j0 + j) / Cg, ch = (j0 + j) % Cg;
      run_col[runs] = j;
      run_offset[runs] = ((tap / c.KW) * c.dh * Wp + (tap % c.KW) * c.dw) * Cg + ch;
      run_length[runs] = Cg - ch < n - j ? Cg - ch : n - j;
    }
    const int64_t P = c.OH * c.OW;
    int64_t sample = k0 / P, oh = (k0 % P) / c.OW, ow = k0 % c.OW;
    const bool whole = runs == 1 && n == NR;  // one run fills the panel (Cg a multiple of NR): no masks
    for (int64_t k = 0; k < kc; ++k) {
      const T* corner = xt + ((sample * Hp + oh) * Wp + ow) * Cg;
      T* row = dst + k * NR;
      if (whole) {
        for (int64_t j = 0; j < NR; j += Simd<T>::lanes) vstore(row + j, vload(corner + run_offset[0] + j));
      } else {
        for (int64_t r = 0; r < runs; ++r) copy_run(row + run_col[r], corner + run_offset[r], run_length[r]);
        for (int64_t j = n; j < NR; ++j) row[j] = T(0);
      }
      if (++ow == c.OW) {
        ow = 0;
        if (++oh == c.OH) oh = 0, ++sample;
      }
    }
  }
};

// The channels-last form needs stride 1, and runs of at least a vector of channels
// to pack (1 channel under 5x5 taps would pack a gather per value).
inline bool channels_last_weight_gradient(const ConvShape& s, const Geometry& g) {
  return s.sh == 1 && s.sw == 1 && g.Cg >= 16;
}

// --- direct weight gradient, for few channels and width stride 1 ---------------
// dW[o, c, kh, kw] = sum over (sample, oh, ow) of dy[o, oh, ow] xp[c, oh sh + kh dh, ow + kw]
// (xp: the chunk's zero-padded copy) as dot products along output rows, 16 ow a vector:
// a tile of 4 outputs by KR window rows of KW taps (KR KW <= 6) keeps its sums in 24
// registers over the chunk, and reduces them across lanes at the end. Each window row
// is loaded as two vectors, and its KW shifted copies are made in registers (valignd):
// loading each tap's unaligned vector instead split most loads across cache lines and
// ran at a fifth of the peak. With under 16 channels a group's columns col (Kc, S P) are
// too few rows to pay for transposing them while packing (LeNet conv1, 1 -> 32 channels
// 5x5 on 28x28: 54 GFLOP/s), and the channels-last form would pack a gather per value.
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
constexpr int kDirectOutputs = 4, kDirectTaps = 6;

inline bool direct_weight_gradient(const ConvShape& s, const Geometry& g) {
  return s.sw == 1 && s.dw == 1 && g.Cg < 16 && s.OW >= 8 && s.KW <= kDirectTaps;
}

// lanes S .. S + 16 of the 32 in lo:hi (one valignd), lanes off `mask` zeroed: a window
// row shifted by S columns, for the direct forms of the forward and the weight gradient
template <int S> inline __m512 shifted_lanes(__m512 lo, __m512 hi, __mmask16 mask = 0xFFFF) {
  return _mm512_castsi512_ps(_mm512_maskz_alignr_epi32(mask, _mm512_castps_si512(hi), _mm512_castps_si512(lo), S));
}

// A tile's sources, for the chunk's first sample: dy rows (OH, OW) of its outputs (a zero
// row past the group's last, with stride 0) and the padded channel (Hp, Wp).
struct DirectTile {
  const float* dy[kDirectOutputs];
  int64_t dy_stride[kDirectOutputs];
  const float* xp;
  int64_t xp_stride, Wp, kh0;
};

// acc[r][j KW + kw] += d[r] * (lanes kw .. kw + 16 of lo:hi), lanes off `mask` zeroed
template <int KW, int KR, int J, int KWi = 0>
inline void direct_taps(__m512 (&acc)[kDirectOutputs][KR * KW], const __m512 (&d)[kDirectOutputs], __m512 lo, __m512 hi,
                        __mmask16 mask) {
  if constexpr (KWi < KW) {
    const __m512 xv = shifted_lanes<KWi>(lo, hi, mask);
#pragma GCC unroll 8
    for (int r = 0; r < kDirectOutputs; ++r) acc[r][J * KW + KWi] = _mm512_fmadd_ps(d[r], xv, acc[r][J * KW + KWi]);
    direct_taps<KW, KR, J, KWi + 1>(acc, d, lo, hi, mask);
  }
}
template <int KW, int KR, int J = 0>
inline void direct_rows(__m512 (&acc)[kDirectOutputs][KR * KW], const __m512 (&d)[kDirectOutputs],
                        const float* const* row, int64_t at, __mmask16 mask) {
  if constexpr (J < KR) {
    direct_taps<KW, KR, J>(acc, d, _mm512_loadu_ps(row[J] + at), _mm512_loadu_ps(row[J] + at + 16), mask);
    direct_rows<KW, KR, J + 1>(acc, d, row, at, mask);
  }
}

// sum[r kDirectTaps + j KW + kw] = the tile's dot products over `samples` samples, for
// window rows kh0 .. kh0 + KR
template <int KW, int KR>
void direct_tile(float* sum, const DirectTile& t, const ConvShape& s, int64_t samples) {
  const int64_t whole = s.OW / 16, OW = s.OW;
  const __mmask16 tail = lanes_below(OW % 16);  // the lanes of the last, partial vector
  __m512 acc[kDirectOutputs][KR * KW];
#pragma GCC unroll 8
  for (int r = 0; r < kDirectOutputs; ++r)
#pragma GCC unroll 8
    for (int k = 0; k < KR * KW; ++k) acc[r][k] = _mm512_setzero_ps();
  for (int64_t n = 0; n < samples; ++n) {
    for (int64_t oh = 0; oh < s.OH; ++oh) {
      const float* row[KR];
#pragma GCC unroll 8
      for (int j = 0; j < KR; ++j) row[j] = t.xp + n * t.xp_stride + (oh * s.sh + (t.kh0 + j) * s.dh) * t.Wp;
      const float* d_row[kDirectOutputs];
#pragma GCC unroll 8
      for (int r = 0; r < kDirectOutputs; ++r) d_row[r] = t.dy[r] + n * t.dy_stride[r] + oh * OW;
      int64_t v = 0;
      for (; v < whole; ++v) {
        __m512 d[kDirectOutputs];
#pragma GCC unroll 8
        for (int r = 0; r < kDirectOutputs; ++r) d[r] = _mm512_loadu_ps(d_row[r] + v * 16);
        direct_rows<KW, KR>(acc, d, row, v * 16, 0xFFFF);
      }
      if (tail) {  // the last, partial vector: lanes past the row are zeroed on both sides
        __m512 d[kDirectOutputs];
#pragma GCC unroll 8
        for (int r = 0; r < kDirectOutputs; ++r) d[r] = _mm512_maskz_loadu_ps(tail, d_row[r] + v * 16);
        direct_rows<KW, KR>(acc, d, row, v * 16, tail);
      }
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < kDirectOutputs; ++r)
#pragma GCC unroll 8
    for (int k = 0; k < KR * KW; ++k) sum[r * kDirectTaps + k] = _mm512_reduce_add_ps(acc[r][k]);
}

// direct_tile for `rows` (<= KR) window rows: the instantiation with exactly that many
template <int KW, int KR = kDirectTaps / KW>
void direct_tile_rows(int rows, float* sum, const DirectTile& t, const ConvShape& s, int64_t samples) {
  if constexpr (KR > 1) {
    if (rows < KR) return direct_tile_rows<KW, KR - 1>(rows, sum, t, s, samples);
  }
  direct_tile<KW, KR>(sum, t, s, samples);
}

// partial (Og, Cg, KH, KW) = the group's dW over `samples` samples from dy0 and x0
void direct_weight_gradient_chunk(float* partial, const float* dy0, const float* x0, const ConvShape& s,
                                  const Geometry& g, int64_t samples) {
  // a row's two vectors at its last step reach up to 32 floats past the step's start:
  // the block's tail, zeros
  const int64_t Hp = reach_rows(s), Wp = reach_cols(s);
  static thread_local std::vector<float> pad_buffer, zeros;
  const float* xp = padded_block(pad_buffer, x0, s, samples, g.Cg, Hp, Wp, ceil_div(s.OW, int64_t(16)) * 16 + 16);
  if (zeros.size() < size_t(g.P)) zeros.assign(size_t(g.P), 0.0f);
  // window rows in groups of about equal size, each at most kDirectTaps / KW
  const int64_t max_rows = kDirectTaps / s.KW, groups = ceil_div(s.KH, max_rows);
  const int64_t group_rows = ceil_div(s.KH, groups);
  for (int64_t o0 = 0; o0 < g.Og; o0 += kDirectOutputs)
    for (int64_t c = 0; c < g.Cg; ++c)
      for (int64_t kh0 = 0; kh0 < s.KH; kh0 += group_rows) {
        DirectTile t;
        for (int r = 0; r < kDirectOutputs; ++r) {
          const bool real = o0 + r < g.Og;
          t.dy[r] = real ? dy0 + (o0 + r) * g.P : zeros.data();
          t.dy_stride[r] = real ? s.O * g.P : 0;
        }
        t.xp = xp + c * Hp * Wp;
        t.xp_stride = g.Cg * Hp * Wp;
        t.Wp = Wp;
        t.kh0 = kh0;
        const int rows = int(s.KH - kh0 < group_rows ? s.KH - kh0 : group_rows);
        alignas(64) float sum[kDirectOutputs * kDirectTaps];
        switch (s.KW) {
          case 1: direct_tile_rows<1>(rows, sum, t, s, samples); break;
          case 2: direct_tile_rows<2>(rows, sum, t, s, samples); break;
          case 3: direct_tile_rows<3>(rows, sum, t, s, samples); break;
          case 4: direct_tile_rows<4>(rows, sum, t, s, samples); break;
          case 5: direct_tile_rows<5>(rows, sum, t, s, samples); break;
          default: direct_tile_rows<6>(rows, sum, t, s, samples); break;
        }
        for (int64_t r = 0; r < kDirectOutputs && o0 + r < g.Og; ++r)
          for (int64_t k = 0; k < rows * s.KW; ++k)
            partial[((o0 + r) * g.Cg + c) * s.KH * s.KW + kh0 * s.KW + k] = sum[r * kDirectTaps + k];
      }
}
#endif

// op(A) = col over S samples, (Kc, S P), as ImageColumnsA, but gathered from a
// PaddedBlock: for images whose output rows are shorter than a vector, where
// ImageColumnsA's runs are too short to pay for finding them.
template <class T> struct PaddedColumnsA : PaddedBlock<T> {
  void pack(T* dst, int64_t i0, int64_t m, int64_t k0, int64_t kc) const {
    constexpr int MR = GemmBlocking<T>::MR;
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
    if constexpr (sizeof(T) == 4 && MR <= 16) {
      if (this->s->OW == 8 && this->s->sw == 1 && k0 % 8 == 0 && kc % 8 == 0) return pack_row_pairs(dst, i0, m, k0, kc);
    }
#endif
    static thread_local std::vector<int64_t> windows;  // column k -> its window
    if (windows.size() < size_t(kc)) windows.resize(size_t(kc));
    for (int64_t k = 0; k < kc; ++k) windows[size_t(k)] = this->window(k0 + k);
    for (int64_t t = 0; t * MR < m; ++t) {
      T* panel = dst + t * kc * MR;
      const int64_t rows = m - t * MR < MR ? m - t * MR : MR;
      int64_t taps[MR];  // per row (c, kh, kw); rows past m repeat the last (never stored)
      for (int64_t r = 0; r < MR; ++r) taps[r] = this->tap(i0 + t * MR + (r < rows ? r : rows - 1));
      for (int64_t k = 0; k < kc; ++k) {
        const T* src = this->xp + windows[size_t(k)];
        T* out = panel + k * MR;
        for (int64_t r = 0; r < MR; ++r) out[r] = src[taps[r]];
      }
    }
  }

#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
  // 8-pixel output rows, width stride 1 (LeNet conv2's weight gradient): 16 columns of a
  // panel are two output rows, so a tap row of them is two runs of 8 pixels of the padded
  // block; a tile's taps load as such pairs and one register transpose turns them into 16
  // panel rows (the element-by-element gather was 12% of the backward). The columns come
  // in whole output rows: k0 and kc are multiples of 8.
  void pack_row_pairs(float* dst, int64_t i0, int64_t m, int64_t k0, int64_t kc) const {
    constexpr int MR = GemmBlocking<float>::MR;
    for (int64_t t = 0; t * MR < m; ++t) {
      float* panel = dst + t * kc * MR;
      const int64_t rows = m - t * MR < MR ? m - t * MR : MR;
      int64_t taps[MR];
      for (int64_t r = 0; r < rows; ++r) taps[r] = this->tap(i0 + t * MR + r);
      for (int64_t k = 0; k < kc; k += 16) {
        const int64_t count = kc - k < 16 ? kc - k : 16;  // 16, or 8 at the end
        const float* first = this->xp + this->window(k0 + k);
        const float* second = count > 8 ? this->xp + this->window(k0 + k + 8) : first;
        __m512 v[16];
        for (int64_t r = 0; r < 16; ++r) {
          if (r >= rows) {
            v[r] = _mm512_setzero_ps();
            continue;
          }
          const __m512 low = _mm512_zextps256_ps512(_mm256_loadu_ps(first + taps[r]));
          v[r] = count > 8 ? _mm512_insertf32x8(low, _mm256_loadu_ps(second + taps[r]), 1) : low;
        }
        gemm_detail::transpose_store(v, panel + k * MR, MR, lanes_below(MR), count);
      }
    }
  }
#endif
};

// even[k] = in[2 k], k < (n + 1) / 2, and odd[k] = in[2 k + 1], k < n / 2
template <class T> inline void split_pairs(T* even, T* odd, const T* in, int64_t n) {
  int64_t k = 0;
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
  if constexpr (sizeof(T) == 4) {
    const __m512i evens = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
    const __m512i odds = _mm512_add_epi32(evens, _mm512_set1_epi32(1));
    for (; 2 * k < n; k += 16) {  // (the last 32 or fewer masked)
      const int64_t m = n - 2 * k;
      const __m512 lo = _mm512_maskz_loadu_ps(lanes_below(m), in + 2 * k);
      const __m512 hi = _mm512_maskz_loadu_ps(lanes_below(m - 16), in + 2 * k + 16);
      _mm512_mask_storeu_ps(even + k, lanes_below((m + 1) / 2), _mm512_permutex2var_ps(lo, evens, hi));
      _mm512_mask_storeu_ps(odd + k, lanes_below(m / 2), _mm512_permutex2var_ps(lo, odds, hi));
    }
    return;
  }
#endif
  for (; 2 * k < n; ++k) {
    even[k] = in[2 * k];
    if (2 * k + 1 < n) odd[k] = in[2 * k + 1];
  }
}
// The wide grid of a sample: its channels zero-padded to every window's reach and split
// into the sh x sw phases of the padded rows and columns, (Cg, sh, sw, Hg, Wg), phase
// (rh, rw) holding padded pixels (rh + sh i, rw + sw j) (for stride 1, the padded image
// itself). Output (oh, ow) under tap (kh, kw) reads phase ((kh dh) % sh, (kw dw) % sw) at
// (oh + (kh dh) / sh, ow + (kw dw) / sw): over the grid's columns j = oh Wg + ow, a tap's
// reads are one run of its phase, starting at row(c, kh, kw).
struct WideGrid {
  int64_t Hg, Wg;
  explicit WideGrid(const ConvShape& s) : Hg(ceil_div(reach_rows(s), s.sh)), Wg(ceil_div(reach_cols(s), s.sw)) {}
  int64_t plane() const { return Hg * Wg; }
  // values past the last phase that the last panel's rows reach
  template <class T> static int64_t tail(const ConvShape& s) {
    return (s.KW - 1) * s.dw / s.sw + GemmBlocking<T>::NV * Simd<T>::lanes;
  }
  int64_t row(const ConvShape& s, int64_t c, int64_t kh, int64_t kw) const {
    const int64_t phase = (c * s.sh + (kh * s.dh) % s.sh) * s.sw + (kw * s.dw) % s.sw;
    return (phase * Hg + (kh * s.dh) / s.sh) * Wg + (kw * s.dw) / s.sw;
  }
};

// x_ng (Cg, H, W) as its wide grid, zero past the image
template <class T>
const T* wide_grid_copy(std::vector<T>& buffer, const T* x_ng, const ConvShape& s, int64_t Cg, const WideGrid& w) {
  const int64_t tail = WideGrid::tail<T>(s);
  if (s.sh == 1 && s.sw == 1) return padded_block(buffer, x_ng, s, 1, Cg, w.Hg, w.Wg, tail);
  const int64_t size = Cg * s.sh * s.sw * w.plane() + tail;
  T* xp = scratch(buffer, size_t(size));
  std::memset(xp, 0, sizeof(T) * size_t(size));
  const int64_t rows = s.H < w.Hg * s.sh - s.ph ? s.H : w.Hg * s.sh - s.ph;  // the image's pixels in reach
  const int64_t cols = s.W < w.Wg * s.sw - s.pw ? s.W : w.Wg * s.sw - s.pw;
  for (int64_t c = 0; c < Cg; ++c)
    for (int64_t ih = 0; ih < rows; ++ih) {
      const T* in = x_ng + (c * s.H + ih) * s.W;
      const int64_t padded = ih + s.ph;
      // column phase rw's row of this image row
      auto phase_row = [&](int64_t rw) {
        return xp + ((c * s.sh + padded % s.sh) * s.sw + rw) * w.plane() + (padded / s.sh) * w.Wg;
      };
      if (s.sw == 2) {  // even columns to phase pw % 2, odd ones to the other
        split_pairs(phase_row(s.pw % 2) + s.pw / 2, phase_row((s.pw + 1) % 2) + (s.pw + 1) / 2, in, cols);
        continue;
      }
      for (int64_t rw = 0; rw < s.sw; ++rw) {  // image columns iw = first, first + sw, .. land in phase rw
        const int64_t first = ((rw - s.pw) % s.sw + s.sw) % s.sw;
        T* out = phase_row(rw) + (first + s.pw) / s.sw;
        for (int64_t iw = first, j = 0; iw < cols; iw += s.sw, ++j) out[j] = in[iw];
      }
    }
  return xp;
}

// op(B) = one sample's columns over its wide grid: (Kc, OH Wg), B((c, kh, kw), oh Wg + ow) =
// the padded input under tap (kh, kw) of output (oh, ow) for ow in [0, Wg), of which the
// first OW are output pixels and the rest are computed and dropped. Each row of B is then
// one run of the grid, at rows[(c, kh, kw)] = WideGrid::row, which the
// driver reads in place through this row table instead of packing panels: the taps of a
// channel read the same lines of xp, so a chunk of 16 panels reads about a ninth of what
// its packed copy held under 3x3 taps, and nothing is copied (packing took 12% of a
// 64-channel 56x56 forward).
template <class T> struct WideColumnsB : gemm_detail::PackedOperand<T> {
  static constexpr bool kMayHaveRowTable = kFloatRowTables<T>;
  const T* xp;  // the wide grid and WideGrid::tail values after it, which the last panel's rows reach
  const int64_t* rows;  // (Kc,)
  const int64_t* row_table() const { return rows; }
  const T* panel(int64_t j0) const { return xp + j0; }
  void pack(T* dst, int64_t k0, int64_t kc, int64_t j0, int64_t n) const {
    gemm_detail::pack_table_rows(dst, panel(j0), rows + k0, kc, n);
  }
};

// The wide form pays Wg - OW dropped columns per output row, a copy of the sample (its
// wide grid) and a copy of its output; the packed form, ImageColumnsB's packing. Used for
// stride 1 when the dropped columns are at most a quarter of the grid (3x3 on 56x56: 2 of
// 58; 5x5 on 16x16 with padding 2: 4 of 20), an eighth where rows of 8 pack as pairs.
// bench/ab.py, 2 threads, the quarter against an eighth: forward 0.62 (backward 0.69) on
// 16x32x24x24 32@7x7 pad 3, 0.82 on 32x64x16x16 64@5x5 pad 2, 0.83 on 64x16x14x14
// 32@5x5 pad 1, 0.90 on 3x3 over 10x10 and 12x12 (backward 0.81); 1.0 on 64x32x16x16
// 64@5x5; but 1.34 on 3x3 over 8x8 with padding 1 (the pairs), and a third lost on LeNet's
// conv2 (1.50, the pairs) and was even on 7x7 over 18x18.
// With a stride, the grid's phases come from a copy that splits every row: used where
// every phase is read (no dilation, a kernel as wide as the stride) and rows of 16 outputs
// or more, whose packing takes runs one value at a time (shorter rows pack by gathers,
// and the grid lost there). bench/ab.py forward, 2 threads: 3x3 stride 2 over 64x32x32x32
// -> 64 0.66, over 32x64x56x56 -> 128 0.87, 64x16x64x64 -> 32 0.71; 5x5 stride 2 over
// 32x32x32x32 0.65; 7x7 stride 2 over 32x3x224x224 (a ResNet stem) 0.72; but 1.01-1.27
// under 16 outputs a row, 1.34 for 1x1 stride 2.
inline bool wide_columns(const ConvShape& s, const Geometry& g) {
  const int64_t Wg = WideGrid(s).Wg, most = row_pairs_fit(s) ? 8 : 4;
  const bool strided = s.sh > 1 || s.sw > 1;
  if (strided && !(s.OW >= 16 && s.dh == 1 && s.dw == 1 && s.KH >= s.sh && s.KW >= s.sw)) return false;
  return !g.pointwise && most * (Wg - s.OW) <= Wg && s.OH > 1;
}

// Samples per position-major GEMM (fixed by the shape, so results do not
// depend on the threads), or 0 for the per-sample form: used when a sample's
// pixels cannot fill one register-tile panel (measured: 16->32 channels on 4x4,
// forward 773 -> 231 us on one thread; 1->16 on 8x8 stays per sample).
template <class T> int64_t samples_per_block(const ConvShape& s, int64_t P) {
  constexpr int64_t NR = GemmBlocking<T>::NV * Simd<T>::lanes, kRowsPerBlock = 512;
  if (P >= NR || s.N < 2) return 0;
  const int64_t per = ceil_div(kRowsPerBlock, P);
  return per < s.N ? per : s.N;
}

// --- direct forward, for shallow windows and width stride 1 ------------------------
// y[o, oh, ow] = sum over (c, kh, kw) of w[o, c, kh, kw] xp[c, oh sh + kh dh, ow + kw]
// (xp: the sample's zero-padded copy), 32 ow (two vectors) of 8 outputs in 16
// registers at a time; each window row is loaded as three vectors and shifted in
// registers (valignd), the weights broadcast from a copy laid out tap by tap, 8
// outputs side by side. A per-sample GEMM of depth Cg KH KW <= 64 (LeNet conv1: 25)
// spends as much on its calls' set-up and the packed columns as on the products
// (bench/ab.py forward: LeNet conv1 0.85x, 3 -> 32 channels 3x3 on 32x32 0.70x,
// 4 -> 128 on 56x56 0.73x).
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
constexpr int kDirectForwardOutputs = 8, kDirectForwardWidth = 8;

// (rows filling under 70% of their 32-wide steps stay with the GEMM: 16 outputs of 18
// ran 1.07x its time)
inline bool direct_forward(const ConvShape& s, const Geometry& g) {
  return s.sw == 1 && s.dw == 1 && 10 * s.OW >= 7 * ceil_div(s.OW, int64_t(32)) * 32 &&
         s.KW <= kDirectForwardWidth && g.Kc <= 64 && !g.pointwise;
}

// acc[o][v] += wt[kw 8 + o] (lanes kw .. kw + 16 of the window row's vectors v, v + 1)
template <int KW, int KWi = 0>
inline void direct_forward_taps(__m512 (&acc)[kDirectForwardOutputs][2], const float* wt, __m512 lo, __m512 mid,
                                __m512 hi) {
  if constexpr (KWi < KW) {
    const __m512 x0 = shifted_lanes<KWi>(lo, mid), x1 = shifted_lanes<KWi>(mid, hi);
#pragma GCC unroll 8
    for (int o = 0; o < kDirectForwardOutputs; ++o) {
      const __m512 wv = _mm512_set1_ps(wt[KWi * kDirectForwardOutputs + o]);
      acc[o][0] = _mm512_fmadd_ps(wv, x0, acc[o][0]);
      acc[o][1] = _mm512_fmadd_ps(wv, x1, acc[o][1]);
    }
    direct_forward_taps<KW, KWi + 1>(acc, wt, lo, mid, hi);
  }
}

// y_n (Og, OH, OW) for one sample and group from xp (Cg, Hp, Wp, with a zero tail of 48
// floats) and wt (per tile of 8 outputs: [c][kh][kw][8])
template <int KW>
void direct_forward_sample(float* y_n, const float* xp, const float* wt, const float* bias, const ConvShape& s,
                           const Geometry& g, int64_t Hp, int64_t Wp) {
  const int64_t taps = s.KH * KW;
  for (int64_t o0 = 0; o0 < g.Og; o0 += kDirectForwardOutputs) {
    const float* w_tile = wt + o0 * g.Cg * taps;  // [c][kh][kw][8]
    const int64_t outputs = g.Og - o0 < kDirectForwardOutputs ? g.Og - o0 : kDirectForwardOutputs;
    for (int64_t oh = 0; oh < s.OH; ++oh)
      for (int64_t ow0 = 0; ow0 < s.OW; ow0 += 32) {
        __m512 acc[kDirectForwardOutputs][2];
#pragma GCC unroll 8
        for (int o = 0; o < kDirectForwardOutputs; ++o) {
          const __m512 b = _mm512_set1_ps(bias && o < outputs ? bias[o0 + o] : 0.0f);
          acc[o][0] = b, acc[o][1] = b;
        }
        for (int64_t c = 0; c < g.Cg; ++c)
          for (int64_t kh = 0; kh < s.KH; ++kh) {
            const float* row = xp + (c * Hp + oh * s.sh + kh * s.dh) * Wp + ow0;
            direct_forward_taps<KW>(acc, w_tile + (c * s.KH + kh) * KW * kDirectForwardOutputs, _mm512_loadu_ps(row),
                                    _mm512_loadu_ps(row + 16), _mm512_loadu_ps(row + 32));
          }
        for (int64_t o = 0; o < outputs; ++o) {
          float* out = y_n + ((o0 + o) * s.OH + oh) * s.OW + ow0;
          _mm512_mask_storeu_ps(out, lanes_below(s.OW - ow0), acc[o][0]);
          _mm512_mask_storeu_ps(out + 16, lanes_below(s.OW - ow0 - 16), acc[o][1]);
        }
      }
  }
}

// wt: w (Og, Cg, KH, KW) as tiles of 8 outputs, [tile][c][kh][kw][8], outputs past Og zero
inline void pack_direct_forward_weights(float* wt, const float* w, const Geometry& g, int64_t taps) {
  for (int64_t o0 = 0; o0 < g.Og; o0 += kDirectForwardOutputs)
    for (int64_t q = 0; q < g.Cg * taps; ++q)
      for (int64_t o = 0; o < kDirectForwardOutputs; ++o)
        wt[(o0 * g.Cg * taps) + q * kDirectForwardOutputs + o] = o0 + o < g.Og ? w[(o0 + o) * g.Kc + q] : 0.0f;
}
#endif


// --- depthwise form: one input channel a group, any stride --------------------------
// groups = C (MobileNet's layers, a few outputs a channel): each (sample, channel) plane is
// convolved on its own, where the GEMM forms made a product of 1 x KH KW x P per plane
// (with stride 2, a quarter of PyTorch's speed). The plane is copied as its wide grid
// (zero-padded to every window's reach, split into the stride's row and column phases),
// so each tap reads a whole output row as one contiguous run, padding included, and no
// loop checks an edge (tap (kh, kw) of output row oh at WideGrid::row + oh Wg). dx is
// gathered phase by phase of its own rows and columns from a padded copy of dy
// (DepthwiseGather). Sums run in a fixed order (bias, then the taps; dW and db over the
// samples in order in a channel's task), so no thread count shows. bench/ab.py, 2 threads, against the GEMM forms: 32x64x28x28 3x3
// stride 2 forward 0.29, backward 0.24; stride 1 forward 0.50, backward 0.75; 32x32x56x56
// 0.43 and 0.57; two outputs a channel, stride 2, 0.44 and 0.49; 16x64x14x14 5x5 0.92 and 1.0.
constexpr int64_t kDepthwiseMostOutputs = 4;  // outputs a channel (LeNet's 1 -> 32 stays a GEMM)
inline bool depthwise(const ConvShape& s, const Geometry& g) {
  return g.Cg == 1 && s.groups > 1 && g.Og <= kDepthwiseMostOutputs;
}

// A plane's wide grid (WideGrid: padded, split into the stride's phases), and where tap
// t = (kh, kw) reads it for output row 0: row oh reads oh Wg further on (the offsets worked
// out once: divisions per tap and pixel had taken most of the time)
struct DepthwisePlane {
  WideGrid grid;
  std::vector<int64_t> offset;
  explicit DepthwisePlane(const ConvShape& s) : grid(s), offset(size_t(s.KH * s.KW)) {
    for (int64_t kh = 0, t = 0; kh < s.KH; ++kh)
      for (int64_t kw = 0; kw < s.KW; ++kw, ++t) offset[size_t(t)] = grid.row(s, 0, kh, kw);
  }
};

// f(std::integral_constant<int, K>) with K = taps for the counts unrolled (3x3, 5x5), else 0
template <class F> inline void with_fixed_taps(int64_t taps, F f) {
  if (taps == 9) f(std::integral_constant<int, 9>{});
  else if (taps == 25) f(std::integral_constant<int, 25>{});
  else f(std::integral_constant<int, 0>{});
}

// y_c (Og, OH, OW) of one sample's channel, w_c (Og, taps): a vector of outputs at a time
// summed in registers over the taps (kTaps: their count where fixed, 0 where not)
template <int kTaps, class T>
void depthwise_forward_plane(T* y_c, const T* xp, const T* w_c, const T* bias_c, const ConvShape& s,
                             const DepthwisePlane& d, int64_t Og) {
  using V = typename Simd<T>::V;
  constexpr int64_t L = Simd<T>::lanes;
  const int64_t taps = kTaps ? kTaps : s.KH * s.KW;
  const int64_t* offset = d.offset.data();
  for (int64_t o = 0; o < Og; ++o) {
    const T* w_o = w_c + o * taps;
    const V b = vsplat(bias_c ? bias_c[o] : T(0));
    for (int64_t oh = 0; oh < s.OH; ++oh) {
      const T* base = xp + oh * d.grid.Wg;
      T* row = y_c + (o * s.OH + oh) * s.OW;
      int64_t ow = 0;
      for (; ow + L <= s.OW; ow += L) {
        V acc = b;
        for (int64_t t = 0; t < taps; ++t) acc += vsplat(w_o[t]) * vload(base + offset[t] + ow);
        vstore(row + ow, acc);
      }
      if (ow < s.OW) {
        const int64_t n = s.OW - ow;
        V acc = b;
        for (int64_t t = 0; t < taps; ++t) acc += vsplat(w_o[t]) * vload_partial(base + offset[t] + ow, n, T(0));
        vstore_partial(row + ow, acc, n);
      }
    }
  }
}

// dx as a gather: each phase (a, b) of dx's rows and columns (ih = a + sh i, iw = b + sw j)
// is reached by the taps with (a + ph - kh dh) % sh = 0 and (b + pw - kw dw) % sw = 0, at dy
// row i + (a + ph - kh dh) / sh and column j + (b + pw - kw dw) / sw: a stride-1 sum over a
// zero-padded copy of dy, summed in registers as the forward. (Added tap by tap into a
// padded dx instead, each tap's stores overlapped the next tap's loads one column over,
// and the store forwarding failed: 3.2 ms for 32x64x28x28, 3x3, stride 1.)
struct DepthwiseGather {
  int64_t top, left, rows, cols;  // dy (OH, OW) lies at (top, left) of the padded copy (rows, cols)
  // the dy shift of tap k along a side with stride st, padding pad, dilation dil, at phase a
  static bool shift(int64_t a, int64_t pad, int64_t k, int64_t dil, int64_t st, int64_t* c) {
    const int64_t q = a + pad - k * dil;
    if (((q % st) + st) % st != 0) return false;
    *c = q >= 0 ? q / st : -((-q) / st);  // exact
    return true;
  }
  // the phase's count along a side of `size` with stride st
  static int64_t count(int64_t a, int64_t size, int64_t st) { return a < size ? (size - a + st - 1) / st : 0; }
  // the reach of every phase's shifted reads along a side: [lo, hi) of dy rows or columns
  static void reach(int64_t size, int64_t out, int64_t pad, int64_t K, int64_t dil, int64_t st, int64_t* lo,
                    int64_t* hi) {
    *lo = 0, *hi = out;
    for (int64_t a = 0; a < st; ++a)
      for (int64_t k = 0, c; k < K; ++k)
        if (count(a, size, st) > 0 && shift(a, pad, k, dil, st, &c)) {
          *lo = c < *lo ? c : *lo;
          *hi = c + count(a, size, st) > *hi ? c + count(a, size, st) : *hi;
        }
  }
  // phase (a, b)'s taps, entries first[a sw + b] .. first[a sw + b + 1]: tap kh KW + kw, read
  // at offset into a padded dy plane (worked out once a call: each a modulo and a division)
  std::vector<int64_t> first, tap, offset;
  explicit DepthwiseGather(const ConvShape& s) {
    int64_t lo, hi;
    reach(s.H, s.OH, s.ph, s.KH, s.dh, s.sh, &lo, &hi);
    top = -lo, rows = hi - lo;
    reach(s.W, s.OW, s.pw, s.KW, s.dw, s.sw, &lo, &hi);
    left = -lo, cols = hi - lo;
    for (int64_t a = 0; a < s.sh; ++a)
      for (int64_t b = 0; b < s.sw; ++b) {
        first.push_back(int64_t(tap.size()));
        for (int64_t kh = 0, ch; kh < s.KH; ++kh) {
          if (!shift(a, s.ph, kh, s.dh, s.sh, &ch)) continue;
          for (int64_t kw = 0, cw; kw < s.KW; ++kw) {
            if (!shift(b, s.pw, kw, s.dw, s.sw, &cw)) continue;
            tap.push_back(kh * s.KW + kw);
            offset.push_back((top + ch) * cols + left + cw);
          }
        }
      }
    first.push_back(int64_t(tap.size()));
  }
  int64_t plane() const { return rows * cols; }
};

// dx_c (H, W) of one sample's channel from dy_c (Og, OH, OW), written whole; dyp: room for
// Og padded planes, rows: for sw phase rows of W (sw > 1)
template <class T>
void depthwise_input_gradient_plane(T* dx_c, T* dyp, T* rows, const T* dy_c, const T* w_c, const ConvShape& s,
                                    const DepthwiseGather& q, int64_t Og) {
  using V = typename Simd<T>::V;
  constexpr int64_t L = Simd<T>::lanes;
  std::memset(dyp, 0, sizeof(T) * size_t(Og * q.plane()));
  for (int64_t o = 0; o < Og; ++o)
    for (int64_t oh = 0; oh < s.OH; ++oh)
      copy_run(dyp + o * q.plane() + (q.top + oh) * q.cols + q.left, dy_c + (o * s.OH + oh) * s.OW, s.OW);
  // each column phase's taps (offset into dyp, weight) over the outputs, for the current row phase
  const int64_t taps = s.KH * s.KW;
  static thread_local std::vector<int64_t> offset_buffer, count_buffer;
  static thread_local std::vector<T> weight_buffer;
  int64_t* const offset = scratch(offset_buffer, size_t(s.sw * Og * taps));
  int64_t* const count = scratch(count_buffer, size_t(s.sw));
  T* const weight = scratch(weight_buffer, size_t(s.sw * Og * taps));
  for (int64_t a = 0; a < s.sh; ++a) {
    const int64_t I = DepthwiseGather::count(a, s.H, s.sh);
    if (I == 0) continue;
    for (int64_t b = 0; b < s.sw; ++b) {
      const int64_t phase = a * s.sw + b;
      int64_t n_taps = 0;
      for (int64_t o = 0; o < Og; ++o)
        for (int64_t e = q.first[size_t(phase)]; e < q.first[size_t(phase) + 1]; ++e, ++n_taps) {
          offset[b * Og * taps + n_taps] = o * q.plane() + q.offset[size_t(e)];
          weight[b * Og * taps + n_taps] = w_c[o * taps + q.tap[size_t(e)]];
        }
      count[b] = n_taps;
    }
    // column phase b's sum at its outputs j .. j + n of row i
    auto phase_sum = [&](int64_t b, const T* base, int64_t j, int64_t n) {
      const int64_t* off = offset + b * Og * taps;
      const T* wt = weight + b * Og * taps;
      V acc = vsplat(T(0));
      for (int64_t t = 0; t < count[b]; ++t)
        acc += vsplat(wt[t]) * (n == L ? vload(base + off[t] + j) : vload_partial(base + off[t] + j, n, T(0)));
      return acc;
    };
    for (int64_t i = 0; i < I; ++i) {
      T* dx_row = dx_c + (a + s.sh * i) * s.W;
      const T* base = dyp + i * q.cols;
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
      if constexpr (sizeof(T) == 4) {
        if (s.sw == 2) {  // both phases' sums interleaved in registers (through a buffer, each
                          // reload waited for its masked stores: store forwarding fails there)
          const __m512i low = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
          const __m512i high = _mm512_add_epi32(low, _mm512_set1_epi32(8));
          for (int64_t j = 0; 2 * j < s.W; j += 16) {
            const int64_t m = s.W - 2 * j;  // outputs left in the row
            const __m512 e = phase_sum(0, base, j, (m + 1) / 2 < 16 ? (m + 1) / 2 : 16);
            const __m512 o = phase_sum(1, base, j, m / 2 < 16 ? m / 2 : 16);
            _mm512_mask_storeu_ps(dx_row + 2 * j, lanes_below(m), _mm512_permutex2var_ps(e, low, o));
            _mm512_mask_storeu_ps(dx_row + 2 * j + 16, lanes_below(m - 16), _mm512_permutex2var_ps(e, high, o));
          }
          continue;
        }
      }
#endif
      for (int64_t b = 0; b < s.sw; ++b) {
        const int64_t J = DepthwiseGather::count(b, s.W, s.sw);
        T* out = s.sw == 1 ? dx_row : rows + b * s.W;
        for (int64_t j = 0; j < J; j += L) {
          const int64_t n = J - j < L ? J - j : L;
          const V acc = phase_sum(b, base, j, n);
          if (n == L) vstore(out + j, acc);
          else vstore_partial(out + j, acc, n);
        }
      }
      if (s.sw > 1)
        for (int64_t b = 0; b < s.sw; ++b)
          for (int64_t j = 0, iw = b; iw < s.W; ++j, iw += s.sw) dx_row[iw] = rows[b * s.W + j];
    }
  }
}

// sum[t] += the sample's tap t of dW for one output (dy_o (OH, OW)): a vector sum over its
// rows, added in double. A fixed count of taps keeps a register a tap, each dy vector
// loaded once; else tap by tap.
template <int kTaps, class T>
void depthwise_weight_gradient_plane(double* sum, const T* dy_o, const T* xp, const ConvShape& s,
                                     const DepthwisePlane& d) {
  using V = typename Simd<T>::V;
  constexpr int64_t L = Simd<T>::lanes;
  const int64_t* offset = d.offset.data();
  auto row_products = [&](auto&& add) {  // add(t, dy vector, x vector) over every row and vector
    for (int64_t oh = 0; oh < s.OH; ++oh) {
      const T* a = dy_o + oh * s.OW;
      const T* base = xp + oh * d.grid.Wg;
      int64_t i = 0;
      for (; i + L <= s.OW; i += L) add(vload(a + i), base + i, L);
      if (i < s.OW) add(vload_partial(a + i, s.OW - i, T(0)), base + i, s.OW - i);
    }
  };
  auto load = [](const T* p, int64_t n) { return n == L ? vload(p) : vload_partial(p, n, T(0)); };
  if constexpr (kTaps > 0) {
    V acc[kTaps];
    for (int t = 0; t < kTaps; ++t) acc[t] = vsplat(T(0));
    row_products([&](V g, const T* base, int64_t n) {
      for (int t = 0; t < kTaps; ++t) acc[t] += g * load(base + offset[t], n);
    });
    for (int t = 0; t < kTaps; ++t) sum[t] += double(hsum(acc[t]));
  } else {
    for (int64_t t = 0; t < s.KH * s.KW; ++t) {
      V acc = vsplat(T(0));
      row_products([&](V g, const T* base, int64_t n) { acc += g * load(base + offset[t], n); });
      sum[t] += double(hsum(acc));
    }
  }
}

template <class T> void depthwise_forward(T* y, const T* x, const T* w, const T* bias, const ConvShape& s,
                                          const Geometry& g) {
  const DepthwisePlane d(s);
  for_tasks(s.N * s.groups, 2.0 * g.Og * g.Kc * g.P, [&](int64_t task, int) {
    static thread_local std::vector<T> pad_buffer;
    const int64_t n = task / s.groups, c = task % s.groups;
    const T* xp = wide_grid_copy(pad_buffer, x + (n * s.C + c) * g.HW, s, 1, d.grid);
    T* y_c = y + (n * s.O + c * g.Og) * g.P;
    const T *w_c = w + c * g.Og * g.Kc, *b_c = bias ? bias + c * g.Og : nullptr;
    with_fixed_taps(g.Kc, [&](auto taps) { depthwise_forward_plane<taps()>(y_c, xp, w_c, b_c, s, d, g.Og); });
  });
}

// dW and db of a channel a task, over the samples in order (each sample's tap a vector
// sum over its rows, added in double), then dx a plane a task
template <class T> void depthwise_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w,
                                           const ConvShape& s, const Geometry& g) {
  const DepthwisePlane d(s);
  if (dw || db)
    for_tasks(s.groups, 2.0 * s.N * g.Og * g.Kc * g.P, [&](int64_t c, int) {
      static thread_local std::vector<T> pad_buffer;
      static thread_local std::vector<double> sum_buffer;
      double* const sum = scratch(sum_buffer, size_t(g.Og * (g.Kc + 1)));  // (Og, taps), then db's (Og,)
      std::fill(sum, sum + g.Og * (g.Kc + 1), 0.0);
      for (int64_t n = 0; n < s.N; ++n) {
        const T* dy_c = dy + (n * s.O + c * g.Og) * g.P;
        if (db)
          for (int64_t o = 0; o < g.Og; ++o) sum[g.Og * g.Kc + o] += sum_in_double(dy_c + o * g.P, g.P);
        if (!dw) continue;
        const T* xp = wide_grid_copy(pad_buffer, x + (n * s.C + c) * g.HW, s, 1, d.grid);
        for (int64_t o = 0; o < g.Og; ++o) {
          double* sum_o = sum + o * g.Kc;
          const T* dy_o = dy_c + o * g.P;
          with_fixed_taps(g.Kc, [&](auto taps) { depthwise_weight_gradient_plane<taps()>(sum_o, dy_o, xp, s, d); });
        }
      }
      if (dw)
        for (int64_t i = 0; i < g.Og * g.Kc; ++i) dw[c * g.Og * g.Kc + i] = T(sum[i]);
      if (db)
        for (int64_t o = 0; o < g.Og; ++o) db[c * g.Og + o] = T(sum[g.Og * g.Kc + o]);
    });
  if (dx) {
    const DepthwiseGather q(s);
    for_tasks(s.N * s.groups, 2.0 * g.Og * g.Kc * g.P, [&](int64_t task, int) {
      static thread_local std::vector<T> dy_buffer, rows_buffer;
      const int64_t n = task / s.groups, c = task % s.groups;
      depthwise_input_gradient_plane(dx + (n * s.C + c) * g.HW, scratch(dy_buffer, size_t(g.Og * q.plane())),
                                     scratch(rows_buffer, size_t(s.sw * s.W)), dy + (n * s.O + c * g.Og) * g.P,
                                     w + c * g.Og * g.Kc, s, q, g.Og);
    });
  }
}

template <class T> void conv2d_forward(T* y, const T* x, const T* w, const T* bias, const ConvShape& s) {
  const Geometry g = geometry(s);
  if (s.N == 0 || s.O == 0 || g.P == 0) return;
  if (depthwise(s, g)) return depthwise_forward(y, x, w, bias, s, g);
#if SJ_VECTOR_BYTES >= 32
  if constexpr (sizeof(T) == 4) {
    if (fourier_forward(s, g) && fourier_conv2d_forward(y, x, w, bias, s, g)) return;
  }
#endif
  if (const int64_t S = samples_per_block<T>(s, g.P)) {  // tiny images: position-major blocks of S samples
    for_tasks(ceil_div(s.N, S) * s.groups, 2.0 * S * g.P * g.Og * g.Kc, [&](int64_t task, int gemm_threads) {
      static thread_local std::vector<T> out_buffer, pad_buffer;
      const int64_t n0 = (task / s.groups) * S, grp = task % s.groups;
      const int64_t samples = n0 + S < s.N ? S : s.N - n0;
      T* yt = scratch(out_buffer, size_t(samples * g.P) * size_t(g.Og));  // (S P, Og)
      const int64_t Hp = reach_rows(s), Wp = reach_cols(s);
      const T* xp = padded_block(pad_buffer, x + (n0 * s.C + grp * g.Cg) * g.HW, s, samples, g.Cg, Hp, Wp);
      gemm_detail::gemm_driver(yt, ImagePatchesA<T>{{{}, xp, &s, g.Cg, Hp, Wp}},
                               gemm_detail::MatrixB<T>{w + grp * g.Og * g.Kc, true, g.Og, g.Kc}, samples * g.P, g.Og,
                               g.Kc, T(1), T(0), bias ? bias + grp * g.Og : nullptr,
                               bias ? GemmBias::per_column : GemmBias::none, GemmActivation::none, gemm_threads);
      channels_last_output_into(y, yt, s, g, n0, grp, samples);
    });
    return;
  }
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
  if constexpr (sizeof(T) == 4) {
    if (winograd_forward(s, g) && winograd_conv2d_forward(y, x, w, bias, s, g)) return;
    if (direct_forward(s, g)) {
      const int64_t taps = s.KH * s.KW, tiles = ceil_div(g.Og, int64_t(kDirectForwardOutputs));
      const int64_t per_group = tiles * kDirectForwardOutputs * g.Cg * taps;
      static thread_local std::vector<float> weight_buffer;
      float* const wt = scratch(weight_buffer, size_t(s.groups * per_group));
      for (int64_t grp = 0; grp < s.groups; ++grp)
        pack_direct_forward_weights(wt + grp * per_group, w + grp * g.Og * g.Kc, g, taps);
      const int64_t Hp = reach_rows(s), Wp = ceil_div(s.OW, int64_t(32)) * 32 + s.KW - 1;
      for_tasks(s.N * s.groups, 2.0 * g.Og * g.Kc * g.P, [&](int64_t task, int) {
        static thread_local std::vector<float> pad_buffer;
        const int64_t n = task / s.groups, grp = task % s.groups;
        // rows read up to 48 floats from their start: Wp covers whole 32-wide steps, the tail the last row
        const float* xp = padded_block(pad_buffer, x + (n * s.C + grp * g.Cg) * g.HW, s, 1, g.Cg, Hp, Wp, 48);
        float* y_n = y + (n * s.O + grp * g.Og) * g.P;
        const float* wt_g = wt + grp * per_group;
        const float* b = bias ? bias + grp * g.Og : nullptr;
        switch (s.KW) {
          case 1: direct_forward_sample<1>(y_n, xp, wt_g, b, s, g, Hp, Wp); break;
          case 2: direct_forward_sample<2>(y_n, xp, wt_g, b, s, g, Hp, Wp); break;
          case 3: direct_forward_sample<3>(y_n, xp, wt_g, b, s, g, Hp, Wp); break;
          case 4: direct_forward_sample<4>(y_n, xp, wt_g, b, s, g, Hp, Wp); break;
          case 5: direct_forward_sample<5>(y_n, xp, wt_g, b, s, g, Hp, Wp); break;
          case 6: direct_forward_sample<6>(y_n, xp, wt_g, b, s, g, Hp, Wp); break;
          case 7: direct_forward_sample<7>(y_n, xp, wt_g, b, s, g, Hp, Wp); break;
          default: direct_forward_sample<8>(y_n, xp, wt_g, b, s, g, Hp, Wp); break;
        }
      });
      return;
    }
  }
#endif
  // the weights packed once for every sample (read in place, each row tile's broadcasts
  // took an address computation, and spilled registers, per row)
  const int64_t panels_size = gemm_detail::PackedPanelsA<T>::size(g.Og, g.Kc);  // per group
  static thread_local std::vector<T> panel_buffer;
  T* const panels = scratch(panel_buffer, size_t(s.groups * panels_size));
  for (int64_t grp = 0; grp < s.groups; ++grp)
    gemm_detail::PackedPanelsA<T>::pack_all(panels + grp * panels_size, w + grp * g.Og * g.Kc, false, g.Og, g.Kc);
  // the wide form's rows of B in a padded sample (see WideColumnsB)
  static thread_local std::vector<int64_t> rows_buffer;
  int64_t* const wide_rows = wide_columns(s, g) ? scratch(rows_buffer, size_t(g.Kc)) : nullptr;
  const WideGrid grid(s);
  if (wide_rows)
    for (int64_t c = 0, k = 0; c < g.Cg; ++c)
      for (int64_t kh = 0; kh < s.KH; ++kh)
        for (int64_t kw = 0; kw < s.KW; ++kw) wide_rows[k++] = grid.row(s, c, kh, kw);
  for_tasks(s.N * s.groups, 2.0 * g.Og * g.Kc * g.P, [&](int64_t task, int gemm_threads) {
    const int64_t n = task / s.groups, grp = task % s.groups;
    const T* x_ng = x + (n * s.C + grp * g.Cg) * g.HW;
    T* y_ng = y + (n * s.O + grp * g.Og) * g.P;
    const gemm_detail::PackedPanelsA<T> weights{{}, panels + grp * panels_size, g.Og, g.Kc};
    const T* b = bias ? bias + grp * g.Og : nullptr;
    const GemmBias bias_kind = bias ? GemmBias::per_row : GemmBias::none;
    if (g.pointwise) {
      gemm_detail::gemm_driver(y_ng, weights, gemm_detail::MatrixB<T>{x_ng, false, g.P, g.Kc}, g.Og, g.P, g.Kc, T(1),
                               T(0), b, bias_kind, GemmActivation::none, gemm_threads);
    } else if (wide_columns(s, g)) {  // (Og, OH Wg) into a buffer, then its first OW columns of each row
      static thread_local std::vector<T> pad_buffer, wide_buffer;
      const T* xp = wide_grid_copy(pad_buffer, x_ng, s, g.Cg, grid);
      T* yw = scratch(wide_buffer, size_t(g.Og * s.OH * grid.Wg));
      gemm_detail::gemm_driver(yw, weights, WideColumnsB<T>{{}, xp, wide_rows}, g.Og, s.OH * grid.Wg, g.Kc, T(1), T(0),
                               b, bias_kind, GemmActivation::none, gemm_threads);
      for (int64_t o = 0; o < g.Og; ++o)
        for (int64_t oh = 0; oh < s.OH; ++oh)
          copy_run(y_ng + (o * s.OH + oh) * s.OW, yw + (o * s.OH + oh) * grid.Wg, s.OW);
    } else {
      gemm_detail::gemm_driver(y_ng, weights, ImageColumnsB<T>{{}, x_ng, &s}, g.Og, g.P, g.Kc, T(1), T(0), b, bias_kind,
                               GemmActivation::none, gemm_threads);
    }
  });
}

// With stride 1, the input gradient is itself a convolution: dy, padded by
// d (k - 1) - p, against the weights flipped in space with input and output
// channels swapped (per group). That runs on the forward path, packed straight
// from dy, instead of a dcol buffer and a scatter. False when it does not
// apply or would not pay.
template <class T> void conv2d_forward(T* y, const T* x, const T* w, const T* bias, const ConvShape& s);

template <class T> bool input_gradient_as_convolution(T* dx, const T* dy, const T* w, const ConvShape& s) {
  const int64_t ph = s.dh * (s.KH - 1) - s.ph, pw = s.dw * (s.KW - 1) - s.pw;
  if (s.sh != 1 || s.sw != 1 || ph < 0 || pw < 0) return false;
  if (s.OH + 2 * ph - s.dh * (s.KH - 1) != s.H || s.OW + 2 * pw - s.dw * (s.KW - 1) != s.W) return false;
  // it multiplies by the padding too: worth it when dx is not much larger than dy ('same'-like
  // padding); a small image under a large unpadded kernel keeps the dcol form
  if (4 * s.H * s.W > 5 * s.OH * s.OW) return false;
  const int64_t Cg = s.C / s.groups, Og = s.O / s.groups, taps = s.KH * s.KW;
  // w: (O, Cg, KH, KW) -> flipped: (C, Og, KH, KW), group by group
  static thread_local std::vector<T> flipped_buffer;  // (kept between calls, as dW's partials)
  T* const flipped = scratch(flipped_buffer, size_t(s.C) * size_t(Og) * size_t(taps));
  for (int64_t grp = 0; grp < s.groups; ++grp)
    for (int64_t o = 0; o < Og; ++o)
      for (int64_t c = 0; c < Cg; ++c)
        for (int64_t t = 0; t < taps; ++t)
          flipped[((grp * Cg + c) * Og + o) * taps + (taps - 1 - t)] = w[((grp * Og + o) * Cg + c) * taps + t];
  ConvShape t = s;
  t.C = s.O, t.H = s.OH, t.W = s.OW;  // the input is dy
  t.O = s.C, t.OH = s.H, t.OW = s.W;  // the output is dx
  t.ph = ph, t.pw = pw;
  conv2d_forward(dx, dy, static_cast<const T*>(flipped), static_cast<const T*>(nullptr), t);
  return true;
}


constexpr int64_t kSumChunk = 4096;  // elements of dW's partials summed by one task

template <class T>
void conv2d_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const ConvShape& s) {
  const Geometry g = geometry(s);
  const int64_t weight_size = s.O * g.Kc;
  if (dw) std::memset(dw, 0, sizeof(T) * size_t(weight_size));
  if (db) std::memset(db, 0, sizeof(T) * size_t(s.O));
  if (s.N == 0 || s.O == 0 || g.P == 0) {
    if (dx) std::memset(dx, 0, sizeof(T) * size_t(s.N * s.C * g.HW));
    return;
  }
  if (depthwise(s, g)) return depthwise_backward(dx, dw, db, dy, x, w, s, g);
#if SJ_VECTOR_BYTES >= 32
  if constexpr (sizeof(T) == 4) {
    if ((dx || dw) && fourier_backward(s, g)) {
      if (fourier_conv2d_backward(dx, dw, db, dy, x, w, s, g)) return;
      if (dw) std::memset(dw, 0, sizeof(T) * size_t(weight_size));  // (the forms below add into them)
      if (db) std::memset(db, 0, sizeof(T) * size_t(s.O));
    }
  }
#endif
  // (dx is written whole below, each sample's part by its own task: zeroing all of it here
  // first was a single-threaded pass over dx, 2% of a 56x56 backward)
  // dW and db: fixed chunks of samples, one GEMM each (depth S P), added in order. The
  // chunks depend on the shape alone (so the sum does not depend on the threads): at most
  // 16, and deep enough (S P >= KC) that tiny images do not make tiny GEMMs
  const int64_t by_depth = ceil_div(s.N * g.P, int64_t(GemmBlocking<T>::KC));
  const int64_t chunks = by_depth < 1 ? 1 : (by_depth > 16 ? 16 : (by_depth > s.N ? s.N : by_depth));
  const int64_t per_chunk = ceil_div(s.N, chunks);
  // dW's partials: (Og, taps, Cg) in the channels-last form, (Og, Kc) in the direct one, dU
  // (16, Og, Cg) in the Winograd one, else (Kc, Og)
  bool direct = false, try_winograd = false;
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
  if constexpr (sizeof(T) == 4) {
    try_winograd = winograd_weight_gradient(s, g);
    direct = direct_weight_gradient(s, g);  // (under 16 channels: never channels_last nor winograd)
  }
#endif
  // dW and db in the Winograd form or not; false (both unfinished) where the Winograd form
  // met a value that is not finite (see winograd_check)
  auto weight_gradient = [&](bool winograd) {
    const bool channels_last = !winograd && channels_last_weight_gradient(s, g);
    // a chunk's partial per group: dU (16, Og, Cg) in the Winograd form, else as large as dW_g
    const int64_t partial_group = winograd ? 16 * g.Og * winograd_pieces(s) * g.Cg : g.Og * g.Kc;
    const int64_t partial_size = s.groups * partial_group;
    std::vector<char> finite(size_t(chunks * s.groups), 1);  // per task
    // (kept between calls: a fresh one is a new mapping of megabytes, page-faulted in on every
    // step; each chunk's GEMM overwrites its partial, an empty chunk zeroes it)
    static thread_local std::vector<T> dw_buffer;
    T* const dw_partial = dw ? scratch(dw_buffer, size_t(chunks) * size_t(partial_size)) : nullptr;
    std::vector<double> db_partial(db ? size_t(chunks) * size_t(s.O) : 0, 0.0);
    for_tasks(chunks * s.groups, 2.0 * g.Og * g.Kc * g.P * per_chunk, [&](int64_t task, int gemm_threads) {
      const int64_t chunk = task / s.groups, grp = task % s.groups;
      const int64_t n0 = chunk * per_chunk;
      const int64_t samples = (n0 + per_chunk < s.N ? n0 + per_chunk : s.N) - n0;
      if (samples <= 0) {
        if (dw)
          std::memset(dw_partial + chunk * partial_size + grp * partial_group, 0, sizeof(T) * size_t(partial_group));
        return;
      }
      const T* dy0 = dy + (n0 * s.O + grp * g.Og) * g.P;
      if (db) {  // first: the dy it reads is then in cache for the transposes of dW's channels-last form
        double* partial = db_partial.data() + chunk * s.O + grp * g.Og;
        for (int64_t n = 0; n < samples; ++n)
          for (int64_t o = 0; o < g.Og; ++o) {
            partial[o] += sum_in_double(dy0 + n * s.O * g.P + o * g.P, g.P);
          }
      }
      if (dw) {
        T* partial = dw_partial + chunk * partial_size + grp * partial_group;
        const T* x0 = x + (n0 * s.C + grp * g.Cg) * g.HW;
        // otherwise dW_g^T (Kc, Og) = col (Kc, S P) dy^T (S P, Og): the long image runs go to the packed A side
        const SamplesTransposedB<T> dy_t{{}, dy0, g.P, s.O * g.P};  // (read by those two forms only)
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
        if constexpr (sizeof(T) == 4) {
          if (winograd) {
            if (!winograd_weight_gradient_chunk(partial, dy0, x0, s, g, samples)) finite[size_t(task)] = 0;
            return;
          }
          if (direct) {
            direct_weight_gradient_chunk(partial, dy0, x0, s, g, samples);
            return;
          }
        }
#endif
        if (channels_last) {  // dW_g (Og, taps Cg) = dy^T shifted, from channels-last copies of the chunk
          // copied a few samples at a time (about 4096 pixels), each block's product added to
          // the last, so the copies stay a few megabytes whatever the batch
          static thread_local std::vector<T> xt_buffer, dyt_buffer;
          static thread_local std::vector<int64_t> rows_buffer;
          const int64_t Hp = reach_rows(s), Wp = reach_cols(s);
          const int64_t per_block = ceil_div(int64_t(4096), g.P);
          // the row table of a block's pixels (see ShiftedChannelsB), the same for every block
          // (a shorter last block reads its start)
          int64_t* rows = nullptr;
          if (ShiftedChannelsB<T>::kMayHaveRowTable && g.Cg % (GemmBlocking<T>::NV * Simd<T>::lanes) == 0) {
            const int64_t count = per_block < samples ? per_block : samples;
            rows = scratch(rows_buffer, size_t(count * g.P));
            for (int64_t n = 0, k = 0; n < count; ++n)
              for (int64_t oh = 0; oh < s.OH; ++oh)
                for (int64_t ow = 0; ow < s.OW; ++ow) rows[k++] = ((n * Hp + oh) * Wp + ow) * g.Cg;
          }
          for (int64_t b0 = 0; b0 < samples; b0 += per_block) {
            const int64_t count = samples - b0 < per_block ? samples - b0 : per_block;
            const T* xt = padded_channels_last(xt_buffer, x0 + b0 * s.C * g.HW, s, count, g.Cg, Hp, Wp);
            const T* dyt = channels_last_dy(dyt_buffer, dy0 + b0 * s.O * g.P, s, g, count);  // (S P, Og)
            gemm_detail::gemm_driver(partial, gemm_detail::MatrixA<T>{dyt, true, g.Og, count * g.P},
                                     ShiftedChannelsB<T>{{}, xt, &s, g.Cg, Hp, Wp, rows}, g.Og, g.Kc, count * g.P, T(1),
                                     b0 == 0 ? T(0) : T(1), static_cast<const T*>(nullptr), GemmBias::none,
                                     GemmActivation::none, gemm_threads);
          }
        } else if (s.OW < Simd<T>::lanes) {  // short rows: gather from a padded copy of the chunk
          static thread_local std::vector<T> pad_buffer;
          const int64_t Hp = reach_rows(s), Wp = reach_cols(s);
          const T* xp = padded_block(pad_buffer, x0, s, samples, g.Cg, Hp, Wp);
          gemm_detail::gemm_driver(partial, PaddedColumnsA<T>{{{}, xp, &s, g.Cg, Hp, Wp}}, dy_t, g.Kc, g.Og,
                                   samples * g.P, T(1), T(0), static_cast<const T*>(nullptr), GemmBias::none,
                                   GemmActivation::none, gemm_threads);
        } else {
          gemm_detail::gemm_driver(partial, ImageColumnsA<T>{{}, x0, &s, s.C * g.HW}, dy_t, g.Kc, g.Og,
                                   samples * g.P, T(1), T(0), static_cast<const T*>(nullptr), GemmBias::none,
                                   GemmActivation::none, gemm_threads);
        }
      }
    });
    if (!all_set(finite)) return false;
    if (dw) {
      // the chunks' partials (each group's is dW_g^T (Kc, Og), or dW_g as (Og, taps, Cg) in the
      // channels-last form and as (Og, Kc) in the direct one) summed in order into the first,
      // in their own layout (contiguous, vectorised), then transposed into dw once. The sum
      // runs on every thread, each over its own elements (one thread had taken 4-7% of LeNet
      // conv2's dW: 16 partials of 51,200)
      T* total = dw_partial;
      parallel_chunks(partial_size, kSumChunk, chunks, [&](int64_t, int64_t begin, int64_t end) {
        for (int64_t chunk = 1; chunk < chunks; ++chunk) {
          const T* partial = dw_partial + chunk * partial_size;
          for (int64_t i = begin; i < end; ++i) total[i] += partial[i];
        }
      });
      const int64_t taps = s.KH * s.KW;
      for (int64_t grp = 0; grp < s.groups; ++grp) {
        const T* t_g = total + grp * partial_group;
        T* dw_g = dw + grp * g.Og * g.Kc;
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
        if constexpr (sizeof(T) == 4) {
          if (winograd) {  // dU (16, Og, Cg) -> G^T dU G
            winograd_weights_back(dw_g, t_g, s, g.Og, g.Cg);
            continue;
          }
        }
#endif
        if (direct) {  // already (Og, Kc)
          std::memcpy(dw_g, t_g, sizeof(T) * size_t(g.Og * g.Kc));
        } else if (channels_last) {  // (Og, taps, Cg) -> (Og, Cg, taps)
          for (int64_t o = 0; o < g.Og; ++o)
            for (int64_t c = 0; c < g.Cg; ++c)
              for (int64_t t = 0; t < taps; ++t) dw_g[(o * g.Cg + c) * taps + t] = t_g[(o * taps + t) * g.Cg + c];
        } else {  // (Kc, Og) -> (Og, Kc)
          transpose_into(dw_g, g.Kc, t_g, g.Og, g.Kc, g.Og);
        }
      }
    }
    if (db)
      for (int64_t chunk = 0; chunk < chunks; ++chunk)
        for (int64_t o = 0; o < s.O; ++o) db[o] = T(double(db[o]) + db_partial[chunk * s.O + o]);
    return true;
  };
  if ((dw || db) && !weight_gradient(try_winograd)) weight_gradient(false);
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
  if constexpr (sizeof(T) == 4) {
    if (dx && winograd_input_gradient(s, g) && winograd_input_gradient_channels(dx, dy, w, s, g)) return;
  }
#endif
  if (dx && input_gradient_as_convolution(dx, dy, w, s)) return;
  if (dx) {
    // dcol (Kc, P) = W_g^T dy_ng, scattered back into dx_ng. W_g^T is packed once for all
    // samples (each sample's GEMM packed it again: 4% of LeNet conv2's backward)
    const int64_t panels_size = gemm_detail::PackedPanelsA<T>::size(g.Kc, g.Og);  // per group
    static thread_local std::vector<T> panel_buffer;
    T* const panels = scratch(panel_buffer, size_t(s.groups * panels_size));
    for (int64_t grp = 0; grp < s.groups; ++grp)
      gemm_detail::PackedPanelsA<T>::pack_all(panels + grp * panels_size, w + grp * g.Og * g.Kc, true, g.Kc, g.Og);
    for_tasks(s.N * s.groups, 2.0 * g.Og * g.Kc * g.P, [&](int64_t task, int gemm_threads) {
      static thread_local std::vector<T> col_buffer;
      const int64_t n = task / s.groups, grp = task % s.groups;
      const T* dy_ng = dy + (n * s.O + grp * g.Og) * g.P;
      T* dx_ng = dx + (n * s.C + grp * g.Cg) * g.HW;
      T* col = g.pointwise ? dx_ng : scratch(col_buffer, size_t(g.Kc) * size_t(g.P));
      gemm_detail::gemm_driver(col, gemm_detail::PackedPanelsA<T>{{}, panels + grp * panels_size, g.Kc, g.Og},
                               gemm_detail::MatrixB<T>{dy_ng, false, g.P, g.Og}, g.Kc, g.P, g.Og, T(1), T(0),
                               static_cast<const T*>(nullptr), GemmBias::none, GemmActivation::none, gemm_threads);
      if (!g.pointwise) {  // (pointwise: the GEMM wrote dx_ng itself)
        std::memset(dx_ng, 0, sizeof(T) * size_t(g.Cg * g.HW));
        col2im_add(dx_ng, col, s, g.Cg);
      }
    });
  }
}

template <class T> void fill(ConvKernels<T>& k) {
  k.conv2d_forward = conv2d_forward<T>;
  k.conv2d_backward = conv2d_backward<T>;
}

}  // namespace

void register_conv(KernelSet& k) {
  fill(k.f32.conv);
  fill(k.f64.conv);
}

}  // namespace SJ_ISA
}  // namespace shenjing

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
// Winograd F(2x2, 3x3) instead, where it measured faster (see winograd_forward).
//
// Threads take (sample, group) or (chunk, group) tasks with one-thread GEMMs
// when there are enough of them, else the GEMMs use every thread. dW and db
// are summed per fixed chunk of samples and the chunks added in order, so
// every result is bit-identical with any thread count.
#include "shenjing/conv.h"

#include <cstring>
#include <type_traits>
#include <vector>

#include "shenjing/dispatch.h"
#include "shenjing/elementwise.h"
#include "shenjing/gemm_driver.h"
#include "shenjing/gemm_internal.h"

namespace shenjing {
namespace SJ_ISA {
namespace {

struct Geometry {
  int64_t Cg, Og, Kc, P, HW;  // channels and outputs per group, GEMM depth, output pixels, input pixels
  bool pointwise;              // 1x1, stride 1, no padding: the columns are x itself
};

Geometry geometry(const ConvShape& s) {
  Geometry g;
  g.Cg = s.C / s.groups;
  g.Og = s.O / s.groups;
  g.Kc = g.Cg * s.KH * s.KW;
  g.P = s.OH * s.OW;
  g.HW = s.H * s.W;
  g.pointwise = s.KH == 1 && s.KW == 1 && s.sh == 1 && s.sw == 1 && s.ph == 0 && s.pw == 0 && s.OH == s.H && s.OW == s.W;
  return g;
}

// Rows and columns of the zero-padded input that the windows reach (the padded copies' Hp, Wp)
inline int64_t reach_rows(const ConvShape& s) { return (s.OH - 1) * s.sh + (s.KH - 1) * s.dh + 1; }
inline int64_t reach_cols(const ConvShape& s) { return (s.OW - 1) * s.sw + (s.KW - 1) * s.dw + 1; }

// Whether every flag is set (the tasks' flags: each task writes its own)
inline bool all_set(const std::vector<char>& flags) {
  for (char flag : flags)
    if (!flag) return false;
  return true;
}

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
      if (c.OW == 8 && c.sw == 1 && 7 + (c.KW - 1) * c.dw < 16) return pack_row_pairs(dst, k0, kc, j0, n);
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
// 56x56 backward, against 30 for dx).

// dst[j dst_stride + i] = src[i src_stride + j] for i < rows, j < cols
template <class T>
void transpose_into(T* dst, int64_t dst_stride, const T* src, int64_t src_stride, int64_t rows, int64_t cols) {
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
  // 16 rows at a time, in register transposes (below 8 rows and 8 columns most of each
  // 16x16 transpose is masked off: the blocked loop below took 0.94x the time on 4 x 4)
  if constexpr (sizeof(T) == 4) {
    if (rows >= 8 || cols >= 8) {
      for (int64_t i = 0; i < rows; i += 16) {
        const int64_t width = rows - i < 16 ? rows - i : 16;
        gemm_detail::pack_rows_transposed(dst + i, dst_stride, width, src + i * src_stride, src_stride, width, cols);
      }
      return;
    }
  }
#endif
  constexpr int64_t kBlock = 16;  // blocks that stay in L1 on both sides
  for (int64_t i0 = 0; i0 < rows; i0 += kBlock)
    for (int64_t j0 = 0; j0 < cols; j0 += kBlock)
      for (int64_t i = i0; i < (i0 + kBlock < rows ? i0 + kBlock : rows); ++i)
        for (int64_t j = j0; j < (j0 + kBlock < cols ? j0 + kBlock : cols); ++j)
          dst[j * dst_stride + i] = src[i * src_stride + j];
}

// The S samples' channels of one group, channels-last and zero-padded to every
// window's reach: (S, Hp, Wp, Cg), pixel (ih + ph, iw + pw) holding x[.., ih, iw].
// Only the border is zeroed.
template <class T>
T* padded_channels_last(std::vector<T>& buffer, const T* x, const ConvShape& s, int64_t samples, int64_t Cg,
                        int64_t Hp, int64_t Wp) {
  T* xt = scratch(buffer, size_t(samples * Hp * Wp * Cg));
  const int64_t rows = s.H < Hp - s.ph ? s.H : Hp - s.ph, cols = s.W < Wp - s.pw ? s.W : Wp - s.pw;
  for (int64_t n = 0; n < samples; ++n) {
    T* image = xt + n * Hp * Wp * Cg;
    if (rows <= 0 || cols <= 0) {  // every window lies in the padding
      std::memset(image, 0, sizeof(T) * size_t(Hp * Wp * Cg));
      continue;
    }
    std::memset(image, 0, sizeof(T) * size_t(s.ph * Wp * Cg));
    std::memset(image + (s.ph + rows) * Wp * Cg, 0, sizeof(T) * size_t((Hp - s.ph - rows) * Wp * Cg));
    for (int64_t ih = 0; ih < rows; ++ih) {
      T* row = image + (s.ph + ih) * Wp * Cg;
      std::memset(row, 0, sizeof(T) * size_t(s.pw * Cg));
      std::memset(row + (s.pw + cols) * Cg, 0, sizeof(T) * size_t((Wp - s.pw - cols) * Cg));
      transpose_into(row + s.pw * Cg, Cg, x + n * s.C * s.H * s.W + ih * s.W, s.H * s.W, Cg, cols);
    }
  }
  return xt;
}

// The S samples' dy of one group, channels last: (S, OH, OW, Og), from dy0 (the first sample's group)
template <class T>
T* channels_last_dy(std::vector<T>& buffer, const T* dy0, const ConvShape& s, const Geometry& g, int64_t samples) {
  T* dyt = scratch(buffer, size_t(samples * g.P * g.Og));
  for (int64_t n = 0; n < samples; ++n) transpose_into(dyt + n * g.P * g.Og, g.Og, dy0 + n * s.O * g.P, g.P, g.Og, g.P);
  return dyt;
}

// y[n0 + n, grp Og + o, p] = yt[n, p, o] for the S samples of a channels-last result yt (S, P, Og)
template <class T>
void channels_last_output_into(T* y, const T* yt, const ConvShape& s, const Geometry& g, int64_t n0, int64_t grp,
                               int64_t samples) {
  for (int64_t n = 0; n < samples; ++n)
    transpose_into(y + ((n0 + n) * s.O + grp * g.Og) * g.P, g.P, yt + n * g.P * g.Og, g.Og, g.P, g.Og);
}

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

// op(B) = one sample's columns over a wide output grid, for stride 1: (Kc, OH Wp),
// B((c, kh, kw), oh Wp + ow) = xp[c, oh + kh dh, ow + kw dw] for ow in [0, Wp), of which the
// first OW are output pixels and the rest are computed and dropped. Each row of B is then
// one run of the padded image, at rows[(c, kh, kw)] = (c Hp + kh dh) Wp + kw dw, which the
// driver reads in place through this row table instead of packing panels: the taps of a
// channel read the same lines of xp, so a chunk of 16 panels reads about a ninth of what
// its packed copy held under 3x3 taps, and nothing is copied (packing took 12% of a
// 64-channel 56x56 forward).
template <class T> struct WideColumnsB : gemm_detail::PackedOperand<T> {
  static constexpr bool kMayHaveRowTable = kFloatRowTables<T>;
  const T* xp;  // (Cg, Hp, Wp) and (KW - 1) dw + NR values after it, which the last panel's rows reach
  const int64_t* rows;  // (Kc,)
  const int64_t* row_table() const { return rows; }
  const T* panel(int64_t j0) const { return xp + j0; }
  void pack(T* dst, int64_t k0, int64_t kc, int64_t j0, int64_t n) const {
    gemm_detail::pack_table_rows(dst, panel(j0), rows + k0, kc, n);
  }
};

// The wide form pays (KW - 1) dw dropped columns per output row, a padded copy of the
// sample and a copy of its output: used for stride 1 when the dropped columns are at
// most an eighth of the grid (3x3 on 56x56: 2 of 58), not on small images under wide kernels.
inline bool wide_columns(const ConvShape& s, const Geometry& g) {
  const int64_t Wp = s.OW + (s.KW - 1) * s.dw;
  return s.sh == 1 && s.sw == 1 && !g.pointwise && 8 * (Wp - s.OW) <= Wp && s.OH > 1;
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

// Runs f(task, gemm_threads) for task in [0, tasks): in parallel with
// one-thread GEMMs when every thread gets a task, else in order with the
// GEMMs on every thread. Small convolutions go parallel over tasks too: a
// GEMM of a few thousand flops split over threads pays a fork and a join each
// (measured, 2 threads, 1->16 channels on 8x8, batch 64: forward 149 -> 86 us,
// backward 362 -> 184 us, with the threshold lowered from 64x to 4x kParallelMinWork).
template <class F> void for_tasks(int64_t tasks, double flops_per_task, F f) {
  const int threads = thread_count();
  const bool parallel = tasks >= threads && threads > 1 && flops_per_task * double(tasks) >= 4.0 * kParallelMinWork;
  run_indices(tasks, parallel, threads, Schedule::one_at_a_time, [&](int64_t t) { f(t, parallel ? 1 : threads); });
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

// --- Winograd F(2x2, 3x3), for 3x3 and 5x5 windows at stride 1 -----------------------
// Each 2x2 tile of outputs is A^T [U .* V] A over its 4x4 input patch d (Lavin and Gray,
// 2015), with V = B^T d B per channel and U = G g G^T per 3x3 weight g, summed over the
// channels:
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
//   A^T = [1 1 1 0; 0 1 -1 -1]
// so a channel pair costs 16 products per 4 outputs where the direct sum takes 36. The
// sum over channels of each of the 16 elements xi is a GEMM over a block of T tiles,
//   M_xi (Og, T) = U_xi (Og, Cg) V_xi (Cg, T),
// and the transforms are adds and halvings (exact but for the adds' rounding). The
// gradients are the adjoints: dU_xi = Mdy_xi V_xi^T with Mdy = A dy A^T (then dw = G^T dU G),
// and dV_xi = U_xi^T Mdy_xi (then dx += B dV B^T over each patch).
// Two forms: the row form vectorises the transforms over 16 tiles along a tile row, for
// images of 128+ tiles; the channels form (below) over 16 channels of channels-last copies,
// for smaller ones. Where each pays is measured, see winograd_forward.
// A 5-tap side is split into 3-tap pieces at offsets 0 and 3, zero past the kernel's edge
// (a 5x5 kernel as four 3x3 pieces, 36 taps for 25). Each piece is a 3x3 convolution of the
// image shifted by its offset, so the pieces are more channels of the same F(2x2, 3x3):
// Cv = pieces Cg of them, piece (i, j) = i pieces_w + j holding cv = piece Cg + c.
inline int64_t winograd_pieces_h(const ConvShape& s) { return ceil_div(s.KH, int64_t(3)); }
inline int64_t winograd_pieces_w(const ConvShape& s) { return ceil_div(s.KW, int64_t(3)); }
inline int64_t winograd_pieces(const ConvShape& s) { return winograd_pieces_h(s) * winograd_pieces_w(s); }
// the 3x3 convolution of piece (i, j): its offset taken off the padding
inline ConvShape winograd_piece_shape(const ConvShape& s, int64_t i, int64_t j) {
  ConvShape p = s;
  p.ph -= 3 * i, p.pw -= 3 * j;
  p.KH = 3, p.KW = 3;
  return p;
}

#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
constexpr int64_t kWinogradBlockTiles = 128;  // tiles per block of either form

// 3x3 or 5x5 (as pieces), stride and dilation 1
inline bool winograd_kernel(const ConvShape& s) {
  return (s.KH == 3 || s.KH == 5) && (s.KW == 3 || s.KW == 5) && s.sh == 1 && s.sw == 1 && s.dh == 1 && s.dw == 1;
}
inline bool winograd_3x3(const ConvShape& s) { return winograd_kernel(s) && s.KH == 3 && s.KW == 3; }
// the row form (128+ tiles a sample, rows of up to 1024: a block, at least one tile row of
// 16 Cg values a tile, stays a few times its share of the image), else the channels form
inline bool winograd_row_form(const ConvShape& s) {
  const int64_t TH = ceil_div(s.OH, int64_t(2)), TW = ceil_div(s.OW, int64_t(2));
  return TH * TW >= kWinogradBlockTiles && TW <= 1024;
}
// two blocks of tiles or more in the channels form (one is one task, whose GEMMs split)
inline bool winograd_two_blocks(const ConvShape& s) {
  return s.N * ceil_div(s.OH, int64_t(2)) * ceil_div(s.OW, int64_t(2)) >= 2 * kWinogradBlockTiles;
}
// Where each form pays, measured (bench/ab.py, 2 threads, new/old), forward / dx / dW:
// - row form, 3x3: forward (so dx, as the flipped forward) 0.66 on 64 channels of 56x56, 0.72
//   on 128 of 28x28, 0.73 on 256 of 28x28, 0.79 on 32 of 32x32, but 1.02-1.09 on 16
//   channels; dW 0.77 on 64 of 56x56, 0.88 on 16 of 56x56 and 32x32, 1.0 on 32 of 32x32.
// - row form, 5x5 (pieces): forward 0.87 and 0.90 on 64 of 28x28 and 32 of 32x32, dW 1.14-1.22.
// - channels form, 3x3: forward 0.76 on 64 of 16x16, 0.83 on 256 of 14x14, 0.91 on 128 of
//   14x14, 0.98 on 512 of 7x7, but 1.0-1.3 under 64 channels and 1.37 on one block (2
//   samples of 7x7); dx 0.42 (512 of 7x7) to 0.70 (128 of 14x14) and 0.5 on 32 of 4x4, but
//   1.45 on 16; dW 0.90-0.96 on 64+ channels over two blocks, 1.09-1.57 otherwise.
// - channels form, 5x5, LeNet's conv2 (32 -> 64 channels, 8x8 outputs): dx 0.82, forward
//   0.97, dW 1.22.
inline bool winograd_forward(const ConvShape& s, const Geometry& g) {
  if (!winograd_kernel(s)) return false;
  if (winograd_row_form(s)) return g.Cg >= 32 && g.Og >= 32;
  return winograd_3x3(s) && g.Cg >= 64 && g.Og >= 64 && winograd_two_blocks(s);
}
inline bool winograd_weight_gradient(const ConvShape& s, const Geometry& g) {
  if (!winograd_3x3(s)) return false;
  if (winograd_row_form(s)) return g.Cg >= 16 && g.Og >= 16;
  return g.Cg >= 64 && g.Og >= 64 && winograd_two_blocks(s);
}
// the channels form's adjoint (the row form's shapes take the forward of the flipped weights)
inline bool winograd_input_gradient(const ConvShape& s, const Geometry& g) {
  return winograd_kernel(s) && !winograd_row_form(s) && g.Cg >= 32 && g.Og >= 32;
}

// The transforms add and subtract inputs, so one inf makes inf - inf = NaN where the direct
// sum gives inf, a NaN spreads to a whole tile, and values near float's limit overflow in
// them (3e38 gave NaN where the direct sum gave inf): each transform checks what it loads,
// and a call that finds a value not finite or of 2^64 or more is redone the direct way.
// check + a 2^64 + b 2^64 is inf or NaN from the first such value on (two FMAs on ports
// the transforms leave idle; a sum of smaller ones that reaches 2^128 only costs the redo).
constexpr float kWinogradCheckScale = 0x1p64f;
inline __m512 winograd_check(__m512 check, __m512 a, __m512 b) {
  const __m512 scale = _mm512_set1_ps(kWinogradCheckScale);
  return _mm512_fmadd_ps(b, scale, _mm512_fmadd_ps(a, scale, check));
}
inline bool winograd_finite(__m512 check) {
  return _mm512_fpclass_ps_mask(check, 0x99) == 0;  // NaN (quiet 0x01, signalling 0x80), +inf 0x08, -inf 0x10
}

// The transforms' 1-D steps, each written once for both forms (16 tiles or 16 channels a
// vector); the 2-D transforms apply them along rows, then columns.
// B^T d: d0 - d2, d1 + d2, d2 - d1, d1 - d3
inline void winograd_bt(__m512 (&out)[4], __m512 d0, __m512 d1, __m512 d2, __m512 d3) {
  out[0] = _mm512_sub_ps(d0, d2), out[1] = _mm512_add_ps(d1, d2);
  out[2] = _mm512_sub_ps(d2, d1), out[3] = _mm512_sub_ps(d1, d3);
}
// B e (the adjoint of B^T): e0, e1 - e2 + e3, e1 + e2 - e0, -e3
inline void winograd_b(__m512 (&out)[4], __m512 e0, __m512 e1, __m512 e2, __m512 e3) {
  out[0] = e0, out[1] = _mm512_add_ps(_mm512_sub_ps(e1, e2), e3);
  out[2] = _mm512_sub_ps(_mm512_add_ps(e1, e2), e0), out[3] = _mm512_sub_ps(_mm512_setzero_ps(), e3);
}
// A^T m: m0 + m1 + m2, m1 - m2 - m3
inline void winograd_at(__m512 (&out)[2], __m512 m0, __m512 m1, __m512 m2, __m512 m3) {
  out[0] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2), out[1] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
}
// A y (the adjoint of A^T): y0, y0 + y1, y0 - y1, -y1
inline void winograd_a(__m512 (&out)[4], __m512 y0, __m512 y1) {
  out[0] = y0, out[1] = _mm512_add_ps(y0, y1);
  out[2] = _mm512_sub_ps(y0, y1), out[3] = _mm512_sub_ps(_mm512_setzero_ps(), y1);
}

// u (16, O, Cv): element xi = 4 i + j of G g G^T for each 3x3 piece g of the weights w[o, c],
// 16 channels a vector (each tap gathered from their kernels), over the threads by output
// (one scalar piece at a time, a 256-channel 3x3 layer's took 1 ms). False (and u
// unfinished) where a weight is not finite or of 2^64 or more (see winograd_check).
inline bool winograd_weights(float* u, const float* w, const ConvShape& s, int64_t Cg) {
  const int64_t pieces_w = winograd_pieces_w(s), pieces = winograd_pieces(s), Cv = pieces * Cg, plane = s.O * Cv;
  const int64_t taps = s.KH * s.KW;
  const __m512i kernels = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                             _mm512_set1_epi32(int32_t(taps)));  // lane l: kernel l's start
  std::vector<char> finite(size_t(s.O), 1);
  parallel_for(s.O, 100 * Cv, [&](int64_t o) {
    __m512 check = _mm512_setzero_ps();
    for (int64_t c0 = 0; c0 < Cg; c0 += 16) {
      const __mmask16 lanes = lanes_below(Cg - c0);
      const float* base = w + (o * Cg + c0) * taps;
      for (int64_t piece = 0; piece < pieces; ++piece) {
        const int64_t kh0 = 3 * (piece / pieces_w), kw0 = 3 * (piece % pieces_w);
        __m512 g[3][3];  // the piece's taps for 16 channels, 0 past the kernel
        for (int r = 0; r < 3; ++r)
          for (int q = 0; q < 3; ++q) {
            g[r][q] = _mm512_setzero_ps();
            if (kh0 + r < s.KH && kw0 + q < s.KW)
              g[r][q] = _mm512_mask_i32gather_ps(g[r][q], lanes, kernels, base + (kh0 + r) * s.KW + kw0 + q, 4);
          }
        for (int r = 0; r < 3; ++r)  // (the check takes pairs: g[r][2] twice)
          check = winograd_check(winograd_check(check, g[r][0], g[r][1]), g[r][2], g[r][2]);
        const __m512 half = _mm512_set1_ps(0.5f);
        __m512 t[4][3];  // G g (4, 3)
        for (int j = 0; j < 3; ++j) {
          t[0][j] = g[0][j];
          t[1][j] = _mm512_mul_ps(half, _mm512_add_ps(_mm512_add_ps(g[0][j], g[1][j]), g[2][j]));
          t[2][j] = _mm512_mul_ps(half, _mm512_add_ps(_mm512_sub_ps(g[0][j], g[1][j]), g[2][j]));
          t[3][j] = g[2][j];
        }
        float* out = u + o * Cv + piece * Cg + c0;
        for (int i = 0; i < 4; ++i) {  // times G^T
          _mm512_mask_storeu_ps(out + (4 * i + 0) * plane, lanes, t[i][0]);
          _mm512_mask_storeu_ps(out + (4 * i + 1) * plane, lanes,
                                _mm512_mul_ps(half, _mm512_add_ps(_mm512_add_ps(t[i][0], t[i][1]), t[i][2])));
          _mm512_mask_storeu_ps(out + (4 * i + 2) * plane, lanes,
                                _mm512_mul_ps(half, _mm512_add_ps(_mm512_sub_ps(t[i][0], t[i][1]), t[i][2])));
          _mm512_mask_storeu_ps(out + (4 * i + 3) * plane, lanes, t[i][2]);
        }
      }
    }
    if (!winograd_finite(check)) finite[size_t(o)] = 0;
  });
  return all_set(finite);
}

// ut (16, groups, Cv, Og): U_xi^T of each group, from u (16, O, Cv)
inline void winograd_weights_transposed(float* ut, const float* u, const ConvShape& s, int64_t Og, int64_t Cv) {
  for (int64_t xi = 0; xi < 16; ++xi)
    for (int64_t grp = 0; grp < s.groups; ++grp)
      transpose_into(ut + (xi * s.groups + grp) * Cv * Og, Og, u + (xi * s.O + grp * Og) * Cv, Cv, Og, Cv);
}

// v (16, Cg, T), element xi at xi xi_stride, = B^T d B for tile rows [th0, th0 + rows) of one
// sample's group x_g (Cg, H, W): tile (th, tw), at t = (th - th0) TW + tw, reads the padded
// rows 2 th .. 2 th + 3 and columns 2 tw .. 2 tw + 3 (image row 2 th - ph + i, column
// 2 tw - pw + j; 0 outside the image). Each patch row is four masked loads (lanes off the
// image read nothing) split into its even and odd columns for 16 tiles at a time, times B; a
// tile row's last two patch rows are the next one's first two, so each image row is loaded
// and transformed once.
struct WinogradRow {
  __m512 w[4];  // a patch row d times B: d0 - d2, d1 + d2, d2 - d1, d1 - d3
};

inline bool winograd_input(float* v, int64_t T, int64_t xi_stride, const float* x_g, const ConvShape& s, int64_t Cg,
                           int64_t th0, int64_t rows, int64_t TW) {
  __m512 check = _mm512_setzero_ps();  // see winograd_finite
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
  for (int64_t tw0 = 0; tw0 < TW; tw0 += 16) {
    // the four loads of a patch row: image columns col + {0, 16, 2, 18} onwards, lanes on the image
    const int64_t col = 2 * tw0 - s.pw;
    const int64_t at[4] = {col, col + 16, col + 2, col + 18};
    __mmask16 mask[4];
    int64_t offset[4];  // (the row's start where no lane reads, so no pointer leaves the row)
    for (int k = 0; k < 4; ++k) {
      mask[k] = lanes_between(-at[k], s.W - at[k]);
      offset[k] = mask[k] ? at[k] : 0;
    }
    const __mmask16 tiles = lanes_below(TW - tw0);
    for (int64_t c = 0; c < Cg; ++c) {
      const float* xc = x_g + c * s.H * s.W;
      auto patch_row = [&](int64_t ih) {  // image row ih (0 off the image) times B
        WinogradRow p;
        if (ih < 0 || ih >= s.H) {
          for (int j = 0; j < 4; ++j) p.w[j] = _mm512_setzero_ps();
          return p;
        }
        const float* row = xc + ih * s.W;
        const __m512 lo = _mm512_maskz_loadu_ps(mask[0], row + offset[0]);
        const __m512 hi = _mm512_maskz_loadu_ps(mask[1], row + offset[1]);
        const __m512 lo2 = _mm512_maskz_loadu_ps(mask[2], row + offset[2]);
        const __m512 hi2 = _mm512_maskz_loadu_ps(mask[3], row + offset[3]);
        check = winograd_check(check, lo, hi);  // (lo and hi cover the row's columns that lo2 and hi2 read)
        const __m512 d0 = _mm512_permutex2var_ps(lo, even, hi), d1 = _mm512_permutex2var_ps(lo, odd, hi);
        const __m512 d2 = _mm512_permutex2var_ps(lo2, even, hi2), d3 = _mm512_permutex2var_ps(lo2, odd, hi2);
        winograd_bt(p.w, d0, d1, d2, d3);
        return p;
      };
      const int64_t ih0 = 2 * th0 - s.ph;
      WinogradRow r0 = patch_row(ih0), r1 = patch_row(ih0 + 1);
      for (int64_t r = 0; r < rows; ++r) {
        const WinogradRow r2 = patch_row(ih0 + 2 * r + 2), r3 = patch_row(ih0 + 2 * r + 3);
        float* out = v + c * T + r * TW + tw0;
        for (int j = 0; j < 4; ++j) {  // B^T along the columns
          __m512 column[4];
          winograd_bt(column, r0.w[j], r1.w[j], r2.w[j], r3.w[j]);
          for (int i = 0; i < 4; ++i) _mm512_mask_storeu_ps(out + (4 * i + j) * xi_stride, tiles, column[i]);
        }
        r0 = r2, r1 = r3;
      }
    }
  }
  return winograd_finite(check);
}

// v (16, Cv, T): winograd_input for every piece of the kernel (see winograd_pieces)
inline bool winograd_input_pieces(float* v, int64_t T, const float* x_g, const ConvShape& s, int64_t Cg, int64_t th0,
                                  int64_t rows, int64_t TW) {
  const int64_t pieces_w = winograd_pieces_w(s), pieces = winograd_pieces(s);
  for (int64_t piece = 0; piece < pieces; ++piece)
    if (!winograd_input(v + piece * Cg * T, T, pieces * Cg * T, x_g,
                        winograd_piece_shape(s, piece / pieces_w, piece % pieces_w), Cg, th0, rows, TW))
      return false;
  return true;
}

// y_g (Og, OH, OW), tile rows [th0, th0 + rows), = A^T M A + bias from m (16, Og, T); the two
// columns of each tile are interleaved back into output rows, rows and columns past the
// output dropped
inline void winograd_output(float* y_g, const float* m, int64_t T, const float* bias, const ConvShape& s, int64_t Og,
                            int64_t th0, int64_t rows, int64_t TW) {
  const __m512i first = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i second = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
  const int64_t xi_stride = Og * T;
  for (int64_t o = 0; o < Og; ++o) {
    const __m512 b = _mm512_set1_ps(bias ? bias[o] : 0.0f);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t tw0 = 0; tw0 < TW; tw0 += 16) {
        const __mmask16 tiles = lanes_below(TW - tw0);
        const float* in = m + o * T + r * TW + tw0;
        __m512 t[4][2];  // (A^T M)^T: column j of A^T M in t[j]
        for (int j = 0; j < 4; ++j)
          winograd_at(t[j], _mm512_maskz_loadu_ps(tiles, in + j * xi_stride),
                      _mm512_maskz_loadu_ps(tiles, in + (4 + j) * xi_stride),
                      _mm512_maskz_loadu_ps(tiles, in + (8 + j) * xi_stride),
                      _mm512_maskz_loadu_ps(tiles, in + (12 + j) * xi_stride));
        const int64_t oh = 2 * (th0 + r), ow = 2 * tw0;
        for (int a = 0; a < 2 && oh + a < s.OH; ++a) {
          __m512 y[2];  // row a of A^T M A
          winograd_at(y, t[0][a], t[1][a], t[2][a], t[3][a]);
          const __m512 y0 = _mm512_add_ps(y[0], b), y1 = _mm512_add_ps(y[1], b);
          float* out = y_g + (o * s.OH + oh + a) * s.OW + ow;
          _mm512_mask_storeu_ps(out, lanes_below(s.OW - ow), _mm512_permutex2var_ps(y0, first, y1));
          _mm512_mask_storeu_ps(out + 16, lanes_below(s.OW - ow - 16), _mm512_permutex2var_ps(y0, second, y1));
        }
      }
  }
}

// The row form's blocks: whole tile rows of one sample, about kWinogradBlockTiles tiles
// (the row form's samples have that many or more)
inline int64_t winograd_rows_per_block(int64_t TH, int64_t TW) {
  const int64_t rows = ceil_div(kWinogradBlockTiles, TW);
  return rows < TH ? rows : TH;
}

// False where an input or weight is not finite or too large (y then unfinished: see winograd_check)
bool winograd_conv2d_forward(float* y, const float* x, const float* w, const float* bias, const ConvShape& s,
                             const Geometry& g) {
  const int64_t TH = ceil_div(s.OH, int64_t(2)), TW = ceil_div(s.OW, int64_t(2));
  const int64_t rows_per_block = winograd_rows_per_block(TH, TW), blocks = ceil_div(TH, rows_per_block);
  const int64_t Cv = winograd_pieces(s) * g.Cg;
  // U_xi of every group packed once for all the blocks: xi's group grp at (xi groups + grp) panels_size
  const int64_t panels_size = gemm_detail::PackedPanelsA<float>::size(g.Og, Cv);
  static thread_local std::vector<float> u_buffer, panel_buffer;
  float* const u = scratch(u_buffer, size_t(16 * s.O * Cv));
  float* const panels = scratch(panel_buffer, size_t(16 * s.groups * panels_size));
  if (!winograd_weights(u, w, s, g.Cg)) return false;
  for (int64_t xi = 0; xi < 16; ++xi)
    for (int64_t grp = 0; grp < s.groups; ++grp)
      gemm_detail::PackedPanelsA<float>::pack_all(panels + (xi * s.groups + grp) * panels_size,
                                                  u + (xi * s.O + grp * g.Og) * Cv, false, g.Og, Cv);
  const int64_t tasks = s.N * s.groups * blocks;
  std::vector<char> finite(size_t(tasks), 1);  // per task
  for_tasks(tasks, 2.0 * 16 * g.Og * Cv * rows_per_block * TW, [&](int64_t task, int gemm_threads) {
    static thread_local std::vector<float> v_buffer, m_buffer;
    const int64_t n = task / (s.groups * blocks), grp = (task / blocks) % s.groups, block = task % blocks;
    const int64_t th0 = block * rows_per_block, rows = TH - th0 < rows_per_block ? TH - th0 : rows_per_block;
    const int64_t T = rows * TW;
    float* v = scratch(v_buffer, size_t(16 * Cv * T));
    float* m = scratch(m_buffer, size_t(16 * g.Og * T));
    if (!winograd_input_pieces(v, T, x + (n * s.C + grp * g.Cg) * g.HW, s, g.Cg, th0, rows, TW)) {
      finite[size_t(task)] = 0;
      return;
    }
    for (int64_t xi = 0; xi < 16; ++xi)
      gemm_detail::gemm_driver(m + xi * g.Og * T,
                               gemm_detail::PackedPanelsA<float>{
                                   {}, panels + (xi * s.groups + grp) * panels_size, g.Og, Cv},
                               gemm_detail::MatrixB<float>{v + xi * Cv * T, false, T, Cv}, g.Og, T, Cv, 1.0f, 0.0f,
                               static_cast<const float*>(nullptr), GemmBias::none, GemmActivation::none, gemm_threads);
    winograd_output(y + (n * s.O + grp * g.Og) * g.P, m, T, bias ? bias + grp * g.Og : nullptr, s, g.Og, th0, rows,
                    TW);
  });
  return all_set(finite);
}

// The weight gradient through the same transforms (their adjoint): with U = G g G^T and
// y's tile A^T (sum over c of U .* V) A, the gradient of U is, summed over the tiles,
//   dU_xi (Og, Cg) = Mdy_xi (Og, T) V_xi^T (T, Cg),  Mdy = A dy A^T of each 2x2 tile of dy,
// and dw = G^T dU G: again 16 GEMMs, of depth T, over the same V as the forward.

// mdy (16, Og, T) = A dy A^T for tile rows [th0, th0 + rows) of one sample's group dy_g (Og,
// OH, OW); the tiles' rows and columns past the output read 0
inline bool winograd_output_gradient(float* mdy, int64_t T, const float* dy_g, const ConvShape& s, int64_t Og,
                                     int64_t th0, int64_t rows, int64_t TW) {
  __m512 check = _mm512_setzero_ps();
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
  const int64_t xi_stride = Og * T;
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t tw0 = 0; tw0 < TW; tw0 += 16) {
    const int64_t ow = 2 * tw0;
    const __mmask16 m_lo = lanes_below(s.OW - ow), m_hi = lanes_below(s.OW - ow - 16), tiles = lanes_below(TW - tw0);
    for (int64_t o = 0; o < Og; ++o)
      for (int64_t r = 0; r < rows; ++r) {
        __m512 c[2][4];  // c[a]: dy's tile row a times A^T: y0, y0 + y1, y0 - y1, -y1
        for (int a = 0; a < 2; ++a) {
          const int64_t oh = 2 * (th0 + r) + a;
          __m512 y0 = zero, y1 = zero;
          if (oh < s.OH) {
            const float* row = dy_g + (o * s.OH + oh) * s.OW + ow;
            const __m512 lo = _mm512_maskz_loadu_ps(m_lo, row), hi = _mm512_maskz_loadu_ps(m_hi, m_hi ? row + 16 : row);
            check = winograd_check(check, lo, hi);
            y0 = _mm512_permutex2var_ps(lo, even, hi);
            y1 = _mm512_permutex2var_ps(lo, odd, hi);
          }
          winograd_a(c[a], y0, y1);
        }
        float* out = mdy + o * T + r * TW + tw0;
        for (int j = 0; j < 4; ++j) {  // A along the rows
          __m512 column[4];
          winograd_a(column, c[0][j], c[1][j]);
          for (int i = 0; i < 4; ++i) _mm512_mask_storeu_ps(out + (4 * i + j) * xi_stride, tiles, column[i]);
        }
      }
  }
  return winograd_finite(check);
}

// partial (16, Og, Cv) = dU of one group over `samples` samples from dy0 and x0 (their first
// sample), block by block, each block's product added to the last; false (partial
// unfinished) where an x or dy is not finite or too large (see winograd_check)
bool winograd_weight_gradient_chunk(float* partial, const float* dy0, const float* x0, const ConvShape& s,
                                    const Geometry& g, int64_t samples) {
  static thread_local std::vector<float> v_buffer, mdy_buffer;
  const int64_t TH = ceil_div(s.OH, int64_t(2)), TW = ceil_div(s.OW, int64_t(2));
  const int64_t rows_per_block = winograd_rows_per_block(TH, TW), Cv = winograd_pieces(s) * g.Cg;
  bool first = true;
  for (int64_t n = 0; n < samples; ++n)
    for (int64_t th0 = 0; th0 < TH; th0 += rows_per_block) {
      const int64_t rows = TH - th0 < rows_per_block ? TH - th0 : rows_per_block, T = rows * TW;
      float* v = scratch(v_buffer, size_t(16 * Cv * T));
      float* mdy = scratch(mdy_buffer, size_t(16 * g.Og * T));
      if (!winograd_input_pieces(v, T, x0 + n * s.C * g.HW, s, g.Cg, th0, rows, TW) ||
          !winograd_output_gradient(mdy, T, dy0 + n * s.O * g.P, s, g.Og, th0, rows, TW))
        return false;
      for (int64_t xi = 0; xi < 16; ++xi)
        gemm_detail::gemm_driver(partial + xi * g.Og * Cv,
                                 gemm_detail::MatrixA<float>{mdy + xi * g.Og * T, false, g.Og, T},
                                 gemm_detail::MatrixB<float>{v + xi * Cv * T, true, Cv, T}, g.Og, Cv, T, 1.0f,
                                 first ? 0.0f : 1.0f, static_cast<const float*>(nullptr), GemmBias::none,
                                 GemmActivation::none, 1);
      first = false;
    }
  return true;
}

// dw_g (Og, Cg, KH, KW) = G^T dU G of each piece, from du (16, Og, Cv) (the pieces' taps
// past the kernel dropped)
inline void winograd_weights_back(float* dw_g, const float* du, const ConvShape& s, int64_t Og, int64_t Cg) {
  const int64_t pieces_w = winograd_pieces_w(s), pieces = winograd_pieces(s), Cv = pieces * Cg, plane = Og * Cv;
  for (int64_t q = 0; q < plane; ++q) {
    const int64_t o = q / Cv, piece = (q % Cv) / Cg, c = q % Cg;
    const int64_t kh0 = 3 * (piece / pieces_w), kw0 = 3 * (piece % pieces_w);
    float t[3][4];  // G^T dU (3, 4)
    for (int j = 0; j < 4; ++j) {
      const float u0 = du[j * plane + q], u1 = du[(4 + j) * plane + q], u2 = du[(8 + j) * plane + q],
                  u3 = du[(12 + j) * plane + q];
      t[0][j] = u0 + 0.5f * (u1 + u2);
      t[1][j] = 0.5f * (u1 - u2);
      t[2][j] = 0.5f * (u1 + u2) + u3;
    }
    float* kernel = dw_g + (o * Cg + c) * s.KH * s.KW;
    for (int a = 0; a < 3 && kh0 + a < s.KH; ++a) {
      float row[3] = {t[a][0] + 0.5f * (t[a][1] + t[a][2]), 0.5f * (t[a][1] - t[a][2]),
                      0.5f * (t[a][1] + t[a][2]) + t[a][3]};
      for (int b = 0; b < 3 && kw0 + b < s.KW; ++b) kernel[(kh0 + a) * s.KW + kw0 + b] = row[b];
    }
  }
}

// --- the channels form, for small images ---------------------------------------------
// A row of 4 tiles (8x8 outputs) fills a quarter of the row form's vectors. Here the
// transforms run on channels-last copies of whole samples (blocks of about 128 tiles),
// 16 channels a vector: each tile's values are then plain vertical adds. The operands are
// the row form's transposed, V^T (16, T, Cv) and M^T (16, T, Og), tile t's channels in a row:
//   forward  M_xi^T (T, Og) = V_xi^T (T, Cv) U_xi^T (Cv, Og)
//   weight   dU_xi (Og, Cv) = Mdy_xi (Og, T) V_xi^T (T, Cv)
//   input    dV_xi^T (T, Cv) = Mdy_xi^T (T, Og) U_xi (Og, Cv), and dx += B dV B^T over each patch
struct WinogradChannels {
  int64_t TH, TW, Hp, Wp;  // tiles per sample; the channels-last copies' padded rows and columns
  explicit WinogradChannels(const ConvShape& s)
      : TH(ceil_div(s.OH, int64_t(2))), TW(ceil_div(s.OW, int64_t(2))),
        Hp(2 * TH + 3 * winograd_pieces_h(s) - 1), Wp(2 * TW + 3 * winograd_pieces_w(s) - 1) {}
  int64_t tiles() const { return TH * TW; }
  // the samples of a block: about kWinogradBlockTiles tiles, at least one sample
  int64_t samples_per_block(int64_t N) const {
    const int64_t samples = ceil_div(kWinogradBlockTiles, tiles());
    return samples < N ? samples : (N > 0 ? N : 1);
  }
};

// vt (16, T, Cv) from xt (samples, Hp, Wp, Cg): tile t = (k, th, tw), piece (i, j) reads
// xt[k, 2 th + 3 i + r, 2 tw + 3 j + q, c] for r, q < 4. False where a value is not finite or
// too large (see winograd_check).
inline bool winograd_input_channels(float* vt, const float* xt, const ConvShape& s, const WinogradChannels& f,
                                    int64_t samples, int64_t Cg) {
  const int64_t pieces_w = winograd_pieces_w(s), pieces = winograd_pieces(s), Cv = pieces * Cg;
  const int64_t T = samples * f.tiles(), xi_stride = T * Cv, row = f.Wp * Cg;
  __m512 check = _mm512_setzero_ps();
  for (int64_t t = 0; t < T; ++t) {
    const int64_t k = t / f.tiles(), th = (t % f.tiles()) / f.TW, tw = t % f.TW;
    for (int64_t piece = 0; piece < pieces; ++piece) {
      const int64_t top = 2 * th + 3 * (piece / pieces_w), left = 2 * tw + 3 * (piece % pieces_w);  // its patch
      const float* patch = xt + ((k * f.Hp + top) * f.Wp + left) * Cg;
      float* out = vt + t * Cv + piece * Cg;
      for (int64_t c0 = 0; c0 < Cg; c0 += 16) {
        const __mmask16 lanes = lanes_below(Cg - c0);
        __m512 w[4][4];  // (B^T d)^T: column q of B^T d in w[q]
        for (int q = 0; q < 4; ++q) {
          const float* column = patch + q * Cg + c0;
          const __m512 d0 = _mm512_maskz_loadu_ps(lanes, column), d1 = _mm512_maskz_loadu_ps(lanes, column + row);
          const __m512 d2 = _mm512_maskz_loadu_ps(lanes, column + 2 * row);
          const __m512 d3 = _mm512_maskz_loadu_ps(lanes, column + 3 * row);
          check = winograd_check(winograd_check(check, d0, d1), d2, d3);
          winograd_bt(w[q], d0, d1, d2, d3);
        }
        for (int i = 0; i < 4; ++i) {  // times B
          __m512 row_i[4];
          winograd_bt(row_i, w[0][i], w[1][i], w[2][i], w[3][i]);
          for (int j = 0; j < 4; ++j) _mm512_mask_storeu_ps(out + c0 + (4 * i + j) * xi_stride, lanes, row_i[j]);
        }
      }
    }
  }
  return winograd_finite(check);
}

// yt (samples, OH, OW, Og) = A^T M A + bias from mt (16, T, Og), outputs past OH, OW dropped
inline void winograd_output_channels(float* yt, const float* mt, const float* bias, const ConvShape& s,
                                     const WinogradChannels& f, int64_t samples, int64_t Og) {
  const int64_t T = samples * f.tiles(), xi_stride = T * Og;
  for (int64_t t = 0; t < T; ++t) {
    const int64_t k = t / f.tiles(), oh = 2 * ((t % f.tiles()) / f.TW), ow = 2 * (t % f.TW);
    for (int64_t o0 = 0; o0 < Og; o0 += 16) {
      const __mmask16 lanes = lanes_below(Og - o0);
      const __m512 b = bias ? _mm512_maskz_loadu_ps(lanes, bias + o0) : _mm512_setzero_ps();
      const float* in = mt + t * Og + o0;
      __m512 r[4][2];  // (A^T M)^T: column j of A^T M in r[j]
      for (int j = 0; j < 4; ++j)
        winograd_at(r[j], _mm512_maskz_loadu_ps(lanes, in + j * xi_stride),
                    _mm512_maskz_loadu_ps(lanes, in + (4 + j) * xi_stride),
                    _mm512_maskz_loadu_ps(lanes, in + (8 + j) * xi_stride),
                    _mm512_maskz_loadu_ps(lanes, in + (12 + j) * xi_stride));
      for (int a = 0; a < 2 && oh + a < s.OH; ++a) {
        __m512 y[2];  // row a of A^T M A
        winograd_at(y, r[0][a], r[1][a], r[2][a], r[3][a]);
        float* out = yt + ((k * s.OH + oh + a) * s.OW + ow) * Og + o0;
        _mm512_mask_storeu_ps(out, lanes, _mm512_add_ps(y[0], b));
        if (ow + 1 < s.OW) _mm512_mask_storeu_ps(out + Og, lanes, _mm512_add_ps(y[1], b));
      }
    }
  }
}

// mdyt (16, T, Og) = A dy A^T from dyt (samples, OH, OW, Og), the tiles' outputs past OH, OW 0.
// False where a value is not finite or too large.
inline bool winograd_output_gradient_channels(float* mdyt, const float* dyt, const ConvShape& s,
                                              const WinogradChannels& f, int64_t samples, int64_t Og) {
  const int64_t T = samples * f.tiles(), xi_stride = T * Og;
  const __m512 zero = _mm512_setzero_ps();
  __m512 check = zero;
  for (int64_t t = 0; t < T; ++t) {
    const int64_t k = t / f.tiles(), oh = 2 * ((t % f.tiles()) / f.TW), ow = 2 * (t % f.TW);
    for (int64_t o0 = 0; o0 < Og; o0 += 16) {
      const __mmask16 lanes = lanes_below(Og - o0);
      __m512 c[2][4];  // dy's tile row a times A^T: y0, y0 + y1, y0 - y1, -y1
      for (int a = 0; a < 2; ++a) {
        __m512 y0 = zero, y1 = zero;
        if (oh + a < s.OH) {
          const float* in = dyt + ((k * s.OH + oh + a) * s.OW + ow) * Og + o0;
          y0 = _mm512_maskz_loadu_ps(lanes, in);
          if (ow + 1 < s.OW) y1 = _mm512_maskz_loadu_ps(lanes, in + Og);
          check = winograd_check(check, y0, y1);
        }
        winograd_a(c[a], y0, y1);
      }
      float* out = mdyt + t * Og + o0;
      for (int j = 0; j < 4; ++j) {  // A along the rows
        __m512 column[4];
        winograd_a(column, c[0][j], c[1][j]);
        for (int i = 0; i < 4; ++i) _mm512_mask_storeu_ps(out + (4 * i + j) * xi_stride, lanes, column[i]);
      }
    }
  }
  return winograd_finite(check);
}

// dxt (samples, Hp, Wp, Cg) += B dV B^T over each tile's patch of each piece, from dvt (16, T, Cv)
// (the adjoint of winograd_input_channels; the patches overlap, so tiles add in turn)
inline void winograd_patch_gradient_channels(float* dxt, const float* dvt, const ConvShape& s,
                                             const WinogradChannels& f, int64_t samples, int64_t Cg) {
  const int64_t pieces_w = winograd_pieces_w(s), pieces = winograd_pieces(s), Cv = pieces * Cg;
  const int64_t T = samples * f.tiles(), xi_stride = T * Cv, row = f.Wp * Cg;
  for (int64_t t = 0; t < T; ++t) {
    const int64_t k = t / f.tiles(), th = (t % f.tiles()) / f.TW, tw = t % f.TW;
    for (int64_t piece = 0; piece < pieces; ++piece) {
      const int64_t top = 2 * th + 3 * (piece / pieces_w), left = 2 * tw + 3 * (piece % pieces_w);  // its patch
      float* patch = dxt + ((k * f.Hp + top) * f.Wp + left) * Cg;
      const float* in = dvt + t * Cv + piece * Cg;
      for (int64_t c0 = 0; c0 < Cg; c0 += 16) {
        const __mmask16 lanes = lanes_below(Cg - c0);
        __m512 e[4][4];  // dV B^T: row i of dV times B^T in e[i]
        for (int i = 0; i < 4; ++i) {
          const float* v = in + c0 + 4 * i * xi_stride;
          winograd_b(e[i], _mm512_maskz_loadu_ps(lanes, v), _mm512_maskz_loadu_ps(lanes, v + xi_stride),
                     _mm512_maskz_loadu_ps(lanes, v + 2 * xi_stride), _mm512_maskz_loadu_ps(lanes, v + 3 * xi_stride));
        }
        for (int q = 0; q < 4; ++q) {  // B times it, added into the patch's column q
          float* column = patch + q * Cg + c0;
          __m512 d[4];
          winograd_b(d, e[0][q], e[1][q], e[2][q], e[3][q]);
          for (int r = 0; r < 4; ++r)
            _mm512_mask_storeu_ps(column + r * row, lanes,
                                  _mm512_add_ps(_mm512_maskz_loadu_ps(lanes, column + r * row), d[r]));
        }
      }
    }
  }
}

// The channels form's forward; false where an input or weight is not finite or too large
bool winograd_conv2d_forward_channels(float* y, const float* x, const float* w, const float* bias, const ConvShape& s,
                                      const Geometry& g) {
  const WinogradChannels f(s);
  const int64_t S = f.samples_per_block(s.N), blocks = ceil_div(s.N, S), Cv = winograd_pieces(s) * g.Cg;
  static thread_local std::vector<float> u_buffer, ut_buffer;
  float* const u = scratch(u_buffer, size_t(16 * s.O * Cv));
  float* const ut = scratch(ut_buffer, size_t(16 * s.O * Cv));
  if (!winograd_weights(u, w, s, g.Cg)) return false;
  winograd_weights_transposed(ut, u, s, g.Og, Cv);
  std::vector<char> finite(size_t(blocks * s.groups), 1);  // per task
  for_tasks(blocks * s.groups, 2.0 * 16 * g.Og * Cv * S * f.tiles(), [&](int64_t task, int gemm_threads) {
    static thread_local std::vector<float> x_buffer, v_buffer, m_buffer, y_buffer;
    const int64_t n0 = (task / s.groups) * S, grp = task % s.groups;
    const int64_t samples = s.N - n0 < S ? s.N - n0 : S, T = samples * f.tiles();
    const float* xt = padded_channels_last(x_buffer, x + (n0 * s.C + grp * g.Cg) * g.HW, s, samples, g.Cg, f.Hp, f.Wp);
    float* vt = scratch(v_buffer, size_t(16 * T * Cv));
    float* mt = scratch(m_buffer, size_t(16 * T * g.Og));
    if (!winograd_input_channels(vt, xt, s, f, samples, g.Cg)) {
      finite[size_t(task)] = 0;
      return;
    }
    for (int64_t xi = 0; xi < 16; ++xi)
      gemm_detail::gemm_driver(mt + xi * T * g.Og, gemm_detail::MatrixA<float>{vt + xi * T * Cv, false, T, Cv},
                               gemm_detail::MatrixB<float>{ut + (xi * s.groups + grp) * Cv * g.Og, false, g.Og, Cv}, T,
                               g.Og, Cv, 1.0f, 0.0f, static_cast<const float*>(nullptr), GemmBias::none,
                               GemmActivation::none, gemm_threads);
    float* yt = scratch(y_buffer, size_t(samples * g.P * g.Og));
    winograd_output_channels(yt, mt, bias ? bias + grp * g.Og : nullptr, s, f, samples, g.Og);
    channels_last_output_into(y, yt, s, g, n0, grp, samples);
  });
  return all_set(finite);
}

// The channels form of winograd_weight_gradient_chunk: partial (16, Og, Cv) = dU over `samples` samples
bool winograd_weight_gradient_chunk_channels(float* partial, const float* dy0, const float* x0, const ConvShape& s,
                                             const Geometry& g, int64_t samples) {
  static thread_local std::vector<float> x_buffer, dy_buffer, v_buffer, mdy_buffer;
  const WinogradChannels f(s);
  const int64_t S = f.samples_per_block(samples), Cv = winograd_pieces(s) * g.Cg;
  for (int64_t n0 = 0; n0 < samples; n0 += S) {
    const int64_t count = samples - n0 < S ? samples - n0 : S, T = count * f.tiles();
    const float* xt = padded_channels_last(x_buffer, x0 + n0 * s.C * g.HW, s, count, g.Cg, f.Hp, f.Wp);
    const float* dyt = channels_last_dy(dy_buffer, dy0 + n0 * s.O * g.P, s, g, count);
    float* vt = scratch(v_buffer, size_t(16 * T * Cv));
    float* mdyt = scratch(mdy_buffer, size_t(16 * T * g.Og));
    if (!winograd_input_channels(vt, xt, s, f, count, g.Cg) ||
        !winograd_output_gradient_channels(mdyt, dyt, s, f, count, g.Og))
      return false;
    for (int64_t xi = 0; xi < 16; ++xi)
      gemm_detail::gemm_driver(partial + xi * g.Og * Cv,
                               gemm_detail::MatrixA<float>{mdyt + xi * T * g.Og, true, g.Og, T},
                               gemm_detail::MatrixB<float>{vt + xi * T * Cv, false, Cv, T}, g.Og, Cv, T, 1.0f,
                               n0 == 0 ? 0.0f : 1.0f, static_cast<const float*>(nullptr), GemmBias::none,
                               GemmActivation::none, 1);
  }
  return true;
}

// The channels form's input gradient, dx (N, C, H, W) (written whole); false where dy or w
// holds a value not finite or too large
bool winograd_input_gradient_channels(float* dx, const float* dy, const float* w, const ConvShape& s,
                                      const Geometry& g) {
  const WinogradChannels f(s);
  const int64_t S = f.samples_per_block(s.N), blocks = ceil_div(s.N, S), Cv = winograd_pieces(s) * g.Cg;
  static thread_local std::vector<float> u_buffer;
  float* const u = scratch(u_buffer, size_t(16 * s.O * Cv));
  if (!winograd_weights(u, w, s, g.Cg)) return false;
  // the image's rows and columns in the copies' reach (those past it take no gradient)
  const int64_t rows = s.H < f.Hp - s.ph ? s.H : f.Hp - s.ph, cols = s.W < f.Wp - s.pw ? s.W : f.Wp - s.pw;
  std::vector<char> finite(size_t(blocks * s.groups), 1);  // per task
  for_tasks(blocks * s.groups, 2.0 * 16 * g.Og * Cv * S * f.tiles(), [&](int64_t task, int gemm_threads) {
    static thread_local std::vector<float> dy_buffer, mdy_buffer, v_buffer, dx_buffer;
    const int64_t n0 = (task / s.groups) * S, grp = task % s.groups;
    const int64_t samples = s.N - n0 < S ? s.N - n0 : S, T = samples * f.tiles();
    const float* dyt = channels_last_dy(dy_buffer, dy + (n0 * s.O + grp * g.Og) * g.P, s, g, samples);
    float* mdyt = scratch(mdy_buffer, size_t(16 * T * g.Og));
    float* dvt = scratch(v_buffer, size_t(16 * T * Cv));
    if (!winograd_output_gradient_channels(mdyt, dyt, s, f, samples, g.Og)) {
      finite[size_t(task)] = 0;
      return;
    }
    for (int64_t xi = 0; xi < 16; ++xi)
      gemm_detail::gemm_driver(dvt + xi * T * Cv, gemm_detail::MatrixA<float>{mdyt + xi * T * g.Og, false, T, g.Og},
                               gemm_detail::MatrixB<float>{u + (xi * s.O + grp * g.Og) * Cv, false, Cv, g.Og}, T, Cv,
                               g.Og, 1.0f, 0.0f, static_cast<const float*>(nullptr), GemmBias::none,
                               GemmActivation::none, gemm_threads);
    float* dxt = scratch(dx_buffer, size_t(samples * f.Hp * f.Wp * g.Cg));
    std::memset(dxt, 0, sizeof(float) * size_t(samples * f.Hp * f.Wp * g.Cg));
    winograd_patch_gradient_channels(dxt, dvt, s, f, samples, g.Cg);
    for (int64_t k = 0; k < samples; ++k) {  // (Hp, Wp, Cg) -> dx[n0 + k, grp Cg + c] (H, W), 0 past the reach
      float* dx_n = dx + ((n0 + k) * s.C + grp * g.Cg) * g.HW;
      if (rows < s.H || cols < s.W) std::memset(dx_n, 0, sizeof(float) * size_t(g.Cg * g.HW));
      for (int64_t ih = 0; ih < rows; ++ih)
        transpose_into(dx_n + ih * s.W, g.HW, dxt + ((k * f.Hp + ih + s.ph) * f.Wp + s.pw) * g.Cg, g.Cg, cols, g.Cg);
    }
  });
  return all_set(finite);
}
#endif

template <class T> void conv2d_forward(T* y, const T* x, const T* w, const T* bias, const ConvShape& s) {
  const Geometry g = geometry(s);
  if (s.N == 0 || s.O == 0 || g.P == 0) return;
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
    if (winograd_forward(s, g) && (winograd_row_form(s) ? winograd_conv2d_forward(y, x, w, bias, s, g)
                                                        : winograd_conv2d_forward_channels(y, x, w, bias, s, g)))
      return;
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
  if (wide_rows) {
    const int64_t Hp = reach_rows(s), Wp = reach_cols(s);
    for (int64_t c = 0, k = 0; c < g.Cg; ++c)
      for (int64_t kh = 0; kh < s.KH; ++kh)
        for (int64_t kw = 0; kw < s.KW; ++kw) wide_rows[k++] = (c * Hp + kh * s.dh) * Wp + kw * s.dw;
  }
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
    } else if (wide_columns(s, g)) {  // (Og, OH Wp) into a buffer, then its first OW columns of each row
      static thread_local std::vector<T> pad_buffer, wide_buffer;
      constexpr int64_t NR = GemmBlocking<T>::NV * Simd<T>::lanes;
      const int64_t Hp = reach_rows(s), Wp = reach_cols(s);
      const T* xp = padded_block(pad_buffer, x_ng, s, 1, g.Cg, Hp, Wp, (s.KW - 1) * s.dw + NR);
      T* yw = scratch(wide_buffer, size_t(g.Og * s.OH * Wp));
      gemm_detail::gemm_driver(yw, weights, WideColumnsB<T>{{}, xp, wide_rows}, g.Og, s.OH * Wp, g.Kc, T(1), T(0), b,
                               bias_kind, GemmActivation::none, gemm_threads);
      for (int64_t o = 0; o < g.Og; ++o)
        for (int64_t oh = 0; oh < s.OH; ++oh)
          copy_run(y_ng + (o * s.OH + oh) * s.OW, yw + (o * s.OH + oh) * Wp, s.OW);
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

// The sum of row[0, n) in double, in a fixed order (four interleaved sums, then theirs):
// one chain of dependent adds made db a quarter of LeNet conv1's backward.
constexpr int64_t kSumChunk = 4096;  // elements of dW's partials summed by one task
template <class T> double sum_in_double(const T* row, int64_t n) {
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
  if constexpr (sizeof(T) == 4) {
    __m512d acc[4] = {_mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd(), _mm512_setzero_pd()};
    int64_t p = 0;
    for (; p + 32 <= n; p += 32)
      for (int i = 0; i < 4; ++i) acc[i] = _mm512_add_pd(acc[i], _mm512_cvtps_pd(_mm256_loadu_ps(row + p + 8 * i)));
    for (; p + 8 <= n; p += 8) acc[0] = _mm512_add_pd(acc[0], _mm512_cvtps_pd(_mm256_loadu_ps(row + p)));
    double sum = _mm512_reduce_add_pd(_mm512_add_pd(_mm512_add_pd(acc[0], acc[1]), _mm512_add_pd(acc[2], acc[3])));
    for (; p < n; ++p) sum += double(row[p]);
    return sum;
  }
#endif
  double acc[4] = {0.0, 0.0, 0.0, 0.0};
  int64_t p = 0;
  for (; p + 4 <= n; p += 4)
    for (int i = 0; i < 4; ++i) acc[i] += double(row[p + i]);
  double sum = (acc[0] + acc[1]) + (acc[2] + acc[3]);
  for (; p < n; ++p) sum += double(row[p]);
  return sum;
}

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
            if (!(winograd_row_form(s) ? winograd_weight_gradient_chunk(partial, dy0, x0, s, g, samples)
                                       : winograd_weight_gradient_chunk_channels(partial, dy0, x0, s, g, samples)))
              finite[size_t(task)] = 0;
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

// What the convolution's files share (conv.cpp, conv_winograd.cpp, conv_fourier.cpp): the
// shape's derived sizes, the channels-last copies, the task runner, and the Winograd and
// Fourier forms' entry points. Compiled into each instruction set's namespace, like the kernels.
#pragma once

#include <cstring>
#include <vector>

#include "shenjing/conv.h"
#include "shenjing/dispatch.h"
#include "shenjing/gemm_driver.h"
#include "shenjing/parallel.h"
#include "shenjing/simd.h"

namespace shenjing {
namespace SJ_ISA {
namespace conv_detail {

struct Geometry {
  int64_t Cg, Og, Kc, P, HW;  // channels and outputs per group, GEMM depth, output pixels, input pixels
  bool pointwise;              // 1x1, stride 1, no padding: the columns are x itself
};

inline Geometry geometry(const ConvShape& s) {
  Geometry g;
  g.Cg = s.C / s.groups;
  g.Og = s.O / s.groups;
  g.Kc = g.Cg * s.KH * s.KW;
  g.P = s.OH * s.OW;
  g.HW = s.H * s.W;
  g.pointwise = s.KH == 1 && s.KW == 1 && s.sh == 1 && s.sw == 1 && s.ph == 0 && s.pw == 0 && s.OH == s.H && s.OW == s.W;
  return g;
}

// Whether every flag is set (the tasks' flags: each task writes its own)
inline bool all_set(const std::vector<char>& flags) {
  for (char flag : flags)
    if (!flag) return false;
  return true;
}

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
#if defined(__AVX2__) && SJ_VECTOR_BYTES == 32
  // whole 8x8 blocks in register transposes, the edges below
  if constexpr (sizeof(T) == 4) {
    const int64_t whole_rows = rows / 8 * 8, whole_cols = cols / 8 * 8;
    for (int64_t i0 = 0; i0 < whole_rows; i0 += 8)
      for (int64_t j0 = 0; j0 < whole_cols; j0 += 8) {
        __m256 r[8];
        for (int k = 0; k < 8; ++k) r[k] = _mm256_loadu_ps(src + (i0 + k) * src_stride + j0);
        gemm_detail::transpose8x8(r);
        for (int k = 0; k < 8; ++k) _mm256_storeu_ps(dst + (j0 + k) * dst_stride + i0, r[k]);
      }
    for (int64_t i = 0; i < rows; ++i)
      for (int64_t j = i < whole_rows ? whole_cols : 0; j < cols; ++j) dst[j * dst_stride + i] = src[i * src_stride + j];
    return;
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

// The sum of row[0, n) in double, in a fixed order (four interleaved sums, then theirs):
// one chain of dependent adds made db a quarter of LeNet conv1's backward.
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

// --- Winograd F(2x2, 3x3) (conv_winograd.cpp) ----------------------------------------
// A 5-tap side is split into 3-tap pieces (see conv_winograd.cpp): a 5x5 kernel is four.
inline int64_t winograd_pieces_h(const ConvShape& s) { return ceil_div(s.KH, int64_t(3)); }
inline int64_t winograd_pieces_w(const ConvShape& s) { return ceil_div(s.KW, int64_t(3)); }
inline int64_t winograd_pieces(const ConvShape& s) { return winograd_pieces_h(s) * winograd_pieces_w(s); }
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
// where each step takes the Winograd form (measured, see conv_winograd.cpp)
bool winograd_forward(const ConvShape& s, const Geometry& g);
bool winograd_weight_gradient(const ConvShape& s, const Geometry& g);
bool winograd_input_gradient(const ConvShape& s, const Geometry& g);
// y (N, O, OH, OW); false where an input or weight is not finite or too large (y then
// unfinished: the caller redoes it the direct way)
bool winograd_conv2d_forward(float* y, const float* x, const float* w, const float* bias, const ConvShape& s,
                             const Geometry& g);
// partial (16, Og, winograd_pieces Cg) = dU of one group over `samples` samples from dy0 and
// x0 (their first sample); false where an x or dy is not finite or too large
bool winograd_weight_gradient_chunk(float* partial, const float* dy0, const float* x0, const ConvShape& s,
                                    const Geometry& g, int64_t samples);
// dw_g (Og, Cg, KH, KW) from the summed dU (16, Og, winograd_pieces Cg)
void winograd_weights_back(float* dw_g, const float* du, const ConvShape& s, int64_t Og, int64_t Cg);
// dx (N, C, H, W), written whole; false where dy or w holds a value not finite or too large
bool winograd_input_gradient_channels(float* dx, const float* dy, const float* w, const ConvShape& s,
                                      const Geometry& g);
#endif

// --- the Fourier form (conv_fourier.cpp) ------------------------------------------------
#if SJ_VECTOR_BYTES >= 32
// where the forward and the backward take it (stride 1, no dilation, one group, 5x5 and
// wider kernels, small images, batches that pay for the weights' transform: measured)
bool fourier_forward(const ConvShape& s, const Geometry& g);
bool fourier_backward(const ConvShape& s, const Geometry& g);
// y (N, O, OH, OW); false where the result holds a value not finite (y then unfinished:
// the caller redoes it the direct way)
bool fourier_conv2d_forward(float* y, const float* x, const float* w, const float* bias, const ConvShape& s,
                            const Geometry& g);
// dx, dw, db (each may be null), written whole; false where one holds a value not finite
bool fourier_conv2d_backward(float* dx, float* dw, float* db, const float* dy, const float* x, const float* w,
                             const ConvShape& s, const Geometry& g);
#endif

}  // namespace conv_detail
}  // namespace SJ_ISA
}  // namespace shenjing

// Convolution (see shenjing/conv.h) as GEMM on an im2col buffer of one
// (sample, group) at a time, so extra memory stays bounded by one sample's
// columns per thread: forward  y_ng = W_g col_ng (+ bias),
//                     backward dcol = W_g^T dy_ng -> col2im -> dx_ng,
//                              dW_g = sum_n dy_ng col_ng^T.
// 1x1 convolutions with stride 1 and no padding use x itself as the columns.
//
// Threads take (sample, group) tasks with one-thread GEMMs when there are
// enough of them, else the GEMMs use every thread. dW and db are summed per
// fixed chunk of samples and the chunks added in order, so every result is
// bit-identical with any thread count.
#include "shenjing/conv.h"

#include <cstring>
#include <vector>

#include "shenjing/dispatch.h"
#include "shenjing/elementwise.h"
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

// Output columns ow whose input column iw = ow sw - pw + kw dw lies in [0, W): [lo, hi).
inline void valid_range(int64_t offset, int64_t stride, int64_t size, int64_t out_size, int64_t* lo, int64_t* hi) {
  // iw = ow * stride + offset, offset = kw dw - pw
  int64_t l = offset >= 0 ? 0 : (-offset + stride - 1) / stride;
  int64_t h = size - offset <= 0 ? 0 : (size - offset + stride - 1) / stride;
  *lo = l < out_size ? l : out_size;
  *hi = h < out_size ? (h > *lo ? h : *lo) : out_size;
  if (*hi < *lo) *hi = *lo;
}

// col: (Cg KH KW, OH OW) from x: (Cg, H, W) of one sample and group
template <class T> void im2col(T* col, const T* x, const ConvShape& s, int64_t Cg) {
  const int64_t P = s.OH * s.OW;
  for (int64_t c = 0; c < Cg; ++c) {
    const T* xc = x + c * s.H * s.W;
    for (int64_t kh = 0; kh < s.KH; ++kh) {
      for (int64_t kw = 0; kw < s.KW; ++kw) {
        T* row = col + ((c * s.KH + kh) * s.KW + kw) * P;
        int64_t lo, hi;
        valid_range(kw * s.dw - s.pw, s.sw, s.W, s.OW, &lo, &hi);
        for (int64_t oh = 0; oh < s.OH; ++oh) {
          T* out = row + oh * s.OW;
          const int64_t ih = oh * s.sh - s.ph + kh * s.dh;
          if (ih < 0 || ih >= s.H) {
            std::memset(out, 0, sizeof(T) * s.OW);
            continue;
          }
          const T* xr = xc + ih * s.W + kw * s.dw - s.pw;  // xr[ow * sw] is x[ih, iw]
          for (int64_t ow = 0; ow < lo; ++ow) out[ow] = T(0);
          if (s.sw == 1) std::memcpy(out + lo, xr + lo, sizeof(T) * (hi - lo));
          else for (int64_t ow = lo; ow < hi; ++ow) out[ow] = xr[ow * s.sw];
          for (int64_t ow = hi; ow < s.OW; ++ow) out[ow] = T(0);
        }
      }
    }
  }
}

// dx: (Cg, H, W) += the columns scattered back (the adjoint of im2col)
template <class T> void col2im_add(T* dx, const T* col, const ConvShape& s, int64_t Cg) {
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

// Runs f(task, gemm_threads) for task in [0, tasks): in parallel with
// one-thread GEMMs when every thread gets a task, else in order with the
// GEMMs on every thread.
template <class F> void for_tasks(int64_t tasks, double flops_per_task, F f) {
  const int threads = thread_count();
  if (tasks >= threads && threads > 1 && flops_per_task * double(tasks) >= 64.0 * kParallelMinWork) {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t t = 0; t < tasks; ++t) f(t, 1);
  } else {
    for (int64_t t = 0; t < tasks; ++t) f(t, threads);
  }
}

template <class T> void conv2d_forward(T* y, const T* x, const T* w, const T* bias, const ConvShape& s) {
  const Geometry g = geometry(s);
  if (s.N == 0 || s.O == 0 || g.P == 0) return;
  for_tasks(s.N * s.groups, 2.0 * g.Og * g.Kc * g.P, [&](int64_t task, int gemm_threads) {
    static thread_local std::vector<T> col_buffer;
    const int64_t n = task / s.groups, grp = task % s.groups;
    const T* x_ng = x + (n * s.C + grp * g.Cg) * g.HW;
    const T* col = x_ng;
    if (!g.pointwise) {
      T* buffer = scratch(col_buffer, size_t(g.Kc) * size_t(g.P));
      im2col(buffer, x_ng, s, g.Cg);
      col = buffer;
    }
    // y_ng (Og, P) = W_g (Og, Kc) col (Kc, P) + bias_g
    gemm_blocked(y + (n * s.O + grp * g.Og) * g.P, w + grp * g.Og * g.Kc, col, g.Og, g.P, g.Kc, false, false, T(1),
                 T(0), bias ? bias + grp * g.Og : nullptr, bias ? GemmBias::per_row : GemmBias::none,
                 GemmActivation::none, gemm_threads);
  });
}

template <class T>
void conv2d_backward(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const ConvShape& s) {
  const Geometry g = geometry(s);
  const int64_t weight_size = s.O * g.Kc;
  if (dx) std::memset(dx, 0, sizeof(T) * size_t(s.N * s.C * g.HW));
  if (dw) std::memset(dw, 0, sizeof(T) * size_t(weight_size));
  if (db) std::memset(db, 0, sizeof(T) * size_t(s.O));
  if (s.N == 0 || s.O == 0) return;
  // fixed chunks of samples: the sums of dW and db do not depend on the threads
  const int64_t chunks = s.N < 16 ? s.N : 16;
  const int64_t per_chunk = ceil_div(s.N, chunks);
  std::vector<T> dw_partial(dw ? size_t(chunks) * size_t(weight_size) : 0);
  std::vector<double> db_partial(db ? size_t(chunks) * size_t(s.O) : 0, 0.0);
  if (g.P > 0) {
    for_tasks(chunks * s.groups, 4.0 * g.Og * g.Kc * g.P * per_chunk, [&](int64_t task, int gemm_threads) {
      static thread_local std::vector<T> col_buffer;
      const int64_t chunk = task / s.groups, grp = task % s.groups;
      const int64_t n_end = (chunk + 1) * per_chunk < s.N ? (chunk + 1) * per_chunk : s.N;
      const T* w_g = w + grp * g.Og * g.Kc;
      for (int64_t n = chunk * per_chunk; n < n_end; ++n) {
        const T* dy_ng = dy + (n * s.O + grp * g.Og) * g.P;
        const int64_t x_offset = (n * s.C + grp * g.Cg) * g.HW;
        T* col = g.pointwise ? nullptr : scratch(col_buffer, size_t(g.Kc) * size_t(g.P));
        if (dw) {
          // dW_g (Og, Kc) += dy_ng (Og, P) col_ng^T (P, Kc)
          const T* cols = x + x_offset;
          if (!g.pointwise) {
            im2col(col, x + x_offset, s, g.Cg);
            cols = col;
          }
          T* partial = dw_partial.data() + chunk * weight_size + grp * g.Og * g.Kc;
          gemm_blocked(partial, dy_ng, cols, g.Og, g.Kc, g.P, false, true, T(1), n == chunk * per_chunk ? T(0) : T(1),
                       static_cast<const T*>(nullptr), GemmBias::none, GemmActivation::none, gemm_threads);
        }
        if (dx) {
          // dcol (Kc, P) = W_g^T (Kc, Og) dy_ng (Og, P), scattered back into dx
          if (g.pointwise) {
            gemm_blocked(dx + x_offset, w_g, dy_ng, g.Kc, g.P, g.Og, true, false, T(1), T(0),
                         static_cast<const T*>(nullptr), GemmBias::none, GemmActivation::none, gemm_threads);
          } else {
            gemm_blocked(col, w_g, dy_ng, g.Kc, g.P, g.Og, true, false, T(1), T(0), static_cast<const T*>(nullptr),
                         GemmBias::none, GemmActivation::none, gemm_threads);
            col2im_add(dx + x_offset, col, s, g.Cg);
          }
        }
        if (db) {
          double* partial = db_partial.data() + chunk * s.O + grp * g.Og;
          for (int64_t o = 0; o < g.Og; ++o) {
            double sum = 0.0;
            for (int64_t p = 0; p < g.P; ++p) sum += double(dy_ng[o * g.P + p]);
            partial[o] += sum;
          }
        }
      }
    });
  }
  for (int64_t chunk = 0; chunk < chunks; ++chunk) {
    if (dw) {
      const T* partial = dw_partial.data() + chunk * weight_size;
      for (int64_t i = 0; i < weight_size; ++i) dw[i] += partial[i];
    }
    if (db) {
      for (int64_t o = 0; o < s.O; ++o) db[o] = T(double(db[o]) + db_partial[chunk * s.O + o]);
    }
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

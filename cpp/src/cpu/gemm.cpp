// GEMM, first version (see shenjing/gemm.h): cache-blocked, OpenMP over
// output tiles, the inner loop vectorised by the compiler. The BLIS-style
// packed micro-kernel replaces this in its own issue; this one is the
// correct baseline and fallback.
//
// Each output tile is computed by one thread, summing over k in the same
// order whatever the thread count, so results are bit-identical with 1 or N
// threads.
#include "shenjing/gemm.h"

#include <vector>

#include "shenjing/dispatch.h"
#include "shenjing/elementwise.h"

namespace shenjing {
namespace SJ_ISA {
namespace {

constexpr int64_t kTileRows = 16;   // rows of C per task
constexpr int64_t kTileCols = 256;  // columns of C per task (1 KiB of floats: an accumulator row stays in L1)
constexpr int64_t kDepth = 256;     // k per pass, so the B panel (kDepth x kTileCols) stays in L2

template <class T> void apply_activation(T* row, int64_t n, GemmActivation act) {
  using V = typename Simd<T>::V;
  constexpr int64_t L = Simd<T>::lanes;
  auto f = [act](V v) -> V {
    switch (act) {
      case GemmActivation::relu: return v < T(0) ? vsplat(T(0)) : v;
      case GemmActivation::gelu: return vgelu(v);
      case GemmActivation::gelu_tanh: return vgelu_tanh(v);
      case GemmActivation::sigmoid: return vsigmoid(v);
      case GemmActivation::tanh: return vtanh(v);
      default: return v;
    }
  };
  int64_t i = 0;
  for (; i + L <= n; i += L) vstore(row + i, f(vload(row + i)));
  if (i < n) vstore_partial(row + i, f(vload_partial(row + i, n - i, T(0))), n - i);
}

template <class T>
void gemm(T* c, const T* a, const T* b, int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b, T alpha,
          T beta, const T* bias, GemmBias bias_kind, GemmActivation activation) {
  if (M == 0 || N == 0) return;
  // op(B) as a row-major (K, N) matrix: B itself, or its transpose copied once
  std::vector<T> b_transposed;
  const T* B = b;
  if (trans_b && K > 0) {
    b_transposed.resize(size_t(K) * size_t(N));
    parallel_for(N, K, [&](int64_t j) {
      for (int64_t k = 0; k < K; ++k) b_transposed[k * N + j] = b[j * K + k];
    });
    B = b_transposed.data();
  }
  const int64_t row_tiles = ceil_div(M, kTileRows), col_tiles = ceil_div(N, kTileCols);
  parallel_for(row_tiles * col_tiles, kTileRows * kTileCols * (K + 1), [&](int64_t task) {
    const int64_t i0 = (task / col_tiles) * kTileRows, j0 = (task % col_tiles) * kTileCols;
    const int64_t mi = M - i0 < kTileRows ? M - i0 : kTileRows;
    const int64_t nj = N - j0 < kTileCols ? N - j0 : kTileCols;
    T acc[kTileRows][kTileCols];
    for (int64_t i = 0; i < mi; ++i)
      for (int64_t j = 0; j < nj; ++j) acc[i][j] = T(0);
    for (int64_t k0 = 0; k0 < K; k0 += kDepth) {
      const int64_t k1 = k0 + kDepth < K ? k0 + kDepth : K;
      for (int64_t i = 0; i < mi; ++i) {
        T* __restrict acc_row = acc[i];
        for (int64_t k = k0; k < k1; ++k) {
          const T aik = trans_a ? a[k * M + i0 + i] : a[(i0 + i) * K + k];
          const T* __restrict b_row = B + k * N + j0;
          for (int64_t j = 0; j < nj; ++j) acc_row[j] += aik * b_row[j];
        }
      }
    }
    // epilogue: alpha, beta (C not read when beta == 0), bias, activation
    for (int64_t i = 0; i < mi; ++i) {
      T* c_row = c + (i0 + i) * N + j0;
      const T row_bias = bias_kind == GemmBias::per_row ? bias[i0 + i] : T(0);
      for (int64_t j = 0; j < nj; ++j) {
        T v = alpha * acc[i][j];
        if (beta != T(0)) v += beta * c_row[j];
        if (bias_kind == GemmBias::per_column) v += bias[j0 + j];
        c_row[j] = v + row_bias;
      }
      if (activation != GemmActivation::none) apply_activation(c_row, nj, activation);
    }
  });
}

template <class T> void fill(GemmKernels<T>& k) { k.gemm = gemm<T>; }

}  // namespace

void register_gemm(KernelSet& k) {
  fill(k.f32.gemm);
  fill(k.f64.gemm);
}

}  // namespace SJ_ISA
}  // namespace shenjing

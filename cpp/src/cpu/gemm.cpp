// GEMM (see shenjing/gemm.h): the BLIS-style driver of gemm_driver.h on
// plain row-major matrices, and gemm_reference, the plain loops the tests
// hold it to.
#include "shenjing/gemm.h"

#include <array>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>
#include <vector>

#include "shenjing/dispatch.h"
#include "shenjing/gemm_driver.h"
#include "shenjing/gemm_internal.h"
#include "shenjing/parallel.h"

namespace shenjing {
namespace SJ_ISA {

using gemm_detail::Epilogue;
using gemm_detail::epilogue_tile;

namespace {

// --- reference ---------------------------------------------------------------------

// op(A)(i, k) and op(B)(k, j) for row-major A and B
template <class T> inline T a_at(const T* a, bool trans_a, int64_t M, int64_t K, int64_t i, int64_t k) {
  return trans_a ? a[k * M + i] : a[i * K + k];
}
template <class T> inline T b_at(const T* b, bool trans_b, int64_t N, int64_t K, int64_t k, int64_t j) {
  return trans_b ? b[j * K + k] : b[k * N + j];
}

template <class T>
void gemm_reference(T* c, const T* a, const T* b, int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b,
                    T alpha, T beta, const T* bias, GemmBias bias_kind, GemmActivation activation) {
  for (int64_t i = 0; i < M; ++i) {
    for (int64_t j = 0; j < N; ++j) {
      T s = 0;
      for (int64_t k = 0; k < K; ++k) s += a_at(a, trans_a, M, K, i, k) * b_at(b, trans_b, N, K, k, j);
      c[i * N + j] = beta != T(0) ? alpha * s + beta * c[i * N + j] : alpha * s;
    }
  }
  const Epilogue ep{bias_kind, activation};
  if (ep.needed()) epilogue_tile(c, N, 0, 0, M, N, bias, ep);
}

}  // namespace

template <class T>
void gemm_blocked(T* c, const T* a, const T* b, int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b, T alpha,
                  T beta, const T* bias, GemmBias bias_kind, GemmActivation activation, int threads) {
  gemm_detail::gemm_driver(c, gemm_detail::MatrixA<T>{a, trans_a, M, K}, gemm_detail::MatrixB<T>{b, trans_b, N, K}, M, N,
                           K, alpha, beta, bias, bias_kind, activation, threads);
}

template void gemm_blocked<float>(float*, const float*, const float*, int64_t, int64_t, int64_t, bool, bool, float,
                                  float, const float*, GemmBias, GemmActivation, int);
template void gemm_blocked<double>(double*, const double*, const double*, int64_t, int64_t, int64_t, bool, bool,
                                   double, double, const double*, GemmBias, GemmActivation, int);

namespace {

// A narrow product (N at most one vector, M several vectors: a 10-class output)
// as its transpose, C^T (N, M) = op(B)^T op(A)^T, whose full 12x32 tiles run
// along M where C's own tiles would be one vector wide with 10 lanes used; C
// is then written from C^T, and the epilogue applied to it. False when the
// shape is not narrow.
template <class T>
bool gemm_narrow(T* c, const T* a, const T* b, int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b, T alpha,
                 T beta, const T* bias, GemmBias bias_kind, GemmActivation activation, int threads) {
  constexpr int64_t L = Simd<T>::lanes;
  if (L == 1 || N > L || M < 4 * L || K == 0) return false;
  static thread_local std::vector<T> buffer;
  T* ct = scratch(buffer, size_t(M * N));
  gemm_detail::gemm_driver(ct, gemm_detail::MatrixA<T>{b, !trans_b, N, K}, gemm_detail::MatrixB<T>{a, !trans_a, M, K},
                           N, M, K, alpha, T(0), static_cast<const T*>(nullptr), GemmBias::none, GemmActivation::none,
                           threads);
  bool written = false;
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
  if constexpr (sizeof(T) == 4) {
    if (beta == T(0)) {  // C = (C^T)^T by 16x16 register transposes (the loop below was 5% of 128x10x256 ta)
      gemm_detail::pack_rows_transposed(c, N, N, ct, M, N, M);
      written = true;
    }
  }
#endif
  if (!written)
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j)
        c[i * N + j] = beta != T(0) ? ct[j * M + i] + beta * c[i * N + j] : ct[j * M + i];
  const Epilogue ep{bias_kind, activation};
  if (ep.needed()) epilogue_tile(c, N, 0, 0, M, N, bias, ep);
  return true;
}

#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
// --- narrow products from rows of A: dot products along k -------------------------
// C (M, N <= 12) with A row-major (M, K): C[i, j] = A[i, :] . B^T[j, :]. Both operands
// are read along k as they lie (B^T: b itself when trans_b, else a small transposed
// copy), so nothing of A is packed, and every FMA uses all 16 lanes; the 16 partial
// sums per output are added up once per row. (The C^T form packed A by transposes, a
// third of its time on 128x10x256, and the broadcast kernel used 10 lanes of 16.)

// s[j] = the sum of the lanes of v[j], j < 16: a tree of in-lane then cross-lane
// shuffles (15 adds for 16 sums, where one reduction each takes 4).
inline __m512 lane_sums16(const __m512* v) {
  __m512 w[8], x[4], y[2];
  for (int i = 0; i < 8; ++i)  // [a0+a2, b0+b2, a1+a3, b1+b3] per 128-bit lane, a, b = v[2i], v[2i+1]
    w[i] = _mm512_add_ps(_mm512_unpacklo_ps(v[2 * i], v[2 * i + 1]), _mm512_unpackhi_ps(v[2 * i], v[2 * i + 1]));
  for (int i = 0; i < 4; ++i)  // [v4i, v4i+1, v4i+2, v4i+3] partial sums per 128-bit lane
    x[i] = _mm512_add_ps(_mm512_shuffle_ps(w[2 * i], w[2 * i + 1], _MM_SHUFFLE(1, 0, 1, 0)),
                         _mm512_shuffle_ps(w[2 * i], w[2 * i + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  for (int i = 0; i < 2; ++i)  // 128-bit lanes added in pairs
    y[i] = _mm512_add_ps(_mm512_shuffle_f32x4(x[2 * i], x[2 * i + 1], _MM_SHUFFLE(2, 0, 2, 0)),
                         _mm512_shuffle_f32x4(x[2 * i], x[2 * i + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  return _mm512_add_ps(_mm512_shuffle_f32x4(y[0], y[1], _MM_SHUFFLE(2, 0, 2, 0)),
                       _mm512_shuffle_f32x4(y[0], y[1], _MM_SHUFFLE(3, 1, 3, 1)));
}

// R rows of C from row i: NJ (= N) outputs each. bt: (N, K), row stride ldb.
template <int NJ, int R>
inline void narrow_row_block(float* c, const float* a, const float* bt, int64_t ldb, int64_t i, int64_t N, int64_t K,
                             float alpha, float beta) {
  __m512 acc[R][16];
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 16
    for (int j = 0; j < 16; ++j) acc[r][j] = _mm512_setzero_ps();
  const float* ar = a + i * K;
  for (int64_t k = 0; k < K; k += 16) {
    const __mmask16 lanes = lanes_below(K - k);
    __m512 av[R];
#pragma GCC unroll 4
    for (int r = 0; r < R; ++r) av[r] = _mm512_maskz_loadu_ps(lanes, ar + r * K + k);
#pragma GCC unroll 16
    for (int j = 0; j < NJ; ++j) {
      const __m512 bj = _mm512_maskz_loadu_ps(lanes, bt + j * ldb + k);
#pragma GCC unroll 4
      for (int r = 0; r < R; ++r) acc[r][j] = _mm512_fmadd_ps(av[r], bj, acc[r][j]);
    }
  }
  const __mmask16 out_lanes = lanes_below(N);
#pragma GCC unroll 4
  for (int r = 0; r < R; ++r) {
    float* cr = c + (i + r) * N;
    __m512 sums = _mm512_mul_ps(lane_sums16(acc[r]), _mm512_set1_ps(alpha));
    if (beta != 0.0f) sums = _mm512_fmadd_ps(_mm512_set1_ps(beta), _mm512_maskz_loadu_ps(out_lanes, cr), sums);
    _mm512_mask_storeu_ps(cr, out_lanes, sums);
  }
}

// Rows [i0, i1) of C, R rows at a time
template <int NJ, int R>
void narrow_rows(float* c, const float* a, const float* bt, int64_t ldb, int64_t i0, int64_t i1, int64_t N, int64_t K,
                 float alpha, float beta) {
  int64_t i = i0;
  for (; i + R <= i1; i += R) narrow_row_block<NJ, R>(c, a, bt, ldb, i, N, K, alpha, beta);
  for (; i < i1; ++i) narrow_row_block<NJ, 1>(c, a, bt, ldb, i, N, K, alpha, beta);
}

constexpr int kMaxNarrowRowsN = 12;

using NarrowRows = void (*)(float*, const float*, const float*, int64_t, int64_t, int64_t, int64_t, int64_t, float, float);

// two rows a step: their 2 NJ sums, the two rows and a B^T row fit in the 32 registers
template <int NJ> constexpr NarrowRows narrow_kernel() { return narrow_rows<NJ, 2>; }

template <int... NJ> constexpr std::array<NarrowRows, sizeof...(NJ)> narrow_kernels(std::integer_sequence<int, NJ...>) {
  return {narrow_kernel<NJ + 1>()...};
}

bool gemm_narrow_rows(float* c, const float* a, const float* b, int64_t M, int64_t N, int64_t K, bool trans_a,
                      bool trans_b, float alpha, float beta, const float* bias, GemmBias bias_kind,
                      GemmActivation activation, int threads) {
  // rows of A along k (not transposed); at most 12 outputs (from 13 the broadcast kernel
  // uses enough of its lanes: 128x16x128 took 1.15x the time here); k long enough to fill
  // the lanes (a short k leaves them idle)
  if (trans_a || N > kMaxNarrowRowsN || N == 0 || M == 0 || K < 32) return false;
  static constexpr auto kernels = narrow_kernels(std::make_integer_sequence<int, kMaxNarrowRowsN>{});
  const NarrowRows kernel = kernels[size_t(N - 1)];
  // B^T (N rows of K) is read from a copy whose rows start on cache lines: most of the
  // kernel's loads are of B^T, and a 16-float load across two lines costs two (NumPy's
  // arrays often lie 16 bytes off a line). Each thread makes its own copy when it is
  // small: reading one made by the other core cost more than making it (128x10x256 on
  // 2 threads: 9.2-10.3 -> 5.3-5.6 us in a C++ loop). A transposed b already aligned,
  // or read by too few rows to repay a copy, is read in place.
  const bool in_place =
      trans_b && (M < 16 || (reinterpret_cast<uintptr_t>(b) % 64 == 0 && K % 16 == 0));
  const int64_t ldb = in_place ? K : ceil_div(K, int64_t(16)) * 16;
  auto copy_bt = [=](float* t) {
    if (trans_b) {
      for (int64_t j = 0; j < N; ++j) std::memcpy(t + j * ldb, b + j * K, sizeof(float) * size_t(K));
    } else {  // b: (K, N) -> its transpose by 16x16 register transposes of 16 rows of b at a
              // time (gathers took 1.7 us of 128x10x256's 12)
      for (int64_t k = 0; k < K; k += 16) {
        const int64_t rows = K - k < 16 ? K - k : 16;
        gemm_detail::pack_rows_transposed(t + k, ldb, rows, b + k * N, N, rows, N);
      }
    }
  };
  const bool per_thread = !in_place && N * ldb * int64_t(sizeof(float)) <= (int64_t(256) << 10);
  const float* shared_bt = in_place ? b : nullptr;
  if (!in_place && !per_thread) {
    static thread_local std::vector<float> shared_buffer;
    float* t = scratch(shared_buffer, size_t(N * ldb));
    copy_bt(t);
    shared_bt = t;
  }
  // tasks of 32 rows (16 for a short M, so that both threads get some), parallel from
  // about 0.3 MFLOP: 128x10x256 took 9.7 us on one thread, 6 on two
  const int64_t rows_per_task = M >= 64 * threads ? 32 : 16;
  const int64_t tasks = ceil_div(M, rows_per_task);
  const bool parallel = threads > 1 && tasks > 1 && 2.0 * double(M) * double(N) * double(K) >= 8.0 * kParallelMinWork;
  auto own_bt = [&]() -> const float* {  // B^T as this thread reads it
    if (shared_bt) return shared_bt;
    static thread_local std::vector<float> own_buffer;
    float* t = scratch(own_buffer, size_t(N * ldb));
    copy_bt(t);
    return t;
  };
  auto run = [&](const float* bt, int64_t t) {
    const int64_t i0 = t * rows_per_task, i1 = i0 + rows_per_task < M ? i0 + rows_per_task : M;
    kernel(c, a, bt, ldb, i0, i1, N, K, alpha, beta);
    const Epilogue ep{bias_kind, activation};
    if (ep.needed()) epilogue_tile(c + i0 * N, N, i0, 0, i1 - i0, N, bias, ep);
  };
  if (!parallel) {  // no team at all (parallel.h's run_indices says why)
    const float* bt = own_bt();
    for (int64_t t = 0; t < tasks; ++t) run(bt, t);
    return true;
  }
#pragma omp parallel num_threads(threads)
  {
    const float* bt = own_bt();
#pragma omp for schedule(static) nowait
    for (int64_t t = 0; t < tasks; ++t) run(bt, t);
  }
  return true;
}
#endif

template <class T>
void gemm_on(int threads, T* c, const T* a, const T* b, int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b,
             T alpha, T beta, const T* bias, GemmBias bias_kind, GemmActivation activation) {
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
  if constexpr (sizeof(T) == 4) {
    if (gemm_narrow_rows(c, a, b, M, N, K, trans_a, trans_b, alpha, beta, bias, bias_kind, activation, threads)) return;
  }
#endif
  if (gemm_narrow(c, a, b, M, N, K, trans_a, trans_b, alpha, beta, bias, bias_kind, activation, threads)) return;
  gemm_blocked(c, a, b, M, N, K, trans_a, trans_b, alpha, beta, bias, bias_kind, activation, threads);
}

template <class T>
void gemm(T* c, const T* a, const T* b, int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b, T alpha,
          T beta, const T* bias, GemmBias bias_kind, GemmActivation activation) {
  gemm_on(thread_count(), c, a, b, M, N, K, trans_a, trans_b, alpha, beta, bias, bias_kind, activation);
}

// Below this many flops a product of a batch runs on one thread, the batch split
// among the threads: the size from which a single product starts its own parallel
// region is about the same (gemm_narrow_rows: 8, the driver: 64 x kParallelMinWork).
constexpr double kBatchedParallelFlops = 64.0 * double(kParallelMinWork);

template <class T>
void gemm_batched(T* c, const T* a, const T* b, int64_t batch, const int64_t* a_offsets, const int64_t* b_offsets,
                  int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b) {
  const int threads = thread_count();
  const double flops = 2.0 * double(M) * double(N) * double(K);
  const bool split_batch = threads > 1 && batch > 1 && flops < kBatchedParallelFlops;
  // (a whole batch too small for a parallel region runs on this thread: 16 products of
  // 4x4x4 took 10.4 us with one, 9.3 without)
  const int each = split_batch ? 1 : threads;
  run_indices(batch, split_batch && flops * double(batch) >= 8.0 * kParallelMinWork, threads,
              Schedule::one_at_a_time, [&](int64_t i) {
                gemm_on(each, c + i * M * N, a + a_offsets[i], b + b_offsets[i], M, N, K, trans_a, trans_b, T(1),
                        T(0), static_cast<const T*>(nullptr), GemmBias::none, GemmActivation::none);
              });
}

template <class T> void fill(GemmKernels<T>& k) {
  k.gemm = gemm<T>;
  k.gemm_batched = gemm_batched<T>;
  k.gemm_reference = gemm_reference<T>;
}

}  // namespace

void register_gemm(KernelSet& k) {
  fill(k.f32.gemm);
  fill(k.f64.gemm);
}

}  // namespace SJ_ISA
}  // namespace shenjing

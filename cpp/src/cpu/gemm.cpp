// GEMM (see shenjing/gemm.h): the BLIS-style driver of gemm_driver.h on
// plain row-major matrices, and gemm_reference, the plain loops the tests
// hold it to.
#include "shenjing/gemm.h"

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
  for (int64_t i = 0; i < M; ++i)
    for (int64_t j = 0; j < N; ++j) c[i * N + j] = beta != T(0) ? ct[j * M + i] + beta * c[i * N + j] : ct[j * M + i];
  const Epilogue ep{bias_kind, activation};
  if (ep.needed()) epilogue_tile(c, N, 0, 0, M, N, bias, ep);
  return true;
}

template <class T>
void gemm(T* c, const T* a, const T* b, int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b, T alpha,
          T beta, const T* bias, GemmBias bias_kind, GemmActivation activation) {
  const int threads = thread_count();
  if (gemm_narrow(c, a, b, M, N, K, trans_a, trans_b, alpha, beta, bias, bias_kind, activation, threads)) return;
  gemm_blocked(c, a, b, M, N, K, trans_a, trans_b, alpha, beta, bias, bias_kind, activation, threads);
}

template <class T> void fill(GemmKernels<T>& k) {
  k.gemm = gemm<T>;
  k.gemm_reference = gemm_reference<T>;
}

}  // namespace

void register_gemm(KernelSet& k) {
  fill(k.f32.gemm);
  fill(k.f64.gemm);
}

}  // namespace SJ_ISA
}  // namespace shenjing

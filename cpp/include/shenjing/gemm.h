// GEMM: C = act(alpha * op(A) op(B) + beta * C + bias).
#pragma once
#include <cstdint>

namespace shenjing {

enum class GemmBias : int { none = 0, per_column = 1, per_row = 2 };  // bias: (N,) or (M,)
enum class GemmActivation : int { none = 0, relu = 1, gelu = 2, gelu_tanh = 3, sigmoid = 4, tanh = 5 };

template <class T> struct GemmKernels {
  // op(A): (M, K) -- A is (M, K), or (K, M) when trans_a
  // op(B): (K, N) -- B is (K, N), or (N, K) when trans_b
  // C: (M, N). C is never read when beta == 0 (it may hold NaN).
  void (*gemm)(T* c, const T* a, const T* b, int64_t M, int64_t N, int64_t K, bool trans_a,
               bool trans_b, T alpha, T beta, const T* bias, GemmBias bias_kind,
               GemmActivation activation);
  // the same contract in plain loops: what the tests hold the fast one to
  void (*gemm_reference)(T* c, const T* a, const T* b, int64_t M, int64_t N, int64_t K, bool trans_a,
                         bool trans_b, T alpha, T beta, const T* bias, GemmBias bias_kind,
                         GemmActivation activation);
};

}  // namespace shenjing

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
  // `batch` products C_i = op(A_i) op(B_i), i < batch: A_i at a + a_offsets[i], B_i at
  // b + b_offsets[i] (a broadcast operand repeats its offset), C_i at c + i M N. Small
  // products run one per thread; large ones one after another, each on all threads
  // (the same answer either way: every product is bit-identical for any thread count).
  void (*gemm_batched)(T* c, const T* a, const T* b, int64_t batch, const int64_t* a_offsets,
                       const int64_t* b_offsets, int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b);
  // the same contract in plain loops: what the tests hold the fast one to
  void (*gemm_reference)(T* c, const T* a, const T* b, int64_t M, int64_t N, int64_t K, bool trans_a,
                         bool trans_b, T alpha, T beta, const T* bias, GemmBias bias_kind,
                         GemmActivation activation);
};

}  // namespace shenjing

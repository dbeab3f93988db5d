// The GEMM driver for other kernel families of the same instruction set
// (convolution calls it per sample, on one thread each).
#pragma once
#include <cstdint>

#include "shenjing/gemm.h"

#ifndef SJ_ISA
#error "gemm_internal.h is only for the kernel files compiled once per instruction set"
#endif

namespace shenjing {
namespace SJ_ISA {

// C = act(alpha op(A) op(B) + beta C + bias) on `threads` threads (see gemm.h)
template <class T>
void gemm_blocked(T* c, const T* a, const T* b, int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b, T alpha,
                  T beta, const T* bias, GemmBias bias_kind, GemmActivation activation, int threads);

}  // namespace SJ_ISA
}  // namespace shenjing

// GEMM block sizes, one place (BLIS names). Included by gemm.cpp, which is
// compiled once per instruction set: the register tile follows the vector
// width SJ_VECTOR_BYTES.
//
//   MR x NR   register tile of C (NR = NV vectors); MR * NV accumulators
//   KC        depth of one pass: an NR-wide B micro-panel (KC x NR) stays in L1
//   MC        rows of A packed per task: the MC x KC block stays in L2 (2 MiB/core)
//   NC        columns of B packed per pass: the KC x NC panel is shared by all threads
#pragma once

#include <cstdint>

#ifndef SJ_ISA
#error "gemm_config.h is only for the kernel files compiled once per instruction set"
#endif

namespace shenjing {
namespace SJ_ISA {

template <class T> struct GemmBlocking;

template <> struct GemmBlocking<float> {
#if SJ_VECTOR_BYTES >= 64
  static constexpr int MR = 12, NV = 2;  // 24 zmm accumulators, 2 for B, 1 broadcast of A
#else
  static constexpr int MR = 6, NV = 2;   // 12 accumulators of 16 ymm / xmm registers
#endif
  static constexpr int64_t KC = 256, MC = 16 * MR, NC = 4096;
};

// double goes through the same templates with scalar vectors (simd.h): a
// correct, portable fallback rather than a fast path.
template <> struct GemmBlocking<double> {
  static constexpr int MR = 4, NV = 4;
  static constexpr int64_t KC = 256, MC = 16 * MR, NC = 1024;
};

// Below this many flops (2 M N K) a GEMM runs unpacked: B is read in place
// (when not transposed) and packing would cost more than it saves.
constexpr double kGemmDirectFlops = 2.0 * 128 * 256 * 1024;

// A pass that reads B in place reads at most this many bytes of its rows (at least
// kGemmInPlaceMinDepth rows): they stay in L2 for the panels after the first (see
// gemm_pass_depth; 128 KiB and 64 KiB measured no better)
constexpr int64_t kGemmInPlacePassBytes = int64_t(256) << 10, kGemmInPlaceMinDepth = 32;

}  // namespace SJ_ISA
}  // namespace shenjing

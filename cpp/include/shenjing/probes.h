// Machine probes: the yardsticks of bench/report.py. copy gives the memory
// bandwidth that memory-bound kernels are held to; fma_peak the FMA
// throughput that GEMM is held to, both measured in the same run.
#pragma once
#include <cstdint>

namespace shenjing {

template <class T> struct ProbeKernels {
  // x, y: (n,)  y = x, split over threads with plain vector stores (overwrites y)
  void (*copy)(T* y, const T* x, int64_t n);
  // `iterations` rounds of independent FMA chains on every thread, in
  // registers; returns a value that depends on all of them (so nothing is
  // optimised away). flops = 2 * fma_peak_lanes() * iterations * threads.
  T (*fma_peak)(int64_t iterations);
  int64_t (*fma_peak_lanes)();
};

}  // namespace shenjing

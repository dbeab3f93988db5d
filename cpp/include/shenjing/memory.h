// Memory kernels: the copy whose bandwidth is the yardstick of every
// memory-bound kernel in bench/report.py.
#pragma once
#include <cstdint>

namespace shenjing {

template <class T> struct MemoryKernels {
  // x, y: (n,)  y = x, split over threads (overwrites y)
  void (*copy)(T* y, const T* x, int64_t n);
};

}  // namespace shenjing

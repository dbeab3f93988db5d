// Reductions. Sums are taken over fixed chunks combined in a fixed order, so
// results do not depend on the thread count.
#pragma once
#include <cstdint>

namespace shenjing {

template <class T> struct ReduceKernels {
  // x: (outer, len, inner) -> y: (outer, inner), y = sum over len (overwrites y)
  void (*sum_axis)(T* y, const T* x, int64_t outer, int64_t len, int64_t inner);
  // sum of all n elements and sum of squares, accumulated in double
  double (*sum_all)(const T* x, int64_t n);
  double (*sum_of_squares)(const T* x, int64_t n);
};

}  // namespace shenjing

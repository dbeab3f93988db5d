// Machine probes (see shenjing/probes.h).
#include "shenjing/probes.h"

#include <vector>

#include "shenjing/dispatch.h"
#include "shenjing/elementwise.h"

namespace shenjing {
namespace SJ_ISA {
namespace {

// Plain vector loads and stores, as every other kernel does: memcpy's
// non-temporal stores would bypass the cache that the kernels' outputs go
// through, and make a different yardstick.
template <class T> void copy(T* y, const T* x, int64_t n) {
  map_unary(y, x, n, [](auto v) { return v; });
}

constexpr int kChains = 12;  // independent accumulators: more than FMA latency x ports

template <class T> int64_t fma_peak_lanes() { return kChains * Simd<T>::lanes; }

template <class T> T fma_peak(int64_t iterations) {
  using V = typename Simd<T>::V;
  const int threads = thread_count();
  std::vector<T> results(threads, T(0));
#pragma omp parallel num_threads(threads)
  {
#ifdef _OPENMP
    const int t = omp_get_thread_num();
#else
    const int t = 0;
#endif
    V acc[kChains];
    for (int c = 0; c < kChains; ++c) acc[c] = vsplat(T(c) * T(1e-3));
    const V mul = vsplat(T(0.999999)), add = vsplat(T(1e-7));
    for (int64_t i = 0; i < iterations; ++i) {
#pragma GCC unroll 16
      for (int c = 0; c < kChains; ++c) acc[c] = acc[c] * mul + add;
    }
    V total = acc[0];
    for (int c = 1; c < kChains; ++c) total += acc[c];
    results[t] = hsum(total);
  }
  T sum = 0;
  for (T r : results) sum += r;
  return sum;
}

template <class T> void fill(ProbeKernels<T>& k) {
  k.copy = copy<T>;
  k.fma_peak = fma_peak<T>;
  k.fma_peak_lanes = fma_peak_lanes<T>;
}

}  // namespace

void register_probes(KernelSet& k) {
  fill(k.f32.probes);
  fill(k.f64.probes);
}

}  // namespace SJ_ISA
}  // namespace shenjing

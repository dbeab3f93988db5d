// Reductions (see shenjing/reduce.h). Every sum is taken over fixed chunks
// (or whole rows) and combined in order, so it does not depend on threads.
#include "shenjing/reduce.h"

#include <vector>

#include "shenjing/dispatch.h"
#include "shenjing/elementwise.h"

namespace shenjing {
namespace SJ_ISA {
namespace {

constexpr int64_t kSumBlock = 256;  // vectors summed in T before the running total moves to double

// x: (outer, len, inner) -> y: (outer, inner). Runs of kSumBlock vectors are
// summed in T, the runs in double: float32 sums of 1e6 terms stay accurate.
template <class T> void sum_axis(T* y, const T* x, int64_t outer, int64_t len, int64_t inner) {
  using V = typename Simd<T>::V;
  constexpr int64_t L = Simd<T>::lanes;
  if (inner == 1) {
    parallel_for(outer, len, [&](int64_t o) {
      const T* row = x + o * len;
      double total = 0.0;
      for (int64_t b = 0; b < len; b += kSumBlock * L) {
        const int64_t end = b + kSumBlock * L < len ? b + kSumBlock * L : len;
        V s = vsplat(T(0));
        int64_t i = b;
        for (; i + L <= end; i += L) s += vload(row + i);
        if (i < end) s += vload_partial(row + i, end - i, T(0));
        total += double(hsum(s));
      }
      y[o] = T(total);
    });
    return;
  }
  // vectors along inner, summed down the strided len axis
  const int64_t blocks = ceil_div(inner, L);
  parallel_for(outer * blocks, len * L, [&](int64_t task) {
    const int64_t o = task / blocks, i0 = (task % blocks) * L;
    const int64_t w = inner - i0 < L ? inner - i0 : L;
    const T* base = x + o * len * inner + i0;
    double total[L] = {};
    for (int64_t l0 = 0; l0 < len; l0 += kSumBlock) {
      const int64_t l1 = l0 + kSumBlock < len ? l0 + kSumBlock : len;
      V s = vsplat(T(0));
      for (int64_t l = l0; l < l1; ++l) s += w == L ? vload(base + l * inner) : vload_partial(base + l * inner, w, T(0));
      for (int64_t k = 0; k < L; ++k) total[k] += double(lane(s, k));
    }
    for (int64_t k = 0; k < w; ++k) y[o * inner + i0 + k] = T(total[k]);
  });
}

template <class T, bool Square> double sum_chunks(const T* x, int64_t n) {
  using V = typename Simd<T>::V;
  constexpr int64_t L = Simd<T>::lanes;
  std::vector<double> partial(ceil_div(n, kElementChunk) + 1, 0.0);
  parallel_chunks(n, kElementChunk, 1, [&](int64_t c, int64_t begin, int64_t end) {
    double total = 0.0;
    for (int64_t b = begin; b < end; b += kSumBlock * L) {
      const int64_t e = b + kSumBlock * L < end ? b + kSumBlock * L : end;
      V s = vsplat(T(0));
      int64_t i = b;
      for (; i + L <= e; i += L) {
        V v = vload(x + i);
        s += Square ? v * v : v;
      }
      if (i < e) {
        V v = vload_partial(x + i, e - i, T(0));
        s += Square ? v * v : v;
      }
      total += double(hsum(s));
    }
    partial[c] = total;
  });
  double total = 0.0;
  for (double p : partial) total += p;
  return total;
}

template <class T> double sum_all(const T* x, int64_t n) { return sum_chunks<T, false>(x, n); }
template <class T> double sum_of_squares(const T* x, int64_t n) { return sum_chunks<T, true>(x, n); }

template <class T> void fill(ReduceKernels<T>& k) {
  k.sum_axis = sum_axis<T>;
  k.sum_all = sum_all<T>;
  k.sum_of_squares = sum_of_squares<T>;
}

}  // namespace

void register_reduce(KernelSet& k) {
  fill(k.f32.reduce);
  fill(k.f64.reduce);
}

}  // namespace SJ_ISA
}  // namespace shenjing

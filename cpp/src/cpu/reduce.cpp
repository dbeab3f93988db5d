// Reductions (see shenjing/reduce.h). Every sum is taken over fixed chunks
// (or whole rows) and combined in order, so it does not depend on threads.
#include "shenjing/reduce.h"

#include <vector>

#include "shenjing/dispatch.h"
#include "shenjing/elementwise.h"

namespace shenjing {
namespace SJ_ISA {
namespace {

// x: (outer, len, inner) -> y: (outer, inner)
template <class T> void sum_axis(T* y, const T* x, int64_t outer, int64_t len, int64_t inner) {
  using V = typename Simd<T>::V;
  constexpr int64_t L = Simd<T>::lanes;
  if (inner == 1) {
    parallel_for(outer, len, [&](int64_t o) {
      const T* row = x + o * len;
      V s = vsplat(T(0));
      int64_t i = 0;
      for (; i + L <= len; i += L) s += vload(row + i);
      if (i < len) s += vload_partial(row + i, len - i, T(0));
      y[o] = hsum(s);
    });
    return;
  }
  // vectors along inner, summed down the strided len axis
  const int64_t blocks = ceil_div(inner, L);
  parallel_for(outer * blocks, len * L, [&](int64_t task) {
    const int64_t o = task / blocks, i0 = (task % blocks) * L;
    const int64_t w = inner - i0 < L ? inner - i0 : L;
    const T* base = x + o * len * inner + i0;
    V s = vsplat(T(0));
    for (int64_t l = 0; l < len; ++l) s += w == L ? vload(base + l * inner) : vload_partial(base + l * inner, w, T(0));
    if (w == L) vstore(y + o * inner + i0, s);
    else vstore_partial(y + o * inner + i0, s, w);
  });
}

template <class T, bool Square> double sum_chunks(const T* x, int64_t n) {
  using V = typename Simd<T>::V;
  constexpr int64_t L = Simd<T>::lanes;
  std::vector<double> partial(ceil_div(n, kElementChunk) + 1, 0.0);
  parallel_chunks(n, kElementChunk, 1, [&](int64_t c, int64_t begin, int64_t end) {
    V s = vsplat(T(0));
    int64_t i = begin;
    for (; i + L <= end; i += L) {
      V v = vload(x + i);
      s += Square ? v * v : v;
    }
    if (i < end) {
      V v = vload_partial(x + i, end - i, T(0));
      s += Square ? v * v : v;
    }
    partial[c] = double(hsum(s));
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

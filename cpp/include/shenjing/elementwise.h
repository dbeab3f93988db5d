// Parallel elementwise maps for the kernel files: the body of a kernel is a
// lambda on one vector (Simd<T>::V), applied over fixed chunks of the arrays.
#pragma once

#include "shenjing/parallel.h"
#include "shenjing/simd.h"

namespace shenjing {
namespace SJ_ISA {

constexpr int64_t kElementChunk = 16384;  // a multiple of every vector width

// y[i] = f(a[i])
template <class T, class F>
static inline void map_unary(T* y, const T* a, int64_t n, F f) {
  constexpr int64_t L = Simd<T>::lanes;
  parallel_chunks(n, kElementChunk, 1, [&](int64_t, int64_t begin, int64_t end) {
    int64_t i = begin;
    for (; i + L <= end; i += L) vstore(y + i, f(vload(a + i)));
    if (i < end) vstore_partial(y + i, f(vload_partial(a + i, end - i, T(0))), end - i);
  });
}

// y[i] = f(a[i], b[i])
template <class T, class F>
static inline void map_binary(T* y, const T* a, const T* b, int64_t n, F f) {
  constexpr int64_t L = Simd<T>::lanes;
  parallel_chunks(n, kElementChunk, 1, [&](int64_t, int64_t begin, int64_t end) {
    int64_t i = begin;
    for (; i + L <= end; i += L) vstore(y + i, f(vload(a + i), vload(b + i)));
    if (i < end)
      vstore_partial(y + i, f(vload_partial(a + i, end - i, T(0)), vload_partial(b + i, end - i, T(0))),
                     end - i);
  });
}

}  // namespace SJ_ISA
}  // namespace shenjing

// Parallel elementwise maps for the kernel files: the body of a kernel is a
// lambda on one vector (Simd<T>::V), applied over fixed chunks of the arrays.
#pragma once

#include "shenjing/parallel.h"
#include "shenjing/simd.h"

namespace shenjing {
namespace SJ_ISA {

constexpr int64_t kElementChunk = 16384;  // a multiple of every vector width
// map_unary_interleaved asks for its input this far ahead: its bodies are long enough that
// the hardware prefetcher alone left the loads and the arithmetic taking turns (measured
// with bench/ab.py on 16M floats into out=, 2 threads: sigmoid and tanh 0.878x, gelu_tanh
// 0.866x, gelu 0.930x, and 0.94-0.97x more for every line rather than every other; 4 KiB
// ahead was no better, asking for the output line too changed nothing, and the short
// bodies of map_unary, the copy yardstick among them, gain nothing)
constexpr int64_t kPrefetchAhead = 2048;  // bytes

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

// map_unary for long exp-based bodies (sigmoid, tanh, gelu): two vectors per step,
// so their dependency chains interleave in the compiled code instead of relying on
// the out-of-order window to overlap iterations (measured, 16M floats into out=,
// 2 threads, three interleaved runs: tanh 7.0-7.7 -> 5.5-6.6 ms, gelu 10.5-10.9 ->
// 8.0-10.5, gelu tanh 6.4-7.9 -> 6.0-7.3, sigmoid 5.4-6.7 -> 4.2-5.9). Short bodies
// and the copy yardstick keep map_unary: unrolled, a plain copy ran slower here
// (7.2-8.0 against 4.6-6.1 ms). y may be a itself.
template <class T, class F>
static inline void map_unary_interleaved(T* y, const T* a, int64_t n, F f) {
  constexpr int64_t L = Simd<T>::lanes, kStepBytes = 2 * L * int64_t(sizeof(T));
  parallel_chunks(n, kElementChunk, 1, [=](int64_t, int64_t begin, int64_t end) {
    int64_t i = begin;
    for (; i + 2 * L <= end; i += 2 * L) {
      if (kStepBytes >= 64 || (i * int64_t(sizeof(T))) % 64 == 0)  // each line of the step, once
        for (int64_t line = 0; line < 2 * L; line += 64 / int64_t(sizeof(T)))
          __builtin_prefetch(a + i + line + kPrefetchAhead / sizeof(T), 0, 3);
      const auto r0 = f(vload(a + i)), r1 = f(vload(a + i + L));
      vstore(y + i, r0);
      vstore(y + i + L, r1);
    }
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

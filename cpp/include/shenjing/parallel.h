// OpenMP helpers for the kernel files (compiled once per instruction set, so
// everything here is in the instruction-set namespace).
//
// A parallel region costs 1-2 us here, so work below kParallelMinWork
// elements stays on the calling thread. Work is split into fixed chunks whose
// boundaries do not depend on the thread count: a kernel that reduces per
// chunk and then combines chunks in order gives bit-identical results with 1
// or N threads.
#pragma once

#include <cstdint>
#include <vector>

#include "shenjing/dispatch.h"
#ifdef _OPENMP
#include <omp.h>
#endif

#ifndef SJ_ISA
#error "parallel.h is only for the kernel files compiled once per instruction set"
#endif

namespace shenjing {
namespace SJ_ISA {

constexpr int64_t kParallelMinWork = 1 << 15;  // elements (measured: ~30 us of streaming work)

static inline int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// Every parallel loop here branches to a plain loop when it is not worth a parallel
// region, rather than `#pragma omp parallel if (false)`: libgomp still builds a team of
// one for that, a malloc and free of a few KiB that made glibc consolidate its free lists
// on every call (a fifth of a batch of 256 16x16x16 products, one small GEMM each).

// f(chunk_index, begin, end) for chunks [begin, end) of `chunk` items covering [0, n).
// `work_per_item` scales n to elements of work when deciding to go parallel.
template <class F>
static inline void parallel_chunks(int64_t n, int64_t chunk, int64_t work_per_item, F f) {
  if (n <= 0) return;
  const int64_t nchunks = ceil_div(n, chunk);
  const bool parallel = nchunks > 1 && n * work_per_item >= kParallelMinWork;
  auto run = [&](int64_t c) {
    const int64_t begin = c * chunk;
    const int64_t end = begin + chunk < n ? begin + chunk : n;
    f(c, begin, end);
  };
  if (!parallel) {  // no team at all (see serially)
    for (int64_t c = 0; c < nchunks; ++c) run(c);
    return;
  }
#pragma omp parallel for schedule(static) num_threads(thread_count())
  for (int64_t c = 0; c < nchunks; ++c) run(c);
}

// f(i) for i in [0, n): rows, tensors, blocks
template <class F>
static inline void parallel_for(int64_t n, int64_t work_per_item, F f) {
  if (n <= 0) return;
  const bool parallel = n > 1 && n * work_per_item >= kParallelMinWork;
  if (!parallel) {  // no team at all (see serially)
    for (int64_t i = 0; i < n; ++i) f(i);
    return;
  }
#pragma omp parallel for schedule(static) num_threads(thread_count())
  for (int64_t i = 0; i < n; ++i) f(i);
}

// n elements of a work buffer that the caller keeps between calls (declare it
// `static thread_local std::vector<T>`), so scratch is not reallocated and
// page-faulted on every call; the start is aligned to a cache line.
template <class T> static inline T* scratch(std::vector<T>& buffer, size_t n) {
  constexpr size_t line = 64 / sizeof(T);
  if (buffer.size() < n + line) buffer.resize(n + line);
  const uintptr_t address = reinterpret_cast<uintptr_t>(buffer.data());
  return buffer.data() + ((64 - address % 64) % 64) / sizeof(T);
}

}  // namespace SJ_ISA
}  // namespace shenjing

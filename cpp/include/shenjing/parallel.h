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

// How a parallel loop hands out its indices: `blocks` gives each thread one run of
// consecutive indices, `one_at_a_time` lets a thread that finishes early take more.
enum class Schedule { blocks, one_at_a_time };

// f(i) for i in [0, n): on `threads` threads when `parallel`, else in a plain loop on this
// thread. Not `#pragma omp parallel if (false)`: libgomp still builds a team of one for that,
// a malloc and free of a few KiB that made glibc consolidate its free lists on every call
// (a fifth of a batch of 256 16x16x16 products under perf, one small GEMM each).
template <class F> static inline void run_indices(int64_t n, bool parallel, int threads, Schedule schedule, F f) {
  if (!parallel || threads < 2 || n < 2) {
    for (int64_t i = 0; i < n; ++i) f(i);
  } else if (schedule == Schedule::blocks) {
#pragma omp parallel for schedule(static) num_threads(threads)
    for (int64_t i = 0; i < n; ++i) f(i);
  } else {
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
    for (int64_t i = 0; i < n; ++i) f(i);
  }
}

// f(chunk_index, begin, end) for chunks [begin, end) of `chunk` items covering [0, n).
// `work_per_item` scales n to elements of work when deciding to go parallel.
template <class F>
static inline void parallel_chunks(int64_t n, int64_t chunk, int64_t work_per_item, F f) {
  if (n <= 0) return;
  const int64_t nchunks = ceil_div(n, chunk);
  auto run = [&](int64_t c) {
    const int64_t begin = c * chunk;
    f(c, begin, begin + chunk < n ? begin + chunk : n);
  };
  // run_indices' branches written out: through it, the elementwise maps' hot loops compiled
  // 7-13% slower (bench/ab.py, 16M sigmoid 1.10x, 4096x4096 softmax 1.13x)
  if (nchunks < 2 || n * work_per_item < kParallelMinWork) {
    for (int64_t c = 0; c < nchunks; ++c) run(c);
    return;
  }
#pragma omp parallel for schedule(static) num_threads(thread_count())
  for (int64_t c = 0; c < nchunks; ++c) run(c);
}

// f(i) for i in [0, n): rows, tensors, blocks
template <class F>
static inline void parallel_for(int64_t n, int64_t work_per_item, F f) {
  run_indices(n, n * work_per_item >= kParallelMinWork, thread_count(), Schedule::blocks, f);
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

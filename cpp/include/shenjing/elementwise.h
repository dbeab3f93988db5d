// Parallel elementwise maps for the kernel files: the body of a kernel is a
// lambda on one vector (Simd<T>::V), applied over fixed chunks of the arrays.
#pragma once

#include <cmath>
#include <cstring>

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

// --- non-temporal stores for large outputs ------------------------------------------
// An output of at least this many bytes (that is not also an input) is written with
// streaming stores, which skip reading each line in before overwriting it and leave
// the caches to the inputs: a third less memory traffic. Measured (bench/ab.py, 16M
// floats, 2 threads): tanh 0.79x, sigmoid 0.84x, gelu 0.92x; tanh then sigmoid on the
// result then its sum, 0.86x at 16M, 0.94x at 8M, 1.00x at 4M (16 MB), so outputs
// that size and larger do not stay in this machine's caches for the next op anyway.
// Below it they do: streaming from 8 MiB made single ops of 12 MB 0.65-0.78x and
// 4096x1000 softmax 0.69x, but that chain 1.22-1.25x at 8 and 12 MB (bench/ab.py chain).
constexpr int64_t kStreamAboveBytes = int64_t(16) << 20;

#if (defined(__AVX512F__) && SJ_VECTOR_BYTES == 64) || (defined(__AVX__) && SJ_VECTOR_BYTES == 32)
constexpr bool kHasStreamingStores = true;
static inline void vstream(float* p, vfloat v) {
#if SJ_VECTOR_BYTES == 64
  _mm512_stream_ps(p, v);
#else
  _mm256_stream_ps(p, v);
#endif
}
static inline void stream_fence() { _mm_sfence(); }  // streaming stores are weakly ordered
#else
constexpr bool kHasStreamingStores = false;
static inline void vstream(float* p, vfloat v) { vstore(p, v); }
static inline void stream_fence() {}
#endif
static inline void vstream(double* p, double v) { *p = v; }

// whether y lies at a multiple of its element's size (the bindings refuse arrays that
// do not; a pointer that did could never be brought to a vector boundary)
template <class T> static inline bool element_aligned(const T* y) {
  return reinterpret_cast<uintptr_t>(y) % sizeof(T) == 0;
}
// whether y (n elements) is written with streaming stores: float, large, not an input
template <class T> static inline bool streams_output(const T* y, int64_t n, const T* a, const T* b = nullptr) {
  return kHasStreamingStores && sizeof(T) == 4 && n * int64_t(sizeof(T)) >= kStreamAboveBytes && y != a && y != b &&
         element_aligned(y);
}
// the first i from `i` at which y + i is vector-aligned (streaming stores need it), or
// `end`; `i` itself when y is not even element-aligned. Never more than a vector past i.
template <class T> static inline int64_t aligned_from(const T* y, int64_t i, int64_t end) {
  if (!element_aligned(y)) return i;
  constexpr uintptr_t kBytes = uintptr_t(Simd<T>::lanes) * sizeof(T);
  const uintptr_t address = reinterpret_cast<uintptr_t>(y + i);
  const int64_t to_boundary = int64_t((kBytes - address % kBytes) % kBytes / sizeof(T));
  return to_boundary < end - i ? i + to_boundary : end;
}

// y[0, n) = value(i) a vector at a time (value(i, lanes) for the first lanes of one
// that is partial), with streaming stores when `stream` (the caller fences once it is
// done with its rows). A partial first vector brings y to a vector boundary, so no store
// straddles two cache lines (nor, when it lies as far off a line as y, a load of the
// input: NumPy's arrays often start 16 bytes off one). For rows of a larger output.
template <class T, class F>
static inline void store_row(T* y, int64_t n, bool stream, F value) {
  constexpr int64_t L = Simd<T>::lanes;
  int64_t i = aligned_from(y, 0, n);
  if (i > 0) vstore_partial(y, value(0, i), i);
  if (stream)
    for (; i + L <= n; i += L) vstream(y + i, value(i, L));
  for (; i + L <= n; i += L) vstore(y + i, value(i, L));
  if (i < n) vstore_partial(y + i, value(i, n - i), n - i);
}

// The sum of exp(x - shift) over a row of len (shift >= the row's max, so every
// argument is <= 0); the exps are stored in y when y is not null. `next` (the next
// row, or null) is prefetched meanwhile, so its load from memory overlaps this
// compute-bound pass instead of waiting for that row's max pass, and during(i) runs
// before the exps of [i, i + 2L) are stored, at every step of 2L values and once with
// i = len before the vectors of the tail (a finished row streaming out of y, as softmax
// does, which must have read y there first). Two
// running sums, so consecutive exps do not wait on one add's latency. (Its vectors start
// at x itself, wherever x lies from a cache line: the sum's rounding must not depend on
// the address, or a seeded training run would not repeat.)
struct NoStep {
  void operator()(int64_t) const {}
};
template <class T, class D = NoStep>
static inline T row_sum_exp(T* y, const T* x, int64_t len, T shift, const T* next = nullptr, D during = D()) {
  using V = typename Simd<T>::V;
  constexpr int64_t L = Simd<T>::lanes;
  RunningSum<V> s, s1;
  int64_t i = 0;
  for (; i + 2 * L <= len; i += 2 * L) {
    if (next) {
      __builtin_prefetch(next + i);
      __builtin_prefetch(next + i + L);
    }
    during(i);
    V e = vexp_nonpositive(vload(x + i) - shift), e1 = vexp_nonpositive(vload(x + i + L) - shift);
    if (y) vstore(y + i, e), vstore(y + i + L, e1);
    s.add(e);
    s1.add(e1);
  }
  if (i < len) during(len);
  for (; i + L <= len; i += L) {
    V e = vexp_nonpositive(vload(x + i) - shift);
    if (y) vstore(y + i, e);
    s.add(e);
  }
  if (i < len) {
    V e = vexp_partial(x + i, len - i, shift);
    if (y) vstore_partial(y + i, e, len - i);
    s.add(e);
  }
  return hsum(s.value() + s1.value());
}

// y[i] = f(a[i])
template <class T, class F>
static inline void map_unary(T* y, const T* a, int64_t n, F f) {
  const bool stream = streams_output(y, n, a);
  parallel_chunks(n, kElementChunk, 1, [&](int64_t, int64_t begin, int64_t end) {
    const T* ac = a + begin;
    store_row(y + begin, end - begin, stream, [&](int64_t i, int64_t lanes) { return f(vload_lanes(ac + i, lanes)); });
    if (stream) stream_fence();
  });
}

// y[i, end) = f(a[i, end)) two vectors a step, for long exp-based bodies (sigmoid, tanh,
// gelu): their dependency chains interleave in the compiled code instead of relying on
// the out-of-order window to overlap iterations (measured, 16M floats into out=,
// 2 threads, three interleaved runs: tanh 7.0-7.7 -> 5.5-6.6 ms, gelu 10.5-10.9 ->
// 8.0-10.5, gelu tanh 6.4-7.9 -> 6.0-7.3, sigmoid 5.4-6.7 -> 4.2-5.9). Short bodies
// and the copy yardstick keep map_unary: unrolled, a plain copy ran slower here
// (7.2-8.0 against 4.6-6.1 ms). With `stream`, y + i is vector-aligned and the whole
// steps are streamed.
template <class T, class F>
static inline void interleaved_span(T* y, const T* a, int64_t i, int64_t end, bool stream, F f) {
  constexpr int64_t L = Simd<T>::lanes, kStepBytes = 2 * L * int64_t(sizeof(T));
  auto prefetch = [=](int64_t at) {
    if (kStepBytes >= 64 || (at * int64_t(sizeof(T))) % 64 == 0)  // each line of the step, once
      for (int64_t line = 0; line < 2 * L; line += 64 / int64_t(sizeof(T)))
        __builtin_prefetch(a + at + line + kPrefetchAhead / sizeof(T), 0, 3);
  };
  for (; i + 2 * L <= end; i += 2 * L) {
    prefetch(i);
    const auto r0 = f(vload(a + i)), r1 = f(vload(a + i + L));
    if (stream) vstream(y + i, r0), vstream(y + i + L, r1);
    else vstore(y + i, r0), vstore(y + i + L, r1);
  }
  for (; i + L <= end; i += L) vstore(y + i, f(vload(a + i)));
  if (i < end) vstore_partial(y + i, f(vload_partial(a + i, end - i, T(0))), end - i);
}

// The chunks of an interleaved map, in parallel: each chunk's head up to a vector boundary
// of y through head() (see store_row), the rest through spans(i, end, stream), y + i
// aligned. With `index_grid`, only a streamed output (whose stores need it) is aligned so:
// a map whose result depends on where its blocks start (map_unary_two_forms) keeps them
// at the chunk's start otherwise, so it gives the same bits wherever the arrays lie.
template <class T, class Head, class Spans>
static inline void interleaved_chunks(T* y, const T* a, int64_t n, Head head, Spans spans, bool index_grid = false) {
  const bool stream = streams_output(y, n, a);
  parallel_chunks(n, kElementChunk, 1, [=](int64_t, int64_t begin, int64_t end) {
    const int64_t i = index_grid && !stream ? begin : aligned_from(y, begin, end);
    if (begin < i) vstore_partial(y + begin, head(vload_lanes(a + begin, i - begin)), i - begin);
    spans(i, end, stream);
    if (stream) stream_fence();
  });
}

// y[i] = f(a[i]) through interleaved_span. y may be a itself.
template <class T, class F>
static inline void map_unary_interleaved(T* y, const T* a, int64_t n, F f) {
  interleaved_chunks(y, a, n, f,
                     [=](int64_t i, int64_t end, bool stream) { interleaved_span(y, a, i, end, stream, f); });
}

// whether every |p[i]| < bound, i < n (a NaN is not)
template <class T> static inline bool all_within(const T* p, int64_t n, T bound) {
  for (int64_t i = 0; i < n; ++i)
    if (!(std::abs(p[i]) < bound)) return false;
  return true;
}
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
// on the float bits: |x| orders as its bits with the sign cleared, and NaN's lie above inf's
static inline bool all_within(const float* p, int64_t n, float bound) {
  const __m512i magnitude = _mm512_set1_epi32(INT32_MAX);
  __m512i largest = _mm512_setzero_si512();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    largest = _mm512_max_epu32(largest, _mm512_and_si512(_mm512_loadu_si512(p + i), magnitude));
  if (i < n) {  // a masked load: the lanes past n are not read (they may lie on an unmapped page)
    const __m512i tail = _mm512_maskz_loadu_epi32(__mmask16((1u << (n - i)) - 1), p + i);
    largest = _mm512_max_epu32(largest, _mm512_and_si512(tail, magnitude));
  }
  uint32_t bound_bits;
  std::memcpy(&bound_bits, &bound, 4);
  return _mm512_cmplt_epu32_mask(largest, _mm512_set1_epi32(int32_t(bound_bits))) == 0xFFFF;
}
#endif

// map_unary_interleaved with two forms of the body: `fast` for a block of kFormBlock
// inputs whose every |a| < bound, `exact` (valid everywhere) for any other block. One
// check a block, not a vector: a vector-level branch mispredicted on inputs that straddle
// the bound (sigmoid of 8 N(0, 1): 1.40x the exact form's time), where whole blocks of
// such inputs fall on one side and the check costs two instructions a vector. After
// blocks that failed it, the next 1, 2, 4 .. kMostUnchecked blocks go to `exact` unchecked,
// so inputs mostly beyond the bound pay little for the check.
constexpr int64_t kFormBlock = 256, kMostUnchecked = 16;
// (A streamed output's blocks start at its first vector boundary, so there an element's
// form, and its last bit, can depend on the output's address.)
template <class T, class Fast, class Exact>
static inline void map_unary_two_forms(T* y, const T* a, int64_t n, T bound, Fast fast, Exact exact) {
  interleaved_chunks(y, a, n, exact, [=](int64_t i, int64_t end, bool stream) {
    int64_t backoff = 1;
    for (int64_t stop; i < end; i = stop) {
      stop = i + kFormBlock < end ? i + kFormBlock : end;
      if (all_within(a + i, stop - i, bound)) {
        backoff = 1;
        interleaved_span(y, a, i, stop, stream, fast);
      } else {  // this block and the next `backoff` in one span
        stop = i + (1 + backoff) * kFormBlock < end ? i + (1 + backoff) * kFormBlock : end;
        backoff = backoff < kMostUnchecked ? 2 * backoff : kMostUnchecked;
        interleaved_span(y, a, i, stop, stream, exact);
      }
    }
  }, true);
}

// y[i] = f(a[i], b[i])
template <class T, class F>
static inline void map_binary(T* y, const T* a, const T* b, int64_t n, F f) {
  const bool stream = streams_output(y, n, a, b);
  parallel_chunks(n, kElementChunk, 1, [&](int64_t, int64_t begin, int64_t end) {
    const T *ac = a + begin, *bc = b + begin;
    store_row(y + begin, end - begin, stream,
              [&](int64_t i, int64_t lanes) { return f(vload_lanes(ac + i, lanes), vload_lanes(bc + i, lanes)); });
    if (stream) stream_fence();
  });
}

}  // namespace SJ_ISA
}  // namespace shenjing

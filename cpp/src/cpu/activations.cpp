// Activation kernels (see shenjing/activations.h). Compiled once per
// instruction set; the float path is vectorised through simd.h, the double
// path uses libm and is the accurate fallback.
#include "shenjing/activations.h"

#include <limits>
#include <type_traits>
#include <vector>

#include "shenjing/dispatch.h"
#include "shenjing/elementwise.h"

namespace shenjing {
namespace SJ_ISA {
namespace {

// --- elementwise: x, y, dy, dx are (n,) ------------------------------------------

template <class T> void relu_forward(T* y, const T* x, int64_t n) {
  map_unary(y, x, n, [](auto v) { return v < T(0) ? vsplat(T(0)) : v; });
}
template <class T> void relu_backward(T* dx, const T* dy, const T* x, int64_t n) {
  map_binary(dx, dy, x, n, [](auto g, auto v) { return v > T(0) ? g : vsplat(T(0)); });
}

template <class T> void leaky_relu_forward(T* y, const T* x, int64_t n, T slope) {
  map_unary(y, x, n, [slope](auto v) { return v > T(0) ? v : v * slope; });
}
template <class T> void leaky_relu_backward(T* dx, const T* dy, const T* x, int64_t n, T slope) {
  map_binary(dx, dy, x, n, [slope](auto g, auto v) { return v > T(0) ? g : g * slope; });
}

// The table forms (simd.h) cover |x| under a bound, blocks of inputs beyond it take the exp
// forms: bench/ab.py on 16M floats, 2 threads, sigmoid 0.72-0.84x on 3 N(0, 1) and 1.00x on
// 8 N(0, 1); gelu_tanh 0.73-0.75x on N(0, 1) and 1.03x on 3 N(0, 1), whose blocks fail its bound
template <class T> void sigmoid_forward(T* y, const T* x, int64_t n) {
  auto exact = [](auto v) { return vsigmoid(v); };
  if constexpr (kHasSigmoidTable && std::is_same_v<T, float>)
    map_unary_two_forms(y, x, n, kSigmoidTableBound, [](auto v) { return vsigmoid_table(v); }, exact);
  else map_unary_interleaved(y, x, n, exact);
}
template <class T> void sigmoid_backward(T* dx, const T* dy, const T* y, int64_t n) {
  map_binary(dx, dy, y, n, [](auto g, auto s) { return g * (T(1) - s) * s; });
}

template <class T> void tanh_forward(T* y, const T* x, int64_t n) {
  map_unary_interleaved(y, x, n, [](auto v) { return vtanh(v); });
}
template <class T> void tanh_backward(T* dx, const T* dy, const T* y, int64_t n) {
  map_binary(dx, dy, y, n, [](auto g, auto t) { return g * (T(1) - t * t); });
}

// GELU: the formulas are in simd.h, shared with the GEMM epilogue.
template <class T> void gelu_forward(T* y, const T* x, int64_t n, GeluApproximation approx) {
  if (approx == GeluApproximation::tanh) {
    auto exact = [](auto v) { return vgelu_tanh(v); };
    if constexpr (kHasSigmoidTable && std::is_same_v<T, float>)
      map_unary_two_forms(y, x, n, kGeluTanhTableBound, [](auto v) { return vgelu_tanh_table(v); }, exact);
    else map_unary_interleaved(y, x, n, exact);
  } else {
    auto exact = [](auto v) { return vgelu(v); };
    if constexpr (kHasGeluTable && std::is_same_v<T, float>)
      map_unary_two_forms(y, x, n, kGeluTableBound, [](auto v) { return vgelu_table(v); }, exact);
    else map_unary_interleaved(y, x, n, exact);
  }
}
template <class T> void gelu_backward(T* dx, const T* dy, const T* x, int64_t n, GeluApproximation approx) {
  if (approx == GeluApproximation::tanh)
    map_binary(dx, dy, x, n, [](auto g, auto v) { return g * vgelu_tanh_derivative(v); });
  else
    map_binary(dx, dy, x, n, [](auto g, auto v) { return g * vgelu_derivative(v); });
}

// --- softmax along one axis: x, y, dy, dx are (outer, len, inner) --------------

// Rows (inner == 1): the whole softmax axis is contiguous.
template <class T> struct RowSoftmax {
  using V = typename Simd<T>::V;
  static constexpr int64_t L = Simd<T>::lanes;

  // Four maxima (and two sums below) in flight: one running value would make every
  // vector wait for the previous one's latency.
  static T row_max(const T* x, int64_t len) {
    const V lowest = vsplat(-std::numeric_limits<T>::infinity());
    V m0 = lowest, m1 = lowest, m2 = lowest, m3 = lowest;
    int64_t i = aligned_from(x, 0, len);  // a partial first vector: the rest loads whole lines
    if (i > 0) m1 = vmax_shift(m1, vload_partial(x, i, -std::numeric_limits<T>::infinity()));
    for (; i + 4 * L <= len; i += 4 * L) {
      m0 = vmax_shift(m0, vload(x + i));
      m1 = vmax_shift(m1, vload(x + i + L));
      m2 = vmax_shift(m2, vload(x + i + 2 * L));
      m3 = vmax_shift(m3, vload(x + i + 3 * L));
    }
    for (; i + L <= len; i += L) m0 = vmax_shift(m0, vload(x + i));
    if (i < len) m0 = vmax_shift(m0, vload_partial(x + i, len - i, -std::numeric_limits<T>::infinity()));
    return hmax(vmax_shift(vmax_shift(m0, m1), vmax_shift(m2, m3)));
  }
  static T dot(const T* a, const T* b, int64_t len) {
    RunningSum<V> s;
    int64_t i = 0;
    for (; i + L <= len; i += L) s.add(vload(a + i) * vload(b + i));
    if (i < len) s.add(vload_partial(a + i, len - i, T(0)) * vload_partial(b + i, len - i, T(0)));
    return hsum(s.value());
  }
  static T sum(const T* a, int64_t len) {
    RunningSum<V> s;
    int64_t i = 0;
    for (; i + L <= len; i += L) s.add(vload(a + i));
    if (i < len) s.add(vload_partial(a + i, len - i, T(0)));
    return hsum(s.value());
  }
  template <class F> static void apply(T* y, const T* a, const T* b, int64_t len, F f) {
    int64_t i = aligned_from(y, 0, len);  // a partial first vector: the rest stores whole lines
    if (i > 0) vstore_partial(y, f(vload_partial(a, i, T(0)), vload_partial(b, i, T(0))), i);
    for (; i + L <= len; i += L) vstore(y + i, f(vload(a + i), vload(b + i)));
    if (i < len)
      vstore_partial(y + i, f(vload_partial(a + i, len - i, T(0)), vload_partial(b + i, len - i, T(0))), len - i);
  }
};

// A large output (see streams_output) is written once, with streaming stores: the
// exps go to a row of scratch instead of into y, which would read y's lines in first
// (softmax of 4096x4096 0.87x, 4096x1000 0.98x; rows over kScratchRow floats keep the exps in y).
constexpr int64_t kScratchRow = int64_t(1) << 16;

// A row whose softmax (y = src * a, src its exps, a = 1/sum) or log_softmax
// (y = (src - a) - b, src the row of x, a its max, b log(sum): rounding
// x - (max + log(sum)) would cost digits at |x| ~ 1e4) is known but not yet written.
// It streams out during the next row's exp pass, 2L values a step, so the writes to
// memory overlap that arithmetic instead of following each row in a burst that the
// next row's reads then wait behind (4096x4096: softmax 0.86x, log_softmax 0.77x).
// Its exps and the next row's share one row of scratch: each step writes what the next
// row's exps are about to overwrite (write_below), so a 4096-float row, its exps and the
// next row coming in fit the 48 KiB L1 where two rows of exps did not (4096x4096
// softmax ran at 67% of the copy's rate and 2048-long rows at 80%).
template <class T, bool kLog> struct FinishedRow {
  using V = typename Simd<T>::V;
  static constexpr int64_t L = Simd<T>::lanes;
  T* y = nullptr;
  const T* src = nullptr;
  T a = T(0), b = T(0);
  int64_t len = 0, done = 0;  // y + done is vector-aligned, or done == len; [0, done) is written

  V at(int64_t i, int64_t lanes) const {
    const V v = vload_lanes(src + i, lanes);
    return kLog ? (v - a) - b : v * a;
  }
  // the row, its values up to a vector boundary of y written at once (they lie where the
  // next row's first exps go)
  void start(T* y_row, const T* src_row, T a_, T b_, int64_t n) {
    y = y_row, src = src_row, a = a_, b = b_, len = n;
    done = aligned_from(y, 0, n);
    if (done > 0) vstore_partial(y, at(0, done), done);
  }
  // every value that reads src below `limit`: whole vectors (the last may read up to
  // L - 1 values past it, which are still there), and the row's partial last vector
  // once the limit passes the row's end
  void write_below(int64_t limit) {
    if (!y) return;
    const int64_t whole = limit < len - L + 1 ? limit : len - L + 1;  // the whole vectors to write start below
    int64_t i = done;
    for (; i < whole; i += L) vstream(y + i, at(i, L));
    if (i < limit && i < len) {
      vstore_partial(y + i, at(i, len - i), len - i);
      i = len;
    }
    done = i;
  }
  void finish() {
    write_below(len);
    y = nullptr;
  }
};

// Rows [begin, end) of a large output, written with streaming stores (see FinishedRow).
template <class T, bool kLog> void softmax_rows_streamed(T* y, const T* x, int64_t begin, int64_t end, int64_t len) {
  using R = RowSoftmax<T>;
  constexpr int64_t L = Simd<T>::lanes;
  static thread_local std::vector<T> exp_buffer;
  T* exps = kLog ? nullptr : scratch(exp_buffer, size_t(len));  // the finished row's exps, then this row's
  FinishedRow<T, kLog> finished;
  for (int64_t r = begin; r < end; ++r) {
    const T* xr = x + r * len;
    const T m = R::row_max(xr, len);
    const T sum = row_sum_exp(exps, xr, len, m, r + 1 < end ? xr + len : nullptr,
                              [&](int64_t i) { finished.write_below(i + 2 * L); });
    finished.finish();
    if (kLog) finished.start(y + r * len, xr, m, std::log(sum), len);
    else finished.start(y + r * len, exps, T(1) / sum, T(0), len);
  }
  finished.finish();
  stream_fence();
}

template <class T> void softmax_rows(T* y, const T* x, int64_t rows, int64_t len, bool log) {
  using R = RowSoftmax<T>;
  using V = typename Simd<T>::V;
  if (streams_output(y, rows * len, x) && len <= kScratchRow) {  // a run of rows per thread
    const int64_t threads = thread_count() < 1 ? 1 : thread_count();
    parallel_chunks(rows, ceil_div(rows, threads), 4 * len, [&](int64_t, int64_t begin, int64_t end) {
      if (log) softmax_rows_streamed<T, true>(y, x, begin, end, len);
      else softmax_rows_streamed<T, false>(y, x, begin, end, len);
    });
    return;
  }
  parallel_for(rows, 4 * len, [&](int64_t r) {
    const T* xr = x + r * len;
    T* yr = y + r * len;
    const T* next = r + 1 < rows ? xr + len : nullptr;
    const T m = R::row_max(xr, len);
    if (log) {  // (x - max) - log(sum), as FinishedRow says
      const T log_sum = std::log(row_sum_exp<T>(nullptr, xr, len, m, next));
      R::apply(yr, xr, xr, len, [m, log_sum](auto v, auto) { return (v - m) - log_sum; });
    } else {
      const T inv = T(1) / row_sum_exp(yr, xr, len, m, next);
      R::apply(yr, yr, yr, len, [inv](auto v, auto) { return v * inv; });
    }
  });
}

template <class T> void softmax_rows_backward(T* dx, const T* dy, const T* y, int64_t rows, int64_t len, bool log) {
  using R = RowSoftmax<T>;
  parallel_for(rows, 4 * len, [&](int64_t r) {
    const T* dyr = dy + r * len;
    const T* yr = y + r * len;
    T* dxr = dx + r * len;
    if (log) {  // dx = dy - exp(y) * sum(dy)
      const T s = R::sum(dyr, len);
      R::apply(dxr, dyr, yr, len, [s](auto g, auto v) { return g - vexp_flushed(v) * s; });
    } else {    // dx = y * (dy - sum(dy * y))
      const T s = R::dot(dyr, yr, len);
      R::apply(dxr, dyr, yr, len, [s](auto g, auto v) { return v * (g - s); });
    }
  });
}

// Columns (inner > 1): vectors run along `inner`, the softmax along the
// strided `len` axis; one task per (outer, block of inner).
template <class T, class F>
void for_column_blocks(int64_t outer, int64_t len, int64_t inner, F f) {
  constexpr int64_t L = Simd<T>::lanes;
  const int64_t blocks = ceil_div(inner, L);
  parallel_for(outer * blocks, 4 * len * L, [&](int64_t task) {
    const int64_t o = task / blocks;
    const int64_t i0 = (task % blocks) * L;
    const int64_t w = inner - i0 < L ? inner - i0 : L;
    f(o * len * inner + i0, w);
  });
}

template <class T> void softmax_columns(T* y, const T* x, int64_t outer, int64_t len, int64_t inner, bool log) {
  using V = typename Simd<T>::V;
  constexpr int64_t L = Simd<T>::lanes;
  const T ninf = -std::numeric_limits<T>::infinity();
  for_column_blocks<T>(outer, len, inner, [&](int64_t base, int64_t w) {
    auto load = [&](const T* p) { return w == L ? vload(p) : vload_partial(p, w, ninf); };
    auto store = [&](T* p, V v) { if (w == L) vstore(p, v); else vstore_partial(p, v, w); };
    V m = vsplat(ninf);
    for (int64_t l = 0; l < len; ++l) m = vmax_shift(m, load(x + base + l * inner));
    RunningSum<V> sum;
    for (int64_t l = 0; l < len; ++l) {
      V e = vexp_nonpositive(load(x + base + l * inner) - m);
      if (!log) store(y + base + l * inner, e);
      sum.add(e);
    }
    const V s = sum.value();
    if (log) {
      V log_sum = vlog(s);
      for (int64_t l = 0; l < len; ++l) store(y + base + l * inner, (load(x + base + l * inner) - m) - log_sum);
    } else {
      V inv = T(1) / s;
      for (int64_t l = 0; l < len; ++l) store(y + base + l * inner, load(y + base + l * inner) * inv);
    }
  });
}

template <class T>
void softmax_columns_backward(T* dx, const T* dy, const T* y, int64_t outer, int64_t len, int64_t inner, bool log) {
  using V = typename Simd<T>::V;
  constexpr int64_t L = Simd<T>::lanes;
  for_column_blocks<T>(outer, len, inner, [&](int64_t base, int64_t w) {
    auto load = [&](const T* p) { return w == L ? vload(p) : vload_partial(p, w, T(0)); };
    auto store = [&](T* p, V v) { if (w == L) vstore(p, v); else vstore_partial(p, v, w); };
    RunningSum<V> sum;
    for (int64_t l = 0; l < len; ++l) {
      const int64_t k = base + l * inner;
      sum.add(log ? load(dy + k) : load(dy + k) * load(y + k));
    }
    const V s = sum.value();
    for (int64_t l = 0; l < len; ++l) {
      const int64_t k = base + l * inner;
      store(dx + k, log ? load(dy + k) - vexp_flushed(load(y + k)) * s : load(y + k) * (load(dy + k) - s));
    }
  });
}

template <class T> void softmax_any(T* y, const T* x, int64_t outer, int64_t len, int64_t inner, bool log) {
  if (len == 0) return;
  if (inner == 1) softmax_rows(y, x, outer, len, log);
  else softmax_columns(y, x, outer, len, inner, log);
}
template <class T>
void softmax_any_backward(T* dx, const T* dy, const T* y, int64_t outer, int64_t len, int64_t inner, bool log) {
  if (len == 0) return;
  if (inner == 1) softmax_rows_backward(dx, dy, y, outer, len, log);
  else softmax_columns_backward(dx, dy, y, outer, len, inner, log);
}

template <class T> void softmax_forward(T* y, const T* x, int64_t o, int64_t l, int64_t i) { softmax_any(y, x, o, l, i, false); }
template <class T> void log_softmax_forward(T* y, const T* x, int64_t o, int64_t l, int64_t i) { softmax_any(y, x, o, l, i, true); }
template <class T> void softmax_backward(T* dx, const T* dy, const T* y, int64_t o, int64_t l, int64_t i) {
  softmax_any_backward(dx, dy, y, o, l, i, false);
}
template <class T> void log_softmax_backward(T* dx, const T* dy, const T* y, int64_t o, int64_t l, int64_t i) {
  softmax_any_backward(dx, dy, y, o, l, i, true);
}

template <class T> void fill(ActivationKernels<T>& k) {
  k.relu_forward = relu_forward<T>;
  k.relu_backward = relu_backward<T>;
  k.leaky_relu_forward = leaky_relu_forward<T>;
  k.leaky_relu_backward = leaky_relu_backward<T>;
  k.sigmoid_forward = sigmoid_forward<T>;
  k.sigmoid_backward = sigmoid_backward<T>;
  k.tanh_forward = tanh_forward<T>;
  k.tanh_backward = tanh_backward<T>;
  k.gelu_forward = gelu_forward<T>;
  k.gelu_backward = gelu_backward<T>;
  k.softmax_forward = softmax_forward<T>;
  k.softmax_backward = softmax_backward<T>;
  k.log_softmax_forward = log_softmax_forward<T>;
  k.log_softmax_backward = log_softmax_backward<T>;
}

}  // namespace

void register_activations(KernelSet& k) {
  fill(k.f32.act);
  fill(k.f64.act);
}

}  // namespace SJ_ISA
}  // namespace shenjing

// Loss kernels (see shenjing/losses.h), PyTorch's definitions. Sums are
// taken per fixed chunk (or per row) and combined in order, in double, so the
// value does not depend on the thread count.
#include "shenjing/losses.h"

#include <cmath>
#include <limits>
#include <vector>

#include "shenjing/dispatch.h"
#include "shenjing/elementwise.h"

namespace shenjing {
namespace SJ_ISA {
namespace {

// sign(d) with sign(0) = 0 and NaN kept
template <class V> static inline V vsign(V d) {
  using T = decltype(hsum(d));
  return d > T(0) ? vsplat(T(1)) : (d < T(0) ? vsplat(T(-1)) : d * T(0));
}

// --- pointwise losses: l(x, t) and dl/dx ------------------------------------------

template <PointwiseLoss K, class T, class V> static inline V loss_value(V x, V t, T beta) {
  if constexpr (K == PointwiseLoss::mse) {
    V d = x - t;
    return d * d;
  } else if constexpr (K == PointwiseLoss::l1) {
    return vabs(x - t);
  } else if constexpr (K == PointwiseLoss::smooth_l1) {
    V d = vabs(x - t);
    return d < beta ? T(0.5) * d * d / beta : d - T(0.5) * beta;
  } else if constexpr (K == PointwiseLoss::binary_cross_entropy) {
    // PyTorch: (t - 1) max(log1p(-x), -100) - t max(log(x), -100)
    V log_x = vlog(x);
    V log_1mx = vlog1p(-x);
    log_x = vclamp_below(log_x, T(-100));
    log_1mx = vclamp_below(log_1mx, T(-100));
    return (t - T(1)) * log_1mx - t * log_x;
  } else if constexpr (K == PointwiseLoss::binary_cross_entropy_with_logits) {
    // max(x, 0) - x t + log1p(exp(-|x|)): finite for every finite logit. exp is 0 past
    // |x| = 87.33, where it and log1p of it would be subnormal (each instruction making or
    // reading one takes a microcode assist: logits of 100 N(0, 1) ran 5.8x slower than of
    // N(0, 1)); log1p(exp(-|x|)) < 1.2e-38 there.
    V pos = x > T(0) ? x : vsplat(T(0));
    return pos - x * t + vlog1p(vexp_nonpositive(-vabs(x)));
  } else if constexpr (K == PointwiseLoss::kl_div) {
    // xlogy(t, t) - t x, with 0 log 0 = 0
    V tlogt = t * vlog(t);
    tlogt = t == T(0) ? vsplat(T(0)) : tlogt;
    return tlogt - t * x;
  } else {  // kl_div_log_target
    return vexp(t) * (t - x);
  }
}

template <PointwiseLoss K, class T, class V> static inline V loss_grad(V x, V t, T beta) {
  if constexpr (K == PointwiseLoss::mse) {
    return T(2) * (x - t);
  } else if constexpr (K == PointwiseLoss::l1) {
    return vsign(x - t);
  } else if constexpr (K == PointwiseLoss::smooth_l1) {
    V d = x - t;
    return vabs(d) < beta ? d / beta : vsign(d);
  } else if constexpr (K == PointwiseLoss::binary_cross_entropy) {
    // PyTorch: (x - t) / max((1 - x) x, 1e-12)
    V den = (T(1) - x) * x;
    den = vclamp_below(den, T(1e-12));
    return (x - t) / den;
  } else if constexpr (K == PointwiseLoss::binary_cross_entropy_with_logits) {
    return vsigmoid(x) - t;
  } else if constexpr (K == PointwiseLoss::kl_div) {
    return -t;
  } else {
    return -vexp(t);
  }
}

double reduction_divisor(Reduction r, int64_t n, int64_t batch) {
  if (r == Reduction::mean) return double(n);
  if (r == Reduction::batchmean) return double(batch);
  return 1.0;
}

template <PointwiseLoss K, class T>
void pointwise_forward(T* out, double* result, const T* x, const T* t, int64_t n, Reduction reduction,
                       T beta, int64_t batch) {
  using V = typename Simd<T>::V;
  constexpr int64_t L = Simd<T>::lanes;
  if (reduction == Reduction::none) {
    map_binary(out, x, t, n, [beta](auto a, auto b) { return loss_value<K, T>(a, b, beta); });
    return;
  }
  std::vector<double> partial(ceil_div(n, kElementChunk) + 1, 0.0);
  parallel_chunks(n, kElementChunk, 8, [&](int64_t c, int64_t begin, int64_t end) {
    RunningSum<V> s;
    int64_t i = begin;
    for (; i + L <= end; i += L) s.add(loss_value<K, T>(vload(x + i), vload(t + i), beta));
    if (i < end) {
      // lanes past the end must add nothing: select them away (l(0, 0) may be NaN, as for kl_div of log 0)
      V v = loss_value<K, T>(vload_partial(x + i, end - i, T(0)), vload_partial(t + i, end - i, T(0)), beta);
      for (int64_t k = 0; k < end - i; ++k) partial[c] += double(lane(v, k));
    }
    partial[c] += double(hsum(s.value()));
  });
  double total = 0.0;
  for (double p : partial) total += p;
  *result = total / reduction_divisor(reduction, n, batch);
}

template <PointwiseLoss K, class T>
void pointwise_backward(T* dx, const T* dout, const T* x, const T* t, int64_t n, Reduction reduction,
                        T beta, int64_t batch) {
  using V = typename Simd<T>::V;
  constexpr int64_t L = Simd<T>::lanes;
  if (reduction == Reduction::none) {
    parallel_chunks(n, kElementChunk, 4, [&](int64_t, int64_t begin, int64_t end) {
      int64_t i = begin;
      for (; i + L <= end; i += L)
        vstore(dx + i, loss_grad<K, T>(vload(x + i), vload(t + i), beta) * vload(dout + i));
      if (i < end) {
        const int64_t m = end - i;
        V g = loss_grad<K, T>(vload_partial(x + i, m, T(0)), vload_partial(t + i, m, T(0)), beta);
        vstore_partial(dx + i, g * vload_partial(dout + i, m, T(0)), m);
      }
    });
    return;
  }
  const T scale = T(double(*dout) / reduction_divisor(reduction, n, batch));
  map_binary(dx, x, t, n, [beta, scale](auto a, auto b) { return loss_grad<K, T>(a, b, beta) * scale; });
}

// binary_cross_entropy takes probabilities: -1, or the first index outside
// [0, 1] (NaN passes and propagates). Each chunk is flagged by a loop without an exit,
// which vectorises, on every thread, and only a flagged chunk is searched: the search
// alone, one scalar pass, had taken more than half of BCE's time (4M floats: 6.1 ms
// forward, 4.4 ms backward, where BCE with logits took 2.4 and 0.9).
template <class T> int64_t first_outside_unit_interval(const T* x, int64_t n) {
  std::vector<char> outside(size_t(ceil_div(n, kElementChunk)), 0);
  parallel_chunks(n, kElementChunk, 1, [&](int64_t c, int64_t begin, int64_t end) {
    int any = 0;
    for (int64_t i = begin; i < end; ++i) any |= int(x[i] < T(0)) | int(x[i] > T(1));
    outside[size_t(c)] = char(any != 0);
  });
  for (size_t c = 0; c < outside.size(); ++c) {
    if (!outside[c]) continue;
    for (int64_t i = int64_t(c) * kElementChunk; i < n; ++i)
      if (x[i] < T(0) || x[i] > T(1)) return i;
  }
  return -1;
}

template <class T>
int64_t pointwise_loss_forward(T* out, double* result, const T* x, const T* t, int64_t n, PointwiseLoss kind,
                               Reduction reduction, T param, int64_t batch) {
  switch (kind) {
#define SJ_CASE(K) case PointwiseLoss::K: pointwise_forward<PointwiseLoss::K, T>(out, result, x, t, n, reduction, param, batch); break;
    SJ_CASE(mse) SJ_CASE(l1) SJ_CASE(smooth_l1) SJ_CASE(binary_cross_entropy_with_logits) SJ_CASE(kl_div) SJ_CASE(kl_div_log_target)
    case PointwiseLoss::binary_cross_entropy: {
      const int64_t bad = first_outside_unit_interval(x, n);
      if (bad >= 0) return bad;
      pointwise_forward<PointwiseLoss::binary_cross_entropy, T>(out, result, x, t, n, reduction, param, batch);
      break;
    }
#undef SJ_CASE
  }
  return -1;
}
template <class T>
int64_t pointwise_loss_backward(T* dx, const T* dout, const T* x, const T* t, int64_t n, PointwiseLoss kind,
                                Reduction reduction, T param, int64_t batch) {
  switch (kind) {
#define SJ_CASE(K) case PointwiseLoss::K: pointwise_backward<PointwiseLoss::K, T>(dx, dout, x, t, n, reduction, param, batch); break;
    SJ_CASE(mse) SJ_CASE(l1) SJ_CASE(smooth_l1) SJ_CASE(binary_cross_entropy_with_logits) SJ_CASE(kl_div) SJ_CASE(kl_div_log_target)
    case PointwiseLoss::binary_cross_entropy: {
      const int64_t bad = first_outside_unit_interval(x, n);
      if (bad >= 0) return bad;
      pointwise_backward<PointwiseLoss::binary_cross_entropy, T>(dx, dout, x, t, n, reduction, param, batch);
      break;
    }
#undef SJ_CASE
  }
  return -1;
}

// --- classification losses: logits (N, C, inner), target (N, inner) --------------

// -1, or the first flat index of a target outside [0, C) that is not ignored
int64_t first_bad_target(const int64_t* target, int64_t count, int64_t C, int64_t ignore_index) {
  for (int64_t i = 0; i < count; ++i) {
    const int64_t y = target[i];
    if (y != ignore_index && (y < 0 || y >= C)) return i;
  }
  return -1;
}

int64_t count_kept(const int64_t* target, int64_t count, int64_t ignore_index) {
  int64_t kept = 0;
  for (int64_t i = 0; i < count; ++i) kept += target[i] != ignore_index;
  return kept;
}

// Per-sample losses are written to `out` (reduction none) or to a scratch
// array, then summed in order: the result does not depend on the threads.
template <class T>
void reduce_samples(T* out, double* result, const std::vector<double>& sample_loss, Reduction reduction, int64_t kept) {
  if (reduction == Reduction::none) {
    for (size_t i = 0; i < sample_loss.size(); ++i) out[i] = T(sample_loss[i]);
    return;
  }
  double total = 0.0;
  for (double v : sample_loss) total += v;
  *result = reduction == Reduction::mean ? total / double(kept) : total;
}

// One row of C logits at stride `stride`: its max and the sum of x (one pass), then
// the sum of exp(x - max) (returned; the exps also stored in `e` when given, stride 1
// only), prefetching the row `next` (stride 1, or null) meanwhile as softmax does.
// log-sum-exp is max + log(that sum); it is never formed in T, whose rounding
// near |max| ~ 8 (2e-7) would swamp a confident sample's small loss.
template <class T>
T row_exp_sum(const T* x, int64_t C, int64_t stride, T* max_out, T* sum, T* e = nullptr, const T* next = nullptr) {
  using R = Simd<T>;
  if (stride == 1) {
    using V = typename R::V;
    constexpr int64_t L = R::lanes;
    const T ninf = -std::numeric_limits<T>::infinity();
    V m = vsplat(ninf);
    RunningSum<V> s;
    int64_t c = 0;
    for (; c + L <= C; c += L) { V v = vload(x + c); m = vmax_shift(m, v); s.add(v); }
    if (c < C) { m = vmax_shift(m, vload_partial(x + c, C - c, ninf)); s.add(vload_partial(x + c, C - c, T(0))); }
    *max_out = hmax(m);
    *sum = hsum(s.value());
    return row_sum_exp(e, x, C, *max_out, next);
  }
  T mx = -std::numeric_limits<T>::infinity();
  RunningSum<T> s, total;
  for (int64_t c = 0; c < C; ++c) { mx = vmax_shift(mx, x[c * stride]); s.add(x[c * stride]); }
  for (int64_t c = 0; c < C; ++c) total.add(std::exp(x[c * stride] - mx));
  *max_out = mx;
  *sum = s.value();
  return total.value();
}

// One sample's loss, (1-eps) (lse - x_y) + eps/C sum_c (lse - x_c), from the row's max,
// sum of exps and sum: lse - x_y as (max - x_y) + log(sum of exps), in double.
template <class T> double sample_cross_entropy(T mx, T exp_sum, T sum, T x_y, int64_t C, T eps) {
  const double log_sum = std::log(double(exp_sum));
  double loss = (1.0 - double(eps)) * ((double(mx) - double(x_y)) + log_sum);
  if (eps != T(0)) loss += double(eps) / double(C) * (double(C) * (double(mx) + log_sum) - double(sum));
  return loss;
}

// loss = (1-eps) (lse - x_y) + eps/C sum_c (lse - x_c)
template <class T>
int64_t cross_entropy_forward(T* out, double* result, const T* logits, const int64_t* target, int64_t N,
                              int64_t C, int64_t inner, Reduction reduction, int64_t ignore_index, T eps) {
  const int64_t samples = N * inner;
  const int64_t bad = first_bad_target(target, samples, C, ignore_index);
  if (bad >= 0) return bad;
  std::vector<double> sample_loss(samples, 0.0);
  parallel_for(samples, 4 * C, [&](int64_t s) {
    const int64_t y = target[s];
    if (y == ignore_index) return;
    const int64_t n = s / inner, i = s % inner;
    const T* x = logits + n * C * inner + i;
    T mx, sum;
    const T* next = inner == 1 && s + 1 < samples ? x + C : nullptr;
    const T exp_sum = row_exp_sum(x, C, inner, &mx, &sum, static_cast<T*>(nullptr), next);
    sample_loss[s] = sample_cross_entropy(mx, exp_sum, sum, x[y * inner], C, eps);
  });
  reduce_samples(out, result, sample_loss, reduction, count_kept(target, samples, ignore_index));
  return -1;
}

// row[c] = f(row[c]) for one contiguous row; the row `next` (or null) is asked for with
// write intent meanwhile, so its lines are in before the next row's exps are stored there
template <class T, class F> void map_row(T* row, int64_t C, F f, T* next = nullptr) {
  constexpr int64_t L = Simd<T>::lanes;
  int64_t c = 0;
  for (; c + L <= C; c += L) {
    if (next) __builtin_prefetch(next + c, 1);
    vstore(row + c, f(vload(row + c)));
  }
  if (c < C) vstore_partial(row + c, f(vload_partial(row + c, C - c, T(0))), C - c);
}

// The exps e whose softmax term e inv scale (factor = inv scale) would be subnormal are those
// below this: the gradient takes them as 0, off from the exact term by less than the least
// normal, since each instruction that makes a subnormal takes a microcode assist (logits of
// 40 N(0, 1), 4096x1000, forward and backward: 2.7x as long; see vexp_flushed)
template <class T> T subnormal_below(T factor) {
  return std::numeric_limits<T>::min() / std::abs(factor);
}

// dx_c = scale (softmax_c - (1-eps) [c == y] - eps/C). When `loss` is not
// null (reduction mean or sum), the loss is computed in the same pass: a
// training step's forward and backward in one call.
template <class T>
int64_t cross_entropy_backward(T* dx, double* loss, const T* dout, const T* logits, const int64_t* target, int64_t N,
                               int64_t C, int64_t inner, Reduction reduction, int64_t ignore_index, T eps) {
  const int64_t samples = N * inner;
  const int64_t bad = first_bad_target(target, samples, C, ignore_index);
  if (bad >= 0) return bad;
  const int64_t kept = count_kept(target, samples, ignore_index);
  const T shared_scale = reduction == Reduction::none ? T(0)
                         : reduction == Reduction::mean ? T(double(*dout) / double(kept)) : *dout;
  const T off = eps / T(C);
  std::vector<double> sample_loss(loss ? samples : 0, 0.0);
  // a large dx is written once, with streaming stores, from exps kept in a scratch row
  // (writing the exps into dx first read its lines in: 4096x4096 fwd+bwd 0.96x)
  const bool stream = inner == 1 && streams_output(dx, samples * C, logits) && C <= (int64_t(1) << 16);
  parallel_for(samples, 6 * C, [&](int64_t s) {
    const int64_t y = target[s];
    const int64_t n = s / inner, i = s % inner;
    const T* x = logits + n * C * inner + i;
    T* d = dx + n * C * inner + i;
    if (y == ignore_index) {
      for (int64_t c = 0; c < C; ++c) d[c * inner] = T(0);
      return;
    }
    const T scale = reduction == Reduction::none ? dout[s] : shared_scale;
    const T* next = inner == 1 && s + 1 < samples ? x + C : nullptr;
    T mx, sum, total;
    if (stream) {
      using V = typename Simd<T>::V;
      static thread_local std::vector<T> exp_buffer;
      T* e = scratch(exp_buffer, size_t(C));
      total = row_exp_sum(x, C, 1, &mx, &sum, e, next);
      const T inv = T(1) / total, hit = (T(1) - eps) * scale, tiny = subnormal_below(inv * scale);
      store_row(d, C, true, [&](int64_t c, int64_t lanes) -> V {
        const V ec = vload_lanes(e + c, lanes);
        V v = ((ec < tiny ? vsplat(T(0)) : ec) * inv - off) * scale;
        if (y >= c && y < c + lanes) v = vsub_lane(v, y - c, hit);  // the target's own term
        return v;
      });
      stream_fence();
    } else if (inner == 1) {
      total = row_exp_sum(x, C, 1, &mx, &sum, d, next);
      const T inv = T(1) / total, tiny = subnormal_below(inv * scale);
      map_row(d, C, [=](auto e) { return ((e < tiny ? vsplat(T(0)) : e) * inv - off) * scale; },
              next ? d + C : nullptr);
    } else {
      total = row_exp_sum(x, C, inner, &mx, &sum);
      const T inv = T(1) / total;  // exp(x - max) / sum, not exp(x - lse): see row_exp_sum
      for (int64_t c = 0; c < C; ++c) d[c * inner] = (std::exp(x[c * inner] - mx) * inv - off) * scale;
    }
    if (!stream) d[y * inner] -= (T(1) - eps) * scale;
    if (loss) sample_loss[s] = sample_cross_entropy(mx, total, sum, x[y * inner], C, eps);
  });
  if (loss) reduce_samples<T>(nullptr, loss, sample_loss, reduction, kept);
  return -1;
}

// loss = -logp_y
template <class T>
int64_t nll_loss_forward(T* out, double* result, const T* logp, const int64_t* target, int64_t N, int64_t C,
                         int64_t inner, Reduction reduction, int64_t ignore_index) {
  const int64_t samples = N * inner;
  const int64_t bad = first_bad_target(target, samples, C, ignore_index);
  if (bad >= 0) return bad;
  std::vector<double> sample_loss(samples, 0.0);
  for (int64_t s = 0; s < samples; ++s) {
    const int64_t y = target[s];
    if (y != ignore_index) sample_loss[s] = -double(logp[(s / inner) * C * inner + y * inner + s % inner]);
  }
  reduce_samples(out, result, sample_loss, reduction, count_kept(target, samples, ignore_index));
  return -1;
}

// dx = -scale at the target, 0 elsewhere
template <class T>
int64_t nll_loss_backward(T* dx, const T* dout, const int64_t* target, int64_t N, int64_t C, int64_t inner,
                          Reduction reduction, int64_t ignore_index) {
  const int64_t samples = N * inner;
  const int64_t bad = first_bad_target(target, samples, C, ignore_index);
  if (bad >= 0) return bad;
  const double kept = double(count_kept(target, samples, ignore_index));
  const T shared_scale = reduction == Reduction::none ? T(0)
                         : reduction == Reduction::mean ? T(double(*dout) / kept) : *dout;
  map_unary(dx, dx, samples * C, [](auto) { return vsplat(T(0)); });
  for (int64_t s = 0; s < samples; ++s) {
    const int64_t y = target[s];
    if (y == ignore_index) continue;
    const T scale = reduction == Reduction::none ? dout[s] : shared_scale;
    dx[(s / inner) * C * inner + y * inner + s % inner] = -scale;
  }
  return -1;
}

template <class T> void fill(LossKernels<T>& k) {
  k.pointwise_loss_forward = pointwise_loss_forward<T>;
  k.pointwise_loss_backward = pointwise_loss_backward<T>;
  k.cross_entropy_forward = cross_entropy_forward<T>;
  k.cross_entropy_backward = cross_entropy_backward<T>;
  k.nll_loss_forward = nll_loss_forward<T>;
  k.nll_loss_backward = nll_loss_backward<T>;
}

}  // namespace

void register_losses(KernelSet& k) {
  fill(k.f32.loss);
  fill(k.f64.loss);
}

}  // namespace SJ_ISA
}  // namespace shenjing

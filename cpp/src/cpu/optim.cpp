// Optimizer steps (see shenjing/optim.h): the update of torch.optim's
// single-tensor SGD and Adam/AdamW, in the same order of float operations,
// fused into one pass per tensor. A whole parameter list is one call: it is
// cut into fixed chunks that the threads share, so many small tensors and
// one large tensor both use every core.
#include "shenjing/optim.h"

#include <cmath>
#include <vector>

#include "shenjing/dispatch.h"
#include "shenjing/elementwise.h"

namespace shenjing {
namespace SJ_ISA {
namespace {

constexpr int64_t kStepChunk = 16384;

struct Piece {
  int64_t tensor, begin, end;
};

// Pieces of at most kStepChunk elements, smaller when the whole list is small (about
// four per thread, in whole cache lines) so that a net of a few small tensors is shared
// evenly: a step costs ~2.3 cycles an element, so 10k parameters are worth two threads.
template <class Tensor> std::vector<Piece> cut_into_pieces(const Tensor* tensors, int64_t count, int64_t* total) {
  *total = 0;
  for (int64_t t = 0; t < count; ++t) *total += tensors[t].n;
  constexpr int64_t kLine = 16;
  int64_t chunk = ceil_div(ceil_div(*total, 4 * int64_t(thread_count())), kLine) * kLine;
  chunk = chunk < 4096 ? 4096 : (chunk > kStepChunk ? kStepChunk : chunk);
  std::vector<Piece> pieces;
  for (int64_t t = 0; t < count; ++t)
    for (int64_t b = 0; b < tensors[t].n; b += chunk)
      pieces.push_back({t, b, b + chunk < tensors[t].n ? b + chunk : tensors[t].n});
  return pieces;
}

// f(piece) over all pieces, in parallel when the whole list is large enough; taken one
// at a time, so that a thread that starts late takes fewer
template <class F> void for_pieces(const std::vector<Piece>& pieces, int64_t total, F f) {
  run_indices(int64_t(pieces.size()), total * 8 >= kParallelMinWork, thread_count(), Schedule::one_at_a_time,
              [&](int64_t i) { f(pieces[size_t(i)]); });
}

// Apply f(offset) on vectors of one piece, then on the last partial vector.
// f receives the offset and the number of valid lanes.
template <class T, class F> inline void for_vectors(int64_t begin, int64_t end, F f) {
  constexpr int64_t L = Simd<T>::lanes;
  int64_t i = begin;
  for (; i + L <= end; i += L) f(i, L);
  if (i < end) f(i, end - i);
}

template <class T> struct Lanes {
  static constexpr int64_t L = Simd<T>::lanes;
  int64_t m;
  typename Simd<T>::V load(const T* p) const { return m == L ? vload(p) : vload_partial(p, m, T(0)); }
  void store(T* p, typename Simd<T>::V v) const { if (m == L) vstore(p, v); else vstore_partial(p, v, m); }
};

// g = grad (negated if maximize) + weight_decay * param
// buf = g on the first step, else momentum * buf + (1 - dampening) * g
// g = g + momentum * buf if nesterov, else buf
// param = param - lr * g
template <class T> void sgd_step(const SgdTensor<T>* tensors, int64_t count, const SgdHyper& h) {
  int64_t total = 0;
  const std::vector<Piece> pieces = cut_into_pieces(tensors, count, &total);
  const T lr = T(h.lr), momentum = T(h.momentum), keep = T(1.0 - h.dampening), wd = T(h.weight_decay);
  for_pieces(pieces, total, [&](const Piece& p) {
    const SgdTensor<T>& t = tensors[p.tensor];
    for_vectors<T>(p.begin, p.end, [&](int64_t i, int64_t m) {
      Lanes<T> io{m};
      auto param = io.load(t.param + i);
      auto g = io.load(t.grad + i);
      if (h.maximize) g = -g;
      if (h.weight_decay != 0) g = g + wd * param;
      if (t.momentum_buffer) {
        auto buf = t.first_step ? g : io.load(t.momentum_buffer + i) * momentum + keep * g;
        io.store(t.momentum_buffer + i, buf);
        g = h.nesterov ? g + momentum * buf : buf;
      }
      io.store(t.param + i, param + (-lr) * g);
    });
  });
}

// g = grad (negated if maximize); AdamW: param *= 1 - lr wd; Adam: g += wd param
// m = lerp(m, g, 1 - beta1);  v = beta2 v + (1 - beta2) g^2;  vmax = max(vmax, v) if amsgrad
// param += -(lr / (1 - beta1^t)) * m / (sqrt(v) / sqrt(1 - beta2^t) + eps)  (the division by sqrt(1 - beta2^t) as a product)
template <class T> void adam_step(const AdamTensor<T>* tensors, int64_t count, const AdamHyper& h) {
  int64_t total = 0;
  const std::vector<Piece> pieces = cut_into_pieces(tensors, count, &total);
  const T w = T(1.0 - h.beta1), beta2 = T(h.beta2), one_minus_beta2 = T(1.0 - h.beta2), eps = T(h.eps);
  const T wd = T(h.weight_decay), decay = T(1.0 - h.lr * h.weight_decay);
  for_pieces(pieces, total, [&](const Piece& p) {
    const AdamTensor<T>& t = tensors[p.tensor];
    const double step = double(t.step);
    const T step_size = T(h.lr / (1.0 - std::pow(h.beta1, step)));
    // sqrt(v) / sqrt(1 - beta2^t) as a product: one division fewer per vector (divisions
    // and the square root bound a cached step: 2.3 cycles an element), within an ulp of torch
    const T inv_bc2_sqrt = T(1.0 / std::sqrt(1.0 - std::pow(h.beta2, step)));
    for_vectors<T>(p.begin, p.end, [&](int64_t i, int64_t m) {
      Lanes<T> io{m};
      auto param = io.load(t.param + i);
      auto g = io.load(t.grad + i);
      if (h.maximize) g = -g;
      if (h.weight_decay != 0) {
        if (h.decoupled_weight_decay) param = param * decay;
        else g = g + wd * param;
      }
      auto ea = io.load(t.exp_avg + i);
      // torch.lerp: start + w (end - start) for w < 0.5, else end - (end - start)(1 - w)
      ea = w < T(0.5) ? ea + w * (g - ea) : g - (g - ea) * (T(1) - w);
      auto eas = io.load(t.exp_avg_sq + i) * beta2 + one_minus_beta2 * (g * g);
      io.store(t.exp_avg + i, ea);
      io.store(t.exp_avg_sq + i, eas);
      if (t.max_exp_avg_sq) {
        eas = vmax_nan(io.load(t.max_exp_avg_sq + i), eas);
        io.store(t.max_exp_avg_sq + i, eas);
      }
      auto denom = vsqrt(eas) * inv_bc2_sqrt + eps;
      io.store(t.param + i, param + (-step_size) * (ea / denom));
    });
  });
}

template <class T> void fill(OptimKernels<T>& k) {
  k.sgd_step = sgd_step<T>;
  k.adam_step = adam_step<T>;
}

}  // namespace

void register_optim(KernelSet& k) {
  fill(k.f32.optim);
  fill(k.f64.optim);
}

}  // namespace SJ_ISA
}  // namespace shenjing

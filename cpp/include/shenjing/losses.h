// Loss kernels, PyTorch's definitions. A forward writes either one loss per
// element (reduction none) or the reduced value into *result; a backward
// writes the gradient with respect to the input (overwrites dx), scaled by
// dout (one per element for reduction none, else the scalar *dout).
#pragma once
#include <cstdint>

namespace shenjing {

enum class Reduction : int { none = 0, mean = 1, sum = 2, batchmean = 3 };

// Losses that are a function of one (input, target) pair per element.
enum class PointwiseLoss : int {
  mse = 0,                 // (x - t)^2
  l1 = 1,                  // |x - t|
  smooth_l1 = 2,           // 0.5 (x-t)^2 / beta if |x-t| < beta else |x-t| - beta/2
  binary_cross_entropy = 3,               // -(t log x + (1-t) log(1-x)), logs clamped at -100
  binary_cross_entropy_with_logits = 4,   // max(x,0) - x t + log1p(exp(-|x|))
  kl_div = 5,              // t (log t - x), 0 where t = 0
  kl_div_log_target = 6,   // exp(t) (t - x)
};

template <class T> struct LossKernels {
  // x, t, out, dout, dx: (n,). `param` is smooth_l1's beta. `batch` divides
  // the sum for Reduction::batchmean. Return -1, or for binary_cross_entropy
  // the index of the first input outside [0, 1] (nothing is written then).
  int64_t (*pointwise_loss_forward)(T* out, double* result, const T* x, const T* t, int64_t n,
                                    PointwiseLoss kind, Reduction reduction, T param, int64_t batch);
  int64_t (*pointwise_loss_backward)(T* dx, const T* dout, const T* x, const T* t, int64_t n,
                                     PointwiseLoss kind, Reduction reduction, T param, int64_t batch);
  // logits, dx: (N, C, inner); target, out, dout: (N, inner). Returns -1, or
  // the flat index of the first target outside [0, C) that is not ignore_index
  // (nothing is written then).
  int64_t (*cross_entropy_forward)(T* out, double* result, const T* logits, const int64_t* target,
                                   int64_t N, int64_t C, int64_t inner, Reduction reduction,
                                   int64_t ignore_index, T label_smoothing);
  // `loss`, when not null (mean or sum only), receives the forward's value from the same pass
  int64_t (*cross_entropy_backward)(T* dx, double* loss, const T* dout, const T* logits, const int64_t* target,
                                    int64_t N, int64_t C, int64_t inner, Reduction reduction,
                                    int64_t ignore_index, T label_smoothing);
  // logp, dx: (N, C, inner); target, out, dout: (N, inner)
  int64_t (*nll_loss_forward)(T* out, double* result, const T* logp, const int64_t* target,
                              int64_t N, int64_t C, int64_t inner, Reduction reduction, int64_t ignore_index);
  int64_t (*nll_loss_backward)(T* dx, const T* dout, const int64_t* target,
                               int64_t N, int64_t C, int64_t inner, Reduction reduction, int64_t ignore_index);
};

}  // namespace shenjing

// Optimizer steps: in place, one fused pass per tensor, one call for a whole
// list of tensors (the list is split into fixed chunks across threads).
#pragma once
#include <cstdint>

namespace shenjing {

template <class T> struct SgdTensor {
  T* param;
  const T* grad;
  T* momentum_buffer;  // null when momentum == 0
  int64_t n;
  bool first_step;     // the buffer is initialised to the gradient, as torch.optim.SGD does
};
struct SgdHyper {
  double lr, momentum, dampening, weight_decay;
  bool nesterov, maximize;
};

template <class T> struct AdamTensor {
  T* param;
  const T* grad;
  T* exp_avg;
  T* exp_avg_sq;
  T* max_exp_avg_sq;  // null unless amsgrad
  int64_t n;
  int64_t step;       // the step count after this step (1 on the first)
};
struct AdamHyper {
  double lr, beta1, beta2, eps, weight_decay;
  bool amsgrad, maximize, decoupled_weight_decay;  // decoupled: AdamW
};

template <class T> struct OptimKernels {
  void (*sgd_step)(const SgdTensor<T>* tensors, int64_t count, const SgdHyper& h);
  void (*adam_step)(const AdamTensor<T>* tensors, int64_t count, const AdamHyper& h);
};

}  // namespace shenjing

// Activation kernels: elementwise forward/backward pairs and softmax along
// one axis. Every function overwrites its output; none allocates it.
#pragma once
#include <cstdint>

namespace shenjing {

enum class GeluApproximation : int { none = 0, tanh = 1 };

template <class T> struct ActivationKernels {
  // x, y, dy, dx: (n,)
  void (*relu_forward)(T* y, const T* x, int64_t n);                   // y = max(x, 0), NaN kept
  void (*relu_backward)(T* dx, const T* dy, const T* x, int64_t n);    // dx = dy * (x > 0)
  void (*leaky_relu_forward)(T* y, const T* x, int64_t n, T slope);
  void (*leaky_relu_backward)(T* dx, const T* dy, const T* x, int64_t n, T slope);
  void (*sigmoid_forward)(T* y, const T* x, int64_t n);
  void (*sigmoid_backward)(T* dx, const T* dy, const T* y, int64_t n);  // from the output y
  void (*tanh_forward)(T* y, const T* x, int64_t n);
  void (*tanh_backward)(T* dx, const T* dy, const T* y, int64_t n);     // from the output y
  void (*gelu_forward)(T* y, const T* x, int64_t n, GeluApproximation approx);
  void (*gelu_backward)(T* dx, const T* dy, const T* x, int64_t n, GeluApproximation approx);
  // x, y, dy, dx: (outer, len, inner), the softmax taken along `len`
  void (*softmax_forward)(T* y, const T* x, int64_t outer, int64_t len, int64_t inner);
  void (*softmax_backward)(T* dx, const T* dy, const T* y, int64_t outer, int64_t len, int64_t inner);
  void (*log_softmax_forward)(T* y, const T* x, int64_t outer, int64_t len, int64_t inner);
  void (*log_softmax_backward)(T* dx, const T* dy, const T* y, int64_t outer, int64_t len, int64_t inner);
};

}  // namespace shenjing

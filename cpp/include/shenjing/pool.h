// Pooling on NCHW planes. Every output is overwritten; none is allocated here.
#pragma once
#include <cstdint>

namespace shenjing {

struct PoolShape {
  int64_t planes, H, W;        // x: (planes = N C, H, W)
  int64_t KH, KW;              // window
  int64_t OH, OW;              // y: (planes, OH, OW); ceil_mode is decided by the caller through OH, OW
  int64_t sh, sw, ph, pw;      // stride, padding before the first row / column
  int64_t dh, dw;              // dilation (max pooling)
};

template <class T> struct PoolKernels {
  // y = max over each window (padding never wins; NaN wins), indices = the
  // flat index h W + w of the maximum within its plane, as PyTorch's
  void (*max_pool2d_forward)(T* y, int64_t* indices, const T* x, const PoolShape& s);
  // dx = dy scattered to the indices (dx overwritten). Returns -1, or the
  // position of the first index outside [-1, H W) (nothing is written then).
  int64_t (*max_pool2d_backward)(T* dx, const T* dy, const int64_t* indices, const PoolShape& s);
  // y = mean over each window; count_include_pad counts the padded cells;
  // divisor > 0 replaces the count
  void (*avg_pool2d_forward)(T* y, const T* x, const PoolShape& s, bool count_include_pad, int64_t divisor);
  void (*avg_pool2d_backward)(T* dx, const T* dy, const PoolShape& s, bool count_include_pad, int64_t divisor);
  // adaptive average: window of output (i, j) is rows [floor(i H/OH), ceil((i+1) H/OH)), same for columns
  void (*adaptive_avg_pool2d_forward)(T* y, const T* x, const PoolShape& s);
  void (*adaptive_avg_pool2d_backward)(T* dx, const T* dy, const PoolShape& s);
};

}  // namespace shenjing

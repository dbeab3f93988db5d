// Convolution, NCHW input and OIHW weights (conv1d is conv2d with H = 1).
// Every output is overwritten; none is allocated here.
#pragma once
#include <cstdint>

namespace shenjing {

struct ConvShape {
  int64_t N, C, H, W;          // input x: (N, C, H, W)
  int64_t O, KH, KW;           // weight w: (O, C / groups, KH, KW)
  int64_t OH, OW;              // output y: (N, O, OH, OW)
  int64_t sh, sw;              // stride
  int64_t ph, pw;              // padding before the first row / column (after: implied by OH, OW)
  int64_t dh, dw;              // dilation
  int64_t groups;
};

template <class T> struct ConvKernels {
  // y = conv(x, w) + bias; bias: (O,) or null
  void (*conv2d_forward)(T* y, const T* x, const T* w, const T* bias, const ConvShape& s);
  // dy: (N, O, OH, OW) -> dx: like x, dw: like w, db: (O,); each may be null (not computed)
  void (*conv2d_backward)(T* dx, T* dw, T* db, const T* dy, const T* x, const T* w, const ConvShape& s);
};

}  // namespace shenjing

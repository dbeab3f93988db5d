// Bindings of convolution (shenjing/conv.h) and pooling (shenjing/pool.h).
// shenjing.ops computes output sizes and checks shapes with friendly
// messages; here every size is checked again against the arrays, so no call
// into _core can read or write out of bounds.
#include "checks.h"

namespace shenjing {
namespace bindings {

namespace {

ConvShape conv_shape(py::tuple t, const char* op) {
  if (t.size() != 16) fail_value(op, "shape", "must have 16 entries");
  int64_t v[16];
  for (int i = 0; i < 16; ++i) v[i] = t[i].cast<int64_t>();
  ConvShape s{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14], v[15]};
  const char* names[16] = {"N", "C", "H", "W", "O", "KH", "KW", "OH", "OW", "stride_h", "stride_w",
                           "padding_h", "padding_w", "dilation_h", "dilation_w", "groups"};
  for (int i = 0; i < 16; ++i) check_nonnegative(v[i], op, names[i]);
  if (s.sh < 1 || s.sw < 1) fail_value(op, "stride", "must be >= 1");
  if (s.dh < 1 || s.dw < 1) fail_value(op, "dilation", "must be >= 1");
  if (s.KH < 1 || s.KW < 1) fail_value(op, "kernel", "must be at least 1x1");
  if (s.groups < 1 || s.C % s.groups || s.O % s.groups) fail_value(op, "groups", "must divide C and O");
  checked_volume(s.N, s.C, s.H * s.W, op);
  checked_volume(s.N, s.O, s.OH * s.OW, op);
  checked_volume(s.O, s.C, s.KH * s.KW, op);
  return s;
}

PoolShape pool_shape(py::tuple t, const char* op) {
  if (t.size() != 13) fail_value(op, "shape", "must have 13 entries");
  int64_t v[13];
  for (int i = 0; i < 13; ++i) v[i] = t[i].cast<int64_t>();
  PoolShape s{v[0], v[1], v[2], v[3], v[4], v[5], v[6], v[7], v[8], v[9], v[10], v[11], v[12]};
  for (int i = 0; i < 13; ++i) check_nonnegative(v[i], op, "shape");
  if (s.sh < 1 || s.sw < 1) fail_value(op, "stride", "must be >= 1");
  if (s.dh < 1 || s.dw < 1) fail_value(op, "dilation", "must be >= 1");
  checked_volume(s.planes, s.H, s.W, op);
  checked_volume(s.planes, s.OH, s.OW, op);
  return s;
}

int64_t* index_array(py::array& a, int64_t n, const char* op, bool writable) {
  if (!py::isinstance<py::array_t<int64_t>>(a) || a.itemsize() != 8)
    fail_type(op, "indices", "must be an int64 array, got " + dtype_of(a));
  if (!(a.flags() & py::array::c_style)) fail_value(op, "indices", "must be C-contiguous");
  check_aligned(a, op, "indices");
  if (writable && !a.writeable()) fail_value(op, "indices", "is read-only");
  check_size(a, n, op, "indices");
  return static_cast<int64_t*>(const_cast<void*>(a.data()));
}

}  // namespace

void bind_conv(py::module_& m) {
  m.def("conv2d_forward", [](py::array y, py::array x, py::array w, py::object bias, py::tuple shape) {
    const char* op = "conv2d";
    const ConvShape s = conv_shape(shape, op);
    with_float_type(x, op, "input", [&](auto tag) {
      using T = decltype(tag);
      const T* px = input<T>(x, op, "input");
      const T* pw = input<T>(w, op, "weight");
      T* py_ = output<T>(y, op, "out");
      check_size(x, s.N * s.C * s.H * s.W, op, "input");
      check_size(w, s.O * (s.C / s.groups) * s.KH * s.KW, op, "weight");
      check_size(y, s.N * s.O * s.OH * s.OW, op, "out");
      py::array b;
      const T* pb = nullptr;
      if (!bias.is_none()) {
        b = as_ndarray(bias, op, "bias");
        pb = input<T>(b, op, "bias");
        check_size(b, s.O, op, "bias");
      }
      py::gil_scoped_release release;
      kernels<T>().conv.conv2d_forward(py_, px, pw, pb, s);
    });
  });
  m.def("conv2d_backward", [](py::object dx, py::object dw, py::object db, py::array dy, py::array x, py::array w,
                              py::tuple shape) {
    const char* op = "conv2d_backward";
    const ConvShape s = conv_shape(shape, op);
    with_float_type(dy, op, "grad", [&](auto tag) {
      using T = decltype(tag);
      const T* pdy = input<T>(dy, op, "grad");
      const T* px = input<T>(x, op, "input");
      const T* pw = input<T>(w, op, "weight");
      check_size(dy, s.N * s.O * s.OH * s.OW, op, "grad");
      check_size(x, s.N * s.C * s.H * s.W, op, "input");
      check_size(w, s.O * (s.C / s.groups) * s.KH * s.KW, op, "weight");
      py::array adx, adw, adb;
      T *pdx = nullptr, *pdw = nullptr, *pdb = nullptr;
      if (!dx.is_none()) {
        adx = as_ndarray(dx, op, "grad_input");
        pdx = output<T>(adx, op, "grad_input");
        check_size(adx, s.N * s.C * s.H * s.W, op, "grad_input");
      }
      if (!dw.is_none()) {
        adw = as_ndarray(dw, op, "grad_weight");
        pdw = output<T>(adw, op, "grad_weight");
        check_size(adw, s.O * (s.C / s.groups) * s.KH * s.KW, op, "grad_weight");
      }
      if (!db.is_none()) {
        adb = as_ndarray(db, op, "grad_bias");
        pdb = output<T>(adb, op, "grad_bias");
        check_size(adb, s.O, op, "grad_bias");
      }
      py::gil_scoped_release release;
      kernels<T>().conv.conv2d_backward(pdx, pdw, pdb, pdy, px, pw, s);
    });
  });
  m.def("max_pool2d_forward", [](py::array y, py::array indices, py::array x, py::tuple shape) {
    const char* op = "max_pool2d";
    const PoolShape s = pool_shape(shape, op);
    with_float_type(x, op, "input", [&](auto tag) {
      using T = decltype(tag);
      const T* px = input<T>(x, op, "input");
      T* py_ = output<T>(y, op, "out");
      check_size(x, s.planes * s.H * s.W, op, "input");
      check_size(y, s.planes * s.OH * s.OW, op, "out");
      int64_t* pi = index_array(indices, s.planes * s.OH * s.OW, op, true);
      py::gil_scoped_release release;
      kernels<T>().pool.max_pool2d_forward(py_, pi, px, s);
    });
  });
  m.def("max_pool2d_backward", [](py::array dx, py::array dy, py::array indices, py::tuple shape) {
    const char* op = "max_pool2d_backward";
    const PoolShape s = pool_shape(shape, op);
    with_float_type(dy, op, "grad", [&](auto tag) {
      using T = decltype(tag);
      const T* pdy = input<T>(dy, op, "grad");
      T* pdx = output<T>(dx, op, "out");
      check_size(dy, s.planes * s.OH * s.OW, op, "grad");
      check_size(dx, s.planes * s.H * s.W, op, "out");
      const int64_t* pi = index_array(indices, s.planes * s.OH * s.OW, op, false);
      int64_t bad;
      {
        py::gil_scoped_release release;
        bad = kernels<T>().pool.max_pool2d_backward(pdx, pdy, pi, s);
      }
      if (bad >= 0)
        fail_value(op, "indices", "holds " + std::to_string(pi[bad]) + " at flat position " + std::to_string(bad) +
                                      ", outside [0, " + std::to_string(s.H * s.W) + ") for planes of " +
                                      std::to_string(s.H) + "x" + std::to_string(s.W));
    });
  });
  // (y from x) or (dx from dy) on planes: the checks every average pooling binding shares
  auto planes_call = [](const char* op, py::array& out, const py::array& in, const PoolShape& s, bool forward,
                        auto call) {
    const char* in_name = forward ? "input" : "grad";
    with_float_type(in, op, in_name, [&](auto tag) {
      using T = decltype(tag);
      const T* pin = input<T>(in, op, in_name);
      T* pout = output<T>(out, op, "out");
      check_size(in, s.planes * (forward ? s.H * s.W : s.OH * s.OW), op, in_name);
      check_size(out, s.planes * (forward ? s.OH * s.OW : s.H * s.W), op, "out");
      py::gil_scoped_release release;
      call(kernels<T>().pool, pout, pin);
    });
  };
  m.def("avg_pool2d_forward", [planes_call](py::array y, py::array x, py::tuple shape, bool count_include_pad,
                                            int64_t divisor) {
    const PoolShape s = pool_shape(shape, "avg_pool2d");
    planes_call("avg_pool2d", y, x, s, true, [&](auto& k, auto* out, auto* in) {
      k.avg_pool2d_forward(out, in, s, count_include_pad, divisor);
    });
  });
  m.def("avg_pool2d_backward", [planes_call](py::array dx, py::array dy, py::tuple shape, bool count_include_pad,
                                             int64_t divisor) {
    const PoolShape s = pool_shape(shape, "avg_pool2d_backward");
    planes_call("avg_pool2d_backward", dx, dy, s, false, [&](auto& k, auto* out, auto* in) {
      k.avg_pool2d_backward(out, in, s, count_include_pad, divisor);
    });
  });
  m.def("adaptive_avg_pool2d_forward", [planes_call](py::array y, py::array x, py::tuple shape) {
    const char* op = "adaptive_avg_pool2d";
    const PoolShape s = pool_shape(shape, op);
    if ((s.OH == 0 && s.H > 0) || (s.OW == 0 && s.W > 0)) fail_value(op, "output_size", "must be >= 1");
    planes_call(op, y, x, s, true, [&](auto& k, auto* out, auto* in) { k.adaptive_avg_pool2d_forward(out, in, s); });
  });
  m.def("adaptive_avg_pool2d_backward", [planes_call](py::array dx, py::array dy, py::tuple shape) {
    const PoolShape s = pool_shape(shape, "adaptive_avg_pool2d_backward");
    planes_call("adaptive_avg_pool2d_backward", dx, dy, s, false,
                [&](auto& k, auto* out, auto* in) { k.adaptive_avg_pool2d_backward(out, in, s); });
  });
}

}  // namespace bindings
}  // namespace shenjing

// Bindings of the activation kernels (shenjing/activations.h).
#include "checks.h"

namespace shenjing {
namespace bindings {

namespace {

// y = f(x) or dx = f(dy, z): all arrays of one dtype and one size
template <class Call>
void unary(const char* op, py::array& y, const py::array& x, Call call) {
  with_float_type(x, op, "x", [&](auto tag) {
    using T = decltype(tag);
    const T* px = input<T>(x, op, "x");
    T* py_ = output<T>(y, op, "out");
    check_size(y, x.size(), op, "out");
    const int64_t n = x.size();
    py::gil_scoped_release release;
    call(kernels<T>().act, py_, px, n);
  });
}

template <class Call>
void binary(const char* op, py::array& dx, const py::array& dy, const py::array& z, const char* z_name, Call call) {
  with_float_type(dy, op, "grad", [&](auto tag) {
    using T = decltype(tag);
    const T* pdy = input<T>(dy, op, "grad");
    const T* pz = input<T>(z, op, z_name);
    T* pdx = output<T>(dx, op, "out");
    check_size(z, dy.size(), op, z_name);
    check_size(dx, dy.size(), op, "out");
    const int64_t n = dy.size();
    py::gil_scoped_release release;
    call(kernels<T>().act, pdx, pdy, pz, n);
  });
}

template <class Call>
void softmax_like(const char* op, py::array& y, const py::array& x, int64_t outer, int64_t len, int64_t inner, Call call) {
  const int64_t n = checked_volume(outer, len, inner, op);
  with_float_type(x, op, "x", [&](auto tag) {
    using T = decltype(tag);
    const T* px = input<T>(x, op, "x");
    T* py_ = output<T>(y, op, "out");
    check_size(x, n, op, "x");
    check_size(y, n, op, "out");
    py::gil_scoped_release release;
    call(kernels<T>().act, py_, px);
  });
}

template <class Call>
void softmax_like_backward(const char* op, py::array& dx, const py::array& dy, const py::array& y, int64_t outer,
                           int64_t len, int64_t inner, Call call) {
  const int64_t n = checked_volume(outer, len, inner, op);
  with_float_type(dy, op, "grad", [&](auto tag) {
    using T = decltype(tag);
    const T* pdy = input<T>(dy, op, "grad");
    const T* pyv = input<T>(y, op, "output");
    T* pdx = output<T>(dx, op, "out");
    check_size(dy, n, op, "grad");
    check_size(y, n, op, "output");
    check_size(dx, n, op, "out");
    py::gil_scoped_release release;
    call(kernels<T>().act, pdx, pdy, pyv);
  });
}

GeluApproximation gelu_approx(int approximate) {
  if (approximate != 0 && approximate != 1) fail_value("gelu", "approximate", "must be 0 (none) or 1 (tanh)");
  return GeluApproximation(approximate);
}

}  // namespace

void bind_activations(py::module_& m) {
  m.def("relu_forward", [](py::array y, py::array x) {
    unary("relu", y, x, [](auto& k, auto* out, auto* in, int64_t n) { k.relu_forward(out, in, n); });
  });
  m.def("relu_backward", [](py::array dx, py::array dy, py::array x) {
    binary("relu_backward", dx, dy, x, "x", [](auto& k, auto* o, auto* g, auto* z, int64_t n) { k.relu_backward(o, g, z, n); });
  });
  m.def("leaky_relu_forward", [](py::array y, py::array x, double slope) {
    unary("leaky_relu", y, x, [slope](auto& k, auto* out, auto* in, int64_t n) {
      k.leaky_relu_forward(out, in, n, decltype(+*in)(slope));
    });
  });
  m.def("leaky_relu_backward", [](py::array dx, py::array dy, py::array x, double slope) {
    binary("leaky_relu_backward", dx, dy, x, "x", [slope](auto& k, auto* o, auto* g, auto* z, int64_t n) {
      k.leaky_relu_backward(o, g, z, n, decltype(+*z)(slope));
    });
  });
  m.def("sigmoid_forward", [](py::array y, py::array x) {
    unary("sigmoid", y, x, [](auto& k, auto* out, auto* in, int64_t n) { k.sigmoid_forward(out, in, n); });
  });
  m.def("sigmoid_backward", [](py::array dx, py::array dy, py::array y) {
    binary("sigmoid_backward", dx, dy, y, "output", [](auto& k, auto* o, auto* g, auto* z, int64_t n) { k.sigmoid_backward(o, g, z, n); });
  });
  m.def("tanh_forward", [](py::array y, py::array x) {
    unary("tanh", y, x, [](auto& k, auto* out, auto* in, int64_t n) { k.tanh_forward(out, in, n); });
  });
  m.def("tanh_backward", [](py::array dx, py::array dy, py::array y) {
    binary("tanh_backward", dx, dy, y, "output", [](auto& k, auto* o, auto* g, auto* z, int64_t n) { k.tanh_backward(o, g, z, n); });
  });
  m.def("gelu_forward", [](py::array y, py::array x, int approximate) {
    const GeluApproximation a = gelu_approx(approximate);
    unary("gelu", y, x, [a](auto& k, auto* out, auto* in, int64_t n) { k.gelu_forward(out, in, n, a); });
  });
  m.def("gelu_backward", [](py::array dx, py::array dy, py::array x, int approximate) {
    const GeluApproximation a = gelu_approx(approximate);
    binary("gelu_backward", dx, dy, x, "x", [a](auto& k, auto* o, auto* g, auto* z, int64_t n) { k.gelu_backward(o, g, z, n, a); });
  });
  m.def("softmax_forward", [](py::array y, py::array x, int64_t outer, int64_t len, int64_t inner) {
    softmax_like("softmax", y, x, outer, len, inner, [=](auto& k, auto* o, auto* i) { k.softmax_forward(o, i, outer, len, inner); });
  });
  m.def("softmax_backward", [](py::array dx, py::array dy, py::array y, int64_t outer, int64_t len, int64_t inner) {
    softmax_like_backward("softmax_backward", dx, dy, y, outer, len, inner,
                          [=](auto& k, auto* o, auto* g, auto* z) { k.softmax_backward(o, g, z, outer, len, inner); });
  });
  m.def("log_softmax_forward", [](py::array y, py::array x, int64_t outer, int64_t len, int64_t inner) {
    softmax_like("log_softmax", y, x, outer, len, inner, [=](auto& k, auto* o, auto* i) { k.log_softmax_forward(o, i, outer, len, inner); });
  });
  m.def("log_softmax_backward", [](py::array dx, py::array dy, py::array y, int64_t outer, int64_t len, int64_t inner) {
    softmax_like_backward("log_softmax_backward", dx, dy, y, outer, len, inner,
                          [=](auto& k, auto* o, auto* g, auto* z) { k.log_softmax_backward(o, g, z, outer, len, inner); });
  });
}

}  // namespace bindings
}  // namespace shenjing

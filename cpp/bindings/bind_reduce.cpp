// Bindings of the reductions (shenjing/reduce.h) and the copy (shenjing/probes.h).
#include "checks.h"

namespace shenjing {
namespace bindings {

void bind_reduce(py::module_& m) {
  m.def("sum_axis", [](py::array y, py::array x, int64_t outer, int64_t len, int64_t inner) {
    const char* op = "sum";
    const int64_t n = checked_volume(outer, len, inner, op);
    with_float_type(x, op, "x", [&](auto tag) {
      using T = decltype(tag);
      const T* px = input<T>(x, op, "x");
      T* py_ = output<T>(y, op, "out");
      check_size(x, n, op, "x");
      check_size(y, outer * inner, op, "out");
      py::gil_scoped_release release;
      kernels<T>().reduce.sum_axis(py_, px, outer, len, inner);
    });
  });
  m.def("copy", [](py::array y, py::array x) {
    with_float_type(x, "copy", "x", [&](auto tag) {
      using T = decltype(tag);
      const T* px = input<T>(x, "copy", "x");
      T* py_ = output<T>(y, "copy", "out");
      check_size(y, x.size(), "copy", "out");
      const int64_t n = x.size();
      py::gil_scoped_release release;
      kernels<T>().probes.copy(py_, px, n);
    });
  });
  // (checksum, lanes): flops = 2 * lanes * iterations * threads
  m.def("fma_peak", [](int64_t iterations, bool float64) {
    if (iterations < 0) fail_value("fma_peak", "iterations", "must be >= 0");
    double checksum;
    int64_t lanes;
    {
      py::gil_scoped_release release;
      if (float64) {
        const auto& k = kernels<double>().probes;
        checksum = k.fma_peak(iterations), lanes = k.fma_peak_lanes();
      } else {
        const auto& k = kernels<float>().probes;
        checksum = double(k.fma_peak(iterations)), lanes = k.fma_peak_lanes();
      }
    }
    return py::make_tuple(checksum, lanes);
  });
  m.def("sum_all", [](py::array x) {
    return with_float_type(x, "sum", "x", [&](auto tag) {
      using T = decltype(tag);
      const T* px = input<T>(x, "sum", "x");
      const int64_t n = x.size();
      py::gil_scoped_release release;
      return kernels<T>().reduce.sum_all(px, n);
    });
  });
  m.def("sum_of_squares", [](py::array x) {
    return with_float_type(x, "sum_of_squares", "x", [&](auto tag) {
      using T = decltype(tag);
      const T* px = input<T>(x, "sum_of_squares", "x");
      const int64_t n = x.size();
      py::gil_scoped_release release;
      return kernels<T>().reduce.sum_of_squares(px, n);
    });
  });
}

}  // namespace bindings
}  // namespace shenjing

// Bindings of the loss kernels (shenjing/losses.h).
#include "checks.h"

namespace shenjing {
namespace bindings {

namespace {

Reduction reduction_of(int r, const char* op) {
  if (r < 0 || r > 3) fail_value(op, "reduction", "must be 0 (none), 1 (mean), 2 (sum) or 3 (batchmean)");
  return Reduction(r);
}

PointwiseLoss pointwise_kind(int kind) {
  if (kind < 0 || kind > 6) fail_value("pointwise_loss", "kind", "must be in [0, 6]");
  return PointwiseLoss(kind);
}

// the reduced value, or None for reduction none (the losses are in `out`)
py::object result_or_none(Reduction r, double result) {
  return r == Reduction::none ? py::object(py::none()) : py::object(py::float_(result));
}

const int64_t* targets(const py::array& target, int64_t samples, const char* op) {
  if (!py::isinstance<py::array_t<int64_t>>(target) || target.itemsize() != 8)
    fail_type(op, "target", "must be an int64 array, got " + dtype_of(target) + " with shape " + shape_of(target));
  if (!(target.flags() & py::array::c_style)) fail_value(op, "target", "must be C-contiguous");
  check_aligned(target, op, "target");
  check_size(target, samples, op, "target");
  return static_cast<const int64_t*>(target.data());
}

[[noreturn]] void bad_probability(const char* op, const py::array& x, int64_t index) {
  const double value = x.itemsize() == 4 ? double(static_cast<const float*>(x.data())[index])
                                         : static_cast<const double*>(x.data())[index];
  fail_value(op, "input", "must hold probabilities in [0, 1]; it holds " + std::to_string(value) + " at flat index " +
                              std::to_string(index) + " (input shape " + shape_of(x) + ")");
}

[[noreturn]] void bad_target(const char* op, const py::array& target, int64_t index, int64_t C, int64_t ignore_index) {
  const int64_t value = static_cast<const int64_t*>(target.data())[index];
  fail_value(op, "target", "holds class " + std::to_string(value) + " at flat index " + std::to_string(index) +
                               ", outside [0, " + std::to_string(C) + ") (ignore_index is " +
                               std::to_string(ignore_index) + ", target shape " + shape_of(target) + ")");
}

}  // namespace

void bind_losses(py::module_& m) {
  m.def("pointwise_loss_forward", [](py::object out, py::array x, py::array t, int kind, int reduction, double param, int64_t batch) {
    const char* op = "pointwise_loss";
    const PointwiseLoss k = pointwise_kind(kind);
    const Reduction r = reduction_of(reduction, op);
    return with_float_type(x, op, "input", [&](auto tag) {
      using T = decltype(tag);
      const T* px = input<T>(x, op, "input");
      const T* pt = input<T>(t, op, "target");
      check_size(t, x.size(), op, "target");
      T* po = nullptr;
      if (r == Reduction::none) {
        py::array o = as_ndarray(out, op, "out");
        po = output<T>(o, op, "out");
        check_size(o, x.size(), op, "out");
      }
      const int64_t n = x.size();
      double result = 0.0;
      int64_t bad;
      {
        py::gil_scoped_release release;
        bad = kernels<T>().loss.pointwise_loss_forward(po, &result, px, pt, n, k, r, T(param), batch);
      }
      if (bad >= 0) bad_probability("binary_cross_entropy", x, bad);
      return result_or_none(r, result);
    });
  });
  m.def("pointwise_loss_backward", [](py::array dx, py::array dout, py::array x, py::array t, int kind, int reduction, double param, int64_t batch) {
    const char* op = "pointwise_loss_backward";
    const PointwiseLoss k = pointwise_kind(kind);
    const Reduction r = reduction_of(reduction, op);
    with_float_type(x, op, "input", [&](auto tag) {
      using T = decltype(tag);
      const T* px = input<T>(x, op, "input");
      const T* pt = input<T>(t, op, "target");
      const T* pg = input<T>(dout, op, "grad");
      T* pdx = output<T>(dx, op, "out");
      check_size(t, x.size(), op, "target");
      check_size(dx, x.size(), op, "out");
      check_size(dout, r == Reduction::none ? int64_t(x.size()) : 1, op, "grad");
      const int64_t n = x.size();
      int64_t bad;
      {
        py::gil_scoped_release release;
        bad = kernels<T>().loss.pointwise_loss_backward(pdx, pg, px, pt, n, k, r, T(param), batch);
      }
      if (bad >= 0) bad_probability("binary_cross_entropy_backward", x, bad);
    });
  });
  m.def("cross_entropy_forward", [](py::object out, py::array logits, py::array target, int64_t N, int64_t C, int64_t inner,
                                    int reduction, int64_t ignore_index, double label_smoothing) {
    const char* op = "cross_entropy";
    const Reduction r = reduction_of(reduction, op);
    const int64_t n = checked_volume(N, C, inner, op);
    return with_float_type(logits, op, "input", [&](auto tag) {
      using T = decltype(tag);
      const T* px = input<T>(logits, op, "input");
      check_size(logits, n, op, "input");
      const int64_t* pt = targets(target, N * inner, op);
      T* po = nullptr;
      if (r == Reduction::none) {
        py::array o = as_ndarray(out, op, "out");
        po = output<T>(o, op, "out");
        check_size(o, N * inner, op, "out");
      }
      double result = 0.0;
      int64_t bad;
      {
        py::gil_scoped_release release;
        bad = kernels<T>().loss.cross_entropy_forward(po, &result, px, pt, N, C, inner, r, ignore_index, T(label_smoothing));
      }
      if (bad >= 0) bad_target(op, target, bad, C, ignore_index);
      return result_or_none(r, result);
    });
  });
  // returns the loss too when with_loss (reduction mean or sum), else None
  m.def("cross_entropy_backward", [](py::array dx, py::array dout, py::array logits, py::array target, int64_t N, int64_t C,
                                     int64_t inner, int reduction, int64_t ignore_index, double label_smoothing, bool with_loss) {
    const char* op = "cross_entropy_backward";
    const Reduction r = reduction_of(reduction, op);
    if (with_loss && r == Reduction::none) fail_value(op, "with_loss", "needs reduction mean or sum");
    const int64_t n = checked_volume(N, C, inner, op);
    return with_float_type(logits, op, "input", [&](auto tag) {
      using T = decltype(tag);
      const T* px = input<T>(logits, op, "input");
      const T* pg = input<T>(dout, op, "grad");
      T* pdx = output<T>(dx, op, "out");
      check_size(logits, n, op, "input");
      check_size(dx, n, op, "out");
      check_size(dout, r == Reduction::none ? N * inner : 1, op, "grad");
      const int64_t* pt = targets(target, N * inner, op);
      int64_t bad;
      double loss = 0.0;
      {
        py::gil_scoped_release release;
        bad = kernels<T>().loss.cross_entropy_backward(pdx, with_loss ? &loss : nullptr, pg, px, pt, N, C, inner, r,
                                                       ignore_index, T(label_smoothing));
      }
      if (bad >= 0) bad_target(op, target, bad, C, ignore_index);
      return with_loss ? py::object(py::float_(loss)) : py::object(py::none());
    });
  });
  m.def("nll_loss_forward", [](py::object out, py::array logp, py::array target, int64_t N, int64_t C, int64_t inner,
                               int reduction, int64_t ignore_index) {
    const char* op = "nll_loss";
    const Reduction r = reduction_of(reduction, op);
    const int64_t n = checked_volume(N, C, inner, op);
    return with_float_type(logp, op, "input", [&](auto tag) {
      using T = decltype(tag);
      const T* px = input<T>(logp, op, "input");
      check_size(logp, n, op, "input");
      const int64_t* pt = targets(target, N * inner, op);
      T* po = nullptr;
      if (r == Reduction::none) {
        py::array o = as_ndarray(out, op, "out");
        po = output<T>(o, op, "out");
        check_size(o, N * inner, op, "out");
      }
      double result = 0.0;
      int64_t bad;
      {
        py::gil_scoped_release release;
        bad = kernels<T>().loss.nll_loss_forward(po, &result, px, pt, N, C, inner, r, ignore_index);
      }
      if (bad >= 0) bad_target(op, target, bad, C, ignore_index);
      return result_or_none(r, result);
    });
  });
  m.def("nll_loss_backward", [](py::array dx, py::array dout, py::array target, int64_t N, int64_t C, int64_t inner,
                                int reduction, int64_t ignore_index) {
    const char* op = "nll_loss_backward";
    const Reduction r = reduction_of(reduction, op);
    const int64_t n = checked_volume(N, C, inner, op);
    with_float_type(dx, op, "out", [&](auto tag) {
      using T = decltype(tag);
      const T* pg = input<T>(dout, op, "grad");
      T* pdx = output<T>(dx, op, "out");
      check_size(dx, n, op, "out");
      check_size(dout, r == Reduction::none ? N * inner : 1, op, "grad");
      const int64_t* pt = targets(target, N * inner, op);
      int64_t bad;
      {
        py::gil_scoped_release release;
        bad = kernels<T>().loss.nll_loss_backward(pdx, pg, pt, N, C, inner, r, ignore_index);
      }
      if (bad >= 0) bad_target(op, target, bad, C, ignore_index);
    });
  });
}

}  // namespace bindings
}  // namespace shenjing

// Bindings of the optimizer steps (shenjing/optim.h): one call for a whole
// parameter list, the GIL released for all of it.
#include <vector>

#include "checks.h"

namespace shenjing {
namespace bindings {

namespace {

// The i-th array of a list, checked against the i-th parameter.
template <class T>
T* state_array(const py::list& list, size_t i, const py::array& param, const char* op, const char* name, bool writable) {
  const std::string arg = std::string(name) + "[" + std::to_string(i) + "]";
  py::array a = as_ndarray(list[i], op, arg.c_str());
  check_array<T>(a, op, arg.c_str());
  if (writable && !a.writeable()) fail_value(op, arg.c_str(), "is read-only");
  if (a.size() != param.size())
    fail_value(op, arg.c_str(), "has shape " + shape_of(a) + " but params[" + std::to_string(i) + "] has shape " + shape_of(param));
  return static_cast<T*>(const_cast<void*>(a.data()));
}

void check_lengths(const char* op, size_t n, std::initializer_list<std::pair<const char*, size_t>> lists) {
  for (auto& [name, len] : lists)
    if (len != n)
      fail_value(op, name, "has " + std::to_string(len) + " entries but params has " + std::to_string(n));
}

}  // namespace

void bind_optim(py::module_& m) {
  m.def("sgd_step", [](py::list params, py::list grads, py::list momentum_buffers, py::list first_steps, double lr,
                       double momentum, double dampening, double weight_decay, bool nesterov, bool maximize) {
    const char* op = "sgd_step";
    const size_t n = params.size();
    check_lengths(op, n, {{"grads", grads.size()}, {"momentum_buffers", momentum_buffers.size()}, {"first_steps", first_steps.size()}});
    if (n == 0) return;
    py::array first = as_ndarray(params[0], op, "params[0]");
    with_float_type(first, op, "params[0]", [&](auto tag) {
      using T = decltype(tag);
      std::vector<SgdTensor<T>> tensors(n);
      std::vector<py::array> keep;  // owns the arrays while the GIL is released
      for (size_t i = 0; i < n; ++i) {
        py::array p = params[i].cast<py::array>();
        keep.push_back(p);
        SgdTensor<T>& t = tensors[i];
        t.param = state_array<T>(params, i, p, op, "params", true);
        t.grad = state_array<T>(grads, i, p, op, "grads", false);
        t.momentum_buffer = momentum_buffers[i].is_none() ? nullptr : state_array<T>(momentum_buffers, i, p, op, "momentum_buffers", true);
        if (momentum != 0.0 && !t.momentum_buffer) fail_value(op, "momentum_buffers", "needs an array for every parameter when momentum != 0");
        if (momentum == 0.0) t.momentum_buffer = nullptr;
        t.n = p.size();
        t.first_step = first_steps[i].cast<bool>();
      }
      for (size_t i = 0; i < n; ++i) keep.push_back(grads[i].cast<py::array>());
      for (size_t i = 0; i < n; ++i) if (!momentum_buffers[i].is_none()) keep.push_back(momentum_buffers[i].cast<py::array>());
      const SgdHyper h{lr, momentum, dampening, weight_decay, nesterov, maximize};
      py::gil_scoped_release release;
      kernels<T>().optim.sgd_step(tensors.data(), int64_t(n), h);
    });
  });
  m.def("adam_step", [](py::list params, py::list grads, py::list exp_avgs, py::list exp_avg_sqs, py::object max_exp_avg_sqs,
                        py::list steps, double lr, double beta1, double beta2, double eps, double weight_decay, bool amsgrad,
                        bool maximize, bool decoupled_weight_decay) {
    const char* op = "adam_step";
    const size_t n = params.size();
    check_lengths(op, n, {{"grads", grads.size()}, {"exp_avgs", exp_avgs.size()}, {"exp_avg_sqs", exp_avg_sqs.size()}, {"steps", steps.size()}});
    py::list maxes;
    if (amsgrad) {
      if (max_exp_avg_sqs.is_none()) fail_value(op, "max_exp_avg_sqs", "is needed when amsgrad is True");
      maxes = max_exp_avg_sqs.cast<py::list>();
      check_lengths(op, n, {{"max_exp_avg_sqs", maxes.size()}});
    }
    if (n == 0) return;
    py::array first = as_ndarray(params[0], op, "params[0]");
    with_float_type(first, op, "params[0]", [&](auto tag) {
      using T = decltype(tag);
      std::vector<AdamTensor<T>> tensors(n);
      std::vector<py::array> keep;
      for (size_t i = 0; i < n; ++i) {
        py::array p = params[i].cast<py::array>();
        keep.push_back(p);
        AdamTensor<T>& t = tensors[i];
        t.param = state_array<T>(params, i, p, op, "params", true);
        t.grad = state_array<T>(grads, i, p, op, "grads", false);
        t.exp_avg = state_array<T>(exp_avgs, i, p, op, "exp_avgs", true);
        t.exp_avg_sq = state_array<T>(exp_avg_sqs, i, p, op, "exp_avg_sqs", true);
        t.max_exp_avg_sq = amsgrad ? state_array<T>(maxes, i, p, op, "max_exp_avg_sqs", true) : nullptr;
        t.n = p.size();
        t.step = steps[i].cast<int64_t>();
        if (t.step < 1) fail_value(op, "steps", "must be >= 1 (the count after this step), got " + std::to_string(t.step));
        keep.push_back(grads[i].cast<py::array>());
        keep.push_back(exp_avgs[i].cast<py::array>());
        keep.push_back(exp_avg_sqs[i].cast<py::array>());
        if (amsgrad) keep.push_back(maxes[i].cast<py::array>());
      }
      const AdamHyper h{lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay};
      py::gil_scoped_release release;
      kernels<T>().optim.adam_step(tensors.data(), int64_t(n), h);
    });
  });
}

}  // namespace bindings
}  // namespace shenjing

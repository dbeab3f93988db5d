// shenjing._core: the C++ kernels, bound one flat function each.
#include <cstdlib>
#include <string>

#include "build_info.h"
#include "checks.h"

namespace py = pybind11;
using namespace shenjing;

namespace {

std::string join_isas(const std::vector<Isa>& isas) {
  std::string s;
  for (Isa i : isas) s += (s.empty() ? "" : ", ") + std::string(isa_name(i));
  return s;
}

// SHENJING_ISA=generic|avx2|avx512 forces an instruction set; an unknown or
// unsupported one is an error at import.
void apply_isa_from_environment() {
  const char* env = std::getenv("SHENJING_ISA");
  if (!env || !*env) return;
  Isa isa;
  if (!isa_from_name(env, &isa))
    throw py::value_error(std::string("SHENJING_ISA='") + env + "' is not one of generic, avx2, avx512");
  if (!isa_supported(isa))
    throw py::value_error(std::string("SHENJING_ISA='") + env + "' is not supported on this CPU/OS or build; supported: " +
                          join_isas(supported_isas()));
  set_isa(isa);
}


}  // namespace

PYBIND11_MODULE(_core, m) {
  m.doc() = "shenjing's C++ kernels. Use shenjing.ops, which checks shapes and allocates outputs.";
  apply_isa_from_environment();

  m.def("backend_info", []() {
    py::dict d;
    d["version"] = SHENJING_VERSION;
    d["isa"] = isa_name(current_isa());
    py::list supported;
    for (Isa i : supported_isas()) supported.append(isa_name(i));
    d["supported_isas"] = supported;
#ifdef _OPENMP
    d["openmp"] = true;
#else
    d["openmp"] = false;
#endif
    d["threads"] = thread_count();
    d["compiler"] = SHENJING_COMPILER;
    d["flags"] = SHENJING_CXX_FLAGS;
    d["cuda_available"] = false;
    return d;
  });
  m.def("get_isa", []() { return std::string(isa_name(current_isa())); });
  m.def("set_isa", [](const std::string& name) {
    Isa isa;
    if (!isa_from_name(name, &isa))
      throw py::value_error("set_isa: isa '" + name + "' is not one of generic, avx2, avx512");
    if (!isa_supported(isa))
      throw py::value_error("set_isa: isa '" + name + "' is not supported here; supported: " + join_isas(supported_isas()));
    set_isa(isa);
  });
  m.def("get_num_threads", &thread_count);
  m.def("set_num_threads", [](int n) {
    if (n < 1) throw py::value_error("set_num_threads: n must be >= 1, got " + std::to_string(n));
    set_thread_count(n);
  });

  bindings::bind_activations(m);
  bindings::bind_losses(m);
  bindings::bind_optim(m);
  bindings::bind_reduce(m);
  bindings::bind_gemm(m);
  bindings::bind_conv(m);
  bindings::bind_buffers(m);
}

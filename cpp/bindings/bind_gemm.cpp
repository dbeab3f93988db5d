// Binding of GEMM (shenjing/gemm.h).
#include "checks.h"

namespace shenjing {
namespace bindings {

void bind_gemm(py::module_& m) {
  m.def("gemm", [](py::array c, py::array a, py::array b, int64_t M, int64_t N, int64_t K, bool trans_a, bool trans_b,
                   double alpha, double beta, py::object bias, int bias_kind, int activation, bool reference) {
    const char* op = "gemm";
    checked_volume(M, N, K, op);
    if (bias_kind < 0 || bias_kind > 2) fail_value(op, "bias_kind", "must be 0, 1 or 2");
    if (activation < 0 || activation > 5) fail_value(op, "activation", "must be in [0, 5]");
    with_float_type(a, op, "a", [&](auto tag) {
      using T = decltype(tag);
      const T* pa = input<T>(a, op, "a");
      const T* pb = input<T>(b, op, "b");
      T* pc = output<T>(c, op, "out");
      check_size(a, M * K, op, "a");
      check_size(b, K * N, op, "b");
      check_size(c, M * N, op, "out");
      const T* pbias = nullptr;
      const GemmBias kind = GemmBias(bias_kind);
      py::array bias_array;
      if (kind != GemmBias::none) {
        bias_array = as_ndarray(bias, op, "bias");
        pbias = input<T>(bias_array, op, "bias");
        check_size(bias_array, kind == GemmBias::per_column ? N : M, op, "bias");
      }
      py::gil_scoped_release release;
      const auto& k = kernels<T>().gemm;
      (reference ? k.gemm_reference : k.gemm)(pc, pa, pb, M, N, K, trans_a, trans_b, T(alpha), T(beta), pbias, kind,
                                              GemmActivation(activation));
    });
  });
}

}  // namespace bindings
}  // namespace shenjing

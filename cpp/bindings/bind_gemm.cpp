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
  // A linear layer's backward, y = a w^T (+ bias): a: (M, K), w: (N, K), g = dL/dy: (M, N).
  // dx = g w: (M, K); dw = g^T a: (N, K); db = the column sums of g: (N,); each only
  // when its output is given (None: not wanted). One call and one GIL release for three.
  m.def("linear_backward", [](py::array g, py::array a, py::array w, py::object dx, py::object dw, py::object db,
                              int64_t M, int64_t N, int64_t K) {
    const char* op = "linear_backward";
    checked_volume(M, N, K, op);
    with_float_type(g, op, "g", [&](auto tag) {
      using T = decltype(tag);
      const T* pg = input<T>(g, op, "g");
      const T* pa = input<T>(a, op, "a");
      const T* pw = input<T>(w, op, "w");
      check_size(g, M * N, op, "g");
      check_size(a, M * K, op, "a");
      check_size(w, N * K, op, "w");
      py::array arrays[3];  // dx, dw, db: kept while the GIL is released
      T* outputs[3] = {nullptr, nullptr, nullptr};
      const py::object* given[3] = {&dx, &dw, &db};
      const char* names[3] = {"dx", "dw", "db"};
      const int64_t sizes[3] = {M * K, N * K, N};
      for (int i = 0; i < 3; ++i) {
        if (given[i]->is_none()) continue;
        arrays[i] = as_ndarray(*given[i], op, names[i]);
        outputs[i] = output<T>(arrays[i], op, names[i]);
        check_size(arrays[i], sizes[i], op, names[i]);
      }
      T* const pdx = outputs[0];
      T* const pdw = outputs[1];
      T* const pdb = outputs[2];
      py::gil_scoped_release release;
      const auto gemm = kernels<T>().gemm.gemm;
      if (pdx) gemm(pdx, pg, pw, M, K, N, false, false, T(1), T(0), nullptr, GemmBias::none, GemmActivation::none);
      if (pdw) gemm(pdw, pg, pa, N, K, M, true, false, T(1), T(0), nullptr, GemmBias::none, GemmActivation::none);
      if (pdb) kernels<T>().reduce.sum_axis(pdb, pg, 1, M, N);
    });
  });
}

}  // namespace bindings
}  // namespace shenjing

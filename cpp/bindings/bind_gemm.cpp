// Binding of GEMM (shenjing/gemm.h).
#include <algorithm>
#include <vector>

#include "checks.h"

namespace shenjing {
namespace bindings {

namespace {

// op(a) op(b) into a new array, or into `out`: ops.gemm's and ops.matmul's plain product
// of two float matrices (product), or ops.matmul's of two stacks of them with the same
// batch dimensions (batched_product), in one call of a few arguments (the general
// bindings take ten or fourteen, and their callers allocate and check: a 1x1 product
// took 2.2 us against NumPy's 0.8, a batch of one 4x4x4 product 8.5 us against 0.9).
// None when a, b or out is not a C-contiguous, aligned float ndarray of the expected
// rank, their dtypes, batch or inner dimensions differ, out has another shape, is
// read-only or shares memory with a or b, or the result is one ops asks the free
// memory for: the caller's general path then converts them, or names the problem.
py::object plain_product(py::handle a_obj, py::handle b_obj, bool trans_a, bool trans_b, py::handle out_obj,
                         bool batched) {
  // exactly NumPy arrays: a subclass (np.matrix, a masked array) takes the general path
  PyTypeObject* const ndarray = py::detail::npy_api::get().PyArray_Type_;
  const bool has_out = !out_obj.is_none();
  if (Py_TYPE(a_obj.ptr()) != ndarray || Py_TYPE(b_obj.ptr()) != ndarray ||
      (has_out && Py_TYPE(out_obj.ptr()) != ndarray))
    return py::none();
  const auto a = py::reinterpret_borrow<py::array>(a_obj), b = py::reinterpret_borrow<py::array>(b_obj);
  const py::ssize_t rank = a.ndim();
  const auto plain = [rank](const py::array& x) {
    const int flags = x.flags();
    return x.ndim() == rank && (flags & py::array::c_style) && (flags & py::detail::npy_api::NPY_ARRAY_ALIGNED_);
  };
  if ((batched ? rank < 3 : rank != 2) || !plain(a) || !plain(b)) return py::none();
  std::vector<py::ssize_t> shape(a.shape(), a.shape() + rank);  // the result's: batch..., M, N
  int64_t batch = 1;
  for (py::ssize_t d = 0; d < rank - 2; ++d) {
    if (b.shape(d) != shape[size_t(d)]) return py::none();
    batch *= shape[size_t(d)];
  }
  const int64_t M = trans_a ? a.shape(rank - 1) : a.shape(rank - 2), K = trans_a ? a.shape(rank - 2) : a.shape(rank - 1);
  const int64_t Kb = trans_b ? b.shape(rank - 1) : b.shape(rank - 2), N = trans_b ? b.shape(rank - 2) : b.shape(rank - 1);
  if (K != Kb) return py::none();
  shape[size_t(rank - 2)] = M, shape[size_t(rank - 1)] = N;
  auto run = [&](auto tag) -> py::object {
    using T = decltype(tag);
    const auto is_t = [](const py::array& x) { return py::isinstance<py::array_t<T>>(x) && x.itemsize() == sizeof(T); };
    if (!is_t(b)) return py::none();
    py::array c;
    if (has_out) {
      c = py::reinterpret_borrow<py::array>(out_obj);
      if (!plain(c) || !is_t(c) || !c.writeable() || !std::equal(shape.begin(), shape.end(), c.shape())) return py::none();
      const auto overlaps = [&](const py::array& x) {  // byte ranges, as np.may_share_memory
        const char *c0 = static_cast<const char*>(c.data()), *x0 = static_cast<const char*>(x.data());
        return c.nbytes() > 0 && x.nbytes() > 0 && c0 < x0 + x.nbytes() && x0 < c0 + c.nbytes();
      };
      if (overlaps(a) || overlaps(b)) return py::none();
    } else {
      if (N > 0 && batch > 0 && M >= kAskAboveBytes / int64_t(sizeof(T)) / N / batch) return py::none();
      const int64_t elements = M * N * batch;  // (no overflow past the check)
      c = elements >= kCachedAboveElements ? cached_empty(shape, py::dtype::of<T>()) : py::array(py::dtype::of<T>(), shape);
    }
    T* pc = static_cast<T*>(c.mutable_data());
    const T* pa = static_cast<const T*>(a.data());
    const T* pb = static_cast<const T*>(b.data());
    const auto& k = kernels<T>().gemm;
    if (!batched) {
      py::gil_scoped_release release;
      k.gemm(pc, pa, pb, M, N, K, trans_a, trans_b, T(1), T(0), nullptr, GemmBias::none, GemmActivation::none);
    } else if (batch > 0 && M > 0 && N > 0) {
      static thread_local std::vector<int64_t> offsets;  // kept from call to call
      if (offsets.size() < size_t(2 * batch)) offsets.resize(size_t(2 * batch));
      int64_t* const a_offsets = offsets.data();
      int64_t* const b_offsets = a_offsets + batch;
      for (int64_t i = 0; i < batch; ++i) a_offsets[i] = i * M * K, b_offsets[i] = i * K * N;
      py::gil_scoped_release release;
      k.gemm_batched(pc, pa, pb, batch, a_offsets, b_offsets, M, N, K, trans_a, trans_b);
    }
    return std::move(c);
  };
  if (py::isinstance<py::array_t<float>>(a) && a.itemsize() == 4) return run(float{});
  if (py::isinstance<py::array_t<double>>(a) && a.itemsize() == 8) return run(double{});
  return py::none();
}

}  // namespace

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
  m.def("product", [](py::handle a, py::handle b, bool trans_a, bool trans_b, py::handle out) {
    return plain_product(a, b, trans_a, trans_b, out, false);
  });
  m.def("batched_product", [](py::handle a, py::handle b, bool trans_b, py::handle out) {
    return plain_product(a, b, false, trans_b, out, true);
  });
  // A batch of products C_i = op(A_i) op(B_i): c (batch, M, N); A_i = a[a_offsets[i]:]
  // and B_i = b[b_offsets[i]:] (element offsets into the flat arrays; a broadcast
  // operand repeats one), each checked to lie inside its array.
  m.def("gemm_batched", [](py::array c, py::array a, py::array b, py::array a_offsets, py::array b_offsets, int64_t M,
                           int64_t N, int64_t K, bool trans_a, bool trans_b) {
    const char* op = "matmul";
    checked_volume(M, N, K, op);
    auto offsets = [&](const py::array& o, const char* arg, int64_t matrix, int64_t size) {
      if (!py::isinstance<py::array_t<int64_t>>(o) || o.itemsize() != 8 || !(o.flags() & py::array::c_style) || o.ndim() != 1)
        fail_type(op, arg, "must be a contiguous 1-D int64 array, got " + dtype_of(o) + " with shape " + shape_of(o));
      check_aligned(o, op, arg);
      const int64_t* p = static_cast<const int64_t*>(o.data());
      for (py::ssize_t i = 0; i < o.size(); ++i)
        if (p[i] < 0 || p[i] > size - matrix)
          fail_value(op, arg, "holds " + std::to_string(p[i]) + " at " + std::to_string(i) + ", outside an array of " +
                                  std::to_string(size) + " elements for a matrix of " + std::to_string(matrix));
      return p;
    };
    const int64_t batch = int64_t(a_offsets.size());
    with_float_type(a, op, "a", [&](auto tag) {
      using T = decltype(tag);
      const T* pa = input<T>(a, op, "a");
      const T* pb = input<T>(b, op, "b");
      T* pc = output<T>(c, op, "out");
      if (int64_t(b_offsets.size()) != batch)
        fail_value(op, "b_offsets", "has " + std::to_string(b_offsets.size()) + " entries, a_offsets " + std::to_string(batch));
      const int64_t* ao = offsets(a_offsets, "a_offsets", M * K, int64_t(a.size()));
      const int64_t* bo = offsets(b_offsets, "b_offsets", K * N, int64_t(b.size()));
      check_size(c, checked_volume(batch, M, N, op), op, "out");
      py::gil_scoped_release release;
      kernels<T>().gemm.gemm_batched(pc, pa, pb, batch, ao, bo, M, N, K, trans_a, trans_b);
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

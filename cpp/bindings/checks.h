// Argument checks shared by the bindings. The binding layer is boring on
// purpose: check dtype, contiguity, writability and sizes, take pointers,
// release the GIL, call the kernel. Every message names the op and the
// argument. shenjing.ops does the friendlier shape checks and conversions;
// these make sure that no call into _core, however made, can crash.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "shenjing/dispatch.h"

namespace shenjing {
namespace bindings {

namespace py = pybind11;

// (no iostreams: a build whose libstdc++ got linked in statically crashed in a
// stream's locale facets once NumPy had loaded the shared libstdc++)
inline std::string shape_of(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t i = 0; i < a.ndim(); ++i) s += (i ? ", " : "") + std::to_string(a.shape(i));
  if (a.ndim() == 1) s += ",";
  return s + ")";
}

inline std::string dtype_of(const py::array& a) { return py::str(a.dtype()).cast<std::string>(); }

[[noreturn]] inline void fail_type(const char* op, const char* arg, const std::string& what) {
  throw py::type_error(std::string(op) + ": " + arg + " " + what);
}
[[noreturn]] inline void fail_value(const char* op, const char* arg, const std::string& what) {
  throw py::value_error(std::string(op) + ": " + arg + " " + what);
}

// An object that is already a NumPy array (never a converted copy, whose
// pointer would dangle once the copy is dropped).
inline py::array as_ndarray(py::handle h, const char* op, const char* arg) {
  if (!py::isinstance<py::array>(h))
    fail_type(op, arg, std::string("must be a NumPy array, got ") + py::str(py::type::of(h)).cast<std::string>());
  return py::reinterpret_borrow<py::array>(h);
}

// Elements at addresses that are multiples of their size (a buffer viewed at an odd byte
// offset is not): the kernels read and write whole elements, and align their vectors.
inline void check_aligned(const py::array& a, const char* op, const char* arg) {
  if (!(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    fail_value(op, arg, "is not aligned to its " + dtype_of(a) + " elements (shape " + shape_of(a) + ")");
}

template <class T> inline const char* dtype_name() { return sizeof(T) == 4 ? "float32" : "float64"; }

template <class T> inline void check_array(const py::array& a, const char* op, const char* arg) {
  if (!py::isinstance<py::array_t<T>>(a) || a.itemsize() != sizeof(T))
    fail_type(op, arg, std::string("must be a ") + dtype_name<T>() + " array, got " + dtype_of(a) + " with shape " + shape_of(a));
  if (!(a.flags() & py::array::c_style))
    fail_value(op, arg, "must be C-contiguous, got strides that are not (shape " + shape_of(a) + ")");
  check_aligned(a, op, arg);
}

template <class T> inline const T* input(const py::array& a, const char* op, const char* arg) {
  check_array<T>(a, op, arg);
  return static_cast<const T*>(a.data());
}

template <class T> inline T* output(py::array& a, const char* op, const char* arg) {
  check_array<T>(a, op, arg);
  if (!a.writeable()) fail_value(op, arg, "is read-only (shape " + shape_of(a) + ")");
  return static_cast<T*>(a.mutable_data());
}

inline void check_size(const py::array& a, int64_t n, const char* op, const char* arg) {
  if (int64_t(a.size()) != n)
    fail_value(op, arg, "has " + std::to_string(a.size()) + " elements (shape " + shape_of(a) + "), expected " + std::to_string(n));
}

inline void check_nonnegative(int64_t v, const char* op, const char* arg) {
  if (v < 0) fail_value(op, arg, "must be >= 0, got " + std::to_string(v));
}

// outer * len * inner, refusing negative sizes and overflow
inline int64_t checked_volume(int64_t outer, int64_t len, int64_t inner, const char* op) {
  check_nonnegative(outer, op, "outer");
  check_nonnegative(len, op, "len");
  check_nonnegative(inner, op, "inner");
  int64_t v = 0;
  if (__builtin_mul_overflow(outer, len, &v) || __builtin_mul_overflow(v, inner, &v))
    fail_value(op, "shape", "overflows int64");
  return v;
}

// Calls f(T{}) with T the float type of `a` (float32 or float64).
template <class F> inline auto with_float_type(const py::array& a, const char* op, const char* arg, F f) {
  if (py::isinstance<py::array_t<float>>(a) && a.itemsize() == 4) return f(float{});
  if (py::isinstance<py::array_t<double>>(a) && a.itemsize() == 8) return f(double{});
  fail_type(op, arg, "must be a float32 or float64 array, got " + dtype_of(a) + " with shape " + shape_of(a));
}

// An uninitialised C-contiguous array whose buffer comes from (and returns to) the cache
// of large output buffers (bind_buffers.cpp); MemoryError when none can be had.
py::array cached_empty(const std::vector<py::ssize_t>& shape, const py::dtype& dtype);
// Results of at least this many elements come from that cache, smaller ones from NumPy
// (shenjing.ops reads both constants off the module: _empty says why)
constexpr int64_t kCachedAboveElements = int64_t(1) << 15;
// From this many bytes, shenjing.ops asks how much memory is free before it allocates
constexpr int64_t kAskAboveBytes = int64_t(1) << 28;

void bind_activations(py::module_& m);
void bind_losses(py::module_& m);
void bind_optim(py::module_& m);
void bind_gemm(py::module_& m);
void bind_reduce(py::module_& m);
void bind_conv(py::module_& m);
void bind_buffers(py::module_& m);

}  // namespace bindings
}  // namespace shenjing

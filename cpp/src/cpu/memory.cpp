// Memory kernels (see shenjing/memory.h).
#include "shenjing/memory.h"

#include "shenjing/dispatch.h"
#include "shenjing/elementwise.h"

namespace shenjing {
namespace SJ_ISA {
namespace {

// Plain vector loads and stores, as every other kernel does: memcpy's
// non-temporal stores would bypass the cache that the kernels' outputs go
// through, and make a different yardstick.
template <class T> void copy(T* y, const T* x, int64_t n) {
  map_unary(y, x, n, [](auto v) { return v; });
}

template <class T> void fill(MemoryKernels<T>& k) { k.copy = copy<T>; }

}  // namespace

void register_memory(KernelSet& k) {
  fill(k.f32.memory);
  fill(k.f64.memory);
}

}  // namespace SJ_ISA
}  // namespace shenjing

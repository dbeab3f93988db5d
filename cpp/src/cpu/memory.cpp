// Memory kernels (see shenjing/memory.h).
#include "shenjing/memory.h"

#include <cstring>

#include "shenjing/dispatch.h"
#include "shenjing/elementwise.h"

namespace shenjing {
namespace SJ_ISA {
namespace {

template <class T> void copy(T* y, const T* x, int64_t n) {
  parallel_chunks(n, kElementChunk, 1, [&](int64_t, int64_t begin, int64_t end) {
    std::memcpy(y + begin, x + begin, sizeof(T) * (end - begin));
  });
}

template <class T> void fill(MemoryKernels<T>& k) { k.copy = copy<T>; }

}  // namespace

void register_memory(KernelSet& k) {
  fill(k.f32.memory);
  fill(k.f64.memory);
}

}  // namespace SJ_ISA
}  // namespace shenjing

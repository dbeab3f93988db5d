// Output buffers for large results, kept for reuse.
//
// A fresh NumPy array of tens of megabytes is a new mmap: the kernel that
// fills it first page-faults every 4 KiB of it, and for a memory-bound op that
// costs as much as the op (16M floats: about 6 ms of faults against 6 ms of
// copying, measured with bench/report.py's copy row). Training and inference
// ask for the same sizes again and again, so a result buffer that its array
// no longer needs goes back to a small cache, keyed by its exact size, and
// the next request of that size gets it with its pages already mapped.
//
// The cache holds at most a fixed number of bytes (SHENJING_BUFFER_CACHE_MB;
// default 1024, or an eighth of the memory if that is less; 0 turns it off);
// a buffer that does not fit is freed. The
// arrays own their buffers through a capsule, so NumPy sees ordinary arrays.
#include <cstdint>
#include <cstdlib>
#include <map>
#include <mutex>
#include <new>
#include <string>

#include <unistd.h>

#include <pybind11/stl.h>

#include "checks.h"

namespace shenjing {
namespace bindings {
namespace {

constexpr size_t kHeader = 64;  // holds the size; keeps the data 64-byte aligned

class BufferCache {
 public:
  BufferCache() {
    const char* env = std::getenv("SHENJING_BUFFER_CACHE_MB");
    if (env && *env) {
      limit_ = size_t(std::strtoull(env, nullptr, 10)) << 20;
    } else {  // 1 GiB, or an eighth of the memory on a small machine
      limit_ = size_t(1) << 30;
      const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
      if (pages > 0 && page > 0 && size_t(pages) * size_t(page) / 8 < limit_) limit_ = size_t(pages) * size_t(page) / 8;
    }
  }

  // n bytes of 64-byte-aligned memory: a cached buffer of exactly n bytes, or a new one (nullptr if none)
  void* get(size_t n) {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      auto it = free_.find(n);
      if (it != free_.end()) {
        void* p = it->second;
        free_.erase(it);
        cached_ -= n;
        ++hits_;
        return p;
      }
      ++misses_;
    }
    void* base = std::aligned_alloc(64, kHeader + ((n + 63) / 64) * 64);
    if (!base) return nullptr;
    *static_cast<size_t*>(base) = n;
    return static_cast<char*>(base) + kHeader;
  }

  void put(void* p) {
    char* base = static_cast<char*>(p) - kHeader;
    const size_t n = *reinterpret_cast<size_t*>(base);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (cached_ + n <= limit_) {
        free_.emplace(n, p);
        cached_ += n;
        return;
      }
    }
    std::free(base);
  }

  void clear() {
    std::multimap<size_t, void*> drop;
    {
      std::lock_guard<std::mutex> lock(mutex_);
      drop.swap(free_);
      cached_ = 0;
    }
    for (auto& entry : drop) std::free(static_cast<char*>(entry.second) - kHeader);
  }

  py::dict info() {
    std::lock_guard<std::mutex> lock(mutex_);
    py::dict d;
    d["cached_bytes"] = cached_;
    d["cached_buffers"] = free_.size();
    d["limit_bytes"] = limit_;
    d["hits"] = hits_;
    d["misses"] = misses_;
    return d;
  }

 private:
  std::mutex mutex_;
  std::multimap<size_t, void*> free_;
  size_t cached_ = 0, limit_ = 0;
  uint64_t hits_ = 0, misses_ = 0;
};

// Never destroyed: arrays may outlive the module's teardown and return their buffers after it.
BufferCache& cache() {
  static BufferCache* c = new BufferCache();
  return *c;
}

}  // namespace

py::array cached_empty(const std::vector<py::ssize_t>& shape, const py::dtype& dtype) {
  size_t count = 1;
  for (py::ssize_t d : shape) {
    if (d < 0) throw py::value_error("empty: negative dimension in the shape");
    if (d > 0 && count > SIZE_MAX / size_t(d)) throw std::bad_alloc();
    count *= size_t(d);
  }
  const size_t item = size_t(dtype.itemsize());
  if (item && count > (SIZE_MAX - 2 * kHeader) / item) throw std::bad_alloc();
  void* p = cache().get(count * item);
  if (!p) throw std::bad_alloc();  // pybind11 turns it into MemoryError
  py::capsule owner(p, [](void* q) { cache().put(q); });
  return py::array(dtype, shape, p, owner);
}

void bind_buffers(py::module_& m) {
  m.def("empty", &cached_empty,
        "An uninitialised C-contiguous array whose buffer returns to shenjing's cache when the array dies.");
  m.attr("CACHED_ABOVE_ELEMENTS") = kCachedAboveElements;
  m.attr("ASK_ABOVE_BYTES") = kAskAboveBytes;
  m.def("buffer_cache_info", []() { return cache().info(); });
  m.def("empty_buffer_cache", []() { cache().clear(); });
}

}  // namespace bindings
}  // namespace shenjing

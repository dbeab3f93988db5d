// Picks the kernel table for the best instruction set the CPU and OS support.
// Compiled with the baseline flags only: nothing here may use AVX.
#include "shenjing/dispatch.h"

#include <atomic>
#ifdef _OPENMP
#include <omp.h>
#endif

#define SJ_DECLARE_REGISTRATION(ns)                \
  namespace shenjing {                            \
  namespace ns {                                  \
  void register_activations(KernelSet& k);        \
  void register_losses(KernelSet& k);             \
  void register_optim(KernelSet& k);              \
  void register_reduce(KernelSet& k);             \
  void register_gemm(KernelSet& k);               \
  void register_probes(KernelSet& k);             \
  void register_conv(KernelSet& k);               \
  void register_pool(KernelSet& k);               \
  }                                               \
  }

SJ_DECLARE_REGISTRATION(generic)
#ifdef SJ_HAVE_AVX2
SJ_DECLARE_REGISTRATION(avx2)
#endif
#ifdef SJ_HAVE_AVX512
SJ_DECLARE_REGISTRATION(avx512)
#endif

namespace shenjing {
namespace {

#define SJ_FILL_TABLE(ns, k)    \
  ns::register_activations(k);  \
  ns::register_losses(k);       \
  ns::register_optim(k);        \
  ns::register_reduce(k);       \
  ns::register_gemm(k);         \
  ns::register_probes(k);       \
  ns::register_conv(k);         \
  ns::register_pool(k);

struct Tables {
  KernelSet generic_set{}, avx2_set{}, avx512_set{};
  Tables() {
    SJ_FILL_TABLE(generic, generic_set)
#ifdef SJ_HAVE_AVX2
    SJ_FILL_TABLE(avx2, avx2_set)
#endif
#ifdef SJ_HAVE_AVX512
    SJ_FILL_TABLE(avx512, avx512_set)
#endif
  }
  const KernelSet& get(Isa isa) const {
    switch (isa) {
      case Isa::avx2: return avx2_set;
      case Isa::avx512: return avx512_set;
      default: return generic_set;
    }
  }
};

const Tables& tables() {
  static const Tables t;
  return t;
}

bool cpu_has(Isa isa) {
#if defined(__x86_64__) || defined(_M_X64)
  // libgcc's cpu model checks XCR0 too, so a feature the OS does not save
  // (AVX-512 state disabled) is reported as missing.
  __builtin_cpu_init();
  switch (isa) {
    case Isa::generic: return true;
    case Isa::avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl") &&
             __builtin_cpu_supports("fma");
  }
  return false;
#else
  return isa == Isa::generic;
#endif
}

std::atomic<int>& current() {
  static std::atomic<int> c{static_cast<int>(best_isa())};
  return c;
}

}  // namespace

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::generic: return "generic";
    case Isa::avx2: return "avx2";
    case Isa::avx512: return "avx512";
  }
  return "unknown";
}

bool isa_from_name(const std::string& name, Isa* out) {
  for (Isa isa : {Isa::generic, Isa::avx2, Isa::avx512}) {
    if (name == isa_name(isa)) {
      *out = isa;
      return true;
    }
  }
  return false;
}

bool isa_compiled(Isa isa) {
  switch (isa) {
    case Isa::generic: return true;
#ifdef SJ_HAVE_AVX2
    case Isa::avx2: return true;
#endif
#ifdef SJ_HAVE_AVX512
    case Isa::avx512: return true;
#endif
    default: return false;
  }
}

bool isa_supported(Isa isa) { return isa_compiled(isa) && cpu_has(isa); }

std::vector<Isa> supported_isas() {
  std::vector<Isa> out;
  for (Isa isa : {Isa::generic, Isa::avx2, Isa::avx512})
    if (isa_supported(isa)) out.push_back(isa);
  return out;
}

Isa best_isa() { return supported_isas().back(); }
Isa current_isa() { return static_cast<Isa>(current().load()); }
void set_isa(Isa isa) { current().store(static_cast<int>(isa)); }
namespace {
std::atomic<int>& threads() {
#ifdef _OPENMP
  static std::atomic<int> t{omp_get_max_threads()};
#else
  static std::atomic<int> t{1};
#endif
  return t;
}
}  // namespace
int thread_count() { return threads().load(std::memory_order_relaxed); }
void set_thread_count(int n) { threads().store(n < 1 ? 1 : n); }

const KernelSet& kernel_set() { return tables().get(current_isa()); }

template <> const Kernels<float>& kernels<float>() { return kernel_set().f32; }
template <> const Kernels<double>& kernels<double>() { return kernel_set().f64; }

}  // namespace shenjing

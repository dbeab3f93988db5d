// Run-time choice of the instruction set. Each kernel family is compiled once
// per instruction set (see CMakeLists.txt); the dispatcher fills one table per
// instruction set and hands out the one in use.
#pragma once
#include <string>
#include <vector>

#include "shenjing/activations.h"
#include "shenjing/conv.h"
#include "shenjing/gemm.h"
#include "shenjing/losses.h"
#include "shenjing/probes.h"
#include "shenjing/optim.h"
#include "shenjing/pool.h"
#include "shenjing/reduce.h"

namespace shenjing {

template <class T> struct Kernels {
  ActivationKernels<T> act;
  LossKernels<T> loss;
  OptimKernels<T> optim;
  ReduceKernels<T> reduce;
  GemmKernels<T> gemm;
  ProbeKernels<T> probes;
  ConvKernels<T> conv;
  PoolKernels<T> pool;
};

struct KernelSet {
  Kernels<float> f32;
  Kernels<double> f64;
};

enum class Isa : int { generic = 0, avx2 = 1, avx512 = 2 };

const char* isa_name(Isa isa);
bool isa_from_name(const std::string& name, Isa* out);
bool isa_compiled(Isa isa);            // built into this library
bool isa_supported(Isa isa);           // compiled, and the CPU and OS can run it
std::vector<Isa> supported_isas();
Isa best_isa();
Isa current_isa();
void set_isa(Isa isa);                 // caller checks isa_supported first

// Threads used by every parallel region (set_num_threads in Python). Kept
// here, not in OpenMP's per-thread setting, so that kernels called from any
// Python thread use it.
int thread_count();
void set_thread_count(int n);

const KernelSet& kernel_set();
template <class T> const Kernels<T>& kernels();

}  // namespace shenjing

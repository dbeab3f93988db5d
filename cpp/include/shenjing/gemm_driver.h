// The GEMM machinery shared by the kernel families of one instruction set:
// packing, the register-tile micro-kernel, the epilogue, and the BLIS-style
// driver over operand providers (gemm.cpp wraps it for plain matrices,
// conv.cpp for images). Block sizes are in gemm_config.h.
//
// Every element of C is computed by one thread, summing over k in one fixed
// order, so results are bit-identical with any thread count.
#pragma once

#include <cstdint>
#include <cstring>
#include <vector>

#include "shenjing/elementwise.h"
#include "shenjing/gemm.h"
#include "shenjing/gemm_config.h"

#ifndef SJ_ISA
#error "gemm_driver.h is only for the kernel files compiled once per instruction set"
#endif

namespace shenjing {
namespace SJ_ISA {
namespace gemm_detail {

// --- epilogue: bias and activation on one row of C -------------------------------

template <class T> void epilogue_row(T* row, int64_t n, const T* col_bias, T row_bias, GemmActivation act) {
  using V = typename Simd<T>::V;
  constexpr int64_t L = Simd<T>::lanes;
  auto f = [act](V v) -> V {
    switch (act) {
      case GemmActivation::relu: return v < T(0) ? vsplat(T(0)) : v;
      case GemmActivation::gelu: return vgelu(v);
      case GemmActivation::gelu_tanh: return vgelu_tanh(v);
      case GemmActivation::sigmoid: return vsigmoid(v);
      case GemmActivation::tanh: return vtanh(v);
      default: return v;
    }
  };
  int64_t j = 0;
  for (; j + L <= n; j += L) {
    V v = vload(row + j) + row_bias;
    if (col_bias) v += vload(col_bias + j);
    vstore(row + j, f(v));
  }
  if (j < n) {
    V v = vload_partial(row + j, n - j, T(0)) + row_bias;
    if (col_bias) v += vload_partial(col_bias + j, n - j, T(0));
    vstore_partial(row + j, f(v), n - j);
  }
}

struct Epilogue {
  GemmBias bias_kind;
  GemmActivation activation;
  bool needed() const { return bias_kind != GemmBias::none || activation != GemmActivation::none; }
};

// c[i, j] += bias (a per-row or a per-column bias, no activation): the common epilogue,
// inlined into the tile loop (through epilogue_row, a call per row of a 12x32 tile was
// 13% of a LeNet conv1 forward)
template <class T>
inline void bias_tile(T* c, int64_t ldc, int64_t row0, int64_t col0, int64_t m, int64_t n, const T* bias,
                      GemmBias kind) {
  using V = typename Simd<T>::V;
  constexpr int64_t L = Simd<T>::lanes;
  for (int64_t i = 0; i < m; ++i) {
    T* row = c + i * ldc;
    if (kind == GemmBias::per_row) {
      const T b = bias[row0 + i];
      int64_t j = 0;
      for (; j + L <= n; j += L) vstore(row + j, vload(row + j) + b);
      for (; j < n; ++j) row[j] += b;
    } else {
      const T* b = bias + col0;
      int64_t j = 0;
      for (; j + L <= n; j += L) vstore(row + j, vload(row + j) + vload(b + j));
      for (; j < n; ++j) row[j] += b[j];
    }
  }
}

template <class T>
void epilogue_tile(T* c, int64_t ldc, int64_t row0, int64_t col0, int64_t m, int64_t n, const T* bias,
                   const Epilogue& ep) {
  if (ep.activation == GemmActivation::none) {
    if (ep.bias_kind != GemmBias::none) bias_tile(c, ldc, row0, col0, m, n, bias, ep.bias_kind);
    return;
  }
  for (int64_t i = 0; i < m; ++i) {
    const T* col_bias = ep.bias_kind == GemmBias::per_column ? bias + col0 : nullptr;
    const T row_bias = ep.bias_kind == GemmBias::per_row ? bias[row0 + i] : T(0);
    epilogue_row(c + i * ldc, n, col_bias, row_bias, ep.activation);
  }
}

// --- packing -----------------------------------------------------------------------

#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
// r[i][j] -> r[j][i] for 16 rows of 16 floats (unpack, in-lane shuffle, two lane shuffles)
inline void transpose16x16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 16; i += 2) {
    t[i] = _mm512_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm512_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 16; i += 4) {
    r[i] = _mm512_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm512_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm512_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int h = 0; h < 16; h += 8)
    for (int i = 0; i < 4; ++i) {
      t[h + i] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0x88);
      t[h + i + 4] = _mm512_shuffle_f32x4(r[h + i], r[h + i + 4], 0xDD);
    }
  for (int i = 0; i < 8; ++i) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0x88);
    r[i + 8] = _mm512_shuffle_f32x4(t[i], t[i + 8], 0xDD);
  }
}

// `rows` (<= 16) rows of a row-major block (stride lda, kc long) written transposed:
// dst[k stride + r] for k < kc and r < width (rows past `rows` as 0), 16 k at a time by
// sixteen masked loads, a register transpose and `width`-lane stores. Packs A panels
// (width MR) and transposed B panels (two calls of width 16).
// r (16 rows of 16) transposed, its first `count` rows stored at dst + k stride (the
// `lanes` of each): the last step of every transposing packer
inline void transpose_store(__m512 r[16], float* dst, int64_t stride, __mmask16 lanes, int64_t count) {
  transpose16x16(r);
  for (int64_t k = 0; k < count; ++k) _mm512_mask_storeu_ps(dst + k * stride, lanes, r[k]);
}

inline void pack_rows_transposed(float* dst, int64_t stride, int64_t width, const float* src, int64_t lda,
                                 int64_t rows, int64_t kc) {
  for (int64_t kb = 0; kb < kc; kb += 16) {
    const int64_t depth = kc - kb < 16 ? kc - kb : 16;
    __m512 r[16];
    for (int64_t i = 0; i < 16; ++i)
      r[i] = i < rows ? _mm512_maskz_loadu_ps(lanes_below(depth), src + i * lda + kb) : _mm512_setzero_ps();
    transpose_store(r, dst + kb * stride, stride, lanes_below(width), depth);
  }
}
#endif

#if defined(__AVX2__) && SJ_VECTOR_BYTES == 32
// r[i][j] -> r[j][i] for 8 rows of 8 floats (unpack, in-lane shuffle, lane permute)
inline void transpose8x8(__m256 r[8]) {
  __m256 t[8];
  for (int i = 0; i < 8; i += 2) {
    t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]);
    t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  }
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44);
    r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44);
    r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  for (int i = 0; i < 4; ++i) {
    t[i] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x20);
    t[i + 4] = _mm256_permute2f128_ps(r[i], r[i + 4], 0x31);
  }
  for (int i = 0; i < 8; ++i) r[i] = t[i];
}
#endif

// A block (rows i0 .. i0+m, depth k0 .. k0+kc) into MR-row panels:
// panel p holds op(A)(i0 + p MR + r, k0 + k) at [p kc MR + k MR + r], rows past m are 0.
template <class T>
void pack_a(T* dst, const T* a, bool trans_a, int64_t M, int64_t K, int64_t i0, int64_t m, int64_t k0, int64_t kc) {
  constexpr int MR = GemmBlocking<T>::MR;
  constexpr int64_t L = Simd<T>::lanes;
  for (int64_t p = 0; p * MR < m; ++p) {
    T* panel = dst + p * kc * MR;
    const int64_t rows = m - p * MR < MR ? m - p * MR : MR;
    if (trans_a) {  // op(A)(i, k) = a[k M + i]: each k copies a run of `rows` values (and zeros past them)
      for (int64_t k = 0; k < kc; ++k) {
        const T* src = a + (k0 + k) * M + i0 + p * MR;
        for (int64_t r = 0; r < MR; r += L) {
          const int64_t n = (MR - r < L ? MR - r : L), valid = rows - r < 0 ? 0 : (rows - r < n ? rows - r : n);
          const auto v = valid == L ? vload(src + r) : valid > 0 ? vload_partial(src + r, valid, T(0)) : vsplat(T(0));
          if (n == L) vstore(panel + k * MR + r, v);
          else vstore_partial(panel + k * MR + r, v, n);
        }
      }
      continue;
    }
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
    if constexpr (sizeof(T) == 4 && MR <= 16) {  // 16 k at a time: a row per register, one transpose
      pack_rows_transposed(panel, MR, MR, a + (i0 + p * MR) * K + k0, K, rows, kc);
      continue;
    }
#endif
    for (int64_t r = 0; r < MR; ++r) {
      if (r >= rows) {
        for (int64_t k = 0; k < kc; ++k) panel[k * MR + r] = T(0);
      } else {
        const T* src = a + (i0 + p * MR + r) * K + k0;
        for (int64_t k = 0; k < kc; ++k) panel[k * MR + r] = src[k];
      }
    }
  }
}

// One NR-column panel of op(B) (depth k0 .. k0+kc, columns j0 .. j0+n):
// [k NR + j], columns past n are 0.
template <class T>
void pack_b_panel(T* dst, const T* b, bool trans_b, int64_t N, int64_t K, int64_t k0, int64_t kc, int64_t j0, int64_t n) {
  constexpr int64_t NR = GemmBlocking<T>::NV * Simd<T>::lanes;
#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
  if constexpr (sizeof(T) == 4 && NR == 32) {
    if (trans_b) {  // in 16x16 register transposes, instead of a strided store per element
      for (int64_t jh = 0; jh < NR; jh += 16)
        pack_rows_transposed(dst + jh, NR, 16, b + (j0 + jh) * K + k0, K, n - jh < 0 ? 0 : n - jh, kc);
      return;
    }
  }
#endif
  if (trans_b) {  // op(B)(k, j) = b[j K + k]
    for (int64_t j = 0; j < NR; ++j) {
      if (j < n) {
        const T* src = b + (j0 + j) * K + k0;
        for (int64_t k = 0; k < kc; ++k) dst[k * NR + j] = src[k];
      } else {
        for (int64_t k = 0; k < kc; ++k) dst[k * NR + j] = T(0);
      }
    }
  } else {  // row by row, vectors of B with the columns past n as 0
    constexpr int64_t L = Simd<T>::lanes;
    for (int64_t k = 0; k < kc; ++k) {
      const T* src = b + (k0 + k) * N + j0;
      T* row = dst + k * NR;
      for (int64_t j = 0; j < NR; j += L) {
        const int64_t cols = n - j;
        vstore(row + j, cols >= L ? vload(src + j) : cols > 0 ? vload_partial(src + j, cols, T(0)) : vsplat(T(0)));
      }
    }
  }
}

// One NR-column panel of B read through a row table (see PackedOperand::row_table):
// [k NR + j] = base[rows[k] + j], columns past n are 0.
template <class T> void pack_table_rows(T* dst, const T* base, const int64_t* rows, int64_t kc, int64_t n) {
  constexpr int64_t NR = GemmBlocking<T>::NV * Simd<T>::lanes;
  for (int64_t k = 0; k < kc; ++k)
    for (int64_t j = 0; j < NR; ++j) dst[k * NR + j] = j < n ? base[rows[k] + j] : T(0);
}

// --- micro-kernel --------------------------------------------------------------------

// c[0:m, 0:n] (row stride ldc) = alpha * A_panel B_panel + (first ? beta c : c)
// for m <= MR, n <= NR. A_panel: packed (kc x MR, [k MR + r], rows past m are 0);
// B_panel: kc rows of NR values, b_ks apart. Only the m x n tile of c is read
// or written, and c is not read at all when first and beta == 0 (it may hold NaN).
// Only the first Rows rows and NV vectors of the tile are computed (Rows <= MR,
// NV <= GemmBlocking's NV), so an edge tile of 1 row or 10 columns does not cost
// a full one; the packed A panel keeps its MR stride.
// Where A comes from: packed as above; its rows in place (a[r a_rs + k]); or its columns
// in place, the transpose of a row-major matrix, whose k-th column of the tile is the MR
// values at a + k a_ks (laid out as a packed panel with a stride of a_ks, not MR).
// How B's rows are read (BRead):
//   strided      row k at b + k b_ks;
//   prefetched   the same, the row kBAheadRows on asked for (full tiles over the driver's
//                shared B): a panel of the shared packed B, which every row tile of a block
//                reads from L2 (a chunk of 16 panels is 512 KiB), is brought into L1 ahead
//                (bench/ab.py, 2 threads: 2048^3 0.97-0.99, 1024^3 0.98-0.99; 4 and 16 rows
//                ahead measured the same as 8). Not for a task's own panels, which gained
//                nothing (64x128x784 1.01, LeNet and 64-channel convolutions 1.00);
//   copied       strided, in place, each row also stored to b_copy, packed, with the row
//                kCopyAheadRows on asked for (micro_kernel_packing_b; 12 and 24 measured the same);
//   at_offsets   row k at b + b_rows[k]: B read in place through its row table (see
//                PackedOperand::row_table).
enum class ASource { packed, rows, columns };
enum class BRead { strided, prefetched, copied, at_offsets };
constexpr int64_t kCopyAheadRows = 16, kBAheadRows = 8;
template <class T, ASource kA, int Rows, int NV, BRead kB = BRead::strided>
inline void micro_kernel_impl(int64_t kc, const T* __restrict a, int64_t a_rs, const T* __restrict b, int64_t b_ks,
                              T* c, int64_t ldc, int64_t m, int64_t n, T alpha, T beta, bool first,
                              T* __restrict b_copy = nullptr, const int64_t* __restrict b_rows = nullptr) {
  constexpr bool kPackedA = kA != ASource::rows;  // a k step reads Rows consecutive values
  const int64_t a_ks = kA == ASource::columns ? a_rs : GemmBlocking<T>::MR;
  using V = typename Simd<T>::V;
  constexpr int64_t L = Simd<T>::lanes;
  constexpr int MR = GemmBlocking<T>::MR;
  V acc[Rows][NV];
#pragma GCC unroll 32
  for (int i = 0; i < Rows; ++i)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[i][v] = vsplat(T(0));
  // ask for the C tile now, so a miss overlaps the k loop instead of stalling the
  // update at the end (as BLIS does; within noise since C is written along its rows)
#pragma GCC unroll 32
  for (int i = 0; i < Rows; ++i) {
    if (i >= m) break;
    __builtin_prefetch(c + i * ldc, 1, 3);
    __builtin_prefetch(c + i * ldc + NV * L - 1, 1, 3);
  }
  // A in place: row i of the tile is row i % 3 of a group of three that starts at a_row[i / 3],
  // so every broadcast addresses a_row[g] + (i % 3) a_rs with a scaled index, and k moves
  // the group pointers (with a pointer per row, the offsets of 12 rows were reloaded from the
  // stack every step: 64x3248x576 ran 6% slower than with A packed)
  constexpr int kGroups = kPackedA ? 1 : (Rows + 2) / 3;
  const T* a_row[kGroups];
#pragma GCC unroll 8
  for (int g = 0; g < kGroups; ++g) a_row[g] = a + 3 * g * a_rs;
#pragma GCC unroll 4
  for (int64_t k = 0; k < kc; ++k) {
    V bv[NV];
    const T* b_row = kB == BRead::at_offsets ? b + b_rows[k] : b + k * b_ks;
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) bv[v] = vload(b_row + v * L);
    if (kB == BRead::prefetched) {
      const char* ahead = reinterpret_cast<const char*>(b + (k + kBAheadRows) * b_ks);
      __builtin_prefetch(ahead, 0, 3);
      if (sizeof(T) * NV * L > 64) __builtin_prefetch(ahead + 64, 0, 3);
    }
    if (kB == BRead::copied) {
      const char* ahead = reinterpret_cast<const char*>(b + (k + kCopyAheadRows) * b_ks);
      __builtin_prefetch(ahead, 0, 3);
      __builtin_prefetch(ahead + 64, 0, 3);
      __builtin_prefetch(ahead + NV * L * sizeof(T) - 1, 0, 3);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) vstore(b_copy + k * (NV * L) + v * L, bv[v]);
    }
#pragma GCC unroll 32
    for (int i = 0; i < Rows; ++i) {
      const V ai = vsplat(kPackedA ? a[k * a_ks + i] : a_row[i / 3][(i % 3) * a_rs]);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[i][v] += ai * bv[v];
    }
    if (!kPackedA) {
#pragma GCC unroll 8
      for (int g = 0; g < kGroups; ++g) ++a_row[g];
    }
  }
  const bool reads_c = !first || beta != T(0);
  const T c_scale = first ? beta : T(1);
#pragma GCC unroll 32
  for (int i = 0; i < Rows; ++i) {
    if (i >= m) break;
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) {
      T* cp = c + i * ldc + v * L;
      const int64_t cols = n - v * L;
      if (cols >= L) {
        V r = acc[i][v] * alpha;
        if (reads_c) r += c_scale * vload(cp);
        vstore(cp, r);
      } else if (cols > 0) {
        V r = acc[i][v] * alpha;
        if (reads_c) r += c_scale * vload_partial(cp, cols, T(0));
        vstore_partial(cp, r, cols);
      }
    }
  }
}

// One vector wide when the panel is (N <= 16), else NV vectors. B prefetched is for full
// packed tiles alone (the driver's shared B); the other tiles read it strided.
template <class T, ASource kA, int Rows, BRead kB = BRead::strided>
inline void micro_kernel_cols(int64_t kc, const T* a, int64_t a_rs, const T* b, int64_t b_ks, T* c, int64_t ldc,
                              int64_t m, int64_t n, T alpha, T beta, bool first, const int64_t* b_rows = nullptr) {
  constexpr int NV = GemmBlocking<T>::NV;
  constexpr bool kFullPacked = kA == ASource::packed && Rows == GemmBlocking<T>::MR;
  constexpr BRead kRead = kB == BRead::prefetched && !kFullPacked ? BRead::strided : kB;
  if (NV > 1 && n <= Simd<T>::lanes)
    micro_kernel_impl<T, kA, Rows, 1, kRead>(kc, a, a_rs, b, b_ks, c, ldc, m, n, alpha, beta, first, nullptr, b_rows);
  else
    micro_kernel_impl<T, kA, Rows, NV, kRead>(kc, a, a_rs, b, b_ks, c, ldc, m, n, alpha, beta, first, nullptr, b_rows);
}

// A is packed (a_rs == 0: [k MR + r]), or read in place: from row-major op(A)
// (a_rs > 0, its row stride: a[r a_rs + k]), or from the row-major transpose of op(A)
// (a_rs < 0, -a_rs its row stride: a[k (-a_rs) + r]), which saves packing A when N is
// small and packing would cost as much as the product. The driver reads A in place
// only for full row tiles; a short packed one computes its rows rounded up to even, or
// its one row: 37 rows as 12 + 12 + 12 + 1, a 10-row product as 10 rows (with tiles of a
// third and two thirds of MR these computed 12 + 12 + 12 + 4 and 12; bench/ab.py, 2 threads:
// 37x613x1511 0.96-0.98, 10x128x256 0.94, 6x200x300 0.94, 2x512x512 0.89, 128x10x256 ta 0.96).
template <class T, int Rows, BRead kB = BRead::strided>
inline void micro_kernel_packed(int64_t kc, const T* a, const T* b, int64_t b_ks, T* c, int64_t ldc, int64_t m,
                                int64_t n, T alpha, T beta, bool first, const int64_t* b_rows = nullptr) {
  constexpr int MR = GemmBlocking<T>::MR;
  if constexpr (Rows >= MR) {
    micro_kernel_cols<T, ASource::packed, MR, kB>(kc, a, 0, b, b_ks, c, ldc, m, n, alpha, beta, first, b_rows);
  } else {
    if (m <= Rows)
      micro_kernel_cols<T, ASource::packed, Rows, kB>(kc, a, 0, b, b_ks, c, ldc, m, n, alpha, beta, first, b_rows);
    else
      micro_kernel_packed<T, Rows + 2, kB>(kc, a, b, b_ks, c, ldc, m, n, alpha, beta, first, b_rows);
  }
}
// (The driver reads A in place by rows only under a B read strided, so the row-table form
// has no rows form, and by columns never under a shared B.)
template <class T, BRead kB = BRead::strided>
inline void micro_kernel(int64_t kc, const T* a, int64_t a_rs, const T* b, int64_t b_ks, T* c, int64_t ldc,
                         int64_t m, int64_t n, T alpha, T beta, bool first, const int64_t* b_rows = nullptr) {
  constexpr int MR = GemmBlocking<T>::MR;
  if (kB == BRead::strided && a_rs > 0)
    micro_kernel_cols<T, ASource::rows, MR>(kc, a, a_rs, b, b_ks, c, ldc, m, n, alpha, beta, first);
  else if (a_rs < 0)
    micro_kernel_cols<T, ASource::columns, MR, kB>(kc, a, -a_rs, b, b_ks, c, ldc, m, n, alpha, beta, first, b_rows);
  else if (m == 1)
    micro_kernel_cols<T, ASource::packed, 1, kB>(kc, a, 0, b, b_ks, c, ldc, m, n, alpha, beta, first, b_rows);
  else
    micro_kernel_packed<T, 2, kB>(kc, a, b, b_ks, c, ldc, m, n, alpha, beta, first, b_rows);
}

// A tile of one or two packed rows over kWideRowPanels / rows full panels of B read in
// place (every one of their columns is read, n of them written): a tile of one row over
// one panel keeps only NV = 2 sums going, where the FMA's latency needs 8 in flight, so
// each k step waited it out. The same sums in the same order. bench/ab.py, 2 threads:
// 1x512x512 0.76, 1x256x256 0.77, 1x4096x1024 0.86, 2x512x512 0.90, 2x100x300 0.97.
constexpr int kWideRowPanels = 4;
template <class T>
inline void micro_kernel_wide_rows(int64_t kc, const T* a, const T* b, int64_t b_ks, T* c, int64_t ldc, int64_t m,
                                   int64_t n, T alpha, T beta, bool first) {
  constexpr int NV = GemmBlocking<T>::NV;
  if (m == 1)
    micro_kernel_impl<T, ASource::packed, 1, kWideRowPanels * NV>(kc, a, 0, b, b_ks, c, ldc, m, n, alpha, beta, first);
  else
    micro_kernel_impl<T, ASource::packed, 2, kWideRowPanels / 2 * NV>(kc, a, 0, b, b_ks, c, ldc, m, n, alpha, beta,
                                                                      first);
}

// A full MR x NR tile whose B panel is read in place (kc rows, b_ks apart) and copied,
// as it is read, to b_copy in the packed layout ([k NR + j]) for the row tiles after it,
// so that the packing's reads of B overlap this tile's arithmetic instead of running
// before it: packing B was a third of a 37x613x1511 product on one thread (its 3.7 MB
// come from L3 at a single core's ~18 GB/s). Each step asks for the row kCopyAheadRows
// on, since rows of B apart by more than 2 KiB defeat the hardware's stride prefetcher.
// bench/ab.py, 2 threads, new/old: 37x613x1511 0.84 (ta 0.82), 24x1000x1000 0.80,
// 64x128x784 0.91 (ta 0.91), 200x200x200 0.95; without the prefetch 37x613x1511 was 0.97.
template <class T>
inline void micro_kernel_packing_b(int64_t kc, const T* a, int64_t a_rs, const T* b, int64_t b_ks, T* b_copy, T* c,
                                   int64_t ldc, T alpha, T beta, bool first) {
  constexpr int MR = GemmBlocking<T>::MR, NV = GemmBlocking<T>::NV;
  constexpr int64_t NR = NV * Simd<T>::lanes;
  if (a_rs > 0)
    micro_kernel_impl<T, ASource::rows, MR, NV, BRead::copied>(kc, a, a_rs, b, b_ks, c, ldc, MR, NR, alpha, beta,
                                                               first, b_copy);
  else if (a_rs < 0)
    micro_kernel_impl<T, ASource::columns, MR, NV, BRead::copied>(kc, a, -a_rs, b, b_ks, c, ldc, MR, NR, alpha, beta,
                                                                  first, b_copy);
  else
    micro_kernel_impl<T, ASource::packed, MR, NV, BRead::copied>(kc, a, 0, b, b_ks, c, ldc, MR, NR, alpha, beta,
                                                                 first, b_copy);
}

// --- operand providers --------------------------------------------------------------
// A provider packs blocks of its operand for the driver, and says whether
// the micro-kernel may read it in place (row-major, unit stride along the
// other dimension) at at(), row_stride() apart.

// A provider that is only ever packed (an image, strided samples): derive from
// this and define pack().
template <class T> struct PackedOperand {
  static constexpr bool kMayBeInPlace = false;  // the driver compiles its in-place forms only where true
  static constexpr bool kMayHaveRowTable = false;  // the same for row_table()
  // B whose rows lie in place at offsets: B(k, j0 + j) = panel(j0)[row_table()[k] + j] for a
  // panel's NR columns (j past N read, within the allocation, and dropped); nullptr otherwise
  const int64_t* row_table() const { return nullptr; }
  const T* panel(int64_t) const { return nullptr; }
  bool in_place() const { return false; }
  bool columns_in_place() const { return false; }  // see MatrixA
  const T* at(int64_t, int64_t) const { return nullptr; }
  int64_t row_stride() const { return 0; }
  const T* packed(int64_t, int64_t, int64_t) const { return nullptr; }  // see PackedPanelsA
  bool fixed_passes() const { return false; }  // see PackedPanelsA
};

// The depth of the driver's passes over K: KC deep, in passes of equal depth (784 as
// 4 x 196, not 3 x 256 + 16), rounded up to 8. B read in place (row_width: the width of
// the rows of B a pass reads): up to 4 KC deep, but no more rows than fill
// kGemmInPlacePassBytes, so that the panels after the first find their lines of those
// rows still in L2 (each row a page apart from the next when N is 1024: 1024 rows a pass
// made every panel fetch its own lines; 8x1024x1024 ran 0.65x the time this way,
// 12x4096x512 0.64x, 1x4096x4096 0.41x, on one thread in a C++ loop).
template <class T> inline int64_t gemm_pass_depth(int64_t K, bool b_in_place, int64_t row_width = 0) {
  if (K <= 0) return 8;  // no passes (a convolution over 0 channels): no division by 0 passes
  int64_t max_depth = b_in_place ? 4 * GemmBlocking<T>::KC : GemmBlocking<T>::KC;
  if (b_in_place && row_width > 0) {
    const int64_t rows = kGemmInPlacePassBytes / (row_width * int64_t(sizeof(T)));
    max_depth = rows < kGemmInPlaceMinDepth ? kGemmInPlaceMinDepth : (rows < max_depth ? rows : max_depth);
  }
  return ceil_div(ceil_div(K, ceil_div(K, max_depth)), int64_t(8)) * 8;
}

// op(A) packed once for all its rows and its whole depth, for a product repeated with
// the same A (a convolution's weights, sample after sample) by a driver whose B is
// packed: pass by pass (gemm_pass_depth), each pass pack_a's layout for all the rows
// (tile t at t kc MR, rows past M zero), so every pass reads its panels where they lie.
template <class T> struct PackedPanelsA : PackedOperand<T> {
  const T* panels;
  int64_t M, K;
  static int64_t padded(int64_t rows) { return ceil_div(rows, int64_t(GemmBlocking<T>::MR)) * GemmBlocking<T>::MR; }
  static int64_t size(int64_t M, int64_t K) { return padded(M) * K; }
  // dst (size(M, K)) = the panels of op(A), a: (M, K), or (K, M) when trans
  static void pack_all(T* dst, const T* a, bool trans, int64_t M, int64_t K) {
    const int64_t depth = gemm_pass_depth<T>(K, false);
    for (int64_t pc = 0; pc < K; pc += depth)
      pack_a(dst + pc * padded(M), a, trans, M, K, 0, M, pc, K - pc < depth ? K - pc : depth);
  }
  // i0: a multiple of MR (as the driver's blocks start), k0: a pass's start
  const T* packed(int64_t i0, int64_t k0, int64_t kc) const {
    return panels + k0 * padded(M) + (i0 / GemmBlocking<T>::MR) * kc * GemmBlocking<T>::MR;
  }
  bool fixed_passes() const { return true; }  // the driver's passes must be gemm_pass_depth(K, false) deep
  // (the driver asks packed() first, which always answers; a copy for a caller that wants one)
  void pack(T* dst, int64_t i0, int64_t m, int64_t k0, int64_t kc) const {
    std::memcpy(dst, packed(i0, k0, kc), sizeof(T) * size_t(padded(m) * kc));
  }
};

// op(A) of a row-major matrix a: (M, K), or (K, M) when trans
template <class T> struct MatrixA {
  const T* a;
  bool trans;
  int64_t M, K;
  void pack(T* dst, int64_t i0, int64_t m, int64_t k0, int64_t kc) const { pack_a(dst, a, trans, M, K, i0, m, k0, kc); }
  bool in_place() const { return !trans; }
  // transposed: op(A)'s columns lie in place, each k a run of M values (see micro_kernel)
  bool columns_in_place() const { return trans; }
  const T* at(int64_t i, int64_t k) const { return trans ? a + k * M + i : a + i * K + k; }
  int64_t row_stride() const { return trans ? -M : K; }  // negative: the columns' stride (micro_kernel's a_rs)
  const T* packed(int64_t, int64_t, int64_t) const { return nullptr; }
  bool fixed_passes() const { return false; }
};

// op(B) of a row-major matrix b: (K, N), or (N, K) when trans
template <class T> struct MatrixB {
  static constexpr bool kMayBeInPlace = true, kMayHaveRowTable = false;
  const int64_t* row_table() const { return nullptr; }
  const T* panel(int64_t) const { return nullptr; }
  const T* b;
  bool trans;
  int64_t N, K;
  void pack(T* dst, int64_t k0, int64_t kc, int64_t j0, int64_t n) const { pack_b_panel(dst, b, trans, N, K, k0, kc, j0, n); }
  bool in_place() const { return !trans; }
  const T* at(int64_t k, int64_t j) const { return b + k * N + j; }
  int64_t row_stride() const { return N; }
};

// The driver: C (M x N, row-major) = act(alpha op(A) op(B) + beta C + bias)
// on `threads` threads (1 when the caller parallelises itself, as
// convolution does over samples). op(A) and op(B) come from providers (see
// MatrixA / MatrixB), so convolution packs its panels straight from the
// image instead of materialising im2col buffers.
template <class T, class AProvider, class BProvider>
void gemm_driver(T* c, const AProvider& A, const BProvider& B, int64_t M, int64_t N, int64_t K, T alpha, T beta,
                 const T* bias, GemmBias bias_kind, GemmActivation activation, int threads) {
  using Blk = GemmBlocking<T>;
  constexpr int MR = Blk::MR;
  constexpr int64_t NR = Blk::NV * Simd<T>::lanes;
  if (M == 0 || N == 0) return;
  const Epilogue ep{bias_kind, activation};
  if (K == 0) {  // C = beta C (+ bias, activation)
    for (int64_t i = 0; i < M * N; ++i) c[i] = beta != T(0) ? beta * c[i] : T(0);
    if (ep.needed()) epilogue_tile(c, N, 0, 0, M, N, bias, ep);
    return;
  }

  // Large products with several row blocks pack each KC x NC panel of B once, shared
  // by all tasks. The others skip that pass: each task packs the panels it uses (or,
  // for a single row tile, reads B in place), and the tasks split the columns of C
  // when there are enough panels for every thread, else its rows. (Within one row
  // block every panel is packed once either way, and a task's own panels stay in L2
  // where the shared pass writes all of B out and reads it back.) B whose rows lie in place
  // at offsets (a row table, see PackedOperand) is read in place by every tile.
  const int64_t* const b_rows = BProvider::kMayHaveRowTable ? B.row_table() : nullptr;
  const bool shared_b = 2.0 * double(M) * double(N) * double(K) > kGemmDirectFlops && M > Blk::MC && !b_rows;
  // B in place only for a single row tile, which reads each panel once: a panel
  // used by several tiles is packed, because KC rows of B a power-of-two stride
  // apart fall in a few L1 sets and miss on every reuse (64x512x784 ran at 51
  // GFLOP/s with B in place)
  const bool b_in_place = !shared_b && B.in_place() && M <= MR && !A.fixed_passes();
  // a product below a parallel region's worth (see `parallel` below) is split as for one
  // thread: split for two and run on one, 128x10x256 packed its B panel once per half.
  // A single row tile reading B in place splits its panels from less work, counted as at
  // least 4 rows, since a k step of a shorter tile waits on the FMA's latency anyway. In
  // one process, 2 threads against 1 (static schedule, see below): 1x128x1024 0.79,
  // 4x128x1024 0.71, 10x256x256 0.79, 10x128x512 0.81 run split; 10x128x256 (128x10x256
  // ta as its transpose) 1.03, 8x128x256 1.14, 2x256x256 1.08 run on one thread.
  const double parallel_flops = (b_in_place ? 24.0 : 64.0) * kParallelMinWork;
  const int64_t work_rows = b_in_place && M < 4 ? 4 : M;
  auto work = [&](int64_t columns) { return 2.0 * double(work_rows) * double(columns) * double(K); };
  if (!shared_b && work(N < Blk::NC ? N : Blk::NC) < parallel_flops) threads = 1;
  // (fewer panels than threads, as for a 10-column output: split the rows, each
  // task packing the few panels itself)
  const bool split_columns = !shared_b && !b_in_place && ceil_div(N < Blk::NC ? N : Blk::NC, NR) >= threads;
  // rows per task: MC, or fewer so that a short M still gives every thread work
  // When tasks split the rows, make the blocks even: a multiple of `threads`
  // blocks of about equal height (256 rows as 192 + 64 would leave one thread idle).
  // That is also how columns split over more than MC rows go, as row blocks first
  // (a Linear layer's weight gradient, 256x784x128, ran as 192 + 64 rows: bench/ab.py,
  // 2 threads, 0.70). With B shared, tasks come from row blocks first (4 per thread, of at least 4 MR
  // rows), column groups only after: a row block packs its A once for all its panels,
  // where two groups pack it twice (on a narrow N, such as a weight gradient's 64
  // outputs, that was a third of the time).
  const bool even_rows = threads > 1 && (!split_columns || M > Blk::MC);
  int64_t mc = Blk::MC;
  if (even_rows) {
    int64_t blocks = ceil_div(M, int64_t(threads) * Blk::MC) * threads;
    if (shared_b && blocks < 4 * threads) blocks = 4 * threads;
    mc = ceil_div(ceil_div(M, blocks), int64_t(MR)) * MR;
    if (shared_b && mc < 4 * MR) mc = 4 * MR;
  }
  const int64_t m_blocks = ceil_div(M, mc);
  // Row tiles dealt to the blocks so that each thread's share comes out even when the
  // threads take blocks in turn: per thread, its tiles split over its blocks (1024 rows
  // as 8 blocks of 132 rows left the last 100 and one thread 44 tiles to the other's 41).
  // Block ib holds rows [block_row[ib], block_row[ib + 1]).
  std::vector<int64_t> block_row(size_t(m_blocks) + 1, 0);  // read by every thread of the regions below
  const int64_t tiles = ceil_div(M, int64_t(MR));
  const bool dealt = even_rows && m_blocks % threads == 0 && m_blocks <= tiles;
  for (int64_t ib = 0; ib < m_blocks; ++ib) {
    int64_t rows = mc;
    if (dealt) {
      const int64_t rounds = m_blocks / threads, t = ib % threads, r = ib / threads;
      const int64_t share = tiles / threads + (t < tiles % threads ? 1 : 0);
      rows = (share / rounds + (r < share % rounds ? 1 : 0)) * MR;
    }
    block_row[size_t(ib) + 1] = block_row[size_t(ib)] + rows < M ? block_row[size_t(ib)] + rows : M;
  }

  static thread_local std::vector<T> b_buffer;
  for (int64_t jc = 0; jc < N; jc += Blk::NC) {
    const int64_t nc = N - jc < Blk::NC ? N - jc : Blk::NC;
    const int64_t n_panels = ceil_div(nc, NR);
    // column groups per row block: enough tasks to balance the threads (4 per
    // thread on large products; one per thread on small ones, where every
    // group re-packs its rows of A)
    // (one thread: one group, so no block of A is packed twice)
    int64_t groups = threads == 1 ? 1 : ceil_div((shared_b ? 4 : 1) * int64_t(threads), m_blocks);
    groups = groups < 1 ? 1 : (groups > n_panels ? n_panels : groups);
    const int64_t panels_per_group = ceil_div(n_panels, groups);
    groups = ceil_div(n_panels, panels_per_group);
    const int64_t tasks = m_blocks * groups;

    // B read in place: deeper passes save passes over C, as long as the rows a pass reads
    // stay in L2; B packed (shared or per task): KC deep, so that an A micro-panel stays
    // in L1 and a chunk of B panels in L2 (see gemm_pass_depth)
    const int64_t depth = gemm_pass_depth<T>(K, b_in_place, nc);

    // one task's rows and panels over depth pc .. pc+kc; bp: the shared panel of B, if any
    auto run_task = [&](int64_t task, int64_t pc, int64_t kc, const T* bp) {
      static thread_local std::vector<T> a_buffer, edge_buffer;
      const bool first = pc == 0, last = pc + kc == K;
      const int64_t ib = task / groups, g = task % groups;
      const int64_t i0 = block_row[size_t(ib)], m = block_row[size_t(ib) + 1] - i0;
      const int64_t p_begin = g * panels_per_group;
      const int64_t p_end = p_begin + panels_per_group < n_panels ? p_begin + panels_per_group : n_panels;
      // A: packed, or (small products) read in place, by rows or (transposed) by columns,
      // but for a last partial row tile, which is packed so no row past M is read
      const bool a_in_place = !shared_b && ((A.in_place() && !b_rows) || A.columns_in_place());  // (see micro_kernel)
      const int64_t full_tiles = m / MR;
      // B that each task packs from a row-major source, and a full first row tile: that
      // tile reads its full panels in place and packs them as it goes (micro_kernel_packing_b)
      const bool pack_in_first_tile = !shared_b && !b_in_place && B.in_place() && full_tiles > 0;
      const T* a_panels = A.packed(i0, pc, kc);  // packed before the call, or packed here
      if (!a_panels) {
        T* ap = scratch(a_buffer, size_t(ceil_div(m, int64_t(MR)) * MR) * size_t(kc));
        if (!a_in_place) A.pack(ap, i0, m, pc, kc);
        else if (m % MR) A.pack(ap + full_tiles * kc * MR, i0 + full_tiles * MR, m % MR, pc, kc);
        a_panels = ap;
      }
      // Panels in chunks that stay in L2 (16 x KC x NR floats: 512 KiB), each row tile
      // of A over a whole chunk: the A micro-panel stays in L1 and C is written along
      // its rows, which the hardware prefetches (row tiles inside panels wrote C down its
      // columns, 12 rows a page apart per tile: ~10% slower in a micro-benchmark)
      constexpr int64_t kChunk = 16;
      for (int64_t p0 = p_begin; p0 < p_end; p0 += kChunk) {
        const int64_t p1 = p0 + kChunk < p_end ? p0 + kChunk : p_end;
        const T* b_panel[kChunk];
        int64_t b_ks[kChunk];
        T* packed = nullptr;  // this chunk's packed panels, panel p at (p - p0) kc NR, when it has any
        auto packed_panel = [&](int64_t p) {
          if (!packed) packed = scratch(edge_buffer, size_t(kChunk) * size_t(kc) * NR);
          return packed + (p - p0) * kc * NR;
        };
        for (int64_t p = p0; p < p1; ++p) {
          const int64_t j0 = jc + p * NR;
          const int64_t n = N - j0 < NR ? N - j0 : NR;
          if (shared_b) {
            b_panel[p - p0] = bp + p * kc * NR;
            b_ks[p - p0] = NR;
          } else if (b_in_place && n == NR) {  // read B in place
            b_panel[p - p0] = B.at(pc, j0);
            b_ks[p - p0] = B.row_stride();
          } else if (b_rows) {  // read B in place through its row table
            b_panel[p - p0] = B.panel(j0);
            b_ks[p - p0] = 0;
          } else {  // not readable in place, or the right edge (padded so the kernel never reads past a row)
            T* panel = packed_panel(p);
            if (!(pack_in_first_tile && n == NR)) B.pack(panel, pc, kc, j0, n);  // (else the first tile packs it)
            b_panel[p - p0] = panel;
            b_ks[p - p0] = NR;
          }
        }
        for (int64_t r = 0; r * MR < m; ++r) {
          const int64_t rows = m - r * MR < MR ? m - r * MR : MR;
          const bool tile_in_place = a_in_place && r < full_tiles;
          const T* a_tile = tile_in_place ? A.at(i0 + r * MR, pc) : a_panels + r * kc * MR;
          const int64_t a_rs = tile_in_place ? A.row_stride() : 0;
          // a tile of one or two rows over B in place takes a whole group of panels a call
          const int64_t group = kWideRowPanels / (rows < 2 ? 1 : 2);
          for (int64_t p = p0; p < p1; ++p) {
            const int64_t j0 = jc + p * NR;
            int64_t n = N - j0 < NR ? N - j0 : NR;
            T* c_tile = c + (i0 + r * MR) * N + j0;
            // (the group's panels all full, so all read in place: the kernel reads every
            // column of the group, and a shorter run at the end goes panel by panel)
            if (BProvider::kMayBeInPlace && b_in_place && rows <= 2 && p + group <= p1 && j0 + group * NR <= N) {
              n = group * NR;
              if constexpr (BProvider::kMayBeInPlace)
                micro_kernel_wide_rows(kc, a_tile, b_panel[p - p0], b_ks[p - p0], c_tile, N, rows, n, alpha, beta,
                                       first);
              p += group - 1;
            } else if (r == 0 && pack_in_first_tile && n == NR) {
              if constexpr (BProvider::kMayBeInPlace)
                micro_kernel_packing_b(kc, a_tile, a_rs, B.at(pc, j0), B.row_stride(), packed + (p - p0) * kc * NR,
                                       c_tile, N, alpha, beta, first);
            } else if (BProvider::kMayHaveRowTable && b_rows) {
              if constexpr (BProvider::kMayHaveRowTable)
                micro_kernel<T, BRead::at_offsets>(kc, a_tile, a_rs, b_panel[p - p0], 0, c_tile, N, rows, n, alpha,
                                                   beta, first, b_rows + pc);
            } else if (shared_b) {
              micro_kernel<T, BRead::prefetched>(kc, a_tile, a_rs, b_panel[p - p0], b_ks[p - p0], c_tile, N, rows, n,
                                                 alpha, beta, first);
            } else {
              micro_kernel(kc, a_tile, a_rs, b_panel[p - p0], b_ks[p - p0], c_tile, N, rows, n, alpha, beta, first);
            }
            if (last && ep.needed()) epilogue_tile(c_tile, N, i0 + r * MR, j0, rows, n, bias, ep);
          }
        }
      }
    };

    if (!shared_b) {
      // tasks share nothing: each runs all its passes in one parallel region, its
      // block of C staying in cache from one pass to the next. Task t goes to thread t when
      // there is one each, so a thread reads the same columns of B from call to call, from
      // its own L2 (taken in turns, they moved between the cores: 10x128x512 ran 0.89 of
      // one thread's time split in turns, 0.81 split this way)
      const Schedule schedule = tasks == threads ? Schedule::blocks : Schedule::one_at_a_time;
      run_indices(tasks, work(nc) >= parallel_flops, threads, schedule, [&](int64_t task) {
        for (int64_t pc = 0; pc < K; pc += depth) run_task(task, pc, K - pc < depth ? K - pc : depth, nullptr);
      });
      continue;
    }
    for (int64_t pc = 0; pc < K; pc += depth) {
      const int64_t kc = K - pc < depth ? K - pc : depth;
      // the KC x NC panel of op(B), shared by all tasks
      T* bp = scratch(b_buffer, size_t(n_panels) * size_t(kc) * NR);
      auto pack = [&](int64_t p) {
        const int64_t j0 = jc + p * NR;
        B.pack(bp + p * kc * NR, pc, kc, j0, N - j0 < NR ? N - j0 : NR);
      };
      if (threads > 1) parallel_for(n_panels, kc * NR, pack);
      else for (int64_t p = 0; p < n_panels; ++p) pack(p);
      run_indices(tasks, 2.0 * double(M) * double(nc) * double(kc) >= 64.0 * kParallelMinWork, threads,
                  Schedule::one_at_a_time, [&](int64_t task) { run_task(task, pc, kc, bp); });
    }
  }
}

}  // namespace gemm_detail
}  // namespace SJ_ISA
}  // namespace shenjing

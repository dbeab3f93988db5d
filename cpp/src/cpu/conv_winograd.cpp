// Winograd F(2x2, 3x3) convolution (AVX-512, float32): the forward, the weight gradient
// and the channels form's input gradient, for conv.cpp, which picks the algorithm per shape
// (the predicates below say where this form pays). Compiled per instruction set like the
// rest; only the AVX-512 build has anything here.
#include <cstring>
#include <vector>

#include "shenjing/conv_internal.h"

namespace shenjing {
namespace SJ_ISA {
namespace conv_detail {

// --- Winograd F(2x2, 3x3), for 3x3 and 5x5 windows at stride 1 -----------------------
// Each 2x2 tile of outputs is A^T [U .* V] A over its 4x4 input patch d (Lavin and Gray,
// 2015), with V = B^T d B per channel and U = G g G^T per 3x3 weight g, summed over the
// channels:
//   B^T = [1 0 -1 0; 0 1 1 0; 0 -1 1 0; 0 1 0 -1], G = [1 0 0; .5 .5 .5; .5 -.5 .5; 0 0 1],
//   A^T = [1 1 1 0; 0 1 -1 -1]
// so a channel pair costs 16 products per 4 outputs where the direct sum takes 36. The
// sum over channels of each of the 16 elements xi is a GEMM over a block of T tiles,
//   M_xi (Og, T) = U_xi (Og, Cg) V_xi (Cg, T),
// and the transforms are adds and halvings (exact but for the adds' rounding). The
// gradients are the adjoints: dU_xi = Mdy_xi V_xi^T with Mdy = A dy A^T (then dw = G^T dU G),
// and dV_xi = U_xi^T Mdy_xi (then dx += B dV B^T over each patch).
// Two forms: the row form vectorises the transforms over 16 tiles along a tile row, for
// images of 128+ tiles; the channels form (below) over 16 channels of channels-last copies,
// for smaller ones. Where each pays is measured, see winograd_forward.
// A 5-tap side is split into 3-tap pieces at offsets 0 and 3, zero past the kernel's edge
// (a 5x5 kernel as four 3x3 pieces, 36 taps for 25). Each piece is a 3x3 convolution of the
// image shifted by its offset, so the pieces are more channels of the same F(2x2, 3x3):
// Cv = pieces Cg of them, piece (i, j) = i pieces_w + j holding cv = piece Cg + c (the
// counts: winograd_pieces_h, winograd_pieces_w and winograd_pieces, in conv_internal.h).
// the 3x3 convolution of piece (i, j): its offset taken off the padding
inline ConvShape winograd_piece_shape(const ConvShape& s, int64_t i, int64_t j) {
  ConvShape p = s;
  p.ph -= 3 * i, p.pw -= 3 * j;
  p.KH = 3, p.KW = 3;
  return p;
}

#if defined(__AVX512F__) && SJ_VECTOR_BYTES == 64
constexpr int64_t kWinogradBlockTiles = 128;  // tiles per block of either form

// 3x3 or 5x5 (as pieces), stride and dilation 1
inline bool winograd_kernel(const ConvShape& s) {
  return (s.KH == 3 || s.KH == 5) && (s.KW == 3 || s.KW == 5) && s.sh == 1 && s.sw == 1 && s.dh == 1 && s.dw == 1;
}
inline bool winograd_3x3(const ConvShape& s) { return winograd_kernel(s) && s.KH == 3 && s.KW == 3; }
// the row form (128+ tiles a sample, rows of up to 1024: a block, at least one tile row of
// 16 Cg values a tile, stays a few times its share of the image), else the channels form
inline bool winograd_row_form(const ConvShape& s) {
  const int64_t TH = ceil_div(s.OH, int64_t(2)), TW = ceil_div(s.OW, int64_t(2));
  return TH * TW >= kWinogradBlockTiles && TW <= 1024;
}
// two blocks of tiles or more in the channels form (one is one task, whose GEMMs split)
inline bool winograd_two_blocks(const ConvShape& s) {
  return s.N * ceil_div(s.OH, int64_t(2)) * ceil_div(s.OW, int64_t(2)) >= 2 * kWinogradBlockTiles;
}
// Where each form pays, measured (bench/ab.py, 2 threads, new/old), forward / dx / dW:
// - row form, 3x3: forward (so dx, as the flipped forward) 0.66 on 64 channels of 56x56, 0.72
//   on 128 of 28x28, 0.73 on 256 of 28x28, 0.79 on 32 of 32x32, but 1.02-1.09 on 16
//   channels; dW 0.77 on 64 of 56x56, 0.88 on 16 of 56x56 and 32x32, 1.0 on 32 of 32x32.
// - row form, 5x5 (pieces): forward 0.87 and 0.90 on 64 of 28x28 and 32 of 32x32, dW 1.14-1.22.
// - channels form, 3x3: forward 0.76 on 64 of 16x16, 0.83 on 256 of 14x14, 0.91 on 128 of
//   14x14, 0.98 on 512 of 7x7, but 1.0-1.3 under 64 channels and 1.37 on one block (2
//   samples of 7x7); dx 0.42 (512 of 7x7) to 0.70 (128 of 14x14) and 0.5 on 32 of 4x4, but
//   1.45 on 16; dW 0.90-0.96 on 64+ channels over two blocks, 1.09-1.57 otherwise.
// - channels form, 5x5, LeNet's conv2 (32 -> 64 channels, 8x8 outputs): dx 0.82, forward
//   0.97, dW 1.22.
bool winograd_forward(const ConvShape& s, const Geometry& g) {
  if (!winograd_kernel(s)) return false;
  if (winograd_row_form(s)) return g.Cg >= 32 && g.Og >= 32;
  return winograd_3x3(s) && g.Cg >= 64 && g.Og >= 64 && winograd_two_blocks(s);
}
bool winograd_weight_gradient(const ConvShape& s, const Geometry& g) {
  if (!winograd_3x3(s)) return false;
  if (winograd_row_form(s)) return g.Cg >= 16 && g.Og >= 16;
  return g.Cg >= 64 && g.Og >= 64 && winograd_two_blocks(s);
}
// the channels form's adjoint (the row form's shapes take the forward of the flipped weights)
bool winograd_input_gradient(const ConvShape& s, const Geometry& g) {
  return winograd_kernel(s) && !winograd_row_form(s) && g.Cg >= 32 && g.Og >= 32;
}

// The transforms add and subtract inputs, so one inf makes inf - inf = NaN where the direct
// sum gives inf, a NaN spreads to a whole tile, and values near float's limit overflow in
// them (3e38 gave NaN where the direct sum gave inf): each transform checks what it loads,
// and a call that finds a value not finite or of 2^64 or more is redone the direct way.
// check + a 2^64 + b 2^64 is inf or NaN from the first such value on (two FMAs on ports
// the transforms leave idle; a sum of smaller ones that reaches 2^128 only costs the redo).
constexpr float kWinogradCheckScale = 0x1p64f;
inline __m512 winograd_check(__m512 check, __m512 a, __m512 b) {
  const __m512 scale = _mm512_set1_ps(kWinogradCheckScale);
  return _mm512_fmadd_ps(b, scale, _mm512_fmadd_ps(a, scale, check));
}
inline bool winograd_finite(__m512 check) {
  return _mm512_fpclass_ps_mask(check, 0x99) == 0;  // NaN (quiet 0x01, signalling 0x80), +inf 0x08, -inf 0x10
}

// The transforms' 1-D steps, each written once for both forms (16 tiles or 16 channels a
// vector); the 2-D transforms apply them along rows, then columns.
// B^T d: d0 - d2, d1 + d2, d2 - d1, d1 - d3
inline void winograd_bt(__m512 (&out)[4], __m512 d0, __m512 d1, __m512 d2, __m512 d3) {
  out[0] = _mm512_sub_ps(d0, d2), out[1] = _mm512_add_ps(d1, d2);
  out[2] = _mm512_sub_ps(d2, d1), out[3] = _mm512_sub_ps(d1, d3);
}
// B e (the adjoint of B^T): e0, e1 - e2 + e3, e1 + e2 - e0, -e3
inline void winograd_b(__m512 (&out)[4], __m512 e0, __m512 e1, __m512 e2, __m512 e3) {
  out[0] = e0, out[1] = _mm512_add_ps(_mm512_sub_ps(e1, e2), e3);
  out[2] = _mm512_sub_ps(_mm512_add_ps(e1, e2), e0), out[3] = _mm512_sub_ps(_mm512_setzero_ps(), e3);
}
// A^T m: m0 + m1 + m2, m1 - m2 - m3
inline void winograd_at(__m512 (&out)[2], __m512 m0, __m512 m1, __m512 m2, __m512 m3) {
  out[0] = _mm512_add_ps(_mm512_add_ps(m0, m1), m2), out[1] = _mm512_sub_ps(_mm512_sub_ps(m1, m2), m3);
}
// A y (the adjoint of A^T): y0, y0 + y1, y0 - y1, -y1
inline void winograd_a(__m512 (&out)[4], __m512 y0, __m512 y1) {
  out[0] = y0, out[1] = _mm512_add_ps(y0, y1);
  out[2] = _mm512_sub_ps(y0, y1), out[3] = _mm512_sub_ps(_mm512_setzero_ps(), y1);
}
// A^T applied down each column j of a tile's 16 products M (row-major 4x4, element xi at
// in + xi xi_stride, the vector's lanes under `lanes`): column j of A^T M in out[j]
inline void winograd_at_columns(__m512 (&out)[4][2], const float* in, int64_t xi_stride, __mmask16 lanes) {
  for (int j = 0; j < 4; ++j)
    winograd_at(out[j], _mm512_maskz_loadu_ps(lanes, in + j * xi_stride),
                _mm512_maskz_loadu_ps(lanes, in + (4 + j) * xi_stride),
                _mm512_maskz_loadu_ps(lanes, in + (8 + j) * xi_stride),
                _mm512_maskz_loadu_ps(lanes, in + (12 + j) * xi_stride));
}

// u (16, O, Cv): element xi = 4 i + j of G g G^T for each 3x3 piece g of the weights w[o, c],
// 16 channels a vector (each tap gathered from their kernels), over the threads by output
// (one scalar piece at a time, a 256-channel 3x3 layer's took 1 ms). False (and u
// unfinished) where a weight is not finite or of 2^64 or more (see winograd_check).
inline bool winograd_weights(float* u, const float* w, const ConvShape& s, int64_t Cg) {
  const int64_t pieces_w = winograd_pieces_w(s), pieces = winograd_pieces(s), Cv = pieces * Cg, plane = s.O * Cv;
  const int64_t taps = s.KH * s.KW;
  const __m512i kernels = _mm512_mullo_epi32(_mm512_set_epi32(15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0),
                                             _mm512_set1_epi32(int32_t(taps)));  // lane l: kernel l's start
  std::vector<char> finite(size_t(s.O), 1);
  parallel_for(s.O, 100 * Cv, [&](int64_t o) {
    __m512 check = _mm512_setzero_ps();
    for (int64_t c0 = 0; c0 < Cg; c0 += 16) {
      const __mmask16 lanes = lanes_below(Cg - c0);
      const float* base = w + (o * Cg + c0) * taps;
      for (int64_t piece = 0; piece < pieces; ++piece) {
        const int64_t kh0 = 3 * (piece / pieces_w), kw0 = 3 * (piece % pieces_w);
        __m512 g[3][3];  // the piece's taps for 16 channels, 0 past the kernel
        for (int r = 0; r < 3; ++r)
          for (int q = 0; q < 3; ++q) {
            g[r][q] = _mm512_setzero_ps();
            if (kh0 + r < s.KH && kw0 + q < s.KW)
              g[r][q] = _mm512_mask_i32gather_ps(g[r][q], lanes, kernels, base + (kh0 + r) * s.KW + kw0 + q, 4);
          }
        for (int r = 0; r < 3; ++r)  // (the check takes pairs: g[r][2] twice)
          check = winograd_check(winograd_check(check, g[r][0], g[r][1]), g[r][2], g[r][2]);
        const __m512 half = _mm512_set1_ps(0.5f);
        __m512 t[4][3];  // G g (4, 3)
        for (int j = 0; j < 3; ++j) {
          t[0][j] = g[0][j];
          t[1][j] = _mm512_mul_ps(half, _mm512_add_ps(_mm512_add_ps(g[0][j], g[1][j]), g[2][j]));
          t[2][j] = _mm512_mul_ps(half, _mm512_add_ps(_mm512_sub_ps(g[0][j], g[1][j]), g[2][j]));
          t[3][j] = g[2][j];
        }
        float* out = u + o * Cv + piece * Cg + c0;
        for (int i = 0; i < 4; ++i) {  // times G^T
          _mm512_mask_storeu_ps(out + (4 * i + 0) * plane, lanes, t[i][0]);
          _mm512_mask_storeu_ps(out + (4 * i + 1) * plane, lanes,
                                _mm512_mul_ps(half, _mm512_add_ps(_mm512_add_ps(t[i][0], t[i][1]), t[i][2])));
          _mm512_mask_storeu_ps(out + (4 * i + 2) * plane, lanes,
                                _mm512_mul_ps(half, _mm512_add_ps(_mm512_sub_ps(t[i][0], t[i][1]), t[i][2])));
          _mm512_mask_storeu_ps(out + (4 * i + 3) * plane, lanes, t[i][2]);
        }
      }
    }
    if (!winograd_finite(check)) finite[size_t(o)] = 0;
  });
  return all_set(finite);
}

// ut (16, groups, Cv, Og): U_xi^T of each group, from u (16, O, Cv)
inline void winograd_weights_transposed(float* ut, const float* u, const ConvShape& s, int64_t Og, int64_t Cv) {
  for (int64_t xi = 0; xi < 16; ++xi)
    for (int64_t grp = 0; grp < s.groups; ++grp)
      transpose_into(ut + (xi * s.groups + grp) * Cv * Og, Og, u + (xi * s.O + grp * Og) * Cv, Cv, Og, Cv);
}

// v (16, Cg, T), element xi at xi xi_stride, = B^T d B for tile rows [th0, th0 + rows) of one
// sample's group x_g (Cg, H, W): tile (th, tw), at t = (th - th0) TW + tw, reads the padded
// rows 2 th .. 2 th + 3 and columns 2 tw .. 2 tw + 3 (image row 2 th - ph + i, column
// 2 tw - pw + j; 0 outside the image). Each patch row is four masked loads (lanes off the
// image read nothing) split into its even and odd columns for 16 tiles at a time, times B; a
// tile row's last two patch rows are the next one's first two, so each image row is loaded
// and transformed once.
struct WinogradRow {
  __m512 w[4];  // a patch row d times B: d0 - d2, d1 + d2, d2 - d1, d1 - d3
};

inline bool winograd_input(float* v, int64_t T, int64_t xi_stride, const float* x_g, const ConvShape& s, int64_t Cg,
                           int64_t th0, int64_t rows, int64_t TW) {
  __m512 check = _mm512_setzero_ps();  // see winograd_finite
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
  for (int64_t tw0 = 0; tw0 < TW; tw0 += 16) {
    // the four loads of a patch row: image columns col + {0, 16, 2, 18} onwards, lanes on the image
    const int64_t col = 2 * tw0 - s.pw;
    const int64_t at[4] = {col, col + 16, col + 2, col + 18};
    __mmask16 mask[4];
    int64_t offset[4];  // (the row's start where no lane reads, so no pointer leaves the row)
    for (int k = 0; k < 4; ++k) {
      mask[k] = lanes_between(-at[k], s.W - at[k]);
      offset[k] = mask[k] ? at[k] : 0;
    }
    const __mmask16 tiles = lanes_below(TW - tw0);
    for (int64_t c = 0; c < Cg; ++c) {
      const float* xc = x_g + c * s.H * s.W;
      auto patch_row = [&](int64_t ih) {  // image row ih (0 off the image) times B
        WinogradRow p;
        if (ih < 0 || ih >= s.H) {
          for (int j = 0; j < 4; ++j) p.w[j] = _mm512_setzero_ps();
          return p;
        }
        const float* row = xc + ih * s.W;
        const __m512 lo = _mm512_maskz_loadu_ps(mask[0], row + offset[0]);
        const __m512 hi = _mm512_maskz_loadu_ps(mask[1], row + offset[1]);
        const __m512 lo2 = _mm512_maskz_loadu_ps(mask[2], row + offset[2]);
        const __m512 hi2 = _mm512_maskz_loadu_ps(mask[3], row + offset[3]);
        check = winograd_check(check, lo, hi);  // (lo and hi cover the row's columns that lo2 and hi2 read)
        const __m512 d0 = _mm512_permutex2var_ps(lo, even, hi), d1 = _mm512_permutex2var_ps(lo, odd, hi);
        const __m512 d2 = _mm512_permutex2var_ps(lo2, even, hi2), d3 = _mm512_permutex2var_ps(lo2, odd, hi2);
        winograd_bt(p.w, d0, d1, d2, d3);
        return p;
      };
      const int64_t ih0 = 2 * th0 - s.ph;
      WinogradRow r0 = patch_row(ih0), r1 = patch_row(ih0 + 1);
      for (int64_t r = 0; r < rows; ++r) {
        const WinogradRow r2 = patch_row(ih0 + 2 * r + 2), r3 = patch_row(ih0 + 2 * r + 3);
        float* out = v + c * T + r * TW + tw0;
        for (int j = 0; j < 4; ++j) {  // B^T along the columns
          __m512 column[4];
          winograd_bt(column, r0.w[j], r1.w[j], r2.w[j], r3.w[j]);
          for (int i = 0; i < 4; ++i) _mm512_mask_storeu_ps(out + (4 * i + j) * xi_stride, tiles, column[i]);
        }
        r0 = r2, r1 = r3;
      }
    }
  }
  return winograd_finite(check);
}

// v (16, Cv, T): winograd_input for every piece of the kernel (see winograd_pieces)
inline bool winograd_input_pieces(float* v, int64_t T, const float* x_g, const ConvShape& s, int64_t Cg, int64_t th0,
                                  int64_t rows, int64_t TW) {
  const int64_t pieces_w = winograd_pieces_w(s), pieces = winograd_pieces(s);
  for (int64_t piece = 0; piece < pieces; ++piece)
    if (!winograd_input(v + piece * Cg * T, T, pieces * Cg * T, x_g,
                        winograd_piece_shape(s, piece / pieces_w, piece % pieces_w), Cg, th0, rows, TW))
      return false;
  return true;
}

// y_g (Og, OH, OW), tile rows [th0, th0 + rows), = A^T M A + bias from m (16, Og, T); the two
// columns of each tile are interleaved back into output rows, rows and columns past the
// output dropped
inline void winograd_output(float* y_g, const float* m, int64_t T, const float* bias, const ConvShape& s, int64_t Og,
                            int64_t th0, int64_t rows, int64_t TW) {
  const __m512i first = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i second = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
  const int64_t xi_stride = Og * T;
  for (int64_t o = 0; o < Og; ++o) {
    const __m512 b = _mm512_set1_ps(bias ? bias[o] : 0.0f);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t tw0 = 0; tw0 < TW; tw0 += 16) {
        const __mmask16 tiles = lanes_below(TW - tw0);
        const float* in = m + o * T + r * TW + tw0;
        __m512 t[4][2];  // (A^T M)^T: column j of A^T M in t[j]
        winograd_at_columns(t, in, xi_stride, tiles);
        const int64_t oh = 2 * (th0 + r), ow = 2 * tw0;
        for (int a = 0; a < 2 && oh + a < s.OH; ++a) {
          __m512 y[2];  // row a of A^T M A
          winograd_at(y, t[0][a], t[1][a], t[2][a], t[3][a]);
          const __m512 y0 = _mm512_add_ps(y[0], b), y1 = _mm512_add_ps(y[1], b);
          float* out = y_g + (o * s.OH + oh + a) * s.OW + ow;
          _mm512_mask_storeu_ps(out, lanes_below(s.OW - ow), _mm512_permutex2var_ps(y0, first, y1));
          _mm512_mask_storeu_ps(out + 16, lanes_below(s.OW - ow - 16), _mm512_permutex2var_ps(y0, second, y1));
        }
      }
  }
}

// The row form's blocks: whole tile rows of one sample, about kWinogradBlockTiles tiles
// (the row form's samples have that many or more)
inline int64_t winograd_rows_per_block(int64_t TH, int64_t TW) {
  const int64_t rows = ceil_div(kWinogradBlockTiles, TW);
  return rows < TH ? rows : TH;
}

// False where an input or weight is not finite or too large (y then unfinished: see winograd_check)
static bool winograd_conv2d_forward_rows(float* y, const float* x, const float* w, const float* bias,
                                        const ConvShape& s, const Geometry& g) {
  const int64_t TH = ceil_div(s.OH, int64_t(2)), TW = ceil_div(s.OW, int64_t(2));
  const int64_t rows_per_block = winograd_rows_per_block(TH, TW), blocks = ceil_div(TH, rows_per_block);
  const int64_t Cv = winograd_pieces(s) * g.Cg;
  // U_xi of every group packed once for all the blocks: xi's group grp at (xi groups + grp) panels_size
  const int64_t panels_size = gemm_detail::PackedPanelsA<float>::size(g.Og, Cv);
  static thread_local std::vector<float> u_buffer, panel_buffer;
  float* const u = scratch(u_buffer, size_t(16 * s.O * Cv));
  float* const panels = scratch(panel_buffer, size_t(16 * s.groups * panels_size));
  if (!winograd_weights(u, w, s, g.Cg)) return false;
  for (int64_t xi = 0; xi < 16; ++xi)
    for (int64_t grp = 0; grp < s.groups; ++grp)
      gemm_detail::PackedPanelsA<float>::pack_all(panels + (xi * s.groups + grp) * panels_size,
                                                  u + (xi * s.O + grp * g.Og) * Cv, false, g.Og, Cv);
  const int64_t tasks = s.N * s.groups * blocks;
  std::vector<char> finite(size_t(tasks), 1);  // per task
  for_tasks(tasks, 2.0 * 16 * g.Og * Cv * rows_per_block * TW, [&](int64_t task, int gemm_threads) {
    static thread_local std::vector<float> v_buffer, m_buffer;
    const int64_t n = task / (s.groups * blocks), grp = (task / blocks) % s.groups, block = task % blocks;
    const int64_t th0 = block * rows_per_block, rows = TH - th0 < rows_per_block ? TH - th0 : rows_per_block;
    const int64_t T = rows * TW;
    float* v = scratch(v_buffer, size_t(16 * Cv * T));
    float* m = scratch(m_buffer, size_t(16 * g.Og * T));
    if (!winograd_input_pieces(v, T, x + (n * s.C + grp * g.Cg) * g.HW, s, g.Cg, th0, rows, TW)) {
      finite[size_t(task)] = 0;
      return;
    }
    for (int64_t xi = 0; xi < 16; ++xi)
      gemm_detail::gemm_driver(m + xi * g.Og * T,
                               gemm_detail::PackedPanelsA<float>{
                                   {}, panels + (xi * s.groups + grp) * panels_size, g.Og, Cv},
                               gemm_detail::MatrixB<float>{v + xi * Cv * T, false, T, Cv}, g.Og, T, Cv, 1.0f, 0.0f,
                               static_cast<const float*>(nullptr), GemmBias::none, GemmActivation::none, gemm_threads);
    winograd_output(y + (n * s.O + grp * g.Og) * g.P, m, T, bias ? bias + grp * g.Og : nullptr, s, g.Og, th0, rows,
                    TW);
  });
  return all_set(finite);
}

// The weight gradient through the same transforms (their adjoint): with U = G g G^T and
// y's tile A^T (sum over c of U .* V) A, the gradient of U is, summed over the tiles,
//   dU_xi (Og, Cg) = Mdy_xi (Og, T) V_xi^T (T, Cg),  Mdy = A dy A^T of each 2x2 tile of dy,
// and dw = G^T dU G: again 16 GEMMs, of depth T, over the same V as the forward.

// mdy (16, Og, T) = A dy A^T for tile rows [th0, th0 + rows) of one sample's group dy_g (Og,
// OH, OW); the tiles' rows and columns past the output read 0
inline bool winograd_output_gradient(float* mdy, int64_t T, const float* dy_g, const ConvShape& s, int64_t Og,
                                     int64_t th0, int64_t rows, int64_t TW) {
  __m512 check = _mm512_setzero_ps();
  const __m512i even = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i odd = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
  const int64_t xi_stride = Og * T;
  const __m512 zero = _mm512_setzero_ps();
  for (int64_t tw0 = 0; tw0 < TW; tw0 += 16) {
    const int64_t ow = 2 * tw0;
    const __mmask16 m_lo = lanes_below(s.OW - ow), m_hi = lanes_below(s.OW - ow - 16), tiles = lanes_below(TW - tw0);
    for (int64_t o = 0; o < Og; ++o)
      for (int64_t r = 0; r < rows; ++r) {
        __m512 c[2][4];  // c[a]: dy's tile row a times A^T: y0, y0 + y1, y0 - y1, -y1
        for (int a = 0; a < 2; ++a) {
          const int64_t oh = 2 * (th0 + r) + a;
          __m512 y0 = zero, y1 = zero;
          if (oh < s.OH) {
            const float* row = dy_g + (o * s.OH + oh) * s.OW + ow;
            const __m512 lo = _mm512_maskz_loadu_ps(m_lo, row), hi = _mm512_maskz_loadu_ps(m_hi, m_hi ? row + 16 : row);
            check = winograd_check(check, lo, hi);
            y0 = _mm512_permutex2var_ps(lo, even, hi);
            y1 = _mm512_permutex2var_ps(lo, odd, hi);
          }
          winograd_a(c[a], y0, y1);
        }
        float* out = mdy + o * T + r * TW + tw0;
        for (int j = 0; j < 4; ++j) {  // A along the rows
          __m512 column[4];
          winograd_a(column, c[0][j], c[1][j]);
          for (int i = 0; i < 4; ++i) _mm512_mask_storeu_ps(out + (4 * i + j) * xi_stride, tiles, column[i]);
        }
      }
  }
  return winograd_finite(check);
}

// partial (16, Og, Cv) = dU of one group over `samples` samples from dy0 and x0 (their first
// sample), block by block, each block's product added to the last; false (partial
// unfinished) where an x or dy is not finite or too large (see winograd_check)
static bool winograd_weight_gradient_chunk_rows(float* partial, const float* dy0, const float* x0,
                                                const ConvShape& s, const Geometry& g, int64_t samples) {
  static thread_local std::vector<float> v_buffer, mdy_buffer;
  const int64_t TH = ceil_div(s.OH, int64_t(2)), TW = ceil_div(s.OW, int64_t(2));
  const int64_t rows_per_block = winograd_rows_per_block(TH, TW), Cv = winograd_pieces(s) * g.Cg;
  bool first = true;
  for (int64_t n = 0; n < samples; ++n)
    for (int64_t th0 = 0; th0 < TH; th0 += rows_per_block) {
      const int64_t rows = TH - th0 < rows_per_block ? TH - th0 : rows_per_block, T = rows * TW;
      float* v = scratch(v_buffer, size_t(16 * Cv * T));
      float* mdy = scratch(mdy_buffer, size_t(16 * g.Og * T));
      if (!winograd_input_pieces(v, T, x0 + n * s.C * g.HW, s, g.Cg, th0, rows, TW) ||
          !winograd_output_gradient(mdy, T, dy0 + n * s.O * g.P, s, g.Og, th0, rows, TW))
        return false;
      for (int64_t xi = 0; xi < 16; ++xi)
        gemm_detail::gemm_driver(partial + xi * g.Og * Cv,
                                 gemm_detail::MatrixA<float>{mdy + xi * g.Og * T, false, g.Og, T},
                                 gemm_detail::MatrixB<float>{v + xi * Cv * T, true, Cv, T}, g.Og, Cv, T, 1.0f,
                                 first ? 0.0f : 1.0f, static_cast<const float*>(nullptr), GemmBias::none,
                                 GemmActivation::none, 1);
      first = false;
    }
  return true;
}

// dw_g (Og, Cg, KH, KW) = G^T dU G of each piece, from du (16, Og, Cv) (the pieces' taps
// past the kernel dropped)
void winograd_weights_back(float* dw_g, const float* du, const ConvShape& s, int64_t Og, int64_t Cg) {
  const int64_t pieces_w = winograd_pieces_w(s), pieces = winograd_pieces(s), Cv = pieces * Cg, plane = Og * Cv;
  for (int64_t q = 0; q < plane; ++q) {
    const int64_t o = q / Cv, piece = (q % Cv) / Cg, c = q % Cg;
    const int64_t kh0 = 3 * (piece / pieces_w), kw0 = 3 * (piece % pieces_w);
    float t[3][4];  // G^T dU (3, 4)
    for (int j = 0; j < 4; ++j) {
      const float u0 = du[j * plane + q], u1 = du[(4 + j) * plane + q], u2 = du[(8 + j) * plane + q],
                  u3 = du[(12 + j) * plane + q];
      t[0][j] = u0 + 0.5f * (u1 + u2);
      t[1][j] = 0.5f * (u1 - u2);
      t[2][j] = 0.5f * (u1 + u2) + u3;
    }
    float* kernel = dw_g + (o * Cg + c) * s.KH * s.KW;
    for (int a = 0; a < 3 && kh0 + a < s.KH; ++a) {
      float row[3] = {t[a][0] + 0.5f * (t[a][1] + t[a][2]), 0.5f * (t[a][1] - t[a][2]),
                      0.5f * (t[a][1] + t[a][2]) + t[a][3]};
      for (int b = 0; b < 3 && kw0 + b < s.KW; ++b) kernel[(kh0 + a) * s.KW + kw0 + b] = row[b];
    }
  }
}

// --- the channels form, for small images ---------------------------------------------
// A row of 4 tiles (8x8 outputs) fills a quarter of the row form's vectors. Here the
// transforms run on channels-last copies of whole samples (blocks of about 128 tiles),
// 16 channels a vector: each tile's values are then plain vertical adds. The operands are
// the row form's transposed, V^T (16, T, Cv) and M^T (16, T, Og), tile t's channels in a row:
//   forward  M_xi^T (T, Og) = V_xi^T (T, Cv) U_xi^T (Cv, Og)
//   weight   dU_xi (Og, Cv) = Mdy_xi (Og, T) V_xi^T (T, Cv)
//   input    dV_xi^T (T, Cv) = Mdy_xi^T (T, Og) U_xi (Og, Cv), and dx += B dV B^T over each patch
struct WinogradChannels {
  int64_t TH, TW, Hp, Wp;  // tiles per sample; the channels-last copies' padded rows and columns
  explicit WinogradChannels(const ConvShape& s)
      : TH(ceil_div(s.OH, int64_t(2))), TW(ceil_div(s.OW, int64_t(2))),
        Hp(2 * TH + 3 * winograd_pieces_h(s) - 1), Wp(2 * TW + 3 * winograd_pieces_w(s) - 1) {}
  int64_t tiles() const { return TH * TW; }
  // the samples of a block: about kWinogradBlockTiles tiles, at least one sample
  int64_t samples_per_block(int64_t N) const {
    const int64_t samples = ceil_div(kWinogradBlockTiles, tiles());
    return samples < N ? samples : (N > 0 ? N : 1);
  }
};

// vt (16, T, Cv) from xt (samples, Hp, Wp, Cg): tile t = (k, th, tw), piece (i, j) reads
// xt[k, 2 th + 3 i + r, 2 tw + 3 j + q, c] for r, q < 4. False where a value is not finite or
// too large (see winograd_check).
inline bool winograd_input_channels(float* vt, const float* xt, const ConvShape& s, const WinogradChannels& f,
                                    int64_t samples, int64_t Cg) {
  const int64_t pieces_w = winograd_pieces_w(s), pieces = winograd_pieces(s), Cv = pieces * Cg;
  const int64_t T = samples * f.tiles(), xi_stride = T * Cv, row = f.Wp * Cg;
  __m512 check = _mm512_setzero_ps();
  for (int64_t t = 0; t < T; ++t) {
    const int64_t k = t / f.tiles(), th = (t % f.tiles()) / f.TW, tw = t % f.TW;
    for (int64_t piece = 0; piece < pieces; ++piece) {
      const int64_t top = 2 * th + 3 * (piece / pieces_w), left = 2 * tw + 3 * (piece % pieces_w);  // its patch
      const float* patch = xt + ((k * f.Hp + top) * f.Wp + left) * Cg;
      float* out = vt + t * Cv + piece * Cg;
      for (int64_t c0 = 0; c0 < Cg; c0 += 16) {
        const __mmask16 lanes = lanes_below(Cg - c0);
        __m512 w[4][4];  // (B^T d)^T: column q of B^T d in w[q]
        for (int q = 0; q < 4; ++q) {
          const float* column = patch + q * Cg + c0;
          const __m512 d0 = _mm512_maskz_loadu_ps(lanes, column), d1 = _mm512_maskz_loadu_ps(lanes, column + row);
          const __m512 d2 = _mm512_maskz_loadu_ps(lanes, column + 2 * row);
          const __m512 d3 = _mm512_maskz_loadu_ps(lanes, column + 3 * row);
          check = winograd_check(winograd_check(check, d0, d1), d2, d3);
          winograd_bt(w[q], d0, d1, d2, d3);
        }
        for (int i = 0; i < 4; ++i) {  // times B
          __m512 row_i[4];
          winograd_bt(row_i, w[0][i], w[1][i], w[2][i], w[3][i]);
          for (int j = 0; j < 4; ++j) _mm512_mask_storeu_ps(out + c0 + (4 * i + j) * xi_stride, lanes, row_i[j]);
        }
      }
    }
  }
  return winograd_finite(check);
}

// yt (samples, OH, OW, Og) = A^T M A + bias from mt (16, T, Og), outputs past OH, OW dropped
inline void winograd_output_channels(float* yt, const float* mt, const float* bias, const ConvShape& s,
                                     const WinogradChannels& f, int64_t samples, int64_t Og) {
  const int64_t T = samples * f.tiles(), xi_stride = T * Og;
  for (int64_t t = 0; t < T; ++t) {
    const int64_t k = t / f.tiles(), oh = 2 * ((t % f.tiles()) / f.TW), ow = 2 * (t % f.TW);
    for (int64_t o0 = 0; o0 < Og; o0 += 16) {
      const __mmask16 lanes = lanes_below(Og - o0);
      const __m512 b = bias ? _mm512_maskz_loadu_ps(lanes, bias + o0) : _mm512_setzero_ps();
      const float* in = mt + t * Og + o0;
      __m512 r[4][2];  // (A^T M)^T: column j of A^T M in r[j]
      winograd_at_columns(r, in, xi_stride, lanes);
      for (int a = 0; a < 2 && oh + a < s.OH; ++a) {
        __m512 y[2];  // row a of A^T M A
        winograd_at(y, r[0][a], r[1][a], r[2][a], r[3][a]);
        float* out = yt + ((k * s.OH + oh + a) * s.OW + ow) * Og + o0;
        _mm512_mask_storeu_ps(out, lanes, _mm512_add_ps(y[0], b));
        if (ow + 1 < s.OW) _mm512_mask_storeu_ps(out + Og, lanes, _mm512_add_ps(y[1], b));
      }
    }
  }
}

// mdyt (16, T, Og) = A dy A^T from dyt (samples, OH, OW, Og), the tiles' outputs past OH, OW 0.
// False where a value is not finite or too large.
inline bool winograd_output_gradient_channels(float* mdyt, const float* dyt, const ConvShape& s,
                                              const WinogradChannels& f, int64_t samples, int64_t Og) {
  const int64_t T = samples * f.tiles(), xi_stride = T * Og;
  const __m512 zero = _mm512_setzero_ps();
  __m512 check = zero;
  for (int64_t t = 0; t < T; ++t) {
    const int64_t k = t / f.tiles(), oh = 2 * ((t % f.tiles()) / f.TW), ow = 2 * (t % f.TW);
    for (int64_t o0 = 0; o0 < Og; o0 += 16) {
      const __mmask16 lanes = lanes_below(Og - o0);
      __m512 c[2][4];  // dy's tile row a times A^T: y0, y0 + y1, y0 - y1, -y1
      for (int a = 0; a < 2; ++a) {
        __m512 y0 = zero, y1 = zero;
        if (oh + a < s.OH) {
          const float* in = dyt + ((k * s.OH + oh + a) * s.OW + ow) * Og + o0;
          y0 = _mm512_maskz_loadu_ps(lanes, in);
          if (ow + 1 < s.OW) y1 = _mm512_maskz_loadu_ps(lanes, in + Og);
          check = winograd_check(check, y0, y1);
        }
        winograd_a(c[a], y0, y1);
      }
      float* out = mdyt + t * Og + o0;
      for (int j = 0; j < 4; ++j) {  // A along the rows
        __m512 column[4];
        winograd_a(column, c[0][j], c[1][j]);
        for (int i = 0; i < 4; ++i) _mm512_mask_storeu_ps(out + (4 * i + j) * xi_stride, lanes, column[i]);
      }
    }
  }
  return winograd_finite(check);
}

// dxt (samples, Hp, Wp, Cg) += B dV B^T over each tile's patch of each piece, from dvt (16, T, Cv)
// (the adjoint of winograd_input_channels; the patches overlap, so tiles add in turn)
inline void winograd_patch_gradient_channels(float* dxt, const float* dvt, const ConvShape& s,
                                             const WinogradChannels& f, int64_t samples, int64_t Cg) {
  const int64_t pieces_w = winograd_pieces_w(s), pieces = winograd_pieces(s), Cv = pieces * Cg;
  const int64_t T = samples * f.tiles(), xi_stride = T * Cv, row = f.Wp * Cg;
  for (int64_t t = 0; t < T; ++t) {
    const int64_t k = t / f.tiles(), th = (t % f.tiles()) / f.TW, tw = t % f.TW;
    for (int64_t piece = 0; piece < pieces; ++piece) {
      const int64_t top = 2 * th + 3 * (piece / pieces_w), left = 2 * tw + 3 * (piece % pieces_w);  // its patch
      float* patch = dxt + ((k * f.Hp + top) * f.Wp + left) * Cg;
      const float* in = dvt + t * Cv + piece * Cg;
      for (int64_t c0 = 0; c0 < Cg; c0 += 16) {
        const __mmask16 lanes = lanes_below(Cg - c0);
        __m512 e[4][4];  // dV B^T: row i of dV times B^T in e[i]
        for (int i = 0; i < 4; ++i) {
          const float* v = in + c0 + 4 * i * xi_stride;
          winograd_b(e[i], _mm512_maskz_loadu_ps(lanes, v), _mm512_maskz_loadu_ps(lanes, v + xi_stride),
                     _mm512_maskz_loadu_ps(lanes, v + 2 * xi_stride), _mm512_maskz_loadu_ps(lanes, v + 3 * xi_stride));
        }
        for (int q = 0; q < 4; ++q) {  // B times it, added into the patch's column q
          float* column = patch + q * Cg + c0;
          __m512 d[4];
          winograd_b(d, e[0][q], e[1][q], e[2][q], e[3][q]);
          for (int r = 0; r < 4; ++r)
            _mm512_mask_storeu_ps(column + r * row, lanes,
                                  _mm512_add_ps(_mm512_maskz_loadu_ps(lanes, column + r * row), d[r]));
        }
      }
    }
  }
}

// The channels form's forward; false where an input or weight is not finite or too large
static bool winograd_conv2d_forward_channels(float* y, const float* x, const float* w, const float* bias,
                                             const ConvShape& s, const Geometry& g) {
  const WinogradChannels f(s);
  const int64_t S = f.samples_per_block(s.N), blocks = ceil_div(s.N, S), Cv = winograd_pieces(s) * g.Cg;
  static thread_local std::vector<float> u_buffer, ut_buffer;
  float* const u = scratch(u_buffer, size_t(16 * s.O * Cv));
  float* const ut = scratch(ut_buffer, size_t(16 * s.O * Cv));
  if (!winograd_weights(u, w, s, g.Cg)) return false;
  winograd_weights_transposed(ut, u, s, g.Og, Cv);
  std::vector<char> finite(size_t(blocks * s.groups), 1);  // per task
  for_tasks(blocks * s.groups, 2.0 * 16 * g.Og * Cv * S * f.tiles(), [&](int64_t task, int gemm_threads) {
    static thread_local std::vector<float> x_buffer, v_buffer, m_buffer, y_buffer;
    const int64_t n0 = (task / s.groups) * S, grp = task % s.groups;
    const int64_t samples = s.N - n0 < S ? s.N - n0 : S, T = samples * f.tiles();
    const float* xt = padded_channels_last(x_buffer, x + (n0 * s.C + grp * g.Cg) * g.HW, s, samples, g.Cg, f.Hp, f.Wp);
    float* vt = scratch(v_buffer, size_t(16 * T * Cv));
    float* mt = scratch(m_buffer, size_t(16 * T * g.Og));
    if (!winograd_input_channels(vt, xt, s, f, samples, g.Cg)) {
      finite[size_t(task)] = 0;
      return;
    }
    for (int64_t xi = 0; xi < 16; ++xi)
      gemm_detail::gemm_driver(mt + xi * T * g.Og, gemm_detail::MatrixA<float>{vt + xi * T * Cv, false, T, Cv},
                               gemm_detail::MatrixB<float>{ut + (xi * s.groups + grp) * Cv * g.Og, false, g.Og, Cv}, T,
                               g.Og, Cv, 1.0f, 0.0f, static_cast<const float*>(nullptr), GemmBias::none,
                               GemmActivation::none, gemm_threads);
    float* yt = scratch(y_buffer, size_t(samples * g.P * g.Og));
    winograd_output_channels(yt, mt, bias ? bias + grp * g.Og : nullptr, s, f, samples, g.Og);
    channels_last_output_into(y, yt, s, g, n0, grp, samples);
  });
  return all_set(finite);
}

// The channels form of winograd_weight_gradient_chunk: partial (16, Og, Cv) = dU over `samples` samples
static bool winograd_weight_gradient_chunk_channels(float* partial, const float* dy0, const float* x0,
                                                    const ConvShape& s, const Geometry& g, int64_t samples) {
  static thread_local std::vector<float> x_buffer, dy_buffer, v_buffer, mdy_buffer;
  const WinogradChannels f(s);
  const int64_t S = f.samples_per_block(samples), Cv = winograd_pieces(s) * g.Cg;
  for (int64_t n0 = 0; n0 < samples; n0 += S) {
    const int64_t count = samples - n0 < S ? samples - n0 : S, T = count * f.tiles();
    const float* xt = padded_channels_last(x_buffer, x0 + n0 * s.C * g.HW, s, count, g.Cg, f.Hp, f.Wp);
    const float* dyt = channels_last_dy(dy_buffer, dy0 + n0 * s.O * g.P, s, g, count);
    float* vt = scratch(v_buffer, size_t(16 * T * Cv));
    float* mdyt = scratch(mdy_buffer, size_t(16 * T * g.Og));
    if (!winograd_input_channels(vt, xt, s, f, count, g.Cg) ||
        !winograd_output_gradient_channels(mdyt, dyt, s, f, count, g.Og))
      return false;
    for (int64_t xi = 0; xi < 16; ++xi)
      gemm_detail::gemm_driver(partial + xi * g.Og * Cv,
                               gemm_detail::MatrixA<float>{mdyt + xi * T * g.Og, true, g.Og, T},
                               gemm_detail::MatrixB<float>{vt + xi * T * Cv, false, Cv, T}, g.Og, Cv, T, 1.0f,
                               n0 == 0 ? 0.0f : 1.0f, static_cast<const float*>(nullptr), GemmBias::none,
                               GemmActivation::none, 1);
  }
  return true;
}

// The channels form's input gradient, dx (N, C, H, W) (written whole); false where dy or w
// holds a value not finite or too large
bool winograd_input_gradient_channels(float* dx, const float* dy, const float* w, const ConvShape& s,
                                      const Geometry& g) {
  const WinogradChannels f(s);
  const int64_t S = f.samples_per_block(s.N), blocks = ceil_div(s.N, S), Cv = winograd_pieces(s) * g.Cg;
  static thread_local std::vector<float> u_buffer;
  float* const u = scratch(u_buffer, size_t(16 * s.O * Cv));
  if (!winograd_weights(u, w, s, g.Cg)) return false;
  // the image's rows and columns in the copies' reach (those past it take no gradient)
  const int64_t rows = s.H < f.Hp - s.ph ? s.H : f.Hp - s.ph, cols = s.W < f.Wp - s.pw ? s.W : f.Wp - s.pw;
  std::vector<char> finite(size_t(blocks * s.groups), 1);  // per task
  for_tasks(blocks * s.groups, 2.0 * 16 * g.Og * Cv * S * f.tiles(), [&](int64_t task, int gemm_threads) {
    static thread_local std::vector<float> dy_buffer, mdy_buffer, v_buffer, dx_buffer;
    const int64_t n0 = (task / s.groups) * S, grp = task % s.groups;
    const int64_t samples = s.N - n0 < S ? s.N - n0 : S, T = samples * f.tiles();
    const float* dyt = channels_last_dy(dy_buffer, dy + (n0 * s.O + grp * g.Og) * g.P, s, g, samples);
    float* mdyt = scratch(mdy_buffer, size_t(16 * T * g.Og));
    float* dvt = scratch(v_buffer, size_t(16 * T * Cv));
    if (!winograd_output_gradient_channels(mdyt, dyt, s, f, samples, g.Og)) {
      finite[size_t(task)] = 0;
      return;
    }
    for (int64_t xi = 0; xi < 16; ++xi)
      gemm_detail::gemm_driver(dvt + xi * T * Cv, gemm_detail::MatrixA<float>{mdyt + xi * T * g.Og, false, T, g.Og},
                               gemm_detail::MatrixB<float>{u + (xi * s.O + grp * g.Og) * Cv, false, Cv, g.Og}, T, Cv,
                               g.Og, 1.0f, 0.0f, static_cast<const float*>(nullptr), GemmBias::none,
                               GemmActivation::none, gemm_threads);
    float* dxt = scratch(dx_buffer, size_t(samples * f.Hp * f.Wp * g.Cg));
    std::memset(dxt, 0, sizeof(float) * size_t(samples * f.Hp * f.Wp * g.Cg));
    winograd_patch_gradient_channels(dxt, dvt, s, f, samples, g.Cg);
    for (int64_t k = 0; k < samples; ++k) {  // (Hp, Wp, Cg) -> dx[n0 + k, grp Cg + c] (H, W), 0 past the reach
      float* dx_n = dx + ((n0 + k) * s.C + grp * g.Cg) * g.HW;
      if (rows < s.H || cols < s.W) std::memset(dx_n, 0, sizeof(float) * size_t(g.Cg * g.HW));
      for (int64_t ih = 0; ih < rows; ++ih)
        transpose_into(dx_n + ih * s.W, g.HW, dxt + ((k * f.Hp + ih + s.ph) * f.Wp + s.pw) * g.Cg, g.Cg, cols, g.Cg);
    }
  });
  return all_set(finite);
}
// The forward in the form the image size picks (winograd_row_form)
bool winograd_conv2d_forward(float* y, const float* x, const float* w, const float* bias, const ConvShape& s,
                             const Geometry& g) {
  return winograd_row_form(s) ? winograd_conv2d_forward_rows(y, x, w, bias, s, g)
                              : winograd_conv2d_forward_channels(y, x, w, bias, s, g);
}
bool winograd_weight_gradient_chunk(float* partial, const float* dy0, const float* x0, const ConvShape& s,
                                    const Geometry& g, int64_t samples) {
  return winograd_row_form(s) ? winograd_weight_gradient_chunk_rows(partial, dy0, x0, s, g, samples)
                              : winograd_weight_gradient_chunk_channels(partial, dy0, x0, s, g, samples);
}
#endif

}  // namespace conv_detail
}  // namespace SJ_ISA
}  // namespace shenjing

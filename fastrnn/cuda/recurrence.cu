// Sequential part of RNN / LSTM / GRU (reset-before and reset-after), forward and backward.
//
// Compiled through fastrnn/cuda/compile.py (NVRTC via cupy.RawModule) with
//   -DFASTRNN_REAL=float|double   the element type
//   -DFASTRNN_COOP                also build the persistent (cooperative) kernels
// and by tests/test_cuda.py with nvcc for every target it checks. No standard headers: NVRTC has none.
//
// Shapes (time-major, see fastrnn/reference/cells.py): T time, N batch, H hidden, G gates,
//   xw (T, N, G*H), Wh (H, G*H), h0/c0 (N, H), hs/cs/aux/dhs/dhn (T, N, H), acts/dA (T, N, G*H),
//   lengths (N,) int64 steps of each row (null: all T).
//
// Work split (both strategies): a block owns a tile of U consecutive hidden units (all G gate
// columns of those units, so the gate math never leaves the block) and a group of batch rows.
//   forward  step: out(rows, G*Upad) = h_prev(rows, H) @ Wh[:, block columns]   then gate math
//   backward step: out(rows, Upad)   = dA_next(rows, G*H) @ Wh[block units, :]^T then gate math
// Both are the same block-level product "A (global, rows x K) times B (K x J)", where B is the
// block's slice of Wh: resident in shared memory for the whole sequence (persistent kernels when
// it fits) or staged from global/L2 in K-chunks.
//
// Strategy "persistent": one cooperative launch runs all T steps; grid.sync() separates phases
// (a phase reads what every block wrote in the previous one: h_t, r*h_t, dA_t).
// Strategy "graph": one ordinary launch per phase (*_step kernels), captured once into a CUDA
// graph by the host; kernel boundaries separate phases.
// Variable lengths: step t of row n is padding when t >= lengths[n]. The step's product still
// covers every row; the gate epilogue stores zero (masked_) in every output, activation and
// gradient of a padded row, so the zero state it leaves makes the rest of the row zero as well.
// Arguments live in a device-side RecArgs table (written by rec_set_args before each call), so a
// captured graph can be replayed on new arrays without re-capture.

#ifndef FASTRNN_REAL
#define FASTRNN_REAL float
#endif
typedef FASTRNN_REAL real;
// 64-bit offsets; NVRTC has no <cstddef>.
typedef unsigned long long idx_t;

#ifdef FASTRNN_COOP
#include <cooperative_groups.h>
namespace cg = cooperative_groups;
#endif

#define NTHREADS 256
// Partial sums of one k-slice: every thread holds a 4x4 register tile.
#define TILE_ELEMS 16

#define CELL_RNN 0
#define CELL_LSTM 1
#define CELL_GRU 2
#define CELL_GRU_RA 3

template <int CELL> struct CellTraits;
template <> struct CellTraits<CELL_RNN> { static const int G = 1; static const int PHASES = 1; };
template <> struct CellTraits<CELL_LSTM> { static const int G = 4; static const int PHASES = 1; };
// Reset-before needs r*h of every unit before the candidate product: two phases per step.
template <> struct CellTraits<CELL_GRU> { static const int G = 3; static const int PHASES = 2; };
template <> struct CellTraits<CELL_GRU_RA> { static const int G = 3; static const int PHASES = 1; };

// Layout must match fastrnn/cuda/planning.py (REC_ARGS_POINTERS, REC_ARGS_INTS).
struct RecArgs {
    const real* xw;    // forward input (T, N, G*H)
    const real* Wh;    // (H, G*H)
    const real* h0;    // (N, H)
    const real* c0;    // (N, H), LSTM
    const real* b_hn;  // (H,), GRU reset-after
    const real* dhs;   // backward input (T, N, H)
    const long long* lengths;  // (N,) steps of each row; null: all T
    real* hs;          // forward output / backward input (T, N, H)
    real* cs;          // LSTM cell states (T, N, H)
    real* acts;        // activated gates (T, N, G*H)
    real* aux;         // GRU: r*h_prev; GRU reset-after: hn (T, N, H)
    real* dA;          // backward output (T, N, G*H)
    real* dhn;         // GRU reset-after backward output (T, N, H)
    real* dh0;         // (N, H); also the carried gradient between backward steps
    real* dc0;         // (N, H); LSTM carried cell gradient
    int T, N, H;
    int U;             // hidden units per tile (multiple of 4)
    int ntiles;        // ceil(H / U)
    int ngroups;       // batch-row groups
    int rows_per_group;
    int NB;            // rows per product chunk (multiple of 4)
    int KC;            // K per staged chunk
    int resident;      // 1: keep the Wh slice in shared memory for the whole launch
    int pad0, pad1;
};

__device__ __forceinline__ float tanh_(float x) { return tanhf(x); }
__device__ __forceinline__ double tanh_(double x) { return tanh(x); }
// Same form as the reference (tanh, no exp overflow for large |x|).
__device__ __forceinline__ real sigmoid_(real x) { return real(0.5) * (real(1) + tanh_(real(0.5) * x)); }
__device__ __forceinline__ float ldg_(const float* p) { return __ldg(p); }
__device__ __forceinline__ double ldg_(const double* p) { return __ldg(p); }

// Whether step t of row n is padding, and a value stored there: a select, so NaN or inf computed
// from a padded row's inputs never reaches an output (exact zero, as in the reference).
__device__ __forceinline__ bool padded_(const RecArgs& a, int t, idx_t n) {
    return a.lengths != nullptr && t >= __ldg(a.lengths + n);
}
__device__ __forceinline__ real masked_(bool pad, real v) { return pad ? real(0) : v; }

// Four consecutive shared-memory values in one (float4) or two (double2) 16-byte loads.
__device__ __forceinline__ void lds4(const float* p, float v[4]) {
    const float4 q = *reinterpret_cast<const float4*>(p);
    v[0] = q.x; v[1] = q.y; v[2] = q.z; v[3] = q.w;
}
__device__ __forceinline__ void lds4(const double* p, double v[4]) {
    const double2 a = *reinterpret_cast<const double2*>(p);
    const double2 b = *reinterpret_cast<const double2*>(p + 2);
    v[0] = a.x; v[1] = a.y; v[2] = b.x; v[3] = b.y;
}

struct Smem {
    real* Bres;  // resident B (Kb x Jpad), or the staging area when not resident
    real* Bst;   // staged B chunk (KC x Jc)
    real* At;    // staged A chunk, transposed: At[k * (NB + 4) + r]
    real* red;   // k-slice partials: red[e * NTHREADS + tid], e < 16
    real* outs;  // finished products of one row chunk: outs[r * Jc + j]
};

// Block context: what the product and the gate math of one work item need.
struct Ctx {
    Smem s;
    const real* Wh;
    int H, GH, U, u0, NB, KC, Jpad;
    bool resident;
};

// Element (k, j) of the block's B, j in the block's column space.
//   forward (FWDB): j = g * U + uu  ->  Wh[k, g*H + u0 + uu]
//   backward:       j = uu          ->  Wh[u0 + uu, k]           (the transposed product)
template <bool FWDB>
__device__ void stage_B(const Ctx& c, real* dst, int ldd, int k0, int kc, int j0, int jc) {
    const int tid = threadIdx.x;
    const int total = kc * jc;
    if (FWDB) {
        // j fastest: the U units of one gate are contiguous in a row of Wh.
        for (int idx = tid; idx < total; idx += NTHREADS) {
            const int k = idx / jc, j = idx - k * jc;
            const int jj = j0 + j;
            const int g = jj / c.U, uu = jj - g * c.U;
            const int hu = c.u0 + uu;
            real v = real(0);
            if (hu < c.H) v = ldg_(c.Wh + (idx_t)(k0 + k) * c.GH + (idx_t)g * c.H + hu);
            dst[k * ldd + j] = v;
        }
    } else {
        // k fastest: a row of Wh is contiguous in k.
        for (int idx = tid; idx < total; idx += NTHREADS) {
            const int j = idx / kc, k = idx - j * kc;
            const int hu = c.u0 + j0 + j;
            real v = real(0);
            if (j0 + j < c.U && hu < c.H) v = ldg_(c.Wh + (idx_t)hu * c.GH + k0 + k);
            dst[k * ldd + j] = v;
        }
    }
}

// outs[r][j] (+)= sum_k A[r * lda + k] * B[kb0 + k][jb0 + j] for r < NB (rows >= nrows read as 0),
// j < Jc (multiple of 4), k < K. Every thread of the block must call it (it has barriers).
// A may have been written by other blocks of this launch before the last grid.sync(), so it is
// read with ordinary (coherent) loads, never __ldg.
template <bool FWDB>
__device__ void block_gemm(const Ctx& c, const real* A, int lda, int nrows, int K, int kb0, int jb0,
                           int Jc, bool accumulate) {
    const int tid = threadIdx.x;
    const int NB = c.NB, lda_t = c.NB + 4;
    const int ctiles = Jc >> 2;
    const int TT = (NB >> 2) * ctiles;     // 4x4 output tiles; planner keeps TT <= NTHREADS
    const int KS = NTHREADS / TT;          // k-slices: threads sharing one tile
    const int ti = tid % TT, ks = tid / TT;
    const bool active = ks < KS;
    const int rt = ti / ctiles, ct = ti - (ti / ctiles) * ctiles;

    real acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = real(0);

    for (int k0 = 0; k0 < K; k0 += c.KC) {
        const int kc = min(c.KC, K - k0);
        // Stage A^T: four independent loads in flight per thread before the stores.
        const int total = NB * kc;
        for (int base = 0; base < total; base += 4 * NTHREADS) {
            real v[4];
            int dst[4];
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                const int idx = base + q * NTHREADS + tid;
                const int r = idx / kc, k = idx - r * kc;
                dst[q] = idx < total ? k * lda_t + r : -1;
                v[q] = (idx < total && r < nrows) ? A[(idx_t)r * lda + k0 + k] : real(0);
            }
#pragma unroll
            for (int q = 0; q < 4; ++q)
                if (dst[q] >= 0) c.s.At[dst[q]] = v[q];
        }
        const real* Bp;
        int ldb;
        if (c.resident) {
            Bp = c.s.Bres + (idx_t)(kb0 + k0) * c.Jpad + jb0;
            ldb = c.Jpad;
        } else {
            stage_B<FWDB>(c, c.s.Bst, Jc, kb0 + k0, kc, jb0, Jc);
            Bp = c.s.Bst;
            ldb = Jc;
        }
        __syncthreads();
        if (active) {
            const real* ap = c.s.At + rt * 4;
            const real* bp = Bp + ct * 4;
            for (int k = ks; k < kc; k += KS) {
                real a[4], b[4];
                lds4(ap + k * lda_t, a);
                lds4(bp + k * ldb, b);
#pragma unroll
                for (int i = 0; i < 4; ++i)
#pragma unroll
                    for (int j = 0; j < 4; ++j) acc[i][j] = fma(a[i], b[j], acc[i][j]);
            }
        }
        __syncthreads();
    }

    // Reduce the KS k-slices of every output: TPO lanes of one warp per output, then shuffles.
    if (active) {
#pragma unroll
        for (int i = 0; i < 4; ++i)
#pragma unroll
            for (int j = 0; j < 4; ++j) c.s.red[(i * 4 + j) * NTHREADS + tid] = acc[i][j];
    }
    __syncthreads();
    const int NO = NB * Jc;
    int TPO = 1;
    while (TPO < 32 && TPO * 2 <= KS && NO * TPO * 2 <= NTHREADS) TPO *= 2;
    const int lane_o = tid & (TPO - 1);
    for (int base = 0; base < NO * TPO; base += NTHREADS) {
        const int slot = base + tid;
        const int o = slot / TPO;
        real sum = real(0);
        if (o < NO) {
            const int r = o / Jc, j = o - r * Jc;
            const int t = (r >> 2) * ctiles + (j >> 2);
            const int e = (r & 3) * 4 + (j & 3);
            const real* src = c.s.red + e * NTHREADS + t;
            for (int q = lane_o; q < KS; q += TPO) sum += src[q * TT];
        }
        for (int off = TPO >> 1; off > 0; off >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, off);
        if (o < NO && lane_o == 0) c.s.outs[o] = accumulate ? c.s.outs[o] + sum : sum;
    }
    __syncthreads();
}

// ------------------------------------------------------------------------------------ forward
// One phase of forward step t for the rows [rbeg, rend) of the block's tile.
template <int CELL>
__device__ void fwd_phase(const RecArgs& a, const Ctx& c, int rbeg, int rend, int t, int phase) {
    const int G = CellTraits<CELL>::G;
    const int H = a.H, N = a.N, GH = G * H, U = c.U, u0 = c.u0;
    const idx_t NH = (idx_t)N * H, NGH = (idx_t)N * GH;
    const real* hprev = t > 0 ? a.hs + (idx_t)(t - 1) * NH : a.h0;
    const int tid = threadIdx.x;
    for (int n0 = rbeg; n0 < rend; n0 += c.NB) {
        const int nrows = min(c.NB, rend - n0);
        int Jc;
        if (CELL == CELL_GRU && phase == 1) {
            Jc = U;  // candidate columns, product over r*h_prev of every unit
            block_gemm<true>(c, a.aux + (idx_t)t * NH + (idx_t)n0 * H, H, nrows, H, 0, 2 * U, Jc, false);
        } else {
            Jc = (CELL == CELL_GRU ? 2 : G) * U;
            block_gemm<true>(c, hprev + (idx_t)n0 * H, H, nrows, H, 0, 0, Jc, false);
        }
        for (int o = tid; o < nrows * U; o += NTHREADS) {
            const int r = o / U, uu = o - r * U, hu = u0 + uu;
            if (hu >= H) continue;
            const idx_t n = (idx_t)(n0 + r);
            const real* x = a.xw + (idx_t)t * NGH + n * GH + hu;
            const real* P = c.s.outs + r * Jc + uu;
            const idx_t ih = (idx_t)t * NH + n * H + hu;       // (t, n, hu) in a (T, N, H) array
            real* act = a.acts + (idx_t)t * NGH + n * GH + hu;  // (t, n, hu) of gate 0
            const bool pad = padded_(a, t, n);
            if (CELL == CELL_RNN) {
                a.hs[ih] = masked_(pad, tanh_(ldg_(x) + P[0]));
            } else if (CELL == CELL_LSTM) {
                const real f = sigmoid_(ldg_(x) + P[0]);
                const real g = tanh_(ldg_(x + H) + P[U]);
                const real i = sigmoid_(ldg_(x + 2 * H) + P[2 * U]);
                const real og = sigmoid_(ldg_(x + 3 * H) + P[3 * U]);
                const real cp = t > 0 ? a.cs[ih - NH] : ldg_(a.c0 + n * H + hu);
                const real cn = masked_(pad, f * cp + g * i);
                a.cs[ih] = cn;
                a.hs[ih] = masked_(pad, og * tanh_(cn));
                act[0] = masked_(pad, f); act[H] = masked_(pad, g);
                act[2 * H] = masked_(pad, i); act[3 * H] = masked_(pad, og);
            } else if (CELL == CELL_GRU) {
                const real hp = hprev[n * H + hu];
                if (phase == 0) {
                    const real z = sigmoid_(ldg_(x) + P[0]);
                    const real rr = sigmoid_(ldg_(x + H) + P[U]);
                    a.aux[ih] = masked_(pad, rr * hp);
                    act[0] = masked_(pad, z); act[H] = masked_(pad, rr);
                } else {
                    const real ht = tanh_(ldg_(x + 2 * H) + P[0]);
                    const real z = act[0];  // written by this block in phase 0
                    a.hs[ih] = masked_(pad, (real(1) - z) * hp + z * ht);
                    act[2 * H] = masked_(pad, ht);
                }
            } else {  // CELL_GRU_RA
                const real hp = hprev[n * H + hu];
                const real z = sigmoid_(ldg_(x) + P[0]);
                const real rr = sigmoid_(ldg_(x + H) + P[U]);
                const real hn = P[2 * U] + ldg_(a.b_hn + hu);
                const real nn = tanh_(ldg_(x + 2 * H) + rr * hn);
                a.aux[ih] = masked_(pad, hn);
                a.hs[ih] = masked_(pad, (real(1) - z) * nn + z * hp);
                act[0] = masked_(pad, z); act[H] = masked_(pad, rr); act[2 * H] = masked_(pad, nn);
            }
        }
    }
}

// ----------------------------------------------------------------------------------- backward
// One phase of backward step t (t = T-1 .. 0), or the final dh0 product when t < 0.
// dh0 doubles as the carried dh between steps (GRU forms), dc0 as the carried dc (LSTM): each
// (n, unit) entry is only ever touched by the block that owns the unit.
template <int CELL>
__device__ void bwd_phase(const RecArgs& a, const Ctx& c, int rbeg, int rend, int t, int phase) {
    const int G = CellTraits<CELL>::G;
    const int H = a.H, N = a.N, T = a.T, GH = G * H, U = c.U, u0 = c.u0;
    const idx_t NH = (idx_t)N * H, NGH = (idx_t)N * GH;
    const int tid = threadIdx.x;
    const bool final_ = t < 0;
    const bool has_next = final_ || t < T - 1;   // a later step's gradient flows into this one
    const int tn = final_ ? 0 : t + 1;           // step whose dA feeds the product
    for (int n0 = rbeg; n0 < rend; n0 += c.NB) {
        const int nrows = min(c.NB, rend - n0);
        const real* dAn = a.dA + (idx_t)tn * NGH + (idx_t)n0 * GH;
        if (CELL == CELL_GRU && phase == 1) {
            // drh = dA_t[:, candidate] @ Wh[units, candidate]^T
            block_gemm<false>(c, a.dA + (idx_t)t * NGH + (idx_t)n0 * GH + 2 * H, GH, nrows, H, 2 * H, 0, U, false);
        } else if (has_next) {
            if (CELL == CELL_GRU) {
                block_gemm<false>(c, dAn, GH, nrows, 2 * H, 0, 0, U, false);
            } else if (CELL == CELL_GRU_RA) {
                block_gemm<false>(c, dAn, GH, nrows, 2 * H, 0, 0, U, false);
                block_gemm<false>(c, a.dhn + (idx_t)tn * NH + (idx_t)n0 * H, H, nrows, H, 2 * H, 0, U, true);
            } else {
                block_gemm<false>(c, dAn, GH, nrows, GH, 0, 0, U, false);
            }
        }
        for (int o = tid; o < nrows * U; o += NTHREADS) {
            const int r = o / U, uu = o - r * U, hu = u0 + uu;
            if (hu >= H) continue;
            const idx_t n = (idx_t)(n0 + r);
            const idx_t i0 = n * H + hu;  // (n, hu) in an (N, H) array
            const real P = has_next ? c.s.outs[r * U + uu] : real(0);
            if (final_) {
                if (CELL == CELL_RNN || CELL == CELL_LSTM) a.dh0[i0] = P;
                else a.dh0[i0] = a.dh0[i0] + P;
                continue;
            }
            const idx_t ih = (idx_t)t * NH + i0;
            const real* act = a.acts + (idx_t)t * NGH + n * GH + hu;
            real* dA = a.dA + (idx_t)t * NGH + n * GH + hu;
            const bool pad = padded_(a, t, n);
            if (CELL == CELL_RNN) {
                const real dh = ldg_(a.dhs + ih) + P;
                const real h = a.hs[ih];
                dA[0] = masked_(pad, dh * (real(1) - h * h));
            } else if (CELL == CELL_LSTM) {
                const real dh = ldg_(a.dhs + ih) + P;
                const real f = act[0], g = act[H], i = act[2 * H], og = act[3 * H];
                const real tc = tanh_(a.cs[ih]);
                const real cp = t > 0 ? a.cs[ih - NH] : ldg_(a.c0 + i0);
                const real dc = (t < T - 1 ? a.dc0[i0] : real(0)) + dh * og * (real(1) - tc * tc);
                dA[0] = masked_(pad, dc * cp * f * (real(1) - f));
                dA[H] = masked_(pad, dc * i * (real(1) - g * g));
                dA[2 * H] = masked_(pad, dc * g * i * (real(1) - i));
                dA[3 * H] = masked_(pad, dh * tc * og * (real(1) - og));
                a.dc0[i0] = masked_(pad, dc * f);
            } else if (CELL == CELL_GRU) {
                const real z = act[0], rr = act[H], ht = act[2 * H];
                const real hp = t > 0 ? a.hs[ih - NH] : ldg_(a.h0 + i0);
                if (phase == 0) {
                    const real dh = ldg_(a.dhs + ih) + (has_next ? a.dh0[i0] + P : real(0));
                    dA[2 * H] = masked_(pad, dh * z * (real(1) - ht * ht));
                    dA[0] = masked_(pad, dh * (ht - hp) * z * (real(1) - z));
                    a.dh0[i0] = dh;  // kept for phase 1, which masks what it carries on
                } else {
                    const real drh = c.s.outs[r * U + uu];
                    const real dh = a.dh0[i0];
                    dA[H] = masked_(pad, drh * hp * rr * (real(1) - rr));
                    a.dh0[i0] = masked_(pad, dh * (real(1) - z) + drh * rr);
                }
            } else {  // CELL_GRU_RA
                const real z = act[0], rr = act[H], nn = act[2 * H];
                const real hp = t > 0 ? a.hs[ih - NH] : ldg_(a.h0 + i0);
                const real hn = a.aux[ih];
                const real dh = ldg_(a.dhs + ih) + (has_next ? a.dh0[i0] + P : real(0));
                const real da_n = dh * (real(1) - z) * (real(1) - nn * nn);
                dA[0] = masked_(pad, dh * (hp - nn) * z * (real(1) - z));
                dA[H] = masked_(pad, da_n * hn * rr * (real(1) - rr));
                dA[2 * H] = masked_(pad, da_n);
                a.dhn[ih] = masked_(pad, da_n * rr);
                a.dh0[i0] = masked_(pad, dh * z);
            }
        }
    }
}

// ------------------------------------------------------------------------------------ drivers
// Dynamic shared memory, in elements; fastrnn/cuda/planning.py:smem_elements computes the same.
__device__ __forceinline__ Smem carve(const RecArgs& a, int Kb, int Jpad, bool resident_alloc) {
    extern __shared__ __align__(16) unsigned char smem_raw[];
    real* p = reinterpret_cast<real*>(smem_raw);
    Smem s;
    s.Bres = p;
    s.Bst = p;  // staging reuses the B area (a resident-sized area is larger than a chunk)
    p += resident_alloc ? (idx_t)Kb * Jpad : (idx_t)a.KC * Jpad;
    s.At = p;
    p += (idx_t)a.KC * (a.NB + 4);
    s.red = p;
    p += TILE_ELEMS * NTHREADS;
    s.outs = p;
    return s;
}

__device__ __forceinline__ void work_item(const RecArgs& a, int w, int& u0, int& rbeg, int& rend) {
    const int tile = w % a.ntiles, grp = w / a.ntiles;
    u0 = tile * a.U;
    rbeg = grp * a.rows_per_group;
    rend = min(a.N, rbeg + a.rows_per_group);
}

template <int CELL, bool FWD>
__device__ __forceinline__ Ctx make_ctx(const RecArgs& a, bool resident_alloc, bool resident) {
    const int G = CellTraits<CELL>::G;
    Ctx c;
    c.Jpad = FWD ? G * a.U : a.U;
    c.s = carve(a, FWD ? a.H : G * a.H, c.Jpad, resident_alloc);
    c.Wh = a.Wh;
    c.H = a.H;
    c.GH = G * a.H;
    c.U = a.U;
    c.u0 = 0;
    c.NB = a.NB;
    c.KC = a.KC;
    c.resident = resident;
    return c;
}

// One phase of one step, every work item of this block; used by the graph strategy.
template <int CELL, bool FWD>
__device__ void step_body(const RecArgs* argp, int t, int phase) {
    const RecArgs a = *argp;
    Ctx c = make_ctx<CELL, FWD>(a, false, false);
    const int nwork = a.ntiles * a.ngroups;
    for (int w = blockIdx.x; w < nwork; w += gridDim.x) {
        int rbeg, rend;
        work_item(a, w, c.u0, rbeg, rend);
        if (FWD) fwd_phase<CELL>(a, c, rbeg, rend, t, phase);
        else bwd_phase<CELL>(a, c, rbeg, rend, t, phase);
    }
}

#ifdef FASTRNN_COOP
// All T steps in one cooperative launch. CuPy silently shrinks a cooperative grid that exceeds
// the co-resident limit, so the kernel loops over work items and keeps Wh resident only when the
// grid really has one block per work item.
template <int CELL, bool FWD>
__device__ void persist_body(const RecArgs* argp) {
    const RecArgs a = *argp;
    cg::grid_group grid = cg::this_grid();
    const int PH = CellTraits<CELL>::PHASES;
    const int nwork = a.ntiles * a.ngroups;
    const bool resident = a.resident != 0 && (int)gridDim.x >= nwork;
    Ctx c = make_ctx<CELL, FWD>(a, a.resident != 0, resident);
    if (resident) {
        int rbeg, rend;
        work_item(a, blockIdx.x, c.u0, rbeg, rend);
        stage_B<FWD>(c, c.s.Bres, c.Jpad, 0, FWD ? a.H : c.GH, 0, c.Jpad);
        __syncthreads();
    }
    if (FWD) {
        for (int t = 0; t < a.T; ++t) {
            for (int ph = 0; ph < PH; ++ph) {
                for (int w = blockIdx.x; w < nwork; w += gridDim.x) {
                    int rbeg, rend;
                    work_item(a, w, c.u0, rbeg, rend);
                    fwd_phase<CELL>(a, c, rbeg, rend, t, ph);
                }
                if (t < a.T - 1 || ph < PH - 1) grid.sync();
            }
        }
    } else {
        for (int t = a.T - 1; t >= -1; --t) {
            const int nph = t < 0 ? 1 : PH;
            for (int ph = 0; ph < nph; ++ph) {
                for (int w = blockIdx.x; w < nwork; w += gridDim.x) {
                    int rbeg, rend;
                    work_item(a, w, c.u0, rbeg, rend);
                    bwd_phase<CELL>(a, c, rbeg, rend, t, ph);
                }
                if (t >= 0) grid.sync();
            }
        }
    }
}

#define PERSIST(name, CELL, FWD) \
    extern "C" __global__ void __launch_bounds__(NTHREADS, 1) name(const RecArgs* a) { persist_body<CELL, FWD>(a); }
PERSIST(rnn_fwd_persist, CELL_RNN, true)
PERSIST(rnn_bwd_persist, CELL_RNN, false)
PERSIST(lstm_fwd_persist, CELL_LSTM, true)
PERSIST(lstm_bwd_persist, CELL_LSTM, false)
PERSIST(gru_fwd_persist, CELL_GRU, true)
PERSIST(gru_bwd_persist, CELL_GRU, false)
PERSIST(gru_ra_fwd_persist, CELL_GRU_RA, true)
PERSIST(gru_ra_bwd_persist, CELL_GRU_RA, false)
#endif  // FASTRNN_COOP

// Two blocks per SM: caps registers at 128, which removes the spills ptxas chose at 64.
#define STEP(name, CELL, FWD)                                                             \
    extern "C" __global__ void __launch_bounds__(NTHREADS, 2) name(const RecArgs* a, int t, int phase) { \
        step_body<CELL, FWD>(a, t, phase);                                                \
    }
STEP(rnn_fwd_step, CELL_RNN, true)
STEP(rnn_bwd_step, CELL_RNN, false)
STEP(lstm_fwd_step, CELL_LSTM, true)
STEP(lstm_bwd_step, CELL_LSTM, false)
STEP(gru_fwd_step, CELL_GRU, true)
STEP(gru_bwd_step, CELL_GRU, false)
STEP(gru_ra_fwd_step, CELL_GRU_RA, true)
STEP(gru_ra_bwd_step, CELL_GRU_RA, false)

// Writes the argument table in stream order, so a captured graph that reads it replays on the
// arrays of the current call. Parameter order: planning.REC_ARGS_POINTERS, then REC_ARGS_INTS.
extern "C" __global__ void rec_set_args(RecArgs* dst, const real* xw, const real* Wh, const real* h0,
                                        const real* c0, const real* b_hn, const real* dhs,
                                        const long long* lengths, real* hs, real* cs, real* acts,
                                        real* aux, real* dA, real* dhn, real* dh0, real* dc0, int T,
                                        int N, int H, int U, int ntiles, int ngroups,
                                        int rows_per_group, int NB, int KC, int resident) {
    if (threadIdx.x != 0 || blockIdx.x != 0) return;
    RecArgs a;
    a.xw = xw; a.Wh = Wh; a.h0 = h0; a.c0 = c0; a.b_hn = b_hn; a.dhs = dhs; a.lengths = lengths;
    a.hs = hs; a.cs = cs; a.acts = acts; a.aux = aux; a.dA = dA; a.dhn = dhn; a.dh0 = dh0; a.dc0 = dc0;
    a.T = T; a.N = N; a.H = H; a.U = U; a.ntiles = ntiles; a.ngroups = ngroups;
    a.rows_per_group = rows_per_group; a.NB = NB; a.KC = KC; a.resident = resident;
    a.pad0 = 0; a.pad1 = 0;
    *dst = a;
}

// The CUDA backend: the forward, and a fused backward that writes grad_input and
// reduces the parameter-gradient sums in the same pass over (grad_output, x).
// Stable ABI only, registered for the CUDA key by the module sqish_ext._cuda.
//
// Layout. x is dense (sqish_op.h), so with C channels and channel stride S
// its storage is, for the purpose of finding an element's parameters, one of:
//   shared parameters (C == 1): any rows of one tile's width, the last one cut
//     short at numel;
//   channels outside a run (S > 1): [rows][C][S]; slice ch is the matrix
//     [rows][S] of channel ch, row pitch C·S, starting at ch·S (NCHW, (N, C, L));
//   channels innermost (S == 1): [rows][C], the column is the channel
//     (channels_last, (N, C)).
// Every kernel walks a matrix [rows][cols] of one slice (the whole storage when
// channels are innermost or shared) in tiles of kThreads threads: tile_width
// threads across, each owning kVec consecutive columns, times row_lanes rows.
// A thread keeps its columns while it strides over rows, so the parameters of its
// elements are fixed: it derives them once (ln β included), holds them in
// registers, and sums its backward terms in registers per column. kVec is 128
// bits' worth whenever rows start on a vector boundary, else one element. A full
// vector moves as one 128-bit access when every pointer is 16-byte aligned, else
// element by element.
//
// Reduction. No float atomics: a block reduces its threads' sums in a fixed
// order and writes one partial per (channel, term) to its own cell of a scratch
// table, which plan_launch keeps small (kMaxScratchBytes); a second kernel adds
// each channel's partials in a fixed order in float64 and applies
// param_grads_from_sums. The partition (the grid, the tiles, and so which
// elements each thread sums, in which order) depends only on the problem's shape
// and dtype and on the device; pointer alignment picks the access instruction and
// nothing else. Parameter gradients are therefore bitwise reproducible, also
// between a misaligned view and an aligned copy of x.
//
// No host-device synchronisation anywhere (tensor parameters are read on the device,
// float ones passed as kernel arguments),
// and scratch comes from the caching allocator: the ops can be captured in a
// CUDA graph.
#include "../python_module.h"
#include "../sqish_math.h"
#include "../sqish_op.h"

#include <torch/csrc/inductor/aoti_torch/c/shim.h>
#include <torch/csrc/stable/accelerator.h>
#include <torch/csrc/stable/library.h>
#include <torch/csrc/stable/macros.h>
#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/util/BFloat16.h>
#include <torch/headeronly/util/Half.h>

#include <cuda_runtime.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <type_traits>

namespace sqish::cuda {
namespace {

constexpr int kThreads = 256;
constexpr int kWarpSize = 32;
constexpr int kWarps = kThreads / kWarpSize;
constexpr int kMaxGridY = 65535;
constexpr int kVectorBytes = 16;  // one 128-bit load or store per thread
// Devices whose launch properties the caches below can hold.
constexpr int kMaxDevices = 64;
// The scratch of a channels-innermost backward: at most this, or x's size if
// smaller, yet at least one partial per channel and term. Small enough to stay in
// L2 from the kernel that writes it to the one that reads it.
constexpr int64_t kMaxScratchBytes = int64_t(4) << 20;

// ---- Parameters, read on the device ---------------------------------------------

// One of alpha, beta, gamma: a value, or a float32 or float64 tensor, 0-dim
// (stride 0) or per channel.
struct ParamRef {
  const void* data;  // null for a value
  int64_t stride;
  bool is_double;
  double value;

  __device__ double at(int64_t channel) const {
    if (data == nullptr) return value;
    const int64_t i = channel * stride;
    return is_double ? static_cast<const double*>(data)[i] : static_cast<const float*>(data)[i];
  }
};

struct Params {
  ParamRef alpha, beta, gamma;

  // Derived in float64, then rounded once to the compute type (as on the CPU).
  __device__ Coeffs<double> coeffs(int64_t channel) const {
    return make_coeffs(alpha.at(channel), beta.at(channel), gamma.at(channel));
  }
  template <typename T>
  __device__ Coeffs<T> coeffs_as(int64_t channel) const {
    const Coeffs<double> d = coeffs(channel);
    return {T(d.alpha), T(d.one_minus_alpha), T(d.k), T(d.c)};
  }
};

// The kernels read float32 and float64 parameters only: a float16 or bfloat16 one
// (a module after .half()) is read from a float32 copy made on the device (stream
// ordered, no sync), held in `copy` until the launch. Reading those dtypes in the
// kernels themselves made ptxas many times slower for every architecture.
ParamRef param_ref(const Parameter& param, Tensor& copy) {
  if (param.is_value()) return {nullptr, 0, false, param.value};
  const Tensor* t = &param.tensor;
  if (t->scalar_type() == ScalarType::Half || t->scalar_type() == ScalarType::BFloat16) {
    copy = torch::stable::to(*t, ScalarType::Float);
    t = &copy;
  }
  return {t->const_data_ptr(), t->dim() == 0 ? 0 : t->stride(0), t->scalar_type() == ScalarType::Double, 0.0};
}

// The parameters as the kernels read them, and the copies they may read from.
struct LaunchParams {
  Tensor copies[3];
  Params params;

  explicit LaunchParams(const Problem& problem)
      : params{param_ref(problem.alpha, copies[0]), param_ref(problem.beta, copies[1]),
               param_ref(problem.gamma, copies[2])} {}
};

// ---- The walk over a slice --------------------------------------------------------

struct Tiling {
  int64_t numel;
  int64_t rows, cols, pitch;
  int64_t slice_stride;     // storage offset between consecutive slices
  int64_t col_tiles;        // ceil(cols / (tile_width·kVec))
  int32_t tile_width;       // threads across a tile
  int32_t row_lanes;        // rows a tile covers at once; tile_width·row_lanes ≤ kThreads
  int32_t blocks_per_slice; // blockIdx.x = slice·blocks_per_slice + column block
};

// Where this thread walks: its slice, its column block, and its place in a tile.
struct Walker {
  int64_t slice, column_block;
  int32_t lane_x, lane_y;
  bool active;  // threads past tile_width·row_lanes have no columns

  __device__ explicit Walker(const Tiling& t)
      : slice(blockIdx.x / t.blocks_per_slice),
        column_block(blockIdx.x % t.blocks_per_slice),
        lane_x(threadIdx.x % t.tile_width),
        lane_y(threadIdx.x / t.tile_width),
        active(lane_y < t.row_lanes) {}

  // First column of this thread's vector in column tile `tile`.
  template <int kVec>
  __device__ int64_t column(const Tiling& t, int64_t tile) const {
    return (tile * t.tile_width + lane_x) * kVec;
  }

  // Calls fn(col) for each column tile of this block that gives this thread a
  // column inside the row.
  template <int kVec, typename ColumnFn>
  __device__ void for_each_column(const Tiling& t, const ColumnFn& fn) const {
    for (int64_t tile = column_block; tile < t.col_tiles; tile += t.blocks_per_slice) {
      const int64_t col = column<kVec>(t, tile);
      if (col >= t.cols) break;  // later tiles lie further right
      fn(col);
    }
  }

  // Calls fn(offset, count) for each group of kUnroll of this thread's rows:
  // offset[u] is the storage offset of its vector in the u-th, count[u] how many
  // of its elements exist (kVec, fewer at the end of the storage, 0 past it).
  template <int kVec, int kUnroll, typename StepFn>
  __device__ void for_each_row_group(const Tiling& t, int64_t col, const StepFn& fn) const {
    const int64_t row_step = int64_t(gridDim.y) * t.row_lanes;
    const int64_t first = int64_t(blockIdx.y) * t.row_lanes + lane_y;
    for (int64_t row = first; row < t.rows; row += kUnroll * row_step) {
      int64_t offset[kUnroll];
      int count[kUnroll];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
        const int64_t r = row + u * row_step;
        offset[u] = slice * t.slice_stride + r * t.pitch + col;
        count[u] = r < t.rows ? int(std::clamp<int64_t>(t.numel - offset[u], 0, kVec)) : 0;
      }
      fn(offset, count);
    }
  }
};

// kVec elements in the compute type. A full vector moves as one 128-bit access
// when vector_access says that every pointer is 16-byte aligned (the partition
// starts every vector on a multiple of kVec elements); otherwise it moves, as
// the storage's last, partial vector always does, element by element.
template <typename scalar_t, int kVec>
struct alignas(sizeof(scalar_t) * kVec) Pack {
  scalar_t v[kVec];
};

// Whether a vector of `count` elements moves as one access. One element is
// always aligned to itself.
template <int kVec>
__device__ bool is_one_access(int count, bool vector_access) {
  return count == kVec && (kVec == 1 || vector_access);
}

// Full vectors go through uint4 and __stwb: with a plain struct copy the compiler
// merges the full and the partial branch and stores element by element.
template <typename opmath_t, int kVec, typename scalar_t>
__device__ void load(const scalar_t* p, int count, bool vector_access, opmath_t (&out)[kVec]) {
  if (is_one_access<kVec>(count, vector_access)) {
    Pack<scalar_t, kVec> pack;
    if constexpr (sizeof(pack) == kVectorBytes) {
      const uint4 bits = *reinterpret_cast<const uint4*>(p);
      memcpy(&pack, &bits, kVectorBytes);
    } else {
      pack = *reinterpret_cast<const Pack<scalar_t, kVec>*>(p);
    }
#pragma unroll
    for (int j = 0; j < kVec; ++j) out[j] = opmath_t(pack.v[j]);
  } else {
#pragma unroll
    for (int j = 0; j < kVec; ++j) out[j] = j < count ? opmath_t(p[j]) : opmath_t(0);
  }
}

template <int kVec, typename scalar_t, typename opmath_t>
__device__ void store(scalar_t* p, int count, bool vector_access, const opmath_t (&in)[kVec]) {
  if (is_one_access<kVec>(count, vector_access)) {
    Pack<scalar_t, kVec> pack;
#pragma unroll
    for (int j = 0; j < kVec; ++j) pack.v[j] = scalar_t(in[j]);
    if constexpr (sizeof(pack) == kVectorBytes) {
      uint4 bits;
      memcpy(&bits, &pack, kVectorBytes);
      __stwb(reinterpret_cast<uint4*>(p), bits);
    } else {
      *reinterpret_cast<Pack<scalar_t, kVec>*>(p) = pack;
    }
  } else {
#pragma unroll
    for (int j = 0; j < kVec; ++j) {
      if (j < count) p[j] = scalar_t(in[j]);
    }
  }
}

// The coefficients of a thread's kVec columns: one set when the slice decides
// the channel, one per column when the column is the channel.
template <typename opmath_t, int kVec, bool kPerColumn>
struct ColumnCoeffs {
  static constexpr int kSets = kPerColumn ? kVec : 1;
  Coeffs<opmath_t> set[kSets];

  __device__ void load_for_slice(const Params& params, int64_t slice) {
    if constexpr (!kPerColumn) set[0] = params.coeffs_as<opmath_t>(slice);
  }
  __device__ void load_for_columns(const Params& params, int64_t col) {
    if constexpr (kPerColumn) {
#pragma unroll
      for (int j = 0; j < kVec; ++j) set[j] = params.coeffs_as<opmath_t>(col + j);
    }
  }
  __device__ const Coeffs<opmath_t>& of(int j) const { return set[kPerColumn ? j : 0]; }
  __device__ bool any_beta_zero() const {
    bool any = false;
#pragma unroll
    for (int j = 0; j < kSets; ++j) any = any || is_beta_zero(set[j]);
    return any;
  }
};

// The compute type: float32 for the 16-bit types, as torch's opmath.
template <typename scalar_t>
struct OpMath;
template <>
struct OpMath<float> {
  using type = float;
};
template <>
struct OpMath<double> {
  using type = double;
};
template <>
struct OpMath<c10::Half> {
  using type = float;
};
template <>
struct OpMath<c10::BFloat16> {
  using type = float;
};
template <typename scalar_t>
using opmath_type = typename OpMath<scalar_t>::type;

// bfloat16 and float16 are computed in float32 with the fast gate (sqish_math.h).
template <typename scalar_t>
using PrecisionFor = std::conditional_t<std::is_same_v<opmath_type<scalar_t>, scalar_t>, Accurate, Fast>;

// Rows a thread handles at once: two independent 128-bit loads in flight per
// thread, as the memory system needs to stream at full bandwidth. One when the
// columns are channels: then kVec parameter sets and sums already fill the
// registers.
template <bool kPerColumn>
constexpr int kUnrollRows = kPerColumn ? 1 : 2;

template <typename scalar_t, int kVec, bool kPerColumn>
__global__ void __launch_bounds__(kThreads)
    forward_kernel(const scalar_t* x, scalar_t* out, Tiling tiling, Params params, bool vector_access) {
  // No __restrict__: out may alias x (the in-place op); each element is read
  // once, then written, by the same thread.
  using opmath_t = opmath_type<scalar_t>;
  constexpr int kUnroll = kUnrollRows<kPerColumn>;
  const Walker walker(tiling);
  if (!walker.active) return;
  ColumnCoeffs<opmath_t, kVec, kPerColumn> coeffs;
  coeffs.load_for_slice(params, walker.slice);
  walker.for_each_column<kVec>(tiling, [&](int64_t col) {
    coeffs.load_for_columns(params, col);
    walker.for_each_row_group<kVec, kUnroll>(tiling, col, [&](const int64_t(&offset)[kUnroll], const int(&count)[kUnroll]) {
      opmath_t v[kUnroll][kVec];
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) load<opmath_t, kVec>(x + offset[u], count[u], vector_access, v[u]);
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
        for (int j = 0; j < kVec; ++j) v[u][j] = sqish_value<PrecisionFor<scalar_t>>(v[u][j], coeffs.of(j));
      }
#pragma unroll
      for (int u = 0; u < kUnroll; ++u) store<kVec>(out + offset[u], count[u], vector_access, v[u]);
    });
  });
}

// ---- Reductions: fixed order, so bitwise reproducible ------------------------------

enum Term { kXSc, kXQ, kX2Q, kTerms };

__device__ double warp_sum(double v) {
#pragma unroll
  for (int delta = kWarpSize / 2; delta > 0; delta /= 2) v += __shfl_down_sync(0xffffffffu, v, delta);
  return v;
}

// The sum over the block of each thread's v[term], valid in thread 0.
__device__ void block_sum(double (&v)[kTerms]) {
  __shared__ double warp_sums[kTerms][kWarps];
  const int warp = threadIdx.x / kWarpSize, lane = threadIdx.x % kWarpSize;
#pragma unroll
  for (int k = 0; k < kTerms; ++k) {
    v[k] = warp_sum(v[k]);
    if (lane == 0) warp_sums[k][warp] = v[k];
  }
  __syncthreads();
  if (warp == 0) {
#pragma unroll
    for (int k = 0; k < kTerms; ++k) v[k] = warp_sum(lane < kWarps ? warp_sums[k][lane] : 0.0);
  }
}

// Scratch for the partial sums: partials[(channel·kTerms + term)·splits + split].
struct Partials {
  double* data;
  int64_t splits;

  __device__ double& at(int64_t channel, int term, int64_t split) const {
    return data[(channel * kTerms + term) * splits + split];
  }
};

template <typename scalar_t, int kVec, bool kPerColumn, bool kParamGrads>
__global__ void __launch_bounds__(kThreads)
    backward_kernel(const scalar_t* __restrict__ grad_output, const scalar_t* __restrict__ x,
                    scalar_t* __restrict__ grad_input, Tiling tiling, Params params, Partials partials,
                    bool vector_access) {
  using opmath_t = opmath_type<scalar_t>;
  using ThreadCoeffs = ColumnCoeffs<opmath_t, kVec, kPerColumn>;
  constexpr int kUnroll = kUnrollRows<kPerColumn>;
  const Walker walker(tiling);
  // Per-thread sums stay in opmath (float32 for the 16- and 32-bit types, as in
  // the CPU kernel's blocks) over the numel / (resident threads) elements of a
  // thread; everything after is float64.
  opmath_t sums[ThreadCoeffs::kSets][kTerms] = {};
  if (walker.active) {
    ThreadCoeffs coeffs;
    coeffs.load_for_slice(params, walker.slice);
    walker.for_each_column<kVec>(tiling, [&](int64_t col) {
      coeffs.load_for_columns(params, col);
      auto rows = [&](auto beta_may_be_zero) {
        walker.for_each_row_group<kVec, kUnroll>(tiling, col, [&](const int64_t(&offset)[kUnroll], const int(&count)[kUnroll]) {
          opmath_t g[kUnroll][kVec], v[kUnroll][kVec];
#pragma unroll
          for (int u = 0; u < kUnroll; ++u) {
            load<opmath_t, kVec>(grad_output + offset[u], count[u], vector_access, g[u]);
            load<opmath_t, kVec>(x + offset[u], count[u], vector_access, v[u]);
          }
#pragma unroll
          for (int u = 0; u < kUnroll; ++u) {
#pragma unroll
            for (int j = 0; j < kVec; ++j) {
              const BackwardTerms<opmath_t> t =
                  backward_terms<PrecisionFor<scalar_t>, decltype(beta_may_be_zero)::value>(g[u][j], v[u][j],
                                                                                              coeffs.of(j));
              v[u][j] = t.grad_input;
              if constexpr (kParamGrads) {
                // Only elements that exist: a zero-filled lane can still give NaN
                // terms (γ = ∞ makes k·0 NaN).
                if (j < count[u]) {
                  opmath_t* s = sums[kPerColumn ? j : 0];
                  s[kXSc] += t.x_sc, s[kXQ] += t.x_q, s[kX2Q] += t.x2_q;
                }
              }
            }
          }
#pragma unroll
          for (int u = 0; u < kUnroll; ++u) store<kVec>(grad_input + offset[u], count[u], vector_access, v[u]);
        });
      };
      // Chosen per thread, outside its rows: only the threads whose coefficients
      // hold β = 0 run the second exp of its ∂f/∂β term (sqish_math.h).
      if constexpr (kParamGrads) {
        if (coeffs.any_beta_zero()) return rows(std::true_type{});
      }
      rows(std::false_type{});
    });
  }
  if constexpr (kParamGrads) {
    if constexpr (!kPerColumn) {
      // Every element of this block belongs to channel `slice`.
      double total[kTerms];
#pragma unroll
      for (int k = 0; k < kTerms; ++k) total[k] = sums[0][k];
      block_sum(total);
      if (threadIdx.x == 0) {
        const int64_t split = int64_t(blockIdx.y) * tiling.blocks_per_slice + walker.column_block;
#pragma unroll
        for (int k = 0; k < kTerms; ++k) partials.at(walker.slice, k, split) = total[k];
      }
    } else {
      // Each column is a channel: add the row lanes of each column, a tree over
      // lane_y in shared memory, one term at a time. The block owns one column
      // tile (plan_launch), so the thread's columns start at `col`.
      __shared__ double column_sums[kVec][kThreads];
      const int64_t col = walker.column<kVec>(tiling, walker.column_block);
      const int lanes = tiling.row_lanes;
      int top = 1;
      while (top < lanes) top *= 2;
      for (int k = 0; k < kTerms; ++k) {
#pragma unroll
        for (int j = 0; j < kVec; ++j) column_sums[j][threadIdx.x] = sums[j][k];
        __syncthreads();
        for (int half = top / 2; half > 0; half /= 2) {
          if (walker.active && walker.lane_y < half && walker.lane_y + half < lanes) {
            const int other = threadIdx.x + half * tiling.tile_width;
#pragma unroll
            for (int j = 0; j < kVec; ++j) column_sums[j][threadIdx.x] += column_sums[j][other];
          }
          __syncthreads();
        }
        if (walker.active && walker.lane_y == 0 && col < tiling.cols) {
#pragma unroll
          for (int j = 0; j < kVec; ++j) partials.at(col + j, k, blockIdx.y) = column_sums[j][threadIdx.x];
        }
        __syncthreads();  // before the next term overwrites column_sums
      }
    }
  }
}

// One warp per channel: adds the channel's partials in a fixed order and writes
// its row of param_grads.
constexpr int kFinalizeThreads = 128;

__global__ void __launch_bounds__(kFinalizeThreads)
    finalize_param_grads_kernel(Partials partials, int64_t channels, Params params, double* param_grads) {
  const int64_t channel = int64_t(blockIdx.x) * (kFinalizeThreads / kWarpSize) + threadIdx.x / kWarpSize;
  const int lane = threadIdx.x % kWarpSize;
  if (channel >= channels) return;  // whole warps only: no block-wide barrier follows
  // Several independent loads in flight per lane: with one channel, the partials
  // of the whole grid (about a thousand per term) go through one warp.
  double sums[kTerms] = {};
#pragma unroll 4
  for (int64_t split = lane; split < partials.splits; split += kWarpSize) {
#pragma unroll
    for (int k = 0; k < kTerms; ++k) sums[k] += partials.at(channel, k, split);
  }
#pragma unroll
  for (int k = 0; k < kTerms; ++k) sums[k] = warp_sum(sums[k]);
  if (lane == 0) {
    const double beta = params.beta.at(channel);
    const ParamGrads<double> g =
        param_grads_from_sums(beta, params.coeffs(channel), sums[kXSc], sums[kXQ], sums[kX2Q]);
    param_grads[3 * channel] = g.alpha;
    param_grads[3 * channel + 1] = g.beta;
    param_grads[3 * channel + 2] = g.gamma;
  }
}

// ---- Launch configuration --------------------------------------------------------

// x's device, which indexes the caches below.
int device_of(const Problem& problem) {
  const int device = problem.x.get_device_index();
  SQISH_CHECK_RUNTIME(device >= 0 && device < kMaxDevices, "sqish (CUDA): x is on ", error::device(problem.x),
                      " but the CUDA kernels support device indices below ", kMaxDevices);
  return device;
}

cudaStream_t current_stream(int device) {
  void* stream = nullptr;
  TORCH_ERROR_CODE_CHECK(aoti_torch_get_current_cuda_stream(device, &stream));
  return static_cast<cudaStream_t>(stream);
}

int multiprocessor_count(int device) {
  static std::array<std::atomic<int>, kMaxDevices> cache{};
  int count = cache[device].load(std::memory_order_relaxed);
  if (count == 0) {
    STD_CUDA_CHECK(cudaDeviceGetAttribute(&count, cudaDevAttrMultiProcessorCount, device));
    cache[device].store(count, std::memory_order_relaxed);
  }
  return count;
}

// The blocks of `kernel` that the device runs at once: the grid that fills it in
// exactly one wave. A grid-stride kernel gains nothing from more blocks, and a
// partial second wave would idle most of the GPU while it runs.
template <auto kernel>
int64_t resident_blocks(int device) {
  static std::array<std::atomic<int>, kMaxDevices> cache{};
  int per_multiprocessor = cache[device].load(std::memory_order_relaxed);
  if (per_multiprocessor == 0) {
    STD_CUDA_CHECK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_multiprocessor, kernel, kThreads, 0));
    per_multiprocessor = std::max(per_multiprocessor, 1);
    cache[device].store(per_multiprocessor, std::memory_order_relaxed);
  }
  return int64_t(per_multiprocessor) * multiprocessor_count(device);
}

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

bool is_channels_innermost(const Problem& problem) {
  return problem.channels > 1 && problem.channel_stride == 1;
}

// The columns a thread owns in each row, from the shape alone: 128 bits' worth
// whenever the rows of the walk start on a vector boundary, else one.
template <typename scalar_t>
int vector_width(const Problem& problem) {
  constexpr int kWide = kVectorBytes / sizeof(scalar_t);
  // Rows start at multiples of the channel stride (or of C when channels are innermost).
  const int64_t row_quantum = problem.channels == 1 ? 0
                              : is_channels_innermost(problem) ? problem.channels
                                                               : problem.channel_stride;
  return row_quantum % kWide == 0 ? kWide : 1;
}

// Whether full vectors can move as one 128-bit access: every tensor's data is
// 16-byte aligned. A kernel argument, never an input of plan_launch.
bool is_vector_aligned(std::initializer_list<const Tensor*> tensors) {
  return std::all_of(tensors.begin(), tensors.end(), [](const Tensor* t) {
    return reinterpret_cast<uintptr_t>(t->const_data_ptr()) % kVectorBytes == 0;
  });
}

struct Launch {
  Tiling tiling;
  dim3 grid;
  int64_t splits;  // partial sums per channel
};

Launch plan_launch(const Problem& problem, int vec, int64_t target_blocks) {
  const int64_t numel = problem.x.numel(), channels = problem.channels;
  const bool per_column = is_channels_innermost(problem);
  Tiling t{};
  int64_t slices = 1;
  t.numel = numel;
  if (channels == 1) {
    t.cols = t.pitch = int64_t(kThreads) * vec;
    t.rows = ceil_div(numel, t.cols), t.slice_stride = 0;
  } else if (per_column) {
    t.rows = numel / channels, t.cols = channels, t.pitch = channels, t.slice_stride = 0;
  } else {
    slices = channels;
    t.cols = problem.channel_stride, t.pitch = channels * problem.channel_stride;
    t.rows = numel / t.pitch, t.slice_stride = problem.channel_stride;
  }
  const int64_t vectors = ceil_div(t.cols, vec);  // across a row
  int64_t tile_width = std::min<int64_t>(vectors, kThreads);
  int64_t max_row_blocks = kMaxGridY;
  if (per_column) {
    // Every row block writes a partial per channel and term, so the scratch
    // budget caps the row blocks. While that cap, not the rows, keeps the grid
    // short of target_blocks, narrower tiles (each block then owning fewer
    // channels) make up the grid.
    const int64_t budget = std::min<int64_t>(kMaxScratchBytes, numel * int64_t(problem.x.element_size()));
    max_row_blocks = std::clamp<int64_t>(budget / (channels * kTerms * int64_t(sizeof(double))), 1, kMaxGridY);
    while (tile_width > 1 && ceil_div(t.rows, kThreads / tile_width) > max_row_blocks &&
           ceil_div(vectors, tile_width) * max_row_blocks < target_blocks) {
      tile_width /= 2;
    }
  }
  t.tile_width = int32_t(tile_width);
  t.row_lanes = kThreads / t.tile_width;
  t.col_tiles = ceil_div(vectors, t.tile_width);
  // Per-column blocks own one column tile each, so that the partial of a
  // channel is the sum over one block's rows; otherwise blocks stride over tiles.
  const int64_t column_blocks =
      per_column ? t.col_tiles : std::clamp<int64_t>(target_blocks / slices, 1, t.col_tiles);
  const int64_t row_blocks = std::clamp<int64_t>(target_blocks / (slices * column_blocks), 1,
                                                 std::min(ceil_div(t.rows, t.row_lanes), max_row_blocks));
  SQISH_CHECK_RUNTIME(slices * column_blocks <= std::numeric_limits<int32_t>::max(), "sqish (CUDA): ", channels,
                      " channels of ", t.cols, " elements each exceed the launch grid; x has shape ",
                      error::shape(problem.x));
  t.blocks_per_slice = int32_t(column_blocks);
  return {t, dim3(unsigned(slices * column_blocks), unsigned(row_blocks)),
          (per_column ? 1 : column_blocks) * row_blocks};
}

// Calls fn(std::integral_constant<int, kVec>, std::bool_constant<kPerColumn>).
template <typename scalar_t, typename Fn>
void with_layout(int vec, bool per_column, const Fn& fn) {
  constexpr int kWide = kVectorBytes / sizeof(scalar_t);
  auto with_vec = [&](auto per_column_constant) {
    if (vec == kWide) {
      fn(std::integral_constant<int, kWide>{}, per_column_constant);
    } else {
      fn(std::integral_constant<int, 1>{}, per_column_constant);
    }
  };
  if (per_column) {
    with_vec(std::true_type{});
  } else {
    with_vec(std::false_type{});
  }
}

struct CudaKernels {
  static void launch_forward(const Problem& problem, const Tensor& out) {
    const int device = device_of(problem);
    const torch::stable::accelerator::DeviceGuard guard(device);
    const cudaStream_t stream = current_stream(device);
    const LaunchParams launch_params(problem);
    const Params& params = launch_params.params;
    const bool vector_access = is_vector_aligned({&problem.x, &out});
    with_scalar_type(problem.x.scalar_type(), [&](auto tag) {
      using scalar_t = decltype(tag);
      const scalar_t* x = static_cast<const scalar_t*>(problem.x.const_data_ptr());
      scalar_t* y = static_cast<scalar_t*>(out.mutable_data_ptr());
      const int vec = vector_width<scalar_t>(problem);
      with_layout<scalar_t>(vec, is_channels_innermost(problem), [&](auto vec_constant, auto per_column_constant) {
        constexpr auto kernel =
            forward_kernel<scalar_t, decltype(vec_constant)::value, decltype(per_column_constant)::value>;
        const Launch launch = plan_launch(problem, vec_constant, resident_blocks<kernel>(device));
        kernel<<<launch.grid, kThreads, 0, stream>>>(x, y, launch.tiling, params, vector_access);
        STD_CUDA_KERNEL_LAUNCH_CHECK();
      });
    });
  }

  static void launch_backward(const Problem& problem, const Tensor& grad_output, const Tensor& grad_input,
                       ParameterGradients* param_grads) {
    const int device = device_of(problem);
    const torch::stable::accelerator::DeviceGuard guard(device);
    const cudaStream_t stream = current_stream(device);
    const LaunchParams launch_params(problem);
    const Params& params = launch_params.params;
    const bool vector_access = is_vector_aligned({&problem.x, &grad_output, &grad_input});
    with_scalar_type(problem.x.scalar_type(), [&](auto tag) {
      using scalar_t = decltype(tag);
      const scalar_t* g = static_cast<const scalar_t*>(grad_output.const_data_ptr());
      const scalar_t* x = static_cast<const scalar_t*>(problem.x.const_data_ptr());
      scalar_t* gx = static_cast<scalar_t*>(grad_input.mutable_data_ptr());
      const int vec = vector_width<scalar_t>(problem);
      with_layout<scalar_t>(vec, is_channels_innermost(problem), [&](auto vec_constant, auto per_column_constant) {
        constexpr int kVec = decltype(vec_constant)::value;
        constexpr bool kPerColumn = decltype(per_column_constant)::value;
        if (param_grads == nullptr) {
          constexpr auto kernel = backward_kernel<scalar_t, kVec, kPerColumn, false>;
          const Launch launch = plan_launch(problem, kVec, resident_blocks<kernel>(device));
          kernel<<<launch.grid, kThreads, 0, stream>>>(g, x, gx, launch.tiling, params, Partials{nullptr, 0},
                                                       vector_access);
          STD_CUDA_KERNEL_LAUNCH_CHECK();
          return;
        }
        constexpr auto kernel = backward_kernel<scalar_t, kVec, kPerColumn, true>;
        const Launch launch = plan_launch(problem, kVec, resident_blocks<kernel>(device));
        // Every cell is written by exactly one block, so no zero-fill is needed.
        const int64_t scratch_shape[] = {problem.channels * kTerms * launch.splits};
        const Tensor scratch = torch::stable::new_empty(problem.x, scratch_shape, ScalarType::Double);
        const Partials partials{static_cast<double*>(scratch.mutable_data_ptr()), launch.splits};
        kernel<<<launch.grid, kThreads, 0, stream>>>(g, x, gx, launch.tiling, params, partials, vector_access);
        STD_CUDA_KERNEL_LAUNCH_CHECK();
        // Each channel's gradients into a (channels, 3) table in device memory, then
        // into the parameters' shapes and dtypes with torch ops (no host sync).
        const int64_t table_shape[] = {problem.channels, 3};
        const Tensor table = torch::stable::new_empty(problem.x, table_shape, ScalarType::Double);
        constexpr int64_t kChannelsPerBlock = kFinalizeThreads / kWarpSize;
        finalize_param_grads_kernel<<<unsigned(ceil_div(problem.channels, kChannelsPerBlock)), kFinalizeThreads, 0,
                                      stream>>>(partials, problem.channels, params,
                                                static_cast<double*>(table.mutable_data_ptr()));
        STD_CUDA_KERNEL_LAUNCH_CHECK();
        *param_grads = parameter_gradients_from_table(table, problem);
      });
    });
  }
};

}  // namespace
}  // namespace sqish::cuda

STABLE_TORCH_LIBRARY_IMPL(sqish, CUDA, m) { SQISH_REGISTER_KERNELS(m, sqish::cuda::CudaKernels); }

// The CUDA kernels form the module sqish_ext._cuda; the schema comes from sqish_ext._C.
SQISH_PYTHON_MODULE_INIT(_cuda)

// CPU kernels: at::vec-vectorized, multithreaded with at::parallel_for.
//
// This file is compiled once per x86-64 level, each time with that level's
// compiler flags and CPU_CAPABILITY set to DEFAULT, AVX2 or AVX512 (the names
// at::vec uses for its own per-level namespaces). Each build defines its kernels
// in sqish::cpu::<CPU_CAPABILITY>; the DEFAULT build also defines forward_cpu and
// backward_cpu, which pick a level at run time the way ATen does for its own
// kernels (at::get_cpu_capability(), which honours ATEN_CPU_CAPABILITY).
#include "../sqish_kernels.h"
#include "../sqish_math.h"

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <algorithm>
#include <array>
#include <vector>

namespace sqish::cpu::CPU_CAPABILITY {
namespace {

using at::vec::Vectorized;

// Elements per task for at::parallel_for: large enough to amortise the task.
constexpr int64_t kGrainSize = 32768;
// Parameter-gradient sums run in opmath (float for float/bf16/half) inside a
// block of at most this many elements, then flush into float64.
constexpr int64_t kFlushBlock = 4096;

// One parameter's value for a channel, read in float64 straight from its
// storage: these run on every call, so no tensor ops here.
double parameter_value(const at::Tensor& param, int64_t channel) {
  const int64_t i = param.dim() == 0 ? 0 : channel * param.stride(0);
  return param.scalar_type() == at::kDouble ? param.const_data_ptr<double>()[i]
                                            : double(param.const_data_ptr<float>()[i]);
}

Coeffs<double> channel_coeffs(const Problem& problem, int64_t channel) {
  return make_coeffs(parameter_value(problem.alpha, channel), parameter_value(problem.beta, channel),
                     parameter_value(problem.gamma, channel));
}

template <typename opmath_t>
struct ChannelCoeffs {
  // Structure of arrays, so that the channels-innermost layout loads a vector of
  // consecutive channels' constants.
  std::vector<opmath_t> alpha, one_minus_alpha, k, c;

  explicit ChannelCoeffs(const Problem& problem) {
    const int64_t n = problem.channels;
    alpha.resize(n), one_minus_alpha.resize(n), k.resize(n), c.resize(n);
    for (int64_t ch = 0; ch < n; ++ch) {
      // Derived in float64, then rounded once to the compute type.
      const Coeffs<double> d = channel_coeffs(problem, ch);
      alpha[ch] = d.alpha, one_minus_alpha[ch] = d.one_minus_alpha, k[ch] = d.k, c[ch] = d.c;
    }
  }

  Coeffs<Vectorized<opmath_t>> broadcast(int64_t ch) const {
    return {Vectorized<opmath_t>(alpha[ch]), Vectorized<opmath_t>(one_minus_alpha[ch]),
            Vectorized<opmath_t>(k[ch]), Vectorized<opmath_t>(c[ch])};
  }
  Coeffs<Vectorized<opmath_t>> load(int64_t ch, int64_t count) const {
    using V = Vectorized<opmath_t>;
    return {V::loadu(alpha.data() + ch, count), V::loadu(one_minus_alpha.data() + ch, count),
            V::loadu(k.data() + ch, count), V::loadu(c.data() + ch, count)};
  }
};

// A run of consecutive elements whose parameters are either one channel's
// (broadcast) or consecutive channels' (the channels-innermost layout).
struct Segment {
  int64_t begin, length, channel;
  bool channels_innermost;
};

// Splits [begin, end) into segments and calls fn on each.
template <typename Fn>
void for_each_segment(const Problem& problem, int64_t begin, int64_t end, const Fn& fn) {
  const int64_t channels = problem.channels, stride = problem.channel_stride;
  for (int64_t o = begin; o < end;) {
    Segment seg{o, end - o, 0, false};
    if (channels > 1 && stride == 1) {
      seg.channel = o % channels;
      seg.length = std::min(channels - seg.channel, end - o);
      seg.channels_innermost = true;
    } else if (channels > 1) {
      seg.channel = (o / stride) % channels;
      seg.length = std::min(stride - o % stride, end - o);
    }
    fn(seg);
    o += seg.length;
  }
}

// Loads `count` (≤ one step) elements as opmath vectors, zero-filling the rest;
// reduced-precision types give two float vectors per step.
template <typename scalar_t>
struct Lanes {
  using opmath_t = at::opmath_type<scalar_t>;
  using V = Vectorized<opmath_t>;
  static constexpr bool kReduced = !std::is_same_v<scalar_t, opmath_t>;
  static constexpr int64_t kVecs = kReduced ? 2 : 1;
  static constexpr int64_t kStep = kVecs * V::size();

  static std::array<V, kVecs> load(const scalar_t* p, int64_t count) {
    if constexpr (kReduced) {
      auto [lo, hi] = at::vec::convert_to_float<scalar_t>(Vectorized<scalar_t>::loadu(p, count));
      return {lo, hi};
    } else {
      return {V::loadu(p, count)};
    }
  }
  static void store(scalar_t* p, const std::array<V, kVecs>& v, int64_t count) {
    if constexpr (kReduced) {
      at::vec::convert_from_float<scalar_t>(v[0], v[1]).store(p, count);
    } else {
      v[0].store(p, count);
    }
  }
};

// How many of a step's `count` elements fall in its j-th opmath vector.
template <typename V>
int64_t lanes_of(int64_t count, int64_t j) {
  return std::clamp<int64_t>(count - j * V::size(), 0, V::size());
}

template <typename V>
typename V::value_type horizontal_sum(const V& v) {
  std::array<typename V::value_type, V::size()> lanes;
  v.store(lanes.data());
  typename V::value_type sum = 0;
  for (auto lane : lanes) sum += lane;
  return sum;
}

// Calls step(offset, count, coeffs_of) for each step of a segment, where
// coeffs_of(j) gives the parameters of the step's j-th opmath vector: broadcast
// from the segment's channel, or loaded for consecutive channels. The two cases
// are separate loops so that the common broadcast one keeps its constants in
// registers.
template <typename scalar_t, typename Step>
void for_each_step(const Segment& seg, const ChannelCoeffs<at::opmath_type<scalar_t>>& coeffs,
                   const Step& step) {
  using L = Lanes<scalar_t>;
  using V = typename L::V;
  if (seg.channels_innermost) {
    for (int64_t i = 0; i < seg.length; i += L::kStep) {
      const int64_t count = std::min(L::kStep, seg.length - i);
      step(i, count, [&](int64_t j) {
        return coeffs.load(seg.channel + i + j * V::size(), lanes_of<V>(count, j));
      });
    }
  } else {
    const Coeffs<V> fixed = coeffs.broadcast(seg.channel);
    for (int64_t i = 0; i < seg.length; i += L::kStep) {
      step(i, std::min(L::kStep, seg.length - i), [&](int64_t) -> const Coeffs<V>& { return fixed; });
    }
  }
}

template <typename scalar_t>
void forward_kernel(const Problem& problem, const at::Tensor& out) {
  using L = Lanes<scalar_t>;
  const ChannelCoeffs<typename L::opmath_t> coeffs(problem);
  const scalar_t* x = problem.x.const_data_ptr<scalar_t>();
  scalar_t* y = out.data_ptr<scalar_t>();

  at::parallel_for(0, problem.x.numel(), kGrainSize, [&](int64_t begin, int64_t end) {
    for_each_segment(problem, begin, end, [&](const Segment& seg) {
      for_each_step<scalar_t>(seg, coeffs, [&](int64_t i, int64_t count, const auto& coeffs_of) {
        const int64_t o = seg.begin + i;
        auto v = L::load(x + o, count);
        for (int64_t j = 0; j < L::kVecs; ++j) v[j] = forward(v[j], coeffs_of(j));
        L::store(y + o, v, count);
      });
    });
  });
}

// Per-channel float64 sums of the three backward terms (see backward_terms).
struct ParamSums {
  std::vector<double> x_sc, x_q, x2_q;
  explicit ParamSums(int64_t channels) : x_sc(channels), x_q(channels), x2_q(channels) {}
};

template <typename scalar_t, bool kParamGrads>
void backward_kernel(const Problem& problem, const at::Tensor& grad_output,
                     const at::Tensor& grad_input, const at::Tensor& param_grads) {
  using L = Lanes<scalar_t>;
  using opmath_t = typename L::opmath_t;
  using V = typename L::V;
  const ChannelCoeffs<opmath_t> coeffs(problem);
  const int64_t channels = problem.channels, numel = problem.x.numel();
  const scalar_t* x = problem.x.const_data_ptr<scalar_t>();
  const scalar_t* g = grad_output.const_data_ptr<scalar_t>();
  scalar_t* gx = grad_input.data_ptr<scalar_t>();

  // The partition into parts depends only on numel and the thread count, and the
  // parts' sums are added in part order: the same inputs and thread count give
  // bitwise identical parameter gradients.
  const int64_t parts = kParamGrads ? std::max<int64_t>(1, std::min<int64_t>(
                                          at::get_num_threads(), at::divup(numel, kGrainSize)))
                                    : at::divup(numel, kGrainSize);
  const int64_t part_length = at::divup(numel, parts);
  std::vector<ParamSums> part_sums;
  if constexpr (kParamGrads) part_sums.assign(parts, ParamSums(channels));

  at::parallel_for(0, parts, 1, [&](int64_t first_part, int64_t last_part) {
    // This thread's sums for the current block, per channel, in opmath.
    std::vector<opmath_t> block_sc, block_q, block_x2q;
    if constexpr (kParamGrads) {
      block_sc.assign(channels, 0), block_q.assign(channels, 0), block_x2q.assign(channels, 0);
    }
    for (int64_t part = first_part; part < last_part; ++part) {
      const int64_t part_begin = part * part_length;
      const int64_t part_end = std::min(numel, part_begin + part_length);
      const int64_t block = std::max(kFlushBlock, channels);
      for (int64_t block_begin = part_begin; block_begin < part_end; block_begin += block) {
        const int64_t block_end = std::min(part_end, block_begin + block);
        for_each_segment(problem, block_begin, block_end, [&](const Segment& seg) {
          V acc_sc(0), acc_q(0), acc_x2q(0);
          for_each_step<scalar_t>(seg, coeffs, [&](int64_t i, int64_t count, const auto& coeffs_of) {
            const int64_t o = seg.begin + i;
            const auto xv = L::load(x + o, count);
            const auto gv = L::load(g + o, count);
            std::array<V, L::kVecs> gxv;
            for (int64_t j = 0; j < L::kVecs; ++j) {
              const BackwardTerms<V> t = backward_terms(gv[j], xv[j], coeffs_of(j));
              gxv[j] = t.grad_input;
              if constexpr (kParamGrads) {
                if (!seg.channels_innermost) {
                  acc_sc += t.x_sc, acc_q += t.x_q, acc_x2q += t.x2_q;
                  continue;
                }
                const int64_t ch = seg.channel + i + j * V::size();
                const int64_t lanes = lanes_of<V>(count, j);
                for (auto [block_sum, term] : {std::pair{block_sc.data(), t.x_sc},
                                               std::pair{block_q.data(), t.x_q},
                                               std::pair{block_x2q.data(), t.x2_q}}) {
                  (V::loadu(block_sum + ch, lanes) + term).store(block_sum + ch, lanes);
                }
              }
            }
            L::store(gx + o, gxv, count);
          });
          if constexpr (kParamGrads) {
            if (!seg.channels_innermost) {
              block_sc[seg.channel] += horizontal_sum(acc_sc);
              block_q[seg.channel] += horizontal_sum(acc_q);
              block_x2q[seg.channel] += horizontal_sum(acc_x2q);
            }
          }
        });
        if constexpr (kParamGrads) {
          ParamSums& sums = part_sums[part];
          for (int64_t ch = 0; ch < channels; ++ch) {
            sums.x_sc[ch] += block_sc[ch], sums.x_q[ch] += block_q[ch], sums.x2_q[ch] += block_x2q[ch];
            block_sc[ch] = block_q[ch] = block_x2q[ch] = 0;
          }
        }
      }
    }
  });

  if constexpr (kParamGrads) {
    double* out = param_grads.data_ptr<double>();
    for (int64_t ch = 0; ch < channels; ++ch) {
      double sc = 0, q = 0, x2q = 0;
      for (const ParamSums& s : part_sums) sc += s.x_sc[ch], q += s.x_q[ch], x2q += s.x2_q[ch];
      const ParamGrads<double> grads = param_grads_from_sums(
          parameter_value(problem.beta, ch), channel_coeffs(problem, ch), sc, q, x2q);
      out[3 * ch] = grads.alpha, out[3 * ch + 1] = grads.beta, out[3 * ch + 2] = grads.gamma;
    }
  }
}

}  // namespace

void forward(const Problem& problem, const at::Tensor& out) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, problem.x.scalar_type(), "sqish_cpu_forward",
                                  [&] { forward_kernel<scalar_t>(problem, out); });
}

void backward(const Problem& problem, const at::Tensor& grad_output, const at::Tensor& grad_input,
              const at::Tensor& param_grads) {
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kBFloat16, at::kHalf, problem.x.scalar_type(), "sqish_cpu_backward", [&] {
    if (param_grads.defined()) {
      backward_kernel<scalar_t, true>(problem, grad_output, grad_input, param_grads);
    } else {
      backward_kernel<scalar_t, false>(problem, grad_output, grad_input, param_grads);
    }
  });
}

}  // namespace sqish::cpu::CPU_CAPABILITY

#if defined(SQISH_CPU_DISPATCH)
#include <ATen/Version.h>

#include <string>

namespace sqish {

namespace cpu::DEFAULT {
void forward(const Problem&, const at::Tensor&);
void backward(const Problem&, const at::Tensor&, const at::Tensor&, const at::Tensor&);
}  // namespace cpu::DEFAULT
#if defined(SQISH_CPU_AVX2)
namespace cpu::AVX2 {
void forward(const Problem&, const at::Tensor&);
void backward(const Problem&, const at::Tensor&, const at::Tensor&, const at::Tensor&);
}  // namespace cpu::AVX2
#endif
#if defined(SQISH_CPU_AVX512)
namespace cpu::AVX512 {
void forward(const Problem&, const at::Tensor&);
void backward(const Problem&, const at::Tensor&, const at::Tensor&, const at::Tensor&);
}  // namespace cpu::AVX512
#endif

namespace {
enum class Level { kDefault, kAvx2, kAvx512 };

// ATen's own choice for this machine: "AVX512", "AVX2" or "DEFAULT" on x86-64,
// lowered by the environment variable ATEN_CPU_CAPABILITY.
Level cpu_level() {
  static const Level level = [] {
    const std::string capability = at::get_cpu_capability();
#if defined(SQISH_CPU_AVX512)
    if (capability == "AVX512") return Level::kAvx512;
#endif
#if defined(SQISH_CPU_AVX2)
    if (capability == "AVX2" || capability == "AVX512") return Level::kAvx2;
#endif
    return Level::kDefault;
  }();
  return level;
}
}  // namespace

void forward_cpu(const Problem& problem, const at::Tensor& out) {
  switch (cpu_level()) {
#if defined(SQISH_CPU_AVX512)
    case Level::kAvx512: return cpu::AVX512::forward(problem, out);
#endif
#if defined(SQISH_CPU_AVX2)
    case Level::kAvx2: return cpu::AVX2::forward(problem, out);
#endif
    default: return cpu::DEFAULT::forward(problem, out);
  }
}

void backward_cpu(const Problem& problem, const at::Tensor& grad_output, const at::Tensor& grad_input,
                  const at::Tensor& param_grads) {
  switch (cpu_level()) {
#if defined(SQISH_CPU_AVX512)
    case Level::kAvx512: return cpu::AVX512::backward(problem, grad_output, grad_input, param_grads);
#endif
#if defined(SQISH_CPU_AVX2)
    case Level::kAvx2: return cpu::AVX2::backward(problem, grad_output, grad_input, param_grads);
#endif
    default: return cpu::DEFAULT::backward(problem, grad_output, grad_input, param_grads);
  }
}

}  // namespace sqish
#endif  // SQISH_CPU_DISPATCH

// CPU kernels: SIMD (simd.h) and multithreaded with torch::stable::parallel_for.
//
// Compiled once per x86-64 level of build.json, with that level's flags and
// SQISH_CPU_LEVEL naming the namespace of its KernelTable (kernels.h).
//
// Layouts. x is dense (sqish_op.h), so with C channels and channel stride S its
// storage is one of:
//   shared parameters (C == 1): a flat array;
//   channel runs (S > 1): [outer][C][S], runs of S elements of one channel (NCHW);
//   channels innermost (S == 1): rows of C channels ([rows][C]: channels_last, (N, C)).
// Channel runs broadcast one channel's coefficients over the run, and keep their
// gradient sums in registers. Channels innermost walk the rows in memory order,
// loading each channel vector's coefficients (and, in the backward, adding its
// terms to float32 sums per channel) from arrays that stay in L1: walking one
// channel vector down many rows instead strides through memory and measured slower.
//
// Parameter-gradient sums. Each float32 (opmath) accumulator lane adds at most
// kFlushTerms terms, then flushes into float64 sums per channel. The elements are
// split into parts fixed by numel, the layout and the thread count, and the parts'
// sums are added in part order: the same inputs and thread count give bitwise
// identical parameter gradients.
#include "kernels.h"

#include "../sqish_math.h"
#include "simd.h"

#include <torch/csrc/stable/ops.h>

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <vector>

// The per-vector step and the loops around it are forced inline (functions and
// lambdas alike): the compiler finds the step too large to inline by itself, and a
// call per vector passes its coefficients and sums through memory.
#define SQISH_ALWAYS_INLINE __attribute__((always_inline))

namespace sqish::cpu::SQISH_CPU_LEVEL {
namespace {

using simd::Storage;
using simd::Vec;

// Elements per parallel task: large enough to amortise the task.
constexpr int64_t kGrainSize = 32768;
// Terms one float32 accumulator lane adds before they move into float64.
constexpr int64_t kFlushTerms = 512;

int64_t ceil_div(int64_t a, int64_t b) { return (a + b - 1) / b; }

// One parameter's value per channel, in float64: the value itself, or read from
// the tensor's storage. Each tensor property is a call through the stable ABI, so
// they are read once per parameter, not once per channel.
std::vector<double> channel_values(const Parameter& param, int64_t channels) {
  std::vector<double> values(channels, param.value);
  if (param.is_value()) return values;
  const Tensor& t = param.tensor;
  const int64_t stride = t.dim() == 0 ? 0 : t.stride(0);
  with_scalar_type(t.scalar_type(), [&](auto tag) {
    const auto* data = static_cast<const decltype(tag)*>(t.const_data_ptr());
    for (int64_t ch = 0; ch < channels; ++ch) values[ch] = double(data[ch * stride]);
  });
  return values;
}

// Every channel's β and coefficients in float64, read once per call.
struct ChannelParameters {
  std::vector<double> beta;
  std::vector<Coeffs<double>> coeffs;

  explicit ChannelParameters(const Problem& problem) : beta(channel_values(problem.beta, problem.channels)) {
    const std::vector<double> alpha = channel_values(problem.alpha, problem.channels);
    const std::vector<double> gamma = channel_values(problem.gamma, problem.channels);
    coeffs.reserve(problem.channels);
    for (int64_t ch = 0; ch < problem.channels; ++ch) coeffs.push_back(make_coeffs(alpha[ch], beta[ch], gamma[ch]));
  }
  bool has_beta_zero() const {
    return std::any_of(coeffs.begin(), coeffs.end(), [](const Coeffs<double>& p) { return is_beta_zero(p); });
  }
};

// Every channel's coefficients, derived in float64 and rounded once to the compute
// type, as a structure of arrays padded to whole vectors: the channels-innermost
// walk loads a vector of consecutive channels' constants.
template <typename opmath_t>
struct ChannelCoeffs {
  using V = Vec<opmath_t>;
  std::vector<opmath_t> alpha, one_minus_alpha, k, c;

  explicit ChannelCoeffs(const ChannelParameters& params) {
    const int64_t channels = int64_t(params.coeffs.size());
    const int64_t padded = ceil_div(channels, V::kSize) * V::kSize;
    alpha.assign(padded, 0), one_minus_alpha.assign(padded, 0), k.assign(padded, 0), c.assign(padded, 0);
    for (int64_t ch = 0; ch < channels; ++ch) {
      const Coeffs<double>& d = params.coeffs[ch];
      alpha[ch] = d.alpha, one_minus_alpha[ch] = d.one_minus_alpha, k[ch] = d.k, c[ch] = d.c;
    }
  }
  Coeffs<V> broadcast(int64_t ch) const {
    return {V(alpha[ch]), V(one_minus_alpha[ch]), V(k[ch]), V(c[ch])};
  }
  Coeffs<V> load(int64_t ch) const {
    return {V::load(&alpha[ch]), V::load(&one_minus_alpha[ch]), V::load(&k[ch]), V::load(&c[ch])};
  }
};

enum class Layout { kShared, kChannelRuns, kChannelsInnermost };

Layout layout_of(const Problem& problem) {
  if (problem.channels == 1) return Layout::kShared;
  return problem.channel_stride == 1 ? Layout::kChannelsInnermost : Layout::kChannelRuns;
}

// Calls fn(begin, end, channel) for each run of one channel's elements in [begin, end)
// (the channel-runs layout).
template <typename Fn>
SQISH_ALWAYS_INLINE inline void for_each_channel_run(const Problem& problem, int64_t begin, int64_t end, const Fn& fn) {
  const int64_t stride = problem.channel_stride;
  // One division for the first run; the runs after it follow in channel order.
  int64_t run = begin / stride, channel = run % problem.channels;
  for (int64_t o = begin; o < end; ++run) {
    const int64_t run_end = std::min(end, (run + 1) * stride);
    fn(o, run_end, channel);
    o = run_end;
    if (++channel == problem.channels) channel = 0;
  }
}

// Calls fn(offset, count) for each vector step of [begin, end): full vectors,
// then one partial vector if the length is not a multiple of the width.
// Two full vectors per iteration: independent exp chains the core can overlap.
template <int kWidth, typename Fn>
SQISH_ALWAYS_INLINE inline void for_each_step(int64_t begin, int64_t end, const Fn& fn) {
  using Full = std::integral_constant<int64_t, kWidth>;
  int64_t o = begin;
  for (; o + 2 * kWidth <= end; o += 2 * kWidth) fn(o, Full{}), fn(o + kWidth, Full{});
  if (o + kWidth <= end) fn(o, Full{}), o += kWidth;
  if (o < end) fn(o, end - o);
}

// ---- Forward ----------------------------------------------------------------------

template <typename scalar_t>
void forward_loop(const Problem& problem, const Tensor& out) {
  using St = Storage<scalar_t>;
  using V = typename St::V;
  constexpr int64_t W = V::kSize;
  const ChannelCoeffs<typename St::opmath_t> coeffs{ChannelParameters(problem)};
  const scalar_t* x = static_cast<const scalar_t*>(problem.x.const_data_ptr());
  scalar_t* y = static_cast<scalar_t*>(out.mutable_data_ptr());
  const int64_t numel = problem.x.numel(), channels = problem.channels;

  auto step = [&](int64_t o, auto count, const Coeffs<V>& p) SQISH_ALWAYS_INLINE {
    if constexpr (std::is_same_v<decltype(count), std::integral_constant<int64_t, W>>) {
      St::store(y + o, sqish_value(St::load(x + o), p));
    } else {
      St::store(y + o, sqish_value(St::load(x + o, count), p), count);
    }
  };
  auto run = [&](int64_t begin, int64_t end, const Coeffs<V>& p) SQISH_ALWAYS_INLINE {
    for_each_step<W>(begin, end, [&](int64_t o, auto count) SQISH_ALWAYS_INLINE { step(o, count, p); });
  };

  switch (layout_of(problem)) {
    case Layout::kShared:
      torch::stable::parallel_for(0, numel, kGrainSize, [&](int64_t begin, int64_t end) {
        run(begin, end, coeffs.broadcast(0));
      });
      break;
    case Layout::kChannelRuns:
      torch::stable::parallel_for(0, numel, kGrainSize, [&](int64_t begin, int64_t end) {
        for_each_channel_run(problem, begin, end, [&](int64_t b, int64_t e, int64_t ch) SQISH_ALWAYS_INLINE {
          run(b, e, coeffs.broadcast(ch));
        });
      });
      break;
    case Layout::kChannelsInnermost: {
      torch::stable::parallel_for(0, numel / channels, std::max<int64_t>(1, kGrainSize / channels),
                                  [&](int64_t first_row, int64_t last_row) {
        for (int64_t row = first_row; row < last_row; ++row) {
          for_each_step<W>(0, channels, [&](int64_t ch, auto count) SQISH_ALWAYS_INLINE { step(row * channels + ch, count, coeffs.load(ch)); });
        }
      });
      break;
    }
  }
}

// ---- Backward ---------------------------------------------------------------------

// One parameter's gradient, in its shape and dtype, from every channel's: summed
// over the channels (in channel order, in float64) when the parameter is shared.
Tensor host_parameter_grad(const Problem& problem, const Tensor& param, const std::vector<ParamGrads<double>>& per_channel,
                           double ParamGrads<double>::*member) {
  Tensor grad = detail::empty_parameter_grad(param, problem.x);
  with_scalar_type(param.scalar_type(), [&](auto tag) {
    using param_t = decltype(tag);
    param_t* out = static_cast<param_t*>(grad.mutable_data_ptr());
    if (param.dim() == 0) {
      double total = 0;
      for (const ParamGrads<double>& g : per_channel) total += g.*member;
      out[0] = param_t(total);
    } else {
      for (size_t ch = 0; ch < per_channel.size(); ++ch) out[ch] = param_t(per_channel[ch].*member);
    }
  });
  return grad;
}

// Running float32 (opmath) sums of the three backward terms (sqish_math.h).
template <typename V>
struct Accumulator {
  V x_sc{0}, x_q{0}, x2_q{0};
};

// kBetaMayBeZero: some channel has β = 0, whose ∂f/∂β term costs a second exp
// per element (sqish_math.h); only such problems pay for it.
template <typename scalar_t, bool kParamGrads, bool kBetaMayBeZero>
void backward_loop(const Problem& problem, const ChannelParameters& params, const Tensor& grad_output,
                   const Tensor& grad_input, ParameterGradients* param_grads) {
  using St = Storage<scalar_t>;
  using V = typename St::V;
  using opmath_t = typename St::opmath_t;
  constexpr int64_t W = V::kSize;
  const ChannelCoeffs<opmath_t> coeffs(params);
  const scalar_t* x = static_cast<const scalar_t*>(problem.x.const_data_ptr());
  const scalar_t* g = static_cast<const scalar_t*>(grad_output.const_data_ptr());
  scalar_t* gx = static_cast<scalar_t*>(grad_input.mutable_data_ptr());
  const int64_t numel = problem.x.numel(), channels = problem.channels;
  const Layout layout = layout_of(problem);

  // One step: grad_input for `count` elements at o, their terms added to acc.
  auto step = [&](int64_t o, auto count, const Coeffs<V>& p, Accumulator<V>& acc) SQISH_ALWAYS_INLINE {
    constexpr bool kFull = std::is_same_v<decltype(count), std::integral_constant<int64_t, W>>;
    const V xv = kFull ? St::load(x + o) : St::load(x + o, count);
    const V gv = kFull ? St::load(g + o) : St::load(g + o, count);
    BackwardTerms<V> t = backward_terms<Accurate, kBetaMayBeZero>(gv, xv, p);
    if constexpr (kFull) {
      St::store(gx + o, t.grad_input);
    } else {
      St::store(gx + o, t.grad_input, count);
    }
    if constexpr (kParamGrads) {
      if constexpr (!kFull) {
        // A zero-filled lane can still give NaN terms (γ = ∞ makes k·0 NaN).
        const auto lanes = simd::first_lanes<opmath_t>(count);
        t.x_sc = select(lanes, t.x_sc, V(0)), t.x_q = select(lanes, t.x_q, V(0));
        t.x2_q = select(lanes, t.x2_q, V(0));
      }
      acc.x_sc += t.x_sc, acc.x_q += t.x_q, acc.x2_q += t.x2_q;
    }
  };

  // Parts: whole rows when channels are innermost, so that a row's channels
  // never straddle two parts.
  const int64_t unit = layout == Layout::kChannelsInnermost ? channels : 1;
  const int64_t units = numel / unit;
  const int64_t tasks = ceil_div(numel, kGrainSize);
  const int64_t parts = std::clamp<int64_t>(
      kParamGrads ? std::min<int64_t>(torch::stable::get_num_threads(), tasks) : tasks, 1, units);
  const int64_t part_units = ceil_div(units, parts);
  // sums[(part·3 + term)·C + channel], float64.
  std::vector<double> sums(kParamGrads ? parts * 3 * channels : 0, 0.0);

  auto backward_part = [&](int64_t part) {
    const int64_t begin = part * part_units * unit;
    const int64_t end = std::min(units, (part + 1) * part_units) * unit;
    double* part_sums = kParamGrads ? sums.data() + part * 3 * channels : nullptr;
    auto flush = [&](const Accumulator<V>& acc, int64_t ch) SQISH_ALWAYS_INLINE {
      if constexpr (kParamGrads) {
        part_sums[ch] += horizontal_sum(acc.x_sc);
        part_sums[channels + ch] += horizontal_sum(acc.x_q);
        part_sums[2 * channels + ch] += horizontal_sum(acc.x2_q);
      }
    };
    // A run of one channel's elements, flushed every kFlushTerms steps.
    auto run = [&](int64_t run_begin, int64_t run_end, int64_t ch) SQISH_ALWAYS_INLINE {
      const Coeffs<V> p = coeffs.broadcast(ch);
      for (int64_t b = run_begin; b < run_end; b += kFlushTerms * W) {
        Accumulator<V> acc;
        for_each_step<W>(b, std::min(run_end, b + kFlushTerms * W),
                         [&](int64_t o, auto count) SQISH_ALWAYS_INLINE { step(o, count, p, acc); });
        flush(acc, ch);
      }
    };
    switch (layout) {
      case Layout::kShared:
        run(begin, end, 0);
        break;
      case Layout::kChannelRuns:
        for_each_channel_run(problem, begin, end, run);
        break;
      case Layout::kChannelsInnermost: {
        // Rows in memory order; each channel vector's terms go into float32 sums per
        // channel (in L1), which flush into float64 every kFlushTerms rows.
        const int64_t padded = ceil_div(channels, W) * W;
        std::vector<opmath_t> block(kParamGrads ? 3 * padded : 0);
        for (int64_t block_begin = begin / channels; block_begin < end / channels; block_begin += kFlushTerms) {
          const int64_t block_end = std::min(end / channels, block_begin + kFlushTerms);
          for (int64_t row = block_begin; row < block_end; ++row) {
            for_each_step<W>(0, channels, [&](int64_t ch, auto count) SQISH_ALWAYS_INLINE {
              Accumulator<V> acc;
              step(row * channels + ch, count, coeffs.load(ch), acc);
              if constexpr (kParamGrads) {
                (V::load(&block[ch]) + acc.x_sc).store(&block[ch]);
                (V::load(&block[padded + ch]) + acc.x_q).store(&block[padded + ch]);
                (V::load(&block[2 * padded + ch]) + acc.x2_q).store(&block[2 * padded + ch]);
              }
            });
          }
          if constexpr (kParamGrads) {
            for (int64_t term = 0; term < 3; ++term) {
              for (int64_t ch = 0; ch < channels; ++ch) {
                part_sums[term * channels + ch] += block[term * padded + ch];
              }
            }
            std::fill(block.begin(), block.end(), opmath_t(0));
          }
        }
        break;
      }
    }
  };

  torch::stable::parallel_for(0, parts, 1, [&](int64_t first_part, int64_t last_part) {
    for (int64_t part = first_part; part < last_part; ++part) backward_part(part);
  });

  if constexpr (kParamGrads) {
    // Each channel's gradients (float64), then the outputs written from them on the
    // host: no tensor ops, which cost more than the sums for small inputs.
    std::vector<ParamGrads<double>> per_channel(channels);
    for (int64_t ch = 0; ch < channels; ++ch) {
      double total[3] = {0, 0, 0};
      for (int64_t part = 0; part < parts; ++part) {
        for (int64_t term = 0; term < 3; ++term) total[term] += sums[(part * 3 + term) * channels + ch];
      }
      per_channel[ch] = param_grads_from_sums(params.beta[ch], params.coeffs[ch],
                                              total[0], total[1], total[2]);
    }
    *param_grads = {host_parameter_grad(problem, problem.alpha.tensor, per_channel, &ParamGrads<double>::alpha),
                    host_parameter_grad(problem, problem.beta.tensor, per_channel, &ParamGrads<double>::beta),
                    host_parameter_grad(problem, problem.gamma.tensor, per_channel, &ParamGrads<double>::gamma)};
  }
}

void level_forward(const Problem& problem, const Tensor& out) {
  with_scalar_type(problem.x.scalar_type(), [&](auto tag) { forward_loop<decltype(tag)>(problem, out); });
}

void level_backward(const Problem& problem, const Tensor& grad_output, const Tensor& grad_input,
                    ParameterGradients* param_grads) {
  const ChannelParameters params(problem);
  with_scalar_type(problem.x.scalar_type(), [&](auto tag) {
    using scalar_t = decltype(tag);
    if (param_grads == nullptr) {
      backward_loop<scalar_t, false, false>(problem, params, grad_output, grad_input, param_grads);
    } else if (params.has_beta_zero()) {
      backward_loop<scalar_t, true, true>(problem, params, grad_output, grad_input, param_grads);
    } else {
      backward_loop<scalar_t, true, false>(problem, params, grad_output, grad_input, param_grads);
    }
  });
}

}  // namespace

extern const KernelTable kernels{&level_forward, &level_backward};

}  // namespace sqish::cpu::SQISH_CPU_LEVEL

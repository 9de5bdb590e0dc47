// The Sqish function and its derivatives: the one place for the math, shared by
// the CPU kernels (scalar and SIMD vector types) and the CUDA kernels.
//
//   f(x) = αx + (1−α)·x·s,   s = σ(w),   w = k·x + c,   k = 2γ(1−α),   c = −ln β
//
// Every formula is a template over T, which is float or double (host or device)
// or, in the CPU kernels, a simd::Vec of them (cpu/simd.h supplies the vector
// forms of the primitives below).
// See docs/math.md for the derivation.
#pragma once

#include <cmath>

// Always inlined: a call would pass and return whole vectors through memory, and
// the backward's terms are too large for the compiler to inline them on its own.
#if defined(__CUDACC__)
#define SQISH_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define SQISH_HOST_DEVICE inline __attribute__((always_inline))
#endif

namespace sqish {

// Per-parameter constants, computed once per parameter value (never per element).
template <typename T>
struct Coeffs {
  T alpha;
  T one_minus_alpha;
  T k;  // 2γ(1−α): slope of the gate's argument
  T c;  // −ln β:   offset of the gate's argument
};

template <typename T>
SQISH_HOST_DEVICE Coeffs<T> make_coeffs(T alpha, T beta, T gamma) {
  const T one_minus_alpha = T(1) - alpha;
  return {alpha, one_minus_alpha, T(2) * gamma * one_minus_alpha, -std::log(beta)};
}

// ---- Primitives: the scalar forms; cpu/simd.h has the vector forms -----------

template <typename T>
SQISH_HOST_DEVICE T select(bool mask, T if_true, T if_false) {
  return mask ? if_true : if_false;
}

template <typename T>
SQISH_HOST_DEVICE bool is_nonnegative(T v) {
  return v >= T(0);
}

template <typename T>
SQISH_HOST_DEVICE bool is_zero(T v) {
  return v == T(0);
}

template <typename T>
SQISH_HOST_DEVICE bool is_positive_infinity(T v) {
  return v == T(INFINITY);
}

SQISH_HOST_DEVICE float exp_of(float v) {
#if defined(__CUDA_ARCH__)
  return ::expf(v);
#else
  return std::exp(v);
#endif
}
SQISH_HOST_DEVICE double exp_of(double v) { return ::exp(v); }

template <typename T>
SQISH_HOST_DEVICE T abs_of(T v) {
  return std::fabs(v);
}

// a·b + c, fused where the target has FMA (nvcc contracts this by default).
template <typename T>
SQISH_HOST_DEVICE T mul_add(T a, T b, T c) {
  return a * b + c;
}

// How the gate evaluates its exp and its reciprocal.
//   Accurate: the library exp and a correctly rounded division.
//   Fast: on the GPU, the hardware's approximate exp2 and reciprocal (a few float32
//     ulp; results under 2^-126 flush to 0, the limit the gate tends to anyway).
//     The CUDA kernels use it for bfloat16 and float16 inputs, whose float32 opmath
//     result is rounded to 8 or 11 significant bits: the error cannot show, and it
//     halves the gate's instruction count, which would otherwise rival the memory
//     time of a 2-byte element. Elsewhere it is Accurate.
struct Accurate {};
struct Fast {};

template <typename T>
SQISH_HOST_DEVICE T exp_of(T v, Accurate) {
  return exp_of(v);
}
template <typename T>
SQISH_HOST_DEVICE T reciprocal_of(T v, Accurate) {
  return T(1) / v;
}
SQISH_HOST_DEVICE float exp_of(float v, Fast) {
#if defined(__CUDA_ARCH__)
  return __expf(v);
#else
  return exp_of(v);
#endif
}
SQISH_HOST_DEVICE float reciprocal_of(float v, Fast) {
#if defined(__CUDA_ARCH__)
  return __fdividef(1.0f, v);
#else
  return 1.0f / v;
#endif
}
SQISH_HOST_DEVICE double exp_of(double v, Fast) { return exp_of(v); }
SQISH_HOST_DEVICE double reciprocal_of(double v, Fast) { return 1.0 / v; }

// β = 0 makes c = +∞: the gate is 1, x·q is 0, and ∂f/∂β = −(1−α)·x·q/β is the
// limit −(1−α)·x·e^(−kx) (docs/math.md), which no sum of x·q can give.
template <typename T>
SQISH_HOST_DEVICE auto is_beta_zero(const Coeffs<T>& p) {
  return is_positive_infinity(p.c);
}

// Parameter gradients are reduced as three sums over elements (see backward_terms);
// these turn the sums into ∂L/∂α, ∂L/∂β, ∂L/∂γ for one parameter value. At β = 0
// the middle sum is of x·e^(−kx) instead of x·q (backward_terms), with no 1/β.
template <typename T>
struct ParamGrads {
  T alpha, beta, gamma;
};

template <typename T>
SQISH_HOST_DEVICE ParamGrads<T> param_grads_from_sums(
    T beta, const Coeffs<T>& p, T sum_x_sc, T sum_x_q, T sum_x2_q) {
  return {sum_x_sc - p.k * sum_x2_q,
          -p.one_minus_alpha * (is_beta_zero(p) ? sum_x_q : sum_x_q / beta),
          T(2) * p.one_minus_alpha * p.one_minus_alpha * sum_x2_q};
}

// ---- The function ------------------------------------------------------------

// a·b, except that it is 0 wherever the gate factor b is exactly 0. At x = ±∞ a
// gate factor (s or 1 − s) underflows to 0 and a·b would be ∞·0 = NaN; the true
// limit of each such product is 0. A NaN input makes b NaN, so NaN still propagates.
template <typename T>
SQISH_HOST_DEVICE T times_gate(T a, T b) {
  return select(is_zero(b), T(0), a * b);
}

// s = σ(w) and sc = 1 − s = σ(−w), from one exp that never overflows.
template <typename T>
struct Gate {
  T s;
  T sc;
};

template <typename Precision = Accurate, typename T>
SQISH_HOST_DEVICE Gate<T> gate(T x, const Coeffs<T>& p) {
  const T w = mul_add(p.k, x, p.c);
  const T e = exp_of(-abs_of(w), Precision{});  // e^(−|w|) ∈ (0, 1]
  const T r = reciprocal_of(T(1) + e, Precision{});
  const T er = e * r;
  const auto w_nonnegative = is_nonnegative(w);
  return {select(w_nonnegative, r, er), select(w_nonnegative, er, r)};
}

template <typename Precision = Accurate, typename T>
SQISH_HOST_DEVICE T sqish_value(T x, const Coeffs<T>& p) {
  // s alone needs no sign split: where e^(−w) overflows, 1/(1 + ∞) = 0 is σ(w)
  // rounded, and nothing else can overflow.
  const T s = reciprocal_of(T(1) + exp_of(-mul_add(p.k, x, p.c), Precision{}), Precision{});
  // f = x·(α + (1−α)·s); the factor is 0 only when α = 0 and s underflowed.
  return times_gate(x, mul_add(p.one_minus_alpha, s, p.alpha));
}

// Per element: grad_input and the three terms whose sums give the parameter
// gradients (param_grads_from_sums), with q = s·(1 − s):
//   ∂f/∂x = α + (1−α)·(s + k·x·q)
//   ∂f/∂α = x·(1−s) − k·x²·q
//   ∂f/∂β = −(1−α)·x·q / β          (β > 0; −(1−α)·x·e^(−kx) at β = 0)
//   ∂f/∂γ = 2(1−α)²·x²·q
template <typename T>
struct BackwardTerms {
  T grad_input;
  T x_sc;   // g·x·(1−s)
  T x_q;    // g·x·q, or g·x·e^(−kx) where β = 0 (kBetaMayBeZero)
  T x2_q;   // g·x²·q
};

// kBetaMayBeZero: the coefficients may hold β = 0, whose x_q term needs a second
// exp. Kernels set it only when some coefficient has β = 0, so that the common
// case pays nothing for it.
template <typename Precision = Accurate, bool kBetaMayBeZero = false, typename T>
SQISH_HOST_DEVICE BackwardTerms<T> backward_terms(T grad, T x, const Coeffs<T>& p) {
  const Gate<T> g = gate<Precision>(x, p);
  const T q = g.s * g.sc;
  // x where q ≠ 0, else 0: the limits of x·q and x²·q at x = ±∞ are 0.
  const T x_where_q = select(is_zero(q), T(0), x);
  const T x_q = x_where_q * q;
  const T x2_q = x_where_q * x_q;
  const T x_sc = times_gate(x, g.sc);
  T x_q_term = x_q;
  if constexpr (kBetaMayBeZero) {
    // x·e^(−kx) is 0 where the exp underflows (x → +∞), and overflows where the
    // true value does.
    x_q_term = select(is_beta_zero(p), times_gate(x, exp_of(-p.k * x, Precision{})), x_q);
  }
  return {grad * mul_add(p.one_minus_alpha, mul_add(p.k, x_q, g.s), p.alpha),
          grad * x_sc, grad * x_q_term, grad * x2_q};
}

}  // namespace sqish

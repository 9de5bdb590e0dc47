// A small SIMD layer for the CPU kernels, on GCC/Clang vector extensions: one
// source, compiled once per x86-64 level (see build.json), whose flags decide the
// register width. Vec<float>/Vec<double> provide the arithmetic, comparisons and
// selects that sqish_math.h's templates use, the float exp the gate needs, and
// loads and stores of float16/bfloat16 storage converted to float32 in vectors.
//
// Loads and stores go through memcpy: alignment never matters, and the compiler
// turns them into plain vector moves.
#pragma once

#include <torch/headeronly/util/BFloat16.h>
#include <torch/headeronly/util/Half.h>

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <type_traits>

#if defined(__SSE2__)
#include <immintrin.h>
#endif

// Every function here is forced inline: a call would pass vectors through memory
// and spill the caller's live registers (all vector registers are caller-saved).
#define SQISH_SIMD_INLINE inline __attribute__((always_inline))

namespace sqish::simd {

#if defined(__AVX512F__)
inline constexpr int kVectorBytes = 64;
#elif defined(__AVX__)
inline constexpr int kVectorBytes = 32;
#else
inline constexpr int kVectorBytes = 16;  // SSE2 on baseline x86-64, NEON on arm64
#endif

#if defined(__AVX512F__)
// An AVX-512 mask register's value for lanes [0, count), count below the width.
SQISH_SIMD_INLINE unsigned first_lanes_bitmask(int64_t count) { return (1u << count) - 1; }
#endif

// The raw vector types (a vector_size attribute cannot depend on a template
// parameter), and for each lane type the integer type of its width.
typedef float FloatRaw __attribute__((vector_size(kVectorBytes)));
typedef double DoubleRaw __attribute__((vector_size(kVectorBytes)));
typedef int32_t Int32Raw __attribute__((vector_size(kVectorBytes)));
typedef int64_t Int64Raw __attribute__((vector_size(kVectorBytes)));
typedef uint32_t UInt32Raw __attribute__((vector_size(kVectorBytes)));
typedef uint16_t HalfWidthBits __attribute__((vector_size(kVectorBytes / 2)));

template <typename T>
struct LaneTypes;
template <>
struct LaneTypes<float> {
  using Int = int32_t;
  using Raw = FloatRaw;
  using IntRaw = Int32Raw;
};
template <>
struct LaneTypes<double> {
  using Int = int64_t;
  using Raw = DoubleRaw;
  using IntRaw = Int64Raw;
};

template <typename T>
struct Vec {
  static constexpr int kSize = kVectorBytes / sizeof(T);
  using Int = typename LaneTypes<T>::Int;
  using Raw = typename LaneTypes<T>::Raw;
  using IntRaw = typename LaneTypes<T>::IntRaw;

  Raw raw;

  Vec() = default;
  Vec(Raw r) : raw(r) {}                // NOLINT: implicit, as for the scalar types
  Vec(T s) : raw(Raw{} + s) {}          // NOLINT: broadcast
  explicit Vec(int s) : Vec(T(s)) {}

  SQISH_SIMD_INLINE static Vec load(const T* p) {
    Raw r;
    std::memcpy(&r, p, sizeof r);
    return r;
  }
  // The first `count` lanes from p, the rest 0. A masked access where the level
  // has one (AVX-512, AVX): a channel run's last, partial vector comes once per
  // run, and a variable-length memcpy through the stack costs several full vectors.
  SQISH_SIMD_INLINE static Vec load(const T* p, int64_t count) {
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>) {
      return (Raw)_mm512_maskz_loadu_ps(__mmask16(first_lanes_bitmask(count)), p);
    } else {
      return (Raw)_mm512_maskz_loadu_pd(__mmask8(first_lanes_bitmask(count)), p);
    }
#elif defined(__AVX__)
    if constexpr (std::is_same_v<T, float>) {
      return (Raw)_mm256_maskload_ps(p, (__m256i)first_lane_bits(count));
    } else {
      return (Raw)_mm256_maskload_pd(p, (__m256i)first_lane_bits(count));
    }
#else
    T lanes[kSize] = {};
    std::memcpy(lanes, p, count * sizeof(T));
    return load(lanes);
#endif
  }
  SQISH_SIMD_INLINE void store(T* p) const { std::memcpy(p, &raw, sizeof raw); }
  SQISH_SIMD_INLINE void store(T* p, int64_t count) const {
#if defined(__AVX512F__)
    if constexpr (std::is_same_v<T, float>) {
      _mm512_mask_storeu_ps(p, __mmask16(first_lanes_bitmask(count)), (__m512)raw);
    } else {
      _mm512_mask_storeu_pd(p, __mmask8(first_lanes_bitmask(count)), (__m512d)raw);
    }
#elif defined(__AVX__)
    if constexpr (std::is_same_v<T, float>) {
      _mm256_maskstore_ps(p, (__m256i)first_lane_bits(count), (__m256)raw);
    } else {
      _mm256_maskstore_pd(p, (__m256i)first_lane_bits(count), (__m256d)raw);
    }
#else
    std::memcpy(p, &raw, count * sizeof(T));
#endif
  }
  // All bits set in lanes [0, count).
  SQISH_SIMD_INLINE static IntRaw first_lane_bits(int64_t count) {
    IntRaw index;
    for (int i = 0; i < kSize; ++i) index[i] = i;
    return index < Int(count);
  }

  T operator[](int i) const { return raw[i]; }

  SQISH_SIMD_INLINE friend Vec operator+(Vec a, Vec b) { return a.raw + b.raw; }
  SQISH_SIMD_INLINE friend Vec operator-(Vec a, Vec b) { return a.raw - b.raw; }
  SQISH_SIMD_INLINE friend Vec operator*(Vec a, Vec b) { return a.raw * b.raw; }
  SQISH_SIMD_INLINE friend Vec operator/(Vec a, Vec b) { return a.raw / b.raw; }
  SQISH_SIMD_INLINE friend Vec operator-(Vec a) { return -a.raw; }
  SQISH_SIMD_INLINE Vec& operator+=(Vec b) { return raw += b.raw, *this; }
};

// A lane mask: all bits set where true.
template <typename T>
struct Mask {
  typename Vec<T>::IntRaw raw;
};

// Lanes [0, count) set.
template <typename T>
SQISH_SIMD_INLINE Mask<T> first_lanes(int64_t count) {
  return {Vec<T>::first_lane_bits(count)};
}

template <typename T>
SQISH_SIMD_INLINE Vec<T> select(Mask<T> mask, Vec<T> if_true, Vec<T> if_false) {
  return mask.raw ? if_true.raw : if_false.raw;
}
template <typename T>
SQISH_SIMD_INLINE Mask<T> is_nonnegative(Vec<T> v) {
  return {v.raw >= T(0)};
}
template <typename T>
SQISH_SIMD_INLINE Mask<T> is_zero(Vec<T> v) {
  return {v.raw == T(0)};
}
template <typename T>
SQISH_SIMD_INLINE Mask<T> is_positive_infinity(Vec<T> v) {
  return {v.raw == std::numeric_limits<T>::infinity()};
}
template <typename T>
SQISH_SIMD_INLINE Mask<T> is_nan(Vec<T> v) {
  return {v.raw != v.raw};
}
template <typename T>
SQISH_SIMD_INLINE Vec<T> abs_of(Vec<T> v) {
  using IntRaw = typename Vec<T>::IntRaw;
  const IntRaw magnitude = IntRaw{} + std::numeric_limits<typename Vec<T>::Int>::max();  // all but the sign
  return (typename Vec<T>::Raw)((IntRaw)v.raw & magnitude);
}
// a·b + c: the kernels are compiled with -ffp-contract=fast, which fuses it where
// the level has FMA.
template <typename T>
SQISH_SIMD_INLINE Vec<T> mul_add(Vec<T> a, Vec<T> b, Vec<T> c) {
  return a.raw * b.raw + c.raw;
}
// min/max that keep a NaN in `v`: x86's max(a, b) and min(a, b) return b when
// either is NaN, one instruction where a compare and a blend would take two.
SQISH_SIMD_INLINE Vec<float> clamp(Vec<float> v, float low, float high) {
  using Raw = Vec<float>::Raw;
#if defined(__AVX512F__)
  return (Raw)_mm512_min_ps(_mm512_set1_ps(high), _mm512_max_ps(_mm512_set1_ps(low), (__m512)v.raw));
#elif defined(__AVX__)
  return (Raw)_mm256_min_ps(_mm256_set1_ps(high), _mm256_max_ps(_mm256_set1_ps(low), (__m256)v.raw));
#elif defined(__SSE2__)
  return (Raw)_mm_min_ps(_mm_set1_ps(high), _mm_max_ps(_mm_set1_ps(low), (__m128)v.raw));
#else
  const Raw lo = v.raw < low ? Vec<float>(low).raw : v.raw;
  return lo > high ? Vec<float>(high).raw : lo;
#endif
}
template <typename T>
SQISH_SIMD_INLINE T horizontal_sum(Vec<T> v) {
  // A tree (lane i plus lane i + width, halving the width), which compiles to a
  // few shuffles and vector adds: a lane-by-lane sum is a chain of kSize dependent
  // adds, and a channel run of a small feature map ends in three of them.
  T lanes[Vec<T>::kSize];
  std::memcpy(lanes, &v.raw, sizeof lanes);
  for (int width = Vec<T>::kSize / 2; width > 0; width /= 2) {
    for (int i = 0; i < width; ++i) lanes[i] += lanes[i + width];
  }
  return lanes[0];
}

// e^v for float vectors, inline: an opaque library call would spill every live
// vector register (all are caller-saved). Cody–Waite reduction v = n·ln 2 + r with
// |r| ≤ ln 2 / 2, Cephes' degree-6 polynomial for e^r (about 1 ulp), and 2^n
// applied so that subnormal results are rounded once: by vscalefps with AVX-512
// (one instruction, where the integer route takes eight), else as two factors.
// Clamping keeps n in range (below −104 the result rounds to 0, above 89 to ∞) and
// keeps NaN.
SQISH_SIMD_INLINE Vec<float> exp_of(Vec<float> v) {
  using V = Vec<float>;
  const V x = clamp(v, -104.0f, 89.0f);
  // Adding 1.5·2^23 rounds x·log2(e) to an integer held in the low mantissa bits.
  const V shifter(12582912.0f);
  const V shifted = mul_add(x, V(1.44269504088896341f), shifter);
  const V n = shifted - shifter;
  V r = mul_add(n, V(-0.693359375f), x);
  r = mul_add(n, V(2.12194440e-4f), r);
  V p(1.9875691500e-4f);
  p = mul_add(p, r, V(1.3981999507e-3f));
  p = mul_add(p, r, V(8.3334519073e-3f));
  p = mul_add(p, r, V(4.1665795894e-2f));
  p = mul_add(p, r, V(1.6666665459e-1f));
  p = mul_add(p, r, V(5.0000001201e-1f));
  const V e_r = mul_add(p * r, r, r + V(1.0f));
#if defined(__AVX512F__)
  return (V::Raw)_mm512_scalef_ps((__m512)e_r.raw, (__m512)n.raw);
#else
  using IntRaw = V::IntRaw;
  const IntRaw n_int = (IntRaw)shifted.raw - (IntRaw)shifter.raw;
  const IntRaw half = n_int >> 1;
  const V scale_lo = (V::Raw)((half + 127) << 23);
  const V scale_hi = (V::Raw)((n_int - half + 127) << 23);
  return e_r * scale_lo * scale_hi;
#endif
}

// float64 keeps the C library's exp per lane: it is the accuracy reference dtype.
SQISH_SIMD_INLINE Vec<double> exp_of(Vec<double> v) {
  Vec<double> out;
  for (int i = 0; i < Vec<double>::kSize; ++i) out.raw[i] = std::exp(v.raw[i]);
  return out;
}

// ---- Storage types ---------------------------------------------------------------
// Storage<scalar_t> moves one Vec<opmath> worth of elements between memory and
// registers: float and double as they are, float16 and bfloat16 widened to float.

template <typename scalar_t>
struct Storage {
  using opmath_t = scalar_t;
  using V = Vec<opmath_t>;
  SQISH_SIMD_INLINE static V load(const scalar_t* p) { return V::load(p); }
  SQISH_SIMD_INLINE static V load(const scalar_t* p, int64_t count) { return V::load(p, count); }
  SQISH_SIMD_INLINE static void store(scalar_t* p, V v) { v.store(p); }
  SQISH_SIMD_INLINE static void store(scalar_t* p, V v, int64_t count) { v.store(p, count); }
};

template <typename Derived, typename scalar_t>
struct HalfWidthStorage {
  using opmath_t = float;
  using V = Vec<float>;
  static constexpr int kSize = V::kSize;
  using Bits = HalfWidthBits;

  SQISH_SIMD_INLINE static V load(const scalar_t* p) {
    Bits bits;
    std::memcpy(&bits, p, sizeof bits);
    return Derived::widen(bits);
  }
  SQISH_SIMD_INLINE static V load(const scalar_t* p, int64_t count) {
#if defined(__AVX512BW__) && defined(__AVX512VL__)
    return Derived::widen((Bits)_mm256_maskz_loadu_epi16(__mmask16(first_lanes_bitmask(count)), p));
#else
    Bits bits = {};
    std::memcpy(&bits, p, count * sizeof(uint16_t));
    return Derived::widen(bits);
#endif
  }
  SQISH_SIMD_INLINE static void store(scalar_t* p, V v) {
    const Bits bits = Derived::narrow(v);
    std::memcpy(p, &bits, sizeof bits);
  }
  SQISH_SIMD_INLINE static void store(scalar_t* p, V v, int64_t count) {
    const Bits bits = Derived::narrow(v);
#if defined(__AVX512BW__) && defined(__AVX512VL__)
    _mm256_mask_storeu_epi16(p, __mmask16(first_lanes_bitmask(count)), (__m256i)bits);
#else
    std::memcpy(p, &bits, count * sizeof(uint16_t));
#endif
  }
};

// bfloat16 is the top half of a float32: widening is a shift; narrowing rounds to
// nearest even, and NaN stays a quiet NaN (as c10::BFloat16 does).
template <>
struct Storage<c10::BFloat16> : HalfWidthStorage<Storage<c10::BFloat16>, c10::BFloat16> {
  using Wide = UInt32Raw;

  SQISH_SIMD_INLINE static V widen(Bits bits) { return (V::Raw)(__builtin_convertvector(bits, Wide) << 16); }
  SQISH_SIMD_INLINE static Bits narrow(V v) {
    const Wide u = (Wide)v.raw;
    const Wide rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
    const Wide quiet_nan = Wide{} + 0x7FC0u;
    return __builtin_convertvector(is_nan(v).raw ? quiet_nan : rounded, Bits);
  }
};

// float16 converts in hardware where the level has F16C (AVX2 and AVX-512 both
// do), else lane by lane with c10::Half's own conversion.
template <>
struct Storage<c10::Half> : HalfWidthStorage<Storage<c10::Half>, c10::Half> {
  SQISH_SIMD_INLINE static V widen(Bits bits) {
#if defined(__AVX512F__)
    return (V::Raw)_mm512_cvtph_ps((__m256i)bits);
#elif defined(__F16C__)
    return (V::Raw)_mm256_cvtph_ps((__m128i)bits);
#else
    V v;
    for (int i = 0; i < kSize; ++i) v.raw[i] = c10::detail::fp16_ieee_to_fp32_value(bits[i]);
    return v;
#endif
  }
  SQISH_SIMD_INLINE static Bits narrow(V v) {
#if defined(__AVX512F__)
    return (Bits)_mm512_cvtps_ph((__m512)v.raw, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#elif defined(__F16C__)
    return (Bits)_mm256_cvtps_ph((__m256)v.raw, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#else
    Bits bits;
    for (int i = 0; i < kSize; ++i) bits[i] = c10::detail::fp16_ieee_from_fp32_value(v.raw[i]);
    return bits;
#endif
  }
};

}  // namespace sqish::simd

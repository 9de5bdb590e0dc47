// What the example programs share: their input and what they print.
//
//   PROGRAM MODEL N C H W [VALUES.f32]
//
// The input is float32 arange(N*C*H*W).reshape(N, C, H, W) / (N*C*H*W) * 8 - 4, a ramp over
// [-4, 4). They print the output's shape, its sum and its first 8 values, one line each,
// and with VALUES.f32 also write every output value there, as raw float32 in the machine's
// byte order (the tests compare them all).
#pragma once

#include <ATen/ATen.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <exception>
#include <optional>
#include <string>

namespace sqish_example {

struct Arguments {
  const char* model;
  std::array<int64_t, 4> sizes;  // N, C, H, W
  const char* values_path;       // or nullptr
};

// A size argument: a positive integer and nothing else.
inline std::optional<int64_t> parse_size(const char* text) {
  try {
    size_t end = 0;
    const long long value = std::stoll(text, &end);
    if (end == std::string(text).size() && value > 0) return value;
  } catch (const std::exception&) {
  }
  return std::nullopt;
}

// The arguments, or nullopt after printing what is wrong and the usage.
inline std::optional<Arguments> parse_arguments(int argc, char** argv, const char* model_kind) {
  const auto usage = [&] {
    std::fprintf(stderr, "usage: %s MODEL N C H W [VALUES.f32]   (MODEL: %s; N, C, H, W positive integers)\n",
                 argv[0], model_kind);
  };
  if (argc != 6 && argc != 7) {
    usage();
    return std::nullopt;
  }
  Arguments arguments{argv[1], {}, argc == 7 ? argv[6] : nullptr};
  for (int i = 0; i < 4; ++i) {
    const std::optional<int64_t> size = parse_size(argv[i + 2]);
    if (!size) {
      std::fprintf(stderr, "%s: size %s is not a positive integer\n", argv[0], argv[i + 2]);
      usage();
      return std::nullopt;
    }
    arguments.sizes[i] = *size;
  }
  return arguments;
}

inline at::Tensor ramp(const std::array<int64_t, 4>& sizes) {
  const auto [n, c, h, w] = sizes;
  const int64_t numel = n * c * h * w;
  return at::arange(numel, at::kFloat).reshape({n, c, h, w}) / numel * 8 - 4;
}

// Prints y's lines and writes its values; false if the values file cannot be written.
inline bool report(const at::Tensor& output, const char* values_path) {
  const at::Tensor y = output.cpu().contiguous();
  std::printf("shape:");
  for (const int64_t size : y.sizes()) std::printf(" %lld", static_cast<long long>(size));
  std::printf("\nsum: %.9g\nfirst:", y.sum().item<double>());
  const at::Tensor flat = y.flatten().to(at::kDouble);
  for (int64_t i = 0; i < std::min<int64_t>(8, flat.numel()); ++i) std::printf(" %.9g", flat[i].item<double>());
  std::printf("\n");
  if (values_path == nullptr) return true;
  const at::Tensor values = y.to(at::kFloat).contiguous();
  std::FILE* file = std::fopen(values_path, "wb");
  bool written = file != nullptr && std::fwrite(values.data_ptr<float>(), sizeof(float), values.numel(), file) ==
                                        static_cast<size_t>(values.numel());
  if (file != nullptr) written = std::fclose(file) == 0 && written;
  if (!written) std::fprintf(stderr, "cannot write %s\n", values_path);
  return written;
}

}  // namespace sqish_example

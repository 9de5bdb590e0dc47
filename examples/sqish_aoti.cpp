// Runs an AOTInductor package of a model that uses Sqish, from C++ only (no Python).
//
//   sqish_aoti MODEL.pt2 N C H W
//
// MODEL.pt2 comes from torch._inductor.aoti_compile_and_package (docs/deploy.md). The input
// is float32 arange(N*C*H*W).reshape(N, C, H, W) / (N*C*H*W) * 8 - 4, a ramp over [-4, 4),
// on the device the package was compiled for. Prints the output's shape, its sum and its
// first 8 values, one line each, as sqish_infer does.
//
// The package's compiled code calls the Sqish ops through the dispatcher, by name, so they
// must be registered in this process: it links libsqish_ops (see CMakeLists.txt).
#include <ATen/ATen.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>
#include <vector>

namespace {

// A size argument: a positive integer and nothing else, or -1.
int64_t parse_size(const char* text) {
  try {
    size_t end = 0;
    const long long value = std::stoll(text, &end);
    return end == std::string(text).size() && value > 0 ? value : -1;
  } catch (const std::exception&) {
    return -1;
  }
}

}  // namespace

int main(int argc, char** argv) {
  const char* usage = "usage: %s MODEL.pt2 N C H W   (an AOTInductor package; N, C, H, W positive integers)\n";
  if (argc != 6) {
    std::fprintf(stderr, usage, argv[0]);
    return 2;
  }
  int64_t sizes[4];
  for (int i = 0; i < 4; ++i) {
    sizes[i] = parse_size(argv[i + 2]);
    if (sizes[i] < 0) {
      std::fprintf(stderr, "sqish_aoti: size %s is not a positive integer\n", argv[i + 2]);
      std::fprintf(stderr, usage, argv[0]);
      return 2;
    }
  }
  try {
    torch::inductor::AOTIModelPackageLoader loader(argv[1]);
    const c10::Device device(loader.get_metadata().at("AOTI_DEVICE_KEY"));
    const auto [n, c, h, w] = sizes;
    const int64_t numel = n * c * h * w;
    const at::Tensor x =
        (at::arange(numel, at::kFloat).reshape({n, c, h, w}) / numel * 8 - 4).to(device);

    // The C++ side has no autograd formulas for the Sqish ops (they live in Python).
    c10::InferenceMode inference;
    const at::Tensor y = loader.run({x}).at(0).cpu().contiguous();

    std::printf("shape:");
    for (const int64_t size : y.sizes()) std::printf(" %lld", static_cast<long long>(size));
    std::printf("\nsum: %.9g\nfirst:", y.sum().item<double>());
    const at::Tensor flat = y.flatten().to(at::kDouble);
    for (int64_t i = 0; i < std::min<int64_t>(8, flat.numel()); ++i) {
      std::printf(" %.9g", flat[i].item<double>());
    }
    std::printf("\n");
  } catch (const c10::Error& error) {  // torch's errors: the message without the C++ backtrace
    std::fprintf(stderr, "sqish_aoti: %s\n", error.what_without_backtrace());
    return 1;
  } catch (const std::exception& error) {
    std::fprintf(stderr, "sqish_aoti: %s\n", error.what());
    return 1;
  }
  return 0;
}

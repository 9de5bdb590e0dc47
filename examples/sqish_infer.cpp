// Runs a TorchScript model that uses Sqish, from C++ only (no Python).
//
//   sqish_infer MODEL.pt N C H W
//
// The input is float32 arange(N*C*H*W).reshape(N, C, H, W) / (N*C*H*W) * 8 - 4, a ramp over
// [-4, 4). Prints the output's shape, its sum and its first 8 values, one line each.
// The ops are registered because this program links libsqish_ops (see CMakeLists.txt).
#include <torch/script.h>

#include <algorithm>
#include <cstdio>
#include <exception>
#include <string>

int main(int argc, char** argv) {
  if (argc != 6) {
    std::fprintf(stderr, "usage: %s MODEL.pt N C H W\n", argv[0]);
    return 2;
  }
  try {
    torch::jit::Module model = torch::jit::load(argv[1]);
    model.eval();
    const int64_t n = std::stoll(argv[2]), c = std::stoll(argv[3]), h = std::stoll(argv[4]),
                  w = std::stoll(argv[5]);
    const int64_t numel = n * c * h * w;
    const at::Tensor x = torch::arange(numel, torch::kFloat32).reshape({n, c, h, w}) / numel * 8 - 4;

    // The C++ side has no autograd formulas for the Sqish ops (they live in Python).
    c10::InferenceMode inference;
    const at::Tensor y = model.forward({x}).toTensor().contiguous();

    std::printf("shape:");
    for (const int64_t size : y.sizes()) std::printf(" %lld", static_cast<long long>(size));
    std::printf("\nsum: %.9g\nfirst:", y.sum().item<double>());
    const at::Tensor flat = y.flatten().to(torch::kDouble);
    for (int64_t i = 0; i < std::min<int64_t>(8, flat.numel()); ++i) {
      std::printf(" %.9g", flat[i].item<double>());
    }
    std::printf("\n");
  } catch (const std::exception& error) {
    std::fprintf(stderr, "sqish_infer: %s\n", error.what());
    return 1;
  }
  return 0;
}

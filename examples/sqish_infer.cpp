// Runs a TorchScript model that uses Sqish, from C++ only (no Python).
//
//   sqish_infer MODEL.pt N C H W [VALUES.f32]
//
// Input and output as example_io.h says. The ops are registered because this program
// links libsqish_ops (see CMakeLists.txt).
#include <torch/script.h>

#include <cstdio>
#include <exception>

#include "example_io.h"

int main(int argc, char** argv) {
  const auto arguments = sqish_example::parse_arguments(argc, argv, "a TorchScript model");
  if (!arguments) return 2;
  try {
    torch::jit::Module model = torch::jit::load(arguments->model);
    model.eval();
    const at::Tensor x = sqish_example::ramp(arguments->sizes);
    // The C++ side has no autograd formulas for the Sqish ops (they live in Python).
    c10::InferenceMode inference;
    const at::Tensor y = model.forward({x}).toTensor();
    return sqish_example::report(y, arguments->values_path) ? 0 : 1;
  } catch (const c10::Error& error) {  // torch's errors: the message without the C++ backtrace
    std::fprintf(stderr, "sqish_infer: %s\n", error.what_without_backtrace());
  } catch (const std::exception& error) {
    std::fprintf(stderr, "sqish_infer: %s\n", error.what());
  }
  return 1;
}

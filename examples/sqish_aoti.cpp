// Runs an AOTInductor package of a model that uses Sqish, from C++ only (no Python).
//
//   sqish_aoti MODEL.pt2 N C H W [VALUES.f32]
//
// MODEL.pt2 comes from torch._inductor.aoti_compile_and_package (docs/deploy.md). Input
// and output as example_io.h says; the input goes to the device the package was compiled
// for.
//
// The package's compiled code calls the Sqish ops through the dispatcher, by name, so they
// must be registered in this process: it links libsqish_ops (see CMakeLists.txt).
#include <ATen/ATen.h>
#include <torch/csrc/inductor/aoti_package/model_package_loader.h>

#include <cstdio>
#include <exception>

#include "example_io.h"

int main(int argc, char** argv) {
  const auto arguments = sqish_example::parse_arguments(argc, argv, "an AOTInductor package");
  if (!arguments) return 2;
  try {
    torch::inductor::AOTIModelPackageLoader loader(arguments->model);
    const c10::Device device(loader.get_metadata().at("AOTI_DEVICE_KEY"));
    const at::Tensor x = sqish_example::ramp(arguments->sizes).to(device);
    // The C++ side has no autograd formulas for the Sqish ops (they live in Python).
    c10::InferenceMode inference;
    const at::Tensor y = loader.run({x}).at(0);
    return sqish_example::report(y, arguments->values_path) ? 0 : 1;
  } catch (const c10::Error& error) {  // torch's errors: the message without the C++ backtrace
    std::fprintf(stderr, "sqish_aoti: %s\n", error.what_without_backtrace());
  } catch (const std::exception& error) {
    std::fprintf(stderr, "sqish_aoti: %s\n", error.what());
  }
  return 1;
}

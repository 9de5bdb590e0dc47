// The CPU backend: picks the kernel table of the best x86-64 level that this
// build has and this CPU runs, once per process, and registers the ops' CPU kernels.
//
// The choice follows ATen's rule for its own kernels: the CPU's features decide,
// and the environment variable ATEN_CPU_CAPABILITY (default, avx2, avx512) can
// lower the level, never raise it. SQISH_CPU_WITH_<LEVEL> says which levels were
// compiled (build.json).
#include "kernels.h"

#include "../python_module.h"
#include "../sqish_op.h"

#include <torch/csrc/stable/library.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <string>

namespace sqish::cpu {
namespace {

enum class Level { kDefault, kAvx2, kAvx512 };

Level highest_supported_level() {
#if defined(__x86_64__) || defined(_M_X64)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
      __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("fma")) {
    return Level::kAvx512;
  }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c")) {
    return Level::kAvx2;
  }
#endif
  return Level::kDefault;
}

Level requested_level() {
  const char* env = std::getenv("ATEN_CPU_CAPABILITY");
  if (env == nullptr) return Level::kAvx512;
  std::string value(env);
  for (char& ch : value) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  if (value == "default") return Level::kDefault;
  if (value == "avx2") return Level::kAvx2;
  return Level::kAvx512;
}

const KernelTable& choose_kernels() {
  const Level level = std::min(highest_supported_level(), requested_level());
#if defined(SQISH_CPU_WITH_AVX512)
  if (level >= Level::kAvx512) return level_avx512::kernels;
#endif
#if defined(SQISH_CPU_WITH_AVX2)
  if (level >= Level::kAvx2) return level_avx2::kernels;
#endif
  (void)level;
  return level_default::kernels;
}

const KernelTable& kernels() {
  static const KernelTable& table = choose_kernels();
  return table;
}

struct CpuKernels {
  static void launch_forward(const Problem& problem, const Tensor& out) { kernels().level_forward(problem, out); }
  static void launch_backward(const Problem& problem, const Tensor& grad_output, const Tensor& grad_input,
                              ParameterGradients* param_grads) {
    kernels().level_backward(problem, grad_output, grad_input, param_grads);
  }
};

}  // namespace
}  // namespace sqish::cpu

STABLE_TORCH_LIBRARY_IMPL(sqish, CPU, m) { SQISH_REGISTER_KERNELS(m, sqish::cpu::CpuKernels); }

// The CPU backend and the schema (library.cpp) form the module sqish_ext._C.
SQISH_PYTHON_MODULE_INIT(_C)

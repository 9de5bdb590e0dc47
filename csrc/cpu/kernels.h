// The CPU kernels of one x86-64 level, as a table: kernels.cpp is compiled once
// per level of build.json, each time into namespace sqish::cpu::SQISH_CPU_LEVEL,
// and dispatch.cpp picks one table for the process.
#pragma once

#include "../sqish_op.h"

namespace sqish::cpu {

struct KernelTable {
  void (*level_forward)(const Problem& problem, const Tensor& out);
  void (*level_backward)(const Problem& problem, const Tensor& grad_output, const Tensor& grad_input,
                         ParameterGradients* param_grads);
};

#define SQISH_DECLARE_CPU_LEVEL(level) \
  namespace level {                    \
  extern const KernelTable kernels;    \
  }
SQISH_DECLARE_CPU_LEVEL(level_default)
SQISH_DECLARE_CPU_LEVEL(level_avx2)
SQISH_DECLARE_CPU_LEVEL(level_avx512)
#undef SQISH_DECLARE_CPU_LEVEL

}  // namespace sqish::cpu

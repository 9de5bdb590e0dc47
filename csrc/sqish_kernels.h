// The contract between the op (sqish.cpp), which validates arguments and
// allocates outputs, and the backends (cpu/, cuda/), which only compute.
#pragma once

#include <ATen/core/Tensor.h>

namespace sqish {

// Arguments after validation. x (and grad_output, and every full-size output) is
// non-overlapping and dense with one shared set of strides, so a kernel may walk
// the storage as a flat array. alpha, beta, gamma are float32 or float64 tensors on
// x's device, each 0-dim or of size `channels`.
struct Problem {
  at::Tensor x;
  at::Tensor alpha, beta, gamma;
  // Number of distinct parameter values: 1 when all three parameters are 0-dim,
  // else x.size(1). The element at storage offset o belongs to channel
  // (o / channel_stride) % channels, which holds because x is dense.
  int64_t channels;
  int64_t channel_stride;
};

// out may alias x (the in-place op).
void forward_cpu(const Problem& problem, const at::Tensor& out);

// Writes grad_input; when param_grads is defined (shape (channels, 3), float64,
// contiguous), also writes ∂L/∂α, ∂L/∂β, ∂L/∂γ for each channel from the same pass.
void backward_cpu(const Problem& problem, const at::Tensor& grad_output,
                  const at::Tensor& grad_input, const at::Tensor& param_grads);

#if defined(SQISH_WITH_CUDA)
void forward_cuda(const Problem& problem, const at::Tensor& out);
void backward_cuda(const Problem& problem, const at::Tensor& grad_output,
                   const at::Tensor& grad_input, const at::Tensor& param_grads);
#endif

}  // namespace sqish

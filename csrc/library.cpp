// The schema of the Sqish ops, in one place. Kernels are registered by each
// backend (cpu/, cuda/); autograd and fake-tensor rules live in sqish_ext/ops.py.
#include <torch/csrc/stable/library.h>

STABLE_TORCH_LIBRARY(sqish, m) {
  // Each op takes α, β, γ as tensors (0-dim or one value per channel; these are
  // differentiable) or, in its .float overload, as numbers passed by value: no
  // tensor per call, and nothing for a GPU to read or a host to copy.
  m.def("sqish(Tensor x, Tensor alpha, Tensor beta, Tensor gamma) -> Tensor");
  m.def("sqish.float(Tensor x, float alpha, float beta, float gamma) -> Tensor");
  m.def("sqish_(Tensor(a!) x, Tensor alpha, Tensor beta, Tensor gamma) -> Tensor(a!)");
  m.def("sqish_.float(Tensor(a!) x, float alpha, float beta, float gamma) -> Tensor(a!)");
  // grad_input and, when compute_param_grads, ∂L/∂α, ∂L/∂β, ∂L/∂γ in the
  // parameters' shapes and dtypes (else undefined), from one pass over the data.
  m.def(
      "sqish_backward(Tensor grad_output, Tensor x, Tensor alpha, Tensor beta, Tensor gamma, "
      "bool compute_param_grads) -> (Tensor grad_input, Tensor grad_alpha, Tensor grad_beta, "
      "Tensor grad_gamma)");
  m.def("sqish_backward.float(Tensor grad_output, Tensor x, float alpha, float beta, float gamma) -> Tensor");
}

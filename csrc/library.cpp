// The schema of the Sqish ops, in one place. Kernels are registered by each
// backend (cpu/, cuda/); autograd and fake-tensor rules live in sqish_ext/ops.py.
#include <torch/csrc/stable/library.h>

STABLE_TORCH_LIBRARY(sqish, m) {
  m.def("sqish(Tensor x, Tensor alpha, Tensor beta, Tensor gamma) -> Tensor");
  m.def("sqish_(Tensor(a!) x, Tensor alpha, Tensor beta, Tensor gamma) -> Tensor(a!)");
  // grad_input and, when compute_param_grads, ∂L/∂α, ∂L/∂β, ∂L/∂γ in the
  // parameters' shapes and dtypes (else undefined), from one pass over the data.
  m.def(
      "sqish_backward(Tensor grad_output, Tensor x, Tensor alpha, Tensor beta, Tensor gamma, "
      "bool compute_param_grads) -> (Tensor grad_input, Tensor grad_alpha, Tensor grad_beta, "
      "Tensor grad_gamma)");
}

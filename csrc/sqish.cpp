// The Sqish ops: schemas, argument validation and output allocation, shared by
// every backend. Kernels live in cpu/ and cuda/ behind sqish_kernels.h.
#include "sqish_kernels.h"

#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <ATen/core/LegacyTypeDispatch.h>
#include <ATen/core/dispatch/Dispatcher.h>
#include <c10/core/GradMode.h>
#include <torch/library.h>

#include <tuple>

#if defined(SQISH_PYTHON_MODULE)
#include <Python.h>
#endif

namespace sqish {
namespace {

bool is_supported_input_dtype(at::ScalarType t) {
  return t == at::kFloat || t == at::kDouble || t == at::kBFloat16 || t == at::kHalf;
}

void check_parameter(const char* op, const char* name, const at::Tensor& param, const at::Tensor& x) {
  TORCH_CHECK_TYPE(param.scalar_type() == at::kFloat || param.scalar_type() == at::kDouble, op, ": ", name,
                   " must be a float32 or float64 tensor, got ", param.scalar_type());
  TORCH_CHECK(param.device() == x.device(), op, ": ", name, " is on ", param.device(), " but x is on ",
              x.device(), "; move the parameters to x's device");
  TORCH_CHECK_VALUE(param.dim() <= 1, op, ": ", name,
                    " must be 0-dim (one value) or 1-D of size x.size(1) (per channel), got shape ",
                    param.sizes());
  if (param.dim() == 1) {
    TORCH_CHECK_VALUE(x.dim() >= 2, op, ": per-channel ", name, " (shape ", param.sizes(),
                      ") needs x with a channel dimension (dim 1), but x has shape ", x.sizes());
    TORCH_CHECK_VALUE(param.size(0) == x.size(1), op, ": per-channel ", name, " has ", param.size(0),
                      " values but x has ", x.size(1), " channels (x.size(1), x of shape ", x.sizes(), ")");
  }
}

// Validates the arguments and returns them in the form the kernels take.
Problem make_problem(const char* op, const at::Tensor& x, const at::Tensor& alpha, const at::Tensor& beta,
                     const at::Tensor& gamma) {
  TORCH_CHECK_TYPE(is_supported_input_dtype(x.scalar_type()), op,
                   ": x must be float32, float64, bfloat16 or float16, got ", x.scalar_type());
  check_parameter(op, "alpha", alpha, x);
  check_parameter(op, "beta", beta, x);
  check_parameter(op, "gamma", gamma, x);
  const bool per_channel = alpha.dim() == 1 || beta.dim() == 1 || gamma.dim() == 1;
  // Dense layouts of any stride order, such as channels_last, are used in place
  // and kept by the output. A strided view (a slice, an expanded tensor) is copied
  // once into the dense layout of the same dimension order, which is also what
  // torch's pointwise ops give as their result.
  at::Tensor dense = x.is_non_overlapping_and_dense() ? x : at::empty_like(x).copy_(x);
  const int64_t channels = per_channel ? x.size(1) : 1;
  const int64_t channel_stride = per_channel ? dense.stride(1) : 1;
  return {std::move(dense), alpha, beta, gamma, channels, channel_stride};
}

void run_forward(const Problem& problem, const at::Tensor& out) {
  if (problem.x.numel() == 0) return;
#if defined(SQISH_WITH_CUDA)
  if (problem.x.is_cuda()) return forward_cuda(problem, out);
#endif
  forward_cpu(problem, out);
}

void run_backward(const Problem& problem, const at::Tensor& grad_output, const at::Tensor& grad_input,
                  const at::Tensor& param_grads) {
  if (problem.x.numel() == 0) return;
#if defined(SQISH_WITH_CUDA)
  if (problem.x.is_cuda()) return backward_cuda(problem, grad_output, grad_input, param_grads);
#endif
  backward_cpu(problem, grad_output, grad_input, param_grads);
}

at::Tensor sqish_forward(const at::Tensor& x, const at::Tensor& alpha, const at::Tensor& beta,
                         const at::Tensor& gamma) {
  const Problem problem = make_problem("sqish", x, alpha, beta, gamma);
  at::Tensor out = at::empty_like(problem.x);
  run_forward(problem, out);
  return out;
}

at::Tensor& sqish_inplace(at::Tensor& x, const at::Tensor& alpha, const at::Tensor& beta,
                          const at::Tensor& gamma) {
  const Problem problem = make_problem("sqish_", x, alpha, beta, gamma);
  run_forward(problem, problem.x);
  if (!problem.x.is_same(x)) x.copy_(problem.x);
  return x;
}

// The in-place op overwrites the input that any backward would need, so it has
// no derivative; under autograd it refuses rather than record a wrong graph.
at::Tensor& sqish_inplace_autograd(at::Tensor& x, const at::Tensor& alpha, const at::Tensor& beta,
                                   const at::Tensor& gamma) {
  const bool needs_grad = x.requires_grad() || alpha.requires_grad() || beta.requires_grad() ||
                          gamma.requires_grad();
  TORCH_CHECK(!(needs_grad && c10::GradMode::is_enabled()),
              "sqish_: the in-place Sqish overwrites its input, which the backward needs; x or a "
              "parameter requires grad here. Use sqish (out of place) for training, or call sqish_ "
              "under torch.no_grad() / torch.inference_mode()");
  static const auto op = c10::Dispatcher::singleton()
                             .findSchemaOrThrow("sqish::sqish_", "")
                             .typed<at::Tensor&(at::Tensor&, const at::Tensor&, const at::Tensor&,
                                                const at::Tensor&)>();
  {
    at::AutoDispatchBelowADInplaceOrView below_autograd;
    op.call(x, alpha, beta, gamma);
  }
  // Autograd's saved-tensor checks rely on the version counter of mutated inputs.
  x.unsafeGetTensorImpl()->bump_version();
  return x;
}

// One parameter's gradient from the per-channel table: summed over channels when
// the parameter is a single value shared by several. Always a fresh tensor: the
// outputs must not alias the table or each other.
at::Tensor parameter_grad(const at::Tensor& per_channel, const at::Tensor& param) {
  const bool shared = param.dim() == 0 && per_channel.size(0) > 1;
  const at::Tensor grad = shared ? per_channel.sum() : per_channel.reshape(param.sizes());
  return grad.to(param.scalar_type(), /*non_blocking=*/false, /*copy=*/true);
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> sqish_backward(
    const at::Tensor& grad_output, const at::Tensor& x, const at::Tensor& alpha, const at::Tensor& beta,
    const at::Tensor& gamma, bool compute_param_grads) {
  const Problem problem = make_problem("sqish_backward", x, alpha, beta, gamma);
  TORCH_CHECK_VALUE(grad_output.sizes() == x.sizes(), "sqish_backward: grad_output has shape ",
                    grad_output.sizes(), " but x has shape ", x.sizes());
  TORCH_CHECK_TYPE(grad_output.scalar_type() == x.scalar_type(), "sqish_backward: grad_output is ",
                   grad_output.scalar_type(), " but x is ", x.scalar_type());
  TORCH_CHECK(grad_output.device() == x.device(), "sqish_backward: grad_output is on ", grad_output.device(),
              " but x is on ", x.device());
  // The kernels walk grad_output in x's memory order.
  const at::Tensor grad = grad_output.strides() == problem.x.strides()
                              ? grad_output
                              : at::empty_like(problem.x).copy_(grad_output);
  at::Tensor grad_input = at::empty_like(problem.x);
  if (!compute_param_grads) {
    run_backward(problem, grad, grad_input, at::Tensor());
    return {grad_input, at::Tensor(), at::Tensor(), at::Tensor()};
  }
  // Each backend writes every row; with no elements, every gradient is 0.
  const auto table_options = x.options().dtype(at::kDouble);
  at::Tensor table = problem.x.numel() > 0 ? at::empty({problem.channels, 3}, table_options)
                                           : at::zeros({problem.channels, 3}, table_options);
  run_backward(problem, grad, grad_input, table);
  return {grad_input, parameter_grad(table.select(1, 0), alpha), parameter_grad(table.select(1, 1), beta),
          parameter_grad(table.select(1, 2), gamma)};
}

}  // namespace

TORCH_LIBRARY(sqish, m) {
  m.def("sqish(Tensor x, Tensor alpha, Tensor beta, Tensor gamma) -> Tensor");
  m.def("sqish_(Tensor(a!) x, Tensor alpha, Tensor beta, Tensor gamma) -> Tensor(a!)");
  // grad_input and, when compute_param_grads, ∂L/∂α, ∂L/∂β, ∂L/∂γ in the
  // parameters' shapes and dtypes (else undefined), from one pass over the data.
  m.def(
      "sqish_backward(Tensor grad_output, Tensor x, Tensor alpha, Tensor beta, Tensor gamma, "
      "bool compute_param_grads) -> (Tensor grad_input, Tensor grad_alpha, Tensor grad_beta, "
      "Tensor grad_gamma)");
}

TORCH_LIBRARY_IMPL(sqish, CPU, m) {
  m.impl("sqish", &sqish_forward);
  m.impl("sqish_", &sqish_inplace);
  m.impl("sqish_backward", &sqish_backward);
}

#if defined(SQISH_WITH_CUDA)
TORCH_LIBRARY_IMPL(sqish, CUDA, m) {
  m.impl("sqish", &sqish_forward);
  m.impl("sqish_", &sqish_inplace);
  m.impl("sqish_backward", &sqish_backward);
}
#endif

TORCH_LIBRARY_IMPL(sqish, Autograd, m) {
  m.impl("sqish_", &sqish_inplace_autograd);
}

}  // namespace sqish

#if defined(SQISH_PYTHON_MODULE)
// `import sqish_ext._C` loads this library, whose static initialisers register
// the ops above with the dispatcher; the module itself is empty.
PyMODINIT_FUNC PyInit__C() {
  static PyModuleDef module = {PyModuleDef_HEAD_INIT, "_C", nullptr, -1, nullptr};
  return PyModule_Create(&module);
}
#endif

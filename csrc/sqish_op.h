// The Sqish ops as every backend runs them: argument validation and output
// allocation. A backend (cpu/, cuda/) supplies only its kernels (a Kernels struct,
// below) and registers the ops for its dispatch key with SQISH_REGISTER_KERNELS.
// Stable ABI only (torch/csrc/stable, torch/headeronly).
#pragma once

#include <torch/csrc/stable/ops.h>
#include <torch/csrc/stable/tensor.h>
#include <torch/headeronly/core/ScalarType.h>
#include <torch/headeronly/util/BFloat16.h>
#include <torch/headeronly/util/Half.h>
#include <torch/headeronly/util/shim_utils.h>

#include <algorithm>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

namespace sqish {

using torch::headeronly::ScalarType;
using torch::stable::Tensor;

// One of α, β, γ after validation: a tensor on x's device, 0-dim or of size
// `channels`, of a floating dtype (read in float64), or, from the ops' float
// overloads, a value passed by value (nothing to read from memory).
struct Parameter {
  Tensor tensor;  // undefined for a value
  double value = 0;

  bool is_value() const { return !tensor.defined(); }
};

// Arguments after validation. x (and grad_output, and every full-size output) is
// non-overlapping and dense with one shared set of strides, so a kernel may walk
// the storage as a flat array.
struct Problem {
  Tensor x;
  Parameter alpha, beta, gamma;
  // Number of distinct parameter values: 1 when all three parameters are 0-dim,
  // else x.size(1). The element at storage offset o belongs to channel
  // (o / channel_stride) % channels, which holds because x is dense.
  int64_t channels;
  int64_t channel_stride;
};

// Errors. The stable ABI carries every exception to Python as RuntimeError, so the
// message ends with the Python type it stands for, " [TypeError]" or
// " [ValueError]"; sqish_ext's Python layer raises that type with the message
// before the tag (sqish_ext/_errors.py).
namespace error {

template <typename... Args>
[[noreturn]] void raise(const char* python_type, const Args&... args) {
  std::ostringstream message;
  (message << ... << args);
  if (python_type != nullptr) message << " [" << python_type << "]";
  throw std::runtime_error(message.str());
}

// Values as torch prints them: dtype names such as Float, shapes as [2, 3].
inline std::string shape(const Tensor& t) {
  std::ostringstream out;
  out << '[';
  for (int64_t d = 0; d < t.dim(); ++d) out << (d ? ", " : "") << t.size(d);
  out << ']';
  return out.str();
}

inline std::string device(const Tensor& t) {
  if (t.is_cpu()) return "cpu";
  std::ostringstream out;
  out << (t.is_cuda() ? "cuda" : "device") << ':' << t.get_device_index();
  return out.str();
}

}  // namespace error

#define SQISH_CHECK(python_type, cond, ...)                        \
  do {                                                               \
    if (!(cond)) ::sqish::error::raise(python_type, __VA_ARGS__);   \
  } while (false)
#define SQISH_CHECK_TYPE(cond, ...) SQISH_CHECK("TypeError", cond, __VA_ARGS__)
#define SQISH_CHECK_VALUE(cond, ...) SQISH_CHECK("ValueError", cond, __VA_ARGS__)
#define SQISH_CHECK_RUNTIME(cond, ...) SQISH_CHECK(nullptr, cond, __VA_ARGS__)

// Calls fn(scalar_t{}) for one of the input dtypes that make_problem accepts.
template <typename Fn>
void with_scalar_type(ScalarType type, const Fn& fn) {
  switch (type) {
    case ScalarType::Float: return fn(float{});
    case ScalarType::Double: return fn(double{});
    case ScalarType::Half: return fn(c10::Half{});
    case ScalarType::BFloat16: return fn(c10::BFloat16{});
    default: error::raise(nullptr, "sqish: unsupported dtype ", type);
  }
}

namespace detail {

inline bool is_floating(ScalarType t) {
  return t == ScalarType::Float || t == ScalarType::Double || t == ScalarType::BFloat16 ||
         t == ScalarType::Half;
}

inline bool same_device(const Tensor& a, const Tensor& b) {
  return a.is_cpu() == b.is_cpu() && a.is_cuda() == b.is_cuda() &&
         a.get_device_index() == b.get_device_index();
}

// Whether x's elements fill its storage span exactly once: its strides, sorted,
// are the contiguous strides of its sizes permuted alike (as for channels_last).
// Size-1 dimensions have no say.
inline bool is_non_overlapping_and_dense(const Tensor& x) {
  if (x.is_contiguous()) return true;  // the common case, without sorting
  std::vector<int64_t> dims;
  for (int64_t d = 0; d < x.dim(); ++d) {
    if (x.size(d) != 1) dims.push_back(d);
  }
  std::sort(dims.begin(), dims.end(), [&](int64_t a, int64_t b) { return x.stride(a) < x.stride(b); });
  int64_t expected = 1;
  for (int64_t d : dims) {
    if (x.stride(d) != expected) return false;
    expected *= x.size(d);
  }
  return true;
}

inline void check_parameter(const char* op, const char* name, const Tensor& param, const Tensor& x) {
  // float16 and bfloat16 parameters (a module after .half()) are read in float64
  // like the others, and their gradients come back in their dtype.
  SQISH_CHECK_TYPE(is_floating(param.scalar_type()), op, ": ", name,
                   " must be a float64, float32, bfloat16 or float16 tensor, got ", param.scalar_type());
  SQISH_CHECK_RUNTIME(same_device(param, x), op, ": ", name, " is on ", error::device(param), " but x is on ",
                      error::device(x), "; move the parameters to x's device");
  SQISH_CHECK_VALUE(param.dim() <= 1, op, ": ", name,
                    " must be 0-dim (one value) or 1-D of size x.size(1) (per channel), got shape ",
                    error::shape(param));
  if (param.dim() == 1) {
    SQISH_CHECK_VALUE(x.dim() >= 2, op, ": per-channel ", name, " (shape ", error::shape(param),
                      ") needs x with a channel dimension (dim 1), but x has shape ", error::shape(x));
    SQISH_CHECK_VALUE(param.size(0) == x.size(1), op, ": per-channel ", name, " has ", param.size(0),
                      " values but x has ", x.size(1), " channels (x.size(1), x of shape ", error::shape(x),
                      ")");
  }
}

inline void check_input(const char* op, const Tensor& x) {
  SQISH_CHECK_TYPE(is_floating(x.scalar_type()), op, ": x must be float32, float64, bfloat16 or float16, got ",
                   x.scalar_type());
}

// x itself when it is dense (any stride order, such as channels_last: the output
// keeps it). A strided view (a slice, an expanded tensor) is copied once into the
// dense layout of the same dimension order, which is also what torch's pointwise
// ops give as their result.
inline Tensor dense_input(const Tensor& x) {
  if (is_non_overlapping_and_dense(x)) return x;
  Tensor dense = torch::stable::empty_like(x);
  torch::stable::copy_(dense, x);
  return dense;
}

// Validates the arguments and returns them in the form the kernels take.
inline Problem make_problem(const char* op, const Tensor& x, const Tensor& alpha, const Tensor& beta,
                            const Tensor& gamma) {
  check_input(op, x);
  check_parameter(op, "alpha", alpha, x);
  check_parameter(op, "beta", beta, x);
  check_parameter(op, "gamma", gamma, x);
  const bool per_channel = alpha.dim() == 1 || beta.dim() == 1 || gamma.dim() == 1;
  Tensor dense = dense_input(x);
  const int64_t channels = per_channel ? x.size(1) : 1;
  const int64_t channel_stride = per_channel ? dense.stride(1) : 1;
  return {dense, {alpha}, {beta}, {gamma}, channels, channel_stride};
}

// The float overloads: the values are checked here, on the host, where they are.
inline Problem make_problem(const char* op, const Tensor& x, double alpha, double beta, double gamma) {
  check_input(op, x);
  SQISH_CHECK_VALUE(!(beta < 0), op, ": beta must be >= 0 (beta < 0 puts a pole on the real line), got ", beta);
  return {dense_input(x), {Tensor(), alpha}, {Tensor(), beta}, {Tensor(), gamma}, 1, 1};
}

// One parameter's gradient from column `column` of a (channels, 3) float64 table:
// summed over channels when the parameter is a single value shared by several.
// Always a fresh tensor: the outputs must not alias the table or each other.
inline Tensor parameter_grad(const Tensor& table, int64_t column, const Tensor& param) {
  const Tensor per_channel = torch::stable::select(table, 1, column);
  const bool shared = param.dim() == 0 && per_channel.size(0) > 1;
  const Tensor grad = shared ? torch::stable::sum(per_channel)
                             : torch::stable::reshape(per_channel, param.sizes());
  return torch::stable::to(grad, param.scalar_type(), std::nullopt, std::nullopt, std::nullopt,
                           /*non_blocking=*/false, /*copy=*/true);
}

}  // namespace detail

// ∂L/∂α, ∂L/∂β, ∂L/∂γ, each in its parameter's shape and dtype, on x's device.
struct ParameterGradients {
  Tensor alpha, beta, gamma;
};

// The gradients from a (channels, 3) float64 table of per-channel ones on x's device
// (a backend that cannot write them directly, e.g. from device memory).
inline ParameterGradients parameter_gradients_from_table(const Tensor& table, const Problem& problem) {
  return {detail::parameter_grad(table, 0, problem.alpha.tensor), detail::parameter_grad(table, 1, problem.beta.tensor),
          detail::parameter_grad(table, 2, problem.gamma.tensor)};
}

namespace detail {

// An uninitialised tensor of these sizes and strides, with dtype_of's dtype, on
// device_of's device. One shim call: torch::stable::empty_like and new_empty go
// through the boxed dispatcher, which costs more than a small input's kernel.
inline Tensor empty_strided(torch::headeronly::IntHeaderOnlyArrayRef sizes,
                            torch::headeronly::IntHeaderOnlyArrayRef strides, const Tensor& dtype_of,
                            const Tensor& device_of) {
  int32_t dtype, device_type, device_index;
  TORCH_ERROR_CODE_CHECK(aoti_torch_get_dtype(dtype_of.get(), &dtype));
  TORCH_ERROR_CODE_CHECK(aoti_torch_get_device_type(device_of.get(), &device_type));
  TORCH_ERROR_CODE_CHECK(aoti_torch_get_device_index(device_of.get(), &device_index));
  AtenTensorHandle out;
  TORCH_ERROR_CODE_CHECK(aoti_torch_empty_strided(int64_t(sizes.size()), sizes.data(), strides.data(), dtype,
                                                  device_type, device_index, &out));
  return Tensor(out);
}

// Like dense x: its sizes, strides, dtype and device.
inline Tensor empty_like_dense(const Tensor& x) { return empty_strided(x.sizes(), x.strides(), x, x); }

// A parameter's gradient, uninitialised: its shape (contiguous) and dtype, on x's device.
inline Tensor empty_parameter_grad(const Tensor& param, const Tensor& x) {
  static constexpr int64_t kUnitStride[1] = {1};  // parameters have at most one dimension
  return empty_strided(param.sizes(), {kUnitStride, size_t(param.dim())}, param, x);
}

// grad_output checked against x and laid out like the dense input, as the
// kernels walk it in that memory order.
inline Tensor dense_grad_output(const char* op, const Tensor& grad_output, const Tensor& x, const Problem& problem) {
  SQISH_CHECK_VALUE(grad_output.sizes().equals(x.sizes()), op, ": grad_output has shape ", error::shape(grad_output),
                    " but x has shape ", error::shape(x));
  SQISH_CHECK_TYPE(grad_output.scalar_type() == x.scalar_type(), op, ": grad_output is ", grad_output.scalar_type(),
                   " but x is ", x.scalar_type());
  SQISH_CHECK_RUNTIME(same_device(grad_output, x), op, ": grad_output is on ", error::device(grad_output),
                      " but x is on ", error::device(x));
  if (grad_output.strides().equals(problem.x.strides())) return grad_output;
  Tensor grad = empty_like_dense(problem.x);
  torch::stable::copy_(grad, grad_output);
  return grad;
}

template <typename Kernels>
Tensor out_of_place(const Problem& problem) {
  Tensor out = empty_like_dense(problem.x);
  if (problem.x.numel() > 0) Kernels::launch_forward(problem, out);
  return out;
}

template <typename Kernels>
Tensor in_place(const Problem& problem, Tensor x) {
  if (problem.x.numel() > 0) Kernels::launch_forward(problem, problem.x);
  if (problem.x.get() != x.get()) torch::stable::copy_(x, problem.x);
  return x;
}

}  // namespace detail

// The ops, for a backend's kernels:
//   struct Kernels {
//     static void launch_forward(const Problem&, const Tensor& out);   // out may alias x
//     static void launch_backward(const Problem&, const Tensor& grad_output, const Tensor& grad_input,
//                                 ParameterGradients* param_grads);
//   };
// launch_backward writes grad_input and, when param_grads is not null, sets the three
// parameter gradients from the same pass. Kernels are called with at least one element.
// Each op has a tensor-parameter form and a float overload (library.cpp).
template <typename Kernels>
Tensor sqish_op(Tensor x, Tensor alpha, Tensor beta, Tensor gamma) {
  return detail::out_of_place<Kernels>(detail::make_problem("sqish", x, alpha, beta, gamma));
}

template <typename Kernels>
Tensor sqish_float_op(Tensor x, double alpha, double beta, double gamma) {
  return detail::out_of_place<Kernels>(detail::make_problem("sqish", x, alpha, beta, gamma));
}

template <typename Kernels>
Tensor sqish_inplace_op(Tensor x, Tensor alpha, Tensor beta, Tensor gamma) {
  return detail::in_place<Kernels>(detail::make_problem("sqish_", x, alpha, beta, gamma), x);
}

template <typename Kernels>
Tensor sqish_inplace_float_op(Tensor x, double alpha, double beta, double gamma) {
  return detail::in_place<Kernels>(detail::make_problem("sqish_", x, alpha, beta, gamma), x);
}

template <typename Kernels>
std::tuple<Tensor, Tensor, Tensor, Tensor> sqish_backward_op(Tensor grad_output, Tensor x, Tensor alpha,
                                                             Tensor beta, Tensor gamma,
                                                             bool compute_param_grads) {
  const Problem problem = detail::make_problem("sqish_backward", x, alpha, beta, gamma);
  const Tensor grad = detail::dense_grad_output("sqish_backward", grad_output, x, problem);
  const Tensor grad_input = detail::empty_like_dense(problem.x);
  if (!compute_param_grads) {
    if (problem.x.numel() > 0) Kernels::launch_backward(problem, grad, grad_input, nullptr);
    return {grad_input, Tensor(), Tensor(), Tensor()};
  }
  ParameterGradients grads;
  if (problem.x.numel() > 0) {
    Kernels::launch_backward(problem, grad, grad_input, &grads);
  } else {  // no elements: every gradient is 0
    auto zeros = [&](const Tensor& param) {
      return torch::stable::new_zeros(problem.x, param.sizes(), param.scalar_type());
    };
    grads = {zeros(alpha), zeros(beta), zeros(gamma)};
  }
  return {grad_input, grads.alpha, grads.beta, grads.gamma};
}

// Float parameters are constants, so only grad_input.
template <typename Kernels>
Tensor sqish_backward_float_op(Tensor grad_output, Tensor x, double alpha, double beta, double gamma) {
  const Problem problem = detail::make_problem("sqish_backward", x, alpha, beta, gamma);
  const Tensor grad = detail::dense_grad_output("sqish_backward", grad_output, x, problem);
  const Tensor grad_input = detail::empty_like_dense(problem.x);
  if (problem.x.numel() > 0) Kernels::launch_backward(problem, grad, grad_input, nullptr);
  return grad_input;
}

}  // namespace sqish

// Registers a backend's kernels for every op of library.cpp (STABLE_TORCH_LIBRARY_IMPL body).
#define SQISH_REGISTER_KERNELS(m, Kernels)                                          \
  m.impl("sqish", TORCH_BOX(&::sqish::sqish_op<Kernels>));                          \
  m.impl("sqish.float", TORCH_BOX(&::sqish::sqish_float_op<Kernels>));              \
  m.impl("sqish_", TORCH_BOX(&::sqish::sqish_inplace_op<Kernels>));                 \
  m.impl("sqish_.float", TORCH_BOX(&::sqish::sqish_inplace_float_op<Kernels>));     \
  m.impl("sqish_backward", TORCH_BOX(&::sqish::sqish_backward_op<Kernels>));        \
  m.impl("sqish_backward.float", TORCH_BOX(&::sqish::sqish_backward_float_op<Kernels>))

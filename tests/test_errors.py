"""Bad input raises an error that names the problem; it never crashes or guesses."""
import pytest
import torch

import sqish_ext

OK = dict(alpha=0.01, beta=1.0, gamma=1.0)


def scalar_params(device="cpu", dtype=torch.float32):
    return [torch.tensor(v, device=device, dtype=dtype) for v in OK.values()]


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.uint8, torch.bool, torch.complex64])
def test_non_floating_input_is_a_type_error_naming_the_dtype(dtype):
    x = torch.zeros(4, dtype=dtype)
    with pytest.raises(TypeError, match=r"x must be float32, float64, bfloat16 or float16, got"):
        sqish_ext.sqish(x)


@pytest.mark.parametrize("name", ["alpha", "beta", "gamma"])
@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64])
def test_parameter_tensor_of_a_non_floating_dtype_is_a_type_error(name, dtype):
    params = dict(zip(OK, scalar_params()))
    params[name] = torch.tensor(1, dtype=dtype)
    with pytest.raises(TypeError, match=f"{name} must be a float64, float32, bfloat16 or float16 tensor"):
        sqish_ext.sqish(torch.randn(2, 3), **params)


@pytest.mark.parametrize("value", ["0.1", None, [0.1], True])
def test_parameter_that_is_not_a_number_or_tensor_is_a_type_error(value):
    with pytest.raises(TypeError, match="alpha must be a float or a tensor"):
        sqish_ext.sqish(torch.randn(3), alpha=value)


def test_non_tensor_input_is_a_type_error():
    with pytest.raises(TypeError, match="x must be a tensor"):
        sqish_ext.sqish([1.0, 2.0])


def test_two_dimensional_parameter_is_a_value_error():
    with pytest.raises(ValueError, match=r"gamma must be 0-dim .* or 1-D .* got shape \[3, 1\]"):
        sqish_ext.sqish(torch.randn(2, 3), gamma=torch.ones(3, 1))


def test_per_channel_size_mismatch_is_a_value_error_naming_both_sizes():
    with pytest.raises(ValueError, match=r"per-channel alpha has 4 values but x has 3 channels"):
        sqish_ext.sqish(torch.randn(2, 3, 5), alpha=torch.full((4,), 0.1))


def test_per_channel_parameter_on_a_1d_input_is_a_value_error():
    with pytest.raises(ValueError, match=r"per-channel beta .* needs x with a channel dimension"):
        sqish_ext.sqish(torch.randn(3), beta=torch.ones(3))


def test_negative_python_beta_is_a_value_error():
    with pytest.raises(ValueError, match="beta must be >= 0"):
        sqish_ext.sqish(torch.randn(3), beta=-0.5)


def test_negative_tensor_beta_gives_nan_everywhere_not_a_finite_value(device):
    # Checking a tensor's values would synchronise with the device; the contract
    # (docs/api.md) is NaN in every output and gradient, never a plausible number.
    x = torch.linspace(-4, 4, 9, device=device).reshape(1, 9).requires_grad_()
    beta = torch.full((9,), -0.5, device=device, requires_grad=True)
    y = sqish_ext.sqish(x, 0.1, beta, 1.0)
    y.sum().backward()
    assert y.isnan().all() and x.grad.isnan().all() and beta.grad.isnan().all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device for a second device")
def test_parameter_on_another_device_is_a_runtime_error_naming_both():
    x = torch.randn(4, device="cuda")
    with pytest.raises(RuntimeError, match=r"alpha is on cpu but x is on cuda"):
        torch.ops.sqish.sqish(x, torch.tensor(0.1), *scalar_params("cuda")[1:])


# torch.ops.sqish.* are stable-ABI ops, whose C++ exceptions all reach Python as
# RuntimeError; their messages end with the type they stand for, which the
# functional API and the module raise (sqish_ext/_errors.py).
def test_backward_op_with_mismatched_grad_shape_names_both_shapes_and_tags_a_value_error():
    x = torch.randn(2, 3)
    with pytest.raises(RuntimeError, match=r"grad_output has shape \[3, 2\] but x has shape \[2, 3\] \[ValueError\]$"):
        torch.ops.sqish.sqish_backward(torch.randn(3, 2), x, *scalar_params(), True)


def test_backward_op_with_mismatched_grad_dtype_names_both_dtypes_and_tags_a_type_error():
    x = torch.randn(2, 3)
    with pytest.raises(RuntimeError, match=r"grad_output is Double but x is Float \[TypeError\]$"):
        torch.ops.sqish.sqish_backward(x.double(), x, *scalar_params(), True)


def test_module_raises_the_ops_typed_errors():
    with pytest.raises(TypeError, match=r"^sqish: x must be float32, float64, bfloat16 or float16, got Int$"):
        sqish_ext.Sqish()(torch.zeros(3, dtype=torch.int32))


def test_untagged_op_errors_stay_runtime_errors(monkeypatch):
    error = RuntimeError("sqish: something else")
    assert sqish_ext._errors.typed(error) is error


def test_module_with_non_positive_num_parameters_is_a_value_error():
    with pytest.raises(ValueError, match="num_parameters must be a positive int"):
        sqish_ext.Sqish(num_parameters=0)


def test_module_with_negative_beta_is_a_value_error():
    with pytest.raises(ValueError, match="beta must be >= 0"):
        sqish_ext.Sqish(beta=-1.0)

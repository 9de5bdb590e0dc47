"""Sample builders for checking the ops: random parameters in Sqish's usual range,
and the samples torch.library.opcheck runs on a device. The tests and the GPU check
(bench/bench_gpu.py, which also runs where pytest is not installed) share them."""
import torch


def make_params(channels, per_channel, dtypes=(torch.float32,) * 3, device="cuda", requires_grad=False):
    """alpha ∈ [0, 0.3], beta ∈ [0.5, 2], gamma ∈ [0.5, 2]; per_channel is a triple
    of flags, so parameters can mix shapes (and dtypes)."""
    ranges = ((0.0, 0.3), (0.5, 2.0), (0.5, 2.0))
    params = []
    for (low, high), dtype, each in zip(ranges, dtypes, per_channel):
        shape = (channels,) if each else ()
        p = torch.empty(shape, dtype=torch.float64).uniform_(low, high).to(device=device, dtype=dtype)
        params.append(p.requires_grad_(requires_grad))
    return params


ALL_OPCHECKS = ("test_schema", "test_autograd_registration", "test_faketensor", "test_aot_dispatch_dynamic")
# AOT dispatch cannot functionalize a custom op that returns an alias of its
# input, as sqish_ (Tensor(a!) -> Tensor(a!)) does.
INPLACE_OPCHECKS = ALL_OPCHECKS[:3]


def opcheck_samples(device="cuda"):
    """(op, args, test_utils) on device for torch.library.opcheck: every op, scalar
    and per-channel parameters, contiguous and channels_last, with and without grad."""
    samples = []
    for shape, per_channel, memory_format in [
        ((37,), (False,) * 3, torch.contiguous_format),
        ((2, 3, 5, 4), (True,) * 3, torch.contiguous_format),
        ((2, 8, 3, 4), (True, False, True), torch.channels_last),
        ((6, 16), (True,) * 3, torch.contiguous_format),
    ]:
        channels = shape[1] if len(shape) > 1 else 1

        def sample_x():
            return torch.randn(shape, device=device).contiguous(memory_format=memory_format)

        for requires_grad in (False, True):
            params = make_params(channels, per_channel, device=device, requires_grad=requires_grad)
            samples.append((torch.ops.sqish.sqish.default, (sample_x().requires_grad_(requires_grad), *params),
                            ALL_OPCHECKS))
        x, params = sample_x(), make_params(channels, per_channel, device=device)
        for compute_param_grads in (False, True):
            samples.append((torch.ops.sqish.sqish_backward.default,
                            (torch.randn_like(x), x, *params, compute_param_grads), ALL_OPCHECKS))
        samples.append((torch.ops.sqish.sqish_.default, (sample_x(), *params), INPLACE_OPCHECKS))
    return samples

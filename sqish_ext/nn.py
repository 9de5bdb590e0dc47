"""The Sqish module."""
import torch

from sqish_ext.ops import DEFAULT_ALPHA, DEFAULT_BETA, DEFAULT_GAMMA, parameter_number, sqish

_NAMES = ("alpha", "beta", "gamma")


class Sqish(torch.nn.Module):
    """Sqish activation, f(x) = αx + (1−α)x / (1 + β·e^(−2γ(1−α)x)).

    learnable=True makes alpha, gamma and log_beta nn.Parameters (float32): β is
    trained as ln β, so it stays > 0 whatever step the optimizer takes (β ≤ 0 puts a
    pole on the real line), and a step moves it by a factor rather than an amount.
    m.beta reads e^log_beta (a tensor in the graph, so assigning to it or to its
    .data changes nothing: set log_beta). Fixed values are
    floats, as torch's activations keep theirs (passed to the kernels by value, and
    unchanged by .half() or .to()), or buffers when there is one per channel.
    num_parameters=1 gives one value each (shape ()); num_parameters=C gives one per
    channel (shape (C,), broadcast along dim 1 like nn.PReLU). inplace=True (as in
    torch's activations, and as timm and torchvision build them) may overwrite the
    input: it does when autograd does not record the call, else it computes out of
    place, since the backward needs the input.
    """

    def __init__(self, alpha=DEFAULT_ALPHA, beta=DEFAULT_BETA, gamma=DEFAULT_GAMMA,
                 learnable=False, num_parameters=1, inplace=False):
        super().__init__()
        if isinstance(num_parameters, bool) or not isinstance(num_parameters, int) or num_parameters < 1:
            raise ValueError(f"Sqish: num_parameters must be a positive int, got {num_parameters!r}")
        self.learnable = learnable
        self.num_parameters = num_parameters
        self.inplace = inplace
        shape = () if num_parameters == 1 else (num_parameters,)
        for name, value in zip(_NAMES, (alpha, beta, gamma)):
            initial = value.detach() if isinstance(value, torch.Tensor) else parameter_number(name, value)
            if self._holds_floats():
                setattr(self, name, float(initial))
                continue
            tensor = torch.empty(shape, dtype=torch.float32).copy_(torch.as_tensor(initial))
            if learnable and name == "beta":
                if not (tensor > 0).all():
                    raise ValueError(f"Sqish: a learnable beta must be > 0 (it is trained as ln beta), got {value}")
                self.register_parameter("log_beta", torch.nn.Parameter(tensor.log()))
            elif learnable:
                self.register_parameter(name, torch.nn.Parameter(tensor))
            else:
                self.register_buffer(name, tensor)

    def _holds_floats(self):
        return not self.learnable and self.num_parameters == 1

    def forward(self, x):
        if hasattr(self, "log_beta"):  # resolved when TorchScript compiles, so each module compiles one branch
            return sqish(x, self.alpha, self.log_beta.exp(), self.gamma, self.inplace)
        return sqish(x, self.alpha, self.beta, self.gamma, self.inplace)

    def __getattr__(self, name):
        if name == "beta" and "log_beta" in self._parameters:
            return self._parameters["log_beta"].exp()
        return super().__getattr__(name)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        # Fixed single values were buffers before they were floats: such state dicts
        # still load, their values becoming the floats.
        if self._holds_floats():
            for name in _NAMES:
                if prefix + name in state_dict:
                    setattr(self, name, float(state_dict.pop(prefix + name)))
        # A learnable beta was trained as itself before it was trained as ln beta.
        if "log_beta" in self._parameters and prefix + "beta" in state_dict:
            beta = state_dict.pop(prefix + "beta")
            if (beta > 0).all():
                state_dict[prefix + "log_beta"] = beta.log()
            else:
                error_msgs.append(f"{prefix}beta has values <= 0, which a learnable Sqish cannot hold "
                                  f"(it trains ln beta; beta <= 0 puts a pole on the real line)")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    def extra_repr(self):
        def show(t):
            if isinstance(t, float):
                return f"{t:g}"
            low, high = t.min().item(), t.max().item()
            return f"{low:g}" if low == high else f"[{low:g}..{high:g}]"

        return (f"alpha={show(self.alpha)}, beta={show(self.beta)}, gamma={show(self.gamma)}, "
                f"learnable={self.learnable}, num_parameters={self.num_parameters}"
                + (", inplace=True" if self.inplace else ""))

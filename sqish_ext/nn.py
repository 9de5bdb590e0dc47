"""The Sqish module."""
import torch

from sqish_ext.ops import DEFAULT_ALPHA, DEFAULT_BETA, DEFAULT_GAMMA, as_parameter_tensor, call_op


class Sqish(torch.nn.Module):
    """Sqish activation, f(x) = αx + (1−α)x / (1 + β·e^(−2γ(1−α)x)).

    learnable=True makes alpha, beta, gamma nn.Parameters (float32); otherwise they
    are buffers. num_parameters=1 gives one value each (shape ()); num_parameters=C
    gives one per channel (shape (C,), broadcast along dim 1 like nn.PReLU).
    """

    def __init__(self, alpha=DEFAULT_ALPHA, beta=DEFAULT_BETA, gamma=DEFAULT_GAMMA,
                 learnable=False, num_parameters=1):
        super().__init__()
        if isinstance(num_parameters, bool) or not isinstance(num_parameters, int) or num_parameters < 1:
            raise ValueError(f"Sqish: num_parameters must be a positive int, got {num_parameters!r}")
        self.learnable = learnable
        self.num_parameters = num_parameters
        shape = () if num_parameters == 1 else (num_parameters,)
        for name, value in (("alpha", alpha), ("beta", beta), ("gamma", gamma)):
            initial = as_parameter_tensor(name, value, "cpu").detach()
            tensor = torch.empty(shape, dtype=torch.float32).copy_(initial)
            if learnable:
                self.register_parameter(name, torch.nn.Parameter(tensor))
            else:
                self.register_buffer(name, tensor)

    def forward(self, x):
        return call_op("sqish", x, self.alpha, self.beta, self.gamma)

    def extra_repr(self):
        def show(t):
            low, high = t.min().item(), t.max().item()
            return f"{low:g}" if low == high else f"[{low:g}..{high:g}]"

        return (f"alpha={show(self.alpha)}, beta={show(self.beta)}, gamma={show(self.gamma)}, "
                f"learnable={self.learnable}, num_parameters={self.num_parameters}")

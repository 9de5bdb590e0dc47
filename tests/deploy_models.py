"""Models shared by the deployment tests: a small conv net with Sqish in each
configuration a user can save, with parameters moved off their defaults so that a
route which lost them would show."""
import torch

import sqish_ext

CHANNELS = 3

# (learnable, num_parameters) for scalar/per-channel, fixed/learnable.
CONFIGS = [(False, 1), (True, 1), (False, CHANNELS), (True, CHANNELS)]
CONFIG_IDS = ["fixed-scalar", "learnable-scalar", "fixed-per-channel", "learnable-per-channel"]


class ConvSqish(torch.nn.Module):
    def __init__(self, learnable, num_parameters):
        super().__init__()
        self.conv = torch.nn.Conv2d(CHANNELS, CHANNELS, 3, padding=1)
        self.act = sqish_ext.Sqish(alpha=0.1, beta=0.5, gamma=1.5, learnable=learnable,
                                   num_parameters=num_parameters)
        if num_parameters > 1:
            # Every parameter different on each channel: a route that broadcast one
            # along the wrong axis, or dropped one, would show.
            betas = torch.linspace(0.25, 2.0, num_parameters)
            with torch.no_grad():
                self.act.alpha.copy_(torch.linspace(0.0, 0.3, num_parameters))
                self.act.gamma.copy_(torch.linspace(0.5, 2.0, num_parameters))
                if learnable:
                    self.act.log_beta.copy_(betas.log())
                else:
                    self.act.beta.copy_(betas)

    def forward(self, x):
        return self.act(self.conv(x))


def make_model(learnable, num_parameters):
    torch.manual_seed(0)
    return ConvSqish(learnable, num_parameters).eval()


def ramp(n, c, h, w):
    """The input sqish_infer feeds a model: arange(N*C*H*W) / (N*C*H*W) * 8 - 4."""
    numel = n * c * h * w
    return (torch.arange(numel, dtype=torch.float32).reshape(n, c, h, w) / numel) * 8 - 4

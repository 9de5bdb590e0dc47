"""Sqish activation for PyTorch: f(x) = αx + (1−α)x / (1 + β·e^(−2γ(1−α)x)).

The ops live in the compiled library as torch.ops.sqish.{sqish, sqish_, sqish_backward};
this package adds their autograd and fake-tensor rules and a friendly API.
"""
from sqish_ext import _library

#: Why the CUDA kernels are off (a CPU-only build, or a torch without CUDA or with
#: another CUDA major), or None when they are loaded. CUDA tensors get this text.
CUDA_KERNELS_OFF = _library.load()

from sqish_ext.ops import refuse_cuda, sqish, sqish_  # noqa: E402
from sqish_ext.nn import Sqish  # noqa: E402
from sqish_ext.replace import replace_activations  # noqa: E402
from sqish_ext import distributed  # noqa: E402,F401  (DTensor sharding rules, registered lazily)

if CUDA_KERNELS_OFF is not None:
    refuse_cuda(CUDA_KERNELS_OFF)

__all__ = ["sqish", "sqish_", "Sqish", "replace_activations", "CUDA_KERNELS_OFF"]
__version__ = "0.1.0"

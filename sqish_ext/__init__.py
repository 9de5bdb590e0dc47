"""Sqish activation for PyTorch: f(x) = αx + (1−α)x / (1 + β·e^(−2γ(1−α)x)).

The ops live in the compiled library as torch.ops.sqish.{sqish, sqish_, sqish_backward};
this package adds their autograd and fake-tensor rules and a friendly API.
"""
from sqish_ext import _library

_library.load()

from sqish_ext.ops import sqish, sqish_  # noqa: E402
from sqish_ext.nn import Sqish  # noqa: E402
from sqish_ext.integration import replace_activations  # noqa: E402

__all__ = ["sqish", "sqish_", "Sqish", "replace_activations"]
__version__ = "0.1.0"

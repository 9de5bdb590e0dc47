"""Typed errors from the compiled ops.

The ops are built on the LibTorch stable ABI, which carries every C++ exception to
Python as RuntimeError. Their argument checks (csrc/sqish_op.h) end the message
with the Python type it stands for, " [TypeError]" or " [ValueError]"; the
functional API and the module raise that type with the message before the tag.
Calls of torch.ops.sqish.* itself raise RuntimeError with the tagged message.
"""
import re

_TAG = re.compile(r" \[(TypeError|ValueError)\]$")
_TYPES = {"TypeError": TypeError, "ValueError": ValueError}


def typed(error: RuntimeError) -> Exception:
    """The exception to raise for a RuntimeError from a sqish op."""
    message = str(error)
    match = _TAG.search(message)
    if match is None:
        return error
    return _TYPES[match.group(1)](message[: match.start()])

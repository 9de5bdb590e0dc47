"""Loads the compiled modules, explaining how to fix the usual failures.

sqish_ext._C holds the op schemas and the CPU kernels; it is built on the LibTorch
stable ABI, so it runs with the torch it targets and every later one.
sqish_ext._cuda holds the CUDA kernels; it is loaded only when torch uses CUDA of
the major version it was built with. Otherwise the CPU kernels still run, and
CUDA_KERNELS_OFF says why the CUDA ones do not (CUDA tensors get that text too).
"""
import importlib
import re
from typing import Optional

import torch

REBUILD = "rebuild it with `pip install --no-build-isolation -e .` in the sqish-ext checkout (see README)"


def version_tuple(version: str):
    """(major, minor) of a version string such as '2.10.0+cu128' or '13.0'."""
    match = re.match(r"(\d+)\.(\d+)", version)
    return (int(match.group(1)), int(match.group(2))) if match else (0, 0)


def _build_info():
    try:
        return importlib.import_module("sqish_ext._build_info")
    except ImportError:
        return None


def load() -> Optional[str]:
    """Loads _C (raising ImportError with the fix if it cannot), then _cuda if it
    fits this torch. Returns why the CUDA kernels are off, or None when they are on."""
    build_info = _build_info()
    if build_info is not None and version_tuple(torch.__version__) < version_tuple(build_info.TORCH_TARGET_VERSION):
        raise ImportError(
            f"sqish_ext needs torch >= {build_info.TORCH_TARGET_VERSION}, but torch {torch.__version__} is "
            f"installed: upgrade torch (pip install 'torch>={build_info.TORCH_TARGET_VERSION}')"
        )
    try:
        importlib.import_module("sqish_ext._C")
    except ImportError as error:
        raise ImportError(
            f"sqish_ext's compiled library sqish_ext._C failed to load with torch {torch.__version__}: "
            f"{error}. It is missing or broken; {REBUILD}"
        ) from error
    return _load_cuda(build_info)


def _load_cuda(build_info) -> Optional[str]:
    built_cuda = build_info.CUDA_VERSION if build_info is not None else None
    if built_cuda is None:
        return "this build of sqish_ext has no CUDA kernels (it was built without a CUDA toolkit)"
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a build without CUDA"
    if version_tuple(torch.version.cuda)[0] != version_tuple(built_cuda)[0]:
        return (f"sqish_ext's CUDA kernels were built for CUDA {built_cuda}, but torch {torch.__version__} "
                f"uses CUDA {torch.version.cuda}; install a sqish_ext wheel for CUDA "
                f"{version_tuple(torch.version.cuda)[0]}, or {REBUILD}")
    try:
        importlib.import_module("sqish_ext._cuda")
    except ImportError as error:
        return f"sqish_ext._cuda failed to load with torch {torch.__version__}: {error}"
    return None

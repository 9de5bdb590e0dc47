"""Loads the compiled op library, explaining how to fix the usual failures."""
import importlib

import torch

REBUILD = "rebuild it with `pip install --no-build-isolation -e .` in the sqish-ext checkout (see README)"


def load():
    try:
        build_info = importlib.import_module("sqish_ext._build_info")
    except ImportError:
        build_info = None
    if build_info is not None and build_info.TORCH_VERSION != torch.__version__:
        raise ImportError(
            f"sqish_ext._C was built against torch {build_info.TORCH_VERSION}, but torch "
            f"{torch.__version__} is installed; the C++ ABI ties the two: {REBUILD}"
        )
    try:
        importlib.import_module("sqish_ext._C")
    except ImportError as error:
        built = f" (built against torch {build_info.TORCH_VERSION})" if build_info else ""
        raise ImportError(
            f"sqish_ext's compiled library sqish_ext._C{built} failed to load with torch "
            f"{torch.__version__}: {error}. It is missing or was built for another torch; {REBUILD}"
        ) from error

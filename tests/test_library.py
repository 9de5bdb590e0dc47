"""Loading the compiled library: a missing or mismatched build says how to fix it."""
import importlib
import re
import sys
import types

import pytest
import torch

import sqish_ext
from sqish_ext import _library


def build_info(target="2.10", cuda=None):
    info = types.ModuleType("sqish_ext._build_info")
    info.TORCH_TARGET_VERSION, info.CUDA_VERSION = target, cuda
    return info


def test_torch_older_than_the_target_is_an_import_error_naming_both_versions(monkeypatch):
    monkeypatch.setitem(sys.modules, "sqish_ext._build_info", build_info(target="99.0"))
    with pytest.raises(ImportError, match=rf"needs torch >= 99\.0, but torch {re.escape(torch.__version__)} is installed"):
        _library.load()


def test_build_without_cuda_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, "sqish_ext._build_info", build_info(cuda=None))
    assert "built without a CUDA toolkit" in _library.load()


def test_torch_without_cuda_turns_the_cuda_kernels_off_and_says_why(monkeypatch):
    monkeypatch.setitem(sys.modules, "sqish_ext._build_info", build_info(cuda="13.0"))
    monkeypatch.setattr(torch.version, "cuda", None)
    assert _library.load() == f"torch {torch.__version__} is a build without CUDA"


def test_torch_with_another_cuda_major_turns_the_cuda_kernels_off_naming_both(monkeypatch):
    monkeypatch.setitem(sys.modules, "sqish_ext._build_info", build_info(cuda="13.0"))
    monkeypatch.setattr(torch.version, "cuda", "12.8")
    assert re.search(r"built for CUDA 13\.0, but torch .* uses CUDA 12\.8; install a sqish_ext wheel for CUDA 12",
                     _library.load())


def test_cuda_kernels_off_is_none_exactly_when_the_cuda_kernels_are_registered():
    registered = torch._C._dispatch_has_kernel_for_dispatch_key("sqish::sqish", "CUDA")
    loaded = "sqish_ext._cuda" in sys.modules
    assert (sqish_ext.CUDA_KERNELS_OFF is None) == loaded
    assert registered  # the compiled kernels, or the refusal that explains why they are off


def test_missing_library_says_it_failed_to_load_and_how_to_rebuild(monkeypatch):
    real_import = importlib.import_module

    def import_module(name, *args):
        if name == "sqish_ext._C":
            raise ImportError("No module named 'sqish_ext._C'")
        return real_import(name, *args)

    monkeypatch.setattr(importlib, "import_module", import_module)
    with pytest.raises(ImportError, match=r"sqish_ext\._C.*failed to load.*No module named.*rebuild it with"):
        _library.load()


def test_ops_are_registered_for_the_cpu():
    for op in ("sqish::sqish", "sqish::sqish_", "sqish::sqish_backward"):
        assert torch._C._dispatch_has_kernel_for_dispatch_key(op, "CPU"), op

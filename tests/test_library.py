"""Loading the compiled library: a missing or mismatched build says how to fix it."""
import importlib
import re
import sys
import types

import pytest
import torch

from sqish_ext import _library


def test_library_built_against_another_torch_names_both_versions_and_the_rebuild(monkeypatch):
    build_info = types.ModuleType("sqish_ext._build_info")
    build_info.TORCH_VERSION = "1.0.0"
    monkeypatch.setitem(sys.modules, "sqish_ext._build_info", build_info)
    with pytest.raises(ImportError, match=rf"built against torch 1\.0\.0, but torch {re.escape(torch.__version__)}.*"
                                          r"pip install --no-build-isolation -e \."):
        _library.load()


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

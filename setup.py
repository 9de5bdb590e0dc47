"""Builds sqish_ext's two compiled modules on the LibTorch stable ABI, so that one
abi3 wheel serves every torch from build.json's torch_target_version on:

  sqish_ext._C     the op schemas and the CPU kernels, once per x86-64 level
  sqish_ext._cuda  the CUDA kernels, whenever a CUDA toolkit is found

Flags, levels and CUDA architectures come from build.json (CMakeLists.txt reads it too).

Environment:
  SQISH_CPU_ONLY=1        build without CUDA even when a toolkit is present.
  CUDA_HOME               the CUDA toolkit's root; found from nvcc when unset.
  TORCH_CUDA_ARCH_LIST    CUDA architectures; default build.json's cuda_archs.
"""
import json
import os
import platform
import shutil
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent
BUILD = json.loads((ROOT / "build.json").read_text())
# abi3 from this CPython on; Py_LIMITED_API is set to match by torch's BuildExtension.
PY_LIMITED_API = "cp310"


def find_cuda_home():
    """The toolkit root, or None. torch guesses it as nvcc's grandparent folder,
    which is wrong when nvcc on PATH is a wrapper script; check for the headers."""
    for candidate in (os.environ.get("CUDA_HOME"), os.environ.get("CUDA_PATH")):
        if candidate:
            return candidate
    nvcc = shutil.which("nvcc")
    guesses = [Path(nvcc).resolve().parent.parent] if nvcc else []
    guesses.append(Path("/usr/local/cuda").resolve())
    for guess in guesses:
        if (guess / "include" / "cuda_runtime.h").exists() and (guess / "bin" / "nvcc").exists():
            return str(guess)
    return None


WITH_CUDA = os.environ.get("SQISH_CPU_ONLY", "0") != "1" and find_cuda_home() is not None
if WITH_CUDA:
    os.environ["CUDA_HOME"] = find_cuda_home()
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", BUILD["cuda_archs"])

import torch  # noqa: E402  (CUDA_HOME must be set before cpp_extension reads it)
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402

IS_X86 = platform.machine().lower() in ("x86_64", "amd64")
LEVELS = BUILD["x86_levels"] if IS_X86 else BUILD["x86_levels"][:1]


def torch_target_macro():
    """-DTORCH_TARGET_VERSION for build.json's target, e.g. 2.10 -> 0x020a000000000000."""
    major, minor = (int(part) for part in BUILD["torch_target_version"].split("."))
    return ("TORCH_TARGET_VERSION", f"0x{major:02x}{minor:02x}000000000000")


COMMON_MACROS = [torch_target_macro(), ("SQISH_PYTHON_MODULE", None)]


class BuildWithCpuLevels(BuildExtension):
    """Compiles csrc/cpu/kernels.cpp once per x86-64 level, each with its own flags
    and SQISH_CPU_LEVEL, and links all of them into sqish_ext._C."""

    def build_extension(self, ext):
        if ext.name == "sqish_ext._C":
            for level in LEVELS:
                objects = self.compiler.compile(
                    ["csrc/cpu/kernels.cpp"],
                    output_dir=os.path.join(self.build_temp, f"cpu_{level['name']}"),
                    macros=[torch_target_macro(), ("SQISH_CPU_LEVEL", f"level_{level['name']}")],
                    include_dirs=ext.include_dirs,
                    extra_postargs=BUILD["cxx_flags"] + BUILD["cpu_kernel_flags"] + level["flags"],
                )
                ext.extra_objects.extend(objects)
        super().build_extension(ext)


def build_info_module():
    """Records what the modules were built for, so that import can explain a mismatch."""
    text = (
        '"""Written by setup.py: what sqish_ext\'s compiled modules were built for."""\n'
        f"TORCH_TARGET_VERSION = {BUILD['torch_target_version']!r}\n"
        f"BUILT_WITH_TORCH = {torch.__version__!r}\n"
        f"CUDA_VERSION = {torch.version.cuda if WITH_CUDA else None!r}\n"
        f"CUDA_ARCH_LIST = {os.environ.get('TORCH_CUDA_ARCH_LIST') if WITH_CUDA else None!r}\n"
    )
    (ROOT / "sqish_ext" / "_build_info.py").write_text(text)


def extensions():
    level_macros = [(f"SQISH_CPU_WITH_{level['name'].upper()}", None) for level in LEVELS[1:]]
    modules = [
        CppExtension(
            name="sqish_ext._C",
            sources=["csrc/library.cpp", "csrc/cpu/dispatch.cpp"],
            define_macros=COMMON_MACROS + level_macros,
            extra_compile_args={"cxx": BUILD["cxx_flags"]},
            py_limited_api=True,
        )
    ]
    if WITH_CUDA:
        modules.append(
            CUDAExtension(
                name="sqish_ext._cuda",
                sources=["csrc/cuda/kernels.cu"],
                define_macros=COMMON_MACROS + [("USE_CUDA", None)],
                extra_compile_args={"cxx": BUILD["cxx_flags"], "nvcc": BUILD["nvcc_flags"]},
                py_limited_api=True,
            )
        )
    return modules


build_info_module()
setup(
    ext_modules=extensions(),
    cmdclass={"build_ext": BuildWithCpuLevels},
    options={"bdist_wheel": {"py_limited_api": PY_LIMITED_API}},
)

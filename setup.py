"""Builds sqish_ext._C: the Sqish ops with CPU kernels for several x86-64 levels
and, whenever a CUDA toolkit is found, CUDA kernels.

Environment:
  SQISH_CPU_ONLY=1        build without CUDA even when a toolkit is present.
  CUDA_HOME               the CUDA toolkit's root; found from nvcc when unset.
  TORCH_CUDA_ARCH_LIST    CUDA architectures; default RELEASE_CUDA_ARCHS below.
"""
import os
import platform
import shutil
import sys
from pathlib import Path

from setuptools import setup

ROOT = Path(__file__).parent
# Turing through Blackwell, plus PTX so that later chips can JIT-compile.
RELEASE_CUDA_ARCHS = "7.5;8.0;8.6;8.9;9.0;10.0;12.0+PTX"
# x86-64 levels of the CPU kernel: (name, CPU_CAPABILITY, extra compiler flags).
X86_LEVELS = [
    ("default", "DEFAULT", []),
    ("avx2", "AVX2", ["-mavx2", "-mfma", "-mf16c"]),
    ("avx512", "AVX512", ["-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c"]),
]


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
    os.environ.setdefault("TORCH_CUDA_ARCH_LIST", RELEASE_CUDA_ARCHS)

import torch  # noqa: E402  (CUDA_HOME must be set before cpp_extension reads it)
from torch.utils.cpp_extension import BuildExtension, CppExtension, CUDAExtension  # noqa: E402

IS_X86 = platform.machine().lower() in ("x86_64", "amd64")
# -fopenmp: at::parallel_for is inline and runs serially unless compiled with
# OpenMP; the library then uses the libgomp that torch itself loads.
CXX_FLAGS = ["-O3", "-fvisibility=hidden", "-fopenmp"]
LINK_FLAGS = ["-fopenmp"]
NVCC_FLAGS = ["-O3", "--expt-relaxed-constexpr"]


class BuildWithCpuLevels(BuildExtension):
    """Compiles csrc/cpu/sqish_cpu.cpp once per x86-64 level, each with its own
    flags and CPU_CAPABILITY, and links all of them into the extension."""

    def build_extension(self, ext):
        levels = X86_LEVELS if IS_X86 else X86_LEVELS[:1]
        cxx_flags = ext.extra_compile_args["cxx"] if isinstance(ext.extra_compile_args, dict) else ext.extra_compile_args
        for name, capability, flags in levels:
            macros = [("CPU_CAPABILITY", capability), (f"CPU_CAPABILITY_{capability}", None)]
            if name == "default":
                macros.append(("SQISH_CPU_DISPATCH", None))
                macros += [(f"SQISH_CPU_{c}", None) for _, c, _ in levels[1:]]
            objects = self.compiler.compile(
                ["csrc/cpu/sqish_cpu.cpp"],
                output_dir=os.path.join(self.build_temp, f"cpu_{name}"),
                macros=macros,
                include_dirs=ext.include_dirs,
                extra_postargs={"cxx": cxx_flags + flags, "nvcc": []},
            )
            ext.extra_objects.extend(objects)
        super().build_extension(ext)


def build_info_module():
    """Records what _C was built against, so that import can explain a mismatch."""
    text = (
        '"""Written by setup.py: what sqish_ext._C was built against."""\n'
        f"TORCH_VERSION = {torch.__version__!r}\n"
        f"CUDA_VERSION = {torch.version.cuda if WITH_CUDA else None!r}\n"
        f"CUDA_ARCH_LIST = {os.environ.get('TORCH_CUDA_ARCH_LIST') if WITH_CUDA else None!r}\n"
    )
    (ROOT / "sqish_ext" / "_build_info.py").write_text(text)


def extension():
    macros = [("SQISH_PYTHON_MODULE", None)]
    sources = ["csrc/sqish.cpp"]
    kwargs = dict(name="sqish_ext._C", define_macros=macros, extra_link_args=LINK_FLAGS, py_limited_api=False)
    if WITH_CUDA:
        macros.append(("SQISH_WITH_CUDA", None))
        sources.append("csrc/cuda/sqish_cuda.cu")
        return CUDAExtension(sources=sources, extra_compile_args={"cxx": CXX_FLAGS, "nvcc": NVCC_FLAGS}, **kwargs)
    return CppExtension(sources=sources, extra_compile_args={"cxx": CXX_FLAGS}, **kwargs)


build_info_module()
setup(
    ext_modules=[extension()],
    cmdclass={"build_ext": BuildWithCpuLevels},
)

"""Checks a built sqish-ext wheel:
- it is an abi3 wheel whose metadata asks for torch >= the stable-ABI target it records
  (sqish_ext/_build_info.py);
- its compiled modules use only the stable ABI: no undefined C++ symbol of libtorch or
  libc10 (only the C shim, the C++ standard library and system libraries), and no link
  to libtorch_python (nm and readelf, from binutils);
- sqish_ext._cuda holds CUDA kernels for every architecture in the arch list it records,
  or is absent for a CPU-only build (read from its .nv_fatbin section, no CUDA tool needed).

    python scripts/check_wheel.py dist/sqish_ext-*.whl
"""
import re
import struct
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

FATBIN_MAGIC = 0xBA55ED50
ENTRY_KINDS = {1: "compute", 2: "sm"}  # PTX, and ELF cubins


def elf_section(data, wanted):
    """The bytes of one section of a 64-bit little-endian ELF file, or None."""
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def header(i):
        name, _, _, _, offset, size = struct.unpack_from("<IIQQQQ", data, shoff + i * shentsize)
        return name, offset, size

    _, names_offset, _ = header(shstrndx)
    for i in range(shnum):
        name, offset, size = header(i)
        end = data.index(b"\0", names_offset + name)
        if data[names_offset + name:end].decode() == wanted:
            return data[offset:offset + size]
    return None


def fatbin_entries(section):
    """(kind, arch) of every entry of every fat binary in a .nv_fatbin section: ("sm", 90)
    for an sm_90 cubin, ("compute", 120) for compute_120 PTX."""
    entries, pos = set(), 0
    while (pos := section.find(struct.pack("<I", FATBIN_MAGIC), pos)) != -1:
        _, _, header_size, size = struct.unpack_from("<IHHQ", section, pos)
        entry, end = pos + header_size, pos + header_size + size
        while entry < end:
            kind, _, entry_header_size, payload_size = struct.unpack_from("<HHIQ", section, entry)
            arch, = struct.unpack_from("<I", section, entry + 28)
            entries.add((ENTRY_KINDS.get(kind, f"kind{kind}"), arch))
            entry += entry_header_size + payload_size
        pos = end
    return entries


def expected_entries(arch_list):
    """TORCH_CUDA_ARCH_LIST ("8.0;9.0+PTX") as fatbin entries."""
    entries = set()
    for item in re.split(r"[;\s]+", arch_list.strip()):
        number = int(item.removesuffix("+PTX").replace(".", ""))
        entries.add(("sm", number))
        if item.endswith("+PTX"):
            entries.add(("compute", number))
    return entries


def check_stable_abi(name, library):
    """No undefined C++ symbol from torch's libraries, and no libtorch_python."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / Path(name).name
        path.write_bytes(library)
        symbols = subprocess.run(["nm", "-D", "--undefined-only", "-C", str(path)], check=True,
                                 capture_output=True, text=True).stdout
        needed = subprocess.run(["readelf", "-d", str(path)], check=True, capture_output=True, text=True).stdout
    unstable = [line.split()[-1] for line in symbols.splitlines() if re.search(r"\b(c10|at|torch|caffe2)::", line)]
    assert not unstable, f"{name} uses torch's unstable C++ ABI: {unstable[:10]}"
    assert "libtorch_python" not in needed, f"{name} links libtorch_python"
    shims = sum(1 for line in symbols.splitlines() if re.search(r"\b(aoti_torch|torch)_\w+$", line))
    print(f"{name}: stable ABI only ({shims} C shim functions, no C++ symbol of torch, no libtorch_python)")


def main(path):
    assert re.search(r"-cp3\d+-abi3-[^-]+\.whl$", path), f"{path} is not an abi3 wheel"
    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
        metadata = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        build_info = {}
        exec(wheel.read("sqish_ext/_build_info.py"), build_info)
        libraries = {n: wheel.read(n) for n in names if re.fullmatch(r"sqish_ext/_(C|cuda)\.abi3\.so", n)}

    torch_requirement = f"Requires-Dist: torch>={build_info['TORCH_TARGET_VERSION']}"
    assert torch_requirement in metadata.splitlines(), f"METADATA lacks {torch_requirement!r}"
    print(f"metadata: {torch_requirement}")
    assert "sqish_ext/_C.abi3.so" in libraries, f"no sqish_ext/_C.abi3.so in {sorted(libraries)}"
    for name, library in sorted(libraries.items()):
        check_stable_abi(name, library)

    arch_list = build_info["CUDA_ARCH_LIST"]
    cuda = libraries.get("sqish_ext/_cuda.abi3.so")
    if arch_list is None:
        assert cuda is None, "a CPU-only build holds sqish_ext/_cuda"
        print("CUDA kernels: none (CPU-only build)")
        return
    assert cuda is not None, f"built for CUDA archs {arch_list} but the wheel has no sqish_ext/_cuda"
    section = elf_section(cuda, ".nv_fatbin")
    found = fatbin_entries(section) if section else set()
    expected = expected_entries(arch_list)
    print("CUDA kernels:", " ".join(f"{kind}_{arch}" for kind, arch in sorted(found)))
    assert expected <= found, f"missing for TORCH_CUDA_ARCH_LIST={arch_list}: {sorted(expected - found)}"


if __name__ == "__main__":
    main(sys.argv[1])

"""Checks a built sqish-ext wheel: its metadata pins torch to the version it was built
against, and its sqish_ext._C holds CUDA kernels for every architecture in the arch list
it records (sqish_ext/_build_info.py), or none for a CPU-only build.

    python scripts/check_wheel.py dist/sqish_ext-*.whl

The kernels are listed from the library's .nv_fatbin section, so no CUDA tool is needed.
"""
import re
import struct
import sys
import zipfile

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


def main(path):
    with zipfile.ZipFile(path) as wheel:
        names = wheel.namelist()
        metadata = wheel.read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
        build_info = {}
        exec(wheel.read("sqish_ext/_build_info.py"), build_info)
        library = wheel.read(next(n for n in names if re.fullmatch(r"sqish_ext/_C\..*\.so", n)))

    torch_pin = f"Requires-Dist: torch=={build_info['TORCH_VERSION'].split('+')[0]}"
    assert torch_pin in metadata.splitlines(), f"METADATA lacks {torch_pin!r}"
    print(f"metadata: {torch_pin}")

    section = elf_section(library, ".nv_fatbin")
    found = fatbin_entries(section) if section else set()
    arch_list = build_info["CUDA_ARCH_LIST"]
    if arch_list is None:
        assert not found, f"a CPU-only build holds CUDA kernels: {sorted(found)}"
        print("CUDA kernels: none (CPU-only build)")
        return
    expected = expected_entries(arch_list)
    print("CUDA kernels:", " ".join(f"{kind}_{arch}" for kind, arch in sorted(found)))
    assert expected <= found, f"missing for TORCH_CUDA_ARCH_LIST={arch_list}: {sorted(expected - found)}"


if __name__ == "__main__":
    main(sys.argv[1])

"""A small reader for the dynamic-linking facts of a 64-bit little-endian ELF shared object.

It reads what `kernel-builder check` needs and nothing more: DT_NEEDED, DT_RPATH and
DT_RUNPATH, the dynamic symbols the object defines, and the symbol versions it requires from
other libraries (GLIBC_2.32, GLIBCXX_3.4.21, ...) with the symbols that require each one.
"""

from __future__ import annotations

import mmap
import struct
from dataclasses import dataclass
from pathlib import Path

ELF_MAGIC = b"\x7fELF"
ELF_HEADER_SIZE = 64
ELFCLASS64 = 2
ELFDATA2LSB = 1

SHT_DYNAMIC = 6
SHT_DYNSYM = 11
SHT_GNU_VERNEED = 0x6FFFFFFE
SHT_GNU_VERSYM = 0x6FFFFFFF

DT_NULL = 0
DT_NEEDED = 1
DT_RPATH = 15
DT_RUNPATH = 29

STB_GLOBAL = 1
STB_WEAK = 2
SHN_UNDEF = 0
# The high bit of a .gnu.version entry marks a hidden symbol; the rest is the version index.
VERSYM_INDEX_MASK = 0x7FFF

SECTION_HEADER = struct.Struct("<IIQQQQIIQQ")
SYMBOL = struct.Struct("<IBBHQQ")
DYNAMIC_ENTRY = struct.Struct("<qQ")
VERNEED = struct.Struct("<HHIII")
VERNAUX = struct.Struct("<IHHII")


class ElfError(Exception):
    """The file is not an ELF shared object this reader understands."""


@dataclass(frozen=True)
class ElfInfo:
    needed: tuple[str, ...]
    rpath: tuple[str, ...]
    runpath: tuple[str, ...]
    defined_symbols: frozenset[str]
    # version name (e.g. "GLIBC_2.32") -> the undefined symbols bound to it, sorted
    required_versions: dict[str, tuple[str, ...]]


@dataclass(frozen=True)
class _Section:
    type: int
    offset: int
    size: int
    link: int
    entry_size: int


def read_elf(path: Path) -> ElfInfo:
    """Parse `path`; raises ElfError when it is not a 64-bit little-endian ELF file."""
    with path.open("rb") as handle:
        header = handle.read(ELF_HEADER_SIZE)
        if header[:4] != ELF_MAGIC:
            raise ElfError(f"{path.name} is not an ELF file (it does not start with \\x7fELF)")
        if len(header) < ELF_HEADER_SIZE:
            raise ElfError(f"{path.name} is truncated (shorter than an ELF header)")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            try:
                return _parse(data, path.name)
            except (struct.error, IndexError, ValueError) as error:
                raise ElfError(f"{path.name} is truncated or malformed ({error})") from None


def _parse(data: mmap.mmap, name: str) -> ElfInfo:
    if data[4] != ELFCLASS64 or data[5] != ELFDATA2LSB:
        raise ElfError(f"{name} is not a 64-bit little-endian ELF file")
    sections = _section_headers(data, name)
    dynamic = _first(sections, SHT_DYNAMIC)
    dynsym = _first(sections, SHT_DYNSYM)
    if dynamic is None or dynsym is None:
        raise ElfError(
            f"{name} has no dynamic section or dynamic symbol table (not a shared object?)"
        )

    needed, rpath, runpath = _dynamic_entries(data, dynamic, sections[dynamic.link])
    symbols = _dynamic_symbols(data, dynsym, sections[dynsym.link])
    versym = _first(sections, SHT_GNU_VERSYM)
    verneed = _first(sections, SHT_GNU_VERNEED)
    version_by_index = _needed_versions(data, verneed, sections[verneed.link]) if verneed else {}
    indices = _version_indices(data, versym, len(symbols)) if versym else [0] * len(symbols)

    required: dict[str, list[str]] = {version: [] for version in version_by_index.values()}
    defined = set()
    for (symbol_name, binding, section_index), version_index in zip(symbols, indices, strict=True):
        if section_index != SHN_UNDEF:
            if binding in (STB_GLOBAL, STB_WEAK) and symbol_name:
                defined.add(symbol_name)
            continue
        version = version_by_index.get(version_index & VERSYM_INDEX_MASK)
        if version is not None:
            required[version].append(symbol_name)
    return ElfInfo(
        needed=tuple(needed),
        rpath=tuple(rpath),
        runpath=tuple(runpath),
        defined_symbols=frozenset(defined),
        required_versions={version: tuple(sorted(names)) for version, names in required.items()},
    )


def _section_headers(data: mmap.mmap, name: str) -> list[_Section]:
    (section_offset,) = struct.unpack_from("<Q", data, 0x28)
    entry_size, count = struct.unpack_from("<HH", data, 0x3A)
    if count == 0 or entry_size != SECTION_HEADER.size:
        raise ElfError(f"{name} has no section headers")
    if section_offset + count * entry_size > len(data):
        raise ElfError(f"{name} is truncated (its section headers lie past the end of the file)")
    sections = []
    for index in range(count):
        fields = SECTION_HEADER.unpack_from(data, section_offset + index * entry_size)
        _, section_type, _, _, offset, size, link, _, _, entry_size_field = fields
        sections.append(_Section(section_type, offset, size, link, entry_size_field))
    return sections


def _first(sections: list[_Section], section_type: int) -> _Section | None:
    return next((section for section in sections if section.type == section_type), None)


def _string(data: mmap.mmap, table: _Section, offset: int) -> str:
    start = table.offset + offset
    end = data.find(b"\0", start, table.offset + table.size)
    if end < 0:
        raise ElfError("a string runs past the end of its string table")
    return data[start:end].decode("utf-8", errors="replace")


def _dynamic_entries(
    data: mmap.mmap, dynamic: _Section, strings: _Section
) -> tuple[list[str], list[str], list[str]]:
    needed: list[str] = []
    rpath: list[str] = []
    runpath: list[str] = []
    lists = {DT_NEEDED: needed, DT_RPATH: rpath, DT_RUNPATH: runpath}
    for offset in range(dynamic.offset, dynamic.offset + dynamic.size, DYNAMIC_ENTRY.size):
        tag, value = DYNAMIC_ENTRY.unpack_from(data, offset)
        if tag == DT_NULL:
            break
        if tag in lists:
            text = _string(data, strings, value)
            entries = [text] if tag == DT_NEEDED else [part for part in text.split(":") if part]
            lists[tag].extend(entries)
    return needed, rpath, runpath


def _dynamic_symbols(
    data: mmap.mmap, dynsym: _Section, strings: _Section
) -> list[tuple[str, int, int]]:
    """(name, binding, section index) of every dynamic symbol, in table order."""
    symbols = []
    for offset in range(dynsym.offset, dynsym.offset + dynsym.size, SYMBOL.size):
        name_offset, info, _, section_index, _, _ = SYMBOL.unpack_from(data, offset)
        symbols.append((_string(data, strings, name_offset), info >> 4, section_index))
    return symbols


def _version_indices(data: mmap.mmap, versym: _Section, count: int) -> list[int]:
    return list(struct.unpack_from(f"<{count}H", data, versym.offset))


def _needed_versions(data: mmap.mmap, verneed: _Section, strings: _Section) -> dict[int, str]:
    """Version index -> version name, for every version required from another library."""
    names: dict[int, str] = {}
    entry_offset = verneed.offset
    while True:
        _, aux_count, _, aux_offset, next_offset = VERNEED.unpack_from(data, entry_offset)
        aux = entry_offset + aux_offset
        for _ in range(aux_count):
            _, _, index, name_offset, next_aux = VERNAUX.unpack_from(data, aux)
            names[index] = _string(data, strings, name_offset)
            aux += next_aux
        if next_offset == 0:
            return names
        entry_offset += next_offset

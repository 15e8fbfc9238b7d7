"""Run a Python script with a perf map for Numba's jitted code, so `perf report` names the kernels.

    perf record -g -o /tmp/perf.data .venv/bin/python tools/perfmap.py bench/bench_engine.py --no-compile
    perf report -i /tmp/perf.data --no-children --sort sym

perf resolves samples in JIT code through /tmp/perf-<pid>.map ("start size name" lines). This script
installs a hook that keeps the ELF object of every code library Numba loads (from its cache or freshly
compiled), runs the script (runpy), and at exit writes the map from the objects' symbol tables:
every function of every loaded kernel (inlined helpers appear inside their caller), plus NRT_incref /
NRT_decref (Numba's reference counting, which shows up when arrays cross call boundaries).
Development tool only: not part of the package.
"""

from __future__ import annotations

import atexit
import gc
import os
import runpy
import struct
import sys

_OBJECTS: dict[int, bytes] = {}


def _install_hook() -> None:
    from numba.core import codegen

    orig = codegen.CPUCodeLibrary._set_compiled_object

    def keep(self, value):
        _OBJECTS[id(self)] = bytes(value)
        return orig(self, value)

    codegen.CPUCodeLibrary._set_compiled_object = keep


def _elf_functions(obj: bytes):
    """(name, section index, value, size) of the STT_FUNC symbols of an ELF64 little-endian object."""
    shoff, = struct.unpack_from("<Q", obj, 0x28)
    shentsize, shnum, _shstrndx = struct.unpack_from("<HHH", obj, 0x3A)
    secs = [struct.unpack_from("<IIQQQQIIQQ", obj, shoff + i * shentsize) for i in range(shnum)]
    out = []
    for (_name, typ, _flags, _addr, off, size, link, _info, _align, _entsize) in secs:
        if typ != 2:  # SHT_SYMTAB
            continue
        stroff = secs[link][4]
        for k in range(size // 24):
            st_name, st_info, _other, st_shndx, st_value, st_size = struct.unpack_from("<IBBHQQ", obj, off + k * 24)
            if (st_info & 0xF) != 2:  # STT_FUNC
                continue
            end = obj.index(b"\0", stroff + st_name)
            out.append((obj[stroff + st_name:end].decode(errors="replace"), st_shndx, st_value, st_size))
    return out


def write_perf_map(path: str | None = None) -> int:
    """Write /tmp/perf-<pid>.map for every loaded Numba kernel; returns the number of symbols."""
    from numba.core.dispatcher import Dispatcher
    from numba.core.runtime import nrt

    rows: dict[int, tuple[int, str]] = {}
    for d in gc.get_objects():
        if not isinstance(d, Dispatcher):
            continue
        for cres in d.overloads.values():
            lib = cres.library
            obj = _OBJECTS.get(id(lib)) or getattr(lib, "_compiled_object", None)  # cached / fresh
            if not obj:
                continue
            obj = bytes(obj)
            syms = _elf_functions(obj)
            base: dict[int, int] = {}
            for name, sh, value, _size in syms:
                if sh in base:
                    continue
                try:
                    addr = lib.get_pointer_to_function(name)
                except Exception:  # noqa: BLE001 - not every symbol is exported
                    addr = 0
                if addr:
                    base[sh] = addr - value
            for name, sh, value, size in syms:
                if sh in base and size:
                    rows[base[sh] + value] = (size, name)
    for name in ("NRT_incref", "NRT_decref"):
        try:
            rows[nrt.rtsys.library.get_pointer_to_function(name)] = (16, name)
        except Exception:  # noqa: BLE001
            pass
    with open(path or f"/tmp/perf-{os.getpid()}.map", "w") as fh:
        for addr, (size, name) in sorted(rows.items()):
            fh.write(f"{addr:x} {size:x} {name[:200]}\n")
    return len(rows)


def main() -> None:
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    _install_hook()
    atexit.register(write_perf_map)
    script = sys.argv[1]
    sys.argv = sys.argv[1:]
    sys.path.insert(0, os.path.dirname(os.path.abspath(script)))
    runpy.run_path(script, run_name="__main__")


if __name__ == "__main__":
    main()

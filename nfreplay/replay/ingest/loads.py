"""Wide loads from the capture bytes: one unaligned 2/4/8-byte load (plus a byte swap for big-endian
fields) instead of 2-8 byte loads, shifts and ors.

`u8(d, p)`, `be16(d, p)`, `be32(d, p)`, `le16(d, p)`, `le32(d, p)` return the unsigned field at byte p of
the uint8 array d as an int64 (u8: like d[p], minus the wraparound of negative indices numba emits for a
signed index); `be64(d, p)`, `le64(d, p)` as a uint64; `rd16(d, p, be)` / `rd32(d, p, be)` in the byte order
the boolean `be` gives at run time (pcap / pcapng files of either order). They are Numba intrinsics: the load is emitted inline in
the caller, with no function call and no reference counting of `d` (a call to a jitted helper taking
`d` costs an NRT incref/decref pair, atomic, per call). The caller keeps every load inside the array,
as with indexing: under NUMBA_BOUNDSCHECK=1 each load is checked (IndexError, like d[p]); without it,
nothing is. Under NUMBA_DISABLE_JIT they are plain Python with the same results and checks.
"""

from __future__ import annotations

import numba
import numpy as np

if numba.config.DISABLE_JIT:
    def _field(d, p, n, order):
        p = int(p)
        if p < 0 or p + n > len(d):
            raise IndexError("index is out of bounds")
        return int.from_bytes(bytes(d[p:p + n]), order)

    def be16(d, p):
        """Big-endian uint16 at d[p:p+2], as int64."""
        return np.int64(_field(d, p, 2, "big"))

    def be32(d, p):
        """Big-endian uint32 at d[p:p+4], as int64."""
        return np.int64(_field(d, p, 4, "big"))

    def be64(d, p):
        """Big-endian uint64 at d[p:p+8], as uint64."""
        return np.uint64(_field(d, p, 8, "big"))

    def u8(d, p):
        """d[p] as int64 (an index that is never wrapped around: see the module doc)."""
        return np.int64(_field(d, p, 1, "little"))

    def le16(d, p):
        """Little-endian uint16 at d[p:p+2], as int64."""
        return np.int64(_field(d, p, 2, "little"))

    def le32(d, p):
        """Little-endian uint32 at d[p:p+4], as int64."""
        return np.int64(_field(d, p, 4, "little"))

    def le64(d, p):
        """Little-endian uint64 at d[p:p+8], as uint64."""
        return np.uint64(_field(d, p, 8, "little"))

    def rd16(d, p, be):
        """uint16 at d[p:p+2], big-endian if be else little-endian, as int64."""
        return np.int64(_field(d, p, 2, "big" if be else "little"))

    def rd32(d, p, be):
        """uint32 at d[p:p+4], big-endian if be else little-endian, as int64."""
        return np.int64(_field(d, p, 4, "big" if be else "little"))
else:
    from llvmlite import ir as _ir
    from numba.core import cgutils as _cgutils
    from numba.core import types as _types
    from numba.extending import intrinsic as _intrinsic

    def _make(nbytes: int, big, ret):
        """big: True / False, or None for a third (boolean) argument that picks the order at run time."""

        def typer(d, p, order):
            if not (isinstance(d, _types.Array) and d.ndim == 1 and d.layout == "C"
                    and d.dtype == _types.uint8 and isinstance(p, _types.Integer)):
                return None
            return (ret(d, p) if order is None else ret(d, p, order)), codegen

        def codegen(context, builder, signature, args):
            ary = context.make_array(signature.args[0])(context, builder, args[0])
            idx = context.cast(builder, args[1], signature.args[1], _types.intp)
            if context.enable_boundscheck:
                last = builder.add(idx, _ir.Constant(idx.type, nbytes - 1))
                _cgutils.do_boundscheck(context, builder, idx, ary.nitems)
                _cgutils.do_boundscheck(context, builder, last, ary.nitems)
            ity = _ir.IntType(8 * nbytes)
            ptr = builder.gep(builder.bitcast(ary.data, _ir.IntType(8).as_pointer()), [idx])
            v = builder.load(builder.bitcast(ptr, ity.as_pointer()), align=1)
            if big is not False:
                fnty = _ir.FunctionType(ity, [ity])
                fn = _cgutils.get_or_insert_function(builder.module, fnty, f"llvm.bswap.i{8 * nbytes}")
                swapped = builder.call(fn, [v])
                if big is None:
                    flag = context.cast(builder, args[2], signature.args[2], _types.boolean)
                    v = builder.select(flag, swapped, v)
                else:
                    v = swapped
            if nbytes < 8:
                v = builder.zext(v, _ir.IntType(64))
            return v

        if big is None:
            def impl(typingctx, d, p, be):
                return typer(d, p, be)
        else:
            def impl(typingctx, d, p):
                return typer(d, p, None)

        impl.__name__ = impl.__qualname__ = f"{'rd' if big is None else 'be' if big else 'le'}{8 * nbytes}"
        return _intrinsic(impl)

    u8 = _make(1, False, _types.int64)
    be16 = _make(2, True, _types.int64)
    be32 = _make(4, True, _types.int64)
    be64 = _make(8, True, _types.uint64)
    le16 = _make(2, False, _types.int64)
    le32 = _make(4, False, _types.int64)
    le64 = _make(8, False, _types.uint64)
    rd16 = _make(2, None, _types.int64)
    rd32 = _make(4, None, _types.int64)

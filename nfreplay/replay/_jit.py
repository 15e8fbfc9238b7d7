"""The one decorator for jitted code, and `borrow`. Only modules under nfreplay/replay/ use them.

njit(cache=True, nogil=True); no fastmath (exactness), no parallel (order matters).
Under NUMBA_DISABLE_JIT=1 numba returns the plain Python function, which the test suite uses
for coverage of kernel code.

borrow(x): the same arrays (or tuple / NamedTuple of arrays, nested) without their NRT meminfo. Numba
reference-counts every array passed to a non-inlined jitted function (an atomic increment and
decrement of the array's meminfo per array per call; a NamedTuple of 20 arrays costs 40 atomics per
call). Measured with perf on the hook pipeline: NRT_incref/NRT_decref took ~50 % of the replay time.
A borrowed array has a null meminfo, so NRT_incref/decref return at their null check. Use it only at
the top of a driver kernel (replay_chunk and friends) on arguments that the Python caller keeps alive
for the whole call, and never return a borrowed array or store it in a container that outlives the
call. Arrays allocated inside kernels keep their meminfo and are managed as usual.
"""

from __future__ import annotations

import numba
from numba.core import cgutils, types
from numba.extending import intrinsic

kernel = numba.njit(cache=True, nogil=True)
# inlined into its caller at Numba IR level: for hot per-packet helpers with one or two call sites that
# take many arrays (a call costs ~8 ns per array argument: the struct of every array is flattened onto
# the stack and NRT_incref/decref'd). Costs compile time per call site: keep the call sites few.
inline_kernel = numba.njit(cache=True, nogil=True, inline="always")

# compiled without NRT: no reference counting of arrays inside the function (each incref / decref is a call
# into the NRT library, ~12 per packet in conntrack's entry point even on borrowed arrays). Only for kernels
# that allocate no arrays, nor do the kernels they call: numba compiles the callees with the caller's flags
# (a separate compiled version) and refuses any allocation there. Arguments are safe: the caller holds them.
kernel_norc = numba.njit(cache=True, nogil=True, _nrt=False)

__all__ = ["kernel", "inline_kernel", "kernel_norc", "borrow", "prefetch"]


def _borrow_value(context, builder, ty, val):
    if isinstance(ty, types.Array):
        ary = context.make_array(ty)(context, builder, value=val)
        ary.meminfo = cgutils.get_null_value(ary.meminfo.type)
        ary.parent = cgutils.get_null_value(ary.parent.type)
        return ary._getvalue()
    if isinstance(ty, types.BaseTuple):
        for i, t in enumerate(ty):
            v = builder.extract_value(val, i)
            val = builder.insert_value(val, _borrow_value(context, builder, t, v), i)
        return val
    return val


if numba.config.DISABLE_JIT:
    def borrow(x):
        return x
else:
    @intrinsic
    def borrow(typingctx, x):
        def codegen(context, builder, signature, args):
            return _borrow_value(context, builder, signature.args[0], args[0])

        return x(x), codegen


# prefetch(a, i): a hint to bring element i of the C-contiguous array a (flat index) into the cache; no
# effect on results, never faults (LLVM's llvm.prefetch: read, high locality). For hash probes whose
# keys are known ahead of time (conntrack's lookups of the next block of packets).
if numba.config.DISABLE_JIT:
    def prefetch(a, i):
        return None
else:
    from llvmlite import ir as _ir

    @intrinsic
    def prefetch(typingctx, a, i):
        if not (isinstance(a, types.Array) and a.layout == "C" and isinstance(i, types.Integer)):
            return None

        def codegen(context, builder, signature, args):
            aty = signature.args[0]
            ary = context.make_array(aty)(context, builder, value=args[0])
            idx = context.cast(builder, args[1], signature.args[1], types.intp)
            size = context.get_abi_sizeof(context.get_data_type(aty.dtype))
            off = builder.mul(idx, _ir.Constant(idx.type, size))
            ptr = builder.gep(builder.bitcast(ary.data, _ir.IntType(8).as_pointer()), [off])
            i32 = _ir.IntType(32)
            fnty = _ir.FunctionType(_ir.VoidType(), [ptr.type, i32, i32, i32])
            fn = cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0")
            builder.call(fn, [ptr, _ir.Constant(i32, 0), _ir.Constant(i32, 3), _ir.Constant(i32, 1)])
            return context.get_dummy_value()

        return types.none(a, i), codegen

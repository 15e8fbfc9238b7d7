"""Framing kernels: walk classic pcap and pcapng records over the file's bytes (memory-mapped).

Each call frames at most `max_recs` records starting at byte `pos` and writes, per record, from row `row0`
on, the offset of its first captured byte (`rec_off`) and the framer-owned columns of the packet table chunk
`out` (ts_ns, rec_num, linktype, wire_len, cap_len, pkt_dir, ifindex; `out` comes zeroed and zeros are not
written: frame_pcap leaves pkt_dir 0). It returns
(records_written, next_pos, err) with err one of the FR_* codes below; on an error `next_pos` is the
byte offset of the damaged record or block. State that spans calls (pcapng: section byte order and the
interface table) lives in the small arrays the caller passes, so a file is framed in chunks.

decode.frame_decode calls these per block of records and decodes each block while its frames are still in
the cache: one pass over the file's bytes. It also prefetches the file ahead of the block being decoded
(decode.PREFETCH_DIST), so these loops find their records in the cache: each record's position depends
on the previous record's length, so without that every record would wait for a memory load.
"""

from __future__ import annotations

import numba
import numpy as np

from .._jit import kernel
from .loads import rd16, rd32

if numba.config.DISABLE_JIT:
    def prefetch(d, p):
        """No-op in pure Python (NUMBA_DISABLE_JIT=1)."""
        return None
else:
    from llvmlite import ir as _ir
    from numba.core import cgutils as _cgutils
    from numba.core import types as _types
    from numba.extending import intrinsic as _intrinsic

    @_intrinsic
    def prefetch(typingctx, d, p):
        """Hint the CPU to load the cache line holding d[p] (llvm.prefetch: read, high locality).
        Never faults, whatever p is; no effect on results."""
        sig = _types.void(d, p)

        def codegen(context, builder, signature, args):
            ary = context.make_array(signature.args[0])(context, builder, args[0])
            i8p = _ir.IntType(8).as_pointer()
            ptr = builder.gep(builder.bitcast(ary.data, i8p), [args[1]])
            i32 = _ir.IntType(32)
            fnty = _ir.FunctionType(_ir.VoidType(), [i8p, i32, i32, i32])
            fn = _cgutils.get_or_insert_function(builder.module, fnty, "llvm.prefetch.p0i8")
            builder.call(fn, [ptr, _ir.Constant(i32, 0), _ir.Constant(i32, 3), _ir.Constant(i32, 1)])
            return context.get_dummy_value()

        return sig, codegen

FR_OK = 0  # stopped because max_recs were written, or at the end of the data
FR_TRUNCATED = 1  # the last record/block runs past the end of the file
FR_BAD_RECORD = 2  # implausible record header (caplen too large) / bad block length
FR_BAD_BLOCK = 3  # pcapng block structure broken (trailer length mismatch, bad option)
FR_BAD_INTERFACE = 4  # pcapng packet references an interface with no IDB
FR_BAD_SHB = 5  # pcapng section header with an unknown byte-order magic / version
FR_TOO_MANY_IF = 6

FR_MESSAGES = {
    FR_TRUNCATED: "truncated record at end of file",
    FR_BAD_RECORD: "implausible record header (garbage or corrupt data)",
    FR_BAD_BLOCK: "corrupt pcapng block",
    FR_BAD_INTERFACE: "packet block references an undefined interface",
    FR_BAD_SHB: "corrupt pcapng section header block",
    FR_TOO_MANY_IF: "too many pcapng interfaces",
}

MAX_CAPLEN = 0x40000 * 4  # 1 MiB: above any snaplen libpcap writes (262144); larger means garbage
MAX_INTERFACES = 4096

# pcapng block types
BT_SHB = 0x0A0D0D0A
BT_IDB = 0x00000001
BT_OPB = 0x00000002
BT_SPB = 0x00000003
BT_EPB = 0x00000006
BYTE_ORDER_MAGIC = 0x1A2B3C4D

# pcapng state array slots (int64)
ST_BE = 0  # current section is big-endian
ST_SECTION_BASE = 1  # index of the current section's first IDB in the interface arrays
ST_N_IF = 2  # interfaces defined so far (all sections)
ST_HAVE_SHB = 3
ST_N_SECTIONS = 4
ST_LAST_TS = 5  # timestamp of the last packet (a Simple Packet Block has none: it inherits this)
ST_SIZE = 8

# interface arrays columns: linktype, snaplen, tsresol exponent, tsresol base-2 flag, tsoffset seconds,
# ifindex within section
IF_LINKTYPE = 0
IF_SNAPLEN = 1
IF_RES_EXP = 2
IF_RES_POW2 = 3
IF_TSOFFSET = 4
IF_LOCAL = 5
IF_NCOLS = 6


@kernel
def frame_pcap(d, pos, row0, max_recs, be, nano, linktype, rec_base, rec_off, out):
    """Classic pcap records from byte `pos` (after the 24-byte file header) into rows row0, row0 + 1, ...

    The columns are taken out of `out` before the loop (an `out.<column>` access per record costs a
    reference-count round trip) and the header fields are read with one 4-byte load each."""
    ts_ns, rec_num, linktype_c, cap_len = out.ts_ns, out.rec_num, out.linktype, out.cap_len
    wire_len, ifindex = out.wire_len, out.ifindex
    n_data = np.int64(len(d))
    n = 0
    mul = np.int64(1) if nano else np.int64(1000)
    while n < max_recs:
        if pos >= n_data:
            return n, pos, 0
        if pos + 16 > n_data:
            return n, pos, FR_TRUNCATED
        sec = rd32(d, pos, be)
        frac = rd32(d, pos + 4, be)
        caplen = rd32(d, pos + 8, be)
        wirelen = rd32(d, pos + 12, be)
        if caplen > MAX_CAPLEN:
            return n, pos, FR_BAD_RECORD
        if pos + 16 + caplen > n_data:
            return n, pos, FR_TRUNCATED
        r = np.uint64(row0 + n)  # unsigned: no wraparound code for a negative index
        ts_ns[r] = sec * np.int64(1000000000) + frac * mul
        rec_num[r] = rec_base + n
        linktype_c[r] = linktype
        cap_len[r] = caplen
        wire_len[r] = wirelen if wirelen <= 0x7FFFFFFF else 0x7FFFFFFF
        ifindex[r] = -1  # pkt_dir stays 0 (unknown): the table comes zeroed
        rec_off[r] = pos + 16
        pos += 16 + caplen
        n += 1
    return n, pos, 0


@kernel
def _ts_to_ns(ts, exp, pow2, tsoffset):
    """pcapng timestamp units -> ns since the epoch (ts is the 64-bit unsigned count, as uint64)."""
    ns = np.int64(0)
    if pow2:
        e = np.uint64(exp)
        secs = ts >> e
        frac = ts & ((np.uint64(1) << e) - np.uint64(1))
        # frac < 2**e; e <= 32 keeps frac * 1e9 inside 64 bits for realistic resolutions
        ns = np.int64(secs) * np.int64(1000000000) + np.int64((frac * np.uint64(1000000000)) >> e)
    else:
        if exp <= 9:
            m = np.int64(1)
            for _ in range(9 - exp):
                m *= 10
            ns = np.int64(ts) * m
        else:
            dv = np.uint64(1)
            for _ in range(exp - 9):
                dv *= np.uint64(10)
            ns = np.int64(ts // dv)
    return ns + tsoffset * np.int64(1000000000)


@kernel
def _walk_options(d, p, end, be, ifs, k, is_idb):
    """Walk a block's options in [p, end). IDB: record if_tsresol (9) and if_tsoffset (14).
    Returns -1 when an option overruns the block, else the value of an epb_flags (code 2) option
    or 0 (for packet blocks)."""
    flags = np.int64(0)
    while p + 4 <= end:
        code = rd16(d, p, be)
        olen = rd16(d, p + 2, be)
        p += 4
        if code == 0:
            return flags
        if p + olen > end:
            return -1
        if is_idb:
            if code == 9 and olen >= 1:
                r = np.int64(d[p])
                ifs[k, IF_RES_POW2] = 1 if (r & 0x80) else 0
                ifs[k, IF_RES_EXP] = r & 0x7F
            elif code == 14 and olen == 8:
                if be:
                    ifs[k, IF_TSOFFSET] = (rd32(d, p, be) << 32) | rd32(d, p + 4, be)
                else:
                    ifs[k, IF_TSOFFSET] = (rd32(d, p + 4, be) << 32) | rd32(d, p, be)
        else:
            if code == 2 and olen == 4:
                flags = rd32(d, p, be)
        p += (olen + 3) & ~3
    return flags


@kernel
def frame_pcapng(d, pos, row0, max_recs, st, ifs, rec_base, rec_off, out):
    """pcapng blocks from byte `pos` (0 at file start) into rows row0, row0 + 1, ... See the module doc."""
    ts_col, rec_num, linktype_c, cap_len = out.ts_ns, out.rec_num, out.linktype, out.cap_len
    wire_len, pkt_dir, ifindex = out.wire_len, out.pkt_dir, out.ifindex
    n_data = np.int64(len(d))
    n = 0
    while n < max_recs:
        if pos >= n_data:
            return n, pos, 0
        if pos + 12 > n_data:
            return n, pos, FR_TRUNCATED
        # block type: the SHB type is a palindrome, so read it in either order
        be = st[ST_BE] != 0
        btype = rd32(d, pos, be)
        if btype == BT_SHB:
            if pos + 28 > n_data:
                return n, pos, FR_TRUNCATED
            bom_le = rd32(d, pos + 8, False)
            if bom_le == BYTE_ORDER_MAGIC:
                be = False
            elif rd32(d, pos + 8, True) == BYTE_ORDER_MAGIC:
                be = True
            else:
                return n, pos, FR_BAD_SHB
            if rd16(d, pos + 12, be) != 1:
                return n, pos, FR_BAD_SHB
            st[ST_BE] = 1 if be else 0
            st[ST_SECTION_BASE] = st[ST_N_IF]
            st[ST_HAVE_SHB] = 1
            st[ST_N_SECTIONS] += 1
        elif st[ST_HAVE_SHB] == 0:
            return n, pos, FR_BAD_SHB
        blen = rd32(d, pos + 4, be)
        if blen < 12 or (blen & 3) != 0:
            return n, pos, FR_BAD_RECORD
        if pos + blen > n_data:
            return n, pos, FR_TRUNCATED
        if rd32(d, pos + blen - 4, be) != blen:
            return n, pos, FR_BAD_BLOCK
        bend = pos + blen - 4  # end of body/options
        if btype == BT_SHB:
            if blen < 28 or _walk_options(d, pos + 24, bend, be, ifs, 0, False) < 0:
                return n, pos, FR_BAD_SHB
        elif btype == BT_IDB:
            if blen < 20:
                return n, pos, FR_BAD_BLOCK
            k = st[ST_N_IF]
            if k >= len(ifs):
                return n, pos, FR_TOO_MANY_IF
            ifs[k, IF_LINKTYPE] = rd16(d, pos + 8, be)
            ifs[k, IF_SNAPLEN] = rd32(d, pos + 12, be)
            ifs[k, IF_RES_EXP] = 6
            ifs[k, IF_RES_POW2] = 0
            ifs[k, IF_TSOFFSET] = 0
            ifs[k, IF_LOCAL] = k - st[ST_SECTION_BASE]
            if _walk_options(d, pos + 16, bend, be, ifs, k, True) < 0:
                return n, pos, FR_BAD_BLOCK
            st[ST_N_IF] = k + 1
        elif btype == BT_EPB or btype == BT_OPB or btype == BT_SPB:
            if btype == BT_SPB:
                if blen < 16:
                    return n, pos, FR_BAD_BLOCK
                iface = np.int64(0)
                wirelen = rd32(d, pos + 8, be)
                dstart = pos + 12
                caplen = min(wirelen, bend - dstart)
                k = st[ST_SECTION_BASE]
                if k >= st[ST_N_IF]:
                    return n, pos, FR_BAD_INTERFACE
                snap = ifs[k, IF_SNAPLEN]
                if snap > 0 and caplen > snap:
                    caplen = snap
                flags = np.int64(0)
                ts_ns = st[ST_LAST_TS]
            else:
                if blen < 32:
                    return n, pos, FR_BAD_BLOCK
                if btype == BT_EPB:
                    iface = rd32(d, pos + 8, be)
                else:
                    iface = rd16(d, pos + 8, be)
                tsv = (np.uint64(rd32(d, pos + 12, be)) << np.uint64(32)) | np.uint64(rd32(d, pos + 16, be))
                caplen = rd32(d, pos + 20, be)
                wirelen = rd32(d, pos + 24, be)
                dstart = pos + 28
                if caplen > bend - dstart:
                    return n, pos, FR_BAD_BLOCK
                k = st[ST_SECTION_BASE] + iface
                if k >= st[ST_N_IF]:
                    return n, pos, FR_BAD_INTERFACE
                flags = _walk_options(d, dstart + ((caplen + 3) & ~3), bend, be, ifs, 0, False)
                if flags < 0:
                    flags = 0  # a damaged packet option does not lose the packet
                ts_ns = _ts_to_ns(tsv, ifs[k, IF_RES_EXP], ifs[k, IF_RES_POW2], ifs[k, IF_TSOFFSET])
            r = np.uint64(row0 + n)
            ts_col[r] = ts_ns
            st[ST_LAST_TS] = ts_ns
            rec_num[r] = rec_base + n
            linktype_c[r] = ifs[k, IF_LINKTYPE]
            cap_len[r] = caplen
            wire_len[r] = wirelen if wirelen <= 0x7FFFFFFF else 0x7FFFFFFF
            dirbits = flags & 3
            pkt_dir[r] = 1 if dirbits == 1 else (2 if dirbits == 2 else 0)
            ifindex[r] = ifs[k, IF_LOCAL]
            rec_off[r] = dstart
            n += 1
        # every other block type (NRB, ISB, DSB, custom...) is skipped
        pos += blen
    return n, pos, 0


@kernel
def _gather_into(src, rec_off, cap_len, dst):
    q = 0
    for i in range(len(rec_off)):
        o = rec_off[i]
        for k in range(cap_len[i]):
            dst[q + k] = src[o + k]
        q += cap_len[i]
    return q


def gather_bytes(src, rec_off, cap_len, total):
    """Copy the records' captured bytes, back to back, into a new uint8 array of `total` bytes."""
    dst = np.empty(total, dtype=np.uint8)
    _gather_into(src, rec_off, cap_len, dst)
    return dst

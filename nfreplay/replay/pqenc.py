"""Parquet encoding kernels of analysis.parquet (the streaming run's Parquet writer).

The kernels read views on Arrow buffers (values, validity bitmap bytes from byte `s`, string offsets
and data, dictionary indices) and write into preallocated uint8 buffers, returning where they stopped;
allocation-free and nogil, so the writer thread encodes beside the replay thread. Pages start on
multiples of 8 rows: a page's validity starts on a bitmap byte. Output buffers need 8 bytes of slack
past the end (word stores, _st64). Hot loops index views with their range variable: numba then leaves
out the negative-index check, which would keep LLVM from vectorizing them.

Encodings (Parquet format spec), little-endian:
- definition levels: RLE / bit-packed hybrid, bit width 1 (a bit-packed group of 8 levels is one Arrow
  bitmap byte: literal runs are copies of the bitmap), behind a 4-byte length (data page v1).
- PLAIN fixed width (INT32 / INT64) and BYTE_ARRAY (4-byte length + bytes).
- RLE_DICTIONARY indices: one RLE run if all equal, else one bit-packed run; dictionaries built here
  for strings (open addressing on two words of each string) and for integers of a small span (a direct
  table), in order of first appearance.
- DELTA_BINARY_PACKED: blocks of 128 values in 4 miniblocks of 32; deltas modulo 2**64.
Arithmetic that may wrap is done on uint64 (it wraps alike in numba and in numpy scalars); counts of
uint8 values are accumulated as int64 (numpy would keep uint8 and wrap).
"""
from __future__ import annotations

import numba
import numpy as np

from ._jit import inline_kernel, kernel_norc

__all__ = ["def_levels", "plain_fixed", "plain_bytes", "dict_indices", "delta_int64", "int_profile", "valid_profile", "dict_usage",
           "int_dict", "str_dict", "hybrid", "count_valid"]

_U0 = np.uint64(0)
_U1 = np.uint64(1)
_U7 = np.uint64(7)
_U8 = np.uint64(8)
_U32 = np.uint64(32)
_U63 = np.uint64(63)
_U64MAX = np.uint64(0xFFFFFFFFFFFFFFFF)
_LOW32 = np.uint64(0xFFFFFFFF)
_SIGN = np.uint64(0x8000000000000000)
_UFF = np.uint64(0xFF)
_U7F = np.uint64(0x7F)
_U80 = np.uint64(0x80)
_K1 = np.uint64(0x9E3779B97F4A7C15)
_K2 = np.uint64(0xC2B2AE3D27D4EB4F)
_K3 = np.uint64(0x165667B19E3779F9)

# _ld64(a, i) / _st64(a, i, v): 8 bytes at a[i:i + 8] of a uint8 array as a little-endian uint64
# (unaligned load / store); i + 8 <= len(a).
if numba.config.DISABLE_JIT:
    def _ld64(a, i):
        return np.uint64(int.from_bytes(a[i:i + 8].tobytes(), "little"))

    def _st64(a, i, v):
        a[i:i + 8] = np.frombuffer(int(v).to_bytes(8, "little"), np.uint8)
else:
    from llvmlite import ir as _ir
    from numba.core import types as _types
    from numba.extending import intrinsic

    def _byte_ptr(context, builder, aty, ary_val, idx_val, idx_ty):
        ary = context.make_array(aty)(context, builder, value=ary_val)
        idx = context.cast(builder, idx_val, idx_ty, _types.intp)
        ptr = builder.gep(builder.bitcast(ary.data, _ir.IntType(8).as_pointer()), [idx])
        return builder.bitcast(ptr, _ir.IntType(64).as_pointer())

    @intrinsic
    def _ld64(typingctx, a, i):
        if not (isinstance(a, _types.Array) and a.dtype == _types.uint8 and isinstance(i, _types.Integer)):
            return None

        def codegen(context, builder, signature, args):
            ptr = _byte_ptr(context, builder, signature.args[0], args[0], args[1], signature.args[1])
            return builder.load(ptr, align=1)

        return _types.uint64(a, i), codegen

    @intrinsic
    def _st64(typingctx, a, i, v):
        if not (isinstance(a, _types.Array) and a.dtype == _types.uint8 and isinstance(i, _types.Integer)):
            return None

        def codegen(context, builder, signature, args):
            ptr = _byte_ptr(context, builder, signature.args[0], args[0], args[1], signature.args[1])
            val = context.cast(builder, args[2], signature.args[2], _types.uint64)
            builder.store(val, ptr, align=1)
            return context.get_dummy_value()

        return _types.none(a, i, v), codegen


@kernel_norc
def _uvarint(x, out, p):
    """ULEB128 of the non-negative x (an int64 or uint64) at out[p:]; returns the end."""
    u = np.uint64(x)
    while u >= _U80:
        out[p] = np.uint8((u & _U7F) | _U80)
        u >>= _U7
        p += 1
    out[p] = np.uint8(u)
    return p + 1


@kernel_norc
def _zigzag(u, out, p):
    """Zigzag ULEB128 of the int64 whose bits are the uint64 u."""
    z = u << _U1
    if u >> _U63:
        z = ~z
    return _uvarint(z, out, p)


@inline_kernel
def _pack(src, a, cnt, lim, w, out, p):
    """Bit-pack the cnt values src[a:a + cnt] (non-negative, < 2**w; zero from index lim on) with width w
    (0..64), LSB first, at out[p:]; returns p + ceil(cnt * w / 8). Writes up to 8 bytes past that.
    The loops index views with their range variable: numba then leaves out the negative-index check,
    which would keep LLVM from vectorizing."""
    if w == 0:
        return p
    sv = src[a:max(a, min(a + cnt, lim))]  # the values; zeros after them
    nv = len(sv)
    o = out[p:]
    if w == 8 or w == 16:
        nb = w >> 3
        if nb == 1:
            for k in range(nv):
                o[k] = np.uint8(sv[k])
        else:  # little-endian 16-bit stores
            o16 = o[:2 * nv].view(np.uint16)
            for k in range(nv):
                o16[k] = np.uint16(sv[k])
        z = o[nb * nv:nb * cnt]
        for k in range(len(z)):
            z[k] = 0
        return p + nb * cnt
    uw = np.uint64(w)
    q = 0
    if w < 8 and cnt & 7 == 0:  # a group of 8 values is w bytes
        acc = _U0
        for k in range(nv):
            acc |= np.uint64(sv[k]) << (uw * np.uint64(k & 7))
            if k & 7 == 7:
                _st64(o, q, acc)
                q += w
                acc = _U0
        if nv & 7:
            _st64(o, q, acc)
            q += w
        for _ in range(cnt // 8 - (nv + 7) // 8):
            _st64(o, q, _U0)
            q += w
        return p + q
    if 8 < w < 16 and cnt & 7 == 0:  # a group of 8 values in two words: 4 values (4w < 64 bits) each
        s4 = np.uint64(4 * w)
        for g in range(nv >> 3):
            v8 = sv[8 * g:8 * g + 8]
            lo = np.uint64(v8[0]) | (np.uint64(v8[1]) << uw) | (np.uint64(v8[2]) << (uw + uw)) \
                | (np.uint64(v8[3]) << (uw + uw + uw))
            hi = np.uint64(v8[4]) | (np.uint64(v8[5]) << uw) | (np.uint64(v8[6]) << (uw + uw)) \
                | (np.uint64(v8[7]) << (uw + uw + uw))
            _st64(o, q, lo | (hi << s4))
            _st64(o, q + 8, hi >> (np.uint64(64) - s4))
            q += w
        t = nv & ~7  # the rest: bit by bit below
    else:
        t = 0
    acc = _U0
    nb = 0
    rest = sv[t:]
    for k in range(cnt - t):
        v = np.uint64(rest[k]) if k < len(rest) else _U0
        if w > 32:  # the low 32 bits, then the rest (nb < 32)
            acc |= (v & _LOW32) << np.uint64(nb)
            _st64(o, q, acc)
            q += 4
            acc >>= _U32
            acc |= (v >> _U32) << np.uint64(nb)
            nb += w - 32
        else:
            acc |= v << np.uint64(nb)
            nb += w
        if nb >= 32:
            _st64(o, q, acc)
            q += 4
            acc >>= _U32
            nb -= 32
    while nb > 0:
        o[q] = np.uint8(acc & _UFF)
        acc >>= _U8
        nb -= 8
        q += 1
    return p + q


@inline_kernel
def _bit_length(x):
    """Bits needed for the uint64 x (0 for 0)."""
    w = 0
    if x >> _U32:
        w += 32
        x >>= _U32
    if x >> np.uint64(16):
        w += 16
        x >>= np.uint64(16)
    if x >> _U8:
        w += 8
        x >>= _U8
    if x >> np.uint64(4):
        w += 4
        x >>= np.uint64(4)
    if x >> np.uint64(2):
        w += 2
        x >>= np.uint64(2)
    if x >> _U1:
        w += 1
        x >>= _U1
    return w + np.int64(x)


@kernel_norc
def hybrid(src, m, w, out, p):
    """RLE / bit-packed hybrid of src[:m] (non-negative ints below 2**w, w <= 32) at out[p:]: one RLE run
    if all values are equal, else one bit-packed run (groups of 8 values, the last padded with zeros).
    No shorter RLE runs: finding them costs more than snappy's matching of the packed bytes (of which
    runs are repeated bytes) and saves little once compressed."""
    if m == 0:
        return p
    x = src[0]
    mn = x
    mx = x
    for k in range(m):  # a vectorized reduction (an early exit would not be)
        mn = min(mn, src[k])
        mx = max(mx, src[k])
    if mn == mx:
        p = _uvarint(m << 1, out, p)
        ux = np.uint64(x)
        for _ in range((w + 7) >> 3):
            out[p] = np.uint8(ux & _UFF)
            ux >>= _U8
            p += 1
        return p
    groups = (m + 7) >> 3
    p = _uvarint((groups << 1) | 1, out, p)
    return _pack(src, 0, groups * 8, m, w, out, p)


@kernel_norc
def count_valid(bits, s, nbytes):
    """Set bits in the bitmap bytes bits[s:s + nbytes]."""
    c = 0
    bb = bits[s:s + nbytes]
    for k in range(nbytes):
        b = np.int64(bb[k])
        b = (b & 0x55) + ((b >> 1) & 0x55)
        b = (b & 0x33) + ((b >> 2) & 0x33)
        c += (b & 0x0F) + (b >> 4)
    return c


@kernel_norc
def def_levels(bits, s, n, out, end):
    """Definition levels (0 null, 1 valid) of n rows from the bitmap bits[s:], as the 4-byte length and
    RLE / bit-packed hybrid (bit width 1) of a data page v1, placed so that they end at out[end]. Uses
    out[:end] as scratch. Returns the start. Runs of >= 4 bitmap bytes of all-null or all-valid rows
    are RLE, the other bytes bit-packed (copied)."""
    nfull = n >> 3
    rem = n & 7
    nbytes = nfull + (1 if rem else 0)
    tail_mask = (1 << rem) - 1
    p = 4
    lit = 0
    i = 0
    while i < nfull:
        b = bits[s + i]
        if b == 0 or b == 255:
            j = i + 1
            while j < nfull and bits[s + j] == b:
                j += 1
            cnt = (j - i) * 8
            nxt = j
            if j == nfull and rem and (bits[s + nfull] & tail_mask) == (b & tail_mask):
                cnt += rem
                nxt = nbytes
            if j - i >= 4 or nxt == nbytes:
                if i > lit:
                    p = _uvarint(((i - lit) << 1) | 1, out, p)
                    lb = bits[s + lit:s + i]
                    ob = out[p:p + (i - lit)]
                    for k in range(i - lit):
                        ob[k] = lb[k]
                    p += i - lit
                p = _uvarint(cnt << 1, out, p)
                out[p] = 1 if b else 0
                p += 1
                lit = nxt
            i = nxt if nxt == nbytes else j
        else:
            i += 1
    if lit < nbytes:
        p = _uvarint(((nbytes - lit) << 1) | 1, out, p)
        lb = bits[s + lit:s + nbytes]
        ob = out[p:p + (nbytes - lit)]
        for k in range(nbytes - lit):
            ob[k] = lb[k]
        p += nbytes - lit
        if rem:
            out[p - 1] = out[p - 1] & tail_mask
    ln = p - 4
    out[0] = ln & 255
    out[1] = (ln >> 8) & 255
    out[2] = (ln >> 16) & 255
    out[3] = (ln >> 24) & 255
    start = end - p
    for k in range(p - 1, -1, -1):  # move to end at `end` (start >= 0: the caller reserves enough)
        out[start + k] = out[k]
    return start


@kernel_norc
def plain_fixed(vals, bits, s, has_bits, n, dst):
    """The valid values of vals[:n] (validity bits[s:] if has_bits) into dst (the physical type: int32
    for 8- to 32-bit signed and 8- and 16-bit unsigned, uint32, int64, uint64; >= max(n, 1) long).
    Returns (count, min, max) (min, max: dst[0] when count is 0), compared as the logical type (dst's
    signedness)."""
    if has_bits:
        k = _compact(vals, bits, s, n, dst)
    else:
        for i in range(n):
            dst[i] = vals[i]
        k = n
    mn = dst[0]
    mx = dst[0]
    for i in range(k):
        x = dst[i]
        mn = min(mn, x)
        mx = max(mx, x)
    return k, mn, mx


@kernel_norc
def int_profile(vals, n):
    """(min, max, decreases) of vals[:n] (n >= 1), null slots included: bounds for the valid values
    (a subsequence). decreases: 1 if some value is below the previous one, else 0 (an OR reduction, which
    vectorizes at the values' width)."""
    mn = vals[0]
    mx = vals[0]
    for i in range(n):
        x = vals[i]
        mn = min(mn, x)
        mx = max(mx, x)
    dec = np.uint8(0)
    prv = vals[:n - 1]
    nxt = vals[1:n]
    for i in range(n - 1):
        dec |= np.uint8(nxt[i] < prv[i])
    return mn, mx, np.int64(dec)


@kernel_norc
def valid_profile(vals, bits, s, n):
    """(min, max, changes, decreases) of the valid values of vals[:n] (bitmap bits[s:]), counted between
    consecutive valid values; min, max: vals[0] if none is valid (n >= 1)."""
    mn = vals[0]
    mx = vals[0]
    chg = 0
    dec = 0
    k = 0
    prev = vals[0]
    for i in range(n):
        if (bits[s + (i >> 3)] >> (i & 7)) & 1:
            x = vals[i]
            if k == 0:
                mn = x
                mx = x
            else:
                mn = min(mn, x)
                mx = max(mx, x)
                chg += x != prev
                dec += x < prev
            prev = x
            k += 1
    return mn, mx, chg, dec


@kernel_norc
def dict_usage(idx, bits, s, has_bits, n, flags):
    """How many of the len(flags) dictionary entries the valid indices among idx[:n] use (flags: uint8
    scratch, set to 1 for the used entries)."""
    for k in range(len(flags)):
        flags[k] = 0
    if not has_bits:
        for i in range(n):
            flags[idx[i]] = 1
    else:  # null slots may hold anything: not used as indices
        bv = bits[s:]
        for i in range(n):
            if (bv[i >> 3] >> (i & 7)) & 1:
                flags[idx[i]] = 1
    c = 0
    for k in range(len(flags)):
        c += np.int64(flags[k])
    return c


@inline_kernel
def _int_lookup(x, base, table, dvals, nd):
    """int_dict's entry for value x, added if new: (entry, nd)."""
    slot = np.int64(x) - base
    e = table[slot]
    if e < 0:
        table[slot] = nd
        dvals[nd] = x
        return nd, nd + 1
    return e, nd


@kernel_norc
def int_dict(vals, bits, s, has_bits, n, base, table, dvals, idx):
    """Dictionary of the valid values of vals[:n] (all in [base, base + len(table))) in order of first
    appearance: dvals[:nd] the values, idx[:count] the index of each valid value. table:
    int32, all -1 (left so). Returns (count, nd, min, max) (of the values; dvals[0] when nd is 0)."""
    m = 0
    nd = 0
    if not has_bits:
        for i in range(n):
            e, nd = _int_lookup(vals[i], base, table, dvals, nd)
            idx[i] = e
        m = n
    else:
        bv = bits[s:s + ((n + 7) >> 3)]
        for j in range(len(bv)):
            b = np.int64(bv[j])
            if b == 0:
                continue
            base8 = j << 3
            if b == 255 and base8 + 8 <= n:  # 8 valid values (most bytes when nulls are few)
                v8 = vals[base8:base8 + 8]
                for q in range(8):
                    e, nd = _int_lookup(v8[q], base, table, dvals, nd)
                    idx[m + q] = e
                m += 8
                continue
            for q in range(min(8, n - base8)):  # branch-free: null slots look up slot 0, not kept
                v = (b >> q) & 1
                x = vals[base8 + q]
                slot = np.int64(x) - base if v == 1 else 0
                e = table[slot]
                if (e < 0) & (v == 1):
                    e = nd
                    table[slot] = nd
                    dvals[nd] = x
                    nd += 1
                idx[m] = e
                m += v
    mn = dvals[0]
    mx = dvals[0]
    for k in range(nd):
        x = dvals[k]
        table[np.int64(x) - base] = -1
        mn = min(mn, x)
        mx = max(mx, x)
    return m, nd, mn, mx


@inline_kernel
def _mid_eq(data, a, b, ln):
    """Whether bytes 8 .. ln - 8 of the strings at data[a:] and data[b:] are equal."""
    for q in range(8, ln - 8, 8):
        if _ld64(data, a + q) != _ld64(data, b + q):
            return False
    return True


@inline_kernel
def _str_lookup(offs, data, i, table, keys, first, nd, mask, limit, sh):
    """str_dict's entry for string i, added if new: (entry or -1 when the table is full, nd, length)."""
    a = offs[i]
    ln = offs[i + 1] - a
    if ln >= 8:
        w0 = _ld64(data, a)
        w1 = _ld64(data, a + ln - 8)
    else:
        w0 = _U0
        w1 = _U0
        if ln > 0:
            if a + 8 <= len(data):
                w0 = _ld64(data, a) & (_U64MAX >> np.uint64(64 - 8 * ln))
            else:
                for q in range(ln):
                    w0 |= np.uint64(data[a + q]) << np.uint64(8 * q)
    # the top bits of the product: they depend on every bit of the key
    j = np.int64((((w0 * _K1) ^ w1 ^ np.uint64(ln)) * _K2) >> sh)
    t = table[j]
    while t >= 0 and not ((t >> 32) == ln and keys[2 * j] == w0 and keys[2 * j + 1] == w1
                          and (ln <= 16 or _mid_eq(data, a, offs[first[t & 0xFFFFFFFF]], ln))):
        j = (j + 1) & mask
        t = table[j]
    if t < 0:
        if nd >= limit:
            return -1, nd, ln
        table[j] = nd | (np.int64(ln) << 32)
        keys[2 * j] = w0
        keys[2 * j + 1] = w1
        first[nd] = i
        return nd, nd + 1, ln
    return t & 0xFFFFFFFF, nd, ln


@kernel_norc
def str_dict(offs, data, bits, s, has_bits, n, table, keys, first, idx):
    """Dictionary of the valid strings among offs[:n + 1] / data, in order of first appearance:
    first[:nd] the row of each distinct string, idx[:count] the index of each valid value.
    A string is keyed by its length and two words, its first and its last 8 bytes (zero-padded below 8
    bytes), which are the whole string up to 16 bytes (longer ones: the middle is compared too).
    Open addressing: table (int64, a power of 2 long; filled with -1 here) holds entry | length << 32 per
    slot, keys (uint64, 2 per slot) its two words, so that a probe compares without reading the strings.
    Returns (count, nd, total bytes of the valid values); nd is -1 when the table is over half full (call
    again with a larger one)."""
    for k in range(len(table)):
        table[k] = -1
    mask = len(table) - 1
    limit = len(table) >> 1
    sh = np.uint64(64)
    size = len(table)
    while size > 1:
        size >>= 1
        sh -= _U1
    m = 0
    nd = 0
    tot = 0
    if not has_bits:
        for i in range(n):
            e, nd, ln = _str_lookup(offs, data, i, table, keys, first, nd, mask, limit, sh)
            if e < 0:
                return m, -1, tot
            tot += ln
            idx[m] = e
            m += 1
        return m, nd, tot
    for i in range(n):
        if (bits[s + (i >> 3)] >> (i & 7)) & 1:
            e, nd, ln = _str_lookup(offs, data, i, table, keys, first, nd, mask, limit, sh)
            if e < 0:
                return m, -1, tot
            tot += ln
            idx[m] = e
            m += 1
    return m, nd, tot


@kernel_norc
def plain_bytes(offs, data, bits, s, has_bits, n, take, out, p):
    """PLAIN BYTE_ARRAY (4-byte little-endian length, then the bytes) of the valid values among the n
    strings offs[:n + 1] / data (Arrow string or large_string; or of the strings take[:n] if take is
    not empty), at out[p:]. Returns (end, count, total bytes of the values)."""
    tot = 0
    cnt = 0
    nt = len(take) > 0
    lim = len(data) - 8
    for r in range(n):
        if has_bits and not ((bits[s + (r >> 3)] >> (r & 7)) & 1):
            continue
        i = take[r] if nt else r
        a = offs[i]
        ln = offs[i + 1] - a
        _st64(out, p, np.uint64(ln))
        p += 4
        if a + ln <= lim:
            for q in range(0, ln, 8):
                _st64(out, p + q, _ld64(data, a + q))
        else:
            for q in range(ln):
                out[p + q] = data[a + q]
        p += ln
        tot += ln
        cnt += 1
    return p, cnt, tot


@kernel_norc
def _compact(vals, bits, s, n, dst):
    """The valid values of vals[:n] (bitmap bits[s:]) into dst (>= n long); returns their count.
    Branch-free: every value is stored, the position advances by its validity bit."""
    m = 0
    nfull = n >> 3
    for j in range(nfull):
        b = np.int64(bits[s + j])
        if b == 0:
            continue
        base = j << 3
        for q in range(8):
            dst[m] = vals[base + q]
            m += (b >> q) & 1
    if n & 7:
        b = np.int64(bits[s + nfull])
        for q in range(n & 7):
            dst[m] = vals[(nfull << 3) + q]
            m += (b >> q) & 1
    return m


@kernel_norc
def dict_indices(idx, bits, s, has_bits, n, w, scratch, out, p):
    """RLE_DICTIONARY data of the valid dictionary indices among idx[:n]: the bit width byte w, then the
    hybrid of the indices (compacted through scratch, int32, >= n, when has_bits). Returns (end, count)."""
    out[p] = w
    if not has_bits:
        return hybrid(idx[:n], n, w, out, p + 1), n
    m = _compact(idx, bits, s, n, scratch)
    return hybrid(scratch, m, w, out, p + 1), m


@kernel_norc
def delta_int64(vals, m, scratch, out, p):
    """DELTA_BINARY_PACKED of the integers vals[:m] (deltas modulo 2**64; for INT32 columns the caller
    ensures that max - min < 2**31) at out[p:] (block 128 values, 4 miniblocks). scratch: >= 128 uint64;
    vals: at least one element. Returns (end, min, max) (of vals[:m]; vals[0] when m is 0)."""
    mn = vals[0]
    mx = vals[0]
    for i in range(m):
        x = vals[i]
        mn = min(mn, x)
        mx = max(mx, x)
    p = _uvarint(128, out, p)
    p = _uvarint(4, out, p)
    p = _uvarint(m, out, p)
    p = _zigzag(np.uint64(vals[0]) if m > 0 else _U0, out, p)
    i = 1
    while i < m:
        nb = min(128, m - i)
        lo = _U64MAX  # the smallest delta, sign bit flipped (unsigned order = signed order)
        prv = vals[i - 1:i - 1 + nb]
        cur = vals[i:i + nb]
        for k in range(nb):
            d = np.uint64(cur[k]) - np.uint64(prv[k])
            scratch[k] = d
            lo = min(lo, d ^ _SIGN)
        mind = lo ^ _SIGN
        p = _zigzag(mind, out, p)
        wpos = p
        p += 4
        for mb in range(4):
            a = mb * 32
            if a >= nb:
                out[wpos + mb] = 0
                continue
            b = min(a + 32, nb)
            mb_vals = scratch[a:b]
            acc = _U0
            for k in range(b - a):
                v = mb_vals[k] - mind
                mb_vals[k] = v
                acc |= v
            w = _bit_length(acc)
            out[wpos + mb] = w
            p = _pack(scratch, a, 32, b, w, out, p)
        i += nb
    return p, mn, mx

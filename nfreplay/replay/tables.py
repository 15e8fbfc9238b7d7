"""Kernels for the analysis tables (analysis.frames builds the packets table from the result arrays).

Only what numpy cannot do in one pass: the distinct addresses of the address columns. Each address column
of a step is coded against one hash table shared by all of them (src, dst, out_src, ... hold mostly the
same hosts), so each distinct address is formatted once per step and every column is a take of those
texts. nogil: the streaming run builds a step's tables while its writer thread encodes the previous one.
"""

from __future__ import annotations

import numpy as np

from ._jit import kernel

__all__ = ["address_codes", "new_address_table"]

_M1 = np.uint64(0x9E3779B97F4A7C15)
_M2 = np.uint64(0xC2B2AE3D27D4EB4F)
_LOW32 = np.uint64(0xFFFFFFFF)


def new_address_table(capacity: int = 1024):
    """An empty table for address_codes: (slots, u_hi, u_lo, u_fam, n_used). Entry 0 is reserved for 'no
    address' (family 0), so the distinct addresses are entries 1..n_used-1 in order of first appearance."""
    size = 1
    while size < 2 * capacity:
        size *= 2
    return (np.full(size, -1, np.int64), np.zeros(capacity, np.uint64), np.zeros(capacity, np.uint64),
            np.zeros(capacity, np.uint8), 1)


@kernel
def _slot(h, lo, f, mask):
    x = (lo * _M1) ^ (h * _M2) ^ np.uint64(f)
    x ^= x >> np.uint64(29)
    return np.int64(x & np.uint64(mask))


@kernel
def _rehash(u_hi, u_lo, u_fam, n_u, size):
    slots = np.full(size, -1, np.int64)
    mask = size - 1
    for k in range(1, n_u):
        j = _slot(u_hi[k], u_lo[k], u_fam[k], mask)
        while slots[j] >= 0:
            j = (j + 1) & mask
        slots[j] = k
    return slots


@kernel
def address_codes(hi, lo, family, valid, use_valid, ref_hi, ref_lo, ref_codes, use_ref, slots, u_hi, u_lo, u_fam,
                  n_u):
    """The code of each row's address (int32; 0 where family is neither 4 nor 6, or use_valid and not
    valid[i]) in the table (slots, u_hi, u_lo, u_fam, n_u) of new_address_table, adding the new ones.
    IPv4 addresses are keyed by the low 32 bits of lo (hi ignored), IPv6 by (hi, lo).
    use_ref: ref_codes are the codes an earlier call gave (ref_hi, ref_lo) with the same family array
    (e.g. a packet's source address for its source address after NAT): a row whose address equals its
    reference row's takes that code without a lookup (the same code the lookup would give).
    Returns (codes, slots, u_hi, u_lo, u_fam, n_u): the table, grown if needed (pass it to the next call)."""
    n = len(family)
    codes = np.zeros(n, np.int32)
    mask = len(slots) - 1
    ph = np.uint64(0)
    pl = np.uint64(0)
    pf = np.uint8(0)
    pc = 0
    for i in range(n):
        f = family[i]
        if (f != 4 and f != 6) or (use_valid and not valid[i]):
            continue
        if f == 4:
            h = np.uint64(0)
            lw = np.uint64(lo[i]) & _LOW32
        else:
            h = np.uint64(hi[i])
            lw = np.uint64(lo[i])
        if use_ref and ref_codes[i] > 0:  # the reference row's address (same family): its code
            if f == 4:
                same = (np.uint64(ref_lo[i]) & _LOW32) == lw
            else:
                same = np.uint64(ref_hi[i]) == h and np.uint64(ref_lo[i]) == lw
            if same:
                codes[i] = ref_codes[i]
                continue
        if pc > 0 and lw == pl and h == ph and f == pf:  # runs of the same address: no lookup
            codes[i] = pc
            continue
        j = _slot(h, lw, f, mask)
        while True:
            s = slots[j]
            if s < 0:
                if n_u == len(u_hi):
                    m = 2 * len(u_hi)
                    nh = np.zeros(m, np.uint64)
                    nl = np.zeros(m, np.uint64)
                    nf = np.zeros(m, np.uint8)
                    nh[:n_u] = u_hi[:n_u]
                    nl[:n_u] = u_lo[:n_u]
                    nf[:n_u] = u_fam[:n_u]
                    u_hi, u_lo, u_fam = nh, nl, nf
                u_hi[n_u] = h
                u_lo[n_u] = lw
                u_fam[n_u] = f
                slots[j] = n_u
                s = n_u
                n_u += 1
                if 2 * n_u > len(slots):
                    slots = _rehash(u_hi, u_lo, u_fam, n_u, 2 * len(slots))
                    mask = len(slots) - 1
                break
            if u_lo[s] == lw and u_hi[s] == h and u_fam[s] == f:
                break
            j = (j + 1) & mask
        codes[i] = s
        ph, pl, pf, pc = h, lw, f, s
    return codes, slots, u_hi, u_lo, u_fam, n_u

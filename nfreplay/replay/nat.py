"""NAT core (nf_nat_core.c): bindings for new connections and the rewrite of every packet.

Spec: shared/spec/hooks-rules-nat.md §2.4 and §5. Kernel: net/netfilter/nf_nat_core.c
(`get_unique_tuple`, `find_best_ips_proto`, `nf_nat_l4proto_unique_tuple`, `nf_nat_setup_info`,
`__nf_nat_alloc_null_binding`, `nf_nat_packet`), nf_nat_masquerade.c, nf_nat_redirect.c, xt_NETMAP.c.

Tuples travel as uint64[6] arrays: src_hi, src_lo, dst_hi, dst_lo, sport, dport ("ports" are the
ICMP id for ICMP; for ICMP dport holds type << 8 | code and is never manipulated). The conntrack
table is passed as its arrays E, L, H (conntrack/table.py; addresses there are int64 bit patterns).
No kernel allocates: the caller passes T, a uint64[8, 6] scratch (new_nat_scratch()), whose rows the
functions use as fixed temporaries (rows 0-2 setup_info / nat_packet, 3 _used, 4-6 find_best_ips).

Randomness (the kernel's get_random_u16) comes from a seeded xorshift generator kept in
NatState.rng, so a run is reproducible; its seed is recorded in the summary.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np

from ._jit import kernel
from .conntrack import ct_tuple_taken_a
from .conntrack.bysrc import bysrc_head, bysrc_insert
from .conntrack.table import (
    C_BYSRC_NEXT,
    C_FAMILY,
    C_O_SPORT,
    C_O_SRC_HI,
    C_O_SRC_LO,
    C_PROTO,
    C_R_DPORT,
    C_R_DST_HI,
    C_R_DST_LO,
    C_R_SPORT,
    C_R_SRC_HI,
    C_R_SRC_LO,
    C_STATUS,
    C_USED,
    C_ZONE,
    L_EXPIRES,
)

MANIP_SRC = 0
MANIP_DST = 1

# nat_flags bits (compile.py NAT rows)
NAT_RANDOM = 1
NAT_RANDOM_FULLY = 2
NAT_PERSISTENT = 4
NAT_PROTO_SPECIFIED = 8
NAT_MAP_IPS = 16

NAT_KIND_SNAT = 1
NAT_KIND_DNAT = 2
NAT_KIND_MASQUERADE = 3
NAT_KIND_REDIRECT = 4
NAT_KIND_NETMAP = 5

log = logging.getLogger(__name__)

NF_NAT_MAX_ATTEMPTS = 128
_M32 = np.uint64(0xFFFFFFFF)
V4_MAPPED_HI_LO = np.uint64(0x0000FFFF00000000)


class NatState(NamedTuple):
    rng: np.ndarray  # uint64[1] xorshift64* state
    stats: np.ndarray  # int64 vector: STAT_* counters, then the REJECT-response log (RESP_*)


STAT_BINDINGS = 0
STAT_NULL = 1
STAT_PORT_CHANGED = 2
STAT_RANDOMISED = 3
STAT_FAILED = 4
STAT_BYSRC = 5  # SRC bindings that reused an existing mapping of the same source (find_appropriate_src)
# The REJECT-response log (a rare path; it lives in this vector so that no per-packet call carries one
# more array): stats[RESP_USED] rows used, stats[RESP_LOST] rows that found the log full, then row k at
# RESP_BASE + RESP_W * k = (packet index, src_hi, src_lo, dst_hi, dst_lo, sport, dport, out iface) of the
# response as it left after OUTPUT, the NAT core and POSTROUTING (out iface -1: dropped on its way out).
RESP_USED = 8
RESP_LOST = 9
RESP_BASE = 16
RESP_W = 8


def new_nat_scratch() -> np.ndarray:
    """The uint64[8, 6] scratch every NAT kernel takes as T."""
    return np.zeros((8, 6), dtype=np.uint64)


def new_nat_state(seed: int, responses: int = 0) -> NatState:
    """NAT state for one replay; `responses`: rows of the REJECT-response log (0: responses are not
    logged). Size it to the packets of one kernel call (each packet sends at most one response) and
    drain it after each call (drain_responses)."""
    s = np.zeros(1, dtype=np.uint64)
    s[0] = np.uint64((seed * 0x9E3779B97F4A7C15 + 0x2545F4914F6CDD1D) & 0xFFFFFFFFFFFFFFFF) or np.uint64(1)
    return NatState(rng=s, stats=np.zeros(RESP_BASE + RESP_W * max(int(responses), 0), dtype=np.int64))


RESPONSE_FIELDS = ("packet_index", "src_hi", "src_lo", "dst_hi", "dst_lo", "sport", "dport", "iface")


def drain_responses(nst: NatState) -> dict:
    """The logged REJECT responses (dict of int64 arrays per RESPONSE_FIELDS; addresses as int64 bit
    patterns of the uint64 halves), and reset the log."""
    v = nst.stats
    k = int(v[RESP_USED]) if v.shape[0] > RESP_BASE else 0
    rows = v[RESP_BASE:RESP_BASE + RESP_W * k].reshape(k, RESP_W)
    out = {name: rows[:, j].copy() for j, name in enumerate(RESPONSE_FIELDS)}
    if v.shape[0] > RESP_BASE:
        v[RESP_USED] = 0
    return out


def reject_possible(ruleset) -> bool:
    """Whether the ruleset has a REJECT rule (then the driver sizes the response log)."""
    from .rules import model as m

    return any(isinstance(e, m.Reject) for t in ruleset.tables for c in t.chains for r in c.rules for e in r.exprs)


def take_responses(nst: NatState, res, base: int) -> None:
    """Drain the response log into the PacketResults res whose row 0 is global packet `base`
    (reject_src/dst/sport/dport/iface of the rejected packets whose response was logged)."""
    r = drain_responses(nst)
    if int(nst.stats[RESP_LOST]):
        log.warning("REJECT-response log full: %d responses not recorded", int(nst.stats[RESP_LOST]))
        nst.stats[RESP_LOST] = 0
    i = r["packet_index"] - base
    if not len(i):
        return
    res.reject_src_hi[i] = r["src_hi"].view(np.uint64)
    res.reject_src_lo[i] = r["src_lo"].view(np.uint64)
    res.reject_dst_hi[i] = r["dst_hi"].view(np.uint64)
    res.reject_dst_lo[i] = r["dst_lo"].view(np.uint64)
    res.reject_sport[i] = r["sport"]
    res.reject_dport[i] = r["dport"]
    res.reject_iface[i] = r["iface"]


@kernel
def log_response(nst, pkt_index, cur, icmp, oif):
    """Append one REJECT response (its tuple cur as it left, or oif -1 when it did not) to the log;
    an ICMP error has no ports (0, 0)."""
    v = nst.stats
    k = v[RESP_USED]
    r = RESP_BASE + RESP_W * k
    if r + RESP_W > v.shape[0]:
        v[RESP_LOST] += 1
        return
    v[r] = pkt_index
    for j in range(4):
        v[r + 1 + j] = np.int64(cur[j])
    v[r + 5] = 0 if icmp else np.int64(cur[4] & np.uint64(0xFFFF))
    v[r + 6] = 0 if icmp else np.int64(cur[5] & np.uint64(0xFFFF))
    v[r + 7] = oif
    v[RESP_USED] = k + 1


@kernel
def random_u16(st):
    x = st.rng[0]
    x ^= (x >> np.uint64(12))
    x ^= (x << np.uint64(25)) & np.uint64(0xFFFFFFFFFFFFFFFF)
    x ^= (x >> np.uint64(27))
    st.rng[0] = x
    return np.int64(((x * np.uint64(0x2545F4914F6CDD1D)) >> np.uint64(48)) & np.uint64(0xFFFF))


# ------------------------------------------------------------------ jhash (include/linux/jhash.h)
@kernel
def _rol32(x, k):
    x = x & _M32
    return ((x << np.uint64(k)) | (x >> np.uint64(32 - k))) & _M32


@kernel
def jhash2(words, n, initval):
    """jhash2(k, length, initval) over uint64 array `words` holding u32 values."""
    a = (np.uint64(0xDEADBEEF) + (np.uint64(n) << np.uint64(2)) + (np.uint64(initval) & _M32)) & _M32
    b = a
    c = a
    i = 0
    length = n
    while length > 3:
        a = (a + words[i]) & _M32
        b = (b + words[i + 1]) & _M32
        c = (c + words[i + 2]) & _M32
        # __jhash_mix
        a = (a - c) & _M32
        a ^= _rol32(c, 4)
        c = (c + b) & _M32
        b = (b - a) & _M32
        b ^= _rol32(a, 6)
        a = (a + c) & _M32
        c = (c - b) & _M32
        c ^= _rol32(b, 8)
        b = (b + a) & _M32
        a = (a - c) & _M32
        a ^= _rol32(c, 16)
        c = (c + b) & _M32
        b = (b - a) & _M32
        b ^= _rol32(a, 19)
        a = (a + c) & _M32
        c = (c - b) & _M32
        c ^= _rol32(b, 4)
        b = (b + a) & _M32
        length -= 3
        i += 3
    if length == 0:
        return c
    if length >= 3:
        c = (c + words[i + 2]) & _M32
    if length >= 2:
        b = (b + words[i + 1]) & _M32
    a = (a + words[i]) & _M32
    # __jhash_final
    c ^= b
    c = (c - _rol32(b, 14)) & _M32
    a ^= c
    a = (a - _rol32(c, 11)) & _M32
    b ^= a
    b = (b - _rol32(a, 25)) & _M32
    c ^= b
    c = (c - _rol32(b, 16)) & _M32
    a ^= c
    a = (a - _rol32(c, 4)) & _M32
    b ^= a
    b = (b - _rol32(a, 14)) & _M32
    c ^= b
    c = (c - _rol32(b, 24)) & _M32
    return c


@kernel
def _bswap32(x):
    x = x & _M32
    return (((x & np.uint64(0xFF)) << np.uint64(24)) | ((x & np.uint64(0xFF00)) << np.uint64(8))
            | ((x >> np.uint64(8)) & np.uint64(0xFF00)) | ((x >> np.uint64(24)) & np.uint64(0xFF)))


@kernel
def _addr_words(family, hi, lo, out):
    """The address as the kernel's union nf_inet_addr: 4 u32 words as read from memory on a
    little-endian host (network-order bytes reinterpreted), v4 in word 0 and zeros after."""
    if family == 4:
        out[0] = _bswap32(lo & _M32)
        out[1] = np.uint64(0)
        out[2] = np.uint64(0)
        out[3] = np.uint64(0)
    else:
        out[0] = _bswap32(hi >> np.uint64(32))
        out[1] = _bswap32(hi & _M32)
        out[2] = _bswap32(lo >> np.uint64(32))
        out[3] = _bswap32(lo & _M32)


@kernel
def _word_host(family, hi, lo, i):
    """Host-order (ntohl) value of address word i."""
    if family == 4:
        return lo & _M32
    if i == 0:
        return hi >> np.uint64(32)
    if i == 1:
        return hi & _M32
    if i == 2:
        return lo >> np.uint64(32)
    return lo & _M32


@kernel
def find_best_ips(family, zone, t, manip, flags, min_hi, min_lo, max_hi, max_lo, T):
    """find_best_ips_proto: choose the address of tuple t (uint64[6]) in [min, max]; writes t.
    Uses rows 4-6 of the scratch T."""
    if (flags & NAT_MAP_IPS) == 0:
        return
    si = 0 if manip == MANIP_SRC else 2
    if min_hi == max_hi and min_lo == max_lo:
        t[si] = min_hi
        t[si + 1] = min_lo
        return
    mx = 0 if family == 4 else 3
    w = T[4]
    _addr_words(family, t[0], t[1], w)
    dw = T[5]
    _addr_words(family, t[2], t[3], dw)
    if flags & NAT_PERSISTENT:
        init = np.uint64(0)
    else:
        init = (dw[mx] ^ np.uint64(zone)) & _M32
    j = jhash2(w, 4, init)
    full = False
    res = T[6]
    for i in range(mx + 1):
        if not full:
            minip = _word_host(family, min_hi, min_lo, i)
            maxip = _word_host(family, max_hi, max_lo, i)
            dist = (maxip - minip + np.uint64(1)) & _M32
        else:
            minip = np.uint64(0)
            dist = _M32
        v = (minip + ((j * dist) >> np.uint64(32))) & _M32
        res[i] = v
        if v != _word_host(family, max_hi, max_lo, i):
            full = True
        if (flags & NAT_PERSISTENT) == 0:
            j ^= dw[i]
    if family == 4:
        t[si] = np.uint64(0)
        t[si + 1] = V4_MAPPED_HI_LO | res[0]
    else:
        t[si] = (res[0] << np.uint64(32)) | res[1]
        t[si + 1] = (res[2] << np.uint64(32)) | res[3]


@kernel
def addr_in_range(hi, lo, min_hi, min_lo, max_hi, max_lo):
    if hi < min_hi or (hi == min_hi and lo < min_lo):
        return False
    if hi > max_hi or (hi == max_hi and lo > max_lo):
        return False
    return True


@kernel
def _port_slot(manip):
    return 4 if manip == MANIP_SRC else 5


@kernel
def l4_in_range(proto, t, manip, pmin, pmax):
    """l4proto_in_range: ICMP checks the id (sport slot) for both manips; TCP/UDP the manip's port."""
    if proto == 1 or proto == 58:
        v = np.int64(t[4])
    elif proto == 6 or proto == 17 or proto == 136 or proto == 132 or proto == 33:
        v = np.int64(t[_port_slot(manip)])
    else:
        return True
    return pmin <= v <= pmax


@kernel
def invert_into(family, proto, t, out):
    """nf_ct_invert_tuple of an original-direction tuple t (uint64[6]) into out."""
    out[0] = t[2]
    out[1] = t[3]
    out[2] = t[0]
    out[3] = t[1]
    if proto == 1 or proto == 58:
        # id kept; type -> reply type (only query types reach NAT)
        out[4] = t[4]
        typ = (t[5] >> np.uint64(8)) & np.uint64(0xFF)
        code = t[5] & np.uint64(0xFF)
        rt = typ
        if proto == 1:
            if typ == 8:
                rt = np.uint64(0)
            elif typ == 0:
                rt = np.uint64(8)
            elif typ == 13:
                rt = np.uint64(14)
            elif typ == 14:
                rt = np.uint64(13)
            elif typ == 15:
                rt = np.uint64(16)
            elif typ == 16:
                rt = np.uint64(15)
            elif typ == 17:
                rt = np.uint64(18)
            elif typ == 18:
                rt = np.uint64(17)
        else:
            if typ == 128:
                rt = np.uint64(129)
            elif typ == 129:
                rt = np.uint64(128)
            elif typ == 139:
                rt = np.uint64(140)
            elif typ == 140:
                rt = np.uint64(139)
        out[5] = (rt << np.uint64(8)) | code
    else:
        out[4] = t[5]
        out[5] = t[4]


# ------------------------------------------------------------------ bindings on conntrack entries
@kernel
def _used(E, L, H, fam, proto, zone, t, slot, now_ns, T):
    """nf_nat_used_tuple: the inverse of candidate t (original-direction form) is a tuple of another
    live entry. Uses row 3 of T."""
    inv = T[3]
    invert_into(fam, proto, t, inv)
    return ct_tuple_taken_a(E, L, H, fam, np.int64(inv[0]), np.int64(inv[1]), np.int64(inv[2]), np.int64(inv[3]),
                            proto, np.int64(inv[4]), np.int64(inv[5]), zone, slot, now_ns)


@kernel
def _l4_unique(E, L, H, fam, proto, zone, t, manip, flags, pmin, pmax, slot, now_ns, nst, T):
    """nf_nat_l4proto_unique_tuple."""
    if proto == 1 or proto == 58:
        ki = 4
        if (flags & NAT_PROTO_SPECIFIED) == 0:
            mn = np.int64(0)
            size = np.int64(65536)
        else:
            mn = pmin
            size = pmax - pmin + 1
    elif proto == 6 or proto == 17 or proto == 136 or proto == 132 or proto == 33:
        ki = _port_slot(manip)
        if (flags & NAT_PROTO_SPECIFIED) == 0:
            if manip == MANIP_DST:
                return
            p = np.int64(t[ki])
            if p < 1024:
                if p < 512:
                    mn = np.int64(1)
                    size = np.int64(511)
                else:
                    mn = np.int64(600)
                    size = np.int64(1023 - 600 + 1)
            else:
                mn = np.int64(1024)
                size = np.int64(65535 - 1024 + 1)
        else:
            lo = pmin
            hi = pmax
            if hi < lo:
                lo, hi = hi, lo
            mn = lo
            size = hi - lo + 1
    else:
        return
    if (flags & (NAT_RANDOM | NAT_RANDOM_FULLY)) != 0 or manip != MANIP_DST:
        off = random_u16(nst)
        nst.stats[STAT_RANDOMISED] += 1
    else:
        off = np.int64(0)
    attempts = size
    if attempts > NF_NAT_MAX_ATTEMPTS:
        attempts = np.int64(NF_NAT_MAX_ATTEMPTS)
    while True:
        for _i in range(attempts):
            t[ki] = np.uint64(mn + (off % size))
            off += 1
            if not _used(E, L, H, fam, proto, zone, t, slot, now_ns, T):
                return
        if attempts >= size or attempts < 16:
            return
        attempts = attempts // 2
        off = random_u16(nst)


@kernel
def find_appropriate_src(E, L, fam, proto, zone, curr, flags, min_hi, min_lo, max_hi, max_lo, pmin, pmax, now_ns,
                         out):
    """find_appropriate_src (get_unique_tuple step 1b, SRC manip only): the entries with the same
    ORIGINAL source as curr (same_src: protocol, source address, source port / ICMP id; same zone), newest
    first (the bucket's hlist order); the first whose mapped source (from its REPLY tuple) combined with
    curr's destination is in range is written to out and True returned. An entry past its expiry time
    is gone (the model's lazy expiry; the kernel's GC worker may still let it be found for a while)."""
    shi = np.int64(curr[0])
    slo = np.int64(curr[1])
    sp = np.int64(curr[4])
    icmp = proto == 1 or proto == 58
    v = bysrc_head(E, fam, proto, zone, shi, slo, sp)
    while v != 0:
        s = v - 1
        v = E[s, C_BYSRC_NEXT]
        if (E[s, C_PROTO] != proto or E[s, C_O_SRC_HI] != shi or E[s, C_O_SRC_LO] != slo
                or E[s, C_O_SPORT] != sp or E[s, C_ZONE] != zone or E[s, C_FAMILY] != fam):
            continue
        if E[s, C_USED] == 2 and now_ns >= L[s, L_EXPIRES]:
            continue
        # nf_ct_invert_tuple(result, REPLY); result->dst = tuple->dst
        out[0] = np.uint64(E[s, C_R_DST_HI])
        out[1] = np.uint64(E[s, C_R_DST_LO])
        out[2] = curr[2]
        out[3] = curr[3]
        out[4] = np.uint64(E[s, C_R_SPORT] if icmp else E[s, C_R_DPORT]) & np.uint64(0xFFFF)
        out[5] = curr[5]
        if (flags & NAT_MAP_IPS) != 0 and not addr_in_range(out[0], out[1], min_hi, min_lo, max_hi, max_lo):
            continue
        if (flags & NAT_PROTO_SPECIFIED) != 0 and not l4_in_range(proto, out, MANIP_SRC, pmin, pmax):
            continue
        return True
    return False


@kernel
def get_unique_tuple(E, L, H, fam, proto, zone, curr, manip, flags, min_hi, min_lo, max_hi, max_lo, pmin, pmax,
                     slot, now_ns, nst, out, T):
    """get_unique_tuple (nf_nat_core.c): writes the chosen original-direction tuple into out."""
    for k in range(6):
        out[k] = curr[k]
    rnd = (flags & (NAT_RANDOM | NAT_RANDOM_FULLY)) != 0
    if manip == MANIP_SRC and not rnd:
        inr = True
        if (flags & NAT_MAP_IPS) != 0 and not addr_in_range(curr[0], curr[1], min_hi, min_lo, max_hi, max_lo):
            inr = False
        if inr and (flags & NAT_PROTO_SPECIFIED) != 0 and not l4_in_range(proto, curr, MANIP_SRC, pmin, pmax):
            inr = False
        if inr:
            if not _used(E, L, H, fam, proto, zone, curr, slot, now_ns, T):
                return
        elif find_appropriate_src(E, L, fam, proto, zone, curr, flags, min_hi, min_lo, max_hi, max_lo, pmin, pmax,
                                  now_ns, out):
            if not _used(E, L, H, fam, proto, zone, out, slot, now_ns, T):
                nst.stats[STAT_BYSRC] += 1
                return
        for k in range(6):  # step 2 starts again from the original tuple (*tuple = *orig_tuple)
            out[k] = curr[k]
    find_best_ips(fam, zone, out, manip, flags, min_hi, min_lo, max_hi, max_lo, T)
    if not rnd:
        if (flags & NAT_PROTO_SPECIFIED) != 0:
            if l4_in_range(proto, out, manip, pmin, pmax) and (pmin == pmax or not _used(E, L, H, fam, proto, zone,
                                                                                          out, slot, now_ns, T)):
                return
        elif not _used(E, L, H, fam, proto, zone, out, slot, now_ns, T):
            return
    before = out[4] if (manip == MANIP_SRC or proto == 1 or proto == 58) else out[5]
    _l4_unique(E, L, H, fam, proto, zone, out, manip, flags, pmin, pmax, slot, now_ns, nst, T)
    after = out[4] if (manip == MANIP_SRC or proto == 1 or proto == 58) else out[5]
    if before != after:
        nst.stats[STAT_PORT_CHANGED] += 1


@kernel
def setup_info(E, L, H, slot, manip, flags, min_hi, min_lo, max_hi, max_lo, pmin, pmax, now_ns, nst, T):
    """nf_nat_setup_info on an unconfirmed entry: curr = invert(REPLY); choose; REPLY = invert(new);
    set SRC_NAT/DST_NAT when changed and the *_NAT_DONE bit. Addresses min/max as uint64."""
    fam = E[slot, C_FAMILY]
    proto = E[slot, C_PROTO]
    zone = E[slot, C_ZONE]
    rep = T[0]
    rep[0] = np.uint64(E[slot, C_R_SRC_HI])
    rep[1] = np.uint64(E[slot, C_R_SRC_LO])
    rep[2] = np.uint64(E[slot, C_R_DST_HI])
    rep[3] = np.uint64(E[slot, C_R_DST_LO])
    rep[4] = np.uint64(E[slot, C_R_SPORT])
    rep[5] = np.uint64(E[slot, C_R_DPORT])
    curr = T[1]
    invert_into(fam, proto, rep, curr)
    new = T[2]
    get_unique_tuple(E, L, H, fam, proto, zone, curr, manip, flags, min_hi, min_lo, max_hi, max_lo, pmin, pmax,
                     slot, now_ns, nst, new, T)
    changed = False
    for k in range(6):
        if new[k] != curr[k]:
            changed = True
    if changed:
        invert_into(fam, proto, new, rep)
        E[slot, C_R_SRC_HI] = np.int64(rep[0])
        E[slot, C_R_SRC_LO] = np.int64(rep[1])
        E[slot, C_R_DST_HI] = np.int64(rep[2])
        E[slot, C_R_DST_LO] = np.int64(rep[3])
        E[slot, C_R_SPORT] = np.int64(np.int32(rep[4]))
        E[slot, C_R_DPORT] = np.int64(np.int32(rep[5]))
        if manip == MANIP_SRC:
            E[slot, C_STATUS] |= np.int64(1 << 4)
        else:
            E[slot, C_STATUS] |= np.int64(1 << 5)
    if manip == MANIP_SRC:
        if (E[slot, C_STATUS] & np.int64(1 << 7)) == 0:
            bysrc_insert(E, slot)  # hlist_add_head_rcu(&ct->nat_bysource, ...): null bindings included
        E[slot, C_STATUS] |= np.int64(1 << 7)
    else:
        E[slot, C_STATUS] |= np.int64(1 << 8)
    nst.stats[STAT_BINDINGS] += 1
    return changed


@kernel
def null_binding(E, L, H, slot, manip, now_ns, nst, T):
    """__nf_nat_alloc_null_binding: single address (REPLY.dst for SRC, REPLY.src for DST), MAP_IPS only."""
    if manip == MANIP_SRC:
        hi = np.uint64(E[slot, C_R_DST_HI])
        lo = np.uint64(E[slot, C_R_DST_LO])
    else:
        hi = np.uint64(E[slot, C_R_SRC_HI])
        lo = np.uint64(E[slot, C_R_SRC_LO])
    setup_info(E, L, H, slot, manip, NAT_MAP_IPS, hi, lo, hi, lo, np.int64(0), np.int64(0), now_ns, nst, T)
    nst.stats[STAT_BINDINGS] -= 1
    nst.stats[STAT_NULL] += 1


@kernel
def nat_packet(E, slot, d, manip, cur, T):
    """nf_nat_packet: rewrite the current tuple cur (uint64[6]) of a packet of direction d at a hook of
    manip type; returns 1 (source changed) / 2 (destination changed) / 0. Uses rows 0-1 of T."""
    st = E[slot, C_STATUS]
    fam = E[slot, C_FAMILY]
    proto = E[slot, C_PROTO]
    if manip == MANIP_SRC:
        bit = np.int64(1 << 4)
    else:
        bit = np.int64(1 << 5)
    if d == 0:
        do = (st & bit) != 0
    else:
        do = (st & ((np.int64(1 << 4) | np.int64(1 << 5)) ^ bit)) != 0
    if not do:
        return 0
    other = T[0]
    c = C_R_SRC_HI if d == 0 else C_O_SRC_HI
    for k in range(6):
        other[k] = np.uint64(E[slot, c + k])
    target = T[1]
    invert_into(fam, proto, other, target)
    icmp = proto == 1 or proto == 58
    if manip == MANIP_SRC:
        cur[0] = target[0]
        cur[1] = target[1]
        if icmp:
            cur[4] = target[4]
        elif proto == 6 or proto == 17 or proto == 136 or proto == 132 or proto == 33:
            cur[4] = target[4]
        return 1
    cur[2] = target[2]
    cur[3] = target[3]
    if icmp:
        cur[4] = target[4]
    elif proto == 6 or proto == 17 or proto == 136 or proto == 132 or proto == 33:
        cur[5] = target[5]
    return 2

"""Conntrack kernels: table primitives, nf_conntrack_in, confirm, protocol handlers (spec §1-§10).

All functions are jitted with the one `kernel` decorator. They never raise for data problems: they
return status / reason codes. Integer arithmetic in TCP sequence space is done in int64 masked to 32
bits so that NUMBA_DISABLE_JIT=1 gives the same answers.

Data passing (docs/pipeline.md "Kernel data passing"): the table is the arrays E, L, H, M, X, F of
table.py, the parameters the int64 vector P (params.P_*), the event log the int64 array EV, the packet
the int64 vector pv (schema.PV_*). Internal kernels take only the arrays they use. The ``*_a`` /
``ct_in_pv`` kernels are the array-level API the pipeline calls; the historical ``ct_in(tab, prm, pk,
i, ...)`` family are thin wrappers over them.
"""

from __future__ import annotations

import numpy as np

from nfreplay.replay._jit import borrow, inline_kernel, kernel, kernel_norc, prefetch
from nfreplay.replay.conntrack.bysrc import bysrc_remove
from nfreplay.replay.conntrack.params import (
    P_ASSUME_GOOD,
    P_BE_LIBERAL,
    P_CHECKSUM,
    P_CT_MAX,
    P_EXPECT_MAX,
    P_FTP_EXPECT,
    P_GENERIC,
    P_GRE,
    P_GRE_STREAM,
    P_ICMP,
    P_ICMPV6,
    P_IGNORE_INVALID_RST,
    P_LOOSE,
    P_MAX_RETRANS,
    P_SCTP,
    P_TCP,
    P_UDP,
    P_UDP_STREAM,
    R_ACK_OVER,
    R_BAD_HDR,
    R_CAPTURE_TRUNC,
    R_CSUM,
    R_FLAGS,
    R_FRAGMENT,
    R_ICMP_DADDR,
    R_ICMP_FAMILY,
    R_ICMP_INNER,
    R_ICMP_NEW,
    R_ICMP_NOMATCH,
    R_ICMP_TYPE,
    R_INVALID_NEW,
    R_NO_INVERT,
    R_NO_PICKUP,
    R_RST,
    R_SEQ_OVER,
    R_SHORT,
    R_STATE,
    R_TABLE_FULL,
    R_TRUNC,
    R_UDP_LEN,
)
from nfreplay.replay.conntrack.table import (
    BLK_SHIFT,
    C_BY,
    C_BYSRC_HEAD,
    C_CT_ID,
    C_ECACHE,
    C_FAMILY,
    C_FIRST_PKT,
    C_FIRST_TS,
    C_FTP_NSEQ,
    C_FTP_SEQ,
    C_GEN,
    C_HELPER,
    C_LAST_ACK,
    C_LAST_DIR,
    C_LAST_END,
    C_LAST_FLAGS,
    C_LAST_INDEX,
    C_LAST_PKT,
    C_LAST_SEQ,
    C_LAST_TS,
    C_LAST_WIN,
    C_LAST_WSCALE,
    C_MARK,
    C_MASTER,
    C_O_DPORT,
    C_O_DST_HI,
    C_O_DST_LO,
    C_O_SPORT,
    C_O_SRC_HI,
    C_O_SRC_LO,
    C_PK,
    C_PROTO,
    C_R_DPORT,
    C_R_DST_HI,
    C_R_DST_LO,
    C_R_SPORT,
    C_R_SRC_HI,
    C_R_SRC_LO,
    C_RETRANS,
    C_STATUS,
    C_STREAM_TS,
    C_TCP_STATE,
    C_TD_END,
    C_TD_FLAGS,
    C_TD_MAXACK,
    C_TD_MAXEND,
    C_TD_MAXWIN,
    C_TD_SCALE,
    C_TIMEOUT_REL,
    C_TUPLE,
    C_USED,
    C_ZONE,
    CF_BYTES_ORIG,
    CF_BYTES_REPLY,
    CF_END,
    CF_END_TS_NS,
    CF_FAMILY,
    CF_FINAL_TCP_STATE,
    CF_FIRST_PACKET,
    CF_FIRST_TS_NS,
    CF_LAST_PACKET,
    CF_LAST_TS_NS,
    CF_MARK,
    CF_ORIG_DPORT,
    CF_ORIG_DST_HI,
    CF_ORIG_DST_LO,
    CF_ORIG_SPORT,
    CF_ORIG_SRC_HI,
    CF_ORIG_SRC_LO,
    CF_PACKETS_ORIG,
    CF_PACKETS_REPLY,
    CF_PROTO,
    CF_REPLY_DPORT,
    CF_REPLY_DST_HI,
    CF_REPLY_DST_LO,
    CF_REPLY_SPORT,
    CF_REPLY_SRC_HI,
    CF_REPLY_SRC_LO,
    CF_STATUS,
    CF_ZONE,
    EV_ASSURED,
    EV_HELPER,
    EV_MARK,
    EV_PROTOINFO,
    EV_REPLY,
    L_CLOSED,
    L_EXPIRES,
    L_GEN,
    M_BLK_OFF,
    M_COUNT,
    M_CSUM_BAD,
    M_EARLY_DROP,
    M_EXPECT_CREATED,
    M_FLOW_OVERFLOW,
    M_FREE_TOP,
    M_GEN,
    M_HELPER_DROP,
    M_INSERT_FAILED,
    M_INV_ARG,
    M_INV_SLOT,
    M_LEN,
    M_N_BLK,
    M_N_EXPECT,
    M_NEXT_ID,
    M_PENDING,
    M_Q_CAP,
    M_Q_HEAD,
    M_Q_OFF,
    M_Q_TAIL,
    M_REAP_MIN,
    M_SCRATCH,
    M_TABLE_FULL,
    X_CREATED,
    X_DPORT,
    X_DST_HI,
    X_DST_LO,
    X_EXPIRES,
    X_FAMILY,
    X_MASTER,
    X_MASTER_ID,
    X_PROTO,
    X_SRC_HI,
    X_SRC_LO,
    X_USED,
    X_ZONE,
)
from nfreplay.replay.schema import (
    N_PV,
    PV_DPORT,
    PV_DST_HI,
    PV_DST_LO,
    PV_FAMILY,
    PV_ICMP_CODE,
    PV_ICMP_ID,
    PV_ICMP_TYPE,
    PV_INDEX,
    PV_INNER_DPORT,
    PV_INNER_DST_HI,
    PV_INNER_DST_LO,
    PV_INNER_OK,
    PV_INNER_PROTO,
    PV_INNER_SPORT,
    PV_INNER_SRC_HI,
    PV_INNER_SRC_LO,
    PV_IP_HLEN,
    PV_IP_LEN,
    PV_L3_OFF,
    PV_L4_CSUM,
    PV_L4_LEN,
    PV_PROTO,
    PV_SPORT,
    PV_SRC_HI,
    PV_SRC_LO,
    PV_STATUS,
    PV_TCP_ACK,
    PV_TCP_FLAGS,
    PV_TCP_HLEN,
    PV_TCP_SACK,
    PV_TCP_SACKOK,
    PV_TCP_SEQ,
    PV_TCP_WIN,
    PV_TCP_WSCALE,
    PV_TS,
    load_pv,
    load_pv_block,
)

NS = 1_000_000_000
U32 = 0xFFFFFFFF

# status bits
S_EXPECTED = 1
S_SEEN_REPLY = 2
S_ASSURED = 4
S_CONFIRMED = 8
S_SRC_NAT_DONE = 1 << 7
S_DYING = 1 << 9
S_FIXED_TIMEOUT = 1 << 10
S_NAT_CLASH = 1 << 12
S_HELPER = 1 << 13

# ctinfo
CI_ESTABLISHED = 0
CI_RELATED = 1
CI_NEW = 2
CI_EST_REPLY = 3
CI_REL_REPLY = 4
CI_UNTRACKED = 7
CI_INVALID = -1

# TCP states
sNO, sSS, sSR, sES, sFW, sCW, sLA, sTW, sCL, sS2, sIV, sIG = 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11
T_RETRANS = 12
T_UNACK = 13
# packet-type index
I_SYN, I_SYNACK, I_FIN, I_ACK, I_RST, I_NONE = 0, 1, 2, 3, 4, 5
# ip_ct_tcp_state flags
F_WSCALE = 0x01
F_SACK_PERM = 0x02
F_CLOSE_INIT = 0x04
F_LIBERAL = 0x08
F_UNACK = 0x10
F_MAXACK = 0x20
F_CHALLENGE = 0x40
F_SIMOPEN = 0x80

# tcp_conntracks[2][6][10] (nf_conntrack_proto_tcp.c, identical 5.10..6.17)
TCP_TABLE = np.array([
    [  # ORIGINAL
        [sSS, sSS, sIG, sIG, sIG, sIG, sIG, sSS, sSS, sS2],  # syn
        [sIV, sIV, sSR, sIV, sIV, sIV, sIV, sIV, sIV, sSR],  # synack
        [sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV],  # fin
        [sES, sIV, sES, sES, sCW, sCW, sTW, sTW, sCL, sIV],  # ack
        [sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL],  # rst
        [sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV],  # none
    ],
    [  # REPLY
        [sIV, sS2, sIV, sIV, sIV, sIV, sIV, sSS, sIV, sS2],
        [sIV, sSR, sIG, sIG, sIG, sIG, sIG, sIG, sIG, sSR],
        [sIV, sIV, sFW, sFW, sLA, sLA, sLA, sTW, sCL, sIV],
        [sIV, sIG, sSR, sES, sCW, sCW, sTW, sTW, sCL, sIG],
        [sIV, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL, sCL],
        [sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV, sIV],
    ],
], dtype=np.int64)

# tcp_valid_flags over FIN|SYN|RST|ACK|URG (0..63)
_VF = np.zeros(64, dtype=np.int64)
for _f in (0x02, 0x22, 0x12, 0x04, 0x14, 0x11, 0x31, 0x10, 0x30):
    _VF[_f] = 1
TCP_VALID_FLAGS = _VF

EVT_NEW = 1
EVT_UPDATE = 2
EVT_DESTROY = 3
END_EXPIRED = 1
END_CLOSED = 2
END_EVICTED = 3


# --------------------------------------------------------------------------------------------- utils

@kernel
def before(a, b):
    """(s32)(a - b) < 0 for u32 values held in int64."""
    return ((a - b) & U32) >= 0x80000000


@kernel
def after(a, b):
    return ((b - a) & U32) >= 0x80000000


@kernel
def _mix(h, w):
    h = ((h ^ w) * 0x5BD1E995) & U32
    return h ^ (h >> 15)


@kernel
def tuple_hash(fam, proto, zone, shi, slo, dhi, dlo, sp, dp):
    """Hash of a tuple; addresses are int64 bit patterns of the uint64 halves."""
    h = np.int64(0x2545F491)
    h = _mix(h, (shi >> 32) & U32)
    h = _mix(h, shi & U32)
    h = _mix(h, (slo >> 32) & U32)
    h = _mix(h, slo & U32)
    h = _mix(h, (dhi >> 32) & U32)
    h = _mix(h, dhi & U32)
    h = _mix(h, (dlo >> 32) & U32)
    h = _mix(h, dlo & U32)
    h = _mix(h, (np.int64(sp) << 16) | np.int64(dp))
    h = _mix(h, (np.int64(fam) << 24) | (np.int64(proto) << 16) | np.int64(zone))
    return h


@kernel
def _entry_hash(E, v):
    s = (v - 1) >> 1
    c = C_TUPLE + 6 * ((v - 1) & 1)
    return tuple_hash(E[s, C_FAMILY], E[s, C_PROTO], E[s, C_ZONE], E[s, c], E[s, c + 1], E[s, c + 2],
                      E[s, c + 3], E[s, c + 4], E[s, c + 5])


@inline_kernel
def _key_eq(E, v, fam, proto, zone, shi, slo, dhi, dlo, sp, dp):
    s = (v - 1) >> 1
    if E[s, C_FAMILY] != fam or E[s, C_PROTO] != proto or E[s, C_ZONE] != zone:
        return False
    c = C_TUPLE + 6 * ((v - 1) & 1)
    return (E[s, c + 1] == slo and E[s, c + 3] == dlo and E[s, c + 4] == sp
            and E[s, c + 5] == dp and E[s, c] == shi and E[s, c + 2] == dhi)


@inline_kernel
def _find_pos(E, H, fam, proto, zone, shi, slo, dhi, dlo, sp, dp):
    """Position in H of the confirmed tuple, or -1."""
    mask = H.shape[0] - 1
    p = tuple_hash(fam, proto, zone, shi, slo, dhi, dlo, sp, dp) & mask
    while True:
        v = H[p]
        if v == 0:
            return -1
        if _key_eq(E, v, fam, proto, zone, shi, slo, dhi, dlo, sp, dp):
            return p
        p = (p + 1) & mask


@kernel
def _hash_insert(H, v, h):
    mask = H.shape[0] - 1
    p = h & mask
    while H[p] != 0:
        p = (p + 1) & mask
    H[p] = v


@kernel
def _hash_delete_pos(E, H, p):
    """Linear-probing delete with backward shift (no tombstones)."""
    mask = H.shape[0] - 1
    H[p] = 0
    j = p
    while True:
        j = (j + 1) & mask
        v = H[j]
        if v == 0:
            return
        k = _entry_hash(E, v) & mask
        if p <= j:
            if p < k <= j:
                continue
        elif k <= j or k > p:
            continue
        H[p] = v
        H[j] = 0
        p = j


@kernel
def _hash_remove_entry(E, H, s):
    mask = H.shape[0] - 1
    for d in range(2):
        v = np.int64(s * 2 + d + 1)
        p = _entry_hash(E, v) & mask
        while True:
            w = H[p]
            if w == 0:
                break
            if w == v:
                _hash_delete_pos(E, H, p)
                break
            p = (p + 1) & mask


# ------------------------------------------------------------------------------------------- events

@kernel
def _emit(EV, ct_id, pkt_index, ts, kind, tcp_state, status, timeout_s):
    k = EV[0, 0]
    if k >= EV.shape[0] - 1:
        EV[0, 1] += 1
        return
    r = k + 1
    EV[r, 0] = ct_id
    EV[r, 1] = pkt_index
    EV[r, 2] = ts
    EV[r, 3] = kind
    EV[r, 4] = tcp_state
    EV[r, 5] = status & 0xFFFFFFFF
    EV[r, 6] = timeout_s
    EV[0, 0] = r


@kernel
def _write_flow(E, F, s, end, end_ts):
    f = E[s, C_CT_ID]
    if f < 0 or f >= F.shape[0]:
        return
    F[f, CF_STATUS] = E[s, C_STATUS] & 0xFFFFFFFF
    F[f, CF_LAST_TS_NS] = E[s, C_LAST_TS]
    F[f, CF_PACKETS_ORIG] = E[s, C_PK]
    F[f, CF_BYTES_ORIG] = E[s, C_BY]
    F[f, CF_PACKETS_REPLY] = E[s, C_PK + 1]
    F[f, CF_BYTES_REPLY] = E[s, C_BY + 1]
    F[f, CF_FINAL_TCP_STATE] = E[s, C_TCP_STATE]
    F[f, CF_END] = end
    F[f, CF_END_TS_NS] = end_ts
    F[f, CF_LAST_PACKET] = E[s, C_LAST_PKT]
    F[f, CF_MARK] = E[s, C_MARK] & 0xFFFFFFFF
    F[f, CF_REPLY_SRC_HI] = E[s, C_R_SRC_HI]
    F[f, CF_REPLY_SRC_LO] = E[s, C_R_SRC_LO]
    F[f, CF_REPLY_DST_HI] = E[s, C_R_DST_HI]
    F[f, CF_REPLY_DST_LO] = E[s, C_R_DST_LO]
    F[f, CF_REPLY_SPORT] = E[s, C_R_SPORT] & 0xFFFF
    F[f, CF_REPLY_DPORT] = E[s, C_R_DPORT] & 0xFFFF


@kernel
def _free_slot(E, L, M, s):
    if (E[s, C_STATUS] & S_SRC_NAT_DONE) != 0:
        bysrc_remove(E, s)  # nf_conntrack_free -> nf_nat_cleanup_conntrack
    E[s, C_USED] = 0
    E[s, C_CT_ID] = -1
    E[s, C_MASTER] = -1
    L[s, L_GEN] = -1
    top = M[M_FREE_TOP]
    M[M_LEN + top] = s
    M[M_FREE_TOP] = top + 1
    M[M_COUNT] -= 1


@kernel
def _drop_expectations_of(E, M, X, s):
    if M[M_N_EXPECT] == 0:
        return
    cid = E[s, C_CT_ID]
    for e in range(X.shape[0]):
        if X[e, X_USED] != 0 and X[e, X_MASTER] == s and X[e, X_MASTER_ID] == cid:
            X[e, X_USED] = 0
            M[M_N_EXPECT] -= 1


@kernel
def _destroy(E, L, H, M, X, F, EV, s, ts, pkt_index, end, defer):
    """Remove a confirmed entry: DESTROY event, flow record closed. defer: keep the slot readable
    until the next ct_in (the current packet still references it)."""
    _hash_remove_entry(E, H, s)
    E[s, C_STATUS] |= S_DYING
    L[s, L_GEN] = -1
    _emit(EV, E[s, C_CT_ID], pkt_index, ts, EVT_DESTROY, E[s, C_TCP_STATE], E[s, C_STATUS], 0)
    _write_flow(E, F, s, end, ts)
    _drop_expectations_of(E, M, X, s)
    if defer:
        M[M_PENDING] = s
    else:
        _free_slot(E, L, M, s)


@inline_kernel
def _lookup(E, L, H, M, X, F, EV, fam, proto, zone, shi, slo, dhi, dlo, sp, dp, now):
    """(slot, dir) of the live confirmed entry with this tuple; an expired match is reaped (DESTROY
    stamped with its expiry time, packet_index -1) and not returned."""
    p = _find_pos(E, H, fam, proto, zone, shi, slo, dhi, dlo, sp, dp)
    if p < 0:
        return -1, 0
    v = H[p]
    s = (v - 1) >> 1
    if now >= L[s, L_EXPIRES]:
        _destroy(E, L, H, M, X, F, EV, s, L[s, L_EXPIRES], -1, END_EXPIRED, False)
        return -1, 0
    return s, (v - 1) & 1


@inline_kernel
def _note_expiry(M, s, expires):
    """Keep the block's lower bound of confirmed entries' expiry times (every write of L_EXPIRES)."""
    b = M[M_BLK_OFF] + (s >> BLK_SHIFT)
    if expires < M[b]:
        M[b] = expires
        if expires < M[M_REAP_MIN]:
            M[M_REAP_MIN] = expires


@kernel
def _reap_all_expired(E, L, H, M, X, F, EV, now):
    """Destroy every confirmed, non-dying entry expired at `now`, in slot order. Only blocks whose
    expiry lower bound has passed are scanned (and get their exact bound back); nothing at all before
    M_REAP_MIN, the lowest block bound."""
    n = 0
    if now < M[M_REAP_MIN]:
        return n
    cap = E.shape[0]
    bo = M[M_BLK_OFF]
    gmin = np.int64(0x7FFFFFFFFFFFFFFF)
    for b in range(M[M_N_BLK]):
        if M[bo + b] > now:
            if M[bo + b] < gmin:
                gmin = M[bo + b]
            continue
        lo = b << BLK_SHIFT
        hi = min(cap, lo + (1 << BLK_SHIFT))
        mn = np.int64(0x7FFFFFFFFFFFFFFF)
        for s in range(lo, hi):
            if E[s, C_USED] == 2 and (E[s, C_STATUS] & S_DYING) == 0:
                if now >= L[s, L_EXPIRES]:
                    _destroy(E, L, H, M, X, F, EV, s, L[s, L_EXPIRES], -1, END_EXPIRED, False)
                    n += 1
                elif L[s, L_EXPIRES] < mn:
                    mn = L[s, L_EXPIRES]
        M[bo + b] = mn
        if mn < gmin:
            gmin = mn
    M[M_REAP_MIN] = gmin
    return n


@inline_kernel
def _ed_valid(E, s, cid):
    return (E[s, C_USED] == 2 and E[s, C_CT_ID] == cid
            and (E[s, C_STATUS] & (S_ASSURED | S_DYING)) == 0)


@kernel
def _ed_push(E, M, s, cid):
    """Queue a newly confirmed entry for early drop; a full queue is compacted (stale pairs dropped:
    at most `capacity` stay valid, the queue holds 2 * capacity)."""
    qo = M[M_Q_OFF]
    qc = M[M_Q_CAP]
    if M[M_Q_TAIL] - M[M_Q_HEAD] >= qc:
        w = M[M_Q_HEAD]
        for r in range(M[M_Q_HEAD], M[M_Q_TAIL]):
            i = qo + 2 * (r % qc)
            if _ed_valid(E, M[i], M[i + 1]):
                j = qo + 2 * (w % qc)
                M[j] = M[i]
                M[j + 1] = M[i + 1]
                w += 1
        M[M_Q_TAIL] = w
    j = qo + 2 * (M[M_Q_TAIL] % qc)
    M[j] = s
    M[j + 1] = cid
    M[M_Q_TAIL] += 1


@kernel
def _ed_victim(E, M):
    """The oldest (lowest ct_id) confirmed, non-ASSURED, non-dying entry, or -1. ASSURED and DYING are
    never cleared, so a pair found invalid stays invalid and is popped."""
    qo = M[M_Q_OFF]
    qc = M[M_Q_CAP]
    while M[M_Q_HEAD] < M[M_Q_TAIL]:
        i = qo + 2 * (M[M_Q_HEAD] % qc)
        if _ed_valid(E, M[i], M[i + 1]):
            return M[i]
        M[M_Q_HEAD] += 1
    return np.int64(-1)


# ------------------------------------------------------------------------------------------- tuples

@kernel
def icmp_inverse_type(fam, t):
    """Reply type of an ICMP/ICMPv6 query type, -1 if it cannot be inverted (invmap)."""
    if fam == 4:
        if t == 8:
            return 0
        if t == 0:
            return 8
        if t == 13:
            return 14
        if t == 14:
            return 13
        if t == 15:
            return 16
        if t == 16:
            return 15
        if t == 17:
            return 18
        if t == 18:
            return 17
        return -1
    if t == 128:
        return 129
    if t == 129:
        return 128
    if t == 139:
        return 140
    if t == 140:
        return 139
    return -1


@kernel
def _icmp_valid_new(fam, t):
    if fam == 4:
        return t == 8 or t == 13 or t == 15 or t == 17
    return t == 128 or t == 139


@kernel
def _has_ports(proto):
    return proto == 6 or proto == 17 or proto == 136 or proto == 132


# --------------------------------------------------------------------------------- entry allocation

@kernel
def _alloc(E, L, H, M, X, F, EV, P, now, pkt_index):
    """A free slot, applying nf_conntrack_max with early drop. -1: table full (packet dropped)."""
    lim = E.shape[0]
    ct_max = P[P_CT_MAX]
    if ct_max > 0 and ct_max < lim:
        lim = ct_max
    if M[M_COUNT] >= lim or M[M_FREE_TOP] == 0:
        _reap_all_expired(E, L, H, M, X, F, EV, now)
    if M[M_COUNT] >= lim or M[M_FREE_TOP] == 0:
        # early drop: the oldest confirmed, non-ASSURED, non-dying entry (documented policy)
        victim = _ed_victim(E, M)
        if victim < 0:
            M[M_TABLE_FULL] += 1
            return -1
        _destroy(E, L, H, M, X, F, EV, victim, now, pkt_index, END_EVICTED, False)
        M[M_EARLY_DROP] += 1
    top = M[M_FREE_TOP] - 1
    M[M_FREE_TOP] = top
    s = M[M_LEN + top]
    M[M_COUNT] += 1
    return s


@kernel
def _init_entry(E, L, M, s, fam, proto, zone, shi, slo, dhi, dlo, sp, dp, rsp, rdp, now, pkt_index):
    for c in range(C_BYSRC_HEAD):  # the last column is the by-source bucket head of row s, not the entry's
        E[s, c] = 0
    E[s, C_USED] = 1
    E[s, C_FAMILY] = fam
    E[s, C_PROTO] = proto
    E[s, C_ZONE] = zone
    E[s, C_O_SRC_HI] = shi
    E[s, C_O_SRC_LO] = slo
    E[s, C_O_DST_HI] = dhi
    E[s, C_O_DST_LO] = dlo
    E[s, C_O_SPORT] = sp
    E[s, C_O_DPORT] = dp
    E[s, C_R_SRC_HI] = dhi
    E[s, C_R_SRC_LO] = dlo
    E[s, C_R_DST_HI] = shi
    E[s, C_R_DST_LO] = slo
    E[s, C_R_SPORT] = rsp
    E[s, C_R_DPORT] = rdp
    E[s, C_CT_ID] = -1
    E[s, C_MASTER] = -1
    E[s, C_FIRST_TS] = now
    E[s, C_LAST_TS] = now
    E[s, C_FIRST_PKT] = pkt_index
    E[s, C_LAST_PKT] = pkt_index
    E[s, C_STREAM_TS] = now + 2 * NS
    E[s, C_LAST_INDEX] = I_NONE
    g = M[M_GEN] + 1
    M[M_GEN] = g
    E[s, C_GEN] = g
    L[s, L_GEN] = -1
    L[s, L_EXPIRES] = 0
    L[s, L_CLOSED] = 0


@inline_kernel
def _acct(E, s, d, ip_len):
    E[s, C_PK + d] += 1
    E[s, C_BY + d] += ip_len


@inline_kernel
def _refresh(E, L, M, s, d, now, timeout, ip_len):
    """nf_ct_refresh_acct: unconfirmed entries keep a relative timeout until confirm."""
    if (E[s, C_STATUS] & S_FIXED_TIMEOUT) == 0:
        if E[s, C_USED] == 2:
            L[s, L_EXPIRES] = now + timeout
            _note_expiry(M, s, now + timeout)
        else:
            E[s, C_TIMEOUT_REL] = timeout
    _acct(E, s, d, ip_len)


@kernel
def _find_expectation(E, M, X, fam, proto, zone, shi, slo, dhi, dlo, sp, dp, now):
    """nf_ct_find_expectation: consumes and returns the master slot, or -1."""
    if M[M_N_EXPECT] == 0:
        return -1
    for e in range(X.shape[0]):
        if X[e, X_USED] == 0:
            continue
        m = X[e, X_MASTER]
        if now >= X[e, X_EXPIRES] or E[m, C_USED] != 2 or E[m, C_CT_ID] != X[e, X_MASTER_ID] \
                or (E[m, C_STATUS] & S_DYING) != 0:
            X[e, X_USED] = 0
            M[M_N_EXPECT] -= 1
            continue
        if (X[e, X_FAMILY] == fam and X[e, X_PROTO] == proto and X[e, X_ZONE] == zone
                and X[e, X_DST_LO] == dlo and X[e, X_DST_HI] == dhi and X[e, X_DPORT] == dp
                and X[e, X_SRC_LO] == slo and X[e, X_SRC_HI] == shi):
            X[e, X_USED] = 0
            M[M_N_EXPECT] -= 1
            return m
    return -1


# ---------------------------------------------------------------------------------------------- TCP

@kernel
def _tcp_index(fl):
    if fl & 0x04:
        return I_RST
    if fl & 0x02:
        return I_SYNACK if (fl & 0x10) else I_SYN
    if fl & 0x01:
        return I_FIN
    if fl & 0x10:
        return I_ACK
    return I_NONE


@kernel
def _tcp_options(E, s, d, ws, sackok):
    """tcp_options(): td_scale and WINDOW_SCALE/SACK_PERM from the SYN; BE_LIBERAL preserved."""
    E[s, C_TD_SCALE + d] = 0
    E[s, C_TD_FLAGS + d] &= F_LIBERAL
    if sackok:
        E[s, C_TD_FLAGS + d] |= F_SACK_PERM
    if ws >= 0:
        E[s, C_TD_FLAGS + d] |= F_WSCALE
        E[s, C_TD_SCALE + d] = 14 if ws > 14 else ws


@kernel
def _tcp_init_sender(E, s, d, end, win, ws, sackok):
    E[s, C_TD_END + d] = end
    E[s, C_TD_MAXEND + d] = end
    E[s, C_TD_MAXWIN + d] = 1 if win == 0 else win
    _tcp_options(E, s, d, ws, sackok)
    r = 1 - d
    if d == 1 and not ((E[s, C_TD_FLAGS + d] & F_WSCALE) and (E[s, C_TD_FLAGS + r] & F_WSCALE)):
        E[s, C_TD_SCALE + d] = 0
        E[s, C_TD_SCALE + r] = 0


# results of tcp_in_window
W_ACCEPT = 0
W_IGNORE = 1
W_INVALID = 2


@inline_kernel
def _tcp_in_window(E, P, s, d, index, fl, seq, ack, sack, win, end, ws, sackok):
    """tcp_in_window (6.1+): returns (W_*, reason, log number %u)."""
    r = 1 - d
    state = E[s, C_TCP_STATE]
    if (E[s, C_TD_FLAGS + r] & F_SACK_PERM) == 0:
        sack = ack
    if E[s, C_TD_MAXWIN + d] == 0:
        if fl & 0x02:
            _tcp_init_sender(E, s, d, end, win, ws, sackok)
            if (fl & 0x10) == 0:
                return W_ACCEPT, 0, 0
        else:
            E[s, C_TD_END + d] = end
            sw = (win << E[s, C_TD_SCALE + d]) & U32
            E[s, C_TD_MAXWIN + d] = 1 if sw == 0 else sw
            E[s, C_TD_MAXEND + d] = (end + E[s, C_TD_MAXWIN + d]) & U32
            if E[s, C_TD_MAXWIN + r] == 0:
                E[s, C_TD_END + r] = sack
                E[s, C_TD_MAXEND + r] = sack
            elif sack == ((E[s, C_TD_END + r] + 1) & U32):
                E[s, C_TD_END + r] = (E[s, C_TD_END + r] + 1) & U32
    elif (fl & 0x02) and after(end, E[s, C_TD_END + d]) and (state == sSS or state == sSR):
        _tcp_init_sender(E, s, d, end, win, ws, sackok)
        if d == 1 and (fl & 0x10) == 0:
            return W_ACCEPT, 0, 0

    if (fl & 0x10) == 0:
        ack = E[s, C_TD_END + r]
        sack = ack
    elif (fl & 0x14) == 0x14 and ack == 0:
        ack = E[s, C_TD_END + r]
        sack = ack
    if (fl & 0x04) and seq == 0 and state == sSS:
        seq = E[s, C_TD_END + d]
        end = seq

    liberal = (E[s, C_TD_FLAGS + d] & F_LIBERAL) != 0 or P[P_BE_LIBERAL] != 0
    s_end = E[s, C_TD_END + d]
    s_maxend = E[s, C_TD_MAXEND + d]
    r_end = E[s, C_TD_END + r]
    r_maxwin = E[s, C_TD_MAXWIN + r]
    maxack = E[s, C_TD_MAXWIN + d]
    if maxack < 66000:
        maxack = 66000
    ack_ok = after(sack, (r_end - maxack - 1) & U32)
    if not before(seq, (s_maxend + 1) & U32):
        overshot = (end - s_maxend + 1) & U32
        in_recv = r_maxwin != 0 and after(end, (s_end - r_maxwin - 1) & U32)
        if in_recv and ack_ok and overshot <= r_maxwin and before(sack, (r_end + 1) & U32):
            E[s, C_TD_END + d] = end
            E[s, C_TD_FLAGS + d] |= F_UNACK
            return (W_ACCEPT if liberal else W_IGNORE), 0, 0
        return (W_ACCEPT if liberal else W_INVALID), R_SEQ_OVER, (s_maxend + 1) & U32
    if not before(sack, (r_end + 1) & U32):
        return (W_ACCEPT if liberal else W_INVALID), R_ACK_OVER, (r_end + 1) & U32
    if not (r_maxwin == 0 or after(end, (s_end - r_maxwin - 1) & U32)):
        return (W_ACCEPT if liberal else W_IGNORE), 0, 0
    if not ack_ok:
        return (W_ACCEPT if liberal else W_IGNORE), 0, 0

    # all four checks passed: update
    if (fl & 0x02) == 0:
        win = (win << E[s, C_TD_SCALE + d]) & U32
    swin = (win + ((sack - ack) & U32)) & U32
    if E[s, C_TD_MAXWIN + d] < swin:
        E[s, C_TD_MAXWIN + d] = swin
    if after(end, E[s, C_TD_END + d]):
        E[s, C_TD_END + d] = end
        E[s, C_TD_FLAGS + d] |= F_UNACK
    if fl & 0x10:
        if (E[s, C_TD_FLAGS + d] & F_MAXACK) == 0:
            E[s, C_TD_MAXACK + d] = ack
            E[s, C_TD_FLAGS + d] |= F_MAXACK
        elif after(ack, E[s, C_TD_MAXACK + d]):
            E[s, C_TD_MAXACK + d] = ack
    if E[s, C_TD_MAXWIN + r] != 0 and after(end, s_maxend):
        E[s, C_TD_MAXWIN + r] = (E[s, C_TD_MAXWIN + r] + ((end - s_maxend) & U32)) & U32
    if after((sack + win) & U32, (E[s, C_TD_MAXEND + r] - 1) & U32):
        E[s, C_TD_MAXEND + r] = (sack + win) & U32
        if win == 0:
            E[s, C_TD_MAXEND + r] = (E[s, C_TD_MAXEND + r] + 1) & U32
    if ack == E[s, C_TD_END + r]:
        E[s, C_TD_FLAGS + r] &= ~F_UNACK
    if index == I_ACK:
        if (E[s, C_LAST_DIR] == d and E[s, C_LAST_SEQ] == seq and E[s, C_LAST_ACK] == ack
                and E[s, C_LAST_END] == end and E[s, C_LAST_WIN] == win):
            E[s, C_RETRANS] += 1
        else:
            E[s, C_LAST_DIR] = d
            E[s, C_LAST_SEQ] = seq
            E[s, C_LAST_ACK] = ack
            E[s, C_LAST_END] = end
            E[s, C_LAST_WIN] = win
            E[s, C_RETRANS] = 0
    return W_ACCEPT, 0, 0


# tcp handler results
H_ACCEPT = 0
H_INVALID = 1
H_REPEAT = 2
H_KILLED = 3  # accepted, entry deleted (RST without reply)


@kernel
def _tcp_new(E, P, s, fl, seq, win, end, ws, sackok):
    """tcp_new: returns reason (0 ok)."""
    index = _tcp_index(fl)
    ns = TCP_TABLE[0, index, sNO]
    if ns >= sIV:
        return R_INVALID_NEW
    if ns == sSS:
        E[s, C_TD_END] = end
        E[s, C_TD_MAXWIN] = 1 if win == 0 else win
        E[s, C_TD_MAXEND] = end
        _tcp_options(E, s, 0, ws, sackok)
    elif P[P_LOOSE] == 0:
        return R_NO_PICKUP
    else:
        E[s, C_TD_END] = end
        E[s, C_TD_MAXWIN] = 1 if win == 0 else win
        E[s, C_TD_MAXEND] = (end + E[s, C_TD_MAXWIN]) & U32
        E[s, C_TD_FLAGS] = F_SACK_PERM | F_LIBERAL
        E[s, C_TD_FLAGS + 1] = F_SACK_PERM | F_LIBERAL
    E[s, C_LAST_INDEX] = I_NONE
    return 0


@kernel
def _tcp_handle_invalid(E, L, M, s, d, index, now, tmo_unack):
    if (E[s, C_STATUS] & S_ASSURED) == 0 or (E[s, C_STATUS] & S_FIXED_TIMEOUT) != 0:
        return
    if index != I_RST and index != I_FIN:
        return
    if E[s, C_LAST_DIR] != d and (E[s, C_LAST_INDEX] == I_FIN or E[s, C_LAST_INDEX] == I_RST):
        remaining = L[s, L_EXPIRES] - now
        if remaining < 120 * NS:
            return
        if remaining > tmo_unack:
            L[s, L_EXPIRES] = now + tmo_unack
            _note_expiry(M, s, now + tmo_unack)
    else:
        E[s, C_LAST_INDEX] = index
        E[s, C_LAST_DIR] = d


@inline_kernel
def _tcp_packet(E, L, M, P, pv, s, d, now):
    """nf_conntrack_tcp_packet after tcp_error/tcp_new. Returns (H_*, reason, log number)."""
    fl = pv[PV_TCP_FLAGS] & 0xFF
    seq = pv[PV_TCP_SEQ]
    ack = pv[PV_TCP_ACK]
    sack = pv[PV_TCP_SACK]
    win = pv[PV_TCP_WIN]
    ws = pv[PV_TCP_WSCALE]
    sackok = pv[PV_TCP_SACKOK] != 0
    plen = pv[PV_L4_LEN] - pv[PV_TCP_HLEN]
    end = (seq + plen + (1 if fl & 0x02 else 0) + (1 if fl & 0x01 else 0)) & U32
    ip_len = pv[PV_IP_LEN]
    st = E[s, C_STATUS]

    old = E[s, C_TCP_STATE]
    index = _tcp_index(fl)
    new = TCP_TABLE[d, index, old]
    go_in_window = False  # skip window check (goto in_window)

    if new == sSS and old >= sTW:
        if ((E[s, C_TD_FLAGS] | E[s, C_TD_FLAGS + 1]) & F_CLOSE_INIT) != 0 or \
                (E[s, C_LAST_DIR] == d and E[s, C_LAST_INDEX] == I_RST):
            return H_REPEAT, 0, 0
        new = sIG
    if new == sIG:
        if (index == I_SYNACK and E[s, C_LAST_INDEX] == I_SYN and E[s, C_LAST_DIR] != d
                and ack == E[s, C_LAST_END]):
            old = sSS
            new = sSR
            ld = E[s, C_LAST_DIR]
            E[s, C_TD_END + ld] = E[s, C_LAST_END]
            E[s, C_TD_MAXEND + ld] = E[s, C_LAST_END]
            E[s, C_TD_MAXWIN + ld] = 1 if E[s, C_LAST_WIN] == 0 else E[s, C_LAST_WIN]
            E[s, C_TD_SCALE + ld] = E[s, C_LAST_WSCALE]
            E[s, C_TD_FLAGS + ld] = E[s, C_LAST_FLAGS] & ~F_CHALLENGE
            E[s, C_TD_END + d] = 0
            E[s, C_TD_MAXEND + d] = 0
            E[s, C_TD_MAXWIN + d] = 0
            E[s, C_TD_MAXACK + d] = 0
            E[s, C_TD_SCALE + d] = 0
            E[s, C_TD_FLAGS + d] &= F_LIBERAL
        else:
            E[s, C_LAST_INDEX] = index
            E[s, C_LAST_DIR] = d
            E[s, C_LAST_SEQ] = seq
            E[s, C_LAST_END] = end
            E[s, C_LAST_WIN] = win
            if index == I_SYN and d == 0:
                lf = 0
                lw = 0
                if ws >= 0:
                    lf |= F_WSCALE
                    lw = 14 if ws > 14 else ws
                if sackok:
                    lf |= F_SACK_PERM
                if old == sLA:
                    lf |= F_CHALLENGE
                E[s, C_LAST_FLAGS] = lf
                E[s, C_LAST_WSCALE] = lw
            if old == sSS and index == I_ACK and d == 1:
                E[s, C_LAST_ACK] = ack
            return H_ACCEPT, 0, 0
    elif new == sIV:
        return H_INVALID, R_STATE, index | (d << 4) | (old << 8)
    elif new == sTW:
        if (old == sLA and index == I_ACK and E[s, C_LAST_DIR] != d and E[s, C_LAST_INDEX] == I_SYN
                and (E[s, C_LAST_FLAGS] & F_CHALLENGE) != 0):
            E[s, C_LAST_FLAGS] &= ~F_CHALLENGE
            return H_ACCEPT, 0, 0
    elif new == sS2:
        E[s, C_LAST_FLAGS] |= F_SIMOPEN
    elif new == sSR:
        if d == 1 and index == I_ACK and (E[s, C_LAST_FLAGS] & F_SIMOPEN) != 0:
            new = sES
    elif new == sCL and index == I_RST:
        if old == sFW or old == sCW or old == sLA or old == sTW or old == sCL:
            go_in_window = True
        else:
            r = 1 - d
            decided = False
            if (E[s, C_TD_FLAGS + r] & F_MAXACK) != 0 and E[s, C_LAST_INDEX] != I_SYN:
                established = old == sES and (st & S_ASSURED) != 0
                if seq == 0 and not established:
                    decided = True
                elif before(seq, E[s, C_TD_MAXACK + r]) and P[P_IGNORE_INVALID_RST] == 0:
                    return H_INVALID, R_RST, 0
                elif not established or seq == E[s, C_TD_MAXACK + r]:
                    decided = True
                elif E[s, C_LAST_INDEX] == I_ACK and E[s, C_LAST_DIR] == d and seq == E[s, C_LAST_END]:
                    decided = True
                else:
                    new = old
            if not decided:
                if ((((st & S_SEEN_REPLY) != 0 and E[s, C_LAST_INDEX] == I_SYN)
                     or ((st & S_ASSURED) == 0 and E[s, C_LAST_INDEX] == I_ACK))
                        and ack == E[s, C_LAST_END]):
                    go_in_window = True
                elif old == sSS and E[s, C_LAST_INDEX] == I_ACK and E[s, C_LAST_DIR] == 1 \
                        and seq == E[s, C_LAST_ACK]:
                    go_in_window = True

    if not go_in_window:
        res, reason, arg = _tcp_in_window(E, P, s, d, index, fl, seq, ack, sack, win, end, ws, sackok)
        if res == W_IGNORE:
            return H_ACCEPT, 0, 0
        if res == W_INVALID:
            _tcp_handle_invalid(E, L, M, s, d, index, now, P[P_TCP + T_UNACK])
            return H_INVALID, reason, arg

    # in_window:
    E[s, C_LAST_INDEX] = index
    E[s, C_LAST_DIR] = d
    E[s, C_TCP_STATE] = new
    L[s, L_CLOSED] = 1 if (new == sCL or new == sTW) else 0
    if old != new and new == sFW:
        E[s, C_TD_FLAGS + d] |= F_CLOSE_INIT
    t_new = P[P_TCP + new]
    t_retrans = P[P_TCP + T_RETRANS]
    t_unack = P[P_TCP + T_UNACK]
    if E[s, C_RETRANS] >= P[P_MAX_RETRANS] and t_new > t_retrans:
        timeout = t_retrans
    elif index == I_RST:
        timeout = P[P_TCP + sCL]
    elif ((E[s, C_TD_FLAGS] | E[s, C_TD_FLAGS + 1]) & F_UNACK) != 0 and t_new > t_unack:
        timeout = t_unack
    elif E[s, C_LAST_WIN] == 0 and t_new > t_retrans:
        timeout = t_retrans
    else:
        timeout = t_new
    if new != old:
        E[s, C_ECACHE] |= EV_PROTOINFO
    if (st & S_SEEN_REPLY) == 0:
        if fl & 0x04:
            _acct(E, s, d, ip_len)
            return H_KILLED, 0, 0
        if index == I_SYN and old == sSS:
            return H_ACCEPT, 0, 0
        if new == sES and timeout > t_unack:
            timeout = t_unack
    elif (st & S_ASSURED) == 0 and (old == sSR or old == sES) and new == sES:
        E[s, C_STATUS] |= S_ASSURED
        E[s, C_ECACHE] |= EV_ASSURED
    _refresh(E, L, M, s, d, now, timeout, ip_len)
    return H_ACCEPT, 0, 0


# ------------------------------------------------------------------------------------ nf_conntrack_in

@kernel_norc
def ct_prefetch_block(E, L, H, PVB, n, PF):
    """Cache hints for the lookups of the next n packets (rows of a pv block): the hash bucket of each
    packet's tuple first, then (second pass, when the buckets have arrived) the entry row and expiry row
    the bucket points at. The table is far larger than the L2 cache and its lookups are random: without
    the hints each packet waits for two or three memory loads in turn. Hints only (no state is changed,
    the lookups themselves are unchanged); a hint for the wrong entry (another tuple in the bucket, a
    zone other than 0, an entry freed since) costs a wasted load. PF: int64[>= n] scratch."""
    mask = H.shape[0] - 1
    for k in range(n):
        PF[k] = -1
        if PVB[k, PV_STATUS] != 0:
            continue
        proto = PVB[k, PV_PROTO]
        if proto == 6 or proto == 17:
            sp = PVB[k, PV_SPORT]
            dp = PVB[k, PV_DPORT]
        elif proto == 1 or proto == 58:
            sp = PVB[k, PV_ICMP_ID]
            dp = (PVB[k, PV_ICMP_TYPE] << 8) | PVB[k, PV_ICMP_CODE]
        else:
            continue
        p = tuple_hash(PVB[k, PV_FAMILY], proto, 0, PVB[k, PV_SRC_HI], PVB[k, PV_SRC_LO], PVB[k, PV_DST_HI],
                       PVB[k, PV_DST_LO], sp, dp) & mask
        PF[k] = p
        prefetch(H, p)
    ncol = E.shape[1]
    lcol = L.shape[1]
    for k in range(n):
        p = PF[k]
        if p < 0:
            continue
        v = H[p]
        if v == 0:
            continue
        s = (v - 1) >> 1
        b = s * ncol
        for c in range(0, ncol, 8):
            prefetch(E, b + c)
        prefetch(L, s * lcol)


@kernel
def _finish_pending(E, L, M):
    p = M[M_PENDING]
    if p >= 0:
        M[M_PENDING] = -1
        _free_slot(E, L, M, p)


@kernel
def _icmp_error_lookup(E, L, H, M, X, F, EV, pv, zone, now):
    """nf_conntrack_inet_error: (slot, dir, ctinfo, reason)."""
    fam = pv[PV_FAMILY]
    if pv[PV_INNER_OK] != 1:
        return -1, 2, CI_INVALID, R_ICMP_INNER
    ip = pv[PV_INNER_PROTO]
    isp = pv[PV_INNER_SPORT]
    idp = pv[PV_INNER_DPORT]
    if (fam == 4 and ip == 1) or (fam == 6 and ip == 58):
        inv = icmp_inverse_type(fam, idp >> 8)
        if inv < 0:
            return -1, 2, CI_INVALID, R_ICMP_INNER
        rsp = isp
        rdp = (inv << 8) | (idp & 0xFF)
    elif _has_ports(ip):
        rsp = idp
        rdp = isp
    else:
        rsp = np.int64(0)
        rdp = np.int64(0)
    s, d = _lookup(E, L, H, M, X, F, EV, fam, ip, zone, pv[PV_INNER_DST_HI], pv[PV_INNER_DST_LO],
                   pv[PV_INNER_SRC_HI], pv[PV_INNER_SRC_LO], rsp, rdp, now)
    if s < 0:
        return -1, 2, CI_INVALID, R_ICMP_NOMATCH
    c = C_O_DST_HI if d == 0 else C_R_DST_HI
    if not (E[s, c] == pv[PV_DST_HI] and E[s, c + 1] == pv[PV_DST_LO]):
        return -1, 2, CI_INVALID, R_ICMP_DADDR
    E[s, C_LAST_PKT] = pv[PV_INDEX]
    return s, d, (CI_RELATED if d == 0 else CI_REL_REPLY), 0


@kernel
def _peek_tcp(E, L, H, M, pv, zone, now):
    """An INVALID TCP packet rejected before the lookup (tcp_error): note the live entry its tuple belongs
    to in M[M_INV_SLOT] (no side effects: nothing is reaped or attached)."""
    p = _find_pos(E, H, pv[PV_FAMILY], np.int64(6), zone, pv[PV_SRC_HI], pv[PV_SRC_LO], pv[PV_DST_HI],
                  pv[PV_DST_LO], pv[PV_SPORT], pv[PV_DPORT])
    if p >= 0:
        sl = (H[p] - 1) >> 1
        if now < L[sl, L_EXPIRES]:
            M[M_INV_SLOT] = sl


@kernel_norc
def ct_in_pv(E, L, H, M, X, F, P, pv, zone, hook, now_ns, EV):
    """nf_conntrack_in for the packet in pv (schema.PV_*; its index is pv[PV_INDEX]).
    Returns (slot, dir, ctinfo, reason); see the package docs."""
    if M[M_PENDING] >= 0:
        _finish_pending(E, L, M)
    M[M_INV_ARG] = 0
    M[M_INV_SLOT] = -1
    i = pv[PV_INDEX]
    st = pv[PV_STATUS]
    if st == 10:
        return -1, 2, CI_INVALID, R_FRAGMENT
    if st == 8:
        return -1, 2, CI_INVALID, R_CAPTURE_TRUNC
    if st != 0 and st != 9:
        return -1, 2, CI_INVALID, R_BAD_HDR
    fam = pv[PV_FAMILY]
    proto = pv[PV_PROTO]
    l4len = pv[PV_L4_LEN]
    csum_bad = pv[PV_L4_CSUM] == 2 and hook == 0
    if csum_bad:
        M[M_CSUM_BAD] += 1
    check_csum = hook == 0 and P[P_CHECKSUM] != 0 and P[P_ASSUME_GOOD] == 0

    sp = np.int64(0)
    dp = np.int64(0)
    rsp = np.int64(0)
    rdp = np.int64(0)
    if proto == 6:
        if l4len < 20:
            return -1, 2, CI_INVALID, R_SHORT
        th = pv[PV_TCP_HLEN]
        if st == 9 or th < 20 or l4len < th:
            _peek_tcp(E, L, H, M, pv, zone, now_ns)
            return -1, 2, CI_INVALID, R_TRUNC
        if check_csum and csum_bad:
            _peek_tcp(E, L, H, M, pv, zone, now_ns)
            return -1, 2, CI_INVALID, R_CSUM
        if TCP_VALID_FLAGS[pv[PV_TCP_FLAGS] & 0x37] == 0:
            _peek_tcp(E, L, H, M, pv, zone, now_ns)
            return -1, 2, CI_INVALID, R_FLAGS
        sp = pv[PV_SPORT]
        dp = pv[PV_DPORT]
        rsp = dp
        rdp = sp
    elif proto == 17 or proto == 136:
        if l4len < 8:
            return -1, 2, CI_INVALID, R_SHORT
        if st == 9:
            return -1, 2, CI_INVALID, R_UDP_LEN
        if check_csum and csum_bad:
            return -1, 2, CI_INVALID, R_CSUM
        sp = pv[PV_SPORT]
        dp = pv[PV_DPORT]
        rsp = dp
        rdp = sp
    elif proto == 1 or proto == 58:
        if (proto == 1 and fam != 4) or (proto == 58 and fam != 6):
            return -1, 2, CI_INVALID, R_ICMP_FAMILY
        if l4len < 8:
            return -1, 2, CI_INVALID, R_SHORT
        if check_csum and csum_bad:
            return -1, 2, CI_INVALID, R_CSUM
        t = pv[PV_ICMP_TYPE]
        c = pv[PV_ICMP_CODE]
        if fam == 4:
            if t > 18:
                return -1, 2, CI_INVALID, R_ICMP_TYPE
            if t == 3 or t == 4 or t == 5 or t == 11 or t == 12:
                return _icmp_error_lookup(E, L, H, M, X, F, EV, pv, zone, now_ns)
        else:
            if (130 <= t <= 136) or t == 143 or t == 151 or t == 152:
                return -1, 2, CI_UNTRACKED, 0
            if t < 128:
                return _icmp_error_lookup(E, L, H, M, X, F, EV, pv, zone, now_ns)
        sp = pv[PV_ICMP_ID]
        dp = (t << 8) | c
        inv = icmp_inverse_type(fam, t)
        rsp = sp
        rdp = (inv << 8) | c
    elif proto == 132:
        if l4len < 4:
            return -1, 2, CI_INVALID, R_SHORT
        sp = pv[PV_SPORT]
        dp = pv[PV_DPORT]
        rsp = dp
        rdp = sp
    shi = pv[PV_SRC_HI]
    slo = pv[PV_SRC_LO]
    dhi = pv[PV_DST_HI]
    dlo = pv[PV_DST_LO]
    ip_len = pv[PV_IP_LEN]

    for _attempt in range(2):  # second pass only after a TCP reopen (-NF_REPEAT)
        s, d = _lookup(E, L, H, M, X, F, EV, fam, proto, zone, shi, slo, dhi, dlo, sp, dp, now_ns)
        is_new = s < 0
        if is_new:
            if (proto == 1 or proto == 58) and rdp < 0:
                return -1, 2, CI_INVALID, R_NO_INVERT
            s = _alloc(E, L, H, M, X, F, EV, P, now_ns, i)
            if s < 0:
                return -1, 2, CI_INVALID, R_TABLE_FULL
            _init_entry(E, L, M, s, fam, proto, zone, shi, slo, dhi, dlo, sp, dp, rsp, rdp, now_ns, i)
            d = 0
            m = _find_expectation(E, M, X, fam, proto, zone, shi, slo, dhi, dlo, sp, dp, now_ns)
            if m >= 0:
                E[s, C_STATUS] |= S_EXPECTED
                E[s, C_MASTER] = E[m, C_CT_ID]
                E[s, C_MARK] = E[m, C_MARK]
                ctinfo = CI_RELATED
            else:
                ctinfo = CI_NEW
        else:
            stt = E[s, C_STATUS]
            if d == 1:
                ctinfo = CI_EST_REPLY
            elif stt & S_SEEN_REPLY:
                ctinfo = CI_ESTABLISHED
            elif stt & S_EXPECTED:
                ctinfo = CI_RELATED
            else:
                ctinfo = CI_NEW

        # protocol handler
        verdict = H_ACCEPT
        reason = 0
        arg = np.int64(0)
        if proto == 6:
            if is_new:
                fl = pv[PV_TCP_FLAGS] & 0xFF
                seq = pv[PV_TCP_SEQ]
                plen = l4len - pv[PV_TCP_HLEN]
                end = (seq + plen + (1 if fl & 0x02 else 0) + (1 if fl & 0x01 else 0)) & U32
                reason = _tcp_new(E, P, s, fl, seq, pv[PV_TCP_WIN], end, pv[PV_TCP_WSCALE],
                                  pv[PV_TCP_SACKOK] != 0)
                if reason != 0:
                    verdict = H_INVALID
            if verdict == H_ACCEPT:
                verdict, reason, arg = _tcp_packet(E, L, M, P, pv, s, d, now_ns)
        elif proto == 17 or proto == 136:
            if (E[s, C_STATUS] & S_SEEN_REPLY) != 0:
                tmo = P[P_UDP]
                stream = False
                if proto == 136 or now_ns > E[s, C_STREAM_TS]:
                    tmo = P[P_UDP_STREAM]
                    stream = (E[s, C_STATUS] & S_ASSURED) == 0
                _refresh(E, L, M, s, d, now_ns, tmo, ip_len)
                if stream and (E[s, C_STATUS] & S_NAT_CLASH) == 0:
                    E[s, C_STATUS] |= S_ASSURED
                    E[s, C_ECACHE] |= EV_ASSURED
            else:
                _refresh(E, L, M, s, d, now_ns, P[P_UDP], ip_len)
        elif proto == 1 or proto == 58:
            if is_new and not _icmp_valid_new(fam, dp >> 8):
                verdict = H_INVALID
                reason = R_ICMP_NEW
            else:
                _refresh(E, L, M, s, d, now_ns, P[P_ICMP] if fam == 4 else P[P_ICMPV6], ip_len)
        elif proto == 47:
            if (E[s, C_STATUS] & S_SEEN_REPLY) != 0:
                _refresh(E, L, M, s, d, now_ns, P[P_GRE_STREAM], ip_len)
                if (E[s, C_STATUS] & S_ASSURED) == 0:
                    E[s, C_STATUS] |= S_ASSURED
                    E[s, C_ECACHE] |= EV_ASSURED
            else:
                _refresh(E, L, M, s, d, now_ns, P[P_GRE], ip_len)
        elif proto == 132:
            _refresh(E, L, M, s, d, now_ns, P[P_SCTP], ip_len)
        else:
            _refresh(E, L, M, s, d, now_ns, P[P_GENERIC], ip_len)

        if verdict == H_REPEAT:
            _destroy(E, L, H, M, X, F, EV, s, now_ns, i, END_CLOSED, False)
            continue
        if verdict == H_INVALID:
            M[M_INV_ARG] = arg
            if is_new:
                _free_slot(E, L, M, s)
            else:
                M[M_INV_SLOT] = s  # the entry the packet belongs to (not attached: rules see INVALID)
            return -1, 2, CI_INVALID, reason
        E[s, C_LAST_TS] = now_ns
        E[s, C_LAST_PKT] = i
        if verdict == H_KILLED:
            if d == 1 and (E[s, C_STATUS] & S_SEEN_REPLY) == 0:
                E[s, C_STATUS] |= S_SEEN_REPLY
            if is_new:
                _free_slot(E, L, M, s)  # never confirmed: no events
                return -1, 2, CI_INVALID, 0
            _destroy(E, L, H, M, X, F, EV, s, now_ns, i, END_CLOSED, True)
            return s, d, ctinfo, 0
        if d == 1 and (E[s, C_STATUS] & S_SEEN_REPLY) == 0:
            E[s, C_STATUS] |= S_SEEN_REPLY
            E[s, C_ECACHE] |= EV_REPLY
        return s, d, ctinfo, 0
    return -1, 2, CI_INVALID, R_STATE  # unreachable: a repeat always creates a fresh entry


# ------------------------------------------------------------------------------------------ confirm

@kernel
def _timeout_s(L, s, now):
    r = L[s, L_EXPIRES] - now
    if r <= 0:
        return 0
    return r // NS


@kernel_norc
def ct_confirm_a(E, L, H, M, X, F, slot, now_ns, pkt_index, EV):
    """nf_confirm: insert an unconfirmed entry (NEW event) or deliver cached events (UPDATE).
    Returns False when insertion is refused (clash): the packet is dropped."""
    if slot < 0:
        return True
    s = slot
    if E[s, C_USED] == 0 or (E[s, C_STATUS] & S_DYING) != 0:
        return True
    if E[s, C_USED] == 1:
        fam = E[s, C_FAMILY]
        proto = E[s, C_PROTO]
        zone = E[s, C_ZONE]
        a, _d = _lookup(E, L, H, M, X, F, EV, fam, proto, zone, E[s, C_O_SRC_HI], E[s, C_O_SRC_LO],
                        E[s, C_O_DST_HI], E[s, C_O_DST_LO], E[s, C_O_SPORT], E[s, C_O_DPORT], now_ns)
        b, _d2 = _lookup(E, L, H, M, X, F, EV, fam, proto, zone, E[s, C_R_SRC_HI], E[s, C_R_SRC_LO],
                         E[s, C_R_DST_HI], E[s, C_R_DST_LO], E[s, C_R_SPORT], E[s, C_R_DPORT], now_ns)
        if a >= 0 or b >= 0:
            M[M_INSERT_FAILED] += 1
            _free_slot(E, L, M, s)
            return False
        _hash_insert(H, np.int64(2 * s + 1), _entry_hash(E, np.int64(2 * s + 1)))
        _hash_insert(H, np.int64(2 * s + 2), _entry_hash(E, np.int64(2 * s + 2)))
        E[s, C_USED] = 2
        E[s, C_STATUS] |= S_CONFIRMED
        L[s, L_EXPIRES] = now_ns + E[s, C_TIMEOUT_REL]
        _note_expiry(M, s, now_ns + E[s, C_TIMEOUT_REL])
        L[s, L_GEN] = E[s, C_GEN]
        cid = M[M_NEXT_ID]
        M[M_NEXT_ID] = cid + 1
        E[s, C_CT_ID] = cid
        _ed_push(E, M, s, cid)
        if cid < F.shape[0]:
            F[cid, CF_FAMILY] = fam
            F[cid, CF_PROTO] = proto
            F[cid, CF_ORIG_SRC_HI] = E[s, C_O_SRC_HI]
            F[cid, CF_ORIG_SRC_LO] = E[s, C_O_SRC_LO]
            F[cid, CF_ORIG_DST_HI] = E[s, C_O_DST_HI]
            F[cid, CF_ORIG_DST_LO] = E[s, C_O_DST_LO]
            F[cid, CF_ORIG_SPORT] = E[s, C_O_SPORT] & 0xFFFF
            F[cid, CF_ORIG_DPORT] = E[s, C_O_DPORT] & 0xFFFF
            F[cid, CF_ZONE] = zone & 0xFFFF
            F[cid, CF_FIRST_TS_NS] = E[s, C_FIRST_TS]
            F[cid, CF_FIRST_PACKET] = E[s, C_FIRST_PKT]
            _write_flow(E, F, s, 0, -1)
        else:
            M[M_FLOW_OVERFLOW] += 1
        E[s, C_ECACHE] = 0
        _emit(EV, cid, pkt_index, now_ns, EVT_NEW, E[s, C_TCP_STATE], E[s, C_STATUS], _timeout_s(L, s, now_ns))
        return True
    if E[s, C_ECACHE] != 0:
        ec = E[s, C_ECACHE]
        E[s, C_ECACHE] = 0
        # ctnetlink puts the protoinfo (TCP state) into an UPDATE only for IPCT_PROTOINFO (a state
        # change): a REPLY- or ASSURED-only update carries none (mid-stream pickup, 19_midstream_loose1)
        _emit(EV, E[s, C_CT_ID], pkt_index, now_ns, EVT_UPDATE,
              E[s, C_TCP_STATE] if (ec & EV_PROTOINFO) != 0 else np.int64(0), E[s, C_STATUS],
              _timeout_s(L, s, now_ns))
    return True


@inline_kernel
def ct_confirm_fast(E, L, H, M, X, F, slot, now_ns, pkt_index, EV):
    """ct_confirm_a without the call for the common case: no entry, or a confirmed entry with no cached
    events (an established flow's packet). A call passes ~10 arrays (~70 ns per packet)."""
    if slot < 0:
        return True
    if E[slot, C_USED] == 2 and E[slot, C_ECACHE] == 0:
        return True
    return ct_confirm_a(E, L, H, M, X, F, slot, now_ns, pkt_index, EV)


@kernel
def ct_abort_a(E, L, M, slot):
    """The packet that created an unconfirmed entry was dropped: the entry vanishes, no event."""
    if slot >= 0 and E[slot, C_USED] == 1:
        _free_slot(E, L, M, slot)


@kernel
def ct_tuple_taken_a(E, L, H, family, src_hi, src_lo, dst_hi, dst_lo, proto, sport, dport, zone,
                     ignore_slot, now_ns):
    """nf_conntrack_tuple_taken (addresses as int64 bit patterns): a live confirmed entry (other than
    ignore_slot) has this tuple as its ORIGINAL or REPLY tuple (given in reply-direction form by NAT)."""
    p = _find_pos(E, H, family, proto, zone, src_hi, src_lo, dst_hi, dst_lo, sport, dport)
    if p < 0:
        return False
    s = (H[p] - 1) >> 1
    if s == ignore_slot:
        return False
    return now_ns < L[s, L_EXPIRES]


@kernel
def ct_remaining_s_a(E, L, slot, now_ns):
    """Remaining lifetime in whole seconds (xt_conntrack --ctexpire, conntrack -L)."""
    if slot < 0:
        return 0
    if E[slot, C_USED] == 1:
        return E[slot, C_TIMEOUT_REL] // NS
    return _timeout_s(L, slot, now_ns)


@kernel
def ct_set_helper_a(E, slot, helper_id):
    """Attach a helper (1 = ftp) to an unconfirmed entry (-j CT --helper / nft ct helper set)."""
    if slot >= 0 and E[slot, C_USED] == 1 and E[slot, C_HELPER] == 0:
        E[slot, C_HELPER] = helper_id
        E[slot, C_STATUS] |= S_HELPER
        E[slot, C_ECACHE] |= EV_HELPER


@kernel
def ct_set_mark_a(E, slot, mark):
    """CONNMARK / ct mark set: caches an IPCT_MARK event when the value changes."""
    if slot >= 0 and E[slot, C_USED] != 0:
        m = np.int64(mark) & 0xFFFFFFFF
        if E[slot, C_MARK] != m:
            E[slot, C_MARK] = m
            E[slot, C_ECACHE] |= EV_MARK


@kernel
def ct_finish_a(E, L, H, M, X, F, end_ns, EV):
    """End of the capture: DESTROY (timer) events for entries expired by end_ns; flow records of
    live entries get their final counters (end = open_at_end). Call once after the last chunk."""
    for s in range(E.shape[0]):
        if E[s, C_USED] == 2 and (E[s, C_STATUS] & S_DYING) == 0:
            if end_ns >= L[s, L_EXPIRES]:
                _destroy(E, L, H, M, X, F, EV, s, L[s, L_EXPIRES], -1, END_EXPIRED, False)
            else:
                _write_flow(E, F, s, 0, -1)


# --------------------------------------------------------------------------------------- FTP helper

@kernel
def _lower(c):
    if 65 <= c <= 90:
        return c + 32
    return c


@kernel
def _prefix_ci(data, off, dlen, pat):
    """strncasecmp(data, pat, min(dlen, len(pat))) == 0"""
    n = len(pat)
    if dlen < n:
        n = dlen
    for k in range(n):
        if _lower(np.int64(data[off + k])) != _lower(pat[k]):
            return False
    return True


@kernel
def _try_number(data, off, dlen, out, n, sep, term):
    """try_number(): fills out[0:n]; returns chars consumed or 0."""
    for k in range(n):
        out[k] = 0
    k = 0
    ln = 0
    while ln < dlen and k < n:
        c = np.int64(data[off + ln])
        if 48 <= c <= 57:
            out[k] = (out[k] * 10 + c - 48) & 0xFFFFFFFF
        elif c == sep:
            k += 1
        else:
            if (c == term or term == 0) and k == n - 1:
                return ln
            return 0
        ln += 1
    return 0


@kernel
def _get_port(data, off, start, dlen, delim):
    port = 0
    for k in range(start, dlen):
        c = np.int64(data[off + k])
        if c == delim:
            if port == 0:
                return 0, 0
            return k + 1, port
        if 48 <= c <= 57:
            port = (port * 10 + c - 48) & 0xFFFF
        else:
            return 0, 0
    return 0, 0


FTP_PORT = np.array([ord(c) for c in "PORT"], dtype=np.int64)
FTP_EPRT = np.array([ord(c) for c in "EPRT"], dtype=np.int64)
FTP_227 = np.array([ord(c) for c in "227 "], dtype=np.int64)
FTP_229 = np.array([ord(c) for c in "229 "], dtype=np.int64)


@kernel
def _ftp_parse(data, off, dlen, d, fam, arr):
    """find_pattern over search[dir]: returns (found, addr(v4 as int, -1 = keep tuple addr), port).
    found: 0 no match, 1 match, -1 partial (helper drops the packet). arr: int64[>= 6] scratch."""
    for which in range(2):
        if d == 0:
            pat = FTP_PORT if which == 0 else FTP_EPRT
            skip = 32
            term = 13
        else:
            pat = FTP_227 if which == 0 else FTP_229
            skip = 0 if which == 0 else 40
            term = 0 if which == 0 else 41
        plen = len(pat)
        if dlen <= plen:
            if _prefix_ci(data, off, dlen, pat):
                return -1, -1, 0
            continue
        if not _prefix_ci(data, off, plen, pat):
            continue
        k = plen
        if skip != 0:
            while np.int64(data[off + k]) != skip:
                if k == dlen - 1:
                    return -1, -1, 0
                k += 1
            k += 1
        rest = dlen - k
        o2 = off + k
        kind = 2 * d + which  # 0 PORT 1 EPRT 2 PASV(227) 3 EPSV(229)
        if kind == 0 or kind == 2:
            j = 0
            if kind == 2:  # try_rfc1123: skip to the first digit
                while j < rest and not (48 <= np.int64(data[o2 + j]) <= 57):
                    j += 1
                if j == rest:
                    return -1, -1, 0
            ln = _try_number(data, o2 + j, rest - j, arr, 6, 44, term)
            if ln == 0:
                return -1, -1, 0
            addr = ((arr[0] << 24) | (arr[1] << 16) | (arr[2] << 8) | arr[3]) & 0xFFFFFFFF
            return 1, addr, ((arr[4] << 8) | arr[5]) & 0xFFFF
        if rest <= 3:
            return -1, -1, 0
        delim = np.int64(data[o2])
        if kind == 3:
            if (48 <= delim <= 57) or delim < 33 or delim > 126 or np.int64(data[o2 + 1]) != delim \
                    or np.int64(data[o2 + 2]) != delim:
                return -1, -1, 0
            nxt, port = _get_port(data, o2, 3, rest, delim)
            if nxt == 0:
                return -1, -1, 0
            return 1, -1, port
        # EPRT
        if (48 <= delim <= 57) or delim < 33 or delim > 126 or np.int64(data[o2 + 2]) != delim:
            return -1, -1, 0
        fc = np.int64(data[o2 + 1])
        if (fam == 4 and fc != 49) or (fam == 6 and fc != 50):
            return -1, -1, 0
        if fc != 49:
            return 0, -1, 0  # IPv6 EPRT: not modelled (documented), treated as no match
        ln = _try_number(data, o2 + 3, rest - 3, arr, 4, 46, delim)
        if ln == 0:
            return -1, -1, 0
        addr = ((arr[0] << 24) | (arr[1] << 16) | (arr[2] << 8) | arr[3]) & 0xFFFFFFFF
        nxt, port = _get_port(data, o2, 3 + ln + 1, rest, delim)
        if nxt == 0:
            return -1, -1, 0
        return 1, addr, port
    return 0, -1, 0


@kernel
def _ftp_update_nl(E, s, d, nl_seq):
    n = E[s, C_FTP_NSEQ + d]
    b = C_FTP_SEQ + 2 * d
    for k in range(n):
        if E[s, b + k] == nl_seq:
            return
    if n < 2:
        E[s, b + n] = nl_seq
        E[s, C_FTP_NSEQ + d] = n + 1
    else:
        oldest = 0 if before(E[s, b], E[s, b + 1]) else 1
        if after(nl_seq, E[s, b + oldest]):
            E[s, b + oldest] = nl_seq


@kernel
def _expect_add(E, M, X, P, s, fam, proto, zone, src_hi, src_lo, dst_hi, dst_lo, dport, now):
    """nf_ct_expect_related for the FTP class (max_expected 1, 300 s). False: refused."""
    free_e = -1
    for e in range(X.shape[0]):
        if X[e, X_USED] == 0:
            if free_e < 0:
                free_e = e
            continue
        same = (X[e, X_FAMILY] == fam and X[e, X_PROTO] == proto and X[e, X_ZONE] == zone
                and X[e, X_SRC_HI] == src_hi and X[e, X_SRC_LO] == src_lo and X[e, X_DST_HI] == dst_hi
                and X[e, X_DST_LO] == dst_lo and X[e, X_DPORT] == dport)
        mine = X[e, X_MASTER] == s and X[e, X_MASTER_ID] == E[s, C_CT_ID]
        if now >= X[e, X_EXPIRES]:
            X[e, X_USED] = 0
            M[M_N_EXPECT] -= 1
            if free_e < 0:
                free_e = e
            continue
        if same and mine:
            X[e, X_EXPIRES] = now + P[P_FTP_EXPECT]
            return True
        if same:
            return False
        if mine:  # max_expected = 1: evict the older one
            X[e, X_USED] = 0
            M[M_N_EXPECT] -= 1
            if free_e < 0:
                free_e = e
    if free_e < 0 or M[M_N_EXPECT] >= P[P_EXPECT_MAX]:
        return False
    e = free_e
    X[e, X_USED] = 1
    X[e, X_MASTER] = s
    X[e, X_MASTER_ID] = E[s, C_CT_ID]
    X[e, X_FAMILY] = fam
    X[e, X_PROTO] = proto
    X[e, X_ZONE] = zone
    X[e, X_SRC_HI] = src_hi
    X[e, X_SRC_LO] = src_lo
    X[e, X_DST_HI] = dst_hi
    X[e, X_DST_LO] = dst_lo
    X[e, X_DPORT] = dport
    X[e, X_EXPIRES] = now + P[P_FTP_EXPECT]
    X[e, X_CREATED] = now
    M[M_N_EXPECT] += 1
    M[M_EXPECT_CREATED] += 1
    return True


@kernel
def ct_help_a(E, M, X, P, pv, data, slot, d, ctinfo, now_ns):
    """Run the entry's helper (FTP) for the packet in pv (data = capture bytes). Call after the rules
    accepted the packet, before confirm. Returns True to accept, False: the helper drops it."""
    if slot < 0 or E[slot, C_HELPER] != 1 or (E[slot, C_STATUS] & S_DYING) != 0:
        return True
    if ctinfo != CI_ESTABLISHED and ctinfo != CI_EST_REPLY:
        return True
    if pv[PV_PROTO] != 6 or pv[PV_L3_OFF] < 0:
        return True
    off = pv[PV_L3_OFF] + pv[PV_IP_HLEN] + pv[PV_TCP_HLEN]
    dlen = pv[PV_L4_LEN] - pv[PV_TCP_HLEN]
    if dlen <= 0 or off + dlen > len(data):
        return True
    s = slot
    seq = pv[PV_TCP_SEQ]
    ends_nl = data[off + dlen - 1] == 10
    nl_seq = (seq + dlen) & U32
    found_seq = False
    for k in range(E[s, C_FTP_NSEQ + d]):
        if E[s, C_FTP_SEQ + 2 * d + k] == seq:
            found_seq = True
    if not found_seq:
        if ends_nl:
            _ftp_update_nl(E, s, d, nl_seq)
        return True
    fam = E[s, C_FAMILY]
    found, addr, port = _ftp_parse(data, off, dlen, d, fam, M[M_SCRATCH:M_SCRATCH + 6])
    if found == -1:
        M[M_HELPER_DROP] += 1
        return False
    ok = True
    if found == 1:
        c = C_O_SRC_HI if d == 0 else C_R_SRC_HI
        ssrc_hi = E[s, c]
        ssrc_lo = E[s, c + 1]
        addr_ok = True
        if addr >= 0:
            a_lo = np.int64(0xFFFF00000000) | np.int64(addr)
            addr_ok = fam == 4 and ssrc_hi == 0 and ssrc_lo == a_lo
        if addr_ok:
            ce = C_R_SRC_HI if d == 0 else C_O_SRC_HI  # tuplehash[!dir]
            if not _expect_add(E, M, X, P, s, fam, 6, E[s, C_ZONE], E[s, ce], E[s, ce + 1], E[s, ce + 2],
                               E[s, ce + 3], port, now_ns):
                M[M_HELPER_DROP] += 1
                ok = False
    if ends_nl:
        _ftp_update_nl(E, s, d, nl_seq)
    return ok


# ------------------------------------------------------------------ table-level API (NamedTuple args)
# Thin wrappers kept for tests and callers outside the per-packet path.

@kernel
def ct_in(tab, prm, pk, i, zone, hook, now_ns, ev):
    """nf_conntrack_in for packet i of packet table pk. Returns (slot, dir, ctinfo, reason)."""
    pv = np.empty(N_PV, dtype=np.int64)
    load_pv(pk, i, pv)
    return ct_in_pv(tab.E, tab.L, tab.H, tab.M, tab.X, tab.F, prm.vec, pv, zone, hook, now_ns, ev)


@kernel
def ct_confirm(tab, prm, slot, now_ns, pkt_index, ev):
    return ct_confirm_a(tab.E, tab.L, tab.H, tab.M, tab.X, tab.F, slot, now_ns, pkt_index, ev)


@kernel
def ct_abort(tab, slot):
    ct_abort_a(tab.E, tab.L, tab.M, slot)


@kernel
def ct_help(tab, prm, pk, data, i, slot, d, ctinfo, now_ns):
    pv = np.empty(N_PV, dtype=np.int64)
    load_pv(pk, i, pv)
    return ct_help_a(tab.E, tab.M, tab.X, prm.vec, pv, data, slot, d, ctinfo, now_ns)


@kernel
def ct_tuple_taken(tab, family, src_hi, src_lo, dst_hi, dst_lo, proto, sport, dport, zone, ignore_slot, now_ns):
    return ct_tuple_taken_a(tab.E, tab.L, tab.H, family, np.int64(src_hi), np.int64(src_lo), np.int64(dst_hi),
                            np.int64(dst_lo), proto, sport, dport, zone, ignore_slot, now_ns)


@kernel
def ct_remaining_s(tab, slot, now_ns):
    return ct_remaining_s_a(tab.E, tab.L, slot, now_ns)


@kernel
def ct_set_helper(tab, slot, helper_id):
    ct_set_helper_a(tab.E, slot, helper_id)


@kernel
def ct_set_mark(tab, slot, mark):
    ct_set_mark_a(tab.E, slot, mark)


@kernel
def ct_finish(tab, end_ns, ev):
    ct_finish_a(tab.E, tab.L, tab.H, tab.M, tab.X, tab.F, end_ns, ev)


PV_BLOCK = 1024


@kernel
def _ct_block(E, L, H, M, X, F, P, PV, n, EV):
    for k in range(n):
        pv = PV[k]
        now = pv[PV_TS]
        s, _d, _ci, _r = ct_in_pv(E, L, H, M, X, F, P, pv, 0, 0, now, EV)
        ct_confirm_a(E, L, H, M, X, F, s, now, pv[PV_INDEX], EV)
        if EV[0, 0] > EV.shape[0] - 16:
            return k + 1
    return n


@kernel
def ct_replay_range(tab, prm, pk, ev, start, end):
    """Conntrack alone over packets [start, end) of pk (PREROUTING, zone 0, every packet accepted and
    confirmed): the benchmark driver. Returns the next index (stops early when ev is nearly full)."""
    tab = borrow(tab)
    prm = borrow(prm)
    pk = borrow(pk)
    ev = borrow(ev)
    PV = np.empty((PV_BLOCK, N_PV), dtype=np.int64)
    i = start
    while i < end:
        hi = min(end, i + PV_BLOCK)
        n = load_pv_block(pk, i, hi, PV)
        done = _ct_block(tab.E, tab.L, tab.H, tab.M, tab.X, tab.F, prm.vec, PV, n, ev)
        i += done
        if done < n:
            break
    return i

"""Conntrack kernels: table primitives, nf_conntrack_in, confirm, protocol handlers (spec §1-§10).

All functions are jitted with the one `kernel` decorator. They never raise for data problems: they
return status / reason codes. Integer arithmetic in TCP sequence space is done in int64 masked to 32
bits so that NUMBA_DISABLE_JIT=1 gives the same answers.
"""

from __future__ import annotations

import numpy as np

from nfreplay.replay._jit import kernel
from nfreplay.replay.conntrack.params import (
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
    EV_ASSURED,
    EV_HELPER,
    EV_MARK,
    EV_PROTOINFO,
    EV_REPLY,
    M_COUNT,
    M_CSUM_BAD,
    M_EARLY_DROP,
    M_EXPECT_CREATED,
    M_FLOW_OVERFLOW,
    M_FREE_TOP,
    M_HELPER_DROP,
    M_INSERT_FAILED,
    M_MASK,
    M_N_EXPECT,
    M_NEXT_ID,
    M_PENDING,
    M_TABLE_FULL,
)

NS = 1_000_000_000
U32 = 0xFFFFFFFF
U64_32 = np.uint64(32)
U64_LO = np.uint64(0xFFFFFFFF)

# status bits
S_EXPECTED = 1
S_SEEN_REPLY = 2
S_ASSURED = 4
S_CONFIRMED = 8
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
    h = np.int64(0x2545F491)
    h = _mix(h, np.int64(shi >> U64_32))
    h = _mix(h, np.int64(shi & U64_LO))
    h = _mix(h, np.int64(slo >> U64_32))
    h = _mix(h, np.int64(slo & U64_LO))
    h = _mix(h, np.int64(dhi >> U64_32))
    h = _mix(h, np.int64(dhi & U64_LO))
    h = _mix(h, np.int64(dlo >> U64_32))
    h = _mix(h, np.int64(dlo & U64_LO))
    h = _mix(h, (np.int64(sp) << 16) | np.int64(dp))
    h = _mix(h, (np.int64(fam) << 24) | (np.int64(proto) << 16) | np.int64(zone))
    return h


@kernel
def _entry_hash(tab, v):
    s = (v - 1) >> 1
    if ((v - 1) & 1) == 0:
        return tuple_hash(tab.family[s], tab.proto[s], tab.zone[s], tab.o_src_hi[s], tab.o_src_lo[s],
                          tab.o_dst_hi[s], tab.o_dst_lo[s], tab.o_sport[s], tab.o_dport[s])
    return tuple_hash(tab.family[s], tab.proto[s], tab.zone[s], tab.r_src_hi[s], tab.r_src_lo[s],
                      tab.r_dst_hi[s], tab.r_dst_lo[s], tab.r_sport[s], tab.r_dport[s])


@kernel
def _key_eq(tab, v, fam, proto, zone, shi, slo, dhi, dlo, sp, dp):
    s = (v - 1) >> 1
    if tab.family[s] != fam or tab.proto[s] != proto or tab.zone[s] != zone:
        return False
    if ((v - 1) & 1) == 0:
        return (tab.o_src_lo[s] == slo and tab.o_dst_lo[s] == dlo and tab.o_sport[s] == sp
                and tab.o_dport[s] == dp and tab.o_src_hi[s] == shi and tab.o_dst_hi[s] == dhi)
    return (tab.r_src_lo[s] == slo and tab.r_dst_lo[s] == dlo and tab.r_sport[s] == sp
            and tab.r_dport[s] == dp and tab.r_src_hi[s] == shi and tab.r_dst_hi[s] == dhi)


@kernel
def _find_pos(tab, fam, proto, zone, shi, slo, dhi, dlo, sp, dp):
    """Position in hidx of the confirmed tuple, or -1."""
    mask = tab.meta[M_MASK]
    p = tuple_hash(fam, proto, zone, shi, slo, dhi, dlo, sp, dp) & mask
    while True:
        v = tab.hidx[p]
        if v == 0:
            return -1
        if _key_eq(tab, v, fam, proto, zone, shi, slo, dhi, dlo, sp, dp):
            return p
        p = (p + 1) & mask


@kernel
def _hash_insert(tab, v, h):
    mask = tab.meta[M_MASK]
    p = h & mask
    while tab.hidx[p] != 0:
        p = (p + 1) & mask
    tab.hidx[p] = v


@kernel
def _hash_delete_pos(tab, p):
    """Linear-probing delete with backward shift (no tombstones)."""
    mask = tab.meta[M_MASK]
    tab.hidx[p] = 0
    j = p
    while True:
        j = (j + 1) & mask
        v = tab.hidx[j]
        if v == 0:
            return
        k = _entry_hash(tab, v) & mask
        if p <= j:
            if p < k <= j:
                continue
        elif k <= j or k > p:
            continue
        tab.hidx[p] = v
        tab.hidx[j] = 0
        p = j


@kernel
def _hash_remove_entry(tab, s):
    for d in range(2):
        v = np.int64(s * 2 + d + 1)
        h = _entry_hash(tab, v)
        mask = tab.meta[M_MASK]
        p = h & mask
        while True:
            w = tab.hidx[p]
            if w == 0:
                break
            if w == v:
                _hash_delete_pos(tab, p)
                break
            p = (p + 1) & mask


# ------------------------------------------------------------------------------------------- events

@kernel
def _emit(ev, ct_id, pkt_index, ts, kind, tcp_state, status, timeout_s):
    k = ev.n[0]
    if k >= len(ev.ct_id):
        ev.n[1] += 1
        return
    ev.ct_id[k] = ct_id
    ev.packet_index[k] = pkt_index
    ev.ts_ns[k] = ts
    ev.event[k] = kind
    ev.tcp_state[k] = tcp_state
    ev.status[k] = status & 0xFFFFFFFF
    ev.timeout_s[k] = timeout_s
    ev.n[0] = k + 1


@kernel
def _write_flow(tab, s, end, end_ts):
    f = tab.ct_id[s]
    if f < 0 or f >= len(tab.f_family):
        return
    tab.f_status[f] = tab.status[s] & 0xFFFFFFFF
    tab.f_last_ts_ns[f] = tab.last_ts[s]
    tab.f_packets_orig[f] = tab.pk_o[s]
    tab.f_bytes_orig[f] = tab.by_o[s]
    tab.f_packets_reply[f] = tab.pk_r[s]
    tab.f_bytes_reply[f] = tab.by_r[s]
    tab.f_final_tcp_state[f] = tab.tcp_state[s]
    tab.f_end[f] = end
    tab.f_end_ts_ns[f] = end_ts
    tab.f_last_packet[f] = tab.last_pkt[s]
    tab.f_mark[f] = tab.mark[s] & 0xFFFFFFFF
    tab.f_reply_src_hi[f] = tab.r_src_hi[s]
    tab.f_reply_src_lo[f] = tab.r_src_lo[s]
    tab.f_reply_dst_hi[f] = tab.r_dst_hi[s]
    tab.f_reply_dst_lo[f] = tab.r_dst_lo[s]
    tab.f_reply_sport[f] = tab.r_sport[s]
    tab.f_reply_dport[f] = tab.r_dport[s]


@kernel
def _free_slot(tab, s):
    tab.used[s] = 0
    tab.ct_id[s] = -1
    tab.master[s] = -1
    top = tab.meta[M_FREE_TOP]
    tab.free[top] = s
    tab.meta[M_FREE_TOP] = top + 1
    tab.meta[M_COUNT] -= 1


@kernel
def _drop_expectations_of(tab, s):
    if tab.meta[M_N_EXPECT] == 0:
        return
    cid = tab.ct_id[s]
    for e in range(len(tab.e_used)):
        if tab.e_used[e] != 0 and tab.e_master[e] == s and tab.e_master_id[e] == cid:
            tab.e_used[e] = 0
            tab.meta[M_N_EXPECT] -= 1


@kernel
def _destroy(tab, s, ts, pkt_index, end, ev, defer):
    """Remove a confirmed entry: DESTROY event, flow record closed. defer: keep the slot readable
    until the next ct_in (the current packet still references it)."""
    _hash_remove_entry(tab, s)
    tab.status[s] |= S_DYING
    _emit(ev, tab.ct_id[s], pkt_index, ts, EVT_DESTROY, tab.tcp_state[s], tab.status[s], 0)
    _write_flow(tab, s, end, ts)
    _drop_expectations_of(tab, s)
    if defer:
        tab.meta[M_PENDING] = s
    else:
        _free_slot(tab, s)


@kernel
def _lookup(tab, fam, proto, zone, shi, slo, dhi, dlo, sp, dp, now, ev):
    """(slot, dir) of the live confirmed entry with this tuple; an expired match is reaped (DESTROY
    stamped with its expiry time, packet_index -1) and not returned."""
    p = _find_pos(tab, fam, proto, zone, shi, slo, dhi, dlo, sp, dp)
    if p < 0:
        return -1, 0
    v = tab.hidx[p]
    s = (v - 1) >> 1
    if now >= tab.expires[s]:
        _destroy(tab, s, tab.expires[s], -1, END_EXPIRED, ev, False)
        return -1, 0
    return s, (v - 1) & 1


@kernel
def _reap_all_expired(tab, now, ev):
    n = 0
    for s in range(len(tab.used)):
        if tab.used[s] == 2 and (tab.status[s] & S_DYING) == 0 and now >= tab.expires[s]:
            _destroy(tab, s, tab.expires[s], -1, END_EXPIRED, ev, False)
            n += 1
    return n


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
def _alloc(tab, prm, now, pkt_index, ev):
    """A free slot, applying nf_conntrack_max with early drop. -1: table full (packet dropped)."""
    lim = len(tab.used)
    if prm.ct_max > 0 and prm.ct_max < lim:
        lim = prm.ct_max
    if tab.meta[M_COUNT] >= lim or tab.meta[M_FREE_TOP] == 0:
        _reap_all_expired(tab, now, ev)
    if tab.meta[M_COUNT] >= lim or tab.meta[M_FREE_TOP] == 0:
        # early drop: the oldest confirmed, non-ASSURED, non-dying entry (documented policy)
        victim = -1
        best = np.int64(0x7FFFFFFFFFFFFFFF)
        for s in range(len(tab.used)):
            if (tab.used[s] == 2 and (tab.status[s] & (S_ASSURED | S_DYING)) == 0
                    and tab.ct_id[s] < best):
                best = tab.ct_id[s]
                victim = s
        if victim < 0:
            tab.meta[M_TABLE_FULL] += 1
            return -1
        _destroy(tab, victim, now, pkt_index, END_EVICTED, ev, False)
        tab.meta[M_EARLY_DROP] += 1
    top = tab.meta[M_FREE_TOP] - 1
    tab.meta[M_FREE_TOP] = top
    s = tab.free[top]
    tab.meta[M_COUNT] += 1
    return s


@kernel
def _init_entry(tab, s, fam, proto, zone, shi, slo, dhi, dlo, sp, dp, rsp, rdp, now, pkt_index):
    tab.used[s] = 1
    tab.family[s] = fam
    tab.proto[s] = proto
    tab.zone[s] = zone
    tab.o_src_hi[s] = shi
    tab.o_src_lo[s] = slo
    tab.o_dst_hi[s] = dhi
    tab.o_dst_lo[s] = dlo
    tab.o_sport[s] = sp
    tab.o_dport[s] = dp
    tab.r_src_hi[s] = dhi
    tab.r_src_lo[s] = dlo
    tab.r_dst_hi[s] = shi
    tab.r_dst_lo[s] = slo
    tab.r_sport[s] = rsp
    tab.r_dport[s] = rdp
    tab.status[s] = 0
    tab.expires[s] = 0
    tab.timeout_rel[s] = 0
    tab.mark[s] = 0
    tab.helper[s] = 0
    tab.ct_id[s] = -1
    tab.master[s] = -1
    tab.ecache[s] = 0
    tab.pk_o[s] = 0
    tab.by_o[s] = 0
    tab.pk_r[s] = 0
    tab.by_r[s] = 0
    tab.first_ts[s] = now
    tab.last_ts[s] = now
    tab.first_pkt[s] = pkt_index
    tab.last_pkt[s] = pkt_index
    tab.stream_ts[s] = now + 2 * NS
    tab.tcp_state[s] = 0
    for d in range(2):
        tab.td_end[s, d] = 0
        tab.td_maxend[s, d] = 0
        tab.td_maxwin[s, d] = 0
        tab.td_maxack[s, d] = 0
        tab.td_scale[s, d] = 0
        tab.td_flags[s, d] = 0
        tab.ftp_nseq[s, d] = 0
        tab.ftp_seq[s, d, 0] = 0
        tab.ftp_seq[s, d, 1] = 0
    tab.last_dir[s] = 0
    tab.last_index[s] = I_NONE
    tab.last_seq[s] = 0
    tab.last_ack[s] = 0
    tab.last_end[s] = 0
    tab.last_win[s] = 0
    tab.last_wscale[s] = 0
    tab.last_flags[s] = 0
    tab.retrans[s] = 0


@kernel
def _refresh(tab, s, d, now, timeout, ip_len):
    """nf_ct_refresh_acct: unconfirmed entries keep a relative timeout until confirm."""
    if (tab.status[s] & S_FIXED_TIMEOUT) == 0:
        if tab.used[s] == 2:
            tab.expires[s] = now + timeout
        else:
            tab.timeout_rel[s] = timeout
    _acct(tab, s, d, ip_len)


@kernel
def _acct(tab, s, d, ip_len):
    if d == 0:
        tab.pk_o[s] += 1
        tab.by_o[s] += ip_len
    else:
        tab.pk_r[s] += 1
        tab.by_r[s] += ip_len


@kernel
def _find_expectation(tab, fam, proto, zone, shi, slo, dhi, dlo, sp, dp, now):
    """nf_ct_find_expectation: consumes and returns the master slot, or -1."""
    if tab.meta[M_N_EXPECT] == 0:
        return -1
    for e in range(len(tab.e_used)):
        if tab.e_used[e] == 0:
            continue
        m = tab.e_master[e]
        if now >= tab.e_expires[e] or tab.used[m] != 2 or tab.ct_id[m] != tab.e_master_id[e] \
                or (tab.status[m] & S_DYING) != 0:
            tab.e_used[e] = 0
            tab.meta[M_N_EXPECT] -= 1
            continue
        if (tab.e_family[e] == fam and tab.e_proto[e] == proto and tab.e_zone[e] == zone
                and tab.e_dst_lo[e] == dlo and tab.e_dst_hi[e] == dhi and tab.e_dport[e] == dp
                and tab.e_src_lo[e] == slo and tab.e_src_hi[e] == shi):
            tab.e_used[e] = 0
            tab.meta[M_N_EXPECT] -= 1
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
def _tcp_options(tab, s, d, ws, sackok):
    """tcp_options(): td_scale and WINDOW_SCALE/SACK_PERM from the SYN; BE_LIBERAL preserved."""
    tab.td_scale[s, d] = 0
    tab.td_flags[s, d] &= F_LIBERAL
    if sackok:
        tab.td_flags[s, d] |= F_SACK_PERM
    if ws >= 0:
        tab.td_flags[s, d] |= F_WSCALE
        tab.td_scale[s, d] = 14 if ws > 14 else ws


@kernel
def _tcp_init_sender(tab, s, d, end, win, ws, sackok):
    tab.td_end[s, d] = end
    tab.td_maxend[s, d] = end
    tab.td_maxwin[s, d] = 1 if win == 0 else win
    _tcp_options(tab, s, d, ws, sackok)
    r = 1 - d
    if d == 1 and not ((tab.td_flags[s, d] & F_WSCALE) and (tab.td_flags[s, r] & F_WSCALE)):
        tab.td_scale[s, d] = 0
        tab.td_scale[s, r] = 0


# results of tcp_in_window
W_ACCEPT = 0
W_IGNORE = 1
W_INVALID = 2


@kernel
def _tcp_in_window(tab, prm, s, d, index, fl, seq, ack, sack, win, end, ws, sackok):
    """tcp_in_window (6.1+): returns (W_*, reason)."""
    r = 1 - d
    state = tab.tcp_state[s]
    if (tab.td_flags[s, r] & F_SACK_PERM) == 0:
        sack = ack
    if tab.td_maxwin[s, d] == 0:
        if fl & 0x02:
            _tcp_init_sender(tab, s, d, end, win, ws, sackok)
            if (fl & 0x10) == 0:
                return W_ACCEPT, 0
        else:
            tab.td_end[s, d] = end
            sw = (win << tab.td_scale[s, d]) & U32
            tab.td_maxwin[s, d] = 1 if sw == 0 else sw
            tab.td_maxend[s, d] = (end + tab.td_maxwin[s, d]) & U32
            if tab.td_maxwin[s, r] == 0:
                tab.td_end[s, r] = sack
                tab.td_maxend[s, r] = sack
            elif sack == ((tab.td_end[s, r] + 1) & U32):
                tab.td_end[s, r] = (tab.td_end[s, r] + 1) & U32
    elif (fl & 0x02) and after(end, tab.td_end[s, d]) and (state == sSS or state == sSR):
        _tcp_init_sender(tab, s, d, end, win, ws, sackok)
        if d == 1 and (fl & 0x10) == 0:
            return W_ACCEPT, 0

    if (fl & 0x10) == 0:
        ack = tab.td_end[s, r]
        sack = ack
    elif (fl & 0x14) == 0x14 and ack == 0:
        ack = tab.td_end[s, r]
        sack = ack
    if (fl & 0x04) and seq == 0 and state == sSS:
        seq = tab.td_end[s, d]
        end = seq

    liberal = (tab.td_flags[s, d] & F_LIBERAL) != 0 or prm.be_liberal != 0
    s_end = tab.td_end[s, d]
    s_maxend = tab.td_maxend[s, d]
    r_end = tab.td_end[s, r]
    r_maxwin = tab.td_maxwin[s, r]
    maxack = tab.td_maxwin[s, d]
    if maxack < 66000:
        maxack = 66000
    ack_ok = after(sack, (r_end - maxack - 1) & U32)
    if not before(seq, (s_maxend + 1) & U32):
        overshot = (end - s_maxend + 1) & U32
        in_recv = r_maxwin != 0 and after(end, (s_end - r_maxwin - 1) & U32)
        if in_recv and ack_ok and overshot <= r_maxwin and before(sack, (r_end + 1) & U32):
            tab.td_end[s, d] = end
            tab.td_flags[s, d] |= F_UNACK
            return (W_ACCEPT if liberal else W_IGNORE), 0
        return (W_ACCEPT if liberal else W_INVALID), R_SEQ_OVER
    if not before(sack, (r_end + 1) & U32):
        return (W_ACCEPT if liberal else W_INVALID), R_ACK_OVER
    if not (r_maxwin == 0 or after(end, (s_end - r_maxwin - 1) & U32)):
        return (W_ACCEPT if liberal else W_IGNORE), 0
    if not ack_ok:
        return (W_ACCEPT if liberal else W_IGNORE), 0

    # all four checks passed: update
    if (fl & 0x02) == 0:
        win = (win << tab.td_scale[s, d]) & U32
    swin = (win + ((sack - ack) & U32)) & U32
    if tab.td_maxwin[s, d] < swin:
        tab.td_maxwin[s, d] = swin
    if after(end, tab.td_end[s, d]):
        tab.td_end[s, d] = end
        tab.td_flags[s, d] |= F_UNACK
    if fl & 0x10:
        if (tab.td_flags[s, d] & F_MAXACK) == 0:
            tab.td_maxack[s, d] = ack
            tab.td_flags[s, d] |= F_MAXACK
        elif after(ack, tab.td_maxack[s, d]):
            tab.td_maxack[s, d] = ack
    if tab.td_maxwin[s, r] != 0 and after(end, s_maxend):
        tab.td_maxwin[s, r] = (tab.td_maxwin[s, r] + ((end - s_maxend) & U32)) & U32
    if after((sack + win) & U32, (tab.td_maxend[s, r] - 1) & U32):
        tab.td_maxend[s, r] = (sack + win) & U32
        if win == 0:
            tab.td_maxend[s, r] = (tab.td_maxend[s, r] + 1) & U32
    if ack == tab.td_end[s, r]:
        tab.td_flags[s, r] &= ~F_UNACK
    if index == I_ACK:
        if (tab.last_dir[s] == d and tab.last_seq[s] == seq and tab.last_ack[s] == ack
                and tab.last_end[s] == end and tab.last_win[s] == win):
            tab.retrans[s] += 1
        else:
            tab.last_dir[s] = d
            tab.last_seq[s] = seq
            tab.last_ack[s] = ack
            tab.last_end[s] = end
            tab.last_win[s] = win
            tab.retrans[s] = 0
    return W_ACCEPT, 0


# tcp handler results
H_ACCEPT = 0
H_INVALID = 1
H_REPEAT = 2
H_KILLED = 3  # accepted, entry deleted (RST without reply)


@kernel
def _tcp_new(tab, prm, s, fl, seq, win, end, ws, sackok):
    """tcp_new: returns reason (0 ok)."""
    index = _tcp_index(fl)
    ns = TCP_TABLE[0, index, sNO]
    if ns >= sIV:
        return R_INVALID_NEW
    if ns == sSS:
        tab.td_end[s, 0] = end
        tab.td_maxwin[s, 0] = 1 if win == 0 else win
        tab.td_maxend[s, 0] = end
        _tcp_options(tab, s, 0, ws, sackok)
    elif prm.loose == 0:
        return R_NO_PICKUP
    else:
        tab.td_end[s, 0] = end
        tab.td_maxwin[s, 0] = 1 if win == 0 else win
        tab.td_maxend[s, 0] = (end + tab.td_maxwin[s, 0]) & U32
        tab.td_flags[s, 0] = F_SACK_PERM | F_LIBERAL
        tab.td_flags[s, 1] = F_SACK_PERM | F_LIBERAL
    tab.last_index[s] = I_NONE
    return 0


@kernel
def _tcp_handle_invalid(tab, s, d, index, now, tmo_unack):
    if (tab.status[s] & S_ASSURED) == 0 or (tab.status[s] & S_FIXED_TIMEOUT) != 0:
        return
    if index != I_RST and index != I_FIN:
        return
    if tab.last_dir[s] != d and (tab.last_index[s] == I_FIN or tab.last_index[s] == I_RST):
        remaining = tab.expires[s] - now
        if remaining < 120 * NS:
            return
        if remaining > tmo_unack:
            tab.expires[s] = now + tmo_unack
    else:
        tab.last_index[s] = index
        tab.last_dir[s] = d


@kernel
def _tcp_packet(tab, prm, pk, i, s, d, now, ev):
    """nf_conntrack_tcp_packet after tcp_error/tcp_new. Returns (H_*, reason)."""
    fl = np.int64(pk.tcp_flags[i]) & 0xFF
    seq = np.int64(pk.tcp_seq[i])
    ack = np.int64(pk.tcp_ack[i])
    sack = np.int64(pk.tcp_sack[i])
    win = np.int64(pk.tcp_win[i])
    ws = np.int64(pk.tcp_wscale[i])
    sackok = pk.tcp_sackok[i] != 0
    plen = np.int64(pk.l4_len[i]) - np.int64(pk.tcp_hlen[i])
    end = (seq + plen + (1 if fl & 0x02 else 0) + (1 if fl & 0x01 else 0)) & U32
    ip_len = np.int64(pk.ip_len[i])
    tt = prm.tcp_timeouts
    st = tab.status[s]

    old = np.int64(tab.tcp_state[s])
    index = _tcp_index(fl)
    new = TCP_TABLE[d, index, old]
    go_in_window = False  # skip window check (goto in_window)

    if new == sSS and old >= sTW:
        if ((tab.td_flags[s, 0] | tab.td_flags[s, 1]) & F_CLOSE_INIT) != 0 or \
                (tab.last_dir[s] == d and tab.last_index[s] == I_RST):
            return H_REPEAT, 0
        new = sIG
    if new == sIG:
        if (index == I_SYNACK and tab.last_index[s] == I_SYN and tab.last_dir[s] != d
                and ack == tab.last_end[s]):
            old = sSS
            new = sSR
            ld = tab.last_dir[s]
            tab.td_end[s, ld] = tab.last_end[s]
            tab.td_maxend[s, ld] = tab.last_end[s]
            tab.td_maxwin[s, ld] = 1 if tab.last_win[s] == 0 else tab.last_win[s]
            tab.td_scale[s, ld] = tab.last_wscale[s]
            tab.td_flags[s, ld] = tab.last_flags[s] & ~F_CHALLENGE
            tab.td_end[s, d] = 0
            tab.td_maxend[s, d] = 0
            tab.td_maxwin[s, d] = 0
            tab.td_maxack[s, d] = 0
            tab.td_scale[s, d] = 0
            tab.td_flags[s, d] &= F_LIBERAL
        else:
            tab.last_index[s] = index
            tab.last_dir[s] = d
            tab.last_seq[s] = seq
            tab.last_end[s] = end
            tab.last_win[s] = win
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
                tab.last_flags[s] = lf
                tab.last_wscale[s] = lw
            if old == sSS and index == I_ACK and d == 1:
                tab.last_ack[s] = ack
            return H_ACCEPT, 0
    elif new == sIV:
        return H_INVALID, R_STATE
    elif new == sTW:
        if (old == sLA and index == I_ACK and tab.last_dir[s] != d and tab.last_index[s] == I_SYN
                and (tab.last_flags[s] & F_CHALLENGE) != 0):
            tab.last_flags[s] &= ~F_CHALLENGE
            return H_ACCEPT, 0
    elif new == sS2:
        tab.last_flags[s] |= F_SIMOPEN
    elif new == sSR:
        if d == 1 and index == I_ACK and (tab.last_flags[s] & F_SIMOPEN) != 0:
            new = sES
    elif new == sCL and index == I_RST:
        if old == sFW or old == sCW or old == sLA or old == sTW or old == sCL:
            go_in_window = True
        else:
            r = 1 - d
            decided = False
            if (tab.td_flags[s, r] & F_MAXACK) != 0 and tab.last_index[s] != I_SYN:
                established = old == sES and (st & S_ASSURED) != 0
                if seq == 0 and not established:
                    decided = True
                elif before(seq, tab.td_maxack[s, r]) and prm.ignore_invalid_rst == 0:
                    return H_INVALID, R_RST
                elif not established or seq == tab.td_maxack[s, r]:
                    decided = True
                elif tab.last_index[s] == I_ACK and tab.last_dir[s] == d and seq == tab.last_end[s]:
                    decided = True
                else:
                    new = old
            if not decided:
                if ((((st & S_SEEN_REPLY) != 0 and tab.last_index[s] == I_SYN)
                     or ((st & S_ASSURED) == 0 and tab.last_index[s] == I_ACK))
                        and ack == tab.last_end[s]):
                    go_in_window = True
                elif old == sSS and tab.last_index[s] == I_ACK and tab.last_dir[s] == 1 \
                        and seq == tab.last_ack[s]:
                    go_in_window = True

    if not go_in_window:
        res, reason = _tcp_in_window(tab, prm, s, d, index, fl, seq, ack, sack, win, end, ws, sackok)
        if res == W_IGNORE:
            return H_ACCEPT, 0
        if res == W_INVALID:
            _tcp_handle_invalid(tab, s, d, index, now, tt[T_UNACK])
            return H_INVALID, reason

    # in_window:
    tab.last_index[s] = index
    tab.last_dir[s] = d
    tab.tcp_state[s] = new
    if old != new and new == sFW:
        tab.td_flags[s, d] |= F_CLOSE_INIT
    if tab.retrans[s] >= prm.max_retrans and tt[new] > tt[T_RETRANS]:
        timeout = tt[T_RETRANS]
    elif index == I_RST:
        timeout = tt[sCL]
    elif ((tab.td_flags[s, 0] | tab.td_flags[s, 1]) & F_UNACK) != 0 and tt[new] > tt[T_UNACK]:
        timeout = tt[T_UNACK]
    elif tab.last_win[s] == 0 and tt[new] > tt[T_RETRANS]:
        timeout = tt[T_RETRANS]
    else:
        timeout = tt[new]
    if new != old:
        tab.ecache[s] |= EV_PROTOINFO
    if (st & S_SEEN_REPLY) == 0:
        if fl & 0x04:
            _acct(tab, s, d, ip_len)
            return H_KILLED, 0
        if index == I_SYN and old == sSS:
            return H_ACCEPT, 0
        if new == sES and timeout > tt[T_UNACK]:
            timeout = tt[T_UNACK]
    elif (st & S_ASSURED) == 0 and (old == sSR or old == sES) and new == sES:
        tab.status[s] |= S_ASSURED
        tab.ecache[s] |= EV_ASSURED
    _refresh(tab, s, d, now, timeout, ip_len)
    return H_ACCEPT, 0


# ------------------------------------------------------------------------------------ nf_conntrack_in

@kernel
def _finish_pending(tab):
    p = tab.meta[M_PENDING]
    if p >= 0:
        tab.meta[M_PENDING] = -1
        _free_slot(tab, p)


@kernel
def _icmp_error_lookup(tab, pk, i, zone, now, ev):
    """nf_conntrack_inet_error: (slot, dir, ctinfo, reason)."""
    fam = pk.family[i]
    if pk.inner_ok[i] != 1:
        return -1, 2, CI_INVALID, R_ICMP_INNER
    ip = pk.inner_proto[i]
    isp = np.int64(pk.inner_sport[i])
    idp = np.int64(pk.inner_dport[i])
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
    s, d = _lookup(tab, fam, ip, zone, pk.inner_dst_hi[i], pk.inner_dst_lo[i], pk.inner_src_hi[i],
                   pk.inner_src_lo[i], rsp, rdp, now, ev)
    if s < 0:
        return -1, 2, CI_INVALID, R_ICMP_NOMATCH
    if d == 0:
        ok = tab.o_dst_hi[s] == pk.dst_hi[i] and tab.o_dst_lo[s] == pk.dst_lo[i]
    else:
        ok = tab.r_dst_hi[s] == pk.dst_hi[i] and tab.r_dst_lo[s] == pk.dst_lo[i]
    if not ok:
        return -1, 2, CI_INVALID, R_ICMP_DADDR
    tab.last_pkt[s] = i
    return s, d, (CI_RELATED if d == 0 else CI_REL_REPLY), 0


@kernel
def ct_in(tab, prm, pk, i, zone, hook, now_ns, ev):
    """nf_conntrack_in for packet i. Returns (slot, dir, ctinfo, reason); see package docs."""
    _finish_pending(tab)
    st = pk.status[i]
    if st == 10:
        return -1, 2, CI_INVALID, R_FRAGMENT
    if st == 8:
        return -1, 2, CI_INVALID, R_CAPTURE_TRUNC
    if st != 0 and st != 9:
        return -1, 2, CI_INVALID, R_BAD_HDR
    fam = np.int64(pk.family[i])
    proto = np.int64(pk.proto[i])
    l4len = np.int64(pk.l4_len[i])
    csum_bad = pk.l4_csum[i] == 2 and hook == 0
    if csum_bad:
        tab.meta[M_CSUM_BAD] += 1
    check_csum = hook == 0 and prm.checksum != 0 and prm.assume_good_checksums == 0

    sp = np.int64(0)
    dp = np.int64(0)
    rsp = np.int64(0)
    rdp = np.int64(0)
    if proto == 6:
        if l4len < 20:
            return -1, 2, CI_INVALID, R_SHORT
        th = np.int64(pk.tcp_hlen[i])
        if st == 9 or th < 20 or l4len < th:
            return -1, 2, CI_INVALID, R_TRUNC
        if check_csum and csum_bad:
            return -1, 2, CI_INVALID, R_CSUM
        if TCP_VALID_FLAGS[np.int64(pk.tcp_flags[i]) & 0x37] == 0:
            return -1, 2, CI_INVALID, R_FLAGS
        sp = np.int64(pk.sport[i])
        dp = np.int64(pk.dport[i])
        rsp = dp
        rdp = sp
    elif proto == 17 or proto == 136:
        if l4len < 8:
            return -1, 2, CI_INVALID, R_SHORT
        if st == 9:
            return -1, 2, CI_INVALID, R_UDP_LEN
        if check_csum and csum_bad:
            return -1, 2, CI_INVALID, R_CSUM
        sp = np.int64(pk.sport[i])
        dp = np.int64(pk.dport[i])
        rsp = dp
        rdp = sp
    elif proto == 1 or proto == 58:
        if (proto == 1 and fam != 4) or (proto == 58 and fam != 6):
            return -1, 2, CI_INVALID, R_ICMP_FAMILY
        if l4len < 8:
            return -1, 2, CI_INVALID, R_SHORT
        if check_csum and csum_bad:
            return -1, 2, CI_INVALID, R_CSUM
        t = np.int64(pk.icmp_type[i])
        c = np.int64(pk.icmp_code[i])
        if fam == 4:
            if t > 18:
                return -1, 2, CI_INVALID, R_ICMP_TYPE
            if t == 3 or t == 4 or t == 5 or t == 11 or t == 12:
                return _icmp_error_lookup(tab, pk, i, zone, now_ns, ev)
        else:
            if (130 <= t <= 136) or t == 143 or t == 151 or t == 152:
                return -1, 2, CI_UNTRACKED, 0
            if t < 128:
                return _icmp_error_lookup(tab, pk, i, zone, now_ns, ev)
        sp = np.int64(pk.icmp_id[i])
        dp = (t << 8) | c
        inv = icmp_inverse_type(fam, t)
        rsp = sp
        rdp = (inv << 8) | c
    elif proto == 132:
        if l4len < 4:
            return -1, 2, CI_INVALID, R_SHORT
        sp = np.int64(pk.sport[i])
        dp = np.int64(pk.dport[i])
        rsp = dp
        rdp = sp
    shi = pk.src_hi[i]
    slo = pk.src_lo[i]
    dhi = pk.dst_hi[i]
    dlo = pk.dst_lo[i]
    ip_len = np.int64(pk.ip_len[i])

    for _attempt in range(2):  # second pass only after a TCP reopen (-NF_REPEAT)
        s, d = _lookup(tab, fam, proto, zone, shi, slo, dhi, dlo, sp, dp, now_ns, ev)
        is_new = s < 0
        if is_new:
            if (proto == 1 or proto == 58) and rdp < 0:
                return -1, 2, CI_INVALID, R_NO_INVERT
            s = _alloc(tab, prm, now_ns, i, ev)
            if s < 0:
                return -1, 2, CI_INVALID, R_TABLE_FULL
            _init_entry(tab, s, fam, proto, zone, shi, slo, dhi, dlo, sp, dp, rsp, rdp, now_ns, i)
            d = 0
            m = _find_expectation(tab, fam, proto, zone, shi, slo, dhi, dlo, sp, dp, now_ns)
            if m >= 0:
                tab.status[s] |= S_EXPECTED
                tab.master[s] = tab.ct_id[m]
                tab.mark[s] = tab.mark[m]
                ctinfo = CI_RELATED
            else:
                ctinfo = CI_NEW
        else:
            stt = tab.status[s]
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
        if proto == 6:
            if is_new:
                fl = np.int64(pk.tcp_flags[i]) & 0xFF
                seq = np.int64(pk.tcp_seq[i])
                plen = l4len - np.int64(pk.tcp_hlen[i])
                end = (seq + plen + (1 if fl & 0x02 else 0) + (1 if fl & 0x01 else 0)) & U32
                reason = _tcp_new(tab, prm, s, fl, seq, np.int64(pk.tcp_win[i]), end,
                                  np.int64(pk.tcp_wscale[i]), pk.tcp_sackok[i] != 0)
                if reason != 0:
                    verdict = H_INVALID
            if verdict == H_ACCEPT:
                verdict, reason = _tcp_packet(tab, prm, pk, i, s, d, now_ns, ev)
        elif proto == 17 or proto == 136:
            if (tab.status[s] & S_SEEN_REPLY) != 0:
                tmo = prm.udp_timeout
                stream = False
                if proto == 136 or now_ns > tab.stream_ts[s]:
                    tmo = prm.udp_timeout_stream
                    stream = (tab.status[s] & S_ASSURED) == 0
                _refresh(tab, s, d, now_ns, tmo, ip_len)
                if stream and (tab.status[s] & S_NAT_CLASH) == 0:
                    tab.status[s] |= S_ASSURED
                    tab.ecache[s] |= EV_ASSURED
            else:
                _refresh(tab, s, d, now_ns, prm.udp_timeout, ip_len)
        elif proto == 1 or proto == 58:
            if is_new and not _icmp_valid_new(fam, dp >> 8):
                verdict = H_INVALID
                reason = R_ICMP_NEW
            else:
                _refresh(tab, s, d, now_ns, prm.icmp_timeout if fam == 4 else prm.icmpv6_timeout, ip_len)
        elif proto == 47:
            if (tab.status[s] & S_SEEN_REPLY) != 0:
                _refresh(tab, s, d, now_ns, prm.gre_timeout_stream, ip_len)
                if (tab.status[s] & S_ASSURED) == 0:
                    tab.status[s] |= S_ASSURED
                    tab.ecache[s] |= EV_ASSURED
            else:
                _refresh(tab, s, d, now_ns, prm.gre_timeout, ip_len)
        elif proto == 132:
            _refresh(tab, s, d, now_ns, prm.sctp_timeout, ip_len)
        else:
            _refresh(tab, s, d, now_ns, prm.generic_timeout, ip_len)

        if verdict == H_REPEAT:
            _destroy(tab, s, now_ns, i, END_CLOSED, ev, False)
            continue
        if verdict == H_INVALID:
            if is_new:
                _free_slot(tab, s)
            return -1, 2, CI_INVALID, reason
        tab.last_ts[s] = now_ns
        tab.last_pkt[s] = i
        if verdict == H_KILLED:
            if d == 1 and (tab.status[s] & S_SEEN_REPLY) == 0:
                tab.status[s] |= S_SEEN_REPLY
            if is_new:
                _free_slot(tab, s)  # never confirmed: no events
                return -1, 2, CI_INVALID, 0
            _destroy(tab, s, now_ns, i, END_CLOSED, ev, True)
            return s, d, ctinfo, 0
        if d == 1 and (tab.status[s] & S_SEEN_REPLY) == 0:
            tab.status[s] |= S_SEEN_REPLY
            tab.ecache[s] |= EV_REPLY
        return s, d, ctinfo, 0
    return -1, 2, CI_INVALID, R_STATE  # unreachable: a repeat always creates a fresh entry


# ------------------------------------------------------------------------------------------ confirm

@kernel
def _timeout_s(tab, s, now):
    r = tab.expires[s] - now
    if r <= 0:
        return 0
    return r // NS


@kernel
def ct_confirm(tab, prm, slot, now_ns, pkt_index, ev):
    """nf_confirm: insert an unconfirmed entry (NEW event) or deliver cached events (UPDATE).
    Returns False when insertion is refused (clash): the packet is dropped."""
    if slot < 0:
        return True
    s = slot
    if tab.used[s] == 0 or (tab.status[s] & S_DYING) != 0:
        return True
    if tab.used[s] == 1:
        fam = tab.family[s]
        proto = tab.proto[s]
        zone = tab.zone[s]
        a, _d = _lookup(tab, fam, proto, zone, tab.o_src_hi[s], tab.o_src_lo[s], tab.o_dst_hi[s],
                        tab.o_dst_lo[s], tab.o_sport[s], tab.o_dport[s], now_ns, ev)
        b, _d2 = _lookup(tab, fam, proto, zone, tab.r_src_hi[s], tab.r_src_lo[s], tab.r_dst_hi[s],
                         tab.r_dst_lo[s], tab.r_sport[s], tab.r_dport[s], now_ns, ev)
        if a >= 0 or b >= 0:
            tab.meta[M_INSERT_FAILED] += 1
            _free_slot(tab, s)
            return False
        _hash_insert(tab, np.int64(2 * s + 1), _entry_hash(tab, np.int64(2 * s + 1)))
        _hash_insert(tab, np.int64(2 * s + 2), _entry_hash(tab, np.int64(2 * s + 2)))
        tab.used[s] = 2
        tab.status[s] |= S_CONFIRMED
        tab.expires[s] = now_ns + tab.timeout_rel[s]
        cid = tab.meta[M_NEXT_ID]
        tab.meta[M_NEXT_ID] = cid + 1
        tab.ct_id[s] = cid
        if cid < len(tab.f_family):
            tab.f_family[cid] = fam
            tab.f_proto[cid] = proto
            tab.f_orig_src_hi[cid] = tab.o_src_hi[s]
            tab.f_orig_src_lo[cid] = tab.o_src_lo[s]
            tab.f_orig_dst_hi[cid] = tab.o_dst_hi[s]
            tab.f_orig_dst_lo[cid] = tab.o_dst_lo[s]
            tab.f_orig_sport[cid] = tab.o_sport[s]
            tab.f_orig_dport[cid] = tab.o_dport[s]
            tab.f_zone[cid] = zone
            tab.f_first_ts_ns[cid] = tab.first_ts[s]
            tab.f_first_packet[cid] = tab.first_pkt[s]
            _write_flow(tab, s, 0, -1)
        else:
            tab.meta[M_FLOW_OVERFLOW] += 1
        tab.ecache[s] = 0
        _emit(ev, cid, pkt_index, now_ns, EVT_NEW, tab.tcp_state[s], tab.status[s],
              _timeout_s(tab, s, now_ns))
        return True
    if tab.ecache[s] != 0:
        tab.ecache[s] = 0
        _emit(ev, tab.ct_id[s], pkt_index, now_ns, EVT_UPDATE, tab.tcp_state[s], tab.status[s],
              _timeout_s(tab, s, now_ns))
    return True


@kernel
def ct_abort(tab, slot):
    """The packet that created an unconfirmed entry was dropped: the entry vanishes, no event."""
    if slot >= 0 and tab.used[slot] == 1:
        _free_slot(tab, slot)


@kernel
def ct_tuple_taken(tab, family, src_hi, src_lo, dst_hi, dst_lo, proto, sport, dport, zone,
                   ignore_slot, now_ns):
    """nf_conntrack_tuple_taken: a live confirmed entry (other than ignore_slot) has this tuple as
    its ORIGINAL or REPLY tuple (the tuple is given in reply-direction form by NAT)."""
    p = _find_pos(tab, family, proto, zone, src_hi, src_lo, dst_hi, dst_lo, sport, dport)
    if p < 0:
        return False
    s = (tab.hidx[p] - 1) >> 1
    if s == ignore_slot:
        return False
    return now_ns < tab.expires[s]


@kernel
def ct_remaining_s(tab, slot, now_ns):
    """Remaining lifetime in whole seconds (xt_conntrack --ctexpire, conntrack -L)."""
    if slot < 0:
        return 0
    if tab.used[slot] == 1:
        return tab.timeout_rel[slot] // NS
    return _timeout_s(tab, slot, now_ns)


@kernel
def ct_set_helper(tab, slot, helper_id):
    """Attach a helper (1 = ftp) to an unconfirmed entry (-j CT --helper / nft ct helper set)."""
    if slot >= 0 and tab.used[slot] == 1 and tab.helper[slot] == 0:
        tab.helper[slot] = helper_id
        tab.status[slot] |= S_HELPER
        tab.ecache[slot] |= EV_HELPER


@kernel
def ct_set_mark(tab, slot, mark):
    """CONNMARK / ct mark set: caches an IPCT_MARK event when the value changes."""
    if slot >= 0 and tab.used[slot] != 0:
        m = np.int64(mark) & 0xFFFFFFFF
        if tab.mark[slot] != m:
            tab.mark[slot] = m
            tab.ecache[slot] |= EV_MARK


@kernel
def ct_finish(tab, end_ns, ev):
    """End of the capture: DESTROY (timer) events for entries expired by end_ns; flow records of
    live entries get their final counters (end = open_at_end). Call once after the last chunk."""
    for s in range(len(tab.used)):
        if tab.used[s] == 2 and (tab.status[s] & S_DYING) == 0:
            if end_ns >= tab.expires[s]:
                _destroy(tab, s, tab.expires[s], -1, END_EXPIRED, ev, False)
            else:
                _write_flow(tab, s, 0, -1)


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
def _ftp_parse(data, off, dlen, d, fam, srcaddr):
    """find_pattern over search[dir]: returns (found, addr(v4 as int, -1 = keep tuple addr), port).
    found: 0 no match, 1 match, -1 partial (helper drops the packet)."""
    arr = np.zeros(6, dtype=np.int64)
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
def _ftp_update_nl(tab, s, d, nl_seq):
    n = tab.ftp_nseq[s, d]
    for k in range(n):
        if tab.ftp_seq[s, d, k] == nl_seq:
            return
    if n < 2:
        tab.ftp_seq[s, d, n] = nl_seq
        tab.ftp_nseq[s, d] = n + 1
    else:
        oldest = 0 if before(tab.ftp_seq[s, d, 0], tab.ftp_seq[s, d, 1]) else 1
        if after(nl_seq, tab.ftp_seq[s, d, oldest]):
            tab.ftp_seq[s, d, oldest] = nl_seq


@kernel
def _expect_add(tab, prm, s, fam, proto, zone, src_hi, src_lo, dst_hi, dst_lo, dport, now):
    """nf_ct_expect_related for the FTP class (max_expected 1, 300 s). False: refused."""
    free_e = -1
    for e in range(len(tab.e_used)):
        if tab.e_used[e] == 0:
            if free_e < 0:
                free_e = e
            continue
        same = (tab.e_family[e] == fam and tab.e_proto[e] == proto and tab.e_zone[e] == zone
                and tab.e_src_hi[e] == src_hi and tab.e_src_lo[e] == src_lo and tab.e_dst_hi[e] == dst_hi
                and tab.e_dst_lo[e] == dst_lo and tab.e_dport[e] == dport)
        mine = tab.e_master[e] == s and tab.e_master_id[e] == tab.ct_id[s]
        if now >= tab.e_expires[e]:
            tab.e_used[e] = 0
            tab.meta[M_N_EXPECT] -= 1
            if free_e < 0:
                free_e = e
            continue
        if same and mine:
            tab.e_expires[e] = now + prm.ftp_expect_timeout
            return True
        if same:
            return False
        if mine:  # max_expected = 1: evict the older one
            tab.e_used[e] = 0
            tab.meta[M_N_EXPECT] -= 1
            if free_e < 0:
                free_e = e
    if free_e < 0 or tab.meta[M_N_EXPECT] >= prm.expect_max:
        return False
    e = free_e
    tab.e_used[e] = 1
    tab.e_master[e] = s
    tab.e_master_id[e] = tab.ct_id[s]
    tab.e_family[e] = fam
    tab.e_proto[e] = proto
    tab.e_zone[e] = zone
    tab.e_src_hi[e] = src_hi
    tab.e_src_lo[e] = src_lo
    tab.e_dst_hi[e] = dst_hi
    tab.e_dst_lo[e] = dst_lo
    tab.e_dport[e] = dport
    tab.e_expires[e] = now + prm.ftp_expect_timeout
    tab.e_created[e] = now
    tab.meta[M_N_EXPECT] += 1
    tab.meta[M_EXPECT_CREATED] += 1
    return True


@kernel
def ct_help(tab, prm, pk, data, i, slot, d, ctinfo, now_ns):
    """Run the entry's helper (FTP) for packet i (data = capture bytes). Call after the rules
    accepted the packet, before ct_confirm. Returns True to accept, False: the helper drops it."""
    if slot < 0 or tab.helper[slot] != 1 or (tab.status[slot] & S_DYING) != 0:
        return True
    if ctinfo != CI_ESTABLISHED and ctinfo != CI_EST_REPLY:
        return True
    if pk.proto[i] != 6 or pk.l3_off[i] < 0:
        return True
    off = np.int64(pk.l3_off[i]) + np.int64(pk.ip_hlen[i]) + np.int64(pk.tcp_hlen[i])
    dlen = np.int64(pk.l4_len[i]) - np.int64(pk.tcp_hlen[i])
    if dlen <= 0 or off + dlen > len(data):
        return True
    s = slot
    seq = np.int64(pk.tcp_seq[i])
    ends_nl = data[off + dlen - 1] == 10
    nl_seq = (seq + dlen) & U32
    found_seq = False
    for k in range(tab.ftp_nseq[s, d]):
        if tab.ftp_seq[s, d, k] == seq:
            found_seq = True
    if not found_seq:
        if ends_nl:
            _ftp_update_nl(tab, s, d, nl_seq)
        return True
    fam = np.int64(tab.family[s])
    found, addr, port = _ftp_parse(data, off, dlen, d, fam, 0)
    if found == -1:
        tab.meta[M_HELPER_DROP] += 1
        return False
    ok = True
    if found == 1:
        if d == 0:
            ssrc_hi = tab.o_src_hi[s]
            ssrc_lo = tab.o_src_lo[s]
        else:
            ssrc_hi = tab.r_src_hi[s]
            ssrc_lo = tab.r_src_lo[s]
        addr_ok = True
        if addr >= 0:
            a_lo = np.uint64(0xFFFF00000000) | np.uint64(addr)
            addr_ok = fam == 4 and ssrc_hi == np.uint64(0) and ssrc_lo == a_lo
        if addr_ok:
            if d == 0:  # tuplehash[!dir] = REPLY
                e_src_hi, e_src_lo = tab.r_src_hi[s], tab.r_src_lo[s]
                e_dst_hi, e_dst_lo = tab.r_dst_hi[s], tab.r_dst_lo[s]
            else:
                e_src_hi, e_src_lo = tab.o_src_hi[s], tab.o_src_lo[s]
                e_dst_hi, e_dst_lo = tab.o_dst_hi[s], tab.o_dst_lo[s]
            if not _expect_add(tab, prm, s, fam, 6, tab.zone[s], e_src_hi, e_src_lo, e_dst_hi, e_dst_lo,
                               port, now_ns):
                tab.meta[M_HELPER_DROP] += 1
                ok = False
    if ends_nl:
        _ftp_update_nl(tab, s, d, nl_seq)
    return ok

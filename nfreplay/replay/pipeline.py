"""The hook pipeline: every packet through PREROUTING/INPUT/FORWARD/OUTPUT/POSTROUTING as the kernel
walks them (spec hooks-rules-nat.md §1, §2.4, §5), with conntrack, NAT and confirm at their places.

Per hook the entries run in priority order: the compiled base chains (iptables tables, nft base
chains) interleaved with the internal entries conntrack (-200, PREROUTING/OUTPUT) and the NAT core
(-100 PREROUTING/OUTPUT, +100 INPUT/POSTROUTING, which runs the nat-type chains for a connection's
first packet). At equal priority a base chain runs before the internal entry (registered later, so
inserted first: nf_hook_entries_grow). Confirm (INT_MAX) runs after the last hook of an accepted
packet.

Path (contracts §1): a packet whose source is a local address takes OUTPUT -> POSTROUTING; any
other arrives on the interface the host routes its source through (pins first) and takes
PREROUTING, then INPUT when its (possibly DNATed) destination is local, else FORWARD -> POSTROUTING
(TTL <= 1 dropped before FORWARD, TTL decremented before FORWARD).

Python driver: `run_replay()` chunks the packet table, carries state (conntrack table, rule state,
NAT state) across chunks and returns a result.ReplayOutput.
"""

from __future__ import annotations

import logging
import time
from typing import NamedTuple

import numpy as np

from ._jit import kernel
from .chains import (
    OUT_CT_HELPER,
    OUT_CT_NOTRACK,
    OUT_CT_ZONE,
    OUT_NAT,
    OUT_QUEUE_BYPASS,
    OUT_REJECT,
    OUT_RULE,
    eval_chain,
    reset_packet,
)
from .conntrack import ct_abort, ct_confirm, ct_help, ct_in, ct_remaining_s, ct_set_helper
from .host import is_local, masq_addr, primary_addr, route_lookup
from .nat import MANIP_DST, MANIP_SRC, nat_packet, null_binding, setup_info

log = logging.getLogger(__name__)

# options array slots
OPT_CT_ENABLED = 0
OPT_FWD4 = 1
OPT_FWD6 = 2
OPT_SKIP_OUTGOING = 3
OPT_TRACE_PACKET = 4
OPT_LO_IFACE = 5
OPT_NAT4 = 6  # NAT core active for IPv4 (some nat chain exists)
OPT_NAT6 = 7
N_OPT = 8

# counters array slots (summary)
C_SKIPPED_OUTGOING = 0
C_BAD_IP_CSUM = 1
C_NO_ROUTE = 2
C_TTL = 3
C_FWD_DISABLED = 4
C_CONFIRM_FAIL = 5
N_COUNTERS = 8

BC_NAT = 1
BIG = np.int64(1) << np.int64(62)

# ctx slots (codes.Field)
F_SRC, F_DST, F_PROTO, F_SPORT, F_DPORT, F_IIF, F_OIF, F_MARK = 0, 2, 4, 5, 6, 7, 8, 9
F_CT_STATE, F_CT_DIR, F_CT_STATUS, F_CT_MARK, F_LEN, F_TTL, F_TOS, F_PKTTYPE = 10, 11, 12, 13, 14, 15, 16, 17
F_ICMP_TYPE, F_ICMP_CODE, F_TCP_FLAGS, F_FRAG, F_NFPROTO, F_ICMP_ID = 18, 19, 20, 21, 22, 23
F_CT_ORIG_SRC, F_CT_ORIG_DST, F_CT_REPLY_SRC, F_CT_REPLY_DST = 24, 26, 28, 30
F_CT_ORIG_SPORT, F_CT_ORIG_DPORT, F_CT_REPLY_SPORT, F_CT_REPLY_DPORT = 32, 33, 34, 35
F_CT_ZONE, F_CT_EXPIRE, F_CT_HELPER, F_VLAN_ID, F_ETH_SRC, F_ETH_DST, F_IP_ID, F_TCP_WIN = 36, 37, 38, 39, 40, 41, 42, 43
F_PRESENT, F_IP_FLAGS, F_TCP_OPT_MSS, F_IIFTYPE, F_HOOK, F_CT_PROTO, F_CT_L3PROTO, F_DSCP = \
    44, 45, 46, 47, 48, 49, 50, 51

P_PORTS, P_ICMP, P_TCP, P_CT, P_ETH, P_VLAN, P_IIF, P_OIF, P_ICMP_ID = 1, 2, 4, 8, 16, 32, 64, 128, 256

# CtState codes (codes.CtState) and xt state bits
CS_INVALID, CS_ESTABLISHED, CS_RELATED, CS_NEW, CS_UNTRACKED = 1, 2, 3, 4, 5


class Work(NamedTuple):
    """Scratch arrays reused for every packet."""

    ctx: np.ndarray  # int64[N_FIELDS]
    out: np.ndarray  # int64[N_OUT]
    cur: np.ndarray  # uint64[6] current tuple (src_hi, src_lo, dst_hi, dst_lo, sport/id, dport)
    trace: np.ndarray  # int64[cap, 3] (cap 1 = off)
    opts: np.ndarray  # int64[N_OPT]
    counters: np.ndarray  # int64[N_COUNTERS]
    hooks: np.ndarray  # int64[8] per packet: trace of (hook) entries visited (scratch)


@kernel
def _is_icmp_error(fam, proto, typ):
    if fam == 4 and proto == 1:
        return typ == 3 or typ == 4 or typ == 5 or typ == 11 or typ == 12
    if fam == 6 and proto == 58:
        return typ < 128
    return False


@kernel
def _fill_ctx(ctx, pk, i, cur, iif, oif, mark, ttl, hook, tab, slot, d, cstate, now_ns):
    fam = np.int64(pk.family[i])
    proto = np.int64(pk.proto[i])
    ctx[F_SRC] = np.int64(cur[0])
    ctx[F_SRC + 1] = np.int64(cur[1])
    ctx[F_DST] = np.int64(cur[2])
    ctx[F_DST + 1] = np.int64(cur[3])
    ctx[F_PROTO] = proto
    ctx[F_IIF] = iif
    ctx[F_OIF] = oif
    ctx[F_MARK] = mark
    ctx[F_LEN] = np.int64(pk.ip_len[i])
    ctx[F_TTL] = ttl
    ctx[F_TOS] = np.int64(pk.tos[i])
    ctx[F_DSCP] = np.int64(pk.tos[i]) >> 2
    ctx[F_PKTTYPE] = 0
    ctx[F_FRAG] = np.int64(pk.frag_off[i])
    ctx[F_NFPROTO] = 2 if fam == 4 else 10
    ctx[F_IP_ID] = np.int64(pk.ip_id[i])
    ctx[F_IP_FLAGS] = np.int64(pk.ip_flags[i])
    ctx[F_HOOK] = hook
    pres = np.int64(0)
    if iif >= 0:
        pres |= P_IIF
    if oif >= 0:
        pres |= P_OIF
    nonfirst = pk.frag_off[i] != 0
    if not nonfirst and (proto == 6 or proto == 17 or proto == 136 or proto == 132 or proto == 33):
        pres |= P_PORTS
        ctx[F_SPORT] = np.int64(cur[4])
        ctx[F_DPORT] = np.int64(cur[5])
        if proto == 6:
            pres |= P_TCP
            ctx[F_TCP_FLAGS] = np.int64(pk.tcp_flags[i])
            ctx[F_TCP_WIN] = np.int64(pk.tcp_win[i])
            ctx[F_TCP_OPT_MSS] = np.int64(pk.tcp_mss[i])
    else:
        ctx[F_SPORT] = 0
        ctx[F_DPORT] = 0
    if not nonfirst and ((proto == 1 and fam == 4) or (proto == 58 and fam == 6)):
        pres |= P_ICMP
        t = np.int64(pk.icmp_type[i])
        ctx[F_ICMP_TYPE] = t
        ctx[F_ICMP_CODE] = np.int64(pk.icmp_code[i])
        if not _is_icmp_error(fam, proto, t):
            pres |= P_ICMP_ID
            ctx[F_ICMP_ID] = np.int64(cur[4])
    if pk.eth_src[i] != 0 or pk.eth_dst[i] != 0:
        pres |= P_ETH
        ctx[F_ETH_SRC] = np.int64(pk.eth_src[i])
        ctx[F_ETH_DST] = np.int64(pk.eth_dst[i])
    if pk.vlan_id[i] >= 0:
        pres |= P_VLAN
        ctx[F_VLAN_ID] = np.int64(pk.vlan_id[i])
    # conntrack
    if cstate == CS_INVALID:
        ctx[F_CT_STATE] = 1
    elif cstate == CS_UNTRACKED:
        ctx[F_CT_STATE] = 64
    elif cstate == CS_ESTABLISHED:
        ctx[F_CT_STATE] = 2
    elif cstate == CS_RELATED:
        ctx[F_CT_STATE] = 4
    elif cstate == CS_NEW:
        ctx[F_CT_STATE] = 8
    else:
        ctx[F_CT_STATE] = 1
    if slot >= 0 and (cstate == CS_ESTABLISHED or cstate == CS_RELATED or cstate == CS_NEW):
        pres |= P_CT
        st = tab.status[slot]
        if (st & (1 << 4)) != 0:
            ctx[F_CT_STATE] |= 128
        if (st & (1 << 5)) != 0:
            ctx[F_CT_STATE] |= 256
        ctx[F_CT_DIR] = d
        ctx[F_CT_STATUS] = st
        ctx[F_CT_MARK] = tab.mark[slot]
        ctx[F_CT_ORIG_SRC] = np.int64(tab.o_src_hi[slot])
        ctx[F_CT_ORIG_SRC + 1] = np.int64(tab.o_src_lo[slot])
        ctx[F_CT_ORIG_DST] = np.int64(tab.o_dst_hi[slot])
        ctx[F_CT_ORIG_DST + 1] = np.int64(tab.o_dst_lo[slot])
        ctx[F_CT_REPLY_SRC] = np.int64(tab.r_src_hi[slot])
        ctx[F_CT_REPLY_SRC + 1] = np.int64(tab.r_src_lo[slot])
        ctx[F_CT_REPLY_DST] = np.int64(tab.r_dst_hi[slot])
        ctx[F_CT_REPLY_DST + 1] = np.int64(tab.r_dst_lo[slot])
        ctx[F_CT_ORIG_SPORT] = np.int64(tab.o_sport[slot])
        ctx[F_CT_ORIG_DPORT] = np.int64(tab.o_dport[slot])
        ctx[F_CT_REPLY_SPORT] = np.int64(tab.r_sport[slot])
        ctx[F_CT_REPLY_DPORT] = np.int64(tab.r_dport[slot])
        ctx[F_CT_ZONE] = np.int64(tab.zone[slot])
        ctx[F_CT_EXPIRE] = np.int64(ct_remaining_s(tab, slot, now_ns))
        ctx[F_CT_HELPER] = np.int64(tab.helper[slot])
        ctx[F_CT_PROTO] = np.int64(tab.proto[slot])
        ctx[F_CT_L3PROTO] = 2 if tab.family[slot] == 4 else 10
    else:
        ctx[F_CT_MARK] = 0
        ctx[F_CT_STATUS] = 0
    ctx[F_PRESENT] = pres


@kernel
def _cstate(ctinfo):
    if ctinfo < 0:
        return CS_INVALID
    if ctinfo == 7:
        return CS_UNTRACKED
    m = ctinfo % 3
    if m == 0:
        return CS_ESTABLISHED
    if m == 1:
        return CS_RELATED
    return CS_NEW


@kernel
def _run_nat(hook, manip, cra, rst, pk, i, tab, slot, d, ctinfo, cstate, w, iif, oif, mark, ttl, now_ns, ha,
             nst, res):
    """The NAT core entry of a hook. Returns (verdict, nat flags applied, mark)."""
    fam = np.int64(pk.family[i])
    proto = np.int64(pk.proto[i])
    if slot < 0 or cstate == CS_INVALID or cstate == CS_UNTRACKED:
        return np.int64(1), np.int64(0), mark
    if _is_icmp_error(fam, proto, np.int64(pk.icmp_type[i])):
        # nf_nat_icmp_reply_translation: outer addresses rewritten as for a packet of that direction
        s4 = w.cur[4]
        s5 = w.cur[5]
        r = nat_packet(tab, slot, d, manip, w.cur)
        w.cur[4] = s4
        w.cur[5] = s5
        return np.int64(1), r, mark
    done_bit = np.int64(1 << 7) if manip == MANIP_SRC else np.int64(1 << 8)
    if (ctinfo == 2 or ctinfo == 1 or ctinfo == 4) and (tab.status[slot] & done_bit) == 0:
        made = False
        k = cra.hook_bc_start[hook]
        while k < cra.hook_bc_end[hook]:
            if cra.bc_type[k] == BC_NAT:
                _fill_ctx(w.ctx, pk, i, w.cur, iif, oif, mark, ttl, hook, tab, slot, d, cstate, now_ns)
                v = eval_chain(cra, rst, k, w.ctx, np.int64(pk.ip_len[i]), now_ns, w.out, w.trace)
                mark = w.ctx[F_MARK]
                if v == 0:
                    res.verdict_rule[i] = w.out[OUT_RULE]
                    res.verdict_hook[i] = hook
                    return np.int64(0), np.int64(0), mark
                nr = w.out[OUT_NAT]
                if nr >= 0:
                    _apply_nat_row(cra, nr, manip, tab, slot, pk, i, w, iif, oif, ha, now_ns, nst)
                    made = True
                    break
            k += 1
        if not made:
            null_binding(tab, slot, manip, now_ns, nst)
        tab.status[slot] |= done_bit
    r = nat_packet(tab, slot, d, manip, w.cur)
    return np.int64(1), r, mark


@kernel
def _apply_nat_row(cra, nr, manip, tab, slot, pk, i, w, iif, oif, ha, now_ns, nst):
    kind = cra.nat_kind[nr]
    flags = cra.nat_flags[nr]
    fam = np.int64(tab.family[slot])
    pmin = cra.nat_port_lo[nr]
    pmax = cra.nat_port_hi[nr]
    if cra.nat_has_addr[nr] != 0:
        min_hi = np.uint64(cra.nat_addr_lo_hi[nr])
        min_lo = np.uint64(cra.nat_addr_lo_lo[nr])
        max_hi = np.uint64(cra.nat_addr_hi_hi[nr])
        max_lo = np.uint64(cra.nat_addr_hi_lo[nr])
        flags |= 16
    else:
        min_hi = np.uint64(0)
        min_lo = np.uint64(0)
        max_hi = np.uint64(0)
        max_lo = np.uint64(0)
    if kind == 3:  # MASQUERADE: address of the out interface (next hop = destination, on-link model)
        hi, lo, ok = masq_addr(ha, oif, fam, np.int64(w.cur[2]), np.int64(w.cur[3]))
        if not ok:
            return
        min_hi = np.uint64(hi)
        min_lo = np.uint64(lo)
        max_hi = min_hi
        max_lo = min_lo
        flags |= 16
    elif kind == 4:  # REDIRECT: primary address of the input interface; OUTPUT: loopback
        if iif >= 0:
            hi, lo, ok = primary_addr(ha, iif, fam)
            if not ok:
                return
            min_hi = np.uint64(hi)
            min_lo = np.uint64(lo)
        else:
            if fam == 4:
                min_hi = np.uint64(0)
                min_lo = np.uint64(0x0000FFFF7F000001)
            else:
                min_hi = np.uint64(0)
                min_lo = np.uint64(1)
        max_hi = min_hi
        max_lo = min_lo
        flags |= 16
    elif kind == 5:  # NETMAP: keep host bits of the address being mapped
        mh = np.uint64(cra.nat_mask_hi[nr])
        ml = np.uint64(cra.nat_mask_lo[nr])
        if manip == MANIP_SRC:
            ah = w.cur[0]
            al = w.cur[1]
        else:
            ah = w.cur[2]
            al = w.cur[3]
        nh = (min_hi & mh) | (ah & ~mh)
        nl = (min_lo & ml) | (al & ~ml)
        min_hi = nh
        min_lo = nl
        max_hi = nh
        max_lo = nl
        flags |= 16
    setup_info(tab, slot, manip, flags, min_hi, min_lo, max_hi, max_lo, pmin, pmax, now_ns, nst)


@kernel
def _run_hook(hook, cra, rst, pk, data, i, tab, prm, ev, ha, nst, res, w, state, now_ns):
    """Walk one hook. state: int64[16] per-packet scratch (see S_* in replay_range). Returns verdict."""
    fam = np.int64(pk.family[i])
    opts = w.opts
    ct_on = opts[OPT_CT_ENABLED] != 0
    nat_on = (opts[OPT_NAT4] != 0) if fam == 4 else (opts[OPT_NAT6] != 0)
    has_ct_op = ct_on and (hook == 0 or hook == 3) and state[S_CT_DONE] == 0
    has_nat_op = ct_on and nat_on
    nat_prio = np.int64(-100) if (hook == 0 or hook == 3) else np.int64(100)
    if hook == 2:
        has_nat_op = False
    manip = MANIP_DST if (hook == 0 or hook == 3) else MANIP_SRC
    ct_pending = has_ct_op
    nat_pending = has_nat_op
    k = cra.hook_bc_start[hook]
    kend = cra.hook_bc_end[hook]
    plen = np.int64(pk.ip_len[i])
    while True:
        while k < kend and cra.bc_type[k] == BC_NAT:
            k += 1
        pc = cra.bc_prio[k] if k < kend else BIG
        if ct_pending and np.int64(-200) < pc:
            ct_pending = False
            _do_ct(hook, pk, i, tab, prm, ev, w, state, now_ns)
            if state[S_DROPPED] != 0:
                return np.int64(0)
            continue
        if nat_pending and nat_prio < pc:
            nat_pending = False
            v, r, mk = _run_nat(hook, manip, cra, rst, pk, i, tab, state[S_SLOT], state[S_DIR], state[S_CTINFO],
                                state[S_CSTATE], w, state[S_IIF], state[S_OIF], state[S_MARK], state[S_TTL],
                                now_ns, ha, nst, res)
            state[S_MARK] = mk
            state[S_NATF] |= r
            if v == 0:
                return np.int64(0)
            continue
        if k >= kend:
            break
        _fill_ctx(w.ctx, pk, i, w.cur, state[S_IIF], state[S_OIF], state[S_MARK], state[S_TTL], hook, tab,
                  state[S_SLOT], state[S_DIR], state[S_CSTATE], now_ns)
        v = eval_chain(cra, rst, k, w.ctx, plen, now_ns, w.out, w.trace)
        state[S_MARK] = w.ctx[F_MARK]
        if state[S_SLOT] >= 0 and (w.ctx[F_PRESENT] & P_CT) != 0:
            tab.mark[state[S_SLOT]] = w.ctx[F_CT_MARK]
        if v == 0:
            res.verdict_rule[i] = w.out[OUT_RULE]
            res.verdict_hook[i] = hook
            res.reject_kind[i] = w.out[OUT_REJECT]
            return np.int64(0)
        if v == 3:  # QUEUE: no listener in a replay
            if w.out[OUT_QUEUE_BYPASS] == 0:
                res.verdict_rule[i] = w.out[OUT_RULE]
                res.verdict_hook[i] = hook
                return np.int64(3)
        elif v == 1 and w.out[OUT_RULE] >= 0:
            if cra.bc_prio[k] == 0 or state[S_LAST_ACCEPT_FILTER] < 0:
                state[S_LAST_ACCEPT] = w.out[OUT_RULE]
                state[S_LAST_ACCEPT_HOOK] = hook
                if cra.bc_prio[k] == 0:
                    state[S_LAST_ACCEPT_FILTER] = w.out[OUT_RULE]
        k += 1
    return np.int64(1)


@kernel
def _do_ct(hook, pk, i, tab, prm, ev, w, state, now_ns):
    if w.out[OUT_CT_NOTRACK] != 0:
        state[S_SLOT] = -1
        state[S_CTINFO] = 7
        state[S_CSTATE] = CS_UNTRACKED
        state[S_DIR] = 2
        state[S_CT_DONE] = 1
        return
    zone = w.out[OUT_CT_ZONE]
    if zone < 0:
        zone = np.int64(0)
    slot, d, ctinfo, reason = ct_in(tab, prm, pk, i, zone, hook, now_ns, ev)
    state[S_CT_DONE] = 1
    if slot < 0 and reason == 21:  # table full: dropped by conntrack
        state[S_DROPPED] = 1
        res_reason = 71
        state[S_REASON] = res_reason
        state[S_CSTATE] = CS_INVALID
        return
    state[S_SLOT] = slot
    state[S_DIR] = d
    state[S_CTINFO] = ctinfo
    state[S_CSTATE] = _cstate(ctinfo)
    state[S_INVALID_REASON] = reason
    if slot >= 0 and w.out[OUT_CT_HELPER] > 0:
        ct_set_helper(tab, slot, w.out[OUT_CT_HELPER])


# per-packet scratch slots
S_SLOT = 0
S_DIR = 1
S_CTINFO = 2
S_CSTATE = 3
S_CT_DONE = 4
S_DROPPED = 5
S_REASON = 6
S_INVALID_REASON = 7
S_IIF = 8
S_OIF = 9
S_MARK = 10
S_TTL = 11
S_NATF = 12
S_LAST_ACCEPT = 13
S_LAST_ACCEPT_HOOK = 14
S_LAST_ACCEPT_FILTER = 15
N_STATE = 16


@kernel
def replay_range(pk, data, ha, cra, rst, tab, prm, ev, nst, res, w, start, end):
    """Replay packets [start, end) of packet table pk; writes res (PacketResults) rows."""
    state = np.zeros(N_STATE, dtype=np.int64)
    opts = w.opts
    for i in range(start, end):
        _replay_one(i, pk, data, ha, cra, rst, tab, prm, ev, nst, res, w, state, opts)
        if ev.n[0] > ev.ts_ns.shape[0] - 64:
            return i + 1
    return end


@kernel
def _replay_one(i, pk, data, ha, cra, rst, tab, prm, ev, nst, res, w, state, opts):
    st = pk.status[i]
    if st != 0:
        res.outcome[i] = 8
        res.reason[i] = st
        return
    fam = np.int64(pk.family[i])
    if opts[OPT_SKIP_OUTGOING] != 0 and pk.pkt_dir[i] == 2:
        res.outcome[i] = 8
        res.reason[i] = 69
        w.counters[C_SKIPPED_OUTGOING] += 1
        return
    if fam == 4 and pk.ip_csum[i] == 2:
        res.outcome[i] = 4
        res.reason[i] = 70
        w.counters[C_BAD_IP_CSUM] += 1
        return
    now = pk.ts_ns[i]
    for k in range(N_STATE):
        state[k] = 0
    state[S_SLOT] = -1
    state[S_DIR] = 2
    state[S_LAST_ACCEPT] = -1
    state[S_LAST_ACCEPT_HOOK] = -1
    state[S_LAST_ACCEPT_FILTER] = -1
    state[S_TTL] = np.int64(pk.ttl[i])
    reset_packet(w.out, w.trace)
    if opts[OPT_TRACE_PACKET] != i:
        w.trace[0, 0] = 0
    cur = w.cur
    cur[0] = pk.src_hi[i]
    cur[1] = pk.src_lo[i]
    cur[2] = pk.dst_hi[i]
    cur[3] = pk.dst_lo[i]
    proto = np.int64(pk.proto[i])
    if (proto == 1 and fam == 4) or (proto == 58 and fam == 6):
        cur[4] = np.uint64(pk.icmp_id[i])
        cur[5] = np.uint64((np.int64(pk.icmp_type[i]) << 8) | np.int64(pk.icmp_code[i]))
    else:
        cur[4] = np.uint64(pk.sport[i])
        cur[5] = np.uint64(pk.dport[i])
    if not (opts[OPT_CT_ENABLED] != 0):
        state[S_CSTATE] = 0
    src_local = is_local(ha, fam, np.int64(cur[0]), np.int64(cur[1]))
    path = np.int64(0)
    if src_local:
        state[S_IIF] = -1
        if is_local(ha, fam, np.int64(cur[2]), np.int64(cur[3])):
            oif = opts[OPT_LO_IFACE]
        else:
            oif = route_lookup(ha, fam, np.int64(cur[2]), np.int64(cur[3]))
        if oif < 0:
            res.outcome[i] = 8
            res.reason[i] = 65
            w.counters[C_NO_ROUTE] += 1
            return
        state[S_OIF] = oif
        res.in_iface[i] = -1
        hooks_v = _walk(3, cra, rst, pk, data, i, tab, prm, ev, ha, nst, res, w, state, now)
        path |= 1 << 3
        if hooks_v == 1:
            # re-route after OUTPUT DNAT
            if (state[S_NATF] & 2) != 0:
                if is_local(ha, fam, np.int64(cur[2]), np.int64(cur[3])):
                    state[S_OIF] = opts[OPT_LO_IFACE]
                else:
                    o2 = route_lookup(ha, fam, np.int64(cur[2]), np.int64(cur[3]))
                    if o2 >= 0:
                        state[S_OIF] = o2
            hooks_v = _walk(4, cra, rst, pk, data, i, tab, prm, ev, ha, nst, res, w, state, now)
            path |= 1 << 4
        final_ok = np.int64(2)  # emitted
    else:
        iif = route_lookup(ha, fam, np.int64(cur[0]), np.int64(cur[1]))
        if iif < 0:
            res.outcome[i] = 8
            res.reason[i] = 64
            w.counters[C_NO_ROUTE] += 1
            return
        state[S_IIF] = iif
        state[S_OIF] = -1
        res.in_iface[i] = iif
        hooks_v = _walk(0, cra, rst, pk, data, i, tab, prm, ev, ha, nst, res, w, state, now)
        path |= 1
        final_ok = np.int64(3)
        if hooks_v == 1:
            if is_local(ha, fam, np.int64(cur[2]), np.int64(cur[3])):
                hooks_v = _walk(1, cra, rst, pk, data, i, tab, prm, ev, ha, nst, res, w, state, now)
                path |= 1 << 1
                final_ok = np.int64(3)
            else:
                fwd_on = opts[OPT_FWD4] if fam == 4 else opts[OPT_FWD6]
                oif = route_lookup(ha, fam, np.int64(cur[2]), np.int64(cur[3]))
                if fwd_on == 0 or oif < 0 or state[S_TTL] <= 1:
                    # dropped by the kernel's routing / ip_forward, not by a rule
                    res.path[i] = path
                    res.outcome[i] = 4
                    if fwd_on == 0:
                        res.reason[i] = 66
                        w.counters[C_FWD_DISABLED] += 1
                    elif oif < 0:
                        res.reason[i] = 65
                        w.counters[C_NO_ROUTE] += 1
                    else:
                        res.reason[i] = 67
                        w.counters[C_TTL] += 1
                    _finish_drop(tab, state)
                    _record(i, res, tab, state, now)
                    return
                state[S_OIF] = oif
                state[S_TTL] -= 1
                hooks_v = _walk(2, cra, rst, pk, data, i, tab, prm, ev, ha, nst, res, w, state, now)
                path |= 1 << 2
                if hooks_v == 1:
                    hooks_v = _walk(4, cra, rst, pk, data, i, tab, prm, ev, ha, nst, res, w, state, now)
                    path |= 1 << 4
                final_ok = np.int64(1)
    res.path[i] = path
    res.out_iface[i] = state[S_OIF] if hooks_v == 1 and final_ok != 3 else -1
    if hooks_v == 1:
        slot = state[S_SLOT]
        if slot >= 0:
            if tab.helper[slot] != 0:
                if not ct_help(tab, prm, pk, data, i, slot, state[S_DIR], state[S_CTINFO], now):
                    hooks_v = np.int64(0)
            if hooks_v == 1 and not ct_confirm(tab, prm, slot, now, i, ev):
                hooks_v = np.int64(0)
                w.counters[C_CONFIRM_FAIL] += 1
    if hooks_v == 1:
        res.outcome[i] = final_ok
        res.verdict_rule[i] = state[S_LAST_ACCEPT]
        res.verdict_hook[i] = state[S_LAST_ACCEPT_HOOK]
        if final_ok != 3:
            res.out_src_hi[i] = cur[0]
            res.out_src_lo[i] = cur[1]
            res.out_dst_hi[i] = cur[2]
            res.out_dst_lo[i] = cur[3]
            if (proto == 1 and fam == 4) or (proto == 58 and fam == 6):
                res.out_sport[i] = np.uint16(cur[4] & np.uint64(0xFFFF))
                res.out_dport[i] = 0
            else:
                res.out_sport[i] = np.uint16(cur[4] & np.uint64(0xFFFF))
                res.out_dport[i] = np.uint16(cur[5] & np.uint64(0xFFFF))
    elif hooks_v == 3:
        res.outcome[i] = 6
        _finish_drop(tab, state)
    else:
        if state[S_DROPPED] != 0:
            res.outcome[i] = 4
            res.reason[i] = state[S_REASON]
        elif res.reject_kind[i] > 0:
            res.outcome[i] = 5
        else:
            res.outcome[i] = 4
        _finish_drop(tab, state)
    res.nat_flags[i] = state[S_NATF]
    _record(i, res, tab, state, now)


@kernel
def _finish_drop(tab, state):
    slot = state[S_SLOT]
    if slot >= 0 and tab.used[slot] == 1:
        ct_abort(tab, slot)
        state[S_SLOT] = -1


@kernel
def _record(i, res, tab, state, now):
    res.ct_state[i] = state[S_CSTATE]
    res.ct_dir[i] = state[S_DIR] if state[S_CSTATE] != CS_INVALID and state[S_CSTATE] != CS_UNTRACKED else 2
    res.invalid_reason[i] = state[S_INVALID_REASON] if state[S_CSTATE] == CS_INVALID else 0
    res.mark[i] = np.uint32(state[S_MARK] & 0xFFFFFFFF)
    slot = state[S_SLOT]
    if slot >= 0:
        res.ct_id[i] = np.int32(tab.ct_id[slot])
        res.tcp_state[i] = tab.tcp_state[slot]
        res.ct_mark[i] = np.uint32(tab.mark[slot] & 0xFFFFFFFF)


@kernel
def _walk(hook, cra, rst, pk, data, i, tab, prm, ev, ha, nst, res, w, state, now):
    return _run_hook(hook, cra, rst, pk, data, i, tab, prm, ev, ha, nst, res, w, state, now)


# ------------------------------------------------------------------ Python driver
_CT_FIELDS = None


def _uses_conntrack(rs) -> bool:
    """Conntrack is on when something requests it (spec §0): a nat chain, a ct match/statement."""
    from .codes import Field
    from .rules import model as m

    ct_fields = {Field.CT_STATE, Field.CT_DIR, Field.CT_STATUS, Field.CT_MARK, Field.CT_ORIG_SRC,
                 Field.CT_ORIG_DST, Field.CT_REPLY_SRC, Field.CT_REPLY_DST, Field.CT_ORIG_SPORT,
                 Field.CT_ORIG_DPORT, Field.CT_REPLY_SPORT, Field.CT_REPLY_DPORT, Field.CT_ZONE,
                 Field.CT_EXPIRE, Field.CT_HELPER, Field.CT_PROTO, Field.CT_L3PROTO}
    for t in rs.tables:
        for c in t.chains:
            if c.type == "nat" or (t.origin == "iptables" and t.name == "nat"):
                return True
            for r in c.rules:
                for e in r.exprs:
                    if isinstance(e, (m.Nat, m.CtSet)):
                        return True
                    if isinstance(e, m.MarkOp) and (e.dest == "ctmark" or e.src == "ctmark"):
                        return True
                    if isinstance(e, (m.FieldIn, m.Masked, m.AddrMasked)) and e.field in ct_fields:
                        return True
                    if isinstance(e, m.SetMatch) and any(f in ct_fields for f in e.fields):
                        return True
                    if isinstance(e, m.Stateful) and e.kind == "connlimit":
                        return True
    return False


def _nat_families(crs) -> tuple[bool, bool]:
    a = crs.arrays
    v4 = v6 = False
    for k in range(len(a.bc_type)):
        if int(a.bc_type[k]) == BC_NAT:
            f = int(a.bc_family[k])
            v4 |= f in (0, 4)
            v6 |= f in (0, 6)
    return v4, v6


def run_replay(capture, ruleset, host, *, allow_unsupported: bool = False, seed: int = 0,
               assume_good_checksums: bool = False, capture_point: str = "arrival", trace_packet: int = -1,
               progress=None, chunk_packets: int = 262_144, ipsets=(), force_conntrack: bool = False,
               compiled=None):
    """Replay a Capture through ruleset on host; returns result.ReplayOutput.

    capture_point: "arrival" (every packet is an arrival at / emission by the modelled firewall) or
    "skip-outgoing" (packets the capture marks as outgoing -- SLL/SLL2 packet type, pcapng epb_flags --
    were already past the capturing host's netfilter: not replayed, counted).
    """
    from ..errors import NfreplayError
    from . import conntrack as ct
    from .chains import new_out, new_rule_state, new_trace
    from .codes import Field
    from .nat import new_nat_state
    from .result import ReplayOutput, empty_results
    from .rules.compile import REJECT_KINDS, compile_ruleset
    from .schema import validate

    if capture_point not in ("arrival", "skip-outgoing"):
        raise NfreplayError(f"unknown --capture-point {capture_point!r} (arrival, skip-outgoing)")
    t0 = time.perf_counter()
    pk = validate(capture.packets)
    data = capture.data if capture.data is not None else np.zeros(1, np.uint8)
    n = len(pk.ts_ns)
    crs = compiled if compiled is not None else compile_ruleset(ruleset, host, ipsets=tuple(ipsets),
                                                                allow_unsupported=allow_unsupported, seed=seed)
    prm = ct.make_params(host.sysctls, assume_good_checksums=assume_good_checksums)
    ct_on = force_conntrack or _uses_conntrack(ruleset)
    nat4, nat6 = _nat_families(crs)
    ha = host.arrays()
    cra = crs.arrays
    chunk = max(1, int(chunk_packets))
    tab = ct.new_table(ct.table_capacity_for(prm.ct_max, n), min(n, chunk) + 16)
    ev = ct.new_event_log(3 * min(n, chunk) + 1024)
    rst = new_rule_state(crs, seed)
    nst = new_nat_state(seed)
    res = empty_results(n)
    opts = np.zeros(N_OPT, np.int64)
    opts[OPT_CT_ENABLED] = int(ct_on)
    opts[OPT_FWD4] = int(host.ip_forward)
    opts[OPT_FWD6] = int(host.ip6_forward)
    opts[OPT_SKIP_OUTGOING] = int(capture_point == "skip-outgoing")
    opts[OPT_TRACE_PACKET] = int(trace_packet)
    opts[OPT_LO_IFACE] = host.iface_index("lo")
    opts[OPT_NAT4] = int(nat4)
    opts[OPT_NAT6] = int(nat6)
    w = Work(ctx=np.zeros(int(Field.N_FIELDS), np.int64), out=new_out(),
             cur=np.zeros(6, np.uint64), trace=new_trace(512 if trace_packet >= 0 else 1), opts=opts,
             counters=np.zeros(N_COUNTERS, np.int64), hooks=np.zeros(8, np.int64))
    events = []
    trace_rows = None
    start = 0
    while start < n:
        end = min(n, start + chunk)
        tab = ct.grow_flows(tab, end - start)
        if trace_packet >= 0 and start <= trace_packet < end:
            # stop right after the traced packet to copy its trace
            mid = replay_range(pk, data, ha, cra, rst, tab, prm, ev, nst, res, w, start, trace_packet + 1)
            if mid == trace_packet + 1:
                k = int(w.trace[0, 0])
                trace_rows = w.trace[1:k + 1].copy()
            events.append(ct.drain_events(ev))
            start = mid
            continue
        done = replay_range(pk, data, ha, cra, rst, tab, prm, ev, nst, res, w, start, end)
        events.append(ct.drain_events(ev))
        start = done
        if progress is not None:
            progress(start)
    end_ns = int(pk.ts_ns[-1]) if n else 0
    ct.ct_finish(tab, end_ns, ev)
    events.append(ct.drain_events(ev))
    flows = ct.flows_table(tab)
    evd = ct.concat_events(events)
    wall = time.perf_counter() - t0
    c = w.counters
    meta = {
        "host": host.describe(),
        "host_source": host.source,
        "sysctls": {**ct.SYSCTL_DEFAULTS, **{k: v for k, v in host.sysctls.items()}},
        "ip_forward": bool(host.ip_forward),
        "seed": int(seed),
        "capture_point": capture_point,
        "assume_good_checksums": bool(assume_good_checksums),
        "conntrack_enabled": bool(ct_on),
        "nat_core": {"ipv4": nat4, "ipv6": nat6},
        "ruleset_digest": ruleset.digest,
        "ruleset_source": ruleset.source,
        "ruleset_format": ruleset.fmt,
        "replay_wall_s": wall,
        "packets": n,
        "packets_per_s": (n / wall) if wall > 0 else 0.0,
        "kernel_drops": {"skipped_outgoing": int(c[C_SKIPPED_OUTGOING]), "bad_ip_checksum": int(c[C_BAD_IP_CSUM]),
                         "no_route": int(c[C_NO_ROUTE]), "ttl_exceeded": int(c[C_TTL]),
                         "forwarding_disabled": int(c[C_FWD_DISABLED]), "confirm_failed": int(c[C_CONFIRM_FAIL])},
        "conntrack": ct.counters(tab),
        "nat": {"bindings": int(nst.stats[0]), "null_bindings": int(nst.stats[1]),
                "port_changed": int(nst.stats[2]), "random_draws": int(nst.stats[3])},
        "trace": trace_rows,
        "compiled": crs,
    }
    return ReplayOutput(packets=pk, results=res, rule_packets=rst.rule_packets.copy(),
                        rule_bytes=rst.rule_bytes.copy(), rules=list(crs.rules), events=evd, flows=flows,
                        invalid_reasons=tuple(ct.INVALID_REASONS), reject_kinds=tuple(REJECT_KINDS),
                        iface_names=tuple(host.iface_names), meta=meta)

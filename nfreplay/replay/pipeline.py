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
from typing import NamedTuple

import numpy as np

from ._jit import inline_kernel, kernel
from .chains import (
    OUT_CT_HELPER,
    OUT_CT_NOTRACK,
    OUT_CT_ZONE,
    OUT_NAT,
    OUT_QUEUE_BYPASS,
    OUT_REJECT,
    OUT_RULE,
    bc_col,
    eval_chain,
    nat_col,
    reset_packet,
)
from .conntrack import ct_abort_a, ct_confirm_fast, ct_help_a, ct_in_pv, ct_remaining_s_a, ct_set_helper_a
from .conntrack.table import (
    C_CT_ID,
    C_FAMILY,
    C_GEN,
    C_HELPER,
    C_MARK,
    C_O_DPORT,
    C_O_DST_HI,
    C_O_DST_LO,
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
    C_TCP_STATE,
    C_USED,
    C_ZONE,
    M_INV_ARG,
    M_INV_SLOT,
)
from .host import is_local, masq_addr, primary_addr, route_lookup
from .nat import MANIP_DST, MANIP_SRC, log_response, nat_packet, null_binding, setup_info
from .rules.compile import (
    BC_PRIO,
    BC_TYPE,
    H_HOOK_END,
    H_HOOK_START,
    NA_ADDR_HI_HI,
    NA_ADDR_HI_LO,
    NA_ADDR_LO_HI,
    NA_ADDR_LO_LO,
    NA_FLAGS,
    NA_HAS_ADDR,
    NA_KIND,
    NA_MASK_HI,
    NA_MASK_LO,
    NA_PORT_HI,
    NA_PORT_LO,
)
from .schema import (
    PV_DPORT,
    PV_DST_HI,
    PV_DST_LO,
    PV_ETH_DST,
    PV_ETH_SRC,
    PV_FAMILY,
    PV_FRAG_OFF,
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
    PV_IP_CSUM,
    PV_IP_FLAGS,
    PV_IP_ID,
    PV_IP_LEN,
    PV_L4_CSUM,
    PV_L4_LEN,
    PV_PKT_DIR,
    PV_PROTO,
    PV_SPORT,
    PV_SRC_HI,
    PV_SRC_LO,
    PV_STATUS,
    PV_TCP_FLAGS,
    PV_TCP_HLEN,
    PV_TCP_MSS,
    PV_TCP_WIN,
    PV_TOS,
    PV_TS,
    PV_TTL,
    PV_VLAN_ID,
)

log = logging.getLogger(__name__)

# options: slots of the per-packet scratch S (see S_* / R_* below), set by the driver
OPT_CT_ENABLED = 16
OPT_FWD4 = 17
OPT_FWD6 = 18
OPT_SKIP_OUTGOING = 19
OPT_TRACE_PACKET = 20
OPT_LO_IFACE = 21
OPT_NAT4 = 22  # NAT core active for IPv4 (some nat chain exists)
OPT_NAT6 = 23

# counters (summary): slots of S, read by the driver
C_SKIPPED_OUTGOING = 32
C_BAD_IP_CSUM = 33
C_NO_ROUTE = 34
C_TTL = 35
C_FWD_DISABLED = 36
C_CONFIRM_FAIL = 37

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
F_CT_SLOT, F_CT_ID = 53, 54  # codes.Field.CT_SLOT / CT_ID (connlimit)

P_PORTS, P_ICMP, P_TCP, P_CT, P_ETH, P_VLAN, P_IIF, P_OIF, P_ICMP_ID = 1, 2, 4, 8, 16, 32, 64, 128, 256

# CtState codes (codes.CtState) and xt state bits
CS_INVALID, CS_ESTABLISHED, CS_RELATED, CS_NEW, CS_UNTRACKED = 1, 2, 3, 4, 5


class Work(NamedTuple):
    """Scratch arrays reused for every packet (taken apart once per driver.replay_chunk call)."""

    ctx: np.ndarray  # int64[N_FIELDS]
    out: np.ndarray  # int64[N_OUT]
    trace: np.ndarray  # int64[cap, 3] (cap 1 = off)
    cur: np.ndarray  # uint64[6] current tuple (src_hi, src_lo, dst_hi, dst_lo, sport/id, dport)
    S: np.ndarray  # int64[N_S]: per-packet state S_*, options OPT_*, counters C_*, result row R_*
    T: np.ndarray  # uint64[8, 6] NAT scratch (nat.new_nat_scratch)
    pf: np.ndarray  # int64[PV_BLOCK] scratch of conntrack.ct_prefetch_block


@kernel
def _is_icmp_error(fam, proto, typ):
    if fam == 4 and proto == 1:
        return typ == 3 or typ == 4 or typ == 5 or typ == 11 or typ == 12
    if fam == 6 and proto == 58:
        return typ < 128
    return False


@inline_kernel
def _fill_ctx(ctx, pv, cur, iif, oif, mark, ttl, hook, E, L, slot, d, cstate, now_ns):
    fam = pv[PV_FAMILY]
    proto = pv[PV_PROTO]
    ctx[F_SRC] = np.int64(cur[0])
    ctx[F_SRC + 1] = np.int64(cur[1])
    ctx[F_DST] = np.int64(cur[2])
    ctx[F_DST + 1] = np.int64(cur[3])
    ctx[F_PROTO] = proto
    ctx[F_IIF] = iif
    ctx[F_OIF] = oif
    ctx[F_MARK] = mark
    ctx[F_LEN] = pv[PV_IP_LEN]
    ctx[F_TTL] = ttl
    ctx[F_TOS] = pv[PV_TOS]
    ctx[F_DSCP] = pv[PV_TOS] >> 2
    ctx[F_PKTTYPE] = 0
    ctx[F_FRAG] = pv[PV_FRAG_OFF]
    ctx[F_NFPROTO] = 2 if fam == 4 else 10
    ctx[F_IP_ID] = pv[PV_IP_ID]
    ctx[F_IP_FLAGS] = pv[PV_IP_FLAGS]
    ctx[F_HOOK] = hook
    pres = np.int64(0)
    if iif >= 0:
        pres |= P_IIF
    if oif >= 0:
        pres |= P_OIF
    nonfirst = pv[PV_FRAG_OFF] != 0
    if not nonfirst and (proto == 6 or proto == 17 or proto == 136 or proto == 132 or proto == 33):
        pres |= P_PORTS
        ctx[F_SPORT] = np.int64(cur[4])
        ctx[F_DPORT] = np.int64(cur[5])
        if proto == 6:
            pres |= P_TCP
            ctx[F_TCP_FLAGS] = pv[PV_TCP_FLAGS]
            ctx[F_TCP_WIN] = pv[PV_TCP_WIN]
            ctx[F_TCP_OPT_MSS] = pv[PV_TCP_MSS]
    else:
        ctx[F_SPORT] = 0
        ctx[F_DPORT] = 0
    if not nonfirst and ((proto == 1 and fam == 4) or (proto == 58 and fam == 6)):
        pres |= P_ICMP
        t = pv[PV_ICMP_TYPE]
        ctx[F_ICMP_TYPE] = t
        ctx[F_ICMP_CODE] = pv[PV_ICMP_CODE]
        if not _is_icmp_error(fam, proto, t):
            pres |= P_ICMP_ID
            ctx[F_ICMP_ID] = np.int64(cur[4])
    if pv[PV_ETH_SRC] != 0 or pv[PV_ETH_DST] != 0:
        pres |= P_ETH
        ctx[F_ETH_SRC] = pv[PV_ETH_SRC]
        ctx[F_ETH_DST] = pv[PV_ETH_DST]
    if pv[PV_VLAN_ID] >= 0:
        pres |= P_VLAN
        ctx[F_VLAN_ID] = pv[PV_VLAN_ID]
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
        st = E[slot, C_STATUS]
        if (st & (1 << 4)) != 0:
            ctx[F_CT_STATE] |= 128
        if (st & (1 << 5)) != 0:
            ctx[F_CT_STATE] |= 256
        ctx[F_CT_DIR] = d
        ctx[F_CT_STATUS] = st
        ctx[F_CT_MARK] = E[slot, C_MARK]
        ctx[F_CT_ORIG_SRC] = E[slot, C_O_SRC_HI]
        ctx[F_CT_ORIG_SRC + 1] = E[slot, C_O_SRC_LO]
        ctx[F_CT_ORIG_DST] = E[slot, C_O_DST_HI]
        ctx[F_CT_ORIG_DST + 1] = E[slot, C_O_DST_LO]
        ctx[F_CT_REPLY_SRC] = E[slot, C_R_SRC_HI]
        ctx[F_CT_REPLY_SRC + 1] = E[slot, C_R_SRC_LO]
        ctx[F_CT_REPLY_DST] = E[slot, C_R_DST_HI]
        ctx[F_CT_REPLY_DST + 1] = E[slot, C_R_DST_LO]
        ctx[F_CT_ORIG_SPORT] = E[slot, C_O_SPORT]
        ctx[F_CT_ORIG_DPORT] = E[slot, C_O_DPORT]
        ctx[F_CT_REPLY_SPORT] = E[slot, C_R_SPORT]
        ctx[F_CT_REPLY_DPORT] = E[slot, C_R_DPORT]
        ctx[F_CT_ZONE] = E[slot, C_ZONE]
        ctx[F_CT_EXPIRE] = np.int64(ct_remaining_s_a(E, L, slot, now_ns))
        ctx[F_CT_HELPER] = E[slot, C_HELPER]
        ctx[F_CT_PROTO] = E[slot, C_PROTO]
        ctx[F_CT_L3PROTO] = 2 if E[slot, C_FAMILY] == 4 else 10
        ctx[F_CT_SLOT] = slot
        ctx[F_CT_ID] = E[slot, C_GEN]
    else:
        ctx[F_CT_MARK] = 0
        ctx[F_CT_STATUS] = 0
        ctx[F_CT_SLOT] = -1
        ctx[F_CT_ID] = -1
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
def _run_nat(hook, manip, cra, rst, pv, E, L, H, slot, d, ctinfo, cstate, ctx, out, trace, cur, T, iif, oif, mark,
             ttl, now_ns, ha, nst, S):
    """The NAT core entry of a hook. Returns (verdict, nat flags applied, mark)."""
    fam = pv[PV_FAMILY]
    proto = pv[PV_PROTO]
    if slot < 0 or cstate == CS_INVALID or cstate == CS_UNTRACKED:
        return np.int64(1), np.int64(0), mark
    if _is_icmp_error(fam, proto, pv[PV_ICMP_TYPE]):
        # nf_nat_icmp_reply_translation: outer addresses rewritten as for a packet of that direction
        s4 = cur[4]
        s5 = cur[5]
        r = nat_packet(E, slot, d, manip, cur, T)
        cur[4] = s4
        cur[5] = s5
        return np.int64(1), r, mark
    done_bit = np.int64(1 << 7) if manip == MANIP_SRC else np.int64(1 << 8)
    if (ctinfo == 2 or ctinfo == 1 or ctinfo == 4) and (E[slot, C_STATUS] & done_bit) == 0:
        made = False
        k = cra.prog[H_HOOK_START + hook]
        while k < cra.prog[H_HOOK_END + hook]:
            if bc_col(cra, k, BC_TYPE) == BC_NAT:
                _fill_ctx(ctx, pv, cur, iif, oif, mark, ttl, hook, E, L, slot, d, cstate, now_ns)
                v = eval_chain(cra, rst, k, ctx, pv[PV_IP_LEN], now_ns, out, trace)
                mark = ctx[F_MARK]
                if v == 0:
                    S[R_VERDICT_RULE] = out[OUT_RULE]
                    S[R_VERDICT_HOOK] = hook
                    return np.int64(0), np.int64(0), mark
                nr = out[OUT_NAT]
                if nr >= 0:
                    _apply_nat_row(cra, nr, manip, E, L, H, slot, cur, T, iif, oif, ha, now_ns, nst)
                    made = True
                    break
            k += 1
        if not made:
            null_binding(E, L, H, slot, manip, now_ns, nst, T)
        E[slot, C_STATUS] |= done_bit
    r = nat_packet(E, slot, d, manip, cur, T)
    return np.int64(1), r, mark


@kernel
def _apply_nat_row(cra, nr, manip, E, L, H, slot, cur, T, iif, oif, ha, now_ns, nst):
    kind = nat_col(cra, nr, NA_KIND)
    flags = nat_col(cra, nr, NA_FLAGS)
    fam = E[slot, C_FAMILY]
    pmin = nat_col(cra, nr, NA_PORT_LO)
    pmax = nat_col(cra, nr, NA_PORT_HI)
    if nat_col(cra, nr, NA_HAS_ADDR) != 0:
        min_hi = np.uint64(nat_col(cra, nr, NA_ADDR_LO_HI))
        min_lo = np.uint64(nat_col(cra, nr, NA_ADDR_LO_LO))
        max_hi = np.uint64(nat_col(cra, nr, NA_ADDR_HI_HI))
        max_lo = np.uint64(nat_col(cra, nr, NA_ADDR_HI_LO))
        flags |= 16
    else:
        min_hi = np.uint64(0)
        min_lo = np.uint64(0)
        max_hi = np.uint64(0)
        max_lo = np.uint64(0)
    if kind == 3:  # MASQUERADE: address of the out interface (next hop = destination, on-link model)
        hi, lo, ok = masq_addr(ha, oif, fam, np.int64(cur[2]), np.int64(cur[3]))
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
        mh = np.uint64(nat_col(cra, nr, NA_MASK_HI))
        ml = np.uint64(nat_col(cra, nr, NA_MASK_LO))
        if manip == MANIP_SRC:
            ah = cur[0]
            al = cur[1]
        else:
            ah = cur[2]
            al = cur[3]
        nh = (min_hi & mh) | (ah & ~mh)
        nl = (min_lo & ml) | (al & ~ml)
        min_hi = nh
        min_lo = nl
        max_hi = nh
        max_lo = nl
        flags |= 16
    setup_info(E, L, H, slot, manip, flags, min_hi, min_lo, max_hi, max_lo, pmin, pmax, now_ns, nst, T)


@inline_kernel
def _run_hook(hook, cra, rst, pv, E, L, H, M, X, F, P, EV, ha, nst, ctx, out, trace, cur, T, S, now_ns):
    """Walk one hook. S: the per-packet int64 scratch (S_* state, OPT_*, counters, R_* results).
    Returns the verdict."""
    fam = pv[PV_FAMILY]
    ct_on = S[OPT_CT_ENABLED] != 0
    nat_on = (S[OPT_NAT4] != 0) if fam == 4 else (S[OPT_NAT6] != 0)
    has_ct_op = ct_on and (hook == 0 or hook == 3) and S[S_CT_DONE] == 0
    has_nat_op = ct_on and nat_on
    nat_prio = np.int64(-100) if (hook == 0 or hook == 3) else np.int64(100)
    if hook == 2:
        has_nat_op = False
    manip = MANIP_DST if (hook == 0 or hook == 3) else MANIP_SRC
    ct_pending = has_ct_op
    nat_pending = has_nat_op
    k = cra.prog[H_HOOK_START + hook]
    kend = cra.prog[H_HOOK_END + hook]
    plen = pv[PV_IP_LEN]
    while True:
        while k < kend and bc_col(cra, k, BC_TYPE) == BC_NAT:
            k += 1
        pc = bc_col(cra, k, BC_PRIO) if k < kend else BIG
        if ct_pending and np.int64(-200) < pc:
            ct_pending = False
            _do_ct(hook, pv, E, L, H, M, X, F, P, EV, out, S, now_ns)
            if S[S_DROPPED] != 0:
                return np.int64(0)
            continue
        if nat_pending and nat_prio < pc:
            nat_pending = False
            v, r, mk = _run_nat(hook, manip, cra, rst, pv, E, L, H, S[S_SLOT], S[S_DIR], S[S_CTINFO], S[S_CSTATE],
                                ctx, out, trace, cur, T, S[S_IIF], S[S_OIF], S[S_MARK], S[S_TTL], now_ns, ha, nst,
                                S)
            S[S_MARK] = mk
            S[S_NATF] |= r
            if v == 0:
                return np.int64(0)
            continue
        if k >= kend:
            break
        _fill_ctx(ctx, pv, cur, S[S_IIF], S[S_OIF], S[S_MARK], S[S_TTL], hook, E, L, S[S_SLOT], S[S_DIR],
                  S[S_CSTATE], now_ns)
        v = eval_chain(cra, rst, k, ctx, plen, now_ns, out, trace)
        S[S_MARK] = ctx[F_MARK]
        if S[S_SLOT] >= 0 and (ctx[F_PRESENT] & P_CT) != 0:
            E[S[S_SLOT], C_MARK] = ctx[F_CT_MARK]
        if v == 0:
            S[R_VERDICT_RULE] = out[OUT_RULE]
            S[R_VERDICT_HOOK] = hook
            S[R_REJECT_KIND] = out[OUT_REJECT]
            return np.int64(0)
        if v == 3:  # QUEUE: no listener in a replay
            if out[OUT_QUEUE_BYPASS] == 0:
                S[R_VERDICT_RULE] = out[OUT_RULE]
                S[R_VERDICT_HOOK] = hook
                return np.int64(3)
        elif v == 1 and out[OUT_RULE] >= 0:
            if bc_col(cra, k, BC_PRIO) == 0 or S[S_LAST_ACCEPT_FILTER] < 0:
                S[S_LAST_ACCEPT] = out[OUT_RULE]
                S[S_LAST_ACCEPT_HOOK] = hook
                if bc_col(cra, k, BC_PRIO) == 0:
                    S[S_LAST_ACCEPT_FILTER] = out[OUT_RULE]
        k += 1
    return np.int64(1)


@inline_kernel
def _do_ct(hook, pv, E, L, H, M, X, F, P, EV, out, S, now_ns):
    if out[OUT_CT_NOTRACK] != 0:
        S[S_SLOT] = -1
        S[S_CTINFO] = 7
        S[S_CSTATE] = CS_UNTRACKED
        S[S_DIR] = 2
        S[S_CT_DONE] = 1
        return
    zone = out[OUT_CT_ZONE]
    if zone < 0:
        zone = np.int64(0)
    slot, d, ctinfo, reason = ct_in_pv(E, L, H, M, X, F, P, pv, zone, hook, now_ns, EV)
    S[S_CT_DONE] = 1
    if slot < 0 and reason == 21:  # table full: dropped by conntrack
        S[S_DROPPED] = 1
        S[S_REASON] = 71
        S[S_CSTATE] = CS_INVALID
        return
    S[S_SLOT] = slot
    S[S_DIR] = d
    S[S_CTINFO] = ctinfo
    S[S_CSTATE] = _cstate(ctinfo)
    S[S_INVALID_REASON] = reason
    S[S_INV_SLOT] = M[M_INV_SLOT]
    S[S_INV_ARG] = M[M_INV_ARG]
    if slot >= 0 and out[OUT_CT_HELPER] > 0:
        ct_set_helper_a(E, slot, out[OUT_CT_HELPER])


# Per-packet scratch S (int64[N_S]): S_* per-packet state, OPT_* options and counters (set / read by the
# driver), R_* the packet's result row (written to PacketResults once, by driver.replay_chunk).
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
# more per-packet state (reset by _reset_packet_slots)
S_INV_SLOT = 40  # slot of the entry an INVALID packet matched (conntrack M_INV_SLOT), -1 none
S_INV_ARG = 41  # the number of its INVALID log line (conntrack M_INV_ARG)
R_OUTCOME = 48
R_PATH = 49
R_IN_IFACE = 50
R_OUT_IFACE = 51
R_VERDICT_RULE = 52
R_VERDICT_HOOK = 53
R_CT_ID = 54
R_CT_STATE = 55
R_CT_DIR = 56
R_TCP_STATE = 57
R_INVALID_REASON = 58
R_OUT_SRC_HI = 59
R_OUT_SRC_LO = 60
R_OUT_DST_HI = 61
R_OUT_DST_LO = 62
R_OUT_SPORT = 63
R_OUT_DPORT = 64
R_MARK = 65
R_CT_MARK = 66
R_REJECT_KIND = 67
R_REASON = 68
R_NAT_FLAGS = 69
R_INVALID_ARG = 70
N_S = 72
PV_BLOCK = 256


@kernel
def _reset_packet_slots(S):
    for k in range(N_STATE):
        S[k] = 0
    for k in range(R_OUTCOME, N_S):
        S[k] = 0
    S[S_SLOT] = -1
    S[S_DIR] = 2
    S[S_LAST_ACCEPT] = -1
    S[S_LAST_ACCEPT_HOOK] = -1
    S[S_LAST_ACCEPT_FILTER] = -1
    S[S_INV_SLOT] = -1
    S[S_INV_ARG] = 0
    # PacketResults defaults (result.empty_results)
    S[R_IN_IFACE] = -1
    S[R_OUT_IFACE] = -1
    S[R_VERDICT_RULE] = -1
    S[R_VERDICT_HOOK] = -1
    S[R_CT_ID] = -1
    S[R_CT_DIR] = 2


@kernel
def _run_hook_call(hook, cra, rst, pv, E, L, H, M, X, F, P, EV, ha, nst, ctx, out, trace, cur, T, S, now_ns):
    """_run_hook as a real call (for the rare REJECT-response path; _replay_one inlines its one call)."""
    return _run_hook(hook, cra, rst, pv, E, L, H, M, X, F, P, EV, ha, nst, ctx, out, trace, cur, T, S, now_ns)


@inline_kernel
def _replay_one(pv, data, ha, cra, rst, E, L, H, M, X, F, P, EV, nst, ctx, out, trace, cur, T, S):
    i = pv[PV_INDEX]
    _reset_packet_slots(S)
    st = pv[PV_STATUS]
    if st != 0:
        S[R_OUTCOME] = 8
        S[R_REASON] = st
        return
    fam = pv[PV_FAMILY]
    if S[OPT_SKIP_OUTGOING] != 0 and pv[PV_PKT_DIR] == 2:
        S[R_OUTCOME] = 8
        S[R_REASON] = 69
        S[C_SKIPPED_OUTGOING] += 1
        return
    if fam == 4 and pv[PV_IP_CSUM] == 2:
        S[R_OUTCOME] = 4
        S[R_REASON] = 70
        S[C_BAD_IP_CSUM] += 1
        return
    now = pv[PV_TS]
    S[S_TTL] = pv[PV_TTL]
    reset_packet(out, trace)
    if S[OPT_TRACE_PACKET] != i:
        trace[0, 0] = 0
    cur[0] = np.uint64(pv[PV_SRC_HI])
    cur[1] = np.uint64(pv[PV_SRC_LO])
    cur[2] = np.uint64(pv[PV_DST_HI])
    cur[3] = np.uint64(pv[PV_DST_LO])
    proto = pv[PV_PROTO]
    if (proto == 1 and fam == 4) or (proto == 58 and fam == 6):
        cur[4] = np.uint64(pv[PV_ICMP_ID])
        cur[5] = np.uint64((pv[PV_ICMP_TYPE] << 8) | pv[PV_ICMP_CODE])
    else:
        cur[4] = np.uint64(pv[PV_SPORT])
        cur[5] = np.uint64(pv[PV_DPORT])
    src_local = is_local(ha, fam, np.int64(cur[0]), np.int64(cur[1]))
    path = np.int64(0)
    if src_local:
        # locally generated: OUTPUT -> POSTROUTING
        S[S_IIF] = -1
        if is_local(ha, fam, np.int64(cur[2]), np.int64(cur[3])):
            oif = S[OPT_LO_IFACE]
        else:
            oif = route_lookup(ha, fam, np.int64(cur[2]), np.int64(cur[3]))
        if oif < 0:
            S[R_OUTCOME] = 8
            S[R_REASON] = 65
            S[C_NO_ROUTE] += 1
            return
        S[S_OIF] = oif
        S[R_IN_IFACE] = -1
        hook = np.int64(3)
        final_ok = np.int64(2)  # emitted
    else:
        # arriving: PREROUTING -> INPUT, or PREROUTING -> FORWARD -> POSTROUTING
        iif = route_lookup(ha, fam, np.int64(cur[0]), np.int64(cur[1]))
        if iif < 0:
            S[R_OUTCOME] = 8
            S[R_REASON] = 64
            S[C_NO_ROUTE] += 1
            return
        S[S_IIF] = iif
        S[S_OIF] = -1
        S[R_IN_IFACE] = iif
        hook = np.int64(0)
        final_ok = np.int64(3)
    # one call site of the (inlined) hook walk; the routing decisions between hooks below
    while True:
        hooks_v = _run_hook(hook, cra, rst, pv, E, L, H, M, X, F, P, EV, ha, nst, ctx, out, trace, cur, T, S, now)
        path |= np.int64(1) << hook
        if hooks_v != 1 or hook == 1 or hook == 4:
            break
        if hook == 3:
            # re-route after OUTPUT DNAT
            if (S[S_NATF] & 2) != 0:
                if is_local(ha, fam, np.int64(cur[2]), np.int64(cur[3])):
                    S[S_OIF] = S[OPT_LO_IFACE]
                else:
                    o2 = route_lookup(ha, fam, np.int64(cur[2]), np.int64(cur[3]))
                    if o2 >= 0:
                        S[S_OIF] = o2
            hook = np.int64(4)
        elif hook == 2:
            hook = np.int64(4)
        elif is_local(ha, fam, np.int64(cur[2]), np.int64(cur[3])):  # after PREROUTING
            hook = np.int64(1)
            final_ok = np.int64(3)
        else:
            fwd_on = S[OPT_FWD4] if fam == 4 else S[OPT_FWD6]
            oif = route_lookup(ha, fam, np.int64(cur[2]), np.int64(cur[3]))
            if fwd_on == 0 or oif < 0 or S[S_TTL] <= 1:
                # dropped by the kernel's routing / ip_forward, not by a rule
                S[R_PATH] = path
                S[R_OUTCOME] = 4
                if fwd_on == 0:
                    S[R_REASON] = 66
                    S[C_FWD_DISABLED] += 1
                elif oif < 0:
                    S[R_REASON] = 65
                    S[C_NO_ROUTE] += 1
                else:
                    S[R_REASON] = 67
                    S[C_TTL] += 1
                _finish_drop(E, L, M, S)
                _record(E, S)
                return
            S[S_OIF] = oif
            S[S_TTL] -= 1
            hook = np.int64(2)
            final_ok = np.int64(1)
    S[R_PATH] = path
    S[R_OUT_IFACE] = S[S_OIF] if hooks_v == 1 and final_ok != 3 else -1
    if hooks_v == 1:
        slot = S[S_SLOT]
        if slot >= 0:
            if E[slot, C_HELPER] != 0:
                if not ct_help_a(E, M, X, P, pv, data, slot, S[S_DIR], S[S_CTINFO], now):
                    hooks_v = np.int64(0)
            if hooks_v == 1 and not ct_confirm_fast(E, L, H, M, X, F, slot, now, i, EV):
                hooks_v = np.int64(0)
                S[C_CONFIRM_FAIL] += 1
    if hooks_v == 1:
        S[R_OUTCOME] = final_ok
        S[R_VERDICT_RULE] = S[S_LAST_ACCEPT]
        S[R_VERDICT_HOOK] = S[S_LAST_ACCEPT_HOOK]
        if final_ok != 3:
            S[R_OUT_SRC_HI] = np.int64(cur[0])
            S[R_OUT_SRC_LO] = np.int64(cur[1])
            S[R_OUT_DST_HI] = np.int64(cur[2])
            S[R_OUT_DST_LO] = np.int64(cur[3])
            if (proto == 1 and fam == 4) or (proto == 58 and fam == 6):
                S[R_OUT_SPORT] = np.int64(cur[4] & np.uint64(0xFFFF))
                S[R_OUT_DPORT] = 0
            else:
                S[R_OUT_SPORT] = np.int64(cur[4] & np.uint64(0xFFFF))
                S[R_OUT_DPORT] = np.int64(cur[5] & np.uint64(0xFFFF))
    elif hooks_v == 3:
        S[R_OUTCOME] = 6
        _finish_drop(E, L, M, S)
    else:
        if S[S_DROPPED] != 0:
            S[R_OUTCOME] = 4
            S[R_REASON] = S[S_REASON]
        elif S[R_REJECT_KIND] > 0:
            S[R_OUTCOME] = 5
            _reject_response(pv, cra, rst, E, L, H, M, X, F, P, EV, ha, nst, ctx, out, trace, cur, T, S, now)
        else:
            S[R_OUTCOME] = 4
        _finish_drop(E, L, M, S)
    S[R_NAT_FLAGS] = S[S_NATF]
    _record(E, S)


# REJECT responses (spec hooks-rules-nat.md §2.5): index = compile.REJECT_KINDS position.
# _REJ_TCP: 1 for tcp-reset; _REJ_T4/_REJ_C4 ICMP type/code for IPv4, _REJ_T6/_REJ_C6 for IPv6 (-1: none).
_REJ_TCP = np.array([0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], dtype=np.int64)
_REJ_T4 = np.array([-1, 3, 3, 3, 3, 3, 3, 3, -1, -1, -1, -1, -1, 3, 3, 3, 3, -1, -1, -1], dtype=np.int64)
_REJ_C4 = np.array([0, 3, 0, 1, 2, 9, 10, 13, 0, 0, 0, 0, 0, 3, 13, 0, 1, 0, 0, 0], dtype=np.int64)
_REJ_T6 = np.array([-1, -1, -1, -1, -1, -1, -1, -1, -1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1], dtype=np.int64)
_REJ_C6 = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 3, 4, 4, 1, 0, 3, 5, 6, 2], dtype=np.int64)


@kernel
def _attach_related(S, S2):
    """nf_ct_attach of a REJECT response (RST or ICMP error) to the offending packet's entry: the response
    is RELATED, in the offender's reply direction (RELATED_REPLY for an original-direction offender)."""
    S2[S_SLOT] = S[S_SLOT]
    S2[S_CT_DONE] = 1
    S2[S_CSTATE] = CS_RELATED
    if S[S_DIR] == 0:
        S2[S_CTINFO] = 4  # IP_CT_RELATED_REPLY
        S2[S_DIR] = 1
    else:
        S2[S_CTINFO] = 1  # IP_CT_RELATED
        S2[S_DIR] = 0


@kernel
def _reject_response(pv, cra, rst, E, L, H, M, X, F, P, EV, ha, nst, ctx, out, trace, cur, T, S, now):
    """The response REJECT sends (nf_send_reset / icmp_send) is built from the offending packet as it is at
    the REJECT (its current tuple `cur`: after a PREROUTING DNAT) and leaves through ip_local_out: it
    traverses OUTPUT and POSTROUTING like a locally generated packet, so those hooks' rules and policies
    count it, and the NAT core translates it. Both carry the offending packet's conntrack entry
    (nf_ct_attach, from nf_send_reset and from icmp_send's icmp_glue_bits: RELATED_REPLY when the
    offending packet was ORIGINAL, else RELATED; conntrack at OUTPUT skips them), confirmed or not. The
    RST is NATed like a reply of that entry (nf_nat_inet_fn): a manip the entry has not decided yet (SRC,
    when a first packet was rejected before POSTROUTING) runs the nat chains for the RST and binds the
    entry, so a DNATed connection's RST leaves with the public address the client used. An ICMP error
    gets nf_nat_icmp_reply_translation (outer addresses as for a reply; no nat chains). Without an entry
    (INVALID) conntrack classifies the response at OUTPUT. The response as it left (or that it did not)
    is logged with nat.log_response. Rare path: allocates."""
    kind = S[R_REJECT_KIND]
    if kind <= 0 or kind >= _REJ_TCP.shape[0]:
        return
    fam = pv[PV_FAMILY]
    proto = pv[PV_PROTO]
    if pv[PV_FRAG_OFF] != 0 or pv[PV_L4_CSUM] == 2:
        return
    if S[S_IIF] < 0:
        return  # a locally generated packet rejected in OUTPUT: the error goes to the local socket
    # the offending packet's headers as they are now (NAT so far applied)
    o_shi = np.int64(cur[0])
    o_slo = np.int64(cur[1])
    o_dhi = np.int64(cur[2])
    o_dlo = np.int64(cur[3])
    o_sp = np.int64(cur[4] & np.uint64(0xFFFF))
    o_dp = np.int64(cur[5] & np.uint64(0xFFFF))
    pv2 = pv.copy()
    S2 = S.copy()
    pv2[PV_SRC_HI] = o_dhi
    pv2[PV_SRC_LO] = o_dlo
    pv2[PV_DST_HI] = o_shi
    pv2[PV_DST_LO] = o_slo
    pv2[PV_TTL] = 64
    pv2[PV_TOS] = 0
    pv2[PV_IP_FLAGS] = 2
    pv2[PV_IP_ID] = 0
    pv2[PV_ETH_SRC] = 0
    pv2[PV_ETH_DST] = 0
    pv2[PV_VLAN_ID] = -1
    pv2[PV_INDEX] = -1
    if _REJ_TCP[kind] == 1:
        if proto != 6 or (pv[PV_TCP_FLAGS] & 4) != 0:
            return
        pv2[PV_SPORT] = o_dp
        pv2[PV_DPORT] = o_sp
        pv2[PV_TCP_FLAGS] = 4 if (pv[PV_TCP_FLAGS] & 16) != 0 else 20
        pv2[PV_TCP_HLEN] = 20
        pv2[PV_IP_LEN] = 40 if fam == 4 else 60
        pv2[PV_L4_LEN] = 20
        if S[S_SLOT] >= 0:
            _attach_related(S, S2)
        else:
            S2[S_SLOT] = S[S_SLOT]
            S2[S_CT_DONE] = 1
            S2[S_CTINFO] = -1
            S2[S_CSTATE] = CS_INVALID
            S2[S_DIR] = 2
    else:
        if fam == 4:
            t = _REJ_T4[kind]
            c = _REJ_C4[kind]
            if t < 0 or (proto == 1 and _is_icmp_error(fam, proto, pv[PV_ICMP_TYPE])):
                return
            pv2[PV_PROTO] = 1
            room = pv[PV_IP_LEN] if pv[PV_IP_LEN] < 548 else np.int64(548)
            pv2[PV_IP_LEN] = 28 + room
            pv2[PV_L4_LEN] = 8 + room
        else:
            t = _REJ_T6[kind]
            c = _REJ_C6[kind]
            if t < 0 or (proto == 58 and _is_icmp_error(fam, proto, pv[PV_ICMP_TYPE])):
                return
            pv2[PV_PROTO] = 58
            room = pv[PV_IP_LEN] if pv[PV_IP_LEN] < 1232 else np.int64(1232)
            pv2[PV_IP_LEN] = 48 + room
            pv2[PV_L4_LEN] = 8 + room
        # the error's source: the (current) destination when it is local, else the address of the
        # interface the error leaves through (inet_select_addr)
        if not is_local(ha, fam, o_dhi, o_dlo):
            hi, lo, ok = primary_addr(ha, S[S_IIF], fam)
            if ok:
                pv2[PV_SRC_HI] = hi
                pv2[PV_SRC_LO] = lo
        pv2[PV_ICMP_TYPE] = t
        pv2[PV_ICMP_CODE] = c
        pv2[PV_ICMP_ID] = 0
        pv2[PV_SPORT] = 0
        pv2[PV_DPORT] = 0
        pv2[PV_INNER_OK] = 1
        pv2[PV_INNER_PROTO] = proto
        pv2[PV_INNER_SRC_HI] = o_shi
        pv2[PV_INNER_SRC_LO] = o_slo
        pv2[PV_INNER_DST_HI] = o_dhi
        pv2[PV_INNER_DST_LO] = o_dlo
        pv2[PV_INNER_SPORT] = o_sp
        pv2[PV_INNER_DPORT] = o_dp
        pv2[PV_L4_CSUM] = 1
        if S[S_SLOT] >= 0:
            # icmp_glue_bits: nf_ct_attach(error, offending packet) -- conntrack at OUTPUT leaves it alone
            _attach_related(S, S2)
        else:
            # nothing to attach: conntrack classifies the error at OUTPUT from its embedded packet
            S2[S_SLOT] = -1
            S2[S_CT_DONE] = 0 if S[OPT_CT_ENABLED] != 0 else 1
            S2[S_DIR] = 2
            S2[S_CTINFO] = 0
            S2[S_CSTATE] = 0
    S2[S_IIF] = -1
    S2[S_OIF] = S[S_IIF]
    S2[S_MARK] = 0
    S2[S_TTL] = 64
    S2[S_DROPPED] = 0
    S2[S_NATF] = 0
    S2[S_LAST_ACCEPT] = -1
    S2[S_LAST_ACCEPT_HOOK] = -1
    S2[S_LAST_ACCEPT_FILTER] = -1
    ntr = trace[0, 0]
    cur[0] = np.uint64(pv2[PV_SRC_HI])
    cur[1] = np.uint64(pv2[PV_SRC_LO])
    cur[2] = np.uint64(pv2[PV_DST_HI])
    cur[3] = np.uint64(pv2[PV_DST_LO])
    icmp = _REJ_TCP[kind] != 1
    if not icmp:
        cur[4] = np.uint64(pv2[PV_SPORT])
        cur[5] = np.uint64(pv2[PV_DPORT])
    else:
        cur[4] = np.uint64(0)
        cur[5] = np.uint64((pv2[PV_ICMP_TYPE] << 8) | pv2[PV_ICMP_CODE])
    sent = False
    v = _run_hook_call(3, cra, rst, pv2, E, L, H, M, X, F, P, EV, ha, nst, ctx, out, trace, cur, T, S2, now)
    if v == 1:
        if (S2[S_NATF] & 2) != 0:  # re-route after an OUTPUT DNAT of the response
            o2 = route_lookup(ha, fam, np.int64(cur[2]), np.int64(cur[3]))
            if o2 >= 0:
                S2[S_OIF] = o2
        v = _run_hook_call(4, cra, rst, pv2, E, L, H, M, X, F, P, EV, ha, nst, ctx, out, trace, cur, T, S2, now)
        sent = v == 1
    trace[0, 0] = ntr
    log_response(nst, pv[PV_INDEX], cur, icmp, S2[S_OIF] if sent else np.int64(-1))


@kernel
def _finish_drop(E, L, M, S):
    slot = S[S_SLOT]
    if slot >= 0 and E[slot, C_USED] == 1:
        ct_abort_a(E, L, M, slot)
        S[S_SLOT] = -1


@kernel
def _record(E, S):
    cs = S[S_CSTATE]
    S[R_CT_STATE] = cs
    S[R_CT_DIR] = S[S_DIR] if cs != CS_INVALID and cs != CS_UNTRACKED else 2
    S[R_INVALID_REASON] = S[S_INVALID_REASON] if cs == CS_INVALID else 0
    S[R_INVALID_ARG] = S[S_INV_ARG] & 0xFFFFFFFF if cs == CS_INVALID else 0
    S[R_MARK] = S[S_MARK] & 0xFFFFFFFF
    slot = S[S_SLOT]
    if slot >= 0:
        S[R_CT_ID] = np.int64(np.int32(E[slot, C_CT_ID]))
        S[R_TCP_STATE] = E[slot, C_TCP_STATE]
        S[R_CT_MARK] = E[slot, C_MARK] & 0xFFFFFFFF
    elif cs == CS_INVALID and S[S_INV_SLOT] >= 0 and E[S[S_INV_SLOT], C_USED] != 0:
        # the kernel reports the TCP state of the entry an INVALID packet belongs to (not attached)
        S[R_TCP_STATE] = E[S[S_INV_SLOT], C_TCP_STATE]


# ------------------------------------------------------------------ Python driver
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

    A thin wrapper over driver.Replayer (one feed of the whole capture, chunk_packets per kernel call);
    for captures that do not fit in memory feed Replayer with iter_capture chunks instead.
    """
    from .driver import Replayer
    from .schema import validate

    pk = validate(capture.packets)
    n = len(pk.ts_ns)
    rp = Replayer(ruleset, host, allow_unsupported=allow_unsupported, seed=seed,
                  assume_good_checksums=assume_good_checksums, capture_point=capture_point,
                  trace_packet=trace_packet, ipsets=ipsets, force_conntrack=force_conntrack, compiled=compiled,
                  sub_chunk=chunk_packets, n_hint=n)
    part = rp.feed(capture, progress=progress)
    return rp.finish(packets=part.packets, results=part.results, events_before=[part.events])

"""The rule evaluator: walk one base chain for one packet, as ipt_do_table / nft_do_chain do.

Python API: `new_rule_state(crs, seed=None) -> RuleState` (carried across chunks), `new_out()`,
`new_trace(cap)`, `reset_packet(out, trace)`. Kernel: `eval_chain(cra, st, bc, ctx, pkt_len, now_ns,
out, trace) -> verdict` where cra = CompiledRuleset.arrays, bc = base-chain index (the pipeline walks
hook_bc_start[hook]..hook_bc_end[hook] in order), ctx = int64[Field.N_FIELDS] (codes.Field), pkt_len =
the IP length counted in the byte counters, now_ns = capture time.

Returns codes.Verdict: ACCEPT (this base chain is done; the pipeline goes on with the next entry),
DROP (final; out[OUT_REJECT] > 0 when it was a REJECT; also a match's hotdrop, e.g. a full hashlimit
table: out[OUT_RULE] = that rule, not counted, trace TR_HOTDROP), QUEUE (out[OUT_QUEUE_NUM], out[OUT_QUEUE_BYPASS]).
A base chain of another family (ip table, IPv6 packet) returns ACCEPT with out[OUT_RULE] = -1 and
counts nothing.

Counting: a rule is counted (rule_packets += 1, rule_bytes += pkt_len) when its evaluation did not
break: all its matches passed (iptables counts there, before the target) and, for nft, no later
match or verdict-map miss ended it. The policy row of a base chain counts packets that took the policy.
nft `counter` statements are what the kernel shows for nft rules; rules metadata marks them.

`out` slots (int64[N_OUT]): eval_chain resets OUT_RULE, OUT_REJECT, OUT_NAT, OUT_QUEUE_* on entry;
the pipeline resets the rest per packet with reset_packet().
`trace` (int64[cap, 3], row 0 = header: trace[0, 0] = number of entries): rows (rule id, TR_* or
codes.Verdict value, argument) for each matched rule / logged statement, when cap > 1.

Speed: the walk reads the packed arrays of CompiledArrays (compile.py: ex/ru rows, sets, elements) and
RuleState (eight arrays) directly; matches are evaluated inline (single-interval sets as two compares),
only set lookups, addrtype and stateful matches are calls, and those take a few arrays, never the
NamedTuples. Chains with a destination-port dispatch block (compile.py `dispatch_block`) visit only the
wildcard rules and the rules whose port set covers the packet's destination port, in rule order; the
skipped rules are exactly those whose side-effect-free leading matches must fail. No allocation.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._jit import inline_kernel, kernel
from .host import addr_type_at
from .rules.compile import (
    BC_CHAIN,
    BC_FAMILY,
    BC_N,
    BC_POLICY_RULE,
    BC_POLICY_VERDICT,
    CH_END,
    CH_IX,
    CH_START,
    CH_W,
    E_HI,
    E_LO,
    E_N,
    E_PMAX,
    E_VBYPASS,
    E_VCHAIN,
    E_VCODE,
    E_VQNUM,
    FAST_EMPTY,
    FAST_RANGE1,
    FAST_RANGE2,
    H_BC,
    H_CH_OFF,
    H_EL,
    H_EX,
    H_HOOK_END,
    H_HOOK_START,
    H_HOST,
    H_NAT,
    H_RU,
    H_SETS,
    NA_N,
    NO_VERDICT,
    OP_ADDR_IN,
    OP_ADDR_MASKED,
    OP_ADDRTYPE,
    OP_COUNTER,
    OP_CTSET,
    OP_FIELD_IN,
    OP_FIRST_STMT,
    OP_IFACE,
    OP_LOG,
    OP_MARK,
    OP_MASKED_ANY,
    OP_MASKED_EQ,
    OP_NAT,
    OP_NFLOG,
    OP_NOOP,
    OP_NOOP_STMT,
    OP_REJECT,
    OP_SET,
    OP_STATEFUL,
    OP_VERDICT,
    OP_VMAP,
    R_EE,
    R_ES,
    R_N,
    R_NEXTW,
    S_END,
    S_FIELDS,
    S_KIND,
    S_N,
    S_NF,
    S_NW,
    S_START,
    S_W0,
    SET_SORTED,
    X_A0,
    X_A1,
    X_A2,
    X_A3,
    X_A4,
    X_A5,
    X_FAST,
    X_FIELD,
    X_HI,
    X_HI2,
    X_LO,
    X_LO2,
    X_N,
    X_NEG,
    X_OP,
    X_PRES,
    X_SET,
)
from .stateful import (
    CL_W,
    HL_W,
    IP_LIST_TOT,
    M_CL_E,
    M_CL_OFF,
    M_CL_ROWS,
    M_CL_T,
    M_DEPTH,
    M_HL_OFF,
    M_HL_ROWS,
    M_HL_T,
    M_HOTDROP,
    M_HOTDROPS,
    M_KEY,
    M_RC_OFF,
    M_RC_T,
    M_RC_W,
    M_RNG,
    M_SF_OFF,
    M_SF_ROWS,
    M_STACK,
    RC_HDR,
    new_stateful_state,
    stateful_match,
)

__all__ = ["RuleState", "new_rule_state", "eval_chain", "new_out", "new_trace", "reset_packet", "set_lookup",
           "OUT_RULE", "OUT_REJECT", "OUT_NAT", "OUT_QUEUE_NUM", "OUT_QUEUE_BYPASS", "OUT_CT_NOTRACK",
           "OUT_CT_ZONE", "OUT_CT_HELPER", "OUT_LAST_ACCEPT_RULE", "OUT_MARK_CHANGED", "N_OUT",
           "TR_MATCH", "TR_LOG", "TR_NFLOG", "TR_NOOP", "TR_POLICY", "TR_REJECT", "TR_NAT", "TR_MARK",
           "TR_CTSET", "TR_RETURN_IMPLICIT", "TR_HOTDROP", "bc_col", "nat_col", "hook_range"]

OUT_RULE = 0  # rule id that decided this base chain (terminal verdict or policy row); -1 none
OUT_REJECT = 1  # REJECT_KINDS index (0 none)
OUT_NAT = 2  # nat row chosen (nat chains); -1 none
OUT_QUEUE_NUM = 3
OUT_QUEUE_BYPASS = 4
OUT_CT_NOTRACK = 5  # 1 when a notrack statement ran (per packet)
OUT_CT_ZONE = 6  # zone set by CT --zone / ct zone set; -1 none (per packet)
OUT_CT_HELPER = 7  # helper id; -1 none (per packet)
OUT_LAST_ACCEPT_RULE = 8  # last rule id that returned ACCEPT for a base chain (per packet)
OUT_MARK_CHANGED = 9  # 1 when a mark statement changed ctx[MARK] (mangle OUTPUT re-route)
N_OUT = 12

# trace codes (codes.Verdict values are used for verdicts: ACCEPT 1, DROP 0, QUEUE 3, RETURN -5, ...)
TR_MATCH = 10  # rule matched, evaluation continued with the next rule (counting / non-terminal rule)
TR_LOG = 11
TR_NFLOG = 12
TR_NOOP = 13
TR_POLICY = 14  # arg = policy verdict
TR_REJECT = 15
TR_NAT = 16
TR_MARK = 17
TR_CTSET = 18
TR_RETURN_IMPLICIT = 19  # end of a user chain
TR_HOTDROP = 20  # a match (hashlimit table full) dropped the packet; arg = stateful index

V_DROP = 0
V_ACCEPT = 1
V_QUEUE = 3
V_CONTINUE = -1
V_JUMP = -3
V_GOTO = -4
V_RETURN = -5

_MIN64 = np.int64(-9223372036854775808)
_F_PRESENT = 44  # Field.PRESENT
_F_NFPROTO = 22  # Field.NFPROTO
_F_IIF = 7  # Field.IIF
_F_OIF = 8  # Field.OIF
_F_MARK = 9  # Field.MARK
_F_CT_MARK = 13  # Field.CT_MARK
_F_DPORT = 6  # Field.DPORT
_P_PORTS = 1  # PRESENT_PORTS


def _mem_view(off, rows, w):
    return property(lambda s: s.mem[int(s.mem[off]):int(s.mem[off]) + int(s.mem[rows]) * w].reshape(-1, w))


class RuleState(NamedTuple):
    """Counters and stateful-match state of a compiled ruleset: three int64 arrays (each NamedTuple field
    costs a reference-count pair per non-inlined call). `cnt[0]` packets and `cnt[1]` bytes per rule id;
    `mem` = misc header (hotdrop, PRNG, section offsets, set-key scratch, jump stack; stateful.M_*), then
    the sections sf, rc, hl, cl (layouts in stateful.py); `ct_live` = the pipeline's conntrack view for
    connlimit. The properties give the old names as views (Python side)."""

    cnt: np.ndarray  # int64[2, n_rules]
    mem: np.ndarray  # int64 1-D
    ct_live: np.ndarray  # int64[slots, 3] (int64[1, 3] = not provided; see stateful.py)

    rule_packets = property(lambda s: s.cnt[0])
    rule_bytes = property(lambda s: s.cnt[1])
    misc = property(lambda s: s.mem[:M_STACK + 2 * int(s.mem[M_DEPTH])])
    hotdrop = property(lambda s: s.mem[M_HOTDROP:M_HOTDROPS + 1])  # [flag, count]
    rng = property(lambda s: s.mem[M_RNG:M_RNG + 3])  # [state, draws, seed]
    stack_chain = property(lambda s: s.mem[M_STACK:M_STACK + 2 * int(s.mem[M_DEPTH]):2])
    stack_rule = property(lambda s: s.mem[M_STACK + 1:M_STACK + 2 * int(s.mem[M_DEPTH]):2])
    sf = _mem_view(M_SF_OFF, M_SF_ROWS, 8)
    hl = _mem_view(M_HL_OFF, M_HL_ROWS, HL_W)
    cl = _mem_view(M_CL_OFF, M_CL_ROWS, CL_W)
    rc = property(lambda s: s.mem[int(s.mem[M_RC_OFF]):int(s.mem[M_RC_OFF]) + int(s.mem[M_RC_T]) * (IP_LIST_TOT + 1)
                                  * int(s.mem[M_RC_W])].reshape(int(s.mem[M_RC_T]), IP_LIST_TOT + 1, int(s.mem[M_RC_W])))
    hl_tab = property(lambda s: s.hl[:int(s.mem[M_HL_T]), :8])
    hl_key = property(lambda s: s.hl[int(s.mem[M_HL_T]):, :6])
    hl_val = property(lambda s: s.hl[int(s.mem[M_HL_T]):, 6:11])
    cl_tab = property(lambda s: s.cl[:int(s.mem[M_CL_T]), :6])
    cl_key = property(lambda s: s.cl[int(s.mem[M_CL_T]):int(s.mem[M_CL_E]), :8])
    cl_ent = property(lambda s: s.cl[int(s.mem[M_CL_E]):])
    rc_tab = property(lambda s: s.rc[:, RC_HDR, :4])


def new_rule_state(crs, seed: int | None = None) -> RuleState:
    """Fresh counters and stateful-match state for a compiled ruleset (seed: PRNG seed for statistic
    random / numgen random; default the one given to compile_ruleset)."""
    a = crs.arrays
    n = a.n_rules
    depth = max(1, a.max_depth + 1)
    sf = new_stateful_state(a, crs.seed if seed is None else seed, depth)
    return RuleState(np.zeros((2, n), np.int64), sf["mem"], sf["ct_live"])


def new_out() -> np.ndarray:
    out = np.zeros(N_OUT, np.int64)
    reset_packet(out, np.zeros((1, 3), np.int64))
    return out


def new_trace(cap: int = 256) -> np.ndarray:
    """A trace buffer for cap - 1 entries; cap = 1 disables tracing."""
    return np.zeros((max(1, cap), 3), np.int64)


@kernel
def reset_packet(out, trace):
    """Per-packet reset of the out slots and the trace counter (the pipeline calls it before the hooks)."""
    out[OUT_RULE] = -1
    out[OUT_REJECT] = 0
    out[OUT_NAT] = -1
    out[OUT_QUEUE_NUM] = 0
    out[OUT_QUEUE_BYPASS] = 0
    out[OUT_CT_NOTRACK] = 0
    out[OUT_CT_ZONE] = -1
    out[OUT_CT_HELPER] = -1
    out[OUT_LAST_ACCEPT_RULE] = -1
    out[OUT_MARK_CHANGED] = 0
    trace[0, 0] = 0


@kernel
def _trace(trace, rule, code, arg):
    n = trace[0, 0]
    if n + 1 < trace.shape[0]:
        trace[n + 1, 0] = rule
        trace[n + 1, 1] = code
        trace[n + 1, 2] = arg
        trace[0, 0] = n + 1


@kernel
def _is_addr_field(f):
    return f == 0 or f == 2 or f == 24 or f == 26 or f == 28 or f == 30  # codes.ADDRESS_FIELDS


@kernel
def _cmp_lo(prog, eo, key, ko, nw):
    """-1/0/1: key (nw words at key[ko:]) vs the element at prog[eo:]'s lower bound, lexicographically."""
    for w in range(nw):
        a = key[ko + w]
        b = prog[eo + E_LO + w]
        if a < b:
            return -1
        if a > b:
            return 1
    return 0


@kernel
def _le_hi(prog, eo, key, ko, nw):
    """key <= the element's upper bound lexicographically."""
    for w in range(nw):
        a = key[ko + w]
        b = prog[eo + E_HI + w]
        if a < b:
            return True
        if a > b:
            return False
    return True


@kernel
def _comp_in(prog, so, eo, key, ko):
    """Every component of key lies in the element's component interval (set row so, element row eo)."""
    w = 0
    for fi in range(prog[so + S_NF]):
        nw = 2 if _is_addr_field(prog[so + S_FIELDS + fi]) else 1
        ok_lo = True
        for j in range(nw):
            a = key[ko + w + j]
            b = prog[eo + E_LO + w + j]
            if a > b:
                break
            if a < b:
                ok_lo = False
                break
        if not ok_lo:
            return False
        ok_hi = True
        for j in range(nw):
            a = key[ko + w + j]
            b = prog[eo + E_HI + w + j]
            if a < b:
                break
            if a > b:
                ok_hi = False
                break
        if not ok_hi:
            return False
        w += nw
    return True


@kernel
def _set_lookup(prog, s, ctx, key, ko):
    """Index of the element of set s containing the packet's key, or -1. key[ko:ko + 8] is scratch."""
    so = prog[H_SETS] + s * S_N
    elo = prog[H_EL]
    nw = prog[so + S_NW]
    k = 0
    for fi in range(prog[so + S_NF]):  # the key words, flipped (x ^ 1<<63) for unsigned order
        f = prog[so + S_FIELDS + fi]
        key[ko + k] = ctx[f] ^ _MIN64
        k += 1
        if _is_addr_field(f):
            key[ko + k] = ctx[f + 1] ^ _MIN64
            k += 1
    lo_i = prog[so + S_START]
    hi_i = prog[so + S_END]
    if lo_i >= hi_i:
        return np.int64(-1)
    if prog[so + S_KIND] == SET_SORTED:
        # last element with el_lo <= key
        a = lo_i
        b = hi_i
        while a < b:
            mid = (a + b) >> 1
            if _cmp_lo(prog, elo + mid * E_N, key, ko, nw) >= 0:
                a = mid + 1
            else:
                b = mid
        k = a - 1
        if k >= lo_i and _le_hi(prog, elo + k * E_N, key, ko, nw):
            return k
        return np.int64(-1)
    # concatenation: binary search on the first component, then scan back while the prefix max of the
    # first component's upper bound still reaches the key
    w0 = prog[so + S_W0]
    a = lo_i
    b = hi_i
    while a < b:
        mid = (a + b) >> 1
        if _cmp_lo(prog, elo + mid * E_N, key, ko, w0) >= 0:
            a = mid + 1
        else:
            b = mid
    k = a - 1
    while k >= lo_i:
        eo = elo + k * E_N
        below = False
        for j in range(w0):
            if prog[eo + E_PMAX + j] < key[ko + j]:
                below = True
                break
            if prog[eo + E_PMAX + j] > key[ko + j]:
                break
        if below:
            break
        if _comp_in(prog, so, eo, key, ko):
            return k
        k -= 1
    return np.int64(-1)


@kernel
def set_lookup(cra, s, ctx):
    """Index of the element of set s containing the packet's key, or -1 (Python/test helper; the walk
    uses _set_lookup with the RuleState scratch)."""
    key = np.zeros(8, np.int64)
    return _set_lookup(cra.prog, s, ctx, key, 0)


@kernel
def _ix_range(prog, ix, has_ports, dport, r):
    """Dispatch list of the chain block at prog[ix] for the packet's destination port: (first position
    holding a rule >= r, end). Empty without ports."""
    if not has_ports or dport < 0 or dport > 65535:
        return np.int64(0), np.int64(0)
    nb = prog[ix]
    a = np.int64(0)
    b = nb
    while a < b:
        mid = (a + b) >> 1
        if prog[ix + 1 + mid] <= dport:
            a = mid + 1
        else:
            b = mid
    offs = ix + 1 + nb + a - 1
    a = prog[offs]
    b = prog[offs + 1]
    end = b
    while a < b:
        mid = (a + b) >> 1
        if prog[mid] < r:
            a = mid + 1
        else:
            b = mid
    return a, end


@kernel
def _addrtype_match(prog, ctx, f, mask, limsel):
    fam = np.int64(4) if ctx[_F_NFPROTO] == 2 else np.int64(6)
    lim = np.int64(-1)
    if limsel == 1:
        lim = ctx[_F_IIF]
    elif limsel == 2:
        lim = ctx[_F_OIF]
    bits = addr_type_at(prog, prog[H_HOST], fam, ctx[f], ctx[f + 1], lim)
    if fam == 4:
        return (bits & mask) != 0
    r = True  # match_type6
    if (mask & 32) != 0 and (bits & 32) == 0:
        r = False
    if (mask & 2) != 0 and (bits & 2) == 0:
        r = False
    if (mask & 1) != 0 and (bits & 1) == 0:
        r = False
    if r and (mask & (4 | 16 | 128)) != 0:
        r = (mask & bits & (4 | 16 | 128)) != 0
    return r


@kernel
def bc_col(cra, k, col):
    """Column col (BC_*) of base chain k (for pipeline kernels)."""
    p = cra.prog
    return p[p[H_BC] + k * BC_N + col]


@kernel
def nat_col(cra, nr, col):
    """Column col (NA_*) of NAT row nr (for pipeline kernels)."""
    p = cra.prog
    return p[p[H_NAT] + nr * NA_N + col]


@kernel
def hook_range(cra, hook):
    """(first, end) base-chain indexes of codes.Hook hook (for pipeline kernels)."""
    p = cra.prog
    return p[H_HOOK_START + hook], p[H_HOOK_END + hook]


@inline_kernel
def eval_chain(cra, st, bc, ctx, pkt_len, now_ns, out, trace):
    """Walk base chain bc for one packet; see the module docstring."""
    out[OUT_RULE] = -1
    out[OUT_REJECT] = 0
    out[OUT_NAT] = -1
    out[OUT_QUEUE_NUM] = 0
    out[OUT_QUEUE_BYPASS] = 0
    prog = cra.prog
    bo = prog[H_BC] + bc * BC_N
    bf = prog[bo + BC_FAMILY]
    pf = np.int64(4) if ctx[_F_NFPROTO] == 2 else np.int64(6)
    if bf != 0 and bf != pf:
        return np.int64(V_ACCEPT)
    RU = prog[H_RU]
    EX = prog[H_EX]
    mem = st.mem
    cnt = st.cnt
    tracing = trace.shape[0] > 1
    has_ports = (ctx[_F_PRESENT] & _P_PORTS) != 0
    dport = ctx[_F_DPORT]
    cho = prog[H_CH_OFF]
    chain = prog[bo + BC_CHAIN]
    r = prog[cho + CH_W * chain + CH_START]
    cend = prog[cho + CH_W * chain + CH_END]
    ix = prog[cho + CH_W * chain + CH_IX]
    lp = np.int64(0)
    lend = np.int64(0)
    if ix >= 0:
        lp, lend = _ix_range(prog, ix, has_ports, dport, r)
    sp = 0
    depth = mem[M_DEPTH]
    while True:
        if ix >= 0 and r < cend:
            # next candidate: the next wildcard rule or the next rule of the port's list, whichever first
            nw = prog[RU + r * R_N + R_NEXTW]
            while lp < lend and prog[lp] < r:
                lp += 1
            if lp < lend and prog[lp] < nw:
                r = prog[lp]
            else:
                r = nw
        if r >= cend:
            # end of chain: implicit return (user chain) or policy (base chain / empty stack)
            if sp == 0:
                break
            if tracing:
                _trace(trace, cend - 1, TR_RETURN_IMPLICIT, chain)
            sp -= 1
            chain = mem[M_STACK + 2 * sp]
            r = mem[M_STACK + 2 * sp + 1]
            cend = prog[cho + CH_W * chain + CH_END]
            ix = prog[cho + CH_W * chain + CH_IX]
            if ix >= 0:
                lp, lend = _ix_range(prog, ix, has_ports, dport, r)
            continue
        e = prog[RU + r * R_N + R_ES]
        ee = prog[RU + r * R_N + R_EE]
        broke = False
        vcode = np.int64(NO_VERDICT)
        vchain = np.int64(-1)
        vq = np.int64(0)
        vb = np.int64(0)
        while e < ee:
            x = EX + e * X_N
            op = prog[x + X_OP]
            if op < OP_FIRST_STMT:
                pres = prog[x + X_PRES]
                if pres != 0 and (ctx[_F_PRESENT] & pres) == 0:
                    broke = True
                    break
                f = prog[x + X_FIELD]
                if op == OP_MASKED_EQ:
                    m = (ctx[f] & prog[x + X_A0]) == prog[x + X_A1]
                elif op == OP_MASKED_ANY:
                    m = (ctx[f] & prog[x + X_A0]) != 0
                elif op == OP_FIELD_IN or op == OP_IFACE or op == OP_ADDR_IN or op == OP_SET:
                    fast = prog[x + X_FAST]
                    if fast == FAST_RANGE1:
                        k0 = ctx[f] ^ _MIN64
                        m = prog[x + X_LO] <= k0 and k0 <= prog[x + X_HI]
                    elif fast == FAST_RANGE2:
                        k0 = ctx[f] ^ _MIN64
                        k1 = ctx[f + 1] ^ _MIN64
                        m = (k0 > prog[x + X_LO] or (k0 == prog[x + X_LO] and k1 >= prog[x + X_LO2])) and \
                            (k0 < prog[x + X_HI] or (k0 == prog[x + X_HI] and k1 <= prog[x + X_HI2]))
                    elif fast == FAST_EMPTY:
                        m = False
                    else:
                        m = _set_lookup(prog, prog[x + X_SET], ctx, mem, M_KEY) >= 0
                elif op == OP_ADDR_MASKED:
                    m = (ctx[f] & prog[x + X_A0]) == prog[x + X_A2] and \
                        (ctx[f + 1] & prog[x + X_A1]) == prog[x + X_A3]
                elif op == OP_ADDRTYPE:
                    m = _addrtype_match(prog, ctx, f, prog[x + X_A0], prog[x + X_A1])
                elif op == OP_STATEFUL:
                    m = stateful_match(prog, st, prog[x + X_A0], ctx, pkt_len, now_ns)
                    if mem[M_HOTDROP] != 0:  # ipt_do_table: acpar.hotdrop -> NF_DROP, rule not counted
                        mem[M_HOTDROP] = 0
                        mem[M_HOTDROPS] += 1
                        out[OUT_RULE] = r
                        if tracing:
                            _trace(trace, r, TR_HOTDROP, prog[x + X_A0])
                        return np.int64(V_DROP)
                elif op == OP_NOOP:
                    e += 1
                    continue
                else:  # OP_NEVER and unknown ops: no match, negated or not
                    broke = True
                    break
                if m == (prog[x + X_NEG] != 0):
                    broke = True
                    break
            elif op == OP_VERDICT:
                vcode = prog[x + X_A0]
                vchain = prog[x + X_A1]
                vq = prog[x + X_A2]
                vb = prog[x + X_A3]
                break
            elif op == OP_VMAP:
                if prog[x + X_PRES] != 0 and (ctx[_F_PRESENT] & prog[x + X_PRES]) == 0:
                    broke = True
                    break
                k = _set_lookup(prog, prog[x + X_SET], ctx, mem, M_KEY)
                if k < 0:
                    broke = True
                    break
                eo = prog[H_EL] + k * E_N
                if prog[eo + E_VCODE] == NO_VERDICT:
                    broke = True
                    break
                vcode = prog[eo + E_VCODE]
                vchain = prog[eo + E_VCHAIN]
                vq = prog[eo + E_VQNUM]
                vb = prog[eo + E_VBYPASS]
                break
            elif op == OP_REJECT:
                out[OUT_REJECT] = prog[x + X_A0]
                vcode = np.int64(V_DROP)
                if tracing:
                    _trace(trace, r, TR_REJECT, prog[x + X_A0])
                break
            elif op == OP_NAT:
                out[OUT_NAT] = prog[x + X_A0]
                vcode = np.int64(V_ACCEPT)
                if tracing:
                    _trace(trace, r, TR_NAT, prog[x + X_A0])
                break
            elif op == OP_MARK:
                dest = _F_MARK if prog[x + X_A0] == 0 else _F_CT_MARK
                if dest == _F_MARK or (ctx[_F_PRESENT] & 8) != 0:  # ct mark: no-op without ct
                    src = prog[x + X_A3]
                    if src == 0:
                        v = prog[x + X_A2]
                    elif src == 1:
                        v = ctx[_F_MARK] & prog[x + X_A4]
                    else:
                        v = ctx[_F_CT_MARK] & prog[x + X_A4]
                    old = ctx[dest]
                    nv = (((old & prog[x + X_A1]) ^ v) | prog[x + X_A5]) & 0xFFFFFFFF
                    ctx[dest] = nv
                    if dest == _F_MARK and nv != old:
                        out[OUT_MARK_CHANGED] = 1
                    if tracing:
                        _trace(trace, r, TR_MARK, nv)
            elif op == OP_CTSET:
                if prog[x + X_A0] != 0:
                    out[OUT_CT_NOTRACK] = 1
                if prog[x + X_A1] >= 0:
                    out[OUT_CT_HELPER] = prog[x + X_A1]
                if prog[x + X_A2] >= 0:
                    out[OUT_CT_ZONE] = prog[x + X_A2]
                if tracing:
                    _trace(trace, r, TR_CTSET, prog[x + X_A0])
            elif op == OP_LOG:
                if tracing:
                    _trace(trace, r, TR_LOG, prog[x + X_A0])
            elif op == OP_NFLOG:
                if tracing:
                    _trace(trace, r, TR_NFLOG, prog[x + X_A0])
            elif op == OP_NOOP_STMT:
                if tracing:
                    _trace(trace, r, TR_NOOP, prog[x + X_A0])
            elif op == OP_COUNTER:
                pass
            e += 1
        if broke:
            r += 1
            continue
        cnt[0, r] += 1
        cnt[1, r] += pkt_len
        if vcode == NO_VERDICT or vcode == V_CONTINUE:
            if tracing:
                _trace(trace, r, TR_MATCH, 0)
            r += 1
            continue
        if tracing:
            _trace(trace, r, vcode, vchain)
        if vcode == V_ACCEPT:
            out[OUT_RULE] = r
            out[OUT_LAST_ACCEPT_RULE] = r
            return np.int64(V_ACCEPT)
        if vcode == V_DROP:
            out[OUT_RULE] = r
            return np.int64(V_DROP)
        if vcode == V_QUEUE:
            out[OUT_RULE] = r
            out[OUT_QUEUE_NUM] = vq
            out[OUT_QUEUE_BYPASS] = vb
            return np.int64(V_QUEUE)
        if vcode == V_RETURN:
            if sp == 0:
                break
            sp -= 1
            chain = mem[M_STACK + 2 * sp]
            r = mem[M_STACK + 2 * sp + 1]
        elif vcode == V_JUMP:
            if sp >= depth:  # cannot happen for a checked ruleset; the kernel drops
                out[OUT_RULE] = r
                return np.int64(V_DROP)
            mem[M_STACK + 2 * sp] = chain
            mem[M_STACK + 2 * sp + 1] = r + 1
            sp += 1
            chain = vchain
            r = prog[cho + CH_W * chain + CH_START]
        elif vcode == V_GOTO:
            chain = vchain
            r = prog[cho + CH_W * chain + CH_START]
        else:
            r += 1  # unknown code: treat as continue
            continue
        cend = prog[cho + CH_W * chain + CH_END]
        ix = prog[cho + CH_W * chain + CH_IX]
        if ix >= 0:
            lp, lend = _ix_range(prog, ix, has_ports, dport, r)
    # policy of the base chain
    pr = prog[bo + BC_POLICY_RULE]
    cnt[0, pr] += 1
    cnt[1, pr] += pkt_len
    out[OUT_RULE] = pr
    pv = prog[bo + BC_POLICY_VERDICT]
    if tracing:
        _trace(trace, pr, TR_POLICY, pv)
    if pv == V_ACCEPT:
        out[OUT_LAST_ACCEPT_RULE] = pr
    return pv

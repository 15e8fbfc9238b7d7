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
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._jit import kernel
from .host import addr_type
from .rules.compile import (
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
    OP_NEVER,
    OP_NFLOG,
    OP_NOOP,
    OP_NOOP_STMT,
    OP_REJECT,
    OP_SET,
    OP_STATEFUL,
    OP_VERDICT,
    OP_VMAP,
    SET_SORTED,
)
from .stateful import new_stateful_state, stateful_match

__all__ = ["RuleState", "new_rule_state", "eval_chain", "new_out", "new_trace", "reset_packet", "set_lookup",
           "OUT_RULE", "OUT_REJECT", "OUT_NAT", "OUT_QUEUE_NUM", "OUT_QUEUE_BYPASS", "OUT_CT_NOTRACK",
           "OUT_CT_ZONE", "OUT_CT_HELPER", "OUT_LAST_ACCEPT_RULE", "OUT_MARK_CHANGED", "N_OUT",
           "TR_MATCH", "TR_LOG", "TR_NFLOG", "TR_NOOP", "TR_POLICY", "TR_REJECT", "TR_NAT", "TR_MARK",
           "TR_CTSET", "TR_RETURN_IMPLICIT", "TR_HOTDROP"]

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


class RuleState(NamedTuple):
    rule_packets: np.ndarray  # int64[n_rules]
    rule_bytes: np.ndarray  # int64[n_rules]
    stack_chain: np.ndarray  # jump stack (scratch)
    stack_rule: np.ndarray
    sf: np.ndarray  # int64[n_sf, 8] per-stateful-match state (stateful.py)
    rng: np.ndarray  # int64[3]: PRNG state, draws so far, seed
    rc_addr: np.ndarray  # recent tables: int64[T, 100, 2] address words
    rc_meta: np.ndarray  # int64[T, 100, 6]: used, family, ttl, nstamps, index, lru sequence
    rc_stamps: np.ndarray  # int64[T, 100, RING] jiffies
    rc_tab: np.ndarray  # int64[T, 4]: entries, lru counter, ring mask
    hl_key: np.ndarray  # hashlimit entries (open addressing, all tables): int64[slots, 6] key words, used
    hl_val: np.ndarray  # int64[slots, 5]: credit | current_rate, credit_cap, prev, expires (jiffies), prev_window
    hl_tab: np.ndarray  # int64[T, 8] per hashlimit table: count, gc anchor, base, capacity, last jiffies,
    #                     last gc sweep, hotdrops (max reached), model-capacity overflows
    cl_key: np.ndarray  # connlimit keys: int64[C * KEYS, 8]: used, addr hi, lo, zone, head, tail, count, last_gc
    cl_ent: np.ndarray  # remembered connections: int64[C * POOL, 14] (stateful.py)
    cl_tab: np.ndarray  # int64[C, 6]: free head, pool base, key base, pool cap, key cap, overflows
    ct_live: np.ndarray  # conntrack view for connlimit (int64[1, 3] = not provided; see stateful.py)
    hotdrop: np.ndarray  # int64[2]: [0] set by a match that drops the packet (xt hotdrop)


def new_rule_state(crs, seed: int | None = None) -> RuleState:
    """Fresh counters and stateful-match state for a compiled ruleset (seed: PRNG seed for statistic
    random / numgen random; default the one given to compile_ruleset)."""
    a = crs.arrays
    n = a.n_rules
    depth = max(1, a.max_depth + 1)
    sf = new_stateful_state(a, crs.seed if seed is None else seed)
    return RuleState(np.zeros(n, np.int64), np.zeros(n, np.int64), np.zeros(depth, np.int64),
                     np.zeros(depth, np.int64), **sf)


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
def _key_word(ctx, cra, s, w):
    """Word w of set s's key, flipped (x ^ 1<<63) for unsigned order."""
    k = 0
    for fi in range(cra.set_nf[s]):
        f = cra.set_fields[s, fi]
        if f == 0 or f == 2 or f == 24 or f == 26 or f == 28 or f == 30:  # ADDRESS_FIELDS: 2 words
            if k == w:
                return ctx[f] ^ _MIN64
            if k + 1 == w:
                return ctx[f + 1] ^ _MIN64
            k += 2
        else:
            if k == w:
                return ctx[f] ^ _MIN64
            k += 1
    return np.int64(0)


@kernel
def _cmp_lo(cra, key, k, nw):
    """-1/0/1: key (nw words) vs el_lo[k] lexicographically."""
    for w in range(nw):
        a = key[w]
        b = cra.el_lo[k, w]
        if a < b:
            return -1
        if a > b:
            return 1
    return 0


@kernel
def _le_hi(cra, key, k, nw):
    """key <= el_hi[k] lexicographically."""
    for w in range(nw):
        a = key[w]
        b = cra.el_hi[k, w]
        if a < b:
            return True
        if a > b:
            return False
    return True


@kernel
def _comp_in(cra, key, k, nf, s):
    """Every component of key lies in element k's component interval."""
    w = 0
    for fi in range(nf):
        f = cra.set_fields[s, fi]
        nw = 2 if (f == 0 or f == 2 or f == 24 or f == 26 or f == 28 or f == 30) else 1
        # lo <= key component
        ok_lo = True
        for j in range(nw):
            a = key[w + j]
            b = cra.el_lo[k, w + j]
            if a > b:
                break
            if a < b:
                ok_lo = False
                break
        if not ok_lo:
            return False
        ok_hi = True
        for j in range(nw):
            a = key[w + j]
            b = cra.el_hi[k, w + j]
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
def set_lookup(cra, s, ctx):
    """Index of the element of set s containing the packet's key, or -1."""
    key = np.zeros(8, np.int64)
    nw = cra.set_nw[s]
    for w in range(nw):
        key[w] = _key_word(ctx, cra, s, w)
    lo_i = cra.set_start[s]
    hi_i = cra.set_end[s]
    if lo_i >= hi_i:
        return np.int64(-1)
    if cra.set_kind[s] == SET_SORTED:
        # last element with el_lo <= key
        a = lo_i
        b = hi_i
        while a < b:
            mid = (a + b) >> 1
            if _cmp_lo(cra, key, mid, nw) >= 0:
                a = mid + 1
            else:
                b = mid
        k = a - 1
        if k >= lo_i and _le_hi(cra, key, k, nw):
            return k
        return np.int64(-1)
    # concatenation: binary search on the first component, then scan back while the prefix max of the
    # first component's upper bound still reaches the key
    w0 = cra.set_w0[s]
    a = lo_i
    b = hi_i
    while a < b:
        mid = (a + b) >> 1
        if _cmp_lo(cra, key, mid, w0) >= 0:
            a = mid + 1
        else:
            b = mid
    k = a - 1
    nf = cra.set_nf[s]
    while k >= lo_i:
        # stop when pmax[k] < key[:w0]
        below = False
        for j in range(w0):
            if cra.el_pmax[k, j] < key[j]:
                below = True
                break
            if cra.el_pmax[k, j] > key[j]:
                break
        if below:
            break
        if _comp_in(cra, key, k, nf, s):
            return k
        k -= 1
    return np.int64(-1)


@kernel
def _match(cra, st, e, ctx, pkt_len, now_ns):
    op = cra.ex_op[e]
    pres = cra.ex_pres[e]
    if pres != 0 and (ctx[_F_PRESENT] & pres) == 0:
        return False
    neg = cra.ex_neg[e] != 0
    f = cra.ex_field[e]
    if op == OP_FIELD_IN or op == OP_IFACE or op == OP_ADDR_IN or op == OP_SET:
        r = set_lookup(cra, cra.ex_set[e], ctx) >= 0
    elif op == OP_MASKED_EQ:
        r = (ctx[f] & cra.ex_a0[e]) == cra.ex_a1[e]
    elif op == OP_MASKED_ANY:
        r = (ctx[f] & cra.ex_a0[e]) != 0
    elif op == OP_ADDR_MASKED:
        r = (ctx[f] & cra.ex_a0[e]) == cra.ex_a2[e] and (ctx[f + 1] & cra.ex_a1[e]) == cra.ex_a3[e]
    elif op == OP_ADDRTYPE:
        fam = np.int64(4) if ctx[_F_NFPROTO] == 2 else np.int64(6)
        lim = np.int64(-1)
        if cra.ex_a1[e] == 1:
            lim = ctx[_F_IIF]
        elif cra.ex_a1[e] == 2:
            lim = ctx[_F_OIF]
        bits = _addr_type_ctx(cra, fam, ctx[f], ctx[f + 1], lim)
        mask = cra.ex_a0[e]
        if fam == 4:
            r = (bits & mask) != 0
        else:  # match_type6
            r = True
            if (mask & 32) != 0 and (bits & 32) == 0:
                r = False
            if (mask & 2) != 0 and (bits & 2) == 0:
                r = False
            if (mask & 1) != 0 and (bits & 1) == 0:
                r = False
            if r and (mask & (4 | 16 | 128)) != 0:
                r = (mask & bits & (4 | 16 | 128)) != 0
    elif op == OP_STATEFUL:
        r = stateful_match(cra, st, cra.ex_a0[e], ctx, pkt_len, now_ns)
        if st.hotdrop[0] != 0:
            return False
    elif op == OP_NEVER:
        return False
    elif op == OP_NOOP:
        return True
    else:
        return False
    return r != neg


@kernel
def _addr_type_ctx(cra, fam, hi, lo, lim):
    return addr_type(cra.host, fam, hi, lo, lim)


@kernel
def _count(st, r, pkt_len):
    st.rule_packets[r] += 1
    st.rule_bytes[r] += pkt_len


@kernel
def eval_chain(cra, st, bc, ctx, pkt_len, now_ns, out, trace):
    """Walk base chain bc for one packet; see the module docstring."""
    out[OUT_RULE] = -1
    out[OUT_REJECT] = 0
    out[OUT_NAT] = -1
    out[OUT_QUEUE_NUM] = 0
    out[OUT_QUEUE_BYPASS] = 0
    bf = cra.bc_family[bc]
    pf = np.int64(4) if ctx[_F_NFPROTO] == 2 else np.int64(6)
    if bf != 0 and bf != pf:
        return np.int64(V_ACCEPT)
    tracing = trace.shape[0] > 1
    chain = cra.bc_chain[bc]
    r = cra.chain_rule_start[chain]
    sp = 0
    depth = st.stack_chain.shape[0]
    while True:
        if r >= cra.chain_rule_end[chain]:
            # end of chain: implicit return (user chain) or policy (base chain / empty stack)
            if sp == 0:
                break
            if tracing:
                _trace(trace, r - 1, TR_RETURN_IMPLICIT, chain)
            sp -= 1
            chain = st.stack_chain[sp]
            r = st.stack_rule[sp]
            continue
        e = cra.rule_expr_start[r]
        ee = cra.rule_expr_end[r]
        broke = False
        vcode = np.int64(NO_VERDICT)
        vchain = np.int64(-1)
        vq = np.int64(0)
        vb = np.int64(0)
        while e < ee:
            op = cra.ex_op[e]
            if op < OP_FIRST_STMT:
                if not _match(cra, st, e, ctx, pkt_len, now_ns):
                    if st.hotdrop[0] != 0:  # ipt_do_table: acpar.hotdrop -> NF_DROP, rule not counted
                        st.hotdrop[0] = 0
                        st.hotdrop[1] += 1
                        out[OUT_RULE] = r
                        if tracing:
                            _trace(trace, r, TR_HOTDROP, cra.ex_a0[e])
                        return np.int64(V_DROP)
                    broke = True
                    break
            elif op == OP_VERDICT:
                vcode = cra.ex_a0[e]
                vchain = cra.ex_a1[e]
                vq = cra.ex_a2[e]
                vb = cra.ex_a3[e]
                break
            elif op == OP_VMAP:
                if cra.ex_pres[e] != 0 and (ctx[_F_PRESENT] & cra.ex_pres[e]) == 0:
                    broke = True
                    break
                k = set_lookup(cra, cra.ex_set[e], ctx)
                if k < 0 or cra.el_vcode[k] == NO_VERDICT:
                    broke = True
                    break
                vcode = cra.el_vcode[k]
                vchain = cra.el_vchain[k]
                vq = cra.el_vqnum[k]
                vb = cra.el_vbypass[k]
                break
            elif op == OP_REJECT:
                out[OUT_REJECT] = cra.ex_a0[e]
                vcode = np.int64(V_DROP)
                if tracing:
                    _trace(trace, r, TR_REJECT, cra.ex_a0[e])
                break
            elif op == OP_NAT:
                out[OUT_NAT] = cra.ex_a0[e]
                vcode = np.int64(V_ACCEPT)
                if tracing:
                    _trace(trace, r, TR_NAT, cra.ex_a0[e])
                break
            elif op == OP_MARK:
                dest = _F_MARK if cra.ex_a0[e] == 0 else _F_CT_MARK
                if dest == _F_MARK or (ctx[_F_PRESENT] & 8) != 0:  # ct mark: no-op without ct
                    src = cra.ex_a3[e]
                    if src == 0:
                        v = cra.ex_a2[e]
                    elif src == 1:
                        v = ctx[_F_MARK] & cra.ex_a4[e]
                    else:
                        v = ctx[_F_CT_MARK] & cra.ex_a4[e]
                    old = ctx[dest]
                    nv = (((old & cra.ex_a1[e]) ^ v) | cra.ex_a5[e]) & 0xFFFFFFFF
                    ctx[dest] = nv
                    if dest == _F_MARK and nv != old:
                        out[OUT_MARK_CHANGED] = 1
                    if tracing:
                        _trace(trace, r, TR_MARK, nv)
            elif op == OP_CTSET:
                if cra.ex_a0[e] != 0:
                    out[OUT_CT_NOTRACK] = 1
                if cra.ex_a1[e] >= 0:
                    out[OUT_CT_HELPER] = cra.ex_a1[e]
                if cra.ex_a2[e] >= 0:
                    out[OUT_CT_ZONE] = cra.ex_a2[e]
                if tracing:
                    _trace(trace, r, TR_CTSET, cra.ex_a0[e])
            elif op == OP_LOG:
                if tracing:
                    _trace(trace, r, TR_LOG, cra.ex_a0[e])
            elif op == OP_NFLOG:
                if tracing:
                    _trace(trace, r, TR_NFLOG, cra.ex_a0[e])
            elif op == OP_NOOP_STMT:
                if tracing:
                    _trace(trace, r, TR_NOOP, cra.ex_a0[e])
            elif op == OP_COUNTER:
                pass
            e += 1
        if broke:
            r += 1
            continue
        _count(st, r, pkt_len)
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
            chain = st.stack_chain[sp]
            r = st.stack_rule[sp]
            continue
        if vcode == V_JUMP:
            if sp >= depth:  # cannot happen for a checked ruleset; the kernel drops
                out[OUT_RULE] = r
                return np.int64(V_DROP)
            st.stack_chain[sp] = chain
            st.stack_rule[sp] = r + 1
            sp += 1
            chain = vchain
            r = cra.chain_rule_start[chain]
            continue
        if vcode == V_GOTO:
            chain = vchain
            r = cra.chain_rule_start[chain]
            continue
        r += 1  # unknown code: treat as continue
    # policy of the base chain
    pr = cra.bc_policy_rule[bc]
    _count(st, pr, pkt_len)
    out[OUT_RULE] = pr
    pv = cra.bc_policy_verdict[bc]
    if tracing:
        _trace(trace, pr, TR_POLICY, pv)
    if pv == V_ACCEPT:
        out[OUT_LAST_ACCEPT_RULE] = pr
    return pv

"""Ruleset model -> flat arrays for the fixed evaluator kernels in nfreplay.replay.chains.

No code is generated per ruleset: `compile_ruleset()` lowers a `model.Ruleset` to `CompiledArrays`, a
NamedTuple holding ONE int64 array `prog` that `chains.eval_chain` walks. Each NamedTuple field costs a
reference-count pair (two NRT calls) per non-inlined call, which dominated the per-packet cost when the
ruleset was ~60 arrays; so everything is one array, indexed flat with the constants below, e.g.
prog[prog[H_EX] + e * X_N + X_OP]. The 2-D views (`.ex`, `.bc`, `.sets`, `.el`, `.nat`, `.sf`, `.lt`,
`.ru`, `.hdr`, `.host`) and the old per-column names (`ex_op`, `bc_family`, `nat_kind`, `sf_p`, `max_depth`, ...)
are read-only Python properties.

Layout of prog (row sections: rows = items, so one item's columns share a cache line)
------
header (H_FIXED words) = `.hdr`: H_N_RULES, H_MAX_DEPTH (jump stack size needed), H_HZ (CONFIG_HZ), H_RC_TABLES, H_N_BC,
    H_N_CHAINS, H_N_SF, H_CH_OFF (offset of the chain table), section offsets H_BC, H_RU, H_EX, H_SETS,
    H_EL, H_NAT, H_SF, H_HOST and row counts H_N_EXPR, H_N_SETS, H_N_EL, H_N_NAT, H_SF_ROWS,
    hook_bc_start[5] at H_HOOK_START and
    hook_bc_end[5] at H_HOOK_END (base-chain index ranges per codes.Hook); then the chain table (CH_W
    words per chain id: CH_START, CH_END = rule-id range, the policy row of a base chain is the id right
    after its range so it is never walked as a rule; CH_IX = offset of the chain's dispatch block or -1);
    then the row sections below, then the dispatch blocks (see `_Compiler.dispatch_block`).
bc[n_bc, BC_N]: BC_HOOK, BC_PRIO, BC_FAMILY (4, 6, 0 = both: inet), BC_TYPE (BC_FILTER, BC_NAT, BC_ROUTE),
    BC_CHAIN (chain id), BC_POLICY_VERDICT (codes.Verdict), BC_POLICY_RULE, BC_TABLE. Sorted by (hook, slot,
    priority, registration order; equal priorities: later registration first, as nf_hook_entries_grow
    inserts); nat-type chains sit at the NAT core's slot (-100 PRE/OUT, +100 IN/POST) whatever their priority.
ru[n_rules, R_N]: R_ES, R_EE (expression rows; rule ids are dense 0..n_rules-1), R_NEXTW (dispatch: the
    first wildcard rule >= this one in its chain).
ex[n_expr, X_N]: X_OP (OP_*), X_NEG, X_FIELD, X_PRES (presence bit ctx[Field.PRESENT] must have; 0 = none;
    checked before the test so an absent header fails negated or not), X_A0..X_A5, X_SET, and the inline
    set test X_FAST (FAST_RANGE1/FAST_RANGE2: a single interval of one/two words in X_LO, X_LO2, X_HI, X_HI2,
    flipped like the elements; FAST_EMPTY; FAST_NONE = look the set up).
sets[n_sets, S_N] (interval sets: FIELD_IN, ADDR_IN, interfaces, named sets, maps; CSR over el):
    S_START/S_END (elements), S_NW (words per key), S_KIND (SET_SORTED: single component, disjoint sorted
    intervals, binary search; SET_CONCAT: several components, sorted by the first component with a prefix
    maximum of its upper bound, binary search then a short backward scan), S_NF and S_FIELDS.. (the ctx
    fields forming the key, -1 padded; address fields take 2 words), S_W0 (words of the first component).
el[n_el, E_N]: E_LO.. / E_HI.. (MAX_WORDS bounds each, every word XOR 1<<63 so that signed int64
    comparison is unsigned order), E_PMAX (prefix max of the first component's hi, 2 words), E_VCODE,
    E_VCHAIN, E_VQNUM, E_VBYPASS (verdict-map data; NO_VERDICT = none).
nat[n_nat, NA_N]: NA_KIND (NAT_*), NA_FAMILY, NA_ADDR_LO_HI/_LO_LO/_HI_HI/_HI_LO (range, int64 bit
    patterns), NA_HAS_ADDR, NA_PORT_LO, NA_PORT_HI, NA_FLAGS (NATF_*), NA_RULE, NA_MASK_HI/_LO (NETMAP mask).
sf[max(n_sf, 1), SF_N]: stateful parameters (stateful.NP words, see stateful.py), kind in SF_KIND_COL;
    recent tables: H_RC_TABLES; hashlimit tables are numbered in the parameters (one per --hashlimit-name
    and family, config of the first rule).
host block at H_HOST: the host model's HostArrays.prog (its local table serves addrtype).

Expression ops: see OP_* below. Match ops come before OP_FIRST_STMT; statements after.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from ...errors import NfreplayError, UnsupportedRuleError
from ..codes import ADDRESS_FIELDS, FIELD_GROUP, Field, Hook, Verdict
from . import model as m

log = logging.getLogger(__name__)

__all__ = ["compile_ruleset", "CompiledRuleset", "CompiledArrays", "RulesetError", "REJECT_KINDS", "NAT_KINDS"]


class RulesetError(NfreplayError, ValueError):
    """The ruleset is structurally invalid (jump to an unknown chain, a jump loop, too deep)."""


# ---- expression ops (match ops < OP_FIRST_STMT)
OP_NOOP = 0
OP_FIELD_IN = 1  # ctx[field] in interval set ex_set (1 word)
OP_ADDR_IN = 2  # 128-bit ctx[field], ctx[field+1] in interval set ex_set
OP_MASKED_EQ = 3  # (ctx[field] & a0) == a1
OP_MASKED_ANY = 4  # (ctx[field] & a0) != 0
OP_ADDR_MASKED = 5  # (hi & a0) == a2 and (lo & a1) == a3
OP_IFACE = 6  # ctx[field] (iface index, -1 none) in interval set ex_set; never presence-gated
OP_SET = 7  # concatenation of set fields in set ex_set
OP_ADDRTYPE = 8  # field SRC/DST; a0 type mask; a1 limit iface (0 none, 1 in, 2 out)
OP_STATEFUL = 9  # a0 = stateful index
OP_NEVER = 10
OP_FIRST_STMT = 20
OP_VERDICT = 20  # a0 codes.Verdict value, a1 chain id (jump/goto), a2 queue num, a3 bypass
OP_REJECT = 21  # a0 REJECT_KINDS index
OP_LOG = 22  # a0 log index (CompiledRuleset.logs)
OP_NFLOG = 23  # a0 log index
OP_MARK = 24  # a0 dest (0 mark, 1 ctmark), a1 and, a2 xor, a3 src (0 const, 1 mark, 2 ctmark), a4 src mask, a5 or
OP_CTSET = 25  # a0 notrack, a1 helper id (-1 none), a2 zone (-1 none)
OP_NAT = 26  # a0 nat row
OP_COUNTER = 27
OP_VMAP = 28  # ex_set = map set id
OP_NOOP_STMT = 29  # a0 index into CompiledRuleset.noops

BC_FILTER, BC_NAT, BC_ROUTE = 0, 1, 2
SET_SORTED, SET_CONCAT = 0, 1
MAX_WORDS = 8
MAX_FIELDS = 6
NO_VERDICT = -100

NAT_KINDS = ("", "snat", "dnat", "masquerade", "redirect", "netmap")
NATF_RANDOM, NATF_RANDOM_FULLY, NATF_PERSISTENT, NATF_PROTO_SPECIFIED, NATF_MAP_IPS = 1, 2, 4, 8, 16

REJECT_KINDS = ("", "icmp-port-unreachable", "icmp-net-unreachable", "icmp-host-unreachable",
                "icmp-proto-unreachable", "icmp-net-prohibited", "icmp-host-prohibited", "icmp-admin-prohibited",
                "tcp-reset", "icmp6-no-route", "icmp6-adm-prohibited", "icmp6-addr-unreachable",
                "icmp6-port-unreachable", "icmpx-port-unreachable", "icmpx-admin-prohibited",
                "icmpx-no-route", "icmpx-host-unreachable", "icmp6-policy-fail", "icmp6-reject-route",
                "icmp6-beyond-scope")
_REJECT_ALIASES = {"net-unreach": "icmp-net-unreachable", "host-unreach": "icmp-host-unreachable",
                   "proto-unreach": "icmp-proto-unreachable", "port-unreach": "icmp-port-unreachable",
                   "net-prohib": "icmp-net-prohibited", "host-prohib": "icmp-host-prohibited",
                   "admin-prohib": "icmp-admin-prohibited", "tcp-rst": "tcp-reset",
                   "no-route": "icmp6-no-route", "adm-prohibited": "icmp6-adm-prohibited",
                   "addr-unreach": "icmp6-addr-unreachable", "port-unreachable": "icmp6-port-unreachable",
                   "icmp6-adm-prohib": "icmp6-adm-prohibited"}

HELPERS = {"ftp": 1}
HOOKS = {"prerouting": Hook.PREROUTING, "input": Hook.INPUT, "forward": Hook.FORWARD, "output": Hook.OUTPUT,
         "postrouting": Hook.POSTROUTING}
_VERDICT_CODES = {"accept": Verdict.ACCEPT, "drop": Verdict.DROP, "queue": Verdict.QUEUE,
                  "continue": Verdict.CONTINUE, "return": Verdict.RETURN, "jump": Verdict.JUMP,
                  "goto": Verdict.GOTO}
_FAMILY = {"ip": 4, "ip6": 6, "inet": 0}
_SIGN = 1 << 63
_M64 = (1 << 64) - 1
_M128 = (1 << 128) - 1


def _s64(v: int) -> int:
    v &= _M64
    return v - (1 << 64) if v >= _SIGN else v


def _flip(v: int) -> int:
    """uint64 word -> int64 whose signed order is the word's unsigned order."""
    return _s64((v & _M64) ^ _SIGN)


def _nwords(f) -> int:
    return 2 if int(f) in ADDRESS_FIELDS else 1


# ---- packed layout (see the module docstring). Column constants are the kernels' interface.
# hdr: scalars, hook ranges, the chain table (3 words per chain) and the per-chain dispatch blocks
H_N_RULES, H_MAX_DEPTH, H_HZ, H_RC_TABLES, H_N_BC, H_N_CHAINS, H_N_SF, H_CH_OFF = 0, 1, 2, 3, 4, 5, 6, 7
H_HOOK_START = 8  # 5 words (codes.Hook)
H_HOOK_END = 13  # 5 words
# offsets of the row sections in prog (rows of the given width), and their row counts
H_BC, H_RU, H_EX, H_SETS, H_EL, H_NAT, H_SF, H_HOST = 18, 19, 20, 21, 22, 23, 24, 25  # H_HOST: host.HostArrays block
H_N_EXPR, H_N_SETS, H_N_EL, H_N_NAT, H_SF_ROWS = 26, 27, 28, 29, 31
H_FIXED = 32
CH_START, CH_END, CH_IX, CH_W = 0, 1, 2, 3  # chain table entry: rule range, dispatch block offset (-1 none)
# bc[n_bc, BC_N]
BC_HOOK, BC_PRIO, BC_FAMILY, BC_TYPE, BC_CHAIN, BC_POLICY_VERDICT, BC_POLICY_RULE, BC_TABLE, BC_N = range(9)
# ru[n_rules, R_N]: expression range, next dispatch-wildcard rule (indexed chains)
R_ES, R_EE, R_NEXTW, R_N = 0, 1, 2, 4
# ex[n_expr, X_N]
X_OP, X_NEG, X_FIELD, X_PRES, X_A0, X_A1, X_A2, X_A3, X_A4, X_A5, X_SET = range(11)
X_FAST, X_LO, X_LO2, X_HI, X_HI2, X_N = 11, 12, 13, 14, 15, 16
FAST_NONE, FAST_RANGE1, FAST_RANGE2, FAST_EMPTY = 0, 1, 2, 3  # X_FAST: inline set test (flipped bounds)
# sets[n_sets, S_N]
S_START, S_END, S_NW, S_KIND, S_NF, S_W0, S_FIELDS, S_N = 0, 1, 2, 3, 4, 5, 6, 12
# el[n_el, E_N]
E_LO, E_HI, E_PMAX, E_VCODE, E_VCHAIN, E_VQNUM, E_VBYPASS, E_N = 0, 8, 16, 18, 19, 20, 21, 22
# nat[n_nat, NA_N]
(NA_KIND, NA_FAMILY, NA_ADDR_LO_HI, NA_ADDR_LO_LO, NA_ADDR_HI_HI, NA_ADDR_HI_LO, NA_HAS_ADDR, NA_PORT_LO,
 NA_PORT_HI, NA_FLAGS, NA_RULE, NA_MASK_HI, NA_MASK_LO, NA_N) = range(14)
# sf[max(n_sf, 1), SF_N]: stateful.NP parameter words, then the kind
SF_KIND_COL = 16
SF_N = 17
DISPATCH_MIN_RULES = 8  # chains with at least this many rules get a destination-port dispatch block
DISPATCH_MAX_SPAN = 32  # a rule whose ports cover more elementary intervals is treated as a wildcard
_F_DPORT = int(Field.DPORT)


def _prop(arr, idx, doc=""):
    return property(lambda self: getattr(self, arr)[idx], doc=doc)


def _host_arrays(block):
    from ..host import HostArrays

    return HostArrays(block)


def _sect(off, n, w):
    return property(lambda s: s.prog[int(s.prog[off]):int(s.prog[off]) + int(s.prog[n]) * w].reshape(-1, w))


class CompiledArrays(NamedTuple):
    """The compiled ruleset for kernels: ONE int64 array `prog` (a NamedTuple field costs a reference-count
    pair per non-inlined call, so there is one). prog = header (H_*), chain table, row sections (offsets
    in the header: bc, ru, ex, sets, el, nat, sf, host), dispatch blocks; kernels index it flat, e.g.
    prog[prog[H_EX] + e * X_N + X_OP]. The properties give 2-D views of the sections and the old
    per-column names (Python side)."""

    prog: np.ndarray

    hdr = property(lambda s: s.prog)
    bc = property(lambda s: s.prog[int(s.prog[H_BC]):int(s.prog[H_BC]) + int(s.prog[H_N_BC]) * BC_N].reshape(-1, BC_N))
    ru = property(lambda s: s.prog[int(s.prog[H_RU]):int(s.prog[H_RU]) + int(s.prog[H_N_RULES]) * R_N].reshape(-1, R_N))
    ex = _sect(H_EX, H_N_EXPR, X_N)
    sets = _sect(H_SETS, H_N_SETS, S_N)
    el = _sect(H_EL, H_N_EL, E_N)
    nat = _sect(H_NAT, H_N_NAT, NA_N)
    sf = _sect(H_SF, H_SF_ROWS, SF_N)
    host = property(lambda s: _host_arrays(s.prog[int(s.prog[H_HOST]):]))
    lt = property(lambda s: s.host.lt)
    n_rules = property(lambda s: int(s.hdr[H_N_RULES]))
    max_depth = property(lambda s: int(s.hdr[H_MAX_DEPTH]))
    hz = property(lambda s: int(s.hdr[H_HZ]))
    rc_n_tables = property(lambda s: int(s.hdr[H_RC_TABLES]))
    hook_bc_start = property(lambda s: s.hdr[H_HOOK_START:H_HOOK_START + 5])
    hook_bc_end = property(lambda s: s.hdr[H_HOOK_END:H_HOOK_END + 5])
    chain_rule_start = property(lambda s: s.hdr[int(s.hdr[H_CH_OFF]) + CH_START:
                                                int(s.hdr[H_CH_OFF]) + CH_W * int(s.hdr[H_N_CHAINS]):CH_W])
    chain_rule_end = property(lambda s: s.hdr[int(s.hdr[H_CH_OFF]) + CH_END:
                                              int(s.hdr[H_CH_OFF]) + CH_W * int(s.hdr[H_N_CHAINS]):CH_W])
    bc_hook = _prop("bc", (slice(None), BC_HOOK))
    bc_prio = _prop("bc", (slice(None), BC_PRIO))
    bc_family = _prop("bc", (slice(None), BC_FAMILY))
    bc_type = _prop("bc", (slice(None), BC_TYPE))
    bc_chain = _prop("bc", (slice(None), BC_CHAIN))
    bc_policy_verdict = _prop("bc", (slice(None), BC_POLICY_VERDICT))
    bc_policy_rule = _prop("bc", (slice(None), BC_POLICY_RULE))
    bc_table = _prop("bc", (slice(None), BC_TABLE))
    rule_expr_start = _prop("ru", (slice(None), R_ES))
    rule_expr_end = _prop("ru", (slice(None), R_EE))
    ex_op = _prop("ex", (slice(None), X_OP))
    ex_neg = _prop("ex", (slice(None), X_NEG))
    ex_field = _prop("ex", (slice(None), X_FIELD))
    ex_pres = _prop("ex", (slice(None), X_PRES))
    ex_a0 = _prop("ex", (slice(None), X_A0))
    ex_a1 = _prop("ex", (slice(None), X_A1))
    ex_a2 = _prop("ex", (slice(None), X_A2))
    ex_a3 = _prop("ex", (slice(None), X_A3))
    ex_a4 = _prop("ex", (slice(None), X_A4))
    ex_a5 = _prop("ex", (slice(None), X_A5))
    ex_set = _prop("ex", (slice(None), X_SET))
    set_start = _prop("sets", (slice(None), S_START))
    set_end = _prop("sets", (slice(None), S_END))
    set_nw = _prop("sets", (slice(None), S_NW))
    set_kind = _prop("sets", (slice(None), S_KIND))
    set_nf = _prop("sets", (slice(None), S_NF))
    set_w0 = _prop("sets", (slice(None), S_W0))
    set_fields = _prop("sets", (slice(None), slice(S_FIELDS, S_FIELDS + MAX_FIELDS)))
    el_lo = _prop("el", (slice(None), slice(E_LO, E_LO + MAX_WORDS)))
    el_hi = _prop("el", (slice(None), slice(E_HI, E_HI + MAX_WORDS)))
    el_pmax = _prop("el", (slice(None), slice(E_PMAX, E_PMAX + 2)))
    el_vcode = _prop("el", (slice(None), E_VCODE))
    el_vchain = _prop("el", (slice(None), E_VCHAIN))
    el_vqnum = _prop("el", (slice(None), E_VQNUM))
    el_vbypass = _prop("el", (slice(None), E_VBYPASS))
    nat_kind = _prop("nat", (slice(None), NA_KIND))
    nat_family = _prop("nat", (slice(None), NA_FAMILY))
    nat_addr_lo_hi = _prop("nat", (slice(None), NA_ADDR_LO_HI))
    nat_addr_lo_lo = _prop("nat", (slice(None), NA_ADDR_LO_LO))
    nat_addr_hi_hi = _prop("nat", (slice(None), NA_ADDR_HI_HI))
    nat_addr_hi_lo = _prop("nat", (slice(None), NA_ADDR_HI_LO))
    nat_has_addr = _prop("nat", (slice(None), NA_HAS_ADDR))
    nat_port_lo = _prop("nat", (slice(None), NA_PORT_LO))
    nat_port_hi = _prop("nat", (slice(None), NA_PORT_HI))
    nat_flags = _prop("nat", (slice(None), NA_FLAGS))
    nat_rule = _prop("nat", (slice(None), NA_RULE))
    nat_mask_hi = _prop("nat", (slice(None), NA_MASK_HI))
    nat_mask_lo = _prop("nat", (slice(None), NA_MASK_LO))
    sf_p = _prop("sf", (slice(None), slice(0, SF_KIND_COL)))
    sf_kind = property(lambda s: s.sf[:int(s.hdr[H_N_SF]), SF_KIND_COL])


@dataclass
class CompiledRuleset:
    arrays: CompiledArrays
    rules: list  # one dict per rule id (contracts §3 rules table)
    n_rules: int
    reject_kinds: tuple
    nat: list  # one dict per NAT row (Python view)
    base_chains: list  # one dict per base chain, in hook/priority order
    chains: list  # one dict per chain id: table, chain, family
    logs: list  # model.Log per log index
    noops: list  # model.Noop per noop index
    stateful: list  # (rule id, model.Stateful) per stateful index
    recent_tables: list  # names, index = recent table id
    seed: int
    ruleset: m.Ruleset
    host: object

    def rule_id(self, table: str, chain: str, rule_num: int, family: str | None = None) -> int:
        for r in self.rules:
            if r["table"] == table and r["chain"] == chain and r["rule_num"] == rule_num and \
                    (family is None or r["family"] == family):
                return r["rule_id"]
        raise KeyError((table, chain, rule_num))


# ------------------------------------------------------------------ interval sets
class _Sets:
    def __init__(self):
        self.sets = []  # (kind, nw, fields, w0, elements: list of (lo_words, hi_words, vdata))

    def add(self, fields, elements, is_map=False) -> int:
        """elements: list of (tuple of (lo, hi) per component, vdata or None). Returns the set id."""
        fields = tuple(int(f) for f in fields)
        if len(fields) > MAX_FIELDS:
            raise _Unsup(f"concatenation of {len(fields)} fields")
        nw = sum(_nwords(f) for f in fields)
        if nw > MAX_WORDS:
            raise _Unsup(f"set key of {nw} words")
        w0 = _nwords(fields[0])
        rows = []
        for comps, vd in elements:
            if len(comps) != len(fields):
                raise _Unsup(f"set element with {len(comps)} components for a key of {len(fields)}")
            lo_w, hi_w = [], []
            for f, (lo, hi) in zip(fields, comps):
                if _nwords(f) == 2:
                    lo_w += [_flip(lo >> 64), _flip(lo)]
                    hi_w += [_flip(hi >> 64), _flip(hi)]
                else:
                    lo_w.append(_flip(lo))
                    hi_w.append(_flip(hi))
            rows.append((tuple(lo_w), tuple(hi_w), vd))
        if len(fields) == 1:
            rows.sort(key=lambda r: r[0])
            if not is_map:  # merge overlapping / adjacent
                merged = []
                for lo_w, hi_w, _vd in rows:
                    if merged and _succ(merged[-1][1]) >= lo_w:
                        if hi_w > merged[-1][1]:
                            merged[-1] = (merged[-1][0], hi_w, None)
                    else:
                        merged.append((lo_w, hi_w, None))
                rows = merged
            kind = SET_SORTED
        else:
            rows.sort(key=lambda r: r[0][:w0])
            kind = SET_CONCAT
        self.sets.append((kind, nw, fields, w0, rows))
        return len(self.sets) - 1


def _succ(words: tuple) -> tuple:
    """Next key after `words` (flipped words), for merging adjacent intervals; saturates."""
    w = list(words)
    for i in range(len(w) - 1, -1, -1):
        if w[i] != (1 << 63) - 1:
            w[i] += 1
            for j in range(i + 1, len(w)):
                w[j] = -(1 << 63)
            return tuple(w)
    return tuple(w)


class _Unsup(Exception):
    """Internal: a construct the compiler cannot lower; becomes an unsupported rule."""


# ------------------------------------------------------------------ compiler
class _Compiler:
    def __init__(self, rs, host, ipsets, allow_unsupported, seed):
        self.rs, self.host, self.allow, self.seed = rs, host, allow_unsupported, seed
        self.ipsets = {s.name: s for s in ipsets}
        self.sets = _Sets()
        self.rows = []  # (op, neg, field, pres, a0..a5, set)
        self.rules = []
        self.rule_ranges = []
        self.chains = []  # dicts
        self.chain_ranges = []
        self.bcs = []
        self.nat = []
        self.logs, self.noops, self.stateful, self.recent = [], [], [], []
        self.unsupported = []  # (source, text, feature)
        self.hz = int(host.hz) if host is not None else 1000

    # -- rows
    def row(self, op, neg=0, field=0, pres=0, a=(), set_id=-1):
        a = list(a) + [0] * (6 - len(a))
        self.rows.append((op, int(neg), int(field), int(pres), *[_s64(int(x)) for x in a], set_id))

    def iface_set(self, fld, names):
        idx = []
        absent = False
        hnames = self.host.iface_names if self.host is not None else []
        for n in names:
            if n.endswith("+") or n.endswith("*"):
                p = n[:-1]
                idx += [i for i, h in enumerate(hnames) if h.startswith(p)]
                if p == "":
                    absent = True
            else:
                idx += [i for i, h in enumerate(hnames) if h == n]
                if n == "":
                    absent = True
        vals = sorted(set(idx + ([-1] if absent else [])))
        return self.sets.add((fld,), [(((v, v),), None) for v in vals])

    def set_by_name(self, table, name):
        for s in table.sets:
            if s.name == name:
                return s
        if name in self.ipsets:
            return self.ipsets[name]
        raise _Unsup(f"set {name!r} not defined (supply ipset contents)")

    def verdict_args(self, v: m.Verdict, table, chain_ids):
        code = _VERDICT_CODES.get(v.kind)
        if code is None:
            raise _Unsup(f"verdict {v.kind}")
        target = -1
        if v.kind in ("jump", "goto"):
            key = (id(table), v.chain)
            if key not in chain_ids:
                raise RulesetError(f"{self.rs.source}: {v.kind} to unknown chain {v.chain!r} in table "
                                   f"{table.family} {table.name}")
            target = chain_ids[key]
            if self.chains[target]["base"]:
                raise RulesetError(f"{self.rs.source}: {v.kind} to base chain {v.chain!r} in table {table.name}")
        return int(code), target, int(v.queue_num), int(bool(v.bypass))

    def expr(self, e, table, chain_ids, rid, fam):
        if isinstance(e, m.FieldIn):
            f = int(e.field)
            if f in ADDRESS_FIELDS:
                sid = self.sets.add((f,), [(((lo, hi),), None) for lo, hi in e.values])
                self.row(OP_ADDR_IN, e.negate, f, FIELD_GROUP.get(e.field, 0), set_id=sid)
            elif f in (Field.IIF, Field.OIF):
                sid = self.sets.add((f,), [(((lo, hi),), None) for lo, hi in e.values])
                self.row(OP_IFACE, e.negate, f, 0, set_id=sid)
            else:
                sid = self.sets.add((f,), [(((lo, hi),), None) for lo, hi in e.values])
                self.row(OP_FIELD_IN, e.negate, f, FIELD_GROUP.get(e.field, 0), set_id=sid)
        elif isinstance(e, m.Masked):
            if e.op not in ("eq", "any"):
                raise _Unsup(f"masked op {e.op}")
            if int(e.field) in ADDRESS_FIELDS:
                mk = e.mask & _M128
                if e.op != "eq":
                    raise _Unsup("address bit test")
                self.row(OP_ADDR_MASKED, e.negate, e.field, FIELD_GROUP.get(e.field, 0),
                         (mk >> 64, mk, (e.value & mk) >> 64, e.value & mk))
            else:
                self.row(OP_MASKED_EQ if e.op == "eq" else OP_MASKED_ANY, e.negate, e.field,
                         FIELD_GROUP.get(e.field, 0), (e.mask, e.value & e.mask))
        elif isinstance(e, m.AddrMasked):
            mk = e.mask & _M128
            v = e.value & mk
            self.row(OP_ADDR_MASKED, e.negate, e.field, FIELD_GROUP.get(e.field, 0), (mk >> 64, mk, v >> 64, v))
        elif isinstance(e, m.Iface):
            sid = self.iface_set(e.field, e.names)
            self.row(OP_IFACE, e.negate, e.field, 0, set_id=sid)
        elif isinstance(e, m.SetMatch):
            s = self.set_by_name(table, e.set_name)
            if len(s.key_fields) != len(e.fields):
                raise _Unsup(f"set {e.set_name} has {len(s.key_fields)} key fields, match uses {len(e.fields)}")
            sid = self.sets.add(e.fields, [(el, None) for el in s.elements])
            pres = 0
            for f in e.fields:
                pres |= FIELD_GROUP.get(f, 0)
            self.row(OP_SET, e.negate, e.fields[0], pres, set_id=sid)
        elif isinstance(e, m.AddrType):
            from ..host import ADDRTYPE_BITS

            mask = 0
            for t in e.types:
                if t.upper() not in ADDRTYPE_BITS:
                    raise _Unsup(f"addrtype {t}")
                mask |= ADDRTYPE_BITS[t.upper()]
            fld = Field.SRC if e.which == "src" else Field.DST
            lim = {None: 0, "in": 1, "out": 2}.get(e.limit_iface)
            if lim is None:
                raise _Unsup(f"addrtype limit-iface {e.limit_iface}")
            self.row(OP_ADDRTYPE, e.negate, fld, 0, (mask, lim))
        elif isinstance(e, m.Stateful):
            from .. import stateful as sfm

            idx = len(self.stateful)
            sfm.check_stateful(e, table.origin, self.hz)  # raises _Unsup-compatible ValueError
            if e.kind == "hashlimit":
                why = sfm.hashlimit_conflict(e, [x for _, x, _ in self.stateful])
                if why:
                    raise _Unsup(why)
            self.stateful.append((rid, e, table.origin))
            if e.kind == "recent":
                name = e.get("name", "DEFAULT")
                if name not in self.recent:
                    self.recent.append(name)
            self.row(OP_STATEFUL, 0 if e.kind == "recent" else e.negate, 0, 0, (idx,))
        elif isinstance(e, m.Never):
            self.row(OP_NEVER)
        elif isinstance(e, m.Unsupported):
            raise _Unsup(e.feature)
        # ---- statements
        elif isinstance(e, m.Verdict):
            self.row(OP_VERDICT, 0, 0, 0, self.verdict_args(e, table, chain_ids))
        elif isinstance(e, m.Reject):
            k = _REJECT_ALIASES.get(e.with_, e.with_)
            if k not in REJECT_KINDS:
                raise _Unsup(f"reject with {e.with_}")
            self.row(OP_REJECT, 0, 0, 0, (REJECT_KINDS.index(k),))
        elif isinstance(e, m.Log):
            self.logs.append(e)
            self.row(OP_NFLOG if e.kind == "nflog" else OP_LOG, 0, 0, 0, (len(self.logs) - 1,))
        elif isinstance(e, m.MarkOp):
            dest = {"mark": 0, "ctmark": 1}.get(e.dest)
            src = {"const": 0, "mark": 1, "ctmark": 2}.get(e.src)
            if dest is None or src is None:
                raise _Unsup(f"mark op {e.dest} from {e.src}")
            self.row(OP_MARK, 0, 0, 0, (dest, e.and_mask & 0xFFFFFFFF, e.xor_value & 0xFFFFFFFF, src,
                                        e.src_mask & 0xFFFFFFFF, e.or_value & 0xFFFFFFFF))
        elif isinstance(e, m.CtSet):
            h = -1
            if e.helper is not None:
                if e.helper not in HELPERS:
                    raise _Unsup(f"conntrack helper {e.helper}")
                h = HELPERS[e.helper]
            self.row(OP_CTSET, 0, 0, 0, (int(e.notrack), h, -1 if e.zone is None else int(e.zone)))
        elif isinstance(e, m.Nat):
            self.row(OP_NAT, 0, 0, 0, (self.nat_row(e, rid, fam),))
        elif isinstance(e, m.Counter):
            self.rules[-1]["counter"] = True
            self.row(OP_COUNTER)
        elif isinstance(e, m.VerdictMap):
            s = self.set_by_name(table, e.map_name)
            if s.data is None or len(s.data) != len(s.elements):
                raise _Unsup(f"map {e.map_name} without verdict data")
            els = []
            for el, d in zip(s.elements, s.data):
                if not isinstance(d, m.Verdict):
                    raise _Unsup(f"map {e.map_name} is not a verdict map")
                els.append((el, self.verdict_args(d, table, chain_ids)))
            sid = self.sets.add(e.fields, els, is_map=True)
            pres = 0
            for f in e.fields:
                pres |= FIELD_GROUP.get(f, 0)
            self.row(OP_VMAP, 0, e.fields[0], pres, set_id=sid)
        elif isinstance(e, m.Noop):
            self.noops.append(e)
            self.row(OP_NOOP_STMT, 0, 0, 0, (len(self.noops) - 1,))
        else:
            raise _Unsup(f"expression {type(e).__name__}")

    def nat_row(self, e: m.Nat, rid, fam):
        if e.kind not in NAT_KINDS[1:]:
            raise _Unsup(f"nat {e.kind}")
        flags = 0
        for fl in e.flags:
            bit = {"random": NATF_RANDOM, "random-fully": NATF_RANDOM_FULLY, "fully-random": NATF_RANDOM_FULLY,
                   "persistent": NATF_PERSISTENT}.get(fl)
            if bit is None:
                raise _Unsup(f"nat flag {fl}")
            flags |= bit
        if e.port_lo or e.port_hi:
            flags |= NATF_PROTO_SPECIFIED
        has = e.addr_lo is not None
        if has:
            flags |= NATF_MAP_IPS
        lo = e.addr_lo or 0
        hi = e.addr_hi if e.addr_hi is not None else lo
        f = e.family or fam
        if not f and has:
            f = 4 if (lo >> 32) == 0xFFFF else 6
        pm = e.prefix_mask & _M128
        self.nat.append(dict(kind=NAT_KINDS.index(e.kind), family=f, lo=lo, hi=hi, has=int(has),
                             port_lo=e.port_lo, port_hi=e.port_hi or e.port_lo, flags=flags, rule=rid,
                             mask=pm, text=e.kind))
        return len(self.nat) - 1

    # -- whole ruleset
    def run(self):
        rs = self.rs
        tables = []
        for ti, t in enumerate(rs.tables):
            fam = _FAMILY.get(t.family)
            tables.append((ti, t, fam))
        # chain ids first (jumps refer forward)
        chain_ids = {}
        for ti, t, _fam in tables:
            for c in t.chains:
                chain_ids[(id(t), c.name)] = len(self.chains)
                self.chains.append(dict(table=t.name, family=t.family, chain=c.name, base=c.hook is not None,
                                        table_index=ti))
        self.chain_ranges = [None] * len(self.chains)
        order = 0
        bcs = []
        for ti, t, fam in tables:
            for c in t.chains:
                cid = chain_ids[(id(t), c.name)]
                start = len(self.rules)
                for num, r in enumerate(c.rules, 1):
                    self.compile_rule(t, c, num, r, chain_ids, fam)
                end = len(self.rules)
                self.chain_ranges[cid] = (start, end)
                if c.hook is not None:
                    pol = (c.policy or "accept").lower()
                    hook = HOOKS.get(c.hook)
                    prid = len(self.rules)
                    feature = ""
                    if fam is None:
                        feature = f"table family {t.family}"
                    elif hook is None:
                        feature = f"hook {c.hook}"
                    elif pol not in ("accept", "drop"):
                        feature = f"policy {pol}"
                    self.rules.append(self.meta(t, c, 0, None, "policy", feature))
                    self.rule_ranges.append((len(self.rows), len(self.rows)))
                    if feature:
                        self.flag(c.source or m.SourceRef(rs.source, 0, c.name), c.name, feature, prid)
                        continue
                    prio = c.priority if c.priority is not None else 0
                    typ = {"filter": BC_FILTER, "nat": BC_NAT, "route": BC_ROUTE}.get(c.type, BC_FILTER)
                    slot = prio
                    if typ == BC_NAT:
                        slot = -100 if hook in (Hook.PREROUTING, Hook.OUTPUT) else 100
                    bcs.append(dict(hook=int(hook), prio=prio, slot=slot, family=fam, type=typ, chain=cid,
                                    policy=int(Verdict.ACCEPT if pol == "accept" else Verdict.DROP),
                                    policy_rule=prid, table=ti, order=order, table_name=t.name,
                                    table_family=t.family, chain_name=c.name))
                    order += 1
        bcs.sort(key=lambda b: (b["hook"], b["slot"], b["prio"], -b["order"]))
        self.bcs = bcs
        self.check_loops(chain_ids)
        if self.unsupported and not self.allow:
            src, text, feat = self.unsupported[0]
            n = len(self.unsupported)
            more = f" ({n} unsupported rules in total; --allow-unsupported replays with them never matching)" \
                if n > 1 else " (--allow-unsupported replays with it never matching)"
            raise UnsupportedRuleError(str(src), text, feat + more)

    def meta(self, t, c, num, r, kind, unsupported=""):
        rid = len(self.rules)
        src = r.source if r is not None else c.source
        return dict(rule_id=rid, family=t.family, table=t.name, chain=c.name, rule_num=num,
                    text=(r.text if r is not None else f"policy {(c.policy or 'accept').upper()}"),
                    source=str(src) if src is not None else "", hook=c.hook or "", kind=kind,
                    unsupported=unsupported, comment=(r.comment or "") if r is not None else "", counter=False)

    def flag(self, src, text, feature, rid):
        if not any(str(s) == str(src) and t == text for s, t, _ in self.unsupported):
            self.unsupported.append((src, text, feature))
        self.rules[rid]["unsupported"] = feature

    def compile_rule(self, t, c, num, r, chain_ids, fam):
        rid = len(self.rules)
        self.rules.append(self.meta(t, c, num, r, "rule"))
        start = len(self.rows)
        n_stateful, n_recent, n_nat = len(self.stateful), len(self.recent), len(self.nat)
        n_logs, n_noops = len(self.logs), len(self.noops)
        feature = ""
        if fam is None:
            feature = f"table family {t.family}"
        else:
            try:
                for e in r.exprs:
                    self.expr(e, t, chain_ids, rid, fam)
            except (_Unsup, ValueError) as ex:
                if isinstance(ex, RulesetError):
                    raise
                feature = str(ex)
        if feature:
            del self.rows[start:]
            del self.stateful[n_stateful:]
            del self.recent[n_recent:]
            del self.nat[n_nat:]
            del self.logs[n_logs:]
            del self.noops[n_noops:]
            self.row(OP_NEVER)
            self.flag(r.source, r.text, feature, rid)
        self.rule_ranges.append((start, len(self.rows)))

    def check_loops(self, chain_ids):
        """Reject jump loops (mark_source_chains / nft loop check) and size the jump stack: the longest
        chain of jumps (gotos do not push) reachable from a base chain."""
        edges = {i: [] for i in range(len(self.chains))}
        for cid, (s, e) in enumerate(self.chain_ranges):
            for rid in range(s, e):
                rs_, re_ = self.rule_ranges[rid]
                for k in range(rs_, re_):
                    op, a0, a1 = self.rows[k][0], self.rows[k][4], self.rows[k][5]
                    if op == OP_VERDICT and a0 in (int(Verdict.JUMP), int(Verdict.GOTO)):
                        edges[cid].append((a1, 1 if a0 == int(Verdict.JUMP) else 0))
                    elif op == OP_VMAP:
                        kind, nw, fields, w0, rows = self.sets.sets[self.rows[k][-1]]
                        for _, _, vd in rows:
                            if vd is not None and vd[0] in (int(Verdict.JUMP), int(Verdict.GOTO)):
                                edges[cid].append((vd[1], 1 if vd[0] == int(Verdict.JUMP) else 0))
        depth = {}
        state = {}

        def visit(c, path):
            st = state.get(c)
            if st == 1:
                cyc = " -> ".join(self.chains[x]["chain"] for x in path[path.index(c):] + [c])
                raise RulesetError(f"{self.rs.source}: jump loop: {cyc} (the kernel refuses this ruleset)")
            if st == 2:
                return depth[c]
            state[c] = 1
            d = 0
            for t, w in edges[c]:
                d = max(d, w + visit(t, path + [c]))
            state[c] = 2
            depth[c] = d
            return d

        self.max_depth = 0
        for cid in range(len(self.chains)):
            self.max_depth = max(self.max_depth, visit(cid, []))

    def arrays(self) -> CompiledArrays:
        from .. import stateful as sfm

        i64 = np.int64
        bcs = self.bcs
        rows = self.rows
        nch = len(self.chains)
        # bc
        bc = np.zeros((len(bcs), BC_N), i64)
        for k, b in enumerate(bcs):
            bc[k] = (b["hook"], b["prio"], b["family"], b["type"], b["chain"], b["policy"], b["policy_rule"],
                     b["table"])
        # sets and elements
        sets = np.full((max(1, len(self.sets.sets)), S_N), -1, i64)
        el_rows = []
        for sid, (kind, nw, fields, w0, els) in enumerate(self.sets.sets):
            start = len(el_rows)
            pmax = None
            for lo_w, hi_w, vd in els:
                h0 = tuple(hi_w[:w0]) + (0,) * (2 - w0)
                pmax = h0 if pmax is None or h0 > pmax else pmax
                el_rows.append(list(lo_w) + [0] * (MAX_WORDS - len(lo_w)) + list(hi_w) + [0] * (MAX_WORDS - len(hi_w))
                               + list(pmax) + list(vd if vd is not None else (NO_VERDICT, -1, 0, 0)))
            sets[sid, :S_FIELDS] = (start, len(el_rows), nw, kind, len(fields), w0)
            sets[sid, S_FIELDS:S_FIELDS + len(fields)] = fields
        el = np.array(el_rows, i64).reshape(-1, E_N) if el_rows else np.zeros((0, E_N), i64)
        # expressions, with the inline set tests
        ex = np.zeros((len(rows), X_N), i64)
        for e, r in enumerate(rows):
            ex[e, :X_FAST] = r
            op, sid = r[0], r[10]
            if op in (OP_FIELD_IN, OP_IFACE, OP_ADDR_IN) and sid >= 0:
                kind, nw, fields, w0, els = self.sets.sets[sid]
                if kind == SET_SORTED and not els:
                    ex[e, X_FAST] = FAST_EMPTY
                elif kind == SET_SORTED and len(els) == 1 and nw in (1, 2):
                    lo_w, hi_w, _ = els[0]
                    ex[e, X_FAST] = FAST_RANGE1 if nw == 1 else FAST_RANGE2
                    ex[e, X_LO] = lo_w[0]
                    ex[e, X_HI] = hi_w[0]
                    if nw == 2:
                        ex[e, X_LO2] = lo_w[1]
                        ex[e, X_HI2] = hi_w[1]
        # rules
        ru = np.zeros((len(self.rules), R_N), i64)
        for rid, (es, ee) in enumerate(self.rule_ranges):
            ru[rid, R_ES], ru[rid, R_EE] = es, ee
        # header: scalars, hook ranges, chain table, dispatch blocks
        hdr = [0] * H_FIXED
        for h in range(5):
            idx = [i for i, b in enumerate(bcs) if b["hook"] == h]
            hdr[H_HOOK_START + h] = idx[0] if idx else 0
            hdr[H_HOOK_END + h] = idx[-1] + 1 if idx else 0
        sf_kind, sf_p = sfm.compile_stateful([(s_, o) for _, s_, o in self.stateful], self.recent, self.hz)
        hdr[H_N_RULES] = len(self.rules)
        hdr[H_MAX_DEPTH] = int(self.max_depth)
        hdr[H_HZ] = self.hz
        hdr[H_RC_TABLES] = len(self.recent)
        hdr[H_N_BC] = len(bcs)
        hdr[H_N_CHAINS] = nch
        hdr[H_N_SF] = len(sf_kind)
        hdr[H_CH_OFF] = H_FIXED
        chtab = []
        for cs, ce in self.chain_ranges:
            chtab += [cs, ce, -1]
        hdr += chtab
        nat = np.zeros((len(self.nat), NA_N), i64)
        for k, n in enumerate(self.nat):
            nat[k] = (n["kind"], n["family"], _s64(n["lo"] >> 64), _s64(n["lo"]), _s64(n["hi"] >> 64), _s64(n["hi"]),
                      n["has"], n["port_lo"], n["port_hi"], n["flags"], n["rule"], _s64(n["mask"] >> 64),
                      _s64(n["mask"]))
        sf = np.zeros((sf_p.shape[0], SF_N), i64)
        sf[:, :SF_KIND_COL] = sf_p
        sf[:len(sf_kind), SF_KIND_COL] = sf_kind
        host = self.host.arrays().prog
        parts = [np.array(hdr, i64)]
        off = len(hdr)
        for h, arr in ((H_BC, bc), (H_RU, ru), (H_EX, ex), (H_SETS, sets), (H_EL, el), (H_NAT, nat), (H_SF, sf),
                       (H_HOST, host)):
            parts[0][h] = off
            parts.append(arr.reshape(-1))
            off += arr.size
        hd = parts[0]
        hd[H_N_EXPR], hd[H_N_SETS], hd[H_N_EL], hd[H_N_NAT] = len(ex), len(sets), len(el), len(nat)
        hd[H_SF_ROWS] = len(sf)
        # dispatch blocks after the sections (they fill ru[:, R_NEXTW], so ru is copied again below)
        blocks = []
        for cid, (cs, ce) in enumerate(self.chain_ranges):
            blk = self.dispatch_block(cs, ce, ex, ru, off)
            if blk:
                hd[H_FIXED + CH_W * cid + CH_IX] = off
                blocks.append(np.array(blk, i64))
                off += len(blk)
        parts[2] = ru.reshape(-1)
        return CompiledArrays(prog=np.concatenate(parts + blocks))

    def dispatch_block(self, cs, ce, ex, ru, base) -> list:
        """Destination-port dispatch for rules cs..ce-1 of one chain (empty list: none).

        A rule is port-specific when its leading run of side-effect-free matches (before any statement or
        stateful match) holds a non-negated `dport in D`: it can only match packets with ports and a
        destination port in D, so skipping it for other packets changes nothing (no counter, trace or
        state). Every other rule is a wildcard. Block (absolute offsets into hdr): nb, the nb lower bounds
        of the elementary port intervals (first 0), nb + 1 list offsets, then per interval the sorted
        port-specific rules covering it. ru[r, R_NEXTW] = the first wildcard rule >= r (or ce)."""
        n = ce - cs
        if n < DISPATCH_MIN_RULES:
            return []
        spec = {}
        for r in range(cs, ce):
            es, ee = int(ru[r, R_ES]), int(ru[r, R_EE])
            for e in range(es, ee):
                op = int(ex[e, X_OP])
                if op >= OP_FIRST_STMT or op == OP_STATEFUL:
                    break
                if op == OP_NEVER:
                    spec[r] = []
                    break
                if op == OP_FIELD_IN and int(ex[e, X_FIELD]) == _F_DPORT and int(ex[e, X_NEG]) == 0:
                    kind, nw, fields, w0, els = self.sets.sets[int(ex[e, X_SET])]
                    iv = [(_flip(lo[0]), _flip(hi[0])) for lo, hi, _ in els]  # unflip
                    iv = [(max(lo, 0), min(hi, 65535)) for lo, hi in iv if hi >= 0 and lo <= 65535]
                    spec[r] = iv
                    break

        def bounds(specs):
            b = {0}
            for iv in specs.values():
                for lo, hi in iv:
                    b.add(lo)
                    if hi < 65535:
                        b.add(hi + 1)
            return sorted(b)

        b = bounds(spec)
        pos = {v: i for i, v in enumerate(b)}
        for r in list(spec):
            span = sum(pos[hi + 1] if hi < 65535 else len(b) for lo, hi in spec[r]) - \
                sum(pos[lo] for lo, hi in spec[r])
            if span > DISPATCH_MAX_SPAN:
                del spec[r]
        if len(spec) < n // 4 or not spec:
            return []
        b = bounds(spec)
        pos = {v: i for i, v in enumerate(b)}
        lists = [[] for _ in b]
        for r in sorted(spec):
            for lo, hi in spec[r]:
                for i in range(pos[lo], pos[hi + 1] if hi < 65535 else len(b)):
                    lists[i].append(r)
        nb = len(b)
        blk = [nb] + b
        off = base + 1 + nb + nb + 1
        offs = []
        flat = []
        for lst in lists:
            offs.append(off + len(flat))
            flat += sorted(set(lst))
        offs.append(off + len(flat))
        nxt = ce
        for r in range(ce - 1, cs - 1, -1):
            if r not in spec:
                nxt = r
            ru[r, R_NEXTW] = nxt
        return blk + offs + flat


def compile_ruleset(rs: m.Ruleset, host=None, ipsets: tuple = (), allow_unsupported: bool = False,
                    seed: int = 0) -> CompiledRuleset:
    """Lower a model.Ruleset to arrays for chains.eval_chain.

    host: the HostModel (interface names for -i/-o, HZ for limit/recent); None = default model.
    ipsets: model.SetDef contents for `-m set` names. Unsupported constructs raise UnsupportedRuleError
    (first one named, total count given) unless allow_unsupported: then such a rule never matches and
    its rules row names the feature. Structural errors (jump to an unknown chain, loops) raise
    RulesetError always.
    """
    if host is None:
        from ..host import default_host

        host = default_host()
    c = _Compiler(rs, host, ipsets, allow_unsupported, seed)
    for src, u in rs.unsupported:
        c.unsupported.append((src, u.text, u.feature))
    c.run()
    arrays = c.arrays()
    nat_view = [dict(row=i, kind=NAT_KINDS[n["kind"]], family=n["family"], addr_lo=n["lo"] if n["has"] else None,
                     addr_hi=n["hi"] if n["has"] else None, port_lo=n["port_lo"], port_hi=n["port_hi"],
                     flags=n["flags"], rule_id=n["rule"]) for i, n in enumerate(c.nat)]
    base = [dict(index=i, hook=b["hook"], priority=b["prio"], family=b["table_family"], table=b["table_name"],
                 chain=b["chain_name"], type=("filter", "nat", "route")[b["type"]],
                 policy="accept" if b["policy"] == int(Verdict.ACCEPT) else "drop", policy_rule=b["policy_rule"])
            for i, b in enumerate(c.bcs)]
    return CompiledRuleset(arrays=arrays, rules=c.rules, n_rules=len(c.rules), reject_kinds=REJECT_KINDS,
                           nat=nat_view, base_chains=base, chains=c.chains, logs=c.logs, noops=c.noops,
                           stateful=[(r, s) for r, s, _ in c.stateful], recent_tables=list(c.recent), seed=seed,
                           ruleset=rs, host=host)

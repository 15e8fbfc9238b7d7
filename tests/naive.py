"""Pure-Python oracles, written independently of the kernels they check.

`naive_eval(rs, host, table, chain, ctx, pkt_len, counters)`: walk one base chain of a model.Ruleset
recursively over the model objects themselves (no compilation): a jump is a recursive call whose
RETURN resumes the caller, a goto is a tail call (its RETURN goes to the caller's caller), the end of a
base chain (or a RETURN reaching it) takes the policy. Returns (verdict, (table, chain, rule_num)),
rule_num 0 = policy; mutates ctx (marks) and counters {(table, chain, num): [packets, bytes]}.
Only stateless matches and statements: anything else raises NotImplementedError.
"""

from __future__ import annotations

from nfreplay.replay.codes import ADDRESS_FIELDS, FIELD_GROUP, Field
from nfreplay.replay.rules import model as m

ACCEPT, DROP, QUEUE = 1, 0, 3


def _u64(v) -> int:
    return int(v) & ((1 << 64) - 1)


def field_value(ctx, f) -> int:
    if int(f) in ADDRESS_FIELDS:
        return (_u64(ctx[int(f)]) << 64) | _u64(ctx[int(f) + 1])
    return int(ctx[int(f)])


def present(ctx, f) -> bool:
    bit = FIELD_GROUP.get(f, 0)
    return bit == 0 or (int(ctx[Field.PRESENT]) & bit) != 0


def iface_name(host, idx) -> str:
    return "" if idx < 0 else host.iface_names[idx]


def iface_match(pattern: str, name: str) -> bool:
    if pattern.endswith("+") or pattern.endswith("*"):
        return name.startswith(pattern[:-1])
    return name == pattern


def match(e, ctx, host) -> bool:
    if isinstance(e, m.FieldIn):
        if e.field in (Field.IIF, Field.OIF):
            v = int(ctx[e.field])
            return any(lo <= v <= hi for lo, hi in e.values) != e.negate
        if not present(ctx, e.field):
            return False
        v = field_value(ctx, e.field)
        return any(lo <= v <= hi for lo, hi in e.values) != e.negate
    if isinstance(e, m.Masked):
        if not present(ctx, e.field):
            return False
        v = field_value(ctx, e.field) & e.mask
        r = v == (e.value & e.mask) if e.op == "eq" else v != 0
        return r != e.negate
    if isinstance(e, m.AddrMasked):
        if not present(ctx, e.field):
            return False
        return ((field_value(ctx, e.field) & e.mask) == (e.value & e.mask)) != e.negate
    if isinstance(e, m.Iface):
        name = iface_name(host, int(ctx[e.field]))
        return any(iface_match(p, name) for p in e.names) != e.negate
    if isinstance(e, (m.Never, m.Unsupported)):
        return False
    raise NotImplementedError(type(e).__name__)


def naive_eval(rs, host, table, chain, ctx, pkt_len, counters):
    t = next(x for x in rs.tables if x.name == table)
    c = t.chain(chain)

    def count(key):
        p = counters.setdefault(key, [0, 0])
        p[0] += 1
        p[1] += pkt_len

    def walk(cname):
        ch = t.chain(cname)
        for num, rule in enumerate(ch.rules, 1):
            ok = True
            verdict = None
            for e in rule.exprs:
                if isinstance(e, m.Verdict):
                    verdict = e
                    break
                if isinstance(e, m.Reject):
                    verdict = m.Verdict("drop")
                    break
                if isinstance(e, m.MarkOp):
                    if e.dest == "mark":
                        src = e.xor_value if e.src == "const" else field_value(ctx, Field.MARK if e.src == "mark"
                                                                               else Field.CT_MARK) & e.src_mask
                        ctx[Field.MARK] = (((int(ctx[Field.MARK]) & e.and_mask) ^ src) | e.or_value) & 0xFFFFFFFF
                    continue
                if isinstance(e, (m.Log, m.Noop, m.Counter)):
                    continue
                if not match(e, ctx, host):
                    ok = False
                    break
            if not ok:
                continue
            key = (table, cname, num)
            count(key)
            if verdict is None or verdict.kind == "continue":
                continue
            if verdict.kind in ("accept", "drop", "queue"):
                return ("verdict", {"accept": ACCEPT, "drop": DROP, "queue": QUEUE}[verdict.kind], key)
            if verdict.kind == "return":
                return ("return", None, None)
            if verdict.kind == "jump":
                res = walk(verdict.chain)
                if res[0] == "verdict":
                    return res
                continue
            if verdict.kind == "goto":
                return walk(verdict.chain)
        return ("return", None, None)

    res = walk(c.name)
    if res[0] == "verdict":
        return res[1], res[2]
    key = (table, chain, 0)
    count(key)
    return (ACCEPT if (c.policy or "accept") == "accept" else DROP), key

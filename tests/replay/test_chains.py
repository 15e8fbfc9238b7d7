"""eval_chain against the spec's rule-evaluation vectors and against tests/naive.py on random rulesets."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nfreplay.replay import chains
from nfreplay.replay.codes import PRESENT_CT, PRESENT_ICMP, PRESENT_IIF, PRESENT_PORTS, PRESENT_TCP, Field
from nfreplay.replay.host import load_host
from nfreplay.replay.rules import model as m
from nfreplay.replay.rules.compile import compile_ruleset
from nfreplay.replay.rules.iptables import parse_iptables
from tests.naive import naive_eval

HOST = {"interfaces": [{"name": "eth0", "addresses": ["203.0.113.1/24"]},
                       {"name": "eth1", "addresses": ["192.168.1.1/24"]}],
        "routes": [{"prefix": "0.0.0.0/0", "interface": "eth0", "via": "203.0.113.254"}]}
S = m.SourceRef("t", 1, "")
V4 = 0xFFFF << 32


def mkctx(proto=6, dport=80, sport=40000, src=0x0A000001, dst=0x0A000002, mark=0, iif=0, oif=-1, flags=0x02,
          ct=False, ctmark=0, family=4):
    c = np.zeros(Field.N_FIELDS, np.int64)
    c[Field.NFPROTO] = 2 if family == 4 else 10
    c[Field.PROTO] = proto
    pres = PRESENT_IIF if iif >= 0 else 0
    if proto in (6, 17):
        c[Field.SPORT], c[Field.DPORT] = sport, dport
        pres |= PRESENT_PORTS
    if proto == 6:
        c[Field.TCP_FLAGS] = flags
        pres |= PRESENT_TCP
    if proto == 1:
        pres |= PRESENT_ICMP
    if ct:
        pres |= PRESENT_CT
        c[Field.CT_MARK] = ctmark
    c[Field.PRESENT] = pres
    c[Field.SRC + 1] = V4 | src
    c[Field.DST + 1] = V4 | dst
    c[Field.MARK] = mark
    c[Field.IIF], c[Field.OIF] = iif, oif
    return c


def run(crs, ctx, bc=0, st=None, n=60):
    st = st or chains.new_rule_state(crs)
    out, tr = chains.new_out(), chains.new_trace(64)
    v = chains.eval_chain(crs.arrays, st, bc, ctx, n, 0, out, tr)
    r = crs.rules[out[chains.OUT_RULE]]
    return int(v), (r["chain"], r["rule_num"]), st, out, tr


def ipt(text):
    return parse_iptables(text, source="t")


TV6 = """*filter
:INPUT DROP [0:0]
:SVC - [0:0]
-A INPUT -p tcp -j SVC
-A INPUT -p tcp --dport 443 -j ACCEPT
-A SVC -p tcp --dport 22 -j ACCEPT
-A SVC -j RETURN
-A SVC -j DROP
COMMIT
"""


@pytest.fixture(scope="module")
def host():
    return load_host(HOST)


@pytest.mark.parametrize("dport,verdict,where", [(22, 1, ("SVC", 1)), (443, 1, ("INPUT", 2)),
                                                 (80, 0, ("INPUT", 0))])
def test_tv6_return_from_user_chain(host, dport, verdict, where):
    crs = compile_ruleset(ipt(TV6), host)
    v, w, st, _, _ = run(crs, mkctx(dport=dport))
    assert (v, w) == (verdict, where)
    # SVC r3 is never hit
    assert st.rule_packets[crs.rule_id("filter", "SVC", 3)] == 0


def test_tv6_return_first_takes_policy(host):
    crs = compile_ruleset(ipt(TV6.replace("-A INPUT -p tcp -j SVC", "-A INPUT -j RETURN\n-A INPUT -p tcp -j SVC")),
                          host)
    v, w, *_ = run(crs, mkctx(dport=22))
    assert (v, w) == (0, ("INPUT", 0))


TV7 = """*filter
:INPUT ACCEPT [0:0]
:A - [0:0]
:B - [0:0]
-A INPUT -j A
-A INPUT -j DROP
-A A -g B
-A A -j ACCEPT
-A B -j RETURN
COMMIT
"""


def test_tv7_goto_returns_to_last_jump_origin(host):
    crs = compile_ruleset(ipt(TV7), host)
    assert run(crs, mkctx())[:2] == (0, ("INPUT", 2))
    crs = compile_ruleset(ipt(TV7.replace("-A A -g B", "-A A -j B")), host)
    assert run(crs, mkctx())[:2] == (1, ("A", 2))


def test_tv8_log_is_not_terminating(host):
    crs = compile_ruleset(ipt("""*filter
-A INPUT -p tcp --dport 23 -j LOG --log-prefix "TELNET "
-A INPUT -p tcp --dport 23 -j DROP
COMMIT
"""), host)
    v, w, st, out, tr = run(crs, mkctx(dport=23))
    assert (v, w) == (0, ("INPUT", 2))
    assert st.rule_packets[crs.rule_id("filter", "INPUT", 1)] == 1
    codes_ = [tuple(x) for x in tr[1:tr[0, 0] + 1, :2]]
    assert (crs.rule_id("filter", "INPUT", 1), chains.TR_LOG) in codes_


def test_counters_count_ip_length_and_policy(host):
    crs = compile_ruleset(ipt(TV6), host)
    st = chains.new_rule_state(crs)
    for dp, n in ((22, 60), (80, 100), (80, 40)):
        run(crs, mkctx(dport=dp), st=st, n=n)
    pol = crs.rule_id("filter", "INPUT", 0)
    assert (st.rule_packets[pol], st.rule_bytes[pol]) == (2, 140)
    assert (st.rule_packets[crs.rule_id("filter", "SVC", 2)], st.rule_bytes[crs.rule_id("filter", "SVC", 2)]) \
        == (2, 140)
    assert crs.rules[pol]["kind"] == "policy" and crs.rules[pol]["rule_num"] == 0


def test_reject_queue_mark(host):
    crs = compile_ruleset(ipt("""*filter
-A INPUT -p tcp --dport 25 -j REJECT --reject-with tcp-reset
-A INPUT -p udp -j NFQUEUE --queue-num 7 --queue-bypass
-A INPUT -j MARK --set-xmark 0x10/0xf0
-A INPUT -m mark --mark 0x10/0xf0 -j DROP
COMMIT
"""), host)
    v, w, st, out, _ = run(crs, mkctx(dport=25))
    assert v == 0 and crs.reject_kinds[out[chains.OUT_REJECT]] == "tcp-reset"
    v, w, st, out, _ = run(crs, mkctx(proto=17))
    assert v == 3 and out[chains.OUT_QUEUE_NUM] == 7 and out[chains.OUT_QUEUE_BYPASS] == 1
    ctx = mkctx(proto=1, mark=0x1ff)
    v, w, *_ = run(crs, ctx)
    assert v == 0 and w == ("INPUT", 4) and ctx[Field.MARK] == 0x11f


def test_port_match_absent_header_fails_even_negated(host):
    crs = compile_ruleset(ipt("*filter\n-A INPUT -p tcp ! --dport 22 -j DROP\n-A INPUT ! -p tcp -j DROP\nCOMMIT\n"),
                          host)
    ctx = mkctx(proto=6)
    ctx[Field.PRESENT] &= ~PRESENT_PORTS  # non-first fragment
    assert run(crs, ctx)[:2] == (1, ("INPUT", 0))


def test_interfaces_wildcard_and_absent(host):
    crs = compile_ruleset(ipt("""*filter
-A FORWARD -i eth+ -o docker0 -j DROP
-A FORWARD -o eth1 -j ACCEPT
-A FORWARD ! -i eth0 -j DROP
COMMIT
"""), host)
    bc = [b["chain"] for b in crs.base_chains].index("FORWARD")
    # docker0 is not in the host: -o docker0 never matches
    assert run(crs, mkctx(iif=0, oif=1), bc=bc)[:2] == (1, ("FORWARD", 2))
    # absent input interface compares as "": ! -i eth0 matches
    ctx = mkctx(iif=-1, oif=0)
    assert run(crs, ctx, bc=bc)[:2] == (0, ("FORWARD", 3))


def nft_table(*rules, policy="accept"):
    return m.Ruleset((m.Table("inet", "t", (m.Chain("in", tuple(m.Rule(tuple(r), S, f"r{i}") for i, r in
                                                                      enumerate(rules)), "input", 0, "filter",
                                                        policy),), origin="nft"),), "t", "nft")


def test_tv23_nft_bitmask_vs_set_vs_equality(host):
    F = Field.TCP_FLAGS
    rs = nft_table([m.Masked(F, 0x02, 0, "any"), m.Counter()], [m.FieldIn(F, ((0x02, 0x02),)), m.Counter()],
                   [m.SetMatch((F,), "fl"), m.Counter()])
    rs = m.Ruleset((m.Table("inet", "t", rs.tables[0].chains, (m.SetDef("fl", (F,), (((2, 2),),)),), "nft"),),
                   "t", "nft")
    crs = compile_ruleset(rs, host)
    st = chains.new_rule_state(crs)
    run(crs, mkctx(flags=0x12), st=st)
    assert st.rule_packets[:3].tolist() == [1, 0, 0]
    run(crs, mkctx(flags=0x02), st=st)
    assert st.rule_packets[:3].tolist() == [2, 1, 1]
    assert all(r["counter"] for r in crs.rules[:3])


def test_tv25_ct_key_without_conntrack(host):
    rs = nft_table([m.Masked(Field.CT_MARK, 0xFFFFFFFF, 1, "eq", negate=True), m.Counter(), m.Verdict("drop")])
    crs = compile_ruleset(rs, host)
    assert run(crs, mkctx(ct=False))[:2] == (1, ("in", 0))
    assert run(crs, mkctx(ct=True, ctmark=0))[:2] == (0, ("in", 1))


def test_tv22_family_and_inet(host):
    rs = m.Ruleset((m.Table("ip6", "x", (m.Chain("in", (m.Rule((m.Verdict("drop"),), S, "drop"),), "input", 0,
                                                 "filter", "accept"),), origin="nft"),), "t", "nft")
    crs = compile_ruleset(rs, host)
    v, _, st, out, _ = run(crs, mkctx(family=4))
    assert v == 1 and out[chains.OUT_RULE] == -1 and st.rule_packets.sum() == 0
    assert run(crs, mkctx(family=6))[0] == 0


def test_vmap_jump_and_miss(host):
    P = Field.DPORT
    t = m.Table("inet", "t", (
        m.Chain("in", (m.Rule((m.VerdictMap((P,), "vm"),), S, "vmap"), m.Rule((m.Verdict("accept"),), S, "acc")),
                "input", 0, "filter", "drop"),
        m.Chain("ssh", (m.Rule((m.Verdict("drop"),), S, "d"),))),
        (m.SetDef("vm", (P,), (((22, 22),), ((80, 80),), ((1000, 2000),)),
                  (m.Verdict("jump", "ssh"), m.Verdict("accept"), m.Verdict("drop")), frozenset({"interval"})),),
        "nft")
    crs = compile_ruleset(m.Ruleset((t,), "t", "nft"), host)
    assert run(crs, mkctx(dport=22))[:2] == (0, ("ssh", 1))
    assert run(crs, mkctx(dport=80))[:2] == (1, ("in", 1))
    assert run(crs, mkctx(dport=1500))[:2] == (0, ("in", 1))
    assert run(crs, mkctx(dport=443))[:2] == (1, ("in", 2))  # miss: rule does not match


def test_large_set_lookup_matches_python(host):
    rng = np.random.default_rng(1)
    addrs = sorted({int(x) for x in rng.integers(0, 1 << 32, 10000)})
    ports = [int(x) for x in rng.integers(1, 65535, len(addrs))]
    els = tuple(((V4 | a, V4 | a), (p, p)) for a, p in zip(addrs, ports))
    t = m.Table("ip", "t", (m.Chain("in", (m.Rule((m.SetMatch((Field.SRC, Field.DPORT), "big"), m.Verdict("drop")),
                                                  S, "r"),), "input", 0, "filter", "accept"),),
                (m.SetDef("big", (Field.SRC, Field.DPORT), els),), "nft")
    crs = compile_ruleset(m.Ruleset((t,), "t", "nft"), host)
    pairs = set(zip(addrs, ports))
    for i in range(300):
        a = addrs[i * 7 % len(addrs)] if i % 2 else int(rng.integers(0, 1 << 32))
        p = ports[i * 7 % len(addrs)] if i % 3 else int(rng.integers(1, 65535))
        v = run(crs, mkctx(src=a, dport=p))[0]
        assert (v == 0) == ((a, p) in pairs)


# ---------------------------------------------------------------- random rulesets vs the naive walker
IFN = ("eth0", "eth1", "eth+", "docker0", "+")


@st.composite
def match_st(draw):
    k = draw(st.integers(0, 6))
    neg = draw(st.booleans())
    if k == 0:
        return m.FieldIn(Field.PROTO, ((draw(st.sampled_from([1, 6, 17])),) * 2,), neg)
    if k == 1:
        lo = draw(st.integers(0, 100))
        return m.FieldIn(Field.DPORT, ((lo, lo + draw(st.integers(0, 40))), (200, 300)), neg)
    if k == 2:
        lo = V4 | draw(st.integers(0x0A000000, 0x0A00000F))
        return m.FieldIn(Field.SRC, ((lo, lo + draw(st.integers(0, 4))),), neg)
    if k == 3:
        return m.Masked(Field.MARK, draw(st.sampled_from([1, 3, 0xF0])), draw(st.integers(0, 3)), "eq", neg)
    if k == 4:
        return m.Iface(draw(st.sampled_from([Field.IIF, Field.OIF])), (draw(st.sampled_from(IFN)),), neg)
    if k == 5:
        return m.Masked(Field.TCP_FLAGS, draw(st.sampled_from([2, 0x12, 0x10])), 0, "any", neg)
    return m.AddrMasked(Field.DST, (1 << 128) - 256, V4 | 0x0A000000, neg)


@st.composite
def ruleset_st(draw):
    n_user = draw(st.integers(0, 3))
    names = ["INPUT"] + [f"U{i}" for i in range(n_user)]
    chains_ = []
    for ci, name in enumerate(names):
        rules = []
        for _ in range(draw(st.integers(0, 5))):
            exprs = draw(st.lists(match_st(), max_size=3))
            if draw(st.integers(0, 4)) == 0:
                exprs.append(m.MarkOp("mark", 0xFFFFFFFF ^ 0xF, draw(st.integers(0, 3))))
            if draw(st.booleans()):
                exprs.append(m.Log(prefix="x"))
            kinds = ["accept", "drop", "return", "continue", None]
            if ci + 1 < len(names):
                kinds += ["jump", "goto"]
            kind = draw(st.sampled_from(kinds))
            if kind in ("jump", "goto"):
                exprs.append(m.Verdict(kind, draw(st.sampled_from(names[ci + 1:]))))
            elif kind is not None:
                exprs.append(m.Verdict(kind))
            rules.append(m.Rule(tuple(exprs), S, "r"))
        if ci == 0:
            chains_.append(m.Chain(name, tuple(rules), "input", 0, "filter", draw(st.sampled_from(["accept", "drop"]))))
        else:
            chains_.append(m.Chain(name, tuple(rules)))
    return m.Ruleset((m.Table("ip", "filter", tuple(chains_)),), "t", "iptables")


@st.composite
def packet_st(draw):
    return mkctx(proto=draw(st.sampled_from([1, 6, 17])), dport=draw(st.integers(0, 320)),
                 src=draw(st.integers(0x0A000000, 0x0A000012)), dst=draw(st.sampled_from([0x0A000005, 0xC0A80101])),
                 mark=draw(st.integers(0, 0xFF)), iif=draw(st.sampled_from([-1, 0, 1, 2])),
                 oif=draw(st.sampled_from([-1, 0, 1])), flags=draw(st.sampled_from([2, 0x12, 0x10, 0])))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ruleset_st(), st.lists(packet_st(), min_size=1, max_size=6))
def test_eval_chain_matches_naive_walker(rs, pkts):
    host = load_host(HOST)
    crs = compile_ruleset(rs, host)
    state = chains.new_rule_state(crs)
    counters = {}
    for i, p in enumerate(pkts):
        a, b = p.copy(), p.copy()
        v, where, *_ = run(crs, a, st=state, n=40 + i)
        nv, key = naive_eval(rs, host, "filter", "INPUT", b, 40 + i, counters)
        assert v == nv
        assert where == key[1:]
        assert a[Field.MARK] == b[Field.MARK]
    for rid, r in enumerate(crs.rules):
        exp = counters.get((r["table"], r["chain"], r["rule_num"]), [0, 0])
        assert [state.rule_packets[rid], state.rule_bytes[rid]] == exp


# ---------------------------------------------------------------- destination-port dispatch
@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ruleset_st(), st.lists(packet_st(), min_size=1, max_size=6))
def test_dispatch_matches_naive_walker(rs, pkts):
    """Every chain indexed (DISPATCH_MIN_RULES = 1): same verdicts, deciding rules, marks and counters."""
    from nfreplay.replay.rules import compile as C

    old = C.DISPATCH_MIN_RULES
    C.DISPATCH_MIN_RULES = 1
    try:
        host = load_host(HOST)
        crs = compile_ruleset(rs, host)
    finally:
        C.DISPATCH_MIN_RULES = old
    state = chains.new_rule_state(crs)
    counters = {}
    for i, p in enumerate(pkts):
        a, b = p.copy(), p.copy()
        v, where, *_ = run(crs, a, st=state, n=40 + i)
        nv, key = naive_eval(rs, host, "filter", "INPUT", b, 40 + i, counters)
        assert (v, where, a[Field.MARK]) == (nv, key[1:], b[Field.MARK])
    for rid, r in enumerate(crs.rules):
        exp = counters.get((r["table"], r["chain"], r["rule_num"]), [0, 0])
        assert [state.rule_packets[rid], state.rule_bytes[rid]] == exp


def test_dispatch_large_chain_same_as_plain_walk(host):
    """A 400-rule chain of port rules (single ports, ranges, multiport lists, negations, a jump, a LOG and a
    stateful match before a port match) walked with and without its dispatch block: identical results,
    counters and traces for 3000 packets."""
    from nfreplay.replay.rules import compile as C

    rng = np.random.default_rng(7)
    lines = ["-A INPUT -m conntrack --ctstate ESTABLISHED -j ACCEPT", "-A INPUT -p tcp --dport 5000:5100 -j SUB"]
    for k in range(400):
        p = 1000 + 7 * k
        kind = k % 8
        if kind == 0:
            lines.append(f"-A INPUT -p tcp --dport {p} -j ACCEPT")
        elif kind == 1:
            lines.append(f"-A INPUT -p udp -m multiport --dports {p},{p + 3},{p + 900} -j DROP")
        elif kind == 2:
            lines.append(f"-A INPUT -p tcp --dport {p}:{p + 40} -j LOG")
        elif kind == 3:
            lines.append(f"-A INPUT -p tcp ! --dport {p} -m mark --mark {k} -j ACCEPT")
        elif kind == 4:
            lines.append(f"-A INPUT -p tcp -m limit --limit 5/sec --dport {p} -j ACCEPT")
        elif kind == 5:
            lines.append(f"-A INPUT -j MARK --set-mark {k}")
        elif kind == 6:
            lines.append(f"-A INPUT -s 10.0.0.{k % 250}/32 -p tcp --dport {p} -j RETURN")
        else:
            lines.append(f"-A INPUT -i eth1 -p tcp --dport {p - 7} -j REJECT")
    text = "*filter\n:INPUT DROP [0:0]\n:SUB - [0:0]\n" + "\n".join(lines) + "\n" + \
        "\n".join(f"-A SUB -p tcp --dport {5000 + 3 * j} -j ACCEPT" for j in range(30)) + "\nCOMMIT\n"
    rs = ipt(text)
    old = C.DISPATCH_MIN_RULES
    try:
        C.DISPATCH_MIN_RULES = 1 << 30
        plain = compile_ruleset(rs, host)
        C.DISPATCH_MIN_RULES = 1
        fast = compile_ruleset(rs, host)
    finally:
        C.DISPATCH_MIN_RULES = old

    def indexed(crs):
        h = crs.arrays.hdr
        cho = int(h[C.H_CH_OFF])
        return {c["chain"] for i, c in enumerate(crs.chains) if h[cho + C.CH_W * i + C.CH_IX] >= 0}

    assert indexed(fast) == {"INPUT", "SUB"} and indexed(plain) == set()
    sp, sf = chains.new_rule_state(plain), chains.new_rule_state(fast)
    for i in range(3000):
        dp = int(rng.choice([rng.integers(0, 65536), 1000 + 7 * rng.integers(0, 400) + rng.integers(-1, 4),
                             5000 + rng.integers(0, 101)]))
        c = mkctx(proto=int(rng.choice([6, 6, 17, 1])), dport=dp, src=0x0A000000 + int(rng.integers(0, 256)),
                  mark=int(rng.integers(0, 400)), iif=int(rng.integers(-1, 2)), ct=bool(rng.random() < 0.1))
        if rng.random() < 0.1:
            c[Field.CT_STATE] = 2
        a, b = c.copy(), c.copy()
        oa, ta, ob, tb = chains.new_out(), chains.new_trace(64), chains.new_out(), chains.new_trace(64)
        t = 1_700_000_000_000_000_000 + i * 10_000_000
        va = chains.eval_chain(plain.arrays, sp, 0, a, 60, t, oa, ta)
        vb = chains.eval_chain(fast.arrays, sf, 0, b, 60, t, ob, tb)
        assert (va, oa.tolist(), a.tolist()) == (vb, ob.tolist(), b.tolist())
        assert ta[:ta[0, 0] + 1].tolist() == tb[:tb[0, 0] + 1].tolist()
    assert sp.rule_packets.tolist() == sf.rule_packets.tolist()
    assert sp.rule_bytes.tolist() == sf.rule_bytes.tolist() and sp.sf.tolist() == sf.sf.tolist()


def test_addrtype_reads_the_embedded_host_block(host):
    crs = compile_ruleset(ipt("""*filter
-A INPUT -m addrtype --dst-type LOCAL --limit-iface-in -j ACCEPT
-A INPUT -m addrtype --dst-type BROADCAST -j DROP
-A INPUT -m addrtype ! --src-type UNICAST -j REJECT
COMMIT
"""), host)
    assert run(crs, mkctx(dst=0xCB007101, iif=0))[:2] == (1, ("INPUT", 1))
    assert run(crs, mkctx(dst=0xCB007101, iif=1))[:2] == (1, ("INPUT", 0))  # local, but of eth0: not via eth1
    assert run(crs, mkctx(dst=0xCB0071FF))[:2] == (0, ("INPUT", 2))
    assert run(crs, mkctx(src=0xE0000001, dst=0x08080808))[:2] == (0, ("INPUT", 3))
    assert run(crs, mkctx(dst=0x08080808))[:2] == (1, ("INPUT", 0))

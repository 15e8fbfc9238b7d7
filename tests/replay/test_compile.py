"""compile_ruleset: base-chain order, interval sets, interfaces, presence bits, loops, unsupported rules."""

from __future__ import annotations

import numpy as np
import pytest

from nfreplay.errors import UnsupportedRuleError
from nfreplay.replay.codes import PRESENT_PORTS, Field, Hook
from nfreplay.replay.host import load_host
from nfreplay.replay.rules import compile as C
from nfreplay.replay.rules import model as m
from nfreplay.replay.rules.iptables import parse_iptables

S = m.SourceRef("f.rules", 3, "")
HOST = {"interfaces": [{"name": "eth0", "addresses": ["203.0.113.1/24"]}, {"name": "eth1", "addresses": []},
                       {"name": "docker0", "addresses": []}]}


def R(*e):
    return m.Rule(tuple(e), S, "text")


def one_table(*chains, family="ip", origin="nft", sets=()):
    return m.Ruleset((m.Table(family, "t", tuple(chains), sets, origin),), "f.rules", origin)


@pytest.fixture(scope="module")
def host():
    return load_host(HOST)


def test_base_chain_order_nat_slot_and_families(host):
    rs = parse_iptables("*raw\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n*nat\n:PREROUTING ACCEPT [0:0]\n"
                        ":POSTROUTING ACCEPT [0:0]\nCOMMIT\n*mangle\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n"
                        "*filter\n:INPUT DROP [0:0]\nCOMMIT\n", "t")
    nft = m.Table("ip", "n", (m.Chain("pre_n", (), "prerouting", -180, "nat", "accept"),
                             m.Chain("pre_f", (), "prerouting", -120, "filter", "accept"),
                             m.Chain("pre_g", (), "prerouting", -90, "filter", "accept")), origin="nft")
    crs = C.compile_ruleset(m.Ruleset(rs.tables + (nft,), "t", "iptables"), host)
    a = crs.arrays
    pre = [(b["table"], b["chain"]) for b in crs.base_chains if b["hook"] == Hook.PREROUTING]
    # TV-24: a nat chain declared at -180 runs at the NAT core's -100 slot (after -150 and -120)
    assert pre == [("raw", "PREROUTING"), ("mangle", "PREROUTING"), ("n", "pre_f"), ("n", "pre_n"),
                   ("nat", "PREROUTING"), ("n", "pre_g")]
    assert a.hook_bc_end[Hook.PREROUTING] - a.hook_bc_start[Hook.PREROUTING] == 6
    post = range(a.hook_bc_start[Hook.POSTROUTING], a.hook_bc_end[Hook.POSTROUTING])
    assert [int(a.bc_type[i]) for i in post if crs.base_chains[i]["table"] == "nat"] == [C.BC_NAT]
    assert set(a.bc_family.tolist()) == {4}
    # policy rows: rule_num 0, kind policy, one per base chain
    pol = [r for r in crs.rules if r["kind"] == "policy"]
    assert len(pol) == len(crs.base_chains) and all(r["rule_num"] == 0 for r in pol)


def test_equal_priority_later_registration_first(host):
    t1 = m.Table("inet", "a", (m.Chain("c", (), "input", 0, "filter", "accept"),), origin="nft")
    t2 = m.Table("inet", "b", (m.Chain("c", (), "input", 0, "filter", "accept"),), origin="nft")
    crs = C.compile_ruleset(m.Ruleset((t1, t2), "t", "nft"), host)
    assert [b["table"] for b in crs.base_chains] == ["b", "a"]
    assert crs.arrays.bc_family.tolist() == [0, 0]


def test_intervals_sorted_and_merged(host):
    fi = m.FieldIn(Field.DPORT, ((80, 90), (10, 20), (21, 30), (85, 100), (5, 5)))
    crs = C.compile_ruleset(one_table(m.Chain("c", (R(fi, m.Verdict("drop")),), "input", 0)), host)
    a = crs.arrays
    s = a.ex_set[0]
    lo = (a.el_lo[a.set_start[s]:a.set_end[s], 0] ^ np.int64(-(1 << 63))).tolist()
    hi = (a.el_hi[a.set_start[s]:a.set_end[s], 0] ^ np.int64(-(1 << 63))).tolist()
    assert list(zip(lo, hi)) == [(5, 5), (10, 30), (80, 100)]
    assert a.ex_op[0] == C.OP_FIELD_IN and a.ex_pres[0] == PRESENT_PORTS


def test_interfaces_compile_to_host_indexes(host):
    def iface_vals(names):
        crs = C.compile_ruleset(one_table(m.Chain("c", (R(m.Iface(Field.IIF, names)),), "input", 0)), host)
        a = crs.arrays
        s = a.ex_set[0]
        assert a.ex_op[0] == C.OP_IFACE and a.ex_pres[0] == 0  # absent device compares as ""
        lo = (a.el_lo[a.set_start[s]:a.set_end[s], 0] ^ np.int64(-(1 << 63))).tolist()
        hi = (a.el_hi[a.set_start[s]:a.set_end[s], 0] ^ np.int64(-(1 << 63))).tolist()
        return sorted(v for x, y in zip(lo, hi) for v in range(x, y + 1))

    assert iface_vals(("eth+",)) == [0, 1]
    assert iface_vals(("docker0",)) == [2]
    assert iface_vals(("veth9",)) == []  # not in the host: never matches
    assert iface_vals(("+",)) == [-1, 0, 1, 2, 3]  # '+' matches any, the absent device too


def test_canonical_and_free_form_compile_identically(host):
    pairs = [("-A INPUT -p tcp --dport 22 -s 10.1.2.3/8 -m comment --comment \"allow ssh\" -j ACCEPT",
              "-A INPUT -s 10.0.0.0/8 -p tcp -m tcp --dport 22 -m comment --comment \"allow ssh\" -j ACCEPT"),
             ("-A INPUT -p tcp --syn -j DROP", "-A INPUT -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j DROP"),
             ("-A INPUT -p icmp --icmp-type echo-request -j ACCEPT", "-A INPUT -p icmp -m icmp --icmp-type 8 -j ACCEPT"),
             ("-A INPUT -j MARK --or-mark 0x4000", "-A INPUT -j MARK --set-xmark 0x4000/0x4000"),
             ("-A INPUT -p tcp -j REJECT", "-A INPUT -p tcp -j REJECT --reject-with icmp-port-unreachable")]
    for a, b in pairs:
        ca = C.compile_ruleset(parse_iptables(f"*filter\n{a}\nCOMMIT\n", "t"), host).arrays
        cb = C.compile_ruleset(parse_iptables(f"*filter\n{b}\nCOMMIT\n", "t"), host).arrays
        for name in ("ex_op", "ex_neg", "ex_field", "ex_pres", "ex_a0", "ex_a1", "ex_a2", "ex_a3", "ex_a4", "ex_a5",
                     "el_lo", "el_hi"):
            assert np.array_equal(getattr(ca, name), getattr(cb, name)), (a, name)


def test_jump_loop_and_unknown_chain_rejected(host):
    loop = one_table(m.Chain("c", (R(m.Verdict("jump", "a")),), "input", 0),
                     m.Chain("a", (R(m.Verdict("jump", "b")),)), m.Chain("b", (R(m.Verdict("goto", "a")),)))
    with pytest.raises(C.RulesetError, match="jump loop: a -> b -> a"):
        C.compile_ruleset(loop, host)
    with pytest.raises(C.RulesetError, match="unknown chain 'nope'"):
        C.compile_ruleset(one_table(m.Chain("c", (R(m.Verdict("jump", "nope")),), "input", 0)), host)


def test_jump_stack_depth(host):
    chains_ = [m.Chain("c", (R(m.Verdict("jump", "u0")),), "input", 0)]
    for i in range(5):
        nxt = m.Verdict("jump" if i % 2 == 0 else "goto", f"u{i + 1}")
        chains_.append(m.Chain(f"u{i}", (R(nxt),)))
    chains_.append(m.Chain("u5", ()))
    crs = C.compile_ruleset(one_table(*chains_), host)
    assert crs.arrays.max_depth == 4  # c->u0 jump, u0->u1 jump, u1->u2 goto, u2->u3 jump, u3->u4 goto, u4->u5 jump


def test_unsupported_refused_then_flagged(host):
    u = m.Unsupported("match string", "-m string --string x")
    r2 = m.Rule((m.Unsupported("target TPROXY", "-j TPROXY"),), m.SourceRef("f.rules", 4, ""), "-j TPROXY")
    rs = one_table(m.Chain("c", (R(u, m.Verdict("drop")), r2, R(m.Verdict("accept"))), "input", 0))
    with pytest.raises(UnsupportedRuleError) as ei:
        C.compile_ruleset(rs, host)
    assert "f.rules:3" in str(ei.value) and "match string" in str(ei.value) and "2 unsupported rules" in str(ei.value)
    crs = C.compile_ruleset(rs, host, allow_unsupported=True)
    assert [r["unsupported"] for r in crs.rules[:3]] == ["match string", "target TPROXY", ""]
    assert crs.arrays.ex_op[crs.arrays.rule_expr_start[0]] == C.OP_NEVER


def test_nat_rows(host):
    nat = m.Nat("snat", 0xFFFF << 32 | 0xCB007101, 0xFFFF << 32 | 0xCB007105, 1024, 2048,
                frozenset({"random-fully"}))
    rs = one_table(m.Chain("post", (R(m.FieldIn(Field.PROTO, ((17, 17),)), nat),), "postrouting", 100, "nat"))
    crs = C.compile_ruleset(rs, host)
    a = crs.arrays
    assert a.nat_kind.tolist() == [C.NAT_KINDS.index("snat")] and a.nat_family.tolist() == [4]
    assert a.nat_flags[0] == C.NATF_RANDOM_FULLY | C.NATF_PROTO_SPECIFIED | C.NATF_MAP_IPS
    assert (a.nat_addr_lo_lo[0] & 0xFFFFFFFF, a.nat_addr_hi_lo[0] & 0xFFFFFFFF) == (0xCB007101, 0xCB007105)
    assert (a.nat_port_lo[0], a.nat_port_hi[0], a.nat_rule[0]) == (1024, 2048, 0)
    assert crs.nat[0]["kind"] == "snat"


def test_missing_ipset_is_unsupported_and_supplied_ipset_works(host):
    rs = parse_iptables("*filter\n-A INPUT -m set --match-set bad src -j DROP\nCOMMIT\n", "t")
    with pytest.raises(UnsupportedRuleError, match="bad"):
        C.compile_ruleset(rs, host)
    sd = m.SetDef("bad", (Field.SRC,), (((0xFFFF << 32 | 0x0A000000, 0xFFFF << 32 | 0x0AFFFFFF),),))
    crs = C.compile_ruleset(rs, host, ipsets=(sd,))
    assert C.OP_SET in crs.arrays.ex_op.tolist()

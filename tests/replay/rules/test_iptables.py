"""The iptables front end against the kernel oracle, the spec's vectors, real rulesets and the kernel's
own formulas (xt_MARK, xt_CONNMARK, address masks) evaluated independently here."""

from __future__ import annotations

import ipaddress
import json
import re

import pytest

from nfreplay.errors import RulesetSyntaxError
from nfreplay.replay import addr
from nfreplay.replay.codes import CTS_DNAT, CTS_ESTABLISHED, CTS_NEW, CTS_RELATED, Field
from nfreplay.replay.rules import load_ruleset
from nfreplay.replay.rules import model as m
from nfreplay.replay.rules.iptables import load_ipset_save, parse_iptables, parse_rule, sniff_family

U32 = 0xFFFFFFFF


def _v4(a: str) -> int:
    return addr.to_int(a)[0]


# ---------------------------------------------------------------- kernel oracle
def _oracle_scenarios(shared_dir):
    scen = shared_dir / "tools" / "kernel-oracle" / "scenarios"
    return [d for d in sorted(scen.iterdir()) if (d / "rules.ipt").exists()]


def test_oracle_rule_texts_are_the_canonical_texts(shared_dir):
    """The oracle's per-rule `rule` field is iptables-nft -S output: our canonical text must equal it,
    rule for rule, with the same table, chain and rule number."""
    dirs = _oracle_scenarios(shared_dir)
    assert len(dirs) >= 5
    for d in dirs:
        rs = load_ruleset(d / "rules.ipt")
        oracle = json.loads((d / "oracle_out.json").read_text())
        ours = {(t.name, c.name, i): r.text for t, c, i, r in rs.rules()}
        theirs = {(x["table"], x["chain"], x["rule_number"]): x["rule"] for x in oracle["per_rule_counters"]}
        assert ours == theirs, d.name
        pol = {(x["table"], x["chain"]): x["policy"] for x in oracle["policy_counters"]}
        for t in rs.tables:
            for c in t.chains:
                if (t.name, c.name) in pol:
                    assert c.policy == pol[(t.name, c.name)], (d.name, c.name)
                    assert c.hook == next(x["hook"] for x in oracle["policy_counters"]
                                          if (x["table"], x["chain"]) == (t.name, c.name))


def test_oracle_rules_lower_to_the_expected_model(shared_dir):
    d = shared_dir / "tools" / "kernel-oracle" / "scenarios" / "03_dnat_port_forward"
    rs = load_ruleset(d / "rules.ipt")
    nat = next(t for t in rs.tables if t.name == "nat")
    pre = nat.chain("PREROUTING")
    assert (pre.hook, pre.priority, pre.type, pre.policy) == ("prerouting", -100, "nat", "accept")
    assert pre.rules[0].exprs == (
        m.Iface(Field.IIF, ("wan0",)), m.FieldIn(Field.PROTO, ((6, 6),)), m.FieldIn(Field.DPORT, ((8080, 8080),)),
        m.Nat("dnat", _v4("10.0.0.80"), _v4("10.0.0.80"), 80, 80, frozenset(), 4))
    fwd = next(t for t in rs.tables if t.name == "filter").chain("FORWARD")
    assert fwd.policy == "drop"
    assert fwd.rules[0].exprs[0] == m.Masked(Field.CT_STATE, CTS_RELATED | CTS_ESTABLISHED, 0, "any")
    assert m.Masked(Field.CT_STATE, CTS_DNAT, 0, "any") in fwd.rules[1].exprs
    assert fwd.rules[1].exprs[0] == m.FieldIn(Field.DST, ((_v4("10.0.0.80"), _v4("10.0.0.80")),))
    assert fwd.rules[1].source.line == 13 and fwd.rules[1].source.text.startswith("-A FORWARD -d 10.0.0.80/32")


# ---------------------------------------------------------------- spec TV-26 and §3.2
TV26 = [
    ('-A INPUT -p tcp --dport 22 -s 10.1.2.3/8 -m comment --comment "allow ssh" -j ACCEPT',
     '-A INPUT -s 10.0.0.0/8 -p tcp -m tcp --dport 22 -m comment --comment "allow ssh" -j ACCEPT'),
    ("-A INPUT -p tcp --syn -j DROP", "-A INPUT -p tcp -m tcp --tcp-flags FIN,SYN,RST,ACK SYN -j DROP"),
    ("-A INPUT -p icmp --icmp-type echo-request -j ACCEPT", "-A INPUT -p icmp -m icmp --icmp-type 8 -j ACCEPT"),
    ("-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000", "-A KUBE-MARK-MASQ -j MARK --set-xmark 0x4000/0x4000"),
    ("-A INPUT -p tcp -j REJECT", "-A INPUT -p tcp -j REJECT --reject-with icmp-port-unreachable"),
    ("-A INPUT -m limit --limit 180/hour -j LOG", "-A INPUT -m limit --limit 3/min -j LOG"),
    ("-A INPUT -p 47 -j ACCEPT", "-A INPUT -p 47 -j ACCEPT"),
    ("-A INPUT -p gre -j ACCEPT", "-A INPUT -p 47 -j ACCEPT"),
    # §3.2 and §7.4 forms
    ("-A X -m comment --comment \"kubernetes service portals\" -m tcp -p tcp -d 10.0.0.1 --dport 80 -j ACCEPT",
     '-A X -d 10.0.0.1/32 -p tcp -m comment --comment "kubernetes service portals" -m tcp --dport 80 -j ACCEPT'),
    ("-A X -j MARK --xor-mark 0x4000", "-A X -j MARK --set-xmark 0x4000/0x0"),
    ("-A X -m statistic --mode random --probability 0.3333333333", "-A X -m statistic --mode random "
                                                                     "--probability 0.33333333349"),
    ("-A X -m statistic --mode random --probability 0.25", "-A X -m statistic --mode random "
                                                             "--probability 0.25000000000"),
    ("-A X -m state --state ESTABLISHED,RELATED", "-A X -m state --state RELATED,ESTABLISHED"),
    ("-A X -p tcp -m multiport --dports 80,443,1000:2000 -j ACCEPT",
     "-A X -p tcp -m multiport --dports 80,443,1000:2000 -j ACCEPT"),
    ("-A X -s 10.1.2.3/255.0.255.0", "-A X -s 10.0.2.0/255.0.255.0"),
    ("-A X ! -s 0.0.0.0/0", "-A X ! -s 0.0.0.0/0"),
    ("-A X -s 0.0.0.0/0 -i +", "-A X"),
    ("-A X -p tcp --dport ! 22", "-A X -p tcp -m tcp ! --dport 22"),  # the old intrapositioned form
    ("--append X --protocol=udp --source=1.2.3.4 --jump=ACCEPT", "-A X -s 1.2.3.4/32 -p udp -j ACCEPT"),
    ("-A X -ptcp -d5.6.7.8/32 -ieth0 -jACCEPT", "-A X -d 5.6.7.8/32 -i eth0 -p tcp -j ACCEPT"),
    ("-A X -j LOG --log-prefix \"say \\\"hi\\\" \" --log-level debug",
     '-A X -j LOG --log-prefix "say \\"hi\\" " --log-level 7'),
    ("-A X -p tcp -j DNAT --to-destination 10.0.0.1:http", "-A X -p tcp -j DNAT --to-destination 10.0.0.1:80"),
    ("-A X -j CONNMARK --restore-mark --mask 0xff", "-A X -j CONNMARK --restore-mark --nfmask 0xff --ctmask 0xff"),
    ("-A X -m recent --name ssh --rcheck --seconds 60 --hitcount 4 -j DROP",
     "-A X -m recent --rcheck --seconds 60 --hitcount 4 --name ssh --mask 255.255.255.255 --rsource -j DROP"),
]


@pytest.mark.parametrize("free,canonical", TV26)
def test_tv26_free_form_saves_canonically_with_identical_semantics(free, canonical):
    table = "nat" if "DNAT" in free else "mangle" if "CONNMARK" in free else "filter"
    chain = "OUTPUT" if table == "nat" else "INPUT"
    a = parse_rule(free, table=table, chain=chain)
    b = parse_rule(canonical, table=table, chain=chain)
    assert a.text == canonical
    assert b.text == canonical
    assert a.exprs == b.exprs


def test_comment_and_counters_are_kept():
    rs = parse_iptables('*filter\n:INPUT ACCEPT [5:300]\n[12:3456] -A INPUT -m comment --comment "a b" -j DROP\n'
                        "-A INPUT -c 7 8 -j ACCEPT\nCOMMIT\n")
    inp = rs.tables[0].chain("INPUT")
    assert [r.comment for r in inp.rules] == ["a b", None]
    assert [r.counters for r in inp.rules] == [(12, 3456), (7, 8)]
    assert inp.source.text == ":INPUT ACCEPT [5:300]"


# ---------------------------------------------------------------- kernel formulas, evaluated here
def _apply_markop(op: m.MarkOp, mark: int, ctmark: int) -> tuple[int, int]:
    src = op.xor_value if op.src == "const" else ((mark if op.src == "mark" else ctmark) & op.src_mask)
    cur = mark if op.dest == "mark" else ctmark
    new = (((cur & op.and_mask) ^ src) | op.or_value) & U32
    return (new, ctmark) if op.dest == "mark" else (mark, new)


MARKS = [0, 1, 0x4000, 0xFFFF, 0x12345678, 0xDEADBEEF, U32, 0x80000000, 0x0F0F0F0F]


@pytest.mark.parametrize("opt,kernel", [
    # man iptables-extensions MARK: "--set-mark v/m zeroes the bits of m and ORs v", and/or/xor literal
    ("--set-xmark 0x4000/0xff00", lambda x: (x & ~0xFF00 & U32) ^ 0x4000),
    ("--set-mark 0x4000", lambda x: 0x4000),
    ("--set-mark 0x1/0x3", lambda x: (x & ~0x3 & U32) | 0x1),
    ("--or-mark 0x4000", lambda x: x | 0x4000),
    ("--and-mark 0xff", lambda x: x & 0xFF),
    ("--xor-mark 0x4000", lambda x: x ^ 0x4000),
])
def test_mark_target_computes_like_xt_mark(opt, kernel):
    (op,) = parse_rule(f"-j MARK {opt}", table="mangle").exprs
    for mark in MARKS:
        assert _apply_markop(op, mark, 0)[0] == kernel(mark), (opt, hex(mark))


@pytest.mark.parametrize("opt,kernel", [
    # xt_connmark.c connmark_tg_shift: save ctmark = (ctmark & ~ctmask) ^ (mark & nfmask);
    # restore mark = (mark & ~nfmask) ^ (ctmark & ctmask); set ctmark = (ctmark & ~m) ^ v
    ("--save-mark", lambda mk, ct: (mk, mk)),
    ("--save-mark --nfmask 0xff --ctmask 0xffff", lambda mk, ct: (mk, (ct & ~0xFFFF & U32) ^ (mk & 0xFF))),
    ("--restore-mark", lambda mk, ct: (ct, ct)),
    ("--restore-mark --nfmask 0xf0 --ctmask 0xff", lambda mk, ct: ((mk & ~0xF0 & U32) ^ (ct & 0xFF), ct)),
    ("--set-xmark 0x10/0x30", lambda mk, ct: (mk, (ct & ~0x30 & U32) ^ 0x10)),
    ("--set-mark 0x7", lambda mk, ct: (mk, 7)),
])
def test_connmark_target_computes_like_xt_connmark(opt, kernel):
    (op,) = parse_rule(f"-j CONNMARK {opt}", table="mangle").exprs
    for mk in MARKS:
        for ct in MARKS[::2]:
            assert _apply_markop(op, mk, ct) == kernel(mk, ct), (opt, hex(mk), hex(ct))


def _eval_addr(e, a: int) -> bool:
    if isinstance(e, m.FieldIn):
        return any(lo <= a <= hi for lo, hi in e.values) != e.negate
    return ((a & e.mask) == e.value) != e.negate


@pytest.mark.parametrize("spec", ["10.1.2.3/8", "192.168.7.9/255.255.0.0", "10.11.12.13/255.0.255.0",
                                  "172.16.0.1", "! 10.0.0.0/8", "1.2.3.4/0.0.0.255"])
def test_source_match_is_the_kernel_masked_compare(spec):
    """ip_packet_match: (saddr & smsk) == src, src pre-masked; ! inverts."""
    neg = spec.startswith("!")
    a_s, _, mk = spec.lstrip("! ").partition("/")
    mask = (U32 << (32 - int(mk))) & U32 if mk.isdigit() else int(ipaddress.IPv4Address(mk)) if mk else U32
    want_val = int(ipaddress.IPv4Address(a_s)) & mask
    (e,) = parse_rule(f"{'! ' if neg else ''}-s {spec.lstrip('! ')}").exprs
    for probe in ("10.1.2.3", "10.200.2.9", "192.168.1.1", "192.169.7.9", "172.16.0.1", "1.2.3.4", "9.9.9.4",
                  "10.11.12.13", "10.99.12.77", "0.0.0.0", "255.255.255.255"):
        p = int(ipaddress.IPv4Address(probe))
        assert _eval_addr(e, addr.V4_MAPPED | p) == (((p & mask) == want_val) != neg), (spec, probe)
    # an IPv6 address never matches an IPv4 rule's positive test
    if not neg:
        assert not _eval_addr(e, int(ipaddress.IPv6Address("2001:db8::1")))


def test_address_lists_expand_into_rules_in_iptables_order():
    rs = parse_iptables("*filter\n-A INPUT -s 10.0.0.0/8,192.168.0.0/16 -d 1.1.1.1,2.2.2.2 -j ACCEPT\nCOMMIT\n")
    assert [r.text for _t, _c, _i, r in rs.rules()] == [
        "-A INPUT -s 10.0.0.0/8 -d 1.1.1.1/32 -j ACCEPT", "-A INPUT -s 10.0.0.0/8 -d 2.2.2.2/32 -j ACCEPT",
        "-A INPUT -s 192.168.0.0/16 -d 1.1.1.1/32 -j ACCEPT", "-A INPUT -s 192.168.0.0/16 -d 2.2.2.2/32 -j ACCEPT"]
    assert {r.source.line for _t, _c, _i, r in rs.rules()} == {2}


def test_tcp_flags_icmp_and_ports_lower_to_fields():
    assert parse_rule("-p tcp --tcp-flags ALL NONE").exprs[1] == m.Masked(Field.TCP_FLAGS, 0x3F, 0)
    assert parse_rule("-p tcp ! --syn").exprs[1] == m.Masked(Field.TCP_FLAGS, 0x17, 0x02, "eq", True)
    assert parse_rule("-p tcp --sport 1024:").exprs[1] == m.FieldIn(Field.SPORT, ((1024, 65535),))
    assert parse_rule("-p icmp --icmp-type port-unreachable").exprs[1:] == (
        m.FieldIn(Field.ICMP_TYPE, ((3, 3),)), m.FieldIn(Field.ICMP_CODE, ((3, 3),)))
    assert parse_rule("-p icmp --icmp-type 3/4").text == "-A INPUT -p icmp -m icmp --icmp-type 3/4"
    r = parse_rule("-p ipv6-icmp --icmpv6-type neighbour-solicitation -j ACCEPT", family="ip6")
    assert r.text == "-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 135 -j ACCEPT"
    assert r.exprs[:2] == (m.FieldIn(Field.PROTO, ((58, 58),)), m.FieldIn(Field.ICMP_TYPE, ((135, 135),)))
    assert parse_rule("-f").exprs == (m.FieldIn(Field.FRAG, ((1, 0x1FFF),)),)
    assert parse_rule("-i eth+ ! -o wg0", chain="FORWARD").exprs == (
        m.Iface(Field.IIF, ("eth+",)), m.Iface(Field.OIF, ("wg0",), True))


def test_stateful_params():
    (lim,) = parse_rule("-m limit --limit 2/sec --limit-burst 3").exprs
    assert (lim.kind, lim.get("rate_num"), lim.get("rate_den_s"), lim.get("burst"), lim.get("avg")) == \
        ("limit", 2, 1, 3, 5000)  # avg = XT_LIMIT_SCALE * 1 s / 2
    (st,) = parse_rule("-m statistic --mode nth --every 3 --packet 1").exprs
    assert (st.get("mode"), st.get("every"), st.get("packet")) == ("nth", 3, 1)
    (rc,) = parse_rule("-m recent --update --seconds 30 --hitcount 6 --name DEFAULT --rsource").exprs
    assert (rc.get("cmd"), rc.get("seconds"), rc.get("hitcount"), rc.get("side"), rc.get("mask")) == \
        ("update", 30, 6, "source", U32)
    (cl,) = parse_rule("-p tcp -m connlimit --connlimit-above 10 --connlimit-mask 24").exprs[1:]
    assert (cl.get("above"), cl.get("mask"), cl.get("saddr")) == (10, 24, True)
    (hl,) = parse_rule("-m hashlimit --hashlimit-upto 5/min --hashlimit-mode srcip --hashlimit-name x").exprs
    assert (hl.get("rate_num"), hl.get("rate_den_s"), hl.get("mode"), hl.get("burst"), hl.get("upto")) == \
        (5, 60, ("srcip",), 5, True)
    (ct,) = parse_rule("-m conntrack ! --ctstate NEW,DNAT").exprs
    assert ct == m.Masked(Field.CT_STATE, CTS_NEW | CTS_DNAT, 0, "any", True)


def test_targets_lower_to_statements():
    assert parse_rule("-j NFQUEUE --queue-num 3 --queue-bypass").exprs == (m.Verdict("queue", None, 3, True),)
    assert parse_rule("-j QUEUE").exprs == (m.Verdict("queue", None, 0, False),)
    assert parse_rule("-j CT --notrack", table="raw", chain="PREROUTING").exprs == (m.CtSet(notrack=True),)
    assert parse_rule("-j NOTRACK", table="raw", chain="OUTPUT").exprs == (m.CtSet(notrack=True),)
    assert parse_rule("-p tcp -j CT --helper ftp --zone 5", table="raw", chain="PREROUTING").exprs[1] == \
        m.CtSet(False, "ftp", 5)
    assert parse_rule("-j LOG --log-prefix x --log-tcp-options").exprs == (m.Log("log", "x", 4, 0, ("tcp-options",)),)
    assert parse_rule("-j NFLOG --nflog-group 5 --nflog-prefix p").exprs == (m.Log("nflog", "p", 4, 5),)
    assert parse_rule("-j REJECT --reject-with host-prohib").exprs == (m.Reject("icmp-host-prohibited"),)
    assert parse_rule("-j REJECT", family="ip6").exprs == (m.Reject("icmp6-port-unreachable"),)
    nat = parse_rule("-p udp -j SNAT --to-source 1.2.3.4-1.2.3.9:1000-2000 --random-fully", table="nat",
                     chain="POSTROUTING").exprs[1]
    assert nat == m.Nat("snat", _v4("1.2.3.4"), _v4("1.2.3.9"), 1000, 2000, frozenset({"random-fully"}), 4)
    n6 = parse_rule("-p tcp -j DNAT --to-destination [2001:db8::5]:8080", family="ip6", table="nat",
                    chain="PREROUTING")
    assert n6.text.endswith("--to-destination [2001:db8::5]:8080")
    assert n6.exprs[1].addr_lo == int(ipaddress.IPv6Address("2001:db8::5")) and n6.exprs[1].port_lo == 8080
    assert parse_rule("-j MASQUERADE --random", table="nat", chain="POSTROUTING").exprs == (
        m.Nat("masquerade", None, None, 0, 0, frozenset({"random"}), 4),)
    nm = parse_rule("-j NETMAP --to 10.1.0.0/16", table="nat", chain="PREROUTING").exprs[0]
    assert (nm.kind, nm.addr_lo, nm.addr_hi) == ("netmap", _v4("10.1.0.0"), _v4("10.1.255.255"))
    assert nm.prefix_mask & U32 == 0xFFFF0000
    assert parse_rule("-p tcp --syn -j TCPMSS --clamp-mss-to-pmtu", table="mangle", chain="FORWARD").exprs[-1] == \
        m.Noop("TCPMSS", "--clamp-mss-to-pmtu")
    assert parse_rule("-g OTHER").exprs == (m.Verdict("goto", "OTHER"),)


def test_unsupported_constructs_are_recorded_not_errors():
    text = ("*filter\n:INPUT DROP [0:0]\n:X - [0:0]\n"
            "-A INPUT -m owner --uid-owner 1000 -j ACCEPT\n"
            "-A INPUT -m physdev --physdev-in eth0 -j ACCEPT\n"
            "-A INPUT -j TEE --gateway 1.2.3.4\n"
            "-A INPUT -j SOMETHINGNEW --with-option 3\n"
            "-A INPUT -m brandnew --foo bar -j ACCEPT\n"
            "-A INPUT -j NOSUCHCHAIN\n"
            "-A INPUT -j X\nCOMMIT\n")
    rs = parse_iptables(text, "t.rules")
    feats = [(ref.line, u.feature.split(" (")[0].split(":")[0]) for ref, u in rs.unsupported]
    assert feats == [(4, "owner match"), (5, "physdev match"), (6, "TEE target"),
                     (7, "unknown target 'SOMETHINGNEW'"), (8, "unknown match 'brandnew'"),
                     (9, "jump to chain 'NOSUCHCHAIN' that is not defined in the ruleset")]
    rules = rs.tables[0].chain("INPUT").rules
    assert rules[0].text == "-A INPUT -m owner --uid-owner 1000 -j ACCEPT"
    assert all(any(isinstance(e, m.Unsupported) for e in r.exprs) for r in rules[:6])
    assert not any(isinstance(e, m.Verdict) for e in rules[5].exprs)  # the dangling jump never jumps
    assert rules[6].exprs == (m.Verdict("jump", "X"),)
    assert [u.text for _r, u in rs.unsupported][:1] == ["-A INPUT -m owner --uid-owner 1000 -j ACCEPT"]


# ---------------------------------------------------------------- file structure
def test_iptables_S_output_and_free_form_commands():
    text = ("# table: filter\n-P INPUT DROP\n-P FORWARD DROP\n-P OUTPUT ACCEPT\n-N LOGDROP\n"
            "-A INPUT -j LOGDROP\n-I INPUT -i lo -j ACCEPT\n-I INPUT 2 -p tcp --dport 22 -j ACCEPT\n"
            "-A LOGDROP -j LOG\n"
            "-P PREROUTING ACCEPT\n-P INPUT ACCEPT\n-P OUTPUT ACCEPT\n-P POSTROUTING ACCEPT\n"
            "-A POSTROUTING -o wan0 -j MASQUERADE\n"
            "iptables -t mangle -A FORWARD -j MARK --set-mark 1\n")
    rs = parse_iptables(text, "rules.txt")
    assert [t.name for t in rs.tables] == ["filter", "nat", "mangle"]
    f = rs.tables[0]
    assert [(c.name, c.policy) for c in f.chains] == [("INPUT", "drop"), ("FORWARD", "drop"), ("OUTPUT", "accept"),
                                                      ("LOGDROP", None)]
    assert [r.text for r in f.chain("INPUT").rules] == [
        "-A INPUT -i lo -j ACCEPT", "-A INPUT -p tcp -m tcp --dport 22 -j ACCEPT", "-A INPUT -j LOGDROP"]
    assert rs.tables[1].chain("POSTROUTING").rules[0].text == "-A POSTROUTING -o wan0 -j MASQUERADE"
    assert rs.tables[2].chain("FORWARD").rules[0].text == "-A FORWARD -j MARK --set-xmark 0x1/0xffffffff"
    assert rs.fmt == "iptables" and len(rs.digest) == 64


def test_builtin_chain_model():
    rs = parse_iptables("*raw\nCOMMIT\n*mangle\n:OUTPUT DROP [0:0]\nCOMMIT\n*security\nCOMMIT\n")
    got = {(t.name, c.name): (c.hook, c.priority, c.type, c.policy) for t in rs.tables for c in t.chains}
    assert got[("raw", "PREROUTING")] == ("prerouting", -300, "filter", "accept")
    assert got[("mangle", "OUTPUT")] == ("output", -150, "route", "drop")
    assert got[("security", "FORWARD")] == ("forward", 50, "filter", "accept")
    assert all(t.origin == "iptables" and t.family == "ip" for t in rs.tables)


def test_ip6tables_save_is_sniffed_and_parsed():
    text = ("# Generated by ip6tables-save v1.8.9\n*filter\n:INPUT DROP [0:0]\n"
            "-A INPUT -s 2001:db8::/32 -p ipv6-icmp -m icmp6 --icmpv6-type 128 -j ACCEPT\n"
            "-A INPUT -s fe80::1/ffff:ffff:: -j ACCEPT\n-A INPUT -m hl --hl-lt 2 -j DROP\n"
            "-A INPUT -j REJECT\nCOMMIT\n")
    rs = parse_iptables(text, "x")
    assert rs.tables[0].family == "ip6"
    rules = rs.tables[0].chain("INPUT").rules
    lo = int(ipaddress.IPv6Address("2001:db8::"))
    assert rules[0].exprs[0] == m.FieldIn(Field.SRC, ((lo, lo | ((1 << 96) - 1)),))
    assert rules[1].text == "-A INPUT -s fe80::/32 -j ACCEPT"
    assert rules[2].exprs == (m.FieldIn(Field.TTL, ((0, 1),)), m.Verdict("drop"))
    assert rules[3].text == "-A INPUT -j REJECT --reject-with icmp6-port-unreachable"
    assert sniff_family("-A INPUT -s 10.0.0.1 -j DROP\n") == "ip"
    assert sniff_family("-A INPUT -p tcp -j DNAT --to-destination 1.2.3.4:80\n") == "ip"
    assert sniff_family("-A INPUT -d ::1/128 -j ACCEPT\n") == "ip6"


def test_jump_loops_and_hook_restrictions_are_rejected():
    with pytest.raises(RulesetSyntaxError, match="loop") as e:
        parse_iptables("*filter\n:A - [0:0]\n:B - [0:0]\n-A INPUT -j A\n-A A -j B\n-A B -j A\nCOMMIT\n", "f")
    assert (e.value.line, e.value.column, e.value.token) == (6, 9, "A")
    with pytest.raises(RulesetSyntaxError, match="only valid in PREROUTING, OUTPUT") as e:
        parse_iptables("*nat\n:D - [0:0]\n-A POSTROUTING -j D\n-A D -j DNAT --to-destination 1.2.3.4\nCOMMIT\n", "f")
    assert (e.value.line, e.value.token) == (4, "DNAT")
    with pytest.raises(RulesetSyntaxError, match="filter table"):
        parse_iptables("*mangle\n-A INPUT -j REJECT\nCOMMIT\n")
    with pytest.raises(RulesetSyntaxError, match="can't use -o with INPUT"):
        parse_iptables("*filter\n-A INPUT -o eth0 -j DROP\nCOMMIT\n")
    # in a user chain -o is accepted (and never matches on input)
    parse_iptables("*filter\n:U - [0:0]\n-A INPUT -j U\n-A U -o eth0 -j DROP\nCOMMIT\n")


@pytest.mark.parametrize("text,line,col,token,reason", [
    ("*filter\n:INPUT DROP [0:0]\n-A INPUT -p tcp --dport 70000 -j ACCEPT\nCOMMIT\n", 3, 25, "70000", "out of range"),
    ("*filter\n-A INPUT -p tcp --dprot 22 -j ACCEPT\nCOMMIT\n", 2, 17, "--dprot", "unknown option"),
    ("*filter\n-A INPUT -j ACCEPT\n", 1, 1, "*filter", "no COMMIT"),
    ("# c\n-A INPUT -j ACCEPT\n*filter\nCOMMIT\n", 2, 1, "-A", "before a table"),
    ("*filter\n-A NOPE -j ACCEPT\nCOMMIT\n", 2, 4, "NOPE", "does not exist"),
    ("*filter\n-A INPUT -s 10.0.0.300 -j DROP\nCOMMIT\n", 2, 13, "10.0.0.300", "invalid address"),
    ("*filter\n  -A INPUT -m comment --comment \"unterminated\nCOMMIT\n", 2, 33, '"unterminated', "unterminated"),
    ("*filter\n:INPUT MAYBE [0:0]\nCOMMIT\n", 2, 8, "MAYBE", "ACCEPT or DROP"),
    ("*filter\n-A INPUT -m tcp --dport 22\nCOMMIT\n", 2, 13, "tcp", "needs `-p tcp`"),
    ("*nat\n-A POSTROUTING -j SNAT --to-source 1.2.3.4:80\nCOMMIT\n", 2, 36, "1.2.3.4:80", "-p tcp"),
    ("*filter\n-A INPUT ! -p all\nCOMMIT\n", 2, 15, "all", "never match"),
    ("*bogus\nCOMMIT\n", 1, 2, "bogus", "unknown table"),
    ("*filter\n-A INPUT -j LOG --log-prefix 123456789012345678901234567890\nCOMMIT\n", 2, 30,
     "123456789012345678901234567890", "29"),
])
def test_error_locations_are_exact(text, line, col, token, reason):
    with pytest.raises(RulesetSyntaxError) as e:
        parse_iptables(text, "bad.rules")
    err = e.value
    assert (err.source, err.line, err.column, err.token) == ("bad.rules", line, col, token), str(err)
    assert reason in err.reason
    src_line = text.splitlines()[line - 1]
    assert src_line[col - 1:].startswith(token)
    assert str(err).startswith(f"bad.rules:{line}:{col}: ")


# ---------------------------------------------------------------- real rulesets
IPTABLES_FILES = ["iptables__fedora27-ip6tables.rules", "iptables__fedora27-iptables.rules",
                  "iptables__firewalld-ipt-save-completed.rules", "iptables__ipt-save-filter.rules",
                  "iptables__wireless.rules", "moby__iptablesdoc-usernet-portmap.iptables-S", "ufw__after.rules",
                  "ufw__after6.rules", "ufw__before.rules", "ufw__before6.rules", "ufw__user.rules", "ufw__user6.rules"]


@pytest.mark.parametrize("name", IPTABLES_FILES)
def test_corpus_rulesets_load(corpus_dir, name):
    path = corpus_dir / "rulesets" / name
    text = path.read_text()
    rs = load_ruleset(path)
    want_family = "ip6" if ("ip6" in name or "6.rules" in name) else "ip"
    assert {t.family for t in rs.tables} <= {want_family}
    # an independent count: every -A line is one rule (these files have no address lists)
    n_append = sum(1 for ln in text.splitlines() if re.match(r"^(\[\d+:\d+\]\s+)?-A\s", ln.strip()))
    assert sum(1 for _ in rs.rules()) == n_append
    for _t, _c, _i, r in rs.rules():
        assert r.text.startswith(f"-A {_c.name}")
        assert text.splitlines()[r.source.line - 1].strip() == r.source.text
        # the canonical text re-parses to the same rule
        if not any(isinstance(e, m.Unsupported) for e in r.exprs):
            again = parse_rule(r.text, family=_t.family, table=_t.name, chain=_c.name)
            assert again.text == r.text and again.exprs == r.exprs
    allowed = ("jump to chain", "rt match", "CT --helper")
    assert all(u.feature.startswith(allowed) for _ref, u in rs.unsupported), rs.unsupported


def test_ufw_rule_semantics(corpus_dir):
    rs = load_ruleset(corpus_dir / "rulesets" / "ufw__before.rules")
    f = rs.tables[0]
    rules = f.chain("ufw-before-input").rules
    assert rules[0].exprs == (m.Iface(Field.IIF, ("lo",)), m.Verdict("accept"))
    not_local = f.chain("ufw-not-local").rules
    assert any(e == m.AddrType("dst", frozenset({"LOCAL"})) for e in not_local[0].exprs)
    lim = next(e for r in not_local for e in r.exprs if isinstance(e, m.Stateful))
    assert (lim.get("rate_num"), lim.get("rate_den_s"), lim.get("burst")) == (3, 60, 10)


# ---------------------------------------------------------------- ipset
def test_ipset_save_contents():
    text = ("create docker-ext-bridges-v4 hash:net family inet hashsize 1024 maxelem 65536\n"
            "add docker-ext-bridges-v4 172.17.0.0/16\nadd docker-ext-bridges-v4 192.0.2.0/24\n"
            "create web hash:ip,port family inet\nadd web 10.0.0.1,tcp:80\nadd web 10.0.0.2,8000-8080\n")
    sets = load_ipset_save(text, "sets.txt")
    assert [s.name for s in sets] == ["docker-ext-bridges-v4", "web"]
    a, b = sets
    assert a.key_fields == (Field.SRC,)
    assert a.elements == (((_v4("172.17.0.0"), _v4("172.17.255.255")),), ((_v4("192.0.2.0"), _v4("192.0.2.255")),))
    assert b.key_fields == (Field.SRC, Field.DPORT)
    assert b.elements[1] == ((_v4("10.0.0.2"), _v4("10.0.0.2")), (8000, 8080))
    assert "type:hash:ip,port" in b.flags
    with pytest.raises(RulesetSyntaxError) as e:
        load_ipset_save("add nope 1.2.3.4\n", "s")
    assert (e.value.line, e.value.token) == (1, "nope")
    r = parse_rule("-m set ! --match-set web src,dst -j DROP", chain="FORWARD")
    assert r.exprs[0] == m.SetMatch((Field.SRC, Field.DPORT), "web", True)


def test_docs_module_reference_is_generated_from_the_registry():
    from pathlib import Path

    from nfreplay.replay.rules.iptables_matches import help_text

    doc = (Path(__file__).resolve().parents[3] / "docs" / "iptables.md").read_text()
    assert help_text() in doc


def _spec_iptables_blocks(shared_dir):
    """The iptables rulesets of hooks-rules-nat.md §8 (code blocks with a *table line). The spec
    abbreviates: a table's COMMIT is often left out, so one is added before each following table."""
    text = (shared_dir / "spec" / "hooks-rules-nat.md").read_text()
    sec = text[text.index("## 8. Test vectors"):text.index("## 9.")]
    blocks = []
    for chunk in sec.split("**TV-")[1:]:
        tv = "TV-" + re.match(r"\d+", chunk).group()
        code = re.search(r"```\n(.*?)```", chunk, re.S)
        if code is None:
            continue
        body = code.group(1)
        if not re.search(r"^\*(filter|nat|raw|mangle|security)\s*$", body, re.M):
            continue
        out, open_ = [], False
        for ln in body.splitlines():
            if ln.startswith("*"):
                if open_:
                    out.append("COMMIT")
                open_ = True
            elif ln.strip() == "COMMIT":
                open_ = False
            out.append(ln)
        if open_:
            out.append("COMMIT")
        blocks.append((tv, "\n".join(out) + "\n"))
    return blocks


def test_spec_section8_rulesets_parse(shared_dir):
    blocks = _spec_iptables_blocks(shared_dir)
    assert len(blocks) >= 15
    for tv, text in blocks:
        rs = parse_iptables(text, tv)
        n = sum(1 for ln in text.splitlines() if ln.startswith("-A "))
        assert sum(1 for _ in rs.rules()) == n, tv
        assert not rs.unsupported, (tv, rs.unsupported)
    by = dict(blocks)
    tv3 = parse_iptables(by["TV-3"]).tables[0].chain("INPUT").rules[0]
    assert tv3.exprs[:2] == (m.FieldIn(Field.PROTO, ((6, 6),)), m.Masked(Field.TCP_FLAGS, 0x17, 0x02, "eq", True))
    tv7 = parse_iptables(by["TV-7"]).tables[0]
    assert tv7.chain("A").rules[0].exprs == (m.Verdict("goto", "B"),)


def test_several_files_apply_like_iptables_restore_noflush(corpus_dir, tmp_path):
    d = corpus_dir / "rulesets"
    rs = load_ruleset([d / "ufw__before.rules", d / "ufw__user.rules", d / "ufw__after.rules",
                       d / "ufw__before6.rules"])
    assert [(t.family, t.name) for t in rs.tables] == [("ip", "filter"), ("ip6", "filter")]
    f = rs.tables[0]
    names = [c.name for c in f.chains]
    assert "ufw-before-input" in names and "ufw-user-input" in names and "ufw-after-input" in names
    # only chains ufw itself creates (outside these files) remain undefined
    assert {re.search(r"'(.+?)'", u.feature).group(1) for _r, u in rs.unsupported if "jump" in u.feature} <= {
        "ufw-logging-deny", "ufw-skip-to-policy-input", "ufw6-logging-deny"}
    a = tmp_path / "a.rules"
    a.write_text("*filter\n:X - [0:0]\n-A INPUT -j X\n-A X -j DROP\nCOMMIT\n")
    b = tmp_path / "b.rules"
    b.write_text("*filter\n:INPUT DROP [0:0]\n:X - [0:0]\n-A X -j ACCEPT\n-A INPUT -j LOG\nCOMMIT\n")
    rs = load_ruleset([a, b])
    t = rs.tables[0]
    assert [r.text for r in t.chain("X").rules] == ["-A X -j ACCEPT"]  # redeclared: flushed
    assert [r.text for r in t.chain("INPUT").rules] == ["-A INPUT -j X", "-A INPUT -j LOG"]
    assert t.chain("INPUT").policy == "drop"
    assert [str(r.source) for r in t.chain("INPUT").rules] == [f"{a}:3", f"{b}:5"]


def test_set_match_fields_follow_the_ipset_type():
    from nfreplay.replay.rules.iptables import resolve_set_matches

    sets = load_ipset_save("create pairs hash:net,net family inet\nadd pairs 10.0.0.0/8,192.168.0.0/16\n"
                           "create ports bitmap:port range 0-1024\nadd ports 22\n")
    rs = parse_iptables("*filter\n-A FORWARD -m set --match-set pairs src,dst -j DROP\n"
                        "-A FORWARD -m set ! --match-set ports dst -j DROP\n-A FORWARD -m set --match-set other src"
                        " -j DROP\nCOMMIT\n")
    before = [r.exprs[0] for _t, _c, _i, r in rs.rules()]
    assert before[0].fields == (Field.SRC, Field.DPORT)  # the parser's default layout guess
    after = [r.exprs[0] for _t, _c, _i, r in resolve_set_matches(rs, sets).rules()]
    assert after == [m.SetMatch((Field.SRC, Field.DST), "pairs"), m.SetMatch((Field.DPORT,), "ports", True),
                     before[2]]


_VOCAB = ["-A", "INPUT", "-I", "-N", "X", "-P", "DROP", "-p", "tcp", "udp", "icmp", "all", "!", "-s", "10.0.0.0/8",
          "1.2.3.4,5.6.7.8", "::1", "-d", "-i", "eth+", "-o", "-f", "-m", "tcp", "conntrack", "--ctstate", "NEW,FOO",
          "multiport", "--dports", "1,2:3", "--dport", "22", "65536", ":", "-j", "-g", "ACCEPT", "DNAT", "REJECT",
          "--reject-with", "tcp-reset", "MARK", "--set-mark", "0x1/0x3", "LOG", "--log-prefix", '"a b"', '"', "limit",
          "--limit", "3/min", "recent", "--set", "--rcheck", "--seconds", "x", "-c", "1", "2", "--comment", "comment",
          "-t", "nat", "--to-destination", "1.2.3.4:80", "--syn", "--tcp-flags", "SYN,ACK", "SYN", "=", "--source=",
          "string", "--algo", "bm", "icmp6", "--icmp-type", "echo-request", "3/4", "statistic", "--mode", "nth",
          "--every", "3", "--packet", "0", "set", "--match-set", "s", "src,dst", "-4", "-6"]


def test_random_rule_lines_never_crash():
    """Whatever the token soup, the parser answers with a Ruleset or one RulesetSyntaxError."""
    import random

    rnd = random.Random(20261126)
    for _ in range(1500):
        toks = [rnd.choice(_VOCAB) for _ in range(rnd.randint(1, 12))]
        line = " ".join(toks)
        for text in (f"*filter\n:X - [0:0]\n-A INPUT {line}\nCOMMIT\n", f"{line}\n"):
            for fam in ("ip", "ip6"):
                try:
                    rs = parse_iptables(text, "fuzz", fam)
                except RulesetSyntaxError as e:
                    assert e.line >= 1 and e.column >= 1 and str(e).startswith("fuzz:"), (line, e)
                    continue
                for _t, _c, _i, r in rs.rules():  # and the canonical text re-parses to the same rule
                    if not any(isinstance(x, m.Unsupported) for x in r.exprs):
                        again = parse_rule(r.text, family=fam, table=_t.name, chain=_c.name)
                        assert again.exprs == r.exprs, (line, r.text)

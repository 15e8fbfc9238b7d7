"""Stateful matches: spec §8 vectors (TV-15, TV-16, TV-20, TV-21), nft limit (§6.6) and the kernel
oracle's 05_limit_burst scenario (per-packet decisions and per-rule counters)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from nfreplay.replay import chains, stateful
from nfreplay.replay.codes import PRESENT_CT, PRESENT_ICMP, PRESENT_IIF, PRESENT_PORTS, PRESENT_TCP, Field
from nfreplay.replay.host import load_host
from nfreplay.replay.rules import model as m
from nfreplay.replay.rules.compile import compile_ruleset
from nfreplay.replay.rules.iptables import parse_iptables

S = m.SourceRef("t", 1, "")
V4 = 0xFFFF << 32
HOST = {"interfaces": [{"name": "eth0", "addresses": ["203.0.113.1/24"]},
                       {"name": "eth1", "addresses": ["192.168.1.1/24"]}],
        "routes": [{"prefix": "0.0.0.0/0", "interface": "eth0"}]}
T0 = 1_700_000_000_000_000_000


def ctx_for(proto=1, icmp_type=8, src=0xC6336407, dport=22, iif=0, ct_new=False, ttl=64):
    c = np.zeros(Field.N_FIELDS, np.int64)
    c[Field.NFPROTO] = 2
    c[Field.PROTO] = proto
    pres = PRESENT_IIF
    if proto == 1:
        c[Field.ICMP_TYPE] = icmp_type
        pres |= PRESENT_ICMP
    else:
        c[Field.DPORT] = dport
        c[Field.SPORT] = 40000
        pres |= PRESENT_PORTS | PRESENT_TCP
    if ct_new:
        pres |= PRESENT_CT
        c[Field.CT_STATE] = 8
    c[Field.PRESENT] = pres
    c[Field.SRC + 1] = V4 | src
    c[Field.DST + 1] = V4 | 0xCB007101
    c[Field.IIF], c[Field.OIF] = iif, -1
    c[Field.TTL] = ttl
    return c


def replay(crs, times_s, mk=ctx_for, bc=0, lens=None):
    st = chains.new_rule_state(crs)
    out, tr = chains.new_out(), chains.new_trace(1)
    res = []
    for i, t in enumerate(times_s):
        ctx = mk(i) if callable(mk) and mk is not ctx_for else ctx_for()
        n = 84 if lens is None else lens[i]
        v = chains.eval_chain(crs.arrays, st, bc, ctx, n, T0 + int(round(t * 1e9)), out, tr)
        res.append((int(v), crs.rules[out[chains.OUT_RULE]]["rule_num"]))
    return res, st


def test_credits_per_jiffy_constants():
    assert [stateful.credits_per_jiffy(h) for h in (100, 250, 300, 1000)] == [256, 128, 128, 32]
    assert stateful.user2credits(10000, 1000) == 32000  # 1/sec: cost 32000 (TV-20)
    assert stateful.user2credits(20000, 1000) == 64000


@pytest.mark.parametrize("hz", [1000, 250])
def test_tv20_xt_limit(hz):
    rs = parse_iptables("""*filter
-A INPUT -p icmp -m limit --limit 1/sec --limit-burst 2 -j ACCEPT
-A INPUT -p icmp -j DROP
COMMIT
""", "t")
    h = load_host(dict(HOST, sysctls={"kernel.hz": hz}))
    crs = compile_ruleset(rs, h)
    res, st = replay(crs, [0.000, 0.100, 0.200, 1.250, 1.300])
    assert [v for v, _ in res] == [1, 1, 0, 1, 0]
    if hz == 1000:  # credits after the last packet: 9600 (TV-20 "credits before test" of packet 5)
        assert st.sf[0, 0] == 9600


def test_xt_limit_u32_credit_wraps_like_the_kernel():
    rs = parse_iptables("*filter\n-A INPUT -m limit --limit 1/day --limit-burst 1 -j ACCEPT\nCOMMIT\n", "t")
    crs = compile_ruleset(rs, load_host(HOST))
    cost = crs.arrays.sf_p[0, 0]
    assert cost == stateful.user2credits(10000 * 86400, 1000)
    # (now - prev) * 32 overflows u32 after 2^32/32 jiffies: the kernel's credit wraps before the cap
    gap = (1 << 32) // 32 + 10  # jiffies = ms at HZ=1000
    res, st = replay(crs, [0.0, gap / 1000.0])
    assert res[0][1] == 1  # rule 1 matched
    assert ((0 + gap * 32) & 0xFFFFFFFF) < cost
    assert res[1][1] == 0  # limited: the packet reached the policy
    assert st.sf[0, 0] == (gap * 32) & 0xFFFFFFFF


def test_kernel_oracle_05_limit_burst(shared_dir):
    sc = shared_dir / "tools" / "kernel-oracle" / "scenarios" / "05_limit_burst"
    oracle = json.loads((sc / "oracle_out.json").read_text())
    rs = parse_iptables((sc / "rules.ipt").read_text(), str(sc / "rules.ipt"))
    host = load_host(sc / "topology.json")
    crs = compile_ruleset(rs, host)
    st = chains.new_rule_state(crs)
    out, tr = chains.new_out(), chains.new_trace(1)
    bc_in = [b["chain"] for b in crs.base_chains].index("INPUT")
    lan0 = host.iface_index("lan0")
    agree = 0
    inputs = [p for p in oracle["packets"] if p["path"] == "inbound"]
    for p in inputs:
        c = ctx_for(proto=1, icmp_type=p["tuple"]["icmp_type"], iif=lan0)
        v = chains.eval_chain(crs.arrays, st, bc_in, c, p["len"], T0 + int(round(p["time"] * 1e9)), out, tr)
        want = [x for x in p["trace"] if x["hook"] == "input"][-1]
        got = crs.rules[out[chains.OUT_RULE]]
        agree += (want["rule_number"] == got["rule_num"]) and (want["verdict"] == ("accept" if v == 1 else "drop"))
    assert agree == len(inputs) == 20
    for rc in oracle["per_rule_counters"]:
        rid = crs.rule_id(rc["table"], rc["chain"], rc["rule_number"])
        assert (st.rule_packets[rid], st.rule_bytes[rid]) == (rc["packets"], rc["bytes"])


def test_nft_limit_packets_and_over():
    def rs(over):
        lim = m.Stateful("limit", (("rate_num", 1), ("rate_den_s", 1), ("burst", 2), ("over", over)))
        return m.Ruleset((m.Table("inet", "t", (m.Chain("in", (m.Rule((lim, m.Verdict("drop" if over else "accept")),
                                                                       S, "r"),), "input", 0, "filter",
                                                          "drop" if not over else "accept"),), origin="nft"),),
                         "t", "nft")
    times = [0.0, 0.1, 0.2, 1.25, 1.3, 2.3]
    # cost 1e9 ns, max 2e9: tokens 2e9 -> 1.1e9 -> 0.2e9 (fail) -> 1.25e9 ... exact ns, no jiffies
    res, st = replay(compile_ruleset(rs(False), load_host(HOST)), times)
    assert [v for v, _ in res] == [1, 1, 0, 1, 0, 1]
    res, _ = replay(compile_ruleset(rs(True), load_host(HOST)), times)
    assert [v for v, _ in res] == [1, 1, 0, 1, 0, 1]  # "over" drops exactly the packets beyond the rate


def test_tv15_statistic_nth_sequence():
    rs = parse_iptables("*filter\n-A INPUT -m statistic --mode nth --every 3 --packet 1 -j DROP\nCOMMIT\n", "t")
    res, _ = replay(compile_ruleset(rs, load_host(HOST)), [0.0] * 9)
    assert [i for i, (v, _) in enumerate(res) if v == 0] == [1, 4, 7]
    rs = parse_iptables("*filter\n-A INPUT -m statistic --mode nth --every 2 --packet 0 -j DROP\nCOMMIT\n", "t")
    res, _ = replay(compile_ruleset(rs, load_host(HOST)), [0.0] * 4)
    assert [v for v, _ in res] == [0, 1, 0, 1]  # TV-15: counter starts at n-1-k = 1, first evaluation matches


def test_tv16_statistic_random_thresholds_and_seeded_draws():
    rs = parse_iptables("""*filter
-A INPUT -m statistic --mode random --probability 0.33333333349 -j DROP
-A INPUT -m statistic --mode random --probability 0.50000000000 -j REJECT
COMMIT
""", "t")
    crs = compile_ruleset(rs, load_host(HOST), seed=42)
    assert crs.arrays.sf_p[:2, 0].tolist() == [715827883, 1073741824]
    res, st = replay(crs, [0.0] * 200)
    # replay the same stream independently: a draw per reached rule
    rng = np.array(st.rng)
    ref = chains.new_rule_state(crs).rng.copy()
    exp = []
    for _ in range(200):
        d = int(stateful.draw_u32(ref)) & 0x7FFFFFFF
        if d < 715827883:
            exp.append(1)
            continue
        d = int(stateful.draw_u32(ref)) & 0x7FFFFFFF
        exp.append(2 if d < 1073741824 else 0)
    assert [r for _, r in res] == exp
    assert rng[1] == ref[1]  # same number of draws
    assert rng[2] == 42
    assert 40 < exp.count(1) < 95  # about a third


def test_tv21_recent_ssh_throttle():
    rs = parse_iptables("""*filter
-A INPUT -p tcp --dport 22 -m conntrack --ctstate NEW -m recent --set --name SSH --mask 255.255.255.255 --rsource
-A INPUT -p tcp --dport 22 -m conntrack --ctstate NEW -m recent --update --seconds 60 --hitcount 4 --name SSH --mask 255.255.255.255 --rsource -j DROP
-A INPUT -p tcp --dport 22 -j ACCEPT
COMMIT
""", "t")
    crs = compile_ruleset(rs, load_host(HOST))
    res, st = replay(crs, [0, 10, 20, 30, 100, 100.5], mk=lambda i: ctx_for(proto=6, ct_new=True))
    assert [w for _, w in res] == [3, 3, 3, 2, 3, 3]
    # another source is tracked separately
    res2, _ = replay(crs, [0, 1, 2, 3], mk=lambda i: ctx_for(proto=6, ct_new=True, src=0x0A000001 + (i % 2)))
    assert [w for _, w in res2] == [3, 3, 3, 3]


def test_recent_rcheck_remove_and_lru_limit():
    rs = parse_iptables("""*filter
-A INPUT -p tcp --dport 1 -m recent --set --name T
-A INPUT -p tcp --dport 2 -m recent --remove --name T -j ACCEPT
-A INPUT -p tcp -m recent --rcheck --name T -j DROP
COMMIT
""", "t")
    crs = compile_ruleset(rs, load_host(HOST))
    seq = [(1, 5), (3, 5), (2, 5), (3, 5)] + [(1, 100 + i) for i in range(101)] + [(3, 100), (3, 101), (3, 200)]
    res, _ = replay(crs, [0.0] * len(seq), mk=lambda i: ctx_for(proto=6, dport=seq[i][0], src=seq[i][1]))
    got = [v for v, _ in res]
    assert got[:4] == [0, 0, 1, 1]  # set (then rcheck of rule 3 drops), rcheck, remove, gone
    assert set(got[4:105]) == {0}
    assert got[-3:] == [1, 0, 0]  # 101 sources set: the oldest was evicted (ip_list_tot = 100)


def test_quota_and_numgen():
    rs = parse_iptables("*filter\n-A INPUT -m quota --quota 200 -j ACCEPT\n-A INPUT -j DROP\nCOMMIT\n", "t")
    res, _ = replay(compile_ruleset(rs, load_host(HOST)), [0.0] * 4, lens=[100, 90, 20, 5])
    assert [v for v, _ in res] == [1, 1, 0, 0]  # once exhausted even small packets fail
    ng = m.Stateful("numgen", (("mode", "inc"), ("mod", 3), ("offset", 10)))
    vm = m.VerdictMap((Field.NUMGEN,), "vm")
    t = m.Table("ip", "t", (m.Chain("in", (m.Rule((ng, vm), S, "r"),), "input", 0, "filter", "accept"),),
                (m.SetDef("vm", (Field.NUMGEN,), (((10, 10),), ((12, 12),)), (m.Verdict("drop"), m.Verdict("drop"))),),
                "nft")
    res, _ = replay(compile_ruleset(m.Ruleset((t,), "t", "nft"), load_host(HOST)), [0.0] * 6)
    assert [v for v, _ in res] == [0, 1, 0, 0, 1, 0]


def test_hashlimit_is_reported_unsupported():
    from nfreplay.errors import UnsupportedRuleError

    rs = parse_iptables("*filter\n-A INPUT -m hashlimit --hashlimit-upto 1/sec --hashlimit-name x -j ACCEPT\n"
                        "COMMIT\n", "t")
    with pytest.raises(UnsupportedRuleError, match="hashlimit"):
        compile_ruleset(rs, load_host(HOST))
    crs = compile_ruleset(rs, load_host(HOST), allow_unsupported=True)
    assert "hashlimit" in crs.rules[0]["unsupported"]

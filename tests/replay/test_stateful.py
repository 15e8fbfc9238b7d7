"""Stateful matches: spec §8 vectors (TV-15, TV-16, TV-20, TV-21), nft limit (§6.6), the kernel
oracle's 05_limit_burst scenario (per-packet decisions and per-rule counters), and hashlimit /
connlimit against hand-computed xt_hashlimit.c / nf_conncount.c formulas (spec §4.4 has no vectors)."""

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


# ------------------------------------------------------------------ hashlimit (xt_hashlimit.c rev 3)
CPJ = 1 << 37  # CREDITS_PER_JIFFY at HZ=1000 and 250: largest power of two <= (2^64-1) / (HZ*86400)
J0 = T0 // 1_000_000  # jiffies of T0 at HZ=1000


def _hl_rs(opts, family="ip", extra=""):
    return parse_iptables(f"*filter\n-A INPUT -m hashlimit {opts} --hashlimit-name t -j ACCEPT\n{extra}"
                          "-A INPUT -j DROP\nCOMMIT\n", "t", family)


def _pkt(src=0x0A000001, dst=0xCB007101, sport=40000, dport=22, proto=6, v6=False):
    c = np.zeros(Field.N_FIELDS, np.int64)
    c[Field.NFPROTO] = 10 if v6 else 2
    c[Field.PROTO] = proto
    c[Field.PRESENT] = PRESENT_IIF | (PRESENT_PORTS | PRESENT_TCP if proto == 6 else 0)
    c[Field.SPORT], c[Field.DPORT] = sport, dport
    for f, a in ((Field.SRC, src), (Field.DST, dst)):
        a = a if v6 else (V4 | a)
        hi, lo = a >> 64, a & ((1 << 64) - 1)
        c[f] = hi - (1 << 64) if hi >= 1 << 63 else hi
        c[f + 1] = lo - (1 << 64) if lo >= 1 << 63 else lo
    c[Field.IIF], c[Field.OIF] = 0, -1
    return c


def run_pkts(crs, pkts, st=None, lens=None, trace=1):
    """pkts: (time s, ctx); -> [(verdict, rule_num)], state."""
    st = chains.new_rule_state(crs) if st is None else st
    out, tr = chains.new_out(), chains.new_trace(trace)
    res = []
    for i, (t, ctx) in enumerate(pkts):
        chains.reset_packet(out, tr)
        v = chains.eval_chain(crs.arrays, st, 0, ctx, 84 if lens is None else lens[i], T0 + int(round(t * 1e9)),
                              out, tr)
        res.append((int(v), crs.rules[out[chains.OUT_RULE]]["rule_num"]))
    return res, st


def test_hashlimit_credit_constants():
    assert [stateful.hl_cpj(h) for h in (100, 250, 300, 1000)] == [1 << 40, 1 << 39, 1 << 39, 1 << 37]
    # user2credits: scale 10^6 < HZ*CPJ, so user * (HZ*CPJ / 10^6)
    assert stateful.hl_user2credits(1_000_000, 1000) == 1_000_000 * 137438953
    assert stateful.hl_user2credits(1_000_000, 100) == 1_000_000 * 109951162
    assert stateful.hl_cpj_bytes(1000) == 1 << 22 and stateful.hl_cpj_bytes(250) == 1 << 24
    # user2credits_byte(4kb/s cost 16711935) = 16711935 * 1000 * 2^22 >> 32
    assert stateful.hl_user2credits_byte(16711935, 1000) == (16711935 * 4194304000) >> 32 == 16320249
    assert stateful.msecs_to_jiffies(1000, 250) == 250 and stateful.msecs_to_jiffies(1001, 250) == 251


def test_hashlimit_burst_refill_and_groups():
    # 1/sec burst 2: cost c = 10^6 * 137438953, cap 2c, +2^37 per jiffy; one cost takes 1000 jiffies
    c = 1_000_000 * 137438953
    assert 999 * CPJ < c <= 1000 * CPJ
    crs = compile_ruleset(_hl_rs("--hashlimit-upto 1/sec --hashlimit-burst 2 --hashlimit-mode srcip"),
                          load_host(HOST))
    a, b = _pkt(0x0A000001), _pkt(0x0A000002)
    res, st = run_pkts(crs, [(0.0, a), (0.1, a), (0.2, a), (0.3, b), (1.2, a), (1.3, a), (1.3, b)])
    assert [v for v, _ in res] == [1, 1, 0, 1, 1, 0, 1]
    # A: 2c -> c -> 100 CPJ (t=0.1) -> 200 CPJ (fail) -> 1200 CPJ - c (t=1.2) -> 1300 CPJ - c (fail)
    # B: 2c -> c (t=0.3) -> min(c + 1000 CPJ, 2c) = 2c -> c (t=1.3)
    creds = sorted(int(x) for x, used in zip(st.hl_val[:, 0], st.hl_key[:, 5]) if used)
    assert creds == sorted([1300 * CPJ - c, c])
    assert st.hl_tab[0, 0] == 2  # two buckets


def test_hashlimit_srcmask_v4_and_v6():
    crs = compile_ruleset(_hl_rs("--hashlimit-upto 1/sec --hashlimit-burst 1 --hashlimit-mode srcip "
                                 "--hashlimit-srcmask 24"), load_host(HOST))
    res, _ = run_pkts(crs, [(0.0, _pkt(0x0A000001)), (0.1, _pkt(0x0A0000FE)), (0.2, _pkt(0x0A000101))])
    assert [v for v, _ in res] == [1, 0, 1]  # 10.0.0.1 and 10.0.0.254 share 10.0.0.0/24
    crs6 = compile_ruleset(_hl_rs("--hashlimit-upto 1/sec --hashlimit-burst 1 --hashlimit-mode srcip "
                                  "--hashlimit-srcmask 64", "ip6"), load_host(HOST))
    p1, p2, p3 = (0x20010DB8000000010000000000000001, 0x20010DB800000001FFFF000000000002,
                  0x20010DB8000000020000000000000001)
    res, _ = run_pkts(crs6, [(0.0, _pkt(p1, v6=True)), (0.1, _pkt(p2, v6=True)), (0.2, _pkt(p3, v6=True))])
    assert [v for v, _ in res] == [1, 0, 1]


def test_hashlimit_port_modes_and_global_bucket():
    crs = compile_ruleset(_hl_rs("--hashlimit-upto 1/sec --hashlimit-burst 1 --hashlimit-mode dstip,dstport"),
                          load_host(HOST))
    res, _ = run_pkts(crs, [(0.0, _pkt(dport=22)), (0.0, _pkt(0x0A000009, dport=22)), (0.0, _pkt(dport=80)),
                            (0.0, _pkt(dport=80, proto=1))])
    assert [v for v, _ in res] == [1, 0, 1, 1]  # ICMP has no ports: key port 0
    crs = compile_ruleset(_hl_rs("--hashlimit-upto 1/sec --hashlimit-burst 1"), load_host(HOST))  # no mode
    res, _ = run_pkts(crs, [(0.0, _pkt(1)), (0.0, _pkt(2))])
    assert [v for v, _ in res] == [1, 0]


def test_hashlimit_expiry_follows_the_gc_timer():
    # 1/hour burst 1: no meaningful refill; the idle entry must be freed by a gc run to start full again
    opts = "--hashlimit-upto 1/hour --hashlimit-burst 1 --hashlimit-mode srcip --hashlimit-htable-expire 2000"
    crs = compile_ruleset(_hl_rs(opts), load_host(HOST))
    a = _pkt()
    res, _ = run_pkts(crs, [(0.0, a), (1.0, a), (2.9, a)])
    assert [v for v, _ in res] == [1, 0, 0]  # t=1.0 refreshed expires to 3.0
    res, _ = run_pkts(crs, [(0.0, a), (1.0, a), (3.5, a)])
    assert [v for v, _ in res] == [1, 0, 1]  # gc at 3.0 freed it (expires 3.0 <= 3.0)
    crs = compile_ruleset(_hl_rs(opts + " --hashlimit-htable-gcinterval 60000"), load_host(HOST))
    res, _ = run_pkts(crs, [(0.0, a), (1.0, a), (3.5, a), (61.0, a)])
    assert [v for v, _ in res] == [1, 0, 0, 1]  # no gc run before 60 s: the stale entry is still found


def test_hashlimit_table_full_hotdrops():
    opts = "--hashlimit-upto 1/sec --hashlimit-burst 1 --hashlimit-mode srcip --hashlimit-htable-size 2 " \
           "--hashlimit-htable-max 2"
    crs = compile_ruleset(_hl_rs(opts), load_host(HOST))
    st = chains.new_rule_state(crs)
    out, tr = chains.new_out(), chains.new_trace(8)
    vs = []
    for t, src in ((0.0, 1), (0.0, 2), (0.0, 3), (2.5, 3)):
        chains.reset_packet(out, tr)
        vs.append(int(chains.eval_chain(crs.arrays, st, 0, _pkt(src), 84, T0 + int(t * 1e9), out, tr)))
        if len(vs) == 3:
            assert out[chains.OUT_RULE] == 0 and tr[0, 0] == 1 and tr[1, 1] == chains.TR_HOTDROP
    assert vs == [1, 1, 0, 1]  # third key: max reached -> hotdrop; after the gc at 2.0 there is room
    assert st.rule_packets[0] == 3 and st.rule_packets[1] == 0  # the hotdropped packet is not counted
    assert st.hl_tab[0, 6] == 1 and st.hotdrop[1] == 1


def test_hashlimit_above_and_shared_table():
    crs = compile_ruleset(parse_iptables("""*filter
-A INPUT -m hashlimit --hashlimit-above 1/sec --hashlimit-burst 1 --hashlimit-name a -j DROP
COMMIT
""", "t"), load_host(HOST))
    res, _ = run_pkts(crs, [(0.0, _pkt()), (0.5, _pkt()), (1.0, _pkt())])
    assert [v for v, _ in res] == [1, 0, 1]
    # two rules naming the same table: the first rule's rate and burst govern both (htable_find_get)
    crs = compile_ruleset(parse_iptables("""*filter
-A INPUT -p tcp -m hashlimit --hashlimit-upto 1/sec --hashlimit-burst 1 --hashlimit-name s -j ACCEPT
-A INPUT -p icmp -m hashlimit --hashlimit-upto 100/sec --hashlimit-burst 100 --hashlimit-name s -j ACCEPT
-A INPUT -j DROP
COMMIT
""", "t"), load_host(HOST))
    res, _ = run_pkts(crs, [(0.0, _pkt()), (0.1, _pkt(proto=1))])
    assert res == [(1, 1), (0, 3)]


def test_hashlimit_byte_mode_refills_burst_times():
    # 4kb/s: avg = 0xFFFFFFFF // 257, cost 16320249 per 16-byte chunk; burst 8kb = 2 refills of HZ*CPJ_B
    crs = compile_ruleset(_hl_rs("--hashlimit-upto 4kb/s --hashlimit-burst 8kb --hashlimit-mode srcip"),
                          load_host(HOST))
    full, cost = 4194304000, 63 * 16320249  # a 1000-byte packet is 63 chunks
    assert 4 * cost <= full < 5 * cost
    res, _ = run_pkts(crs, [(0.0, _pkt())] * 14, lens=[1000] * 14)
    assert [v for v, _ in res] == [1] * 12 + [0, 0]  # 4 per fill: the initial one and 2 refills


def test_hashlimit_rate_match_windows():
    # 3/sec rate-match burst 1: rate 10^6 // 333333 = 3, burst 1 + 3 = 4, interval 1 s
    crs = compile_ruleset(_hl_rs("--hashlimit-upto 3/sec --hashlimit-burst 1 --hashlimit-mode srcip "
                                 "--hashlimit-rate-match"), load_host(HOST))
    times = [0.0, 0.1, 0.2, 0.3, 0.4, 1.0, 1.5, 2.0, 2.1]
    res, _ = run_pkts(crs, [(t, _pkt()) for t in times])
    # window 1: 4 pass, 5th over; at 1.0 5*1000 > 1000*3 -> prev_window; at 2.0: 2*1000 <= 3*1000
    assert [v for v, _ in res] == [1, 1, 1, 1, 0, 0, 0, 1, 1]


def test_hashlimit_kernel_refusals_and_canonical_text():
    from nfreplay.errors import UnsupportedRuleError

    with pytest.raises(UnsupportedRuleError, match="overflow"):  # 1/day * 5 wraps user2credits
        compile_ruleset(_hl_rs("--hashlimit-upto 1/day --hashlimit-burst 5"), load_host(HOST))
    compile_ruleset(_hl_rs("--hashlimit-upto 1/day --hashlimit-burst 1"), load_host(HOST))
    rs = _hl_rs("! --hashlimit-upto 60/min --hashlimit-mode dstip,srcip")
    assert rs.tables[0].chains[0].rules[0].text == \
        "-A INPUT -m hashlimit --hashlimit-above 1/sec --hashlimit-burst 5 --hashlimit-mode srcip,dstip " \
        "--hashlimit-name t --hashlimit-htable-expire 60000 -j ACCEPT"
    with pytest.raises(UnsupportedRuleError, match="different byte/rate-match"):
        compile_ruleset(parse_iptables("*filter\n-A INPUT -m hashlimit --hashlimit-upto 1/sec --hashlimit-name s\n"
                                       "-A INPUT -m hashlimit --hashlimit-upto 1kb/s --hashlimit-name s\nCOMMIT\n",
                                       "t"), load_host(HOST))


try:
    from hypothesis import given, settings
    from hypothesis import strategies as hs
except ImportError:  # pragma: no cover
    given = None

if given is not None:
    @settings(max_examples=40, deadline=None)
    @given(hs.lists(hs.tuples(hs.floats(0, 30), hs.integers(0, 5), hs.integers(20, 1500)), min_size=1,
                    max_size=60),
           hs.sampled_from(["--hashlimit-upto 2/sec --hashlimit-burst 3",
                            "--hashlimit-above 10/min --hashlimit-burst 2 --hashlimit-htable-expire 700",
                            "--hashlimit-upto 1kb/s --hashlimit-burst 4kb",
                            "--hashlimit-upto 5/sec --hashlimit-rate-match"]))
    def test_hashlimit_property_tokens_stay_in_range(pkts, opts):
        crs = compile_ruleset(_hl_rs(opts + " --hashlimit-mode srcip --hashlimit-htable-max 4 "
                                     "--hashlimit-htable-size 4"), load_host(HOST))
        p = crs.arrays.sf_p[0]
        res, st = run_pkts(crs, [(t, _pkt(1 + k)) for t, k, _ in pkts], lens=[n for _, _, n in pkts])
        assert all(v in (0, 1) for v, _ in res)
        live = st.hl_key[:, 5] != 0
        assert st.hl_tab[0, 0] == live.sum() <= 4
        u = st.hl_val[live].astype(np.uint64)
        if "rate-match" in opts:
            assert all(int(x) <= len(pkts) for x in u[:, 0])
        elif "kb" in opts:
            assert all(int(x) <= 4194304000 for x in u[:, 0]) and all(0 <= int(x) <= 4 for x in u[:, 1])
        else:  # packets: 0 <= credit <= credit_cap = burst * cost
            cap, cost = int(np.uint64(p[8])), int(np.uint64(p[7]))
            assert all(int(x) <= cap for x in u[:, 0]) and cap // cost == int(opts.split("burst ")[1][0])


# ------------------------------------------------------------------ connlimit (xt_connlimit.c, nf_conncount.c)
def _conn(i, src=0x0A000001, dst=0xCB007101, slot=None, gen=None, expire=120):
    """First packet of connection i (tcp src:40000+i -> dst:22) with its conntrack entry."""
    c = _pkt(src, dst, 40000 + i, 22)
    c[Field.PRESENT] |= PRESENT_CT
    c[Field.CT_STATE] = 8
    c[Field.CT_ORIG_SRC:Field.CT_ORIG_SRC + 2] = c[Field.SRC:Field.SRC + 2]
    c[Field.CT_ORIG_DST:Field.CT_ORIG_DST + 2] = c[Field.DST:Field.DST + 2]
    c[Field.CT_ORIG_SPORT], c[Field.CT_ORIG_DPORT], c[Field.CT_PROTO] = 40000 + i, 22, 6
    c[Field.CT_EXPIRE] = expire
    c[stateful._F_CT_SLOT] = i if slot is None else slot
    c[stateful._F_CT_ID] = 100 + i if gen is None else gen
    return c


def _cl_rs(opts):
    return parse_iptables(f"*filter\n-A INPUT -p tcp -m connlimit {opts} -j REJECT --reject-with tcp-reset\n"
                          "COMMIT\n", "t")


def _wired(crs, n=64):
    st = chains.new_rule_state(crs)
    live = np.zeros((n, 3), np.int64)
    live[:, 0] = -1
    return st._replace(ct_live=live), live


def _confirm(live, i, until_s=1000.0, closed=0):
    live[i] = (100 + i, T0 + int(until_s * 1e9), closed)


def test_connlimit_counts_live_connections_exact_view():
    crs = compile_ruleset(_cl_rs("--connlimit-above 2"), load_host(HOST))
    st, live = _wired(crs)
    out, tr = chains.new_out(), chains.new_trace(1)

    def go(t, ctx):
        chains.reset_packet(out, tr)
        return int(chains.eval_chain(crs.arrays, st, 0, ctx, 60, T0 + int(t * 1e9), out, tr))

    assert go(0.0, _conn(1)) == 1
    _confirm(live, 1)  # accepted -> confirmed by the pipeline
    assert go(0.1, _conn(2)) == 1
    _confirm(live, 2)
    assert go(0.2, _conn(3)) == 0  # 3 > 2: rejected, never confirmed
    assert go(0.3, _conn(4)) == 0  # conn 3 evicted, conn 4 counted: 3 again
    _confirm(live, 1, closed=1)  # conn 1 reaches TIME_WAIT
    assert go(0.4, _conn(5)) == 1  # 1 closed and 4 gone: 2, 5 -> 2
    key = st.cl_key[st.cl_key[:, 0] != 0]
    assert len(key) == 1 and key[0, 6] == 2


def test_connlimit_mask_daddr_and_upto():
    crs = compile_ruleset(_cl_rs("--connlimit-above 1 --connlimit-mask 24"), load_host(HOST))
    st, live = _wired(crs)
    _confirm(live, 1)
    res, _ = run_pkts(crs, [(0.0, _conn(1, src=0x0A000001)), (0.1, _conn(2, src=0x0A000002)),
                            (0.2, _conn(3, src=0x0A000102))], st=st)
    assert [v for v, _ in res] == [1, 0, 1]  # 10.0.0.1 and 10.0.0.2 share 10.0.0.0/24
    crs = compile_ruleset(_cl_rs("--connlimit-upto 1"), load_host(HOST))
    st, live = _wired(crs)
    res, _ = run_pkts(crs, [(0.0, _conn(1)), (0.1, _conn(2)), (0.2, _conn(3))], st=st)
    assert [v for v, _ in res] == [0, 0, 0]  # each rejected connection is never confirmed: count stays 1
    crs = compile_ruleset(_cl_rs("--connlimit-above 1 --connlimit-daddr"), load_host(HOST))
    st, live = _wired(crs)
    _confirm(live, 1)
    _confirm(live, 2)
    res, _ = run_pkts(crs, [(0.0, _conn(1, src=1)), (0.1, _conn(2, src=2)), (0.2, _conn(3, src=3, dst=9))],
                      st=st)
    assert [v for v, _ in res] == [1, 0, 1]  # counted per destination


def test_connlimit_kernel_quirks_same_jiffy_and_gc_limit():
    crs = compile_ruleset(_cl_rs("--connlimit-above 100"), load_host(HOST))
    st, live = _wired(crs)
    _confirm(live, 1)
    run_pkts(crs, [(0.0, _conn(1)), (0.0, _conn(1))], st=st)  # same jiffy as last_gc: no look, added twice
    k = np.nonzero(st.cl_key[:, 0])[0][0]
    assert st.cl_key[k, 6] == 2
    run_pkts(crs, [(0.5, _conn(1))], st=st)  # a later jiffy: the saved copy is found, nothing added
    assert st.cl_key[k, 6] == 2
    crs = compile_ruleset(_cl_rs("--connlimit-above 100"), load_host(HOST))
    st, live = _wired(crs)
    run_pkts(crs, [(0.01 * i, _conn(i)) for i in range(12)], st=st)  # never confirmed: evicted at each look
    k = np.nonzero(st.cl_key[:, 0])[0][0]
    assert st.cl_key[k, 6] == 1
    st2, live2 = _wired(crs)
    for i in range(12):
        _confirm(live2, i)
    run_pkts(crs, [(0.0, _conn(i)) for i in range(12)], st=st2)  # all in one jiffy: no gc, 12 counted
    live2[:, 0] = -1  # all gone
    run_pkts(crs, [(1.0, _conn(20))], st=st2)
    k = np.nonzero(st2.cl_key[:, 0])[0][0]
    assert st2.cl_key[k, 6] == 12 - 9 + 1  # at most CONNCOUNT_GC_MAX_NODES + 1 evictions per look


def test_connlimit_without_ct_view_uses_seen_expiry():
    crs = compile_ruleset(_cl_rs("--connlimit-above 1"), load_host(HOST))
    res, _ = run_pkts(crs, [(0.0, _conn(1, expire=5)), (1.0, _conn(2, expire=5)), (5.5, _conn(3, expire=5))])
    assert [v for v, _ in res] == [1, 0, 0]  # conn 1 counted until 5 s, conn 2 until 6 s
    res, _ = run_pkts(crs, [(0.0, _conn(1, expire=5)), (1.0, _conn(2, expire=5)), (6.5, _conn(3, expire=5))])
    assert [v for v, _ in res][2] == 1

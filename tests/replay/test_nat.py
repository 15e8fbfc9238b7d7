"""NAT core: the by-source index and find_appropriate_src (get_unique_tuple step 1b), the NAT core for
REJECT responses. Spec: shared/spec/hooks-rules-nat.md §5.4-§5.6, §2.5; kernel nf_nat_core.c,
nf_reject_ipv4.c, icmp.c (icmp_glue_bits attaches the offending entry to the ICMP error).

Kernel-level tests build conntrack entries by hand (E rows) and call the nat kernels; pipeline-level
tests replay small synthetic captures (nfreplay.lab.packets) through iptables rulesets."""

from __future__ import annotations

import numpy as np
import pytest

from nfreplay.replay import addr
from nfreplay.replay.conntrack import ct_abort, new_table
from nfreplay.replay.conntrack.bysrc import bysrc_head, bysrc_insert, bysrc_remove
from nfreplay.replay.conntrack.table import (
    C_BYSRC_HEAD,
    C_BYSRC_NEXT,
    C_BYSRC_PREV,
    C_FAMILY,
    C_O_SRC_HI,
    C_PROTO,
    C_R_SRC_HI,
    C_STATUS,
    C_USED,
    C_ZONE,
    L_EXPIRES,
)
from nfreplay.replay.nat import (
    MANIP_SRC,
    NAT_MAP_IPS,
    NAT_PROTO_SPECIFIED,
    NAT_RANDOM,
    STAT_BYSRC,
    find_appropriate_src,
    get_unique_tuple,
    new_nat_scratch,
    new_nat_state,
    setup_info,
)

SRC_NAT_DONE = 1 << 7
NOW = 10**9


def _a(text):
    hi, lo = addr.split(addr.to_int(text)[0])
    return np.int64(np.uint64(hi)), np.int64(np.uint64(lo))


def _tuple(src, dst, sp, dp):
    (sh, sl), (dh, dl) = _a(src), _a(dst)
    return np.array([sh, sl, dh, dl, sp, dp], dtype=np.int64).view(np.uint64)


def _entry(tab, s, orig, reply, proto=17, zone=0, used=2, expires=NOW + 30 * 10**9, src_nat_done=True):
    """Slot s holds a live entry with ORIGINAL tuple orig and REPLY tuple reply (src, dst, sport, dport);
    with src_nat_done it is put into the by-source index as nf_nat_setup_info does."""
    E, L = tab.E, tab.L
    E[s, C_USED] = used
    E[s, C_FAMILY] = 4
    E[s, C_PROTO] = proto
    E[s, C_ZONE] = zone
    E[s, C_O_SRC_HI:C_O_SRC_HI + 6] = _tuple(*orig).view(np.int64)
    E[s, C_R_SRC_HI:C_R_SRC_HI + 6] = _tuple(*reply).view(np.int64)
    L[s, L_EXPIRES] = expires
    if src_nat_done:
        bysrc_insert(E, s)
        E[s, C_STATUS] |= SRC_NAT_DONE


def _bucket_slots(tab, src, sp, proto=17, zone=0):
    hi, lo = _a(src)
    out, v = [], bysrc_head(tab.E, 4, proto, zone, hi, lo, sp)
    while v:
        out.append(v - 1)
        v = tab.E[v - 1, C_BYSRC_NEXT]
    return out


def _range(lo_addr, hi_addr=None, pmin=0, pmax=0):
    a = _a(lo_addr)
    b = _a(hi_addr or lo_addr)
    flags = NAT_MAP_IPS | (NAT_PROTO_SPECIFIED if pmax else 0)
    return flags, np.uint64(a[0]), np.uint64(a[1]), np.uint64(b[0]), np.uint64(b[1]), pmin, pmax


def _unique(tab, curr, rng, slot=7, zone=0, proto=17):
    flags, mnh, mnl, mxh, mxl, pmin, pmax = rng
    out = np.zeros(6, np.uint64)
    nst = new_nat_state(1)
    get_unique_tuple(tab.E, tab.L, tab.H, 4, proto, zone, curr, MANIP_SRC, flags, mnh, mnl, mxh, mxl, pmin, pmax,
                     slot, NOW, nst, out, new_nat_scratch())
    return out, nst


def _src(out):
    return addr.to_text(int(out[0]), int(out[1]), 4), int(out[4])


# ------------------------------------------------------------------ the index itself
def test_bysrc_index_newest_first_and_o1_removal():
    tab = new_table(32, 4)
    key = ("10.0.0.2", "203.0.113.10", 40000, 53)
    for s in (3, 9, 5):
        _entry(tab, s, key, ("203.0.113.10", "198.51.100.1", 53, 1000 + s))
    _entry(tab, 12, ("10.0.0.3", "203.0.113.10", 40000, 53), ("203.0.113.10", "198.51.100.1", 53, 2000))
    assert _bucket_slots(tab, "10.0.0.2", 40000) == [5, 9, 3]      # hlist_add_head: newest first
    bysrc_remove(tab.E, 9)                                          # middle
    assert _bucket_slots(tab, "10.0.0.2", 40000) == [5, 3]
    assert tab.E[9, C_BYSRC_NEXT] == 0 and tab.E[9, C_BYSRC_PREV] == 0
    bysrc_remove(tab.E, 5)                                          # head
    assert _bucket_slots(tab, "10.0.0.2", 40000) == [3]
    bysrc_remove(tab.E, 20)                                         # not in the index: no-op
    assert _bucket_slots(tab, "10.0.0.2", 40000) == [3]
    assert 12 in _bucket_slots(tab, "10.0.0.3", 40000)


def test_freeing_an_entry_removes_it_and_a_new_entry_keeps_the_row_head():
    """nf_conntrack_free -> nf_nat_cleanup_conntrack while SRC_NAT_DONE: every free path goes through
    _free_slot (abort shown here); _init_entry does not clear the bucket head stored in its row."""
    tab = new_table(16, 4)
    key = ("10.0.0.2", "203.0.113.10", 40000, 53)
    _entry(tab, 4, key, ("203.0.113.10", "198.51.100.1", 53, 40000), used=1)
    _entry(tab, 6, key, ("203.0.113.10", "198.51.100.2", 53, 40000), used=1, src_nat_done=False)
    heads = tab.E[:, C_BYSRC_HEAD].copy()
    assert heads.any()
    tab.M[2] = 0  # M_FREE_TOP: the slots were filled by hand, not allocated; make room to free them
    ct_abort(tab, 6)                       # never indexed: untouched index
    assert _bucket_slots(tab, "10.0.0.2", 40000) == [4]
    ct_abort(tab, 4)
    assert _bucket_slots(tab, "10.0.0.2", 40000) == []
    b = int(np.nonzero(heads)[0][0])
    tab.E[b, C_BYSRC_HEAD] = 99            # a head value stored in row b survives a new entry in row b
    from nfreplay.replay.conntrack.core import _init_entry

    _init_entry(tab.E, tab.L, tab.M, b, 4, 17, 0, 0, 0, 0, 0, 1, 2, 2, 1, NOW, 0)
    assert tab.E[b, C_BYSRC_HEAD] == 99


# ------------------------------------------------------------------ find_appropriate_src
def test_step_1b_reuses_the_mapping_of_the_same_source():
    """Spec §5.5 1b: L1:41000 already mapped to W:40000 (for R:53); a new connection L1:41000 -> R:54 to
    the same single-address range gets W:40000 (not its own port 41000, which step 2 would keep)."""
    tab = new_table(32, 4)
    _entry(tab, 2, ("10.0.0.2", "203.0.113.10", 41000, 53), ("203.0.113.10", "198.51.100.1", 53, 40000))
    curr = _tuple("10.0.0.2", "203.0.113.10", 41000, 54)
    out, nst = _unique(tab, curr, _range("198.51.100.1"))
    assert _src(out) == ("198.51.100.1", 40000)
    assert int(out[5]) == 54 and addr.to_text(int(out[2]), int(out[3]), 4) == "203.0.113.10"
    assert nst.stats[STAT_BYSRC] == 1
    # no earlier mapping: step 2 keeps the original port
    out2, nst2 = _unique(tab, _tuple("10.0.0.3", "203.0.113.10", 41000, 54), _range("198.51.100.1"))
    assert _src(out2) == ("198.51.100.1", 41000) and nst2.stats[STAT_BYSRC] == 0


def test_step_1b_newest_in_range_first_skips_out_of_range():
    tab = new_table(32, 4)
    key = ("10.0.0.2", "203.0.113.10", 41000)
    _entry(tab, 1, (*key, 53), ("203.0.113.10", "198.51.100.1", 53, 40000))
    _entry(tab, 8, (*key, 56), ("203.0.113.10", "198.51.100.1", 56, 40001))
    _entry(tab, 4, (*key, 57), ("203.0.113.10", "198.51.100.1", 57, 50000))   # newest, out of range
    curr = _tuple("10.0.0.2", "203.0.113.10", 41000, 54)
    out, _ = _unique(tab, curr, _range("198.51.100.1", pmin=40000, pmax=40099))
    assert _src(out) == ("198.51.100.1", 40001)
    # a range holding none of them: step 2/3 keep the original port when it is in range
    out, nst = _unique(tab, curr, _range("198.51.100.1", pmin=41000, pmax=41010))
    assert _src(out) == ("198.51.100.1", 41000) and nst.stats[STAT_BYSRC] == 0
    # another address range: the mapped addresses are not in it
    out, _ = _unique(tab, curr, _range("198.51.100.7"))
    assert _src(out) == ("198.51.100.7", 41000)


def test_step_1b_key_is_source_port_protocol_zone_and_live_entries():
    tab = new_table(32, 4)
    _entry(tab, 1, ("10.0.0.2", "203.0.113.10", 41001, 53), ("203.0.113.10", "198.51.100.1", 53, 40000))
    _entry(tab, 2, ("10.0.0.2", "203.0.113.10", 41000, 53), ("203.0.113.10", "198.51.100.1", 53, 40002),
           proto=6)
    _entry(tab, 3, ("10.0.0.2", "203.0.113.10", 41000, 53), ("203.0.113.10", "198.51.100.1", 53, 40003), zone=5)
    _entry(tab, 5, ("10.0.0.2", "203.0.113.10", 41000, 53), ("203.0.113.10", "198.51.100.1", 53, 40005),
           expires=NOW)   # expired: gone (the model's lazy expiry)
    rng = _range("198.51.100.1")
    hit = np.zeros(6, np.uint64)
    curr = _tuple("10.0.0.2", "203.0.113.10", 41000, 54)
    args = (*rng[:5], rng[5], rng[6], NOW, hit)
    assert not find_appropriate_src(tab.E, tab.L, 4, 17, 0, curr, *args)
    assert find_appropriate_src(tab.E, tab.L, 4, 6, 0, curr, *args) and int(hit[4]) == 40002
    assert find_appropriate_src(tab.E, tab.L, 4, 17, 5, curr, *args) and int(hit[4]) == 40003
    # an unconfirmed entry (its own packet still in flight) is visible, as in the kernel
    _entry(tab, 6, ("10.0.0.2", "203.0.113.10", 41000, 55), ("203.0.113.10", "198.51.100.1", 55, 40006), used=1,
           expires=0)
    assert find_appropriate_src(tab.E, tab.L, 4, 17, 0, curr, *args) and int(hit[4]) == 40006


def test_step_1b_mapping_used_for_this_destination_falls_back_to_step_2():
    """The reused mapping W:40000 -> R:54 is already the reply tuple of another entry: step 2."""
    tab = new_table(64, 4)
    _entry(tab, 2, ("10.0.0.2", "203.0.113.10", 41000, 53), ("203.0.113.10", "198.51.100.1", 53, 40000))
    _entry(tab, 3, ("10.0.0.9", "203.0.113.10", 40000, 54), ("203.0.113.10", "198.51.100.1", 54, 40000))
    from nfreplay.replay.conntrack.core import _entry_hash, _hash_insert

    for s in (2, 3):
        for d in (0, 1):
            v = np.int64(2 * s + d + 1)
            _hash_insert(tab.H, v, _entry_hash(tab.E, v))
    out, nst = _unique(tab, _tuple("10.0.0.2", "203.0.113.10", 41000, 54), _range("198.51.100.1"))
    assert _src(out) == ("198.51.100.1", 41000) and nst.stats[STAT_BYSRC] == 0


def test_step_1b_not_for_random_or_dst_or_in_range_sources():
    tab = new_table(32, 4)
    _entry(tab, 2, ("10.0.0.2", "203.0.113.10", 41000, 53), ("203.0.113.10", "198.51.100.1", 53, 40000))
    curr = _tuple("10.0.0.2", "203.0.113.10", 41000, 54)
    flags, *rest = _range("198.51.100.1", pmin=40000, pmax=40099)
    out, nst = _unique(tab, curr, (flags | NAT_RANDOM, *rest))   # RANDOM_ALL skips step 1
    assert nst.stats[STAT_BYSRC] == 0 and 40000 <= int(out[4]) <= 40099
    # step 1a: the original tuple is in range (a null binding of the same source address) -> kept
    out, nst = _unique(tab, curr, _range("10.0.0.2"))
    assert _src(out) == ("10.0.0.2", 41000) and nst.stats[STAT_BYSRC] == 0


def test_icmp_id_is_the_source_key():
    tab = new_table(32, 4)
    _entry(tab, 2, ("10.0.0.2", "203.0.113.10", 0x1234, 8 << 8), ("203.0.113.10", "198.51.100.1", 0x0777, 0),
           proto=1)
    out, _ = _unique(tab, _tuple("10.0.0.2", "203.0.113.11", 0x1234, 8 << 8), _range("198.51.100.1"), proto=1)
    assert _src(out) == ("198.51.100.1", 0x0777)


def test_setup_info_indexes_src_bindings_only():
    tab = new_table(32, 4)
    nst = new_nat_state(0)
    T = new_nat_scratch()
    for s, manip in ((2, 1), (3, 0)):
        _entry(tab, s, ("10.0.0.2", "203.0.113.10", 41000, 53 + s), ("203.0.113.10", "10.0.0.2", 53 + s, 41000),
               used=1, src_nat_done=False)
        a = _range("198.51.100.1")
        setup_info(tab.E, tab.L, tab.H, s, manip, a[0], a[1], a[2], a[3], a[4], 0, 0, NOW, nst, T)
    assert _bucket_slots(tab, "10.0.0.2", 41000) == [3]
    assert tab.E[3, C_STATUS] & SRC_NAT_DONE


# ------------------------------------------------------------------ through the pipeline
TOPO = {"interfaces": [{"name": "lan0", "addresses": ["10.0.0.1/24"]},
                       {"name": "wan0", "addresses": ["198.51.100.1/24"]}],
        "routes": [{"prefix": "0.0.0.0/0", "interface": "wan0", "via": "198.51.100.254"}],
        "ip_forward": True, "sysctls": {}}
NAT_HEAD = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"
FILTER_OPEN = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"


def _capture(tmp_path, recs):
    from nfreplay.lab.packets import eth
    from nfreplay.lab.pcapio import write_pcap

    p = tmp_path / "c.pcap"
    write_pcap(str(p), [(t, eth(b)) for t, b in recs])
    return str(p)


def _udp(t, src, dst, sp, dp):
    from nfreplay.lab.packets import ip4, udp_dgram

    return (t, ip4(src, dst, 17, udp_dgram(src, dst, sp, dp, b"q")))


def _simulate(tmp_path, recs, rules, **kw):
    import nfreplay

    r = tmp_path / "rules.ipt"
    r.write_text(rules)
    return nfreplay.simulate(_capture(tmp_path, recs), str(r), host=TOPO, **kw)


SNAT_RULES = (NAT_HEAD + "-A POSTROUTING -o wan0 -p udp -m udp --dport 53 -j MASQUERADE --to-ports 40000\n"
              "-A POSTROUTING -o wan0 -p udp -j MASQUERADE --to-ports 40000-40099\nCOMMIT\n" + FILTER_OPEN)


def test_pipeline_reuse_until_the_entries_are_gone(tmp_path):
    """10.0.0.2:40050 -> R:53 is forced to W:40000; -> R:54 (range 40000-40099) reuses W:40000 while
    that entry lives (step 2 would keep 40050); after both expired (UDP unreplied 30 s) it keeps 40050."""
    recs = [_udp(0.0, "10.0.0.2", "203.0.113.10", 40050, 53), _udp(1.0, "10.0.0.2", "203.0.113.10", 40050, 54),
            _udp(100.0, "10.0.0.2", "203.0.113.10", 40050, 55)]
    res = _simulate(tmp_path, recs, SNAT_RULES)
    p = res.packets
    assert list(p["out_sport"]) == [40000, 40000, 40050]
    assert list(p["out_src"]) == ["198.51.100.1"] * 3
    assert res.output.meta["nat"]["source_mappings_reused"] == 1


def test_pipeline_aborted_entry_leaves_the_index(tmp_path):
    """A first packet SNATed to W:40000 and then dropped after POSTROUTING NAT (nft filter at priority
    200): its unconfirmed entry is freed and leaves the by-source index, so the next connection of
    the same source does not reuse W:40000."""
    import nfreplay

    rules = ("table ip nat {\n\tchain post {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
             "\t\toifname \"wan0\" udp dport 53 masquerade to :40000\n"
             "\t\toifname \"wan0\" udp dport 54 masquerade to :40000-40099\n\t}\n}\n"
             "table ip late {\n\tchain post {\n\t\ttype filter hook postrouting priority 200; policy accept;\n"
             "\t\tudp dport 53 drop\n\t}\n}\n")
    r = tmp_path / "rules.nft"
    r.write_text(rules)
    recs = [_udp(0.0, "10.0.0.2", "203.0.113.10", 40050, 53), _udp(1.0, "10.0.0.2", "203.0.113.10", 40050, 54)]
    res = nfreplay.simulate(_capture(tmp_path, recs), str(r), host=TOPO)
    p = res.packets
    assert list(p["outcome"]) == ["dropped", "forwarded"]
    assert int(p["out_sport"][1]) == 40050
    # without the drop the second connection reuses the first one's mapping
    r.write_text(rules.replace("\t\tudp dport 53 drop\n", ""))
    res = nfreplay.simulate(_capture(tmp_path, recs), str(r), host=TOPO)
    assert list(res.packets["out_sport"]) == [40000, 40000]


@pytest.mark.parametrize("sub", [1, 2])
def test_pipeline_index_carried_across_chunks(tmp_path, sub):
    from nfreplay.replay.driver import Replayer
    from nfreplay.replay.host import load_host
    from nfreplay.replay.ingest import read_capture
    from nfreplay.replay.rules import load_ruleset

    recs = [_udp(0.0, "10.0.0.2", "203.0.113.10", 40050, 53), _udp(0.5, "10.0.0.3", "203.0.113.11", 40050, 53),
            _udp(1.0, "10.0.0.2", "203.0.113.10", 40050, 54), _udp(2.0, "10.0.0.2", "203.0.113.11", 40050, 60)]
    (tmp_path / "r.ipt").write_text(SNAT_RULES)
    cap = read_capture([_capture(tmp_path, recs)])
    rp = Replayer(load_ruleset(str(tmp_path / "r.ipt")), load_host(TOPO), sub_chunk=sub)
    part = rp.feed(cap)
    # every kernel call of one packet: the index lives in the table the Replayer carries
    assert list(part.results.out_sport) == [40000, 40000, 40000, 40000]
    rp.finish()


# ------------------------------------------------------------------ REJECT responses through the NAT core
VIP = "192.0.2.80"
REJECT_RULES = (NAT_HEAD +
                f"-A PREROUTING -d {VIP}/32 -i wan0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.0.0.80:80\n"
                f"-A PREROUTING -d {VIP}/32 -i wan0 -p udp -m udp --dport 5353 -j DNAT --to-destination 10.0.0.80:5353\n"
                "COMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                "-A FORWARD -i wan0 -p udp -m udp --dport 5353 -m conntrack --ctstate ESTABLISHED --ctdir ORIGINAL "
                "-j REJECT --reject-with icmp-port-unreachable\n"
                "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
                "-A FORWARD -i wan0 -p tcp -m tcp --dport 80 -j REJECT --reject-with tcp-reset\n"
                "-A FORWARD -i wan0 -p udp -j ACCEPT\n"
                "-A OUTPUT -s 10.0.0.80/32 -p tcp -m tcp --sport 80 --tcp-flags RST RST\nCOMMIT\n")


def test_reject_responses_leave_de_natted(tmp_path):
    from nfreplay.lab.packets import ip4, tcp_seg

    cl = "203.0.113.10"
    recs = [(0.0, ip4(cl, VIP, 6, tcp_seg(cl, VIP, 45000, 8080, 1000, 0, 0x02))),
            _udp(1.0, cl, VIP, 41000, 5353), _udp(1.1, "10.0.0.80", cl, 5353, 41000),
            _udp(1.2, cl, VIP, 41000, 5353)]
    res = _simulate(tmp_path, recs, REJECT_RULES)
    p = res.packets
    assert list(p["outcome"]) == ["rejected", "forwarded", "forwarded", "rejected"]
    rst, err = p.iloc[0], p.iloc[3]
    # the RST is built from the DNATed packet (OUTPUT sees 10.0.0.80:80) and de-NATed at POSTROUTING
    assert (rst["reject_src"], rst["reject_dst"], rst["reject_sport"], rst["reject_dport"], rst["reject_iface"]) \
        == (VIP, cl, 8080, 45000, "wan0")
    rules = res.rules.set_index(["table", "chain", "rule_num"])
    assert rules.loc[("filter", "OUTPUT", 1), "packets"] == 1
    # the ICMP error carries the established entry (RELATED_REPLY): outer source translated to the VIP
    assert (err["reject_src"], err["reject_dst"], err["reject_iface"]) == (VIP, cl, "wan0")
    assert err["reject_with"] == "icmp-port-unreachable"

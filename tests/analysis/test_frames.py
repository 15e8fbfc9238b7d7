"""Frames against the contract (columns, dtypes) and against the ReplayOutput arrays they come from."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from nfreplay.analysis import Result, frames, summary
from nfreplay.replay import addr

from .factories import (
    FORWARD_RULES,
    R_INVALID_NEW,
    forward_scenario,
    make_output,
    pkt,
    tcp_session,
)

CONTRACT_PACKETS = ["index", "ts", "family", "proto", "src", "dst", "sport", "dport", "icmp_type", "icmp_code",
                    "icmp_id", "len", "tcp_flags", "in_iface", "out_iface", "path", "outcome", "verdict_table",
                    "verdict_chain", "verdict_rule", "rule_id", "ct_id", "ct_state", "ct_dir", "tcp_state",
                    "invalid_reason", "out_src", "out_dst", "out_sport", "out_dport", "mark", "ct_mark"]
CONTRACT_RULES = ["rule_id", "family", "table", "chain", "rule_num", "text", "source", "packets", "bytes"]
CONTRACT_FLOWS = ["ct_id", "family", "proto", "orig_src", "orig_dst", "orig_sport", "orig_dport", "reply_src",
                  "reply_dst", "reply_sport", "reply_dport", "nat", "first_ts", "last_ts", "packets_orig", "bytes_orig",
                  "packets_reply", "bytes_reply", "final_state", "assured", "end", "first_packet", "last_packet"]
CONTRACT_EVENTS = ["ct_id", "packet_index", "ts", "event", "tcp_state", "status", "timeout_s"]


@pytest.fixture(scope="module")
def res():
    return Result(make_output(forward_scenario()))


def test_contract_columns_present_in_order(res):
    for df, cols in ((res.packets, CONTRACT_PACKETS), (res.rules, CONTRACT_RULES), (res.flows, CONTRACT_FLOWS),
                     (res.events, CONTRACT_EVENTS)):
        got = [c for c in df.columns if c in cols]
        assert got == cols


def test_packet_dtypes(res):
    p = res.packets
    assert str(p["ts"].dtype) == "datetime64[ns, UTC]"
    for c in ("tcp_flags", "outcome", "ct_state", "ct_dir", "tcp_state", "path", "in_iface", "invalid_reason",
              "verdict_table", "verdict_chain"):
        assert isinstance(p[c].dtype, pd.CategoricalDtype), c
    assert str(p["sport"].dtype) == "UInt16" and str(p["verdict_rule"].dtype) == "Int32"
    assert p["src"].dtype == "str"


def test_packets_agree_with_arrays(res):
    o, p = res.output, res.packets
    assert len(p) == len(o.packets.ts_ns)
    assert (p["ts"].astype("int64").to_numpy() == o.packets.ts_ns).all()
    for i in range(len(p)):
        assert p["src"].iat[i] == addr.to_text(o.packets.src_hi[i], o.packets.src_lo[i], 4)
    assert (p["len"].to_numpy() == o.packets.ip_len).all()
    first = p.iloc[0]
    assert first["tcp_flags"] == "S" and first["path"] == "PREROUTING,FORWARD,POSTROUTING"
    assert first["outcome"] == "forwarded" and first["ct_state"] == "NEW" and first["ct_dir"] == "ORIGINAL"
    assert (first["verdict_table"], first["verdict_chain"], first["verdict_rule"]) == ("filter", "FORWARD", 3)
    assert p["tcp_flags"].iat[6] == "FA" and p["tcp_flags"].iat[3] == "PA"
    # a dropped packet did not leave: out_* empty
    dropped = p.loc[p["outcome"] == "dropped"]
    assert (dropped["out_src"] == "").all() and dropped["out_sport"].isna().all()
    assert dropped["path"].iat[0] == "PREROUTING,FORWARD"
    # the policy drop is rule_num 0
    assert dropped["verdict_rule"].iat[0] == 0 and dropped["rule_id"].iat[0] == 6
    icmp = p.loc[p["proto"] == 1]
    assert list(icmp["icmp_type"]) == [8, 0] and list(icmp["icmp_id"]) == [77, 77] and icmp["sport"].isna().all()
    inv = p.loc[p["ct_state"] == "INVALID"]
    assert len(inv) == 1 and "upper bound" in inv["invalid_reason"].iat[0]
    assert inv["tcp_seq"].iat[0] == 99_999_999


def test_rules_counters(res):
    r = res.rules
    assert (r["packets"].to_numpy() == res.output.rule_packets).all()
    assert (r["bytes"].to_numpy() == res.output.rule_bytes).all()
    assert r.loc[r["rule_id"] == 5, "provenance"].iat[0] == "ufw"
    assert r.loc[r["kind"] == "policy", "rule_num"].eq(0).all()


def test_flows_agree_with_arrays(res):
    f, o = res.flows, res.output
    assert len(f) == 4
    http = f.iloc[0]
    assert (http["orig_src"], http["orig_dst"], http["orig_sport"], http["orig_dport"]) == \
        ("10.0.0.2", "203.0.113.10", 40000, 80)
    assert http["packets_orig"] == 5 and http["packets_reply"] == 4
    assert http["bytes_orig"] == o.flows["bytes_orig"][0]
    assert http["final_state"] == "TIME_WAIT" and http["end"] == "closed" and bool(http["assured"])
    assert pd.isna(http["nat"])
    assert (f["first_packet"].to_numpy() == o.flows["first_packet"]).all()
    assert f["service"].astype(str).tolist() == ["tcp/80", "udp/53", "icmp/8", "tcp/80"]


def test_events(res):
    e = res.events
    assert len(e) == len(res.output.events["ct_id"])
    assert e["event"].iat[0] == "NEW" and e["status"].iat[0] == "CONFIRMED"
    assert str(e["ts"].dtype) == "datetime64[ns, UTC]"


def test_nat_flow_and_leak():
    """A DNAT+SNAT session: the reply tuple shows both, and an INVALID packet leaving wan0 with its
    internal source is reported as escaped NAT."""
    pk = tcp_session(0.0, "203.0.113.50", "198.51.100.1", 50000, 8080, 0, out_dst="10.0.0.10", out_dport=80,
                     out_src="10.0.0.1", out_sport=61000, nat=3, in_iface="wan0", out_iface="lan0")
    pk.append(pkt(1.0, "10.0.0.10", "203.0.113.50", sport=80, dport=50000, flags="RA", ct=-1, ct_state="INVALID",
                  invalid=R_INVALID_NEW, rule_id=-1, in_iface="lan0", out_iface="wan0", verdict_hook="FORWARD"))
    pk.append(pkt(2.0, "10.0.0.5", "203.0.113.9", sport=1234, dport=443, flags="S", ct=1, rule_id=2,
                  out_src="198.51.100.1", out_sport=1234, nat=1))
    res = Result(make_output(pk))
    f = res.flows
    assert f["nat"].iat[0] == "both" and f["reply_src"].iat[0] == "10.0.0.10" and f["reply_dport"].iat[0] == 61000
    assert f["nat"].iat[1] == "SNAT"
    nat = res.nat()
    assert nat["dnat_public"]["public"].tolist() == ["198.51.100.1:8080"]
    assert nat["dnat_public"]["internal"].tolist() == ["10.0.0.10:80"]
    assert set(nat["snat_public"]["public"]) == {"10.0.0.1:61000", "198.51.100.1:1234"}
    assert nat["escaped"]["index"].tolist() == [9]
    assert res.summary["nat"]["escaped_packets"] == 1


def test_summary_counts(res):
    s = res.summary
    p = res.packets
    assert s["packets"] == len(p)
    assert s["outcomes"] == {"forwarded": 20, "dropped": 3}
    assert s["ct_states"]["INVALID"] == 1
    assert s["hooks"]["FORWARD"] == 23 and s["hooks"]["POSTROUTING"] == 20 and s["hooks"]["INPUT"] == 0
    assert s["sysctls"] == {"net.netfilter.nf_conntrack_tcp_loose": 1}
    assert s["seed"] == 0 and s["capture_point"] == "arrival" and s["nfreplay_version"]
    assert s["checksums"]["l4"] == {"good": 23}
    assert s["conn_states"] == {"SF": 2, "S1": 1, "OTH": 1}
    import json

    json.dumps(s)


def test_drops_and_invalid(res):
    d = res.drops_by_rule()
    assert d["rule_id"].tolist() == [6, 0] and d["packets"].tolist() == [2, 1]
    assert d["who"].iat[0] == "the policy of filter/FORWARD"
    svc = res.drops_by_service()
    assert svc.set_index("service")["packets"].to_dict() == {"tcp/22": 2, "tcp/40002": 1}
    src = res.drops_by_source()
    assert src.set_index("src")["packets"].to_dict() == {"10.0.0.2": 2, "203.0.113.10": 1}
    tl = res.timeline(bins=10)
    assert tl["accepted"].sum() == 20 and tl["dropped"].sum() == 3 and tl["invalid"].sum() == 1
    ir = res.invalid_by_reason()
    assert ir[["packets", "conversations", "dropped"]].values.tolist() == [[1, 1, 1]]
    inv = res.invalid_by_flow()
    assert len(inv) == 1 and inv["tcp_flags"].iat[0] == "R" and inv["tcp_seq"].iat[0] == 99_999_999
    assert inv["conversation"].iat[0] == "tcp 10.0.0.2:40002 <-> 203.0.113.10:80"
    never = res.never_hit_rules()
    assert never["rule_id"].tolist() == [5]
    vh = res.verdicts_by_hook().set_index("hook")
    assert vh.loc["FORWARD", "dropped"] == 3


def test_empty_output():
    res = Result(make_output([]))
    assert len(res.packets) == 0 and len(res.flows) == 0 and len(res.events) == 0
    assert list(res.flows.columns[:len(CONTRACT_FLOWS)]) == CONTRACT_FLOWS
    assert res.summary["packets"] == 0


def test_frames_vectorised_addresses_v6():
    hi = np.array([0x20010DB800000000, 0], dtype=np.uint64)
    lo = np.array([1, addr.V4_MAPPED_LO | 0x0A000001], dtype=np.uint64)
    fam = np.array([6, 4], dtype=np.uint8)
    assert frames.addresses_text(hi, lo, fam).tolist() == ["2001:db8::1", "10.0.0.1"]


def test_rule_counters_policy_last(res):
    rc = summary.rule_counters(res.rules)
    fwd = rc.loc[rc["chain"] == "FORWARD", "rule_num"].tolist()
    assert fwd == [1, 2, 3, 4, 5, 6, 0]
    assert FORWARD_RULES[0]["text"] in rc["text"].tolist()


def test_nat_rules_are_nat_statements_not_ctstate_matches():
    from nfreplay.analysis.summary import nat_report

    from .factories import rule

    rules = [rule(0, "nat", "PREROUTING", 1, "-A PREROUTING -p tcp --dport 8080 -j DNAT --to-destination 10.0.0.10:80",
                  hook="PREROUTING"),
             rule(1, "filter", "FORWARD", 1, "-A FORWARD -m conntrack --ctstate DNAT -j ACCEPT"),
             rule(2, "nat", "POSTROUTING", 1, "-A POSTROUTING -o wan0 -j RETURN", hook="POSTROUTING"),
             rule(3, "nat", "POSTROUTING", 2, "-A POSTROUTING -o wan0 -j MASQUERADE", hook="POSTROUTING")]
    res = Result(make_output(forward_scenario()[:2], rules=rules))
    got = nat_report(res.packets, res.flows, res.rules)["translations_per_rule"]
    assert got["rule_id"].tolist() == [0, 3]


def _addresses_text_per_row(hi, lo, fam, valid=None):
    """The former per-row formatting: ipaddress's str() of every address ('' for family 0 / not valid)."""
    import ipaddress

    out = []
    for i, (h, l, f) in enumerate(zip(hi.tolist(), lo.tolist(), fam.tolist())):
        if valid is not None and not valid[i]:
            f = 0
        out.append(str(ipaddress.IPv4Address(l & 0xFFFFFFFF)) if f == 4
                   else str(ipaddress.IPv6Address((h << 64) | l)) if f == 6 else "")
    return out


def _v6_edge_cases():
    """Hextet patterns that decide the '::' choice: none, single zero groups (not compressed), leading /
    trailing / middle runs, two runs of equal length (the first wins), a longer second run, all zero."""
    groups = [
        [0x2001, 0xdb8, 1, 2, 3, 4, 5, 6], [0x2001, 0xdb8, 0, 1, 0, 1, 0, 1], [0, 0, 0, 0, 0, 0, 0, 1],
        [0xfe80, 0, 0, 0, 0, 0, 0, 0], [0x2001, 0xdb8, 0, 0, 1, 0, 0, 1], [0x2001, 0, 0, 1, 0, 0, 0, 1],
        [0, 0, 0, 0, 0, 0, 0, 0], [0, 1, 0, 0, 0, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 1], [0, 0, 1, 0, 0, 1, 0, 0],
        [0xffff] * 8, [0xabcd, 0xef, 0xf, 0x10, 0x100, 0x1000, 0, 0], [0, 0, 0, 0, 0, 0xffff, 0x0a00, 1],
        [0, 0, 0, 0, 0, 0, 0x0a00, 1], [0x64, 0xff9b, 0, 0, 0, 0, 0xc000, 0x221],
    ]
    hi = [sum(g[i] << (48 - 16 * i) for i in range(4)) for g in groups]
    lo = [sum(g[4 + i] << (48 - 16 * i) for i in range(4)) for g in groups]
    return hi, lo


def test_vectorised_addresses_equal_per_row_formatting():
    """addresses_text (distinct addresses formatted with pyarrow compute, taken by code) gives exactly the
    texts of ipaddress per row: IPv4 (stored v4-mapped), IPv6 incl. every '::' placement rule, IPv6
    packets carrying v4-mapped (::ffff:a.b.c.d) addresses, family 0, and the `valid` mask; random
    addresses with repeats (the code/take path) and random hextets with many zero groups."""
    rng = np.random.default_rng(7)
    ehi, elo = _v6_edge_cases()
    n4, n6 = 3000, 3000
    v4 = rng.integers(0, 1 << 32, size=200, dtype=np.uint64)[rng.integers(0, 200, size=n4)]
    v4[:4] = [0, 0xFFFFFFFF, 0x0A000001, 0x7F000001]
    # random hextets, each zero with probability 1/2, so runs of every length and position occur
    hx = rng.integers(0, 1 << 16, size=(n6, 8), dtype=np.uint64) * (rng.random((n6, 8)) < 0.5)
    hi6 = (hx[:, 0] << 48) | (hx[:, 1] << 32) | (hx[:, 2] << 16) | hx[:, 3]
    lo6 = (hx[:, 4] << 48) | (hx[:, 5] << 32) | (hx[:, 6] << 16) | hx[:, 7]
    mapped = addr.V4_MAPPED_LO | rng.integers(0, 1 << 32, size=50, dtype=np.uint64)
    hi = np.concatenate([np.zeros(n4, np.uint64), hi6, np.array(ehi, np.uint64), np.zeros(50, np.uint64),
                         np.zeros(3, np.uint64)])
    lo = np.concatenate([addr.V4_MAPPED_LO | v4, lo6, np.array(elo, np.uint64), mapped,
                         np.array([5, addr.V4_MAPPED_LO | 1, 0], np.uint64)])
    fam = np.concatenate([np.full(n4, 4), np.full(n6 + len(ehi) + 50, 6), [0, 0, 6]]).astype(np.uint8)
    order = rng.permutation(len(fam))  # families interleaved, as in a capture
    hi, lo, fam = hi[order], lo[order], fam[order]
    want = _addresses_text_per_row(hi, lo, fam)
    assert frames.addresses_text(hi, lo, fam).tolist() == want
    valid = rng.random(len(fam)) < 0.7
    assert frames.addresses_text(hi, lo, fam, valid).tolist() == _addresses_text_per_row(hi, lo, fam, valid)
    # the packets frame's column: the same texts as the pandas "str" dtype
    arr = frames._address_str_array(hi, lo, fam)
    assert str(arr.dtype) == "str" and list(arr) == want
    assert frames.addresses_text(hi[:0], lo[:0], fam[:0]).tolist() == []


def test_categorical_lookup_equals_int64_path():
    """_categorical's lookup table over every int8/uint8/int16 value gives the codes of the direct int64
    computation (shift, none_value, negative and out-of-range codes -> NA)."""
    names = ["a", "b", "c", "d"]
    rng = np.random.default_rng(3)
    for dt in (np.int8, np.uint8, np.int16, np.uint16):
        info = np.iinfo(dt)
        v = rng.integers(info.min, int(info.max) + 1, size=5000).astype(dt)
        v[:8] = np.array([0, 1, 2, 3, 4, 5, info.max, info.min], dtype=np.int64).astype(dt)
        for kw in ({}, {"shift": 1}, {"none_value": 0}, {"none_value": 2, "shift": 1}):
            c = v.astype(np.int64) - kw.get("shift", 0)
            if "none_value" in kw:
                c = np.where(v.astype(np.int64) == kw["none_value"], -1, c)
            c = np.where((c < 0) | (c >= len(names)), -1, c)
            got = frames._categorical(v, names, **kw)
            assert list(got.categories) == names
            assert (got.codes.astype(np.int64) == c).all(), (dt, kw)


def test_nat_report_without_nat_flows_has_the_groupby_tables_columns_and_dtypes(res):
    """No NAT flow: nat_report skips its groupbys; the empty tables are those the groupbys give."""
    from nfreplay.analysis.summary import nat_report

    f = res.flows.iloc[:0]
    nat = nat_report(res.packets, f, res.rules)
    snat = f.assign(public=f["reply_dst"].astype(str) + ":" + f["reply_dport"].astype(str)) \
        .groupby("public").agg(flows=("ct_id", "size"), internal_hosts=("orig_src", "nunique")).reset_index()
    dnat = f.assign(public=f["orig_dst"].astype(str) + ":" + f["orig_dport"].astype(str),
                    internal=f["reply_src"].astype(str) + ":" + f["reply_sport"].astype(str)) \
        .groupby(["public", "internal"]).agg(flows=("ct_id", "size"), clients=("orig_src", "nunique")).reset_index()
    pd.testing.assert_frame_equal(nat["snat_public"], snat)
    pd.testing.assert_frame_equal(nat["dnat_public"], dnat)
    assert nat["snat_flows"] == nat["dnat_flows"] == nat["clashes"] == 0

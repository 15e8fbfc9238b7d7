"""The block-wise diff (analysis.diff._compare, behind compare() and compare_files()) against the
previous whole-capture implementation (diff_reference.py): the same Diff on the samples, the synthetic
benchmark traffic under two rulesets, and when read from packets.parquet files in blocks of any size."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import nfreplay
from nfreplay.analysis import compare, write_tables
from nfreplay.analysis.diff import compare_files

from . import diff_reference
from .factories import forward_scenario, make_output
from .test_diff import _new_side

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def assert_same_diff(got, want):
    assert got.labels == want.labels
    assert got.counts == want.counts
    pd.testing.assert_frame_equal(got.flows.reset_index(drop=True), want.flows.reset_index(drop=True),
                                  check_dtype=False)
    pd.testing.assert_frame_equal(got.by_service.reset_index(drop=True), want.by_service.reset_index(drop=True),
                                  check_dtype=False, check_index_type=False)
    if len(want.packets):
        pd.testing.assert_frame_equal(got.packets.reset_index(drop=True), want.packets.reset_index(drop=True),
                                      check_dtype=False)
    else:
        assert len(got.packets) == 0 and list(got.packets.columns) == list(want.packets.columns)


@pytest.mark.parametrize("swap", [False, True])
def test_factory_scenario_equals_reference(swap):
    a, b = make_output(forward_scenario()), _new_side()
    if swap:
        a, b = b, a
    assert_same_diff(compare(a, b), diff_reference.compare(a, b))


def _ruleset_change():
    d = SAMPLES / "ruleset_change"
    a = nfreplay.simulate(d / "capture.pcap", d / "rules.ipt", host=d / "host.toml")
    b = nfreplay.simulate(d / "capture.pcap", d / "rules_new.ipt", host=d / "host.toml")
    return a, b


def test_sample_equals_reference():
    a, b = _ruleset_change()
    want = diff_reference.compare(a, b)
    assert want.counts["newly_blocked"] == 2 and want.counts["newly_allowed"] == 1
    assert_same_diff(compare(a, b), want)
    assert_same_diff(compare(b, a, labels=("x", "y")), diff_reference.compare(b, a, labels=("x", "y")))


@pytest.mark.parametrize("block", [1, 3, 7, 1000])
def test_files_in_blocks_equal_reference(tmp_path, block):
    a, b = _ruleset_change()
    write_tables(a, tmp_path / "a")
    write_tables(b, tmp_path / "b")
    sunk, prog = [], []
    got = compare_files(tmp_path / "a" / "packets.parquet", tmp_path / "b" / "packets.parquet", a.rules, b.rules,
                        block=block, keep_packets=2, packets_sink=sunk.append, progress=lambda k, t: prog.append((k, t)))
    n = len(a.packets)
    assert prog[-1] == (2 * n, 2 * n) and len(prog) == 2 * -(-n // block)
    want = diff_reference.compare(a, b)
    assert got.counts == want.counts
    pd.testing.assert_frame_equal(got.flows, want.flows, check_dtype=False)
    pd.testing.assert_frame_equal(pd.concat(sunk, ignore_index=True), want.packets, check_dtype=False)
    pd.testing.assert_frame_equal(got.packets, want.packets.iloc[:2], check_dtype=False)


def test_synthetic_traffic_two_rulesets(tmp_path):
    """The benchmark's synthetic traffic (3000 packets, hundreds of flows) under the 50-rule ruleset and
    the same ruleset no longer accepting new connections to tcp/80: many newly blocked
    conversations with consequential packets; block sizes that split flows."""
    from .test_stream import _bench_ruleset_and_host, _synthetic_capture

    cap = _synthetic_capture(tmp_path / "s.pcap", 3000)
    rules, host = _bench_ruleset_and_host()
    lines = rules.splitlines()
    i = lines.index("-A lan_out -p tcp -m multiport --dports 80,443,8080 -m conntrack --ctstate NEW -j ACCEPT")
    lines[i] = "-A lan_out -p tcp -m multiport --dports 443,8080 -m conntrack --ctstate NEW -j ACCEPT"  # not 80
    a = nfreplay.simulate(cap, rules, host=host, assume_good_checksums=True)
    b = nfreplay.simulate(cap, "\n".join(lines) + "\n", host=host, assume_good_checksums=True)
    want = diff_reference.compare(a, b)
    assert want.counts["newly_blocked"] > 0 and want.counts["packets_consequential"] > 0
    assert_same_diff(compare(a, b), want)
    write_tables(a, tmp_path / "a")
    write_tables(b, tmp_path / "b")
    for block in (97, 1024):
        got = compare_files(tmp_path / "a" / "packets.parquet", tmp_path / "b" / "packets.parquet", a.rules,
                            b.rules, block=block)
        assert_same_diff(got, want)


def test_files_of_different_lengths_are_an_error(tmp_path):
    a, b = _ruleset_change()
    write_tables(a, tmp_path / "a")
    write_tables(b, tmp_path / "b", packet_rows="notable")
    from nfreplay.errors import NfreplayError

    with pytest.raises(NfreplayError, match="every packet of the same capture"):
        compare_files(tmp_path / "a" / "packets.parquet", tmp_path / "b" / "packets.parquet", a.rules, b.rules)


def test_conversation_codes_equal_reference_keys():
    """Every kind of conversation (side A flows, side B flows mapped to A by a later packet with both, side B
    flows of their own, tuples that join a flow seen later, tuples of their own, ICMP ids as ports), split
    into blocks of every size: the names equal the reference's keys."""
    from nfreplay.analysis.diff import _Conversations

    nan = None
    rows = [  # (ct A, ct B, proto, src, sport, dst, dport, icmp_id)
        (nan, 7, 6, "10.0.0.1", 1000, "10.0.0.9", 80, nan),     # B only, mapped to A:3 by row 3
        (nan, nan, 6, "10.0.0.9", 80, "10.0.0.1", 1000, nan),   # no flow: its tuple joins A:3
        (nan, 8, 17, "10.0.0.2", 53, "10.0.0.8", 53, nan),      # B:8 of its own
        (3, 7, 6, "10.0.0.1", 1000, "10.0.0.9", 80, nan),       # both: B 7 -> A 3
        (nan, nan, 1, "10.0.0.5", nan, "10.0.0.6", nan, 77),    # ICMP, no flow anywhere: T
        (4, nan, 6, "10.0.0.3", 2000, "10.0.0.9", 443, nan),    # A:4
        (nan, nan, 1, "10.0.0.6", nan, "10.0.0.5", nan, 77),    # same ICMP tuple (reversed): same T
        (nan, 8, 17, "10.0.0.8", 53, "10.0.0.2", 53, nan),      # B:8 again
        (5, 7, 6, "10.0.0.1", 1000, "10.0.0.9", 80, nan),       # B 7 -> A 5 now (the last pair wins)
    ]
    cols = ["a", "b", "proto", "src", "sport", "dst", "dport", "icmp_id"]
    df = pd.DataFrame(rows, columns=cols)
    pa = pd.DataFrame({"ct_id": pd.array(df["a"], dtype="Int32"), "proto": df["proto"].astype("uint8"),
                       "src": df["src"], "dst": df["dst"], "sport": pd.array(df["sport"], dtype="UInt16"),
                       "dport": pd.array(df["dport"], dtype="UInt16"),
                       "icmp_id": pd.array(df["icmp_id"], dtype="UInt16")})
    pb = pa.assign(ct_id=pd.array(df["b"], dtype="Int32"))
    want = diff_reference._conversations(pa, pb).tolist()
    assert want[0] == "A:5" and want[1] == "A:5" and want[2] == "B:8" and want[4].startswith("T:1 ")
    for block in (1, 2, 4, 9):
        conv = _Conversations()
        parts = [(pa.iloc[i:i + block], pb.iloc[i:i + block]) for i in range(0, len(pa), block)]
        for a, b in parts:
            conv.learn(a, b)
        got = [x for a, b in parts for x in conv.text(conv.codes(a, b)).tolist()]
        assert got == want, block


@pytest.mark.parametrize("collide", [False, True])
@pytest.mark.parametrize("compact_rows", [1, 5, 1 << 20])
def test_first_flows_keep_the_first_value_of_each_tuple(monkeypatch, collide, compact_rows):
    """diff._FirstFlows (sorted 128-bit keys) against a dict of the texts: the first value added for each
    tuple, over blocks, merged at any pending size; with first hashes forced to collide too (the rare
    path that searches the second hash among equal first hashes)."""
    import numpy as np

    from nfreplay.analysis import diff

    monkeypatch.setattr(diff._FirstFlows, "COMPACT_ROWS", compact_rows)
    if collide:
        real = diff._tuple_keys

        def keys(tup):
            h1, h2 = real(tup)
            return h1 % np.uint64(3), h2  # three first hashes for every tuple
        monkeypatch.setattr(diff, "_tuple_keys", keys)
    rng = np.random.default_rng(7)
    ff, want = diff._FirstFlows(), {}
    for _ in range(12):
        tup = np.array([f"T:6 10.0.0.{a}:{p} 10.0.1.1:80" for a, p in zip(rng.integers(0, 30, 40),
                                                                             rng.integers(1000, 1004, 40))],
                       dtype=object)
        val = rng.integers(0, 1 << 40, len(tup))
        ff.add(tup, val)
        for t, v in zip(tup.tolist(), val.tolist()):
            want.setdefault(t, v)
    ff.finish()
    vals = ff.val
    ask = np.array(list(want) + ["T:17 10.9.9.9:1 10.0.1.1:53", "T:6 10.0.0.99:1000 10.0.1.1:80"], dtype=object)
    pos = ff.find(ask)
    assert (pos[-2:] == -1).all()
    assert [int(vals[p]) for p in pos[:-2]] == list(want.values())
    assert len(ff.k1) == len(want)

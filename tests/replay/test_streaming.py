"""Streaming replay (driver.Replayer fed capture chunks) gives exactly the in-memory result.

The same capture is replayed in one piece (pipeline.run_replay, conntrack table sized by the packet
count) and fed to a Replayer in chunks of random sizes (hypothesis; conntrack table sized by
nf_conntrack_max, so a different hash size) and via iter_capture: per-packet results, the event stream,
flow records, rule counters and the summary counters must be identical.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = sorted(p for p in (ROOT / "samples").iterdir() if (p / "capture.pcap").exists())
SCEN = ("tools", "kernel-oracle", "scenarios")

_CACHE: dict = {}


def _inputs(key, paths, rules, host_path):
    """(capture, ruleset, host, whole-capture ReplayOutput), cached per input set."""
    if key not in _CACHE:
        from nfreplay.replay.host import load_host
        from nfreplay.replay.ingest import read_capture
        from nfreplay.replay.pipeline import run_replay
        from nfreplay.replay.rules import load_ruleset

        cap = read_capture([str(p) for p in paths])
        rs = load_ruleset(str(rules))
        host = load_host(str(host_path))
        _CACHE[key] = (cap, rs, host, run_replay(cap, rs, host))
    return _CACHE[key]


def _slice(cap, a, b):
    from nfreplay.replay.ingest import Capture

    pk = type(cap.packets)(*[c[a:b] for c in cap.packets])
    return Capture(packets=pk, data=cap.data, files=cap.files, rec_off=cap.rec_off[a:b])


def _stream(chunks, rs, host, sub_chunk=None):
    from nfreplay.replay.driver import Replayer

    kw = {} if sub_chunk is None else {"sub_chunk": sub_chunk}
    rp = Replayer(rs, host, **kw)
    parts = [rp.feed(c) for c in chunks]
    out = rp.finish(events_before=[p.events for p in parts])
    return parts, out


def _assert_same(whole, parts, out):
    offs = [p.offset for p in parts]
    assert offs == list(np.cumsum([0] + [len(p.packets.ts_ns) for p in parts[:-1]]))
    for f in whole.results._fields:
        got = np.concatenate([getattr(p.results, f) for p in parts]) if parts else np.zeros(0)
        assert np.array_equal(getattr(whole.results, f), got), f"results.{f}"
    for k in whole.events:
        assert np.array_equal(whole.events[k], out.events[k]), f"events.{k}"
    assert set(whole.flows) == set(out.flows)
    for k in whole.flows:
        assert np.array_equal(whole.flows[k], out.flows[k]), f"flows.{k}"
    assert np.array_equal(whole.rule_packets, out.rule_packets)
    assert np.array_equal(whole.rule_bytes, out.rule_bytes)
    for k in ("kernel_drops", "conntrack", "nat", "packets"):
        assert whole.meta[k] == out.meta[k], k


def _cuts(n, sizes):
    cuts, a = [], 0
    for s in sizes:
        if a >= n:
            break
        cuts.append((a, min(n, a + s)))
        a += s
    if a < n:
        cuts.append((a, n))
    return cuts


@pytest.mark.parametrize("sample", SAMPLES, ids=[p.name for p in SAMPLES])
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sizes=st.lists(st.integers(1, 40), min_size=1, max_size=12), sub=st.integers(1, 50))
def test_samples_random_chunks(sample, sizes, sub):
    cap, rs, host, whole = _inputs(sample.name, [sample / "capture.pcap"], sample / "rules.ipt",
                                   sample / "host.toml")
    n = len(cap.packets.ts_ns)
    parts, out = _stream([_slice(cap, a, b) for a, b in _cuts(n, sizes)], rs, host, sub_chunk=sub)
    _assert_same(whole, parts, out)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(chunk=st.integers(1, 300), seed=st.integers(0, 2 ** 16))
def test_oracle_scenarios_concatenated(shared_dir, chunk, seed):
    """Several kernel-oracle captures merged into one stream (iter_capture's k-way merge), random cuts."""
    from nfreplay.replay.ingest import iter_capture

    base = shared_dir.joinpath(*SCEN)
    scen = sorted(d for d in base.iterdir() if (d / "capture.pcap").exists() and (d / "rules.ipt").exists())
    if not scen:
        pytest.skip("no iptables kernel-oracle scenarios")
    d0 = scen[0]
    topo = d0 / "topology.json"
    paths = [d / "capture.pcap" for d in scen[:6]]
    cap, rs, host, whole = _inputs("oracle", paths, d0 / "rules.ipt", topo)
    n = len(cap.packets.ts_ns)
    rng = np.random.default_rng(seed)
    sizes = rng.integers(1, max(2, n // 3), size=n).tolist()
    parts, out = _stream([_slice(cap, a, b) for a, b in _cuts(n, sizes)], rs, host)
    _assert_same(whole, parts, out)
    # iter_capture's own chunks (k-way merge of the files) give the same stream
    parts, out = _stream(list(iter_capture([str(p) for p in paths], chunk_packets=chunk)), rs, host)
    _assert_same(whole, parts, out)


def test_trace_packet_in_a_later_chunk():
    from nfreplay.replay.driver import Replayer
    from nfreplay.replay.pipeline import run_replay

    s = SAMPLES[0]
    cap, rs, host, _ = _inputs(s.name, [s / "capture.pcap"], s / "rules.ipt", s / "host.toml")
    n = len(cap.packets.ts_ns)
    t = n - 2
    whole = run_replay(cap, rs, host, trace_packet=t)
    rp = Replayer(rs, host, trace_packet=t)
    parts = [rp.feed(_slice(cap, a, b)) for a, b in _cuts(n, [3] * n)]
    out = rp.finish(events_before=[p.events for p in parts])
    assert whole.meta["trace"] is not None and len(whole.meta["trace"])
    assert np.array_equal(whole.meta["trace"], out.meta["trace"])

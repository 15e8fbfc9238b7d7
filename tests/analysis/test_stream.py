"""Streaming output (export.stream_tables / api.simulate_to): the files equal the in-memory simulate()
tables for every chunk and replay-step size, the write-behind thread keeps order, stays bounded and
passes its errors to the caller."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import nfreplay
from nfreplay.analysis import export, read_tables, write_tables

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
NAMES = ("forward_blocked_service", "port_forward_nat", "invalid_out_of_window")
# categoricals whose categories are the values present: a file of several row groups reads them back
# in order of first appearance, one frame built at once has them sorted; the values must be equal
OPEN = ["verdict_table", "verdict_chain", "invalid_reason"]

_WHOLE: dict = {}


def _whole(name):
    if name not in _WHOLE:
        d = SAMPLES / name
        _WHOLE[name] = nfreplay.simulate(d / "capture.pcap", d / "rules.ipt", host=d / "host.toml")
    return _WHOLE[name]


def _stream(name, out, *, chunk, step, fmt="parquet", sample=None):
    from nfreplay.analysis.api import _load_host, _load_rules
    from nfreplay.replay.driver import Replayer
    from nfreplay.replay.ingest import iter_capture

    d = SAMPLES / name
    rp = Replayer(_load_rules(d / "rules.ipt"), _load_host(d / "host.toml", ()))
    chunks = iter_capture([str(d / "capture.pcap")], chunk_packets=chunk)
    return export.stream_tables(chunks, rp, out, fmt, step=step,
                                sample=export.STREAM_SAMPLE if sample is None else sample)


def _assert_same_table(got: pd.DataFrame, want: pd.DataFrame):
    assert list(got.columns) == list(want.columns)
    for c in OPEN:
        if c in want.columns:
            assert isinstance(got[c].dtype, pd.CategoricalDtype)
            pd.testing.assert_series_equal(got[c].astype(object), want[c].astype(object))
    rest = [c for c in want.columns if c not in OPEN]
    pd.testing.assert_frame_equal(got[rest].reset_index(drop=True), want[rest].reset_index(drop=True))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("chunk,step", [(5, 3), (7, 1000), (1_000_000, 4), (1_000_000, 1_000_000)])
def test_streamed_files_equal_in_memory_tables(tmp_path, name, chunk, step):
    whole = _whole(name)
    res, paths = _stream(name, tmp_path, chunk=chunk, step=step)
    back = read_tables(tmp_path)
    n = len(whole.packets)
    assert 1 <= min(chunk, step) < n or (chunk, step) == (1_000_000, 1_000_000)
    for t in ("packets", "events", "rules", "flows"):
        _assert_same_table(back[t], getattr(whole, t))
    # one row group per replay step
    import pyarrow.parquet as pq

    steps = sum(-(-min(chunk, n - a) // step) for a in range(0, n, chunk))
    assert pq.ParquetFile(paths["packets"]).num_row_groups == steps
    # whole-capture counts in summary.json, as simulate() counts them
    s, w = back["summary"], whole.summary
    assert s["streamed"] is True and s["packets"] == n
    for k in ("outcomes", "ct_states", "hooks", "not_replayed_reasons", "invalid", "checksums", "flows", "nat"):
        assert s[k] == w[k], k
    assert s["digests"] == w["digests"] and len(s["digests"]["capture"]) == 64  # hashed in the background


@pytest.mark.parametrize("name", NAMES)
def test_streamed_csv_is_byte_identical_to_write_tables(tmp_path, name):
    """Same rows, same order, same text: streamed CSV (steps of 3 packets) == write_tables of simulate()."""
    _stream(name, tmp_path / "s", chunk=5, step=3, fmt="csv")
    write_tables(_whole(name), tmp_path / "w", fmt="csv")
    for t in ("packets", "events"):
        assert (tmp_path / "s" / f"{t}.csv").read_bytes() == (tmp_path / "w" / f"{t}.csv").read_bytes(), t


def test_sample_is_the_first_packets(tmp_path):
    whole = _whole("forward_blocked_service")
    res, _ = _stream("forward_blocked_service", tmp_path, chunk=5, step=3, sample=10)
    assert len(res.packets) == 10 and res.summary["packets_in_memory_sample"] == 10
    _assert_same_table(res.packets, whole.packets.iloc[:10])


def _assert_same_analyses(res, whole):
    for name in ("timeline", "verdicts_by_hook", "drops_by_rule", "drops_by_service", "drops_by_source",
                 "invalid_by_reason", "invalid_by_flow"):
        got, want = getattr(res, name)(), getattr(whole, name)()
        pd.testing.assert_frame_equal(got.reset_index(drop=name != "timeline"),
                                      want.reset_index(drop=name != "timeline"), check_dtype=False,
                                      check_categorical=False, obj=name)
    assert res.nat()["escaped"]["index"].tolist() == whole.nat()["escaped"]["index"].tolist()


def test_notable_rows_past_the_limit_fall_back_to_the_sample(tmp_path):
    res, paths = _stream("forward_blocked_service", tmp_path, chunk=5, step=3, sample=10)
    assert len(export.read_notable_packets(paths["packets"])) == 7  # the 7 dropped packets
    assert export.read_notable_packets(paths["packets"], limit=6) is None
    export.NOTABLE_ROWS_LIMIT, old = 6, export.NOTABLE_ROWS_LIMIT
    try:
        assert len(res.notable_packets) == 10 and res.notable_is_sample
    finally:
        export.NOTABLE_ROWS_LIMIT = old


@pytest.mark.parametrize("sample", [0, 3, 16])
def test_summary_and_histories_cover_packets_beyond_the_sample(tmp_path, sample):
    """port_forward_nat: packet 17 escapes NAT (INVALID, left through the SNAT interface with its private
    source) and the flows end late in the capture. A streamed run keeping fewer packets in memory still
    reports the escape, the conn_states and histories of the whole capture, in summary.json, Result.nat()
    and the flows table."""
    whole = _whole("port_forward_nat")
    res, _ = _stream("port_forward_nat", tmp_path, chunk=5, step=3, sample=sample)
    back = read_tables(tmp_path)
    s, w = back["summary"], whole.summary
    assert w["nat"]["escaped_packets"] == 1
    for k in ("nat", "conn_states", "flow_end", "flows"):
        assert s[k] == w[k], k
    assert res.nat()["escaped"]["index"].tolist() == whole.nat()["escaped"]["index"].tolist() == [17]
    pd.testing.assert_series_equal(back["flows"]["history"], whole.flows["history"])
    assert (whole.flows["history"].str.len() > 0).all()
    _assert_same_analyses(res, whole)


def _writer_threads():
    return [t for t in threading.enumerate() if t.name in ("nfreplay-write", "nfreplay-digest")]


def test_writer_error_reaches_the_caller(tmp_path, monkeypatch):
    """An error while writing a step (here: the second packets row group) is raised by stream_tables
    itself, the writer thread is stopped and the files are closed."""
    calls = []
    append = export._TableAppender.append

    def failing(self, df):
        if self.path.name.startswith("packets"):
            calls.append(len(df))
            if len(calls) == 2:
                raise OSError("disk full (test)")
        append(self, df)

    monkeypatch.setattr(export._TableAppender, "append", failing)
    before = len(_writer_threads())
    with pytest.raises(OSError, match="disk full"):
        _stream("forward_blocked_service", tmp_path, chunk=5, step=3)
    assert len(_writer_threads()) == before
    assert calls[:2] == [3, 2] and len(calls) <= 3  # chunks of 5 in steps of 3: stopped at once
    import pyarrow.parquet as pq

    assert pq.ParquetFile(tmp_path / "packets.parquet").metadata.num_rows == 3  # closed: readable


def test_replay_error_stops_the_writer(tmp_path):
    """An error on the caller's side (the capture reader here) stops the writer thread and propagates."""
    from nfreplay.analysis.api import _load_host, _load_rules
    from nfreplay.replay.driver import Replayer
    from nfreplay.replay.ingest import iter_capture

    d = SAMPLES / "forward_blocked_service"

    def chunks():
        yield from iter_capture([str(d / "capture.pcap")], chunk_packets=6)
        raise ValueError("truncated capture (test)")

    before = len(_writer_threads())
    rp = Replayer(_load_rules(d / "rules.ipt"), _load_host(d / "host.toml", ()))
    with pytest.raises(ValueError, match="truncated capture"):
        export.stream_tables(chunks(), rp, tmp_path, step=4)
    assert len(_writer_threads()) == before
    back = pd.read_parquet(tmp_path / "packets.parquet")
    # a readable file holding the steps written before the error in order: all but possibly the last step
    # (3 packets), which is dropped if the writer had not started it (depth 1: every earlier one was done)
    assert back["index"].tolist() == list(range(len(back))) and len(back) in (30, 33)


def test_write_behind_order_bound_and_errors():
    gate = threading.Event()
    done = []

    def fn(x):
        if x == 0:
            gate.wait(10)
        if x == 3:
            raise KeyError("boom")
        done.append(x)

    w = export._WriteBehind(fn, depth=1)
    w.submit(0)  # being written (blocked on the gate)
    t = threading.Thread(target=w.submit, args=(1,))
    t.start()
    t.join(0.3)
    assert t.is_alive()  # depth 1: the next step waits until the previous one is written
    gate.set()
    t.join(10)
    assert not t.is_alive()
    w.submit(2)
    w.submit(3)
    with pytest.raises(KeyError, match="boom"):
        for x in range(4, 100):  # the error surfaces at a following submit
            w.submit(x)
    w.close(discard=True)
    assert done == [0, 1, 2]  # in order; nothing after the failed item
    w2 = export._WriteBehind(fn, depth=2)
    w2.submit(3)
    with pytest.raises(KeyError):
        w2.close()  # or at close()


def test_appender_dictionary_wider_than_first_row_group(tmp_path):
    """A later row group may hold more distinct values of a values-present categorical (INVALID texts,
    chains) than the first one's int8 dictionary index allows: the appender sizes it for any."""
    first = pd.DataFrame({"invalid_reason": pd.Categorical(["a", None, "b"]), "x": [1, 2, 3]})
    many = [f"nf_ct_proto_6: SEQ is over upper bound {k}" for k in range(300)]
    second = pd.DataFrame({"invalid_reason": pd.Categorical(many), "x": np.arange(300)})
    a = export._TableAppender(tmp_path / "p.parquet", "parquet")
    a.append(first)
    a.append(second)
    a.close()
    back = pd.read_parquet(tmp_path / "p.parquet")
    assert [None if pd.isna(x) else x for x in back["invalid_reason"].astype(object)] == ["a", None, "b", *many]
    assert back["x"].tolist() == [1, 2, 3, *range(300)]


def test_appender_values_after_an_all_na_first_row_group(tmp_path):
    """A first row group without any INVALID packet (no categories: a null-typed dictionary) must not
    stop a later one from holding INVALID texts."""
    first = pd.DataFrame({"invalid_reason": pd.Categorical.from_codes([-1, -1], categories=pd.Index([], dtype=object))})
    second = pd.DataFrame({"invalid_reason": pd.Categorical(["nf_ct_proto_6: invalid new", None])})
    a = export._TableAppender(tmp_path / "p.parquet", "parquet")
    a.append(first)
    a.append(second)
    a.close()
    back = pd.read_parquet(tmp_path / "p.parquet")["invalid_reason"]
    assert isinstance(back.dtype, pd.CategoricalDtype)
    assert [None if pd.isna(x) else x for x in back.astype(object)] == [None, None, "nf_ct_proto_6: invalid new", None]


def _synthetic_capture(path: Path, n: int) -> Path:
    """bench_ingest's seeded generator (TCP/UDP/ICMP flows between 10.0/16 and 192.168/16) as a pcap."""
    import importlib.util
    import struct

    spec = importlib.util.spec_from_file_location("_bench_ingest", SAMPLES.parent / "bench" / "bench_ingest.py")
    bi = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bi)
    recs = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)]
    for ts, fr in bi.generate(n):
        sec, usec = divmod(ts // 1000, 1_000_000)
        recs.append(struct.pack("<IIII", sec, usec, len(fr), len(fr)) + fr)
    path.write_bytes(b"".join(recs))
    return path


def _bench_ruleset_and_host():
    import importlib.util

    spec = importlib.util.spec_from_file_location("_bench_engine", SAMPLES.parent / "bench" / "bench_engine.py")
    be = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(be)
    return be.ruleset_text(), dict(be.HOST)


@pytest.mark.parametrize("chunk,step", [(1500, 250), (4000, 1024)])
def test_streamed_synthetic_capture_equals_in_memory_tables(tmp_path, chunk, step):
    """The 50-rule benchmark ruleset (REJECT, INVALID; NAT is port_forward_nat's, above) on a synthetic
    capture replayed in many steps: every streamed table reads back as simulate()'s (names, dtypes, values),
    and the summary counts match."""
    from nfreplay.analysis.api import _load_host, _load_rules, simulate_to
    from nfreplay.replay.driver import Replayer
    from nfreplay.replay.ingest import iter_capture

    cap = _synthetic_capture(tmp_path / "synthetic.pcap", 3000)
    rules, host = _bench_ruleset_and_host()
    whole = nfreplay.simulate(cap, rules, host=host, assume_good_checksums=True)
    pk = whole.packets
    # the mix the streamed tables must carry: REJECTs, INVALID texts, many hosts
    assert {"rejected", "forwarded", "dropped"} <= set(pk["outcome"].astype(str)) and pk["src"].nunique() > 100
    assert pk["invalid_reason"].notna().any() and pk["reject_with"].notna().any()
    rp = Replayer(_load_rules(rules), _load_host(host, ()), assume_good_checksums=True)
    out = tmp_path / "out"
    # a sample (packets kept in memory) smaller than the capture: the flows' histories and every summary
    # count must still cover the whole capture
    res, _ = export.stream_tables(iter_capture([str(cap)], chunk_packets=chunk), rp, out, step=step, sample=500)
    assert len(res.packets) == 500
    back = read_tables(out)
    for t in ("packets", "events", "rules", "flows"):
        _assert_same_table(back[t], getattr(whole, t))
        assert [str(d) for d in back[t].dtypes] == [str(d) for d in getattr(whole, t).dtypes], t
    import pyarrow.parquet as pq

    assert pq.ParquetFile(out / "packets.parquet").num_row_groups == sum(
        -(-min(chunk, 3000 - a) // step) for a in range(0, 3000, chunk))
    s, w = back["summary"], whole.summary
    for k in ("outcomes", "ct_states", "hooks", "not_replayed_reasons", "invalid", "checksums", "flows", "nat",
              "conn_states", "flow_end"):
        assert s[k] == w[k], k
    assert w["conn_states"]["SF"] > 20 and (whole.flows["history"].str.len() > 0).mean() > 0.9
    # the report's analyses of the streamed Result read packets.parquet back: the whole capture's
    _assert_same_analyses(res, whole)
    from nfreplay.analysis import summary as sm

    assert not res.notable_is_sample
    assert sm.drops_by_service(res.packets)["packets"].sum() < res.drops_by_service()["packets"].sum()
    # simulate_to (decode-ahead, default step) writes the same files
    simulate_to(cap, rules, host, tmp_path / "to", assume_good_checksums=True, chunk_packets=chunk)
    again = read_tables(tmp_path / "to")
    for t in ("packets", "events", "rules", "flows"):
        _assert_same_table(again[t], getattr(whole, t))


def test_packets_frame_is_the_table_to_pandas():
    """packets_frame / events_frame are the to_pandas of packets_table / events_table (one definition of
    every column); the table's index starts at the offset."""
    from nfreplay.analysis import frames

    o = _whole("port_forward_nat").output
    t = frames.packets_table(o, offset=100)
    assert t["index"].to_pylist() == list(range(100, 100 + len(o.packets.ts_ns)))
    df = frames.packets_frame(o)
    assert df["index"].tolist() == list(range(len(df)))
    assert str(df["sport"].dtype) == "UInt16" and str(df["ct_id"].dtype) == "Int32"
    assert str(df["src"].dtype) == "str" and isinstance(df["outcome"].dtype, pd.CategoricalDtype)
    ev = frames.events_frame(o)
    assert str(ev["packet_index"].dtype) == "Int64" and len(ev) == len(o.events["ct_id"])


def test_appender_tables_null_dictionary_then_values(tmp_path):
    """Arrow tables (the streaming run's): a first step without INVALID packets has a null-typed empty
    dictionary, a later one strings; int8 dictionary indices are widened to the file's int32."""
    import pyarrow as pa

    from nfreplay.analysis import frames

    def step(codes_, cats):
        c = np.asarray(codes_, dtype=np.int8)
        return pa.table({"invalid_reason": frames._a_dict(c, cats),
                         "x": frames._a_nullable(np.arange(len(c)), c >= 0, "Int32")})

    a = export._TableAppender(tmp_path / "p.parquet", "parquet", {"x": "Int32"})
    a.append(step([-1, -1], []))
    a.append(step([1, -1, 0], ["nf_ct_proto_6: invalid new", "nf_ct_proto_17: short packet"]))
    a.close()
    back = pd.read_parquet(tmp_path / "p.parquet")
    assert isinstance(back["invalid_reason"].dtype, pd.CategoricalDtype) and str(back["x"].dtype) == "Int32"
    assert [None if pd.isna(v) else v for v in back["invalid_reason"].astype(object)] == [
        None, None, "nf_ct_proto_17: short packet", None, "nf_ct_proto_6: invalid new"]
    assert [None if pd.isna(v) else int(v) for v in back["x"]] == [None, None, 0, None, 2]


# ------------------------------------------------------------------ --packets notable
def _notable_rows(pk: pd.DataFrame) -> pd.DataFrame:
    """The oracle: the rows a forensic reader wants, written out by hand (not accepted, or INVALID)."""
    keep = ~pk["outcome"].astype(str).isin(["forwarded", "emitted", "delivered_local"])
    return pk.loc[keep | (pk["ct_state"].astype(str) == "INVALID")].reset_index(drop=True)


@pytest.mark.parametrize("chunk,step", [(1500, 250), (4000, 4000)])
def test_notable_packet_rows_streamed(tmp_path, chunk, step):
    """packet_rows="notable": packets.parquet holds exactly the notable rows of the full table (same values,
    their capture index); the summary (with a packets_table note), rules, flows, events and every analysis
    of the Result still cover every packet, as simulate()'s."""
    from nfreplay.analysis.api import _load_host, _load_rules
    from nfreplay.replay.driver import Replayer
    from nfreplay.replay.ingest import iter_capture

    cap = _synthetic_capture(tmp_path / "synthetic.pcap", 3000)
    rules, host = _bench_ruleset_and_host()
    whole = nfreplay.simulate(cap, rules, host=host, assume_good_checksums=True)
    want = _notable_rows(whole.packets)
    assert 0 < len(want) < len(whole.packets) / 2 and (want["ct_state"] == "INVALID").any()
    rp = Replayer(_load_rules(rules), _load_host(host, ()), assume_good_checksums=True)
    out = tmp_path / "out"
    res, _ = export.stream_tables(iter_capture([str(cap)], chunk_packets=chunk), rp, out, step=step, sample=500,
                                  packet_rows="notable")
    back = read_tables(out)
    assert back["packets"]["index"].tolist() == want["index"].tolist()
    _assert_same_table(back["packets"], want)
    for t in ("events", "rules", "flows"):
        _assert_same_table(back[t], getattr(whole, t))
    s, w = back["summary"], whole.summary
    assert s["packets_table"] == {"rows": "notable", "written": len(want)}
    for k in ("packets", "outcomes", "ct_states", "hooks", "not_replayed_reasons", "invalid", "checksums",
              "flows", "nat", "conn_states", "flow_end"):
        assert s[k] == w[k], k
    _assert_same_analyses(res, whole)
    assert res.packet_rows == "notable" and not res.notable_is_sample


def test_notable_packet_rows_keep_nat_escapes(tmp_path):
    """port_forward_nat's escaping packet 17 (INVALID, left through the SNAT interface) is found although
    the SNAT interface is only seen on accepted packets, which a notable table does not hold."""
    from nfreplay.analysis.api import _load_host, _load_rules
    from nfreplay.replay.driver import Replayer
    from nfreplay.replay.ingest import iter_capture

    d = SAMPLES / "port_forward_nat"
    whole = _whole("port_forward_nat")
    rp = Replayer(_load_rules(d / "rules.ipt"), _load_host(d / "host.toml", ()))
    res, _ = export.stream_tables(iter_capture([str(d / "capture.pcap")], chunk_packets=5), rp, tmp_path, step=3,
                                  sample=0, packet_rows="notable")
    back = read_tables(tmp_path)
    assert back["summary"]["nat"] == whole.summary["nat"] and whole.summary["nat"]["escaped_packets"] == 1
    assert res.nat()["escaped"]["index"].tolist() == [17]
    _assert_same_table(back["packets"], _notable_rows(whole.packets))


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_notable_packet_rows_in_memory(tmp_path, fmt):
    whole = _whole("forward_blocked_service")
    write_tables(whole, tmp_path, fmt=fmt, packet_rows="notable")
    back = read_tables(tmp_path)
    want = _notable_rows(whole.packets)
    assert len(want) == 7 and back["packets"]["index"].tolist() == want["index"].tolist()
    assert back["summary"]["packets_table"] == {"rows": "notable", "written": 7}
    assert back["summary"]["outcomes"] == whole.summary["outcomes"]
    from nfreplay.errors import NfreplayError

    with pytest.raises(NfreplayError, match="unknown packet rows 'some'"):
        write_tables(whole, tmp_path, packet_rows="some")


def test_streamed_timeline_covers_csv_runs(tmp_path):
    """The timeline of a streamed run comes from its TimelineLog (every packet), also for CSV tables (no
    packets.parquet to read back) and a sample of 3 packets; it equals simulate()'s, for CSV and Parquet."""
    whole = _whole("port_forward_nat")
    res, _ = _stream("port_forward_nat", tmp_path / "c", chunk=5, step=3, fmt="csv", sample=3)
    pd.testing.assert_frame_equal(res.timeline(), whole.timeline(), check_dtype=False)
    pd.testing.assert_frame_equal(res.timeline(7), whole.timeline(7), check_dtype=False)
    res2, _ = _stream("port_forward_nat", tmp_path / "p", chunk=5, step=3, sample=3)
    pd.testing.assert_frame_equal(res2.timeline(5), whole.timeline(5), check_dtype=False)
    log = res2.timeline_log
    assert log.n == len(whole.packets)
    log.close()


def test_escape_candidates_of_address_dictionaries_are_text():
    """The streamed packets tables have their address columns as dictionary arrays over the step's distinct
    addresses (packets_table(address_dictionaries=True)). The escape candidates kept per step until the end
    of the stream hold those columns as text: as categoricals each would keep the step's whole address
    dictionary (+250 MiB peak RSS over a 10M-packet run). Same candidates as from the text columns."""
    from nfreplay.analysis import frames

    out = _whole("port_forward_nat").output
    got, want = {}, {}
    export._escape_candidates(got, frames.packets_table(out, address_dictionaries=True))
    export._escape_candidates(want, frames.packets_table(out))
    (g,), (w,) = got["escape_candidates"], want["escape_candidates"]
    assert g["index"].tolist() == [17]
    for c in ("src", "dst", "out_src"):
        assert not isinstance(g[c].dtype, pd.CategoricalDtype), c
    pd.testing.assert_frame_equal(g, w)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_stream_builds_address_dictionaries_for_parquet(tmp_path, monkeypatch, fmt):
    """stream_tables builds the packets tables with dictionary address columns for Parquet (written as
    dictionary-encoded text, read back as text: test_streamed_files_equal_in_memory_tables), as text for
    CSV."""
    from nfreplay.analysis import frames

    seen = []
    orig = frames.packets_table

    def spy(*a, **kw):
        t = orig(*a, **kw)
        if "src" in t.column_names:
            seen.append(str(t.schema.field("src").type))
        return t

    monkeypatch.setattr(frames, "packets_table", spy)
    _stream("port_forward_nat", tmp_path, chunk=5, step=3, fmt=fmt)
    want = "dictionary<values=large_string, indices=int32, ordered=0>" if fmt == "parquet" else "large_string"
    assert seen and set(seen) == {want}


@pytest.mark.parametrize("name", NAMES)
def test_escape_search_only_with_a_nat_core(tmp_path, monkeypatch, name):
    """The per-step search for packets that escaped NAT runs only when the replay has a NAT core (without
    one nothing is SNATed, so nothing escapes); the NAT summary equals the in-memory run's either way."""
    calls = []
    orig = export._table_escapes

    def spy(*a, **k):
        calls.append(1)
        return orig(*a, **k)

    monkeypatch.setattr(export, "_table_escapes", spy)
    res, _ = _stream(name, tmp_path, chunk=7, step=5)
    whole = _whole(name)
    nat = whole.output.meta["nat_core"]["ipv4"] or whole.output.meta["nat_core"]["ipv6"]
    assert nat == (name == "port_forward_nat")
    assert bool(calls) == nat
    assert read_tables(tmp_path)["summary"]["nat"] == whole.summary["nat"]
    assert res.nat()["escaped"]["index"].tolist() == whole.nat()["escaped"]["index"].tolist() == \
        ([17] if nat else [])

"""The CLI end to end (in process, through nfreplay.cli.main): exit codes, the one-line error
contract, run's tables/report, explain's trace, check's JSON."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from nfreplay.cli import main

SAMPLE = Path(__file__).resolve().parents[1] / "samples" / "forward_blocked_service"
ARGS = [str(SAMPLE / "capture.pcap"), "--rules", str(SAMPLE / "rules.ipt"), "--host", str(SAMPLE / "host.toml")]


def test_version_and_help_start_without_heavy_imports():
    code = ("import sys; from nfreplay.cli import main; rc = main(['--help']); "
            "heavy = [m for m in ('numba', 'pandas', 'matplotlib') if m in sys.modules]; "
            "print('HEAVY', heavy); sys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "HEAVY []" in p.stdout and "run" in p.stdout and "explain" in p.stdout
    p = subprocess.run([sys.executable, "-m", "nfreplay", "--version"], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.startswith("nfreplay ")


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="OpenBLAS starts no extra thread on one CPU")
def test_cli_import_keeps_numpy_to_one_blas_thread():
    """nfreplay.cli sets OPENBLAS_NUM_THREADS=1 before numpy loads (its BLAS threads spin ~0.13 s of CPU at
    import; the CLI does no linear algebra): importing numpy after it starts no thread."""
    code = ("import os, threading; os.environ.pop('OPENBLAS_NUM_THREADS', None); import nfreplay.cli, numpy; "
            "print(len(os.listdir('/proc/self/task')), threading.active_count(), os.environ['OPENBLAS_NUM_THREADS'])")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    tasks, py_threads, var = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                                            env=env).stdout.split()
    assert var == "1" and int(tasks) == int(py_threads)
    # without it numpy would have started BLAS threads (the condition the setting removes)
    code2 = "import os, threading, numpy; print(len(os.listdir('/proc/self/task')) - threading.active_count())"
    extra = int(subprocess.run([sys.executable, "-c", code2], capture_output=True, text=True, check=True,
                               env=env).stdout)
    assert extra >= 1


def test_user_error_is_one_line_exit_1(tmp_path, capsys):
    bad = tmp_path / "bad.ipt"
    bad.write_text("*filter\n:FORWARD DROP [0:0]\n-A FORWARD -p tcp --dport eighty -j ACCEPT\nCOMMIT\n")
    rc = main(["run", str(SAMPLE / "capture.pcap"), "--rules", str(bad)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith("nfreplay: error: ") and "bad.ipt:3:" in err[0]
    rc = main(["run", str(tmp_path / "missing.pcap"), "--rules", str(bad)])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and "missing.pcap" in err[0]


def test_usage_error_exit_2(capsys):
    assert main(["run"]) == 2


def test_run_writes_tables_report_and_summary(tmp_path, capsys):
    out, rep = tmp_path / "out", tmp_path / "r.html"
    rc = main(["run", *ARGS, "--out", str(out), "--report", str(rep)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "packets" in text and "dropped" in text and "policy" in text
    pk = pd.read_parquet(out / "packets.parquet")
    summary = json.loads((out / "summary.json").read_text())
    assert len(pk) == summary["packets"] if "packets" in summary else len(pk) > 0
    assert set(pk["outcome"].astype(str)) >= {"forwarded", "dropped"}
    rules = pd.read_parquet(out / "rules.parquet")
    # per-rule counters add up: every dropped packet is counted on the rule/policy that dropped it
    dropped = pk[pk["outcome"].astype(str) == "dropped"]
    for rid, n in dropped.groupby("rule_id").size().items():
        if rid >= 0:
            assert int(rules.loc[rules["rule_id"] == rid, "packets"].iloc[0]) >= n
    assert rep.read_text().startswith("<!DOCTYPE html>")


def test_streamed_report_covers_the_whole_capture(tmp_path, monkeypatch, capsys):
    """run --stream keeping 3 packets in memory: the report's drop, INVALID, NAT and timeline sections still
    show the whole capture, as the in-memory run's report does (port_forward_nat: packet 17 escapes NAT)."""
    import re

    from nfreplay.analysis import export

    d = SAMPLE.parent / "port_forward_nat"
    args = [str(d / "capture.pcap"), "--rules", str(d / "rules.ipt"), "--host", str(d / "host.toml")]
    monkeypatch.setattr(export, "STREAM_SAMPLE", 3)
    reports = {}
    for mode in ("--stream", "--no-stream"):
        rep = tmp_path / f"{mode}.html"
        assert main(["run", *args, "--out", str(tmp_path / mode), "--report", str(rep), mode]) == 0
        reports[mode] = rep.read_text()
    capsys.readouterr()
    streamed, whole = reports["--stream"], reports["--no-stream"]
    assert "NAT leak: 1 INVALID packet left" in streamed and "first 3 packets" not in streamed

    def section(html, ident):  # a table of the report, by its id (None: rendered as "none")
        m = re.search(rf'id="{ident}".*?</table>', html, re.S)
        return m.group(0) if m else None

    present = 0
    for ident in ("nat-escaped", "invalid-reason", "invalid-flow", "drops-rule", "drops-service", "drops-source",
                  "hooks"):
        assert section(streamed, ident) == section(whole, ident), ident
        present += section(whole, ident) is not None
    assert present >= 4


@pytest.mark.parametrize("mode", ["--stream", "--no-stream"])
def test_run_packets_notable(tmp_path, mode, capsys):
    """run --packets notable: packets.parquet holds the rows of the full table that were not accepted or
    were INVALID (here: the 7 dropped packets), the summary's counts and the report's drop sections are the
    full run's; a wrong value is one error line."""
    import re

    outs = {}
    for rows in ("all", "notable"):
        o = tmp_path / rows
        assert main(["run", *ARGS, "--out", str(o), "--report", str(tmp_path / f"{rows}.html"), mode,
                     "--packets", rows]) == 0
        outs[rows] = (pd.read_parquet(o / "packets.parquet"), json.loads((o / "summary.json").read_text()),
                      (tmp_path / f"{rows}.html").read_text())
    text = capsys.readouterr().out
    (full, s_all, h_all), (notable, s_not, h_not) = outs["all"], outs["notable"]
    want = full[~full["outcome"].astype(str).isin(["forwarded", "emitted", "delivered_local"])
                | (full["ct_state"].astype(str) == "INVALID")].reset_index(drop=True)
    assert len(want) == 7 and len(full) == 33
    pd.testing.assert_frame_equal(notable, want, check_categorical=False)
    assert s_not["packets_table"] == {"rows": "notable", "written": 7} and "packets_table" not in s_all
    assert s_not["outcomes"] == s_all["outcomes"] and s_not["packets"] == 33
    if mode == "--stream":
        assert "packets: the 7 notable ones" in text
    for ident in ("drops-rule", "drops-service", "drops-source", "hooks"):
        sec = [re.search(rf'id="{ident}".*?</table>', h, re.S) for h in (h_all, h_not)]
        assert sec[0] is not None and sec[0].group(0) == sec[1].group(0), ident
    assert main(["run", *ARGS, "--out", str(tmp_path / "x"), "--packets", "some"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--packets must be all or notable" in err[0]


def test_streamed_run_without_out(tmp_path, monkeypatch, capsys):
    """run --stream without --out (the default for big captures): the tables go to a temporary directory
    that is removed; the printed drop view and the report cover the whole capture, as the in-memory run's."""
    import re
    import tempfile

    made = []
    real = tempfile.TemporaryDirectory

    def spy(*a, **kw):
        t = real(*a, **kw)
        made.append(Path(t.name))
        return t

    monkeypatch.setattr(tempfile, "TemporaryDirectory", spy)
    rep = tmp_path / "s.html"
    assert main(["run", *ARGS, "--stream", "--report", str(rep)]) == 0
    text = capsys.readouterr().out
    assert "33 packets replayed" in text and "tables: not kept" in text
    assert "what dropped traffic:" in text and re.search(r"\b7 .*policy", text)
    assert made and not any(p.exists() for p in made if p.name.startswith("nfreplay-run-"))
    assert main(["run", *ARGS, "--no-stream", "--report", str(tmp_path / "m.html")]) == 0
    capsys.readouterr()
    for ident in ("drops-rule", "drops-service", "hooks"):
        sec = [re.search(rf'id="{ident}".*?</table>', (tmp_path / f).read_text(), re.S) for f in ("s.html", "m.html")]
        assert sec[0] is not None and sec[0].group(0) == sec[1].group(0), ident


def test_streamed_view_names_unsupported_rules_nat_and_dissects(tmp_path, capsys):
    """The streamed terminal view (big captures) names every unsupported rule, the NAT bindings and, with
    --dissect, Wireshark's view of the same dropped / INVALID packets as the in-memory view."""
    import re

    from nfreplay.analysis import dissect

    d = SAMPLE.parent / "port_forward_nat"
    text = (d / "rules.ipt").read_text()
    j = text.index("COMMIT", text.index("*filter"))
    rules = tmp_path / "unsup.ipt"
    rules.write_text(text[:j] + "-A FORWARD -p tcp -m string --string xyz --algo bm -j DROP\n" + text[j:])
    args = [str(d / "capture.pcap"), "--rules", str(rules), "--host", str(d / "host.toml"), "--allow-unsupported"]
    extra = ["--dissect"] if dissect.tshark_available() else []
    views = {}
    for mode in ("--stream", "--no-stream"):
        assert main(["run", *args, mode, *extra]) == 0
        views[mode] = capsys.readouterr().out
    for v in views.values():
        assert "1 rules use unsupported constructs" in v and "unsup.ipt:" in v and "string match" in v
        assert re.search(r"NAT: \d+ bindings", v)
    if extra:
        rows = {m: re.findall(r"^│ (\d+) +│ (\w+) ", v, re.M) for m, v in views.items()}
        assert rows["--stream"] == rows["--no-stream"] and ("17", "forwarded") in rows["--stream"]


def test_run_json_summary(capsys):
    assert main(["run", *ARGS, "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    assert sum(s["outcomes"].values()) == 33


def test_explain_traces_the_deciding_rule(capsys):
    res_rc = main(["run", *ARGS, "--json"])
    assert res_rc == 0
    capsys.readouterr()
    from nfreplay import simulate

    res = simulate(str(SAMPLE / "capture.pcap"), str(SAMPLE / "rules.ipt"), host=str(SAMPLE / "host.toml"))
    pk = res.packets
    i = int(pk.index[pk["outcome"].astype(str) == "dropped"][0])
    assert main(["explain", *ARGS, "--packet", str(i), "--json"]) == 0
    e = json.loads(capsys.readouterr().out)
    assert e["packet"]["outcome"] == "dropped"
    assert e["trace"], "the trace lists the rules the packet met"
    last = e["trace"][-1]
    assert last["chain"] == pk.loc[i, "verdict_chain"] and last["what"].startswith("policy")
    assert main(["explain", *ARGS, "--packet", "99999"]) == 1


@pytest.mark.parametrize("name", ["port_forward_nat", "invalid_out_of_window"])
def test_explain_streams_to_the_packet(name, monkeypatch, capsys):
    """explain replays chunk by chunk and stops at the chunk holding the packet: with 4-packet chunks, the
    packet row, the rule trace and the conntrack events of every packet equal those of the in-memory
    replay of the whole capture (simulate with trace_packet), and a packet past the end is one error."""
    import nfreplay.cli.explain as ex
    from nfreplay import simulate

    d = SAMPLE.parent / name
    args = [str(d / "capture.pcap"), "--rules", str(d / "rules.ipt"), "--host", str(d / "host.toml")]
    monkeypatch.setattr(ex, "EXPLAIN_CHUNK", 4)
    n = len(simulate(d / "capture.pcap", d / "rules.ipt", host=d / "host.toml").packets)
    for i in sorted({0, 3, 4, 5, n // 2, n - 1}):
        assert main(["explain", *args, "--packet", str(i), "--json"]) == 0
        got = json.loads(capsys.readouterr().out)
        res = simulate(d / "capture.pcap", d / "rules.ipt", host=d / "host.toml", trace_packet=i)
        row = res.packets.loc[i]
        assert got["packet"]["index"] == i and len(got["packet"]) == len(row)
        for k, v in row.items():  # every column of the packet's row
            g = got["packet"][k]
            if k == "ts":
                assert pd.Timestamp(g) == v
                continue
            assert (None if pd.isna(v) else str(v)) == (None if g is None else str(g)), (i, k)
        assert got["trace"] == ex.trace_lines(res, i) and got["trace"]
        ev = res.events
        want_ev = ev[(ev["ct_id"] == row["ct_id"]) & (ev["packet_index"] == i)] if not pd.isna(row["ct_id"]) else ev[:0]
        assert [e["event"] for e in got["conntrack_events"]] == [str(x) for x in want_ev["event"]]
    assert main(["explain", *args, "--packet", str(n)]) == 1
    assert f"it has {n} packets" in capsys.readouterr().err


def test_check_json(capsys):
    assert main(["check", str(SAMPLE / "rules.ipt"), "--json"]) == 0
    c = json.loads(capsys.readouterr().out)
    assert c["rules"] > 0 and c["unsupported"] == []


@pytest.mark.parametrize("fmt", ["csv"])
def test_run_csv(tmp_path, fmt, capsys):
    out = tmp_path / "o"
    assert main(["run", *ARGS, "--out", str(out), "--format", fmt]) == 0
    assert (out / "packets.csv").is_file() and (out / "summary.json").is_file()

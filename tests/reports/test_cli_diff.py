"""`nfreplay diff` end to end on the ruleset_change sample: exit codes, --json, --out files, --report."""

from __future__ import annotations

import json
from pathlib import Path

from nfreplay.cli import main

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "ruleset_change"


def test_diff_json_out_and_report(tmp_path, capsys):
    out, rep = tmp_path / "out", tmp_path / "diff.html"
    rc = main(["diff", str(SAMPLE / "capture.pcap"), "--rules", str(SAMPLE / "rules.ipt"), "--rules",
               str(SAMPLE / "rules_new.ipt"), "--host", str(SAMPLE / "host.toml"), "--out", str(out),
               "--report", str(rep), "--json"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert d["labels"] == ["old", "new"]
    assert d["counts"]["newly_blocked"] == 2 and d["counts"]["newly_allowed"] == 1
    assert {r["service"] for r in d["by_service"]} == {"tcp/22", "tcp/80", "tcp/443"}
    for name in ("diff_packets.parquet", "diff_flows.parquet", "diff_by_service.parquet", "diff.json",
                 "old/packets.parquet", "new/summary.json"):
        assert (out / name).exists(), name
    assert 'id="changes"' in rep.read_text()


def test_diff_knob_sensitivity_and_usage_errors(tmp_path, capsys):
    liberal = tmp_path / "liberal.toml"
    liberal.write_text((SAMPLE / "host.toml").read_text().replace(
        '"net.netfilter.nf_conntrack_tcp_be_liberal" = 0', '"net.netfilter.nf_conntrack_tcp_be_liberal" = 1'))
    rc = main(["diff", str(SAMPLE / "capture.pcap"), "--rules", str(SAMPLE / "rules.ipt"), "--host",
               str(SAMPLE / "host.toml"), "--host2", str(liberal), "--json"])
    assert rc == 0
    d = json.loads(capsys.readouterr().out)
    assert d["labels"] == ["host1", "host2"] and d["counts"]["conversations_changed"] == 0  # clean traffic
    rc = main(["diff", str(SAMPLE / "capture.pcap"), "--rules", str(SAMPLE / "rules.ipt")])
    assert rc == 1 and "--rules OLD --rules NEW" in capsys.readouterr().err


def test_streamed_diff_equals_in_memory(tmp_path, capsys):
    """diff --stream (each side streamed to out/<label>/, compared block by block) gives the same counts,
    services, changed conversations and packets as the in-memory diff, writes the same files, and without
    --out leaves nothing behind."""
    import pandas as pd

    args = ["diff", str(SAMPLE / "capture.pcap"), "--rules", str(SAMPLE / "rules.ipt"), "--rules",
            str(SAMPLE / "rules_new.ipt"), "--host", str(SAMPLE / "host.toml"), "--json"]
    got = {}
    for mode in ("--stream", "--no-stream"):
        out = tmp_path / mode
        assert main([*args, mode, "--out", str(out), "--report", str(tmp_path / f"{mode}.html")]) == 0
        got[mode] = (json.loads(capsys.readouterr().out), out)
    (ds, out_s), (dm, out_m) = got["--stream"], got["--no-stream"]
    assert ds == dm and ds["counts"]["newly_blocked"] == 2
    for name in ("diff_packets", "diff_flows", "diff_by_service"):
        pd.testing.assert_frame_equal(pd.read_parquet(out_s / f"{name}.parquet"),
                                      pd.read_parquet(out_m / f"{name}.parquet"), check_dtype=False, obj=name)
    for name in ("old/packets.parquet", "new/rules.parquet", "new/summary.json", "diff.json"):
        assert (out_s / name).exists(), name
    assert 'id="changes"' in (tmp_path / "--stream.html").read_text()
    before = set(Path(tempfile_dir()).glob("nfreplay-diff-*"))
    assert main([*args, "--stream"]) == 0
    assert json.loads(capsys.readouterr().out) == dm
    assert set(Path(tempfile_dir()).glob("nfreplay-diff-*")) == before
    assert main([*args, "--stream", "--format", "csv", "--out", str(tmp_path / "c")]) == 1
    assert "--format csv needs --no-stream" in capsys.readouterr().err


def tempfile_dir() -> str:
    import tempfile

    return tempfile.gettempdir()


def test_streamed_commands_with_progress_bars(tmp_path, monkeypatch, capsys):
    """The progress bars of the streamed run and diff (replay per side, then the comparison) render: the
    terminal check is forced on (tests have no terminal)."""
    import nfreplay.cli.diff as cd
    import nfreplay.cli.run as cr

    monkeypatch.setattr(cd, "progress_enabled", lambda: True)
    monkeypatch.setattr("nfreplay.cli._app.progress_enabled", lambda: True)
    monkeypatch.setattr(cr, "progress_enabled", lambda: True)
    args = ["diff", str(SAMPLE / "capture.pcap"), "--rules", str(SAMPLE / "rules.ipt"), "--rules",
            str(SAMPLE / "rules_new.ipt"), "--host", str(SAMPLE / "host.toml"), "--stream", "--json"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["newly_blocked"] == 2
    assert main(["run", str(SAMPLE / "capture.pcap"), "--rules", str(SAMPLE / "rules.ipt"), "--host",
                 str(SAMPLE / "host.toml"), "--stream", "--out", str(tmp_path / "o")]) == 0
    assert "packets replayed" in capsys.readouterr().out


def test_streamed_diff_drops_the_first_sides_result_before_the_second_replay(tmp_path, monkeypatch, capsys):
    """diff --stream keeps only side A's rules frame while side B replays (its Result holds the flows,
    histories and packet sample: at 10M packets the peak RSS went 2,006 -> 1,696 MiB without it)."""
    import gc
    import weakref

    from nfreplay.cli import run as cli_run

    real = cli_run.simulate_to_with_progress
    seen = []

    def spy(*a, **k):
        gc.collect()
        seen.append([ref() is not None for ref in refs])
        res = real(*a, **k)
        refs.append(weakref.ref(res))
        return res

    refs: list = []
    monkeypatch.setattr(cli_run, "simulate_to_with_progress", spy)
    args = ["diff", str(SAMPLE / "capture.pcap"), "--rules", str(SAMPLE / "rules.ipt"), "--rules",
            str(SAMPLE / "rules_new.ipt"), "--host", str(SAMPLE / "host.toml"), "--json", "--stream"]
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out)["counts"]["newly_blocked"] == 2
    assert seen == [[], [False]]  # at side B's replay, side A's Result is gone

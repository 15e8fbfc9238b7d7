"""`nfreplay diff CAPTURE... --rules OLD --rules NEW`: what changes between two rulesets (or two host files).

Replays the same capture twice and compares packet by packet: every conversation whose fate changed,
with the deciding rule on each side; packets that could not have existed under the new ruleset are
marked consequential. With one --rules and --host2, the two replays differ only in the host file
(knob sensitivity: nf_conntrack_tcp_be_liberal 0 vs 1, tcp_loose, timeouts, nf_conntrack_max, ...).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ._app import app, progress_enabled


@app.command("diff")
def diff_command(
    captures: list[Path] = typer.Argument(..., metavar="CAPTURE...", help="pcap/pcapng files, replayed as one "
                                                                            "time-ordered stream."),
    rules: list[Path] = typer.Option(..., "--rules", "-r", help="Give twice: OLD then NEW ruleset. Once, with "
                                                                 "--host2: compare two host files."),
    host: Optional[Path] = typer.Option(None, "--host", help="Host file (TOML/JSON) for both replays, or the "
                                                             "first one with --host2."),
    host2: Optional[Path] = typer.Option(None, "--host2", help="Host file for the second replay (knob "
                                                               "sensitivity)."),
    local: list[str] = typer.Option([], "--local", help="Add a local address to the default host model."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write the diff tables, both runs' tables "
                                                           "(old/, new/) and diff.json here."),
    fmt: str = typer.Option("parquet", "--format", help="parquet or csv for --out."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write the HTML report (new side + changes)."),
    allow_unsupported: bool = typer.Option(False, "--allow-unsupported", help="Replay rulesets with unsupported "
                                                                              "rules (they never match)."),
    seed: int = typer.Option(0, "--seed", help="Random seed (statistic/random NAT)."),
    capture_point: str = typer.Option("arrival", "--capture-point", help="arrival or skip-outgoing."),
    assume_good_checksums: bool = typer.Option(False, "--assume-good-checksums",
                                               help="Treat bad L4 checksums as good (offloaded captures)."),
    json_out: bool = typer.Option(False, "--json", help="Print the diff counts and by-service table as JSON."),
    limit: int = typer.Option(30, "--limit", help="Changed conversations to list on the terminal."),
    stream: Optional[bool] = typer.Option(None, "--stream/--no-stream",
                                          help="Replay each side chunk by chunk in bounded memory and compare "
                                               "their packets tables block by block (default: on when the "
                                               "captures exceed 256 MiB)."),
):
    """Replay the same capture through two rulesets (or two host files) and list what changed."""
    from ..errors import NfreplayError

    if len(rules) == 2:
        rules_a, rules_b = rules
        labels = ("old", "new")
    elif len(rules) == 1 and host2 is not None:
        rules_a = rules_b = rules[0]
        labels = ("host1", "host2")
    else:
        raise NfreplayError("diff needs --rules OLD --rules NEW, or one --rules with --host and --host2")
    if fmt not in ("parquet", "csv"):
        raise NfreplayError(f"--format must be parquet or csv, not {fmt!r}")

    kw = dict(local=tuple(local), allow_unsupported=allow_unsupported, seed=seed, capture_point=capture_point,
              assume_good_checksums=assume_good_checksums)
    host_b = host2 if host2 is not None else host
    if stream is None:
        from .run import STREAM_BYTES, capture_bytes

        stream = capture_bytes(captures) > STREAM_BYTES
    import contextlib

    with contextlib.ExitStack() as stack:  # a streamed diff without --out: its sides' tables, until the report
        if stream:
            if fmt != "parquet":
                raise NfreplayError("diff --stream writes Parquet tables (--format csv needs --no-stream)")
            import tempfile

            where = out if out is not None else Path(stack.enter_context(
                tempfile.TemporaryDirectory(prefix="nfreplay-diff-")))
            d, res_b = _diff_streamed(captures, (rules_a, rules_b), (host, host_b), labels, where, out is not None,
                                      kw)
        else:
            from ..analysis import compare, write_tables
            from ..replay.ingest import read_capture

            cap = read_capture([str(c) for c in captures])
            res_a = _run(cap, rules_a, host, kw, labels[0])
            res_b = _run(cap, rules_b, host_b, kw, labels[1])
            d = compare(res_a, res_b, labels=labels)
            if out is not None:
                write_tables(res_a, out / labels[0], fmt=fmt)
                write_tables(res_b, out / labels[1], fmt=fmt)
                _write_diff(d, out, fmt, ("packets", "flows", "by_service"))
        if report is not None:
            _report(res_b, report, d, rules, rules_a, rules_b, host, host2)

    if json_out:
        typer.echo(json.dumps(d.to_dict(), default=str))
        return
    _print(d, limit, out, report)


def _write_diff(d, out: Path, fmt: str, names) -> None:
    """The Diff's tables `names` (diff_<name>.<fmt>) and diff.json into out."""
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        df = getattr(d, name)
        p = out / f"diff_{name}.{fmt}"
        if fmt == "parquet":
            df.to_parquet(p, index=False)
        else:
            df.to_csv(p, index=False)
    (out / "diff.json").write_text(json.dumps(d.to_dict(), indent=2, default=str) + "\n")


def _report(res_b, report, d, rules, rules_a, rules_b, host, host2) -> None:
    from ..reports import write_html

    title = f"nfreplay diff: {rules_a} -> {rules_b}" if len(rules) == 2 else f"nfreplay diff: {host} -> {host2}"
    write_html(res_b, report, diff=d, title=title)


# diff rows kept in memory by a streamed diff (for the terminal and the report; diff_packets.parquet has all)
STREAM_DIFF_ROWS = 100_000


def _diff_streamed(captures, rules, hosts, labels, out: Path, keep: bool, kw: dict):
    """diff --stream: each side replayed by simulate_to into out/<label>/ (every packet's row), then
    analysis.diff.compare_files over the two packets.parquet files, block by block; the diff tables and
    diff.json into out when `keep`. Returns (Diff, the second side's Result)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from ..analysis.diff import compare_files
    from ._app import progress_enabled
    from .run import simulate_to_with_progress

    paths = [str(c) for c in captures]
    side_rules, n_packets, res_b = [], 0, None
    for r, h, lab in zip(rules, hosts, labels):
        res_b = None  # side A's Result (its flows, histories, sample) is not kept during side B's replay
        res_b = simulate_to_with_progress(paths, str(r), str(h) if h else None, out / lab, f"replay ({lab})", **kw)
        side_rules.append(res_b.rules)
        n_packets = int(res_b.summary["packets"])
    writer = []

    def sink(part):
        if not keep:
            return
        t = pa.Table.from_pandas(part, preserve_index=False)
        if not writer:
            writer.append(pq.ParquetWriter(out / "diff_packets.parquet", t.schema))
        writer[0].write_table(t.cast(writer[0].schema))

    try:
        args = (out / labels[0] / "packets.parquet", out / labels[1] / "packets.parquet", *side_rules, labels)
        kw2 = dict(keep_packets=STREAM_DIFF_ROWS, packets_sink=sink)
        if progress_enabled():
            from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

            with Progress(TextColumn("compare"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} rows"),
                          TimeRemainingColumn(), transient=True) as prog:
                task = prog.add_task("compare", total=2 * n_packets)
                d = compare_files(*args, progress=lambda k, t: prog.update(task, completed=k, total=t), **kw2)
        else:
            d = compare_files(*args, **kw2)
    finally:
        if writer:
            writer[0].close()
    if keep:  # diff_packets.parquet: written block by block above (here when no block had a row)
        _write_diff(d, out, "parquet", ("flows", "by_service") if writer else ("packets", "flows", "by_service"))
    if len(d.packets) >= STREAM_DIFF_ROWS:
        d.notes.append(f"the packets table shows the first {STREAM_DIFF_ROWS:,} changed packets"
                       + (" (diff_packets.parquet has all)" if keep else ""))
    return d, res_b


def _run(cap, rules, host, kw, label):
    from ..analysis import simulate

    if progress_enabled():
        from rich.progress import Progress

        with Progress(transient=True) as prog:
            task = prog.add_task(f"replaying ({label})", total=len(cap.packets.ts_ns))
            return simulate(cap, rules, host, progress=lambda k: prog.update(task, completed=k), **kw)
    return simulate(cap, rules, host, **kw)


def _print(d, limit: int, out, report) -> None:
    from rich.console import Console
    from rich.table import Table

    a, b = d.labels
    c = d.counts
    con = Console()
    con.print(f"{c['packets']:,} packets; {c['conversations_changed']:,} conversations changed fate: "
              f"[red]{c['newly_blocked']:,} newly blocked[/red], [green]{c['newly_allowed']:,} newly allowed[/green], "
              f"{c['other_changes']:,} other; {c['packets_fate_changed']:,} packets changed "
              f"({c['packets_consequential']:,} consequential).")
    if len(d.by_service):
        t = Table(title="by service")
        for col in d.by_service.columns:
            t.add_column(str(col), justify="right" if col != "service" else "left")
        for row in d.by_service.head(limit).itertuples(index=False):
            t.add_row(*[str(v) for v in row])
        con.print(t)
    if len(d.flows):
        t = Table(title=f"conversations whose fate changed (first {min(limit, len(d.flows))} of {len(d.flows)})")
        for col in ("change", "service", "src", "dst", "cause_packet", f"rule_{a}", f"rule_{b}", "consequential"):
            t.add_column(col)
        for r in d.flows.head(limit).to_dict("records"):
            t.add_row(r["change"], r["service"], f"{r['src']}:{_s(r['sport'])}", f"{r['dst']}:{_s(r['dport'])}",
                      str(r["cause_packet"]), r[f"rule_{a}"], r[f"rule_{b}"], str(r["consequential"]))
        con.print(t)
    for note in d.notes:
        con.print(f"note: {note}")
    if out is not None:
        con.print(f"tables: {out}")
    if report is not None:
        con.print(f"report: {Path(report).resolve()}")


def _s(v) -> str:
    try:
        return str(int(v))
    except (TypeError, ValueError):
        return ""

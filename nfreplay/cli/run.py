"""`nfreplay run CAPTURE... --rules RULES [--host HOST] [--out DIR] [--report FILE.html]`: the main job.

Replays the capture(s) through the ruleset on the modelled host and prints what happened: outcomes,
conntrack states, the rules that dropped traffic, INVALID reasons, NAT, unsupported rules.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ._app import app, isna, progress_enabled


def _replay(captures, rules, host, local, allow_unsupported, seed, capture_point, assume_good_checksums, ipset,
            reader):
    """Shared by run and explain: read, load, simulate with a progress bar. Returns (result, capture)."""
    from ..analysis import simulate
    from ..replay.ingest import read_capture
    from ..replay.rules import load_ruleset

    cap = read_capture([str(c) for c in captures], reader=reader)
    rs = load_ruleset([str(r) for r in rules] if len(rules) > 1 else str(rules[0]))
    if ipset:
        from ..replay.rules.iptables import load_ipset_save, resolve_set_matches

        sets = []
        for p in ipset:
            try:
                sets.extend(load_ipset_save(Path(p).read_text(), source=str(p)))
            except OSError as e:
                from ..errors import NfreplayError

                raise NfreplayError(f"{p}: cannot read ipset file: {e.strerror}") from None
        rs = resolve_set_matches(rs, sets)
    else:
        sets = []
    kw = dict(local=tuple(local), allow_unsupported=allow_unsupported, seed=seed, capture_point=capture_point,
              assume_good_checksums=assume_good_checksums)
    if sets:
        kw["ipsets"] = tuple(sets)
    n = len(cap.packets.ts_ns)
    if progress_enabled() and n > 200_000:
        from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

        with Progress(TextColumn("replay"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} packets"),
                      TimeRemainingColumn(), transient=True) as prog:
            task = prog.add_task("replay", total=n)
            res = simulate(cap, rs, str(host) if host else None,
                           progress=lambda k: prog.update(task, completed=k), **kw)
    else:
        res = simulate(cap, rs, str(host) if host else None, **kw)
    return res, cap


STREAM_BYTES = 256 << 20  # --stream by default above this capture size


def _progress_bar(total_bytes: int):
    """A rich progress bar over the capture bytes read, with packets/s and time remaining."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                    TextColumn("{task.fields[pk]:,} packets, {task.fields[rate]:,.0f} packets/s"),
                    TimeElapsedColumn(), TimeRemainingColumn(), transient=True)


def capture_bytes(captures) -> int:
    """The size of the capture files (what --stream's default and the progress bar go by)."""
    return sum(Path(c).stat().st_size for c in captures if Path(c).is_file())


def simulate_to_with_progress(paths, rules, host, out, label: str, **kw):
    """analysis.api.simulate_to(paths, rules, host, out, **kw) with the replay progress bar (bytes read,
    packets/s, time remaining; none when progress is off); returns the Result."""
    import time

    from ..analysis.api import simulate_to

    if not progress_enabled():
        return simulate_to(paths, rules, host, out, **kw)[0]
    total = capture_bytes(paths)
    t0 = time.perf_counter()
    with _progress_bar(total) as prog:
        task = prog.add_task(label, total=total or None, pk=0, rate=0.0)

        def on_packets(k):
            dt = time.perf_counter() - t0
            prog.update(task, pk=k, rate=k / dt if dt > 0 else 0.0)

        return simulate_to(paths, rules, host, out, progress=on_packets,
                           ingest_progress=lambda d, t: prog.update(task, completed=d, total=t or None), **kw)[0]


def _load_sets(ipset):
    from ..replay.rules.iptables import load_ipset_save

    sets = []
    for p in ipset:
        try:
            sets.extend(load_ipset_save(Path(p).read_text(), source=str(p)))
        except OSError as e:
            from ..errors import NfreplayError

            raise NfreplayError(f"{p}: cannot read ipset file: {e.strerror}") from None
    return sets


def _run_streaming(captures, rules, host, local, out, fmt, report, allow_unsupported, seed, capture_point,
                   assume_good_checksums, ipset, reader, json_out, packet_rows="all", keep=True, dissect=False):
    """run --stream: analysis.api.simulate_to (bounded memory, decode overlapped with the replay). keep:
    False when `out` is a temporary directory (not named in the output)."""
    from ..replay.rules import load_ruleset

    rs = load_ruleset([str(r) for r in rules] if len(rules) > 1 else str(rules[0]))
    sets = []
    if ipset:
        from ..replay.rules.iptables import resolve_set_matches

        sets = _load_sets(ipset)
        rs = resolve_set_matches(rs, sets)
    paths = [str(c) for c in captures]
    res = simulate_to_with_progress(paths, rs, str(host) if host else None, out, "replay", fmt=fmt,
                                    local=tuple(local), allow_unsupported=allow_unsupported, seed=seed,
                                    capture_point=capture_point, assume_good_checksums=assume_good_checksums,
                                    ipsets=tuple(sets), reader=reader, packet_rows=packet_rows)
    if report is not None:
        from ..reports import write_html

        res.notable_packets  # noqa: B018  (read back from packets.parquet; decides the title)
        title = ("nfreplay report (streamed: tables and summary cover the whole capture, drop and INVALID lists "
                 f"the first {len(res.output.results.outcome):,} packets)") if res.notable_is_sample else None
        write_html(res, report, title=title)
    s = res.summary
    if json_out:
        typer.echo(json.dumps(s, indent=2, default=str))
        return
    n, wall = s["packets"], s.get("wall_time_s") or 0.0
    typer.echo(f"{n:,} packets replayed in {wall:.2f} s ({(n / wall if wall else 0):,.0f} packets/s), streamed")
    typer.echo("outcomes: " + ", ".join(f"{k} {v:,}" for k, v in s["outcomes"].items()))
    if s.get("ct_states"):
        typer.echo("conntrack states: " + ", ".join(f"{k} {v:,}" for k, v in s["ct_states"].items()))
    _print_streamed_drops(res)
    _print_unsupported_and_nat(res)
    if dissect:
        _print_streamed_dissect(res, paths)
    if keep:
        typer.echo(f"tables: {out}/ ({_packets_note(s)}, rules, flows, events, summary.json)")
    else:
        typer.echo("tables: not kept (--out DIR writes them)")
    if report is not None:
        typer.echo(f"report: {report}")


def _print_streamed_drops(res) -> None:
    """The rules that dropped most packets and the INVALID reasons, over the whole capture (the notable
    rows read back from packets.parquet; the first packets when there are too many)."""
    if res.packets_path is None:  # CSV tables: not read back
        return
    note = ""
    d = res.drops_by_rule()
    if res.notable_is_sample:
        note = f" (first {len(res.output.results.outcome):,} packets)"
    if len(d):
        typer.echo(f"what dropped traffic{note}:")
        for _, r in d.head(15).iterrows():
            typer.echo(f"  {int(r['packets']):>12,}  {r['who']}")
    inv = res.invalid_by_reason()
    if len(inv):
        typer.echo(f"INVALID packets by reason{note}:")
        for _, r in inv.head(10).iterrows():
            typer.echo(f"  {int(r['packets']):>12,}  {r['reason'] or '(no reason logged)'}")


def _print_unsupported_and_nat(res) -> None:
    from rich.console import Console

    con = Console()
    rules = res.rules
    unsup = rules[rules["unsupported"].astype(str) != ""] if "unsupported" in rules else rules.iloc[0:0]
    if len(unsup):
        con.print(f"[yellow]{len(unsup)} rules use unsupported constructs and never matched:[/yellow]")
        for _, r in unsup.iterrows():
            con.print(f"  {r['source']}: {r['text']}  ({r['unsupported']})")
    nat = res.output.meta.get("nat", {})
    if nat.get("bindings"):
        con.print(f"NAT: {nat['bindings']:,} bindings, {nat.get('port_changed', 0):,} port changes")


def _dissect_rows(pk) -> list[int]:
    """The first 20 dropped / rejected and the first 20 INVALID packets of a packets frame (their index)."""
    dropped = pk.loc[pk["outcome"].isin(["dropped", "rejected"]), "index"]
    inv = pk.loc[pk["ct_state"] == "INVALID", "index"]
    return sorted(set(dropped.iloc[:20].tolist()) | set(inv.iloc[:20].tolist()))


def _print_dissect(pk, idx: list[int], ws: dict, rules) -> None:
    """The table of Wireshark's view (ws: dissect_packets) of packets idx (rows of pk by its index column)."""
    from rich.console import Console
    from rich.table import Table

    by_id = rules.set_index("rule_id")
    rows = pk.set_index("index")
    t = Table(title="Wireshark's view of the first dropped / INVALID packets")
    for c in ("packet", "outcome", "kernel", "wireshark", "expert info"):
        t.add_column(c, overflow="fold")
    for i in idx:
        row = rows.loc[i]
        if row["ct_state"] == "INVALID":
            kern = str(row["invalid_reason"])
        else:
            rid = row["rule_id"]
            r = by_id.loc[int(rid)] if not isna(rid) and int(rid) in by_id.index else None
            kern = f"{r['chain']} #{int(r['rule_num'])}" if r is not None else ""
        w = ws.get(i, {})
        t.add_row(str(i), str(row["outcome"]), kern, f"{w.get('protocol', '')} {w.get('info', '')}",
                  "; ".join(w.get("expert", [])))
    Console().print(t)


def _print_streamed_dissect(res, paths) -> None:
    """--dissect on a streamed run: the first dropped / INVALID packets (read back from packets.parquet), each
    dissected by tshark from the chunk of the capture that holds it."""
    from ..analysis.dissect import dissect_packets
    from ..replay.ingest import iter_capture

    pk = res.notable_packets
    idx = _dissect_rows(pk)
    if not idx:
        return
    ws, want, n = {}, list(idx), 0
    for chunk in iter_capture(paths):
        k = len(chunk.packets.ts_ns)
        here = [i for i in want if n <= i < n + k]
        if here:
            got = dissect_packets(chunk, [i - n for i in here])
            ws.update({i: got.get(i - n, {}) for i in here})
            want = [i for i in want if i >= n + k]
        n += k
        if not want:
            break
    _print_dissect(pk, idx, ws, res.rules)


def _packets_note(s: dict) -> str:
    pt = s.get("packets_table")
    return f"packets: the {pt['written']:,} notable ones" if pt else "packets"


@app.command("run")
def run_command(
    captures: list[Path] = typer.Argument(..., metavar="CAPTURE...",
                                          help="pcap/pcapng files (several are replayed as one time-ordered stream)."),
    rules: list[Path] = typer.Option(..., "--rules", "-r", help="iptables-save / ip6tables-save / iptables -S / "
                                                                 "nft list ruleset (text or -j JSON); repeatable."),
    host: Optional[Path] = typer.Option(None, "--host", help="Host file (TOML/JSON, contracts §1). Default: a "
                                                             "forwarding gateway between inside and outside."),
    local: list[str] = typer.Option([], "--local", help="Add a local address to the host model (host firewall)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write packets/rules/flows/events tables and "
                                                           "summary.json here."),
    fmt: str = typer.Option("parquet", "--format", help="Table format for --out: parquet or csv."),
    packets: str = typer.Option("all", "--packets",
                                help="Rows of the --out packets table: all (one per captured packet) or notable "
                                     "(those not accepted, or INVALID; the summary, flows and report still "
                                     "cover every packet)."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write the self-contained HTML report here."),
    allow_unsupported: bool = typer.Option(False, "--allow-unsupported",
                                           help="Replay although some rules use unsupported constructs (those "
                                                "rules never match; the report names them)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the random generator (statistic random, NAT ports)."),
    capture_point: str = typer.Option("arrival", "--capture-point",
                                      help="arrival: every packet arrives at / is emitted by the firewall; "
                                           "skip-outgoing: skip packets the capture marks outgoing."),
    assume_good_checksums: bool = typer.Option(False, "--assume-good-checksums",
                                               help="Treat bad L4 checksums as good (captures with TX offload)."),
    ipset: list[Path] = typer.Option([], "--ipset", help="`ipset save` output for -m set rules; repeatable."),
    reader: str = typer.Option("auto", "--reader", help="auto (native), dpkt or tshark."),
    dissect: bool = typer.Option(False, "--dissect", help="Add Wireshark's view (tshark) of the dropped and "
                                                          "INVALID packets listed."),
    json_out: bool = typer.Option(False, "--json", help="Print summary.json on stdout instead of the human view."),
    stream: Optional[bool] = typer.Option(None, "--stream/--no-stream",
                                          help="Replay chunk by chunk in bounded memory, writing the --out tables "
                                               "incrementally (default: on when the captures exceed 256 MiB; "
                                               "without --out the tables go to a temporary directory)."),
):
    """Replay captures through a ruleset: verdicts, deciding rules, conntrack, NAT."""
    from ..errors import NfreplayError

    if fmt not in ("parquet", "csv"):
        raise NfreplayError(f"--format must be parquet or csv, not {fmt!r}")
    if packets not in ("all", "notable"):
        raise NfreplayError(f"--packets must be all or notable, not {packets!r}")
    if stream is None:
        stream = capture_bytes(captures) > STREAM_BYTES
    if stream:
        if out is not None:
            _run_streaming(captures, rules, host, local, out, fmt, report, allow_unsupported, seed, capture_point,
                           assume_good_checksums, ipset, reader, json_out, packets, dissect=dissect)
            return
        # no --out: the tables go to a temporary directory, removed at the end; its packets table holds the
        # notable rows only (what the drop / INVALID views and the report read back), so memory stays
        # bounded whatever the capture's size (an in-memory run holds every packet's row)
        import tempfile

        with tempfile.TemporaryDirectory(prefix="nfreplay-run-") as tmp:
            _run_streaming(captures, rules, host, local, Path(tmp), "parquet", report, allow_unsupported, seed,
                           capture_point, assume_good_checksums, ipset, reader, json_out, "notable", keep=False,
                           dissect=dissect)
        return
    res, cap = _replay(captures, rules, host, local, allow_unsupported, seed, capture_point, assume_good_checksums,
                       ipset, reader)
    if out is not None:
        from ..analysis import write_tables

        write_tables(res, out, fmt=fmt, packet_rows=packets)
    if report is not None:
        from ..reports import write_html

        write_html(res, report)
    s = res.summary
    if json_out:
        typer.echo(json.dumps(s, indent=2, default=str))
        return
    _print_human(res, cap, dissect)
    if out is not None:
        typer.echo(f"tables: {out}/ (packets, rules, flows, events, summary.json)")
    if report is not None:
        typer.echo(f"report: {report}")


def _print_human(res, cap, dissect: bool) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    out = res.output
    con.print(f"[bold]host model[/bold]: {out.meta.get('host', '')}")
    pk = res.packets
    n = len(pk)
    wall = res.wall_time_s or 0.0
    con.print(f"[bold]{n:,} packets[/bold] replayed in {wall:.2f} s ({(n / wall if wall else 0):,.0f} packets/s)")
    t = Table(title="outcomes", show_header=True)
    t.add_column("outcome")
    t.add_column("packets", justify="right")
    for k, v in pk["outcome"].value_counts().items():
        if v:
            t.add_row(str(k), f"{v:,}")
    con.print(t)
    cs = pk["ct_state"].astype(str).value_counts()
    cs = cs[cs.index != ""]
    if len(cs):
        con.print("conntrack states: " + ", ".join(f"{k} {v:,}" for k, v in cs.items()))
    rules = res.rules
    dropped = pk[pk["outcome"].isin(["dropped", "rejected"])]
    if len(dropped):
        t = Table(title="what dropped traffic")
        for c in ("table", "chain", "rule", "packets", "text"):
            t.add_column(c, overflow="fold")
        by = dropped.groupby("rule_id", observed=True).size().sort_values(ascending=False).head(15)
        for rid, cnt in by.items():
            if rid < 0:
                reasons = dropped.loc[dropped["rule_id"] == rid, "reason"].astype(str).value_counts()
                t.add_row("(kernel)", "", "", f"{cnt:,}", ", ".join(f"{k} {v}" for k, v in reasons.items()))
                continue
            r = rules.loc[rules["rule_id"] == rid].iloc[0]
            num = "policy" if int(r["rule_num"]) == 0 else str(int(r["rule_num"]))
            t.add_row(str(r["table"]), str(r["chain"]), num, f"{cnt:,}", str(r["text"]))
        con.print(t)
    inv = pk[pk["ct_state"] == "INVALID"]
    if len(inv):
        con.print(f"[bold]{len(inv):,} INVALID packets[/bold]:")
        for k, v in inv["invalid_reason"].astype(str).value_counts().head(10).items():
            con.print(f"  {v:6,}  {k or '(no reason logged)'}")
    _print_unsupported_and_nat(res)
    if dissect and len(dropped) + len(inv):
        from ..analysis.dissect import dissect_packets

        idx = _dissect_rows(pk)
        _print_dissect(pk, idx, dissect_packets(cap, idx), rules)

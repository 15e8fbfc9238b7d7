"""`nfreplay info CAPTURE...`: what the captures hold (per file and merged)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from ._app import app, progress_enabled

PROTO_NAMES = {1: "ICMP", 2: "IGMP", 4: "IPIP", 6: "TCP", 17: "UDP", 41: "IPv6-in-IP", 47: "GRE", 50: "ESP",
               51: "AH", 58: "ICMPv6", 59: "IPv6-NoNxt", 103: "PIM", 112: "VRRP", 132: "SCTP", 136: "UDP-Lite"}


def _ts_text(ns: int | None) -> str:
    if ns is None:
        return "-"
    from datetime import datetime, timezone

    s, frac = divmod(int(ns), 1_000_000_000)
    return datetime.fromtimestamp(s, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S") + f".{frac:09d}Z"


def _lt_name(lt: int) -> str:
    from ..replay.ingest.decode import LINKTYPE_NAMES

    return f"{LINKTYPE_NAMES.get(lt, 'LINKTYPE')}({lt})"


class _Summary:
    """Counts accumulated chunk by chunk (memory stays bounded on large captures)."""

    def __init__(self):
        self.packets = 0
        self.bytes = 0
        self.family: dict[str, int] = {}
        self.proto: dict[str, int] = {}
        self.status: dict[str, int] = {}
        self.talkers: dict[tuple[int, int, int], list[int]] = {}  # (family, hi, lo) -> [packets, bytes]

    def add(self, t) -> None:
        import numpy as np

        from ..replay.codes import PKT_STATUS_NAMES

        n = len(t.ts_ns)
        self.packets += n
        self.bytes += int(t.wire_len.sum())
        for fam, name in ((4, "IPv4"), (6, "IPv6"), (0, "non-IP")):
            c = int((t.family == fam).sum())
            if c:
                self.family[name] = self.family.get(name, 0) + c
        ip = t.family != 0
        pr, pc = np.unique(t.proto[ip], return_counts=True)
        for p, c in zip(pr.tolist(), pc.tolist()):
            k = PROTO_NAMES.get(p, f"proto {p}")
            self.proto[k] = self.proto.get(k, 0) + c
        for code, c in enumerate(np.bincount(t.status.astype(np.int64)).tolist()):
            if c:
                k = PKT_STATUS_NAMES[code] if code < len(PKT_STATUS_NAMES) else str(code)
                self.status[k] = self.status.get(k, 0) + c
        if ip.any():
            keys = np.stack([t.family[ip].astype(np.uint64), t.src_hi[ip], t.src_lo[ip]], axis=1)
            u, inv = np.unique(keys, axis=0, return_inverse=True)
            inv = inv.reshape(-1)
            pk = np.bincount(inv, minlength=len(u))
            by = np.bincount(inv, weights=t.wire_len[ip].astype(np.float64), minlength=len(u))
            for row, p_, b_ in zip(u.tolist(), pk.tolist(), by.tolist()):
                acc = self.talkers.setdefault(tuple(row), [0, 0])
                acc[0] += p_
                acc[1] += int(b_)

    def top(self, k: int = 10) -> list[dict]:
        from ..replay.addr import to_text

        items = sorted(self.talkers.items(), key=lambda kv: (-kv[1][0], -kv[1][1], kv[0]))[:k]
        return [{"address": to_text(hi, lo, fam), "packets": p, "bytes": b} for (fam, hi, lo), (p, b) in items]


def _file_json(f) -> dict:
    return {
        "path": f.path, "format": f.format, "linktypes": f.linktypes,
        "linktype_names": [_lt_name(x) for x in f.linktypes], "packets": f.packets,
        "first_ts": None if f.first_ts_ns is None else f.first_ts_ns / 1e9,
        "last_ts": None if f.last_ts_ns is None else f.last_ts_ns / 1e9,
        "first_ts_ns": f.first_ts_ns, "last_ts_ns": f.last_ts_ns,
        "malformed": sum(f.malformed.values()), "malformed_reasons": f.malformed,
        "not_replayable": f.not_replayable, "status_counts": f.status_counts,
        "byte_order": f.byte_order, "ts_resolution": f.ts_resolution, "snaplen": f.snaplen, "reader": f.reader,
        "damage": None if f.damage is None else {"reason": f.damage.reason, "offset": f.damage.offset,
                                                 "record": f.damage.record},
    }


@app.command("info")
def info_command(
    captures: list[Path] = typer.Argument(..., help="Capture files (pcap, pcapng, .gz); several are merged by time."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    reader: str = typer.Option("auto", "--reader", help="auto (native), dpkt or tshark."),
    strict: bool = typer.Option(False, "--strict", help="Fail on a damaged capture instead of keeping what precedes the damage."),
):
    """What the captures hold: format, link types, packets, time span, protocols, malformed and top talkers."""
    from ..replay.ingest import READERS, iter_capture

    if reader not in READERS:
        raise typer.BadParameter(f"unknown reader {reader!r} (choose {', '.join(READERS)})", param_hint="--reader")
    summ = _Summary()
    files = []
    prog = None
    if progress_enabled() and not as_json and sum(p.stat().st_size for p in captures if p.is_file()) > (64 << 20):
        from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

        from ._app import _stderr_console

        prog = Progress("[progress.description]{task.description}", BarColumn(), DownloadColumn(),
                        TimeRemainingColumn(), console=_stderr_console(), transient=True)
        prog.start()
        task = prog.add_task("reading", total=None)

        def cb(done, total):
            prog.update(task, completed=done, total=total)
    else:
        cb = None
    try:
        for chunk in iter_capture([str(p) for p in captures], reader=reader, strict=strict, progress=cb):
            summ.add(chunk.packets)
            files = chunk.files
    finally:
        if prog is not None:
            prog.stop()
    if not files:  # no packets at all: open the files for their facts
        from ..replay.ingest import read_capture

        cap = read_capture([str(p) for p in captures], reader=reader, strict=strict)
        files = cap.files

    first = [f.first_ts_ns for f in files if f.first_ts_ns is not None]
    last = [f.last_ts_ns for f in files if f.last_ts_ns is not None]
    merged = {
        "first_ts_ns": min(first) if first else None, "last_ts_ns": max(last) if last else None,
        "families": summ.family, "protocols": summ.proto, "status_counts": summ.status,
        "malformed": sum(sum(f.malformed.values()) for f in files),
        "not_replayable": sum(f.not_replayable for f in files), "bytes": summ.bytes,
        "top_talkers": summ.top(),
    }
    if as_json:
        out = {"packets": summ.packets, "files": [_file_json(f) for f in files], "merged": merged}
        typer.echo(json.dumps(out, indent=2))
        return
    _print_human(files, summ, merged)


def _print_human(files, summ, merged) -> None:
    from rich.console import Console
    from rich.table import Table

    con = Console()
    ft = Table(title="Capture files", title_justify="left")
    for c in ("file", "format", "link types", "packets", "first", "last", "malformed", "not replayable", "damage"):
        ft.add_column(c, justify="right" if c in ("packets", "malformed", "not replayable") else "left")
    for f in files:
        ft.add_row(Path(f.path).name, f"{f.format} {f.byte_order[0].upper()}E {f.ts_resolution}",
                   ", ".join(_lt_name(x) for x in f.linktypes), f"{f.packets:,}", _ts_text(f.first_ts_ns),
                   _ts_text(f.last_ts_ns), f"{sum(f.malformed.values()):,}", f"{f.not_replayable:,}",
                   "-" if f.damage is None else str(f.damage))
    con.print(ft)
    span = "-"
    if merged["first_ts_ns"] is not None:
        span = f"{(merged['last_ts_ns'] - merged['first_ts_ns']) / 1e9:.6f} s"
    con.print(f"[bold]{summ.packets:,}[/] packets, {summ.bytes:,} bytes on the wire, time span {span}"
              + (f" ({len(files)} files merged by time)" if len(files) > 1 else ""))
    pt = Table(title="Families and protocols", title_justify="left")
    pt.add_column("kind")
    pt.add_column("packets", justify="right")
    for k, v in sorted(summ.family.items(), key=lambda kv: -kv[1]):
        pt.add_row(k, f"{v:,}")
    for k, v in sorted(summ.proto.items(), key=lambda kv: -kv[1]):
        pt.add_row("  " + k, f"{v:,}")
    con.print(pt)
    st = Table(title="Decode status (not_replayable = everything but ok and fragment)", title_justify="left")
    st.add_column("status")
    st.add_column("packets", justify="right")
    for k, v in sorted(summ.status.items(), key=lambda kv: -kv[1]):
        st.add_row(k, f"{v:,}")
    con.print(st)
    tt = Table(title="Top talkers (by source address)", title_justify="left")
    for c in ("address", "packets", "bytes"):
        tt.add_column(c, justify="left" if c == "address" else "right")
    for r in merged["top_talkers"]:
        tt.add_row(r["address"], f"{r['packets']:,}", f"{r['bytes']:,}")
    con.print(tt)

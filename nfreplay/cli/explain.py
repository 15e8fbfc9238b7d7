"""`nfreplay explain CAPTURE --rules RULES [--host HOST] --packet N`: one packet's full trace.

Replays the capture up to and including packet N (the state before it matters: conntrack, limits),
chunk by chunk (memory bounded by one chunk, and it stops at the chunk that holds packet N), and prints, like `nft monitor trace`: the packet, its path, every rule that matched in every hook,
table and chain with the verdict, the conntrack lookup and its result, NAT, and the outcome.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ._app import app, isna


def trace_lines(res, index: int) -> list[dict]:
    """The recorded trace of packet `index` as dicts (rule, table, chain, rule_num, text, what)."""
    from ..replay.chains import (
        TR_CTSET,
        TR_LOG,
        TR_MARK,
        TR_MATCH,
        TR_NAT,
        TR_NFLOG,
        TR_NOOP,
        TR_POLICY,
        TR_REJECT,
        TR_RETURN_IMPLICIT,
    )

    names = {TR_MATCH: "matched, continue", TR_LOG: "LOG", TR_NFLOG: "NFLOG", TR_NOOP: "no-op target",
             TR_POLICY: "policy", TR_REJECT: "REJECT", TR_NAT: "NAT", TR_MARK: "mark set",
             TR_CTSET: "CT (notrack/helper/zone)", TR_RETURN_IMPLICIT: "end of chain, return",
             0: "DROP", 1: "ACCEPT", 3: "QUEUE", -5: "RETURN", -3: "JUMP", -4: "GOTO", -1: "CONTINUE"}
    try:
        from ..replay.chains import TR_HOTDROP

        names[TR_HOTDROP] = "hotdrop (match dropped the packet)"
    except ImportError:  # pragma: no cover
        pass
    rows = res.output.meta.get("trace")
    rules = res.output.rules
    out = []
    if rows is None:
        return out
    for rid, code, arg in rows.tolist():
        r = rules[rid] if 0 <= rid < len(rules) else {}
        what = names.get(code, f"code {code}")
        if code == TR_POLICY:
            what = "policy " + names.get(arg, str(arg))
        out.append({"rule_id": rid, "family": r.get("family", ""), "table": r.get("table", ""),
                    "chain": r.get("chain", ""), "rule_num": r.get("rule_num", 0), "hook": r.get("hook", ""),
                    "text": r.get("text", ""), "what": what})
    return out


@app.command("explain")
def explain_command(
    capture: list[Path] = typer.Argument(..., metavar="CAPTURE...", help="pcap/pcapng file(s)."),
    rules: list[Path] = typer.Option(..., "--rules", "-r", help="Ruleset file(s)."),
    packet: int = typer.Option(..., "--packet", "-p", help="0-based index of the packet in the (merged) capture, "
                                                           "as in the packets table."),
    host: Optional[Path] = typer.Option(None, "--host", help="Host file (TOML/JSON)."),
    local: list[str] = typer.Option([], "--local", help="Add a local address to the host model."),
    allow_unsupported: bool = typer.Option(False, "--allow-unsupported", help="Replay despite unsupported rules."),
    seed: int = typer.Option(0, "--seed"),
    capture_point: str = typer.Option("arrival", "--capture-point"),
    assume_good_checksums: bool = typer.Option(False, "--assume-good-checksums"),
    dissect: bool = typer.Option(False, "--dissect", help="Add Wireshark's view of the packet (needs tshark)."),
    json_out: bool = typer.Option(False, "--json", help="Print the explanation as one JSON object."),
):
    """Explain one packet: its path, every rule it matched, conntrack and NAT."""
    from types import SimpleNamespace

    from ..analysis.api import _load_host
    from ..analysis.frames import PACKET_NULLABLE, events_frame, packets_table, table_to_frame
    from ..errors import NfreplayError
    from ..replay.driver import Replayer
    from ..replay.ingest import iter_capture
    from ..replay.rules import load_ruleset

    if packet < 0:
        raise NfreplayError(f"packet {packet} is not in the capture (packets are numbered from 0)")
    rs = load_ruleset([str(r) for r in rules] if len(rules) > 1 else str(rules[0]))
    rp = Replayer(rs, _load_host(str(host) if host else None, tuple(local)), allow_unsupported=allow_unsupported,
                  seed=seed, assume_good_checksums=assume_good_checksums, capture_point=capture_point,
                  trace_packet=packet)
    for chunk in iter_capture([str(c) for c in capture], chunk_packets=EXPLAIN_CHUNK):
        part = rp.feed(chunk)
        if rp.n > packet:
            break
    else:
        n = rp.n
        raise NfreplayError(f"packet {packet} is not in the capture (it has {n} packets, numbered 0..{n - 1})")
    local_i = packet - part.offset
    co = rp.chunk_output(part)
    row = table_to_frame(packets_table(co, part.offset, rows=[local_i]), PACKET_NULLABLE).iloc[0]
    trace = trace_lines(SimpleNamespace(output=SimpleNamespace(meta={"trace": rp.trace_rows}, rules=co.rules)),
                        packet)
    flow_events = []
    if not isna(row["ct_id"]) and int(row["ct_id"]) >= 0:
        ev = events_frame(co)
        sel = ev[(ev["ct_id"] == row["ct_id"]) & (ev["packet_index"] == packet)]
        flow_events = [{"event": str(e["event"]), "tcp_state": str(e["tcp_state"]), "status": str(e["status"]),
                        "timeout_s": int(e["timeout_s"])} for _, e in sel.iterrows()]
    ws = None
    if dissect:
        from ..analysis.dissect import dissect_packets

        ws = dissect_packets(chunk, [local_i]).get(local_i)
    info = {k: (None if isna(v) else (v.isoformat() if hasattr(v, "isoformat") else
                                       (v.item() if hasattr(v, "item") else str(v) if not isinstance(v, (int, float, str)) else v)))
            for k, v in row.items()}
    if json_out:
        typer.echo(json.dumps({"packet": info, "trace": trace, "conntrack_events": flow_events, "wireshark": ws},
                              indent=2, default=str))
        return
    _print(info, trace, flow_events, ws)


EXPLAIN_CHUNK = 262_144  # packets per chunk read and replayed by explain


def _print(p, trace, flow_events, ws) -> None:
    from rich.console import Console

    con = Console()
    pname = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp", 136: "udplite", 47: "gre"}
    try:
        proto = pname.get(int(p["proto"]), str(p["proto"]))
    except (TypeError, ValueError):
        proto = str(p["proto"])
    ports = f":{p['sport']}" if p.get("sport") not in (None, "", 0) else ""
    dports = f":{p['dport']}" if p.get("dport") not in (None, "", 0) else ""
    con.print(f"[bold]packet {p['index']}[/bold]  {p['ts']}  {proto} {p['src']}{ports} > {p['dst']}{dports}"
              f"  len {p['len']}" + (f"  flags {p['tcp_flags']}" if p.get("tcp_flags") else "")
              + (f"  icmp {p['icmp_type']}/{p['icmp_code']}" if p.get("icmp_type") not in (None, "") else ""))
    if ws:
        con.print(f"  wireshark: {ws.get('protocol', '')} {ws.get('info', '')}")
        for m in ws.get("expert", []):
            con.print(f"  wireshark expert: {m}")
    con.print(f"  in {p.get('in_iface') or '-'}  out {p.get('out_iface') or '-'}  path {p.get('path') or '-'}")
    if p.get("ct_state"):
        line = f"  conntrack: {p['ct_state']} {p.get('ct_dir') or ''}"
        if p.get("ct_id") not in (None, -1):
            line += f", flow {p['ct_id']}"
        if p.get("tcp_state"):
            line += f", TCP {p['tcp_state']}"
        if p.get("invalid_reason"):
            line += f" — {p['invalid_reason']}"
        con.print(line)
    for e in flow_events:
        con.print(f"  ct event: {e['event']} {e['tcp_state']} {e['status']} timeout {e['timeout_s']}s")
    if not trace:
        con.print("  (no rule matched: only chain policies or no rules on this path)")
    for t in trace:
        num = "policy" if t["rule_num"] == 0 else f"#{t['rule_num']}"
        con.print(f"  {t['hook']:<11} {t['family']} {t['table']}/{t['chain']} {num}: [bold]{t['what']}[/bold]"
                  + (f"   {t['text']}" if t["text"] and t["rule_num"] else ""))
    outcome = p["outcome"]
    if outcome in ("forwarded", "emitted"):
        ports = f":{p['out_sport']}" if p.get("out_sport") not in (None, "") else ""
        dports = f":{p['out_dport']}" if p.get("out_dport") not in (None, "") else ""
        con.print(f"  -> [bold]{outcome}[/bold] via {p.get('out_iface')} as {p.get('out_src')}{ports} > "
                  f"{p.get('out_dst')}{dports}")
    else:
        extra = f" ({p['reason']})" if p.get("reason") else ""
        by = f" by {p['verdict_table']}/{p['verdict_chain']} #{p['verdict_rule']}" if p.get("verdict_chain") else ""
        con.print(f"  -> [bold]{outcome}[/bold]{by}{extra}")

"""`nfreplay verify`: replay a capture through nfreplay and through this machine's own kernel
(an isolated namespace lab) and report how far they agree."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ..errors import LabError
from ._app import app


@app.command("verify")
def verify_command(
    capture: Path = typer.Argument(..., help="Capture file (pcap/pcapng), the firewall's own view."),
    rules: Path = typer.Option(..., "--rules", help="Ruleset: iptables-save, ip6tables-save or nft."),
    host: Optional[Path] = typer.Option(None, "--host", help="Host file (TOML/JSON): the firewall's interfaces."),
    timing: str = typer.Option("fast", "--timing", help="fast | original (timeouts, limit, recent)."),
    checksums: str = typer.Option("fix", "--checksums", help="fix | keep: repair bad checksums before injecting."),
    linger: float = typer.Option(0.0, "--linger", help="Seconds to wait after the last packet (timer events)."),
    as_json: bool = typer.Option(False, "--json", help="Print the agreement figures as one JSON object."),
    out: Optional[Path] = typer.Option(None, "--out", help="Write kernel.json and agreement.json to DIR."),
    report: Optional[Path] = typer.Option(None, "--report", help="Write the agreement as an HTML report."),
):
    """Compare nfreplay's answers with the kernel's, packet by packet (needs root and the tools)."""
    if timing not in ("fast", "original"):
        raise typer.BadParameter("must be 'fast' or 'original'", param_hint="--timing")
    if checksums not in ("fix", "keep"):
        raise typer.BadParameter("must be 'fix' or 'keep'", param_hint="--checksums")
    from ..lab.kernel import check_requirements

    missing = check_requirements()
    if missing:
        raise LabError("the kernel lab needs: " + ", ".join(missing))
    for p in (capture, rules) + ((host,) if host else ()):
        if not p.exists():
            raise LabError(f"{p}: no such file")
    if host is None:
        raise LabError("verify needs --host: the kernel lab must know the firewall's interfaces and addresses")

    import nfreplay

    from ..lab.compare import compare
    from ..lab.kernel import run_kernel
    from ..lab.topology import load_topology

    topo = load_topology(str(host))
    ours = nfreplay.simulate(str(capture), str(rules), host=str(host))
    kernel = run_kernel(capture, rules, topo, timing=timing, checksums=checksums, linger_s=linger)
    ag = compare(kernel, ours, scenario=capture.name)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "kernel.json").write_text(json.dumps(kernel, indent=1) + "\n")
        (out / "agreement.json").write_text(ag.to_json(indent=1) + "\n")
    if report is not None:
        report.write_text(ag.to_html(title=f"nfreplay verify: {capture.name}"))
    if as_json:
        typer.echo(ag.to_json())
    else:
        typer.echo(ag.render_text(), nl=False)

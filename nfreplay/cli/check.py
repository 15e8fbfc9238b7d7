"""`nfreplay check RULES...`: parse (and compile) rulesets, summarise them, list what is not modelled.

A report, not a gate: unsupported constructs are listed and the exit code stays 0; a syntax error (or
a structurally invalid ruleset) is a NfreplayError: one line on stderr, exit code 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer

from ._app import app


def _unsupported(rs, compiled) -> list[dict]:
    """Ruleset-level unsupported entries, then those only the compiler found (deduplicated)."""
    out, seen = [], set()
    for ref, u in rs.unsupported:
        key = (str(ref), u.text)
        seen.add(key)
        out.append({"source": str(ref), "text": u.text, "feature": u.feature})
    if compiled is not None:
        for row in compiled.rules:
            feat = row.get("unsupported") or ""
            if feat and (row["source"], row["text"]) not in seen:
                seen.add((row["source"], row["text"]))
                out.append({"source": row["source"], "text": row["text"], "feature": feat})
    return out


@app.command("check")
def check_command(
    rules: list[Path] = typer.Argument(..., metavar="RULES...", help="Ruleset files: iptables-save, ip6tables-save, `iptables -S`, "
                                                 "`nft list ruleset` or `nft -j list ruleset` output."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object "
                                                        '{"rules": N, "unsupported": [...]} instead.'),
    family: Optional[str] = typer.Option(None, "--family", help="ip or ip6 for iptables text "
                                                                "(default: sniffed from the content)."),
):
    """Parse and compile rulesets; print tables, chains and rule counts and every unsupported construct."""
    from ..errors import NfreplayError
    from ..replay.rules import load_ruleset

    if family not in (None, "ip", "ip6"):
        raise NfreplayError(f"--family must be ip or ip6, not {family!r}")
    rs = load_ruleset([str(p) for p in rules], family=family)
    compiled = None
    try:
        from ..replay.rules.compile import compile_ruleset
    except ImportError:  # pragma: no cover - the compiler ships with the package
        compile_ruleset = None
    if compile_ruleset is not None:
        compiled = compile_ruleset(rs, allow_unsupported=True)
    unsupported = _unsupported(rs, compiled)
    n_rules = sum(1 for _ in rs.rules())
    if json_out:
        typer.echo(json.dumps({"rules": n_rules, "unsupported": unsupported}))
        return
    typer.echo(f"{rs.source}: {rs.fmt} ruleset, {len(rs.tables)} table{'s' if len(rs.tables) != 1 else ''}, "
               f"{n_rules} rule{'s' if n_rules != 1 else ''}" + (", compiled" if compiled is not None else ""))
    for t in rs.tables:
        typer.echo(f"  table {t.family} {t.name}: {len(t.chains)} chains, {sum(len(c.rules) for c in t.chains)} rules"
                   + (f", {len(t.sets)} sets" if t.sets else ""))
        width = max((len(c.name) for c in t.chains), default=0)
        for c in t.chains:
            where = (f"{c.type} hook {c.hook} prio {c.priority} policy {(c.policy or 'accept').upper()}"
                     if c.hook else "regular")
            n = len(c.rules)
            typer.echo(f"    {c.name:<{width}}  {n:>5} rule{' ' if n == 1 else 's'}  {where}")
    if not unsupported:
        typer.echo("Every rule is supported.")
        return
    typer.echo(f"{len(unsupported)} unsupported construct{'s' if len(unsupported) != 1 else ''} "
               "(`nfreplay run` refuses them unless --allow-unsupported; then such rules never match):")
    for u in unsupported:
        typer.echo(f"  {u['source']}: {u['feature']}")
        typer.echo(f"      {u['text']}")

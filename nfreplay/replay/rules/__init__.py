"""Rulesets: load_ruleset(path_or_text) -> model.Ruleset, sniffing the format.

Formats: iptables-save / ip6tables-save / `iptables -S` (iptables.py), `nft list ruleset` text and
`nft -j list ruleset` JSON (nft.py). Several files (e.g. iptables-save + ip6tables-save) are merged.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from .model import Ruleset

__all__ = ["load_ruleset", "sniff_format"]


def sniff_format(text: str) -> str:
    """'iptables' | 'nft' | 'nft-json' from the content (as the kernel oracle does)."""
    s = text.lstrip()
    if s.startswith("{"):
        try:
            if "nftables" in json.loads(s):
                return "nft-json"
        except ValueError:
            pass
    for line in text.splitlines():
        t = line.strip()
        if not t or t.startswith("#"):
            continue
        if t.startswith("*") or t.startswith(":") or t.startswith("-A ") or t.startswith("-P ") \
                or t.startswith("-N ") or t == "COMMIT":
            return "iptables"
        if t.split()[0] in ("table", "flush", "add", "define", "include", "insert", "create"):
            return "nft"
        break
    return "iptables"


def _read_text(path) -> str:
    try:
        return Path(path).read_text()
    except OSError as e:
        from ...errors import NfreplayError

        raise NfreplayError(f"{path}: cannot read ruleset: {e.strerror}") from None


def load_ruleset(src, fmt: str = "auto", family: str | None = None) -> Ruleset:
    """Load one ruleset file (path), text (str containing a newline) or several files (list).

    family: for iptables text, "ip" or "ip6" (default: sniffed from the addresses / file name).
    """
    if isinstance(src, (list, tuple)) and len(src) > 1 and fmt in ("auto", "iptables"):
        # several iptables files are applied in order like `iptables-restore --noflush` (ufw's fragments)
        items = [(_read_text(s), str(s)) if not (isinstance(s, str) and "\n" in s) else (s, "<string>")
                 for s in src]
        if fmt == "iptables" or all(sniff_format(t) == "iptables" for t, _n in items):
            from .iptables import parse_iptables_files

            return parse_iptables_files(items, family)
    if isinstance(src, (list, tuple)):
        parts = [load_ruleset(s, fmt, family) for s in src]
        if len(parts) == 1:
            return parts[0]
        return Ruleset(tables=tuple(t for p in parts for t in p.tables), source=",".join(p.source for p in parts),
                       fmt=parts[0].fmt, digest=hashlib.sha256("".join(p.digest for p in parts).encode()).hexdigest(),
                       unsupported=tuple(u for p in parts for u in p.unsupported))
    if isinstance(src, str) and "\n" in src:
        text, name = src, "<string>"
    else:
        p = Path(src)
        try:
            text = p.read_text()
        except OSError as e:
            from ...errors import NfreplayError

            raise NfreplayError(f"{p}: cannot read ruleset: {e.strerror}") from None
        name = str(p)
    f = sniff_format(text) if fmt == "auto" else fmt
    if f == "iptables":
        from .iptables import parse_iptables

        rs = parse_iptables(text, source=name, family=family)
    elif f == "nft":
        from .nft import parse_nft_text

        rs = parse_nft_text(text, source=name)
    elif f == "nft-json":
        from .nft import parse_nft_json

        rs = parse_nft_json(text, source=name)
    else:
        from ...errors import NfreplayError

        raise NfreplayError(f"{name}: unknown ruleset format {fmt!r}")
    return rs

"""Reader for iptables' own extension test vectors (extensions/*.t, run by iptables-test.py)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Vector:
    file: str
    lineno: int
    table: str
    chains: tuple[str, ...]
    rule: str
    expect: str  # "OK" | "FAIL"
    canonical: str | None  # the text iptables -S shows (None: not checked)


def read_vectors(path: Path) -> list[Vector]:
    out = []
    table, chains = "filter", ("INPUT",)
    for no, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.rstrip("\n")
        if not line or line.startswith("#") or line.startswith("@"):
            continue
        if line.startswith("*"):
            table = line[1:].strip()
            continue
        if line.startswith(":"):
            chains = tuple(c.strip() for c in line[1:].split(","))
            continue
        parts = line.split(";")
        if len(parts) < 3:
            continue
        rule, save, res = parts[0], parts[1], parts[2]
        if len(parts) > 3 and parts[3] == "NFT":
            continue  # result specific to the nft backend
        canonical = None
        if res == "OK":
            canonical = rule if save == "=" else save
        out.append(Vector(path.name, no, table, chains, rule, res, canonical))
    return out


def family_of(path: Path) -> str:
    return "ip6" if path.name.startswith("libip6t_") else "ip"


def vector_files(ext_dir: Path) -> list[Path]:
    return sorted(p for p in ext_dir.glob("*.t") if not p.name.startswith(("libebt_", "libarpt_")))

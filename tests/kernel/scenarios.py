"""Where the recorded kernel scenarios are: ours (tests/fixtures/scenarios) and the shared ones."""

from __future__ import annotations

import json
import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OWN = ROOT / "tests" / "fixtures" / "scenarios"
SHARED = Path(os.environ.get("NFREPLAY_SHARED", ROOT.parent / "shared"))


def scenario_dirs(base: Path) -> list[Path]:
    if not base.is_dir():
        return []
    return sorted(d for d in base.iterdir() if (d / "oracle_out.json").exists() and (d / "capture.pcap").exists())


def load(d: Path) -> tuple[dict, dict, Path]:
    """(scenario.json, oracle_out.json, rules path) of one scenario directory."""
    meta = json.loads((d / "scenario.json").read_text())
    kernel = json.loads((d / "oracle_out.json").read_text())
    return meta, kernel, d / meta["rules"]

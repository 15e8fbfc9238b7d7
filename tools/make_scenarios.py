#!/usr/bin/env python3
"""(Re)build the recorded kernel scenarios in tests/fixtures/scenarios/ (needs root).

    python tools/make_scenarios.py [--only NAME ...] [--recapture] [--no-oracle] [--list]

Captures are kept unless --recapture (real traffic has random ISNs and ports, so every
recapture differs); the kernel's answers (oracle_out.json) are always re-recorded, twice, and
determinism.txt says whether the two runs agreed."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nfreplay.lab.scenarios import SCENARIOS, build  # noqa: E402


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", nargs="*")
    ap.add_argument("--recapture", action="store_true")
    ap.add_argument("--no-oracle", action="store_true")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "tests" / "fixtures" / "scenarios"))
    args = ap.parse_args(argv)
    if args.list:
        for name, scn in SCENARIOS.items():
            print(f"{name}: {scn['title']}")  # noqa: T201
        return 0
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    summary = build(args.out, only=args.only, recapture=args.recapture, oracle=not args.no_oracle,
                    report=lambda m: print(m, flush=True))  # noqa: T201
    print(json.dumps(summary, indent=1))  # noqa: T201
    return 0 if all(s["identical"] for s in summary.values()) else 1


if __name__ == "__main__":
    sys.exit(main())

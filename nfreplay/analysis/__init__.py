"""Analysis: the engine's arrays as pandas tables and aggregates (no numba, no HTML).

    simulate(capture, rules, host=None, ...) -> Result   # .packets .rules .flows .events .summary
    compare(result_a, result_b) -> Diff                  # ruleset / host-knob diff
    write_tables(result, out_dir, fmt="parquet")         # the contract's files + summary.json
"""

from __future__ import annotations

from .api import Result, simulate
from .diff import Diff, compare
from .export import read_tables, write_tables

__all__ = ["simulate", "Result", "compare", "Diff", "write_tables", "read_tables"]

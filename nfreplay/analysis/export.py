"""write_tables(): the result tables as Parquet (default) or CSV files plus summary.json.

Written in slices of ROW_GROUP rows (one Parquet row group / one CSV append each), so a writer never
holds a second full copy of a 10M-row table and readers can stream the files row group by row group.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

log = logging.getLogger(__name__)

__all__ = ["write_tables", "read_tables", "TABLES", "ROW_GROUP"]

TABLES = ("packets", "rules", "flows", "events")
ROW_GROUP = 1_000_000


def _as_result(result):
    from .api import Result

    if isinstance(result, Result):
        return result
    if hasattr(result, "results") and hasattr(result, "packets"):
        return Result(result)
    raise TypeError(f"write_tables: expected a Result or ReplayOutput, got {type(result).__name__}")


def _write_parquet(df: pd.DataFrame, path: Path, row_group: int) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    schema = pa.Schema.from_pandas(df.iloc[:0], preserve_index=False)
    with pq.ParquetWriter(path, schema) as w:
        if len(df) == 0:
            w.write_table(pa.Table.from_pandas(df, schema=schema, preserve_index=False))
        for start in range(0, len(df), row_group):
            part = df.iloc[start:start + row_group]
            w.write_table(pa.Table.from_pandas(part, schema=schema, preserve_index=False), row_group_size=row_group)


def _write_csv(df: pd.DataFrame, path: Path, row_group: int) -> None:
    if len(df) == 0:
        df.to_csv(path, index=False)
        return
    for start in range(0, len(df), row_group):
        df.iloc[start:start + row_group].to_csv(path, index=False, mode="w" if start == 0 else "a",
                                                header=start == 0)


def write_tables(result, out_dir, fmt: str = "parquet", *, row_group: int = ROW_GROUP) -> dict[str, Path]:
    """Write packets, rules, flows, events (.parquet or .csv) and summary.json into out_dir.

    Returns {table name: path}. fmt: "parquet" or "csv"."""
    if fmt not in ("parquet", "csv"):
        from ..errors import NfreplayError

        raise NfreplayError(f"unknown table format {fmt!r} (use parquet or csv)")
    res = _as_result(result)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in TABLES:
        df = getattr(res, name)
        p = out / f"{name}.{fmt}"
        (_write_parquet if fmt == "parquet" else _write_csv)(df, p, row_group)
        paths[name] = p
    sp = out / "summary.json"
    sp.write_text(json.dumps(res.summary, indent=2, sort_keys=False) + "\n")
    paths["summary"] = sp
    log.info("wrote %s", ", ".join(str(p) for p in paths.values()))
    return paths


def read_tables(out_dir) -> dict:
    """Read back what write_tables wrote: {name: DataFrame, 'summary': dict} (Parquet keeps dtypes)."""
    d = Path(out_dir)
    res = {}
    for name in TABLES:
        pq_path, csv_path = d / f"{name}.parquet", d / f"{name}.csv"
        if pq_path.exists():
            res[name] = pd.read_parquet(pq_path)
        elif csv_path.exists():
            res[name] = pd.read_csv(csv_path)
    if (d / "summary.json").exists():
        res["summary"] = json.loads((d / "summary.json").read_text())
    return res

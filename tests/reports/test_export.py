"""write_tables round-trips: Parquet keeps the dtypes, CSV the values; summary.json is the summary."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from analysis.factories import forward_scenario, make_output

from nfreplay.analysis import Result, read_tables, write_tables


@pytest.fixture(scope="module")
def res():
    return Result(make_output(forward_scenario()))


def test_parquet_round_trip(res, tmp_path):
    paths = write_tables(res, tmp_path, fmt="parquet", row_group=7)
    assert {p.name for p in paths.values()} == {"packets.parquet", "rules.parquet", "flows.parquet",
                                               "events.parquet", "summary.json"}
    back = read_tables(tmp_path)
    for name in ("packets", "rules", "flows", "events"):
        orig = getattr(res, name)
        got = back[name]
        assert list(got.columns) == list(orig.columns)
        pd.testing.assert_frame_equal(got, orig, check_dtype=True, check_categorical=False)
    import pyarrow.parquet as pq

    assert pq.ParquetFile(tmp_path / "packets.parquet").num_row_groups == 4  # 23 rows in groups of 7
    assert json.loads((tmp_path / "summary.json").read_text()) == res.summary


def test_csv_round_trip(res, tmp_path):
    write_tables(res, tmp_path, fmt="csv", row_group=10)
    back = read_tables(tmp_path)
    p = back["packets"]
    assert len(p) == len(res.packets)
    assert p["src"].tolist() == res.packets["src"].tolist()
    assert p["tcp_flags"].fillna("").tolist() == res.packets["tcp_flags"].astype(object).fillna("").tolist()
    assert p["outcome"].tolist() == res.packets["outcome"].astype(str).tolist()
    assert (pd.to_datetime(p["ts"], utc=True).astype("datetime64[ns, UTC]") == res.packets["ts"]).all()
    assert back["flows"]["history"].fillna("").tolist() == res.flows["history"].tolist()  # CSV: "" reads as NaN


def test_bad_format(res, tmp_path):
    from nfreplay.errors import NfreplayError

    with pytest.raises(NfreplayError):
        write_tables(res, tmp_path, fmt="xlsx")

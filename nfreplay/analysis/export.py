"""write_tables(): the result tables as Parquet (default) or CSV files plus summary.json.

Written in slices of ROW_GROUP rows (one Parquet row group / one CSV append each), so a writer never
holds a second full copy of a 10M-row table and readers can stream the files row group by row group.
"""

from __future__ import annotations

import json
import logging
from collections import namedtuple
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


def write_tables(result, out_dir, fmt: str = "parquet", *, row_group: int = ROW_GROUP,
                 packet_rows: str = "all") -> dict[str, Path]:
    """Write packets, rules, flows, events (.parquet or .csv) and summary.json into out_dir.

    Returns {table name: path}. fmt: "parquet" or "csv". packet_rows: "all" or "notable" (PACKET_ROWS: the
    packets table holds the notable rows only, summary.json says so under "packets_table")."""
    if fmt not in ("parquet", "csv"):
        from ..errors import NfreplayError

        raise NfreplayError(f"unknown table format {fmt!r} (use parquet or csv)")
    _check_packet_rows(packet_rows)
    res = _as_result(result)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    summary = res.summary
    for name in TABLES:
        df = getattr(res, name)
        if name == "packets" and packet_rows == "notable":
            df = df.loc[notable_mask(df)]
            summary = {**summary, "packets_table": {"rows": "notable", "written": len(df)}}
        p = out / f"{name}.{fmt}"
        (_write_parquet if fmt == "parquet" else _write_csv)(df, p, row_group)
        paths[name] = p
    sp = out / "summary.json"
    sp.write_text(json.dumps(summary, indent=2, sort_keys=False) + "\n")
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


# ------------------------------------------------------------------ streaming (simulate_to)
STREAM_SAMPLE = 100_000  # packets kept in memory for the report / summary fields that need packet rows

# What the packets table holds (run --packets): "all" (contracts §3: one row per captured packet) or
# "notable": the packets that were not accepted (dropped, rejected, queued, stolen, not replayed) or were
# INVALID (whatever their outcome) -- the rows the drop, INVALID and per-hook analyses read, and what a
# forensic question is usually about. Each keeps its capture `index`; the summary, rules, flows, events and
# the report still cover every packet.
PACKET_ROWS = ("all", "notable")
# the columns of every packet the summary's counts and the NAT-escape interfaces read (_table_counts,
# _snat_ifaces) when the packets table holds the notable rows only
_COUNT_COLUMNS = ("outcome", "ct_state", "invalid_reason", "ip_csum", "l4_csum", "reason", "path", "nat",
                  "out_iface")


def _check_packet_rows(packet_rows: str) -> None:
    if packet_rows not in PACKET_ROWS:
        from ..errors import NfreplayError

        raise NfreplayError(f"unknown packet rows {packet_rows!r} (use {' or '.join(PACKET_ROWS)})")


_ACCEPTED_BIT, _BLOCKED_BIT, _INVALID_BIT = 1, 2, 4


def _packet_classes(outcome, ct_state):
    """Per packet of the engine's arrays (results.outcome, results.ct_state), uint8 bits: _ACCEPTED_BIT
    (summary.ACCEPTED), _BLOCKED_BIT (summary.BLOCKED), _INVALID_BIT (ct state INVALID, any outcome)."""
    import numpy as np

    from ..replay import codes as rcodes
    from .summary import ACCEPTED, BLOCKED

    names = list(rcodes.OUTCOME_NAMES)
    lut = np.zeros(256, np.uint8)
    lut[[names.index(x) for x in ACCEPTED]] = _ACCEPTED_BIT
    lut[[names.index(x) for x in BLOCKED]] = _BLOCKED_BIT
    cls = lut[np.asarray(outcome).astype(np.uint8, copy=False)]
    cls |= (np.asarray(ct_state) == rcodes.CT_STATE_NAMES.index("INVALID")).view(np.uint8) * np.uint8(_INVALID_BIT)
    return cls


def notable_positions(results, classes=None):
    """The positions of the notable packets (PACKET_ROWS) of an engine result (PacketResults); classes: its
    _packet_classes when already known."""
    import numpy as np

    cls = _packet_classes(results.outcome, results.ct_state) if classes is None else classes
    return np.flatnonzero(((cls & _ACCEPTED_BIT) == 0) | ((cls & _INVALID_BIT) != 0))


def notable_mask(packets: pd.DataFrame):
    """notable_positions on a packets frame: a boolean mask of its rows."""
    from .summary import ACCEPTED

    return (~packets["outcome"].isin(ACCEPTED) | (packets["ct_state"] == "INVALID")).to_numpy(dtype=bool)


# Categorical columns whose categories are the values present (not a fixed list): a streamed file's schema
# is fixed by its first row group, but a later one may hold more distinct values (the int8 dictionary
# index of < 128 categories would overflow) or have values where the first had none (an empty object
# category list is a null-typed dictionary, which cannot take strings). So these are written as
# dictionary<int32, large_string> whatever the first row group holds; readers get them as categoricals.
_OPEN_CATEGORIES = ("verdict_table", "verdict_chain", "invalid_reason")


def _stream_parquet_options(schema) -> dict:
    """ParquetWriter options of the streamed tables (packets, events): the same schema and values as
    write_tables, encoded with ~40% less CPU:
    - dictionary encoding only for the categorical (Arrow dictionary) columns, which pyarrow writes from
      their own dictionary without hashing a value; numbers and text are plain encoded (before, the
      encoder hashed every value of every column, e.g. the port columns' dictionaries reached the page
      limit and fell back to plain: more CPU and larger pages). Same file size within 4 %.
    - DELTA_BINARY_PACKED for the packet number and the timestamps (`index`, `ts`: increasing), which
      makes the packets file ~20 % smaller at the same CPU (plain + snappy before).
    - min/max statistics only for numeric and time columns (on strings and categoricals they cost a
      comparison per value and prune nothing: every row group holds most outcomes, states, addresses)."""
    import pyarrow as pa

    stats = [f.name for f in schema
             if not (pa.types.is_dictionary(f.type) or pa.types.is_string(f.type) or pa.types.is_large_string(f.type))]
    delta = {f.name: "DELTA_BINARY_PACKED" for f in schema
             if f.name in _DELTA and (pa.types.is_integer(f.type) or pa.types.is_timestamp(f.type))}
    return {"use_dictionary": [f.name for f in schema if pa.types.is_dictionary(f.type)], "write_statistics": stats,
            **({"column_encoding": delta} if delta else {})}


_DELTA = ("index", "ts")  # increasing columns of the streamed tables (packets; events' ts: nearly)


class _TableAppender:
    """Appends tables to one Parquet file (a row group each) or one CSV file: pyarrow Tables of
    frames.packets_table / events_table (`nullable`: their nullable integer columns, frames.PACKET_NULLABLE /
    EVENT_NULLABLE) or DataFrames. The file's schema is the one pa.Schema.from_pandas gives the first
    table's frame (with the _OPEN_CATEGORIES widened), so the file reads back as the frames would.

    as_text: columns that are text columns of the file but may come as dictionary arrays (the address
    columns of frames.packets_table(address_dictionaries=True)): written dictionary encoded as they are by
    parquet.FastParquetWriter, decoded to text for pq.ParquetWriter; they read back as text."""

    def __init__(self, path: Path, fmt: str, nullable: dict | None = None, as_text: tuple = ()):
        self.path, self.fmt, self._w, self._schema, self.rows = path, fmt, None, None, 0
        self.nullable = dict(nullable or {})
        self.as_text = tuple(as_text)

    def _frame(self, t) -> pd.DataFrame:
        if isinstance(t, pd.DataFrame):
            return t
        from .frames import table_to_frame

        return table_to_frame(t, self.nullable)

    def _open(self, t) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        if isinstance(t, pd.DataFrame):
            sch = pa.Schema.from_pandas(t.iloc[:0], preserve_index=False)
        else:
            from .frames import _pandas_schema

            ts = t.slice(0, 0)
            for name in self.as_text:
                i = ts.schema.get_field_index(name)
                if i >= 0:
                    ts = ts.set_column(i, name, pa.array([], pa.large_string()))
            sch = _pandas_schema(ts, self.nullable)
        for name in _OPEN_CATEGORIES:
            i = sch.get_field_index(name)
            if i >= 0 and pa.types.is_dictionary(sch.field(name).type):
                ft = sch.field(name).type
                vt = pa.large_string() if pa.types.is_null(ft.value_type) else ft.value_type
                sch = sch.set(i, sch.field(name).with_type(pa.dictionary(pa.int32(), vt, ft.ordered)))
        self._schema = sch
        from . import parquet

        # the Numba-encoded writer (files that read back the same) for tables of a size worth loading its
        # kernels for (parquet.FAST_MIN_ROWS, from the first table), else pyarrow's
        opts = _stream_parquet_options(sch)
        fast = parquet.supports(sch, **opts) and len(t) >= parquet.FAST_MIN_ROWS
        self._w = (parquet.FastParquetWriter if fast else pq.ParquetWriter)(self.path, self._schema, **opts)

    def _conform(self, t):
        """A pyarrow Table with the file's schema: dictionary indices widened, null-typed (empty)
        dictionaries given the file's value type."""
        import pyarrow as pa

        if t.schema.equals(self._schema, check_metadata=False):
            return t.replace_schema_metadata(self._schema.metadata)
        from .parquet import FastParquetWriter

        # FastParquetWriter writes the as_text dictionary columns as they are (dictionary-encoded text)
        as_dict = self.as_text if isinstance(self._w, FastParquetWriter) else ()
        cols = []
        for f, col in zip(self._schema, t.columns):
            if col.type != f.type:
                if f.name in as_dict and pa.types.is_dictionary(col.type) and pa.types.is_large_string(f.type):
                    pass
                elif pa.types.is_dictionary(col.type) and pa.types.is_null(col.type.value_type):
                    col = pa.chunked_array(
                        [pa.DictionaryArray.from_arrays(c.indices.cast(f.type.index_type), pa.array([], f.type.value_type))
                         for c in col.chunks], f.type)
                else:
                    col = col.cast(f.type)
            cols.append(col)
        if as_dict:
            return pa.Table.from_arrays(cols, names=self._schema.names).replace_schema_metadata(self._schema.metadata)
        return pa.Table.from_arrays(cols, schema=self._schema)

    def append(self, t) -> None:
        """Append a DataFrame or a pyarrow Table (one row group / CSV append)."""
        if self.fmt == "csv":
            self._frame(t).to_csv(self.path, index=False, mode="w" if self._schema is None else "a",
                                  header=self._schema is None)
            self._schema = True
        else:
            import pyarrow as pa

            if self._w is None:
                self._open(t)
            if len(t) or self.rows == 0:
                if isinstance(t, pd.DataFrame):
                    self._w.write_table(pa.Table.from_pandas(t, schema=self._schema, preserve_index=False))
                else:
                    self._w.write_table(self._conform(t))
        self.rows += len(t)

    def close(self) -> None:
        if self._w is not None:
            self._w.close()


def _dict_codes(col):
    """A dictionary column of a pyarrow Table -> (codes as numpy, -1 where NA; the dictionary as a list)."""
    import numpy as np

    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    ind = arr.indices
    c = np.frombuffer(ind.buffers()[1], dtype=ind.type.to_pandas_dtype())[ind.offset:ind.offset + len(ind)]
    if ind.null_count:
        c = np.where(ind.is_valid().to_numpy(zero_copy_only=False), c, -1)
    return c, arr.dictionary.to_pylist()


def _in(coded, names):
    """Boolean mask of the rows of `coded` (codes, dictionary: _dict_codes' pair) whose value is one of
    `names` (a lookup table over the codes; NA, code -1, is in none)."""
    import numpy as np

    c, cats = coded
    lut = np.zeros(len(cats) + 1, bool)
    for i, x in enumerate(cats):
        lut[i + 1] = x in names
    return lut[c.astype(np.intp) + 1]


def _code_counts(c, cats) -> list[tuple[str, int]]:
    import numpy as np

    if not len(cats):
        return []
    counts = np.bincount(c.astype(np.intp) + 1, minlength=len(cats) + 1)[1:len(cats) + 1]  # code -1: NA
    order = np.argsort(-counts, kind="stable")
    return [(str(cats[i]), int(counts[i])) for i in order]


def _table_counts(acc: dict, table) -> None:
    """The summary's packet counts of one step (a frames.packets_table), added to acc (additive over
    steps), from the codes of its dictionary columns (no frame: summary.packet_counts' counts of the
    packets frame, as tests/analysis/test_stream.py checks)."""
    import numpy as np

    from ..replay import codes as rcodes

    acc["packets"] = acc.get("packets", 0) + len(table)
    codes = {}
    for key, col in (("outcomes", "outcome"), ("ct_states", "ct_state"), ("invalid_reasons", "invalid_reason"),
                     ("ip_csum", "ip_csum"), ("l4_csum", "l4_csum")):
        codes[col] = c, cats = _dict_codes(table.column(col))
        _add_value_counts(acc, key, _code_counts(c, cats))
    oc, ocats = codes["outcome"]
    nr_name = rcodes.OUTCOME_NAMES[rcodes.Outcome.NOT_REPLAYED]
    if nr_name in ocats:
        rows = np.flatnonzero(oc == ocats.index(nr_name))
        if len(rows):
            rc, rcats = _dict_codes(table.column("reason"))
            _add_value_counts(acc, "not_replayed_reasons", _code_counts(rc[rows], rcats))
    acc["invalid_packets"] = acc.get("invalid_packets", 0) + int(np.count_nonzero(_in(codes["ct_state"], ("INVALID",))))
    pc, pcats = _dict_codes(table.column("path"))
    h = acc.setdefault("hooks", {})
    for hook in rcodes.HOOK_NAMES:
        h.setdefault(hook, 0)
    for p, n in _code_counts(pc, pcats):  # summary._hook_traversals, from the counts of each distinct path
        if n:
            for hook in p.split(","):
                if hook in rcodes.HOOK_NAMES:
                    h[hook] += n


def _table_escapes(acc: dict, table, rows_table=None) -> None:
    """The NAT-escape facts of one step (a frames.packets_table), added to acc: the interfaces SNATed
    packets left through (acc["snat_ifaces"]) and summary.escape_candidates (acc["escape_candidates"]:
    INVALID packets that left with an internal source, usually none). At the end, summary.escaped_packets
    keeps the candidates that left through an SNAT interface of the whole capture. rows_table: the table
    the candidates are taken from when `table` holds only the _COUNT_COLUMNS of every packet (the
    notable rows: it holds every INVALID packet)."""
    _snat_ifaces(acc, table)
    _escape_candidates(acc, table if rows_table is None else rows_table)


def _snat_ifaces(acc: dict, table) -> None:
    import numpy as np

    left = _in(_dict_codes(table.column("outcome")), _LEFT)
    ifs = acc.setdefault("snat_ifaces", set())
    if not left.any():
        return
    snat = left & _in(_dict_codes(table.column("nat")), ("SNAT", "both"))
    if snat.any():
        ic, icats = _dict_codes(table.column("out_iface"))
        ifs.update(str(icats[c]) for c in np.unique(ic[snat]) if c >= 0)


def _escape_candidates(acc: dict, table) -> None:
    import pyarrow as pa

    from .frames import PACKET_NULLABLE, table_to_frame
    from .summary import ESCAPED_COLUMNS, escape_candidates

    inv = _in(_dict_codes(table.column("outcome")), _LEFT) & _in(_dict_codes(table.column("ct_state")), ("INVALID",))
    if inv.any():
        sub = _addresses_as_text(table.select(ESCAPED_COLUMNS + ["out_src", "outcome", "ct_state"]).filter(pa.array(inv)))
        cand = escape_candidates(table_to_frame(sub, PACKET_NULLABLE))
        if len(cand):
            acc.setdefault("escape_candidates", []).append(cand)


def _addresses_as_text(table):
    """`table` with its address columns given as dictionary arrays (packets_table(address_dictionaries=True))
    decoded to text: as pandas categoricals, the few candidate rows kept per step (acc["escape_candidates"],
    until the end of the stream) would each hold the step's whole address dictionary as their categories
    (~20,000 texts per 262,144-packet step of the synthetic captures: ~7 MiB of RSS a step, 2,251-2,260
    against 1,690-1,697 MiB peak at 20M packets)."""
    import pyarrow as pa

    from .frames import ADDRESS_COLUMNS

    for i, f in enumerate(table.schema):
        if f.name in ADDRESS_COLUMNS and pa.types.is_dictionary(f.type):
            table = table.set_column(i, f.name, table.column(i).cast(f.type.value_type))
    return table


def _escaped(acc: dict) -> pd.DataFrame:
    """The packets that escaped NAT over the whole streamed capture (summary.nat_report's "escaped")."""
    from .summary import ESCAPED_COLUMNS, escaped_packets

    cands = acc.get("escape_candidates", [])
    if not cands:
        return pd.DataFrame({c: [] for c in ESCAPED_COLUMNS})
    cat = pd.concat(cands, ignore_index=True) if len(cands) > 1 else cands[0]
    return escaped_packets(cat, acc.get("snat_ifaces", set()))


# the most rows read_notable_packets returns (~100 bytes each in memory), so that a report of a capture
# that is mostly drops (a flood) stays bounded; past it the report's drop tables show the in-memory sample
NOTABLE_ROWS_LIMIT = 2_000_000
_NOTABLE_COLUMNS = ("index", "ts", "proto", "src", "dst", "sport", "dport", "icmp_type", "len", "tcp_flags",
                    "outcome", "verdict_hook", "rule_id", "ct_id", "ct_state", "invalid_reason", "tcp_seq",
                    "tcp_ack", "tcp_win")
_NOTABLE_OUTCOMES = ("dropped", "rejected", "queued")
_LEFT = ("forwarded", "emitted")  # the outcomes of packets that left the firewall


def read_notable_packets(path, limit: int | None = None) -> pd.DataFrame | None:
    """The dropped, rejected, queued and INVALID packets of a packets.parquet (the columns the drop,
    INVALID and per-hook analyses of summary.py use), read row group by row group; None when there are more
    than `limit` (NOTABLE_ROWS_LIMIT)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    limit = NOTABLE_ROWS_LIMIT if limit is None else int(limit)
    pf = pq.ParquetFile(path)
    cols = [c for c in _NOTABLE_COLUMNS if c in pf.schema_arrow.names]
    parts, n = [], 0
    for i in range(pf.num_row_groups):
        t = pf.read_row_group(i, columns=cols)
        m = _in(_dict_codes(t.column("outcome")), _NOTABLE_OUTCOMES) | _in(_dict_codes(t.column("ct_state")),
                                                                           ("INVALID",))
        if m.any():
            n += int(np.count_nonzero(m))
            if n > limit:
                return None
            parts.append(t.filter(pa.array(m)))
    if parts:
        t = pa.concat_tables(parts)
    else:
        t = pf.schema_arrow.empty_table().select(cols)
    return t.replace_schema_metadata(pf.schema_arrow.metadata).to_pandas()


def _timeline(blocks, bins: int) -> pd.DataFrame:
    """summary.timeline from blocks() -> iterator of (ts ns int64, accepted, dropped, invalid masks), called
    twice (the time span first, then the counts)."""
    import numpy as np

    t0 = t1 = None
    for ts, *_ in blocks():
        if len(ts):
            a, b = int(ts.min()), int(ts.max())
            t0, t1 = (a, b) if t0 is None else (min(t0, a), max(t1, b))
    if t0 is None:
        return pd.DataFrame({"accepted": [], "dropped": [], "invalid": []}, index=pd.DatetimeIndex([], tz="UTC"))
    step = max(max(t1 - t0, 1) // bins + 1, 1)
    nb = (t1 - t0) // step + 1
    present = np.zeros(nb, np.int64)
    acc = {k: np.zeros(nb, np.int64) for k in ("accepted", "dropped", "invalid")}
    for ts, *masks in blocks():
        k = (ts - t0) // step
        present += np.bincount(k, minlength=nb)
        for name, m in zip(("accepted", "dropped", "invalid"), masks):
            acc[name] += np.bincount(k[m], minlength=nb)
    keep = np.flatnonzero(present)
    idx = pd.DatetimeIndex(pd.to_datetime(t0 + keep * step, unit="ns", utc=True), name="t")
    return pd.DataFrame({k: v[keep] for k, v in acc.items()}, index=idx).astype("int64")


class TimelineLog:
    """Every packet's time and class (_packet_classes: accepted, dropped or rejected, INVALID; summary.timeline's
    three counts), appended step by step to two files in a temporary directory (9 bytes per packet, on
    disk, not in memory): a streamed run's timeline over the whole capture, whatever its packets table
    holds (every packet, the notable ones, CSV). The directory goes with the object (or close())."""

    BLOCK = 1 << 22

    def __init__(self):
        import tempfile

        self._dir = tempfile.TemporaryDirectory(prefix="nfreplay-timeline-")
        d = Path(self._dir.name)
        self._paths = (d / "ts.i64", d / "class.u8")
        self._files = [open(q, "wb") for q in self._paths]
        self.n = 0

    def add(self, ts_ns, outcome, ct_state, classes=None) -> None:
        """One step's packets (the engine's arrays: ts_ns, results.outcome, results.ct_state); classes: their
        _packet_classes when already known."""
        import numpy as np

        cls = _packet_classes(outcome, ct_state) if classes is None else classes
        np.ascontiguousarray(ts_ns, dtype=np.int64).tofile(self._files[0])
        cls.tofile(self._files[1])
        self.n += len(cls)

    def timeline(self, bins: int = 60) -> pd.DataFrame:
        import numpy as np

        for f in self._files:
            f.flush()
        if self.n == 0:
            return _timeline(lambda: iter(()), bins)
        ts = np.memmap(self._paths[0], dtype=np.int64, mode="r", shape=(self.n,))
        cls = np.memmap(self._paths[1], dtype=np.uint8, mode="r", shape=(self.n,))

        def blocks():
            for i in range(0, self.n, self.BLOCK):
                c = np.asarray(cls[i:i + self.BLOCK])
                yield (np.asarray(ts[i:i + self.BLOCK]), (c & _ACCEPTED_BIT) != 0, (c & _BLOCKED_BIT) != 0,
                       (c & _INVALID_BIT) != 0)

        return _timeline(blocks, bins)

    def close(self) -> None:
        for f in self._files:
            f.close()
        self._dir.cleanup()


def _add_value_counts(acc: dict, key: str, vc) -> None:
    """Adds a value_counts() Series or (value, count) pairs to acc[key] (a dict in order of first count,
    zeros left out)."""
    d = acc.setdefault(key, {})
    for k, v in (vc.items() if hasattr(vc, "items") else vc):
        if v:
            d[str(k)] = d.get(str(k), 0) + int(v)


def _decode_ahead(it, depth: int = 1):
    """Run iterator `it` (iter_capture: framing + decode kernels, nogil) in a background thread, `depth`
    chunks ahead of the consumer, so decoding chunk k+1 overlaps the replay of chunk k."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=max(1, depth))
    done = object()
    stop = threading.Event()

    def run():
        try:
            for x in it:
                if stop.is_set():
                    return
                q.put(x)
            q.put(done)
        except BaseException as e:  # re-raised in the consumer
            q.put(e)

    t = threading.Thread(target=run, name="nfreplay-decode", daemon=True)
    t.start()
    try:
        while True:
            x = q.get()
            if x is done:
                return
            if isinstance(x, BaseException):
                raise x
            yield x
    finally:
        stop.set()
        while t.is_alive():
            try:
                q.get_nowait()
            except queue.Empty:
                t.join(0.05)


class _WriteBehind:
    """Runs fn(*item) for each submitted item, in order, in one background thread ("nfreplay-write"), so
    that writing the tables of replay step k overlaps the replay of step k+1 (the replay kernels release the
    GIL, and so do the numpy / pyarrow bulk operations that build the tables and the Parquet encoders).

    Bounded: submit() blocks while `depth` items are waiting or being written, so at most `depth` steps
    are held for writing besides the one being replayed. An exception raised by fn is re-raised in the
    caller by the next submit() or by close(); the items after it are dropped."""

    def __init__(self, fn, depth: int = 1):
        import queue
        import threading

        self._fn = fn
        self._slots = threading.Semaphore(max(1, int(depth)))
        self._q: queue.SimpleQueue = queue.SimpleQueue()
        self._err: BaseException | None = None
        self._raised = False
        self._skip = False
        self._t = threading.Thread(target=self._run, name="nfreplay-write", daemon=True)
        self._t.start()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                return
            try:
                if self._err is None and not self._skip:
                    self._fn(*item)
            except BaseException as e:  # re-raised in the caller
                self._err = e
            finally:
                del item
                self._slots.release()

    def _check(self) -> None:
        if self._err is not None and not self._raised:
            self._raised = True
            raise self._err

    def submit(self, *item) -> None:
        self._check()
        self._slots.acquire()
        try:
            self._check()
        except BaseException:
            self._slots.release()
            raise
        self._q.put(item)

    def close(self, *, discard: bool = False) -> None:
        """Wait until every submitted item is written (discard: drop those not started) and stop the
        thread; re-raise fn's exception unless discarding."""
        if discard:
            self._skip = True
        if self._t.is_alive():
            self._q.put(None)
            self._t.join()
        if not discard:
            self._check()


class _Background:
    """fn(*args) in a daemon thread; result() joins and returns its value or raises its exception.
    fn gets a threading.Event as keyword `stop`, set by cancel()."""

    def __init__(self, fn, *args, name: str = "nfreplay-bg"):
        import threading

        self._stop = threading.Event()
        self._out: list = []

        def run():
            try:
                self._out.append((True, fn(*args, stop=self._stop)))
            except BaseException as e:  # re-raised by result()
                self._out.append((False, e))

        self._t = threading.Thread(target=run, name=name, daemon=True)
        self._t.start()

    def result(self):
        self._t.join()
        ok, v = self._out[0]
        if not ok:
            raise v
        return v

    def cancel(self) -> None:
        self._stop.set()
        self._t.join()


STREAM_STEP = 262_144  # packets per replay step in stream_tables (= one packets/events row group each)


def _steps(cap, step: int):
    """A capture chunk as consecutive captures of at most `step` packets (views on the chunk's arrays)."""
    import dataclasses

    from ..replay import schema

    n = len(cap.packets.ts_ns)
    if n <= step:
        yield cap
        return
    for a in range(0, n, step):
        sl = slice(a, min(n, a + step))
        yield dataclasses.replace(cap, packets=schema.take(cap.packets, sl), rec_off=cap.rec_off[sl])


# the capture columns the writer thread's work reads (frames.packets_table, zeek.HistoryBuilder.update,
# TimelineLog.add): a queued step holds views of these columns of its capture chunk, not the whole chunk
STEP_PACKET_COLUMNS = ("ts_ns", "family", "proto", "src_hi", "src_lo", "dst_hi", "dst_lo", "sport", "dport",
                       "icmp_type", "icmp_code", "icmp_id", "ip_len", "tcp_flags", "payload_len", "tcp_seq",
                       "tcp_ack", "tcp_win", "ip_csum", "l4_csum")
StepPackets = namedtuple("StepPackets", STEP_PACKET_COLUMNS)


def _step_packets(packets) -> StepPackets:
    """A step's STEP_PACKET_COLUMNS (views on its capture chunk's columns, which nothing writes after
    decoding: ingest allocates every chunk's arrays afresh)."""
    return StepPackets(*[getattr(packets, c) for c in STEP_PACKET_COLUMNS])


def stream_tables(chunks, replayer, out_dir, fmt: str = "parquet", *, sample: int = STREAM_SAMPLE,
                  progress=None, extra: dict | None = None, wall_t0: float | None = None,
                  step: int = STREAM_STEP, write_depth: int = 1, packet_rows: str = "all"):
    """Feed capture chunks to a driver.Replayer and write packets/events incrementally, rules/flows/
    summary.json at the end. Returns (Result, paths): the Result holds the first `sample` packets only
    (rules, flows, events of the sample chunks are complete); its summary's packet counts are those of the
    whole capture (summary["streamed"] = True).

    Each chunk is replayed in steps of at most `step` packets (the results equal one feed of the chunk).
    A background thread takes each step's results and views of the capture columns its work reads
    (STEP_PACKET_COLUMNS), in order, while the next step replays (`write_depth` steps at most wait for
    it): it builds the step's packets and events tables (frames.packets_table / events_table, pyarrow),
    adds the step to the flows' Zeek histories, the timeline and the summary counts, and writes the
    tables as one Parquet row group / CSV append. At the end, rules.parquet and flows.parquet are written
    by a background thread while the summary is computed.

    packet_rows: "all" (the contract: one packets row per captured packet) or "notable" (only the rows
    notable_positions selects; the summary, flows, rules, events and the report's analyses still cover
    every packet: the counts come from a table of the _COUNT_COLUMNS of every packet)."""
    import time

    import numpy as np

    from ..replay.result import PacketResults
    from .api import Result, _capture_digests
    from .frames import ADDRESS_COLUMNS, EVENT_NULLABLE, PACKET_NULLABLE, events_table, packets_table
    from .zeek import HistoryBuilder

    if fmt not in ("parquet", "csv"):
        from ..errors import NfreplayError

        raise NfreplayError(f"unknown table format {fmt!r} (use parquet or csv)")
    _check_packet_rows(packet_rows)
    notable_only = packet_rows == "notable"
    t0 = wall_t0 if wall_t0 is not None else time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / f"{name}.{fmt}" for name in TABLES}
    pw = _TableAppender(paths["packets"], fmt, PACKET_NULLABLE, as_text=ADDRESS_COLUMNS)
    # the address columns as dictionary arrays over the step's distinct addresses (no per-row take of their
    # texts; ~20 % less Parquet encoding CPU), written as dictionary-encoded text columns; as text for CSV
    # (a frame of categoricals would convert each step's whole dictionary). 20M-packet run: peak RSS
    # 1,690-1,697 MiB, as text 1,693-1,696 (2,251-2,260 while the escape candidates kept each step's
    # dictionary: _addresses_as_text; measured 2026-11-27)
    addr_dicts = fmt == "parquet"
    ew = _TableAppender(paths["events"], fmt, EVENT_NULLABLE)
    acc: dict = {}  # the summary's packet counts, added up per step
    keep_pk, keep_res, keep_ev = [], [], []
    kept = 0
    hist = HistoryBuilder()  # the flows' Zeek histories, from every packet (not only the kept sample)
    timeline = TimelineLog()  # the report's timeline, from every packet (whatever packets.parquet holds)
    files = []

    # seconds, logged at the end; "tables" and "write" are the writer thread's (its CPU time: "writer_cpu")
    tm = dict.fromkeys(("replay", "step", "tables", "write", "writer_cpu", "wait", "finish", "tail"), 0.0)

    # packets escape NAT only where SNAT happened (summary.nat_report): without a NAT core (no NAT rule of
    # the packets' family) none is SNATed, so the per-step search for candidates is skipped (~7 ms per
    # 262,144-packet step of the writer thread's CPU)
    nat_core = replayer.nat4 or replayer.nat6

    def write_step(co, offset) -> None:
        # in the writer thread, beside the next step's replay: the step's tables, the flows' Zeek histories
        # and the timeline (only this thread touches hist, timeline and acc until writer.close()), the
        # summary counts (bincounts of the dictionary codes) and the Parquet / CSV encoding (GIL released).
        # co holds the step's results and the capture columns these read (_step_packets), not the whole
        # capture chunk (the whole chunk kept far more of the chunks alive: 2,146 against ~1,640 MiB peak
        # RSS at 20M packets; measured 2026-11-27, when the tables were first built here).
        tw, tc = time.perf_counter(), time.thread_time()
        cls = _packet_classes(co.results.outcome, co.results.ct_state)  # the notable rows' and the timeline's
        if notable_only:
            pt = packets_table(co, offset, rows=notable_positions(co.results, cls), address_dictionaries=addr_dicts)
            ct = packets_table(co, columns=_COUNT_COLUMNS)
        else:
            pt, ct = packets_table(co, offset, address_dictionaries=addr_dicts), None
        et = events_table(co)
        hist.update(co.packets, co.results)
        timeline.add(co.packets.ts_ns, co.results.outcome, co.results.ct_state, cls)
        tm["tables"] += time.perf_counter() - tw
        _table_counts(acc, pt if ct is None else ct)
        if nat_core:
            _table_escapes(acc, pt if ct is None else ct, pt)
        acc["written"] = acc.get("written", 0) + len(pt)
        pw.append(pt)
        ew.append(et)
        tm["write"] += time.perf_counter() - tw
        tm["writer_cpu"] += time.thread_time() - tc

    writer = _WriteBehind(write_step, write_depth)
    digests = None  # sha256 of the capture files, hashed in the background while the replay runs
    try:
        for cap in chunks:
            files = cap.files
            if digests is None:
                digests = _Background(_capture_digests, type("C", (), {"files": files})(), name="nfreplay-digest")
            for sub in _steps(cap, max(1, int(step))):
                tr = time.perf_counter()
                part = replayer.feed(sub)
                tf = time.perf_counter()
                co = replayer.chunk_output(part._replace(packets=_step_packets(part.packets)))
                tt = time.perf_counter()
                writer.submit(co, part.offset)
                del co
                tm["step"] += tt - tf
                tm["replay"] += tf - tr
                tm["wait"] += time.perf_counter() - tt
                if kept < sample:
                    k = min(sample - kept, len(part.packets.ts_ns))
                    keep_pk.append(type(part.packets)(*[c[:k].copy() for c in part.packets]))
                    keep_res.append(PacketResults(*[c[:k].copy() for c in part.results]))
                    sel = np.asarray(part.events["packet_index"]) < part.offset + k
                    keep_ev.append({kk: v[sel] for kk, v in part.events.items()})
                    kept += k
                del part, sub
                if progress is not None:
                    progress(replayer.n)
            del cap
        tw = time.perf_counter()
        writer.close()
        tf = time.perf_counter()
        tm["wait"] += tf - tw
        ro = replayer.finish(
            packets=type(keep_pk[0])(*[np.concatenate(c) for c in zip(*keep_pk)]) if keep_pk else None,
            results=PacketResults(*[np.concatenate(c) for c in zip(*keep_res)]) if keep_res else None)
        ew.append(events_table(ro))  # the finish's events (entries expired at the end of the capture)
        fin_ev = ro.events
        ro = ro._replace(events={k: np.concatenate([*(e[k] for e in keep_ev), fin_ev[k]]) for k in fin_ev})
        tm["finish"] = time.perf_counter() - tf
    except BaseException:
        if digests is not None:
            digests.cancel()
        writer.close(discard=True)  # the writer thread adds to the timeline: stop it first
        timeline.close()
        raise
    finally:
        writer.close(discard=True)  # no-op after close(); on an error: stop the thread before closing files
        pw.close()
        ew.close()
    wall = time.perf_counter() - t0
    res = Result(ro, replayer.ruleset, wall_time_s=wall, inputs=extra or {},
                 digests=digests.result() if digests is not None else {})
    res.__dict__["histories"] = hist.frame()  # cached_property: the whole capture's (flows.parquet's)
    hist = None  # drop its per-flow state and letter log (write_step is done)
    res.escaped = _escaped(acc)
    res.timeline_log = timeline
    res.packet_rows = packet_rows
    if fmt == "parquet":
        res.packets_path = paths["packets"]  # the report's drop / INVALID / timeline analyses read it back

    def write_rules_flows(tabs, stop) -> None:  # Arrow conversion + encoding, mostly GIL-free: beside the summary
        for name, df in tabs.items():
            (_write_parquet if fmt == "parquet" else _write_csv)(df, paths[name], ROW_GROUP)

    tail_writer = _Background(write_rules_flows, {name: getattr(res, name) for name in ("rules", "flows")},
                              name="nfreplay-write")
    n = acc.get("packets", 0)
    counts = {"packets": n, "outcomes": acc.get("outcomes", {}), "ct_states": acc.get("ct_states", {}),
              "hooks": acc.get("hooks", {}), "not_replayed_reasons": acc.get("not_replayed_reasons", {}),
              "invalid": {"packets": acc.get("invalid_packets", 0), "reasons": acc.get("invalid_reasons", {})},
              "checksums": {"ip": acc.get("ip_csum", {}), "l4": acc.get("l4_csum", {})}}
    try:
        s = res._summarize(counts)  # the whole capture's counts; the sample's packets frame is not needed
    finally:
        tail_writer.result()
    s.update({"streamed": True, "packets_in_memory_sample": kept})
    if notable_only:
        s["packets_table"] = {"rows": "notable", "written": acc.get("written", 0)}
    res.__dict__["summary"] = s  # cached_property: the whole-capture counts
    sp = out / "summary.json"
    sp.write_text(json.dumps(s, indent=2, sort_keys=False, default=str) + "\n")
    paths["summary"] = sp
    tm["tail"] = time.perf_counter() - t0 - wall
    log.info("streamed %d packets to %s", n, out)
    log.debug("stream timings (s): replay %(replay).2f, step output %(step).2f, waiting for the writer "
              "%(wait).2f; writer thread: tables + histories + timeline %(tables).2f, all %(write).2f, CPU "
              "%(writer_cpu).2f; finish %(finish).2f, digests + rules/flows/summary %(tail).2f", tm)
    return res, paths

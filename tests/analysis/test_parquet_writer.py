"""analysis.parquet.FastParquetWriter against pq.ParquetWriter: the same tables written by both read back
equal with pyarrow (Arrow schema and its metadata, values, dictionaries, row groups), as pandas frames,
with the same statistics and Parquet schema (types, logical / converted types), for real packets / events
tables (the samples; the benchmark capture when present) and randomized tables of every supported type,
null pattern, value distribution (which pick each encoding), page size and row group layout."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import nfreplay
from nfreplay.analysis import export, frames
from nfreplay.analysis.parquet import FastParquetWriter, supports

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "samples"
BENCH = ROOT / "bench" / "data" / "synthetic-1000000.pcap"


# ------------------------------------------------------------------ a Thrift compact protocol reader
class _Thrift:
    """Decodes compact-protocol structs into {field id: value} (lists as lists, binary as bytes)."""

    def __init__(self, b: bytes, p: int = 0):
        self.b, self.p = b, p

    def _byte(self) -> int:
        v = self.b[self.p]
        self.p += 1
        return v

    def _varint(self) -> int:
        r = sh = 0
        while True:
            c = self._byte()
            r |= (c & 0x7F) << sh
            sh += 7
            if not c & 0x80:
                return r

    def _value(self, t):
        if t in (1, 2):
            return t == 1
        if t == 3:
            v = self._byte()
            return v - 256 if v > 127 else v
        if t in (4, 5, 6):
            v = self._varint()
            return (v >> 1) ^ -(v & 1)
        if t == 8:
            n = self._varint()
            self.p += n
            return bytes(self.b[self.p - n:self.p])
        if t == 9:
            h = self._byte()
            n, et = h >> 4, h & 15
            if n == 15:
                n = self._varint()
            return [self._value(et) for _ in range(n)]
        if t == 12:
            return self.struct()
        raise ValueError(f"thrift type {t}")

    def struct(self) -> dict:
        d, last = {}, 0
        while True:
            h = self._byte()
            if h == 0:
                return d
            fid = last + (h >> 4) if h >> 4 else self._value(4)
            d[fid] = self._value(h & 15)
            last = fid


def _footer(path) -> dict:
    b = Path(path).read_bytes()
    assert b[:4] == b"PAR1" and b[-4:] == b"PAR1"
    n = struct.unpack("<i", b[-8:-4])[0]
    return _Thrift(b, len(b) - 8 - n).struct()


def _pages(path, meta: dict) -> list[tuple[dict, int]]:
    """The page headers of one column chunk (ColumnMetaData as decoded), with their encoded lengths."""
    b = Path(path).read_bytes()
    off = meta.get(11) or meta[9]
    end, out = off + meta[7], []
    while off < end:
        r = _Thrift(b, off)
        h = r.struct()
        out.append((h, r.p - off))
        off = r.p + h[3]
    assert off == end
    return out


# ------------------------------------------------------------------ writing both, comparing
def _write(cls, path, schema, tables, **opts):
    w = cls(path, schema, **opts)
    for t in tables:
        w.write_table(t)
    w.close()
    return path


def _stat_columns(schema):
    return [f.name for f in schema if pa.types.is_integer(f.type) or pa.types.is_timestamp(f.type)]


def _both(tmp_path, schema, tables, ours_tables=None, **opts):
    """Writes tables with pyarrow and with FastParquetWriter (ours_tables: what FastParquetWriter gets,
    default the same), checks that the files read back the same; returns (pyarrow's path, ours)."""
    opts.setdefault("write_statistics", _stat_columns(schema))
    ref = _write(pq.ParquetWriter, tmp_path / "ref.parquet", schema, tables,
                 **{k: v for k, v in opts.items() if k != "page_size"})
    ours = _write(FastParquetWriter, tmp_path / "ours.parquet", schema,
                  tables if ours_tables is None else ours_tables, **opts)
    _assert_same_files(ref, ours)
    return ref, ours


def _stats(s):
    if s is None:
        return None
    return (s.has_min_max, s.min if s.has_min_max else None, s.max if s.has_min_max else None, s.null_count)


def _assert_same_files(ref, ours):
    a, b = pq.read_table(ref), pq.read_table(ours)
    assert a.schema.equals(b.schema, check_metadata=True)
    assert a.equals(b, check_metadata=True)
    for name in a.column_names:  # dictionaries (categories) chunk by chunk, not only the values
        ca, cb = a.column(name), b.column(name)
        if pa.types.is_dictionary(ca.type):
            assert [c.dictionary.to_pylist() for c in ca.chunks if len(c)] == \
                   [c.dictionary.to_pylist() for c in cb.chunks if len(c)], name
    pd.testing.assert_frame_equal(pd.read_parquet(ref), pd.read_parquet(ours))
    fa, fb = pq.ParquetFile(ref), pq.ParquetFile(ours)
    ma, mb = fa.metadata, fb.metadata
    assert ma.metadata == mb.metadata  # key_value_metadata: the schema's metadata and ARROW:schema
    assert (ma.num_rows, ma.num_row_groups, ma.num_columns) == (mb.num_rows, mb.num_row_groups, mb.num_columns)
    assert fa.schema.equals(fb.schema)
    for j in range(ma.num_columns):
        ca, cb = fa.schema.column(j), fb.schema.column(j)
        assert (ca.physical_type, str(ca.logical_type), ca.converted_type, ca.max_definition_level) == \
               (cb.physical_type, str(cb.logical_type), cb.converted_type, cb.max_definition_level)
    for i in range(ma.num_row_groups):
        ga, gb = ma.row_group(i), mb.row_group(i)
        assert ga.num_rows == gb.num_rows
        assert fa.read_row_group(i).equals(fb.read_row_group(i))
        for j in range(ga.num_columns):
            ca, cb = ga.column(j), gb.column(j)
            assert ca.path_in_schema == cb.path_in_schema and ca.num_values == cb.num_values
            if ga.num_rows:
                assert _stats(ca.statistics) == _stats(cb.statistics), (i, ca.path_in_schema)
            if cb.has_dictionary_page:
                assert cb.dictionary_page_offset < cb.data_page_offset or not ga.num_rows
    # the Thrift structures pyarrow and readers rely on, field by field
    xa, xb = _footer(ref), _footer(ours)
    assert xa[1] == xb[1] and xa[2] == xb[2] and xa[3] == xb[3] and xa[5] == xb[5] and xa[7] == xb[7]
    pos = 4
    for ra, rb in zip(xa[4], xb[4]):
        assert ra[3] == rb[3] and rb[5] == pos
        size = 0
        for cca, ccb in zip(ra[1], rb[1]):
            ma_, mb_ = cca[3], ccb[3]
            for k in (1, 3, 5, 12):  # type, path, num_values, statistics (byte for byte)
                assert ma_.get(k) == mb_.get(k), (k, ma_[3])
            if 16 in ma_:
                assert mb_[16].get(3) == ma_[16].get(3)  # definition level histogram
                if 1 in mb_[16]:
                    assert mb_[16][1] == ma_[16][1]  # unencoded byte array bytes
            start = mb_.get(11) or mb_[9]
            assert start == pos + size or not mb_[5]
            if mb_[5]:
                pages = _pages(ours, mb_)
                assert sum(h[5][1] for h, _ in pages if h[1] == 0) == mb_[5]  # data pages' num_values
                assert mb_[6] == sum(n + h[2] for h, n in pages) and mb_[7] == sum(n + h[3] for h, n in pages)
                for es in mb_[13]:
                    assert es[3] == sum(1 for h, _ in pages if h[1] == es[1])
            size += mb_[7]
        assert rb[6] == size
        pos += size


def _encodings(path, name) -> set:
    md = pq.ParquetFile(path).metadata
    j = md.schema.names.index(name)
    return {e for i in range(md.num_row_groups) for e in md.row_group(i).column(j).encodings}


# ------------------------------------------------------------------ real tables
_SIM: dict = {}


def _sample(name):
    if name not in _SIM:
        d = SAMPLES / name
        _SIM[name] = nfreplay.simulate(d / "capture.pcap", d / "rules.ipt", host=d / "host.toml").output
    return _SIM[name]


def _file_schema(t, nullable, as_text=()):
    import pyarrow as pa_

    ts = t.slice(0, 0)
    for name in as_text:
        i = ts.schema.get_field_index(name)
        if i >= 0:
            ts = ts.set_column(i, name, pa_.array([], pa_.large_string()))
    sch = frames._pandas_schema(ts, nullable)
    for name in export._OPEN_CATEGORIES:
        i = sch.get_field_index(name)
        if i >= 0 and pa.types.is_dictionary(sch.field(name).type):
            ft = sch.field(name).type
            vt = pa.large_string() if pa.types.is_null(ft.value_type) else ft.value_type
            sch = sch.set(i, sch.field(name).with_type(pa.dictionary(pa.int32(), vt, ft.ordered)))
    return sch


def _conform(t, sch):
    a = export._TableAppender(Path("/nonexistent"), "parquet")
    a._schema = sch
    return a._conform(t)


@pytest.mark.parametrize("name", ["forward_blocked_service", "port_forward_nat", "invalid_out_of_window"])
def test_sample_packets_and_events_tables(tmp_path, name):
    out = _sample(name)
    for k, (t, nullable) in enumerate(((frames.packets_table(out), frames.PACKET_NULLABLE),
                                       (frames.events_table(out), frames.EVENT_NULLABLE))):
        sch = _file_schema(t, nullable)
        t = _conform(t, sch)
        d = tmp_path / str(k)
        d.mkdir()
        # one table; the table in row groups of 7 rows and an empty one; small pages
        parts = [t.slice(a, 7) for a in range(0, len(t), 7)] + [t.slice(0, 0)]
        _both(d, sch, [t], **export._stream_parquet_options(sch))
        _both(d, sch, parts, page_size=64, **export._stream_parquet_options(sch))


@pytest.mark.parametrize("name", ["forward_blocked_service", "port_forward_nat"])
def test_sample_packets_table_with_address_dictionaries(tmp_path, name):
    """packets_table(address_dictionaries=True): the address columns as dictionary arrays over one shared
    dictionary are written as the file's text columns, and read back as the text table pyarrow writes."""
    out = _sample(name)
    t = frames.packets_table(out, address_dictionaries=True)
    sch = _file_schema(t, frames.PACKET_NULLABLE, frames.ADDRESS_COLUMNS)
    ours = t
    for f in sch:
        if f.type != t.schema.field(f.name).type and not pa.types.is_string(f.type) \
                and not pa.types.is_large_string(f.type):
            ours = ours.set_column(ours.schema.get_field_index(f.name), f.name, t.column(f.name).cast(f.type))
    ours = ours.replace_schema_metadata(sch.metadata)
    _both(tmp_path, sch, [_conform(t, sch)], [ours], **export._stream_parquet_options(sch))


@pytest.mark.jit_only
@pytest.mark.slow
@pytest.mark.skipif(not BENCH.exists(), reason="bench capture not generated")
def test_bench_capture_packets_and_events_tables(tmp_path):
    """Two 65,536-packet steps of the benchmark capture (its ruleset: NAT, REJECT, INVALID)."""
    import importlib.util

    from nfreplay.replay.driver import Replayer
    from nfreplay.replay.host import load_host
    from nfreplay.replay.ingest import iter_capture
    from nfreplay.replay.rules import load_ruleset

    spec = importlib.util.spec_from_file_location("_bench_engine", ROOT / "bench" / "bench_engine.py")
    be = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(be)
    rp = Replayer(load_ruleset(be.ruleset_text(), fmt="iptables"), load_host(dict(be.HOST)),
                  assume_good_checksums=True)
    pts, dts, ets = [], [], []
    for cap, _ in zip(iter_capture([str(BENCH)], chunk_packets=65536), range(2)):
        part = rp.feed(cap)
        co = rp.chunk_output(part)
        pts.append(frames.packets_table(co, part.offset))
        dts.append(frames.packets_table(co, part.offset, address_dictionaries=True))
        ets.append(frames.events_table(co))
    for k, (tabs, nullable) in enumerate(((pts, frames.PACKET_NULLABLE), (ets, frames.EVENT_NULLABLE))):
        sch = _file_schema(tabs[0], nullable)
        d = tmp_path / str(k)
        d.mkdir()
        ref, ours = _both(d, sch, [_conform(t, sch) for t in tabs], **export._stream_parquet_options(sch))
        if k == 0:
            assert "DELTA_BINARY_PACKED" in _encodings(ours, "ts") and "RLE_DICTIONARY" in _encodings(ours, "sport")
    sch = _file_schema(dts[0], frames.PACKET_NULLABLE, frames.ADDRESS_COLUMNS)
    d = tmp_path / "dict"
    d.mkdir()
    conformed = [_conform(t, sch) for t in dts]
    ours_in = []
    for t, c in zip(dts, conformed):
        for name in frames.ADDRESS_COLUMNS:
            c = c.set_column(c.schema.get_field_index(name), name, t.column(name))
        ours_in.append(c)
    _both(d, sch, conformed, ours_in, **export._stream_parquet_options(sch))


# ------------------------------------------------------------------ randomized tables
RNG_SEEDS = range(3)
NULLS = ("none", "all", "random", "runs", "sparse")


def _valid(rng, n, pattern):
    if pattern == "none":
        return np.ones(n, bool)
    if pattern == "all":
        return np.zeros(n, bool)
    if pattern == "random":
        return rng.random(n) < 0.5
    if pattern == "sparse":
        return rng.random(n) < 0.97
    v = np.ones(n, bool)  # runs of nulls and of values, of 1..100 rows
    i = 0
    while i < n:
        k = int(rng.integers(1, 100))
        v[i:i + k] = bool(rng.integers(0, 2))
        i += k
    return v


def _ints(rng, n, dtype, dist):
    info = np.iinfo(dtype)
    if dist == "wide":
        return rng.integers(info.min, info.max, n, dtype=dtype, endpoint=True)
    if dist == "small":
        k = min(300, int(info.max) // 4)
        lo = rng.integers(info.min, int(info.max) - k, dtype=dtype)
        return (np.full(n, lo, dtype) + rng.integers(0, k, n).astype(dtype)).astype(dtype)
    if dist == "const":
        return np.full(n, rng.integers(info.min, info.max, dtype=dtype, endpoint=True), dtype)
    if dist == "sorted":
        lo = int(info.min) // 2 if info.min < 0 else 0
        return np.sort(rng.integers(lo, lo + 10 ** min(15, int(np.log10(float(info.max)))), n)).astype(dtype)
    if dist == "extremes":
        return rng.choice(np.array([info.min, info.max, 0, 1, info.max - 1], dtype=dtype), n)
    raise ValueError(dist)


def _masked(values: np.ndarray, valid: np.ndarray, typ) -> pa.Array:
    """An Arrow array of values with nulls where not valid (the null slots keep their garbage values,
    as frames._a_nullable's)."""
    buf = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
    return pa.Array.from_buffers(typ, len(values), [buf, pa.py_buffer(np.ascontiguousarray(values))])


INT_TYPES = [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint16(), pa.uint32(), pa.uint64()]
DISTS = ("wide", "small", "const", "sorted", "extremes")


def _random_strings(rng, n, kind):
    if kind == "few":
        pool = ["", "a", "tcp", "10.0.0.1", "192.168.100.200", "fe80::1:2:3:4"]
    elif kind == "many":  # > 256 distinct: an uncompressed dictionary
        pool = [f"10.{i // 256}.{i % 256}.{i % 7}" for i in range(600)]
    elif kind == "unique":  # mostly distinct: PLAIN
        return [f"{x:x}-{'é' * int(x % 3)}" for x in rng.integers(0, 2 ** 62, n)]
    elif kind == "long":  # over 16 bytes: the hash's middle-bytes comparison
        pool = ["x" * 40 + str(i) for i in range(20)] + ["x" * 40 + "y" + str(i) for i in range(20)]
    else:  # non-ASCII, emoji, NUL
        pool = ["ü", "日本語テキスト", "a\x00b", "😀" * 5, "Straße-Ärger-Öl" * 3, "  "]
    return [pool[i] for i in rng.integers(0, len(pool), n)]


def _random_table(rng, n, nulls, *, nullable=True):
    cols, fields = [], []
    for typ in INT_TYPES:
        for dist in DISTS:
            v = _valid(rng, n, nulls)
            cols.append(_masked(_ints(rng, n, typ.to_pandas_dtype(), dist), v, typ))
            fields.append(pa.field(f"{typ}_{dist}", typ, nullable))
    for tz in ("UTC", None):
        ns = np.cumsum(rng.integers(0, 10 ** 6, n)) + 1_700_000_000 * 10 ** 9
        typ = pa.timestamp("ns", tz=tz)
        cols.append(_masked(ns.astype(np.int64), _valid(rng, n, nulls), typ))
        fields.append(pa.field(f"ts_{tz}", typ, nullable))
    for st in (pa.string(), pa.large_string()):
        for kind in ("few", "many", "unique", "long", "unicode"):
            vals = _random_strings(rng, n, kind)
            valid = _valid(rng, n, nulls)
            cols.append(pa.array([x if ok else None for x, ok in zip(vals, valid)], st))
            fields.append(pa.field(f"{st}_{kind}", st, nullable))
    for it in (pa.int8(), pa.int16(), pa.int32()):
        for vt in (pa.string(), pa.large_string()):
            for k in (0, 1, 3, 300 if it != pa.int8() else 100):
                if k == 0 and not nullable:
                    continue
                cats = pa.array([f"cat-{i}-{'ü' * (i % 3)}" for i in range(k)], vt)
                valid = _valid(rng, n, nulls) if k else np.zeros(n, bool)
                codes = rng.integers(0, max(k, 1), n).astype(it.to_pandas_dtype())
                codes = np.where(valid, codes, -1).astype(codes.dtype)
                buf = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
                ind = pa.Array.from_buffers(it, n, [buf, pa.py_buffer(codes)])
                cols.append(pa.DictionaryArray.from_arrays(ind, cats))
                fields.append(pa.field(f"dict_{it}_{vt}_{k}", pa.dictionary(it, vt), nullable))
    return pa.Table.from_arrays(cols, schema=pa.schema(fields, metadata={"app": "nfreplay test"}))


@pytest.mark.parametrize("seed", RNG_SEEDS)
@pytest.mark.parametrize("nulls", NULLS)
def test_random_tables(tmp_path, seed, nulls):
    """Every supported type, value distribution and null pattern, over several row groups of odd sizes
    (0, 1, 7, 8, 9, 333 rows) and in small pages."""
    rng = np.random.default_rng(seed)
    tables = [_random_table(rng, k, nulls) for k in (333, 0, 1, 7, 8, 9)]
    sch = tables[0].schema
    assert supports(sch, write_statistics=_stat_columns(sch))
    d1, d2 = tmp_path / "a", tmp_path / "b"
    d1.mkdir()
    d2.mkdir()
    _both(d1, sch, tables)
    _, ours = _both(d2, sch, tables, page_size=100)
    assert len(_pages(ours, _footer(ours)[4][0][1][0][3])) > 1  # several pages per chunk


def test_random_table_encodings_and_options(tmp_path):
    """The encodings the data picks (so that each is covered), forced encodings, no compression, no
    statistics, non-nullable fields."""
    rng = np.random.default_rng(7)
    t = _random_table(rng, 5000, "sparse")
    sch = t.schema
    (tmp_path / "a").mkdir()
    _, ours = _both(tmp_path / "a", sch, [t])
    assert "DELTA_BINARY_PACKED" in _encodings(ours, "int64_sorted")  # non-decreasing (valid values)
    assert "DELTA_BINARY_PACKED" in _encodings(ours, "ts_UTC")
    assert "RLE_DICTIONARY" in _encodings(ours, "uint16_small")  # a small range
    assert "RLE_DICTIONARY" in _encodings(ours, "int32_const")
    assert _encodings(ours, "int32_wide") == {"RLE", "PLAIN"}
    assert "RLE_DICTIONARY" in _encodings(ours, "large_string_many")
    assert _encodings(ours, "string_unique") == {"RLE", "PLAIN"}
    codecs = {c.path_in_schema: c.compression for c in (pq.ParquetFile(ours).metadata.row_group(0).column(j)
                                                         for j in range(len(sch)))}
    assert codecs["large_string_many"] == "UNCOMPRESSED" and codecs["uint8_small"] == "SNAPPY"
    big = pa.table({"int64_wide": rng.integers(-2 ** 63, 2 ** 63 - 1, 12000), "sorted": np.arange(12000) * 7,
                    "unique": pa.array([f"u{i}" for i in range(12000)], pa.large_string())})
    (tmp_path / "big").mkdir()
    _, ours = _both(tmp_path / "big", big.schema, [big])
    codecs = [pq.ParquetFile(ours).metadata.row_group(0).column(j).compression for j in range(2)]
    assert codecs == ["UNCOMPRESSED", "SNAPPY"]  # a random sample hardly compresses
    # forced encodings: DELTA on wide int32 / int64 (deltas modulo 2**64) and PLAIN
    enc = {"int64_wide": "DELTA_BINARY_PACKED", "int64_extremes": "DELTA_BINARY_PACKED",
           "uint64_wide": "DELTA_BINARY_PACKED", "int32_wide": "DELTA_BINARY_PACKED", "uint8_small": "PLAIN"}
    (tmp_path / "b").mkdir()
    dict_cols = [f.name for f in sch if pa.types.is_dictionary(f.type)]
    _, ours = _both(tmp_path / "b", sch, [t], column_encoding=enc, use_dictionary=dict_cols)
    assert "DELTA_BINARY_PACKED" in _encodings(ours, "int64_extremes")
    assert _encodings(ours, "int32_wide") == {"RLE", "PLAIN"}  # its deltas would need 33 bits
    assert _encodings(ours, "uint8_small") == {"RLE", "PLAIN"}
    (tmp_path / "c").mkdir()
    _, ours = _both(tmp_path / "c", sch, [t], compression="none", write_statistics=False)
    assert {pq.ParquetFile(ours).metadata.row_group(0).column(j).compression for j in range(len(sch))} == {
        "UNCOMPRESSED"}
    required = _random_table(np.random.default_rng(8), 700, "none", nullable=False)
    (tmp_path / "d").mkdir()
    _both(tmp_path / "d", required.schema, [required, required.slice(3, 100)])


def test_sliced_and_chunked_columns(tmp_path):
    """Columns sliced at offsets that are not multiples of 8 (validity realigned), several chunks per
    column (dictionaries combined as pyarrow does), a table of several row groups' rows."""
    rng = np.random.default_rng(3)
    t = _random_table(rng, 2000, "random")
    parts = [t.slice(3, 500), t.slice(517, 1)]
    chunked = pa.concat_tables([t.slice(5, 300), t.slice(1000, 211), t.slice(1500, 0)])
    assert chunked.column(0).num_chunks > 1
    _both(tmp_path, t.schema, parts + [chunked])


def test_long_table_is_split_in_row_groups(tmp_path, monkeypatch):
    from nfreplay.analysis import parquet as P

    monkeypatch.setattr(P, "MAX_ROW_GROUP", 40)
    t = _random_table(np.random.default_rng(4), 100, "runs")
    ours = _write(FastParquetWriter, tmp_path / "o.parquet", t.schema, [t], write_statistics=_stat_columns(t.schema))
    assert [pq.ParquetFile(ours).metadata.row_group(i).num_rows for i in range(3)] == [40, 40, 20]
    with pq.ParquetWriter(tmp_path / "r.parquet", t.schema, write_statistics=_stat_columns(t.schema)) as w:
        w.write_table(t, row_group_size=40)
    _assert_same_files(tmp_path / "r.parquet", ours)
    with FastParquetWriter(tmp_path / "o2.parquet", t.schema, write_statistics=_stat_columns(t.schema)) as w:
        w.write_table(t, row_group_size=30)
    with pq.ParquetWriter(tmp_path / "r2.parquet", t.schema, write_statistics=_stat_columns(t.schema)) as w:
        w.write_table(t, row_group_size=30)
    _assert_same_files(tmp_path / "r2.parquet", tmp_path / "o2.parquet")


def test_many_row_groups(tmp_path):
    """More than 14 row groups (the footer's list header takes its long form)."""
    t = _random_table(np.random.default_rng(11), 40, "random")
    _both(tmp_path, t.schema, [t.slice(2 * k, 2) for k in range(20)])


def test_empty_files(tmp_path):
    """No row group at all; one row group without rows (pyarrow: an empty dictionary page for dictionary
    columns, no pages for the others); a first row group without rows."""
    t = _random_table(np.random.default_rng(5), 50, "random")
    for k, tables in enumerate(([], [t.slice(0, 0)], [t.slice(0, 0), t])):
        d = tmp_path / str(k)
        d.mkdir()
        _both(d, t.schema, tables)


def test_text_columns_given_as_dictionaries(tmp_path):
    """A text column of the file may come as a dictionary array (a dictionary shared by several
    columns, with unused, and with few used, entries): it reads back as the text."""
    rng = np.random.default_rng(6)
    n = 3000
    words = pa.array([f"host-{i}.example" for i in range(1000)] + ["", "é"], pa.large_string())
    sch = pa.schema([("a", pa.large_string()), ("b", pa.large_string()), ("c", pa.string())])
    cols_d, cols_t = [], []
    for name, hi in (("a", 1002), ("b", 3), ("c", 400)):
        valid = _valid(rng, n, "random" if name != "a" else "none")
        codes = np.where(valid, rng.integers(0, hi, n), -1).astype(np.int32)
        buf = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
        d = pa.DictionaryArray.from_arrays(pa.Array.from_buffers(pa.int32(), n, [buf, pa.py_buffer(codes)]), words)
        cols_d.append(d)
        cols_t.append(d.cast(sch.field(name).type))
    _both(tmp_path, sch, [pa.Table.from_arrays(cols_t, schema=sch)], [pa.Table.from_arrays(cols_d, names=sch.names)])


def test_filters_and_statistics(tmp_path):
    """pd.read_parquet(filters=...) prunes and filters our files as pyarrow's (unsigned order too)."""
    rng = np.random.default_rng(9)
    tables = [_random_table(rng, 400, "sparse") for _ in range(3)]
    ref, ours = _both(tmp_path, tables[0].schema, tables)
    for flt in ([("uint32_wide", ">", 2 ** 31)], [("int64_sorted", "<", 10 ** 9)], [("uint8_small", "==", 3)],
                [("ts_UTC", ">", pd.Timestamp(1_700_000_000 * 10 ** 9 + 10 ** 8, tz="UTC"))]):
        pd.testing.assert_frame_equal(pd.read_parquet(ref, filters=flt), pd.read_parquet(ours, filters=flt))


def test_supports_and_errors(tmp_path):
    ok = pa.schema([("x", pa.int32()), ("s", pa.large_string()), ("d", pa.dictionary(pa.int8(), pa.string()))])
    assert supports(ok) is False  # statistics of text asked (write_statistics=True)
    assert supports(ok, write_statistics=["x"])
    for typ in (pa.float64(), pa.bool_(), pa.list_(pa.int8()), pa.dictionary(pa.int8(), pa.null()),
                pa.timestamp("us"), pa.null(), pa.binary(), pa.dictionary(pa.int8(), pa.int32())):
        assert not supports(pa.schema([("y", typ)]), write_statistics=False), typ
    assert not supports(pa.schema([("a", pa.int8()), ("a", pa.int8())]))
    assert not supports(ok, write_statistics=["x"], compression="zstd")
    assert not supports(ok, write_statistics=["x"], column_encoding={"x": "BYTE_STREAM_SPLIT"})
    assert not supports(ok, write_statistics=["x"], use_dictionary=["x"])
    assert supports(ok, write_statistics=["x"], use_dictionary=["d"])
    with pytest.raises(TypeError):
        FastParquetWriter(tmp_path / "e.parquet", pa.schema([("y", pa.float64())]))
    w = FastParquetWriter(tmp_path / "f.parquet", ok, write_statistics=["x"])
    with pytest.raises(ValueError, match="schema"):
        w.write_table(pa.table({"x": pa.array([1], pa.int64())}))
    w.close()
    w.close()  # idempotent
    req = pa.schema([pa.field("x", pa.int32(), nullable=False)])
    with FastParquetWriter(tmp_path / "g.parquet", req) as w:
        with pytest.raises(ValueError, match="not nullable"):
            w.write_table(pa.Table.from_arrays([pa.array([1, None], pa.int32())], schema=req))
    assert not supports(ok, write_statistics=["x"], column_encoding={"s": "DELTA_BINARY_PACKED"})
    with FastParquetWriter(tmp_path / "i.parquet", ok, write_statistics=["x"]) as w:
        with pytest.raises(ValueError, match="schema"):
            w.write_table(pa.table({"x": pa.array([1], pa.int32()), "t": ["a"], "d": pa.array(["b"]).dictionary_encode()}))
    bad = pa.DictionaryArray.from_arrays(pa.array([0, 1], pa.int8()), pa.array(["a", None]))
    with FastParquetWriter(tmp_path / "j.parquet", pa.schema([("s", pa.string())]), write_statistics=False) as w:
        with pytest.raises(ValueError, match="dictionary"):
            w.write_table(pa.table({"s": bad}))
    with FastParquetWriter(tmp_path / "h.parquet", pa.schema([("d", bad.type)]), write_statistics=False) as w:
        with pytest.raises(ValueError, match="dictionary"):
            w.write_table(pa.table({"d": bad}))


@pytest.fixture
def fast_always(monkeypatch):
    """_TableAppender takes FastParquetWriter whatever the first table's size."""
    from nfreplay.analysis import parquet as P

    monkeypatch.setattr(P, "FAST_MIN_ROWS", 0)


def test_appender_uses_the_writer_when_it_can(tmp_path, fast_always, monkeypatch):
    """_TableAppender writes the streamed tables with FastParquetWriter (from FAST_MIN_ROWS rows in the
    first table), other frames with pyarrow."""
    from nfreplay.analysis import parquet as P

    out = _sample("port_forward_nat")
    a = export._TableAppender(tmp_path / "p.parquet", "parquet", frames.PACKET_NULLABLE)
    a.append(frames.packets_table(out))
    assert isinstance(a._w, FastParquetWriter)
    a.close()
    monkeypatch.setattr(P, "FAST_MIN_ROWS", len(frames.packets_table(out)) + 1)
    small = export._TableAppender(tmp_path / "s.parquet", "parquet", frames.PACKET_NULLABLE)
    small.append(frames.packets_table(out))
    assert isinstance(small._w, pq.ParquetWriter)
    small.close()
    assert pq.ParquetFile(tmp_path / "p.parquet").metadata.created_by.startswith("nfreplay")
    pd.testing.assert_frame_equal(pd.read_parquet(tmp_path / "p.parquet"), frames.packets_frame(out))
    b = export._TableAppender(tmp_path / "f.parquet", "parquet")
    b.append(pd.DataFrame({"x": [1.5, 2.5], "y": [True, False]}))
    assert isinstance(b._w, pq.ParquetWriter)
    b.close()


@pytest.mark.parametrize("name", ["forward_blocked_service", "port_forward_nat", "invalid_out_of_window"])
@pytest.mark.parametrize("chunk,step", [(5, 3), (1_000_000, 1_000_000)])
def test_streamed_files_with_the_writer(tmp_path, fast_always, name, chunk, step):
    """stream_tables through FastParquetWriter: packets and events read back as simulate()'s tables."""
    from nfreplay.analysis import read_tables

    from .test_stream import _assert_same_table, _stream, _whole

    whole = _whole(name)
    _stream(name, tmp_path, chunk=chunk, step=step)
    back = read_tables(tmp_path)
    for t in ("packets", "events"):
        assert pq.ParquetFile(tmp_path / f"{t}.parquet").metadata.created_by.startswith("nfreplay")
        _assert_same_table(back[t], getattr(whole, t))
        assert [str(d) for d in back[t].dtypes] == [str(d) for d in getattr(whole, t).dtypes], t


def test_streamed_synthetic_capture_with_the_writer(tmp_path, fast_always):
    """test_stream's synthetic capture (REJECT, INVALID texts, many hosts) in many steps, through
    FastParquetWriter."""
    from .test_stream import test_streamed_synthetic_capture_equals_in_memory_tables as streamed

    streamed(tmp_path, 4000, 1024)
    assert pq.ParquetFile(tmp_path / "out" / "packets.parquet").metadata.created_by.startswith("nfreplay")

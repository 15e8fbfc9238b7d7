"""FastParquetWriter: Parquet files of the streamed tables (packets, events), row group by row group.

For pyarrow Tables of flat integer, timestamp[ns], string and dictionary<int, string> columns (see
`supports`); a text column may come as a dictionary array. The files read back with pyarrow as
pq.ParquetWriter's do: same Arrow schema (stored as pyarrow stores it: ARROW:schema and the schema's
metadata), values, Arrow dictionaries, statistics. Values are encoded by the nogil kernels of
replay.pqenc, pages compressed with pyarrow's snappy codec. On the benchmark's 262,144-row packets steps:
~1/4 of pq.ParquetWriter's CPU with the address columns as dictionary arrays, ~1/3 with them as text;
files ~5 % larger. Format choices (measured on that table):
- data pages v1 of ~1 MiB, starting on multiples of 8 rows; definition levels RLE / bit-packed (a
  literal run is a copy of the Arrow validity bitmap); OPTIONAL fields unless not nullable.
- Arrow dictionary columns: their dictionary as the dictionary page, indices RLE_DICTIONARY (as pyarrow
  writes a DictionaryArray). Strings and integers spanning < 2**16 are dictionary encoded too (hash /
  direct table): cheaper than PLAIN + snappy and half its size. Non-decreasing integers (packet number,
  timestamps, conntrack ids) DELTA_BINARY_PACKED; others PLAIN.
- indices: one bit-packed run (one RLE run if all equal; finding shorter runs costs more than snappy's
  matching of the packed bytes), padded to whole bytes above 12 bits when compressed.
- snappy, except chunks whose first page's sample shrinks by less than 40 % (random numbers, timestamp
  deltas) and string dictionaries of more than 256 values (snappy would halve them for as much CPU as
  the rest of the column): uncompressed.
- logical / converted types, statistics (integer / timestamp columns; deprecated min / max only for
  signed types), page encoding stats and size statistics as pyarrow 26 writes them (without the byte
  count of text given as dictionary arrays: a pass more); created_by names this writer.
"""

from __future__ import annotations

import base64
import struct
import sys
from pathlib import Path

import numpy as np

__all__ = ["FastParquetWriter", "supports", "FAST_MIN_ROWS", "PAGE_SIZE", "MAX_ROW_GROUP"]

# parquet.thrift enums
_INT32, _INT64, _BYTE_ARRAY = 1, 2, 6
_PLAIN, _RLE, _DELTA_BINARY_PACKED, _RLE_DICTIONARY = 0, 3, 5, 8
_DATA_PAGE, _DICTIONARY_PAGE = 0, 2
_UNCOMPRESSED, _SNAPPY = 0, 1
_REQUIRED, _OPTIONAL = 0, 1
_UTF8, _UINT_8, _UINT_16, _UINT_32, _UINT_64, _INT_8, _INT_16 = 0, 11, 12, 13, 14, 15, 16

# Thrift compact protocol types (a field's type nibble; booleans carry their value in it)
_T_TRUE, _T_FALSE, _T_BYTE, _T_I32, _T_I64, _T_BINARY, _T_LIST, _T_STRUCT = 1, 2, 3, 5, 6, 8, 9, 12
_BOOL, _BYTE, _I32, _I64, _BIN, _LIST, _STRUCT = "bool", _T_BYTE, _T_I32, _T_I64, _T_BINARY, _T_LIST, _T_STRUCT

# the first table's rows from which export._TableAppender takes this writer: loading its kernels from the
# Numba cache costs ~0.1 s of CPU once per process, which a 262,144-row packets step repays (~0.1 s less
# than pyarrow's); smaller streams (the samples) keep pq.ParquetWriter
FAST_MIN_ROWS = 1 << 16
PAGE_SIZE = 1 << 20  # bytes of encoded values per data page (about)
MAX_ROW_GROUP = 1 << 20  # rows per row group, as pq.ParquetWriter.write_table's default
_DICT_SPAN = 1 << 16  # integer columns whose values span less than this are dictionary encoded
_STR_UNCOMPRESSED = 256  # string dictionaries above this many values are written uncompressed
_MIN_GAIN = 0.6  # compress a chunk when a sample of its first page shrinks below this ratio
_SAMPLE = 16384  # bytes of that sample (pages below 4 times this are compressed without sampling)
_ORDER_SAMPLE = 4096  # rows whose valid values are checked for order before a column with nulls is


# ------------------------------------------------------------------ Thrift compact protocol (encoder)
def _varint(n: int, out: bytearray) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _zz(n: int) -> int:
    return (n << 1) ^ (n >> 63)


def _value(t, v, out: bytearray) -> None:
    if t == _I32 or t == _I64:
        _varint(_zz(v), out)
    elif t == _BIN:
        _varint(len(v), out)
        out += v
    elif t == _STRUCT:
        _fields(v, out)
        out.append(0)
    elif t == _LIST:
        et, items = v
        _list_header(len(items), et, out)
        for x in items:
            _value(et, x, out)
    elif t == _BYTE:
        out.append(v & 0xFF)
    else:
        raise TypeError(t)


def _list_header(n: int, et: int, out: bytearray) -> None:
    """A compact-protocol list header: n elements of type et."""
    if n < 15:
        out.append((n << 4) | et)
    else:
        out.append(0xF0 | et)
        _varint(n, out)


def _header(fid: int, tt: int, last: int, out: bytearray) -> None:
    d = fid - last
    if 0 < d <= 15:
        out.append((d << 4) | tt)
    else:
        out.append(tt)
        _varint(_zz(fid), out)


def _fields(fields, out: bytearray, last: int = 0) -> int:
    """The fields (field id, type, value) of a struct, in increasing id order, after field `last`, without
    the stop byte; None values are left out. Returns the last field id written."""
    for fid, t, v in fields:
        if v is None:
            continue
        if t == _BOOL:
            _header(fid, _T_TRUE if v else _T_FALSE, last, out)
        else:
            _header(fid, t, last, out)
            _value(t, v, out)
        last = fid
    return last


def _encode(fields) -> bytes:
    out = bytearray()
    _fields(fields, out)
    out.append(0)
    return bytes(out)


_EMPTY = b"\x00"  # an empty struct


def _page_header(ptype: int, unc: int, comp: int, rows: int, enc: int, stats: bytes) -> bytearray:
    """PageHeader of a data page (rows: its num_values; stats: encoded Statistics) or, rows < 0, of a
    dictionary page of `enc` values."""
    out = bytearray(b"\x15")
    _varint(ptype << 1, out)
    out.append(0x15)
    _varint(unc << 1, out)
    out.append(0x15)
    _varint(comp << 1, out)
    if rows >= 0:  # 5: DataPageHeader {num_values, encoding, RLE levels, statistics}
        out += b"\x2c\x15"
        _varint(rows << 1, out)
        out.append(0x15)
        _varint(enc << 1, out)
        out += b"\x15\x06\x15\x06\x1c"
        out += stats
    else:  # 7: DictionaryPageHeader {num_values, PLAIN, is_sorted false}
        out += b"\x4c\x15"
        _varint(enc << 1, out)
        out += b"\x15\x00\x12"
    out += b"\x00\x00"
    return out


# ------------------------------------------------------------------ column specs
class _Column:
    """How one Arrow field is written: kind "int" (integers, timestamps), "bytes" (strings) or "dict"
    (Arrow dictionary)."""

    __slots__ = ("name", "kind", "ptype", "src", "dst", "width", "signed", "stats", "encoding", "nullable",
                 "element", "path", "fmt")

    def __init__(self, field, stats: bool, encoding: str | None):
        import pyarrow as pa

        t = field.type
        self.name = field.name
        self.nullable = field.nullable
        self.stats = stats
        self.encoding = encoding
        self.signed = True
        self.src = self.dst = None
        self.width = 0
        conv = logical = None
        if pa.types.is_dictionary(t) or pa.types.is_string(t) or pa.types.is_large_string(t):
            self.kind, self.ptype = ("dict" if pa.types.is_dictionary(t) else "bytes"), _BYTE_ARRAY
            conv, logical = _UTF8, [(1, _STRUCT, [])]
        elif pa.types.is_timestamp(t):
            self.kind, self.ptype, self.src, self.dst, self.width = "int", _INT64, np.int64, np.int64, 8
            logical = [(8, _STRUCT, [(1, _BOOL, t.tz is not None), (2, _STRUCT, [(3, _STRUCT, [])])])]
        else:
            self.kind = "int"
            self.src = np.dtype(t.to_pandas_dtype()).type
            bits = t.bit_width
            self.signed = pa.types.is_signed_integer(t)
            self.ptype, self.width = (_INT64, 8) if bits == 64 else (_INT32, 4)
            # the physical values: int32 for 8- to 32-bit signed and 8- and 16-bit unsigned integers
            self.dst = {(64, True): np.int64, (64, False): np.uint64, (32, False): np.uint32}.get(
                (bits, self.signed), np.int32)
            if not self.signed or bits < 32:
                conv = ({8: _UINT_8, 16: _UINT_16, 32: _UINT_32, 64: _UINT_64} if not self.signed
                        else {8: _INT_8, 16: _INT_16})[bits]
                logical = [(10, _STRUCT, [(1, _BYTE, bits), (2, _BOOL, self.signed)])]
        self.fmt = "<" + ("iI" if self.width == 4 else "qQ")[0 if self.signed else 1]
        self.element = [(1, _I32, self.ptype), (3, _I32, _OPTIONAL if self.nullable else _REQUIRED),
                        (4, _BIN, field.name.encode()), (6, _I32, conv), (10, _STRUCT, logical)]
        out = bytearray()
        _value(_LIST, (_BIN, [field.name.encode()]), out)
        self.path = bytes(out)  # path_in_schema, encoded

    def stats_bytes(self, nulls: int, mn, mx, valid: int) -> bytes:
        """Statistics as pyarrow writes them: null count; min / max (exact) if any value, and the
        deprecated min / max (signed order) only for signed types."""
        if not valid:
            return _encode([(3, _I64, int(nulls))])
        hi, lo = struct.pack(self.fmt, int(mx)), struct.pack(self.fmt, int(mn))
        dep = self.signed
        return _encode([(1, _BIN, hi if dep else None), (2, _BIN, lo if dep else None), (3, _I64, int(nulls)),
                        (5, _BIN, hi), (6, _BIN, lo), (7, _BOOL, True), (8, _BOOL, True)])


def _column_type_ok(t) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(t):
        return (t.index_type in (pa.int8(), pa.int16(), pa.int32())
                and (pa.types.is_string(t.value_type) or pa.types.is_large_string(t.value_type)))
    if pa.types.is_timestamp(t):
        return t.unit == "ns"
    return pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_integer(t)


def _options(schema, write_statistics, column_encoding, use_dictionary, compression) -> set:
    """The names of the columns with statistics, after checking pq.ParquetWriter-style options (a
    TypeError for what this writer does not do)."""
    import pyarrow as pa

    names = schema.names
    if sys.byteorder != "little":
        raise TypeError("the encoders write the host's byte order: little-endian hosts only")
    if len(set(names)) != len(names):
        raise TypeError("duplicate column names")
    stats = (set(names) if write_statistics else set()) if isinstance(write_statistics, bool) \
        else set(write_statistics)
    for k, v in dict(column_encoding or {}).items():
        if v not in ("PLAIN", "DELTA_BINARY_PACKED"):
            raise TypeError(f"column {k!r}: encoding {v} not supported")
    if use_dictionary is not None and not isinstance(use_dictionary, bool):
        if set(use_dictionary) - {f.name for f in schema if pa.types.is_dictionary(f.type)}:
            raise TypeError("use_dictionary: only the Arrow dictionary columns (the others are chosen by the data)")
    if compression not in ("snappy", "SNAPPY", "none", "NONE", None):
        raise TypeError(f"compression {compression!r} not supported")
    for f in schema:
        if not _column_type_ok(f.type):
            raise TypeError(f"column {f.name!r}: type {f.type} not supported")
        if f.name in stats and not (pa.types.is_integer(f.type) or pa.types.is_timestamp(f.type)):
            raise TypeError(f"column {f.name!r}: statistics of {f.type} not supported")
        if (column_encoding or {}).get(f.name) == "DELTA_BINARY_PACKED" and not (
                pa.types.is_integer(f.type) or pa.types.is_timestamp(f.type)):
            raise TypeError(f"column {f.name!r}: DELTA_BINARY_PACKED only for integers")
    return stats


def supports(schema, *, write_statistics=True, column_encoding=None, use_dictionary=None,
             compression="snappy") -> bool:
    """Whether FastParquetWriter writes tables of `schema` with these options (pq.ParquetWriter's names:
    write_statistics: bool or column names, integer / timestamp columns only; column_encoding: PLAIN or
    DELTA_BINARY_PACKED per column, the others chosen by the data; use_dictionary: accepted for the Arrow
    dictionary columns (always dictionary encoded); compression: snappy or none)."""
    try:
        _options(schema, write_statistics, column_encoding, use_dictionary, compression)
    except TypeError:
        return False
    return True


def _created_by() -> str:
    from .. import __version__

    return f"nfreplay version {__version__}"


class _Chunk:
    """What one column chunk wrote: offsets, pages, encoding, codec, statistics."""

    __slots__ = ("start", "unc", "dict_off", "data_off", "pages", "enc", "ub", "mn", "mx", "codec", "pending",
                 "dict_len")

    def __init__(self, start: int, codec):
        self.start = start
        self.unc = self.pages = self.ub = 0
        self.dict_off = self.data_off = None
        self.enc = _PLAIN
        self.mn = self.mx = None
        self.codec = codec
        self.pending = None  # the number of values of the dictionary page waiting for the first data page
        self.dict_len = 0

    def add(self, k: int, mn, mx) -> None:
        """Adds a page's min / max of its k values."""
        if k:
            self.mn = mn if self.mn is None else min(self.mn, mn)
            self.mx = mx if self.mx is None else max(self.mx, mx)


class FastParquetWriter:
    """pq.ParquetWriter for the schemas of `supports`: write_table(t) writes one row group (tables longer
    than MAX_ROW_GROUP rows: several), close() the footer. Options as pq.ParquetWriter's (see
    `supports`); page_size: bytes of encoded values per data page (about)."""

    def __init__(self, path, schema, *, write_statistics=True, column_encoding=None, use_dictionary=None,
                 compression="snappy", page_size: int = PAGE_SIZE):
        import pyarrow as pa

        stats = _options(schema, write_statistics, column_encoding, use_dictionary, compression)
        enc = dict(column_encoding or {})
        self.schema = schema
        self._cols = [_Column(f, f.name in stats, enc.get(f.name)) for f in schema]
        self._codec = pa.Codec("snappy") if compression in ("snappy", "SNAPPY") else None
        self._page_size = max(64, int(page_size))
        self._row_groups: list[bytes] = []
        self._rows = 0
        self._buf = np.empty(1 << 16, np.uint8)
        self._dbuf = np.empty(1 << 12, np.uint8)
        self._idx = np.empty(1 << 10, np.int32)
        self._tmp = np.empty(1 << 10, np.int64)
        self._s128 = np.empty(128, np.uint64)
        self._first = np.empty(1 << 10, np.int32)
        self._strtab = np.empty(1 << 12, np.int64)
        self._keys = np.empty(2 << 12, np.uint64)
        self._inttab = np.full(_DICT_SPAN, -1, np.int32)
        self._flags = np.empty(1 << 10, np.uint8)
        self._f = open(Path(path), "wb")  # noqa: SIM115 (closed by close())
        self._f.write(b"PAR1")
        self._pos = 4

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -------------------------------------------------------------- row groups
    def write_table(self, table, row_group_size: int | None = None) -> None:
        """Write `table` (the file's schema; its metadata may differ) as one row group, or several of
        row_group_size rows (default and at most MAX_ROW_GROUP)."""
        if not table.schema.equals(self.schema, check_metadata=False) and not self._matches(table.schema):
            raise ValueError(f"table schema does not match the file's:\n{table.schema}\nvs\n{self.schema}")
        n = table.num_rows
        size = max(1, min(int(row_group_size or MAX_ROW_GROUP), MAX_ROW_GROUP))
        if n > size:
            for a in range(0, n, size):
                self.write_table(table.slice(a, size), size)
            return
        start = self._pos
        out = bytearray(b"\x19")  # RowGroup: 1 columns (list of ColumnChunk)
        _list_header(len(self._cols), _T_STRUCT, out)
        tot_unc = 0
        for c, col in zip(self._cols, table.columns):
            tot_unc += self._write_column(c, col, n, out)
        _fields([(2, _I64, tot_unc), (3, _I64, n), (5, _I64, start), (6, _I64, self._pos - start)], out, 1)
        out.append(0)
        self._row_groups.append(bytes(out))
        self._rows += n

    def _matches(self, schema) -> bool:
        """Whether a table of `schema` can be written: the file's schema, but text columns may come as
        dictionary<int, string> arrays (written dictionary encoded; they read back as text)."""
        import pyarrow as pa

        if schema.names != self.schema.names:
            return False
        for f, g in zip(schema, self.schema):
            if f.type != g.type and not (
                    pa.types.is_dictionary(f.type) and (pa.types.is_string(g.type) or pa.types.is_large_string(g.type))
                    and _column_type_ok(f.type)):
                return False
        return True

    def _write_column(self, c: _Column, col, n: int, out: bytearray) -> int:
        """Writes one column chunk and appends its ColumnChunk to out; returns its uncompressed size."""
        import pyarrow as pa

        arr = col.chunk(0) if col.num_chunks == 1 else (
            col.combine_chunks() if col.num_chunks else pa.array([], col.type))
        if isinstance(arr, pa.ChunkedArray):  # combine_chunks of a dictionary column
            arr = arr.chunk(0) if arr.num_chunks else pa.array([], col.type)
        ch = _Chunk(self._pos, self._codec)
        nulls = arr.null_count
        if not c.nullable and nulls:
            raise ValueError(f"column {c.name!r} is not nullable but has nulls")
        src = arr.indices if pa.types.is_dictionary(arr.type) else arr
        bits, s = _validity(src, n) if nulls else (_NOBITS, 0)
        if c.kind == "dict":
            self._categorical(c, arr, n, bits, s, bool(nulls), ch)
        elif n == 0:
            pass  # no pages (as pyarrow)
        elif c.kind == "bytes" and pa.types.is_dictionary(arr.type):
            self._text_dictionary(c, arr, n, bits, s, bool(nulls), ch)
        elif c.kind == "bytes":
            self._strings(c, arr, n, bits, s, bool(nulls), ch)
        else:
            self._integers(c, arr, n, bits, s, bool(nulls), ch)
        self._flush_dict(ch)  # a chunk without data pages (no rows)
        # ColumnChunk {2: file_offset 0 (as pyarrow), 3: ColumnMetaData}
        out += b"\x26\x00\x1c\x15"
        _varint(c.ptype << 1, out)
        if ch.dict_off is not None:  # encodings: [PLAIN, RLE, RLE_DICTIONARY], [RLE, enc]
            out += b"\x19\x35\x00\x06\x10" if n else b"\x19\x25\x00\x06"
        elif n:
            out += b"\x19\x25\x06"
            out.append(ch.enc << 1)
        else:
            out += b"\x19\x15\x06"
        out.append(0x19)  # path_in_schema
        out += c.path
        out += b"\x15\x02" if ch.codec is not None else b"\x15\x00"
        out.append(0x16)
        _varint(n << 1, out)
        out.append(0x16)
        _varint(ch.unc << 1, out)
        out.append(0x16)
        _varint((self._pos - ch.start) << 1, out)
        out += b"\x26"  # 9: data_page_offset
        _varint((ch.data_off or 0) << 1, out)
        last = 9
        if ch.dict_off is not None:
            out += b"\x26"
            _varint(ch.dict_off << 1, out)
            last = 11
        if n and c.stats:
            _header(12, _T_STRUCT, last, out)
            out += c.stats_bytes(nulls, ch.mn, ch.mx, n - nulls)
            last = 12
        # 13: encoding_stats (PageEncodingStats {page_type, encoding, count})
        _header(13, _T_LIST, last, out)
        pes = []
        if ch.dict_off is not None:
            pes.append(b"\x15\x04\x15\x00\x15\x02\x00")
        if ch.pages:
            e = bytearray(b"\x15\x00\x15")
            _varint(ch.enc << 1, e)
            e.append(0x15)
            _varint(ch.pages << 1, e)
            e.append(0)
            pes.append(bytes(e))
        out.append((len(pes) << 4) | _T_STRUCT)
        for e in pes:
            out += e
        if n:  # 16: size_statistics {unencoded bytes (byte arrays), repetition / definition level histograms}
            out.append(0x3c)
            if c.ptype == _BYTE_ARRAY and ch.ub is not None:
                out.append(0x16)
                _varint(ch.ub << 1, out)
                out += b"\x19\x06"
            else:
                out += b"\x29\x06"
            if c.nullable:
                out += b"\x19\x26"
                _varint(nulls << 1, out)
                _varint((n - nulls) << 1, out)
            else:
                out += b"\x19\x06"
            out.append(0)
        out += b"\x00\x00"
        return ch.unc

    # -------------------------------------------------------------- pages
    def _buffer(self, n: int) -> np.ndarray:
        n += 16  # slack: the kernels store whole words
        if len(self._buf) < n:
            self._buf = np.empty(max(n, 2 * len(self._buf)), np.uint8)
        return self._buf

    def _write_page(self, ch: _Chunk, page, rows: int, enc: int, stats: bytes) -> None:
        """Compresses and writes one page (rows < 0: a dictionary page of enc values)."""
        data = ch.codec.compress(page) if ch.codec is not None else page
        hdr = _page_header(_DATA_PAGE if rows >= 0 else _DICTIONARY_PAGE, len(page), len(data), rows, enc, stats)
        self._f.write(hdr)
        self._f.write(data)
        ch.unc += len(hdr) + len(page)
        self._pos += len(hdr) + len(data)

    def _data_page(self, ch: _Chunk, page, rows: int, stats: bytes = _EMPTY, values=None) -> None:
        """Writes a data page (values: its encoded values, for the codec's choice on the first page of a
        dictionary chunk, whose dictionary page is written then)."""
        if ch.pending is not None:
            if values is not None:
                self._sample_codec(ch, values)
            self._flush_dict(ch)
        if ch.data_off is None:
            ch.data_off = self._pos
        self._write_page(ch, page, rows, ch.enc, stats)
        ch.pages += 1

    def _dict_page(self, ch: _Chunk, nd: int, size: int) -> np.ndarray:
        """The buffer for a dictionary page of nd values (size bytes at most), written before the first
        data page."""
        size += 16
        if len(self._dbuf) < size:
            self._dbuf = np.empty(max(size, 2 * len(self._dbuf)), np.uint8)
        ch.pending = nd
        return self._dbuf

    def _flush_dict(self, ch: _Chunk) -> None:
        if ch.pending is not None:
            ch.dict_off = self._pos
            self._write_page(ch, self._dbuf[:ch.dict_len], -1, ch.pending, b"")
            ch.pending = None

    def _sample_codec(self, ch: _Chunk, values) -> None:
        """No compression for the chunk if a sample of its first page's values shrinks by less than
        _MIN_GAIN (random numbers; deltas of timestamps)."""
        if ch.codec is None or len(values) < 4 * _SAMPLE:
            return
        mid = len(values) // 2
        sample = values[mid - _SAMPLE // 2:mid + _SAMPLE // 2]
        if len(ch.codec.compress(sample)) > _MIN_GAIN * len(sample):
            ch.codec = None

    def _steps(self, n: int, per_row: float) -> list:
        step = max(8, int(self._page_size / max(per_row, 1e-3)) // 8 * 8)
        return [(r0, min(n, r0 + step)) for r0 in range(0, n, step)]

    @staticmethod
    def _level_area(c: _Column, rows: int) -> int:
        """Where a page's values start in the buffer: 8-aligned, after room for its levels."""
        return ((4 + (rows >> 3) + 1 + 11 * ((rows >> 5) + 2)) + 7) & ~7 if c.nullable else 0

    @staticmethod
    def _levels(c: _Column, buf, a: int, bits, b0: int, has_bits: bool, rows: int) -> int:
        """Writes a page's definition levels to end at buf[a]; returns the page's start."""
        if not c.nullable:
            return a
        if has_bits:
            return _pq().def_levels(bits, b0, rows, buf, a)
        lv = _all_valid_levels(rows)
        buf[a - len(lv):a] = np.frombuffer(lv, np.uint8)
        return a - len(lv)

    def _index_pages(self, c: _Column, ch: _Chunk, idx, m: int, w: int, n: int, bits, s: int,
                     has_bits: bool, stats: bytes) -> None:
        """The data pages of dictionary indices idx[:m] (idx None: all 0) of the valid values of n rows."""
        pq_ = _pq()
        v0 = 0
        steps = self._steps(n, max(1, w) / 8)
        for r0, r1 in steps:
            rows = r1 - r0
            v1 = m if r1 == n else v0 + (pq_.count_valid(bits, s + (r0 >> 3), rows >> 3) if has_bits else rows)
            a = self._level_area(c, rows)
            buf = self._buffer(a + 5 * (v1 - v0) + 64)
            start = self._levels(c, buf, a, bits, s + (r0 >> 3), has_bits, rows)
            buf[a] = w
            if idx is None:  # one RLE run of index 0
                run = bytearray()
                _varint((v1 - v0) << 1, run)
                run += bytes((w + 7) >> 3)
                end = a + 1 + len(run)
                buf[a + 1:end] = np.frombuffer(bytes(run), np.uint8)
            else:
                end = pq_.hybrid(idx[v0:v1], v1 - v0, w, buf, a + 1)
            st = stats if len(steps) == 1 or not c.stats else _encode([(3, _I64, rows - (v1 - v0))])
            self._data_page(ch, buf[start:end], rows, st, buf[a + 1:end])
            v0 = v1

    # -------------------------------------------------------------- column kinds
    def _categorical(self, c: _Column, arr, n: int, bits, s: int, has_bits: bool, ch: _Chunk,
                     text: bool = False) -> None:
        """An Arrow dictionary column: its dictionary as the dictionary page, its indices RLE_DICTIONARY
        (an empty chunk: an empty dictionary page and no data page, as pyarrow). text: a text column of
        the file (the bit width as _index_width's; else as pyarrow's)."""
        pq_ = _pq()
        dictionary = arr.dictionary
        if dictionary.null_count:
            raise ValueError(f"column {c.name!r}: nulls in the dictionary are not supported")
        if n == 0:
            dictionary = dictionary.slice(0, 0)
        doffs, ddata = _string_buffers(dictionary)
        nd = len(dictionary)
        dbuf = self._dict_page(ch, nd, 4 * nd + int(doffs[nd] - doffs[0]))
        ch.dict_len, _, _ = pq_.plain_bytes(doffs, ddata, _NOBITS, 0, False, nd, _NOTAKE, dbuf, 0)
        if n == 0:
            return
        ch.enc = _RLE_DICTIONARY
        ch.ub = None  # the values' byte count would cost a pass over the indices: left out
        w = _index_width(nd, ch.codec is not None) if text else int(nd - 1).bit_length() if nd > 0 else 0
        ind = arr.indices
        vals = _values(ind, np.dtype(ind.type.to_pandas_dtype()), n)
        if has_bits and len(self._idx) < n:
            self._idx = np.empty(n, np.int32)
        for r0, r1 in self._steps(n, max(1, w) / 8):
            rows = r1 - r0
            a = self._level_area(c, rows)
            buf = self._buffer(a + 5 * rows + 64)
            b0 = s + (r0 >> 3)
            start = self._levels(c, buf, a, bits, b0, has_bits, rows)
            end, _ = pq_.dict_indices(vals[r0:r1], bits, b0, has_bits, rows, w, self._idx, buf, a)
            self._data_page(ch, buf[start:end], rows, _EMPTY, buf[a + 1:end])

    def _text_dictionary(self, c: _Column, arr, n: int, bits, s: int, has_bits: bool, ch: _Chunk) -> None:
        """A text column given as a dictionary array (which may be shared by several columns): with its
        whole dictionary if it uses most of it, else with the entries it uses (in order of first use)."""
        pq_ = _pq()
        dictionary = arr.dictionary
        if dictionary.null_count:
            raise ValueError(f"column {c.name!r}: nulls in the dictionary are not supported")
        ind = arr.indices
        vals = _values(ind, np.dtype(ind.type.to_pandas_dtype()), n)
        nd = len(dictionary)
        if len(self._flags) < nd:
            self._flags = np.empty(nd, np.uint8)
        nu = pq_.dict_usage(vals, bits, s, has_bits, n, self._flags[:nd])
        if nu > _STR_UNCOMPRESSED:
            ch.codec = None
        if 2 * nu >= nd:
            return self._categorical(c, arr, n, bits, s, has_bits, ch, text=True)
        doffs, ddata = _string_buffers(dictionary)
        if len(self._idx) < n:
            self._idx = np.empty(n, np.int32)
        table = self._inttab if nd <= len(self._inttab) else np.full(nd, -1, np.int32)
        used = np.empty(max(1, nu), np.int32)
        m, nu, _, _ = pq_.int_dict(vals, bits, s, has_bits, n, 0, table, used, self._idx)
        ch.ub = None  # the values' byte count would cost a pass: left out
        dbuf = self._dict_page(ch, nu, 4 * nu + int(doffs[nd] - doffs[0]))
        ch.dict_len, _, _ = pq_.plain_bytes(doffs, ddata, _NOBITS, 0, False, nu, used[:nu], dbuf, 0)
        ch.enc = _RLE_DICTIONARY
        self._index_pages(c, ch, self._idx, m, _index_width(nu, ch.codec is not None), n, bits, s, has_bits, _EMPTY)

    def _strings(self, c: _Column, arr, n: int, bits, s: int, has_bits: bool, ch: _Chunk) -> None:
        """A string column: dictionary encoded unless more than half of its values are distinct."""
        pq_ = _pq()
        offs, data = _string_buffers(arr)
        ch.ub = total = int(offs[n] - offs[0])
        if total == 0:  # all empty
            m, nd, idx = n - arr.null_count, 1, None
            self._first[0] = 0
        else:
            if len(self._idx) < n:
                self._idx = np.empty(n, np.int32)
            if len(self._first) < n:
                self._first = np.empty(n, np.int32)
            while True:
                m, nd, ch.ub = pq_.str_dict(offs, data, bits, s, has_bits, n, self._strtab, self._keys, self._first,
                                            self._idx)
                if nd >= 0:
                    break
                self._strtab = np.empty(2 * len(self._strtab), np.int64)
                self._keys = np.empty(2 * len(self._strtab), np.uint64)
            idx = self._idx
        if 2 * nd <= m:
            if nd > _STR_UNCOMPRESSED:
                ch.codec = None
            dbuf = self._dict_page(ch, nd, 4 * nd + ch.ub)
            ch.dict_len, _, _ = pq_.plain_bytes(offs, data, _NOBITS, 0, False, nd, self._first[:nd], dbuf, 0)
            ch.enc = _RLE_DICTIONARY
            self._index_pages(c, ch, idx, m, _index_width(nd, ch.codec is not None), n, bits, s, has_bits, _EMPTY)
            return
        ch.enc = _PLAIN
        for r0, r1 in self._steps(n, 4 + total / n):
            rows = r1 - r0
            a = self._level_area(c, rows)
            buf = self._buffer(a + 4 * rows + int(offs[r1] - offs[r0]))
            b0 = s + (r0 >> 3)
            start = self._levels(c, buf, a, bits, b0, has_bits, rows)
            end, _, _ = pq_.plain_bytes(offs[r0:r1 + 1], data, bits, b0, has_bits, rows, _NOTAKE, buf, a)
            self._data_page(ch, buf[start:end], rows)

    def _integers(self, c: _Column, arr, n: int, bits, s: int, has_bits: bool, ch: _Chunk) -> None:
        """An integer / timestamp column: DELTA_BINARY_PACKED if non-decreasing, dictionary encoded if its
        values span less than _DICT_SPAN (direct table), else PLAIN; column_encoding forces one."""
        pq_ = _pq()
        vals = _values(arr, c.src, n)
        m = n - arr.null_count
        amn, amx, dec = pq_.int_profile(vals, n)  # bounds of the valid values: null slots included
        span = int(amx) - int(amn)
        chg = span
        forced = c.encoding
        if c.width == 4 and (span >= (1 << 31) or int(amx) >= (1 << 31)):
            # INT32 deltas: their values are the physical (signed) ones, within a span below 2**31 (the
            # deltas of larger spans would need 33 bits; uint32 above 2**31 are negative physical values)
            forced = None if forced is None else "PLAIN"
            delta_ok = False
        else:
            delta_ok = True
        if forced is None and has_bits and dec and m > 1:  # null slots may break the order: a sample
            _, _, chg, dec = pq_.valid_profile(vals, bits, s, min(n, _ORDER_SAMPLE))
        if forced == "DELTA_BINARY_PACKED" or (forced is None and delta_ok and m > 1 and chg > 0 and dec == 0):
            if self._delta(c, vals, n, bits, s, has_bits, m, ch, forced is not None):
                return
        if forced is None and m and span < _DICT_SPAN and int(amn) >= -(1 << 63) and int(amx) < (1 << 63):
            ch.enc = _RLE_DICTIONARY
            if span == 0:  # one value: a one-entry dictionary and one RLE run
                nd, dvals, idx = 1, vals[:1], None
                ch.mn = ch.mx = vals[0]
            else:
                if len(self._idx) < n:
                    self._idx = np.empty(n, np.int32)
                dvals = np.empty(min(n, _DICT_SPAN), vals.dtype)  # distinct values of a span of _DICT_SPAN
                m, nd, ch.mn, ch.mx = pq_.int_dict(vals, bits, s, has_bits, n, int(amn), self._inttab, dvals,
                                                   self._idx)
                idx = self._idx
            dbuf = self._dict_page(ch, nd, nd * c.width)
            pq_.plain_fixed(dvals[:nd], _NOBITS, 0, False, nd, dbuf[:nd * c.width].view(c.dst))
            ch.dict_len = nd * c.width
            self._index_pages(c, ch, idx, m, _index_width(nd, ch.codec is not None), n, bits, s, has_bits,
                              c.stats_bytes(n - m, ch.mn, ch.mx, m) if c.stats else _EMPTY)
            return
        ch.enc = _PLAIN
        for r0, r1 in self._steps(n, c.width):
            rows = r1 - r0
            a = self._level_area(c, rows)
            buf = self._buffer(a + rows * c.width)
            b0 = s + (r0 >> 3)
            start = self._levels(c, buf, a, bits, b0, has_bits, rows)
            dst = buf[a:a + max(1, rows) * c.width].view(c.dst)
            k, pmn, pmx = pq_.plain_fixed(vals[r0:r1], bits, b0, has_bits, rows, dst)
            ch.add(k, pmn, pmx)
            if r0 == 0:
                self._sample_codec(ch, buf[a:a + k * c.width])
            self._data_page(ch, buf[start:a + k * c.width], rows,
                            c.stats_bytes(rows - k, pmn, pmx, k) if c.stats else _EMPTY)

    def _delta(self, c: _Column, vals, n: int, bits, s: int, has_bits: bool, m: int, ch: _Chunk,
               forced: bool) -> bool:
        """DELTA_BINARY_PACKED pages of the valid values (compacted first if there are nulls; unless
        forced, nothing is written and False returned when they turn out not to be non-decreasing)."""
        pq_ = _pq()
        if has_bits:
            if len(self._tmp) < n:
                self._tmp = np.empty(n, np.int64)
            src = self._tmp.view(c.dst)
            pq_.plain_fixed(vals, bits, s, True, n, src)
            if not forced:
                mn, mx, dec = pq_.int_profile(src, m)
                if dec or mn == mx:
                    return False
        else:
            src = vals
        ch.enc = _DELTA_BINARY_PACKED
        v0 = 0
        for r0, r1 in self._steps(n, c.width):
            rows = r1 - r0
            v1 = m if r1 == n else v0 + (pq_.count_valid(bits, s + (r0 >> 3), rows >> 3) if has_bits else rows)
            a = self._level_area(c, rows)
            buf = self._buffer(a + 9 * (v1 - v0) + 2048)
            start = self._levels(c, buf, a, bits, s + (r0 >> 3), has_bits, rows)
            end, pmn, pmx = pq_.delta_int64(src[v0:max(v1, v0 + 1)], v1 - v0, self._s128, buf, a)
            k = v1 - v0
            ch.add(k, pmn, pmx)
            if r0 == 0:
                self._sample_codec(ch, buf[a:end])
            self._data_page(ch, buf[start:end], rows, c.stats_bytes(rows - k, pmn, pmx, k) if c.stats else _EMPTY)
            v0 = v1
        return True

    # -------------------------------------------------------------- footer
    def close(self) -> None:
        if self._f is None:
            return
        try:
            self._f.write(self._footer())
        finally:
            self._f.close()
            self._f = None

    def _footer(self) -> bytes:
        schema = [[(3, _I32, _REQUIRED), (4, _BIN, b"schema"), (5, _I32, len(self._cols))]]
        schema += [c.element for c in self._cols]
        kv = [[(1, _BIN, k), (2, _BIN, v)] for k, v in (self.schema.metadata or {}).items() if k != b"ARROW:schema"]
        kv.append([(1, _BIN, b"ARROW:schema"), (2, _BIN, base64.b64encode(self.schema.serialize().to_pybytes()))])
        out = bytearray()  # FileMetaData; the row groups were encoded by write_table
        last = _fields([(1, _I32, 2), (2, _LIST, (_STRUCT, schema)), (3, _I64, self._rows)], out)
        _header(4, _T_LIST, last, out)
        _list_header(len(self._row_groups), _T_STRUCT, out)
        for rg in self._row_groups:
            out += rg
        _fields([(5, _LIST, (_STRUCT, kv)), (6, _BIN, _created_by().encode()),
                 (7, _LIST, (_STRUCT, [[(1, _STRUCT, [])] for _ in self._cols]))], out, 4)
        out.append(0)
        return bytes(out) + struct.pack("<I", len(out)) + b"PAR1"


_NOBITS = np.zeros(1, np.uint8)
_NOTAKE = np.zeros(0, np.int32)
_PQ = None


def _pq():
    global _PQ
    if _PQ is None:
        from ..replay import pqenc

        _PQ = pqenc
    return _PQ


def _index_width(nd: int, compressed: bool) -> int:
    """Bit width of built dictionaries' indices: at least 1; whole bytes above 12 bits if compressed (the
    values are then mostly distinct: snappy finds their repeats only if they are byte-aligned)."""
    w = max(1, int(nd - 1).bit_length())
    return (w + 7) & ~7 if compressed and w > 12 else w


def _all_valid_levels(rows: int) -> bytes:
    out = bytearray()
    _varint(rows << 1, out)
    out.append(1)
    return struct.pack("<I", len(out)) + bytes(out)


def _validity(arr, n: int):
    """(bitmap bytes, first byte) of arr's validity, realigned when arr's offset is not a multiple of 8."""
    raw = np.frombuffer(arr.buffers()[0], np.uint8)
    off = arr.offset
    if off % 8 == 0:
        return raw, off >> 3
    bits = np.unpackbits(raw, bitorder="little")[off:off + n]
    return np.packbits(bits, bitorder="little"), 0


def _values(arr, dtype, n: int) -> np.ndarray:
    return np.frombuffer(arr.buffers()[1], dtype)[arr.offset:arr.offset + n]


def _string_buffers(arr):
    """(offsets as int64 or int32 numpy, data bytes) of a string / large_string array (offset applied to
    the offsets; data at least 8 bytes)."""
    import pyarrow as pa

    b = arr.buffers()
    ot = np.int64 if pa.types.is_large_string(arr.type) else np.int32
    n = len(arr)
    offs = np.frombuffer(b[1], ot)[arr.offset:arr.offset + n + 1] if b[1] is not None else np.zeros(n + 1, ot)
    data = np.frombuffer(b[2], np.uint8) if b[2] is not None and b[2].size else _NODATA
    return offs, data


_NODATA = np.zeros(8, np.uint8)

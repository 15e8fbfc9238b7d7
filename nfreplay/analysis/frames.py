"""ReplayOutput -> the contract's DataFrames (contracts §3): packets, rules, flows, events.

Pure pandas/numpy, vectorised: codes become categoricals through lookup tables, addresses are turned
into text once per distinct address (not once per packet), times become datetime64[ns, UTC].
"""

from __future__ import annotations

import ipaddress
import logging

import numpy as np
import pandas as pd

from ..replay import codes
from ..replay.result import FLOW_END_NAMES, ROUTE_REASONS

log = logging.getLogger(__name__)

__all__ = ["packets_frame", "rules_frame", "flows_frame", "events_frame", "addresses_text",
           "tcp_flags_text", "path_text", "status_text", "PACKET_FRAME_COLUMNS", "RULE_FRAME_COLUMNS",
           "FLOW_FRAME_COLUMNS", "EVENT_FRAME_COLUMNS", "OUTCOME_CATEGORIES", "CT_STATE_CATEGORIES"]

# Column order of every table (the contract's columns first, then extensions).
PACKET_FRAME_COLUMNS = (
    "index", "ts", "family", "proto", "src", "dst", "sport", "dport", "icmp_type", "icmp_code", "icmp_id",
    "len", "tcp_flags", "in_iface", "out_iface", "path", "outcome", "reason", "verdict_table",
    "verdict_chain", "verdict_rule", "rule_id", "ct_id", "ct_state", "ct_dir", "tcp_state",
    "invalid_reason", "out_src", "out_dst", "out_sport", "out_dport", "mark", "ct_mark",
    # extensions
    "verdict_hook", "reject_with", "nat", "payload_len", "tcp_seq", "tcp_ack", "tcp_win", "ip_csum", "l4_csum",
    "reject_src", "reject_dst", "reject_sport", "reject_dport", "reject_iface",
)
RULE_FRAME_COLUMNS = ("rule_id", "family", "table", "chain", "rule_num", "text", "source", "packets", "bytes",
                      "hook", "kind", "unsupported", "provenance")
FLOW_FRAME_COLUMNS = (
    "ct_id", "family", "proto", "orig_src", "orig_dst", "orig_sport", "orig_dport", "reply_src", "reply_dst",
    "reply_sport", "reply_dport", "nat", "first_ts", "last_ts", "packets_orig", "bytes_orig", "packets_reply",
    "bytes_reply", "final_state", "assured", "end", "first_packet", "last_packet",
    # extensions
    "conn_state", "history", "service", "status", "zone", "mark", "end_ts", "duration_s",
)
EVENT_FRAME_COLUMNS = ("ct_id", "packet_index", "ts", "event", "tcp_state", "status", "timeout_s")

OUTCOME_CATEGORIES = list(codes.OUTCOME_NAMES[1:])
CT_STATE_CATEGORIES = list(codes.CT_STATE_NAMES[1:])
CT_DIR_CATEGORIES = ["ORIGINAL", "REPLY"]
TCP_STATE_CATEGORIES = list(codes.TCP_STATE_NAMES[1:])
NAT_CATEGORIES = ["SNAT", "DNAT", "both"]
CSUM_CATEGORIES = ["unknown", "good", "bad"]
HOOK_CATEGORIES = list(codes.HOOK_NAMES)
_TCP_LETTERS = ((codes.TCP_FIN, "F"), (codes.TCP_SYN, "S"), (codes.TCP_RST, "R"), (codes.TCP_PSH, "P"),
                (codes.TCP_ACK, "A"), (codes.TCP_URG, "U"), (codes.TCP_ECE, "E"), (codes.TCP_CWR, "C"))
_UTC = "UTC"


# ------------------------------------------------------------------ small vectorised helpers
def _code_dtype(k: int):
    return np.int8 if k < 128 else np.int16 if k < 32768 else np.int32


def _map_small_ints(values, fn, dtype) -> np.ndarray:
    """fn(v) for every element of an integer array, cast to dtype. For dtypes of at most 16 bits fn runs
    once over every possible value (a 256 / 65536 entry lookup table), not once per row in int64.
    fn takes and returns int64 arrays."""
    c = np.asarray(values)
    if c.dtype.kind in "iu" and c.dtype.itemsize <= 2:
        ut = np.uint8 if c.dtype.itemsize == 1 else np.uint16
        every = np.arange(1 << (8 * c.dtype.itemsize), dtype=np.int64).astype(ut).view(c.dtype).astype(np.int64)
        return np.asarray(fn(every)).astype(dtype)[c.view(ut)]
    return np.asarray(fn(c.astype(np.int64))).astype(dtype)


def _category_codes(codes_arr: np.ndarray, names, *, none_value=None, shift: int = 0) -> np.ndarray:
    """int codes (minus shift) -> positions in names (-1: code == none_value or out of range)."""
    k = len(names)
    c = np.asarray(codes_arr)
    small = c.dtype.kind in "iu" and c.dtype.itemsize <= 2
    key = (k, none_value, shift, c.dtype.str)
    table = _CODE_TABLES.get(key) if small else None
    if table is None:
        def code(v):
            x = v - shift
            if none_value is not None:
                x = np.where(v == none_value, -1, x)
            return np.where((x < 0) | (x >= k), -1, x)

        if not small:
            return _map_small_ints(c, code, _code_dtype(k))
        every = np.arange(1 << (8 * c.dtype.itemsize), dtype=np.int64).astype(
            np.uint8 if c.dtype.itemsize == 1 else np.uint16).view(c.dtype)
        table = _CODE_TABLES[key] = _map_small_ints(every, code, _code_dtype(k))
    return np.take(table, c.view(np.uint8 if c.dtype.itemsize == 1 else np.uint16))  # (faster than table[...])


_CODE_TABLES: dict = {}  # (number of names, none_value, shift, dtype) -> lookup table of _category_codes


def _categorical(codes_arr: np.ndarray, names, *, none_value=None, shift: int = 0) -> pd.Categorical:
    """int codes (minus shift) -> Categorical over names; code == none_value (or out of range) -> NA."""
    names = list(names)
    return pd.Categorical.from_codes(_category_codes(codes_arr, names, none_value=none_value, shift=shift),
                                     dtype=pd.CategoricalDtype(names), validate=False)


def _invalid_codes(r, proto, names) -> tuple[np.ndarray, list[str]]:
    """INVALID reasons as the kernel logs them (conntrack.invalid_log_text: "nf_ct_proto_6: SEQ is over
    upper bound 4276993444 (over the window of the receiver)"): (code per row, -1 where none; the distinct
    texts in order of first appearance). Each distinct (reason, proto, arg) is formatted once."""
    from ..replay.conntrack import invalid_log_text

    reason = np.asarray(r.invalid_reason)
    rows = np.flatnonzero(reason > 0)
    if len(rows) == 0:
        return np.full(len(reason), -1, np.int8), []
    reason = reason[rows].astype(np.int64)
    arg = np.asarray(getattr(r, "invalid_arg", np.zeros(len(r.invalid_reason), np.uint32)))[rows].astype(np.int64)
    # distinct (reason, proto, arg) in order of first appearance; arg is a u32, proto a u8
    key = ((reason << 40) | ((np.asarray(proto)[rows].astype(np.int64) & 0xFF) << 32) | (arg & 0xFFFFFFFF))
    kc, uk = pd.factorize(key)
    text = [(int(k) >> 40, (int(k) >> 32) & 0xFF, int(k) & 0xFFFFFFFF) for k in np.asarray(uk).tolist()]
    cats = [invalid_log_text(*k) if k[0] < len(names) else "" for k in text]
    first = {c: i for i, c in enumerate(dict.fromkeys(cats))}
    pos = np.array([first[c] for c in cats], dtype=np.int64)
    codes_ = np.full(len(r.invalid_reason), -1, np.int64)
    codes_[rows] = pos[kc]
    return codes_, list(first)


_TCP_FLAG_TEXTS = tuple("".join(ch for bit, ch in _TCP_LETTERS if v & bit) or "." for v in range(256))


def _tcp_flag_codes(flags: np.ndarray, is_tcp: np.ndarray | None = None) -> np.ndarray:
    c = (np.asarray(flags) & 0xFF).astype(np.int16)
    if is_tcp is not None:
        c = np.where(is_tcp, c, np.int16(-1))
    return c


def tcp_flags_text(flags: np.ndarray, is_tcp: np.ndarray | None = None) -> pd.Categorical:
    """TCP flag bytes -> 'S', 'SA', 'FPA' (the kernel oracle's letter order F S R P A U E C; '.' none)."""
    return pd.Categorical.from_codes(_tcp_flag_codes(flags, is_tcp), dtype=pd.CategoricalDtype(list(_TCP_FLAG_TEXTS)),
                                     validate=False)


def _path_name(mask: int) -> str:
    hooks = [h for h in range(5) if mask & (1 << h)]
    if codes.Hook.OUTPUT in hooks and codes.Hook.PREROUTING in hooks:  # looped back: out first, then in
        order = [codes.Hook.OUTPUT, codes.Hook.POSTROUTING, codes.Hook.PREROUTING, codes.Hook.INPUT,
                 codes.Hook.FORWARD]
    else:
        order = [codes.Hook.OUTPUT, codes.Hook.PREROUTING, codes.Hook.INPUT, codes.Hook.FORWARD,
                 codes.Hook.POSTROUTING]
    return ",".join(codes.HOOK_NAMES[h] for h in order if h in hooks)


_PATH_TEXTS = tuple(_path_name(m) for m in range(32))  # unique: '' only once (mask 0)


def _path_codes(path_mask: np.ndarray) -> np.ndarray:
    return (np.asarray(path_mask) & 31).astype(np.int8)


def path_text(path_mask: np.ndarray) -> pd.Categorical:
    """Bitmask of hooks (1 << Hook) -> 'PREROUTING,FORWARD,POSTROUTING' in traversal order ('' none)."""
    return pd.Categorical.from_codes(_path_codes(path_mask), dtype=pd.CategoricalDtype(list(_PATH_TEXTS)),
                                     validate=False)


def _status_codes(status: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """ct status bitmasks -> (code per row, text per distinct status)."""
    codes_, uniq = pd.factorize(np.asarray(status, dtype=np.uint64))
    return codes_, ["|".join(s.name for s in codes.CtStatus if int(u) >> int(s) & 1) for u in np.asarray(uniq).tolist()]


def status_text(status: np.ndarray) -> list[str]:
    """ct status bitmasks -> 'SEEN_REPLY|ASSURED|CONFIRMED' (kernel bit order)."""
    codes_, texts = _status_codes(status)
    return np.array(texts, dtype=object)[codes_].tolist() if len(texts) else []


def _status_str_array(status: np.ndarray):
    """status_text as the pandas "str" array (a pyarrow take of the distinct texts)."""
    import pyarrow as pa

    codes_, texts = _status_codes(status)
    return _str_array_from_arrow(pa.array(texts, pa.large_string()).take(codes_))


# Address text: every distinct address is formatted once, vectorised (pyarrow compute over the distinct
# values), and the per-packet column is a take() of those texts by code, so no per-packet Python object is
# made. Texts equal ipaddress's str() (tests/analysis/test_frames.py checks them against it).
_DEC_TEXT = None   # pa.array of "0".."255"
_HEX_TEXT = None   # pa.array of "0".."ffff"


def _dec_text():
    global _DEC_TEXT
    if _DEC_TEXT is None:
        import pyarrow as pa

        _DEC_TEXT = pa.array([str(i) for i in range(256)], pa.large_string())
    return _DEC_TEXT


def _hex_text():
    global _HEX_TEXT
    if _HEX_TEXT is None:
        import pyarrow as pa

        _HEX_TEXT = pa.array([f"{i:x}" for i in range(65536)], pa.large_string())
    return _HEX_TEXT


def _v4_texts(u: np.ndarray):
    """Distinct IPv4 addresses (uint64 holding 32 bits) -> pa.large_string array of dotted quads."""
    import pyarrow as pa
    import pyarrow.compute as pc

    dec = _dec_text()
    parts = [dec.take(((u >> np.uint64(s)) & np.uint64(0xFF)).astype(np.int32)) for s in (24, 16, 8, 0)]
    return pc.binary_join_element_wise(*parts, pa.scalar(".", pa.large_string()))


def _v6_texts(uh: np.ndarray, ul: np.ndarray):
    """Distinct IPv6 addresses (hi, lo uint64) -> pa.large_string array, RFC 5952 / ipaddress style: hextets
    in lower-case hex without leading zeros, the first longest run of >= 2 zero hextets as '::'.
    v4-mapped addresses (::ffff:a.b.c.d) go through ipaddress itself (its text for them changed in 3.13)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    m = len(uh)
    hx = np.empty((m, 8), dtype=np.int32)
    for i in range(4):
        hx[:, i] = ((uh >> np.uint64(48 - 16 * i)) & np.uint64(0xFFFF)).astype(np.int32)
        hx[:, 4 + i] = ((ul >> np.uint64(48 - 16 * i)) & np.uint64(0xFFFF)).astype(np.int32)
    # the first longest run of zero hextets (ipaddress._compress_hextets)
    cur = np.zeros(m, np.int64)
    best_len = np.zeros(m, np.int64)
    best_start = np.zeros(m, np.int64)
    for i in range(8):
        cur = np.where(hx[:, i] == 0, cur + 1, 0)
        better = cur > best_len
        best_len = np.where(better, cur, best_len)
        best_start = np.where(better, i - cur + 1, best_start)
    compress = best_len > 1
    hexes = _hex_text()
    empty = pa.array([""], pa.large_string())
    parts = []
    for i in range(8):
        in_run = compress & (best_start <= i) & (i < best_start + best_len)
        parts.append(pc.if_else(pa.array(in_run), empty[0], hexes.take(hx[:, i])))
    # the emptied run leaves >= 2 adjacent ':' (only there): collapse them to '::'
    txt = pc.replace_substring_regex(pc.binary_join_element_wise(*parts, pa.scalar(":", pa.large_string())),
                                     ":{2,}", "::")
    mapped = np.flatnonzero((uh == 0) & ((ul >> np.uint64(32)) == np.uint64(0xFFFF)))
    if len(mapped):
        t = np.array(txt.to_numpy(zero_copy_only=False), dtype=object)
        t[mapped] = [str(ipaddress.IPv6Address(int(x))) for x in ul[mapped].tolist()]
        txt = pa.array(t, pa.large_string())
    return txt


def _address_codes(hi: np.ndarray, lo: np.ndarray, family: np.ndarray, valid: np.ndarray | None = None):
    """(hi, lo, family[, valid]) -> (codes, texts): texts (pa.large_string) holds '' then every distinct
    address once; codes (int64) indexes texts per row (0 where family is neither 4 nor 6 or not valid)."""
    import pyarrow as pa

    fam = np.asarray(family)
    if valid is not None:
        fam = np.where(valid, fam, 0)
    n = len(fam)
    lo = np.asarray(lo, dtype=np.uint64)
    hi = np.asarray(hi, dtype=np.uint64)
    pieces = [pa.array([""], pa.large_string())]
    codes_ = np.zeros(n, dtype=np.int64)
    base = 1
    is4 = fam == 4
    all4 = n > 0 and bool(is4.all())
    v4 = None if all4 else np.flatnonzero(is4)
    if all4 or len(v4):
        c, u = pd.factorize((lo if all4 else lo[v4]).astype(np.uint32))  # the low 32 bits
        if all4:
            codes_ = c.astype(np.int64) + base
        else:
            codes_[v4] = c + base
        pieces.append(_v4_texts(np.asarray(u, dtype=np.uint64)))
        base += len(u)
    v6 = np.empty(0, np.int64) if all4 else np.flatnonzero(fam == 6)
    if len(v6):
        h, l = hi[v6], lo[v6]
        ch, uh = pd.factorize(h)
        cl, ul = pd.factorize(l)
        w = max(len(ul), 1)
        c, up = pd.factorize(ch.astype(np.int64) * w + cl)
        codes_[v6] = c + base
        pieces.append(_v6_texts(np.asarray(uh, dtype=np.uint64)[up // w], np.asarray(ul, dtype=np.uint64)[up % w]))
    texts = pa.concat_arrays(pieces) if len(pieces) > 1 else pieces[0]
    return codes_, texts


def addresses_text(hi: np.ndarray, lo: np.ndarray, family: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """(hi, lo, family) arrays -> object array of address strings ('' where family is 0 or not valid).

    Each distinct address is converted once (hash factorisation, then vectorised formatting), so this is
    fast on captures with few hosts relative to packets."""
    codes_, texts = _address_codes(hi, lo, family, valid)
    return np.array(texts.to_numpy(zero_copy_only=False), dtype=object)[codes_]


def _address_str_array(hi, lo, family, valid=None):
    """As addresses_text, as the pandas "str" extension array (built by a pyarrow take, no Python objects)."""
    codes_, texts = _address_codes(hi, lo, family, valid)
    return _str_array_from_arrow(texts.take(codes_))


_STR_DTYPE = pd.Series([], dtype="str").dtype


def _str_array_from_arrow(arr):
    """A pyarrow string array -> the same array as _str_series(values).array (pandas "str" dtype)."""
    if getattr(_STR_DTYPE, "storage", None) == "pyarrow":
        return pd.arrays.ArrowStringArray(arr, dtype=_STR_DTYPE)
    return _str_series(arr.to_numpy(zero_copy_only=False)).array


def _str_series(values, index=None) -> pd.Series:
    return pd.Series(values, index=index, dtype="str")


def _ts(ns: np.ndarray) -> pd.DatetimeIndex:
    return pd.to_datetime(np.asarray(ns, dtype=np.int64), unit="ns", utc=True)


def _nullable(values: np.ndarray, valid: np.ndarray, dtype: str) -> pd.arrays.IntegerArray:
    """A pandas nullable integer array (dtype 'UInt16', 'Int32', ...): NA where not valid."""
    valid = np.broadcast_to(np.asarray(valid, dtype=bool), np.shape(values))
    data = np.where(valid, np.asarray(values), 0).astype(dtype.lower())
    return pd.arrays.IntegerArray(data, ~valid)


def _rule_lookup(out, rule_ids: np.ndarray):
    """compiled rule ids -> (table and chain name per rule id + a last '' entry, rule_num per row, rule id
    per row (n_rules where not valid), valid per row)."""
    rules = out.rules
    n_rules = len(rules)
    tables = np.array([r.get("table", "") for r in rules] + [""], dtype=object)
    chains = np.array([r.get("chain", "") for r in rules] + [""], dtype=object)
    nums = np.array([int(r.get("rule_num", 0)) for r in rules] + [0], dtype=np.int64)
    rid = np.asarray(rule_ids, dtype=np.int64)
    valid = (rid >= 0) & (rid < n_rules)
    idx = np.where(valid, rid, n_rules)
    return tables, chains, nums[idx], idx, valid


def _rule_codes(idx: np.ndarray, valid: np.ndarray, names: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """names[idx] as (code per row, -1 where not valid; categories): the same as pd.Categorical(np.where(
    valid, names[idx], None)) (categories: the sorted names present), computed on the rules used, not per row."""
    used = np.flatnonzero(np.bincount(idx[valid], minlength=len(names)))
    cats = sorted(set(names[used].tolist()))
    pos = {c: i for i, c in enumerate(cats)}
    per_rule = np.full(len(names), -1, dtype=_code_dtype(len(cats)))
    per_rule[used] = [pos[c] for c in names[used].tolist()]
    return np.where(valid, per_rule[idx], per_rule.dtype.type(-1)), cats


def _rule_categorical(idx: np.ndarray, valid: np.ndarray, names: np.ndarray) -> pd.Categorical:
    c, cats = _rule_codes(idx, valid, names)
    return pd.Categorical.from_codes(c, categories=pd.Index(cats, dtype=object if not cats else None))


# ------------------------------------------------------------------ Arrow columns
# The packets and events tables are built as pyarrow Tables straight from the result arrays (numpy and
# pyarrow bulk operations, which release the GIL: the streaming run builds them in its writer thread beside
# the replay), and packets_frame / events_frame are their to_pandas(). Each column is defined once, here.
# Types are those pandas gives the frame (pa.Schema.from_pandas): categoricals are dictionary arrays with
# pandas' index width and large_string values (null-typed when there are no categories), nullable integers
# are integer arrays with a validity bitmap (their pandas dtype, e.g. "UInt16", is in the table's
# _NULLABLE map and goes into the pandas metadata), text is large_string.
_DICT_VALUES: dict = {}


def _dictionary(categories):
    import pyarrow as pa

    key = tuple(categories)
    d = _DICT_VALUES.get(key)
    if d is None:
        d = pa.array(list(key), pa.large_string()) if key else pa.array([], pa.null())
        if len(_DICT_VALUES) > 256:
            _DICT_VALUES.clear()
        _DICT_VALUES[key] = d
    return d


def _validity(valid: np.ndarray):
    """bool array -> an Arrow validity buffer, or None when every row is valid."""
    import pyarrow as pa

    if valid.all():
        return None
    return pa.py_buffer(np.packbits(valid, bitorder="little"))


def _a_dict(codes_arr: np.ndarray, categories):
    """codes (-1: NA) -> DictionaryArray over categories, indexed as pandas indexes them (int8 below 127
    categories, then int16, int32)."""
    import pyarrow as pa

    k = len(categories)
    it = np.int8 if k < 127 else np.int16 if k < 32767 else np.int32
    c = np.ascontiguousarray(codes_arr, dtype=it)
    ind = pa.Array.from_buffers(pa.from_numpy_dtype(it), len(c), [_validity(c >= 0), pa.py_buffer(c)])
    return pa.DictionaryArray.from_arrays(ind, _dictionary(categories), safe=False)


def _a_nullable(values: np.ndarray, valid: np.ndarray, dtype: str):
    """A nullable integer column (pandas dtype 'UInt16', 'Int32', ...): NA where not valid."""
    import pyarrow as pa

    nt = np.dtype(dtype.lower())
    v = np.ascontiguousarray(values, dtype=nt)
    return pa.Array.from_buffers(pa.from_numpy_dtype(nt), len(v), [_validity(np.asarray(valid, dtype=bool)),
                                                                     pa.py_buffer(v)])


def _a_plain(values: np.ndarray, dtype):
    import pyarrow as pa

    return pa.array(np.ascontiguousarray(values, dtype=dtype))


def _a_ts(ns: np.ndarray):
    import pyarrow as pa

    v = np.ascontiguousarray(ns, dtype=np.int64)
    return pa.Array.from_buffers(pa.timestamp("ns", tz=_UTC), len(v), [None, pa.py_buffer(v)])


class _Addresses:
    """The address columns of one table: each column is coded against one table of the distinct addresses
    (replay.tables.address_codes, one nogil pass per column), the distinct ones are formatted once
    (_v4_texts / _v6_texts), and each column is a take of those texts."""

    def __init__(self):
        from ..replay.tables import new_address_table

        self._t = new_address_table()
        self.codes: list = []  # per add(): the code of each row's address (0: none)
        self._cols: list = []  # per add(): its (hi, lo)
        self._none = np.zeros(0, dtype=bool)

    def add(self, hi, lo, family, valid=None, like: int | None = None) -> int:
        """Code a column; like: the number of an earlier add() with the same family array whose rows this
        column's rows often equal (rows equal to theirs reuse their codes: no hash lookup)."""
        from ..replay.tables import address_codes

        if like is None:
            rh, rl, rc = np.zeros(0, np.uint64), np.zeros(0, np.uint64), np.zeros(0, np.int32)
        else:
            (rh, rl), rc = self._cols[like], self.codes[like]
        c, *self._t = address_codes(hi, lo, family, self._none if valid is None else np.asarray(valid, bool),
                                    valid is not None, rh, rl, rc, like is not None, *self._t)
        self.codes.append(c)
        self._cols.append((hi, lo))
        return len(self.codes) - 1

    def columns(self) -> list:
        """The large_string column of every add(), in order."""
        import pyarrow as pa

        texts = self._texts()
        return [texts.take(pa.array(c)) for c in self.codes]

    def dictionaries(self) -> list:
        """The column of every add() as a dictionary<int32, large_string> array (the codes over the texts of
        every distinct address of the table, one dictionary shared by the columns)."""
        import pyarrow as pa

        texts = self._texts()
        return [pa.DictionaryArray.from_arrays(pa.array(c), texts) for c in self.codes]

    def _texts(self):
        """The text of each distinct address, by code (code 0: '')."""
        import pyarrow as pa

        _slots, u_hi, u_lo, u_fam, n_u = self._t
        fam = u_fam[:n_u]
        v4 = np.flatnonzero(fam == 4)
        v6 = np.flatnonzero(fam == 6)
        pieces = [pa.array([""], pa.large_string())]
        if len(v4):
            pieces.append(_v4_texts(u_lo[v4]))
        if len(v6):
            pieces.append(_v6_texts(u_hi[v6], u_lo[v6]))
        order = np.zeros(n_u, np.int32)  # entry -> position in the concatenated texts
        order[v4] = np.arange(1, 1 + len(v4), dtype=np.int32)
        order[v6] = np.arange(1 + len(v4), 1 + len(v4) + len(v6), dtype=np.int32)
        return (pa.concat_arrays(pieces) if len(pieces) > 1 else pieces[0]).take(pa.array(order))


def _a_status(status: np.ndarray):
    import pyarrow as pa

    codes_, texts = _status_codes(status)
    return pa.array(texts, pa.large_string()).take(pa.array(codes_))


_PANDAS_SCHEMAS: dict = {}  # _pandas_schema's, by (Arrow schema, nullable, dictionary sizes): ~17 ms each


def _pandas_schema(table, nullable: dict):
    """The schema pa.Schema.from_pandas gives the frame of `table` (with its pandas metadata), built from
    a zero-row frame: each column's pandas dtype is that of its Arrow type, or nullable[name]. Cached: the
    metadata depends on the Arrow types and the number of categories of each dictionary column only."""
    import pyarrow as pa

    sizes = tuple(sum(len(ch.dictionary) for ch in table.column(i).chunks)
                  for i, f in enumerate(table.schema) if pa.types.is_dictionary(f.type))
    key = (table.schema, tuple(sorted(nullable.items())), sizes)
    got = _PANDAS_SCHEMAS.get(key)
    if got is None:
        if len(_PANDAS_SCHEMAS) >= 256:
            _PANDAS_SCHEMAS.clear()
        got = _PANDAS_SCHEMAS[key] = _pandas_schema_uncached(table, nullable)
    return got


def _pandas_schema_uncached(table, nullable: dict):
    import pyarrow as pa

    cols = {}
    for name in table.column_names:
        if name in nullable:
            cols[name] = pd.Series(pd.array([], dtype=nullable[name]))
        else:
            cols[name] = table.column(name).slice(0, 0).to_pandas()
    return pa.Schema.from_pandas(pd.DataFrame(cols, columns=table.column_names), preserve_index=False)


def table_to_frame(table, nullable: dict) -> pd.DataFrame:
    """A table of packets_table / events_table as its pandas frame (nullable integer columns as "UInt16",
    "Int32"...: their dtypes come from the pandas metadata)."""
    sch = _pandas_schema(table, nullable)
    return table.replace_schema_metadata(sch.metadata).to_pandas()


# ------------------------------------------------------------------ packets
PACKET_NULLABLE = {
    "sport": "UInt16", "dport": "UInt16", "icmp_type": "UInt8", "icmp_code": "UInt8", "icmp_id": "UInt16",
    "verdict_rule": "Int32", "rule_id": "Int32", "ct_id": "Int32", "out_sport": "UInt16", "out_dport": "UInt16",
    "tcp_seq": "UInt32", "tcp_ack": "UInt32", "tcp_win": "UInt16", "reject_sport": "UInt16",
    "reject_dport": "UInt16",
}
EVENT_NULLABLE = {"packet_index": "Int64"}


ADDRESS_COLUMNS = ("src", "dst", "out_src", "out_dst", "reject_src", "reject_dst")  # in the order of addrs.add


def packets_table(out, offset: int = 0, *, address_dictionaries: bool = False, rows=None, columns=None):
    """packets_frame as a pyarrow Table (no pandas metadata; see table_to_frame). offset: added to `index`
    (the streaming run's global packet number of the chunk's first packet). address_dictionaries: the
    address columns (ADDRESS_COLUMNS) as dictionary<int32, large_string> arrays over the step's distinct
    addresses (no per-row take of the texts; the streaming writer writes them as dictionary-encoded text
    columns, which read back as text).

    rows: the positions (ascending) of the packets to put in the table (default: all); their `index` is
    offset + position, and every column equals the full table's row. columns: the columns to build, in
    that order (default: PACKET_FRAME_COLUMNS); the others cost nothing."""
    import pyarrow as pa

    p, r = out.packets, out.results
    if rows is not None:
        rows = np.asarray(rows, dtype=np.int64)
        p = type(p)(*[np.asarray(c)[rows] for c in p])
        r = type(r)(*[np.asarray(c)[rows] for c in r])
    want = list(PACKET_FRAME_COLUMNS if columns is None else columns)
    n = len(p.ts_ns)
    proto = np.asarray(p.proto)
    family = np.asarray(p.family)
    fam_ok = family > 0
    is_tcp = (proto == codes.IPPROTO_TCP) & fam_ok
    is_icmp = ((proto == codes.IPPROTO_ICMP) | (proto == codes.IPPROTO_ICMPV6)) & fam_ok
    outcome = np.asarray(r.outcome)
    left = ((outcome == codes.Outcome.FORWARDED) | (outcome == codes.Outcome.EMITTED)) & fam_ok
    has_ports = ((proto == codes.IPPROTO_TCP) | (proto == codes.IPPROTO_UDP) | (proto == codes.IPPROTO_UDPLITE)
                 | (proto == codes.IPPROTO_SCTP))
    ifnames = list(out.iface_names)
    rule_lookup = []  # _rule_lookup(...), made by the first rule column built

    def rl(i):
        if not rule_lookup:
            rule_lookup.extend(_rule_lookup(out, r.verdict_rule))
        return rule_lookup[i]

    reason_names = ["" for _ in range(128)]
    for i, nm in enumerate(codes.PKT_STATUS_NAMES):
        reason_names[i] = nm if i else ""
    for k, nm in ROUTE_REASONS.items():
        reason_names[k] = nm
    reason_cats = list(dict.fromkeys(reason_names))
    reason_pos = {nm: i for i, nm in enumerate(reason_cats)}
    reason_map = np.array([reason_pos[nm] for nm in reason_names], dtype=np.int64)
    reason_col = np.where(outcome == codes.Outcome.NOT_REPLAYED,
                          _map_small_ints(r.reason, lambda v: reason_map[np.clip(v, 0, 127)], np.int8),
                          np.int8(reason_map[0]))
    inv_names = list(out.invalid_reasons) if out.invalid_reasons else [""]
    nat_flags = np.asarray(r.nat_flags) & 3
    ct_id = np.asarray(r.ct_id)
    sent = np.asarray(r.reject_iface) >= 0
    rk = list(out.reject_kinds)
    rst = np.asarray(r.reject_kind) == (rk.index("tcp-reset") if "tcp-reset" in rk else -1)
    ports_ok = has_ports & fam_ok

    def nul(name, v, valid):
        return _a_nullable(v, valid, PACKET_NULLABLE[name])

    def cat(v, names, **kw):
        return _a_dict(_category_codes(v, names, **kw), names)

    cols = {
        "index": lambda: pa.array(np.arange(offset, offset + n, dtype=np.int64) if rows is None else rows + offset),
        "ts": lambda: _a_ts(p.ts_ns),
        "family": lambda: _a_plain(family, np.uint8),
        "proto": lambda: _a_plain(proto, np.uint8),
        "src": None,
        "dst": None,
        "sport": lambda: nul("sport", p.sport, ports_ok),
        "dport": lambda: nul("dport", p.dport, ports_ok),
        "icmp_type": lambda: nul("icmp_type", p.icmp_type, is_icmp),
        "icmp_code": lambda: nul("icmp_code", p.icmp_code, is_icmp),
        "icmp_id": lambda: nul("icmp_id", p.icmp_id, is_icmp),
        "len": lambda: _a_plain(p.ip_len, np.int32),
        "tcp_flags": lambda: _a_dict(_tcp_flag_codes(p.tcp_flags, is_tcp), _TCP_FLAG_TEXTS),
        "in_iface": lambda: cat(r.in_iface, ifnames),
        "out_iface": lambda: cat(r.out_iface, ifnames),
        "path": lambda: _a_dict(_path_codes(r.path), _PATH_TEXTS),
        "outcome": lambda: cat(outcome, OUTCOME_CATEGORIES, shift=1),
        "reason": lambda: _a_dict(reason_col, reason_cats),
        "verdict_table": lambda: _a_dict(*_rule_codes(rl(3), rl(4), rl(0))),
        "verdict_chain": lambda: _a_dict(*_rule_codes(rl(3), rl(4), rl(1))),
        "verdict_rule": lambda: nul("verdict_rule", rl(2), rl(4)),
        "rule_id": lambda: nul("rule_id", r.verdict_rule, rl(4)),
        "ct_id": lambda: nul("ct_id", ct_id, ct_id >= 0),
        "ct_state": lambda: cat(r.ct_state, CT_STATE_CATEGORIES, shift=1),
        "ct_dir": lambda: cat(r.ct_dir, CT_DIR_CATEGORIES),
        "tcp_state": lambda: cat(r.tcp_state, TCP_STATE_CATEGORIES, shift=1),
        "invalid_reason": lambda: _a_dict(*_invalid_codes(r, proto, inv_names)),
        "out_src": None,
        "out_dst": None,
        "out_sport": lambda: nul("out_sport", r.out_sport, left & (has_ports | is_icmp)),
        "out_dport": lambda: nul("out_dport", r.out_dport, left & has_ports),
        "mark": lambda: _a_plain(r.mark, np.uint32),
        "ct_mark": lambda: _a_plain(r.ct_mark, np.uint32),
        "verdict_hook": lambda: cat(r.verdict_hook, HOOK_CATEGORIES),
        "reject_with": lambda: cat(r.reject_kind, list(out.reject_kinds) or [""], none_value=0),
        "nat": lambda: cat(nat_flags, NAT_CATEGORIES, shift=1),
        "payload_len": lambda: _a_plain(p.payload_len, np.int32),
        "tcp_seq": lambda: nul("tcp_seq", p.tcp_seq, is_tcp),
        "tcp_ack": lambda: nul("tcp_ack", p.tcp_ack, is_tcp),
        "tcp_win": lambda: nul("tcp_win", p.tcp_win, is_tcp),
        "ip_csum": lambda: cat(p.ip_csum, CSUM_CATEGORIES),
        "l4_csum": lambda: cat(p.l4_csum, CSUM_CATEGORIES),
        # the REJECT response as it left (after the NAT core); empty when none left
        "reject_src": None,
        "reject_dst": None,
        "reject_sport": lambda: nul("reject_sport", r.reject_sport, sent & rst),
        "reject_dport": lambda: nul("reject_dport", r.reject_dport, sent & rst),
        "reject_iface": lambda: cat(r.reject_iface, ifnames),
    }
    if any(c in ADDRESS_COLUMNS for c in want):
        addrs = _Addresses()
        src = addrs.add(p.src_hi, p.src_lo, family)  # src
        dst = addrs.add(p.dst_hi, p.dst_lo, family)  # dst
        addrs.add(r.out_src_hi, r.out_src_lo, family, left, like=src)  # out_src (= src unless SNAT)
        addrs.add(r.out_dst_hi, r.out_dst_lo, family, left, like=dst)  # out_dst (= dst unless DNAT)
        addrs.add(r.reject_src_hi, r.reject_src_lo, family, sent)  # reject_src
        addrs.add(r.reject_dst_hi, r.reject_dst_lo, family, sent)  # reject_dst
        for name, col in zip(ADDRESS_COLUMNS, addrs.dictionaries() if address_dictionaries else addrs.columns()):
            cols[name] = (lambda c: lambda: c)(col)
    return pa.table([cols[c]() for c in want], names=want)


def packets_frame(out) -> pd.DataFrame:
    """One row per captured packet, contracts §3 `packets` plus extensions (see PACKET_FRAME_COLUMNS)."""
    return table_to_frame(packets_table(out), PACKET_NULLABLE)


# ------------------------------------------------------------------ rules
def rules_frame(out, provenance: list[str] | None = None) -> pd.DataFrame:
    """One row per rule and per built-in chain policy, with the kernel's counters."""
    rules = out.rules
    n = len(rules)
    rp = np.asarray(out.rule_packets, dtype=np.int64)
    rb = np.asarray(out.rule_bytes, dtype=np.int64)
    if provenance is None:
        from .provenance import label_rules

        provenance = label_rules(rules)
    df = pd.DataFrame({
        "rule_id": np.array([int(r.get("rule_id", i)) for i, r in enumerate(rules)], dtype=np.int32),
        "family": pd.Categorical([r.get("family", "") for r in rules]),
        "table": pd.Categorical([r.get("table", "") for r in rules]),
        "chain": pd.Categorical([r.get("chain", "") for r in rules]),
        "rule_num": np.array([int(r.get("rule_num", 0)) for r in rules], dtype=np.int32),
        "text": _str_series([r.get("text", "") for r in rules]).array,
        "source": _str_series([r.get("source", "") for r in rules]).array,
        "packets": rp[:n] if len(rp) >= n else np.zeros(n, np.int64),
        "bytes": rb[:n] if len(rb) >= n else np.zeros(n, np.int64),
        "hook": pd.Categorical([_hook_name(r.get("hook")) for r in rules]),
        "kind": pd.Categorical([r.get("kind", "rule") for r in rules], categories=["rule", "policy"]),
        "unsupported": _str_series([r.get("unsupported", "") or "" for r in rules]).array,
        "provenance": pd.Categorical(list(provenance)),
    }, columns=list(RULE_FRAME_COLUMNS))
    return df


def _hook_name(h) -> str:
    if h is None or h == "":
        return ""
    if isinstance(h, str):
        return h.upper()
    h = int(h)
    return codes.HOOK_NAMES[h] if 0 <= h < 5 else ""


# ------------------------------------------------------------------ flows
def _service_one(pr: int, dp: int) -> str:
    names = {codes.IPPROTO_TCP: "tcp", codes.IPPROTO_UDP: "udp", codes.IPPROTO_ICMP: "icmp",
             codes.IPPROTO_ICMPV6: "icmpv6", codes.IPPROTO_SCTP: "sctp", codes.IPPROTO_UDPLITE: "udplite",
             codes.IPPROTO_GRE: "gre", codes.IPPROTO_ESP: "esp", codes.IPPROTO_AH: "ah"}
    nm = names.get(pr, str(pr))
    if pr in (codes.IPPROTO_TCP, codes.IPPROTO_UDP, codes.IPPROTO_SCTP, codes.IPPROTO_UDPLITE):
        return f"{nm}/{dp}"
    if pr in (codes.IPPROTO_ICMP, codes.IPPROTO_ICMPV6):
        return f"{nm}/{dp >> 8}"
    return nm


def _service_codes(proto: np.ndarray, dport: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """(code per row, text per distinct (proto, dport) pair): each pair is formatted once."""
    key = (np.asarray(proto).astype(np.int64) << 32) | (np.asarray(dport).astype(np.int64) & 0xFFFFFFFF)
    c, u = pd.factorize(key)
    return c, [_service_one(k >> 32, k & 0xFFFFFFFF) for k in np.asarray(u).tolist()]


def _service(proto: np.ndarray, dport: np.ndarray) -> list[str]:
    c, texts = _service_codes(proto, dport)
    return np.array(texts, dtype=object)[c].tolist() if len(texts) else []


def _service_categorical(proto: np.ndarray, dport: np.ndarray) -> pd.Categorical:
    """pd.Categorical(_service(proto, dport)) (sorted categories), built from the distinct pairs."""
    c, texts = _service_codes(proto, dport)
    small = pd.Categorical(np.array(texts, dtype=object))
    return pd.Categorical.from_codes(small.codes[c] if len(texts) else c, dtype=small.dtype)


def service_names(proto: np.ndarray, dport: np.ndarray) -> list[str]:
    """'tcp/22', 'udp/53', 'icmp/8' (ICMP: orig_dport holds type << 8 | code), 'gre'."""
    return _service(proto, dport)


def flows_frame(out, histories: pd.DataFrame | None = None) -> pd.DataFrame:
    """One row per conntrack entry lifetime (row = ct_id), with Zeek-style conn_state and history."""
    f = out.flows
    n = len(f["family"]) if f else 0
    if n == 0:
        return _empty_flows_frame()
    fam = np.asarray(f["family"])
    proto = np.asarray(f["proto"])
    addrs = _Addresses()
    for k in ("orig_src", "orig_dst", "reply_src", "reply_dst"):
        addrs.add(f[k + "_hi"], f[k + "_lo"], fam)
    osrc_c, odst_c, rsrc_c, rdst_c = addrs.codes  # one code per distinct address: equal codes = equal texts
    osrc, odst, rsrc, rdst = (_str_array_from_arrow(a) for a in addrs.columns())
    status = np.asarray(f["status"]).astype(np.int64)
    osp, odp = np.asarray(f["orig_sport"]), np.asarray(f["orig_dport"])
    rsp, rdp = np.asarray(f["reply_sport"]), np.asarray(f["reply_dport"])
    is_icmp = np.isin(proto, (codes.IPPROTO_ICMP, codes.IPPROTO_ICMPV6))
    # SNAT: the reply goes to a different address/port than the original came from.
    snat = ((status >> codes.CtStatus.SRC_NAT) & 1).astype(bool) | (rdst_c != osrc_c) | (~is_icmp & (rdp != osp))
    dnat = ((status >> codes.CtStatus.DST_NAT) & 1).astype(bool) | (rsrc_c != odst_c) | (~is_icmp & (rsp != odp))
    nat_code = snat.astype(np.int64) + 2 * dnat.astype(np.int64) - 1
    tcp_final = np.asarray(f["final_tcp_state"]).astype(np.int64)
    final_state = np.where(proto == codes.IPPROTO_TCP, tcp_final - 1, -1)
    end_ts_ns = np.asarray(f["end_ts_ns"], dtype=np.int64)
    first_ns = np.asarray(f["first_ts_ns"], dtype=np.int64)
    last_ns = np.asarray(f["last_ts_ns"], dtype=np.int64)
    states = _zeek_states()
    if histories is not None and len(histories):
        h = histories.reindex(np.arange(n, dtype=np.int32))
        conn_state = pd.Categorical(h["conn_state"].fillna("OTH").to_numpy(), categories=states)
        history = h["history"].fillna("").astype(_STR_DTYPE).array
    else:
        conn_state = pd.Categorical.from_codes(np.full(n, states.index("OTH"), dtype=np.int8), categories=states)
        history = _str_series([""] * n).array
    df = pd.DataFrame({
        "ct_id": np.arange(n, dtype=np.int32),
        "family": fam.astype(np.uint8),
        "proto": proto.astype(np.uint8),
        "orig_src": osrc, "orig_dst": odst,
        "orig_sport": osp.astype(np.uint16), "orig_dport": odp.astype(np.uint16),
        "reply_src": rsrc, "reply_dst": rdst,
        "reply_sport": rsp.astype(np.uint16), "reply_dport": rdp.astype(np.uint16),
        "nat": _categorical(nat_code, NAT_CATEGORIES),
        "first_ts": _ts(first_ns), "last_ts": _ts(last_ns),
        "packets_orig": np.asarray(f["packets_orig"], dtype=np.int64),
        "bytes_orig": np.asarray(f["bytes_orig"], dtype=np.int64),
        "packets_reply": np.asarray(f["packets_reply"], dtype=np.int64),
        "bytes_reply": np.asarray(f["bytes_reply"], dtype=np.int64),
        "final_state": _categorical(final_state, TCP_STATE_CATEGORIES),
        "assured": ((status >> codes.CtStatus.ASSURED) & 1).astype(bool),
        "end": _categorical(np.asarray(f["end"]).astype(np.int64), FLOW_END_NAMES),
        "first_packet": np.asarray(f["first_packet"], dtype=np.int64),
        "last_packet": np.asarray(f["last_packet"], dtype=np.int64),
        "conn_state": conn_state,
        "history": history,
        "service": _service_categorical(proto, odp),
        "status": _status_str_array(status),
        "zone": np.asarray(f["zone"], dtype=np.uint16),
        "mark": np.asarray(f["mark"], dtype=np.uint32),
        "end_ts": pd.Series(_ts(np.where(end_ts_ns >= 0, end_ts_ns, 0))).where(end_ts_ns >= 0).array,
        "duration_s": (last_ns - first_ns) / 1e9,
    }, columns=list(FLOW_FRAME_COLUMNS))
    return df


def _zeek_states():
    from .zeek import CONN_STATES

    return list(CONN_STATES)


def _empty_flows_frame() -> pd.DataFrame:
    """A flows frame with no rows and the same columns and dtypes."""
    cols = {}
    tpl = {
        "ct_id": "int32", "family": "uint8", "proto": "uint8", "orig_src": "str", "orig_dst": "str",
        "orig_sport": "uint16", "orig_dport": "uint16", "reply_src": "str", "reply_dst": "str",
        "reply_sport": "uint16", "reply_dport": "uint16", "packets_orig": "int64", "bytes_orig": "int64",
        "packets_reply": "int64", "bytes_reply": "int64", "assured": "bool", "first_packet": "int64",
        "last_packet": "int64", "history": "str", "status": "str", "zone": "uint16", "mark": "uint32",
        "duration_s": "float64",
    }
    for c in FLOW_FRAME_COLUMNS:
        if c in tpl:
            cols[c] = pd.Series([], dtype=tpl[c])
        elif c in ("first_ts", "last_ts", "end_ts"):
            cols[c] = pd.Series([], dtype="datetime64[ns, UTC]")
        elif c == "nat":
            cols[c] = pd.Categorical([], categories=NAT_CATEGORIES)
        elif c == "final_state":
            cols[c] = pd.Categorical([], categories=TCP_STATE_CATEGORIES)
        elif c == "end":
            cols[c] = pd.Categorical([], categories=list(FLOW_END_NAMES))
        elif c == "conn_state":
            cols[c] = pd.Categorical([], categories=_zeek_states())
        else:
            cols[c] = pd.Categorical([])
    return pd.DataFrame(cols, columns=list(FLOW_FRAME_COLUMNS))


# ------------------------------------------------------------------ events
def events_table(out):
    """events_frame as a pyarrow Table (no pandas metadata; see table_to_frame)."""
    import pyarrow as pa

    e = out.events
    n = len(e["ct_id"]) if e else 0
    if n == 0:
        z = np.zeros(0, np.int64)
        e = {"ct_id": z, "packet_index": z, "ts_ns": z, "event": z, "tcp_state": z, "status": z, "timeout_s": z}
    pi = np.asarray(e["packet_index"], dtype=np.int64)
    cols = {
        "ct_id": _a_plain(e["ct_id"], np.int32),
        "packet_index": _a_nullable(pi, pi >= 0, EVENT_NULLABLE["packet_index"]),
        "ts": _a_ts(e["ts_ns"]),
        "event": _a_dict(_category_codes(e["event"], codes.CT_EVENT_NAMES[1:], shift=1), codes.CT_EVENT_NAMES[1:]),
        "tcp_state": _a_dict(_category_codes(e["tcp_state"], TCP_STATE_CATEGORIES, shift=1), TCP_STATE_CATEGORIES),
        "status": _a_status(e["status"]) if n else pa.array([], pa.large_string()),
        "timeout_s": _a_plain(e["timeout_s"], np.int32),
    }
    return pa.table([cols[c] for c in EVENT_FRAME_COLUMNS], names=list(EVENT_FRAME_COLUMNS))


def events_frame(out) -> pd.DataFrame:
    """The conntrack event stream, as `conntrack -E` shows it."""
    return table_to_frame(events_table(out), EVENT_NULLABLE)

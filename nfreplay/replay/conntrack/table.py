"""The conntrack table (flat numpy arrays), the event log and flow records. Python side only."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from nfreplay.replay.result import EVENT_COLUMNS, FLOW_COLUMNS

# meta[] slots
M_COUNT = 0  # occupied entry slots (unconfirmed + confirmed, incl. expired-not-yet-reaped)
M_NEXT_ID = 1  # next ct_id (flow id) to hand out at confirm
M_FREE_TOP = 2  # number of slots on the free stack
M_MASK = 3  # hash index mask (size - 1)
M_PENDING = 4  # slot of a killed entry still referenced by the current packet (-1 none)
M_FLOW_OVERFLOW = 5  # confirms that found no room for their flow record
M_EARLY_DROP = 6  # entries evicted by early drop
M_TABLE_FULL = 7  # packets dropped because the table was full
M_CSUM_BAD = 8  # bad L4 checksums seen on PREROUTING (counted also when assumed good)
M_INSERT_FAILED = 9  # confirm refused (clash)
M_N_EXPECT = 10  # live expectations
M_HELPER_DROP = 11  # packets dropped by a helper
M_EXPECT_CREATED = 12
M_LEN = 16

# per-entry event cache bits (IPCT_*)
EV_NEW = 1
EV_REPLY = 2
EV_ASSURED = 4
EV_PROTOINFO = 8
EV_HELPER = 16
EV_MARK = 32
EV_RELATED = 64

_ENTRY_FIELDS = (
    # name, dtype, shape suffix
    ("used", "int8", ()),  # 0 free, 1 unconfirmed, 2 confirmed
    ("family", "uint8", ()), ("proto", "uint8", ()), ("zone", "int32", ()),
    ("o_src_hi", "uint64", ()), ("o_src_lo", "uint64", ()), ("o_dst_hi", "uint64", ()),
    ("o_dst_lo", "uint64", ()), ("o_sport", "int32", ()), ("o_dport", "int32", ()),
    ("r_src_hi", "uint64", ()), ("r_src_lo", "uint64", ()), ("r_dst_hi", "uint64", ()),
    ("r_dst_lo", "uint64", ()), ("r_sport", "int32", ()), ("r_dport", "int32", ()),
    ("status", "int64", ()), ("expires", "int64", ()), ("timeout_rel", "int64", ()),
    ("mark", "int64", ()), ("helper", "int8", ()), ("ct_id", "int64", ()), ("master", "int64", ()),
    ("ecache", "int64", ()), ("pk_o", "int64", ()), ("by_o", "int64", ()), ("pk_r", "int64", ()),
    ("by_r", "int64", ()), ("first_ts", "int64", ()), ("last_ts", "int64", ()),
    ("first_pkt", "int64", ()), ("last_pkt", "int64", ()), ("stream_ts", "int64", ()),
    # TCP (struct ip_ct_tcp); seq-space values are kept in int64 holding u32
    ("tcp_state", "int8", ()),
    ("td_end", "int64", (2,)), ("td_maxend", "int64", (2,)), ("td_maxwin", "int64", (2,)),
    ("td_maxack", "int64", (2,)), ("td_scale", "int8", (2,)), ("td_flags", "int32", (2,)),
    ("last_dir", "int8", ()), ("last_index", "int8", ()), ("last_seq", "int64", ()),
    ("last_ack", "int64", ()), ("last_end", "int64", ()), ("last_win", "int64", ()),
    ("last_wscale", "int8", ()), ("last_flags", "int32", ()), ("retrans", "int32", ()),
    # FTP helper: per direction up to 2 "seq after newline"
    ("ftp_seq", "int64", (2, 2)), ("ftp_nseq", "int8", (2,)),
)

_EXPECT_FIELDS = (
    ("e_used", "int8"), ("e_master", "int64"), ("e_master_id", "int64"), ("e_family", "uint8"),
    ("e_proto", "uint8"), ("e_zone", "int32"), ("e_src_hi", "uint64"), ("e_src_lo", "uint64"),
    ("e_dst_hi", "uint64"), ("e_dst_lo", "uint64"), ("e_dport", "int32"), ("e_expires", "int64"),
    ("e_created", "int64"),
)

_FLOW_FIELDS = tuple(("f_" + name, dt) for name, dt, _ in FLOW_COLUMNS)

CtTable = NamedTuple("CtTable", [("meta", np.ndarray), ("hidx", np.ndarray), ("free", np.ndarray)]
                     + [(n, np.ndarray) for n, _, _ in _ENTRY_FIELDS]
                     + [(n, np.ndarray) for n, _ in _EXPECT_FIELDS]
                     + [(n, np.ndarray) for n, _ in _FLOW_FIELDS])
CtTable.__doc__ = """State of the conntrack engine: entries, the hash index over both tuples, expectations,
flow records (indexed by ct_id). State in / state out: pass the same object to every chunk."""


def new_table(capacity: int, flow_capacity: int, expect_capacity: int = 256) -> CtTable:
    """An empty table for at most `capacity` simultaneous entries (size it >= min(nf_conntrack_max,
    number of packets) + 16) and `flow_capacity` flow records (grow with grow_flows)."""
    capacity = max(int(capacity), 16)
    hsize = 1
    while hsize < 4 * capacity:
        hsize <<= 1
    meta = np.zeros(M_LEN, dtype=np.int64)
    meta[M_MASK] = hsize - 1
    meta[M_FREE_TOP] = capacity
    meta[M_PENDING] = -1
    cols = {"meta": meta, "hidx": np.zeros(hsize, dtype=np.int64),
            "free": np.arange(capacity - 1, -1, -1, dtype=np.int64)}
    for name, dt, shape in _ENTRY_FIELDS:
        cols[name] = np.zeros((capacity,) + shape, dtype=dt)
    cols["ct_id"][:] = -1
    cols["master"][:] = -1
    for name, dt in _EXPECT_FIELDS:
        cols[name] = np.zeros(max(int(expect_capacity), 4), dtype=dt)
    for name, dt in _FLOW_FIELDS:
        cols[name] = np.zeros(max(int(flow_capacity), 1), dtype=dt)
    cols["f_end_ts_ns"][:] = -1
    return CtTable(**cols)


def table_capacity_for(ct_max: int, n_packets: int) -> int:
    """Entry capacity that can never run out: each packet creates at most one entry."""
    n = int(n_packets) + 16
    return min(int(ct_max) + 16, n) if ct_max > 0 else n


def grow_flows(tab: CtTable, n_more: int) -> CtTable:
    """Make sure at least n_more further flow records fit (call before each chunk with its length)."""
    need = int(tab.meta[M_NEXT_ID]) + int(n_more)
    cur = len(tab.f_family)
    if need <= cur:
        return tab
    new = max(need, 2 * cur)
    d = tab._asdict()
    for name, _dt in _FLOW_FIELDS:
        a = d[name]
        b = np.zeros(new, dtype=a.dtype)
        if name == "f_end_ts_ns":
            b[:] = -1
        b[:cur] = a
        d[name] = b
    return CtTable(**d)


def n_flows(tab: CtTable) -> int:
    return int(tab.meta[M_NEXT_ID])


class EventLog(NamedTuple):
    ct_id: np.ndarray
    packet_index: np.ndarray
    ts_ns: np.ndarray
    event: np.ndarray
    tcp_state: np.ndarray
    status: np.ndarray
    timeout_s: np.ndarray
    n: np.ndarray  # [0] = rows used, [1] = rows lost because the log was full


assert EventLog._fields[:-1] == tuple(c[0] for c in EVENT_COLUMNS)


def new_event_log(capacity: int) -> EventLog:
    """Preallocated log; size it >= 3 x packets per chunk (+ entries that may expire at finish)."""
    cap = max(int(capacity), 1)
    return EventLog(*(np.zeros(cap, dtype=dt) for _n, dt, _ in EVENT_COLUMNS), n=np.zeros(2, np.int64))


def drain_events(ev: EventLog) -> dict:
    """Copy out the logged events (dict per result.EVENT_COLUMNS) and reset the log."""
    k = int(ev.n[0])
    out = {name: getattr(ev, name)[:k].copy() for name, _dt, _ in EVENT_COLUMNS}
    ev.n[0] = 0
    return out


def concat_events(parts: list[dict]) -> dict:
    if not parts:
        return {name: np.zeros(0, dtype=dt) for name, dt, _ in EVENT_COLUMNS}
    return {name: np.concatenate([p[name] for p in parts]) for name, _dt, _ in EVENT_COLUMNS}


def flows_table(tab: CtTable) -> dict:
    """Flow records (dict per result.FLOW_COLUMNS, row = ct_id). Call ct_finish(tab, end_ns, ev)
    first so that entries expired by the end of the capture are closed."""
    k = min(int(tab.meta[M_NEXT_ID]), len(tab.f_family))
    return {name: getattr(tab, "f_" + name)[:k].copy() for name, _dt, _ in FLOW_COLUMNS}


def counters(tab: CtTable) -> dict:
    m = tab.meta
    return {"entries": int(m[M_COUNT]), "flows": int(m[M_NEXT_ID]), "table_full_drops": int(m[M_TABLE_FULL]),
            "early_drops": int(m[M_EARLY_DROP]), "bad_checksums_seen": int(m[M_CSUM_BAD]),
            "insert_failed": int(m[M_INSERT_FAILED]), "helper_drops": int(m[M_HELPER_DROP]),
            "expectations_created": int(m[M_EXPECT_CREATED]), "flow_overflow": int(m[M_FLOW_OVERFLOW])}

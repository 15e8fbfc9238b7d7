"""The conntrack table packed into a few 2-D int64 arrays, the event log and flow records.

Layout (docs/pipeline.md "Kernel data passing"): kernels pass these arrays one by one, never a wide
NamedTuple, so that a non-inlined call costs a handful of arguments.

* ``E`` int64[capacity, N_E]: one row per entry slot, one column per field (``C_*``). Entry-major so
  that a packet's work on its entry touches a few adjacent cache lines. Addresses are the int64 bit
  patterns of the uint64 (hi, lo) halves; per-direction fields are two columns (``C_X + dir``); the
  tuple of direction d starts at ``C_TUPLE + 6 * d`` (src_hi, src_lo, dst_hi, dst_lo, sport, dport).
  Columns 61-63 hold the NAT by-source index (bysrc.py): per-entry links and, in row b, the head of
  bucket b (``C_BYSRC_HEAD`` is not part of the row's entry and survives its reuse).
* ``L`` int64[capacity, 3]: the live view ``(generation or -1, expiry ns, TCP CLOSE/TIME_WAIT)``.
  ``L[s, 1]`` is *the* expiry time of a confirmed entry; ``L[s, 0]`` is the entry's generation while
  it is confirmed and not dying, else -1; connlimit reads this array directly (RuleState.ct_live).
* ``H`` int64[2^k]: open-addressing hash index over both tuples (value 2*slot + dir + 1, 0 empty).
* ``M`` int64[M_LEN + capacity + blocks + 4 * capacity]: counters and allocator state (``M_*``), then
  the free-slot stack, the per-64-slot-block expiry lower bounds (a full table reaps expired entries by
  scanning only blocks whose bound has passed) and the early-drop queue (confirmed entries in ct_id
  order, invalidated lazily: the oldest non-ASSURED entry without a scan).
* ``X`` int64[expect_capacity, N_X]: expectations (``X_*``).
* ``F`` int64[flow_capacity, N_F]: flow records, row = ct_id, columns in result.FLOW_COLUMNS order.
* event log ``EV`` int64[1 + capacity, 8]: row 0 = (rows used, rows lost), then one row per event
  in result.EVENT_COLUMNS order.

Python side only (converters back to the result.py dtypes live here).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from nfreplay.replay.result import EVENT_COLUMNS, FLOW_COLUMNS

# M[] slots
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
M_GEN = 13  # last generation handed out (every allocation takes the next one)
M_INV_ARG = 14  # the current packet's INVALID log number (the kernel's %u; R_STATE: index | dir << 4 | state << 8)
M_INV_SLOT = 15  # slot of the entry the current INVALID packet matched (not attached to it); -1 none
M_SCRATCH = 16  # 8 slots of kernel scratch (FTP parser numbers)
# Making a full table cheap (no whole-table scans per new connection; same results):
M_N_BLK = 24  # number of 64-slot blocks
M_BLK_OFF = 25  # offset in M of the per-block lower bounds of the expiry of confirmed entries
M_Q_OFF = 26  # offset in M of the early-drop queue: (slot, ct_id) pairs in confirm (= ct_id) order
M_Q_CAP = 27  # queue capacity (pairs)
M_Q_HEAD = 28  # queue read position (monotonic; index = position % capacity)
M_Q_TAIL = 29  # queue write position
M_REAP_MIN = 30  # lower bound of all block bounds: no reap scan at all before this time
M_LEN = 32  # the free-slot stack follows: M[M_LEN + k], then the block bounds, then the queue
BLK_SHIFT = 6  # slots per block: 64

# per-entry event cache bits (IPCT_*)
EV_NEW = 1
EV_REPLY = 2
EV_ASSURED = 4
EV_PROTOINFO = 8
EV_HELPER = 16
EV_MARK = 32
EV_RELATED = 64

# ---- E columns
C_USED = 0  # 0 free, 1 unconfirmed, 2 confirmed
C_FAMILY = 1
C_PROTO = 2
C_ZONE = 3
C_TUPLE = 4  # tuple of direction d: C_TUPLE + 6 * d + (0 src_hi, 1 src_lo, 2 dst_hi, 3 dst_lo, 4 sport, 5 dport)
C_O_SRC_HI = 4
C_O_SRC_LO = 5
C_O_DST_HI = 6
C_O_DST_LO = 7
C_O_SPORT = 8
C_O_DPORT = 9
C_R_SRC_HI = 10
C_R_SRC_LO = 11
C_R_DST_HI = 12
C_R_DST_LO = 13
C_R_SPORT = 14
C_R_DPORT = 15
C_STATUS = 16
C_TIMEOUT_REL = 17  # relative timeout of an unconfirmed entry (expiry = confirm time + this)
C_MARK = 18
C_HELPER = 19
C_CT_ID = 20  # flow id, -1 until confirmed
C_MASTER = 21  # ct_id of the master (expected entries), -1
C_ECACHE = 22
C_PK = 23  # + dir: packets
C_BY = 25  # + dir: bytes
C_FIRST_TS = 27
C_LAST_TS = 28
C_FIRST_PKT = 29
C_LAST_PKT = 30
C_STREAM_TS = 31
C_TCP_STATE = 32
C_TD_END = 33  # + dir (struct ip_ct_tcp_state; seq-space values are u32 held in int64)
C_TD_MAXEND = 35
C_TD_MAXWIN = 37
C_TD_MAXACK = 39
C_TD_SCALE = 41
C_TD_FLAGS = 43
C_LAST_DIR = 45
C_LAST_INDEX = 46
C_LAST_SEQ = 47
C_LAST_ACK = 48
C_LAST_END = 49
C_LAST_WIN = 50
C_LAST_WSCALE = 51
C_LAST_FLAGS = 52
C_RETRANS = 53
C_FTP_SEQ = 54  # + 2 * dir + k (k < 2): FTP helper "seq after newline"
C_FTP_NSEQ = 58  # + dir
C_GEN = 60  # generation of the slot's current occupant (connlimit's CT_ID)
# NAT by-source index (nf_nat_core.c nf_nat_bysource; conntrack/bysrc.py): a chained hash over slots.
C_BYSRC_NEXT = 61  # slot + 1 of the next entry in this entry's by-source bucket (0: none)
C_BYSRC_PREV = 62  # slot + 1 of the previous entry (0: this entry is the bucket's head)
C_BYSRC_HEAD = 63  # row b: slot + 1 of the first entry of by-source bucket b (a per-row bucket head,
#                    independent of the entry occupying row b: _init_entry leaves it alone)
N_E = 64
assert C_BYSRC_HEAD == N_E - 1  # _init_entry clears columns [0, C_BYSRC_HEAD) of a new entry

# ---- L columns (ct_live)
L_GEN = 0
L_EXPIRES = 1
L_CLOSED = 2

# ---- X columns
X_USED = 0
X_MASTER = 1
X_MASTER_ID = 2
X_FAMILY = 3
X_PROTO = 4
X_ZONE = 5
X_SRC_HI = 6
X_SRC_LO = 7
X_DST_HI = 8
X_DST_LO = 9
X_DPORT = 10
X_EXPIRES = 11
X_CREATED = 12
N_X = 13

# ---- F columns (result.FLOW_COLUMNS order)
CF_FAMILY = 0
CF_PROTO = 1
CF_ORIG_SRC_HI = 2
CF_ORIG_SRC_LO = 3
CF_ORIG_DST_HI = 4
CF_ORIG_DST_LO = 5
CF_ORIG_SPORT = 6
CF_ORIG_DPORT = 7
CF_REPLY_SRC_HI = 8
CF_REPLY_SRC_LO = 9
CF_REPLY_DST_HI = 10
CF_REPLY_DST_LO = 11
CF_REPLY_SPORT = 12
CF_REPLY_DPORT = 13
CF_ZONE = 14
CF_STATUS = 15
CF_FIRST_TS_NS = 16
CF_LAST_TS_NS = 17
CF_PACKETS_ORIG = 18
CF_BYTES_ORIG = 19
CF_PACKETS_REPLY = 20
CF_BYTES_REPLY = 21
CF_FINAL_TCP_STATE = 22
CF_END = 23
CF_END_TS_NS = 24
CF_FIRST_PACKET = 25
CF_LAST_PACKET = 26
CF_MARK = 27
N_F = 28
assert [c[0] for c in FLOW_COLUMNS] == [n[3:].lower() for n in sorted(
    (k for k in list(globals()) if k.startswith("CF_")), key=lambda k: globals()[k])]
assert len(FLOW_COLUMNS) == N_F

# ---- event log columns (result.EVENT_COLUMNS order), rows 1.. ; row 0 = (used, lost)
EVC_CT_ID = 0
EVC_PACKET_INDEX = 1
EVC_TS_NS = 2
EVC_EVENT = 3
EVC_TCP_STATE = 4
EVC_STATUS = 5
EVC_TIMEOUT_S = 6
N_EVC = 8
assert [c[0] for c in EVENT_COLUMNS] == ["ct_id", "packet_index", "ts_ns", "event", "tcp_state", "status",
                                         "timeout_s"]

# Python-side compatibility views: old per-field names -> (array, column, width)
_ENTRY_VIEWS = {
    "used": C_USED, "family": C_FAMILY, "proto": C_PROTO, "zone": C_ZONE,
    "o_src_hi": C_O_SRC_HI, "o_src_lo": C_O_SRC_LO, "o_dst_hi": C_O_DST_HI, "o_dst_lo": C_O_DST_LO,
    "o_sport": C_O_SPORT, "o_dport": C_O_DPORT, "r_src_hi": C_R_SRC_HI, "r_src_lo": C_R_SRC_LO,
    "r_dst_hi": C_R_DST_HI, "r_dst_lo": C_R_DST_LO, "r_sport": C_R_SPORT, "r_dport": C_R_DPORT,
    "status": C_STATUS, "timeout_rel": C_TIMEOUT_REL, "mark": C_MARK, "helper": C_HELPER,
    "ct_id": C_CT_ID, "master": C_MASTER, "ecache": C_ECACHE, "pk_o": C_PK, "pk_r": C_PK + 1,
    "by_o": C_BY, "by_r": C_BY + 1, "first_ts": C_FIRST_TS, "last_ts": C_LAST_TS,
    "first_pkt": C_FIRST_PKT, "last_pkt": C_LAST_PKT, "stream_ts": C_STREAM_TS, "tcp_state": C_TCP_STATE,
    "last_dir": C_LAST_DIR, "last_index": C_LAST_INDEX, "last_seq": C_LAST_SEQ, "last_ack": C_LAST_ACK,
    "last_end": C_LAST_END, "last_win": C_LAST_WIN, "last_wscale": C_LAST_WSCALE,
    "last_flags": C_LAST_FLAGS, "retrans": C_RETRANS, "gen": C_GEN,
    "bysrc_next": C_BYSRC_NEXT, "bysrc_prev": C_BYSRC_PREV, "bysrc_head": C_BYSRC_HEAD,
}
_PAIR_VIEWS = {"td_end": C_TD_END, "td_maxend": C_TD_MAXEND, "td_maxwin": C_TD_MAXWIN,
               "td_maxack": C_TD_MAXACK, "td_scale": C_TD_SCALE, "td_flags": C_TD_FLAGS,
               "ftp_nseq": C_FTP_NSEQ}


class CtTable(NamedTuple):
    """State of the conntrack engine (see the module docstring for the layout). State in / state out:
    pass the same object to every chunk. Python code may read the old per-field names as views
    (``tab.status``, ``tab.tcp_state``, ``tab.td_end[s, d]``, ``tab.expires``, ``tab.f_proto``...)."""

    E: np.ndarray
    L: np.ndarray
    H: np.ndarray
    M: np.ndarray
    X: np.ndarray
    F: np.ndarray

    def __getattr__(self, name):  # only reached for names that are not fields
        if name in _ENTRY_VIEWS:
            return self.E[:, _ENTRY_VIEWS[name]]
        if name in _PAIR_VIEWS:
            c = _PAIR_VIEWS[name]
            return self.E[:, c:c + 2]
        if name == "ftp_seq":
            return self.E[:, C_FTP_SEQ:C_FTP_SEQ + 4].reshape(-1, 2, 2)
        if name == "expires":
            return self.L[:, L_EXPIRES]
        if name == "meta":
            return self.M[:M_LEN]
        if name.startswith("f_"):
            for k, (n, _dt, _u) in enumerate(FLOW_COLUMNS):
                if n == name[2:]:
                    return self.F[:, k]
        raise AttributeError(name)


def new_table(capacity: int, flow_capacity: int, expect_capacity: int = 256) -> CtTable:
    """An empty table for at most `capacity` simultaneous entries (size it >= min(nf_conntrack_max,
    number of packets) + 16) and `flow_capacity` flow records (grow with grow_flows)."""
    capacity = max(int(capacity), 16)
    hsize = 1
    while hsize < 4 * capacity:
        hsize <<= 1
    nblk = (capacity + (1 << BLK_SHIFT) - 1) >> BLK_SHIFT
    qcap = 2 * capacity
    M = np.zeros(M_LEN + capacity + nblk + 2 * qcap, dtype=np.int64)
    M[M_MASK] = hsize - 1
    M[M_FREE_TOP] = capacity
    M[M_PENDING] = -1
    M[M_LEN:M_LEN + capacity] = np.arange(capacity - 1, -1, -1, dtype=np.int64)
    M[M_N_BLK] = nblk
    M[M_REAP_MIN] = np.iinfo(np.int64).max
    M[M_BLK_OFF] = M_LEN + capacity
    M[M_LEN + capacity:M_LEN + capacity + nblk] = np.iinfo(np.int64).max
    M[M_Q_OFF] = M_LEN + capacity + nblk
    M[M_Q_CAP] = qcap
    E = np.zeros((capacity, N_E), dtype=np.int64)
    # no fill of E or F: _init_entry sets a row when its slot is allocated (C_CT_ID / C_MASTER = -1),
    # confirm writes a flow record's row (end_ts -1), and only rows < M_NEXT_ID are read. np.zeros pages
    # are zeroed by the kernel on first touch, so untouched capacity costs neither time nor RSS.
    L = np.zeros((capacity, 3), dtype=np.int64)
    L[:, L_GEN] = -1
    X = np.zeros((max(int(expect_capacity), 4), N_X), dtype=np.int64)
    F = np.zeros((max(int(flow_capacity), 1), N_F), dtype=np.int64)
    return CtTable(E=E, L=L, H=np.zeros(hsize, dtype=np.int64), M=M, X=X, F=F)


def table_capacity_for(ct_max: int, n_packets: int) -> int:
    """Entry capacity that can never run out: each packet creates at most one entry."""
    n = int(n_packets) + 16
    return min(int(ct_max) + 16, n) if ct_max > 0 else n


def grow_flows(tab: CtTable, n_more: int) -> CtTable:
    """Make sure at least n_more further flow records fit (call before each chunk with its length)."""
    need = int(tab.M[M_NEXT_ID]) + int(n_more)
    cur = tab.F.shape[0]
    if need <= cur:
        return tab
    new = max(need, 2 * cur)
    F = np.zeros((new, N_F), dtype=np.int64)
    # only the records written so far (rows < M_NEXT_ID; no other row is ever read): copying the whole
    # old capacity touched (faulted in and zeroed) pages of rows never used, ~0.1 s per 1M packets
    used = min(int(tab.M[M_NEXT_ID]), cur)
    F[:used] = tab.F[:used]
    return tab._replace(F=F)


def n_flows(tab: CtTable) -> int:
    return int(tab.M[M_NEXT_ID])


EventLog = np.ndarray  # int64[1 + capacity, N_EVC]; row 0 = (rows used, rows lost)


def new_event_log(capacity: int) -> np.ndarray:
    """Preallocated log; size it >= 3 x packets per chunk (+ entries that may expire at finish)."""
    return np.zeros((1 + max(int(capacity), 1), N_EVC), dtype=np.int64)


def events_used(ev: np.ndarray) -> int:
    return int(ev[0, 0])


def drain_events(ev: np.ndarray) -> dict:
    """Copy out the logged events (dict per result.EVENT_COLUMNS) and reset the log."""
    k = int(ev[0, 0])
    rows = ev[1:1 + k]
    out = {name: rows[:, j].astype(dt) for j, (name, dt, _) in enumerate(EVENT_COLUMNS)}
    ev[0, 0] = 0
    return out


def concat_events(parts: list[dict]) -> dict:
    if not parts:
        return {name: np.zeros(0, dtype=dt) for name, dt, _ in EVENT_COLUMNS}
    return {name: np.concatenate([p[name] for p in parts]) for name, _dt, _ in EVENT_COLUMNS}


def flows_table(tab: CtTable) -> dict:
    """Flow records (dict per result.FLOW_COLUMNS, row = ct_id). Call ct_finish(tab, end_ns, ev)
    first so that entries expired by the end of the capture are closed."""
    k = min(int(tab.M[M_NEXT_ID]), tab.F.shape[0])
    rows = tab.F[:k]
    out = {}
    for j, (name, dt, _) in enumerate(FLOW_COLUMNS):
        col = rows[:, j]
        out[name] = col.view(np.uint64).copy() if dt == "uint64" else col.astype(dt)
    return out


def counters(tab: CtTable) -> dict:
    m = tab.M
    return {"entries": int(m[M_COUNT]), "flows": int(m[M_NEXT_ID]), "table_full_drops": int(m[M_TABLE_FULL]),
            "early_drops": int(m[M_EARLY_DROP]), "bad_checksums_seen": int(m[M_CSUM_BAD]),
            "insert_failed": int(m[M_INSERT_FAILED]), "helper_drops": int(m[M_HELPER_DROP]),
            "expectations_created": int(m[M_EXPECT_CREATED]), "flow_overflow": int(m[M_FLOW_OVERFLOW])}

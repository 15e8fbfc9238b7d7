"""Streaming replay driver: `Replayer` carries all engine state across capture chunks.

    rp = Replayer(ruleset, host, seed=0)                 # compiles, allocates conntrack/rule/NAT state once
    for cap in iter_capture(paths, chunk_packets=1_000_000):
        part = rp.feed(cap)                              # ChunkResult: packets + results + events of the chunk
        ...                                              # (part.offset = global index of its first packet)
    out = rp.finish()                                    # ReplayOutput: rule counters, flows, finish events, meta

Packet indices (events' packet_index, flows' first/last packet, trace_packet) are global: chunk k's
packets are numbered from the number of packets fed before it. Memory is bounded: the conntrack table
is sized by nf_conntrack_max (not by the packet count), the event log by the sub-chunk length; only the
flow records (one row per conntrack entry) grow with the capture. `pipeline.run_replay` is a thin
wrapper: one feed of the whole capture, results concatenated.
"""

from __future__ import annotations

import logging
import time
from typing import NamedTuple

import numpy as np

from ._jit import borrow, kernel
from .conntrack import ct_prefetch_block
from .pipeline import (
    C_BAD_IP_CSUM,
    C_CONFIRM_FAIL,
    C_FWD_DISABLED,
    C_NO_ROUTE,
    C_SKIPPED_OUTGOING,
    C_TTL,
    N_S,
    OPT_CT_ENABLED,
    OPT_FWD4,
    OPT_FWD6,
    OPT_LO_IFACE,
    OPT_NAT4,
    OPT_NAT6,
    OPT_SKIP_OUTGOING,
    OPT_TRACE_PACKET,
    PV_BLOCK,
    R_CT_DIR,
    R_CT_ID,
    R_CT_MARK,
    R_CT_STATE,
    R_IN_IFACE,
    R_INVALID_ARG,
    R_INVALID_REASON,
    R_MARK,
    R_NAT_FLAGS,
    R_OUT_DPORT,
    R_OUT_DST_HI,
    R_OUT_DST_LO,
    R_OUT_IFACE,
    R_OUT_SPORT,
    R_OUT_SRC_HI,
    R_OUT_SRC_LO,
    R_OUTCOME,
    R_PATH,
    R_REASON,
    R_REJECT_KIND,
    R_TCP_STATE,
    R_VERDICT_HOOK,
    R_VERDICT_RULE,
    Work,
    _nat_families,
    _replay_one,
    _uses_conntrack,
)
from .schema import N_PV, PV_INDEX, load_pv_block

log = logging.getLogger(__name__)

__all__ = ["Replayer", "ChunkResult", "replay_chunk", "DEFAULT_SUB_CHUNK"]

DEFAULT_SUB_CHUNK = 262_144  # packets per kernel call (bounds the event log and the flow-record growth step)
UNLIMITED_CT_CAPACITY = 1 << 22  # table slots when nf_conntrack_max <= 0 (unlimited) and no size hint


class ChunkResult(NamedTuple):
    """What one feed() produced. offset: global index of packets[0]; events: dict per EVENT_COLUMNS
    (global packet_index); trace: the traced packet's rule trace rows when it was in this chunk."""

    offset: int
    packets: object
    results: object
    events: dict
    trace: object


@kernel
def replay_chunk(pk, base, data, ha, cra, rst, tab, P, EV, nst, res, w, PVB, start, end):
    """The per-chunk packet loop: rows [start, end) of pk, whose row 0 is global packet
    `base` (pv[PV_INDEX] = base + row, so conntrack, events and the trace see global indices); results
    go to res rows [start, end). Returns the next row (early when EV is nearly full).
    Every argument is borrowed (_jit.borrow): the caller holds them for the call."""
    pk = borrow(pk)
    data = borrow(data)
    ha = borrow(ha)
    cra = borrow(cra)
    rst = borrow(rst)
    tab = borrow(tab)
    P = borrow(P)
    EV = borrow(EV)
    nst = borrow(nst)
    res = borrow(res)
    w = borrow(w)
    PVB = borrow(PVB)
    E = tab.E
    L = tab.L
    H = tab.H
    M = tab.M
    X = tab.X
    F = tab.F
    ctx = w.ctx
    out = w.out
    trace = w.trace
    cur = w.cur
    S = w.S
    T = w.T
    pf = w.pf
    ct_on = S[OPT_CT_ENABLED] != 0
    r_outcome = res.outcome
    r_path = res.path
    r_in_iface = res.in_iface
    r_out_iface = res.out_iface
    r_verdict_rule = res.verdict_rule
    r_verdict_hook = res.verdict_hook
    r_ct_id = res.ct_id
    r_ct_state = res.ct_state
    r_ct_dir = res.ct_dir
    r_tcp_state = res.tcp_state
    r_invalid_reason = res.invalid_reason
    r_out_src_hi = res.out_src_hi
    r_out_src_lo = res.out_src_lo
    r_out_dst_hi = res.out_dst_hi
    r_out_dst_lo = res.out_dst_lo
    r_out_sport = res.out_sport
    r_out_dport = res.out_dport
    r_mark = res.mark
    r_ct_mark = res.ct_mark
    r_reject_kind = res.reject_kind
    r_reason = res.reason
    r_nat_flags = res.nat_flags
    r_invalid_arg = res.invalid_arg
    ev_limit = EV.shape[0] - 1 - 64
    i0 = start
    while i0 < end:
        i1 = min(end, i0 + PVB.shape[0])
        load_pv_block(pk, i0, i1, PVB)
        if ct_on:
            ct_prefetch_block(E, L, H, PVB, i1 - i0, pf)
        for k in range(i1 - i0):
            i = i0 + k
            PVB[k, PV_INDEX] = base + i
            _replay_one(PVB[k], data, ha, cra, rst, E, L, H, M, X, F, P, EV, nst, ctx, out, trace, cur, T, S)
            r_outcome[i] = S[R_OUTCOME]
            r_path[i] = S[R_PATH]
            r_in_iface[i] = S[R_IN_IFACE]
            r_out_iface[i] = S[R_OUT_IFACE]
            r_verdict_rule[i] = S[R_VERDICT_RULE]
            r_verdict_hook[i] = S[R_VERDICT_HOOK]
            r_ct_id[i] = S[R_CT_ID]
            r_ct_state[i] = S[R_CT_STATE]
            r_ct_dir[i] = S[R_CT_DIR]
            r_tcp_state[i] = S[R_TCP_STATE]
            r_invalid_reason[i] = S[R_INVALID_REASON]
            r_out_src_hi[i] = np.uint64(S[R_OUT_SRC_HI])
            r_out_src_lo[i] = np.uint64(S[R_OUT_SRC_LO])
            r_out_dst_hi[i] = np.uint64(S[R_OUT_DST_HI])
            r_out_dst_lo[i] = np.uint64(S[R_OUT_DST_LO])
            r_out_sport[i] = S[R_OUT_SPORT]
            r_out_dport[i] = S[R_OUT_DPORT]
            r_mark[i] = S[R_MARK]
            r_ct_mark[i] = S[R_CT_MARK]
            r_reject_kind[i] = S[R_REJECT_KIND]
            r_reason[i] = S[R_REASON]
            r_nat_flags[i] = S[R_NAT_FLAGS]
            r_invalid_arg[i] = S[R_INVALID_ARG]
            if EV[0, 0] > ev_limit:
                return i + 1
        i0 = i1
    return end


class Replayer:
    """Replays a capture fed chunk by chunk (iter_capture), carrying conntrack, rule state (counters,
    limit / recent / hashlimit), NAT state, flow records and the kernel-drop counters across chunks.

    n_hint: expected total packets (only caps the conntrack table at min(nf_conntrack_max, n_hint) + 16
    entries; None = nf_conntrack_max + 16, memory bounded by the sysctl)."""

    def __init__(self, ruleset, host, *, allow_unsupported: bool = False, seed: int = 0,
                 assume_good_checksums: bool = False, capture_point: str = "arrival", trace_packet: int = -1,
                 ipsets=(), force_conntrack: bool = False, compiled=None, sub_chunk: int = DEFAULT_SUB_CHUNK,
                 n_hint: int | None = None):
        from ..errors import NfreplayError
        from . import conntrack as ct
        from .chains import new_out, new_rule_state, new_trace
        from .codes import Field
        from .nat import new_nat_scratch, new_nat_state, reject_possible
        from .rules.compile import compile_ruleset

        if capture_point not in ("arrival", "skip-outgoing"):
            raise NfreplayError(f"unknown --capture-point {capture_point!r} (arrival, skip-outgoing)")
        self._t0 = time.perf_counter()
        self._wall = 0.0
        self.ruleset, self.host, self.seed = ruleset, host, int(seed)
        self.capture_point, self.assume_good_checksums = capture_point, bool(assume_good_checksums)
        self.trace_packet = int(trace_packet)
        self.crs = compiled if compiled is not None else compile_ruleset(
            ruleset, host, ipsets=tuple(ipsets), allow_unsupported=allow_unsupported, seed=seed)
        self.prm = ct.make_params(host.sysctls, assume_good_checksums=assume_good_checksums)
        self.ct_on = force_conntrack or _uses_conntrack(ruleset)
        self.nat4, self.nat6 = _nat_families(self.crs)
        self.ha = host.arrays()
        self.cra = self.crs.arrays
        self.sub = max(1, int(sub_chunk))
        sub_n = self.sub if n_hint is None else max(1, min(self.sub, int(n_hint)))
        if n_hint is not None:
            cap = ct.table_capacity_for(self.prm.ct_max, int(n_hint))
        elif self.prm.ct_max > 0:
            cap = int(self.prm.ct_max) + 16
        else:
            cap = UNLIMITED_CT_CAPACITY
            log.warning("nf_conntrack_max <= 0 (unlimited): conntrack table capped at %d entries", cap)
        self.tab = ct.new_table(cap, sub_n + 16)
        self.ev = ct.new_event_log(3 * sub_n + 1024)
        rst = new_rule_state(self.crs, seed)
        if "ct_live" in getattr(rst, "_fields", ()):
            rst = rst._replace(ct_live=self.tab.L)  # connlimit's view of conntrack: the table's live array
        self.rst = rst
        # REJECT-response log: one row per packet of a kernel call at most (drained after each call)
        self.nst = new_nat_state(seed, responses=self.sub if reject_possible(ruleset) else 0)
        S = np.zeros(N_S, np.int64)
        S[OPT_CT_ENABLED] = int(self.ct_on)
        S[OPT_FWD4] = int(host.ip_forward)
        S[OPT_FWD6] = int(host.ip6_forward)
        S[OPT_SKIP_OUTGOING] = int(capture_point == "skip-outgoing")
        S[OPT_TRACE_PACKET] = self.trace_packet
        S[OPT_LO_IFACE] = host.iface_index("lo")
        S[OPT_NAT4] = int(self.nat4)
        S[OPT_NAT6] = int(self.nat6)
        self.w = Work(ctx=np.zeros(int(Field.N_FIELDS), np.int64), out=new_out(),
                      trace=new_trace(512 if trace_packet >= 0 else 1), cur=np.zeros(6, np.uint64), S=S,
                      T=new_nat_scratch(), pf=np.zeros(PV_BLOCK, np.int64))
        self.pvb = np.zeros((PV_BLOCK, N_PV), np.int64)
        self.n = 0  # packets fed so far (= global index of the next chunk's first packet)
        self.last_ts = 0
        self.trace_rows = None
        self._finished = False
        self._wall += time.perf_counter() - self._t0

    def feed(self, capture, progress=None) -> ChunkResult:
        """Replay the next chunk (a Capture from iter_capture / read_capture); returns its ChunkResult.
        progress(k): called with the global number of packets done after each sub-chunk."""
        from . import conntrack as ct
        from .nat import take_responses
        from .result import empty_results
        from .schema import validate

        if self._finished:
            raise RuntimeError("Replayer.feed after finish()")
        t0 = time.perf_counter()
        pk = validate(capture.packets)
        data = capture.data if capture.data is not None else np.zeros(1, np.uint8)
        n = len(pk.ts_ns)
        base = self.n
        res = empty_results(n)
        events = []
        trace = None
        tp = self.trace_packet - base
        start = 0
        while start < n:
            end = min(n, start + self.sub)
            self.tab = ct.grow_flows(self.tab, end - start)
            if 0 <= tp and start <= tp < end:
                # stop right after the traced packet to copy its trace
                mid = replay_chunk(pk, base, data, self.ha, self.cra, self.rst, self.tab, self.prm.vec, self.ev,
                                   self.nst, res, self.w, self.pvb, start, tp + 1)
                take_responses(self.nst, res, base)
                if mid == tp + 1:
                    k = int(self.w.trace[0, 0])
                    trace = self.w.trace[1:k + 1].copy()
                    self.trace_rows = trace
                events.append(ct.drain_events(self.ev))
                start = mid
                continue
            start = replay_chunk(pk, base, data, self.ha, self.cra, self.rst, self.tab, self.prm.vec, self.ev,
                                 self.nst, res, self.w, self.pvb, start, end)
            take_responses(self.nst, res, base)
            events.append(ct.drain_events(self.ev))
            if progress is not None:
                progress(base + start)
        self.n += n
        if n:
            self.last_ts = int(pk.ts_ns[-1])
        self._wall += time.perf_counter() - t0
        return ChunkResult(offset=base, packets=pk, results=res, events=ct.concat_events(events), trace=trace)

    def chunk_output(self, part: ChunkResult):
        """A ReplayOutput for one chunk (its packets, results and events; rule counters so far; no flows),
        for analysis.frames (packets_frame / events_frame; the packets frame's index is chunk-local)."""
        from . import conntrack as ct
        from .result import ReplayOutput
        from .rules.compile import REJECT_KINDS

        return ReplayOutput(packets=part.packets, results=part.results, rule_packets=self.rst.rule_packets,
                            rule_bytes=self.rst.rule_bytes, rules=list(self.crs.rules), events=part.events,
                            flows={}, invalid_reasons=tuple(ct.INVALID_REASONS), reject_kinds=tuple(REJECT_KINDS),
                            iface_names=tuple(self.host.iface_names), meta={})

    def finish(self, packets=None, results=None, events_before=None):
        """Close the flows (entries expired by the last packet's time) and return a ReplayOutput with the
        rule counters, flows, the events of the finish (preceded by events_before: a list of event dicts)
        and meta. packets / results: what to put in the output's packet table (default: empty)."""
        from . import conntrack as ct
        from .result import ReplayOutput, empty_results
        from .rules.compile import REJECT_KINDS
        from .schema import empty

        if self._finished:
            raise RuntimeError("Replayer.finish called twice")
        self._finished = True
        t0 = time.perf_counter()
        ct.ct_finish(self.tab, self.last_ts, self.ev)
        evd = ct.concat_events(list(events_before or []) + [ct.drain_events(self.ev)])
        flows = ct.flows_table(self.tab)
        # the flow records are copied out: release the (capacity-doubled) record array before the caller
        # builds its frames from them (the peak RSS of a long capture is at this point)
        self.tab = self.tab._replace(F=self.tab.F[:0].copy())
        self._wall += time.perf_counter() - t0
        wall = self._wall
        c = self.w.S
        host, nst = self.host, self.nst
        meta = {
            "host": host.describe(),
            "host_source": host.source,
            "sysctls": {**ct.SYSCTL_DEFAULTS, **{k: v for k, v in host.sysctls.items()}},
            "ip_forward": bool(host.ip_forward),
            "seed": self.seed,
            "capture_point": self.capture_point,
            "assume_good_checksums": self.assume_good_checksums,
            "conntrack_enabled": bool(self.ct_on),
            "nat_core": {"ipv4": self.nat4, "ipv6": self.nat6},
            "ruleset_digest": self.ruleset.digest,
            "ruleset_source": self.ruleset.source,
            "ruleset_format": self.ruleset.fmt,
            "replay_wall_s": wall,
            "packets": self.n,
            "packets_per_s": (self.n / wall) if wall > 0 else 0.0,
            "kernel_drops": {"skipped_outgoing": int(c[C_SKIPPED_OUTGOING]), "bad_ip_checksum": int(c[C_BAD_IP_CSUM]),
                             "no_route": int(c[C_NO_ROUTE]), "ttl_exceeded": int(c[C_TTL]),
                             "forwarding_disabled": int(c[C_FWD_DISABLED]),
                             "confirm_failed": int(c[C_CONFIRM_FAIL])},
            "conntrack": ct.counters(self.tab),
            "nat": {"bindings": int(nst.stats[0]), "null_bindings": int(nst.stats[1]),
                    "port_changed": int(nst.stats[2]), "random_draws": int(nst.stats[3]),
                    "source_mappings_reused": int(nst.stats[5])},
            "trace": self.trace_rows,
            "compiled": self.crs,
        }
        if packets is None:
            packets, results = empty(0), empty_results(0)
        return ReplayOutput(packets=packets, results=results, rule_packets=self.rst.rule_packets.copy(),
                            rule_bytes=self.rst.rule_bytes.copy(), rules=list(self.crs.rules), events=evd,
                            flows=flows, invalid_reasons=tuple(ct.INVALID_REASONS), reject_kinds=tuple(REJECT_KINDS),
                            iface_names=tuple(host.iface_names), meta=meta)

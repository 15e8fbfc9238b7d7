"""Result arrays of a replay: what the kernels write, what analysis/ turns into DataFrames.

Per packet (RESULT_COLUMNS, one row per packet of the packet table, same order), per rule
(counters indexed by compiled rule id), the conntrack event log and the flow records
(one per conntrack entry lifetime, indexed by ct_id).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

RESULT_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("outcome", "int8", "codes.Outcome"),
    ("path", "uint8", "bitmask of hooks traversed: 1 << codes.Hook"),
    ("in_iface", "int16", "host interface index the packet arrived on (-1: locally generated)"),
    ("out_iface", "int16", "host interface index it left through (-1: none)"),
    ("verdict_rule", "int32", "compiled rule id (rules table) that decided (see contracts §3); -1 none"),
    ("verdict_hook", "int8", "hook of the deciding rule; -1 none"),
    ("ct_id", "int32", "flow id (flows table); -1 none"),
    ("ct_state", "int8", "codes.CtState the rules saw"),
    ("ct_dir", "int8", "codes.CtDir"),
    ("tcp_state", "int8", "codes.TcpState of the entry after this packet; 0 none"),
    ("invalid_reason", "int16", "index into conntrack.INVALID_REASONS; 0 none"),
    ("out_src_hi", "uint64", "source address as the packet left (after NAT)"),
    ("out_src_lo", "uint64", ""),
    ("out_dst_hi", "uint64", "destination address as the packet left"),
    ("out_dst_lo", "uint64", ""),
    ("out_sport", "uint16", "source port (ICMP: id) as it left"),
    ("out_dport", "uint16", "destination port as it left"),
    ("mark", "uint32", "skb mark after the last hook"),
    ("ct_mark", "uint32", "ct mark after the last hook"),
    ("reject_kind", "int8", "index into rules.compile.REJECT_KINDS of the generated response; 0 none"),
    ("reason", "int8", "not_replayed: codes.PktStatus / routing reason code (see ROUTE_REASONS)"),
    ("nat_flags", "uint8", "1: source translated, 2: destination translated (this packet)"),
    ("n_trace", "int16", "number of rules that matched (for explain; the trace itself is recorded on demand)"),
    ("invalid_arg", "uint32", "the number in the kernel's INVALID log line (its %u; conntrack.invalid_log_text)"),
    ("reject_src_hi", "uint64", "REJECT response (RST / ICMP error) source as it left, after the NAT core"),
    ("reject_src_lo", "uint64", ""),
    ("reject_dst_hi", "uint64", "REJECT response destination as it left"),
    ("reject_dst_lo", "uint64", ""),
    ("reject_sport", "uint16", "REJECT response source port as it left (RST; 0 for ICMP errors)"),
    ("reject_dport", "uint16", "REJECT response destination port as it left (RST; 0 for ICMP errors)"),
    ("reject_iface", "int16", "interface the REJECT response left through; -1: no response left"),
)


class PacketResults(NamedTuple):
    outcome: np.ndarray
    path: np.ndarray
    in_iface: np.ndarray
    out_iface: np.ndarray
    verdict_rule: np.ndarray
    verdict_hook: np.ndarray
    ct_id: np.ndarray
    ct_state: np.ndarray
    ct_dir: np.ndarray
    tcp_state: np.ndarray
    invalid_reason: np.ndarray
    out_src_hi: np.ndarray
    out_src_lo: np.ndarray
    out_dst_hi: np.ndarray
    out_dst_lo: np.ndarray
    out_sport: np.ndarray
    out_dport: np.ndarray
    mark: np.ndarray
    ct_mark: np.ndarray
    reject_kind: np.ndarray
    reason: np.ndarray
    nat_flags: np.ndarray
    n_trace: np.ndarray
    invalid_arg: np.ndarray
    reject_src_hi: np.ndarray
    reject_src_lo: np.ndarray
    reject_dst_hi: np.ndarray
    reject_dst_lo: np.ndarray
    reject_sport: np.ndarray
    reject_dport: np.ndarray
    reject_iface: np.ndarray


assert PacketResults._fields == tuple(c[0] for c in RESULT_COLUMNS)


def empty_results(n: int) -> PacketResults:
    cols = {name: np.zeros(n, dtype=dt) for name, dt, _ in RESULT_COLUMNS}
    for name in ("in_iface", "out_iface", "verdict_rule", "verdict_hook", "ct_id", "reject_iface"):
        cols[name][:] = -1
    cols["ct_dir"][:] = 2
    return PacketResults(**cols)


# Routing / replay reasons stored in PacketResults.reason for outcome not_replayed or kernel drops
# (values >= 64 so they never collide with codes.PktStatus).
ROUTE_REASONS = {
    64: "no_route_to_source",  # source address has no route in the host model
    65: "no_route_to_destination",
    66: "forwarding_disabled",  # ip_forward = 0
    67: "ttl_exceeded",  # forwarded with TTL <= 1: the kernel drops it in ip_forward
    68: "martian_source",  # source is a local address but arrived on an interface
    69: "capture_outgoing_copy",  # --capture-point: skipped outgoing copy
    70: "ip_header_checksum",  # IPv4 header checksum bad: dropped by ip_rcv before PREROUTING
    71: "table_full",  # nf_conntrack_max reached and nothing to early-drop
}


# Conntrack event log (as `conntrack -E` shows it), one row per event.
EVENT_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("ct_id", "int32", "flow id"),
    ("packet_index", "int64", "packet that caused it; -1 for a timer (expiry found later or at end)"),
    ("ts_ns", "int64", "time of the event (the packet's timestamp, or the expiry time for timer events)"),
    ("event", "int8", "codes.CtEvent"),
    ("tcp_state", "int8", "codes.TcpState after the event"),
    ("status", "uint32", "status bitmask (1 << codes.CtStatus.*)"),
    ("timeout_s", "int32", "timeout in seconds as conntrack -E prints it"),
)

# Flow records: one per conntrack entry lifetime, indexed by ct_id.
FLOW_COLUMNS: tuple[tuple[str, str, str], ...] = (
    ("family", "uint8", "4/6"),
    ("proto", "uint8", "L4 protocol"),
    ("orig_src_hi", "uint64", ""), ("orig_src_lo", "uint64", ""),
    ("orig_dst_hi", "uint64", ""), ("orig_dst_lo", "uint64", ""),
    ("orig_sport", "uint16", "ICMP: id"), ("orig_dport", "uint16", "ICMP: type << 8 | code"),
    ("reply_src_hi", "uint64", ""), ("reply_src_lo", "uint64", ""),
    ("reply_dst_hi", "uint64", ""), ("reply_dst_lo", "uint64", ""),
    ("reply_sport", "uint16", ""), ("reply_dport", "uint16", ""),
    ("zone", "uint16", "conntrack zone"),
    ("status", "uint32", "final status bitmask"),
    ("first_ts_ns", "int64", ""), ("last_ts_ns", "int64", ""),
    ("packets_orig", "int64", ""), ("bytes_orig", "int64", ""),
    ("packets_reply", "int64", ""), ("bytes_reply", "int64", ""),
    ("final_tcp_state", "int8", "codes.TcpState (0 for non-TCP)"),
    ("end", "int8", "0 open_at_end, 1 expired, 2 closed (RST/CLOSE), 3 evicted (early drop)"),
    ("end_ts_ns", "int64", "time the entry ended (expiry time / packet time); -1 open"),
    ("first_packet", "int64", "index of the packet that created it"),
    ("last_packet", "int64", "index of the last packet that used it"),
    ("mark", "uint32", "final ct mark"),
)

FLOW_END_NAMES = ("open_at_end", "expired", "closed", "evicted")


class ReplayOutput(NamedTuple):
    """Everything one replay produced; analysis.frames turns it into the contract's DataFrames.

    packets: the PacketTable replayed; results: PacketResults (same length);
    rule_packets / rule_bytes: int64[n_rules] indexed by compiled rule id;
    rules: list of dicts per rule id: rule_id, family, table, chain, rule_num (0 = policy), text,
           source ("file:line"), hook, kind ("rule" | "policy"), unsupported (feature or "");
    events: dict name -> array per EVENT_COLUMNS; flows: dict name -> array per FLOW_COLUMNS
           (row = ct_id);
    invalid_reasons: tuple of texts, index = PacketResults.invalid_reason;
    reject_kinds: tuple of names, index = PacketResults.reject_kind;
    iface_names: tuple of host interface names, index = in_iface/out_iface;
    meta: dict for summary.json: host model, sysctls, seed, capture point, digests, timings, counts.
    """

    packets: object
    results: PacketResults
    rule_packets: np.ndarray
    rule_bytes: np.ndarray
    rules: list
    events: dict
    flows: dict
    invalid_reasons: tuple
    reject_kinds: tuple
    iface_names: tuple
    meta: dict

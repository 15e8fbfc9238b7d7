"""Connection tracking engine: the kernel's nf_conntrack, packet for packet (spec: conntrack.md).

Python side
-----------
- ``SYSCTL_DEFAULTS: dict[str, int]`` kernel sysctl names -> 6.x defaults.
- ``make_params(sysctls: dict | None = None, assume_good_checksums: bool = False) -> CtParams``
  (unknown sysctl -> HostModelError naming it).
- ``new_table(capacity, flow_capacity, expect_capacity=256) -> CtTable``; size capacity with
  ``table_capacity_for(prm.ct_max, n_packets)``. ``grow_flows(tab, n_more) -> CtTable`` before each
  chunk (returns a new NamedTuple sharing the entry arrays). ``n_flows(tab)``.
- ``new_event_log(capacity) -> EventLog``; ``drain_events(ev) -> dict`` (per result.EVENT_COLUMNS,
  resets the log); ``concat_events(list_of_dicts)``.
- ``flows_table(tab) -> dict`` of arrays per result.FLOW_COLUMNS (row = ct_id); call ``ct_finish``
  first at the end of the capture.
- ``INVALID_REASONS`` (index = reason code; ``R_TABLE_FULL`` = 21 means the packet was DROPPED by
  conntrack, not INVALID), ``CTINFO_INVALID`` (-1), ``CTINFO_UNTRACKED`` (7).
- ``counters(tab) -> dict``: table-full drops, early drops, bad checksums seen, insert failures...

Kernels (``@kernel``; call from jitted code or Python)
-------------------------------------------------------
- ``ct_in(tab, prm, pk, i, zone, hook, now_ns, ev) -> (slot, dir, ctinfo, reason)``
  nf_conntrack_in at PREROUTING (hook 0) / OUTPUT (hook 3). slot -1 = no ct (ctinfo -1 INVALID,
  7 UNTRACKED, or reason R_TABLE_FULL = drop). dir 0/1 (2 when no ct). A slot returned for a
  TCP RST that killed its entry stays readable until the next ct_in (status has DYING).
- ``ct_confirm(tab, prm, slot, now_ns, pkt_index, ev) -> bool`` at the end of POSTROUTING / INPUT.
  False = insertion clash, drop the packet.
- ``ct_abort(tab, slot)`` the packet that created an unconfirmed entry was dropped.
- ``ct_help(tab, prm, pk, data, i, slot, dir, ctinfo, now_ns) -> bool`` the FTP helper (data = the
  capture bytes, uint8); call after the rules accepted the packet, before ct_confirm; False = drop.
- ``ct_set_helper(tab, slot, helper_id)`` (1 = ftp) on an unconfirmed entry; ``ct_set_mark``.
- ``ct_tuple_taken(tab, family, src_hi, src_lo, dst_hi, dst_lo, proto, sport, dport, zone,
  ignore_slot, now_ns) -> bool``; ``ct_remaining_s(tab, slot, now_ns) -> int``.
- ``ct_finish(tab, end_ns, ev)`` at the end of the capture.

Entry arrays NAT may rewrite on unconfirmed entries: ``r_src_hi/r_src_lo/r_dst_hi/r_dst_lo/
r_sport/r_dport`` (and ``status`` bits SRC_NAT/DST_NAT...). TCP state: ``tab.tcp_state[slot]``.
Flow id: ``tab.ct_id[slot]`` (-1 until confirmed).
"""

from __future__ import annotations

from nfreplay.replay.conntrack.core import (
    ct_abort,
    ct_confirm,
    ct_finish,
    ct_help,
    ct_in,
    ct_remaining_s,
    ct_set_helper,
    ct_set_mark,
    ct_tuple_taken,
)
from nfreplay.replay.conntrack.params import (
    CTINFO_INVALID,
    CTINFO_UNTRACKED,
    INVALID_REASONS,
    R_TABLE_FULL,
    SYSCTL_DEFAULTS,
    CtParams,
    make_params,
)
from nfreplay.replay.conntrack.table import (
    CtTable,
    EventLog,
    concat_events,
    counters,
    drain_events,
    flows_table,
    grow_flows,
    n_flows,
    new_event_log,
    new_table,
    table_capacity_for,
)

__all__ = [
    "CTINFO_INVALID", "CTINFO_UNTRACKED", "INVALID_REASONS", "R_TABLE_FULL", "SYSCTL_DEFAULTS",
    "CtParams", "CtTable", "EventLog", "concat_events", "counters", "ct_abort", "ct_confirm",
    "ct_finish", "ct_help", "ct_in", "ct_remaining_s", "ct_set_helper", "ct_set_mark",
    "ct_tuple_taken", "drain_events", "flows_table", "grow_flows", "make_params", "n_flows",
    "new_event_log", "new_table", "table_capacity_for",
]

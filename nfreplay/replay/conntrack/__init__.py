"""Connection tracking engine: the kernel's nf_conntrack, packet for packet (spec: conntrack.md).

Python side
-----------
- ``SYSCTL_DEFAULTS: dict[str, int]`` kernel sysctl names -> 6.x defaults.
- ``make_params(sysctls: dict | None = None, assume_good_checksums: bool = False) -> CtParams``
  (unknown sysctl -> HostModelError naming it). ``prm.vec`` is the int64 vector the kernels take
  (slots ``params.P_*``).
- ``new_table(capacity, flow_capacity, expect_capacity=256) -> CtTable``; size capacity with
  ``table_capacity_for(prm.ct_max, n_packets)``. ``CtTable(E, L, H, M, X, F)`` holds six arrays
  (layout and column constants ``C_*``, ``L_*``, ``M_*``, ``X_*``, ``CF_*`` in ``table.py``); Python
  code may still read the old per-field names as views (``tab.tcp_state``, ``tab.status``,
  ``tab.expires``, ``tab.td_end[s, d]``, ``tab.f_proto``...). ``grow_flows(tab, n_more) -> CtTable``
  before each chunk (returns a new NamedTuple sharing the entry arrays). ``n_flows(tab)``.
- ``new_event_log(capacity) -> EventLog`` (int64[1 + capacity, 8]; row 0 = rows used, rows lost);
  ``drain_events(ev) -> dict`` (per result.EVENT_COLUMNS, resets the log); ``concat_events(list_of_dicts)``.
- ``flows_table(tab) -> dict`` of arrays per result.FLOW_COLUMNS (row = ct_id); call ``ct_finish``
  first at the end of the capture.
- ``INVALID_REASONS`` (index = reason code; ``R_TABLE_FULL`` = 21 means the packet was DROPPED by
  conntrack, not INVALID), ``CTINFO_INVALID`` (-1), ``CTINFO_UNTRACKED`` (7).
  ``invalid_log_text(reason, proto, arg) -> str``: the kernel's exact log line
  (``nf_ct_proto_6: SEQ is over upper bound 4276993444 (over the window of the receiver)``); ``arg``
  is ``M[M_INV_ARG]`` after ``ct_in_pv`` (the kernel's ``%u``), ``M[M_INV_SLOT]`` the slot of the entry
  an INVALID packet matched (-1 none; not attached to the packet).
- ``counters(tab) -> dict``: table-full drops, early drops, bad checksums seen, insert failures...

Kernels, array level (what per-packet code calls; E, L, H, M, X, F = the table's arrays, P = prm.vec,
EV = the event log, pv = the packet vector of schema.PV_* filled by schema.load_pv / load_pv_block)
------------------------------------------------------------------------------------------------
- ``ct_in_pv(E, L, H, M, X, F, P, pv, zone, hook, now_ns, EV) -> (slot, dir, ctinfo, reason)``
  nf_conntrack_in at PREROUTING (hook 0) / OUTPUT (hook 3); the packet index is ``pv[PV_INDEX]``.
  slot -1 = no ct (ctinfo -1 INVALID, 7 UNTRACKED, or reason R_TABLE_FULL = drop). dir 0/1 (2 when
  no ct). A slot returned for a TCP RST that killed its entry stays readable until the next call
  (status has DYING).
- ``ct_confirm_a(E, L, H, M, X, F, slot, now_ns, pkt_index, EV) -> bool`` at the end of POSTROUTING /
  INPUT. False = insertion clash, drop the packet. ``ct_confirm_fast`` (same arguments, inlined): no call
  when there is nothing to confirm or deliver (no entry, or a confirmed one without cached events).
- ``ct_prefetch_block(E, L, H, PVB, n, PF)`` cache hints for the lookups of the next n packets of a pv
  block (buckets, then entry rows); changes nothing. ``ct_in_pv`` / ``ct_confirm_a`` are compiled
  without NRT (``_jit.kernel_norc``): the kernels they call must not allocate.
- ``ct_abort_a(E, L, M, slot)`` the packet that created an unconfirmed entry was dropped.
- ``ct_help_a(E, M, X, P, pv, data, slot, dir, ctinfo, now_ns) -> bool`` the FTP helper (data = the
  capture bytes, uint8); after the rules accepted the packet, before confirm; False = drop.
- ``ct_set_helper_a(E, slot, helper_id)`` (1 = ftp) on an unconfirmed entry; ``ct_set_mark_a(E, slot, mark)``.
- ``ct_tuple_taken_a(E, L, H, family, src_hi, src_lo, dst_hi, dst_lo, proto, sport, dport, zone,
  ignore_slot, now_ns) -> bool`` (addresses as int64 bit patterns); ``ct_remaining_s_a(E, L, slot, now_ns)``.
- ``ct_finish_a(E, L, H, M, X, F, end_ns, EV)`` at the end of the capture.

Kernels, table level (thin wrappers with the historical signatures, for tests and one-off calls)
------------------------------------------------------------------------------------------------
``ct_in(tab, prm, pk, i, zone, hook, now_ns, ev)``, ``ct_confirm(tab, prm, slot, now_ns, pkt_index, ev)``,
``ct_abort(tab, slot)``, ``ct_help(tab, prm, pk, data, i, slot, dir, ctinfo, now_ns)``,
``ct_set_helper(tab, slot, helper_id)``, ``ct_set_mark(tab, slot, mark)``, ``ct_tuple_taken(tab, ...)``,
``ct_remaining_s(tab, slot, now_ns)``, ``ct_finish(tab, end_ns, ev)``; and
``ct_replay_range(tab, prm, pk, ev, start, end) -> next index``: conntrack alone over a range of
packets (every packet accepted; the benchmark driver).

Entry columns NAT may rewrite on unconfirmed entries: the REPLY tuple ``E[s, C_R_SRC_HI..C_R_DPORT]``
and ``E[s, C_STATUS]`` bits SRC_NAT/DST_NAT... TCP state: ``E[s, C_TCP_STATE]``. Flow id:
``E[s, C_CT_ID]`` (-1 until confirmed). Generation (valid from allocation): ``E[s, C_GEN]``. Live view
for connlimit: ``L[s] = (generation if confirmed and not dying else -1, expiry ns, TCP CLOSE/TIME_WAIT)``.
NAT by-source index (``conntrack/bysrc.py``: ``bysrc_insert`` / ``bysrc_remove`` / ``bysrc_head``): columns
``C_BYSRC_NEXT``, ``C_BYSRC_PREV`` per entry and the bucket heads ``E[b, C_BYSRC_HEAD]``; NAT inserts SRC
bindings, freeing an entry with SRC_NAT_DONE unlinks it.
"""

from __future__ import annotations

from nfreplay.replay.conntrack.core import (
    ct_abort,
    ct_abort_a,
    ct_confirm,
    ct_confirm_a,
    ct_confirm_fast,
    ct_finish,
    ct_finish_a,
    ct_help,
    ct_help_a,
    ct_in,
    ct_in_pv,
    ct_prefetch_block,
    ct_remaining_s,
    ct_remaining_s_a,
    ct_replay_range,
    ct_set_helper,
    ct_set_helper_a,
    ct_set_mark,
    ct_set_mark_a,
    ct_tuple_taken,
    ct_tuple_taken_a,
)
from nfreplay.replay.conntrack.params import (
    CTINFO_INVALID,
    CTINFO_UNTRACKED,
    INVALID_LOG,
    INVALID_REASONS,
    R_TABLE_FULL,
    SYSCTL_DEFAULTS,
    CtParams,
    invalid_log_text,
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
    "CTINFO_INVALID", "CTINFO_UNTRACKED", "INVALID_LOG", "INVALID_REASONS", "invalid_log_text",
    "R_TABLE_FULL", "SYSCTL_DEFAULTS", "CtParams", "CtTable", "EventLog", "concat_events", "counters",
    "ct_abort", "ct_confirm", "ct_finish", "ct_help", "ct_in", "ct_remaining_s", "ct_set_helper",
    "ct_set_mark", "ct_tuple_taken", "ct_abort_a", "ct_confirm_a", "ct_confirm_fast", "ct_finish_a",
    "ct_help_a", "ct_in_pv", "ct_prefetch_block", "ct_remaining_s_a", "ct_replay_range", "ct_set_helper_a",
    "ct_set_mark_a", "ct_tuple_taken_a", "drain_events", "flows_table", "grow_flows", "make_params",
    "n_flows", "new_event_log", "new_table", "table_capacity_for",
]

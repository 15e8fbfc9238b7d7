"""Differential test against the real kernel's recorded answers (shared/tools/kernel-oracle).

Each capture is replayed packet by packet through ct_in (PREROUTING for inbound, OUTPUT for
locally emitted packets), then ct_confirm when the kernel let the packet through, else ct_abort.
Compared: per-packet ct state + direction, per-flow event sequences (type, TCP state, ASSURED,
SEEN_REPLY) and the final TCP states. NAT scenarios (02, 03) need the NAT engine and are skipped;
05 has no conntrack in its ruleset.
"""

from __future__ import annotations

import json

import pytest

from nfreplay.replay.conntrack import (
    ct_abort,
    ct_confirm,
    ct_finish,
    ct_in,
    drain_events,
    make_params,
    new_event_log,
    new_table,
)

SCENARIOS = ["01_stateful_forward", "04_invalid_packets", "06_reject_tcp_reset", "07_udp_timeout"]
TCP_NAMES = ("NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK",
             "TIME_WAIT", "CLOSE", "SYN_SENT2")
STATE = {0: "established", 1: "related", 2: "new", 3: "established", 4: "related", -1: "invalid",
         7: "untracked"}
EVT = {1: "NEW", 2: "UPDATE", 3: "DESTROY"}


def _replay(scen_dir):
    from nfreplay.replay.ingest import read_capture

    out = json.loads((scen_dir / "oracle_out.json").read_text())
    cap = read_capture(scen_dir / "capture.pcap")
    pk = cap.packets
    assert len(pk.ts_ns) == len(out["packets"])
    sysctls = out["input"]["topology"].get("sysctls", {})
    prm = make_params(sysctls, assume_good_checksums=out["input"]["checksums"] == "fix")
    tab = new_table(len(pk.ts_ns) + 16, len(pk.ts_ns) + 1)
    ev = new_event_log(4 * len(pk.ts_ns) + 16)
    got = []
    for i, p in enumerate(out["packets"]):
        if p["outcome"] == "not_injected":
            got.append(None)
            continue
        hook = 3 if p["path"] == "local_out" else 0
        now = int(pk.ts_ns[i])
        slot, d, ctinfo, reason = ct_in(tab, prm, pk, i, 0, hook, now, ev)
        got.append((STATE[int(ctinfo)], None if slot < 0 else ("original", "reply")[int(d)], int(reason)))
        if p["outcome"] in ("dropped", "rejected"):
            ct_abort(tab, slot)
        else:
            assert ct_confirm(tab, prm, slot, now, i, ev)
    ct_finish(tab, int(pk.ts_ns[-1]), ev)
    return out, got, drain_events(ev), tab


@pytest.mark.parametrize("name", SCENARIOS)
def test_oracle_scenario(shared_dir, name):
    scen = shared_dir / "tools" / "kernel-oracle" / "scenarios" / name
    out, got, events, tab = _replay(scen)
    for p, g in zip(out["packets"], got):
        if g is None or p["ct"] is None:
            continue
        want = (p["ct"]["state"], p["ct"].get("direction"))
        assert (g[0], g[1]) == want, (name, p["index"], p.get("tcp_flags"), g, want, p.get("conntrack_log"))
    # per-flow event sequences
    want_flows: dict = {}
    for e in out["conntrack_events"]["events"]:
        want_flows.setdefault(e["flow"], []).append(
            (e["type"], e.get("tcp_state"), "ASSURED" in e["status"], "SEEN_REPLY" in e["status"]))
    got_flows: dict = {}
    for j in range(len(events["event"])):
        cid = int(events["ct_id"][j])
        proto = int(tab.f_proto[cid])
        st = TCP_NAMES[int(events["tcp_state"][j])] if proto == 6 else None
        stat = int(events["status"][j])
        got_flows.setdefault(cid, []).append((EVT[int(events["event"][j])], st, bool(stat & 4), bool(stat & 2)))
    assert set(got_flows) == set(want_flows)
    for f, seq in want_flows.items():
        mine = got_flows[f]
        # the kernel reaps expired entries at a lookup or by its GC; ours are DESTROYed when found
        # or at the end of the capture: DESTROYs are compared as present/absent.
        assert [x for x in mine if x[0] != "DESTROY"] == [x for x in seq if x[0] != "DESTROY"], (f, mine, seq)
        if any(x[0] == "DESTROY" for x in seq):
            assert any(x[0] == "DESTROY" for x in mine), (f, mine)
    # final table
    final = {f["flow"]: f for f in out["final_conntrack"]}
    for f, ent in final.items():
        assert int(tab.f_end[f]) == 0, f  # still open at the end
        if ent["proto"] == "tcp":
            assert TCP_NAMES[int(tab.f_final_tcp_state[f])] == ent["tcp_state"]
        c = ent.get("counters")
        if c:
            assert (int(tab.f_packets_orig[f]), int(tab.f_bytes_orig[f])) == (c["orig"]["packets"], c["orig"]["bytes"])
            assert (int(tab.f_packets_reply[f]), int(tab.f_bytes_reply[f])) == (c["reply"]["packets"], c["reply"]["bytes"])


def test_oracle_invalid_reasons(shared_dir):
    """The kernel's own log text for each INVALID packet (numbers stripped) matches ours."""
    from nfreplay.replay.conntrack import INVALID_REASONS

    scen = shared_dir / "tools" / "kernel-oracle" / "scenarios" / "04_invalid_packets"
    out, got, _ev, _tab = _replay(scen)
    n = 0
    for p, g in zip(out["packets"], got):
        for line in p.get("conntrack_log", []):
            text = line.split(": ", 1)[1]
            words = [w for w in text.split() if not w.isdigit()]
            assert INVALID_REASONS[g[2]].split() == words, (p["index"], line, INVALID_REASONS[g[2]])
            n += 1
    assert n == 4

"""A naive, independent conversion of a kernel run into nfreplay-shaped result frames.

Used by the comparison tests: a perfect simulator would produce exactly these frames, so
compare(kernel, frames_from_kernel(kernel)) must agree 100 %, and every change injected into
them must show up as a disagreement."""

from __future__ import annotations

from types import SimpleNamespace

import pandas as pd


def _accept_rule(p, fmt):
    last = None
    for t in p.get("trace") or []:
        if t["verdict"] == "accept" and (t["table"] == "filter" or (fmt == "nft" and t["table"] != "nat")):
            last = t
    return last


def frames_from_kernel(k: dict):
    fmt = k["input"]["rules_format"]
    rows = []
    flow_state = {}
    evs = k["conntrack_events"]["events"]
    key_flow = {}

    def key(t):
        return (t.get("proto"), t.get("src"), t.get("dst"), t.get("sport"), t.get("dport"))

    def take(e):
        if e.get("tcp_state"):
            flow_state[e["flow"]] = e["tcp_state"]
        for side in ("orig", "reply"):
            key_flow[key(e.get(side) or {})] = e["flow"]

    timers = {}
    for e in evs:
        if e["packet_index"] is None:
            timers.setdefault(e.get("after_packet"), []).append(e)
    for p in k["packets"]:
        for e in timers.get(p["index"] - 1, []):
            take(e)
        for s in p.get("conntrack_events") or []:
            take(evs[s])
        t = p.get("tuple") or {}
        tcp_state = flow_state.get(key_flow.get(key(t))) if t.get("proto") == "tcp" else None
        d = p.get("drop") or {}
        if d and d.get("by") != "kernel":
            vt, vc, vr = d["table"], d["chain"], d.get("rule_number") or 0
        elif d:
            vt = vc = vr = None
        else:
            a = _accept_rule(p, fmt)
            vt, vc, vr = (a["table"], a["chain"], a.get("rule_number") or 0) if a else (None, None, None)
        ct = p.get("ct") or {}
        ot = p.get("out_tuple") or {}
        rj = p.get("reject") or {}
        rj = (rj[0] if rj else {}) if isinstance(rj, list) else rj
        rt = rj.get("tuple") or {}
        last_flow = None
        for s in p.get("conntrack_events") or []:
            last_flow = evs[s]["flow"]
        rows.append({
            "index": p["index"], "outcome": {"not_injected": "not_replayed"}.get(p["outcome"], p["outcome"]),
            "verdict_table": vt, "verdict_chain": vc, "verdict_rule": vr,
            "ct_state": (ct.get("state") or "").upper() or None, "ct_dir": (ct.get("direction") or "").upper() or None,
            "tcp_state": tcp_state, "invalid_reason": (p.get("conntrack_log") or [None])[0],
            "out_src": ot.get("src"), "out_dst": ot.get("dst"), "out_sport": ot.get("sport"),
            "out_dport": ot.get("dport"), "in_iface": p.get("in_iface") or "", "out_iface": p.get("out_iface") or "",
            "reject_src": rt.get("src"), "reject_dst": rt.get("dst"), "reject_sport": rt.get("sport"),
            "reject_dport": rt.get("dport"), "reject_iface": rj.get("iface") if rt else None,
            "_flow": last_flow,
        })
    packets = pd.DataFrame(rows)
    rules = [{"table": r["table"], "chain": r["chain"], "rule_num": r["rule_number"],
              "packets": r["packets"] if r["packets"] is not None else r["trace_packets"],
              "bytes": r["bytes"] if r["bytes"] is not None else r["trace_bytes"]} for r in k["per_rule_counters"]]
    rules += [{"table": r["table"], "chain": r["chain"], "rule_num": 0,
               "packets": r["packets"] if r["packets"] is not None else r["trace_packets"],
               "bytes": r["bytes"] if r["bytes"] is not None else r["trace_bytes"]} for r in k["policy_counters"]]
    events = [{"ct_id": e["flow"], "packet_index": e["packet_index"] if e["packet_index"] is not None
               else None, "event": e["type"], "tcp_state": e.get("tcp_state"),
               "status": "|".join(e.get("status") or [])} for e in evs]
    flows = pd.DataFrame([{"ct_id": f["flow"]} for f in k["conntrack_events"]["flows"]])
    return SimpleNamespace(packets=packets, rules=pd.DataFrame(rules), events=pd.DataFrame(events), flows=flows)

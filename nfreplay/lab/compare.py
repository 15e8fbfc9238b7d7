"""Compare nfreplay's answers with the kernel's, field by field.

`compare(kernel, ours)` takes the kernel lab's JSON (`run_kernel` / a recorded oracle_out.json)
and nfreplay's result object (pandas DataFrames `.packets`, `.rules`, `.flows`, `.events` with the
contract's columns, contracts §3) and returns an `Agreement`: per-field agreement percentages and
every disagreement with both sides.

What is compared
  per packet   outcome, deciding rule (table/chain/rule number; 0 = policy), in/out interface,
               ct state and direction, conntrack TCP state after the packet, INVALID reason,
               out tuple (NAT), the REJECT response's tuple and interface as it left (after the
               NAT core) when nfreplay's packets table has the reject_* columns
  per rule     packets and bytes of every rule and built-in chain policy
  per flow     the event sequence (NEW/UPDATE/DESTROY with TCP state, ASSURED and SEEN_REPLY)
               and the final state
A packet field the kernel did not record (no conntrack probe when the ruleset does not use
conntrack, no log line for an INVALID packet) is not compared.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field

PACKET_FIELDS = ("outcome", "verdict", "in_iface", "out_iface", "ct_state", "ct_dir", "tcp_state",
                 "invalid_reason", "out_tuple", "reject_tuple")
OUTCOME_ALIASES = {"not_injected": "not_replayed"}


@dataclass
class Tolerance:
    """What counts as agreement where the kernel itself is not exact.

    nat_ports: "exact", "properties" (a translated port only has to be in range, unique among the
    flows, equal to the original port when the kernel kept it, and reuse the mapping an earlier flow
    of the same internal source got exactly when the kernel reused it) or "auto" (properties when the
    ruleset asks for random port selection, or where the kernel had to pick a new port because
    of a clash). destroy_timer: a DESTROY the kernel reported between packets (GC worker) and one
    attributed to the next packet of the flow (lazy expiry) are the same fact.
    invalid_reason: "exact" text (default: the kernel's full log line, numbers included) or "prefix"
    (the text up to the first number)."""

    nat_ports: str = "auto"
    destroy_timer: bool = True
    invalid_reason: str = "exact"
    max_disagreements: int = 10000


@dataclass
class Agreement:
    fields: dict = field(default_factory=dict)        # name -> [agree, compared]
    disagreements: list = field(default_factory=list)
    scenario: str | None = None
    packets: int = 0
    truncated: int = 0

    # -- accumulation --------------------------------------------------------------
    def _count(self, name, ok, where=None, kernel=None, ours=None, kind="packet", limit=10000):
        a = self.fields.setdefault(name, [0, 0])
        a[1] += 1
        if ok:
            a[0] += 1
        elif len(self.disagreements) < limit:
            self.disagreements.append({"kind": kind, "where": where, "field": name,
                                       "kernel": kernel, "ours": ours})
        else:
            self.truncated += 1

    # -- figures -------------------------------------------------------------------
    def percent(self, name) -> float | None:
        a, n = self.fields.get(name, (0, 0))
        return 100.0 * a / n if n else None

    def packet_fields(self) -> tuple[int, int]:
        agree = sum(self.fields[f][0] for f in PACKET_FIELDS if f in self.fields)
        total = sum(self.fields[f][1] for f in PACKET_FIELDS if f in self.fields)
        return agree, total

    @property
    def packet_score(self) -> float | None:
        """Percentage of compared per-packet fields that agree."""
        a, n = self.packet_fields()
        return 100.0 * a / n if n else None

    @property
    def perfect(self) -> bool:
        return not self.disagreements and not self.truncated

    def to_dict(self) -> dict:
        a, n = self.packet_fields()
        return {
            "scenario": self.scenario,
            "packets": self.packets,
            "packet_fields_compared": n,
            "packet_fields_agree": a,
            "packet_score": round(100.0 * a / n, 3) if n else None,
            "fields": {k: {"agree": v[0], "compared": v[1],
                           "percent": round(100.0 * v[0] / v[1], 3) if v[1] else None}
                       for k, v in sorted(self.fields.items())},
            "disagreements": self.disagreements,
            "disagreements_not_listed": self.truncated,
            "perfect": self.perfect,
        }

    def to_json(self, **kw) -> str:
        return json.dumps(self.to_dict(), default=_jsonable, **kw)

    def render_text(self, max_lines: int = 50) -> str:
        d = self.to_dict()
        head = f"agreement with the kernel{' for ' + self.scenario if self.scenario else ''}: "
        score = d["packet_score"]
        lines = [head + (f"{score:.2f}% of {d['packet_fields_compared']} per-packet fields "
                         f"({self.packets} packets)" if score is not None else "nothing compared")]
        for k, v in d["fields"].items():
            pct = "-" if v["percent"] is None else f"{v['percent']:.2f}%"
            lines.append(f"  {k:<16} {pct:>8}  ({v['agree']}/{v['compared']})")
        if self.disagreements:
            lines.append(f"disagreements ({len(self.disagreements) + self.truncated}):")
            for x in self.disagreements[:max_lines]:
                lines.append(f"  {x['kind']} {x['where']}: {x['field']}: kernel={_short(x['kernel'])} "
                             f"ours={_short(x['ours'])}")
            more = len(self.disagreements) - max_lines + self.truncated
            if more > 0:
                lines.append(f"  ... {more} more (see the JSON)")
        return "\n".join(lines) + "\n"

    __str__ = render_text

    def html_section(self) -> str:
        """The agreement as an HTML <section> (for the HTML report)."""
        return _html_section(self)

    def to_html(self, title: str = "nfreplay verify") -> str:
        """A standalone HTML page holding the agreement section."""
        import html

        return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
                "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
                "td,th{border:1px solid #ccc;padding:2px 6px;text-align:left}</style></head>"
                f"<body><h1>{html.escape(title)}</h1>{_html_section(self)}</body></html>\n")


def _short(v):
    s = json.dumps(v, default=_jsonable) if not isinstance(v, str) else v
    return s if len(s) < 120 else s[:117] + "..."


def _jsonable(v):
    if hasattr(v, "item"):
        return v.item()
    if hasattr(v, "isoformat"):
        return v.isoformat()
    return str(v)


# -- normalisation ------------------------------------------------------------------------

def _none(v):
    if v is None:
        return None
    if isinstance(v, float) and math.isnan(v):
        return None
    try:
        import pandas as pd

        if v is pd.NA or v is pd.NaT:
            return None
    except ImportError:  # pragma: no cover
        pass
    if isinstance(v, str) and v.strip() in ("", "-", "nan", "None", "<NA>"):
        return None
    return v


def _up(v):
    v = _none(v)
    return None if v is None else str(v).upper()


def _int(v):
    v = _none(v)
    if v is None:
        return None
    try:
        return int(v)
    except (TypeError, ValueError):
        return None


def _addr(v):
    v = _none(v)
    if v is None:
        return None
    import ipaddress

    try:
        return str(ipaddress.ip_address(str(v)))
    except ValueError:
        return str(v)


def _reason_key(text, mode):
    text = _none(text)
    if text is None:
        return None
    text = str(text).strip()
    if mode == "exact":
        return text
    m = re.match(r"^(nf_ct_[a-z0-9_]+:)?\s*([^0-9]*)", text)   # "nf_ct_proto_6: SEQ is over upper bound"
    return ((m.group(1) or "") + " " + m.group(2)).strip() if m else text


def _records(df):
    """DataFrame (or list of dicts) -> list of dicts."""
    if df is None:
        return []
    if isinstance(df, list):
        return df
    return df.to_dict("records")


def _nat_chain_names(kernel):
    """(table, chain) of nft chains of type nat/route, from the kernel's ruleset listing."""
    out, table, chain = set(), None, None
    for line in kernel.get("ruleset") or []:
        s = line.strip()
        m = re.match(r"^table \S+ (\S+) \{", s)
        if m:
            table = m.group(1)
        m = re.match(r"^chain (\S+) \{", s)
        if m:
            chain = m.group(1)
        if re.match(r"^type (nat|route) hook", s):
            out.add((table, chain))
    return out


def kernel_verdict(kpkt, fmt, nat_chains):
    """(table, chain, rule_num) the kernel decided with; rule_num 0 = the chain policy.

    Drops/rejects: the dropping rule. Accepted packets: the last terminating ACCEPT in the
    filter table (iptables) / in a filter-type chain (nft), or its policy; None if none."""
    d = kpkt.get("drop")
    if d and d.get("by") != "kernel":
        return (d.get("table"), d.get("chain"), d.get("rule_number") or 0)
    if d and d.get("by") == "kernel":
        return None
    last = None
    for t in kpkt.get("trace") or []:
        if t.get("verdict") != "accept":
            continue
        if fmt in ("iptables", "ip6tables"):
            if t.get("table") != "filter":
                continue
        elif (t.get("table"), t.get("chain")) in nat_chains:
            continue
        last = (t.get("table"), t.get("chain"), t.get("rule_number") or 0)
    return last


def kernel_tcp_states(kernel):
    """Per packet index: the TCP state of the packet's conntrack entry after the packet, from the
    event stream (events are only sent on changes, so the state is carried along per flow)."""
    events = kernel.get("conntrack_events", {}).get("events", [])
    state_of_flow, live = {}, {}   # flow -> tcp_state; 5-tuple key -> flow
    out = {}

    def key(t):
        return (t.get("proto"), t.get("src"), t.get("dst"), t.get("sport"), t.get("dport"))

    def apply(ev):
        f = ev.get("flow")
        if ev.get("tcp_state"):
            state_of_flow[f] = ev["tcp_state"]
        for side in ("orig", "reply"):
            t = ev.get(side) or {}
            if ev["type"] == "DESTROY":
                if live.get(key(t)) == f:
                    live.pop(key(t), None)
            else:
                live[key(t)] = f

    by_pkt = {}
    for ev in events:
        by_pkt.setdefault(ev.get("packet_index"), []).append(ev)
    timer_after = {}
    for ev in by_pkt.get(None, []):
        timer_after.setdefault(ev.get("after_packet"), []).append(ev)
    for p in kernel.get("packets", []):
        i = p["index"]
        for ev in timer_after.get(i - 1, []):
            apply(ev)
        for ev in by_pkt.get(i, []):
            apply(ev)
        t = p.get("tuple") or {}
        if t.get("proto") != "tcp":
            continue
        f = live.get(key(t))
        if f is None:   # reply direction of a NAT'd flow: look for it as the reply tuple
            f = live.get((t.get("proto"), t.get("src"), t.get("dst"), t.get("sport"), t.get("dport")))
        out[i] = state_of_flow.get(f) if f is not None else None
    return out


def _random_nat(kernel):
    return any(re.search(r"--random|\brandom\b|fully-random|persistent", line)
               for line in kernel.get("ruleset") or [])


# -- comparison ---------------------------------------------------------------------------

def compare(kernel: dict, ours, tolerance: Tolerance | None = None, scenario: str | None = None) -> Agreement:
    """Compare the kernel's answers (`run_kernel` JSON) with nfreplay's result object."""
    tol = tolerance or Tolerance()
    ag = Agreement(scenario=scenario)
    lim = tol.max_disagreements
    fmt = (kernel.get("input") or {}).get("rules_format", "iptables")
    nat_chains = _nat_chain_names(kernel)
    uses_ct = bool((kernel.get("lab") or {}).get("conntrack_probes"))
    kpkts = kernel.get("packets", [])
    ag.packets = len(kpkts)
    opkts = {int(r["index"]): r for r in _records(getattr(ours, "packets", None))}
    tcp_states = kernel_tcp_states(kernel)
    random_nat = tol.nat_ports == "properties" or (tol.nat_ports == "auto" and _random_nat(kernel))
    our_out_ports = {}
    src_maps = {}   # internal source -> {destination: (kernel's mapped source, ours)}

    for kp in kpkts:
        i = kp["index"]
        op = opkts.get(i)
        where = f"packet {i}"
        if op is None:
            ag._count("outcome", False, where, kp.get("outcome"), None, limit=lim)
            continue
        k_out = OUTCOME_ALIASES.get(kp.get("outcome"), kp.get("outcome"))
        o_out = _none(op.get("outcome"))
        o_out = None if o_out is None else str(o_out).lower()
        ag._count("outcome", k_out == o_out, where, k_out, o_out, limit=lim)
        if k_out == "not_replayed":
            continue
        kv = kernel_verdict(kp, fmt, nat_chains)
        ov = (_none(op.get("verdict_table")), _none(op.get("verdict_chain")), _int(op.get("verdict_rule")))
        ov = None if ov[0] is None and ov[1] is None else (str(ov[0]), str(ov[1]), ov[2] or 0)
        ag._count("verdict", kv == ov, where, list(kv) if kv else None, list(ov) if ov else None, limit=lim)
        if kp.get("path") == "inbound":
            ag._count("in_iface", kp.get("in_iface") == _none(op.get("in_iface")), where,
                      kp.get("in_iface"), _none(op.get("in_iface")), limit=lim)
        ko = kp.get("out_iface")
        oo = _none(op.get("out_iface"))
        ag._count("out_iface", ko == oo, where, ko, oo, limit=lim)
        if uses_ct and kp.get("ct") is not None:
            ks = _up(kp["ct"].get("state"))
            ag._count("ct_state", ks == _up(op.get("ct_state")), where, ks, _up(op.get("ct_state")), limit=lim)
            kd = _up(kp["ct"].get("direction"))
            if kd is not None and ks not in ("INVALID", "UNTRACKED"):
                ag._count("ct_dir", kd == _up(op.get("ct_dir")), where, kd, _up(op.get("ct_dir")), limit=lim)
        if i in tcp_states and tcp_states[i] is not None:
            ag._count("tcp_state", tcp_states[i] == _up(op.get("tcp_state")), where, tcp_states[i],
                      _up(op.get("tcp_state")), limit=lim)
        klog = kp.get("conntrack_log") or []
        if klog:
            kr = _reason_key(klog[0], tol.invalid_reason)
            orr = _reason_key(op.get("invalid_reason"), tol.invalid_reason)
            ok = kr == orr or (orr is not None and kr is not None and
                               (kr.startswith(orr) or orr.startswith(kr)) and tol.invalid_reason != "exact")
            ag._count("invalid_reason", ok, where, klog[0], _none(op.get("invalid_reason")), limit=lim)
        kt = kp.get("out_tuple")
        kt = None if not kt else (kt.get("src"), kt.get("dst"), kt.get("sport"), kt.get("dport"))
        ot = (_addr(op.get("out_src")), _addr(op.get("out_dst")), _int(op.get("out_sport")),
              _int(op.get("out_dport")))
        ot = None if ot[0] is None and ot[1] is None else ot
        if kt is not None and kt[2] is None:   # ICMP: the kernel tuple has no ports
            ot = None if ot is None else (ot[0], ot[1], None, None)
        ok = kt == ot
        if not ok and kt is not None and ot is not None and kt[:2] == ot[:2]:
            tup = kp.get("tuple") or {}
            clash = kt[2] != tup.get("sport") or kt[3] != tup.get("dport")
            if random_nat or (tol.nat_ports == "auto" and clash):
                ok = _nat_port_properties(tup, kt, ot, our_out_ports) and _same_mapping_reuse(tup, kt, ot, src_maps)
        if kt is not None and ot is not None:
            tup = kp.get("tuple") or {}
            src_maps.setdefault((tup.get("proto"), tup.get("src"), tup.get("sport")), {}).setdefault(
                (tup.get("dst"), tup.get("dport")), ((kt[0], kt[2]), (ot[0], ot[2])))
        if ot is not None:
            our_out_ports.setdefault((ot[0], ot[1], ot[3], (kp.get("tuple") or {}).get("proto")), set()).add(
                (ot[2], (kp.get("tuple") or {}).get("src"), (kp.get("tuple") or {}).get("sport")))
        ag._count("out_tuple", ok, where, list(kt) if kt else None, list(ot) if ot else None, limit=lim)
        if kp.get("reject") is not None and "reject_iface" in op:
            kr = _kernel_response(kp["reject"])
            orr = _our_response(op)
            ag._count("reject_tuple", kr == orr, where, list(kr) if kr else None, list(orr) if orr else None,
                      limit=lim)

    _compare_rules(kernel, ours, ag, lim)
    _compare_flows(kernel, ours, ag, tol, lim)
    return ag


def _same_mapping_reuse(tup, kt, ot, src_maps):
    """Endpoint-independent mapping (find_appropriate_src): a flow reuses the mapped source (address,
    port) an earlier flow of the same internal source got, to another destination, in ours exactly when
    it does in the kernel's answers."""
    earlier = [v for d, v in src_maps.get((tup.get("proto"), tup.get("src"), tup.get("sport")), {}).items()
               if d != (tup.get("dst"), tup.get("dport"))]
    return any(k == (kt[0], kt[2]) for k, _ in earlier) == any(o == (ot[0], ot[2]) for _, o in earlier)


def _kernel_response(r):
    """(src, dst, sport, dport, iface) of the response the kernel sent (the first if several), None
    when none left the firewall. ICMP errors have no ports."""
    if isinstance(r, list):
        r = r[0] if r else {}
    t = r.get("tuple")
    if not t:
        return None
    return (t.get("src"), t.get("dst"), t.get("sport"), t.get("dport"), r.get("iface"))


def _our_response(op):
    ifc = _none(op.get("reject_iface"))
    if ifc is None:
        return None
    return (_addr(op.get("reject_src")), _addr(op.get("reject_dst")), _int(op.get("reject_sport")),
            _int(op.get("reject_dport")), ifc)


def _nat_port_properties(tup, kt, ot, seen):
    """A translated port the kernel chose freely: ours must be a valid port, keep the original
    port when the kernel did, and not be used by another flow to the same destination."""
    if ot[2] is None or not (0 < ot[2] < 65536):
        return False
    if kt[2] == tup.get("sport") and ot[2] != tup.get("sport"):
        return False
    others = seen.get((ot[0], ot[1], ot[3], tup.get("proto")), set())
    return not any(p == ot[2] and (s, sp) != (tup.get("src"), tup.get("sport")) for p, s, sp in others)


def _compare_rules(kernel, ours, ag, lim):
    orules = {}
    for r in _records(getattr(ours, "rules", None)):
        orules[(str(r.get("table")), str(r.get("chain")), _int(r.get("rule_num")) or 0)] = r
    rows = []
    for r in kernel.get("per_rule_counters", []):
        pk = r["packets"] if r.get("packets") is not None else r.get("trace_packets")
        by = r["bytes"] if r.get("bytes") is not None else r.get("trace_bytes")
        rows.append(((r["table"], r["chain"], r.get("rule_number") or 0), pk, by, r.get("rule")))
    for r in kernel.get("policy_counters", []):
        if r.get("note", "").startswith("chain not instantiated"):
            continue
        pk = r["packets"] if r.get("packets") is not None else r.get("trace_packets")
        by = r["bytes"] if r.get("bytes") is not None else r.get("trace_bytes")
        rows.append(((r["table"], r["chain"], 0), pk, by, f"policy {r.get('policy')}"))
    for key, pk, by, _text in rows:
        o = orules.get(key)
        where = f"{key[0]}/{key[1]} " + (f"rule {key[2]}" if key[2] else "policy")
        if o is None:
            ag._count("rule_packets", False, where, pk, None, kind="rule", limit=lim)
            ag._count("rule_bytes", False, where, by, None, kind="rule", limit=lim)
            continue
        ag._count("rule_packets", pk == _int(o.get("packets")), where, pk, _int(o.get("packets")),
                  kind="rule", limit=lim)
        ag._count("rule_bytes", by == _int(o.get("bytes")), where, by, _int(o.get("bytes")),
                  kind="rule", limit=lim)


def _status_bits(v):
    if v is None:
        return set()
    if isinstance(v, (list, tuple, set)):
        return {str(x).upper() for x in v}
    return {x.strip().upper() for x in re.split(r"[|,\s]+", str(v)) if x.strip()}


def _ev_key(event, tcp_state, status):
    st = _status_bits(status)
    return (str(event).upper(), _up(tcp_state), "ASSURED" in st, "SEEN_REPLY" in st)


def _compare_flows(kernel, ours, ag, tol, lim):
    kflows = kernel.get("conntrack_events", {}).get("flows", [])
    oevents = _records(getattr(ours, "events", None))
    oflows = {}
    for e in oevents:
        oflows.setdefault(_int(e.get("ct_id")), []).append(e)
    # match flows by the packet that created them
    o_by_new = {}
    for cid, evs in oflows.items():
        new = next((e for e in evs if str(e.get("event")).upper() == "NEW"), None)
        if new is not None:
            o_by_new[_int(new.get("packet_index"))] = cid
    matched = set()
    for kf in kflows:
        hist = kf.get("history", [])
        if not hist:
            continue
        first = hist[0].get("packet_index")
        where = f"flow {kf.get('flow')} (created by packet {first})"
        cid = o_by_new.get(first)
        if cid is None:
            ag._count("flow_events", False, where, [h["event"] for h in hist], None, kind="flow", limit=lim)
            ag._count("flow_final", False, where, hist[-1].get("tcp_state"), None, kind="flow", limit=lim)
            continue
        matched.add(cid)
        kseq = [_ev_key(h["event"], h.get("tcp_state"), h.get("status")) for h in hist]
        kidx = [h.get("packet_index") if h.get("packet_index") is not None
                else ("timer", h.get("after_packet")) for h in hist]
        oev = oflows[cid]
        oseq = [_ev_key(e.get("event"), e.get("tcp_state"), e.get("status")) for e in oev]
        oidx = [_int(e.get("packet_index")) for e in oev]
        # DESTROY events carry no meaningful TCP state comparison when one side timed out
        ok = len(kseq) == len(oseq) and all(_ev_eq(a, b) for a, b in zip(kseq, oseq))
        if ok:
            for (ka, kb), ob in zip(zip(kseq, kidx), oidx):
                if kb == ob:
                    continue
                if ka[0] == "DESTROY" and tol.destroy_timer and (
                        ob is None or (isinstance(kb, tuple) and ob is not None and kb[1] == ob - 1)):
                    continue
                ok = False
        ag._count("flow_events", ok, where, [list(x) + [i] for x, i in zip(kseq, kidx)],
                  [list(x) + [i] for x, i in zip(oseq, oidx)], kind="flow", limit=lim)
        kfin = (kseq[-1][1], kseq[-1][2]) if kseq else None
        ofin = (oseq[-1][1], oseq[-1][2]) if oseq else None
        ag._count("flow_final", kfin == ofin, where, kfin, ofin, kind="flow", limit=lim)
    for cid, evs in oflows.items():
        if cid not in matched and any(str(e.get("event")).upper() == "NEW" for e in evs):
            ag._count("flow_events", False, f"our flow {cid}", None,
                      [str(e.get("event")) for e in evs], kind="flow", limit=lim)


def _ev_eq(a, b):
    if a[0] != b[0]:
        return False
    if a[0] == "DESTROY":   # the state in a DESTROY is the last one; compare the event only
        return True
    return a == b



def _pct(v):
    return "-" if v is None else f"{v:.2f}%"


def _html_section(ag: Agreement) -> str:
    import html

    d = ag.to_dict()
    rows = "".join(f"<tr><td>{html.escape(k)}</td><td>{_pct(v['percent'])}</td>"
                   f"<td>{v['agree']}/{v['compared']}</td></tr>" for k, v in d["fields"].items())
    dis = "".join(
        f"<tr><td>{html.escape(x['kind'])}</td><td>{html.escape(str(x['where']))}</td>"
        f"<td>{html.escape(x['field'])}</td><td><code>{html.escape(_short(x['kernel']))}</code></td>"
        f"<td><code>{html.escape(_short(x['ours']))}</code></td></tr>" for x in d["disagreements"])
    return (f"<section class='verify'><h2>Agreement with the kernel</h2>"
            f"<p>{_pct(d['packet_score'])} of {d['packet_fields_compared']} per-packet fields agree "
            f"({d['packets']} packets).</p>"
            f"<table><tr><th>field</th><th>agree</th><th>count</th></tr>{rows}</table>"
            + (f"<h3>Disagreements</h3><table><tr><th>kind</th><th>where</th><th>field</th><th>kernel</th>"
               f"<th>nfreplay</th></tr>{dis}</table>" if dis else "<p>No disagreements.</p>")
            + "</section>")

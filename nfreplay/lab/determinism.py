"""Determinism check between two kernel runs, and a readable text view of one run."""

from __future__ import annotations

import json

# egress_frames_tcpdump: tcpdump starts before the replay and can see set-up chatter (IPv6 MLD
# reports sent while the lab is built); the per-packet egress comes from the lab's own sockets
VOLATILE_KEYS = {"t", "timing", "send_t", "conntrack_tool", "tools", "warnings", "egress_frames_tcpdump"}


def normalize(obj, path=()):
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k in VOLATILE_KEYS:
                continue
            # the remaining lifetime of final-table entries depends on wall time
            if k == "timeout" and "final_conntrack" in path:
                continue
            if k == "conntrack_tool_events":
                continue
            out[k] = normalize(v, path + (k,))
        return out
    if isinstance(obj, list):
        return [normalize(v, path) for v in obj]
    return obj


def diff(a, b, path="", out=None, limit=50):
    out = [] if out is None else out
    if len(out) >= limit:
        return out
    if type(a) is not type(b):
        out.append(f"{path}: {a!r} != {b!r}")
    elif isinstance(a, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{path}/{k}: only in {'B' if k not in a else 'A'}")
            else:
                diff(a[k], b[k], f"{path}/{k}", out, limit)
    elif isinstance(a, list):
        if len(a) != len(b):
            out.append(f"{path}: list length {len(a)} != {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            diff(x, y, f"{path}[{i}]", out, limit)
    elif a != b:
        # remaining conntrack timeouts are whole seconds truncated from jiffies:
        # a timer tick between the refresh and the event can make them 1 lower
        if path.endswith("/timeout") and isinstance(a, int) and isinstance(b, int) \
                and abs(a - b) <= 1:
            return out
        out.append(f"{path}: {a!r} != {b!r}")
    return out


ENVIRONMENT_KEYS = ("oracle_version", "sysctls", "lab", "kernel", "ruleset")


def same_run(a: dict, b: dict, limit: int = 50, environment: bool = False) -> list[str]:
    """Differences between two kernel runs of the same scenario (empty: identical), ignoring
    wall-clock fields, remaining timeouts of the final table and +-1 s in event timeouts.

    With environment=False (default) the description of the lab (versions, sysctl snapshot,
    lab layout, kernel listing of the ruleset) is ignored too: only the kernel's answers count."""
    if not environment:
        a = {k: v for k, v in a.items() if k not in ENVIRONMENT_KEYS}
        b = {k: v for k, v in b.items() if k not in ENVIRONMENT_KEYS}
    return diff(normalize(a), normalize(b), limit=limit)


def fmt_tuple(t):
    if not t:
        return "-"
    if "sport" in t:
        return f"{t['proto']} {t['src']}:{t['sport']} > {t['dst']}:{t['dport']}"
    if "icmp_type" in t:
        extra = f" id={t['icmp_id']}" if "icmp_id" in t else ""
        return f"{t['proto']} {t['src']} > {t['dst']} type={t['icmp_type']}/{t['icmp_code']}{extra}"
    return f"{t['proto']} {t['src']} > {t['dst']}"


def show_text(d: dict) -> str:
    """The readable per-packet report of one kernel run (oracle.py --show)."""
    lines = []
    out = lines.append
    out(f"kernel {d['kernel']['release']}  rules={d['input']['rules']} ({d['input']['rules_format']})"
          f"  timing={d['input']['timing']}  packets={d['input']['packets']}")
    out(f"outcomes: {d['summary']['outcomes']}")
    for p in d["packets"]:
        fl = f" [{p['tcp_flags']}]" if p.get("tcp_flags") else ""
        ct = p.get("ct") or {}
        cts = f" ct={ct.get('state')}/{ct.get('direction', '-')}" if ct else ""
        line = f"#{p['index']:<3} {p['time']:>9.6f} {p.get('in_iface') or 'fw':>5} {fmt_tuple(p.get('tuple'))}{fl}{cts}"
        out(line)
        res = p["outcome"]
        if p.get("out_iface"):
            res += f" via {p['out_iface']} as {fmt_tuple(p.get('out_tuple'))}"
        if p.get("drop"):
            dr = p["drop"]
            if dr.get("by") == "kernel":
                res += f" ({dr['reason']})"
            else:
                where = f"{dr['table']}/{dr['chain']}"
                where += f" rule {dr['rule_number']}" if dr.get("rule_number") else " policy"
                res += f" at {dr['hook']} {where}"
        rj = p.get("reject")
        for r in (rj if isinstance(rj, list) else [rj] if rj else []):
            res += f"; response {r.get('kind')} {fmt_tuple(r.get('tuple'))} via {r.get('iface')}"
        out(f"       -> {res}")
        for t in p.get("trace", []):
            rn = f"#{t['rule_number']}" if t.get("rule_number") else t["type"]
            out(f"          {t['hook']:<11} {t['table']}/{t['chain']} {rn} {t['verdict']}"
                  + (f"  {t['rule']}" if t.get("rule") else ""))
        for e in p.get("conntrack_events", []):
            ev = d["conntrack_events"]["events"][e]
            out(f"          ct {ev['type']:<7} flow {ev.get('flow')} {ev.get('tcp_state', '')} "
                  f"{','.join(ev.get('flags', []))} reply={fmt_tuple(ev.get('reply'))}")
        for l in p.get("conntrack_log", []):
            out(f"          ct-log: {l}")
    for tb in d.get("timer_events", []):
        out(f"timer events after packet {tb['after_packet']}: "
              f"{[d['conntrack_events']['events'][e]['type'] for e in tb['conntrack_events']]}")
    out("per-rule counters (kernel / trace):")
    for r in d["per_rule_counters"]:
        out(f"  {r['table']}/{r['chain']} #{r['rule_number']}: {r['packets']}/{r['trace_packets']} pkts "
              f"{r['bytes']}/{r['trace_bytes']} bytes  {r.get('rule')}")
    for r in d["policy_counters"]:
        out(f"  {r['table']}/{r['chain']} policy {r['policy']}: {r['packets']}/{r['trace_packets']} pkts")
    out("checks: " + json.dumps(d["checks"]))
    return "\n".join(lines) + "\n"

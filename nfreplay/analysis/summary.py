"""Aggregates over the result tables: drops, INVALID packets, never-hit and shadowed rules, NAT, and the
summary dict written as summary.json. Pure pandas; everything takes the frames from frames.py.
"""

from __future__ import annotations

import ipaddress
import logging

import numpy as np
import pandas as pd

from .._version import __version__
from ..replay import codes
from .provenance import describe_rule

log = logging.getLogger(__name__)

__all__ = ["ACCEPTED", "BLOCKED", "summarize", "drops_by_rule", "drops_by_service", "drops_by_source",
           "timeline", "invalid_by_reason", "invalid_by_flow", "never_hit_rules", "shadowed_rules",
           "nat_report", "verdicts_by_hook", "rule_counters", "packet_counts"]

ACCEPTED = ("forwarded", "emitted", "delivered_local")
BLOCKED = ("dropped", "rejected")
_PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp", 136: "udplite", 47: "gre",
                50: "esp", 51: "ah"}


def _counts(s: pd.Series) -> dict:
    vc = s.value_counts(dropna=True)
    return {str(k): int(v) for k, v in vc.items() if v}


def _blocked(packets: pd.DataFrame) -> pd.Series:
    return packets["outcome"].isin(BLOCKED)


def _service(proto, dport, icmp_type=None) -> pd.Series:
    """'tcp/22', 'udp/53', 'icmp/8' (ICMP: the type), 'gre' per row."""
    proto = pd.Series(proto)
    protos = proto.astype("int64").tolist()
    ports = pd.Series(dport).astype("Int64").tolist()
    types = pd.Series(icmp_type).astype("Int64").tolist() if icmp_type is not None else [pd.NA] * len(protos)
    out = []
    for p, d, t in zip(protos, ports, types):
        name = _PROTO_NAMES.get(p, str(p))
        if d is not pd.NA:
            out.append(f"{name}/{d}")
        elif t is not pd.NA:
            out.append(f"{name}/{t}")
        else:
            out.append(name)
    return pd.Series(out, index=proto.index, dtype="str")


def rule_counters(rules: pd.DataFrame) -> pd.DataFrame:
    """The rules table as `iptables -L -v` shows it: per table/chain, packets and bytes per rule."""
    cols = ["rule_id", "family", "table", "chain", "rule_num", "packets", "bytes", "text", "source", "provenance",
            "unsupported"]
    return rules[cols].sort_values(["family", "table", "chain", "rule_num"], key=_policy_last).reset_index(drop=True)


def _policy_last(s: pd.Series) -> pd.Series:
    if s.name == "rule_num":
        return s.where(s != 0, np.iinfo(np.int32).max)
    return s.astype(str)


def _hook_traversals(packets: pd.DataFrame) -> dict:
    """Packets that traversed each hook, counted per distinct path (the path column is categorical)."""
    counts = packets["path"].value_counts(dropna=True)
    return {h: int(sum(int(n) for p, n in counts.items() if h in str(p).split(","))) for h in codes.HOOK_NAMES}


def verdicts_by_hook(packets: pd.DataFrame, traversed: dict | None = None) -> pd.DataFrame:
    """Per hook: packets that traversed it, and packets dropped/rejected/queued there. `traversed`: the
    traversals per hook when known (summary["hooks"]; then `packets` need only hold the dropped,
    rejected and queued ones)."""
    rows = []
    traversed_by_hook = traversed if traversed is not None else _hook_traversals(packets)
    for h in codes.HOOK_NAMES:
        at = packets["verdict_hook"] == h
        rows.append({"hook": h, "traversed": int(traversed_by_hook.get(h, 0)),
                     "dropped": int((at & (packets["outcome"] == "dropped")).sum()),
                     "rejected": int((at & (packets["outcome"] == "rejected")).sum()),
                     "queued": int((at & (packets["outcome"] == "queued")).sum())})
    return pd.DataFrame(rows)


def drops_by_rule(packets: pd.DataFrame, rules: pd.DataFrame) -> pd.DataFrame:
    """Dropped and rejected packets per deciding rule (with its text and provenance)."""
    b = packets.loc[_blocked(packets) & packets["rule_id"].notna()]
    g = b.groupby(b["rule_id"].astype("int64")).agg(packets=("index", "size"), bytes=("len", "sum"))
    r = rules.set_index("rule_id")[["table", "chain", "rule_num", "text", "provenance", "source"]]
    out = g.join(r, how="left").reset_index().sort_values("packets", ascending=False, kind="stable")
    out["who"] = [describe_rule(t, c, n, p) for t, c, n, p in
                  zip(out["table"], out["chain"], out["rule_num"], out["provenance"].astype(str))]
    return out.reset_index(drop=True)


def drops_by_service(packets: pd.DataFrame) -> pd.DataFrame:
    """Blocked packets per service (proto/dport, ICMP: icmp/type), with distinct sources."""
    b = packets.loc[_blocked(packets)]
    svc = _service(b["proto"], b["dport"], b["icmp_type"])
    g = b.assign(service=svc.to_numpy()).groupby("service", sort=False).agg(
        packets=("index", "size"), sources=("src", "nunique"), first=("ts", "min"), last=("ts", "max"))
    return g.sort_values("packets", ascending=False, kind="stable").reset_index()


def drops_by_source(packets: pd.DataFrame) -> pd.DataFrame:
    b = packets.loc[_blocked(packets)]
    svc = _service(b["proto"], b["dport"], b["icmp_type"])
    g = b.assign(service=svc.to_numpy()).groupby("src", sort=False).agg(
        packets=("index", "size"), services=("service", "nunique"), destinations=("dst", "nunique"),
        first=("ts", "min"), last=("ts", "max"))
    return g.sort_values("packets", ascending=False, kind="stable").reset_index()


def timeline(packets: pd.DataFrame, bins: int = 60) -> pd.DataFrame:
    """Packets per time bin: accepted, dropped (dropped + rejected) and INVALID (any outcome)."""
    if len(packets) == 0:
        return pd.DataFrame({"accepted": [], "dropped": [], "invalid": []}, index=pd.DatetimeIndex([], tz="UTC"))
    ts = packets["ts"]
    t0, t1 = ts.min(), ts.max()
    span = max((t1 - t0).value, 1)
    step = max(span // bins + 1, 1)
    freq = pd.Timedelta(int(step), "ns")
    key = t0 + ((ts - t0) // freq) * freq
    df = pd.DataFrame({"t": key, "accepted": packets["outcome"].isin(ACCEPTED).to_numpy(),
                       "dropped": _blocked(packets).to_numpy(), "invalid": (packets["ct_state"] == "INVALID").to_numpy()})
    out = df.groupby("t").sum()
    return out.astype("int64")


def _conversation(p: pd.DataFrame) -> pd.Series:
    """'tcp 10.0.0.2:40002 <-> 203.0.113.10:80': the bidirectional address/port pair as captured."""
    if len(p) == 0:
        return pd.Series([], index=p.index, dtype="str")
    a = p["src"].astype(str) + ":" + p["sport"].astype("string").fillna("").astype(str)
    b = p["dst"].astype(str) + ":" + p["dport"].astype("string").fillna("").astype(str)
    proto = pd.Series([_PROTO_NAMES.get(int(x), str(int(x))) for x in p["proto"].tolist()], index=p.index)
    lo = pd.Series(np.where(a <= b, a, b), index=p.index)
    hi = pd.Series(np.where(a <= b, b, a), index=p.index)
    return (proto + " " + lo + " <-> " + hi).astype("str")


def invalid_by_reason(packets: pd.DataFrame) -> pd.DataFrame:
    """INVALID packets per kernel reason: packets, distinct conversations, how many were dropped."""
    inv = packets.loc[packets["ct_state"] == "INVALID"]
    reason = inv["invalid_reason"].astype("string").fillna("(no reason logged)")
    g = inv.assign(reason=reason.to_numpy(), conversation=_conversation(inv).to_numpy(),
                   blocked=inv["outcome"].isin(BLOCKED).to_numpy()).groupby("reason", sort=False).agg(
        packets=("index", "size"), conversations=("conversation", "nunique"), dropped=("blocked", "sum"))
    return g.sort_values("packets", ascending=False, kind="stable").reset_index()


def invalid_by_flow(packets: pd.DataFrame) -> pd.DataFrame:
    """INVALID packets grouped by reason and connection (the flow's ct_id where conntrack attached one,
    else the bidirectional address/port pair), with the window numbers of the first offending packet:
    tcp_seq, tcp_ack, tcp_win and tcp_flags, so the out-of-window arithmetic can be checked by hand."""
    inv = packets.loc[packets["ct_state"] == "INVALID"].copy()
    if inv.empty:
        return pd.DataFrame(columns=["reason", "conversation", "ct_id", "packets", "first_index", "first_ts",
                                     "outcome", "tcp_flags", "tcp_seq", "tcp_ack", "tcp_win"])
    inv["reason"] = inv["invalid_reason"].astype("string").fillna("(no reason logged)").to_numpy()
    inv["conversation"] = _conversation(inv)
    g = inv.groupby(["reason", "conversation"], sort=False)
    first = g.head(1).set_index(["reason", "conversation"])
    out = g.agg(packets=("index", "size"), ct_id=("ct_id", "first")).join(
        first[["index", "ts", "outcome", "tcp_flags", "tcp_seq", "tcp_ack", "tcp_win"]].rename(
            columns={"index": "first_index", "ts": "first_ts"}))
    return out.reset_index().sort_values(["packets", "first_index"], ascending=[False, True]).reset_index(drop=True)


def never_hit_rules(rules: pd.DataFrame) -> pd.DataFrame:
    """Rules (not policies) that matched no packet in this replay."""
    m = (rules["kind"] == "rule") & (rules["packets"] == 0)
    return rules.loc[m, ["rule_id", "family", "table", "chain", "rule_num", "text", "source", "provenance",
                         "unsupported"]].reset_index(drop=True)


# ------------------------------------------------------------------ shadowing
def shadowed_rules(rules: pd.DataFrame, ruleset=None) -> pd.DataFrame:
    """Rules that could never match because an earlier rule of the same chain always decides first.

    Definition: rule R (rule number j of chain C) is shadowed by rule E (number i < j of the same chain)
    when (1) E ends the chain walk for every packet it matches (ACCEPT, DROP, REJECT, QUEUE without
    bypass, or RETURN), (2) every packet R matches is matched by E, decided statically on the rule model
    match by match (each of E's matches is implied by one of R's: same field with a subset of E's
    values, a subset of its interface names, or an identical match; E may not use stateful matches
    such as limit/recent/statistic), and (3) R matched no packet in this replay (it is also never-hit).
    Needs the Ruleset model; without it the table is empty."""
    cols = ["rule_id", "table", "chain", "rule_num", "text", "shadowed_by_rule_id", "shadowed_by_num",
            "shadowed_by_text", "shadowed_by_packets"]
    if ruleset is None:
        return pd.DataFrame(columns=cols)
    key = {(str(t), str(c), int(n)): (int(i), int(p), str(x)) for t, c, n, i, p, x in
           zip(rules["table"], rules["chain"], rules["rule_num"], rules["rule_id"], rules["packets"], rules["text"])}
    rows = []
    for table in ruleset.tables:
        for chain in table.chains:
            for j, rr in enumerate(chain.rules, 1):
                kr = key.get((table.name, chain.name, j))
                if kr is None or kr[1] != 0:
                    continue
                for i, er in enumerate(chain.rules[:j - 1], 1):
                    if _terminates(er) and _subsumes(er, rr):
                        ke = key.get((table.name, chain.name, i), (-1, 0, er.text))
                        rows.append({"rule_id": kr[0], "table": table.name, "chain": chain.name, "rule_num": j,
                                     "text": kr[2], "shadowed_by_rule_id": ke[0], "shadowed_by_num": i,
                                     "shadowed_by_text": ke[2], "shadowed_by_packets": ke[1]})
                        break
    return pd.DataFrame(rows, columns=cols)


def _matches_and_verdict(rule):
    from ..replay.rules import model as m

    matches, verdict = [], None
    for e in rule.exprs:
        if isinstance(e, (m.FieldIn, m.Masked, m.AddrMasked, m.Iface, m.SetMatch, m.AddrType, m.Stateful, m.Never,
                          m.Unsupported)):
            matches.append(e)
        elif isinstance(e, (m.Verdict, m.Reject)) and verdict is None:
            verdict = e
    return matches, verdict


def _terminates(rule) -> bool:
    from ..replay.rules import model as m

    matches, v = _matches_and_verdict(rule)
    if any(isinstance(x, (m.Stateful, m.Unsupported, m.Never)) for x in matches):
        return False
    if isinstance(v, m.Reject):
        return True
    return isinstance(v, m.Verdict) and (v.kind in ("accept", "drop", "return") or (v.kind == "queue" and not v.bypass))


def _intervals_subset(inner, outer) -> bool:
    return all(any(olo <= lo and hi <= ohi for olo, ohi in outer) for lo, hi in inner)


def _intervals_disjoint(a, b) -> bool:
    return all(hi < blo or lo > bhi for lo, hi in a for blo, bhi in b)


def _iface_covers(pattern: str, name: str) -> bool:
    if pattern.endswith(("+", "*")):
        base = pattern[:-1]
        return name.startswith(base) if not name.endswith(("+", "*")) else name[:-1].startswith(base)
    return pattern == name


def _implied(me, rmatches) -> bool:
    from ..replay.rules import model as m

    for mr in rmatches:
        if mr == me:
            return True
        if isinstance(me, m.FieldIn) and isinstance(mr, m.FieldIn) and me.field == mr.field:
            if not me.negate and not mr.negate and _intervals_subset(mr.values, me.values):
                return True
            if me.negate and not mr.negate and _intervals_disjoint(mr.values, me.values):
                return True
            if me.negate and mr.negate and _intervals_subset(me.values, mr.values):
                return True
        if isinstance(me, m.Iface) and isinstance(mr, m.Iface) and me.field == mr.field and not me.negate \
                and not mr.negate and all(any(_iface_covers(p, n) for p in me.names) for n in mr.names):
            return True
    return False


def _subsumes(e, r) -> bool:
    ematches, _ = _matches_and_verdict(e)
    rmatches, _ = _matches_and_verdict(r)
    return all(_implied(me, rmatches) for me in ematches)


# ------------------------------------------------------------------ NAT
_PRIVATE_NETS = [ipaddress.ip_network(n) for n in ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "100.64.0.0/10",
                                                   "169.254.0.0/16", "fc00::/7", "fe80::/10")]


def _is_internal(a: str) -> bool:
    try:
        ip = ipaddress.ip_address(a)
    except ValueError:
        return False
    return any(ip in n for n in _PRIVATE_NETS if n.version == ip.version)


# iptables NAT targets, nft NAT statements (not `--ctstate DNAT` / `ct status dnat` matches)
_NAT_STATEMENT = (r"-j\s+(?:snat|dnat|masquerade|redirect|netmap)\b|\b(?:snat|dnat)\s+(?:ip6?\s+)?(?:to|prefix)\b"
                  r"|(?:^|\s)masquerade(?:\s|$)|(?:^|\s)redirect(?:\s+to\b|$)")


ESCAPED_COLUMNS = ["index", "ts", "src", "dst", "sport", "dport", "tcp_flags", "out_iface", "invalid_reason"]


def snat_ifaces(packets: pd.DataFrame) -> set:
    """The interfaces SNATed packets left through."""
    left = packets["outcome"].isin(("forwarded", "emitted"))
    return set(packets.loc[packets["nat"].isin(["SNAT", "both"]) & left, "out_iface"].dropna().astype(str))


def escape_candidates(packets: pd.DataFrame) -> pd.DataFrame:
    """INVALID packets that left with an internal source address (ESCAPED_COLUMNS + out_src): the escaped
    ones are those among them that left through one of snat_ifaces (of the whole capture)."""
    left = packets["outcome"].isin(("forwarded", "emitted"))
    cand = packets.loc[left & (packets["ct_state"] == "INVALID"), ESCAPED_COLUMNS + ["out_src"]]
    if not len(cand):
        return cand
    src = cand["out_src"].astype(str)
    internal = {a: _is_internal(a) for a in src.unique()}  # per distinct address
    return cand.loc[src.map(internal).to_numpy(dtype=bool)]


def escaped_packets(candidates: pd.DataFrame, ifaces: set) -> pd.DataFrame:
    """escape_candidates that left through one of `ifaces` (snat_ifaces), ESCAPED_COLUMNS."""
    esc = candidates.loc[candidates["out_iface"].astype(str).isin(ifaces), ESCAPED_COLUMNS]
    return esc.reset_index(drop=True)


def _empty_frame(texts, counts) -> pd.DataFrame:
    """An empty frame of text columns then int64 columns (what the NAT groupbys give for no flows)."""
    return pd.DataFrame({**{c: pd.Series([], dtype="str") for c in texts},
                         **{c: pd.Series([], dtype="int64") for c in counts}})


def nat_report(packets: pd.DataFrame | None, flows: pd.DataFrame, rules: pd.DataFrame, *,
               escaped: pd.DataFrame | None = None) -> dict:
    """NAT section: translations per NAT rule, per public address/port, clashes, and packets that
    escaped NAT (INVALID packets that left through an interface where SNAT happened, with an internal
    -- RFC 1918 / CGN / link-local / ULA -- source address: conntrack attached no entry, so NAT never
    rewrote them; the classic "leaking private addresses" problem). `escaped`: those packets when already
    known (the streaming run finds them step by step over the whole capture), else from `packets`."""
    text = rules["text"].astype(str).str.lower()
    is_nat = text.str.contains(_NAT_STATEMENT, regex=True)
    per_rule = rules.loc[is_nat & (rules["kind"] == "rule"),
                         ["rule_id", "table", "chain", "rule_num", "text", "provenance", "packets", "bytes"]] \
        .rename(columns={"packets": "translations"}).reset_index(drop=True)
    f = flows
    sn = f.loc[f["nat"].isin(["SNAT", "both"])]
    dn = f.loc[f["nat"].isin(["DNAT", "both"])]
    # without NAT flows the tables are empty frames of the groupby's columns and dtypes (the groupbys on
    # empty frames cost ~35 ms of pandas overhead per summary)
    snat_pub = _empty_frame(("public",), ("flows", "internal_hosts")) if sn.empty else \
        sn.assign(public=sn["reply_dst"].astype(str) + ":" + sn["reply_dport"].astype(str)) \
        .groupby("public").agg(flows=("ct_id", "size"), internal_hosts=("orig_src", "nunique")).reset_index() \
        .sort_values("flows", ascending=False)
    dnat_pub = _empty_frame(("public", "internal"), ("flows", "clients")) if dn.empty else \
        dn.assign(public=dn["orig_dst"].astype(str) + ":" + dn["orig_dport"].astype(str),
                  internal=dn["reply_src"].astype(str) + ":" + dn["reply_sport"].astype(str)) \
        .groupby(["public", "internal"]).agg(flows=("ct_id", "size"), clients=("orig_src", "nunique")).reset_index() \
        .sort_values("flows", ascending=False)
    st = f["status"]
    clashes = int((st if pd.api.types.is_string_dtype(st.dtype) else st.astype(str))
                  .str.contains("NAT_CLASH", regex=False).sum())
    if escaped is None:
        escaped = escaped_packets(escape_candidates(packets), snat_ifaces(packets))
    return {
        "translations_per_rule": per_rule,
        "snat_public": snat_pub.reset_index(drop=True),
        "dnat_public": dnat_pub.reset_index(drop=True),
        "snat_flows": int(len(sn)), "dnat_flows": int(len(dn)), "clashes": clashes,
        "escaped": escaped,
    }


# ------------------------------------------------------------------ summary dict
def packet_counts(packets: pd.DataFrame) -> dict:
    """The summary's per-packet counts (summarize's `counts`)."""
    return {
        "packets": len(packets),
        "outcomes": _counts(packets["outcome"]),
        "ct_states": _counts(packets["ct_state"]),
        "hooks": _hook_traversals(packets),
        "not_replayed_reasons": _counts(packets.loc[packets["outcome"] == "not_replayed", "reason"].astype(str)),
        "invalid": {"packets": int((packets["ct_state"] == "INVALID").sum()),
                    "reasons": _counts(packets["invalid_reason"])},
        "checksums": {"ip": _counts(packets["ip_csum"]), "l4": _counts(packets["l4_csum"])},
    }


def summarize(out, packets: pd.DataFrame | None, rules: pd.DataFrame, flows: pd.DataFrame, *, ruleset=None,
              wall_time_s: float | None = None, extra: dict | None = None,
              escaped: pd.DataFrame | None = None, counts: dict | None = None) -> dict:
    """The summary dict (summary.json): counts, reproducibility data, NAT, unsupported rules, checksums.
    `counts` (packet_counts' keys) and `escaped` (nat_report's) when known without `packets` (the
    streaming run adds them up per step; then `packets` may be None)."""
    meta = dict(out.meta or {})
    pc = counts if counts is not None else packet_counts(packets)
    n = pc["packets"]
    nat = nat_report(packets, flows, rules, escaped=escaped)
    unsupported = rules.loc[rules["unsupported"].astype(str) != "", ["rule_id", "table", "chain", "rule_num", "text",
                                                                       "source", "unsupported"]]
    timings = dict(meta.get("timings", {}) or {})
    replay_s = meta.get("replay_wall_s", meta.get("replay_time_s", timings.get("replay_s")))
    wall = wall_time_s if wall_time_s is not None else meta.get("wall_time_s", replay_s)
    digests = dict(meta.get("digests", {}) or {})
    for k in ("ruleset_digest", "capture_digest"):
        if k in meta:
            digests[k.removesuffix("_digest")] = meta[k]
    s = {
        "nfreplay_version": __version__,
        "packets": n,
        "outcomes": pc["outcomes"],
        "ct_states": pc["ct_states"],
        "hooks": pc["hooks"],
        "not_replayed_reasons": pc["not_replayed_reasons"],
        "flows": int(len(flows)),
        "conn_states": _counts(flows["conn_state"]) if len(flows) else {},
        "flow_end": _counts(flows["end"]) if len(flows) else {},
        "invalid": pc["invalid"],
        "rules": {"total": int((rules["kind"] == "rule").sum()),
                  "never_hit": int(((rules["kind"] == "rule") & (rules["packets"] == 0)).sum())},
        "unsupported_rules": unsupported.to_dict("records"),
        "nat": {"snat_flows": nat["snat_flows"], "dnat_flows": nat["dnat_flows"], "clashes": nat["clashes"],
                "escaped_packets": int(len(nat["escaped"])),
                "translations_per_rule": {f"{r.table}/{r.chain}#{r.rule_num}": int(r.translations)
                                          for r in nat["translations_per_rule"].itertuples()},
                "snat_public": {r.public: int(r.flows) for r in nat["snat_public"].itertuples()},
                "dnat_public": {f"{r.public}->{r.internal}": int(r.flows) for r in nat["dnat_public"].itertuples()}},
        "checksums": pc["checksums"],
        "host": meta.get("host"),
        "sysctls": meta.get("sysctls", {}),
        "seed": meta.get("seed"),
        "capture_point": meta.get("capture_point"),
        "assume_good_checksums": meta.get("assume_good_checksums"),
        "digests": digests,
        "inputs": meta.get("inputs"),
        "replay_time_s": replay_s,
        "wall_time_s": wall,
        "packets_per_s": (n / wall) if wall else None,
    }
    if ruleset is not None:
        s["digests"].setdefault("ruleset", getattr(ruleset, "digest", "") or None)
        s["ruleset_format"] = getattr(ruleset, "fmt", None)
    skip = {"timings", "digests", "ruleset_digest", "capture_digest", "wall_time_s", "replay_wall_s", "packets",
            "packets_per_s", "compiled", "trace"}  # compiled ruleset / trace rows are not summary material
    for k, v in meta.items():  # keep anything else the engine recorded (host source, counters, NAT stats)
        if k not in s and k not in skip:
            s.setdefault("engine", {})[k] = v
    if timings:
        s["timings"] = timings
    if extra:
        extra = dict(extra)
        s["digests"].update(extra.pop("digests", {}) or {})
        s.update(extra)
    return _jsonable(s)


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, (np.integer,)):
        return int(x)
    if isinstance(x, (np.floating,)):
        return float(x)
    if isinstance(x, (np.bool_,)):
        return bool(x)
    if isinstance(x, pd.Timestamp):
        return x.isoformat()
    if x is pd.NA or (isinstance(x, float) and np.isnan(x)):
        return None
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)

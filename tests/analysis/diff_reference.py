"""The whole-capture compare() as it was before the block-wise version (2026-11-27), kept as the test
oracle of nfreplay.analysis.diff (test_diff_blocks.py). Its description:


Packets are aligned by capture index. A packet's *fate* is its outcome class: "allowed" (forwarded,
emitted, delivered locally), "blocked" (dropped, rejected), or the outcome itself (queued, stolen,
not_replayed). Packets are grouped into conversations: the conntrack flow of side A where it has one,
else the flow of side B (mapped to A's where a packet has both), else the bidirectional address/port
pair as captured.

In each conversation the first packet whose fate differs is the *cause*; the conversation is
"newly_blocked" (allowed in A, blocked in B), "newly_allowed" (the reverse) or "changed" (any other
fate change). Every later packet of a newly blocked conversation is *consequential*: it could not
have existed under B (the SYN-ACK after a SYN that is now dropped, the rest of a flow whose handshake
is now blocked), so it is marked, not counted as a change of its own; later packets whose fate
differs in other conversations are marked consequential too. Each changed conversation names the
deciding rule on each side for its cause packet.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from nfreplay.analysis.provenance import describe_rule

__all__ = ["compare", "Diff", "FATE_ALLOWED", "FATE_BLOCKED"]

FATE_ALLOWED = "allowed"
FATE_BLOCKED = "blocked"
_ALLOWED = ("forwarded", "emitted", "delivered_local")
_BLOCKED = ("dropped", "rejected")
_PROTO = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 132: "sctp"}


@dataclass
class Diff:
    """packets: one row per packet whose fate, deciding rule or ct state differs, plus every packet marked
    consequential; flows: one row per conversation whose fate changed; by_service: newly blocked/allowed
    conversations per service; counts: headline numbers; labels: names of the two sides."""

    packets: pd.DataFrame
    flows: pd.DataFrame
    by_service: pd.DataFrame
    counts: dict
    labels: tuple = ("A", "B")
    notes: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"labels": list(self.labels), "counts": self.counts,
                "by_service": self.by_service.to_dict("records")}


def _fate(outcome: pd.Series) -> np.ndarray:
    o = outcome.astype(str).to_numpy()
    return np.where(np.isin(o, _ALLOWED), FATE_ALLOWED, np.where(np.isin(o, _BLOCKED), FATE_BLOCKED, o))


def _rule_desc(packets: pd.DataFrame, rules: pd.DataFrame) -> np.ndarray:
    r = rules.set_index("rule_id")
    rid = packets["rule_id"]
    out = np.full(len(packets), "", dtype=object)
    valid = rid.notna().to_numpy()
    if valid.any():
        ids = rid[valid].astype("int64").to_numpy()
        sub = r.reindex(ids)
        out[valid] = [
            (describe_rule(t, c, n, str(p) if isinstance(p, str) else "") + (f": {x}" if x and int(n) else ""))
            if isinstance(t, str) else "" for t, c, n, p, x in
            zip(sub["table"], sub["chain"], sub["rule_num"].fillna(0), sub["provenance"], sub["text"])]
    return out


def _conversations(pa: pd.DataFrame, pb: pd.DataFrame) -> np.ndarray:
    ca = pa["ct_id"].astype("Int64")
    cb = pb["ct_id"].astype("Int64")
    both = ca.notna() & cb.notna()
    b_to_a = dict(zip(cb[both].astype("int64"), ca[both].astype("int64")))
    a_s = pa["src"].astype(str) + ":" + pa["sport"].astype("string").fillna(pa["icmp_id"].astype("string")).fillna("").astype(str)
    b_s = pa["dst"].astype(str) + ":" + pa["dport"].astype("string").fillna("").astype(str)
    lo = np.where(a_s <= b_s, a_s, b_s)
    hi = np.where(a_s <= b_s, b_s, a_s)
    tup = "T:" + pa["proto"].astype(str) + " " + pd.Series(lo, index=pa.index) + " " + pd.Series(hi, index=pa.index)
    key = np.empty(len(pa), dtype=object)
    ca_np = ca.to_numpy(dtype="float64", na_value=np.nan)
    cb_np = cb.to_numpy(dtype="float64", na_value=np.nan)
    tup_np = tup.to_numpy()
    for i in range(len(pa)):
        if not np.isnan(ca_np[i]):
            key[i] = f"A:{int(ca_np[i])}"
        elif not np.isnan(cb_np[i]):
            b = int(cb_np[i])
            key[i] = f"A:{b_to_a[b]}" if b in b_to_a else f"B:{b}"
        else:
            key[i] = tup_np[i]
    # a tuple-keyed packet of a conversation that has a flow elsewhere joins it (e.g. a SYN-ACK that is
    # INVALID on one side and has no ct on either, following a SYN that had one on side A)
    tuple_to_flow = {}
    for k, t in zip(key, tup_np):
        if not k.startswith("T:"):
            tuple_to_flow.setdefault(t, k)
    return np.array([tuple_to_flow.get(t, k) if k.startswith("T:") else k for k, t in zip(key, tup_np)], dtype=object)


def compare(a, b, labels=("old", "new")) -> Diff:
    """Diff two Results (or ReplayOutputs) of the same capture."""
    from nfreplay.analysis.api import Result

    ra = a if isinstance(a, Result) else Result(a)
    rb = b if isinstance(b, Result) else Result(b)
    pa, pb = ra.packets, rb.packets
    if len(pa) != len(pb):
        from nfreplay.errors import NfreplayError

        raise NfreplayError(f"diff: the two replays have {len(pa)} and {len(pb)} packets; they must replay the "
                            "same capture")
    fa, fb = _fate(pa["outcome"]), _fate(pb["outcome"])
    fate_changed = fa != fb
    ra_id = pa["rule_id"].astype("Int64").fillna(-1).to_numpy()
    rb_id = pb["rule_id"].astype("Int64").fillna(-1).to_numpy()
    rule_changed = _rule_texts(ra.rules, ra_id) != _rule_texts(rb.rules, rb_id)
    state_changed = pa["ct_state"].astype(str).to_numpy() != pb["ct_state"].astype(str).to_numpy()
    conv = _conversations(pa, pb)
    idx = np.arange(len(pa))
    role = np.full(len(pa), "", dtype=object)

    df = pd.DataFrame({"conv": conv, "i": idx, "changed": fate_changed})
    first_change = df.loc[df["changed"]].groupby("conv", sort=False)["i"].min()
    cause_idx = first_change.to_numpy()
    role[cause_idx] = "cause"
    cause_of = pd.Series(conv).map(first_change).to_numpy(dtype="float64")
    after = ~np.isnan(cause_of) & (idx > np.nan_to_num(cause_of, nan=np.inf))
    cause_kind = {}
    for c, i in first_change.items():
        cause_kind[c] = ("newly_blocked" if fa[i] == FATE_ALLOWED and fb[i] == FATE_BLOCKED else
                         "newly_allowed" if fa[i] == FATE_BLOCKED and fb[i] == FATE_ALLOWED else "changed")
    kind_of = np.array([cause_kind.get(c, "") for c in conv], dtype=object)
    consequential = after & ((kind_of == "newly_blocked") | fate_changed)
    role[consequential] = "consequential"
    other = (rule_changed | state_changed) & (role == "")
    role[other] = np.where(state_changed[other], "state_changed", "rule_changed")

    desc_a, desc_b = _rule_desc(pa, ra.rules), _rule_desc(pb, rb.rules)
    keep = role != ""
    packets = pd.DataFrame({
        "index": idx[keep], "ts": pa["ts"].to_numpy()[keep], "conversation": conv[keep],
        "proto": pa["proto"].to_numpy()[keep], "src": pa["src"].to_numpy()[keep], "dst": pa["dst"].to_numpy()[keep],
        "sport": pa["sport"].array[keep], "dport": pa["dport"].array[keep],
        "tcp_flags": pa["tcp_flags"].astype(str).to_numpy()[keep],
        "role": pd.Categorical(role[keep], categories=["cause", "consequential", "state_changed", "rule_changed"]),
        f"outcome_{labels[0]}": pa["outcome"].astype(str).to_numpy()[keep],
        f"outcome_{labels[1]}": pb["outcome"].astype(str).to_numpy()[keep],
        f"ct_state_{labels[0]}": pa["ct_state"].astype(str).to_numpy()[keep],
        f"ct_state_{labels[1]}": pb["ct_state"].astype(str).to_numpy()[keep],
        f"rule_{labels[0]}": desc_a[keep], f"rule_{labels[1]}": desc_b[keep],
    })

    rows = []
    conv_s = pd.Series(conv)
    n_conseq = pd.Series(consequential).groupby(conv_s).sum()
    n_changed = pd.Series(fate_changed).groupby(conv_s).sum()
    n_pk = conv_s.value_counts()
    first_pkt = pd.Series(idx).groupby(conv_s).min()
    for c, i in first_change.items():
        j = int(first_pkt[c])
        proto = int(pa["proto"].iat[j])
        dport = pa["dport"].iat[j]
        svc = f"{_PROTO.get(proto, proto)}/{int(dport)}" if pd.notna(dport) else (
            f"{_PROTO.get(proto, proto)}/{int(pa['icmp_type'].iat[j])}" if pd.notna(pa["icmp_type"].iat[j])
            else str(_PROTO.get(proto, proto)))
        rows.append({
            "conversation": c, "change": cause_kind[c], "service": svc, "proto": proto,
            "src": pa["src"].iat[j], "dst": pa["dst"].iat[j], "sport": pa["sport"].iat[j], "dport": dport,
            "first_packet": j, "cause_packet": int(i), "ts": pa["ts"].iat[int(i)],
            f"fate_{labels[0]}": fa[i], f"fate_{labels[1]}": fb[i],
            f"rule_{labels[0]}": desc_a[i], f"rule_{labels[1]}": desc_b[i],
            "packets": int(n_pk[c]), "packets_changed": int(n_changed[c]), "consequential": int(n_conseq.get(c, 0)),
        })
    flows = pd.DataFrame(rows, columns=[
        "conversation", "change", "service", "proto", "src", "dst", "sport", "dport", "first_packet", "cause_packet",
        "ts", f"fate_{labels[0]}", f"fate_{labels[1]}", f"rule_{labels[0]}", f"rule_{labels[1]}", "packets",
        "packets_changed", "consequential"])
    if len(flows):
        by_service = flows.pivot_table(index="service", columns="change", values="conversation", aggfunc="count",
                                       fill_value=0)
        for c in ("newly_blocked", "newly_allowed", "changed"):
            if c not in by_service:
                by_service[c] = 0
        by_service = by_service[["newly_blocked", "newly_allowed", "changed"]].astype("int64")
        by_service = by_service.sort_values(["newly_blocked", "newly_allowed"], ascending=False).reset_index()
        by_service.columns.name = None
    else:
        by_service = pd.DataFrame(columns=["service", "newly_blocked", "newly_allowed", "changed"])
    counts = {
        "packets": int(len(pa)),
        "packets_fate_changed": int(fate_changed.sum()),
        "packets_cause": int((role == "cause").sum()),
        "packets_consequential": int(consequential.sum()),
        "packets_rule_changed_same_fate": int(((role == "rule_changed")).sum()),
        "packets_state_changed_same_fate": int(((role == "state_changed")).sum()),
        "conversations_changed": int(len(flows)),
        "newly_blocked": int((flows["change"] == "newly_blocked").sum()) if len(flows) else 0,
        "newly_allowed": int((flows["change"] == "newly_allowed").sum()) if len(flows) else 0,
        "other_changes": int((flows["change"] == "changed").sum()) if len(flows) else 0,
        "outcomes": {labels[0]: {k: int(v) for k, v in pa["outcome"].value_counts().items() if v},
                     labels[1]: {k: int(v) for k, v in pb["outcome"].value_counts().items() if v}},
    }
    return Diff(packets=packets, flows=flows, by_service=by_service, counts=counts, labels=tuple(labels))


def _rule_texts(rules: pd.DataFrame, ids: np.ndarray) -> np.ndarray:
    """Rule identity comparable across two rulesets: table/chain/text (rule ids differ between them)."""
    r = rules.set_index("rule_id")
    key = (r["table"].astype(str) + "/" + r["chain"].astype(str) + "/" + r["text"].astype(str)).to_dict()
    return np.array([key.get(int(i), "") for i in ids], dtype=object)

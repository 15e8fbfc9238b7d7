"""The whole-capture compare() as it was before the block-wise version (2026-11-27), kept as the test
oracle of nfreplay.analysis.diff (test_diff_blocks.py): its conversation keys, fates, causes,
consequential packets and counts are computed here as they were; the result container, the rule
descriptions, the service names and the by-service table come from the module (unchanged by the
block-wise version). The semantics are in nfreplay/analysis/diff.py's docstring."""

from __future__ import annotations

import numpy as np
import pandas as pd

from nfreplay.analysis.diff import (
    _ALLOWED,
    _BLOCKED,
    FATE_ALLOWED,
    FATE_BLOCKED,
    Diff,
    _by_service,
    _flows_frame,
    _rule_desc,
    _service,
)


def _fate(outcome: pd.Series) -> np.ndarray:
    o = outcome.astype(str).to_numpy()
    return np.where(np.isin(o, _ALLOWED), FATE_ALLOWED, np.where(np.isin(o, _BLOCKED), FATE_BLOCKED, o))


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
        rows.append({
            "conversation": c, "change": cause_kind[c],
            "service": _service(proto, pa["dport"].iat[j], pa["icmp_type"].iat[j]), "proto": proto,
            "src": pa["src"].iat[j], "dst": pa["dst"].iat[j], "sport": pa["sport"].iat[j], "dport": pa["dport"].iat[j],
            "first_packet": j, "cause_packet": int(i), "ts": pa["ts"].iat[int(i)],
            f"fate_{labels[0]}": fa[i], f"fate_{labels[1]}": fb[i],
            f"rule_{labels[0]}": desc_a[i], f"rule_{labels[1]}": desc_b[i],
            "packets": int(n_pk[c]), "packets_changed": int(n_changed[c]), "consequential": int(n_conseq.get(c, 0)),
        })
    flows = _flows_frame(rows, labels)
    by_service = _by_service(flows)
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

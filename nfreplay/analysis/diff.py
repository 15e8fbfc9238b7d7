"""Compare two replays of the same capture (two rulesets, or one ruleset on two host files).

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

from .provenance import describe_rule

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


def _as_str(s: pd.Series) -> np.ndarray:
    """s.astype(str).to_numpy() (object array; NA as 'nan'), for a categorical from its categories."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        cats = np.array([str(c) for c in s.cat.categories] + ["nan"], dtype=object)
        return cats[s.cat.codes.to_numpy()]  # code -1 (NA): the last
    return s.astype(str).to_numpy(dtype=object)


def _fate(outcome: pd.Series) -> np.ndarray:
    o = _as_str(outcome)
    return np.where(np.isin(o, _ALLOWED), FATE_ALLOWED, np.where(np.isin(o, _BLOCKED), FATE_BLOCKED, o))


def _rule_desc(packets: pd.DataFrame, rules: pd.DataFrame) -> np.ndarray:
    rid = packets["rule_id"]
    out = np.full(len(packets), "", dtype=object)
    valid = rid.notna().to_numpy()
    if valid.any():
        ids = rid[valid].astype("int64").to_numpy()
        u, inv = np.unique(ids, return_inverse=True)  # each distinct rule described once
        sub = rules.set_index("rule_id").reindex(u)
        desc = np.array([
            (describe_rule(t, c, n, str(p) if isinstance(p, str) else "") + (f": {x}" if x and int(n) else ""))
            if isinstance(t, str) else "" for t, c, n, p, x in
            zip(sub["table"], sub["chain"], sub["rule_num"].fillna(0), sub["provenance"], sub["text"])], dtype=object)
        out[valid] = desc[inv.reshape(-1)]
    return out


# the packets columns compare reads (compare_files reads only these from the two packets tables)
COLUMNS = ["index", "ts", "proto", "src", "dst", "sport", "dport", "icmp_id", "icmp_type", "tcp_flags", "outcome",
           "ct_state", "ct_id", "rule_id"]


def _tuples(pa: pd.DataFrame) -> np.ndarray:
    """'T:proto lo hi' per packet: the bidirectional address/port pair as captured (a conversation's key
    when neither side has a conntrack flow)."""
    a_s = pa["src"].astype(str) + ":" + pa["sport"].astype("string").fillna(pa["icmp_id"].astype("string")).fillna("").astype(str)
    b_s = pa["dst"].astype(str) + ":" + pa["dport"].astype("string").fillna("").astype(str)
    lo = np.where(a_s <= b_s, a_s, b_s)
    hi = np.where(a_s <= b_s, b_s, a_s)
    tup = "T:" + pa["proto"].astype(str) + " " + pd.Series(lo, index=pa.index) + " " + pd.Series(hi, index=pa.index)
    return tup.to_numpy(dtype=object)


# conversation codes (int64): side A's flow id; _B + side B's flow id; _T + the number of a tuple
_B = 1 << 40
_T = 1 << 41
# the two SipHash keys of a tuple text's 128-bit key (_tuple_keys)
_KEY1, _KEY2 = "nfreplay-diff-k1", "nfreplay-diff-k2"


def _tuple_keys(tup: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Two 64-bit SipHash-2-4 hashes of each tuple text (uint64 arrays): its 128-bit key. Two different
    texts share a key with probability ~n**2 / 2**129 (n distinct tuples: below 1e-26 for 1e6)."""
    return (pd.util.hash_array(tup, hash_key=_KEY1, categorize=False),
            pd.util.hash_array(tup, hash_key=_KEY2, categorize=False))


class _FirstFlows:
    """The first flow pair seen for each tuple (_Conversations' "first packet of the same tuple that had a
    flow"), keyed by the tuple's 128-bit key in sorted arrays: 32 bytes per tuple while learning, 24 after
    (a dict keyed by the text took ~0.5 KB per flow)."""

    COMPACT_ROWS = 1 << 20  # pending rows that trigger a merge (at least twice the kept ones)

    def __init__(self):
        z = np.zeros(0, np.uint64)
        self.k1, self.k2, self.val, self.seq = z, z, np.zeros(0, np.int64), np.zeros(0, np.int64)
        self._pend: list = []
        self._pend_rows = 0
        self._n = 0  # rows added so far (the order that decides "first")

    def add(self, tup: np.ndarray, val: np.ndarray) -> None:
        """Tuples (texts, in capture order) and their packed flow pairs; the first of each tuple is kept."""
        if not len(tup):
            return
        h1, h2 = _tuple_keys(tup)
        self._pend.append((h1, h2, np.asarray(val, np.int64), np.arange(self._n, self._n + len(tup), dtype=np.int64)))
        self._n += len(tup)
        self._pend_rows += len(tup)
        if self._pend_rows > max(self.COMPACT_ROWS, 2 * len(self.k1)):
            self._compact()

    def _compact(self) -> None:
        if not self._pend:
            return
        parts = [(self.k1, self.k2, self.val, self.seq), *self._pend]
        self._pend, self._pend_rows = [], 0
        k1, k2, val, seq = (np.concatenate(c) for c in zip(*parts))
        order = np.lexsort((seq, k2, k1))  # by key, then capture order
        k1, k2 = k1[order], k2[order]
        first = np.ones(len(order), bool)
        first[1:] = (k1[1:] != k1[:-1]) | (k2[1:] != k2[:-1])
        self.k1, self.k2, self.val, self.seq = k1[first], k2[first], val[order][first], seq[order][first]

    def finish(self) -> None:
        """Done adding (drops the capture order)."""
        self._compact()
        self.seq = np.zeros(0, np.int64)

    def find(self, tup: np.ndarray) -> np.ndarray:
        """Position of each tuple's entry in k1 / k2 / val, -1 when it has none."""
        pos = np.full(len(tup), -1, np.int64)
        if not len(tup) or not len(self.k1):
            return pos
        h1, h2 = _tuple_keys(tup)
        lo = np.searchsorted(self.k1, h1, side="left")
        hi = np.searchsorted(self.k1, h1, side="right")
        one = np.flatnonzero((hi - lo) == 1)
        hit = one[self.k2[lo[one]] == h2[one]]
        pos[hit] = lo[hit]
        for i in np.flatnonzero((hi - lo) > 1):  # several tuples share the first hash (~n**2 / 2**65)
            j = lo[i] + np.searchsorted(self.k2[lo[i]:hi[i]], h2[i])
            if j < hi[i] and self.k2[j] == h2[i]:
                pos[i] = j
        return pos


class _Conversations:
    """The conversation of every packet, from the whole capture (two passes over it: learn() every block,
    then codes() of every block): side A's conntrack flow where it has one ("A:id"); else side B's flow,
    mapped to A's when some packet has both (the last such packet's pair), else "B:id"; else the tuple
    ("T:..."), or the flow of the first packet of the same tuple that had one (e.g. a SYN-ACK that is
    INVALID on one side and has no ct on either, following a SYN that had one on side A). Conversations are
    int64 codes (text(): their names), so the per-conversation state of a big capture stays small."""

    def __init__(self):
        self._b_to_a = np.full(0, -1, np.int64)  # side B flow id -> side A flow id, -1: none
        self._first = _FirstFlows()  # tuple -> (ca + 1) << 32 | (cb + 1) of its first packet with a flow
        self._flow_code: np.ndarray | None = None  # by _first's entry: the code of that flow
        self._tuple_no: dict = {}  # tuple of packets without a flow -> its number
        self._tuple_text: list = []

    @staticmethod
    def _ids(pa, pb):
        ca = pa["ct_id"].astype("Int64")
        cb = pb["ct_id"].astype("Int64")
        return ca.to_numpy(dtype="float64", na_value=np.nan), cb.to_numpy(dtype="float64", na_value=np.nan)

    def learn(self, pa, pb) -> None:
        ca, cb = self._ids(pa, pb)
        both = ~np.isnan(ca) & ~np.isnan(cb)
        if both.any():
            b, a = cb[both].astype(np.int64)[::-1], ca[both].astype(np.int64)[::-1]
            if b.max() >= len(self._b_to_a):
                grown = np.full(max(int(b.max()) + 1, 2 * len(self._b_to_a)), -1, np.int64)
                grown[:len(self._b_to_a)] = self._b_to_a
                self._b_to_a = grown
            u, k = np.unique(b, return_index=True)  # the last packet of each side-B flow (reversed: first)
            self._b_to_a[u] = a[k]
        has = np.flatnonzero(~np.isnan(ca) | ~np.isnan(cb))
        if len(has):
            # the first packet of each distinct (flows, addresses, ports): the others add nothing
            sub = pa.iloc[has]
            cols = {"a": ca[has], "b": cb[has]}
            cols.update({c: sub[c].to_numpy() for c in ("proto", "src", "dst", "sport", "dport", "icmp_id")})
            has = has[pd.DataFrame(cols).drop_duplicates().index.to_numpy()]
            packed = ((np.nan_to_num(ca[has], nan=-1).astype(np.int64) + 1) << 32) | (
                np.nan_to_num(cb[has], nan=-1).astype(np.int64) + 1)
            self._first.add(_tuples(pa.iloc[has]), packed)

    def _b_codes(self, b: np.ndarray) -> np.ndarray:
        """Codes of packets with side B's flows b (int64) and none on side A."""
        m = np.full(len(b), -1, np.int64)
        ok = b < len(self._b_to_a)
        m[ok] = self._b_to_a[b[ok]]
        return np.where(m >= 0, m, _B + b)

    def codes(self, pa, pb) -> np.ndarray:
        if self._flow_code is None:
            self._first.finish()
            v = self._first.val
            self._first.val = np.zeros(0, np.int64)
            a, b = (v >> 32) - 1, (v & 0xFFFFFFFF) - 1
            self._flow_code = np.where(a >= 0, a, self._b_codes(np.maximum(b, 0)))
        ca, cb = self._ids(pa, pb)
        code = np.empty(len(pa), dtype=np.int64)
        ia = ~np.isnan(ca)
        code[ia] = ca[ia].astype(np.int64)
        ib = ~ia & ~np.isnan(cb)
        code[ib] = self._b_codes(cb[ib].astype(np.int64))
        it = np.flatnonzero(~ia & ~ib)
        if len(it):
            tup = _tuples(pa.iloc[it])
            pos = self._first.find(tup)
            found = pos >= 0
            code[it[found]] = self._flow_code[pos[found]]
            no = self._tuple_no
            out = []
            for t in tup[~found].tolist():  # tuples no packet had a flow for
                c = no.get(t)
                if c is None:
                    c = no[t] = _T + len(self._tuple_text)
                    self._tuple_text.append(t)
                out.append(c)
            code[it[~found]] = out
        return code

    def text(self, codes) -> np.ndarray:
        """The names of conversation codes: "A:id", "B:id" or the tuple ("T:proto lo hi")."""
        c = np.asarray(codes, dtype=np.int64)
        return np.array([f"A:{x}" if x < _B else f"B:{x - _B}" if x < _T else self._tuple_text[x - _T]
                         for x in c.tolist()], dtype=object)


def compare(a, b, labels=("old", "new")) -> Diff:
    """Diff two Results (or ReplayOutputs) of the same capture."""
    from .api import Result

    ra = a if isinstance(a, Result) else Result(a)
    rb = b if isinstance(b, Result) else Result(b)
    pa, pb = ra.packets, rb.packets
    if len(pa) != len(pb):
        from ..errors import NfreplayError

        raise NfreplayError(f"diff: the two replays have {len(pa)} and {len(pb)} packets; they must replay the "
                            "same capture")
    return _compare(lambda: iter([(pa, pb)]), ra.rules, rb.rules, labels)


def compare_files(path_a, path_b, rules_a: pd.DataFrame, rules_b: pd.DataFrame, labels=("old", "new"), *,
                  block: int = 262_144, keep_packets: int | None = None, packets_sink=None, progress=None) -> Diff:
    """compare() of two replays of the same capture from their packets.parquet files (as `run --out` /
    simulate_to write them: every packet, in capture order) and rules tables, read `block` rows at a time
    (twice): memory is bounded by the number of conversations, not packets. packets_sink(frame): called
    with each block's rows of Diff.packets (e.g. to write them out); Diff.packets then keeps the first
    `keep_packets` of them (default: all). progress(rows done, total): after each block of the two passes
    (total: twice the rows); a third pass, when conversations changed, reads their first packets."""
    import pyarrow as pa_
    import pyarrow.parquet as pq

    fa, fb = pq.ParquetFile(path_a), pq.ParquetFile(path_b)
    na, nb = fa.metadata.num_rows, fb.metadata.num_rows
    if na != nb:
        from ..errors import NfreplayError

        raise NfreplayError(f"diff: {path_a} and {path_b} hold {na} and {nb} packets; they must be every packet "
                            "of the same capture (not `--packets notable`)")

    def frames(f):
        meta = f.schema_arrow.metadata
        for batch in f.iter_batches(batch_size=block, columns=COLUMNS):
            yield pa_.Table.from_batches([batch]).replace_schema_metadata(meta).to_pandas()

    done = [0]

    def blocks():
        for a, b in zip(frames(fa), frames(fb)):
            yield a, b
            done[0] += len(a)
            if progress is not None and done[0] <= 2 * na:  # not the last pass (changed conversations only)
                progress(done[0], 2 * na)

    return _compare(blocks, rules_a, rules_b, labels, keep_packets=keep_packets, packets_sink=packets_sink)


def _compare(blocks, rules_a, rules_b, labels, *, keep_packets=None, packets_sink=None) -> Diff:
    """The diff over blocks() -> iterator of (side A packets, side B packets) frames of the same rows,
    in capture order; blocks() is called two or three times (conversations, changes, then the first packets
    of the changed conversations)."""
    conv_of = _Conversations()
    for pa, pb in blocks():
        conv_of.learn(pa, pb)
    key_a, key_b = _rule_key_codes(rules_a, rules_b)
    a_lab, b_lab = labels
    cause_idx: dict = {}  # conversation -> index of its cause packet (the first whose fate differs)
    cause_row: dict = {}  # conversation -> (kind, fate a, fate b, rule a, rule b, ts) of the cause
    # per conversation: its first packet's index and its packets (the first packet's fields are read in a
    # last pass, for the changed conversations only)
    stat = _ConvStats()
    n_changed: dict = {}
    n_conseq: dict = {}
    packets_parts, kept = [], 0
    roles = dict.fromkeys(("cause", "consequential", "state_changed", "rule_changed"), 0)
    n = 0
    fate_changed_total = 0
    outcomes = ({}, {})
    for pa, pb in blocks():
        k = len(pa)
        if k == 0:
            continue
        conv = conv_of.codes(pa, pb)
        idx = np.arange(n, n + k)
        fa, fb = _fate(pa["outcome"]), _fate(pb["outcome"])
        fate_changed = fa != fb
        fate_changed_total += int(fate_changed.sum())
        ra_id = pa["rule_id"].astype("Int64").fillna(-1).to_numpy()
        rb_id = pb["rule_id"].astype("Int64").fillna(-1).to_numpy()
        rule_changed = _key_of(key_a, ra_id) != _key_of(key_b, rb_id)
        state_changed = _as_str(pa["ct_state"]) != _as_str(pb["ct_state"])
        for side, p in enumerate((pa, pb)):
            for o, c in p["outcome"].value_counts().items():
                if c:
                    outcomes[side][str(o)] = outcomes[side].get(str(o), 0) + int(c)
        conv_s = pd.Series(conv)
        stat.add(conv, n)
        # causes: the first changed packet of each conversation that had none yet
        ch = np.flatnonzero(fate_changed)
        new_causes = []
        if len(ch):
            first_ch = pd.Series(ch, index=conv[ch]).groupby(level=0, sort=False).min()
            new_c = first_ch[~first_ch.index.isin(list(cause_idx))] if cause_idx else first_ch
            ts = pa["ts"]
            for c, i in sorted(new_c.items(), key=lambda x: x[1]):
                kind = ("newly_blocked" if fa[i] == FATE_ALLOWED and fb[i] == FATE_BLOCKED else
                        "newly_allowed" if fa[i] == FATE_BLOCKED and fb[i] == FATE_ALLOWED else "changed")
                cause_idx[c] = n + int(i)
                cause_row[c] = [kind, fa[i], fb[i], "", "", ts.iat[int(i)]]  # the rules: below
                new_causes.append((c, int(i)))
            for c, m in pd.Series(1, index=conv[ch]).groupby(level=0, sort=False).sum().items():
                n_changed[c] = n_changed.get(c, 0) + int(m)
        role = np.full(k, "", dtype=object)
        if cause_idx:
            cause_of = conv_s.map(cause_idx).to_numpy(dtype="float64", na_value=np.nan)
            is_cause = cause_of == idx
            role[is_cause] = "cause"
            after = ~np.isnan(cause_of) & (idx > np.nan_to_num(cause_of, nan=np.inf))
            kind_of = conv_s.map({c: r[0] for c, r in cause_row.items()}).to_numpy(dtype=object)
            consequential = after & ((kind_of == "newly_blocked") | fate_changed)
            role[consequential] = "consequential"
            if consequential.any():
                for c, m in pd.Series(1, index=conv[consequential]).groupby(level=0, sort=False).sum().items():
                    n_conseq[c] = n_conseq.get(c, 0) + int(m)
        other = (rule_changed | state_changed) & (role == "")
        role[other] = np.where(state_changed[other], "state_changed", "rule_changed")
        for r in roles:
            roles[r] += int(np.count_nonzero(role == r))
        keep = np.flatnonzero(role != "")  # holds every new cause
        if len(keep):
            desc_a = np.empty(k, dtype=object)
            desc_b = np.empty(k, dtype=object)
            desc_a[keep] = _rule_desc(pa.iloc[keep], rules_a)
            desc_b[keep] = _rule_desc(pb.iloc[keep], rules_b)
            for c, i in new_causes:
                cause_row[c][3:5] = desc_a[i], desc_b[i]
            part = pd.DataFrame({
                "index": idx[keep], "ts": pa["ts"].array[keep], "conversation": conv_of.text(conv[keep]),
                "proto": pa["proto"].to_numpy()[keep], "src": pa["src"].to_numpy()[keep],
                "dst": pa["dst"].to_numpy()[keep], "sport": pa["sport"].array[keep], "dport": pa["dport"].array[keep],
                "tcp_flags": _kept_text(pa["tcp_flags"], keep),
                "role": pd.Categorical(role[keep], categories=["cause", "consequential", "state_changed",
                                                               "rule_changed"]),
                f"outcome_{a_lab}": _kept_text(pa["outcome"], keep),
                f"outcome_{b_lab}": _kept_text(pb["outcome"], keep),
                f"ct_state_{a_lab}": _kept_text(pa["ct_state"], keep),
                f"ct_state_{b_lab}": _kept_text(pb["ct_state"], keep),
                f"rule_{a_lab}": desc_a[keep], f"rule_{b_lab}": desc_b[keep],
            })
            if packets_sink is not None:
                packets_sink(part)
            if keep_packets is None or kept < keep_packets:
                part = part if keep_packets is None else part.iloc[:keep_packets - kept]
                packets_parts.append(part)
                kept += len(part)
        n += k

    packets = (pd.concat(packets_parts, ignore_index=True) if len(packets_parts) > 1 else
               packets_parts[0].reset_index(drop=True) if packets_parts else _empty_packets(labels))
    first = _first_packets(blocks, sorted(stat.first(c) for c in cause_idx)) if cause_idx else {}
    rows = []
    names = conv_of.text(list(cause_idx)).tolist() if cause_idx else []  # in cause_idx's order
    for (c, i), name in zip(cause_idx.items(), names):
        kind, fate_a, fate_b, d_a, d_b, ts = cause_row[c]
        f = first[stat.first(c)]
        proto = int(f["proto"])
        rows.append({
            "conversation": name, "change": kind, "service": _service(proto, f["dport"], f["icmp_type"]),
            "proto": proto, "src": f["src"], "dst": f["dst"], "sport": f["sport"], "dport": f["dport"],
            "first_packet": int(f["first_packet"]), "cause_packet": int(i), "ts": ts,
            f"fate_{a_lab}": fate_a, f"fate_{b_lab}": fate_b,
            f"rule_{a_lab}": d_a, f"rule_{b_lab}": d_b,
            "packets": stat.count(c), "packets_changed": int(n_changed.get(c, 0)),
            "consequential": int(n_conseq.get(c, 0)),
        })
    flows = _flows_frame(rows, labels)
    by_service = _by_service(flows)
    counts = {
        "packets": int(n),
        "packets_fate_changed": fate_changed_total,
        "packets_cause": roles["cause"],
        "packets_consequential": roles["consequential"],
        "packets_rule_changed_same_fate": roles["rule_changed"],
        "packets_state_changed_same_fate": roles["state_changed"],
        "conversations_changed": int(len(flows)),
        "newly_blocked": int((flows["change"] == "newly_blocked").sum()) if len(flows) else 0,
        "newly_allowed": int((flows["change"] == "newly_allowed").sum()) if len(flows) else 0,
        "other_changes": int((flows["change"] == "changed").sum()) if len(flows) else 0,
        "outcomes": {lab: dict(sorted(o.items(), key=lambda kv: -kv[1])) for lab, o in zip(labels, outcomes)},
    }
    return Diff(packets=packets, flows=flows, by_service=by_service, counts=counts, labels=tuple(labels))


def _service(proto: int, dport, icmp_type) -> str:
    """'tcp/80', 'icmp/8' or the protocol's name: a changed conversation's service."""
    name = _PROTO.get(proto, proto)
    if pd.notna(dport):
        return f"{name}/{int(dport)}"
    return f"{name}/{int(icmp_type)}" if pd.notna(icmp_type) else str(name)


def _flows_frame(rows: list, labels) -> pd.DataFrame:
    """Diff.flows from its rows (dicts)."""
    a, b = labels
    return pd.DataFrame(rows, columns=[
        "conversation", "change", "service", "proto", "src", "dst", "sport", "dport", "first_packet", "cause_packet",
        "ts", f"fate_{a}", f"fate_{b}", f"rule_{a}", f"rule_{b}", "packets", "packets_changed", "consequential"])


def _by_service(flows: pd.DataFrame) -> pd.DataFrame:
    """Diff.by_service: newly blocked / newly allowed / changed conversations per service."""
    if not len(flows):
        return pd.DataFrame(columns=["service", "newly_blocked", "newly_allowed", "changed"])
    by_service = flows.pivot_table(index="service", columns="change", values="conversation", aggfunc="count",
                                   fill_value=0)
    for c in ("newly_blocked", "newly_allowed", "changed"):
        if c not in by_service:
            by_service[c] = 0
    by_service = by_service[["newly_blocked", "newly_allowed", "changed"]].astype("int64")
    by_service = by_service.sort_values(["newly_blocked", "newly_allowed"], ascending=False).reset_index()
    by_service.columns.name = None
    return by_service


class _ConvStats:
    """Per conversation code: the index of its first packet and its number of packets. Side A's flows (codes
    below _B, dense) in two arrays (16 bytes each), the others in a dict."""

    def __init__(self):
        self._first = np.zeros(0, np.int64)
        self._count = np.zeros(0, np.int64)
        self._other: dict = {}

    def add(self, conv: np.ndarray, n: int) -> None:
        """A block's conversation codes; n: the index of its first packet."""
        a = conv < _B
        ca = conv[a]
        if len(ca):
            top = int(ca.max()) + 1
            if top > len(self._first):
                size = max(top, 2 * len(self._first))
                f, c = np.full(size, -1, np.int64), np.zeros(size, np.int64)
                f[:len(self._first)], c[:len(self._count)] = self._first, self._count
                self._first, self._count = f, c
            u, k, m = np.unique(ca, return_index=True, return_counts=True)
            rows = np.flatnonzero(a)[k]
            new = self._first[u] < 0
            self._first[u[new]] = n + rows[new]
            self._count[u] += m
        if not a.all():
            o = self._other
            rest = np.flatnonzero(~a)
            u, k, m = np.unique(conv[rest], return_index=True, return_counts=True)
            for c, r, cnt in zip(u.tolist(), rest[k].tolist(), m.tolist()):
                v = o.get(c)
                o[c] = [n + r, cnt] if v is None else [v[0], v[1] + cnt]

    def first(self, c: int) -> int:
        return int(self._first[c]) if c < _B else self._other[c][0]

    def count(self, c: int) -> int:
        return int(self._count[c]) if c < _B else self._other[c][1]


_FIRST_FIELDS = ("proto", "src", "dst", "sport", "dport", "icmp_type")


def _kept_text(col: pd.Series, keep: np.ndarray) -> np.ndarray:
    """The text of col's rows `keep` (as col.astype(str), for those rows only)."""
    return col.iloc[keep].astype(str).to_numpy()


def _first_packets(blocks, wanted: list) -> dict:
    """{index: the fields of side A's packet `index`} for the sorted indices `wanted` (a third pass)."""
    out: dict = {}
    want = np.asarray(wanted, dtype=np.int64)
    n = 0
    for pa, _pb in blocks():
        k = len(pa)
        lo, hi = np.searchsorted(want, [n, n + k])
        if hi > lo:
            rows = want[lo:hi]
            sub = pa.iloc[rows - n]  # one take per block, not a row lookup per packet
            cols = [sub[c].array for c in _FIRST_FIELDS]  # scalars as a row lookup gives them
            for i, *vals in zip(rows.tolist(), *cols):
                out[i] = {"first_packet": i, **dict(zip(_FIRST_FIELDS, vals))}
        n += k
        if hi == len(want):
            break
    return out


def _empty_packets(labels) -> pd.DataFrame:
    a, b = labels
    return pd.DataFrame({
        "index": np.zeros(0, np.int64), "ts": pd.Series([], dtype="datetime64[ns, UTC]").to_numpy(),
        "conversation": np.zeros(0, object), "proto": np.zeros(0, np.uint8), "src": np.zeros(0, object),
        "dst": np.zeros(0, object), "sport": pd.array([], dtype="UInt16"), "dport": pd.array([], dtype="UInt16"),
        "tcp_flags": np.zeros(0, object),
        "role": pd.Categorical([], categories=["cause", "consequential", "state_changed", "rule_changed"]),
        f"outcome_{a}": np.zeros(0, object), f"outcome_{b}": np.zeros(0, object),
        f"ct_state_{a}": np.zeros(0, object), f"ct_state_{b}": np.zeros(0, object),
        f"rule_{a}": np.zeros(0, object), f"rule_{b}": np.zeros(0, object)})


def _key_of(codes: np.ndarray, ids: np.ndarray) -> np.ndarray:
    j = ids.astype(np.int64) + 1
    ok = (j >= 0) & (j < len(codes))
    return np.where(ok, codes[np.where(ok, j, 0)], 0)


def _rule_key_codes(rules_a: pd.DataFrame, rules_b: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """Per side, an array by rule_id + 1 (0: no rule) of the code of the rule's identity across the two
    rulesets, table/chain/text (the rule ids differ between them; "" for no rule or an unknown id)."""
    codes: dict = {"": 0}
    out = []
    for rules in (rules_a, rules_b):
        ids = rules["rule_id"].astype("int64").to_numpy()
        key = (rules["table"].astype(str) + "/" + rules["chain"].astype(str) + "/" + rules["text"].astype(str)).tolist()
        arr = np.zeros(int(ids.max()) + 2 if len(ids) else 1, dtype=np.int64)
        for i, k in zip(ids.tolist(), key):
            if i >= 0:
                arr[i + 1] = codes.setdefault(k, len(codes))
        out.append(arr)
    return out[0], out[1]

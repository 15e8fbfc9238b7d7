"""The first (pandas) implementation of analysis.zeek's histories, kept as a readable reference for the
differential test of the packet-by-packet kernels (replay.zeekstate). Three fixes against the shipped
version it replaced, all now the definition: sequence numbers and payload ends count TCP packets only (an
ICMP error attached to a TCP flow no longer moves them), a bad-checksum packet yields only its C (no W),
and within one packet the flag letter comes before D (the sort is stable)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from nfreplay.analysis.zeek import _RSTOS0
from nfreplay.replay import codes

INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = range(7)


def _letters(flags, payload):
    """Per packet: the flag-combination letter (or ''), data, checksum and zero-window booleans."""
    syn = (flags & codes.TCP_SYN) != 0
    fin = (flags & codes.TCP_FIN) != 0
    rst = (flags & codes.TCP_RST) != 0
    ack = (flags & codes.TCP_ACK) != 0
    nbits = syn.astype(np.int8) + fin + rst
    letter = np.full(len(flags), "", dtype=object)
    letter[(nbits > 1) & fin & rst] = "I"
    letter[(nbits > 1) & ~(fin & rst)] = "Q"
    one = nbits == 1
    letter[one & syn & ack] = "H"
    letter[one & syn & ~ack] = "S"
    letter[one & fin] = "F"
    letter[one & rst] = "R"
    letter[(nbits == 0) & ack & (payload == 0)] = "A"
    return letter, syn, fin, rst, ack


def reference_histories(out) -> pd.DataFrame:
    """DataFrame indexed by ct_id with columns conn_state, history (only flows that have packets)."""
    p, r = out.packets, out.results
    ct = np.asarray(r.ct_id, dtype=np.int64)
    d = np.asarray(r.ct_dir, dtype=np.int64)
    sel = np.flatnonzero((ct >= 0) & (d <= 1))
    if len(sel) == 0:
        return pd.DataFrame({"conn_state": pd.Series([], dtype="str"), "history": pd.Series([], dtype="str")},
                            index=pd.Index([], dtype="int64", name="ct_id"))
    proto = np.asarray(p.proto)[sel].astype(np.int64)
    is_tcp = proto == codes.IPPROTO_TCP
    flags = np.where(is_tcp, np.asarray(p.tcp_flags)[sel].astype(np.int64) & 0xFF, 0)
    payload = np.asarray(p.payload_len)[sel].astype(np.int64)
    win = np.asarray(p.tcp_win)[sel].astype(np.int64)
    seq = np.asarray(p.tcp_seq)[sel].astype(np.int64)
    csum_bad = (np.asarray(p.l4_csum)[sel] == codes.CsumStatus.BAD) & is_tcp
    # Zeek records 'C' for a bad checksum and then ignores the packet: no other letter, no state change
    flags = np.where(csum_bad, 0, flags)
    payload = np.where(csum_bad, 0, payload)
    df = pd.DataFrame({"ct": ct[sel], "dir": d[sel], "pos": np.arange(len(sel)), "tcp": is_tcp,
                       "proto": proto, "payload": payload})
    letter, syn, fin, rst, ack = _letters(flags, payload)
    letter = np.where(is_tcp, letter, "")
    df["letter"] = letter
    df["syn_only"] = is_tcp & syn & ~ack & ~fin & ~rst
    df["synack"] = is_tcp & syn & ack & ~fin & ~rst
    df["fin"] = is_tcp & fin & ~rst
    df["rst"] = is_tcp & rst

    # ---- retransmissions: payload ending at or below the highest end already seen in that direction
    g = df.groupby(["ct", "dir"], sort=False).ngroup().to_numpy()
    first_seq = pd.Series(np.where(is_tcp, seq, np.nan)).groupby(g).transform("first").fillna(0).to_numpy(np.int64)
    rel_start = (seq - first_seq) & 0xFFFFFFFF
    rel_start = np.where(rel_start >= 1 << 31, rel_start - (1 << 32), rel_start)  # before the first seq
    rel_end = rel_start + payload + (syn & is_tcp) + (fin & is_tcp)
    floor = np.iinfo(np.int64).min
    ends = pd.Series(np.where(is_tcp & (payload > 0), rel_end, floor))
    prev_max = ends.groupby(g).cummax().groupby(g).shift(1).fillna(floor).to_numpy(dtype=np.int64)
    retrans = is_tcp & (payload > 0) & (rel_end <= prev_max)
    zero_win = is_tcp & (win == 0) & ~rst & ~syn & ~csum_bad

    events = [df.loc[df["letter"] != "", ["ct", "dir", "pos", "letter"]]]
    is_udp = np.isin(proto, (codes.IPPROTO_UDP, codes.IPPROTO_UDPLITE))
    data = df.loc[(is_tcp | is_udp) & (payload > 0), ["ct", "dir", "pos"]].assign(letter="D")
    events.append(data)
    for mask, lt in ((csum_bad & is_tcp, "C"), (retrans, "T"), (zero_win, "W")):
        e = df.loc[mask, ["ct", "dir", "pos"]].assign(letter=lt)
        if len(e):
            k = e.groupby(["ct", "dir"]).cumcount().to_numpy() + 1
            keep = np.isin(k, (1, 10, 100, 1000, 10_000, 100_000, 1_000_000))
            e = e.loc[keep].assign(repeat=True)
        events.append(e)
    ev = pd.concat(events, ignore_index=True)
    if "repeat" not in ev:
        ev["repeat"] = False
    ev["repeat"] = ev["repeat"].fillna(False).astype(bool)
    once = ev.loc[~ev["repeat"]].sort_values("pos", kind="stable").drop_duplicates(["ct", "dir", "letter"])
    ev = pd.concat([once, ev.loc[ev["repeat"]]]).sort_values(["ct", "pos"], kind="stable")
    lower = {c: c.lower() for c in "SHADFRIQCTW"}  # letters are upper case; the responder's lower
    chars = [c if d == 0 else lower[c] for c, d in zip(ev["letter"].tolist(), ev["dir"].tolist())]
    ev_ct = ev["ct"].to_numpy()
    ids = np.unique(df["ct"].to_numpy()).astype(np.int64)
    history = np.full(len(ids), "", dtype=object)
    if len(ev_ct):
        starts = np.flatnonzero(np.r_[True, ev_ct[1:] != ev_ct[:-1]])
        ends = np.r_[starts[1:], len(ev_ct)]
        where = np.searchsorted(ids, ev_ct[starts])
        history[where] = ["".join(chars[a:b]) for a, b in zip(starts.tolist(), ends.tolist())]

    # ---- endpoint states
    res = pd.DataFrame(index=pd.Index(ids, name="ct_id"))
    res["history"] = history
    res["conn_state"] = _conn_states(df, ids, res["history"].to_numpy())
    res = res[["conn_state", "history"]]
    res["history"] = res["history"].astype("str")
    res["conn_state"] = res["conn_state"].astype("str")
    return res


def _first_pos(df, mask, ids, direction=None):
    m = mask if direction is None else mask & (df["dir"].to_numpy() == direction)
    s = df.loc[m].groupby("ct")["pos"].min()
    return s.reindex(ids).to_numpy(dtype=float)  # NaN: never


def _last_pos(df, mask, ids, direction):
    m = mask & (df["dir"].to_numpy() == direction)
    s = df.loc[m].groupby("ct")["pos"].max()
    return s.reindex(ids).to_numpy(dtype=float)


def _conn_states(df: pd.DataFrame, ids: np.ndarray, history: np.ndarray) -> np.ndarray:
    tcp = df.groupby("ct")["tcp"].first().reindex(ids).to_numpy()
    proto = df.groupby("ct")["proto"].first().reindex(ids).to_numpy()
    syn_o = _first_pos(df, df["syn_only"].to_numpy(), ids, 0)
    synack_r_all = df.loc[df["synack"].to_numpy() & (df["dir"].to_numpy() == 1), ["ct", "pos"]]
    # handshake: a responder SYN-ACK after the originator's first SYN
    first_syn = pd.Series(syn_o, index=ids)
    if len(synack_r_all):
        fs = first_syn.reindex(synack_r_all["ct"].to_numpy()).to_numpy()
        ok = synack_r_all.loc[synack_r_all["pos"].to_numpy() > np.nan_to_num(fs, nan=np.inf)]
        handshake = np.isin(ids, ok["ct"].unique())
    else:
        handshake = np.zeros(len(ids), dtype=bool)
    payload_o = df.loc[df["dir"] == 0].groupby("ct")["payload"].sum().reindex(ids).fillna(0).to_numpy()
    payload_r = df.loc[df["dir"] == 1].groupby("ct")["payload"].sum().reindex(ids).fillna(0).to_numpy()

    def endpoint(direction):
        last_rst = _last_pos(df, df["rst"].to_numpy(), ids, direction)
        last_fin = _last_pos(df, df["fin"].to_numpy(), ids, direction)
        sent = _first_pos(df, np.ones(len(df), dtype=bool), ids, direction)
        sent_syn = _first_pos(df, df["syn_only"].to_numpy(), ids, direction)
        sent_sa = _first_pos(df, df["synack"].to_numpy(), ids, direction)
        st = np.full(len(ids), INACTIVE)
        st[~np.isnan(sent)] = PARTIAL
        st[~np.isnan(sent_sa)] = SYN_ACK_SENT
        st[~np.isnan(sent_syn)] = SYN_SENT
        st[handshake & ~np.isnan(sent)] = ESTABLISHED
        has_rst, has_fin = ~np.isnan(last_rst), ~np.isnan(last_fin)
        closed = has_fin & (~has_rst | (np.nan_to_num(last_fin) > np.nan_to_num(last_rst)))
        st[has_rst] = RESET
        st[closed] = CLOSED
        return st

    os_, rs = endpoint(0), endpoint(1)
    o_inactive = np.isin(os_, (INACTIVE, PARTIAL))
    r_inactive = np.isin(rs, (INACTIVE, PARTIAL))
    out = np.full(len(ids), "OTH", dtype=object)
    for i in range(len(ids)):
        if not tcp[i]:
            if proto[i] in (codes.IPPROTO_UDP, codes.IPPROTO_UDPLITE):
                o_act, r_act = os_[i] != INACTIVE, rs[i] != INACTIVE
                out[i] = ("SF" if r_act else "S0") if o_act else ("SHR" if r_act else "OTH")
            continue
        o, rr = os_[i], rs[i]
        if rr == RESET:
            if o in (SYN_SENT, SYN_ACK_SENT) or (o == RESET and payload_o[i] == 0 and payload_r[i] == 0):
                out[i] = "REJ"
            elif o_inactive[i]:
                out[i] = "RSTRH"
            else:
                out[i] = "RSTR"
        elif o == RESET:
            if r_inactive[i]:
                out[i] = "RSTOS0" if _RSTOS0.match(history[i]) else "OTH"
            else:
                out[i] = "RSTO"
        elif rr == CLOSED and o == CLOSED:
            out[i] = "SF"
        elif o == CLOSED:
            out[i] = "SH" if r_inactive[i] else "S2"
        elif rr == CLOSED:
            out[i] = "SHR" if o_inactive[i] else "S3"
        elif o == SYN_SENT and rr == INACTIVE:
            out[i] = "S0"
        elif o == ESTABLISHED and rr == ESTABLISHED:
            out[i] = "S1"
    return out

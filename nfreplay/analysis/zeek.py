"""Zeek-style `conn_state` and `history` per conntrack flow, computed from the flow's captured packets.

Definitions follow Zeek's conn.log (base/protocols/conn/main.zeek):

history letters, upper case from the originator (conntrack's ORIGINAL direction), lower case from the
responder; each letter is recorded the first time it happens in that direction, in the order it happens:

    S  a SYN without the ACK bit          H  a SYN-ACK ("handshake")
    A  a pure ACK (no SYN/FIN/RST, no payload)
    D  a packet with payload ("data")     F  a FIN (alone of SYN/FIN/RST)   R  a RST (alone)
    I  an inconsistent packet (FIN+RST)   Q  a multi-flag packet (SYN+FIN or SYN+RST)
    C  bad L4 checksum   T  retransmitted payload   W  zero window advertised
    A packet with a bad checksum yields only its C (Zeek drops it from further analysis).
    (C, T and W are repeated when their count reaches 10, 100, 1000, ... as Zeek does.)

UDP flows get D/d for packets with payload (as Zeek's UDP analyzer records them); ICMP none.
Not produced: G (content gaps need reassembly) and ^ (Zeek's direction flip; our originator is
conntrack's, never flipped).

conn_state follows Zeek's conn_state() on per-endpoint states INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL,
ESTABLISHED, CLOSED, RESET. An endpoint's final state: the last of its RST (RESET) / FIN (CLOSED)
packets if it sent any; otherwise ESTABLISHED when the handshake was seen (originator SYN, then
responder SYN-ACK); otherwise SYN_SENT if it sent a SYN, SYN_ACK_SENT if it sent a SYN-ACK, PARTIAL if
it sent anything, else INACTIVE. UDP: SF both sides sent, S0 only the originator, SHR only the
responder. Anything else (ICMP, other protocols): OTH.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..replay import zeekstate as zs
from ..replay.zeekstate import (
    CLOSED,
    ESTABLISHED,
    INACTIVE,
    LETTERS,
    PARTIAL,
    REPEAT_LETTERS,
    RESET,
    SYN_ACK_SENT,
    SYN_SENT,
)

__all__ = ["CONN_STATES", "CONN_STATE_MEANINGS", "HistoryBuilder", "zeek_histories"]

CONN_STATE_MEANINGS = {
    "S0": "Connection attempt seen, no reply.",
    "S1": "Connection established, not terminated.",
    "SF": "Normal establishment and termination.",
    "REJ": "Connection attempt rejected.",
    "S2": "Connection established and close attempt by originator seen (but no reply from responder).",
    "S3": "Connection established and close attempt by responder seen (but no reply from originator).",
    "RSTO": "Connection established, originator aborted (sent a RST).",
    "RSTR": "Responder sent a RST.",
    "RSTOS0": "Originator sent a SYN followed by a RST, we never saw a SYN-ACK from the responder.",
    "RSTRH": "Responder sent a SYN ACK followed by a RST, we never saw a SYN from the (purported) originator.",
    "SH": "Originator sent a SYN followed by a FIN, we never saw a SYN ACK from the responder.",
    "SHR": "Responder sent a SYN ACK followed by a FIN, we never saw a SYN from the originator.",
    "OTH": "No SYN seen, just midstream traffic (or not TCP/UDP).",
}
CONN_STATES = tuple(CONN_STATE_MEANINGS)

_RSTOS0 = re.compile(r"^\^?S[^HAFGIQ]*R.*")


class HistoryBuilder:
    """Zeek histories built packet by packet: `update(packets, results)` with each replayed chunk or step in
    capture order (replay.zeekstate carries the per-flow state across calls), then `frame()`. A capture
    replayed in steps gets the same histories as one replayed whole."""

    def __init__(self, n_flows: int = 1024):
        self._st = zs.new_history_state(n_flows)
        self._log_ct: list[np.ndarray] = []
        self._log_ch: list[np.ndarray] = []
        self._n = 0  # 1 + the highest flow id seen

    def update(self, packets, results) -> None:
        ct = np.asarray(results.ct_id)
        if len(ct) == 0:
            return
        top = int(ct.max()) + 1
        if top > self._n:
            self._n = top
            self._st = zs.grow_history_state(self._st, top)
        n = len(ct)
        log_ct = np.empty(4 * n, np.int32)
        log_ch = np.empty(4 * n, np.uint8)
        k = zs.history_update(*self._st, ct, np.asarray(results.ct_dir), np.asarray(packets.proto),
                              np.asarray(packets.tcp_flags), np.asarray(packets.payload_len),
                              np.asarray(packets.tcp_win), np.asarray(packets.tcp_seq), np.asarray(packets.l4_csum),
                              log_ct, log_ch)
        if k:
            self._log_ct.append(log_ct[:k].copy())
            self._log_ch.append(log_ch[:k].copy())

    def frame(self) -> pd.DataFrame:
        """DataFrame indexed by ct_id with columns conn_state, history (only flows that have packets)."""
        n = self._n
        fl = self._st.fl[:n]
        ids = np.flatnonzero(fl & zs.FL_SEEN).astype(np.int64)
        if len(ids) == 0:
            return pd.DataFrame({"conn_state": pd.Series([], dtype="str"), "history": pd.Series([], dtype="str")},
                                index=pd.Index([], dtype="int64", name="ct_id"))
        if len(self._log_ct) > 1:  # one array each from now on (frame() may be called again)
            self._log_ct, self._log_ch = [np.concatenate(self._log_ct)], [np.concatenate(self._log_ch)]
        history = _join_letters(self._log_ct, self._log_ch, n)  # pyarrow large_string, one per flow id
        states = _conn_state_codes(fl, zs.endpoint_states(self._st.fl, self._st.ep, n),
                                   self._st.ep[:n], history)
        import pyarrow as pa

        from .frames import _str_array_from_arrow

        res = pd.DataFrame({"conn_state": pd.array(np.asarray(CONN_STATES, dtype=object)[states[ids]], dtype="str"),
                            "history": _str_array_from_arrow(history.take(pa.array(ids)))},
                           index=pd.Index(ids, name="ct_id"))
        return res


_CHARS = np.array([ord(c) for c in LETTERS + REPEAT_LETTERS] + [0] * 5
                  + [ord(c.lower()) for c in LETTERS + REPEAT_LETTERS] + [0] * 5, dtype=np.uint8)


def _join_letters(log_ct: list, log_ch: list, n: int):
    """The history text of each flow id < n (a pyarrow large_string array; '' without letters): the logged
    letters of each flow in the order they were logged (a counting sort in replay.zeekstate; no Python
    string per flow: a 20M-packet capture has ~1.6M flows)."""
    import pyarrow as pa

    ct = (log_ct[0] if len(log_ct) == 1 else np.concatenate(log_ct)) if log_ct else np.zeros(0, np.int32)
    ch = (log_ch[0] if len(log_ch) == 1 else np.concatenate(log_ch)) if log_ch else np.zeros(0, np.uint8)
    offsets, text = zs.join_letters(ct, ch, n, _CHARS)
    return pa.LargeStringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(text))


def _conn_state_codes(fl: np.ndarray, eps: np.ndarray, ep: np.ndarray, history) -> np.ndarray:
    """Index into CONN_STATES per flow id (Zeek's conn_state() on the endpoint states)."""
    n = len(fl)
    code = {s: i for i, s in enumerate(CONN_STATES)}
    out = np.full(n, code["OTH"], dtype=np.int64)
    o, r = eps[:, 0], eps[:, 1]
    tcp = (fl & zs.FL_TCP) != 0
    udp = (fl & zs.FL_UDP) != 0
    o_act, r_act = o != INACTIVE, r != INACTIVE
    out[udp & o_act & r_act] = code["SF"]
    out[udp & o_act & ~r_act] = code["S0"]
    out[udp & ~o_act & r_act] = code["SHR"]
    o_inactive = np.isin(o, (INACTIVE, PARTIAL))
    r_inactive = np.isin(r, (INACTIVE, PARTIAL))
    no_payload = ((ep[:, 0] | ep[:, 1]) & zs.EP_PAYLOAD) == 0
    # Zeek's conn_state(): the first matching branch wins, so assign in reverse order of precedence
    rules = [
        (o == ESTABLISHED) & (r == ESTABLISHED), "S1",
        (o == SYN_SENT) & (r == INACTIVE), "S0",
        (r == CLOSED) & ~o_inactive, "S3",
        (r == CLOSED) & o_inactive, "SHR",
        (o == CLOSED) & ~r_inactive, "S2",
        (o == CLOSED) & r_inactive, "SH",
        (r == CLOSED) & (o == CLOSED), "SF",
        (o == RESET) & ~r_inactive, "RSTO",
        (o == RESET) & r_inactive, "RSTOS0",  # only if the history matches, below
        (r == RESET) & ~np.isin(o, (SYN_SENT, SYN_ACK_SENT)) & ~((o == RESET) & no_payload) & ~o_inactive, "RSTR",
        (r == RESET) & ~np.isin(o, (SYN_SENT, SYN_ACK_SENT)) & ~((o == RESET) & no_payload) & o_inactive, "RSTRH",
        (r == RESET) & (np.isin(o, (SYN_SENT, SYN_ACK_SENT)) | ((o == RESET) & no_payload)), "REJ",
    ]
    for mask, name in zip(rules[::2], rules[1::2]):
        m = mask & tcp
        if name == "RSTOS0":
            cand = np.flatnonzero(m & (r != RESET))
            hit = np.array([bool(_RSTOS0.match(history[int(i)].as_py())) for i in cand], dtype=bool)
            out[cand[hit]] = code["RSTOS0"]
            out[cand[~hit]] = code["OTH"]
            continue
        out[m] = code[name]
    return out


def zeek_histories(out) -> pd.DataFrame:
    """DataFrame indexed by ct_id with columns conn_state, history (only flows that have packets)."""
    b = HistoryBuilder(len(out.flows.get("family", ())) if out.flows else 1024)
    if out.packets is not None and out.results is not None:
        b.update(out.packets, out.results)
    return b.frame()

"""Kernels for the Zeek-style `history` / `conn_state` of each flow (analysis.zeek has the definitions).

The state is per flow (row = ct_id) and per direction, updated packet by packet, so a capture replayed in
chunks (the streaming run) gets the same histories as one replayed whole: `history_update` is called on
each step's packets in capture order and carries everything across calls. The letters themselves are
appended to a log (flow id, letter) that the caller keeps; `analysis.zeek` joins them per flow at the end.

Per flow and direction: the once-letters already recorded (a bit each), the C/T/W counts (recorded at the
1st, 10th, 100th ... occurrence), the sequence number of the first packet and the highest payload end
seen (retransmissions), and the endpoint facts conn_state needs (sent anything, a SYN, a SYN-ACK, payload;
whether its last FIN/RST was a FIN or a RST). Per flow: the protocol of its first packet, whether the
handshake was seen (a responder SYN-ACK after the originator's first SYN).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import codes
from ._jit import kernel

__all__ = ["HistoryState", "new_history_state", "grow_history_state", "history_update", "endpoint_states",
           "join_letters", "LETTERS", "REPEAT_LETTERS"]

# once-letters (bit i of `once`), then the repeated ones (log codes 8, 9, 10); upper case = originator
LETTERS = "SHADFRIQ"
REPEAT_LETTERS = "CTW"
_S, _H, _A, _D, _F, _R, _I, _Q = range(8)
_C, _T, _W = 8, 9, 10

# `ep` bits (per flow and direction)
EP_SENT, EP_SYN, EP_SYNACK, EP_PAYLOAD, EP_FIN_LAST, EP_RST_LAST = 1, 2, 4, 8, 16, 32
# `fl` bits (per flow)
FL_SEEN, FL_TCP, FL_UDP, FL_HANDSHAKE, FL_ORIG_SYN = 1, 2, 4, 8, 16

_REPEAT_AT = (1, 10, 100, 1000, 10_000, 100_000, 1_000_000)


class HistoryState(NamedTuple):
    """Per flow (first axis = ct_id; second = direction 0 originator, 1 responder)."""
    fl: np.ndarray         # uint8 [n]: FL_* bits
    once: np.ndarray       # uint8 [n, 2]: once-letters recorded (bit per LETTERS index)
    ep: np.ndarray         # uint8 [n, 2]: EP_* bits
    counts: np.ndarray     # int32 [n, 2, 3]: C, T, W occurrences
    first_seq: np.ndarray  # int64 [n, 2]: seq of the direction's first packet (-1 none yet)
    max_end: np.ndarray    # int64 [n, 2]: highest payload end, relative to first_seq (INT64_MIN none)


_NONE = np.iinfo(np.int64).min


def new_history_state(n: int = 1024) -> HistoryState:
    n = max(1, int(n))
    return HistoryState(np.zeros(n, np.uint8), np.zeros((n, 2), np.uint8), np.zeros((n, 2), np.uint8),
                        np.zeros((n, 2, 3), np.int32), np.full((n, 2), -1, np.int64),
                        np.full((n, 2), _NONE, np.int64))


def grow_history_state(st: HistoryState, n: int) -> HistoryState:
    """The state with room for flow ids < n (growing by half: ~61 bytes per flow), the recorded rows copied."""
    cap = len(st.fl)
    if n <= cap:
        return st
    new = new_history_state(max(n, cap + cap // 2))
    for a, b in zip(new, st):
        a[:cap] = b
    return new


@kernel
def _log(log_ct, log_ch, k, ct, ch):
    log_ct[k] = ct
    log_ch[k] = ch
    return k + 1


@kernel
def _repeat(counts, ct, d, j, log_ct, log_ch, k, ch):
    c = counts[ct, d, j] + 1
    counts[ct, d, j] = c
    if c == 1 or c == 10 or c == 100 or c == 1000 or c == 10_000 or c == 100_000 or c == 1_000_000:
        k = _log(log_ct, log_ch, k, ct, ch)
    return k


@kernel
def history_update(fl, once, ep, counts, first_seq, max_end, ct_id, ct_dir, proto, tcp_flags, payload_len,
                   tcp_win, tcp_seq, l4_csum, log_ct, log_ch):
    """Adds packets 0..len(ct_id)-1 (in capture order) to the state (the HistoryState's arrays, with room
    for every ct_id given) and appends their letters to (log_ct, log_ch) (room for 4 per packet: a flag
    letter, D, T, W; or a C alone). Packets without a flow (ct_id < 0) or direction (ct_dir > 1) are
    skipped. Returns the number of log entries written. Letter codes: 0-7 LETTERS, 8-10 REPEAT_LETTERS;
    + 16 for the responder (lower case)."""
    k = 0
    for i in range(len(ct_id)):
        ct = np.int64(ct_id[i])
        d = np.int64(ct_dir[i])
        if ct < 0 or d < 0 or d > 1:
            continue
        pr = np.int64(proto[i])
        f0 = np.int64(fl[ct])
        if f0 & FL_SEEN == 0:  # the flow's first packet decides its protocol
            f0 = FL_SEEN
            if pr == codes.IPPROTO_TCP:
                f0 |= FL_TCP
            elif pr == codes.IPPROTO_UDP or pr == codes.IPPROTO_UDPLITE:
                f0 |= FL_UDP
        is_tcp = pr == codes.IPPROTO_TCP
        up = 16 * d
        e = np.int64(ep[ct, d]) | EP_SENT
        if is_tcp:
            seq = np.int64(tcp_seq[i]) & 0xFFFFFFFF
            if first_seq[ct, d] < 0:
                first_seq[ct, d] = seq
            if l4_csum[i] == codes.CsumStatus.BAD:
                # Zeek records C and then ignores the packet (no other letter, no state change)
                k = _repeat(counts, ct, d, 0, log_ct, log_ch, k, _C + up)
                ep[ct, d] = e
                fl[ct] = f0
                continue
            flags = np.int64(tcp_flags[i]) & 0xFF
            pay = np.int64(payload_len[i])
            syn = (flags & codes.TCP_SYN) != 0
            fin = (flags & codes.TCP_FIN) != 0
            rst = (flags & codes.TCP_RST) != 0
            ack = (flags & codes.TCP_ACK) != 0
            nbits = np.int64(syn) + np.int64(fin) + np.int64(rst)
            letter = -1
            if nbits > 1:
                letter = _I if (fin and rst) else _Q
            elif nbits == 1:
                if syn:
                    letter = _H if ack else _S
                elif fin:
                    letter = _F
                else:
                    letter = _R
            elif ack and pay == 0:
                letter = _A
            if letter >= 0 and (once[ct, d] >> letter) & 1 == 0:
                once[ct, d] |= np.uint8(1 << letter)
                k = _log(log_ct, log_ch, k, ct, letter + up)
            if pay > 0 and (once[ct, d] >> _D) & 1 == 0:
                once[ct, d] |= np.uint8(1 << _D)
                k = _log(log_ct, log_ch, k, ct, _D + up)
            # endpoint facts
            syn_only = syn and not ack and not fin and not rst
            synack = syn and ack and not fin and not rst
            if syn_only:
                e |= EP_SYN
                if d == 0:
                    f0 |= FL_ORIG_SYN
            if synack:
                e |= EP_SYNACK
                if d == 1 and f0 & FL_ORIG_SYN:
                    f0 |= FL_HANDSHAKE
            if pay > 0:
                e |= EP_PAYLOAD
            if rst:
                e = (e & ~EP_FIN_LAST) | EP_RST_LAST
            elif fin:
                e = (e & ~EP_RST_LAST) | EP_FIN_LAST
            # retransmission: payload ending at or below the highest end already seen in this direction
            rel = (seq - first_seq[ct, d]) & 0xFFFFFFFF
            if rel >= 1 << 31:
                rel -= 1 << 32
            end = rel + pay + np.int64(syn) + np.int64(fin)
            if pay > 0:
                if end <= max_end[ct, d]:
                    k = _repeat(counts, ct, d, 1, log_ct, log_ch, k, _T + up)
                if end > max_end[ct, d]:
                    max_end[ct, d] = end
            if tcp_win[i] == 0 and not rst and not syn:
                k = _repeat(counts, ct, d, 2, log_ct, log_ch, k, _W + up)
        else:
            pay = np.int64(payload_len[i])
            if pay > 0:
                e |= EP_PAYLOAD
                if (pr == codes.IPPROTO_UDP or pr == codes.IPPROTO_UDPLITE) and (once[ct, d] >> _D) & 1 == 0:
                    once[ct, d] |= np.uint8(1 << _D)
                    k = _log(log_ct, log_ch, k, ct, _D + up)
        ep[ct, d] = e
        fl[ct] = f0
    return k


# endpoint states (Zeek's), as analysis.zeek numbers them
INACTIVE, SYN_SENT, SYN_ACK_SENT, PARTIAL, ESTABLISHED, CLOSED, RESET = range(7)


@kernel
def endpoint_states(fl, ep, n):
    """(originator state, responder state) per flow id < n, from the final HistoryState."""
    out = np.zeros((n, 2), np.int8)
    for ct in range(n):
        hs = fl[ct] & FL_HANDSHAKE
        for d in range(2):
            e = ep[ct, d]
            st = INACTIVE
            if e & EP_SENT:
                st = PARTIAL
            if e & EP_SYNACK:
                st = SYN_ACK_SENT
            if e & EP_SYN:
                st = SYN_SENT
            if hs and e & EP_SENT:
                st = ESTABLISHED
            if e & EP_RST_LAST:
                st = RESET
            if e & EP_FIN_LAST:
                st = CLOSED
            out[ct, d] = st
    return out


@kernel
def join_letters(log_ct, log_ch, n, chars):
    """The letters of each flow id < n in log order, as (offsets int64[n + 1], text uint8): flow i's history
    is text[offsets[i]:offsets[i + 1]] (chars maps a letter code to its character). A counting sort: no
    per-letter index array."""
    offsets = np.zeros(n + 1, np.int64)
    for i in range(len(log_ct)):
        offsets[log_ct[i] + 1] += 1
    for i in range(n):
        offsets[i + 1] += offsets[i]
    pos = offsets[:n].copy()
    text = np.empty(len(log_ct), np.uint8)
    for i in range(len(log_ct)):
        c = log_ct[i]
        text[pos[c]] = chars[log_ch[i]]
        pos[c] += 1
    return offsets, text

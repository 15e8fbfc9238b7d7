"""Transition table vs an independent transcription, FTP expectations, chunk-splitting property."""

from __future__ import annotations

import numpy as np
from factories import Driver, pkt, table_of
from hypothesis import given, settings
from hypothesis import strategies as st

from nfreplay.replay.conntrack import (
    ct_abort,
    ct_confirm,
    ct_finish,
    ct_help,
    ct_in,
    ct_set_helper,
    drain_events,
    make_params,
    new_event_log,
    new_table,
)
from nfreplay.replay.conntrack.core import TCP_TABLE

# Independent transcription of tcp_conntracks[2][6][10] from the kernel source text (rows: syn, synack,
# fin, ack, rst, none; columns sNO sSS sSR sES sFW sCW sLA sTW sCL sS2).
KERNEL_TEXT = """
sSS sSS sIG sIG sIG sIG sIG sSS sSS sS2
sIV sIV sSR sIV sIV sIV sIV sIV sIV sSR
sIV sIV sFW sFW sLA sLA sLA sTW sCL sIV
sES sIV sES sES sCW sCW sTW sTW sCL sIV
sIV sCL sCL sCL sCL sCL sCL sCL sCL sCL
sIV sIV sIV sIV sIV sIV sIV sIV sIV sIV
sIV sS2 sIV sIV sIV sIV sIV sSS sIV sS2
sIV sSR sIG sIG sIG sIG sIG sIG sIG sSR
sIV sIV sFW sFW sLA sLA sLA sTW sCL sIV
sIV sIG sSR sES sCW sCW sTW sTW sCL sIG
sIV sCL sCL sCL sCL sCL sCL sCL sCL sCL
sIV sIV sIV sIV sIV sIV sIV sIV sIV sIV
"""
NAMES = ["sNO", "sSS", "sSR", "sES", "sFW", "sCW", "sLA", "sTW", "sCL", "sS2", "sIV", "sIG"]


def test_transition_table_matches_kernel_text():
    rows = [[NAMES.index(w) for w in line.split()] for line in KERNEL_TEXT.strip().splitlines()]
    want = np.array(rows).reshape(2, 6, 10)
    assert (TCP_TABLE == want).all()


C, S = "10.0.0.1", "10.0.0.2"


def _ftp_session(port_line: bytes, first=False, helper=True):
    prm = make_params()
    tab = new_table(32, 32)
    ev = new_event_log(64)
    rows, datas = [], []

    def add(src, dst, sp, dp, fl, seq, ack, payload=b"", t=0.0):
        r = pkt(src, dst, 6, sp, dp, fl, seq, ack, 8192, len(payload), t)
        rows.append(r)
        datas.append(bytes(20) + bytes(20) + payload)

    add(C, S, 40000, 21, "S", 1000, 0)
    add(S, C, 21, 40000, "SA", 5000, 1001)
    add(C, S, 40000, 21, "A", 1001, 5001)
    seqc, seqs = 1001, 5001
    if not first:
        add(S, C, 21, 40000, "PA", seqs, seqc, b"220 ready\r\n")
        seqs += 11
        add(C, S, 40000, 21, "PA", seqc, seqs, b"USER a\r\n")
        seqc += 8
        add(S, C, 21, 40000, "PA", seqs, seqc, b"331 pw\r\n")
        seqs += 8
    add(C, S, 40000, 21, "PA", seqc, seqs, port_line)
    add(S, C, 20, 40256, "S", 7000, 0, t=1.0)
    add(C, S, 40256, 20, "SA", 9000, 7001, t=1.1)
    data = np.frombuffer(b"".join(datas), dtype=np.uint8)
    pk = table_of(rows)
    off = 0
    for i, b in enumerate(datas):
        pk.l3_off[i] = off
        off += len(b)
    res = []
    for i in range(len(rows)):
        now = int(pk.ts_ns[i])
        slot, d, ci, _r = ct_in(tab, prm, pk, i, 0, 0, now, ev)
        if i == 0 and helper:
            ct_set_helper(tab, slot, 1)
        ok = ct_help(tab, prm, pk, data, i, slot, d, ci, now)
        if ok:
            ct_confirm(tab, prm, slot, now, i, ev)
        else:
            ct_abort(tab, slot)
        res.append((int(ci), ok, int(slot)))
    return res, tab


def test_tv26_ftp_active_mode():
    res, tab = _ftp_session(b"PORT 10,0,0,1,157,64\r\n")
    assert res[-2][0] == 1  # RELATED
    s = res[-2][2]
    assert tab.status[s] & 1 and tab.master[s] == 0
    assert res[-1][0] == 3 and tab.tcp_state[s] == 2


def test_tv26_variants():
    res, _ = _ftp_session(b"PORT 10,0,0,1,157,64\r\n", first=True)
    assert res[-2][0] == 2  # first client segment never parsed -> NEW
    res, _ = _ftp_session(b"PORT 10,0,0,9,157,64\r\n")
    assert res[-3][1] and res[-2][0] == 2  # wrong address: accepted, no expectation
    res, _ = _ftp_session(b"PORT 10,0,0,1,157,64\n")
    assert res[-3][1] is False  # no \r terminator: helper drops the control packet
    res, _ = _ftp_session(b"PORT 10,0,0,1,157,64\r\n", helper=False)
    assert res[-2][0] == 2


def _random_packets(draw_list):
    hosts = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    rows = []
    t = 0.0
    for (a, b, proto, sp, dp, fl, seq, ack, dt, plen) in draw_list:
        t += dt
        if a == b:
            b = (b + 1) % 3
        if proto == 6:
            rows.append(pkt(hosts[a], hosts[b], 6, 1000 + sp, 1000 + dp, fl, seq, ack, 8192, plen, t))
        elif proto == 17:
            rows.append(pkt(hosts[a], hosts[b], 17, 1000 + sp, 1000 + dp, payload=plen, t=t))
        else:
            rows.append(pkt(hosts[a], hosts[b], 1, icmp_type=(8, 0, 3)[sp % 3], icmp_id=dp, t=t,
                            inner=(hosts[b], hosts[a], 17, 1000 + dp, 1000 + sp)))
    return table_of(rows)


def _run(pk, cuts, drop_mask):
    prm = make_params({"nf_conntrack_max": 6, "nf_conntrack_udp_timeout": 5,
                       "nf_conntrack_tcp_timeout_syn_sent": 7})
    tab = new_table(24, 8)
    per, evs = [], []
    bounds = [0] + sorted(cuts) + [len(pk.ts_ns)]
    from nfreplay.replay.conntrack import grow_flows
    for lo, hi in zip(bounds[:-1], bounds[1:]):
        tab = grow_flows(tab, hi - lo)
        ev = new_event_log(4 * (hi - lo) + 30)
        for i in range(lo, hi):
            now = int(pk.ts_ns[i])
            r = ct_in(tab, prm, pk, i, 0, 0, now, ev)
            per.append(tuple(int(x) for x in r) + (int(tab.tcp_state[r[0]]) if r[0] >= 0 else -1,))
            if drop_mask[i]:
                ct_abort(tab, r[0])
            else:
                ct_confirm(tab, prm, r[0], now, i, ev)
        evs.append(drain_events(ev))
    ev = new_event_log(64)
    ct_finish(tab, int(pk.ts_ns[-1]) + 10**12, ev)
    evs.append(drain_events(ev))
    allev = {k: np.concatenate([e[k] for e in evs]) for k in evs[0]}
    return per, allev


pkt_strategy = st.tuples(st.integers(0, 2), st.integers(0, 2), st.sampled_from([6, 6, 6, 17, 1]),
                         st.integers(0, 2), st.integers(0, 2),
                         st.sampled_from(["S", "SA", "A", "PA", "FA", "R", "RA", "SF", ""]),
                         st.integers(0, 3000), st.integers(0, 3000), st.floats(0, 3),
                         st.integers(0, 1500))


@settings(max_examples=25, deadline=None)
@given(st.lists(pkt_strategy, min_size=2, max_size=40), st.data())
def test_chunking_never_changes_results(plist, data):
    pk = _random_packets(plist)
    n = len(pk.ts_ns)
    cuts = data.draw(st.lists(st.integers(1, n - 1), max_size=4, unique=True))
    drop = data.draw(st.lists(st.booleans(), min_size=n, max_size=n))
    a = _run(pk, [], drop)
    b = _run(pk, cuts, drop)
    assert a[0] == b[0]
    for k in a[1]:
        assert (a[1][k] == b[1][k]).all(), k


def test_udp_expiry_destroy_timer_event():
    d = Driver({"nf_conntrack_udp_timeout": 2})
    d.send(pkt(C, S, 17, 5000, 53, payload=10, t=0.0))
    d.send(pkt(S, C, 17, 53, 5000, payload=10, t=0.1))
    r = d.send(pkt(C, S, 17, 5000, 53, payload=10, t=3.5))
    assert r["ctinfo"] == 2 and r["ct_id"] == 1
    kinds = [(e["event"], e["ct_id"], e["packet_index"], e["ts_ns"]) for e in d.events]
    assert kinds[2] == (3, 0, -1, 2_100_000_000)


def test_live_view_for_connlimit():
    """L[s] = (generation while confirmed and live else -1, expiry, TCP CLOSE/TIME_WAIT): what connlimit
    reads; the generation (E[s, C_GEN]) is valid from allocation, before confirmation."""
    from nfreplay.replay.conntrack.table import C_GEN

    d = Driver({"nf_conntrack_tcp_timeout_time_wait": 5})
    tab = d.tab
    r = d.send(pkt(C, S, 6, 4000, 80, "S", seq=100, t=0.0), accept=False)  # dropped first packet
    s0 = r["slot"]
    g0 = int(tab.E[s0, C_GEN])
    assert g0 > 0 and tab.L[s0, 0] == -1  # never confirmed
    r = d.send(pkt(C, S, 6, 4000, 80, "S", seq=100, t=0.1))
    s = r["slot"]
    g = int(tab.E[s, C_GEN])
    assert g != g0 and tab.L[s, 0] == g and tab.L[s, 1] == tab.expires[s] and tab.L[s, 2] == 0
    d.send(pkt(S, C, 6, 80, 4000, "SA", seq=500, ack=101, t=0.2))
    d.send(pkt(C, S, 6, 4000, 80, "A", seq=101, ack=501, t=0.3))
    d.send(pkt(C, S, 6, 4000, 80, "FA", seq=101, ack=501, t=0.4))
    d.send(pkt(S, C, 6, 80, 4000, "FA", seq=501, ack=102, t=0.5))
    d.send(pkt(C, S, 6, 4000, 80, "A", seq=102, ack=502, t=0.6))
    assert tab.tcp_state[s] == 7 and tab.L[s, 0] == g and tab.L[s, 2] == 1  # TIME_WAIT: closed flag
    assert tab.L[s, 1] == round(0.6e9) + 5 * 10**9
    # expiry reaped at the next lookup: the slot is no longer live
    d.send(pkt(C, S, 6, 4000, 80, "S", seq=900, t=10.0))
    assert tab.L[s, 0] != g
    # RST kill: generation cleared at once
    r = d.send(pkt(C, S, 6, 4001, 80, "S", seq=100, t=11.0))
    s2 = r["slot"]
    assert tab.L[s2, 0] == tab.E[s2, C_GEN]
    d.send(pkt(S, C, 6, 80, 4001, "R", seq=0, t=11.1))
    assert tab.L[s2, 0] == -1

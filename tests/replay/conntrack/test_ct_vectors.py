"""Spec §15 test vectors (conntrack.md), driven through ct_in / ct_confirm directly."""

from __future__ import annotations

import pytest
from factories import Driver, pkt, state_name

from nfreplay.replay.codes import TcpState as T
from nfreplay.replay.conntrack import INVALID_REASONS, R_TABLE_FULL

C, S = "10.0.0.1", "10.0.0.2"
NS = 1_000_000_000
ASSURED, SEEN_REPLY, EXPECTED = 4, 2, 1


def c2s(fl, seq, ack=0, t=0.0, payload=0, win=8192, **kw):
    return pkt(C, S, 6, 40000, kw.pop("dport", 80), fl, seq, ack, win, payload, t, **kw)


def s2c(fl, seq, ack=0, t=0.0, payload=0, win=8192, **kw):
    return pkt(S, C, 6, kw.pop("sport", 80), 40000, fl, seq, ack, win, payload, t, **kw)


def check(res, ct, state=None, exp=None):
    assert state_name(res["ctinfo"]) == ct, res
    if state is not None:
        assert res["state"] == state, res
    if exp is not None:
        assert res["expires"] == round(exp * NS), (res["expires"] / NS, exp)


def reason(res):
    return INVALID_REASONS[res["reason"]]


def tv1(d=None):
    d = d or Driver()
    r = d.send(c2s("S", 1000, 0, 0.0))
    check(r, "NEW", T.SYN_SENT, 120.0)
    s = r["slot"]
    tab = d.tab
    assert (tab.td_end[s, 0], tab.td_maxend[s, 0], tab.td_maxwin[s, 0]) == (1001, 1001, 8192)
    r = d.send(s2c("SA", 5000, 1001, 0.1))
    check(r, "ESTABLISHED", T.SYN_RECV, 60.1)
    assert r["status"] & SEEN_REPLY
    assert tab.td_end[s, 1] == 5001 and tab.td_maxend[s, 0] == 9193
    r = d.send(c2s("A", 1001, 5001, 0.2))
    check(r, "ESTABLISHED", T.ESTABLISHED, 432000.2)
    assert r["status"] & ASSURED and tab.td_maxend[s, 1] == 13193
    return d, s


def tv2(d=None):
    d, s = tv1(d)
    r = d.send(c2s("PA", 1001, 5001, 1.0, payload=100))
    check(r, "ESTABLISHED", T.ESTABLISHED, 301.0)
    assert d.tab.td_end[s, 0] == 1101 and d.tab.td_flags[s, 0] & 0x10
    r = d.send(s2c("A", 5001, 1101, 1.1))
    check(r, "ESTABLISHED", T.ESTABLISHED, 432001.1)
    assert not d.tab.td_flags[s, 0] & 0x10 and d.tab.td_maxend[s, 0] == 9293
    return d, s


def tv3():
    d, s = tv2()
    check(d.send(c2s("FA", 1101, 5001, 2.0)), "ESTABLISHED", T.FIN_WAIT, 122.0)
    assert d.tab.td_flags[s, 0] & 0x04
    check(d.send(s2c("A", 5001, 1102, 2.1)), "ESTABLISHED", T.CLOSE_WAIT, 62.1)
    check(d.send(s2c("FA", 5001, 1102, 2.2)), "ESTABLISHED", T.LAST_ACK, 32.2)
    return d, s


def test_tv1_tv2_tv3_handshake_data_close():
    d, s = tv3()
    check(d.send(c2s("A", 1102, 5002, 2.3)), "ESTABLISHED", T.TIME_WAIT, 122.3)


def test_tv4_syn_reuses_time_wait():
    d, s = tv3()
    d.send(c2s("A", 1102, 5002, 2.3))
    old_id = d.tab.ct_id[s]
    r = d.send(c2s("S", 90000, 0, 10.0))
    check(r, "NEW", T.SYN_SENT, 130.0)
    assert r["ct_id"] == old_id + 1
    kinds = [(e["event"], e["ct_id"]) for e in d.events[-2:]]
    assert kinds == [(3, old_id), (1, old_id + 1)]


def test_tv5_syn_retransmissions_do_not_extend():
    d = Driver()
    r1 = d.send(c2s("S", 1000, 0, 0.0))
    check(r1, "NEW", T.SYN_SENT, 120.0)
    check(d.send(c2s("S", 1000, 0, 60.0)), "NEW", T.SYN_SENT, 120.0)
    r3 = d.send(c2s("S", 1000, 0, 120.5))
    check(r3, "NEW", T.SYN_SENT, 240.5)
    assert r3["ct_id"] == r1["ct_id"] + 1
    destroy = [e for e in d.events if e["event"] == 3]
    assert destroy == [dict(destroy[0], ts_ns=120 * NS, packet_index=-1)]


def test_tv6_pickup():
    d = Driver()
    r = d.send(c2s("A", 1000, 2000, 0.0, payload=10, win=1000))
    check(r, "NEW", T.ESTABLISHED, 300.0)
    s = r["slot"]
    assert d.tab.td_flags[s, 0] & 0x0A == 0x0A and d.tab.td_flags[s, 1] & 0x0A == 0x0A
    check(d.send(s2c("A", 2000, 1010, 0.1, win=1000)), "ESTABLISHED", T.ESTABLISHED, 300.1)
    r = d.send(c2s("A", 1010, 2000, 0.2, win=1000))
    check(r, "ESTABLISHED", T.ESTABLISHED, 432000.2)
    assert r["status"] & ASSURED


def test_tv6_no_pickup_when_loose_0():
    d = Driver({"nf_conntrack_tcp_loose": 0})
    r = d.send(c2s("A", 1000, 2000, 0.0, payload=10, win=1000))
    check(r, "INVALID")
    assert "loose" in reason(r)
    check(d.send(s2c("A", 2000, 1010, 0.1, win=1000)), "INVALID")
    assert d.counters()["entries"] == 0


@pytest.mark.parametrize("fl,ct,why", [
    ("SA", "INVALID", "invalid new"), ("R", "INVALID", "invalid new"), ("RA", "INVALID", "invalid new"),
    ("FA", "INVALID", "invalid new"), ("", "INVALID", "invalid tcp flag combination"),
    ("SF", "INVALID", "invalid tcp flag combination"), ("FPU", "INVALID", "invalid tcp flag combination"),
    ("SAU", "INVALID", "invalid tcp flag combination"), ("SEC", "NEW", ""),
])
def test_tv7_first_packets(fl, ct, why):
    d = Driver()
    r = d.send(c2s(fl, 1000, 0 if "A" not in fl else 1, 0.0))
    check(r, ct)
    assert reason(r) == why
    if ct == "INVALID":
        assert d.counters()["entries"] == 0 and d.events == []


def test_tv8_rst_answering_syn_deletes():
    d = Driver()
    check(d.send(c2s("S", 1000, 0, 0.0)), "NEW", T.SYN_SENT)
    r = d.send(s2c("RA", 0, 1001, 0.05, win=0))
    check(r, "ESTABLISHED")
    assert [e["event"] for e in d.events] == [1, 3]
    r = d.send(c2s("S", 1000, 0, 1.0))
    check(r, "NEW", T.SYN_SENT, 121.0)
    assert r["ct_id"] == 1


def test_tv9_overshoot_ignored():
    d, s = tv1()
    r = d.send(c2s("PA", 9200, 5001, 0.3, payload=100))
    check(r, "ESTABLISHED", T.ESTABLISHED, 432000.2)
    assert d.tab.td_end[s, 0] == 9300 and d.tab.td_flags[s, 0] & 0x10
    r = d.send(s2c("A", 5001, 9300, 0.4))
    check(r, "ESTABLISHED", T.ESTABLISHED, 432000.4)


def test_tv10_seq_far_above():
    d, s = tv1()
    r = d.send(c2s("PA", 20000, 5001, 0.3, payload=100))
    check(r, "INVALID")
    assert reason(r) == "SEQ is over upper bound (over the window of the receiver)"
    assert d.tab.expires[s] == round(432000.2 * NS)


def test_tv11_ack_of_unseen_data():
    d, s = tv1()
    r = d.send(c2s("A", 1001, 9000, 0.3))
    check(r, "INVALID")
    assert reason(r) == "ACK is over upper bound (ACKed data not seen yet)"


def test_tv12_overly_delayed_ack_ignored():
    d, s = tv1()
    r = d.send(c2s("A", 1001, (5001 - 70000) % 2**32, 0.3))
    check(r, "ESTABLISHED", T.ESTABLISHED, 432000.2)
    assert d.tab.td_maxack[s, 0] == 5001


def test_tv13_stale_retransmission_ignored():
    d, s = tv1()
    check(d.send(c2s("PA", 1001, 5001, 0.3, payload=5000)), "ESTABLISHED", exp=300.3)
    assert d.tab.td_end[s, 0] == 6001
    d.send(s2c("A", 5001, 6001, 0.4))
    assert d.tab.td_maxend[s, 0] == 14193
    d.send(c2s("PA", 6001, 5001, 0.5, payload=5000))
    assert d.tab.td_end[s, 0] == 11001
    d.send(s2c("A", 5001, 11001, 0.6))
    assert d.tab.td_maxend[s, 0] == 19193
    exp = d.tab.expires[s]
    r = d.send(c2s("PA", 1001, 5001, 0.7, payload=100))
    check(r, "ESTABLISHED")
    assert d.tab.expires[s] == exp


def test_tv14_exact_rst_closes():
    d, s = tv2()
    r = d.send(s2c("R", 5001, 0, 1.2, win=0))
    check(r, "ESTABLISHED", T.CLOSE, 11.2)
    assert d.tab.used[s] == 2


def test_tv15_rst_in_window_not_exact():
    d, s = tv2()
    r = d.send(s2c("R", 6000, 0, 1.2, win=0))
    check(r, "ESTABLISHED", T.ESTABLISHED, 11.2)
    d, s = tv2()
    r = d.send(s2c("R", 4000, 0, 1.2, win=0))
    check(r, "INVALID")
    assert reason(r) == "invalid rst" and d.tab.expires[s] == round(432001.1 * NS)
    d, s = tv2(Driver({"nf_conntrack_tcp_ignore_invalid_rst": 1}))
    check(d.send(s2c("R", 4000, 0, 1.2, win=0)), "ESTABLISHED", T.ESTABLISHED, 11.2)


def test_tv16_syn_on_established_then_resync():
    d, s = tv2()
    check(d.send(c2s("S", 70000, 0, 3.0)), "ESTABLISHED", T.ESTABLISHED, 432001.1)
    check(d.send(s2c("SA", 90000, 70001, 3.05)), "ESTABLISHED", T.SYN_RECV, 63.05)
    check(d.send(c2s("A", 70001, 90001, 3.1)), "ESTABLISHED", T.ESTABLISHED, 432003.1)


def test_tv17_fin_retransmission():
    d, s = tv2()
    check(d.send(c2s("FA", 1101, 5001, 2.0)), "ESTABLISHED", T.FIN_WAIT, 122.0)
    check(d.send(c2s("FA", 1101, 5001, 2.1)), "ESTABLISHED", T.LAST_ACK, 32.1)
    check(d.send(s2c("A", 5001, 1102, 2.2)), "ESTABLISHED", T.TIME_WAIT, 122.2)


def test_tv18_duplicate_acks():
    d, s = tv2()
    for k, (rt, tmo) in enumerate([(1, 432000), (2, 432000), (3, 300)]):
        t = 2.0 + k
        d.send(s2c("A", 5001, 1101, t))
        assert d.tab.retrans[s] == rt
        assert d.tab.expires[s] == round(t * NS) + tmo * NS
    d.send(c2s("A", 1101, 5001, 6.0))
    assert d.tab.retrans[s] == 0 and d.tab.expires[s] == 6 * NS + 432000 * NS


def test_tv19_challenge_ack_in_last_ack():
    d, s = tv3()
    exp = d.tab.expires[s]
    check(d.send(c2s("S", 90000, 0, 3.0)), "ESTABLISHED", T.LAST_ACK)
    assert d.tab.expires[s] == exp
    check(d.send(s2c("A", 5002, 1102, 3.1)), "ESTABLISHED", T.LAST_ACK)
    assert d.tab.expires[s] == exp
    check(d.send(c2s("R", 1102, 0, 3.2, win=0)), "ESTABLISHED", T.CLOSE, 13.2)
    r = d.send(c2s("S", 90000, 0, 3.3))
    check(r, "NEW", T.SYN_SENT, 123.3)
    assert r["ct_id"] == 1


def test_tv20_simultaneous_open():
    d = Driver()
    check(d.send(c2s("S", 1000, 0, 0.0)), "NEW", T.SYN_SENT, 120.0)
    r = d.send(s2c("S", 5000, 0, 0.1))
    check(r, "ESTABLISHED", T.SYN_SENT2, 120.0)
    assert r["status"] & SEEN_REPLY
    check(d.send(c2s("SA", 1000, 5001, 0.2)), "ESTABLISHED", T.SYN_RECV, 60.2)
    r = d.send(s2c("A", 5001, 1001, 0.3))
    check(r, "ESTABLISHED", T.ESTABLISHED, 432000.3)
    assert r["status"] & ASSURED


def udp(src, dst, sp, dp, t, **kw):
    return pkt(src, dst, 17, sp, dp, t=t, payload=kw.pop("payload", 20), **kw)


def test_tv21_udp_stream():
    d = Driver()
    r = d.send(udp(C, S, 5000, 53, 0.0))
    check(r, "NEW", exp=30.0)
    r = d.send(udp(S, C, 53, 5000, 0.05))
    check(r, "ESTABLISHED", exp=30.05)
    assert r["status"] & SEEN_REPLY and not r["status"] & ASSURED
    r = d.send(udp(C, S, 5000, 53, 1.0))
    check(r, "ESTABLISHED", exp=31.0)
    assert not r["status"] & ASSURED
    r = d.send(udp(S, C, 53, 5000, 2.5))
    check(r, "ESTABLISHED", exp=122.5)
    assert r["status"] & ASSURED
    r = d.send(udp(C, S, 5000, 53, 200.0))
    check(r, "NEW", exp=230.0)
    assert r["ct_id"] == 1
    d = Driver()
    ids = {d.send(udp(C, S, 5000, 53, t))["ct_id"] for t in (0, 20, 40)}
    assert ids == {0}
    assert d.tab.expires[0] == 70 * NS or d.tab.expires[d.tab.ct_id.tolist().index(0)] == 70 * NS


def test_tv22_udp_validation():
    check(Driver().send(udp(C, S, 5000, 53, 0, status=9)), "INVALID")  # length field > datagram
    check(Driver().send(udp(C, S, 5000, 53, 0, csum=0)), "NEW")  # checksum 0: not verified
    r = Driver().send(udp(C, S, 5000, 53, 0, csum=2))
    check(r, "INVALID")
    assert reason(r) == "bad checksum"
    check(Driver().send(udp(C, S, 5000, 53, 0, csum=2), hook=3), "NEW")
    check(Driver(assume_good=True).send(udp(C, S, 5000, 53, 0, csum=2)), "NEW")
    d = Driver({"nf_conntrack_checksum": 0})
    check(d.send(udp(C, S, 5000, 53, 0, csum=2)), "NEW")
    assert d.counters()["bad_checksums_seen"] == 1


def icmp(src, dst, t, typ, code=0, ident=7, **kw):
    return pkt(src, dst, 1, t=t, icmp_type=typ, icmp_code=code, icmp_id=ident, **kw)


def test_tv23_icmp_echo():
    d = Driver()
    check(d.send(icmp(C, S, 0, 8)), "NEW", exp=30)
    check(d.send(icmp(S, C, 0.01, 0)), "ESTABLISHED", exp=30.01)
    check(d.send(icmp(C, S, 10, 8)), "ESTABLISHED", exp=40)
    r = d.send(icmp(C, S, 50, 8))
    check(r, "NEW", exp=80)
    assert r["ct_id"] == 1
    r = d.send(icmp(S, C, 51, 0, ident=99))
    check(r, "INVALID")
    r = d.send(icmp(C, S, 52, 10))
    check(r, "INVALID")
    assert d.counters()["entries"] == 1


def test_tv24_icmp_error_related():
    d = Driver()
    r0 = d.send(udp(C, S, 5000, 53, 0.0))
    s = r0["slot"]
    exp = d.tab.expires[s]
    err = icmp("10.0.0.254", C, 1.0, 3, 1, ident=0, inner=(C, S, 17, 5000, 53))
    r = d.send(err)
    assert r["ctinfo"] == 4 and r["slot"] == s
    assert d.tab.expires[s] == exp and not d.tab.status[s] & SEEN_REPLY
    r = d.send(icmp("10.0.0.254", "10.0.0.9", 1.0, 3, 1, ident=0, inner=(C, S, 17, 5000, 53)))
    check(r, "INVALID")
    assert "outer daddr" in reason(r)
    check(d.send(icmp("10.0.0.254", C, 1.0, 3, 1, ident=0, inner=(C, S, 17, 5001, 53))), "INVALID")
    check(d.send(icmp("10.0.0.254", C, 1.0, 3, 1, ident=0, inner="bad")), "INVALID")


def test_tv25_icmpv6_classes():
    A, B = "2001:db8::1", "2001:db8::2"
    for t in (135, 136, 134, 143, 151):
        r = Driver().send(pkt(A, B, 58, icmp_type=t))
        assert r["ctinfo"] == 7 and r["slot"] == -1
    check(Driver().send(pkt(A, B, 58, icmp_type=128, icmp_id=1)), "NEW")
    check(Driver().send(pkt(A, B, 58, icmp_type=129, icmp_id=1)), "INVALID")
    d = Driver()
    d.send(pkt(A, B, 6, 40000, 80, "S", 1000))
    r = d.send(pkt("2001:db8::fe", A, 58, icmp_type=2, inner=(A, B, 6, 40000, 80)))
    assert r["ctinfo"] == 4


def test_tv27_table_full():
    d = Driver({"nf_conntrack_max": 1})
    tv1(d)
    r = d.send(udp("10.0.0.5", S, 5000, 53, 1.0))
    assert r["slot"] == -1 and r["reason"] == R_TABLE_FULL
    assert d.counters()["table_full_drops"] == 1
    d = Driver({"nf_conntrack_max": 1})
    d.send(c2s("S", 1000, 0, 0.0))
    r = d.send(udp("10.0.0.5", S, 5000, 53, 1.0))
    check(r, "NEW")
    assert d.counters()["early_drops"] == 1
    assert [e["event"] for e in d.events] == [1, 3, 1]

"""Zeek conn_state / history on hand-made flows (expected values from Zeek's conn.log definitions)."""

from __future__ import annotations

import pytest

from nfreplay.analysis import zeek

from .factories import make_output, pkt, tcp_session

C, S = "10.0.0.2", "203.0.113.10"


def _o(flags, t, **kw):
    return pkt(t, C, S, sport=40000, dport=80, flags=flags, ct=0, dir=0, **kw)


def _r(flags, t, **kw):
    return pkt(t, S, C, sport=80, dport=40000, flags=flags, ct=0, dir=1, **kw)


def _zeek(pk):
    h = zeek.zeek_histories(make_output(pk))
    return h.loc[0, "conn_state"], h.loc[0, "history"]


CASES = {
    "SF": ([_o("S", 0, seq=1), _r("SA", .1, seq=9, ack=2), _o("A", .2, seq=2, ack=10),
            _o("PA", .3, seq=2, ack=10, payload=10), _r("PA", .4, seq=10, ack=12, payload=20),
            _o("FA", .5, seq=12, ack=30), _r("FA", .6, seq=30, ack=13), _o("A", .7, seq=13, ack=31)],
           ("SF", "ShADdFf")),
    "S0": ([_o("S", 0), _o("S", 1), _o("S", 3)], ("S0", "S")),
    "REJ": ([_o("S", 0), _r("RA", .1)], ("REJ", "Sr")),
    "S1": ([_o("S", 0, seq=1), _r("SA", .1, seq=9, ack=2), _o("A", .2, seq=2, ack=10)], ("S1", "ShA")),
    "RSTO": ([_o("S", 0, seq=1), _r("SA", .1, seq=9, ack=2), _o("A", .2, seq=2, ack=10), _o("R", .3, seq=2)],
             ("RSTO", "ShAR")),
    "RSTR": ([_o("S", 0, seq=1), _r("SA", .1, seq=9, ack=2), _o("A", .2, seq=2, ack=10),
              _o("PA", .3, seq=2, ack=10, payload=5), _r("RA", .4, seq=10)], ("RSTR", "ShADr")),
    "RSTOS0": ([_o("S", 0), _o("R", .5)], ("RSTOS0", "SR")),
    "RSTRH": ([_r("SA", 0), _r("R", .5)], ("RSTRH", "hr")),
    "SH": ([_o("S", 0), _o("FA", .5)], ("SH", "SF")),
    "SHR": ([_r("SA", 0), _r("FA", .5)], ("SHR", "hf")),
    "OTH": ([_o("PA", 0, payload=10), _r("A", .1)], ("OTH", "Da")),
    "S2": ([_o("S", 0, seq=1), _r("SA", .1, seq=9, ack=2), _o("A", .2), _o("FA", .3)], ("S2", "ShAF")),
    "S3": ([_o("S", 0, seq=1), _r("SA", .1, seq=9, ack=2), _o("A", .2), _r("FA", .3)], ("S3", "ShAf")),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_conn_state_and_history(name):
    pk, expected = CASES[name]
    assert _zeek(pk) == expected


def test_flag_combinations_retransmission_and_zero_window():
    pk = [_o("S", 0, seq=100), _r("SA", .1, seq=500, ack=101), _o("A", .2, seq=101, ack=501),
          _o("PA", .3, seq=101, ack=501, payload=50), _o("PA", .4, seq=101, ack=501, payload=50),
          _r("A", .5, seq=501, ack=151, win=0), _o("SF", .6), _r("FR", .7)]
    state, hist = _zeek(pk)
    assert hist == "ShADTawQi"  # the zero-window ACK is also a pure ACK


def test_bad_checksum_repeats_at_ten():
    pk = [_o("S", 0, seq=1)] + [_o("A", .1 * i, seq=2, l4_csum=2) for i in range(1, 11)]
    _, hist = _zeek(pk)
    assert hist == "SCC"


def test_udp_and_icmp_states():
    pk = [pkt(0, C, S, proto="udp", sport=5000, dport=53, ct=0, payload=20),
          pkt(1, C, S, proto="udp", sport=5001, dport=53, ct=1, payload=20),
          pkt(1.1, S, C, proto="udp", sport=53, dport=5001, ct=1, dir=1, payload=40),
          pkt(2, C, S, proto="icmp", icmp_type=8, icmp_id=3, ct=2)]
    h = zeek.zeek_histories(make_output(pk))
    assert h["conn_state"].tolist() == ["S0", "SF", "OTH"]
    assert h["history"].tolist() == ["D", "Dd", ""]


def test_full_session_factory():
    h = zeek.zeek_histories(make_output(tcp_session(0, C, S, 1, 80, 0)))
    assert (h.loc[0, "conn_state"], h.loc[0, "history"]) == ("SF", "ShADadFf")

"""Wireshark's second opinion (--dissect): tshark's protocol summary and expert info per packet."""

from __future__ import annotations

from pathlib import Path

import pytest

from nfreplay.analysis import dissect
from nfreplay.errors import NfreplayError
from nfreplay.replay.ingest import read_capture

SAMPLES = Path(__file__).resolve().parents[2] / "samples"

CAP = SAMPLES / "forward_blocked_service" / "capture.pcap"


@pytest.mark.skipif(not dissect.tshark_available(), reason="tshark is not installed")
def test_dissect_reports_protocol_and_info_for_the_asked_packets_only():
    cap = read_capture(str(CAP))
    ws = dissect.dissect_packets(cap, [0, 2])
    assert sorted(ws) == [0, 2]
    for i in (0, 2):
        assert ws[i]["protocol"] in ("TCP", "UDP", "ICMP", "DNS", "HTTP")
        assert ws[i]["info"]
    # packet 0 of the sample is a DNS query, packet 2 a TCP SYN: Wireshark's summary lines say so
    assert ws[0]["protocol"] == "DNS" and "query" in ws[0]["info"]
    assert ws[2]["protocol"] == "TCP" and "[SYN]" in ws[2]["info"]
    assert any("SYN" in m for m in ws[2]["expert"])


def test_dissect_without_tshark_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(dissect.shutil, "which", lambda name: None)
    cap = read_capture(str(CAP))
    with pytest.raises(NfreplayError, match="--dissect needs tshark"):
        dissect.dissect_packets(cap, [0])


def test_dissect_rejects_a_packet_outside_the_capture():
    if not dissect.tshark_available():
        pytest.skip("tshark is not installed")
    cap = read_capture(str(CAP))
    with pytest.raises(NfreplayError, match="not in the capture"):
        dissect.dissect_packets(cap, [10_000])

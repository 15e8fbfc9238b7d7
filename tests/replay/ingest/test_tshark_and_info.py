"""The tshark reader agrees with the native one; `nfreplay info` output and its --json contract."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from nfreplay.cli import main
from nfreplay.replay.ingest import read_capture

TSHARK_FILES = ["gopacket__be-test006.pcapng", "zeek__tcp-option-sack.pcap", "tcpdump__tcp-handshake-nano.pcap"]


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
@pytest.mark.parametrize("name", TSHARK_FILES)
def test_tshark_reader_agrees_with_native(corpus_dir, name):
    p = corpus_dir / "pcaps" / name
    a, b = read_capture(p), read_capture(p, reader="tshark")
    assert b.files[0].reader == "tshark" and b.files[0].format == a.files[0].format
    for f in a.packets._fields:
        if f != "l3_off":
            assert np.array_equal(getattr(a.packets, f), getattr(b.packets, f)), f
    for i in range(len(a)):
        assert a.frame(i) == b.frame(i)


def test_info_json_contract(corpus_dir, manifest, capsys):
    P = corpus_dir / "pcaps"
    names = ["zeek__tcp-option-sack.pcap", "gopacket__be-test006.pcapng", "tcpdump__mpls-traceroute.pcap"]
    assert main(["info", "--json"] + [str(P / n) for n in names]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["packets"] == sum(int(manifest[n]["packets"]) for n in names)
    assert [f["path"] for f in out["files"]] == [str(P / n) for n in names]
    for f, n in zip(out["files"], names):
        assert set(f) >= {"path", "format", "linktypes", "packets", "first_ts", "last_ts", "malformed",
                          "not_replayable"}
        assert f["packets"] == int(manifest[n]["packets"])
    assert out["files"][1]["linktypes"] == [1, 0] and out["files"][2]["not_replayable"] == 18
    assert out["merged"]["protocols"]["TCP"] == 4


def test_info_human_and_errors(corpus_dir, capsys):
    P = corpus_dir / "pcaps"
    assert main(["info", str(P / "zeek__icmp-icmp-destunreach-udp.pcap")]) == 0
    out = capsys.readouterr().out
    assert "Top talkers" in out and "ICMP" in out and "1 packets" in out
    assert main(["info", str(P / "libpcap__pcap-invalid-version-1.pcap")]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "libpcap__pcap-invalid-version-1.pcap" in err and "version" in err

"""Every real capture of the shared corpus: reads, counts match capinfos, and the kernel decoder agrees
field by field with an independent dpkt-object decoder (dpkt_oracle.py)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from nfreplay.errors import CaptureError
from nfreplay.replay.ingest import read_capture

SMALL = ["zeek__tcp-option-sack.pcap", "gopacket__be-test006.pcapng", "zeek__icmp-icmp6-toobig.pcap",
         "tcpdump__tcp-handshake-nano.pcap", "zeek__linux_dlt_sll2.pcap", "gopacket__test_loopback.pcap"]


def _pcaps(corpus_dir):
    return sorted((corpus_dir / "pcaps").iterdir())


def test_every_corpus_file_reads_with_capinfos_count(corpus_dir, manifest):
    seen = 0
    no_jit = os.environ.get("NUMBA_DISABLE_JIT", "0") == "1"
    for p in _pcaps(corpus_dir):
        row = manifest[p.name]
        if no_jit and p.stat().st_size > 200_000:  # pure-Python kernels: keep the no-JIT run fast
            continue
        if row["packets"] == "unreadable":
            with pytest.raises(CaptureError) as ei:
                read_capture(p)
            assert p.name in str(ei.value)
            continue
        cap = read_capture(p)
        assert len(cap) == int(row["packets"]), p.name
        f = cap.files[0]
        assert f.packets == len(cap) and f.damage is None, p.name
        assert sum(f.status_counts.values()) == len(cap)
        # link types as the manifest lists them, e.g. "EN10MB(1) + NULL(0)"
        want = [int(x.split("(")[1].rstrip(")")) for x in row["link_type"].split(" + ")]
        assert sorted(set(f.linktypes)) == sorted(set(want)), p.name
        assert f.format == ("pcap.gz" if p.name.endswith(".gz") else p.suffix[1:]), p.name
        # caplen < wire len counts match tshark's
        assert int((cap.packets.cap_len < cap.packets.wire_len).sum()) == int(row["truncated_packets"]), p.name
        seen += 1
    assert seen >= (60 if no_jit else 70)


def test_single_file_data_is_a_memmap_not_a_copy(corpus_dir):
    p = corpus_dir / "pcaps" / "zeek__tcp-option-sack.pcap"
    cap = read_capture(p)
    assert isinstance(cap.data, np.memmap) and not cap.data.flags.writeable
    assert len(cap.data) == p.stat().st_size
    # l3_off points at an IPv4 header in the file's own bytes
    raw = p.read_bytes()
    for o in cap.packets.l3_off:
        assert raw[o] >> 4 == 4


@pytest.mark.jit_only
def test_kernel_decoder_agrees_with_dpkt_oracle_on_whole_corpus(corpus_dir):
    import dpkt_oracle

    rows = 0
    failures = []
    for p in _pcaps(corpus_dir):
        try:
            cap = read_capture(p)
        except CaptureError:
            continue
        for i in range(len(cap)):
            bad = dpkt_oracle.compare(cap, i)
            rows += 1
            if bad:
                failures.append(f"{p.name} packet {i}: {bad}")
    assert rows > 100_000
    assert not failures, "\n".join(failures[:20])


@pytest.mark.parametrize("name", SMALL)
def test_kernel_decoder_agrees_with_dpkt_oracle_small(corpus_dir, name):
    import dpkt_oracle

    cap = read_capture(corpus_dir / "pcaps" / name)
    for i in range(len(cap)):
        assert dpkt_oracle.compare(cap, i) == [], (name, i)


def _framing_equal(a, b):
    for f in ("ts_ns", "rec_num", "linktype", "wire_len", "cap_len", "pkt_dir", "ifindex", "status", "src_lo",
              "dst_lo", "sport", "dport", "tcp_seq"):
        assert np.array_equal(getattr(a.packets, f), getattr(b.packets, f)), f
    assert np.array_equal(a.rec_off, b.rec_off)


@pytest.mark.jit_only
def test_native_framing_agrees_with_dpkt_framer_on_whole_corpus(corpus_dir):
    for p in _pcaps(corpus_dir):
        try:
            a = read_capture(p)
        except CaptureError:
            with pytest.raises(CaptureError):
                read_capture(p, reader="dpkt")
            continue
        b = read_capture(p, reader="dpkt")
        _framing_equal(a, b)
        assert a.files[0].linktypes == b.files[0].linktypes
        assert a.files[0].ts_resolution == b.files[0].ts_resolution


@pytest.mark.parametrize("name", SMALL)
def test_native_framing_agrees_with_dpkt_framer_small(corpus_dir, name):
    p = corpus_dir / "pcaps" / name
    _framing_equal(read_capture(p), read_capture(p, reader="dpkt"))


def test_corpus_known_facts(corpus_dir):
    P = corpus_dir / "pcaps"
    t = read_capture(P / "zeek__chksums-ip4-tcp-bad-chksum.pcap").packets
    assert t.ip_csum.tolist() == [1] and t.l4_csum.tolist() == [2]  # GOOD IP, BAD TCP
    t = read_capture(P / "zeek__tcp-handshake-reorder.pcap").packets
    assert (t.l4_csum == 1).all() and (t.ip_csum == 1).all()
    t = read_capture(P / "tcpdump__mpls-traceroute.pcap").packets  # PPP: not supported, counted
    assert (t.status == 2).all()
    t = read_capture(P / "zeek__pcapng-multi-interface.pcapng")
    assert t.files[0].ts_resolution == "ns,us" and sorted(set(t.packets.ifindex.tolist())) == [0, 1]
    t = read_capture(P / "tcpdump__timestamp_invalid_nano.pcap").packets
    assert len(t.ts_ns) == 3

"""Focused tests on crafted captures: link types, byte orders, timestamp resolutions, pcapng blocks,
VLAN/QinQ, IPv6 extension headers, ICMP inner tuples, TCP options, checksums, damage, gzip, merging."""

from __future__ import annotations

import gzip
import struct

import dpkt
import numpy as np
import pytest
from conftest import ng_epb, ng_idb, ng_shb, ng_spb, ng_unknown, pcap_bytes

from nfreplay.errors import CaptureError
from nfreplay.replay.addr import split, to_int
from nfreplay.replay.codes import CsumStatus, PktDir, PktStatus
from nfreplay.replay.ingest import iter_capture, read_capture

A, B = "10.0.0.1", "192.168.1.2"
A6, B6 = "2001:db8::1", "2001:db8::2"


def ip4(ip_src=A, ip_dst=B, p=6, data=b"", **kw):
    import socket

    return dpkt.ip.IP(src=socket.inet_aton(ip_src), dst=socket.inet_aton(ip_dst), p=p, data=data, **kw)


def tcp(sport=1234, dport=80, flags=dpkt.tcp.TH_SYN, seq=1000, ack=0, opts=b"", data=b""):
    t = dpkt.tcp.TCP(sport=sport, dport=dport, flags=flags, seq=seq, ack=ack, opts=opts, data=data, win=512)
    t.off = 5 + len(opts) // 4
    return t


def eth(payload, etype=0x0800):
    return bytes(dpkt.ethernet.Ethernet(src=b"\x02\0\0\0\0\x01", dst=b"\x02\0\0\0\0\x02", type=etype,
                                        data=bytes(payload)))


def tcp4_bytes(**kw):
    return bytes(ip4(p=6, data=tcp(**kw)))


def v6_bytes(nxt, payload: bytes, src=A6, dst=B6):
    import socket

    hdr = struct.pack(">IHBB", 0x60000000, len(payload), nxt, 64)
    return hdr + socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst) + payload


def l4_csum6(payload_l4: bytes, proto: int, src=A6, dst=B6) -> int:
    import socket

    ph = socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, dst)
    ph += struct.pack(">IxxxB", len(payload_l4), proto)
    return dpkt.in_cksum(ph + payload_l4)


def udp6(sport=53, dport=5353, data=b"hello"):
    u = struct.pack(">HHHH", sport, dport, 8 + len(data), 0) + data
    c = l4_csum6(u, 17)
    return u[:6] + struct.pack(">H", c) + u[8:]


def write(tmp_path, name, blob):
    p = tmp_path / name
    p.write_bytes(blob)
    return p


def hl(addr):
    return split(to_int(addr)[0])


# ------------------------------------------------------------------ link types and classic pcap headers

@pytest.mark.parametrize("be", [False, True])
@pytest.mark.parametrize("nano", [False, True])
def test_pcap_byte_order_and_resolution(tmp_path, be, nano):
    fr = eth(ip4(p=6, data=tcp()))
    p = write(tmp_path, "x.pcap", pcap_bytes([(1700000000, 123456, fr), (1700000001, 999, fr)], be=be, nano=nano))
    cap = read_capture(p)
    mul = 1 if nano else 1000
    assert cap.packets.ts_ns.tolist() == [1700000000 * 10**9 + 123456 * mul, 1700000001 * 10**9 + 999 * mul]
    f = cap.files[0]
    assert f.byte_order == ("big" if be else "little") and f.ts_resolution == ("ns" if nano else "us")
    assert cap.packets.status.tolist() == [0, 0] and cap.packets.sport.tolist() == [1234, 1234]


def test_link_types(tmp_path):
    ipb = tcp4_bytes()
    v6 = v6_bytes(17, udp6())
    cases = [
        (0, struct.pack("<I", 2) + ipb, 4), (0, struct.pack(">I", 2) + ipb, 4),  # NULL, either order
        (0, struct.pack("<I", 30) + v6, 6), (108, struct.pack(">I", 24) + v6, 6),  # AF_INET6 variants
        (101, ipb, 4), (101, v6, 6), (12, ipb, 4), (14, v6, 6), (228, ipb, 4), (229, v6, 6),
    ]
    for lt, frame, fam in cases:
        cap = read_capture(write(tmp_path, f"lt{lt}.pcap", pcap_bytes([(1, 0, frame)], linktype=lt)))
        t = cap.packets
        assert (t.status[0], t.family[0], t.linktype[0]) == (0, fam, lt), (lt, frame[:4])
        assert t.l4_csum[0] == CsumStatus.GOOD
        assert cap.data[t.l3_off[0]] >> 4 == fam
    cap = read_capture(write(tmp_path, "ppp.pcap", pcap_bytes([(1, 0, b"\xff\x03\x00\x21" + ipb)], linktype=9)))
    assert cap.packets.status.tolist() == [PktStatus.UNSUPPORTED_LINKTYPE]
    assert cap.files[0].not_replayable == 1


def test_sll_and_sll2_direction_and_ifindex(tmp_path):
    ipb = tcp4_bytes()
    frames = []
    for pkttype in (0, 1, 2, 3, 4):
        frames.append((1, pkttype, struct.pack(">HHH8sH", pkttype, 1, 6, b"\x02\0\0\0\0\x09\0\0", 0x0800) + ipb))
    cap = read_capture(write(tmp_path, "sll.pcap", pcap_bytes(frames, linktype=113)))
    assert cap.packets.pkt_dir.tolist() == [1, 1, 1, 1, 2]
    assert cap.packets.eth_src.tolist() == [0x020000000009] * 5
    frames = [(1, 0, struct.pack(">HHiHBB8s", 0x0800, 0, 7, 1, 4, 6, b"\0" * 8) + ipb),
              (1, 1, struct.pack(">HHiHBB8s", 0x0800, 0, 3, 1, 0, 6, b"\0" * 8) + ipb)]
    cap = read_capture(write(tmp_path, "sll2.pcap", pcap_bytes(frames, linktype=276)))
    t = cap.packets
    assert t.pkt_dir.tolist() == [PktDir.OUTGOING, PktDir.INCOMING] and t.ifindex.tolist() == [7, 3]
    assert t.status.tolist() == [0, 0]


def test_nflog(tmp_path):
    ipb = tcp4_bytes()
    tlv_prefix = struct.pack("<HH", 8, 1) + b"\0\0\0\0"  # NFULA_PACKET_HDR-ish TLV to skip
    payload_tlv = struct.pack("<HH", 4 + len(ipb), 9) + ipb + b"\0" * ((-len(ipb)) % 4)
    frame = struct.pack(">BBH", 2, 0, 0) + tlv_prefix + payload_tlv
    cap = read_capture(write(tmp_path, "nflog.pcap", pcap_bytes([(1, 0, frame)], linktype=239)))
    assert cap.packets.status.tolist() == [0] and cap.packets.dport.tolist() == [80]


def test_vlan_and_qinq(tmp_path):
    ipb = tcp4_bytes()
    mac = b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01"
    one = mac + struct.pack(">HHH", 0x8100, 0x2064, 0x0800) + ipb  # pcp 1, vid 100
    two = mac + struct.pack(">HHHHH", 0x88A8, 0x00C8, 0x8100, 0x0064, 0x0800) + ipb  # outer 200
    arp = mac + struct.pack(">HHH", 0x8100, 5, 0x0806) + b"\0" * 28
    cut = mac + struct.pack(">H", 0x8100) + b"\0"
    cap = read_capture(write(tmp_path, "v.pcap", pcap_bytes([(1, 0, f) for f in (one, two, arp, cut)])))
    t = cap.packets
    assert t.vlan_id.tolist() == [100, 200, 5, -1]
    assert t.status.tolist() == [0, 0, PktStatus.NOT_IP, PktStatus.TRUNCATED_L2]
    assert t.l3_off.tolist()[:2] == [24 + 16 + 18, 24 + 16 + len(one) + 16 + 22]


# ------------------------------------------------------------------ pcapng

def test_pcapng_interfaces_tsresol_flags_spb_unknown_blocks(tmp_path):
    fr = eth(ip4(p=6, data=tcp()))
    ipb = tcp4_bytes()
    blob = (ng_shb() + ng_idb(1, tsresol=9) + ng_unknown() + ng_idb(101, tsresol=0x80 | 10, tsoffset=100)
            + ng_idb(1) + ng_epb(0, 1_700_000_000_123_456_789, fr, flags=1)
            + ng_epb(1, (5 << 10) | 512, ipb, flags=2)  # 5.5 s in 2^-10 units, + 100 s offset
            + ng_epb(2, 1_700_000_000_000_001, fr, wire_len=2000)  # default us
            + ng_spb(fr))
    cap = read_capture(write(tmp_path, "m.pcapng", blob))
    t = cap.packets
    assert cap.files[0].linktypes == [1, 101, 1] and cap.files[0].ts_resolution == "ns,2^-10,us"
    assert t.ts_ns.tolist() == [1_700_000_000_123_456_789, 105_500_000_000, 1_700_000_000_000_001_000,
                                1_700_000_000_000_001_000]
    assert t.ifindex.tolist() == [0, 1, 2, 0] and t.linktype.tolist() == [1, 101, 1, 1]
    assert t.pkt_dir.tolist() == [1, 2, 0, 0] and t.wire_len.tolist()[2] == 2000
    assert t.status.tolist() == [0, 0, 0, 0]


def test_pcapng_big_endian_and_second_section(tmp_path):
    fr = eth(ip4(p=6, data=tcp()))
    blob = (ng_shb(be=True) + ng_idb(1, be=True) + ng_epb(0, 10**6, fr, be=True)
            + ng_shb() + ng_idb(101, tsresol=9) + ng_epb(0, 7, tcp4_bytes()))
    cap = read_capture(write(tmp_path, "be.pcapng", blob))
    assert cap.files[0].linktypes == [1, 101]
    assert cap.packets.linktype.tolist() == [1, 101] and cap.packets.ts_ns.tolist() == [10**9, 7]
    assert cap.packets.ifindex.tolist() == [0, 0]  # interface ids restart per section


def test_pcapng_undefined_interface_is_damage(tmp_path):
    fr = eth(ip4(p=6, data=tcp()))
    blob = ng_shb() + ng_idb(1) + ng_epb(0, 1, fr) + ng_epb(5, 2, fr) + ng_epb(0, 3, fr)
    p = write(tmp_path, "bad.pcapng", blob)
    cap = read_capture(p)
    assert len(cap) == 1 and cap.files[0].damage.record == 1
    assert cap.files[0].damage.offset == len(ng_shb() + ng_idb(1) + ng_epb(0, 1, fr))


# ------------------------------------------------------------------ decode

def test_ipv6_extension_header_chain(tmp_path):
    u = udp6()
    hbh = struct.pack(">BB", 43, 0) + b"\x01\x04\0\0\0\0"  # -> routing
    rt = struct.pack(">BBBB", 60, 0, 0, 0) + b"\0" * 4  # -> dest opts
    dst = struct.pack(">BB", 44, 0) + b"\x01\x04\0\0\0\0"  # -> fragment
    frag_first = struct.pack(">BBHI", 17, 0, 1, 0xABCDEF01)  # offset 0, M=1
    frag_later = struct.pack(">BBHI", 17, 0, (100 << 3), 0xABCDEF01)
    ah = struct.pack(">BBHII", 17, 4, 0, 1, 1) + b"\0" * 12  # (4+2)*4 = 24 bytes
    frames = [
        v6_bytes(0, hbh + rt + dst + frag_first + u),
        v6_bytes(44, frag_later + b"x" * 16),
        v6_bytes(51, ah + u),
        v6_bytes(59, b""),
        v6_bytes(0, hbh[:4]),  # ext header runs past the packet
    ]
    cap = read_capture(write(tmp_path, "ext.pcap", pcap_bytes([(1, 0, f) for f in frames], linktype=229)))
    t = cap.packets
    assert t.status.tolist() == [0, PktStatus.FRAGMENT, 0, 0, PktStatus.BAD_IPV6_EXT]
    assert t.ip_hlen.tolist()[:4] == [40 + 8 + 8 + 8 + 8, 48, 64, 40]
    assert t.proto.tolist()[:4] == [17, 17, 17, 59]
    assert t.sport.tolist()[:3] == [53, 0, 53]
    assert t.ip_id.tolist()[:2] == [0xABCDEF01, 0xABCDEF01] and t.frag_off.tolist()[:2] == [0, 100]
    assert t.ip_flags.tolist()[:3] == [4 | 1, 4, 0]
    assert t.l4_csum.tolist()[:3] == [CsumStatus.UNKNOWN, CsumStatus.UNKNOWN, CsumStatus.GOOD]


def test_ipv4_fragments_options_and_bad_headers(tmp_path):
    first = bytes(ip4(p=17, data=b"\0" * 16, _flags_offset=dpkt.ip.IP_MF, id=77))
    later = bytes(ip4(p=17, data=b"\0" * 16, _flags_offset=2, id=77))
    opts = ip4(p=6, data=tcp(), opts=b"\x01\x01\x01\x00", hl=6)
    bad_ihl = bytearray(tcp4_bytes())
    bad_ihl[0] = 0x44
    long_len = bytearray(tcp4_bytes())
    long_len[2:4] = struct.pack(">H", 500)
    frames = [first, later, bytes(opts), bytes(bad_ihl), bytes(long_len), tcp4_bytes()[:30]]
    cap = read_capture(write(tmp_path, "f.pcap", pcap_bytes([(1, 0, f) for f in frames], linktype=228)))
    t = cap.packets
    assert t.status.tolist() == [0, PktStatus.FRAGMENT, 0, PktStatus.BAD_IHL, PktStatus.BAD_IP_LEN,
                                 PktStatus.BAD_IP_LEN]
    assert t.ip_flags.tolist()[:3] == [1 | 4, 4, 8]
    assert t.frag_off.tolist()[:2] == [0, 2] and t.sport.tolist()[1] == 0
    assert t.ip_hlen.tolist()[2] == 24 and t.sport.tolist()[2] == 1234
    # the packet is cut by snaplen, not by the sender: wire length says 40, capture has 30 -> truncated L4
    cap = read_capture(write(tmp_path, "t.pcap", pcap_bytes([(1, 0, tcp4_bytes()[:30], 40),
                                                             (1, 0, tcp4_bytes()[:10], 40)], linktype=228)))
    assert cap.packets.status.tolist() == [PktStatus.TRUNCATED_L4, PktStatus.TRUNCATED_L3]
    assert cap.files[0].malformed == {"truncated_l4": 1, "truncated_l3": 1}


def test_icmp_error_inner_tuples(tmp_path):
    inner_udp = bytes(ip4(ip_src=B, ip_dst=A, p=17, data=dpkt.udp.UDP(sport=5000, dport=53, data=b"q")))
    unreach = dpkt.icmp.ICMP(type=3, code=3, data=dpkt.icmp.ICMP.Unreach(data=inner_udp))
    echo = dpkt.icmp.ICMP(type=8, code=0, data=dpkt.icmp.ICMP.Echo(id=0x4242, seq=1))
    inner_echo = bytes(ip4(ip_src=B, ip_dst=A, p=1, data=echo))
    texc = dpkt.icmp.ICMP(type=11, code=0, data=dpkt.icmp.ICMP.TimeExceed(data=inner_echo))
    short = dpkt.icmp.ICMP(type=3, code=1, data=dpkt.icmp.ICMP.Unreach(data=inner_udp[:24]))  # 4 bytes of L4
    frames = [bytes(ip4(p=1, data=x)) for x in (unreach, echo, texc, short)]
    inner6 = v6_bytes(17, udp6(sport=7, dport=9), src=B6, dst=A6)
    ptb = struct.pack(">BBHI", 2, 0, 0, 1280) + inner6
    ptb = ptb[:2] + struct.pack(">H", l4_csum6(ptb, 58)) + ptb[4:]
    cap = read_capture(write(tmp_path, "i.pcap", pcap_bytes([(1, 0, f) for f in frames] + [(1, 0, v6_bytes(58, ptb))],
                                                             linktype=101)))
    t = cap.packets
    assert t.icmp_type.tolist() == [3, 8, 11, 3, 2]
    assert t.inner_ok.tolist() == [1, 0, 1, 0, 1]
    assert t.inner_proto.tolist() == [17, 0, 1, 17, 17]
    assert t.inner_sport.tolist() == [5000, 0, 0x4242, 0, 7]
    assert t.inner_dport.tolist() == [53, 0, 8 << 8, 0, 9]
    assert (t.inner_src_hi[0], t.inner_src_lo[0]) == hl(B)
    assert (t.inner_dst_hi[4], t.inner_dst_lo[4]) == hl(A6)
    assert t.icmp_id.tolist()[1] == 0x4242
    assert (t.l4_csum == CsumStatus.GOOD).all() and (t.status == 0).all()


def test_tcp_options_wscale_mss_sack(tmp_path):
    syn_opts = b"\x02\x04\x05\xb4" + b"\x01\x03\x03\x0e" + b"\x04\x02\x01\x01"  # MSS 1460, WS 14, SACK-perm
    big_ws = b"\x01\x03\x03\x0f"  # 15 -> clamped to 14
    ack = 1000
    # two SACK blocks: right edges 1500 and 3000 (both after ack); first option wins, second ignored
    sack = b"\x01\x01\x05\x12" + struct.pack(">IIII", 1100, 1500, 2000, 3000) + b"\x01\x01\x05\x0a" + struct.pack(
        ">II", 0, 9000) + b"\0\0"
    empty_then_good = b"\x01\x01\x05\x02" + b"\x01\x01\x05\x0a" + struct.pack(">II", 1, 1200)
    wrap = b"\x01\x01\x05\x0a" + struct.pack(">II", 0, 0x10)  # right edge after ack across 2^32
    frames = [tcp4_bytes(opts=syn_opts), tcp4_bytes(opts=big_ws),
              tcp4_bytes(flags=0x10, ack=ack, opts=sack), tcp4_bytes(flags=0x10, ack=ack, opts=empty_then_good),
              tcp4_bytes(flags=0x10, ack=0xFFFFFFF0, opts=wrap), tcp4_bytes(flags=0x10, ack=ack)]
    t = read_capture(write(tmp_path, "o.pcap", pcap_bytes([(1, 0, f) for f in frames], linktype=228))).packets
    assert t.tcp_mss.tolist()[0] == 1460 and t.tcp_sackok.tolist()[:2] == [1, 0]
    assert t.tcp_wscale.tolist() == [14, 14, -1, -1, -1, -1]
    assert t.tcp_sack.tolist()[2:] == [3000, 1200, 0x10, ack]
    assert t.tcp_hlen.tolist()[0] == 32


def test_checksums(tmp_path):
    good = bytearray(tcp4_bytes(data=b"abc"))
    bad_l4 = bytearray(good)
    bad_l4[-1] ^= 0xFF
    bad_ip = bytearray(good)
    bad_ip[10] ^= 0xFF
    u0 = bytearray(bytes(ip4(p=17, data=dpkt.udp.UDP(sport=1, dport=2, data=b"xy"))))
    u0[26:28] = b"\0\0"  # UDP checksum 0 over IPv4: none
    u6zero = bytearray(v6_bytes(17, udp6()))
    u6zero[46:48] = b"\0\0"  # ... over IPv6 it is invalid
    frames = [bytes(good), bytes(bad_l4), bytes(bad_ip), bytes(u0), bytes(u6zero)]
    t = read_capture(write(tmp_path, "c.pcap", pcap_bytes([(1, 0, f) for f in frames], linktype=101))).packets
    assert t.ip_csum.tolist() == [1, 1, 2, 1, 0]
    assert t.l4_csum.tolist() == [1, 2, 1, 1, 2]
    assert t.payload_len.tolist()[:1] == [3]


# ------------------------------------------------------------------ damage, gzip, merge, chunks

def _good_pcap(n=5, t0=1):
    fr = eth(ip4(p=6, data=tcp()))
    return pcap_bytes([(t0 + i, 0, fr) for i in range(n)])


def test_truncated_last_record_and_garbage(tmp_path, caplog):
    blob = _good_pcap(5)
    rec = (len(blob) - 24) // 5
    p = write(tmp_path, "cut.pcap", blob[:-10])
    cap = read_capture(p)
    assert len(cap) == 4
    d = cap.files[0].damage
    assert (d.record, d.offset) == (4, 24 + 4 * rec) and "truncated" in d.reason
    assert "cut.pcap" in caplog.text
    with pytest.raises(CaptureError) as ei:
        read_capture(p, strict=True)
    assert "cut.pcap" in str(ei.value) and "record 4" in str(ei.value) and f"offset {24 + 4 * rec}" in str(ei.value)
    g = bytearray(blob)
    g[24 + 2 * rec + 8:24 + 2 * rec + 12] = b"\xff\xff\xff\x7f"  # record 2's caplen: garbage
    cap = read_capture(write(tmp_path, "garbage.pcap", bytes(g)))
    assert len(cap) == 2 and cap.files[0].damage.record == 2
    with pytest.raises(CaptureError):
        read_capture(write(tmp_path, "garbage2.pcap", bytes(g)), reader="dpkt", strict=True)


def test_bad_magic_empty_missing_and_bad_version(tmp_path):
    for name, blob, words in [("junk.pcap", b"hello world, not a capture", "magic"), ("empty.pcap", b"", "empty"),
                              ("v1.pcap", pcap_bytes([], major=1), "version")]:
        with pytest.raises(CaptureError) as ei:
            read_capture(write(tmp_path, name, blob))
        assert name in str(ei.value) and words in str(ei.value)
    with pytest.raises(CaptureError, match="nope.pcap"):
        read_capture(tmp_path / "nope.pcap")


def test_gzip(tmp_path):
    blob = _good_pcap(7)
    plain = read_capture(write(tmp_path, "a.pcap", blob))
    gz = read_capture(write(tmp_path, "a.pcap.gz", gzip.compress(blob)))
    assert gz.files[0].format == "pcap.gz"
    for f in plain.packets._fields:
        assert np.array_equal(getattr(plain.packets, f), getattr(gz.packets, f)), f


def test_multi_file_merge_is_stable_by_time(tmp_path):
    fr1 = eth(ip4(p=6, data=tcp(sport=1)))
    fr2 = eth(ip4(p=6, data=tcp(sport=2)))
    a = write(tmp_path, "a.pcap", pcap_bytes([(1, 0, fr1), (3, 0, fr1), (5, 0, fr1), (5, 0, fr1)]))
    b = write(tmp_path, "b.pcapng", ng_shb() + ng_idb(1) + b"".join(
        ng_epb(0, s * 10**6, fr2) for s in (2, 3, 5, 6)))
    cap = read_capture([a, b])
    t = cap.packets
    assert (t.ts_ns // 10**9).tolist() == [1, 2, 3, 3, 5, 5, 5, 6]
    assert t.file_id.tolist() == [0, 1, 0, 1, 0, 0, 1, 1]
    assert t.rec_num.tolist() == [0, 0, 1, 1, 2, 3, 2, 3]
    assert t.sport.tolist() == [1, 2, 1, 2, 1, 1, 2, 2]
    for i in range(len(cap)):  # l3_off / rec_off index the concatenated buffer
        assert cap.frame(i) == (fr1 if t.file_id[i] == 0 else fr2)
        assert cap.data[t.l3_off[i]] == 0x45
    # the streaming k-way merge yields the same order, in chunks
    chunks = list(iter_capture([a, b], chunk_packets=2))
    assert len(chunks) > 1
    assert np.concatenate([c.packets.ts_ns for c in chunks]).tolist() == t.ts_ns.tolist()
    assert np.concatenate([c.packets.file_id for c in chunks]).tolist() == t.file_id.tolist()
    for c in chunks:
        for i in range(len(c)):
            assert c.frame(i) == (fr1 if c.packets.file_id[i] == 0 else fr2)
    assert chunks[-1].files[0].packets == 4 and chunks[-1].files[1].packets == 4


def test_iter_capture_single_file_chunks_equal_read_capture(tmp_path):
    p = write(tmp_path, "c.pcap", _good_pcap(11))
    whole = read_capture(p)
    chunks = list(iter_capture(p, chunk_packets=3))
    assert [len(c) for c in chunks] == [3, 3, 3, 2]
    assert np.concatenate([c.packets.rec_num for c in chunks]).tolist() == list(range(11))
    assert np.concatenate([c.packets.l3_off for c in chunks]).tolist() == whole.packets.l3_off.tolist()
    assert all(c.data is chunks[0].data for c in chunks)

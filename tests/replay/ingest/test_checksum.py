"""The checksum verdicts (ip_csum, l4_csum) against dpkt.in_cksum over the bytes, on random packets of every
length class: the decoder sums little-endian 32/64-bit words and reduces modulo 0xFFFF (decode.py), so
every tail length (l4_len % 8), the short unvectorized and the long vectorized sums, sums that are a
nonzero multiple of 0xFFFF and all-zero data are covered."""

from __future__ import annotations

import random
import struct

import dpkt
from conftest import pcap_bytes

from nfreplay.replay.ingest import read_capture

GOOD, BAD = 1, 2


def _ok(buf: bytes) -> int:
    return GOOD if dpkt.in_cksum(buf) == 0 else BAD


def _v4(src: bytes, dst: bytes, proto: int, l4: bytes, fix_ip: bool, rng) -> bytes:
    h = bytearray(struct.pack(">BBHHHBBH4s4s", 0x45, 0, 20 + len(l4), rng.randrange(65536), 0x4000, 64, proto, 0,
                              src, dst))
    if fix_ip:
        h[10:12] = struct.pack(">H", dpkt.in_cksum(bytes(h)))
    else:
        h[10:12] = struct.pack(">H", rng.randrange(65536))
    return bytes(h) + l4


def _v6(src: bytes, dst: bytes, proto: int, l4: bytes) -> bytes:
    return struct.pack(">IHBB", 0x60000000, len(l4), proto, 64) + src + dst + l4


def _l4(proto: int, n: int, rng, fill) -> bytearray:
    hl = {6: 20, 17: 8, 1: 8, 58: 8}[proto]
    b = bytearray(fill(hl + n))
    if proto == 6:
        b[12] = 5 << 4
    if proto == 17:
        b[4:6] = struct.pack(">H", len(b))
    return b


def _csum_at(proto: int) -> int:
    return {6: 16, 17: 6, 1: 2, 58: 2}[proto]


def _expected(version: int, src, dst, proto: int, l4: bytes) -> int:
    if version == 4:
        if proto == 1:
            return _ok(l4)
        if proto == 17 and l4[6:8] == b"\0\0":
            return GOOD
        ph = src + dst + struct.pack(">BBH", 0, proto, len(l4))
    else:
        ph = src + dst + struct.pack(">IxxxB", len(l4), proto)
    return _ok(ph + l4)


def test_checksums_match_in_cksum(tmp_path):
    rng = random.Random(7)
    frames, want_ip, want_l4 = [], [], []
    fills = [lambda k: bytes(rng.randrange(256) for _ in range(k)), lambda k: b"\0" * k, lambda k: b"\xff" * k]
    for k in range(1500):
        version = 4 if k % 3 else 6
        proto = rng.choice((6, 17, 1)) if version == 4 else rng.choice((6, 17, 58))
        n = rng.choice((rng.randrange(0, 24), rng.randrange(24, 80), rng.randrange(80, 1500)))
        fill = fills[0] if k % 10 else fills[(k // 10) % 3]
        l4 = _l4(proto, n, rng, fill)
        alen = 4 if version == 4 else 16
        src = bytes(rng.randrange(256) for _ in range(alen)) if k % 7 else b"\0" * alen
        dst = bytes(rng.randrange(256) for _ in range(alen)) if k % 11 else b"\xff" * alen
        c = _csum_at(proto)
        mode = rng.randrange(3)  # 0: correct checksum, 1: random, 2: zero
        if mode == 0:
            l4[c:c + 2] = b"\0\0"
            ph = b"" if (version == 4 and proto == 1) else (
                src + dst + (struct.pack(">BBH", 0, proto, len(l4)) if version == 4
                             else struct.pack(">IxxxB", len(l4), proto)))
            s = dpkt.in_cksum(ph + bytes(l4))
            l4[c:c + 2] = struct.pack(">H", s)
        elif mode == 1:
            l4[c:c + 2] = struct.pack(">H", rng.randrange(65536))
        else:
            l4[c:c + 2] = b"\0\0"
        l4 = bytes(l4)
        if version == 4:
            pkt = _v4(src, dst, proto, l4, fix_ip=bool(k % 5), rng=rng)
            want_ip.append(_ok(pkt[:20]))
        else:
            pkt = _v6(src, dst, proto, l4)
            want_ip.append(0)
        want_l4.append(_expected(version, src, dst, proto, l4))
        frames.append((1, k, pkt))
    p = tmp_path / "c.pcap"
    p.write_bytes(pcap_bytes(frames, linktype=101))
    t = read_capture(p).packets
    assert (t.status == 0).all()
    assert t.ip_csum.tolist() == want_ip
    assert t.l4_csum.tolist() == want_l4
    assert GOOD in want_l4 and BAD in want_l4

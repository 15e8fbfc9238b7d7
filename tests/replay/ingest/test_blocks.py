"""The native reader frames and decodes in blocks (decode.BLOCK records): results must not depend on where
block, chunk or damage boundaries fall. Checked against the dpkt framer + decode_packets (MODE_FRAMED),
which frames in pure Python and decodes all rows in one call."""

from __future__ import annotations

import os
import struct

import numpy as np
import pytest
from conftest import ng_epb, ng_idb, ng_shb, pcap_bytes

from nfreplay.replay.ingest import decode, iter_capture, read_capture

N = decode.BLOCK * 2 + 37 if os.environ.get("NUMBA_DISABLE_JIT", "0") != "1" else 70


def _frames(n):
    """n varied Ethernet/IPv4 frames (TCP, UDP, ICMP; different lengths so records are not aligned)."""
    out = []
    for k in range(n):
        proto = (6, 17, 1)[k % 3]
        if proto == 6:
            l4 = struct.pack(">HHIIBBHHH", 1000 + k, 80, k, 0, 0x50, 0x12, 512, 0, 0)
        elif proto == 17:
            l4 = struct.pack(">HHHH", 2000 + k, 53, 8 + k % 50, 0) + b"u" * (k % 50)
        else:
            l4 = struct.pack(">BBHHH", 8, 0, 0, k & 0xFFFF, 1) + b"i" * (k % 7)
        ip = struct.pack(">BBHHHBBHII", 0x45, 0, 20 + len(l4), k & 0xFFFF, 0, 64, proto, 0, 0x0A000001,
                         0x0A000002 + k)
        out.append((1_700_000_000 + k, k % 1000, b"\x02\0\0\0\0\x01\x02\0\0\0\0\x02\x08\x00" + ip + l4))
    return out


def _same_table(a, b):
    for f in a.packets._fields:
        assert np.array_equal(getattr(a.packets, f), getattr(b.packets, f)), f
    assert np.array_equal(a.rec_off, b.rec_off)


@pytest.mark.parametrize("fmt", ["pcap", "pcapng"])
def test_blocks_agree_with_dpkt_framer_and_chunks(tmp_path, fmt):
    fr = _frames(N)
    if fmt == "pcap":
        blob = pcap_bytes(fr)
    else:
        blob = ng_shb() + ng_idb(tsresol=6) + b"".join(ng_epb(0, s * 10**6 + us, b) for s, us, b in fr)
    p = tmp_path / f"many.{fmt}"
    p.write_bytes(blob)
    nat = read_capture(p)
    assert len(nat) == N and nat.files[0].damage is None
    assert (nat.packets.status == 0).all() and (nat.packets.l4_csum != 0).any()
    _same_table(nat, read_capture(p, reader="dpkt"))
    for chunk in (decode.BLOCK - 1, decode.BLOCK + 1, 7 if N < 100 else 1000):
        parts = list(iter_capture(p, chunk_packets=chunk))
        for f in nat.packets._fields:
            col = np.concatenate([getattr(c.packets, f) for c in parts])
            assert np.array_equal(col, getattr(nat.packets, f)), (chunk, f)
    # damage in the last block (a truncated last record): the rows before it are kept and decoded
    # exactly as the dpkt reader does
    cut = p.with_name("cut." + fmt)
    cut.write_bytes(blob[:len(blob) - 3 * len(blob) // (4 * N) - 5])
    a, b = read_capture(cut), read_capture(cut, reader="dpkt")
    assert a.files[0].damage is not None and a.files[0].damage.record == len(a)
    da, db = a.files[0].damage, b.files[0].damage
    assert (da.record, da.offset) == (db.record, db.offset)
    _same_table(a, b)

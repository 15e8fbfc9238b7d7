"""Helpers for the ingest tests: the corpus manifest and small capture writers."""

from __future__ import annotations

import csv
import struct
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture(scope="session")
def manifest(corpus_dir) -> dict[str, dict]:
    with open(corpus_dir / "manifest.csv", newline="") as f:
        return {Path(r["file"]).name: r for r in csv.DictReader(f)}


def pcap_bytes(frames, linktype=1, be=False, nano=False, snaplen=65535, major=2):
    """frames: list of (ts_sec, ts_frac, bytes[, wire_len])."""
    e = ">" if be else "<"
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(e + "IHHiIII", magic, major, 4, 0, 0, snaplen, linktype)]
    for fr in frames:
        sec, frac, b = fr[:3]
        wl = fr[3] if len(fr) > 3 else len(b)
        out.append(struct.pack(e + "IIII", sec, frac, len(b), wl) + b)
    return b"".join(out)


def _opt(e, code, val: bytes) -> bytes:
    pad = (-len(val)) % 4
    return struct.pack(e + "HH", code, len(val)) + val + b"\0" * pad


def _block(e, btype, body: bytes) -> bytes:
    n = 12 + len(body)
    return struct.pack(e + "II", btype, n) + body + struct.pack(e + "I", n)


def ng_shb(be=False):
    e = ">" if be else "<"
    return _block(e, 0x0A0D0D0A, struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1))


def ng_idb(linktype=1, tsresol=None, tsoffset=None, snaplen=0, be=False):
    e = ">" if be else "<"
    opts = b""
    if tsresol is not None:
        opts += _opt(e, 9, bytes([tsresol]))
    if tsoffset is not None:
        opts += _opt(e, 14, struct.pack(e + "q", tsoffset))
    if opts:
        opts += _opt(e, 0, b"")
    return _block(e, 1, struct.pack(e + "HHI", linktype, 0, snaplen) + opts)


def ng_epb(iface, ts, data: bytes, wire_len=None, flags=None, be=False):
    e = ">" if be else "<"
    body = struct.pack(e + "IIIII", iface, ts >> 32, ts & 0xFFFFFFFF, len(data), wire_len or len(data))
    body += data + b"\0" * ((-len(data)) % 4)
    if flags is not None:
        body += _opt(e, 2, struct.pack(e + "I", flags)) + _opt(e, 0, b"")
    return _block(e, 6, body)


def ng_spb(data: bytes, wire_len=None, be=False):
    e = ">" if be else "<"
    return _block(e, 3, struct.pack(e + "I", wire_len or len(data)) + data + b"\0" * ((-len(data)) % 4))


def ng_unknown(be=False):
    e = ">" if be else "<"
    return _block(e, 0x00000BAD, b"junkjunk")

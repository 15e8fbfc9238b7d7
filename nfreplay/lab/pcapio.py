"""Minimal pcap/pcapng reader and pcap writer (stdlib only) for the kernel lab."""

from __future__ import annotations

import struct

from ._util import LabError

LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_LINUX_SLL2 = 276
LINKTYPE_NFLOG = 239
LINKTYPE_NULL = 0
LINKTYPE_LOOP = 108
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229


def read_pcap(path):
    """Return list of (ts_seconds_float, linktype, data, orig_len).

    Supports classic pcap (us / ns, both endians) and pcapng."""
    with open(path, "rb") as f:
        buf = f.read()
    if len(buf) < 4:
        raise LabError(f"{path}: not a pcap file")
    magic = buf[:4]
    out = []
    if magic in (b"\xd4\xc3\xb2\xa1", b"\xa1\xb2\xc3\xd4", b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d"):
        e = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
        nsec = magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d")
        _, _, _, _, _, linktype = struct.unpack_from(e + "HHiIII", buf, 4)
        linktype &= 0xFFFF
        off = 24
        while off + 16 <= len(buf):
            sec, frac, incl, orig = struct.unpack_from(e + "IIII", buf, off)
            off += 16
            data = buf[off:off + incl]
            off += incl
            ts = sec + frac / (1e9 if nsec else 1e6)
            out.append((ts, linktype, data, orig))
        return out
    if magic == b"\x0a\x0d\x0d\x0a":
        off = 0
        e = "<"
        ifaces = []  # (linktype, ts_divisor)
        while off + 12 <= len(buf):
            btype_raw = buf[off:off + 4]
            if btype_raw == b"\x0a\x0d\x0d\x0a":
                bom = buf[off + 8:off + 12]
                e = "<" if bom == b"\x4d\x3c\x2b\x1a" else ">"
                ifaces = []
            btype, blen = struct.unpack_from(e + "II", buf, off)
            body = buf[off + 8:off + blen - 4]
            if btype == 1:  # IDB
                lt = struct.unpack_from(e + "H", body, 0)[0]
                div = 1e6
                o = 8
                while o + 4 <= len(body):
                    code, ln = struct.unpack_from(e + "HH", body, o)
                    if code == 0:
                        break
                    if code == 9 and ln >= 1:
                        v = body[o + 4]
                        div = float(2 ** (v & 0x7F)) if v & 0x80 else float(10 ** v)
                    o += 4 + ((ln + 3) & ~3)
                ifaces.append((lt, div))
            elif btype == 6:  # EPB
                ifid, hi, lo, incl, orig = struct.unpack_from(e + "IIIII", body, 0)
                lt, div = ifaces[ifid]
                out.append((((hi << 32) | lo) / div, lt, body[20:20 + incl], orig))
            elif btype == 3:  # SPB
                orig = struct.unpack_from(e + "I", body, 0)[0]
                lt, div = ifaces[0]
                out.append((0.0, lt, body[4:4 + orig], orig))
            off += blen
        return out
    raise LabError(f"{path}: unknown capture format (magic {magic.hex()})")


def write_pcap(path, records, linktype=LINKTYPE_ETHERNET):
    """records: iterable of (ts_float, data)."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, linktype))
        for ts, data in records:
            sec = int(ts)
            usec = int(round((ts - sec) * 1e6))
            if usec >= 1000000:
                sec, usec = sec + 1, usec - 1000000
            f.write(struct.pack("<IIII", sec, usec, len(data), len(data)))
            f.write(data)


def l3_from_frame(linktype, data):
    """Return (ethertype, l3 bytes) or (None, None)."""
    if linktype == LINKTYPE_ETHERNET:
        if len(data) < 14:
            return None, None
        et = struct.unpack_from(">H", data, 12)[0]
        off = 14
        while et in (0x8100, 0x88A8, 0x9100) and len(data) >= off + 4:
            et = struct.unpack_from(">H", data, off + 2)[0]
            off += 4
        return et, data[off:]
    if linktype in (LINKTYPE_RAW, 12, 14, LINKTYPE_IPV4, LINKTYPE_IPV6):
        if data and data[0] >> 4 == 4:
            return 0x0800, data
        if data and data[0] >> 4 == 6:
            return 0x86DD, data
        return None, None
    if linktype == LINKTYPE_LINUX_SLL:
        if len(data) < 16:
            return None, None
        return struct.unpack_from(">H", data, 14)[0], data[16:]
    if linktype == LINKTYPE_LINUX_SLL2:
        if len(data) < 20:
            return None, None
        return struct.unpack_from(">H", data, 0)[0], data[20:]
    if linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
        if len(data) < 4:
            return None, None
        fam = struct.unpack_from("<I", data, 0)[0]
        if fam not in (2, 10, 24, 28, 30):
            fam = struct.unpack_from(">I", data, 0)[0]
        if fam == 2:
            return 0x0800, data[4:]
        if fam in (10, 24, 28, 30):  # AF_INET6 on Linux, the BSDs and macOS
            return 0x86DD, data[4:]
        return None, None
    if linktype == LINKTYPE_NFLOG:
        if len(data) < 4:
            return None, None
        family = data[0]
        off = 4
        while off + 4 <= len(data):
            ln, typ = struct.unpack_from("<HH", data, off)
            if ln < 4:
                break
            if typ == 9:  # NFULA_PAYLOAD
                et = {2: 0x0800, 10: 0x86DD}.get(family)
                return et, data[off + 4:off + ln]
            off += (ln + 3) & ~3
        return None, None
    return None, None



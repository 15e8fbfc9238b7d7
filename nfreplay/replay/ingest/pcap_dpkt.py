"""The dpkt framer (reader="dpkt"): an independent, pure-Python framing path, same decode kernel.

Classic pcap: dpkt's record-header classes (dpkt.pcap.PktHdr / LEPktHdr, the ones dpkt.pcap.Reader
uses), keeping the integer timestamp fields (dpkt.pcap.Reader itself yields float seconds).
pcapng: dpkt's block classes for SHB / IDB / EPB (dpkt.pcapng.Reader only handles one interface), with
every IDB's link type, if_tsresol and if_tsoffset; Simple Packet Blocks by hand. Slow (Python per
record); useful as a cross-check of the kernel framers and for odd files.
"""

from __future__ import annotations

import gzip
import logging
import struct

import dpkt
import dpkt.pcapng as ng
import numpy as np

from ...errors import CaptureError
from .. import schema
from .capture import PCAP_MAGICS, PCAPNG_MAGIC, Capture, Damage, FileInfo
from .decode import decode_packets

log = logging.getLogger(__name__)


def _read_all(path: str) -> tuple[bytes, bool]:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise CaptureError(path, e.strerror or str(e)) from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw), True
        except (OSError, EOFError) as e:
            raise CaptureError(path, f"corrupt gzip data: {e}") from None
    return raw, False


def _ts_ns_pcapng(ts: int, resol: int, offset: int) -> int:
    if resol & 0x80:
        e = resol & 0x7F
        return (ts >> e) * 1_000_000_000 + ((ts & ((1 << e) - 1)) * 1_000_000_000 >> e) + offset * 1_000_000_000
    e = resol
    ns = ts * 10 ** (9 - e) if e <= 9 else ts // 10 ** (e - 9)
    return ns + offset * 1_000_000_000


def read_dpkt(path, file_id: int = 0, strict: bool = False) -> Capture:
    path = str(path)
    raw, gz = _read_all(path)
    if len(raw) < 4:
        raise CaptureError(path, f"not a pcap or pcapng file (only {len(raw)} bytes)")
    magic = struct.unpack("<I", raw[:4])[0]
    recs: list[tuple[int, int, int, int, int, int, int]] = []  # ts, off, caplen, wirelen, lt, dir, ifidx
    damage = None
    sfx = ".gz" if gz else ""
    if magic in PCAP_MAGICS:
        be, nano = PCAP_MAGICS[magic]
        try:
            fh = (dpkt.pcap.FileHdr if be else dpkt.pcap.LEFileHdr)(raw[:24])
        except dpkt.UnpackError:
            raise CaptureError(path, "truncated pcap file header", 0) from None
        if fh.v_major != 2:
            raise CaptureError(path, f"pcap: major version {fh.v_major}.{fh.v_minor} unsupported", 4)
        lt = fh.linktype & 0xFFFF
        info = FileInfo(path, "pcap" + sfx, "big" if be else "little", "ns" if nano else "us", [lt],
                        reader="dpkt", snaplen=fh.snaplen)
        hcls = dpkt.pcap.PktHdr if be else dpkt.pcap.LEPktHdr
        mul = 1 if nano else 1000
        pos = 24
        while pos < len(raw):
            if pos + 16 > len(raw):
                damage = Damage("truncated record at end of file", pos, len(recs))
                break
            h = hcls(raw[pos:pos + 16])
            if h.caplen > 0x100000:
                damage = Damage("implausible record header (garbage or corrupt data)", pos, len(recs))
                break
            if pos + 16 + h.caplen > len(raw):
                damage = Damage("truncated record at end of file", pos, len(recs))
                break
            recs.append((h.tv_sec * 1_000_000_000 + h.tv_usec * mul, pos + 16, h.caplen, h.len, lt, 0, -1))
            pos += 16 + h.caplen
    elif magic == PCAPNG_MAGIC:
        info = FileInfo(path, "pcapng" + sfx, "little", "", [], reader="dpkt")
        ifaces: list[tuple[int, int, int, int]] = []  # linktype, tsresol, tsoffset, snaplen
        section_base, le, pos = 0, True, 0
        while pos < len(raw):
            if pos + 12 > len(raw):
                damage = Damage("truncated record at end of file", pos, len(recs))
                break
            btype = struct.unpack("<I", raw[pos:pos + 4])[0]
            if btype == ng.PCAPNG_BT_SHB:
                bom = raw[pos + 8:pos + 12]
                le = bom == b"\x4d\x3c\x2b\x1a"
                if not le and bom != b"\x1a\x2b\x3c\x4d":
                    damage = Damage("corrupt pcapng section header block", pos, len(recs))
                    break
                section_base = len(ifaces)
                if pos == 0:
                    info.byte_order = "little" if le else "big"
            e = "<" if le else ">"
            btype, blen = struct.unpack(e + "II", raw[pos:pos + 8])
            if blen < 12 or blen % 4:
                damage = Damage("implausible record header (garbage or corrupt data)", pos, len(recs))
                break
            if pos + blen > len(raw):
                damage = Damage("truncated record at end of file", pos, len(recs))
                break
            blk = raw[pos:pos + blen]
            try:
                if btype == ng.PCAPNG_BT_SHB:
                    (ng.SectionHeaderBlockLE if le else ng.SectionHeaderBlock)(blk)
                elif btype == ng.PCAPNG_BT_IDB:
                    idb = (ng.InterfaceDescriptionBlockLE if le else ng.InterfaceDescriptionBlock)(blk)
                    resol, off = 6, 0
                    for opt in idb.opts:
                        if opt.code == ng.PCAPNG_OPT_IF_TSRESOL:
                            resol = opt.data[0]
                        elif opt.code == ng.PCAPNG_OPT_IF_TSOFFSET:
                            off = struct.unpack(e + "q", opt.data)[0]
                    ifaces.append((idb.linktype, resol, off, idb.snaplen))
                elif btype == ng.PCAPNG_BT_EPB:
                    epb = (ng.EnhancedPacketBlockLE if le else ng.EnhancedPacketBlock)(blk)
                    k = section_base + epb.iface_id
                    if k >= len(ifaces):
                        damage = Damage("packet block references an undefined interface", pos, len(recs))
                        break
                    lt, resol, off, _snap = ifaces[k]
                    flags = 0
                    for opt in epb.opts:
                        if opt.code == 2 and len(opt.data) == 4:  # epb_flags
                            flags = struct.unpack(e + "I", opt.data)[0]
                    d = {1: 1, 2: 2}.get(flags & 3, 0)
                    ts = _ts_ns_pcapng((epb.ts_high << 32) | epb.ts_low, resol, off)
                    recs.append((ts, pos + 28, epb.caplen, epb.pkt_len, lt, d, epb.iface_id))
                elif btype == ng.PCAPNG_BT_SPB:
                    if section_base >= len(ifaces):
                        damage = Damage("packet block references an undefined interface", pos, len(recs))
                        break
                    wl = struct.unpack(e + "I", raw[pos + 8:pos + 12])[0]
                    lt, _r, _o, snap = ifaces[section_base]
                    cl = min(wl, blen - 16, snap if snap > 0 else wl)
                    recs.append((recs[-1][0] if recs else 0, pos + 12, cl, wl, lt, 0, 0))
            except (dpkt.UnpackError, struct.error, IndexError) as ex:
                damage = Damage(f"corrupt pcapng block ({ex})", pos, len(recs))
                break
            pos += blen
        info.linktypes = [i[0] for i in ifaces]
        info.snaplen = ifaces[0][3] if ifaces else 0
        info.ts_resolution = ",".join(
            (f"2^-{r & 0x7F}" if r & 0x80 else {6: "us", 9: "ns", 3: "ms", 0: "s"}.get(r, f"10^-{r}"))
            for _lt, r, _o, _s in ifaces)
        if damage is not None and damage.offset == 0:
            raise CaptureError(path, "unreadable pcapng file: " + damage.reason, 0, 0)
    else:
        raise CaptureError(path, f"not a pcap or pcapng file (magic 0x{magic:08x})", 0)

    n = len(recs)
    t = schema.empty(n)
    a = np.array(recs, dtype=np.int64).reshape(n, 7)
    t.ts_ns[:] = a[:, 0]
    ro = np.ascontiguousarray(a[:, 1])
    t.cap_len[:] = a[:, 2]
    t.wire_len[:] = np.minimum(a[:, 3], 0x7FFFFFFF)
    t.linktype[:] = a[:, 4]
    t.pkt_dir[:] = a[:, 5]
    t.ifindex[:] = a[:, 6]
    t.rec_num[:] = np.arange(n)
    t.file_id[:] = file_id
    data = np.frombuffer(raw, dtype=np.uint8)
    decode_packets(data, ro, t)
    info.add_stats(t)
    if damage is not None:
        info.damage = damage
        if strict:
            raise CaptureError(path, damage.reason, damage.offset, damage.record)
        log.warning("%s: %s; kept the %d packets before it", path, damage, damage.record)
    return Capture(schema.validate(t), data, [info], ro)

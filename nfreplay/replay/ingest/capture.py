"""Capture files -> Capture (packet table + the bytes it indexes + per-file facts).

The fast path maps each file into memory (np.memmap, read-only, no copy), frames and decodes it with
decode.frame_decode (framing kernels + decode, block by block). gzip files are
decompressed into memory first.
"""

from __future__ import annotations

import gzip
import logging
import mmap
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from ...errors import CaptureError
from .. import schema
from ..codes import PKT_STATUS_NAMES, PktStatus
from ..schema import PacketTable
from . import framing
from .decode import MODE_PCAP, MODE_PCAPNG, frame_decode, table_stats

log = logging.getLogger(__name__)

READERS = ("auto", "native", "dpkt", "tshark")

# statuses the engine can replay (fragments go through the modelled defrag); the rest are reported
REPLAYABLE = (int(PktStatus.OK), int(PktStatus.FRAGMENT))
# statuses that mean the packet itself (or its capture) is broken, as opposed to not-IP / unsupported
MALFORMED = tuple(int(s) for s in (PktStatus.TRUNCATED_L2, PktStatus.TRUNCATED_L3, PktStatus.BAD_IP_VERSION,
                                   PktStatus.BAD_IHL, PktStatus.BAD_IP_LEN, PktStatus.TRUNCATED_L4,
                                   PktStatus.BAD_L4, PktStatus.BAD_IPV6_EXT, PktStatus.CAPTURE_DAMAGED))

PCAP_MAGICS = {  # first 4 bytes read little-endian -> (big-endian file, nanosecond timestamps)
    0xA1B2C3D4: (False, False),
    0xD4C3B2A1: (True, False),
    0xA1B23C4D: (False, True),
    0x4D3CB2A1: (True, True),
}
PCAPNG_MAGIC = 0x0A0D0D0A
GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class Damage:
    """Where a file stopped being readable. The packets before `record` were kept."""

    reason: str
    offset: int  # byte offset of the damaged record/block in the (decompressed) file
    record: int  # 0-based number of the first record not read

    def __str__(self) -> str:
        return f"{self.reason} at record {self.record} (byte offset {self.offset})"


@dataclass
class FileInfo:
    path: str
    format: str  # "pcap", "pcapng", "pcap.gz", "pcapng.gz"
    byte_order: str  # "little" / "big"
    ts_resolution: str  # "us", "ns"; pcapng: per interface, comma separated (e.g. "ns,us")
    linktypes: list[int] = field(default_factory=list)  # pcap: one; pcapng: one per interface
    packets: int = 0
    first_ts_ns: int | None = None  # earliest packet timestamp
    last_ts_ns: int | None = None  # latest packet timestamp
    malformed: dict[str, int] = field(default_factory=dict)  # PktStatus name -> count (MALFORMED codes)
    not_replayable: int = 0  # packets whose status is not OK/FRAGMENT
    status_counts: dict[str, int] = field(default_factory=dict)  # every PktStatus name -> count (non-zero)
    damage: Damage | None = None
    reader: str = "native"
    snaplen: int = 0

    def add_stats(self, t: PacketTable) -> None:
        n = len(t.ts_ns)
        if n == 0:
            return
        self.packets += n
        counts = np.zeros(256, dtype=np.int64)
        lo, hi = table_stats(t.ts_ns, t.status, counts)
        lo, hi = int(lo), int(hi)
        self.first_ts_ns = lo if self.first_ts_ns is None else min(self.first_ts_ns, lo)
        self.last_ts_ns = hi if self.last_ts_ns is None else max(self.last_ts_ns, hi)
        for code, c in enumerate(counts.tolist()):
            if c == 0:
                continue
            name = PKT_STATUS_NAMES[code] if code < len(PKT_STATUS_NAMES) else str(code)
            self.status_counts[name] = self.status_counts.get(name, 0) + c
            if code in MALFORMED:
                self.malformed[name] = self.malformed.get(name, 0) + c
            if code not in REPLAYABLE:
                self.not_replayable += c


@dataclass
class Capture:
    """A decoded capture. `packets.l3_off` and `rec_off` index into `data`."""

    packets: PacketTable
    data: np.ndarray  # uint8: one file's np.memmap, or a concatenated / decompressed buffer
    files: list[FileInfo]
    rec_off: np.ndarray  # int64: offset in `data` of each packet's first captured (link-layer) byte

    def __len__(self) -> int:
        return len(self.packets.ts_ns)

    def frame(self, i: int) -> bytes:
        """The captured bytes of packet i (link layer included)."""
        o = int(self.rec_off[i])
        return bytes(self.data[o:o + int(self.packets.cap_len[i])])


# --------------------------------------------------------------------------------------------- sources

class _Source:
    """One opened capture file: its bytes and header facts; frames and decodes in chunks."""

    def __init__(self, path, file_id: int, strict: bool):
        self.path = str(path)
        self.file_id = file_id
        self.strict = strict
        self.data, gz = _load_bytes(self.path)
        d = self.data
        if len(d) < 4:
            raise CaptureError(self.path, f"not a pcap or pcapng file (only {len(d)} bytes)")
        magic = int.from_bytes(bytes(d[:4]), "little")
        suffix = ".gz" if gz else ""
        if magic in PCAP_MAGICS:
            self.kind = "pcap"
            self.be, nano = PCAP_MAGICS[magic]
            if len(d) < 24:
                raise CaptureError(self.path, "truncated pcap file header", 0)
            order = "big" if self.be else "little"
            major = int.from_bytes(bytes(d[4:6]), order)
            minor = int.from_bytes(bytes(d[6:8]), order)
            if major != 2:
                raise CaptureError(self.path, f"pcap: major version {major}.{minor} unsupported", 4)
            self.nano = nano
            self.st = np.zeros(framing.ST_SIZE, dtype=np.int64)  # pcapng framing state: unused here
            self.ifs = np.zeros((1, framing.IF_NCOLS), dtype=np.int64)
            snaplen = int.from_bytes(bytes(d[16:20]), order)
            self.linktype = int.from_bytes(bytes(d[20:24]), order) & 0xFFFF
            self.start = 24
            self.info = FileInfo(self.path, "pcap" + suffix, order, "ns" if nano else "us", [self.linktype],
                                 snaplen=snaplen)
        elif magic == PCAPNG_MAGIC:
            self.kind = "pcapng"
            self.be, self.nano, self.linktype = False, False, 0  # pcap framing arguments: unused here
            self.st = np.zeros(framing.ST_SIZE, dtype=np.int64)
            self.ifs = np.zeros((framing.MAX_INTERFACES, framing.IF_NCOLS), dtype=np.int64)
            self.start = 0
            be = len(d) >= 12 and bytes(d[8:12]) == b"\x1a\x2b\x3c\x4d"
            self.info = FileInfo(self.path, "pcapng" + suffix, "big" if be else "little", "")
        else:
            raise CaptureError(self.path, f"not a pcap or pcapng file (magic 0x{magic:08x})", 0)

    def _bound(self, pos: int) -> int:
        return max(1, (len(self.data) - pos) // 16 + 1)

    def chunks(self, chunk_packets: int) -> Iterator[tuple[PacketTable, np.ndarray]]:
        """Yield (table, rec_off) chunks of at most chunk_packets rows, in file order."""
        pos, rec = self.start, 0
        d = self.data
        while True:
            bound = min(chunk_packets, self._bound(pos))
            t = _zeroed_table(bound)
            ro = _zeroed(bound, np.int64)
            mode = MODE_PCAPNG if self.kind == "pcapng" else MODE_PCAP
            n, npos, err = frame_decode(d, pos, bound, mode, self.be, self.nano, self.linktype, self.st,
                                        self.ifs, rec, ro, t)
            if self.kind == "pcapng":
                self._pcapng_info()
            n, npos, err = int(n), int(npos), int(err)
            if self.kind == "pcapng" and err and npos == 0:  # the first section header itself is broken
                raise CaptureError(self.path, "unreadable pcapng file: " + framing.FR_MESSAGES[err], 0, 0)
            if n:
                if n < bound:
                    t = schema.take(t, slice(0, n)) if n < bound // 2 else PacketTable(*(c[:n] for c in t))
                    ro = ro[:n].copy() if n < bound // 2 else ro[:n]
                if self.file_id:
                    t.file_id[:] = self.file_id
                self.info.add_stats(t)
                yield schema.validate(t), ro
            rec += n
            pos = npos
            if err:
                self._damage(framing.FR_MESSAGES.get(err, f"framing error {err}"), pos, rec)
                return
            if pos >= len(d) and n < bound:
                return
            if n == 0:
                return

    def _pcapng_info(self) -> None:
        k = int(self.st[framing.ST_N_IF])
        ifs = self.ifs[:k]
        self.info.linktypes = [int(x) for x in ifs[:, framing.IF_LINKTYPE]]
        self.info.snaplen = int(ifs[0, framing.IF_SNAPLEN]) if k else 0
        res = []
        for e, p2 in zip(ifs[:, framing.IF_RES_EXP].tolist(), ifs[:, framing.IF_RES_POW2].tolist()):
            res.append(f"2^-{e}" if p2 else {6: "us", 9: "ns", 3: "ms", 0: "s"}.get(e, f"10^-{e}"))
        self.info.ts_resolution = ",".join(res)
        self.info.byte_order = "big" if self.st[framing.ST_BE] else "little"

    def _damage(self, reason: str, offset: int, record: int) -> None:
        self.info.damage = Damage(reason, offset, record)
        if self.strict:
            raise CaptureError(self.path, reason, offset, record)
        log.warning("%s: %s; kept the %d packets before it", self.path, self.info.damage, record)


_HUGE = 2 << 20  # a transparent huge page (x86-64, arm64 with 4 KiB pages)


def _zeroed(n: int, dtype) -> np.ndarray:
    """np.zeros(n, dtype), but a column of at least 1 MiB is its own anonymous mapping advised
    MADV_HUGEPAGE (THP is usually in "madvise" mode, and calloc does not advise): the decoder's first
    touch then faults in 2 MiB at a time instead of 4 KiB. At 4 KiB, the faults of a 1M-packet table
    (~180 MB) took ~60 ms of the reader's ~200 ms. Fresh anonymous pages read as zero, and pages never
    written (columns a capture does not use, e.g. the ICMP-error ones) are never allocated. The size
    is rounded up to whole huge pages (the kernel then aligns the mapping) when that adds at most
    max(1/8, 1 MiB): at most 1 MiB per 1-byte column of a 1M-packet table, if touched."""
    dtype = np.dtype(dtype)
    nbytes = n * dtype.itemsize
    advise = getattr(mmap, "MADV_HUGEPAGE", None)
    if nbytes < _HUGE // 2 or advise is None:
        return np.zeros(n, dtype)
    size = -(-nbytes // _HUGE) * _HUGE
    if size - nbytes > max(nbytes // 8, _HUGE // 2):
        size = nbytes
    m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    try:
        m.madvise(advise)
    except OSError:  # THP unavailable: plain pages
        pass
    return np.frombuffer(m, dtype, n)


def _zeroed_table(n: int) -> PacketTable:
    """A packet table of n rows for decode.frame_decode: every column zero. The columns whose 'none'
    value is -1 (schema.empty) are written for every row by the framer (ifindex) or the decoder
    (vlan_id, l3_off, tcp_wscale)."""
    return PacketTable(*(_zeroed(n, dt) for dt in schema._DTYPES.values()))


def _load_bytes(path: str) -> tuple[np.ndarray, bool]:
    try:
        with open(path, "rb") as f:
            head = f.read(2)
        if head == GZIP_MAGIC:
            try:
                with gzip.open(path, "rb") as g:
                    raw = g.read()
            except (OSError, EOFError, gzip.BadGzipFile) as e:
                raise CaptureError(path, f"corrupt gzip data: {e}") from None
            return np.frombuffer(raw, dtype=np.uint8), True
        if os.path.getsize(path) == 0:
            raise CaptureError(path, "empty file")
        return np.memmap(path, dtype=np.uint8, mode="r"), False
    except CaptureError:
        raise
    except OSError as e:
        raise CaptureError(path, e.strerror or str(e)) from None


# --------------------------------------------------------------------------------------------- public

def _as_paths(paths) -> list[str]:
    if isinstance(paths, (str, os.PathLike)):
        return [os.fspath(paths)]
    out = [os.fspath(p) for p in paths]
    if not out:
        raise CaptureError("(none)", "no capture file given")
    return out


def _other_reader(reader: str):
    if reader == "dpkt":
        from .pcap_dpkt import read_dpkt

        return read_dpkt
    if reader == "tshark":
        from .pcap_tshark import read_tshark

        return read_tshark
    raise CaptureError("(reader)", f"unknown reader {reader!r}; choose one of {', '.join(READERS)}")


def read_capture(paths, reader: str = "auto", strict: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> Capture:
    """Read one or several capture files into one Capture.

    `paths`: a path or a list of paths. Several files are merged into one stream in timestamp order
    (stable: ties keep file order, then record order); `file_id`/`rec_num` keep the origin.
    `reader`: "auto"/"native" (Numba framing + decode), "dpkt" (dpkt framing, same decode), "tshark"
    (tshark converts anything Wireshark reads to pcapng, then the native path).
    `strict`: damage in a file (truncated last record, garbage) raises CaptureError instead of keeping
    the packets before it with a warning. `progress(done_bytes, total_bytes)` is called per chunk.
    """
    plist = _as_paths(paths)
    if reader not in ("auto", "native"):
        fn = _other_reader(reader)
        caps = [fn(p, i, strict) for i, p in enumerate(plist)]
    else:
        caps = []
        total = sum(_size(p) for p in plist)
        done = 0
        for i, p in enumerate(plist):
            src = _Source(p, i, strict)
            tabs, offs = [], []
            for t, ro in src.chunks(1_000_000):
                tabs.append(t)
                offs.append(ro)
                if progress is not None:
                    progress(done + int(ro[-1]) * _size(p) // max(1, len(src.data)), total)
            done += _size(p)
            if progress is not None:
                progress(done, total)
            if not tabs:
                t, ro = schema.empty(0), np.empty(0, dtype=np.int64)
            elif len(tabs) == 1:
                t, ro = tabs[0], offs[0]
            else:
                t, ro = schema.concat(tabs), np.concatenate(offs)
            caps.append(Capture(t, src.data, [src.info], ro))
    if len(caps) == 1:
        return caps[0]
    return _merge(caps)


def _size(p: str) -> int:
    try:
        return os.path.getsize(p)
    except OSError:
        return 0


def _merge(caps: list[Capture]) -> Capture:
    """Concatenate captures (data buffers too) and stable-sort by timestamp."""
    bases = np.cumsum([0] + [len(c.data) for c in caps[:-1]]).tolist()
    tabs, offs = [], []
    for c, b in zip(caps, bases):
        t = c.packets
        l3 = t.l3_off.copy()
        l3[l3 >= 0] += b
        tabs.append(t._replace(l3_off=l3))
        offs.append(c.rec_off + b)
    t = schema.concat(tabs)
    ro = np.concatenate(offs)
    order = np.argsort(t.ts_ns, kind="stable")
    if not np.array_equal(order, np.arange(len(order))):
        t = schema.take(t, order)
        ro = ro[order]
    data = np.concatenate([np.asarray(c.data) for c in caps]) if caps else np.empty(0, np.uint8)
    return Capture(schema.validate(t), data, [f for c in caps for f in c.files], ro)


def iter_capture(paths, chunk_packets: int = 1_000_000, reader: str = "auto", strict: bool = False,
                 progress: Callable[[int, int], None] | None = None) -> Iterator[Capture]:
    """Yield time-ordered chunks of at most about `chunk_packets` packets.

    One file: chunks in file order, `data` is the whole file (memory-mapped) and is shared by all chunks.
    Several files: a k-way merge by timestamp of the files' own orders (equal to read_capture's order
    when each file is time-ordered); each chunk carries a compact copy of its packets' bytes in `data`.
    The FileInfo objects in `files` are updated as reading proceeds (complete after the last chunk).
    Other readers (dpkt, tshark) read everything first and then yield slices.
    """
    plist = _as_paths(paths)
    if chunk_packets < 1:
        raise ValueError("chunk_packets must be >= 1")
    if reader not in ("auto", "native"):
        cap = read_capture(plist, reader=reader, strict=strict)
        yield from _slices(cap, chunk_packets)
        return
    srcs = [_Source(p, i, strict) for i, p in enumerate(plist)]
    infos = [s.info for s in srcs]
    if len(srcs) == 1:
        src = srcs[0]
        total = len(src.data)
        release = _PageRelease(src.data)
        for t, ro in src.chunks(chunk_packets):
            if progress is not None:
                progress(int(ro[-1]), total)
            yield Capture(t, src.data, infos, ro)
            release.chunk_done(int(ro[0]) if len(ro) else None)
        return
    yield from _kway(srcs, infos, chunk_packets, progress)


class _PageRelease:
    """Bounded RSS for a memory-mapped capture read chunk by chunk: the mapped pages of a file count in
    the process's RSS once touched (a 20M-packet capture: ~11 GiB). When the consumer asks for chunk j+1,
    the pages before the first record of chunk j-2 are dropped from this mapping (madvise DONTNEED): the
    replay (which may run one chunk behind the reader, with one more queued) no longer needs them. The
    file's pages stay in the page cache, so a later read of those bytes (a dissect of a sample packet)
    faults them back in, correct and cheap. No-op for in-memory buffers (gzip, concatenations)."""

    KEEP = 2  # chunks kept mapped behind the newest one handed out

    def __init__(self, data):
        import mmap

        self._mm = getattr(data, "_mmap", None)
        self._dontneed = getattr(mmap, "MADV_DONTNEED", None)
        self._page = mmap.PAGESIZE
        self._starts: list[int] = []
        self._done = 0

    def chunk_done(self, first_record: int | None) -> None:
        if self._mm is None or self._dontneed is None or first_record is None:
            return
        self._starts.append(first_record)
        if len(self._starts) <= self.KEEP:
            return
        upto = (self._starts.pop(0) // self._page) * self._page
        if upto > self._done:
            try:
                self._mm.madvise(self._dontneed, self._done, upto - self._done)
            except (OSError, ValueError):  # not fatal: only memory is at stake
                self._mm = None
                return
            self._done = upto


def _slices(cap: Capture, k: int) -> Iterator[Capture]:
    n = len(cap)
    for a in range(0, max(n, 1), k):
        if a >= n:
            return
        sl = slice(a, min(n, a + k))
        yield Capture(schema.take(cap.packets, sl), cap.data, cap.files, cap.rec_off[sl].copy())


def _kway(srcs: list[_Source], infos: list[FileInfo], chunk: int, progress) -> Iterator[Capture]:
    """k-way merge: emit every buffered row strictly older than the smallest last-buffered timestamp of
    the files that still have unread chunks, so ties keep file order exactly as a stable sort would."""
    per = max(1, chunk // len(srcs))
    its = [s.chunks(per) for s in srcs]
    empty = (schema.empty(0), np.empty(0, dtype=np.int64))
    bufs: list[tuple[PacketTable, np.ndarray]] = [empty] * len(srcs)
    more = [True] * len(srcs)  # the file has unread chunks

    def pull(i):
        nxt = next(its[i], None)
        if nxt is None:
            more[i] = False
        elif len(bufs[i][1]) == 0:
            bufs[i] = nxt
        else:
            bufs[i] = (schema.concat([bufs[i][0], nxt[0]]), np.concatenate([bufs[i][1], nxt[1]]))

    total = sum(len(s.data) for s in srcs)
    while True:
        for i in range(len(srcs)):
            if more[i] and len(bufs[i][1]) == 0:
                pull(i)
        limiting = [i for i in range(len(srcs)) if more[i]]
        if not limiting and all(len(b[1]) == 0 for b in bufs):
            return
        cutoff = min(int(bufs[i][0].ts_ns[-1]) for i in limiting) if limiting else None
        parts = []
        for i in range(len(srcs)):
            t, ro = bufs[i]
            if len(ro) == 0:
                continue
            k = len(ro) if cutoff is None else _prefix_lt(t.ts_ns, cutoff)
            if k:
                parts.append((i, schema.take(t, slice(0, k)), ro[:k]))
                bufs[i] = (schema.take(t, slice(k, None)), ro[k:].copy())
        if not parts:
            # the oldest buffered rows all share the cutoff timestamp: read further in the limiting files
            for i in limiting:
                if int(bufs[i][0].ts_ns[-1]) == cutoff:
                    pull(i)
            continue
        yield _gather(parts, srcs, infos)
        if progress is not None:
            progress(sum(int(b[1][0]) if len(b[1]) else len(s.data) for b, s in zip(bufs, srcs)), total)


def _prefix_lt(a: np.ndarray, cutoff: int) -> int:
    """Length of the longest prefix with every element < cutoff (also right for files not in time order)."""
    if len(a) and a[-1] < cutoff and (len(a) < 2 or bool(np.all(a[1:] >= a[:-1]))):
        return len(a)
    bad = np.flatnonzero(a >= cutoff)
    return int(bad[0]) if len(bad) else len(a)


def _gather(parts, srcs, infos) -> Capture:
    tabs, offs, datas = [], [], []
    base = 0
    for i, t, ro in parts:
        d = srcs[i].data
        cap = t.cap_len.astype(np.int64)
        new_off = base + np.concatenate(([0], np.cumsum(cap)[:-1])).astype(np.int64)
        datas.append(framing.gather_bytes(d, ro, cap, int(cap.sum())))
        l3 = t.l3_off.copy()
        m = l3 >= 0
        l3[m] = l3[m] - ro[m] + new_off[m]
        tabs.append(t._replace(l3_off=l3))
        offs.append(new_off)
        base += int(cap.sum())
    t = schema.concat(tabs)
    ro = np.concatenate(offs)
    order = np.argsort(t.ts_ns, kind="stable")
    t = schema.take(t, order)
    ro = ro[order]
    return Capture(schema.validate(t), np.concatenate(datas), infos, ro)

"""iter_capture drops the mapped pages of chunks the consumer is done with (bounded RSS on big captures)
without changing any byte it hands out."""

from __future__ import annotations

import mmap

import dpkt
import numpy as np

from nfreplay.replay.ingest import iter_capture, read_capture
from nfreplay.replay.ingest.capture import _PageRelease


class _FakeMap:
    def __init__(self):
        self.calls = []

    def madvise(self, option, start, length):
        self.calls.append((option, start, length))


def test_release_keeps_two_chunks_behind_and_is_page_aligned():
    r = _PageRelease(np.zeros(1, np.uint8))
    fake = _FakeMap()
    r._mm = fake
    page = mmap.PAGESIZE
    starts = [24, 3 * page + 100, 7 * page + 5, 9 * page + 1, 9 * page + 50]
    for s in starts:
        r.chunk_done(s)
    # after chunks 0..4: released up to (start of chunk 2) // page, in non-overlapping ranges from 0
    assert [c[1:] for c in fake.calls] == [(0, 3 * page), (3 * page, 4 * page)]
    assert all(c[0] == mmap.MADV_DONTNEED for c in fake.calls)
    r.chunk_done(None)  # an empty chunk changes nothing
    assert len(fake.calls) == 2


def test_no_release_for_in_memory_buffers():
    r = _PageRelease(np.zeros(10, np.uint8))  # not a memmap: nothing to release
    for s in (0, 5000, 90000, 200000):
        r.chunk_done(s)
    assert r._mm is None


def _pcap(path, n):
    with open(path, "wb") as f:
        w = dpkt.pcap.Writer(f)
        for i in range(n):
            ip = dpkt.ip.IP(src=bytes([10, 0, 0, 1]), dst=bytes([10, 0, 0, 2]), p=17,
                            data=dpkt.udp.UDP(sport=1000 + i % 50, dport=53, data=bytes([i % 251]) * 1400))
            ip.len = len(bytes(ip))
            eth = dpkt.ethernet.Ethernet(src=b"\x02" * 6, dst=b"\x04" * 6, data=ip)
            w.writepkt(bytes(eth), ts=1.0 + i * 1e-3)


def test_released_pages_still_read_back_the_file(tmp_path, monkeypatch):
    """Pages dropped from the mapping fault back in from the page cache: every chunk's bytes (also the
    early ones, read after the whole file went through) equal the file's bytes."""
    p = tmp_path / "big.pcap"
    _pcap(p, 3000)  # ~4.3 MB: many pages per chunk
    whole = read_capture(p)
    raw = p.read_bytes()
    seen = []
    orig = _PageRelease.chunk_done

    def spy(self, first):
        orig(self, first)
        seen.append(self._done)

    monkeypatch.setattr(_PageRelease, "chunk_done", spy)
    chunks = list(iter_capture(p, chunk_packets=250))
    assert len(chunks) == 12
    assert seen[-1] > len(raw) // 2  # most of the file was dropped from the mapping on the way
    data = chunks[0].data
    assert len(data) == len(raw) and bytes(data[: 64 * 1024]) == raw[: 64 * 1024]
    offs = np.concatenate([c.packets.l3_off for c in chunks])
    assert offs.tolist() == whole.packets.l3_off.tolist()
    assert bytes(np.asarray(data)) == raw

"""Ingest benchmark (a script, not a test): packets/s of nfreplay's reader vs dpkt vs the page cache.

    .venv/bin/python bench/bench_ingest.py [--packets 1000000] [--decode-sample 200000]

Generates (deterministically, seed 1) a synthetic Ethernet capture with a realistic mix -- TCP flows
(handshake, request/response data of varied sizes, ACKs, FIN close), UDP request/response pairs, ICMP
echo pairs -- as classic pcap and as pcapng into bench/data/ (gitignored), then measures in one run:
our reader (warm: after one run that compiles), dpkt's Reader framing loop, dpkt full decode (Ethernet
-> IP -> TCP/UDP objects, on a sample), and `cat FILE > /dev/null` from the page cache. Rates are per wall
second (best of 3) and, for our reader and cat, also per CPU second (best of 5: thread time, plus cat's
user + system time), which other jobs on a shared machine disturb less.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import struct
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT / "bench" / "data"

MAC = b"\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02"


def _ip(src: int, dst: int, proto: int, l4: bytes, ident: int) -> bytes:
    h = struct.pack(">BBHHHBBHII", 0x45, 0, 20 + len(l4), ident & 0xFFFF, 0x4000, 64, proto, 0, src, dst)
    s = sum(struct.unpack(">10H", h))
    s = (s & 0xFFFF) + (s >> 16)
    s = (s & 0xFFFF) + (s >> 16)
    return h[:10] + struct.pack(">H", ~s & 0xFFFF) + h[12:] + l4


def _tcp(sp, dp, seq, ack, flags, payload_len, opts=b""):
    off = (20 + len(opts)) // 4
    return struct.pack(">HHIIBBHHH", sp, dp, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, off << 4, flags, 65535, 0, 0) + \
        opts + b"\x00" * payload_len


def generate(n_packets: int, seed: int = 1):
    """Yield (ts_ns, frame) in time order."""
    rng = random.Random(seed)
    ts = 1_700_000_000 * 10**9
    n = 0
    flow = 0
    syn_opts = b"\x02\x04\x05\xb4\x04\x02\x08\x0a\x00\x00\x00\x01\x00\x00\x00\x00\x01\x03\x03\x07"
    while n < n_packets:
        flow += 1
        c = 0x0A000000 | rng.randrange(1, 1 << 16)
        s = 0xC0A80000 | rng.randrange(1, 256)
        sp = 1024 + rng.randrange(60000)
        kind = rng.random()
        pkts = []
        if kind < 0.75:
            dp = rng.choice((80, 443, 22, 8080))
            a, b = rng.randrange(1 << 32), rng.randrange(1 << 32)
            pkts.append((c, s, 6, _tcp(sp, dp, a, 0, 0x02, 0, syn_opts)))
            pkts.append((s, c, 6, _tcp(dp, sp, b, a + 1, 0x12, 0, syn_opts)))
            pkts.append((c, s, 6, _tcp(sp, dp, a + 1, b + 1, 0x10, 0)))
            a += 1
            b += 1
            for _ in range(rng.randrange(1, 6)):
                q = rng.randrange(40, 600)
                pkts.append((c, s, 6, _tcp(sp, dp, a, b, 0x18, q)))
                a += q
                r = rng.choice((0, 200, 1200, 1448))
                pkts.append((s, c, 6, _tcp(dp, sp, b, a, 0x18 if r else 0x10, r)))
                b += r
                if r:
                    pkts.append((c, s, 6, _tcp(sp, dp, a, b, 0x10, 0)))
            pkts.append((c, s, 6, _tcp(sp, dp, a, b, 0x11, 0)))
            pkts.append((s, c, 6, _tcp(dp, sp, b, a + 1, 0x11, 0)))
            pkts.append((c, s, 6, _tcp(sp, dp, a + 1, b + 1, 0x10, 0)))
        elif kind < 0.95:
            q, r = rng.randrange(20, 80), rng.randrange(40, 500)
            pkts.append((c, s, 17, struct.pack(">HHHH", sp, 53, 8 + q, 0) + b"\x00" * q))
            pkts.append((s, c, 17, struct.pack(">HHHH", 53, sp, 8 + r, 0) + b"\x00" * r))
        else:
            ident = rng.randrange(1 << 16)
            pkts.append((c, s, 1, struct.pack(">BBHHH", 8, 0, 0, ident, 1) + b"\x00" * 56))
            pkts.append((s, c, 1, struct.pack(">BBHHH", 0, 0, 0, ident, 1) + b"\x00" * 56))
        for src, dst, proto, l4 in pkts:
            if n >= n_packets:
                return
            ts += rng.randrange(1000, 50000)
            yield ts, MAC + b"\x08\x00" + _ip(src, dst, proto, l4, n)
            n += 1


def write_files(n_packets: int, pcapng: bool = True) -> tuple[Path, Path | None]:
    """Write bench/data/synthetic-N.pcap (and .pcapng unless pcapng=False) if missing; return the paths.

    Streams: generate() yields one packet at a time and records go to disk every 100k packets, so memory
    stays flat for any N (10M: ~70 s, 20M: ~150 s here). Each file is written to a temporary name and
    renamed when complete, so an interrupted run never leaves a truncated capture behind. The bytes do
    not depend on pcapng (same generator, same order) and the first k packets of any N are the same
    (the generator is a prefix-stable stream; only the last flow is cut at N). Sizes: ~285 B/packet in
    pcap (1M: 272 MiB, 10M: 2.7 GiB, 20M: 5.3 GiB), pcapng ~6 % more."""
    DATA.mkdir(parents=True, exist_ok=True)
    pcap, ng = DATA / f"synthetic-{n_packets}.pcap", DATA / f"synthetic-{n_packets}.pcapng"
    if pcap.exists() and (ng.exists() or not pcapng):
        return pcap, (ng if ng.exists() else None)
    tmp1, tmp2 = pcap.with_name(pcap.name + ".part"), ng.with_name(ng.name + ".part")
    f2 = open(tmp2, "wb") if pcapng else None
    try:
        with open(tmp1, "wb") as f1:
            f1.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 1))
            shb = struct.pack("<IIIHHq", 0x0A0D0D0A, 28, 0x1A2B3C4D, 1, 0, -1) + struct.pack("<I", 28)
            idb = struct.pack("<IIHHI", 1, 20, 1, 0, 0) + struct.pack("<I", 20)
            if f2:
                f2.write(shb + idb)
            buf1, buf2 = [], []
            for ts, fr in generate(n_packets):
                sec, usec = divmod(ts // 1000, 1_000_000)
                buf1.append(struct.pack("<IIII", sec, usec, len(fr), len(fr)) + fr)
                if f2:
                    tu = ts // 1000
                    pad = (-len(fr)) % 4
                    blen = 32 + len(fr) + pad
                    buf2.append(struct.pack("<IIIIIII", 6, blen, 0, tu >> 32, tu & 0xFFFFFFFF, len(fr), len(fr))
                                + fr + b"\x00" * pad + struct.pack("<I", blen))
                if len(buf1) >= 100_000:
                    f1.write(b"".join(buf1))
                    if f2:
                        f2.write(b"".join(buf2))
                    buf1, buf2 = [], []
            f1.write(b"".join(buf1))
            if f2:
                f2.write(b"".join(buf2))
    except BaseException:
        tmp1.unlink(missing_ok=True)
        tmp2.unlink(missing_ok=True)
        raise
    finally:
        if f2:
            f2.close()
    tmp1.replace(pcap)
    if pcapng:
        tmp2.replace(ng)
    return pcap, (ng if ng.exists() else None)


def _time(fn, repeat=3):
    best = None
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        dt = time.perf_counter() - t
        best = dt if best is None else min(best, dt)
    return best, out


def _cpu(fn, repeat=5):
    """Best CPU time of fn (user + system) of this thread plus the child processes it waited for: on a
    shared machine the wall time also counts the time other jobs held the core."""
    import resource

    best = None
    for _ in range(repeat):
        c0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        t = time.thread_time()
        fn()
        c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        dt = time.thread_time() - t + (c1.ru_utime - c0.ru_utime) + (c1.ru_stime - c0.ru_stime)
        best = dt if best is None else min(best, dt)
    return best


def bench_file(path: Path, n: int, decode_sample: int) -> dict:
    import dpkt

    from nfreplay.replay.ingest import read_capture

    is_ng = path.suffix == ".pcapng"
    read_capture(path)  # compile + warm the page cache

    def ours():
        return len(read_capture(path))

    def cat():
        subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)

    def dpkt_frame():
        k = 0
        with open(path, "rb") as f:
            for _ts, _buf in (dpkt.pcapng.Reader(f) if is_ng else dpkt.pcap.Reader(f)):
                k += 1
        return k

    def dpkt_decode():
        k = 0
        with open(path, "rb") as f:
            for _ts, buf in (dpkt.pcapng.Reader(f) if is_ng else dpkt.pcap.Reader(f)):
                e = dpkt.ethernet.Ethernet(buf)
                ip = e.data
                l4 = ip.data
                _ = (ip.src, ip.dst, ip.p, getattr(l4, "sport", 0), getattr(l4, "dport", 0))
                k += 1
                if k >= decode_sample:
                    break
        return k

    t_ours, got = _time(ours)
    assert got == n, (got, n)
    t_cat, _ = _time(cat)
    c_ours, c_cat = _cpu(ours), _cpu(cat)
    t_frame, k = _time(dpkt_frame, repeat=1)
    assert k == n
    t_dec, k_dec = _time(dpkt_decode, repeat=1)
    return {"file": path.name, "bytes": path.stat().st_size, "ours": n / t_ours, "cat": n / t_cat,
            "dpkt_frame": n / t_frame, "dpkt_decode": k_dec / t_dec, "t_ours": t_ours,
            "ours_cpu": n / c_ours, "cat_cpu": n / c_cat}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--decode-sample", type=int, default=200_000)
    a = ap.parse_args()
    t = time.perf_counter()
    files = write_files(a.packets)
    print(f"capture files ready in {time.perf_counter() - t:.1f} s: {', '.join(str(p) for p in files)}")
    from nfreplay.replay import schema

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
          f"python {platform.python_version()}; packet table {schema.nbytes_per_packet()} bytes/packet")
    print(f"{'file':<28}{'MB':>8}{'ours pkt/s':>14}{'cat pkt/s':>14}{'dpkt frame':>14}{'dpkt decode':>14}"
          f"{'ours/cat':>10}{'ours/frame':>12}{'ours/decode':>12}{'ours CPU':>14}{'cat CPU':>14}{'CPU ratio':>10}")
    for p in files:
        r = bench_file(p, a.packets, a.decode_sample)
        print(f"{r['file']:<28}{r['bytes'] / 1e6:>8.0f}{r['ours']:>14,.0f}{r['cat']:>14,.0f}{r['dpkt_frame']:>14,.0f}"
              f"{r['dpkt_decode']:>14,.0f}{r['ours'] / r['cat']:>10.2f}{r['ours'] / r['dpkt_frame']:>12.1f}"
              f"{r['ours'] / r['dpkt_decode']:>12.1f}{r['ours_cpu']:>14,.0f}{r['cat_cpu']:>14,.0f}"
              f"{r['ours_cpu'] / r['cat_cpu']:>10.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

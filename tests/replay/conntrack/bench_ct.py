"""Benchmark (not a test): conntrack alone on a synthetic TCP/UDP mix. python tests/replay/conntrack/bench_ct.py
(the full engine benchmark, with a realistic capture and the pipeline, is bench/bench_engine.py)"""
import time

import numpy as np

from nfreplay.replay import schema
from nfreplay.replay.conntrack import ct_replay_range, drain_events, make_params, new_event_log, new_table


def loop(tab, prm, pk, ev, lo, hi):
    i = lo
    while i < hi:
        i = ct_replay_range(tab, prm, pk, ev, i, hi)
        drain_events(ev)
    return hi - lo


N = 1_000_000
rng = np.random.default_rng(1)
pk = schema.empty(N)
nflows = 20000
f = rng.integers(0, nflows, N)
rev = rng.random(N) < 0.45
pk.ts_ns[:] = np.arange(N, dtype=np.int64) * 2000
pk.family[:] = 4
cl = (0xFFFF00000000 | (0x0A000000 + (f % 250) + 1)).astype(np.uint64)
sv = (0xFFFF00000000 | (0xC0000200 + (f // 250) % 200)).astype(np.uint64)
pk.src_lo[:] = np.where(rev, sv, cl)
pk.dst_lo[:] = np.where(rev, cl, sv)
cport = (1024 + f).astype(np.uint16)
sport = np.where(f % 3 == 0, 53, 443).astype(np.uint16)
pk.sport[:] = np.where(rev, sport, cport)
pk.dport[:] = np.where(rev, cport, sport)
udp = f % 3 == 0
pk.proto[:] = np.where(udp, 17, 6)
pk.ip_hlen[:] = 20
pk.tcp_hlen[:] = 20
pk.l4_len[:] = np.where(udp, 108, 20)
pk.ip_len[:] = pk.l4_len + 20
pk.tcp_flags[:] = 0x10  # ACK: loose pickup, then liberal
pk.tcp_seq[:] = 1000
pk.tcp_ack[:] = 1000
pk.tcp_sack[:] = 1000
pk.tcp_win[:] = 65535
pk.l4_csum[:] = 1
prm = make_params({"nf_conntrack_tcp_be_liberal": 1})
tab = new_table(nflows + 64, nflows + 64)
ev = new_event_log(1 << 16)
t0 = time.perf_counter()
loop(tab, prm, pk, ev, 0, 1000)
t1 = time.perf_counter()
print("compile+1000", t1 - t0)
t0 = time.perf_counter()
loop(tab, prm, pk, ev, 1000, N)
t1 = time.perf_counter()
print("pkts/s", (N - 1000) / (t1 - t0))

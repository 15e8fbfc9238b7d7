"""Engine benchmark (a script, not a test): conntrack alone and the whole pipeline, packets/s, plus the
compile time of the kernels on a fresh NUMBA_CACHE_DIR.

    .venv/bin/python bench/bench_engine.py [--packets 1000000] [--no-compile] [--repeat 2]

Capture: bench_ingest's deterministic generator (seed 1): TCP flows with handshake, data, ACKs and a
FIN close (75 %), UDP request/response (20 %), ICMP echo pairs (5 %), ~20 ns..50 us apart; classic pcap
in bench/data/ (gitignored). Ruleset: 50 iptables rules, stateful (conntrack state first, INVALID
drops, per-subnet and per-port rules, multiport, user chains), on a two-interface router host.

Reported in one run (so the machine load is the same): the reader alone (`read_capture`, warm) as the
baseline, conntrack alone (nf_conntrack_in + confirm per packet, warm), the whole pipeline
(`run_replay`, warm), each as packets/s and as a ratio to the reader; the load average before and after.
Compile times are measured in child processes with an empty NUMBA_CACHE_DIR: conntrack alone
(first ct_in + ct_confirm) and the whole pipeline (first run_replay on a 200-packet capture); wall
and CPU seconds (user + sys of the child).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
DATA = ROOT / "bench" / "data"

HOST = {
    "interfaces": [{"name": "lan0", "addresses": ["10.0.0.1/16"]},
                   {"name": "wan0", "addresses": ["192.168.0.1/16"]}],
    "routes": [{"prefix": "0.0.0.0/0", "interface": "wan0", "via": "192.168.0.254"}],
    "ip_forward": True,
    "sysctls": {},
}


def ruleset_text() -> str:
    """50 rules: the usual stateful router shape."""
    r = ["*filter", ":INPUT DROP [0:0]", ":FORWARD DROP [0:0]", ":OUTPUT ACCEPT [0:0]",
         ":lan_out - [0:0]", ":blocked - [0:0]"]
    r += ["-A INPUT -i lo -j ACCEPT",
          "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
          "-A INPUT -m conntrack --ctstate INVALID -j DROP",
          "-A INPUT -p icmp -m icmp --icmp-type 8 -j ACCEPT",
          "-A INPUT -i lan0 -p tcp -m tcp --dport 22 -j ACCEPT",
          "-A INPUT -i lan0 -p udp -m udp --dport 53 -j ACCEPT",
          "-A INPUT -p tcp -m tcp --tcp-flags SYN,RST,ACK SYN -j REJECT --reject-with tcp-reset",
          "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
          "-A FORWARD -m conntrack --ctstate INVALID -j DROP",
          "-A FORWARD -i lan0 -o wan0 -j lan_out",
          "-A FORWARD -j blocked"]
    for k in range(24):  # per-subnet blocks that mostly do not match
        r.append(f"-A lan_out -s 10.0.{200 + k % 50}.0/24 -p tcp -m tcp --dport {9000 + k} -j DROP")
    r += ["-A lan_out -p tcp -m multiport --dports 80,443,8080 -m conntrack --ctstate NEW -j ACCEPT",
          "-A lan_out -p tcp -m tcp --dport 22 -s 10.0.0.0/17 -m conntrack --ctstate NEW -j ACCEPT",
          "-A lan_out -p udp -m udp --dport 53 -m conntrack --ctstate NEW -j ACCEPT",
          "-A lan_out -p icmp -m icmp --icmp-type 8 -j ACCEPT"]
    for k in range(8):
        r.append(f"-A blocked -d 192.168.{1 + k}.0/24 -j DROP")
    r += ["-A blocked -p tcp -j REJECT --reject-with tcp-reset",
          "-A blocked -j DROP",
          "-A OUTPUT -o lo -j ACCEPT"]
    r.append("COMMIT")
    n_rules = sum(1 for x in r if x.startswith("-A "))
    assert n_rules == 50, n_rules
    return "\n".join(r) + "\n"


def write_capture(n: int) -> Path:
    from bench_ingest import write_files

    return write_files(n, pcapng=False)[0]


def load_inputs(n: int):
    from nfreplay.replay.host import load_host
    from nfreplay.replay.ingest import read_capture
    from nfreplay.replay.rules import load_ruleset

    path = write_capture(n)
    return path, read_capture(path), load_ruleset(ruleset_text(), fmt="iptables"), load_host(dict(HOST))


def ct_loop_fn():
    """The conntrack-only loop: the pv-based driver when present (new API), else ct_in per packet."""
    from nfreplay.replay import conntrack as ct

    if hasattr(ct, "ct_replay_range"):
        def run(tab, prm, pk, ev, lo, hi):
            k = lo
            while k < hi:
                k = ct.ct_replay_range(tab, prm, pk, ev, k, hi)
                ct.drain_events(ev)
            return hi - lo
        return run

    from nfreplay.replay._jit import kernel

    @kernel
    def loop(tab, prm, pk, ev, lo, hi):
        n = 0
        for i in range(lo, hi):
            now = pk.ts_ns[i]
            s, d, ci, r = ct.ct_in(tab, prm, pk, i, 0, 0, now, ev)
            ct.ct_confirm(tab, prm, s, now, i, ev)
            if ev.n[0] > len(ev.ct_id) - 8:
                ev.n[0] = 0
            n += 1
        return n
    return loop


def bench_ct(pk, repeat: int, assume_good: bool = True) -> float:
    from nfreplay.replay import conntrack as ct

    n = len(pk.ts_ns)
    loop = ct_loop_fn()
    best = None
    for _ in range(repeat + 1):  # first round also compiles (small range)
        prm = ct.make_params({}, assume_good_checksums=assume_good)
        tab = ct.new_table(ct.table_capacity_for(prm.ct_max, n), n + 16)
        ev = ct.new_event_log(1 << 16)
        t = time.perf_counter()
        loop(tab, prm, pk, ev, 0, n if best is not None else 1000)
        dt = time.perf_counter() - t
        if best is None:
            best = float("inf")
            continue
        best = min(best, dt)
    return n / best


def bench_pipeline(cap, rs, host, repeat: int, assume_good: bool = True) -> tuple[float, dict]:
    from nfreplay.replay.pipeline import run_replay

    best = float("inf")
    out = None
    for _ in range(repeat):
        t = time.perf_counter()
        out = run_replay(cap, rs, host, assume_good_checksums=assume_good)
        best = min(best, time.perf_counter() - t)
    n = len(cap.packets.ts_ns)
    import numpy as np

    oc = np.bincount(out.results.outcome.astype(np.int64), minlength=9)
    return n / best, {"outcomes": oc.tolist(), "flows": len(out.flows["family"])}


_CHILD = r"""
import json, os, resource, sys, time
sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
import bench_engine as be
what = {what!r}
t0 = time.perf_counter()
if what == "ct":
    from nfreplay.replay import conntrack as ct
    from tests.replay.conntrack.factories import table_of, pkt
    pk = table_of([pkt("10.0.0.2", "192.168.0.9", 6, 1000, 80, "S", seq=1, t=1.0)])
    prm = ct.make_params({{}})
    tab = ct.new_table(64, 64); ev = ct.new_event_log(64)
    t_imp = time.perf_counter()
    s, d, ci, r = ct.ct_in(tab, prm, pk, 0, 0, 0, 10**9, ev)
    ct.ct_confirm(tab, prm, s, 10**9, 0, ev)
else:
    from nfreplay.replay.pipeline import run_replay
    path, cap, rs, host = be.load_inputs(200)
    t_imp = time.perf_counter()
    run_replay(cap, rs, host)
t1 = time.perf_counter()
ru = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"wall": t1 - t_imp, "cpu": ru.ru_utime + ru.ru_stime}}))
"""


def compile_time(what: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="nfreplay-bench-cache-") as d:
        env = dict(os.environ, NUMBA_CACHE_DIR=d)
        env.pop("NUMBA_DISABLE_JIT", None)
        code = _CHILD.format(root=str(ROOT), bench=str(ROOT / "bench"), what=what)
        p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT)
        if p.returncode != 0:
            return {"error": p.stderr[-2000:]}
        return json.loads(p.stdout.strip().splitlines()[-1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--no-compile", action="store_true", help="skip the fresh-cache compile timings")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--checksums", choices=("assume-good", "verify"), default="assume-good",
                    help="the generator writes zero TCP/ICMP checksums (as a capture with checksum offload "
                         "shows them): assume-good = --assume-good-checksums (default), verify = conntrack "
                         "finds them bad (INVALID)")
    a = ap.parse_args()
    load0 = os.getloadavg()
    res = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus, "
                      f"python {platform.python_version()}", "load_before": load0}
    if not a.no_compile:
        res["compile_ct"] = compile_time("ct")
        print("compile_ct", res["compile_ct"], flush=True)
        res["compile_pipeline"] = compile_time("pipeline")
        print("compile_pipeline", res["compile_pipeline"], flush=True)
    from nfreplay.replay.ingest import read_capture

    path, cap, rs, host = load_inputs(a.packets)
    n = len(cap.packets.ts_ns)
    best = float("inf")
    for _ in range(a.repeat):
        t = time.perf_counter()
        read_capture(path)
        best = min(best, time.perf_counter() - t)
    res["reader_pps"] = n / best
    good = a.checksums == "assume-good"
    res["checksums"] = a.checksums
    print(f"reader {res['reader_pps']:,.0f} pkt/s", flush=True)
    res["ct_pps"] = bench_ct(cap.packets, a.repeat, good)
    print(f"conntrack {res['ct_pps']:,.0f} pkt/s", flush=True)
    res["pipeline_pps"], res["pipeline_info"] = bench_pipeline(cap, rs, host, a.repeat, good)
    res["load_after"] = os.getloadavg()
    res["packets"] = n
    res["cpu_s_total"] = sum(resource.getrusage(resource.RUSAGE_SELF)[:2])
    print(f"machine: {res['machine']}; load avg before {load0[0]:.2f} {load0[1]:.2f}, "
          f"after {res['load_after'][0]:.2f} {res['load_after'][1]:.2f}")
    for k in ("compile_ct", "compile_pipeline"):
        if k in res:
            v = res[k]
            print(f"{k:<18} " + (f"wall {v['wall']:.1f} s, process cpu {v['cpu']:.1f} s" if "wall" in v
                                 else "FAILED " + v["error"]))
    r = res["reader_pps"]
    print(f"{'packets':<18} {n:,} (checksums: {a.checksums})")
    print(f"{'reader (baseline)':<18} {r:>14,.0f} pkt/s  1.00")
    print(f"{'conntrack alone':<18} {res['ct_pps']:>14,.0f} pkt/s  {res['ct_pps'] / r:.2f}")
    print(f"{'pipeline e2e':<18} {res['pipeline_pps']:>14,.0f} pkt/s  {res['pipeline_pps'] / r:.2f}"
          f"   outcomes {res['pipeline_info']['outcomes']} flows {res['pipeline_info']['flows']:,}")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1, default=float))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

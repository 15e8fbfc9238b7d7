"""End-to-end benchmark (a script, not a test): streaming replay per stage and end to end.

    .venv/bin/python bench/bench.py [--packets 1000000] [--no-cold] [--json FILE]

Capture: bench_ingest's deterministic generator (via bench_engine.write_capture; TCP flows with
handshake, data and FIN close, UDP, ICMP). Rulesets: bench_engine's 50-rule stateful router and a
1000-rule variant (950 extra non-matching per-subnet rules in front of the accepts). Every figure is one
child process (so ru_maxrss is that measurement's peak RSS), run on a warm NUMBA_CACHE_DIR:

  cat           `cat FILE > /dev/null` (page-cache read rate, the I/O bound)
  dpkt framing  dpkt.pcap.Reader loop over the file
  ingest        iter_capture over the file (framing + decode), chunks of 1M
  e2e           analysis.api.simulate_to (ingest + replay + Parquet packets/events + rules/flows/summary),
                with the decode-ahead thread (overlap) and without it
  startup       `nfreplay run` on samples/forward_blocked_service, warm cache and empty NUMBA_CACHE_DIR
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
PY = str(ROOT / ".venv" / "bin" / "python")

CHILD = r"""
import json, resource, sys, time
sys.path.insert(0, {root!r}); sys.path.insert(0, {bench!r})
what, path, arg = sys.argv[1], sys.argv[2], sys.argv[3]
t = time.perf_counter(); n = 0
if what == "dpkt":
    import dpkt
    with open(path, "rb") as f:
        for _ts, _buf in dpkt.pcap.Reader(f):
            n += 1
elif what == "ingest":
    from nfreplay.replay.ingest import iter_capture
    for c in iter_capture(path, chunk_packets=1_000_000):
        n += len(c.packets.ts_ns)
elif what in ("e2e", "e2e_noovl", "replay"):
    import tempfile
    from bench_engine import HOST, ruleset_text
    from bench import big_ruleset
    from nfreplay.analysis.api import simulate_to
    from nfreplay.replay.rules import load_ruleset
    rs = load_ruleset(ruleset_text() if arg == "50" else big_ruleset(), fmt="iptables")
    with tempfile.TemporaryDirectory() as d:
        t = time.perf_counter()
        res, _ = simulate_to(path, rs, dict(HOST), d, assume_good_checksums=True, overlap=(what == "e2e"))
        n = res.summary["packets"]
wall = time.perf_counter() - t
print(json.dumps({{"n": n, "wall": wall, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}}))
"""


def big_ruleset() -> str:
    from bench_engine import ruleset_text

    lines = ruleset_text().splitlines()
    k = lines.index(next(x for x in lines if x.startswith("-A lan_out -p tcp -m multiport")))
    extra = [f"-A lan_out -s 10.{1 + j // 250}.{j % 250}.0/24 -p tcp -m tcp --dport {1000 + j} -j DROP"
             for j in range(950)]
    return "\n".join(lines[:k] + extra + lines[k:]) + "\n"


def child(what: str, path: Path, arg: str = "", env=None) -> dict:
    code = CHILD.format(root=str(ROOT), bench=str(ROOT / "bench"))
    r = subprocess.run([PY, "-c", code, what, str(path), arg], capture_output=True, text=True, env=env)
    if r.returncode:
        raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def cat_rate(path: Path, n: int) -> dict:
    subprocess.run(f"cat {path} > /dev/null", shell=True, check=True)  # warm the page cache
    t = time.perf_counter()
    subprocess.run(f"cat {path} > /dev/null", shell=True, check=True)
    return {"n": n, "wall": time.perf_counter() - t, "rss_mib": 0.0}


def startup(cache_dir: str | None) -> float:
    s = ROOT / "samples" / "forward_blocked_service"
    env = dict(os.environ)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    cmd = [str(ROOT / ".venv" / "bin" / "nfreplay"), "-q", "run", str(s / "capture.pcap"), "-r", str(s / "rules.ipt"),
           "--host", str(s / "host.toml"), "--json"]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env=env)
    return time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--no-cold", action="store_true", help="skip the empty-NUMBA_CACHE_DIR startup")
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    from bench_engine import write_capture

    path = write_capture(a.packets)
    n = a.packets
    load0 = os.getloadavg()
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    res = {"machine": f"{cpu}, {os.cpu_count()} cpus, python {platform.python_version()}", "load_before": load0,
           "file_mib": path.stat().st_size / 2 ** 20, "packets": n}
    child("e2e", path, "50")  # warm the numba cache for everything below
    rows = {"cat": cat_rate(path, n), "dpkt framing": child("dpkt", path), "ingest": child("ingest", path)}
    for rsn in ("50", "1000"):
        child("e2e", path, rsn)
        rows[f"e2e {rsn} rules, overlap"] = child("e2e", path, rsn)
        rows[f"e2e {rsn} rules, no overlap"] = child("e2e_noovl", path, rsn)
    for k, v in rows.items():
        v["pps"] = v["n"] / v["wall"] if v["wall"] else 0.0
        print(f"{k:28s} {v['pps'] / 1e6:7.3f} M/s  wall {v['wall']:7.2f} s  rss {v['rss_mib']:7.0f} MiB", flush=True)
    res["rows"] = rows
    res["startup_warm_s"] = startup(None)
    print("startup warm", res["startup_warm_s"], flush=True)
    if not a.no_cold:
        with tempfile.TemporaryDirectory() as d:
            res["startup_cold_s"] = startup(d)
        print("startup cold", res["startup_cold_s"], flush=True)
    res["load_after"] = os.getloadavg()
    print(json.dumps({k: v for k, v in res.items() if k != "rows"}, default=str))
    if a.json:
        a.json.write_text(json.dumps(res, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

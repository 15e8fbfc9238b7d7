"""End-to-end benchmark (a script, not a test): streaming replay per stage and end to end, against the
page cache, dpkt and the real kernel, measured in one run.

    .venv/bin/python bench/bench.py [--packets 1000000,10000000] [--rulesets 50,1000] [--rss-20m]
                                    [--no-cold] [--no-kernel] [--json FILE] [--markdown FILE]

Captures: bench_ingest's deterministic generator (seed 1; via bench_engine.write_capture: TCP flows with
handshake, data, ACKs and FIN close, UDP request/response, ICMP echo; the ruleset turns some of it into
drops, REJECTs and INVALID). Written once, streaming (flat memory), into bench/data/ (gitignored) as
classic pcap: ~285 B per packet, so 1M = 272 MiB (~7 s to generate), 10M = 2.7 GiB (~75 s), 20M = 5.3 GiB
(~150 s, only with --rss-20m). The generator is prefix-stable: the first k packets of every size are the
same, so the kernel's 200k slice is the start of every capture. Rulesets: bench_engine's 50-rule stateful
router (ruleset_text(), host HOST: lan0 10.0.0.1/16, wan0 192.168.0.1/16) and a 1000-rule variant (950
extra non-matching per-subnet rules in front of the accepts). Checksums: the generator writes zero
TCP/ICMP checksums (offload-style), so nfreplay runs with assume_good_checksums.

Conntrack table size (--ct-max): the generator opens ~3.2k connections per second of capture time, and
TCP's TIME_WAIT (120 s) keeps ~305k entries alive once the capture is longer than ~2 min (3.9M packets):
more than the host's default nf_conntrack_max (262144). The table is then genuinely full: a real kernel
would drop new connections too (here ~1.6M packets of 10M), which changes the workload. So by default
("auto") captures above 3M packets run on a host with nf_conntrack_max = 524288 (noted in the output);
`--ct-max host` keeps the host as is. (A full table used to cost whole-table scans per new connection:
250k packets took 135-393 s; since 644e54a + 6026be4 it runs at 1-2.5 M packets/s, conntrack alone.)

Every row is one child process (`bench.py --child ...`; ru_maxrss = that row's peak RSS). Neither the
imports nor the numba cache load are timed: each child first makes one untimed pass of its work over a
200-packet capture (loading the cache costs ~0.7 s per process here: that is in the startup row). The page
cache is warm (`cat` twice), the numba cache too (one small e2e per ruleset first):

  cat               `cat FILE > /dev/null` from the page cache: the I/O bound
  dpkt framing      dpkt.pcap.Reader loop over the file
  ingest            iter_capture over the file (mmap, framing + decode), 1M-packet chunks
  capture sha256    the capture digest summary.json carries (api._sha256_file: sha256 from a memory map),
                    on one CPU; simulate_to computes it in a thread beside the replay
  conntrack alone   bench_engine.ct_loop_fn (conntrack in + confirm per packet, no rules), fed the
                    iter_capture chunks with one table carried over; only the conntrack calls are timed
  replay, R rules   ingest + driver.Replayer (conntrack, rules, NAT, flows), no tables: feed() every
                    chunk, finish(); with the decode-ahead thread (overlap), without it, and on one CPU.
                    "One-CPU ceiling": n / (replay only on one CPU + capture sha256): what an end to end
                    on one core could reach if building and writing every table cost nothing
  e2e, R rules      analysis.api.simulate_to: replay + packets/events Parquet per chunk + rules/flows/
                    summary, with the decode-ahead thread (overlap) and without it; "notable packets":
                    packet_rows="notable" (`run --packets notable`: only the not-accepted / INVALID rows
                    in packets.parquet, everything else as e2e)
  kernel            bench_kernel.py (root + tcpreplay): the real kernel forwarding the first 200k packets
                    through a firewall namespace with the 50-rule ruleset, tcpreplay --topspeed; median
                    over rounds; cross-checked against nfreplay's forwarded / rejected counts of the slice
  startup           `nfreplay run` on samples/forward_blocked_service: warm numba cache (min of 3) and
                    empty NUMBA_CACHE_DIR (compiles everything: 2-3 min here); and README's main job on it
                    (`run --out DIR --report FILE`), warm (min of 3)
  --rss-20m         `nfreplay run CAP --out DIR` (streams, as the CLI does above 256 MiB) on a 20M-packet
                    capture: peak RSS (ru_maxrss) and the peak anonymous / file-backed split, sampled from
                    /proc/PID/status (the memory-mapped capture's pages count in RSS as file-backed)

Every row gets ratios against the cat rate, dpkt's framing and the kernel of the same run, and CPU/wall
(cores used by the timed work). Rows of captures up to 2M packets run --repeat times (default 3),
interleaved, and report the best (the run least disturbed by other load; all walls are in the JSON);
bigger captures run once (--repeat-large). "All cores" gives two ratios: overlap / no overlap (the
decode-ahead thread alone; with the default 1M-packet chunks a 1M capture is a single chunk, nothing to
overlap, so the 10M figure is the one that counts), and the e2e row against the same run pinned to one CPU
(`e2e ..., one CPU`: sched_setaffinity in the child), i.e. what the second core buys end to end (the
table-writing, digest and decode-ahead threads beside the replay). The machine is shared: only ratios within one run mean anything; the
load average before and after is reported. A full run (1M + 10M, 2 rulesets, kernel, empty-cache startup,
--rss-20m) took 12 min here (4 of them the empty-cache startup), once the captures existed:

    .venv/bin/python bench/bench.py --packets 1000000,10000000 --rss-20m \
        --json bench/results/bench.json --markdown bench/results/bench.md
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
PY = str(ROOT / ".venv" / "bin" / "python")
NFREPLAY = str(ROOT / ".venv" / "bin" / "nfreplay")
GiB = 2 ** 30
CHUNK = 1_000_000


def big_ruleset() -> str:
    from bench_engine import ruleset_text

    lines = ruleset_text().splitlines()
    k = lines.index(next(x for x in lines if x.startswith("-A lan_out -p tcp -m multiport")))
    extra = [f"-A lan_out -s 10.{1 + j // 250}.{j % 250}.0/24 -p tcp -m tcp --dport {1000 + j} -j DROP"
             for j in range(950)]
    return "\n".join(lines[:k] + extra + lines[k:]) + "\n"


CT_MAX_AUTO = 524_288  # host nf_conntrack_max for captures above AUTO_ABOVE packets (--ct-max auto)
AUTO_ABOVE = 3_000_000


def host(ct_max: int = 0) -> dict:
    """bench_engine.HOST, with sysctl net.netfilter.nf_conntrack_max = ct_max when ct_max > 0."""
    from bench_engine import HOST

    h = json.loads(json.dumps(HOST))
    if ct_max > 0:
        h["sysctls"] = {**h.get("sysctls", {}), "net.netfilter.nf_conntrack_max": int(ct_max)}
    return h


def ct_max_for(n: int, opt: str) -> int:
    """--ct-max: auto = the host's default (262144) up to AUTO_ABOVE packets, else CT_MAX_AUTO; host = the
    host as is; or a number. 0 = no sysctl added."""
    if opt == "host":
        return 0
    if opt == "auto":
        return CT_MAX_AUTO if n > AUTO_ABOVE else 0
    return int(opt)


def ruleset(rsn: str) -> str:
    from bench_engine import ruleset_text

    return {"50": ruleset_text, "1000": big_ruleset}[rsn]()


# ------------------------------------------------------------------ child side (one row per process)
def _child(what: str, path: str, arg: str, ctmax: str = "0", warm: bool = True) -> dict:
    """Runs in the child process: imports and one untimed pass over a 200-packet capture first (loads the
    numba cache: that one-time cost is the startup row's), then the timed work. A WHAT ending in "_1cpu" runs
    on one CPU (sched_setaffinity before any thread starts: every thread of the row shares that core)."""
    out: dict = {}
    if what.endswith("_1cpu"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
        what = what[:-len("_1cpu")]
    if warm and what not in ("dpkt", "digest"):
        from bench_engine import write_capture

        # e2e: 100k packets, so that the warm-up also writes a table big enough for the Numba Parquet
        # writer (parquet.FAST_MIN_ROWS) and loads its kernels; that one-time load is the "writer_load" figure
        _child(what, str(write_capture(100_000 if what.startswith("e2e") else 200)), arg, ctmax, warm=False)
    elif what == "dpkt":
        import dpkt  # noqa: F401  (imported before ru0: the import is not part of the timed work)
    elif what == "digest":
        import nfreplay.analysis.api  # noqa: F401  (as dpkt's)
    ru0 = resource.getrusage(resource.RUSAGE_SELF)
    if what == "dpkt":
        import dpkt

        t = time.perf_counter()
        n = 0
        with open(path, "rb") as f:
            for _ts, _buf in dpkt.pcap.Reader(f):
                n += 1
        wall = time.perf_counter() - t
    elif what == "ingest":
        from nfreplay.replay.ingest import iter_capture

        t = time.perf_counter()
        n = 0
        for c in iter_capture(path, chunk_packets=CHUNK):
            n += len(c.packets.ts_ns)
        wall = time.perf_counter() - t
    elif what == "ct":
        from bench_engine import ct_loop_fn

        from nfreplay.replay import conntrack as ct
        from nfreplay.replay.ingest import iter_capture

        loop = ct_loop_fn()
        prm = ct.make_params(host(int(ctmax))["sysctls"], assume_good_checksums=True)
        tab = ct.new_table(int(prm.ct_max) + 16, CHUNK + 16)
        ev = ct.new_event_log(1 << 16)
        wall = 0.0
        n = 0
        first = True
        for c in iter_capture(path, chunk_packets=CHUNK):
            pk = c.packets
            k = len(pk.ts_ns)
            if first:  # compile / load the cache on a throwaway table (not timed), as bench_engine.bench_ct
                loop(ct.new_table(1024, 1024), prm, pk, ct.new_event_log(1 << 12), 0, min(k, 500))
                first = False
            tab = ct.grow_flows(tab, k)
            t = time.perf_counter()
            loop(tab, prm, pk, ev, 0, k)
            wall += time.perf_counter() - t
            n += k
        out["flows"] = ct.n_flows(tab)
    elif what in ("replay", "replay_noovl"):
        from nfreplay.analysis import export
        from nfreplay.replay.driver import Replayer
        from nfreplay.replay.host import load_host
        from nfreplay.replay.ingest import iter_capture
        from nfreplay.replay.rules import load_ruleset

        rs = load_ruleset(ruleset(arg), fmt="iptables")
        hm = load_host(host(int(ctmax)))
        t = time.perf_counter()
        rp = Replayer(rs, hm, assume_good_checksums=True)
        chunks = iter_capture(path, chunk_packets=CHUNK)
        if what == "replay":
            chunks = export._decode_ahead(chunks)  # what simulate_to(overlap=True) does
        n = 0
        for c in chunks:
            n += len(rp.feed(c).packets.ts_ns)
        ro = rp.finish()
        wall = time.perf_counter() - t
        out["flows"] = len(next(iter(ro.flows.values()), ())) if isinstance(ro.flows, dict) else None
    elif what in ("e2e", "e2e_noovl", "e2e_notable"):
        from nfreplay.analysis.api import simulate_to
        from nfreplay.replay.rules import load_ruleset

        rs = load_ruleset(ruleset(arg), fmt="iptables")
        with tempfile.TemporaryDirectory(dir=ROOT / "bench" / "data") as d:
            t = time.perf_counter()
            res, _ = simulate_to(path, rs, host(int(ctmax)), d, assume_good_checksums=True,
                                 overlap=(what != "e2e_noovl"), chunk_packets=CHUNK,
                                 packet_rows="notable" if what == "e2e_notable" else "all")
            wall = time.perf_counter() - t
            n = res.summary["packets"]
            out["outcomes"] = dict(res.summary["outcomes"])
            out["out_mib"] = sum(p.stat().st_size for p in Path(d).iterdir()) / 2 ** 20
    elif what == "digest":
        # summary.json's capture digest (contracts: digests.capture): sha256 of the file from a memory map,
        # as simulate_to computes it beside the replay (its own thread there)
        from nfreplay.analysis.api import _sha256_file

        t = time.perf_counter()
        _sha256_file(path)
        wall = time.perf_counter() - t
        n = int(arg)
    elif what == "writer_load":
        # the one-time Numba cache load of the Parquet writer's kernels: the first large packets table
        # written by a process against the second (same table, same kernels)
        from nfreplay.analysis import export, frames
        from nfreplay.analysis.api import simulate

        res = simulate(path, ruleset(arg), host(int(ctmax)), assume_good_checksums=True)
        pt = frames.packets_table(res.output, 0, address_dictionaries=True)
        walls = []
        for _ in range(2):
            with tempfile.TemporaryDirectory(dir=ROOT / "bench" / "data") as d:
                t = time.process_time()
                w = export._TableAppender(Path(d) / "p.parquet", "parquet", frames.PACKET_NULLABLE,
                                          as_text=frames.ADDRESS_COLUMNS)
                w.append(pt)
                w.close()
                walls.append(time.process_time() - t)
        out.update(first_s=walls[0], again_s=walls[1], writer=type(w._w).__name__)
        n, wall = len(pt), walls[0] - walls[1]
    else:
        raise SystemExit(f"unknown child {what!r}")
    ru = resource.getrusage(resource.RUSAGE_SELF)
    # CPU seconds of the timed work / wall = cores used (not for ct: its wall times only the ct calls)
    cpu = ru.ru_utime + ru.ru_stime - (ru0.ru_utime + ru0.ru_stime) if warm and what not in ("ct", "writer_load") else None
    return {"n": n, "wall": wall, "rss_mib": ru.ru_maxrss / 1024, "cpu_s": cpu, **out}


def child(what: str, path: Path, arg: str = "", ct_max: int = 0, env=None) -> dict:
    r = subprocess.run([PY, __file__, "--child", what, str(path), arg, str(ct_max)], capture_output=True, text=True,
                       env=env,
                       cwd=ROOT)
    if r.returncode:
        raise RuntimeError(f"child {what} {path.name} {arg}: {r.stderr[-3000:]}")
    return json.loads(r.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------ parent side
def cat_rate(path: Path, n: int) -> dict:
    for _ in range(2):  # warm the page cache
        subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        subprocess.run(["cat", str(path)], stdout=subprocess.DEVNULL, check=True)
        best = min(best, time.perf_counter() - t)
    return {"n": n, "wall": best, "rss_mib": None}


def startup(cache_dir: str | None, full: bool = False) -> float:
    """Wall seconds of `nfreplay -q run` on the sample (--json); full: README's main job instead, which also
    writes the tables (--out) and the HTML report (--report)."""
    s = ROOT / "samples" / "forward_blocked_service"
    env = dict(os.environ)
    env.pop("NUMBA_DISABLE_JIT", None)
    # a user's Python writes and reuses .pyc files: warm means those too (this sandbox sets
    # PYTHONDONTWRITEBYTECODE, which alone adds ~0.2 s of source compiling to every start)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if cache_dir is not None:
        env["NUMBA_CACHE_DIR"] = cache_dir
    cmd = [NFREPLAY, "-q", "run", str(s / "capture.pcap"), "-r", str(s / "rules.ipt"), "--host", str(s / "host.toml"),
           "--json"]
    with tempfile.TemporaryDirectory(prefix="nfb-startup-") as d:
        if full:
            cmd = cmd[:-1] + ["--out", str(Path(d) / "out"), "--report", str(Path(d) / "report.html")]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True, env=env)
        return time.perf_counter() - t


def _status(pid: int) -> dict:
    out = {}
    try:
        for line in open(f"/proc/{pid}/status"):
            k, _, v = line.partition(":")
            if k in ("VmRSS", "RssAnon", "RssFile", "RssShmem", "VmHWM"):
                out[k] = int(v.split()[0]) / 1024  # MiB
    except (FileNotFoundError, ProcessLookupError):
        pass
    return out


def rss_run(path: Path, n: int, ct_max: int = 0, log=print) -> dict:
    """`nfreplay run CAPTURE --out DIR` (streaming) with the 50-rule ruleset: peak RSS from wait4's
    ru_maxrss, and peak anonymous / file-backed RSS sampled from /proc/PID/status every 0.25 s."""
    from bench_engine import ruleset_text

    with tempfile.TemporaryDirectory(dir=ROOT / "bench" / "data", prefix="rss-") as d:
        rules, hostf = Path(d) / "rules.ipt", Path(d) / "host.json"
        rules.write_text(ruleset_text())
        hostf.write_text(json.dumps(host(ct_max)))
        cmd = [NFREPLAY, "-q", "run", str(path), "-r", str(rules), "--host", str(hostf), "--out", str(Path(d) / "out"),
               "--assume-good-checksums", "--json"]
        samples = []
        t0 = time.perf_counter()
        with open(Path(d) / "stdout.json", "w") as so, open(Path(d) / "stderr.txt", "w") as se:
            p = subprocess.Popen(cmd, stdout=so, stderr=se, cwd=ROOT)
            while True:
                st = _status(p.pid)
                if st:
                    samples.append((round(time.perf_counter() - t0, 2), st.get("RssAnon", 0.0), st.get("RssFile", 0.0)))
                try:
                    pid, status, ru = os.wait4(p.pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if pid:
                    p.returncode = os.waitstatus_to_exitcode(status)
                    break
                time.sleep(0.25)
        wall = time.perf_counter() - t0
        if p.returncode:
            raise RuntimeError(f"nfreplay run failed: {(Path(d) / 'stderr.txt').read_text()[-2000:]}")
        summ = json.loads((Path(d) / "stdout.json").read_text())
        out_mib = sum(f.stat().st_size for f in (Path(d) / "out").iterdir()) / 2 ** 20
    peak = ru.ru_maxrss / 1024
    anon = max((s[1] for s in samples), default=0.0)
    filep = max((s[2] for s in samples), default=0.0)
    step = max(1, len(samples) // 12)
    res = {"packets": n, "file_gib": path.stat().st_size / GiB, "wall": wall, "pps": n / wall, "peak_rss_mib": peak,
           "peak_anon_mib": anon, "peak_file_mib": filep, "target_mib": 2048, "ok": peak < 2048, "ct_max": ct_max or None,
           "flows": summ.get("flows"),
           "outcomes": summ.get("outcomes"), "out_mib": out_mib, "timeline_s_anon_file_mib": samples[::step]}
    log(f"rss {n:,} packets: peak RSS {peak:,.0f} MiB (anon peak {anon:,.0f}, file-backed peak {filep:,.0f}), "
        f"{wall:.1f} s, {n / wall / 1e6:.3f} M/s")
    return res


def git_state() -> dict:
    """HEAD and the uncommitted files under nfreplay/ (others may be editing the engine during the run)."""
    def g(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=ROOT).stdout.rstrip("\n")

    return {"head": g("rev-parse", "--short", "HEAD"), "subject": g("log", "-1", "--format=%s")[:120],
            "dirty_nfreplay": [ln[3:] for ln in g("status", "--porcelain", "--", "nfreplay").splitlines()]}


def machine() -> dict:
    info = {}
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            k, _, v = line.partition(":")
            if k.strip() in ("Model name", "CPU(s)", "Thread(s) per core", "Core(s) per socket", "Hypervisor vendor"):
                info[k.strip()] = v.strip()
    except OSError:
        pass
    mem = next((int(x.split()[1]) for x in open("/proc/meminfo") if x.startswith("MemTotal")), 0)
    return {"cpu": info.get("Model name", platform.processor()), "cpus": info.get("CPU(s)", str(os.cpu_count())),
            "threads_per_core": info.get("Thread(s) per core"), "hypervisor": info.get("Hypervisor vendor"),
            "mem_gib": round(mem / 2 ** 20, 1), "kernel": platform.release(), "python": platform.python_version()}


def fmt_pps(x: float) -> str:
    return f"{x / 1e6:.2f} M/s" if x >= 1e6 else f"{x / 1e6:.3f} M/s"


def ratios(rows: dict, kernel_pps: float | None) -> None:
    cat, dp = rows["cat (page cache)"]["pps"], rows["dpkt framing"]["pps"]
    for v in rows.values():
        v["vs_cat"] = v["pps"] / cat
        v["vs_dpkt"] = v["pps"] / dp
        v["vs_kernel"] = v["pps"] / kernel_pps if kernel_pps else None


def table_lines(rows: dict, kernel_pps: float | None, md: bool) -> list[str]:
    hdr = ["stage", "packets/s", "wall", "CPU/wall", "peak RSS", "vs cat", "vs dpkt framing", "vs kernel"]
    out = []
    body = []
    for k, v in rows.items():
        cw = v.get("cpu_s")
        body.append([k, fmt_pps(v["pps"]), f"{v['wall']:.2f} s", "-" if cw is None or not v["wall"] else
                     f"{cw / v['wall']:.2f}",
                     "-" if v.get("rss_mib") is None else f"{v['rss_mib']:,.0f} MiB",
                     f"{v['vs_cat']:.3f}", f"{v['vs_dpkt']:.2f}",
                     "-" if v.get("vs_kernel") is None else f"{v['vs_kernel']:.2f}"])
    if md:
        out.append("| " + " | ".join(hdr) + " |")
        out.append("| " + " | ".join(["---"] * len(hdr)) + " |")
        out += ["| " + " | ".join(r) + " |" for r in body]
    else:
        w = [max(len(str(r[i])) for r in [hdr] + body) for i in range(len(hdr))]
        out.append("  ".join(h.ljust(w[i]) if i == 0 else h.rjust(w[i]) for i, h in enumerate(hdr)))
        out += ["  ".join(str(c).ljust(w[i]) if i == 0 else str(c).rjust(w[i]) for i, c in enumerate(r)) for r in body]
    return out


def report(res: dict, md: bool) -> str:
    L = []
    m = res["machine"]
    L.append(f"Machine: {m['cpu']}, {m['cpus']} cpus ({m.get('hypervisor') or 'bare metal'} guest), "
             f"{m['mem_gib']} GiB, Linux {m['kernel']}, Python {m['python']}; load average before "
             f"{' '.join(f'{x:.2f}' for x in res['load_before'])}, after "
             f"{' '.join(f'{x:.2f}' for x in res.get('load_after', ()))}.")
    k = res.get("kernel") or {}
    kp = k.get("pps")
    if "skipped" in k:
        L.append(f"Kernel baseline skipped: {k['skipped']}.")
    elif kp:
        c = k["configs"]
        L.append(f"Kernel baseline ({k['kernel']}, {k['iptables']}, {k['tcpreplay']}): first {k['slice_packets']:,} "
                 f"packets, tcpreplay --topspeed through the firewall namespace, rounds: {k['rounds']}; "
                 f"conntrack + 50 rules + forwarding {fmt_pps(c['fwd_ct_50']['pps_median'])} median "
                 f"(min {fmt_pps(c['fwd_ct_50']['pps_min'])}); injection alone (raw PREROUTING drop) "
                 f"{fmt_pps(c['inject_drop']['pps_median'])} median.")
        if k.get("check"):
            ch = k["check"]
            L.append(f"Same slice, kernel vs nfreplay: forwarded {ch['kernel_forwarded']:,} vs "
                     f"{ch['nfreplay_forwarded']:,}, rejected {ch['kernel_rejected']:,} vs {ch['nfreplay_rejected']:,}.")
    for n, s in res["sizes"].items():
        L.append("")
        L.append(f"{int(n):,} packets ({s['file_mib']:,.0f} MiB pcap, {s['chunk']:,}-packet chunks"
                 + (f", host nf_conntrack_max {s['ct_max']:,}" if s.get("ct_max") else "")
                 + (f"; best of {s['repeats']} interleaved runs per row" if s.get("repeats", 1) > 1 else "") + "):")
        L.append("")
        L += table_lines(s["rows"], kp, md)
        outs = [(k2, v["out_mib"]) for k2, v in s["rows"].items() if v.get("out_mib") is not None]
        if outs:
            L.append("")
            L.append("Tables written (--out): " + ", ".join(f"{k2} {m:,.0f} MiB" for k2, m in outs) + ".")
        if s.get("one_cpu_ceiling_pps"):
            L.append("")
            L.append("One-CPU ceiling with free tables (replay only on one CPU + the capture sha256, as if writing every "
                     "table cost nothing): " + ", ".join(f"{k2} {fmt_pps(v)}" for k2, v in s["one_cpu_ceiling_pps"].items())
                     + " (target end to end: 2 M/s).")
        if s.get("speedup"):
            L.append("")
            L.append("All cores (decode-ahead thread: overlap / no overlap; the whole run: all CPUs / one CPU): "
                     + ", ".join(
                f"{k2} {v:.2f}x" for k2, v in s["speedup"].items()) + ".")
    st = res.get("startup", {})
    if st:
        L.append("")
        L.append(f"`nfreplay run` on the sample: warm cache {st['warm_s']:.2f} s (min of {len(st['warm_runs'])}; "
                 f"target < 2 s: {'met' if st['warm_s'] < 2 else 'NOT met'})"
                 + (f", empty cache {st['cold_s']:.1f} s." if "cold_s" in st else "."))
        if "warm_full_s" in st:
            L.append(f"README's main job on the sample (`run --out DIR --report FILE`: also the Parquet tables and the "
                     f"HTML report with its matplotlib figures), warm cache: {st['warm_full_s']:.2f} s (min of "
                     f"{len(st['warm_full_runs'])}).")
        if "writer_load_s" in st:
            L.append(f"Once per process, the first table of at least {st.get('fast_min_rows', 65536):,} rows loads the "
                     f"Numba Parquet writer's kernels from the cache: +{st['writer_load_s']:.2f} s CPU (min of "
                     f"{len(st['writer_load_runs'])}; not in the rows above, whose warm-up pass loads them, as it loads "
                     "the engine's).")
    r = res.get("rss_20m")
    if r:
        L.append("")
        L.append(f"Peak RSS, `nfreplay run --out` on {r['packets']:,} packets ({r['file_gib']:.1f} GiB): "
                 f"{r['peak_rss_mib']:,.0f} MiB (target < 2048 MiB: {'met' if r['ok'] else 'NOT met'}); peak anonymous "
                 f"{r['peak_anon_mib']:,.0f} MiB, peak file-backed (the mapped capture) {r['peak_file_mib']:,.0f} MiB; "
                 f"{r['wall']:.0f} s, {fmt_pps(r['pps'])}.")
    return "\n".join(L)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--packets", default="1000000",
                    help="comma-separated capture sizes, e.g. 1000000,10000000 (default 1000000)")
    ap.add_argument("--rulesets", default="50,1000", help="comma-separated: 50 and/or 1000 (default both)")
    ap.add_argument("--no-cold", action="store_true", help="skip the empty-NUMBA_CACHE_DIR startup (2-3 min)")
    ap.add_argument("--no-kernel", action="store_true", help="skip the kernel baseline")
    ap.add_argument("--kernel-slice", type=int, default=200_000)
    ap.add_argument("--kernel-rounds", type=int, default=5)
    ap.add_argument("--rss-20m", action="store_true", help="peak RSS of `nfreplay run --out` on a 20M capture")
    ap.add_argument("--rss-packets", type=int, default=20_000_000, help=argparse.SUPPRESS)
    ap.add_argument("--json", type=Path, help="write all figures here")
    ap.add_argument("--markdown", type=Path, help="write the report with markdown tables here")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs per row for captures up to 2M packets, interleaved; the best is reported (default 3)")
    ap.add_argument("--repeat-large", type=int, default=1, help="runs per row above 2M packets (default 1)")
    ap.add_argument("--ct-max", default="auto",
                    help="host nf_conntrack_max: auto (default: the host's 262144 up to 3M packets, 524288 above: "
                         "this traffic keeps ~305k entries alive: a full table drops new connections), host (as is), or N")
    ap.add_argument("--child", nargs=4, metavar=("WHAT", "PATH", "ARG", "CTMAX"), help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        print(json.dumps(_child(*a.child)))
        return 0
    from bench_engine import write_capture

    sizes = [int(x.replace("_", "")) for x in a.packets.split(",") if x.strip()]
    rsns = [x.strip() for x in a.rulesets.split(",") if x.strip()]
    assert all(r in ("50", "1000") for r in rsns), rsns
    t_all = time.perf_counter()
    for n in sizes + ([a.rss_packets] if a.rss_20m else []):
        t = time.perf_counter()
        p = write_capture(n)
        print(f"capture {p.name}: {p.stat().st_size / 2 ** 20:,.0f} MiB ({time.perf_counter() - t:.1f} s)", flush=True)
    res: dict = {"machine": machine(), "load_before": os.getloadavg(), "date": time.strftime("%Y-%m-%d %H:%M"),
                 "argv": sys.argv[1:], "git": git_state(), "sizes": {}}
    print(f"machine {res['machine']}; load before {res['load_before']}", flush=True)
    warm = write_capture(100_000)
    for rsn in rsns:
        child("e2e", warm, rsn)  # numba cache warm for everything below (cache load stays in each row)
    # the kernel first (its slice is small; the nfreplay rows below compare against it)
    if a.no_kernel:
        res["kernel"] = {"skipped": "--no-kernel"}
    else:
        from bench_kernel import kernel_baseline

        res["kernel"] = kernel_baseline(a.kernel_slice, a.kernel_rounds, log=lambda s: print(s, flush=True))
        if "skipped" in res["kernel"]:
            print(f"kernel baseline skipped: {res['kernel']['skipped']}", flush=True)
        else:
            sl = write_capture(a.kernel_slice)
            oc = child("e2e", sl, "50")["outcomes"]
            last = res["kernel"]["configs"]["fwd_ct_50"]["runs"][-1]
            res["kernel"]["check"] = {"kernel_forwarded": last["forward_accepted"], "kernel_rejected": last["rejected"],
                                      "nfreplay_forwarded": oc.get("forwarded", 0),
                                      "nfreplay_rejected": oc.get("rejected", 0), "nfreplay_outcomes": oc}
            print(f"kernel {res['kernel']['pps'] / 1e3:.1f} k/s (median); check {res['kernel']['check']}", flush=True)
    kp = res["kernel"].get("pps")
    for n in sizes:
        path = write_capture(n)
        cm = ct_max_for(n, a.ct_max)
        if cm:
            print(f"  host sysctl net.netfilter.nf_conntrack_max = {cm:,}", flush=True)
        specs = [("dpkt framing", "dpkt", "", 0), ("ingest (iter_capture)", "ingest", "", 0),
                 ("capture sha256 (digest), one CPU", "digest_1cpu", str(n), 0), ("conntrack alone", "ct", "", cm)]
        for rsn in rsns:
            specs += [(f"replay only, {rsn} rules, overlap", "replay", rsn, cm),
                      (f"replay only, {rsn} rules, no overlap", "replay_noovl", rsn, cm),
                      (f"replay only, {rsn} rules, one CPU", "replay_noovl_1cpu", rsn, cm),
                      (f"e2e {rsn} rules, overlap", "e2e", rsn, cm),
                      (f"e2e {rsn} rules, no overlap", "e2e_noovl", rsn, cm),
                      (f"e2e {rsn} rules, one CPU", "e2e_1cpu", rsn, cm)]
            if rsn == "50":  # run --packets notable: the packets table holds the not-accepted / INVALID rows
                specs += [(f"e2e {rsn} rules, notable packets", "e2e_notable", rsn, cm),
                          (f"e2e {rsn} rules, notable packets, one CPU", "e2e_notable_1cpu", rsn, cm)]
        reps = a.repeat if n <= 2_000_000 else a.repeat_large
        runs: dict = {name: [] for name, *_ in specs}
        rows: dict = {"cat (page cache)": cat_rate(path, n)}
        for rep in range(reps):  # interleaved: load drift hits every row alike
            for name, what, arg, c in specs:
                r = child(what, path, arg, c)
                runs[name].append(r)
                print(f"  {n:>11,} {rep + 1}/{reps} {name:<36} {r['n'] / r['wall'] / 1e6:8.3f} M/s  wall "
                      f"{r['wall']:8.2f} s  rss {r['rss_mib'] or 0:7.0f} MiB", flush=True)
        for name, rr in runs.items():  # best of the repeats (least disturbed by the other load), with the spread
            best = dict(min(rr, key=lambda r: r["wall"]))
            best["walls"] = [r["wall"] for r in rr]
            rows[name] = best
        for r in rows.values():
            r["pps"] = r["n"] / r["wall"] if r["wall"] else 0.0
        for r in rows.values():
            if r.get("n") != n:
                print(f"  WARNING: a row counted {r.get('n')} packets, not {n}", flush=True)
        ratios(rows, kp)
        sp = {}
        for rsn in rsns:
            for kind in ("replay only", "e2e"):
                a_ = rows[f"{kind}, {rsn} rules, overlap" if kind != "e2e" else f"e2e {rsn} rules, overlap"]
                b_ = rows[f"{kind}, {rsn} rules, no overlap" if kind != "e2e" else f"e2e {rsn} rules, no overlap"]
                sp[f"{kind} {rsn} rules"] = a_["pps"] / b_["pps"]
            one = rows.get(f"e2e {rsn} rules, one CPU")
            if one and one["pps"]:
                sp[f"e2e {rsn} rules, all CPUs / one CPU"] = rows[f"e2e {rsn} rules, overlap"]["pps"] / one["pps"]
        # the one-core ceiling of this engine: replay (ingest + decode + engine, no tables) plus the capture
        # digest summary.json needs, both on one CPU, as if every table were free
        ceil = {}
        dg = rows.get("capture sha256 (digest), one CPU")
        for rsn in rsns:
            rp = rows.get(f"replay only, {rsn} rules, one CPU")
            if dg and rp and rp["wall"] + dg["wall"] > 0:
                ceil[f"{rsn} rules"] = n / (rp["wall"] + dg["wall"])
        res["sizes"][str(n)] = {"file_mib": path.stat().st_size / 2 ** 20, "chunk": CHUNK, "rows": rows, "speedup": sp,
                                "one_cpu_ceiling_pps": ceil,
                                "repeats": reps,
                                "ct_max": cm or None}
    warm_runs = [startup(None) for _ in range(3)]
    res["startup"] = {"warm_s": min(warm_runs), "warm_runs": warm_runs}
    print(f"startup warm {warm_runs}", flush=True)
    full_runs = [startup(None, full=True) for _ in range(3)]
    res["startup"].update(warm_full_s=min(full_runs), warm_full_runs=full_runs)
    print(f"startup warm, --out + --report {full_runs}", flush=True)
    wl = [child("writer_load", warm, "50") for _ in range(3)]
    res["startup"]["writer_load_s"] = min(r["wall"] for r in wl)
    res["startup"]["writer_load_runs"] = wl
    from nfreplay.analysis.parquet import FAST_MIN_ROWS

    res["startup"]["fast_min_rows"] = FAST_MIN_ROWS
    print(f"Parquet writer kernels load {res['startup']['writer_load_s']:.3f} s", flush=True)
    if not a.no_cold:
        with tempfile.TemporaryDirectory(prefix="nfb-numba-cold-") as d:
            res["startup"]["cold_s"] = startup(d)
        print(f"startup cold {res['startup']['cold_s']:.1f} s", flush=True)
    if a.rss_20m:
        res["rss_20m"] = rss_run(write_capture(a.rss_packets), a.rss_packets, ct_max_for(a.rss_packets, a.ct_max),
                                 log=lambda s: print(s, flush=True))
    res["load_after"] = os.getloadavg()
    res["total_s"] = time.perf_counter() - t_all
    print()
    print(report(res, md=False))
    if a.json:
        a.json.write_text(json.dumps(res, indent=1, default=str))
    if a.markdown:
        a.markdown.write_text(report(res, md=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Rules-engine benchmark (a script, not a test): eval_chain packets/s for 10/100/1000-rule rulesets.

    .venv/bin/python bench/bench_rules.py [--packets 1000000] [--sizes 10,100,1000] [--compile-time]

Deterministic (seed 1) synthetic match contexts (the int64[Field.N_FIELDS] rows the pipeline fills) for
`--packets` IPv4 packets, and iptables rulesets of the host-firewall / kube-proxy / ufw kind: conntrack
RELATED,ESTABLISHED accept first, `-i lo` accept, INVALID drop, ICMP echo with `-m limit`, then
per-service accepts (tcp/udp ports, destination addresses, input interfaces, multiport lists, source
subnets, ipset matches), an ipset blocklist drop, a final DROP. Two packet mixes: `mixed` (60 %
ESTABLISHED, 40 % NEW to open and closed ports) and `new` (every packet NEW: the whole walk).

Reported per size and mix: packets/s of a jitted loop calling `chains.eval_chain` once per packet (as
the pipeline does per base chain), and the ratio to the baseline measured in the same run: the same
loop over an empty INPUT chain (policy only). On a shared machine only ratios within one run mean
something; the load average is printed before and after.

`--compile-time`: CPU seconds to compile eval_chain (and what it calls) on a fresh NUMBA_CACHE_DIR,
measured in a child process.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numba  # noqa: E402
import numpy as np  # noqa: E402

from nfreplay.replay import chains  # noqa: E402
from nfreplay.replay.codes import (  # noqa: E402
    PRESENT_CT,
    PRESENT_ICMP,
    PRESENT_ICMP_ID,
    PRESENT_IIF,
    PRESENT_PORTS,
    PRESENT_TCP,
    Field,
)
from nfreplay.replay.host import load_host  # noqa: E402
from nfreplay.replay.rules import model as m  # noqa: E402
from nfreplay.replay.rules.compile import compile_ruleset  # noqa: E402
from nfreplay.replay.rules.iptables import parse_iptables  # noqa: E402

HOST = {"interfaces": [{"name": "eth0", "addresses": ["203.0.113.1/24"]},
                       {"name": "eth1", "addresses": ["192.168.1.1/24"]},
                       {"name": "docker0", "addresses": ["172.17.0.1/16"]}],
        "routes": [{"prefix": "0.0.0.0/0", "interface": "eth0", "via": "203.0.113.254"}]}
V4 = 0xFFFF << 32
ALLOW = 0x0A140000  # 10.20.0.0/16: the "allow" ipset's addresses
BLOCK = 0xC6336400  # 198.51.100.0/24: the blocklist


def _ip(a: int) -> str:
    return f"{a >> 24 & 255}.{a >> 16 & 255}.{a >> 8 & 255}.{a & 255}"


def make_ruleset(n: int):
    """An INPUT chain of exactly n rules (n >= 8): the services get ports 1000, 1003, 1006, ..."""
    head = ["-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            "-A INPUT -i lo -j ACCEPT",
            "-A INPUT -m conntrack --ctstate INVALID -j DROP",
            "-A INPUT -p icmp --icmp-type echo-request -m limit --limit 100/sec --limit-burst 50 -j ACCEPT",
            "-A INPUT -m set --match-set blocklist src -j DROP"]
    tail = ["-A INPUT -p tcp -j REJECT --reject-with tcp-reset", "-A INPUT -j DROP"]
    svc = []
    ports = []
    for k in range(n - len(head) - len(tail)):
        p = 1000 + 3 * k
        kind = k % 6
        if kind == 0:
            svc.append(f"-A INPUT -d {_ip(0x0A600000 + k)}/32 -p tcp -m tcp --dport {p} -j ACCEPT")
        elif kind == 1:
            svc.append(f"-A INPUT -i eth1 -p udp -m udp --dport {p} -j ACCEPT")
        elif kind == 2:
            svc.append(f"-A INPUT -p tcp -m multiport --dports {p},{p + 1},{p + 2} -j ACCEPT")
        elif kind == 3:
            svc.append(f"-A INPUT -s 192.168.{k % 250}.0/24 -p tcp -m tcp --dport {p} -j ACCEPT")
        elif kind == 4:
            svc.append(f"-A INPUT -p tcp -m tcp --dport {p} -m set --match-set allow src -j ACCEPT")
        else:
            svc.append(f"-A INPUT -i eth0 -p tcp -m tcp --dport {p} -m comment --comment svc{k} -j ACCEPT")
        ports.append((p, kind, k))
    text = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n" + \
        "\n".join(head + svc + tail) + "\nCOMMIT\n"
    return parse_iptables(text, source=f"bench{n}"), ports


def ipsets():
    allow = m.SetDef("allow", (Field.SRC,), tuple(((V4 | ALLOW + 16 * i, V4 | ALLOW + 16 * i + 7),)
                                                   for i in range(256)))
    block = m.SetDef("blocklist", (Field.SRC,), tuple(((V4 | BLOCK + i, V4 | BLOCK + i),) for i in range(0, 256, 2)))
    return (allow, block)


def make_packets(n: int, ports, mix: str, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """ctx rows for n packets and their IP lengths."""
    rng = np.random.default_rng(seed)
    c = np.zeros((n, int(Field.N_FIELDS)), np.int64)
    c[:, Field.NFPROTO] = 2
    c[:, Field.TTL] = 64
    est = rng.random(n) < (0.6 if mix == "mixed" else 0.0)
    kind = rng.integers(0, 10, n)  # for NEW packets: 0-5 open service, 6-7 closed tcp, 8 udp closed, 9 icmp
    src = 0x0A000000 + rng.integers(0, 1 << 24, n)
    src = np.where(rng.random(n) < 0.3, ALLOW + rng.integers(0, 4096, n), src)
    src = np.where(rng.random(n) < 0.05, BLOCK + rng.integers(0, 256, n), src)
    sidx = rng.integers(0, max(1, len(ports)), n)
    proto = np.full(n, 6)
    dport = rng.integers(20000, 30000, n)
    dst = np.full(n, 0xCB007101)
    iif = np.zeros(n, np.int64)
    for i in np.nonzero(kind <= 5)[0]:
        if not ports:
            break
        p, k, j = ports[sidx[i]]
        dport[i] = p + (int(rng.integers(0, 3)) if k == 2 else 0)
        proto[i] = 17 if k == 1 else 6
        if k == 0:
            dst[i] = 0x0A600000 + j
        elif k == 1:
            iif[i] = 1
        elif k == 3:
            src[i] = (192 << 24) | (168 << 16) | ((j % 250) << 8) | 7
    proto = np.where(kind == 8, 17, proto)
    proto = np.where(kind == 9, 1, proto)
    c[:, Field.PROTO] = proto
    c[:, Field.SRC + 1] = V4 | src
    c[:, Field.DST + 1] = V4 | dst
    c[:, Field.IIF] = iif
    c[:, Field.OIF] = -1
    pres = np.full(n, PRESENT_IIF, np.int64)
    l4 = (proto == 6) | (proto == 17)
    pres |= np.where(l4, PRESENT_PORTS, 0)
    pres |= np.where(proto == 6, PRESENT_TCP, 0)
    pres |= np.where(proto == 1, PRESENT_ICMP | PRESENT_ICMP_ID, 0)
    c[:, Field.SPORT] = np.where(l4, rng.integers(32768, 61000, n), 0)
    c[:, Field.DPORT] = np.where(l4, dport, 0)
    c[:, Field.ICMP_TYPE] = np.where(proto == 1, 8, 0)
    c[:, Field.TCP_FLAGS] = np.where(proto == 6, np.where(est, 0x10, 0x02), 0)
    c[:, Field.CT_STATE] = np.where(est, 2, 8)
    pres |= PRESENT_CT
    c[:, Field.PRESENT] = pres
    lens = np.where(proto == 6, 60, np.where(proto == 17, 120, 84)).astype(np.int64)
    return c, lens


@numba.njit(nogil=True)
def _drive(cra, st, bc, ctxs, lens, out, trace, work):
    acc = np.int64(0)
    for i in range(ctxs.shape[0]):
        for j in range(ctxs.shape[1]):
            work[j] = ctxs[i, j]
        v = chains.eval_chain(cra, st, bc, work, lens[i], np.int64(1_700_000_000_000_000_000) + i * 1000, out,
                              trace)
        acc += v
    return acc


def run_one(crs, ctxs, lens, reps: int = 1) -> tuple[float, int]:
    bc = [b["chain"] for b in crs.base_chains].index("INPUT")
    out, trace, work = chains.new_out(), chains.new_trace(1), np.zeros(ctxs.shape[1], np.int64)
    _drive(crs.arrays, chains.new_rule_state(crs), bc, ctxs[:64], lens[:64], out, trace, work)  # compile/warm
    best = float("inf")
    acc = 0
    for _ in range(reps):
        st = chains.new_rule_state(crs)
        t0 = time.perf_counter()
        acc = _drive(crs.arrays, st, bc, ctxs, lens, out, trace, work)
        best = min(best, time.perf_counter() - t0)
    return ctxs.shape[0] / best, int(acc)


COMPILE_SNIPPET = r"""
import time, resource, sys
sys.path.insert(0, {root!r})
t0 = time.process_time()
from nfreplay.replay import chains
from nfreplay.replay.host import load_host
from nfreplay.replay.rules.compile import compile_ruleset
from nfreplay.replay.rules.iptables import parse_iptables
import numpy as np
t1 = time.process_time()
crs = compile_ruleset(parse_iptables("*filter\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n", "t"),
                      load_host(None))
st = chains.new_rule_state(crs)
t2 = time.process_time()
chains.eval_chain(crs.arrays, st, 1, np.zeros(64, np.int64), 60, 0, chains.new_out(), chains.new_trace(4))
t3 = time.process_time()
print(f"{{t1 - t0:.2f}} {{t2 - t1:.2f}} {{t3 - t2:.2f}}")
"""


def compile_time() -> str:
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, NUMBA_CACHE_DIR=d)
        r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
        w0 = time.perf_counter()
        p = subprocess.run([sys.executable, "-c", COMPILE_SNIPPET.format(root=str(ROOT))], env=env,
                           capture_output=True, text=True, check=True)
        wall = time.perf_counter() - w0
        r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
        imp, comp_py, ev = p.stdout.split()
        cpu = (r1.ru_utime + r1.ru_stime) - (r0.ru_utime + r0.ru_stime)
        return (f"fresh NUMBA_CACHE_DIR: first eval_chain call {ev} CPU s (imports {imp} s, compile_ruleset "
                f"{comp_py} s); child process total {cpu:.1f} CPU s, {wall:.1f} s wall")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--packets", type=int, default=1_000_000)
    ap.add_argument("--sizes", default="10,100,1000")
    ap.add_argument("--mixes", default="mixed,new")
    ap.add_argument("--reps", type=int, default=2)
    ap.add_argument("--compile-time", action="store_true")
    a = ap.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} ({os.cpu_count()} cpus)")
    if a.compile_time:
        print(compile_time())
    host = load_host(HOST)
    sets = ipsets()
    empty = compile_ruleset(parse_iptables("*filter\n:INPUT ACCEPT [0:0]\nCOMMIT\n", "empty"), host)
    sizes = [int(x) for x in a.sizes.split(",") if x]
    rows = []
    for mix in a.mixes.split(","):
        ctxs, lens = None, None
        base = None
        for n in sizes:
            rs, ports = make_ruleset(n)
            t0 = time.perf_counter()
            crs = compile_ruleset(rs, host, ipsets=sets)
            tc = time.perf_counter() - t0
            ctxs, lens = make_packets(a.packets, ports, mix)
            if base is None:
                base, _ = run_one(empty, ctxs, lens, a.reps)
                rows.append((mix, "empty (policy only)", base, 1.0, 0.0, ""))
            pps, acc = run_one(crs, ctxs, lens, a.reps)
            accepted = acc / a.packets
            rows.append((mix, f"{n} rules", pps, pps / base, tc, f"accepted {accepted:.1%}"))
    print(f"{'mix':6} {'ruleset':20} {'packets/s':>12} {'vs empty':>9} {'compile_ruleset s':>18}")
    for mix, name, pps, ratio, tc, note in rows:
        print(f"{mix:6} {name:20} {pps:12,.0f} {ratio:9.3f} {tc:18.3f}  {note}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()

"""Kernel baseline (a script, not a test): the real Linux kernel forwarding the benchmark traffic through a
firewall namespace with the same 50-rule ruleset, injected with `tcpreplay --topspeed`. Needs root,
iproute2, iptables, nft, conntrack-tools and tcpreplay/tcpprep/tcprewrite (`apt-get install -y tcpreplay`).

    .venv/bin/python bench/bench_kernel.py [--slice 200000] [--rounds 5] [--json FILE]

Lab (two namespaces with random names, nothing connected to the root namespace; both are deleted in a
`finally`, also on error, Ctrl-C, SIGTERM and SIGHUP):

    ns nfb<sfx>-gen                                  ns nfb<sfx>-fw  (bench_engine.HOST, ruleset_text())
    tcpreplay -i c0 -I s0     [c0] ====== veth ====== [lan0 10.0.0.1/16]
    every replay address is   [s0] ====== veth ====== [wan0 192.168.0.1/16]
    local (AnyIP 10.0.0.0/16,
    192.168.0.0/16) and a netdev ingress chain drops whatever fw sends back, so nothing ever answers.

* The slice is the first N packets of bench_ingest's capture (the generator is prefix-stable, so it is
  bench/data/synthetic-N.pcap). tcpprep --cidr=10.0.0.0/16 marks the client side (primary, -i c0); tcprewrite gives
  client packets the MACs c0 -> lan0 and server packets s0 -> wan0 and fixes the checksums (the generator
  writes zero TCP/ICMP checksums, which conntrack would mark INVALID; nfreplay runs with
  --assume-good-checksums instead), so client packets enter lan0 and server packets wan0.
* fw reaches 10.0.0.0/16 and 192.168.0.0/16 through one permanent neighbour per side (more specific /17
  routes `onlink`), so there is no ARP and no neighbour-table growth; the default route of the host
  model (via 192.168.0.254) also has a permanent neighbour. IPv6 is off in both namespaces (no ND noise
  in the counters); rp_filter is 0; ip_forward is 1; other sysctls are the kernel's defaults.
* A veth transmit runs the peer's receive path (routing, netfilter, forwarding, the peer's xmit) in the
  sender's context, so tcpreplay's send rate is the kernel's processing rate. The rate reported is
  fw's rx packets (lan0 + wan0 counters, which must equal the packets sent) divided by tcpreplay's own
  "sent in S seconds" (-K: the capture is preloaded, startup excluded).
* Two configurations, interleaved per round, conntrack flushed and counters zeroed before each:
  `inject_drop` (a raw PREROUTING DROP in front of everything: tcpreplay + veth + IP receive, the
  injection cost) and `fwd_ct_50` (conntrack + the 50 rules + forwarding: the baseline). Reported:
  min and median packets/s over the rounds, the packets the ruleset accepted in FORWARD (iptables
  counters of the ACCEPT rules of FORWARD and lan_out), REJECTs, conntrack entries.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

TOOLS = ("ip", "iptables-restore", "iptables-save", "nft", "conntrack", "tcpreplay", "tcpprep", "tcprewrite")
MAC = {"lan0": "02:6e:66:62:00:01", "c0": "02:6e:66:62:00:02",
       "wan0": "02:6e:66:62:01:01", "s0": "02:6e:66:62:01:02"}


def unavailable() -> str | None:
    """Why the kernel baseline cannot run here, or None."""
    if os.geteuid() != 0:
        return "not root (network namespaces need root)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return "missing " + ", ".join(missing) + (" (apt-get install -y tcpreplay)" if "tcpreplay" in missing else "")
    return None


def _run(cmd, ns=None, input=None, check=True, timeout=120) -> str:
    full = (["ip", "netns", "exec", ns] if ns else []) + [str(c) for c in cmd]
    p = subprocess.run(full, input=input, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(full)}: exit {p.returncode}: {p.stderr.strip()[-500:]}")
    return p.stdout


class Lab:
    """The two namespaces; use as a context manager (teardown in __exit__, also on errors)."""

    def __init__(self):
        sfx = secrets.token_hex(3)
        self.gen, self.fw = f"nfb{sfx}-gen", f"nfb{sfx}-fw"
        self.namespaces: list[str] = []

    def __enter__(self):
        try:
            self._setup()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc):
        self.teardown()
        return False

    def _ns(self, name):
        _run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        _run(["sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"], ns=name)
        _run(["ip", "link", "set", "lo", "up"], ns=name)

    def _setup(self):
        from bench_engine import HOST

        gen, fw = self.gen, self.fw
        self._ns(gen)
        self._ns(fw)
        # veth pairs created inside fw with the peer moved straight into gen: no root-namespace device
        for fwif, genif in (("lan0", "c0"), ("wan0", "s0")):
            _run(["ip", "-n", fw, "link", "add", fwif, "address", MAC[fwif], "type", "veth",
                  "peer", "name", genif, "address", MAC[genif], "netns", gen])
        addrs = {i["name"]: i["addresses"] for i in HOST["interfaces"]}
        assert addrs == {"lan0": ["10.0.0.1/16"], "wan0": ["192.168.0.1/16"]}, addrs
        for fwif, a in addrs.items():
            for x in a:
                _run(["ip", "-n", fw, "addr", "add", x, "dev", fwif])
            _run(["ip", "-n", fw, "link", "set", fwif, "up"])
        for genif in ("c0", "s0"):
            _run(["ip", "-n", gen, "link", "set", genif, "up"])
        for k in ("net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
                  "net.ipv4.conf.lan0.rp_filter=0", "net.ipv4.conf.wan0.rp_filter=0"):
            _run(["sysctl", "-qw", k], ns=fw)
        # one permanent neighbour per side, more specific than the connected /16s: no ARP, no neigh growth
        for fwif, gw, nets in (("lan0", "10.0.255.254", ("10.0.0.0/17", "10.0.128.0/17")),
                               ("wan0", "192.168.255.254", ("192.168.0.0/17", "192.168.128.0/17"))):
            peer = "c0" if fwif == "lan0" else "s0"
            _run(["ip", "-n", fw, "neigh", "replace", gw, "lladdr", MAC[peer], "dev", fwif, "nud", "permanent"])
            for net in nets:
                _run(["ip", "-n", fw, "route", "add", net, "via", gw, "dev", fwif, "onlink"])
        for r in HOST["routes"]:  # the host model's default route, its gateway a permanent neighbour too
            _run(["ip", "-n", fw, "neigh", "replace", r["via"], "lladdr", MAC["s0"], "dev", r["interface"],
                  "nud", "permanent"])
            _run(["ip", "-n", fw, "route", "replace", r["prefix"], "via", r["via"], "dev", r["interface"], "onlink"])
        # gen owns every replay address (AnyIP) and never processes what comes back
        for net in ("10.0.0.0/16", "192.168.0.0/16"):
            _run(["ip", "-n", gen, "route", "add", "local", net, "dev", "lo"])
        _run(["nft", "-f", "-"], ns=gen, input=(
            "table netdev nfb_sink {\n"
            "  chain c0in { type filter hook ingress device \"c0\" priority -1000; policy drop; }\n"
            "  chain s0in { type filter hook ingress device \"s0\" priority -1000; policy drop; }\n"
            "}\n"))

    def teardown(self) -> list[str]:
        errs = []
        for ns in reversed(self.namespaces):
            p = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True)
            if p.returncode:
                errs.append(f"ip netns del {ns}: {p.stderr.strip()}")
        self.namespaces = []
        if errs:
            print("bench_kernel: teardown: " + "; ".join(errs), file=sys.stderr)
        return errs

    # ---------------------------------------------------------------- measuring
    def counters(self) -> dict:
        out = {}
        for dev in ("lan0", "wan0"):
            for k in ("rx_packets", "tx_packets", "rx_dropped", "tx_dropped"):
                out[f"{dev}.{k}"] = int(_run(["cat", f"/sys/class/net/{dev}/statistics/{k}"], ns=self.fw))
        for dev in ("c0", "s0"):
            out[f"{dev}.tx_packets"] = int(_run(["cat", f"/sys/class/net/{dev}/statistics/tx_packets"], ns=self.gen))
        return out

    def load_rules(self, text: str) -> None:
        _run(["iptables-restore"], ns=self.fw, input=text)

    def reset(self) -> None:
        _run(["conntrack", "-F"], ns=self.fw, check=False)  # exits 1 with "0 flow entries" on an empty table
        for t in ("filter", "raw"):
            _run(["iptables", "-t", t, "-Z"], ns=self.fw, check=False)

    def replay(self, rw: Path, cache: Path) -> dict:
        out = _run(["tcpreplay", "-q", "-i", "c0", "-I", "s0", "-c", cache, "--topspeed", "-K", rw], ns=self.gen,
                   timeout=600)
        m = re.search(r"Actual: (\d+) packets \((\d+) bytes\) sent in ([\d.]+) seconds", out)
        if not m:
            raise RuntimeError("cannot parse tcpreplay output: " + out[-500:])
        fails = re.search(r"Failed packets:\s+(\d+)", out)
        return {"sent": int(m.group(1)), "bytes": int(m.group(2)), "seconds": float(m.group(3)),
                "failed": int(fails.group(1)) if fails else 0}

    def accepted_forward(self) -> dict:
        """iptables-save -c of filter: packets accepted in FORWARD/lan_out, rejected, policy drops."""
        txt = _run(["iptables-save", "-c", "-t", "filter"], ns=self.fw)
        acc = rej = 0
        for line in txt.splitlines():
            m = re.match(r"\[(\d+):\d+\] -A (\S+) .*-j (\S+)", line)
            if not m:
                continue
            pk, chain, tgt = int(m.group(1)), m.group(2), m.group(3)
            if chain in ("FORWARD", "lan_out") and tgt == "ACCEPT":
                acc += pk
            if tgt == "REJECT":
                rej += pk
        pol = re.search(r"^:FORWARD DROP \[(\d+):", txt, re.M)
        n_ct = _run(["conntrack", "-C"], ns=self.fw, check=False).strip()
        return {"forward_accepted": acc, "rejected": rej, "forward_policy_drop": int(pol.group(1)) if pol else None,
                "conntrack_entries": int(n_ct) if n_ct.isdigit() else None}


def prepare_slice(n: int, workdir: Path) -> tuple[Path, Path, Path]:
    """bench_ingest's first n packets, split by tcpprep and rewritten by tcprewrite (MACs, checksums)."""
    from bench_engine import write_capture

    src = write_capture(n)
    cache, rw = workdir / "slice.cache", workdir / "slice.rw.pcap"
    _run(["tcpprep", "--cidr=10.0.0.0/16", "--pcap", src, "--cachefile", cache])
    _run(["tcprewrite", "-c", cache, "-i", src, "-o", rw, "--fixcsum",
          f"--enet-dmac={MAC['lan0']},{MAC['wan0']}", f"--enet-smac={MAC['c0']},{MAC['s0']}"], timeout=600)
    return src, cache, rw


def _tool_version(tool: str) -> str:
    p = subprocess.run([tool, "-V"], capture_output=True, text=True)
    return ((p.stdout or p.stderr).splitlines() or ["?"])[0].strip()


def _raise_exit(signum, _frame):
    raise SystemExit(128 + signum)


def kernel_baseline(n_slice: int = 200_000, rounds: int = 5, log=print) -> dict:
    """Run the lab; returns {"skipped": reason} or the figures (see the module docstring)."""
    why = unavailable()
    if why:
        return {"skipped": why}
    from bench_engine import ruleset_text

    old = {s: signal.signal(s, _raise_exit) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        with tempfile.TemporaryDirectory(prefix="nfb-kernel-") as d:
            src, cache, rw = prepare_slice(n_slice, Path(d))
            with Lab() as lab:
                lab.load_rules(ruleset_text())
                res: dict = {"slice_packets": n_slice, "slice_file": src.name, "rounds": rounds,
                             "iptables": _run(["iptables", "--version"]).strip(),
                             "kernel": os.uname().release, "tcpreplay": _tool_version("tcpreplay"),
                             "configs": {}}
                runs: dict[str, list] = {"inject_drop": [], "fwd_ct_50": []}
                for r in range(rounds):
                    for cfg in runs:
                        if cfg == "inject_drop":
                            _run(["iptables", "-t", "raw", "-I", "PREROUTING", "-j", "DROP"], ns=lab.fw)
                        try:
                            lab.reset()
                            c0 = lab.counters()
                            rep = lab.replay(rw, cache)
                            c1 = lab.counters()
                        finally:
                            if cfg == "inject_drop":
                                _run(["iptables", "-t", "raw", "-D", "PREROUTING", "-j", "DROP"], ns=lab.fw)
                        dc = {k: c1[k] - c0[k] for k in c1}
                        rx = dc["lan0.rx_packets"] + dc["wan0.rx_packets"]
                        row = {**rep, "rx": rx, "rx_lan0": dc["lan0.rx_packets"], "rx_wan0": dc["wan0.rx_packets"],
                               "tx": dc["lan0.tx_packets"] + dc["wan0.tx_packets"],
                               "pps": rx / rep["seconds"] if rep["seconds"] else 0.0}
                        if rx != rep["sent"] or rep["failed"]:
                            row["warning"] = f"fw received {rx} of {rep['sent']} sent ({rep['failed']} failed)"
                            log(f"kernel: WARNING {row['warning']}")
                        if cfg == "fwd_ct_50":
                            row.update(lab.accepted_forward())
                        runs[cfg].append(row)
                        log(f"kernel round {r + 1}/{rounds} {cfg:<12} {row['pps'] / 1e3:8.1f} k/s  "
                            f"rx {rx} (lan0 {row['rx_lan0']}, wan0 {row['rx_wan0']}) tx {row['tx']}"
                            + (f" fwd-accepted {row['forward_accepted']} ct {row['conntrack_entries']}"
                               if cfg == "fwd_ct_50" else ""))
                for cfg, rows in runs.items():
                    p = [x["pps"] for x in rows]
                    res["configs"][cfg] = {"pps_min": min(p), "pps_median": statistics.median(p), "runs": rows}
                res["pps"] = res["configs"]["fwd_ct_50"]["pps_median"]
                return res
    finally:
        for s, h in old.items():
            with contextlib.suppress(Exception):
                signal.signal(s, h)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--slice", type=int, default=200_000, help="first N packets of the benchmark capture")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    t = time.perf_counter()
    res = kernel_baseline(a.slice, a.rounds)
    if "skipped" in res:
        print(f"kernel baseline skipped: {res['skipped']}")
        return 0
    for cfg, v in res["configs"].items():
        print(f"{cfg:<12} median {v['pps_median'] / 1e3:8.1f} k/s  min {v['pps_min'] / 1e3:8.1f} k/s")
    print(f"({time.perf_counter() - t:.1f} s)")
    if a.json:
        a.json.write_text(json.dumps(res, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The namespace lab: a firewall namespace with the host file's interfaces and one silent side
namespace per interface, every capture address a lab host, nothing linked to the root namespace."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time

from ._util import LabError, in_netns, run
from .netlink import (
    NFNLGRP_CONNTRACK_DESTROY,
    NFNLGRP_CONNTRACK_NEW,
    NFNLGRP_CONNTRACK_UPDATE,
    NFNLGRP_NFTRACE,
    NLSock,
    nflog_bind_group0,
)
from .topology import IPT_FAMILY, RESTORE_CMD, topology_has_ipv6

log = logging.getLogger(__name__)

# IPv6 in the firewall namespace: static and silent (no link-local address, no DAD, no RA/RS,
# MLD reports sent once at join time, before the replay starts, then drained).
IPV6_QUIET = {
    "disable_ipv6": 0, "accept_ra": 0, "autoconf": 0, "accept_dad": 0, "dad_transmits": 0,
    "router_solicitations": 0, "addr_gen_mode": 1, "mld_qrv": 1, "force_mld_version": 2,
    "accept_redirects": 0,
}

def addr_key(a):
    ip = ipaddress.ip_address(a)
    return (ip.version, int(ip))


def isolate_resolver(ns):
    """Anything run with `ip netns exec NS` sees /etc/netns/NS/resolv.conf as
    /etc/resolv.conf: point name resolution at the namespace's own loopback so
    no tool in the lab ever tries the host's resolver."""
    d = f"/etc/netns/{ns}"
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "resolv.conf"), "w") as f:
        f.write("# nfreplay oracle lab: no name resolution\nnameserver 127.0.0.1\n")


SENTINEL_ETHERTYPE = 0x88B5
SENTINEL_MAGIC = b"NFORACLE"
ETH_P_ALL = 0x0003
SOL_PACKET = 263
PACKET_IGNORE_OUTGOING = 23


class Lab:
    def __init__(self, topo, keep_pcaps_dir=None):
        self.topo = topo
        self.sfx = secrets.token_hex(3)
        self.fw = f"nfr{self.sfx}-fw"
        self.namespaces = []
        self.procs = []
        self.socks = []
        self.ifaces = {}       # fw ifname -> info
        self.host_side = {}    # ip -> fw ifname (or "local")
        self.ifindex = {}      # fw ifindex -> name
        self.keep_pcaps_dir = keep_pcaps_dir
        self.tmp = tempfile.mkdtemp(prefix=f"nfr{self.sfx}-")
        self.warnings = []
        self.ethtool = shutil.which("ethtool")
        self.ipv6 = topology_has_ipv6(topo)
        self.raw_sock6 = None

    # -- setup --------------------------------------------------------------
    def _add_ns(self, name, ipv6=False):
        run(["ip", "netns", "add", name])
        self.namespaces.append(name)
        isolate_resolver(name)
        if ipv6:
            # set on "default" before any interface exists, so every veth inherits it
            for scope in ("all", "default"):
                for k, v in IPV6_QUIET.items():
                    run(["sysctl", "-qw", f"net.ipv6.conf.{scope}.{k}={v}"], ns=name, check=False)
        else:
            for k in ("net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1"):
                run(["sysctl", "-qw", k], ns=name, check=False)
        run(["ip", "link", "set", "lo", "up"], ns=name)

    def _offloads_off(self, ns, dev):
        if not self.ethtool:
            return
        for feat in ("tx", "rx", "tso", "gso", "gro", "sg"):
            run(["ethtool", "-K", dev, feat, "off"], ns=ns, check=False)

    def setup_network(self):
        fw = self.fw
        self._add_ns(fw, ipv6=self.ipv6)
        run(["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0",
             "net.ipv4.conf.default.rp_filter=0"], ns=fw)
        for idx, itf in enumerate(self.topo["interfaces"]):
            name = itf["name"]
            side = f"nfr{self.sfx}-s{idx}"
            peer = f"side{idx}"
            fw_mac = f"02:6e:66:00:{idx:02x}:01"
            side_mac = f"02:6e:66:00:{idx:02x}:02"
            self._add_ns(side)
            mtu = str(itf.get("mtu", 1500))
            run(["ip", "-n", fw, "link", "add", name, "address", fw_mac, "mtu", mtu, "type",
                 "veth", "peer", "name", peer, "address", side_mac, "mtu", mtu, "netns", side])
            self._offloads_off(fw, name)
            self._offloads_off(side, peer)
            for a in itf.get("addresses", []):
                run(["ip", "-n", fw, "addr", "add", a, "dev", name] + (["nodad"] if ":" in a else []))
            run(["ip", "-n", fw, "link", "set", name, "up"])
            run(["ip", "-n", side, "link", "set", peer, "up"])
            run(["sysctl", "-qw", f"net.ipv4.conf.{name}.rp_filter=0"], ns=fw)
            # the side namespace never processes what fw sends it: packet taps
            # (our capture sockets, tcpdump) see frames before this ingress drop
            run(["nft", "-f", "-"], ns=side, input=(
                "table netdev nfo_sink {\n"
                f"  chain in {{ type filter hook ingress device \"{peer}\" priority -1000; policy drop; }}\n"
                "}\n"))
            self.ifaces[name] = {"idx": idx, "side_ns": side, "peer": peer,
                                 "fw_mac": fw_mac, "side_mac": side_mac,
                                 "addresses": list(itf.get("addresses", [])), "hosts": []}
        for r in self.topo["routes"]:
            cmd = ["ip", "-n", fw] + (["-6"] if ":" in r["prefix"] else []) + ["route", "add", r["prefix"]]
            if r.get("via"):
                cmd += ["via", r["via"]]
            if r.get("interface"):
                cmd += ["dev", r["interface"]]
            run(cmd)
        # the fw's own transport stack must not answer replayed traffic (no
        # RST / port-unreachable / echo-reply of its own): an inbound IPsec
        # "block" policy makes TCP/UDP/ICMP/raw delivery drop the packet
        # AFTER all LOCAL_IN netfilter hooks have run.
        run(["ip", "-n", fw, "xfrm", "policy", "add", "src", "0.0.0.0/0", "dst", "0.0.0.0/0",
             "dir", "in", "action", "block"])
        if self.ipv6:
            run(["ip", "-n", fw, "xfrm", "policy", "add", "src", "::/0", "dst", "::/0",
                 "dir", "in", "action", "block"])
        for line in json.loads(run(["ip", "-n", fw, "-j", "link", "show"])):
            self.ifindex[line["ifindex"]] = line["ifname"]

    def apply_sysctls(self, use_ct):
        fw = self.fw
        base = {
            "net.ipv4.ip_forward": 1 if self.topo.get("ip_forward", True) else 0,
            **({"net.ipv6.conf.all.forwarding": 1 if self.topo.get("ip_forward", True) else 0}
               if self.ipv6 else {}),
            "net.netfilter.nf_conntrack_acct": 1,
            "net.netfilter.nf_conntrack_events": 1,
        }
        if use_ct:
            base["net.netfilter.nf_log.2"] = "nfnetlink_log"
            base["net.netfilter.nf_conntrack_log_invalid"] = 255
        base.update(self.topo.get("sysctls") or {})
        for k, v in base.items():
            if isinstance(v, bool):
                v = int(v)
            run(["sysctl", "-qw", f"{k}={v}"], ns=fw)
        if self.topo.get("ip_forward", True):
            # ip_forward resets per-interface forwarding; keep rp_filter off
            run(["sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0"], ns=fw)

    def assign_hosts(self, addresses):
        """Map every address of the capture to fw-local / a side (by the fw's
        own routing table), assign side addresses as /32 to the side veth and
        add permanent neighbour entries on fw."""
        fw = self.fw
        local = set()
        for itf in self.topo["interfaces"]:
            for a in itf.get("addresses", []):
                local.add(str(ipaddress.ip_interface(a).ip))
        pinned = dict(self.topo.get("hosts") or {})
        for r in self.topo["routes"]:
            if r.get("via") and r.get("interface"):
                pinned.setdefault(r["via"], r["interface"])
        unroutable = []
        addresses = {str(ipaddress.ip_address(a)) for a in addresses}
        pinned = {str(ipaddress.ip_address(a)): v for a, v in pinned.items()}
        for a in sorted(addresses | set(pinned), key=addr_key):
            ip = ipaddress.ip_address(a)
            if ip.is_multicast or ip.is_unspecified or ip.is_loopback or a == "255.255.255.255":
                continue
            if ip.version == 6 and not self.ipv6:
                unroutable.append(a)
                continue
            if ip.version == 6 and ip.is_link_local and a not in pinned:
                unroutable.append(a)   # link-local needs an interface: pin it with `hosts`
                continue
            if a in pinned:
                self.host_side[a] = pinned[a]
                continue
            if a in local:
                self.host_side[a] = "local"
                continue
            out = run(["ip", "-n", fw, "route", "get", a], check=False).strip()
            m = re.search(r"\bdev (\S+)", out)
            if not out or not m:
                unroutable.append(a)
                continue
            if out.startswith("local"):
                self.host_side[a] = "local"
            elif out.startswith("broadcast"):
                continue
            elif m.group(1) in self.ifaces:
                self.host_side[a] = m.group(1)
            else:
                unroutable.append(a)
        for a, ifn in sorted(self.host_side.items()):
            if ifn == "local":
                continue
            info = self.ifaces[ifn]
            if ":" not in a:  # cosmetic only (the side never answers); IPv6 stays off there
                run(["ip", "-n", info["side_ns"], "addr", "add", f"{a}/32", "dev", info["peer"]])
            run(["ip", "-n", fw, "neigh", "replace", a, "lladdr", info["side_mac"], "dev", ifn,
                 "nud", "permanent"])
            info["hosts"].append(a)
        if unroutable:
            self.warnings.append(f"addresses without a route on fw (packets from them are not "
                                 f"injected): {', '.join(unroutable)}")
        return unroutable

    def load_rules(self, path, fmt):
        text = open(path).read()
        cwd = os.path.dirname(os.path.abspath(path))
        if fmt in IPT_FAMILY:
            run([RESTORE_CMD[fmt]], ns=self.fw, input=text, cwd=cwd)
            for t in re.findall(r"^\*(\w+)", text, re.M):
                run([fmt, "-t", t, "-Z"], ns=self.fw, check=False)
        else:
            # zero any explicit counter values so counters start at 0
            text = re.sub(r"\bcounter\s+packets\s+\d+\s+bytes\s+\d+", "counter", text)
            tmp = os.path.join(self.tmp, "rules.nft")
            with open(tmp, "w") as f:
                f.write(text)
            run(["nft", "-f", tmp], ns=self.fw, cwd=cwd)

    # -- sockets & monitors ---------------------------------------------------
    def open_sockets(self, want_nflog):
        with in_netns(self.fw):
            self.trace_sock = NLSock([NFNLGRP_NFTRACE])
            self.ct_sock = NLSock([NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_UPDATE,
                                   NFNLGRP_CONNTRACK_DESTROY])
            self.dump_sock = NLSock([])
            self.nflog_sock = None
            if want_nflog:
                self.nflog_sock = NLSock([])
                nflog_bind_group0(self.nflog_sock)
            self.sentinel_sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW,
                                               socket.htons(SENTINEL_ETHERTYPE))
            self.sentinel_sock.setblocking(False)
            self.raw_sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
            if self.ipv6:  # IPPROTO_RAW on AF_INET6 implies IPV6_HDRINCL
                self.raw_sock6 = socket.socket(socket.AF_INET6, socket.SOCK_RAW, socket.IPPROTO_RAW)
                self.socks.append(self.raw_sock6)
        self.socks += [self.trace_sock, self.ct_sock, self.dump_sock, self.sentinel_sock,
                       self.raw_sock] + ([self.nflog_sock] if self.nflog_sock else [])
        for _name, info in self.ifaces.items():
            with in_netns(info["side_ns"]):
                s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
                s.setsockopt(socket.SOL_SOCKET, 33, 8 << 20)
                s.bind((info["peer"], ETH_P_ALL))
                try:
                    s.setsockopt(SOL_PACKET, PACKET_IGNORE_OUTGOING, 1)
                    info["ignore_outgoing"] = True
                except OSError:
                    info["ignore_outgoing"] = False
                s.setblocking(False)
            info["sock"] = s
            self.socks.append(s)

    def _spawn(self, cmd, ns, stdout, stderr):
        p = subprocess.Popen(["ip", "netns", "exec", ns] + cmd, stdout=stdout, stderr=stderr,
                             stdin=subprocess.DEVNULL, start_new_session=True)
        self.procs.append(p)
        return p

    def start_monitors(self, want_tool, want_tcpdump):
        self.tool_out = None
        if want_tool and shutil.which("conntrack"):
            self.tool_out = os.path.join(self.tmp, "conntrack_events.txt")
            self.tool_f = open(self.tool_out, "w")
            self.tool_proc = self._spawn(["conntrack", "-E", "-o", "timestamp,extended,id"],
                                         self.fw, self.tool_f, subprocess.DEVNULL)
            mine = {self.ct_sock.portid()}
            deadline = time.monotonic() + 5
            ready = False
            while time.monotonic() < deadline and not ready:
                with in_netns(self.fw):
                    rows = open("/proc/thread-self/net/netlink").read().splitlines()[1:]
                for row in rows:
                    f = row.split()
                    if len(f) >= 4 and f[1] == "12" and int(f[2]) not in mine and \
                            int(f[3], 16) & 0x7 == 0x7:
                        ready = True
                time.sleep(0.02)
            if not ready:
                self.warnings.append("conntrack -E did not subscribe in time")
        self.tcpdumps = {}
        if want_tcpdump and shutil.which("tcpdump"):
            for name, info in self.ifaces.items():
                path = os.path.join(self.tmp, f"egress_{name}.pcap")
                errp = os.path.join(self.tmp, f"tcpdump_{name}.err")
                ef = open(errp, "w")
                p = self._spawn(["tcpdump", "-n", "-U", "--immediate-mode", "-s", "0", "-Q", "in", "-i", info["peer"],
                                 "-w", path], info["side_ns"], subprocess.DEVNULL, ef)
                self.tcpdumps[name] = (p, path, errp, ef)
            deadline = time.monotonic() + 10
            for p, _path, errp, _ef in self.tcpdumps.values():
                while time.monotonic() < deadline:
                    if "listening on" in open(errp).read():
                        break
                    if p.poll() is not None:
                        raise LabError(f"tcpdump failed: {open(errp).read().strip()}")
                    time.sleep(0.02)
                else:
                    raise LabError("tcpdump did not start")

    def stop_process(self, p, sig=signal.SIGTERM, timeout=5):
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, sig)
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGKILL)
                p.wait(5)

    # -- teardown -------------------------------------------------------------
    def teardown(self):
        errs = []
        for p in self.procs:
            try:
                self.stop_process(p)
            except Exception as e:  # pragma: no cover
                errs.append(str(e))
        for s in self.socks:
            with contextlib.suppress(Exception):
                (s.close() if not isinstance(s, NLSock) else s.close())
        for ns in reversed(self.namespaces):
            p = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True)
            if p.returncode != 0:
                errs.append(f"ip netns del {ns}: {p.stderr.strip()}")
            shutil.rmtree(f"/etc/netns/{ns}", ignore_errors=True)
        self.namespaces = []
        shutil.rmtree(self.tmp, ignore_errors=True)
        return errs


# --------------------------------------------------------------------------
# replay

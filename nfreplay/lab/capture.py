"""The capture lab: real kernel TCP/UDP/ICMP stacks on both sides of a firewall namespace, recorded
at the firewall the way the kernel lab expects a capture (nflog at the first priority of
PREROUTING and OUTPUT: every packet as it arrived, plus every packet the firewall originated).

Used to (re)build the recorded scenarios (`nfreplay.lab.scenarios`). Needs root; everything lives
in namespaces with random names and is removed on exit."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

from ._util import in_netns, run
from .lab import isolate_resolver
from .netlink import NFNL_SUBSYS_ULOG, NLSock, nflog_bind_group0, nl_attrs, nl_split

log = logging.getLogger(__name__)

# helper programs run inside the namespaces (python3 -c), IPv4 and IPv6 by the address form
HTTP_SRV = (
    "import http.server,socketserver,socket,sys\n"
    "class S(socketserver.TCPServer):\n"
    " allow_reuse_address=True\n"
    " address_family=socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET\n"
    "h=http.server.SimpleHTTPRequestHandler; h.log_message=lambda *a: None\n"
    "S((sys.argv[1],int(sys.argv[2])),h).serve_forever()")
UDP_ECHO = (
    "import socket,sys\n"
    "s=socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET,socket.SOCK_DGRAM)\n"
    "s.bind((sys.argv[1],int(sys.argv[2])));s.settimeout(20)\n"
    "try:\n while True:\n  d,a=s.recvfrom(2048);s.sendto(d.upper(),a)\nexcept Exception: pass")
# args: src dst dport count reply_timeout [gap_seconds] [sport]
UDP_SEND = (
    "import socket,sys,time\n"
    "s=socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET,socket.SOCK_DGRAM)\n"
    "s.bind((sys.argv[1],int(sys.argv[7]) if len(sys.argv)>7 else 0));s.settimeout(float(sys.argv[5]))\n"
    "gap=float(sys.argv[6]) if len(sys.argv)>6 else 0\n"
    "for i in range(int(sys.argv[4])):\n"
    " if i and gap: time.sleep(gap)\n"
    " s.sendto(b'query-%d'%i,(sys.argv[2],int(sys.argv[3])))\n"
    " try: print(s.recvfrom(2048)[0])\n except Exception as e: print('no reply',e)")
# args: src dst count interval — ICMP/ICMPv6 echo through a raw socket (no iputils needed)
PING = (
    "import socket,struct,sys,time,os\n"
    "v6=':' in sys.argv[2]\n"
    "s=socket.socket(socket.AF_INET6 if v6 else socket.AF_INET,socket.SOCK_RAW,58 if v6 else 1)\n"
    "s.bind((sys.argv[1],0));s.settimeout(1)\n"
    "def cs(b):\n"
    " b+=b'\\0'*(len(b)%2);t=sum(struct.unpack('!%dH'%(len(b)//2),b))\n"
    " while t>>16: t=(t&0xffff)+(t>>16)\n"
    " return ~t&0xffff\n"
    "ident=os.getpid()&0xffff\n"
    "for i in range(int(sys.argv[3])):\n"
    " if i: time.sleep(float(sys.argv[4]))\n"
    " body=struct.pack('!HH',ident,i+1)+b'nfreplay-ping-%02d'%i+bytes(range(32))\n"
    " m=struct.pack('!BBH',128 if v6 else 8,0,0)+body\n"
    " if not v6: m=m[:2]+struct.pack('!H',cs(m))+m[4:]\n"
    " s.sendto(m,(sys.argv[2],0))\n"
    " try: print('reply',len(s.recvfrom(2048)[0]))\n except Exception as e: print('no reply',e)")
# args: src sport dst dport [request] — one TCP exchange from a fixed source port
TCP_CLIENT = (
    "import socket,sys\n"
    "s=socket.socket(socket.AF_INET6 if ':' in sys.argv[3] else socket.AF_INET)\n"
    "s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
    "s.bind((sys.argv[1],int(sys.argv[2])));s.settimeout(2)\n"
    "try:\n"
    " s.connect((sys.argv[3],int(sys.argv[4])))\n"
    " s.sendall((sys.argv[5] if len(sys.argv)>5 else 'GET /hello.txt HTTP/1.0\\r\\n\\r\\n').encode())\n"
    " n=0\n"
    " while True:\n"
    "  d=s.recv(4096)\n"
    "  if not d: break\n"
    "  n+=len(d)\n"
    " print('received',n)\n"
    "except Exception as e: print('error',e)\n"
    "s.close()")

# ICMPv6 neighbour discovery, router discovery and MLD: link chatter of the real hosts, which the
# replay lab replaces with static neighbours; not part of a scenario's capture
ICMP6_LINK_CHATTER = {130, 131, 132, 133, 134, 135, 136, 137, 143}

IPV6_HOST_SYSCTLS = {"accept_ra": 0, "autoconf": 0, "accept_dad": 0, "dad_transmits": 0,
                     "router_solicitations": 0}


def is_link_chatter(l3: bytes) -> bool:
    if not l3 or l3[0] >> 4 != 6 or len(l3) < 41:
        return False
    nxt, off = l3[6], 40
    while nxt in (0, 60) and len(l3) >= off + 8:  # hop-by-hop (MLD router alert), dest opts
        nxt, off = l3[off], off + (l3[off + 1] + 1) * 8
    return nxt == 58 and len(l3) > off and l3[off] in ICMP6_LINK_CHATTER


def capture(topo, side_hosts, rules_text, rules_fmt, servers, steps, workdir=None,
            fw_sysctls=None, settle_s=1.0):
    """Run real traffic across a firewall built from `topo` and return [(ts, l3 bytes), ...].

    side_hosts: {ifname: {"addresses": ["10.0.0.2/24", "fd00::2/64"], "gateways": ["10.0.0.1",
    "fd00::1"]}}; servers/steps: [(ifname or "fw", argv)], servers run in the background for the
    whole capture, steps one after the other. Returns (records, step_log)."""
    sfx = secrets.token_hex(3)
    fw = f"nfc{sfx}-fw"
    nss, procs = [], []
    tmp = tempfile.mkdtemp(prefix=f"nfc{sfx}-")
    www = workdir or os.path.join(tmp, "www")
    os.makedirs(www, exist_ok=True)
    if not os.path.exists(os.path.join(www, "hello.txt")):
        with open(os.path.join(www, "hello.txt"), "w") as f:
            f.write("hello from the nfreplay capture lab\n" * 6)
    captured = []
    lost = []
    nl = None
    stop = threading.Event()
    th = None

    def addns(n):
        run(["ip", "netns", "add", n])
        nss.append(n)
        isolate_resolver(n)
        for scope in ("all", "default"):
            for k, v in IPV6_HOST_SYSCTLS.items():
                run(["sysctl", "-qw", f"net.ipv6.conf.{scope}.{k}={v}"], ns=n, check=False)
        run(["ip", "link", "set", "lo", "up"], ns=n)

    def off(ns, dev):
        if shutil.which("ethtool"):
            for feat in ("tx", "rx", "tso", "gso", "gro", "sg"):
                run(["ethtool", "-K", dev, feat, "off"], ns=ns, check=False)

    step_log = []
    try:
        addns(fw)
        run(["sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv4.conf.all.rp_filter=0",
             "net.ipv4.conf.default.rp_filter=0", "net.ipv6.conf.all.forwarding=1"], ns=fw)
        sides = {"fw": fw}
        for idx, itf in enumerate(topo["interfaces"]):
            n = itf["name"]
            side = f"nfc{sfx}-s{idx}"
            addns(side)
            run(["ip", "-n", fw, "link", "add", n, "type", "veth", "peer", "name", "eth0",
                 "netns", side])
            off(fw, n)
            off(side, "eth0")
            for a in itf["addresses"]:
                run(["ip", "-n", fw, "addr", "add", a, "dev", n] + (["nodad"] if ":" in a else []))
            run(["ip", "-n", fw, "link", "set", n, "up"])
            h = side_hosts.get(n, {})
            for a in h.get("addresses", []):
                run(["ip", "-n", side, "addr", "add", a, "dev", "eth0"] + (["nodad"] if ":" in a else []))
            run(["ip", "-n", side, "link", "set", "eth0", "up"])
            for gw in h.get("gateways", []):
                run(["ip", "-n", side] + (["-6"] if ":" in gw else []) +
                    ["route", "add", "default", "via", gw, "dev", "eth0"])
            sides[n] = side
        # IPv6 neighbours are static (like the replay lab's): NDP would otherwise depend on the
        # ruleset letting neighbour solicitations through, and would add chatter to the capture
        for itf in topo["interfaces"]:
            n, side = itf["name"], sides[itf["name"]]
            fw_mac = json.loads(run(["ip", "-n", fw, "-j", "link", "show", n]))[0]["address"]
            side_mac = json.loads(run(["ip", "-n", side, "-j", "link", "show", "eth0"]))[0]["address"]
            for a in side_hosts.get(n, {}).get("addresses", []):
                if ":" in a:
                    run(["ip", "-n", fw, "neigh", "replace", a.split("/")[0], "lladdr", side_mac, "dev", n,
                         "nud", "permanent"])
            for a in itf["addresses"]:
                if ":" in a:
                    run(["ip", "-n", side, "neigh", "replace", a.split("/")[0], "lladdr", fw_mac, "dev",
                         "eth0", "nud", "permanent"])
        for r in topo.get("routes", []):
            run(["ip", "-n", fw] + (["-6"] if ":" in r["prefix"] else []) +
                ["route", "add", r["prefix"], "via", r["via"], "dev", r["interface"]])
        for k, v in (fw_sysctls or {}).items():
            run(["sysctl", "-qw", f"{k}={int(v) if isinstance(v, bool) else v}"], ns=fw)
        if rules_fmt in ("iptables", "ip6tables"):
            run([f"{rules_fmt}-restore"], ns=fw, input=rules_text)
        else:
            run(["nft", "-f", "-"], ns=fw, input=rules_text)
        run(["nft", "-f", "-"], ns=fw, input=(
            "table inet nfc_capture {\n"
            "  chain pre { type filter hook prerouting priority -2147483000; policy accept; log group 7; }\n"
            "  chain out { type filter hook output priority -2147483000; policy accept; log group 7; }\n"
            "}\n"))
        with in_netns(fw):
            nl = NLSock([])
            nflog_bind_group0(nl, 7)
        nl.s.setblocking(True)
        nl.s.settimeout(0.2)

        def reader():
            while not stop.is_set():
                try:
                    data = nl.s.recv(1 << 20)
                except (socket.timeout, BlockingIOError):
                    continue
                except OSError as e:   # ENOBUFS after a burst: keep reading, note the loss
                    lost.append(str(e))
                    continue
                now = time.time()
                for typ, _fl, pl in nl_split(data):
                    if typ != (NFNL_SUBSYS_ULOG << 8):
                        continue
                    a = nl_attrs(pl, 4)
                    if 9 in a:
                        captured.append((now, a[9]))
        th = threading.Thread(target=reader, daemon=True)
        th.start()
        for side, cmd in servers:
            procs.append(subprocess.Popen(["ip", "netns", "exec", sides[side]] + cmd, cwd=www,
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                          stdin=subprocess.DEVNULL, start_new_session=True))
        time.sleep(settle_s)  # servers bind; IPv6 link chatter settles
        captured.clear()
        for side, cmd in steps:
            if side == "sleep":
                time.sleep(float(cmd))
                continue
            p = subprocess.run(["ip", "netns", "exec", sides[side]] + cmd, capture_output=True,
                               text=True, timeout=30, cwd=www)
            step_log.append({"side": side, "cmd": [c if len(c) < 60 else "<python>" for c in cmd],
                             "rc": p.returncode, "out": p.stdout.strip()[:160]})
            time.sleep(0.2)
        time.sleep(0.5)
    finally:
        stop.set()
        if th is not None:
            th.join(2)
        if nl is not None:
            nl.close()
        for p in reversed(procs):
            if p.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(p.pid, signal.SIGTERM)
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(p.pid, signal.SIGKILL)
                    p.wait()
        for n in reversed(nss):
            subprocess.run(["ip", "netns", "del", n], capture_output=True)
            shutil.rmtree(f"/etc/netns/{n}", ignore_errors=True)
        shutil.rmtree(tmp, ignore_errors=True)
    if lost:
        step_log.append({"capture_socket_errors": lost[:5], "count": len(lost)})
    recs = [(ts, l3) for ts, l3 in captured if l3 and l3[0] >> 4 in (4, 6) and not is_link_chatter(l3)]
    return recs, step_log

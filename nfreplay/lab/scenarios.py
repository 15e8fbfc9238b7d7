"""The recorded kernel scenarios (tests/fixtures/scenarios/<name>/): definitions and the builder.

Each scenario is real traffic of real kernel stacks, captured at a firewall in a namespace
capture lab (`nfreplay.lab.capture`), optionally with crafted packets added, then replayed twice
through `run_kernel` to record the kernel's answers (oracle_out.json) and check determinism.
Rebuild with `python tools/make_scenarios.py [--only NAME...] [--recapture]` (root)."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess

from .capture import HTTP_SRV, PING, TCP_CLIENT, UDP_ECHO, UDP_SEND, capture
from .packets import eth, icmp_msg, ip4, ip6, parse_ip, tcp_seg, udp_dgram
from .pcapio import read_pcap, write_pcap

log = logging.getLogger(__name__)

TOPO4 = {
    "interfaces": [
        {"name": "lan0", "addresses": ["10.0.0.1/24"]},
        {"name": "wan0", "addresses": ["198.51.100.1/24"]},
    ],
    "routes": [{"prefix": "0.0.0.0/0", "interface": "wan0", "via": "198.51.100.254"}],
    "ip_forward": True,
    "sysctls": {},
}
TOPO46 = {
    "interfaces": [
        {"name": "lan0", "addresses": ["10.0.0.1/24", "fd00::1/64"]},
        {"name": "wan0", "addresses": ["198.51.100.1/24", "2001:db8:1::1/64"]},
    ],
    "routes": [{"prefix": "0.0.0.0/0", "interface": "wan0", "via": "198.51.100.254"},
               {"prefix": "::/0", "interface": "wan0", "via": "2001:db8:1::fe"}],
    "ip_forward": True,
    "sysctls": {},
}
HOSTS = {
    "lan0": {"addresses": ["10.0.0.2/24", "10.0.0.3/24", "10.0.0.80/24", "fd00::2/64", "fd00::80/64"],
             "gateways": ["10.0.0.1", "fd00::1"]},
    "wan0": {"addresses": ["198.51.100.254/24", "203.0.113.10/32", "2001:db8:1::fe/64",
                           "2001:db8:2::10/128"],
             "gateways": ["198.51.100.1", "2001:db8:1::1"]},
}
CLIENT, CLIENT2, LANSRV, SERVER = "10.0.0.2", "10.0.0.3", "10.0.0.80", "203.0.113.10"
FW_LAN, FW_WAN = "10.0.0.1", "198.51.100.1"
CLIENT6, LANSRV6, SERVER6, FW_LAN6 = "fd00::2", "fd00::80", "2001:db8:2::10", "fd00::1"

PY = "python3"


def http(side, addr, port):
    return (side, [PY, "-c", HTTP_SRV, addr, str(port)])


def udp_echo(side, addr, port):
    return (side, [PY, "-c", UDP_ECHO, addr, str(port)])


def curl(side, url, t=1.5, extra=()):
    return (side, ["curl", "-s", "-g", "-m", str(t), *extra, url])


def ping(side, src, dst, count=1, interval=0.2):
    return (side, [PY, "-c", PING, src, dst, str(count), str(interval)])


def udp(side, src, dst, dport, count=1, timeout=0.5, gap=0, sport=0):
    return (side, [PY, "-c", UDP_SEND, src, dst, str(dport), str(count), str(timeout), str(gap),
                   str(sport)])


def tcp(side, src, sport, dst, dport):
    return (side, [PY, "-c", TCP_CLIENT, src, str(sport), dst, str(dport)])


SCENARIOS: dict[str, dict] = {}


def scenario(name, **kw):
    kw.setdefault("topology", TOPO4)
    kw.setdefault("timing", "fast")
    kw.setdefault("servers", [])
    SCENARIOS[name] = kw


# -- crafted packets ---------------------------------------------------------------------

def _tcp_handshake(recs, client):
    parsed = [parse_ip(l3) for _, l3 in recs]
    syn = next(i for i, p in enumerate(parsed) if p["proto"] == 6 and p["flags"] == "S"
               and p["src"] == client)
    sa = next(i for i, p in enumerate(parsed) if i > syn and p["proto"] == 6 and p["flags"] == "SA")
    ack = next(i for i, p in enumerate(parsed) if i > sa and p["proto"] == 6 and p["src"] == client)
    return parsed, syn, sa, ack


def _insert_after(recs, i, pkts):
    t0 = recs[i][0]
    t1 = recs[i + 1][0] if i + 1 < len(recs) else t0 + 0.01
    step = (t1 - t0) / (len(pkts) + 1)
    return recs[:i + 1] + [(t0 + step * (k + 1), p) for k, p in enumerate(pkts)] + recs[i + 1:]


def _append(recs, pkts, gap=0.01):
    t = recs[-1][0] if recs else 0.0
    out = list(recs)
    for p in pkts:
        t += gap
        out.append((t, p))
    return out


def post_invalid_causes(recs):
    """Bad flag combinations, an out-of-window RST, an ICMP error with no conntrack entry."""
    parsed, syn, sa, ack = _tcp_handshake(recs, CLIENT)
    c, s = parsed[syn], parsed[sa]
    cp = c["sport"]
    mid = [
        ip4(SERVER, CLIENT, 6, tcp_seg(SERVER, CLIENT, 80, cp, s["seq"] + 1 + 90_000_000, 0, 0x04), 0x5101),
        ip4(CLIENT, SERVER, 6, tcp_seg(CLIENT, SERVER, cp, 80, c["seq"] + 1, s["seq"] + 1, 0x06), 0x5102),
    ]
    recs = _insert_after(recs, ack, mid)
    quoted = ip4(CLIENT, SERVER, 17, udp_dgram(CLIENT, SERVER, 33333, 9, b"gone"), 0x0777)
    tail = [
        ip4(CLIENT, SERVER, 6, tcp_seg(CLIENT, SERVER, 45001, 80, 7_000_000, 0, 0x00), 0x5103),  # null
        ip4(CLIENT, SERVER, 6, tcp_seg(CLIENT, SERVER, 45002, 80, 7_100_000, 0, 0x29), 0x5104),  # xmas FPU
        ip4(CLIENT, SERVER, 6, tcp_seg(CLIENT, SERVER, 45003, 80, 7_200_000, 0, 0x06), 0x5105),  # SYN+RST
        ip4(CLIENT, SERVER, 6, tcp_seg(CLIENT, SERVER, 45004, 80, 7_300_000, 0, 0x01), 0x5106),  # FIN alone
        ip4(SERVER, CLIENT, 1, icmp_msg(3, 3, b"\x00" * 4 + quoted), 0x5107),                    # no entry
    ]
    return _append(recs, tail)


def post_be_liberal(recs):
    """A data segment far outside the window in the middle of a real exchange."""
    parsed, syn, sa, ack = _tcp_handshake(recs, CLIENT)
    c, s = parsed[syn], parsed[sa]
    pkt = ip4(CLIENT, SERVER, 6, tcp_seg(CLIENT, SERVER, c["sport"], 80, c["seq"] + 1 + 60_000_000,
                                         s["seq"] + 1, 0x18, b"FAR-OUT-OF-WINDOW"), 0x5201)
    return _insert_after(recs, ack, [pkt])


def post_midstream(recs):
    """Drop the 3-way handshake: conntrack must pick the connection up mid-stream."""
    parsed, syn, sa, ack = _tcp_handshake(recs, CLIENT)
    return [r for i, r in enumerate(recs) if i not in (syn, sa, ack)]


def post_invalid_leak(recs):
    """An out-of-window segment (INVALID, never seen by the nat table) after a real exchange."""
    parsed, syn, sa, ack = _tcp_handshake(recs, CLIENT)
    c, s = parsed[syn], parsed[sa]
    pkt = ip4(CLIENT, SERVER, 6, tcp_seg(CLIENT, SERVER, c["sport"], 80, c["seq"] + 1 + 70_000_000,
                                         s["seq"] + 1, 0x18, b"LEAK"), 0x5301)
    return _insert_after(recs, ack, [pkt])


def post_ipv6_invalid(recs):
    """An ICMPv6 error quoting a flow conntrack never saw, and an unsolicited SYN/ACK."""
    quoted = ip6(CLIENT6, SERVER6, 17, udp_dgram(CLIENT6, SERVER6, 33334, 9, b"gone"))
    err = icmp_msg(1, 4, b"\x00" * 4 + quoted, src=SERVER6, dst=CLIENT6, v6=True)
    return _append(recs, [ip6(SERVER6, CLIENT6, 58, err),
                          ip6(SERVER6, CLIENT6, 6, tcp_seg(SERVER6, CLIENT6, 80, 45005, 11, 22, 0x12))])


POST = {"invalid_causes": post_invalid_causes, "be_liberal": post_be_liberal,
        "midstream": post_midstream, "invalid_leak": post_invalid_leak,
        "ipv6_invalid": post_ipv6_invalid}

IPT_HEAD = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
EST = "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"

# -- the scenarios -------------------------------------------------------------------------

scenario(
    "10_host_firewall_input_output",
    title="Host firewall: INPUT policy DROP with a local web server on 8000, ping to the firewall; "
          "OUTPUT policy DROP lets only ESTABLISHED/RELATED and ICMP out; a SYN to a closed port "
          "dropped (retransmitted)",
    rules="*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT DROP [0:0]\n"
          "-A INPUT -i lo -j ACCEPT\n"
          "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
          "-A INPUT -i lan0 -p tcp -m tcp --dport 8000 -m conntrack --ctstate NEW -j ACCEPT\n"
          "-A INPUT -i lan0 -p icmp -m icmp --icmp-type 8 -j ACCEPT\n"
          "-A OUTPUT -o lo -j ACCEPT\n"
          "-A OUTPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
          "-A OUTPUT -p icmp -j ACCEPT\nCOMMIT\n",
    servers=[http("fw", FW_LAN, 8000)],
    steps=[curl("lan0", f"http://{FW_LAN}:8000/hello.txt", 3), curl("lan0", f"http://{FW_LAN}:8001/", 1.2),
           ping("lan0", CLIENT, FW_LAN, 2)],
)
scenario(
    "11_user_chains_jump_goto_return",
    title="User chains: FORWARD jumps to lan_out, which RETURNs ICMP, goes to 'web' (goto) for "
          "tcp/80, jumps to 'log_drop' for the rest; ICMP accepted back in FORWARD",
    rules=IPT_HEAD + ":lan_out - [0:0]\n:web - [0:0]\n:log_drop - [0:0]\n" + EST +
    "-A FORWARD -i lan0 -o wan0 -j lan_out\n"
    "-A FORWARD -p icmp -j ACCEPT\n"
    "-A lan_out -p icmp -j RETURN\n"
    "-A lan_out -p tcp -m tcp --dport 80 -g web\n"
    "-A lan_out -j log_drop\n"
    "-A lan_out -j ACCEPT\n"
    "-A web -s 10.0.0.3/32 -j DROP\n"
    "-A web -j ACCEPT\n"
    "-A log_drop -p udp -j DROP\n"
    "-A log_drop -j RETURN\nCOMMIT\n",
    servers=[http("wan0", SERVER, 80), http("wan0", SERVER, 81), udp_echo("wan0", SERVER, 5353)],
    steps=[curl("lan0", f"http://{SERVER}/hello.txt", 3), curl("lan0", f"http://{SERVER}:81/hello.txt", 3),
           curl("lan0", f"http://{SERVER}/hello.txt", 1.2, ("--interface", CLIENT2)),
           udp("lan0", CLIENT, SERVER, 5353), ping("lan0", CLIENT, SERVER, 1)],
)
scenario(
    "12_reject_variants",
    title="iptables REJECT variants: tcp-reset (forward and to the firewall), icmp-port-unreachable "
          "for UDP, icmp-host-prohibited, icmp-net-unreachable; the capture lab dropped instead",
    rules="*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
          "-A INPUT -p tcp -m tcp --dport 22 -j REJECT --reject-with tcp-reset\n" + EST +
          "-A FORWARD -p tcp -m tcp --dport 8080 -j REJECT --reject-with tcp-reset\n"
          "-A FORWARD -p udp -m udp --dport 9999 -j REJECT --reject-with icmp-port-unreachable\n"
          "-A FORWARD -p tcp -m tcp --dport 8081 -j REJECT --reject-with icmp-host-prohibited\n"
          "-A FORWARD -p icmp -j REJECT --reject-with icmp-net-unreachable\n"
          "-A FORWARD -p tcp -m tcp --dport 80 -j ACCEPT\nCOMMIT\n",
    capture_rules_replace=[("-j REJECT --reject-with tcp-reset", "-j DROP"),
                           ("-j REJECT --reject-with icmp-port-unreachable", "-j DROP"),
                           ("-j REJECT --reject-with icmp-host-prohibited", "-j DROP"),
                           ("-j REJECT --reject-with icmp-net-unreachable", "-j DROP")],
    servers=[http("wan0", SERVER, 80)],
    steps=[curl("lan0", f"http://{SERVER}/hello.txt", 3), curl("lan0", f"http://{SERVER}:8080/", 0.6),
           udp("lan0", CLIENT, SERVER, 9999, 1, 0.3), curl("lan0", f"http://{SERVER}:8081/", 0.6),
           ping("lan0", CLIENT, SERVER, 1), curl("lan0", f"http://{FW_LAN}:22/", 0.6)],
)
scenario(
    "13_mark_connmark",
    title="mangle MARK on new lan->wan tcp/80, CONNMARK --save-mark, --restore-mark on every packet; "
          "filter accepts by -m mark and -m connmark; unmarked traffic (udp) dropped",
    rules="*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n"
          ":OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"
          "-A PREROUTING -j CONNMARK --restore-mark --nfmask 0xffffffff --ctmask 0xffffffff\n"
          "-A PREROUTING -i lan0 -p tcp -m tcp --dport 80 -m conntrack --ctstate NEW -j MARK --set-xmark 0x1/0xffffffff\n"
          "-A PREROUTING -i lan0 -p icmp -j MARK --set-xmark 0x2/0xffffffff\n"
          "-A PREROUTING -m mark ! --mark 0x0 -j CONNMARK --save-mark --nfmask 0xffffffff --ctmask 0xffffffff\n"
          "COMMIT\n*filter\n:INPUT ACCEPT [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
          "-A FORWARD -m mark --mark 0x1 -j ACCEPT\n"
          "-A FORWARD -m connmark --mark 0x2 -j ACCEPT\nCOMMIT\n",
    servers=[http("wan0", SERVER, 80), udp_echo("wan0", SERVER, 5353)],
    steps=[curl("lan0", f"http://{SERVER}/hello.txt", 3), ping("lan0", CLIENT, SERVER, 2),
           udp("lan0", CLIENT, SERVER, 5353, 1, 0.3)],
)
scenario(
    "14_stateless_matches",
    title="Stateless matches (no conntrack): multiport, iprange, length, ttl, pkttype, addrtype, "
          "tcp-flags and icmp type, both directions written out explicitly",
    rules="*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
          "-A INPUT -m addrtype --dst-type LOCAL -m pkttype --pkt-type unicast -p icmp -m icmp --icmp-type 8 -j ACCEPT\n"
          "-A FORWARD -i lan0 -p tcp -m multiport --dports 80,443,8080 -m iprange --src-range 10.0.0.2-10.0.0.2 -j ACCEPT\n"
          "-A FORWARD -i wan0 -p tcp -m multiport --sports 80,443,8080 -m length --length 0:1400 -j ACCEPT\n"
          "-A FORWARD -i lan0 -p icmp -m ttl --ttl-gt 10 -m length --length 84 -j ACCEPT\n"
          "-A FORWARD -i wan0 -p icmp -m icmp --icmp-type 0 -j ACCEPT\n"
          "-A FORWARD -i lan0 -p tcp -m tcp --tcp-flags SYN,ACK SYN -j DROP\nCOMMIT\n",
    servers=[http("wan0", SERVER, 80), http("wan0", SERVER, 8080), http("wan0", SERVER, 81)],
    steps=[curl("lan0", f"http://{SERVER}/hello.txt", 3), curl("lan0", f"http://{SERVER}:8080/hello.txt", 3),
           curl("lan0", f"http://{SERVER}:81/", 0.6), curl("lan0", f"http://{SERVER}/", 0.6, ("--interface", CLIENT2)),
           ping("lan0", CLIENT, SERVER, 2), ping("lan0", CLIENT, FW_LAN, 1)],
)
scenario(
    "15_recent_original_timing",
    title="-m recent: more than 2 new connections to tcp/80 within 3 s from one source are dropped; "
          "original timing (the 4th attempt is retransmitted, then another after the window)",
    rules=IPT_HEAD + EST +
    "-A FORWARD -i lan0 -p tcp -m tcp --dport 80 -m conntrack --ctstate NEW -m recent --update --seconds 3 --hitcount 2 --name web --mask 255.255.255.255 --rsource -j DROP\n"
    "-A FORWARD -i lan0 -p tcp -m tcp --dport 80 -m conntrack --ctstate NEW -m recent --set --name web --mask 255.255.255.255 --rsource -j ACCEPT\n"
    "COMMIT\n",
    servers=[http("wan0", SERVER, 80)],
    steps=[curl("lan0", f"http://{SERVER}/hello.txt", 2), curl("lan0", f"http://{SERVER}/hello.txt", 2),
           curl("lan0", f"http://{SERVER}/hello.txt", 1.3), ("sleep", "2.0"),
           curl("lan0", f"http://{SERVER}/hello.txt", 2)],
    timing="original",
)
scenario(
    "16_invalid_causes",
    title="conntrack INVALID causes (tcp_loose=0): out-of-window RST, SYN+RST inside a connection, "
          "null scan, xmas (FIN+PSH+URG), SYN+RST, lone FIN, ICMP error without a conntrack entry",
    sysctls={"net.netfilter.nf_conntrack_tcp_loose": 0},
    rules=IPT_HEAD + "-A FORWARD -m conntrack --ctstate INVALID -j DROP\n" + EST +
    "-A FORWARD -i lan0 -o wan0 -j ACCEPT\nCOMMIT\n",
    servers=[http("wan0", SERVER, 80)],
    steps=[curl("lan0", f"http://{SERVER}/hello.txt", 3)],
    post="invalid_causes",
)
scenario(
    "17_icmp_errors_related",
    title="ICMP errors as RELATED: a real port-unreachable from the server's UDP stack and a real "
          "TCP RST; the RELATED rule counts separately from ESTABLISHED",
    rules=IPT_HEAD + "-A FORWARD -m conntrack --ctstate ESTABLISHED -j ACCEPT\n"
    "-A FORWARD -m conntrack --ctstate RELATED -j ACCEPT\n"
    "-A FORWARD -i lan0 -o wan0 -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n",
    servers=[udp_echo("wan0", SERVER, 5353)],
    steps=[udp("lan0", CLIENT, SERVER, 5353, 1, 0.3), udp("lan0", CLIENT, SERVER, 9, 1, 0.3),
           curl("lan0", f"http://{SERVER}:81/", 0.6)],
)
scenario(
    "18_udp_stream_timeout",
    title="UDP timeouts with original timing: udp_timeout=2, udp_timeout_stream=6; a stream kept "
          "alive past 2 s becomes ASSURED and survives a 3 s gap; a one-shot flow expires",
    sysctls={"net.netfilter.nf_conntrack_udp_timeout": 2,
             "net.netfilter.nf_conntrack_udp_timeout_stream": 6},
    rules=IPT_HEAD + EST + "-A FORWARD -i lan0 -o wan0 -p udp -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n",
    servers=[udp_echo("wan0", SERVER, 5353), udp_echo("wan0", SERVER, 5354)],
    steps=[udp("lan0", CLIENT, SERVER, 5354, 1, 0.3, 0, 41000),
           udp("lan0", CLIENT, SERVER, 5353, 5, 0.3, 0.8, 41001), ("sleep", "3.0"),
           udp("lan0", CLIENT, SERVER, 5353, 1, 0.3, 0, 41001),
           udp("lan0", CLIENT, SERVER, 5354, 1, 0.3, 0, 41000)],
    timing="original",
)
for _loose in (0, 1):
    scenario(
        f"19_midstream_loose{_loose}",
        title=f"Mid-stream pickup with nf_conntrack_tcp_loose={_loose}: a real HTTP exchange with its "
              "handshake cut out of the capture",
        sysctls={"net.netfilter.nf_conntrack_tcp_loose": _loose},
        rules=IPT_HEAD + "-A FORWARD -m conntrack --ctstate INVALID -j DROP\n" + EST +
        "-A FORWARD -i lan0 -o wan0 -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n",
        servers=[http("wan0", SERVER, 80)],
        steps=[curl("lan0", f"http://{SERVER}/hello.txt", 3)],
        post="midstream",
        capture_from="19_midstream_loose0" if _loose else None,
    )
scenario(
    "20_be_liberal",
    title="nf_conntrack_tcp_be_liberal=1: a far out-of-window data segment is not INVALID",
    sysctls={"net.netfilter.nf_conntrack_tcp_be_liberal": 1, "net.netfilter.nf_conntrack_tcp_loose": 0},
    rules=IPT_HEAD + "-A FORWARD -m conntrack --ctstate INVALID -j DROP\n" + EST +
    "-A FORWARD -i lan0 -o wan0 -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n",
    servers=[http("wan0", SERVER, 80)],
    steps=[curl("lan0", f"http://{SERVER}/hello.txt", 3)],
    post="be_liberal",
)
scenario(
    "21_tcp_close_time_wait_reopen",
    title="TCP close and reopen: HTTP/1.0 exchanges from the same client port 40000; the server "
          "closes first, the conntrack entry is in TIME_WAIT when the next SYN reopens it",
    rules=IPT_HEAD + EST + "-A FORWARD -i lan0 -o wan0 -p tcp -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n",
    servers=[http("wan0", SERVER, 80)],
    steps=[tcp("lan0", CLIENT, 40000, SERVER, 80), tcp("lan0", CLIENT, 40000, SERVER, 80)],
)
scenario(
    "22_snat_port_clash",
    title="SNAT of two clients using the same source port 40000 to the same server: the second "
          "mapping clashes and the kernel picks another port",
    rules="*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"
          "-A POSTROUTING -o wan0 -j SNAT --to-source 198.51.100.1\nCOMMIT\n" + IPT_HEAD + EST +
          "-A FORWARD -i lan0 -o wan0 -j ACCEPT\nCOMMIT\n",
    servers=[http("wan0", SERVER, 80)],
    steps=[("lan0", [PY, "-c", "import subprocess,sys\n"
                     "ps=[subprocess.Popen([sys.executable,'-c',sys.argv[1],src,'40000','" + SERVER + "','80'])"
                     " for src in ('" + CLIENT + "','" + CLIENT2 + "')]\n[p.wait() for p in ps]", TCP_CLIENT])],
)
scenario(
    "23_dnat_port_forward_hairpin",
    title="DNAT port forward 198.51.100.1:8080 -> 10.0.0.80:80 used from outside and from the LAN "
          "(hairpin NAT: SNAT to the firewall's LAN address so replies come back through it)",
    rules="*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"
          "-A PREROUTING -d 198.51.100.1/32 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.0.0.80:80\n"
          "-A POSTROUTING -s 10.0.0.0/24 -d 10.0.0.80/32 -p tcp -m tcp --dport 80 -j SNAT --to-source 10.0.0.1\n"
          "COMMIT\n" + IPT_HEAD + EST +
          "-A FORWARD -d 10.0.0.80/32 -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT -j ACCEPT\nCOMMIT\n",
    servers=[http("lan0", LANSRV, 80)],
    steps=[curl("wan0", f"http://{FW_WAN}:8080/hello.txt", 3, ("--interface", SERVER)),
           curl("lan0", f"http://{FW_WAN}:8080/hello.txt", 3)],
)
scenario(
    "24_redirect_local_proxy",
    title="REDIRECT of lan tcp/80 to a proxy port 3128 on the firewall itself (INPUT + OUTPUT path "
          "with the reply de-NAT'd to look like the original server)",
    rules="*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"
          "-A PREROUTING -i lan0 -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 3128\nCOMMIT\n"
          "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
          "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
          "-A INPUT -i lan0 -p tcp -m tcp --dport 3128 -j ACCEPT\nCOMMIT\n",
    servers=[http("fw", FW_LAN, 3128)],
    steps=[curl("lan0", f"http://{SERVER}/hello.txt", 3)],
)
scenario(
    "25_masquerade_udp_icmp",
    title="iptables MASQUERADE of UDP (two exchanges) and ICMP echo (two pings); replies de-NAT'd",
    rules="*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"
          "-A POSTROUTING -o wan0 -j MASQUERADE\nCOMMIT\n" + IPT_HEAD + EST +
          "-A FORWARD -i lan0 -o wan0 -j ACCEPT\nCOMMIT\n",
    servers=[udp_echo("wan0", SERVER, 5353)],
    steps=[udp("lan0", CLIENT, SERVER, 5353, 2, 0.5), ping("lan0", CLIENT, SERVER, 2),
           ping("lan0", CLIENT2, SERVER, 1)],
)
scenario(
    "26_invalid_leaks_past_snat",
    title="An INVALID segment (out of window, tcp_loose=0) is forwarded without SNAT: the ruleset "
          "forgot to drop INVALID, so the private source address leaks",
    sysctls={"net.netfilter.nf_conntrack_tcp_loose": 0},
    rules="*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"
          "-A POSTROUTING -o wan0 -j MASQUERADE\nCOMMIT\n" + IPT_HEAD + EST +
          "-A FORWARD -i lan0 -o wan0 -j ACCEPT\nCOMMIT\n",
    servers=[http("wan0", SERVER, 80)],
    steps=[curl("lan0", f"http://{SERVER}/hello.txt", 3)],
    post="invalid_leak",
)
IP6T = ("*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
        "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
        "-A INPUT -p ipv6-icmp -m icmp6 --icmpv6-type 128 -j ACCEPT\n"
        "-A FORWARD -m conntrack --ctstate INVALID -j DROP\n"
        "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
        "-A FORWARD -i lan0 -o wan0 -p tcp -m tcp --dport 80 -j ACCEPT\n"
        "-A FORWARD -i lan0 -o wan0 -p ipv6-icmp -m icmp6 --icmpv6-type 128 -j ACCEPT\n"
        "-A FORWARD -i lan0 -p tcp -m tcp --dport 8080 -j REJECT --reject-with tcp-reset\n"
        "-A FORWARD -i lan0 -p udp -j REJECT --reject-with icmp6-port-unreachable\n"
        "-A FORWARD -i lan0 -j REJECT --reject-with icmp6-adm-prohibited\nCOMMIT\n")
scenario(
    "27_ipv6_forward_reject",
    title="IPv6 (ip6tables): stateful forward of HTTP and ICMPv6 echo, ping6 to the firewall, REJECT "
          "with tcp-reset, icmp6-port-unreachable and icmp6-adm-prohibited; an ICMPv6 error with no "
          "entry and an unsolicited SYN/ACK (INVALID)",
    topology=TOPO46, rules_name="rules.ip6t", rules=IP6T,
    capture_rules_replace=[("-j REJECT --reject-with tcp-reset", "-j DROP"),
                           ("-j REJECT --reject-with icmp6-port-unreachable", "-j DROP"),
                           ("-j REJECT --reject-with icmp6-adm-prohibited", "-j DROP")],
    servers=[http("wan0", SERVER6, 80)],
    steps=[curl("lan0", f"http://[{SERVER6}]/hello.txt", 3), ping("lan0", CLIENT6, SERVER6, 2),
           ping("lan0", CLIENT6, FW_LAN6, 1), curl("lan0", f"http://[{SERVER6}]:8080/", 0.6),
           udp("lan0", CLIENT6, SERVER6, 9999, 1, 0.3), curl("lan0", f"http://[{SERVER6}]:22/", 0.6)],
    post="ipv6_invalid",
)
scenario(
    "28_inet_dual_stack",
    title="nft inet table on a dual-stack firewall: one ruleset for IPv4 and IPv6 (HTTP and echo "
          "both ways), masquerade of IPv4 only, reject with icmpx for the rest",
    topology=TOPO46, rules_name="rules.nft",
    rules="table inet fw {\n"
          "\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n"
          "\t\tct state established,related counter accept\n"
          "\t\tct state invalid counter drop\n"
          "\t\tiifname \"lan0\" tcp dport 80 counter accept\n"
          "\t\tiifname \"lan0\" meta l4proto { icmp, ipv6-icmp } counter accept\n"
          "\t\tiifname \"lan0\" counter reject with icmpx admin-prohibited\n\t}\n"
          "\tchain input {\n\t\ttype filter hook input priority filter; policy drop;\n"
          "\t\tct state established,related accept\n"
          "\t\ticmpv6 type echo-request counter accept\n\t\ticmp type echo-request counter accept\n\t}\n}\n"
          "table ip nat {\n\tchain post {\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n"
          "\t\toifname \"wan0\" counter masquerade\n\t}\n}\n",
    capture_rules_replace=[("reject with icmpx admin-prohibited", "drop")],
    servers=[http("wan0", SERVER6, 80), http("wan0", SERVER, 80)],
    steps=[curl("lan0", f"http://[{SERVER6}]/hello.txt", 3), curl("lan0", f"http://{SERVER}/hello.txt", 3),
           ping("lan0", CLIENT6, SERVER6, 1), ping("lan0", CLIENT, SERVER, 1),
           ping("lan0", CLIENT6, FW_LAN6, 1), curl("lan0", f"http://[{SERVER6}]:81/", 0.6)],
)
scenario(
    "29_nft_sets_vmaps_intervals",
    title="nftables named sets (ports, and an interval set of addresses), an anonymous set, a verdict "
          "map dispatching by protocol to user chains, counters",
    rules_name="rules.nft",
    rules="table ip filter {\n"
          "\tset web_ports {\n\t\ttype inet_service\n\t\telements = { 80, 443, 8080 }\n\t}\n"
          "\tset trusted {\n\t\ttype ipv4_addr\n\t\tflags interval\n\t\telements = { 10.0.0.2-10.0.0.2, 10.0.0.64/26 }\n\t}\n"
          "\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n"
          "\t\tct state established,related counter accept\n"
          "\t\tiifname \"lan0\" meta l4proto vmap { tcp : jump tcp_out, udp : jump udp_out, icmp : accept }\n\t}\n"
          "\tchain tcp_out {\n\t\tip saddr @trusted tcp dport @web_ports counter accept\n"
          "\t\tcounter drop\n\t}\n"
          "\tchain udp_out {\n\t\tudp dport { 53, 5353 } counter accept\n\t}\n}\n",
    servers=[http("wan0", SERVER, 80), http("wan0", SERVER, 8080), http("wan0", SERVER, 81),
             udp_echo("wan0", SERVER, 5353)],
    steps=[curl("lan0", f"http://{SERVER}/hello.txt", 3), curl("lan0", f"http://{SERVER}:8080/hello.txt", 3),
           curl("lan0", f"http://{SERVER}:81/", 0.6), curl("lan0", f"http://{SERVER}/", 0.6, ("--interface", CLIENT2)),
           udp("lan0", CLIENT, SERVER, 5353, 1, 0.3), udp("lan0", CLIENT, SERVER, 9999, 1, 0.3),
           ping("lan0", CLIENT, SERVER, 1)],
)
scenario(
    "30_nft_two_base_chains_same_hook",
    title="Two nftables base chains on the forward hook at priorities -10 and 10: the first marks "
          "and accepts (accept ends only that chain), the second drops by mark and port",
    rules_name="rules.nft",
    rules="table inet early {\n\tchain forward {\n\t\ttype filter hook forward priority -10; policy accept;\n"
          "\t\ttcp dport 8080 meta mark set 0x42 counter\n"
          "\t\tct state established counter accept\n"
          "\t\ticmp type echo-request counter accept\n\t}\n}\n"
          "table inet late {\n\tchain forward {\n\t\ttype filter hook forward priority 10; policy accept;\n"
          "\t\tmeta mark 0x42 counter drop\n"
          "\t\ticmp type echo-request counter drop\n\t}\n}\n",
    servers=[http("wan0", SERVER, 80), http("wan0", SERVER, 8080)],
    steps=[curl("lan0", f"http://{SERVER}/hello.txt", 3), curl("lan0", f"http://{SERVER}:8080/", 0.6),
           ping("lan0", CLIENT, SERVER, 1)],
)
IPT_TRANSLATE_SRC = ("*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT ACCEPT [0:0]\n"
                     "-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
                     "-A INPUT -i lan0 -p icmp -m icmp --icmp-type 8 -j ACCEPT\n"
                     "-A FORWARD -m conntrack --ctstate INVALID -j DROP\n"
                     "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
                     "-A FORWARD -i lan0 -o wan0 -p tcp -m multiport --dports 80,8080 -j ACCEPT\n"
                     "-A FORWARD -i lan0 -o wan0 -p udp -m udp --dport 5353 -j ACCEPT\n"
                     "-A FORWARD -i lan0 -p tcp -j REJECT --reject-with tcp-reset\nCOMMIT\n")
scenario(
    "31_translate_iptables",
    title="iptables ruleset (the source of scenario 32's iptables-restore-translate output)",
    rules=IPT_TRANSLATE_SRC,
    capture_rules_replace=[("-j REJECT --reject-with tcp-reset", "-j DROP")],
    servers=[http("wan0", SERVER, 80), udp_echo("wan0", SERVER, 5353)],
    steps=[curl("lan0", f"http://{SERVER}/hello.txt", 3), udp("lan0", CLIENT, SERVER, 5353, 1, 0.3),
           curl("lan0", f"http://{SERVER}:81/", 0.6), ping("lan0", CLIENT, FW_LAN, 1)],
)
scenario(
    "32_translate_nft",
    title="The same capture as 31 through `iptables-restore-translate` of its ruleset (nft): the "
          "kernel's answers must match scenario 31 packet by packet",
    rules_name="rules.nft", rules=None, translate_from="31_translate_iptables",
    capture_from="31_translate_iptables",
)
scenario(
    "33_ftp_helper",
    title="FTP with `-j CT --helper ftp` in raw PREROUTING: the passive data connection is RELATED "
          "(an expectation), accepted only by the RELATED rule",
    rules="*raw\n:PREROUTING ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
          "-A PREROUTING -i lan0 -p tcp -m tcp --dport 21 -j CT --helper ftp\nCOMMIT\n" + IPT_HEAD +
          "-A FORWARD -m conntrack --ctstate ESTABLISHED -j ACCEPT\n"
          "-A FORWARD -m conntrack --ctstate RELATED -m helper --helper ftp -j ACCEPT\n"
          "-A FORWARD -i lan0 -o wan0 -p tcp -m tcp --dport 21 -m conntrack --ctstate NEW -j ACCEPT\nCOMMIT\n",
    servers=[("wan0", [PY, "-c", (
        "import socket,sys,threading\n"
        "ls=socket.socket();ls.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
        "ls.bind((sys.argv[1],21));ls.listen(1);c,_=ls.accept();f=c.makefile('rb')\n"
        "c.sendall(b'220 nfreplay ftp\\r\\n')\n"
        "for line in f:\n"
        " cmd=line.decode().strip().split(' ')[0].upper()\n"
        " if cmd=='USER': c.sendall(b'331 ok\\r\\n')\n"
        " elif cmd=='PASS': c.sendall(b'230 ok\\r\\n')\n"
        " elif cmd=='PASV':\n"
        "  d=socket.socket();d.bind((sys.argv[1],50021));d.listen(1)\n"
        "  c.sendall(('227 Entering Passive Mode (%s,195,101)\\r\\n'%sys.argv[1].replace('.',',')).encode())\n"
        " elif cmd=='RETR':\n"
        "  c.sendall(b'150 here\\r\\n');dc,_=d.accept();dc.sendall(b'file contents\\n'*20);dc.close();d.close()\n"
        "  c.sendall(b'226 done\\r\\n')\n"
        " elif cmd=='QUIT': c.sendall(b'221 bye\\r\\n');break\n"
        " else: c.sendall(b'502 no\\r\\n')\n"
        "c.close()"), SERVER])],
    steps=[curl("lan0", f"ftp://{SERVER}/file.txt", 4, ("--ftp-pasv", "--disable-epsv", "-u", "a:b"))],
)

NAT_HEAD = "*nat\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\n"
scenario(
    "34_snat_source_mapping_reuse",
    title="find_appropriate_src: one internal source (10.0.0.2:41000 UDP, then :42000 TCP) to several "
          "destinations behind MASQUERADE with per-destination port ranges; a flow whose range excludes "
          "its own port reuses the newest in-range mapping of the same source (UDP 5354 gets 40001 of "
          "the 5356 flow, not 40000; TCP 8080 gets 40000), a range holding no earlier mapping keeps the "
          "original port (UDP 5355 -> 41000)",
    rules=NAT_HEAD +
    "-A POSTROUTING -o wan0 -p udp -m udp --dport 5353 -j MASQUERADE --to-ports 40000\n"
    "-A POSTROUTING -o wan0 -p udp -m udp --dport 5356 -j MASQUERADE --to-ports 40001\n"
    "-A POSTROUTING -o wan0 -p udp -m udp --dport 5355 -j MASQUERADE --to-ports 41000-41010\n"
    "-A POSTROUTING -o wan0 -p udp -j MASQUERADE --to-ports 40000-40099\n"
    "-A POSTROUTING -o wan0 -p tcp -m tcp --dport 80 -j MASQUERADE --to-ports 40000\n"
    "-A POSTROUTING -o wan0 -p tcp -j MASQUERADE --to-ports 40000-40099\nCOMMIT\n" + IPT_HEAD + EST +
    "-A FORWARD -i lan0 -o wan0 -j ACCEPT\nCOMMIT\n",
    servers=[udp_echo("wan0", SERVER, 5353), udp_echo("wan0", SERVER, 5354), udp_echo("wan0", SERVER, 5355),
             udp_echo("wan0", SERVER, 5356), http("wan0", SERVER, 80), http("wan0", SERVER, 8080)],
    steps=[udp("lan0", CLIENT, SERVER, 5353, 2, 0.5, 0, 41000), udp("lan0", CLIENT, SERVER, 5356, 1, 0.5, 0, 41000),
           udp("lan0", CLIENT, SERVER, 5354, 2, 0.5, 0, 41000), udp("lan0", CLIENT, SERVER, 5355, 1, 0.5, 0, 41000),
           tcp("lan0", CLIENT, 42000, SERVER, 80), tcp("lan0", CLIENT, 42000, SERVER, 8080)],
)
PUBLIC_VIP = "192.0.2.80"  # a routed public address DNATed by the firewall (not one of its own)
scenario(
    "35_dnat_reject_responses",
    title="Port forwards of a routed public address 192.0.2.80 to 10.0.0.80, rejected in FORWARD: the RST "
          "(tcp-reset) carries the DNATed entry and leaves as 192.0.2.80:8080 (the nat POSTROUTING chain "
          "runs for it: MASQUERADE binds the entry); a RELATED icmp-port-unreachable for an established UDP "
          "flow leaves from 192.0.2.80; one for a first packet (unconfirmed entry: INVALID) is not "
          "translated; the capture lab dropped instead",
    rules=NAT_HEAD +
    f"-A PREROUTING -d {PUBLIC_VIP}/32 -i wan0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.0.0.80:80\n"
    f"-A PREROUTING -d {PUBLIC_VIP}/32 -i wan0 -p udp -m udp --dport 5353 -j DNAT --to-destination 10.0.0.80:5353\n"
    f"-A PREROUTING -d {PUBLIC_VIP}/32 -i wan0 -p udp -m udp --dport 5354 -j DNAT --to-destination 10.0.0.80:5354\n"
    "-A POSTROUTING -o wan0 -j MASQUERADE\nCOMMIT\n" + IPT_HEAD +
    "-A FORWARD -i wan0 -p udp -m udp --dport 5353 -m conntrack --ctstate ESTABLISHED --ctdir ORIGINAL "
    "-j REJECT --reject-with icmp-port-unreachable\n" + EST +
    "-A FORWARD -i wan0 -p tcp -m tcp --dport 80 -j REJECT --reject-with tcp-reset\n"
    "-A FORWARD -i wan0 -p udp -m udp --dport 5354 -j REJECT --reject-with icmp-port-unreachable\n"
    "-A FORWARD -d 10.0.0.80/32 -i wan0 -o lan0 -p udp -m udp --dport 5353 -j ACCEPT\nCOMMIT\n",
    capture_rules_replace=[("-j REJECT --reject-with tcp-reset", "-j DROP"),
                           ("-j REJECT --reject-with icmp-port-unreachable", "-j DROP")],
    servers=[udp_echo("lan0", LANSRV, 5353), http("lan0", LANSRV, 80)],
    steps=[tcp("wan0", SERVER, 45000, PUBLIC_VIP, 8080), udp("wan0", SERVER, PUBLIC_VIP, 5353, 2, 0.5, 0, 41000),
           udp("wan0", SERVER, PUBLIC_VIP, 5354, 1, 0.3, 0, 41001)],
)


# -- building -----------------------------------------------------------------------------

def rules_name(scn):
    return scn.get("rules_name", "rules.ipt")


def rules_format(scn):
    n = rules_name(scn)
    return "nft" if n.endswith(".nft") else ("ip6tables" if n.endswith(".ip6t") else "iptables")


def build(root, only=None, recapture=False, oracle=True, report=None):
    """(Re)build the scenarios under `root` (tests/fixtures/scenarios). Returns a summary dict."""
    from .determinism import same_run, show_text
    from .kernel import run_kernel, write_json

    report = report or log.info
    summary = {}
    for name, scn in SCENARIOS.items():
        if only and name not in only:
            continue
        d = os.path.join(root, name)
        os.makedirs(d, exist_ok=True)
        topo = json.loads(json.dumps(scn["topology"]))
        topo["sysctls"] = dict(scn.get("sysctls") or {})
        with open(os.path.join(d, "topology.json"), "w") as f:
            json.dump(topo, f, indent=1)
            f.write("\n")
        rules = scn["rules"]
        if scn.get("translate_from"):
            src = SCENARIOS[scn["translate_from"]]["rules"]
            rules = subprocess.run(["iptables-restore-translate", "-f", "/dev/stdin"], input=src,
                                   capture_output=True, text=True, check=True).stdout
        with open(os.path.join(d, rules_name(scn)), "w") as f:
            f.write(rules)
        meta = {"title": scn["title"], "timing": scn["timing"], "rules": rules_name(scn),
                "capture_lab_rules_replace": scn.get("capture_rules_replace"),
                "crafted_packets": scn.get("post"), "capture_from": scn.get("capture_from"),
                "translated_from": scn.get("translate_from")}
        mp = os.path.join(d, "scenario.json")
        cap = os.path.join(d, "capture.pcap")
        if scn.get("capture_from"):
            srcd = os.path.join(root, scn["capture_from"])
            if scn["capture_from"] != name:
                shutil.copy(os.path.join(srcd, "capture.pcap"), cap)
        if not os.path.exists(cap) or (recapture and not scn.get("capture_from")):
            report(f"[{name}] capturing real traffic ...")
            crules = rules
            for a, b in scn.get("capture_rules_replace") or []:
                crules = crules.replace(a, b)
            recs, steps = capture(topo, HOSTS, crules, rules_format(scn), scn["servers"], scn["steps"],
                                  fw_sysctls=scn.get("sysctls"))
            if scn.get("post"):
                recs = POST[scn["post"]](recs)
            write_pcap(cap, [(ts, eth(l3)) for ts, l3 in recs])
            meta["capture_steps"] = steps
            meta["capture_packets"] = len(recs)
        elif os.path.exists(mp):
            old = json.load(open(mp))
            meta["capture_steps"] = old.get("capture_steps")
            meta["capture_packets"] = old.get("capture_packets", len(read_pcap(cap)))
        else:
            meta["capture_packets"] = len(read_pcap(cap))
        with open(mp, "w") as f:
            json.dump(meta, f, indent=1)
            f.write("\n")
        if not oracle:
            continue
        rp = os.path.join(d, rules_name(scn))
        r1 = run_kernel(cap, rp, topo, timing=scn["timing"])
        r2 = run_kernel(cap, rp, topo, timing=scn["timing"])
        diffs = same_run(r1, r2)
        write_json(r1, os.path.join(d, "oracle_out.json"))
        with open(os.path.join(d, "summary.txt"), "w") as f:
            f.write(f"# {name}: {scn['title']}\n")
            f.write(show_text(r1))
        with open(os.path.join(d, "determinism.txt"), "w") as f:
            f.write("IDENTICAL\n" if not diffs else f"DIFFERENT ({len(diffs)}):\n" + "\n".join(diffs) + "\n")
        summary[name] = {"packets": r1["input"]["packets"], "outcomes": r1["summary"]["outcomes"],
                         "identical": not diffs, "checks_ok": r1["checks"]["kernel_counters_equal_trace_counts"],
                         "barrier_timeouts": r1["checks"]["barrier_timeouts"]}
        report(f"[{name}] {json.dumps(summary[name])}")
    return summary


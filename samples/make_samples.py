"""Build the sample cases deterministically with dpkt: `python samples/make_samples.py`.

Each case folder holds capture.pcap (Ethernet, a few dozen packets with correct TCP sequence/ack
numbers, windows and checksums, so conntrack tracks them as the kernel would), rules.ipt, host.toml
and a one-line README.md. Timestamps are fixed, so the files are byte-for-byte reproducible.

    forward_blocked_service   a forwarding firewall that lets web/DNS/ping out and blocks SSH
    port_forward_nat          DNAT port forward + masquerade, and an INVALID packet that leaks un-NATed
    invalid_out_of_window     out-of-window RST/data injected into a live connection -> INVALID
    ruleset_change            the same traffic under rules.ipt and rules_new.ipt (nfreplay diff)
"""

from __future__ import annotations

import struct
import sys
from pathlib import Path

import dpkt

HERE = Path(__file__).resolve().parent
T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
FW_MAC = b"\x02\x6e\x66\x00\x00\x01"
SIDE_MAC = b"\x02\x6e\x66\x00\x00\x02"

HOST_TOML = """\
# The firewall: lan0 inside (10.0.0.0/24), wan0 outside, default route via wan0.
ip_forward = true

[[interfaces]]
name = "lan0"
addresses = ["10.0.0.1/24"]

[[interfaces]]
name = "wan0"
addresses = ["198.51.100.1/24"]

[[routes]]
prefix = "0.0.0.0/0"
interface = "wan0"
via = "198.51.100.254"

[sysctls]
"net.netfilter.nf_conntrack_tcp_loose" = 1
"net.netfilter.nf_conntrack_tcp_be_liberal" = 0
"""


def _ip(a: str) -> bytes:
    return bytes(int(x) for x in a.split("."))


class Capture:
    """Collects Ethernet frames with timestamps; write() emits a classic pcap."""

    def __init__(self):
        self.frames: list[tuple[float, bytes]] = []
        self._ip_id = 1000

    def ip(self, t: float, src: str, dst: str, l4, proto: int, ttl: int = 64):
        self._ip_id += 1
        ip = dpkt.ip.IP(src=_ip(src), dst=_ip(dst), p=proto, ttl=ttl, id=self._ip_id, df=1, data=l4)
        ip.len = 20 + len(bytes(l4))
        ip = dpkt.ip.IP(bytes(ip))  # serialise once: dpkt fills in the IP and L4 checksums
        eth = dpkt.ethernet.Ethernet(src=SIDE_MAC, dst=FW_MAC, type=dpkt.ethernet.ETH_TYPE_IP, data=ip)
        self.frames.append((T0 + t, bytes(eth)))

    def write(self, path: Path):
        with open(path, "wb") as f:
            w = dpkt.pcap.Writer(f, linktype=dpkt.pcap.DLT_EN10MB, nano=False)
            for ts, fr in sorted(self.frames, key=lambda x: x[0]):
                w.writepkt(fr, ts=ts)


def _tcp(sport, dport, seq, ack, flags, win=64240, payload=b"", mss=None):
    opts = b"" if mss is None else struct.pack("!BBH", 2, 4, mss)
    t = dpkt.tcp.TCP(sport=sport, dport=dport, seq=seq & 0xFFFFFFFF, ack=ack & 0xFFFFFFFF, flags=flags, win=win,
                     opts=opts, data=payload)
    t.off = (20 + len(opts)) // 4
    return t


S, A, F, R, P = dpkt.tcp.TH_SYN, dpkt.tcp.TH_ACK, dpkt.tcp.TH_FIN, dpkt.tcp.TH_RST, dpkt.tcp.TH_PUSH


class TcpConn:
    """One TCP connection as seen at the firewall: cli -> srv (the srv side may be seen under another
    address/port, e.g. the reply to a DNATed or masqueraded connection)."""

    def __init__(self, cap: Capture, cli, sport, srv, dport, isn_c, isn_s, reply_src=None, reply_sport=None,
                 reply_dst=None, reply_dport=None):
        self.cap, self.cli, self.sport, self.srv, self.dport = cap, cli, sport, srv, dport
        self.rsrc, self.rsport = reply_src or srv, reply_sport or dport
        self.rdst, self.rdport = reply_dst or cli, reply_dport or sport
        self.c, self.s = isn_c, isn_s  # next sequence numbers

    def o(self, t, flags, payload=b"", seq=None, ack=None, mss=None, win=64240):
        tcp = _tcp(self.sport, self.dport, self.c if seq is None else seq, self.s if ack is None else ack, flags,
                   win=win, payload=payload, mss=mss)
        self.cap.ip(t, self.cli, self.srv, tcp, dpkt.ip.IP_PROTO_TCP)
        if seq is None:
            self.c += len(payload) + (1 if flags & (S | F) else 0)

    def r(self, t, flags, payload=b"", seq=None, ack=None, mss=None, win=65160):
        tcp = _tcp(self.rsport, self.rdport, self.s if seq is None else seq, self.c if ack is None else ack, flags,
                   win=win, payload=payload, mss=mss)
        self.cap.ip(t, self.rsrc, self.rdst, tcp, dpkt.ip.IP_PROTO_TCP)
        if seq is None:
            self.s += len(payload) + (1 if flags & (S | F) else 0)

    def handshake(self, t):
        self.o(t, S, mss=1460)
        self.r(t + 0.010, S | A, mss=1460)
        self.o(t + 0.020, A)

    def exchange(self, t, request: bytes, response: bytes):
        self.o(t, P | A, request)
        self.r(t + 0.015, A)
        self.r(t + 0.030, P | A, response)
        self.o(t + 0.040, A)

    def close(self, t):
        self.o(t, F | A)
        self.r(t + 0.010, F | A)
        self.o(t + 0.020, A)


def _http(path="/", host="example.net"):
    return f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n".encode()


def _http_response(n=600):
    body = b"x" * n
    return b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: %d\r\n\r\n" % n + body


def _dns_query(qid: int, name: str) -> bytes:
    q = dpkt.dns.DNS(id=qid, op=dpkt.dns.DNS_RD, qd=[dpkt.dns.DNS.Q(name=name, type=dpkt.dns.DNS_A)])
    return bytes(q)


def _dns_answer(qid: int, name: str, addr: str) -> bytes:
    an = dpkt.dns.DNS.RR(name=name, type=dpkt.dns.DNS_A, ttl=300, rdata=_ip(addr))
    a = dpkt.dns.DNS(id=qid, op=dpkt.dns.DNS_QR | dpkt.dns.DNS_RD | dpkt.dns.DNS_RA,
                     qd=[dpkt.dns.DNS.Q(name=name, type=dpkt.dns.DNS_A)], an=[an])
    return bytes(a)


def dns(cap: Capture, t, cli, sport, srv, qid, name, answer, reply_dst=None):
    """A DNS query and its answer (reply_dst: where the answer arrives, e.g. the masquerade address)."""
    cap.ip(t, cli, srv, dpkt.udp.UDP(sport=sport, dport=53, data=_dns_query(qid, name),
                                    ulen=8 + len(_dns_query(qid, name))), dpkt.ip.IP_PROTO_UDP)
    ans = _dns_answer(qid, name, answer)
    cap.ip(t + 0.012, srv, reply_dst or cli, dpkt.udp.UDP(sport=53, dport=sport, data=ans, ulen=8 + len(ans)),
           dpkt.ip.IP_PROTO_UDP)


def ping(cap: Capture, t, src, dst, ident, seq, reply=True):
    payload = bytes(range(56))
    echo = dpkt.icmp.ICMP(type=8, code=0, data=dpkt.icmp.ICMP.Echo(id=ident, seq=seq, data=payload))
    cap.ip(t, src, dst, echo, dpkt.ip.IP_PROTO_ICMP)
    if reply:
        er = dpkt.icmp.ICMP(type=0, code=0, data=dpkt.icmp.ICMP.Echo(id=ident, seq=seq, data=payload))
        cap.ip(t + 0.008, dst, src, er, dpkt.ip.IP_PROTO_ICMP)


def syn_attempts(cap: Capture, t, cli, sport, srv, dport, isn, tries=3):
    """A SYN and its retransmissions (1 s, then 2 s later), as Linux sends them when nothing answers."""
    for dt in (0.0, 1.0, 3.0)[:tries]:
        cap.ip(t + dt, cli, srv, _tcp(sport, dport, isn, 0, S, mss=1460), dpkt.ip.IP_PROTO_TCP)


# ------------------------------------------------------------------ cases
FORWARD_RULES = """\
# A small office gateway: the inside may browse, resolve names and ping; nothing else goes out.
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -i lan0 -p icmp -m icmp --icmp-type 8 -j ACCEPT
-A FORWARD -m conntrack --ctstate INVALID -j DROP
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i lan0 -o wan0 -p tcp -m multiport --dports 80,443 -j ACCEPT
-A FORWARD -i lan0 -o wan0 -p tcp -m tcp --dport 443 -s 10.0.0.7 -j DROP
-A FORWARD -i lan0 -o wan0 -p udp -m udp --dport 53 -j ACCEPT
-A FORWARD -i lan0 -o wan0 -p icmp -m icmp --icmp-type 8 -j ACCEPT
-A FORWARD -i lan0 -o wan0 -p tcp -m tcp --dport 8080 -j ACCEPT
COMMIT
"""


def forward_blocked_service(cap: Capture):
    dns(cap, 0.0, "10.0.0.2", 51000, "198.51.100.53", 0x1a2b, "example.net", "203.0.113.10")
    c = TcpConn(cap, "10.0.0.2", 40100, "203.0.113.10", 80, 1_000_000, 7_000_000)
    c.handshake(0.05)
    c.exchange(0.10, _http(), _http_response())
    c.close(0.20)
    ping(cap, 1.0, "10.0.0.2", "203.0.113.10", 0x4242, 1)
    ping(cap, 1.5, "10.0.0.2", "10.0.0.1", 0x4243, 1)  # the firewall itself
    # SSH out: blocked by the FORWARD policy; the client retransmits its SYN
    syn_attempts(cap, 2.0, "10.0.0.3", 52200, "203.0.113.22", 22, 3_000_000)
    # a second host tries SSH too
    syn_attempts(cap, 2.5, "10.0.0.4", 52300, "203.0.113.22", 22, 4_000_000, tries=2)
    c2 = TcpConn(cap, "10.0.0.3", 40200, "203.0.113.10", 443, 5_000_000, 9_000_000)
    c2.handshake(6.0)
    c2.exchange(6.1, b"\x16\x03\x01" + bytes(200), b"\x16\x03\x03" + bytes(900))
    c2.close(6.3)
    # unsolicited inbound RDP probe from outside: dropped by the policy
    syn_attempts(cap, 7.0, "192.0.2.99", 61000, "10.0.0.5", 3389, 11_000_000, tries=2)


PORT_FORWARD_RULES = """\
# Port forward wan0:8080 -> 10.0.0.10:80, masquerade the inside. FORWARD accepts everything from the
# inside (no INVALID rule): an INVALID packet from the inside leaves un-NATed.
*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
-A PREROUTING -i wan0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 10.0.0.10:80
-A POSTROUTING -o wan0 -s 10.0.0.0/24 -j MASQUERADE
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i wan0 -o lan0 -d 10.0.0.10/32 -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT -j ACCEPT
-A FORWARD -i lan0 -o wan0 -j ACCEPT
COMMIT
"""


def port_forward_nat(cap: Capture):
    # outside client -> the public 198.51.100.1:8080; the reply comes back from 10.0.0.10:80
    c = TcpConn(cap, "203.0.113.50", 50500, "198.51.100.1", 8080, 20_000_000, 30_000_000,
                reply_src="10.0.0.10", reply_sport=80)
    c.handshake(0.0)
    c.exchange(0.05, _http(host="shop.example"), _http_response(1200))
    c.close(0.2)
    # inside client browsing out, masqueraded: replies arrive for 198.51.100.1
    m = TcpConn(cap, "10.0.0.2", 41000, "203.0.113.10", 80, 40_000_000, 50_000_000, reply_dst="198.51.100.1")
    m.handshake(1.0)
    m.exchange(1.05, _http(), _http_response(400))
    # the inside client sends a segment far beyond the server's window: INVALID, and FORWARD accepts it
    m.o(1.2, P | A, b"late data", seq=m.c + 3_000_000)
    m.close(1.3)
    # a masqueraded DNS query: the answer arrives for the public address
    dns(cap, 2.0, "10.0.0.2", 53000, "198.51.100.53", 0x2222, "example.net", "203.0.113.10",
        reply_dst="198.51.100.1")


INVALID_RULES = """\
# A stateful gateway that drops INVALID packets first.
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate INVALID -j LOG --log-prefix "INVALID: "
-A FORWARD -m conntrack --ctstate INVALID -j DROP
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i lan0 -o wan0 -p tcp -m tcp --dport 80 -j ACCEPT
COMMIT
"""


def invalid_out_of_window(cap: Capture):
    c = TcpConn(cap, "10.0.0.2", 43000, "203.0.113.10", 80, 60_000_000, 70_000_000)
    c.handshake(0.0)
    c.exchange(0.05, _http(path="/big"), _http_response(800))
    # an off-path attacker spoofs the server and guesses sequence numbers: RSTs and data far outside
    # the client's window. Conntrack marks them INVALID; the INVALID rule drops them.
    for k, off in enumerate((1_000_000, 50_000_000, 900_000_000)):
        c.r(0.3 + 0.01 * k, R | A, seq=c.s + off, ack=c.c)
    c.r(0.35, P | A, b"HTTP/1.1 302 Found\r\nLocation: http://evil.example/\r\n\r\n", seq=c.s + 2_000_000_000,
        ack=c.c)
    # an ACK acknowledging data the client never sent
    c.r(0.36, A, seq=c.s, ack=c.c + 5_000_000)
    # the real conversation goes on undisturbed
    c.exchange(0.5, _http(path="/next"), _http_response(300))
    c.close(0.7)
    # a stray SYN-ACK with no SYN: "invalid new"? (tcp_loose picks up only ACKs; SYN-ACK is INVALID)
    cap.ip(1.0, "203.0.113.77", "10.0.0.2", _tcp(80, 44000, 123456, 654321, S | A, mss=1460), dpkt.ip.IP_PROTO_TCP)


RULES_OLD = """\
# Before the change: the inside may use SSH and HTTP to the outside.
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i lan0 -o wan0 -p tcp -m tcp --dport 22 -j ACCEPT
-A FORWARD -i lan0 -o wan0 -p tcp -m tcp --dport 80 -j ACCEPT
-A FORWARD -i lan0 -o wan0 -p udp -m udp --dport 53 -j ACCEPT
COMMIT
"""
RULES_NEW = """\
# After the change: SSH only to the bastion 203.0.113.5, HTTPS added, HTTP dropped.
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -i lan0 -o wan0 -d 203.0.113.5/32 -p tcp -m tcp --dport 22 -j ACCEPT
-A FORWARD -i lan0 -o wan0 -p tcp -m tcp --dport 443 -j ACCEPT
-A FORWARD -i lan0 -o wan0 -p udp -m udp --dport 53 -j ACCEPT
-A FORWARD -i lan0 -o wan0 -p tcp -m tcp --dport 80 -j REJECT --reject-with tcp-reset
COMMIT
"""


def ruleset_change(cap: Capture):
    dns(cap, 0.0, "10.0.0.2", 54000, "198.51.100.53", 0x3333, "git.example", "203.0.113.30")
    ssh = TcpConn(cap, "10.0.0.2", 45000, "203.0.113.30", 22, 80_000_000, 81_000_000)
    ssh.handshake(0.1)
    ssh.exchange(0.2, b"SSH-2.0-OpenSSH_9.6\r\n", b"SSH-2.0-OpenSSH_9.2p1\r\n")
    ssh.close(0.4)
    bastion = TcpConn(cap, "10.0.0.2", 45001, "203.0.113.5", 22, 82_000_000, 83_000_000)
    bastion.handshake(1.0)
    bastion.exchange(1.1, b"SSH-2.0-OpenSSH_9.6\r\n", b"SSH-2.0-OpenSSH_9.2p1\r\n")
    bastion.close(1.3)
    web = TcpConn(cap, "10.0.0.3", 46000, "203.0.113.10", 80, 84_000_000, 85_000_000)
    web.handshake(2.0)
    web.exchange(2.1, _http(), _http_response(500))
    web.close(2.3)
    # HTTPS: blocked before the change (the client retransmits its SYN), allowed after -- but the
    # capture only has what happened before: the SYNs
    syn_attempts(cap, 3.0, "10.0.0.3", 46001, "203.0.113.10", 443, 86_000_000)


CASES = {
    "forward_blocked_service": (forward_blocked_service, {"rules.ipt": FORWARD_RULES},
                                "A forwarding firewall lets web, DNS and ping out and blocks SSH (tcp/22) and "
                                "inbound RDP: `nfreplay run capture.pcap --rules rules.ipt --host host.toml "
                                "--report report.html`."),
    "port_forward_nat": (port_forward_nat, {"rules.ipt": PORT_FORWARD_RULES},
                         "A port forward (wan0:8080 -> 10.0.0.10:80, DNAT) and masquerade (SNAT) for the inside; "
                         "an INVALID out-of-window segment leaves un-NATed (the report's NAT leak warning)."),
    "invalid_out_of_window": (invalid_out_of_window, {"rules.ipt": INVALID_RULES},
                              "Spoofed out-of-window RSTs and data injected into a live HTTP connection: conntrack "
                              "marks them INVALID and the INVALID rule drops them (see the report's INVALID section)."),
    "ruleset_change": (ruleset_change, {"rules.ipt": RULES_OLD, "rules_new.ipt": RULES_NEW},
                       "The same traffic under the old and new ruleset: `nfreplay diff capture.pcap --rules rules.ipt "
                       "--rules rules_new.ipt --host host.toml --report diff.html`."),
}


def build(root: Path = HERE) -> list[Path]:
    made = []
    for name, (fn, rules, readme) in CASES.items():
        d = root / name
        d.mkdir(parents=True, exist_ok=True)
        cap = Capture()
        fn(cap)
        cap.write(d / "capture.pcap")
        for fname, text in rules.items():
            (d / fname).write_text(text)
        (d / "host.toml").write_text(HOST_TOML)
        (d / "README.md").write_text(f"# {name}\n\n{readme}\n")
        made.append(d)
    return made


if __name__ == "__main__":
    for d in build(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE):
        print(d)

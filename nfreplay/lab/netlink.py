"""Netfilter netlink: a small socket wrapper, ctnetlink, nftables trace and nfnetlink_log parsers."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import select
import socket
import struct
import time

from ._util import LabError
from .packets import PROTO_NAMES, parse_ip

NETLINK_NETFILTER = 12
SOL_NETLINK = 270
NETLINK_ADD_MEMBERSHIP = 1
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK, NLM_F_DUMP = 0x1, 0x4, 0x300
NLM_F_EXCL, NLM_F_CREATE = 0x200, 0x400

NFNLGRP_CONNTRACK_NEW, NFNLGRP_CONNTRACK_UPDATE, NFNLGRP_CONNTRACK_DESTROY = 1, 2, 3
NFNLGRP_NFTRACE = 9
NFNL_SUBSYS_CTNETLINK, NFNL_SUBSYS_ULOG, NFNL_SUBSYS_NFTABLES = 1, 4, 10
NFT_MSG_TRACE = 17


def nl_attrs(buf, off=0, end=None):
    end = len(buf) if end is None else end
    attrs = {}
    while off + 4 <= end:
        ln, typ = struct.unpack_from("=HH", buf, off)
        if ln < 4:
            break
        attrs.setdefault(typ & 0x3FFF, buf[off + 4:off + ln])
        off += (ln + 3) & ~3
    return attrs


def nl_attr(typ, data: bytes) -> bytes:
    ln = 4 + len(data)
    return struct.pack("=HH", ln, typ) + data + b"\x00" * (((ln + 3) & ~3) - ln)


def nl_split(buf):
    """Split a netlink datagram into (type, flags, payload) tuples."""
    off = 0
    out = []
    while off + 16 <= len(buf):
        ln, typ, flags, seq, pid = struct.unpack_from("=IHHII", buf, off)
        if ln < 16:
            break
        out.append((typ, flags, buf[off + 16:off + ln]))
        off += (ln + 3) & ~3
    return out


class NLSock:
    def __init__(self, groups=(), rcvbuf=16 << 20):
        self.s = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        try:
            self.s.setsockopt(socket.SOL_SOCKET, 33, rcvbuf)  # SO_RCVBUFFORCE
        except OSError:
            self.s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.s.bind((0, 0))
        for g in groups:
            self.s.setsockopt(SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, g)
        self.s.setblocking(False)
        self.overruns = 0
        self.seq = 1

    def portid(self):
        return self.s.getsockname()[0]

    def drain(self):
        msgs = []
        while True:
            try:
                data = self.s.recv(1 << 20)
            except BlockingIOError:
                break
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    self.overruns += 1
                    continue
                raise
            msgs.extend(nl_split(data))
        return msgs

    def request(self, msgtype, flags, payload, timeout=5.0):
        """Send a request and collect replies until DONE/ACK."""
        self.seq += 1
        hdr = struct.pack("=IHHII", 16 + len(payload), msgtype, flags, self.seq, 0)
        self.s.send(hdr + payload)
        out = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.s], [], [], 0.2)
            if not r:
                continue
            data = self.s.recv(1 << 20)
            for typ, fl, pl in nl_split(data):
                if typ == NLMSG_DONE:
                    return out
                if typ == NLMSG_ERROR:
                    err = struct.unpack_from("=i", pl, 0)[0]
                    if err != 0:
                        raise LabError(f"netlink error {err} for msg {msgtype:#x}")
                    return out
                out.append((typ, fl, pl))
        raise LabError("netlink request timed out")

    def close(self):
        with contextlib.suppress(Exception):
            self.s.close()


# ---- conntrack (ctnetlink) ------------------------------------------------

CT_STATUS_BITS = ["EXPECTED", "SEEN_REPLY", "ASSURED", "CONFIRMED", "SRC_NAT",
                  "DST_NAT", "SEQ_ADJUST", "SRC_NAT_DONE", "DST_NAT_DONE",
                  "DYING", "FIXED_TIMEOUT", "TEMPLATE", "NAT_CLASH", "HELPER",
                  "OFFLOAD", "HW_OFFLOAD"]
TCP_CT_STATES = ["NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT",
                 "CLOSE_WAIT", "LAST_ACK", "TIME_WAIT", "CLOSE", "SYN_SENT2"]


def ct_parse_tuple(data):
    a = nl_attrs(data)
    t = {}
    if 1 in a:
        ip = nl_attrs(a[1])
        if 1 in ip:
            t["src"] = socket.inet_ntoa(ip[1])
        if 2 in ip:
            t["dst"] = socket.inet_ntoa(ip[2])
        if 3 in ip:
            t["src"] = str(ipaddress.IPv6Address(ip[3]))
        if 4 in ip:
            t["dst"] = str(ipaddress.IPv6Address(ip[4]))
    if 2 in a:
        pr = nl_attrs(a[2])
        num = pr.get(1, b"\x00")[0]
        t["proto"] = PROTO_NAMES.get(num, str(num))
        if 2 in pr:
            t["sport"] = struct.unpack(">H", pr[2])[0]
        if 3 in pr:
            t["dport"] = struct.unpack(">H", pr[3])[0]
        if 5 in pr:
            t["icmp_type"] = pr[5][0]
        if 6 in pr:
            t["icmp_code"] = pr[6][0]
        if 4 in pr:
            t["icmp_id"] = struct.unpack(">H", pr[4])[0]
        if 8 in pr:  # CTA_PROTO_ICMPV6_TYPE / _CODE / _ID
            t["icmp_type"] = pr[8][0]
        if 9 in pr:
            t["icmp_code"] = pr[9][0]
        if 7 in pr:
            t["icmp_id"] = struct.unpack(">H", pr[7])[0]
    if 3 in a:
        t["zone"] = struct.unpack(">H", a[3])[0]
    return t


def ct_parse(payload, flags, msgtype):
    a = nl_attrs(payload, 4)
    sub = msgtype & 0xFF
    if sub == 2:
        ev = "DESTROY"
    elif flags & (NLM_F_CREATE | NLM_F_EXCL):
        ev = "NEW"
    else:
        ev = "UPDATE"
    e = {"type": ev}
    if 1 in a:
        e["orig"] = ct_parse_tuple(a[1])
    if 2 in a:
        e["reply"] = ct_parse_tuple(a[2])
    e["proto"] = (e.get("orig") or {}).get("proto")
    if 3 in a:
        st = struct.unpack(">I", a[3])[0]
        e["status"] = [n for i, n in enumerate(CT_STATUS_BITS) if st & (1 << i)]
        fl = []
        if not st & 2:
            fl.append("UNREPLIED")
        if st & 4:
            fl.append("ASSURED")
        e["flags"] = fl
    if 4 in a:
        pi = nl_attrs(a[4])
        if 1 in pi:
            tcp = nl_attrs(pi[1])
            if 1 in tcp:
                s = tcp[1][0]
                e["tcp_state"] = TCP_CT_STATES[s] if s < len(TCP_CT_STATES) else str(s)
            if 2 in tcp:
                e["wscale_orig"] = tcp[2][0]
            if 3 in tcp:
                e["wscale_reply"] = tcp[3][0]
            if 4 in tcp:
                e["tcp_flags_orig"] = tcp[4][0]
            if 5 in tcp:
                e["tcp_flags_reply"] = tcp[5][0]
    if 7 in a:
        e["timeout"] = struct.unpack(">I", a[7])[0]
    if 8 in a:
        e["mark"] = struct.unpack(">I", a[8])[0]
    if 12 in a:
        e["_id"] = struct.unpack(">I", a[12])[0]
    if 18 in a:
        e["zone"] = struct.unpack(">H", a[18])[0]
    for key, name in ((9, "orig"), (10, "reply")):
        if key in a:
            c = nl_attrs(a[key])
            cnt = {}
            if 1 in c:
                cnt["packets"] = struct.unpack(">Q", c[1])[0]
            if 2 in c:
                cnt["bytes"] = struct.unpack(">Q", c[2])[0]
            e.setdefault("counters", {})[name] = cnt
    if 5 in a:
        h = nl_attrs(a[5])
        if 1 in h:
            e["helper"] = h[1].rstrip(b"\x00").decode(errors="replace")
    return e


# ---- nftables trace -------------------------------------------------------

NF_VERDICTS = {0: "drop", 1: "accept", 2: "stolen", 3: "queue", 4: "repeat", 5: "stop"}
NFT_VERDICTS = {-1: "continue", -2: "break", -3: "jump", -4: "goto", -5: "return"}
NFPROTO_NAMES = {0: "unspec", 1: "inet", 2: "ip", 3: "arp", 5: "netdev", 7: "bridge", 10: "ip6"}
TRACE_TYPES = {1: "policy", 2: "return", 3: "rule"}


def verdict_name(code):
    if code < 0:
        return NFT_VERDICTS.get(code, str(code))
    return NF_VERDICTS.get(code & 0xFF, str(code))


def trace_parse(payload):
    fam = payload[0]
    a = nl_attrs(payload, 4)
    ev = {"family": NFPROTO_NAMES.get(fam, str(fam))}
    if 1 in a:
        ev["table"] = a[1].rstrip(b"\x00").decode()
    if 2 in a:
        ev["chain"] = a[2].rstrip(b"\x00").decode()
    if 3 in a:
        ev["handle"] = struct.unpack(">Q", a[3])[0]
    if 4 in a:
        ev["type"] = TRACE_TYPES.get(struct.unpack(">I", a[4])[0], "?")
    if 5 in a:
        v = nl_attrs(a[5])
        if 1 in v:
            ev["verdict"] = verdict_name(struct.unpack(">i", v[1])[0])
        if 2 in v:
            ev["target"] = v[2].rstrip(b"\x00").decode()
    if 6 in a:
        ev["id"] = struct.unpack(">I", a[6])[0]
    if 8 in a:
        nh = a[8]
        th = a.get(9, b"")
        ev["pkt"] = parse_ip(nh + th, inner=True) if nh and nh[0] >> 4 in (4, 6) else None
        if ev["pkt"] is not None and nh[0] >> 4 == 4 and len(nh) >= 4:
            ev["pkt"]["tot_len"] = struct.unpack_from(">H", nh, 2)[0]
        elif ev["pkt"] is not None and len(nh) >= 6:
            ev["pkt"]["tot_len"] = 40 + struct.unpack_from(">H", nh, 4)[0]
    if 10 in a:
        ev["iif"] = struct.unpack(">I", a[10])[0]
    if 12 in a:
        ev["oif"] = struct.unpack(">I", a[12])[0]
    if 14 in a:
        ev["mark"] = struct.unpack(">I", a[14])[0]
    if 15 in a:
        ev["nfproto"] = struct.unpack(">I", a[15])[0]
    if 16 in a:
        ev["policy"] = verdict_name(struct.unpack(">I", a[16])[0])
    return ev


# ---- nfnetlink_log (conntrack INVALID reasons) ----------------------------

def nflog_parse(payload):
    a = nl_attrs(payload, 4)
    r = {}
    if 10 in a:
        r["prefix"] = a[10].rstrip(b"\x00").decode(errors="replace").strip()
    if 1 in a and len(a[1]) >= 3:
        r["hook"] = a[1][2]
    if 9 in a:
        r["pkt"] = parse_ip(a[9], inner=True)
    return r


def nflog_bind_group0(sock: NLSock, group: int = 0):
    """Bind an nfnetlink_log group (0 = the default group used by nf_log_packet
    when nfnetlink_log is the netns logger), copy packets, flush at once."""
    def cfg(attrs):
        pl = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(group)) + attrs
        sock.request((NFNL_SUBSYS_ULOG << 8) | 1, NLM_F_REQUEST | NLM_F_ACK, pl)
    cfg(nl_attr(1, struct.pack("=B", 1)))                       # CMD_BIND
    cfg(nl_attr(2, struct.pack(">IBB", 0xFFFF, 2, 0)))          # MODE copy packet
    cfg(nl_attr(5, struct.pack(">I", 1)))                       # QTHRESH 1
    cfg(nl_attr(4, struct.pack(">I", 0)))                       # TIMEOUT 0

"""IPv4/IPv6 packet parsing, checksum repair and crafting (stdlib only)."""

from __future__ import annotations

import hashlib
import ipaddress
import socket
import struct

PROTO_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 2: "igmp", 47: "gre", 50: "esp",
               51: "ah", 58: "icmpv6", 132: "sctp", 136: "udplite"}
TCP_FLAG_LETTERS = [(0x01, "F"), (0x02, "S"), (0x04, "R"), (0x08, "P"),
                    (0x10, "A"), (0x20, "U"), (0x40, "E"), (0x80, "C")]
ICMP_ERRORS = {3, 4, 5, 11, 12}
ICMP6_ERRORS = {1, 2, 3, 4}
ICMP_ECHO_LIKE = (0, 8, 13, 14, 15, 16, 17, 18)
ICMP6_ECHO_LIKE = (128, 129)
ICMP_UNREACH_NAMES = {0: "icmp-net-unreachable", 1: "icmp-host-unreachable",
                      2: "icmp-proto-unreachable", 3: "icmp-port-unreachable",
                      9: "icmp-net-prohibited", 10: "icmp-host-prohibited",
                      13: "icmp-admin-prohibited"}
ICMP6_UNREACH_NAMES = {0: "icmp6-no-route", 1: "icmp6-adm-prohibited", 2: "icmp6-beyond-scope",
                       3: "icmp6-addr-unreachable", 4: "icmp6-port-unreachable",
                       5: "icmp6-policy-fail", 6: "icmp6-reject-route"}
IPV6_EXT_HEADERS = {0, 43, 60, 135, 139, 140}


def csum16(data: bytes) -> int:
    if len(data) % 2:
        data += b"\x00"
    s = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def tcp_flags_str(fl: int) -> str:
    return "".join(ch for bit, ch in TCP_FLAG_LETTERS if fl & bit) or "."


def ip_version(b: bytes) -> int | None:
    return b[0] >> 4 if b else None


def _parse_l4(p: dict, proto: int, l4: bytes, inner: bool, v6: bool) -> None:
    if proto == 6 and len(l4) >= 4:
        p["sport"], p["dport"] = struct.unpack_from(">HH", l4, 0)
        if len(l4) >= 20:
            seq, ack, offfl, win, tcs, urg = struct.unpack_from(">IIHHHH", l4, 4)
            doff = (offfl >> 12) * 4
            p.update(seq=seq, ack=ack, tcp_flags=offfl & 0xFF, window=win, l4_csum=tcs)
            p["flags"] = tcp_flags_str(offfl & 0xFF)
            p["payload_len"] = max(0, len(l4) - doff)
            p["payload_sha1"] = hashlib.sha1(l4[doff:]).hexdigest()[:16]
    elif proto == 17 and len(l4) >= 4:
        p["sport"], p["dport"] = struct.unpack_from(">HH", l4, 0)
        if len(l4) >= 8:
            p["l4_csum"] = struct.unpack_from(">H", l4, 6)[0]
            p["payload_len"] = len(l4) - 8
            p["payload_sha1"] = hashlib.sha1(l4[8:]).hexdigest()[:16]
    elif proto in (1, 58) and len(l4) >= 4:
        p["icmp_type"], p["icmp_code"] = l4[0], l4[1]
        echo = ICMP6_ECHO_LIKE if v6 else ICMP_ECHO_LIKE
        errors = ICMP6_ERRORS if v6 else ICMP_ERRORS
        if len(l4) >= 8:
            p["l4_csum"] = struct.unpack_from(">H", l4, 2)[0]
            if l4[0] in echo:
                p["icmp_id"], p["icmp_seq"] = struct.unpack_from(">HH", l4, 4)
                p["payload_sha1"] = hashlib.sha1(l4[8:]).hexdigest()[:16]
            elif l4[0] in errors and not inner:
                p["inner"] = parse_ip(l4[8:], inner=True)
                p["payload_sha1"] = hashlib.sha1(l4[8:]).hexdigest()[:16]
            else:
                p["payload_sha1"] = hashlib.sha1(l4[4:]).hexdigest()[:16]
    else:
        p["payload_sha1"] = hashlib.sha1(l4).hexdigest()[:16]


def parse_ipv4(b: bytes, inner: bool = False):
    """Parse an IPv4 packet into a dict (None when not IPv4)."""
    if len(b) < 20 or b[0] >> 4 != 4:
        return None
    ihl = (b[0] & 0xF) * 4
    if ihl < 20 or len(b) < ihl:
        return None
    tot_len, ipid, frag, ttl, proto, hcs = struct.unpack_from(">HHHBBH", b, 2)
    p = {
        "src": socket.inet_ntoa(b[12:16]), "dst": socket.inet_ntoa(b[16:20]),
        "proto": proto, "ihl": ihl, "tot_len": tot_len, "ip_id": ipid,
        "df": bool(frag & 0x4000), "mf": bool(frag & 0x2000),
        "frag_off": (frag & 0x1FFF) * 8, "ttl": ttl, "tos": b[1], "ip_csum": hcs,
    }
    end = tot_len if (not inner and ihl <= tot_len <= len(b)) else len(b)
    p["truncated"] = (not inner) and tot_len > len(b)
    l4 = b[ihl:end]
    p["l4_len"] = max(0, tot_len - ihl) if not inner else len(l4)
    if p["frag_off"] != 0:
        p["payload_sha1"] = hashlib.sha1(l4).hexdigest()[:16]
        return p
    _parse_l4(p, proto, l4, inner, v6=False)
    return p


def parse_ipv6(b: bytes, inner: bool = False):
    """Parse an IPv6 packet (walking the extension headers) into a dict (None when not IPv6).

    `tot_len` is 40 + the payload length (what the kernel's byte counters count), `ihl` the
    length of the fixed header plus the extension headers, `ip_id` the fragment id or None."""
    if len(b) < 40 or b[0] >> 4 != 6:
        return None
    vtcfl, plen, nxt, hlim = struct.unpack_from(">IHBB", b, 0)
    p = {
        "family": "ip6",
        "src": str(ipaddress.IPv6Address(b[8:24])), "dst": str(ipaddress.IPv6Address(b[24:40])),
        "tot_len": 40 + plen, "ip_id": None, "ttl": hlim, "tos": (vtcfl >> 20) & 0xFF,
        "flow_label": vtcfl & 0xFFFFF, "frag_off": 0, "mf": False, "df": False,
    }
    off = 40
    while nxt in IPV6_EXT_HEADERS and len(b) >= off + 8:
        if nxt == 44:  # fragment (not in IPV6_EXT_HEADERS: handled below)
            break
        ln = (b[off + 1] + 1) * 8
        nxt = b[off]
        off += ln
    if nxt == 44 and len(b) >= off + 8:
        fo, ident = struct.unpack_from(">HI", b, off + 2)
        p["frag_off"], p["mf"], p["ip_id"] = (fo >> 3) * 8, bool(fo & 1), ident
        nxt = b[off]
        off += 8
    p["proto"], p["ihl"] = nxt, off
    end = 40 + plen if (not inner and 40 + plen <= len(b)) else len(b)
    p["truncated"] = (not inner) and 40 + plen > len(b)
    l4 = b[off:end]
    p["l4_len"] = max(0, 40 + plen - off) if not inner else len(l4)
    if p["frag_off"] != 0:
        p["payload_sha1"] = hashlib.sha1(l4).hexdigest()[:16]
        return p
    _parse_l4(p, nxt, l4, inner, v6=True)
    return p


def parse_ip(b: bytes, inner: bool = False):
    """Parse an IPv4 or IPv6 packet (None for anything else)."""
    if not b:
        return None
    if b[0] >> 4 == 4:
        return parse_ipv4(b, inner)
    if b[0] >> 4 == 6:
        return parse_ipv6(b, inner)
    return None


def tuple_of(p):
    """Compact 5-tuple dict of a parsed packet."""
    if p is None:
        return None
    t = {"proto": PROTO_NAMES.get(p["proto"], str(p["proto"])), "src": p["src"], "dst": p["dst"]}
    if "sport" in p:
        t["sport"], t["dport"] = p["sport"], p["dport"]
    if "icmp_type" in p:
        t["icmp_type"], t["icmp_code"] = p["icmp_type"], p["icmp_code"]
        if "icmp_id" in p:
            t["icmp_id"] = p["icmp_id"]
    return t


def _pseudo6(b, ln, proto):
    return bytes(b[8:40]) + struct.pack(">IxxxB", ln, proto)


def l4_checksum_ok_and_fix(b: bytearray, fix: bool):
    """Verify (and optionally fix) the IPv4 header and the L4 checksums in place.

    Returns the list of fields that were wrong."""
    bad = []
    v6 = b[0] >> 4 == 6
    if v6:
        p = parse_ipv6(bytes(b))
        if p is None or p["frag_off"] or p["mf"]:
            return bad
        ihl, proto = p["ihl"], p["proto"]
        l4 = bytes(b[ihl:p["tot_len"]])
        pseudo = _pseudo6(b, len(l4), proto)
    else:
        ihl = (b[0] & 0xF) * 4
        hdr = bytes(b[:ihl])
        if csum16(hdr[:10] + b"\x00\x00" + hdr[12:]) != struct.unpack_from(">H", hdr, 10)[0]:
            bad.append("ip")
            if fix:
                struct.pack_into(">H", b, 10, csum16(hdr[:10] + b"\x00\x00" + hdr[12:]))
        tot_len = struct.unpack_from(">H", b, 2)[0]
        frag = struct.unpack_from(">H", b, 6)[0]
        if frag & 0x3FFF:  # fragment: L4 checksum covers the reassembled datagram
            return bad
        proto = b[9]
        l4 = bytes(b[ihl:tot_len])
        pseudo = bytes(b[12:20]) + struct.pack(">BBH", 0, proto, len(l4))
    if proto == 6 and len(l4) >= 20:
        want = csum16(pseudo + l4[:16] + b"\x00\x00" + l4[18:])
        if want != struct.unpack_from(">H", l4, 16)[0]:
            bad.append("tcp")
            if fix:
                struct.pack_into(">H", b, ihl + 16, want)
    elif proto == 17 and len(l4) >= 8:
        have = struct.unpack_from(">H", l4, 6)[0]
        if have != 0 or v6:
            want = csum16(pseudo + l4[:6] + b"\x00\x00" + l4[8:]) or 0xFFFF
            if want != have:
                bad.append("udp")
                if fix:
                    struct.pack_into(">H", b, ihl + 6, want)
    elif proto in (1, 58) and len(l4) >= 4:
        want = csum16((pseudo if proto == 58 else b"") + l4[:2] + b"\x00\x00" + l4[4:])
        if want != struct.unpack_from(">H", l4, 2)[0]:
            bad.append("icmpv6" if proto == 58 else "icmp")
            if fix:
                struct.pack_into(">H", b, ihl + 2, want)
    return bad


def mac_bytes(mac: str) -> bytes:
    return bytes(int(x, 16) for x in mac.split(":"))


# -- crafting (scenario generation, tests) -----------------------------------------------

def _addr_bytes(a: str) -> bytes:
    return ipaddress.ip_address(a).packed


def ip4(src, dst, proto, l4, ident=0, ttl=64, df=True, tos=0):
    """An IPv4 packet with a correct header checksum around the L4 bytes `l4`."""
    h = struct.pack(">BBHHHBBH4s4s", 0x45, tos, 20 + len(l4), ident, 0x4000 if df else 0, ttl,
                    proto, 0, _addr_bytes(src), _addr_bytes(dst))
    return h[:10] + struct.pack(">H", csum16(h)) + h[12:] + l4


def ip6(src, dst, nxt, l4, hlim=64, flow=0):
    """An IPv6 packet (no extension headers) around the L4 bytes `l4`."""
    return struct.pack(">IHBB", (6 << 28) | (flow & 0xFFFFF), len(l4), nxt, hlim) + \
        _addr_bytes(src) + _addr_bytes(dst) + l4


def _l4_csum(src, dst, proto, seg):
    s, d = _addr_bytes(src), _addr_bytes(dst)
    if len(s) == 16:
        pseudo = s + d + struct.pack(">IxxxB", len(seg), proto)
    else:
        pseudo = s + d + struct.pack(">BBH", 0, proto, len(seg))
    return csum16(pseudo + seg)


def tcp_seg(src, dst, sp, dp, seq, ack, flags, payload=b"", win=502):
    """A TCP segment (no options) with a correct checksum for src/dst (IPv4 or IPv6)."""
    hdr = struct.pack(">HHIIBBHHH", sp, dp, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags,
                      win, 0, 0)
    c = _l4_csum(src, dst, 6, hdr + payload)
    return hdr[:16] + struct.pack(">H", c) + hdr[18:] + payload


def udp_dgram(src, dst, sp, dp, payload=b""):
    hdr = struct.pack(">HHHH", sp, dp, 8 + len(payload), 0)
    c = _l4_csum(src, dst, 17, hdr + payload) or 0xFFFF
    return hdr[:6] + struct.pack(">H", c) + payload


def icmp_msg(typ, code, rest: bytes, src=None, dst=None, v6=False):
    """An ICMP (or ICMPv6, with src/dst for the pseudo header) message."""
    body = struct.pack(">BBH", typ, code, 0) + rest
    c = _l4_csum(src, dst, 58, body) if v6 else csum16(body)
    return body[:2] + struct.pack(">H", c) + body[4:]


def eth(ipb: bytes, src_mac=b"\x02\x00\x00\x00\x00\x02", dst_mac=b"\x02\x00\x00\x00\x00\x01"):
    et = b"\x86\xdd" if ipb and ipb[0] >> 4 == 6 else b"\x08\x00"
    return dst_mac + src_mac + et + ipb

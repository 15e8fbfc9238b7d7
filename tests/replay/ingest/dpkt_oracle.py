"""An independent pure-Python decoder built on dpkt objects: the oracle for decode.decode_packets.

It decodes one frame (bytes, link type, wire length) into a dict of the packet-table fields it can
vouch for, plus a coarse status class ("ok", "fragment", "not_ip", "unsupported", "bad"). Kernel
semantics it mirrors on purpose (and which dpkt does not have): TCP window scale clamped to 14,
tcp_sack() (first well-formed SACK option only, highest right edge after() the ack), options parsing
stops at EOL, ICMP inner tuple needs the inner IP header plus 8 bytes of L4.
"""

from __future__ import annotations

import ipaddress
import struct

import dpkt

V4_MAPPED = 0xFFFF << 32


def _addr(b: bytes) -> tuple[int, int]:
    v = int.from_bytes(b, "big")
    if len(b) == 4:
        v |= V4_MAPPED
    return (v >> 64) & ((1 << 64) - 1), v & ((1 << 64) - 1)


def _after(a: int, b: int) -> bool:
    return ((b - a) & 0xFFFFFFFF) >= 0x80000000


def _csum_ok(buf: bytes) -> bool:
    return dpkt.in_cksum(buf) == 0


def l3_of(frame: bytes, lt: int):
    """-> (l3 bytes, version hint 0/4/6, fields dict) or (None, status_class, fields)."""
    f: dict = {}
    if lt == 1:
        if len(frame) < 14:
            return None, "bad", f
        dst, src, etype = frame[0:6], frame[6:12], struct.unpack(">H", frame[12:14])[0]
        f["eth_dst"] = int.from_bytes(dst, "big")
        f["eth_src"] = int.from_bytes(src, "big")
        off = 14
        vlan = -1
        while etype in (0x8100, 0x88A8, 0x9100):
            if off + 4 > len(frame):
                return None, "bad", f
            tag = dpkt.ethernet.VLANtag8021Q(frame[off:off + 4])
            if vlan < 0:
                vlan = tag.id
            etype = tag.type
            off += 4
        f["vlan_id"] = vlan
        if etype == dpkt.ethernet.ETH_TYPE_IP:
            return frame[off:], 4, f
        if etype == dpkt.ethernet.ETH_TYPE_IP6:
            return frame[off:], 6, f
        return None, "not_ip", f
    if lt == 113:
        if len(frame) < 16:
            return None, "bad", f
        s = dpkt.sll.SLL(frame[:16])
        f["pkt_dir"] = 2 if s.type == 4 else (1 if s.type <= 3 else 0)
        et, rest = s.ethtype, frame[16:]
    elif lt == 276:
        if len(frame) < 20:
            return None, "bad", f
        s = dpkt.sll2.SLL2(frame[:20])
        f["pkt_dir"] = 2 if s.type == 4 else (1 if s.type <= 3 else 0)
        f["ifindex"] = s.intindex if 0 <= s.intindex < 32768 else -1
        et, rest = s.ethtype, frame[20:]
    elif lt in (101, 12, 14):
        if not frame:
            return None, "bad", f
        v = frame[0] >> 4
        return (frame, v, f) if v in (4, 6) else (None, "bad", f)
    elif lt == 228:
        return frame, 4, f
    elif lt == 229:
        return frame, 6, f
    elif lt in (0, 108):
        if len(frame) < 4:
            return None, "bad", f
        fam = struct.unpack("<I", frame[:4])[0]  # host order of the capturing machine: either
        if fam > 0xFFFF:
            fam = struct.unpack(">I", frame[:4])[0]
        if fam == 2:
            return frame[4:], 4, f
        if fam in (10, 24, 28, 30):
            return frame[4:], 6, f
        return None, "not_ip", f
    else:
        return None, "unsupported", f
    while et == 0x8100:
        if len(rest) < 4:
            return None, "bad", f
        tag = dpkt.ethernet.VLANtag8021Q(rest[:4])
        f["vlan_id"] = tag.id
        et, rest = tag.type, rest[4:]
    if et == 0x0800:
        return rest, 4, f
    if et == 0x86DD:
        return rest, 6, f
    return None, "not_ip", f


def _inner(payload: bytes, v6: bool) -> dict:
    out = {"inner_ok": 0}
    try:
        if not v6:
            ip = dpkt.ip.IP(payload)
            hl = ip.hl * 4
            if ip.v != 4 or hl < 20 or len(payload) < hl:
                return out
            p = ip.p
            out.update(inner_proto=p, inner_src=_addr(ip.src), inner_dst=_addr(ip.dst))
            if ip._flags_offset & dpkt.ip.IP_OFFMASK:
                return out
            l4 = payload[hl:]
        else:
            if len(payload) < 40:
                return out
            ip = dpkt.ip6.IP6(payload)
            if ip.v != 6:
                return out
            out.update(inner_src=_addr(ip.src), inner_dst=_addr(ip.dst))
            ext = sum(h.length for h in ip.all_extension_headers)
            p = ip.p if ip.all_extension_headers else ip.nxt
            out["inner_proto"] = p
            frag = ip.extension_hdrs.get(44)
            if frag is not None and frag.frag_off:
                return out
            l4 = payload[40 + ext:]
    except (dpkt.UnpackError, struct.error):
        return out
    if len(l4) < 8:
        return out
    if p in (1, 58):
        out["inner_sport"] = struct.unpack(">H", l4[4:6])[0]
        out["inner_dport"] = l4[0] << 8 | l4[1]
    elif p in (6, 17, 136, 132, 33):
        out["inner_sport"], out["inner_dport"] = struct.unpack(">HH", l4[:4])
    out["inner_ok"] = 1
    return out


def _tcp_opts(tcp, ack: int) -> dict:
    out = {"tcp_mss": 0, "tcp_wscale": -1, "tcp_sackok": 0}
    sack, sack_done = ack, False
    for item in dpkt.tcp.parse_opts(tcp.opts):
        if item is None:
            break
        o, d = item
        if o == dpkt.tcp.TCP_OPT_EOL:
            break
        if o == dpkt.tcp.TCP_OPT_NOP:
            continue
        if len(d) < 0:
            break
        if o == dpkt.tcp.TCP_OPT_MSS and len(d) == 2:
            out["tcp_mss"] = struct.unpack(">H", d)[0]
        elif o == dpkt.tcp.TCP_OPT_WSCALE and len(d) == 1:
            out["tcp_wscale"] = min(d[0], 14)
        elif o == dpkt.tcp.TCP_OPT_SACKOK and len(d) == 0:
            out["tcp_sackok"] = 1
        elif o == dpkt.tcp.TCP_OPT_SACK and not sack_done and len(d) >= 8 and len(d) % 8 == 0:
            for k in range(0, len(d), 8):
                right = struct.unpack(">I", d[k + 4:k + 8])[0]
                if _after(right, sack):
                    sack = right
            sack_done = True
    out["tcp_sack"] = sack
    return out


def decode(frame: bytes, lt: int, wire_len: int) -> dict:
    l3, hint, f = l3_of(frame, lt)
    if l3 is None:
        f["status"] = hint
        return f
    l2len = len(frame) - len(l3)
    wire_avail = wire_len - l2len
    v = (l3[0] >> 4) if l3 else -1
    if len(l3) < (20 if hint == 4 else 40):
        f["status"] = "bad"
        return f
    if v != hint:
        f["status"] = "bad"
        return f
    f["family"] = v
    frag = False
    if v == 4:
        ip = dpkt.ip.IP.__new__(dpkt.ip.IP)
        dpkt.Packet.unpack(ip, l3[:20])  # fixed header only; options handled below
        hl = ip.hl * 4
        if hl < 20 or len(l3) < hl:
            f["status"] = "bad"
            return f
        f.update(src=_addr(ip.src), dst=_addr(ip.dst), proto=ip.p, ip_len=ip.len, ip_hlen=hl, ttl=ip.ttl,
                 tos=ip.tos, ip_id=ip.id, frag_off=ip._flags_offset & dpkt.ip.IP_OFFMASK,
                 mf=int(bool(ip._flags_offset & dpkt.ip.IP_MF)), df=int(bool(ip._flags_offset & dpkt.ip.IP_DF)))
        f["ip_csum"] = 1 if _csum_ok(l3[:hl]) else 2
        if ip.len > wire_avail or ip.len < hl:
            f["status"] = "bad"
            return f
        frag = bool(ip._flags_offset & (dpkt.ip.IP_MF | dpkt.ip.IP_OFFMASK))
        f["frag"] = int(frag)
        if ip._flags_offset & dpkt.ip.IP_OFFMASK:
            f["status"] = "fragment"
            return f
        iplen, l4off, proto = ip.len, hl, ip.p
        pseudo_addr = l3[12:20]
    else:
        ip6 = dpkt.ip6.IP6.__new__(dpkt.ip6.IP6)
        dpkt.Packet.unpack(ip6, l3[:40])
        iplen = 40 + ip6.plen
        f.update(src=_addr(ip6.src), dst=_addr(ip6.dst), ip_len=iplen, ttl=ip6.hlim,
                 tos=(ip6._v_fc_flow >> 20) & 0xFF)
        if iplen > wire_avail:
            f["status"] = "bad"
            return f
        try:
            full = dpkt.ip6.IP6(l3[:iplen])
        except (dpkt.UnpackError, struct.error):
            f["status"] = "bad"
            return f
        ext = sum(h.length for h in full.all_extension_headers)
        proto = full.p if full.all_extension_headers else full.nxt
        if 40 + ext > iplen:
            f["status"] = "bad"
            return f
        fh = full.extension_hdrs.get(44)
        f.update(proto=proto, ip_hlen=40 + ext)
        if fh is not None:
            frag = True
            f.update(ip_id=fh.id, frag_off=fh.frag_off, mf=fh.m_flag, frag=1)
            if fh.frag_off:
                f["status"] = "fragment"
                return f
        l4off = 40 + ext
        pseudo_addr = l3[8:40]
    l4len = iplen - l4off
    l4 = l3[l4off:iplen]
    complete = len(l3) >= iplen and not frag
    f["l4_len"] = l4len
    f["status"] = "ok"
    if proto == 6:
        if l4len < 20 or len(l4) < 20:
            f["status"] = "bad"
            return f
        tcp = dpkt.tcp.TCP.__new__(dpkt.tcp.TCP)
        dpkt.Packet.unpack(tcp, l4[:20])
        thl = tcp.off * 4
        if thl < 20 or thl > l4len or thl > len(l4):
            f["status"] = "bad"
            return f
        tcp.opts = l4[20:thl]
        f.update(sport=tcp.sport, dport=tcp.dport, tcp_seq=tcp.seq, tcp_ack=tcp.ack, tcp_win=tcp.win,
                 tcp_hlen=thl, tcp_flags=tcp.flags & 0x1FF, payload_len=l4len - thl)
        f.update(_tcp_opts(tcp, tcp.ack))
    elif proto in (17, 136):
        if l4len < 8 or len(l4) < 8:
            f["status"] = "bad"
            return f
        u = dpkt.udp.UDP.__new__(dpkt.udp.UDP)
        dpkt.Packet.unpack(u, l4[:8])
        f.update(sport=u.sport, dport=u.dport, payload_len=l4len - 8)
        if proto == 136:
            complete = False
        elif complete and v == 4 and u.sum == 0:
            f["l4_csum"] = 1
            complete = False
    elif proto == 132:
        if l4len < 12 or len(l4) < 12:
            f["status"] = "bad"
            return f
        f["sport"], f["dport"] = struct.unpack(">HH", l4[:4])
        complete = False
    elif (proto == 1 and v == 4) or (proto == 58 and v == 6):
        if l4len < 8 or len(l4) < 8:
            f["status"] = "bad"
            return f
        ic = (dpkt.icmp.ICMP if v == 4 else dpkt.icmp6.ICMP6).__new__(dpkt.icmp.ICMP)
        dpkt.Packet.unpack(ic, l4[:4])
        f.update(icmp_type=ic.type, icmp_code=ic.code, icmp_id=struct.unpack(">H", l4[4:6])[0],
                 payload_len=l4len - 8)
        err = ic.type in (3, 4, 5, 11, 12) if v == 4 else 1 <= ic.type <= 4
        if err:
            f.update(_inner(l4[8:], v == 6))
    else:
        complete = False
    if complete:
        if v == 4 and proto == 1:
            f["l4_csum"] = 1 if _csum_ok(l4) else 2
        elif v == 4:
            ph = pseudo_addr + struct.pack(">BBH", 0, proto, l4len)
            f["l4_csum"] = 1 if _csum_ok(ph + l4) else 2
        else:
            ph = pseudo_addr + struct.pack(">IxxxB", l4len, proto)
            f["l4_csum"] = 1 if _csum_ok(ph + l4) else 2
    return f


STATUS_CLASS = {0: "ok", 1: "not_ip", 2: "unsupported", 10: "fragment"}


def kernel_row(cap, i: int) -> dict:
    """The same dict shape built from the kernel's table row i (for comparison)."""
    t = cap.packets
    g = {k: getattr(t, k)[i].item() for k in t._fields}
    out = {"status": STATUS_CLASS.get(g["status"], "bad")}
    out.update(family=g["family"], src=(g["src_hi"], g["src_lo"]), dst=(g["dst_hi"], g["dst_lo"]))
    for k in ("proto", "ip_len", "ip_hlen", "ttl", "tos", "ip_id", "frag_off", "l4_len", "sport", "dport",
              "tcp_seq", "tcp_ack", "tcp_win", "tcp_hlen", "tcp_mss", "tcp_wscale", "tcp_sackok", "tcp_sack",
              "payload_len", "icmp_type", "icmp_code", "icmp_id", "inner_ok", "inner_proto", "inner_sport",
              "inner_dport", "ip_csum", "l4_csum", "vlan_id", "eth_src", "eth_dst", "pkt_dir", "ifindex"):
        out[k] = g[k]
    out["tcp_flags"] = g["tcp_flags"]
    out["mf"] = g["ip_flags"] & 1
    out["df"] = (g["ip_flags"] >> 1) & 1
    out["frag"] = (g["ip_flags"] >> 2) & 1
    out["inner_src"] = (g["inner_src_hi"], g["inner_src_lo"])
    out["inner_dst"] = (g["inner_dst_hi"], g["inner_dst_lo"])
    return out


def compare(cap, i: int) -> list[str]:
    """Field names where kernel row i and the oracle disagree (only fields the oracle produced)."""
    t = cap.packets
    exp = decode(cap.frame(i), int(t.linktype[i]), int(t.wire_len[i]))
    got = kernel_row(cap, i)
    bad = []
    for k, v in exp.items():
        if got.get(k) != v:
            bad.append(f"{k}: kernel {got.get(k)!r} != dpkt {v!r}")
    return bad


def text(a) -> str:
    hi, lo = a
    v = (hi << 64) | lo
    return str(ipaddress.ip_address(v & 0xFFFFFFFF)) if (v >> 32) == 0xFFFF else str(ipaddress.ip_address(v))

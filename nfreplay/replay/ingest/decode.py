"""L2-L4 decode kernel: captured frames -> the packet table (schema.py).

`decode_packets(data, rec_off, out)` reads every frame `data[rec_off[i] : rec_off[i] + out.cap_len[i]]`
whose link type, lengths, timestamp, direction and interface the framer already wrote into `out`
(ts_ns, file_id, rec_num, linktype, wire_len, cap_len, pkt_dir, ifindex) and fills every other column.
It never raises for bad data: malformed or truncated packets get a codes.PktStatus.

Link types: 1 Ethernet (802.1Q / 802.1ad / QinQ tags), 113 Linux SLL, 276 Linux SLL2, 101/12/14 raw IP
(version nibble decides), 228 raw IPv4, 229 raw IPv6, 0 NULL and 108 LOOP (4-byte address family in
either byte order), 239 NFLOG (NFULA_PAYLOAD TLV). Anything else: UNSUPPORTED_LINKTYPE.

Semantics follow the kernel where it decides: ip_rcv_core() length checks (BAD_IHL, BAD_IP_LEN),
ipv6_skip_exthdr() for the IPv6 chain, tcp_options()/tcp_sack() of nf_conntrack_proto_tcp.c for
window scale (clamped to TCP_MAX_WSCALE=14) and the SACK edge, nf_conntrack's ICMP error inner tuple.
"""

from __future__ import annotations

import numpy as np

from .._jit import kernel

# codes.PktStatus values (plain ints: numba freezes module constants)
OK = 0
NOT_IP = 1
UNSUPPORTED_LINKTYPE = 2
TRUNCATED_L2 = 3
TRUNCATED_L3 = 4
BAD_IP_VERSION = 5
BAD_IHL = 6
BAD_IP_LEN = 7
TRUNCATED_L4 = 8
BAD_L4 = 9
FRAGMENT = 10
BAD_IPV6_EXT = 11

DIR_INCOMING = 1
DIR_OUTGOING = 2

CSUM_UNKNOWN = 0
CSUM_GOOD = 1
CSUM_BAD = 2

# link types (LINKTYPE_* of the tcpdump.org registry)
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW_OLD12 = 12
LINKTYPE_RAW_OLD14 = 14
LINKTYPE_RAW = 101
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_NFLOG = 239
LINKTYPE_LINUX_SLL2 = 276

SUPPORTED_LINKTYPES = (0, 1, 12, 14, 101, 108, 113, 228, 229, 239, 276)
LINKTYPE_NAMES = {0: "NULL", 1: "EN10MB", 9: "PPP", 12: "RAW", 14: "RAW", 101: "RAW", 108: "LOOP",
                  113: "LINUX_SLL", 228: "IPV4", 229: "IPV6", 239: "NFLOG", 276: "LINUX_SLL2"}

ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
ETH_P_8021Q = 0x8100
ETH_P_8021AD = 0x88A8
ETH_P_QINQ1 = 0x9100

PACKET_OUTGOING = 4
NFULA_PAYLOAD = 9
TCP_MAX_WSCALE = 14

V4_MAPPED_LO = 0x0000FFFF00000000

_IP_FLAG_MF = 1
_IP_FLAG_DF = 2
_IP_FLAG_FRAGMENT = 4
_IP_FLAG_OPTIONS = 8


@kernel
def _u16(d, p):
    return (np.int64(d[p]) << 8) | np.int64(d[p + 1])


@kernel
def _u32(d, p):
    return (np.int64(d[p]) << 24) | (np.int64(d[p + 1]) << 16) | (np.int64(d[p + 2]) << 8) | np.int64(d[p + 3])


@kernel
def _u64be(d, p):
    v = np.uint64(0)
    for k in range(8):
        v = (v << np.uint64(8)) | np.uint64(d[p + k])
    return v


@kernel
def _u48(d, p):
    v = np.uint64(0)
    for k in range(6):
        v = (v << np.uint64(8)) | np.uint64(d[p + k])
    return v


@kernel
def _csum_add(d, p, n, acc):
    """One's-complement partial sum (unfolded, int64) of n bytes at p, big-endian 16-bit words."""
    s = np.int64(0)
    e = p + n - 1
    i = p
    while i < e:
        s += (np.int64(d[i]) << 8) | np.int64(d[i + 1])
        i += 2
    if n & 1:
        s += np.int64(d[p + n - 1]) << 8
    return acc + s


@kernel
def _csum_fold(s):
    while s > 0xFFFF:
        s = (s & 0xFFFF) + (s >> 16)
    return s


@kernel
def _addr_v4(d, p):
    return np.uint64(V4_MAPPED_LO) | np.uint64(_u32(d, p))


@kernel
def _v6_skip_exthdr(d, pos, limit, nh):
    """Walk the IPv6 extension chain from pos (first header type nh) within [pos, limit).

    Returns (proto, pos_of_l4, frag_offset, frag_mf, frag_id, has_frag, err) where err is 0 ok,
    1 runs past `limit` (truncated/overlong), 2 malformed. A non-first fragment stops the walk.
    """
    frag_off = 0
    frag_mf = 0
    frag_id = np.int64(0)
    has_frag = 0
    for _ in range(64):
        if nh == 0 or nh == 43 or nh == 60:
            if pos + 2 > limit:
                return nh, pos, frag_off, frag_mf, frag_id, has_frag, 1
            hl = (np.int64(d[pos + 1]) + 1) * 8
            nnh = np.int64(d[pos])
            if pos + hl > limit:
                return nh, pos, frag_off, frag_mf, frag_id, has_frag, 1
            pos += hl
            nh = nnh
        elif nh == 51:
            if pos + 2 > limit:
                return nh, pos, frag_off, frag_mf, frag_id, has_frag, 1
            hl = (np.int64(d[pos + 1]) + 2) * 4
            nnh = np.int64(d[pos])
            if pos + hl > limit:
                return nh, pos, frag_off, frag_mf, frag_id, has_frag, 1
            pos += hl
            nh = nnh
        elif nh == 44:
            if pos + 8 > limit:
                return nh, pos, frag_off, frag_mf, frag_id, has_frag, 1
            fo = _u16(d, pos + 2)
            frag_off = fo >> 3
            frag_mf = fo & 1
            frag_id = _u32(d, pos + 4)
            has_frag = 1
            nh = np.int64(d[pos])
            pos += 8
            if frag_off != 0:
                return nh, pos, frag_off, frag_mf, frag_id, has_frag, 0
        else:
            return nh, pos, frag_off, frag_mf, frag_id, has_frag, 0
    return nh, pos, frag_off, frag_mf, frag_id, has_frag, 2


@kernel
def _decode_inner(d, out, i, p, lim, is_v6):
    """ICMP error payload at p (captured bytes up to lim): fill inner_* columns."""
    if not is_v6:
        if p + 20 > lim:
            return
        if (d[p] >> 4) != 4:
            return
        hl = np.int64(d[p] & 0x0F) * 4
        if hl < 20 or p + hl > lim:
            return
        proto = np.int64(d[p + 9])
        out.inner_src_hi[i] = 0
        out.inner_src_lo[i] = _addr_v4(d, p + 12)
        out.inner_dst_hi[i] = 0
        out.inner_dst_lo[i] = _addr_v4(d, p + 16)
        out.inner_proto[i] = proto
        if _u16(d, p + 6) & 0x1FFF:
            return  # non-first fragment inside an ICMP error: no tuple (ipv4_get_l4proto)
        l4 = p + hl
    else:
        if p + 40 > lim:
            return
        if (d[p] >> 4) != 6:
            return
        out.inner_src_hi[i] = _u64be(d, p + 8)
        out.inner_src_lo[i] = _u64be(d, p + 16)
        out.inner_dst_hi[i] = _u64be(d, p + 24)
        out.inner_dst_lo[i] = _u64be(d, p + 32)
        proto, l4, fo, mf, fid, hf, err = _v6_skip_exthdr(d, p + 40, lim, np.int64(d[p + 6]))
        out.inner_proto[i] = proto
        if err != 0 or fo != 0:
            return
    if l4 + 8 > lim:
        return
    if proto == 1 or proto == 58:
        out.inner_sport[i] = _u16(d, l4 + 4)
        out.inner_dport[i] = (np.int64(d[l4]) << 8) | np.int64(d[l4 + 1])
    elif proto == 6 or proto == 17 or proto == 136 or proto == 132 or proto == 33:
        out.inner_sport[i] = _u16(d, l4)
        out.inner_dport[i] = _u16(d, l4 + 2)
    out.inner_ok[i] = 1


@kernel
def _decode_tcp_options(d, out, i, p, n):
    """TCP options at p, n bytes (all captured): MSS, wscale, SACK-permitted, tcp_sack()."""
    ack = np.int64(out.tcp_ack[i])
    sack = ack
    # tcp_sack(): fast path for the aligned timestamp-only option block
    ts_only = n == 12 and d[p] == 1 and d[p + 1] == 1 and d[p + 2] == 8 and d[p + 3] == 10
    sack_done = ts_only
    length = n
    q = p
    while length > 0:
        opcode = np.int64(d[q])
        if opcode == 0:
            break
        if opcode == 1:
            q += 1
            length -= 1
            continue
        if length < 2:
            break
        opsize = np.int64(d[q + 1])
        if opsize < 2 or opsize > length:
            break
        if opcode == 2 and opsize == 4:
            out.tcp_mss[i] = _u16(d, q + 2)
        elif opcode == 3 and opsize == 3:
            ws = np.int64(d[q + 2])
            if ws > TCP_MAX_WSCALE:
                ws = TCP_MAX_WSCALE
            out.tcp_wscale[i] = ws
        elif opcode == 4 and opsize == 2:
            out.tcp_sackok[i] = 1
        elif opcode == 5 and not sack_done:
            if opsize >= 10 and (opsize - 2) % 8 == 0:
                k = 0
                while k < opsize - 2:
                    right = _u32(d, q + 2 + k + 4)
                    if ((sack - right) & 0xFFFFFFFF) >= 0x80000000:  # after(right, sack)
                        sack = right
                    k += 8
                sack_done = True
        q += opsize
        length -= opsize
    out.tcp_sack[i] = sack


@kernel
def _decode_one(d, base, out, i):
    cap = np.int64(out.cap_len[i])
    wire = np.int64(out.wire_len[i])
    end = base + cap
    lt = np.int64(out.linktype[i])
    p = base
    ethertype = np.int64(-1)  # for link types carrying an ethertype
    version = np.int64(0)  # 4/6 decided by the link layer; 0 = by version nibble
    if lt == LINKTYPE_ETHERNET:
        if cap < 14:
            return TRUNCATED_L2
        out.eth_dst[i] = _u48(d, p)
        out.eth_src[i] = _u48(d, p + 6)
        ethertype = _u16(d, p + 12)
        p += 14
    elif lt == LINKTYPE_LINUX_SLL:
        if cap < 16:
            return TRUNCATED_L2
        pkttype = _u16(d, p)
        if pkttype == PACKET_OUTGOING:
            out.pkt_dir[i] = DIR_OUTGOING
        elif pkttype <= 3:
            out.pkt_dir[i] = DIR_INCOMING
        if _u16(d, p + 4) == 6 and _u16(d, p + 2) == 1:
            out.eth_src[i] = _u48(d, p + 6)
        ethertype = _u16(d, p + 14)
        p += 16
    elif lt == LINKTYPE_LINUX_SLL2:
        if cap < 20:
            return TRUNCATED_L2
        ethertype = _u16(d, p)
        ifx = _u32(d, p + 4)
        out.ifindex[i] = ifx if ifx < 32768 else -1
        pkttype = np.int64(d[p + 10])
        if pkttype == PACKET_OUTGOING:
            out.pkt_dir[i] = DIR_OUTGOING
        elif pkttype <= 3:
            out.pkt_dir[i] = DIR_INCOMING
        if d[p + 11] == 6 and _u16(d, p + 8) == 1:
            out.eth_src[i] = _u48(d, p + 12)
        p += 20
    elif lt == LINKTYPE_RAW or lt == LINKTYPE_RAW_OLD12 or lt == LINKTYPE_RAW_OLD14:
        version = 0
    elif lt == LINKTYPE_IPV4:
        version = 4
    elif lt == LINKTYPE_IPV6:
        version = 6
    elif lt == LINKTYPE_NULL or lt == LINKTYPE_LOOP:
        if cap < 4:
            return TRUNCATED_L2
        fam = (np.int64(d[p + 3]) << 24) | (np.int64(d[p + 2]) << 16) | (np.int64(d[p + 1]) << 8) | np.int64(d[p])
        if fam > 0xFFFF:  # stored in the other byte order
            fam = _u32(d, p)
        p += 4
        if fam == 2:
            version = 4
        elif fam == 10 or fam == 24 or fam == 28 or fam == 30:
            version = 6
        else:
            return NOT_IP
    elif lt == LINKTYPE_NFLOG:
        if cap < 4:
            return TRUNCATED_L2
        fam = np.int64(d[p])
        q = p + 4
        found = False
        while q + 4 <= end:
            tlen = np.int64(d[q]) | (np.int64(d[q + 1]) << 8)  # host (little-endian) order
            ttype = np.int64(d[q + 2]) | (np.int64(d[q + 3]) << 8)
            if tlen < 4:
                break
            if (ttype & 0x7FFF) == NFULA_PAYLOAD:
                p = q + 4
                found = True
                break
            q += (tlen + 3) & ~3
        if not found:
            return TRUNCATED_L2 if fam == 2 or fam == 10 else NOT_IP
        if fam == 2:
            version = 4
        elif fam == 10:
            version = 6
        else:
            return NOT_IP
    else:
        return UNSUPPORTED_LINKTYPE

    if ethertype >= 0:
        while ethertype == ETH_P_8021Q or ethertype == ETH_P_8021AD or ethertype == ETH_P_QINQ1:
            if p + 4 > end:
                return TRUNCATED_L2
            if out.vlan_id[i] < 0:
                out.vlan_id[i] = _u16(d, p) & 0x0FFF
            ethertype = _u16(d, p + 2)
            p += 4
        if ethertype == ETH_P_IP:
            version = 4
        elif ethertype == ETH_P_IPV6:
            version = 6
        else:
            return NOT_IP

    # ---- L3
    l3 = p
    if l3 >= end:
        if version == 0:
            return TRUNCATED_L3
    nib = np.int64(d[l3] >> 4) if l3 < end else np.int64(0)
    if version == 0:
        if nib == 4 or nib == 6:
            version = nib
        else:
            return BAD_IP_VERSION
    out.l3_off[i] = l3
    out.family[i] = version
    wire_avail = wire - (l3 - base)  # IP bytes on the wire (skb->len at ip_rcv)
    if version == 4:
        if l3 + 20 > end:
            return TRUNCATED_L3
        if nib != 4:
            return BAD_IP_VERSION
        hlen = np.int64(d[l3] & 0x0F) * 4
        if hlen < 20:
            return BAD_IHL
        if l3 + hlen > end:
            return TRUNCATED_L3
        out.tos[i] = d[l3 + 1]
        iplen = _u16(d, l3 + 2)
        out.ip_len[i] = iplen
        out.ip_hlen[i] = hlen
        out.ip_id[i] = _u16(d, l3 + 4)
        fo = _u16(d, l3 + 6)
        frag_off = fo & 0x1FFF
        out.frag_off[i] = frag_off
        fl = 0
        if fo & 0x2000:
            fl |= _IP_FLAG_MF
        if fo & 0x4000:
            fl |= _IP_FLAG_DF
        if (fo & 0x2000) or frag_off != 0:
            fl |= _IP_FLAG_FRAGMENT
        if hlen > 20:
            fl |= _IP_FLAG_OPTIONS
        out.ip_flags[i] = fl
        out.ttl[i] = d[l3 + 8]
        proto = np.int64(d[l3 + 9])
        out.proto[i] = proto
        out.src_hi[i] = 0
        out.src_lo[i] = _addr_v4(d, l3 + 12)
        out.dst_hi[i] = 0
        out.dst_lo[i] = _addr_v4(d, l3 + 16)
        out.ip_csum[i] = CSUM_GOOD if _csum_fold(_csum_add(d, l3, hlen, np.int64(0))) == 0xFFFF else CSUM_BAD
        if iplen > wire_avail or iplen < hlen:
            return BAD_IP_LEN
        l4 = l3 + hlen
        l4_len = iplen - hlen
        is_frag = (fl & _IP_FLAG_FRAGMENT) != 0
        if frag_off != 0:
            out.l4_len[i] = l4_len
            return FRAGMENT
    else:
        if l3 + 40 > end:
            return TRUNCATED_L3
        if nib != 6:
            return BAD_IP_VERSION
        out.tos[i] = ((np.int64(d[l3]) & 0x0F) << 4) | (np.int64(d[l3 + 1]) >> 4)
        iplen = 40 + _u16(d, l3 + 4)
        out.ip_len[i] = iplen
        out.ttl[i] = d[l3 + 7]
        out.src_hi[i] = _u64be(d, l3 + 8)
        out.src_lo[i] = _u64be(d, l3 + 16)
        out.dst_hi[i] = _u64be(d, l3 + 24)
        out.dst_lo[i] = _u64be(d, l3 + 32)
        out.ip_hlen[i] = 40
        out.proto[i] = d[l3 + 6]
        if iplen > wire_avail:
            return BAD_IP_LEN
        cap_ip_end = min(end, l3 + iplen)
        proto, l4, fo6, mf6, fid6, hf6, err = _v6_skip_exthdr(d, l3 + 40, cap_ip_end, np.int64(d[l3 + 6]))
        out.proto[i] = proto
        out.ip_hlen[i] = l4 - l3
        if hf6:
            out.ip_id[i] = fid6
            out.frag_off[i] = fo6
            out.ip_flags[i] = _IP_FLAG_FRAGMENT | (_IP_FLAG_MF if mf6 else 0)
        if err != 0:
            if err == 1 and cap_ip_end < l3 + iplen:
                return TRUNCATED_L3
            return BAD_IPV6_EXT
        l4_len = iplen - (l4 - l3)
        is_frag = hf6 != 0
        if fo6 != 0:
            out.l4_len[i] = l4_len
            return FRAGMENT

    # ---- L4
    out.l4_len[i] = l4_len
    ip_end = l3 + iplen
    cend = min(end, ip_end)  # captured end of this IP packet
    avail = cend - l4
    complete = (end >= ip_end) and not is_frag
    if proto == 6:
        if l4_len < 20:
            return BAD_L4
        if avail < 20:
            return TRUNCATED_L4
        out.sport[i] = _u16(d, l4)
        out.dport[i] = _u16(d, l4 + 2)
        out.tcp_seq[i] = _u32(d, l4 + 4)
        ack = _u32(d, l4 + 8)
        out.tcp_ack[i] = ack
        out.tcp_sack[i] = ack
        thl = (np.int64(d[l4 + 12]) >> 4) * 4
        out.tcp_hlen[i] = thl
        out.tcp_flags[i] = np.int64(d[l4 + 13]) | ((np.int64(d[l4 + 12]) & 1) << 8)
        out.tcp_win[i] = _u16(d, l4 + 14)
        if thl < 20 or thl > l4_len:
            return BAD_L4
        out.payload_len[i] = l4_len - thl
        if thl > avail:
            return TRUNCATED_L4
        _decode_tcp_options(d, out, i, l4 + 20, thl - 20)
    elif proto == 17 or proto == 136:
        if l4_len < 8:
            return BAD_L4
        if avail < 8:
            return TRUNCATED_L4
        out.sport[i] = _u16(d, l4)
        out.dport[i] = _u16(d, l4 + 2)
        out.payload_len[i] = l4_len - 8
        if proto == 136:
            complete = False  # UDP-Lite coverage: not verified
    elif proto == 132:
        if l4_len < 12:
            return BAD_L4
        if avail < 12:
            return TRUNCATED_L4
        out.sport[i] = _u16(d, l4)
        out.dport[i] = _u16(d, l4 + 2)
        out.payload_len[i] = l4_len - 12
        complete = False  # CRC32c: not verified
    elif (proto == 1 and version == 4) or (proto == 58 and version == 6):
        if avail >= 4:
            out.icmp_type[i] = d[l4]
            out.icmp_code[i] = d[l4 + 1]
        if avail >= 6:
            out.icmp_id[i] = _u16(d, l4 + 4)
        if l4_len < 8:
            return BAD_L4
        if avail < 8:
            return TRUNCATED_L4
        out.payload_len[i] = l4_len - 8
        t = np.int64(d[l4])
        if version == 4:
            is_err = t == 3 or t == 4 or t == 5 or t == 11 or t == 12
        else:
            is_err = t >= 1 and t <= 4
        if is_err:
            _decode_inner(d, out, i, l4 + 8, cend, version == 6)
    else:
        complete = False

    if complete:
        if version == 4:
            if proto == 1:
                s = _csum_add(d, l4, l4_len, np.int64(0))
            else:
                if proto == 17 and _u16(d, l4 + 6) == 0:
                    out.l4_csum[i] = CSUM_GOOD  # no checksum over IPv4
                    return OK
                s = _csum_add(d, l3 + 12, 8, np.int64(0)) + proto + l4_len
                s = _csum_add(d, l4, l4_len, s)
        else:
            s = _csum_add(d, l3 + 8, 32, np.int64(0)) + proto + (l4_len >> 16) + (l4_len & 0xFFFF)
            s = _csum_add(d, l4, l4_len, s)
        out.l4_csum[i] = CSUM_GOOD if _csum_fold(s) == 0xFFFF else CSUM_BAD
    return OK


@kernel
def decode_packets(data, rec_off, out):
    """Decode every frame; see the module doc. `data` uint8, `rec_off` int64, `out` a PacketTable."""
    n = len(rec_off)
    for i in range(n):
        out.status[i] = _decode_one(data, np.int64(rec_off[i]), out, i)
    return n

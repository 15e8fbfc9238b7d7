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

from .._jit import borrow, kernel
from .framing import IF_NCOLS, ST_SIZE, frame_pcap, frame_pcapng, prefetch
from .loads import be16, be32, be64, le32, le64, u8

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
            fo = be16(d, pos + 2)
            frag_off = fo >> 3
            frag_mf = fo & 1
            frag_id = be32(d, pos + 4)
            has_frag = 1
            nh = np.int64(d[pos])
            pos += 8
            if frag_off != 0:
                return nh, pos, frag_off, frag_mf, frag_id, has_frag, 0
        else:
            return nh, pos, frag_off, frag_mf, frag_id, has_frag, 0
    return nh, pos, frag_off, frag_mf, frag_id, has_frag, 2


@kernel
def _decode_inner(d, p, lim, is_v6):
    """ICMP error payload at p (captured bytes up to lim).

    Returns (inner_ok, src_hi, src_lo, dst_hi, dst_lo, proto, sport, dport); fields not decoded are 0
    (the columns' zero default), e.g. the addresses and protocol of an inner non-first fragment are set
    but not its ports and inner_ok stays 0."""
    z = np.uint64(0)
    if not is_v6:
        if p + 20 > lim:
            return 0, z, z, z, z, 0, 0, 0
        if (d[p] >> 4) != 4:
            return 0, z, z, z, z, 0, 0, 0
        hl = np.int64(d[p] & 0x0F) * 4
        if hl < 20 or p + hl > lim:
            return 0, z, z, z, z, 0, 0, 0
        proto = np.int64(d[p + 9])
        src_hi = z
        src_lo = np.uint64(V4_MAPPED_LO) | np.uint64(be32(d, p + 12))
        dst_hi = z
        dst_lo = np.uint64(V4_MAPPED_LO) | np.uint64(be32(d, p + 16))
        if be16(d, p + 6) & 0x1FFF:
            # non-first fragment inside an ICMP error: no tuple (ipv4_get_l4proto)
            return 0, src_hi, src_lo, dst_hi, dst_lo, proto, 0, 0
        l4 = p + hl
    else:
        if p + 40 > lim:
            return 0, z, z, z, z, 0, 0, 0
        if (d[p] >> 4) != 6:
            return 0, z, z, z, z, 0, 0, 0
        src_hi = be64(d, p + 8)
        src_lo = be64(d, p + 16)
        dst_hi = be64(d, p + 24)
        dst_lo = be64(d, p + 32)
        proto, l4, fo, mf, fid, hf, err = _v6_skip_exthdr(d, p + 40, lim, np.int64(d[p + 6]))
        if err != 0 or fo != 0:
            return 0, src_hi, src_lo, dst_hi, dst_lo, proto, 0, 0
    if l4 + 8 > lim:
        return 0, src_hi, src_lo, dst_hi, dst_lo, proto, 0, 0
    sport = np.int64(0)
    dport = np.int64(0)
    if proto == 1 or proto == 58:
        sport = be16(d, l4 + 4)
        dport = (np.int64(d[l4]) << 8) | np.int64(d[l4 + 1])
    elif proto == 6 or proto == 17 or proto == 136 or proto == 132 or proto == 33:
        sport = be16(d, l4)
        dport = be16(d, l4 + 2)
    return 1, src_hi, src_lo, dst_hi, dst_lo, proto, sport, dport


@kernel
def _decode_tcp_options(d, p, n, ack):
    """TCP options at p, n bytes (all captured): returns (mss, wscale, sackok, sack) with the columns'
    defaults (0, -1, 0, ack) for absent options; sack as tcp_sack() computes it."""
    mss = np.int64(0)
    wscale = np.int64(-1)
    sackok = np.int64(0)
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
            mss = be16(d, q + 2)
        elif opcode == 3 and opsize == 3:
            ws = np.int64(d[q + 2])
            if ws > TCP_MAX_WSCALE:
                ws = TCP_MAX_WSCALE
            wscale = ws
        elif opcode == 4 and opsize == 2:
            sackok = np.int64(1)
        elif opcode == 5 and not sack_done:
            if opsize >= 10 and (opsize - 2) % 8 == 0:
                k = 0
                while k < opsize - 2:
                    right = be32(d, q + 2 + k + 4)
                    if ((sack - right) & 0xFFFFFFFF) >= 0x80000000:  # after(right, sack)
                        sack = right
                    k += 8
                sack_done = True
        q += opsize
        length -= opsize
    return mss, wscale, sackok, sack


@kernel
def table_stats(ts_ns, status, counts):
    """One pass over a decoded chunk for FileInfo: returns (min, max) of ts_ns (n >= 1) and adds the count
    of each status value to counts[status] (counts: int64, 256 entries)."""
    lo = ts_ns[0]
    hi = ts_ns[0]
    for i in range(len(ts_ns)):
        t = ts_ns[i]
        lo = min(lo, t)
        hi = max(hi, t)
        counts[np.uint8(status[i])] += 1
    return lo, hi


def decode_packets(data, rec_off, out):
    """Decode every frame; see the module doc. `data` uint8, `rec_off` int64, `out` a PacketTable whose
    framer-owned columns are filled. Returns the number of rows."""
    n, _pos, _err = frame_decode(data, 0, len(rec_off), MODE_FRAMED, False, False, 0, _NO_ST, _NO_IFS, 0, rec_off,
                                 out)
    return int(n)


MODE_PCAP = 0  # frame_decode: frame classic pcap records (framing.frame_pcap), then decode
MODE_PCAPNG = 1  # frame pcapng blocks (framing.frame_pcapng), then decode
MODE_FRAMED = 2  # the rows are framed already (any framer): decode only
BLOCK = 256  # records framed, then decoded, per step (~75 KB of frames: they stay in the L2 cache)
# the decode loop prefetches every cache line of the file up to this many bytes beyond the record it
# decodes: more than a block, so the framer finds the next block in the cache, and the file's bytes are
# fetched evenly while the decode computes (prefetching in bursts from the framer left memory idle
# during the decode and stalled the framer)
PREFETCH_DIST = 131072
_NO_ST = np.zeros(ST_SIZE, dtype=np.int64)
_NO_IFS = np.zeros((1, IF_NCOLS), dtype=np.int64)


@kernel
def frame_decode(d, pos, max_recs, mode, be, nano, pcap_linktype, ng_state, ng_ifs, rec_base, rec_off, out):
    """Frame (MODE_PCAP: frame_pcap with be/nano/pcap_linktype; MODE_PCAPNG: frame_pcapng with
    ng_state/ng_ifs; the other mode's arguments are ignored) from byte `pos` and decode, BLOCK records at
    a time, into rows 0 .. max_recs - 1 of `out` / `rec_off`. Returns (rows, next_pos, err) as the framers do.
    MODE_FRAMED decodes max_recs rows that another framer filled (`pos` is returned unchanged).

    One kernel holds both the framing calls and the per-packet decode, so numba compiles (and LLVM
    optimizes) the large decode code once. The columns are taken out of the NamedTuple once, before the
    loop: touching `out.<column>` inside the per-packet code costs a reference-count round trip per
    access, which numba cannot prune in branchy code (that was 90% of the decode time). Keep the
    per-packet code in this function, with no per-packet calls taking arrays other than `d`. Columns
    the decoder does not reach keep their schema.empty() value: `out` must come zeroed (schema.empty, or
    capture._zeroed_table, whose untouched pages are never allocated), and the decoder writes no zero
    value except the status; the -1 defaults (vlan_id, l3_off, tcp_wscale) it writes for every row. Inside the loop, `st = CODE; break`
    leaves the one-pass `_once` loop: the packet's decode ends there with status CODE."""
    d = borrow(d)  # the caller keeps d, rec_off and out alive: no reference counting in the calls below
    rec_off = borrow(rec_off)
    out = borrow(out)
    linktype, wire_len, cap_len = out.linktype, out.wire_len, out.cap_len
    pkt_dir, ifindex = out.pkt_dir, out.ifindex
    status, vlan_id, eth_src, eth_dst, l3_off = out.status, out.vlan_id, out.eth_src, out.eth_dst, out.l3_off
    family, src_hi, src_lo, dst_hi, dst_lo = out.family, out.src_hi, out.src_lo, out.dst_hi, out.dst_lo
    ip_len, ip_hlen, ttl, tos = out.ip_len, out.ip_hlen, out.ttl, out.tos
    ip_id, frag_off = out.ip_id, out.frag_off
    ip_flags, proto, sport, dport, l4_len = out.ip_flags, out.proto, out.sport, out.dport, out.l4_len
    payload_len, tcp_flags, tcp_seq, tcp_ack = out.payload_len, out.tcp_flags, out.tcp_seq, out.tcp_ack
    tcp_win, tcp_hlen, tcp_wscale, tcp_mss = out.tcp_win, out.tcp_hlen, out.tcp_wscale, out.tcp_mss
    tcp_sackok, tcp_sack, icmp_type, icmp_code = out.tcp_sackok, out.tcp_sack, out.icmp_type, out.icmp_code
    icmp_id, inner_ok, inner_proto, inner_sport = out.icmp_id, out.inner_ok, out.inner_proto, out.inner_sport
    inner_src_hi, inner_src_lo, inner_dst_hi = out.inner_src_hi, out.inner_src_lo, out.inner_dst_hi
    inner_dst_lo, inner_dport, ip_csum, l4_csum = out.inner_dst_lo, out.inner_dport, out.ip_csum, out.l4_csum
    n = 0  # rows framed so far
    pf = np.int64(pos)  # the file is prefetched up to here
    i = 0  # next row to decode
    err = 0
    done = False
    while i < max_recs:
        if i == n:
            if done:
                break
            want = min(BLOCK, max_recs - n)
            if mode == MODE_PCAPNG:
                k, pos, err = frame_pcapng(d, pos, n, want, ng_state, ng_ifs, rec_base + n, rec_off, out)
            elif mode == MODE_PCAP:
                k, pos, err = frame_pcap(d, pos, n, want, be, nano, pcap_linktype, rec_base + n, rec_off, out)
            else:
                k = want
            n += k
            if err != 0 or k < want:
                done = True
            if k == 0:
                break
        base = np.int64(rec_off[i])
        if pf < base:
            pf = base
        while pf < base + PREFETCH_DIST:
            prefetch(d, pf)
            pf += 64
        st = OK
        vlan_id[i] = -1  # the "none" defaults: the table's memory may be fresh zero pages
        l3_off[i] = -1
        tcp_wscale[i] = -1
        for _once in range(1):
            cap = np.int64(cap_len[i])
            wire = np.int64(wire_len[i])
            end = base + cap
            lt = np.int64(linktype[i])
            p = base
            ethertype = np.int64(-1)  # for link types carrying an ethertype
            version = np.int64(0)  # 4/6 decided by the link layer; 0 = by version nibble
            if lt == LINKTYPE_ETHERNET:
                if cap < 14:
                    st = TRUNCATED_L2
                    break
                eth_dst[i] = be64(d, p) >> np.uint64(16)
                eth_src[i] = be64(d, p + 6) >> np.uint64(16)
                ethertype = be16(d, p + 12)
                p += 14
            elif lt == LINKTYPE_LINUX_SLL:
                if cap < 16:
                    st = TRUNCATED_L2
                    break
                pkttype = be16(d, p)
                if pkttype == PACKET_OUTGOING:
                    pkt_dir[i] = DIR_OUTGOING
                elif pkttype <= 3:
                    pkt_dir[i] = DIR_INCOMING
                if be16(d, p + 4) == 6 and be16(d, p + 2) == 1:
                    eth_src[i] = be64(d, p + 6) >> np.uint64(16)
                ethertype = be16(d, p + 14)
                p += 16
            elif lt == LINKTYPE_LINUX_SLL2:
                if cap < 20:
                    st = TRUNCATED_L2
                    break
                ethertype = be16(d, p)
                ifx = be32(d, p + 4)
                ifindex[i] = ifx if ifx < 32768 else -1
                pkttype = np.int64(u8(d, p + 10))
                if pkttype == PACKET_OUTGOING:
                    pkt_dir[i] = DIR_OUTGOING
                elif pkttype <= 3:
                    pkt_dir[i] = DIR_INCOMING
                if u8(d, p + 11) == 6 and be16(d, p + 8) == 1:
                    eth_src[i] = be64(d, p + 12) >> np.uint64(16)
                p += 20
            elif lt == LINKTYPE_RAW or lt == LINKTYPE_RAW_OLD12 or lt == LINKTYPE_RAW_OLD14:
                version = 0
            elif lt == LINKTYPE_IPV4:
                version = 4
            elif lt == LINKTYPE_IPV6:
                version = 6
            elif lt == LINKTYPE_NULL or lt == LINKTYPE_LOOP:
                if cap < 4:
                    st = TRUNCATED_L2
                    break
                fam = (np.int64(u8(d, p + 3)) << 24) | (np.int64(u8(d, p + 2)) << 16) | (np.int64(u8(d, p + 1)) << 8) \
                    | np.int64(u8(d, p))
                if fam > 0xFFFF:  # stored in the other byte order
                    fam = be32(d, p)
                p += 4
                if fam == 2:
                    version = 4
                elif fam == 10 or fam == 24 or fam == 28 or fam == 30:
                    version = 6
                else:
                    st = NOT_IP
                    break
            elif lt == LINKTYPE_NFLOG:
                if cap < 4:
                    st = TRUNCATED_L2
                    break
                fam = np.int64(u8(d, p))
                q = p + 4
                found = False
                while q + 4 <= end:
                    tlen = np.int64(u8(d, q)) | (np.int64(u8(d, q + 1)) << 8)  # host (little-endian) order
                    ttype = np.int64(u8(d, q + 2)) | (np.int64(u8(d, q + 3)) << 8)
                    if tlen < 4:
                        break
                    if (ttype & 0x7FFF) == NFULA_PAYLOAD:
                        p = q + 4
                        found = True
                        break
                    q += (tlen + 3) & ~3
                if not found:
                    st = TRUNCATED_L2 if fam == 2 or fam == 10 else NOT_IP
                    break
                if fam == 2:
                    version = 4
                elif fam == 10:
                    version = 6
                else:
                    st = NOT_IP
                    break
            else:
                st = UNSUPPORTED_LINKTYPE
                break

            if ethertype >= 0:
                have_vlan = False
                while ethertype == ETH_P_8021Q or ethertype == ETH_P_8021AD or ethertype == ETH_P_QINQ1:
                    if p + 4 > end:
                        st = TRUNCATED_L2
                        break
                    if not have_vlan:
                        vlan_id[i] = be16(d, p) & 0x0FFF
                        have_vlan = True
                    ethertype = be16(d, p + 2)
                    p += 4
                if st != OK:
                    break
                if ethertype == ETH_P_IP:
                    version = 4
                elif ethertype == ETH_P_IPV6:
                    version = 6
                else:
                    st = NOT_IP
                    break

            # ---- L3
            l3 = p
            if l3 >= end:
                if version == 0:
                    st = TRUNCATED_L3
                    break
            nib = np.int64(u8(d, l3) >> 4) if l3 < end else np.int64(0)
            if version == 0:
                if nib == 4 or nib == 6:
                    version = nib
                else:
                    st = BAD_IP_VERSION
                    break
            l3_off[i] = l3
            family[i] = version
            wire_avail = wire - (l3 - base)  # IP bytes on the wire (skb->len at ip_rcv)
            if version == 4:
                if l3 + 20 > end:
                    st = TRUNCATED_L3
                    break
                if nib != 4:
                    st = BAD_IP_VERSION
                    break
                hlen = np.int64(u8(d, l3) & 0x0F) * 4
                if hlen < 20:
                    st = BAD_IHL
                    break
                if l3 + hlen > end:
                    st = TRUNCATED_L3
                    break
                tos[i] = u8(d, l3 + 1)
                iplen = be16(d, l3 + 2)
                ip_len[i] = iplen
                ip_hlen[i] = hlen
                ip_id[i] = be16(d, l3 + 4)
                fo = be16(d, l3 + 6)
                foff = fo & 0x1FFF
                if foff != 0:
                    frag_off[i] = foff
                fl = 0
                if fo & 0x2000:
                    fl |= _IP_FLAG_MF
                if fo & 0x4000:
                    fl |= _IP_FLAG_DF
                if (fo & 0x2000) or foff != 0:
                    fl |= _IP_FLAG_FRAGMENT
                if hlen > 20:
                    fl |= _IP_FLAG_OPTIONS
                ip_flags[i] = fl
                ttl[i] = u8(d, l3 + 8)
                l4p = np.int64(u8(d, l3 + 9))
                proto[i] = l4p
                # src_hi / dst_hi stay 0 (v4-mapped): not written, so an IPv4-only capture never touches
                # those columns' pages
                src_lo[i] = np.uint64(V4_MAPPED_LO) | np.uint64(be32(d, l3 + 12))
                dst_lo[i] = np.uint64(V4_MAPPED_LO) | np.uint64(be32(d, l3 + 16))
                # header checksum: little-endian 32-bit words (see the L4 sum below); hlen is a multiple of 4
                hs = le32(d, l3) + le32(d, l3 + 4) + le32(d, l3 + 8) + le32(d, l3 + 12) + le32(d, l3 + 16)
                for k in range(l3 + 20, l3 + hlen, 4):
                    hs += le32(d, k)
                ip_csum[i] = CSUM_GOOD if hs != 0 and hs % 0xFFFF == 0 else CSUM_BAD
                if iplen > wire_avail or iplen < hlen:
                    st = BAD_IP_LEN
                    break
                l4 = l3 + hlen
                l4len = iplen - hlen
                is_frag = (fl & _IP_FLAG_FRAGMENT) != 0
                if foff != 0:
                    l4_len[i] = l4len
                    st = FRAGMENT
                    break
            else:
                if l3 + 40 > end:
                    st = TRUNCATED_L3
                    break
                if nib != 6:
                    st = BAD_IP_VERSION
                    break
                tos[i] = ((np.int64(u8(d, l3)) & 0x0F) << 4) | (np.int64(u8(d, l3 + 1)) >> 4)
                iplen = 40 + be16(d, l3 + 4)
                ip_len[i] = iplen
                ttl[i] = u8(d, l3 + 7)
                src_hi[i] = be64(d, l3 + 8)
                src_lo[i] = be64(d, l3 + 16)
                dst_hi[i] = be64(d, l3 + 24)
                dst_lo[i] = be64(d, l3 + 32)
                ip_hlen[i] = 40
                proto[i] = u8(d, l3 + 6)
                if iplen > wire_avail:
                    st = BAD_IP_LEN
                    break
                cap_ip_end = min(end, l3 + iplen)
                l4p, l4, fo6, mf6, fid6, hf6, xerr = _v6_skip_exthdr(d, l3 + 40, cap_ip_end, np.int64(u8(d, l3 + 6)))
                proto[i] = l4p
                ip_hlen[i] = l4 - l3
                if hf6:
                    ip_id[i] = fid6
                    frag_off[i] = fo6
                    ip_flags[i] = _IP_FLAG_FRAGMENT | (_IP_FLAG_MF if mf6 else 0)
                if xerr != 0:
                    st = TRUNCATED_L3 if xerr == 1 and cap_ip_end < l3 + iplen else BAD_IPV6_EXT
                    break
                l4len = iplen - (l4 - l3)
                is_frag = hf6 != 0
                if fo6 != 0:
                    l4_len[i] = l4len
                    st = FRAGMENT
                    break

            # ---- L4
            l4_len[i] = l4len
            ip_end = l3 + iplen
            cend = min(end, ip_end)  # captured end of this IP packet
            avail = cend - l4
            complete = (end >= ip_end) and not is_frag
            if l4p == 6:
                if l4len < 20:
                    st = BAD_L4
                    break
                if avail < 20:
                    st = TRUNCATED_L4
                    break
                sport[i] = be16(d, l4)
                dport[i] = be16(d, l4 + 2)
                tcp_seq[i] = be32(d, l4 + 4)
                ack = be32(d, l4 + 8)
                tcp_ack[i] = ack
                tcp_sack[i] = ack
                thl = (np.int64(u8(d, l4 + 12)) >> 4) * 4
                tcp_hlen[i] = thl
                tcp_flags[i] = np.int64(u8(d, l4 + 13)) | ((np.int64(u8(d, l4 + 12)) & 1) << 8)
                tcp_win[i] = be16(d, l4 + 14)
                if thl < 20 or thl > l4len:
                    st = BAD_L4
                    break
                payload_len[i] = l4len - thl
                if thl > avail:
                    st = TRUNCATED_L4
                    break
                if thl > 20:
                    mss, wsc, sok, sack = _decode_tcp_options(d, l4 + 20, thl - 20, ack)
                    tcp_mss[i] = mss
                    tcp_wscale[i] = wsc
                    tcp_sackok[i] = sok
                    tcp_sack[i] = sack
            elif l4p == 17 or l4p == 136:
                if l4len < 8:
                    st = BAD_L4
                    break
                if avail < 8:
                    st = TRUNCATED_L4
                    break
                sport[i] = be16(d, l4)
                dport[i] = be16(d, l4 + 2)
                payload_len[i] = l4len - 8
                if l4p == 136:
                    complete = False  # UDP-Lite coverage: not verified
            elif l4p == 132:
                if l4len < 12:
                    st = BAD_L4
                    break
                if avail < 12:
                    st = TRUNCATED_L4
                    break
                sport[i] = be16(d, l4)
                dport[i] = be16(d, l4 + 2)
                payload_len[i] = l4len - 12
                complete = False  # CRC32c: not verified
            elif (l4p == 1 and version == 4) or (l4p == 58 and version == 6):
                if avail >= 4:
                    icmp_type[i] = u8(d, l4)
                    icmp_code[i] = u8(d, l4 + 1)
                if avail >= 6:
                    icmp_id[i] = be16(d, l4 + 4)
                if l4len < 8:
                    st = BAD_L4
                    break
                if avail < 8:
                    st = TRUNCATED_L4
                    break
                payload_len[i] = l4len - 8
                t = np.int64(u8(d, l4))
                if version == 4:
                    is_err = t == 3 or t == 4 or t == 5 or t == 11 or t == 12
                else:
                    is_err = t >= 1 and t <= 4
                if is_err:
                    iok, ish, isl, idh, idl, ipr, isp, idp = _decode_inner(d, l4 + 8, cend, version == 6)
                    inner_ok[i] = iok
                    inner_src_hi[i] = ish
                    inner_src_lo[i] = isl
                    inner_dst_hi[i] = idh
                    inner_dst_lo[i] = idl
                    inner_proto[i] = ipr
                    inner_sport[i] = isp
                    inner_dport[i] = idp
            else:
                complete = False

            if complete:
                # One's-complement sum with the pseudo-header. The packet is good when the exact sum s of its
                # big-endian 16-bit words, folded, is 0xFFFF, i.e. when s > 0 and s % 0xFFFF == 0 (folding
                # keeps s mod 0xFFFF and only 0 folds to 0). The bytes are summed as little-endian words w
                # (wide loads, vectorized): a 32-bit word is its two 16-bit words mod 0xFFFF
                # (65536 = 1), a little-endian 16-bit word is 256 x the big-endian one mod 0xFFFF, so
                # s = ps + 256 * w (mod 0xFFFF), and s = 0 exactly when ps = 0 and w = 0.
                if version == 4:
                    if l4p == 1:
                        ps = np.int64(0)
                    elif l4p == 17 and be16(d, l4 + 6) == 0:
                        l4_csum[i] = CSUM_GOOD  # no checksum over IPv4
                        break
                    else:
                        ps = be32(d, l3 + 12) % 0xFFFF + be32(d, l3 + 16) % 0xFFFF + l4p + l4len
                else:
                    m = np.uint64(0xFFFF)
                    ps = (np.int64(be64(d, l3 + 8) % m) + np.int64(be64(d, l3 + 16) % m)
                          + np.int64(be64(d, l3 + 24) % m) + np.int64(be64(d, l3 + 32) % m) + l4p + l4len)
                # the L4 bytes, inline (a call per packet would cost a reference-count round trip on d),
                # 8 at a time: a 64-bit word is its two 32-bit halves mod 0xFFFF. Unsigned indices: a signed
                # index makes numba wrap negative values around, which keeps LLVM from vectorizing the loop.
                w = np.uint64(0)
                q = np.uint64(l4)
                for _ in range(np.uint64(l4len >> 3)):
                    x = le64(d, q)
                    w += (x & np.uint64(0xFFFFFFFF)) + (x >> np.uint64(32))
                    q += np.uint64(8)
                t = l4len & 7
                if t != 0:
                    # the last t bytes: the 8 bytes ending the packet (l4 >= l3 + 20: never before the IP
                    # header), shifted down so that only those t remain, as a little-endian word padded with
                    # zeros (its offset from l4 is a multiple of 8, so its 16-bit words are the packet's)
                    x = le64(d, l4 + l4len - 8) >> np.uint64(64 - 8 * t)
                    w += (x & np.uint64(0xFFFFFFFF)) + (x >> np.uint64(32))
                good = (ps != 0 or w != 0) and (ps + 256 * np.int64(w % np.uint64(0xFFFF))) % 0xFFFF == 0
                l4_csum[i] = CSUM_GOOD if good else CSUM_BAD
        status[i] = st
        i += 1
    return n, pos, err

"""The packet table: one row per captured packet, struct of arrays, declared once here.

Addresses: IPv4 and IPv6 share one representation, two uint64 columns per address holding the
128-bit IPv6 address big-endian (`*_hi` = first 8 bytes, `*_lo` = last 8 bytes); an IPv4 address
a.b.c.d is stored v4-mapped, ::ffff:a.b.c.d, i.e. hi = 0 and lo = 0x0000_ffff_0000_0000 | a.b.c.d.
`family` (4/6) says which one a packet is. See nfreplay.replay.addr for conversions.

Timestamps are int64 nanoseconds since the epoch. Offsets into the capture bytes are int64.
Memory: about 190 bytes per packet for the table below (plus the captured bytes themselves, which
stay in the memory-mapped file and are not copied).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._jit import kernel

# (name, dtype, unit, meaning) -- the one declaration every other part derives from.
PACKET_COLUMNS: tuple[tuple[str, str, str, str], ...] = (
    ("ts_ns", "int64", "ns since epoch", "capture timestamp"),
    ("file_id", "int16", "", "index of the capture file in the merged stream"),
    ("rec_num", "int64", "", "0-based record number of the packet in its file"),
    ("linktype", "int16", "", "DLT/LINKTYPE of the record's interface"),
    ("wire_len", "int32", "bytes", "original length on the wire"),
    ("cap_len", "int32", "bytes", "captured length"),
    ("pkt_dir", "int8", "", "codes.PktDir: direction recorded by the capture (SLL pkttype, epb_flags)"),
    ("ifindex", "int16", "", "capture interface (pcapng IDB index, SLL2 ifindex); -1 unknown"),
    ("status", "int8", "", "codes.PktStatus decode status"),
    ("vlan_id", "int16", "", "outermost 802.1Q VLAN id; -1 untagged"),
    ("eth_src", "uint64", "", "Ethernet source MAC (48 bits); 0 when no Ethernet header"),
    ("eth_dst", "uint64", "", "Ethernet destination MAC; 0 when no Ethernet header"),
    ("l3_off", "int64", "bytes", "offset of the IP header in the capture bytes; -1 when no IP header"),
    ("family", "uint8", "", "4 or 6; 0 when not IP"),
    ("src_hi", "uint64", "", "source address, high 64 bits (see module doc)"),
    ("src_lo", "uint64", "", "source address, low 64 bits"),
    ("dst_hi", "uint64", "", "destination address, high 64 bits"),
    ("dst_lo", "uint64", "", "destination address, low 64 bits"),
    ("ip_len", "int32", "bytes", "IP length as the kernel counts it: IPv4 total length, IPv6 40 + payload length"),
    ("ip_hlen", "int16", "bytes", "offset of the L4 header from l3_off (IPv4 IHL*4; IPv6 40 + extension headers)"),
    ("ttl", "uint8", "", "TTL / hop limit"),
    ("tos", "uint8", "", "TOS / traffic class byte"),
    ("ip_id", "uint32", "", "IPv4 id; IPv6 fragment header id (0 when none)"),
    ("frag_off", "uint16", "8-byte units", "fragment offset"),
    ("ip_flags", "uint8", "", "bit0 MF, bit1 DF, bit2 fragment (v4 MF or offset, v6 fragment header), bit3 IPv4 options present"),
    ("proto", "uint8", "", "L4 protocol (IPv6: after the extension header chain)"),
    ("sport", "uint16", "", "TCP/UDP/UDP-Lite/SCTP source port; 0 otherwise"),
    ("dport", "uint16", "", "TCP/UDP/UDP-Lite/SCTP destination port; 0 otherwise"),
    ("l4_len", "int32", "bytes", "L4 length from the IP header (ip_len - ip_hlen)"),
    ("payload_len", "int32", "bytes", "L4 payload length (TCP: l4_len - data offset; UDP: l4_len - 8)"),
    ("tcp_flags", "uint16", "", "TCP flags byte (FIN=1 SYN=2 RST=4 PSH=8 ACK=16 URG=32 ECE=64 CWR=128)"),
    ("tcp_seq", "uint32", "", "TCP sequence number"),
    ("tcp_ack", "uint32", "", "TCP acknowledgment number"),
    ("tcp_win", "uint16", "", "TCP window field (unscaled)"),
    ("tcp_hlen", "uint8", "bytes", "TCP data offset * 4"),
    ("tcp_wscale", "int8", "", "window scale option value; -1 absent"),
    ("tcp_mss", "uint16", "bytes", "MSS option; 0 absent"),
    ("tcp_sackok", "uint8", "", "1 when SACK-permitted option present"),
    ("tcp_sack", "uint32", "", "ack number raised to the highest SACK right edge, as tcp_sack() computes it; = tcp_ack when no SACK"),
    ("icmp_type", "uint8", "", "ICMP/ICMPv6 type"),
    ("icmp_code", "uint8", "", "ICMP/ICMPv6 code"),
    ("icmp_id", "uint16", "", "ICMP identifier (bytes 4-5 of the ICMP header, for every type)"),
    ("inner_ok", "int8", "", "ICMP error: 1 when the embedded IP header and 8 bytes of L4 were decoded"),
    ("inner_src_hi", "uint64", "", "ICMP error: embedded source address"),
    ("inner_src_lo", "uint64", "", ""),
    ("inner_dst_hi", "uint64", "", "ICMP error: embedded destination address"),
    ("inner_dst_lo", "uint64", "", ""),
    ("inner_proto", "uint8", "", "ICMP error: embedded L4 protocol"),
    ("inner_sport", "uint16", "", "ICMP error: embedded source port (inner ICMP: its identifier)"),
    ("inner_dport", "uint16", "", "ICMP error: embedded destination port (inner ICMP: type << 8 | code)"),
    ("ip_csum", "int8", "", "codes.CsumStatus of the IPv4 header checksum (IPv6: UNKNOWN)"),
    ("l4_csum", "int8", "", "codes.CsumStatus of the L4 checksum (with pseudo-header)"),
)


class PacketTable(NamedTuple):
    ts_ns: np.ndarray
    file_id: np.ndarray
    rec_num: np.ndarray
    linktype: np.ndarray
    wire_len: np.ndarray
    cap_len: np.ndarray
    pkt_dir: np.ndarray
    ifindex: np.ndarray
    status: np.ndarray
    vlan_id: np.ndarray
    eth_src: np.ndarray
    eth_dst: np.ndarray
    l3_off: np.ndarray
    family: np.ndarray
    src_hi: np.ndarray
    src_lo: np.ndarray
    dst_hi: np.ndarray
    dst_lo: np.ndarray
    ip_len: np.ndarray
    ip_hlen: np.ndarray
    ttl: np.ndarray
    tos: np.ndarray
    ip_id: np.ndarray
    frag_off: np.ndarray
    ip_flags: np.ndarray
    proto: np.ndarray
    sport: np.ndarray
    dport: np.ndarray
    l4_len: np.ndarray
    payload_len: np.ndarray
    tcp_flags: np.ndarray
    tcp_seq: np.ndarray
    tcp_ack: np.ndarray
    tcp_win: np.ndarray
    tcp_hlen: np.ndarray
    tcp_wscale: np.ndarray
    tcp_mss: np.ndarray
    tcp_sackok: np.ndarray
    tcp_sack: np.ndarray
    icmp_type: np.ndarray
    icmp_code: np.ndarray
    icmp_id: np.ndarray
    inner_ok: np.ndarray
    inner_src_hi: np.ndarray
    inner_src_lo: np.ndarray
    inner_dst_hi: np.ndarray
    inner_dst_lo: np.ndarray
    inner_proto: np.ndarray
    inner_sport: np.ndarray
    inner_dport: np.ndarray
    ip_csum: np.ndarray
    l4_csum: np.ndarray


assert PacketTable._fields == tuple(c[0] for c in PACKET_COLUMNS), "schema and NamedTuple disagree"

IP_FLAG_MF = 1
IP_FLAG_DF = 2
IP_FLAG_FRAGMENT = 4
IP_FLAG_OPTIONS = 8

_DTYPES = {name: np.dtype(dt) for name, dt, _u, _m in PACKET_COLUMNS}


def empty(n: int) -> PacketTable:
    """A zeroed table of n rows (ids/offsets that mean 'none' are set to -1)."""
    cols = {name: np.zeros(n, dtype=dt) for name, dt in _DTYPES.items()}
    for name in ("ifindex", "vlan_id", "l3_off", "tcp_wscale"):
        cols[name][:] = -1
    return PacketTable(**cols)


def validate(t: PacketTable) -> PacketTable:
    """Check dtypes, lengths and contiguity; return t. Run at every public entry point."""
    n = len(t.ts_ns)
    for name, dt in _DTYPES.items():
        a = getattr(t, name)
        if not isinstance(a, np.ndarray) or a.dtype != dt or a.ndim != 1 or len(a) != n:
            raise TypeError(f"packet table column {name}: expected {dt}[{n}], got "
                            f"{getattr(a, 'dtype', type(a))}[{getattr(a, 'shape', '?')}]")
        if not a.flags.c_contiguous:
            raise TypeError(f"packet table column {name} is not C-contiguous")
    return t


def concat(tables: list[PacketTable]) -> PacketTable:
    return PacketTable(*(np.concatenate([getattr(t, f) for t in tables]) for f in PacketTable._fields))


def take(t: PacketTable, idx) -> PacketTable:
    """Rows idx (an index array or slice) of t, as a new contiguous table."""
    return PacketTable(*(np.ascontiguousarray(getattr(t, f)[idx]) for f in PacketTable._fields))


def nbytes_per_packet() -> int:
    return sum(dt.itemsize for dt in _DTYPES.values())


# ------------------------------------------------------------------ per-packet vector (additive)
# The engine (conntrack, pipeline, NAT) reads a packet's fields from one small int64 vector instead of
# the 52-array PacketTable: the driver fills a block of rows with load_pv_block once per block, and
# per-packet code passes the row `pv` (see docs/pipeline.md, "Kernel data passing"). uint64 columns
# (addresses, MACs) hold their int64 bit patterns.
PV_TS = 0
PV_STATUS = 1
PV_FAMILY = 2
PV_PROTO = 3
PV_SRC_HI = 4
PV_SRC_LO = 5
PV_DST_HI = 6
PV_DST_LO = 7
PV_SPORT = 8
PV_DPORT = 9
PV_IP_LEN = 10
PV_L4_LEN = 11
PV_L4_CSUM = 12
PV_IP_CSUM = 13
PV_TCP_HLEN = 14
PV_TCP_FLAGS = 15
PV_TCP_SEQ = 16
PV_TCP_ACK = 17
PV_TCP_SACK = 18
PV_TCP_WIN = 19
PV_TCP_WSCALE = 20
PV_TCP_SACKOK = 21
PV_TCP_MSS = 22
PV_ICMP_TYPE = 23
PV_ICMP_CODE = 24
PV_ICMP_ID = 25
PV_INNER_OK = 26
PV_INNER_PROTO = 27
PV_INNER_SPORT = 28
PV_INNER_DPORT = 29
PV_INNER_SRC_HI = 30
PV_INNER_SRC_LO = 31
PV_INNER_DST_HI = 32
PV_INNER_DST_LO = 33
PV_L3_OFF = 34
PV_IP_HLEN = 35
PV_TTL = 36
PV_TOS = 37
PV_FRAG_OFF = 38
PV_IP_ID = 39
PV_IP_FLAGS = 40
PV_ETH_SRC = 41
PV_ETH_DST = 42
PV_VLAN_ID = 43
PV_PKT_DIR = 44
PV_INDEX = 45  # row index of the packet in its table
N_PV = 48


@kernel
def load_pv_block(pk, start, end, out):
    """Rows [start, end) of pk into out[0:end-start, :] (int64[B, N_PV]). The columns are taken out
    of the table once per call (no per-row NamedTuple traffic)."""
    ts = pk.ts_ns
    status = pk.status
    family = pk.family
    proto = pk.proto
    src_hi = pk.src_hi
    src_lo = pk.src_lo
    dst_hi = pk.dst_hi
    dst_lo = pk.dst_lo
    sport = pk.sport
    dport = pk.dport
    ip_len = pk.ip_len
    l4_len = pk.l4_len
    l4_csum = pk.l4_csum
    ip_csum = pk.ip_csum
    tcp_hlen = pk.tcp_hlen
    tcp_flags = pk.tcp_flags
    tcp_seq = pk.tcp_seq
    tcp_ack = pk.tcp_ack
    tcp_sack = pk.tcp_sack
    tcp_win = pk.tcp_win
    tcp_wscale = pk.tcp_wscale
    tcp_sackok = pk.tcp_sackok
    tcp_mss = pk.tcp_mss
    icmp_type = pk.icmp_type
    icmp_code = pk.icmp_code
    icmp_id = pk.icmp_id
    inner_ok = pk.inner_ok
    inner_proto = pk.inner_proto
    inner_sport = pk.inner_sport
    inner_dport = pk.inner_dport
    inner_src_hi = pk.inner_src_hi
    inner_src_lo = pk.inner_src_lo
    inner_dst_hi = pk.inner_dst_hi
    inner_dst_lo = pk.inner_dst_lo
    l3_off = pk.l3_off
    ip_hlen = pk.ip_hlen
    ttl = pk.ttl
    tos = pk.tos
    frag_off = pk.frag_off
    ip_id = pk.ip_id
    ip_flags = pk.ip_flags
    eth_src = pk.eth_src
    eth_dst = pk.eth_dst
    vlan_id = pk.vlan_id
    pkt_dir = pk.pkt_dir
    for i in range(start, end):
        k = i - start
        out[k, PV_TS] = ts[i]
        out[k, PV_STATUS] = status[i]
        out[k, PV_FAMILY] = family[i]
        out[k, PV_PROTO] = proto[i]
        out[k, PV_SRC_HI] = np.int64(src_hi[i])
        out[k, PV_SRC_LO] = np.int64(src_lo[i])
        out[k, PV_DST_HI] = np.int64(dst_hi[i])
        out[k, PV_DST_LO] = np.int64(dst_lo[i])
        out[k, PV_SPORT] = sport[i]
        out[k, PV_DPORT] = dport[i]
        out[k, PV_IP_LEN] = ip_len[i]
        out[k, PV_L4_LEN] = l4_len[i]
        out[k, PV_L4_CSUM] = l4_csum[i]
        out[k, PV_IP_CSUM] = ip_csum[i]
        out[k, PV_TCP_HLEN] = tcp_hlen[i]
        out[k, PV_TCP_FLAGS] = tcp_flags[i]
        out[k, PV_TCP_SEQ] = tcp_seq[i]
        out[k, PV_TCP_ACK] = tcp_ack[i]
        out[k, PV_TCP_SACK] = tcp_sack[i]
        out[k, PV_TCP_WIN] = tcp_win[i]
        out[k, PV_TCP_WSCALE] = tcp_wscale[i]
        out[k, PV_TCP_SACKOK] = tcp_sackok[i]
        out[k, PV_TCP_MSS] = tcp_mss[i]
        out[k, PV_ICMP_TYPE] = icmp_type[i]
        out[k, PV_ICMP_CODE] = icmp_code[i]
        out[k, PV_ICMP_ID] = icmp_id[i]
        out[k, PV_INNER_OK] = inner_ok[i]
        out[k, PV_INNER_PROTO] = inner_proto[i]
        out[k, PV_INNER_SPORT] = inner_sport[i]
        out[k, PV_INNER_DPORT] = inner_dport[i]
        out[k, PV_INNER_SRC_HI] = np.int64(inner_src_hi[i])
        out[k, PV_INNER_SRC_LO] = np.int64(inner_src_lo[i])
        out[k, PV_INNER_DST_HI] = np.int64(inner_dst_hi[i])
        out[k, PV_INNER_DST_LO] = np.int64(inner_dst_lo[i])
        out[k, PV_L3_OFF] = l3_off[i]
        out[k, PV_IP_HLEN] = ip_hlen[i]
        out[k, PV_TTL] = ttl[i]
        out[k, PV_TOS] = tos[i]
        out[k, PV_FRAG_OFF] = frag_off[i]
        out[k, PV_IP_ID] = ip_id[i]
        out[k, PV_IP_FLAGS] = ip_flags[i]
        out[k, PV_ETH_SRC] = np.int64(eth_src[i])
        out[k, PV_ETH_DST] = np.int64(eth_dst[i])
        out[k, PV_VLAN_ID] = vlan_id[i]
        out[k, PV_PKT_DIR] = pkt_dir[i]
        out[k, PV_INDEX] = i
    return end - start


@kernel
def load_pv(pk, i, pv):
    """Packet i of pk into pv (int64[N_PV])."""
    load_pv_block(pk, i, i + 1, pv.reshape((1, pv.shape[0])))

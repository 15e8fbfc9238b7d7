"""Integer codes shared by Python and kernels. Names and values follow the kernel where it has them.

Every enum here is an IntEnum; kernels use the plain int values (module-level constants are frozen
by numba at compile time, which is what we want for constants, never for tunables).
"""

from __future__ import annotations

from enum import IntEnum


class Family(IntEnum):
    """Address family of a packet (0 = not IP)."""

    NONE = 0
    IPV4 = 4
    IPV6 = 6


class Hook(IntEnum):
    """enum nf_inet_hooks (include/uapi/linux/netfilter.h)."""

    PREROUTING = 0
    INPUT = 1
    FORWARD = 2
    OUTPUT = 3
    POSTROUTING = 4


HOOK_NAMES = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")


class Verdict(IntEnum):
    """Netfilter verdicts (NF_DROP=0, NF_ACCEPT=1, NF_STOLEN=2, NF_QUEUE=3, NF_REPEAT=4, NF_STOP=5)
    plus the chain-walk pseudo verdicts of xtables/nft (negative)."""

    DROP = 0
    ACCEPT = 1
    STOLEN = 2
    QUEUE = 3
    REPEAT = 4
    STOP = 5
    CONTINUE = -1  # NFT_CONTINUE / XT_CONTINUE: go on with the next rule
    RETURN = -5  # NFT_RETURN / XT_RETURN
    JUMP = -3
    GOTO = -4


class Outcome(IntEnum):
    """What finally happened to a packet (contracts §3 `outcome`)."""

    NONE = 0
    FORWARDED = 1
    EMITTED = 2
    DELIVERED_LOCAL = 3
    DROPPED = 4
    REJECTED = 5
    QUEUED = 6
    STOLEN = 7
    NOT_REPLAYED = 8


OUTCOME_NAMES = ("", "forwarded", "emitted", "delivered_local", "dropped", "rejected", "queued", "stolen",
                 "not_replayed")


class CtInfo(IntEnum):
    """enum ip_conntrack_info (uapi nf_conntrack_common.h)."""

    ESTABLISHED = 0
    RELATED = 1
    NEW = 2
    ESTABLISHED_REPLY = 3
    RELATED_REPLY = 4
    UNTRACKED = 7


class CtState(IntEnum):
    """The state the rules see (contracts §3 `ct_state`). Not the xt_state bit values: see CT_STATE_BIT."""

    NONE = 0  # packet never reached conntrack (not replayed)
    INVALID = 1
    ESTABLISHED = 2
    RELATED = 3
    NEW = 4
    UNTRACKED = 5


CT_STATE_NAMES = ("", "INVALID", "ESTABLISHED", "RELATED", "NEW", "UNTRACKED")

# xt_state / nft ct state bits: INVALID=1, ESTABLISHED=2, RELATED=4, NEW=8, UNTRACKED=64.
# xt_conntrack --ctstate additionally: SNAT=128 (1<<7... see spec §2.4), DNAT, UNTRACKED=1<<8.
CTS_INVALID = 1
CTS_ESTABLISHED = 2
CTS_RELATED = 4
CTS_NEW = 8
CTS_UNTRACKED = 64
CTS_SNAT = 128
CTS_DNAT = 256


class CtDir(IntEnum):
    ORIGINAL = 0
    REPLY = 1
    NONE = 2


CT_DIR_NAMES = ("ORIGINAL", "REPLY", "")


class CtStatus(IntEnum):
    """enum ip_conntrack_status bit numbers."""

    EXPECTED = 0
    SEEN_REPLY = 1
    ASSURED = 2
    CONFIRMED = 3
    SRC_NAT = 4
    DST_NAT = 5
    SEQ_ADJUST = 6
    SRC_NAT_DONE = 7
    DST_NAT_DONE = 8
    DYING = 9
    FIXED_TIMEOUT = 10
    TEMPLATE = 11
    NAT_CLASH = 12
    HELPER = 13
    OFFLOAD = 14
    HW_OFFLOAD = 15


class TcpState(IntEnum):
    """enum tcp_conntrack (uapi nf_conntrack_tcp.h). LISTEN=9 is TCP_CONNTRACK_SYN_SENT2 in the kernel."""

    NONE = 0
    SYN_SENT = 1
    SYN_RECV = 2
    ESTABLISHED = 3
    FIN_WAIT = 4
    CLOSE_WAIT = 5
    LAST_ACK = 6
    TIME_WAIT = 7
    CLOSE = 8
    SYN_SENT2 = 9
    MAX = 10
    IGNORE = 11
    RETRANS = 12
    UNACK = 13


TCP_STATE_NAMES = ("NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK",
                   "TIME_WAIT", "CLOSE", "SYN_SENT2")


class CtEvent(IntEnum):
    NEW = 1
    UPDATE = 2
    DESTROY = 3


CT_EVENT_NAMES = ("", "NEW", "UPDATE", "DESTROY")


class PktStatus(IntEnum):
    """Decode status of a captured packet. OK and the *_TRUNC_PAYLOAD kinds are replayable."""

    OK = 0
    NOT_IP = 1  # ARP, LLDP, ...: not seen by the IP hooks
    UNSUPPORTED_LINKTYPE = 2
    TRUNCATED_L2 = 3
    TRUNCATED_L3 = 4  # IP header incomplete in the capture
    BAD_IP_VERSION = 5
    BAD_IHL = 6
    BAD_IP_LEN = 7  # total length < header length, or > wire length
    TRUNCATED_L4 = 8  # L4 header incomplete (kernel: the packet is on the wire whole; we cannot see it)
    BAD_L4 = 9  # e.g. TCP data offset < 5
    FRAGMENT = 10  # non-first fragment: L4 not available in this packet
    BAD_IPV6_EXT = 11
    CAPTURE_DAMAGED = 12  # record cut by file damage


PKT_STATUS_NAMES = ("ok", "not_ip", "unsupported_linktype", "truncated_l2", "truncated_l3", "bad_ip_version",
                    "bad_ihl", "bad_ip_len", "truncated_l4", "bad_l4", "fragment", "bad_ipv6_ext",
                    "capture_damaged")


class PktDir(IntEnum):
    """Direction as the capture recorded it (SLL packet type, pcapng epb_flags)."""

    UNKNOWN = 0
    INCOMING = 1  # to us / broadcast / multicast / other host as seen arriving
    OUTGOING = 2


class CsumStatus(IntEnum):
    UNKNOWN = 0  # not verifiable (truncated, fragment)
    GOOD = 1
    BAD = 2


# TCP flag bits as in the TCP header byte 13 (plus NS/AE as bit 8).
TCP_FIN = 0x01
TCP_SYN = 0x02
TCP_RST = 0x04
TCP_PSH = 0x08
TCP_ACK = 0x10
TCP_URG = 0x20
TCP_ECE = 0x40
TCP_CWR = 0x80

IPPROTO_ICMP = 1
IPPROTO_IGMP = 2
IPPROTO_TCP = 6
IPPROTO_UDP = 17
IPPROTO_GRE = 47
IPPROTO_ESP = 50
IPPROTO_AH = 51
IPPROTO_ICMPV6 = 58
IPPROTO_SCTP = 132
IPPROTO_UDPLITE = 136


class Field(IntEnum):
    """Slots of the per-packet match context `ctx` (an int64 array the pipeline fills at each hook and
    the rule evaluator reads). 128-bit addresses take two slots: the named slot holds the high 64 bits
    and the next slot the low 64 bits (stored as int64 bit patterns of the uint64 values).

    Presence: a field whose header is absent (ports on a fragment or a portless protocol, ICMP fields
    on non-ICMP, ct fields with no conntrack entry) makes any match on it false, negated or not
    (xt_tcpudp on fragments; nft "absent header never matches"). FIELD_GROUP gives each field's
    presence bit in ctx[Field.PRESENT].
    """

    SRC = 0  # + 1 (lo)
    DST = 2  # + 3
    PROTO = 4  # L4 protocol (nft meta l4proto; iptables -p)
    SPORT = 5
    DPORT = 6
    IIF = 7  # host interface index, -1 none
    OIF = 8
    MARK = 9
    CT_STATE = 10  # xt_conntrack state bits incl. virtual SNAT/DNAT/UNTRACKED (codes.CTS_*)
    CT_DIR = 11  # CtDir
    CT_STATUS = 12  # status bitmask (1 << CtStatus.*)
    CT_MARK = 13
    LEN = 14  # IP length (meta length, -m length)
    TTL = 15
    TOS = 16  # whole TOS / traffic-class byte
    PKTTYPE = 17  # 0 unicast(host), 1 broadcast, 2 multicast, 3 otherhost
    ICMP_TYPE = 18
    ICMP_CODE = 19
    TCP_FLAGS = 20
    FRAG = 21  # fragment offset (8-byte units) of this packet; iptables -f: FRAG != 0
    NFPROTO = 22  # 2 (NFPROTO_IPV4) or 10 (NFPROTO_IPV6)
    ICMP_ID = 23
    CT_ORIG_SRC = 24  # + 25
    CT_ORIG_DST = 26  # + 27
    CT_REPLY_SRC = 28  # + 29
    CT_REPLY_DST = 30  # + 31
    CT_ORIG_SPORT = 32
    CT_ORIG_DPORT = 33
    CT_REPLY_SPORT = 34
    CT_REPLY_DPORT = 35
    CT_ZONE = 36
    CT_EXPIRE = 37  # remaining seconds
    CT_HELPER = 38  # helper id (0 none, 1 ftp)
    VLAN_ID = 39
    ETH_SRC = 40
    ETH_DST = 41
    IP_ID = 42
    TCP_WIN = 43
    PRESENT = 44  # presence bitmask, see PRESENT_*
    IP_FLAGS = 45  # schema ip_flags bits
    TCP_OPT_MSS = 46
    IIFTYPE = 47
    HOOK = 48  # the hook being evaluated
    CT_PROTO = 49  # ct original protocol
    CT_L3PROTO = 50
    DSCP = 51  # TOS >> 2
    NUMGEN = 52  # scratch
    CT_SLOT = 53  # conntrack slot of the packet's entry, -1 none (pipeline; connlimit)
    CT_ID = 54  # generation of that slot's entry, valid before confirmation (pipeline; connlimit)
    N_FIELDS = 56


PRESENT_PORTS = 1  # TCP/UDP/UDP-Lite/SCTP header with ports, first fragment or unfragmented
PRESENT_ICMP = 2  # ICMP/ICMPv6 header (type/code) present
PRESENT_TCP = 4  # TCP header present (flags, window)
PRESENT_CT = 8  # a conntrack entry is attached (not INVALID/UNTRACKED)
PRESENT_ETH = 16  # Ethernet header
PRESENT_VLAN = 32
PRESENT_IIF = 64
PRESENT_OIF = 128
PRESENT_ICMP_ID = 256  # ICMP query with an identifier (echo, timestamp, info, address mask)
PRESENT_ALWAYS = 0

# presence bit needed by each field (0 = always present)
FIELD_GROUP = {
    Field.SPORT: PRESENT_PORTS, Field.DPORT: PRESENT_PORTS,
    Field.ICMP_TYPE: PRESENT_ICMP, Field.ICMP_CODE: PRESENT_ICMP, Field.ICMP_ID: PRESENT_ICMP_ID,
    Field.TCP_FLAGS: PRESENT_TCP, Field.TCP_WIN: PRESENT_TCP, Field.TCP_OPT_MSS: PRESENT_TCP,
    Field.CT_DIR: PRESENT_CT, Field.CT_STATUS: PRESENT_CT, Field.CT_MARK: PRESENT_CT,
    Field.CT_ORIG_SRC: PRESENT_CT, Field.CT_ORIG_DST: PRESENT_CT, Field.CT_REPLY_SRC: PRESENT_CT,
    Field.CT_REPLY_DST: PRESENT_CT, Field.CT_ORIG_SPORT: PRESENT_CT, Field.CT_ORIG_DPORT: PRESENT_CT,
    Field.CT_REPLY_SPORT: PRESENT_CT, Field.CT_REPLY_DPORT: PRESENT_CT, Field.CT_ZONE: PRESENT_CT,
    Field.CT_EXPIRE: PRESENT_CT, Field.CT_HELPER: PRESENT_CT, Field.CT_PROTO: PRESENT_CT,
    Field.CT_L3PROTO: PRESENT_CT,
    Field.ETH_SRC: PRESENT_ETH, Field.ETH_DST: PRESENT_ETH, Field.VLAN_ID: PRESENT_VLAN,
    Field.IIF: PRESENT_IIF, Field.OIF: PRESENT_OIF,
}

ADDRESS_FIELDS = (Field.SRC, Field.DST, Field.CT_ORIG_SRC, Field.CT_ORIG_DST, Field.CT_REPLY_SRC,
                  Field.CT_REPLY_DST)

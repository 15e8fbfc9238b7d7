"""Conntrack tunables (sysctls with the kernel's names and defaults) and the INVALID reason texts."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from nfreplay.errors import HostModelError

_P = "net.netfilter."

# Kernel names and 6.x defaults (Documentation/networking/nf_conntrack-sysctl.rst; spec §3, §6-§9).
SYSCTL_DEFAULTS: dict[str, int] = {
    _P + "nf_conntrack_tcp_loose": 1,
    _P + "nf_conntrack_tcp_be_liberal": 0,
    _P + "nf_conntrack_tcp_max_retrans": 3,
    _P + "nf_conntrack_tcp_ignore_invalid_rst": 0,
    _P + "nf_conntrack_checksum": 1,
    _P + "nf_conntrack_max": 262144,
    _P + "nf_conntrack_buckets": 262144,
    _P + "nf_conntrack_expect_max": 4096,
    _P + "nf_conntrack_acct": 0,
    _P + "nf_conntrack_events": 1,
    _P + "nf_conntrack_log_invalid": 0,
    _P + "nf_conntrack_tcp_timeout_syn_sent": 120,
    _P + "nf_conntrack_tcp_timeout_syn_recv": 60,
    _P + "nf_conntrack_tcp_timeout_established": 432000,
    _P + "nf_conntrack_tcp_timeout_fin_wait": 120,
    _P + "nf_conntrack_tcp_timeout_close_wait": 60,
    _P + "nf_conntrack_tcp_timeout_last_ack": 30,
    _P + "nf_conntrack_tcp_timeout_time_wait": 120,
    _P + "nf_conntrack_tcp_timeout_close": 10,
    _P + "nf_conntrack_tcp_timeout_max_retrans": 300,
    _P + "nf_conntrack_tcp_timeout_unacknowledged": 300,
    _P + "nf_conntrack_udp_timeout": 30,
    _P + "nf_conntrack_udp_timeout_stream": 120,
    _P + "nf_conntrack_icmp_timeout": 30,
    _P + "nf_conntrack_icmpv6_timeout": 30,
    _P + "nf_conntrack_generic_timeout": 600,
    _P + "nf_conntrack_gre_timeout": 30,
    _P + "nf_conntrack_gre_timeout_stream": 180,
    _P + "nf_conntrack_sctp_timeout_established": 210,
}

# INVALID reasons: index 0 = none. Texts are the kernel's nf_conntrack_log_invalid messages (6.x,
# the "%u" numbers removed); entries marked (nfreplay) have no kernel log line.
INVALID_REASONS: tuple[str, ...] = (
    "",
    "short packet",  # 1 tcp/udp/icmp header shorter than its minimum
    "truncated packet",  # 2 tcp doff
    "bad checksum",  # 3
    "invalid tcp flag combination",  # 4
    "invalid new",  # 5 tcp_new: first packet cannot create an entry
    "invalid new: no pickup with nf_conntrack_tcp_loose=0",  # 6 (kernel: silent)
    "invalid state",  # 7 tcp_conntracks says sIV ("packet (index) in dir invalid, state ...")
    "invalid rst",  # 8
    "SEQ is over upper bound (over the window of the receiver)",  # 9
    "ACK is over upper bound (ACKed data not seen yet)",  # 10
    "truncated/malformed packet",  # 11 udp length field
    "invalid icmp type",  # 12
    "can't invert tuple (untrackable ICMP type)",  # 13 (kernel: silent)
    "invalid new icmp type (reply without request)",  # 14
    "ICMP error: inner packet not parseable",  # 15
    "ICMP error: no matching connection",  # 16
    "ICMP error: outer daddr != inner",  # 17
    "non-first fragment",  # 18 (nf_conntrack_in get_l4proto)
    "bad L3/L4 header",  # 19 (nfreplay: packet not decodable)
    "ICMP protocol in wrong address family",  # 20
    "table full, dropping packet",  # 21: the packet is DROPPED by conntrack (not INVALID)
    "L4 header not in capture (snaplen)",  # 22 (nfreplay)
)

R_SHORT = 1
R_TRUNC = 2
R_CSUM = 3
R_FLAGS = 4
R_INVALID_NEW = 5
R_NO_PICKUP = 6
R_STATE = 7
R_RST = 8
R_SEQ_OVER = 9
R_ACK_OVER = 10
R_UDP_LEN = 11
R_ICMP_TYPE = 12
R_NO_INVERT = 13
R_ICMP_NEW = 14
R_ICMP_INNER = 15
R_ICMP_NOMATCH = 16
R_ICMP_DADDR = 17
R_FRAGMENT = 18
R_BAD_HDR = 19
R_ICMP_FAMILY = 20
R_TABLE_FULL = 21
R_CAPTURE_TRUNC = 22

# The kernel's log line for each reason (nf_l4proto_log_invalid: "nf_ct_proto_<l4proto>: " + text),
# "%u" = the packet's invalid_arg (PacketResults.invalid_arg). None: the kernel logs nothing for that
# cause (nfreplay shows INVALID_REASONS' text). R_STATE's number packs index | dir << 4 | state << 8
# ("packet (index %d) in dir %d invalid, state %s"). See invalid_log_text().
INVALID_LOG: tuple = (
    None,
    None,  # 1 short: TCP silent; UDP/ICMP log "short packet" (invalid_log_text)
    "truncated packet",  # 2
    "bad checksum",  # 3 (ICMP: "bad hw icmp checksum")
    "invalid tcp flag combination",  # 4
    "invalid new",  # 5
    None,  # 6 loose=0: silent
    "packet (index %d) in dir %d invalid, state %s",  # 7
    "invalid rst",  # 8
    "SEQ is over upper bound %u (over the window of the receiver)",  # 9
    "ACK is over upper bound %u (ACKed data not seen yet)",  # 10
    "truncated/malformed packet",  # 11
    "invalid icmp type",  # 12
    None, None, None, None, None, None, None, None, None, None,  # 13-22: silent / nfreplay's own
)
TCP_STATE_LOG_NAMES = ("NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT", "LAST_ACK",
                       "TIME_WAIT", "CLOSE", "SYN_SENT2")


def invalid_log_text(reason: int, proto: int, arg: int) -> str:
    """The kernel's nf_conntrack_log_invalid line for an INVALID packet (reason code, L4 protocol, the
    packet's invalid_arg), or nfreplay's own reason text where the kernel logs nothing."""
    reason = int(reason)
    if reason <= 0 or reason >= len(INVALID_REASONS):
        return ""
    fmt = INVALID_LOG[reason] if reason < len(INVALID_LOG) else None
    if reason == R_SHORT and proto != 6:
        fmt = "short packet"
    if reason == R_CSUM and proto in (1, 58):
        fmt = "bad hw icmp checksum" if proto == 1 else "ICMPv6 checksum failed"
    if fmt is None:
        return INVALID_REASONS[reason]
    arg = int(arg) & 0xFFFFFFFF
    if reason == R_STATE:
        st = (arg >> 8) & 0xFF
        text = fmt % (arg & 0xF, (arg >> 4) & 0xF,
                      TCP_STATE_LOG_NAMES[st] if st < len(TCP_STATE_LOG_NAMES) else "?")
    elif "%u" in fmt:
        text = fmt.replace("%u", str(arg))
    else:
        text = fmt
    return f"nf_ct_proto_{int(proto)}: {text}"


CTINFO_INVALID = -1
CTINFO_UNTRACKED = 7


class CtParams(NamedTuple):
    """Scalars for the kernels; timeouts in ns. tcp_timeouts is indexed by codes.TcpState (0..13)."""

    loose: int
    be_liberal: int
    max_retrans: int
    ignore_invalid_rst: int
    checksum: int
    assume_good_checksums: int
    ct_max: int
    expect_max: int
    tcp_timeouts: np.ndarray
    udp_timeout: int
    udp_timeout_stream: int
    icmp_timeout: int
    icmpv6_timeout: int
    generic_timeout: int
    gre_timeout: int
    gre_timeout_stream: int
    sctp_timeout: int
    ftp_expect_timeout: int
    vec: np.ndarray  # the same values as one int64 vector for the kernels (P_* slots)


# slots of CtParams.vec (kernels take this vector, not the NamedTuple)
P_LOOSE = 0
P_BE_LIBERAL = 1
P_MAX_RETRANS = 2
P_IGNORE_INVALID_RST = 3
P_CHECKSUM = 4
P_ASSUME_GOOD = 5
P_CT_MAX = 6
P_EXPECT_MAX = 7
P_UDP = 8
P_UDP_STREAM = 9
P_ICMP = 10
P_ICMPV6 = 11
P_GENERIC = 12
P_GRE = 13
P_GRE_STREAM = 14
P_SCTP = 15
P_FTP_EXPECT = 16
P_TCP = 24  # + codes.TcpState (0..13): TCP timeouts in ns
N_P = 40


_NS = 1_000_000_000


def make_params(sysctls: dict | None = None, assume_good_checksums: bool = False) -> CtParams:
    """CtParams from sysctl overrides (full names, or without the 'net.netfilter.' prefix)."""
    v = dict(SYSCTL_DEFAULTS)
    for k, val in (sysctls or {}).items():
        name = k if k.startswith(_P) else _P + k
        if name not in v:
            raise HostModelError(f"unknown conntrack sysctl {k!r}")
        try:
            iv = int(val)
        except (TypeError, ValueError):
            raise HostModelError(f"sysctl {k}: expected an integer, got {val!r}") from None
        if iv < 0:
            raise HostModelError(f"sysctl {k}: negative value {iv}")
        v[name] = iv

    def g(n):
        return v[_P + n]

    tt = np.zeros(14, dtype=np.int64)
    tt[0] = g("nf_conntrack_tcp_timeout_syn_sent")
    tt[1] = g("nf_conntrack_tcp_timeout_syn_sent")
    tt[2] = g("nf_conntrack_tcp_timeout_syn_recv")
    tt[3] = g("nf_conntrack_tcp_timeout_established")
    tt[4] = g("nf_conntrack_tcp_timeout_fin_wait")
    tt[5] = g("nf_conntrack_tcp_timeout_close_wait")
    tt[6] = g("nf_conntrack_tcp_timeout_last_ack")
    tt[7] = g("nf_conntrack_tcp_timeout_time_wait")
    tt[8] = g("nf_conntrack_tcp_timeout_close")
    tt[9] = g("nf_conntrack_tcp_timeout_syn_sent")  # SYN_SENT2: 120 s, no own sysctl
    tt[12] = g("nf_conntrack_tcp_timeout_max_retrans")
    tt[13] = g("nf_conntrack_tcp_timeout_unacknowledged")
    tt *= _NS
    vals = dict(
        loose=g("nf_conntrack_tcp_loose"), be_liberal=g("nf_conntrack_tcp_be_liberal"),
        max_retrans=g("nf_conntrack_tcp_max_retrans"),
        ignore_invalid_rst=g("nf_conntrack_tcp_ignore_invalid_rst"),
        checksum=g("nf_conntrack_checksum"), assume_good_checksums=int(bool(assume_good_checksums)),
        ct_max=g("nf_conntrack_max"), expect_max=g("nf_conntrack_expect_max"),
        tcp_timeouts=tt,
        udp_timeout=g("nf_conntrack_udp_timeout") * _NS,
        udp_timeout_stream=g("nf_conntrack_udp_timeout_stream") * _NS,
        icmp_timeout=g("nf_conntrack_icmp_timeout") * _NS,
        icmpv6_timeout=g("nf_conntrack_icmpv6_timeout") * _NS,
        generic_timeout=g("nf_conntrack_generic_timeout") * _NS,
        gre_timeout=g("nf_conntrack_gre_timeout") * _NS,
        gre_timeout_stream=g("nf_conntrack_gre_timeout_stream") * _NS,
        sctp_timeout=g("nf_conntrack_sctp_timeout_established") * _NS,
        ftp_expect_timeout=300 * _NS,
    )
    vec = np.zeros(N_P, dtype=np.int64)
    for slot, name in ((P_LOOSE, "loose"), (P_BE_LIBERAL, "be_liberal"), (P_MAX_RETRANS, "max_retrans"),
                       (P_IGNORE_INVALID_RST, "ignore_invalid_rst"), (P_CHECKSUM, "checksum"),
                       (P_ASSUME_GOOD, "assume_good_checksums"), (P_CT_MAX, "ct_max"),
                       (P_EXPECT_MAX, "expect_max"), (P_UDP, "udp_timeout"), (P_UDP_STREAM, "udp_timeout_stream"),
                       (P_ICMP, "icmp_timeout"), (P_ICMPV6, "icmpv6_timeout"), (P_GENERIC, "generic_timeout"),
                       (P_GRE, "gre_timeout"), (P_GRE_STREAM, "gre_timeout_stream"), (P_SCTP, "sctp_timeout"),
                       (P_FTP_EXPECT, "ftp_expect_timeout")):
        vec[slot] = vals[name]
    vec[P_TCP:P_TCP + 14] = tt
    return CtParams(**vals, vec=vec)

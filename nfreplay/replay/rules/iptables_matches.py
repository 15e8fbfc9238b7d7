"""The iptables extension registry: one small spec per match / target module.

Each `Module` lists its options (what `-m NAME` / `-j NAME` accepts), and a `build` function that
validates the parsed option values like the kernel's checkentry and the iptables extension's final
check do, and lowers them to model objects plus the canonical text iptables-save prints for them.
`help_text()` and `UNSUPPORTED` (the modules recognised but not modelled) are generated from here.

Values arrive as `Given` records (arguments, `!` flag, source column); build functions raise through
`ctx.error(...)`, which produces a RulesetSyntaxError naming file, line, column and token.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field
from typing import Callable

from .. import addr
from ..codes import (
    CTS_DNAT,
    CTS_ESTABLISHED,
    CTS_INVALID,
    CTS_NEW,
    CTS_RELATED,
    CTS_SNAT,
    CTS_UNTRACKED,
    IPPROTO_ICMP,
    IPPROTO_ICMPV6,
    IPPROTO_SCTP,
    IPPROTO_TCP,
    IPPROTO_UDP,
    IPPROTO_UDPLITE,
    CtDir,
    CtStatus,
    Field,
)
from . import model as m

IPPROTO_DCCP = 33
IPPROTO_ESP = 50
IPPROTO_AH = 51
IPPROTO_MH = 135
IPPROTO_IPCOMP = 108

U32 = 0xFFFFFFFF


# ---------------------------------------------------------------- spec records
@dataclass(frozen=True)
class Opt:
    """One option of a module. name without the leading dashes; nargs 0, 1 or 2."""

    name: str
    nargs: int = 1
    invert: bool = False
    aliases: tuple[str, ...] = ()
    multi: bool = False
    help: str = ""


@dataclass(frozen=True)
class Module:
    name: str
    kind: str  # "match" | "target"
    options: tuple[Opt, ...] = ()
    build: Callable | None = None
    help: str = ""
    families: frozenset = frozenset({"ip", "ip6"})
    tables: frozenset | None = None  # kernel .table restriction
    hooks: frozenset | None = None  # kernel .hooks restriction (built-in hook names)
    protos: tuple[int, ...] | None = None  # kernel .proto: rule must say `-p` one of these, not inverted
    unsupported: str | None = None  # recognised, not modelled: the feature text (options parsed permissively)
    aliases: tuple[str, ...] = ()

    def option(self, name: str) -> Opt | None:
        for o in self.options:
            if o.name == name or name in o.aliases:
                return o
        return None


@dataclass
class Given:
    """An option as written: its arguments, whether `!` preceded it, and where it was."""

    opt: Opt
    args: tuple[str, ...]
    invert: bool
    col: int
    token: str
    arg_col: int = 0  # column of the first argument (errors about the value point there)


@dataclass
class Built:
    """What a module lowers to: model expressions and the canonical option text."""

    exprs: list = field(default_factory=list)
    canon: str = ""
    comment: str | None = None
    unsupported: str | None = None
    hooks: frozenset | None = None  # extra hook restriction found while validating (e.g. addrtype)
    hooks_why: str = ""


class Ctx:
    """What a build function may know about the rule, and its error reporter."""

    def __init__(self, family: str, proto: int, proto_inv: bool, table: str, error, module_col: int,
                 module_token: str, has_tcp_syn: bool = False):
        self.family, self.proto, self.proto_inv, self.table = family, proto, proto_inv, table
        self._error, self.col, self.token = error, module_col, module_token
        self.has_tcp_syn = has_tcp_syn

    def error(self, given: Given | None, reason: str):
        if given is None:
            self._error(self.col, self.token, reason)
        elif given.args and given.arg_col:
            self._error(given.arg_col, given.args[0], reason)
        else:
            self._error(given.col, given.token, reason)


# ---------------------------------------------------------------- value helpers
def _uint(ctx: Ctx, g: Given | None, text: str, lo: int = 0, hi: int = U32, what: str = "value") -> int:
    """xtables_strtoui: base 0 (0x hex, leading 0 octal), no sign."""
    t = text.strip()
    try:
        if t.lower().startswith("0x"):
            v = int(t[2:], 16)
        elif len(t) > 1 and t.startswith("0"):
            v = int(t[1:], 8)
        elif t.isdigit():
            v = int(t)
        else:
            raise ValueError
    except ValueError:
        ctx.error(g, f"invalid {what} {text!r}")
    if not lo <= v <= hi:
        ctx.error(g, f"{what} {text!r} out of range {lo}..{hi}")
    return v


SERVICES = {
    "tcpmux": 1, "echo": 7, "discard": 9, "daytime": 13, "ftp-data": 20, "ftp": 21, "ssh": 22, "telnet": 23,
    "smtp": 25, "time": 37, "whois": 43, "tacacs": 49, "domain": 53, "bootps": 67, "bootpc": 68, "tftp": 69,
    "gopher": 70, "finger": 79, "http": 80, "www": 80, "kerberos": 88, "pop3": 110, "sunrpc": 111,
    "auth": 113, "ident": 113, "nntp": 119, "ntp": 123, "epmap": 135, "netbios-ns": 137, "netbios-dgm": 138,
    "netbios-ssn": 139, "imap": 143, "imap2": 143, "snmp": 161, "snmp-trap": 162, "bgp": 179, "irc": 194,
    "ldap": 389, "https": 443, "microsoft-ds": 445, "isakmp": 500, "syslog": 514, "printer": 515,
    "talk": 517, "ntalk": 518, "route": 520, "submission": 587, "ipp": 631, "ldaps": 636, "rsync": 873,
    "ftps-data": 989, "ftps": 990, "telnets": 992, "imaps": 993, "pop3s": 995, "socks": 1080,
    "openvpn": 1194, "ms-sql-s": 1433, "l2tp": 1701, "pptp": 1723, "radius": 1812, "radius-acct": 1813,
    "nfs": 2049, "mysql": 3306, "svn": 3690, "sip": 5060, "sip-tls": 5061, "xmpp-client": 5222,
    "postgresql": 5432, "mdns": 5353, "x11": 6000, "http-alt": 8080, "webcache": 8080, "ipp-tls": 631,
    "domain-s": 853, "dhcpv6-client": 546, "dhcpv6-server": 547, "ipsec-nat-t": 4500, "rtsp": 554,
}


def _port(ctx: Ctx, g: Given | None, text: str) -> int:
    if text in SERVICES:
        return SERVICES[text]
    return _uint(ctx, g, text, 0, 65535, "port")


def _port_dash_range(ctx: Ctx, g: Given, text: str) -> tuple[int, int]:
    """NAT port 'p' or 'p-q': a whole service name ('ftp-data') is one port; range ends are numeric."""
    if text in SERVICES:
        return SERVICES[text], SERVICES[text]
    a, sep, b = text.partition("-")
    if not sep:
        p = _port(ctx, g, a)
        return p, p
    p0 = _uint(ctx, g, a, 0, 65535, "port")
    p1 = _uint(ctx, g, b, 0, 65535, "port")
    if p0 > p1:
        ctx.error(g, "port range start after end")
    return p0, p1


def _range(ctx: Ctx, g: Given | None, text: str, conv, lo: int, hi: int, sep: str = ":") -> tuple[int, int]:
    """'a', 'a:b', ':b', 'a:', ':' -> (a, b) with defaults lo/hi; a > b is an error."""
    if sep in text:
        a, b = text.split(sep, 1)
        x = conv(ctx, g, a) if a else lo
        y = conv(ctx, g, b) if b else hi
    else:
        x = y = conv(ctx, g, text)
    if x > y:
        ctx.error(g, f"invalid range {text!r}: start > end")
    return x, y


def _u(lo: int, hi: int, what: str):
    return lambda ctx, g, t: _uint(ctx, g, t, lo, hi, what)


def _fmt_range(a: int, b: int) -> str:
    return str(a) if a == b else f"{a}:{b}"


def _neg(g: Given) -> str:
    return "! " if g.invert else ""


def _hex(v: int) -> str:
    return f"0x{v:x}"


def _value_mask(ctx: Ctx, g: Given, text: str, bits: int = 32) -> tuple[int, int]:
    full = (1 << bits) - 1
    if "/" in text:
        v, mk = text.split("/", 1)
        return _uint(ctx, g, v, 0, full), _uint(ctx, g, mk, 0, full, "mask")
    return _uint(ctx, g, text, 0, full), full


def parse_addr(ctx: Ctx, g: Given | None, text: str, family: str) -> tuple[int, int, int, bool]:
    """'a[/len|/mask]' -> (value, mask, prefixlen or -1, was_prefix) as 128-bit ints (v4-mapped).

    The stored value is pre-masked, as iptables stores it."""
    a, _, msk = text.partition("/")
    try:
        ip = ipaddress.ip_address(a)
    except ValueError:
        ctx.error(g, f"invalid address {a!r}" + (" (hostnames are not resolved)" if a and a[0].isalpha() else ""))
    want = 4 if family == "ip" else 6
    if ip.version != want:
        ctx.error(g, f"{'IPv6' if ip.version == 6 else 'IPv4'} address {a!r} in an "
                     f"{'ip6tables' if want == 6 else 'iptables'} rule")
    bits = 32 if want == 4 else 128
    full = (1 << bits) - 1
    if not msk:
        plen = bits
        mask = full
    elif msk.isdigit():
        plen = int(msk)
        if plen > bits:
            ctx.error(g, f"invalid prefix length /{msk}")
        mask = (full << (bits - plen)) & full
    else:
        try:
            mip = ipaddress.ip_address(msk)
        except ValueError:
            ctx.error(g, f"invalid mask {msk!r}")
        if mip.version != want:
            ctx.error(g, f"invalid mask {msk!r}")
        mask = int(mip)
        inv = (~mask) & full
        plen = bits - inv.bit_length() if (inv & (inv + 1)) == 0 else -1
    val = int(ip) & mask
    if want == 4:
        return addr.V4_MAPPED | val, mask, plen, True
    return val, mask, plen, True


def addr_text(value: int, mask: int, plen: int, family: str) -> str:
    if family == "ip":
        a = str(ipaddress.IPv4Address(value & U32))
        return f"{a}/{plen}" if plen >= 0 else f"{a}/{ipaddress.IPv4Address(mask)}"
    a = str(ipaddress.IPv6Address(value))
    return f"{a}/{plen}" if plen >= 0 else f"{a}/{ipaddress.IPv6Address(mask)}"


def addr_expr(fld: Field, value: int, mask: int, plen: int, family: str, negate: bool):
    """The model match for `(addr & mask) == value` on a 128-bit address field."""
    bits = 32 if family == "ip" else 128
    if plen >= 0:
        host = (1 << (bits - plen)) - 1
        return m.FieldIn(fld, ((value, value | host),), negate)
    if family == "ip":
        full_mask = ((1 << 128) - 1) ^ U32 | mask
        return m.AddrMasked(fld, full_mask, value, negate)
    return m.AddrMasked(fld, mask, value, negate)


def quote(s: str) -> str:
    """xtables_save_string: bare if only [A-Za-z0-9_-] (and non-empty), else double-quoted with escapes."""
    ok = "_-0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
    if s and all(c in ok for c in s):
        return s
    return '"' + "".join("\\" + c if c in "\"\\'" else c for c in s) + '"'


# ---------------------------------------------------------------- protocol tables
PROTOCOLS = {
    "ip": 0, "hopopt": 0, "icmp": 1, "igmp": 2, "ggp": 3, "ipencap": 4, "st": 5, "tcp": 6, "egp": 8,
    "igp": 9, "pup": 12, "udp": 17, "hmp": 20, "xns-idp": 22, "rdp": 27, "iso-tp4": 29, "dccp": 33,
    "xtp": 36, "ddp": 37, "idpr-cmtp": 38, "ipv6": 41, "ipv6-route": 43, "ipv6-frag": 44, "idrp": 45,
    "rsvp": 46, "gre": 47, "esp": 50, "ah": 51, "skip": 57, "ipv6-icmp": 58, "icmpv6": 58,
    "ipv6-nonxt": 59, "ipv6-opts": 60, "rspf": 73, "vmtp": 81, "eigrp": 88, "ospf": 89, "ax.25": 93,
    "ipip": 94, "etherip": 97, "encap": 98, "pim": 103, "ipcomp": 108, "vrrp": 112, "l2tp": 115,
    "isis": 124, "sctp": 132, "fc": 133, "mobility-header": 135, "mh": 135, "ipv6-mh": 135,
    "udplite": 136, "mpls-in-ip": 137, "manet": 138, "hip": 139, "shim6": 140, "wesp": 141, "rohc": 142,
    "ethernet": 143, "all": 0,
}
# xtables_chain_protos: the names iptables-save prints; everything else is numeric
PROTO_PRINT = {6: "tcp", 132: "sctp", 17: "udp", 136: "udplite", 1: "icmp", 58: "ipv6-icmp", 50: "esp",
               51: "ah", 135: "mh", 33: "dccp", 108: "ipcomp"}
# the match module iptables loads implicitly for `-p NAME` when an option is not claimed
PROTO_MATCH = {6: "tcp", 17: "udp", 136: "udplite", 132: "sctp", 33: "dccp", 1: "icmp", 58: "icmp6",
               50: "esp", 51: "ah", 135: "mh"}


# ---------------------------------------------------------------- matches
def _ports_build(kind: str):
    def build(ctx: Ctx, v: dict[str, Given]) -> Built:
        b = Built()
        parts = []
        for name, fld in (("sport", Field.SPORT), ("dport", Field.DPORT)):
            g = v.get(name)
            if g is None:
                continue
            lo, hi = _range(ctx, g, g.args[0], _port, 0, 65535)
            if (lo, hi) == (0, 65535) and not g.invert and kind != "dccp":
                continue
            b.exprs.append(m.FieldIn(fld, ((lo, hi),), g.invert))
            parts.append(f"{_neg(g)}--{name} {_fmt_range(lo, hi)}")
        if kind == "tcp":
            g = v.get("tcp-option")
            if g is not None:
                n = _uint(ctx, g, g.args[0], 0, 255, "TCP option")
                parts.append(f"{_neg(g)}--tcp-option {n}")
                b.unsupported = "tcp --tcp-option (TCP option presence)"
            g = v.get("syn") or v.get("tcp-flags")
            if v.get("syn") is not None and v.get("tcp-flags") is not None:
                ctx.error(v["syn"], "--syn and --tcp-flags cannot be combined")
            if g is not None:
                if g.opt.name == "syn":
                    mask, comp = 0x17, 0x02
                else:
                    mask, comp = _tcp_flags(ctx, g, g.args[0]), _tcp_flags(ctx, g, g.args[1])
                b.exprs.append(m.Masked(Field.TCP_FLAGS, mask, comp, "eq", g.invert))
                parts.append(f"{_neg(g)}--tcp-flags {_flag_names(mask)} {_flag_names(comp)}")
        if kind == "sctp" and "chunk-types" in v:
            g = v["chunk-types"]
            parts.append(f"{_neg(g)}--chunk-types " + " ".join(g.args))
            b.unsupported = "sctp --chunk-types"
        if kind == "dccp":
            for name in ("dccp-types", "dccp-option"):
                if name in v:
                    g = v[name]
                    parts.append(f"{_neg(g)}--{name} {g.args[0]}")
                    b.unsupported = f"dccp --{name}"
        b.canon = " ".join(parts)
        return b

    return build


TCP_FLAGS = {"FIN": 0x01, "SYN": 0x02, "RST": 0x04, "PSH": 0x08, "ACK": 0x10, "URG": 0x20, "ALL": 0x3F,
             "NONE": 0}


def _tcp_flags(ctx: Ctx, g: Given, text: str) -> int:
    v = 0
    for f in text.split(","):
        if f.upper() not in TCP_FLAGS:
            ctx.error(g, f"unknown TCP flag {f!r}")
        v |= TCP_FLAGS[f.upper()]
    return v


def _flag_names(v: int) -> str:
    if v == 0:
        return "NONE"
    return ",".join(n for n, b in (("FIN", 1), ("SYN", 2), ("RST", 4), ("PSH", 8), ("ACK", 16), ("URG", 32))
                    if v & b)


def _port_opts(extra: tuple[Opt, ...] = ()) -> tuple[Opt, ...]:
    return (Opt("sport", invert=True, aliases=("source-port",)),
            Opt("dport", invert=True, aliases=("destination-port",))) + extra


# ICMP names (extensions/libxt_icmp.h): name -> (type, code_min, code_max)
ICMP_TYPES = {
    "any": (0xFF, 0, 0xFF), "echo-reply": (0, 0, 0xFF), "pong": (0, 0, 0xFF),
    "destination-unreachable": (3, 0, 0xFF), "network-unreachable": (3, 0, 0), "host-unreachable": (3, 1, 1),
    "protocol-unreachable": (3, 2, 2), "port-unreachable": (3, 3, 3), "fragmentation-needed": (3, 4, 4),
    "source-route-failed": (3, 5, 5), "network-unknown": (3, 6, 6), "host-unknown": (3, 7, 7),
    "network-prohibited": (3, 9, 9), "host-prohibited": (3, 10, 10), "TOS-network-unreachable": (3, 11, 11),
    "TOS-host-unreachable": (3, 12, 12), "communication-prohibited": (3, 13, 13),
    "host-precedence-violation": (3, 14, 14), "precedence-cutoff": (3, 15, 15), "source-quench": (4, 0, 0xFF),
    "redirect": (5, 0, 0xFF), "network-redirect": (5, 0, 0), "host-redirect": (5, 1, 1),
    "TOS-network-redirect": (5, 2, 2), "TOS-host-redirect": (5, 3, 3), "echo-request": (8, 0, 0xFF),
    "ping": (8, 0, 0xFF), "router-advertisement": (9, 0, 0xFF), "router-solicitation": (10, 0, 0xFF),
    "time-exceeded": (11, 0, 0xFF), "ttl-exceeded": (11, 0, 0xFF), "ttl-zero-during-transit": (11, 0, 0),
    "ttl-zero-during-reassembly": (11, 1, 1), "parameter-problem": (12, 0, 0xFF), "ip-header-bad": (12, 0, 0),
    "required-option-missing": (12, 1, 1), "timestamp-request": (13, 0, 0xFF), "timestamp-reply": (14, 0, 0xFF),
    "info-request": (15, 0, 0xFF), "info-reply": (16, 0, 0xFF), "address-mask-request": (17, 0, 0xFF),
    "address-mask-reply": (18, 0, 0xFF),
}
ICMP6_TYPES = {
    "destination-unreachable": (1, 0, 0xFF), "no-route": (1, 0, 0), "communication-prohibited": (1, 1, 1),
    "beyond-scope": (1, 2, 2), "address-unreachable": (1, 3, 3), "port-unreachable": (1, 4, 4),
    "failed-policy": (1, 5, 5), "reject-route": (1, 6, 6), "packet-too-big": (2, 0, 0xFF),
    "time-exceeded": (3, 0, 0xFF), "ttl-exceeded": (3, 0, 0xFF), "ttl-zero-during-transit": (3, 0, 0),
    "ttl-zero-during-reassembly": (3, 1, 1), "parameter-problem": (4, 0, 0xFF), "bad-header": (4, 0, 0),
    "unknown-header-type": (4, 1, 1), "unknown-option": (4, 2, 2), "echo-request": (128, 0, 0xFF),
    "ping": (128, 0, 0xFF), "echo-reply": (129, 0, 0xFF), "pong": (129, 0, 0xFF),
    "mld-listener-query": (130, 0, 0xFF), "mld-listener-report": (131, 0, 0xFF),
    "mld-listener-done": (132, 0, 0xFF), "mld-listener-reduction": (132, 0, 0xFF),
    "router-solicitation": (133, 0, 0xFF), "router-advertisement": (134, 0, 0xFF),
    "neighbour-solicitation": (135, 0, 0xFF), "neighbor-solicitation": (135, 0, 0xFF),
    "neighbour-advertisement": (136, 0, 0xFF), "neighbor-advertisement": (136, 0, 0xFF),
    "redirect": (137, 0, 0xFF),
}


def _icmp_build(v6: bool):
    names = ICMP6_TYPES if v6 else ICMP_TYPES
    opt = "icmpv6-type" if v6 else "icmp-type"

    def build(ctx: Ctx, v: dict[str, Given]) -> Built:
        g = v.get(opt)
        if g is None:  # XTOPT_MAND in libxt_icmp / libip6t_icmp6
            ctx.error(None, f"--{opt} is required")
        t = g.args[0]
        if t in names:
            typ, c0, c1 = names[t]
        else:
            typ_s, _, code_s = t.partition("/")
            if not typ_s.isdigit():
                ctx.error(g, f"unknown ICMP{'v6' if v6 else ''} type {t!r}")
            typ = _uint(ctx, g, typ_s, 0, 255, "ICMP type")
            if code_s:
                c0, c1 = _range(ctx, g, code_s, _u(0, 255, "ICMP code"), 0, 255)
            else:
                c0, c1 = 0, 0xFF
        if not v6 and typ == 0xFF and (c0, c1) == (0, 0xFF):
            return Built(exprs=[m.FieldIn(Field.ICMP_TYPE, ((0, 255),), g.invert)], canon=f"{_neg(g)}--{opt} any")
        canon = f"{_neg(g)}--{opt} {typ}" + ("" if (c0, c1) == (0, 0xFF) else f"/{_fmt_range(c0, c1)}")
        if (c0, c1) == (0, 0xFF):
            return Built(exprs=[m.FieldIn(Field.ICMP_TYPE, ((typ, typ),), g.invert)], canon=canon)
        if g.invert:
            return Built(canon=canon, unsupported=f"negated --{opt} with a code (type and code jointly inverted)")
        return Built(exprs=[m.FieldIn(Field.ICMP_TYPE, ((typ, typ),)), m.FieldIn(Field.ICMP_CODE, ((c0, c1),))],
                     canon=canon)

    return build


def _multiport_build(ctx: Ctx, v: dict[str, Given]) -> Built:
    given = [g for k, g in v.items() if k in ("sports", "dports", "ports")]
    if not given:
        ctx.error(None, "multiport needs one of --sports, --dports, --ports")
    if len(given) > 1:
        ctx.error(given[1], "multiport takes only one of --sports, --dports, --ports")
    if ctx.proto not in (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_UDPLITE, IPPROTO_SCTP, IPPROTO_DCCP) or ctx.proto_inv:
        ctx.error(None, "multiport needs `-p tcp`, `-p udp`, `-p udplite`, `-p sctp` or `-p dccp`")
    g = given[0]
    ivals, texts, slots = [], [], 0
    for item in g.args[0].split(","):
        if not item:
            ctx.error(g, "empty port in list")
        lo, hi = _range(ctx, g, item, _port, 0, 65535)
        slots += 2 if ":" in item else 1  # xt_multiport v1: a range takes two slots
        ivals.append((lo, hi))
        texts.append(_fmt_range(lo, hi) if ":" not in item else f"{lo}:{hi}")
    if slots > 15:
        ctx.error(g, "too many ports specified (at most 15 slots, a range takes two)")
    canon = f"{_neg(g)}--{g.opt.name} {','.join(texts)}"
    vals = tuple(ivals)
    if g.opt.name == "sports":
        return Built([m.FieldIn(Field.SPORT, vals, g.invert)], canon)
    if g.opt.name == "dports":
        return Built([m.FieldIn(Field.DPORT, vals, g.invert)], canon)
    if g.invert:  # neither port in the list
        return Built([m.FieldIn(Field.SPORT, vals, True), m.FieldIn(Field.DPORT, vals, True)], canon)
    return Built(canon=canon, unsupported="multiport --ports (source or destination port)")


def _iprange_build(ctx: Ctx, v: dict[str, Given]) -> Built:
    b = Built()
    parts = []
    if not v:
        ctx.error(None, "iprange needs --src-range or --dst-range")
    for name, fld in (("src-range", Field.SRC), ("dst-range", Field.DST)):
        g = v.get(name)
        if g is None:
            continue
        lo_s, sep, hi_s = g.args[0].partition("-")
        lo = parse_addr(ctx, g, lo_s, ctx.family)[0]
        hi = parse_addr(ctx, g, hi_s, ctx.family)[0] if sep else lo
        if lo > hi:
            ctx.error(g, "range start is after its end")
        b.exprs.append(m.FieldIn(fld, ((lo, hi),), g.invert))
        def t(x):
            return (str(ipaddress.ip_address(x & U32 if ctx.family == "ip" else x)))
        parts.append(f"{_neg(g)}--{name} {t(lo)}-{t(hi)}")
    b.canon = " ".join(parts)
    return b


CT_STATES = (("INVALID", CTS_INVALID), ("NEW", CTS_NEW), ("RELATED", CTS_RELATED),
             ("ESTABLISHED", CTS_ESTABLISHED), ("UNTRACKED", CTS_UNTRACKED), ("SNAT", CTS_SNAT),
             ("DNAT", CTS_DNAT))
CT_STATUS = (("EXPECTED", 1 << CtStatus.EXPECTED), ("SEEN_REPLY", 1 << CtStatus.SEEN_REPLY),
             ("ASSURED", 1 << CtStatus.ASSURED), ("CONFIRMED", 1 << CtStatus.CONFIRMED))


def _states(ctx: Ctx, g: Given, text: str, allowed) -> int:
    d = dict(allowed)
    bits = 0
    for s in text.split(","):
        if s.upper() not in d:
            ctx.error(g, f"bad state {s!r}")
        bits |= d[s.upper()]
    return bits


def _state_text(bits: int, table) -> str:
    return ",".join(n for n, b in table if bits & b)


def _state_build(ctx: Ctx, v: dict[str, Given]) -> Built:
    g = v.get("state")
    if g is None:
        ctx.error(None, "state match needs --state")
    bits = _states(ctx, g, g.args[0], CT_STATES[:5])
    return Built([m.Masked(Field.CT_STATE, bits, 0, "any", g.invert)],
                 f"{_neg(g)}--state {_state_text(bits, CT_STATES)}")


def _conntrack_build(ctx: Ctx, v: dict[str, Given]) -> Built:
    if not v:
        ctx.error(None, "conntrack match needs at least one option")
    b = Built()
    parts = []
    g = v.get("ctstate")
    if g:
        bits = _states(ctx, g, g.args[0], CT_STATES)
        b.exprs.append(m.Masked(Field.CT_STATE, bits, 0, "any", g.invert))
        parts.append(f"{_neg(g)}--ctstate {_state_text(bits, CT_STATES)}")
    g = v.get("ctproto")
    if g:
        p = g.args[0]
        n = PROTOCOLS[p.lower()] if p.lower() in PROTOCOLS else _uint(ctx, g, p, 0, 255, "protocol")
        if n == 0:
            ctx.error(g, "conntrack: --ctproto 0 (all) makes no sense")
        b.exprs.append(m.FieldIn(Field.CT_PROTO, ((n, n),), g.invert))
        parts.append(f"{_neg(g)}--ctproto {n}")
    for name, fld in (("ctorigsrc", Field.CT_ORIG_SRC), ("ctorigdst", Field.CT_ORIG_DST),
                      ("ctreplsrc", Field.CT_REPLY_SRC), ("ctrepldst", Field.CT_REPLY_DST)):
        g = v.get(name)
        if g:
            val, mask, plen, _ = parse_addr(ctx, g, g.args[0], ctx.family)
            b.exprs.append(addr_expr(fld, val, mask, plen, ctx.family, g.invert))
            t = addr_text(val, mask, plen, ctx.family)
            if plen == (32 if ctx.family == "ip" else 128):
                t = t.rsplit("/", 1)[0]
            parts.append(f"{_neg(g)}--{name} {t}")
    for name, fld in (("ctorigsrcport", Field.CT_ORIG_SPORT), ("ctorigdstport", Field.CT_ORIG_DPORT),
                      ("ctreplsrcport", Field.CT_REPLY_SPORT), ("ctrepldstport", Field.CT_REPLY_DPORT)):
        g = v.get(name)
        if g:
            lo, hi = _range(ctx, g, g.args[0], _port, 0, 65535)
            b.exprs.append(m.FieldIn(fld, ((lo, hi),), g.invert))
            parts.append(f"{_neg(g)}--{name} {_fmt_range(lo, hi)}")
    g = v.get("ctstatus")
    if g:
        bits = 0
        for s in g.args[0].split(","):
            if s.upper() == "NONE":
                continue
            d = dict(CT_STATUS)
            if s.upper() not in d:
                ctx.error(g, f"bad ctstatus {s!r}")
            bits |= d[s.upper()]
        b.exprs.append(m.Masked(Field.CT_STATUS, bits, 0, "any", g.invert))
        parts.append(f"{_neg(g)}--ctstatus {_state_text(bits, CT_STATUS) or 'NONE'}")
    g = v.get("ctexpire")
    if g:
        lo, hi = _range(ctx, g, g.args[0], _u(0, U32, "expire time"), 0, U32)
        b.exprs.append(m.FieldIn(Field.CT_EXPIRE, ((lo, hi),), g.invert))
        parts.append(f"{_neg(g)}--ctexpire {_fmt_range(lo, hi)}")
    g = v.get("ctdir")
    if g:
        d = g.args[0].upper()
        if d not in ("ORIGINAL", "REPLY"):
            ctx.error(g, f"bad ctdir {g.args[0]!r} (ORIGINAL or REPLY)")
        val = int(CtDir.ORIGINAL if d == "ORIGINAL" else CtDir.REPLY)
        b.exprs.append(m.FieldIn(Field.CT_DIR, ((val, val),), g.invert))
        parts.append(f"{_neg(g)}--ctdir {d}")
    b.canon = " ".join(parts)
    return b


def _mark_build(fld: Field, opt: str = "mark"):
    def build(ctx: Ctx, v: dict[str, Given]) -> Built:
        g = v.get(opt)
        if g is None:
            ctx.error(None, f"--{opt} is required")
        val, mask = _value_mask(ctx, g, g.args[0])
        canon = f"{_neg(g)}--{opt} {_hex(val)}" + ("" if mask == U32 else f"/{_hex(mask)}")
        return Built([m.Masked(fld, mask, val & mask if val & ~mask == 0 else val, "eq", g.invert)], canon)

    return build


RATE_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}


def _rate(ctx: Ctx, g: Given, text: str) -> tuple[int, int]:
    """'N/unit' (unit a prefix of second|minute|hour|day, default second) -> (N, seconds)."""
    n_s, _, unit = text.partition("/")
    n = _uint(ctx, g, n_s, 1, U32, "rate")
    den = 1
    if unit:
        for name, sec in RATE_UNITS.items():
            if name.startswith(unit.lower()):
                den = sec
                break
        else:
            ctx.error(g, f"bad rate unit {unit!r}")
    return n, den


def _rate_text(n: int, den: int, scale: int = 10000) -> str:
    """libxt_limit print_rate: the avg the kernel stores (scale 10000; hashlimit rev >= 2: 1000000),
    printed in the largest unit that divides it."""
    avg = max(scale * den // n, 1)
    units = (("day", scale * 86400), ("hour", scale * 3600), ("min", scale * 60), ("sec", scale))
    for i in range(1, len(units)):
        mult = units[i][1]
        if avg > mult or mult // avg < mult % avg:
            break
    else:
        i = len(units)
    name, mult = units[i - 1]
    return f"{mult // avg}/{name}"


_UNIT_S = {"day": 86400, "hour": 3600, "min": 60, "sec": 1}


def _rate_saved(n: int, den: int, scale: int = 10000) -> tuple[int, int]:
    """The rate as iptables-save prints it back from the kernel's avg: (num, seconds)."""
    num, _, unit = _rate_text(n, den, scale).partition("/")
    return int(num), _UNIT_S[unit]


def _limit_build(ctx: Ctx, v: dict[str, Given]) -> Built:
    g = v.get("limit")
    n, den = _rate(ctx, g, g.args[0]) if g else (3, 3600)
    if g and g.invert:
        ctx.error(g, "limit cannot be inverted")
    if 10000 * den // n == 0:
        ctx.error(g, f"rate too fast {g.args[0]!r}")
    gb = v.get("limit-burst")
    burst = _uint(ctx, gb, gb.args[0], 0, 10000, "burst") if gb else 5
    canon = f"--limit {_rate_text(n, den)}" + (f" --limit-burst {burst}" if burst != 5 else "")
    avg = 10000 * den // n  # XT_LIMIT_SCALE: what the kernel keeps
    n, den = _rate_saved(n, den)  # the rate as iptables-save shows it back
    return Built([m.Stateful("limit", (("rate_num", n), ("rate_den_s", den), ("burst", burst),
                                       ("avg", avg)))], canon)


_HL_MODES = (("srcip", 4), ("srcport", 8), ("dstip", 1), ("dstport", 2))  # print_mode order, XT_HASHLIMIT_HASH_*
_HL_UNITS = (("m", 1024 * 1024), ("k", 1024), ("", 1))


def _hl_bytes_to_cost(b: int) -> int:
    """libxt_hashlimit bytes_to_cost: UINT32_MAX / ((u32)(bytes >> 4) + 1)."""
    return U32 // (((b >> 4) & U32) + 1)


def _hl_cost_to_bytes(cost: int) -> int:
    r = U32 // cost if cost else U32
    return ((r - 1) << 4) & ((1 << 64) - 1)


def _hl_rate_text(avg: int) -> tuple[str, int]:
    """print_rate (revision 3): the text and the quantum (ms) that decides whether expire is printed."""
    rates = (("day", 1000000 * 86400), ("hour", 1000000 * 3600), ("min", 1000000 * 60), ("sec", 1000000))
    i = len(rates)
    for k in range(1, len(rates)):
        if avg > rates[k][1] or rates[k][1] // avg < rates[k][1] % avg:
            i = k
            break
    name, mult = rates[i - 1]
    return f"{mult // avg}/{name}", mult // 1000000 * 1000


def _hl_bytes_text(avg: int, burst: int) -> tuple[str, int]:
    """print_bytes with the --hashlimit- prefix: rate text [burst text] and the quantum (ms)."""
    r = _hl_cost_to_bytes(avg)
    i = len(_HL_UNITS) - 1
    for k in range(len(_HL_UNITS) - 1):
        th = _HL_UNITS[k][1]
        if r >= th and _hl_bytes_to_cost(r & ~(th - 1)) == avg:
            i = k
            break
    text = f"{r // _HL_UNITS[i][1]}{_HL_UNITS[i][0]}b/s"
    if burst == 0:
        return text, 15000
    r *= burst
    i = len(_HL_UNITS) - 1
    for k in range(len(_HL_UNITS) - 1):
        if r >= _HL_UNITS[k][1]:
            i = k
            break
    return f"{text} --hashlimit-burst {r // _HL_UNITS[i][1]}{_HL_UNITS[i][0]}b", 60000


def _hl_burst(ctx: Ctx, g: Given) -> int:
    """parse_burst (revision 2/3): a number, optionally followed by k or m (x1024, x1024^2)."""
    t = g.args[0].strip()
    mt = re.match(r"^(0[xX][0-9a-fA-F]+|[0-9]+)(.*)$", t)
    if mt is None:
        ctx.error(g, 'bad value for option "--hashlimit-burst", or out of range (1-1000000).')
    v = _uint(ctx, g, mt.group(1), 1, (1 << 64) - 1, "burst")
    rest = mt.group(2)
    if rest == "" and v > 1000000:
        ctx.error(g, 'bad value for option "--hashlimit-burst", or out of range (1-1000000).')
    v *= {"m": 1024 * 1024, "k": 1024}.get(rest[:1], 1)
    if v > (1 << 64) - 1:
        ctx.error(g, f'bad value for option "--hashlimit-burst", value "{t}" too large')
    return v


def _hashlimit_build(ctx: Ctx, v: dict[str, Given]) -> Built:
    """libxt_hashlimit revision 3 (hashlimit_mt_parse / hashlimit_mt_check) -> the kernel's cfg3."""
    up, ab = v.get("hashlimit-upto") or v.get("hashlimit"), v.get("hashlimit-above")
    name = v.get("hashlimit-name")
    if up is None and ab is None:
        ctx.error(None, "hashlimit needs --hashlimit-upto or --hashlimit-above")
    if name is None:
        ctx.error(None, "hashlimit needs --hashlimit-name")
    g = up or ab
    invert = (g is up and g.invert) or (g is ab and not g.invert)
    rate_s = g.args[0]
    bmode = rate_s.find("b/s")
    bytes_mode = False
    n, den = 1, 1
    if bmode > 0:  # parse_bytes
        num = re.match(r"^\s*([0-9]+)", rate_s)
        r = int(num.group(1)) if num else 0
        if r == 0:
            ctx.error(g, f"bad value for option --hashlimit-{'upto' if g is up else 'above'} {rate_s!r}")
        tmp = r * {"m": 1024 * 1024, "k": 1024}.get(rate_s[bmode - 1], 1)
        if tmp > (1 << 64) - 1:
            ctx.error(g, f'Rate value too large "{tmp}"')
        avg = _hl_bytes_to_cost(tmp)
        if avg == 0:
            ctx.error(g, f'Rate too high "{rate_s}"')
        mult = 15
        bytes_mode = True
    else:  # parse_rate
        n, den = _rate(ctx, g, rate_s)
        avg = 1000000 * den // n
        if avg == 0:
            ctx.error(g, f'Rate too fast "{rate_s}"')
        mult = den
    modes: tuple[str, ...] = ()
    mode_bits = 0
    mg = v.get("hashlimit-mode")
    if mg:
        for md in re.split(r"[,|]", mg.args[0]):
            if md not in ("srcip", "srcport", "dstip", "dstport"):
                ctx.error(mg, f"bad hashlimit mode {md!r}")
            modes += (md,)
            mode_bits |= dict(_HL_MODES)[md]
    burst = _hl_burst(ctx, v["hashlimit-burst"]) if "hashlimit-burst" in v else 5
    bits = 32 if ctx.family == "ip" else 128
    smask = _uint(ctx, v["hashlimit-srcmask"], v["hashlimit-srcmask"].args[0], 0, bits) \
        if "hashlimit-srcmask" in v else bits
    dmask = _uint(ctx, v["hashlimit-dstmask"], v["hashlimit-dstmask"].args[0], 0, bits) \
        if "hashlimit-dstmask" in v else bits

    def u32opt(key, default):
        return _uint(ctx, v[key], v[key].args[0]) if key in v else default

    size, mx = u32opt("hashlimit-htable-size", 0), u32opt("hashlimit-htable-max", 0)
    gc = u32opt("hashlimit-htable-gcinterval", 1000)
    expire = u32opt("hashlimit-htable-expire", mult * 1000)
    interval = 0
    if "hashlimit-rate-interval" in v:
        gi = v["hashlimit-rate-interval"]
        mi = re.match(r"^\s*[+-]?[0-9]+", gi.args[0])
        interval = int(mi.group(0)) if mi else 0
        if interval <= 0 or interval > U32:
            ctx.error(gi, f"bad value for option --hashlimit-rate-interval {gi.args[0]!r}")
    # hashlimit_mt_check
    if bytes_mode:
        b = 0
        if "hashlimit-burst" in v:
            cb = _hl_cost_to_bytes(avg)
            if burst < cb:
                ctx.error(v["hashlimit-burst"], f"burst cannot be smaller than {cb}b")
            b = (burst // cb + (1 if burst % cb else 0)) & U32
            if "hashlimit-htable-expire" not in v:
                expire = 60000
        burst = b
    elif burst > 1000000:
        ctx.error(v["hashlimit-burst"], 'bad value for option "--hashlimit-burst", or out of range (1-1000000).')
    rate_match = "hashlimit-rate-match" in v
    if rate_match:
        if not bytes_mode:
            avg //= mult
        if interval == 0:
            interval = 1 if bytes_mode else mult
    # hashlimit_mt_save
    if bytes_mode:
        rtext, quantum = _hl_bytes_text(avg, burst)
    else:
        rtext, quantum = _hl_rate_text(avg) if avg else ("inf", 0)
        rtext += f" --hashlimit-burst {burst}"
    parts = [f"--hashlimit-{'above' if invert else 'upto'} {rtext}"]
    if mode_bits:
        parts.append("--hashlimit-mode " + ",".join(mn for mn, b in _HL_MODES if mode_bits & b))
    parts.append(f"--hashlimit-name {name.args[0]}")
    if size:
        parts.append(f"--hashlimit-htable-size {size}")
    if mx:
        parts.append(f"--hashlimit-htable-max {mx}")
    if gc != 1000:
        parts.append(f"--hashlimit-htable-gcinterval {gc}")
    if expire != quantum:
        parts.append(f"--hashlimit-htable-expire {expire}")
    if smask != bits:
        parts.append(f"--hashlimit-srcmask {smask}")
    if dmask != bits:
        parts.append(f"--hashlimit-dstmask {dmask}")
    if rate_match:
        parts.append("--hashlimit-rate-match")
        if interval != 1:
            parts.append(f"--hashlimit-rate-interval {interval}")
    rn, rd = _rate_saved(n, den, 1000000) if not bytes_mode else (0, 1)
    params = (("name", name.args[0]), ("family", 4 if bits == 32 else 6), ("mode", modes), ("mode_bits", mode_bits),
              ("rate_num", rn), ("rate_den_s", rd), ("avg", avg), ("burst", burst),
              ("upto" if ab is None else "above", True), ("invert", invert), ("bytes", bytes_mode),
              ("rate_match", rate_match), ("interval", interval), ("size", size), ("max", mx), ("gc_interval", gc),
              ("expire", expire), ("expire_ms", expire), ("srcmask", smask), ("dstmask", dmask))
    return Built([m.Stateful("hashlimit", params)], " ".join(parts))


def _raise_plain(col, token, reason):
    raise ValueError(reason)


def _recent_build(ctx: Ctx, v: dict[str, Given]) -> Built:
    cmds = [g for k, g in v.items() if k in ("set", "rcheck", "update", "remove")]
    if len(cmds) != 1:
        ctx.error(cmds[1] if cmds else None, "recent needs exactly one of --set, --rcheck, --update, --remove")
    cmd = cmds[0]
    seconds = _uint(ctx, v["seconds"], v["seconds"].args[0]) if "seconds" in v else 0
    hitcount = _uint(ctx, v["hitcount"], v["hitcount"].args[0], 0, 65535, "hitcount") if "hitcount" in v else 0
    if ("seconds" in v or "hitcount" in v or "reap" in v or "rttl" in v) and cmd.opt.name in ("set", "remove") \
            and ("seconds" in v or "hitcount" in v):
        ctx.error(v.get("seconds") or v.get("hitcount"), "--seconds/--hitcount need --rcheck or --update")
    if "rttl" in v and cmd.opt.name not in ("rcheck", "update"):
        ctx.error(v["rttl"], "--rttl needs --rcheck or --update")
    if "reap" in v and "seconds" not in v:
        ctx.error(v["reap"], "--reap needs --seconds")
    name = v["name"].args[0] if "name" in v else "DEFAULT"
    side = "dest" if "rdest" in v else "source"
    bits = 32 if ctx.family == "ip" else 128
    if "mask" in v:
        mk = v["mask"]
        try:
            mip = ipaddress.ip_address(mk.args[0])
        except ValueError:
            ctx.error(mk, f"invalid mask {mk.args[0]!r}")
        mask = int(mip)
    else:
        mask = (1 << bits) - 1
    parts = [f"{_neg(cmd)}--{cmd.opt.name}"]
    if "seconds" in v:
        parts.append(f"--seconds {seconds}")
    if "reap" in v:
        parts.append("--reap")
    if "hitcount" in v:
        parts.append(f"--hitcount {hitcount}")
    if "rttl" in v:
        parts.append("--rttl")
    mtext = str(ipaddress.ip_address(mask)) if bits == 32 else str(ipaddress.IPv6Address(mask))
    parts += [f"--name {name}", f"--mask {mtext}", "--rdest" if side == "dest" else "--rsource"]
    params = (("name", name), ("cmd", cmd.opt.name), ("seconds", seconds), ("hitcount", hitcount),
              ("rttl", "rttl" in v), ("side", side), ("reap", "reap" in v), ("mask", mask))
    return Built([m.Stateful("recent", params, cmd.invert)], " ".join(parts))


def _statistic_build(ctx: Ctx, v: dict[str, Given]) -> Built:
    mode = v.get("mode")
    if mode is None:
        ctx.error(None, "statistic needs --mode")
    if mode.args[0] == "random":
        g = v.get("probability")
        if g is None or "every" in v or "packet" in v:
            ctx.error(g or mode, "--mode random needs --probability (and no --every/--packet)")
        try:
            p = float(g.args[0])
        except ValueError:
            ctx.error(g, f"invalid probability {g.args[0]!r}")
        if not 0.0 <= p <= 1.0:
            ctx.error(g, "probability must be between 0 and 1")
        stored = int(p * 0x80000000 + 0.5)  # lround
        canon = f"--mode random {_neg(g)}--probability {stored / 0x80000000:.11f}"
        params = (("mode", "random"), ("probability", stored / 0x80000000), ("probability_u31", stored))
        return Built([m.Stateful("statistic", params, g.invert)], canon)
    if mode.args[0] == "nth":
        g = v.get("every")
        if g is None or "probability" in v:
            ctx.error(g or mode, "--mode nth needs --every (and no --probability)")
        every = _uint(ctx, g, g.args[0], 1, U32, "every")
        gp = v.get("packet")
        if gp is None:
            ctx.error(mode, "--mode nth needs --packet")
        packet = _uint(ctx, gp, gp.args[0], 0, U32, "packet")
        if packet >= every:
            ctx.error(gp, "--packet must be smaller than --every")
        inv = g.invert or gp.invert
        canon = f"--mode nth {'! ' if inv else ''}--every {every} --packet {packet}"
        return Built([m.Stateful("statistic", (("mode", "nth"), ("every", every), ("packet", packet)), inv)], canon)
    ctx.error(mode, f"bad statistic mode {mode.args[0]!r} (random or nth)")


def _connlimit_build(ctx: Ctx, v: dict[str, Given]) -> Built:
    up, ab = v.get("connlimit-upto"), v.get("connlimit-above")
    if (up is None) == (ab is None):
        ctx.error(ab, "connlimit needs exactly one of --connlimit-upto, --connlimit-above")
    g = up or ab
    n = _uint(ctx, g, g.args[0], 0, U32, "connection count")
    bits = 32 if ctx.family == "ip" else 128
    mk = v.get("connlimit-mask")
    mlen = _uint(ctx, mk, mk.args[0], 0, bits, "mask length") if mk else bits
    daddr = "connlimit-daddr" in v
    if daddr and "connlimit-saddr" in v:
        ctx.error(v["connlimit-daddr"], "--connlimit-saddr and --connlimit-daddr are exclusive")
    kind = "upto" if up else "above"
    if g.invert:
        kind = "above" if kind == "upto" else "upto"
    canon = f"--connlimit-{kind} {n} --connlimit-mask {mlen} --connlimit-{'daddr' if daddr else 'saddr'}"
    params = ((kind, n), ("mask", mlen), ("daddr" if daddr else "saddr", True), ("family", 4 if bits == 32 else 6))
    return Built([m.Stateful("connlimit", params)], canon)


def _quota_build(ctx: Ctx, v: dict[str, Given]) -> Built:
    g = v.get("quota")
    if g is None:
        ctx.error(None, "quota needs --quota")
    n = _uint(ctx, g, g.args[0], 0, (1 << 64) - 1, "quota")
    return Built([m.Stateful("quota", (("bytes", n),), g.invert)], f"{_neg(g)}--quota {n}")


def _length_build(ctx: Ctx, v: dict[str, Given]) -> Built:
    g = v.get("length")
    if g is None:
        ctx.error(None, "length needs --length")
    lo, hi = _range(ctx, g, g.args[0], _u(0, 65535, "length"), 0, 65535)
    return Built([m.FieldIn(Field.LEN, ((lo, hi),), g.invert)], f"{_neg(g)}--length {_fmt_range(lo, hi)}")


def _ttl_build(prefix: str):
    def build(ctx: Ctx, v: dict[str, Given]) -> Built:
        given = [g for k, g in v.items()]
        if len(given) != 1:
            ctx.error(given[1] if given else None, f"{prefix} match needs exactly one of --{prefix}-eq/-lt/-gt")
        g = given[0]
        n = _uint(ctx, g, g.args[0], 0, 255, prefix.upper())
        op = g.opt.name.rsplit("-", 1)[1]
        if op != "eq" and g.invert:
            ctx.error(g, f"--{g.opt.name} cannot be inverted")
        if op == "eq":
            iv = (n, n)
        elif op == "lt":
            if n == 0:
                return Built([m.Never(f"{prefix} < 0")], f"--{prefix}-lt 0")
            iv = (0, n - 1)
        else:
            if n == 255:
                return Built([m.Never(f"{prefix} > 255")], f"--{prefix}-gt 255")
            iv = (n + 1, 255)
        return Built([m.FieldIn(Field.TTL, (iv,), g.invert)], f"{_neg(g)}--{g.opt.name} {n}")

    return build


TOS_NAMES = {"Minimize-Delay": 0x10, "Maximize-Throughput": 0x08, "Maximize-Reliability": 0x04,
             "Minimize-Cost": 0x02, "Normal-Service": 0x00}


def _tos_build(ctx: Ctx, v: dict[str, Given]) -> Built:
    g = v.get("tos")
    if g is None:
        ctx.error(None, "tos needs --tos")
    t = g.args[0]
    if t in TOS_NAMES:
        val, mask = TOS_NAMES[t], 0x3F
    elif t[:1].isdigit():
        val, mask = _value_mask(ctx, g, t, 8)
    else:
        ctx.error(g, f"bad TOS value {t!r}")
    return Built([m.Masked(Field.TOS, mask, val & mask, "eq", g.invert)],
                 f"{_neg(g)}--tos 0x{val:02x}/0x{mask:02x}")


DSCP_CLASSES = {"CS0": 0, "CS1": 8, "CS2": 16, "CS3": 24, "CS4": 32, "CS5": 40, "CS6": 48, "CS7": 56,
                "BE": 0, "AF11": 10, "AF12": 12, "AF13": 14, "AF21": 18, "AF22": 20, "AF23": 22, "AF31": 26,
                "AF32": 28, "AF33": 30, "AF41": 34, "AF42": 36, "AF43": 38, "EF": 46}


def _dscp_build(ctx: Ctx, v: dict[str, Given]) -> Built:
    g = v.get("dscp") or v.get("dscp-class")
    if g is None or len(v) != 1:
        ctx.error(None if g is None else v.get("dscp-class"), "dscp needs exactly one of --dscp, --dscp-class")
    if g.opt.name == "dscp":
        val = _uint(ctx, g, g.args[0], 0, 63, "DSCP")
    else:
        if g.args[0].upper() not in DSCP_CLASSES:
            ctx.error(g, f"unknown DSCP class {g.args[0]!r}")
        val = DSCP_CLASSES[g.args[0].upper()]
    return Built([m.FieldIn(Field.DSCP, ((val, val),), g.invert)], f"{_neg(g)}--dscp 0x{val:02x}")


PKT_TYPES = {"unicast": 0, "host": 0, "broadcast": 1, "multicast": 2, "otherhost": 3}


def _pkttype_build(ctx: Ctx, v: dict[str, Given]) -> Built:
    g = v.get("pkt-type")
    if g is None:
        ctx.error(None, "pkttype needs --pkt-type")
    t = g.args[0].lower()
    if t not in PKT_TYPES:
        ctx.error(g, f"bad packet type {g.args[0]!r}")
    n = PKT_TYPES[t]
    name = {0: "unicast", 1: "broadcast", 2: "multicast", 3: "otherhost"}[n]
    return Built([m.FieldIn(Field.PKTTYPE, ((n, n),), g.invert)], f"{_neg(g)}--pkt-type {name}")


ADDR_TYPES = ("UNSPEC", "UNICAST", "LOCAL", "BROADCAST", "ANYCAST", "MULTICAST", "BLACKHOLE", "UNREACHABLE",
              "PROHIBIT", "THROW", "NAT", "XRESOLVE")
ADDR_TYPES_V6 = ("UNSPEC", "UNICAST", "LOCAL", "ANYCAST", "MULTICAST", "UNREACHABLE")


def _addrtype_build(ctx: Ctx, v: dict[str, Given]) -> Built:
    b = Built()
    parts = []
    lim_in, lim_out = "limit-iface-in" in v, "limit-iface-out" in v
    if lim_in and lim_out:
        ctx.error(v["limit-iface-out"], "--limit-iface-in and --limit-iface-out are exclusive")
    if "src-type" not in v and "dst-type" not in v:
        ctx.error(None, "addrtype needs --src-type or --dst-type")
    allowed = ADDR_TYPES if ctx.family == "ip" else ADDR_TYPES_V6
    for name, which in (("src-type", "src"), ("dst-type", "dst")):
        g = v.get(name)
        if g is None:
            continue
        types = []
        for t in g.args[0].split(","):
            if t.upper() not in allowed:
                ctx.error(g, f"bad address type {t!r}")
            types.append(t.upper())
        b.exprs.append(m.AddrType(which, frozenset(types), g.invert,
                                  "in" if lim_in else "out" if lim_out else None))
        parts.append(f"{_neg(g)}--{name} {','.join(t for t in ADDR_TYPES if t in types)}")
    if lim_in:
        parts.append("--limit-iface-in")
        b.hooks = frozenset({"PREROUTING", "INPUT", "FORWARD"})
        b.hooks_why = "addrtype --limit-iface-in is not valid in OUTPUT/POSTROUTING"
    if lim_out:
        parts.append("--limit-iface-out")
        b.hooks = frozenset({"FORWARD", "OUTPUT", "POSTROUTING"})
        b.hooks_why = "addrtype --limit-iface-out is not valid in PREROUTING/INPUT"
    b.canon = " ".join(parts)
    return b


def _comment_build(ctx: Ctx, v: dict[str, Given]) -> Built:
    g = v.get("comment")
    if g is None:
        ctx.error(None, "comment needs --comment")
    if len(g.args[0]) > 255:
        ctx.error(g, "comment is longer than 255 characters")
    return Built(canon=f"--comment {quote(g.args[0])}", comment=g.args[0])


def _mac_build(ctx: Ctx, v: dict[str, Given]) -> Built:
    g = v.get("mac-source")
    if g is None:
        ctx.error(None, "mac needs --mac-source")
    parts = g.args[0].split(":")
    if len(parts) != 6 or not all(len(p) in (1, 2) and all(c in "0123456789abcdefABCDEF" for c in p)
                                  for p in parts):
        ctx.error(g, f"bad MAC address {g.args[0]!r}")
    val = int("".join(p.zfill(2) for p in parts), 16)
    return Built([m.FieldIn(Field.ETH_SRC, ((val, val),), g.invert)],
                 f"{_neg(g)}--mac-source {':'.join(p.zfill(2).upper() for p in parts)}")


SET_DIRS = ("src", "dst")


def _set_build(ctx: Ctx, v: dict[str, Given]) -> Built:
    g = v.get("match-set") or v.get("set")
    if g is None:
        ctx.error(None, "set needs --match-set NAME src|dst[,...]")
    name, dirs = g.args
    ds = dirs.split(",")
    if not all(d in SET_DIRS for d in ds) or len(ds) > 6:
        ctx.error(g, f"bad set flags {dirs!r} (src/dst per dimension)")
    fields = set_fields(ds, None)
    canon = f"{_neg(g)}--match-set {name} {dirs}"
    for k in ("return-nomatch", "update-counters", "update-subcounters", "packets-eq", "packets-lt",
              "packets-gt", "bytes-eq", "bytes-lt", "bytes-gt"):
        if k in v:
            canon += f" {_neg(v[k])}--{k}" + "".join(" " + a for a in v[k].args)
    b = Built([m.SetMatch(fields, name, g.invert)], canon)
    if any(k in v for k in ("return-nomatch", "packets-eq", "packets-lt", "packets-gt", "bytes-eq", "bytes-lt",
                            "bytes-gt")):
        b.unsupported = "set match counters / --return-nomatch"
    return b


def set_fields(dirs: list[str] | tuple[str, ...], settype: str | None) -> tuple[Field, ...]:
    """The packet fields an ipset lookup uses: per dimension of the set type (ip/net -> address,
    port -> port, mark, iface), the src/dst flag picks the side. settype None: assume addr,port,addr."""
    if settype is None:
        kinds = ["ip", "port", "ip", "ip", "ip", "ip"][: len(dirs)]
    else:
        method, _, dims = settype.partition(":")
        kinds = ["ip" if k in ("ip", "net") else k for k in dims.split(",")]
    out = []
    for d, k in zip(dirs, kinds):
        if k == "ip":
            out.append(Field.SRC if d == "src" else Field.DST)
        elif k == "port":
            out.append(Field.SPORT if d == "src" else Field.DPORT)
        elif k == "mark":
            out.append(Field.MARK)
        elif k == "iface":
            out.append(Field.IIF if d == "src" else Field.OIF)
        elif k == "mac":
            out.append(Field.ETH_SRC if d == "src" else Field.ETH_DST)
        else:
            out.append(Field.SRC if d == "src" else Field.DST)
    return tuple(out)


def _ecn_match_build(ctx: Ctx, v: dict[str, Given]) -> Built:
    """xt_ecn: ECE/CWR test the TCP header bits (needs `-p tcp`), --ecn-ip-ect the IP ECN field."""
    if not v:
        ctx.error(None, "ecn needs --ecn-tcp-ece, --ecn-tcp-cwr or --ecn-ip-ect")
    b = Built()
    parts = []
    for name, bit in (("ecn-tcp-ece", 0x40), ("ecn-tcp-cwr", 0x80)):
        g = v.get(name)
        if g is not None:
            if ctx.proto != IPPROTO_TCP or ctx.proto_inv:
                ctx.error(g, "ecn: TCP flag tests need `-p tcp`")
            b.exprs.append(m.Masked(Field.TCP_FLAGS, bit, bit, "eq", g.invert))
            parts.append(f"{_neg(g)}--{name}")
    g = v.get("ecn-ip-ect")
    if g is not None:
        n = _uint(ctx, g, g.args[0], 0, 3, "ECT codepoint")
        b.exprs.append(m.Masked(Field.TOS, 0x03, n, "eq", g.invert))
        parts.append(f"{_neg(g)}--ecn-ip-ect {n}")
    b.canon = " ".join(parts)
    return b


def _helper_build(ctx: Ctx, v: dict[str, Given]) -> Built:
    g = v.get("helper")
    if g is None:
        ctx.error(None, "helper needs --helper")
    return Built(canon=f"{_neg(g)}--helper {quote(g.args[0])}",
                 unsupported="helper match (the helper of the connection's master)")


# ---------------------------------------------------------------- targets
def _plain_verdict(kind: str):
    def build(ctx: Ctx, v: dict[str, Given]) -> Built:
        return Built([m.Verdict(kind)], "")

    return build


REJECT_V4 = {"icmp-net-unreachable": "icmp-net-unreachable", "net-unreach": "icmp-net-unreachable",
             "icmp-host-unreachable": "icmp-host-unreachable", "host-unreach": "icmp-host-unreachable",
             "icmp-proto-unreachable": "icmp-proto-unreachable", "proto-unreach": "icmp-proto-unreachable",
             "icmp-port-unreachable": "icmp-port-unreachable", "port-unreach": "icmp-port-unreachable",
             "icmp-net-prohibited": "icmp-net-prohibited", "net-prohib": "icmp-net-prohibited",
             "icmp-host-prohibited": "icmp-host-prohibited", "host-prohib": "icmp-host-prohibited",
             "icmp-admin-prohibited": "icmp-admin-prohibited", "admin-prohib": "icmp-admin-prohibited",
             "tcp-reset": "tcp-reset", "tcp-rst": "tcp-reset"}
REJECT_V6 = {"icmp6-no-route": "icmp6-no-route", "no-route": "icmp6-no-route",
             "icmp6-adm-prohibited": "icmp6-adm-prohibited", "adm-prohibited": "icmp6-adm-prohibited",
             "icmp6-addr-unreachable": "icmp6-addr-unreachable", "addr-unreach": "icmp6-addr-unreachable",
             "icmp6-port-unreachable": "icmp6-port-unreachable", "port-unreach": "icmp6-port-unreachable",
             "icmp6-policy-fail": "icmp6-policy-fail", "policy-fail": "icmp6-policy-fail",
             "icmp6-reject-route": "icmp6-reject-route", "reject-route": "icmp6-reject-route",
             "tcp-reset": "tcp-reset", "tcp-rst": "tcp-reset"}


def _reject_build(ctx: Ctx, v: dict[str, Given]) -> Built:
    names = REJECT_V4 if ctx.family == "ip" else REJECT_V6
    g = v.get("reject-with")
    w = "icmp-port-unreachable" if ctx.family == "ip" else "icmp6-port-unreachable"
    if g is not None:
        if g.args[0] not in names:
            ctx.error(g, f"unknown reject type {g.args[0]!r}")
        w = names[g.args[0]]
    if w == "tcp-reset" and (ctx.proto != IPPROTO_TCP or ctx.proto_inv):
        ctx.error(g, "--reject-with tcp-reset needs `-p tcp`")
    return Built([m.Reject(w)], f"--reject-with {w}")


LOG_LEVELS = {"emerg": 0, "panic": 0, "alert": 1, "crit": 2, "err": 3, "error": 3, "warning": 4, "warn": 4,
              "notice": 5, "info": 6, "debug": 7}
LOG_FLAGS = ("log-tcp-sequence", "log-tcp-options", "log-ip-options", "log-uid", "log-macdecode")


def _log_build(ctx: Ctx, v: dict[str, Given]) -> Built:
    parts = []
    prefix = ""
    if "log-prefix" in v:
        prefix = v["log-prefix"].args[0]
        if len(prefix) > 29:
            ctx.error(v["log-prefix"], "--log-prefix is longer than 29 characters")
        if "\n" in prefix:
            ctx.error(v["log-prefix"], "newline in --log-prefix")
        parts.append(f"--log-prefix {quote(prefix)}")
    level = 4
    if "log-level" in v:
        g = v["log-level"]
        t = g.args[0].lower()
        level = LOG_LEVELS[t] if t in LOG_LEVELS else _uint(ctx, g, g.args[0], 0, 7, "log level")
        if level != 4:
            parts.append(f"--log-level {level}")
    flags = tuple(f for f in LOG_FLAGS if f in v)
    parts += [f"--{f}" for f in flags]
    return Built([m.Log("log", prefix, level, 0, tuple(f[4:] for f in flags))], " ".join(parts))


def _nflog_build(ctx: Ctx, v: dict[str, Given]) -> Built:
    parts = []
    group = _uint(ctx, v["nflog-group"], v["nflog-group"].args[0], 0, 65535, "group") if "nflog-group" in v else 0
    if group:
        parts.append(f"--nflog-group {group}")
    prefix = ""
    if "nflog-prefix" in v:
        prefix = v["nflog-prefix"].args[0][:63]
        parts.append(f"--nflog-prefix {quote(prefix)}")
    for k, hi in (("nflog-range", U32), ("nflog-size", U32), ("nflog-threshold", 65535)):
        if k in v:
            n = _uint(ctx, v[k], v[k].args[0], 0, hi)
            parts.append(f"--{k} {n}")
    return Built([m.Log("nflog", prefix, 4, group)], " ".join(parts))


def _queue_build(ctx: Ctx, v: dict[str, Given]) -> Built:
    parts = []
    if "queue-num" in v and "queue-balance" in v:
        ctx.error(v["queue-balance"], "--queue-num and --queue-balance are exclusive")
    num = 0
    if "queue-balance" in v:
        g = v["queue-balance"]
        if ":" not in g.args[0]:
            ctx.error(g, "--queue-balance needs a range a:b")
        a, b = _range(ctx, g, g.args[0], _u(0, 65535, "queue number"), 0, 65534)
        if b == 65535:
            ctx.error(g, "--queue-balance: queue 65535 is out of range")
        if a >= b:
            ctx.error(g, "--queue-balance: the range must hold at least two queues")
        num = a
        parts.append(f"--queue-balance {a}:{b}")
    else:
        if "queue-num" in v:
            num = _uint(ctx, v["queue-num"], v["queue-num"].args[0], 0, 65535, "queue number")
        parts.append(f"--queue-num {num}")
    bypass = "queue-bypass" in v
    if bypass:
        parts.append("--queue-bypass")
    if "queue-cpu-fanout" in v:
        if "queue-balance" not in v:
            ctx.error(v["queue-cpu-fanout"], "--queue-cpu-fanout needs --queue-balance")
        parts.append("--queue-cpu-fanout")
    if "fail-open" in v:
        parts.append("--fail-open")
    b = Built([m.Verdict("queue", queue_num=num, bypass=bypass)], " ".join(parts))
    if "queue-balance" in v:
        b.unsupported = "NFQUEUE --queue-balance (queue chosen by flow hash)"
    return b


def _markop_target(dest: str, ctx: Ctx, v: dict[str, Given], name: str) -> tuple[int, int, str] | None:
    """MARK / CONNMARK set forms -> (value, mask) as stored by the extension (set-xmark encoding)."""
    forms = [g for k, g in v.items() if k in ("set-xmark", "set-mark", "and-mark", "or-mark", "xor-mark")]
    if not forms:
        return None
    if len(forms) > 1:
        ctx.error(forms[1], f"{name}: only one of --set-xmark/--set-mark/--and-mark/--or-mark/--xor-mark")
    g = forms[0]
    k = g.opt.name
    if k == "set-xmark":
        val, mask = _value_mask(ctx, g, g.args[0])
    elif k == "set-mark":
        val, mask = _value_mask(ctx, g, g.args[0])
        mask = (mask | val) & U32
    elif k == "and-mark":
        val, mask = 0, (~_uint(ctx, g, g.args[0])) & U32
    elif k == "or-mark":
        val = _uint(ctx, g, g.args[0])
        mask = val
    else:
        val, mask = _uint(ctx, g, g.args[0]), 0
    return val, mask, f"--set-xmark {_hex(val)}/{_hex(mask)}"


def _mark_target_build(ctx: Ctx, v: dict[str, Given]) -> Built:
    r = _markop_target("mark", ctx, v, "MARK")
    if r is None:
        ctx.error(None, "MARK needs one of --set-xmark, --set-mark, --and-mark, --or-mark, --xor-mark")
    val, mask, canon = r
    return Built([m.MarkOp("mark", (~mask) & U32, val)], canon)


def _connmark_target_build(ctx: Ctx, v: dict[str, Given]) -> Built:
    r = _markop_target("ctmark", ctx, v, "CONNMARK")
    save, restore = v.get("save-mark"), v.get("restore-mark")
    n = (r is not None) + (save is not None) + (restore is not None)
    if n != 1:
        ctx.error(save or restore, "CONNMARK needs exactly one of --set-xmark/--set-mark/..., --save-mark, "
                                   "--restore-mark")
    for k in ("left-shift-mark", "right-shift-mark"):
        if k in v and _uint(ctx, v[k], v[k].args[0], 0, 31) != 0:
            return Built(canon="", unsupported="CONNMARK with mark shifts")
    if r is not None:
        if any(k in v for k in ("nfmask", "ctmask", "mask")):
            ctx.error(v.get("nfmask") or v.get("ctmask") or v.get("mask"), "mask options need --save/--restore-mark")
        val, mask, canon = r
        return Built([m.MarkOp("ctmark", (~mask) & U32, val)], canon)
    nf = ct = U32
    if "mask" in v:
        nf = ct = _uint(ctx, v["mask"], v["mask"].args[0])
    if "nfmask" in v:
        nf = _uint(ctx, v["nfmask"], v["nfmask"].args[0])
    if "ctmask" in v:
        ct = _uint(ctx, v["ctmask"], v["ctmask"].args[0])
    if save is not None:  # ctmark = (ctmark & ~ctmask) ^ (mark & nfmask)
        return Built([m.MarkOp("ctmark", (~ct) & U32, 0, "mark", nf)],
                     f"--save-mark --nfmask {_hex(nf)} --ctmask {_hex(ct)}")
    # restore: mark = (mark & ~nfmask) ^ (ctmark & ctmask)
    return Built([m.MarkOp("mark", (~nf) & U32, 0, "ctmark", ct)],
                 f"--restore-mark --nfmask {_hex(nf)} --ctmask {_hex(ct)}")


def _ct_build(ctx: Ctx, v: dict[str, Given]) -> Built:
    parts = []
    notrack = "notrack" in v
    if notrack:
        parts.append("--notrack")
        if len(v) > 1:
            ctx.error(list(v.values())[1], "CT --notrack takes no other option")
    helper = v["helper"].args[0] if "helper" in v else None
    if helper is not None:
        parts.append(f"--helper {quote(helper)}")
    for k in ("ctevents", "expevents"):
        if k in v:
            parts.append(f"--{k} {v[k].args[0]}")
    zone = None
    unsupported = None
    for k in ("zone", "zone-orig", "zone-reply"):
        if k in v:
            t = v[k].args[0]
            zone = 0 if t == "mark" else _uint(ctx, v[k], t, 0, 65535, "zone")
            parts.append(f"--{k} {t}")
            if t == "mark":
                unsupported = "CT --zone mark"
            elif k != "zone":
                unsupported = f"CT --{k} (directional zone)"
    if "timeout" in v:
        parts.append(f"--timeout {v['timeout'].args[0]}")
        unsupported = "CT --timeout (timeout policy)"
    if helper not in (None, "ftp"):
        unsupported = f"CT --helper {helper} (only ftp is modelled)"
    b = Built([m.CtSet(notrack, helper, zone)], " ".join(parts))
    b.unsupported = unsupported
    return b


def _notrack_build(ctx: Ctx, v: dict[str, Given]) -> Built:
    return Built([m.CtSet(notrack=True)], "")


def _nat_spec(ctx: Ctx, g: Given, text: str, dnat: bool) -> tuple:
    """[a[-b]][:p[-q][/base]] (IPv6 addresses in brackets when a port follows)."""
    v6 = ctx.family == "ip6"
    a_part, port_part = text, ""
    if v6:
        if text.startswith("["):
            close = text.find("]")
            if close < 0:
                ctx.error(g, f"bad NAT range {text!r}")
            a_part, rest = text[1:close], text[close + 1:]
            if rest:
                if not rest.startswith(":"):
                    ctx.error(g, f"bad NAT range {text!r}")
                port_part = rest[1:]
    else:
        a_part, _, port_part = text.partition(":")
        if ":" in text and not port_part:
            ctx.error(g, f"bad NAT range {text!r}: port missing")
    lo = hi = None
    if a_part:
        a_s, sep, b_s = a_part.partition("-")
        lo = parse_addr(ctx, g, a_s, ctx.family)[0]
        hi = parse_addr(ctx, g, b_s, ctx.family)[0] if sep else lo
        if "/" in a_part:
            ctx.error(g, "NAT address takes no mask")
        if lo > hi:
            ctx.error(g, "NAT address range start after end")
    p0 = p1 = base = 0
    if port_part:
        if ctx.proto not in (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP, IPPROTO_DCCP, IPPROTO_UDPLITE, IPPROTO_ICMP) \
                or ctx.proto_inv:
            ctx.error(g, "need `-p tcp`, `-p udp`, `-p sctp` or `-p dccp` with a port")
        pr, slash, base_s = port_part.partition("/")
        if slash and not dnat:
            ctx.error(g, "port offset only with DNAT")
        p0, p1 = _port_dash_range(ctx, g, pr)
        if slash:
            base = _port(ctx, g, base_s)
            if base == 0:
                ctx.error(g, "invalid port offset base 0")
    return lo, hi, p0, p1, base


def _nat_text(ctx: Ctx, lo, hi, p0, p1, base) -> str:
    t = ""
    if lo is not None:
        f = (lambda x: str(ipaddress.IPv4Address(x & U32))) if ctx.family == "ip" else \
            (lambda x: str(ipaddress.IPv6Address(x)))
        t = f(lo) + ("" if hi == lo else "-" + f(hi))
    if p0 or p1:
        if ctx.family == "ip6" and t:
            t = f"[{t}]"
        t += f":{p0}" + ("" if p1 == p0 else f"-{p1}") + (f"/{base}" if base else "")
    return t


def _nat_flags(v: dict[str, Given], allowed) -> tuple[frozenset, str]:
    fl = [k for k in ("random", "random-fully", "persistent") if k in v and k in allowed]
    return frozenset(fl), "".join(f" --{k}" for k in fl)


def _snat_dnat(kind: str):
    opt = "to-source" if kind == "snat" else "to-destination"

    def build(ctx: Ctx, v: dict[str, Given]) -> Built:
        g = v.get(opt)
        if g is None:
            if kind == "snat":
                ctx.error(None, "SNAT needs --to-source")
            ctx.error(None, "DNAT needs --to-destination")
        lo, hi, p0, p1, base = _nat_spec(ctx, g, g.args[0], kind == "dnat")
        flags, ftext = _nat_flags(v, ("random", "random-fully", "persistent"))
        b = Built([m.Nat(kind, lo, hi, p0, p1, flags, 4 if ctx.family == "ip" else 6)],
                  f"--{opt} {_nat_text(ctx, lo, hi, p0, p1, base)}{ftext}")
        if base:
            b.unsupported = "DNAT port shifting (/base)"
        return b

    return build


def _to_ports(ctx: Ctx, g: Given) -> tuple[int, int]:
    p0, p1 = _port_dash_range(ctx, g, g.args[0])
    if ctx.proto not in (IPPROTO_TCP, IPPROTO_UDP, IPPROTO_SCTP, IPPROTO_DCCP, IPPROTO_UDPLITE) or ctx.proto_inv:
        ctx.error(g, "--to-ports needs `-p tcp`, `-p udp`, `-p sctp` or `-p dccp`")
    return p0, p1


def _masq_redirect(kind: str):
    def build(ctx: Ctx, v: dict[str, Given]) -> Built:
        p0 = p1 = 0
        text = ""
        if "to-ports" in v:
            p0, p1 = _to_ports(ctx, v["to-ports"])
            text = f"--to-ports {p0}" + ("" if p1 == p0 else f"-{p1}")
        allowed = ("random", "random-fully") if kind == "masquerade" else ("random",)
        flags, ftext = _nat_flags(v, allowed)
        return Built([m.Nat(kind, None, None, p0, p1, flags, 4 if ctx.family == "ip" else 6)],
                     (text + ftext).strip())

    return build


def _netmap_build(ctx: Ctx, v: dict[str, Given]) -> Built:
    g = v.get("to")
    if g is None:
        ctx.error(None, "NETMAP needs --to")
    val, mask, plen, _ = parse_addr(ctx, g, g.args[0], ctx.family)
    if plen < 0:
        ctx.error(g, "NETMAP needs a prefix length, not a mask")
    bits = 32 if ctx.family == "ip" else 128
    host = (1 << (bits - plen)) - 1
    pm = mask | (((1 << 128) - 1) ^ U32 if ctx.family == "ip" else 0)
    return Built([m.Nat("netmap", val, val | host, 0, 0, frozenset(), 4 if ctx.family == "ip" else 6, pm)],
                 f"--to {addr_text(val, mask, plen, ctx.family)}")


def _tcpmss_build(ctx: Ctx, v: dict[str, Given]) -> Built:
    if ("set-mss" in v) == ("clamp-mss-to-pmtu" in v):
        ctx.error(None, "TCPMSS needs exactly one of --set-mss, --clamp-mss-to-pmtu")
    if ctx.proto != IPPROTO_TCP or ctx.proto_inv:
        ctx.error(None, "TCPMSS needs `-p tcp`")
    if not ctx.has_tcp_syn:
        ctx.error(None, "TCPMSS only works on TCP SYN packets: add -m tcp --tcp-flags ... SYN (or --syn)")
    if "set-mss" in v:
        n = _uint(ctx, v["set-mss"], v["set-mss"].args[0], 0, 65535, "MSS")
        canon = f"--set-mss {n}"
    else:
        canon = "--clamp-mss-to-pmtu"
    b = Built([m.Noop("TCPMSS", canon)], canon)
    if "clamp-mss-to-pmtu" in v:
        b.hooks = frozenset({"FORWARD", "OUTPUT", "POSTROUTING"})
        b.hooks_why = "TCPMSS --clamp-mss-to-pmtu is only valid in FORWARD, OUTPUT and POSTROUTING"
    return b


# ---------------------------------------------------------------- the registry
_PROTO_V = lambda *ps: tuple(ps)  # noqa: E731

MODULES: dict[str, Module] = {}


def _reg(mod: Module):
    MODULES[(mod.kind, mod.name)] = mod
    for a in mod.aliases:
        MODULES[(mod.kind, a)] = mod


_reg(Module("tcp", "match", _port_opts((Opt("syn", 0, True), Opt("tcp-flags", 2, True),
                                        Opt("tcp-option", 1, True))), _ports_build("tcp"),
            "TCP ports, flags", protos=(IPPROTO_TCP,)))
_reg(Module("udp", "match", _port_opts(), _ports_build("udp"), "UDP ports", protos=(IPPROTO_UDP,)))
_reg(Module("udplite", "match", _port_opts(), _ports_build("udp"), "UDP-Lite ports", protos=(IPPROTO_UDPLITE,)))
_reg(Module("sctp", "match", _port_opts((Opt("chunk-types", 2, True),)), _ports_build("sctp"),
            "SCTP ports", protos=(IPPROTO_SCTP,)))
_reg(Module("dccp", "match", _port_opts((Opt("dccp-types", 1, True), Opt("dccp-option", 1, True))),
            _ports_build("dccp"), "DCCP ports", protos=(IPPROTO_DCCP,)))
_reg(Module("icmp", "match", (Opt("icmp-type", 1, True),), _icmp_build(False), "ICMP type/code",
            families=frozenset({"ip"}), protos=(IPPROTO_ICMP,)))
_reg(Module("icmp6", "match", (Opt("icmpv6-type", 1, True),), _icmp_build(True), "ICMPv6 type/code",
            families=frozenset({"ip6"}), protos=(IPPROTO_ICMPV6,), aliases=("icmpv6",)))
_reg(Module("multiport", "match", (Opt("sports", 1, True, ("source-ports",)),
                                   Opt("dports", 1, True, ("destination-ports",)), Opt("ports", 1, True)),
            _multiport_build, "port lists"))
_reg(Module("iprange", "match", (Opt("src-range", 1, True), Opt("dst-range", 1, True)), _iprange_build,
            "address ranges"))
_reg(Module("conntrack", "match", tuple(Opt(n, 1, True) for n in (
    "ctstate", "ctproto", "ctorigsrc", "ctorigdst", "ctreplsrc", "ctrepldst", "ctorigsrcport", "ctorigdstport",
    "ctreplsrcport", "ctrepldstport", "ctstatus", "ctexpire", "ctdir")), _conntrack_build, "conntrack state"))
_reg(Module("state", "match", (Opt("state", 1, True),), _state_build, "conntrack state (old)"))
_reg(Module("mark", "match", (Opt("mark", 1, True),), _mark_build(Field.MARK), "packet mark"))
_reg(Module("connmark", "match", (Opt("mark", 1, True),), _mark_build(Field.CT_MARK), "connection mark"))
_reg(Module("limit", "match", (Opt("limit", 1, True), Opt("limit-burst", 1)), _limit_build, "token bucket"))
_reg(Module("hashlimit", "match", tuple(Opt(n, 1, n in ("hashlimit-upto", "hashlimit-above")) for n in (
    "hashlimit", "hashlimit-upto", "hashlimit-above", "hashlimit-burst", "hashlimit-mode", "hashlimit-srcmask",
    "hashlimit-dstmask", "hashlimit-name", "hashlimit-htable-size", "hashlimit-htable-max",
    "hashlimit-htable-gcinterval", "hashlimit-htable-expire", "hashlimit-rate-interval"))
    + (Opt("hashlimit-rate-match", 0),), _hashlimit_build, "per-key token buckets"))
_reg(Module("recent", "match", (Opt("set", 0, True), Opt("rcheck", 0, True), Opt("update", 0, True),
                                Opt("remove", 0, True), Opt("seconds", 1), Opt("reap", 0), Opt("hitcount", 1),
                                Opt("rttl", 0), Opt("name", 1), Opt("rsource", 0), Opt("rdest", 0),
                                Opt("mask", 1)), _recent_build, "recently seen addresses"))
_reg(Module("statistic", "match", (Opt("mode", 1), Opt("probability", 1, True), Opt("every", 1, True),
                                   Opt("packet", 1)), _statistic_build, "nth / random sampling"))
_reg(Module("connlimit", "match", (Opt("connlimit-upto", 1), Opt("connlimit-above", 1, True),
                                   Opt("connlimit-mask", 1), Opt("connlimit-saddr", 0), Opt("connlimit-daddr", 0)),
            _connlimit_build, "connection count per address"))
_reg(Module("quota", "match", (Opt("quota", 1, True),), _quota_build, "byte quota"))
_reg(Module("length", "match", (Opt("length", 1, True),), _length_build, "IP length"))
_reg(Module("ttl", "match", (Opt("ttl-eq", 1, True), Opt("ttl-lt", 1), Opt("ttl-gt", 1)), _ttl_build("ttl"),
            "IPv4 TTL", families=frozenset({"ip"})))
_reg(Module("hl", "match", (Opt("hl-eq", 1, True), Opt("hl-lt", 1), Opt("hl-gt", 1)), _ttl_build("hl"),
            "IPv6 hop limit", families=frozenset({"ip6"})))
_reg(Module("tos", "match", (Opt("tos", 1, True),), _tos_build, "TOS byte"))
_reg(Module("dscp", "match", (Opt("dscp", 1, True), Opt("dscp-class", 1, True)), _dscp_build, "DSCP"))
_reg(Module("pkttype", "match", (Opt("pkt-type", 1, True),), _pkttype_build, "link-layer packet type"))
_reg(Module("addrtype", "match", (Opt("src-type", 1, True), Opt("dst-type", 1, True), Opt("limit-iface-in", 0),
                                  Opt("limit-iface-out", 0)), _addrtype_build, "address type (host model)"))
_reg(Module("comment", "match", (Opt("comment", 1),), _comment_build, "comment"))
_reg(Module("mac", "match", (Opt("mac-source", 1, True),), _mac_build, "source MAC",
            hooks=frozenset({"PREROUTING", "INPUT", "FORWARD"})))
_reg(Module("set", "match", (Opt("match-set", 2, True), Opt("set", 2, True), Opt("return-nomatch", 0),
                             Opt("update-counters", 0, True), Opt("update-subcounters", 0, True),
                             Opt("packets-eq", 1, True), Opt("packets-lt", 1), Opt("packets-gt", 1),
                             Opt("bytes-eq", 1, True), Opt("bytes-lt", 1), Opt("bytes-gt", 1)),
            _set_build, "ipset membership"))
_reg(Module("ecn", "match", (Opt("ecn-tcp-ece", 0, True), Opt("ecn-tcp-cwr", 0, True), Opt("ecn-ip-ect", 1, True)),
            _ecn_match_build, "ECN bits (IP ECT, TCP ECE/CWR)"))
_reg(Module("helper", "match", (Opt("helper", 1, True),), _helper_build, "conntrack helper"))

# targets
_reg(Module("ACCEPT", "target", (), _plain_verdict("accept"), "accept"))
_reg(Module("DROP", "target", (), _plain_verdict("drop"), "drop"))
_reg(Module("RETURN", "target", (), _plain_verdict("return"), "return to the calling chain"))
_reg(Module("QUEUE", "target", (), lambda ctx, v: Built([m.Verdict("queue", queue_num=0)], ""), "queue 0"))
_reg(Module("NFQUEUE", "target", (Opt("queue-num", 1), Opt("queue-balance", 1), Opt("queue-bypass", 0),
                                  Opt("queue-cpu-fanout", 0), Opt("fail-open", 0)), _queue_build, "nfqueue"))
_reg(Module("REJECT", "target", (Opt("reject-with", 1),), _reject_build, "reject with a response",
            tables=frozenset({"filter"}), hooks=frozenset({"INPUT", "FORWARD", "OUTPUT"})))
_reg(Module("LOG", "target", (Opt("log-level", 1), Opt("log-prefix", 1)) + tuple(Opt(f, 0) for f in LOG_FLAGS),
            _log_build, "kernel log"))
_reg(Module("NFLOG", "target", (Opt("nflog-group", 1), Opt("nflog-prefix", 1), Opt("nflog-range", 1),
                                Opt("nflog-size", 1), Opt("nflog-threshold", 1)), _nflog_build, "netlink log"))
_reg(Module("MARK", "target", tuple(Opt(n, 1) for n in ("set-xmark", "set-mark", "and-mark", "or-mark",
                                                         "xor-mark")), _mark_target_build, "set packet mark"))
_reg(Module("CONNMARK", "target", tuple(Opt(n, 1) for n in (
    "set-xmark", "set-mark", "and-mark", "or-mark", "xor-mark", "nfmask", "ctmask", "mask", "left-shift-mark",
    "right-shift-mark")) + (Opt("save-mark", 0), Opt("restore-mark", 0)), _connmark_target_build,
    "set connection mark"))
_reg(Module("CT", "target", (Opt("notrack", 0), Opt("helper", 1), Opt("zone", 1), Opt("zone-orig", 1),
                             Opt("zone-reply", 1), Opt("ctevents", 1), Opt("expevents", 1), Opt("timeout", 1)),
            _ct_build, "conntrack template", tables=frozenset({"raw"})))
_reg(Module("NOTRACK", "target", (), _notrack_build, "untrack", tables=frozenset({"raw"})))
_NAT_OPTS = (Opt("random", 0), Opt("random-fully", 0), Opt("persistent", 0))
_reg(Module("SNAT", "target", (Opt("to-source", 1),) + _NAT_OPTS, _snat_dnat("snat"), "source NAT",
            tables=frozenset({"nat"}), hooks=frozenset({"POSTROUTING", "INPUT"})))
_reg(Module("DNAT", "target", (Opt("to-destination", 1),) + _NAT_OPTS, _snat_dnat("dnat"), "destination NAT",
            tables=frozenset({"nat"}), hooks=frozenset({"PREROUTING", "OUTPUT"})))
_reg(Module("MASQUERADE", "target", (Opt("to-ports", 1), Opt("random", 0), Opt("random-fully", 0)),
            _masq_redirect("masquerade"), "masquerade", tables=frozenset({"nat"}),
            hooks=frozenset({"POSTROUTING"})))
_reg(Module("REDIRECT", "target", (Opt("to-ports", 1), Opt("random", 0)), _masq_redirect("redirect"),
            "redirect to the host", tables=frozenset({"nat"}), hooks=frozenset({"PREROUTING", "OUTPUT"})))
_reg(Module("NETMAP", "target", (Opt("to", 1),), _netmap_build, "1:1 network map", tables=frozenset({"nat"})))
_reg(Module("TCPMSS", "target", (Opt("set-mss", 1), Opt("clamp-mss-to-pmtu", 0)), _tcpmss_build,
            "clamp MSS (no-op)"))


def _one_of(ctx: Ctx, v: dict[str, Given], names: tuple[str, ...], target: str) -> Given:
    given = [v[k] for k in names if k in v]
    if len(given) != 1:
        ctx.error(given[1] if len(given) > 1 else None,
                  f"{target} needs exactly one of " + ", ".join("--" + k for k in names))
    return given[0]


def _ttl_target(name: str):
    pre = name.lower()

    def build(ctx: Ctx, v: dict[str, Given]) -> Built:
        g = _one_of(ctx, v, (f"{pre}-set", f"{pre}-dec", f"{pre}-inc"), name)
        n = _uint(ctx, g, g.args[0], 0, 255, name)
        if n == 0 and not g.opt.name.endswith("set"):
            ctx.error(g, f"--{g.opt.name} 0 makes no sense")
        canon = f"--{g.opt.name} {n}"
        return Built([m.Noop(name, canon)], canon)

    return build


def _dscp_target(ctx: Ctx, v: dict[str, Given]) -> Built:
    g = _one_of(ctx, v, ("set-dscp", "set-dscp-class"), "DSCP")
    if g.opt.name == "set-dscp":
        val = _uint(ctx, g, g.args[0], 0, 63, "DSCP")
    else:
        if g.args[0].upper() not in DSCP_CLASSES:
            ctx.error(g, f"unknown DSCP class {g.args[0]!r}")
        val = DSCP_CLASSES[g.args[0].upper()]
    canon = f"--set-dscp 0x{val:02x}"
    return Built([m.Noop("DSCP", canon)], canon)


def _tos_target(ctx: Ctx, v: dict[str, Given]) -> Built:
    g = _one_of(ctx, v, ("set-tos", "and-tos", "or-tos", "xor-tos"), "TOS")
    t = g.args[0]
    if g.opt.name == "set-tos":
        if t in TOS_NAMES:
            val, mask = TOS_NAMES[t], 0x3F
        else:
            val, mask = _value_mask(ctx, g, t, 8)
    else:
        n = _uint(ctx, g, t, 0, 255, "TOS")
        val, mask = {"and-tos": (0, (~n) & 0xFF), "or-tos": (n, n), "xor-tos": (n, 0)}[g.opt.name]
    canon = f"--set-tos 0x{val:02x}/0x{mask:02x}"
    return Built([m.Noop("TOS", canon)], canon)


def _required_noop(name: str, check):
    def build(ctx: Ctx, v: dict[str, Given]) -> Built:
        canon = check(ctx, v)
        return Built([m.Noop(name, canon)], canon)

    return build


def _classify_check(ctx: Ctx, v: dict[str, Given]) -> str:
    g = _one_of(ctx, v, ("set-class",), "CLASSIFY")
    mj, sep, mn = g.args[0].partition(":")
    try:
        a, b = int(mj, 16), int(mn, 16)
    except ValueError:
        ctx.error(g, f"bad class {g.args[0]!r} (MAJOR:MINOR in hex)")
    if not sep or not (0 <= a <= 0xFFFF and 0 <= b <= 0xFFFF):
        ctx.error(g, f"bad class {g.args[0]!r} (MAJOR:MINOR in hex)")
    return f"--set-class {a:04x}:{b:04x}"


def _ecn_check(ctx: Ctx, v: dict[str, Given]) -> str:
    if not v:
        ctx.error(None, "ECN needs an option (--ecn-tcp-remove, --ecn-tcp-cwr, --ecn-tcp-ece, --ecn-ip-ect)")
    parts = []
    if "ecn-tcp-remove" in v:
        parts.append("--ecn-tcp-remove")
    for k, hi in (("ecn-tcp-cwr", 1), ("ecn-tcp-ece", 1), ("ecn-ip-ect", 3)):
        if k in v:
            parts.append(f"--{k} {_uint(ctx, v[k], v[k].args[0], 0, hi)}")
    if any(k.startswith("ecn-tcp") for k in v) and (ctx.proto != IPPROTO_TCP or ctx.proto_inv):
        ctx.error(None, "ECN TCP options need `-p tcp`")
    return " ".join(parts)


def _audit_check(ctx: Ctx, v: dict[str, Given]) -> str:
    g = _one_of(ctx, v, ("type",), "AUDIT")
    if g.args[0] not in ("accept", "drop", "reject"):
        ctx.error(g, f"bad audit type {g.args[0]!r} (accept, drop or reject)")
    return f"--type {g.args[0]}"


def _checksum_check(ctx: Ctx, v: dict[str, Given]) -> str:
    _one_of(ctx, v, ("checksum-fill",), "CHECKSUM")
    return "--checksum-fill"


def _secmark_check(ctx: Ctx, v: dict[str, Given]) -> str:
    g = _one_of(ctx, v, ("selctx",), "SECMARK")
    return f"--selctx {g.args[0]}"


def _connsecmark_check(ctx: Ctx, v: dict[str, Given]) -> str:
    g = _one_of(ctx, v, ("save", "restore"), "CONNSECMARK")
    return f"--{g.opt.name}"


_reg(Module("TTL", "target", (Opt("ttl-set"), Opt("ttl-dec"), Opt("ttl-inc")), _ttl_target("TTL"),
            "set/change TTL (recorded, no effect on decisions)", frozenset({"ip"}), frozenset({"mangle"})))
_reg(Module("HL", "target", (Opt("hl-set"), Opt("hl-dec"), Opt("hl-inc")), _ttl_target("HL"),
            "set/change hop limit (recorded, no effect on decisions)", frozenset({"ip6"}), frozenset({"mangle"})))
_reg(Module("DSCP", "target", (Opt("set-dscp"), Opt("set-dscp-class")), _dscp_target,
            "set DSCP (recorded, no effect on decisions)", tables=frozenset({"mangle"})))
_reg(Module("TOS", "target", (Opt("set-tos"), Opt("and-tos"), Opt("or-tos"), Opt("xor-tos")), _tos_target,
            "set TOS (recorded, no effect on decisions)", tables=frozenset({"mangle"})))
_reg(Module("CLASSIFY", "target", (Opt("set-class"),), _required_noop("CLASSIFY", _classify_check),
            "set tc class (recorded, no effect on decisions)", tables=frozenset({"mangle"}),
            hooks=frozenset({"FORWARD", "OUTPUT", "POSTROUTING"})))
_reg(Module("ECN", "target", (Opt("ecn-tcp-remove", 0), Opt("ecn-tcp-cwr"), Opt("ecn-tcp-ece"), Opt("ecn-ip-ect")),
            _required_noop("ECN", _ecn_check), "ECN bits (recorded, no effect on decisions)", frozenset({"ip"}),
            frozenset({"mangle"})))
_reg(Module("TRACE", "target", (), _required_noop("TRACE", lambda ctx, v: ""),
            "nf_trace (recorded, no effect on decisions)", tables=frozenset({"raw"})))
_reg(Module("AUDIT", "target", (Opt("type"),), _required_noop("AUDIT", _audit_check),
            "audit record (recorded, no effect on decisions)"))
_reg(Module("CHECKSUM", "target", (Opt("checksum-fill", 0),), _required_noop("CHECKSUM", _checksum_check),
            "fill checksum (recorded, no effect on decisions)", tables=frozenset({"mangle"})))
_reg(Module("SECMARK", "target", (Opt("selctx"),), _required_noop("SECMARK", _secmark_check),
            "security mark (recorded, no effect on decisions)", tables=frozenset({"mangle", "security"})))
_reg(Module("CONNSECMARK", "target", (Opt("save", 0), Opt("restore", 0)),
            _required_noop("CONNSECMARK", _connsecmark_check),
            "connection security mark (recorded, no effect on decisions)", tables=frozenset({"mangle", "security"})))

# recognised, not modelled: options are taken as written; the rule is reported as unsupported
UNSUPPORTED: dict[tuple[str, str], str] = {
    ("match", "owner"): "owner match (socket owner of locally generated packets)",
    ("match", "physdev"): "physdev match (bridge ports)",
    ("match", "policy"): "policy match (IPsec policy)",
    ("match", "u32"): "u32 match (raw packet bytes)",
    ("match", "bpf"): "bpf match",
    ("match", "string"): "string match (payload search)",
    ("match", "time"): "time match (wall clock)",
    ("match", "socket"): "socket match",
    ("match", "cgroup"): "cgroup match",
    ("match", "cpu"): "cpu match",
    ("match", "connbytes"): "connbytes match",
    ("match", "connlabel"): "connlabel match",
    ("match", "ipvs"): "ipvs match",
    ("match", "rpfilter"): "rpfilter match",
    ("match", "realm"): "realm match",
    ("match", "esp"): "esp match (SPI)",
    ("match", "ah"): "ah match (SPI)",
    ("match", "ipcomp"): "ipcomp match",
    ("match", "frag"): "frag match (IPv6 fragment header)",
    ("match", "hbh"): "hbh match (IPv6 hop-by-hop header)",
    ("match", "dst"): "dst match (IPv6 destination options)",
    ("match", "rt"): "rt match (IPv6 routing header)",
    ("match", "mh"): "mh match (mobility header)",
    ("match", "ipv6header"): "ipv6header match",
    ("match", "eui64"): "eui64 match",
    ("match", "srh"): "srh match (segment routing header)",
    ("match", "tcpmss"): "tcpmss match (MSS option value)",
    ("match", "osf"): "osf match (OS fingerprint)",
    ("match", "nfacct"): "nfacct match",
    ("match", "rateest"): "rateest match",
    ("match", "cluster"): "cluster match",
    ("match", "devgroup"): "devgroup match",
    ("match", "l2tp"): "l2tp match",
    ("match", "geoip"): "geoip match",
    ("target", "ULOG"): "ULOG target (obsolete)",
    ("target", "TEE"): "TEE target (packet duplication)",
    ("target", "TPROXY"): "TPROXY target",
    ("target", "SET"): "SET target (ipset updates)",
    ("target", "SYNPROXY"): "SYNPROXY target",
    ("target", "HMARK"): "HMARK target",
    ("target", "IDLETIMER"): "IDLETIMER target",
    ("target", "LED"): "LED target",
    ("target", "RATEEST"): "RATEEST target",
    ("target", "TCPOPTSTRIP"): "TCPOPTSTRIP target",
    ("target", "DNPT"): "DNPT target (IPv6 prefix translation)",
    ("target", "SNPT"): "SNPT target (IPv6 prefix translation)",
    ("target", "CLUSTERIP"): "CLUSTERIP target",
    ("target", "MIRROR"): "MIRROR target",
}


def UNSUPPORTED_TARGET_NAMES() -> set[str]:  # noqa: N802
    return {n for (k, n) in UNSUPPORTED if k == "target"}


def lookup(kind: str, name: str) -> Module | None:
    return MODULES.get((kind, name))


def help_text() -> str:
    """One line per supported module, then the recognised-but-unsupported list (for docs and --help)."""
    seen, lines = set(), ["Matches (-m):"]
    for (kind, _name), mod in MODULES.items():
        if kind != "match" or id(mod) in seen:
            continue
        seen.add(id(mod))
        lines.append(f"  {mod.name:<11} {mod.help}: " + " ".join("--" + o.name for o in mod.options))
    lines.append("Targets (-j):")
    for (kind, _name), mod in MODULES.items():
        if kind != "target" or id(mod) in seen:
            continue
        seen.add(id(mod))
        lines.append(f"  {mod.name:<11} {mod.help}: " + " ".join("--" + o.name for o in mod.options))
    lines.append("Recognised, not modelled (reported as unsupported):")
    lines += [f"  {n:<11} {f}" for (k, n), f in UNSUPPORTED.items()]
    return "\n".join(lines)

"""nftables expressions and statements -> model, shared by the text and the JSON front ends.

Both front ends produce rules as lists of libnftables-JSON expression objects (doc/libnftables-json.adoc):
the JSON front end reads them as they are, the text front end builds the same objects while parsing,
except that plain values stay as the words written (`"80-90"`, `"10.0.0.0/8"`, `"0x10"`), which the
type-aware value parser here accepts as well. So one lowering, one set of semantics:

* a payload field adds the implicit dependencies the nft compiler adds (`tcp dport` ->
  `meta l4proto tcp`; `ip saddr` in an inet table -> `meta nfproto ipv4`);
* bitmask types (tcp flags, ct state, ct status) follow doc/data-types.txt: `tcp flags syn` (op "in")
  is "any of these bits", `{ ... }` and `==` are exact values;
* whatever is not modelled becomes model.Unsupported (never silently dropped).
"""

from __future__ import annotations

import ipaddress
import re
import socket
from dataclasses import dataclass, field

from ..addr import V4_MAPPED
from ..codes import (
    CTS_ESTABLISHED,
    CTS_INVALID,
    CTS_NEW,
    CTS_RELATED,
    CTS_UNTRACKED,
    CtStatus,
    Field,
)
from . import model as m


class NftValueError(ValueError):
    """A value that does not parse as its type: carries the offending token."""

    def __init__(self, token, reason: str):
        self.token, self.reason = str(token), reason
        super().__init__(f"{reason} (at {token!r})")


class _Unsup(Exception):
    def __init__(self, feature: str):
        self.feature = feature
        super().__init__(feature)


# ---------------------------------------------------------------- symbolic constants (nft datatypes)
PROTOCOLS = {
    "hopopt": 0, "icmp": 1, "igmp": 2, "ggp": 3, "ipencap": 4, "ipip": 4, "st": 5, "tcp": 6, "egp": 8,
    "igp": 9, "pup": 12, "udp": 17, "hmp": 20, "xns-idp": 22, "rdp": 27, "iso-tp4": 29, "dccp": 33,
    "xtp": 36, "ddp": 37, "idpr-cmtp": 38, "ipv6": 41, "ipv6-route": 43, "ipv6-frag": 44, "idrp": 45,
    "rsvp": 46, "gre": 47, "esp": 50, "ah": 51, "skip": 57, "icmpv6": 58, "ipv6-icmp": 58,
    "ipv6-nonxt": 59, "ipv6-opts": 60, "rspf": 73, "vmtp": 81, "eigrp": 88, "ospf": 89, "ax.25": 93,
    "ipip6": 94, "etherip": 97, "encap": 98, "pim": 103, "ipcomp": 108, "comp": 108, "vrrp": 112,
    "l2tp": 115, "isis": 124, "sctp": 132, "fc": 133, "mobility-header": 135, "udplite": 136,
    "mpls-in-ip": 137, "manet": 138, "hip": 139, "shim6": 140, "wesp": 141, "rohc": 142, "ethernet": 143,
}
SERVICES = {
    "ftp-data": 20, "ftp": 21, "ssh": 22, "telnet": 23, "smtp": 25, "domain": 53, "bootps": 67,
    "bootpc": 68, "tftp": 69, "http": 80, "www": 80, "kerberos": 88, "pop3": 110, "sunrpc": 111,
    "auth": 113, "ntp": 123, "netbios-ns": 137, "netbios-dgm": 138, "netbios-ssn": 139, "imap": 143,
    "imap2": 143, "snmp": 161, "snmp-trap": 162, "bgp": 179, "ldap": 389, "https": 443, "microsoft-ds": 445,
    "isakmp": 500, "syslog": 514, "submission": 587, "ldaps": 636, "rsync": 873, "imaps": 993,
    "pop3s": 995, "openvpn": 1194, "l2tp": 1701, "pptp": 1723, "nfs": 2049, "mysql": 3306,
    "ipsec-nat-t": 4500, "sip": 5060, "postgresql": 5432, "mdns": 5353, "http-alt": 8080,
}
ICMP_TYPES = {
    "echo-reply": 0, "destination-unreachable": 3, "source-quench": 4, "redirect": 5, "echo-request": 8,
    "router-advertisement": 9, "router-solicitation": 10, "time-exceeded": 11, "parameter-problem": 12,
    "timestamp-request": 13, "timestamp-reply": 14, "info-request": 15, "info-reply": 16,
    "address-mask-request": 17, "address-mask-reply": 18,
}
ICMPV6_TYPES = {
    "destination-unreachable": 1, "packet-too-big": 2, "time-exceeded": 3, "parameter-problem": 4,
    "echo-request": 128, "echo-reply": 129, "mld-listener-query": 130, "mld-listener-report": 131,
    "mld-listener-done": 132, "mld-listener-reduction": 132, "nd-router-solicit": 133,
    "nd-router-advert": 134, "nd-neighbor-solicit": 135, "nd-neighbor-advert": 136, "nd-redirect": 137,
    "router-renumbering": 138, "ind-neighbor-solicit": 141, "ind-neighbor-advert": 142,
    "mld2-listener-report": 143,
}
ICMP_CODES = {
    "net-unreachable": 0, "host-unreachable": 1, "prot-unreachable": 2, "port-unreachable": 3,
    "frag-needed": 4, "net-prohibited": 9, "host-prohibited": 10, "admin-prohibited": 13,
}
ICMPV6_CODES = {
    "no-route": 0, "admin-prohibited": 1, "addr-unreachable": 3, "port-unreachable": 4,
    "policy-fail": 5, "reject-route": 6,
}
ICMPX_CODES = {"port-unreachable": 1, "admin-prohibited": 3, "no-route": 0, "host-unreachable": 2}
TCP_FLAGS = {"fin": 0x01, "syn": 0x02, "rst": 0x04, "psh": 0x08, "ack": 0x10, "urg": 0x20, "ecn": 0x40,
             "cwr": 0x80}
CT_STATES = {"invalid": CTS_INVALID, "established": CTS_ESTABLISHED, "related": CTS_RELATED,
             "new": CTS_NEW, "untracked": CTS_UNTRACKED}
CT_STATUS = {"expected": 1 << CtStatus.EXPECTED, "seen-reply": 1 << CtStatus.SEEN_REPLY,
             "assured": 1 << CtStatus.ASSURED, "confirmed": 1 << CtStatus.CONFIRMED,
             "snat": 1 << CtStatus.SRC_NAT, "dnat": 1 << CtStatus.DST_NAT,
             "dying": 1 << CtStatus.DYING}
CT_DIRS = {"original": 0, "reply": 1}
PKTTYPES = {"host": 0, "unicast": 0, "broadcast": 1, "multicast": 2, "other": 3}
NFPROTOS = {"ipv4": 2, "ipv6": 10}
ETHERTYPES = {"ip": 0x0800, "ip6": 0x86DD, "arp": 0x0806, "vlan": 0x8100, "8021q": 0x8100, "8021ad": 0x88A8}
IFTYPES = {"ether": 1, "ppp": 512, "ipip": 768, "ipip6": 769, "loopback": 772, "sit": 776, "ipgre": 778}
DSCP = {"cs0": 0, "cs1": 8, "cs2": 16, "cs3": 24, "cs4": 32, "cs5": 40, "cs6": 48, "cs7": 56, "df": 0,
        "be": 0, "lephb": 1, "af11": 10, "af12": 12, "af13": 14, "af21": 18, "af22": 20, "af23": 22,
        "af31": 26, "af32": 28, "af33": 30, "af41": 34, "af42": 36, "af43": 38, "va": 44, "ef": 46}
ECN = {"not-ect": 0, "ect1": 1, "ect0": 2, "ce": 3}
CT_HELPERS = {"ftp": 1}
FIB_TYPES = {"unspec": "UNSPEC", "unicast": "UNICAST", "local": "LOCAL", "broadcast": "BROADCAST",
             "anycast": "ANYCAST", "multicast": "MULTICAST", "blackhole": "BLACKHOLE",
             "unreachable": "UNREACHABLE", "prohibit": "PROHIBIT", "throw": "THROW", "nat": "NAT",
             "xresolve": "XRESOLVE"}
LOG_LEVELS = {"emerg": 0, "alert": 1, "crit": 2, "err": 3, "warn": 4, "warning": 4, "notice": 5,
              "info": 6, "debug": 7}
TIME_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400, "week": 604800}
BYTE_UNITS = {"bytes": 1, "kbytes": 1024, "mbytes": 1024 ** 2, "gbytes": 1024 ** 3}
VERDICTS = ("accept", "drop", "continue", "return", "jump", "goto", "queue")


# ---------------------------------------------------------------- datatypes
@dataclass(frozen=True)
class Dtype:
    name: str
    bits: int
    symbols: dict | None = None
    bitmask: bool = False
    field: Field | None = None  # representative Field for set key types


def _d(name, bits, symbols=None, bitmask=False, fld=None):
    return Dtype(name, bits, symbols, bitmask, fld)


DTYPES = {d.name: d for d in (
    _d("ipv4_addr", 128, fld=Field.SRC), _d("ipv6_addr", 128, fld=Field.SRC),
    _d("inet_service", 16, SERVICES, fld=Field.DPORT), _d("inet_proto", 8, PROTOCOLS, fld=Field.PROTO),
    _d("tcp_flag", 8, TCP_FLAGS, True, Field.TCP_FLAGS), _d("ct_state", 32, CT_STATES, True, Field.CT_STATE),
    _d("ct_status", 32, CT_STATUS, True, Field.CT_STATUS), _d("ct_dir", 8, CT_DIRS, fld=Field.CT_DIR),
    _d("mark", 32, fld=Field.MARK), _d("ifname", 128, fld=Field.IIF), _d("pkt_type", 8, PKTTYPES, fld=Field.PKTTYPE),
    _d("nf_proto", 8, NFPROTOS, fld=Field.NFPROTO), _d("ether_type", 16, ETHERTYPES, fld=Field.NFPROTO),
    _d("icmp_type", 8, ICMP_TYPES, fld=Field.ICMP_TYPE), _d("icmpv6_type", 8, ICMPV6_TYPES, fld=Field.ICMP_TYPE),
    _d("icmp_code", 8, ICMP_CODES, fld=Field.ICMP_CODE), _d("icmpv6_code", 8, ICMPV6_CODES, fld=Field.ICMP_CODE),
    _d("icmpx_code", 8, ICMPX_CODES, fld=Field.ICMP_CODE),
    _d("ether_addr", 48, fld=Field.ETH_SRC), _d("dscp", 6, DSCP, fld=Field.DSCP), _d("ecn", 2, ECN, fld=Field.TOS),
    _d("iface_type", 16, IFTYPES, fld=Field.IIFTYPE), _d("ct_helper", 8, CT_HELPERS, fld=Field.CT_HELPER),
    _d("time", 32, fld=Field.CT_EXPIRE), _d("iface_index", 32, fld=Field.IIF),
    _d("integer", 32, fld=Field.NUMGEN), _d("u8", 8), _d("u16", 16), _d("u32", 32), _d("zone", 16, fld=Field.CT_ZONE),
    _d("verdict", 32),
)}


@dataclass(frozen=True)
class Key:
    """What a left-hand expression reads: model Field (or iface/fib), datatype, dependencies."""

    field: Field | None
    dtype: Dtype
    deps: tuple = ()
    kind: str = "field"  # "field" | "iface" | "fib"
    offset: int = 0  # value offset (ip6 length: ctx LEN = payload length + 40)
    fib: tuple = ()
    pre: tuple = ()  # expressions to run first (numgen)
    family: int = 0  # 4/6 for address fields


_TRANSPORT = {"tcp": 6, "udp": 17, "udplite": 136, "sctp": 132, "dccp": 33, "icmp": 1, "icmpv6": 58}
_PAYLOAD = {
    ("ip", "saddr"): (Field.SRC, "ipv4_addr"), ("ip", "daddr"): (Field.DST, "ipv4_addr"),
    ("ip", "protocol"): (Field.PROTO, "inet_proto"), ("ip", "ttl"): (Field.TTL, "u8"),
    ("ip", "length"): (Field.LEN, "u16"), ("ip", "dscp"): (Field.DSCP, "dscp"),
    ("ip", "id"): (Field.IP_ID, "u16"),
    ("ip6", "saddr"): (Field.SRC, "ipv6_addr"), ("ip6", "daddr"): (Field.DST, "ipv6_addr"),
    ("ip6", "nexthdr"): (Field.PROTO, "inet_proto"), ("ip6", "hoplimit"): (Field.TTL, "u8"),
    ("ip6", "length"): (Field.LEN, "u16"), ("ip6", "dscp"): (Field.DSCP, "dscp"),
    ("tcp", "flags"): (Field.TCP_FLAGS, "tcp_flag"), ("tcp", "window"): (Field.TCP_WIN, "u16"),
    ("icmp", "type"): (Field.ICMP_TYPE, "icmp_type"), ("icmp", "code"): (Field.ICMP_CODE, "icmp_code"),
    ("icmp", "id"): (Field.ICMP_ID, "u16"),
    ("icmpv6", "type"): (Field.ICMP_TYPE, "icmpv6_type"), ("icmpv6", "code"): (Field.ICMP_CODE, "icmpv6_code"),
    ("icmpv6", "id"): (Field.ICMP_ID, "u16"),
    ("ether", "saddr"): (Field.ETH_SRC, "ether_addr"), ("ether", "daddr"): (Field.ETH_DST, "ether_addr"),
    ("ether", "type"): (Field.NFPROTO, "ether_type"), ("vlan", "id"): (Field.VLAN_ID, "u16"),
}
for _p in ("tcp", "udp", "udplite", "sctp", "th"):
    _PAYLOAD[(_p, "sport")] = (Field.SPORT, "inet_service")
    _PAYLOAD[(_p, "dport")] = (Field.DPORT, "inet_service")

_META = {
    "l4proto": (Field.PROTO, "inet_proto"), "nfproto": (Field.NFPROTO, "nf_proto"),
    "protocol": (Field.NFPROTO, "ether_type"), "mark": (Field.MARK, "mark"),
    "pkttype": (Field.PKTTYPE, "pkt_type"), "length": (Field.LEN, "u32"), "iiftype": (Field.IIFTYPE, "iface_type"),
}
_CT = {
    "state": (Field.CT_STATE, "ct_state"), "status": (Field.CT_STATUS, "ct_status"),
    "direction": (Field.CT_DIR, "ct_dir"), "mark": (Field.CT_MARK, "mark"), "zone": (Field.CT_ZONE, "zone"),
    "helper": (Field.CT_HELPER, "ct_helper"), "expiration": (Field.CT_EXPIRE, "time"),
    "l3proto": (Field.CT_L3PROTO, "nf_proto"), "protocol": (Field.CT_PROTO, "inet_proto"),
}
_CT_DIR_FIELDS = {
    ("original", "saddr"): Field.CT_ORIG_SRC, ("original", "daddr"): Field.CT_ORIG_DST,
    ("reply", "saddr"): Field.CT_REPLY_SRC, ("reply", "daddr"): Field.CT_REPLY_DST,
    ("original", "proto-src"): Field.CT_ORIG_SPORT, ("original", "proto-dst"): Field.CT_ORIG_DPORT,
    ("reply", "proto-src"): Field.CT_REPLY_SPORT, ("reply", "proto-dst"): Field.CT_REPLY_DPORT,
}
# unqualified meta keys (`mark`, `iifname` without `meta`), nft's meta_key_unqualified
META_UNQUALIFIED = ("mark", "iif", "iifname", "iiftype", "oif", "oifname", "oiftype", "skuid", "skgid",
                    "nftrace", "rtclassid", "ibriport", "obriport", "ibrname", "obrname", "pkttype", "cpu",
                    "iifgroup", "oifgroup", "cgroup", "time", "day", "hour")


def family_num(table_family: str) -> int:
    return {"ip": 4, "ip6": 6}.get(table_family, 0)


# ---------------------------------------------------------------- values
_INT_RE = re.compile(r"^(0x[0-9a-fA-F]+|[0-9]+)$")
_TIME_RE = re.compile(r"^(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$")


def parse_int(v, dt: Dtype | None = None) -> int:
    if isinstance(v, bool):
        raise NftValueError(v, "not a number")
    if isinstance(v, int):
        return v
    s = str(v).strip()
    if _INT_RE.match(s):
        return int(s, 0)
    if dt is not None and dt.symbols and s in dt.symbols:
        return dt.symbols[s]
    raise NftValueError(v, f"not a valid {dt.name if dt else 'number'}")


def parse_time_s(v) -> int:
    """'1m30s' / '10s' / int seconds -> seconds (ms rounded down)."""
    if isinstance(v, int):
        return v
    s = str(v)
    if s.isdigit():
        return int(s)
    mt = _TIME_RE.match(s)
    if not s or not mt or not any(mt.groups()):
        raise NftValueError(v, "not a valid time")
    d, h, mi, se, ms = (int(x or 0) for x in mt.groups())
    return d * 86400 + h * 3600 + mi * 60 + se + ms // 1000


def _addr(v, dt: Dtype) -> tuple[int, int]:
    s = str(v).strip()
    if s.startswith("["):
        s = s[1:].replace("]", "", 1)
    try:
        if "/" in s:
            net = ipaddress.ip_network(s, strict=False)
            lo, hi, ver = int(net.network_address), int(net.broadcast_address), net.version
        else:
            a = ipaddress.ip_address(s)
            lo = hi = int(a)
            ver = a.version
    except ValueError:
        raise NftValueError(v, f"not a valid {'IPv4' if dt.name == 'ipv4_addr' else 'IPv6'} address") from None
    if (ver == 4) != (dt.name == "ipv4_addr"):
        raise NftValueError(v, f"address family does not match {dt.name}")
    if ver == 4:
        return V4_MAPPED | lo, V4_MAPPED | hi
    return lo, hi


def _mac(v) -> int:
    s = str(v)
    parts = s.split(":")
    if len(parts) != 6 or not all(re.fullmatch(r"[0-9a-fA-F]{1,2}", p) for p in parts):
        raise NftValueError(v, "not a valid Ethernet address")
    return int("".join(p.zfill(2) for p in parts), 16)


def ifname_int(name: str) -> int:
    """Interface name as the 16-byte big-endian integer nft stores in ifname sets (elements in SetDef)."""
    return int.from_bytes(name.encode()[:16].ljust(16, b"\0"), "big")


def scalar(v, dt: Dtype) -> tuple[int, int]:
    """One value of dtype dt (no sets) -> closed interval (prefixes and ranges allowed)."""
    if isinstance(v, dict):
        if "range" in v:
            a, b = v["range"]
            return scalar(a, dt)[0], scalar(b, dt)[1]
        if "prefix" in v:
            p = v["prefix"]
            return scalar(f"{p['addr']}/{p['len']}", dt)
        if "|" in v:
            acc = 0
            for x in v["|"]:
                acc |= scalar(x, dt)[0]
            return acc, acc
        raise _Unsup(f"value expression {next(iter(v))}")
    if isinstance(v, list):  # flag list with exact compare
        acc = 0
        for x in v:
            acc |= scalar(x, dt)[0]
        return acc, acc
    if dt.name in ("ipv4_addr", "ipv6_addr"):
        s = str(v)
        if "-" in s and "/" not in s:
            a, b = s.split("-", 1)
            return _addr(a, dt)[0], _addr(b, dt)[1]
        return _addr(s, dt)
    if dt.name == "ifname" or dt.name == "iface_index" and isinstance(v, str) and not _INT_RE.match(v):
        return ifname_int(str(v)), ifname_int(str(v))
    if dt.name == "ether_addr":
        s = str(v)
        if "-" in s:
            a, b = s.split("-", 1)
            return _mac(a), _mac(b)
        x = _mac(s)
        return x, x
    if dt.name == "time":
        s = str(v)
        if "-" in s:
            a, b = s.split("-", 1)
            return parse_time_s(a), parse_time_s(b)
        t = parse_time_s(v)
        return t, t
    if dt.name == "ct_helper" and str(v) not in CT_HELPERS:
        raise _Unsup(f"ct helper {v} (only ftp is modelled)")
    if isinstance(v, str):
        s = v.strip()
        if dt.symbols and s in dt.symbols:
            x = dt.symbols[s]
            return x, x
        if "-" in s and not s.startswith("-"):
            a, b = s.split("-", 1)
            return scalar(a, dt)[0], scalar(b, dt)[1]
        if dt.name == "inet_service" and not _INT_RE.match(s):
            try:
                x = socket.getservbyname(s)
                return x, x
            except OSError:
                pass
        if dt.name == "inet_proto" and not _INT_RE.match(s):
            try:
                x = socket.getprotobyname(s)
                return x, x
            except OSError:
                pass
        if "/" in s:
            raise _Unsup(f"prefix on {dt.name}")
    x = parse_int(v, dt)
    if x < 0 or x >= (1 << dt.bits):
        raise NftValueError(v, f"value out of range for {dt.name}")
    return x, x


def _merge(iv: list[tuple[int, int]]) -> tuple[tuple[int, int], ...]:
    return tuple(sorted(set(iv)))


# ---------------------------------------------------------------- lowering context
@dataclass
class SetInfo:
    name: str
    dtypes: tuple[Dtype, ...]
    data_dtype: Dtype | None = None
    is_map: bool = False
    flags: frozenset = frozenset()
    elements: list = field(default_factory=list)
    data: list = field(default_factory=list)
    names: list = field(default_factory=list)  # raw element strings (ifname sets)
    source: m.SourceRef | None = None

    def to_def(self) -> m.SetDef:
        """Elements sorted (a set has no order; nft lists them in hash order); flag "dynamic" dropped
        (nft -j does not print it; sets filled by add/update statements are unsupported anyway)."""
        order = sorted(range(len(self.elements)), key=lambda k: self.elements[k])
        return m.SetDef(name=self.name,
                        key_fields=tuple(d.field if d.field is not None else Field.NUMGEN for d in self.dtypes),
                        elements=tuple(self.elements[k] for k in order),
                        data=tuple(self.data[k] for k in order) if self.is_map else None,
                        flags=self.flags - {"dynamic"}, source=self.source)


def dtype_named(name: str) -> Dtype:
    if name in DTYPES:
        return DTYPES[name]
    if name in ("verdict",):
        return DTYPES["verdict"]
    raise _Unsup(f"set type {name}")


class TableContext:
    """Per table: family, sets (named + anonymous), ct helper objects."""

    def __init__(self, family: str):
        self.family = family
        self.fam = family_num(family)
        self.sets: dict[str, SetInfo] = {}
        self.helpers: dict[str, str] = {}  # object name -> helper type ("ftp")
        self.objects: dict[tuple[str, str], dict | None] = {}  # ("quota"|"limit", name) -> spec (None: unmodelled)
        self.unsupported_sets: set[str] = set()  # declared with a type or attribute not modelled
        self._anon = 0

    def anon_name(self, kind: str) -> str:
        name = f"__{kind}{self._anon}"
        self._anon += 1
        return name

    def fill_set(self, info: SetInfo, elems) -> None:
        """Parse set/map elements (JSON form: list; map elements [key, data]) into info."""
        for e in elems or ():
            if isinstance(e, dict) and "elem" in e:  # {"elem": {"val": ..., "timeout":..., "counter":...}}
                e = e["elem"].get("val")
            if info.is_map:
                if not (isinstance(e, list) and len(e) == 2):
                    raise NftValueError(e, "map element must be key : value")
                k, d = e
                if isinstance(k, dict) and "elem" in k:
                    k = k["elem"].get("val")
                info.elements.append(self._key_intervals(k, info))
                info.data.append(self._data_value(d, info))
            else:
                info.elements.append(self._key_intervals(e, info))

    def _key_intervals(self, k, info: SetInfo) -> tuple:
        if isinstance(k, str) and k == "*":
            return tuple((0, (1 << d.bits) - 1) for d in info.dtypes)
        if isinstance(k, dict) and "concat" in k:
            parts = k["concat"]
            if len(parts) != len(info.dtypes):
                raise NftValueError(k, "element does not match the set's concatenation")
            return tuple(scalar(p, d) for p, d in zip(parts, info.dtypes))
        if len(info.dtypes) != 1:
            raise NftValueError(k, "element does not match the set's concatenation")
        if info.dtypes[0].name == "ifname":
            info.names.append(str(k))
        return (scalar(k, info.dtypes[0]),)

    def _data_value(self, d, info: SetInfo):
        dt = info.data_dtype
        if dt is not None and dt.name == "verdict":
            return verdict(d)
        if isinstance(d, dict) and "concat" in d:
            raise _Unsup("map data concatenation")
        lo, hi = scalar(d, dt)
        return lo if lo == hi else (lo, hi)


def verdict(d) -> m.Verdict:
    """{"accept": null} / {"jump": {"target": "x"}} / text-form {"verdict": "accept"} -> model.Verdict."""
    if isinstance(d, str):
        d = {d: None}
    if not isinstance(d, dict) or len(d) != 1:
        raise NftValueError(d, "not a verdict")
    k, v = next(iter(d.items()))
    if k in ("accept", "drop", "continue", "return"):
        return m.Verdict(k)
    if k in ("jump", "goto"):
        return m.Verdict(k, chain=v["target"] if isinstance(v, dict) else str(v))
    if k == "queue":
        return _queue(v or {})
    raise NftValueError(k, "not a verdict")


def _queue(v: dict) -> m.Verdict:
    num = v.get("num", 0)
    if isinstance(num, dict) and "range" in num:
        num = num["range"][0]
    flags = v.get("flags") or []
    if isinstance(flags, str):
        flags = [flags]
    n = parse_int(num)
    if not 0 <= n <= 65535:
        raise NftValueError(num, "queue number out of range")
    return m.Verdict("queue", queue_num=n, bypass="bypass" in flags)


# ---------------------------------------------------------------- rule lowering
class RuleLowering:
    """Lower one rule's expression list. Unsupported statements become model.Unsupported in place."""

    def __init__(self, ctx: TableContext):
        self.ctx = ctx

    # -- left-hand keys
    def key(self, e) -> Key:
        if not isinstance(e, dict) or len(e) != 1:
            raise NftValueError(e, "not an expression")
        k, v = next(iter(e.items()))
        fam = self.ctx.fam
        if k == "payload":
            if "protocol" not in v:
                raise _Unsup("raw payload expression")
            proto, fld = v["protocol"], v["field"]
            if (proto, fld) == ("ip", "ecn") or (proto, fld) == ("ip6", "ecn"):
                raise _Unsup(f"{proto} ecn")
            if (proto, fld) not in _PAYLOAD:
                raise _Unsup(f"payload {proto} {fld}")
            f, dt = _PAYLOAD[(proto, fld)]
            deps: list = []
            if proto in ("ip", "ip6"):
                want = 4 if proto == "ip" else 6
                if fam and fam != want:
                    deps.append(m.Never(f"{proto} header in an {self.ctx.family} table"))
                elif fam == 0:
                    deps.append(m.FieldIn(Field.NFPROTO, ((2, 2),) if want == 4 else ((10, 10),)))
            if proto in _TRANSPORT:
                p = _TRANSPORT[proto]
                if proto == "dccp":
                    raise _Unsup("dccp header")
                deps.append(m.FieldIn(Field.PROTO, ((p, p),)))
            afam = 4 if dt == "ipv4_addr" else 6 if dt == "ipv6_addr" else 0
            return Key(f, DTYPES[dt], tuple(deps), offset=40 if (proto, fld) == ("ip6", "length") else 0,
                       family=afam)
        if k == "meta":
            key = v["key"]
            if key in ("iifname", "oifname", "iif", "oif"):
                return Key(Field.IIF if key.startswith("i") else Field.OIF, DTYPES["ifname"], kind="iface")
            if key not in _META:
                raise _Unsup(f"meta {key}")
            f, dt = _META[key]
            return Key(f, DTYPES[dt])
        if k == "ct":
            key, d = v["key"], v.get("dir")
            fam_q = None
            if " " in key:  # "ip saddr" / "ip6 daddr"
                fam_q, key = key.split(" ", 1)
            if v.get("family"):
                fam_q = v["family"]
            if key in ("saddr", "daddr", "proto-src", "proto-dst"):
                if d not in ("original", "reply"):
                    raise _Unsup(f"ct {key} without direction")
                f = _CT_DIR_FIELDS[(d, key)]
                if key.startswith("proto"):
                    return Key(f, DTYPES["inet_service"])
                if fam_q is None:
                    fam_q = {4: "ip", 6: "ip6"}.get(fam)
                if fam_q is None:
                    raise _Unsup(f"ct {d} {key} without ip/ip6")
                deps = ()
                want = 4 if fam_q == "ip" else 6
                if fam == 0:
                    deps = (m.FieldIn(Field.CT_L3PROTO, ((2, 2),) if want == 4 else ((10, 10),)),)
                elif fam != want:
                    deps = (m.Never(f"ct {fam_q} address in an {self.ctx.family} table"),)
                return Key(f, DTYPES["ipv4_addr" if want == 4 else "ipv6_addr"], deps, family=want)
            if d is not None and key not in ("l3proto", "protocol"):
                raise _Unsup(f"ct {d} {key}")
            if key not in _CT:
                raise _Unsup(f"ct {key}")
            f, dt = _CT[key]
            return Key(f, DTYPES[dt])
        if k == "fib":
            flags = v.get("flags") or []
            if isinstance(flags, str):
                flags = [flags]
            if v.get("result") != "type":
                raise _Unsup(f"fib {' . '.join(flags)} {v.get('result')} (needs a routing model)")
            which = "src" if "saddr" in flags else "dst"
            if "mark" in flags:
                raise _Unsup("fib with mark")
            lim = "in" if "iif" in flags else "out" if "oif" in flags else None
            return Key(None, DTYPES["u32"], kind="fib", fib=(which, lim))
        if k == "numgen":
            mode = v.get("mode", "inc")
            st = m.Stateful("numgen", (("mode", mode), ("mod", parse_int(v["mod"])),
                                       ("offset", parse_int(v.get("offset", 0)))))
            return Key(Field.NUMGEN, DTYPES["integer"], pre=(st,))
        if k in ("&", "|", "^", "<<", ">>"):
            raise _Unsup("binary operation on a concatenation or key")
        raise _Unsup(f"{k} expression")

    # -- matches
    def match(self, mt: dict) -> list:
        op, left, right = mt.get("op", "=="), mt["left"], mt["right"]
        mask = None
        if isinstance(left, dict) and "&" in left:
            lft, mval = left["&"]
            if isinstance(lft, dict) and "&" in lft:
                raise _Unsup("nested bitwise expression")
            mask, left = mval, lft
        if isinstance(left, dict) and any(x in left for x in ("|", "^", "<<", ">>")):
            raise _Unsup(f"bitwise {next(iter(left))} on a key")
        if isinstance(left, dict) and "concat" in left:
            keys = [self.key(x) for x in left["concat"]]
            return self._concat_match(keys, op, right)
        key = self.key(left)
        out = list(key.deps) + list(key.pre)
        if key.kind == "iface":
            out.append(self._iface(key, op, right))
            return out
        if key.kind == "fib":
            out.append(self._fib(key, op, right))
            return out
        dt, f = key.dtype, key.field
        if mask is not None:
            out.append(self._masked(key, op, mask, right))
            return out
        if dt.name == "ether_type":  # meta protocol / ether type: IP hooks see only IPv4 (2) and IPv6 (10)
            if op not in ("==", "!=", "in") or isinstance(right, str) and right.startswith("@"):
                raise _Unsup(f"ether type compare with {op}")
            vals = right["set"] if isinstance(right, dict) and "set" in right else [right]
            ets = [scalar(x, dt) for x in vals]
            nf = tuple(sorted({p for lo, hi in ets for e, p in ((0x0800, 2), (0x86DD, 10)) if lo <= e <= hi}))
            out.append(m.FieldIn(Field.NFPROTO, tuple((p, p) for p in nf), negate=op == "!="))
            return out
        if isinstance(right, str) and right.startswith("@"):
            name = right[1:]
            info = self.ctx.sets.get(name)
            if info is None:
                self._unknown_set(right)
            self._check_set_types(right, (dt,))
            out.append(m.SetMatch((f,), name, negate=op == "!="))
            return out
        if isinstance(right, dict) and "set" in right:
            if dt.name == "verdict":
                raise NftValueError(right, "bad set")
            iv = [self._offset(key, scalar(x, dt)) for x in right["set"]]
            out.append(m.FieldIn(f, _merge(iv), negate=op == "!="))
            return out
        if op == "!":  # nft "!" : (x & value) == 0
            bits = scalar(right if isinstance(right, list) else [right], dt)[0] if dt.bitmask \
                else scalar(right, dt)[0]
            out.append(m.Masked(f, bits, 0, op="any", negate=True))
            return out
        if dt.bitmask and (op == "in" or (op == "!=" and isinstance(right, list))):
            bits = scalar(right if isinstance(right, list) else [right], dt)[0]
            out.append(m.Masked(f, bits, 0, op="any", negate=op == "!="))
            return out
        lo, hi = self._offset(key, scalar(right, dt))
        top = (1 << dt.bits) - 1
        if dt.name in ("ipv4_addr",):
            top = V4_MAPPED | 0xFFFFFFFF
        bottom = V4_MAPPED if dt.name == "ipv4_addr" else 0
        if op in ("==", "in"):
            out.append(m.FieldIn(f, ((lo, hi),)))
        elif op == "!=":
            out.append(m.FieldIn(f, ((lo, hi),), negate=True))
        elif op in ("<", "lt"):
            out.append(m.FieldIn(f, ((bottom, lo - 1),)) if lo > bottom else m.Never(f"{f.name} < minimum"))
        elif op in ("<=", "le"):
            out.append(m.FieldIn(f, ((bottom, hi),)))
        elif op in (">", "gt"):
            out.append(m.FieldIn(f, ((hi + 1, top + key.offset),)) if hi < top + key.offset
                       else m.Never(f"{f.name} > maximum"))
        elif op in (">=", "ge"):
            out.append(m.FieldIn(f, ((lo, top + key.offset),)))
        else:
            raise NftValueError(op, "unknown relational operator")
        return out

    _CANON = frozenset({"ipv4_addr", "ipv6_addr", "inet_service", "inet_proto", "ether_addr", "mark", "ct_state"})

    def _check_set_types(self, ref: str, dts: tuple) -> None:
        info = self.ctx.sets.get(ref[1:])
        if info is None or len(info.dtypes) != len(dts):
            if info is not None:
                raise NftValueError(ref, "set key does not match the expression's concatenation")
            return
        for a, b in zip(info.dtypes, dts):
            if a.name != b.name and a.name in self._CANON and b.name in self._CANON:
                raise NftValueError(ref, f"datatype mismatch: set has {a.name}, expression is {b.name}")

    def _unknown_set(self, ref: str):
        if ref[1:] in self.ctx.unsupported_sets:
            raise _Unsup(f"lookup in set {ref} of an unmodelled type")
        raise NftValueError(ref, "unknown set")

    @staticmethod
    def _offset(key: Key, iv):
        return (iv[0] + key.offset, iv[1] + key.offset) if key.offset else iv

    def _masked(self, key: Key, op, mask, right) -> m.Match:
        dt, f = key.dtype, key.field
        if dt.name in ("ipv4_addr", "ipv6_addr"):
            def addr_or_int(x):
                if isinstance(x, int) or _INT_RE.match(str(x)):
                    n = parse_int(x)
                    return (V4_MAPPED | (n & 0xFFFFFFFF)) if dt.name == "ipv4_addr" else n
                return scalar(x, dt)[0]
            mk = addr_or_int(mask)
            if dt.name == "ipv4_addr":
                mk = (mk & 0xFFFFFFFF) | ((1 << 128) - (1 << 32))
            val = addr_or_int(right)
            if op not in ("==", "!="):
                raise _Unsup(f"address mask with {op}")
            return m.AddrMasked(f, mk, val & mk, negate=op == "!=")
        mk = scalar(mask, dt)[0]
        if isinstance(right, dict) and "set" in right:
            raise _Unsup("masked value compared to a set")
        val = scalar(right, dt)[0]
        if op in ("==", "in"):
            return m.Masked(f, mk, val & mk)
        if op == "!=":
            if val == 0:
                return m.Masked(f, mk, 0, op="any")
            return m.Masked(f, mk, val & mk, negate=True)
        raise _Unsup(f"masked compare with {op}")

    def _iface(self, key: Key, op, right) -> m.Match:
        neg = op == "!="
        if op not in ("==", "!=", "in"):
            raise _Unsup(f"interface compare with {op}")
        if isinstance(right, dict) and "set" in right:
            names = tuple(str(x) for x in right["set"])
        elif isinstance(right, str) and right.startswith("@"):
            info = self.ctx.sets.get(right[1:])
            if info is None:
                self._unknown_set(right)
            if "dynamic" in info.flags or "timeout" in info.flags:
                raise _Unsup("interface name lookup in a dynamic set")
            names = tuple(info.names)
        elif isinstance(right, (str, int)):
            names = (str(right),)
        else:
            raise NftValueError(right, "not an interface name")
        if any(str(n) == "" for n in names):
            raise NftValueError('""', "empty interface name")
        names = tuple(sorted(n[:-1] + "*" if n.endswith("\\*") else n for n in names))
        return m.Iface(key.field, names, negate=neg)

    def _fib(self, key: Key, op, right) -> m.Match:
        which, lim = key.fib
        vals = right["set"] if isinstance(right, dict) and "set" in right else \
            right if isinstance(right, list) else [right]
        types = []
        for x in vals:
            if x not in FIB_TYPES:
                raise NftValueError(x, "not a fib address type")
            types.append(FIB_TYPES[x])
        if op not in ("==", "!=", "in"):
            raise _Unsup(f"fib type with {op}")
        return m.AddrType(which, frozenset(types), negate=op == "!=", limit_iface=lim)

    def _concat_match(self, keys: list[Key], op, right) -> list:
        for kk in keys:
            if kk.kind != "field":
                raise _Unsup("concatenation with interface names or fib")
        out = [d for kk in keys for d in kk.deps + kk.pre]
        fields = tuple(kk.field for kk in keys)
        if isinstance(right, str) and right.startswith("@"):
            if right[1:] not in self.ctx.sets:
                self._unknown_set(right)
            self._check_set_types(right, tuple(kk.dtype for kk in keys))
            out.append(m.SetMatch(fields, right[1:], negate=op == "!="))
            return out
        elems = right["set"] if isinstance(right, dict) and "set" in right else [right]
        info = SetInfo(self.ctx.anon_name("set"), tuple(kk.dtype for kk in keys), flags=frozenset({"anonymous"}))
        for e in elems:
            if not (isinstance(e, dict) and "concat" in e):
                raise NftValueError(e, "element does not match the concatenation")
            parts = e["concat"]
            if len(parts) != len(keys):
                raise NftValueError(e, "element does not match the concatenation")
            info.elements.append(tuple(self._offset(kk, scalar(p, kk.dtype)) for p, kk in zip(parts, keys)))
        self.ctx.sets[info.name] = info
        out.append(m.SetMatch(fields, info.name, negate=op == "!="))
        return out

    # -- statements
    def statement(self, st) -> list:
        if not isinstance(st, dict) or len(st) != 1:
            raise _Unsup(f"statement nft printed without a JSON form ({str(st)[:40]})")
        k, v = next(iter(st.items()))
        if k in ("counter", "limit", "quota", "ct helper") and isinstance(v, dict) and "map" in v:
            raise _Unsup(f"{k} from a map lookup")
        if k == "match":
            return self.match(v)
        if k in ("accept", "drop", "continue", "return", "jump", "goto"):
            return [verdict(st)]
        if k == "queue":
            return [_queue(v or {})]
        if k == "counter":
            if isinstance(v, dict) and v and not ({"packets", "bytes"} & v.keys()):
                raise _Unsup(f"counter {next(iter(v))}")
            if isinstance(v, str) and ("counter", v) not in self.ctx.objects:
                raise NftValueError(v, "unknown counter object")
            return [m.Counter()]
        if k == "log":
            return [self._log(v or {})]
        if k == "limit":
            return [self._limit(v)]
        if k == "quota":
            return [self._quota(v)]
        if k == "reject":
            return [self._reject(v or {})]
        if k == "notrack":
            return [m.CtSet(notrack=True)]
        if k in ("snat", "dnat", "masquerade", "redirect"):
            return [self._nat(k, v or {})]
        if k == "mangle":
            return [self._mangle(v)]
        if k == "ct helper":
            name = v if isinstance(v, str) else v.get("name")
            helper = self.ctx.helpers.get(name)
            if helper is None:
                raise NftValueError(name, "unknown ct helper object")
            return [m.CtSet(helper=helper)]
        if k == "vmap":
            return self._vmap(v)
        if k == "unsupported":  # from the text parser: a construct it skipped
            raise _Unsup(v["feature"])
        if k == "xt":
            raise _Unsup(f"xt {v.get('type', '')} {v.get('name', '')} (iptables-nft extension)".strip())
        raise _Unsup(f"{k} statement")

    def _log(self, v: dict) -> m.Log:
        level = v.get("level", "warn")
        if level == "audit":
            raise _Unsup("log level audit")
        lv = LOG_LEVELS.get(level) if isinstance(level, str) else int(level)
        if lv is None:
            raise NftValueError(level, "not a log level")
        flags = v.get("flags") or []
        if isinstance(flags, str):
            flags = [flags]
        if "group" in v:
            if "level" in v:
                raise NftValueError(v["level"], "log level cannot be used with log group")
            return m.Log("nflog", prefix=v.get("prefix", ""), level=lv, group=parse_int(v["group"]),
                         flags=tuple(flags))
        return m.Log("log", prefix=v.get("prefix", ""), level=lv, flags=tuple(flags))

    def _limit(self, v) -> m.Stateful:
        if isinstance(v, str):
            if ("limit", v) not in self.ctx.objects:
                raise NftValueError(v, "unknown limit object")
            obj = self.ctx.objects[("limit", v)]
            if obj is None:
                raise _Unsup(f"limit object {v}")
            v = obj
        per = v.get("per", "second")
        if per not in TIME_UNITS:
            raise NftValueError(per, "not a time unit")
        rate = parse_int(v["rate"])
        unit = v.get("rate_unit", "packets")
        is_bytes = unit != "packets"
        if is_bytes:
            rate *= BYTE_UNITS[unit]
        burst = parse_int(v.get("burst", 0))
        if is_bytes:
            burst *= BYTE_UNITS.get(v.get("burst_unit", "bytes"), 1)
        elif burst == 0:
            burst = 5
        return m.Stateful("limit", (("rate_num", rate), ("rate_den_s", TIME_UNITS[per]), ("burst", burst),
                                    ("over", bool(v.get("inv", False))), ("bytes", is_bytes)))

    def _quota(self, v) -> m.Stateful:
        if isinstance(v, str):
            if ("quota", v) not in self.ctx.objects:
                raise NftValueError(v, "unknown quota object")
            obj = self.ctx.objects[("quota", v)]
            if obj is None:
                raise _Unsup(f"quota object {v}")
            v = obj
        if "bytes" in v and "val" not in v:  # quota object as nft -j lists it: plain byte counts
            n, used = parse_int(v["bytes"]), parse_int(v.get("used", 0))
        else:
            n = parse_int(v["val"]) * BYTE_UNITS.get(v.get("val_unit", "bytes"), 1)
            used = parse_int(v.get("used", 0)) * BYTE_UNITS.get(v.get("used_unit", "bytes"), 1)
        return m.Stateful("quota", (("bytes", n), ("over", bool(v.get("inv", False))), ("used", used)))

    def _reject(self, v: dict) -> m.Reject:
        typ, code = v.get("type"), v.get("expr")
        fam = self.ctx.family
        if typ is None:
            return m.Reject({"ip": "icmp-port-unreachable", "ip6": "icmp6-port-unreachable"}.get(
                fam, "icmpx-port-unreachable"))
        if typ in ("tcp reset", "tcp-reset"):
            return m.Reject("tcp-reset")
        code = code or "port-unreachable"
        if isinstance(code, int) or str(code).isdigit():
            table = {"icmp": ICMP_CODES, "icmpv6": ICMPV6_CODES, "icmpx": ICMPX_CODES}.get(typ, {})
            names = [k for k, x in table.items() if x == int(code)]
            if not names:
                raise NftValueError(code, f"not a {typ} reject code")
            code = names[0]
        fam_n = self.ctx.fam or self.l3
        if (typ == "icmp" and fam_n == 6) or (typ == "icmpv6" and fam_n == 4):
            raise NftValueError(typ, f"reject with {typ} in an {self.ctx.family} table or ip{'6' if fam_n == 6 else ''}"
                                     " rule")
        if typ == "icmp":
            if code not in ICMP_CODES:
                raise NftValueError(code, "not an icmp reject code")
            name = {"prot-unreachable": "proto-unreachable"}.get(code, code)
            return m.Reject(f"icmp-{name}")
        if typ == "icmpv6":
            if code not in ICMPV6_CODES:
                raise NftValueError(code, "not an icmpv6 reject code")
            name = {"admin-prohibited": "adm-prohibited"}.get(code, code)
            return m.Reject(f"icmp6-{name}")
        if typ == "icmpx":
            if code not in ICMPX_CODES:
                raise NftValueError(code, "not an icmpx reject code")
            return m.Reject(f"icmpx-{code}")
        raise NftValueError(typ, "not a reject type")

    def _nat(self, kind: str, v: dict) -> m.Nat:
        flags = v.get("flags") or []
        if isinstance(flags, str):
            flags = [flags]
        fl = set()
        for f in flags:
            if f in ("random", "persistent"):
                fl.add(f)
            elif f == "fully-random":
                fl.add("random-fully")
            elif f == "netmap":
                raise _Unsup(f"{kind} netmap")
            else:
                raise NftValueError(f, "not a nat flag")
        fam = {"ip": 4, "ip6": 6}.get(v.get("family"), self.ctx.fam)
        lo = hi = None
        if "addr" in v and v["addr"] is not None:
            a = v["addr"]
            if isinstance(a, dict) and "map" in a:
                raise _Unsup(f"{kind} to a map lookup")
            if isinstance(a, dict) and not ({"range", "prefix"} & a.keys()):
                raise _Unsup(f"{kind} to a {next(iter(a))} expression")
            if fam == 0:  # inet without ip/ip6: nft takes it from the rule's ip/ip6/nfproto match
                if self.l3 is None:
                    raise NftValueError(a, f"{kind} in an inet table needs 'ip' or 'ip6' before 'to'")
                fam = self.l3
            elif self.l3 is not None and fam != self.l3:
                raise NftValueError(a, f"{kind} address family conflicts with the rule's network protocol")
            lo, hi = scalar(a, DTYPES["ipv4_addr" if fam == 4 else "ipv6_addr"])
        plo = phi = 0
        if "port" in v and v["port"] is not None:
            p = v["port"]
            if isinstance(p, dict) and not ({"range"} & p.keys()):
                raise _Unsup(f"{kind} to a port {next(iter(p))} expression")
            plo, phi = scalar(p, DTYPES["inet_service"])
        return m.Nat(kind, lo, hi, plo, phi, frozenset(fl), family=fam if lo is not None else self.ctx.fam)

    def _mark_value(self, val, dest: str) -> m.MarkOp:
        """value expression of `meta/ct mark set`: const | meta mark | ct mark | (x & a) | b ..."""
        if isinstance(val, (int, str)) and not (isinstance(val, str) and val.startswith("$")):
            x = scalar(val, DTYPES["mark"])[0]
            return m.MarkOp(dest, 0, x)
        if isinstance(val, dict):
            if "meta" in val and val["meta"].get("key") == "mark":
                return m.MarkOp(dest, 0, 0, src="mark")
            if "ct" in val and val["ct"].get("key") == "mark":
                return m.MarkOp(dest, 0, 0, src="ctmark")
            if len(val) == 1 and next(iter(val)) in ("&", "|", "^") and len(next(iter(val.values()))) == 2:
                op, (a, b) = next(iter(val.items()))
                if isinstance(a, (int, str)) and isinstance(b, (int, str)):  # constant folding
                    x, y = scalar(a, DTYPES["mark"])[0], scalar(b, DTYPES["mark"])[0]
                    return m.MarkOp(dest, 0, {"&": x & y, "|": x | y, "^": x ^ y}[op])
                if op in ("&", "|", "^") and isinstance(b, (int, str)):
                    inner = self._mark_value(a, dest) if not isinstance(a, (int, str)) else None
                    c = scalar(b, DTYPES["mark"])[0]
                    if inner is None:
                        raise _Unsup("mark arithmetic on constants")
                    # only forms MarkOp expresses: src & mask, then | or ^ constant
                    if op == "&" and inner.src != "const" and inner.src_mask == 0xFFFFFFFF and inner.xor_value == 0 \
                            and inner.or_value == 0:
                        return m.MarkOp(dest, 0, 0, src=inner.src, src_mask=c)
                    if op == "&" and inner.src == "const" and inner.and_mask == 0xFFFFFFFF:
                        return m.MarkOp(dest, c, 0)
                    if op == "|" and inner.or_value == 0 and inner.xor_value == 0:
                        return m.MarkOp(dest, inner.and_mask, 0, inner.src, inner.src_mask, or_value=c)
                    if op == "^" and inner.or_value == 0:
                        return m.MarkOp(dest, inner.and_mask, inner.xor_value ^ c, inner.src, inner.src_mask)
                    raise _Unsup("mark expression")
        raise _Unsup("mark value expression")

    def _mangle(self, v: dict) -> m.Statement:
        key, val = v["key"], v["value"]
        if isinstance(key, dict) and "meta" in key and key["meta"].get("key") == "mark":
            return self._mark_self(val, "mark")
        if isinstance(key, dict) and "ct" in key:
            ck = key["ct"].get("key")
            if ck == "mark":
                return self._mark_self(val, "ctmark")
            if ck == "zone":
                return m.CtSet(zone=scalar(val, DTYPES["zone"])[0])
            raise _Unsup(f"ct {ck} set")
        if isinstance(key, dict) and "meta" in key:
            mk = key["meta"].get("key")
            if mk in ("priority", "nftrace", "pkttype") and isinstance(val, (int, str)):
                return m.Noop(f"meta {mk} set")
            raise _Unsup(f"meta {mk} set")
        if isinstance(key, dict) and "tcp option" in key and key["tcp option"].get("name") == "maxseg":
            # MSS clamping (like iptables TCPMSS): rewrites the SYN option, no effect on the verdicts
            return m.Noop("tcp option maxseg size set", render_stmt({"mangle": v}))
        if isinstance(key, dict) and "payload" in key:
            p = key["payload"]
            if (p.get("protocol"), p.get("field")) in (("ip", "dscp"), ("ip6", "dscp"), ("ip", "ecn"),
                                                       ("ip6", "ecn")):
                return m.Noop(f"{p['protocol']} {p['field']} set")
            raise _Unsup(f"payload {p.get('protocol', 'raw')} {p.get('field', '')} set (packet rewrite)")
        raise _Unsup("set statement")

    def _mark_self(self, val, dest: str) -> m.MarkOp:
        """`meta mark set meta mark & 0xff | 0x10`: the source equal to dest means keep-and-modify."""
        op = self._mark_value(val, dest)
        if op.src == dest and op.xor_value == 0:
            # dest = (dest & src_mask) | or_value  ->  dest & and_mask | or
            return m.MarkOp(dest, op.src_mask, 0, or_value=op.or_value)
        if op.src == dest:
            return m.MarkOp(dest, op.src_mask, op.xor_value, or_value=op.or_value)
        if op.src == "const" and op.and_mask == 0 and op.or_value == 0:
            return op
        if op.src == "const":
            return op
        return m.MarkOp(dest, 0, op.xor_value, op.src, op.src_mask, op.or_value)

    def _vmap(self, v: dict) -> list:
        left, data = v["key"], v["data"]
        keys = [self.key(x) for x in left["concat"]] if isinstance(left, dict) and "concat" in left \
            else [self.key(left)]
        for kk in keys:
            if kk.kind != "field":
                raise _Unsup("vmap on interface names or fib")
        out = [d for kk in keys for d in kk.deps + kk.pre]
        fields = tuple(kk.field for kk in keys)
        if isinstance(data, str) and data.startswith("@"):
            if data[1:] not in self.ctx.sets:
                self._unknown_set(data)
            out.append(m.VerdictMap(fields, data[1:]))
            return out
        if not (isinstance(data, dict) and "set" in data):
            raise NftValueError(data, "vmap needs { key : verdict } or @map")
        info = SetInfo(self.ctx.anon_name("map"), tuple(kk.dtype for kk in keys), DTYPES["verdict"], True,
                       frozenset({"anonymous"}))
        self.ctx.fill_set(info, data["set"])
        if any(kk.offset for kk in keys):
            raise _Unsup("vmap on ip6 length")
        self.ctx.sets[info.name] = info
        out.append(m.VerdictMap(fields, info.name))
        return out

    def rule(self, exprs: list, where) -> tuple[list, list[m.Unsupported]]:
        """exprs: the rule's statements (JSON form); where(i) -> text naming statement i's position.
        Returns (model expressions, unsupported features)."""
        out: list = []
        uns: list[m.Unsupported] = []
        self.l3 = {4: 4, 6: 6}.get(self.ctx.fam)  # network protocol the rule is known to match
        terminal = None
        for i, st in enumerate(exprs):
            try:
                got = self.statement(st)
                for x in got:
                    if isinstance(x, m.FieldIn) and x.field == Field.NFPROTO and not x.negate \
                            and len(x.values) == 1 and x.values[0][0] == x.values[0][1]:
                        self.l3 = {2: 4, 10: 6}.get(x.values[0][0], self.l3)
                    if terminal is not None and (isinstance(x, (m.Verdict, m.Reject, m.Nat, m.VerdictMap))
                                                 or isinstance(terminal, m.Verdict)):
                        raise NftValueError(render_stmt(st), "statement after a terminal statement")
                    if isinstance(x, (m.Verdict, m.Reject, m.Nat)) and not (
                            isinstance(x, m.Verdict) and x.kind == "continue"):
                        terminal = x
                # a repeated identical match is redundant (nft drops the implicit dependency when the rule
                # already has it: `meta l4proto icmp icmp type ...` lists as `icmp type ...`)
                out.extend(x for x in got if not (isinstance(x, (m.FieldIn, m.Never)) and x in out))
            except _Unsup as u:
                # the rule never matches from here on: what follows is not lowered (same as the text parser,
                # which skips the rest of a rule after a construct it does not model)
                x = m.Unsupported(f"{u.feature} ({where(i)})", render_stmt(st))
                out.append(x)
                uns.append(x)
                break
            except (KeyError, TypeError, IndexError, ValueError) as e:
                if isinstance(e, NftValueError):
                    raise
                raise NftValueError(render_stmt(st), f"malformed expression ({e.__class__.__name__}: {e})") from None
        return out, uns


# ---------------------------------------------------------------- rendering (JSON -> nft text)
def _rv(v) -> str:
    if isinstance(v, dict):
        if "set" in v:
            return "{ " + ", ".join(_rv(x) for x in v["set"]) + " }"
        if "range" in v:
            return f"{_rv(v['range'][0])}-{_rv(v['range'][1])}"
        if "prefix" in v:
            return f"{_rv(v['prefix']['addr'])}/{v['prefix']['len']}"
        if "concat" in v:
            return " . ".join(_rv(x) for x in v["concat"])
        if "elem" in v:
            return _rv(v["elem"].get("val"))
        for op in ("&", "|", "^", "<<", ">>"):
            if op in v:
                return f" {op} ".join(_rv(x) for x in v[op])
        if len(v) == 1 and next(iter(v)) in ("accept", "drop", "continue", "return", "jump", "goto"):
            return render_stmt(v)
        return render_expr(v)
    if isinstance(v, list):
        if len(v) == 2 and not all(isinstance(x, str) for x in v):
            return f"{_rv(v[0])} : {_rv(v[1])}"
        return ",".join(_rv(x) for x in v)
    if isinstance(v, str):
        if v.startswith("@") or re.fullmatch(r"[A-Za-z0-9_.:/\-]+", v):
            return v
        return '"' + v + '"'
    if v is None:
        return ""
    return str(v)


def render_expr(e) -> str:
    if not isinstance(e, dict):
        return _rv(e)
    k, v = next(iter(e.items()))
    if k == "payload":
        if "protocol" in v:
            return f"{v['protocol']} {v['field']}"
        return f"@{v.get('base')},{v.get('offset')},{v.get('len')}"
    if k == "meta":
        return f"meta {v['key']}"
    if k == "ct":
        parts = ["ct"]
        if v.get("dir"):
            parts.append(v["dir"])
        if v.get("family"):
            parts.append(v["family"])
        parts.append(v["key"])
        return " ".join(parts)
    if k == "fib":
        fl = v.get("flags") or []
        return f"fib {' . '.join([fl] if isinstance(fl, str) else fl)} {v.get('result')}"
    if k == "numgen":
        off = f" offset {v['offset']}" if v.get("offset") else ""
        return f"numgen {v.get('mode')} mod {v.get('mod')}{off}"
    if k == "concat":
        return " . ".join(render_expr(x) for x in v)
    if k in ("&", "|", "^", "<<", ">>"):
        return f" {k} ".join(render_expr(x) if isinstance(x, dict)
                             else "(" + "|".join(_rv(y) for y in x) + ")" if isinstance(x, list) else _rv(x)
                             for x in v)
    if k == "tcp option":
        return f"tcp option {v.get('name')} {v.get('field', '')}".rstrip()
    if k == "rt":
        return f"rt {v.get('key')}"
    if k == "map":
        return f"{render_expr(v['key'])} map {_rv(v['data'])}"
    return f"{k} {_rv(v) if not isinstance(v, dict) else ' '.join(f'{a} {_rv(b)}' for a, b in v.items())}"


def render_stmt(st) -> str:
    """One JSON statement as nft text (best effort: unknown shapes fall back to their JSON)."""
    try:
        return _render_stmt(st)
    except (KeyError, TypeError, IndexError, ValueError, AttributeError, StopIteration):
        import json

        return json.dumps(st, separators=(",", ":"))


def _render_stmt(st) -> str:
    if not isinstance(st, dict) or not st:
        return str(st)
    k, v = next(iter(st.items()))
    if k == "match":
        op = v.get("op", "==")
        right = _rv(v["right"])
        explicit = isinstance(v["left"], dict) and any(b in v["left"] for b in ("&", "|", "^", "<<", ">>"))
        ops = "" if op in ("==", "in") and not explicit else f"{op} "
        return f"{render_expr(v['left'])} {ops}{right}"
    if k in ("accept", "drop", "continue", "return"):
        return k
    if k in ("jump", "goto"):
        return f"{k} {v['target'] if isinstance(v, dict) else v}"
    if k == "counter":
        if isinstance(v, dict) and ("packets" in v or "bytes" in v):
            return f"counter packets {v.get('packets', 0)} bytes {v.get('bytes', 0)}"
        return "counter" + (f" name {_rv(v)}" if isinstance(v, str) else "")
    if k == "log":
        v = v or {}
        parts = ["log"]
        if "prefix" in v:
            parts.append(f'prefix "{v["prefix"]}"')
        for a in ("level", "group", "snaplen", "queue-threshold"):
            if a in v:
                parts.append(f"{a} {v[a]}")
        if v.get("flags"):
            parts.append("flags " + _rv(v["flags"]))
        return " ".join(parts)
    if k == "limit":
        if isinstance(v, str):
            return f"limit name {_rv(v)}"
        unit = v.get("rate_unit", "packets")
        s = f"limit rate {'over ' if v.get('inv') else ''}{v['rate']}{'' if unit == 'packets' else ' ' + unit}" \
            f"/{v.get('per', 'second')}"
        if v.get("burst"):
            s += f" burst {v['burst']} {v.get('burst_unit', 'packets') if unit == 'packets' else 'bytes'}"
        return s
    if k == "quota":
        if isinstance(v, str):
            return f"quota name {_rv(v)}"
        return f"quota {'over ' if v.get('inv') else ''}{v['val']} {v.get('val_unit', 'bytes')}"
    if k == "reject":
        if not v:
            return "reject"
        if v.get("type") in ("tcp reset", "tcp-reset"):
            return "reject with tcp reset"
        return f"reject with {v.get('type')} {v.get('expr', 'port-unreachable')}"
    if k in ("snat", "dnat", "masquerade", "redirect"):
        v = v or {}
        s = k
        if v.get("family"):
            s += f" {v['family']}"
        if "addr" in v or "port" in v:
            s += " to"
            if "addr" in v:
                a = _rv(v["addr"]) if not (isinstance(v["addr"], dict) and "map" in v["addr"]) \
                    else render_expr(v["addr"])
                s += f" {a}"
                if "port" in v:
                    s += f":{_rv(v['port'])}"
            elif "port" in v:
                s += f" :{_rv(v['port'])}"
        if v.get("flags"):
            s += " " + _rv(v["flags"])
        return s
    if k == "mangle":
        val = v["value"]
        return f"{render_expr(v['key'])} set {render_expr(val) if isinstance(val, dict) else _rv(val)}"
    if k == "vmap":
        return f"{render_expr(v['key'])} vmap {_rv(v['data'])}"
    if k == "queue":
        v = v or {}
        s = "queue"
        if v.get("flags"):
            s += " flags " + _rv(v["flags"])
        if "num" in v:
            s += f" to {_rv(v['num'])}"
        return s
    if k == "notrack":
        return "notrack"
    if k == "ct helper":
        return f'ct helper set "{v}"'
    if k == "unsupported":
        return v["text"]
    if k == "xt":
        return f"xt {v.get('type', '')} \"{v.get('name', '')}\""
    if v is None:
        return k
    return f"{k} {_rv(v) if not isinstance(v, dict) else ' '.join(f'{a} {_rv(b)}' for a, b in v.items())}"


def render_rule(exprs: list) -> str:
    return " ".join(render_stmt(s) for s in exprs)

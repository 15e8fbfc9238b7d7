"""The host model: which machine the capture is replayed through (contracts §1, spec §0).

`load_host(src, local=())` reads a host file (TOML, or JSON such as the kernel oracle's topology.json),
a dict with the same fields, or None for the documented default model; `HostModel.arrays()` lowers
it to `HostArrays`, a NamedTuple of flat int64 arrays that the jitted helpers below read:

* `route_lookup(ha, family, hi, lo)`  -> interface index or -1 (pins first, then longest prefix)
* `is_local(ha, family, hi, lo)`      -> the address is one of the host's own (local routing table)
* `addr_type(ha, family, hi, lo, iface)` -> XT_ADDRTYPE_* bit mask of the address (xt_addrtype.c)
* `primary_addr(ha, iface, family)`   -> (hi, lo, ok): first address of the interface
* `masq_addr(ha, iface, family, nh_hi, nh_lo)` -> (hi, lo, ok): the interface address on the next hop's
  subnet, else the primary one (inet_select_addr as MASQUERADE uses it)

Addresses are 128-bit (IPv4 v4-mapped, see addr.py) passed as two int64 words holding the uint64 bit
patterns (`packets.src_hi.view(np.int64)`); every array here is int64 so kernels never mix signedness.
Interface index = position in `HostModel.iface_names`; -1 = no interface.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import tomllib

from ..errors import HostModelError
from . import addr as _addr
from ._jit import inline_kernel, kernel

log = logging.getLogger(__name__)

__all__ = ["HostModel", "HostArrays", "Interface", "Route", "load_host", "default_host", "route_lookup",
           "is_local", "addr_type", "primary_addr", "masq_addr", "route_lookup_at", "is_local_at", "addr_type_at",
           "primary_addr_at", "masq_addr_at", "ADDRTYPE_BITS", "EXTRA_SYSCTLS"]

# XT_ADDRTYPE_* = 1 << RTN_* (include/uapi/linux/netfilter/xt_addrtype.h, rtnetlink.h)
ADDRTYPE_BITS = {"UNSPEC": 1 << 0, "UNICAST": 1 << 1, "LOCAL": 1 << 2, "BROADCAST": 1 << 3,
                 "ANYCAST": 1 << 4, "MULTICAST": 1 << 5, "BLACKHOLE": 1 << 6, "UNREACHABLE": 1 << 7,
                 "PROHIBIT": 1 << 8, "THROW": 1 << 9, "NAT": 1 << 10, "XRESOLVE": 1 << 11}
AT_UNSPEC, AT_UNICAST, AT_LOCAL, AT_BROADCAST = 1, 2, 4, 8
AT_ANYCAST, AT_MULTICAST, AT_UNREACHABLE = 16, 32, 128

# local-table entry kinds
LT_LOCAL = 2
LT_BROADCAST = 3

# sysctls the replay reads besides conntrack's (names as in /proc/sys with dots), with defaults
EXTRA_SYSCTLS: dict[str, int] = {
    "net.ipv4.ip_forward": 1,
    "net.ipv6.conf.all.forwarding": 1,
    "net.ipv4.conf.all.rp_filter": 0,
    "net.ipv4.conf.all.route_localnet": 0,
    "net.bridge.bridge-nf-call-iptables": 0,
    "kernel.hz": 1000,  # CONFIG_HZ (not a real sysctl): jiffy length for limit/recent/hashlimit
}

DEFAULT_INSIDE_V4 = ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "127.0.0.0/8")
DEFAULT_INSIDE_V6 = ("fc00::/7", "fe80::/10", "::1/128")

_M64 = (1 << 64) - 1


def _s64(v: int) -> int:
    """uint64 bit pattern -> the int64 with the same bits."""
    v &= _M64
    return v - (1 << 64) if v >= (1 << 63) else v


def _mask128(plen: int, family: int) -> int:
    bits = plen + 96 if family == 4 else plen
    return ((1 << 128) - 1) ^ ((1 << (128 - bits)) - 1) if bits else 0


@dataclass
class Interface:
    name: str
    addresses: list[tuple[int, int, int]] = field(default_factory=list)  # (128-bit address, prefixlen, family)
    mtu: int = 1500


@dataclass
class Route:
    net: int  # 128-bit network address
    plen: int  # prefix length in the family's own terms (0..32 / 0..128)
    family: int
    iface: int
    via: int | None = None
    connected: bool = False


@dataclass
class HostModel:
    iface_names: list[str]
    interfaces: list[Interface]
    routes: list[Route]
    pins: dict[tuple[int, int], int]  # (128-bit address, family) -> iface
    ip_forward: bool = True
    ip6_forward: bool = True
    sysctls: dict[str, int] = field(default_factory=dict)
    source: str = "default"
    is_default: bool = False
    _arrays: object = None

    def iface_index(self, name: str) -> int:
        try:
            return self.iface_names.index(name)
        except ValueError:
            return -1

    def local_addresses(self) -> list[tuple[int, int]]:
        return [(a, f) for i in self.interfaces for a, _, f in i.addresses]

    def sysctl(self, name: str, default=None):
        if name in self.sysctls:
            return self.sysctls[name]
        if name in EXTRA_SYSCTLS:
            return EXTRA_SYSCTLS[name]
        return default

    @property
    def hz(self) -> int:
        return int(self.sysctl("kernel.hz", 1000))

    def describe(self) -> str:
        """One paragraph for `nfreplay run`: which model, interfaces, addresses, routes."""
        head = ("default host model (no --host): forwarding gateway, `inside` = RFC 1918/ULA/link-local/"
                "loopback space, `outside` = everything else" if self.is_default else f"host model from {self.source}")
        lines = [head]
        for i in self.interfaces:
            if i.name == "lo" and not i.addresses:
                continue
            addrs = ", ".join(f"{_addr.to_text(*_addr.split(a), f)}/{p}" for a, p, f in i.addresses) or "no addresses"
            lines.append(f"  {i.name}: {addrs}")
        nr = [r for r in self.routes if not r.connected]
        for r in nr:
            via = f" via {_addr.to_text(*_addr.split(r.via), r.family)}" if r.via is not None else ""
            lines.append(f"  route {_addr.to_text(*_addr.split(r.net), r.family)}/{r.plen} dev "
                         f"{self.iface_names[r.iface]}{via}")
        for (a, f), i in self.pins.items():
            lines.append(f"  pin {_addr.to_text(*_addr.split(a), f)} -> {self.iface_names[i]}")
        lines.append(f"  ip_forward={int(self.ip_forward)} ipv6 forwarding={int(self.ip6_forward)}")
        return "\n".join(lines)

    def arrays(self) -> HostArrays:
        if self._arrays is None:
            self._arrays = _build_arrays(self)
        return self._arrays


# packed host model: ONE int64 array (a NamedTuple field costs a reference-count pair per non-inlined
# call). Header (HA_*; section offsets relative to the block start, so the block can be embedded in
# another array, e.g. the compiled ruleset), then row sections with the column constants below.
RT_NET_HI, RT_NET_LO, RT_MASK_HI, RT_MASK_LO, RT_FAMILY, RT_IFACE, RT_VIA_HI, RT_VIA_LO, RT_HAS_VIA, RT_N = range(10)
LT_NET_HI, LT_NET_LO, LT_MASK_HI, LT_MASK_LO, LT_FAMILY, LT_IFACE, LT_TYPE, LT_N = range(8)
PIN_HI, PIN_LO, PIN_FAMILY, PIN_IFACE, PIN_N = range(5)
IA_IFACE, IA_FAMILY, IA_HI, IA_LO, IA_MASK_HI, IA_MASK_LO, IA_N = range(7)
(HA_N_IFACE, HA_IP_FORWARD, HA_IP6_FORWARD, HA_MTU, HA_RT, HA_N_RT, HA_LT, HA_N_LT, HA_PIN, HA_N_PIN, HA_IA,
 HA_N_IA, HA_N) = range(13)


def _hsect(off, n, w):
    return property(lambda s: s.prog[int(s.prog[off]):int(s.prog[off]) + int(s.prog[n]) * w].reshape(-1, w))


class HostArrays(NamedTuple):
    """Packed view for kernels: one int64 array `prog` (header HA_*, then iface_mtu, rt, lt, pin, ia).
    Routes and local-table entries are sorted by prefix length, longest first (ties: declaration order),
    so the first hit of a linear scan is the longest-prefix match. The properties give the sections as
    2-D views and the scalars (Python side)."""

    prog: np.ndarray

    n_iface = property(lambda s: int(s.prog[HA_N_IFACE]))
    ip_forward = property(lambda s: int(s.prog[HA_IP_FORWARD]))
    ip6_forward = property(lambda s: int(s.prog[HA_IP6_FORWARD]))
    iface_mtu = property(lambda s: s.prog[int(s.prog[HA_MTU]):int(s.prog[HA_MTU]) + int(s.prog[HA_N_IFACE])])
    rt = _hsect(HA_RT, HA_N_RT, RT_N)  # main table (connected + configured routes)
    lt = _hsect(HA_LT, HA_N_LT, LT_N)  # local table: own addresses, loopback nets (LOCAL), subnet broadcasts
    pin = _hsect(HA_PIN, HA_N_PIN, PIN_N)
    ia = _hsect(HA_IA, HA_N_IA, IA_N)  # interface addresses (primary = first per family)


def _a(vals, dt=np.int64):
    return np.asarray(vals, dtype=dt) if len(vals) else np.zeros(0, dtype=dt)


def _a2(rows, ncol):
    return np.array(rows, dtype=np.int64).reshape(-1, ncol) if rows else np.zeros((0, ncol), np.int64)


def _build_arrays(h: HostModel) -> HostArrays:
    routes = sorted(enumerate(h.routes), key=lambda t: (-(t[1].plen + (96 if t[1].family == 4 else 0)), t[0]))
    rt = [r for _, r in routes]
    rmask = [_mask128(r.plen, r.family) for r in rt]
    lt = []  # (net, mask, family, iface, type, bits)
    for ii, itf in enumerate(h.interfaces):
        for a, p, f in itf.addresses:
            m = _mask128(p, f)
            lt.append((a, _mask128(32 if f == 4 else 128, f), f, ii, LT_LOCAL))
            if itf.name == "lo":
                lt.append((a & m, m, f, ii, LT_LOCAL))  # fib_add_ifaddr: loopback prefix route is local
            elif f == 4 and p < 31:
                lt.append(((a & m) | (((1 << 128) - 1) ^ m), _mask128(32, 4), 4, ii, LT_BROADCAST))
    lt.sort(key=lambda e: -bin(e[1]).count("1"))
    ia = [(ii, f, a, _mask128(p, f)) for ii, itf in enumerate(h.interfaces) for a, p, f in itf.addresses]
    pins = list(h.pins.items())
    s = _s64
    mtu = _a([i.mtu for i in h.interfaces])
    rt_ = _a2([(s(r.net >> 64), s(r.net), s(mk >> 64), s(mk), r.family, r.iface, s((r.via or 0) >> 64),
                s(r.via or 0), int(r.via is not None)) for r, mk in zip(rt, rmask)], RT_N)
    lt_ = _a2([(s(e[0] >> 64), s(e[0]), s(e[1] >> 64), s(e[1]), e[2], e[3], e[4]) for e in lt], LT_N)
    pin_ = _a2([(s(a >> 64), s(a), f, i) for (a, f), i in pins], PIN_N)
    ia_ = _a2([(e[0], e[1], s(e[2] >> 64), s(e[2]), s(e[3] >> 64), s(e[3])) for e in ia], IA_N)
    hdr = np.zeros(HA_N, np.int64)
    hdr[HA_N_IFACE], hdr[HA_IP_FORWARD], hdr[HA_IP6_FORWARD] = len(h.iface_names), int(h.ip_forward), int(h.ip6_forward)
    off = HA_N
    for o, n, arr in ((HA_MTU, -1, mtu), (HA_RT, HA_N_RT, rt_), (HA_LT, HA_N_LT, lt_), (HA_PIN, HA_N_PIN, pin_),
                      (HA_IA, HA_N_IA, ia_)):
        hdr[o] = off
        if n >= 0:
            hdr[n] = arr.shape[0]
        off += arr.size
    return HostArrays(prog=np.concatenate([hdr, mtu, rt_.reshape(-1), lt_.reshape(-1), pin_.reshape(-1),
                                           ia_.reshape(-1)]))


# ------------------------------------------------------------------ loading
def _err(src: str, key: str, msg: str) -> HostModelError:
    return HostModelError(f"{src}: {key}: {msg}")


def _parse_iface_addr(src, key, text) -> tuple[int, int, int]:
    try:
        itf = ipaddress.ip_interface(str(text))
    except ValueError:
        raise _err(src, key, f"bad address {text!r} (want ADDR/PREFIX)") from None
    v, f = _addr.to_int(itf.ip)
    return v, itf.network.prefixlen, f


def _parse_addr(src, key, text) -> tuple[int, int]:
    try:
        return _addr.to_int(str(text).strip())
    except ValueError:
        raise _err(src, key, f"bad address {text!r}") from None


def _known_sysctls() -> dict[str, object]:
    names: dict[str, object] = dict(EXTRA_SYSCTLS)
    try:
        from .conntrack import SYSCTL_DEFAULTS  # type: ignore[attr-defined]
    except ImportError:
        try:
            from .conntrack.sysctls import SYSCTL_DEFAULTS  # type: ignore[no-redef]
        except ImportError:
            SYSCTL_DEFAULTS = None
    if SYSCTL_DEFAULTS is not None:
        names.update(SYSCTL_DEFAULTS)
    else:
        names["__conntrack_unknown__"] = None
    return names


def _sysctl_ok(name: str, known: dict) -> bool:
    if name in known:
        return True
    if "__conntrack_unknown__" in known and name.startswith("net.netfilter.nf_conntrack_"):
        return True  # conntrack's table not importable yet: accept its namespace
    # per-interface / all / default conf keys of the ones we know (net.ipv4.conf.X.rp_filter)
    parts = name.split(".")
    if len(parts) == 5 and parts[:3] in (["net", "ipv4", "conf"], ["net", "ipv6", "conf"]):
        return ".".join(parts[:3] + ["all", parts[4]]) in known
    return False


def _as_int(src, key, v) -> int:
    if isinstance(v, bool):
        return int(v)
    try:
        return int(str(v).strip(), 0)
    except ValueError:
        raise _err(src, key, f"not an integer: {v!r}") from None


def _finish(ifaces: list[Interface], routes: list[Route], pins, fwd, fwd6, sysctls, src, default=False):
    names = [i.name for i in ifaces]
    if "lo" not in names:
        lo = Interface("lo", [] if default else [(_addr.to_int("127.0.0.1")[0], 8, 4), (1, 128, 6)], 65536)
        ifaces.append(lo)
        names.append("lo")
    connected = []
    for ii, itf in enumerate(ifaces):
        for a, p, f in itf.addresses:
            connected.append(Route(a & _mask128(p, f), p, f, ii, None, True))
    return HostModel(iface_names=names, interfaces=ifaces, routes=connected + routes, pins=pins, ip_forward=fwd,
                     ip6_forward=fwd6, sysctls=sysctls, source=src, is_default=default)


def default_host(local: list[str] | tuple[str, ...] = ()) -> HostModel:
    """The default model of contracts §1: `inside` (RFC 1918, ULA, link-local, loopback) and `outside`
    (everything else), forwarding on, no local addresses (`--local` adds some to `inside`... see doc)."""
    inside, outside = Interface("inside"), Interface("outside")
    routes = []
    for p in DEFAULT_INSIDE_V4 + DEFAULT_INSIDE_V6:
        lo_, _, f = _addr.prefix_range(p)
        routes.append(Route(lo_, ipaddress.ip_network(p).prefixlen, f, 0))
    routes.append(Route(_addr.V4_MAPPED, 0, 4, 1))
    routes.append(Route(0, 0, 6, 1))
    h = _finish([inside, outside], routes, {}, True, True, {}, "default", default=True)
    for a in local:
        _add_local(h, a, "--local")
    return h


def _add_local(h: HostModel, text: str, src: str) -> None:
    """A --local address: owned by the interface the host routes it through (so it stays reachable the
    same way), as a host address (/32, /128) without a connected route."""
    v, f = _parse_addr(src, "--local", text)
    ha = _build_arrays(h)
    hi, lo = _addr.split(v)
    ii = int(route_lookup(ha, f, np.int64(_s64(hi)), np.int64(_s64(lo))))
    if ii < 0:
        ii = h.iface_names.index("lo")
    h.interfaces[ii].addresses.append((v, 32 if f == 4 else 128, f))
    h._arrays = None


def load_host(src=None, local: list[str] | tuple[str, ...] = ()) -> HostModel:
    """Host model from a TOML/JSON file path, a dict with the same fields, or None (default model)."""
    if src is None:
        return default_host(local)
    if isinstance(src, dict):
        data, name = src, "<host dict>"
    else:
        p = Path(src)
        name = str(p)
        try:
            text = p.read_text()
        except OSError as e:
            raise HostModelError(f"{name}: cannot read host file: {e.strerror}") from None
        if text.lstrip().startswith("{"):
            try:
                data = json.loads(text)
            except ValueError as e:
                raise HostModelError(f"{name}: bad JSON: {e}") from None
        else:
            try:
                data = tomllib.loads(text)
            except tomllib.TOMLDecodeError as e:
                raise HostModelError(f"{name}: bad TOML: {e}") from None
    if not isinstance(data, dict):
        raise HostModelError(f"{name}: top level must be a table/object")
    known_top = {"interfaces", "routes", "ip_forward", "ipv6_forwarding", "ip6_forward", "sysctls", "hosts"}
    for k in data:
        if k not in known_top:
            raise _err(name, k, f"unknown key (expected one of {', '.join(sorted(known_top))})")
    ifaces: list[Interface] = []
    for n, it in enumerate(data.get("interfaces") or []):
        key = f"interfaces[{n}]"
        if not isinstance(it, dict) or not isinstance(it.get("name"), str) or not it["name"]:
            raise _err(name, key, "each interface needs a name")
        if any(i.name == it["name"] for i in ifaces):
            raise _err(name, key, f"duplicate interface {it['name']!r}")
        addrs = [_parse_iface_addr(name, f"{key}.addresses", a) for a in it.get("addresses") or []]
        mtu = _as_int(name, f"{key}.mtu", it.get("mtu", 65536 if it["name"] == "lo" else 1500))
        ifaces.append(Interface(it["name"], addrs, mtu))
    names = [i.name for i in ifaces] + ([] if any(i.name == "lo" for i in ifaces) else ["lo"])
    routes = []
    for n, r in enumerate(data.get("routes") or []):
        key = f"routes[{n}]"
        if not isinstance(r, dict) or "prefix" not in r or "interface" not in r:
            raise _err(name, key, "a route needs prefix and interface")
        try:
            net = ipaddress.ip_network(str(r["prefix"]).replace("default", "0.0.0.0/0"), strict=False)
        except ValueError:
            raise _err(name, f"{key}.prefix", f"bad prefix {r['prefix']!r}") from None
        if r["interface"] not in names:
            raise _err(name, f"{key}.interface", f"unknown interface {r['interface']!r}")
        v, f = _addr.to_int(net.network_address)
        via = None
        if r.get("via"):
            via, vf = _parse_addr(name, f"{key}.via", r["via"])
            if vf != f:
                raise _err(name, f"{key}.via", "gateway family differs from the prefix")
        routes.append(Route(v, net.prefixlen, f, names.index(r["interface"]), via))
    pins = {}
    for a, i in (data.get("hosts") or {}).items():
        v, f = _parse_addr(name, f"hosts.{a}", a)
        if i not in names:
            raise _err(name, f"hosts.{a}", f"unknown interface {i!r}")
        pins[(v, f)] = names.index(i)
    sysctls: dict[str, int] = {}
    known = _known_sysctls()
    for k, v in (data.get("sysctls") or {}).items():
        if not _sysctl_ok(k, known):
            raise _err(name, f"sysctls.{k}", "unknown sysctl")
        sysctls[k] = _as_int(name, f"sysctls.{k}", v)
    fwd = data.get("ip_forward", sysctls.get("net.ipv4.ip_forward", 1))
    fwd = bool(_as_int(name, "ip_forward", fwd))
    f6 = data.get("ipv6_forwarding", data.get("ip6_forward", sysctls.get("net.ipv6.conf.all.forwarding", fwd)))
    f6 = bool(_as_int(name, "ipv6_forwarding", f6))
    h = _finish(ifaces, routes, pins, fwd, f6, sysctls, name)
    for a in local:
        _add_local(h, a, "--local")
    return h


# ------------------------------------------------------------------ kernels
# The *_at variants read a host block embedded at offset b of an int64 array p (b = 0 for HostArrays.prog;
# the compiled ruleset embeds one for addrtype).
@inline_kernel
def route_lookup(ha, family, hi, lo):
    """Interface the host routes (family, hi, lo) through: a pin first, then the longest prefix of the
    main table; -1 when no route."""
    return route_lookup_at(ha.prog, 0, family, hi, lo)


@inline_kernel
def route_lookup_at(p, b, family, hi, lo):
    o = b + p[b + HA_PIN]
    for i in range(p[b + HA_N_PIN]):
        r = o + i * PIN_N
        if p[r + PIN_FAMILY] == family and p[r + PIN_HI] == hi and p[r + PIN_LO] == lo:
            return p[r + PIN_IFACE]
    o = b + p[b + HA_RT]
    for i in range(p[b + HA_N_RT]):
        r = o + i * RT_N
        if p[r + RT_FAMILY] == family and (hi & p[r + RT_MASK_HI]) == p[r + RT_NET_HI] \
                and (lo & p[r + RT_MASK_LO]) == p[r + RT_NET_LO]:
            return p[r + RT_IFACE]
    return np.int64(-1)


@inline_kernel
def _local_entry(p, b, family, hi, lo, iface):
    """Row offset (in p) of the first local-table entry holding the address; -1 none; -2 when that entry
    belongs to another interface than iface (>= 0)."""
    o = b + p[b + HA_LT]
    for i in range(p[b + HA_N_LT]):
        r = o + i * LT_N
        if p[r + LT_FAMILY] == family and (hi & p[r + LT_MASK_HI]) == p[r + LT_NET_HI] \
                and (lo & p[r + LT_MASK_LO]) == p[r + LT_NET_LO]:
            if iface >= 0 and p[r + LT_IFACE] != iface:
                return np.int64(-2)
            return np.int64(r)
    return np.int64(-1)


@inline_kernel
def is_local(ha, family, hi, lo):
    """The address is local: a LOCAL entry of the local table (own addresses, loopback nets)."""
    return is_local_at(ha.prog, 0, family, hi, lo)


@inline_kernel
def is_local_at(p, b, family, hi, lo):
    r = _local_entry(p, b, family, hi, lo, np.int64(-1))
    return r >= 0 and p[r + LT_TYPE] == 2


@kernel
def addr_type(ha, family, hi, lo, iface):
    """XT_ADDRTYPE bits of the address. IPv4 (inet_dev_addr_type): one type: 0.0.0.0/8 and
    255.255.255.255 BROADCAST, 224/4 MULTICAST, else the local-table type (LOCAL / BROADCAST) restricted
    to `iface` when >= 0, else UNICAST. IPv6 (match_type6): UNSPEC for ::, MULTICAST for ff00::/8, else
    UNICAST, plus LOCAL when the address is local."""
    return addr_type_at(ha.prog, 0, family, hi, lo, iface)


@kernel
def addr_type_at(p, b, family, hi, lo, iface):
    if family == 4:
        a = lo & 0xFFFFFFFF
        if (a >> 24) == 0 or a == 0xFFFFFFFF:
            return np.int64(8)
        if (a >> 28) == 0xE:
            return np.int64(32)
        r = _local_entry(p, b, family, hi, lo, iface)
        if r >= 0:
            return np.int64(1) << p[r + LT_TYPE]
        return np.int64(2)
    if hi == 0 and lo == 0:
        return np.int64(1)
    if ((hi >> 56) & 0xFF) == 0xFF:
        return np.int64(32)
    t = np.int64(2)
    r = _local_entry(p, b, family, hi, lo, iface)
    if r >= 0 and p[r + LT_TYPE] == 2:
        t |= 4
    return t


@kernel
def primary_addr(ha, iface, family):
    """First address of `iface` in `family`: (hi, lo, ok)."""
    return primary_addr_at(ha.prog, 0, iface, family)


@kernel
def primary_addr_at(p, b, iface, family):
    o = b + p[b + HA_IA]
    for i in range(p[b + HA_N_IA]):
        r = o + i * IA_N
        if p[r + IA_IFACE] == iface and p[r + IA_FAMILY] == family:
            return p[r + IA_HI], p[r + IA_LO], True
    return np.int64(0), np.int64(0), False


@kernel
def masq_addr(ha, iface, family, nh_hi, nh_lo):
    """Address of `iface` whose subnet holds the next hop (inet_select_addr), else its primary address."""
    return masq_addr_at(ha.prog, 0, iface, family, nh_hi, nh_lo)


@kernel
def masq_addr_at(p, b, iface, family, nh_hi, nh_lo):
    o = b + p[b + HA_IA]
    for i in range(p[b + HA_N_IA]):
        r = o + i * IA_N
        if p[r + IA_IFACE] == iface and p[r + IA_FAMILY] == family \
                and (nh_hi & p[r + IA_MASK_HI]) == (p[r + IA_HI] & p[r + IA_MASK_HI]) \
                and (nh_lo & p[r + IA_MASK_LO]) == (p[r + IA_LO] & p[r + IA_MASK_LO]):
            return p[r + IA_HI], p[r + IA_LO], True
    return primary_addr_at(p, b, iface, family)

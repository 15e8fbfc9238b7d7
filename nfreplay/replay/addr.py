"""Address conversions between text, Python ints and the (hi, lo) uint64 pair of the packet table.

One representation for both families: a 128-bit integer, IPv6 as is, IPv4 v4-mapped
(::ffff:a.b.c.d). `family` travels separately.
"""

from __future__ import annotations

import ipaddress

V4_MAPPED = 0xFFFF << 32  # ::ffff:0:0 as a 128-bit int
V4_MAPPED_LO = 0x0000_FFFF_0000_0000
MASK64 = (1 << 64) - 1


def to_int(addr: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> tuple[int, int]:
    """'10.0.0.1' -> (v4-mapped int, 4); '2001:db8::1' -> (int, 6)."""
    a = ipaddress.ip_address(addr) if isinstance(addr, str) else addr
    if a.version == 4:
        return V4_MAPPED | int(a), 4
    return int(a), 6


def split(v: int) -> tuple[int, int]:
    """128-bit int -> (hi, lo) Python ints, each < 2**64."""
    return (v >> 64) & MASK64, v & MASK64


def join(hi: int, lo: int) -> int:
    return (int(hi) << 64) | int(lo)


def to_text(hi: int, lo: int, family: int) -> str:
    v = join(hi, lo)
    if family == 4:
        return str(ipaddress.IPv4Address(v & 0xFFFFFFFF))
    return str(ipaddress.IPv6Address(v))


def prefix_range(text: str, family: int | None = None) -> tuple[int, int, int]:
    """'10.0.0.0/8' or '10.1.2.3/255.0.0.0' or an address -> (first, last, family), 128-bit ints.

    A non-contiguous mask is not a range; callers that accept masks use masked_value() instead.
    """
    net = ipaddress.ip_network(text, strict=False)
    if net.version == 4:
        return V4_MAPPED | int(net.network_address), V4_MAPPED | int(net.broadcast_address), 4
    return int(net.network_address), int(net.broadcast_address), 6


def is_v4_mapped(v: int) -> bool:
    return (v >> 32) == 0xFFFF


def vector_to_text(hi, lo, family) -> list[str]:
    """Arrays of hi/lo/family -> list of address strings ('' where family is 0). Python speed."""
    out = []
    for h, l, f in zip(hi.tolist(), lo.tolist(), family.tolist()):
        if f == 4:
            out.append(str(ipaddress.IPv4Address(l & 0xFFFFFFFF)))
        elif f == 6:
            out.append(str(ipaddress.IPv6Address((h << 64) | l)))
        else:
            out.append("")
    return out

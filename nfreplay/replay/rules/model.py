"""The format-neutral ruleset model. Front ends (iptables.py, nft.py) build it; compile.py lowers it
to arrays for the fixed kernels in chains.py. Frozen dataclasses, no behaviour.

A Ruleset is a list of Tables. A Table has a family ("ip", "ip6", "inet", "arp", "bridge", "netdev")
and chains; base chains carry hook, priority, type ("filter", "nat", "route") and policy. An iptables
table is a Table of origin "iptables" whose built-in chains are base chains at the kernel's fixed
priorities (raw -300, mangle -150, nat -100 (PRE/OUTPUT) / 100 (POST/INPUT), filter 0, security 50).

A Rule is an ordered tuple of expressions, evaluated left to right like nft_do_chain: a match that
fails ends the rule (next rule), a statement acts, a verdict statement ends the walk. An iptables rule
is its matches followed by one statement (its target) -- or none, then it only counts.

Values:
* addresses are 128-bit Python ints in the packet table's representation (IPv4 v4-mapped, see addr.py);
* sets of values are tuples of closed intervals (lo, hi); a single value v is (v, v);
* interface names are kept as text (iptables '+' suffix = prefix wildcard; nft '*' likewise) and
  resolved against the host model at compile time.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from ..codes import Field

Interval = tuple[int, int]


@dataclass(frozen=True)
class SourceRef:
    file: str  # path as given, or "<string>"
    line: int  # 1-based
    text: str  # the source line (iptables) or the rule text as printed (nft)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}"


# ---------------------------------------------------------------- matches
@dataclass(frozen=True)
class FieldIn:
    """ctx[field] is in one of the intervals (negate: is in none). Absent header -> false either way."""

    field: Field
    values: tuple[Interval, ...]
    negate: bool = False


@dataclass(frozen=True)
class Masked:
    """op "eq": (ctx[field] & mask) == value; op "any": (ctx[field] & mask) != 0. Absent -> false."""

    field: Field
    mask: int
    value: int = 0
    op: str = "eq"
    negate: bool = False


@dataclass(frozen=True)
class AddrMasked:
    """(address & mask) == value for 128-bit address fields (iptables -s with a non-prefix mask)."""

    field: Field
    mask: int
    value: int
    negate: bool = False


@dataclass(frozen=True)
class Iface:
    """Interface name match. field is Field.IIF or Field.OIF; names as written ('eth+' wildcard)."""

    field: Field
    names: tuple[str, ...]
    negate: bool = False


@dataclass(frozen=True)
class SetMatch:
    """The concatenation of fields (one or more) is an element of the named set (nft sets, ipset)."""

    fields: tuple[Field, ...]
    set_name: str
    negate: bool = False


@dataclass(frozen=True)
class AddrType:
    """-m addrtype / nft fib ... type: which is "src" or "dst"; types like {"LOCAL", "UNICAST",
    "BROADCAST", "MULTICAST", "UNSPEC", ...}; limit_iface "in"/"out"/None (--limit-iface-in/out)."""

    which: str
    types: frozenset[str]
    negate: bool = False
    limit_iface: str | None = None


@dataclass(frozen=True)
class Stateful:
    """Matches with state kept across packets, evaluated with per-rule state arrays.

    kind and params:
    * "limit": rate_num, rate_den_s (rate = num per den seconds), burst, over (nft), bytes (nft bytes mode)
    * "hashlimit": name, mode ("srcip"...), rate_num, rate_den_s, burst, upto/above, srcmask, dstmask, expire_ms
    * "recent": name, cmd ("set"|"rcheck"|"update"|"remove"), seconds, hitcount, rttl, side ("source"|"dest"), reap, mask
    * "statistic": mode ("nth"|"random"), every, packet, probability
    * "connlimit": upto/above, mask, saddr/daddr
    * "quota": bytes, over (nft) -- iptables -m quota: quota bytes
    """

    kind: str
    params: tuple[tuple[str, object], ...]
    negate: bool = False

    def get(self, key, default=None):
        for k, v in self.params:
            if k == key:
                return v
        return default


@dataclass(frozen=True)
class Never:
    """Never matches (e.g. an nft payload match on a header the table's family cannot have)."""

    why: str = ""


@dataclass(frozen=True)
class Unsupported:
    """A construct nfreplay does not model. check lists it; run refuses it unless --allow-unsupported,
    and then the rule never matches and is named in the report."""

    feature: str
    text: str


Match = Union[FieldIn, Masked, AddrMasked, Iface, SetMatch, AddrType, Stateful, Never, Unsupported]


# ---------------------------------------------------------------- statements
@dataclass(frozen=True)
class Verdict:
    """kind: "accept" | "drop" | "return" | "jump" | "goto" | "queue" | "continue".
    queue: num (first queue), bypass (--queue-bypass / nft bypass: accept when no listener)."""

    kind: str
    chain: str | None = None
    queue_num: int = 0
    bypass: bool = False


@dataclass(frozen=True)
class Reject:
    """with_: "icmp-port-unreachable" (default), "icmp-net-unreachable", "icmp-host-unreachable",
    "icmp-proto-unreachable", "icmp-net-prohibited", "icmp-host-prohibited", "icmp-admin-prohibited",
    "tcp-reset", "icmp6-no-route", "icmp6-adm-prohibited", "icmp6-addr-unreachable",
    "icmp6-port-unreachable", "icmpx-..." (nft). Terminal: the packet is dropped, a response generated."""

    with_: str = "icmp-port-unreachable"


@dataclass(frozen=True)
class Log:
    """kind "log" (LOG / nft log) or "nflog" (NFLOG / nft log group). Non-terminal."""

    kind: str = "log"
    prefix: str = ""
    level: int = 4
    group: int = 0
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class MarkOp:
    """dest ("mark" | "ctmark") := (dest & and_mask) ^ value, where value is xor_value when src is
    "const", else (ctx[src] & src_mask) with src "mark" | "ctmark" (CONNMARK --save/--restore).
    MARK --set-xmark v/m: and_mask=~m, xor_value=v. --set-mark v/m: and_mask=~m|..., see iptables.py."""

    dest: str
    and_mask: int
    xor_value: int = 0
    src: str = "const"
    src_mask: int = 0xFFFFFFFF
    or_value: int = 0  # applied after the xor: dest |= or_value (MARK --or-mark)


@dataclass(frozen=True)
class CtSet:
    """CT target / nft ct statements: notrack, helper ("ftp"), zone (int), or nft `ct helper set`."""

    notrack: bool = False
    helper: str | None = None
    zone: int | None = None


@dataclass(frozen=True)
class Nat:
    """kind: "snat" | "dnat" | "masquerade" | "redirect" | "netmap".
    addr_lo/addr_hi: 128-bit address range (None: keep / interface address for masquerade & redirect);
    netmap uses addr_lo as the network and prefix_mask as the mask.
    port_lo/port_hi: 0 = keep. flags: subset of {"random", "random-fully", "persistent"}."""

    kind: str
    addr_lo: int | None = None
    addr_hi: int | None = None
    port_lo: int = 0
    port_hi: int = 0
    flags: frozenset[str] = frozenset()
    family: int = 0  # 4 or 6; 0 = from the table
    prefix_mask: int = 0


@dataclass(frozen=True)
class Counter:
    """nft `counter` statement (iptables rules always count)."""


@dataclass(frozen=True)
class VerdictMap:
    """nft `... vmap { key : verdict, ... }` or `vmap @name`: look up the fields' value in the map,
    apply the element's verdict; no element: continue."""

    fields: tuple[Field, ...]
    map_name: str


@dataclass(frozen=True)
class Noop:
    """A target/statement modelled as having no effect on netfilter decisions (TCPMSS, DSCP, TOS, TTL,
    CLASSIFY, ...): recorded in the trace, counted, then evaluation continues."""

    name: str
    text: str = ""


Statement = Union[Verdict, Reject, Log, MarkOp, CtSet, Nat, Counter, VerdictMap, Noop]
Expr = Union[Match, Statement]


# ---------------------------------------------------------------- containers
@dataclass(frozen=True)
class Rule:
    exprs: tuple[Expr, ...]
    source: SourceRef
    text: str  # canonical text: iptables-save form (-A CHAIN ...) or nft rule text
    comment: str | None = None
    counters: tuple[int, int] | None = None  # [packets:bytes] given in the file, informational
    handle: int | None = None


@dataclass(frozen=True)
class Chain:
    name: str
    rules: tuple[Rule, ...]
    hook: str | None = None  # "prerouting" | "input" | "forward" | "output" | "postrouting" | None (regular)
    priority: int | None = None
    type: str = "filter"  # "filter" | "nat" | "route"
    policy: str | None = None  # "accept" | "drop" for base chains
    source: SourceRef | None = None


@dataclass(frozen=True)
class SetDef:
    """A named set or map. key_fields: the Field of each concatenated component (the type, for
    checking); elements: one tuple of intervals per element, one interval per component.
    For maps, data holds one value per element: for verdict maps a Verdict, else an int."""

    name: str
    key_fields: tuple[Field, ...]
    elements: tuple[tuple[Interval, ...], ...]
    data: tuple[object, ...] | None = None
    flags: frozenset[str] = frozenset()
    source: SourceRef | None = None


@dataclass(frozen=True)
class Table:
    family: str  # "ip" | "ip6" | "inet" | ...
    name: str
    chains: tuple[Chain, ...]
    sets: tuple[SetDef, ...] = ()
    origin: str = "iptables"  # "iptables" | "nft"

    def chain(self, name: str) -> Chain:
        for c in self.chains:
            if c.name == name:
                return c
        raise KeyError(name)


@dataclass(frozen=True)
class Ruleset:
    tables: tuple[Table, ...]
    source: str  # file name(s)
    fmt: str  # "iptables" | "nft" | "nft-json"
    digest: str = ""  # sha256 of the input text(s)
    unsupported: tuple[tuple[SourceRef, Unsupported], ...] = field(default=())

    def rules(self):
        """(table, chain, 1-based rule number, rule) for every rule, in file order."""
        for t in self.tables:
            for c in t.chains:
                for i, r in enumerate(c.rules, 1):
                    yield t, c, i, r


# iptables built-in tables: name -> (chain -> (hook, priority, type)); priorities from
# include/uapi/linux/netfilter_ipv4.h enum nf_ip_hook_priorities.
IPTABLES_BUILTINS: dict[str, dict[str, tuple[str, int, str]]] = {
    "raw": {"PREROUTING": ("prerouting", -300, "filter"), "OUTPUT": ("output", -300, "filter")},
    "mangle": {
        "PREROUTING": ("prerouting", -150, "filter"), "INPUT": ("input", -150, "filter"),
        "FORWARD": ("forward", -150, "filter"), "OUTPUT": ("output", -150, "route"),
        "POSTROUTING": ("postrouting", -150, "filter"),
    },
    "nat": {
        "PREROUTING": ("prerouting", -100, "nat"), "INPUT": ("input", 100, "nat"),
        "OUTPUT": ("output", -100, "nat"), "POSTROUTING": ("postrouting", 100, "nat"),
    },
    "filter": {"INPUT": ("input", 0, "filter"), "FORWARD": ("forward", 0, "filter"),
               "OUTPUT": ("output", 0, "filter")},
    "security": {"INPUT": ("input", 50, "filter"), "FORWARD": ("forward", 50, "filter"),
                 "OUTPUT": ("output", 50, "filter")},
}

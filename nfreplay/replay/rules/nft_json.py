"""`nft -j list ruleset` (libnftables-json) -> model, and the builder both nft front ends share.

The text front end (nft_text.py) turns `nft list ruleset` / `nft -f` files into the same command
objects (table, chain, set/map, element, rule with JSON-form statements, objects, flush/delete), so
tables, chains, sets and rules are built and lowered by one piece of code.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field

from ...errors import RulesetSyntaxError
from . import model as m
from .nft_expr import (
    DTYPES,
    NftValueError,
    RuleLowering,
    SetInfo,
    TableContext,
    _Unsup,
    dtype_named,
    render_rule,
)

log = logging.getLogger(__name__)

HOOKS = ("prerouting", "input", "forward", "output", "postrouting")
REPLAYED_FAMILIES = ("ip", "ip6", "inet")
PRIORITY_NAMES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}
BRIDGE_PRIORITY_NAMES = {"dstnat": -300, "filter": -200, "out": 100, "srcnat": 300}


def resolve_priority(name: str, offset: int, family: str) -> int:
    """Standard priority name (+ offset) -> number (doc/nft.txt table)."""
    names = BRIDGE_PRIORITY_NAMES if family == "bridge" else PRIORITY_NAMES
    if name not in names:
        raise KeyError(name)
    return names[name] + offset


@dataclass
class RuleRec:
    exprs: list
    ref: m.SourceRef
    text: str
    comment: str | None = None
    handle: int | None = None
    where: object = None  # callable(i) -> position text of statement i
    locate: object = None  # callable(NftValueError, i) -> (line, column)


@dataclass
class ChainRec:
    name: str
    hook: str | None = None
    priority: int | None = None
    type: str = "filter"
    policy: str | None = None
    ref: m.SourceRef | None = None
    rules: list = field(default_factory=list)
    device: str | None = None


@dataclass
class TableRec:
    family: str
    name: str
    ref: m.SourceRef | None
    chains: dict = field(default_factory=dict)
    sets: list = field(default_factory=list)  # (SetInfo, elements, locate)
    ctx: TableContext | None = None

    def __post_init__(self):
        self.ctx = TableContext(self.family)


class Builder:
    """Collects nft commands in order; build() lowers the rules and returns the model."""

    def __init__(self, source: str):
        self.source = source
        self.tables: dict[tuple[str, str], TableRec] = {}
        self.unsupported: list[tuple[m.SourceRef, m.Unsupported]] = []

    # -- errors
    def error(self, line: int, col: int, token, reason: str):
        return RulesetSyntaxError(self.source, line, col, str(token), reason)

    # -- commands
    def table(self, family: str, name: str, ref: m.SourceRef) -> TableRec:
        key = (family, name)
        if key not in self.tables:
            self.tables[key] = TableRec(family, name, ref)
        return self.tables[key]

    def get_table(self, family: str, name: str, ref: m.SourceRef, col: int = 0) -> TableRec:
        t = self.tables.get((family, name))
        if t is None:
            raise self.error(ref.line, col, name, f"no such table {family} {name}")
        return t

    def chain(self, t: TableRec, name: str, ref: m.SourceRef, hook=None, priority=None, type_=None,
              policy=None, device=None) -> ChainRec:
        c = t.chains.get(name)
        if c is None:
            c = t.chains[name] = ChainRec(name, ref=ref)
        if hook is not None:
            c.hook, c.priority, c.type = hook, priority, type_ or "filter"
            c.policy = policy or "accept"
            c.device = device
        elif policy is not None:
            c.policy = policy
        return c

    def get_chain(self, t: TableRec, name: str, ref: m.SourceRef, col: int = 0) -> ChainRec:
        c = t.chains.get(name)
        if c is None:
            raise self.error(ref.line, col, name, f"no such chain {name} in table {t.family} {t.name}")
        return c

    def set(self, t: TableRec, info: SetInfo, elems, locate) -> None:
        for i, (old, _, _) in enumerate(t.sets):
            if old.name == info.name:
                t.sets[i] = (info, elems, locate)
                break
        else:
            t.sets.append((info, elems, locate))

    def elements(self, t: TableRec, name: str, elems, ref: m.SourceRef, col: int = 0) -> None:
        for info, old, _locate in t.sets:
            if info.name == name:
                old.extend(elems)
                return
        raise self.error(ref.line, col, name, f"no such set {name}")

    def flush(self, what: str, family=None, table=None, chain=None) -> None:
        if what == "ruleset":
            self.tables.clear()
        elif what == "table" and (family, table) in self.tables:
            t = self.tables[(family, table)]
            for c in t.chains.values():
                c.rules.clear()
        elif what == "chain" and (family, table) in self.tables:
            c = self.tables[(family, table)].chains.get(chain)
            if c is not None:
                c.rules.clear()

    def delete(self, what: str, family, table, name=None) -> None:
        t = self.tables.get((family, table))
        if t is None:
            return
        if what == "table":
            del self.tables[(family, table)]
        elif what == "chain":
            t.chains.pop(name, None)
        elif what in ("set", "map"):
            t.sets = [s for s in t.sets if s[0].name != name]

    # -- build
    def build(self, fmt: str, digest: str) -> m.Ruleset:
        tables = []
        for t in self.tables.values():
            ctx = t.ctx
            for info, elems, locate in t.sets:
                try:
                    ctx.fill_set(info, elems)
                except NftValueError as e:
                    line, col = locate(e)
                    raise self.error(line, col, e.token, e.reason) from None
                except _Unsup as u:
                    ctx.unsupported_sets.add(info.name)
                    ref = info.source or t.ref
                    self.unsupported.append((ref, m.Unsupported(f"{u.feature} in set {info.name}", ref.text)))
                    continue
                ctx.sets[info.name] = info
            if t.family not in REPLAYED_FAMILIES:
                self.unsupported.append((t.ref, m.Unsupported(
                    f"nft family {t.family} (only ip, ip6 and inet tables are replayed)",
                    f"table {t.family} {t.name}")))
            lower = RuleLowering(ctx)
            chains = []
            for c in t.chains.values():
                hook = c.hook
                if hook is not None and hook not in HOOKS:
                    self.unsupported.append((c.ref, m.Unsupported(
                        f"base chain hook {hook}", f"chain {t.family} {t.name} {c.name} (hook {hook})")))
                    hook = None
                rules = []
                for r in c.rules:
                    try:
                        exprs, uns = lower.rule(r.exprs, r.where)
                    except NftValueError as e:
                        line, col = r.locate(e)
                        raise self.error(line, col, e.token, e.reason) from None
                    for u in uns:
                        self.unsupported.append((r.ref, u))
                    counters = None
                    for st in r.exprs:
                        if isinstance(st, dict) and isinstance(st.get("unsupported"), dict):
                            st = st["unsupported"]
                        if isinstance(st, dict) and "counter" in st and (
                                st["counter"] is None or isinstance(st["counter"], dict) and "map" not in st["counter"]):
                            cv = st["counter"] or {}
                            counters = (int(cv.get("packets", 0)), int(cv.get("bytes", 0)))
                    rules.append(m.Rule(tuple(exprs), r.ref, r.text, r.comment, counters, r.handle))
                chains.append(m.Chain(c.name, tuple(rules), hook=hook,
                                      priority=c.priority if hook else None,
                                      type=c.type if hook else "filter",
                                      policy=c.policy if hook else None, source=c.ref))
            sets = tuple(info.to_def() for info in ctx.sets.values())
            tables.append(m.Table(t.family, t.name, tuple(chains), sets, origin="nft"))
        return m.Ruleset(tuple(tables), self.source, fmt, digest, tuple(self.unsupported))


# ---------------------------------------------------------------- JSON front end
def _set_info(obj: dict, ref: m.SourceRef, is_map: bool) -> SetInfo:
    typ = obj.get("type")
    if typ is None:
        raise _Unsup("set without type")
    types = typ if isinstance(typ, list) else [typ]
    flags = obj.get("flags") or []
    if isinstance(flags, str):
        flags = [flags]
    data = None
    if is_map:
        d = obj.get("map")
        if isinstance(d, list):
            raise _Unsup("map data concatenation")
        data = DTYPES["verdict"] if d == "verdict" else dtype_named(d)
    return SetInfo(obj["name"], tuple(dtype_named(x) for x in types), data, is_map, frozenset(flags),
                   source=ref)


def parse_nft_json(text: str, source: str = "<string>", digest: str = "") -> m.Ruleset:
    """libnftables JSON (`nft -j list ruleset`, or a JSON command batch) -> model.Ruleset.

    SourceRef.line is the 1-based index of the object in the `nftables` array (nft -j prints one line).
    """
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        raise RulesetSyntaxError(source, e.lineno, e.colno, text[e.pos:e.pos + 10], f"invalid JSON: {e.msg}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("nftables"), list):
        raise RulesetSyntaxError(source, 1, 1, text[:10], 'not an nftables JSON document (no "nftables" list)')
    b = Builder(source)
    for i, item in enumerate(doc["nftables"], 1):
        if not isinstance(item, dict) or len(item) != 1:
            raise RulesetSyntaxError(source, i, 0, json.dumps(item)[:40], "each nftables entry must be one object")
        cmd, obj = next(iter(item.items()))
        try:
            _json_command(b, cmd, obj, i, source)
        except (KeyError, TypeError) as e:
            raise RulesetSyntaxError(source, i, 0, json.dumps(item)[:60],
                                     f"malformed {cmd} object ({e.__class__.__name__}: {e})") from None
        except _Unsup as u:
            ref = m.SourceRef(source, i, json.dumps(item)[:200])
            b.unsupported.append((ref, m.Unsupported(f"{u.feature} (nftables[{i - 1}])", ref.text)))
    return b.build("nft-json", digest)


def _json_command(b: Builder, cmd: str, obj, i: int, source: str, verb: str = "add") -> None:
    if cmd == "metainfo":
        return
    if cmd in ("add", "create", "insert", "replace", "flush", "delete", "destroy"):
        for sub, o in obj.items():
            if cmd in ("flush", "delete", "destroy"):
                _json_flush_delete(b, cmd, sub, o)
            else:
                _json_command(b, sub, o, i, source, verb=cmd)
        return
    ref_text = ""
    if cmd == "table":
        b.table(obj.get("family", "ip"), obj["name"], m.SourceRef(source, i, f"table {obj.get('family', 'ip')} "
                                                                           f"{obj['name']}"))
        return
    fam = obj.get("family", "ip")
    ref = m.SourceRef(source, i, ref_text)
    t = b.tables.get((fam, obj.get("table")))
    if t is None:
        raise RulesetSyntaxError(source, i, 0, str(obj.get("table")), f"no such table {fam} {obj.get('table')}")
    if cmd == "chain":
        prio = obj.get("prio")
        if isinstance(prio, str):
            prio = resolve_priority(prio, 0, fam)
        ref = m.SourceRef(source, i, f"chain {fam} {t.name} {obj['name']}")
        b.chain(t, obj["name"], ref, obj.get("hook"), prio, obj.get("type"), obj.get("policy"), obj.get("dev"))
    elif cmd == "rule":
        c = b.get_chain(t, obj["chain"], ref)
        exprs = obj.get("expr") or []
        text = render_rule(exprs)
        rr = RuleRec(exprs, m.SourceRef(source, i, text), text, obj.get("comment"), obj.get("handle"),
                     where=lambda k, i=i: f"nftables[{i - 1}] expr[{k}]",
                     locate=lambda e, i=i: (i, 0))
        if verb == "insert":
            c.rules.insert(0, rr)
        else:
            c.rules.append(rr)
    elif cmd in ("set", "map"):
        info = _set_info(obj, m.SourceRef(source, i, f"{cmd} {fam} {t.name} {obj['name']}"), cmd == "map")
        b.set(t, info, list(obj.get("elem") or []), lambda e, i=i: (i, 0))
    elif cmd == "element":
        b.elements(t, obj["name"], list(obj.get("elem") or []), ref)
    elif cmd == "ct helper":
        t.ctx.helpers[obj["name"]] = obj.get("type")
    elif cmd in ("quota", "limit"):
        t.ctx.objects[(cmd, obj["name"])] = obj
    elif cmd == "counter":
        t.ctx.objects[("counter", obj["name"])] = {}
    elif cmd in ("flowtable", "secmark", "ct timeout", "ct expectation", "synproxy"):
        log.debug("nft object %s %s ignored (no replay effect by itself)", cmd, obj.get("name"))
    else:
        raise _Unsup(f"nft JSON object {cmd!r}")


def _json_flush_delete(b: Builder, cmd: str, sub: str, o) -> None:
    if sub == "ruleset":
        if cmd == "flush":
            b.flush("ruleset")
        return
    fam, table = o.get("family", "ip"), o.get("table", o.get("name"))
    if cmd == "flush":
        if sub == "table":
            b.flush("table", fam, o["name"])
        elif sub == "chain":
            b.flush("chain", fam, table, o["name"])
    else:
        b.delete(sub, fam, table if sub != "table" else o["name"], o.get("name"))

"""`nft list ruleset` / `nft -f` text -> model (through the same builder and lowering as JSON).

The parser is a small recursive-descent parser over a token stream. Statements are turned into the
libnftables-JSON objects the JSON front end reads (values stay as written; nft_expr parses them by
type). Grammar: nftables doc/nft.txt; what nft prints: src/rule.c / src/statement.c.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from pathlib import Path

from ...errors import RulesetSyntaxError
from . import model as m
from .nft_expr import META_UNQUALIFIED, NftValueError, SetInfo, _Unsup, dtype_named
from .nft_json import Builder, RuleRec, resolve_priority

FAMILIES = ("ip", "ip6", "inet", "arp", "bridge", "netdev")
PAYLOAD_PROTOS = ("ip", "ip6", "tcp", "udp", "udplite", "sctp", "dccp", "th", "icmp", "icmpv6", "ether", "vlan",
                  "arp", "ah", "esp", "comp", "gre", "geneve", "vxlan", "gretap", "igmp", "icmpx")
OTHER_EXPRS = ("jhash", "symhash", "rt", "socket", "osf", "ipsec", "hbh", "rt0", "rt2", "rt4", "srh", "frag",
               "dst", "mh", "exthdr", "tunnel", "dccp", "cgroupv2", "sctp", "tcpopt")
RELOPS = {"==": "==", "!=": "!=", "!": "!", "<": "<", ">": ">", "<=": "<=", ">=": ">=", "eq": "==", "ne": "!=",
          "lt": "<", "gt": ">", "le": "<=", "ge": ">="}
BITMASK_KEYS = (("payload", "tcp", "flags"), ("ct", "state"), ("ct", "status"))
TERMINATORS = ("\n", ";", "}", "EOF", "HANDLE")
VERDICT_WORDS = ("accept", "drop", "continue", "return")

_WORD = re.compile(r"[A-Za-z0-9_.:/\-+*$@\[\]%~]+")
_PUNCT = ("==", "!=", "<=", ">=", "<<", ">>", "{", "}", "(", ")", ";", ",", "=", "<", ">", "&", "|", "^", "!")
_HANDLE = re.compile(r"#\s*handle\s+(\d+)")


@dataclass
class Tok:
    kind: str  # "word" | "str" | "p" (punctuation, incl. "\n") | "HANDLE" | "EOF"
    text: str
    line: int
    col: int
    pos: int


def tokenize(text: str, source: str) -> list[Tok]:
    toks: list[Tok] = []
    i, line, lstart, n = 0, 1, 0, len(text)
    while i < n:
        c = text[i]
        col = i - lstart + 1
        if c == "\n":
            toks.append(Tok("p", "\n", line, col, i))
            i += 1
            line += 1
            lstart = i
        elif c in " \t\r":
            i += 1
        elif c == "\\" and text.startswith("\n", i + 1):
            i += 2
            line += 1
            lstart = i
        elif c == "#":
            j = text.find("\n", i)
            j = n if j < 0 else j
            mh = _HANDLE.match(text, i, j)
            if mh:
                toks.append(Tok("HANDLE", mh.group(1), line, col, i))
            i = j
        elif c == '"':
            j = i + 1
            buf = []
            while j < n and text[j] != '"':
                if text[j] == "\\" and j + 1 < n:
                    j += 1
                if text[j] == "\n":
                    raise RulesetSyntaxError(source, line, col, text[i:j], "unterminated string")
                buf.append(text[j])
                j += 1
            if j >= n:
                raise RulesetSyntaxError(source, line, col, text[i:j][:20], "unterminated string")
            toks.append(Tok("str", "".join(buf), line, col, i))
            i = j + 1
        else:
            mw = _WORD.match(text, i)
            if mw:
                w = mw.group(0)
                toks.extend(_split_word(w, line, col, i))
                i = mw.end()
                continue
            for p in _PUNCT:
                if text.startswith(p, i):
                    toks.append(Tok("p", p, line, col, i))
                    i += len(p)
                    break
            else:
                raise RulesetSyntaxError(source, line, col, c, "unexpected character")
    toks.append(Tok("EOF", "", line, i - lstart + 1, n))
    return toks


def _split_word(w: str, line: int, col: int, pos: int) -> list[Tok]:
    """`1.2.3.4:80` -> 1.2.3.4 : 80; `25:accept` -> 25 : accept; `[fe80::1]:80` -> [fe80::1] : 80.
    IPv6 and MAC addresses (several colons) stay whole."""
    if w.startswith("[") and "]:" in w:
        k = w.index("]:")
        return [Tok("word", w[:k + 1], line, col, pos), Tok("p", ":", line, col + k + 1, pos + k + 1),
                Tok("word", w[k + 2:], line, col + k + 2, pos + k + 2)]
    if ":::" in w and re.fullmatch(r"[a-z]+", w[w.index(":::") + 3:] or "0"):  # aaaa:::accept (v6 :: then :)
        k = w.index(":::") + 2
        return [Tok("word", w[:k], line, col, pos), Tok("p", ":", line, col + k, pos + k),
                Tok("word", w[k + 1:], line, col + k + 1, pos + k + 1)]
    if w.endswith(":") and not w.endswith("::") and w.count(":") > 1:  # ::dddd: drop
        return [Tok("word", w[:-1], line, col, pos), Tok("p", ":", line, col + len(w) - 1, pos + len(w) - 1)]
    if w.count(":") == 1:
        k = w.index(":")
        out = []
        if k:
            out.append(Tok("word", w[:k], line, col, pos))
        out.append(Tok("p", ":", line, col + k, pos + k))
        if k + 1 < len(w):
            out.append(Tok("word", w[k + 1:], line, col + k + 1, pos + k + 1))
        return out
    return [Tok("word", w, line, col, pos)]


class _Parser:
    def __init__(self, text: str, source: str, builder: Builder, defines: dict, depth: int = 0):
        self.text, self.source, self.b, self.defines, self.depth = text, source, builder, defines, depth
        self.toks = tokenize(text, source)
        self.i = 0
        self.join_colon = True
        self.lines = text.splitlines()

    # -- token helpers
    @property
    def t(self) -> Tok:
        return self.toks[self.i]

    def peek(self, k: int = 1) -> Tok:
        return self.toks[min(self.i + k, len(self.toks) - 1)]

    def next(self) -> Tok:
        t = self.toks[self.i]
        if t.kind != "EOF":
            self.i += 1
        return t

    def err(self, tok: Tok, reason: str):
        return RulesetSyntaxError(self.source, tok.line, tok.col, tok.text if tok.kind != "EOF" else "end of file",
                                  reason)

    def is_(self, text: str, k: int = 0) -> bool:
        t = self.peek(k) if k else self.t
        return t.text == text and t.kind in ("word", "p")

    def word(self, what: str = "a name") -> str:
        t = self.next()
        if t.kind == "word":
            if t.text.startswith("$"):
                v = self._define(t)
                if isinstance(v, str):
                    return v
                raise self.err(t, f"variable does not hold {what}")
            return t.text
        if t.kind == "str":
            return t.text
        raise self.err(t, f"expected {what}")

    def expect(self, text: str) -> Tok:
        t = self.next()
        if t.text != text or t.kind not in ("word", "p"):
            raise self.err(t, f"expected {text!r}")
        return t

    def skip_nl(self) -> None:
        while self.t.kind in ("p", "HANDLE") and self.t.text in ("\n", ";") or self.t.kind == "HANDLE":
            self.next()

    def end_of_stmt(self) -> bool:
        t = self.t
        return t.kind in ("EOF", "HANDLE") or (t.kind == "p" and t.text in ("\n", ";", "}"))

    def ref(self, tok: Tok, text: str | None = None) -> m.SourceRef:
        line_text = self.lines[tok.line - 1].strip() if tok.line - 1 < len(self.lines) else ""
        return m.SourceRef(self.source, tok.line, text if text is not None else line_text)

    def _define(self, t: Tok):
        name = t.text[1:]
        if name not in self.defines:
            raise self.err(t, f"undefined variable ${name}")
        return copy.deepcopy(self.defines[name])

    # -- top level
    def parse(self) -> None:
        while True:
            self.skip_nl()
            t = self.t
            if t.kind == "EOF":
                return
            if t.kind != "word":
                raise self.err(t, "expected a command (table, add, define, include, flush...)")
            w = t.text
            if w == "table":
                self.next()
                self.table_block(t)
            elif w in ("define", "redefine"):
                self.next()
                name = self.word("a variable name")
                self.expect("=")
                self.defines[name] = self.rhs(allow_list=True)
            elif w == "undefine":
                self.next()
                self.defines.pop(self.word("a variable name"), None)
            elif w == "include":
                self.next()
                self.include(t)
            elif w in ("add", "create", "insert", "replace", "flush", "delete", "destroy"):
                self.next()
                self.command(w, t)
            elif w in ("list", "reset", "monitor", "describe", "export", "import", "rename"):
                raise self.err(t, f"'{w}' is not a ruleset command (give the output of nft list ruleset)")
            elif w in ("chain", "set", "map", "rule", "element"):  # implicit add
                self.command("add", t)
            else:
                raise self.err(t, "expected a command (table, add, define, include, flush...)")

    def include(self, t: Tok) -> None:
        st = self.next()
        if st.kind != "str":
            raise self.err(st, "include needs a quoted file name")
        base = Path(self.source).parent if self.source != "<string>" else Path.cwd()
        p = Path(st.text)
        if not p.is_absolute():
            p = base / p
        paths = sorted(p.parent.glob(p.name)) if any(c in p.name for c in "*?[") else [p]
        if not paths and not any(c in p.name for c in "*?["):
            raise self.err(st, f"cannot read include file {p}")
        if self.depth > 16:
            raise self.err(st, "include nesting too deep")
        for q in paths:
            try:
                txt = q.read_text()
            except OSError as e:
                raise self.err(st, f"cannot read include file {q}: {e.strerror}") from None
            _Parser(txt, str(q), self.b, self.defines, self.depth + 1).parse()

    def family_name(self):
        """[family] name -> (family, name)."""
        t = self.t
        if t.kind == "word" and t.text in FAMILIES and self.peek().kind in ("word", "str") \
                and not self.is_("{", 1):
            self.next()
            return t.text, self.word("a table name")
        return "ip", self.word("a table name")

    def command(self, verb: str, t0: Tok) -> None:
        what = self.word("an object kind")
        if what == "ct":
            what = "ct " + self.word("an object kind")
        if what == "ruleset":
            if verb == "flush":
                self.b.flush("ruleset")
            self.skip_to_eol()
            return
        if what == "table":
            fam, name = self.family_name()
            if verb in ("delete", "destroy"):
                self.b.delete("table", fam, name)
                self.skip_to_eol()
                return
            if verb == "flush":
                self.b.flush("table", fam, name)
                return
            tb = self.b.table(fam, name, self.ref(t0))
            if self.is_("{"):
                self.table_body(tb)
            return
        fam, tname = self.family_name()
        tb = self.b.tables.get((fam, tname))
        if tb is None:
            if verb in ("delete", "destroy", "flush"):
                self.skip_to_eol()
                return
            raise self.err(self.toks[self.i - 1], f"no such table {fam} {tname}")
        if what == "chain":
            ctok = self.t
            name = self.word("a chain name")
            if verb in ("delete", "destroy"):
                self.b.delete("chain", fam, tname, name)
                self.skip_to_eol()
            elif verb == "flush":
                self.b.flush("chain", fam, tname, name)
            else:
                c = self.b.chain(tb, name, self.ref(ctok, f"chain {fam} {tname} {name}"))
                if self.is_("{"):
                    self.next()
                    self.chain_body(tb, c)
        elif what == "rule":
            ctok = self.t
            name = self.word("a chain name")
            if verb in ("delete", "destroy"):
                self.skip_to_eol()
                return
            c = self.b.get_chain(tb, name, self.ref(ctok), ctok.col)
            pos = None
            if self.is_("position") or self.is_("handle") or self.is_("index"):
                self.next()
                pos = self.word("a number")
            rr = self.rule(tb)
            if verb == "insert" and pos is None:
                c.rules.insert(0, rr)
            elif verb == "insert":
                idx = next((k for k, r in enumerate(c.rules) if str(r.handle) == pos), 0)
                c.rules.insert(idx, rr)
            else:
                c.rules.append(rr)
        elif what in ("set", "map"):
            stok = self.t
            name = self.word("a set name")
            if verb in ("delete", "destroy"):
                self.b.delete(what, fam, tname, name)
                self.skip_to_eol()
                return
            if verb == "flush":
                return
            self.expect("{")
            self.set_body(tb, name, what == "map", stok)
        elif what == "element":
            stok = self.t
            name = self.word("a set name")
            if verb in ("delete", "destroy"):
                raise self.err(t0, "delete element is not supported")
            elems = self.elements_block()
            self.b.elements(tb, name, elems, self.ref(stok), stok.col)
        else:
            name = self.word("an object name")
            if self.is_("{"):
                self.object_body(tb, what, name)
            else:
                self.skip_to_eol()

    def skip_to_eol(self) -> None:
        while not self.end_of_stmt():
            if self.is_("{"):
                self.skip_block()
            else:
                self.next()

    def skip_block(self) -> None:
        depth = 0
        while True:
            t = self.next()
            if t.kind == "EOF":
                raise self.err(t, "unbalanced braces")
            if t.kind == "p" and t.text == "{":
                depth += 1
            elif t.kind == "p" and t.text == "}":
                depth -= 1
                if depth == 0:
                    return

    # -- table
    def table_block(self, t0: Tok) -> None:
        fam, name = self.family_name()
        tb = self.b.table(fam, name, self.ref(t0, f"table {fam} {name}"))
        if not self.is_("{"):  # `table inet fw4` alone declares the table (like `add table`)
            if not self.end_of_stmt():
                raise self.err(self.t, "expected '{' or the end of the line")
            return
        self.table_body(tb)

    def table_body(self, tb) -> None:
        self.expect("{")
        while True:
            self.skip_nl()
            t = self.t
            if t.kind == "p" and t.text == "}":
                self.next()
                return
            if t.kind != "word":
                raise self.err(t, "expected chain, set, map, flags or an object in a table")
            w = t.text
            self.next()
            if w in ("define", "redefine"):  # scoped define (nft allows them in table blocks)
                name = self.word("a variable name")
                self.expect("=")
                self.defines[name] = self.rhs(allow_list=True)
            elif w == "include":
                self.include(t)
            elif w == "chain":
                ctok = self.t
                name = self.word("a chain name")
                c = self.b.chain(tb, name, self.ref(ctok, f"chain {tb.family} {tb.name} {name}"))
                self.expect("{")
                self.chain_body(tb, c)
            elif w in ("set", "map"):
                stok = self.t
                name = self.word("a set name")
                self.expect("{")
                self.set_body(tb, name, w == "map", stok)
            elif w in ("flags", "comment"):
                self.skip_to_eol()
            elif w in ("counter", "quota", "limit", "flowtable", "secmark", "synproxy", "tunnel"):
                name = self.word("an object name")
                self.object_body(tb, w, name)
            elif w == "ct":
                kind = self.word("helper, timeout or expectation")
                name = self.word("an object name")
                self.object_body(tb, "ct " + kind, name)
            else:
                raise self.err(t, "expected chain, set, map, flags or an object in a table")

    def object_body(self, tb, kind: str, name: str) -> None:
        self.expect("{")
        toks: list[Tok] = []
        depth = 1
        while True:
            t = self.next()
            if t.kind == "EOF":
                raise self.err(t, "unbalanced braces")
            if t.kind == "p" and t.text == "{":
                depth += 1
            elif t.kind == "p" and t.text == "}":
                depth -= 1
                if depth == 0:
                    break
            toks.append(t)
        words = [x.text for x in toks if not (x.kind == "p" and x.text in ("\n", ";"))]
        if kind == "counter":
            tb.ctx.objects[("counter", name)] = {}
        elif kind == "ct helper":
            if "type" not in words:
                raise self.err(toks[0] if toks else t, "ct helper needs a type")
            tb.ctx.helpers[name] = words[words.index("type") + 1]
        elif kind in ("quota", "limit"):
            if "comment" in words:
                k = words.index("comment")
                del words[k:k + 2]
            try:
                tb.ctx.objects[(kind, name)] = self._object_spec(kind, words)
            except (_Unsup, IndexError, ValueError):
                tb.ctx.objects[(kind, name)] = None  # declared, not modelled: rules using it are unsupported

    def _object_spec(self, kind: str, words: list[str]) -> dict:
        if kind == "quota":
            inv = "over" in words
            ws = [x for x in words if x not in ("over", "until")]
            used = {}
            if "used" in ws:
                k = ws.index("used")
                used = {"used": int(ws[k + 1]), "used_unit": ws[k + 2] if len(ws) > k + 2 else "bytes"}
                del ws[k:]
            return {"val": int(ws[0]), "val_unit": ws[1] if len(ws) > 1 else "bytes", "inv": inv, **used}
        return self._limit_words(words)

    # -- chain
    def chain_body(self, tb, c) -> None:
        while True:
            self.skip_nl()
            t = self.t
            if t.kind == "p" and t.text == "}":
                self.next()
                return
            if t.kind == "EOF":
                raise self.err(t, "missing '}' at the end of the chain")
            if self.is_("type") and self.peek().kind == "word" and self.peek(2).text == "hook":
                self.base_chain(tb, c)
            elif self.is_("policy"):
                self.next()
                pt = self.t
                pol = self.word("accept or drop")
                if pol not in ("accept", "drop"):
                    raise self.err(pt, "chain policy must be accept or drop")
                c.policy = pol
            elif self.is_("comment") and self.peek().kind == "str":
                self.next()
                self.next()
            elif self.is_("devices") or (self.is_("flags") and self.peek().text == "offload"):
                self.skip_to_eol()
            else:
                c.rules.append(self.rule(tb))

    def base_chain(self, tb, c) -> None:
        self.expect("type")
        tt = self.t
        typ = self.word("filter, nat or route")
        if typ not in ("filter", "nat", "route"):
            raise self.err(tt, "chain type must be filter, nat or route")
        self.expect("hook")
        hook = self.word("a hook name")
        dev = None
        if self.is_("device"):
            self.next()
            dev = self.word("a device name")
        elif self.is_("devices"):
            self.next()
            self.expect("=")
            self.rhs()
        self.expect("priority")
        pt = self.t
        prio = self.priority(tb.family)
        self.b.chain(tb, c.name, c.ref, hook, prio, typ, None, dev)
        if not self.end_of_stmt():
            raise self.err(self.t, "expected ';' after the chain priority")
        _ = pt

    def priority(self, family: str) -> int:
        t = self.next()
        if t.kind != "word":
            raise self.err(t, "expected a priority")
        s = t.text
        if s.startswith("$"):
            v = self._define(t)
            s = v if isinstance(v, str) else str(v)
        try:
            base = int(s, 0)
        except ValueError:
            try:
                base = resolve_priority(s, 0, family)
            except KeyError:
                raise self.err(t, "unknown priority name") from None
        if self.t.kind == "word" and self.t.text in ("-", "+"):
            sign = self.next().text
            nt = self.next()
            try:
                off = int(nt.text, 0)
            except ValueError:
                raise self.err(nt, "expected a number after the priority name") from None
            base += off if sign == "+" else -off
        elif self.t.kind == "word" and re.fullmatch(r"[+-]\d+", self.t.text):
            base += int(self.next().text)
        return base

    # -- sets
    def set_body(self, tb, name: str, is_map: bool, stok: Tok) -> None:
        types: list = []
        flags: list[str] = []
        eb: list = [[], stok]  # elements, token where they start
        db: list = [None]  # map data type
        unsupported = None
        while True:
            self.skip_nl()
            t = self.t
            if t.kind == "p" and t.text == "}":
                self.next()
                break
            if t.kind == "EOF":
                raise self.err(t, "missing '}' at the end of the set")
            try:
                self._set_attr(tb, types, flags, eb, db)
            except _UnsupTail as u:
                unsupported = u.feature
                while not self.is_("}") and self.t.kind != "EOF":
                    if self.is_("{"):
                        self.skip_block()
                    else:
                        self.next()
                continue
            if not self.end_of_stmt():
                raise self.err(self.t, "expected a new line or ';'")
        ref = self.ref(stok, f"{'map' if is_map else 'set'} {tb.family} {tb.name} {name}")
        data = db[0]
        if unsupported is None and not types:
            raise self.err(stok, "set without type")
        if unsupported is None:
            try:
                dts = tuple(dtype_named(x) for x in types)
                dd = (dtype_named(data) if data else None) if is_map else None
            except _Unsup as u:
                unsupported = u.feature
        if unsupported is not None:
            tb.ctx.unsupported_sets.add(name)
            self.b.unsupported.append((ref, m.Unsupported(f"{unsupported} in set {name} (line {stok.line} column "
                                                          f"{stok.col})", ref.text)))
            return
        info = SetInfo(name, dts, dd, is_map, frozenset(flags), source=ref)
        self.b.set(tb, info, eb[0], self._locator(eb[1]))

    def _set_attr(self, tb, types: list, flags: list, eb: list, db: list) -> None:
        t = self.t
        w = self.word("a set attribute")
        if w == "type":
            types.append(self.word("a type"))
            while self.is_("."):
                self.next()
                types.append(self.word("a type"))
            if self.is_(":"):
                self.next()
                if self.is_("interval"):
                    self.next()
                db[0] = self.word("a type")
                if self.is_("."):
                    raise _UnsupTail("map data concatenation", self.t)
        elif w == "typeof":
            keys = [self.key_expr()]
            while self.is_("."):
                self.next()
                keys.append(self.key_expr())
            types.extend(_typeof(k, tb) for k in keys)
            if self.is_(":"):
                self.next()
                if self.is_("interval"):
                    self.next()
                if self.t.text in ("verdict", "counter", "quota", "limit", "queue", "secmark"):
                    db[0] = self.next().text
                else:
                    dk = self.key_expr()
                    if self.is_("."):
                        raise _UnsupTail("map data concatenation", self.t)
                    db[0] = _typeof(dk, tb)
        elif w == "flags":
            flags.append(self.word("a flag"))
            while self.is_(","):
                self.next()
                flags.append(self.word("a flag"))
        elif w == "elements":
            self.expect("=")
            eb[1] = self.t
            eb[0] = self.elements_block()
        elif w in ("timeout", "gc-interval", "size", "policy", "comment"):
            self.word("a value")
            if w == "timeout":
                flags.append("timeout")
        elif w in ("counter", "auto-merge", "limit", "quota", "ct", "last"):
            self.skip_to_eol()
        else:
            raise self.err(t, "unknown set attribute")

    def _locator(self, tok: Tok):
        lines = self.lines

        def locate(e: NftValueError, i: int | None = None):
            for ln in range(tok.line - 1, len(lines)):
                k = lines[ln].find(e.token)
                if k >= 0:
                    return ln + 1, k + 1
            return tok.line, tok.col
        return locate

    def elements_block(self) -> list:
        """{ e1, e2 : data, ... } in set/map declarations and `add element`."""
        self.expect("{")
        out = []
        while True:
            while self.t.kind == "p" and self.t.text in ("\n", ","):
                self.next()
            if self.is_("}"):
                self.next()
                return out
            out.append(self.element())

    def element(self):
        t = self.t
        if t.kind == "word" and t.text.startswith("$"):
            self.next()
            v = self._define(t)
            if isinstance(v, dict) and "set" in v:
                return {"concat": []} if False else v  # merged by caller below
            return v
        key = self.value_concat()
        self._skip_elem_attrs()
        if self.is_(":"):
            self.next()
            if self.t.kind == "word" and self.t.text in VERDICT_WORDS + ("jump", "goto"):
                data = self.verdict_obj()
            else:
                data = self.value_concat()
                if self.is_(":") and self.t.pos == self._endpos() and self.peek().kind == "word" \
                        and self.peek().pos == self.t.pos + 1 and isinstance(data, str):
                    self.next()
                    data = data + ":" + self.next().text  # classid 1:bbf8
            self._skip_elem_attrs()
            return [key, data]
        return key

    def _skip_elem_attrs(self) -> None:
        """Per-element timeout/expires/comment/counter/limit/quota: state, not matching data."""
        while self.t.kind == "word" and self.t.text in ("timeout", "expires", "comment", "counter", "limit",
                                                         "quota", "ct", "last"):
            while not (self.t.kind == "EOF" or self.t.kind == "p" and self.t.text in (",", "}", ":", "\n")):
                self.next()
        while self.t.kind == "p" and self.t.text == "\n":
            self.next()

    def verdict_obj(self):
        w = self.next().text
        if w in ("jump", "goto") and self.is_("{"):
            raise _UnsupTail(f"{w} to an anonymous chain", self.toks[self.i - 1])
        if w in ("jump", "goto"):
            return {w: {"target": self.word("a chain name")}}
        return {w: None}

    # -- values
    def value(self):
        """One basic value (word, string, $var, (a|b))."""
        t = self.t
        if t.kind == "str":
            self.next()
            if self.is_("-") and self.peek().kind == "str":  # "00:00"-"02:02"
                self.next()
                return {"range": [t.text, self.next().text]}
            return t.text
        if t.kind == "p" and t.text == "(":
            self.next()
            v = self.value_bitwise()
            self.expect(")")
            return v
        if t.kind == "word":
            self.next()
            if t.text.startswith("$"):
                return self._define(t)
            if t.text == "-" or t.text == ".":
                raise self.err(t, "expected a value")
            if self.join_colon and self.is_(":") and self.t.pos == t.pos + len(t.text) \
                    and self.peek().kind == "word" and self.peek().pos == self.t.pos + 1 \
                    and re.fullmatch(r"[0-9a-fA-F]+", t.text) and re.fullmatch(r"[0-9a-fA-F]+", self.peek().text):
                self.next()
                return t.text + ":" + self.next().text  # tc classid major:minor
            return t.text
        raise self.err(t, "expected a value")

    def value_bitwise(self):
        v = self.value()
        while self.t.kind == "p" and self.t.text == "|":
            self.next()
            w = self.value()
            v = {"|": [v, w]} if not (isinstance(v, dict) and "|" in v) else {"|": v["|"] + [w]}
        return v

    def value_concat(self):
        if self.is_("{"):
            return self.set_literal()
        v = self.value_bitwise()
        if self.is_("."):
            parts = [v]
            while self.is_("."):
                self.next()
                parts.append(self.value_bitwise())
            return {"concat": parts}
        return v

    def set_literal(self):
        self.expect("{")
        out = []
        while True:
            while self.t.kind == "p" and self.t.text in ("\n", ","):
                self.next()
            if self.is_("}"):
                self.next()
                break
            e = self.element()
            if isinstance(e, dict) and "set" in e:
                out.extend(e["set"])
            else:
                out.append(e)
        return {"set": out}

    def rhs(self, allow_list: bool = True):
        """Right-hand side of a relation: set, @set, value list a,b (bitmasks), concat, value."""
        if self.is_("{"):
            return self.set_literal()
        if self.t.kind == "word" and self.t.text.startswith("@"):
            return self.next().text
        v = self.value_concat()
        if allow_list and self.is_(",") and self.peek().kind in ("word", "str"):
            vals = [v]
            while self.is_(","):
                self.next()
                vals.append(self.value_bitwise())
            return vals
        return v

    # -- keys (left-hand expressions)
    def key_expr(self):
        t = self.t
        if t.kind != "word":
            raise self.err(t, "expected an expression")
        w = t.text
        if w in ("gre", "gretap", "geneve", "vxlan") and self.peek().text in PAYLOAD_PROTOS:
            raise _UnsupTail(f"{w} inner header expression", t)
        if w in PAYLOAD_PROTOS and self.peek().kind == "word":
            nxt = self.peek().text
            if w == "tcp" and nxt == "option" or w == "ip" and nxt == "option" or w == "sctp" and nxt == "chunk":
                raise _UnsupTail(f"{w} {nxt} expression", t)
            self.next()
            self.next()
            return {"payload": {"protocol": w, "field": nxt}}
        if w == "meta":
            self.next()
            return {"meta": {"key": self.word("a meta key")}}
        if w in META_UNQUALIFIED:
            self.next()
            return {"meta": {"key": w}}
        if w == "ct":
            self.next()
            d = None
            fam = None
            if self.t.text in ("original", "reply"):
                d = self.next().text
            if self.t.text in ("ip", "ip6") and self.peek().kind == "word":
                fam = self.next().text
            kt = self.t
            key = self.word("a ct key")
            if key in ("count", "label", "event", "id", "avgpkt", "bytes", "packets", "secmark", "timeout",
                       "expectation"):
                raise _UnsupTail(f"ct {key}", kt)
            o = {"key": f"{fam} {key}" if fam else key}
            if d:
                o["dir"] = d
            return {"ct": o}
        if w == "fib":
            self.next()
            flags = [self.word("saddr, daddr, mark, iif or oif")]
            while self.is_("."):
                self.next()
                flags.append(self.word("saddr, daddr, mark, iif or oif"))
            result = self.word("oif, oifname or type")
            return {"fib": {"result": result, "flags": flags}}
        if w == "numgen":
            self.next()
            mode = self.word("inc or random")
            self.expect("mod")
            mod = self.word("a number")
            o = {"mode": mode, "mod": int(mod, 0), "offset": 0}
            if self.is_("offset"):
                self.next()
                o["offset"] = int(self.word("a number"), 0)
            return {"numgen": o}
        if w.startswith("@") and self.peek().text == "," or w in OTHER_EXPRS:
            raise _UnsupTail(f"{w} expression", t)
        raise self.err(t, "unknown expression or statement")

    def key_full(self):
        """key [. key]* [& v | v ^ v ...]."""
        k = self.key_expr()
        if self.is_("."):
            parts = [k]
            while self.is_("."):
                self.next()
                if self.t.kind != "word" or self.t.text not in _KEY_WORDS:
                    raise _UnsupTail("concatenation with a constant", self.t)
                parts.append(self.key_expr())
            k = {"concat": parts}
        while self.t.kind == "p" and self.t.text in ("&", "|", "^", "<<", ">>") or \
                self.t.kind == "word" and self.t.text in ("and", "or", "xor"):
            op = {"and": "&", "or": "|", "xor": "^"}.get(self.t.text, self.t.text)
            self.next()
            k = {op: [k, self.value_bitwise()]}
        return k

    # -- rules
    def rule(self, tb) -> RuleRec:
        t0 = self.t
        stmts: list = []
        cols: list[int] = []
        comment = None
        handle = None
        while not self.end_of_stmt():
            if self.is_("comment") and self.peek().kind == "str":
                self.next()
                comment = self.next().text
                continue
            col = self.t.col
            try:
                s = self.statement()
            except _UnsupTail as u:
                start = u.tok
                while not self.end_of_stmt() and not (self.is_("comment") and self.peek().kind == "str"):
                    if self.is_("{"):
                        self.skip_block()
                    else:
                        self.next()
                s = {"unsupported": {"feature": u.feature, "col": start.col,
                                     "text": self.text[start.pos:self._endpos()].strip()}}
                outer = s["unsupported"]["text"]
                while re.search(r"\{[^{}]*\}", outer):  # not the counters of an anonymous chain's rules
                    outer = re.sub(r"\{[^{}]*\}", "", outer)
                mc = re.search(r"\bcounter packets (\d+) bytes (\d+)", outer)
                if mc:  # informational counters of the rule still count
                    s["unsupported"]["counter"] = {"packets": int(mc.group(1)), "bytes": int(mc.group(2))}
                col = start.col
            stmts.append(s)
            cols.append(col)
        end = self._endpos()
        if self.t.kind == "HANDLE":
            handle = int(self.next().text)
        if not stmts:
            raise self.err(t0, "empty rule")
        text = " ".join(self.text[t0.pos:end].split())
        ref = m.SourceRef(self.source, t0.line, text)
        lines = self.lines

        def where(i, cols=cols, line=t0.line):
            return f"line {line} column {cols[i]}"

        def locate(e: NftValueError, i=None, line=t0.line, col=t0.col):
            ln = lines[line - 1] if line - 1 < len(lines) else ""
            k = ln.find(e.token, col - 1)
            return (line, k + 1) if k >= 0 else (line, col)
        return RuleRec(stmts, ref, text, comment, handle, where, locate)

    def _endpos(self) -> int:
        k = self.i - 1
        while k >= 0 and self.toks[k].kind == "p" and self.toks[k].text == "\n":
            k -= 1
        t = self.toks[k]
        if t.kind == "str":
            return t.pos + len(t.text) + 2
        return t.pos + len(t.text)

    def statement(self):
        t = self.t
        w = t.text if t.kind == "word" else None
        if w is None:
            raise self.err(t, "expected a statement or expression")
        if w in VERDICT_WORDS or w in ("jump", "goto"):
            return self.verdict_obj()
        if w == "queue":
            return self.queue()
        if w == "counter":
            self.next()
            if self.is_("name"):
                self.next()
                if self.t.kind == "word" and self.t.text in _KEY_WORDS:
                    raise _UnsupTail("counter name from a map lookup", t)
                return {"counter": self.word("a counter name")}
            if self.is_("packets") or self.is_("bytes"):
                vals = {}
                while self.t.text in ("packets", "bytes") and self.t.text not in vals:
                    k = self.next().text
                    vt = self.t
                    try:
                        vals[k] = int(self.word("a number"))
                    except ValueError:
                        raise self.err(vt, "expected a number") from None
                return {"counter": {"packets": vals.get("packets", 0), "bytes": vals.get("bytes", 0)}}
            return {"counter": None}
        if w == "log":
            return self.log()
        if w == "limit":
            self.next()
            if self.is_("name"):
                self.next()
                if self.t.kind == "word" and self.t.text in _KEY_WORDS:
                    raise _UnsupTail("limit name from a map lookup", t)
                return {"limit": self.word("a limit name")}
            self.expect("rate")
            words = []
            while not self.end_of_stmt() and not self._stmt_start():
                words.append(self.next().text)
            return {"limit": self._limit_words(words, t)}
        if w == "quota":
            self.next()
            if self.is_("name"):
                self.next()
                if self.t.kind == "word" and self.t.text in _KEY_WORDS:
                    raise _UnsupTail("quota name from a map lookup", t)
                return {"quota": self.word("a quota name")}
            inv = False
            if self.t.text in ("over", "until"):
                inv = self.next().text == "over"
            val = self.word("a number")
            unit = "bytes"
            mq = re.fullmatch(r"(\d+)([a-z]+)", val)
            if mq:
                val, unit = mq.group(1), mq.group(2)
            elif self.t.text in ("bytes", "kbytes", "mbytes", "gbytes"):
                unit = self.next().text
            o = {"val": int(val), "val_unit": unit, "inv": inv}
            if self.is_("used"):
                self.next()
                o["used"] = int(self.word("a number"))
                if self.t.text in ("bytes", "kbytes", "mbytes", "gbytes"):
                    o["used_unit"] = self.next().text
            return {"quota": o}
        if w == "reject":
            return self.reject()
        if w == "notrack":
            self.next()
            return {"notrack": None}
        if w in ("snat", "dnat", "masquerade", "redirect"):
            return self.nat()
        if w == "xt":
            raise _UnsupTail("xt extension (iptables-nft); load the iptables-nft-save output instead", t)
        if w in ("dup", "fwd", "tproxy", "synproxy", "flow", "meter", "set", "add", "update", "delete",
                 "secmark", "objref", "last", "synproxy", "reset", "destroy"):
            raise _UnsupTail(f"{w} statement", t)
        if w == "tcp" and [self.peek(k).text for k in (1, 2, 3, 4)] == ["option", "maxseg", "size", "set"]:
            for _ in range(5):
                self.next()
            if self.is_("rt") and self.peek().text == "mtu":  # MSS clamping to the route MTU
                self.next()
                self.next()
                val = {"rt": {"key": "mtu"}}
            else:
                val = self.value()
            return {"mangle": {"key": {"tcp option": {"name": "maxseg", "field": "size"}}, "value": val}}
        if w == "ct" and self.peek().text == "helper" and self.peek(2).text == "set":
            self.next()
            self.next()
            self.next()
            if not (self.t.kind == "str" or self.t.kind == "word" and self.t.text not in _KEY_WORDS):
                raise _UnsupTail("ct helper set from an expression", t)
            return {"ct helper": self.word("a helper name")}
        if w == "ct" and self.peek().text in ("timeout", "expectation") and self.peek(2).text == "set":
            raise _UnsupTail(f"ct {self.peek().text} set", t)
        # expression: match, vmap or set statement
        left = self.key_full()
        if self.is_("vmap"):
            self.next()
            return {"vmap": {"key": left, "data": self.rhs(allow_list=False)}}
        if self.is_("set"):
            self.next()
            return {"mangle": {"key": left, "value": self.set_value()}}
        if self.is_("map"):
            raise _UnsupTail("data map lookup in a match", t)
        op = None
        if self.t.kind in ("p", "word") and self.t.text in RELOPS:
            op = RELOPS[self.next().text]
        if self.end_of_stmt():
            raise self.err(self.t, "expression without a value to compare with")
        right = self.rhs()
        if self.t.kind == "word" and self.t.text == "/":  # tcp flags syn / syn,ack
            self.next()
            mask = self.rhs()
            return {"match": {"op": op if op in ("==", "!=") else "==", "left": {"&": [left, mask]}, "right": right}}
        if op is None:
            op = "in" if _is_bitmask(left) and not (isinstance(right, dict) and "set" in right) \
                and not (isinstance(right, str) and right.startswith("@")) else "=="
        return {"match": {"op": op, "left": left, "right": right}}

    def _stmt_start(self) -> bool:
        t = self.t
        return t.kind == "word" and t.text in VERDICT_WORDS + ("jump", "goto", "counter", "log", "drop", "reject",
                                                             "queue", "comment", "meta", "ct", "notrack",
                                                             "snat", "dnat", "masquerade", "redirect", "quota",
                                                             "limit", "mark")

    def set_value(self):
        """Value of `meta mark set ...`: operands (keys, constants, parentheses) joined by & | ^ << >>."""
        t0 = self.t
        v = self._operand()
        while self.t.kind == "p" and self.t.text in ("&", "|", "^", "<<", ">>") or \
                self.t.kind == "word" and self.t.text in ("and", "or", "xor"):
            op = {"and": "&", "or": "|", "xor": "^"}.get(self.t.text, self.t.text)
            self.next()
            v = {op: [v, self._operand()]}
        if self.is_("map"):
            raise _UnsupTail("set from a map lookup", t0)
        return v

    def _operand(self):
        t = self.t
        if t.kind == "p" and t.text == "(":
            self.next()
            v = self.set_value()
            self.expect(")")
            return v
        if t.kind == "word" and t.text in _KEY_WORDS:
            k = self.key_expr()
            if self.is_("."):
                parts = [k]
                while self.is_("."):
                    self.next()
                    parts.append(self.key_expr() if self.t.text in _KEY_WORDS else self.value())
                k = {"concat": parts}
            return k
        return self.value()

    def queue(self):
        self.next()
        o: dict = {}
        flags = []
        while not self.end_of_stmt() and not self._stmt_start():
            w = self.next().text
            if w in ("num", "to"):
                if self.t.kind == "word" and self.t.text in _KEY_WORDS:
                    raise _UnsupTail("queue number from an expression", self.toks[self.i - 1])
                n = self.word("a queue number")
                if "-" in n:
                    a, b = n.split("-", 1)
                    o["num"] = {"range": [int(a), int(b)]}
                else:
                    o["num"] = int(n)
            elif w == "flags":
                flags.append(self.word("a queue flag"))
                while self.is_(","):
                    self.next()
                    flags.append(self.word("a queue flag"))
            elif w in ("bypass", "fanout"):
                flags.append(w)
            elif w == ",":
                continue
            else:
                raise self.err(self.toks[self.i - 1], "unknown queue option")
        if flags:
            o["flags"] = flags
        return {"queue": o}

    def log(self):
        self.next()
        o: dict = {}
        while self.t.kind == "word" and self.t.text in ("prefix", "level", "group", "snaplen", "queue-threshold",
                                                         "flags"):
            w = self.next().text
            if w == "flags":
                fl = [self.word("a log flag")]
                if fl[0] in ("tcp", "ip"):
                    fl = [fl[0] + " " + self.word("a log flag")]
                while self.is_(","):
                    self.next()
                    fl.append(self.word("a log flag"))
                o["flags"] = o.get("flags", []) + fl
            elif w in ("prefix", "level"):
                o[w] = self.word(f"a log {w}")
            else:
                o[w] = int(self.word("a number"), 0)
        return {"log": o}

    def _limit_words(self, words: list[str], tok: Tok | None = None) -> dict:
        """rate [over] N[ unit]/per [burst B [unit]] -> JSON limit object."""
        ws = [x for x in words if x not in ("rate",)]
        o: dict = {"inv": False}
        if ws and ws[0] in ("over", "until"):
            o["inv"] = ws.pop(0) == "over"
        joined = " ".join(ws)
        ml = re.match(r"^(\d+)\s*(bytes|kbytes|mbytes|gbytes)?\s*/\s*(second|minute|hour|day|week)"
                      r"(?:\s+burst\s+(\d+)\s*(packets|bytes|kbytes|mbytes)?)?\s*$", joined)
        if not ml:
            if tok is not None:
                raise self.err(tok, f"cannot parse limit rate {joined!r}")
            raise _Unsup(f"limit {joined}")
        o["rate"] = int(ml.group(1))
        o["per"] = ml.group(3)
        if ml.group(2):
            o["rate_unit"] = ml.group(2)
        if ml.group(4):
            o["burst"] = int(ml.group(4))
            if ml.group(5) and ml.group(5) != "packets":
                o["burst_unit"] = ml.group(5)
        elif not ml.group(2):
            o["burst"] = 5
        return o

    def reject(self):
        self.next()
        if not self.is_("with"):
            return {"reject": None}
        self.next()
        typ = self.word("icmp, icmpv6, icmpx or tcp")
        if typ == "tcp":
            self.expect("reset")
            return {"reject": {"type": "tcp reset"}}
        if typ == "icmp6":
            typ = "icmpv6"
        if typ not in ("icmp", "icmpv6", "icmpx"):
            raise self.err(self.toks[self.i - 1], "reject with icmp, icmpv6, icmpx or tcp reset")
        if self.is_("type"):
            self.next()
        return {"reject": {"type": typ, "expr": self.word("a reject code")}}

    def nat(self):
        kind = self.next().text
        o: dict = {}
        if self.t.text in ("ip", "ip6") and self.peek().text in ("to", "prefix", "addr"):
            o["family"] = self.next().text
        if self.is_("prefix") or self.is_("addr"):
            raise _UnsupTail(f"{kind} {self.t.text} to", self.t)
        if self.is_("to"):
            self.next()
            if self.is_(":"):
                self.next()
                if self.t.kind == "word" and self.t.text in _KEY_WORDS:
                    raise _UnsupTail(f"{kind} port from an expression", self.t)
                o["port"] = self.word("a port")
            elif kind in ("masquerade", "redirect"):
                o["port"] = self.word("a port")
            else:
                t = self.t
                if t.kind == "word" and t.text in _KEY_WORDS:
                    raise _UnsupTail(f"{kind} to an expression or map lookup", t)
                self.join_colon = False
                try:
                    o["addr"] = self.value()
                finally:
                    self.join_colon = True
                if self.is_(":"):
                    self.next()
                    if self.t.kind == "word" and self.t.text in _KEY_WORDS:
                        raise _UnsupTail(f"{kind} port from an expression", self.t)
                    o["port"] = self.word("a port")
        flags = []
        while self.t.kind == "word" and self.t.text in ("random", "fully-random", "persistent", "netmap") \
                or (self.is_(",") and self.peek().text in ("random", "fully-random", "persistent", "netmap")):
            if self.is_(","):
                self.next()
                continue
            flags.append(self.next().text)
        if flags:
            o["flags"] = flags
        return {kind: o or None}


_KEY_WORDS = frozenset(PAYLOAD_PROTOS) | frozenset(META_UNQUALIFIED) | frozenset(OTHER_EXPRS) | {
    "meta", "ct", "numgen", "jhash", "symhash", "fib"}


class _UnsupTail(Exception):
    """An unsupported expression/statement: the rest of the rule is skipped and recorded."""

    def __init__(self, feature: str, tok: Tok):
        self.feature, self.tok = feature, tok
        super().__init__(feature)


def _is_bitmask(left) -> bool:
    if not isinstance(left, dict):
        return False
    if "payload" in left:
        p = left["payload"]
        return (p.get("protocol"), p.get("field")) == ("tcp", "flags")
    if "ct" in left:
        return left["ct"].get("key") in ("state", "status")
    return False


def _typeof(k, tb) -> str:
    """`typeof EXPR` -> the datatype name the lowering gives that expression."""
    from .nft_expr import RuleLowering

    try:
        return RuleLowering(tb.ctx).key(k).dtype.name
    except _Unsup as u:
        raise _UnsupTail(f"typeof {u.feature}", Tok("word", "typeof", 0, 0, 0)) from None


def parse_text(text: str, source: str, digest: str = "") -> m.Ruleset:
    b = Builder(source)
    p = _Parser(text, source, b, {})
    p.parse()
    # text-side unsupported statements carry their column in the statement
    return b.build("nft", digest)

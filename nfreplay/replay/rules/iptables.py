"""iptables-save / ip6tables-save / `iptables -S` / free-form rule text -> model.Ruleset.

The file grammar is iptables-restore's (spec §3.1): `*table` blocks of `:CHAIN POLICY [p:b]` lines and
rule lines ending in `COMMIT`; `#` comments. Without any `*table` line the text is read as `iptables -S`
output or hand-written commands (`-P`, `-N`, `-A`, `-I`, optionally `-t TABLE`, optionally prefixed by
`iptables`/`ip6tables`), each line on its own. Rule lines are tokenised like iptables-restore
(`add_param_to_argv`: blanks split, double quotes group, `\\` escapes inside quotes) and parsed like
`do_parse` (getopt_long: `--opt=value`, `-ptcp`, `!` before an option); options after `-m NAME` belong to
that match, an unclaimed option loads the match named after `-p` once (spec §3.2), options after
`-j TARGET` belong to the target. Each rule is lowered through the module registry in
iptables_matches.py and carries its canonical iptables-save text.

Every problem is a RulesetSyntaxError(file, line, column, token, reason); modules nfreplay recognises but
does not model become model.Unsupported in the rule (and in Ruleset.unsupported), never an error.
"""

from __future__ import annotations

import hashlib
import logging
import re
from dataclasses import dataclass, field

from ...errors import RulesetSyntaxError
from ..codes import Field
from . import iptables_matches as reg
from . import model as m

log = logging.getLogger(__name__)

__all__ = ["parse_iptables", "parse_iptables_files", "parse_rule", "load_ipset_save", "resolve_set_matches", "sniff_family", "tokenize"]

MAX_LINE = 10240
IFNAMSIZ = 16
BUILTIN_ORDER = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")
HOOK_OF = {"PREROUTING": "prerouting", "INPUT": "input", "FORWARD": "forward", "OUTPUT": "output",
           "POSTROUTING": "postrouting"}


# ---------------------------------------------------------------- tokens
@dataclass
class Tok:
    text: str
    col: int  # 1-based column of the token's first character in the source line
    raw: str = ""  # as written (for error messages)


_WORD = re.compile(r"[^ \t\r\n]+")


def tokenize(line: str, err) -> list[Tok]:
    """Split like iptables-restore: blanks separate, `"` quotes (also mid-token), `\\` escapes the next
    character inside quotes. Single quotes are accepted as a convenience for hand-written lines."""
    if '"' not in line and "'" not in line:  # fast path: no quoting
        return [Tok(mt.group(), mt.start() + 1, mt.group()) for mt in _WORD.finditer(line)]
    toks: list[Tok] = []
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] in " \t\r\n":
            i += 1
        if i >= n:
            break
        start = i
        buf = []
        quote = None
        while i < n:
            c = line[i]
            if quote:
                if c == "\\" and quote == '"' and i + 1 < n:
                    buf.append(line[i + 1])
                    i += 2
                    continue
                if c == quote:
                    quote = None
                    i += 1
                    continue
                buf.append(c)
                i += 1
                continue
            if c in " \t\r\n":
                break
            if c in "\"'":
                quote = c
                i += 1
                continue
            buf.append(c)
            i += 1
        if quote:
            err(start + 1, line[start:i], "unterminated quoted string")
        toks.append(Tok("".join(buf), start + 1, line[start:i]))
    return toks


# global options: long name -> (short, takes argument)
_GLOBAL_LONG = {
    "source": "s", "src": "s", "destination": "d", "dst": "d", "protocol": "p", "in-interface": "i",
    "out-interface": "o", "fragment": "f", "jump": "j", "goto": "g", "match": "m", "set-counters": "c",
    "table": "t", "append": "A", "insert": "I", "new-chain": "N", "policy": "P", "delete": "D", "replace": "R",
    "flush": "F", "delete-chain": "X", "zero": "Z", "rename-chain": "E", "ipv4": "4", "ipv6": "6",
    "numeric": "n", "verbose": "v", "exact": "x", "wait": "w", "line-numbers": "L0",
}
_SHORT_ARG = set("sdpiojgmtcAINPDRFXZE")  # short options whose argument may be glued (-ptcp)
_SHORT_FLAG = set("f46nvx")
_COMMANDS = set("AINPDRFXZE")


def _split_getopt(toks: list[Tok]) -> list[Tok]:
    """`--opt=value` -> two tokens; `-ptcp` -> `-p`, `tcp`."""
    out = []
    for t in toks:
        s = t.text
        if s.startswith("--") and "=" in s and len(s) > 3:
            k, _, v = s.partition("=")
            out.append(Tok(k, t.col, k))
            out.append(Tok(v, t.col + len(k) + 1, v))
        elif len(s) > 2 and s[0] == "-" and s[1] != "-" and s[1] in _SHORT_ARG and not s[1:].isdigit():
            out.append(Tok(s[:2], t.col, s[:2]))
            out.append(Tok(s[2:], t.col + 2, s[2:]))
        else:
            out.append(t)
    return out


# ---------------------------------------------------------------- rule parsing
@dataclass
class _Inst:
    mod: reg.Module | None
    name: str
    kind: str  # "match" | "target"
    col: int
    token: str
    given: dict = field(default_factory=dict)
    raw: list = field(default_factory=list)  # unsupported: tokens as written
    implicit: bool = False


@dataclass
class ParsedRule:
    """The result of parsing one rule line's arguments (before expansion of address lists)."""

    command: str  # "A", "I", "N", "P", "F", "X", "Z", "D", "R", "E", "" (bare rule)
    chain: str | None
    rulenum: int | None
    policy: str | None
    table: str | None
    rules: list  # list of (exprs, canonical text without "-A CHAIN", comment, unsupported features, hooks)
    counters: tuple[int, int] | None
    only_family: str | None  # "-4"/"-6"
    jump: tuple[str, str, int, str] | None  # (kind, chain, col, token) for user-chain jumps
    target_tables: frozenset | None
    target_hooks: list  # [(hooks, why, col, token)]


class _RuleParser:
    def __init__(self, toks: list[Tok], family: str, table: str, err):
        self.toks, self.family, self.table, self._err = _split_getopt(toks), family, table, err

    def err(self, col, token, reason):
        self._err(col, token, reason)

    def parse(self) -> ParsedRule:
        toks = self.toks
        i, n = 0, len(toks)
        invert = None  # Tok of a pending "!"
        cmd = ""
        chain = rulenum = policy = table = None
        src, dst = [], []
        src_inv = dst_inv = iif_inv = oif_inv = proto_inv = frag_inv = False
        iif = oif = None
        proto = None  # (number, text, Tok)
        frag = False
        counters = None
        only = None
        insts: list[_Inst] = []
        target: _Inst | None = None
        jump = None
        implicit_loaded = False
        seen_global = {}

        def need_arg(j, t):
            if j >= n:
                self.err(t.col + len(t.text), t.text, f"option {t.text} requires an argument")
            return toks[j]

        def take_invert(t, allowed=True):
            nonlocal invert
            inv = invert is not None
            if inv and not allowed:
                self.err(invert.col, "!", f"cannot invert {t.text}")
            invert = None
            return inv

        def once(key, t):
            if key in seen_global:
                self.err(t.col, t.text, f"multiple {t.text} options not allowed")
            seen_global[key] = True

        while i < n:
            t = toks[i]
            s = t.text
            if s == "!":
                if invert is not None:
                    self.err(t.col, s, "consecutive ! not allowed")
                invert = t
                i += 1
                continue
            short = None
            if s.startswith("--") and s[2:] in _GLOBAL_LONG:
                short = _GLOBAL_LONG[s[2:]]
            elif len(s) == 2 and s[0] == "-" and (s[1] in _SHORT_ARG or s[1] in _SHORT_FLAG):
                short = s[1]
            if short is not None and short in _COMMANDS:
                if cmd:
                    self.err(t.col, s, "only one command per line")
                take_invert(t, False)
                cmd = short
                if short in "AIDRNPE" or (i + 1 < n and not toks[i + 1].text.startswith("-")):
                    if short in "FXZ" and (i + 1 >= n or toks[i + 1].text.startswith("-")):
                        i += 1
                        continue
                    c = need_arg(i + 1, t)
                    chain = c.text
                    self.chain_tok = c
                    i += 2
                    if short == "P":
                        p = need_arg(i, c)
                        policy = p.text
                        self.policy_tok = p
                        i += 1
                    elif short == "E":
                        need_arg(i, c)
                        i += 1
                    elif short in "IDRZ" and i < n and toks[i].text.isdigit():
                        rulenum = int(toks[i].text)
                        if rulenum < 1:
                            self.err(toks[i].col, toks[i].text, "rule number must be at least 1")
                        i += 1
                    continue
                i += 1
                continue
            if short is not None:
                if short in ("4", "6"):
                    take_invert(t, False)
                    only = "ip" if short == "4" else "ip6"
                    i += 1
                    continue
                if short in ("n", "v", "x", "L0"):
                    i += 1
                    continue
                if short == "f":
                    if self.family == "ip6":
                        self.err(t.col, s, "-f is not available in ip6tables (use -m frag)")
                    once("f", t)
                    frag_inv = take_invert(t)
                    frag = True
                    i += 1
                    continue
                if short == "w":
                    i += 1
                    if i < n and toks[i].text.isdigit():
                        i += 1
                    continue
                a = need_arg(i + 1, t)
                if short == "c":
                    take_invert(t, False)
                    if not a.text:
                        self.err(a.col, a.raw or '""', "bad packet/byte counters")
                    if "," in a.text:
                        pk, _, by = a.text.partition(",")
                        i += 2
                    else:
                        b = need_arg(i + 2, a)
                        pk, by = a.text, b.text
                        i += 3
                    if not pk.isdigit() or not by.isdigit():
                        self.err(a.col, a.text, "bad packet/byte counters")
                    counters = (int(pk), int(by))
                    continue
                if short == "t":
                    take_invert(t, False)
                    table = a.text
                    self.table_tok = a
                    i += 2
                    continue
                i += 2
                if short in ("s", "d"):
                    once(short, t)
                    inv = take_invert(t)
                    items = a.text.split(",")
                    if any(x == "" for x in items):
                        self.err(a.col, a.text, "empty address in list")
                    if len(items) > 1 and inv:
                        self.err(t.col, s, "! not allowed with multiple source or destination addresses")
                    parsed = []
                    for it in items:
                        parsed.append(reg.parse_addr(_ErrCtx(self, a), None, it, self.family)[:3])
                    if short == "s":
                        src, src_inv = parsed, inv
                    else:
                        dst, dst_inv = parsed, inv
                elif short in ("i", "o"):
                    once(short, t)
                    inv = take_invert(t)
                    name = a.text
                    if len(name) >= IFNAMSIZ:
                        self.err(a.col, name, f"interface name {name!r} is longer than {IFNAMSIZ - 1} characters")
                    if not name or any(c in name for c in " /") or name in (".", ".."):
                        self.err(a.col, name, f"invalid interface name {name!r}")
                    if short == "i":
                        iif, iif_inv = name, inv
                    else:
                        oif, oif_inv = name, inv
                elif short == "p":
                    once("p", t)
                    inv = take_invert(t)
                    pt = a.text.lower()
                    if pt in reg.PROTOCOLS:
                        num = reg.PROTOCOLS[pt]
                    elif pt.isdigit():
                        num = int(pt)
                        if num > 255:
                            self.err(a.col, a.text, f"invalid protocol {a.text!r}")
                    else:
                        self.err(a.col, a.text, f"unknown protocol {a.text!r}")
                    if num == 0 and inv:
                        self.err(a.col, a.text, "rule would never match protocol")
                    proto, proto_inv = (num, a.text, a), inv
                elif short == "m":
                    if invert is not None:
                        self.err(invert.col, "!", "unexpected ! before --match")
                    name = a.text
                    mod = reg.lookup("match", name)
                    if mod is None or self.family not in mod.families:
                        feature = reg.UNSUPPORTED.get(("match", name))
                        if feature is None:
                            if mod is not None:
                                self.err(a.col, name, f"match {name!r} is not available in "
                                                      f"{'ip6tables' if self.family == 'ip6' else 'iptables'}")
                            feature = f"unknown match {name!r}"
                        insts.append(_Inst(None, name, "match", a.col, name))
                        insts[-1].feature = feature
                    else:
                        insts.append(_Inst(mod, mod.name, "match", a.col, name))
                elif short in ("j", "g"):
                    if target is not None or jump is not None:
                        self.err(t.col, s, "multiple -j/-g options not allowed")
                    take_invert(t, False)
                    name = a.text
                    mod = reg.lookup("target", name) if short == "j" else None
                    if short == "g" or (mod is None and name not in reg.UNSUPPORTED_TARGET_NAMES()
                                        and _is_chain_name(name)):
                        if mod is not None or name in ("ACCEPT", "DROP", "RETURN", "QUEUE"):
                            self.err(a.col, name, f"cannot goto {name}")
                        jump = ("goto" if short == "g" else "jump", name, a.col, name)
                    elif mod is None or self.family not in mod.families:
                        feature = reg.UNSUPPORTED.get(("target", name)) or f"unknown target {name!r}"
                        target = _Inst(None, name, "target", a.col, name)
                        target.feature = feature
                    else:
                        target = _Inst(mod, name, "target", a.col, name)
                continue
            # a module option
            if s.startswith("-") and len(s) > 1 and not _is_number(s):
                owner, opt = self._find_owner(s, target, insts)
                if owner is None and proto is not None and not implicit_loaded and not proto_inv:
                    pname = reg.PROTO_MATCH.get(proto[0])
                    mod = reg.lookup("match", pname) if pname else None
                    if mod is not None and self.family in mod.families:
                        implicit_loaded = True
                        inst = _Inst(mod, mod.name, "match", proto[2].col, proto[2].text, implicit=True)
                        if mod.option(s[2:]) is not None:
                            insts.append(inst)
                            owner, opt = inst, mod.option(s[2:])
                    elif pname is not None and ("match", pname) in reg.UNSUPPORTED:
                        implicit_loaded = True
                        inst = _Inst(None, pname, "match", proto[2].col, proto[2].text, implicit=True)
                        inst.feature = reg.UNSUPPORTED[("match", pname)]
                        insts.append(inst)
                if owner is None and jump is not None and jump[0] == "jump" and s.startswith("--"):
                    # `-j NAME --opt ...`: NAME is an extension target nfreplay does not know, not a chain
                    target = _Inst(None, jump[1], "target", jump[2], jump[3])
                    target.feature = f"unknown target {jump[1]!r}"
                    jump = None
                if owner is None:
                    unsup = target if (target is not None and target.mod is None) else next(
                        (x for x in reversed(insts) if x.mod is None), None)
                    if unsup is not None and s.startswith("--"):
                        i = self._consume_raw(unsup, i, invert)
                        invert = None
                        continue
                    self.err(t.col, s, f"unknown option {s!r}")
                inv = invert is not None
                if inv and not opt.invert:
                    self.err(invert.col, "!", f"option {s} cannot be inverted")
                invert = None
                args = []
                arg_col = 0
                j = i + 1
                if opt.nargs and j < n and toks[j].text == "!" and opt.invert:  # old `--opt ! value` form
                    inv = True
                    j += 1
                for _k in range(opt.nargs):
                    if j >= n or (toks[j].text.startswith("--") and len(toks[j].text) > 2):
                        self.err(t.col, s, f"option {s} requires {opt.nargs} argument"
                                           f"{'s' if opt.nargs > 1 else ''}")
                    args.append(toks[j].text)
                    arg_col = arg_col or toks[j].col
                    j += 1
                if opt.name in owner.given and not opt.multi:
                    self.err(t.col, s, f"option {s} given twice")
                owner.given[opt.name] = reg.Given(opt, tuple(args), inv, t.col, s, arg_col)
                i = j
                continue
            self.err(t.col, s, f"unexpected argument {s!r}")
        if invert is not None:
            self.err(invert.col, "!", "! at the end of the rule")

        pr = ParsedRule(cmd, chain, rulenum, policy, table, [], counters, only, jump, None, [])
        if cmd not in ("A", "I", "D", "R", ""):
            extra = [x for x in (src, dst) if x] or iif or oif or proto or frag or insts or target or jump
            if extra:
                self.err(toks[0].col, toks[0].text, f"-{cmd} takes no rule options")
            return pr
        return self._lower(pr, src, src_inv, dst, dst_inv, iif, iif_inv, oif, oif_inv, proto, proto_inv, frag,
                           frag_inv, insts, target, jump)

    def _find_owner(self, s: str, target, insts):
        name = s[2:] if s.startswith("--") else None
        if name is None:
            return None, None
        if target is not None and target.mod is not None:
            o = target.mod.option(name)
            if o is not None:
                return target, o
        for inst in reversed(insts):
            if inst.mod is not None:
                o = inst.mod.option(name)
                if o is not None:
                    return inst, o
        return None, None

    def _consume_raw(self, inst: _Inst, i: int, invert) -> int:
        """Take an option of an unsupported module and its arguments as written."""
        toks, n = self.toks, len(self.toks)
        if invert is not None:
            inst.raw.append("!")
        inst.raw.append(toks[i].text)
        i += 1
        while i < n:
            s = toks[i].text
            if s == "!" and i + 1 < n and not toks[i + 1].text.startswith("-"):
                inst.raw.append(s)
                i += 1
                continue
            if s.startswith("-") and len(s) > 1 and not _is_number(s):
                break
            inst.raw.append(s)
            i += 1
        return i

    def _lower(self, pr, src, src_inv, dst, dst_inv, iif, iif_inv, oif, oif_inv, proto, proto_inv, frag, frag_inv,
               insts, target, jump) -> ParsedRule:
        fam = self.family
        head_tail = []  # exprs and canon shared by every expansion after the addresses
        canon_tail = []
        if iif is not None and not (iif == "+" and not iif_inv):
            head_tail.append(m.Iface(Field.IIF, (iif,), iif_inv))
            canon_tail.append(f"{'! ' if iif_inv else ''}-i {iif}")
        if oif is not None and not (oif == "+" and not oif_inv):
            head_tail.append(m.Iface(Field.OIF, (oif,), oif_inv))
            canon_tail.append(f"{'! ' if oif_inv else ''}-o {oif}")
        pnum = proto[0] if proto else 0
        if proto is not None and pnum != 0:
            head_tail.append(m.FieldIn(Field.PROTO, ((pnum, pnum),), proto_inv))
            canon_tail.append(f"{'! ' if proto_inv else ''}-p {reg.PROTO_PRINT.get(pnum, str(pnum))}")
        if frag:
            head_tail.append(m.FieldIn(Field.FRAG, ((1, 0x1FFF),), frag_inv))
            canon_tail.append(f"{'! ' if frag_inv else ''}-f")
        unsupported = []
        comment = None
        has_syn = False
        for inst in insts:
            if inst.mod is not None and inst.mod.name == "tcp":
                g = inst.given.get("syn") or inst.given.get("tcp-flags")
                if g is not None and not g.invert:
                    has_syn = g.opt.name == "syn" or "SYN" in g.args[1].upper().split(",") \
                        or g.args[1].upper() == "ALL"
        for inst in insts:
            if inst.mod is None:
                text = " ".join(["-m", inst.name] + [reg.quote(x) if x != "!" else x for x in inst.raw])
                canon_tail.append(text)
                unsupported.append(m.Unsupported(inst.feature, text))
                continue
            mod = inst.mod
            if mod.protos is not None and (pnum not in mod.protos or proto_inv):
                self.err(inst.col, inst.token, f"{mod.name} match needs `-p "
                                                f"{reg.PROTO_PRINT.get(mod.protos[0], mod.protos[0])}`")
            ctx = reg.Ctx(fam, pnum, proto_inv, self.table, self.err, inst.col, inst.token, has_syn)
            b = mod.build(ctx, inst.given)
            head_tail.extend(b.exprs)
            canon_tail.append(f"-m {mod.name}" + (" " + b.canon if b.canon else ""))
            if b.comment is not None:
                comment = b.comment if comment is None else comment
            if b.unsupported:
                unsupported.append(m.Unsupported(b.unsupported, f"-m {mod.name} {b.canon}".strip()))
            if b.hooks is not None:
                pr.target_hooks.append((b.hooks, b.hooks_why, inst.col, inst.token))
            if mod.hooks is not None:
                pr.target_hooks.append((mod.hooks, f"match {mod.name} is only valid in "
                                        + ", ".join(sorted(mod.hooks)), inst.col, inst.token))
        stmt = []
        if jump is not None:
            kind, name, col, tok = jump
            stmt.append(m.Verdict(kind, name))
            canon_tail.append(f"{'-g' if kind == 'goto' else '-j'} {name}")
        elif target is not None:
            if target.mod is None:
                text = " ".join(["-j", target.name] + [reg.quote(x) if x != "!" else x for x in target.raw])
                canon_tail.append(text)
                unsupported.append(m.Unsupported(target.feature, text))
            else:
                mod = target.mod
                ctx = reg.Ctx(fam, pnum, proto_inv, self.table, self.err, target.col, target.token, has_syn)
                b = mod.build(ctx, target.given)
                stmt.extend(b.exprs)
                canon_tail.append(f"-j {target.name}" + (" " + b.canon if b.canon else ""))
                if b.unsupported:
                    unsupported.append(m.Unsupported(b.unsupported, f"-j {target.name} {b.canon}".strip()))
                pr.target_tables = mod.tables
                if mod.tables is not None and self.table not in mod.tables:
                    self.err(target.col, target.token, f"{target.name} is only valid in the "
                                                       f"{'/'.join(sorted(mod.tables))} table")
                if mod.hooks is not None:
                    pr.target_hooks.append((mod.hooks, f"{target.name} is only valid in "
                                            + ", ".join(h for h in BUILTIN_ORDER if h in mod.hooks),
                                            target.col, target.token))
                if b.hooks is not None:
                    pr.target_hooks.append((b.hooks, b.hooks_why, target.col, target.token))
        srcs = src or [None]
        dsts = dst or [None]
        for s in srcs:
            for d in dsts:
                exprs, canon = [], []
                for a, inv, fld, opt in ((s, src_inv, Field.SRC, "-s"), (d, dst_inv, Field.DST, "-d")):
                    if a is None:
                        continue
                    val, mask, plen = a
                    if plen == 0 and not inv:
                        continue
                    exprs.append(reg.addr_expr(fld, val, mask, plen, fam, inv))
                    canon.append(f"{'! ' if inv else ''}{opt} {reg.addr_text(val, mask, plen, fam)}")
                exprs += head_tail
                exprs += unsupported  # an unsupported part makes the rule never match
                exprs += stmt
                pr.rules.append((tuple(exprs), " ".join(canon + canon_tail), comment,
                                 tuple(unsupported)))
        return pr


class _ErrCtx(reg.Ctx):
    def __init__(self, parser: _RuleParser, tok: Tok):
        super().__init__(parser.family, 0, False, parser.table, parser.err, tok.col, tok.text)


def _is_number(s: str) -> bool:
    return bool(re.fullmatch(r"-\d+(:\d*)?", s))


def _is_chain_name(name: str) -> bool:
    return bool(name) and not name.startswith("-") and len(name) < 29


# ---------------------------------------------------------------- file parsing
@dataclass
class _RuleRec:
    rule: m.Rule
    jump: tuple | None
    hooks: list
    line: int


@dataclass
class _TableBuild:
    name: str
    line: int
    policies: dict = field(default_factory=dict)  # builtin -> (policy, counters, SourceRef)
    chains: dict = field(default_factory=dict)  # name -> list[_RuleRec] (ordered: builtins then user chains)
    user: list = field(default_factory=list)
    chain_src: dict = field(default_factory=dict)
    chain_file: dict = field(default_factory=dict)  # user chain -> index of the file that declared it


class _FileParser:
    def __init__(self, text: str, source: str, family: str):
        self.text, self.source, self.family = text, source, family
        self.tables: dict[str, _TableBuild] = {}
        self.order: list[str] = []
        self.unsupported: list = []
        self.lineno = 0
        self.line = ""
        self.noflush = False  # later files continue tables (iptables-restore --noflush)
        self.file_no = 0
        self.texts = [text]

    def err(self, col, token, reason, line=None):
        raise RulesetSyntaxError(self.source, line if line is not None else self.lineno, col, token, reason)

    def parse(self) -> m.Ruleset:
        self.feed()
        return self._finish()

    def feed_more(self, text: str, source: str):
        """Continue with another file, as `iptables-restore --noflush` applies ufw's fragments."""
        self.text, self.source = text, source
        self.texts.append(text)
        self.noflush = True
        self.file_no += 1
        self.feed()

    def feed(self):
        lines = self.text.splitlines()
        save_format = any(ln.lstrip().startswith("*") for ln in lines)
        cur: _TableBuild | None = None
        self.implicit = "filter"  # -S / free form: the table lines without -t go to
        self.implicit_policies: set = set()
        pol_re = re.compile(r"^\s*(?:-P|--policy)\s+(\S+)")
        for no, raw in enumerate(lines, 1):
            self.lineno, self.line = no, raw
            if len(raw) > MAX_LINE:
                self.err(MAX_LINE, raw[MAX_LINE:MAX_LINE + 10], f"line longer than {MAX_LINE} characters")
            s = raw.strip()
            col0 = len(raw) - len(raw.lstrip()) + 1
            if not save_format:
                mt = re.match(r"^#\s*table:?\s*(\w+)\s*$", s)
                if mt and mt.group(1) in m.IPTABLES_BUILTINS:
                    self._switch_implicit(mt.group(1))
                    continue
                mp = pol_re.match(raw)
                if mp and " -t " not in f" {s} " and "--table" not in s:
                    ch = mp.group(1)
                    if ch not in m.IPTABLES_BUILTINS[self.implicit] or ch in self.implicit_policies:
                        run = {ch}
                        for later in lines[no:]:
                            ml = pol_re.match(later)
                            if not ml:
                                break
                            run.add(ml.group(1))
                        self._switch_implicit(_table_for_chains(run, self.implicit))
                    self.implicit_policies.add(ch)
            if not s or s.startswith("#"):
                continue
            if s.startswith("*"):
                if cur is not None:
                    self.err(col0, s, f"table {s[1:]!r} starts before COMMIT of table {cur.name!r} "
                                      f"(line {cur.line})")
                name = s[1:].strip()
                if name not in m.IPTABLES_BUILTINS:
                    self.err(col0 + 1, name, f"unknown table {name!r}")
                cur = self._new_table(name, no)
                continue
            if s == "COMMIT":
                if cur is None:
                    self.err(col0, s, "COMMIT without a table")
                cur = None
                continue
            if s.startswith(":"):
                if cur is None:
                    self.err(col0, s, "chain line before a table (*filter, *nat, ...)")
                self._chain_line(cur, raw, col0)
                continue
            if save_format and cur is None:
                self.err(col0, s.split()[0], "rule before a table (*filter, *nat, ...)")
            self._rule_line(cur, raw)
        if cur is not None:
            self.err(1, "*" + cur.name, f"table {cur.name!r} has no COMMIT", line=cur.line)

    def _switch_implicit(self, name: str):
        self.implicit = name
        self.implicit_policies = set()

    def _new_table(self, name, no) -> _TableBuild:
        if name in self.tables and self.noflush:
            return self.tables[name]
        if name in self.tables:
            log.warning("%s:%d: table %s given again: it replaces the earlier block (iptables-restore flushes)",
                        self.source, no, name)
            self.order.remove(name)
        tb = _TableBuild(name, no)
        for ch in m.IPTABLES_BUILTINS[name]:
            tb.chains[ch] = []
        self.tables[name] = tb
        self.order.append(name)
        return tb

    def _chain_line(self, tb: _TableBuild, raw: str, col0: int):
        toks = tokenize(raw.strip()[1:], lambda c, t, r: self.err(col0 + c, t, r))
        if not toks:
            self.err(col0 + 1, ":", "chain name missing")
        name = toks[0].text
        pol = toks[1].text if len(toks) > 1 else None
        cnt = None
        if len(toks) > 2:
            mm = re.fullmatch(r"\[(\d+):(\d+)\]", toks[2].text)
            if not mm:
                self.err(col0 + toks[2].col, toks[2].text, "bad counters, expected [packets:bytes]")
            cnt = (int(mm.group(1)), int(mm.group(2)))
        if len(toks) > 3:
            self.err(col0 + toks[3].col, toks[3].text, "unexpected text after the chain counters")
        if pol is None:
            self.err(col0 + toks[0].col + len(name), name, "chain policy missing")
        ref = m.SourceRef(self.source, self.lineno, raw.strip())
        builtin = name in m.IPTABLES_BUILTINS[tb.name]
        if builtin:
            if pol not in ("ACCEPT", "DROP"):
                self.err(col0 + toks[1].col, pol, "built-in chain policy must be ACCEPT or DROP")
            tb.policies[name] = (pol, cnt, ref)
        else:
            if pol != "-" and pol not in ("ACCEPT", "DROP"):
                self.err(col0 + toks[1].col, pol, "bad policy (user chains have '-')")
            if pol in ("ACCEPT", "DROP"):
                self.err(col0 + toks[1].col, pol, f"{name!r} is not a built-in chain of table {tb.name!r}: "
                                                   f"it cannot have a policy")
            self._check_chain_name(name, col0 + toks[0].col)
            if name not in tb.chains:
                tb.chains[name] = []
                tb.user.append(name)
            elif self.noflush and tb.chain_file.get(name, self.file_no) != self.file_no:
                tb.chains[name] = []  # --noflush: declaring an existing user chain flushes it
            tb.chain_src[name] = ref
            tb.chain_file[name] = self.file_no

    def _check_chain_name(self, name, col):
        if len(name) > 28:
            self.err(col, name, "chain name longer than 28 characters")
        if name.startswith("-") or name.startswith("!") or reg.lookup("target", name) is not None \
                or name in ("ACCEPT", "DROP", "RETURN", "QUEUE"):
            self.err(col, name, f"invalid chain name {name!r}")

    def _rule_line(self, cur: _TableBuild | None, raw: str):
        line_err = lambda c, t, r: self.err(c, t, r)  # noqa: E731
        toks = tokenize(raw, line_err)
        counters = None
        if toks and toks[0].text.startswith("["):
            mm = re.fullmatch(r"\[(\d+):(\d+)\]", toks[0].text)
            if not mm:
                self.err(toks[0].col, toks[0].text, "bad counters, expected [packets:bytes]")
            counters = (int(mm.group(1)), int(mm.group(2)))
            toks = toks[1:]
        # hand-written commands: "iptables -A ...", "sudo ip6tables -t nat -A ..."
        while toks and toks[0].text in ("sudo", "iptables", "ip6tables", "iptables-legacy", "iptables-nft",
                                        "ip6tables-legacy", "ip6tables-nft"):
            toks = toks[1:]
        if not toks:
            return
        table_name = cur.name if cur is not None else self.implicit
        # the table must be known before module checks: pre-scan -t
        tt = _split_getopt(toks)
        for k, t in enumerate(tt[:-1]):
            if t.text in ("-t", "--table"):
                if cur is not None:
                    self.err(t.col, t.text, "-t cannot be used inside a *table block")
                table_name = tt[k + 1].text
                if table_name not in m.IPTABLES_BUILTINS:
                    self.err(tt[k + 1].col, table_name, f"unknown table {table_name!r}")
        p = _RuleParser(toks, self.family, table_name, line_err)
        pr = p.parse()
        if pr.only_family is not None and pr.only_family != self.family:
            return
        if not pr.command:
            self.err(toks[0].col, toks[0].text, "no command (-A, -I, -N, -P ...) in this line")
        tb = cur
        if tb is None:
            tb = self.tables.get(table_name) or self._new_table(table_name, self.lineno)
        ctok = getattr(p, "chain_tok", None)
        chain = pr.chain
        if pr.command == "N":
            self._check_chain_name(chain, ctok.col)
            if chain in tb.chains:
                self.err(ctok.col, chain, f"chain {chain!r} already exists")
            tb.chains[chain] = []
            tb.user.append(chain)
            tb.chain_src[chain] = m.SourceRef(self.source, self.lineno, raw.strip())
            return
        if pr.command == "P":
            if chain not in m.IPTABLES_BUILTINS[tb.name]:
                self.err(ctok.col, chain, f"{chain!r} is not a built-in chain of table {tb.name!r}")
            if pr.policy not in ("ACCEPT", "DROP"):
                self.err(p.policy_tok.col, pr.policy, "policy must be ACCEPT or DROP")
            old = tb.policies.get(chain)
            tb.policies[chain] = (pr.policy, old[1] if old else None,
                                  m.SourceRef(self.source, self.lineno, raw.strip()))
            return
        if pr.command in ("F", "Z"):
            if pr.command == "F":
                for name in ([chain] if chain else list(tb.chains)):
                    if name not in tb.chains:
                        self.err(ctok.col, name, f"no chain {name!r}")
                    tb.chains[name] = []
            return
        if pr.command == "X":
            names = [chain] if chain else list(tb.user)
            for name in names:
                if name not in tb.user:
                    self.err(ctok.col if ctok else 1, name, f"no user chain {name!r}")
                del tb.chains[name]
                tb.user.remove(name)
            return
        if pr.command in ("D", "R", "E"):
            self.err(toks[0].col, toks[0].text, f"command -{pr.command} is not supported in a ruleset file")
        # -A / -I
        if chain not in tb.chains:
            self.err(ctok.col, chain, f"chain {chain!r} does not exist in table {tb.name!r}")
        builtin = chain in m.IPTABLES_BUILTINS[tb.name]
        if builtin:
            for e in pr.rules[0][0] if pr.rules else ():
                if isinstance(e, m.Iface):
                    if e.field == Field.OIF and chain in ("PREROUTING", "INPUT"):
                        self.err(*_iface_pos(toks, "-o"), f"can't use -o with {chain}")
                    if e.field == Field.IIF and chain in ("POSTROUTING", "OUTPUT"):
                        self.err(*_iface_pos(toks, "-i"), f"can't use -i with {chain}")
        ref = m.SourceRef(self.source, self.lineno, raw.strip())
        if counters is None:
            counters = pr.counters
        recs = []
        for exprs, canon, comment, unsup in pr.rules:
            text = f"-A {chain}" + (" " + canon if canon else "")
            rule = m.Rule(exprs, ref, text, comment, counters)
            recs.append(_RuleRec(rule, pr.jump, pr.target_hooks, self.lineno))
            for u in unsup:  # the ruleset-level list names the whole rule; the expression keeps its part
                self.unsupported.append((ref, m.Unsupported(f"{u.feature}: {u.text}", text)))
        rules = tb.chains[chain]
        if pr.command == "I":
            pos = (pr.rulenum or 1) - 1
            if pos > len(rules):
                self.err(toks[0].col, toks[0].text, f"index of insertion too big ({pr.rulenum})")
            rules[pos:pos] = recs
        else:
            rules.extend(recs)

    def _finish(self) -> m.Ruleset:
        tables = []
        for name in self.order:
            tb = self.tables[name]
            self._check_graph(tb)
            chains = []
            for ch, (hook, prio, ctype) in m.IPTABLES_BUILTINS[name].items():
                pol, cnt, ref = tb.policies.get(ch, ("ACCEPT", None, None))
                chains.append(m.Chain(ch, tuple(self._resolve(tb, r) for r in tb.chains[ch]), hook, prio, ctype,
                                      pol.lower(), ref))
            for ch in tb.user:
                chains.append(m.Chain(ch, tuple(self._resolve(tb, r) for r in tb.chains[ch]), None, None,
                                      "filter", None, tb.chain_src.get(ch)))
            tables.append(m.Table(self.family, name, tuple(chains), origin="iptables"))
        return m.Ruleset(tuple(tables), self.source, "iptables",
                         hashlib.sha256("".join(self.texts).encode()).hexdigest(),
                         tuple(self.unsupported))

    def _resolve(self, tb: _TableBuild, rec: _RuleRec) -> m.Rule:
        if rec.jump is None:
            return rec.rule
        kind, name, col, tok = rec.jump
        if name in tb.chains and name not in m.IPTABLES_BUILTINS[tb.name]:
            return rec.rule
        if name in m.IPTABLES_BUILTINS[tb.name]:
            raise RulesetSyntaxError(rec.rule.source.file, rec.line, col, tok,
                                     f"cannot jump to built-in chain {name!r}")
        u = m.Unsupported(f"{kind} to chain {name!r} that is not defined in the ruleset", rec.rule.text)
        self.unsupported.append((rec.rule.source, u))
        exprs = tuple(e for e in rec.rule.exprs if not isinstance(e, m.Verdict)) + (u,)
        return m.Rule(exprs, rec.rule.source, rec.rule.text, rec.rule.comment, rec.rule.counters)

    def _check_graph(self, tb: _TableBuild):
        """Reject jump loops (mark_source_chains) and targets/matches used in chains reachable from a
        built-in hook they are not valid in (xt_check_target/xt_check_match hook masks)."""
        edges = {ch: [(r.jump[1], r) for r in recs if r.jump and r.jump[1] in tb.chains]
                 for ch, recs in tb.chains.items()}
        state: dict[str, int] = {}

        def dfs(ch, stack):
            state[ch] = 1
            for nxt, rec in edges[ch]:
                if state.get(nxt) == 1:
                    raise RulesetSyntaxError(rec.rule.source.file, rec.line, rec.jump[2], rec.jump[3],
                                             f"loop: chain {nxt!r} jumps back to itself via {ch!r}")
                if state.get(nxt) is None:
                    dfs(nxt, stack + [ch])
            state[ch] = 2

        for ch in tb.chains:
            if state.get(ch) is None:
                dfs(ch, [])
        reach: dict[str, set] = {ch: set() for ch in tb.chains}
        for b in m.IPTABLES_BUILTINS[tb.name]:
            todo = [b]
            while todo:
                c = todo.pop()
                if b in reach[c]:
                    continue
                reach[c].add(b)
                todo.extend(n for n, _ in edges[c])
        for ch, recs in tb.chains.items():
            for rec in recs:
                for hooks, why, col, tok in rec.hooks:
                    bad = reach[ch] - set(hooks)
                    if bad:
                        raise RulesetSyntaxError(rec.rule.source.file, rec.line, col, tok,
                                                 f"{why} (chain {ch!r} is reached from "
                                                 f"{', '.join(h for h in BUILTIN_ORDER if h in bad)})")


def _table_for_chains(chains: set, current: str) -> str:
    """`iptables -S` prints one table's policies together: the table whose built-ins they are."""
    for name in ("filter", "nat", "mangle", "raw", "security"):
        if set(m.IPTABLES_BUILTINS[name]) == chains:
            return name
    for name in ("filter", "nat", "mangle", "raw", "security"):
        if chains <= set(m.IPTABLES_BUILTINS[name]):
            return name
    return current


def _iface_pos(toks, opt):
    for t in toks:
        if t.text in (opt, "--in-interface" if opt == "-i" else "--out-interface") or t.text.startswith(opt):
            return t.col, t.text
    return 1, opt


_V6_HINTS = re.compile(r"(^|\s)(-p\s+(ipv6-icmp|icmpv6|58)\b|-m\s+(icmp6|icmpv6|hl|frag|rt|hbh|dst|mh|ipv6header|"
                       r"eui64|srh)\b|--icmpv6-type|--reject-with\s+icmp6-|-j\s+HL\b)")
_V6_ADDR = re.compile(r"(?:^|\s)(?:-s|-d|--source|--destination|--src|--dst|--to-source|--to-destination|"
                      r"--ctorigsrc|--ctorigdst|--ctreplsrc|--ctrepldst|--src-range|--dst-range)[\s=]+!?\s*"
                      r"\[?([0-9A-Fa-f]*:[0-9A-Fa-f:.]*:[0-9A-Fa-f:./]*)")


def sniff_family(text: str, source: str = "") -> str:
    """'ip6' for ip6tables-save output (header, IPv6 addresses, ICMPv6/IPv6-only modules), else 'ip'."""
    head = text[:400]
    if "ip6tables" in head:
        return "ip6"
    if "iptables" in head and "Generated by" in head:
        return "ip"
    for ln in text.splitlines():
        if ln.lstrip().startswith("#"):
            continue
        if _V6_HINTS.search(ln) or _V6_ADDR.search(ln):
            return "ip6"
    if re.search(r"(ip6tables|(^|[_./-])(rules6|ip6)([_./-]|$)|6\.rules$)", source):
        return "ip6"
    return "ip"


def parse_iptables(text: str, source: str = "<string>", family: str | None = None) -> m.Ruleset:
    """Parse iptables-save / ip6tables-save / `iptables -S` / free-form rule lines into a Ruleset.

    family: "ip" or "ip6"; None sniffs it (ip6tables-save header, IPv6 addresses, ICMPv6 matches)."""
    text = text.lstrip("\ufeff")
    if family is None:
        family = sniff_family(text, source)
    if family not in ("ip", "ip6"):
        raise RulesetSyntaxError(source, 0, 0, str(family), "family must be 'ip' or 'ip6'")
    return _FileParser(text, source, family).parse()


def parse_iptables_files(items, family: str | None = None) -> m.Ruleset:
    """Several iptables files applied in order like `iptables-restore --noflush` (ufw's before.rules,
    user.rules, after.rules): a repeated `*table` continues the table, a repeated user chain declaration
    flushes that chain, jumps resolve across files. items: (text, source) pairs. Files of the two
    families are grouped (family None: sniffed per file)."""
    groups: dict[str, _FileParser] = {}
    sources = []
    for text, source in items:
        fam = family or sniff_family(text, source)
        sources.append(source)
        if fam not in groups:
            groups[fam] = _FileParser(text, source, fam)
            groups[fam].feed()
        else:
            groups[fam].feed_more(text, source)
    parts = [p._finish() for p in groups.values()]
    return m.Ruleset(tuple(t for p in parts for t in p.tables), ",".join(sources), "iptables",
                     hashlib.sha256("".join(p.digest for p in parts).encode()).hexdigest(),
                     tuple(u for p in parts for u in p.unsupported))


def parse_rule(line: str, family: str = "ip", table: str = "filter", chain: str = "INPUT") -> m.Rule:
    """Parse one rule (with or without the leading `-A CHAIN`) in a fresh table: handy for tests and the
    REPL. A user chain named by -A, -j or -g is declared on the fly."""

    def err(c, tok, r):
        raise RulesetSyntaxError("<rule>", 1, c, tok, r)

    t = line.strip()
    toks = _split_getopt(tokenize(t, err))
    if not toks or toks[0].text not in ("-A", "--append", "-I", "--insert"):
        t = f"-A {chain} {t}"
        toks = _split_getopt(tokenize(t, err))
    users = []
    builtins = m.IPTABLES_BUILTINS.get(table, {})
    for k, tk in enumerate(toks[:-1]):
        nxt = toks[k + 1].text
        if tk.text in ("-A", "--append", "-I", "--insert") and nxt not in builtins:
            users.append(nxt)
        if tk.text in ("-j", "-g", "--jump", "--goto") and reg.lookup("target", nxt) is None \
                and nxt not in reg.UNSUPPORTED_TARGET_NAMES() and nxt not in users:
            users.append(nxt)
    text = f"*{table}\n" + "".join(f":{u} - [0:0]\n" for u in users) + t + "\nCOMMIT\n"
    rs = _FileParser(text, "<rule>", family).parse()
    return next(r for _t, _c, _i, r in rs.rules())


# ---------------------------------------------------------------- ipset save files
_IPSET_FIELDS = {"ip": Field.SRC, "net": Field.SRC, "port": Field.DPORT, "mark": Field.MARK, "iface": Field.IIF,
                 "mac": Field.ETH_SRC}


def load_ipset_save(text: str, source: str = "<ipset>") -> tuple[m.SetDef, ...]:
    """`ipset save` output -> SetDefs. Lines: `create NAME TYPE [options]` and `add NAME ELEMENT [options]`.
    Element components: addresses (a, a/len, a-b), ports ([proto:]p or p-q), marks, interfaces, MACs.
    key_fields give the kind of each dimension (address dimensions as Field.SRC, ports as Field.DPORT);
    the match's src/dst flags pick the side at match time (see iptables_matches.set_fields)."""
    sets: dict[str, dict] = {}
    order: list[str] = []
    for no, raw in enumerate(text.splitlines(), 1):
        s = raw.strip()
        if not s or s.startswith("#"):
            continue

        def err(col, tok, reason, _no=no):
            raise RulesetSyntaxError(source, _no, col, tok, reason)

        toks = tokenize(raw, err)
        cmd = toks[0].text
        if cmd in ("create", "-N", "-exist"):
            if len(toks) < 3:
                err(toks[0].col, cmd, "create needs NAME TYPE")
            name, typ = toks[1].text, toks[2].text
            method, _, dims = typ.partition(":")
            if method not in ("hash", "bitmap", "list") or not dims:
                err(toks[2].col, typ, f"unknown set type {typ!r}")
            if method == "list":
                err(toks[2].col, typ, "list:set is not supported")
            kinds = dims.split(",")
            for k in kinds:
                if k not in _IPSET_FIELDS:
                    err(toks[2].col, typ, f"unknown set dimension {k!r}")
            opts = [t.text for t in toks[3:]]
            fam = "ip6" if "family" in opts and opts[opts.index("family") + 1] == "inet6" else "ip"
            sets[name] = {"type": typ, "kinds": kinds, "family": fam, "elements": [],
                          "ref": m.SourceRef(source, no, s), "flags": frozenset({f"type:{typ}", f"family:{fam}"})}
            order.append(name)
        elif cmd in ("add", "-A"):
            if len(toks) < 3:
                err(toks[0].col, cmd, "add needs NAME ELEMENT")
            name = toks[1].text
            if name not in sets:
                err(toks[1].col, name, f"set {name!r} not created before add")
            st = sets[name]
            comps = toks[2].text.split(",")
            if len(comps) != len(st["kinds"]):
                err(toks[2].col, toks[2].text, f"element has {len(comps)} parts, set type {st['type']} needs "
                                                f"{len(st['kinds'])}")
            elem = []
            for comp, kind in zip(comps, st["kinds"]):
                elem.append(_ipset_component(comp, kind, st["family"], lambda r, t=toks[2]: err(t.col, t.text, r)))
            st["elements"].append(tuple(elem))
        else:
            err(toks[0].col, cmd, f"unknown ipset command {cmd!r}")
    return tuple(m.SetDef(n, tuple(_IPSET_FIELDS[k] for k in sets[n]["kinds"]), tuple(sets[n]["elements"]),
                          None, sets[n]["flags"], sets[n]["ref"]) for n in order)


_SRC_SIDE = {Field.SRC, Field.SPORT, Field.IIF, Field.ETH_SRC}


def resolve_set_matches(rs: m.Ruleset, sets) -> m.Ruleset:
    """Rewrite the fields of `-m set` matches for the actual ipset types (the parser assumes the usual
    ip / ip,port / ip,port,ip layout because set types live in a separate file): hash:net,net,
    bitmap:port, hash:ip,mark, hash:net,iface ... get their exact fields. sets: load_ipset_save output."""
    types = {}
    for sd in sets:
        for f in sd.flags:
            if f.startswith("type:"):
                types[sd.name] = f[5:]
    if not types:
        return rs

    def fix(e):
        if isinstance(e, m.SetMatch) and e.set_name in types:
            dirs = ["src" if f in _SRC_SIDE else "dst" for f in e.fields]
            return m.SetMatch(reg.set_fields(dirs, types[e.set_name]), e.set_name, e.negate)
        return e

    tables = []
    for t in rs.tables:
        chains = tuple(m.Chain(c.name, tuple(m.Rule(tuple(fix(e) for e in r.exprs), r.source, r.text, r.comment,
                                                   r.counters, r.handle) for r in c.rules),
                               c.hook, c.priority, c.type, c.policy, c.source) for c in t.chains)
        tables.append(m.Table(t.family, t.name, chains, t.sets, t.origin))
    return m.Ruleset(tuple(tables), rs.source, rs.fmt, rs.digest, rs.unsupported)


def _ipset_component(text: str, kind: str, family: str, err) -> tuple[int, int]:
    import ipaddress

    from .. import addr

    if kind in ("ip", "net"):
        try:
            if "-" in text:
                a, b = text.split("-", 1)
                lo, hi = addr.to_int(a)[0], addr.to_int(b)[0]
            else:
                lo, hi, _f = addr.prefix_range(text)
        except ValueError:
            err(f"bad address {text!r}")
        if lo > hi:
            err(f"bad range {text!r}")
        return lo, hi
    if kind == "port":
        p = text.split(":", 1)[1] if ":" in text else text
        a, _, b = p.partition("-")
        try:
            lo = reg.SERVICES.get(a) or int(a)
            hi = (reg.SERVICES.get(b) or int(b)) if b else lo
        except ValueError:
            err(f"bad port {text!r}")
        return lo, hi
    if kind == "mark":
        try:
            v = int(text, 0)
        except ValueError:
            err(f"bad mark {text!r}")
        return v, v
    if kind == "mac":
        try:
            v = int(text.replace(":", ""), 16)
        except ValueError:
            err(f"bad MAC {text!r}")
        return v, v
    if kind == "iface":
        err("interface sets are not supported")
    _ = ipaddress
    err(f"unsupported set dimension {kind!r}")

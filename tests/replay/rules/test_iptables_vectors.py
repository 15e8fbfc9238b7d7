"""iptables' own extension test vectors (extensions/*.t, the input of iptables-test.py) as a parser suite.

Format: `*table` and `:CHAIN,CHAIN` lines select where the following rules are added; each rule line is
`rule;saved-form;OK|FAIL` where saved-form `=` means "printed as written" and an empty one is not
checked. A rule must give the same result in every chain listed. libebt_/libarpt_ files are ebtables/
arptables and are skipped."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from nfreplay.errors import RulesetSyntaxError
from nfreplay.replay.rules.iptables import parse_iptables


@dataclass
class Vector:
    file: str
    lineno: int
    table: str
    chains: tuple[str, ...]
    rule: str
    expect: str  # "OK" | "FAIL"
    canonical: str | None  # the text iptables -S shows (None: not checked)


def read_vectors(path: Path) -> list[Vector]:
    out = []
    table, chains = "filter", ("INPUT",)
    for no, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.rstrip("\n")
        if not line or line.startswith("#") or line.startswith("@"):
            continue
        if line.startswith("*"):
            table = line[1:].strip()
            continue
        if line.startswith(":"):
            chains = tuple(c.strip() for c in line[1:].split(","))
            continue
        parts = line.split(";")
        if len(parts) < 3:
            continue
        rule, save, res = parts[0], parts[1], parts[2]
        if len(parts) > 3 and parts[3] == "NFT":
            continue  # result specific to the nft backend
        canonical = None
        if res == "OK":
            canonical = rule if save == "=" else save
        out.append(Vector(path.name, no, table, chains, rule, res, canonical))
    return out


def family_of(path: Path) -> str:
    return "ip6" if path.name.startswith("libip6t_") else "ip"


def vector_files(ext_dir: Path) -> list[Path]:
    return sorted(p for p in ext_dir.glob("*.t") if not p.name.startswith(("libebt_", "libarpt_")))


# Modules nfreplay recognises but deliberately does not model (IPv6 extension headers, IPsec SPIs,
# sockets/cgroups/owners, payload inspection, exotic targets): their OK lines must come back as
# Unsupported naming exactly these, never as errors.
DELIBERATELY_UNMODELLED = {
    "ah match", "esp match", "ipcomp match", "mh match", "frag match", "hbh match", "dst match", "rt match",
    "srh match", "ipv6header match", "eui64 match", "ipvs match", "connbytes match", "connlabel match",
    "rateest match", "owner match", "policy match", "socket match", "string match", "tcpmss match",
    "cgroup match", "physdev match", "cpu match", "time match", "realm match", "rpfilter match",
    "osf match", "bpf match", "u32 match", "cluster match", "helper match",
    "TPROXY target", "HMARK target", "TEE target", "IDLETIMER target", "LED target", "TCPOPTSTRIP target",
    "DNPT target", "SNPT target", "RATEEST target", "SYNPROXY target",
    # options of modelled modules that need state or packet parts the model has no slot for
    "sctp --chunk-types", "dccp --dccp-types", "dccp --dccp-option", "multiport --ports",
    "NFQUEUE --queue-balance", "DNAT port shifting", "hashlimit in byte mode", "hashlimit --hashlimit-rate-match",
}
# FAIL lines the kernel rejects for reasons a parser cannot see.
KNOWN_ACCEPTED_FAILS = {
    ("libxt_set.t", "-m set --match-set foo src,dst"): "set foo does not exist in the test kernel; ipset "
                                                        "contents come from a separate file",
}
BUILTINS = ("PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING")


def _feature_key(feature: str) -> str:
    return feature.split(":")[0].split(" (")[0]


def _run(path: Path, v: Vector, family: str) -> list[tuple[str, object]]:
    """Add the rule to each listed chain; ('ok', rule) | ('unsupported', features) | ('error', exc)."""
    out = []
    for ch in v.chains:
        text = f"*{v.table}\n:{ch} ACCEPT [0:0]\n-A {ch} {v.rule}\nCOMMIT\n"
        try:
            rs = parse_iptables(text, path.name, family)
        except RulesetSyntaxError as e:
            out.append(("error", e))
            continue
        rules = [r for _t, _c, _i, r in rs.rules()]
        if rs.unsupported:
            out.append(("unsupported", {_feature_key(u.feature) for _ref, u in rs.unsupported}))
        else:
            out.append(("ok", rules[0]))
    return out


def _all_vectors(ext: Path):
    for path in vector_files(ext):
        fam = family_of(path)
        for v in read_vectors(path):
            if all(ch in BUILTINS for ch in v.chains):
                yield path, fam, v


@pytest.fixture(scope="module")
def results(corpus_dir):
    ext = corpus_dir / "iptables-t" / "extensions"
    if not ext.is_dir():
        pytest.skip("iptables-t vectors not in the corpus")
    return [(path, v, _run(path, v, fam)) for path, fam, v in _all_vectors(ext)]


def test_ok_lines_parse_with_the_canonical_text(results):
    problems = []
    n_canon = n_unsup = 0
    for path, v, res in results:
        if v.expect != "OK":
            continue
        kinds = {k for k, _ in res}
        if "error" in kinds:
            e = next(x for k, x in res if k == "error")
            problems.append(f"{path.name}:{v.lineno}: {v.rule!r} rejected: {e}")
        elif "unsupported" in kinds:
            feats = set().union(*(x for k, x in res if k == "unsupported"))
            if not feats <= DELIBERATELY_UNMODELLED:
                problems.append(f"{path.name}:{v.lineno}: {v.rule!r} unsupported: {feats - DELIBERATELY_UNMODELLED}")
            n_unsup += 1
        else:
            for (_k, rule), ch in zip(res, v.chains):
                want = f"-A {ch} {v.canonical}".rstrip()
                if rule.text != want:
                    problems.append(f"{path.name}:{v.lineno}: canonical {rule.text!r} != {want!r}")
            n_canon += 1
    assert not problems, "\n".join(problems[:40])
    # counts reported in docs/iptables.md
    assert n_canon >= 474 and n_canon + n_unsup == 766


def test_fail_lines_are_rejected_or_unsupported(results):
    problems, n = [], 0
    for path, v, res in results:
        if v.expect != "FAIL":
            continue
        n += 1
        if any(k == "ok" for k, _ in res) and (path.name, v.rule) not in KNOWN_ACCEPTED_FAILS:
            problems.append(f"{path.name}:{v.lineno}: {v.rule!r} should fail in every chain: "
                            f"{[(k, getattr(x, 'text', x)) for k, x in res]}")
    assert not problems, "\n".join(problems[:40])
    assert n == 288


def test_errors_point_at_the_token_they_name(results):
    """Line 3 of the generated file is the rule; the error's column is where its token starts."""
    n = 0
    for path, v, res in results:
        for (kind, x), ch in zip(res, v.chains):
            if kind == "error":
                line = f"-A {ch} {v.rule}"
                assert x.source == path.name and x.line == 3, x
                assert x.token and x.token in line, (x, line)
                at = line[x.column - 1:]
                assert at.startswith(x.token) or at.startswith(f'"{x.token}'), (x, line)
                n += 1
    assert n > 250

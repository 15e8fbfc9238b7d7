"""run_replay against the real kernel (shared/tools/kernel-oracle scenarios): per packet the outcome,
the conntrack state and direction the rules saw, the deciding rule (table, chain, rule number) and the
tuple the packet left with (after NAT).

Each scenario asserts exactly what agrees today (AGREE below: the fields that match on every packet);
a field that does not agree on every packet is listed with the reason, so a regression in any agreeing
field fails and an improvement shows as an xpass-style assertion failure of the "known gap" check.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from nfreplay.replay.codes import OUTCOME_NAMES

SCEN = ("tools", "kernel-oracle", "scenarios")
CT_NAMES = {0: None, 1: "invalid", 2: "established", 3: "related", 4: "new", 5: "untracked"}
DIR_NAMES = {0: "original", 1: "reply", 2: None}

ALL = frozenset({"outcome", "ct", "rule", "out_tuple"})
# scenario -> (fields that agree on every packet, {field: reason it does not})
AGREE = {
    "01_stateful_forward": (ALL, {}),
    "02_snat_masquerade": (ALL, {}),
    "03_dnat_port_forward": (ALL, {}),
    "04_invalid_packets": (ALL, {}),
    "05_limit_burst": (ALL, {}),
    "06_reject_tcp_reset": (ALL, {}),
    "07_udp_timeout": (ALL, {}),
}


def _kernel_rule(p, fmt):
    """(table, chain, rule_number) that decided: the dropping rule, else the last accepting rule in a
    filter-type table (the contract's verdict_rule); None when no rule decided."""
    d = p.get("drop") or {}
    if d:
        if d.get("by") == "kernel":
            return None
        return (d["table"], d["chain"], d.get("rule_number") or 0)
    last = None
    for t in p.get("trace") or []:
        if t["verdict"] == "accept" and (t["table"] == "filter" or (fmt == "nft" and t["table"] != "nat")):
            last = (t["table"], t["chain"], t.get("rule_number") or 0)
    return last


def _replay(d):
    from nfreplay.replay.host import load_host
    from nfreplay.replay.ingest import read_capture
    from nfreplay.replay.pipeline import run_replay
    from nfreplay.replay.rules import load_ruleset

    kern = json.loads((d / "oracle_out.json").read_text())
    cap = read_capture(d / "capture.pcap")
    rs = load_ruleset(sorted(d.glob("rules.*"))[0])
    host = load_host(d / "topology.json")
    out = run_replay(cap, rs, host, assume_good_checksums=kern["input"].get("checksums") == "fix")
    return kern, out


def _compare(kern, out):
    """Per field, the indices of the packets that disagree."""
    fmt = kern["input"]["rules_format"]
    res = out.results
    from nfreplay.replay import addr

    bad = {"outcome": [], "ct": [], "rule": [], "out_tuple": []}
    for p in kern["packets"]:
        i = p["index"]
        if p["outcome"] == "not_injected":
            continue
        mine = OUTCOME_NAMES[int(res.outcome[i])]
        if mine != p["outcome"]:
            bad["outcome"].append(i)
        ct = p.get("ct") or {}
        want = (ct.get("state"), ct.get("direction") if ct.get("state") not in ("invalid", "untracked") else None)
        got = (CT_NAMES[int(res.ct_state[i])], DIR_NAMES[int(res.ct_dir[i])])
        if p.get("ct") is not None and got != want:
            bad["ct"].append(i)
        vr = int(res.verdict_rule[i])
        got_rule = None
        if vr >= 0:
            r = out.rules[vr]
            got_rule = (r["table"], r["chain"], int(r["rule_num"]))
        if got_rule != _kernel_rule(p, fmt):
            bad["rule"].append(i)
        ot = p.get("out_tuple")
        if ot and mine in ("forwarded", "emitted"):
            fam = 6 if ":" in ot["src"] else 4
            got_t = (addr.to_text(int(res.out_src_hi[i]), int(res.out_src_lo[i]), fam),
                     addr.to_text(int(res.out_dst_hi[i]), int(res.out_dst_lo[i]), fam))
            if ot.get("proto") in ("tcp", "udp"):
                got_t += (int(res.out_sport[i]), int(res.out_dport[i]))
                want_t = (ot["src"], ot["dst"], ot["sport"], ot["dport"])
            else:
                want_t = (ot["src"], ot["dst"])
            if got_t != want_t:
                bad["out_tuple"].append(i)
    return bad


@pytest.mark.parametrize("name", sorted(AGREE))
def test_pipeline_vs_kernel_oracle(shared_dir, name):
    d = shared_dir.joinpath(*SCEN, name)
    if not (d / "oracle_out.json").exists():
        pytest.skip(f"{name}: no oracle output")
    kern, out = _replay(d)
    assert len(out.results.outcome) == len(kern["packets"])
    bad = _compare(kern, out)
    agree, gaps = AGREE[name]
    for f in agree:
        assert not bad[f], f"{name}: {f} disagrees with the kernel on packets {bad[f]}"
    for f, why in gaps.items():
        assert bad[f], f"{name}: {f} now agrees on every packet (was a known gap: {why}); update AGREE"


def test_pipeline_chunking_is_invisible(shared_dir):
    """Chunk boundaries (state carried across replay_range calls) do not change any result."""
    from nfreplay.replay.host import load_host
    from nfreplay.replay.ingest import read_capture
    from nfreplay.replay.pipeline import run_replay
    from nfreplay.replay.rules import load_ruleset

    d = shared_dir.joinpath(*SCEN, "01_stateful_forward")
    cap = read_capture(d / "capture.pcap")
    rs = load_ruleset(d / "rules.ipt")
    host = load_host(d / "topology.json")
    a = run_replay(cap, rs, host)
    b = run_replay(cap, rs, host, chunk_packets=3)
    for f in a.results._fields:
        assert np.array_equal(getattr(a.results, f), getattr(b.results, f)), f
    for k in a.flows:
        assert np.array_equal(a.flows[k], b.flows[k]), k
    for k in a.events:
        assert np.array_equal(a.events[k], b.events[k]), k

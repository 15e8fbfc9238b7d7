"""End to end on the bundled samples and a kernel-oracle scenario: simulate() through the real engine,
then the tables, summary, diff and NAT/INVALID analyses against what the capture was built to show."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import nfreplay
from nfreplay.analysis import compare, read_tables, write_tables

SAMPLES = Path(__file__).resolve().parents[2] / "samples"


def _run(name, rules="rules.ipt"):
    d = SAMPLES / name
    return nfreplay.simulate(d / "capture.pcap", d / rules, host=d / "host.toml")


@pytest.fixture(scope="module")
def forward():
    return _run("forward_blocked_service")


def test_forward_blocked_service(forward, tmp_path):
    r = forward
    s = r.summary
    assert s["packets"] == 33 and s["outcomes"] == {"forwarded": 24, "dropped": 7, "emitted": 1,
                                                     "delivered_local": 1}
    assert s["digests"]["capture"] and s["digests"]["ruleset"] and s["sysctls"]["net.netfilter.nf_conntrack_tcp_loose"] == 1
    svc = r.drops_by_service().set_index("service")["packets"].to_dict()
    assert svc == {"tcp/22": 5, "tcp/3389": 2}
    d = r.drops_by_rule()
    assert d["who"].tolist() == ["the policy of filter/FORWARD"] and d["packets"].tolist() == [7]
    f = r.flows
    web = f.loc[f["service"] == "tcp/80"].iloc[0]
    assert (web["conn_state"], web["history"], web["final_state"]) == ("SF", "ShADadFf", "TIME_WAIT")
    assert web["packets_orig"] + web["packets_reply"] == 10
    # rule counters are the engine's
    assert (r.rules["packets"].to_numpy() == r.output.rule_packets).all()
    sh = r.shadowed_rules()
    assert sh["rule_num"].tolist() == [4] and sh["shadowed_by_num"].tolist() == [3]
    never = r.never_hit_rules()
    assert "--dport 8080" in " ".join(never["text"])
    write_tables(r, tmp_path)
    back = read_tables(tmp_path)
    assert len(back["packets"]) == 33 and json.loads((tmp_path / "summary.json").read_text())["packets"] == 33


def test_port_forward_nat_leak():
    r = _run("port_forward_nat")
    f = r.flows
    dn = f.loc[f["nat"] == "DNAT"].iloc[0]
    assert (dn["orig_dst"], dn["orig_dport"], dn["reply_src"], dn["reply_sport"]) == ("198.51.100.1", 8080,
                                                                                        "10.0.0.10", 80)
    assert set(f.loc[f["nat"] == "SNAT", "reply_dst"]) == {"198.51.100.1"}
    nat = r.nat()
    assert nat["translations_per_rule"]["translations"].tolist() == [1, 2]
    esc = nat["escaped"]
    assert len(esc) == 1 and esc["src"].iat[0] == "10.0.0.2"
    assert r.packets.loc[esc["index"].iat[0], "out_src"] == "10.0.0.2"  # left un-NATed


def test_invalid_out_of_window():
    r = _run("invalid_out_of_window")
    inv = r.invalid_by_flow()
    assert inv["packets"].sum() == 6
    seq_over = inv.loc[inv["reason"].str.contains("SEQ is over")]
    assert seq_over["packets"].iat[0] == 4 and seq_over["tcp_flags"].iat[0] == "RA"
    assert (r.packets.loc[r.packets["ct_state"] == "INVALID", "outcome"] == "dropped").all()
    web = r.flows.loc[r.flows["orig_dport"] == 80].iloc[0]
    assert web["conn_state"] == "SF"  # the real conversation finished normally


def test_ruleset_change_diff():
    old, new = _run("ruleset_change"), _run("ruleset_change", "rules_new.ipt")
    d = compare(old, new)
    got = d.flows.set_index("service")["change"].to_dict()
    assert got == {"tcp/22": "newly_blocked", "tcp/80": "newly_blocked", "tcp/443": "newly_allowed"}
    ssh = d.flows.loc[d.flows["service"] == "tcp/22"].iloc[0]
    assert ssh["dst"] == "203.0.113.30"  # the bastion 203.0.113.5 stays allowed
    assert "REJECT" in d.flows.loc[d.flows["service"] == "tcp/80", "rule_new"].iat[0]
    assert ssh["consequential"] == ssh["packets"] - 1


def test_oracle_scenario_counters(shared_dir):
    d = shared_dir / "tools" / "kernel-oracle" / "scenarios" / "01_stateful_forward"
    oracle = json.loads((d / "oracle_out.json").read_text())
    r = nfreplay.simulate(d / "capture.pcap", d / "rules.ipt", host=d / "topology.json")
    assert r.summary["outcomes"] == oracle["summary"]["outcomes"]
    rules = r.rules.set_index(["chain", "rule_num"])
    for c in oracle["per_rule_counters"]:
        assert rules.loc[(c["chain"], c["rule_number"]), "packets"] == c["packets"]
    for c in oracle["final_conntrack"]:
        o = c["orig"]
        row = r.flows.loc[(r.flows["orig_src"] == o["src"]) & (r.flows["orig_dst"] == o["dst"])
                          & (r.flows["proto"] == (6 if o["proto"] == "tcp" else 1))]
        if o["proto"] == "tcp":
            row = row.loc[row["orig_sport"] == o["sport"]]
        assert len(row) == 1
        assert row["packets_orig"].iat[0] == c["counters"]["orig"]["packets"]
        assert row["bytes_reply"].iat[0] == c["counters"]["reply"]["bytes"]
    assert [str(x) for x in oracle["packets"][0]["tcp_flags"]] == [r.packets["tcp_flags"].iat[0]]

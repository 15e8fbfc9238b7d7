"""compare() itself: perfect agreement on a faithful copy of the kernel's answers, and every
injected disagreement reported with both sides."""

from __future__ import annotations

import copy
import json

import pytest

from nfreplay.lab.compare import Agreement, Tolerance, compare

from .frames import frames_from_kernel
from .scenarios import OWN, load, scenario_dirs

SCENARIOS = scenario_dirs(OWN)


@pytest.fixture(params=[d.name for d in SCENARIOS] or ["(none)"])
def kernel(request):
    if not SCENARIOS:
        pytest.skip("no recorded scenarios")
    return load(OWN / request.param)[1]


def test_faithful_copy_agrees_fully(kernel):
    ag = compare(kernel, frames_from_kernel(kernel))
    assert ag.disagreements == [], ag.render_text()
    assert ag.packet_score == 100.0
    assert ag.fields["outcome"][1] == len(kernel["packets"])
    assert ag.fields["rule_packets"][1] == len(kernel["per_rule_counters"]) + sum(
        1 for r in kernel["policy_counters"] if not (r.get("note") or "").startswith("chain not"))


def _kernel(name):
    return load(OWN / name)[1]


def _need(name):
    if not (OWN / name / "oracle_out.json").exists():
        pytest.skip(f"scenario {name} not recorded")
    return _kernel(name)


def test_injected_packet_disagreements_are_listed_with_both_sides():
    k = _need("12_reject_variants")
    ours = frames_from_kernel(k)
    pk = ours.packets
    pk.loc[0, "outcome"] = "dropped"
    rej = pk.index[pk["outcome"] == "rejected"][0]
    pk.loc[rej, "verdict_rule"] = 99
    fwd = pk.index[pk["out_iface"] == "wan0"][0]
    pk.loc[fwd, "out_dport"] = 1
    ag = compare(k, ours)
    got = {(d["where"], d["field"]): d for d in ag.disagreements}
    assert got[("packet 0", "outcome")]["kernel"] == "forwarded"
    assert got[("packet 0", "outcome")]["ours"] == "dropped"
    assert got[(f"packet {rej}", "verdict")]["ours"][2] == 99
    assert got[(f"packet {rej}", "verdict")]["kernel"][2] != 99
    assert got[(f"packet {fwd}", "out_tuple")]["ours"][3] == 1
    assert len(ag.disagreements) == 3
    assert ag.packet_score < 100.0
    assert ag.percent("outcome") == pytest.approx(100.0 * (len(k["packets"]) - 1) / len(k["packets"]))
    d = json.loads(ag.to_json())
    assert d["perfect"] is False and len(d["disagreements"]) == 3
    text = ag.render_text()
    assert "packet 0: outcome: kernel=forwarded ours=dropped" in text


def test_injected_ct_and_counter_and_flow_disagreements():
    k = _need("10_host_firewall_input_output")
    ours = frames_from_kernel(k)
    ours.packets.loc[0, "ct_state"] = "ESTABLISHED"
    ours.packets.loc[2, "tcp_state"] = "SYN_RECV"
    ours.rules.loc[0, "packets"] = ours.rules.loc[0, "packets"] + 1
    ev = ours.events
    upd = ev.index[ev["event"] == "UPDATE"][0]
    ev.loc[upd, "status"] = ev.loc[upd, "status"] + "|ASSURED" if "ASSURED" not in ev.loc[upd, "status"] else ""
    ag = compare(k, ours)
    fields = sorted(d["field"] for d in ag.disagreements)
    assert fields == ["ct_state", "flow_events", "rule_packets", "tcp_state"]
    rp = next(d for d in ag.disagreements if d["field"] == "rule_packets")
    assert rp["ours"] == rp["kernel"] + 1 and rp["kind"] == "rule"


def test_missing_packet_row_and_missing_flow_are_reported():
    k = _need("13_mark_connmark")
    ours = frames_from_kernel(k)
    ours.packets = ours.packets[ours.packets["index"] != 5].reset_index(drop=True)
    ours.events = ours.events.iloc[0:0]
    ag = compare(k, ours)
    assert any(d["where"] == "packet 5" and d["field"] == "outcome" and d["ours"] is None for d in ag.disagreements)
    n_flows = len(k["conntrack_events"]["flows"])
    assert sum(1 for d in ag.disagreements if d["field"] == "flow_events") == n_flows


# -- hand-made kernel documents: tolerance rules -------------------------------------------

def _doc(packets, events=(), flows=(), ruleset=()):
    return {"input": {"rules_format": "iptables"}, "lab": {"conntrack_probes": True},
            "ruleset": list(ruleset), "packets": list(packets), "per_rule_counters": [],
            "policy_counters": [], "conntrack_events": {"events": list(events), "flows": list(flows)}}


def _pkt(i, sport, out_sport, src="10.0.0.2"):
    return {"index": i, "path": "inbound", "in_iface": "lan0", "outcome": "forwarded", "out_iface": "wan0",
            "tuple": {"proto": "tcp", "src": src, "dst": "203.0.113.10", "sport": sport, "dport": 80},
            "out_tuple": {"proto": "tcp", "src": "198.51.100.1", "dst": "203.0.113.10", "sport": out_sport,
                          "dport": 80},
            "ct": {"state": "new", "direction": "original"}, "trace": []}


def _ours(rows):
    from types import SimpleNamespace

    import pandas as pd

    base = {"verdict_table": None, "verdict_chain": None, "verdict_rule": None, "ct_state": "NEW",
            "ct_dir": "ORIGINAL", "tcp_state": None, "invalid_reason": None, "in_iface": "lan0",
            "out_iface": "wan0", "outcome": "forwarded", "out_src": "198.51.100.1", "out_dst": "203.0.113.10",
            "out_dport": 80}
    return SimpleNamespace(packets=pd.DataFrame([{**base, **r} for r in rows]), rules=pd.DataFrame(),
                           events=pd.DataFrame(columns=["ct_id", "packet_index", "event", "tcp_state", "status"]),
                           flows=pd.DataFrame())


def test_nat_port_clash_compares_properties():
    k = _doc([_pkt(0, 40000, 40000), _pkt(1, 40000, 51234, src="10.0.0.3")])
    # ours picked another free port for the clashing flow: fine
    ok = compare(k, _ours([{"index": 0, "out_sport": 40000}, {"index": 1, "out_sport": 40001}]))
    assert ok.disagreements == []
    # ours reused the clashing port: not unique
    bad = compare(k, _ours([{"index": 0, "out_sport": 40000}, {"index": 1, "out_sport": 40000}]))
    assert [d["where"] for d in bad.disagreements] == ["packet 1"]
    # ours changed a port the kernel kept
    bad2 = compare(k, _ours([{"index": 0, "out_sport": 40002}, {"index": 1, "out_sport": 40001}]))
    assert [d["where"] for d in bad2.disagreements] == ["packet 0"]
    # exact mode: any other port is a disagreement
    ex = compare(k, _ours([{"index": 0, "out_sport": 40000}, {"index": 1, "out_sport": 40001}]),
                 Tolerance(nat_ports="exact"))
    assert [d["where"] for d in ex.disagreements] == ["packet 1"]


def test_reused_source_mapping_is_compared_even_where_ports_are_free():
    """find_appropriate_src: the kernel gave 10.0.0.2:40000's second flow (another destination) the
    public port its first flow got; ours must reuse it too, though a clash-changed port is otherwise
    compared by properties."""
    p0 = _pkt(0, 40000, 41000)
    p1 = _pkt(1, 40000, 41000)
    p1["tuple"]["dport"] = p1["out_tuple"]["dport"] = 8080
    k = _doc([p0, p1])
    same = _ours([{"index": 0, "out_sport": 45000}, {"index": 1, "out_sport": 45000, "out_dport": 8080}])
    assert compare(k, same).disagreements == []
    other = _ours([{"index": 0, "out_sport": 45000}, {"index": 1, "out_sport": 45001, "out_dport": 8080}])
    assert [d["where"] for d in compare(k, other).disagreements] == ["packet 1"]
    # and the converse: the kernel chose a new port, ours reused the first flow's
    p1["out_tuple"]["sport"] = 52000
    assert [d["where"] for d in compare(_doc([p0, p1]), same).disagreements] == ["packet 1"]


def test_reject_response_tuple_is_compared():
    k = _need("35_dnat_reject_responses")
    ours = frames_from_kernel(k)
    assert compare(k, ours).fields["reject_tuple"] == [4, 4]
    pk = ours.packets
    pk.loc[0, "reject_src"] = "10.0.0.80"       # the RST left un-NATed
    pk.loc[0, "reject_sport"] = 80
    pk.loc[5, "reject_iface"] = None            # no ICMP error left
    ag = compare(k, ours)
    got = {d["where"]: d for d in ag.disagreements if d["field"] == "reject_tuple"}
    assert sorted(got) == ["packet 0", "packet 5"]
    assert got["packet 0"]["kernel"][:3] == ["192.0.2.80", "203.0.113.10", 8080]
    assert got["packet 0"]["ours"][:3] == ["10.0.0.80", "203.0.113.10", 80]
    assert got["packet 5"]["ours"] is None
    # results without the reject_* columns (older nfreplay): not compared
    ours.packets = pk.drop(columns=["reject_src", "reject_dst", "reject_sport", "reject_dport", "reject_iface"])
    assert "reject_tuple" not in compare(k, ours).fields


def _udp_pkt(i):
    return {"index": i, "path": "inbound", "in_iface": "lan0", "outcome": "forwarded", "out_iface": "wan0",
            "tuple": {"proto": "udp", "src": "10.0.0.2", "dst": "203.0.113.10", "sport": 5000, "dport": 53},
            "out_tuple": {"proto": "udp", "src": "10.0.0.2", "dst": "203.0.113.10", "sport": 5000, "dport": 53},
            "ct": {"state": "new", "direction": "original"}, "trace": []}


def _hist(ev, idx, after=None):
    h = {"event": ev, "packet_index": idx, "status": ["CONFIRMED"], "flags": ["UNREPLIED"]}
    if idx is None:
        h["after_packet"] = after
    return h


@pytest.mark.parametrize("our_destroy_at,tolerant,agrees", [
    (1, True, True), (None, True, True), (1, False, False), (0, True, False)])
def test_destroy_by_timer_or_lazily_are_the_same_fact(our_destroy_at, tolerant, agrees):
    flows = [{"flow": 0, "history": [_hist("NEW", 0), _hist("DESTROY", None, after=0)]},
             {"flow": 1, "history": [_hist("NEW", 1)]}]
    k = _doc([_udp_pkt(0), _udp_pkt(1)], flows=flows)
    import pandas as pd

    ours = _ours([{"index": 0, "out_src": "10.0.0.2", "out_sport": 5000, "out_dport": 53},
                  {"index": 1, "out_src": "10.0.0.2", "out_sport": 5000, "out_dport": 53}])
    ours.events = pd.DataFrame([
        {"ct_id": 0, "packet_index": 0, "event": "NEW", "tcp_state": None, "status": "CONFIRMED"},
        {"ct_id": 0, "packet_index": our_destroy_at, "event": "DESTROY", "tcp_state": None, "status": ""},
        {"ct_id": 1, "packet_index": 1, "event": "NEW", "tcp_state": None, "status": "CONFIRMED"}])
    ag = compare(k, ours, Tolerance(destroy_timer=tolerant))
    assert (ag.disagreements == []) is agrees, ag.render_text()


def test_invalid_reason_prefix_and_exact():
    p = _udp_pkt(0)
    p["conntrack_log"] = ["nf_ct_proto_6: SEQ is over upper bound 4276993444 (over the window of the receiver)"]
    k = _doc([p])
    ours = _ours([{"index": 0, "out_src": "10.0.0.2", "out_sport": 5000, "out_dport": 53,
                   "invalid_reason": "nf_ct_proto_6: SEQ is over upper bound"}])
    assert compare(k, ours, Tolerance(invalid_reason="prefix")).disagreements == []
    # default: the kernel's exact text, numbers included
    assert [d["field"] for d in compare(k, ours).disagreements] == ["invalid_reason"]
    ours.packets.loc[0, "invalid_reason"] = p["conntrack_log"][0]
    assert compare(k, ours).disagreements == []
    ours.packets.loc[0, "invalid_reason"] = "nf_ct_proto_6: SEQ is over upper bound 4276993445 (over the window of the receiver)"
    assert [d["field"] for d in compare(k, ours).disagreements] == ["invalid_reason"]
    ours.packets.loc[0, "invalid_reason"] = "nf_ct_proto_6: invalid rst"
    assert [d["field"] for d in compare(k, ours, Tolerance(invalid_reason="prefix")).disagreements] == ["invalid_reason"]


def test_agreement_figures_and_renderings():
    ag = Agreement(scenario="x")
    ag._count("outcome", True)
    ag._count("outcome", False, "packet 1", "forwarded", "dropped")
    ag._count("rule_packets", False, "filter/FORWARD rule 1", 3, 2, kind="rule")
    assert ag.percent("outcome") == 50.0
    assert ag.packet_score == 50.0          # rule counters are not per-packet fields
    d = ag.to_dict()
    assert d["packet_fields_compared"] == 2 and d["fields"]["rule_packets"]["percent"] == 0.0
    html = ag.to_html()
    assert "<section class='verify'>" in html and "filter/FORWARD rule 1" in html
    assert copy.deepcopy(d) == json.loads(ag.to_json())

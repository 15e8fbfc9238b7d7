"""compare() on two synthetic replays with a known difference: the new ruleset drops HTTP."""

from __future__ import annotations

import copy

from nfreplay.analysis import compare

from .factories import FORWARD_RULES, R_INVALID_NEW, forward_scenario, make_output, rule


def _new_side():
    """The same capture replayed under a ruleset whose FORWARD rule 3 now drops tcp/80: the SYN of the
    first HTTP session is dropped, its SYN-ACK then finds no entry (INVALID, dropped by rule 1), and the
    rest is dropped by the policy; the second HTTP session likewise."""
    rules = copy.deepcopy(FORWARD_RULES)
    rules[2] = rule(2, "filter", "FORWARD", 3, "-A FORWARD -i lan0 -o wan0 -p tcp -m tcp --dport 80 -j DROP")
    pk = forward_scenario()
    for d in pk:
        if d["proto"] == "tcp" and 80 in (d["sport"], d["dport"]) and d["ct"] in (0, 3):
            if d["flags"] == "S":
                d.update(outcome="dropped", rule_id=2, ct=-1)
            elif d["dir"] == 1 and d["flags"] == "SA":
                d.update(outcome="dropped", rule_id=0, ct=-1, ct_state="INVALID", invalid=R_INVALID_NEW)
            else:
                d.update(outcome="dropped", rule_id=6, ct=-1, ct_state="NEW")
    return make_output(pk, rules=rules)


def test_diff_newly_blocked_with_consequential_packets():
    old = make_output(forward_scenario())
    new = _new_side()
    d = compare(old, new)
    # two HTTP conversations changed, nothing else
    assert d.counts["conversations_changed"] == 2
    assert d.counts["newly_blocked"] == 2 and d.counts["newly_allowed"] == 0
    f = d.flows.sort_values("cause_packet")
    assert f["cause_packet"].tolist() == [0, 15]
    assert f["service"].tolist() == ["tcp/80", "tcp/80"]
    assert f["rule_old"].iat[0].startswith("rule 3 of filter/FORWARD") and "ACCEPT" in f["rule_old"].iat[0]
    assert "DROP" in f["rule_new"].iat[0]
    # the 8 later packets of session 1 and the 6 of session 2 (+ the injected RST that follows it in
    # the same conversation) are consequential, not separate changes
    assert f["consequential"].tolist() == [8, 7]
    roles = d.packets.set_index("index")["role"]
    assert roles[0] == "cause" and roles[1] == "consequential" and roles[8] == "consequential"
    assert d.counts["packets_cause"] == 2 and d.counts["packets_consequential"] == 15
    assert roles[22] == "consequential"  # the injected RST
    assert 11 not in roles.index and 13 not in roles.index
    assert d.by_service.set_index("service").loc["tcp/80", "newly_blocked"] == 2


def test_diff_newly_allowed_is_symmetric():
    d = compare(_new_side(), make_output(forward_scenario()))
    assert d.counts["newly_allowed"] == 2 and d.counts["newly_blocked"] == 0
    assert d.by_service.set_index("service").loc["tcp/80", "newly_allowed"] == 2


def test_identical_runs_have_no_changes():
    d = compare(make_output(forward_scenario()), make_output(forward_scenario()))
    assert d.counts["conversations_changed"] == 0 and len(d.packets) == 0 and len(d.by_service) == 0

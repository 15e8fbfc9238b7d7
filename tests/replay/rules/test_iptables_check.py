"""`nfreplay check`: exit codes, the human summary and the contract's --json object."""

from __future__ import annotations

import json

import pytest

from nfreplay.cli import main

RULES = """*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:LOGDROP - [0:0]
-A INPUT -i lo -j ACCEPT
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A INPUT -m owner --uid-owner 0 -j ACCEPT
-A INPUT -p tcp --dport 22 -j LOGDROP
-A LOGDROP -j LOG --log-prefix "drop "
-A LOGDROP -j DROP
COMMIT
"""


def _run(capsys, *args):
    code = main(["check", *map(str, args)])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_check_json_contract(tmp_path, capsys):
    p = tmp_path / "rules.ipt"
    p.write_text(RULES)
    code, out, err = _run(capsys, p, "--json")
    assert code == 0
    obj = json.loads(out)
    assert obj["rules"] == 6
    assert obj["unsupported"] == [{"source": f"{p}:8", "text": "-A INPUT -m owner --uid-owner 0 -j ACCEPT",
                                   "feature": "owner match (socket owner of locally generated packets): "
                                              "-m owner --uid-owner 0"}]


def test_check_human_summary(tmp_path, capsys):
    p = tmp_path / "rules.ipt"
    p.write_text(RULES)
    code, out, _err = _run(capsys, p)
    assert code == 0
    assert "table ip filter: 4 chains, 6 rules" in out
    assert "INPUT        4 rules  filter hook input prio 0 policy DROP" in out
    assert "LOGDROP      2 rules  regular" in out
    assert "1 unsupported construct" in out and f"{p}:8: owner match" in out


def test_check_fully_supported_and_two_files(tmp_path, capsys, shared_dir):
    p = shared_dir / "tools" / "kernel-oracle" / "scenarios" / "01_stateful_forward" / "rules.ipt"
    q = tmp_path / "v6.rules"
    q.write_text("*filter\n:INPUT DROP [0:0]\n-A INPUT -p ipv6-icmp -j ACCEPT\nCOMMIT\n")
    code, out, _err = _run(capsys, p, q, "--json")
    assert code == 0 and json.loads(out) == {"rules": 7, "unsupported": []}
    code, out, _err = _run(capsys, p)
    assert code == 0 and "Every rule is supported." in out


def test_check_syntax_error_is_one_line_exit_1(tmp_path, capsys):
    p = tmp_path / "bad.ipt"
    p.write_text("*filter\n-A INPUT -p tcp --dport 99999 -j ACCEPT\nCOMMIT\n")
    code, out, err = _run(capsys, p)
    assert code == 1 and out == ""
    assert err == f"nfreplay: error: {p}:2:25: port '99999' out of range 0..65535 (at '99999')\n"


def test_check_family_option(tmp_path, capsys):
    p = tmp_path / "r"
    p.write_text("-A INPUT -j REJECT\n")
    code, out, _ = _run(capsys, p, "--family", "ip6", "--json")
    assert code == 0 and json.loads(out)["rules"] == 1
    code, _out, err = _run(capsys, p, "--family", "inet")
    assert code == 1 and "--family must be ip or ip6" in err


@pytest.mark.parametrize("name", ["nftables__sets_and_maps.nft", "ufw__user.rules"])
def test_check_reads_both_front_ends(corpus_dir, capsys, name):
    code, out, _err = _run(capsys, corpus_dir / "rulesets" / name, "--json")
    assert code == 0
    obj = json.loads(out)
    assert obj["rules"] > 0 and isinstance(obj["unsupported"], list)

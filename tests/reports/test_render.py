"""The HTML report: self-contained, key numbers present, truncation, diff section, and a real browser."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from analysis.factories import forward_scenario, make_output, pkt, tcp_session
from analysis.test_diff import _new_side

from nfreplay.analysis import Result, compare
from nfreplay.reports import render_html, write_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or \
    ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)


@pytest.fixture(scope="module")
def res():
    return Result(make_output(forward_scenario()))


def _card(html: str, key: str) -> str:
    m = re.search(r'data-key="%s">([^<]*)<' % re.escape(key), html)
    assert m, key
    return m.group(1)


def test_report_is_self_contained_with_key_numbers(res, tmp_path):
    p = write_html(res, tmp_path / "r.html")
    html = p.read_text()
    assert html.startswith("<!DOCTYPE html>")
    assert _card(html, "packets") == "23" and _card(html, "dropped") == "3" and _card(html, "INVALID") == "1"
    assert _card(html, "forwarded") == str(res.summary["outcomes"]["forwarded"])
    # no external assets, no scripts; figures inline
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<script" not in html and "<link" not in html
    assert html.count("<svg") >= 3
    # sections
    for sec in ("verdicts", "timeline", "drops", "invalid", "nat", "flows", "rules-unused", "unsupported"):
        assert f'id="{sec}"' in html
    assert "ShADadFf" in html  # a Zeek history
    assert "nf_ct_proto_6: SEQ is over upper bound" in html
    assert "ufw" in html  # provenance column
    assert "the policy of filter/FORWARD" in html


def test_autoescape(tmp_path):
    pk = forward_scenario()
    rules = [dict(r) for r in make_output(pk).rules]
    rules[5]["text"] = '-A FORWARD -m comment --comment "<script>alert(1)</script>" -j ACCEPT'
    html = render_html(Result(make_output(pk, rules=rules)))
    assert "<script>alert(1)" not in html and "&lt;script&gt;alert(1)" in html


def test_large_tables_are_truncated_with_count():
    pk = []
    for i in range(60):
        pk += tcp_session(i, "10.0.0.2", "203.0.113.10", 30000 + i, 80, i)
    pk += [pkt(100 + i, "10.0.0.9", "203.0.113.99", sport=1000 + i, dport=3389, flags="S", outcome="dropped",
               rule_id=6, ct=-1, path=("PREROUTING", "FORWARD")) for i in range(50)]
    html = render_html(Result(make_output(pk)), max_rows=20)
    assert "showing the first 20 of <span class=\"total\">60</span> rows" in html  # flows
    flows_table = html.split('id="flows-table"')[1].split("</table>")[0]
    assert flows_table.count("<tr>") == 21  # header + 20 rows


def test_diff_section(tmp_path):
    old, new = Result(make_output(forward_scenario())), Result(_new_side())
    d = compare(old, new)
    html = write_html(new, tmp_path / "d.html", diff=d, verify={"agreement": "100%"}).read_text()
    assert 'id="changes"' in html and _card(html, "newly blocked") == "2" and _card(html, "consequential") == "15"
    assert "consequential" in html and "rule 3 of filter/FORWARD" in html
    assert 'id="verify"' in html and "100%" in html


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian package chromium)")
def test_report_loads_in_headless_chromium(res, tmp_path):
    p = write_html(res, tmp_path / "report.html", diff=compare(res, Result(_new_side())))
    profile = tmp_path / "profile"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
           "--virtual-time-budget=2000", "--dump-dom", p.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dom = proc.stdout
    # the browser parsed the whole document: the footer and the figures are in the DOM it built
    assert "Self-contained: no scripts" in dom
    assert dom.count("<svg") >= 3
    assert re.search(r'data-key="packets">23<', dom) and re.search(r'data-key="dropped">3<', dom)
    assert re.search(r'data-key="newly blocked">2<', dom)
    assert "ShADadFf" in dom
    shot = tmp_path / "shot.png"
    proc = subprocess.run(cmd[:-2] + [f"--screenshot={shot}", "--window-size=1280,2000", p.resolve().as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and shot.stat().st_size > 10_000


def test_report_without_drops_or_flows():
    """Sections that have nothing to show render as 'none' instead of failing."""
    from analysis.factories import tcp_session

    html = render_html(Result(make_output(tcp_session(0, "10.0.0.2", "203.0.113.10", 1, 80, 0))))
    assert 'data-key="dropped">0<' in html and "none" in html
    html = render_html(Result(make_output([])))
    assert 'data-key="packets">0<' in html

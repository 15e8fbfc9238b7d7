"""The report of a real sample run (engine included), opened in headless Chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

import nfreplay
from nfreplay.analysis import compare
from nfreplay.reports import write_html

SAMPLES = Path(__file__).resolve().parents[2] / "samples"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


def _dump_dom(html: Path, tmp_path: Path) -> str:
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'prof'}",
           "--dump-dom", html.resolve().as_uri()]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (Debian package chromium)")
def test_sample_run_report_in_chromium(tmp_path):
    d = SAMPLES / "ruleset_change"
    old = nfreplay.simulate(d / "capture.pcap", d / "rules.ipt", host=d / "host.toml")
    new = nfreplay.simulate(d / "capture.pcap", d / "rules_new.ipt", host=d / "host.toml")
    diff = compare(old, new)
    p = write_html(new, tmp_path / "diff.html", diff=diff)
    assert p.stat().st_size < 2_000_000
    dom = _dump_dom(p, tmp_path)
    s = new.summary
    assert re.search(r'data-key="packets">%d<' % s["packets"], dom)
    assert re.search(r'data-key="forwarded">%d<' % s["outcomes"]["forwarded"], dom)
    assert re.search(r'data-key="dropped">%d<' % s["outcomes"].get("dropped", 0), dom)
    assert re.search(r'data-key="newly blocked">2<', dom) and re.search(r'data-key="newly allowed">1<', dom)
    assert "Self-contained: no scripts" in dom and dom.count("<svg") >= 3

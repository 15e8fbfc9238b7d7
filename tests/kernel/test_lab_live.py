"""Live kernel lab: re-run small recorded scenarios through this machine's netfilter and check the
kernel answers exactly as recorded (determinism of the lab and stability of the fixtures).
Needs root and iproute2/nft/iptables/conntrack; skipped otherwise. One lab run per scenario,
a few seconds in all."""

from __future__ import annotations

import pytest

from nfreplay.lab.determinism import same_run

from .scenarios import OWN, load

pytestmark = pytest.mark.kernel

LIVE = ["10_host_firewall_input_output", "12_reject_variants", "25_masquerade_udp_icmp"]


@pytest.fixture(scope="module")
def lab_ready():
    from nfreplay.lab.kernel import check_requirements

    missing = check_requirements()
    if missing:
        pytest.skip("kernel lab not available: needs " + ", ".join(missing))


@pytest.fixture(scope="module")
def live_runs(lab_ready):
    """Run every live scenario once (per module) and keep the answers."""
    from nfreplay.lab.kernel import run_kernel

    out = {}
    for name in LIVE:
        d = OWN / name
        if not (d / "oracle_out.json").exists():
            continue
        meta, recorded, rules = load(d)
        live = run_kernel(d / "capture.pcap", rules, d / "topology.json", timing=meta["timing"])
        out[name] = (recorded, live)
    return out


@pytest.mark.parametrize("name", LIVE)
def test_live_kernel_equals_recording(live_runs, name):
    if name not in live_runs:
        pytest.skip(f"scenario {name} not recorded")
    recorded, live = live_runs[name]
    diffs = same_run(recorded, live)
    assert diffs == [], "\n".join(diffs)
    assert live["checks"]["barrier_timeouts"] == 0
    assert live["checks"]["kernel_counters_equal_trace_counts"]


def test_lab_leaves_no_namespaces(live_runs):
    import os
    import subprocess

    if not live_runs:
        pytest.skip("no live runs")
    names = {line.split()[0] for line in
             subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.splitlines() if line}
    for _recorded, live in live_runs.values():
        used = live["lab"]["namespaces"]
        assert used and not (set(used) & names), f"left behind: {set(used) & names}"
        assert not any(os.path.exists(f"/etc/netns/{n}") for n in used)


def test_requirements_are_named_exactly(monkeypatch):
    from nfreplay.lab import kernel

    monkeypatch.setattr(kernel.os, "geteuid", lambda: 1000)
    monkeypatch.setattr(kernel.shutil, "which", lambda t: None if t == "conntrack" else f"/usr/sbin/{t}")
    monkeypatch.setattr(kernel.subprocess, "run", lambda *a, **k: type("P", (), {"stdout": "iptables v1.8.9 (nf_tables)"})())
    missing = kernel.check_requirements()
    assert any(m.startswith("root") for m in missing)
    assert any(m.startswith("conntrack ") for m in missing)
    assert len(missing) == 2
    with pytest.raises(kernel.LabError, match="the kernel lab needs: root"):
        kernel.run_kernel("x.pcap", "r.ipt", {"interfaces": [{"name": "a"}]})

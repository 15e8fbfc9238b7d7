"""The lab's injector pins the process to one CPU while it injects (ordered backlog) and gives the
caller its CPU set back afterwards, also when the injection fails (it once stayed pinned: the rest of the
test suite, and every process it started, ran on one CPU)."""

from __future__ import annotations

import os

import pytest

from nfreplay.lab.kernel import Replay

pytestmark = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to see the pinning")


@pytest.mark.parametrize("fails", [False, True])
def test_replay_run_restores_the_cpu_set(monkeypatch, fails):
    before = os.sched_getaffinity(0)
    seen = []

    def fake_run(self, pkts, timing, linger):
        seen.append(os.sched_getaffinity(0))
        if fails:
            raise RuntimeError("injection failed")
        return [], [], [], 0.0

    monkeypatch.setattr(Replay, "_run", fake_run)
    rp = object.__new__(Replay)
    if fails:
        with pytest.raises(RuntimeError):
            rp.run([], "topspeed", 0.0)
    else:
        assert rp.run([], "topspeed", 0.0) == ([], [], [], 0.0)
    assert len(seen[0]) == 1 and seen[0] <= before
    assert os.sched_getaffinity(0) == before

"""simulate / simulate_to run with the objects that existed before them frozen (gc.freeze: full
collections during the replay skip the imported modules' objects) and give them back afterwards."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from nfreplay.analysis.api import _gc_frozen, simulate, simulate_to

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "forward_blocked_service"


@pytest.fixture
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()


def _probe():
    seen = []
    return seen, (lambda n: seen.append(gc.get_freeze_count()))


def test_simulate_freezes_during_the_replay_only(unfrozen):
    held = [object() for _ in range(10)]  # noqa: F841  (objects that exist before the call)
    seen, progress = _probe()
    res = simulate(SAMPLE / "capture.pcap", SAMPLE / "rules.ipt", SAMPLE / "host.toml", progress=progress)
    assert res.summary["packets"] > 0
    assert seen and min(seen) > 0
    assert gc.get_freeze_count() == 0


def test_simulate_to_freezes_during_the_replay_only(unfrozen, tmp_path):
    seen, progress = _probe()
    res, paths = simulate_to(SAMPLE / "capture.pcap", SAMPLE / "rules.ipt", SAMPLE / "host.toml", tmp_path,
                             progress=progress)
    assert paths["packets"].is_file() and res.summary["packets"] > 0
    assert seen and min(seen) > 0
    assert gc.get_freeze_count() == 0


def test_a_callers_freeze_is_kept_and_errors_unfreeze(unfrozen):
    @_gc_frozen
    def fails():
        assert gc.get_freeze_count() > 0
        raise ValueError("boom")

    with pytest.raises(ValueError):
        fails()
    assert gc.get_freeze_count() == 0
    gc.freeze()
    n = gc.get_freeze_count()

    @_gc_frozen
    def ok():
        return gc.get_freeze_count()

    assert ok() >= n
    assert gc.get_freeze_count() >= n > 0  # the caller's own freeze stays

"""Shared fixtures. Points NUMBA_CACHE_DIR at a private temp dir unless the caller set it."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

if "NUMBA_CACHE_DIR" not in os.environ:
    os.environ["NUMBA_CACHE_DIR"] = tempfile.mkdtemp(prefix="nfreplay-numba-")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "samples"
FIXTURES = ROOT / "tests" / "fixtures"
SHARED = Path(os.environ.get("NFREPLAY_SHARED", ROOT.parent / "shared"))
JIT_DISABLED = os.environ.get("NUMBA_DISABLE_JIT", "0") == "1"


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """../shared (corpus, kernel-oracle scenarios); tests using it skip when it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"shared/ not found at {SHARED} (a user's clone has none; CI has it)")
    return SHARED


@pytest.fixture(scope="session")
def corpus_dir(shared_dir) -> Path:
    return shared_dir / "corpus"

"""nfreplay: replay captured traffic offline through a faithful model of Linux netfilter.

Public API (imported lazily so that `import nfreplay` and `nfreplay --help` stay fast):

    from nfreplay import read_capture, load_ruleset, simulate
"""

from __future__ import annotations

from ._version import __version__

__all__ = ["__version__", "read_capture", "load_ruleset", "load_host", "simulate"]


def __getattr__(name):
    if name == "read_capture":
        from .replay.ingest import read_capture

        return read_capture
    if name == "load_ruleset":
        from .replay.rules import load_ruleset

        return load_ruleset
    if name == "load_host":
        from .replay.host import load_host

        return load_host
    if name == "simulate":
        from .analysis.api import simulate

        return simulate
    raise AttributeError(f"module 'nfreplay' has no attribute {name!r}")

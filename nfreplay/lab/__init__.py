"""The kernel lab: replay a capture through this machine's own netfilter in isolated network
namespaces, record what the kernel did, and compare it with nfreplay's answers.

    from nfreplay.lab import run_kernel, check_requirements, compare

Pure Python + stdlib (no numba); needs root and iproute2/nftables/iptables/conntrack-tools
only to *run* the lab: reading recorded runs and comparing works anywhere.
"""

from __future__ import annotations

__all__ = ["run_kernel", "check_requirements", "compare", "Agreement", "same_run", "show_text"]


def __getattr__(name):
    if name in ("run_kernel", "check_requirements"):
        from . import kernel

        return getattr(kernel, name)
    if name in ("compare", "Agreement"):
        from . import compare as _compare

        return getattr(_compare, name)
    if name in ("same_run", "show_text"):
        from . import determinism

        return getattr(determinism, name)
    raise AttributeError(f"module 'nfreplay.lab' has no attribute {name!r}")

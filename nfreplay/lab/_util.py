"""Process and namespace helpers of the kernel lab."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import logging
import os
import subprocess

from ..errors import LabError

log = logging.getLogger(__name__)

__all__ = ["LabError", "run", "in_netns"]


def run(cmd, ns=None, input=None, check=True, cwd=None, timeout=60):
    """Run a command (optionally inside a named netns) and return its stdout."""
    full = (["ip", "netns", "exec", ns] if ns else []) + list(cmd)
    log.debug("run: %s", " ".join(full))
    p = subprocess.run(full, input=input, capture_output=True, text=True, cwd=cwd, timeout=timeout)
    if check and p.returncode != 0:
        raise LabError(f"command failed ({p.returncode}): {' '.join(full)}: {p.stderr.strip()}")
    return p.stdout


_libc = None
CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    global _libc
    if _libc is None:
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


@contextlib.contextmanager
def in_netns(name: str):
    """Temporarily move the calling thread into netns `name`.

    Sockets created inside the block stay bound to that namespace."""
    orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(orig)
    finally:
        os.close(orig)
        os.close(target)

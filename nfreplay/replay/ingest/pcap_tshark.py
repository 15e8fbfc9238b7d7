"""The tshark reader (reader="tshark"): anything Wireshark reads, via tshark, then the native path.

tshark rewrites the capture as pcapng (`tshark -r FILE -F pcapng -w OUT`), keeping every record's
bytes, timestamps, interfaces and epb_flags; nfreplay's own framer and decode kernel then build the same
packet table as for a native file. Slow path (tshark's own parsing), for formats nfreplay does not
frame itself (snoop, erf, netmon, ...). tshark is found through pyshark when installed (the optional
extra `tshark`), else on PATH.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import tempfile

import numpy as np

from ...errors import CaptureError, NfreplayError
from .. import schema
from .capture import Capture, Damage, _Source

log = logging.getLogger(__name__)


def tshark_path() -> str:
    try:
        from pyshark.tshark.tshark import get_process_path

        p = get_process_path()
        if p and os.path.exists(p):
            return p
    except Exception:  # pyshark missing or cannot locate it: fall back to PATH
        pass
    p = shutil.which("tshark")
    if not p:
        raise NfreplayError("reader 'tshark' needs the tshark program (Wireshark); install it "
                            "(e.g. apt-get install tshark) or use --reader auto")
    return p


def _sniff_format(path: str) -> str:
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise CaptureError(path, e.strerror or str(e)) from None
    if head[:2] == b"\x1f\x8b":
        return "gz"
    m = int.from_bytes(head, "little") if len(head) == 4 else 0
    if m in (0xA1B2C3D4, 0xD4C3B2A1, 0xA1B23C4D, 0x4D3CB2A1):
        return "pcap"
    if m == 0x0A0D0D0A:
        return "pcapng"
    return "other"


def read_tshark(path, file_id: int = 0, strict: bool = False) -> Capture:
    path = str(path)
    exe = tshark_path()
    fmt = _sniff_format(path)
    fd, out = tempfile.mkstemp(suffix=".pcapng", prefix="nfreplay-tshark-")
    os.close(fd)
    try:
        r = subprocess.run([exe, "-n", "-r", path, "-F", "pcapng", "-w", out], capture_output=True, text=True)
        err = (r.stderr or "").strip().splitlines()
        msg = err[-1] if err else f"tshark exited with {r.returncode}"
        if os.path.getsize(out) == 0:
            raise CaptureError(path, f"tshark cannot read it: {msg}")
        try:
            src = _Source(out, file_id, False)
            tabs = list(src.chunks(1 << 62))
        except CaptureError as e:
            raise CaptureError(path, f"tshark output unreadable: {e.reason}") from None
        if tabs:
            t, ro = tabs[0]
        else:
            t, ro = schema.empty(0), np.empty(0, dtype=np.int64)
        data = np.array(src.data)  # a copy: detach from the temp file
        if fmt != "pcapng":
            t.ifindex[:] = -1  # classic pcap has no interfaces; tshark's pcapng invents interface 0
        info = src.info
        info.path, info.reader = path, "tshark"
        info.format = fmt if fmt in ("pcap", "pcapng") else ("pcap.gz" if fmt == "gz" else "other")
        if r.returncode != 0:
            info.damage = Damage(f"tshark: {msg}", -1, info.packets)
            if strict:
                raise CaptureError(path, f"tshark: {msg}", None, info.packets)
            log.warning("%s: tshark: %s; kept the %d packets before it", path, msg, info.packets)
        return Capture(t, data, [info], ro)
    finally:
        try:
            os.unlink(out)
        except OSError:
            pass

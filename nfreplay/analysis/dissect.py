"""Wireshark's second opinion on individual packets (`--dissect`): protocol summary line and expert
info (e.g. "TCP Out-Of-Order", "Previous segment not captured") from tshark, beside the kernel's view.

Only the packets a user looks at are dissected (tshark/pyshark are slow: ~330 packets/s here). tshark
is run in two-pass mode (-2) so its TCP analysis sees the whole file, as Wireshark's GUI does.
"""

from __future__ import annotations

import logging
import shutil
import subprocess

from ..errors import NfreplayError

log = logging.getLogger(__name__)

__all__ = ["dissect_packets", "tshark_available"]

_SEP = "\x1f"


def tshark_available() -> bool:
    return shutil.which("tshark") is not None


def dissect_packets(capture, indices, *, timeout_s: float = 300.0) -> dict[int, dict]:
    """Wireshark's view of packets `indices` (0-based positions in the merged capture).

    capture: the Capture the replay read (its packet table's file_id/rec_num locate each packet in its
    file). Returns {index: {"protocol", "info", "expert": [messages], "expert_severity"}}.
    """
    if not tshark_available():
        raise NfreplayError("--dissect needs tshark (Wireshark's command-line tool); install it "
                            "(Debian: apt-get install tshark) or drop --dissect")
    pk = capture.packets
    files = capture.files
    want: dict[int, dict[int, int]] = {}  # file_id -> {frame number: index}
    for i in sorted(set(int(i) for i in indices)):
        if i < 0 or i >= len(pk.ts_ns):
            raise NfreplayError(f"packet {i} is not in the capture ({len(pk.ts_ns)} packets)")
        want.setdefault(int(pk.file_id[i]), {})[int(pk.rec_num[i]) + 1] = i
    out: dict[int, dict] = {}
    for fid, frames in want.items():
        path = str(files[fid].path)
        filt = " || ".join(f"frame.number == {n}" for n in sorted(frames))
        cmd = ["tshark", "-n", "-2", "-r", path, "-Y", filt, "-T", "fields", "-E", f"separator={_SEP}",
               "-E", "occurrence=a", "-E", "aggregator=;;", "-e", "frame.number", "-e", "_ws.col.Protocol",
               "-e", "_ws.col.Info", "-e", "_ws.expert.message", "-e", "_ws.expert.severity"]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, check=False)
        except subprocess.TimeoutExpired:
            raise NfreplayError(f"{path}: tshark did not finish within {timeout_s:.0f} s") from None
        if p.returncode != 0:
            msg = (p.stderr.strip().splitlines() or ["unknown error"])[-1]
            raise NfreplayError(f"{path}: tshark failed: {msg}")
        for line in p.stdout.splitlines():
            parts = line.split(_SEP)
            if len(parts) < 3 or not parts[0].strip().isdigit():
                continue
            num = int(parts[0])
            if num not in frames:
                continue
            expert = [m for m in (parts[3].split(";;") if len(parts) > 3 and parts[3] else []) if m]
            sev = parts[4].split(";;") if len(parts) > 4 and parts[4] else []
            out[frames[num]] = {"protocol": parts[1], "info": parts[2], "expert": expert,
                                "expert_severity": sev}
    return out

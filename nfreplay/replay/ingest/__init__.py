"""Capture ingest: pcap / pcapng / gzip files -> the packet table (schema.py) plus the bytes it indexes.

    from nfreplay.replay.ingest import read_capture, iter_capture
    cap = read_capture(["a.pcap", "b.pcapng"])      # Capture(packets, data, files, rec_off)
    for chunk in iter_capture("huge.pcap", chunk_packets=1_000_000): ...

See docs/ingest.md. Importing this package does not compile anything; kernels compile on first use.
"""

from __future__ import annotations

from .capture import MALFORMED, READERS, REPLAYABLE, Capture, Damage, FileInfo, iter_capture, read_capture
from .decode import decode_packets

__all__ = ["read_capture", "iter_capture", "Capture", "FileInfo", "Damage", "decode_packets", "READERS",
           "REPLAYABLE", "MALFORMED"]

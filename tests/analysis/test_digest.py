"""The capture digest (summary.json digests.capture): sha256 of the file, hashed from a memory map."""

from __future__ import annotations

import hashlib
import threading

import pytest

from nfreplay.analysis.api import _capture_digests, _sha256_file


@pytest.mark.parametrize("size", [0, 1, 4095, 4096, 4097, 3 * 4096 + 17, 200_000])
@pytest.mark.parametrize("step", [1, 4096, 10_000, 64 << 20])
def test_sha256_file_is_the_files_sha256(tmp_path, size, step):
    data = bytes((i * 7 + 3) & 0xFF for i in range(size))
    p = tmp_path / "cap.pcap"
    p.write_bytes(data)
    assert _sha256_file(p, step=step) == hashlib.sha256(data).hexdigest()


def test_sha256_file_stops_when_asked(tmp_path):
    p = tmp_path / "cap.pcap"
    p.write_bytes(b"x" * 10_000)
    stop = threading.Event()
    stop.set()
    assert _sha256_file(p, stop, step=4096) is None


def test_capture_digests_one_and_several_files(tmp_path):
    a, b = tmp_path / "a.pcap", tmp_path / "b.pcap"
    a.write_bytes(b"first")
    b.write_bytes(b"second")
    da, db = hashlib.sha256(b"first").hexdigest(), hashlib.sha256(b"second").hexdigest()

    def cap(*paths):
        return type("C", (), {"files": [type("F", (), {"path": str(x)})() for x in paths]})()

    assert _capture_digests(cap(a)) == {"capture": da}
    both = _capture_digests(cap(a, b))
    assert both["capture"] == hashlib.sha256((da + db).encode()).hexdigest()
    assert both["capture_files"] == {str(a): da, str(b): db}

"""The Python API: simulate() replays a capture and returns a Result whose tables are built on demand.

    import nfreplay
    res = nfreplay.simulate("capture.pcap", "rules.ipt", host="host.toml")
    res.packets       # one row per packet (contracts §3)       res.flows   # one row per conntrack entry
    res.rules         # rules with counters and provenance       res.events  # conntrack -E stream
    res.summary       # dict, as written to summary.json         res.output  # the raw ReplayOutput
"""

from __future__ import annotations

import functools
import gc
import logging
import os
import time
from functools import cached_property
from pathlib import Path

import pandas as pd

from . import frames, summary, zeek

log = logging.getLogger(__name__)

__all__ = ["simulate", "simulate_to", "Result"]


class Result:
    """The result of one replay. Tables are pandas DataFrames built lazily from the engine's arrays."""

    def __init__(self, output, ruleset=None, *, wall_time_s: float | None = None, inputs: dict | None = None,
                 digests: dict | None = None):
        self.output = output
        self.ruleset = ruleset
        self.wall_time_s = wall_time_s
        self.inputs = inputs or {}
        self.digests = digests or {}
        # packets that escaped NAT when found over more packets than `output` holds (a streamed run keeps a
        # sample of the packets in memory): used by summary and nat() instead of finding them in .packets
        self.escaped: pd.DataFrame | None = None
        # a streamed run's packets.parquet (every packet; .packets is a sample): see notable_packets, timeline
        self.packets_path: Path | None = None
        self.notable_is_sample = False
        # a streamed run's time and class of every packet (export.TimelineLog): see timeline
        self.timeline_log = None
        # what the written packets table holds (export.PACKET_ROWS): "all" or "notable"
        self.packet_rows = "all"

    def __repr__(self) -> str:
        n = len(self.output.results.outcome)
        return f"<nfreplay.Result: {n} packets, {len(self.output.flows.get('family', ())) if self.output.flows else 0} flows>"

    # ---- the contract's tables
    @cached_property
    def packets(self) -> pd.DataFrame:
        return frames.packets_frame(self.output)

    @cached_property
    def rules(self) -> pd.DataFrame:
        return frames.rules_frame(self.output)

    @cached_property
    def histories(self) -> pd.DataFrame:
        """Zeek conn_state and history per ct_id (also columns of .flows)."""
        return zeek.zeek_histories(self.output)

    @cached_property
    def flows(self) -> pd.DataFrame:
        return frames.flows_frame(self.output, self.histories)

    @cached_property
    def events(self) -> pd.DataFrame:
        return frames.events_frame(self.output)

    @cached_property
    def summary(self) -> dict:
        return self._summarize()

    def _summarize(self, counts: dict | None = None) -> dict:
        """The summary; `counts`: summary.packet_counts of more packets than .packets holds (a streamed run)."""
        extra = {}
        if self.inputs:
            extra["inputs"] = self.inputs
        if self.digests:
            extra["digests"] = self.digests
        return summary.summarize(self.output, self.packets if counts is None else None, self.rules, self.flows,
                                 ruleset=self.ruleset, wall_time_s=self.wall_time_s, extra=extra,
                                 escaped=self.escaped, counts=counts)

    # ---- analyses
    @cached_property
    def notable_packets(self) -> pd.DataFrame:
        """The packets the drop, INVALID and per-hook analyses look at (dropped, rejected, queued or
        INVALID; the other rows are ignored by them). In memory: .packets. For a streamed run (.packets
        holds a sample), read back from its packets.parquet, so those analyses and the report cover the
        whole capture; past export.NOTABLE_ROWS_LIMIT rows, the sample (and .notable_is_sample is True)."""
        if self.packets_path is not None:
            from .export import read_notable_packets

            got = read_notable_packets(self.packets_path)
            if got is not None:
                self.notable_is_sample = False
                return got
            log.warning("more than %d dropped/INVALID packets: the drop and INVALID tables show the first %d "
                        "packets only", _notable_limit(), len(self.packets))
        self.notable_is_sample = self.packets_path is not None
        return self.packets

    def drops_by_rule(self) -> pd.DataFrame:
        return summary.drops_by_rule(self.notable_packets, self.rules)

    def drops_by_service(self) -> pd.DataFrame:
        return summary.drops_by_service(self.notable_packets)

    def drops_by_source(self) -> pd.DataFrame:
        return summary.drops_by_source(self.notable_packets)

    def timeline(self, bins: int = 60) -> pd.DataFrame:
        """summary.timeline over every packet (a streamed run: from its TimelineLog)."""
        if self.timeline_log is not None:
            return self.timeline_log.timeline(bins)
        return summary.timeline(self.packets, bins)

    def invalid_by_reason(self) -> pd.DataFrame:
        return summary.invalid_by_reason(self.notable_packets)

    def invalid_by_flow(self) -> pd.DataFrame:
        return summary.invalid_by_flow(self.notable_packets)

    def never_hit_rules(self) -> pd.DataFrame:
        return summary.never_hit_rules(self.rules)

    def shadowed_rules(self) -> pd.DataFrame:
        return summary.shadowed_rules(self.rules, self.ruleset)

    def nat(self) -> dict:
        return summary.nat_report(self.packets, self.flows, self.rules, escaped=self.escaped)

    def verdicts_by_hook(self) -> pd.DataFrame:
        return summary.verdicts_by_hook(self.notable_packets, traversed=self.summary["hooks"])

    def flow_packets(self, ct_id: int) -> pd.DataFrame:
        """The packets conntrack attached to flow ct_id, in capture order."""
        return self.packets.loc[self.packets["ct_id"] == ct_id]

    def flow_events(self, ct_id: int) -> pd.DataFrame:
        """The conntrack event stream of flow ct_id."""
        return self.events.loc[self.events["ct_id"] == ct_id]


def _notable_limit() -> int:
    from .export import NOTABLE_ROWS_LIMIT

    return NOTABLE_ROWS_LIMIT


def _load_capture(capture):
    if hasattr(capture, "packets") and hasattr(capture, "files"):
        return capture
    from ..replay.ingest import read_capture

    paths = [str(capture)] if isinstance(capture, (str, Path)) else [str(c) for c in capture]
    return read_capture(paths)


def _load_rules(rules):
    from ..replay.rules import load_ruleset
    from ..replay.rules.model import Ruleset

    if isinstance(rules, Ruleset):
        return rules
    if isinstance(rules, Path):
        return load_ruleset(str(rules))
    if isinstance(rules, (list, tuple)):
        return load_ruleset([str(r) for r in rules])
    return load_ruleset(rules)


def _load_host(host, local):
    from ..replay import host as host_mod

    if host is None or isinstance(host, (str, Path)):
        return host_mod.load_host(None if host is None else str(host), local=list(local))
    if isinstance(host, dict):
        for name in ("host_from_dict", "from_dict", "parse_host"):
            fn = getattr(host_mod, name, None)
            if fn is not None:
                return fn(host) if not local else fn(host, local=list(local))
        return host_mod.load_host(host, local=list(local))
    return host  # already a HostModel


def _gc_frozen(fn):
    """Run fn with the objects that exist when it starts moved out of the cyclic garbage collector's view
    (gc.freeze; gc.unfreeze afterwards unless the caller had frozen objects itself). A replay allocates
    enough container objects (pyarrow / pandas wrappers, dicts) to trigger collections, and those of the
    oldest generation walked every object of the imported modules (numba, pandas, pyarrow): ~0.12 s of
    1.5 s CPU for 1M packets end to end, ~0.002 s frozen (measured 2026-11-27). Objects made during the
    replay are collected as usual; reference counting frees the frozen ones as before."""

    @functools.wraps(fn)
    def run(*args, **kwargs):
        outer = gc.get_freeze_count() > 0
        gc.freeze()
        try:
            return fn(*args, **kwargs)
        finally:
            if not outer:
                gc.unfreeze()

    return run


@_gc_frozen
def simulate(capture, rules, host=None, *, local=(), allow_unsupported: bool = False, seed: int = 0,
             assume_good_checksums: bool = False, capture_point: str = "arrival", progress=None,
             trace_packet: int = -1, ipsets=()) -> Result:
    """Replay capture through rules on host and return a Result.

    capture: path, list of paths or a Capture (nfreplay.read_capture); rules: path(s), ruleset text or a
    Ruleset (nfreplay.load_ruleset); host: host file path (TOML/JSON, contracts §1), a dict with the same
    fields, a HostModel, or None for the default gateway model (local: extra local addresses).
    trace_packet: record the full rule trace of that packet (output.meta["trace"], for explain);
    ipsets: model.SetDef tuples (from `ipset save` files) for -m set rules.
    """
    from ..replay.pipeline import run_replay

    cap = _load_capture(capture)
    rs = _load_rules(rules)
    hm = _load_host(host, local)
    t0 = time.perf_counter()
    out = run_replay(cap, rs, hm, allow_unsupported=allow_unsupported, seed=seed,
                     assume_good_checksums=assume_good_checksums, capture_point=capture_point, progress=progress,
                     trace_packet=trace_packet, ipsets=ipsets)
    wall = time.perf_counter() - t0
    inputs = {"capture": [str(getattr(f, "path", f)) for f in getattr(cap, "files", [])],
              "rules": getattr(rs, "source", None),
              "host": str(host) if isinstance(host, (str, Path)) else (None if host is None else type(host).__name__),
              "local": list(local), "allow_unsupported": allow_unsupported}
    log.debug("replayed %d packets in %.3fs", len(out.results.outcome), wall)
    return Result(out, rs, wall_time_s=wall, inputs=inputs, digests=_capture_digests(cap))


def _sha256_file(path, stop=None, step: int = 64 << 20):
    """Hex sha256 of a file, hashed straight from a read-only memory map (no copy into a read buffer:
    ~25 % less CPU than reading it in blocks), in `step`-byte slices whose mapped pages are dropped after
    hashing (MADV_DONTNEED: the mapped file would otherwise count in the process's RSS up to its whole
    size). None when `stop` (a threading.Event) is set."""
    import hashlib
    import mmap

    h = hashlib.sha256()
    step = max(mmap.PAGESIZE, step - step % mmap.PAGESIZE)  # madvise wants page-aligned offsets
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0:
            return h.hexdigest()
        with mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as m:
            view = memoryview(m)
            try:
                for off in range(0, size, step):
                    if stop is not None and stop.is_set():
                        return None
                    n = min(step, size - off)
                    h.update(view[off:off + n])
                    if hasattr(m, "madvise"):
                        m.madvise(mmap.MADV_DONTNEED, off, n)
            finally:
                view.release()
    return h.hexdigest()


def _capture_digests(cap, stop=None) -> dict:
    """sha256 of every capture file (streamed), and of their concatenated digests when several.
    stop: a threading.Event that abandons the work (returns {}) when set."""
    import hashlib

    per = []
    for f in getattr(cap, "files", []) or []:
        path = getattr(f, "path", None)
        if not path or not Path(path).is_file():
            continue
        h = _sha256_file(path, stop)
        if h is None:
            return {}
        per.append((str(path), h))
    if not per:
        return {}
    if len(per) == 1:
        return {"capture": per[0][1]}
    combined = hashlib.sha256("".join(d for _, d in per).encode()).hexdigest()
    return {"capture": combined, "capture_files": dict(per)}


@_gc_frozen
def simulate_to(capture_paths, rules, host=None, out_dir=None, *, fmt: str = "parquet", local=(),
                allow_unsupported: bool = False, seed: int = 0, assume_good_checksums: bool = False,
                capture_point: str = "arrival", ipsets=(), chunk_packets: int = 262_144, reader: str = "auto",
                overlap: bool = True, progress=None, ingest_progress=None, sample: int | None = None,
                packet_rows: str = "all"):
    """Streaming replay for captures of any size: reads capture_paths chunk by chunk (iter_capture),
    replays each chunk with state carried over (driver.Replayer) in steps of export.STREAM_STEP packets
    and appends each step's packets / events tables to out_dir (one Parquet row group or CSV append per
    step, built and written by a background thread while the next step replays); rules, flows and
    summary.json at the end. Memory: one or two chunks, two steps' tables, the conntrack table
    (nf_conntrack_max entries) and the flow records.

    overlap: decode chunk k+1 in a background thread while chunk k replays (kernels release the GIL).
    progress(packets_done); ingest_progress(done_bytes, total_bytes) from the reader.
    Returns (Result, paths): the Result holds the first `sample` packets (export.STREAM_SAMPLE) and
    the complete rules, flows and summary (whole-capture counts, summary["streamed"] = True).
    packet_rows: "all" (default) or "notable": what packets.parquet holds (export.PACKET_ROWS)."""
    from ..replay.driver import Replayer
    from ..replay.ingest import iter_capture
    from . import export

    t0 = time.perf_counter()
    paths = [str(capture_paths)] if isinstance(capture_paths, (str, Path)) else [str(c) for c in capture_paths]
    rs = _load_rules(rules)
    hm = _load_host(host, local)
    rp = Replayer(rs, hm, allow_unsupported=allow_unsupported, seed=seed,
                  assume_good_checksums=assume_good_checksums, capture_point=capture_point, ipsets=ipsets)
    chunks = iter_capture(paths, chunk_packets=chunk_packets, reader=reader, progress=ingest_progress)
    if overlap:
        chunks = export._decode_ahead(chunks)
    inputs = {"capture": paths, "rules": getattr(rs, "source", None),
              "host": str(host) if isinstance(host, (str, Path)) else (None if host is None else type(host).__name__),
              "local": list(local), "allow_unsupported": allow_unsupported}
    return export.stream_tables(chunks, rp, out_dir, fmt,
                                sample=export.STREAM_SAMPLE if sample is None else int(sample),
                                progress=progress, extra=inputs, wall_t0=t0, packet_rows=packet_rows)

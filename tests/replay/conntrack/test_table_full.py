"""A full conntrack table (nf_conntrack_max reached): reaping of expired entries and early drop, checked
against a brute-force scan of the table before every packet.

The kernels avoid whole-table scans (per-64-slot-block expiry bounds, an early-drop queue in ct_id
order); these tests pin that the result is the documented policy exactly: when a new entry is needed
and the table is full, every confirmed, non-dying entry expired at the packet's time is destroyed (in
slot order, packet_index -1), then, if still full, the confirmed, non-ASSURED, non-dying entry with the
lowest ct_id is evicted; with no such entry the packet is dropped (table full).
"""

from __future__ import annotations

import numpy as np
import pytest
from factories import Driver, pkt

from nfreplay.replay.conntrack import R_TABLE_FULL
from nfreplay.replay.conntrack.core import S_ASSURED, S_DYING
from nfreplay.replay.conntrack.table import (
    C_CT_ID,
    C_STATUS,
    C_USED,
    L_EXPIRES,
    M_COUNT,
    M_Q_CAP,
    M_Q_HEAD,
    M_Q_TAIL,
)

EVT_NEW, EVT_DESTROY = 1, 3


def _snapshot(tab):
    E, L = tab.E, tab.L
    used = E[:, C_USED] == 2
    alive = used & ((E[:, C_STATUS] & S_DYING) == 0)
    return E[:, C_CT_ID].copy(), alive, L[:, L_EXPIRES].copy(), (E[:, C_STATUS] & S_ASSURED) != 0


def _traffic(seed: int, n: int):
    """UDP and TCP between 40 clients and 6 servers: new flows, replies (some flows become ASSURED),
    time advancing in jumps so that entries expire while the table is full."""
    rng = np.random.default_rng(seed)
    t = 0.0
    flows = []
    for _ in range(n):
        t += float(rng.choice([0.001, 0.05, 0.3, 45.0], p=[0.7, 0.2, 0.095, 0.005]))
        if flows and rng.random() < 0.45:
            c, s, proto, cp, sp = flows[int(rng.integers(len(flows)))]
            if proto == 17:
                yield pkt(s, c, 17, sp, cp, t=t)
            else:
                yield pkt(s, c, 6, sp, cp, "SA", 5000, 1001, t=t)
            continue
        c = f"10.0.{int(rng.integers(40))}.{int(rng.integers(1, 200))}"
        s = f"192.168.0.{int(rng.integers(1, 7))}"
        cp = int(rng.integers(1024, 65535))
        if rng.random() < 0.7:
            flows.append((c, s, 17, cp, 53))
            yield pkt(c, s, 17, cp, 53, t=t)
        else:
            flows.append((c, s, 6, cp, 80))
            yield pkt(c, s, 6, cp, 80, "S", 1000, t=t)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_full_table_reap_and_early_drop_match_brute_force(seed):
    ct_max = 140  # several 64-slot blocks
    d = Driver({"nf_conntrack_max": ct_max}, capacity=ct_max + 16,
               flows=20000)
    seen_full = seen_reap = seen_evict = seen_drop = 0
    for k, row in enumerate(_traffic(seed, 2500)):
        ids, alive, exp, assured = _snapshot(d.tab)
        now = row["ts_ns"]
        full_before = int(d.tab.M[M_COUNT]) >= ct_max
        ed_before = d.counters()["early_drops"]
        n_ev = len(d.events)
        r = d.send(row, index=k)
        new_ev = d.events[n_ev:]
        allocated = any(e["event"] == EVT_NEW and e["packet_index"] == k for e in new_ev) \
            or r["reason"] == R_TABLE_FULL
        if not (full_before and allocated):
            continue
        seen_full += 1
        expired = [int(ids[s]) for s in np.flatnonzero(alive & (exp <= now))]
        reaped = [e["ct_id"] for e in new_ev if e["event"] == EVT_DESTROY and e["packet_index"] == -1]
        if len(reaped) == 1 and reaped[0] in expired and len(expired) > 1:
            # the packet's own entry had expired: the lookup reaped it, which made room (no full path)
            continue
        assert sorted(reaped) == sorted(expired), (k, reaped, expired)
        seen_reap += bool(expired)
        evicted = [e["ct_id"] for e in new_ev if e["event"] == EVT_DESTROY and e["packet_index"] >= 0]
        if d.counters()["early_drops"] > ed_before:
            cand = alive & ~(exp <= now) & ~assured
            want = int(ids[cand].min())
            assert evicted[:1] == [want], (k, evicted, want)
            seen_evict += 1
        elif r["reason"] == R_TABLE_FULL:
            cand = alive & ~(exp <= now) & ~assured
            assert not cand.any() or len(expired) > 0, k
            seen_drop += 1
    # the traffic must actually exercise every path
    assert seen_full > 50 and seen_reap > 5 and seen_evict > 5, (seen_full, seen_reap, seen_evict, seen_drop)


def test_early_drop_queue_survives_compaction():
    """Many confirms with few evictions fill the early-drop queue (2 x capacity pairs) and force it to
    compact; the victim is still the lowest ct_id among non-ASSURED entries."""
    ct_max = 20
    d = Driver({"nf_conntrack_max": ct_max}, capacity=ct_max + 16, flows=5000)
    t = 0.0
    for k in range(400):  # each flow answered twice -> ASSURED (UDP stream), then expires
        t += 40.0
        c, s, cp = f"10.0.0.{k % 250 + 1}", "192.168.0.1", 2000 + k
        d.send(pkt(c, s, 17, cp, 53, t=t), index=3 * k)
        d.send(pkt(s, c, 17, 53, cp, t=t + 0.1), index=3 * k + 1)
        d.send(pkt(c, s, 17, cp, 53, t=t + 3.0), index=3 * k + 2)
    M = d.tab.M
    assert M[M_Q_TAIL] - M[M_Q_HEAD] <= M[M_Q_CAP] < 400  # 400 confirms went through a compacting queue
    # now fill the table with unanswered (non-ASSURED) flows at one instant, then one more
    base = len(d.events)
    first_ids = []
    for j in range(ct_max + 1):
        r = d.send(pkt(f"10.1.0.{j + 1}", "192.168.0.2", 17, 3000 + j, 53, t=t + 100.0), index=5000 + j)
        first_ids.append(r.get("ct_id"))
    assert d.counters()["early_drops"] >= 1
    evicted = [e["ct_id"] for e in d.events[base:] if e["event"] == EVT_DESTROY and e["packet_index"] >= 0]
    assert 1 <= len(evicted) and evicted == first_ids[:len(evicted)]

"""The NAT by-source index over conntrack slots (nf_nat_core.c `nf_nat_bysource`).

The kernel keeps every entry that got a SRC manip binding (`nf_nat_setup_info` with
NF_NAT_MANIP_SRC, null bindings included) in a hash keyed by the ORIGINAL source (address, port or
ICMP id, protocol; zone), `hlist_add_head` so a bucket lists its newest entry first, and removes it
when the entry is freed (`nf_conntrack_free` -> `nf_nat_cleanup_conntrack` while IPS_SRC_NAT_DONE is
set): expiry, early drop, RST / reopen kills, unconfirmed entries of dropped packets and clashes at
confirm. `find_appropriate_src` (nat.py) scans the bucket of a new connection's source.

Layout (table.py): a chained hash in the entry array E itself, so it costs no extra array anywhere:
``E[b, C_BYSRC_HEAD]`` is the head of bucket b (slot + 1, 0 = empty) for b in [0, capacity) -- a
per-row value that does not belong to the row's entry (``_init_entry`` keeps it) -- and
``E[s, C_BYSRC_NEXT]`` / ``E[s, C_BYSRC_PREV]`` link entry s into its bucket (slot + 1, 0 = none), so
insertion and removal are O(1). Only SRC NAT bindings touch it: a replay without NAT never does.
"""

from __future__ import annotations

import numpy as np

from nfreplay.replay._jit import kernel
from nfreplay.replay.conntrack.table import (
    C_BYSRC_HEAD,
    C_BYSRC_NEXT,
    C_BYSRC_PREV,
    C_FAMILY,
    C_O_SPORT,
    C_O_SRC_HI,
    C_O_SRC_LO,
    C_PROTO,
    C_ZONE,
)

_U32 = 0xFFFFFFFF


@kernel
def _mix32(h, w):
    h = ((h ^ (w & _U32)) * 0x5BD1E995) & _U32
    return h ^ (h >> 15)


@kernel
def bysrc_bucket(E, fam, proto, zone, src_hi, src_lo, sport):
    """Bucket of a source key (hash_by_src: source address and port/id, protocol, zone; the family
    is mixed in as the kernel's tuple->src carries l3num). Addresses as int64 bit patterns."""
    h = np.int64(0x3C6EF372)
    h = _mix32(h, src_hi >> 32)
    h = _mix32(h, src_hi)
    h = _mix32(h, src_lo >> 32)
    h = _mix32(h, src_lo)
    h = _mix32(h, (np.int64(sport) & 0xFFFF) | (np.int64(proto) << 16) | (np.int64(fam) << 24))
    h = _mix32(h, zone)
    return h % E.shape[0]


@kernel
def _entry_bucket(E, s):
    return bysrc_bucket(E, E[s, C_FAMILY], E[s, C_PROTO], E[s, C_ZONE], E[s, C_O_SRC_HI], E[s, C_O_SRC_LO],
                        E[s, C_O_SPORT])


@kernel
def bysrc_insert(E, s):
    """hlist_add_head_rcu(&ct->nat_bysource, bucket of the ORIGINAL source): newest first."""
    b = _entry_bucket(E, s)
    head = E[b, C_BYSRC_HEAD]
    E[s, C_BYSRC_NEXT] = head
    E[s, C_BYSRC_PREV] = 0
    if head != 0:
        E[head - 1, C_BYSRC_PREV] = s + 1
    E[b, C_BYSRC_HEAD] = s + 1


@kernel
def bysrc_remove(E, s):
    """hlist_del_rcu: unlink entry s (a no-op when it is not in the index)."""
    nxt = E[s, C_BYSRC_NEXT]
    prv = E[s, C_BYSRC_PREV]
    if prv != 0:
        E[prv - 1, C_BYSRC_NEXT] = nxt
    else:
        b = _entry_bucket(E, s)
        if E[b, C_BYSRC_HEAD] != s + 1:
            return
        E[b, C_BYSRC_HEAD] = nxt
    if nxt != 0:
        E[nxt - 1, C_BYSRC_PREV] = prv
    E[s, C_BYSRC_NEXT] = 0
    E[s, C_BYSRC_PREV] = 0


@kernel
def bysrc_head(E, fam, proto, zone, src_hi, src_lo, sport):
    """First slot + 1 of the bucket of this source key (0: empty); follow E[s, C_BYSRC_NEXT]. The
    bucket may hold entries of other keys (compare the key, as same_src does)."""
    return E[bysrc_bucket(E, fam, proto, zone, src_hi, src_lo, sport), C_BYSRC_HEAD]

"""Matches with state kept across packets, kernel-exact on capture time (spec §4.4, §6.6, §7.5).

compile.py calls `check_stateful()` per model.Stateful and `compile_stateful()` once; chains.py calls
the kernel `stateful_match(cra, st, s, ctx, pkt_len, now_ns)`; `new_stateful_state()` builds the state
arrays that live in chains.RuleState (carried across chunks).

Kinds (sf_kind) and parameters (sf_p[s, 0..11]):
* SF_LIMIT (xt_limit.c): p0 cost, p1 credit_cap, p2 CREDITS_PER_JIFFY, p3 HZ. State: credit (u32),
  prev (jiffies), initialised. Jiffies = floor(now_ns * HZ / 1e9) (absolute, so the jiffy phase is the
  capture clock's). The bucket starts full at the first evaluation (equivalent to "full at rule load").
* SF_NFT_LIMIT (nft_limit.c, packets): p0 cost ns, p1 tokens_max, p2 over. SF_NFT_LIMIT_BYTES: p0 unit
  ns, p1 tokens_max, p2 over, p3 rate (bytes per unit). Tokens in ns, no jiffy quantisation.
* SF_STAT_NTH (xt_statistic.c): p0 every (n-1), p1 initial count (n-1-k). SF_STAT_RANDOM: p0 threshold
  lround(p * 2^31); match iff (draw & 0x7FFFFFFF) < threshold.
* SF_QUOTA (xt_quota.c): p0 bytes; SF_NFT_QUOTA (nft_quota.c): p0 bytes, p1 over.
* SF_RECENT (xt_recent.c): p0 table id, p1 cmd (1 set, 2 rcheck, 3 update, 4 remove), p2 seconds,
  p3 hitcount, p4 rttl, p5 side (0 source, 1 dest), p6 reap, p8/p9 mask words, p10 invert (recent
  applies its own inversion: --update refreshes only when the final result is true). Tables: up to
  ip_list_tot = 100 entries each, LRU eviction, a ring of stamps per entry (32 slots, or the next power
  of two >= hitcount when hitcount >= ip_pkt_list_tot = 20).
* SF_NUMGEN_INC / SF_NUMGEN_RANDOM (nft_numgen.c): p0 modulus, p1 offset; writes ctx[Field.NUMGEN]
  and always matches (a following vmap/map reads it).

Randomness: one PRNG stream per RuleState, xorshift64 (13, 7, 17) started from seed ^ 0x9E3779B97F4A7C15;
a draw is the upper 32 bits; drawn only when the kernel would draw (rule reached). rng = [state, draws,
seed] so reports can name the seed and the number of draws.
Not modelled (compile reports them unsupported): hashlimit, connlimit.
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import kernel

__all__ = ["check_stateful", "compile_stateful", "new_stateful_state", "stateful_match", "draw_u32",
           "user2credits", "credits_per_jiffy", "SF_LIMIT", "SF_NFT_LIMIT", "SF_NFT_LIMIT_BYTES", "SF_STAT_NTH",
           "SF_STAT_RANDOM", "SF_QUOTA", "SF_NFT_QUOTA", "SF_RECENT", "SF_NUMGEN_INC", "SF_NUMGEN_RANDOM"]

SF_LIMIT = 1
SF_NFT_LIMIT = 2
SF_NFT_LIMIT_BYTES = 3
SF_STAT_NTH = 4
SF_STAT_RANDOM = 5
SF_QUOTA = 6
SF_NFT_QUOTA = 7
SF_RECENT = 8
SF_NUMGEN_INC = 9
SF_NUMGEN_RANDOM = 10
NP = 12
IP_LIST_TOT = 100
IP_PKT_LIST_TOT = 20
XT_LIMIT_SCALE = 10000
NSEC = 1_000_000_000
_M32 = 0xFFFFFFFF
_F_NUMGEN = 52  # codes.Field.NUMGEN
_F_SRC = 0
_F_DST = 2
_F_TTL = 15
_F_IIF = 7
_F_OIF = 8
_F_NFPROTO = 22
_RECENT_CMDS = {"set": 1, "rcheck": 2, "update": 3, "remove": 4}


def credits_per_jiffy(hz: int) -> int:
    """CREDITS_PER_JIFFY: the largest power of two <= 0xFFFFFFFF / (HZ * 86400) (xt_limit.c)."""
    mx = _M32 // (hz * 86400)
    return 1 << (mx.bit_length() - 1)


def user2credits(user: int, hz: int) -> int:
    """xt_limit.c user2credits, u32 arithmetic."""
    cpj = credits_per_jiffy(hz)
    user &= _M32
    if user > _M32 // (hz * cpj):
        return ((user // XT_LIMIT_SCALE) * hz * cpj) & _M32
    return ((user * hz * cpj) & _M32) // XT_LIMIT_SCALE


def _num(v, what):
    try:
        return int(v)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: not a number: {v!r}") from None


def check_stateful(e, origin: str) -> None:
    """Raise ValueError naming the problem when e (model.Stateful) cannot be modelled."""
    k = e.kind
    if k == "limit":
        num, den = _num(e.get("rate_num", 3), "limit rate"), _num(e.get("rate_den_s", 3600), "limit unit")
        if num <= 0 or den <= 0:
            raise ValueError("limit with a zero rate")
        if origin != "nft" and (e.get("over") or e.get("bytes")):
            raise ValueError("xt limit cannot be inverted or count bytes")
        if origin != "nft" and XT_LIMIT_SCALE * den // num == 0:
            raise ValueError("limit: rate too fast")
    elif k == "statistic":
        if e.get("mode", "random") not in ("nth", "random"):
            raise ValueError(f"statistic mode {e.get('mode')}")
        if e.get("mode") == "nth":
            n, p = _num(e.get("every", 0), "statistic every"), _num(e.get("packet", 0), "statistic packet")
            if n < 1 or not 0 <= p < n:
                raise ValueError("statistic --every/--packet out of range")
    elif k == "quota":
        _num(e.get("bytes", 0), "quota bytes")
    elif k == "recent":
        if e.get("cmd") not in _RECENT_CMDS:
            raise ValueError(f"recent without one of --set/--rcheck/--update/--remove ({e.get('cmd')})")
        if _num(e.get("hitcount", 0) or 0, "recent hitcount") >= 256:
            raise ValueError("recent --hitcount larger than 255")
        if e.get("reap") and not e.get("seconds"):
            raise ValueError("recent --reap needs --seconds")
    elif k == "numgen":
        if e.get("mode", "inc") not in ("inc", "random") or _num(e.get("mod", 0), "numgen mod") <= 0:
            raise ValueError(f"numgen {e.get('mode')} mod {e.get('mod')}")
    elif k in ("hashlimit", "connlimit"):
        raise ValueError(f"{k} is not modelled yet")
    else:
        raise ValueError(f"stateful match {k}")


def compile_stateful(items, recent_names, hz: int):
    """items: list of (model.Stateful, table origin) in stateful-index order. -> (sf_kind, sf_p)."""
    n = len(items)
    kind = np.zeros(n, np.int64)
    p = np.zeros((max(n, 1), NP), np.int64)
    for i, (e, origin) in enumerate(items):
        k = e.kind
        if k == "limit":
            num, den = int(e.get("rate_num", 3)), int(e.get("rate_den_s", 3600))
            burst = int(e.get("burst", 5) or 0)
            if origin == "nft":
                nsecs = den * NSEC
                over = int(bool(e.get("over")))
                if e.get("bytes"):
                    kind[i] = SF_NFT_LIMIT_BYTES
                    p[i, :4] = (nsecs, nsecs * (num + burst) // num, over, num)
                else:
                    burst = burst or 5
                    kind[i] = SF_NFT_LIMIT
                    cost = nsecs // num
                    p[i, :3] = (cost, cost * burst, over)
            else:
                avg = int(e.get("avg") or XT_LIMIT_SCALE * den // num)  # the parser's exact user value
                burst = burst or 5
                kind[i] = SF_LIMIT
                p[i, :4] = (user2credits(avg, hz), user2credits((avg * burst) & _M32, hz), credits_per_jiffy(hz), hz)
        elif k == "statistic":
            if e.get("mode") == "nth":
                every = int(e.get("every")) - 1
                kind[i] = SF_STAT_NTH
                p[i, :2] = (every, every - int(e.get("packet", 0) or 0))
            else:
                kind[i] = SF_STAT_RANDOM
                pr = float(e.get("probability", 1.0))
                p[i, 0] = min(int(math.floor(pr * 2 ** 31 + 0.5)), 2 ** 31)  # lround
        elif k == "quota":
            if origin == "nft":
                kind[i] = SF_NFT_QUOTA
                p[i, :2] = (int(e.get("bytes")), int(bool(e.get("over"))))
            else:
                kind[i] = SF_QUOTA
                p[i, 0] = int(e.get("bytes"))
        elif k == "recent":
            kind[i] = SF_RECENT
            mask = e.get("mask")
            if mask is None:
                mask = (1 << 128) - 1
            mask &= (1 << 128) - 1
            hi, lo = mask >> 64, mask & ((1 << 64) - 1)
            p[i, 0] = recent_names.index(e.get("name", "DEFAULT"))
            p[i, 1] = _RECENT_CMDS[e.get("cmd")]
            p[i, 2] = int(e.get("seconds", 0) or 0)
            p[i, 3] = int(e.get("hitcount", 0) or 0)
            p[i, 4] = int(bool(e.get("rttl")))
            p[i, 5] = 1 if e.get("side", "source") in ("dest", "dst", "rdest") else 0
            p[i, 6] = int(bool(e.get("reap")))
            p[i, 7] = hz
            p[i, 8] = hi - (1 << 64) if hi >= 1 << 63 else hi
            p[i, 9] = lo - (1 << 64) if lo >= 1 << 63 else lo
            p[i, 10] = int(bool(e.negate))
        elif k == "numgen":
            kind[i] = SF_NUMGEN_RANDOM if e.get("mode") == "random" else SF_NUMGEN_INC
            p[i, :2] = (int(e.get("mod")), int(e.get("offset", 0) or 0))
    return kind, p


def _ring_size(hitcount: int) -> int:
    if hitcount < IP_PKT_LIST_TOT:
        return 1 << (IP_PKT_LIST_TOT - 1).bit_length()
    return 1 << (hitcount - 1).bit_length()


def new_stateful_state(cra, seed: int) -> dict:
    """State arrays (the stateful part of chains.RuleState) for compiled arrays cra."""
    n = cra.sf_kind.shape[0]
    sf = np.zeros((max(n, 1), 8), np.int64)
    T = max(cra.rc_n_tables, 1)
    ring = np.full(T, 32, np.int64)
    for i in range(n):
        k = cra.sf_kind[i]
        if k == SF_STAT_NTH:
            sf[i, 0] = cra.sf_p[i, 1]
        elif k == SF_QUOTA:
            sf[i, 0] = cra.sf_p[i, 0]
        elif k == SF_NUMGEN_INC:
            sf[i, 0] = cra.sf_p[i, 0] - 1
        elif k == SF_RECENT:
            t = cra.sf_p[i, 0]
            ring[t] = max(ring[t], _ring_size(int(cra.sf_p[i, 3])))
    R = int(ring.max())
    rc_tab = np.zeros((T, 4), np.int64)
    rc_tab[:, 2] = ring - 1
    s = (int(seed) ^ 0x9E3779B97F4A7C15) & ((1 << 64) - 1)
    s = s - (1 << 64) if s >= 1 << 63 else s
    rng = np.array([s or 1, 0, int(seed) & ((1 << 63) - 1)], np.int64)
    return dict(sf=sf, rng=rng, rc_addr=np.zeros((T, IP_LIST_TOT, 2), np.int64),
                rc_meta=np.zeros((T, IP_LIST_TOT, 6), np.int64), rc_stamps=np.zeros((T, IP_LIST_TOT, R), np.int64),
                rc_tab=rc_tab, hl_key=np.zeros((1, 5), np.int64), hl_val=np.zeros((1, 4), np.int64))


@kernel
def draw_u32(rng):
    """Next 32-bit draw of the stream (xorshift64 13/7/17, upper half)."""
    x = rng[0]
    x ^= x << 13
    x ^= (x >> 7) & np.int64(0x01FFFFFFFFFFFFFF)
    x ^= x << 17
    rng[0] = x
    rng[1] += 1
    return (x >> 32) & 0xFFFFFFFF


@kernel
def _jiffies(now_ns, hz):
    return (now_ns // 1000000000) * hz + ((now_ns % 1000000000) * hz) // 1000000000


@kernel
def _recent_remove(st, t, i):
    st.rc_meta[t, i, 0] = 0
    st.rc_tab[t, 0] -= 1


@kernel
def _recent_update(st, t, i, now_j):
    mask = st.rc_tab[t, 2]
    idx = st.rc_meta[t, i, 4] & mask
    st.rc_stamps[t, i, idx] = now_j
    idx += 1
    st.rc_meta[t, i, 4] = idx
    if idx > st.rc_meta[t, i, 3]:
        st.rc_meta[t, i, 3] = idx
    st.rc_tab[t, 1] += 1
    st.rc_meta[t, i, 5] = st.rc_tab[t, 1]  # move to the LRU tail


@kernel
def _recent_oldest(st, t):
    best = -1
    for i in range(st.rc_meta.shape[1]):
        if st.rc_meta[t, i, 0] != 0 and (best < 0 or st.rc_meta[t, i, 5] < st.rc_meta[t, best, 5]):
            best = i
    return best


@kernel
def _recent(cra, st, s, ctx, now_ns):
    p = cra.sf_p
    t = p[s, 0]
    cmd = p[s, 1]
    ret = p[s, 10] != 0
    fam = np.int64(4) if ctx[_F_NFPROTO] == 2 else np.int64(6)
    f = _F_DST if p[s, 5] == 1 else _F_SRC
    hi = ctx[f] & p[s, 8]
    lo = ctx[f + 1] & p[s, 9]
    ttl = ctx[_F_TTL]
    if ctx[_F_OIF] >= 0 and ctx[_F_IIF] >= 0:  # forwarded: TTL as seen before forwarding
        ttl += 1
    now_j = _jiffies(now_ns, p[s, 7])
    lttl = ttl if p[s, 4] != 0 else np.int64(0)
    e = -1
    for i in range(st.rc_meta.shape[1]):
        if st.rc_meta[t, i, 0] != 0 and st.rc_meta[t, i, 1] == fam and st.rc_addr[t, i, 0] == hi \
                and st.rc_addr[t, i, 1] == lo:
            et = st.rc_meta[t, i, 2]
            if lttl == et or lttl == 0 or et == 0:
                e = i
                break
    if e < 0:
        if cmd != 1:
            return ret
        if st.rc_tab[t, 0] >= st.rc_meta.shape[1]:
            _recent_remove(st, t, _recent_oldest(st, t))
        for i in range(st.rc_meta.shape[1]):
            if st.rc_meta[t, i, 0] == 0:
                e = i
                break
        st.rc_meta[t, e, 0] = 1
        st.rc_meta[t, e, 1] = fam
        st.rc_meta[t, e, 2] = lttl
        st.rc_addr[t, e, 0] = hi
        st.rc_addr[t, e, 1] = lo
        st.rc_stamps[t, e, 0] = now_j
        st.rc_meta[t, e, 3] = 1
        st.rc_meta[t, e, 4] = 1
        st.rc_tab[t, 0] += 1
        st.rc_tab[t, 1] += 1
        st.rc_meta[t, e, 5] = st.rc_tab[t, 1]
        return not ret
    if cmd == 1:
        ret = not ret
    elif cmd == 4:
        _recent_remove(st, t, e)
        return not ret
    else:
        secs = p[s, 2]
        tlim = now_j - secs * p[s, 7]
        hitc = p[s, 3]
        hits = 0
        for i in range(st.rc_meta[t, e, 3]):
            if secs != 0 and st.rc_stamps[t, e, i] < tlim:
                continue
            hits += 1
            if hitc == 0 or hits >= hitc:
                ret = not ret
                break
        if p[s, 6] != 0:
            o = _recent_oldest(st, t)
            if o >= 0 and not (o == e and cmd == 3 and ret):
                li = (st.rc_meta[t, o, 4] - 1) & st.rc_tab[t, 2]
                if st.rc_stamps[t, o, li] < tlim:
                    _recent_remove(st, t, o)
                    if o == e:
                        return ret
    if cmd == 1 or (cmd == 3 and ret):
        _recent_update(st, t, e, now_j)
        st.rc_meta[t, e, 2] = ttl
    return ret


@kernel
def stateful_match(cra, st, s, ctx, pkt_len, now_ns):
    """Evaluate stateful match s (before the row's negation, except recent which inverts itself)."""
    k = cra.sf_kind[s]
    p = cra.sf_p
    sf = st.sf
    if k == SF_LIMIT:
        now_j = _jiffies(now_ns, p[s, 3])
        if sf[s, 2] == 0:
            sf[s, 2] = 1
            sf[s, 0] = p[s, 1]
            sf[s, 1] = now_j
        credit = (sf[s, 0] + (now_j - sf[s, 1]) * p[s, 2]) & 0xFFFFFFFF
        sf[s, 1] = now_j
        if credit > p[s, 1]:
            credit = p[s, 1]
        if credit >= p[s, 0]:
            sf[s, 0] = credit - p[s, 0]
            return True
        sf[s, 0] = credit
        return False
    if k == SF_NFT_LIMIT or k == SF_NFT_LIMIT_BYTES:
        if sf[s, 2] == 0:
            sf[s, 2] = 1
            sf[s, 0] = p[s, 1]
            sf[s, 1] = now_ns
        if k == SF_NFT_LIMIT:
            cost = p[s, 0]
        else:
            cost = p[s, 0] * pkt_len // p[s, 3]
        tokens = sf[s, 0] + (now_ns - sf[s, 1])
        if tokens > p[s, 1]:
            tokens = p[s, 1]
        sf[s, 1] = now_ns
        over = p[s, 2] != 0
        if tokens - cost >= 0:
            sf[s, 0] = tokens - cost
            return not over
        sf[s, 0] = tokens
        return over
    if k == SF_STAT_NTH:
        c = np.int64(0) if sf[s, 0] == p[s, 0] else sf[s, 0] + 1
        sf[s, 0] = c
        return c == 0
    if k == SF_STAT_RANDOM:
        return (draw_u32(st.rng) & 0x7FFFFFFF) < p[s, 0]
    if k == SF_QUOTA:
        if sf[s, 0] >= pkt_len:
            sf[s, 0] -= pkt_len
            return True
        sf[s, 0] = 0
        return False
    if k == SF_NFT_QUOTA:
        sf[s, 0] += pkt_len
        overq = sf[s, 0] >= p[s, 0]
        return overq == (p[s, 1] != 0)
    if k == SF_RECENT:
        return _recent(cra, st, s, ctx, now_ns)
    if k == SF_NUMGEN_INC:
        c = sf[s, 0] + 1
        if c >= p[s, 0]:
            c = 0
        sf[s, 0] = c
        ctx[_F_NUMGEN] = c + p[s, 1]
        return True
    if k == SF_NUMGEN_RANDOM:
        ctx[_F_NUMGEN] = ((draw_u32(st.rng) * p[s, 0]) >> 32) + p[s, 1]
        return True
    return False

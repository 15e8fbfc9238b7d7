"""Matches with state kept across packets, kernel-exact on capture time (spec §4.4, §6.6, §7.5).

compile.py calls `check_stateful()` per model.Stateful and `compile_stateful()` once; chains.py calls
the kernel `stateful_match(p, st, s, ctx, pkt_len, now_ns)` (p = CompiledArrays.sf, st = RuleState), which
hands each kind only the arrays it uses; `new_stateful_state()` builds the state arrays that live in
chains.RuleState (carried across chunks): misc, sf, rc, hl, cl, ct_live (layouts: M_*, RC_*, HL_W, CL_W
below; the names sf_p/sf_kind/hl_tab/hl_key/hl_val/cl_tab/cl_key/cl_ent/rc_tab/rng/hotdrop are views).

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
* SF_HASHLIMIT (xt_hashlimit.c revision 3): p0 table id (one per --hashlimit-name and family; the first
  rule's config creates it, later rules only bring their own --upto/--above), p1 invert, p2 table mode
  (XT_HASHLIMIT_* bits), p3..p6 src/dst masks (128-bit words), p7/p8/p9 = cost/credit_cap/CPJ (packets),
  cost/burst refills/CPJ_BYTES (bytes), rate/burst/interval jiffies (rate-match), p10 expire jiffies,
  p11 gc interval jiffies, p12 max entries, p13 HZ, p14 CPJ_BYTES*HZ, p15 family. Entries: open addressing
  over hl_key/hl_val per table (hl_tab: count, gc anchor, base, capacity, last jiffies, last sweep,
  hotdrops, overflows). The gc work runs every gc interval from the table's first evaluation; an entry
  with expires <= the last run is gone (found lazily, swept when the table is full). Full table: hotdrop.
* SF_CONNLIMIT (xt_connlimit.c + nf_conncount.c, v6.17): p0 limit, p1 above (else upto), p2 daddr,
  p3/p4 mask words, p5 HZ; sf[s, 0] = connlimit index. Per key (masked address, zone) an ordered list of
  remembered tuples (cl_key, cl_ent); __nf_conncount_add: no look when last_gc is this jiffy, else evict
  gone / closed entries (at most CONNCOUNT_GC_MAX_NODES + 1), stop at the current tuple; then append.
  Whether a remembered connection is still there comes from st.ct_live when the pipeline provides it
  (one row per conntrack slot: generation of the confirmed entry or -1, expiry ns, TCP CLOSE/TIME_WAIT
  flag; the packet's slot and generation in ctx[53], ctx[54]); without it, from the expiry last seen.
"""

from __future__ import annotations

import math

import numpy as np

from ._jit import kernel
from .rules.compile import H_SF, H_SF_ROWS, SF_N

__all__ = ["check_stateful", "compile_stateful", "new_stateful_state", "stateful_match", "draw_u32",
           "user2credits", "credits_per_jiffy", "hl_user2credits", "hl_user2credits_byte", "hl_cpj", "hl_cpj_bytes",
           "msecs_to_jiffies", "hashlimit_conflict", "SF_HASHLIMIT", "SF_CONNLIMIT", "SF_LIMIT", "SF_NFT_LIMIT", "SF_NFT_LIMIT_BYTES", "SF_STAT_NTH",
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
SF_HASHLIMIT = 11
SF_CONNLIMIT = 12
NP = 16
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


# ---- xt_hashlimit.c (revision 3) constants and credit formulas
HL_DIP, HL_DPT, HL_SIP, HL_SPT = 1, 2, 4, 8  # XT_HASHLIMIT_HASH_*
HL_INVERT, HL_BYTES, HL_RATE_MATCH = 16, 32, 64
HL_SCALE = 1_000_000  # XT_HASHLIMIT_SCALE_v2
HL_MAX_SIZE = 1048576  # HASHLIMIT_MAX_SIZE: size and max are truncated to it
HL_DEFAULT_SIZE = 8192  # htable_create default for hosts with more than 1 GiB of RAM
HL_MAX_SLOTS = 1 << 18  # model limit: open-addressing slots per table
CL_KEY_SLOTS = 1 << 15  # connlimit model limits per rule: keys, remembered connections
CL_POOL = 1 << 16
CONNCOUNT_GC_MAX_NODES = 8
_M64 = (1 << 64) - 1
_MODE_BITS = {"dstip": HL_DIP, "dstport": HL_DPT, "srcip": HL_SIP, "srcport": HL_SPT}


def hl_cpj(hz: int) -> int:
    """xt_hashlimit CREDITS_PER_JIFFY (64-bit): the largest power of two <= 2^64-1 / (HZ*86400)."""
    return 1 << ((_M64 // (hz * 86400)).bit_length() - 1)


def hl_cpj_bytes(hz: int) -> int:
    """CREDITS_PER_JIFFY_BYTES: the largest power of two <= 0xFFFFFFFF / HZ."""
    return 1 << ((_M32 // hz).bit_length() - 1)


def hl_user2credits(user: int, hz: int) -> int:
    """xt_hashlimit.c user2credits(user, 3), u64 arithmetic."""
    cpj = hl_cpj(hz)
    user &= _M64
    if HL_SCALE >= hz * cpj:
        return user // (HL_SCALE // (hz * cpj))
    return (user * ((hz * cpj) // HL_SCALE)) & _M64


def hl_user2credits_byte(user: int, hz: int) -> int:
    """xt_hashlimit.c user2credits_byte: (u32)((u64)user * HZ * CPJ_BYTES >> 32)."""
    return (((user & _M32) * ((hz * hl_cpj_bytes(hz)) & _M32)) >> 32) & _M32


def msecs_to_jiffies(ms: int, hz: int) -> int:
    """msecs_to_jiffies: rounds up."""
    return -(-int(ms) * hz // 1000)


def _hl_cfg(e) -> dict:
    """The kernel's hashlimit_cfg3 of a lowered hashlimit match (after the check-time truncations)."""
    fam = int(e.get("family", 4) or 4)
    bits = 32 if fam == 4 else 128
    mode = int(e.get("mode_bits", 0) or 0)
    if not mode:
        for md in e.get("mode", ()) or ():
            mode |= _MODE_BITS.get(md, 0)
    if e.get("bytes"):
        mode |= HL_BYTES
    if e.get("rate_match"):
        mode |= HL_RATE_MATCH
    size = min(int(e.get("size", 0) or 0), HL_MAX_SIZE)
    mx = min(int(e.get("max", 0) or 0), HL_MAX_SIZE)
    if size == 0:
        size = HL_DEFAULT_SIZE
    if mx == 0:
        mx = 8 * size
    elif mx < size:
        mx = size
    avg = e.get("avg")
    if avg is None:  # a front end that only gave the rate: libxt_hashlimit parse_rate
        avg = HL_SCALE * int(e.get("rate_den_s", 1)) // max(int(e.get("rate_num", 1)), 1)
    return dict(family=fam, mode=mode, avg=int(avg), burst=int(e.get("burst", 5) if e.get("burst") is not None else 5),
                interval=int(e.get("interval", 0) or 0), size=size, max=mx,
                gc_interval=int(e.get("gc_interval", 1000) if e.get("gc_interval") is not None else 1000),
                expire=int(e.get("expire", e.get("expire_ms", 1000)) or 0),
                srcmask=int(e.get("srcmask", bits) if e.get("srcmask") is not None else bits),
                dstmask=int(e.get("dstmask", bits) if e.get("dstmask") is not None else bits), bits=bits,
                invert=bool(e.get("invert", bool(e.get("above")) != bool(e.negate))))


def hashlimit_conflict(e, others) -> str:
    """A reason to refuse hashlimit match e when an earlier match of the same table (name, family) in
    `others` (model.Stateful) created it with a different byte/rate-match mode, else "". The kernel
    would run the shared entries' rateinfo union through the other interpretation."""
    c = _hl_cfg(e)
    for o in others:
        if o.kind != "hashlimit" or o.get("name") != e.get("name"):
            continue
        oc = _hl_cfg(o)
        if oc["family"] != c["family"]:
            continue
        if (oc["mode"] ^ c["mode"]) & (HL_BYTES | HL_RATE_MATCH):
            return f"hashlimit table {e.get('name')!r} shared by rules of different byte/rate-match modes"
        return ""
    return ""


def _prefix_mask128(plen: int, bits: int) -> int:
    """Mask over the v4-mapped 128-bit address for a prefix of plen bits of the family's address."""
    if bits == 32:
        return ((1 << 128) - 1) ^ ((1 << (32 - plen)) - 1) if plen < 32 else (1 << 128) - 1
    return ((1 << 128) - 1) ^ ((1 << (128 - plen)) - 1)


def _s64(v: int) -> int:
    v &= _M64
    return v - (1 << 64) if v >= 1 << 63 else v


def _num(v, what):
    try:
        return int(v)
    except (TypeError, ValueError):
        raise ValueError(f"{what}: not a number: {v!r}") from None


def check_stateful(e, origin: str, hz: int = 1000) -> None:
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
    elif k == "hashlimit":
        c = _hl_cfg(e)
        if c["gc_interval"] == 0 or c["expire"] == 0:
            raise ValueError("hashlimit: the kernel refuses a zero gcinterval or expire")
        if not (0 <= c["srcmask"] <= c["bits"] and 0 <= c["dstmask"] <= c["bits"]):
            raise ValueError("hashlimit: mask length out of range")
        if c["mode"] & HL_RATE_MATCH:
            if c["avg"] == 0 or c["avg"] > _M32:
                raise ValueError("hashlimit: the kernel refuses this rate (invalid rate)")
            if c["interval"] == 0:
                raise ValueError("hashlimit: the kernel refuses a zero rate interval")
        elif c["mode"] & HL_BYTES:
            if hl_user2credits_byte(c["avg"], hz) == 0:
                raise ValueError("hashlimit: the kernel refuses this byte rate (overflow, rate too high)")
        elif c["burst"] == 0 or hl_user2credits(c["avg"] * c["burst"], hz) < hl_user2credits(c["avg"], hz):
            raise ValueError(f"hashlimit: the kernel refuses {c['avg']}/{c['burst']} (overflow, try lower)")
    elif k == "connlimit":
        n = e.get("above", e.get("upto"))
        if n is None or not 0 <= _num(n, "connlimit count") <= _M32:
            raise ValueError("connlimit needs --connlimit-upto or --connlimit-above N")
        fam = int(e.get("family", 4) or 4)
        if not 0 <= _num(e.get("mask", 32 if fam == 4 else 128), "connlimit mask") <= (32 if fam == 4 else 128):
            raise ValueError("connlimit mask length out of range")
    else:
        raise ValueError(f"stateful match {k}")


def compile_stateful(items, recent_names, hz: int):
    """items: list of (model.Stateful, table origin) in stateful-index order. -> (sf_kind, sf_p)."""
    n = len(items)
    kind = np.zeros(n, np.int64)
    p = np.zeros((max(n, 1), NP), np.int64)
    hl_tables = {}
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
        elif k == "hashlimit":
            kind[i] = SF_HASHLIMIT
            rc = _hl_cfg(e)
            key = (e.get("name"), rc["family"])
            if key not in hl_tables:  # htable_find_get: the first rule's config creates the table
                hl_tables[key] = (len(hl_tables), rc)
            t, c = hl_tables[key]
            p[i, :NP] = _hl_row(t, rc, c, hz)
        elif k == "connlimit":
            kind[i] = SF_CONNLIMIT
            fam = int(e.get("family", 4) or 4)
            bits = 32 if fam == 4 else 128
            mk = _prefix_mask128(int(e.get("mask", bits)), bits)
            above = e.get("above") is not None
            p[i, 0] = int(e.get("above") if above else e.get("upto"))
            p[i, 1] = int(above)
            p[i, 2] = 1 if e.get("daddr") else 0
            p[i, 3] = _s64(mk >> 64)
            p[i, 4] = _s64(mk)
            p[i, 5] = hz
    return kind, p


def _hl_row(t: int, rc: dict, c: dict, hz: int) -> list:
    """sf_p row of a hashlimit match: rule flags from the rule's own cfg (rc), everything the kernel
    takes from hinfo->cfg from the table creator's cfg (c)."""
    mode = c["mode"]
    sm = _prefix_mask128(c["srcmask"], c["bits"])
    dm = _prefix_mask128(c["dstmask"], c["bits"])
    cpjb = hl_cpj_bytes(hz)
    if mode & HL_RATE_MATCH:
        if mode & HL_BYTES:
            a32 = c["avg"] & _M32
            rate = (((_M32 // a32) if a32 else _M32) - 1) << 4
            burst = (c["burst"] * rate) & _M64 if c["burst"] else rate
        else:
            rate = HL_SCALE // c["avg"] if c["avg"] else 0
            burst = (c["burst"] + rate) & _M64
        a, b, cc = rate, burst, (c["interval"] * hz) & _M32
    elif mode & HL_BYTES:
        a, b, cc = hl_user2credits_byte(c["avg"], hz), c["burst"] & _M64, cpjb
    else:
        a, b, cc = hl_user2credits(c["avg"], hz), hl_user2credits(c["avg"] * c["burst"], hz), hl_cpj(hz)
    row = [t, int(rc["invert"]), mode, sm >> 64, sm, dm >> 64, dm, a, b, cc,
           msecs_to_jiffies(c["expire"], hz), max(msecs_to_jiffies(c["gc_interval"], hz), 1), c["max"], hz,
           (cpjb * hz) & _M32, c["family"]]
    return [_s64(v) for v in row]


def _ring_size(hitcount: int) -> int:
    if hitcount < IP_PKT_LIST_TOT:
        return 1 << (IP_PKT_LIST_TOT - 1).bit_length()
    return 1 << (hitcount - 1).bit_length()


# ---- rule state layout (chains.RuleState: rule_packets, rule_bytes, misc, sf, rc, hl, cl, ct_live)
SF_KIND_COL = NP  # CompiledArrays.sf[s, SF_KIND_COL] = kind; columns 0..NP-1 = parameters
# RuleState.mem (int64 1-D): this header, the set-key scratch and the jump stack, then the sections sf
# (int64[rows, 8] per-match state), rc, hl, cl (below) at the offsets the header records
M_HOTDROP = 0  # set by a match that drops the packet (xt hotdrop); eval_chain clears it
M_HOTDROPS = 1  # number of hotdrops
M_RNG = 2  # 3 words: PRNG state, draws so far, seed
M_HL_T = 5  # number of hashlimit table header rows in hl
M_CL_T = 6  # number of connlimit table header rows in cl
M_CL_E = 7  # first remembered-connection row of cl (key rows are M_CL_T..M_CL_E-1)
M_SF_OFF, M_SF_ROWS = 8, 9
M_RC_OFF, M_RC_T, M_RC_W = 10, 11, 12
M_HL_OFF, M_HL_ROWS = 13, 14
M_CL_OFF, M_CL_ROWS = 15, 16
M_DEPTH = 17  # jump stack entries
M_KEY = 24  # 8 words: set-lookup key scratch
M_STACK = 32  # jump stack: (chain, return rule) pairs
# rc: int64[T, IP_LIST_TOT + 1, RC_STAMPS + ring]: per entry address words, meta, stamp ring; row RC_HDR
RC_USED, RC_FAM, RC_TTL, RC_NST, RC_IDX, RC_LRU, RC_STAMPS = 2, 3, 4, 5, 6, 7, 8
RC_HDR = IP_LIST_TOT  # header row: [entries, lru counter, ring mask]
# hl: int64[HT + slots, HL_W]: rows 0..HT-1 table headers (count, gc anchor, base row, capacity, last jiffies,
# last gc sweep, hotdrops, overflows); entry rows: key words 0..4, used 5, credit|current_rate 6, credit_cap 7,
# prev 8, expires 9, prev_window 10
HL_W = 11
# cl: int64[CT + C * CL_KEY_SLOTS + C * CL_POOL, CL_W]: rows 0..CT-1 connlimit headers (free head, pool base,
# key base, pool cap, key cap, overflows; all row indices absolute), key rows (used, addr hi, lo, zone, head,
# tail, count, last_gc), remembered-connection rows (next, used, tuple 2..8, zone, added jiffies, expiry ns,
# ct slot, ct generation)
CL_W = 14


def new_stateful_state(cra, seed: int, depth: int = 1) -> dict:
    """State of chains.RuleState for compiled arrays cra: {"mem": header + sections, "ct_live": the
    not-provided view}; depth = jump stack entries."""
    kinds = cra.sf_kind
    p = cra.sf_p
    n = kinds.shape[0]
    sf = np.zeros((max(n, 1), 8), np.int64)
    T = max(cra.rc_n_tables, 1)
    ring = np.full(T, 32, np.int64)
    for i in range(n):
        k = kinds[i]
        if k == SF_STAT_NTH:
            sf[i, 0] = p[i, 1]
        elif k == SF_QUOTA:
            sf[i, 0] = p[i, 0]
        elif k == SF_NUMGEN_INC:
            sf[i, 0] = p[i, 0] - 1
        elif k == SF_RECENT:
            t = p[i, 0]
            ring[t] = max(ring[t], _ring_size(int(p[i, 3])))
    # hashlimit tables: one per (name, family), sized for the table's max entries
    hl_caps = {}
    cl_rows = []
    for i in range(n):
        k = kinds[i]
        if k == SF_HASHLIMIT:
            t = int(p[i, 0])
            mx = int(p[i, 12])
            cap = 16
            while cap < 2 * mx and cap < HL_MAX_SLOTS:
                cap *= 2
            hl_caps[t] = cap
        elif k == SF_CONNLIMIT:
            sf[i, 0] = len(cl_rows)
            cl_rows.append(i)
    HT = max(len(hl_caps), 1)
    base = HT
    hl_hdr = np.zeros((HT, HL_W), np.int64)
    for t in range(len(hl_caps)):
        hl_hdr[t, 1] = -1
        hl_hdr[t, 2] = base
        hl_hdr[t, 3] = hl_caps[t]
        base += hl_caps[t]
    hl = np.zeros((max(base, HT + 1), HL_W), np.int64)
    hl[:HT] = hl_hdr
    C = len(cl_rows)
    CT = max(C, 1)
    kb0 = CT
    eb0 = CT + C * CL_KEY_SLOTS
    cl = np.zeros((max(eb0 + C * CL_POOL, 1), CL_W), np.int64)
    for c in range(C):
        eb = eb0 + c * CL_POOL
        cl[c, :5] = (eb, eb, kb0 + c * CL_KEY_SLOTS, CL_POOL, CL_KEY_SLOTS)  # free-list head, pool, keys, caps
        nxt = np.arange(eb + 1, eb + CL_POOL + 1, dtype=np.int64)
        nxt[-1] = -1
        cl[eb:eb + CL_POOL, 0] = nxt
    R = int(ring.max())
    rc = np.zeros((T, IP_LIST_TOT + 1, RC_STAMPS + R), np.int64)
    rc[:, RC_HDR, 2] = ring - 1
    s = (int(seed) ^ 0x9E3779B97F4A7C15) & ((1 << 64) - 1)
    s = s - (1 << 64) if s >= 1 << 63 else s
    misc = np.zeros(M_STACK + 2 * max(1, depth), np.int64)
    misc[M_RNG:M_RNG + 3] = (s or 1, 0, int(seed) & ((1 << 63) - 1))
    misc[M_HL_T] = HT
    misc[M_CL_T] = CT
    misc[M_CL_E] = eb0
    misc[M_DEPTH] = max(1, depth)
    off = misc.shape[0]
    for o, nrow, arr in ((M_SF_OFF, M_SF_ROWS, sf), (M_RC_OFF, M_RC_T, rc), (M_HL_OFF, M_HL_ROWS, hl),
                         (M_CL_OFF, M_CL_ROWS, cl)):
        misc[o] = off
        misc[nrow] = arr.shape[0]
        off += arr.size
    misc[M_RC_W] = rc.shape[2]
    mem = np.concatenate([misc, sf.reshape(-1), rc.reshape(-1), hl.reshape(-1), cl.reshape(-1)])
    return dict(mem=mem, ct_live=np.zeros((1, 3), np.int64))


@kernel
def draw_u32(rng):
    """Next 32-bit draw of the stream (xorshift64 13/7/17, upper half); rng = [state, draws, seed]."""
    return _draw_at(rng, 0)


@kernel
def _draw_at(a, o):
    """draw_u32 on the stream stored at a[o] (state), a[o + 1] (draws)."""
    x = a[o]
    x ^= x << 13
    x ^= (x >> 7) & np.int64(0x01FFFFFFFFFFFFFF)
    x ^= x << 17
    a[o] = x
    a[o + 1] += 1
    return (x >> 32) & 0xFFFFFFFF


@kernel
def _jiffies(now_ns, hz):
    return (now_ns // 1000000000) * hz + ((now_ns % 1000000000) * hz) // 1000000000


@kernel
def _recent_remove(rc, t, i):
    rc[t, i, 2] = 0
    rc[t, RC_HDR, 0] -= 1


@kernel
def _recent_update(rc, t, i, now_j):
    mask = rc[t, RC_HDR, 2]
    idx = rc[t, i, 6] & mask
    rc[t, i, RC_STAMPS + idx] = now_j
    idx += 1
    rc[t, i, 6] = idx
    if idx > rc[t, i, 5]:
        rc[t, i, 5] = idx
    rc[t, RC_HDR, 1] += 1
    rc[t, i, 7] = rc[t, RC_HDR, 1]  # move to the LRU tail


@kernel
def _recent_oldest(rc, t):
    best = -1
    for i in range(IP_LIST_TOT):
        if rc[t, i, 2] != 0 and (best < 0 or rc[t, i, 7] < rc[t, best, 7]):
            best = i
    return best


@kernel
def _recent(p, rc, s, ctx, now_ns):
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
    for i in range(IP_LIST_TOT):
        if rc[t, i, 2] != 0 and rc[t, i, 3] == fam and rc[t, i, 0] == hi \
                and rc[t, i, 1] == lo:
            et = rc[t, i, 4]
            if lttl == et or lttl == 0 or et == 0:
                e = i
                break
    if e < 0:
        if cmd != 1:
            return ret
        if rc[t, RC_HDR, 0] >= IP_LIST_TOT:
            _recent_remove(rc, t, _recent_oldest(rc, t))
        for i in range(IP_LIST_TOT):
            if rc[t, i, 2] == 0:
                e = i
                break
        rc[t, e, 2] = 1
        rc[t, e, 3] = fam
        rc[t, e, 4] = lttl
        rc[t, e, 0] = hi
        rc[t, e, 1] = lo
        rc[t, e, RC_STAMPS + 0] = now_j
        rc[t, e, 5] = 1
        rc[t, e, 6] = 1
        rc[t, RC_HDR, 0] += 1
        rc[t, RC_HDR, 1] += 1
        rc[t, e, 7] = rc[t, RC_HDR, 1]
        return not ret
    if cmd == 1:
        ret = not ret
    elif cmd == 4:
        _recent_remove(rc, t, e)
        return not ret
    else:
        secs = p[s, 2]
        tlim = now_j - secs * p[s, 7]
        hitc = p[s, 3]
        hits = 0
        for i in range(rc[t, e, 5]):
            if secs != 0 and rc[t, e, RC_STAMPS + i] < tlim:
                continue
            hits += 1
            if hitc == 0 or hits >= hitc:
                ret = not ret
                break
        if p[s, 6] != 0:
            o = _recent_oldest(rc, t)
            if o >= 0 and not (o == e and cmd == 3 and ret):
                li = (rc[t, o, 6] - 1) & rc[t, RC_HDR, 2]
                if rc[t, o, RC_STAMPS + li] < tlim:
                    _recent_remove(rc, t, o)
                    if o == e:
                        return ret
    if cmd == 1 or (cmd == 3 and ret):
        _recent_update(rc, t, e, now_j)
        rc[t, e, 4] = ttl
    return ret


# ------------------------------------------------------------------ hashlimit (xt_hashlimit.c rev 3)
_MIN64 = np.int64(-9223372036854775808)
_F_SPORT = 5
_F_DPORT = 6
_F_PRESENT = 44
_P_PORTS = 1
_P_CT = 8
_F_CT_ORIG_SRC = 24
_F_CT_ORIG_DST = 26
_F_CT_ORIG_SPORT = 32
_F_CT_ORIG_DPORT = 33
_F_CT_ZONE = 36
_F_CT_EXPIRE = 37
_F_CT_PROTO = 49
_F_PROTO = 4
_F_ICMP_ID = 23
_F_CT_SLOT = 53  # proposed additive Field (pipeline): conntrack slot of the packet's entry, -1 none
_F_CT_ID = 54  # proposed additive Field (pipeline): ct id of that entry (tab.ct_id, or a generation)


@kernel
def _ult(a, b):
    """a < b as unsigned 64-bit."""
    return (a ^ _MIN64) < (b ^ _MIN64)


@kernel
def _mix(h, w):
    h = (h ^ w) * np.int64(-7046029254386353131)
    return h ^ ((h >> 29) & np.int64(0x7FFFFFFFF))


@kernel
def _hl_home(k0, k1, k2, k3, k4, msk):
    h = _mix(_mix(_mix(_mix(_mix(np.int64(0x2545F491), k0), k1), k2), k3), k4)
    return h & msk


@kernel
def _hl_delete(hl, base, msk, i):
    """Linear-probing backward-shift deletion of slot base+i."""
    j = i
    while True:
        j = (j + 1) & msk
        a = base + j
        if hl[a, 5] == 0:
            break
        k = _hl_home(hl[a, 0], hl[a, 1], hl[a, 2], hl[a, 3], hl[a, 4], msk)
        if i <= j:
            stay = i < k and k <= j
        else:
            stay = i < k or k <= j
        if stay:
            continue
        for w in range(HL_W):
            hl[base + i, w] = hl[a, w]
        i = j
    hl[base + i, 5] = 0


@kernel
def _hl_sweep(hl, t, tick):
    """htable_gc up to gc tick `tick`: free every entry with expires <= tick."""
    base = hl[t, 2]
    cap = hl[t, 3]
    msk = cap - 1
    i = 0
    while i < cap:
        a = base + i
        if hl[a, 5] != 0 and hl[a, 9] <= tick:
            _hl_delete(hl, base, msk, i)
            hl[t, 0] -= 1
            continue  # re-check the slot: an entry may have moved in
        i += 1
    hl[t, 5] = tick


@kernel
def _hashlimit(p, hl, misc, s, ctx, pkt_len, now_ns):
    t = p[s, 0]
    invert = p[s, 1] != 0
    mode = p[s, 2]
    hz = p[s, 13]
    tab = hl
    now = _jiffies(now_ns, hz)
    if tab[t, 1] < 0:  # table created (rule load) at the first evaluation: the gc timer starts here
        tab[t, 1] = now
        tab[t, 4] = now
        tab[t, 5] = now
    if now < tab[t, 4]:  # jiffies never go back
        now = tab[t, 4]
    tab[t, 4] = now
    j0 = tab[t, 1]
    g = p[s, 11]
    tick = j0 + ((now - j0) // g) * g  # the last gc run at or before now
    # hashlimit_init_dst
    k0 = np.int64(0)
    k1 = np.int64(0)
    k2 = np.int64(0)
    k3 = np.int64(0)
    k4 = np.int64(0)
    if (mode & 4) != 0:
        k0 = ctx[_F_SRC] & p[s, 3]
        k1 = ctx[_F_SRC + 1] & p[s, 4]
    if (mode & 1) != 0:
        k2 = ctx[_F_DST] & p[s, 5]
        k3 = ctx[_F_DST + 1] & p[s, 6]
    if (mode & (2 | 8)) != 0 and (ctx[_F_PRESENT] & _P_PORTS) != 0:
        if (mode & 8) != 0:
            k4 = ctx[_F_SPORT] << 16
        if (mode & 2) != 0:
            k4 |= ctx[_F_DPORT]
    base = tab[t, 2]
    cap = tab[t, 3]
    msk = cap - 1
    home = _hl_home(k0, k1, k2, k3, k4, msk)
    i = home
    found = np.int64(-1)
    while True:
        a = base + i
        if hl[a, 5] == 0:
            break
        if hl[a, 0] == k0 and hl[a, 1] == k1 and hl[a, 2] == k2 \
                and hl[a, 3] == k3 and hl[a, 4] == k4:
            found = a
            break
        i = (i + 1) & msk
    if found >= 0 and hl[found, 9] <= tick:  # freed by a gc run since the last packet
        _hl_delete(hl, base, msk, found - base)
        tab[t, 0] -= 1
        found = np.int64(-1)
    bytes_mode = (mode & 32) != 0
    rate_match = (mode & 64) != 0
    if found < 0:
        # dsthash_alloc_init: refuse when count >= max (after the gc runs due by now)
        if (tab[t, 0] >= p[s, 12] or tab[t, 0] * 8 >= cap * 7) and tab[t, 5] < tick:
            _hl_sweep(hl, t, tick)
        if tab[t, 0] >= p[s, 12]:
            tab[t, 6] += 1
            misc[M_HOTDROP] = 1
            return False
        if tab[t, 0] * 8 >= cap * 7:  # model capacity exhausted (documented limit)
            tab[t, 7] += 1
            misc[M_HOTDROP] = 1
            return False
        i = home
        while hl[base + i, 5] != 0:
            i = (i + 1) & msk
        a = base + i
        hl[a, 0] = k0
        hl[a, 1] = k1
        hl[a, 2] = k2
        hl[a, 3] = k3
        hl[a, 4] = k4
        hl[a, 5] = 1
        tab[t, 0] += 1
        hl[a, 9] = now + p[s, 10]
        # rateinfo_init
        hl[a, 8] = now
        if rate_match:
            hl[a, 6] = 0  # current_rate
            hl[a, 10] = 0  # prev_window
        elif bytes_mode:
            hl[a, 6] = p[s, 14]
            hl[a, 7] = p[s, 8]
        else:
            hl[a, 6] = p[s, 8]
            hl[a, 7] = p[s, 8]
    else:
        a = found
        hl[a, 9] = now + p[s, 10]
        # rateinfo_recalc
        delta = now - hl[a, 8]
        if delta != 0:
            if rate_match:
                iv = p[s, 9]
                if not _ult(delta, iv):
                    hl[a, 8] = now
                    hl[a, 10] = 1 if _ult(delta * p[s, 7], hl[a, 6] * iv) else 0
                    hl[a, 6] = 0
            elif bytes_mode:
                hl[a, 8] = now
                tmp = hl[a, 6]
                hl[a, 6] = tmp + p[s, 9] * delta
                if not _ult(tmp, hl[a, 6]):
                    hl[a, 6] = p[s, 14]
                elif _ult(p[s, 14], hl[a, 6]):
                    hl[a, 6] = p[s, 14]
            else:
                hl[a, 8] = now
                hl[a, 6] = hl[a, 6] + delta * p[s, 9]
                if _ult(hl[a, 7], hl[a, 6]):
                    hl[a, 6] = hl[a, 7]
    if rate_match:
        hl[a, 6] += pkt_len if bytes_mode else 1
        if hl[a, 10] == 0 and not _ult(p[s, 8], hl[a, 6]):
            return not invert
        return invert
    if bytes_mode:  # hashlimit_byte_cost
        cost = ((pkt_len & 0xFFFFFFFF) >> 4) + 1
        cost = cost * p[s, 7]
        if _ult(p[s, 14], cost):
            cost = p[s, 14]
        if _ult(hl[a, 6], cost) and hl[a, 7] != 0:
            hl[a, 7] -= 1
            hl[a, 6] = p[s, 14]
    else:
        cost = p[s, 7]
    if not _ult(hl[a, 6], cost):
        hl[a, 6] = hl[a, 6] - cost
        return not invert
    return invert


# ------------------------------------------------------------------ connlimit (xt_connlimit.c, nf_conncount.c)
@kernel
def _cl_state(cl, ct_live, e, now_ns):
    """find_or_evict's conntrack lookup for remembered connection e: 0 gone, 1 live, 2 live but TCP
    CLOSE/TIME_WAIT (already_closed). With the pipeline's ct_live view (ct_live has one row per
    conntrack slot: generation of the confirmed entry or -1, expiry ns, tcp-closed flag) the answer is
    the conntrack table's; without it, the connection is taken as live until the expiry last seen."""
    ent = cl
    if ct_live.shape[0] > 1:
        slot = ent[e, 12]
        if slot < 0 or slot >= ct_live.shape[0]:
            return 0
        if ct_live[slot, 0] != ent[e, 13] or ct_live[slot, 0] < 0 or now_ns >= ct_live[slot, 1]:
            return 0
        return 2 if ct_live[slot, 2] != 0 else 1
    return 1 if now_ns < ent[e, 11] else 0


@kernel
def _cl_free(cl, c, ki, e, prev):
    ent = cl
    key = cl
    nxt = ent[e, 0]
    if prev < 0:
        key[ki, 4] = nxt
    else:
        ent[prev, 0] = nxt
    if key[ki, 5] == e:
        key[ki, 5] = prev
    ent[e, 1] = 0
    ent[e, 0] = cl[c, 0]
    cl[c, 0] = e
    key[ki, 6] -= 1


@kernel
def _connlimit(p, cl, ct_live, sfs, s, ctx, now_ns):
    c = sfs[s, 0]
    now32 = _jiffies(now_ns, p[s, 5]) & 0xFFFFFFFF
    wired = ct_live.shape[0] > 1
    # the connection's tuple: the conntrack original tuple, else the packet's own (nf_ct_get_tuplepr)
    if (ctx[_F_PRESENT] & _P_CT) != 0:
        t0 = ctx[_F_CT_ORIG_SRC]
        t1 = ctx[_F_CT_ORIG_SRC + 1]
        t2 = ctx[_F_CT_ORIG_DST]
        t3 = ctx[_F_CT_ORIG_DST + 1]
        t4 = ctx[_F_CT_ORIG_SPORT]
        t5 = ctx[_F_CT_ORIG_DPORT]
        t6 = ctx[_F_CT_PROTO]
        zone = ctx[_F_CT_ZONE]
        seen = now_ns + ctx[_F_CT_EXPIRE] * 1000000000
        slot = ctx[_F_CT_SLOT] if wired else np.int64(-1)
        gen = ctx[_F_CT_ID] if wired else np.int64(-1)
    else:
        t0 = ctx[_F_SRC]
        t1 = ctx[_F_SRC + 1]
        t2 = ctx[_F_DST]
        t3 = ctx[_F_DST + 1]
        t4 = ctx[_F_SPORT] if (ctx[_F_PRESENT] & _P_PORTS) != 0 else np.int64(0)
        t5 = ctx[_F_DPORT] if (ctx[_F_PRESENT] & _P_PORTS) != 0 else np.int64(0)
        t6 = ctx[_F_PROTO]
        zone = np.int64(0)
        seen = now_ns  # never confirmed: gone at the next look
        slot = np.int64(-1)
        gen = np.int64(-1)
    # key: the packet's source (or destination) address masked, and the zone id
    f = _F_DST if p[s, 2] != 0 else _F_SRC
    count = np.int64(0)
    khi = ctx[f] & p[s, 3]
    klo = ctx[f + 1] & p[s, 4]
    key = cl
    ent = cl
    kb = cl[c, 2]
    kcap = cl[c, 4]
    msk = kcap - 1
    i = _hl_home(khi, klo, zone, np.int64(0), np.int64(0), msk)
    ki = np.int64(-1)
    n = 0
    while n < kcap:
        a = kb + i
        if key[a, 0] == 0:
            break
        if key[a, 1] == khi and key[a, 2] == klo and key[a, 3] == zone:
            ki = a
            break
        i = (i + 1) & msk
        n += 1
    add = True
    if ki < 0:
        if n >= kcap or key[kb + i, 0] != 0 or (n + 1) * 8 >= kcap * 7:
            cl[c, 5] += 1  # model capacity exhausted: count the current connection alone
            count = np.int64(1)
            add = False
        else:
            ki = kb + i
            key[ki, 0] = 1
            key[ki, 1] = khi
            key[ki, 2] = klo
            key[ki, 3] = zone
            key[ki, 4] = -1
            key[ki, 5] = -1
            key[ki, 6] = 0
            key[ki, 7] = now32
    elif key[ki, 6] > 0 and key[ki, 7] != now32:
        # __nf_conncount_add: look at the saved connections (at most CONNCOUNT_GC_MAX_NODES + 1 evictions)
        collect = 0
        prev = np.int64(-1)
        e = key[ki, 4]
        while e >= 0:
            if collect > CONNCOUNT_GC_MAX_NODES:
                break
            nxt = ent[e, 0]
            r = _cl_state(cl, ct_live, e, now_ns)
            if r == 0:
                _cl_free(cl, c, ki, e, prev)
                collect += 1
                e = nxt
                continue
            if ent[e, 2] == t0 and ent[e, 3] == t1 and ent[e, 4] == t2 and ent[e, 5] == t3 \
                    and ent[e, 6] == t4 and ent[e, 7] == t5 and ent[e, 8] == t6 and ent[e, 9] == zone:
                add = False  # already counted
                if seen > ent[e, 11]:
                    ent[e, 11] = seen
                break
            if r == 2:
                _cl_free(cl, c, ki, e, prev)
                collect += 1
                e = nxt
                continue
            prev = e
            e = nxt
    if add:
        e = cl[c, 0]
        if e < 0:
            cl[c, 5] += 1  # model capacity exhausted: not remembered
            count = key[ki, 6] + 1
        else:
            cl[c, 0] = ent[e, 0]
            ent[e, 0] = -1
            ent[e, 1] = 1
            ent[e, 2] = t0
            ent[e, 3] = t1
            ent[e, 4] = t2
            ent[e, 5] = t3
            ent[e, 6] = t4
            ent[e, 7] = t5
            ent[e, 8] = t6
            ent[e, 9] = zone
            ent[e, 10] = now32
            ent[e, 11] = seen
            ent[e, 12] = slot
            ent[e, 13] = gen
            tl = key[ki, 5]
            if tl < 0:
                key[ki, 4] = e
            else:
                ent[tl, 0] = e
            key[ki, 5] = e
            key[ki, 6] += 1
            key[ki, 7] = now32
            count = key[ki, 6]
    elif ki >= 0:
        count = key[ki, 6]
    above = count > p[s, 0]
    return above if p[s, 1] != 0 else not above


@kernel
def stateful_match(prog, st, s, ctx, pkt_len, now_ns):
    """Evaluate stateful match s (before the row's negation, except recent which inverts itself).
    prog = CompiledArrays.prog (parameter rows at prog[H_SF], kind in column SF_KIND_COL), st =
    chains.RuleState; each kind gets views of the sections it uses."""
    po = prog[H_SF]
    p = prog[po:po + prog[H_SF_ROWS] * SF_N].reshape((prog[H_SF_ROWS], SF_N))
    k = p[s, SF_KIND_COL]
    mem = st.mem
    so = mem[M_SF_OFF]
    sf = mem[so:so + mem[M_SF_ROWS] * 8].reshape((mem[M_SF_ROWS], 8))
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
        return (_draw_at(mem, M_RNG) & 0x7FFFFFFF) < p[s, 0]
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
        ro = mem[M_RC_OFF]
        rc = mem[ro:ro + mem[M_RC_T] * (IP_LIST_TOT + 1) * mem[M_RC_W]].reshape(
            (mem[M_RC_T], IP_LIST_TOT + 1, mem[M_RC_W]))
        return _recent(p, rc, s, ctx, now_ns)
    if k == SF_NUMGEN_INC:
        c = sf[s, 0] + 1
        if c >= p[s, 0]:
            c = 0
        sf[s, 0] = c
        ctx[_F_NUMGEN] = c + p[s, 1]
        return True
    if k == SF_NUMGEN_RANDOM:
        ctx[_F_NUMGEN] = ((_draw_at(mem, M_RNG) * p[s, 0]) >> 32) + p[s, 1]
        return True
    if k == SF_HASHLIMIT:
        ho = mem[M_HL_OFF]
        hl = mem[ho:ho + mem[M_HL_ROWS] * HL_W].reshape((mem[M_HL_ROWS], HL_W))
        return _hashlimit(p, hl, mem, s, ctx, pkt_len, now_ns)
    if k == SF_CONNLIMIT:
        co = mem[M_CL_OFF]
        cl = mem[co:co + mem[M_CL_ROWS] * CL_W].reshape((mem[M_CL_ROWS], CL_W))
        return _connlimit(p, cl, st.ct_live, sf, s, ctx, now_ns)
    return False

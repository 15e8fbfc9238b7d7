"""Small packet tables for driving the conntrack kernels directly (fills schema.empty columns)."""

from __future__ import annotations

import numpy as np

from nfreplay.replay import addr, schema
from nfreplay.replay.conntrack import (
    counters,
    ct_abort,
    ct_confirm,
    ct_in,
    drain_events,
    make_params,
    new_event_log,
    new_table,
)

FLAGS = {"F": 0x01, "S": 0x02, "R": 0x04, "P": 0x08, "A": 0x10, "U": 0x20, "E": 0x40, "C": 0x80}


def flags(text: str) -> int:
    return sum(FLAGS[c] for c in text)


def pkt(src, dst, proto=6, sport=0, dport=0, fl="", seq=0, ack=0, win=8192, payload=0, t=0.0,
        wscale=-1, sackok=0, sack=None, icmp_type=0, icmp_code=0, icmp_id=0, inner=None, csum=1,
        status=0, tcp_hlen=20, ip_len=None, family=None):
    """One packet as a dict of packet-table columns. inner = (src, dst, proto, sport, dport) for ICMP
    errors (inner ICMP: sport = id, dport = type << 8 | code) or 'bad' for an unreadable inner packet."""
    s_hi, s_lo = addr.split(addr.to_int(src)[0])
    d_hi, d_lo = addr.split(addr.to_int(dst)[0])
    fam = family or (6 if ":" in src else 4)
    hl = 20 if fam == 4 else 40
    if proto == 6:
        l4 = tcp_hlen + payload
    elif proto in (17, 136):
        l4 = 8 + payload
    else:
        l4 = 8 + payload
    row = dict(ts_ns=int(round(t * 1e9)), family=fam, src_hi=s_hi, src_lo=s_lo, dst_hi=d_hi, dst_lo=d_lo,
               proto=proto, ip_hlen=hl, ip_len=ip_len if ip_len is not None else hl + l4, l4_len=l4,
               status=status, l4_csum=csum, ip_csum=1 if fam == 4 else 0, l3_off=0)
    if proto in (6, 17, 136, 132):
        row.update(sport=sport, dport=dport)
    if proto == 6:
        row.update(tcp_flags=flags(fl) if isinstance(fl, str) else fl, tcp_seq=seq & 0xFFFFFFFF,
                   tcp_ack=ack & 0xFFFFFFFF, tcp_win=win, tcp_hlen=tcp_hlen, tcp_wscale=wscale,
                   tcp_sackok=sackok, tcp_sack=(ack if sack is None else sack) & 0xFFFFFFFF,
                   payload_len=payload)
    if proto in (1, 58):
        row.update(icmp_type=icmp_type, icmp_code=icmp_code, icmp_id=icmp_id)
        if inner == "bad":
            row.update(inner_ok=0)
        elif inner is not None:
            isrc, idst, iproto, isp, idp = inner
            ih, il = addr.split(addr.to_int(isrc)[0])
            jh, jl = addr.split(addr.to_int(idst)[0])
            row.update(inner_ok=1, inner_src_hi=ih, inner_src_lo=il, inner_dst_hi=jh, inner_dst_lo=jl,
                       inner_proto=iproto, inner_sport=isp, inner_dport=idp)
    return row


def table_of(rows: list[dict]) -> schema.PacketTable:
    t = schema.empty(len(rows))
    for i, r in enumerate(rows):
        for k, v in r.items():
            getattr(t, k)[i] = v
    return schema.validate(t)


class Driver:
    """Feeds packets one at a time: ct_in, then ct_confirm (accepted) or ct_abort (dropped)."""

    def __init__(self, sysctls=None, capacity=64, flows=64, assume_good=False):
        self.prm = make_params(sysctls or {}, assume_good)
        self.tab = new_table(capacity, flows)
        self.ev = new_event_log(256)
        self.events = []

    def send(self, row, hook=0, zone=0, accept=True, index=0):
        pk = table_of([row])
        now = pk.ts_ns[0]
        slot, d, ctinfo, reason = ct_in(self.tab, self.prm, pk, 0, zone, hook, now, self.ev)
        res = dict(slot=int(slot), dir=int(d), ctinfo=int(ctinfo), reason=int(reason))
        if slot >= 0:
            res["state"] = int(self.tab.tcp_state[slot])
            res["status"] = int(self.tab.status[slot])
        if accept:
            res["confirmed"] = bool(ct_confirm(self.tab, self.prm, slot, now, index, self.ev))
        else:
            ct_abort(self.tab, slot)
        if slot >= 0:
            res["expires"] = int(self.tab.expires[slot])
            res["ct_id"] = int(self.tab.ct_id[slot])
        ev = drain_events(self.ev)
        self.events.extend([{k: int(v[j]) for k, v in ev.items()} for j in range(len(ev["event"]))])
        return res

    def counters(self):
        return counters(self.tab)


def state_name(ctinfo: int) -> str:
    return {-1: "INVALID", 0: "ESTABLISHED", 1: "RELATED", 2: "NEW", 3: "ESTABLISHED", 4: "RELATED",
            7: "UNTRACKED"}[ctinfo]


def u32(x: int) -> int:
    return int(np.int64(x)) & 0xFFFFFFFF

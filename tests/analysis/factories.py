"""Hand-built ReplayOutput objects with realistic values, for analysis/ and reports/ tests.

make_output(packets, rules) fills schema.empty(n) / result.empty_results(n) from per-packet dicts and
derives the flow records and the event stream the way conntrack counts them (a small independent
implementation: counters per direction, first/last packet and time), so tests can check frames
against numbers computed here.
"""

from __future__ import annotations

import numpy as np

from nfreplay.replay import addr, codes, schema
from nfreplay.replay.result import EVENT_COLUMNS, FLOW_COLUMNS, ReplayOutput, empty_results

T0 = 1_700_000_000_000_000_000  # ns
IFACES = ("lan0", "wan0")
# the engine's own reason table (index = PacketResults.invalid_reason): frames print the kernel's log
# line for it (conntrack.invalid_log_text)
from nfreplay.replay.conntrack import INVALID_REASONS  # noqa: E402

R_SEQ_OVER = INVALID_REASONS.index("SEQ is over upper bound (over the window of the receiver)")
R_INVALID_NEW = INVALID_REASONS.index("invalid new")
_FLAG = {"F": 1, "S": 2, "R": 4, "P": 8, "A": 16, "U": 32, "E": 64, "C": 128}
_PROTO = {"tcp": 6, "udp": 17, "icmp": 1}
_OUTCOME = {n: i for i, n in enumerate(codes.OUTCOME_NAMES) if n}
_HOOK = {n: i for i, n in enumerate(codes.HOOK_NAMES)}


def rule(rule_id, table, chain, num, text, hook="FORWARD", kind="rule", unsupported=""):
    return {"rule_id": rule_id, "family": "ip", "table": table, "chain": chain, "rule_num": num, "text": text,
            "source": f"rules.ipt:{rule_id + 3}", "hook": _HOOK[hook], "kind": kind, "unsupported": unsupported}


FORWARD_RULES = [
    rule(0, "filter", "FORWARD", 1, "-A FORWARD -m conntrack --ctstate INVALID -j DROP"),
    rule(1, "filter", "FORWARD", 2, "-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"),
    rule(2, "filter", "FORWARD", 3, "-A FORWARD -i lan0 -o wan0 -p tcp -m tcp --dport 80 -j ACCEPT"),
    rule(3, "filter", "FORWARD", 4, "-A FORWARD -i lan0 -o wan0 -p udp -m udp --dport 53 -j ACCEPT"),
    rule(4, "filter", "FORWARD", 5, "-A FORWARD -p icmp -j ACCEPT"),
    rule(5, "filter", "FORWARD", 6, "-A FORWARD -p tcp -m tcp --dport 23 -m comment --comment \"ufw-user\" -j ACCEPT"),
    rule(6, "filter", "FORWARD", 0, ":FORWARD DROP", kind="policy"),
    rule(7, "filter", "INPUT", 0, ":INPUT ACCEPT", hook="INPUT", kind="policy"),
    rule(8, "filter", "OUTPUT", 0, ":OUTPUT ACCEPT", hook="OUTPUT", kind="policy"),
]


def pkt(t, src, dst, proto="tcp", sport=0, dport=0, flags="", seq=0, ack=0, win=64240, payload=0,
        outcome="forwarded", rule_id=-1, ct=-1, dir=0, ct_state="NEW", tcp_state="", invalid=0,
        path=("PREROUTING", "FORWARD", "POSTROUTING"), in_iface="lan0", out_iface="wan0", out_src=None,
        out_dst=None, out_sport=None, out_dport=None, nat=0, icmp_type=0, icmp_code=0, icmp_id=0,
        l4_csum=1, verdict_hook="FORWARD", reason=0):
    return dict(locals())


def make_output(pkts: list[dict], rules=FORWARD_RULES, meta=None, expire_s: float | None = None) -> ReplayOutput:
    n = len(pkts)
    p = schema.empty(n)
    r = empty_results(n)
    for i, d in enumerate(pkts):
        sv, fam = addr.to_int(d["src"])
        dv, _ = addr.to_int(d["dst"])
        proto = _PROTO[d["proto"]]
        p.ts_ns[i] = T0 + int(round(d["t"] * 1e9))
        p.family[i] = fam
        p.src_hi[i], p.src_lo[i] = addr.split(sv)
        p.dst_hi[i], p.dst_lo[i] = addr.split(dv)
        p.proto[i] = proto
        p.status[i] = 0
        hl = 20 if proto == 6 else 8
        p.ip_hlen[i] = 20
        p.payload_len[i] = d["payload"]
        p.l4_len[i] = hl + d["payload"]
        p.ip_len[i] = 20 + hl + d["payload"]
        p.ttl[i] = 64
        p.l4_csum[i] = d["l4_csum"]
        p.ip_csum[i] = 1
        if proto in (6, 17):
            p.sport[i], p.dport[i] = d["sport"], d["dport"]
        if proto == 6:
            p.tcp_flags[i] = sum(_FLAG[c] for c in d["flags"])
            p.tcp_seq[i], p.tcp_ack[i], p.tcp_win[i] = d["seq"] & 0xFFFFFFFF, d["ack"] & 0xFFFFFFFF, d["win"]
            p.tcp_hlen[i] = 20
        if proto == 1:
            p.icmp_type[i], p.icmp_code[i], p.icmp_id[i] = d["icmp_type"], d["icmp_code"], d["icmp_id"]
        r.outcome[i] = _OUTCOME[d["outcome"]]
        r.path[i] = sum(1 << _HOOK[h] for h in d["path"])
        r.in_iface[i] = IFACES.index(d["in_iface"]) if d["in_iface"] else -1
        left = d["outcome"] in ("forwarded", "emitted")
        r.out_iface[i] = IFACES.index(d["out_iface"]) if d["out_iface"] and left else -1
        r.verdict_rule[i] = d["rule_id"]
        r.verdict_hook[i] = _HOOK[d["verdict_hook"]] if d["rule_id"] >= 0 else -1
        r.ct_id[i] = d["ct"]
        r.ct_state[i] = codes.CT_STATE_NAMES.index(d["ct_state"]) if d["ct_state"] else 0
        r.ct_dir[i] = d["dir"] if d["ct"] >= 0 else 2
        r.tcp_state[i] = codes.TCP_STATE_NAMES.index(d["tcp_state"]) if d["tcp_state"] else 0
        r.invalid_reason[i] = d["invalid"]
        r.reason[i] = d["reason"]
        if left:
            osv = addr.to_int(d["out_src"] or d["src"])[0]
            odv = addr.to_int(d["out_dst"] or d["dst"])[0]
            r.out_src_hi[i], r.out_src_lo[i] = addr.split(osv)
            r.out_dst_hi[i], r.out_dst_lo[i] = addr.split(odv)
            r.out_sport[i] = d["sport"] if d["out_sport"] is None else d["out_sport"]
            r.out_dport[i] = d["dport"] if d["out_dport"] is None else d["out_dport"]
            if proto == 1:
                r.out_sport[i] = d["icmp_id"]
        r.nat_flags[i] = d["nat"]
    counts = np.zeros(len(rules), np.int64)
    nbytes = np.zeros(len(rules), np.int64)
    for i in range(n):
        if r.verdict_rule[i] >= 0:
            counts[r.verdict_rule[i]] += 1
            nbytes[r.verdict_rule[i]] += p.ip_len[i]
    flows, events = _derive_flows(p, r, pkts)
    return ReplayOutput(packets=p, results=r, rule_packets=counts, rule_bytes=nbytes, rules=list(rules),
                        events=events, flows=flows, invalid_reasons=INVALID_REASONS,
                        reject_kinds=("", "icmp-port-unreachable", "tcp-reset"), iface_names=IFACES,
                        meta=dict(meta or {"host": {"name": "test"}, "sysctls": {"net.netfilter.nf_conntrack_tcp_loose": 1},
                                           "seed": 0, "capture_point": "arrival"}))


def _derive_flows(p, r, pkts):
    ids = sorted({int(c) for c in r.ct_id if c >= 0})
    nfl = max(ids) + 1 if ids else 0
    f = {name: np.zeros(nfl, dtype=dt) for name, dt, _ in FLOW_COLUMNS}
    f["end_ts_ns"][:] = -1
    ev = {name: [] for name, _, _ in EVENT_COLUMNS}
    for c in ids:
        idx = np.flatnonzero(r.ct_id == c)
        first = idx[0]
        d0 = pkts[first]
        f["family"][c] = p.family[first]
        f["proto"][c] = p.proto[first]
        f["orig_src_hi"][c], f["orig_src_lo"][c] = p.src_hi[first], p.src_lo[first]
        f["orig_dst_hi"][c], f["orig_dst_lo"][c] = p.dst_hi[first], p.dst_lo[first]
        # reply tuple: from the pre-NAT view, with NAT applied: reply src = where the original went
        out_dst = d0["out_dst"] or d0["dst"]
        out_src = d0["out_src"] or d0["src"]
        rs, _ = addr.to_int(out_dst)
        rd, _ = addr.to_int(out_src)
        f["reply_src_hi"][c], f["reply_src_lo"][c] = addr.split(rs)
        f["reply_dst_hi"][c], f["reply_dst_lo"][c] = addr.split(rd)
        if d0["proto"] == "icmp":
            f["orig_sport"][c] = f["reply_sport"][c] = d0["icmp_id"]
            f["orig_dport"][c] = d0["icmp_type"] << 8
            f["reply_dport"][c] = 0
        else:
            f["orig_sport"][c], f["orig_dport"][c] = d0["sport"], d0["dport"]
            f["reply_sport"][c] = d0["dport"] if d0["out_dport"] is None else d0["out_dport"]
            f["reply_dport"][c] = d0["sport"] if d0["out_sport"] is None else d0["out_sport"]
        status = 1 << codes.CtStatus.CONFIRMED
        if d0["nat"] & 1:
            status |= 1 << codes.CtStatus.SRC_NAT
        if d0["nat"] & 2:
            status |= 1 << codes.CtStatus.DST_NAT
        for i in idx:
            if r.ct_dir[i] == 1:
                status |= 1 << codes.CtStatus.SEEN_REPLY
                if p.proto[i] != 6 or r.tcp_state[i] == codes.TcpState.ESTABLISHED:
                    status |= 1 << codes.CtStatus.ASSURED
            if r.ct_dir[i] == 0 and r.tcp_state[i] == codes.TcpState.ESTABLISHED and status >> 1 & 1:
                status |= 1 << codes.CtStatus.ASSURED
            k = "orig" if r.ct_dir[i] == 0 else "reply"
            f[f"packets_{k}"][c] += 1
            f[f"bytes_{k}"][c] += p.ip_len[i]
            ev["ct_id"].append(c)
            ev["packet_index"].append(i)
            ev["ts_ns"].append(p.ts_ns[i])
            ev["event"].append(codes.CtEvent.NEW if i == first else codes.CtEvent.UPDATE)
            ev["tcp_state"].append(r.tcp_state[i])
            ev["status"].append(status)
            ev["timeout_s"].append(120)
        f["status"][c] = status
        f["first_ts_ns"][c] = p.ts_ns[first]
        f["last_ts_ns"][c] = p.ts_ns[idx[-1]]
        f["final_tcp_state"][c] = r.tcp_state[idx[-1]]
        f["first_packet"][c] = first
        f["last_packet"][c] = idx[-1]
        closed = r.tcp_state[idx[-1]] in (codes.TcpState.TIME_WAIT, codes.TcpState.CLOSE)
        f["end"][c] = 2 if closed else 0
        f["end_ts_ns"][c] = p.ts_ns[idx[-1]] if closed else -1
    evd = {name: np.asarray(ev[name], dtype=dt) for name, dt, _ in EVENT_COLUMNS}
    return f, evd


def tcp_session(t, cli, srv, sport, dport, ct, *, isn_c=1000, isn_s=5000, request=100, response=300,
                rule_id=2, close=True, out_src=None, out_dst=None, out_sport=None, out_dport=None, nat=0,
                in_iface="lan0", out_iface="wan0"):
    """A full TCP session (handshake, request, response, close) as conntrack sees it, all forwarded."""
    kw = dict(proto="tcp", ct=ct, in_iface=in_iface, out_iface=out_iface)
    o = dict(src=cli, dst=srv, sport=sport, dport=dport, dir=0, out_src=out_src, out_dst=out_dst,
             out_sport=out_sport, out_dport=out_dport, nat=nat, **kw)
    rkw = dict(kw, in_iface=out_iface, out_iface=in_iface)
    rp = dict(src=out_dst or srv, dst=out_src or cli, sport=out_dport or dport, dport=out_sport or sport, dir=1,
              out_src=srv, out_dst=cli, out_sport=dport, out_dport=sport, nat=nat, **rkw)
    c, s = isn_c, isn_s
    est = dict(ct_state="ESTABLISHED", rule_id=1)
    seq = [
        pkt(t, flags="S", seq=c, ct_state="NEW", tcp_state="SYN_SENT", rule_id=rule_id, **o),
        pkt(t + 0.01, flags="SA", seq=s, ack=c + 1, tcp_state="SYN_RECV", **est, **rp),
        pkt(t + 0.02, flags="A", seq=c + 1, ack=s + 1, tcp_state="ESTABLISHED", **est, **o),
        pkt(t + 0.03, flags="PA", seq=c + 1, ack=s + 1, payload=request, tcp_state="ESTABLISHED", **est, **o),
        pkt(t + 0.04, flags="A", seq=s + 1, ack=c + 1 + request, tcp_state="ESTABLISHED", **est, **rp),
        pkt(t + 0.05, flags="PA", seq=s + 1, ack=c + 1 + request, payload=response, tcp_state="ESTABLISHED",
            **est, **rp),
    ]
    if close:
        c2, s2 = c + 1 + request, s + 1 + response
        seq += [
            pkt(t + 0.06, flags="FA", seq=c2, ack=s2, tcp_state="FIN_WAIT", **est, **o),
            pkt(t + 0.07, flags="FA", seq=s2, ack=c2 + 1, tcp_state="LAST_ACK", **est, **rp),
            pkt(t + 0.08, flags="A", seq=c2 + 1, ack=s2 + 1, tcp_state="TIME_WAIT", **est, **o),
        ]
    else:
        seq.append(pkt(t + 0.06, flags="A", seq=c + 1 + request, ack=s + 1 + response, tcp_state="ESTABLISHED",
                       **est, **o))
    return seq


def forward_scenario():
    """A forwarding firewall: an HTTP session, a blocked SSH attempt (policy drop, retransmitted), a DNS
    query and answer, a ping, and an out-of-window injected RST that comes out INVALID."""
    pk = tcp_session(0.0, "10.0.0.2", "203.0.113.10", 40000, 80, 0)
    pk += [
        pkt(1.0, "10.0.0.2", "203.0.113.22", sport=40001, dport=22, flags="S", seq=7, outcome="dropped", rule_id=6,
            ct=-1, ct_state="NEW", tcp_state="SYN_SENT", path=("PREROUTING", "FORWARD")),
        pkt(2.0, "10.0.0.2", "203.0.113.22", sport=40001, dport=22, flags="S", seq=7, outcome="dropped", rule_id=6,
            ct=-1, ct_state="NEW", tcp_state="SYN_SENT", path=("PREROUTING", "FORWARD")),
        pkt(3.0, "10.0.0.2", "198.51.100.53", proto="udp", sport=5353, dport=53, payload=30, ct=1, rule_id=3),
        pkt(3.01, "198.51.100.53", "10.0.0.2", proto="udp", sport=53, dport=5353, payload=80, ct=1, dir=1,
            ct_state="ESTABLISHED", rule_id=1, in_iface="wan0", out_iface="lan0"),
        pkt(4.0, "10.0.0.2", "203.0.113.10", proto="icmp", icmp_type=8, icmp_id=77, payload=56, ct=2, rule_id=4),
        pkt(4.01, "203.0.113.10", "10.0.0.2", proto="icmp", icmp_type=0, icmp_id=77, payload=56, ct=2, dir=1,
            ct_state="ESTABLISHED", rule_id=1, in_iface="wan0", out_iface="lan0"),
    ]
    # the HTTP session again, kept open, then an injected out-of-window RST from outside
    pk += tcp_session(5.0, "10.0.0.2", "203.0.113.10", 40002, 80, 3, close=False)
    pk.append(pkt(5.5, "203.0.113.10", "10.0.0.2", sport=80, dport=40002, flags="R", seq=99_999_999,
                  outcome="dropped", rule_id=0, ct=-1, ct_state="INVALID", invalid=R_SEQ_OVER, in_iface="wan0",
                  out_iface="", path=("PREROUTING", "FORWARD")))
    return pk

"""Replay a capture through this machine's own netfilter, in the namespace lab, and record what
the kernel did (the kernel oracle's JSON structure). Entry point: `run_kernel`."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time

from ._util import LabError, run
from .lab import SENTINEL_ETHERTYPE, SENTINEL_MAGIC, Lab, addr_key
from .netlink import (
    NFNL_SUBSYS_CTNETLINK,
    NFNL_SUBSYS_NFTABLES,
    NFNL_SUBSYS_ULOG,
    NFT_MSG_TRACE,
    NLM_F_DUMP,
    NLM_F_REQUEST,
    ct_parse,
    nflog_parse,
    trace_parse,
)
from .packets import (
    ICMP6_ERRORS,
    ICMP6_UNREACH_NAMES,
    ICMP_ERRORS,
    ICMP_UNREACH_NAMES,
    l4_checksum_ok_and_fix,
    mac_bytes,
    parse_ip,
    tuple_of,
)
from .pcapio import LINKTYPE_ETHERNET, l3_from_frame, read_pcap
from .topology import (
    CT_USING_RE,
    IPT_FAMILY,
    SAVE_CMD,
    RuleMap,
    detect_rules_format,
    load_topology,
    nat_addresses,
    oracle_table,
    parse_iptables_counters,
)

log = logging.getLogger(__name__)

ORACLE_VERSION = "nfreplay-lab 1.1"

class Replay:
    def __init__(self, lab: Lab, rulemap: RuleMap, use_ct: bool):
        self.lab = lab
        self.rm = rulemap
        self.use_ct = use_ct
        self.ct_events = []      # parsed, in arrival order
        self.trace_by_pkt = {}
        self.sentinel_seq = 0
        self.start = None
        self.missed_barriers = 0

    def drain(self):
        lab = self.lab
        now = time.monotonic() - self.start
        res = {"trace": [], "ct": [], "nflog": [], "egress": []}
        for typ, _fl, pl in lab.trace_sock.drain():
            if typ == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_TRACE:
                res["trace"].append(trace_parse(pl))
        for typ, fl, pl in lab.ct_sock.drain():
            if typ >> 8 == NFNL_SUBSYS_CTNETLINK:
                e = ct_parse(pl, fl, typ)
                e["t"] = round(now, 6)
                res["ct"].append(e)
        if lab.nflog_sock:
            for typ, _fl, pl in lab.nflog_sock.drain():
                if typ == (NFNL_SUBSYS_ULOG << 8):
                    res["nflog"].append(nflog_parse(pl))
        for name, info in lab.ifaces.items():
            s = info["sock"]
            while True:
                try:
                    data, addr = s.recvfrom(65535)
                except BlockingIOError:
                    break
                if addr[2] == socket.PACKET_OUTGOING:
                    continue
                res["egress"].append((name, data))
        return res

    def barrier(self, side_name):
        """Send a sentinel frame behind the packet on the same veth/CPU and wait
        until fw received it: everything the packet caused has been processed."""
        lab = self.lab
        info = lab.ifaces[side_name]
        self.sentinel_seq += 1
        frame = (mac_bytes(info["fw_mac"]) + mac_bytes(info["side_mac"]) +
                 struct.pack(">H", SENTINEL_ETHERTYPE) + SENTINEL_MAGIC +
                 struct.pack(">I", self.sentinel_seq) + b"\x00" * 34)
        info["sock"].send(frame)
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            r, _, _ = select.select([lab.sentinel_sock], [], [], 0.5)
            if not r:
                continue
            while True:
                try:
                    data = lab.sentinel_sock.recv(2048)
                except BlockingIOError:
                    break
                if data[14:22] == SENTINEL_MAGIC and \
                        struct.unpack_from(">I", data, 22)[0] == self.sentinel_seq:
                    return True
        self.missed_barriers += 1
        return False

    def run(self, pkts, timing, linger):
        # pinned to one CPU while injecting: all injected frames land on the same backlog queue in order.
        # The caller's CPU set comes back afterwards (it stayed pinned: a test suite that ran the lab went
        # on with one CPU, and so did every process it started)
        saved = None
        with contextlib.suppress(Exception):
            saved = os.sched_getaffinity(0)
            os.sched_setaffinity(0, {sorted(saved)[0]})
        try:
            return self._run(pkts, timing, linger)
        finally:
            if saved is not None:
                with contextlib.suppress(Exception):
                    os.sched_setaffinity(0, saved)

    def _run(self, pkts, timing, linger):
        lab = self.lab
        self.start = time.monotonic()
        self.drain()  # discard anything queued before the replay
        results = []
        between = []
        lags = []
        t0 = pkts[0]["ts"] if pkts else 0.0
        any_side = next(iter(lab.ifaces))
        for p in pkts:
            if timing == "original":
                target = p["ts"] - t0
                delay = target - (time.monotonic() - self.start)
                if delay > 0:
                    time.sleep(delay)
                lags.append((time.monotonic() - self.start) - target)
            pre = self.drain()
            if pre["ct"] or pre["trace"] or pre["egress"] or pre["nflog"]:
                between.append((p["index"], pre))
            send_t = time.monotonic() - self.start
            err = None
            if p["path"] == "inbound":
                info = lab.ifaces[p["in_iface"]]
                et = b"\x86\xdd" if p["bytes"][0] >> 4 == 6 else b"\x08\x00"
                frame = mac_bytes(info["fw_mac"]) + mac_bytes(info["side_mac"]) + et + p["bytes"]
                try:
                    info["sock"].send(frame)
                except OSError as e:
                    err = f"inject failed: {e}"
                ok = self.barrier(p["in_iface"])
            elif p["path"] == "local_out":
                try:
                    if p["bytes"][0] >> 4 == 6:
                        lab.raw_sock6.sendto(p["bytes"], (p["parsed"]["dst"], 0, 0, 0))
                    else:
                        lab.raw_sock.sendto(p["bytes"], (p["parsed"]["dst"], 0))
                except OSError as e:
                    err = f"raw send failed: {e}"
                ok = self.barrier(any_side)
            else:
                results.append({"send_t": None, "drain": None, "error": None, "barrier": None})
                continue
            post = self.drain()
            results.append({"send_t": round(send_t, 6), "drain": post, "error": err, "barrier": ok})
        if linger > 0:
            time.sleep(linger)
        tail = self.drain()
        if tail["ct"] or tail["trace"] or tail["egress"] or tail["nflog"]:
            between.append((None, tail))
        replay_s = time.monotonic() - self.start
        return results, between, lags, replay_s

    def dump_conntrack(self):
        pl = struct.pack("=BBH", socket.AF_UNSPEC, 0, 0)   # both families
        msgs = self.lab.dump_sock.request((NFNL_SUBSYS_CTNETLINK << 8) | 1,
                                          NLM_F_REQUEST | NLM_F_DUMP, pl)
        out = []
        for typ, fl, p in msgs:
            e = ct_parse(p, fl, typ)
            e.pop("type", None)
            out.append(e)
        return out


# --------------------------------------------------------------------------
# analysis
# --------------------------------------------------------------------------

HOOK_ORDER = {"prerouting": 0, "input": 1, "forward": 1, "output": 0, "postrouting": 2}


def same_packet(a, b):
    """Is parsed packet b a (possibly NAT-rewritten) copy of a?"""
    if a is None or b is None or a["proto"] != b["proto"]:
        return False
    if a.get("ip_id") != b.get("ip_id") and a.get("ip_id", 0) != 0:
        return False
    if (a["proto"] == 1 and a.get("icmp_type") in ICMP_ERRORS) or \
            (a["proto"] == 58 and a.get("icmp_type") in ICMP6_ERRORS):
        # A RELATED ICMP error forwarded through NAT has its quoted (inner)
        # header rewritten too (addresses, ports, checksums), so its payload
        # hash changes: compare what NAT leaves alone instead.
        ia, ib = a.get("inner"), b.get("inner")
        return (ia is not None and ib is not None and
                (a.get("icmp_type"), a.get("icmp_code"), a.get("tot_len")) ==
                (b.get("icmp_type"), b.get("icmp_code"), b.get("tot_len")) and
                (ia["proto"], ia.get("ip_id"), ia.get("seq"), ia.get("ack"), ia.get("icmp_seq")) ==
                (ib["proto"], ib.get("ip_id"), ib.get("seq"), ib.get("ack"), ib.get("icmp_seq")))
    if a.get("payload_sha1") != b.get("payload_sha1"):
        return False
    if a["proto"] == 6:
        return (a.get("seq"), a.get("ack"), a.get("tcp_flags")) == \
               (b.get("seq"), b.get("ack"), b.get("tcp_flags"))
    if a["proto"] in (1, 58):
        return (a.get("icmp_type"), a.get("icmp_code"), a.get("icmp_seq")) == \
               (b.get("icmp_type"), b.get("icmp_code"), b.get("icmp_seq"))
    return True


def trace_matches(a, t):
    """Does the (truncated) packet dump t of a trace event show packet a?
    Trace dumps carry at most 20 bytes of transport header, so compare header
    fields only; NAT may rewrite addresses/ports but not these."""
    if a is None or t is None or a["proto"] != t["proto"]:
        return False
    if a.get("ip_id") != t.get("ip_id") and a.get("ip_id", 0) != 0:
        return False
    if a.get("tot_len") != t.get("tot_len"):
        return False
    if a["proto"] == 6:
        return (a.get("seq"), a.get("ack"), a.get("tcp_flags")) == \
               (t.get("seq"), t.get("ack"), t.get("tcp_flags"))
    if a["proto"] in (1, 58):
        return (a.get("icmp_type"), a.get("icmp_code"), a.get("icmp_seq")) == \
               (t.get("icmp_type"), t.get("icmp_code"), t.get("icmp_seq"))
    return True


def _inner_is(inn, inp):
    """Is the quoted header `inn` of an ICMP error the input packet `inp`?"""
    if inn["proto"] != inp["proto"]:
        return False
    if inp.get("family") == "ip6":
        keys = ("src", "dst", "sport", "dport", "seq", "icmp_type", "icmp_id", "icmp_seq")
        return all(inn.get(k) == inp.get(k) for k in keys)
    return inn.get("ip_id") == inp.get("ip_id")


def response_kind(inp, fr):
    """Classify an egress frame as a response generated for input packet inp."""
    if fr["proto"] == 6 and inp["proto"] == 6 and fr.get("tcp_flags", 0) & 0x04 and \
            fr.get("dport") == inp.get("sport") and fr["dst"] == inp["src"]:
        return "tcp-reset"
    if fr["proto"] == 58 and fr.get("icmp_type") in ICMP6_ERRORS and fr.get("inner") and \
            _inner_is(fr["inner"], inp) and fr["dst"] == inp["src"]:
        if fr["icmp_type"] == 1:
            return ICMP6_UNREACH_NAMES.get(fr["icmp_code"], f"icmp6-unreach-{fr['icmp_code']}")
        return {2: "icmp6-packet-too-big", 3: "icmp6-time-exceeded",
                4: "icmp6-param-problem"}[fr["icmp_type"]]
    if fr["proto"] == 1 and fr.get("icmp_type") in ICMP_ERRORS and fr.get("inner"):
        inn = fr["inner"]
        if _inner_is(inn, inp) and fr["dst"] == inp["src"]:
            if fr["icmp_type"] == 3:
                return ICMP_UNREACH_NAMES.get(fr["icmp_code"], f"icmp-unreach-{fr['icmp_code']}")
            return {11: "icmp-time-exceeded", 5: "icmp-redirect", 12: "icmp-param-problem",
                    4: "icmp-source-quench"}[fr["icmp_type"]]
    return None


def egress_summary(name, data):
    et, l3 = l3_from_frame(LINKTYPE_ETHERNET, data)
    d = {"iface": name}
    if et not in (0x0800, 0x86DD):
        d["ethertype"] = f"{et:#06x}" if et is not None else None
        return d, None
    p = parse_ip(l3)
    if p is None:
        return d, None
    d["tuple"] = tuple_of(p)
    d["len"] = p["tot_len"]
    d["ttl"] = p["ttl"]
    if "flags" in p:
        d["tcp_flags"] = p["flags"]
        d["seq"], d["ack"] = p["seq"], p["ack"]
    if p.get("inner"):
        d["inner"] = tuple_of(p["inner"])
    d["dst_mac"] = ":".join(f"{x:02x}" for x in data[0:6])
    d["src_mac"] = ":".join(f"{x:02x}" for x in data[6:12])
    return d, p


class Analyzer:
    def __init__(self, lab, rm, fmt, use_ct):
        self.lab = lab
        self.rm = rm
        self.fmt = fmt
        self.use_ct = use_ct
        self.live_flows = {}   # kernel ct id -> flow number (live objects)
        self.n_flows = 0
        self.events = []
        self.rule_hits = {}    # (fam, table, chain, handle) -> [pkts, bytes]
        self.policy_hits = {}  # (fam, table, chain) -> [pkts, bytes]
        self.ctp_labels = {}
        for (_fam, tbl, ch, h), txt in rm.rule_text.items():
            if tbl == "nfo_oracle" and ch.startswith("ctp_"):
                self.ctp_labels[(ch, h)] = txt

    def ifname(self, idx):
        return self.lab.ifindex.get(idx, str(idx)) if idx is not None else None

    def add_ct_events(self, evs, pkt_index, after_index):
        """Number conntrack objects by lifetime: the kernel's CTA_ID is derived
        from the object address, so an entry created right after another one
        died can carry the same id. NEW always opens a new flow, DESTROY closes it."""
        seqs = []
        for e in evs:
            kid = e.pop("_id", None)
            if kid is not None:
                if e["type"] == "NEW" or kid not in self.live_flows:
                    self.live_flows[kid] = self.n_flows
                    self.n_flows += 1
                e["flow"] = self.live_flows[kid]
                if e["type"] == "DESTROY":
                    del self.live_flows[kid]
            e["seq"] = len(self.events)
            e["packet_index"] = pkt_index
            if pkt_index is None:
                e["after_packet"] = after_index
            self.events.append(e)
            seqs.append(e["seq"])
        return seqs

    def split_trace(self, evs):
        """Group trace events by trace id (one group per skb), keep order."""
        groups = {}
        order = []
        for ev in evs:
            tid = ev.get("id")
            if tid not in groups:
                groups[tid] = []
                order.append(tid)
            groups[tid].append(ev)
        return [groups[t] for t in order]

    def account(self, group):
        for ev in group:
            if ev.get("table") == "nfo_oracle":
                continue
            fam = ev["family"]
            pkt = ev.get("pkt_len")
            if ev.get("type") == "rule" and ev.get("handle") is not None:
                k = (fam, ev["table"], ev["chain"], ev.get("handle"))
                h = self.rule_hits.setdefault(k, [0, 0])
                h[0] += 1
                h[1] += pkt or 0
            elif ev.get("type") == "policy":
                k = (fam, ev["table"], ev["chain"])
                h = self.policy_hits.setdefault(k, [0, 0])
                h[0] += 1
                h[1] += pkt or 0

    def annotate_group(self, group):
        """Attach hook names and packet lengths to events of one skb."""
        cur_hook = None
        cur_len = None
        out = []
        for ev in group:
            hook = self.rm.hook_of(ev["family"], ev.get("table"), ev.get("chain"))
            if hook:
                cur_hook = hook
            if ev.get("pkt") is not None:
                cur_len = ev["pkt"].get("tot_len")
            ev["hook"] = hook or cur_hook
            ev["pkt_len"] = cur_len
            out.append(ev)
        return out

    def user_trace(self, group):
        tr = []
        for ev in group:
            if ev.get("table") == "nfo_oracle":
                continue
            if ev.get("type") == "rule" and ev.get("handle") is None:
                continue   # end-of-chain marker: no rule matched, falls to policy/return
            fam, tbl, ch = ev["family"], ev.get("table"), ev.get("chain")
            item = {"hook": ev.get("hook"), "family": fam, "table": tbl, "chain": ch,
                    "type": ev.get("type")}
            if ev.get("type") in ("rule", "return") and ev.get("handle") is not None:
                h = ev["handle"]
                item["rule_number"] = self.rm.rule_pos.get((fam, tbl, ch, h))
                item["handle"] = h
                item["rule"] = self.rm.rule_text.get((fam, tbl, ch, h))
            if ev.get("type") == "policy":
                item["verdict"] = ev.get("policy")
            else:
                item["verdict"] = ev.get("verdict")
                if ev.get("target"):
                    item["target"] = ev["target"]
            tr.append(item)
        return tr

    def hooks_of(self, group):
        """Hook traversal of one skb, from the oracle's own first/last chains
        on every hook: 'entered' is the packet as it entered the hook (before
        any user chain), 'passed' the packet after all user chains of that hook
        accepted it (None if it never got there)."""
        hooks = []
        by = {}
        for ev in group:
            if ev.get("table") != "nfo_oracle":
                continue
            ch = ev.get("chain", "")
            if not ch.startswith(("e_", "l_")):
                continue
            h = ch[2:]
            if h not in by:
                by[h] = {"hook": h, "iif": self.ifname(ev.get("iif")),
                         "oif": self.ifname(ev.get("oif")), "entered": None, "passed": None}
                hooks.append(by[h])
            if ev.get("pkt") is None:
                continue
            tup = tuple_of(ev["pkt"])
            if ch.startswith("e_"):
                if by[h]["entered"] is None:
                    by[h]["entered"] = tup
            else:
                by[h]["passed"] = tup
                if ev.get("oif") is not None:
                    by[h]["oif"] = self.ifname(ev.get("oif"))
        return hooks

    def ct_state(self, group):
        st = {}
        for ev in group:
            if ev.get("table") == "nfo_oracle" and ev.get("chain", "").startswith("ctp_") \
                    and ev.get("type") == "rule":
                lab = self.ctp_labels.get((ev["chain"], ev.get("handle")), "")
                m = re.match(r"ct (state|direction) (\S+)", lab)
                if m and m.group(1) not in st:
                    st[m.group(1)] = m.group(2)
        if self.use_ct and not st.get("state"):
            st.setdefault("state", None)
        return st or None

    def analyze_packet(self, p, r):
        out = {"index": p["index"], "time": p["rel_ts"], "path": p["path"],
               "in_iface": p.get("in_iface"), "tuple": tuple_of(p["parsed"]) if p["parsed"] else None}
        pp = p["parsed"]
        if pp:
            out["len"] = pp["tot_len"]
            out["ip_id"] = pp["ip_id"]
            if "flags" in pp:
                out["tcp_flags"] = pp["flags"]
                out["seq"], out["ack"] = pp["seq"], pp["ack"]
        if p.get("checksum_fixed"):
            out["checksum_fixed"] = p["checksum_fixed"]
        if p["path"] == "skip":
            out["outcome"] = "not_injected"
            out["reason"] = p["skip_reason"]
            return out
        d = r["drain"]
        if r["error"]:
            out["error"] = r["error"]
        if not r["barrier"]:
            out.setdefault("notes", []).append("barrier timed out; attribution may be incomplete")
        out["conntrack_events"] = self.add_ct_events(d["ct"], p["index"], None)
        groups = [self.annotate_group(g) for g in self.split_trace(d["trace"])]
        for g in groups:
            self.account(g)
        main, generated = [], []
        for g in groups:
            first = next((ev.get("pkt") for ev in g if ev.get("pkt") is not None), None)
            if trace_matches(pp, first):
                main = main + g          # (the trace id may change between hooks)
            else:
                generated.append(g)
        if not main and groups:
            # nothing matched: the first skb traced after the send is the input
            main = groups[0]
            generated = groups[1:]
            out.setdefault("notes", []).append("trace attributed by order, not by header match")
        out["hooks"] = self.hooks_of(main)
        out["ct"] = self.ct_state(main) if self.use_ct else None
        out["trace"] = self.user_trace(main)
        inv = [x.get("prefix") for x in d["nflog"] if x.get("prefix")]
        if inv:
            out["conntrack_log"] = inv
        # egress
        fwd = None
        responses, others = [], []
        for name, data in d["egress"]:
            summ, ep = egress_summary(name, data)
            if ep is not None and fwd is None and same_packet(pp, ep):
                fwd = (summ, ep)
                continue
            kind = response_kind(pp, ep) if ep is not None else None
            if kind:
                summ["kind"] = kind
                responses.append(summ)
            else:
                others.append(summ)
        gen_traces = []
        for g in generated:
            gen_traces.append({"hooks": self.hooks_of(g), "trace": self.user_trace(g)})
        # verdict attribution
        drop = None
        for ev in out["trace"]:
            if ev["verdict"] in ("drop", "queue", "stolen"):
                drop = ev
                break
        reached = {h["hook"]: h for h in out["hooks"]}
        out["out_iface"] = None
        out["out_tuple"] = None
        if fwd is not None:
            out["outcome"] = "forwarded" if p["path"] == "inbound" else "emitted"
            out["out_iface"] = fwd[0]["iface"]
            out["out_tuple"] = fwd[0]["tuple"]
            out["out_ttl"] = fwd[0]["ttl"]
        elif drop is not None:
            rule = drop.get("rule") or ""
            is_rej = bool(re.search(r"-j REJECT\b|\breject\b", rule))
            out["outcome"] = "rejected" if (is_rej or responses) else "dropped"
            out["drop"] = {k: drop.get(k) for k in ("hook", "family", "table", "chain",
                                                     "rule_number", "rule", "verdict", "type")}
        elif "input" in reached and reached["input"]["passed"] is not None:
            out["outcome"] = "delivered_local"
        else:
            out["outcome"] = "dropped"
            last = None
            for h in out["hooks"]:
                last = h
            if last is None:
                why = "never reached a netfilter hook"
            elif last["passed"] is None:
                why = f"vanished inside the {last['hook']} hook without a ruleset verdict"
            else:
                why = f"discarded by the kernel after passing the {last['hook']} hook"
            out["drop"] = {"by": "kernel", "reason": why}
            if p["path"] == "inbound" and "postrouting" in reached and \
                    reached["postrouting"]["passed"] is not None:
                out["drop"]["reason"] = "passed POSTROUTING but not seen on any egress link"
        if responses:
            out["reject"] = responses[0] if len(responses) == 1 else responses
            if out["outcome"] in ("dropped",) and drop is not None:
                out["outcome"] = "rejected"
        elif out["outcome"] == "rejected":
            out["reject"] = {"kind": None, "note": "REJECT verdict but no response left the "
                             "firewall (e.g. ICMP rate limit or response to a local address)"}
        if others:
            out["other_egress"] = others
        if gen_traces:
            out["generated"] = gen_traces
        return out

    def timer_block(self, after_index, d):
        blk = {"after_packet": after_index}
        blk["conntrack_events"] = self.add_ct_events(d["ct"], None, after_index)
        groups = [self.annotate_group(g) for g in self.split_trace(d["trace"])]
        for g in groups:
            self.account(g)
        if groups:
            blk["trace"] = [self.user_trace(g) for g in groups]
        if d["egress"]:
            blk["egress"] = [egress_summary(n, x)[0] for n, x in d["egress"]]
        if d["nflog"]:
            blk["conntrack_log"] = [x.get("prefix") for x in d["nflog"]]
        return blk


def build_flows(events, final):
    flows = {}
    for e in events:
        f = e.get("flow")
        if f is None:
            continue
        fl = flows.setdefault(f, {"flow": f, "proto": e.get("proto"), "orig": e.get("orig"),
                                  "reply": e.get("reply"), "history": []})
        h = {"event": e["type"], "packet_index": e.get("packet_index"), "seq": e["seq"]}
        if e.get("packet_index") is None:
            h["after_packet"] = e.get("after_packet")
        for k in ("tcp_state", "flags", "status", "timeout", "mark", "counters"):
            if k in e:
                h[k] = e[k]
        fl["reply"] = e.get("reply", fl["reply"])
        fl["history"].append(h)
    fin = {e.get("flow") for e in final}
    for f in flows.values():
        f["in_final_table"] = f["flow"] in fin
    return [flows[k] for k in sorted(flows)]


# --------------------------------------------------------------------------
# main oracle run
# --------------------------------------------------------------------------

def sysctl_snapshot(ns, ifaces):
    txt = run(["sysctl", "-a"], ns=ns, check=False)
    keep = {}
    pat = re.compile(r"^(net\.netfilter\.|net\.ipv4\.ip_forward$|net\.ipv4\.icmp_|net\.ipv6\.icmp\.|"
                     r"net\.ipv6\.conf\.all\.forwarding$|"
                     r"net\.ipv4\.ip_default_ttl$|net\.ipv4\.conf\.(all|default|"
                     + "|".join(re.escape(i) for i in ifaces) +
                     r")\.(rp_filter|forwarding|send_redirects|accept_redirects|accept_local|"
                     r"route_localnet|log_martians|arp_ignore|proxy_arp)$)")
    for line in txt.splitlines():
        if " = " not in line:
            continue
        k, v = line.split(" = ", 1)
        if pat.match(k) and k != "net.netfilter.nf_conntrack_count":
            keep[k] = v.strip()
    return dict(sorted(keep.items()))


def load_packets(path, checksums):
    recs = read_pcap(path)
    pkts = []
    t0 = recs[0][0] if recs else 0.0
    for i, (ts, lt, data, orig) in enumerate(recs):
        et, l3 = l3_from_frame(lt, data)
        p = {"index": i, "ts": ts, "rel_ts": round(ts - t0, 6), "parsed": None}
        if et not in (0x0800, 0x86DD) or l3 is None or len(l3) < 20 or l3[0] >> 4 not in (4, 6) \
                or (l3[0] >> 4 == 6 and len(l3) < 40):
            p["path"] = "skip"
            p["skip_reason"] = "not IPv4 or IPv6"
            pkts.append(p)
            continue
        if l3[0] >> 4 == 6:
            tot = 40 + struct.unpack_from(">H", l3, 4)[0]
        else:
            tot = struct.unpack_from(">H", l3, 2)[0]
        if tot > len(l3) or orig > len(data):
            p["path"] = "skip"
            p["skip_reason"] = "truncated in capture"
            p["parsed"] = parse_ip(l3)
            pkts.append(p)
            continue
        b = bytearray(l3[:tot])
        bad = l4_checksum_ok_and_fix(b, fix=(checksums == "fix"))
        if bad:
            p["checksum_fixed" if checksums == "fix" else "checksum_bad"] = bad
        p["bytes"] = bytes(b)
        p["parsed"] = parse_ip(p["bytes"])
        pkts.append(p)
    return pkts


def check_requirements() -> list[str]:
    """What this machine lacks for the kernel lab; an empty list means `run_kernel` can run.

    Required: Linux, root, iproute2 (`ip`), nft, iptables with the nf_tables backend (and
    ip6tables), conntrack-tools. tcpdump and ethtool are optional cross-checks/tuning and are
    not reported."""
    missing = []
    if not sys.platform.startswith("linux"):
        return [f"Linux (this is {sys.platform})"]
    if os.geteuid() != 0:
        missing.append("root (network namespaces; run as root or with sudo)")
    for tool, pkg in (("ip", "iproute2"), ("nft", "nftables"), ("iptables", "iptables"),
                      ("iptables-restore", "iptables"), ("ip6tables", "iptables"),
                      ("ip6tables-restore", "iptables"), ("conntrack", "conntrack (conntrack-tools)")):
        if not shutil.which(tool):
            missing.append(f"{tool} (package {pkg})")
    ipt = shutil.which("iptables")
    if ipt:
        try:
            v = subprocess.run([ipt, "--version"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            v = ""
        if "nf_tables" not in v:
            missing.append(f"iptables with the nf_tables backend (found: {v.strip() or 'unknown'}; "
                           "use update-alternatives --set iptables /usr/sbin/iptables-nft)")
    if not os.path.isdir("/proc/sys/net/netfilter") and os.geteuid() == 0:
        missing.append("kernel netfilter/conntrack support (/proc/sys/net/netfilter missing)")
    return missing


def require_lab():
    """Raise LabError naming exactly what is missing for the kernel lab."""
    missing = check_requirements()
    if missing:
        raise LabError("the kernel lab needs: " + ", ".join(missing))


def run_kernel(capture_path, rules_path, host, timing="fast", checksums="fix", linger_s=0,
               *, save_pcaps=None, tcpdump=True, conntrack_tool=True,
               force_conntrack_probe=False, max_packets=100000) -> dict:
    """Replay `capture_path` through this machine's netfilter loaded with `rules_path`, in an
    isolated namespace lab built from `host` (host file path or dict), and return the kernel's
    answers (the oracle JSON structure, see docs/verify.md)."""
    if timing not in ("fast", "original"):
        raise LabError(f"timing must be 'fast' or 'original', not {timing!r}")
    if checksums not in ("fix", "keep"):
        raise LabError(f"checksums must be 'fix' or 'keep', not {checksums!r}")
    require_lab()
    t_start = time.monotonic()
    topo = load_topology(host)
    capture_path, rules_path = os.fspath(capture_path), os.fspath(rules_path)
    try:
        rules_text = open(rules_path).read()
    except OSError as e:
        raise LabError(f"{rules_path}: {e.strerror}") from e
    fmt = detect_rules_format(rules_text, rules_path)
    use_ct = bool(CT_USING_RE[fmt].search(rules_text)) or force_conntrack_probe
    pkts = load_packets(capture_path, checksums)
    if len(pkts) > max_packets:
        raise LabError(f"capture has {len(pkts)} packets (> max_packets {max_packets})")
    addrs = set()
    for p in pkts:
        if p["parsed"]:
            addrs.add(p["parsed"]["src"])
            addrs.add(p["parsed"]["dst"])
    addrs |= nat_addresses(rules_text)

    lab = Lab(topo)
    result = None
    cleanup_errors = []

    def on_signal(signum, frame):
        raise SystemExit(128 + signum)
    old = {}
    if threading.current_thread() is threading.main_thread():
        old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    try:
        log.info("building lab %s", lab.fw)
        lab.setup_network()
        lab.apply_sysctls(use_ct)
        lab.assign_hosts(addrs)
        for p in pkts:
            if p.get("path") == "skip":
                continue
            src = p["parsed"]["src"]
            side = lab.host_side.get(src)
            if side is None:
                p["path"] = "skip"
                p["skip_reason"] = f"source {src} has no route on the firewall"
            elif side == "local":
                p["path"] = "local_out"
            else:
                p["path"] = "inbound"
                p["in_iface"] = side
                mtu = int(next(i for i in topo["interfaces"] if i["name"] == side).get("mtu", 1500))
                if len(p["bytes"]) > mtu:
                    p["path"] = "skip"
                    p["skip_reason"] = f"larger than MTU {mtu} (GSO/TSO capture?)"
        log.info("loading ruleset")
        lab.load_rules(rules_path, fmt)
        run(["nft", "-f", "-"], ns=lab.fw, input=oracle_table(use_ct))
        rm = RuleMap(lab.fw, fmt)
        ruleset_listing = run([SAVE_CMD[fmt]] if fmt in IPT_FAMILY else ["nft", "list", "ruleset"],
                              ns=lab.fw)
        if fmt in IPT_FAMILY:
            ruleset_listing = "\n".join(l for l in ruleset_listing.splitlines()
                                        if not l.startswith("#"))
        else:
            ruleset_listing = re.sub(r"table inet nfo_oracle \{.*?\n\}\n?", "", ruleset_listing,
                                     flags=re.S)
        lab.open_sockets(want_nflog=use_ct)
        lab.start_monitors(want_tool=conntrack_tool, want_tcpdump=tcpdump)
        sysctls = sysctl_snapshot(lab.fw, list(lab.ifaces))
        t_setup = time.monotonic() - t_start
        log.info("replaying %d packets (%s)", len(pkts), timing)
        rp = Replay(lab, rm, use_ct)
        results, between, lags, replay_s = rp.run(pkts, timing, linger_s)
        final_raw = rp.dump_conntrack()

        # counters
        an = Analyzer(lab, rm, fmt, use_ct)
        between_map = {}
        for idx, d in between:
            between_map.setdefault(idx, []).append(d)
        packets_out = []
        timers = []
        for p, r in zip(pkts, results):
            for d in between_map.get(p["index"], []):
                timers.append(an.timer_block(p["index"] - 1 if p["index"] else None, d))
            packets_out.append(an.analyze_packet(p, r))
        for d in between_map.get(None, []):
            timers.append(an.timer_block(len(pkts) - 1, d))
        final = []
        for e in final_raw:
            kid = e.pop("_id", None)
            if kid is not None and kid in an.live_flows:
                e["flow"] = an.live_flows[kid]
            else:
                e["flow"] = None
            final.append(e)
        final.sort(key=lambda e: (e["flow"] is None, e["flow"] if e["flow"] is not None else 0,
                                  json.dumps(e.get("orig"), sort_keys=True)))

        per_rule, policy = [], []
        if fmt in IPT_FAMILY:
            fam = IPT_FAMILY[fmt]
            rules_c, pol_c = parse_iptables_counters(run([SAVE_CMD[fmt], "-c"], ns=lab.fw))
            for rc in rules_c:
                ch = rm.chains.get((fam, rc["table"], rc["chain"]), {})
                hs = ch.get("rules", [])
                h = hs[rc["rule_number"] - 1] if rc["rule_number"] <= len(hs) else None
                th = an.rule_hits.get((fam, rc["table"], rc["chain"], h), [0, 0])
                rc.update({"family": fam, "handle": h, "trace_packets": th[0], "trace_bytes": th[1]})
                per_rule.append(rc)
            for pc in pol_c:
                ch = rm.chains.get((fam, pc["table"], pc["chain"]))
                th = an.policy_hits.get((fam, pc["table"], pc["chain"]), [0, 0])
                pc.update({"family": fam, "hook": (ch or {}).get("hook"),
                           "trace_packets": th[0], "trace_bytes": th[1]})
                if ch is None:
                    pc["note"] = "chain not instantiated by iptables-nft (no hook registered)"
                policy.append(pc)
        else:
            js = json.loads(run(["nft", "-j", "-a", "list", "ruleset"], ns=lab.fw))
            for item in js.get("nftables", []):
                if "rule" in item:
                    r = item["rule"]
                    if r["table"] == "nfo_oracle":
                        continue
                    key = (r["family"], r["table"], r["chain"], r["handle"])
                    cnt = [x["counter"] for x in r.get("expr", []) if isinstance(x, dict)
                           and isinstance(x.get("counter"), dict)]
                    th = an.rule_hits.get(key, [0, 0])
                    per_rule.append({"family": r["family"], "table": r["table"], "chain": r["chain"],
                                     "rule_number": rm.rule_pos.get(key), "handle": r["handle"],
                                     "rule": rm.rule_text.get(key),
                                     "packets": cnt[0]["packets"] if cnt else None,
                                     "bytes": cnt[0]["bytes"] if cnt else None,
                                     "trace_packets": th[0], "trace_bytes": th[1]})
            for (fam, tbl, ch), info in rm.chains.items():
                if tbl == "nfo_oracle" or not info.get("hook"):
                    continue
                th = an.policy_hits.get((fam, tbl, ch), [0, 0])
                policy.append({"family": fam, "table": tbl, "chain": ch, "hook": info["hook"],
                               "policy": info.get("policy"), "packets": None, "bytes": None,
                               "trace_packets": th[0], "trace_bytes": th[1],
                               "note": "nftables keeps no policy counter; trace-derived"})
        mism = [r for r in per_rule if r["packets"] is not None and
                (r["packets"], r["bytes"]) != (r["trace_packets"], r["trace_bytes"])]
        mism += [r for r in policy if r["packets"] is not None and
                 (r["packets"], r["bytes"]) != (r["trace_packets"], r["trace_bytes"])]

        # stop monitors, collect tool output and egress pcaps
        tool_lines = None
        if lab.tool_out:
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                lab.tool_f.flush()
                n = sum(1 for _ in open(lab.tool_out))
                if n >= len(an.events):
                    break
                time.sleep(0.05)
            lab.stop_process(lab.tool_proc, signal.SIGINT)
            lab.tool_f.close()
            tool_lines = [l.rstrip("\n") for l in open(lab.tool_out) if l.strip()]
        egress_pcap_counts = {}
        for name, (p, path, _errp, ef) in lab.tcpdumps.items():
            time.sleep(0.05)
            lab.stop_process(p, signal.SIGINT)
            ef.close()
            frames = read_pcap(path) if os.path.exists(path) else []
            egress_pcap_counts[name] = sum(1 for f in frames
                                           if l3_from_frame(f[1], f[2])[0] in (0x0800, 0x86DD))
            if save_pcaps:
                os.makedirs(save_pcaps, exist_ok=True)
                shutil.copy(path, os.path.join(save_pcaps, f"egress_{name}.pcap"))
        sock_counts = {}
        for pkt in packets_out:
            for key in ("out_iface",):
                if pkt.get(key):
                    sock_counts[pkt[key]] = sock_counts.get(pkt[key], 0) + 1
            for fld in ("reject", "other_egress"):
                v = pkt.get(fld)
                for x in (v if isinstance(v, list) else [v] if v else []):
                    if x.get("iface") and x.get("tuple"):
                        sock_counts[x["iface"]] = sock_counts.get(x["iface"], 0) + 1
        for tb in timers:
            for x in tb.get("egress", []):
                if x.get("tuple"):
                    sock_counts[x["iface"]] = sock_counts.get(x["iface"], 0) + 1

        outcomes = {}
        for pkt in packets_out:
            outcomes[pkt["outcome"]] = outcomes.get(pkt["outcome"], 0) + 1
        uname = os.uname()
        result = {
            "oracle_version": ORACLE_VERSION,
            "kernel": {"release": uname.release, "version": uname.version, "machine": uname.machine},
            "tools": {
                "iptables": run(["iptables", "--version"], check=False).strip(),
                "nft": run(["nft", "--version"], check=False).strip(),
            },
            "input": {
                "pcap": os.path.basename(capture_path),
                "pcap_sha256": hashlib.sha256(open(capture_path, "rb").read()).hexdigest(),
                "rules": os.path.basename(rules_path), "rules_format": fmt,
                "topology": topo, "timing": timing, "checksums": checksums,
                "packets": len(pkts),
            },
            "sysctls": sysctls,
            "lab": {
                "interfaces": [{"name": n, "fw_mac": i["fw_mac"], "side_mac": i["side_mac"],
                                "addresses": i["addresses"], "side_hosts": sorted(
                                    i["hosts"], key=addr_key)}
                               for n, i in lab.ifaces.items()],
                "fw_local_addresses": sorted(a for a, s in lab.host_side.items() if s == "local"),
                "routes": run(["ip", "-n", lab.fw, "route", "show"]).strip().splitlines() +
                (run(["ip", "-n", lab.fw, "-6", "route", "show"]).strip().splitlines()
                 if lab.ipv6 else []),
                "conntrack_probes": use_ct,
                "namespaces": [lab.fw] + [i["side_ns"] for i in lab.ifaces.values()],
            },
            "ruleset": ruleset_listing.strip().splitlines(),
            "summary": {"outcomes": dict(sorted(outcomes.items())),
                        "conntrack_events": len(an.events), "flows": an.n_flows,
                        "final_conntrack_entries": len(final)},
            "per_rule_counters": per_rule,
            "policy_counters": policy,
            "conntrack_events": {"events": an.events, "flows": build_flows(an.events, final)},
            "final_conntrack": final,
            "packets": packets_out,
            "timer_events": timers,
            "checks": {
                "kernel_counters_equal_trace_counts": not mism,
                "counter_mismatches": [{k: r.get(k) for k in ("table", "chain", "rule_number",
                                                               "packets", "trace_packets")}
                                       for r in mism],
                "netlink_events": len(an.events),
                "conntrack_tool_events": len(tool_lines) if tool_lines is not None else None,
                "egress_frames_socket": dict(sorted(sock_counts.items())),
                "egress_frames_tcpdump": dict(sorted(egress_pcap_counts.items())),
                "netlink_overruns": lab.trace_sock.overruns + lab.ct_sock.overruns,
                "barrier_timeouts": rp.missed_barriers,
            },
            "conntrack_tool": {"events": tool_lines,
                               "final": run(["conntrack", "-L", "-o", "extended"], ns=lab.fw,
                                            check=False).strip().splitlines()
                               if shutil.which("conntrack") else None},
            "timing": {"setup_s": round(t_setup, 3), "replay_s": round(replay_s, 3),
                       "packets_per_s": round(len(pkts) / replay_s, 1) if replay_s else None,
                       "max_send_lag_ms": round(max(lags) * 1000, 3) if lags else None,
                       "mean_send_lag_ms": round(sum(lags) / len(lags) * 1000, 3) if lags else None},
            "warnings": lab.warnings,
        }
    finally:
        cleanup_errors = lab.teardown()
        for sig, h in old.items():
            signal.signal(sig, h)
    if cleanup_errors:
        log.warning("lab cleanup problems: %s", "; ".join(cleanup_errors))
    result["timing"]["total_s"] = round(time.monotonic() - t_start, 3)
    result["warnings"] += [f"cleanup: {e}" for e in cleanup_errors]
    return result


def write_json(result: dict, path) -> None:
    with open(path, "w") as f:
        json.dump(result, f, indent=1, sort_keys=False)
        f.write("\n")


# --------------------------------------------------------------------------
# determinism comparison

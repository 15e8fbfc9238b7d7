"""Rule provenance: which tool generated a rule, read from its chain name, table name and comment.

Labels (first match wins):
    docker       chains DOCKER, DOCKER-USER, DOCKER-ISOLATION-STAGE-1/2, DOCKER-INGRESS, comments "docker"
    kube-proxy   chains KUBE-* (KUBE-SERVICES, KUBE-SVC-*, KUBE-SEP-*, KUBE-FORWARD, ...), table kube-proxy
    ufw          chains ufw-* / ufw6-*, or a comment starting with "ufw"
    firewalld    nft table "firewalld" (table inet firewalld), chains of firewalld's zone layout
                 (filter_IN_*, filter_FWD_*, nat_PRE_*, nat_POST_*, *_ZONES, *_ZONES_SOURCE, *_allow/_deny/_log/_pre/_post)
    fail2ban     chains f2b-* / fail2ban-*
    libvirt      chains LIBVIRT_*
    (empty)      hand-written or unknown
"""

from __future__ import annotations

import re

__all__ = ["label_rule", "label_rules", "PROVENANCE_DESCRIPTIONS", "describe_rule"]

PROVENANCE_DESCRIPTIONS = {
    "docker": "Docker",
    "kube-proxy": "kube-proxy (Kubernetes)",
    "ufw": "ufw",
    "firewalld": "firewalld",
    "fail2ban": "fail2ban",
    "libvirt": "libvirt",
}

_COMMENT = re.compile(r'--comment\s+(?:"((?:[^"\\]|\\.)*)"|(\S+))|comment\s+"((?:[^"\\]|\\.)*)"')
_FIREWALLD_CHAIN = re.compile(
    r"^(?:filter|nat|mangle|raw|security)_(?:IN|FWD|FWDI|FWDO|FWD_IN|FWD_OUT|OUT|PRE|POST|PREROUTING|"
    r"POSTROUTING|INPUT|FORWARD|OUTPUT)(?:_|$)|_ZONES(?:_SOURCE)?$|^(?:filter|nat|mangle|raw)_\w+_(?:allow|deny|"
    r"log|pre|post)$|^(?:filter|nat|mangle|raw|security)_(?:INPUT|FORWARD|OUTPUT|PREROUTING|POSTROUTING)_"
    r"(?:direct|POLICIES)")


def _comment(text: str) -> str:
    m = _COMMENT.search(text or "")
    if not m:
        return ""
    return next(g for g in m.groups() if g is not None)


def label_rule(table: str, chain: str, text: str = "", family: str = "") -> str:
    """Provenance label of one rule ('' when nothing tells)."""
    chain = chain or ""
    table = table or ""
    comment = _comment(text).lower()
    cu = chain.upper()
    if cu.startswith("DOCKER") or comment.startswith("docker"):
        return "docker"
    if cu.startswith("KUBE-") or table == "kube-proxy" or comment.startswith("kubernetes") or "kube" in comment:
        return "kube-proxy"
    if chain.startswith(("ufw-", "ufw6-")) or comment.startswith("ufw") or comment.startswith("'dapp_"):
        return "ufw"
    if table == "firewalld" or _FIREWALLD_CHAIN.search(chain):
        return "firewalld"
    if chain.startswith(("f2b-", "fail2ban-")):
        return "fail2ban"
    if cu.startswith("LIBVIRT_"):
        return "libvirt"
    return ""


def label_rules(rules: list[dict]) -> list[str]:
    """Provenance label for each rule dict of ReplayOutput.rules (table, chain, text)."""
    return [label_rule(r.get("table", ""), r.get("chain", ""), r.get("text", ""), r.get("family", ""))
            for r in rules]


def describe_rule(table: str, chain: str, rule_num: int, provenance: str) -> str:
    """'Docker's rule 2 of filter/DOCKER-ISOLATION-STAGE-2' / 'the policy of filter/FORWARD'."""
    what = f"the policy of {table}/{chain}" if int(rule_num) == 0 else f"rule {int(rule_num)} of {table}/{chain}"
    if provenance:
        who = PROVENANCE_DESCRIPTIONS.get(provenance, provenance)
        return f"{who}'s {what.removeprefix('the ')}"
    return what

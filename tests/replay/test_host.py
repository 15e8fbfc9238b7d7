"""Host model: loading (TOML, oracle JSON, dict), errors, LPM, pins, local addresses, addrtype."""

from __future__ import annotations

import numpy as np
import pytest

from nfreplay.errors import HostModelError
from nfreplay.replay import addr, host


def w(text):
    v, f = addr.to_int(text)
    hi, lo = addr.split(v)
    return f, np.int64(host._s64(hi)), np.int64(host._s64(lo))


TOML = """
ip_forward = true
[[interfaces]]
name = "lan0"
addresses = ["10.0.0.1/24", "fd00::1/64"]
[[interfaces]]
name = "wan0"
addresses = ["198.51.100.1/24"]
mtu = 1400
[[interfaces]]
name = "dmz"
addresses = ["10.0.1.1/24"]
[[routes]]
prefix = "0.0.0.0/0"
interface = "wan0"
via = "198.51.100.254"
[[routes]]
prefix = "10.0.0.0/16"
interface = "lan0"
[sysctls]
"net.netfilter.nf_conntrack_tcp_loose" = 0
[hosts]
"192.0.2.7" = "dmz"
"""


@pytest.fixture(scope="module")
def h(tmp_path_factory):
    p = tmp_path_factory.mktemp("h") / "host.toml"
    p.write_text(TOML)
    return host.load_host(p)


def route(h, t):
    return int(host.route_lookup(h.arrays(), *w(t)))


def test_longest_prefix_and_pins(h):
    n = h.iface_index
    assert route(h, "10.0.0.9") == n("lan0")  # /24 connected beats /16
    assert route(h, "10.0.1.9") == n("dmz")  # /24 connected of dmz beats the /16 via lan0
    assert route(h, "10.0.77.1") == n("lan0")  # only the /16 matches
    assert route(h, "8.8.8.8") == n("wan0")  # default
    assert route(h, "192.0.2.7") == n("dmz")  # pinned
    assert route(h, "192.0.2.8") == n("wan0")
    assert route(h, "fd00::5") == n("lan0")
    assert route(h, "2001:db8::1") == -1  # no IPv6 default route: reported, never guessed
    assert route(h, "127.0.0.1") == n("lo")


def test_local_and_addrtype(h):
    ha = h.arrays()
    assert host.is_local(ha, *w("10.0.0.1")) and host.is_local(ha, *w("127.3.2.1")) and host.is_local(ha, *w("::1"))
    assert not host.is_local(ha, *w("10.0.0.2"))
    at = {t: int(host.addr_type(ha, *w(t), np.int64(-1))) for t in
          ["10.0.0.1", "10.0.0.255", "10.0.0.7", "0.0.0.0", "255.255.255.255", "224.0.0.251", "fd00::1", "ff02::1",
           "::", "2001:db8::1"]}
    B = host.ADDRTYPE_BITS
    assert at == {"10.0.0.1": B["LOCAL"], "10.0.0.255": B["BROADCAST"], "10.0.0.7": B["UNICAST"],
                  "0.0.0.0": B["BROADCAST"], "255.255.255.255": B["BROADCAST"], "224.0.0.251": B["MULTICAST"],
                  "fd00::1": B["UNICAST"] | B["LOCAL"], "ff02::1": B["MULTICAST"], "::": B["UNSPEC"],
                  "2001:db8::1": B["UNICAST"]}
    # --limit-iface: a local address of another device is UNICAST there
    assert int(host.addr_type(ha, *w("10.0.0.1"), np.int64(h.iface_index("wan0")))) == B["UNICAST"]


def test_primary_and_masquerade_address(h):
    ha = h.arrays()
    hi, lo, ok = host.primary_addr(ha, h.iface_index("lan0"), 4)
    assert ok and addr.to_text(int(hi) & host._M64, int(lo) & host._M64, 4) == "10.0.0.1"
    hi, lo, ok = host.primary_addr(ha, h.iface_index("lan0"), 6)
    assert ok and addr.to_text(int(hi) & host._M64, int(lo) & host._M64, 6) == "fd00::1"
    assert not host.primary_addr(ha, h.iface_index("dmz"), 6)[2]
    assert h.interfaces[h.iface_index("wan0")].mtu == 1400
    assert h.sysctl("net.netfilter.nf_conntrack_tcp_loose") == 0 and h.ip_forward and h.ip6_forward


def test_oracle_topology_json(shared_dir):
    p = shared_dir / "tools" / "kernel-oracle" / "scenarios" / "01_stateful_forward" / "topology.json"
    h = host.load_host(p)
    assert h.iface_names[:2] == ["lan0", "wan0"] and "lo" in h.iface_names
    assert route(h, "93.184.216.34") == h.iface_index("wan0")
    assert "lan0" in h.describe()


def test_default_model_and_local():
    h = host.load_host(None)
    assert h.is_default and h.iface_names[:2] == ["inside", "outside"]
    for t, want in [("10.1.2.3", "inside"), ("172.31.0.1", "inside"), ("172.32.0.1", "outside"),
                    ("192.168.9.9", "inside"), ("169.254.1.1", "inside"), ("fd12::1", "inside"),
                    ("fe80::1", "inside"), ("2001:db8::1", "outside"), ("8.8.8.8", "outside"), ("100.64.0.1", "outside")]:
        assert h.iface_names[route(h, t)] == want, t
    assert not any(host.is_local(h.arrays(), *w(t)) for t in ("10.1.2.3", "127.0.0.1", "8.8.8.8"))
    h2 = host.load_host(None, local=["192.168.1.5", "2001:db8::5"])
    assert host.is_local(h2.arrays(), *w("192.168.1.5")) and host.is_local(h2.arrays(), *w("2001:db8::5"))
    assert not host.is_local(h2.arrays(), *w("192.168.1.6"))
    assert "default host model" in h.describe()


@pytest.mark.parametrize("data,msg", [
    ({"interfaces": [{"name": "a", "addresses": ["10.0.0.300/24"]}]}, "interfaces[0].addresses: bad address"),
    ({"interfaces": [{"name": "a"}], "routes": [{"prefix": "0.0.0.0/0", "interface": "b"}]},
     "routes[0].interface: unknown interface 'b'"),
    ({"interfaces": [{"name": "a"}], "hosts": {"192.0.2.1": "zz"}}, "hosts.192.0.2.1: unknown interface"),
    ({"sysctls": {"net.netfilter.nf_conntrack_bogus": 1}}, "sysctls.net.netfilter.nf_conntrack_bogus: unknown sysctl"),
    ({"interfacez": []}, "interfacez: unknown key"),
    ({"interfaces": [{"name": "a"}, {"name": "a"}]}, "duplicate interface"),
])
def test_errors_name_the_key(data, msg):
    with pytest.raises(HostModelError, match=msg.replace("[", r"\[").replace("]", r"\]").replace(".", r"\.")):
        host.load_host(data)


def test_bad_toml_names_file(tmp_path):
    p = tmp_path / "bad.toml"
    p.write_text("[[interfaces]\nname=")
    with pytest.raises(HostModelError, match="bad.toml: bad TOML"):
        host.load_host(p)
    with pytest.raises(HostModelError, match="cannot read"):
        host.load_host(tmp_path / "missing.toml")

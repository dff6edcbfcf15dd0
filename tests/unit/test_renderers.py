"""Tier two: pure renderers against golden files (pytest --update-golden rewrites them; review the diff)."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import yaml
from lxml import etree

from config.topology import plan_nodes
from render.cloudinit import render_meta_data, render_network_config, render_user_data
from render.common import RenderedFile, content_hash, key_values
from render.domain_xslt import DomainTuning, render_domain_xslt
from render.grafana import dcgm_counters_file, grafana_files
from render.monitoring import (
    ALERTMANAGER_YML,
    PROMETHEUS_YML,
    RULES_FILE,
    dcgm_targets,
    node_targets,
    render_alertmanager_yml,
    render_prometheus_yml,
    render_rules,
)
from render.names import render_hosts_file
from render.network_xslt import render_network_xslt
from render.placement import plan_placement
from tests.stacks import STACKS, fixed_host_key, loaded


@pytest.mark.parametrize("stack", STACKS)
def test_node_documents_match_golden(stack: str, golden: Callable[[str, str], None]) -> None:
    spec = loaded(stack).spec
    nodes = plan_nodes(spec)
    tunings = plan_placement(spec)
    for node in nodes:
        host = spec.host(node.host)
        assert host is not None
        golden(f"{stack}/{node.name}/user-data", render_user_data(spec, node, fixed_host_key(node.name)))
        golden(f"{stack}/{node.name}/meta-data", render_meta_data(spec, node))
        golden(f"{stack}/{node.name}/network-config", render_network_config(spec, node))
        golden(f"{stack}/{node.name}/domain.xslt", render_domain_xslt(tunings[node.name]))


def test_renderers_are_deterministic() -> None:
    spec = loaded("cluster").spec
    nodes = plan_nodes(spec)
    first = [render_user_data(spec, n, fixed_host_key(n.name)) for n in nodes]
    again = [render_user_data(spec, n, fixed_host_key(n.name)) for n in plan_nodes(spec)]
    assert first == again


def test_user_data_has_keys_and_no_passwords() -> None:
    spec = loaded("dev").spec
    nodes = plan_nodes(spec)
    doc = yaml.safe_load(render_user_data(spec, nodes[0], fixed_host_key(nodes[0].name)))
    assert doc["ssh_pwauth"] is False
    user = doc["users"][0]
    assert user["name"] == spec.ssh.user and user["lock_passwd"] is True
    assert user["ssh_authorized_keys"] == list(spec.ssh.public_keys)
    first_boot = next(f for f in doc["write_files"] if f["path"] == "/etc/hosts")["content"]
    assert f"{nodes[0].mgmt_ip}\tcontroller.hpc\tcontroller" in first_boot
    assert nodes[1].name not in first_boot  # other nodes come from DNS (render/names.py)
    hosts = render_hosts_file(spec, nodes)
    for node in nodes:
        assert f"{node.mgmt_ip}\t{node.name}.hpc\t{node.name}" in hosts
        assert f"{node.ic_ip}\t{node.ic_name}.hpc\t{node.ic_name}" in hosts


def test_network_config_pins_interfaces_by_mac() -> None:
    spec = loaded("dev").spec
    node = plan_nodes(spec)[0]
    doc = yaml.safe_load(render_network_config(spec, node))
    mgmt, ic = doc["ethernets"]["mgmt0"], doc["ethernets"]["hpc0"]
    assert mgmt["match"]["macaddress"] == node.mgmt_mac and mgmt["addresses"] == [f"{node.mgmt_ip}/24"]
    assert mgmt["routes"] == [{"to": "0.0.0.0/0", "via": "10.77.0.1"}]  # cloud-init 22.4 rejects "default"
    assert ic["mtu"] == 9000 and "routes" not in ic


def test_domain_xslt_is_well_formed_and_sets_topology() -> None:
    xslt = render_domain_xslt(DomainTuning(sockets=2, cores=3, threads=2))
    transform = etree.XSLT(etree.fromstring(xslt.encode()))
    base = etree.fromstring(
        b"<domain type='kvm'><name>n</name><cpu mode='host-passthrough'>"
        b"<topology sockets='9' cores='9' threads='9'/></cpu><devices/></domain>"
    )
    out = transform(base)
    topo = out.getroot().findall("cpu/topology")
    assert len(topo) == 1 and dict(topo[0].attrib) == {"sockets": "2", "dies": "1", "cores": "3", "threads": "2"}
    # Applying it twice changes nothing: the provider may re-apply it on every update.
    again = transform(out.getroot())
    assert etree.tostring(again, method="c14n") == etree.tostring(out, method="c14n")


def test_domain_xslt_adds_cpu_when_missing() -> None:
    transform = etree.XSLT(etree.fromstring(render_domain_xslt(DomainTuning(1, 4, 1)).encode()))
    out = transform(etree.fromstring(b"<domain type='kvm'><name>n</name></domain>"))
    assert out.getroot().find("cpu/topology").get("cores") == "4"


def test_network_xslt_narrows_dhcp() -> None:
    transform = etree.XSLT(etree.fromstring(render_network_xslt("10.0.0.200", "10.0.0.250").encode()))
    base = etree.fromstring(
        b"<network><name>m</name><ip address='10.0.0.1' prefix='24'><dhcp>"
        b"<range start='10.0.0.2' end='10.0.0.254'/></dhcp></ip></network>"
    )
    rng = transform(base).getroot().find("ip/dhcp/range")
    assert (rng.get("start"), rng.get("end")) == ("10.0.0.200", "10.0.0.250")


def test_key_values_formats_scalars() -> None:
    assert key_values({"A": True, "B": [1, 2], "C": None, "D": "x"}) == "A=yes\nB=1,2\nD=x"
    assert key_values([("X", 1), ("Y", False)], joiner=" ") == "X=1 Y=no"


def test_content_hash_separates_fields() -> None:
    assert content_hash("ab", "c") != content_hash("a", "bc")
    assert content_hash("x") == content_hash("x")


@pytest.mark.parametrize("stack", [s for s in STACKS if loaded(s).spec.monitoring.enabled])
def test_monitoring_files_match_golden(stack: str, golden: Callable[[str, str], None]) -> None:
    """Every monitoring file the controller and GPU nodes get, dashboards included (grafana-foundation-sdk
    output: review a diff after upgrading it)."""
    spec = loaded(stack).spec
    nodes = plan_nodes(spec)
    files = [
        RenderedFile(PROMETHEUS_YML, render_prometheus_yml(spec)),
        RenderedFile(RULES_FILE, render_rules(spec)),
        RenderedFile(ALERTMANAGER_YML, render_alertmanager_yml(spec)),
        *grafana_files(spec),
        dcgm_counters_file(),
        *(t for n in nodes for t in (node_targets(n), dcgm_targets(n)) if t is not None),
    ]
    for file in files:
        golden(f"{stack}/monitoring{file.path}", file.content)

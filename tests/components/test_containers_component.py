"""Containers under mocks: a docker Provider per Docker node reaching its engine over SSH with that node's
pinned host key, pinned images, the registry key a secret end to end, what waits for what, and that
changing container settings touches no VM."""

from __future__ import annotations

import shlex
import subprocess

import pytest

from components.provider_facts import for_type
from config.models import ClusterSpec
from config.presets import apply_preset
from config.types import pinned_image
from hyperscaler.mocks import Registration, contains_secret
from render.access import SshRoute
from render.containers import docker_ssh_opts
from tests.components.cluster_run import run_cluster

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEWwoQJm5BAL1DlfU575U2gWJDQ8/y+UHR9nMWDIG8eR test"
COMMAND = "command:remote:Command"
PROVIDER = "pulumi:providers:docker"


def spec_with(**overrides: object) -> ClusterSpec:
    raw = {
        "preset": "workstation",
        "name": "ws",
        "ssh": {"public_keys": [KEY]},
        "compute": [
            {"name": "gpu", "count": 2, "vcpus": 4, "memory_mib": 16384, "gpus_per_node": 1, "disk_gib": 20},
            {"name": "cpu", "count": 1, "vcpus": 2, "memory_mib": 4096, "disk_gib": 20},
        ],
        **overrides,
    }
    return ClusterSpec.model_validate(apply_preset(raw))


def run(spec: ClusterSpec) -> dict[str, Registration]:
    return run_cluster(spec)


@pytest.fixture(scope="module")
def records() -> dict[str, Registration]:
    return run(spec_with())


def host_keys(records: dict[str, Registration]) -> dict[str, str]:
    """node address -> the host key its Commands pin (the one its cloud-init gives it)."""
    return {
        str(r.plain_inputs["connection"]["host"]): str(r.plain_inputs["connection"]["hostKey"])
        for r in records.values()
        if r.type == COMMAND
    }


def test_a_provider_per_docker_node_over_ssh_with_the_pinned_host_key(records: dict[str, Registration]) -> None:
    providers = {n: r for n, r in records.items() if r.type == PROVIDER}
    # the controller and both GPU nodes (DCGM exporter); the CPU node has no Docker (docker.compute false)
    assert sorted(providers) == ["ws-containers-controller-engine", "ws-containers-gpu-01-engine",
                                 "ws-containers-gpu-02-engine"]  # fmt: skip
    pinned = host_keys(records)
    for rec in providers.values():
        inputs = rec.plain_inputs
        host = inputs["host"].removeprefix("ssh://hpcadmin@")
        assert inputs["host"] == f"ssh://hpcadmin@{host}"
        opts = inputs["sshOpts"]
        assert "StrictHostKeyChecking=yes" in opts and "UserKnownHostsFile=/dev/null" in opts
        assert f"KnownHostsCommand=/bin/echo {host} {pinned[host]}" in opts
        # the provider waits for the node's docker step: the engine exists before it is dialled
        assert any(d.endswith("-docker") for d in rec.depends_on)


def test_ssh_opts_make_ssh_refuse_any_other_key(tmp_path: object) -> None:
    """The options as ssh parses them (ssh -G prints the resolved configuration without connecting)."""
    opts = docker_ssh_opts(SshRoute("10.0.0.5", "admin"), KEY)
    out = subprocess.run(["ssh", "-G", *opts, "admin@10.0.0.5"], capture_output=True, text=True, check=True).stdout
    config = dict(line.split(" ", 1) for line in out.splitlines() if " " in line)
    assert config["stricthostkeychecking"] == "true"
    assert config["userknownhostsfile"] == "/dev/null"
    assert config["knownhostscommand"] == f"/bin/echo 10.0.0.5 {' '.join(KEY.split()[:2])}"


def test_a_jump_host_is_pinned_too() -> None:
    jump_key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEWwoQJm5BAL1DlfU575U2gWJDQ8/y+UHR9nMWDIG8eR hv"
    opts = docker_ssh_opts(SshRoute("192.168.122.10", "admin", "root@hv2", jump_key), KEY)
    proxy = next(o for o in opts if o.startswith("ProxyCommand="))
    argv = shlex.split(proxy.removeprefix("ProxyCommand="))
    assert (
        "StrictHostKeyChecking=yes" in argv
        and f"KnownHostsCommand=/bin/echo hv2 {' '.join(jump_key.split()[:2])}" in argv
    )
    assert argv[-3:] == ["-W", "%h:%p", "hv2"]
    with pytest.raises(ValueError, match="no host key"):
        docker_ssh_opts(SshRoute("192.168.122.10", "admin", "root@hv2", None), KEY)


def test_images_are_pinned_and_pulled_through_the_node_provider(records: dict[str, Registration]) -> None:
    images = {n: r for n, r in records.items() if r.type == "docker:index/remoteImage:RemoteImage"}
    assert len(images) == 3
    providers = {r.urn: n for n, r in records.items() if r.type == PROVIDER}
    for name, rec in images.items():
        pinned_image(rec.plain_inputs["name"])  # raises for a moving tag
        node = name.removeprefix("ws-containers-").split("-grafana")[0].split("-dcgm")[0]
        assert providers[rec.provider.rsplit("::", 1)[0]] == f"ws-containers-{node}-engine"
    with pytest.raises(ValueError, match="not pinned"):
        pinned_image("docker.io/grafana/grafana-oss:latest")
    with pytest.raises(ValueError, match="not pinned"):
        pinned_image("grafana/grafana-oss")
    pinned_image("registry.example.com:5000/team/app@sha256:" + "a" * 64)


def test_monitoring_containers(records: dict[str, Registration]) -> None:
    grafana = records["ws-containers-controller-grafana"].plain_inputs
    assert grafana["networkMode"] == "host" and grafana["user"] == "472:472"
    assert not any("PASSWORD=" in e for e in grafana["envs"])  # the password is a mounted file
    assert "GF_SECURITY_ADMIN_PASSWORD__FILE=/run/secrets/grafana-admin-password" in grafana["envs"]
    dcgm = records["ws-containers-gpu-01-dcgm-exporter"].plain_inputs
    assert dcgm["runtime"] == "nvidia" and "NVIDIA_VISIBLE_DEVICES=nvidia.com/gpu=all" in dcgm["envs"]
    assert dcgm["capabilities"] == {"adds": ["SYS_ADMIN"]}
    # Grafana waits for its files; the DCGM exporter for its counters
    deps = set(records["ws-containers-controller-grafana"].depends_on)
    files = {r.urn for n, r in records.items() if n.startswith("ws-monitoring-controller-etc-hyperscaler-grafana")}
    assert files and files <= deps


def test_registry_key_is_secret_and_certificate_is_trusted_everywhere(records: dict[str, Registration]) -> None:
    key = records["ws-containers-controller-etc-docker-registry-hyperscaler-key"]
    assert contains_secret(key.inputs["stdin"]) and contains_secret(key.inputs["triggers"])
    assert "BEGIN PRIVATE KEY" in key.plain_inputs["stdin"]
    cert = records["ws-containers-controller-etc-docker-registry-hyperscaler-crt"].plain_inputs["stdin"]
    assert "BEGIN CERTIFICATE" in cert
    for node in ("controller", "gpu-01", "gpu-02", "cpu-01"):
        ca = records[f"ws-containers-{node}-usr-local-share-ca-certificates-hyperscaler-registry-crt"]
        assert ca.plain_inputs["stdin"] == cert
    for node in ("controller", "gpu-01", "gpu-02"):
        ca = records[f"ws-containers-{node}-etc-docker-certs-d-10-77-0-10-5000-ca-crt"]
        assert ca.plain_inputs["stdin"] == cert
    # nothing trusts the registry by insecure-registries
    for name, rec in records.items():
        if name.endswith("-etc-hyperscaler-docker-daemon-json"):
            assert "insecure" not in rec.plain_inputs["stdin"]


def test_toolkit_after_mig_and_before_docker(records: dict[str, Registration]) -> None:
    toolkit = records["ws-containers-gpu-01-nvidia-toolkit"]
    assert records["ws-slurm-gpu-01-mig"].urn in toolkit.depends_on
    assert toolkit.urn in records["ws-containers-gpu-01-docker"].depends_on
    assert "ws-containers-cpu-01-nvidia-toolkit" not in records


def test_changing_container_settings_touches_no_vm(records: dict[str, Registration]) -> None:
    changed = run(spec_with(containers={"enabled": True, "docker": {"compute": True, "registry_mirrors":
                                        ["https://mirror.example.com"]}, "registry": {"port": 5443}}))  # fmt: skip
    differ = {n for n, r in changed.items() if n in records and records[n].plain_inputs != r.plain_inputs}
    kinds = {changed[n].type for n in differ}
    assert kinds <= {COMMAND, PROVIDER}, kinds
    assert "ws-containers-cpu-01-docker" in changed and "ws-containers-cpu-01-engine" in changed
    for name in differ:
        assert not changed[name].type.startswith("libvirt:"), name
    assert for_type("docker:index/container:Container") is not None

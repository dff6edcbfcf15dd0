"""Tier one: the schema. Types, defaults, presets and the impact metadata."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from config.impact import Impact, field_impacts
from config.models import ClusterSpec, ComputeGroup, Host, ManagementNetwork
from config.presets import PRESETS, apply_preset, deep_merge
from config.types import format_cpuset, parse_cpuset

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEWwoQJm5BAL1DlfU575U2gWJDQ8/y+UHR9nMWDIG8eR test"


def minimal(**extra: object) -> dict[str, object]:
    return {
        "name": "t",
        "hosts": [{"name": "h1", "cpu": {"cores_per_socket": 8}, "memory_mib": 32768}],
        "ssh": {"public_keys": [KEY]},
        **extra,
    }


def test_minimal_spec_fills_defaults() -> None:
    spec = ClusterSpec.model_validate(minimal())
    assert spec.networks.interconnect.mtu == 9000
    assert spec.hosts[0].numa_nodes[0].cpus == "0-7"
    assert spec.controller.name == "controller"
    assert spec.storage is not None and spec.storage.data_disks_gib == [50]


def test_models_are_frozen_and_strict() -> None:
    spec = ClusterSpec.model_validate(minimal())
    with pytest.raises(ValidationError):
        spec.name = "other"  # type: ignore[misc]
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        ClusterSpec.model_validate(minimal(colour="blue"))


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("name", "Bad_Name", "not a valid hostname"),
        ("name", "-x", "not a valid hostname"),
    ],
)
def test_hostname_type(field: str, value: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        ClusterSpec.model_validate(minimal(**{field: value}))


def test_pci_address_accepts_short_form_and_rejects_garbage() -> None:
    host = Host.model_validate(
        {
            "name": "h",
            "cpu": {"cores_per_socket": 2},
            "memory_mib": 1024,
            "gpus": [{"address": "41:00.0", "model": "h100-80gb", "iommu_group": 1}],
        }
    )
    assert host.gpus[0].address == "0000:41:00.0"
    with pytest.raises(ValidationError, match="not a PCI address"):
        Host.model_validate(
            {
                "name": "h",
                "cpu": {"cores_per_socket": 2},
                "memory_mib": 1024,
                "gpus": [{"address": "41:00", "model": "x", "iommu_group": 1}],
            }
        )


def test_cidr_must_be_a_network_address() -> None:
    with pytest.raises(ValidationError, match="CIDR"):
        ManagementNetwork(cidr="10.0.0.5/24")
    with pytest.raises(ValidationError, match="too small"):
        ManagementNetwork(cidr="10.0.0.0/30")


def test_bridge_mode_needs_a_bridge_name() -> None:
    with pytest.raises(ValidationError, match="needs 'bridge'"):
        ManagementNetwork(mode="bridge")


def test_default_dhcp_range_is_the_last_quarter() -> None:
    rng = ManagementNetwork(cidr="10.1.0.0/24").dhcp_range
    assert (rng.start, rng.end) == ("10.1.0.192", "10.1.0.254")


def test_sizes_must_be_positive() -> None:
    with pytest.raises(ValidationError, match="greater than 0"):
        ComputeGroup(name="c", count=1, vcpus=0, memory_mib=1024)
    with pytest.raises(ValidationError, match="greater than 0"):
        ComputeGroup(name="c", count=1, vcpus=1, memory_mib=-5)


def test_topology_must_match_vcpus() -> None:
    with pytest.raises(ValidationError, match="make them equal"):
        ComputeGroup(name="c", count=1, vcpus=8, memory_mib=1024, topology={"sockets": 1, "cores": 3, "threads": 2})


def test_explicit_gpu_list_length_is_checked() -> None:
    with pytest.raises(ValidationError, match="count x gpus_per_node"):
        ComputeGroup(name="g", count=2, vcpus=2, memory_mib=1024, gpus_per_node=1, gpus=["0000:41:00.0"])


def test_ssh_key_must_be_public() -> None:
    with pytest.raises(ValidationError, match="this is a private key"):
        ClusterSpec.model_validate(minimal(ssh={"public_keys": ["-----BEGIN OPENSSH PRIVATE KEY-----"]}))
    with pytest.raises(ValidationError, match="not an OpenSSH public key"):
        ClusterSpec.model_validate(
            minimal(ssh={"public_keys": ["AAAAC3NzaC1lZDI1NTE5AAAAIEWwoQJm5BAL1DlfU575U2gWJDQ8"]})
        )


@pytest.mark.parametrize("text", ["0-3,8,10-11", "5", "0-0", "1,3,5"])
def test_cpuset_round_trip(text: str) -> None:
    assert parse_cpuset(format_cpuset(parse_cpuset(text))) == parse_cpuset(text)


def test_cpuset_rejects_descending_range() -> None:
    with pytest.raises(ValueError, match="descending"):
        parse_cpuset("5-3")


def test_presets_merge_mappings_and_replace_lists() -> None:
    merged = deep_merge({"a": {"b": 1, "c": 2}, "l": [1, 2]}, {"a": {"c": 3}, "l": [9]})
    assert merged == {"a": {"b": 1, "c": 3}, "l": [9]}
    raw = apply_preset({"preset": "dev", "name": "x", "controller": {"vcpus": 4}})
    assert raw["controller"]["vcpus"] == 4
    assert raw["controller"]["memory_mib"] == PRESETS["dev"]["controller"]["memory_mib"]


def test_dev_preset_fits_in_16_gib() -> None:
    spec = ClusterSpec.model_validate(apply_preset(minimal(preset="dev")))
    total = spec.controller.memory_mib + sum(g.memory_mib * g.count for g in spec.compute)
    assert spec.storage is not None
    total += spec.storage.memory_mib * spec.storage.count
    assert total <= 16 * 1024
    assert sum(g.count for g in spec.compute) == 2 and spec.storage.count == 1
    assert all(g.gpus_per_node == 0 for g in spec.compute)


def test_every_field_declares_its_impact() -> None:
    impacts = field_impacts(ClusterSpec)
    missing = [path for path, (impact, _) in impacts.items() if impact is None]
    assert not missing, f"fields without an Impact: {missing}"
    assert impacts["slurm.partitions"][0] is Impact.RECONFIGURE
    assert impacts["compute[].vcpus"][0] is Impact.REPLACE_VM
    assert impacts["storage.data_disks_gib"][0] is Impact.DATA_AT_RISK
    assert all(doc for _, doc in impacts.values())

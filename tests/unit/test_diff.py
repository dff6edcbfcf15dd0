"""`hyperscaler diff`: field impacts and resource actions of a stack change, from two offline plans."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from config.impact import Impact
from hyperscaler.cli import main
from hyperscaler.diff import diff_report, resource_changes
from hyperscaler.plan import run_plan
from tests.stacks import ROOT


def variant(tmp: Path, name: str, **overrides: object) -> Path:
    doc = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    doc["config"]["hyperscaler:cluster"].update(overrides)
    path = tmp / name / "Pulumi.dev.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(doc))
    return path


def changes(old: Path, new: Path) -> dict[str, str]:
    return {c.name: c.action for c in resource_changes(run_plan(old).records, run_plan(new).records)}


def test_partition_change_touches_only_commands(tmp_path: Path) -> None:
    old = variant(tmp_path, "a")
    new = variant(tmp_path, "b", slurm={"partitions": [{"name": "batch", "default": True}]})
    diff = changes(old, new)
    assert diff and all(name.startswith("dev-slurm-") for name in diff), diff
    report, worst = diff_report(old, new)
    assert worst is Impact.RECONFIGURE and "no VM is replaced" in report


def test_adding_a_node_leaves_the_other_vms_alone(tmp_path: Path) -> None:
    old = variant(tmp_path, "a")
    new = variant(tmp_path, "b", compute=[{"name": "cpu", "count": 3, "vcpus": 2, "memory_mib": 4096}])
    diff = changes(old, new)
    vms = {n: a for n, a in diff.items() if not n.startswith(("dev-slurm-", "dev-packages-", "dev-storage-"))}
    # cloud-init carries only node-local identity, so the existing nodes' disks and domains stay; the
    # network's DNS gets the new names in place
    assert vms == {
        "dev-cpu-03-host-key": "create",
        "dev-cpu-03-disk": "create",
        "dev-cpu-03-cloudinit": "create",
        "dev-cpu-03-domain": "create",
        "dev-ws1-net-mgmt": "update",
    }
    # Commands: the new node's own, and the controller's; nothing on the nodes that were there
    commands = {n: a for n, a in diff.items() if n not in vms}
    assert all("-cpu-03" in n or "-controller-" in n for n in commands), commands
    assert {a for n, a in commands.items() if "-cpu-03" in n and "member" not in n} == {"create"}


def test_resizing_replaces_the_vm_and_flags_protected_data(tmp_path: Path) -> None:
    old = variant(tmp_path, "a")
    new = variant(tmp_path, "b", controller={"memory_mib": 4096, "state_disk_gib": 8})
    diff = resource_changes(run_plan(old).records, run_plan(new).records)
    by_name = {c.name: c for c in diff}
    assert by_name["dev-controller-domain"].action == "replace"
    state = by_name["dev-controller-state"]
    assert state.action == "replace" and state.protected
    report, worst = diff_report(old, new)
    assert worst is Impact.DATA_AT_RISK and "protected: Pulumi will refuse" in report


def test_cli_diff_against_a_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    old = variant(tmp_path, "a")
    new = variant(tmp_path, "b", controller={"vcpus": 3})
    assert main(["diff", "--file", str(new), "--against", str(old)]) == 0
    out = capsys.readouterr().out
    assert "replace-vm    controller.vcpus: 2 -> 3" in out and "replace  libvirt:index/domain:Domain" in out


def test_field_view_tells_create_remove_and_replace_apart(tmp_path: Path) -> None:
    """A count that grows creates nodes, one that shrinks drains and removes them, a new group is one
    line: none of them says replace-vm. A resize still does."""
    old = variant(tmp_path, "a")
    grown = variant(tmp_path, "b", compute=[{"name": "cpu", "count": 3, "vcpus": 2, "memory_mib": 4096}])
    report, worst = diff_report(old, grown)
    assert "scale         compute[0].count: 2 -> 3: creates cpu-03" in report, report
    assert "replace-vm" not in report and worst is Impact.SCALE
    report, _ = diff_report(grown, old)
    assert "compute[0].count: 3 -> 2: drains cpu-03, then removes them" in report, report
    two_groups = variant(
        tmp_path,
        "c",
        compute=[
            {"name": "cpu", "count": 2, "vcpus": 2, "memory_mib": 4096},
            {"name": "big", "count": 1, "vcpus": 2, "memory_mib": 4096},
        ],
    )
    report, _ = diff_report(old, two_groups)
    assert "scale         compute[1]: added: creates big-01" in report, report
    assert "compute[1].name" not in report  # one line for the new group, not one per field
    resized = variant(tmp_path, "d", compute=[{"name": "cpu", "count": 2, "vcpus": 3, "memory_mib": 4096}])
    report, worst = diff_report(old, resized)
    assert "replace-vm    compute[0].vcpus: 2 -> 3" in report and worst is Impact.REPLACE_VM


def test_switching_on_metadata_mirroring_is_marked_irreversible(tmp_path: Path) -> None:
    def stack(name: str, mirror: bool) -> Path:
        doc = yaml.safe_load((ROOT / "Pulumi.workstation.yaml").read_text())
        storage = {"count": 2, "data_disks_gib": [100], "beegfs": {"mirror_metadata": mirror}}
        doc["config"]["hyperscaler:cluster"]["storage"] = storage
        path = tmp_path / name / "Pulumi.workstation.yaml"
        path.parent.mkdir()
        path.write_text(yaml.safe_dump(doc))
        return path

    off, on = stack("off", False), stack("on", True)
    report, worst = diff_report(off, on)
    assert "reconfigure   storage.beegfs.mirror_metadata: False -> True" in report, report
    assert "IRREVERSIBLE: once on, it cannot be switched off again (storage.beegfs.mirror_metadata)" in report
    assert worst is Impact.RECONFIGURE and "no VM is replaced" in report
    back, _ = diff_report(on, off)
    assert "IRREVERSIBLE" not in back
    assert "NOT APPLIED: storage.beegfs.mirror_metadata cannot be switched off" in back


def test_a_mig_layout_change_says_what_happens_on_the_nodes(tmp_path: Path) -> None:
    doc = yaml.safe_load((ROOT / "Pulumi.workstation.yaml").read_text())
    old = tmp_path / "a" / "Pulumi.workstation.yaml"
    old.parent.mkdir()
    old.write_text(yaml.safe_dump(doc))
    doc["config"]["hyperscaler:cluster"]["mig"] = {"layouts": [{"group": "gpu", "profiles": {"1g.10gb": 7}}]}
    new = tmp_path / "b" / "Pulumi.workstation.yaml"
    new.parent.mkdir()
    new.write_text(yaml.safe_dump(doc))
    report, worst = diff_report(old, new)
    assert worst is Impact.RESTART
    assert "MIG (on the nodes, in this order):" in report
    assert (
        "gpu-01, gpu-02: drained (its jobs are waited for, up to slurm.drain_timeout_s); from NVIDIA H100 80GB as "
        "1 x 3g.40gb, 1 x 2g.20gb, 2 x 1g.10gb per GPU to NVIDIA H100 80GB as 7 x 1g.10gb per GPU; slurmd restarts "
        "with the new devices and the node returns to service; no reboot"
    ) in report
    assert "no VM is replaced" in report
    diff = changes(old, new)
    assert not any(t for t in diff if "domain" in t or "disk" in t or "cloudinit" in t), diff
    assert diff.get("workstation-slurm-gpu-01-mig") == "replace"


def test_an_ampere_mode_change_says_the_vm_reboots() -> None:
    from config import StackInputs, build_spec
    from config.mig import mig_effects

    key = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEWwoQJm5BAL1DlfU575U2gWJDQ8/y+UHR9nMWDIG8eR t"
    raw = {"preset": "cluster", "name": "c", "ssh": {"public_keys": [key]}}
    before = build_spec(StackInputs("a", raw)).spec
    after = build_spec(
        StackInputs("b", {**raw, "mig": {"layouts": [{"group": "gpu", "profiles": {"1g.10gb": 7}}]}})
    ).spec
    effects = mig_effects(before, after)
    assert effects[0].startswith("gpu-01, gpu-02, gpu-03, gpu-04: drained")
    assert (
        "the MIG mode changes and this GPU needs a reset, which passthrough does not allow: the VM reboots once"
        in (effects[0])
    )

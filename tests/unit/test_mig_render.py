"""What MIG puts on a node: golden mig-parted configs and units, mig-parted's own format rules, and the
scale rule (a node's MIG files and steps never depend on other nodes)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
import yaml

from config import StackInputs, build_spec
from config.catalog import CATALOG, mig_models
from config.mig import node_mig
from config.models import ClusterSpec
from config.topology import plan_nodes
from render.mig import GRES_SCRIPT, MIG_CONFIG, render_mig_parted_config
from render.remote import SCRIPTS_DIR
from render.slurm import GRES_NODE_FILE, render_gres_conf, render_slurm_conf
from render.slurm_deploy import NodeSlurm, slurm_plan
from tests.stacks import loaded

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEWwoQJm5BAL1DlfU575U2gWJDQ8/y+UHR9nMWDIG8eR test"
# mig-parted's profile names (pkg/types: a GI profile, optionally with a CI part and attributes).
PROFILE_RE = re.compile(r"^([0-9]+c\.)?[0-9]+g\.[0-9]+gb(\+me|\+me\.all|\+gfx|-me)?$")


def assert_mig_parted_v1(text: str) -> dict[str, Any]:
    """The rules mig-parted's api/spec/v1 applies when it reads a config (spec.go: version v1; only
    version and mig-configs; each config a non-empty list; each entry devices ("all" or indexes) and
    mig-enabled required, device-filter a string or strings, mig-devices required when enabled and empty
    when not, counts non-negative integers of well-formed profile names)."""
    doc = yaml.safe_load(text)
    assert set(doc) == {"version", "mig-configs"} and doc["version"] == "v1"
    assert doc["mig-configs"]
    for entries in doc["mig-configs"].values():
        assert isinstance(entries, list) and entries
        for entry in entries:
            assert set(entry) <= {"device-filter", "devices", "mig-enabled", "mig-devices"}, entry
            assert entry["devices"] == "all" or all(isinstance(i, int) for i in entry["devices"])
            assert isinstance(entry["mig-enabled"], bool)
            flt = entry.get("device-filter")
            assert flt is None or isinstance(flt, str) or all(isinstance(f, str) for f in flt)
            if entry["mig-enabled"]:
                assert isinstance(entry["mig-devices"], dict)
                for name, count in entry["mig-devices"].items():
                    assert PROFILE_RE.match(name) and isinstance(count, int) and count >= 0, (name, count)
            else:
                assert not entry.get("mig-devices")
    return doc


def spec_with(
    gpus: list[tuple[str, str]], count: int, layout: dict[str, int] | None, per_node: int = 1, **mig: Any
) -> ClusterSpec:
    host = {
        "name": "ws1",
        "cpu": {"cores_per_socket": 16, "threads_per_core": 2},
        "memory_mib": 131072,
        "gpus": [{"address": f"0000:{bus}:00.0", "model": model, "iommu_group": int(bus, 16)} for bus, model in gpus],
    }
    raw: dict[str, Any] = {
        "preset": "dev",
        "name": "mig",
        "ssh": {"public_keys": [KEY]},
        "hosts": [host],
        "compute": [{"name": "gpu", "count": count, "vcpus": 2, "memory_mib": 8192, "gpus_per_node": per_node}],
    }
    if layout is not None:
        raw["mig"] = {"layouts": [{"group": "gpu", "profiles": layout}], **mig}
    return build_spec(StackInputs("Pulumi.test.yaml", raw)).spec


def node_plan(spec: ClusterSpec, name: str) -> NodeSlurm:
    return next(p for p in slurm_plan(spec, plan_nodes(spec)) if p.node.name == name)


def test_workstation_mig_files_match_golden(golden: Callable[[str, str], None]) -> None:
    spec = loaded("workstation").spec
    plan = node_plan(spec, "gpu-01")
    by_path = {f.path: f.content for f in plan.files}
    for path, content in sorted(by_path.items()):
        if path.endswith(".sh"):
            continue  # scripts: static bodies plus parameters, checked by shellcheck and on the harness
        golden(f"workstation/gpu-01/mig/{path.rsplit('/', 1)[-1]}", content)
    doc = assert_mig_parted_v1(by_path[MIG_CONFIG])
    entry = doc["mig-configs"]["hyperscaler"][0]
    assert entry["device-filter"] == ["0x233010DE", "0x233110DE", "0x232210DE", "0x232410DE"]
    assert entry["mig-devices"] == {"3g.40gb": 1, "2g.20gb": 1, "1g.10gb": 2}
    gres = next(f.content for f in plan.files if f.path == GRES_SCRIPT)
    assert "readonly DECLARED='1g.10gb:2 2g.20gb:1 3g.40gb:1'" in gres


@pytest.mark.parametrize("model", [m.name for m in mig_models()])
def test_every_mig_gpu_gets_a_config_mig_parted_accepts(model: str, golden: Callable[[str, str], None]) -> None:
    geometry = CATALOG[model].mig
    assert geometry is not None
    first = geometry.profiles[0].name
    spec = spec_with([("41", model)], 1, {first: 1})
    mig = node_mig(spec, plan_nodes(spec)[-1])
    assert mig is not None
    doc = assert_mig_parted_v1(render_mig_parted_config(mig))
    entry = doc["mig-configs"]["hyperscaler"][0]
    assert entry["device-filter"] == list(CATALOG[model].mig_device_filter) and entry["mig-devices"] == {first: 1}
    off = node_mig(spec_with([("41", model)], 1, {first: 1}, enabled=False), plan_nodes(spec)[-1])
    assert off is not None
    if model == "a30":
        golden("mig/a30-off.yaml", render_mig_parted_config(off))
    assert assert_mig_parted_v1(render_mig_parted_config(off))["mig-configs"]["hyperscaler"][0]["mig-enabled"] is False


def test_a_node_with_two_gpu_models_gets_one_entry_each(golden: Callable[[str, str], None]) -> None:
    spec = spec_with([("41", "a100-80gb"), ("42", "h100-80gb")], 1, {"3g.40gb": 2}, per_node=2)
    mig = node_mig(spec, plan_nodes(spec)[-1])
    assert mig is not None and [m.name for m in mig.models] == ["a100-80gb", "h100-80gb"]
    text = render_mig_parted_config(mig)
    golden("mig/a100-and-h100.yaml", text)
    entries = assert_mig_parted_v1(text)["mig-configs"]["hyperscaler"]
    assert [e["mig-devices"] for e in entries] == [{"3g.40gb": 2}, {"3g.40gb": 2}]
    assert "Gres=gpu:3g.40gb:4 " in render_slurm_conf(spec, plan_nodes(spec))


def test_gres_conf_includes_the_node_file_only_with_mig() -> None:
    with_mig = spec_with([("41", "h100-80gb")], 1, {"1g.10gb": 7})
    assert f"Include {GRES_NODE_FILE}" in render_gres_conf(with_mig, plan_nodes(with_mig))
    assert "Gres=gpu:1g.10gb:7 " in render_slurm_conf(with_mig, plan_nodes(with_mig))
    without = spec_with([("41", "h100-80gb")], 1, None)
    assert "Include" not in render_gres_conf(without, plan_nodes(without))
    off = spec_with([("41", "h100-80gb")], 1, {"1g.10gb": 7}, enabled=False)
    gres = render_gres_conf(off, plan_nodes(off))
    assert "Include" not in gres and "NodeName=gpu-01 Name=gpu Type=h100 File=/dev/nvidia0" in gres
    assert "Gres=gpu:h100:1 " in render_slurm_conf(off, plan_nodes(off))
    ctl = node_plan(with_mig, "controller")
    assert GRES_NODE_FILE in {f.path for f in ctl.files}
    assert GRES_NODE_FILE in next(s for s in ctl.steps if s.name == "slurmctld").needs


def test_adding_a_mig_node_changes_nothing_on_the_others() -> None:
    gpus = [("41", "h100-80gb"), ("42", "h100-80gb"), ("43", "h100-80gb")]
    two, three = spec_with(gpus, 2, {"1g.10gb": 7}), spec_with(gpus, 3, {"1g.10gb": 7})
    for name in ("gpu-01", "gpu-02"):
        before, after = node_plan(two, name), node_plan(three, name)
        assert before.files == after.files
        assert [(s.name, s.script.content, s.applies) for s in before.steps] == [
            (s.name, s.script.content, s.applies) for s in after.steps
        ]


def test_a_layout_change_reruns_only_the_nodes_mig_step() -> None:
    gpus = [("41", "h100-80gb"), ("42", "h100-80gb")]
    before, after = spec_with(gpus, 2, {"1g.10gb": 7}), spec_with(gpus, 2, {"3g.40gb": 2})
    for name in ("gpu-01", "gpu-02"):
        old, new = node_plan(before, name), node_plan(after, name)
        changed = {s.name for s, t in zip(old.steps, new.steps, strict=True) if s.script != t.script}
        assert changed == {"mig"}, changed  # slurmd restarts once, from the mig step, after the drain
        assert {f.path for f in old.files if f not in new.files} == {MIG_CONFIG, GRES_SCRIPT}
    ctl_old, ctl_new = node_plan(before, "controller"), node_plan(after, "controller")
    slurmctld = [step for plan in (ctl_old, ctl_new) for step in plan.steps if step.name == "slurmctld"]
    assert "readonly MIG_GRES='gpu-[01-02]=gpu:3g.40gb:2'" in slurmctld[1].script.content


def test_direct_start_runs_the_same_gres_script_as_the_systemd_drop_in() -> None:
    """lib.sh starts slurmd like the unit (and its MIG drop-in) would: same script, same path."""
    assert f"[ ! -x {GRES_SCRIPT} ] || {GRES_SCRIPT} write" in (SCRIPTS_DIR / "lib.sh").read_text()


def test_zero_counts_mean_no_instance() -> None:
    """mig-parted accepts a count of 0; so does the stack file, and it means none of that profile."""
    spec = spec_with([("41", "h100-80gb")], 1, {"3g.40gb": 2, "1g.10gb": 0})
    mig = node_mig(spec, plan_nodes(spec)[-1])
    assert mig is not None and mig.totals() == [("3g.40gb", 2)]
    empty = spec_with([("41", "h100-80gb")], 1, {"1g.10gb": 0})
    none = node_mig(empty, plan_nodes(empty)[-1])
    assert none is not None and none.enabled and none.totals() == []
    entry = assert_mig_parted_v1(render_mig_parted_config(none))["mig-configs"]["hyperscaler"][0]
    assert entry["mig-enabled"] is True and entry["mig-devices"] == {}

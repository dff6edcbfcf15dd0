"""BeeGFS's files and ids, without BeeGFS: every rendered file passes the key checker (render/beegfs_check.py),
a seeded mistake in each file kind fails it, ids never move, and the files match their golden copies."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from config.models import ClusterSpec
from config.models.storage import BeegfsPool
from config.storage_layout import storage_targets
from config.topology import NodePlan, Role, plan_nodes
from render.beegfs import (
    BeegfsLayout,
    beegfs_config_files,
    beegfs_layout,
    cli_chunk_size,
    expected_ids,
    render_layout_script,
    render_mgmtd_conf,
    render_mgmtd_script,
)
from render.beegfs_check import check_agreement, check_file
from render.storage import nfs_export, render_nfs_exports, shared_mount_line
from tests.stacks import loaded

BEEGFS_STACKS = ("workstation", "cluster")


def with_storage(spec: ClusterSpec, **changes: object) -> ClusterSpec:
    """The spec with storage fields (and storage.beegfs fields, given as beegfs={...}) changed."""
    storage = spec.storage
    assert storage is not None
    beegfs = storage.beegfs.model_copy(update=dict(changes.pop("beegfs", {})))  # type: ignore[call-overload]
    return spec.model_copy(update={"storage": storage.model_copy(update={**changes, "beegfs": beegfs})})


def variants() -> list[tuple[str, ClusterSpec]]:
    found = []
    for stack in BEEGFS_STACKS:
        spec = loaded(stack).spec
        found.append((f"{stack}-8", spec))
        found.append((f"{stack}-7.4", with_storage(spec, beegfs={"version": "7.4"})))
    return found


VARIANTS = variants()


def clients(nodes: list[NodePlan]) -> list[NodePlan]:
    return [n for n in nodes if n.role in (Role.CONTROLLER, Role.COMPUTE)]


def all_files(spec: ClusterSpec) -> tuple[BeegfsLayout, dict[str, str]]:
    """Every BeeGFS configuration file of a file system, by '<node>:<path>', with both mgmtd variants."""
    nodes = plan_nodes(spec)
    layout = beegfs_layout(spec, nodes)
    files = {
        f"{node}:{file.path}": file.content
        for node, node_files in beegfs_config_files(layout, clients(nodes)).items()
        for file in node_files
    }
    for state, is_open in (("open", True), ("closed", False)):
        conf = render_mgmtd_conf(layout, registration_open=is_open)
        files[f"{layout.mgmtd.name}:{conf.path}.{state}"] = conf.content
    return layout, files


@pytest.mark.parametrize(("name", "spec"), VARIANTS, ids=[v[0] for v in VARIANTS])
def test_every_rendered_file_passes_the_checker(name: str, spec: ClusterSpec) -> None:
    layout, files = all_files(spec)
    kinds = {path.rsplit("/", 1)[-1].removesuffix(".open").removesuffix(".closed") for path in files}
    expected = {"beegfs-client.conf", "beegfs-mounts.conf", "beegfs-meta.conf", "beegfs-storage.conf"}
    expected |= {"beegfs-mgmtd.toml"} if layout.version == "8" else {"beegfs-mgmtd.conf", "beegfs-helperd.conf"}
    assert kinds == expected
    problems = [
        p
        for key, text in files.items()
        for p in check_file(layout.version, key.split(":", 1)[1].removesuffix(".open").removesuffix(".closed"), text)
    ]
    problems += check_agreement(layout.version, files)
    assert problems == []


# A seeded mistake per file kind: (version, file, how the correct text is broken, what the checker says)
SEEDED: list[tuple[str, str, Callable[[str], str], str]] = [
    ("8", "beegfs-mgmtd.toml", lambda t: t + "registration-disabled = true\n", "'registration-disabled' is not"),
    ("8", "beegfs-mgmtd.toml", lambda t: t.replace("beemsg-port = 8008", 'beemsg-port = "8008"'), "not an integer"),
    ("8", "beegfs-mgmtd.toml", lambda t: t + "auth-disable = false\n", "not valid TOML"),  # repeated key
    ("8", "beegfs-mgmtd.toml", lambda t: t.replace('log-target = "journald"', 'log-target = "syslog"'), "not one of"),
    ("8", "beegfs-mgmtd.toml", lambda t: t.replace('"180s"', '"3 minutes"'), "not a duration"),
    ("8", "beegfs-meta.conf", lambda t: t + "storeMetaDir = /x\n", "'storeMetaDir' is not"),
    ("8", "beegfs-meta.conf", lambda t: t + "logType = syslog\n", "is set again"),
    ("8", "beegfs-storage.conf", lambda t: t.replace("= false", "= ture", 1), "not a boolean"),
    ("8", "beegfs-storage.conf", lambda t: t + "connStoragePort = 0\n", "below the minimum 1"),
    ("8", "beegfs-client.conf", lambda t: t + "connClientPort = x\n", "not an integer"),
    ("8", "beegfs-mounts.conf", lambda t: "/shared\n", "expected '<mount point> <client config file>'"),
    ("7.4", "beegfs-mgmtd.conf", lambda t: t + "registrationDisable = true\n", "'registrationDisable' is not"),
    ("7.4", "beegfs-mgmtd.conf", lambda t: t.replace("logType = syslog", "logType = journald"), "not one of"),
    ("7.4", "beegfs-meta.conf", lambda t: t + "tuneNumWorkers = many\n", "not an integer"),
    ("7.4", "beegfs-storage.conf", lambda t: t + "connAuthFile = conn.auth\n", "not an absolute path"),
    ("7.4", "beegfs-client.conf", lambda t: t + "sysMgmtdHost = other\n", "is set again"),
    ("7.4", "beegfs-helperd.conf", lambda t: t + "connClientPortUDP = 8004\n", "'connClientPortUDP' is not"),
]


@pytest.mark.parametrize(
    ("version", "kind", "seed", "message"), SEEDED, ids=[f"{s[0]}-{s[1]}-{i}" for i, s in enumerate(SEEDED)]
)
def test_a_seeded_mistake_fails_the_checker(version: str, kind: str, seed: Callable[[str], str], message: str) -> None:
    spec = dict(VARIANTS)[f"workstation-{version}"]
    _, files = all_files(spec)
    path, text = next(
        (k.split(":", 1)[1], v) for k, v in files.items() if k.endswith("/" + kind) or k.endswith(f"/{kind}.closed")
    )
    path = path.removesuffix(".closed")
    assert check_file(version, path, text) == []
    broken = seed(text)
    assert broken != text, "the seed did not change the file"
    problems = [str(p) for p in check_file(version, path, broken)]
    assert any(message in p for p in problems), problems


def test_disagreeing_timeouts_fail_the_agreement_check() -> None:
    _, files = all_files(loaded("workstation").spec)
    key = next(k for k in files if k.endswith("beegfs-meta.conf"))
    files[key] = files[key].replace("sysTargetOfflineTimeoutSecs = 180", "sysTargetOfflineTimeoutSecs = 240")
    assert check_file("8", key.split(":", 1)[1], files[key]) == []  # valid on its own
    assert any("sysTargetOfflineTimeoutSecs differs" in str(p) for p in check_agreement("8", files))


def test_the_timeout_is_the_same_in_every_file() -> None:
    spec = with_storage(loaded("workstation").spec, beegfs={"node_offline_timeout_s": 90})
    _, files = all_files(spec)
    assert 'node-offline-timeout = "90s"' in "".join(files.values())
    assert all(
        "sysTargetOfflineTimeoutSecs = 90" in text
        for key, text in files.items()
        if key.endswith((".conf",)) and "mounts" not in key
    )


def test_ids_never_move_when_a_storage_node_or_volume_is_added() -> None:
    base = loaded("cluster").spec
    grown = with_storage(base, count=3, data_disks_gib=[1000, 1000, 500])
    before = {t.reference: t.target_id for t in storage_targets(plan_nodes(base))}
    after = {t.reference: t.target_id for t in storage_targets(plan_nodes(grown))}
    assert before == {"storage-01:1": 101, "storage-01:2": 102, "storage-02:1": 201, "storage-02:2": 202}
    assert {k: after[k] for k in before} == before
    assert sorted(set(after.values()) - set(before.values())) == [103, 203, 301, 302, 303]
    assert len(set(after.values())) == len(after)  # unique per class
    old_ids = expected_ids(beegfs_layout(base, plan_nodes(base))).split()
    assert set(old_ids) <= set(expected_ids(beegfs_layout(grown, plan_nodes(grown))).split())


def test_mgmtd_script_opens_then_closes_registration() -> None:
    layout = beegfs_layout(loaded("workstation").spec, plan_nodes(loaded("workstation").spec))
    opened, closed = render_mgmtd_script(layout, "open").content, render_mgmtd_script(layout, "close").content
    assert "registration-disable = false" in opened and "registration-disable = true" in closed
    assert "readonly PHASE=open" in opened and "readonly PHASE=close" in closed
    assert "readonly EXPECTED='meta:1 storage:1 target:101'" in opened


def test_layout_speaks_each_cli() -> None:
    spec = with_storage(
        loaded("cluster").spec,
        beegfs={"pools": [BeegfsPool(name="fast", targets=["storage-01:2", "storage-02:2"])], "chunk_size": "512k"},
    )
    layout8 = beegfs_layout(spec, plan_nodes(spec))
    text8 = render_layout_script(spec, layout8).content
    assert "readonly POOLS=fast=storage:102,storage:202" in text8 and "readonly ROOT_CHUNK=512Ki" in text8
    spec74 = with_storage(spec, beegfs={"version": "7.4"})
    text74 = render_layout_script(spec74, beegfs_layout(spec74, plan_nodes(spec74))).content
    assert "readonly POOLS=fast=102,202" in text74 and "readonly ROOT_CHUNK=512k" in text74
    assert cli_chunk_size("8", "1m") == "1Mi" and cli_chunk_size("7.4", "1m") == "1m"


@pytest.mark.parametrize(("name", "spec"), VARIANTS, ids=[v[0] for v in VARIANTS])
def test_beegfs_files_match_golden(name: str, spec: ClusterSpec, golden: Callable[[str, str], None]) -> None:
    layout, files = all_files(spec)
    # every compute node gets the controller's client files: one compute node stands for all
    computes = sorted(
        {k.split(":")[0] for k in files} - {layout.mgmtd.name, "controller", *(n.name for n in layout.servers)}
    )
    for key, text in sorted(files.items()):
        node, path = key.split(":", 1)
        if node in computes[1:]:
            assert text == files[f"{computes[0]}:{path}"]
            continue
        golden(f"storage/{name}/{node}/{path.rsplit('/', 1)[-1]}", text)


def test_nfs_files_match_golden(golden: Callable[[str, str], None]) -> None:
    spec = loaded("dev").spec
    export = nfs_export(spec, plan_nodes(spec))
    golden("storage/dev-nfs/exports", render_nfs_exports(spec, export).content)
    golden("storage/dev-nfs/fstab", shared_mount_line(spec, export.source, "nfs4", "_netdev") + "\n")

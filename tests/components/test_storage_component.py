"""Shared storage under mocks: protected volumes, stable BeeGFS ids, secrets, and the order of the steps."""

from __future__ import annotations

from config.models import ClusterSpec
from config.presets import apply_preset
from hyperscaler.mocks import Registration, contains_secret
from tests.components.test_slurm_component import KEY, commands, run


def workstation(**storage: object) -> ClusterSpec:
    raw = {"preset": "workstation", "name": "ws", "ssh": {"public_keys": [KEY]}, "storage": storage}
    return ClusterSpec.model_validate(apply_preset(raw))


def reaches(records: dict[str, Registration], start: str, goal: str) -> bool:
    """Whether `start` waits for `goal`, directly or through anything it waits for."""
    by_urn = {r.urn: r for r in records.values()}
    todo, seen = list(records[start].depends_on), set()
    while todo:
        urn = todo.pop()
        if urn == records[goal].urn:
            return True
        if urn not in seen and urn in by_urn:
            seen.add(urn)
            todo.extend(by_urn[urn].depends_on)
    return False


def test_storage_volumes_are_protected_and_retained() -> None:
    records = run(workstation())
    volumes = {n: r for n, r in records.items() if r.type == "libvirt:index/volume:Volume"}
    kept = {n for n, r in volumes.items() if r.protect and r.retain_on_delete}
    assert kept == {"ws-controller-state", "ws-storage-01-data-1", "ws-storage-01-meta"}
    assert all(not r.protect for n, r in volumes.items() if n not in kept)


def test_adding_a_storage_node_keeps_every_id_and_file_of_the_first() -> None:
    one, two = run(workstation()), run(workstation(count=2, data_disks_gib=[100]))
    first = {n: r.plain_inputs for n, r in commands(one).items() if "-storage-01-" in n}
    assert first, "no Command on storage-01"
    assert first == {n: commands(two)[n].plain_inputs for n in first}  # same ids, files and scripts
    server2 = commands(two)["ws-storage-beegfs-storage-02-servers"].plain_inputs["stdin"]
    assert "readonly NODE_ID=2" in server2 and "readonly TARGETS=201:/srv/hyperscaler/data-1/beegfs" in server2
    opened = commands(two)["ws-storage-beegfs-controller-mgmtd-open"].plain_inputs["stdin"]
    assert "readonly EXPECTED='meta:1 meta:2 storage:1 storage:2 target:101 target:201'" in opened


def test_beegfs_secrets_stay_secret() -> None:
    records = commands(run(workstation()))
    auth = [r for n, r in records.items() if n.endswith("-etc-beegfs-conn-auth")]
    assert {r.name.removeprefix("ws-storage-beegfs-").split("-etc-")[0] for r in auth} == {
        "controller",
        "gpu-01",
        "gpu-02",
        "storage-01",
    }
    assert all(contains_secret(r.inputs["stdin"]) for r in auth)
    key = [r for n, r in records.items() if n.endswith("-etc-beegfs-key-pem")]
    assert [r.name for r in key] == ["ws-storage-beegfs-controller-etc-beegfs-key-pem"]  # mgmtd's node only
    assert contains_secret(key[0].inputs["stdin"]) and "PRIVATE KEY" in key[0].plain_inputs["stdin"]
    certs = [r for n, r in records.items() if n.endswith("-etc-beegfs-cert-pem")]
    assert len(certs) == 4 and all("BEGIN CERTIFICATE" in r.inputs["stdin"] for r in certs)  # public: plain
    for rec in records.values():
        if "conn-auth" not in rec.name and "key-pem" not in rec.name:
            assert "PRIVATE KEY" not in str(rec.masked_inputs)


def test_beegfs_steps_run_in_order() -> None:
    records = run(workstation())
    beegfs = "ws-storage-beegfs"
    assert reaches(records, f"{beegfs}-storage-01-servers", f"{beegfs}-controller-mgmtd-open")
    assert reaches(records, f"{beegfs}-controller-mgmtd-close", f"{beegfs}-storage-01-servers")
    for client in ("controller", "gpu-01", "gpu-02"):
        assert reaches(records, f"{beegfs}-{client}-client", f"{beegfs}-controller-mgmtd-close")
        assert reaches(records, f"{beegfs}-{client}-client", f"{beegfs}-{client}-etc-beegfs-conn-auth")
    assert reaches(records, f"{beegfs}-controller-layout", f"{beegfs}-controller-client")
    # a server's step waits for its volumes: BeeGFS never initialises a target on the root disk
    assert reaches(records, f"{beegfs}-storage-01-servers", "ws-volumes-storage-01-data-1")
    assert reaches(records, f"{beegfs}-storage-01-servers", "ws-volumes-storage-01-meta")
    # the canary's shared-storage test waits for every mount
    for client in ("controller", "gpu-01", "gpu-02"):
        assert reaches(records, "ws-slurm-controller-canary", f"{beegfs}-{client}-client")


def test_dev_serves_nfs_to_every_client() -> None:
    records = run(
        ClusterSpec.model_validate(apply_preset({"preset": "dev", "name": "dev", "ssh": {"public_keys": [KEY]}}))
    )
    cmds = commands(records)
    assert "dev-storage-storage-01-nfs" in cmds
    assert not any("beegfs" in n for n in records)
    mounts = {n for n in cmds if n.endswith("-mount")}
    assert mounts == {"dev-storage-controller-mount", "dev-storage-cpu-01-mount", "dev-storage-cpu-02-mount"}
    line = "10.77.0.20:/srv/hyperscaler/data-1/shared /shared nfs4"
    assert all(line in cmds[n].plain_inputs["stdin"] for n in mounts)
    assert reaches(records, "dev-storage-cpu-01-mount", "dev-storage-storage-01-nfs")
    assert reaches(records, "dev-storage-storage-01-nfs", "dev-volumes-storage-01-data-1")
    assert not any("data-1" in n for n in cmds if n.startswith("dev-storage-"))  # formatted once, by NodeVolumes

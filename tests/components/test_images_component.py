"""Base images under the mocks: the fetch Command before each base volume, secrets kept secret, and what a
changed checksum replaces (only the base volume and what sits on it, as `hyperscaler diff` says)."""

from __future__ import annotations

from pathlib import Path

import pulumi
import pytest
import yaml

from components.cluster import HpcCluster, HpcClusterArgs
from components.images import S3Credentials
from config.images import cached_image_path
from config.models import ClusterSpec
from config.presets import apply_preset
from config.topology import plan_nodes
from hyperscaler.diff import diff_report, resource_changes
from hyperscaler.mocks import SECRET_MASK, RecordingMonitor, Registration, is_secret_value
from hyperscaler.plan import run_plan
from render.images import base_volume_name, fetch_command
from tests.stacks import ROOT

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEWwoQJm5BAL1DlfU575U2gWJDQ8/y+UHR9nMWDIG8eR x"
OLD = "4f2a8bc11d1dfc0f6cc5be4b0c5fe6e2c2e5e4d0ab7b37a52e17c1bd40c2b3e8"
NEW = "9b1c5e0f3d2a4c6b8e7f0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f"
VOLUME = "libvirt:index/volume:Volume"
SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCY-secret-only-in-this-test"
PINNED = {"source": "https://images.example.com/debian-12.qcow2", "sha256": OLD, "virtual_size_gib": 2}


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "image-cache"
    monkeypatch.setenv("HYPERSCALER_IMAGE_CACHE", str(path))
    return path


def spec_with(images: dict[str, object], preset: str = "dev", **extra: object) -> ClusterSpec:
    raw = {"preset": preset, "name": preset, "ssh": {"public_keys": [KEY]}, "images": images, **extra}
    return ClusterSpec.model_validate(apply_preset(raw))


def build(monitor: RecordingMonitor, spec: ClusterSpec, credentials: S3Credentials | None = None) -> list[Registration]:
    @pulumi.runtime.test
    def program() -> pulumi.Output:
        cluster = HpcCluster(spec.name, HpcClusterArgs(spec, None, s3_credentials=credentials))
        return pulumi.Output.all(*(node.domain_id for node in cluster.nodes.values()))

    program()
    return monitor.records


def test_each_host_fetches_and_checks_before_its_base_volume(monitor: RecordingMonitor, cache: Path) -> None:
    spec = spec_with({"debian-12": PINNED}, preset="cluster")
    records = build(monitor, spec)
    by_name = {r.name: r for r in records}
    stores = {r.name: r for r in records if r.type == "hyperscaler:hpc:ImageStore"}
    assert len(stores) == len(spec.hosts) == 3
    image = spec.images["debian-12"]
    for host in spec.hosts:
        store = f"cluster-{host.name}-images"
        fetch, volume = by_name[f"{store}-debian-12-fetch"], by_name[f"{store}-debian-12"]
        assert fetch.type == "command:local:Command" and fetch.parent == stores[store].urn
        assert fetch.plain_inputs["create"] == fetch_command(image)
        assert " image fetch https://images.example.com/debian-12.qcow2 --sha256 " + OLD in fetch_command(image)
        assert fetch.urn in volume.depends_on  # the volume reads the file only once it was checked
        assert volume.plain_inputs["source"] == str(cached_image_path(OLD, "qcow2", cache))
        assert volume.plain_inputs["name"] == base_volume_name("debian-12", image)
        assert volume.ignore_changes == ["source"] and volume.delete_before_replace
    # every local Command belongs to a component: nothing hangs off the stack
    for fetch in (r for r in records if r.type == "command:local:Command"):
        assert fetch.parent == stores[fetch.name.removesuffix("-debian-12-fetch")].urn


def test_a_trusted_local_file_is_read_where_it_is(monitor: RecordingMonitor) -> None:
    spec = spec_with({"debian-12": {"source": "/srv/images/mine.qcow2", "trusted": True}})
    records = build(monitor, spec)
    assert not [r for r in records if r.type == "command:local:Command"]
    (volume,) = [r for r in records if r.type == VOLUME and r.name == "dev-ws1-images-debian-12"]
    assert volume.plain_inputs["source"] == "/srv/images/mine.qcow2"
    assert [urn for urn in volume.depends_on if "Command" in urn] == []


def test_s3_credentials_stay_secret(monitor: RecordingMonitor) -> None:
    images = {
        "debian-12": {"source": "s3://golden/compute.qcow2", "sha256": OLD, "s3": {"endpoint_url": "http://m:9000"}},
        "other": PINNED,
    }
    credentials = S3Credentials(pulumi.Output.secret("AKIATESTONLY"), pulumi.Output.secret(SECRET))
    records = build(monitor, spec_with(images), credentials)
    fetch = {r.name: r for r in records if r.type == "command:local:Command"}
    s3_fetch = fetch["dev-ws1-images-debian-12-fetch"]
    assert is_secret_value(s3_fetch.inputs["environment"])  # the whole map: the engine keeps it encrypted
    assert s3_fetch.plain_inputs["environment"] == {
        "AWS_ACCESS_KEY_ID": "AKIATESTONLY",
        "AWS_SECRET_ACCESS_KEY": SECRET,
    }
    assert "environment" not in fetch["dev-ws1-images-other-fetch"].inputs  # only an s3 image gets them
    masked = repr([r.to_json() for r in records])
    assert SECRET not in masked and "AKIATESTONLY" not in masked and SECRET_MASK in masked
    assert SECRET not in fetch["dev-ws1-images-debian-12-fetch"].plain_inputs["create"]


def plan_file(tmp: Path, name: str, images: dict[str, object]) -> Path:
    doc = yaml.safe_load((ROOT / "Pulumi.dev.yaml").read_text())
    cluster = doc["config"]["hyperscaler:cluster"]
    cluster["images"] = images
    cluster["storage"] = {"image": "other"}  # a node on another image: nothing of it may change
    path = tmp / name / "Pulumi.dev.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(doc))
    return path


def test_a_changed_checksum_replaces_the_base_volume_and_what_stands_on_it(tmp_path: Path) -> None:
    other = {"source": "/srv/images/other.qcow2", "sha256": OLD, "virtual_size_gib": 2}
    old = plan_file(tmp_path, "a", {"debian-12": PINNED, "other": other})
    new = plan_file(tmp_path, "b", {"debian-12": {**PINNED, "sha256": NEW}, "other": other})
    before = run_plan(old)
    changes = {(c.name, c.action) for c in resource_changes(before.records, run_plan(new).records)}
    on_image = [n.name for n in plan_nodes(before.stack.spec) if n.image == "debian-12"]
    assert on_image == ["controller", "cpu-01", "cpu-02"]
    expected = {("dev-ws1-images-debian-12", "replace"), ("dev-ws1-images-debian-12-fetch", "update")}
    expected |= {(f"dev-{n}-disk", "replace") for n in on_image} | {(f"dev-{n}-domain", "replace") for n in on_image}
    assert changes == expected  # no data volume, pool, network, cloud-init, Command or other image
    report, _ = diff_report(old, new)
    assert f"replace-vm    images.debian-12.sha256: '{OLD}' -> '{NEW}'" in report, report
    assert "3 VM(s) replaced or removed" in report


def test_another_copy_of_the_same_image_replaces_nothing(tmp_path: Path) -> None:
    """A pinned image moved (another mirror, another path): the fetch runs again, no volume is replaced."""
    local = {"source": "/srv/images/debian-12.qcow2", "sha256": OLD, "virtual_size_gib": 2}
    old = plan_file(tmp_path, "a", {"debian-12": local, "other": PINNED})
    new = plan_file(tmp_path, "b", {"debian-12": {**local, "source": "/mnt/mirror/d12.qcow2"}, "other": PINNED})
    changes = {(c.name, c.action) for c in resource_changes(run_plan(old).records, run_plan(new).records)}
    assert changes == {("dev-ws1-images-debian-12-fetch", "update")}

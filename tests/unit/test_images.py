"""Base images in the stack file: sources, checksums, trust, manifests, and the packages a role image carries."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml
from pydantic import TypeAdapter, ValidationError

from config import ConfigError, load_stack_file
from config.images import MANIFEST_VERSION, image_cache_dir, image_identity, volume_source
from config.models import BaseImage, ClusterSpec
from config.packages import ROLE_PACKAGES, packages_for, role_image_packages
from config.presets import apply_preset
from config.topology import Role, plan_nodes
from config.types import ImageSource, Sha256
from hyperscaler.imagefetch import Progress
from render.images import PYTHON, base_volume_name, fetch_command
from tests.stacks import STACKS, loaded

KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEWwoQJm5BAL1DlfU575U2gWJDQ8/y+UHR9nMWDIG8eR x"
DIGEST = "4f2a8bc11d1dfc0f6cc5be4b0c5fe6e2c2e5e4d0ab7b37a52e17c1bd40c2b3e8"


def stack_file(tmp_path: Path, cluster: Mapping[str, object], extra: Mapping[str, object] | None = None) -> Path:
    path = tmp_path / "Pulumi.img.yaml"
    base = {"preset": "dev", "name": "dev", "ssh": {"public_keys": [KEY]}}
    path.write_text(yaml.safe_dump({"config": {"hyperscaler:cluster": {**base, **cluster}, **(extra or {})}}))
    return path


def test_sha256_is_normalised_and_refused_when_short() -> None:
    adapter = TypeAdapter(Sha256)
    assert adapter.validate_python(f"sha256:{DIGEST.upper()}") == DIGEST
    for bad in (DIGEST[:-1], DIGEST + "0", "z" * 64, 64):
        with pytest.raises(ValidationError):
            adapter.validate_python(bad)


@pytest.mark.parametrize(
    "source",
    [
        "/var/lib/x.qcow2",
        "https://images.example.com/a/b.qcow2",
        "https://10.0.0.1:8443/x",
        "s3://golden-1.b/k/x.qcow2",
    ],
)
def test_image_sources_accepted(source: str) -> None:
    assert TypeAdapter(ImageSource).validate_python(source) == source


@pytest.mark.parametrize(
    ("source", "says"),
    [
        ("http://images.example.com/x.qcow2", "an unencrypted download is refused"),
        ("images/x.qcow2", "use an absolute path"),
        ("file:///x.qcow2", "use an absolute path"),
        ("https://user:pw@host/x", "no valid host"),
        ("s3://bucket", "names no object"),
        ("s3://ab/x", "does not name an S3 bucket"),
        ("/var/lib/x\n.qcow2", "control character"),
        ("/var/lib/../x.qcow2", "without '.' or '..'"),
    ],
)
def test_image_sources_refused(source: str, says: str) -> None:
    with pytest.raises(ValidationError) as info:
        TypeAdapter(ImageSource).validate_python(source)
    assert says in str(info.value)


def test_pinned_and_trusted_images_pass_the_checks(tmp_path: Path) -> None:
    images = {
        "debian-12": {"source": "https://images.example.com/d.qcow2", "sha256": DIGEST, "virtual_size_gib": 2},
        "local": {"source": "/var/lib/hyperscaler/images/mine.qcow2", "trusted": True},
        "golden": {"source": "s3://golden/compute.qcow2", "sha256": DIGEST, "s3": {"endpoint_url": "http://m:9000"}},
    }
    loaded_stack = load_stack_file(stack_file(tmp_path, {"images": images}))
    assert not [w for w in loaded_stack.warnings if w.path.startswith("images")]
    assert loaded_stack.spec.images["golden"].s3 is not None


def test_trusted_and_pinned_is_only_a_warning(tmp_path: Path) -> None:
    image = {"source": "/var/lib/x.qcow2", "sha256": DIGEST, "trusted": True}
    warnings = load_stack_file(stack_file(tmp_path, {"images": {"debian-12": image}})).warnings
    assert [w.path for w in warnings if w.path.startswith("images")] == ["images.debian-12.trusted"]


def test_the_default_image_is_a_trusted_local_file() -> None:
    image = ClusterSpec.model_fields["images"].default["debian-12"]
    assert image.is_local and image.trusted and image.sha256 is None


def write_manifest(path: Path, images: dict[str, dict[str, object]]) -> Path:
    path.write_text(json.dumps({"version": MANIFEST_VERSION, "images": images, "builds": {}}))
    return path


def test_a_manifest_entry_is_read_when_the_stack_loads(tmp_path: Path) -> None:
    manifest = write_manifest(
        tmp_path / "manifest.json",
        {"compute": {"source": "/srv/img/compute-4f2a8bc11d1d.qcow2", "sha256": DIGEST, "virtual_size_gib": 4}},
    )
    images = {"debian-12": {"manifest": str(manifest), "entry": "compute"}}
    spec = load_stack_file(stack_file(tmp_path, {"images": images, "compute": [_group(6)]})).spec
    image = spec.images["debian-12"]
    assert (image.source, image.sha256, image.virtual_size_gib) == ("/srv/img/compute-4f2a8bc11d1d.qcow2", DIGEST, 4)
    assert image.manifest == str(manifest)


def _group(disk_gib: int) -> dict[str, object]:
    return {"name": "cpu", "count": 1, "vcpus": 1, "memory_mib": 2048, "disk_gib": disk_gib}


def test_a_manifest_image_is_checked_like_any_other(tmp_path: Path) -> None:
    manifest = write_manifest(
        tmp_path / "manifest.json", {"debian-12": {"source": "/srv/x.qcow2", "sha256": DIGEST, "virtual_size_gib": 8}}
    )
    with pytest.raises(ConfigError) as info:
        load_stack_file(
            stack_file(tmp_path, {"images": {"debian-12": {"manifest": str(manifest)}}, "compute": [_group(6)]})
        )
    assert "compute[0].disk_gib: the root disk (6 GiB) is smaller than its image 'debian-12' (8 GiB)" in str(info.value)


@pytest.mark.parametrize(
    ("content", "path", "says"),
    [
        ("{not json", "images.debian-12.manifest", "is not JSON"),
        (json.dumps({"version": 99, "images": {}}), "images.debian-12.manifest", "is not a version 1 image manifest"),
        (json.dumps({"version": 1, "images": {"storage": {}}}), "images.debian-12.entry", "has no image 'compute'"),
    ],
)
def test_bad_manifests_are_refused_with_the_path(tmp_path: Path, content: str, path: str, says: str) -> None:
    manifest = tmp_path / "manifest.json"
    manifest.write_text(content)
    images = {"debian-12": {"manifest": str(manifest), "entry": "compute"}}
    with pytest.raises(ConfigError) as info:
        load_stack_file(stack_file(tmp_path, {"images": images}))
    assert f"hyperscaler:cluster.{path}: " in str(info.value) and says in str(info.value)


def test_s3_credentials_in_config_must_be_secrets(tmp_path: Path) -> None:
    extra = {"hyperscaler:s3AccessKeyId": {"secure": "v1:abc"}, "hyperscaler:s3SecretAccessKey": {"secure": "v1:d"}}
    assert load_stack_file(stack_file(tmp_path, {}, extra)).spec.name == "dev"
    with pytest.raises(ConfigError) as info:
        load_stack_file(stack_file(tmp_path, {}, {**extra, "hyperscaler:s3AccessKeyId": "AKIAEXAMPLE"}))
    assert "hyperscaler:s3AccessKeyId is stored in plain text" in str(info.value)


def test_the_cache_directory_follows_the_environment() -> None:
    assert image_cache_dir({"HYPERSCALER_IMAGE_CACHE": "/c", "HOME": "/h"}) == Path("/c")
    assert image_cache_dir({"XDG_CACHE_HOME": "/x", "HOME": "/h"}) == Path("/x/hyperscaler/images")
    assert image_cache_dir({"HOME": "/h"}) == Path("/h/.cache/hyperscaler/images")


def test_volume_names_and_sources_follow_the_content() -> None:
    pinned = BaseImage(source="https://images.example.com/a b.qcow2".replace(" ", "%20"), sha256=DIGEST)
    moved = pinned.model_copy(update={"source": "s3://golden/a.qcow2"})
    assert base_volume_name("img", pinned) == base_volume_name("img", moved) == f"img-{DIGEST[:12]}.qcow2"
    assert volume_source(pinned, Path("/c")) == volume_source(moved, Path("/c")) == f"/c/{DIGEST}.qcow2"
    trusted = BaseImage(source="/var/lib/x.raw", trusted=True, format="raw")
    assert volume_source(trusted, Path("/c")) == "/var/lib/x.raw"
    assert base_volume_name("img", trusted).endswith(".raw") and image_identity(trusted) != DIGEST
    local = BaseImage(source="/var/lib/x.qcow2", sha256=DIGEST)
    assert volume_source(local, Path("/c")) == "/var/lib/x.qcow2"  # checked where it is, never copied


def test_the_fetch_command_quotes_what_the_stack_wrote() -> None:
    image = BaseImage.model_validate(
        {
            "source": "s3://golden/it's.qcow2",
            "sha256": DIGEST,
            "s3": {"endpoint_url": "http://m:9000", "region": "eu-1"},
        }
    )
    assert fetch_command(image) == (
        f"{PYTHON} -m hyperscaler image fetch 's3://golden/it'\"'\"'s.qcow2' --sha256 {DIGEST} --format qcow2 "
        "--endpoint-url http://m:9000 --region eu-1"
    )


def test_progress_draws_a_bar_on_a_terminal_only() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    tty, log = Tty(), io.StringIO()
    for stream in (tty, log):
        progress = Progress("fetching x", 4 * 2**20, stream, interval_s=0)
        for _ in range(4):
            progress.add(2**20)
        progress.finish("sha256 matches")
    assert "[###############---------------]  50%" in tty.getvalue() and "\r" in tty.getvalue()
    assert log.getvalue().count("\n") == 1 and "[" not in log.getvalue()
    assert log.getvalue().startswith("fetching x: sha256 matches, 4.0 MiB in ")


def _variants() -> list[ClusterSpec]:
    specs = [loaded(name).spec for name in STACKS]
    base = {"preset": "dev", "name": "dev", "ssh": {"public_keys": [KEY]}}
    for extra in (
        {"slurm": {"accounting": {"enabled": False}}},
        {"storage": {"backend": "beegfs", "count": 2, "data_disks_gib": [20]}},
        {"storage": None},
        {"networks": {"management": {"mode": "bridge", "bridge": "br0", "cidr": "10.9.0.0/24"}}},
    ):
        specs.append(ClusterSpec.model_validate(apply_preset({**base, **extra})))
    return specs


def test_a_role_image_carries_every_debian_package_its_nodes_ask_for() -> None:
    """So the packages step on a node booted from its role image installs nothing."""
    for spec in _variants():
        for node in plan_nodes(spec):
            wanted = packages_for(spec, node)
            assert set(wanted.debian) <= set(role_image_packages(node.role).all), (spec.name, node.name)


def test_role_images_start_from_the_one_list() -> None:
    for role in Role:
        assert set(ROLE_PACKAGES[role]) <= set(role_image_packages(role).all)

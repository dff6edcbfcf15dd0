"""Facts about base images that the checks need before anything is downloaded."""

from __future__ import annotations

import hashlib
import json
import math
import os
import struct
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from config.findings import Finding, brief
from config.models import BaseImage

GIB = 1024**3
QCOW2_MAGIC = b"QFI\xfb"  # qcow2 header: magic, version (4 bytes), ..., size (8 bytes, big-endian) at offset 24


def local_virtual_size(path: Path, fmt: str) -> int | None:
    """Bytes of the virtual disk in a local image file, read from its header; None if unreadable."""
    try:
        if fmt == "raw":
            return path.stat().st_size
        with path.open("rb") as handle:
            header = handle.read(32)
    except OSError:
        return None
    if len(header) < 32 or header[:4] != QCOW2_MAGIC:
        return None
    return int(struct.unpack(">Q", header[24:32])[0])


def image_virtual_size_gib(image: BaseImage) -> int | None:
    """The image's virtual size in whole GiB (rounded up): declared, or read from a local file."""
    if image.virtual_size_gib is not None:
        return image.virtual_size_gib
    if image.source.startswith("/"):
        size = local_virtual_size(Path(image.source), image.format)
        return math.ceil(size / GIB) if size else None
    return None


# --- manifests written by `make images` (hyperscaler/imagebuild.py writes them) -----------------------

MANIFEST_VERSION = 1
MANIFEST_FIELDS = ("source", "sha256", "format", "virtual_size_gib")  # what an entry gives a stack's image


class ManifestError(Exception):
    pass


def read_manifest(path: Path) -> dict[str, dict[str, Any]]:
    """The manifest's images: {name: {source, sha256, format, virtual_size_gib}}, pasteable under `images:`."""
    try:
        data = json.loads(path.read_text())
    except OSError as exc:
        raise ManifestError(f"cannot read the manifest {path}: {exc.strerror}") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ManifestError(f"the manifest {path} is not JSON: {exc}") from None
    if (
        not isinstance(data, dict)
        or data.get("version") != MANIFEST_VERSION
        or not isinstance(data.get("images"), dict)
    ):
        raise ManifestError(f"{path} is not a version {MANIFEST_VERSION} image manifest (written by make images)")
    images: dict[str, dict[str, Any]] = data["images"]
    return images


def resolve_manifests(cluster: dict[str, Any]) -> tuple[dict[str, Any], list[Finding]]:
    """Fill each `images` entry that names a manifest with the manifest's entry, read now; the schema and
    the checks then see an ordinary pinned image."""
    images = cluster.get("images")
    if not isinstance(images, dict):
        return cluster, []
    findings: list[Finding] = []
    resolved: dict[str, Any] = {}
    for key, entry in images.items():
        resolved[key] = entry
        if not isinstance(entry, dict) or not isinstance(entry.get("manifest"), str):
            continue
        path = f"images.{key}"
        given = sorted(set(entry) & {*MANIFEST_FIELDS, "trusted"})
        if given:
            findings.append(
                Finding(
                    path,
                    f"image {key!r} names a manifest and also sets {', '.join(given)}",
                    "take the image from the manifest (manifest, entry) or give it yourself (source, sha256), not both",
                )
            )
            continue
        if not entry["manifest"].startswith("/"):
            continue  # the schema reports a relative path
        try:
            listed = read_manifest(Path(entry["manifest"]))
        except ManifestError as exc:
            findings.append(Finding(f"{path}.manifest", str(exc), "build it with `make images` (docs/images.md)"))
            continue
        name = entry.get("entry") or key
        found = listed.get(str(name))
        if not isinstance(found, dict):
            findings.append(
                Finding(
                    f"{path}.entry" if "entry" in entry else f"{path}.manifest",
                    f"the manifest {entry['manifest']} has no image {brief(name)}",
                    f"use entry: one of {', '.join(sorted(listed)) or '(none: the manifest is empty)'}",
                )
            )
            continue
        resolved[key] = {**{k: found[k] for k in MANIFEST_FIELDS if k in found}, **entry}
    return {**cluster, "images": resolved}, findings


# --- the local cache that `hyperscaler image fetch` fills and the base volumes read -------------------

CACHE_ENV = "HYPERSCALER_IMAGE_CACHE"


def image_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """$HYPERSCALER_IMAGE_CACHE, else $XDG_CACHE_HOME/hyperscaler/images, else ~/.cache/hyperscaler/images:
    the same on both sides of `pulumi up` (the program and the fetch Command share the CLI's environment)."""
    env = os.environ if env is None else env
    if env.get(CACHE_ENV):
        return Path(env[CACHE_ENV])
    base = env.get("XDG_CACHE_HOME") or str(Path(env.get("HOME") or Path.home()) / ".cache")
    return Path(base) / "hyperscaler" / "images"


def cached_image_path(sha256: str, fmt: str, cache: Path) -> Path:
    """Content-addressed: a file in the cache is only ever the verified image with this checksum."""
    return cache / f"{sha256}.{fmt}"


def image_identity(image: BaseImage) -> str:
    """What the image is: its sha256, or for a trusted local file (content unknown) the hash of its path."""
    if image.sha256 is not None:
        return image.sha256
    return hashlib.sha256(f"trusted:{image.source}".encode()).hexdigest()


def volume_source(image: BaseImage, cache: Path) -> str:
    """The file the base volume is uploaded from: a local image where it is (checked in place), a
    downloaded one from the cache."""
    if image.is_local:
        return image.source
    assert image.sha256 is not None  # checks.image_sources: a download is always pinned
    return str(cached_image_path(image.sha256, image.format, cache))

"""ImageStore: the storage pool and the base images on one host.

Each pinned image is fetched and checked by a local Command (`hyperscaler image fetch`, on the machine that
runs pulumi, during `up` only: pulumi-command runs nothing in a preview) before its base Volume uploads the
file. A trusted local file is uploaded as it is.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_command.local as local
import pulumi_libvirt as libvirt

from components.identity import token, with_aliases
from components.node import as_secret
from components.provider_facts import fixed_name_options
from config.images import image_cache_dir, volume_source
from config.models import BaseImage, StoragePool
from render.images import base_volume_name, fetch_command

VOLUME = "libvirt:index/volume:Volume"


@dataclass(frozen=True)
class S3Credentials:
    """From Pulumi secret config; without them the fetch finds credentials the usual AWS ways."""

    access_key_id: pulumi.Input[str]
    secret_access_key: pulumi.Input[str]


@dataclass(frozen=True)
class ImageStoreArgs:
    pool: StoragePool
    images: dict[str, BaseImage]
    s3_credentials: S3Credentials | None = None


class ImageStore(pulumi.ComponentResource):
    pool_name: pulumi.Output[str]
    base_volume_ids: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: ImageStoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(token("ImageStore"), name, None, with_aliases("ImageStore", opts))
        pool = libvirt.Pool(
            f"{name}-pool",
            name=args.pool.name,
            type="dir",
            target=libvirt.PoolTargetArgs(path=args.pool.path),
            # The pool holds the data volumes: never deleted with the stack, and never replaced (a changed
            # name or path is refused by protect until an admin moves the data on purpose).
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True, protect=True),
        )
        self.pool_name = pool.name
        self.base_volume_ids = {}
        cache = image_cache_dir()
        for image_name, image in sorted(args.images.items()):
            checked: list[pulumi.Resource] = []
            if image.sha256 is not None:
                checked.append(self._fetch(f"{name}-{image_name}-fetch", image, args.s3_credentials))
            volume = libvirt.Volume(
                f"{name}-{image_name}",
                # The name carries the image's checksum: another image is another volume, so the root disks on
                # it (and their VMs) are replaced too, instead of finding new bytes under their overlays.
                name=base_volume_name(image_name, image),
                pool=pool.name,
                source=volume_source(image, cache),
                format=image.format,
                # Where the bytes were read from is not what the volume is (its name says that): another
                # cache directory, or another copy of the same image, replaces nothing.
                opts=fixed_name_options(VOLUME, self, depends_on=checked, ignore_changes=["source"]),
            )
            self.base_volume_ids[image_name] = volume.id
        self.register_outputs({"pool_name": self.pool_name, "base_volume_ids": self.base_volume_ids})

    def _fetch(self, name: str, image: BaseImage, credentials: S3Credentials | None) -> local.Command:
        environment = None
        if credentials is not None and image.source.startswith("s3://"):
            environment = {
                "AWS_ACCESS_KEY_ID": as_secret(credentials.access_key_id),
                "AWS_SECRET_ACCESS_KEY": as_secret(credentials.secret_access_key),
            }
        return local.Command(
            name,
            create=fetch_command(image),
            environment=environment,
            opts=pulumi.ResourceOptions(parent=self),
        )

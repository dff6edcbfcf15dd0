"""ImageStore: the storage pool and the base images on one host."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_libvirt as libvirt

from components.identity import token, with_aliases
from components.provider_facts import fixed_name_options
from config.models import BaseImage, StoragePool


@dataclass(frozen=True)
class ImageStoreArgs:
    pool: StoragePool
    images: dict[str, BaseImage]


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
        for image_name, image in sorted(args.images.items()):
            volume = libvirt.Volume(
                f"{name}-{image_name}",
                name=f"{image_name}-base.{image.format}",
                pool=pool.name,
                source=image.source,
                format=image.format,
                opts=fixed_name_options("libvirt:index/volume:Volume", self),
            )
            self.base_volume_ids[image_name] = volume.id
        self.register_outputs({"pool_name": self.pool_name, "base_volume_ids": self.base_volume_ids})

"""ImageStore: the storage pool and the base images on one host."""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_libvirt as libvirt

from config.models import BaseImage, StoragePool


@dataclass(frozen=True)
class ImageStoreArgs:
    pool: StoragePool
    images: dict[str, BaseImage]


class ImageStore(pulumi.ComponentResource):
    pool_name: pulumi.Output[str]
    base_volume_ids: dict[str, pulumi.Output[str]]

    def __init__(self, name: str, args: ImageStoreArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("hyperscaler:hpc:ImageStore", name, None, opts)
        pool = libvirt.Pool(
            f"{name}-pool",
            name=args.pool.name,
            type="dir",
            target=libvirt.PoolTargetArgs(path=args.pool.path),
            # The pool holds protected data volumes: never delete it with the stack.
            opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True),
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
                opts=pulumi.ResourceOptions(parent=self),
            )
            self.base_volume_ids[image_name] = volume.id
        self.register_outputs({"pool_name": self.pool_name, "base_volume_ids": self.base_volume_ids})

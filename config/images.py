"""Facts about base images that the checks need before anything is downloaded."""

from __future__ import annotations

import math
import struct
from pathlib import Path

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

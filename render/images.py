"""Base images as text: the base volume's name and the local command that fetches and checks an image."""

from __future__ import annotations

import shlex

from config.images import image_identity
from config.models import BaseImage

# The project's virtualenv (Pulumi.yaml: virtualenv), relative to the project directory, where pulumi runs
# the program and its local Commands; an absolute path would differ from one clone to the next.
PYTHON = ".venv/bin/python"
IDENTITY_CHARS = 12  # enough to tell images apart in a volume name; the full sha256 is checked on fetch


def base_volume_name(image_name: str, image: BaseImage) -> str:
    return f"{image_name}-{image_identity(image)[:IDENTITY_CHARS]}.{image.format}"


def fetch_command(image: BaseImage) -> str:
    """`hyperscaler image fetch` with the image's own settings; the cache directory is the runner's."""
    assert image.sha256 is not None  # a trusted local file is read as it is, with no command
    argv = [PYTHON, "-m", "hyperscaler", "image", "fetch", image.source, "--sha256", image.sha256]
    argv += ["--format", image.format]
    if image.s3 is not None:
        for option, value in (
            ("--endpoint-url", image.s3.endpoint_url),
            ("--region", image.s3.region),
            ("--profile", image.s3.profile),
        ):
            if value is not None:
                argv += [option, value]
    return " ".join(shlex.quote(arg) for arg in argv)

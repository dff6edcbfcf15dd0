"""The packages step's script for one node (config/packages.py says what it installs)."""

from __future__ import annotations

from config.packages import NodePackages
from render.common import RenderedFile
from render.remote import render_script
from render.repository import APT_REPO_LIB, repository_params


def render_packages_script(packages: NodePackages) -> RenderedFile:
    params: dict[str, object] = {
        "PACKAGES": " ".join(packages.debian),
        "REPO_PACKAGES": " ".join(packages.from_repository),
        **repository_params(packages.repository),
    }
    return render_script("packages", params, includes=("lib.sh", APT_REPO_LIB))

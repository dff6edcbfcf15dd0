"""The packages step's script for one node (config/packages.py says what it installs)."""

from __future__ import annotations

from config.packages import NodePackages
from render.common import RenderedFile
from render.remote import render_script


def render_packages_script(packages: NodePackages) -> RenderedFile:
    repo = packages.repository
    params: dict[str, object] = {
        "PACKAGES": " ".join(packages.debian),
        "REPO_NAME": "",
        "REPO_URL": "",
        "REPO_SUITE": "",
        "REPO_COMPONENTS": "",
        "REPO_KEY_URL": "",
        "REPO_KEY": "",
        "REPO_FINGERPRINT": "",
        "REPO_PACKAGES": "",
    }
    if repo is not None:
        params.update(
            REPO_NAME=repo.name,
            REPO_URL=repo.url,
            REPO_SUITE=repo.suite,
            REPO_COMPONENTS=" ".join(repo.components),
            REPO_KEY_URL=repo.key_url or "",
            REPO_KEY=repo.key or "",
            REPO_FINGERPRINT=repo.key_fingerprint,
            REPO_PACKAGES=" ".join(packages.from_repository),
        )
    return render_script("packages", params)

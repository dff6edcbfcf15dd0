"""The parameters of render/scripts/apt-repo.sh's add_apt_repository, for any step that adds a repository."""

from __future__ import annotations

from config.models.repository import AptRepository

APT_REPO_LIB = "apt-repo.sh"  # the include that defines add_apt_repository


def repository_params(repo: AptRepository | None) -> dict[str, object]:
    """REPO_NAME empty: no repository (the step installs from Debian only, or needs an image)."""
    if repo is None:
        return {
            k: ""
            for k in (
                "REPO_NAME",
                "REPO_URL",
                "REPO_SUITE",
                "REPO_COMPONENTS",
                "REPO_KEY_URL",
                "REPO_KEY",
                "REPO_FINGERPRINT",
            )
        }
    return {
        "REPO_NAME": repo.name,
        "REPO_URL": repo.url,
        "REPO_SUITE": repo.suite,
        "REPO_COMPONENTS": " ".join(repo.components),
        "REPO_KEY_URL": repo.key_url or "",
        "REPO_KEY": repo.key or "",
        "REPO_FINGERPRINT": repo.key_fingerprint,
    }

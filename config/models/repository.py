"""A third-party apt repository, trusted only with its pinned signing key: one model for every
repository the nodes may add (BeeGFS's, NVIDIA's), one shell function that adds it
(render/scripts/apt-repo.sh)."""

from __future__ import annotations

from pydantic import model_validator

from config.impact import Impact, setting
from config.models.base import Model
from config.types import AptWord, Fingerprint, Hostname, HttpsUrl, NonEmptyStr


class AptRepository(Model):
    name: Hostname = setting(
        impact=Impact.RESTART, doc="Short name: the keyring and the sources list file on the nodes are named after it."
    )
    url: HttpsUrl = setting(impact=Impact.RESTART, doc="Base URL of the repository (https only), e.g. a site mirror.")
    suite: AptWord = setting("/", impact=Impact.RESTART, doc="Suite (distribution); '/' for a flat repository.")
    components: list[AptWord] = setting(
        [], impact=Impact.RESTART, doc="Components; none for a flat repository, at least one otherwise."
    )
    key_url: HttpsUrl | None = setting(
        None, impact=Impact.RESTART, doc="Where the signing key is fetched from (https only), unless `key` is given."
    )
    key: NonEmptyStr | None = setting(
        None,
        impact=Impact.RESTART,
        doc="The signing key itself, ASCII-armored: for an air-gapped site (then nothing is fetched for it).",
    )
    key_fingerprint: Fingerprint = setting(
        impact=Impact.RESTART,
        doc="Fingerprint of the signing key: a key whose primary fingerprint differs is refused on the node, "
        "before apt trusts it.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> AptRepository:
        if (self.key is None) == (self.key_url is None):
            raise ValueError(
                "give the signing key either as key_url (fetched over https) or as key (the text), not both"
            )
        flat = self.suite.endswith("/")
        if flat and self.components:
            raise ValueError(f"suite {self.suite!r} is a flat repository, which has no components: remove them")
        if not flat and not self.components:
            raise ValueError(f"suite {self.suite!r} needs at least one component, e.g. main")
        return self

"""What changing a field does to a running cluster (its blast radius).

Every model field is declared through `setting(...)`, which records one Impact in the field's JSON
schema. docs/config-reference.md and `hyperscaler diff` read it back with `field_impacts`.
"""

from __future__ import annotations

import enum
from typing import Any

from pydantic import BaseModel, Field


class Impact(enum.StrEnum):
    """Ordered from harmless to dangerous; a change's impact is the worst of its fields."""

    IN_PLACE = "in-place"  # metadata, outputs or a libvirt attribute updated without touching the guest
    RECONFIGURE = "reconfigure"  # files pushed again and daemons told to re-read them
    RESTART = "restart"  # a service restarts; running jobs may be affected
    SCALE = "scale"  # VMs are added (growing) or drained and removed (shrinking); the other VMs stay
    REPLACE_VM = "replace-vm"  # the Domain (or its root disk) is destroyed and created again
    DATA_AT_RISK = "data-at-risk"  # a protected data volume would be replaced; Pulumi refuses until unprotected

    @property
    def rank(self) -> int:
        return list(Impact).index(self)


def setting(default: Any = ..., *, impact: Impact, doc: str, irreversible: bool = False, **kwargs: Any) -> Any:
    """A pydantic Field that documents itself and records its Impact. `irreversible`: once switched on, the
    software cannot switch it off again; `hyperscaler diff` says so when a change switches it on."""
    extra = kwargs.pop("json_schema_extra", {}) or {}
    extra = {**extra, "impact": impact.value} | ({"irreversible": True} if irreversible else {})
    return Field(default, description=doc, json_schema_extra=extra, **kwargs)


def impact_of(model: type[BaseModel], field_name: str) -> Impact | None:
    extra = model.model_fields[field_name].json_schema_extra
    if isinstance(extra, dict) and "impact" in extra:
        return Impact(str(extra["impact"]))
    return None


def is_irreversible(model: type[BaseModel], field_name: str) -> bool:
    extra = model.model_fields[field_name].json_schema_extra
    return isinstance(extra, dict) and extra.get("irreversible") is True


def irreversible_fields(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Dotted paths (list items as `[]`) of the fields that cannot be switched off once on."""
    found = set()
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        if is_irreversible(model, name):
            found.add(path)
        for sub in _nested_models(info.annotation):
            found |= irreversible_fields(sub, f"{path}{'[]' if _is_container(info.annotation) else ''}.")
    return found


def field_impacts(model: type[BaseModel], prefix: str = "") -> dict[str, tuple[Impact | None, str]]:
    """Flatten a model tree into {dotted.path: (impact, description)}; list items appear as `[]`."""
    out: dict[str, tuple[Impact | None, str]] = {}
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        out[path] = (impact_of(model, name), info.description or "")
        for sub in _nested_models(info.annotation):
            out.update(field_impacts(sub, f"{path}{'[]' if _is_container(info.annotation) else ''}."))
    return out


def _nested_models(annotation: Any) -> list[type[BaseModel]]:
    found: list[type[BaseModel]] = []
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    for arg in getattr(annotation, "__args__", ()) or ():
        found.extend(_nested_models(arg))
    return found


def _is_container(annotation: Any) -> bool:
    origin = getattr(annotation, "__origin__", None)
    return origin in (list, dict, tuple) or any(_is_container(a) for a in getattr(annotation, "__args__", ()) or ())

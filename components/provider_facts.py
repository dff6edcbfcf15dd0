"""What each provider does with a changed input: replace the resource, apply it in place, or accept it
and not apply it. The facts live in provider_facts.json beside this file (sources cited there), which
`hyperscaler diff`, the components and the provider doubles in e2e/ all read.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pulumi

FACTS_FILE = Path(__file__).resolve().parent / "provider_facts.json"


@dataclass(frozen=True)
class ResourceFacts:
    replace_all: bool
    replace: frozenset[str]
    replace_on_count: dict[str, frozenset[str]]  # list input -> fields whose change replaces
    replace_nested: dict[str, frozenset[str]]  # object input -> fields whose change replaces
    applied_all: bool
    applied: frozenset[str]

    def replaced_by(self, key: str, old: Any, new: Any) -> bool:
        """Does changing input `key` from `old` to `new` replace the resource?"""
        if old == new:
            return False
        if self.replace_all or key in self.replace:
            return True
        if key in self.replace_on_count:
            olds, news = list(old or []), list(new or [])
            if len(olds) != len(news):
                return True
            fields = self.replace_on_count[key]
            return any(_get(o, f) != _get(n, f) for o, n in zip(olds, news, strict=True) for f in fields)
        if key in self.replace_nested:
            return any(_get(old, f) != _get(new, f) for f in self.replace_nested[key])
        return False

    def applies(self, key: str) -> bool:
        """Does the provider apply an in-place change of `key` to the real object?"""
        return self.applied_all or key in self.applied


def _get(value: Any, field: str) -> Any:
    return value.get(field) if isinstance(value, dict) else None


@cache
def facts() -> dict[str, ResourceFacts]:
    raw = json.loads(FACTS_FILE.read_text())["resources"]
    out = {}
    for token, entry in raw.items():
        replace = entry.get("replace", [])
        applied = entry.get("applied_in_place", [])
        out[token] = ResourceFacts(
            replace_all=replace == "*",
            replace=frozenset(replace if replace != "*" else []),
            replace_on_count={k: frozenset(v) for k, v in entry.get("replace_on_count", {}).items()},
            replace_nested={k: frozenset(v) for k, v in entry.get("replace_nested", {}).items()},
            applied_all=applied == "*",
            applied=frozenset(applied if applied != "*" else []),
        )
    return out


def for_type(token: str) -> ResourceFacts | None:
    return facts().get(token)


def fixed_name_options(token: str, parent: pulumi.Resource, **extra: Any) -> pulumi.ResourceOptions:
    """Options for a resource the program names itself (libvirt refuses two objects of one name, and a
    Volume create even adopts the old one): when the provider can replace it, delete it first."""
    replaceable = (f := for_type(token)) is not None and (f.replace_all or bool(f.replace))
    return pulumi.ResourceOptions(parent=parent, delete_before_replace=replaceable, **extra)

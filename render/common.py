"""Helpers every renderer shares: one key=value formatter, stable YAML, content hashes."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import yaml

HEADER_NOTE = "# Managed by hyperscaler"  # first words of every file it writes; scripts look for them


def key_values(pairs: Mapping[str, Any] | Iterable[tuple[str, Any]], sep: str = "=", joiner: str = "\n") -> str:
    """The one `key=value` formatter: booleans as yes/no, lists comma-joined, None dropped."""
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    return joiner.join(f"{k}{sep}{_scalar(v)}" for k, v in items if v is not None)


def _scalar(value: Any) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ",".join(_scalar(v) for v in value)
    return str(value)


# libyaml's emitter when PyYAML was built with it (the wheels are): the same output, ten times faster.
_BaseDumper: type[yaml.SafeDumper] = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class _Dumper(_BaseDumper):  # type: ignore[valid-type,misc]
    """Block style, multi-line strings as literal blocks, so rendered YAML diffs well in review."""


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_representer)


def dump_yaml(data: Any) -> str:
    return yaml.dump(data, Dumper=_Dumper, sort_keys=True, default_flow_style=False, width=4096)


def content_hash(*texts: str) -> str:
    """sha256 over the exact bytes pushed: the trigger that makes a Command re-run only on change."""
    digest = hashlib.sha256()
    for text in texts:
        digest.update(len(text).to_bytes(8, "big"))
        digest.update(text.encode())
    return digest.hexdigest()


@dataclass(frozen=True)
class RenderedFile:
    """A file a node receives: absolute path on the node, content, mode and owner."""

    path: str
    content: str
    mode: str = "0644"
    owner: str = "root:root"
    secret: bool = False
    # The directory, when it has to be created; an existing one keeps its own mode and owner.
    dir_mode: str = "0755"
    dir_owner: str = "root:root"


T = TypeVar("T")


def in_dependency_order(items: Iterable[T], key: Callable[[T], str], requires: Callable[[T], Iterable[str]]) -> list[T]:
    """Each item after the items it requires (only requirements among `items` count); stable otherwise."""
    pending = list(items)
    known = {key(item) for item in pending}
    done: set[str] = set()
    ordered: list[T] = []
    while pending:
        ready = [item for item in pending if {r for r in requires(item) if r in known} <= done]
        if not ready:
            raise ValueError(f"a dependency cycle among: {[key(item) for item in pending]}")
        ordered += ready
        done.update(key(item) for item in ready)
        pending = [item for item in pending if key(item) not in done]
    return ordered

"""`hyperscaler diff`: what a change to a stack file would do, before `pulumi preview`.

Two views of the same change: the fields that differ, each with its declared Impact, and the resources
whose inputs differ between two offline plans, classified the way the providers will treat them
(pulumi-libvirt replaces a Domain for most inputs; any trigger change replaces a remote.Command).
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from components.provider_facts import for_type
from config.impact import Impact, field_impacts, irreversible_fields
from config.load import build_spec, read_stack_file
from config.mig import mig_effects
from config.models import ClusterSpec
from config.topology import plan_nodes
from hyperscaler.mocks import Registration
from hyperscaler.plan import run_plan


@dataclass(frozen=True)
class FieldChange:
    path: str
    impact: Impact | None
    before: Any
    after: Any
    action: str = "change"  # change | create | remove (a list item, or the nodes a count adds or removes)
    detail: str = ""  # e.g. the nodes a count change creates
    irreversible: bool = False  # switches on what the software cannot switch off again
    one_way_off: bool = False  # tries to switch off what the software cannot switch off


@dataclass(frozen=True)
class ResourceChange:
    action: str  # create | delete | update | replace
    type: str
    name: str
    keys: tuple[str, ...]
    protected: bool = False
    not_applied: tuple[str, ...] = ()  # changed inputs the provider accepts but never applies to the object


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, sub in value.items():
            out.update(flatten(sub, f"{prefix}.{key}" if prefix else str(key)))
        return out or {prefix: {}}
    if isinstance(value, list) and all(isinstance(v, dict) for v in value):
        out = {prefix: f"<{len(value)} item(s)>"}
        for i, sub in enumerate(value):
            out.update(flatten(sub, f"{prefix}[{i}]"))
        return out
    return {prefix: value}


def impact_of_path(path: str, impacts: dict[str, tuple[Impact | None, str]]) -> Impact | None:
    generic = "".join(("[]" if part.startswith("[") else part) for part in _split(path))
    while generic:
        if generic in impacts:
            return impacts[generic][0]
        cut = max(generic.rfind("."), generic.rfind("[]"))
        generic = generic[:cut] if cut > 0 else ""
    return None


def _split(path: str) -> list[str]:
    parts: list[str] = []
    token = ""
    i = 0
    while i < len(path):
        if path[i] == "[":
            end = path.index("]", i)
            parts += [token, path[i : end + 1]] if token else [path[i : end + 1]]
            token = ""
            i = end + 1
        else:
            token += path[i]
            i += 1
    if token:
        parts.append(token)
    return parts


def field_changes(before: ClusterSpec, after: ClusterSpec) -> list[FieldChange]:
    """Differences between two validated specs, defaults and presets included. A list item that appears
    or goes is one `create` or `remove` change, not one per field; a count that grows creates nodes and
    one that shrinks drains and removes them, which the diff says by name: neither replaces a VM."""
    impacts = field_impacts(ClusterSpec)
    one_way = irreversible_fields(ClusterSpec)
    old, new = flatten(before.model_dump(mode="json")), flatten(after.model_dump(mode="json"))
    old_nodes = {n.name for n in plan_nodes(before)}
    new_nodes = {n.name for n in plan_nodes(after)}
    items = _list_items(old) ^ _list_items(new)  # list items only one side has
    changes = []
    for item in sorted(items, key=_path_key):
        added = item in _list_items(new)
        detail = _nodes_text(new_nodes - old_nodes if added else old_nodes - new_nodes, added)
        impact = impact_of_path(item, impacts)
        changes.append(FieldChange(item, impact, None, None, "create" if added else "remove", detail))
    for path in sorted(set(old) | set(new), key=_path_key):
        if old.get(path) == new.get(path) or any(path == i or path.startswith((f"{i}.", f"{i}[")) for i in items):
            continue
        if isinstance(old.get(path), str) and old[path].startswith("<") and path in new:
            continue  # a list's length: its items are listed one by one
        impact = impact_of_path(path, impacts)
        if impact is Impact.SCALE and isinstance(old.get(path), int) and isinstance(new.get(path), int):
            grows = new[path] > old[path]
            names = new_nodes - old_nodes if grows else old_nodes - new_nodes
            action = "create" if grows else "remove"
            changes.append(FieldChange(path, impact, old[path], new[path], action, _nodes_text(names, grows)))
            continue
        generic = "".join(("[]" if part.startswith("[") else part) for part in _split(path))
        on, off = generic in one_way and new.get(path) is True, generic in one_way and old.get(path) is True
        changes.append(FieldChange(path, impact, old.get(path), new.get(path), irreversible=on, one_way_off=off))
    return changes


def _list_items(flat: dict[str, Any]) -> set[str]:
    """`list[i]` for every item of every list of models in a flattened spec."""
    found = set()
    for path in flat:
        for part_end in [i for i, ch in enumerate(path) if ch == "]"]:
            found.add(path[: part_end + 1])
    return found


def _path_key(path: str) -> list[object]:
    return [int(p[1:-1]) if p.startswith("[") else p for p in _split(path)]


def _nodes_text(names: set[str], created: bool) -> str:
    if not names:
        return ""
    listed = ", ".join(sorted(names))
    return f"creates {listed}" if created else f"drains {listed}, then removes them"


def resource_changes(before: list[Registration], after: list[Registration]) -> list[ResourceChange]:
    old = {r.urn: r for r in before}
    new = {r.urn: r for r in after}
    changes = []
    for urn in sorted(set(old) | set(new)):
        rec = new.get(urn) or old[urn]
        if not rec.custom:
            continue
        if urn not in old:
            changes.append(ResourceChange("create", rec.type, rec.name, ()))
        elif urn not in new:
            changes.append(ResourceChange("delete", rec.type, rec.name, (), old[urn].protect))
        else:
            a, b = old[urn].plain_inputs, new[urn].plain_inputs
            ignored_by_engine = set(new[urn].ignore_changes)  # ignoreChanges: the engine keeps the old value
            keys = tuple(sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in ignored_by_engine))
            if keys:
                facts = for_type(rec.type)
                replaced = facts is None or any(facts.replaced_by(k, a.get(k), b.get(k)) for k in keys)
                ignored = () if replaced or facts is None else tuple(k for k in keys if not facts.applies(k))
                action = "replace" if replaced else "update"
                changes.append(ResourceChange(action, rec.type, rec.name, keys, old[urn].protect, ignored))
    return changes


def stack_at_revision(path: Path, revision: str) -> Path:
    """Write the stack file as it was at a git revision next to a temp copy, for planning."""
    rel = path.resolve().relative_to(_git_root(path))
    text = subprocess.run(
        ["git", "show", f"{revision}:{rel}"], cwd=_git_root(path), capture_output=True, text=True, check=True
    ).stdout
    out = Path(subprocess.run(["mktemp", "-d"], capture_output=True, text=True, check=True).stdout.strip())
    target = out / path.name
    target.write_text(text)
    return target


def _git_root(path: Path) -> Path:
    top = subprocess.run(
        ["git", "rev-parse", "--show-toplevel"], cwd=path.resolve().parent, capture_output=True, text=True, check=True
    ).stdout.strip()
    return Path(top)


def diff_report(old_file: Path, new_file: Path) -> tuple[str, Impact | None]:
    before, after = build_spec(read_stack_file(old_file)), build_spec(read_stack_file(new_file))
    fields = field_changes(before.spec, after.spec)
    resources = resource_changes(run_plan(old_file).records, run_plan(new_file).records)
    worst = max((f.impact for f in fields if f.impact), key=lambda i: i.rank, default=None)
    lines = [f"Changes from {old_file} to {new_file}:", ""]
    if not fields:
        lines.append("  no field changed")
    for f in fields:
        label = f.impact.value if f.impact else "?"
        if f.action == "change":
            text = f"{f.path}: {f.before!r} -> {f.after!r}"
        elif f.before is None:
            text = f"{f.path}: {'added' if f.action == 'create' else 'removed'}"
        else:
            text = f"{f.path}: {f.before!r} -> {f.after!r}"
        lines.append(f"  {label:13} {text}{f': {f.detail}' if f.detail else ''}")
        if f.irreversible:
            lines.append(f"  {'':13} IRREVERSIBLE: once on, it cannot be switched off again ({f.path})")
        if f.one_way_off:
            lines.append(f"  {'':13} NOT APPLIED: {f.path} cannot be switched off; the running system keeps it on")
    effects = mig_effects(before.spec, after.spec)
    if effects:
        lines += ["", "MIG (on the nodes, in this order):"]
        lines += [f"  {effect}" for effect in effects]
    lines += ["", "Resources:"]
    if not resources:
        lines.append("  none change")
    for r in resources:
        note = "  (protected: Pulumi will refuse)" if r.protected and r.action in ("replace", "delete") else ""
        if r.not_applied:
            note += f"  (the provider accepts {', '.join(r.not_applied)} but does not apply it to the running object)"
        keys = f" [{', '.join(r.keys)}]" if r.keys else ""
        lines.append(f"  {r.action:8} {r.type}  {r.name}{keys}{note}")
    counts: dict[str, int] = {}
    for r in resources:
        counts[r.action] = counts.get(r.action, 0) + 1
    domains = sum(1 for r in resources if r.type.endswith("domain:Domain") and r.action in ("replace", "delete"))
    lines += [
        "",
        "Summary: "
        + (", ".join(f"{n} to {a}" for a, n in sorted(counts.items())) or "no change")
        + (f"; {domains} VM(s) replaced or removed" if domains else "; no VM is replaced"),
    ]
    if worst:
        lines.append(f"Worst field impact: {worst.value}")
    return "\n".join(lines), worst

"""Semantic checks for the `mig` section: each layout names an existing GPU group, resolves, and fits every
GPU model of the group by the placement model (config/mig.py). Every finding names the field path, the
group, the GPU model and the layout."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

from config.catalog import CATALOG, mig_models
from config.findings import Finding, Severity
from config.mig import layout_text, why_not
from config.models import ClusterSpec
from config.topology import NodePlan, Role


def _group_gpus(spec: ClusterSpec, nodes: list[NodePlan], group: str) -> list[tuple[str, str]]:
    """(model, "hosts[i].gpus[j]") of every GPU the group's nodes get, in node order, each model once."""
    seen: dict[str, str] = {}
    for node in nodes:
        if node.role is not Role.COMPUTE or node.group != group:
            continue
        hi, host = next((i, h) for i, h in enumerate(spec.hosts) if h.name == node.host)
        for gpu in node.gpus:
            gi = next(j for j, g in enumerate(host.gpus) if g.address == gpu.address)
            seen.setdefault(gpu.model, f"hosts[{hi}].gpus[{gi}]")
    return list(seen.items())


def mig_layouts(spec: ClusterSpec, nodes: list[NodePlan]) -> Iterator[Finding]:
    mig = spec.mig
    groups = {g.name: g for g in spec.compute}
    counts = Counter(entry.group for entry in mig.layouts)
    with_mig = ", ".join(m.name for m in mig_models())
    for i, entry in enumerate(mig.layouts):
        path = f"mig.layouts[{i}]"
        if counts[entry.group] > 1:
            yield Finding(f"{path}.group", f"compute group {entry.group!r} has more than one MIG layout", "keep one")
            continue
        group = groups.get(entry.group)
        if group is None:
            yield Finding(
                f"{path}.group",
                f"compute group {entry.group!r} does not exist",
                f"use one of: {', '.join(sorted(groups)) or 'none (add compute groups)'}",
            )
            continue
        if group.gpus_per_node == 0:
            yield Finding(
                f"{path}.group",
                f"compute group {entry.group!r} has no GPUs to partition (gpus_per_node is 0)",
                "give the group GPUs (gpus_per_node) or remove its MIG layout",
            )
            continue
        if entry.layout is not None and entry.layout not in mig.named_layouts:
            yield Finding(
                f"{path}.layout",
                f"there is no layout {entry.layout!r} in mig.named_layouts",
                f"use one of: {', '.join(sorted(mig.named_layouts)) or 'none (define it under mig.named_layouts)'}",
            )
            continue
        layout = entry.profiles if entry.profiles is not None else mig.named_layouts[entry.layout or ""]
        where = f"{path}.profiles" if entry.profiles is not None else f"{path}.layout"
        named = f" {entry.layout!r}" if entry.layout is not None else ""
        for model_name, gpu_path in _group_gpus(spec, nodes, entry.group):
            model = CATALOG.get(model_name)
            if model is None:
                continue  # checks.gpu_assignment reports the unknown model
            if model.mig is None:
                yield Finding(
                    f"{path}.group",
                    f"group {entry.group!r} gets {model.description} GPUs ({gpu_path}.model: {model_name}), which "
                    "have no MIG",
                    f"remove the group's MIG layout, or give it GPUs with MIG ({with_mig})",
                )
                continue
            problem = why_not(model.mig, layout)
            if problem is not None:
                yield Finding(
                    where,
                    f"group {entry.group!r}: the layout{named} {layout_text(layout, model.mig)} does not fit one "
                    f"{model.description} ({model_name}): {problem}",
                    "change the layout; docs/mig.md shows how instances are placed on this GPU",
                )


def unused_named_layouts(spec: ClusterSpec, nodes: list[NodePlan]) -> Iterator[Finding]:
    used = {entry.layout for entry in spec.mig.layouts}
    for name in sorted(spec.mig.named_layouts):
        if name not in used:
            yield Finding(
                f"mig.named_layouts.{name}",
                f"layout {name!r} is not used by any group in mig.layouts",
                "use it (layout: NAME) or remove it",
                Severity.WARNING,
            )


MIG_CHECKS = (mig_layouts, unused_named_layouts)

"""MIG layouts: whether one fits a GPU (the placement model), and which layout each compute node gets.

A layout is a mapping profile -> instances per GPU. It fits when every instance can be given a start
among its profile's allowed starts such that no two instances share a memory slice, no profile exceeds
its maximum count and at most one instance has media extensions (config/catalog.py). This is what the
driver enforces when instances are created; "compute slices add up to 7" is not: 4g + 4 x 1g adds up to
8 memory slices but a 1g instance never starts at slice 7, so it does not fit.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from config.catalog import CATALOG, GpuModel, MigGeometry, MigProfile
from config.models import ClusterSpec
from config.topology import NodePlan, Role, plan_nodes

Layout = Mapping[str, int]  # profile -> instances per GPU


@dataclass(frozen=True)
class Placed:
    profile: str
    start: int
    size: int

    def __str__(self) -> str:
        end = self.start + self.size - 1
        return f"{self.profile} at slice {self.start}" if end == self.start else f"{self.profile} at {self.start}-{end}"


def ordered(geometry: MigGeometry, layout: Layout) -> list[tuple[str, int]]:
    """Profiles largest first (memory, then compute), unknown ones last: the order layouts are written in."""

    def key(item: tuple[str, int]) -> tuple[int, int, str]:
        p = geometry.profile(item[0])
        return (-p.memory_slices, -p.compute_slices, item[0]) if p else (1, 0, item[0])

    return sorted(layout.items(), key=key)


def layout_text(layout: Layout, geometry: MigGeometry | None = None) -> str:
    layout = {name: count for name, count in layout.items() if count}
    items = ordered(geometry, layout) if geometry else sorted(layout.items())
    return ", ".join(f"{name}:{count}" for name, count in items)


def _instances(geometry: MigGeometry, layout: Layout) -> list[MigProfile]:
    """One entry per instance, the most constrained first so the search fails early."""
    profiles = [(geometry.profile(name), count) for name, count in layout.items()]
    flat = [p for p, count in profiles if p is not None for _ in range(count)]
    return sorted(flat, key=lambda p: (-p.memory_slices, len(p.starts), p.name))


def _search(geometry: MigGeometry, instances: list[MigProfile]) -> tuple[list[Placed], list[MigProfile]]:
    """The arrangement that places the most instances (all of them when the layout fits), and what is left.
    Equal instances take increasing starts, so each set of starts is tried once."""
    best: tuple[list[Placed], list[MigProfile]] = ([], list(instances))
    placed: list[Placed] = []

    def walk(i: int, used: int) -> bool:
        nonlocal best
        if len(placed) > len(best[0]):
            best = (list(placed), instances[i:])
        if i == len(instances):
            return True
        profile = instances[i]
        floor = placed[-1].start + 1 if placed and placed[-1].profile == profile.name else -1
        for start in profile.starts:
            mask = ((1 << profile.memory_slices) - 1) << start
            if start <= floor - 1 or used & mask or start + profile.memory_slices > geometry.memory_slices:
                continue
            placed.append(Placed(profile.name, start, profile.memory_slices))
            if walk(i + 1, used | mask):
                return True
            placed.pop()
        return False

    walk(0, 0)
    return best


def place(geometry: MigGeometry, layout: Layout) -> tuple[Placed, ...] | None:
    """Where each instance goes, or None when the layout does not fit (see why_not)."""
    layout = {name: count for name, count in layout.items() if count}
    if why_not(geometry, layout) is not None:
        return None
    placed, _ = _search(geometry, _instances(geometry, layout))
    return tuple(sorted(placed, key=lambda p: p.start))


def why_not(geometry: MigGeometry, layout: Layout) -> str | None:
    """None when the layout fits one GPU; otherwise what does not fit, in words."""
    layout = {name: count for name, count in layout.items() if count}
    unknown = [name for name in layout if geometry.profile(name) is None]
    if unknown:
        return f"it has no profile {', '.join(sorted(unknown))} (its profiles: {', '.join(geometry.profile_names)})"
    over = [
        f"{count} x {name} (at most {p.max_count})"
        for name, count in ordered(geometry, layout)
        if (p := geometry.profile(name)) is not None and count > p.max_count
    ]
    if over:
        return f"one GPU holds fewer instances than {', '.join(over)}"
    media = sum(count for name, count in layout.items() if (p := geometry.profile(name)) and p.media_extensions)
    if media > 1:
        return f"{media} instances with media extensions (+me), and one GPU has the media engines for one"
    memory = sum(p.memory_slices * count for name, count in layout.items() if (p := geometry.profile(name)))
    if memory > geometry.memory_slices:
        return f"it needs {memory} memory slices and the GPU has {geometry.memory_slices}"
    compute = sum(p.compute_slices * count for name, count in layout.items() if (p := geometry.profile(name)))
    if compute > geometry.compute_slices:
        return f"it needs {compute} compute slices and the GPU has {geometry.compute_slices}"
    instances = _instances(geometry, layout)
    placed, left = _search(geometry, instances)
    if not left:
        return None
    used = {s for p in placed for s in range(p.start, p.start + p.size)}
    free = [s for s in range(geometry.memory_slices) if s not in used]
    stuck = left[0]
    starts = ", ".join(map(str, stuck.starts))
    return (
        f"no arrangement fits: the closest ({', '.join(map(str, sorted(placed, key=lambda p: p.start)))}) leaves "
        f"{len(left)} instance(s) out, and a {stuck.name} needs {stuck.memory_slices} free slice(s) starting at "
        f"{starts}, while the free slices are {', '.join(map(str, free)) or 'none'}"
    )


# --- which layout each group and node gets ------------------------------------------------------------


@dataclass(frozen=True)
class GroupMig:
    """The MIG setting of one compute group: its layout per GPU, or None for MIG turned off."""

    group: str
    path: str  # mig.layouts[i]: where findings about it point
    layout: dict[str, int] | None
    layout_name: str | None  # the named layout it uses, if any


def group_settings(spec: ClusterSpec) -> dict[str, GroupMig]:
    """Every group listed in mig.layouts whose layout resolves (the checks report the others)."""
    out: dict[str, GroupMig] = {}
    for i, entry in enumerate(spec.mig.layouts):
        if entry.group in out:
            continue
        counts = entry.profiles if entry.profiles is not None else spec.mig.named_layouts.get(entry.layout or "")
        if counts is None:
            continue
        layout = {name: count for name, count in counts.items() if count} if spec.mig.enabled else None
        out[entry.group] = GroupMig(entry.group, f"mig.layouts[{i}]", layout, entry.layout)
    return out


@dataclass(frozen=True)
class NodeMig:
    """What MIG means on one compute node: its GPUs' models, the layout per GPU, and the typed GRES counts."""

    node: str
    models: tuple[GpuModel, ...]  # distinct models of the node's GPUs, in catalog order
    gpus: int
    layout: dict[str, int] | None  # per GPU; None: MIG is turned off on this node's GPUs

    @property
    def enabled(self) -> bool:
        return self.layout is not None

    @property
    def geometry(self) -> MigGeometry:
        geometry = self.models[0].mig
        assert geometry is not None  # checks_mig refuses a MIG layout on a GPU without MIG
        return geometry

    def totals_per_gpu(self) -> list[tuple[str, int]]:
        """(profile, instances per GPU), largest profile first."""
        return ordered(self.geometry, self.layout) if self.layout is not None else []

    def totals(self) -> list[tuple[str, int]]:
        """(profile, instances on the node), largest profile first: the node's typed GRES."""
        if self.layout is None:
            return []
        return [(name, count * self.gpus) for name, count in ordered(self.geometry, self.layout)]

    @property
    def needs_reset(self) -> bool:
        return any(m.mig is not None and m.mig.mode_change_needs_reset for m in self.models)


def node_mig(spec: ClusterSpec, node: NodePlan) -> NodeMig | None:
    """The node's MIG setting, or None when its group is not in mig.layouts (MIG is left alone)."""
    if node.role is not Role.COMPUTE or not node.gpus:
        return None
    setting = group_settings(spec).get(node.group)
    if setting is None:
        return None
    models = tuple(dict.fromkeys(CATALOG[g.model] for g in node.gpus if g.model in CATALOG))
    if not models or any(m.mig is None for m in models):
        return None
    return NodeMig(node.name, models, len(node.gpus), setting.layout)


def _describe(mig: NodeMig) -> str:
    models = " + ".join(m.description for m in mig.models)
    if mig.layout is None:
        return f"whole {models} GPUs (MIG off)"
    return f"{models} as " + ", ".join(f"{c} x {n}" for n, c in mig.totals_per_gpu()) + " per GPU"


def mig_effects(before: ClusterSpec, after: ClusterSpec) -> list[str]:
    """What `pulumi up` does on the nodes whose MIG setting changes, one line per set of nodes with the same
    change: for `hyperscaler diff`. New and removed nodes are the node count's business, not listed here."""
    old = {n.name: node_mig(before, n) for n in plan_nodes(before) if n.role is Role.COMPUTE}
    new = {n.name: node_mig(after, n) for n in plan_nodes(after) if n.role is Role.COMPUTE}
    groups: dict[str, list[str]] = {}
    for name in sorted(set(old) & set(new)):
        was, now = old[name], new[name]
        if was == now or (was is None and now is None):
            continue
        if now is None:
            text = (
                "leaves mig.layouts: its GPUs keep the MIG state they have (set mig.enabled: false first to "
                "turn MIG off)"
            )
        else:
            mode_changes = was is None or was.enabled != now.enabled
            steps = [
                "drained (its jobs are waited for, up to slurm.drain_timeout_s)",
                f"{'from ' + _describe(was) + ' ' if was is not None else ''}to {_describe(now)}",
            ]
            if mode_changes and now.needs_reset:
                steps.append(
                    "the MIG mode changes and this GPU needs a reset, which passthrough does not allow: the VM "
                    "reboots once and the node returns to service after its boot"
                )
            else:
                steps.append("slurmd restarts with the new devices and the node returns to service; no reboot")
            text = "; ".join(steps)
        groups.setdefault(text, []).append(name)
    lines = [f"{', '.join(names)}: {text}" for text, names in groups.items()]
    if lines:
        lines.append("slurmctld restarts for the new GRES counts (jobs survive); no VM is replaced")
    return lines

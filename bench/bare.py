"""The bare-SDK baseline for `make bench`: the same resource tree as a plan, registered with nothing else.

It takes the program's own registrations (type kind, name, parent) and registers exactly as many
resources, with the same parents, component or custom alike, under the same mocks: no inputs, no
dependencies, no renderers, no checks. The program's plan time divided by this one is its own overhead.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from hyperscaler import mocks
from hyperscaler.mocks import Registration


@dataclass(frozen=True)
class Shape:
    urn: str
    name: str
    custom: bool
    parent: str


def shape_of(records: list[Registration]) -> list[Shape]:
    return [Shape(r.urn, r.name, r.custom, r.parent) for r in records if not r.type.startswith("pulumi:providers:")]


class _Component(pulumi.ComponentResource):
    def __init__(self, name: str, opts: pulumi.ResourceOptions) -> None:
        super().__init__("bare:index:Component", name, None, opts)


def register_bare(shapes: list[Shape]) -> int:
    """Register the tree; returns how many resources were registered."""
    mocks.install(project="hyperscaler", stack="bare", preview=True)
    count = 0

    async def program() -> None:
        nonlocal count
        made: dict[str, pulumi.Resource] = {}
        for shape in shapes:
            parent = made.get(shape.parent)
            opts = pulumi.ResourceOptions(parent=parent)
            if shape.custom:
                made[shape.urn] = pulumi.CustomResource("bare:index:Resource", shape.name, {}, opts)
            else:
                component = _Component(shape.name, opts)
                made[shape.urn] = component
            count += 1
        for resource in made.values():
            if isinstance(resource, _Component):
                resource.register_outputs({})

    _sync_await(run_pulumi_func(program))
    return count

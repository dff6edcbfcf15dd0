"""Who each component is to the Pulumi engine: its type token, and every token it had before.

The engine knows a resource by its URN, which is made of the type tokens of the resource and all its
parents plus its name. Renaming a component's token would give every VM and data volume below it a new
URN: the engine would create new ones and delete the old ones. So a token is never simply renamed: the
old one is added to `former` here, every component declares its former tokens as aliases, and the engine
carries the existing resources over to the new URNs (children follow their parent's alias). The same
goes for a child renamed inside a component: pass the old name to `aliases_for(..., former_names=...)`.
tests/e2e proves it with the real engine on a stack deployed under a changed token.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi


@dataclass(frozen=True)
class ComponentType:
    token: str
    former: tuple[str, ...] = ()  # earlier tokens of this component, oldest first


PACKAGE = "hyperscaler:hpc"

TYPES: dict[str, ComponentType] = {
    kind: ComponentType(f"{PACKAGE}:{kind}")
    for kind in (
        "HpcCluster",
        "ClusterNetwork",
        "ImageStore",
        "Controller",
        "ComputeNode",
        "StorageNode",
        "NodePackages",
        "NodeVolumes",
        "ClusterDns",
        "SharedStorage",
        "BeegfsServices",
        "SlurmCluster",
        "Monitoring",
        "Containers",
    )
}


def token(kind: str) -> str:
    return TYPES[kind].token


def with_aliases(
    kind: str, opts: pulumi.ResourceOptions | None, former_names: tuple[str, ...] = ()
) -> pulumi.ResourceOptions:
    """`opts` plus an alias for every former token of `kind` and every former name of this component."""
    former = TYPES[kind].former
    aliases: list[pulumi.Input[str] | pulumi.Alias] = [pulumi.Alias(type_=old) for old in former]
    aliases += [pulumi.Alias(name=old) for old in former_names]
    return (
        pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(aliases=aliases))
        if aliases
        else (opts or pulumi.ResourceOptions())
    )

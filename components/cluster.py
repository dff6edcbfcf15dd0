"""HpcCluster: the whole cluster, from hosts to VMs. __main__ builds exactly one."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import pulumi
import pulumi_libvirt as libvirt

from components.containers import Containers, ContainersArgs
from components.dns import ClusterDns, ClusterDnsArgs
from components.identity import token, with_aliases
from components.images import ImageStore, ImageStoreArgs, S3Credentials
from components.monitoring import Monitoring, MonitoringArgs
from components.network import ClusterNetwork, ClusterNetworkArgs
from components.node import ComputeNode, Controller, DataDisk, Node, NodeArgs, StorageNode
from components.packages import NodePackages, NodePackagesArgs
from components.remote import node_access
from components.slurm import SlurmCluster, SlurmClusterArgs
from components.storage import SharedStorage, SharedStorageArgs
from components.volumes import NodeVolumes, NodeVolumesArgs
from config.images import image_identity
from config.models import ClusterSpec
from config.topology import NodePlan, Role, plan_nodes
from render.access import ssh_route
from render.cloudinit import render_meta_data, render_network_config, render_user_data
from render.domain_xslt import render_domain_xslt
from render.images import IDENTITY_CHARS
from render.names import cluster_names, uses_controller_dns
from render.placement import plan_placement
from render.slurm import controller

ROLE_COMPONENT: dict[Role, type[Node]] = {
    Role.CONTROLLER: Controller,
    Role.COMPUTE: ComputeNode,
    Role.STORAGE: StorageNode,
}


@dataclass(frozen=True)
class HpcClusterArgs:
    spec: ClusterSpec
    ssh_private_key: pulumi.Input[str] | None = None  # None: configuration steps use ssh-agent
    s3_credentials: S3Credentials | None = None  # None: s3:// images use the usual AWS credential sources
    alert_receiver_secret: pulumi.Input[str] | None = None  # hyperscaler:alertReceiverSecret, when set


def image_label(spec: ClusterSpec, node: NodePlan) -> str:
    """`debian-12 1a2b3c4d5e6f`: the node's image and its checksum (or a trusted file's path hash)."""
    return f"{node.image} {image_identity(spec.images[node.image])[:IDENTITY_CHARS]}"


def data_disks(node: NodePlan) -> tuple[DataDisk, ...]:
    """The node's protected volumes, named by the suffixes the domain XSLT gives disk serials for."""
    return tuple(DataDisk(v.suffix, v.size_gib) for v in node.volumes)


class HpcCluster(pulumi.ComponentResource):
    nodes: dict[str, Node]
    summary: dict[str, Any]

    def _child(self) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=self)

    def __init__(self, name: str, args: HpcClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(token("HpcCluster"), name, None, with_aliases("HpcCluster", opts))
        spec = args.spec
        plans = plan_nodes(spec)
        tunings = plan_placement(spec)  # pinning, NUMA and hugepages need every VM of a host at once
        dns_hosts = tuple(cluster_names(plans))
        mgmt_mode = spec.networks.management.mode

        providers: dict[str, libvirt.Provider] = {}
        networks: dict[str, ClusterNetwork] = {}
        stores: dict[str, ImageStore] = {}
        for host in spec.hosts:
            provider = libvirt.Provider(f"{name}-{host.name}", uri=host.uri, opts=pulumi.ResourceOptions(parent=self))
            on_host = pulumi.ResourceOptions(parent=self, providers={"libvirt": provider})
            providers[host.name] = provider
            networks[host.name] = ClusterNetwork(
                f"{name}-{host.name}-net", ClusterNetworkArgs(spec.networks, dns_hosts), on_host
            )
            stores[host.name] = ImageStore(
                f"{name}-{host.name}-images", ImageStoreArgs(host.pool, dict(spec.images), args.s3_credentials), on_host
            )

        self.nodes = {}
        for plan in plans:
            node_host = spec.host(plan.host)
            assert node_host is not None  # checks.hosts_exist ran before any resource was declared
            node_args = NodeArgs(
                plan=plan,
                domain_name=f"{spec.name}-{plan.name}",
                domain_type=node_host.domain_type,
                cpu_mode=node_host.cpu_mode,
                firmware=node_host.firmware,
                direct_boot=node_host.direct_boot,
                pool_name=stores[node_host.name].pool_name,
                base_volume_id=stores[node_host.name].base_volume_ids[plan.image],
                management_network_id=networks[node_host.name].management_id,
                interconnect_network_id=networks[node_host.name].interconnect_id,
                user_data=partial(render_user_data, spec, plan),
                meta_data=render_meta_data(spec, plan),
                network_config=render_network_config(spec, plan),
                domain_xslt=render_domain_xslt(tunings[plan.name]),
                dhcp_reservation=mgmt_mode != "bridge",
                data_disks=data_disks(plan),
                image_label=image_label(spec, plan),
            )
            component = ROLE_COMPONENT[plan.role]
            self.nodes[plan.name] = component(
                f"{name}-{plan.name}",
                node_args,
                pulumi.ResourceOptions(parent=self, providers={"libvirt": providers[node_host.name]}),
            )

        access = {plan.name: node_access(spec, plan, self.nodes[plan.name], args.ssh_private_key) for plan in plans}
        packages = NodePackages(f"{name}-packages", NodePackagesArgs(spec, plans, access), self._child())
        volumes = NodeVolumes(f"{name}-volumes", NodeVolumesArgs(spec, plans, packages.access), self._child())
        access = volumes.access  # from here on, every Command waits for its node's packages and volumes
        ctl = controller(plans)
        if uses_controller_dns(spec):
            ClusterDns(f"{name}-dns", ClusterDnsArgs(spec, plans, ctl, access[ctl.name]), self._child())
        shared = SharedStorage(f"{name}-storage", SharedStorageArgs(spec, plans, access), self._child())
        self.slurm = SlurmCluster(
            f"{name}-slurm", SlurmClusterArgs(spec, plans, access, tuple(shared.mounts.values())), self._child()
        )
        self.monitoring: Monitoring | None = None
        if spec.monitoring.enabled:
            self.monitoring = Monitoring(
                f"{name}-monitoring", MonitoringArgs(spec, plans, access, args.alert_receiver_secret), self._child()
            )

        self.containers: Containers | None = None
        if spec.containers.enabled:
            mon = self.monitoring
            self.containers = Containers(
                f"{name}-containers",
                ContainersArgs(
                    spec,
                    plans,
                    access,
                    {p.name: self.nodes[p.name].host_key for p in plans},
                    self.slurm.steps,
                    grafana_files=tuple(mon.grafana_files) if mon else (),
                    dcgm_files=dict(mon.dcgm_files) if mon else None,
                    monitoring=mon is not None,
                ),
                self._child(),
            )

        self.summary = {
            plan.name: {
                "role": plan.role.value,
                "host": plan.host,
                "management_address": plan.mgmt_ip,
                "interconnect_address": plan.ic_ip,
                "ssh": ssh_route(spec, plan).command,
            }
            for plan in plans
        }
        self.controller_address = next(p.mgmt_ip for p in plans if p.role is Role.CONTROLLER)
        # known_hosts lines for every node: `pulumi stack output known_hosts >> ~/.ssh/known_hosts`.
        self.known_hosts = pulumi.Output.all(*(self.nodes[p.name].host_key for p in plans)).apply(
            lambda keys: "".join(f"{p.name},{p.mgmt_ip} {key}\n" for p, key in zip(plans, keys, strict=True))
        )
        self.register_outputs(
            {
                "nodes": self.summary,
                "controller_address": self.controller_address,
                "canary": self.slurm.canary,
                "known_hosts": self.known_hosts,
                "monitoring": self.monitoring.endpoints if self.monitoring else None,
                "registry": self.containers.registry if self.containers else None,
            }
        )

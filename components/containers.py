"""Containers: Docker Engine and the cluster registry, the NVIDIA Container Toolkit (CDI), Enroot + Pyxis and
Apptainer, pushed by Commands like every other step; then a docker Provider per Docker node, reaching its
engine over SSH with the node's pinned host key, and the monitoring containers (Grafana, the DCGM
exporter) run through it.

Every file and step re-runs only when what it applies changes; no VM input depends on anything here, so
changing container settings never replaces a VM (tests/components/test_containers_component.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_command.remote as remote
import pulumi_docker as docker
import pulumi_random as random

from components.identity import token, with_aliases
from components.node import as_secret
from components.remote import NodeAccess, file_slug, push_file, run_script
from config.container_facts import (
    DOCKER_CERTS_D,
    apptainer_node,
    docker_node,
    enroot_node,
    registry_address,
    registry_on,
    toolkit_node,
)
from config.mig import node_mig
from config.models import ClusterSpec
from config.topology import NodePlan
from render.access import ssh_route
from render.common import RenderedFile, content_hash
from render.containers import (
    apptainer_script,
    cdi_unit_file,
    daemon_json_file,
    docker_container_fields,
    docker_host,
    docker_script,
    docker_ssh_opts,
    enroot_file,
    enroot_script,
    registry_files,
    registry_names,
    registry_script,
    registry_tls_files,
    sif_files,
    toolkit_script,
    trust_files,
    trust_script,
)
from render.grafana import (
    ContainerSpec,
    dcgm_counters_file,
    dcgm_exporter_container,
    grafana_container,
    grafana_files,
)
from render.remote import as_root
from render.slurm import controller
from render.tls import TlsPair, self_signed


@dataclass(frozen=True)
class ContainersArgs:
    spec: ClusterSpec
    nodes: list[NodePlan]
    access: dict[str, NodeAccess]  # each waits for its node's packages and mounted volumes
    host_keys: dict[str, pulumi.Input[str]]  # node -> its SSH host public key ("ssh-ed25519 AAAA...")
    slurm_steps: dict[str, remote.Command]  # "node:step": the toolkit waits for the node's MIG step
    grafana_files: tuple[pulumi.Resource, ...] = ()  # Monitoring.grafana_files: what Grafana mounts
    dcgm_files: dict[str, pulumi.Resource] | None = None  # GPU node -> its counters file
    monitoring: bool = False  # run Grafana and the DCGM exporter


class Containers(pulumi.ComponentResource):
    docker_providers: dict[str, docker.Provider]  # node -> the provider that reaches its engine
    registry: str | None  # host:port of the cluster registry
    steps: dict[str, remote.Command]  # "node:step"

    def __init__(self, name: str, args: ContainersArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(token("Containers"), name, None, with_aliases("Containers", opts))
        spec, nodes = args.spec, args.nodes
        ctl = controller(nodes)
        child = pulumi.ResourceOptions(parent=self)
        self.steps = {}
        self.docker_providers = {}
        self.registry = registry_address(spec, ctl) if registry_on(spec) else None

        def push(
            node: str,
            file: RenderedFile,
            content: pulumi.Input[str] | None = None,
            after: tuple = (),
            removable: bool = False,
        ) -> remote.Command:
            return push_file(
                f"{name}-{node}-{file_slug(file.path)}",
                file,
                args.access[node],
                self,
                content,
                list(after),
                removable=removable,
            )

        # The registry's certificate: an Ed25519 key from a seed kept in state, so the same certificate
        # comes back on every run; the key is a secret from the seed to the file on the controller.
        cert: pulumi.Output[str] | None = None
        if registry_on(spec):
            seed = random.RandomBytes(f"{name}-registry-tls-seed", length=32, opts=child)
            dns, addresses = registry_names(spec, ctl)
            pair: pulumi.Output[TlsPair] = as_secret(seed.base64).apply(
                lambda b: self_signed(b, ctl.name, dns, addresses)
            )
            cert = pulumi.Output.unsecret(pair.apply(lambda p: p.cert_pem))
            key = as_secret(pair.apply(lambda p: p.key_pem))
            tls = registry_tls_files()
            pushed = [push(ctl.name, f) for f in registry_files(spec, ctl)]
            pushed.append(push(ctl.name, tls.cert, cert))
            pushed.append(push(ctl.name, tls.key, key))
            self.steps[f"{ctl.name}:registry"] = run_script(
                f"{name}-{ctl.name}-registry",
                registry_script(spec, ctl),
                [
                    *(content_hash(f.content) for f in registry_files(spec, ctl)),
                    cert.apply(content_hash),
                    pulumi.Output.secret(key.apply(content_hash)),
                ],
                args.access[ctl.name],
                self,
                pushed,
            )
            for f in sif_files(spec):
                push(ctl.name, f)

        for node in nodes:
            access = args.access[node.name]
            wants_docker = docker_node(spec, node)
            trusting = wants_docker or enroot_node(spec, node) or apptainer_node(spec, node)
            if cert is not None and trusting:
                # Docker's copy is named by the registry's address: when that moves, the old one goes.
                ca_files = [
                    push(node.name, f, cert, removable=f.path.startswith(DOCKER_CERTS_D))
                    for f in trust_files(spec, ctl)
                ]
                self.steps[f"{node.name}:container-trust"] = run_script(
                    f"{name}-{node.name}-container-trust", trust_script(), [cert.apply(content_hash)], access, self,
                    ca_files,
                )  # fmt: skip
            toolkit = None
            if toolkit_node(spec, node):
                unit = cdi_unit_file(node_mig(spec, node) is not None)
                after = [push(node.name, unit)]
                mig = args.slurm_steps.get(f"{node.name}:mig")
                after += [mig] if mig is not None else []
                toolkit = run_script(
                    f"{name}-{node.name}-nvidia-toolkit", toolkit_script(spec, wants_docker),
                    [content_hash(unit.content)], access, self, after,
                )  # fmt: skip
                self.steps[f"{node.name}:nvidia-toolkit"] = toolkit
            if enroot_node(spec, node):
                conf = enroot_file(spec)
                self.steps[f"{node.name}:enroot"] = run_script(
                    f"{name}-{node.name}-enroot", enroot_script(spec), [content_hash(conf.content)], access, self,
                    [push(node.name, conf)],
                )  # fmt: skip
            if apptainer_node(spec, node):
                self.steps[f"{node.name}:apptainer"] = run_script(
                    f"{name}-{node.name}-apptainer", apptainer_script(spec), [], access, self
                )
            if wants_docker:
                daemon = daemon_json_file(spec, node)
                after = [push(node.name, daemon), *([toolkit] if toolkit is not None else [])]
                step = run_script(
                    f"{name}-{node.name}-docker", docker_script(spec, node, spec.ssh.user),
                    [content_hash(daemon.content)], access, self, after,
                )  # fmt: skip
                self.steps[f"{node.name}:docker"] = step
                self.docker_providers[node.name] = self._engine(name, spec, node, args.host_keys[node.name], step)

        if args.monitoring and self.docker_providers:
            self._monitoring_containers(name, spec, ctl, nodes, args)

        self.register_outputs({"registry": self.registry, "docker_hosts": sorted(self.docker_providers)})

    def _engine(
        self, name: str, spec: ClusterSpec, node: NodePlan, host_key: pulumi.Input[str], docker_step: pulumi.Resource
    ) -> docker.Provider:
        """The node's engine over SSH: `ssh://user@address`, its host key pinned through ssh_opts."""
        route = ssh_route(spec, node)
        return docker.Provider(
            f"{name}-{node.name}-engine",
            host=docker_host(route),
            ssh_opts=pulumi.Output.from_input(host_key).apply(lambda key: docker_ssh_opts(route, key)),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[docker_step]),
        )

    def _start_container(
        self, name: str, node: str, c: ContainerSpec, after: list[pulumi.Resource], contents: list[str]
    ) -> docker.Container:
        provider = self.docker_providers[node]
        on_node = pulumi.ResourceOptions(parent=self, provider=provider)
        image = docker.RemoteImage(f"{name}-{node}-{c.name}-image", name=c.image, keep_locally=True, opts=on_node)
        fields = docker_container_fields(c)
        return docker.Container(
            f"{name}-{node}-{c.name}",
            name=str(fields["name"]),
            image=image.image_id,
            command=list(fields["command"]) or None,  # type: ignore[call-overload]
            envs=fields["envs"],
            mounts=[docker.ContainerMountArgs(**m) for m in fields["mounts"]],  # type: ignore[attr-defined]
            network_mode=str(fields["network_mode"]),
            user=fields["user"],
            runtime=fields["runtime"],
            capabilities=docker.ContainerCapabilitiesArgs(adds=fields["capabilities"]) if c.capabilities else None,  # type: ignore[arg-type]
            restart=str(fields["restart"]),
            # A changed mounted file restarts the container (a new one reads it); nothing else re-creates it.
            labels=[docker.ContainerLabelArgs(label="hyperscaler.files", value=content_hash(*contents))],
            opts=pulumi.ResourceOptions(parent=self, provider=provider, depends_on=after),
        )

    def _monitoring_containers(
        self, name: str, spec: ClusterSpec, ctl: NodePlan, nodes: list[NodePlan], args: ContainersArgs
    ) -> None:
        grafana = grafana_container(spec, ctl)
        dirs = self._make_dirs(name, ctl.name, grafana, args.access[ctl.name])
        contents = [f.content for f in grafana_files(spec)]
        self._start_container(name, ctl.name, grafana, [*args.grafana_files, *dirs], contents)
        for node in nodes:
            if node.gpus and node.name in self.docker_providers:
                dcgm = dcgm_exporter_container(node)
                files = (args.dcgm_files or {}).get(node.name)
                after = [files] if files is not None else []
                self._start_container(name, node.name, dcgm, after, [dcgm_counters_file().content])

    def _make_dirs(self, name: str, node: str, c: ContainerSpec, access: NodeAccess) -> list[pulumi.Resource]:
        made: list[pulumi.Resource] = []
        for path, owner, mode in c.host_dirs:
            user, _, group = owner.partition(":")
            command = as_root(f"install -d -m {mode} -o {user} -g {group or user} {path}", access.user)
            made.append(
                remote.Command(
                    f"{name}-{node}-{c.name}-{file_slug(path)}",
                    connection=access.connection,
                    create=command,
                    triggers=[access.instance],
                    opts=pulumi.ResourceOptions(parent=self, depends_on=[access.domain, *access.after]),
                )
            )
        return made

"""Which nodes run what of the containers section, and the paths and ports the renderers, components and
docs share (docs/containers.md)."""

from __future__ import annotations

from config.models import ClusterSpec
from config.topology import NodePlan, Role

DAEMON_JSON = "/etc/docker/daemon.json"
DOCKER_CERTS_D = "/etc/docker/certs.d"  # <registry host:port>/ca.crt: the CA Docker trusts for that registry
REGISTRY_ETC = "/etc/docker/registry"
REGISTRY_CONFIG = f"{REGISTRY_ETC}/config.yml"  # Debian's docker-registry reads this one
REGISTRY_CERT = f"{REGISTRY_ETC}/hyperscaler.crt"
REGISTRY_KEY = f"{REGISTRY_ETC}/hyperscaler.key"
REGISTRY_STATE_DIR = "registry"  # below the controller's protected state volume
ENROOT_CONF = "/etc/enroot/enroot.conf.d/hyperscaler.conf"
PLUGSTACK_CONF = "/etc/slurm/plugstack.conf"
CDI_DIR = "/etc/cdi"  # where the boot-time unit writes nvidia.yaml (nvidia-ctk cdi generate)
NVIDIA_RUNTIME_CONFIG = "/etc/nvidia-container-runtime/config.toml"
CDI_UNIT = "/etc/systemd/system/hyperscaler-nvidia-cdi.service"
SIF_TEMPLATE = "/usr/local/share/hyperscaler/sif-build.sbatch"
SIF_COMMAND = "/usr/local/bin/hpc-sif-build"


def docker_node(spec: ClusterSpec, node: NodePlan) -> bool:
    """Docker Engine: the controller; GPU nodes when monitoring is on (DCGM exporter); compute if asked."""
    c = spec.containers
    if not c.enabled:
        return False
    if node.role is Role.CONTROLLER:
        return True
    if node.role is Role.COMPUTE:
        return c.docker.compute or (spec.monitoring.enabled and bool(node.gpus))
    return False


def registry_on(spec: ClusterSpec) -> bool:
    return spec.containers.enabled and spec.containers.registry.enabled


def toolkit_node(spec: ClusterSpec, node: NodePlan) -> bool:
    """The NVIDIA Container Toolkit: every GPU node (Docker, Enroot and Apptainer all use its CDI spec)."""
    return spec.containers.enabled and node.role is Role.COMPUTE and bool(node.gpus)


def enroot_node(spec: ClusterSpec, node: NodePlan) -> bool:
    c = spec.containers
    return c.enabled and c.enroot.enabled and node.role is Role.COMPUTE


def pyxis_node(spec: ClusterSpec, node: NodePlan) -> bool:
    """srun loads SPANK plugins on the submit host too: Pyxis's options exist in srun only where it is loaded."""
    c = spec.containers
    return c.enabled and c.enroot.enabled and node.role in (Role.COMPUTE, Role.CONTROLLER)


def apptainer_node(spec: ClusterSpec, node: NodePlan) -> bool:
    c = spec.containers
    return c.enabled and c.apptainer.enabled and node.role is Role.COMPUTE


def registry_address(spec: ClusterSpec, ctl: NodePlan) -> str:
    """host:port as images name it: the controller's management address (no DNS needed on any node)."""
    return f"{ctl.mgmt_ip}:{spec.containers.registry.port}"

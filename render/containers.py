"""Docker's daemon.json, the registry's configuration and certificate trust, the NVIDIA runtime in CDI mode,
Enroot's settings, Pyxis's plugstack.conf, the SIF build job and every containers step script. Pure.

components/containers.py turns these into Commands; the docker Provider per node and the monitoring
containers are there too. docs/containers.md says what each file does on a node.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from config.container_facts import (
    CDI_DIR,
    CDI_UNIT,
    DAEMON_JSON,
    DOCKER_CERTS_D,
    ENROOT_CONF,
    PLUGSTACK_CONF,
    REGISTRY_CERT,
    REGISTRY_CONFIG,
    REGISTRY_KEY,
    REGISTRY_STATE_DIR,
    SIF_COMMAND,
    SIF_TEMPLATE,
    registry_address,
    toolkit_node,
)
from config.models import ClusterSpec
from config.topology import NodePlan
from render.access import SshRoute
from render.common import HEADER_NOTE, RenderedFile, dump_yaml
from render.grafana import ContainerSpec
from render.remote import render_script
from render.repository import APT_REPO_LIB, repository_params
from render.volumes import STATE_MOUNT

STAGING = "/etc/hyperscaler/docker"  # daemon.json is pushed here; the docker step checks it, then installs it
STAGED_DAEMON_JSON = f"{STAGING}/daemon.json"
REGISTRY_DATA = f"{STATE_MOUNT}/{REGISTRY_STATE_DIR}"
REGISTRY_USER = "docker-registry"  # the user Debian's docker-registry package runs as
SYSTEM_CA = "/usr/local/share/ca-certificates/hyperscaler-registry.crt"
NVIDIA_RUNTIME = "nvidia"
NVIDIA_RUNTIME_PATH = "nvidia-container-runtime"  # what `nvidia-ctk runtime configure --runtime=docker` writes
CDI_SPEC = f"{CDI_DIR}/nvidia.yaml"
PYXIS_RUNTIME = "/run/pyxis"
LOG_MAX_SIZE = "50m"
LOG_MAX_FILES = "3"


@dataclass(frozen=True)
class RegistryTls:
    """The registry's certificate (public: every node trusts it) and key (a secret) as files."""

    cert: RenderedFile
    key: RenderedFile


def render_daemon_json(spec: ClusterSpec, node: NodePlan) -> str:
    """Docker Engine 20.10's daemon.json. GPU nodes get the NVIDIA runtime exactly as `nvidia-ctk runtime
    configure --runtime=docker` writes it (tests/integration/test_containers_real.py compares them); it
    stays a named runtime, not the default: a container asks for it (`--runtime nvidia`)."""
    docker = spec.containers.docker
    config: dict[str, object] = {
        "live-restore": docker.live_restore,
        "log-driver": "json-file",
        "log-opts": {"max-file": LOG_MAX_FILES, "max-size": LOG_MAX_SIZE},
    }
    if docker.registry_mirrors:
        config["registry-mirrors"] = list(docker.registry_mirrors)
    if toolkit_node(spec, node):
        config["runtimes"] = {NVIDIA_RUNTIME: {"args": [], "path": NVIDIA_RUNTIME_PATH}}
    return json.dumps(config, indent=2, sort_keys=True) + "\n"


def daemon_json_file(spec: ClusterSpec, node: NodePlan) -> RenderedFile:
    return RenderedFile(STAGED_DAEMON_JSON, render_daemon_json(spec, node))


def registry_names(spec: ClusterSpec, ctl: NodePlan) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(DNS names, addresses) the registry's certificate is valid for."""
    domain = spec.networks.management.domain
    return (ctl.name, f"{ctl.name}.{domain}"), (ctl.mgmt_ip,)


def render_registry_config(spec: ClusterSpec, ctl: NodePlan) -> str:
    """docker-registry (distribution 2.8)'s config.yml: images on the protected state volume, TLS only."""
    config = {
        "version": 0.1,
        "log": {"level": "info", "fields": {"service": "registry"}},
        "storage": {
            "filesystem": {"rootdirectory": REGISTRY_DATA},
            "delete": {"enabled": True},
            "cache": {"blobdescriptor": "inmemory"},
        },
        "http": {
            "addr": registry_address(spec, ctl),
            "tls": {"certificate": REGISTRY_CERT, "key": REGISTRY_KEY},
            "headers": {"X-Content-Type-Options": ["nosniff"]},
        },
        "health": {"storagedriver": {"enabled": True, "interval": "10s", "threshold": 3}},
    }
    return (
        f"{HEADER_NOTE}: the cluster's image registry. Edit the stack file, not this file: `pulumi up` "
        "overwrites it.\n" + dump_yaml(config)
    )


def registry_files(spec: ClusterSpec, ctl: NodePlan) -> list[RenderedFile]:
    return [RenderedFile(REGISTRY_CONFIG, render_registry_config(spec, ctl))]


def registry_tls_files() -> RegistryTls:
    """Contents come at deploy time (render/tls.py from a seed kept in state); the key only its user reads."""
    return RegistryTls(
        cert=RenderedFile(REGISTRY_CERT, ""),
        key=RenderedFile(REGISTRY_KEY, "", mode="0400", owner=f"{REGISTRY_USER}:{REGISTRY_USER}", secret=True),
    )


def trust_files(spec: ClusterSpec, ctl: NodePlan) -> list[RenderedFile]:
    """Where a node puts the registry's certificate: Docker's per-registry CA (no insecure-registries), and
    the system store, which Enroot (curl) and Apptainer read. Contents come at deploy time."""
    return [
        RenderedFile(f"{DOCKER_CERTS_D}/{registry_address(spec, ctl)}/ca.crt", ""),
        RenderedFile(SYSTEM_CA, ""),
    ]


def render_enroot_conf(spec: ClusterSpec) -> str:
    enroot = spec.containers.enroot
    lines = [
        f"# {HEADER_NOTE.removeprefix('# ')}: Enroot's paths (enroot.conf(5) keys), per user.",
        f"ENROOT_RUNTIME_PATH {enroot.runtime_path}",
        f"ENROOT_CACHE_PATH {enroot.cache_path}",
        f"ENROOT_DATA_PATH {enroot.data_path}",
        "ENROOT_MOUNT_HOME yes",
        "ENROOT_RESTRICT_DEV yes",
        "ENROOT_ROOTFS_WRITABLE yes",
    ]
    return "\n".join(lines) + "\n"


def enroot_file(spec: ClusterSpec) -> RenderedFile:
    return RenderedFile(ENROOT_CONF, render_enroot_conf(spec))


def render_plugstack_conf(spec: ClusterSpec) -> str:
    """`optional`: slurmd and srun start without the plugin (a node whose image lacks Pyxis still joins);
    with it, srun has --container-image. No include: configless slurmd receives this one file."""
    plugin = spec.containers.enroot.pyxis_plugin
    return (
        f"{HEADER_NOTE}: SPANK plugins. `optional`: SLURM starts where the plugin is missing.\n"
        f"optional {plugin} runtime_path={PYXIS_RUNTIME} container_scope=job\n"
    )


def plugstack_file(spec: ClusterSpec) -> RenderedFile | None:
    c = spec.containers
    return RenderedFile(PLUGSTACK_CONF, render_plugstack_conf(spec)) if c.enabled and c.enroot.enabled else None


def render_cdi_unit(mig: bool) -> str:
    """Regenerate the CDI spec at every boot, after the driver (and the MIG manager, which creates the MIG
    devices the spec lists), before anything starts a GPU container or job."""
    after = "nvidia-persistenced.service" + (" nvidia-mig-manager.service" if mig else "")
    return (
        f"{HEADER_NOTE}: the CDI spec of this node's GPUs, made at boot.\n"
        "[Unit]\n"
        "Description=hyperscaler: NVIDIA CDI spec (nvidia-ctk cdi generate)\n"
        f"After={after} systemd-modules-load.service\n"
        "Before=docker.service slurmd.service\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"ExecStart=/usr/bin/nvidia-ctk cdi generate --output={CDI_SPEC}\n"
        "RemainAfterExit=yes\n"
        "[Install]\n"
        "WantedBy=multi-user.target\n"
    )


def cdi_unit_file(mig: bool) -> RenderedFile:
    return RenderedFile(CDI_UNIT, render_cdi_unit(mig))


def render_sif_template(spec: ClusterSpec) -> str:
    """The SLURM job that converts an image of the cluster registry into a SIF on shared storage."""
    return (SIF_TEMPLATE_BODY).replace("@SIF_DIR@", sif_dir(spec))


def sif_dir(spec: ClusterSpec) -> str:
    storage = spec.storage
    base = storage.mount_point if storage is not None and storage.count else "/var/lib/hyperscaler"
    return f"{base}/{spec.containers.apptainer.sif_dir}"


SIF_TEMPLATE_BODY = """#!/usr/bin/env bash
# Managed by hyperscaler: build a SIF from a Docker image, as a SLURM job (docs/containers.md).
#   sbatch sif-build.sbatch REGISTRY/PATH:TAG NAME   ->   @SIF_DIR@/NAME.sif
#SBATCH --job-name=sif-build
#SBATCH --output=sif-build-%j.log
set -euo pipefail
image=${1:?usage: sbatch sif-build.sbatch REGISTRY/PATH:TAG NAME}
name=${2:?usage: sbatch sif-build.sbatch REGISTRY/PATH:TAG NAME}
case $name in
  */* | .* | '') echo "NAME is a file name without '/': $name" >&2; exit 2 ;;
esac
out="@SIF_DIR@/$name.sif"
mkdir -p "@SIF_DIR@"
tmp=$(mktemp "@SIF_DIR@/.$name.XXXXXX.sif")
trap 'rm -f "$tmp"' EXIT
apptainer build --force "$tmp" "docker://$image"
mv -f "$tmp" "$out"
echo "built $out from $image"
"""

SIF_COMMAND_BODY = """#!/usr/bin/env bash
# Managed by hyperscaler: hpc-sif-build REGISTRY/PATH:TAG NAME [sbatch options...]
# Submits the SIF build job (@TEMPLATE@); the SIF lands in @SIF_DIR@/NAME.sif.
set -euo pipefail
[ "$#" -ge 2 ] || { echo "usage: hpc-sif-build REGISTRY/PATH:TAG NAME [sbatch options...]" >&2; exit 2; }
image=$1 name=$2
shift 2
exec sbatch "$@" @TEMPLATE@ "$image" "$name"
"""


def sif_files(spec: ClusterSpec) -> list[RenderedFile]:
    """On the controller (the submit host): the job template and the command that submits it."""
    command = SIF_COMMAND_BODY.replace("@TEMPLATE@", SIF_TEMPLATE).replace("@SIF_DIR@", sif_dir(spec))
    return [
        RenderedFile(SIF_TEMPLATE, render_sif_template(spec), mode="0755"),
        RenderedFile(SIF_COMMAND, command, mode="0755"),
    ]


# --- step scripts ---


def docker_script(spec: ClusterSpec, node: NodePlan, admin: str) -> RenderedFile:
    """Install daemon.json once a real dockerd accepts it (the old one comes back if not), start Docker,
    and make the docker group exactly the admin (pulumi-docker's SSH transport) plus group_members."""
    members = sorted({*spec.containers.docker.group_members, *([admin] if admin != "root" else [])})
    return render_script(
        "docker",
        {"STAGED": STAGED_DAEMON_JSON, "DAEMON_JSON": DAEMON_JSON, "GROUP_MEMBERS": " ".join(members)},
    )


def registry_script(spec: ClusterSpec, ctl: NodePlan) -> RenderedFile:
    return render_script(
        "registry",
        {
            "CONFIG": REGISTRY_CONFIG,
            "CERT": REGISTRY_CERT,
            "DATA_DIR": REGISTRY_DATA,
            "STATE_MOUNT": STATE_MOUNT,
            "ADDRESS": registry_address(spec, ctl),
            "REGISTRY_USER": REGISTRY_USER,
        },
    )


def trust_script() -> RenderedFile:
    return render_script("container-trust", {"SYSTEM_CA": SYSTEM_CA})


def toolkit_script(spec: ClusterSpec, docker: bool) -> RenderedFile:
    toolkit = spec.containers.nvidia_toolkit
    return render_script(
        "nvidia-toolkit",
        {
            "PACKAGES": " ".join(toolkit.packages),
            "CDI_SPEC": CDI_SPEC,
            "CDI_UNIT": CDI_UNIT,
            "DOCKER": int(docker),
            **repository_params(toolkit.repository),
        },
        includes=("lib.sh", APT_REPO_LIB),
    )


def enroot_script(spec: ClusterSpec) -> RenderedFile:
    enroot = spec.containers.enroot
    return render_script(
        "enroot",
        {"PACKAGES": " ".join(enroot.packages), "PYXIS": enroot.pyxis_plugin, **repository_params(enroot.repository)},
        includes=("lib.sh", APT_REPO_LIB),
    )


def apptainer_script(spec: ClusterSpec) -> RenderedFile:
    apptainer = spec.containers.apptainer
    return render_script(
        "apptainer",
        {"PACKAGES": " ".join(apptainer.packages), **repository_params(apptainer.repository)},
        includes=("lib.sh", APT_REPO_LIB),
    )


# --- pulumi-docker: how the provider reaches a node's engine, and what a container is ---

# OpenSSH >= 8.5 (KnownHostsCommand). The provider's SSH transport is the docker CLI's connection helper:
# it runs `ssh [ssh_opts] -l USER -- HOST docker system dial-stdio` with the system ssh, so the options
# below are what verifies the node. No known_hosts file is read or written: the only key accepted is the
# one the program gave the node (KnownHostsCommand prints it as a known_hosts line).
_PINNED = ("StrictHostKeyChecking=yes", "UserKnownHostsFile=/dev/null", "GlobalKnownHostsFile=/dev/null",
           "BatchMode=yes", "ConnectTimeout=20")  # fmt: skip


def docker_host(route: SshRoute) -> str:
    return f"ssh://{route.user}@{route.host}"


def _known_host_command(host: str, key: str) -> str:
    if any(c in key for c in "%'\"\\\n") or len(key.split()) < 2:
        raise ValueError(f"not an OpenSSH public key line: {key[:40]!r}")
    return f"KnownHostsCommand=/bin/echo {host} {' '.join(key.split()[:2])}"


def docker_ssh_opts(route: SshRoute, host_key: str) -> list[str]:
    """ssh options that pin the node's host key (and the jump host's, through an explicit ProxyCommand:
    ssh does not pass -o options on to a ProxyJump connection)."""
    opts: list[str] = []
    for option in _PINNED:
        opts += ["-o", option]
    opts += ["-o", _known_host_command(route.host, host_key)]
    if route.jump:
        if not route.jump_host_key:
            raise ValueError(f"no host key for the jump host {route.jump}")
        login, _, port = route.jump.partition(":")
        user, _, jhost = login.rpartition("@")
        inner = " ".join(f"-o {o}" for o in _PINNED)
        known = _known_host_command(f"[{jhost}]:{port}" if port else jhost, route.jump_host_key)
        proxy = f"ProxyCommand=ssh {inner} -o '{known}' -p {port or 22} -l {user or 'root'} -W %h:%p {jhost}"
        opts += ["-o", proxy]
    return opts


def docker_container_fields(c: ContainerSpec) -> dict[str, object]:
    """A ContainerSpec in pulumi-docker Container terms. GPUs go through the NVIDIA runtime in CDI mode:
    the container names the CDI devices it gets (what tests/integration/test_containers_real.py proves)."""
    env = dict(c.env)
    runtime = None
    if c.gpus is not None:
        runtime = NVIDIA_RUNTIME
        env["NVIDIA_VISIBLE_DEVICES"] = "nvidia.com/gpu=all" if c.gpus == "all" else c.gpus
    return {
        "name": c.name,
        "command": list(c.command),
        "envs": [f"{k}={v}" for k, v in sorted(env.items())],
        "mounts": [
            {"type": "bind", "source": m.source, "target": m.target, "read_only": m.read_only}
            for m in sorted(c.mounts, key=lambda m: m.target)
        ],
        "network_mode": c.network_mode,
        "user": c.user,
        "runtime": runtime,
        "capabilities": sorted(c.capabilities),
        "restart": c.restart,
    }

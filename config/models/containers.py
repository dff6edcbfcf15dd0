"""The `containers` section: Docker Engine and the cluster's registry, the NVIDIA Container Toolkit on GPU
nodes, Enroot + Pyxis for `srun --container-image`, Apptainer for `srun apptainer exec` (docs/containers.md).

Changing any of it reconfigures the nodes (files pushed again, daemons restarted where they must be);
no VM is replaced.
"""

from __future__ import annotations

from config.impact import Impact, setting
from config.models.base import Model
from config.models.repository import AptRepository
from config.types import AbsPath, DebPackage, HttpsUrl, Port, UnixUser

# NVIDIA's repository of the Container Toolkit (libnvidia-container), flat, for amd64, and its signing key
# (NVIDIA CORPORATION (Open Source Projects) <cudatools@nvidia.com>, the fingerprint NVIDIA publishes).
NVIDIA_CONTAINER_TOOLKIT = AptRepository(
    name="nvidia-container-toolkit",
    url="https://nvidia.github.io/libnvidia-container/stable/deb/amd64/",
    key_url="https://nvidia.github.io/libnvidia-container/gpgkey",
    key_fingerprint="C95B321B61E88C1809C4F759DDCAE044F796ECB0",
)


class Docker(Model):
    compute: bool = setting(
        False,
        impact=Impact.RECONFIGURE,
        doc="Docker Engine on every compute node too. It is always on the controller, and on GPU nodes when "
        "monitoring is on (the DCGM exporter is a container).",
    )
    registry_mirrors: list[HttpsUrl] = setting(
        [],
        impact=Impact.RESTART,
        doc="daemon.json registry-mirrors: where Docker Hub images are pulled from (a site pull-through "
        "cache); other registries are reached directly.",
    )
    group_members: list[UnixUser] = setting(
        [],
        impact=Impact.RECONFIGURE,
        doc="Users added to the docker group. Empty by default: the docker group is root on the node "
        "(docs/containers.md says what to use instead).",
    )
    live_restore: bool = setting(
        True, impact=Impact.RESTART, doc="daemon.json live-restore: containers keep running while dockerd restarts."
    )


class Registry(Model):
    enabled: bool = setting(
        True,
        impact=Impact.RECONFIGURE,
        doc="Debian's docker-registry on the controller, its data on the protected state volume, served over "
        "TLS with a certificate the program makes and every Docker node trusts.",
    )
    port: Port = setting(5000, impact=Impact.RESTART, doc="The registry's port on the controller.")


class NvidiaToolkit(Model):
    repository: AptRepository | None = setting(
        NVIDIA_CONTAINER_TOOLKIT,
        impact=Impact.RECONFIGURE,
        doc="Where nvidia-container-toolkit comes from on GPU nodes; null: the image carries nvidia-ctk.",
    )
    packages: list[DebPackage] = setting(
        ["nvidia-container-toolkit"],
        impact=Impact.RECONFIGURE,
        doc="Packages installed from it when nvidia-ctk is missing.",
        min_length=1,
    )


class Enroot(Model):
    enabled: bool = setting(
        True,
        impact=Impact.RECONFIGURE,
        doc="Enroot on compute nodes and Pyxis in SLURM (plugstack.conf, `optional`): srun --container-image.",
    )
    repository: AptRepository | None = setting(
        None,
        impact=Impact.RECONFIGURE,
        doc="A site apt repository carrying Enroot and Pyxis (built against this SLURM); null: the image "
        "carries them. No public repository has both for Debian 12.",
    )
    packages: list[DebPackage] = setting(
        ["enroot", "nvslurm-plugin-pyxis"],
        impact=Impact.RECONFIGURE,
        doc="Packages installed from the repository when enroot or the Pyxis plugin is missing.",
        min_length=1,
    )
    pyxis_plugin: AbsPath = setting(
        "/usr/local/lib/slurm/spank_pyxis.so",
        impact=Impact.RECONFIGURE,
        doc="Where the Pyxis SPANK plugin is installed (Pyxis's `make install` default).",
    )
    runtime_path: AbsPath = setting(
        "/run/enroot/user-$(id -u)", impact=Impact.RECONFIGURE, doc="ENROOT_RUNTIME_PATH (per user, on tmpfs)."
    )
    cache_path: AbsPath = setting(
        "/var/cache/enroot/user-$(id -u)", impact=Impact.RECONFIGURE, doc="ENROOT_CACHE_PATH (image layers)."
    )
    data_path: AbsPath = setting(
        "/var/lib/enroot/user-$(id -u)", impact=Impact.RECONFIGURE, doc="ENROOT_DATA_PATH (unpacked containers)."
    )


class Apptainer(Model):
    enabled: bool = setting(
        True, impact=Impact.RECONFIGURE, doc="Apptainer on compute nodes: srun apptainer exec (--nv on GPU nodes)."
    )
    repository: AptRepository | None = setting(
        None,
        impact=Impact.RECONFIGURE,
        doc="A site apt repository carrying Apptainer; null: the image carries it. Debian 12 has no package.",
    )
    packages: list[DebPackage] = setting(
        ["apptainer"],
        impact=Impact.RECONFIGURE,
        doc="Packages installed from the repository when apptainer is missing.",
        min_length=1,
    )
    sif_dir: str = setting(
        "containers",
        impact=Impact.RECONFIGURE,
        doc="Where SIF images are built to, relative to the shared file system's mount point.",
        pattern=r"^[a-z0-9][a-z0-9._-]{0,62}$",
    )


class Containers(Model):
    enabled: bool = setting(
        False,
        impact=Impact.RECONFIGURE,
        doc="Docker Engine, the registry, Enroot + Pyxis, Apptainer and the NVIDIA runtime, as set below; "
        "Grafana and the DCGM exporter run as containers when monitoring is on too.",
    )
    docker: Docker = setting(Docker(), impact=Impact.RECONFIGURE, doc="Docker Engine.")
    registry: Registry = setting(Registry(), impact=Impact.RECONFIGURE, doc="The cluster's image registry.")
    nvidia_toolkit: NvidiaToolkit = setting(
        NvidiaToolkit(), impact=Impact.RECONFIGURE, doc="NVIDIA Container Toolkit on GPU nodes, in CDI mode."
    )
    enroot: Enroot = setting(Enroot(), impact=Impact.RECONFIGURE, doc="Enroot and Pyxis.")
    apptainer: Apptainer = setting(Apptainer(), impact=Impact.RECONFIGURE, doc="Apptainer.")

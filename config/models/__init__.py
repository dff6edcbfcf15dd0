"""Pydantic models of the stack file, one module per section."""

from config.models.cluster import ClusterSpec
from config.models.containers import Apptainer, Containers, Docker, Enroot, NvidiaToolkit, Registry
from config.models.hosts import (
    CpuTopology,
    DirectBoot,
    Firmware,
    Gpu,
    Host,
    HostReserve,
    Hugepages,
    NumaNode,
    PciFunction,
    StoragePool,
)
from config.models.monitoring import Alerts, EmailReceiver, Grafana, Monitoring, WebhookReceiver
from config.models.network import InterconnectNetwork, ManagementNetwork, Networks
from config.models.nodes import BaseImage, ComputeGroup, Controller, Ssh, StorageGroup, VmTopology
from config.models.repository import AptRepository
from config.models.services import Accounting, Mig, MigLayout, MigSoftware, Partition, Slurm
from config.models.storage import BeegfsPool, BeegfsSettings, NfsSettings

__all__ = [
    "Accounting",
    "Alerts",
    "Apptainer",
    "AptRepository",
    "BaseImage",
    "BeegfsPool",
    "BeegfsSettings",
    "ClusterSpec",
    "ComputeGroup",
    "Containers",
    "Controller",
    "CpuTopology",
    "DirectBoot",
    "Docker",
    "EmailReceiver",
    "Enroot",
    "Firmware",
    "Gpu",
    "Grafana",
    "Host",
    "HostReserve",
    "Hugepages",
    "InterconnectNetwork",
    "ManagementNetwork",
    "Mig",
    "MigLayout",
    "MigSoftware",
    "Monitoring",
    "Networks",
    "NfsSettings",
    "NumaNode",
    "NvidiaToolkit",
    "Partition",
    "PciFunction",
    "Registry",
    "Slurm",
    "Ssh",
    "StorageGroup",
    "StoragePool",
    "VmTopology",
    "WebhookReceiver",
]

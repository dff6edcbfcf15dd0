"""From a node's plan and its host to the DomainTuning the XSLT renders."""

from __future__ import annotations

from config.models import Gpu, Host
from config.topology import NodePlan
from render.domain_xslt import DomainTuning

# Functions of a GPU's IOMMU group that belong to the card itself and go to the VM with it.
GPU_COMPANION_CLASSES = {"0300", "0302", "0380", "0403", "0c03", "0c80"}
BRIDGE_CLASS = "0604"  # PCIe bridges stay with the host; vfio does not need them bound


def gpu_functions(gpu: Gpu) -> list[str]:
    """Every function passed to the VM for one GPU: the GPU plus its companion functions."""
    extra = [d.address for d in gpu.group_devices if d.class_code in GPU_COMPANION_CLASSES]
    return sorted({gpu.address, *extra})


def tuning_for(node: NodePlan, host: Host) -> DomainTuning:
    topo = node.topology
    hostdevs = tuple(a for gpu in node.gpus for a in gpu_functions(gpu))
    return DomainTuning(sockets=topo.sockets, cores=topo.cores, threads=topo.threads, hostdevs=hostdevs)

"""The committed example stacks, loaded once per test session."""

from __future__ import annotations

import hashlib
from functools import cache
from pathlib import Path

from config import LoadedStack, load_stack_file
from render.hostkeys import HostKey, host_key_from_seed

ROOT = Path(__file__).resolve().parent.parent
STACKS = ("dev", "workstation", "cluster")


@cache
def loaded(stack: str) -> LoadedStack:
    return load_stack_file(ROOT / f"Pulumi.{stack}.yaml")


def fixed_host_key(node: str) -> HostKey:
    """A fixed host key per node name, for renderers called outside the program (golden files, schemas)."""
    return host_key_from_seed(hashlib.sha256(f"test-host-key/{node}".encode()).digest(), f"root@{node}")

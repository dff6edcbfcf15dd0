"""The committed example stacks, loaded once per test session."""

from __future__ import annotations

from functools import cache
from pathlib import Path

from config import LoadedStack, load_stack_file

ROOT = Path(__file__).resolve().parent.parent
STACKS = ("dev", "workstation", "cluster")


@cache
def loaded(stack: str) -> LoadedStack:
    return load_stack_file(ROOT / f"Pulumi.{stack}.yaml")

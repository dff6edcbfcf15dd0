"""The real Pulumi engine (built by e2e/build_engine.py) running the program offline, with the stand-in
providers (e2e/stubprovider): no libvirt and no SSH, so these tests prove the program, the engine's graph
and diffs, state and secrets. tests/vm runs the same engine with the provider doubles against real VMs.

The engine is built when the cache does not hold it yet (about 5 minutes cold on 2 cores, 0.1 s warm;
`make engine` does the same first). It never skips: a failed build fails the tests.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.engine import Stack, engine_bin, scratch_stack


@pytest.fixture(scope="session")
def built_engine() -> Path:
    return engine_bin()


@pytest.fixture
def stack(built_engine: Path, tmp_path: Path) -> Iterator[Stack]:
    yield scratch_stack(tmp_path, "dev", "stubs")

"""Shared test setup: the project root on sys.path, golden-file handling and the Pulumi mocks."""

from __future__ import annotations

import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

warnings.filterwarnings("ignore", category=DeprecationWarning, module="pulumi_command")

STACKS = ("dev", "workstation", "cluster")
GOLDEN = ROOT / "tests" / "golden"


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--update-golden", action="store_true", help="rewrite golden files; review the diff")


@pytest.fixture
def golden(request: pytest.FixtureRequest) -> Callable[[str, str], None]:
    """golden(relative_path, text): compare with tests/golden/<path>, or rewrite it with --update-golden."""
    update = request.config.getoption("--update-golden")

    def check(relative: str, text: str) -> None:
        path = GOLDEN / relative
        if update:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            return
        assert path.exists(), f"missing golden file {path}; run pytest --update-golden and review it"
        assert text == path.read_text(), f"{relative} differs from its golden file; rerun with --update-golden"

    return check


@pytest.fixture
def monitor() -> Iterator[object]:
    """Fresh recording mocks per test: set_mocks is process-global, so no test sees another's resources."""
    from hyperscaler import mocks

    yield mocks.install(project="hyperscaler", stack="test")

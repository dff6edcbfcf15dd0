"""docs/configuration.md is generated from the models; it must match them."""

from __future__ import annotations

from hyperscaler.docgen import render_configuration_reference
from tests.stacks import ROOT


def test_configuration_reference_is_current() -> None:
    committed = (ROOT / "docs" / "configuration.md").read_text()
    assert committed == render_configuration_reference(), "docs/configuration.md is stale: run `make docs`"


def test_readme_shows_the_two_commands() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make plan STACK=dev" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()

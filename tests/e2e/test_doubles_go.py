"""The provider doubles' own Go tests (e2e/doubles/**/*_test.go) and `go vet`, with the engine's Go.

They prove what the VM tier cannot show from the outside: a command connection that pins a host key fails
against a server (or a jump host) presenting another key, after the provider's retries and without logging
in; dials are retried with the provider's backoff until dialErrorLimit; environment, stdin, the previous
outputs and non-zero exits behave as pulumi-command's; Diff replaces on triggers, also when the engine
sets them to unknown for a delete-before-replace; the facts file reads the same in Go as in Python
(tests/unit/test_provider_facts.py); passwords follow terraform-provider-random's character rules.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from e2e import build_engine

pytestmark = pytest.mark.e2e

E2E = Path(build_engine.__file__).resolve().parent


def go(*args: str) -> subprocess.CompletedProcess[str]:
    cache = Path(os.environ.get("HYPERSCALER_ENGINE_CACHE", build_engine.DEFAULT_CACHE))
    env = build_engine.go_env(cache)
    return subprocess.run(
        [build_engine.go_binary(cache), *args], cwd=E2E, env=env, capture_output=True, text=True, timeout=1800
    )


def test_go_tests_of_the_doubles_pass() -> None:
    result = go("test", "-count=1", "./doubles/...")
    assert result.returncode == 0, result.stdout + result.stderr
    for package in ("doubles/command", "doubles/internal/facts", "doubles/random"):
        assert f"ok  \thyperscaler/e2e/{package}" in result.stdout, result.stdout


def test_go_vet_is_clean() -> None:
    result = go("vet", "./doubles/...", "./langhost", "./stubprovider")
    assert result.returncode == 0, result.stdout + result.stderr

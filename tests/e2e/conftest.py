"""The real Pulumi engine (built by e2e/build_engine.py) running the program offline.

The fixture builds the engine when the cache does not hold it yet (about 5 minutes cold on 2 cores,
0.1 s warm; `make engine` does the same first). It never skips: a failed build fails the tests.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from e2e import build_engine

ROOT = Path(__file__).resolve().parents[2]
PASSPHRASE = "e2e-scratch-only"
# Never copied into the scratch project: state, caches, and the tests (their sysfs fixtures hold
# symlink cycles; the program needs none of them).
SKIP_COPY = {".git", ".venv", "out", "tests", "bench", ".mypy_cache", ".pytest_cache", ".ruff_cache", "__pycache__"}


@pytest.fixture(scope="session")
def engine_bin() -> Path:
    cache = Path(os.environ.get("HYPERSCALER_ENGINE_CACHE", build_engine.DEFAULT_CACHE))
    return build_engine.build(cache, jobs=2)


@dataclass
class Stack:
    """A scratch copy of the project with its own file backend, PULUMI_HOME and `dev` stack."""

    project: Path
    env: dict[str, str]
    private_key: str

    def pulumi(self, *args: str, stdin: str | None = None, ok: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["pulumi", *args, "--non-interactive"] if args[0] in {"preview", "up", "destroy"} else ["pulumi", *args],
            cwd=self.project,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if ok:
            assert result.returncode == 0, (
                f"pulumi {' '.join(args)}: rc {result.returncode}\n{result.stdout}\n{result.stderr}"
            )
        return result


@pytest.fixture
def stack(engine_bin: Path, tmp_path: Path) -> Iterator[Stack]:
    project = tmp_path / "project"
    shutil.copytree(ROOT, project, symlinks=True, ignore=lambda _d, names: [n for n in names if n in SKIP_COPY])
    (project / ".venv").symlink_to(ROOT / ".venv")  # Pulumi.yaml: virtualenv: .venv
    home, state = tmp_path / "home", tmp_path / "state"
    state.mkdir()
    env = {
        **os.environ,
        "PATH": f"{engine_bin}:{os.environ.get('PATH', '')}",
        "PULUMI_HOME": str(home),
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_BACKEND_URL": f"file://{state}",
    }
    build_engine.install_plugins(engine_bin, home, "stubs")
    key = tmp_path / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "e2e", "-f", str(key)], check=True)
    s = Stack(project, env, key.read_text())
    s.pulumi("stack", "init", "dev")
    s.pulumi("config", "set", "--secret", "hyperscaler:sshPrivateKey", stdin=s.private_key)
    yield s

"""The real Pulumi CLI (built by e2e/build_engine.py) on a scratch copy of the project, for tests/e2e and tests/vm.

`scratch_stack` copies the project (without tests, caches or state), links the project's virtualenv, gives
it its own file backend and PULUMI_HOME with the chosen plugins installed, and initialises a stack. `Stack`
runs the CLI there, optionally inside a network namespace (the VM tier's NAT bridge only exists in the
namespaced libvirtd's netns, so the command double's SSH connections must start there).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from e2e import build_engine

ROOT = Path(__file__).resolve().parents[1]
PASSPHRASE = "e2e-scratch-only"
# Never copied into the scratch project: state, caches, and the tests (their sysfs fixtures hold
# symlink cycles; the program needs none of them).
SKIP_COPY = {".git", ".venv", "out", "tests", "bench", ".mypy_cache", ".pytest_cache", ".ruff_cache", "__pycache__"}
LIFECYCLE = {"preview", "up", "destroy", "refresh"}


def engine_bin() -> Path:
    """The built CLI's bin directory (builds it when the cache does not hold it: about 5 minutes cold)."""
    cache = Path(os.environ.get("HYPERSCALER_ENGINE_CACHE", build_engine.DEFAULT_CACHE))
    return build_engine.build(cache, jobs=2)


@dataclass
class Stack:
    """A scratch copy of the project with its own file backend, PULUMI_HOME and one stack."""

    project: Path
    env: dict[str, str]
    private_key: str
    netns: str | None = None  # run the CLI (and so every plugin it starts) inside this named netns
    timeout: float = 600
    runs: list[tuple[str, float]] = field(default_factory=list)

    def argv(self, *args: str) -> list[str]:
        argv = ["pulumi", *args, "--non-interactive"] if args[0] in LIFECYCLE else ["pulumi", *args]
        if self.netns is not None:
            argv = ["nsenter", f"--net=/run/netns/{self.netns}", *argv]
        return argv

    def pulumi(
        self, *args: str, stdin: str | None = None, ok: bool = True, timeout: float | None = None
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            self.argv(*args),
            cwd=self.project,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout or self.timeout,
        )
        if ok:
            assert result.returncode == 0, (
                f"pulumi {' '.join(args)}: rc {result.returncode}\n{result.stdout[-20000:]}\n{result.stderr[-20000:]}"
            )
        return result

    def preview_json(self, *args: str) -> dict[str, Any]:
        return dict(json.loads(self.pulumi("preview", "--json", *args).stdout))

    def outputs(self) -> dict[str, Any]:
        return dict(json.loads(self.pulumi("stack", "output", "--json", "--show-secrets").stdout))

    def resources(self) -> list[dict[str, Any]]:
        return list(json.loads(self.pulumi("stack", "export").stdout)["deployment"].get("resources") or [])


def scratch_stack(tmp: Path, stack: str, providers: str, stack_file: Callable[[str], str] | None = None) -> Stack:
    """A copy of the project in tmp/project with plugins of kind `providers` ("doubles" or "stubs")
    installed, a fresh ed25519 key set as the secret hyperscaler:sshPrivateKey, and `stack` initialised;
    stack_file, when given, writes Pulumi.<stack>.yaml first from the key's public line."""
    bin_dir = engine_bin()
    key = tmp / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "e2e", "-f", str(key)], check=True)
    project = tmp / "project"
    shutil.copytree(ROOT, project, symlinks=True, ignore=lambda _d, names: [n for n in names if n in SKIP_COPY])
    (project / ".venv").symlink_to(ROOT / ".venv")  # Pulumi.yaml: virtualenv: .venv
    if stack_file is not None:
        public = key.with_suffix(".pub").read_text().strip()
        (project / f"Pulumi.{stack}.yaml").write_text(stack_file(public))
    home, state = tmp / "home", tmp / "state"
    state.mkdir()
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        "PULUMI_HOME": str(home),
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_BACKEND_URL": f"file://{state}",
    }
    build_engine.install_plugins(bin_dir, home, providers)
    s = Stack(project, env, key.read_text())
    s.pulumi("stack", "init", stack)
    s.pulumi("config", "set", "--secret", "hyperscaler:sshPrivateKey", stdin=s.private_key)
    return s

"""The NVIDIA Container Toolkit (nvidia-ctk, nvidia-container-runtime) built from the Go module proxy, cached
outside the repository: about a minute cold on 2 cores, instant warm.

    bin_dir = ensure_nvidia_toolkit()      # <cache>/v1.20.2/bin with both binaries

The build needs cgo (go-nvml dlopens libnvidia-ml), so gcc comes from packages.apt. Go is the one
`make engine` provides (e2e/build_engine.py: the go on PATH, or the toolchain module it fetched).
A failed build raises HarnessError: the tests that need it fail, never skip.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from e2e import build_engine

from ._util import CLEAN_ENV, HarnessError

VERSION = "v1.20.2"
MODULE = "github.com/NVIDIA/nvidia-container-toolkit"
COMMANDS = ("nvidia-ctk", "nvidia-container-runtime")
DEFAULT_CACHE = Path("/var/cache/hyperscaler-nvidia-ctk")


def cache_dir() -> Path:
    return Path(os.environ.get("HYPERSCALER_NVIDIA_CTK_CACHE", str(DEFAULT_CACHE)))


def ensure_nvidia_toolkit() -> Path:
    cache = cache_dir()
    bin_dir = cache / VERSION / "bin"
    if all((bin_dir / c).is_file() for c in COMMANDS):
        return bin_dir
    if shutil.which("gcc") is None:
        raise HarnessError("gcc is missing: run `make deps` (packages.apt); nvidia-container-toolkit needs cgo")
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if all((bin_dir / c).is_file() for c in COMMANDS):
            return bin_dir
        engine_cache = Path(os.environ.get("HYPERSCALER_ENGINE_CACHE", "/var/cache/hyperscaler-engine"))
        try:
            go = build_engine.go_binary(engine_cache)
        except SystemExit as exc:
            raise HarnessError(f"no Go to build nvidia-container-toolkit with: {exc}") from None
        staging = Path(tempfile.mkdtemp(dir=cache, prefix="bin-"))
        env = {
            **CLEAN_ENV,
            "HOME": str(cache),
            "GOMODCACHE": str(cache / "gomod"),
            "GOCACHE": str(cache / "gobuild"),
            "GOPATH": str(cache / "gopath"),
            "GOBIN": str(staging),
            "CGO_ENABLED": "1",
            "GOFLAGS": "-mod=mod",
            "GOTOOLCHAIN": "local",
        }
        argv = [go, "install", "-p", "2", *(f"{MODULE}/cmd/{c}@{VERSION}" for c in COMMANDS)]
        proc = subprocess.run(argv, env=env, cwd=cache, capture_output=True, text=True, timeout=1800)
        if proc.returncode != 0:
            shutil.rmtree(staging, ignore_errors=True)
            raise HarnessError(f"building nvidia-container-toolkit {VERSION} failed:\n{proc.stderr[-3000:]}")
        bin_dir.parent.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(bin_dir, ignore_errors=True)
        staging.rename(bin_dir)
    return bin_dir

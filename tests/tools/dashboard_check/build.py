"""Build tests/tools/dashboard_check (the strict Grafana dashboard checker) once, into a cache outside the
repository keyed by its sources and the Go version. The Go toolchain is the one e2e/build_engine.py
finds (Debian's golang-go fetches a newer one when it is too old); the module comes from the Go module
proxy, pinned by go.sum. About 40 s cold on 2 cores, instant when cached. Failures raise: no skipping."""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
from pathlib import Path

from e2e import build_engine

HERE = Path(__file__).resolve().parent
SOURCES = ("go.mod", "go.sum", "main.go")
DEFAULT_CACHE = Path("/var/cache/hyperscaler-test")


def dashboard_checker() -> Path:
    engine_cache = Path(os.environ.get("HYPERSCALER_ENGINE_CACHE", build_engine.DEFAULT_CACHE))
    go = build_engine.go_binary(engine_cache)
    version = subprocess.run([go, "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout.strip()
    digest = hashlib.sha256(version.encode())
    for name in SOURCES:
        digest.update(name.encode() + b"\0" + (HERE / name).read_bytes())
    cache = Path(os.environ.get("HYPERSCALER_TEST_CACHE", DEFAULT_CACHE))
    binary = cache / f"dashboard-check-{digest.hexdigest()[:12]}" / "dashboard-check"
    if binary.exists():
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    with open(binary.parent / "lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not binary.exists():
            env = dict(
                os.environ,
                GOMODCACHE=str(cache / "gomod"),
                GOCACHE=str(cache / "gobuild"),
                CGO_ENABLED="0",
                GOTOOLCHAIN="local",
                GOFLAGS="-mod=readonly",
            )
            tmp = binary.with_suffix(".tmp")
            proc = subprocess.run(
                [go, "build", "-o", str(tmp), "."], cwd=HERE, env=env, capture_output=True, text=True, timeout=900
            )
            if proc.returncode != 0:
                raise RuntimeError(f"building the dashboard checker failed:\n{proc.stdout}\n{proc.stderr}")
            tmp.rename(binary)
    return binary

#!/usr/bin/env python3
"""Build the Pulumi CLI, a Python language host and the provider plugins from Go modules, offline.

The Pulumi CLI cannot be downloaded here, but it can be built from the Go module proxy. Everything
is cached outside the repo, under ``$HYPERSCALER_ENGINE_CACHE`` (default
``/var/cache/hyperscaler-engine``):

* ``gomod/`` and ``gobuild/``: the Go module and build caches of these builds alone;
* ``<key>/bin/`` (the CLI and language host, for ``$PATH``), ``<key>/providers/`` (the provider
  doubles) and ``<key>/stubs/`` (the stand-ins), where ``<key>`` hashes every input (versions.env,
  go.mod, go.sum, the Go sources beside this script, components/provider_facts.json, this script and the
  Go version). A second run with the same inputs only prints the directory (a cache hit).

Commands (``build`` and ``install-plugins`` print the ``bin`` directory on stdout, progress on stderr):

* ``build [--jobs N]``: build, or reuse the cached build.
* ``install-plugins --pulumi-home DIR [--providers doubles|stubs]``: build if needed, then
  ``pulumi plugin install resource NAME VERSION --file BIN`` for each provider into ``DIR``.
* ``probe``: ask the Go module proxy for every module the real providers need; exit 1 if it refuses
  any (while it does, the real plugins cannot be built and the doubles stand in for them).

What gets built (versions in e2e/versions.env, see docs/testing.md "The real Pulumi engine"):

* ``pulumi``: ``github.com/pulumi/pulumi/pkg/v3/cmd/pulumi`` from the wrapper module e2e/go.mod,
  with ``CGO_ENABLED=0``, ``-tags osusergo,grpcnotrace`` and the version stamped by ``-ldflags``;
* ``pulumi-language-python``: e2e/langhost, our own host (the upstream one is not served), plus
  ``pulumi-language-python-exec`` and ``pulumi-resource-pulumi-python`` copied from the sdk/v3 module;
* ``providers/pulumi-resource-{libvirt,command,random}``: the provider doubles of e2e/doubles, which
  act (libvirt objects, SSH commands, random values) the way the real providers do, with
  components/provider_facts.json stamped in (``-X .../facts.encoded=``) so that their Diff and
  ``hyperscaler diff`` read one file;
* ``stubs/pulumi-resource-{libvirt,command,random}``: e2e/stubprovider, a stand-in that only echoes its
  inputs, for engine tests that must not touch libvirt or SSH (tests/e2e).

The real providers are refused by the proxy (``probe``); the day they are served, building them is not
implemented yet and the build says so.
"""

from __future__ import annotations

import argparse
import base64
import functools
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
VERSIONS_FILE = HERE / "versions.env"
DEFAULT_CACHE = Path("/var/cache/hyperscaler-engine")
CLI_PACKAGE = "github.com/pulumi/pulumi/pkg/v3/cmd/pulumi"
SDK_MODULE = "github.com/pulumi/pulumi/sdk/v3"
VERSION_VAR = "github.com/pulumi/pulumi/sdk/v3/go/common/version.Version"
BUILD_TAGS = "osusergo,grpcnotrace"
# Files copied next to the language host from the sdk/v3 module, made executable.
SDK_SCRIPTS = ("python/cmd/pulumi-language-python-exec", "python/dist/pulumi-resource-pulumi-python")
PROVIDERS = ("libvirt", "command", "random")
FACTS_FILE = HERE.parent / "components" / "provider_facts.json"
FACTS_VAR = "hyperscaler/e2e/doubles/internal/facts.encoded"
DOUBLES = {name: f"./doubles/{name}" for name in PROVIDERS}
PROVIDER_KINDS = ("doubles", "stubs")


def key_inputs() -> list[Path]:
    """Inputs of the cache key besides versions.env and this script: the module files, every Go source
    beside this script but its tests, and the facts file the doubles are stamped with."""
    sources = sorted(p for p in HERE.rglob("*.go") if not p.name.endswith("_test.go"))
    return [HERE / "go.mod", HERE / "go.sum", *sources, FACTS_FILE]


def log(msg: str) -> None:
    print(f"build_engine: {msg}", file=sys.stderr, flush=True)


def read_versions(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """KEY=VALUE lines; '#' starts a comment line. No shell expansion."""
    versions: dict[str, str] = {}
    for n, raw in enumerate(path.read_text().splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        if not sep or not key.isidentifier():
            raise SystemExit(f"{path}:{n}: expected KEY=VALUE, got {raw!r}")
        versions[key] = value.strip()
    return versions


def go_directive() -> str:
    """The Go version e2e/go.mod asks for (its `go` line)."""
    match = re.search(r"^go (\d+\.\d+(?:\.\d+)?)$", (HERE / "go.mod").read_text(), re.MULTILINE)
    if not match:
        raise SystemExit("e2e/go.mod has no `go` line")
    return match.group(1)


def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


@functools.cache
def go_binary(cache: Path) -> str:
    """A Go at least as new as e2e/go.mod asks for. The one on PATH when it is new enough; otherwise that
    older Go (Debian 12 ships 1.19) downloads the toolchain module golang.org/toolchain from the module
    proxy, the same archive Go's own toolchain switch uses, into the cache."""
    need = go_directive()
    have = shutil.which("go")
    if have is None:
        raise SystemExit("build_engine: no `go` on PATH: install Debian's golang-go (make engine does)")
    current = subprocess.run([have, "env", "GOVERSION"], capture_output=True, text=True, check=True).stdout
    if _version_tuple(current) >= _version_tuple(need):
        return have
    goroot = cache / f"go{need}"
    if not (goroot / "bin" / "go").is_file():
        log(f"{current.strip()} is older than go{need}: fetching the go{need} toolchain module")
        cache.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, GOMODCACHE=str(cache / "gomod"), GOPATH=str(cache / "gopath"), GOFLAGS="-mod=mod")
        module = f"golang.org/toolchain@v0.0.1-go{need}.linux-{platform.machine().replace('x86_64', 'amd64')}"
        info = json.loads(run([have, "mod", "download", "-json", module], env, cwd=cache))
        staging = Path(tempfile.mkdtemp(dir=cache, prefix="goroot-"))
        shutil.copytree(info["Dir"], staging / "go")
        # Module zips carry no file modes: make the tree writable and the tools executable again.
        for path in (staging / "go").rglob("*"):
            path.chmod(path.stat().st_mode | 0o200)
        for tool in [*(staging / "go" / "bin").iterdir(), *(staging / "go" / "pkg" / "tool").glob("*/*")]:
            tool.chmod(0o755)
        (staging / "go").rename(goroot)
        staging.rmdir()
    return str(goroot / "bin" / "go")


def go_env(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        GOMODCACHE=str(cache / "gomod"),
        GOCACHE=str(cache / "gobuild"),
        CGO_ENABLED="0",
        GOTOOLCHAIN="local",
        GOFLAGS="-mod=readonly",
    )
    return env


def run(argv: list[str], env: dict[str, str], cwd: Path = HERE) -> str:
    log("$ " + " ".join(a if len(a) <= 200 else f"{a[:60]}...({len(a)} chars)" for a in argv))
    result = subprocess.run(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, text=True)
    if result.returncode != 0:
        raise SystemExit(f"build_engine: failed (rc {result.returncode}): {' '.join(argv)}")
    return result.stdout


def check_go_mod(versions: dict[str, str]) -> None:
    """e2e/go.mod must require pkg/v3 and sdk/v3 at PULUMI_CLI."""
    text = (HERE / "go.mod").read_text()
    want = f"v{versions['PULUMI_CLI']}"
    for module in ("github.com/pulumi/pulumi/pkg/v3", SDK_MODULE):
        if f"{module} {want}" not in text:
            raise SystemExit(f"e2e/go.mod does not require {module} {want} (PULUMI_CLI in versions.env)")


def cache_key(versions: dict[str, str], go_version: str) -> str:
    h = hashlib.sha256()
    for path in (VERSIONS_FILE, Path(__file__).resolve(), *key_inputs()):
        name = path.relative_to(HERE.parent) if path.is_relative_to(HERE.parent) else path.name
        h.update(str(name).encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(f"{go_version}\0{BUILD_TAGS}".encode())
    return h.hexdigest()[:16]


def probe(versions: dict[str, str], cache: Path) -> dict[str, str]:
    """Ask the proxy for each provider module; return {provider: why it cannot be had}."""
    refused: dict[str, str] = {}
    env = go_env(cache)
    env["GOFLAGS"] = "-mod=mod"
    with tempfile.TemporaryDirectory() as tmp:
        for name in PROVIDERS:
            key = name.upper()
            module, ref = versions[f"PULUMI_{key}_MODULE"], versions[f"PULUMI_{key}_REF"]
            result = subprocess.run(
                [go_binary(cache), "mod", "download", "-json", f"{module}@{ref}"],
                cwd=tmp,
                env=env,
                capture_output=True,
                text=True,
            )
            if result.returncode != 0:
                try:
                    why = json.loads(result.stdout).get("Error", "")
                except json.JSONDecodeError:
                    why = ""
                refused[name] = (why or result.stderr.strip() or f"rc {result.returncode}").splitlines()[0]
    return refused


def output_dir(cache: Path) -> Path:
    """Where the build for the current inputs lives (built or not)."""
    versions = read_versions()
    check_go_mod(versions)
    go_version = subprocess.run(
        [go_binary(cache), "env", "GOVERSION"], env=go_env(cache), capture_output=True, text=True, check=True
    ).stdout.strip()
    return cache / cache_key(versions, go_version)


def facts_ldflag() -> str:
    """components/provider_facts.json, base64 (no spaces or quotes to escape), for the doubles' linker."""
    json.loads(FACTS_FILE.read_text())  # a broken file fails here, not in a double at run time
    return f"-X {FACTS_VAR}={base64.b64encode(FACTS_FILE.read_bytes()).decode()}"


def build(cache: Path, *, jobs: int) -> Path:
    out = output_dir(cache)
    if (out / "manifest.json").is_file():
        log(f"cache hit: {out}")
        return out / "bin"
    versions = read_versions()
    env = go_env(cache)
    go_version = run([go_binary(cache), "env", "GOVERSION"], env).strip()

    started = time.monotonic()
    providers: dict[str, dict[str, str]] = {}
    refused = probe(versions, cache)
    for name in PROVIDERS:
        version = versions[f"PULUMI_{name.upper()}"]
        if name not in refused:
            # The day the proxy serves these, build them as issue 5 describes (docs/testing.md).
            raise SystemExit(f"build_engine: {name} is now served by the proxy; building it is not implemented yet")
        providers[name] = {
            "version": version,
            "double": f"providers/pulumi-resource-{name} (e2e/doubles/{name})",
            "stub": f"stubs/pulumi-resource-{name} (e2e/stubprovider)",
            "why_not_real": refused[name],
        }

    cache.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f"{out.name}.tmp-", dir=cache))
    tmp.chmod(0o755)
    try:
        bin_dir = tmp / "bin"
        bin_dir.mkdir()
        cli = versions["PULUMI_CLI"]
        common = [go_binary(cache), "build", "-p", str(jobs), "-tags", BUILD_TAGS]
        run([go_binary(cache), "mod", "download"], env)
        run([*common, "-ldflags", f"-X {VERSION_VAR}=v{cli}", "-o", str(bin_dir / "pulumi"), CLI_PACKAGE], env)
        run(
            [
                *common,
                "-ldflags",
                f"-X main.version={cli}",
                "-o",
                str(bin_dir / "pulumi-language-python"),
                "./langhost",
            ],
            env,
        )
        sdk_dir = Path(run([go_binary(cache), "list", "-m", "-f", "{{.Dir}}", SDK_MODULE], env).strip())
        for rel in SDK_SCRIPTS:
            dest = bin_dir / Path(rel).name
            shutil.copyfile(sdk_dir / rel, dest)
            dest.chmod(0o755)
        # Providers stay out of bin/: the CLI prefers a pulumi-resource-* found on $PATH over the
        # installed plugin, and then warns that its version is unknown.
        doubles, stubs = tmp / "providers", tmp / "stubs"
        doubles.mkdir()
        stubs.mkdir()
        # One go build for the three (shared work); it names each binary after its package directory.
        run([*common, "-ldflags", facts_ldflag(), "-o", f"{doubles}/", *DOUBLES.values()], env)
        for name in DOUBLES:
            (doubles / name).rename(doubles / f"pulumi-resource-{name}")
        stub = stubs / "pulumi-resource-stub"
        run([*common, "-o", str(stub), "./stubprovider"], env)
        for name in providers:
            shutil.copyfile(stub, stubs / f"pulumi-resource-{name}")
            (stubs / f"pulumi-resource-{name}").chmod(0o755)
        stub.unlink()
        manifest = {
            "key": out.name,
            "go": go_version,
            "pulumi_cli": cli,
            "pulumi_python_sdk": versions["PULUMI_PYTHON_SDK"],
            "language_host": "e2e/langhost (hyperscaler's own)",
            "providers": providers,
            "build_seconds": round(time.monotonic() - started, 1),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        if out.exists():  # a half-written directory from an older run without a manifest
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    log(f"built {out} in {time.monotonic() - started:.0f} s")
    return out / "bin"


def provider_binary(bin_dir: Path, name: str, kind: str = "doubles") -> Path:
    """The built plugin `name` of one kind: providers/ (the doubles) or stubs/."""
    if kind not in PROVIDER_KINDS:
        raise ValueError(f"provider kind {kind!r}: one of {PROVIDER_KINDS}")
    return bin_dir.parent / ("providers" if kind == "doubles" else "stubs") / f"pulumi-resource-{name}"


def install_plugins(bin_dir: Path, pulumi_home: Path, kind: str = "doubles") -> None:
    manifest = json.loads((bin_dir.parent / "manifest.json").read_text())
    env = dict(os.environ, PULUMI_HOME=str(pulumi_home), PULUMI_SKIP_UPDATE_CHECK="true")
    for name, info in manifest["providers"].items():
        binary = provider_binary(bin_dir, name, kind)
        run(
            [str(bin_dir / "pulumi"), "plugin", "install", "resource", name, info["version"], "--file", str(binary)],
            env,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("HYPERSCALER_ENGINE_CACHE", DEFAULT_CACHE)),
        help="cache root (env HYPERSCALER_ENGINE_CACHE, default %(default)s)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("build", "install-plugins"):
        p = sub.add_parser(name)
        p.add_argument("--jobs", type=int, default=min(2, os.cpu_count() or 1), help="go build -p (default 2)")
        if name == "install-plugins":
            p.add_argument("--pulumi-home", type=Path, required=True)
            p.add_argument(
                "--providers", choices=PROVIDER_KINDS, default="doubles", help="which plugins (default doubles)"
            )
    sub.add_parser("probe")
    args = parser.parse_args(argv)

    if args.command == "probe":
        refused = probe(read_versions(), args.cache)
        for name, why in refused.items():
            print(f"{name}: refused: {why}")
        return 1 if refused else 0
    bin_dir = build(args.cache, jobs=args.jobs)
    if args.command == "install-plugins":
        install_plugins(bin_dir, args.pulumi_home, args.providers)
    print(bin_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""`hyperscaler plan`: run the real Pulumi program under the mock runtime, with no engine and no hypervisor.

It prints the resource tree, writes every file a node would receive to DIR/<node>/<path>, and writes
DIR/resources.json with every resource, its options and its (secret-masked) inputs.
"""

from __future__ import annotations

import base64
import json
import os
import runpy
import sys
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pulumi
import yaml
from pulumi.runtime.settings import get_root_resource
from pulumi.runtime.stack import run_pulumi_func
from pulumi.runtime.sync_await import _sync_await

from config import LoadedStack, build_spec, read_stack_file
from config.load import config_for_mocks
from config.topology import plan_nodes
from hyperscaler import mocks
from hyperscaler.mocks import SECRET_MASK, Registration
from render.remote import parse_file_marker

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# The inputs shown in the tree for each type: the ones a reviewer checks before `pulumi up`.
KEY_INPUTS: dict[str, tuple[str, ...]] = {
    "pulumi:providers:libvirt": ("uri",),
    "libvirt:index/network:Network": ("name", "mode", "addresses", "bridge", "mtu"),
    "libvirt:index/pool:Pool": ("name", "type", "target"),
    "libvirt:index/volume:Volume": ("name", "size", "source", "format"),
    "libvirt:index/cloudInitDisk:CloudInitDisk": ("name",),
    "libvirt:index/domain:Domain": ("name", "type", "vcpu", "memory", "machine"),
}


@dataclass
class PlanResult:
    stack: LoadedStack
    records: list[Registration]
    outputs: dict[str, Any]

    @cached_property
    def files(self) -> dict[str, dict[str, str]]:
        """node -> {absolute path: content}: collected when first asked for, not on every plan."""
        return collect_files(self.records, {n.mgmt_ip: n.name for n in plan_nodes(self.stack.spec)})


def run_plan(stack_file: Path) -> PlanResult:
    """Validate, then run __main__.py under mocks. Raises config.ConfigError for a bad stack file."""
    inputs = read_stack_file(stack_file)
    loaded = build_spec(inputs)  # fail before anything is declared
    stack_name = stack_file.name.removeprefix("Pulumi.").removesuffix(".yaml")
    monitor = mocks.install(project="hyperscaler", stack=stack_name, preview=True)
    config, secret_keys = config_for_mocks(inputs)
    pulumi.runtime.set_all_config(config, secret_keys)
    outputs: dict[str, Any] = {}

    async def program() -> None:
        cwd = os.getcwd()
        os.chdir(stack_file.resolve().parent)  # the program looks for Pulumi.<stack>.yaml beside it
        added = str(PROJECT_ROOT) not in sys.path
        if added:
            sys.path.insert(0, str(PROJECT_ROOT))  # as the language host runs it: imports from the project root
        try:
            runpy.run_path(str(PROJECT_ROOT / "__main__.py"), run_name="__main__")
        finally:
            os.chdir(cwd)
            if added:
                sys.path.remove(str(PROJECT_ROOT))
        root = get_root_resource()
        for key, value in getattr(root, "outputs", {}).items():
            out = pulumi.Output.from_input(value)
            resolved = await out.future()
            outputs[key] = SECRET_MASK if await out.is_secret() else resolved

    _sync_await(run_pulumi_func(program))
    return PlanResult(loaded, list(monitor.records), outputs)


def collect_files(records: list[Registration], addresses: dict[str, str]) -> dict[str, dict[str, str]]:
    """Every file a node receives, keyed by node and absolute path on the node: the cloud-init seed and
    its write_files, and every file a remote.Command installs (secret ones masked)."""
    files: dict[str, dict[str, str]] = {}
    for rec in records:
        if rec.type == "command:remote:Command":
            marker = parse_file_marker(str(rec.plain_inputs.get("create", "")))
            if marker is None:
                continue
            host = rec.plain_inputs["connection"]["host"]
            stdin = rec.masked_inputs.get("stdin", "")
            content = stdin if stdin == SECRET_MASK else (base64.b64decode(stdin).decode() if marker.base64 else stdin)
            files.setdefault(addresses.get(host, host), {})[marker.path] = content
            continue
        if rec.type == "libvirt:index/cloudInitDisk:CloudInitDisk":
            inputs = rec.plain_inputs
            user_data = redact_user_data(inputs.get("userData", ""))
            doc = yaml.safe_load(user_data) or {}
            node = files.setdefault(str(doc.get("hostname", rec.name)), {})
            seed = "/var/lib/cloud/seed/nocloud"
            node[f"{seed}/user-data"] = user_data
            node[f"{seed}/meta-data"] = inputs.get("metaData", "")
            node[f"{seed}/network-config"] = inputs.get("networkConfig", "")
            for entry in doc.get("write_files", []):
                node[entry["path"]] = entry.get("content", "")
    return files


def redact_user_data(user_data: str) -> str:
    """user-data as the plan shows it: the host's private key masked (the whole document is a secret in
    the stack because of it; everything else in it is worth reviewing)."""
    lines = []
    skipping = False
    for line in user_data.splitlines(keepends=True):
        if skipping and line.startswith("    "):
            continue
        skipping = False
        if line.lstrip().startswith(("ed25519_private:", "rsa_private:", "ecdsa_private:")):
            lines.append(line.split(":", 1)[0] + f": {SECRET_MASK}\n")
            skipping = True
            continue
        lines.append(line)
    return "".join(lines)


def write_plan(result: PlanResult, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    for node, files in sorted(result.files.items()):
        for path, content in sorted(files.items()):
            target = out_dir / node / path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(content)
    resources = [r.to_json() for r in result.records]
    (out_dir / "resources.json").write_text(json.dumps(resources, indent=2, sort_keys=True) + "\n")
    (out_dir / "outputs.json").write_text(json.dumps(result.outputs, indent=2, sort_keys=True) + "\n")


def format_tree(records: list[Registration]) -> str:
    children: dict[str, list[Registration]] = {}
    for rec in records:
        children.setdefault(rec.parent, []).append(rec)
    lines: list[str] = []

    def walk(parent: str, depth: int) -> None:
        for rec in sorted(children.get(parent, []), key=lambda r: (r.type, r.name)):
            flags = "".join(
                [" [protected]" if rec.protect else "", " [retained on delete]" if rec.retain_on_delete else ""]
            )
            lines.append(f"{'  ' * depth}{rec.type}  {rec.name}{flags}{_key_inputs(rec)}")
            walk(rec.urn, depth + 1)

    roots = {r.parent for r in records} - {r.urn for r in records}
    for root in sorted(roots):
        walk(root, 0)
    return "\n".join(lines)


def _key_inputs(rec: Registration) -> str:
    if rec.type == "command:remote:Command":
        create = str(rec.plain_inputs.get("create", ""))
        return f"  ({create.split(chr(10), 1)[0].removeprefix('# ')})"
    keys = KEY_INPUTS.get(rec.type, ())
    masked = rec.masked_inputs
    shown = []
    for key in keys:
        if key in masked:
            value = masked[key]
            if rec.type.endswith("volume:Volume") and key == "size" and isinstance(value, (int, float)):
                value = f"{int(value) // 1024**3}GiB"
            if isinstance(value, dict) and set(value) == {"path"}:
                value = value["path"]
            if isinstance(value, float) and value.is_integer():
                value = int(value)  # the wire format carries every number as a double
            shown.append(f"{key}={value}")
    return ("  (" + ", ".join(shown) + ")") if shown else ""


def summary(result: PlanResult) -> str:
    counts: dict[str, int] = {}
    for rec in result.records:
        counts[rec.type] = counts.get(rec.type, 0) + 1
    lines = [f"{n:4d}  {t}" for t, n in sorted(counts.items())]
    note = ""
    if result.stack.ssh_private_key_set or result.stack.receiver_secret_set:  # the secure: values a stack holds
        note = "\nEncrypted secure: values in the stack file are planned as masked placeholders, not decrypted."
    return "Resources by type:\n" + "\n".join(lines) + note

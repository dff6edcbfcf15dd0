"""The hyperscaler command line: validate | plan | diff | doctor | inventory | image.

Exit codes: 0 success, 1 the stack (or host) has problems, 2 bad usage. A config mistake is a message,
never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from config import ClusterSpec, ConfigError, load_stack_file
from config.findings import format_finding
from config.topology import plan_nodes
from hyperscaler.imagefetch import FetchError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class UsageError(Exception):
    pass


def stack_path(stack: str | None, file: str | None) -> Path:
    if stack and file:
        raise UsageError("name a stack or pass --file, not both")
    if file:
        return Path(file)
    if not stack:
        raise UsageError("name a stack (e.g. dev) or pass --file PATH")
    for base in (Path.cwd(), PROJECT_ROOT):
        candidate = base / f"Pulumi.{stack}.yaml"
        if candidate.exists():
            return candidate
    raise UsageError(
        f"no stack file Pulumi.{stack}.yaml in {Path.cwd()} or {PROJECT_ROOT}; "
        f"known stacks: {', '.join(sorted(p.name[7:-5] for p in PROJECT_ROOT.glob('Pulumi.*.yaml')))}"
    )


def cmd_validate(args: argparse.Namespace) -> int:
    path = stack_path(args.stack, args.file)
    loaded = load_stack_file(path)
    for warning in loaded.warnings:
        print(format_finding(str(path), warning))
    print(f"{path}: valid ({len(loaded.warnings)} warning(s))")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from hyperscaler.plan import format_tree, run_plan, summary, write_plan

    path = stack_path(args.stack, args.file)
    result = run_plan(path)
    print(format_tree(result.records))
    print()
    print(summary(result))
    if args.out:
        out = Path(args.out)
        write_plan(result, out)
        print(f"\nWrote {sum(len(f) for f in result.files.values())} node files and resources.json to {out}/")
    return 0


def _root(value: str) -> Path:
    root = Path(value)
    if not root.is_dir():
        raise UsageError(f"--root {value}: not a directory (expected a tree with sys/, proc/ and dev/ in it)")
    return root


def host_needs(spec: ClusterSpec, host: str) -> tuple[int, int, int]:
    """(hugepage-backed MiB, other guest MiB, new volume GiB) the stack puts on host."""
    from config.placement import place

    nodes = [n for n in plan_nodes(spec) if n.host == host]
    huge, normal = place(spec).memory_on(host)
    disk = sum(n.disk_gib + sum(v.size_gib for v in n.volumes) for n in nodes)
    return huge, normal, disk


def _doctor_host(spec: ClusterSpec, root: Path) -> str:
    """The stack-file host this machine is: the one named like it, else the first."""
    from hyperscaler.probe import sysfs

    local = (sysfs.hostname(root) or "").split(".")[0].lower()
    return next((h.name for h in spec.hosts if h.name == local), spec.hosts[0].name)


def cmd_doctor(args: argparse.Namespace) -> int:
    from hyperscaler.probe import exit_code, format_report, run_doctor

    root = _root(args.root)
    if args.stack is None and args.file is None:
        if args.host:
            raise UsageError("--host names a host of a stack file: also name a stack or pass --file")
        results = run_doctor(root, None, None)
        print(format_report(results), end="")
        return exit_code(results)
    path = stack_path(args.stack, args.file)
    spec = load_stack_file(path).spec
    host = args.host or _doctor_host(spec, root)
    huge = normal = disk = 0
    if spec.host(host) is not None:
        huge, normal, disk = host_needs(spec, host)
        print(f"{path}: host {host} needs {huge} MiB in hugepages, {normal} MiB of other memory, {disk} GiB of volumes")
    results = run_doctor(root, spec, host, hugepages_needed_mib=huge, memory_needed_mib=normal, disk_needed_gib=disk)
    print(format_report(results), end="")
    return exit_code(results)


def cmd_inventory(args: argparse.Namespace) -> int:
    from pydantic import TypeAdapter, ValidationError

    from config.types import Hostname
    from hyperscaler.probe import render_inventory_yaml

    root = _root(args.root)
    if args.host_name is not None:
        try:
            TypeAdapter(Hostname).validate_python(args.host_name)
        except ValidationError as exc:
            raise UsageError(f"--host-name: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from None
    print(render_inventory_yaml(root, args.host_name), end="")
    return 0


def cmd_diff(args: argparse.Namespace) -> int:
    from hyperscaler.diff import diff_report, stack_at_revision

    new = stack_path(args.stack, args.file)
    old = Path(args.against) if args.against else stack_at_revision(new, args.revision)
    report, _ = diff_report(old, new)
    print(report)
    return 0


def _s3_settings(args: argparse.Namespace) -> Any:
    from hyperscaler.imagefetch import S3Settings

    return S3Settings(args.endpoint_url, args.region, args.profile)


def cmd_image_fetch(args: argparse.Namespace) -> int:
    from config.images import image_cache_dir
    from config.types import Sha256
    from hyperscaler.imagefetch import fetch

    if args.sha256 is None and not args.trusted:
        raise UsageError("give --sha256 HEX (or --trusted for a local file you vouch for)")
    if args.trusted and not args.source.startswith("/"):
        raise UsageError("--trusted is for a local file; pin a download with --sha256")
    sha256 = _validated(Sha256, args.sha256, "--sha256") if args.sha256 is not None else None
    cache = Path(args.cache) if args.cache else image_cache_dir()
    print(fetch(args.source, sha256, args.format, cache, _s3_settings(args)))
    return 0


def cmd_image_sha256(args: argparse.Namespace) -> int:
    from hyperscaler.imagefetch import digest_of

    print(digest_of(args.source, _s3_settings(args)))
    return 0


def cmd_image_build(args: argparse.Namespace) -> int:
    from config.images import image_cache_dir
    from config.types import Sha256
    from hyperscaler.imagebuild import Base, BuildError, build_images
    from hyperscaler.imagefetch import fetch

    sha256 = _validated(Sha256, args.base_sha256, "--base-sha256")
    if bool(args.kernel) != bool(args.initrd):
        raise UsageError("--kernel and --initrd go together (a base without a boot loader)")
    # The base is pinned like any image: checked in place, or downloaded into the cache and checked.
    path = fetch(args.base, sha256, args.base_format, image_cache_dir(), _s3_settings(args))
    base = Base(path, sha256, args.base_format, args.kernel, args.initrd, args.cmdline if args.kernel else None)
    try:
        manifest = build_images(
            args.role or ["compute", "controller", "storage"], base, Path(args.out), args.accelerator
        )
    except BuildError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(manifest)
    return 0


def _validated(kind: Any, value: str, option: str) -> Any:
    from pydantic import TypeAdapter, ValidationError

    try:
        return TypeAdapter(kind).validate_python(value)
    except ValidationError as exc:
        raise UsageError(f"{option}: {exc.errors()[0]['msg'].removeprefix('Value error, ')}") from None


def _image_parser(sub: Any) -> None:
    image = sub.add_parser("image", help="base images: fetch and check one, hash one, build role images")
    verbs = image.add_subparsers(dest="image_command", required=True)
    fetch = verbs.add_parser(
        "fetch", help="bring an image into the local cache and check its sha256; prints the file's path"
    )
    fetch.add_argument("source", help="absolute path, https:// URL or s3://bucket/key")
    fetch.add_argument("--sha256", help="the checksum the image must have")
    fetch.add_argument("--trusted", action="store_true", help="a local file used without a checksum")
    fetch.add_argument("--format", default="qcow2", choices=["qcow2", "raw"], help="image format (default qcow2)")
    fetch.add_argument("--cache", help="cache directory (default: $HYPERSCALER_IMAGE_CACHE or ~/.cache/hyperscaler)")
    digest = verbs.add_parser("sha256", help="print the sha256 of an image (local, https:// or s3://) to pin it")
    digest.add_argument("source", help="absolute path, https:// URL or s3://bucket/key")
    build = verbs.add_parser("build", help="build role images with Packer on a pinned base; prints the manifest's path")
    build.add_argument("--role", action="append", choices=["compute", "controller", "storage"], help="(repeatable)")
    build.add_argument("--base", required=True, help="the base image: absolute path, https:// URL or s3://bucket/key")
    build.add_argument("--base-sha256", required=True, help="the base image's sha256")
    build.add_argument("--base-format", default="qcow2", choices=["qcow2", "raw"])
    build.add_argument("--kernel", help="a kernel to boot the base with, when it has no boot loader")
    build.add_argument("--initrd", help="the initrd that goes with --kernel")
    build.add_argument("--cmdline", default="root=/dev/vda rw console=ttyS0", help="the kernel command line")
    build.add_argument("--out", required=True, help="where the images and manifest.json go")
    build.add_argument("--accelerator", default="kvm", choices=["kvm", "tcg"], help="QEMU accelerator (default kvm)")
    for verb in (fetch, digest, build):
        verb.add_argument("--endpoint-url", help="S3-compatible endpoint (MinIO...), for s3:// sources")
        verb.add_argument("--region", help="S3 region, for s3:// sources")
        verb.add_argument("--profile", help="AWS profile to take S3 credentials from")
    fetch.set_defaults(func=cmd_image_fetch)
    digest.set_defaults(func=cmd_image_sha256)
    build.set_defaults(func=cmd_image_build)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m hyperscaler", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)

    validate = sub.add_parser("validate", help="load a stack file and run every check")
    validate.add_argument("stack", nargs="?", help="stack name: reads Pulumi.<stack>.yaml")
    validate.add_argument("--file", help="path of a stack file instead of a stack name")
    validate.set_defaults(func=cmd_validate)

    plan = sub.add_parser("plan", help="run the program offline under Pulumi's mock runtime")
    plan.add_argument("stack", nargs="?", help="stack name: reads Pulumi.<stack>.yaml")
    plan.add_argument("--file", help="path of a stack file instead of a stack name")
    plan.add_argument("--out", help="write node files and resources.json into this directory")
    plan.set_defaults(func=cmd_plan)

    doctor = sub.add_parser("doctor", help="preflight a hypervisor host: KVM, IOMMU, vfio, hugepages, firmware...")
    doctor.add_argument("stack", nargs="?", help="stack name: check the host against Pulumi.<stack>.yaml")
    doctor.add_argument("--file", help="path of a stack file instead of a stack name")
    doctor.add_argument("--host", help="which of the stack's hosts this is (default: the one named like it)")
    doctor.add_argument("--root", default="/", help="read PATH/sys, PATH/proc and PATH/dev (default: /)")
    doctor.set_defaults(func=cmd_doctor)

    inventory = sub.add_parser("inventory", help="print this host as a stack-file hosts: entry")
    inventory.add_argument("--root", default="/", help="read PATH/sys, PATH/proc and PATH/dev (default: /)")
    inventory.add_argument("--host-name", help="name for the entry (default: the machine's short hostname)")
    inventory.set_defaults(func=cmd_inventory)
    diff = sub.add_parser("diff", help="what a stack change does: fields with their impact, resources to change")
    diff.add_argument("stack", nargs="?", help="stack name: reads Pulumi.<stack>.yaml")
    diff.add_argument("--file", help="path of a stack file instead of a stack name")
    diff.add_argument("--against", help="the old stack file; default: the file at --revision in git")
    diff.add_argument("--revision", default="HEAD", help="git revision of the old file (default HEAD)")
    diff.set_defaults(func=cmd_diff)
    _image_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except ConfigError as error:  # every finding of the stack file, with paths; never a traceback
        print(error.report(), file=sys.stderr)
        return 1
    except UsageError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    except FetchError as error:  # a download or checksum problem: the message says what to do
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 1

"""The hyperscaler command line: validate | plan | doctor | inventory.

Exit codes: 0 success, 1 the stack (or host) has problems, 2 bad usage. A config mistake is a message,
never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from config import ConfigError, load_stack_file
from config.findings import format_finding

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class UsageError(Exception):
    pass


def stack_path(stack: str | None, file: str | None) -> Path:
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
    try:
        loaded = load_stack_file(path)
    except ConfigError as error:
        print(error.report(), file=sys.stderr)
        return 1
    for warning in loaded.warnings:
        print(format_finding(str(path), warning))
    print(f"{path}: valid ({len(loaded.warnings)} warning(s))")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from hyperscaler.plan import format_tree, run_plan, summary, write_plan

    path = stack_path(args.stack, args.file)
    try:
        result = run_plan(path)
    except ConfigError as error:
        print(error.report(), file=sys.stderr)
        return 1
    print(format_tree(result.records))
    print()
    print(summary(result))
    if args.out:
        out = Path(args.out)
        write_plan(result, out)
        print(f"\nWrote {sum(len(f) for f in result.files.values())} node files and resources.json to {out}/")
    return 0


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
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args))
    except UsageError as error:
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2

"""Reading a stack file's YAML safely, the way Pulumi reads it.

A stack file is user input from a text editor or a copy from somewhere else, so it is read defensively,
in bounded time and memory, before anything interprets it:

* bytes first: a size limit, then strict UTF-8 (Pulumi refuses anything else too);
* then a scan of the YAML event stream, which PyYAML's parser produces without recursion, that refuses
  deep nesting (PyYAML's composer and constructor recurse per level) and alias bombs (a few lines whose
  aliases expand to billions of nodes), counting every alias at the size of what it repeats;
* then YAML 1.2 core-schema scalars, as Pulumi's Go YAML library resolves them: `yes`, `on` and
  `1:00:00` stay strings, and so do dates. PyYAML's YAML 1.1 defaults would make `max_time: 1:00:00`
  the integer 3600 and a partition named `on` the boolean true.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

MAX_FILE_BYTES = 1024 * 1024  # a real stack file is a few kilobytes
MAX_DEPTH = 64  # the deepest real stack file nests about 6 levels
MAX_EXPANDED_NODES = 200_000  # nodes after aliases are expanded; a 512-node cluster spelled out is ~20k


class StackFileError(Exception):
    """The file cannot be read as a stack file at all; `message` and `hint` say why."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint


class _Yaml12Loader(yaml.SafeLoader):
    """SafeLoader with YAML 1.2 core-schema implicit types (null, bool, int, float) and nothing else."""


_Yaml12Loader.yaml_implicit_resolvers = {}
for _tag, _pattern, _first in (
    ("tag:yaml.org,2002:null", r"^(?:~|null|Null|NULL|)$", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:bool", r"^(?:true|True|TRUE|false|False|FALSE)$", list("tTfF")),
    ("tag:yaml.org,2002:int", r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$", list("-+0123456789")),
    (
        "tag:yaml.org,2002:float",
        r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$",
        list("-+.0123456789"),
    ),
    ("tag:yaml.org,2002:merge", r"^(?:<<)$", ["<"]),
):
    _Yaml12Loader.add_implicit_resolver(_tag, re.compile(_pattern), _first)


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    text = str(loader.construct_scalar(node))  # type: ignore[arg-type]
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text)  # YAML 1.2: a leading 0 is decimal, never octal


_Yaml12Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)


@dataclass(frozen=True)
class ParsedStackFile:
    data: Any
    root: yaml.Node | None


def decode(raw: bytes) -> str:
    if len(raw) > MAX_FILE_BYTES:
        raise StackFileError(
            f"the file is {len(raw)} bytes; a stack file is at most {MAX_FILE_BYTES} bytes",
            "is this the right file? A stack file is a short YAML document",
        )
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise StackFileError(
            f"the file is not UTF-8 text: byte {exc.start} (line {line}) is {raw[exc.start : exc.start + 1]!r}",
            "save it as UTF-8; a stack file is YAML text, not a binary file",
        ) from None


def _line(event: yaml.Event) -> int:
    return event.start_mark.line + 1 if event.start_mark is not None else 0


def _scan(text: str) -> None:
    """Refuse deep nesting and alias bombs from the event stream, before anything recursive runs."""
    depth = 0
    nodes = 0
    anchored: dict[str, int] = {}  # anchor -> expanded size of its node
    open_anchors: list[tuple[str | None, int]] = []  # per open collection: (anchor, node count at start)
    for event in yaml.parse(text, Loader=_Yaml12Loader):
        if isinstance(event, yaml.AliasEvent):
            if any(anchor == event.anchor for anchor, _ in open_anchors):
                raise StackFileError(
                    f"the alias *{event.anchor} (line {_line(event)}) refers to a value that contains it",
                    "a value cannot contain itself; write it out",
                )
            nodes += anchored.get(str(event.anchor), 0)  # an undefined alias: the composer reports it
        elif isinstance(event, yaml.ScalarEvent):
            nodes += 1
            if event.anchor:
                anchored[event.anchor] = 1
        elif isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
            depth += 1
            nodes += 1
            if depth > MAX_DEPTH:
                raise StackFileError(
                    f"the YAML nests more than {MAX_DEPTH} levels deep (line {_line(event)})",
                    "a stack file nests a few levels; check the indentation or brackets",
                )
            open_anchors.append((event.anchor, nodes))
        elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
            depth -= 1
            anchor, start = open_anchors.pop()
            if anchor:
                anchored[anchor] = nodes - start + 1
        if nodes > MAX_EXPANDED_NODES:
            raise StackFileError(
                f"the YAML expands to more than {MAX_EXPANDED_NODES} values once its aliases (*name) are expanded",
                "write the values out, or use fewer nested aliases; this looks like an alias bomb",
            )


def parse(text: str) -> ParsedStackFile:
    """The document and its node tree (for line numbers). Raises StackFileError or yaml.YAMLError."""
    _scan(text)
    root = yaml.compose(text, Loader=_Yaml12Loader)
    data = yaml.load(text, Loader=_Yaml12Loader)
    return ParsedStackFile(data, root)

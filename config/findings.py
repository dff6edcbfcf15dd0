"""One shape for every problem found in a stack file, from schema errors to semantic checks."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

# A stack file can hold a value of megabytes; a message quotes at most this much of it.
BRIEF_CHARS = 40
MESSAGE_CHARS = 500


def brief(value: Any) -> str:
    """repr(value), cut to a short prefix: error messages quote what the user wrote, never all of it."""
    text = repr(value)
    if len(text) <= BRIEF_CHARS:
        return text
    return f"{text[:BRIEF_CHARS]}... ({len(text)} characters)"


def _clip(text: str, limit: int = MESSAGE_CHARS) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... (cut, {len(text)} characters)"


class Severity(enum.StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, order=True)
class Finding:
    path: str  # dotted field path below hyperscaler:cluster, e.g. "compute[0].host"
    message: str
    hint: str = ""
    severity: Severity = Severity.ERROR

    @property
    def is_error(self) -> bool:
        return self.severity is Severity.ERROR


class ConfigError(Exception):
    """Raised with every finding at once; the CLI and __main__ print it without a traceback."""

    def __init__(self, source: str, findings: list[Finding], lines: dict[str, int] | None = None) -> None:
        self.source = source
        self.findings = sorted(findings, key=lambda f: (f.severity is not Severity.ERROR, f.path))
        self.lines = lines or {}
        super().__init__(self.report())

    def report(self) -> str:
        errors = [f for f in self.findings if f.is_error]
        head = f"{self.source}: {len(errors)} error(s) in hyperscaler:cluster"
        return "\n".join([head, *(format_finding(self.source, f, self.lines) for f in self.findings)])


def format_finding(source: str, finding: Finding, lines: dict[str, int] | None = None) -> str:
    line = _line_for(finding.path, lines or {})
    where = f"{source}:{line}" if line else source
    key = "hyperscaler:cluster" + (("." + _clip(finding.path, 200)) if finding.path else "")
    text = f"  {finding.severity.value}: {where}: {key}: {_clip(finding.message)}"
    if finding.hint:
        text += f"\n      hint: {_clip(finding.hint)}"
    return text


def _line_for(path: str, lines: dict[str, int]) -> int | None:
    """The line of the deepest part of `path` that the stack file spells out itself."""
    while path:
        if path in lines:
            return lines[path]
        cut = max(path.rfind("."), path.rfind("["))
        path = path[:cut] if cut > 0 else ""
    return lines.get("")

"""A checker for BeeGFS configuration files, against the keys BeeGFS's own services accept.

No BeeGFS package can be installed where this program is tested, so every BeeGFS file the program renders
is checked here instead (tests/unit/test_beegfs.py): an unknown key, a key given twice, or a value of the
wrong type fails. The key lists and types in render/beegfs_keys.json are facts taken from BeeGFS's own
shipped configuration files and parsers; its `_about` names the releases (7.4.7; 8.x as of 8.3).

How BeeGFS reads a `key = value` file (and so how this checker reads it): each line is trimmed; empty
lines and lines starting with '#' are skipped; there are no inline comments; the line splits at its first
'='. BeeGFS itself lets a repeated key silently win and, in 8's kernel client, skips unknown keys: both
hide mistakes, so both fail here.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from config.models.storage import MIN_OFFLINE_TIMEOUT_S

KEYS_FILE = Path(__file__).with_name("beegfs_keys.json")

_BOOLS = {"true", "false", "yes", "no", "1", "0"}  # BeeGFS reads anything else as false, silently
_INT = re.compile(r"^-?\d+$")
_SIZE = re.compile(r"^\d+[kKmMgGtTpP]?$")  # 7.x UnitTk: binary suffixes
_DURATION = re.compile(r"^\d+(ns|us|ms|s|m|h|d)?$")
_RANGE = re.compile(r"^\d+-\d+$")


@dataclass(frozen=True)
class Problem:
    file: str
    line: int  # 0 for the whole file
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}" if self.line else f"{self.file}: {self.message}"


@cache
def known_keys() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(KEYS_FILE.read_text())
    return data


def service_keys(version: str, service: str) -> Mapping[str, Any]:
    """The keys one service of one release accepts: service is mgmtd (7.4), meta, storage, client,
    helperd (7.4) or mgmtd_toml (8)."""
    try:
        keys: Mapping[str, Any] = known_keys()[version][service]
    except KeyError:
        raise ValueError(f"BeeGFS {version} has no service {service!r} with a key list") from None
    return keys


def _value_problem(value: str, rule: Mapping[str, Any]) -> str | None:
    kind = rule["type"]
    if kind == "bool" and value.lower() not in _BOOLS:
        return f"{value!r} is not a boolean (true or false)"
    if kind == "int":
        if not _INT.match(value):
            return f"{value!r} is not an integer"
        number = int(value)
        if "min" in rule and number < rule["min"]:
            return f"{number} is below the minimum {rule['min']}"
        if "max" in rule and number > rule["max"]:
            return f"{number} is above the maximum {rule['max']}"
    if kind == "size" and not _SIZE.match(value):
        return f"{value!r} is not a size (a number with an optional k, m, g, t or p)"
    if kind == "path" and value and not value.startswith("/"):
        return f"{value!r} is not an absolute path"
    if kind == "enum" and value not in rule["values"]:
        return f"{value!r} is not one of {', '.join(rule['values'])}"
    return None


def parse_key_values(text: str) -> list[tuple[int, str, str]]:
    """(line number, key, value) of every setting, read the way BeeGFS reads the file."""
    settings = []
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, _, value = line.partition("=")
        settings.append((number, key.strip(), value.strip()))
    return settings


def check_key_values(name: str, text: str, version: str, service: str) -> list[Problem]:
    keys = service_keys(version, service)
    problems: list[Problem] = []
    seen: dict[str, int] = {}
    for number, key, value in parse_key_values(text):
        if key in seen:
            problems.append(
                Problem(name, number, f"{key} is set again (first on line {seen[key]}); BeeGFS keeps the last")
            )
        seen.setdefault(key, number)
        if key not in keys:
            problems.append(Problem(name, number, f"{key!r} is not a BeeGFS {version} {service} setting"))
            continue
        if (issue := _value_problem(value, keys[key])) is not None:
            problems.append(Problem(name, number, f"{key}: {issue}"))
    return problems


def _toml_problem(value: Any, rule: Mapping[str, Any]) -> str | None:
    kind = rule["type"]
    if kind == "bool":
        return None if isinstance(value, bool) else f"{value!r} is not a boolean"
    if kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            return f"{value!r} is not an integer"
        return _value_problem(str(value), rule)
    if kind == "list":
        ok = isinstance(value, list) and all(isinstance(v, str) for v in value)
        return None if ok else f"{value!r} is not a list of strings"
    if not isinstance(value, str):
        return f"{value!r} is not a string"
    fmt = str(rule.get("format", ""))
    if fmt.startswith("duration") and not _DURATION.match(value):
        return f"{value!r} is not a duration such as 180s or 30m"
    if fmt.startswith("'<start>-<end>'") and not _RANGE.match(value):
        return f"{value!r} is not a range such as 1000-1999"
    return _value_problem(value, rule)


def check_mgmtd_toml(name: str, text: str) -> list[Problem]:
    """The 8.x management service's TOML: parsed with tomllib (a repeated key is a TOML error), then every
    key and nested table key against mgmtd's own list."""
    try:
        document = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        return [Problem(name, 0, f"not valid TOML: {err}")]
    return list(_check_table(name, document, service_keys("8", "mgmtd_toml"), ""))


def _check_table(name: str, table: Mapping[str, Any], keys: Mapping[str, Any], prefix: str) -> Iterable[Problem]:
    for key, value in table.items():
        where = f"{prefix}{key}"
        rule = keys.get(key)
        if rule is None:
            yield Problem(name, 0, f"{where!r} is not a BeeGFS 8 mgmtd setting")
        elif rule["type"] == "table":
            if not isinstance(value, dict):
                yield Problem(name, 0, f"{where} must be a table")
            else:
                yield from _check_table(name, value, rule["keys"], f"{where}.")
        elif (issue := _toml_problem(value, rule)) is not None:
            yield Problem(name, 0, f"{where}: {issue}")


def check_mounts_conf(name: str, text: str) -> list[Problem]:
    """beegfs-mounts.conf: `<mount point> <client config>` per line, both absolute paths."""
    problems = []
    for number, raw in enumerate(text.splitlines(), start=1):
        fields = raw.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) != 2 or not all(f.startswith("/") for f in fields):
            problems.append(Problem(name, number, "expected '<mount point> <client config file>', both absolute"))
    return problems


# Which checker reads which file, by its name on the node.
KEY_VALUE_SERVICES = {
    "beegfs-mgmtd.conf": "mgmtd",
    "beegfs-meta.conf": "meta",
    "beegfs-storage.conf": "storage",
    "beegfs-client.conf": "client",
    "beegfs-helperd.conf": "helperd",
}


def check_file(version: str, path: str, text: str) -> list[Problem]:
    name = Path(path).name
    if name == "beegfs-mgmtd.toml":
        return check_mgmtd_toml(path, text)
    if name == "beegfs-mounts.conf":
        return check_mounts_conf(path, text)
    if name in KEY_VALUE_SERVICES:
        return check_key_values(path, text, version, KEY_VALUE_SERVICES[name])
    raise ValueError(f"{path} is not a BeeGFS configuration file this checker knows")


def check_agreement(version: str, files: Mapping[str, str]) -> list[Problem]:
    """What must agree across one file system's files: every service names the same management host and
    auth file, and their offline timeouts equal mgmtd's (node-offline-timeout), 30 s or more."""
    problems: list[Problem] = []
    values: dict[str, dict[str, str]] = {}
    for path, text in files.items():
        if Path(path).name in KEY_VALUE_SERVICES:
            values[path] = {k: v for _, k, v in parse_key_values(text)}
        elif Path(path).name == "beegfs-mgmtd.toml":
            toml = tomllib.loads(text)
            timeout = str(toml.get("node-offline-timeout", "180s")).removesuffix("s")
            values[path] = {"sysTargetOfflineTimeoutSecs": timeout, "connAuthFile": toml.get("auth-file", "")}
    for key in ("sysMgmtdHost", "connAuthFile", "sysTargetOfflineTimeoutSecs"):
        seen = {path: v[key] for path, v in values.items() if key in v}
        if len(set(seen.values())) > 1:
            listing = ", ".join(f"{Path(p).name}={v}" for p, v in sorted(seen.items()))
            problems.append(Problem("(all files)", 0, f"{key} differs between files: {listing}"))
    for path, v in values.items():
        timeout = v.get("sysTargetOfflineTimeoutSecs", "")
        if timeout.isdigit() and int(timeout) < MIN_OFFLINE_TIMEOUT_S:
            problems.append(Problem(path, 0, f"offline timeout {timeout}s is below {MIN_OFFLINE_TIMEOUT_S}s"))
    return problems

"""The one place that reads a stack file or pulumi.Config, turning it into a checked ClusterSpec.

Two tiers, as in ParallelCluster: the pydantic schema first, then the semantic checks. Either way every
finding comes back at once with the stack file, the line where we can tell, and the field path.
"""

from __future__ import annotations

import contextlib
import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from config import stackfile
from config.checks import run_checks
from config.findings import ConfigError, Finding, Severity, brief
from config.images import resolve_manifests
from config.models import ClusterSpec
from config.models.monitoring import RECEIVER_SECRET_KEY
from config.presets import PRESETS, apply_preset

PROJECT = "hyperscaler"
CLUSTER_KEY = f"{PROJECT}:cluster"
SSH_KEY_KEY = f"{PROJECT}:sshPrivateKey"
# Credentials for s3:// image sources, when the usual AWS sources (environment, profile) are not used.
S3_KEYS = (f"{PROJECT}:s3AccessKeyId", f"{PROJECT}:s3SecretAccessKey")
KNOWN_KEYS = (CLUSTER_KEY, SSH_KEY_KEY, *S3_KEYS, RECEIVER_SECRET_KEY)
SECRET_PLACEHOLDER = "[secret: encrypted in the stack file; the offline plan does not decrypt it]"


@dataclass(frozen=True)
class StackInputs:
    """What a stack file holds: the raw cluster mapping plus the secrets, still encrypted or plain."""

    source: str
    cluster: dict[str, Any]
    secrets: dict[str, str] = field(default_factory=dict)  # key -> value or SECRET_PLACEHOLDER
    lines: dict[str, int] = field(default_factory=dict)  # field path -> line in the stack file


@dataclass(frozen=True)
class LoadedStack:
    spec: ClusterSpec
    source: str
    warnings: list[Finding]
    ssh_private_key_set: bool
    receiver_secret_set: bool = False


def read_stack_file(path: Path) -> StackInputs:
    """Parse Pulumi.<stack>.yaml without the Pulumi CLI. Raises ConfigError for any problem."""
    source = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(
            source,
            [
                Finding(
                    "",
                    f"cannot read the stack file: {exc.strerror}",
                    "pass the path of an existing Pulumi.<stack>.yaml",
                )
            ],
        ) from None
    try:
        parsed = stackfile.parse(stackfile.decode(raw))
    except stackfile.StackFileError as exc:
        raise ConfigError(source, [Finding("", exc.message, exc.hint)]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or exc
        raise ConfigError(
            source,
            [Finding("", f"the file is not valid YAML{where}: {brief(str(problem))}", "check indentation and quoting")],
        ) from None
    node, doc = parsed.root, parsed.data
    duplicates = _duplicate_keys(node)
    if duplicates:
        raise ConfigError(
            source,
            [
                Finding(
                    "",
                    f"key {brief(key)} appears twice in one mapping (line {line})",
                    "keep one; Pulumi refuses duplicate keys",
                )
                for key, line in duplicates
            ],
        )
    config = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(config, dict):
        raise ConfigError(
            source,
            [
                Finding(
                    "",
                    "the stack file has no `config:` mapping",
                    f"start it with `config:` and put the cluster under `{CLUSTER_KEY}:`",
                )
            ],
        )
    findings: list[Finding] = []
    for key in config:
        if str(key).startswith(f"{PROJECT}:") and key not in KNOWN_KEYS:
            close = difflib.get_close_matches(str(key), KNOWN_KEYS, n=1)
            hint = f"did you mean {close[0]}?" if close else f"known keys: {', '.join(KNOWN_KEYS)}"
            findings.append(Finding("", f"unknown config key {brief(key)}", hint))
    cluster = config.get(CLUSTER_KEY)
    if not isinstance(cluster, dict):
        findings.append(
            Finding(
                "",
                f"`{CLUSTER_KEY}` is missing or not a mapping",
                "copy Pulumi.dev.yaml and edit it; see docs/configuration.md",
            )
        )
    secrets: dict[str, str] = {}
    how = {SSH_KEY_KEY: "< ~/.ssh/id_ed25519", **{k: "(it prompts for the value)" for k in S3_KEYS}}
    for key, example in how.items():
        value = config.get(key)
        if isinstance(value, dict) and "secure" in value:
            secrets[key] = SECRET_PLACEHOLDER
        elif value is not None:
            findings.append(
                Finding(
                    "",
                    f"{key} is stored in plain text",
                    f"store it encrypted: pulumi config set --secret {key} {example}",
                )
            )
    if len([k for k in S3_KEYS if k in config]) == 1:
        missing = next(k for k in S3_KEYS if k not in config)
        findings.append(
            Finding("", f"{missing} is not set, but its partner is", f"pulumi config set --secret {missing}")
        )
    receiver_secret = config.get(RECEIVER_SECRET_KEY)
    if isinstance(receiver_secret, dict) and "secure" in receiver_secret:
        secrets[RECEIVER_SECRET_KEY] = SECRET_PLACEHOLDER
    elif receiver_secret is not None:
        findings.append(
            Finding(
                "",
                f"{RECEIVER_SECRET_KEY} is stored in plain text",
                f"remove it and store it encrypted: pulumi config set --secret {RECEIVER_SECRET_KEY}",
            )
        )
    findings += plain_private_keys({k: v for k, v in config.items() if k != SSH_KEY_KEY})
    if findings:
        raise ConfigError(source, findings)
    assert isinstance(cluster, dict)
    return StackInputs(source, cluster, secrets, _cluster_lines(node))


# What the first line of a private key looks like in every format ssh-keygen, openssl and PuTTY write.
_PRIVATE_KEY_RE = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----|PuTTY-User-Key-File-\d+:")


def plain_private_keys(config: dict[Any, Any]) -> list[Finding]:
    """A private key in plain text anywhere in the stack's config: it belongs in an encrypted secret.
    Walks iteratively, so it is safe on any structure the YAML scan let through."""
    findings: list[Finding] = []
    pending: list[tuple[str, str, Any]] = [(str(k), "", v) for k, v in config.items()]
    while pending:
        key, path, value = pending.pop()
        if isinstance(value, dict):
            if set(value) == {"secure"}:
                continue  # already encrypted by `pulumi config set --secret`
            pending += [(key, f"{path}.{k}" if path else str(k), v) for k, v in value.items()]
        elif isinstance(value, list):
            pending += [(key, f"{path}[{i}]", v) for i, v in enumerate(value)]
        elif isinstance(value, str) and _PRIVATE_KEY_RE.search(value):
            what = "this value" if key == CLUSTER_KEY else f"{key[:80]}{path and '.'}{path}"
            findings.append(
                Finding(
                    path if key == CLUSTER_KEY else "",
                    f"{what} holds a private key in plain text",
                    "remove it: a private key never belongs in a stack file in the clear. The admin key goes "
                    f"in encrypted: pulumi config set --secret {SSH_KEY_KEY} < ~/.ssh/id_ed25519",
                )
            )
    return sorted(findings)


def _duplicate_keys(root: yaml.Node | None) -> list[tuple[str, int]]:
    """(key, line) of every key repeated within one mapping; PyYAML would silently keep the last."""
    found: list[tuple[str, int]] = []
    stack = [root] if root is not None else []
    while stack:
        node = stack.pop()
        if isinstance(node, yaml.MappingNode):
            seen: set[str] = set()
            for key, value in node.value:
                if key.value in seen:
                    found.append((str(key.value), key.start_mark.line + 1))
                seen.add(key.value)
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
    return sorted(found, key=lambda kv: kv[1])


def _cluster_lines(root: yaml.Node | None) -> dict[str, int]:
    """Map field paths below hyperscaler:cluster to 1-based line numbers."""
    lines: dict[str, int] = {}

    def walk(node: yaml.Node, path: str) -> None:
        lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                sub = f"{path}.{key.value}" if path else str(key.value)
                lines[sub] = key.start_mark.line + 1
                walk(value, sub)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, f"{path}[{i}]")

    if isinstance(root, yaml.MappingNode):
        for key, value in root.value:
            if key.value == "config" and isinstance(value, yaml.MappingNode):
                for ckey, cvalue in value.value:
                    if ckey.value == CLUSTER_KEY:
                        walk(cvalue, "")
    return lines


def build_spec(inputs: StackInputs) -> LoadedStack:
    """Schema, then semantic checks. Raises ConfigError with every error found; returns warnings."""
    raw, manifest_findings = resolve_manifests(apply_preset(inputs.cluster))
    if manifest_findings:
        raise ConfigError(inputs.source, manifest_findings, inputs.lines)
    try:
        spec = ClusterSpec.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(inputs.source, schema_findings(exc, raw), inputs.lines) from None
    findings = list(_checked(spec))
    if SSH_KEY_KEY not in inputs.secrets:
        findings.append(
            Finding(
                "",
                f"{SSH_KEY_KEY} is not set, so configuration steps will log in through ssh-agent (SSH_AUTH_SOCK)",
                f"pulumi config set --secret {SSH_KEY_KEY} < ~/.ssh/id_ed25519",
                Severity.WARNING,
            )
        )
    findings += receiver_secret_findings(spec, RECEIVER_SECRET_KEY in inputs.secrets)
    errors = [f for f in findings if f.is_error]
    if errors:
        raise ConfigError(inputs.source, findings, inputs.lines)
    return LoadedStack(
        spec, inputs.source, findings, SSH_KEY_KEY in inputs.secrets, RECEIVER_SECRET_KEY in inputs.secrets
    )


def receiver_secret_findings(spec: ClusterSpec, secret_set: bool) -> list[Finding]:
    """The alert receiver's password or token is a stack secret: needed when the receiver logs in, and
    pointless otherwise."""
    alerts = spec.monitoring.alerts
    needs = None
    if alerts.receiver == "email" and alerts.email is not None and alerts.email.auth_username is not None:
        needs = "monitoring.alerts.email.auth_username"
    if alerts.receiver == "webhook" and alerts.webhook is not None and alerts.webhook.bearer_token:
        needs = "monitoring.alerts.webhook.bearer_token"
    if not spec.monitoring.enabled:
        needs = None
    if needs and not secret_set:
        return [
            Finding(
                needs,
                f"the alert receiver needs a password or token, and {RECEIVER_SECRET_KEY} is not set",
                f"pulumi config set --secret {RECEIVER_SECRET_KEY} (it never appears in a plain file or output)",
            )
        ]
    if secret_set and not needs:
        return [
            Finding(
                "monitoring.alerts",
                f"{RECEIVER_SECRET_KEY} is set, but no receiver uses it",
                "set monitoring.alerts.email.auth_username or monitoring.alerts.webhook.bearer_token, or remove it",
                Severity.WARNING,
            )
        ]
    return []


_CHECKED: dict[str, tuple[Finding, ...]] = {}


def _checked(spec: ClusterSpec) -> tuple[Finding, ...]:
    """The checks are pure and a spec is frozen: `hyperscaler plan` validates a stack before running the
    program, which loads it again, and the second time costs nothing."""
    key = spec.model_dump_json()
    if key not in _CHECKED:
        if len(_CHECKED) >= 8:
            _CHECKED.clear()
        _CHECKED[key] = tuple(run_checks(spec))
    return _CHECKED[key]


def load_stack_file(path: Path) -> LoadedStack:
    return build_spec(read_stack_file(path))


def load_from_pulumi() -> tuple[LoadedStack, Any, Any]:
    """Inside a Pulumi program: read the stack's config. Returns the spec, the SSH private key (a secret
    Output, or None to use ssh-agent) and the alert receiver's secret (a secret Output, or None)."""
    import pulumi

    cfg = pulumi.Config(PROJECT)
    source = f"Pulumi.{pulumi.get_stack()}.yaml"
    lines: dict[str, int] = {}
    with contextlib.suppress(ConfigError):  # the engine already parsed the file; line numbers are a nicety
        lines = read_stack_file(Path(source)).lines
    try:
        cluster = cfg.get_object("cluster")
    except Exception as exc:  # the engine hands us a string that is not JSON
        raise ConfigError(
            source, [Finding("", f"{CLUSTER_KEY} is not a mapping: {exc}", "see Pulumi.dev.yaml")]
        ) from None
    if not isinstance(cluster, dict):
        raise ConfigError(
            source,
            [
                Finding(
                    "",
                    f"`{CLUSTER_KEY}` is missing or not a mapping",
                    "copy Pulumi.dev.yaml and edit it; see docs/configuration.md",
                )
            ],
        )
    private_key = cfg.get_secret("sshPrivateKey")
    receiver_secret = cfg.get_secret(RECEIVER_SECRET_KEY.removeprefix(f"{PROJECT}:"))
    secrets = {SSH_KEY_KEY: SECRET_PLACEHOLDER} if private_key is not None else {}
    if receiver_secret is not None:
        secrets[RECEIVER_SECRET_KEY] = SECRET_PLACEHOLDER
    return build_spec(StackInputs(source, cluster, secrets, lines)), private_key, receiver_secret


def s3_credentials_from_pulumi() -> tuple[Any, Any] | None:
    """Inside a Pulumi program: the (access key id, secret access key) secrets for s3:// images, or None to
    let boto3 find credentials itself (environment, profile). Both or neither: read_stack_file checks."""
    import pulumi

    cfg = pulumi.Config(PROJECT)
    key_id, secret = (cfg.get_secret(key.split(":", 1)[1]) for key in S3_KEYS)
    if key_id is None and secret is None:
        return None
    if key_id is None or secret is None:
        missing = S3_KEYS[0] if key_id is None else S3_KEYS[1]
        raise ConfigError(
            f"Pulumi.{pulumi.get_stack()}.yaml",
            [Finding("", f"{missing} is not set, but its partner is", f"pulumi config set --secret {missing}")],
        )
    return key_id, secret


def schema_findings(exc: ValidationError, raw: Any) -> list[Finding]:
    findings = []
    for err in exc.errors():
        # drop pydantic's internal loc parts: validator names and the marker of a dict key's own error
        loc = [p for p in err["loc"] if not (isinstance(p, str) and (p.startswith("function-") or p == "[key]"))]
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        message = str(err["msg"]).removeprefix("Value error, ")
        findings.append(Finding(path, message, _hint(err["type"], loc, raw)))
    return findings


def _hint(kind: str, loc: list[Any], raw: Any) -> str:
    if kind == "extra_forbidden":
        parent = _model_at(ClusterSpec, loc[:-1])
        if parent is not None:
            names = sorted(parent.model_fields)
            close = difflib.get_close_matches(str(loc[-1]), names, n=1)
            lead = f"did you mean {close[0]!r}? " if close else ""
            return f"{lead}valid fields here: {', '.join(names)}"
    if kind == "missing":
        return "this field is required"
    if loc == ["preset"]:
        return f"use one of: {', '.join(PRESETS)}"
    if kind in ("int_parsing", "int_type"):
        return "write a whole number without quotes or units"
    return ""


def _model_at(model: type[BaseModel], loc: list[Any]) -> type[BaseModel] | None:
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)) or part not in current.model_fields:
            return None
        current = _unwrap(current.model_fields[part].annotation)
    return current if isinstance(current, type) and issubclass(current, BaseModel) else None


def _unwrap(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _unwrap(arg)
        if found is not None:
            return found
    return None


def config_for_mocks(inputs: StackInputs) -> tuple[dict[str, str], list[str]]:
    """The (config, secret keys) to hand pulumi.runtime.set_all_config for an offline plan."""
    config = {CLUSTER_KEY: json.dumps(inputs.cluster)}
    config.update(inputs.secrets)
    return config, sorted(inputs.secrets)

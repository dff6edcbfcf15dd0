"""The one set of Pulumi mocks, shared by `hyperscaler plan` and the component tests.

It records every registration with the options the engine would see (parent, provider, protect,
retain_on_delete, depends_on, secret outputs) and answers with the outputs the real providers produce:
volume ids are pool paths, cloud-init disk ids are "<volume key>;<uuid>", random bytes have their length.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass, field
from typing import Any

import pulumi
from pulumi.runtime import rpc, settings
from pulumi.runtime.mocks import MockCallArgs, MockMonitor, MockResourceArgs

SECRET_MASK = "[secret]"
_NAMESPACE = uuid.UUID("5b4f0c0e-4c0c-4a53-9a67-6879706572ff")


def is_secret_value(value: Any) -> bool:
    return isinstance(value, dict) and value.get(rpc._special_sig_key) == rpc._special_secret_sig


def unwrap_secrets(value: Any) -> Any:
    if is_secret_value(value):
        return unwrap_secrets(value["value"])
    if isinstance(value, dict):
        return {k: unwrap_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [unwrap_secrets(v) for v in value]
    return value


def mask_secrets(value: Any) -> Any:
    if is_secret_value(value):
        return SECRET_MASK
    if isinstance(value, dict):
        return {k: mask_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v) for v in value]
    if isinstance(value, pulumi.StringAsset):
        return {"asset": "string", "text": value.text}
    return value


def contains_secret(value: Any) -> bool:
    if is_secret_value(value):
        return True
    if isinstance(value, dict):
        return any(contains_secret(v) for v in value.values())
    if isinstance(value, list):
        return any(contains_secret(v) for v in value)
    return False


@dataclass
class Registration:
    urn: str
    type: str
    name: str
    custom: bool
    parent: str
    provider: str
    protect: bool
    retain_on_delete: bool
    delete_before_replace: bool
    depends_on: list[str]
    property_dependencies: dict[str, list[str]]  # input -> URNs its value came from (what the engine diffs)
    aliases: list[str]  # type tokens and names this resource was known by before (components/identity.py)
    additional_secret_outputs: list[str]
    replace_on_changes: list[str]
    inputs: dict[str, Any]  # raw: secrets still wrapped, so tests can assert secrecy
    ignore_changes: list[str] = field(default_factory=list)  # inputs the engine does not diff at all
    id: str = ""  # the id the mocks answered (a custom resource's; "" for components)

    @property
    def plain_inputs(self) -> dict[str, Any]:
        return dict(unwrap_secrets(self.inputs))

    @property
    def masked_inputs(self) -> dict[str, Any]:
        return dict(mask_secrets(self.inputs))

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "name": self.name,
            "urn": self.urn,
            "parent": self.parent or None,
            "provider": self.provider or None,
            "protect": self.protect,
            "retain_on_delete": self.retain_on_delete,
            "delete_before_replace": self.delete_before_replace,
            "depends_on": sorted(self.depends_on),
            "inputs": self.masked_inputs,
        }


def _uid(*parts: str) -> str:
    return str(uuid.uuid5(_NAMESPACE, "/".join(parts)))


def _bytes_for(name: str, length: int) -> bytes:
    out = b""
    counter = 0
    while len(out) < length:
        out += hashlib.sha256(f"{name}/{counter}".encode()).digest()
        counter += 1
    return out[:length]


class HyperscalerMocks(pulumi.runtime.Mocks):
    """Outputs shaped like the real providers'. Deterministic, so plans and tests are repeatable."""

    def __init__(self) -> None:
        self.pool_paths: dict[str, str] = {}
        # The inputs MockMonitor already deserialized, for RecordingMonitor: (type, name) -> inputs.
        self.seen_inputs: dict[tuple[str, str], dict[str, Any]] = {}

    def new_resource(self, args: MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        self.seen_inputs[(args.typ, args.name)] = args.inputs
        inputs = unwrap_secrets(args.inputs)
        state: dict[str, Any] = dict(inputs)
        typ, name = args.typ, args.name
        if not args.custom:
            return None, {}
        if typ == "libvirt:index/pool:Pool":
            path = (inputs.get("target") or {}).get("path") or inputs.get("path", "")
            self.pool_paths[inputs.get("name", name)] = path
            state.update(capacity=0, allocation=0, available=0)
            return _uid(typ, name), state
        if typ == "libvirt:index/volume:Volume":
            # The provider's volume id is the volume key, which for a dir pool is its path.
            path = f"{self.pool_paths.get(inputs.get('pool', 'default'), '/var/lib/libvirt/images')}/{inputs['name']}"
            return path, state
        if typ == "libvirt:index/cloudInitDisk:CloudInitDisk":
            path = f"{self.pool_paths.get(inputs.get('pool', 'default'), '/var/lib/libvirt/images')}/{inputs['name']}"
            return f"{path};{_uid(typ, name)}", state
        if typ == "random:index/randomBytes:RandomBytes":
            raw = _bytes_for(name, int(inputs.get("length", 32)))
            state.update(base64=base64.b64encode(raw).decode(), hex=raw.hex())
            return _uid(typ, name), state
        if typ == "random:index/randomPassword:RandomPassword":
            alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz23456789"
            raw = _bytes_for(name, int(inputs.get("length", 16)))
            state.update(result="".join(alphabet[b % len(alphabet)] for b in raw))
            return _uid(typ, name), state
        if typ == "docker:index/remoteImage:RemoteImage":
            # As the provider answers: the image's ID (its config digest) and the digest it was pulled by.
            digest = hashlib.sha256(str(inputs.get("name", name)).encode()).hexdigest()
            ref = str(inputs.get("name", name)).split("@")[0].rsplit(":", 1)[0]
            state.update(imageId=f"sha256:{digest}", repoDigest=f"{ref}@sha256:{digest}")
            return f"sha256:{digest}{inputs.get('name', name)}", state
        if typ in ("command:remote:Command", "command:local:Command"):
            state.update(stdout="", stderr="")
            return _uid(typ, name), state
        return _uid(typ, name), state

    def call(self, args: MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        # No invoke is used by the program yet; an empty result (not None) is what the mock runtime accepts.
        return {}, []


class RecordingMonitor(MockMonitor):
    """MockMonitor that keeps each request's resource options, which MockResourceArgs leaves out."""

    def __init__(self, mocks: HyperscalerMocks) -> None:
        super().__init__(mocks)
        self.seen_inputs = mocks.seen_inputs
        self.records: list[Registration] = []

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (gRPC method name)
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            self.records.append(
                Registration(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    custom=request.custom,
                    parent=request.parent,
                    provider=request.provider,
                    protect=bool(request.protect),
                    retain_on_delete=bool(request.retainOnDelete),
                    delete_before_replace=bool(request.deleteBeforeReplace),
                    depends_on=list(request.dependencies),
                    property_dependencies={k: list(v.urns) for k, v in request.propertyDependencies.items()},
                    aliases=[str(a.spec.type or a.spec.name or a.urn) for a in request.aliases],
                    additional_secret_outputs=list(request.additionalSecretOutputs),
                    replace_on_changes=list(request.replaceOnChanges),
                    # deserialized once, by MockMonitor (our names are unique per type)
                    inputs=self.seen_inputs.pop((request.type, request.name)),
                    ignore_changes=list(request.ignoreChanges),
                    id=response.id,
                )
            )
        return response


def install(project: str = "hyperscaler", stack: str = "test", preview: bool = False) -> RecordingMonitor:
    """Install fresh mocks (process-global) and return the monitor that records this run."""
    mocks = HyperscalerMocks()
    monitor = RecordingMonitor(mocks)
    # set_mocks keeps an existing root stack resource, and with it the outputs an earlier program in this
    # process exported: start from a fresh one.
    settings.ROOT.set(None)
    pulumi.runtime.set_mocks(mocks, project=project, stack=stack, preview=preview, monitor=monitor)
    return monitor

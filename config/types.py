"""Reusable constrained types for the stack file.

Each type carries its own validation and a message that says what would be valid, so models stay
declarative and every field of the same kind is checked the same way.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Annotated

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import AfterValidator, Field, Strict, StringConstraints

from config.findings import brief

_HOSTNAME_RE = re.compile(r"^[a-z]([a-z0-9-]{0,61}[a-z0-9])?$")
_DOMAIN_LABEL_RE = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")
_PCI_RE = re.compile(r"^([0-9a-f]{4}):([0-9a-f]{2}):([0-9a-f]{2})\.([0-7])$")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
# S3 bucket names (AWS's rules, which MinIO follows): 3-63 lowercase letters, digits, '.' and '-'.
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_URL_HOST_RE = re.compile(r"^[A-Za-z0-9.-]+(:[0-9]{1,5})?$|^\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?$")
_EMAIL_RE = re.compile(
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$"
)
_SERVER_RE = re.compile(r"^(?P<host>[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?):(?P<port>\d{1,5})$")
_URL_RE = re.compile(r"^https?://(?P<authority>[^/?#\s]+)(?P<rest>[/?#][^\s]*)?$")
# Linux's largest NR_CPUS (x86_64 MAXSMP) is 8192: a CPU number beyond it is a typo, and refusing it
# keeps a list like "0-4000000000" from expanding into billions of entries.
MAX_CPU_NUMBER = 8191
HOSTNAME_MAX = 63  # RFC 1123 label, and Linux's HOST_NAME_MAX


def _hostname(value: str) -> str:
    if not _HOSTNAME_RE.match(value):
        raise ValueError(
            f"{brief(value)} is not a valid hostname: use 1-63 lowercase letters, digits and '-', "
            "starting with a letter and not ending with '-'"
        )
    return value


def _dns_domain(value: str) -> str:
    """A DNS domain of one or more labels (hpc, hpc.example.com), at most 253 characters."""
    labels = value.split(".")
    if len(value) > 253 or not all(_DOMAIN_LABEL_RE.match(label) for label in labels) or value[0].isdigit():
        raise ValueError(
            f"{brief(value)} is not a DNS domain: use dot-separated labels of lowercase letters, digits and '-' "
            "(each 1-63 characters, not starting or ending with '-'), e.g. hpc or hpc.example.com"
        )
    return value


def _name(value: str) -> str:
    if not _NAME_RE.match(value):
        raise ValueError(
            f"{brief(value)} is not a valid name: use 1-63 lowercase letters, digits, '-' and '_', "
            "starting with a letter"
        )
    return value


SSH_KEY_TYPES = (
    "ssh-ed25519",
    "ssh-rsa",
    "ecdsa-sha2-nistp256",
    "ecdsa-sha2-nistp384",
    "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com",
    "sk-ecdsa-sha2-nistp256@openssh.com",
)
MIN_RSA_BITS = 2048  # what ssh-keygen has generated since OpenSSH 7.x; shorter keys are factorable


def _email(value: str) -> str:
    if not _EMAIL_RE.match(value):
        raise ValueError(f"{brief(value)} is not an e-mail address: expected name@example.com (lowercase domain)")
    return value


def _server(value: str) -> str:
    """host:port, e.g. an SMTP smarthost."""
    m = _SERVER_RE.match(value)
    if not m or not 1 <= int(m.group("port")) <= 65535:
        raise ValueError(f"{brief(value)} is not host:port: expected e.g. smtp.example.com:587")
    return value


def _http_url(value: str) -> str:
    """An http(s) URL without credentials: a password or token in a URL would sit in a plain file."""
    m = _URL_RE.match(value)
    if not m:
        raise ValueError(f"{brief(value)} is not an http:// or https:// URL, e.g. https://alerts.example.com/hook")
    if "@" in m.group("authority"):
        raise ValueError(
            "the URL carries credentials (user:password@, not repeated here): they would be stored in plain "
            "text; remove them and set the token as the secret hyperscaler:alertReceiverSecret"
        )
    return value


def _ssh_public_key(value: str) -> str:
    """One OpenSSH public key line whose key data decodes and matches its type (not truncated)."""
    value = value.strip()
    fields = value.split(None, 2)
    if "PRIVATE KEY" in value:
        raise ValueError("this is a private key; give the public key (the content of ~/.ssh/id_ed25519.pub)")
    if len(fields) < 2 or fields[0] not in SSH_KEY_TYPES or "\n" in value:
        raise ValueError(
            f"{brief(value)} is not an OpenSSH public key: expected one line like 'ssh-ed25519 AAAA... user@host' "
            f"(the content of ~/.ssh/id_ed25519.pub) with a type of {', '.join(SSH_KEY_TYPES)}"
        )
    try:
        key = serialization.load_ssh_public_key(f"{fields[0]} {fields[1]}".encode())
    except (ValueError, UnsupportedAlgorithm):
        raise ValueError(
            f"the {fields[0]} key {brief(fields[1])} is damaged or cut short: its data does not decode to a "
            "complete key; copy the whole line of the .pub file again"
        ) from None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        raise ValueError(f"this RSA key has {key.key_size} bits; use at least {MIN_RSA_BITS}, or an ed25519 key")
    return value


def _sha256(value: str) -> str:
    digest = value.strip().lower().removeprefix("sha256:")
    if not _SHA256_RE.match(digest):
        raise ValueError(
            f"{brief(value)} is not a sha256 checksum: expected 64 hexadecimal digits, as `sha256sum FILE` prints"
        )
    return digest


def _no_control(value: str, what: str) -> None:
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError(f"{brief(value)} is not {what}: it contains a control character (a newline or tab?)")


def _url_host(value: str, rest: str, what: str, example: str) -> None:
    host = rest.split("/", 1)[0]
    if not host or "@" in host or not _URL_HOST_RE.match(host):
        raise ValueError(f"{brief(value)} is not {what}: no valid host after the scheme (e.g. {example})")


def _image_source(value: str) -> str:
    """Where a base image comes from: a local absolute path, an https:// URL or an s3://bucket/key object."""
    _no_control(value, "an image source")
    if value.startswith("/"):
        if "/../" in f"{value}/" or "/./" in f"{value}/":
            raise ValueError(f"{brief(value)} is not a plain absolute path: write it without '.' or '..' parts")
        return value
    if value.startswith("https://"):
        _url_host(value, value.removeprefix("https://"), "an https URL", "https://images.example.com/x.qcow2")
        if " " in value:
            raise ValueError(f"{brief(value)} is not an https URL: write a space as %20")
        return value
    if value.startswith("s3://"):
        bucket, _, key = value.removeprefix("s3://").partition("/")
        if not _BUCKET_RE.match(bucket) or ".." in bucket:
            raise ValueError(
                f"{brief(value)} does not name an S3 bucket: expected s3://BUCKET/KEY with a bucket of 3-63 lowercase "
                "letters, digits, '.' and '-'"
            )
        if not key or key.endswith("/"):
            raise ValueError(f"{brief(value)} names no object: expected s3://{bucket}/path/to/image.qcow2")
        return value
    scheme = value.split("://", 1)[0] + "://" if "://" in value else ""
    hint = {"http://": "use https:// (or s3://); an unencrypted download is refused"}.get(
        scheme, "use an absolute path (/var/lib/...), an https:// URL or s3://bucket/key"
    )
    raise ValueError(f"{brief(value)} is not an image source: {hint}")


def _endpoint_url(value: str) -> str:
    """An S3-compatible endpoint: http(s)://host[:port][/path] (MinIO often listens on http inside a LAN)."""
    _no_control(value, "an endpoint URL")
    scheme, sep, rest = value.partition("://")
    if not sep or scheme not in ("http", "https"):
        raise ValueError(
            f"{brief(value)} is not an endpoint URL: expected https://host[:port], e.g. https://minio:9000"
        )
    _url_host(value, rest, "an endpoint URL", "https://minio.example.com:9000")
    return value


def _absolute_path(value: str) -> str:
    _no_control(value, "a path")
    if not value.startswith("/"):
        raise ValueError(f"{brief(value)} is not an absolute path: start it with '/'")
    return value


def _pci_address(value: str) -> str:
    value = value.lower()
    if len(value) == 7:  # "41:00.0" is accepted and means PCI domain 0000
        value = "0000:" + value
    if not _PCI_RE.match(value):
        raise ValueError(f"{brief(value)} is not a PCI address: expected DDDD:BB:SS.F, e.g. 0000:41:00.0")
    return value


def _cidr(value: str) -> str:
    try:
        net = ipaddress.IPv4Network(value, strict=True)
    except ValueError:
        raise ValueError(f"{brief(value)} is not an IPv4 network in CIDR form, e.g. 10.77.0.0/24") from None
    if net.prefixlen > 29:
        raise ValueError(f"{brief(value)} is too small: use a /29 or larger network")
    if net.prefixlen < 8:
        raise ValueError(f"{brief(value)} is too large for a cluster network: use a /8 or smaller one")
    return str(net)


def _ipv4(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise ValueError(f"{brief(value)} is not an IPv4 address, e.g. 10.77.0.10") from None


def _cpuset(value: str) -> str:
    parse_cpuset(value)
    return value


def parse_cpuset(value: str) -> list[int]:
    """Parse a Linux cpulist ("0-3,8,10-11") into sorted CPU numbers."""
    cpus: set[int] = set()
    if not value.strip():
        return []
    for part in value.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d{1,5})(?:-(\d{1,5}))?", part)
        if not m:
            raise ValueError(f"{brief(value)} is not a CPU list: expected e.g. '0-3,8,10-11'")
        lo = int(m.group(1))
        hi = int(m.group(2)) if m.group(2) else lo
        if hi < lo:
            raise ValueError(f"{brief(value)} has a descending range {brief(part)}")
        if hi > MAX_CPU_NUMBER:
            raise ValueError(f"{brief(value)} names CPU {hi}; Linux numbers CPUs 0-{MAX_CPU_NUMBER}")
        cpus.update(range(lo, hi + 1))
    return sorted(cpus)


def format_cpuset(cpus: list[int] | set[int]) -> str:
    """The inverse of parse_cpuset: compact ranges, sorted."""
    ordered = sorted(set(cpus))
    parts: list[str] = []
    start = prev = None
    for cpu in ordered:
        if start is None:
            start = prev = cpu
        elif prev is not None and cpu == prev + 1:
            prev = cpu
        else:
            parts.append(f"{start}-{prev}" if start != prev else f"{start}")
            start = prev = cpu
    if start is not None:
        parts.append(f"{start}-{prev}" if start != prev else f"{start}")
    return ",".join(parts)


Hostname = Annotated[str, AfterValidator(_hostname)]
DnsDomain = Annotated[str, AfterValidator(_dns_domain)]
SshPublicKey = Annotated[str, AfterValidator(_ssh_public_key)]
Name = Annotated[str, AfterValidator(_name)]  # a key that is not a hostname: image names, layout names
PciAddress = Annotated[str, AfterValidator(_pci_address)]
Sha256 = Annotated[str, Strict(), AfterValidator(_sha256)]  # lowercase hex; "sha256:" and uppercase accepted
ImageSource = Annotated[str, Strict(), AfterValidator(_image_source)]
EndpointUrl = Annotated[str, Strict(), AfterValidator(_endpoint_url)]
AbsolutePath = Annotated[str, Strict(), AfterValidator(_absolute_path)]
# AWS region names (us-east-1, eu-central-2...); MinIO's default is us-east-1.
S3Region = Annotated[str, Strict(), StringConstraints(pattern=r"^[a-z0-9-]{1,32}$")]
S3Profile = Annotated[str, Strict(), StringConstraints(pattern=r"^[A-Za-z0-9_.+=,@-]{1,64}$")]
Cidr = Annotated[str, AfterValidator(_cidr)]
IPv4 = Annotated[str, AfterValidator(_ipv4)]
CpuSet = Annotated[str, AfterValidator(_cpuset)]
EmailAddress = Annotated[str, AfterValidator(_email)]
Server = Annotated[str, AfterValidator(_server)]
HttpUrl = Annotated[str, AfterValidator(_http_url)]
# Strict: `true` or "4096" in a size field is a mistake to report, not a value to coerce. The upper
# bounds are far beyond any real machine; they turn a typo (an extra 000) into a message instead of a
# plan that never finishes.
MiB = Annotated[int, Strict(), Field(gt=0, le=64 * 1024 * 1024, description="mebibytes")]  # 64 TiB
GiB = Annotated[int, Strict(), Field(gt=0, le=1024 * 1024, description="gibibytes")]  # 1 PiB
Count = Annotated[int, Strict(), Field(ge=0, le=100_000)]
PositiveInt = Annotated[int, Strict(), Field(gt=0, le=100_000)]
Seconds = Annotated[int, Strict(), Field(gt=0, le=7 * 24 * 3600)]
Port = Annotated[int, Strict(), Field(ge=1, le=65535)]
# Linux's limits for an Ethernet MTU that every NIC driver libvirt uses accepts: 576 is the IPv4 minimum
# datagram (RFC 791), 9216 the largest jumbo frame virtio-net and common switches pass (docs/configuration.md).
Mtu = Annotated[int, Strict(), Field(ge=576, le=9216)]
NonEmptyStr = Annotated[str, StringConstraints(min_length=1, strip_whitespace=True)]


# --- apt repositories (config/models/repository.py) ---
_HTTPS_URL_RE = re.compile(r"^https://[A-Za-z0-9.-]+(:[0-9]{1,5})?(/[A-Za-z0-9._~%/+-]*)?$")
_FINGERPRINT_RE = re.compile(r"^[0-9A-F]{40}$")
_APT_WORD_RE = re.compile(r"^[A-Za-z0-9._/-]+$")
_DEB_PACKAGE_RE = re.compile(r"^[a-z0-9][a-z0-9+.-]+$")


def _https_url(value: str) -> str:
    if not _HTTPS_URL_RE.match(value):
        raise ValueError(
            f"{brief(value)} is not an https:// URL without spaces or quotes: packages and keys are never fetched "
            "over plain http"
        )
    return value


def _fingerprint(value: str) -> str:
    compact = value.replace(" ", "").upper()
    if not _FINGERPRINT_RE.match(compact):
        raise ValueError(
            f"{brief(value)} is not an OpenPGP v4 fingerprint: 40 hex digits, spaces allowed "
            "(`gpg --show-keys KEYFILE` prints it)"
        )
    return compact


def _apt_word(value: str) -> str:
    if not _APT_WORD_RE.match(value):
        raise ValueError(f"{brief(value)} is not an apt suite or component (letters, digits, '.', '_', '-', '/')")
    return value


def _deb_package(value: str) -> str:
    if not _DEB_PACKAGE_RE.match(value):
        raise ValueError(f"{brief(value)} is not a Debian package name")
    return value


HttpsUrl = Annotated[str, AfterValidator(_https_url)]
Fingerprint = Annotated[str, AfterValidator(_fingerprint)]  # normalised: 40 upper-case hex digits
AptWord = Annotated[str, AfterValidator(_apt_word)]
DebPackage = Annotated[str, AfterValidator(_deb_package)]


# --- containers (config/models/containers.py) ---
# A container image reference pinned to one image: registry/path:tag with an exact tag (never `latest`),
# or @sha256:<64 hex>. A moving tag would let the same stack run different software on different days.
_IMAGE_RE = re.compile(
    r"^(?P<name>[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]{1,5})?(/[a-z0-9]+([._-][a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)
_UNIX_USER_RE = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
# Enroot's paths may use its shell expansions ($(id -u), ${XDG_RUNTIME_DIR}); quotes, ';', '`' and newlines
# never belong in one.
_ABS_PATH_RE = re.compile(r"^/[A-Za-z0-9._/${}() -]*$")


def pinned_image(value: str) -> str:
    m = _IMAGE_RE.match(value)
    if not m:
        raise ValueError(f"{brief(value)} is not a container image reference such as registry.example.com/team/app:1.2")
    tag, digest = m.group("tag"), m.group("digest")
    if digest is None and (tag is None or tag == "latest"):
        raise ValueError(
            f"{brief(value)} is not pinned: give an exact tag (not latest), e.g. :11.6.0, or a digest @sha256:..."
        )
    return value


def _unix_user(value: str) -> str:
    if not _UNIX_USER_RE.match(value):
        raise ValueError(f"{brief(value)} is not a user name: 1-32 lowercase letters, digits, '_' and '-'")
    return value


def _abs_path(value: str) -> str:
    if not _ABS_PATH_RE.match(value) or "/../" in f"{value}/" or "//" in value:
        raise ValueError(f"{brief(value)} is not an absolute path without quotes, ';', '`' or '..'")
    return value


PinnedImage = Annotated[str, AfterValidator(pinned_image)]
UnixUser = Annotated[str, AfterValidator(_unix_user)]
AbsPath = Annotated[str, AfterValidator(_abs_path)]

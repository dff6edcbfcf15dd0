"""SSH host keys for the VMs, derived from random bytes the stack keeps in state as a secret.

Each VM's ed25519 host key pair comes from 32 random bytes (a RandomBytes resource, so it is generated
once and stays stable across runs and VM replacements). cloud-init installs the private key on the VM,
and every connection the program makes pins the public key, so keys and secrets go only to the VM the
program created.

The private key is written in OpenSSH's own format (PROTOCOL.key in OpenSSH's sources): ssh-keygen and
sshd read it as they read the keys they make. Libraries write that format with a random "check" word, so
the same key would come out different on every run and change the VM's cloud-init disk; here the check
word is derived from the key, so the same seed always gives the same bytes.
"""

from __future__ import annotations

import base64
import hashlib
import struct
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

SEED_BYTES = 32
KEY_TYPE = b"ssh-ed25519"
_MAGIC = b"openssh-key-v1\x00"
_BLOCK = 8  # the cipher "none" pads the private section to 8 bytes


@dataclass(frozen=True)
class HostKey:
    private_openssh: str  # -----BEGIN OPENSSH PRIVATE KEY----- ...
    public_openssh: str  # ssh-ed25519 AAAA... comment

    @property
    def public_key(self) -> str:
        """`type base64`, the form pulumi-command's host_key and known_hosts take."""
        return " ".join(self.public_openssh.split()[:2])


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def host_key_from_seed(seed: bytes, comment: str) -> HostKey:
    """The ed25519 host key pair for `seed` (32 bytes); the same seed always gives the same text."""
    if len(seed) != SEED_BYTES:
        raise ValueError(f"an ed25519 seed is {SEED_BYTES} bytes, got {len(seed)}")
    public = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    public_blob = _string(KEY_TYPE) + _string(public)
    check = hashlib.sha256(b"hyperscaler-host-key-check" + seed).digest()[:4]
    private = check + check + _string(KEY_TYPE) + _string(public) + _string(seed + public) + _string(comment.encode())
    private += bytes(range(1, 1 + (-len(private)) % _BLOCK))
    blob = _MAGIC + _string(b"none") + _string(b"none") + _string(b"") + struct.pack(">I", 1)
    blob += _string(public_blob) + _string(private)
    encoded = base64.b64encode(blob).decode()
    lines = [encoded[i : i + 70] for i in range(0, len(encoded), 70)]
    pem = "\n".join(["-----BEGIN OPENSSH PRIVATE KEY-----", *lines, "-----END OPENSSH PRIVATE KEY-----"]) + "\n"
    public_line = f"{KEY_TYPE.decode()} {base64.b64encode(public_blob).decode()} {comment}"
    return HostKey(pem, public_line)


def host_key_from_base64(seed_base64: str, comment: str) -> HostKey:
    """For Output.apply on RandomBytes.base64."""
    return host_key_from_seed(base64.b64decode(seed_base64), comment)

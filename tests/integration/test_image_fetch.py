"""`hyperscaler image fetch`, run exactly as the plan's local Command runs it (render/images.py: fetch_command,
from the project directory), against real servers on loopback: a local file, an HTTPS server with its own
CA, and S3 through moto's server mode with IAM authentication switched on.

Each source is fetched, matched, refused on a checksum mismatch (leaving nothing in the cache), and found in
the cache the second time without another download. S3 also covers a missing object and bad credentials,
and no credential ever shows in what the command prints.
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import os
import ssl
import subprocess
import threading
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import boto3
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from moto.server import ThreadedMotoServer

from config.images import cached_image_path
from config.models import BaseImage
from render.images import fetch_command
from tests.stacks import ROOT

pytestmark = pytest.mark.integration

IMAGE = os.urandom(3 * 2**20 + 17)  # a few chunks and a ragged end
DIGEST = __import__("hashlib").sha256(IMAGE).hexdigest()
OTHER = "0" * 64
TIMEOUT_S = 120


@dataclass
class Ran:
    rc: int
    stdout: str
    stderr: str


def fetch(image: BaseImage, cache: Path, **env: str) -> Ran:
    """The plan's own command line, through a shell in the project directory, as pulumi-command runs it."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SSL_CERT"))}
    proc = subprocess.run(
        ["/bin/sh", "-c", fetch_command(image)],
        cwd=ROOT,
        env={**clean, "HYPERSCALER_IMAGE_CACHE": str(cache), **env},
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        check=False,
    )
    return Ran(proc.returncode, proc.stdout, proc.stderr)


def cache_files(cache: Path) -> list[str]:
    """What the cache holds, lock files aside."""
    return sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock")) if cache.exists() else []


# --- a local file --------------------------------------------------------------------------------


def test_a_local_file_is_checked_where_it_is(tmp_path: Path) -> None:
    path = tmp_path / "base.qcow2"
    path.write_bytes(IMAGE)
    cache = tmp_path / "cache"
    ran = fetch(BaseImage(source=str(path), sha256=DIGEST), cache)
    assert ran.rc == 0 and ran.stdout == f"{path}\n" and "sha256 matches" in ran.stderr, ran
    assert cache_files(cache) == []  # read in place, never copied
    wrong = fetch(BaseImage(source=str(path), sha256=OTHER), cache)
    assert wrong.rc == 1 and wrong.stdout == "" and f"has {DIGEST}, the stack pins {OTHER}" in wrong.stderr
    assert "Traceback" not in wrong.stderr
    missing = fetch(BaseImage(source=str(tmp_path / "nope.qcow2"), sha256=DIGEST), cache)
    assert missing.rc == 1 and "no such file on this machine" in missing.stderr


# --- https -----------------------------------------------------------------------------------------


@dataclass
class Https:
    url: str
    ca_file: Path
    gets: list[str] = field(default_factory=list)


def _certificate(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for 127.0.0.1, made here: (ca.pem, cert.pem, key.pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "hyperscaler test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(ca_key, hashes.SHA256())
    )
    paths = directory / "ca.pem", directory / "cert.pem", directory / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return paths


@pytest.fixture
def https(tmp_path: Path) -> Iterator[Https]:
    ca_file, cert, key = _certificate(tmp_path)
    gets: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            gets.append(self.path)
            if self.path == "/image.qcow2":
                self.send_response(200)
                self.send_header("Content-Length", str(len(IMAGE)))
                self.end_headers()
                self.wfile.write(IMAGE)
            elif self.path == "/cut-short.qcow2":  # the connection drops half-way
                self.send_response(200)
                self.send_header("Content-Length", str(len(IMAGE)))
                self.end_headers()
                self.wfile.write(IMAGE[: len(IMAGE) // 2])
                self.close_connection = True
            else:
                self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Https(f"https://127.0.0.1:{server.server_address[1]}", ca_file, gets)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)


def test_https_fetch_match_cache_and_mismatch(https: Https, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    image = BaseImage(source=f"{https.url}/image.qcow2", sha256=DIGEST)
    first = fetch(image, cache, SSL_CERT_FILE=str(https.ca_file))
    target = cached_image_path(DIGEST, "qcow2", cache)
    assert first.rc == 0 and first.stdout == f"{target}\n", first
    assert target.read_bytes() == IMAGE and cache_files(cache) == [target.name]
    assert oct(target.stat().st_mode & 0o777) == "0o644"  # libvirt's provider reads it as another user
    assert https.gets == ["/image.qcow2"]

    second = fetch(image, cache, SSL_CERT_FILE=str(https.ca_file))
    assert second.rc == 0 and second.stdout == first.stdout and "cache hit" in second.stderr, second
    assert https.gets == ["/image.qcow2"]  # no second download

    other_cache = tmp_path / "cache-2"
    wrong = fetch(image.model_copy(update={"sha256": OTHER}), other_cache, SSL_CERT_FILE=str(https.ca_file))
    assert wrong.rc == 1 and f"the download has {DIGEST}, the stack pins {OTHER}" in wrong.stderr, wrong
    assert "Nothing was cached" in wrong.stderr and cache_files(other_cache) == []  # no partial file either


def test_https_failures_are_clear_and_leave_nothing(https: Https, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    ca = {"SSL_CERT_FILE": str(https.ca_file)}
    missing = fetch(BaseImage(source=f"{https.url}/nothing.qcow2", sha256=DIGEST), cache, **ca)
    assert missing.rc == 1 and "HTTP 404" in missing.stderr, missing
    short = fetch(BaseImage(source=f"{https.url}/cut-short.qcow2", sha256=DIGEST), cache, **ca)
    assert short.rc == 1 and ("transfer failed" in short.stderr or "transfer ended" in short.stderr), short
    untrusted = fetch(BaseImage(source=f"{https.url}/image.qcow2", sha256=DIGEST), cache)
    assert untrusted.rc == 1 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr, untrusted
    for ran in (missing, short, untrusted):
        assert "Traceback" not in ran.stderr and ran.stdout == ""
    assert cache_files(cache) == []


# --- S3 (moto's server mode, IAM authentication on) ------------------------------------------------


@dataclass
class S3:
    endpoint: str
    access_key_id: str
    secret_access_key: str


def _moto_api(endpoint: str, path: str, body: bytes = b"") -> None:
    request = urllib.request.Request(
        f"{endpoint}/moto-api/{path}", data=body, method="POST", headers={"Content-Type": "text/plain"}
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        assert answer.status == 200, answer.read()


@pytest.fixture
def s3() -> Iterator[S3]:
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    admin = {"endpoint_url": endpoint, "region_name": "us-east-1"}
    admin_keys = {"aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
    try:
        _moto_api(endpoint, "reset")  # moto's backends live in this process: start from nothing
        iam = boto3.client("iam", **admin, **admin_keys)
        iam.create_user(UserName="images")
        policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}
        iam.put_user_policy(UserName="images", PolicyName="read", PolicyDocument=json.dumps(policy))
        key = iam.create_access_key(UserName="images")["AccessKey"]
        bucket = boto3.client("s3", **admin, **admin_keys)
        bucket.create_bucket(Bucket="golden-images")
        bucket.put_object(Bucket="golden-images", Key="roles/compute.qcow2", Body=IMAGE)
        # From here on every request must be signed by a known key allowed to do it.
        _moto_api(endpoint, "reset-auth", b"0")
        yield S3(endpoint, key["AccessKeyId"], key["SecretAccessKey"])
    finally:
        _moto_api(endpoint, "reset-auth", b"inf")
        server.stop()


def s3_image(
    endpoint: str, key: str = "roles/compute.qcow2", sha256: str = DIGEST, profile: str | None = None
) -> BaseImage:
    settings = {"endpoint_url": endpoint, "region": "us-east-1", **({"profile": profile} if profile else {})}
    return BaseImage.model_validate({"source": f"s3://golden-images/{key}", "sha256": sha256, "s3": settings})


def test_s3_fetch_match_cache_and_mismatch(s3: S3, tmp_path: Path) -> None:
    keys = {"AWS_ACCESS_KEY_ID": s3.access_key_id, "AWS_SECRET_ACCESS_KEY": s3.secret_access_key}
    cache = tmp_path / "cache"
    first = fetch(s3_image(s3.endpoint), cache, **keys)
    target = cached_image_path(DIGEST, "qcow2", cache)
    assert first.rc == 0 and first.stdout == f"{target}\n", first
    assert target.read_bytes() == IMAGE and cache_files(cache) == [target.name]
    # The second run finds it in the cache and asks S3 nothing: with no credentials at all it still works.
    second = fetch(s3_image(s3.endpoint), cache)
    assert second.rc == 0 and "cache hit" in second.stderr, second

    other_cache = tmp_path / "cache-2"
    wrong = fetch(s3_image(s3.endpoint, sha256=OTHER), other_cache, **keys)
    assert wrong.rc == 1 and f"the download has {DIGEST}, the stack pins {OTHER}" in wrong.stderr, wrong
    assert cache_files(other_cache) == []
    for ran in (first, second, wrong):
        assert s3.secret_access_key not in ran.stdout + ran.stderr


def test_s3_missing_object_and_bad_credentials(s3: S3, tmp_path: Path) -> None:
    keys = {"AWS_ACCESS_KEY_ID": s3.access_key_id, "AWS_SECRET_ACCESS_KEY": s3.secret_access_key}
    cache = tmp_path / "cache"
    missing = fetch(s3_image(s3.endpoint, key="roles/nothing.qcow2"), cache, **keys)
    assert missing.rc == 1 and "no such object at" in missing.stderr and "NoSuchKey" in missing.stderr, missing
    bad_secret = "not-the-secret-" + s3.secret_access_key[:8]
    wrong_secret = fetch(s3_image(s3.endpoint), cache, **{**keys, "AWS_SECRET_ACCESS_KEY": bad_secret})
    assert wrong_secret.rc == 1 and "refused the credentials (SignatureDoesNotMatch)" in wrong_secret.stderr
    unknown = fetch(s3_image(s3.endpoint), cache, AWS_ACCESS_KEY_ID="AKIAUNKNOWN000000000", AWS_SECRET_ACCESS_KEY="x")
    assert unknown.rc == 1 and "refused the credentials (InvalidAccessKeyId)" in unknown.stderr, unknown
    for ran in (missing, wrong_secret, unknown):
        assert "Traceback" not in ran.stderr and ran.stdout == ""
        assert s3.secret_access_key not in ran.stderr and bad_secret not in ran.stderr
    assert cache_files(cache) == []


def test_s3_credentials_from_a_profile(s3: S3, tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.write_text(
        f"[images]\naws_access_key_id = {s3.access_key_id}\naws_secret_access_key = {s3.secret_access_key}\n"
    )
    image = s3_image(s3.endpoint, profile="images")
    env = {"AWS_SHARED_CREDENTIALS_FILE": str(credentials), "AWS_CONFIG_FILE": str(tmp_path / "none")}
    ran = fetch(image, tmp_path / "cache", **env)
    assert ran.rc == 0 and "--profile images" in fetch_command(image), ran
    nobody = fetch(s3_image(s3.endpoint, profile="nobody"), tmp_path / "c2", **env)
    assert nobody.rc == 1 and "the AWS profile 'nobody' is not configured" in nobody.stderr

"""`hyperscaler image fetch`: bring a base image into the local cache and check its sha256.

`pulumi up` runs it through a local Command before the libvirt Volume reads the file (components/images.py),
and an admin can run it by hand with the same arguments. A local file is checked where it is; an https://
URL or s3://bucket/key object is downloaded into the cache (config/images.py: image_cache_dir), hashed as it
arrives, and only moved to its content-addressed name once the checksum matches, so the cache never holds a
partial or wrong file. A second run finds it there, checks it again and downloads nothing.

S3 credentials come from boto3's usual sources (environment, shared config, `--profile`) or from the
AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY the Command passes from Pulumi secrets; nothing here prints them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, BinaryIO

from config.images import cached_image_path
from hyperscaler.filelock import exclusive

CHUNK = 1 << 20
HTTP_TIMEOUT_S = 60  # per read: a stalled server fails the run instead of hanging it
LOCK_TIMEOUT_S = 3600  # another run fetching the same image: wait for it


class FetchError(Exception):
    """A message for the admin: what failed, and what to do."""


@dataclass(frozen=True)
class S3Settings:
    endpoint_url: str | None = None
    region: str | None = None
    profile: str | None = None


class Progress:
    """A progress line on a terminal; on anything else (a Pulumi log) one line at the end."""

    def __init__(self, label: str, total: int | None, stream: IO[str] | None = None, interval_s: float = 0.25):
        self.label, self.total, self.stream, self.interval_s = label, total, stream or sys.stderr, interval_s
        self.done = 0
        self.started = self._last = time.monotonic()
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())

    def add(self, count: int) -> None:
        self.done += count
        now = time.monotonic()
        if self.tty and now - self._last >= self.interval_s:
            self._last = now
            self.stream.write(f"\r{self.line(now)}")
            self.stream.flush()

    def line(self, now: float) -> str:
        rate = self.done / max(now - self.started, 1e-6) / 2**20
        if self.total:
            width = 30
            filled = min(width, width * self.done // self.total)
            bar = "#" * filled + "-" * (width - filled)
            percent = 100 * self.done // self.total
            return f"{self.label} [{bar}] {percent:3d}% {_mib(self.done)}/{_mib(self.total)} {rate:.1f} MiB/s"
        return f"{self.label} {_mib(self.done)} {rate:.1f} MiB/s"

    def finish(self, what: str) -> None:
        took = time.monotonic() - self.started
        self.stream.write(f"{chr(13) if self.tty else ''}{self.label}: {what}, {_mib(self.done)} in {took:.1f} s\n")
        self.stream.flush()


def _mib(count: int) -> str:
    return f"{count / 2**20:.1f} MiB"


def sha256_of(path: Path, progress: Progress | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while block := handle.read(CHUNK):
            digest.update(block)
            if progress is not None:
                progress.add(len(block))
    return digest.hexdigest()


def fetch(
    source: str,
    sha256: str | None,
    fmt: str,
    cache: Path,
    s3: S3Settings | None = None,
    progress_stream: IO[str] | None = None,
) -> Path:
    """The path of the checked image: the local file itself, or the cached download. `sha256` None is only
    for a trusted local file."""
    if source.startswith("/"):
        return _check_local(Path(source), sha256, progress_stream)
    if sha256 is None:
        raise FetchError(f"{source}: a download needs its sha256 (--sha256)")
    cache.mkdir(parents=True, exist_ok=True)
    target = cached_image_path(sha256, fmt, cache)
    with _locked(cache / f".{sha256}.lock"):
        if target.exists():
            progress = Progress(f"checking cached {target.name}", target.stat().st_size, progress_stream)
            found = sha256_of(target, progress)
            if found == sha256:
                progress.finish("cache hit, sha256 matches")
                return target
            target.unlink()  # damaged on disk since it was verified: fetch it again
        _download(source, sha256, cache, target, s3, progress_stream)
    return target


def _check_local(path: Path, sha256: str | None, progress_stream: IO[str] | None) -> Path:
    if not path.is_file():
        raise FetchError(f"{path}: no such file on this machine (the one running pulumi)")
    if sha256 is None:
        return path  # trusted: the admin vouches for it
    progress = Progress(f"checking {path.name}", path.stat().st_size, progress_stream)
    found = sha256_of(path, progress)
    if found != sha256:
        raise FetchError(
            f"{path}: sha256 mismatch: the file has {found}, the stack pins {sha256}. "
            "Point the stack at the right file, or pin the new image's checksum if it changed on purpose"
        )
    progress.finish("sha256 matches")
    return path


def _download(
    source: str, sha256: str, cache: Path, target: Path, s3: S3Settings | None, progress_stream: IO[str] | None
) -> None:
    handle, partial_name = tempfile.mkstemp(prefix=f".partial-{sha256[:12]}-", dir=cache)
    partial = Path(partial_name)
    try:
        with os.fdopen(handle, "wb") as out:
            progress = _copy(source, s3, out, progress_stream)
        if progress.total is not None and progress.done != progress.total:
            raise FetchError(
                f"{source}: the transfer ended after {progress.done} of {progress.total} bytes; run it again"
            )
        found = progress.sha256
        if found != sha256:
            raise FetchError(
                f"{source}: sha256 mismatch: the download has {found}, the stack pins {sha256}. Nothing was "
                "cached. Check the source, or pin the new image's checksum if it changed on purpose"
            )
        partial.chmod(0o644)  # libvirt's provider and QEMU read it as other users
        os.replace(partial, target)
        progress.finish("sha256 matches, cached")
    finally:
        partial.unlink(missing_ok=True)


class _Hashing(Progress):
    def __init__(self, label: str, total: int | None, stream: IO[str] | None) -> None:
        super().__init__(label, total, stream)
        self._digest = hashlib.sha256()

    def add_block(self, block: bytes) -> None:
        self._digest.update(block)
        self.add(len(block))

    @property
    def sha256(self) -> str:
        return self._digest.hexdigest()


def _copy(source: str, s3: S3Settings | None, out: BinaryIO, progress_stream: IO[str] | None) -> _Hashing:
    """Stream a remote source into `out`, hashing it on the way."""
    with _opened(source, s3) as (stream, size):
        progress = _Hashing(f"fetching {source}", size, progress_stream)
        try:
            while block := stream.read(CHUNK):
                progress.add_block(block)
                out.write(block)
        except FetchError:
            raise
        except Exception as exc:  # a connection dropped mid-transfer (socket, urllib3 or botocore errors)
            raise FetchError(f"{source}: the transfer failed after {_mib(progress.done)}: {exc}") from None
        out.flush()
        os.fsync(out.fileno())
    return progress


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    try:
        with exclusive(path, LOCK_TIMEOUT_S):
            yield
    except TimeoutError:
        raise FetchError(f"another fetch holds {path} for over {LOCK_TIMEOUT_S} s") from None


@contextlib.contextmanager
def _opened(source: str, s3: S3Settings | None) -> Iterator[tuple[BinaryIO, int | None]]:
    """(stream, size in bytes if known) of a remote source."""
    if source.startswith("https://"):
        with _https(source) as opened:
            yield opened
    elif source.startswith("s3://"):
        with _s3(source, s3 or S3Settings()) as opened:
            yield opened
    else:
        raise FetchError(f"{source}: not a local path, https:// URL or s3://bucket/key")


@contextlib.contextmanager
def _https(url: str) -> Iterator[tuple[BinaryIO, int | None]]:
    # The default context checks the server's certificate (and honours SSL_CERT_FILE for a private CA).
    try:
        response = urllib.request.urlopen(url, timeout=HTTP_TIMEOUT_S)
    except urllib.error.HTTPError as exc:
        raise FetchError(f"GET {url}: HTTP {exc.code} {exc.reason}") from None
    except urllib.error.URLError as exc:
        raise FetchError(f"GET {url}: {exc.reason}") from None
    except OSError as exc:
        raise FetchError(f"GET {url}: {exc}") from None
    with response:
        length = response.headers.get("Content-Length")
        yield response, int(length) if length and length.isdigit() else None


# S3 error codes that mean "these credentials are not accepted" (AWS and MinIO use the same ones).
_CREDENTIAL_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "AccessDenied", "403", "ExpiredToken"}
_MISSING_CODES = {"NoSuchKey", "NoSuchBucket", "404", "NotFound"}


@contextlib.contextmanager
def _s3(source: str, settings: S3Settings) -> Iterator[tuple[BinaryIO, int | None]]:
    import boto3
    from botocore.config import Config
    from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ProfileNotFound

    bucket, _, key = source.removeprefix("s3://").partition("/")
    where = f" at {settings.endpoint_url}" if settings.endpoint_url else ""
    try:
        session = boto3.session.Session(profile_name=settings.profile, region_name=settings.region)
        client = session.client(
            "s3",
            endpoint_url=settings.endpoint_url,
            config=Config(retries={"max_attempts": 3}, read_timeout=HTTP_TIMEOUT_S, connect_timeout=HTTP_TIMEOUT_S),
        )
        response: dict[str, Any] = client.get_object(Bucket=bucket, Key=key)
    except ProfileNotFound:
        raise FetchError(f"{source}: the AWS profile {settings.profile!r} is not configured on this machine") from None
    except NoCredentialsError:
        raise FetchError(
            f"{source}: no S3 credentials found: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, an AWS profile, "
            "or the hyperscaler:s3AccessKeyId/s3SecretAccessKey secrets (docs/images.md)"
        ) from None
    except ClientError as exc:
        code = str(exc.response.get("Error", {}).get("Code", ""))
        if code in _MISSING_CODES:
            raise FetchError(f"{source}: no such object{where} ({code})") from None
        if code in _CREDENTIAL_CODES:
            raise FetchError(
                f"{source}: S3{where} refused the credentials ({code}): check the access key, the secret and the "
                "bucket's policy"
            ) from None
        raise FetchError(f"{source}: S3{where} answered {code or 'an error'}") from None
    except BotoCoreError as exc:  # endpoint unreachable, bad endpoint URL...
        raise FetchError(f"{source}: {exc}") from None
    body = response["Body"]
    try:
        yield body, int(response.get("ContentLength") or 0) or None
    finally:
        body.close()


def digest_of(source: str, s3: S3Settings | None = None, progress_stream: IO[str] | None = None) -> str:
    """The sha256 of any source, read once and kept nowhere: what to pin in a stack file."""
    if source.startswith("/"):
        path = Path(source)
        if not path.is_file():
            raise FetchError(f"{path}: no such file")
        progress = Progress(f"hashing {path.name}", path.stat().st_size, progress_stream)
        digest = sha256_of(path, progress)
        progress.finish("hashed")
        return digest
    with open(os.devnull, "wb") as sink:
        hashed = _copy(source, s3, sink, progress_stream)
    hashed.finish("hashed")
    return hashed.sha256

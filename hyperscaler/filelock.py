"""An exclusive lock on a file, for work that two processes must not do at once (a download into the
image cache, a cached build)."""

from __future__ import annotations

import contextlib
import fcntl
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def exclusive(path: Path, timeout_s: float, poll_s: float = 0.5) -> Iterator[None]:
    """Hold an flock on `path` (created if missing), waiting up to timeout_s for another holder;
    TimeoutError after that."""
    with open(path, "w") as handle:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{path} is still locked after {timeout_s:.0f} s") from None
                time.sleep(poll_s)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)

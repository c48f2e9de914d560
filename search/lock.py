"""One search per output folder: an exclusive lock on ``OUTPUT_DIR/search.lock``, held while the search runs.

Two searches writing one folder would interleave their histories and overwrite each other's super-net, so the
second one stops before it reads or writes anything, with an error that names the holder (process id, host,
start time). The lock is the operating system's (``fcntl.flock`` on the lock file): it is released when the
holder ends in any way, a crash or ``kill -9`` included, so a stale lock cannot block a resume. The file
itself names the holder while it runs and is emptied by a clean exit; a new search that finds a holder's
name in a file nobody locks knows that search ended without cleaning up, says so, and takes the lock over.
Over NFS, ``flock`` is a lock on the server (Linux clients since 2.6.12): a holder on a crashed host
releases it when the server's lease expires.
"""

from __future__ import annotations

import datetime
import fcntl
import json
import logging
import os
import socket
from pathlib import Path
from typing import Any


logger = logging.getLogger(__name__)

LOCK_FILE = "search.lock"


class SearchLockedError(RuntimeError):
    """Another search holds the output folder."""


def describe_holder(holder: dict[str, Any]) -> str:
    return f"process {holder.get('pid', '?')} on host {holder.get('host', '?')}, started {holder.get('started', '?')}"


class OutputFolderLock:
    """The lock of one output folder: :meth:`acquire` it before touching the folder, :meth:`release` it at the
    end (or use it as a context manager)."""

    def __init__(self, directory: str | os.PathLike):
        self.path = Path(directory) / LOCK_FILE
        self._descriptor: int | None = None

    def _holder_named_in_file(self) -> dict[str, Any] | None:
        try:
            text = self.path.read_text(encoding="utf-8", errors="replace").strip()
        except OSError:
            return None
        if not text:
            return None
        try:
            holder = json.loads(text)
        except json.JSONDecodeError:
            return {"pid": "?", "host": "?", "started": f"? (unreadable lock file: {text[:60]!r})"}
        return holder if isinstance(holder, dict) else {"started": f"? (unreadable lock file: {text[:60]!r})"}

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(descriptor)
            holder = self._holder_named_in_file() or {}
            raise SearchLockedError(
                f"{self.path.parent} is in use by another search ({describe_holder(holder)}): one search per output "
                "folder. Wait for it to end (or stop it), then --resume; or choose another output_dir"
            ) from None
        stale = self._holder_named_in_file()
        if stale is not None:
            logger.warning(
                "%s: the search that held this folder (%s) ended without releasing it (crashed or killed); "
                "taking its lock over",
                self.path,
                describe_holder(stale),
            )
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        os.ftruncate(descriptor, 0)
        os.pwrite(descriptor, (json.dumps(holder) + "\n").encode(), 0)
        os.fsync(descriptor)
        self._descriptor = descriptor

    def release(self) -> None:
        """Empty the file (a clean exit) and unlock it. The file stays: removing it would let a search that
        opened it just before lock a file no longer in the folder while a third one creates a new one."""
        if self._descriptor is None:
            return
        try:
            os.ftruncate(self._descriptor, 0)
        finally:
            fcntl.flock(self._descriptor, fcntl.LOCK_UN)
            os.close(self._descriptor)
            self._descriptor = None

    def __enter__(self) -> "OutputFolderLock":
        self.acquire()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.release()

"""Atomic writes: a reader (or a resumed run) sees either the old file or the complete new one, never half.

The one writer of the project (`search.state` writes through it too). A file goes to a temporary file beside
its destination, is flushed to disk and renamed over the destination, and the directory entry is synced.
`tempfile.mkstemp` creates the temporary file readable by its owner only (0600); it is given the mode an
ordinary ``open`` would give (0666 less the umask, usually 0644) before the rename, so results and published
files are as readable as any other file the user writes. `make_readable` does the same for folders written
by other writers (`safetensors` also creates its files 0600).
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any


def _process_umask() -> int:
    # Read once, at import: setting the umask to read it back is process-wide, so doing it while other
    # threads create files (data loader workers, TensorBoard writers) could give their files mode 0666.
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


_UMASK = _process_umask()
FILE_MODE = 0o666 & ~_UMASK  # what `open(path, "w")` gives a new file
DIRECTORY_MODE = 0o777 & ~_UMASK  # what `os.mkdir` gives a new folder
PRIVATE_FILE_MODE, PRIVATE_DIRECTORY_MODE = 0o600, 0o700  # what mkstemp / mkdtemp give (and safetensors' writer)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` so that a crash leaves either the old file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fchmod(handle.fileno(), FILE_MODE)
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
    return path


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8, line endings as given) atomically."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: str | os.PathLike, value: Any) -> Path:
    """Write ``value`` as indented, strict JSON (no NaN / Infinity), atomically."""
    return write_text_atomic(path, json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False) + "\n")


def make_readable(folder: str | os.PathLike) -> None:
    """Give every file and folder under ``folder`` (itself included) that was created private — 0600 / 0700, as
    `tempfile` and the `safetensors` writer create them — the mode an ordinary file or folder gets."""
    folder = Path(folder)
    for path in [folder, *folder.rglob("*")]:
        if path.is_symlink():
            continue
        mode = path.stat().st_mode & 0o777
        if path.is_dir() and mode == PRIVATE_DIRECTORY_MODE:
            path.chmod(DIRECTORY_MODE)
        elif path.is_file() and mode == PRIVATE_FILE_MODE:
            path.chmod(FILE_MODE)

"""What a run records about itself: whether its data is the bundled demo subset, and where and on what it ran.

Results files and model cards use these so that a number never reads as more than it is: a score on the
demo subset says so, and a run record names the time, the working directory, the code's git commit, the
library versions and the machine.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any


REPO = Path(__file__).resolve().parents[1]
DEMO_DATA = REPO / "demo_data"
RECORDED_PACKAGES = ("torch", "transformers", "accelerate", "datasets", "tokenizers", "huggingface_hub", "safetensors")


def is_demo_data(path: str | os.PathLike) -> bool:
    """Whether ``path`` (a file or folder; relative to the working directory) lies in the bundled `demo_data/`."""
    return Path(path).resolve().is_relative_to(DEMO_DATA.resolve())


def shown_path(path: str | os.PathLike) -> str:
    """``path`` relative to the working directory when it lies below it (portable in records), else absolute."""
    path = Path(path).resolve()
    try:
        return str(path.relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def git_state(directory: Path = REPO) -> dict[str, Any] | None:
    """``{"commit": sha, "uncommitted_changes": bool}`` of the checkout the code runs from, or None when the
    code is not in a git checkout (an installed package) or git is missing."""
    def git(*arguments: str) -> str:
        return subprocess.run(
            ["git", "-C", str(directory), *arguments], capture_output=True, text=True, check=True, timeout=30
        ).stdout.strip()

    try:
        if Path(git("rev-parse", "--show-toplevel")).resolve() != directory.resolve():
            return None
        changes = git("status", "--porcelain", "--untracked-files=no")
        return {"commit": git("rev-parse", "HEAD"), "uncommitted_changes": bool(changes)}
    except (OSError, subprocess.SubprocessError):
        return None


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    """The operating system, Python, CPU and accelerators (CUDA / ROCm GPUs, Apple MPS) this process sees."""
    import torch

    gpus = []
    if torch.cuda.is_available():
        gpus = [torch.cuda.get_device_name(index) for index in range(torch.cuda.device_count())]
    mps = getattr(torch.backends, "mps", None)
    accelerator = "cuda" if gpus else "mps" if mps is not None and mps.is_available() else "cpu"
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "accelerator": accelerator,
        "gpus": gpus,
    }


def package_versions() -> dict[str, str | None]:
    versions = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def environment_record() -> dict[str, Any]:
    """When (UTC), where (the absolute working directory), which code (git) and on what (versions, machine)."""
    return {
        "timestamp": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "cwd": str(Path.cwd().resolve()),
        "git": git_state(),
        "versions": package_versions(),
        "machine": machine(),
    }

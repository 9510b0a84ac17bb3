"""Run rawprobe as an unprivileged user (uid/gid 65534) in a real process.

The default interpreter lives under /root (mode 0700), which nobody else may read, so
the tree is copied: rawprobe (laid out as installed) and its pure-Python dependencies
go to a world-readable temporary directory, run by Debian's /usr/bin/python3.
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import rawprobe

NOBODY = 65534
SYSTEM_PYTHON = "/usr/bin/python3"
_DEPENDENCIES = (
    "anyio", "sniffio", "idna", "trio", "outcome", "attr", "attrs", "sortedcontainers",
    "rich", "markdown_it", "mdurl", "pygments", "typing_extensions",
)  # fmt: skip


def _copy_module(name: str, into: Path) -> None:
    """Copy an installed package (a folder) or single-file module into ``into``."""
    module = importlib.import_module(name)
    if not hasattr(module, "__path__"):
        shutil.copy(str(module.__file__), into)
        return
    for location in module.__path__:
        shutil.copytree(location, into / name, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip


@contextmanager
def unprivileged_tree() -> Iterator[Path]:
    """A world-readable directory holding rawprobe and its dependencies."""
    root = Path(tempfile.mkdtemp(prefix="rawprobe-nobody-", dir="/tmp"))
    try:
        root.chmod(0o755)
        repo = Path(rawprobe.__file__).resolve().parent.parent
        package = root / "rawprobe"
        shutil.copytree(repo / "rawprobe", package, ignore=shutil.ignore_patterns("__pycache__"))
        for folder in ("probes", "transport", "cli"):
            shutil.copytree(repo / folder, package / folder,
                            ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
        for name in _DEPENDENCIES:
            _copy_module(name, root)
        for path in root.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)
        yield root
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run_as_nobody(
    tree: Path,
    argv: Sequence[str],
    *,
    netns: str | None = None,
    timeout_s: float = 60,
    code: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``python -m rawprobe ARGV`` (or ``python -c CODE ARGV``: the library) as
    uid/gid 65534, optionally in a namespace."""
    drop = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups",
            "--inh-caps=-all"]  # fmt: skip
    program = ["-m", "rawprobe"] if code is None else ["-c", code]
    command = [*drop, SYSTEM_PYTHON, *program, *argv]
    if netns is not None:  # ip netns exec needs root: privileges drop after it
        command = ["ip", "netns", "exec", netns, *command]
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(tree),
           "HOME": "/nonexistent", "PYTHONDONTWRITEBYTECODE": "1"}  # fmt: skip
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout_s, env=env, cwd="/", check=False
    )


def can_run_unprivileged() -> str | None:
    """None when this machine can run the unprivileged tests, else the reason."""
    if os.geteuid() != 0:
        return "needs root to switch to uid 65534"
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} is missing"
    if shutil.which("setpriv") is None:
        return "setpriv (util-linux) is missing"
    return None

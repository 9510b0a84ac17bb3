"""Opening output files safely: the one helper behind every option that writes a file
(``--pcap``, ``sniff -w``, ``-oG``, and any later ``-oX``/``-oA``/``--dot``).

rawprobe runs as root, often in directories other users can write (/tmp). Plain
``open(path, "wb")`` follows a symbolic link planted there and truncates its target
(``fs.protected_symlinks`` is off on many machines), or writes into a file another user
created and reads. So ``open_output``:

- never follows a symbolic link in the last component: an existing link, dangling or
  not, is refused (``O_NOFOLLOW``; a new file is created with ``O_CREAT|O_EXCL``, which
  never follows one either);
- refuses, in a sticky directory others may write (/tmp), an existing file owned by
  someone other than us or the directory's owner (the kernel's ``fs.protected_regular``
  and ``fs.protected_fifos`` rule, applied whatever those sysctls say), and a regular file
  with more than one hard link (``fs.protected_hardlinks`` may be off too);
- writes regular files (created with mode 0666 less the umask, or truncated only once
  every check passed), FIFOs and character devices (``/dev/null``); anything else
  (directory, socket, block device) is refused;
- opens the file as the invoking user when the command runs under sudo and will drop to
  that user (``privileges.as_invoking_user``), so the file belongs to that user and a
  path they may not write is refused, as it will be after the drop.

Every refusal is one ``UsageError`` line naming the option and the path. Intermediate
directories are resolved normally (a symlinked directory in the path is followed).
"""

from __future__ import annotations

import os
import stat
from typing import BinaryIO

from rawprobe.errors import UsageError
from rawprobe.transport import privileges

__all__ = ["open_output"]

_WRITE = os.O_WRONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY


def open_output(path: str | os.PathLike[str], *, option: str = "output") -> BinaryIO:
    """A new binary stream writing ``path`` (see the module's rules); the caller closes
    it. ``option`` names the option in error messages (``--pcap``, ``-oG``)."""
    name = os.fspath(path)
    if not name.strip():
        raise UsageError(f"{option}: empty file name")
    with privileges.as_invoking_user():
        fd = _open_checked(name, option)
    return open(fd, "wb")


def _open_checked(name: str, option: str) -> int:
    def refuse(reason: str) -> UsageError:
        return UsageError(f"{option} {name}: {reason}")

    created = True
    try:
        fd = os.open(name, _WRITE | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        created = False
        try:
            fd = os.open(name, _WRITE)
        except OSError as exc:
            if os.path.islink(name):
                raise refuse("is a symbolic link: refusing to follow it") from None
            raise refuse(str(exc.strerror)) from None
    except OSError as exc:
        raise refuse(str(exc.strerror)) from None
    if created:
        return fd
    try:
        info = os.fstat(fd)
        if not (
            stat.S_ISREG(info.st_mode) or stat.S_ISFIFO(info.st_mode) or stat.S_ISCHR(info.st_mode)
        ):
            raise refuse("not a regular file, FIFO or character device")
        if not stat.S_ISCHR(info.st_mode) and _foreign_in_sticky_directory(name, info):
            raise refuse(
                "belongs to another user in a shared sticky directory: remove it or "
                "choose another name"
            )
        if stat.S_ISREG(info.st_mode):
            if info.st_nlink > 1:
                raise refuse(f"has {info.st_nlink} hard links: refusing to overwrite it")
            os.ftruncate(fd, 0)
    except BaseException:
        os.close(fd)
        raise
    return fd


def _foreign_in_sticky_directory(name: str, info: os.stat_result) -> bool:
    """The kernel's protected_regular rule: in a sticky directory that others (group or
    world) may write, a file owned neither by us nor by the directory's owner."""
    try:
        directory = os.stat(os.path.dirname(os.path.abspath(name)))
    except OSError:
        return True
    shared = directory.st_mode & stat.S_ISVTX and directory.st_mode & (stat.S_IWOTH | stat.S_IWGRP)
    return bool(shared) and info.st_uid not in (os.geteuid(), directory.st_uid)

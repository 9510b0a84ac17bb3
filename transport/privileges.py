"""Least privilege: who may do what, and giving privileges up once the sockets are open.

Raw and packet sockets need CAP_NET_RAW only to be *created*; reading and writing an
open one needs nothing. So the command-line tool opens its sockets first and then
drops everything, before it parses a single packet from the network or writes a file:

1. the capability bounding set is emptied (best effort: needs CAP_SETPCAP), the
   ambient set cleared and ``no_new_privs`` set, so no later ``execve`` (of a setuid
   binary, or of anything while uid 0) can hand capabilities back;
2. when started through sudo as root (``SUDO_UID``/``SUDO_GID`` set), the process
   switches real, effective and saved uid and gid, and its supplementary groups, to the
   invoking user, so the pcap and output files it writes afterwards belong to that user;
3. the effective, permitted and inheritable capability sets are cleared (``capset``).

The drop is checked (``/proc/self/status`` CapEff must read 0 and, under sudo, the
uids must have changed) and a failure raises PrivilegeError: the tool refuses to go on
privileged. Run as root without sudo, the process keeps uid 0 but no capability: it
can still write files root owns (documented in the README's Security section).

Where it happens, in one place: ``RawTransport`` and the sniffer call
``sockets_opened()`` right after creating their sockets. That does nothing unless the
process *opted in* with ``drop_after_open()``, which the CLI's ``main()`` does when it
runs as the ``rawprobe`` command. Library users (and the test suite, whose process
enters lab namespaces and opens transports again and again) never lose privileges
behind their back. Privileges are process-wide state, which is why the switch is a
process-wide setting rather than an argument threaded through every call.

Forked sweep workers each open their own transport and so drop in their own process;
their parent, which opens none, drops right after forking them (``drop_now``).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from rawprobe.errors import PrivilegeError

__all__ = [
    "CAP_NET_RAW",
    "DropReport",
    "as_invoking_user",
    "drop_after_open",
    "drop_now",
    "effective_capabilities",
    "has_net_raw",
    "sockets_opened",
]

CAP_NET_RAW = 13
_LINUX_CAPABILITY_VERSION_3 = 0x20080522
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4


@dataclass(frozen=True, slots=True)
class DropReport:
    """What a drop did: the uid/gid the process now runs as, and whether it switched."""

    uid: int
    gid: int
    switched_user: bool
    bounding_set_cleared: bool


@dataclass(slots=True)
class _Policy:
    enabled: bool = False
    switch_user: bool = True
    done: DropReport | None = None


_POLICY = _Policy()


def _status_field(name: str) -> str | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(name + ":"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        return None
    return None


def effective_capabilities() -> int:
    """The process's effective capability set as a bit mask (0 when unknown)."""
    value = _status_field("CapEff")
    return int(value, 16) if value else 0


def has_net_raw() -> bool:
    """True when the process may open raw sockets: uid 0 or CAP_NET_RAW effective.

    This is iputils' notion of "privileged" (it gates ping intervals below 0.2 s)."""
    return os.geteuid() == 0 or bool(effective_capabilities() >> CAP_NET_RAW & 1)


def drop_after_open(enabled: bool = True, *, switch_user: bool = True) -> None:
    """Opt this process in (or out) of dropping privileges once its sockets are open.

    ``switch_user``: also become the sudo-invoking user (SUDO_UID/SUDO_GID) when root.
    """
    _POLICY.enabled = enabled
    _POLICY.switch_user = switch_user


def sockets_opened() -> DropReport | None:
    """Called by transports right after they created their sockets: drops privileges
    when the process opted in (once; later calls return the first report)."""
    if not _POLICY.enabled:
        return None
    return drop_now(switch_user=_POLICY.switch_user)


def drop_now(*, switch_user: bool = True) -> DropReport:
    """Give up every capability for good and, under sudo as root, become the invoking
    user. Idempotent. Raises PrivilegeError when the process is still privileged after
    trying (it must not go on)."""
    if _POLICY.done is not None:
        return _POLICY.done
    libc = ctypes.CDLL(None, use_errno=True)  # the running program's libc (no ldconfig)
    target = _sudo_target() if switch_user and os.geteuid() == 0 else None
    bounding = _clear_bounding_set(libc)
    libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
    if libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise PrivilegeError(f"cannot set no_new_privs: {os.strerror(ctypes.get_errno())}")
    if target is not None:
        uid, gid = target
        try:
            try:
                os.initgroups(pwd.getpwuid(uid).pw_name, gid)
            except KeyError:
                os.setgroups([gid])
            os.setresgid(gid, gid, gid)
            os.setresuid(uid, uid, uid)
        except OSError as exc:
            raise PrivilegeError(f"cannot switch to uid {uid}: {exc.strerror}") from exc
    _clear_capabilities(libc)
    if effective_capabilities() != 0:
        raise PrivilegeError("capabilities are still effective after dropping them")
    if target is not None and os.getresuid() != (target[0],) * 3:
        raise PrivilegeError(f"still not uid {target[0]} after switching")
    report = DropReport(os.getuid(), os.getgid(), target is not None, bounding)
    _POLICY.done = report
    return report


@contextlib.contextmanager
def as_invoking_user() -> Iterator[None]:
    """Run the block with the identity the process will drop to, so that files opened
    in it (output files, opened before any socket: transport/outfiles.py) are created
    and checked with that user's permissions and belong to that user.

    Only when this process opted in to dropping (``drop_after_open``), runs as root,
    has not dropped yet and was started through sudo: then the effective uid, gid and
    supplementary groups switch to the invoking user for the block and back to root
    after it, as OpenSSH's ``temporarily_use_uid`` does (the saved uid stays 0). Else a
    no-op: the files are opened as whoever the process is.
    """
    target = None
    if _POLICY.enabled and _POLICY.switch_user and _POLICY.done is None and os.geteuid() == 0:
        target = _sudo_target()
    if target is None:
        yield
        return
    uid, gid = target
    saved_gid, saved_groups = os.getegid(), os.getgroups()
    try:
        try:
            groups = os.getgrouplist(pwd.getpwuid(uid).pw_name, gid)
        except KeyError:
            groups = [gid]
        os.setgroups(groups)
        os.setegid(gid)
        os.seteuid(uid)
    except OSError as exc:
        _restore_root(saved_gid, saved_groups)
        raise PrivilegeError(f"cannot act as uid {uid}: {exc.strerror}") from exc
    try:
        yield
    finally:
        _restore_root(saved_gid, saved_groups)


def _restore_root(gid: int, groups: list[int]) -> None:
    try:
        os.seteuid(0)
        os.setegid(gid)
        os.setgroups(groups)
    except OSError as exc:  # pragma: no cover - the saved uid is 0: cannot fail
        raise PrivilegeError(f"cannot switch back to root: {exc.strerror}") from exc


def _sudo_target() -> tuple[int, int] | None:
    """(uid, gid) of the user who ran sudo, None when not started through sudo."""
    uid_text, gid_text = os.environ.get("SUDO_UID", ""), os.environ.get("SUDO_GID", "")
    if not (uid_text.isdigit() and gid_text.isdigit()):
        return None
    uid, gid = int(uid_text), int(gid_text)
    if uid == 0:
        return None
    return uid, gid


def _clear_bounding_set(libc: ctypes.CDLL) -> bool:
    """Drop every capability from the bounding set; False if not allowed (no
    CAP_SETPCAP, e.g. a binary with only file capabilities)."""
    try:
        with open("/proc/sys/kernel/cap_last_cap", encoding="ascii") as f:
            last = int(f.read())
    except (OSError, ValueError):
        last = 40
    cleared = True
    for cap in range(last + 1):
        if libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0) != 0:
            cleared = False
    return cleared


def _clear_capabilities(libc: ctypes.CDLL) -> None:
    header = ctypes.create_string_buffer(struct.pack("=Ii", _LINUX_CAPABILITY_VERSION_3, 0))
    data = ctypes.create_string_buffer(bytes(24))  # two (effective, permitted, inheritable)
    if libc.capset(header, data) != 0:
        raise PrivilegeError(f"cannot clear capabilities: {os.strerror(ctypes.get_errno())}")

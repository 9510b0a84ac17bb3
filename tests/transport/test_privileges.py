"""transport/privileges.py: the drop is opt-in, complete, checked, and irreversible."""

from __future__ import annotations

import os
import socket

import pytest

from rawprobe.transport import privileges

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to have something to drop")


def _in_child(body: str, env: dict[str, str] | None = None) -> str:
    """Run ``body`` (Python source using ``privileges``) in a forked child; its printed
    result comes back. The test process itself never drops anything."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.close(read_fd)
        try:
            os.environ.clear()
            os.environ.update(env or {})
            scope: dict[str, object] = {"privileges": privileges, "socket": socket, "os": os}
            exec(body, scope)
            text = str(scope.get("result", ""))
        except BaseException as exc:
            text = f"raised {type(exc).__name__}: {exc}"
        os.write(write_fd, text.encode())
        os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        text = pipe.read()
    os.waitpid(pid, 0)
    return text


def test_nothing_drops_unless_the_process_opted_in() -> None:
    assert privileges.sockets_opened() is None
    assert privileges.effective_capabilities() == privileges.effective_capabilities()


@needs_root
def test_opted_in_drop_leaves_no_capability_and_no_raw_socket() -> None:
    body = """
privileges.drop_after_open()
report = privileges.sockets_opened()
try:
    socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    opened = True
except PermissionError:
    opened = False
status = open("/proc/self/status").read()
result = (report.switched_user, privileges.effective_capabilities(), opened,
          "NoNewPrivs:\\t1" in status, privileges.has_net_raw() and os.geteuid() != 0)
"""
    assert _in_child(body) == "(False, 0, False, True, False)"
    assert privileges.has_net_raw()  # the test process kept its privileges


@needs_root
def test_under_sudo_the_process_becomes_the_invoking_user() -> None:
    body = """
report = privileges.drop_now()
result = (report.uid, report.gid, report.switched_user, os.getresuid(), os.getgroups())
"""
    env = {"SUDO_UID": "65534", "SUDO_GID": "65534"}
    assert _in_child(body, env) == "(65534, 65534, True, (65534, 65534, 65534), [65534])"


@needs_root
@pytest.mark.parametrize(
    "env", [{"SUDO_UID": "0", "SUDO_GID": "0"}, {"SUDO_UID": "x", "SUDO_GID": "1"}, {}]
)
def test_without_a_usable_sudo_user_the_uid_stays(env: dict[str, str]) -> None:
    body = "report = privileges.drop_now()\nresult = (report.uid, report.switched_user)"
    assert _in_child(body, env) == "(0, False)"


def test_failure_to_drop_is_an_error_not_a_warning() -> None:
    body = """
privileges._clear_capabilities = lambda libc: None
privileges._clear_bounding_set = lambda libc: False
privileges.effective_capabilities = lambda: 1 << 13
privileges.drop_now()
"""
    assert _in_child(body).startswith("raised PrivilegeError: capabilities are still effective")

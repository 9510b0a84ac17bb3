"""TCP connect(): the unprivileged way to learn a port's state (nmap -sT).

The one place a connect scan touches sockets. The kernel's own handshake does the
probing: an accepted connection is open (and closed again at once), a refusal is
closed, silence is filtered, and an ICMP error surfaces as an errno.
"""

from __future__ import annotations

import errno
import socket
import time

import anyio

from rawprobe.transport.sockets import NamespacePin

#: errno -> (state, reason) for a connect() that failed.
_FAILURES = {
    errno.ECONNREFUSED: ("closed", "conn-refused"),
    errno.EHOSTUNREACH: ("filtered", "host-unreachable"),
    errno.ENETUNREACH: ("filtered", "net-unreachable"),
    errno.EACCES: ("filtered", "admin-prohibited"),
    errno.EPERM: ("filtered", "admin-prohibited"),
    errno.ETIMEDOUT: ("filtered", "no-response"),
}


async def probe_port(
    address: str, port: int, timeout_s: float, netns: NamespacePin
) -> tuple[str, str, float | None]:
    """(state, reason, RTT in seconds or None) of ``address``:``port`` by connect(),
    from a socket of the namespace ``netns``."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    sock = netns.socket(family, socket.SOCK_STREAM, "TCP socket")
    sock.setblocking(False)
    started = time.monotonic()
    try:
        with anyio.move_on_after(timeout_s):
            try:
                sock.connect((address, port))
            except BlockingIOError:
                await anyio.wait_writable(sock)
                code = sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if code:
                    raise OSError(code, errno.errorcode.get(code, "")) from None
            return "open", "syn-ack", time.monotonic() - started
        return "filtered", "no-response", None
    except OSError as exc:
        state, reason = _FAILURES.get(exc.errno or 0, ("filtered", f"error-{exc.errno}"))
        return state, reason, time.monotonic() - started
    finally:
        sock.close()

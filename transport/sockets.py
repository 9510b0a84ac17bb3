"""Opening and configuring the raw sockets; the one place that maps socket OS errors.

Python 3.11's ``socket`` module lacks several Linux constants; they are defined here
once. Everything else in the package asks this module for sockets.
"""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import struct
from collections.abc import Sequence

from rawprobe.errors import PrivilegeError, ResolutionError, TransportError, UsageError
from rawprobe.transport.wire.icmp_table import ERROR_TYPES, REPLY_TYPES

# Linux constants missing from Python 3.11's socket module.
SOL_RAW = 255
ICMP_FILTER = 1
ICMP6_FILTER = 1
IP_RECVERR = 11
IPV6_RECVERR = 25
IPV6_RECVHOPLIMIT = 51
IPV6_HOPLIMIT = 52
IPV6_HDRINCL = 36
SO_TIMESTAMPNS = 35
SCM_TIMESTAMPNS = SO_TIMESTAMPNS
SO_TIMESTAMPING = 37
SCM_TIMESTAMPING = SO_TIMESTAMPING
# SO_TIMESTAMPING flags (linux/net_tstamp.h): software transmit stamps, reported with a
# per-socket counter (OPT_ID) and without the packet (OPT_TSONLY): transport/txstamps.py.
SOF_TIMESTAMPING_TX_SOFTWARE = 1 << 1
SOF_TIMESTAMPING_SOFTWARE = 1 << 4
SOF_TIMESTAMPING_OPT_ID = 1 << 7
SOF_TIMESTAMPING_OPT_TSONLY = 1 << 11
TX_STAMP_FLAGS = (
    SOF_TIMESTAMPING_TX_SOFTWARE
    | SOF_TIMESTAMPING_SOFTWARE
    | SOF_TIMESTAMPING_OPT_ID
    | SOF_TIMESTAMPING_OPT_TSONLY
)
SO_ATTACH_FILTER = 26
SO_RXQ_OVFL = 40
SO_RCVBUFFORCE = 33
ETH_P_ALL = 3

#: struct sock_extended_err (linux/errqueue.h): errno, origin, type, code, pad, info,
#: data; what an error-queue message carries in its IP_RECVERR / IPV6_RECVERR record.
EXTENDED_ERR = struct.Struct("=IBBBBII")
RECVERR = {(socket.IPPROTO_IP, IP_RECVERR), (socket.IPPROTO_IPV6, IPV6_RECVERR)}

PROTO_ICMP = socket.IPPROTO_ICMP
PROTO_ICMPV6 = socket.IPPROTO_ICMPV6
PROTO_TCP = socket.IPPROTO_TCP
PROTO_UDP = socket.IPPROTO_UDP

#: Which raw sockets a probe protocol needs per family: ICMP errors about TCP and UDP
#: probes arrive on the ICMP sockets, answers on the protocol's own.
ICMP_SOCKETS = ((socket.AF_INET, PROTO_ICMP), (socket.AF_INET6, PROTO_ICMPV6))
TCP_SOCKETS = (*ICMP_SOCKETS, (socket.AF_INET, PROTO_TCP), (socket.AF_INET6, PROTO_TCP))
UDP_SOCKETS = (*ICMP_SOCKETS, (socket.AF_INET, PROTO_UDP), (socket.AF_INET6, PROTO_UDP))

#: Receive buffer asked for: a burst of thousands of replies must not overflow it.
DEFAULT_RCVBUF_BYTES = 8 * 1024 * 1024

_PRIVILEGE_HINT = (
    "raw sockets need root or CAP_NET_RAW: run with sudo, or grant the capability "
    "once with `sudo setcap cap_net_raw+ep $(readlink -f $(which python3))`"
)


def _icmp_type_filter(family: int) -> bytes:
    """ICMP_FILTER (one 32-bit word) or ICMP6_FILTER (256 bits): a set bit blocks that type
    (Linux semantics). What passes: errors quoting our probes, and replies."""
    words = [0xFFFFFFFF] * (1 if family == socket.AF_INET else 8)
    for icmp_type in ERROR_TYPES[family] | REPLY_TYPES[family]:
        words[icmp_type >> 5] &= ~(1 << (icmp_type & 31))
    return struct.pack(f"={len(words)}I", *words)


# Classic BPF (SO_ATTACH_FILTER): the few opcodes the ICMP and TCP filters use.
_BPF_LDX_B_MSH = 0xB1  # X = 4 * (packet[k] & 0x0F): the IPv4 header length
_BPF_LD_B_ABS = 0x30  # A = packet[k]
_BPF_LD_B_IND = 0x50  # A = packet[X + k]
_BPF_JEQ_K = 0x15  # if A == k: skip jt, else skip jf
_BPF_RET_K = 0x06  # accept k bytes (0: drop)
_BPF_LD_H_ABS = 0x28  # A = 16 bits at packet[k]
_BPF_LD_H_IND = 0x48  # A = 16 bits at packet[X + k]
_ACCEPT = 0x40000


def _load(family: int, offset: int, half: bool = False) -> list[tuple[int, int, int, int]]:
    """Load the byte (or 16 bits) at ``offset`` in the transport header into A: IPv4 raw
    sockets filter the whole IP packet (X = its header length), IPv6 ones start there."""
    if family == socket.AF_INET:
        return [(_BPF_LDX_B_MSH, 0, 0, 0), (_BPF_LD_H_IND if half else _BPF_LD_B_IND, 0, 0, offset)]
    return [(_BPF_LD_H_ABS if half else _BPF_LD_B_ABS, 0, 0, offset)]


def icmp_filter_program(family: int, ident_prefix: int) -> list[tuple[int, int, int, int]]:
    """A socket filter passing ICMP errors and the replies whose identifier starts with
    ``ident_prefix`` (ours): other programs' echo replies never wake the reader.

    IPv4 raw sockets filter the whole IP packet, IPv6 ones the ICMPv6 message.
    """
    errors, replies = sorted(ERROR_TYPES[family]), sorted(REPLY_TYPES[family])
    program = _load(family, 0)  # the ICMP type
    tests = [*errors, *replies]
    accept_at = len(program) + len(tests) + 1  # index of "ret accept" after the tests
    for position, value in enumerate(tests):
        here = len(program)
        if position < len(errors):
            program.append((_BPF_JEQ_K, accept_at - here - 1, 0, value))
        else:  # a reply: check the identifier's high byte first (after accept_at)
            program.append((_BPF_JEQ_K, accept_at + 1 - here - 1, 0, value))
    program.append((_BPF_RET_K, 0, 0, 0))  # no test matched: drop
    program.append((_BPF_RET_K, 0, 0, _ACCEPT))  # accept_at
    program.append(_load(family, 4)[-1])  # the identifier's high byte (X is still set)
    program.append((_BPF_JEQ_K, 0, 1, ident_prefix))
    program.append((_BPF_RET_K, 0, 0, _ACCEPT))
    program.append((_BPF_RET_K, 0, 0, 0))
    return program


def tcp_filter_program(family: int, local_ports: Sequence[int]) -> list[tuple[int, int, int, int]]:
    """A socket filter passing only TCP segments sent to one of ``local_ports`` (the
    source ports of our probes): a scan's raw TCP socket then never wakes for the
    host's other connections, nor for a sibling worker's answers."""
    program = _load(family, 2, half=True)  # the destination port
    for position, port in enumerate(local_ports):
        program.append((_BPF_JEQ_K, len(local_ports) - position, 0, port))
    program.append((_BPF_RET_K, 0, 0, 0))
    program.append((_BPF_RET_K, 0, 0, _ACCEPT))
    return program


def attach_filter(sock: socket.socket, program: list[tuple[int, int, int, int]]) -> None:
    """Attach a classic BPF program to ``sock`` (the kernel copies it)."""
    code = b"".join(struct.pack("=HBBI", *instruction) for instruction in program)
    buffer = ctypes.create_string_buffer(code)
    fprog = struct.pack("HP", len(program), ctypes.addressof(buffer))  # native: padded
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


def new_socket(
    family: int, kind: int, protocol: int, what: str, hint: str = _PRIVILEGE_HINT
) -> socket.socket:
    """``socket.socket(family, kind, protocol)``: PrivilegeError (``hint``) on EPERM or
    EACCES, TransportError ("cannot open ``what``") for any other refusal."""
    try:
        return socket.socket(family, kind, protocol)
    except PermissionError as exc:
        raise PrivilegeError(hint) from exc
    except OSError as exc:
        raise TransportError(f"cannot open {what}: {exc.strerror or exc}") from exc


_CLONE_NEWNET = 0x40000000
_THIS_NETNS = "/proc/thread-self/ns/net"


def setns_net(fd: int) -> None:
    """Move the calling thread into the network namespace behind ``fd``."""
    os_setns = getattr(os, "setns", None)  # Python >= 3.12
    if os_setns is not None:
        os_setns(fd, _CLONE_NEWNET)
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(ctypes.c_int(fd), ctypes.c_int(_CLONE_NEWNET)) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


class NamespacePin:
    """The network namespace a transport was opened in. A transport that opens
    sockets as probes need them (the unprivileged UDP transport) opens them here,
    whatever namespace the calling thread is in by then: opened in a lab namespace
    (``Lab.entered``), its probes never leave through the host's own routes."""

    def __init__(self) -> None:
        self._fd: int | None = None
        try:
            self._fd = os.open(_THIS_NETNS, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return  # (no /proc: sockets are opened where the thread is)
        pinned = os.fstat(self._fd)
        self._id = (pinned.st_dev, pinned.st_ino)

    def socket(self, family: int, kind: int, what: str) -> socket.socket:
        """``new_socket(family, kind, 0, what)`` in the pinned namespace."""
        if self._fd is None:
            return new_socket(family, kind, 0, what)
        here = os.stat(_THIS_NETNS)
        if (here.st_dev, here.st_ino) == self._id:
            return new_socket(family, kind, 0, what)
        saved = os.open(_THIS_NETNS, os.O_RDONLY | os.O_CLOEXEC)
        try:
            try:
                setns_net(self._fd)
            except OSError as exc:
                raise TransportError(f"cannot open {what} in the transport's namespace") from exc
            try:
                return new_socket(family, kind, 0, what)
            finally:
                setns_net(saved)  # (back where the thread was)
        finally:
            os.close(saved)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def open_raw_socket(
    family: int, protocol: int, *, rcvbuf_bytes: int = DEFAULT_RCVBUF_BYTES
) -> socket.socket:
    """Open a non-blocking raw socket that receives ``protocol`` (and could send whole
    IP packets; the transport sends through ``open_send_socket``).

    Receive side: kernel timestamps (SO_TIMESTAMPNS), drop counter (SO_RXQ_OVFL), hop
    limit for IPv6, and a type filter so the kernel does not wake us for ICMP messages
    that can never answer a probe. Raises PrivilegeError on EPERM/EACCES.
    """
    sock = new_socket(family, socket.SOCK_RAW, protocol, "raw socket")
    try:
        sock.setblocking(False)
        _set_rcvbuf(sock, rcvbuf_bytes)
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        sock.setsockopt(socket.SOL_SOCKET, SO_RXQ_OVFL, 1)
        if family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
            if protocol == PROTO_ICMP:
                sock.setsockopt(SOL_RAW, ICMP_FILTER, _icmp_type_filter(family))
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_HDRINCL, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVHOPLIMIT, 1)
            if protocol == PROTO_ICMPV6:
                sock.setsockopt(PROTO_ICMPV6, ICMP6_FILTER, _icmp_type_filter(family))
    except OSError as exc:
        sock.close()
        raise TransportError(f"cannot configure raw socket: {exc.strerror or exc}") from exc
    return sock


def open_send_socket(family: int) -> socket.socket:
    """Open a non-blocking send-only raw socket (``IPPROTO_RAW``: whole IP packets of
    any protocol, never receives).

    ``IP_RECVERR`` is set: without it a raw send the qdisc drops "succeeds" (the kernel
    hides ENOBUFS) and the probe is silently lost. It lives on this socket rather than
    on the receiving ones because on a socket of the probes' own protocol every ICMP
    error a probe draws would also fail the next ``sendto`` (EHOSTUNREACH: 8,966 of
    12,000 sends of 1000 traces); ICMP errors never match an ``IPPROTO_RAW`` socket.
    Path MTU discovery is in probe mode (``pmtu_probe_mode``): packets go out as built.
    """
    sock = new_socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW, "raw socket")
    try:
        sock.setblocking(False)
        pmtu_probe_mode(sock, family)
        if family == socket.AF_INET:
            sock.setsockopt(socket.IPPROTO_IP, IP_RECVERR, 1)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_HDRINCL, 1)
        else:
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_RECVERR, 1)
            sock.setsockopt(socket.IPPROTO_IPV6, IPV6_HDRINCL, 1)
    except OSError as exc:
        sock.close()
        raise TransportError(f"cannot configure raw socket: {exc.strerror or exc}") from exc
    return sock


def enable_tx_stamps(sock: socket.socket) -> bool:
    """Ask for the kernel's software transmit stamps of what ``sock`` sends (on its error
    queue, keyed by OPT_ID: transport/txstamps.py), with a receive buffer large enough
    that the queue of stamps cannot overflow between two reads. False where the kernel
    refuses (RTTs then use user-space send stamps)."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPING, TX_STAMP_FLAGS)
        _set_rcvbuf(sock, DEFAULT_RCVBUF_BYTES)
    except OSError:
        return False
    return True


def _set_rcvbuf(sock: socket.socket, size: int) -> None:
    """Ask for a large receive buffer, past rmem_max when privileged."""
    try:
        sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, size)
    except OSError:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, size)


def raw_sockets_allowed(family: int = socket.AF_INET) -> bool:
    """Whether this process may open raw sockets (root or CAP_NET_RAW), by trying."""
    try:
        socket.socket(family, socket.SOCK_RAW, PROTO_TCP).close()
    except PermissionError:
        return False
    except OSError:
        return True  # not a privilege problem: let the real open report it
    return True


# -- Path MTU -------------------------------------------------------------------------
# linux/in.h, linux/in6.h: path MTU discovery modes (Python 3.11 lacks them).
IP_MTU_DISCOVER = 10
IP_PMTUDISC_PROBE = 3
IPV6_MTU_DISCOVER = 23
IPV6_PMTUDISC_PROBE = 3
#: The largest IP packet a probe can be (the 16-bit IPv4 total length; IPv6 payload
#: length plus its header is more, but no probe needs a jumbogram).
MAX_PACKET = 65535


def pmtu_probe_mode(sock: socket.socket, family: int) -> None:
    """``IP_PMTUDISC_PROBE`` / ``IPV6_PMTUDISC_PROBE`` on ``sock``, as tracepath sets:
    sends ignore the path MTU the kernel learned (it keeps one for 10 minutes after a
    "fragmentation needed" or "packet too big"), and only the outgoing interface's MTU
    refuses a packet (EMSGSIZE). Checked on Linux 6.18 in the lab: without it, a raw
    IPv4 packet with DF or any raw IPv6 packet over a learned path MTU is refused with
    EMSGSIZE (and a local "fragmentation needed" / "packet too big" from our own
    address), so a second run could not measure the path again; IPv4 packets without
    DF would be fragmented at the learned MTU. Datagram sockets also set DF (IPv4)."""
    if family == socket.AF_INET:
        sock.setsockopt(socket.IPPROTO_IP, IP_MTU_DISCOVER, IP_PMTUDISC_PROBE)
    else:
        sock.setsockopt(socket.IPPROTO_IPV6, IPV6_MTU_DISCOVER, IPV6_PMTUDISC_PROBE)


# rtnetlink (linux/rtnetlink.h, linux/if_link.h): the route to an address, and a link's MTU.
_NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port id
#: rtmsg: family, dst_len, src_len, tos, table, protocol, scope, type, flags
_RTMSG = struct.Struct("=BBBBBBBBI")
_IFINFOMSG = struct.Struct("=BxHiII")  # family, type, index, flags, change
_RTATTR = struct.Struct("=HH")  # length, type
_U32_NATIVE = struct.Struct("=I")
_RTM_NEWLINK, _RTM_GETLINK, _RTM_NEWROUTE, _RTM_GETROUTE = 16, 18, 24, 26
_NLM_F_REQUEST = 1
_RTA_DST, _RTA_OIF, _IFLA_MTU = 1, 4, 4


def _rtattrs(data: bytes, offset: int) -> dict[int, bytes]:
    """The attributes (type -> value) of a netlink message from ``offset``."""
    found: dict[int, bytes] = {}
    while offset + _RTATTR.size <= len(data):
        length, kind = _RTATTR.unpack_from(data, offset)
        if length < _RTATTR.size:
            break
        found[kind & 0x3FFF] = data[offset + _RTATTR.size : offset + length]
        offset += (length + 3) & ~3
    return found


class RouteLookup:
    """Source-address selection without sending: connect a UDP socket, read its name;
    and the outgoing interface's MTU towards an address (rtnetlink).

    The sockets are opened once (so they live in the network namespace the transport
    was opened in) and reused for every lookup.
    """

    def __init__(self) -> None:
        self._sockets: dict[int, socket.socket] = {}
        self._cache: dict[str, str] = {}
        for family in (socket.AF_INET, socket.AF_INET6):
            try:
                self._sockets[family] = socket.socket(family, socket.SOCK_DGRAM)
            except OSError:
                continue
        self._netlink: socket.socket | None = None
        self._sequence = 0
        try:
            self._netlink = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, 0)
            self._netlink.setblocking(False)
        except OSError:
            self._netlink = None

    def interface_mtu(self, destination: str) -> int | None:
        """The MTU of the interface the kernel would send to ``destination`` by (at most
        ``MAX_PACKET``), not the path MTU it may have learned; None when it cannot tell.
        Two rtnetlink requests, answered before ``send`` returns: nothing waits."""
        family = socket.AF_INET6 if ":" in destination else socket.AF_INET
        packed = socket.inet_pton(family, destination)
        head = _RTMSG.pack(family, len(packed) * 8, 0, 0, 0, 0, 0, 0, 0)
        route = self._netlink_request(_RTM_GETROUTE, head + _rtattr(_RTA_DST, packed))
        if route is None or route[0] != _RTM_NEWROUTE:
            return None
        oif = _rtattrs(route[1], _RTMSG.size).get(_RTA_OIF)
        if oif is None or len(oif) < 4:
            return None
        index = _U32_NATIVE.unpack_from(oif)[0]
        link = self._netlink_request(_RTM_GETLINK, _IFINFOMSG.pack(0, 0, index, 0, 0))
        if link is None or link[0] != _RTM_NEWLINK:
            return None
        mtu = _rtattrs(link[1], _IFINFOMSG.size).get(_IFLA_MTU)
        if mtu is None or len(mtu) < 4:
            return None
        value: int = _U32_NATIVE.unpack_from(mtu)[0]
        return min(value, MAX_PACKET)

    def _netlink_request(self, kind: int, body: bytes) -> tuple[int, bytes] | None:
        """(type, payload) of the kernel's answer to one request, or None."""
        sock = self._netlink
        if sock is None:
            return None
        self._sequence += 1
        header = _NLMSGHDR.pack(_NLMSGHDR.size + len(body), kind, _NLM_F_REQUEST, self._sequence, 0)
        try:
            sock.send(header + body)
            while True:
                data = sock.recv(65536)
                length, answer, _flags, sequence, _port = _NLMSGHDR.unpack_from(data)
                if sequence == self._sequence:
                    return answer, data[_NLMSGHDR.size : length]
        except (OSError, struct.error):  # BlockingIOError included: no answer
            return None

    def source_for(self, destination: str) -> str:
        """The address the kernel would send from to reach ``destination``.

        Raises ResolutionError when there is no route (the message names the address).
        """
        cached = self._cache.get(destination)
        if cached is not None:
            return cached
        family = socket.AF_INET6 if ":" in destination else socket.AF_INET
        sock = self._sockets.get(family)
        if sock is None:
            raise ResolutionError(f"{destination}: address family not supported here")
        try:
            sock.connect((destination, 9))
            source = str(sock.getsockname()[0])
        except OSError as exc:
            if exc.errno == errno.EACCES:  # a route of type broadcast (a local subnet's)
                message = f"{destination}: a broadcast destination (the kernel refuses it: EACCES)"
                raise ResolutionError(message) from exc
            reason = errno.errorcode.get(exc.errno or 0, str(exc))
            raise ResolutionError(f"{destination}: no route to host ({reason})") from exc
        self._cache[destination] = source
        return source

    def close(self) -> None:
        for sock in self._sockets.values():
            sock.close()
        self._sockets.clear()
        if self._netlink is not None:
            self._netlink.close()
            self._netlink = None


def _rtattr(kind: int, value: bytes) -> bytes:
    length = _RTATTR.size + len(value)
    return _RTATTR.pack(length, kind) + value + bytes(-length % 4)


# -- Packet (AF_PACKET) sockets for the sniffer (transport/sniffer.py) ---------------------
# Linux constants missing from Python 3.11's socket module (linux/if_packet.h,
# linux/if_ether.h, asm-generic/socket.h). ETH_P_ALL, SO_ATTACH_FILTER are above.
SOL_PACKET = 263
PACKET_STATISTICS = 6
SO_DETACH_FILTER = 27
SO_LOCK_FILTER = 44
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD


def check_source_address(address: str) -> None:
    """UsageError unless ``address`` is one of this host's (in this namespace): the
    bind iputils ping does for ``-I``, on a UDP socket, so nothing is sent. A source
    that is not ours would make the probes spoofed, and their replies go elsewhere."""
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.bind((address, 0))
    except OSError as exc:
        reason = exc.strerror or str(exc)
        raise UsageError(f"bind {address}: {reason} (not an address of this host)") from None

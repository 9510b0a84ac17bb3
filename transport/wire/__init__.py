"""Pure packet codecs: bytes in, frozen dataclasses out, and back.

Nothing here touches a socket, a clock or global state. Every parser raises exactly
``rawprobe.errors.MalformedPacket`` for truncated or inconsistent bytes; builders raise
``UsageError`` for field values that cannot be encoded.

The names below load on first use (PEP 562), so that importing one codec module
(``rawprobe.transport.wire.icmp``) does not load the others (start-up time).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .addr import ntop4, ntop6, pton
    from .checksum import checksum_update16, internet_checksum, ones_complement_sum, pseudo_header
    from .icmp import IcmpMessage, build_echo, build_icmp, parse_icmp, verify_icmp_checksum
    from .icmpext import (
        ExtensionObject,
        MplsLabel,
        build_extensions,
        build_mpls_object,
        parse_extensions,
        verify_extensions_checksum,
    )
    from .icmpv6 import (
        Icmpv6Message,
        build_echo6,
        build_icmpv6,
        parse_icmpv6,
        verify_icmpv6_checksum,
    )
    from .ipv4 import DF, MF, IPv4Header, build_ipv4, parse_ipv4, verify_ipv4_checksum
    from .ipv6 import (
        FragmentHeader,
        IPv6Header,
        build_ipv6,
        find_fragment_header,
        parse_ipv6,
        skip_extension_headers,
    )
    from .protocols import PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP
    from .tcp import (
        ACK,
        AE,
        CWR,
        ECE,
        FIN,
        PSH,
        RST,
        SYN,
        URG,
        TcpHeader,
        TcpOption,
        build_tcp,
        encode_options,
        eol,
        flags_text,
        mss,
        nop,
        parse_flags,
        parse_options,
        parse_ports_seq,
        parse_tcp,
        sack_permitted,
        timestamps,
        verify_tcp_checksum,
        window_scale,
    )
    from .udp import UdpHeader, build_udp, parse_udp, verify_udp_checksum

__all__ = [
    "ACK",
    "AE",
    "CWR",
    "DF",
    "ECE",
    "FIN",
    "MF",
    "PROTO_ICMP",
    "PROTO_ICMPV6",
    "PROTO_TCP",
    "PROTO_UDP",
    "PSH",
    "RST",
    "SYN",
    "URG",
    "ExtensionObject",
    "FragmentHeader",
    "IPv4Header",
    "IPv6Header",
    "IcmpMessage",
    "Icmpv6Message",
    "MplsLabel",
    "TcpHeader",
    "TcpOption",
    "UdpHeader",
    "build_echo",
    "build_echo6",
    "build_extensions",
    "build_icmp",
    "build_icmpv6",
    "build_ipv4",
    "build_ipv6",
    "build_mpls_object",
    "build_tcp",
    "build_udp",
    "checksum_update16",
    "encode_options",
    "eol",
    "find_fragment_header",
    "flags_text",
    "internet_checksum",
    "mss",
    "nop",
    "ntop4",
    "ntop6",
    "ones_complement_sum",
    "parse_extensions",
    "parse_flags",
    "parse_icmp",
    "parse_icmpv6",
    "parse_ipv4",
    "parse_ipv6",
    "parse_options",
    "parse_ports_seq",
    "parse_tcp",
    "parse_udp",
    "pseudo_header",
    "pton",
    "sack_permitted",
    "skip_extension_headers",
    "timestamps",
    "verify_extensions_checksum",
    "verify_icmp_checksum",
    "verify_icmpv6_checksum",
    "verify_ipv4_checksum",
    "verify_tcp_checksum",
    "verify_udp_checksum",
    "window_scale",
]


_MODULES = (
    "addr",
    "checksum",
    "icmp",
    "icmpext",
    "icmpv6",
    "ipv4",
    "ipv6",
    "protocols",
    "tcp",
    "udp",
)

if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        """Load the codec modules on the first of their names asked for."""
        if name not in __all__:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        from importlib import import_module

        names = globals()
        for module in _MODULES:
            for key, value in vars(import_module(f"{__name__}.{module}")).items():
                if key in __all__:
                    names[key] = value
        return names[name]

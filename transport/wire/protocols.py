"""IP protocol / IPv6 next-header numbers (IANA "Assigned Internet Protocol Numbers")."""

from __future__ import annotations

PROTO_HOPOPTS = 0
PROTO_ICMP = 1
PROTO_TCP = 6
PROTO_UDP = 17
PROTO_ROUTING = 43
PROTO_FRAGMENT = 44
PROTO_AH = 51
PROTO_ICMPV6 = 58
PROTO_DSTOPTS = 60
PROTO_MOBILITY = 135
PROTO_HIP = 139
PROTO_SHIM6 = 140

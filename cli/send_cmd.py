"""``rawprobe send``: one hand-crafted packet (or ``-c N``), its reply, both dissected.

hping-like: every header field is an option. Replies are matched by the transport
(``transport.request``), so only answers to this packet are shown: an echo reply, a
SYN-ACK or RST, or an ICMP error quoting the packet.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass, field
from typing import Any

import anyio
from rich.console import Console
from rich.markup import escape

from rawprobe.cli import render_packet
from rawprobe.cli.args import (
    EXIT_INTERRUPTED,
    EXIT_NO_REPLY,
    EXIT_OK,
    add_backend_option,
    add_broadcast_option,
    add_family_options,
    int_in,
    interruptible,
    positive_int,
    refuse_special,
    seconds,
)
from rawprobe.cli.outputs import add_output_option, opens_outputs
from rawprobe.cli.render import format_rtt, header
from rawprobe.errors import SendError, UsageError
from rawprobe.probes.craft import ICMP, IP, TCP, UDP, craft
from rawprobe.targets import resolve
from rawprobe.transport.capture import record_pcap
from rawprobe.transport.raw import open_transport
from rawprobe.transport.sockets import ICMP_SOCKETS, TCP_SOCKETS, UDP_SOCKETS
from rawprobe.transport.wire.dissect import Dissection, dissect
from rawprobe.transport.wire.tcp import TcpOption, mss, parse_flags, sack_permitted
from rawprobe.transport.wire.tcp import timestamps as ts_option
from rawprobe.transport.wire.tcp import window_scale as wscale_option

U8, U16, U32 = int_in(0, 0xFF), int_in(0, 0xFFFF), int_in(0, 0xFFFFFFFF)


def _hex_bytes(text: str) -> bytes:
    try:
        return bytes.fromhex(text.replace(":", "").replace(" ", ""))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not hex bytes: {text!r}") from None


def _flags(text: str) -> int:
    try:
        return parse_flags(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _timestamps(text: str) -> tuple[int, int]:
    val, _, ecr = text.partition(":")
    try:
        pair = int(val, 0), int(ecr or "0", 0)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected VAL[:ECR], got {text!r}") from None
    if not all(0 <= v <= 0xFFFFFFFF for v in pair):
        raise argparse.ArgumentTypeError(f"timestamps out of range: {text!r}")
    return pair


def register(commands: Any) -> None:
    send = commands.add_parser(
        "send",
        help="send hand-crafted packets and show the replies, dissected (hping-like)",
        description="Build an IPv4/IPv6 packet field by field, send it, and show it and "
        "its reply layer by layer. Unset fields are filled as the kernel would.",
    )
    send.add_argument("target", metavar="TARGET")
    mode = send.add_mutually_exclusive_group()
    mode.add_argument("--icmp", dest="mode", action="store_const", const="icmp")
    mode.add_argument("--tcp", dest="mode", action="store_const", const="tcp")
    mode.add_argument("--udp", dest="mode", action="store_const", const="udp")
    send.set_defaults(mode="icmp")
    ip = send.add_argument_group("IP header")
    ip.add_argument("-t", "--ttl", type=U8, default=64, help="TTL / hop limit (64)")
    ip.add_argument("--tos", type=U8, default=0, help="TOS / traffic class")
    ip.add_argument("--id", dest="ident", type=U16, default=0, help="IPv4 ID (0: kernel picks)")
    ip.add_argument("--df", action="store_true", help="set IPv4 Don't Fragment")
    ip.add_argument("--mf", action="store_true", help="set IPv4 More Fragments")
    ip.add_argument("--evil", action="store_true", help="set the IPv4 reserved bit")
    ip.add_argument("--frag-offset", type=int_in(0, 0x1FFF), default=0, help="8-byte units")
    ip.add_argument("--ip-options", type=_hex_bytes, default=b"", metavar="HEX")
    ip.add_argument("--flow-label", type=int_in(0, 0xFFFFF), default=0, help="IPv6 flow label")
    ip.add_argument("--ip-proto", type=U8, help="protocol / next header override")
    ip.add_argument("--ip-length", type=U16, help="total (v4) / payload (v6) length override")
    tcp = send.add_argument_group("TCP / UDP")
    tcp.add_argument("-p", "--dport", type=U16, help="destination port (TCP 80, UDP 33434)")
    tcp.add_argument("-s", "--sport", type=U16, help="source port (random)")
    tcp.add_argument("--flags", type=_flags, default=None, help="TCP flags: F S R P A U E W (S)")
    tcp.add_argument("--seq", type=U32, help="TCP sequence number (random)")
    tcp.add_argument("--ack", type=U32, help="TCP ack number (the seq when A is set, else 0)")
    tcp.add_argument("--win", type=U16, default=64240, help="TCP window")
    tcp.add_argument("--urg", type=U16, default=0, help="TCP urgent pointer")
    tcp.add_argument("--mss", type=U16, help="TCP MSS option")
    tcp.add_argument("--wscale", type=U8, help="TCP window scale option")
    tcp.add_argument("--sackok", action="store_true", help="TCP SACK-permitted option")
    tcp.add_argument("--ts", type=_timestamps, metavar="VAL[:ECR]", help="TCP timestamps")
    icmp = send.add_argument_group("ICMP")
    icmp.add_argument("--type", dest="icmp_type", type=U8, help="type (echo request)")
    icmp.add_argument("--code", dest="icmp_code", type=U8, default=0)
    icmp.add_argument("--icmp-id", type=U16, help="identifier (random)")
    icmp.add_argument("--icmp-seq", type=U16, default=1, help="first sequence number (1)")
    data = send.add_argument_group("payload and checksums")
    data.add_argument("--data", default=None, metavar="TEXT", help="payload as text")
    data.add_argument("--data-hex", type=_hex_bytes, default=None, metavar="HEX")
    data.add_argument("--size", type=int_in(0, 65000), default=None, help="N zero bytes")
    data.add_argument("--checksum", type=U16, help="transport checksum, sent as given")
    data.add_argument("--badsum", action="store_true", help="a wrong transport checksum")
    run_group = send.add_argument_group("run")
    run_group.add_argument("-c", "--count", type=positive_int, default=1, help="packets (1)")
    run_group.add_argument("-i", "--interval", type=seconds, default=1.0, help="seconds apart")
    run_group.add_argument("-W", "--timeout", type=seconds, default=2.0, help="reply wait (2)")
    run_group.add_argument(
        "-I", "--source", metavar="ADDRESS",
        help="source address: any, by design (not checked: spoofed packets are allowed,"
        " and their replies go to that address)",
    )  # fmt: skip
    add_family_options(run_group)
    run_group.add_argument("--json", action="store_true", help="one JSON document")
    add_output_option(
        run_group, "--pcap", dest="pcap", help="record sent packets and replies", stdout_ok=False
    )
    add_broadcast_option(send)
    add_backend_option(send)
    send.set_defaults(handler=run)


@opens_outputs
def run(args: argparse.Namespace) -> int:
    _check(args)
    code: int = anyio.run(_main, args, backend=args.backend)
    return code


def _check(args: argparse.Namespace) -> None:
    """Options that do not fit the chosen protocol are usage errors, not ignored."""
    tcp_only = ("flags", "seq", "mss", "wscale", "ts")
    if args.mode != "tcp":
        given = [name for name in tcp_only if getattr(args, name) is not None]
        given += ["ack"] * (args.ack is not None) + ["urg"] * bool(args.urg)
        given += ["sackok"] * args.sackok
        if given or args.win != 64240:
            raise UsageError(f"--{(given or ['win'])[0]} is a TCP option: add --tcp")
    if args.mode == "icmp" and (args.dport is not None or args.sport is not None):
        raise UsageError("ports need --tcp or --udp")
    if args.mode != "icmp" and (args.icmp_type is not None or args.icmp_id is not None):
        raise UsageError("--type/--icmp-id are ICMP options: add --icmp")
    if sum(x is not None for x in (args.data, args.data_hex, args.size)) > 1:
        raise UsageError("give one of --data, --data-hex, --size")
    if args.badsum and args.checksum is not None:
        raise UsageError("give --badsum or --checksum, not both")


def _payload(args: argparse.Namespace) -> bytes:
    if args.data is not None:
        return bytes(args.data, "utf-8")
    if args.data_hex is not None:
        return bytes(args.data_hex)
    return bytes(args.size or 0)


def _tcp_options(args: argparse.Namespace) -> tuple[TcpOption, ...]:
    options: list[TcpOption] = []
    if args.mss is not None:
        options.append(mss(args.mss))
    if args.sackok:
        options.append(sack_permitted())
    if args.ts is not None:
        options.append(ts_option(*args.ts))
    if args.wscale is not None:
        options += [TcpOption(1), wscale_option(args.wscale)]
    return tuple(options)


def build_packet(args: argparse.Namespace, address: str, source: str, index: int) -> bytes:
    """The ``index``-th packet the options describe (ICMP sequence counts up)."""
    ip = IP(
        ttl=args.ttl,
        tos=args.tos,
        ident=args.ident,
        df=args.df,
        mf=args.mf,
        evil=args.evil,
        fragment_offset=args.frag_offset,
        options=args.ip_options,
        flow_label=args.flow_label,
        protocol=args.ip_proto,
        length=args.ip_length,
    )
    layer: TCP | UDP | ICMP
    if args.mode == "tcp":
        layer = TCP(
            dport=80 if args.dport is None else args.dport,
            sport=args.sport,
            flags=parse_flags("S") if args.flags is None else args.flags,
            seq=args.seq,
            ack=args.ack,
            window=args.win,
            urgent=args.urg,
            options=_tcp_options(args),
            checksum=args.checksum,
        )
    elif args.mode == "udp":
        layer = UDP(
            dport=33434 if args.dport is None else args.dport,
            sport=args.sport,
            checksum=args.checksum,
        )
    else:
        layer = ICMP(
            type=args.icmp_type,
            code=args.icmp_code,
            ident=args.icmp_id,
            seq=(args.icmp_seq + index) & 0xFFFF,
            checksum=args.checksum,
        )
    return craft(
        address, layer, src=source, ip=ip, payload=_payload(args), bad_checksum=args.badsum
    )


@dataclass
class _Seen:
    """A recorder that keeps what this run sent and received, as whole packets
    (IPv6 replies come from the transport with their header rebuilt)."""

    packets: list[tuple[bytes, int, bool]] = field(default_factory=list)

    def record(self, packet: bytes, timestamp_ns: int, outgoing: bool) -> None:
        self.packets.append((packet, timestamp_ns, outgoing))

    def take(self) -> list[tuple[bytes, int, bool]]:
        taken, self.packets = self.packets, []
        return taken


@dataclass
class _Exchange:
    sent: Dissection
    reply: Dissection | None = None
    source: str | None = None
    rtt_s: float | None = None
    error: str | None = None
    #: Sent, and the signal came while its reply was awaited.
    interrupted: bool = False


async def _main(args: argparse.Namespace) -> int:
    address = await resolve(args.target, args.family)
    refuse_special([address], args.broadcast)
    if args.source is not None and (":" in args.source) != (":" in address):
        raise UsageError(f"source address {args.source} is not of the target's family")
    protocols = {"icmp": ICMP_SOCKETS, "tcp": TCP_SOCKETS, "udp": UDP_SOCKETS}[args.mode]
    console = Console(highlight=False, soft_wrap=True)
    exchanges: list[_Exchange] = []
    # Any ICMP identifier may be chosen (--icmp-id): no kernel filter on identifiers.
    async with open_transport(protocols, icmp_filter=False) as transport:
        source = args.source or transport.source_for(address)
        seen = _Seen()
        transport.recorder = seen
        with record_pcap(transport, args.pcap):
            async with interruptible() as interrupt:
                for index in range(args.count):
                    if index:
                        await anyio.sleep(args.interval)
                    packet = build_packet(args, address, source, index)
                    exchange = await _exchange(transport, packet, args.timeout, seen)
                    exchanges.append(exchange)
                    if not args.json:
                        _show(console, exchange, args.timeout)
            if interrupt.happened:
                # The probe in flight when the signal came was sent: it is reported.
                gone = [p for p, _t, out in seen.take() if out]
                if gone:
                    exchanges.append(_Exchange(dissect(gone[0]), interrupted=True))
                    if not args.json:
                        _show(console, exchanges[-1], args.timeout)
                if not args.json:
                    print(f"(interrupted after {len(exchanges)} probes sent)", flush=True)
        transport.recorder = None
    if args.json:
        document = {
            **header("send"),
            "packets": [
                {
                    **render_packet.exchange_data(e.sent, e.reply, e.rtt_s, e.source),
                    "error": e.error,
                    "interrupted": e.interrupted,
                }
                for e in exchanges
            ],
            "summary": {
                "target": args.target,
                "address": address,
                "sockets": "raw",
                "interrupted": interrupt.happened,
                "probes_sent": sum(e.error is None for e in exchanges),
                "replies": sum(e.reply is not None for e in exchanges),
            },
        }
        print(json.dumps(document, indent=2))
    if interrupt.happened:
        return EXIT_INTERRUPTED
    return EXIT_OK if any(e.reply is not None for e in exchanges) else EXIT_NO_REPLY


async def _exchange(transport: Any, packet: bytes, timeout_s: float, seen: _Seen) -> _Exchange:
    seen.take()
    try:
        reply = await transport.request(packet, timeout_s=timeout_s, authenticated=False)
    except SendError as exc:
        return _Exchange(dissect(packet), error=str(exc))
    recorded = seen.take()
    sent = [(p, t) for p, t, out in recorded if out]
    exchange = _Exchange(dissect(sent[0][0] if sent else packet))
    if reply is None:
        return exchange
    whole = next((p for p, t, out in recorded if not out and t == reply.received_ns), reply.data)
    exchange.reply = dissect(whole)
    exchange.source = reply.source
    if sent:
        exchange.rtt_s = max(reply.received_ns - sent[0][1], 0) / 1e9
    return exchange


def _show(console: Console, exchange: _Exchange, timeout_s: float) -> None:
    sent_title = f"sent {exchange.sent.length} bytes: {exchange.sent.summary}"
    if exchange.error is not None:
        reply_title = f"not sent: {exchange.error}"
    elif exchange.interrupted:
        reply_title = "interrupted while awaiting the reply"
    elif exchange.reply is None:
        reply_title = f"no reply within {timeout_s:g} s"
    else:
        rtt = "" if exchange.rtt_s is None else f" time={format_rtt(exchange.rtt_s)} ms"
        reply_title = (
            f"reply from {exchange.source}{rtt}, {exchange.reply.length} bytes: "
            f"{exchange.reply.summary}"
        )
    if console.is_terminal:
        console.print(
            render_packet.dissection_tree(exchange.sent, f"[green]{escape(sent_title)}[/]")
        )
        if exchange.reply is not None:
            title = f"[bold]{escape(reply_title)}[/]"
            console.print(render_packet.dissection_tree(exchange.reply, title))
        else:
            console.print(f"[yellow]{escape(reply_title)}[/]")
        return
    lines = [sent_title, *render_packet.dissection_lines(exchange.sent), reply_title]
    if exchange.reply is not None:
        lines += render_packet.dissection_lines(exchange.reply)
    print("\n".join(lines), flush=True)

"""Instructions per probe of the bulk machines (callgrind), without sockets or a loop.

Drives a SweepMachine (an echo sweep of a /19, 3 hosts in 4 answering) and a ScanMachine
(a SYN scan of 256 hosts x 32 ports: closed, a few open, some silent) by hand, with
plain numbers for ``now``: poll, the keys registered as drive() does, stamps handed to
``sent_batch``, the answers fed as bytes through the transport's Demux (the receive
path of the wire: key from bytes, checksum, cookie, typed answer) and handed to
``receive_batch``, retired keys unregistered. The answers are built ahead, from the
keys the probes will carry (fixed secret, identifier, source port and seed).

Each kind runs under ``valgrind --tool=callgrind`` twice: whole, and stopping after its
set-up (imports, the answers built); the figure is (whole - set-up) / probes sent.
Deterministic (PYTHONHASHSEED=0; each run follows an unmeasured one, so no module is
compiled in a measured run): a rerun repeats it to a few instructions.

    .venv/bin/python bench/engine_cost.py [--probe sweep|scan|both] [--python PY ...]

``--python`` measures the same script with other checkouts' interpreters too (e.g. the
commit before a change), each on its own rawprobe, and prints their figures beside it.
Works with checkouts from before the engine (``echo_idents`` instead of ``routes``).
"""

from __future__ import annotations

import argparse
import os
import re
import struct
import subprocess
import sys
import tempfile
from typing import Any

SECRET = b"engine-cost-benchmark-secret-32b"
IDENT = 0x4242
SPORT = 40000
SOURCE = "198.18.1.2"
SWEEP_NET = "198.19.0.0/19"
SCAN_NET = "198.19.0.0/24"
SCAN_PORTS = tuple(range(1, 33))
_KIND_ECHO, _KIND_TCP = 1, 2  # (checked against rawprobe.transport.keys below)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _ipv4(source: bytes, destination: bytes, protocol: int, payload: bytes) -> bytes:
    head = struct.pack("!BBHHHBBH", 0x45, 0, 20 + len(payload), 0, 0, 60, protocol, 0)
    head += source + destination
    return head[:10] + _checksum(head).to_bytes(2, "big") + head[12:] + payload


def _echo_reply(cookies: Any, target: bytes, me: bytes, seq: int) -> tuple[Any, bytes]:
    key = (_KIND_ECHO, target, IDENT, seq)
    body = struct.pack("!BBHHH", 0, 0, 0, IDENT, seq) + cookies.cookie(key)
    body = body[:2] + _checksum(body).to_bytes(2, "big") + body[4:]
    return key, _ipv4(target, me, 1, body)


def _tcp_answer(cookies: Any, target: bytes, me: bytes, port: int, flags: int) -> tuple[Any, bytes]:
    word = SPORT << 16 | port
    isn = int.from_bytes(cookies.cookie((_KIND_TCP, target, word, 0))[:4], "big")
    segment = struct.pack("!HHIIBBHHH", port, SPORT, 7, (isn + 1) & 0xFFFFFFFF, 5 << 4, flags,
                          65535, 0, 0)  # fmt: skip
    pseudo = me + target + struct.pack("!BBH", 0, 6, len(segment))
    checksum = _checksum(target + me + pseudo[8:] + segment)
    segment = segment[:16] + checksum.to_bytes(2, "big") + segment[18:]
    return (_KIND_TCP, target, word, isn), _ipv4(target, me, 6, segment)


def _machine(kind: str, cookies: Any) -> tuple[Any, dict[Any, bytes]]:
    """The machine and the answer (bytes) to each key that is answered."""
    from rawprobe.probes.targets import TargetSpace

    me = bytes(map(int, SOURCE.split(".")))
    answers: dict[Any, bytes] = {}
    if kind == "sweep":
        from rawprobe.probes.sweep import SweepMachine, SweepOptions

        space = TargetSpace.parse([SWEEP_NET])
        for index in range(space.size):
            if index % 4:
                for seq in (0, 63):  # the first try, a canary
                    key, packet = _echo_reply(cookies, space.packed(index), me, seq)
                    answers[key] = packet
        order = iter(_permutation(space.size))
        machine = SweepMachine(space, order, SweepOptions(), source_for=lambda _a: SOURCE,
                               ident=IDENT, cookies=cookies)  # fmt: skip
        return machine, answers
    from rawprobe.probes.scan import ScanMachine, ScanOptions

    space = TargetSpace.parse([SCAN_NET])
    for index in range(space.size):
        for port in SCAN_PORTS:
            if (index + port) % 5 == 0:
                continue  # filtered: silent
            flags = 0x12 if port % 8 == 0 else 0x14  # SYN-ACK open, else RST-ACK closed
            key, packet = _tcp_answer(cookies, space.packed(index), me, port, flags)
            answers[key] = packet
    options = ScanOptions(seed=1, source_port=SPORT)
    machine = ScanMachine(space, SCAN_PORTS, cookies=cookies, source_for=lambda _a: SOURCE,
                          options=options)  # fmt: skip
    return machine, answers


def _permutation(size: int) -> Any:
    from rawprobe.probes.permute import Permutation

    return Permutation(size, 1)


def run(kind: str, setup_only: bool) -> None:
    """One run of ``kind``: prints the probes it sent."""
    from rawprobe.transport import keys
    from rawprobe.transport.base import Counters, Inbox, Sent
    from rawprobe.transport.demux import Demux

    assert (keys.KIND_ECHO, keys.KIND_TCP) == (_KIND_ECHO, _KIND_TCP)
    cookies = keys.Cookies(SECRET)
    machine, answers = _machine(kind, cookies)
    if setup_only:
        print(0)
        return
    demux = Demux(cookies, Counters())
    demux.verify_ip_header = False  # as on the wire (the kernel checked it)
    inbox = Inbox(1 << 20)
    routes = getattr(machine, "routes", None)
    if routes is None:  # (before the engine: echo identifiers)
        for ident in machine.echo_idents:
            demux.register_echo_ident(ident, inbox)
        covered = {(_KIND_ECHO, ident) for ident in machine.echo_idents}
    else:
        for route_kind, value in routes:
            demux.register_route(route_kind, value, inbox)
        covered = set(routes)
    now = 1000.0
    sent = 0
    while not machine.done:
        batch = machine.poll(now)
        if batch:
            keys_sent = []
            stamps = []
            stamp = Sent(int(now * 1e9), now)  # (one a batch; its fields vary by version)
            for outgoing in batch:
                key = outgoing.key
                if (key[0], key[2]) not in covered:
                    demux.register(key, inbox, authenticated=outgoing.authenticated)
                for extra in outgoing.extra_keys:
                    demux.register(extra, inbox)
                keys_sent.append(key)
                stamps.append(stamp)
            machine.sent_batch(keys_sent, stamps, now)
            sent += len(batch)
            arrival = now + 0.002
            received_ns = int(arrival * 1e9)
            for outgoing in batch:
                packet = answers.get(outgoing.key)
                if packet is not None:
                    demux.dispatch_v4(packet, received_ns, arrival)
            replies = inbox.take_all()
            if replies:
                machine.receive_batch(replies, arrival)
        machine.take_events()
        for key in machine.take_retired():
            demux.unregister(key)
        now = max(now + 0.003, min(machine.next_deadline(), now + 1.0))
    machine.result(now)
    print(sent)


def callgrind(python: str, kind: str, setup_only: bool) -> tuple[int, int]:
    """(instructions, probes sent) of one run under callgrind."""
    with tempfile.TemporaryDirectory() as folder:
        out = os.path.join(folder, "callgrind.out")
        argv = [python, __file__, "--run", kind] + (["--setup-only"] if setup_only else [])
        subprocess.run(argv[:4], capture_output=True, check=True)  # compiles and caches
        done = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *argv],
            capture_output=True, text=True, check=True,
            env={**os.environ, "PYTHONHASHSEED": "0"},
        )  # fmt: skip
        with open(out) as dump:
            found = re.search(r"^(?:summary|totals): (\d+)", dump.read(), re.M)
        assert found is not None, "no totals in callgrind's output"
        return int(found.group(1)), int(done.stdout.split()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--probe", choices=("sweep", "scan", "both"), default="both")
    parser.add_argument("--python", action="append", default=[], help="another checkout's")
    parser.add_argument("--run", choices=("sweep", "scan"), help=argparse.SUPPRESS)
    parser.add_argument("--setup-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:
        run(args.run, args.setup_only)
        return
    kinds = ("sweep", "scan") if args.probe == "both" else (args.probe,)
    pythons = [sys.executable, *args.python]
    for kind in kinds:
        figures = []
        for python in pythons:
            whole, probes = callgrind(python, kind, False)
            setup, _ = callgrind(python, kind, True)
            figures.append((whole - setup) / probes)
            print(f"{kind:5} {python}: {probes} probes, {figures[-1]:,.0f} instructions/probe")
        for python, figure in zip(pythons[1:], figures[1:], strict=True):
            print(f"{kind:5} this build against {python}: {figures[0] / figure - 1:+.1%}")


if __name__ == "__main__":
    main()

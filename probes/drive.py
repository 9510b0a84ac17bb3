"""The one loop that connects a probe machine to a transport."""

from __future__ import annotations

from collections.abc import Callable

import anyio

from rawprobe.probes.machine import Machine
from rawprobe.transport.base import Reply, Transport
from rawprobe.transport.keys import MatchKey

EventCallback = Callable[[object], None]


async def drive(
    machine: Machine,
    transport: Transport,
    *,
    on_event: EventCallback | None = None,
    inbox_size: int = 1024,
) -> None:
    """Run ``machine`` to completion over ``transport``.

    Each key is registered before its packet is sent (a reply can beat the send's
    return) and unregistered when the machine is done or the caller cancels.
    Events are handed to ``on_event`` as soon as the machine produces them.
    """
    inbox_in, inbox_out = anyio.create_memory_object_stream[Reply](inbox_size)
    keys: set[MatchKey] = set()

    def flush() -> None:
        events = machine.take_events()
        if on_event is not None:
            for event in events:
                on_event(event)
        for key in machine.take_retired():
            transport.unregister(key)
            keys.discard(key)

    def drain() -> None:
        while True:
            try:
                reply = inbox_out.receive_nowait()
            except anyio.WouldBlock:
                return
            machine.receive(reply, anyio.current_time())

    try:
        with inbox_in, inbox_out:
            while True:
                drain()  # replies that arrived first count before anything expires
                for outgoing in machine.poll(anyio.current_time()):
                    transport.register(outgoing.key, inbox_in)
                    keys.add(outgoing.key)
                    for key in outgoing.extra_keys:
                        transport.register(key, inbox_in)
                        keys.add(key)
                    sent = await transport.send(outgoing.packet)
                    machine.sent(outgoing.key, sent, anyio.current_time())
                flush()
                if machine.done:
                    return
                wait_s = machine.next_deadline() - anyio.current_time()
                if wait_s > 0:
                    with anyio.move_on_after(wait_s):
                        reply = await inbox_out.receive()
                        machine.receive(reply, anyio.current_time())
                    drain()
                    flush()
    finally:
        for key in keys:
            transport.unregister(key)

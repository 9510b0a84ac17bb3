"""The one loop that connects a probe machine to a transport."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import anyio.lowlevel

from rawprobe.probes.machine import Machine
from rawprobe.transport.base import Inbox, Transport
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

    Each key (or the machine's echo identifiers) is registered before its packet is
    sent (a reply can beat the send's return) and unregistered when the machine is
    done or the caller cancels.
    Events are handed to ``on_event`` as soon as the machine produces them.
    """
    inbox = Inbox(inbox_size)
    keys: set[MatchKey] = set()
    idents = machine.echo_idents
    for ident in idents:
        transport.register_echo_ident(ident, inbox)

    def flush() -> None:
        events = machine.take_events()
        if on_event is not None:
            for event in events:
                on_event(event)
        for key in machine.take_retired():
            transport.unregister(key)
            keys.discard(key)

    def drain() -> None:
        replies = inbox.take_all()
        if replies:
            machine.receive_batch(replies, anyio.current_time())

    try:
        while True:
            transport.read_pending()  # replies that arrived count before anything expires
            drain()
            batch = machine.poll(anyio.current_time())
            if batch:
                if not idents:  # (a machine with echo identifiers is routed as a whole)
                    for outgoing in batch:
                        if outgoing.authenticated:
                            transport.register(outgoing.key, inbox)
                        else:
                            transport.register(outgoing.key, inbox, authenticated=False)
                        keys.add(outgoing.key)
                        for key in outgoing.extra_keys:
                            transport.register(key, inbox)
                            keys.add(key)
                stamps = await transport.send_batch([o.packet for o in batch])
                machine.sent_batch([o.key for o in batch], stamps, anyio.current_time())
            flush()
            if machine.done:
                return
            wait_s = machine.next_deadline() - anyio.current_time()
            if wait_s <= 0:
                await anyio.lowlevel.checkpoint()  # let the readers run between batches
            else:
                with anyio.move_on_after(wait_s):
                    await inbox.wait()
                drain()
                flush()
    finally:
        inbox.closed = True
        for key in keys:
            transport.unregister(key)
        for ident in idents:
            transport.unregister_echo_ident(ident)

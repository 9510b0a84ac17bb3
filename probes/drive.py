"""The one loop that connects a probe machine to a transport."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import anyio.lowlevel

from rawprobe.probes.machine import Machine, Outgoing
from rawprobe.transport.base import Inbox, Sent, Transport
from rawprobe.transport.keys import KIND_ECHO, MatchKey

EventCallback = Callable[[object], None]

#: Target wall time of one send slice (see ``drive``).
_SLICE_S = 0.01


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
    Events are handed to ``on_event`` as soon as the machine produces them: a batch
    is sent in slices of about ``_SLICE_S`` each (pacing makes a 256-packet batch take
    2.5 s at 100 packets/s), and the replies that arrived meanwhile are handed to the
    machine between slices, so its decisions stream out while it sends.

    When the caller cancels (Ctrl-C), the replies already read or waiting in the
    kernel are handed to the machine before the cancellation goes on, so its partial
    result counts every answer that arrived before the signal.
    """
    inbox = Inbox(inbox_size)
    keys: set[MatchKey] = set()
    idents = machine.echo_idents
    for ident in idents:
        transport.register_route(KIND_ECHO, ident, inbox)

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

    def register_keys(part: list[Outgoing]) -> None:
        if not idents:  # (a machine with echo identifiers is routed as a whole)
            for outgoing in part:
                if outgoing.authenticated:
                    transport.register(outgoing.key, inbox)
                else:
                    transport.register(outgoing.key, inbox, authenticated=False)
                keys.add(outgoing.key)
                for key in outgoing.extra_keys:
                    transport.register(key, inbox)
                    keys.add(key)

    slice_size = 8  # adapted so that one slice takes about _SLICE_S
    try:
        while True:
            transport.read_pending()  # replies that arrived count before anything expires
            drain()
            batch = machine.poll(anyio.current_time())
            start = 0
            while start < len(batch):
                part = (
                    batch[start : start + slice_size] if start or len(batch) > slice_size else batch
                )
                register_keys(part)  # before the send: a reply can beat its return
                began = anyio.current_time()
                stamps: list[Sent] = []
                try:
                    await transport.send_batch([o.packet for o in part], stamps)
                finally:  # cancelled mid-slice: the packets that left still count
                    now = anyio.current_time()
                    machine.sent_batch([o.key for o in part[: len(stamps)]], stamps, now)
                start += len(part)
                took = now - began
                if took > 2 * _SLICE_S and slice_size > 1:
                    slice_size //= 2
                elif took < _SLICE_S / 2 and slice_size < 4096:
                    slice_size *= 2
                if start < len(batch):  # decisions stream out while the batch is sent
                    drain()
                    flush()
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
    except anyio.get_cancelled_exc_class():
        # Interrupted: what already arrived is part of the partial result.
        transport.read_pending()
        drain()
        flush()
        raise
    finally:
        inbox.closed = True
        for key in keys:
            transport.unregister(key)
        for ident in idents:
            transport.unregister_route(KIND_ECHO, ident)

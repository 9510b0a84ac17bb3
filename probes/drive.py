"""The one loop that connects a probe machine to a transport."""

from __future__ import annotations

from collections.abc import Callable

import anyio
import anyio.lowlevel

from rawprobe.probes.machine import EventT, Machine, Outgoing
from rawprobe.transport.base import Inbox, Sent, Transport
from rawprobe.transport.keys import MatchKey

#: An ``on_event`` taking any event (a machine's events are typed: see ``drive``).
EventCallback = Callable[[object], None]

#: Target wall time of one send slice (see ``drive``).
_SLICE_S = 0.01
#: Replies ``drive`` queues for a machine by default (a bulk probe asks for more).
INBOX_SIZE = 1024


async def drive(
    machine: Machine[EventT],
    transport: Transport,
    *,
    on_event: Callable[[EventT], None] | None = None,
    inbox_size: int = INBOX_SIZE,
) -> None:
    """Run ``machine`` to completion over ``transport``.

    The machine's ``routes``, and each key of an Outgoing that no route covers, are
    registered before its packet is sent (a reply can beat the send's return) and
    unregistered when the machine retires the key, is done, or the caller cancels.
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
    routes = machine.routes
    covered: dict[int, set[int]] = {}  # key kind -> key[2] values routed as a whole
    for kind, value in routes:
        covered.setdefault(kind, set()).add(value)
        transport.register_route(kind, value, inbox)

    def flush() -> None:
        events = machine.take_events()
        if on_event is not None:
            for event in events:
                on_event(event)
        for key in machine.take_retired():
            transport.unregister(key)  # (a routed key was never registered: a no-op)
            keys.discard(key)

    def drain() -> None:
        replies = inbox.take_all()
        if replies:
            machine.receive_batch(replies, anyio.current_time())

    def register_keys(part: list[Outgoing]) -> None:
        """The keys no declared route covers (one dict and one set lookup a key)."""
        none: frozenset[int] = frozenset()
        get = covered.get
        for key, _packet, extra_keys, authenticated in part:
            if key[2] not in get(key[0], none):
                transport.register(key, inbox, authenticated=authenticated)
                keys.add(key)
            if extra_keys:
                for extra in extra_keys:
                    if extra[2] not in get(extra[0], none):
                        transport.register(extra, inbox)
                        keys.add(extra)

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
        for kind, value in routes:
            transport.unregister_route(kind, value)

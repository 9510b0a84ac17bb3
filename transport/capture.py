"""Recording a transport's exchange to a pcap file (``--pcap FILE``).

A transport calls ``transport.recorder.record(packet, timestamp_ns, outgoing)`` for
every packet it sends (stamped right at ``sendto``) and every reply it delivers
(the kernel's receive stamp). ``record_pcap`` attaches a ``PcapRecorder`` for the
duration of a block, in one line::

    async with open_transport(...) as transport:
        with record_pcap(transport, args.pcap):   # args.pcap None: records nothing
            ...

Writes go through a buffered file from the event-loop thread: a record is a few
dozen bytes, and the buffer is flushed when the block ends.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO

from rawprobe.transport.base import Recorder
from rawprobe.transport.exchange import TransportBase
from rawprobe.transport.outfiles import open_output
from rawprobe.transport.wire.pcap import LINKTYPE_RAW, PcapWriter

__all__ = ["PcapRecorder", "TeeRecorder", "record_pcap"]


class PcapRecorder:
    """A recorder that writes each packet as one pcap record (LINKTYPE_RAW, ns)."""

    def __init__(self, stream: BinaryIO, *, owns_stream: bool = False) -> None:
        self._stream = stream
        self._owns_stream = owns_stream
        self._writer = PcapWriter(stream, linktype=LINKTYPE_RAW)
        self.sent = 0
        self.received = 0

    @classmethod
    def create(cls, path: str | os.PathLike[str]) -> PcapRecorder:
        """A recorder writing a new file at ``path`` (UsageError if it cannot, or if
        ``path`` is a symbolic link: transport/outfiles.py)."""
        return cls(open_output(path, option="--pcap"), owns_stream=True)

    def record(self, packet: bytes, timestamp_ns: int, outgoing: bool) -> None:
        self._writer.write(timestamp_ns, packet)
        if outgoing:
            self.sent += 1
        else:
            self.received += 1

    @property
    def records(self) -> int:
        return self._writer.records

    def close(self) -> None:
        if self._owns_stream:
            self._stream.close()
        else:
            self._stream.flush()


class TeeRecorder:
    """Hands every packet to several recorders, in order."""

    def __init__(self, *recorders: Recorder) -> None:
        self.recorders = recorders

    def record(self, packet: bytes, timestamp_ns: int, outgoing: bool) -> None:
        for recorder in self.recorders:
            recorder.record(packet, timestamp_ns, outgoing)


@contextmanager
def record_pcap(
    transport: TransportBase, path: str | os.PathLike[str] | BinaryIO | None
) -> Iterator[PcapRecorder | None]:
    """Record ``transport``'s packets to a pcap file at ``path`` during the block.

    ``path`` None records nothing (so a CLI passes its option straight through); a
    stream already open (the CLI opens its output files before probing) is written and
    flushed, not closed. A recorder already attached keeps receiving packets too. The
    file is complete when the block ends, however it ends.
    """
    if path is None:
        yield None
        return
    if isinstance(path, (str, os.PathLike)):
        recorder = PcapRecorder.create(path)
    else:
        recorder = PcapRecorder(path)
    previous = transport.recorder
    transport.recorder = recorder if previous is None else TeeRecorder(previous, recorder)
    try:
        yield recorder
    finally:
        transport.recorder = previous
        recorder.close()

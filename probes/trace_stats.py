"""mtr-style statistics over repeated traces of one target (Loss%, Snt, Last, Avg, Best,
Wrst, StDev per hop). Pure: fed TraceResults, gives HopStats rows."""

from __future__ import annotations

import math

from rawprobe.probes.models import HopStats, TraceResult

__all__ = ["LiveTrace"]


class LiveTrace:
    """Per-hop statistics over repeated traces of one target (mtr's Loss%, Snt, Last,
    Avg, Best, Wrst, StDev). Pure: feed it each round's TraceResult."""

    def __init__(self, target: str, address: str) -> None:
        self.target = target
        self.address = address
        self.rounds = 0
        self._sent: dict[int, int] = {}
        self._rtts: dict[int, list[float]] = {}
        self._last: dict[int, float] = {}
        self._addresses: dict[int, dict[str, None]] = {}
        self._annotation: dict[int, str] = {}
        self._dest_ttl: int | None = None

    def add(self, result: TraceResult) -> None:
        """Count one round: one probe per query per hop up to its destination."""
        self.rounds += 1
        if result.destination_ttl is not None:
            self._dest_ttl = result.destination_ttl
        for hop in result.hops:
            self._sent[hop.ttl] = self._sent.get(hop.ttl, 0) + len(hop.probes)
            for response in hop.responses:
                self._rtts.setdefault(hop.ttl, []).append(response.rtt_s)
                self._last[hop.ttl] = response.rtt_s
                self._addresses.setdefault(hop.ttl, {})[response.address] = None
                if response.annotation:
                    self._annotation[hop.ttl] = response.annotation

    def rows(self) -> list[HopStats]:
        """One row per TTL up to the latest destination hop (or the last one probed)."""
        if not self._sent:
            return []
        last = self._dest_ttl if self._dest_ttl is not None else max(self._sent)
        rows = []
        for ttl in sorted(t for t in self._sent if t <= last):
            rtts = self._rtts.get(ttl, [])
            mean = sum(rtts) / len(rtts) if rtts else None
            stdev = None
            if mean is not None:
                stdev = math.sqrt(sum((r - mean) ** 2 for r in rtts) / len(rtts))
            rows.append(
                HopStats(
                    ttl=ttl,
                    addresses=tuple(self._addresses.get(ttl, {})),
                    sent=self._sent[ttl],
                    received=len(rtts),
                    last_s=self._last.get(ttl),
                    avg_s=mean,
                    best_s=min(rtts) if rtts else None,
                    worst_s=max(rtts) if rtts else None,
                    stdev_s=stdev,
                    annotation=self._annotation.get(ttl),
                )
            )
        return rows

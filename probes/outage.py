"""Proof of life for silence verdicts: the one outage rule of the bulk probes.

A scan calls a port *filtered* and a sweep calls a host *down* when every try went
unanswered. That is only true if the network was delivering while the tries were out:
during an outage (a link down, a DROP rule for a second or two) every probe is
silent, and a plain retry count turns live hosts and open ports into wrong answers.

The rule (one place, used by ``probes/scan.py`` and ``probes/sweep.py``): a silence
verdict is *pending* until an answer proves the network delivered a probe sent at or
after that verdict's last try. Where answers keep coming (the no-loss path) this costs
nothing but a queue: each answer releases what went before it. Where answers are
rare (a /16 with a few live hosts), the guard sends *canaries* to the last few
targets that answered (nmap's idea: its per-host ping probes to a port known to
answer): one round once the oldest pending verdict has waited a further timeout
without proof. A canary answered is the proof; a round without any answer is an outage.

In an outage the machine sends nothing new and holds every probe that expires; the
guard keeps sending canary rounds. The first answer ends the outage and every held
probe is probed again from its first try, so a short outage changes no result. When
the silence lasts longer than ``budget_s`` the machine gives up: the run ends with
what was decided, ``complete`` False and ``incomplete_reason`` saying why, and no
held probe is reported as filtered or down.

When nothing has answered yet there is no canary and nothing to compare with: a space
where nobody answers and an outage from the first packet look alike, and verdicts are
given at once, as before.

Pure: the machines pass ``now`` in; items and canary targets are the machine's own.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

#: Targets that answered last, used as canaries.
CANARIES = 4
#: The default silence (seconds without any answer) after which a run gives up.
DEFAULT_BUDGET_S = 5.0
#: A stretch of sends without any answered one at least this long (or three
#: timeouts, or four times the pace of the machine's batches: at 50 packets/s a batch
#: of 16 lasts 0.32 s) is dark: the probes sent in it are probed again, not decided.
_DARK_S = 0.5
#: How long answered sends are remembered (longer than any try takes to be held).
_HISTORY_S = 8.0

#: Canary sends remembered per key (the rounds that may still be answered).
_CANARY_SENDS = 2

ItemT = TypeVar("ItemT", bound=Hashable)  # a pending item (a probe's key)
TargetT = TypeVar("TargetT", bound=Hashable)  # a canary target
KeyT = TypeVar("KeyT", bound=Hashable)  # a canary's match key


class CanarySends(Generic[KeyT]):
    """The send stamps of the canaries in flight, per match key: which send an
    answer to a canary proves delivered.

    A target's canary has the same key in every round, so an answer cannot name the
    round it answers. It is taken as the answer to the oldest send still awaited
    (what it can prove at most), and an answer with no send recorded yet (a round's
    canary built but not yet sent, the previous round's answer arriving meanwhile:
    the drive hands replies to the machine between the slices of a batch) is still
    an answer: the network is alive, even though no send is proven.
    """

    __slots__ = ("_sends",)

    def __init__(self) -> None:
        self._sends: dict[KeyT, deque[float]] = {}

    def __bool__(self) -> bool:
        return bool(self._sends)

    def __contains__(self, key: object) -> bool:
        return key in self._sends

    def __iter__(self) -> Iterator[KeyT]:
        return iter(self._sends)

    def expect(self, key: KeyT) -> None:
        """A canary to ``key`` is about to be sent (its earlier sends stay awaited)."""
        if key not in self._sends:
            self._sends[key] = deque(maxlen=_CANARY_SENDS)

    def left(self, key: KeyT, sent_s: float) -> bool:
        """The canary to ``key`` left at ``sent_s`` (send-stamp clock); False: not a
        canary key."""
        sends = self._sends.get(key)
        if sends is None:
            return False
        sends.append(sent_s)
        return True

    def answer(self, key: KeyT) -> float | None:
        """The send an answer to ``key`` proves (-inf: none recorded, but it is an
        answer), or None when ``key`` is not a canary's."""
        sends = self._sends.get(key)
        if sends is None:
            return None
        return sends.popleft() if sends else -math.inf

    def drop(self, key: KeyT) -> None:
        """``key`` is no longer a canary (its target left the ring)."""
        del self._sends[key]


class OutageGuard(Generic[ItemT, TargetT]):
    """Pending silence verdicts, canary rounds and the outage clock of one machine.

    The machine calls ``answered`` for every answer (``sent_s``: when the answered
    probe left), ``hold`` for a verdict of silence or a probe expired in an outage,
    and ``poll`` once per poll; ``poll`` returns what to do: verdicts released, probes
    to send again (an outage ended), canary targets to probe.
    """

    __slots__ = (
        "alive_s", "budget_s", "ended", "gave_up", "last_answer_s", "last_round_s",
        "outage_s", "outage_total_s", "outages", "pending", "recent", "round_fresh",
        "round_left_s", "round_s", "send_gap_s", "sending_s", "sends",
    )  # fmt: skip

    def __init__(self, budget_s: float = DEFAULT_BUDGET_S) -> None:
        self.budget_s = budget_s
        # The latest send an answer proves delivered, on the send-stamp clock (the
        # transport's per-packet Sent.monotonic_s: a batch's event-loop time is too
        # coarse to tell the packets before an outage from those in it).
        self.alive_s = -math.inf
        # Answered sends of the last few seconds, increasing, at most one per ms: the
        # latest one before a given try is what tells an outage's edge from a gap.
        self.sends: deque[float] = deque()
        self.last_answer_s = -math.inf
        self.recent: deque[TargetT] = deque(maxlen=CANARIES)
        # (last try sent and the latest answered send before it, on the send-stamp
        # clock; held at, on the event-loop clock; item)
        self.pending: deque[tuple[float, float, float, ItemT]] = deque()
        self.round_s: float | None = None  # when the canary round in flight left
        self.last_round_s = -math.inf  # when the last round left
        # When the round built last left (math.nan: not yet), and whether it is fresh
        # (not the repeat of an unanswered round): see ``round_left``.
        self.round_left_s = -math.inf
        self.round_fresh = False
        self.outage_s: float | None = None  # when the current outage was declared
        self.outages = 0
        self.outage_total_s = 0.0
        self.gave_up: str | None = None
        self.ended = False
        # When the machine last sent a batch, and the smoothed time between its batches
        # (event-loop clock): at a low rate, answered sends are far apart without any
        # outage, and "dark" must be judged against that pace.
        self.sending_s = -math.inf
        self.send_gap_s = 0.0

    @property
    def in_outage(self) -> bool:
        return self.outage_s is not None

    def answered(self, sent_s: float, now: float, target: TargetT | None) -> None:
        """An answer to a probe sent at ``sent_s`` (send-stamp clock; -inf when the
        answer may be to an earlier try: no proof, but the network is alive), at
        ``now``; ``target`` may serve as a canary (None for a canary's own answer)."""
        if sent_s > self.alive_s:
            sends = self.sends
            if not sends or sent_s > sends[-1] + 1e-3:
                sends.append(sent_s)
                while sends[0] < sent_s - _HISTORY_S:
                    sends.popleft()
            self.alive_s = sent_s
        self.last_answer_s = now
        if target is not None:
            self.recent.append(target)
        if self.outage_s is not None:
            self.outage_total_s += now - self.outage_s
            self.outage_s = None
            self.ended = True

    def sending(self, now: float) -> None:
        """The machine is sending a batch at ``now``: the pace of its batches (outside
        outages) widens what counts as a dark stretch (see ``poll``)."""
        gap = now - self.sending_s
        self.sending_s = now
        if self.outage_s is None and gap < self.budget_s:
            self.send_gap_s += (gap - self.send_gap_s) / 8

    def hold(self, last_sent_s: float, now: float, item: ItemT) -> None:
        """A verdict of silence (or, in an outage, any expired probe) to keep until
        proof of life (or to probe again once the outage ends); ``last_sent_s`` on
        the send-stamp clock, ``now`` on the event loop's."""
        before_s = self.alive_s
        if before_s > last_sent_s:  # later sends answered: find the one before it
            sends = self.sends
            at = bisect.bisect_right(sends, last_sent_s)
            before_s = sends[at - 1] if at else -math.inf
        self.pending.append((last_sent_s, before_s, now, item))

    def poll(self, now: float, timeout_s: float) -> tuple[list[ItemT], list[ItemT], bool]:
        """(verdicts to give now, probes to send again, send a canary round?)."""
        pending = self.pending
        if self.ended:  # an outage ended: everything held is probed again
            self.ended = False
            self.round_s = None
            held = [entry[3] for entry in pending]
            pending.clear()
            return [], held, False
        if not pending:
            self.round_s = None
            return [], [], False
        if not self.recent:  # nothing ever answered: nothing can prove anything
            everything = [entry[3] for entry in pending]
            pending.clear()
            return everything, [], False
        given: list[ItemT] = []
        again: list[ItemT] = []
        if self.outage_s is None:
            alive_s, sends = self.alive_s, self.sends
            dark_s = max(_DARK_S, 3 * timeout_s, 4 * self.send_gap_s)
            while pending and pending[0][0] <= alive_s:
                sent_s, before_s, _held, item = pending.popleft()
                # Answered sends on both sides of the last try: close together, the
                # network was up around it (a verdict); far apart, it went out in the
                # dark (an outage too short to be declared): probe it again. The one
                # after it is the first answered send since, not the latest: a try
                # expired late (behind a long batch) has many answered sends after it.
                at = bisect.bisect_left(sends, sent_s)
                after_s = sends[at] if at < len(sends) else alive_s
                (given if after_s - before_s <= dark_s else again).append(item)
            if not pending:
                self.round_s = None
                return given, again, False
        if self.outage_s is not None and now - self.last_answer_s > self.budget_s:
            self.gave_up = (
                f"outage: no answer for {now - self.last_answer_s:.1f} s"
                f" (limit {self.budget_s:g} s)"
            )
            return given, again, False
        canary_wait = max(2 * timeout_s, 0.05)
        if self.round_s is not None:
            if now < self.round_s + canary_wait:
                return given, again, False
            if self.last_answer_s < self.round_s and self.outage_s is None:
                self.outage_s = self.round_s  # a whole round unanswered: an outage
                self.outages += 1
            if now < self.last_round_s + canary_wait:
                return given, again, False
            return given, again, True  # the round failed (or is stale): another one
        if now >= pending[0][2] + timeout_s:  # a timeout after it expired, no proof
            return given, again, True
        return given, again, False

    def quiet(self, now: float, timeout_s: float) -> bool:
        """Send a canary round along with the probes going out now? Yes when nothing
        answered for a timeout (at most one round per timeout): the tries sent in a
        quiet stretch then have an answered send beside them, or prove it dark."""
        if not self.recent or self.outage_s is not None or now < self.last_answer_s + timeout_s:
            return False
        return now >= self.last_round_s + timeout_s

    def sent_round(self, now: float) -> None:
        """The machine sent a canary round (to ``recent``) at ``now``; an unanswered
        round already out keeps its time (it is what declares an outage)."""
        self.last_round_s = now
        self.round_fresh = self.round_s is None or self.last_answer_s >= self.round_s
        if self.round_fresh:
            self.round_s = now
        self.round_left_s = math.nan

    def round_left(self, now: float) -> None:
        """The round built last left at ``now`` (its first canary's send): it is timed
        from then. A canary goes out behind the probes of its batch, and a batch of
        256 at 1,000 packets/s takes 0.26 s: longer than a round waits for its answer."""
        if not math.isnan(self.round_left_s):
            return  # (its first canary already left)
        self.round_left_s = self.last_round_s = now
        if self.round_fresh:
            self.round_s = now

    def next_deadline(self, timeout_s: float) -> float:
        """When ``poll`` has something to do (math.inf: only on an answer)."""
        if self.ended:
            return -math.inf
        pending = self.pending
        if not pending:
            return math.inf
        if not self.recent or pending[0][0] <= self.alive_s:
            return -math.inf
        canary_wait = max(2 * timeout_s, 0.05)
        if self.round_s is not None:
            deadline = max(self.round_s, self.last_round_s) + canary_wait
        else:
            deadline = pending[0][2] + timeout_s
        if self.outage_s is not None:
            deadline = min(deadline, self.last_answer_s + self.budget_s + 1e-3)
        return deadline

"""The one user of ``rich.Live``: redrawn by the event-loop task, never by a thread.

``rich.Live(auto_refresh=False)`` would otherwise start a refresh thread that reads
state the event loop is mutating. Callers mark the view dirty when their state
changes; ``refresh_soon`` redraws at most every ``min_interval_s`` and ``ticker``
(a task started in the caller's task group) catches the last changes of a burst.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from types import TracebackType

import anyio
from rich.console import Console, RenderableType
from rich.live import Live


class LiveView:
    def __init__(
        self,
        console: Console,
        render: Callable[[], RenderableType],
        *,
        min_interval_s: float = 0.1,
    ) -> None:
        self._render = render
        self._live = Live(render(), console=console, auto_refresh=False, transient=False)
        self._min_interval_s = min_interval_s
        self._last_s = 0.0
        self._dirty = False

    def __enter__(self) -> LiveView:
        self._live.start(refresh=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.refresh()
        self._live.stop()

    def refresh(self) -> None:
        self._live.update(self._render(), refresh=True)
        self._last_s = time.monotonic()
        self._dirty = False

    def refresh_soon(self) -> None:
        """Note a change; redraw now unless the last redraw was very recent."""
        self._dirty = True
        if time.monotonic() - self._last_s >= self._min_interval_s:
            self.refresh()

    async def ticker(self) -> None:
        """Redraw pending changes every ``min_interval_s`` until cancelled."""
        while True:
            await anyio.sleep(self._min_interval_s)
            if self._dirty:
                self.refresh()

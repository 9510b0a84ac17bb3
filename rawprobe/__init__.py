"""rawprobe: async raw-socket network probes for asyncio and trio.

The front door: ``await rawprobe.ping("198.19.0.5", count=3)`` opens a transport for
the call; pass ``transport=`` (from ``rawprobe.open_transport()``) to share one set of
sockets between many concurrent probes. The names below live in ``rawprobe.api`` and
are loaded on first use, so ``import rawprobe.errors`` (or a CLI subcommand) does not
pay for every probe's import.

One list names the public API: ``rawprobe.api.__all__``. Type checkers read it through
the star import below (every public name, explicitly: no module ``__getattr__`` for
them, so ``rawprobe.pign`` is an error); at run time the names, ``__all__`` among them,
load on first use. The errors are cheap and load at once.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from rawprobe.errors import *

__version__ = "0.1.0"  # the package's version (pyproject.toml reads it from here)

if TYPE_CHECKING:
    from rawprobe.api import *

if not TYPE_CHECKING:

    def __getattr__(name: str) -> object:
        """Load the public API on first use (PEP 562); hidden from type checkers,
        which see the imports above instead."""
        if name == "__all__" or not name.startswith("_"):
            api = import_module("rawprobe.api")  # not ``from rawprobe import``: it asks us
            if name in (*api.__all__, "__all__"):
                value = getattr(api, name)
                globals()[name] = value
                return value
        raise AttributeError(f"module 'rawprobe' has no attribute {name!r}")

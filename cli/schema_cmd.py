"""``rawprobe schema [COMMAND]``: print the JSON Schema of rawprobe's output.

The schemas are files shipped in the package (``rawprobe/cli/schemas/``, built by
``cli/output_schema.py``): this command prints one as it is, so nothing here imports a
JSON Schema library. Without COMMAND, the bundle of every command's schema.
"""

from __future__ import annotations

import argparse
import sys
from importlib.resources import files
from importlib.resources.abc import Traversable
from typing import Any

_BUNDLE = "rawprobe"
_SUFFIX = ".schema.json"


def _schemas() -> Traversable:
    return files("rawprobe.cli") / "schemas"


def _commands() -> list[str]:
    names = (entry.name.removesuffix(_SUFFIX) for entry in _schemas().iterdir())
    return sorted(name for name in names if name != _BUNDLE)


def register(commands: Any) -> None:
    schema = commands.add_parser(
        "schema",
        help="print the JSON Schema of the commands' --json/--ndjson output",
        description="Print the JSON Schema (draft 2020-12) of rawprobe's JSON output: "
        "every command's (a bundle), or one command's. A document or any NDJSON line "
        "of that command validates against it.",
    )
    schema.add_argument("command_name", nargs="?", choices=_commands(), metavar="COMMAND",
                        help="one command: " + ", ".join(_commands()))  # fmt: skip
    schema.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    name = args.command_name or _BUNDLE
    sys.stdout.write((_schemas() / f"{name}{_SUFFIX}").read_text(encoding="utf-8"))
    return 0

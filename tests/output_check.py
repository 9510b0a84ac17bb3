"""Every JSON document and NDJSON line a test reads is checked against the schema the
package ships (``rawprobe schema``): tests parse rawprobe's output with these helpers
instead of ``json.loads``, so each place that produces an output validates it.

Each output is checked against its own definition (the document, or the event its
``event`` names), which gives sharper messages than the file's ``oneOf``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable
from importlib.resources import files
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match


@functools.cache
def shipped(command: str) -> dict[str, Any]:
    """The schema file of ``command`` (or ``rawprobe``, the bundle), as shipped."""
    text = (files("rawprobe.cli") / "schemas" / f"{command}.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


@functools.cache
def _validator(command: str, definition: str) -> Draft202012Validator:
    whole = shipped(command)
    assert definition in whole["$defs"], f"{command} has no {definition} in its schema"
    one = {key: value for key, value in whole.items() if key != "oneOf"}
    return Draft202012Validator({**one, "$ref": f"#/$defs/{definition}"})


def check(data: Any, command: str | None = None) -> dict[str, Any]:
    """Validate one parsed document or NDJSON line; return it."""
    assert isinstance(data, dict), data
    assert data.get("schema") == "rawprobe/2", data.get("schema")
    name = data.get("command")
    assert command is None or name == command, (name, command)
    assert isinstance(name, str), data
    definition = "document" if "event" not in data else f"event_{data['event']}"
    part(data, name, definition)
    # And the file as a whole (what `rawprobe schema COMMAND` users validate with).
    Draft202012Validator(shipped(name)).validate(data)
    return data


def part(data: Any, command: str, definition: str) -> Any:
    """Validate ``data`` against one definition of a command's schema (``dissection``
    of sniff's, ``trace_hop`` of trace's...); return it."""
    error = best_match(_validator(command, definition).iter_errors(data))
    if error is not None:
        where = "/".join(str(step) for step in error.absolute_path)
        raise AssertionError(f"{command} {definition} at /{where}: {error.message}")
    return data


def document(text: str, command: str | None = None) -> dict[str, Any]:
    """A ``--json`` document from its text, validated."""
    data = check(json.loads(text), command)
    assert "event" not in data, data
    return data


def events(
    lines: Iterable[str], command: str | None = None, *, summary: bool = True
) -> list[dict[str, Any]]:
    """The events of an NDJSON stream, each line validated; with ``summary`` the stream
    must end with its one ``summary`` event (a whole run's stream always does)."""
    parsed = [check(json.loads(line), command) for line in lines if line.strip()]
    ends = [i for i, e in enumerate(parsed) if e["event"] == "summary"]
    if summary:
        assert ends == [len(parsed) - 1], f"summary events at {ends} of {len(parsed)}"
    return parsed

"""The published JSON Schema (``rawprobe schema``): the shipped files are what
cli/output_schema.py builds, they are valid draft 2020-12 schemas whose objects list
every field, and every command with JSON output has one. The outputs themselves are
validated where the tests produce them (tests/output_check.py); here, the sweep's
``--all`` over a simulated network."""

from __future__ import annotations

import json
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

import output_check
import pytest
from jsonschema import Draft202012Validator

from rawprobe.cli import app, output_schema
from rawprobe.cli.app import main
from rawprobe.transport.memory import MemoryNetwork


def _shipped(name: str) -> str:
    return (files("rawprobe.cli") / "schemas" / f"{name}.schema.json").read_text()


def test_the_shipped_files_are_what_the_definitions_build() -> None:
    for name, text in output_schema.files().items():
        shipped = _shipped(name.removesuffix(".schema.json"))
        fix = ".venv/bin/python -I -m rawprobe.cli.output_schema"
        assert shipped == text, f"{name} is stale: {fix}"


def _objects(schema: Any) -> list[dict[str, Any]]:
    if isinstance(schema, list):
        return [o for item in schema for o in _objects(item)]
    if not isinstance(schema, dict):
        return []
    found = [schema] if "properties" in schema else []
    return found + [o for value in schema.values() for o in _objects(value)]


@pytest.mark.parametrize("command", [*output_schema.COMMANDS, "rawprobe"])
def test_each_file_is_a_schema_whose_objects_list_every_field(command: str) -> None:
    schema = json.loads(_shipped(command))
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    records = _objects(schema)
    assert records
    for record in records:
        assert record["additionalProperties"] is False, record["description"]
        assert record["required"] == list(record["properties"]), record["description"]


def test_every_command_with_json_output_has_a_schema() -> None:
    parser = app.build_parser([])
    (commands,) = (a for a in parser._actions if a.dest == "command")
    with_json = sorted(
        name
        for name, sub in commands.choices.items()  # type: ignore[union-attr]
        if any(o in ("--json", "--ndjson") for a in sub._actions for o in a.option_strings)
    )
    assert with_json == sorted(output_schema.COMMANDS)


def test_rawprobe_schema_prints_the_files(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    bundle = capsys.readouterr().out
    assert bundle == _shipped("rawprobe")
    assert main(["schema", "trace"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(_shipped("trace"))
    # The bundle takes any command's output (the document of one, an event of another).
    validator = Draft202012Validator(json.loads(bundle))
    sniff_end = {"schema": "rawprobe/2", "command": "sniff", "event": "summary",
                 "sockets": "packet", "interrupted": True, "captured": 0, "seen": 0,
                 "kernel_drops": 0}  # fmt: skip
    validator.validate(sniff_end)
    assert not validator.is_valid({**sniff_end, "captured": None})
    assert not validator.is_valid({**sniff_end, "schema": "rawprobe/1"})


def _lenient(schema: Any) -> Any:
    """The schema without ``required``: README examples leave fields out (``...``)."""
    if isinstance(schema, dict):
        return {k: _lenient(v) for k, v in schema.items() if k != "required"}
    if isinstance(schema, list):
        return [_lenient(item) for item in schema]
    return schema


def test_the_readme_json_examples_follow_the_schema() -> None:
    """Every ```json block of the README (a document, or NDJSON lines) validates, its
    ``...`` (elements or fields left out) aside."""
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    blocks = re.findall(r"```json\n(.*?)```", readme, re.S)
    texts = []
    for block in blocks:
        text = re.sub(r",\s*\.\.\.", "", block)
        lines = text.strip().splitlines()
        one_per_line = all(line.startswith("{") and line.endswith("}") for line in lines)
        texts += lines if one_per_line and len(lines) > 1 else [text]
    seen = set()
    for text in texts:
        data = json.loads(text)
        name = "document" if "event" not in data else f"event_{data['event']}"
        whole = _lenient(json.loads(_shipped(data["command"])))
        one = {key: value for key, value in whole.items() if key != "oneOf"}
        Draft202012Validator({**one, "$ref": f"#/$defs/{name}"}).validate(data)
        seen.add((data["command"], name))
    assert {command for command, _name in seen} >= {"ping", "trace", "scan", "sweep"}


FAST = ["-q", "-w", "1", "--rate", "0", "-r", "0", "-t", "0.05"]
#: .1 and .3 answer; .2 and .4 do not.
UP = ["198.19.7.1", "198.19.7.3"]


@pytest.fixture
def network(simulated_network: MemoryNetwork) -> MemoryNetwork:
    for address in UP:
        simulated_network.add(address)
    simulated_network.add("198.19.7.2", alive=False)
    simulated_network.add("198.19.7.4", alive=False)
    return simulated_network


@pytest.mark.parametrize("down", [False, True])
def test_sweep_lists_hosts_up_and_down_ones_with_all(
    network: MemoryNetwork, capsys: pytest.CaptureFixture[str], down: bool
) -> None:
    flag = ["--all"] if down else []
    assert main(["sweep", *FAST, "--json", *flag, "198.19.7.1-4"]) == 0
    document = output_check.document(capsys.readouterr().out, "sweep")
    expected = [{"address": f"198.19.7.{i}", "state": "up" if i % 2 else "down"}
                for i in range(1, 5) if i % 2 or down]  # fmt: skip
    assert document["hosts"] == expected  # in address order
    summary = document["summary"]
    assert (summary["hosts_up"], summary["hosts_down"], summary["targets"]) == (2, 2, 4)
    assert summary["lists_down"] is down and summary["complete"]
    assert main(["sweep", *FAST, "--ndjson", *flag, "198.19.7.1-4"]) == 0
    *hosts, end = output_check.events(capsys.readouterr().out.splitlines(), "sweep")
    assert sorted(h["address"] for h in hosts) == [h["address"] for h in expected]
    assert all(h["reason"] == "echo-reply" and h["rtt_ms"] is not None
               for h in hosts if h["state"] == "up")  # fmt: skip
    assert set(end) == {"schema", "command", "event", *summary}  # the summary's fields
    assert (end["hosts_up"], end["hosts_down"], end["lists_down"]) == (2, 2, down)

"""mkdocs hooks (mkdocs.yml ``hooks:``): pages made from the sources at build time, so
nothing in docs/ is a hand copy that can go stale.

A directive is an HTML comment alone on a line of a page:

- ``<!-- readme: HEADING -->``: the README section under that heading (``## Ping``),
  up to the next heading of its level or above, without the heading line itself;
- ``<!-- cli-reference -->``: every subcommand's usage and options, from the argparse
  parsers of ``rawprobe.cli.app``;
- ``<!-- json-schema -->``: every command's outputs and the objects in them, from the
  schema files the package ships (``rawprobe schema``);
- ``<!-- example: NAME -->``: ``docs/examples/NAME`` as a code block (the lab tests run
  those files).
"""

from __future__ import annotations

import argparse
import json
import os
import re
from importlib.resources import files
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
DIRECTIVE = re.compile(r"^<!-- (readme|cli-reference|json-schema|example)(?:: (.+?))? -->$", re.M)


def on_page_markdown(markdown: str, **_kwargs: Any) -> str:
    def expand(match: re.Match[str]) -> str:
        kind, argument = match.group(1), match.group(2)
        if kind == "readme":
            return readme_section(argument)
        if kind == "cli-reference":
            return cli_reference()
        if kind == "json-schema":
            return schema_reference()
        text = (ROOT / "docs" / "examples" / argument).read_text()
        return f"```python\n{text.rstrip()}\n```"

    return DIRECTIVE.sub(expand, markdown)


# -- README sections -------------------------------------------------------------------


def readme_section(heading: str) -> str:
    """The body of the README section ``heading``; its subsections one level up (the
    page's own title is level 1). Under the title (``# rawprobe``), or with `` (intro)``
    after the heading: the text up to the first subsection."""
    intro = heading.endswith(" (intro)")
    heading = heading.removesuffix(" (intro)")
    lines = (ROOT / "README.md").read_text().splitlines()
    level = len(heading) - len(heading.lstrip("#"))
    try:
        start = lines.index(heading) + 1
    except ValueError:
        raise ValueError(f"README.md has no heading {heading!r}") from None
    body: list[str] = []
    fenced = False
    for line in lines[start:]:
        fenced ^= line.startswith("```")
        depth = len(line) - len(line.lstrip("#"))
        heading_line = not fenced and depth > 0 and line[depth : depth + 1] == " "
        if heading_line and (depth <= level or level == 1 or intro):
            break
        if heading_line:
            line = "#" * (depth - level + 1) + line[depth:]
        body.append(line)
    return "\n".join(body).strip() + "\n"


# -- CLI reference ---------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _options(parser: argparse.ArgumentParser) -> list[str]:
    formatter = parser._get_formatter()
    rows = ["| option | meaning | default |", "| --- | --- | --- |"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
            continue
        if action.help == argparse.SUPPRESS:
            continue
        if action.option_strings:
            metavar = (
                formatter._format_args(action, action.dest.upper()) if action.nargs != 0 else ""
            )
            names = ", ".join(
                f"`{o}{' ' + metavar if metavar else ''}`" for o in action.option_strings
            )
        else:
            names = f"`{formatter._metavar_formatter(action, action.dest)(1)[0]}`"
        meaning = formatter._expand_help(action) if action.help else ""
        if action.choices is not None and not isinstance(action.choices, dict):
            meaning += f" (one of: {', '.join(map(str, action.choices))})"
        default = action.default
        unset = default is None or default is False or default in (argparse.SUPPRESS, [], ())
        shown = "" if unset else f"`{default}`"
        rows.append(f"| {_cell(names)} | {_cell(meaning)} | {_cell(shown)} |")
    return rows


def _command(name: str, parser: argparse.ArgumentParser, level: int) -> list[str]:
    lines = [f"{'#' * level} {name}", ""]
    if parser.description:
        lines += [parser.description, ""]
    lines += ["```text", parser.format_usage().strip(), "```", ""]
    rows = _options(parser)
    if len(rows) > 2:
        lines += [*rows, ""]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                lines += _command(f"{name} {sub_name}", sub, level + 1)
    return lines


def cli_reference() -> str:
    """Usage and options of ``rawprobe`` and each subcommand, from the parsers."""
    from rawprobe.cli.app import build_parser

    previous = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "88"  # argparse wraps usage lines to the terminal's width
    try:
        parser = build_parser([])
        lines = ["```text", parser.format_usage().strip(), "```", "", *_options(parser), ""]
        (commands,) = (a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        helps = {a.dest: a.help for a in commands._choices_actions}
        for name, sub in commands.choices.items():
            if not sub.description and helps.get(name):
                sub.description = helps[name][:1].upper() + helps[name][1:] + "."
            lines += _command(f"rawprobe {name}", sub, 2)
    finally:
        if previous is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = previous
    return "\n".join(lines)


# -- JSON schema reference --------------------------------------------------------------


def _schema_file(name: str) -> dict[str, Any]:
    text = (files("rawprobe.cli") / "schemas" / f"{name}.schema.json").read_text()
    schema: dict[str, Any] = json.loads(text)
    return schema


def _kind(schema: dict[str, Any]) -> str:
    """A schema as a short text for a table cell."""
    if "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        return f"[{name}](#{name})"
    if "anyOf" in schema:
        return " or ".join(_kind(s) for s in schema["anyOf"])
    if "oneOf" in schema:
        return " or ".join(_kind(s) for s in schema["oneOf"])
    if "const" in schema:
        return f'`"{schema["const"]}"`'
    if "enum" in schema:
        return ", ".join(f'`"{v}"`' for v in schema["enum"])
    types = schema.get("type")
    if isinstance(types, list):
        return " or ".join(_kind({**schema, "type": t}) for t in types)
    if types == "array":
        return f"array of {_kind(schema['items'])}"
    if types == "object" and "properties" in schema:
        return "object {" + ", ".join(schema["properties"]) + "}"
    if types == "object":
        keys = schema.get("propertyNames")
        key = _kind(keys) if keys else "string"
        return f"map of {key} to {_kind(schema['additionalProperties'])}"
    return str(types)


def _fields(schema: dict[str, Any]) -> list[str]:
    rows = ["| field | type | meaning |", "| --- | --- | --- |"]
    for name, field in schema["properties"].items():
        meaning = field.get("description", "")
        rows.append(f"| `{name}` | {_cell(_kind(field))} | {_cell(meaning)} |")
    return rows


def schema_reference() -> str:
    """Each command's outputs (document, NDJSON events), then every object they hold."""
    bundle = _schema_file("rawprobe")
    lines: list[str] = []
    objects: dict[str, dict[str, Any]] = {}
    for command_id in (branch["$ref"] for branch in bundle["oneOf"]):
        command = command_id.rsplit(":", 1)[1]
        schema = _schema_file(command)
        lines += [f"## rawprobe {command}", "", f"`rawprobe schema {command}`", ""]
        outputs = [ref["$ref"].rsplit("/", 1)[1] for ref in schema["oneOf"]]
        for name in outputs:
            output = schema["$defs"][name]
            title = "document (--json)" if name == "document" else f"event {name[6:]!r}"
            lines += [f"### {command} {title}", "", output["description"], ""]
            for variant in output.get("oneOf", [output]):
                if "oneOf" in output:
                    lines += [variant["description"] + ":", ""]
                lines += [*_fields(variant), ""]
        for name, definition in schema["$defs"].items():
            if name in outputs:
                continue
            if objects.setdefault(name, definition) != definition:
                raise ValueError(f"{name} differs between the schema files")
    lines += ["## Objects", ""]
    for name, definition in sorted(objects.items()):
        lines += [f"### {name}", "", definition["description"], "", *_fields(definition), ""]
    return "\n".join(lines)

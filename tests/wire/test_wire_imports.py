"""The wire codecs import only the standard library and rawprobe.errors (DESIGN §1, §3)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import rawprobe.transport.wire as wire

WIRE_DIR = Path(wire.__file__).resolve().parent
FORBIDDEN = {"socket", "time", "anyio", "trio", "asyncio", "select", "selectors", "rich"}
MODULES = sorted(WIRE_DIR.glob("*.py"))


def imported_modules(path: Path) -> list[str]:
    names = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.append(node.module)
    return names


def test_every_codec_module_is_checked() -> None:
    assert {p.stem for p in MODULES} >= {"ipv4", "ipv6", "icmp", "icmpv6", "tcp", "udp", "checksum"}


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.name)
def test_wire_imports_only_stdlib_and_errors(path: Path) -> None:
    for name in imported_modules(path):
        top = name.split(".")[0]
        if name == "rawprobe.errors" or name == "__future__":
            continue
        assert top not in FORBIDDEN, f"{path.name} imports {name}"
        assert top in sys.stdlib_module_names, f"{path.name} imports non-stdlib {name}"

"""The import rules of DESIGN.md section 1, read from the source with ast."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LAYERS = {"cli": 3, "rawprobe": 2, "probes": 1, "transport": 0}
MODULE_OF_FOLDER = {
    "cli": "rawprobe.cli",
    "probes": "rawprobe.probes",
    "transport": "rawprobe.transport",
}


def imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(), str(path))
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def layer_of(module: str) -> int | None:
    """Layer of a rawprobe module name; None for third-party and stdlib."""
    parts = module.split(".")
    if parts[0] != "rawprobe":
        return None
    if len(parts) > 1 and parts[1] in LAYERS and parts[1] != "rawprobe":
        return LAYERS[parts[1]]
    if module in ("rawprobe.errors",):
        return -1  # everyone may use it
    return LAYERS["rawprobe"]


def source_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


@pytest.mark.parametrize("folder", ["probes", "transport"])
def test_lower_layers_never_import_upper_ones(folder: str) -> None:
    own = LAYERS[folder]
    for path in source_files(folder):
        for module in imports(path):
            layer = layer_of(module)
            assert layer is None or layer <= own, f"{path.relative_to(ROOT)} imports {module}"


def test_front_door_does_not_import_the_cli() -> None:
    for path in source_files("rawprobe"):
        if path.name == "__main__.py":  # `python -m rawprobe` is the CLI's entry point
            continue
        for module in imports(path):
            assert not module.startswith("rawprobe.cli"), f"{path.name} imports {module}"


def test_wire_is_pure() -> None:
    allowed_rawprobe = {"rawprobe.errors"}
    for path in source_files("transport/wire"):
        for module in imports(path):
            top = module.split(".")[0]
            assert top not in {"socket", "anyio", "trio", "time", "rich"}, (path.name, module)
            if top == "rawprobe":
                assert module in allowed_rawprobe or module.startswith("rawprobe.transport.wire"), (
                    path.name,
                    module,
                )


def test_errors_imports_nothing_from_the_package() -> None:
    assert not [m for m in imports(ROOT / "rawprobe/errors.py") if m.startswith("rawprobe")]


def test_only_the_cli_imports_rich() -> None:
    for folder in ("rawprobe", "probes", "transport"):
        for path in source_files(folder):
            assert not any(m.split(".")[0] == "rich" for m in imports(path)), path


def test_code_imports_through_rawprobe_only() -> None:
    for folder in ("rawprobe", "probes", "transport", "cli", "tests"):
        for path in source_files(folder):
            for module in imports(path):
                assert module.split(".")[0] not in MODULE_OF_FOLDER, (path, module)

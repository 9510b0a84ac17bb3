"""The front door exports its API lazily, and exactly what rawprobe.api defines."""

import inspect
import subprocess
import sys
from pathlib import Path

import rawprobe
import rawprobe.api


def test_lazy_names_are_the_api_names() -> None:
    assert sorted(rawprobe.__all__) == sorted(rawprobe.api.__all__)
    for name in rawprobe.__all__:
        assert getattr(rawprobe, name) is getattr(rawprobe.api, name)


def test_importing_rawprobe_does_not_import_the_probes() -> None:
    code = "import sys, rawprobe; print('rawprobe.probes.scan' in sys.modules)"
    done = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


def test_type_checkers_see_the_front_doors_names(tmp_path: Path) -> None:
    """No module ``__getattr__ -> Any`` for mypy: a typo is an error, real names typed."""
    snippet = tmp_path / "snippet.py"
    snippet.write_text(
        "import rawprobe\n"
        "rawprobe.pign\n"
        "reveal_type(rawprobe.sweep)\n"
        "reveal_type(rawprobe.TransportClosed)\n"
        "async def main() -> None:\n"
        "    result: int = await rawprobe.ping('198.19.0.5')\n"
    )
    repo = Path(rawprobe.__file__).resolve().parent.parent
    cache = repo / ".mypy_cache"  # warm when scripts/typecheck.sh ran (1 s, else ~10 s)
    done = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache), str(snippet)],
        capture_output=True, text=True, cwd=tmp_path, check=False,
    )  # fmt: skip
    errors = [line for line in done.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 2, done.stdout
    assert 'snippet.py:2: error: Module has no attribute "pign"' in errors[0]
    assert "snippet.py:6:" in errors[1] and "PingResult" in errors[1]
    assert "SweepResult" in done.stdout  # the real signature, not Any


def test_one_host_and_scan_forms_show_their_options() -> None:
    """``ping``, ``traceroute``, ``multipath``, ``syn_scan`` and ``syn_scan_stream`` are
    made from one signature a family (rawprobe/api.py); ``help()`` still shows theirs."""
    many = inspect.signature(rawprobe.ping_many)
    one = inspect.signature(rawprobe.ping)
    assert next(iter(one.parameters)) == "host" and one.return_annotation == "PingResult"
    assert list(one.parameters)[1:] == list(many.parameters)[1:]
    trace = inspect.signature(rawprobe.traceroute)
    assert list(trace.parameters)[:3] == ["host", "method", "first_ttl"]
    assert trace.return_annotation == "TraceResult"
    scan = inspect.signature(rawprobe.syn_scan)
    assert list(scan.parameters) == list(inspect.signature(rawprobe.syn_scan_stream).parameters)
    assert scan.parameters["keep_closed"].default is False
    mda = inspect.signature(rawprobe.multipath)
    assert list(mda.parameters)[:3] == ["host", "method", "confidence"]
    assert mda.return_annotation == "MultipathResult"
    for name in ("ping", "traceroute", "multipath", "syn_scan", "syn_scan_stream"):
        function = getattr(rawprobe, name)
        assert function.__name__ == name and function.__doc__

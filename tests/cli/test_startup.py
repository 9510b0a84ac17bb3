"""Start-up: what the command imports before it does anything (cli/app.py's docstring).

Each check runs a fresh interpreter (``-I``: the repository cannot shadow the installed
package) and reads its ``sys.modules`` afterwards. A module that creeps into
``--version``'s imports, or rich or trio into a ping's, fails here instead of slowing
every run unnoticed; bench/startup.py measures the time itself.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from rawprobe.lab import Lab

#: Never needed to start: the event loops, rich, the probes and transports, the
#: library's front door, and importlib.metadata (the version is a constant).
HEAVY = (
    "anyio",
    "asyncio",
    "trio",
    "rich",
    "rawprobe.probes",
    "rawprobe.transport",
    "rawprobe.api",
    "importlib.metadata",
)
#: What a ping never uses: the other probes and their results, the unprivileged rungs,
#: pcap, the event loop it was not asked for, and rich (its plain lines need none).
NOT_FOR_PING = (
    "trio",
    "rich",
    "rawprobe.api",
    "rawprobe.probes.traceroute",
    "rawprobe.probes.scan",
    "rawprobe.probes.sweep",
    "rawprobe.probes.engine",
    "rawprobe.probes.udp_scan",
    "rawprobe.probes.trace_models",
    "rawprobe.probes.scan_models",
    "rawprobe.transport.dgram",
    "rawprobe.transport.udp_dgram",
    "rawprobe.transport.capture",
    "rawprobe.transport.wire.pcap",
    "rawprobe.transport.wire.tcp",
    "importlib.metadata",
)


def loaded(code: str, *, prefix: tuple[str, ...] = ()) -> set[str]:
    """The modules an interpreter holds after running ``code`` (as ``prefix`` + ``-I``)."""
    script = textwrap.dedent(code) + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run(
        [*prefix, sys.executable, "-I", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def among(modules: set[str], names: tuple[str, ...]) -> list[str]:
    return sorted(m for m in modules if any(m == n or m.startswith(n + ".") for n in names))


def run_main(*argv: str) -> str:
    """Code that runs the command as the console script does, keeping the interpreter
    alive afterwards (``--help`` and ``--version`` end in SystemExit)."""
    return f"""
        import sys
        sys.argv = ["rawprobe", *{list(argv)!r}]
        from rawprobe.cli.app import main
        try:
            main()
        except SystemExit:
            pass
    """


def test_importing_the_entry_point_loads_nothing_heavy() -> None:
    assert among(loaded("import rawprobe.cli.app"), HEAVY) == []


@pytest.mark.parametrize("option", ["--version", "--help"])
def test_version_and_help_load_no_subcommand(option: str) -> None:
    modules = loaded(run_main(option))
    assert among(modules, HEAVY) == []
    assert sorted(m for m in modules if m.startswith("rawprobe.cli.")) == [
        "rawprobe.cli.app",
        "rawprobe.cli.args",
    ]


def test_the_front_door_loads_the_api_on_first_use_only() -> None:
    assert among(loaded("import rawprobe"), HEAVY) == []
    assert "rawprobe.api" in loaded("import rawprobe; rawprobe.ping")


def test_a_ping_command_loads_only_what_pings() -> None:
    modules = loaded(run_main("ping", "--help"))
    assert "rawprobe.probes.ping" in modules
    assert among(modules, NOT_FOR_PING) == []


@pytest.mark.lab
def test_a_one_probe_ping_runs_without_trio_rich_or_other_probes(lab: Lab) -> None:
    prefix = ("ip", "netns", "exec", lab.ns("client"))
    modules = loaded(run_main("ping", "-c", "1", lab.target_v4), prefix=prefix)
    assert "anyio._backends._asyncio" in modules
    assert among(modules, NOT_FOR_PING) == []


def test_a_trace_command_loads_no_rich_until_it_draws() -> None:
    modules = loaded(run_main("trace", "--help"))
    assert "rawprobe.cli.trace_cmd" in modules
    assert among(modules, ("rich", "trio")) == []


@pytest.mark.lab
def test_a_json_trace_runs_without_rich(lab: Lab) -> None:
    prefix = ("ip", "netns", "exec", lab.ns("client"))
    modules = loaded(run_main("trace", "-n", "--json", lab.target_v4), prefix=prefix)
    assert "rawprobe.probes.traceroute" in modules
    assert among(modules, ("rich", "trio")) == []

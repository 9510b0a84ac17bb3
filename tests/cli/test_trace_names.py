"""Names in trace output (in-process, simulated network): lookups start as hops are
seen, never serialise hop lines, and a silent resolver costs one bounded wait."""

from __future__ import annotations

import functools
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import output_check
import pytest

from rawprobe.cli import trace_cmd
from rawprobe.cli.app import main
from rawprobe.rdns import ReverseNames
from rawprobe.transport.memory import MemoryNetwork

TARGETS = [f"198.19.1.{i}" for i in range(1, 41)]


@pytest.fixture
def network(simulated_network: MemoryNetwork) -> MemoryNetwork:
    for address in ["198.19.0.5", *TARGETS]:
        simulated_network.add(address, delay_s=0.001)
    return simulated_network


def _names(
    monkeypatch: pytest.MonkeyPatch,
    lookup: Callable[[str], Awaitable[str | None]],
    **kw: Any,
) -> None:
    resolver = functools.partial(ReverseNames, lookup=lookup, hosts=None, **kw)
    monkeypatch.setattr(trace_cmd, "ReverseNames", resolver)


async def _slow_name(address: str) -> str:
    await anyio.sleep(0.4)
    return f"n{address.replace('.', '-')}.test"


async def _silent(_address: str) -> str | None:
    await anyio.sleep_forever()
    return None


def test_streamed_hop_lines_do_not_wait_for_each_other(
    network: MemoryNetwork, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    network.add("198.18.200.1", alive=False)  # hops 1-3 answer at once, then 2 s of stars
    _names(monkeypatch, _slow_name)
    printed: list[tuple[float, str]] = []
    emit = trace_cmd._emit

    def timed(line: str, file: Any = None) -> None:
        printed.append((time.monotonic(), line))
        emit(line, file)

    monkeypatch.setattr(trace_cmd, "_emit", timed)
    start = time.monotonic()
    argv = ["trace", "-q", "1", "-w", "2", "--retries", "0", "-m", "4", "198.18.200.1"]
    assert main(argv) == 1
    hops = [(at - start, line) for at, line in printed if not line.startswith("traceroute")]
    assert [line.split()[1] for _, line in hops] == [
        "n198-18-1-1.test", "n198-18-2-2.test", "n198-18-3-2.test", "*"
    ]  # fmt: skip
    # Each lookup takes 0.4 s; one after another, hop 3 would come at 1.2 s.
    assert hops[2][0] < 1.0, hops


ROUNDS = ["-c", "2", "-i", "0"]


@pytest.mark.parametrize(
    "mode",
    [
        ["--json"],
        [],
        ["--report", *ROUNDS],
        ["--report", "--json", *ROUNDS],
        ["--live", "--json", *ROUNDS],
    ],
)
def test_a_silent_resolver_costs_one_bounded_wait_for_40_targets(
    network: MemoryNetwork,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    mode: list[str],
) -> None:
    _names(monkeypatch, _silent, budget_s=0.5)
    start = time.monotonic()
    assert main(["trace", "-q", "1", *mode, *TARGETS]) == 0
    elapsed = time.monotonic() - start
    out = capsys.readouterr().out
    assert elapsed < 3.0, elapsed  # 40 targets x 0.5 s would be 20 s
    if mode[:1] == ["--json"] or mode[:2] == ["--report", "--json"]:
        document = output_check.document(out, "trace")
        assert len(document["traces"]) == 40 and not document["summary"]["interrupted"]
        assert document["mode"] == ("trace" if mode == ["--json"] else "report")
    if mode[:1] == ["--live"]:  # a round event per target and round, then the summary
        *rounds, summary = output_check.events(out.splitlines(), "trace")
        assert len(rounds) == 80 and {r["event"] for r in rounds} == {"round"}
        assert [r["rounds"] for r in summary["rounds"]] == [2] * 40
    assert "198.19.1.40" in out and ".test" not in out


def test_names_reach_json_and_report(
    network: MemoryNetwork, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    async def fast(address: str) -> str:
        return f"n{address.replace('.', '-')}.test"

    _names(monkeypatch, fast)
    assert main(["trace", "-q", "1", "--json", "198.19.0.5"]) == 0
    hops = output_check.document(capsys.readouterr().out, "trace")["traces"][0]["hops"]
    assert [h["responses"][0]["hostname"] for h in hops][-1] == "n198-19-0-5.test"
    assert main(["trace", "--report", "-c", "1", "198.19.0.5"]) == 0
    assert "  4.|-- n198-19-0-5.test (198.19.0.5)" in capsys.readouterr().out
    assert main(["trace", "-n", "-q", "1", "198.19.0.5"]) == 0
    assert ".test" not in capsys.readouterr().out

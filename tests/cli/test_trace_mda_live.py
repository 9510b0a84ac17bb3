"""``trace --report/--live --mda`` in-process over the simulated load balancers
(tests/multipath_graphs.py): the MDA trace first, then rounds over flows through every
interface it found, so every (TTL, interface) and every path gets its statistics."""

from __future__ import annotations

import output_check
import pytest
from multipath_graphs import ECMP4, NESTED, TARGET, Routes, truth

from rawprobe.cli.app import main
from rawprobe.transport.memory import MemoryNetwork

ROUNDS = ["-n", "-c", "3", "-i", "0", "-w", "0.5"]


@pytest.mark.parametrize(("routes", "paths"), [(ECMP4, 4), (NESTED, 3)], ids=["ecmp4", "nested"])
@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_report_measures_every_interface_and_path_the_mda_found(
    simulated_network: MemoryNetwork,
    capsys: pytest.CaptureFixture[str],
    routes: Routes,
    paths: int,
    backend: str,
) -> None:
    simulated_network.add(TARGET, routes=routes, delay_s=0.001)
    argv = ["trace", "--report", "--mda", "--json", *ROUNDS, "--backend", backend, TARGET]
    assert main(argv) == 0
    document = output_check.document(capsys.readouterr().out, "trace")
    (trace,) = document["traces"]
    assert document["mode"] == "report" and trace["rounds"] == 3
    rows = {(hop["ttl"], hop["addresses"][0]): hop for hop in trace["hops"]}
    assert set(rows) == truth(routes, TARGET)  # a row per (TTL, interface), none lost
    assert all(hop["sent"] >= 3 and hop["loss"] == 0 for hop in trace["hops"])
    assert len(trace["paths"]) == paths  # one per branch, each with its own rows
    for path in trace["paths"]:
        assert all(hop["sent"] == 3 * len(path["flows"]) for hop in path["hops"])


def test_live_plain_output_off_a_terminal_and_flows_per_interface(
    simulated_network: MemoryNetwork, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--flows N`` with ``--mda``: N flows through each interface (when the MDA saw
    that many there): the first hop's row counts every flow, each crossing one of the
    four branches; at least 3 flows through each of the 3 interfaces 3 hops on."""
    simulated_network.add(TARGET, routes=ECMP4, delay_s=0.001)
    assert main(["trace", "--report", "--mda", "--flows", "3", *ROUNDS, TARGET]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith(f"HOST: {TARGET}") and "Loss%" in lines[0]
    assert sum(line.startswith("path ") for line in lines) == 4

    def sent(prefix: str) -> list[int]:  # (the rows of the graph, before the paths)
        rows = lines[: next(i for i, line in enumerate(lines) if line.startswith("path "))]
        return [int(line.split()[3]) for line in rows if line.startswith(prefix)]

    (first,) = sent("  1.|-- 198.18.1.1")
    branches = sent("  2.|-- ")
    assert len(branches) == 4 and min(branches) >= 3 and first == sum(branches)
    assert first >= 3 * 3 * 3  # rounds x flows x interfaces

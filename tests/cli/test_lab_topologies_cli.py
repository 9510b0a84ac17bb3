"""``rawprobe lab topologies`` and the refusals of ``lab up --topology/--seed`` (nothing
is built: a bad name or file is reported before any namespace exists)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rawprobe.cli.app import main
from rawprobe.lab import topology_names


def test_topologies_lists_every_shipped_one_with_its_description(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["lab", "topologies"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == sorted(topology_names())
    assert all(description in "\n".join(lines) for description in topology_names().values())


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--topology", "nosuch"], "no topology 'nosuch': choose blackhole, default"),
        (["--topology", "{outside}"], "topology outside: links[0].v4: 192.0.2.0/24 is outside"),
        (["--topology", "{missing}"], "cannot read topology"),
        (["--seed", "-1"], "--seed"),
        (["--seed", "4294967296"], "--seed"),
    ],
)
def test_lab_up_refuses_a_bad_topology_or_seed_in_one_line(
    argv: list[str], says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    outside = tmp_path / "outside.toml"
    outside.write_text(
        'links = [{ a = "client", b = "r1", v4 = "192.0.2.0/24" }]\n[nodes.client]\n[nodes.r1]\n'
    )
    files = {"outside": str(outside), "missing": str(tmp_path / "missing.toml")}
    argv = [arg.format(**files) for arg in argv]
    assert main(["lab", "up", "--prefix", "rpznever", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and says in err[0], err

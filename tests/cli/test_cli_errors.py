"""Bad input: one clear line on stderr, exit code 2, never a traceback."""

import pytest

from rawprobe.cli.app import main


@pytest.mark.parametrize(
    "argv",
    [
        ["ping", "999.1.1.1"],
        ["ping", "1.2.3"],
        ["ping", "-c", "0", "127.0.0.1"],
        ["ping", "-c", "x", "127.0.0.1"],
        ["ping", "-i", "-1", "127.0.0.1"],
        ["ping", "-i", "nan", "127.0.0.1"],
        ["ping", "-W", "abc", "127.0.0.1"],
        ["ping", "-s", "70000", "127.0.0.1"],
        ["ping", "-t", "0", "127.0.0.1"],
        ["ping", "-t", "256", "127.0.0.1"],
        ["ping", "-4", "::1"],
        ["ping", "-6", "127.0.0.1"],
        ["ping", "-I", "::1", "127.0.0.1"],
        ["ping", "--rate", "-5", "127.0.0.1"],
        ["ping", ""],
        ["ping"],
        ["--backend", "tokio", "ping", "127.0.0.1"],
        ["frobnicate"],
        [],
        ["lab", "exec"],
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("rawprobe")
    assert "Traceback" not in captured.err


def test_help_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["ping", "--help"])
    assert exit_info.value.code == 0
    assert "-c COUNT" in capsys.readouterr().out

"""nmap's spellings in ``rawprobe scan``: -sS, -sA, -sT mean what rawprobe does; -Pn and -n
are accepted no-ops; one scan type per run (parse level, and one line + exit 2 in main)."""

from __future__ import annotations

from typing import Any

import pytest

from rawprobe.cli.app import build_parser, main
from rawprobe.cli.args import parse_command_line
from rawprobe.errors import UsageError


def parse(*words: str) -> Any:
    argv = ["scan", *words, "198.19.0.5"]
    return parse_command_line(build_parser(argv), argv)


@pytest.mark.parametrize(
    ("words", "ack", "rung"),
    [
        ((), False, "auto"),
        (("-sS",), False, "auto"),
        (("-sA",), True, "auto"),
        (("--ack",), True, "auto"),
        (("-sA", "--ack"), True, "auto"),
        (("-sT",), False, "datagram"),
        (("--unprivileged",), False, "datagram"),
        (("-sS", "--privileged"), False, "raw"),
    ],
)
def test_scan_types_mean_the_existing_options(words: tuple[str, ...], ack: bool, rung: str) -> None:
    args = parse(*words)
    assert (args.ack, args.rung) == (ack, rung)


def test_pn_and_n_are_accepted_and_change_nothing() -> None:
    plain, spelled = vars(parse("-p", "80")), vars(parse("-Pn", "-n", "-p", "80"))
    assert (spelled.pop("Pn"), spelled.pop("n"), plain.pop("Pn"), plain.pop("n")) == (
        True, True, False, False,
    )  # fmt: skip
    spelled.pop("command_line"), plain.pop("command_line")  # (the words as typed: nmap's files)
    assert spelled == plain


@pytest.mark.parametrize(
    ("words", "message"),
    [
        (("-sS", "-sA"), "argument --ack/-sA: not with -sS: one scan type at a time"),
        (("--ack", "-sS"), "argument -sS: not with -sA: one scan type at a time"),
        (("-sT", "-sA"), "argument --ack/-sA: not with -sT: one scan type at a time"),
        (("-sT", "--privileged"), "argument --privileged: not allowed with argument -sT"),
        (("--unprivileged", "-sT"), "argument -sT: not allowed with argument --unprivileged"),
    ],
)
def test_two_scan_types_are_a_usage_error(words: tuple[str, ...], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        parse(*words)


def test_a_conflict_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scan", "-sT", "-sA", "-p", "80", "198.19.0.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "one scan type at a time" in err


def test_scan_help_lists_the_spellings(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--help")
    out = capsys.readouterr().out
    assert all(word in out for word in ("-sS", "-sA", "-sT", "-Pn", "-n "))

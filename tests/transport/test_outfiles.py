"""Output files never follow a planted symbolic link (transport/outfiles.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from rawprobe.errors import UsageError
from rawprobe.transport.capture import PcapRecorder
from rawprobe.transport.outfiles import open_output


def _write(path: Path, data: bytes = b"new") -> None:
    with open_output(path, option="-oG") as stream:
        stream.write(data)


def test_a_new_file_is_created_and_an_existing_one_truncated(tmp_path: Path) -> None:
    path = tmp_path / "out"
    _write(path, b"first, longer")
    _write(path, b"second")
    assert path.read_bytes() == b"second"


@pytest.mark.parametrize("dangling", [False, True])
def test_an_existing_symlink_is_refused_and_its_target_untouched(
    tmp_path: Path, dangling: bool
) -> None:
    victim = tmp_path / "victim"
    if not dangling:
        victim.write_bytes(b"precious")
    link = tmp_path / "planted"
    link.symlink_to(victim)
    with pytest.raises(UsageError, match=r"^-oG .*planted: is a symbolic link"):
        _write(link)
    assert victim.read_bytes() == b"precious" if not dangling else not victim.exists()


def test_the_pcap_recorder_refuses_a_symlink_too(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (tmp_path / "x.pcap").symlink_to(victim)
    with pytest.raises(UsageError, match=r"--pcap .*symbolic link"):
        PcapRecorder.create(tmp_path / "x.pcap")
    assert victim.read_bytes() == b"precious"


def test_a_hard_linked_file_is_refused(tmp_path: Path) -> None:
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    os.link(victim, tmp_path / "linked")
    with pytest.raises(UsageError, match="2 hard links"):
        _write(tmp_path / "linked")
    assert victim.read_bytes() == b"precious"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to chown")
def test_another_users_file_in_a_sticky_directory_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "tmp"
    shared.mkdir()
    shared.chmod(0o1777)
    planted = shared / "scan.gnmap"
    planted.write_bytes(b"")
    os.chown(planted, 65534, 65534)  # made by someone else, who would read our output
    with pytest.raises(UsageError, match="another user"):
        _write(planted)
    os.chown(planted, os.geteuid(), os.getegid())  # ours: overwritten as usual
    _write(planted)
    assert planted.read_bytes() == b"new"


def test_character_devices_work_other_kinds_are_refused(tmp_path: Path) -> None:
    _write(Path("/dev/null"))
    with pytest.raises(UsageError, match="Is a directory"):
        _write(tmp_path)
    with pytest.raises(UsageError, match="No such file or directory"):
        _write(tmp_path / "no" / "such" / "out")
    with pytest.raises(UsageError, match="empty file name"):
        _write(Path(" "))


def test_new_files_follow_the_umask(tmp_path: Path) -> None:
    previous = os.umask(0o027)
    try:
        _write(tmp_path / "out")
    finally:
        os.umask(previous)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o640

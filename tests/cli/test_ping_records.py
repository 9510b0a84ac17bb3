"""The ping CLI keeps per-reply records only where it outputs them (the JSON
document), and its summaries come from the running statistics."""

from __future__ import annotations

import argparse

from rawprobe.cli import render
from rawprobe.cli.ping_cmd import ENDLESS_JSON_RECORDS, _records_to_keep
from rawprobe.probes.ping_models import PingResult, PingStats


def test_records_are_kept_for_json_only() -> None:
    def keep(json: bool, count: int | None) -> int | None:
        return _records_to_keep(argparse.Namespace(json=json, count=count))

    assert keep(False, None) == 0 and keep(False, 5) == 0  # lines and summary only
    assert keep(True, 5) is None  # every reply, listed in the document
    assert keep(True, None) == ENDLESS_JSON_RECORDS  # the most recent, counted


def test_a_result_without_records_still_has_its_summary_and_document() -> None:
    stats = PingStats()
    for rtt in (0.001, 0.003, 0.002):
        stats = stats.with_reply(rtt)
    stats = stats.with_reply(0.004, duplicate=True).with_error()
    result = PingResult("198.19.0.5", 4, (), (), 3.0, 56, stats)
    summary = render.ping_summary(result)
    assert summary[1].startswith("4 packets transmitted, 3 received, +1 duplicates, +1 errors")
    assert summary[2] == "rtt min/avg/max/mdev = 1.000/2.000/3.000/0.816 ms"
    data = render.ping_host_data(result)
    assert data["received"] == 3 and data["min_ms"] == 1.0 and data["jitter_ms"] == 1.5
    assert data["replies"] == [] and data["rtts_ms"] == []
    assert data["replies_omitted"] == 4 and data["errors_omitted"] == 1

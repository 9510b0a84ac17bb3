"""Plain output stays iputils-compatible; JSON follows the rawprobe/2 schema."""

import json

import output_check
from rich.console import Console

from rawprobe.cli import render
from rawprobe.probes.ping_models import PingError, PingReply, PingResult


def result(rtts: list[float], transmitted: int, address: str = "198.19.0.5") -> PingResult:
    replies = tuple(PingReply(i + 1, address, rtt, 61, 64) for i, rtt in enumerate(rtts))
    return PingResult(address, transmitted, replies, (), 0.402, 56)


def test_rtt_precision_follows_iputils() -> None:
    assert render.format_rtt(0.000083) == "0.083"
    assert render.format_rtt(0.00123) == "1.23"
    assert render.format_rtt(0.0123) == "12.3"
    assert render.format_rtt(0.123) == "123"


def test_reply_error_and_dup_lines() -> None:
    reply = PingReply(1, "198.19.0.5", 0.000083, 61, 64)
    assert render.ping_event_line(reply) == (
        "64 bytes from 198.19.0.5: icmp_seq=1 ttl=61 time=0.083 ms"
    )
    dup = PingReply(1, "198.19.0.5", 0.0001, 61, 64, duplicate=True)
    assert str(render.ping_event_line(dup)).endswith(" (DUP!)")
    error = PingError(2, "198.18.2.2", "Time to live exceeded", 11, 0)
    assert render.ping_event_line(error) == "From 198.18.2.2 icmp_seq=2 Time to live exceeded"
    # Several hosts: the error line names the target it belongs to.
    assert render.ping_event_line(error, "198.19.0.5") == (
        "From 198.18.2.2 icmp_seq=2 Time to live exceeded (to 198.19.0.5)"
    )
    refused = PingError(3, "198.19.0.5", "Network is unreachable")
    assert render.ping_event_line(refused) == "ping: Network is unreachable (icmp_seq=3)"
    assert render.ping_event_line(refused, "198.19.0.5") == (
        "ping: Network is unreachable (icmp_seq=3 to 198.19.0.5)"
    )


def test_banner_v4_and_v6() -> None:
    assert render.ping_banner("t", "198.19.0.5", 56) == "PING t (198.19.0.5) 56(84) bytes of data."
    assert render.ping_banner("t", "2001:db8::1", 56) == "PING t (2001:db8::1) 56 data bytes"


def test_summary_lines() -> None:
    lines = render.ping_summary(result([0.001, 0.002, 0.003], 3))
    assert lines == [
        "--- 198.19.0.5 ping statistics ---",
        "3 packets transmitted, 3 received, 0% packet loss, time 402ms",
        "rtt min/avg/max/mdev = 1.000/2.000/3.000/0.816 ms",
    ]
    lossy = render.ping_summary(result([0.001], 3))
    assert lossy[1] == "3 packets transmitted, 1 received, 66.67% packet loss, time 402ms"
    silent = render.ping_summary(result([], 2))
    assert silent[1:] == ["2 packets transmitted, 0 received, 100% packet loss, time 402ms"]


def test_json_document_keys_and_units() -> None:
    results = [result([0.001, 0.002], 2), result([], 2, "198.19.0.6")]
    document = output_check.document(json.dumps(render.ping_document(results, ["target", "b"])))
    host = document["hosts"][0]
    assert document["schema"] == "rawprobe/2" and document["command"] == "ping"
    assert host["host"] == "target" and host["address"] == "198.19.0.5"
    assert [h["state"] for h in document["hosts"]] == ["up", "down"]
    assert document["summary"] == {
        "interrupted": False,
        "sockets": "raw",
        "hosts_up": 1,
        "hosts_down": 1,
    }
    assert (host["transmitted"], host["received"]) == (2, 2)
    assert host["rtts_ms"] == [1.0, 2.0]
    assert host["min_ms"] == 1.0 and host["max_ms"] == 2.0


def test_rich_table_has_a_row_per_host() -> None:
    console = Console(width=120, record=True)
    console.print(render.ping_table([result([0.001], 1), result([], 1, "198.19.0.6")]))
    text = console.export_text()
    assert "198.19.0.5" in text and "198.19.0.6" in text and "100.0%" in text

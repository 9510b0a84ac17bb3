"""RTT from kernel stamps, with the monotonic clock as a guard against clock steps."""

import pytest

from rawprobe.transport.base import Reply, Sent, measured_rtt, rtt_s
from rawprobe.transport.txstamps import TxStamp


def reply(received_ns: int, received_s: float) -> Reply:
    return Reply(
        (1, b"\0" * 4, 1, 1), 2, bytes((198, 19, 0, 5)), b"", 64, received_ns, received_s, 1
    )


SENT = Sent(realtime_ns=1_000_000_000_000, monotonic_s=50.0)


def test_kernel_stamp_is_used() -> None:
    assert rtt_s(SENT, reply(1_000_000_120_000, 50.0002)) == pytest.approx(120e-6)


def test_a_late_read_keeps_the_kernel_stamp() -> None:
    """The reader may be busy for a while: the kernel stamp is still the truth (found
    in review: a read 50 ms late used to fall back to the coarse clock)."""
    assert rtt_s(SENT, reply(1_000_000_120_000, 50.3)) == pytest.approx(120e-6)


@pytest.mark.parametrize("step_ns", [-5_000_000_000, 7_000_000_000])
def test_a_wall_clock_step_falls_back_to_the_monotonic_clock(step_ns: int) -> None:
    assert rtt_s(SENT, reply(1_000_000_120_000 + step_ns, 50.0003)) == pytest.approx(300e-6)


# -- the kernel's transmit stamp (transport/txstamps.py) ----------------------------------


def stamped(kernel_ns: int) -> Sent:
    """SENT, with the kernel's transmit stamp ``kernel_ns`` (0: not reported yet)."""
    tx = TxStamp(SENT.realtime_ns)
    tx.kernel_ns = kernel_ns
    return SENT._replace(tx=tx)


def test_the_kernel_transmit_stamp_starts_the_rtt() -> None:
    """30 µs of the host's own send path (user stamp to driver) leave the RTT."""
    sent = stamped(1_000_000_030_000)
    assert measured_rtt(sent, reply(1_000_000_120_000, 50.0002)) == (pytest.approx(90e-6), "kernel")
    assert rtt_s(sent, reply(1_000_000_120_000, 50.0002)) == pytest.approx(90e-6)


def test_without_a_transmit_stamp_the_user_stamp_starts_it() -> None:
    for sent in (SENT, stamped(0)):  # none asked for; asked for, not reported (yet)
        assert measured_rtt(sent, reply(1_000_000_120_000, 50.0002)) == (
            pytest.approx(120e-6),
            "user",
        )


def test_a_transmit_stamp_before_the_send_is_not_believed() -> None:
    sent = stamped(SENT.realtime_ns - 1)
    assert measured_rtt(sent, reply(1_000_000_120_000, 50.0002))[1] == "user"


def test_a_clock_step_falls_back_to_the_monotonic_clock_and_says_user() -> None:
    sent = stamped(1_000_000_030_000)
    rtt, source = measured_rtt(sent, reply(1_000_000_120_000 - 5_000_000_000, 50.0003))
    assert (rtt, source) == (pytest.approx(300e-6), "user")

import pytest

from rawprobe.transport.pacing import TokenBucket


def test_burst_then_paced_at_rate() -> None:
    bucket = TokenBucket(rate_pps=100, burst=2, now=0.0)
    assert bucket.take(0.0) == 0.0
    assert bucket.take(0.0) == 0.0
    # Third packet in the same instant must wait one token's worth: 10 ms.
    assert bucket.take(0.0) == pytest.approx(0.01)


def test_long_run_rate_is_the_configured_rate() -> None:
    bucket = TokenBucket(rate_pps=1000, burst=1, now=0.0)
    now = 0.0
    for _ in range(10_000):
        now += bucket.take(now)
    # 10,000 packets at 1,000/s take ~10 s (the first rides on the initial token).
    assert now == pytest.approx(9.999, rel=1e-3)


def test_idle_time_refills_only_up_to_burst() -> None:
    bucket = TokenBucket(rate_pps=10, burst=3, now=0.0)
    waits = [bucket.take(100.0) for _ in range(4)]
    assert waits[:3] == [0.0, 0.0, 0.0]
    assert waits[3] == pytest.approx(0.1)


def test_zero_rate_means_unlimited() -> None:
    bucket = TokenBucket(rate_pps=0)
    assert all(bucket.take(0.0) == 0.0 for _ in range(100_000))


def test_negative_rate_is_refused() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate_pps=-1)

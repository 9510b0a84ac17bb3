"""RTT accuracy: rawprobe's median RTT against iputils ping's on the same lab path.

Builds a lab, then alternates rounds of iputils `ping` and rawprobe (in-process,
sockets in the client namespace) to the lab target, so both see the same conditions.
Prints both medians, their difference in microseconds and the ratio. Root only; every
packet stays inside the lab this script builds.

    sudo .venv/bin/python bench/rtt_vs_iputils.py [--rounds 10] [--count 50] [-6]
"""

from __future__ import annotations

import argparse
import re
import statistics

import anyio

from rawprobe.lab import Lab, lab
from rawprobe.probes.ping import PingOptions, ping_protocols, ping_with
from rawprobe.transport.raw import open_transport

_TIME = re.compile(r"time=([\d.]+) ms")


def iputils_rtts_ms(the_lab: Lab, target: str, count: int, interval_s: float) -> list[float]:
    done = the_lab.run("client", "ping", "-n", "-c", str(count), "-i", str(interval_s), target)
    return [float(value) for value in _TIME.findall(done.stdout)]


async def rawprobe_rtts_ms(the_lab: Lab, target: str, count: int, interval_s: float) -> list[float]:
    options = PingOptions(count=count, interval_s=interval_s, timeout_s=1.0)
    with the_lab.entered("client"):
        async with open_transport(ping_protocols([target])) as transport:
            result = await ping_with(transport, target, options)
    return [rtt * 1000.0 for rtt in result.rtts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--interval", type=float, default=0.01)
    parser.add_argument("-6", dest="v6", action="store_true", help="IPv6 target")
    parser.add_argument("--backend", default="asyncio", choices=("asyncio", "trio"))
    args = parser.parse_args()

    with lab() as the_lab:
        target = the_lab.target_v6 if args.v6 else the_lab.target_v4
        ours: list[float] = []
        theirs: list[float] = []
        round_medians = []
        for _ in range(args.rounds):
            a = iputils_rtts_ms(the_lab, target, args.count, args.interval)
            b = anyio.run(
                rawprobe_rtts_ms, the_lab, target, args.count, args.interval, backend=args.backend
            )
            theirs += a
            ours += b
            round_medians.append((statistics.median(a), statistics.median(b)))
    med_theirs, med_ours = statistics.median(theirs), statistics.median(ours)
    print(f"target {target}, {args.rounds} interleaved rounds of {args.count} probes each")
    for i, (a, b) in enumerate(round_medians, 1):
        print(f"  round {i:2}: iputils {a * 1000:7.1f} us   rawprobe {b * 1000:7.1f} us")
    print(f"iputils ping median RTT: {med_theirs * 1000:8.1f} us ({len(theirs)} replies)")
    print(f"rawprobe     median RTT: {med_ours * 1000:8.1f} us ({len(ours)} replies)")
    print(f"difference (rawprobe - iputils): {(med_ours - med_theirs) * 1000:+.1f} us")
    print(f"ratio rawprobe/iputils: {med_ours / med_theirs:.3f}")


if __name__ == "__main__":
    main()

"""rawprobe on asyncio: a ping, then a trace and a scan sharing one transport.

In the lab's client namespace (root):
    rawprobe lab exec -- .venv/bin/python docs/examples/library_asyncio.py
"""

import asyncio

import rawprobe

TARGET = "198.19.0.5"  # the lab's target


async def main() -> None:
    ping = await rawprobe.ping(TARGET, count=3, interval_s=0.2)
    print(f"ping: {ping.received} of {ping.transmitted} replies")

    # One set of raw sockets for both probes (ICMP for the trace's errors, TCP for both).
    async with rawprobe.open_transport(protocols=("icmp", "tcp")) as transport:
        trace, scan = await asyncio.gather(
            rawprobe.traceroute(TARGET, method="tcp", port=80, transport=transport),
            rawprobe.syn_scan(TARGET, "22,80,443,1000-1002", transport=transport),
        )
    print("path:", " ".join(address or "*" for address in trace.path))
    for host in scan.hosts:
        print(f"open on {host.address}:", ",".join(map(str, host.open_ports)))


asyncio.run(main())

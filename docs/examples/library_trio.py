"""rawprobe on trio: a sweep, then many pings in a nursery over one transport, and
traces streamed as they complete.

In the lab's client namespace (root):
    rawprobe lab exec -- .venv/bin/python docs/examples/library_trio.py
"""

import trio

import rawprobe


async def main() -> None:
    found = await rawprobe.sweep("198.19.0.0/28", timeout_s=0.5)
    print(f"sweep: {found.alive_count} of {found.targets} up")

    results: dict[str, rawprobe.PingResult] = {}

    async def one(transport: rawprobe.Transport, address: str) -> None:
        results[address] = await rawprobe.ping(address, count=2, transport=transport)

    async with rawprobe.open_transport() as transport, trio.open_nursery() as nursery:
        for address in found.alive[:4]:
            nursery.start_soon(one, transport, address)
    print("pinged:", " ".join(f"{a}={r.received}" for a, r in sorted(results.items())))

    targets = ["198.19.0.5", "2001:db8:ff::5"]
    async with rawprobe.traceroute_many(targets, method="udp") as traces:
        async for trace in traces:  # as each completes
            print(f"trace {trace.target}: {len(trace.hops)} hops, reached {trace.reached}")


trio.run(main)

"""Put-with-callback latency while monitoring on the same connection, with and without
the TCP_NODELAY fix, same client, rounds alternating between the two IOCs.

    python benchmarks/put_latency.py [--rounds 5 --puts 200]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from ssb_ioc.launch import IOCProcess, free_port_pair, loopback_ca_env


def one_round(context, prefix: str, puts: int) -> list[float]:
    from caproto import ChannelType

    pv, monitor = context.get_pvs(prefix + "Press:KP-SP", prefix + "Press:Pressure-RB")
    pv.wait_for_connection(timeout=5)
    monitor.wait_for_connection(timeout=5)
    seen = []

    def on_update(sub, response):
        seen.append(response)

    sub = monitor.subscribe(data_type=ChannelType.TIME_DOUBLE)
    sub.add_callback(on_update)
    times = []
    for i in range(puts):
        t0 = time.perf_counter()
        pv.write([19.0 + (i % 2)], wait=True, timeout=5)
        times.append(time.perf_counter() - t0)
    sub.clear()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--puts", type=int, default=200)
    args = parser.parse_args()
    variants = {
        "with TCP_NODELAY (default)": (),
        "without (--no-tcp-nodelay)": ("--no-tcp-nodelay",),
    }
    # One port each (two servers cannot share a unicast search port); one client for both.
    ports = {name: free_port_pair() for name in variants}
    client_env = loopback_ca_env(next(iter(ports.values())))
    client_env["EPICS_CA_ADDR_LIST"] = " ".join(f"127.0.0.1:{p}" for p in ports.values())
    os.environ.update(client_env)
    from caproto.threading.client import Context

    context = Context()
    iocs = {
        name: IOCProcess(env=loopback_ca_env(ports[name]), extra_args=extra, speed=100).start()
        for name, extra in variants.items()
    }
    results: dict[str, list[float]] = {name: [] for name in variants}
    try:
        for _ in range(args.rounds):
            for name, ioc in iocs.items():
                results[name] += one_round(context, ioc.prefix, args.puts)
    finally:
        for ioc in iocs.values():
            ioc.stop()
    print("| server | puts | median (ms) | p99 (ms) | stalls > 20 ms | puts/s |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, times in results.items():
        q = statistics.quantiles(times, n=100)
        stalls = sum(t > 0.020 for t in times) / len(times) * 100
        print(
            f"| {name} | {len(times)} | {statistics.median(times) * 1e3:.2f} | "
            f"{q[98] * 1e3:.2f} | {stalls:.1f} % | {len(times) / sum(times):,.0f} |"
        )


if __name__ == "__main__":
    main()

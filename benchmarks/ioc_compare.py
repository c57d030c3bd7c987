"""The project's IOC against pythonSoftIOC (EPICS base) serving equivalent PVs, with the
same client in the same run; and the project's IOC without its TCP_NODELAY fix.

    pip install -e ".[bench]"    # softioc
    python benchmarks/ioc_compare.py [--rounds 3] [--figure docs/figures/ioc_compare.png]

Servers, started fresh for each round, in turn: ``ssb-ioc`` (speed 1: its simulation
runs as in a lab), ``ssb-ioc --no-tcp-nodelay``, and ``benchmarks/softioc_server.py``.
Client: caproto's threading client, loopback, non-default port. Rows:

* get: 2,000 reads of ``Press:Pressure-RB`` one after another (round trip);
* put-callback: 2,000 puts to ``Press:KP-SP``, each waiting for its completion;
* monitor N/s: ``Diag:Counter-RB`` posted N times a second for 3 s; fraction of the
  posted updates the subscription received (posted = counter span);
* put-callback while monitoring: the puts again while a subscription on the same
  connection receives 20 updates/s (the rig's readback rate: where Nagle's algorithm
  stalls puts without TCP_NODELAY) and 1,000 updates/s.

Throughput = operations (or updates received) per second; medians over the rounds, the
ratio is the project's IOC / pythonSoftIOC.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import threading
import time
from pathlib import Path

import numpy as np

from ssb_ioc.launch import IOCProcess, free_port_pair, loopback_ca_env, random_prefix

N_OPS = 2000
MONITOR_RATES = (100, 1000, 10_000)
MONITOR_SECONDS = 3.0
SERVERS = ("ssb-ioc", "ssb-ioc, no TCP_NODELAY", "pythonSoftIOC")


def start(server: str, env: dict) -> IOCProcess:
    if server == "pythonSoftIOC":
        ioc = IOCProcess(env=env)
        script = Path(__file__).with_name("softioc_server.py")
        ioc.command = [sys.executable, str(script), ioc.prefix]
        ioc.heartbeat = f"{ioc.prefix}Press:Pressure-RB"  # 100 once it serves
    else:
        extra = ["--no-tcp-nodelay"] if "no TCP" in server else []
        ioc = IOCProcess(random_prefix(), env=env, speed=1.0, extra_args=extra)
    return ioc.start(timeout=60)


def pv(ctx, name):
    (channel,) = ctx.get_pvs(name, timeout=5)
    channel.wait_for_connection(timeout=10)
    return channel


def timed(call, n: int) -> np.ndarray:
    out = np.empty(n)
    for k in range(n):
        t0 = time.perf_counter()
        call(k)
        out[k] = time.perf_counter() - t0
    return out


def monitor_fraction(ctx, prefix: str, rate: float) -> tuple[float, float]:
    """(fraction of posted updates received, updates received per second)."""
    counter, setter = pv(ctx, prefix + "Diag:Counter-RB"), pv(ctx, prefix + "Diag:Rate-SP")
    seen = []
    lock = threading.Lock()

    def on_update(sub, response):
        with lock:
            seen.append(int(response.data[0]))

    sub = counter.subscribe()
    sub.add_callback(on_update)
    setter.write([rate], wait=True, timeout=5)
    deadline = time.monotonic() + 0.5
    while time.monotonic() < deadline:  # warm-up: the posting loop starts
        time.sleep(0.01)
    with lock:
        first = len(seen)
    t0 = time.monotonic()
    while time.monotonic() - t0 < MONITOR_SECONDS:
        time.sleep(0.05)
    with lock:
        window = seen[first:]
    setter.write([0.0], wait=True, timeout=5)
    sub.clear()
    if len(window) < 2:
        return 0.0, 0.0
    posted = window[-1] - window[0] + 1
    return min(len(window) / posted, 1.0), len(window) / MONITOR_SECONDS


def measure(server: str) -> dict[str, float]:
    from caproto.threading.client import Context

    env = loopback_ca_env(free_port_pair())
    os.environ.update(env)
    ioc = start(server, env)
    ctx = Context()
    try:
        prefix = ioc.prefix
        read_pv, put_pv = pv(ctx, prefix + "Press:Pressure-RB"), pv(ctx, prefix + "Press:KP-SP")
        timed(lambda k: read_pv.read(timeout=5), 200)  # warm-up
        gets = timed(lambda k: read_pv.read(timeout=5), N_OPS)
        puts = timed(lambda k: put_pv.write([19.0 + (k % 2) * 0.1], wait=True, timeout=5), N_OPS)
        out = {
            "get median": np.median(gets) * 1e3,
            "get p99": np.percentile(gets, 99) * 1e3,
            "get /s": N_OPS / gets.sum(),
            "put median": np.median(puts) * 1e3,
            "put p99": np.percentile(puts, 99) * 1e3,
            "put /s": N_OPS / puts.sum(),
        }
        for rate in MONITOR_RATES:
            fraction, received = monitor_fraction(ctx, prefix, rate)
            out[f"monitor {rate}"] = fraction
            out[f"monitor {rate} /s"] = received
        counter, setter = pv(ctx, prefix + "Diag:Counter-RB"), pv(ctx, prefix + "Diag:Rate-SP")
        sub = counter.subscribe()
        sub.add_callback(lambda sub, response: None)
        for rate in (20, 1000):  # the rig's readback rate, and a busy connection
            setter.write([float(rate)], wait=True, timeout=5)
            busy = timed(
                lambda k: put_pv.write([19.0 + (k % 2) * 0.1], wait=True, timeout=5), N_OPS
            )
            out |= {
                f"busy{rate} put median": np.median(busy) * 1e3,
                f"busy{rate} put p99": np.percentile(busy, 99) * 1e3,
                f"busy{rate} put /s": N_OPS / busy.sum(),
            }
        setter.write([0.0], wait=True, timeout=5)
        sub.clear()
        return out
    finally:
        ctx.disconnect()
        ioc.stop()


ROWS = [
    ("get round trip", "get median", "get p99", "get /s"),
    ("put with callback", "put median", "put p99", "put /s"),
    ("put, monitoring 20/s", "busy20 put median", "busy20 put p99", "busy20 put /s"),
    ("put, monitoring 1,000/s", "busy1000 put median", "busy1000 put p99", "busy1000 put /s"),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--figure", default="docs/figures/ioc_compare.png")
    args = parser.parse_args()
    results: dict[str, list[dict]] = {s: [] for s in SERVERS}
    for r in range(args.rounds):
        order = SERVERS if r % 2 == 0 else SERVERS[::-1]
        for server in order:
            results[server].append(measure(server))
            print(f"round {r + 1}: {server} done", file=sys.stderr, flush=True)

    def med(server, key):
        return statistics.median(m[key] for m in results[server])

    def span(server, key):
        values = [m[key] for m in results[server]]
        return f"{min(values):.2f}..{max(values):.2f}"

    print("| operation | server | median (ms) | p99 (ms) | ops/s | ratio to pythonSoftIOC |")
    print("|---|---|---:|---:|---:|---:|")
    for title, m_key, p_key, t_key in ROWS:
        base = med("pythonSoftIOC", t_key)
        for server in SERVERS:
            print(
                f"| {title} | {server} | {med(server, m_key):.3f} | {med(server, p_key):.3f} "
                f"({span(server, p_key)}) | {med(server, t_key):,.0f} | "
                f"{med(server, t_key) / base:.2f} |"
            )
    print("\n| monitor updates posted | server | fraction received | received/s | ratio |")
    print("|---|---|---:|---:|---:|")
    for rate in MONITOR_RATES:
        base = med("pythonSoftIOC", f"monitor {rate} /s")
        for server in SERVERS:
            print(
                f"| {rate:,}/s | {server} | {med(server, f'monitor {rate}'):.3f} | "
                f"{med(server, f'monitor {rate} /s'):,.0f} | "
                f"{med(server, f'monitor {rate} /s') / base:.2f} |"
            )
    figure(results, med, args.figure)


def figure(results, med, path: str) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 4.5), layout="constrained")
    left, right = fig.subplots(1, 2)
    labels = ["get", "put", "put,\nmonitor 20/s", "put,\nmonitor 1,000/s"]
    x = np.arange(len(labels))
    for k, server in enumerate(SERVERS):
        p99 = [med(server, row[2]) for row in ROWS]
        left.bar(x + (k - 1) * 0.27, p99, 0.27, label=server)
    left.set_xticks(x, labels)
    left.set_ylabel("p99 round trip / ms")
    left.set_yscale("log")
    left.axhline(5.0, color="k", ls=":", label="5 ms target")
    left.legend(fontsize=8)
    x = np.arange(len(MONITOR_RATES))
    for k, server in enumerate(SERVERS):
        fractions = [med(server, f"monitor {rate}") for rate in MONITOR_RATES]
        right.bar(x + (k - 1) * 0.27, fractions, 0.27, label=server)
    right.set_xticks(x, [f"{r:,}/s" for r in MONITOR_RATES])
    right.set_ylabel("fraction of monitor updates received")
    right.set_ylim(0, 1.05)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"\nfigure: {path}")


if __name__ == "__main__":
    main()

"""Resident memory of the IOC while several Channel Access clients monitor every PV.

    pip install -e ".[bench]"    # psutil
    python benchmarks/monitor_memory.py [--clients 10] [--rounds 6] [--slow] [--stuck N]
        [--figure docs/figures/monitor_memory.png]

Reproduces a report: ten clients monitoring every PV (the three 140,000-element
``Rows-RB`` arrays among them, since replaced by page PVs) grew the IOC from 85 to
298 MB over six rounds, never released; caproto's server keeps a backlog of updates
per subscription.

An ``ssb-ioc`` subprocess (speed 5000, loopback, random prefix) charges the cell at 1 mA
with a sample logged every second of test time and full-rate load-cell sampling on, so
the bulk buffers fill. ``--clients`` subprocesses (this script with ``--client``), each
with its own caproto threading client context, subscribe to every PV the IOC serves and
count the updates their callbacks handle. A writer in this process drives the traffic of
the acquiring process: read cycles of ``Cyc:Buf:Page0-RB``, ``Evt:Buf:Page0-RB`` and
``LC:Fast:Page0-RB`` (the pages that fill first; each read fills its page PV), so every
read posts the bulk arrays to every client. A round is ``--cycles`` (50) such read
cycles or ``--round-seconds`` of them, one every ``--period`` s (0: back to back).

Rows of the table: the IOC's resident set size (RSS, psutil) before the clients connect,
once all are subscribed, after each round, once the clients have received everything the
IOC queued for them ("drained": the writer stops and puts a marker to ``Cyc:Cycle-SP``
that every client must receive) and after the clients have disconnected (and the IOC's
RSS has settled). "updates handled" counts the clients' callbacks since the row before.
A thread samples the IOC's and the clients' RSS every 0.25 s for the peaks; if together
they pass ``--max-total-mb`` it kills the clients (and the IOC if it alone is over) and
the run ends early: a guard for the machine, reported under the table. ``--figure PATH``
plots the IOC's sampled RSS against the table's wall time, the rounds shaded (a PNG).

The clients' sockets get a 256 kB receive buffer (``--client-rcvbuf``; 0 = the kernel's
autotuning, up to 32 MB here): caproto's threading client parses each read by slicing
copies of the rest of it, and every parsed update keeps its copy alive, so with megabyte
reads a client held gigabytes (one was OOM-killed at 11.7 GB). The IOC's allocator is
left alone unless ``--ioc-mmap-threshold`` sets glibc's ``MALLOC_MMAP_THRESHOLD_`` (does
the IOC's RSS come back then?).

* ``--slow``: each client's callback sleeps ``--slow-seconds`` (0.05) per update, a slow
  consumer. caproto's threading client reads its socket in its own thread and queues the
  callbacks, so that backlog builds in the client ("queued" column), not in the IOC.
* ``--stuck N``: freeze N of the clients (SIGSTOP) once subscribed and resume them
  (SIGCONT) after the last round: clients that stop reading their sockets, the worst
  case for the IOC. Frozen clients report their counts from before the freeze.

Flat after warm-up = small growth from round 2 to the last round (printed last).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

from ssb_ioc.launch import IOCProcess, free_port_pair, loopback_ca_env, random_prefix

BUFFER_PAGES = ("Cyc:Buf:Page0-RB", "Evt:Buf:Page0-RB", "LC:Fast:Page0-RB")
MARKER_PV = "Cyc:Cycle-SP"  # a setting without effect until a cycler step starts
MARKER = 7.0
REPLY_TIMEOUT = 30.0  # s for a client to answer a report request
SAMPLE_PERIOD = 0.25  # s between RSS samples


def pv_names(prefix: str) -> list[str]:
    """Every PV the IOC serves with ``prefix`` (its PV database, built without serving)."""
    from ssb_ioc.server import RigIOC
    from ssb_ioc.sim import Rig, load_cell_file

    logging.disable(logging.WARNING)  # caproto's warnings on large arrays: the IOC logs them
    try:
        return list(RigIOC(prefix=prefix, backend=Rig(load_cell_file("si-nmc"))).pvdb)
    finally:
        logging.disable(logging.NOTSET)


def rss_mb(pid: int) -> float:
    import psutil

    try:
        return psutil.Process(pid).memory_info().rss / 1e6
    except psutil.Error:
        return 0.0


# --- client mode: a subprocess monitoring every PV ------------------------------------


def run_client(prefix: str, slow: float, timeout: float, rcvbuf: int) -> None:
    """Subscribe to every PV, print ``ready``, then answer each ``report`` line on stdin
    with ``report <updates handled> <callbacks queued> <last marker value received>``;
    exit on ``stop`` or EOF (the socket closes with the process, as when a client quits).
    """
    from caproto.threading.client import Context

    names = pv_names(prefix)
    lock = threading.Lock()
    counts = {"updates": 0}
    first: set[str] = set()
    all_seen = threading.Event()

    def on_update(sub, response):
        if slow:
            time.sleep(slow)
        with lock:
            counts["updates"] += 1
            if sub.pv.name not in first:
                first.add(sub.pv.name)
                if len(first) == len(names):
                    all_seen.set()

    context = Context()
    pvs = context.get_pvs(*names, timeout=timeout)
    for pv in pvs:
        pv.wait_for_connection(timeout=timeout)
    if rcvbuf:
        for cm in list(context.circuit_managers.values()):
            cm.socket.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    subs = {pv.name: pv.subscribe() for pv in pvs}
    for sub in subs.values():
        sub.add_callback(on_update)  # held weakly by caproto: on_update lives to the end
    if not all_seen.wait(timeout):
        missing = sorted(set(names) - first)[:5]
        print(f"error: no first update within {timeout:g} s from {missing}", flush=True)
        os._exit(1)
    marker = subs[prefix + MARKER_PV]
    print(f"ready {len(subs)}", flush=True)

    def queued() -> int:
        total = 0
        for cm in list((context.circuit_managers or {}).values()):
            work = getattr(cm.user_callback_executor, "_work_queue", None)  # private
            total += work.qsize() if work is not None else 0
        return total

    for line in sys.stdin:  # EOF: the parent has gone
        command = line.strip()
        if command == "report":
            with lock:
                updates = counts["updates"]
            received = marker.most_recent_response  # set on receipt, before callbacks run
            value = float(received.data[0]) if received is not None else -1.0
            print(f"report {updates} {queued()} {value:g}", flush=True)
        elif command == "stop":
            break
    sys.stdout.flush()
    os._exit(0)  # no queued callbacks of a slow client are run; the kernel closes the socket


class Client:
    """A client subprocess, a thread collecting the lines it prints, its log in a file."""

    def __init__(self, prefix: str, args: argparse.Namespace):
        command = [sys.executable, os.path.abspath(__file__), "--client", prefix]
        command += ["--connect-timeout", str(args.connect_timeout)]
        command += ["--slow-seconds", str(args.slow_seconds if args.slow else 0.0)]
        command += ["--client-rcvbuf", str(args.client_rcvbuf)]
        self.log = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,  # the lifeline: it exits when this closes
            stdout=subprocess.PIPE,
            stderr=self.log,
            text=True,
            start_new_session=True,  # Ctrl-C reaches us only; we stop the clients
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.frozen = False
        self.died = ""
        self.last = (0, 0, -1.0)  # updates handled, callbacks queued, marker received
        self.stderr = ""
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.put(line.strip())
        self.lines.put("eof")

    def expect(self, word: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"client {self.process.pid}: no {word!r} in time") from None
            if line.startswith(word):
                return line
            if line.startswith(("error", "eof")):
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self.process.wait(5)
                self.log.seek(0)
                tail = self.log.read()[-2000:]
                code = self.process.returncode
                raise RuntimeError(f"client {self.process.pid} ({code}): {line}\n{tail}")

    def send(self, command: str) -> None:
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()

    def report(self) -> tuple[int, int, float]:
        """(updates handled, callbacks queued, marker); the last known ones while frozen
        or once the client has died (``died`` says why)."""
        if self.frozen or self.died:
            return self.last
        try:
            self.send("report")
            _, updates, pending, marker = self.expect("report", REPLY_TIMEOUT).split()
        except (OSError, RuntimeError) as ex:
            self.died = str(ex).strip() or type(ex).__name__
            return self.last
        self.last = (int(updates), int(pending), float(marker))
        return self.last

    def freeze(self, frozen: bool) -> None:
        self.process.send_signal(signal.SIGSTOP if frozen else signal.SIGCONT)
        self.frozen = frozen

    def stop(self, timeout: float = 10.0) -> None:
        process = self.process
        if self.frozen and process.poll() is None:
            self.freeze(False)
        with contextlib.suppress(OSError, ValueError):
            self.send("stop")
        with contextlib.suppress(OSError):
            process.stdin.close()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if not self.log.closed:
            self.log.seek(0)
            self.stderr = self.log.read()
            self.log.close()


class Sampler(threading.Thread):
    """RSS of the IOC and of the clients every SAMPLE_PERIOD; peaks; the memory guard."""

    def __init__(self, ioc_pid: int, max_total_mb: float):
        super().__init__(daemon=True)
        self.ioc_pid = ioc_pid
        self.max_total_mb = max_total_mb
        self.client_pids: list[int] = []
        self.killed = ""
        self.peak_ioc = self.peak_client = 0.0
        self.samples: list[tuple[float, float]] = []  # (time.monotonic(), IOC RSS MB)
        self.over = threading.Event()
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(SAMPLE_PERIOD):
            ioc = rss_mb(self.ioc_pid)
            self.samples.append((time.monotonic(), ioc))
            clients = [rss_mb(pid) for pid in list(self.client_pids)]
            self.peak_ioc = max(self.peak_ioc, ioc)
            self.peak_client = max(self.peak_client, *clients, 0.0)
            total = ioc + sum(clients)
            if total > self.max_total_mb and not self.over.is_set():
                self.over.set()  # kill our clients (and the IOC if it alone is over) now:
                pids = list(self.client_pids)  # a 0.25 s sample can be GBs late
                if ioc > self.max_total_mb:
                    pids.append(self.ioc_pid)
                for pid in pids:
                    with contextlib.suppress(OSError):
                        os.kill(pid, signal.SIGKILL)
                self.killed = (
                    f"memory guard: IOC {ioc:.0f} MB + clients {sum(clients):.0f} MB > "
                    f"{self.max_total_mb:g} MB (--max-total-mb): killed "
                    f"{'the IOC and ' if ioc > self.max_total_mb else ''}the clients"
                )

    def reset_peaks(self) -> tuple[float, float]:
        peaks = self.peak_ioc, self.peak_client
        self.peak_ioc = self.peak_client = 0.0
        return peaks


# --- the benchmark --------------------------------------------------------------------


def server_connections(pid: int, port: int) -> int:
    """Established TCP connections on the IOC's Channel Access port (0 once it is gone)."""
    import psutil

    try:
        connections = psutil.Process(pid).net_connections(kind="tcp")
    except psutil.Error:
        return 0
    return sum(
        1
        for c in connections
        if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == port
    )


def wait_until(predicate, timeout: float, what: str, poll: float = 0.05) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)


def settle(pid: int, timeout: float = 10.0) -> None:
    """Until the RSS stays within 2 MB over a second (the IOC frees what the clients held)."""
    samples: list[float] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        samples = [*samples[-4:], rss_mb(pid)]
        if len(samples) == 5 and max(samples) - min(samples) < 2.0:
            return
        time.sleep(SAMPLE_PERIOD)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--cycles", type=int, default=50, help="put cycles per round")
    parser.add_argument(
        "--round-seconds", type=float, help="rounds of this many wall s instead of --cycles"
    )
    parser.add_argument("--period", type=float, default=0.0, help="s between put cycles")
    parser.add_argument("--speed", type=float, default=5000.0)
    parser.add_argument("--slow", action="store_true", help="clients are slow consumers")
    parser.add_argument("--slow-seconds", type=float, default=0.05, help="sleep per update")
    parser.add_argument("--stuck", type=int, default=0, help="clients frozen (SIGSTOP)")
    parser.add_argument("--drain-timeout", type=float, default=45.0, help="s; then go on")
    parser.add_argument(
        "--max-total-mb", type=float, default=10_000.0, help="stop if IOC + clients pass this"
    )
    parser.add_argument(
        "--ioc-mmap-threshold",
        type=int,
        metavar="BYTES",
        help="run the IOC with MALLOC_MMAP_THRESHOLD_ (glibc) set to this",
    )
    parser.add_argument(
        "--client-rcvbuf",
        type=int,
        default=256 * 1024,
        metavar="BYTES",
        help="clients' socket receive buffer (0: the kernel's autotuning, see above)",
    )
    parser.add_argument("--connect-timeout", type=float, default=60.0)
    parser.add_argument("--figure", metavar="PATH", help="write a PNG of the IOC's RSS here")
    parser.add_argument("--client", metavar="PREFIX", help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.client:
        run_client(args.client, args.slow_seconds, args.connect_timeout, args.client_rcvbuf)
        return
    port = free_port_pair()
    env = loopback_ca_env(port)
    os.environ.update(env)  # before any caproto client context; inherited by the clients
    from caproto import ChannelType
    from caproto.threading.client import Context

    prefix = random_prefix("MEM")
    names = pv_names(prefix)
    kind = f"{'slow' if args.slow else 'normal'} clients"
    if args.stuck:
        kind += f" ({args.stuck} frozen)"
    ioc_env = dict(env)
    if args.ioc_mmap_threshold is not None:
        ioc_env["MALLOC_MMAP_THRESHOLD_"] = str(args.ioc_mmap_threshold)
        kind += f"; IOC with MALLOC_MMAP_THRESHOLD_={args.ioc_mmap_threshold}"
    if args.round_seconds:
        per_round = f"{args.round_seconds:g} s of put cycles"
    else:
        per_round = f"{args.cycles} put cycles"
    print(
        f"{args.clients} {kind}, monitoring all {len(names)} PVs; {args.rounds} rounds of "
        f"{per_round}; IOC at x{args.speed:g}",
        flush=True,
    )
    clients: list[Client] = []
    table: list[tuple] = []
    rounds: list[tuple[float, float]] = []  # (start, end) of each round, s since t0
    notes: list[str] = []
    client_logs: list[str] = []
    context = Context()
    ioc = IOCProcess(prefix, speed=args.speed, env=ioc_env, seed=1)
    sampler = None
    try:
        ioc.start(timeout=60)
        pid = ioc.process.pid
        sampler = Sampler(pid, args.max_total_mb)
        sampler.start()
        pvs = dict(zip(names, context.get_pvs(*names, timeout=10), strict=True))

        def put(name: str, value, timeout: float = 60.0):
            pv = pvs[prefix + name]
            pv.wait_for_connection(timeout=10)
            data_type = ChannelType.STRING if isinstance(value, str) else None
            pv.write([value], wait=True, timeout=timeout, data_type=data_type)

        def read(name: str, timeout: float = 60.0):
            pv = pvs[prefix + name]
            pv.wait_for_connection(timeout=10)
            pv.read(timeout=timeout)

        def ioc_alive() -> bool:
            if ioc.process.poll() is None:
                return True
            if not any("IOC exited" in note for note in notes):
                notes.append(f"IOC exited with code {ioc.process.returncode} (see its log)")
            return False

        put(MARKER_PV, 0.0)
        put("Cyc:LogPeriod-SP", 1.0)
        put("LC:Fast-SP", "On")
        put("Rig:CellCurrent-SP", 1e-3)
        t0 = time.monotonic()
        previous = 0

        def row(label: str, cycles: int | str = "") -> None:
            nonlocal previous
            reports = [c.report() for c in clients]
            updates = sum(r[0] for r in reports)
            peak_ioc, peak_client = sampler.reset_peaks()
            now = rss_mb(pid) if ioc_alive() else None
            table.append(
                (
                    label,
                    time.monotonic() - t0,
                    cycles,
                    now,
                    max(peak_ioc, now or 0.0),
                    updates - previous if clients else None,
                    sum(r[1] for r in reports) if clients else None,
                    max(
                        (rss_mb(c.process.pid) for c in clients if c.process.poll() is None),
                        default=None,
                    ),
                    peak_client or None,
                )
            )
            previous = updates
            print("  " + format_row(table[-1]), flush=True)

        row("before clients")
        clients = [Client(prefix, args) for _ in range(args.clients)]
        sampler.client_pids = [c.process.pid for c in clients]
        for c in clients:
            c.expect("ready", args.connect_timeout + 30)
        wait_until(
            lambda: server_connections(pid, port) >= args.clients + 1,
            30,
            "the clients' connections",
        )
        row("subscribed")
        for c in clients[: args.stuck]:
            c.freeze(True)
        for k in range(1, args.rounds + 1):
            cycles = 0
            round_start = time.monotonic() - t0
            end = time.monotonic() + (args.round_seconds or float("inf"))
            try:
                while not sampler.over.is_set() and (
                    time.monotonic() < end if args.round_seconds else cycles < args.cycles
                ):
                    started = time.monotonic()
                    for name in BUFFER_PAGES:
                        read(name)
                    cycles += 1
                    pause = args.period - (time.monotonic() - started)
                    if pause > 0:
                        time.sleep(pause)
            except Exception as ex:  # a read timed out or failed: is the IOC still there?
                if ioc_alive():
                    raise
                notes.append(f"round {k}: read failed ({type(ex).__name__})")
            rounds.append((round_start, time.monotonic() - t0))
            row(f"round {k}", cycles)
            if not ioc_alive():
                break
            if sampler.over.is_set():
                break
        for c in clients:
            if c.frozen:
                c.freeze(False)
        if ioc_alive():
            start = time.monotonic()
            put(MARKER_PV, MARKER)
            try:
                wait_until(
                    lambda: all(c.report()[2] == MARKER for c in clients) or not ioc_alive(),
                    args.drain_timeout,
                    "every client to receive the marker",
                    poll=0.25,
                )
                if ioc_alive():
                    notes.append(f"drained in {time.monotonic() - start:.1f} s")
            except TimeoutError as ex:
                notes.append(f"not drained: {ex}")
            row("drained")
        for c in clients:
            c.stop()
        client_logs = [c.stderr for c in clients]
        for c in clients:
            if c.died and not sampler.over.is_set():
                notes.append(f"client {c.process.pid} died (code {c.process.returncode})")
        sampler.client_pids = []
        clients = []
        wait_until(lambda: server_connections(pid, port) <= 1, 60, "the clients to go")
        settle(pid)
        row("clients gone")
    finally:
        if sampler is not None:
            sampler.done.set()
        for c in clients:
            c.stop()
        with contextlib.suppress(Exception):
            context.disconnect()
        ioc.stop()
    print_table(table, args)
    if sampler is not None and sampler.killed:
        notes.append(sampler.killed)
    for note in notes:
        print(note)
    summarize_log("IOC log", ioc.stderr)
    summarize_log(f"client logs ({len(client_logs)} clients)", "\n".join(client_logs))
    if args.figure and sampler is not None:
        samples = [(t - t0, mb) for t, mb in sampler.samples if t >= t0]
        plot(args.figure, samples, rounds, table, args)


HEADER = (
    "point",
    "wall s",
    "put cycles",
    "IOC RSS MB",
    "IOC peak MB",
    "updates handled (all clients)",
    "queued in clients",
    "client RSS max MB",
    "client peak MB",
)


def format_row(r: tuple) -> str:
    label, wall, cycles, mb, peak, updates, pending, client_mb, client_peak = r

    def number(value, spec: str) -> str:
        return "" if value is None else format(value, spec)

    cells = [
        label,
        f"{wall:.0f}",
        str(cycles),
        number(mb, ".0f") or "exited",
        f"{peak:.0f}",
        number(updates, ","),
        number(pending, ","),
        number(client_mb, ".0f"),
        number(client_peak, ".0f"),
    ]
    return "| " + " | ".join(cells) + " |"


def print_table(table: list[tuple], args: argparse.Namespace) -> None:
    print()
    print("| " + " | ".join(HEADER) + " |")
    print("|---|" + "---:|" * (len(HEADER) - 1))
    for r in table:
        print(format_row(r))
    mb = {r[0]: r[3] for r in table if r[3] is not None}
    rounds = [label for label in mb if label.startswith("round")]
    print()
    if "round 2" in mb and rounds[-1] != "round 2":
        print(f"IOC growth from round 2 to {rounds[-1]}: {mb[rounds[-1]] - mb['round 2']:+.0f} MB")
    if rounds and "subscribed" in mb:
        last = rounds[-1]
        print(f"IOC growth from subscribed to {last}: {mb[last] - mb['subscribed']:+.0f} MB")
    if "clients gone" in mb and "before clients" in mb:
        print(
            f"IOC once the clients left: {mb['clients gone'] - mb['before clients']:+.0f} MB "
            "against before clients"
        )


def plot(path: str, samples, rounds, table: list[tuple], args: argparse.Namespace) -> None:
    """IOC RSS against wall time since the table's zero, the rounds shaded, as a PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4.5), dpi=120, layout="tight")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    ax.plot(*zip(*samples, strict=True), lw=1.2, label="IOC RSS (every 0.25 s)")
    for k, (start, end) in enumerate(rounds, 1):
        ax.axvspan(start, end, color="C0" if k % 2 else "C2", alpha=0.12, lw=0)
        ax.text(
            (start + end) / 2,
            0.98,
            f"round {k}",
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="top",
            fontsize=8,
            rotation=90 if len(rounds) > 8 else 0,
        )
    for label, wall, _, mb, *_ in table:
        if label in ("subscribed", "clients gone") and mb is not None:
            marker, color = ("^", "C1") if label == "subscribed" else ("v", "C3")
            ax.plot(wall, mb, marker, color=color, ms=8, label=label)
    ax.set_ylim(0, 1.2 * max(mb for _, mb in samples))
    ax.set_xlim(left=0)
    ax.ticklabel_format(useOffset=False, style="plain")
    ax.set_xlabel("wall time since the start of the run (s)")
    ax.set_ylabel("IOC resident memory (MB)")
    clients = f"{args.clients} {'slow' if args.slow else 'normal'} clients"
    if args.stuck:
        clients += f" ({args.stuck} stuck)"
    per_round = f"{args.round_seconds:g} s" if args.round_seconds else f"{args.cycles} cycles"
    ax.set_title(
        f"IOC memory, {clients} monitoring every PV, {args.rounds} rounds of {per_round}",
        fontsize=10,
    )
    ax.legend(loc="lower right")
    ax.grid(alpha=0.3)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    fig.savefig(path)
    print(f"figure: {path}")


def summarize_log(title: str, text: str) -> None:
    """Distinct log records (first lines; arrays and traceback frames folded), counted."""
    records: dict[str, int] = {}
    for line in text.splitlines():
        if not line.strip() or line[0].isspace() or line.startswith("Traceback"):
            continue
        key = re.sub(r"^\d{4}-\d\d-\d\d [\d:,]+ ", "", line)  # the timestamp
        key = re.sub(r"[A-Z]{2,}[0-9a-f]{8}:", "", key)  # the random prefix
        key = re.sub(r"\(data=.*", "(...)", key)[:150]
        records[key] = records.get(key, 0) + 1
    if not records:
        print(f"{title}: empty")
        return
    print(f"{title}: {sum(records.values())} records, {len(records)} distinct")
    for key, n in sorted(records.items(), key=lambda item: -item[1])[:8]:
        print(f"  {n} x {key}")


if __name__ == "__main__":
    main()

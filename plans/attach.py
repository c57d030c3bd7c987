"""Attach to an experiment whose acquiring process is gone (``ssb attach``).

The protocol runs on the instrument (the IOC's sequencer), so losing the process that
acquired it loses nothing but the acquisition. :func:`attach` picks it up again:

1. the sequencer's table names its acquisition (``sequence_id``); the runs of that
   acquisition are found in the catalog;
2. the newest of them, if its writer is gone without a stop document (orphaned), is
   closed with ``exit_status: "fail"`` and a reason naming the lost acquisition and when;
3. a continuation run starts, with ``continues: <uid>`` and the same cell, protocol and
   study metadata, and collects every row the instrument logged since the last one stored
   (samples by sequence number; events and full-rate rows after the last stored), then
   follows the protocol to its end as :func:`~ssb_plans.cycling.run_protocol` does (a
   sequence paused, or held by an IOC restart, is resumed).

Readers treat the chain of linked runs as one experiment (:mod:`ssb_analysis.runs`).
"""

from __future__ import annotations

import datetime
import json
import threading
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from bluesky.protocols import Readable
from bluesky.utils import MsgGenerator

from ssb_analysis.timebase import run_origin
from ssb_devices import Rig

from .cycling import Acquisition, Follower, plan_steps, protocol_run, rig_limits
from .events import EventWatch, Limit
from .protocol import parse

NOT_COPIED = ("uid", "time", "scan_id", "heartbeat", "continues", "attached")


class AttachError(RuntimeError):
    """Nothing to attach to, or not now; the message says why and what to do."""


def acquisition_runs(catalog, sequence_id: str) -> list:
    """The runs of one acquisition (a chain linked by ``continues``), oldest first."""
    from tiled.queries import Key

    found = catalog.search(Key("sequence_id") == sequence_id)
    return sorted((found[uid] for uid in list(found)), key=lambda run: run.start["time"])


def _when(t: float) -> str:
    return datetime.datetime.fromtimestamp(t).isoformat(timespec="seconds")


def close_orphan(run, now: float | None = None) -> dict[str, Any]:
    """Give a run whose writer is gone its stop document: failed, and why."""
    now = time.time() if now is None else now
    beat = (run.metadata.get("heartbeat") or {}).get("last_seen")
    lost = f"last heard of at {_when(beat)}" if beat else "never heard of after its start"
    streams = {}
    for name in run:
        try:
            streams[name] = int(run[name].read().sizes.get("time", 0))
        except Exception:  # an unreadable stream counts as empty
            streams[name] = 0
    stop = {
        "uid": f"{run.start['uid']}-closed-by-attach",
        "run_start": run.start["uid"],
        "time": now,
        "exit_status": "fail",
        "reason": (
            f"acquisition lost: the process writing this run stopped ({lost}); "
            f"closed by `ssb attach` at {_when(now)}, which continues it in a new run"
        ),
        "num_events": streams,
    }
    run.update_metadata({"stop": stop})
    return stop


def _column(run, stream: str, field: str) -> np.ndarray:
    if stream not in run:
        return np.empty(0)
    data = run[stream].read()
    return np.asarray(data[field].values) if field in data else np.empty(0)


def _first_after(log, field: str, after: float) -> int:
    """Sequence number of the first row on the instrument with ``field`` > ``after``."""
    log.kickoff(start=int(log.oldest_seq.get(use_monitor=False)))
    for page in log.read_pages():
        later = page["seq"][page[field] > after]
        if len(later):
            return int(later[0])
    return int(log.next_seq.get(use_monitor=False))


def resume_points(rig: Rig, chain: Sequence) -> tuple[dict[str, int], int, dict[str, Any]]:
    """Where each flyer goes on (first row not stored), the next step record's completion
    number, and the stored samples of the step in progress (for its statistics)."""
    seqs = np.concatenate([_column(run, "samples", "seq") for run in chain] or [np.empty(0)])
    times = np.concatenate([_column(run, "samples", "test_time") for run in chain])
    started = min(run.start["time"] for run in chain)
    cyc, lc, ev = rig.cycler, rig.load_cell, rig.events
    first_time = float(times.min()) if len(times) else -np.inf
    resume = {
        cyc.samples.name: int(seqs.max()) + 1
        if len(seqs)
        else _first_after(cyc.samples, "test_time", _clock_at(chain[0], started)),
    }
    fast = np.concatenate([_column(run, "load_cell_fast", "seq") for run in chain])
    resume[lc.fast.name] = (
        int(fast.max()) + 1 if len(fast) else _first_after(lc.fast, "time", first_time)
    )
    stored_events = np.concatenate([_column(run, "events", "events_time") for run in chain])
    after = max([first_time, *stored_events.tolist()])
    resume[ev.buffer.name] = _first_after(ev.buffer, "time", after)
    spectra = np.concatenate([_column(run, "impedance", "spectrum") for run in chain])
    resume[cyc.impedance.name] = int(spectra.max()) if len(spectra) else 0
    steps = np.concatenate([_column(run, "steps", "step_step") for run in chain])
    last = chain[-1]
    rows = {k: _column(last, "samples", k) for k in ("test_time", "step", "pressure", "gap")}
    if len(steps) and len(rows["step"]):  # only the steps not recorded yet
        keep = rows["step"] > steps.max()
        rows = {k: v[keep] for k, v in rows.items()}
    return resume, len(steps) + 1, rows


def _clock_at(run, started: float) -> float:
    """The rig's clock when the acquisition began (its first primary reading)."""
    clock = _column(run, "primary", "rig_clock_time")
    return float(clock[0]) - 1e-9 if len(clock) else -np.inf


def wait_for_writer_gone(catalog, run, say=print) -> tuple[Any, str]:
    """A run whose writer may be gone (another host, or a beat not yet missed): wait,
    saying how long, until it misses its beats (orphaned) or beats again (alive); returns
    the run as read last and its status."""
    from ssb_analysis.runs import orphaned_in, status

    uid, beat = run.start["uid"], run.metadata["heartbeat"]
    last_seen, wait = beat["last_seen"], orphaned_in(run)
    say(
        f"ssb attach: run {uid[:8]}'s writer (pid {beat.get('pid')} on "
        f"{beat.get('host', 'another host')}) was last heard {time.time() - last_seen:.0f} s "
        f"ago; waiting up to {wait:.0f} s for it to miss its heartbeats",
        flush=True,
    )
    deadline = time.monotonic() + wait + 2.0
    found = status(run)
    while found == "running" and time.monotonic() < deadline:
        threading.Event().wait(1.0)  # the catalog has no change notice: look once a second
        run = catalog[uid]
        found = status(run)
        if found == "running" and run.metadata["heartbeat"]["last_seen"] > last_seen:
            break  # it beat again: alive
    return run, found


def lost_acquisition(rig: Rig, catalog, wait: bool = False) -> tuple[list, str, str]:
    """The runs of the acquisition the instrument's protocol belongs to, the sequence's
    state and the newest run's status; refuses (:class:`AttachError`) when there is
    nothing to attach to or its writer is still alive (``wait``: give a writer that may
    be gone the time to miss its heartbeats first)."""
    owner = json.loads(rig.sequencer.owner.get(use_monitor=False) or "{}")
    sequence_id = owner.get("sequence_id")
    state = rig.sequencer.state.get(use_monitor=False)
    if not sequence_id:
        raise AttachError(
            f"no protocol on the instrument at {rig.prefix!r} was started by run_protocol: "
            "nothing to attach to"
        )
    chain = acquisition_runs(catalog, sequence_id)
    if not chain:
        raise AttachError(
            f"the protocol on {rig.prefix!r} belongs to acquisition {sequence_id}, which is "
            "not in this catalog: attach with the catalog it was written to (--catalog)"
        )
    from ssb_analysis.runs import status

    last = chain[-1]
    found = status(last)
    if found == "running" and wait:
        last, found = wait_for_writer_gone(catalog, last)
        chain[-1] = last
    if found == "running":
        beat = last.metadata["heartbeat"]
        raise AttachError(
            f"run {last.start['uid'][:8]} is still being written by pid {beat.get('pid')} "
            f"on {beat.get('host', 'another host')} (heartbeat "
            f"{time.time() - beat['last_seen']:.0f} s ago): stop that acquisition first, or "
            "leave it be"
        )
    if state in ("Done", "Aborted", "Failed") and found not in ("orphaned", "unclosed"):
        raise AttachError(
            f"the protocol on {rig.prefix!r} ended ({state.lower()}) and its run "
            f"{last.start['uid'][:8]} was closed ({found}): nothing to attach to"
        )
    return chain, state, found


def attach(
    rig: Rig,
    catalog=None,
    *,
    detectors: Sequence[Readable] = (),
    detector_period: float | None = None,
    poll: float = 0.5,
    reactions: dict[str, str] | None = None,
    limits: Sequence[Limit] = (),
    md: dict[str, Any] | None = None,
    found: tuple[list, str, str] | None = None,
) -> MsgGenerator[str]:
    """Continue the acquisition of the protocol running on ``rig``'s instrument in a new
    run of ``catalog`` (default: :func:`~ssb_analysis.catalog.open_catalog`'s; see the
    module's docstring); returns the new run's uid. ``reactions`` default to those of
    the original run, and so do the detectors' schedule (``detector_period``, the steps
    read, open-circuit reads) for the ``detectors`` given again; ``found``:
    :func:`lost_acquisition`'s answer, if already asked."""
    if catalog is None:
        from ssb_analysis.catalog import open_catalog

        catalog = open_catalog()
    chain, state, status = found or lost_acquisition(rig, catalog)
    last = chain[-1]
    if status in ("orphaned", "unclosed"):
        close_orphan(last)
    start = dict(last.start)
    args = start.get("plan_args", {})
    protocol = parse(start["protocol"])
    capacity = float(args.get("capacity") or rig.cycler.capacity.get())
    planned = plan_steps(protocol, capacity, rig_limits(rig, capacity).i_max)
    resume, next_result, rows = resume_points(rig, chain)
    watch = EventWatch(reactions if reactions is not None else args.get("reactions", {}),
                       tuple(limits))  # fmt: skip
    fast = args.get("fast_steps", ())
    if detector_period is None and detectors:  # the detectors are read as they were
        detector_period = args.get("detector_period")
    acq = Acquisition(
        detectors, detector_period, poll, watch, fast, resume_from=resume,
        detector_steps=args.get("detector_steps", "all"),
        open_circuit_reads=bool(args.get("open_circuit_reads", False)),
    )  # fmt: skip
    acq.origin = run_origin(chain[0])[0]  # times from the acquisition's start
    follow = Follower({step.index: step for step in planned}, next_result=next_result)
    follow.keep([rows])
    _md = {k: v for k, v in start.items() if k not in NOT_COPIED}
    _md |= {
        "continues": start["uid"],
        "attached": {"at": time.time(), "sequence_state": state, "previous_status": status},
    }
    _md |= md or {}
    name = start.get("plan_name", "run_protocol")
    evaluate = conclusion(name, args, chain)
    return (
        yield from protocol_run(
            rig, name, args, protocol, planned, _md, acq, evaluate=evaluate, follow=follow
        )
    )


def conclusion(plan_name: str, args: dict[str, Any], chain: Sequence):
    """A study's evaluation over the whole acquisition (what the chain stored, then what
    the continuation adds), or None for plans that conclude nothing."""
    from ssb_analysis.runs import Chain
    from ssb_analysis.stability import level_data

    from .cycling import Outcome
    from .studies import EVALUATORS

    evaluator = EVALUATORS.get(plan_name)
    if evaluator is None:
        return None
    whole = Chain(list(chain))
    rows, spectra = level_data(whole) if "steps" in whole else ([], [])

    def evaluate(outcome: Outcome):
        stored = Outcome(rows + outcome.steps, spectra + outcome.spectra, outcome.events)
        yield from evaluator(args, stored)

    return evaluate


def attach_cli(prefix: str, catalog: str | None, timeout: float = 10.0) -> int:
    """``ssb attach``: follow the protocol running on the rig at ``prefix`` into
    ``catalog``; returns a process exit code."""
    import sys

    from .run_file import connect_rig, run_in_shell
    from .session import start_session

    rig = connect_rig(prefix, "attach", timeout)
    if rig is None:
        return 1
    session = start_session(catalog, progress=False)
    try:
        seq = rig.sequencer
        print(
            f"ssb attach: {prefix} sequence {seq.state.get(use_monitor=False)}, step "
            f"{int(seq.step.get(use_monitor=False))} of "
            f"{int(seq.steps.get(use_monitor=False))} "
            f"({seq.reason.get(use_monitor=False) or 'no message'})",
            flush=True,
        )
        try:  # refused before the RunEngine starts: no traceback, just the reason
            found = lost_acquisition(rig, session.catalog, wait=True)
        except AttachError as ex:
            print(f"ssb attach: {ex}", file=sys.stderr)
            return 1
        uid = run_in_shell(session, attach(rig, session.catalog, found=found), "attach")
        if uid is None:
            return 130
        stop = session.catalog[uid].stop
        print(
            f"ssb attach: run {uid[:8]} continues the acquisition in {session.location}; "
            f"exit status {stop['exit_status']}"
        )
        return 0 if stop["exit_status"] == "success" else 1
    finally:
        session.close()
        rig.destroy()

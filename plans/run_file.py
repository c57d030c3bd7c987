"""``ssb run PROTOCOL_FILE``: a protocol file against a running IOC, into the catalog."""

from __future__ import annotations

import getpass
import json
import logging
import sys
import tomllib
from pathlib import Path
from typing import Any

from .metadata import MetadataError
from .protocol import ProtocolError, parse, summarize


def read_cell(path: str) -> dict[str, Any]:
    """A cell description from a TOML or JSON file (the fields of ``CELL_FIELDS``)."""
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise MetadataError(f"{path}: not a text (UTF-8 TOML/JSON) cell description") from None
    try:
        return json.loads(text) if path.endswith(".json") else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as ex:
        raise MetadataError(f"{path}: not a TOML/JSON cell description: {ex}") from None


def connect_rig(prefix: str, command: str, timeout: float = 10.0):
    """The rig at ``prefix``, connected; None (and why, on stderr) if no IOC answers."""
    from ssb_devices import Rig

    rig = Rig(prefix, name="rig")
    try:
        rig.wait_for_connection(timeout=timeout)
        return rig
    except TimeoutError:
        rig.destroy()
        print(
            f"ssb {command}: no rig answers at PV prefix {prefix!r} within {timeout:g} s. "
            f"Start one (ssb-ioc --prefix {prefix}) or check EPICS_CA_ADDR_LIST / --prefix.",
            file=sys.stderr,
        )
        return None


def plan_failures() -> tuple[type[BaseException], ...]:
    """The ways a plan ends that a person is told in one line (their messages say what
    happened and what to do); anything else is a bug and keeps its traceback."""
    from ssb_devices import (
        DetectorFailed,
        PressureRejected,
        RigDisconnected,
        SequenceRefused,
        StepRejected,
    )

    from .attach import AttachError
    from .cycling import SequenceEnded
    from .events import EndedOnEvent
    from .writer import StorageLost

    return (
        StorageLost, RigDisconnected, SequenceRefused, StepRejected, PressureRejected,
        SequenceEnded, EndedOnEvent, AttachError, DetectorFailed,
    )  # fmt: skip


def run_in_shell(session, plan, command: str) -> str | None:
    """Run ``plan`` with progress lines; returns its run's uid (also when the run failed:
    its stop says why), or None after Ctrl-C, which aborts it: the protocol on the
    instrument ends, the cell is left at open circuit with the press holding, and the
    run is closed as aborted with its data. A failure is said in one line."""
    from bluesky.utils import RunEngineInterrupted

    from .progress import ProtocolProgress

    started: list[str] = []
    tokens = [
        session.RE.subscribe(ProtocolProgress()),
        session.RE.subscribe(lambda name, doc: started.append(doc["uid"]), "start"),
    ]
    bluesky_log = logging.getLogger("bluesky")
    level = bluesky_log.level
    bluesky_log.setLevel(logging.CRITICAL)  # a failure is said once, below
    from .session import run_uid

    try:
        return run_uid(session.RE(plan))
    except plan_failures() as ex:
        print(f"ssb {command}: {ex}", file=sys.stderr)
        if started:
            return started[-1]
        raise SystemExit(1) from None
    except RunEngineInterrupted:
        logging.getLogger("bluesky").setLevel(logging.CRITICAL)
        session.RE.abort(reason="interrupted by the user (Ctrl-C)")
        print(
            f"ssb {command}: interrupted; the cell was left at open circuit, the press "
            "holding; the run was closed as aborted with its data",
            file=sys.stderr,
        )
        return None
    finally:
        bluesky_log.setLevel(level)
        for token in tokens:
            session.RE.unsubscribe(token)


def run_file(
    path: str,
    *,
    prefix: str,
    catalog: str | None,
    cell: str | None,
    purpose: str,
    operator: str | None,
    capacity: float | None,
    timeout: float = 10.0,
) -> int:
    """Run the protocol in ``path``; returns a process exit code."""
    from .cycling import prepare, run_protocol
    from .session import start_session

    try:
        protocol = parse(Path(path).read_bytes())
    except OSError as ex:
        print(f"ssb run: cannot read {path}: {ex.strerror}", file=sys.stderr)
        return 2
    except ProtocolError as ex:
        print(f"ssb run: {path}: {ex}", file=sys.stderr)
        return 2
    try:  # everything the user wrote is checked before anything connects
        described = read_cell(cell) if cell is not None else None
    except (MetadataError, OSError) as ex:
        print(f"ssb run: {cell}: {getattr(ex, 'strerror', None) or ex}", file=sys.stderr)
        return 2
    print(f"ssb run: {path}: {summarize(protocol)}", flush=True)
    rig = connect_rig(prefix, "run", timeout)
    if rig is None:
        return 1
    session = start_session(catalog, progress=False)
    try:
        try:
            if described is not None:
                session.describe_experiment(
                    cell=described,
                    purpose=purpose,
                    operator=operator or getpass.getuser(),
                )
            elif "cell" not in session.RE.md:
                print(
                    "ssb run: describe the cell: --cell CELL.toml (cell_id, chemistry, "
                    "area_cm2, layers_um, capacity_mAh)",
                    file=sys.stderr,
                )
                return 2
        except MetadataError as ex:
            print(f"ssb run: {cell}: {ex}", file=sys.stderr)
            return 2
        try:  # against the rig's limits, before the RunEngine starts: no traceback
            prepare(rig, protocol, capacity)
        except ProtocolError as ex:
            print(f"ssb run: {path}: {ex}", file=sys.stderr)
            return 2
        uid = run_in_shell(session, run_protocol(rig, protocol, capacity=capacity), "run")
        if uid is None:
            return 130
        from ssb_analysis.runs import stop_document

        try:
            run = session.catalog[uid]
            status = (stop_document(run) or {}).get("exit_status", "not closed")
        except Exception as ex:  # the catalog itself may be what failed
            print(f"ssb run: run {uid[:8]} could not be read back ({ex})", file=sys.stderr)
            return 1
        print(
            f"ssb run: run {uid[:8]} (scan {run.start['scan_id']}) stored in "
            f"{session.location}, exit status {status}"
        )
        return 0 if status == "success" else 1
    finally:
        session.close()
        rig.destroy()

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
    from bluesky.utils import RunEngineInterrupted

    from ssb_devices import Rig

    from .cycling import run_protocol
    from .progress import ProtocolProgress
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
    rig = Rig(prefix, name="rig")
    try:
        rig.wait_for_connection(timeout=timeout)
    except TimeoutError:
        rig.destroy()
        print(
            f"ssb run: no rig answers at PV prefix {prefix!r} within {timeout:g} s. Start one "
            f"(ssb-ioc --prefix {prefix}) or check EPICS_CA_ADDR_LIST / --prefix.",
            file=sys.stderr,
        )
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
        token = session.RE.subscribe(ProtocolProgress())
        try:
            (uid,) = session.RE(run_protocol(rig, protocol, capacity=capacity))
        except ProtocolError as ex:
            print(f"ssb run: {path}: {ex}", file=sys.stderr)
            return 2
        except RunEngineInterrupted:
            logging.getLogger("bluesky").setLevel(logging.CRITICAL)
            session.RE.abort(reason="interrupted by the user (Ctrl-C)")
            print(
                "ssb run: interrupted; the cell was left at open circuit, the press "
                "holding; the run was closed as aborted with its data",
                file=sys.stderr,
            )
            return 130
        finally:
            session.RE.unsubscribe(token)
        run = session.catalog[uid]
        print(
            f"ssb run: run {uid[:8]} (scan {run.start['scan_id']}) stored in "
            f"{session.location}, exit status {run.stop['exit_status']}"
        )
        return 0 if run.stop["exit_status"] == "success" else 1
    finally:
        session.close()
        rig.destroy()

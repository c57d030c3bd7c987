"""Autosave: the rig's configuration survives an IOC restart, as EPICS autosave does it.

Configuration PVs (limits and interlock levels, loop gains and output limits, ramp rate,
settle criteria, logging, impedance sweep, event thresholds and reactions, the clock's
speed) are written to one JSON file when they change, and the clock, the tare offset and
the load cell's drift every few seconds; the sample, event and full-rate buffers live in
files beside it (``<prefix>.samples.f64`` ...: see ``Rig.keep_buffers``), as a cycler
keeps its data in its own storage. At start the IOC restores them through the same
checks as a client's put (a value refused today is reported on ``Rig:Msg-RB`` and the
default kept), and comes up with the press Off and the cell at open circuit: a restart
never re-presses on its own.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import re
from pathlib import Path
from typing import Any

SAVED_PVS = (
    "Press:MaxPressure-SP",
    "Press:OverPressure-SP",
    "Press:RampRate-SP",
    "Press:KP-SP",
    "Press:KI-SP",
    "Press:KD-SP",
    "Press:DRVH-SP",
    "Press:DRVL-SP",
    "Press:SettleTol-SP",
    "Press:SettleTime-SP",
    "Press:Deadman-SP",
    "Press:DeadmanAction-SP",
    "Press:DeadmanFloor-SP",
    "LC:FastRate-SP",
    "Cyc:LogPeriod-SP",
    "Cyc:Capacity-SP",
    "Cyc:EIS:FStart-SP",
    "Cyc:EIS:FEnd-SP",
    "Cyc:EIS:PointsPerDecade-SP",
    "Evt:Enable-SP",
    "Evt:PressureThresh-SP",
    "Evt:VoltageDropThresh-SP",
    "Evt:ResistanceThresh-SP",
    "Evt:Window-SP",
    "Evt:PressureSpikeAction-SP",
    "Evt:PressureDropAction-SP",
    "Evt:SoftShortAction-SP",
    "Evt:ResistanceJumpAction-SP",
    "Rig:Speed-SP",
)
STATE_PERIOD = 5.0  # s of wall time between saves of the clock and the load cell's state


def default_directory() -> Path:
    """``$SSB_AUTOSAVE``, else the user's data directory."""
    if "SSB_AUTOSAVE" in os.environ:
        return Path(os.environ["SSB_AUTOSAVE"])
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "ssb-bluesky" / "autosave"


def identity(cell: str, rig_file: str | None = None) -> str:
    """What an IOC's saved state belongs to, besides its prefix: the rig file it drives
    (instruments), else the cell it simulates. A simulation's past is never served as an
    instrument's, nor one rig file's as another's."""
    import hashlib

    if rig_file is not None:
        path = Path(rig_file).resolve()
        digest = hashlib.sha256(str(path).encode()).hexdigest()[:8]
        return f"rig-{path.stem}-{digest}"
    source = Path(cell)
    if source.suffix in (".toml", ".json") or source.exists():
        digest = hashlib.sha256(str(source.resolve()).encode()).hexdigest()[:8]
        return f"sim-{source.stem}-{digest}"
    return f"sim-{cell}"  # a preset


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "_", text)


class AutosaveFile:
    """One IOC's saved settings: ``{"pvs": {name: value}, "state": {...}}``, in
    ``<prefix>.<identity>.json`` (see :func:`identity`)."""

    def __init__(self, directory: str | Path, prefix: str, identity: str = ""):
        self.prefix = prefix
        self.identity = identity
        self.stem = _safe(prefix.rstrip(":")) or "ioc"
        if identity:
            self.stem += "." + _safe(identity)
        self.directory = Path(directory)
        self.path = self.directory / f"{self.stem}.json"

    def older_files(self) -> list[Path]:
        """Files saved for this prefix under another identity (or none, before identities
        were kept): left as they are, never restored into this IOC."""
        base = _safe(self.prefix.rstrip(":")) or "ioc"
        found = [self.directory / f"{base}.json", *self.directory.glob(f"{base}.*.json")]
        return sorted(p for p in found if p.exists() and p != self.path)

    def lock(self) -> None:
        """Hold this prefix's files for the life of the process: two IOCs serving one
        prefix from one directory would overwrite each other's saves and buffers."""
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.directory / f"{self.stem}.lock", "w")  # noqa: SIM115
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self._lock.close()
            raise ValueError(
                f"another ssb-ioc already keeps {self.stem!r} in {self.directory}: "
                "stop it first, or give this one another --prefix or --autosave DIR"
            ) from None

    def load(self) -> dict[str, Any]:
        """What was saved (empty if nothing was); a damaged file raises ValueError."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except (OSError, UnicodeDecodeError) as ex:
            raise ValueError(f"cannot read {self.path}: {ex}") from None
        try:
            saved = json.loads(text)
        except ValueError as ex:
            raise ValueError(f"{self.path} is damaged ({ex})") from None
        if not isinstance(saved, dict):
            raise ValueError(f"{self.path} is damaged (not a JSON object)")
        return saved

    def save(self, saved: dict[str, Any]) -> None:
        """Write atomically: a crash leaves the old file or the new one, never half."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(saved, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def remove_partial(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.with_suffix(".tmp").unlink()


def finite_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)

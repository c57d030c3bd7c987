"""The rig IOC's autosave: what it restores at its start and when it saves.

Settings are restored through the same checks as a client's put; then the clock, the
load cell's kept state and a sequence that was running. The file (:mod:`.autosave`) is
written on a changed setting, at a sequence's step boundary, and every ``STATE_PERIOD``.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

from .autosave import SAVED_PVS, STATE_PERIOD, AutosaveFile, finite_number

if TYPE_CHECKING:
    from .groups import RigIOC

log = logging.getLogger("ssb_ioc")


class Persistence:
    """One IOC's autosave file, and when it is due."""

    def __init__(self, file: AutosaveFile | None) -> None:
        self.file = file
        self._settings_changed = False
        self._state_saved = time.monotonic()
        self._sequence_saved = 0

    async def restore(self, ioc: RigIOC) -> None:
        """Restore saved settings through the checks of a client's put, then the clock."""
        if self.file is None:
            return
        try:
            saved = self.file.load()
        except ValueError as ex:
            await ioc.report(f"autosave: {ex}; using the cell file's settings")
            log.warning("autosave: %s; using the cell file's settings", ex)
            return
        values = saved.get("pvs", {}) if isinstance(saved.get("pvs"), dict) else {}
        restored, refused = [], []
        for name in SAVED_PVS:
            if name in values:
                try:
                    await ioc.pvdb[ioc.prefix + name].write(values[name])
                    restored.append(f"{name}={values[name]}")
                except Exception:
                    refused.append(name)
        state = saved.get("state", {}) if isinstance(saved.get("state"), dict) else {}
        rig, lc = ioc.backend, ioc.backend.load_cell
        if finite_number(state.get("time")) and state["time"] >= 0:
            # never behind the newest logged sample (the state is saved every few s)
            rig.resume_clock(max(float(state["time"]), rig.cycler.counters.test_time))
        lc.restore_state(state)
        sequence = saved.get("sequence")
        if isinstance(sequence, dict):
            try:
                found = rig.sequencer.restore(sequence)
                await ioc.sequencer.restored()
            except (ValueError, KeyError, TypeError, StopIteration) as ex:
                found = f"saved sequence not restored ({ex})"
            await ioc.report(f"autosave: {found}")
            log.info("autosave: %s", found)
        if saved:
            found = (
                "the press and the cell as the instruments report them"
                if rig.keeps_own_time
                else "press Off, cell at open circuit"
            )
            log.info(
                "autosave: restored from %s (saved for %s): the clock at %.1f s, %s%s",
                self.file.path,
                self.file.identity or "this prefix",
                rig.time,
                ", ".join(restored) or "no settings",
                f"; refused today and left at the cell file's: {', '.join(refused)}"
                if refused
                else "",
            )
            await ioc.report(
                f"autosave: restored {len(restored)} settings and the clock ({rig.time:.1f} s) "
                f"from {self.file.path}; {found}"
            )
        self._settings_changed = False

    def changed(self, name: str) -> None:
        """A client changed the setting ``name`` (no prefix): save it at the next scan."""
        if self.file is not None and name in SAVED_PVS:
            self._settings_changed = True

    def save(self, ioc: RigIOC) -> None:
        """Write the saved settings and the clock now."""
        if self.file is None:
            return
        rig, lc = ioc.backend, ioc.backend.load_cell
        values = {name: ioc.pvdb[ioc.prefix + name].value for name in SAVED_PVS}
        state = {"time": rig.time, **lc.kept_state()}
        self._sequence_saved = rig.sequencer.changes
        try:
            self.file.save({"pvs": values, "state": state, "sequence": rig.sequencer.snapshot()})
        except OSError as ex:
            log.error("autosave to %s failed: %s", self.file.path, ex)
        self._settings_changed = False
        self._state_saved = time.monotonic()

    def save_if_due(self, ioc: RigIOC) -> None:
        """Save on a changed setting, at a sequence's step boundary, and every few s."""
        since = time.monotonic() - self._state_saved
        boundary = ioc.backend.sequencer.changes != self._sequence_saved
        if self._settings_changed or (boundary and since > 1.0) or since > STATE_PERIOD:
            self.save(ioc)

"""Alarms the PV layer computes: stale readbacks, and a value's own limit alarms.

A backend says which of its readings are stale (:meth:`RigBackend.stale_readings`); the
PV layer knows which PVs show each (:data:`READING_PVS`) and serves them with their last
value and time under an INVALID/COMM alarm, so that no client takes them for fresh.
"""

from __future__ import annotations

from typing import Any

from caproto import AlarmSeverity, AlarmStatus

from ssb_ioc.core.ports import RigBackend

# The PVs that show each reading of the ports (ssb_ioc.core.ports.READINGS).
READING_PVS = {
    "press.pressure": ("Press:Pressure-RB",),
    "press.force": ("Press:Force-RB",),
    "press.position": ("Press:Position-RB",),
    "press.gap": ("Press:Gap-RB",),
    "press.settled": ("Press:Settled-RB",),
    "press.error": ("Press:Error-RB",),
    "press.output": ("Press:Output-RB",),
    "load_cell.force": ("LC:Force-RB",),
    "load_cell.signal": ("LC:Signal-RB",),
    "load_cell.overload": ("LC:Overload-RB",),
    "cell.voltage": ("Cyc:Voltage-RB", "Rig:CellVoltage-RB"),
    "cell.current": ("Cyc:Current-RB",),
    "channel.capacities": ("Cyc:StepCharge-RB", "Cyc:StepDischarge-RB",
                           "Cyc:ChargeCapacity-RB", "Cyc:DischargeCapacity-RB",
                           "Cyc:ChargeEnergy-RB", "Cyc:DischargeEnergy-RB"),
}  # fmt: skip


class StaleReadbacks:
    """The PVs served stale now, and the marking of them."""

    def __init__(self) -> None:
        self.names: set[str] = set()  # PV names (no prefix) under an INVALID/COMM alarm

    async def mark(self, pvdb: dict[str, Any], prefix: str, backend: RigBackend) -> list[str]:
        """Mark what the backend calls stale, clear what answers again; returns each new
        reason once (for Rig:Msg-RB)."""
        stale = {
            name: why_when
            for reading, why_when in backend.stale_readings().items()
            for name in READING_PVS[reading]
        }
        for name in self.names | set(stale):
            pv = pvdb[prefix + name]
            if name in stale:
                last_ok = stale[name][1]
                if pv.severity != AlarmSeverity.INVALID_ALARM:
                    await pv.write(
                        pv.value,
                        status=AlarmStatus.COMM,
                        severity=AlarmSeverity.INVALID_ALARM,
                        timestamp=last_ok or None,
                        verify_value=False,
                    )
            elif pv.severity == AlarmSeverity.INVALID_ALARM:
                await pv.write(
                    pv.value,
                    status=AlarmStatus.NO_ALARM,
                    severity=AlarmSeverity.NO_ALARM,
                    verify_value=False,
                )
        news = list(dict.fromkeys(stale[name][0] for name in stale if name not in self.names))
        self.names = set(stale)
        return news


def limit_alarm(pv: Any, value: float) -> tuple[AlarmStatus, AlarmSeverity]:
    """The alarm a value's HIHI/HIGH/LOW/LOLO limits give it (as caproto computes it)."""
    checks = (
        (pv.upper_alarm_limit, value >= pv.upper_alarm_limit, AlarmStatus.HIHI, True),
        (pv.lower_alarm_limit, value <= pv.lower_alarm_limit, AlarmStatus.LOLO, True),
        (pv.upper_warning_limit, value >= pv.upper_warning_limit, AlarmStatus.HIGH, False),
        (pv.lower_warning_limit, value <= pv.lower_warning_limit, AlarmStatus.LOW, False),
    )
    for limit, beyond, status, major in checks:
        if limit and beyond:
            return status, AlarmSeverity.MAJOR_ALARM if major else AlarmSeverity.MINOR_ALARM
    return AlarmStatus.NO_ALARM, AlarmSeverity.NO_ALARM

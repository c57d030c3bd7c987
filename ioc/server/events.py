"""Event detection and full-rate load-cell samples as PVs (``{prefix}Evt:``, ``{prefix}LC:Fast:``).

The rig detects events as it simulates (see :mod:`ssb_ioc.core.events`), so they are
caught, kept and followed by full-rate samples whether or not a client is connected.
"""

from __future__ import annotations

# caproto's `@pv.putter` redefines the name, as a property setter does (mypy knows only
# property's):
# mypy: disable-error-code="no-redef"
from caproto.server import SubGroup

from ssb_contract.records import EVENT, EVENT_KINDS, EVENT_UNITS, FAST
from ssb_ioc.core.control import FAST_BUFFER
from ssb_ioc.core.events import EVENT_BUFFER

from .buffers import RowBufferGroup, row_pages
from .pvs import RigPVGroup, choice, counter, publish, refusals, setting, text

KIND_NAMES = ", ".join(f"{i} {kind}" for i, kind in enumerate(EVENT_KINDS))


class EventRows(RowBufferGroup):
    fields = EVENT.fields
    pages = row_pages(EVENT_BUFFER, EVENT.width)

    def buffer(self):
        return self.rig.events.buffer


class FastRows(RowBufferGroup):
    fields = FAST.fields
    pages = row_pages(FAST_BUFFER, FAST.width)

    def buffer(self):
        return self.rig.fast


def _threshold(name: str, units: str, doc: str, key: str, precision: int = 3):
    return setting(
        name,
        units,
        1e-6,
        1e4,
        doc,
        precision,
        apply=lambda rig, value: rig.set_event_thresholds(**{key: value}),
    )


ACTIONS = {"Log": "log", "OpenCircuit": "open_circuit"}


def _action(kind: str):
    name = "".join(part.capitalize() for part in kind.split("_"))

    async def put(group, instance, value):
        group.rig.set_event_action(kind, ACTIONS[value])
        return value

    return choice(f"{name}Action-SP", list(ACTIONS), f"What the IOC does on {kind}", put=put)


class EventsGroup(RigPVGroup):
    """Events detected on the instrument (``{prefix}Evt:``).

    Enable-SP                 Off | On (default On)
    PressureThresh-SP   MPa   off the held setpoint (or a jump in a fixed gap)
    VoltageDropThresh-SP V    fall within one cell step at rest or on CC charge: soft short
    ResistanceThresh-SP Ohm   rise of dV/I within one cell step at constant current
    Window-SP           s     full-rate load-cell samples kept after each event
    <Kind>Action-SP           Log | OpenCircuit: what the IOC itself does on an event of
                              that kind (PressureSpike, PressureDrop, SoftShort,
                              ResistanceJump); OpenCircuit ends the cycler step at once
    Count-RB                  events detected so far; Last-RB: the newest, in words
    Buf:NextSeq-RB, Buf:OldestSeq-RB, Buf:Kept-RB, Buf:Page0-RB .. Buf:Page31-RB
                              rows of (seq, time s, kind, magnitude, value, step);
                              kind 0 pressure_spike, 1 pressure_drop, 2 soft_short,
                              3 resistance_jump; magnitude in MPa, MPa, V, Ohm
    """

    last_refusal = refusals("")  # the last refused put: Refusal-RB, RefusalMsg-RB

    buf = SubGroup(EventRows, prefix="Buf:")
    enable_sp = choice("Enable-SP", ["Off", "On"], "Detect events")
    pressure_sp = _threshold("PressureThresh-SP", "MPa", "Pressure event threshold", "pressure")
    voltage_drop_sp = _threshold(
        "VoltageDropThresh-SP", "V", "Soft-short voltage drop threshold", "voltage_drop", 4
    )
    resistance_sp = _threshold(
        "ResistanceThresh-SP", "Ohm", "Resistance jump threshold", "resistance"
    )
    window_sp = _threshold("Window-SP", "s", "Full-rate samples after an event", "window")
    pressure_spike_action = _action("pressure_spike")
    pressure_drop_action = _action("pressure_drop")
    soft_short_action = _action("soft_short")
    resistance_jump_action = _action("resistance_jump")
    count_rb = counter("Count-RB", "Events detected")
    last_rb = text("Last-RB", "Newest event")

    @enable_sp.putter
    async def enable_sp(self, instance, value):
        self.rig.set_event_detection(value == "On")
        return value

    async def configure(self) -> None:
        rig = self.rig
        t = rig.events.thresholds
        initial = {
            self.enable_sp: "On" if t.enabled else "Off",
            self.pressure_sp: t.pressure,
            self.voltage_drop_sp: t.voltage_drop,
            self.resistance_sp: t.resistance,
            self.window_sp: rig.event_window,
        }
        for pv, value in initial.items():
            await pv.write(value, verify_value=False)

    async def update(self) -> None:
        buffer = self.rig.events.buffer
        await self.buf.update()
        if self.count_rb.value != buffer.next_seq:
            _, time, kind, magnitude, _, step = buffer.since(buffer.next_seq - 1)[0]
            name = EVENT_KINDS[int(kind)]
            unit = EVENT_UNITS[name]
            await self.last_rb.write(
                f"{name} of {magnitude:.4g} {unit} at t = {time:.1f} s (step {int(step)})"
            )
            await publish(self.count_rb, buffer.next_seq)

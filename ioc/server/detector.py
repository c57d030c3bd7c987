"""A simulated diffraction detector served over Channel Access, as at a beamline.

One strip (line) detector with the names and behaviour of EPICS areaDetector where they
fit (a ``cam1:`` driver and an ``image1:`` array plugin), so that ophyd drives it as it
drives real hardware: write ``cam1:Acquire`` and wait for the put to complete.

The sample in the beam is the simulated cell of a rig IOC (``--sample PREFIX``), read over
Channel Access as a beamline reads its sample environment: the rig's clock
(``Rig:Time-RB``) times the exposures, and its cell's state of charge
(``Rig:CellSOC-RB``) sets the cathode's lattice (:mod:`ssb_ioc.sim.diffraction`). An
exposure therefore takes experiment time, whatever the rig's speed factor, and a frame
integrates the pattern over the state of charge the cell went through meanwhile. If
the rig's clock is held short of a frame's end (a plan coordinating the detector at a
high speed factor holds it where the frame began), the detector moves the hold on to the
frame's end, so the frame costs the experiment exactly its exposure.
"""

from __future__ import annotations

# caproto's `@pv.putter` redefines the name, as a property setter does (mypy knows only
# property's):
# mypy: disable-error-code="no-redef"
import asyncio
import logging
import math
from typing import Any

import numpy as np
from caproto import ChannelType

from ssb_contract.refusals import Refusal, Refused

from ..sim.diffraction import Beamline, Exposure, lithium_content
from .pvs import (
    ARRAY_BACKLOG,
    BEAT_WRAP,
    RigPVGroup,
    _numeric,
    _pv,
    choice,
    counter,
    limits,
    publish,
    reading,
    refusals,
    text,
)

DETECTOR_SCAN = 0.05  # s of wall time between reads of the sample's state
LINK_TIMEOUT = 2.0  # s: a rig that does not answer within this is lost
# areaDetector's ADStatus strings, in its order.
DETECTOR_STATES = [
    "Idle", "Acquire", "Readout", "Correct", "Saving", "Aborting",
    "Error", "Waiting", "Initializing", "Disconnected", "Aborted",
]  # fmt: skip
IMAGE_MODES = ["Single", "Multiple", "Continuous"]

log = logging.getLogger("ssb_ioc")  # the IOC's own events (cli.py: to stdout)


class DetectorError(Refused):
    """An acquisition that could not complete (a lost frame); the message says why and
    what to do."""

    code = Refusal.LINK


class SampleLink:
    """The rig whose cell is in the beam: its clock and its cell's state of charge, read
    over Channel Access (caproto's asyncio client, in the IOC's own loop)."""

    def __init__(self, prefix: str):
        self.prefix = prefix
        self.time = math.nan  # s, the rig's experiment time at the last good read
        self.soc = math.nan  # the simulated cell's state of charge (NaN: instruments)
        self.hold_at = 0.0  # the rig's clock hold (0: none), at the last good read
        self.error = "not connected yet"
        self._pvs: Any = None  # caproto's client PVs (untyped)
        self._hold = None
        self._context: Any = None

    async def read(self) -> bool:
        """Read the rig once; False (and ``error`` says why) if it did not answer."""
        from caproto import CaprotoError
        from caproto.asyncio.client import Context

        try:
            if self._pvs is None:
                self._context = Context(timeout=LINK_TIMEOUT)
                names = (f"{self.prefix}Rig:Time-RB", f"{self.prefix}Rig:CellSOC-RB",
                         f"{self.prefix}Rig:HoldAt-SP")  # fmt: skip
                self._pvs = await self._context.get_pvs(*names, timeout=LINK_TIMEOUT)
            clock, soc, hold = self._pvs
            t = (await clock.read(timeout=LINK_TIMEOUT)).data[0]
            s = (await soc.read(timeout=LINK_TIMEOUT)).data[0]
            h = (await hold.read(timeout=LINK_TIMEOUT)).data[0]
        except (CaprotoError, TimeoutError, OSError) as ex:
            self.error = f"the rig {self.prefix} does not answer ({self.prefix}Rig:Time-RB): {ex}"
            return False
        self.time, self.soc, self.hold_at, self.error = float(t), float(s), float(h), ""
        return True

    @property
    def held_before(self) -> float:
        """The rig's clock stands (or will stand) at a hold: its time, else inf."""
        return self.hold_at if self.hold_at > 0 else math.inf

    async def hold_until(self, end: float) -> None:
        """Move the rig's clock hold on to ``end`` (the end of an exposure): someone holds
        the clock where this frame began (a plan coordinating it at a high speed factor),
        and the frame needs exactly its exposure of the rig's time to go by."""
        if self._pvs is None:
            return
        try:
            await self._pvs[2].write([end], wait=False)
        except (OSError, TimeoutError) as ex:
            self.error = f"the rig {self.prefix} took no clock hold: {ex}"

    async def close(self) -> None:
        if self._context is not None:
            await self._context.disconnect()


def _shown_on(readback: str):
    """A putter that shows an accepted setting on its ``_RBV`` twin, as areaDetector does."""

    async def put(group, instance, value):
        await getattr(group, readback).write(value)
        return value

    return put


class DetectorIOC(RigPVGroup):
    """Simulated strip detector (1280 strips) for operando diffraction of a rig's cell.

    Driver PVs (``{prefix}cam1:``), areaDetector names:

    Acquire               Done | Acquire: write Acquire and wait (put-completion) for the
                          frame(s); write Done to stop (the frame in progress is dropped)
    Acquire_RBV           Done | Acquire
    AcquireTime(_RBV)     s     exposure per frame, in the rig's experiment time
    AcquirePeriod(_RBV)   s     start-to-start time of frames in Multiple and Continuous
                                mode (shorter than AcquireTime: back to back)
    ImageMode(_RBV)             Single | Multiple | Continuous
    NumImages(_RBV)             frames per acquisition in Multiple mode
    NumImagesCounter_RBV        frames taken in this acquisition
    ArrayCounter(_RBV)          frames taken (write a number to reset it)
    DetectorState_RBV           areaDetector's states: Idle, Acquire, ..., Error, Aborted
    StatusMessage_RBV           what happened last, or why a put was refused
    TimeRemaining_RBV     s     experiment time left in this exposure
    Manufacturer_RBV, Model_RBV, MaxSizeX_RBV, ArraySizeX_RBV
    TwoTheta_RBV          deg   2-theta of each strip: the pattern's axis
    Wavelength_RBV        A     X-ray wavelength
    Sample_RBV                  the rig in the beam and the state of the link to it

    Array plugin PVs (``{prefix}image1:``):

    ArrayData             counts  the newest frame, one value per strip
    ArrayCounter_RBV, UniqueId_RBV   that frame's number
    TimeStamp_RBV         s     the rig's experiment time when that frame's exposure began
    ArraySize0_RBV, NDimensions_RBV
    """

    last_refusal = refusals("cam1:")  # the last refused put: Refusal-RB, RefusalMsg-RB

    acquire = choice("cam1:Acquire", ["Done", "Acquire"], "Start (and wait) or stop")
    acquire_rbv = choice("cam1:Acquire_RBV", ["Done", "Acquire"], "Acquiring", read_only=True)
    acquire_time = _numeric("cam1:AcquireTime", "s", 0.001, 86400.0, "Exposure per frame", 3,
                            put=_shown_on("acquire_time_rbv"))  # fmt: skip
    acquire_time_rbv = reading("cam1:AcquireTime_RBV", "s", 0.0, 86400.0, "Exposure per frame")
    acquire_period = _numeric("cam1:AcquirePeriod", "s", 0.0, 864000.0, "Frame start to start",
                              3, put=_shown_on("acquire_period_rbv"))  # fmt: skip
    acquire_period_rbv = reading("cam1:AcquirePeriod_RBV", "s", 0.0, 864000.0, "Frame period")
    image_mode = choice("cam1:ImageMode", IMAGE_MODES, "Frames per acquisition",
                        put=_shown_on("image_mode_rbv"))  # fmt: skip
    image_mode_rbv = choice("cam1:ImageMode_RBV", IMAGE_MODES, "Image mode", read_only=True)
    num_images = _pv("cam1:NumImages", "Frames in Multiple mode", value=1, dtype=int,
                     put=_shown_on("num_images_rbv"), **limits(1, 100000))  # fmt: skip
    num_images_rbv = counter("cam1:NumImages_RBV", "Frames in Multiple mode")
    num_images_counter = counter("cam1:NumImagesCounter_RBV", "Frames taken in this acquisition")
    array_counter = _pv(
        "cam1:ArrayCounter", "Frames taken (write to reset)", value=0, dtype=int,
        put=_shown_on("array_counter_rbv"), **limits(0, 2**31 - 1),
    )  # fmt: skip
    array_counter_rbv = counter("cam1:ArrayCounter_RBV", "Frames taken")
    beat_rb = counter("cam1:Beat-RB", "Scans since the IOC was ready (readiness: > 0)")
    state = choice("cam1:DetectorState_RBV", DETECTOR_STATES, "Detector state", read_only=True)
    status_message = text("cam1:StatusMessage_RBV", "Last event or refusal")
    time_remaining = reading("cam1:TimeRemaining_RBV", "s", 0.0, 1e7, "Exposure left")
    # areaDetector serves these as plain strings (stringin), not long strings
    manufacturer = _pv("cam1:Manufacturer_RBV", "Manufacturer", value="", dtype=ChannelType.STRING,
                       read_only=True)  # fmt: skip
    model = _pv("cam1:Model_RBV", "Model", value="", dtype=ChannelType.STRING, read_only=True)
    max_size_x = counter("cam1:MaxSizeX_RBV", "Strips")
    size_x = counter("cam1:ArraySizeX_RBV", "Strips read out")
    wavelength = reading("cam1:Wavelength_RBV", "A", 0.0, 10.0, "X-ray wavelength", 5)
    sample = text("cam1:Sample_RBV", "Rig in the beam, link state")

    def __init__(
        self, *args, sample: str, beam: Beamline | None = None, seed: int | None = None, **kw
    ):
        self.beam = beam or Beamline()
        self.link = SampleLink(sample)
        self.rng = np.random.default_rng(seed)
        self.access_rules = None
        self._tick = asyncio.Condition()
        self._busy = False
        self._stop = False
        super().__init__(*args, **kw)

    strips = Beamline().geometry.strips
    two_theta = _pv(
        "cam1:TwoTheta_RBV", "2-theta of each strip", ARRAY_BACKLOG, value=[0.0] * strips,
        dtype=float, max_length=strips, read_only=True, units="deg", precision=4,
    )  # fmt: skip
    array_data = _pv(
        "image1:ArrayData", "Newest frame", ARRAY_BACKLOG, value=[0] * strips, dtype=int,
        max_length=strips, read_only=True, units="counts",
    )  # fmt: skip
    image_counter = counter("image1:ArrayCounter_RBV", "Frame number")
    unique_id = counter("image1:UniqueId_RBV", "Frame number")
    time_stamp = reading("image1:TimeStamp_RBV", "s", 0.0, 1e12, "Exposure start (rig)", 3)
    array_size0 = counter("image1:ArraySize0_RBV", "Strips")
    ndimensions = counter("image1:NDimensions_RBV", "Dimensions")

    # --- the protocol of a root group (see RigPVGroup) -------------------------------
    async def report(self, message: str) -> None:
        await self.status_message.write(message[:255])

    def save(self) -> None:
        """Nothing to keep across restarts (the server's shutdown calls this)."""

    # --- startup and the scan ----------------------------------------------------------
    @sample.startup
    async def sample(self, instance, async_lib):
        """Describe the detector, say ready, then read the sample's state every scan."""
        g = self.beam.geometry
        fixed = {
            self.two_theta: list(g.two_theta()),
            self.wavelength: self.beam.wavelength,
            self.manufacturer: "ssb-bluesky (simulated)",
            self.model: f"{g.strips}-strip line detector",
            self.max_size_x: g.strips,
            self.size_x: g.strips,
            self.array_size0: g.strips,
            self.ndimensions: 1,
            self.acquire_time: 1.0,
            self.acquire_time_rbv: 1.0,
            self.num_images_rbv: 1,
        }
        for pv, value in fixed.items():
            await pv.write(value, verify_value=False)
        await self.report("idle")
        log.info("ready (%d PVs, prefix %r)", len(self.pvdb), self.prefix)
        try:
            while True:
                await self.beat_rb.write(self.beat_rb.value % BEAT_WRAP + 1)
                await async_lib.library.sleep(DETECTOR_SCAN)
                ok = await self.link.read()
                line = f"{self.link.prefix} " + (
                    self.link.error if not ok else f"t = {self.link.time:.1f} s, "
                    + (f"Li{lithium_content(self.link.soc):.3f}NMC811"
                       if math.isfinite(self.link.soc) else "no simulated cell")
                )  # fmt: skip
                await publish(instance, line[:255])
                async with self._tick:
                    self._tick.notify_all()
        finally:
            await self.link.close()

    async def _next_reading(self) -> float:
        """Wait for the next read of the sample's state; the rig's time then."""
        async with self._tick:
            await self._tick.wait()
        if self.link.error:
            raise DetectorError(
                f"frame lost: {self.link.error}; start the rig's IOC, then acquire again"
            )
        return self.link.time

    # --- acquisition ------------------------------------------------------------------
    @acquire.putter
    async def acquire(self, instance, value):
        if value == "Done":
            if self._busy:
                self._stop = True
            return "Done"
        if self._busy:
            raise ValueError("already acquiring: write Done to stop, or wait for the frame")
        self._busy, self._stop = True, False
        await self.acquire_rbv.write("Acquire")
        try:
            await self._acquire()
        except DetectorError as ex:
            await self.state.write("Error")
            await self.report(str(ex))
            raise
        finally:
            self._busy = False
            await self.acquire_rbv.write("Done")
            await self.time_remaining.write(0.0)
        return "Done"

    async def _acquire(self) -> None:
        mode = self.image_mode.value
        frames = {"Single": 1, "Multiple": self.num_images.value}.get(mode, math.inf)
        await self.num_images_counter.write(0)
        taken = 0
        while taken < frames:
            start = await self._expose()
            if start is None:
                await self.state.write("Aborted")
                await self.report(f"stopped after {taken} frame(s); the frame in progress dropped")
                return
            taken += 1
            await self.num_images_counter.write(taken)
            if taken < frames:
                await self.state.write("Waiting")
                due = start + self.acquire_period.value
                now = self.link.time
                while now < due and not self._stop:
                    now = await self._next_reading()
        await self.state.write("Idle")
        await self.report(f"acquired {taken} frame(s)")

    async def _expose(self) -> float | None:
        """Expose one frame on the rig's clock and publish it; its start time, or None
        if stopped."""
        await self.state.write("Acquire")
        exposure = Exposure(self.beam, self.rng)
        length = self.acquire_time.value
        start = t = await self._next_reading()
        end = start + length
        while t < end:
            if self.link.held_before < end - 1e-9:  # the clock would stop short of the end
                await self.link.hold_until(end)
            now = await self._next_reading()
            if self._stop:
                return None
            if now < t:
                raise DetectorError(
                    f"frame lost: the rig's clock went back from {t:.1f} to {now:.1f} s "
                    "(its IOC restarted?); acquire again"
                )
            soc = self.link.soc if math.isfinite(self.link.soc) else 0.0
            exposure.add(min(now, end) - t, soc)
            t = now
            await self.time_remaining.write(max(end - now, 0.0))
        await self.state.write("Readout")
        number = self.array_counter.value + 1
        await self.array_data.write(list(exposure.read()))
        for pv in (self.array_counter, self.array_counter_rbv, self.image_counter, self.unique_id):
            await pv.write(number, verify_value=False)
        await self.time_stamp.write(start)
        return start

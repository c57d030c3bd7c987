"""A diffraction detector with areaDetector names (``ssb-ioc --xrd``, or a beamline's).

Triggered by put-completion on ``cam1:Acquire``, as ophyd's ``PVPositionerPC`` moves: the
status finishes when the IOC says the frame is taken, which for the simulated detector is
``AcquireTime`` of the rig's experiment time later. A read gives the frame (counts per
strip), its number and when its exposure began on the rig's clock; the configuration
gives the 2-theta axis, the wavelength and the exposure, so that a stored frame carries
what is needed to analyse it.
"""

from __future__ import annotations

from ophyd import Component as Cpt
from ophyd import Device, EpicsSignal, EpicsSignalRO, Kind
from ophyd.areadetector.base import EpicsSignalWithRBV
from ophyd.status import DeviceStatus

from .refusals import LastRefusal, put_confirmed


class DetectorFailed(RuntimeError):
    """A frame the detector did not deliver; the message is the detector's."""


class DiffractionDetector(Device):
    """A strip detector, areaDetector style (``cam1:`` driver, ``image1:`` plugin).

    >>> xrd = DiffractionDetector("XRD:", name="xrd")
    >>> xrd.wait_for_connection()
    >>> xrd.acquire_time.set(60).wait()  # s of the rig's experiment time
    >>> RE(count([xrd]))
    """

    image = Cpt(EpicsSignalRO, "image1:ArrayData", kind=Kind.normal)
    frame = Cpt(EpicsSignalRO, "image1:ArrayCounter_RBV", kind=Kind.normal)
    exposure_start = Cpt(EpicsSignalRO, "image1:TimeStamp_RBV", kind=Kind.normal)
    acquire_time = Cpt(EpicsSignalWithRBV, "cam1:AcquireTime", kind=Kind.config)
    two_theta = Cpt(EpicsSignalRO, "cam1:TwoTheta_RBV", kind=Kind.config)
    wavelength = Cpt(EpicsSignalRO, "cam1:Wavelength_RBV", kind=Kind.config)
    model = Cpt(EpicsSignalRO, "cam1:Model_RBV", string=True, kind=Kind.config)
    acquire = Cpt(EpicsSignal, "cam1:Acquire", put_complete=True, kind=Kind.omitted)
    image_mode = Cpt(EpicsSignalWithRBV, "cam1:ImageMode", string=True, kind=Kind.omitted)
    num_images = Cpt(EpicsSignalWithRBV, "cam1:NumImages", kind=Kind.omitted)
    state = Cpt(EpicsSignalRO, "cam1:DetectorState_RBV", string=True, kind=Kind.omitted)
    message = Cpt(EpicsSignalRO, "cam1:StatusMessage_RBV", string=True, kind=Kind.omitted)
    sample = Cpt(EpicsSignalRO, "cam1:Sample_RBV", string=True, kind=Kind.omitted)
    # ssb-ioc --xrd shows why it refused a put; a beamline's areaDetector does not
    refusals = Cpt(LastRefusal, "cam1:", kind=Kind.omitted, lazy=True)

    def __init__(self, prefix: str = "", *, name: str, **kwargs):
        super().__init__(prefix, name=name, **kwargs)
        self.stage_sigs.update({"image_mode": "Single", "num_images": 1})

    def trigger(self) -> DeviceStatus:
        """Take one frame; done when the IOC completes the put, failed with the
        detector's words if it refuses the put or loses the frame."""
        status = DeviceStatus(self)

        def on_put(st) -> None:
            ex = st.exception()
            if ex is not None:
                said = "" if getattr(ex, "code", None) else f"; {self.message.get()}"
                status.set_exception(DetectorFailed(f"{self.name}: {ex}{said}"))
            elif self.state.get(use_monitor=False) == "Aborted":
                status.set_exception(DetectorFailed(f"{self.name}: acquisition stopped, no frame"))
            else:
                status.set_finished()

        put = put_confirmed(self.acquire, 1, refusals=self.refusals, timeout=None)
        put.add_callback(on_put)  # the answer's own thread (compat): reads may wait
        return status

    def stop(self, *, success: bool = False) -> None:
        """Stop an exposure in progress (its frame is dropped)."""
        if self.connected and self.state.get(use_monitor=False) in ("Acquire", "Waiting"):
            self.acquire.put(0)
        super().stop(success=success)

"""Operando diffraction end to end: the simulated detector IOC (``ssb-ioc --xrd``, its own
process) driven over Channel Access by an independent client and by ophyd, coordinated
with the cycling cell by run_protocol, its frames stored as Tiled arrays and analysed from
the catalog alone; the fitted lattice recovers the simulated law within its noise."""

from __future__ import annotations

import math
import threading
import time

import numpy as np
import pytest
from bluesky.utils import RunEngineInterrupted
from caproto import AccessRights, ChannelType
from conftest import CA_ENV, RunningIOC, connected_rig, start_ioc
from test_hostile_puts import Messages, hostile_values, kind_of, snapshot

from ssb_analysis import diffraction
from ssb_devices import DetectorFailed, DiffractionDetector
from ssb_ioc.launch import DetectorProcess
from ssb_ioc.server.detector import DetectorIOC
from ssb_ioc.sim import diffraction as law
from ssb_plans.cycling import run_protocol

pytestmark = pytest.mark.network

PORT = int(CA_ENV["EPICS_CA_SERVER_PORT"])
SPEED = 2000.0
PROTOCOL = """Set pressure to 100 MPa
Charge at 1C until 4.1 V
Rest for 10 minutes
Discharge at 1C until 3.0 V
"""


class RunningDetector(RunningIOC):
    """``ssb-ioc --xrd`` beside the test session's IOCs, with the same helpers."""

    def __init__(self, context, sample: str):
        super().__init__(context)
        made = DetectorProcess(sample, PORT, seed=1, prefix=self.prefix)
        self.command, self.env, self.heartbeat = made.command, made.env, made.heartbeat


@pytest.fixture(scope="module")
def beamline(ca_context):
    """A rig at x2000 and a detector whose sample is its cell; the ophyd devices."""
    rig_ioc = start_ioc(ca_context, speed=SPEED)
    detector = RunningDetector(ca_context, rig_ioc.prefix).start()
    rig = connected_rig(rig_ioc.prefix)
    xrd = DiffractionDetector(detector.prefix, name="xrd")
    xrd.wait_for_connection(timeout=10)
    rig.load_cell.tare().wait(10)
    yield rig_ioc, detector, rig, xrd
    xrd.destroy()
    rig.destroy()
    assert detector.stop() == 0, detector.stderr
    rig_ioc.stop()


def test_an_exposure_takes_the_rigs_experiment_time(beamline):
    """Acquire with put-completion: the put returns once AcquireTime of the rig's clock
    has passed; the frame, its number, its start and the axis with units are served."""
    rig_ioc, det, _, _ = beamline
    det.put("cam1:AcquireTime", 500.0)
    assert det.get("cam1:AcquireTime_RBV") == 500.0
    counter = det.get("cam1:ArrayCounter_RBV")
    before = rig_ioc.get("Rig:Time-RB")
    det.put("cam1:Acquire", 1, timeout=30)  # waits for the frame
    after = rig_ioc.get("Rig:Time-RB")
    start = det.get("image1:TimeStamp_RBV")
    assert before <= start and start + 500.0 <= after + 1e-6
    assert det.get("cam1:ArrayCounter_RBV") == counter + 1 == det.get("image1:UniqueId_RBV")
    assert det.enum("cam1:DetectorState_RBV") == "Idle"
    assert det.enum("cam1:Acquire_RBV") == "Done"
    frame = det.pv("image1:ArrayData").read(data_type=ChannelType.CTRL_LONG)
    axis = det.pv("cam1:TwoTheta_RBV").read(data_type=ChannelType.CTRL_DOUBLE)
    assert len(frame.data) == len(axis.data) == det.get("cam1:ArraySizeX_RBV") == 1280
    assert frame.metadata.units == b"counts" and axis.metadata.units == b"deg"
    assert np.all(np.diff(axis.data) > 0) and axis.data[0] == pytest.approx(3.0)
    # 500 s of a ~160 counts/s background in the first strips: Poisson around 80,000
    assert 70_000 < np.mean(frame.data[:20]) < 90_000
    assert det.get("cam1:Wavelength_RBV") == pytest.approx(0.4133)
    assert det.text("cam1:Sample_RBV").startswith(rig_ioc.prefix)


def test_multiple_and_continuous_image_modes(beamline):
    _, det, _, _ = beamline
    det.put("cam1:AcquireTime", 200.0)
    det.put("cam1:AcquirePeriod", 400.0)
    det.put("cam1:ImageMode", "Multiple")
    det.put("cam1:NumImages", 3)
    counter = det.get("cam1:ArrayCounter_RBV")
    det.put("cam1:Acquire", 1, timeout=30)
    assert det.get("cam1:NumImagesCounter_RBV") == 3
    assert det.get("cam1:ArrayCounter_RBV") == counter + 3
    det.put("cam1:ArrayCounter", 0)  # reset, as areaDetector allows
    assert det.get("cam1:ArrayCounter_RBV") == 0
    det.put("cam1:ImageMode", "Continuous")
    done = threading.Event()
    det.pv("cam1:Acquire").write([1], wait=False, callback=lambda response: done.set())
    det.wait_for(lambda: det.get("cam1:NumImagesCounter_RBV") >= 2, 30, "two frames")
    assert not done.is_set()  # continuous: the put completes only when stopped
    det.put("cam1:Acquire", "Done")
    assert done.wait(10)
    assert det.enum("cam1:DetectorState_RBV") == "Aborted"
    assert "stopped after" in det.text("cam1:StatusMessage_RBV")
    det.put("cam1:ImageMode", "Single")


def test_hostile_puts_are_refused_and_change_nothing(beamline):
    """Every writable PV of the detector gets every wrong kind of value from an
    independent client, every read-only PV a write: refused, unchanged, the reason on
    cam1:StatusMessage_RBV; a second Acquire while acquiring is refused too."""
    _, det, _, _ = beamline
    messages = Messages(det, "cam1:StatusMessage_RBV")
    names = list(DetectorIOC(prefix=det.prefix, sample="X:").pvdb)
    writable = read_only = 0
    for name in names:
        pv = det.pv(name[len(det.prefix) :])
        if AccessRights.WRITE not in pv.access_rights:
            read_only += 1
            pv.write([1.0], data_type=ChannelType.DOUBLE, wait=False)
            assert "read-only" in messages.next()
            continue
        kind, states = kind_of(pv)
        writable += 1
        before = snapshot(pv)
        for data, data_type, words in hostile_values(kind, states):
            pv.write(data, data_type=data_type, wait=False)
            text = messages.next()
            assert text.startswith(f"{name} refused") and words in text, (name, data, text)
            assert snapshot(pv) == before, (name, data)
    assert writable == 6 and read_only >= 20
    for name, value, words in [
        ("cam1:AcquireTime", -1.0, "limits"),
        ("cam1:AcquireTime", 0.0, "limits"),
        ("cam1:NumImages", 0, "limits"),
        ("cam1:AcquirePeriod", 1e9, "limits"),
    ]:
        before = snapshot(det.pv(name))
        det.pv(name).write([value], wait=False)
        assert words in messages.next().lower(), name
        assert snapshot(det.pv(name)) == before
    det.put("cam1:AcquireTime", 20_000.0)  # 10 s of wall time at x2000
    det.pv("cam1:Acquire").write([1], wait=False)
    det.wait_for(lambda: det.enum("cam1:DetectorState_RBV") == "Acquire", 10, "acquiring")
    det.pv("cam1:Acquire").write([b"Acquire"], data_type=ChannelType.STRING, wait=False)
    assert "already acquiring" in messages.next()
    det.put("cam1:Acquire", "Done")
    det.wait_for(lambda: det.enum("cam1:DetectorState_RBV") == "Aborted", 10, "the stop")


def test_ophyds_own_areadetector_cam_drives_it(beamline):
    """The names are areaDetector's: ophyd's CamBase reads and sets them as on a real
    detector, and its Acquire puts a frame out."""
    from ophyd.areadetector.cam import CamBase

    _, det, _, _ = beamline
    cam = CamBase(det.prefix + "cam1:", name="cam")
    try:
        cam.acquire_time.set(100.0).wait(10)
        cam.image_mode.set(0).wait(10)  # Single
        cam.num_images.set(1).wait(10)
        assert cam.acquire_time.get() == 100.0 and cam.detector_state.get() in (0, 10)
        before = cam.array_counter.get()
        cam.acquire.put(1, wait=True, timeout=30)
        assert cam.array_counter.get() == before + 1
        assert cam.model.get() == "1280-strip line detector"
        assert cam.max_size.max_size_x.get() == 1280
    finally:
        cam.destroy()


def test_operando_run_stores_frames_and_recovers_the_lattice_law(beamline, session):
    """run_protocol with the detector, a pattern every 5 minutes and at each step's start,
    the cell at open circuit during each exposure: the frames land as one Tiled array with
    their axis and units, each with the rig's state; the fitted c and a, against the
    state of charge from the charge passed, follow the simulated law within their
    stated uncertainties."""
    rig_ioc, _, rig, xrd = beamline
    soc0 = rig_ioc.get("Rig:CellSOC-RB")
    xrd.acquire_time.set(60.0).wait(10)
    (uid,) = session.RE(
        run_protocol(rig, PROTOCOL, detectors=[xrd], detector_period=300.0,
                     open_circuit_reads=True, poll=0.05)
    )  # fmt: skip
    run = session.catalog[uid]
    assert run.stop["exit_status"] == "success"
    stream = run["primary"]
    image = stream["xrd_image"]
    n = image.shape[0]
    assert type(image).__name__ == "ArrayClient" and image.shape == (n, 1280) and n >= 20
    assert image.dims[0] == "time" and image.metadata["units"] == "counts"
    conf = stream.metadata["configuration"]["xrd"]
    assert conf["data_keys"]["xrd_two_theta"]["units"] == "deg"
    assert len(conf["data"]["xrd_two_theta"]) == 1280
    assert conf["data"]["xrd_acquire_time"] == 60.0
    data = stream.read()
    assert np.all(np.diff(data["xrd_frame"].values) == 1)  # every frame, in order
    for key in ("rig_cycler_test_time", "rig_cycler_voltage", "rig_cycler_charge_capacity",
                "rig_press_readback", "xrd_exposure_start"):  # fmt: skip
        assert np.all(np.isfinite(data[key].values)), key
    assert np.all(np.abs(data["rig_press_readback"].values[1:] - 100.0) < 1.0)
    charging = data["rig_sequencer_step"].values == 2
    assert charging.sum() >= 3 and np.all(data["rig_cycler_current"].values[charging] == 0)
    steps = run["steps"].read()
    assert "paused after" in str(steps["step_interruptions"].values[1])  # the exposures

    fr = diffraction.frames(run)
    fit = diffraction.lattice(fr)
    assert np.all(np.isfinite(fit.c)) and np.all(np.isfinite(fit.a))
    truth = np.array([law.lattice(law.lithium_content(soc0 + q / fr.capacity)) for q in fr.charge])
    z_c = (fit.c - truth[:, 1]) / fit.c_sigma
    z_a = (fit.a - truth[:, 0]) / fit.a_sigma
    assert np.median(np.abs(z_c)) < 1.5 and np.max(np.abs(z_c)) < 5, z_c
    assert np.median(np.abs(z_a)) < 1.5 and np.max(np.abs(z_a)) < 5, z_a
    assert np.ptp(fit.c) > 0.2  # the law's swing is there, not a flat line
    assert fit.c_sigma.max() < 0.002 and fit.a_sigma.max() < 0.001


def test_detector_steps_choose_the_boundaries(beamline, session):
    """No period, detectors at the start of step 2 only: frames at the run's start, at
    step 2 and at the end; without open-circuit reads the current flows meanwhile."""
    _, _, rig, xrd = beamline
    xrd.acquire_time.set(60.0).wait(10)
    protocol = "Set pressure to 100 MPa\nCharge at C/2 for 20 minutes\nRest for 5 minutes\n"
    plan = run_protocol(rig, protocol, detectors=[xrd], detector_steps=[2], poll=0.05)
    (uid,) = session.RE(plan)
    data = session.catalog[uid]["primary"].read()
    assert list(data["rig_sequencer_step"].values[1:2]) == [2]
    assert len(data["xrd_frame"]) == 3
    assert data["rig_cycler_current"].values[1] == pytest.approx(1e-3)  # C/2 of 2 mAh
    with pytest.raises(ValueError, match="detector_steps: expected step numbers"):
        session.RE(run_protocol(rig, protocol, detectors=[xrd], detector_steps=[0]))


def test_a_pause_holds_cell_and_detector_and_resume_goes_on(beamline, session):
    """A RunEngine pause during an operando run: circuit open, press holding, detector
    idle; resume finishes the protocol with frames before and after, none twice."""
    rig_ioc, det, rig, xrd = beamline
    RE = session.RE
    xrd.acquire_time.set(60.0).wait(10)
    protocol = "Set pressure to 100 MPa\nCharge at C/2 for 1 hour\nRest for 5 minutes\n"
    paused = threading.Event()

    def on_page(name, doc):
        if name == "event_page" and 2 in doc["data"].get("step", []) and not paused.is_set():
            paused.set()
            threading.Thread(target=RE.request_pause, kwargs={"defer": False}).start()

    token = RE.subscribe(on_page)
    try:
        with pytest.raises(RunEngineInterrupted):
            RE(
                run_protocol(
                    rig,
                    protocol,
                    detectors=[xrd],
                    detector_period=300.0,
                    open_circuit_reads=True,
                    poll=0.05,
                )
            )
    finally:
        RE.unsubscribe(token)
    assert RE.state == "paused"
    assert rig_ioc.get("Cyc:Current-RB") == 0.0 and rig_ioc.enum("Press:Mode-RB") == "Pressure"
    det.wait_for(lambda: det.enum("cam1:DetectorState_RBV") in ("Idle", "Aborted"), 10, "idle")
    (uid,) = RE.resume()
    run = session.catalog[uid]
    assert run.stop["exit_status"] == "success"
    frames = run["primary"].read()["xrd_frame"].values
    assert len(frames) >= 5 and len(set(frames)) == len(frames)
    steps = run["steps"].read()
    assert steps["step_charge"].values[1] == pytest.approx(1.0, rel=1e-3)  # C/2 x 1 h


def test_a_lost_sample_fails_the_frame_with_its_reason(beamline):
    """The rig's IOC dies during an exposure: the frame is refused with the reason and
    what to do (ophyd raises it), the detector says Error and keeps serving. Ends the
    module's rig: this test runs last."""
    rig_ioc, det, _, xrd = beamline
    xrd.acquire_time.set(80_000.0).wait(10)  # 40 s of wall time: the IOC dies long before
    status = xrd.trigger()
    det.wait_for(lambda: det.enum("cam1:DetectorState_RBV") == "Acquire", 10, "acquiring")
    rig_ioc.process.kill()
    with pytest.raises(DetectorFailed, match=r"frame lost: the rig .* does not answer"):
        status.wait(20)
    assert det.enum("cam1:DetectorState_RBV") == "Error"
    assert "start the rig's IOC" in det.text("cam1:StatusMessage_RBV")
    started = time.monotonic()
    with pytest.raises(DetectorFailed, match="frame lost"):
        xrd.trigger().wait(20)  # refused again, promptly, while the rig is gone
    assert time.monotonic() - started < 10
    assert math.isfinite(det.get("cam1:AcquireTime_RBV"))

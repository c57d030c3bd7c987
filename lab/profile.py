"""The RE Manager's startup module for one rig of a lab (``--startup-module
ssb_lab.profile``).

Everything it needs comes from the environment ``ssb lab`` gives each manager:
``SSB_LAB_RIG`` (the rig's name, stored in every run as ``rig``), ``SSB_LAB_PREFIX`` (its
PV prefix), ``SSB_CATALOG`` / ``SSB_CATALOG_API_KEY`` (the lab's Tiled server) and
``SSB_LAB_MD`` (where ``RE.md`` persists), plus the EPICS variables of its IOC. A beamline's
own profile does the same in two lines: ``from ssb_lab.profile import *`` after setting
those variables, or ``start_session`` and ``Rig`` by hand (see the README).

With ``SSB_LAB_LISTING=1`` (set while ``existing_plans_and_devices.yaml`` is generated)
no catalog is opened: the list needs the names and signatures, not a server.
"""

import functools
import inspect
import os
import sys

# dask registers `sparse` arrays when it can import them, and `sparse` pulls in numba: 60 MB
# in every worker for arrays the suite never writes. Only with a Tiled server for the
# catalog: an embedded catalog (a directory) runs tiled's server here, which imports it. A
# profile that needs sparse imports it before this module.
if os.environ.get("SSB_CATALOG", "").startswith(("http://", "https://")):
    sys.modules.setdefault("sparse", None)

from bluesky.plan_stubs import mv  # raw device writes: operators only (user groups)
from bluesky.plans import count  # a reading, harmless: observers too

from ssb_devices import Rig
from ssb_lab.layout import HEARTBEAT
from ssb_plans import attach as _attach
from ssb_plans import hold_pressure as _hold_pressure
from ssb_plans import pressure_steps as _pressure_steps
from ssb_plans import ramp_pressure as _ramp_pressure
from ssb_plans import set_pressure as _set_pressure
from ssb_plans import studies as _studies
from ssb_plans.cycling import run_protocol as _run_protocol


def _for_queue(plan):
    """``plan`` with its annotations resolved: the suite's modules use postponed
    annotations (strings), which the queue's parameter validation cannot evaluate. Types
    it does not know (``Rig``, ``Protocol``) are then left unchecked, and a device's name
    given as a string becomes the device."""

    @functools.wraps(plan)
    def queued(*args, **kwargs):
        return (yield from plan(*args, **kwargs))

    queued.__signature__ = inspect.signature(plan, eval_str=True)
    return queued


run_protocol = _for_queue(_run_protocol)
set_pressure = _for_queue(_set_pressure)
ramp_pressure = _for_queue(_ramp_pressure)
hold_pressure = _for_queue(_hold_pressure)
pressure_steps = _for_queue(_pressure_steps)
attach = _for_queue(_attach)
minimum_pressure_study = _for_queue(_studies.minimum_pressure_study)
rate_capability = _for_queue(_studies.rate_capability)
pressure_impedance_scan = _for_queue(_studies.pressure_impedance_scan)

RIG_NAME = os.environ.get("SSB_LAB_RIG", "rig1")
rig = Rig(os.environ.get("SSB_LAB_PREFIX", "SSB:"), name="rig")

if os.environ.get("SSB_LAB_LISTING") == "1":
    from bluesky import RunEngine

    RE = RunEngine(context_managers=[])
else:
    from ssb_plans.session import start_session

    session = start_session(
        os.environ.get("SSB_CATALOG"),
        md_dir=os.environ.get("SSB_LAB_MD"),
        progress=False,
        context_managers=[],  # the worker, not a terminal, owns the signals
        heartbeat=HEARTBEAT,
    )
    RE = session.RE
    RE.md["rig"] = RIG_NAME  # every run says where it ran: search by rig

__all__ = [
    "RE",
    "attach",
    "count",
    "hold_pressure",
    "minimum_pressure_study",
    "mv",
    "pressure_impedance_scan",
    "pressure_steps",
    "ramp_pressure",
    "rate_capability",
    "rig",
    "run_protocol",
    "set_pressure",
]

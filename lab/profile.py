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
import os
import sys
import typing
from collections.abc import Sequence
from typing import Any, Literal

# dask registers `sparse` arrays when it can import them, and `sparse` pulls in numba: 60 MB
# in every worker for arrays the suite never writes. Only with a Tiled server for the
# catalog: an embedded catalog (a directory) runs tiled's server here, which imports it. A
# profile that needs sparse imports it before this module.
if os.environ.get("SSB_CATALOG", "").startswith(("http://", "https://")):
    sys.modules.setdefault("sparse", None)  # type: ignore[arg-type]  # None: not importable

from bluesky.plan_stubs import mv  # raw device writes: operators only (user groups)
from bluesky.plans import count  # a reading, harmless: observers too
from bluesky.protocols import Readable
from bluesky_queueserver import parameter_annotation_decorator

from ssb_analysis.stability import Criteria as _Criteria
from ssb_devices import Rig
from ssb_lab.layout import HEARTBEAT
from ssb_plans import attach as _attach
from ssb_plans import hold_pressure as _hold_pressure
from ssb_plans import pressure_steps as _pressure_steps
from ssb_plans import ramp_pressure as _ramp_pressure
from ssb_plans import set_pressure as _set_pressure
from ssb_plans import studies as _studies
from ssb_plans.cycling import run_protocol as _run_protocol
from ssb_plans.events import Limit as _Limit
from ssb_plans.protocol import Protocol as _Protocol

# How the queue is to check each type the suite's plans take (queueserver's own
# parameter annotations): the plans' modules postpone their annotations (strings), which
# the queue would otherwise take as string literals. A type missing here is refused at
# import, so a new parameter type is a decision, not a silent "anything goes".
_QUEUE_TYPES: dict[object, str] = {
    Rig: "__DEVICE__",  # its name in the worker, "rig"
    float: "float",
    int: "int",
    bool: "bool",
    float | None: "typing.Optional[float]",
    Sequence[float]: "typing.List[float]",
    Sequence[Readable]: "typing.List[__READABLE__]",
    dict[str, str] | None: "typing.Optional[typing.Dict[str, str]]",
    dict[str, Any] | None: "typing.Optional[typing.Dict[str, typing.Any]]",
    Sequence[int] | Literal["all"]: "typing.Union[typing.List[int], typing.Literal['all']]",
    _Protocol | str: "str",  # the protocol's text: the plan parses and checks it
}
# Objects a plan takes from IPython that no queue item can carry: left to the plan.
_FROM_IPYTHON = (Sequence[_Limit], _Criteria | None, tuple[list, str, str] | None)


def _for_queue(plan):
    """``plan`` as the queue sees it: every parameter annotated for queueserver
    (``parameter_annotation_decorator``), from the plan's own type hints."""
    parameters = {}
    for name, hint in typing.get_type_hints(plan).items():
        if name == "return":
            continue
        if hint in _FROM_IPYTHON:
            parameters[name] = {"annotation": "typing.Any"}
        elif hint in _QUEUE_TYPES:
            parameters[name] = {"annotation": _QUEUE_TYPES[hint]}
        else:
            raise TypeError(f"{plan.__name__}({name}: {hint}): no queue type for it")

    @parameter_annotation_decorator({"parameters": parameters})
    @functools.wraps(plan)
    def queued(*args, **kwargs):
        return (yield from plan(*args, **kwargs))

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

"""The whole stack for a benchmark: an IOC subprocess on loopback, the ophyd rig and a
session on a throwaway local catalog."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator

from ssb_ioc.launch import IOCProcess, free_port_pair, loopback_ca_env


@contextlib.contextmanager
def rig_session(speed: float) -> Iterator[tuple]:
    """``(ioc, rig, session, directory)``; everything is stopped and removed after."""
    env = loopback_ca_env(free_port_pair())
    os.environ.update(env)
    from ssb_devices import Rig
    from ssb_plans import start_session
    from ssb_plans.demo import DEMO_CELL

    with (
        IOCProcess(env=env, speed=speed, seed=0) as ioc,
        tempfile.TemporaryDirectory() as tmp,
    ):
        rig = Rig(ioc.prefix, name="rig")
        rig.wait_for_connection(timeout=10)
        session = start_session(os.path.join(tmp, "catalog"), progress=False)
        session.describe_experiment(cell=DEMO_CELL, purpose="material analysis", operator="bench")
        try:
            yield ioc, rig, session, tmp
        finally:
            session.close()
            rig.destroy()

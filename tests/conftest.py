"""Fixtures: an ssb-ioc subprocess on loopback with a random prefix and free ports.

Channel Access is forced onto loopback with non-default ports chosen per test session,
so runs on the same machine never see each other's PVs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

# caproto's threading client opens a new circuit inside its search-results thread and waits
# for the handshake there with the global default timeout (2 s): on a loaded CI machine a
# slower handshake raised in that thread and ended it, and no later PV of the worker ever
# connected (caproto 1.3). The documented CAPROTO_DEFAULT_TIMEOUT, read once when caproto
# is imported, gives a handshake 10 s; it is removed again so that the IOCs the tests start
# keep caproto's defaults. tests/test_compat.py checks the thread still needs it.
os.environ.setdefault("CAPROTO_DEFAULT_TIMEOUT", "10")
import caproto.threading.client  # noqa: F401  (takes the timeout now)

if os.environ.get("CAPROTO_DEFAULT_TIMEOUT") == "10":
    del os.environ["CAPROTO_DEFAULT_TIMEOUT"]

import numpy as np
import pytest
from caproto import ChannelType

from ssb_contract.paging import HEADER, Lost, Page, Paging, follow, page_name
from ssb_contract.records import RESULTS_KEPT
from ssb_ioc.launch import IOCProcess, free_port_pair, loopback_ca_env

CA_ENV = loopback_ca_env(free_port_pair())
os.environ.update(CA_ENV)  # before any caproto client context exists


# The longest files, started first: with -n a worker never runs one of them alone at the
# end while the other waits (test_readme alone takes 5-8 minutes).
SLOW_FIRST = ("test_readme.py", "test_storage.py", "test_lab.py", "test_attach.py")


def pytest_collection_modifyitems(items):
    rank = {name: i for i, name in enumerate(SLOW_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: rest in order


GONE: set[str] = set()  # prefixes of the IOCs stopped so far in this session
CONTEXTS: list = []  # the tests' client contexts


def _stop_and_remember(self, timeout: float = 10.0) -> int:
    code = _stop(self, timeout)
    GONE.add(self.prefix)
    return code


_stop, IOCProcess.stop = IOCProcess.stop, _stop_and_remember


def forget_gone_iocs() -> None:
    """Stop searching for the PVs of IOCs that are gone (their random prefixes never come
    back). caproto's clients search again for every PV that lost its server, forever; over
    a session of hundreds of IOCs the searches pile up until a new IOC takes longer to
    find than a test waits. Both client contexts: the tests' and ophyd's."""
    from caproto.threading import pyepics_compat

    contexts = list(CONTEXTS)
    if pyepics_compat._make_context.cache_info().currsize:
        contexts.append(pyepics_compat.PV.default_context())
    for context in contexts:
        broadcaster = context.broadcaster
        with broadcaster._search_lock:
            names = [item[0] for item in broadcaster.unanswered_searches.values()]
        gone = [name for name in names if name.split(":", 1)[0] + ":" in GONE]
        if gone:
            broadcaster.cancel(*gone)


@pytest.fixture(autouse=True)
def _no_searches_for_gone_iocs():
    forget_gone_iocs()


class RunningIOC(IOCProcess):
    """An IOC subprocess plus small helpers on caproto's threading client."""

    def __init__(self, context, **kwargs):
        super().__init__(env=CA_ENV, **kwargs)
        self.context = context

    def start(self, timeout: float = 20.0) -> RunningIOC:
        forget_gone_iocs()
        return super().start(timeout)

    def pv(self, name: str, timeout: float = 5.0):
        (pv,) = self.context.get_pvs(self.prefix + name, timeout=timeout)
        pv.wait_for_connection(timeout=timeout)
        return pv

    def get(self, name: str) -> float:
        return self.pv(name).read(timeout=5.0).data[0]

    def enum(self, name: str) -> str:
        return self.pv(name).read(data_type=ChannelType.STRING, timeout=5.0).data[0].decode()

    def text(self, name: str) -> str:
        data = self.pv(name).read(timeout=5.0).data
        return bytes(data).rstrip(b"\0").decode()

    def put(self, name: str, value, wait: bool = True, timeout: float = 30.0):
        """Write and (by default) wait for put-completion. The timeout is a safety net
        for a loaded CI machine (a 10 s one once ran out with the IOC healthy)."""
        kind = ChannelType.STRING if isinstance(value, str) else None
        return self.pv(name).write([value], wait=wait, timeout=timeout, data_type=kind)

    def rows(self, group: str, width: int, start: int | None = None) -> np.ndarray:
        """Every row of a buffer (``Cyc:Buf:``) from sequence number ``start`` (else the
        oldest held) on, read from its page PVs as any client does; a loss fails."""

        def fetch(index):
            value = np.asarray(self.pv(group + page_name(index)).read(timeout=10).data)
            rows = value[HEADER : HEADER + int(value[1]) * width].reshape(-1, width)
            return Page(int(value[0]), rows[:, 0].astype(np.int64), rows)

        end = int(self.get(group + "NextSeq-RB"))
        start = int(self.get(group + "OldestSeq-RB")) if start is None else start
        read = list(follow(Paging(int(self.get(group + "Kept-RB"))), start, end, fetch))
        assert not [item for item in read if isinstance(item, Lost)], read
        return np.concatenate(read) if read else np.empty((0, width))

    def results(self, first: int = 1) -> list[dict]:
        """The records of completed steps from completion number ``first`` on."""

        def fetch(index):
            page = json.loads(self.text(f"Seq:Results:{page_name(index)}"))
            return Page(page["page"], [r["n"] for r in page["records"]], page["records"])

        end = int(self.get("Seq:Completed-RB")) + 1
        return [r for page in follow(Paging(RESULTS_KEPT), first, end, fetch) for r in page]

    def wait_for(self, predicate, timeout: float = 10.0, what: str = "condition"):
        """Poll a condition on the IOC's PVs until true (no fixed sleeps)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def start_ioc(context, *args: str, speed: float = 100.0, cell: str = "si-nmc") -> RunningIOC:
    ioc = RunningIOC(context, cell=cell, speed=speed, seed=1, extra_args=args).start()
    ioc.pv("Rig:Cell-RB")
    return ioc


def run_cli(module: str, *args: str) -> subprocess.CompletedProcess:
    """Run ``python -m module args`` (a command-line entry point) on loopback CA."""
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, **CA_ENV},
    )


def stop_ioc(ioc: RunningIOC) -> int:
    return ioc.stop()


@pytest.fixture(scope="session")
def ca_context():
    from caproto.threading.client import Context

    context = Context()
    CONTEXTS.append(context)
    yield context
    CONTEXTS.remove(context)
    context.disconnect()


def pressed_sim_rig():
    """The pure simulation (no EPICS): si-nmc, tared, held at 100 MPa."""
    from ssb_ioc.sim import Rig, load_cell_file

    rig = Rig(load_cell_file("si-nmc"), seed=0)
    rig.tare()
    rig.set_mode("Pressure")
    rig.set_pressure(100.0)
    rig.advance(5.0)
    return rig


def connected_rig(prefix: str):
    from ssb_devices import Rig

    device = Rig(prefix, name="rig")
    device.wait_for_connection(timeout=10)
    return device


@pytest.fixture
def rig(ioc):
    """The ophyd Rig connected to the test's IOC."""
    device = connected_rig(ioc.prefix)
    yield device
    device.destroy()


@pytest.fixture
def fast_ioc(ca_context):
    """An IOC at 5000x: hours of cycling in seconds."""
    running = start_ioc(ca_context, speed=5000.0)
    yield running
    running.stop()


@pytest.fixture
def fast_rig(fast_ioc):
    device = connected_rig(fast_ioc.prefix)
    yield device
    device.destroy()


@pytest.fixture(scope="module")
def catalog_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("catalog")


@pytest.fixture
def session(catalog_dir, tmp_path, request):
    """A session on the module's catalog, describing the module's ``CELL``."""
    from ssb_plans import start_session
    from ssb_plans.demo import DEMO_CELL

    s = start_session(catalog_dir, md_dir=tmp_path / "md", progress=False, context_managers=[])
    cell = getattr(request.module, "CELL", DEMO_CELL)
    s.describe_experiment(cell=cell, purpose="material analysis", operator="tester")
    yield s
    s.close()


@pytest.fixture
def ioc(ca_context):
    running = start_ioc(ca_context)
    yield running
    killed_by_test = running.process.poll() is not None
    code = running.stop()
    assert killed_by_test or code == 0, running.stderr

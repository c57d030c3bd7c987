"""The same session and writer against a Tiled server (URL + API key) instead of a local
directory: a real `tiled serve` process on loopback."""

import secrets
import subprocess
import sys
import time

import httpx
import pytest

from ssb_analysis.catalog import open_catalog
from ssb_ioc.launch import free_port_pair
from ssb_plans import set_pressure, start_session
from ssb_plans.demo import DEMO_CELL

CONFIG = """
authentication:
  single_user_api_key: {key}
trees:
  - path: /
    tree: catalog
    args:
      uri: sqlite:///{root}/catalog.db
      writable_storage: ["{root}/data", "sqlite:///{root}/tables.db"]
      init_if_not_exists: true
      specs: [{{name: CatalogOfBlueskyRuns, version: "3.0"}}]
"""


class TiledServer:
    """A `tiled serve` process on loopback, with a catalog of Bluesky runs in ``root``."""

    def __init__(self, root):
        self.root = root
        self.api_key = secrets.token_hex(8)
        self.port = free_port_pair()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen | None = None

    def start(self, timeout: float = 60.0) -> "TiledServer":
        (self.root / "data").mkdir(parents=True, exist_ok=True)
        config = self.root / "config.yml"
        config.write_text(CONFIG.format(key=self.api_key, root=self.root))
        self._log = (self.root / "server.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tiled", "serve", "config", str(config),
             "--host", "127.0.0.1", "--port", str(self.port)],
            stdout=self._log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:  # readiness poll
            assert self.process.poll() is None, (self.root / "server.log").read_text()
            try:
                if httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                continue
        raise AssertionError(f"tiled serve not ready within {timeout} s")

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(20)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(20)
        self._log.close()


@pytest.fixture
def tiled_server(tmp_path):
    server = TiledServer(tmp_path).start()
    yield server.url, server.api_key
    server.stop()


def test_a_run_written_to_a_tiled_server_reads_back(tiled_server, rig, tmp_path):
    url, key = tiled_server
    session = start_session(
        url, api_key=key, md_dir=tmp_path / "md", progress=False, context_managers=[]
    )
    session.describe_experiment(
        cell={**DEMO_CELL, "cell_id": "SRV-1"}, purpose="material analysis", operator="tester"
    )
    (uid,) = session.RE(set_pressure(rig, 35.0))
    session.close()
    catalog = open_catalog(url, api_key=key)
    try:
        run = catalog[uid]
        assert run.start["cell_id"] == "SRV-1"
        assert run.stop["exit_status"] == "success"
        assert abs(float(run.primary.read()["rig_press_readback"][-1]) - 35.0) <= 0.2
    finally:
        catalog.context.close()


def test_a_wrong_api_key_is_refused(tiled_server):
    url, _ = tiled_server
    with pytest.raises(Exception, match="API key"):
        open_catalog(url, api_key="not-the-key")

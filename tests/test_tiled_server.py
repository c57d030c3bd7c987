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


@pytest.fixture
def tiled_server(tmp_path):
    key = secrets.token_hex(8)
    (tmp_path / "data").mkdir()
    config = tmp_path / "config.yml"
    config.write_text(CONFIG.format(key=key, root=tmp_path))
    port = free_port_pair()
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tiled",
            "serve",
            "config",
            str(config),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # readiness poll
        assert server.poll() is None, (tmp_path / "server.log").read_text()
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            continue
    yield url, key
    server.terminate()
    server.wait(20)
    log.close()


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

"""Imports flow one way: analysis reads the catalog only; the IOC never imports clients;
both sides share ssb_contract, which imports none of them.

    ssb_lab -> ssb_plans, ssb_devices, ssb_analysis, ssb_ioc.launch   (starts it all)
    ssb_analysis            (catalog only: no ophyd, caproto, bluesky)
    ssb_plans -> ssb_devices -> ophyd
    ssb_ioc                 (server side: no client layers)

The one client-side use of ssb_ioc is ``ssb_ioc.launch`` (start an IOC subprocess), used
by ``ssb demo`` and ``ssb lab``; the one use of ssb_lab below it is ``ssb lab``'s command
line, which the ``ssb`` command includes.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = {
    "ssb_contract": "contract",
    "ssb_ioc": "ioc",
    "ssb_devices": "ssb_devices",
    "ssb_async": "ssb_async",
    "ssb_plans": "plans",
    "ssb_analysis": "analysis",
    "ssb_lab": "lab",
}
FORBIDDEN = {
    "ssb_contract": {  # what both sides know: it imports neither, nor any library
        "ssb_ioc", "ssb_devices", "ssb_plans", "ssb_analysis", "ssb_lab", "ophyd", "bluesky",
        "caproto", "numpy", "tiled", "databroker", "p4p", "pandas", "ssb_async", "ophyd_async",
    },
    "ssb_ioc": {
        "ssb_devices", "ssb_plans", "ssb_analysis", "ssb_lab", "ophyd", "bluesky", "databroker",
        "ssb_async", "ophyd_async",
    },
    "ssb_devices": {
        "ssb_ioc", "ssb_plans", "ssb_analysis", "ssb_lab", "bluesky", "databroker", "tiled",
        "ssb_async", "ophyd_async",
    },
    "ssb_async": {  # the ophyd-async family: neither the ophyd one nor anything above
        "ssb_ioc", "ssb_devices", "ssb_plans", "ssb_analysis", "ssb_lab", "ophyd",
        "databroker", "tiled",
    },
    "ssb_plans": {"ssb_ioc", "ssb_lab"},
    "ssb_analysis": {
        "ssb_ioc", "ssb_devices", "ssb_plans", "ssb_lab", "ophyd", "caproto", "bluesky",
        "ssb_async", "ophyd_async",
    },
    "ssb_lab": {"ssb_ioc"},
}  # fmt: skip
ALLOWED = {
    "ssb_plans": {"ssb_ioc.launch", "ssb_lab.cli"},
    "ssb_lab": {"ssb_ioc.launch", "ssb_ioc.backends"},  # starts IOCs, checks rig files
}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_layer_imports(package):
    files = sorted((ROOT / FOLDERS[package]).rglob("*.py"))
    assert files
    for path in files:
        modules = imported_modules(path) - ALLOWED.get(package, set())
        bad = {m for m in modules if m.split(".")[0] in FORBIDDEN[package]}
        assert not bad, f"{path.relative_to(ROOT)} imports {sorted(bad)}"


def absolute_imports(path: Path) -> set[str]:
    """The modules a file of ``ssb_ioc`` imports, relative imports made absolute."""
    package = ["ssb_ioc", *path.relative_to(ROOT / "ioc").parent.parts]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            names |= {module} if node.module else {f"{module}.{a.name}" for a in node.names}
    return names


# Inside the IOC: the control core knows no physics, no driver and no wire; the PV layer
# knows the core and the contract, not what serves the ports below it.
IOC_FORBIDDEN = {
    "core": ("ssb_ioc.sim", "ssb_ioc.backends", "ssb_ioc.server", "ssb_ioc.emulate", "caproto",
             "pymodbus"),
    "server": ("ssb_ioc.sim", "ssb_ioc.backends", "ssb_ioc.emulate", "pymodbus"),
    "backends": ("ssb_ioc.sim", "ssb_ioc.server", "ssb_ioc.emulate", "caproto"),
    "sim": ("ssb_ioc.backends", "ssb_ioc.server", "ssb_ioc.emulate", "caproto", "pymodbus"),
}  # fmt: skip
# The diffraction detector has no driver: its IOC is the face of its simulation.
IOC_ALLOWED = {"server/detector.py": {"ssb_ioc.sim.diffraction"}}


@pytest.mark.parametrize("layer", sorted(IOC_FORBIDDEN))
def test_the_ioc_layers_import_downwards_only(layer):
    files = sorted((ROOT / "ioc" / layer).rglob("*.py"))
    assert files
    for path in files:
        name = str(path.relative_to(ROOT / "ioc"))
        modules = absolute_imports(path) - IOC_ALLOWED.get(name, set())
        bad = {m for m in modules for f in IOC_FORBIDDEN[layer] if m == f or m.startswith(f + ".")}
        assert not bad, f"ioc/{name} imports {sorted(bad)}"


def test_the_layer_check_sees_relative_imports():
    """The check above must see ``from ..sim import Rig`` as ssb_ioc.sim."""
    assert "ssb_ioc.sim.diffraction" in absolute_imports(ROOT / "ioc" / "server" / "detector.py")
    assert "ssb_ioc.core.press" in absolute_imports(ROOT / "ioc" / "sim" / "press.py")


HEAVY = ("bluesky", "ophyd", "caproto", "tiled", "pandas", "matplotlib", "bluesky_queueserver")


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        *(
            [command, "--help"]
            for command in ("demo", "run", "attach", "runs", "show", "export", "report", "lab")
        ),
        ["lab", "up", "--help"],
        ["runs", "--catalog", "/nonexistent/catalog"],
        ["runs", "--catalog", "http://127.0.0.1:9/api"],  # no server there: one line
    ],
)
def test_commands_that_need_no_catalog_or_epics_import_neither(argv):
    """What `ssb --help` and a refusal cost is Python's start, not the libraries'."""
    import subprocess
    import sys

    probe = (
        "import sys\nfrom ssb_plans.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert done.stdout.strip().splitlines()[-1] == "[]", done.stdout + done.stderr


def test_an_unreachable_catalog_server_is_one_line_and_no_wait():
    """tiled's client retries a refused connection for half a minute, then prints a page
    of traceback; `ssb` says it in one line at once (the port is refused, not slow)."""
    import subprocess
    import sys

    for command in (["runs"], ["show", "-1"], ["export", "-1"]):
        done = subprocess.run(
            [sys.executable, "-m", "ssb_plans.cli", *command, "--catalog", "http://127.0.0.1:9/api"],
            capture_output=True, text=True, timeout=20,
        )  # fmt: skip
        assert done.returncode == 1
        (line,) = done.stderr.strip().splitlines()
        assert line.startswith(
            f"ssb {command[0]}: no catalog server answers at http://127.0.0.1:9"
        )


def test_ssb_emulate_says_what_it_serves():
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-m", "ssb_ioc.emulate.emulator", "--help"], capture_output=True,
        text=True, timeout=30,
    )  # fmt: skip
    text = " ".join(done.stdout.split())
    for part in ("press controller", "load-cell amplifier", "Modbus TCP", "BTS cycler channel"):
        assert part in text, text


def test_the_devices_run_on_caprotos_client_unless_the_user_chooses():
    """pyepics is installed (the tests use it as an ordinary client): ophyd would take it;
    ssb_devices takes caproto's client unless OPHYD_CONTROL_LAYER says otherwise."""
    import os
    import subprocess
    import sys

    probe = "import ssb_devices, ophyd; print(ophyd.cl.name)"
    env = {k: v for k, v in os.environ.items() if k != "OPHYD_CONTROL_LAYER"}
    for chosen, expected in ((None, "caproto"), ("pyepics", "pyepics")):
        run_env = env if chosen is None else {**env, "OPHYD_CONTROL_LAYER": chosen}
        done = subprocess.run([sys.executable, "-c", probe], env=run_env, capture_output=True,
                              text=True, timeout=60)  # fmt: skip
        assert done.stdout.strip() == expected, done.stderr


def test_caprotos_server_still_cannot_take_text_as_dbr_string_into_a_char_pv():
    """ssb_ioc.server.wire.as_char_array works around this; when caproto converts a
    DBR_STRING put to a long-string PV itself, this fails and the workaround can go."""
    import asyncio

    from caproto import ChannelChar, ChannelType
    from caproto._utils import CaprotoConversionError

    async def put():
        await ChannelChar(value="x", max_length=100).write_from_dbr(
            [b"abc"], ChannelType.STRING, None
        )

    with pytest.raises(CaprotoConversionError):
        asyncio.run(put())

"""An IOC restart remembers its settings and its clock, and never re-presses on its own."""

from __future__ import annotations

import json

import pytest
from conftest import RunningIOC

from ssb_contract.records import SAMPLE

pytestmark = pytest.mark.network


class FreshIOC(RunningIOC):
    """An IOC with a client context of its own: a restarted IOC under the same prefix is
    found at once, not after the shared context's search backoff."""

    def stop(self, timeout: float = 10.0) -> int:
        code = super().stop(timeout)
        self.context.disconnect()
        return code


def start(ca_context, prefix: str | None, directory) -> RunningIOC:
    from caproto.threading.client import Context

    ioc = FreshIOC(Context(), prefix=prefix, speed=1000.0, autosave=directory)
    ioc.start()
    ioc.pv("Rig:Cell-RB")
    return ioc


def test_settings_and_clock_survive_a_restart_with_the_press_off(ca_context, tmp_path):
    first = start(ca_context, None, tmp_path)
    prefix = first.prefix
    try:
        first.put("Press:MaxPressure-SP", 180.0)
        first.put("Press:KP-SP", 12.5)
        first.put("Cyc:LogPeriod-SP", 2.0)
        first.put("Evt:SoftShortAction-SP", "OpenCircuit")
        first.put("Press:Mode-SP", "Pressure")
        first.put("Press:Pressure-SP", 50.0, timeout=20)
        first.wait_for(lambda: first.get("Rig:Time-RB") > 100.0, what="some experiment time")
        saved = json.loads(next(tmp_path.glob("*.json")).read_text())
        assert saved["pvs"]["Press:MaxPressure-SP"] == 180.0  # saved on change, before exit
    finally:
        first.stop()
    ended_at = json.loads(next(tmp_path.glob("*.json")).read_text())["state"]["time"]
    second = start(ca_context, prefix, tmp_path)
    try:
        assert second.get("Press:MaxPressure-SP") == 180.0
        assert second.get("Press:KP-SP") == 12.5
        assert second.get("Cyc:LogPeriod-SP") == 2.0
        assert second.enum("Evt:SoftShortAction-SP") == "OpenCircuit"
        assert second.get("Rig:Time-RB") >= ended_at  # the clock goes on
        assert second.enum("Press:Mode-RB") == "Off"  # never re-presses on its own
        assert second.enum("Cyc:Running-RB") == "No"
        assert "autosave: restored" in second.text("Rig:Msg-RB")
    finally:
        second.stop()


def test_a_damaged_or_refused_save_starts_from_the_cell_file(ca_context, tmp_path):
    first = start(ca_context, None, tmp_path)
    first.stop()
    path = next(tmp_path.glob("*.json"))
    saved = json.loads(path.read_text())
    saved["pvs"]["Press:MaxPressure-SP"] = 9999.0  # beyond the load cell: refused
    saved["pvs"]["Press:KP-SP"] = 7.0
    path.write_text(json.dumps(saved))
    second = start(ca_context, first.prefix, tmp_path)
    try:
        assert second.get("Press:MaxPressure-SP") == 200.0  # the cell file's value
        assert second.get("Press:KP-SP") == 7.0  # the rest restored
    finally:
        second.stop()
    path.write_text("{ not json")
    third = start(ca_context, first.prefix, tmp_path)
    try:
        assert "damaged" in third.text("Rig:Msg-RB")
        assert third.get("Press:KP-SP") == 19.0  # the cell file's gain
    finally:
        third.stop()


def saved_value(directory, name: str):
    """A setting as saved on disk (None until the first save); saves come within a scan."""
    try:
        return json.loads(next(directory.glob("*.json")).read_text())["pvs"][name]
    except (StopIteration, ValueError):  # not yet written, or caught mid-replace
        return None


def rows(ioc, since: int = 0):
    return ioc.rows("Cyc:Buf:", SAMPLE.width, since)


def test_logged_samples_survive_a_killed_ioc_and_numbering_goes_on(ca_context, tmp_path):
    import numpy as np

    first = start(ca_context, None, tmp_path)
    try:
        first.put("Cyc:LogPeriod-SP", 1.0)
        first.put("Rig:CellCurrent-SP", 1e-3)  # charging: samples with growing capacity
        # the condition the test needs, however slow the machine: charged samples logged
        first.wait_for(
            lambda: len(rows(first)) > 50 and rows(first)[-1, 7] > 0,
            timeout=60,
            what="50 samples logged, the newest with charge > 0",
        )
        first.put("Rig:CellCurrent-SP", 0.0)
        before = rows(first)
        first.process.kill()  # SIGKILL: no chance to save anything at exit
        first.process.wait(10)
    finally:
        first.stop()
    second = start(ca_context, first.prefix, tmp_path)
    try:
        after = rows(second)
        np.testing.assert_array_equal(after[: len(before)], before)  # every row kept
        assert second.get("Cyc:Buf:NextSeq-RB") >= len(before)  # numbering goes on
        charged = second.get("Cyc:ChargeCapacity-RB")
        assert charged >= before[-1, 7] > 0  # the counters go on from the last sample
        second.wait_for(lambda: second.get("Cyc:Buf:NextSeq-RB") > len(after) + 5, what="more")
        newer = rows(second, len(after))
        assert newer[0, 0] == len(after)  # the next sequence number, none reused
        assert newer[0, 1] >= after[-1, 1]  # test time never goes back
    finally:
        second.stop()


def test_devices_reconnect_when_a_restarted_ioc_returns(ca_context, tmp_path):
    from conftest import connected_rig

    first = start(ca_context, None, tmp_path)
    rig = connected_rig(first.prefix)
    second = None
    try:
        first.put("Press:KP-SP", 11.0)
        first.wait_for(lambda: saved_value(tmp_path, "Press:KP-SP") == 11.0, what="a save")
        first.process.kill()
        first.process.wait(10)
        first.wait_for(lambda: not rig.connected, what="the device to see the IOC go")
        second = start(ca_context, first.prefix, tmp_path)
        rig.wait_for_connection(timeout=10)  # the same device object, no new one
        assert rig.press.kp.get(use_monitor=False) == 11.0  # and the setting kept
        assert rig.press.mode.get(use_monitor=False) == "Off"
        rig.wait_for_connection(all_signals=True, timeout=10)  # monitors active again
    finally:
        rig.destroy()  # before the IOCs go: its monitors would try to reconnect
        first.stop()
        if second is not None:
            second.stop()


def test_a_second_ioc_for_the_same_prefix_and_directory_is_refused(ca_context, tmp_path):
    from conftest import run_cli

    first = start(ca_context, None, tmp_path)
    try:
        result = run_cli("ssb_ioc.cli", "--prefix", first.prefix, "--autosave", str(tmp_path))
        assert result.returncode == 2
        assert "another ssb-ioc already keeps" in result.stderr
        assert first.get("Press:KP-SP") == 19.0  # the first goes on undisturbed
    finally:
        first.stop()


def test_a_save_belongs_to_its_cell_or_rig_file_and_says_where_it_came_from(ca_context, tmp_path):
    first = start(ca_context, None, tmp_path)
    try:
        first.put("Press:KP-SP", 13.0)
        first.wait_for(lambda: saved_value(tmp_path, "Press:KP-SP") == 13.0, what="a save")
    finally:
        first.stop()
    (saved,) = tmp_path.glob("*.json")
    assert saved.name == f"{first.prefix.rstrip(':')}.sim-si-nmc.json"
    other = FreshIOC(
        __import__("caproto.threading.client").threading.client.Context(),
        prefix=first.prefix, cell="li-nmc", speed=1000.0, autosave=tmp_path,
    )  # fmt: skip
    other.start()
    try:
        assert other.get("Press:KP-SP") != 13.0  # the si-nmc rig's past is not li-nmc's
        assert "autosave: restored" not in other.text("Rig:Msg-RB")
        assert any("saved for another rig or cell" in line for line in other.stdout_lines)
    finally:
        other.stop()
    again = start(ca_context, first.prefix, tmp_path)
    try:
        assert again.get("Press:KP-SP") == 13.0
        said = " ".join(again.stdout_lines)
        assert f"restored from {saved}" in said and "Press:KP-SP=13.0" in said
    finally:
        again.stop()


def test_an_instrument_ioc_is_never_given_a_simulations_save():
    from ssb_ioc.server.autosave import AutosaveFile, identity

    rig = identity("si-nmc", "rigs/emulated.toml")  # what ssb-ioc --rig keys its files by
    assert rig.startswith("rig-emulated-") and identity("si-nmc") == "sim-si-nmc"
    assert identity("si-nmc", "rigs/emulated-ioc-loop.toml") != rig  # nor another rig's
    paths = {AutosaveFile("d", "SSB:", i).path for i in (rig, identity("si-nmc"))}
    assert len(paths) == 2

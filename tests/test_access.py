"""Access security: the rules file, and who may write over Channel Access."""

from __future__ import annotations

import pytest
from caproto import AccessRights, ChannelType
from conftest import RunningIOC, run_cli

from ssb_ioc.server.access import AccessFileError, parse_access
from ssb_ioc.server.context import beacon_addresses

RULES = """
# alice runs the press and the cycler from this machine; everyone else only looks
[[rule]]
users = ["alice"]
hosts = ["127.0.0.1"]
groups = ["Press", "Cyc"]
access = "write"

[[rule]]
users = ["mallory"]
groups = ["*"]
access = "none"

[[rule]]
hosts = ["192.0.2.77"]
groups = ["*"]
access = "write"
"""


def test_first_match_wins_and_no_match_is_read_only():
    rules = parse_access(RULES)
    rw, r = AccessRights.READ | AccessRights.WRITE, AccessRights.READ
    assert rules.rights("Press", "127.0.0.1", "alice") == rw
    assert rules.rights("Rig", "127.0.0.1", "alice") == r  # no rule for Rig: read-only
    assert rules.rights("Press", "127.0.0.1", "bob") == r
    assert rules.rights("Press", "10.1.1.1", "alice") == r  # another host
    assert rules.rights("Cyc", "127.0.0.1", "mallory") == AccessRights.NO_ACCESS
    assert rules.rights("Diag", "192.0.2.77", "anyone") == rw


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[[rule]]\ngroups = ["Press"]\naccess = "all"\n', "line 3: access: 'all' is not"),
        ('[[rule]]\ngroups = ["Pres"]\naccess = "write"\n', "line 2: groups: 'Pres' is not"),
        ('\n[[rule]]\nusers = "alice"\ngroups = ["*"]\naccess = "read"\n', "line 3: users"),
        ('[[rule]]\ngroups = ["*"]\naccess = "read"\nuser = ["x"]\n', "line 4: user: unknown"),
        ('[[rule]]\ngroups = ["*"]\n', "line 1: rule without 'access'"),
        ('[[rule]]\naccess = "read"\n', "line 1: rule without 'groups'"),
        ('[[rule]]\ngroups = ["*"]\naccess = "read"\nhosts = ["no.such.host."]\n', "line 4"),
        ('[[rule]]\ngroups = ["*"\naccess = "read"\n', "line 3"),  # tomllib names it
        ("[rules]\n", "line 1: unknown table 'rules'"),
    ],
)
def test_access_file_errors_name_the_line(text, message):
    with pytest.raises(AccessFileError, match=message.replace("(", r"\(")):
        parse_access(text)


def test_beacons_go_to_loopback_when_serving_loopback():
    assert beacon_addresses(["127.0.0.1"]) == ["127.0.0.1"]
    assert "255.255.255.255" not in beacon_addresses(["0.0.0.0"])


def _ioc_cli(*args: str):
    return run_cli("ssb_ioc.cli", *args)


def test_serving_beyond_loopback_without_rules_is_refused():
    result = _ioc_cli("--interfaces", "0.0.0.0")
    assert result.returncode == 2
    assert "without access rules" in result.stderr and "--allow-anyone" in result.stderr


def test_a_bad_access_file_is_refused_at_start(tmp_path):
    path = tmp_path / "access.toml"
    path.write_text('[[rule]]\ngroups = ["Press"]\naccess = "rw"\n')
    result = _ioc_cli("--access", str(path))
    assert result.returncode == 2
    assert "line 3: access: 'rw'" in result.stderr
    path.write_bytes(b"\xff\xfe\x00binary")
    assert "not a text" in _ioc_cli("--access", str(path)).stderr


@pytest.fixture
def guarded_ioc(tmp_path, ca_context):
    path = tmp_path / "access.toml"
    path.write_text(RULES)
    ioc = RunningIOC(ca_context, speed=100.0, seed=1, extra_args=("--access", str(path)))
    yield ioc.start()
    ioc.stop()


def _client(user: str):
    from caproto.threading.client import Context

    return Context(client_name=user)


@pytest.mark.network
def test_the_owner_writes_others_read_and_strangers_see_nothing(guarded_ioc):
    prefix = guarded_ioc.prefix
    alice, bob, mallory = _client("alice"), _client("bob"), _client("mallory")
    try:
        (a_mode, a_rig) = alice.get_pvs(prefix + "Press:KP-SP", prefix + "Rig:Speed-SP")
        (b_mode,) = bob.get_pvs(prefix + "Press:KP-SP")
        (m_mode,) = mallory.get_pvs(prefix + "Press:KP-SP")
        for pv in (a_mode, a_rig, b_mode, m_mode):
            pv.wait_for_connection(timeout=5)
        assert a_mode.access_rights == AccessRights.READ | AccessRights.WRITE
        assert a_rig.access_rights == AccessRights.READ  # Rig: no rule for alice
        assert b_mode.access_rights == AccessRights.READ
        assert m_mode.access_rights == AccessRights.NO_ACCESS
        a_mode.write([12.0], wait=True, timeout=5)
        refused = b_mode.write([99.0], wait=True, timeout=5)
        assert refused.status.name == "ECA_NOWTACCESS"  # the server's answer to bob
        assert "no write access for bob@127.0.0.1" in guarded_ioc.text("Rig:Msg-RB")
        assert b_mode.read(timeout=5).data[0] == 12.0  # bob reads, and nothing changed
        with pytest.raises(Exception):  # noqa: B017 - mallory may not even read
            m_mode.read(timeout=1)
    finally:
        for context in (alice, bob, mallory):
            context.disconnect()


@pytest.mark.network
def test_a_claimed_host_name_does_not_open_a_host_rule(tmp_path, ca_context):
    path = tmp_path / "access.toml"
    path.write_text('[[rule]]\nhosts = ["192.0.2.77"]\ngroups = ["*"]\naccess = "write"\n')
    ioc = RunningIOC(ca_context, speed=100.0, extra_args=("--access", str(path))).start()
    from caproto.threading.client import Context

    liar = Context(host_name="192.0.2.77")  # claims the trusted host; connects from loopback
    try:
        (pv,) = liar.get_pvs(ioc.prefix + "Press:KP-SP")
        pv.wait_for_connection(timeout=5)
        assert pv.access_rights == AccessRights.READ
        assert ioc.pv("Press:KP-SP").read(data_type=ChannelType.STRING).data
    finally:
        liar.disconnect()
        ioc.stop()

"""Access security for the rig's PVs, as an EPICS ACF does it, in caproto's terms.

``ssb-ioc --access FILE`` reads rules from TOML; the first rule that matches a client and
a PV group decides, and no match means read-only::

    [[rule]]
    users = ["alice", "bob"]    # optional: user names as Channel Access clients claim them
    hosts = ["127.0.0.1"]       # optional: client addresses (host names are resolved once)
    groups = ["Press", "Cyc"]   # PV groups (Rig, Press, LC, Cyc, Seq, Evt, Diag) or "*"
    access = "write"            # "write" | "read" | "none"

Hosts are matched against the address the client connects from, not the host name it
claims (EPICS calls this ``asCheckClientIP``): a claimed name costs nothing to forge.
User names are what the client says, as in every CA server; the rules keep honest
mistakes out, the network keeps strangers out.
"""

from __future__ import annotations

import re
import socket
import tomllib
from dataclasses import dataclass
from pathlib import Path

from caproto import AccessRights

GROUPS = ("Rig", "Press", "LC", "Cyc", "Seq", "Evt", "Diag")
RIGHTS = {
    "write": AccessRights.READ | AccessRights.WRITE,
    "read": AccessRights.READ,
    "none": AccessRights.NO_ACCESS,
}
KEYS = {"users", "hosts", "groups", "access"}
MAX_RULES = 1000


class AccessFileError(ValueError):
    """An access file that cannot be used; names the line and what is wrong."""


@dataclass(frozen=True)
class Rule:
    users: frozenset[str] | None
    hosts: frozenset[str] | None  # addresses
    groups: frozenset[str]
    rights: AccessRights

    def matches(self, group: str, host: str, user: str) -> bool:
        return (
            (self.users is None or user in self.users)
            and (self.hosts is None or host in self.hosts)
            and ("*" in self.groups or group in self.groups)
        )


@dataclass(frozen=True)
class AccessRules:
    rules: tuple[Rule, ...]
    source: str = ""

    def rights(self, group: str, host: str, user: str) -> AccessRights:
        """What ``user`` connecting from ``host`` may do to the PVs of ``group``."""
        for rule in self.rules:
            if rule.matches(group, host or "", user or ""):
                return rule.rights
        return AccessRights.READ

    def allows_writes_from_elsewhere(self) -> bool:
        return any(r.rights & AccessRights.WRITE and r.hosts is None for r in self.rules)


def load_access_file(path: str | Path) -> AccessRules:
    """Read and check an access file; :class:`AccessFileError` names line and field."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as ex:
        raise AccessFileError(f"{path}: {ex.strerror}") from None
    except UnicodeDecodeError:
        raise AccessFileError(f"{path}: not a text (UTF-8 TOML) access file") from None
    return parse_access(text, str(path))


def parse_access(text: str, source: str = "<access>") -> AccessRules:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as ex:
        raise AccessFileError(f"{source}: {ex}") from None
    extra = set(doc) - {"rule"}
    if extra:
        key = sorted(extra)[0]
        raise AccessFileError(f"{source}, line {_line_of(text, key)}: unknown table {key!r}")
    tables = doc.get("rule", [])
    if not isinstance(tables, list):
        raise AccessFileError(f"{source}, line {_line_of(text, 'rule')}: use [[rule]] tables")
    if len(tables) > MAX_RULES:
        raise AccessFileError(f"{source}: {len(tables)} rules, at most {MAX_RULES}")
    starts = [i for i, line in enumerate(text.splitlines(), 1) if _RULE.match(line)]
    return AccessRules(
        tuple(_rule(t, starts[k] if k < len(starts) else 1, text) for k, t in enumerate(tables)),
        source,
    )


_RULE = re.compile(r"\s*\[\[\s*rule\s*\]\]")


def _line_of(text: str, key: str, start: int = 1) -> int:
    pattern = re.compile(rf"\s*\[*\s*{re.escape(key)}\b")
    for number, line in enumerate(text.splitlines()[start - 1 :], start):
        if pattern.match(line):
            return number
    return start


def _rule(table: dict, start: int, text: str) -> Rule:
    def fail(key: str, message: str) -> AccessFileError:
        return AccessFileError(f"line {_line_of(text, key, start)}: {key}: {message}")

    for key in table:
        if key not in KEYS:
            raise fail(key, f"unknown field (fields: {', '.join(sorted(KEYS))})")
    if "access" not in table:
        raise AccessFileError(f"line {start}: rule without 'access' (write, read or none)")
    if table["access"] not in RIGHTS:
        raise fail("access", f"{table['access']!r} is not write, read or none")
    if "groups" not in table:
        raise AccessFileError(f"line {start}: rule without 'groups' ({', '.join(GROUPS)}, *)")
    groups = _names(table, "groups", fail)
    for group in groups:
        if group != "*" and group not in GROUPS:
            raise fail("groups", f"{group!r} is not a PV group ({', '.join(GROUPS)}, *)")
    users = _names(table, "users", fail) if "users" in table else None
    hosts = None
    if "hosts" in table:
        hosts = frozenset(a for h in _names(table, "hosts", fail) for a in _addresses(h, fail))
    return Rule(users, hosts, groups, RIGHTS[table["access"]])


def _names(table: dict, key: str, fail) -> frozenset[str]:
    value = table[key]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) for v in value):
        raise fail(key, "expected a non-empty list of strings")
    return frozenset(value)


def _addresses(host: str, fail) -> set[str]:
    try:
        return {str(info[4][0]) for info in socket.getaddrinfo(host, None, socket.AF_INET)}
    except OSError:
        raise fail("hosts", f"{host!r} does not resolve to an address") from None

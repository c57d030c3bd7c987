"""Building blocks for the rig's PVs: guarded setpoints, readbacks, metadata helpers.

Each PV gets its own alarm (caproto's default is one alarm shared by a whole group).
Every PV checks what a client sends before caproto converts it (:mod:`.wire`) and who
sends it (:mod:`.access`). A refused put fails on the wire as EPICS' own IOCs fail it: a
put with completion is answered ``ECA_PUTFAIL`` (``ECA_NOWTACCESS`` without write
access). Before that answer the PV raises its WRITE alarm, its group's
``Refusal-RB``/``RefusalMsg-RB`` show the kind (:class:`ssb_contract.refusals.Refusal`)
and the reason, and ``Rig:Msg-RB`` logs it for people.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

from caproto import AccessRights, AlarmSeverity, AlarmStatus, CAStatus, ChannelType, SkipWrite
from caproto.server import PVGroup, SubGroup, pvproperty

from ssb_contract.refusals import REFUSAL_NAMES, Refusal, Refused, refusal_of

from .access import AccessRules
from .wire import as_char_array, check_put, shown


class _Guarded:
    """Mixin for pvproperty data: check what a client sends (:mod:`.wire`), refuse
    non-finite numbers, fail a refused put on the wire with its kind on the group's
    refusal PVs and a WRITE alarm on the PV, and clear that alarm with the next accepted
    put."""

    kind: ClassVar[str] = ""  # "float" | "int" | "enum" | "text"
    # given by the caproto PvpropertyData this is mixed into (caproto has no type hints)
    pvspec: Any
    pvname: str
    group: Any
    alarm: Any

    writer = ""  # who sent the put being handled (user@host; "" for the IOC itself)

    async def auth_write(self, hostname, username, data, data_type, metadata, **kwargs):
        """A client's put. A refusal is the put's answer (caproto would answer an
        exception with an error message caproto's own client ignores, and log a
        traceback): ``ECA_PUTFAIL`` to a put with completion, nothing to a plain put,
        whose client reads the refusal PVs."""
        self.writer = f"{username}@{hostname}"  # read by putters before their first await
        if AccessRights.WRITE not in self.check_access(hostname, username):
            who = f"{username}@{hostname}"
            why = "read-only PV" if self.read_only else f"no write access for {who}"
            await self.say_refused(shown(data, data_type), Refused(why, Refusal.ACCESS))
            return CAStatus.ECA_NOWTACCESS  # no WRITE alarm: a readback keeps its own
        try:
            await self.write_from_dbr(data, data_type, metadata, **_write_flags(kwargs))
        except Exception:  # said by refuse() on the way out of write_from_dbr / write
            return CAStatus.ECA_PUTFAIL
        return CAStatus.ECA_NORMAL

    def check_access(self, hostname, username):
        rights = super().check_access(hostname, username)
        rules = self.group.root.access_rules
        if rules is None:
            return rights
        return rights & rules.rights(self.access_group, hostname, username)

    async def subscribe(self, queue, sub_spec, sub):
        """caproto does not check read access for monitors: do it here."""
        client = sub.circuit
        if AccessRights.READ in self.check_access(client.client_hostname, client.client_username):
            await super().subscribe(queue, sub_spec, sub)

    @property
    def read_only(self) -> bool:
        return bool(self.pvspec.read_only)

    @property
    def access_group(self) -> str:
        """The PV group access rules name: Rig, Press, LC, Cyc, Evt or Diag."""
        return self.pvname[len(self.group.root.prefix) :].split(":", 1)[0]

    async def write_from_dbr(self, data, data_type, metadata, *, flags=0):
        try:
            guard = getattr(self.group.root, "guard_experiment", None)
            if guard is not None:  # writes that would change a running experiment
                await guard(self, data, data_type)
            check_put(
                self.kind,
                data,
                data_type,
                enum_strings=getattr(self, "enum_strings", ()),
                max_length=self.max_length,
            )
            if self.kind == "text":
                data, data_type = as_char_array(data, data_type)
            return await super().write_from_dbr(data, data_type, metadata, flags=flags)
        except SkipWrite:
            raise
        except Exception as ex:
            if not getattr(ex, "reported", False):
                await self.refuse(shown(data, data_type), ex)
            raise

    async def verify_value(self, value):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{value} is not a finite number")
        if self.kind in ("float", "int") and isinstance(value, int | float):
            lo, hi = self.lower_ctrl_limit, self.upper_ctrl_limit  # caproto's check, typed
            if lo != hi and not lo <= value <= hi:
                raise Refused(f"{value:g} is outside the limits {lo:g}..{hi:g}", Refusal.LIMIT)
        return await super().verify_value(value)

    async def write(self, value, *, verify_value=True, **kwargs):
        try:
            result = await super().write(value, verify_value=verify_value, **kwargs)
        except Exception as ex:
            if verify_value:
                await self.refuse(value, ex)
            raise
        if verify_value:
            await self.accepted()
        return result

    async def refuse(self, value, ex: Exception) -> None:
        """Say why a put was refused (once) and raise the PV's WRITE alarm."""
        await self.say_refused(value, ex)
        await self.alarm.write(status=AlarmStatus.WRITE, severity=AlarmSeverity.MAJOR_ALARM)

    async def say_refused(self, value, ex: Exception) -> None:
        """The refusal's kind and reason on the group's refusal PVs, the reason on
        Rig:Msg-RB: once per refusal."""
        if getattr(ex, "reported", False):
            return
        ex.reported = True  # type: ignore[attr-defined]  # said once, whoever raised it
        message = f"{self.pvname} refused: {ex} (the put: {_cut(value)})"
        holder = _refusal_holder(self.group)
        if holder is not None:
            await holder.last_refusal.record(refusal_of(ex), message)
        await self.group.root.report(message)

    async def accepted(self) -> None:
        """A put was honoured: clear the WRITE alarm a refused one raised; autosave."""
        if not self.read_only:
            self.group.root.setting_changed(self.pvname)
        if self.alarm.status == AlarmStatus.WRITE:
            await self.alarm.write(status=AlarmStatus.NO_ALARM, severity=AlarmSeverity.NO_ALARM)


def _write_flags(kwargs: dict) -> dict:
    """caproto hands auth_write the client's address too; write_from_dbr takes flags."""
    return {k: v for k, v in kwargs.items() if k == "flags"}


def _refusal_holder(group):
    """The nearest group (this one or a parent) that shows refusals."""
    while group is not None and not isinstance(getattr(group, "last_refusal", None), LastRefusal):
        group = getattr(group, "parent", None)
    return group


def _cut(value, limit: int = 60) -> str:
    """A put's value for a message: the reason comes first, the echo stays short."""
    text = str(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def _guarded(kind: str, base: type) -> type:
    return type(f"Guarded{base.__name__}", (_Guarded, base), {"kind": kind})


_KINDS = {
    str: "text",
    int: "int",
    float: "float",
    bool: "enum",
    ChannelType.LONG: "int",
    ChannelType.DOUBLE: "float",
    ChannelType.ENUM: "enum",
    ChannelType.STRING: "text",  # a plain (40-character) string, as areaDetector's names
}


class RigPVGroup(PVGroup):
    """PVGroup whose writable PVs report refusals to the root group's message PV."""

    access_rules: AccessRules | None = None  # set on the root group; None: as caproto does

    def setting_changed(self, pvname: str) -> None:
        """Called on the root group when a put was accepted (the IOC autosaves)."""

    type_map: ClassVar[dict] = {
        **PVGroup.type_map,
        **{t: _guarded(kind, PVGroup.type_map[t]) for t, kind in _KINDS.items()},
    }
    type_map_read_only: ClassVar[dict] = {
        **PVGroup.type_map_read_only,
        **{t: _guarded(kind, PVGroup.type_map_read_only[t]) for t, kind in _KINDS.items()},
    }

    @property
    def root(self) -> RigPVGroup:
        group = self
        while getattr(group, "parent", None) is not None:
            group = group.parent
        return group

    @property
    def rig(self):
        return self.root.backend


# Updates each monitor may hold in the IOC (caproto keeps the last N of every subscription,
# sent or not). A client further behind misses intermediate values, as with EPICS' rsrv;
# memory stays bounded whatever the clients do (docs/benchmarks.md: monitor_memory).
SCALAR_BACKLOG = 100  # 5 s of 20 Hz readbacks
ARRAY_BACKLOG = 1  # bulk arrays: only the newest matters (our clients read them with get)


def limits(lo: float, hi: float) -> dict[str, Any]:
    """Control and display limits (caproto refuses puts outside the control limits)."""
    return {
        "lower_ctrl_limit": lo,
        "upper_ctrl_limit": hi,
        "lower_disp_limit": lo,
        "upper_disp_limit": hi,
    }


def _pv(name: str, doc: str, backlog: int = SCALAR_BACKLOG, **kwargs):
    """A pvproperty with its own alarm and a bounded monitor backlog."""
    return pvproperty(
        name=name, doc=doc, alarm_group=name, max_subscription_backlog=backlog, **kwargs
    )


def _numeric(name: str, units: str, lo: float, hi: float, doc: str, precision: int, **kwargs):
    return _pv(
        name,
        doc,
        value=0.0,
        dtype=float,
        units=units,
        precision=precision,
        **limits(lo, hi),
        **kwargs,
    )


def setting(
    name: str,
    units: str,
    lo: float,
    hi: float,
    doc: str,
    precision: int = 3,
    apply: Callable[[Any, float], None] | None = None,
):
    """A writable numeric PV with units, precision and limits; ``apply(rig, value)``,
    if given, hands an accepted value to the rig backend (which may still refuse it)."""
    if apply is None:
        return _numeric(name, units, lo, hi, doc, precision)

    async def put(group, instance, value):
        apply(group.rig, value)
        return value

    return _numeric(name, units, lo, hi, doc, precision, put=put)


INT_MAX = 2**31 - 1  # DBR_LONG


BEAT_WRAP = 2**31 - 2  # a heartbeat (Beat-RB) counts 1, 2, ... then from 1 again: never 0


def counter(name: str, doc: str):
    """A read-only count or sequence number: an integer PV (DBR_LONG), as EPICS keeps
    counters."""
    return _pv(name, doc, value=0, dtype=int, read_only=True, **limits(0, INT_MAX))


def reading(name: str, units: str, lo: float, hi: float, doc: str, precision: int = 3):
    """A read-only numeric PV with units, precision and display/control range."""
    return _numeric(name, units, lo, hi, doc, precision, read_only=True)


def text(name: str, doc: str, writable: bool = False, max_length: int = 256, **kwargs):
    """A long-string PV (CHAR waveform, read it as a string): messages, names, reasons;
    a long one (a table, a JSON document) keeps only its newest value per monitor."""
    backlog = SCALAR_BACKLOG if max_length <= 256 else ARRAY_BACKLOG
    return _pv(
        name,
        doc,
        backlog,
        value="",
        dtype=str,
        max_length=max_length,
        read_only=not writable,
        **kwargs,
    )


def command(name: str, doc: str):
    """A push-button PV: write 1 to act."""
    return _pv(name, doc, value=0, dtype=int, **limits(0, 1))


def keyed_command(name: str, doc: str):
    """A push button for an owned sequence: write its owner's key (``Seq:OwnerKey-RB``),
    or 1 when nobody owns it."""
    return _pv(name, doc, value=0, dtype=int, **limits(0, INT_MAX))


def choice(name: str, choices: list[str], doc: str, read_only: bool = False, **kwargs):
    """An enum PV (mbbo/mbbi-like); ``kwargs`` go to pvproperty (``put=...``)."""
    return _pv(
        name,
        doc,
        value=choices[0],
        dtype=ChannelType.ENUM,
        enum_strings=choices,
        read_only=read_only,
        **kwargs,
    )


def array(name: str, units: str, doc: str, max_length: int):
    """A read-only float array (bulk reads); a monitor of it holds only the newest value."""
    return _pv(
        name,
        doc,
        ARRAY_BACKLOG,
        value=[0.0],
        dtype=float,
        max_length=max_length,
        read_only=True,
        units=units,
    )


async def publish(pv, value) -> None:
    """Update a readback if it changed; values outside its range are clamped to it. A
    value not measured (NaN) leaves the last one, which the backend marks stale."""
    if isinstance(value, float) and math.isnan(value):
        return
    if getattr(pv, "kind", "") == "int":
        value = int(value)  # a counter
    if isinstance(value, float):
        lo, hi = pv.lower_ctrl_limit, pv.upper_ctrl_limit
        if lo != hi:
            value = min(max(value, lo), hi)
    if pv.value != value:
        await pv.write(value)


class LastRefusal(RigPVGroup):
    """A group's last refused put: its kind (a contract code) and the IOC's words. A
    client that made a plain put (no completion) reads why here; the timestamp says when."""

    code = choice(
        "Refusal-RB",
        list(REFUSAL_NAMES),
        "The kind of the last refused put to this group (ssb_contract.refusals.Refusal)",
        read_only=True,
    )
    message = text("RefusalMsg-RB", "Why the last put to this group was refused, and the put")

    async def record(self, code: Refusal, message: str) -> None:
        await self.message.write(message[:255])
        await self.code.write(REFUSAL_NAMES[code])


def refusals(prefix: str):
    """The refusal PVs of a group (``<prefix>Refusal-RB``, ``<prefix>RefusalMsg-RB``)."""
    return SubGroup(LastRefusal, prefix=prefix)

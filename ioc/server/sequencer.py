"""The protocol sequencer's PVs (``{prefix}Seq:``): upload a protocol, run it on the
instrument, follow it, read what each step did.

A client puts the whole table (JSON, see :func:`ssb_ioc.core.sequencer.load_table`) to
``Table-SP``; it is checked as a whole and refused with the path of the first bad entry.
``Start-Cmd`` runs it; from then on the IOC starts each step in the simulation step in
which the previous one ended, whether or not a client is connected. Clients follow
``Step-RB`` and ``Completed-RB``, and read the record of finished steps in bulk from the
``Results:Page<k>-RB`` pages (:mod:`ssb_contract.paging`; JSON, numbered from 1).
"""

from __future__ import annotations

# caproto's `@pv.putter` redefines the name, as a property setter does (mypy knows only
# property's):
# mypy: disable-error-code="no-redef"
import json

from ssb_contract.paging import Paging
from ssb_contract.records import RESULTS_KEPT
from ssb_ioc.core.sequencer import STATES

from .pages import text_pages
from .pvs import (
    RigPVGroup,
    choice,
    command,
    counter,
    keyed_command,
    publish,
    refusals,
    setting,
    text,
)

TABLE_MAX = 1_000_000  # characters of a table (a protocol file is at most 1 MB of text)
RESULTS_MAX = 2_000_000  # characters of one page of step records


class SequencerGroup(RigPVGroup):
    """Protocol sequencer (``{prefix}Seq:``): the schedule runs on the instrument.

    Table-SP           JSON table of steps (long string, up to 1 MB); refused whole
    Owner-RB           JSON: who uploaded the table (run uid, plan, protocol), for attaching
    StartAt-SP         first step to run (1 = the beginning)
    Start-Cmd          run the table
    Pause-Cmd          open circuit, press holds; the sequence waits
    Resume-Cmd         the rest of the interrupted step, then on (after an IOC restart:
                       re-press to the pressure it was holding first)
    Abort-Cmd          end the sequence: open circuit, press holds the measured pressure
                       (Pause, Resume and Abort of a sequence its owner uploaded take the
                       owner's key, OwnerKey-RB, instead of 1; anyone else is refused,
                       told who owns it and since when)
    OwnerKey-RB        the key of the sequence's owner (0: nobody's); a client that means
                       to take over (``ssb attach``) reads it and puts it
    ForceAbort-Cmd     a person's forced end of any sequence, whoever owns it: write 1
    State-RB           Idle | Running | Paused | Done | Aborted | Failed | Held
    Reason-RB          why it ended, paused or is held
    Steps-RB           steps in the table, repeats unrolled
    Step-RB, Cycle-RB  index and cycle of the step in progress (as the plan numbers them)
    StepText-RB        the protocol line of the step in progress
    Completed-RB       steps completed since Start-Cmd
    Results:Page0-RB .. Results:Page31-RB  records of completed steps by completion
                       number "n" (from 1), in pages: {"page": m, "records": [...]}
                       (ssb_contract.paging); a record: n, index, cycle, text, type,
                       reason, start/end time, duration, counters, interruptions
    """

    last_refusal = refusals("")  # the last refused put: Refusal-RB, RefusalMsg-RB

    table_sp = text("Table-SP", "Protocol table (JSON)", writable=True, max_length=TABLE_MAX)
    owner_rb = text("Owner-RB", "Who uploaded the table (JSON)", max_length=4096)
    start_at_sp = setting("StartAt-SP", "1", 1.0, 1e6, "First step to run", 0)
    start_cmd = command("Start-Cmd", "Run the table")
    pause_cmd = keyed_command("Pause-Cmd", "Pause: open circuit, press holds (owner's key)")
    resume_cmd = keyed_command("Resume-Cmd", "Resume the interrupted step (owner's key)")
    abort_cmd = keyed_command("Abort-Cmd", "End the sequence (owner's key)")
    force_abort_cmd = command("ForceAbort-Cmd", "End any sequence, whoever owns it")
    owner_key_rb = counter("OwnerKey-RB", "Key of the sequence's owner (0: nobody's)")
    state_rb = choice("State-RB", list(STATES), "Sequence state", read_only=True)
    reason_rb = text("Reason-RB", "Why it ended, paused or is held")
    steps_rb = counter("Steps-RB", "Steps in the table")
    step_rb = counter("Step-RB", "Step in progress")
    cycle_rb = counter("Cycle-RB", "Cycle of the step in progress")
    step_text_rb = text("StepText-RB", "Protocol line of the step in progress")
    completed_rb = counter("Completed-RB", "Steps completed")
    results = text_pages(
        RESULTS_MAX, "step records by completion number", "Results:", "results_page"
    )

    @property
    def seq(self):
        return self.rig.sequencer

    @table_sp.putter
    async def table_sp(self, instance, value):
        self.seq.load(value, client=instance.writer)
        await self._show_owner()
        await self.update()
        return value

    async def _show_owner(self) -> None:
        seq = self.seq
        owner = dict(seq.table.owner) if seq.table else {}
        owner |= {"client": seq.client, "since": seq.since}
        await self.owner_rb.write(json.dumps(owner)[:4095])

    @start_cmd.putter
    async def start_cmd(self, instance, value):
        if value:
            self.seq.start(int(self.start_at_sp.value) or 1)
            await self.root.update_readbacks()
        return 0

    @pause_cmd.putter
    async def pause_cmd(self, instance, value):
        if value:
            self.seq.check_key(value, "pause")
            self.seq.pause()
            await self.root.update_readbacks()
        return 0

    @resume_cmd.putter
    async def resume_cmd(self, instance, value):
        if value:
            self.seq.check_key(value, "resume")
            self.seq.resume()
            await self.root.update_readbacks()
        return 0

    @abort_cmd.putter
    async def abort_cmd(self, instance, value):
        if value:
            self.seq.check_key(value, "abort")
            self.seq.abort()
            await self.root.update_readbacks()
        return 0

    @force_abort_cmd.putter
    async def force_abort_cmd(self, instance, value):
        if value:
            who = instance.writer or "the IOC"
            self.seq.abort(f"forced to an end by {who} (Seq:ForceAbort-Cmd)")
            await self.root.report(f"sequence forced to an end by {who}")
            await self.root.update_readbacks()
        return 0

    def results_page(self, index: int, max_length: int) -> str:
        """Page PV ``index`` of the completed steps' records (JSON); the newest records of
        a page too long for the PV wait for the next read."""
        seq = self.seq
        page, numbers = Paging(RESULTS_KEPT).held(index, seq.completed + 1)
        records = [r for r in seq.results if r["n"] in numbers]
        while True:
            text = json.dumps({"page": page, "records": records})
            if len(text) <= max_length:
                return text
            records = records[: len(records) // 2]

    async def restored(self) -> None:
        """Show a table restored after a restart."""
        table = self.seq.table
        if table is not None:
            await self.table_sp.write(self.seq.source, verify_value=False)
            await self._show_owner()

    async def update(self) -> None:
        seq = self.seq
        run = seq.running
        values = {
            self.state_rb: seq.state,
            self.reason_rb: seq.reason[:255],
            self.steps_rb: seq.table.total if seq.table else 0,
            self.step_rb: run.index if run else 0,
            self.cycle_rb: run.cycle if run else 0,
            self.step_text_rb: (run.step.text if run else "")[:255],
            self.completed_rb: seq.completed,
            self.owner_key_rb: seq.key,
        }
        for pv, value in values.items():
            await publish(pv, value)

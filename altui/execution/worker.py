"""The worker's queue loop: claims queued runs and runs each in its own process, one per slot.

`Worker` runs its runs through an `Executor` (altui/execution/executors/): `LocalExecutor` starts them
as local subprocesses (`python -m altui.execution.runner`); the Slurm executor's head, `SlurmWorker`
(altui/execution/executors/slurm/head.py), is a `Worker` that submits each run as a Slurm job instead.
The lock, the daemon's start and stop and its settings: altui/execution/daemon.py.

Recovery: a `running` run that this worker does not own is adopted when its runner process is still
alive (a worker killed with -9 leaves its runs running), and otherwise is treated as crashed: requeued
to resume after its last recorded round, or failed once it has used `max_attempts` starts.

A full disk pauses the queue instead of killing the worker: runs stopped by it go back to the queue
without using an attempt, the reason is in `settings.worker_disk_full` (and in worker.log once it
can be written), and the queue goes on once there is room for a checkpoint again.
Behaviour and operation: docs/worker.md.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
import traceback
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from altui.execution.executors import UNKNOWN_EXIT, Executor, Handle
from altui.execution.slots import Slot
from altui.files import EXIT_DISK_FULL, can_allocate, free_bytes, is_disk_full, open_fd
from altui.store import Store, now, parse_time

if TYPE_CHECKING:
    from collections.abc import Callable

POLL_SECONDS = 0.5  # one loop pass: reap, stop cancelled runs, fill free slots
HEARTBEAT_SECONDS = 2.0  # settings.worker_heartbeat
RECOVER_SECONDS = 5.0  # look for lost runs this often
STALE_SECONDS = 30.0  # a run without pid whose heartbeat is this old is lost
CANCEL_GRACE = 10.0  # SIGTERM, then SIGKILL after this many seconds
STOP_GRACE = 20.0  # on worker stop: time for runs to requeue themselves before SIGKILL
ERROR_TAIL = 4000  # characters of output.log kept in runs.error
ERROR_PAUSE = 5.0  # after an unexpected error in the loop (say, a disk full), retry after this
DISK_CHECK_SECONDS = 5.0  # while the disk is full, look for free space this often
DISK_MARGIN = 1 << 20  # bytes free beyond the largest checkpoint before runs start again


# ---- the worker loop -----------------------------------------------------------------------------


_unsaid: list[bytes] = []  # lines not yet written to worker.log (its disk was full)
UNSAID_LINES = 200


def say(message: str) -> None:
    """A line in worker.log (stdout of a detached worker). On a full disk the line waits, with the
    others (the last UNSAID_LINES), for the next line that can be written: a log never kills the worker."""
    _unsaid.append(f"{now()} {message}\n".encode(errors="replace"))
    del _unsaid[:-UNSAID_LINES]
    flush_said()


def flush_said() -> None:
    """Write the lines that wait for space in worker.log, as far as they go."""
    if not _unsaid:
        return
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):  # no file behind stdout (captured in tests)
        print(b"".join(_unsaid).decode(), end="", flush=True)
        _unsaid.clear()
        return
    with contextlib.suppress(OSError):
        sys.stdout.flush()  # what print() may have buffered comes first
    while _unsaid:
        try:
            written = os.write(fd, _unsaid[0])
        except OSError:
            return  # kept for the next line
        _unsaid[0] = _unsaid[0][written:]
        if not _unsaid[0]:
            del _unsaid[0]


def store_file(store: Store) -> tuple[int, int]:
    """The device and inode of the store's file now; FileNotFoundError when it is gone."""
    st = os.stat(store.path)
    return st.st_dev, st.st_ino


def output_tail(store: Store, run_id: int) -> str:
    path = store.run_dir(run_id) / "output.log"
    try:
        with os.fdopen(open_fd(path, os.O_RDONLY), "rb") as f:
            f.seek(max(0, path.stat().st_size - ERROR_TAIL))
            return f.read().decode(errors="replace")
    except OSError:
        return f"({path} is missing)"


class Worker:
    def __init__(self, store: Store, executor: Executor, slots: list[Slot], max_attempts: int = 3,
                 stale_seconds: float = STALE_SECONDS):
        self.store, self.executor, self.slots = store, executor, slots
        self.max_attempts, self.stale_seconds = max_attempts, stale_seconds
        self.active: dict[int, Handle] = {}
        self.stopping = False
        self.exit_when_empty = False  # stop once no run is queued or running (altui worker start --exit-when-empty)
        self.next_recover = self.next_beat = 0.0
        self.disk_full: str | None = None  # why the queue waits for disk space; None: it does not
        self.disk_runs: set[int] = set()  # runs a full disk stopped: to release (no attempt used), to size
        self.next_disk_check = 0.0
        self.store_file = store_file(store)  # the store's file as opened: (device, inode)
        self.store_changed: str | None = None  # why the store's file is no longer the one opened; None: it is
        self.on_store_changed: Callable[[str], None] | None = None  # the daemon's note for `worker status`

    def serve(self) -> None:
        """Loop until `stopping` is set (by a signal), then stop the runs and return."""
        while not self.stopping:
            try:
                self.check_store()
                self.tick()
            except Exception as e:  # a daemon outlives a bad moment (locked or full disk); runs go on
                if is_disk_full(e):
                    self.full_disk(f"{type(e).__name__}: {e}")
                else:
                    say(f"error in the worker loop, retrying in {ERROR_PAUSE:.0f} s:\n{traceback.format_exc()}")
                    time.sleep(ERROR_PAUSE)
            time.sleep(POLL_SECONDS)
        self.shutdown()

    def check_store(self) -> None:
        """Whether the store's file is still the one this worker opened (its device and inode): one
        deleted or replaced under it (a restored backup, `rm`, `mv`) would get no more of its writes,
        and a new store at its path would see runs it never queued. Then it claims nothing more and
        says so, once, in worker.log and to `worker status`."""
        if self.store_changed is not None:
            return
        try:
            now_file = store_file(self.store)
        except FileNotFoundError:
            why = "was deleted"
        else:
            if now_file == self.store_file:
                return
            why = "was replaced by another file"
        self.store_changed = (f"the store {self.store.path} {why} while this worker served it: it claims no more "
                              "runs (its running ones go on writing to the store it opened); stop it with "
                              "`altui worker stop` and start a worker for the store now there")
        say(self.store_changed)
        if self.on_store_changed:
            self.on_store_changed(self.store_changed)

    def tick(self) -> None:
        self.reap()
        self.stop_cancelled()
        if time.monotonic() >= self.next_recover:
            self.recover()
        if self.disk_full is None or self.space_is_back():
            self.fill()
        self.beat()
        self.stop_if_empty(bool(self.active))

    def stop_if_empty(self, busy: bool) -> None:
        """With exit_when_empty: stop once this worker runs nothing and no run is queued or running
        (a paused queue's runs still wait: the worker waits with them)."""
        if self.exit_when_empty and not busy and not self.store.select_runs(statuses=("queued", "running")):
            self.stopping = True
            self.event(None, "the queue is done (no run queued or running): the worker stops (--exit-when-empty)")

    def beat(self) -> None:
        """The heartbeat in the store's settings, every HEARTBEAT_SECONDS (none once the store's file
        changed: `worker status` then tells that it serves none)."""
        if time.monotonic() >= self.next_beat and self.store_changed is None:
            self.next_beat = time.monotonic() + HEARTBEAT_SECONDS
            self.store.set_settings({"worker_heartbeat": now()})

    def event(self, run_id: int | None, message: str, level: str = "info") -> None:
        say(f"run {run_id}: {message}" if run_id is not None else message)
        self.store.log(run_id, message, level)

    # -- a full disk
    def full_disk(self, why: str, run_id: int | None = None) -> None:
        """Pause starting runs until there is space again (space_is_back); `run_id` was stopped by
        the full disk and goes back to the queue without using an attempt."""
        if run_id is not None:
            self.disk_runs.add(run_id)
        if self.disk_full is None:
            folder = self.store.path.parent
            self.disk_full = (f"the disk of {folder} is full ({free_bytes(folder) / 1e6:.1f} MB free, or a quota "
                              f"or file-size limit is reached): no run starts until {self.space_needed() / 1e6:.1f} "
                              "MB can be written there; runs stopped by it resume then, with no attempt used")
            say(f"{self.disk_full} [{why}]")
            self.next_disk_check = time.monotonic() + DISK_CHECK_SECONDS
            with contextlib.suppress(Exception):
                self.store.log(None, self.disk_full, "warning")
        self.release_disk_runs()
        with contextlib.suppress(Exception):  # tried again at each check: the disk is full
            self.store.set_settings({"worker_disk_full": self.disk_full})

    def release_disk_runs(self) -> None:
        """Queue again the runs a full disk stopped (those that could not do it themselves)."""
        for run_id in sorted(self.disk_runs):
            if run_id in self.active:
                continue
            with contextlib.suppress(Exception):
                self.store.release(run_id)  # only while it is still `running`: attempt not counted

    def space_needed(self) -> int:
        """Bytes that must be free before runs start again: the largest checkpoint of a run stopped
        by the full disk (its next one is as large), plus a margin for the store."""
        sizes = [p.stat().st_size for run_id in self.disk_runs
                 for p in self.store.run_dir(run_id).glob("round-*.pt")]
        return max(sizes, default=0) + DISK_MARGIN

    def space_is_back(self) -> bool:
        """While the disk is full, every DISK_CHECK_SECONDS: whether there is room again. Then the
        stopped runs are back in the queue, the pause is lifted, and this returns True."""
        if time.monotonic() < self.next_disk_check:
            return False
        self.next_disk_check = time.monotonic() + DISK_CHECK_SECONDS
        flush_said()
        folder, needed = self.store.path.parent, self.space_needed()
        if free_bytes(folder) < needed or not can_allocate(folder, needed):
            self.full_disk("still full")
            return False
        self.release_disk_runs()
        if any(self.store.run(r)["status"] == "running" and r not in self.active for r in self.disk_runs):
            return False  # a release did not get written yet
        self.store.set_settings({"worker_disk_full": None})
        self.disk_full = None
        self.disk_runs.clear()
        self.event(None, f"disk space is back ({free_bytes(folder) / 1e6:.1f} MB free in {folder}): runs start again")
        return True

    # -- slots
    def free_slot(self, label: str | None = None) -> Slot | None:
        """A slot no run occupies; with `label`, only one of that device."""
        used = {h.slot for h in self.active.values()}
        free = [s for s in self.slots if s not in used and (label is None or s.label == label)]
        return free[0] if free else None

    def fill(self) -> None:
        while (not self.stopping and self.disk_full is None and self.store_changed is None
               and (slot := self.free_slot()) is not None):
            run = self.store.claim(slot.label)  # None when the queue is empty or paused
            if run is None:
                return
            self.launch(run, slot)

    def launch(self, run: dict[str, Any], slot: Slot) -> None:
        try:
            handle = self.executor.submit(run["id"], slot)
        except OSError as e:
            if is_disk_full(e):  # not the run's fault: it waits in the queue, its attempt not used
                self.full_disk(f"could not start run {run['id']}: {e}", run["id"])
                return
            self.store.finish(run["id"], "failed", f"the worker could not start its process: {e}")
            self.event(run["id"], f"could not start: {e}", "error")
            return
        if handle.pid:
            self.store.set_pid(run["id"], handle.pid)
        self.active[run["id"]] = handle
        self.event(run["id"], f"started on {slot.label} (attempt {run['attempt']}, pid {handle.pid})")

    # -- ends
    def reap(self) -> None:
        for handle in list(self.active.values()):
            code = self.executor.poll(handle)
            if code is not None:
                del self.active[handle.run_id]
                self.ended(handle.run_id, code)

    def ended(self, run_id: int, code: int) -> None:
        if code == EXIT_DISK_FULL:  # the runner stopped for a full disk (and released itself if it could)
            self.full_disk(f"run {run_id} stopped: no space to write its results", run_id)
            return
        run = self.store.run(run_id)
        if run["status"] != "running":  # the runner recorded its end: done, failed, cancelled, queued
            exit_code = "unknown" if code == UNKNOWN_EXIT else code
            self.event(run_id, f"process ended: {run['status']} (exit code {exit_code})")
        elif self.stopping:
            self.store.finish(run_id, "queued")
            self.event(run_id, "requeued: the worker is stopping", "warning")
        else:  # killed, out of memory, or died before it could record anything
            why = "its process ended" + (f" with exit code {code}" if code != UNKNOWN_EXIT else "")
            self.lost(run, why)

    def lost(self, run: dict[str, Any], why: str) -> None:
        """A run whose process is gone: crashed, unless the disk is full (then that is why, and it
        costs no attempt)."""
        if self.disk_full is not None:
            self.full_disk(f"run {run['id']}: {why}", run["id"])
        else:
            self.crashed(run, why)

    def crashed(self, run: dict[str, Any], why: str) -> None:
        """Requeue a run whose process died; resume after its last round. Fail it once it has used
        max_attempts starts, keeping the tail of its output.log."""
        run_id, attempt = run["id"], run["attempt"]
        if attempt >= self.max_attempts:
            error = f"{why}; failed after {attempt} attempts. {self.output_tail(run_id)}"
            self.store.finish(run_id, "failed", error)
            self.event(run_id, f"{why}; failed after {attempt} of {self.max_attempts} attempts", "error")
        else:
            self.store.finish(run_id, "queued")
            last = self.store.last_round(run_id)
            self.event(run_id, f"{why}; requeued to resume at round {last + 1} "
                               f"(attempt {attempt} of {self.max_attempts})", "warning")

    def output_tail(self, run_id: int) -> str:
        return f"output.log ends:\n{output_tail(self.store, run_id)}"

    def stop_cancelled(self) -> None:
        """SIGTERM the processes of cancelled runs, SIGKILL them after a grace period. (A runner
        also stops by itself within a heartbeat; this covers one stuck in a long operation.)"""
        for handle in self.active.values():
            if self.store.run(handle.run_id)["status"] != "cancelled":
                continue
            if handle.term_at is None:
                handle.term_at = time.monotonic()
                self.executor.kill(handle)
                self.event(handle.run_id, "cancelled: stopping its process")
            elif not handle.killed and time.monotonic() - handle.term_at > CANCEL_GRACE:
                handle.killed = True
                self.executor.kill(handle, force=True)
                self.event(handle.run_id, f"cancelled: killed after {CANCEL_GRACE:.0f} s", "warning")

    # -- recovery
    def recover(self) -> None:
        """Adopt the live runs of an earlier worker; requeue (or fail) runs whose process is gone."""
        self.next_recover = time.monotonic() + RECOVER_SECONDS
        for run in self.store.runs(status="running"):
            if run["id"] in self.active or run["id"] in self.disk_runs:
                continue
            if run["slurm_job_id"] or run["device"] == "slurm":
                continue  # a Slurm job's run is for a Slurm worker to re-attach
            handle = self.executor.adopt(run, self.free_slot(run["device"]))
            if handle is not None:
                self.active[run["id"]] = handle
                self.event(run["id"], f"adopted its live process {run['pid']} (left by an earlier worker)")
                continue
            run = self.store.run(run["id"])  # read again: it may have ended just before its process did
            if run["status"] != "running":
                continue
            if run["pid"] is not None:
                self.lost(run, f"its process {run['pid']} is gone")
            elif self.stale(run):  # no pid: a foreground run, or one claimed just before a crash
                self.lost(run, f"no heartbeat since {run['heartbeat_at']}")

    def stale(self, run: dict[str, Any]) -> bool:
        beat = parse_time(run["heartbeat_at"])
        return beat is None or (datetime.now(timezone.utc) - beat).total_seconds() > self.stale_seconds

    def shutdown(self) -> None:
        """SIGTERM every run (each requeues itself and resumes later), SIGKILL the slow ones."""
        say(f"stopping: {len(self.active)} run(s) to requeue")
        for handle in self.active.values():
            self.executor.kill(handle)
        deadline = time.monotonic() + STOP_GRACE
        while self.active:
            if time.monotonic() > deadline:
                for handle in self.active.values():
                    if not handle.killed:
                        handle.killed = True
                        self.executor.kill(handle, force=True)
            time.sleep(0.2)
            self.reap()

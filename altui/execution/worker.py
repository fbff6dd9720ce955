"""The worker daemon: claims queued runs and runs each in its own process, one per slot.

One worker serves a store: it holds an exclusive flock on `<db folder>/worker.lock` while it lives and
records itself in the store's `settings` table (worker_pid, worker_started, worker_heartbeat,
worker_slots). Runs go through an `Executor` (altui/execution/executors/): `LocalExecutor` starts them as local
subprocesses (`python -m altui.execution.runner`); with `--executor slurm`, `SlurmWorker` submits each run as a
Slurm job and ingests the events its job writes.

Recovery: a `running` run that this worker does not own is adopted when its runner process is still
alive (a worker killed with -9 leaves its runs running), and otherwise is treated as crashed: requeued
to resume after its last recorded round, or failed once it has used `max_attempts` starts.

A full disk pauses the queue instead of killing the worker: runs stopped by it go back to the queue
without using an attempt, the reason is in `settings.worker_disk_full` (and in worker.log once it
can be written), and the queue goes on once there is room for a checkpoint again.
Behaviour and operation: docs/worker.md.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import signal
import subprocess
import sys
import threading
import time
import traceback
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from altui.execution.events import EventsReader, events_path, ingest
from altui.execution.executors import UNKNOWN_EXIT, Executor, Handle
from altui.execution.executors.local import LocalExecutor, is_runner  # noqa: F401 (re-exported: altui.execution.worker.is_runner)
from altui.execution.executors.slurm import JobInfo, SlurmError, SlurmJobs, SlurmOptions, check_slurm, scancel
from altui.files import EXIT_DISK_FULL, can_allocate, free_bytes, is_disk_full, open_append, open_fd
from altui.store import Store, now, parse_time

POLL_SECONDS = 0.5  # one loop pass: reap, stop cancelled runs, fill free slots
HEARTBEAT_SECONDS = 2.0  # settings.worker_heartbeat
RECOVER_SECONDS = 5.0  # look for lost runs this often
STALE_SECONDS = 30.0  # a run without pid whose heartbeat is this old is lost
CANCEL_GRACE = 10.0  # SIGTERM, then SIGKILL after this many seconds
STOP_GRACE = 20.0  # on worker stop: time for runs to requeue themselves before SIGKILL
START_TIMEOUT = 30.0  # start_worker waits this long for the new worker to hold the lock
ERROR_TAIL = 4000  # characters of output.log kept in runs.error
ERROR_PAUSE = 5.0  # after an unexpected error in the loop (say, a disk full), retry after this
DISK_CHECK_SECONDS = 5.0  # while the disk is full, look for free space this often
DISK_MARGIN = 1 << 20  # bytes free beyond the largest checkpoint before runs start again
EXECUTORS = ("local", "slurm")
SETTINGS = ("worker_pid", "worker_started", "worker_heartbeat", "worker_slots", "worker_slots_choice",
            "worker_executor", "worker_disk_full")


class WorkerError(RuntimeError):
    pass


# ---- slots ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    index: int
    gpu: str | None  # the physical GPU id (CUDA_VISIBLE_DEVICES); None: the CPU

    @property
    def label(self) -> str:
        """What runs.device records: cpu, or cuda:N with N the physical GPU."""
        return "cpu" if self.gpu is None else f"cuda:{self.gpu}"

    @property
    def device(self) -> str:
        """What the run's process uses: it sees only its slot's GPU, as cuda:0."""
        return "cpu" if self.gpu is None else "cuda"


def parse_gpus(text: str) -> list[str] | None:
    """`auto` -> None (detect), `cpu` or `none` -> [], `0,1` -> ["0", "1"]."""
    text = text.strip().lower()
    if text == "auto":
        return None
    if text in ("cpu", "none", ""):
        return []
    ids = [part.strip() for part in text.split(",")]
    if not all(i.isdigit() for i in ids) or len(set(ids)) != len(ids):
        raise WorkerError(f"--gpus {text!r}: allowed: auto, cpu, or distinct GPU ids such as 0,1")
    return ids


def detect_gpus() -> list[str]:
    """The GPUs this worker may use. torch is asked in a short subprocess, which keeps the daemon
    small and CUDA-free. A CUDA_VISIBLE_DEVICES set for the worker is honoured."""
    code = "import torch; print(torch.cuda.device_count() if torch.cuda.is_available() else 0)"
    try:
        count = int(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                   timeout=120, check=True).stdout.strip() or 0)
    except (subprocess.SubprocessError, ValueError, OSError):
        count = 0
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [v.strip() for v in visible.split(",") if v.strip()][:count]
    return [str(i) for i in range(count)]


# What one run needs on a GPU, by model: GiB of memory (CUDA context, the data set as uint8, weights
# and optimizer state, bf16 activations at the recipe's batch, CUDA graph pools), and the runs at once
# beyond which the GPU is busy and more slots only slow each run down. cnn5 is bound by kernel
# launches, so many small runs fill a GPU; ResNet-18 and DenseNet-100 keep it busy with a few.
# Estimates, not measurements: `altui bench --slots N` measures them (docs/benchmarks.md).
RUN_NEEDS: dict[str, tuple[float, int]] = {"cnn5": (1.5, 16), "resnet18": (4.0, 3), "densenet100": (6.0, 2)}
MEMORY_SHARE = 0.9  # of a GPU's free memory that auto slots may plan with


def parse_slots(value: int | str) -> int | str:
    """`auto` or an integer >= 1 (text or int)."""
    text = str(value).strip().lower()
    if text == "auto":
        return "auto"
    if text.isdigit() and int(text) >= 1:
        return int(text)
    raise WorkerError(f"--slots-per-gpu {value!r}: allowed: auto, or an integer >= 1")


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def gpu_free_gib(ids: list[str]) -> dict[str, float]:
    """Free memory (GiB) of each GPU, asked of torch in a short subprocess; {} when that fails."""
    code = ("import json, torch; print(json.dumps([torch.cuda.mem_get_info(i)[0] / 2**30 "
            "for i in range(torch.cuda.device_count())]))")
    env = dict(os.environ, CUDA_VISIBLE_DEVICES=",".join(ids))
    env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")
    try:
        free = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                         timeout=120, check=True, env=env).stdout)
    except (subprocess.SubprocessError, ValueError, OSError):
        return {}
    return dict(zip(ids, free, strict=False))


def auto_slots(free_gib: float | None, models: list[str], cores: int) -> tuple[int, str]:
    """Runs at once on one GPU with `free_gib` free for runs of `models` (the queue's; none: the
    heaviest model), at most `cores`; and why, in words."""
    known = [m for m in models if m in RUN_NEEDS] or [max(RUN_NEEDS, key=lambda m: RUN_NEEDS[m][0])]
    model = max(known, key=lambda m: RUN_NEEDS[m][0])
    gib, useful = RUN_NEEDS[model]
    by_memory = int(free_gib * MEMORY_SHARE // gib) if free_gib is not None else useful
    n = max(1, min(useful, by_memory, cores))
    memory = f"{free_gib:.0f} GiB free / {gib:g} GiB per run" if free_gib is not None else "free memory unknown"
    return n, f"{model}: at most {useful} useful, {memory}, {cores} core(s)"


def plan_slots(gpus: str, slots_per_gpu: int | str = "auto", models: list[str] = ()) -> tuple[list[Slot], str]:
    """The worker's slots and, for `auto`, how they were chosen. `auto` on the CPU is one slot (a
    run's threads use every core); on each GPU, see auto_slots."""
    per = parse_slots(slots_per_gpu)
    ids = parse_gpus(gpus)
    if ids is None:
        ids = detect_gpus()
    if per != "auto":
        devices: list[str | None] = list(ids) if ids else [None]
        return [Slot(i, gpu) for i, gpu in enumerate(d for d in devices for _ in range(per))], f"{per} per device"
    if not ids:
        return [Slot(0, None)], "auto: 1 on the CPU (a run's threads use every core)"
    free = gpu_free_gib(ids)
    cores = max(1, available_cores() // len(ids))
    counts, notes = [], []
    for gpu in ids:
        n, why = auto_slots(free.get(gpu), models, cores)
        counts.append(n)
        notes.append(f"cuda:{gpu} {n} ({why})")
    slots = [Slot(i, gpu) for i, gpu in enumerate(g for g, n in zip(ids, counts, strict=True) for _ in range(n))]
    return slots, "auto: " + "; ".join(notes)


def make_slots(gpus: str, slots_per_gpu: int | str = "auto", models: list[str] = ()) -> list[Slot]:
    return plan_slots(gpus, slots_per_gpu, models)[0]


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
        self.next_recover = self.next_beat = 0.0
        self.disk_full: str | None = None  # why the queue waits for disk space; None: it does not
        self.disk_runs: set[int] = set()  # runs a full disk stopped: to release (no attempt used), to size
        self.next_disk_check = 0.0

    def serve(self) -> None:
        """Loop until `stopping` is set (by a signal), then stop the runs and return."""
        while not self.stopping:
            try:
                self.tick()
            except Exception as e:  # a daemon outlives a bad moment (locked or full disk); runs go on
                if is_disk_full(e):
                    self.full_disk(f"{type(e).__name__}: {e}")
                else:
                    say(f"error in the worker loop, retrying in {ERROR_PAUSE:.0f} s:\n{traceback.format_exc()}")
                    time.sleep(ERROR_PAUSE)
            time.sleep(POLL_SECONDS)
        self.shutdown()

    def tick(self) -> None:
        self.reap()
        self.stop_cancelled()
        if time.monotonic() >= self.next_recover:
            self.recover()
        if self.disk_full is None or self.space_is_back():
            self.fill()
        self.beat()

    def beat(self) -> None:
        """The heartbeat in the store's settings, every HEARTBEAT_SECONDS."""
        if time.monotonic() >= self.next_beat:
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
        while not self.stopping and self.disk_full is None and (slot := self.free_slot()) is not None:
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


# ---- the Slurm head ------------------------------------------------------------------------------

SQUEUE_SECONDS = 5.0  # ask Slurm for its job states this often
SQUEUE_SOON = 1.0  # ... or this often while the job of a run that ended (or was cancelled) is listed
SUBMIT_PAUSE = 60.0  # after sbatch refused a job, submit nothing for this long


@dataclass
class SlurmJob:
    """A run's current job as the head watches it."""

    run_id: int
    job_id: str | None  # None: an earlier head claimed the run and stopped before recording its job
    reader: EventsReader
    cancel_at: float | None = None  # monotonic time of our last scancel
    run_ended: bool = False  # the run ended (or was cancelled) while Slurm still lists its job


class SlurmWorker(Worker):
    """The head of the Slurm executor, on the login node. It submits each claimed run as one Slurm
    job (at most `max_jobs` in flight), ingests the events each job appends to its run's events file,
    and follows the jobs in Slurm: a pending job's run is `queued` with its `slurm_job_id`; a running
    one's is `running` with its `node`. A job that ends before its run did (node failure, out of
    memory, scancel, time limit) is resubmitted from the last checkpoint, up to max_attempts; a job
    that Slurm requeues (preemption, `scontrol requeue`) restarts by itself and resumes. Stopping the
    head leaves the jobs running; the next head re-attaches to them by job id (docs/worker.md)."""

    def __init__(self, store: Store, jobs: SlurmJobs, max_attempts: int = 3):
        super().__init__(store, jobs, [], max_attempts)  # type: ignore[arg-type]
        self.jobs, self.max_jobs = jobs, jobs.options.max_jobs
        self.watched: dict[int, SlurmJob] = {}
        self.next_poll = self.submit_after = 0.0
        self.poll_error: str | None = None

    def watch(self, run_id: int, job_id: str | None) -> SlurmJob:
        job = SlurmJob(run_id, job_id, EventsReader(events_path(self.store.run_dir(run_id))))
        self.watched[run_id] = job
        return job

    def attach(self) -> None:
        """Watch the jobs an earlier head left: every run pending or running in Slurm."""
        for run in self.store.slurm_runs():
            self.watch(run["id"], run["slurm_job_id"])
            if run["slurm_job_id"]:
                self.event(run["id"], f"re-attached to Slurm job {run['slurm_job_id']}")

    def tick(self) -> None:
        for job in list(self.watched.values()):
            self.ingest(job)
        if time.monotonic() >= self.next_poll:
            self.poll()
        self.stop_cancelled()
        self.fill()
        self.beat()

    # -- events
    def ingest(self, job: SlurmJob) -> None:
        """Put the job's new events into the store; an end event ends the run."""
        if job.job_id is None:
            return
        got = ingest(self.store, job.run_id, job.reader.read())
        for text in got.bad or []:
            self.event(job.run_id, f"skipped a line of {job.reader.path} that is not an event: {text!r}", "warning")
        if got.start and got.start["job"] == job.job_id:
            if self.store.slurm_state(job.run_id, job.job_id, got.start["node"]):
                self.event(job.run_id, f"running on {got.start['node']} (Slurm job {job.job_id})")
        if got.end and got.end["job"] == job.job_id:
            run = self.store.run(job.run_id)
            if run["status"] in ("queued", "running") and run["slurm_job_id"] == job.job_id:
                self.store.finish(job.run_id, got.end["status"], got.end["error"])
                self.event(job.run_id, f"{got.end['status']} (Slurm job {job.job_id})")
                job.run_ended = True
                self.next_poll = min(self.next_poll, time.monotonic() + SQUEUE_SOON)

    # -- Slurm's view
    def poll(self) -> None:
        """Follow Slurm's job states: pending or running (on which node), or gone."""
        self.next_poll = time.monotonic() + SQUEUE_SECONDS
        try:
            listed = self.jobs.jobs()
        except SlurmError as e:  # the controller is busy or down: no job is known to have ended
            if self.poll_error is None:
                self.event(None, f"cannot list Slurm jobs, retrying: {e}", "warning")
            self.poll_error = str(e)
            return
        if self.poll_error is not None:
            self.poll_error = None
            self.event(None, "listing Slurm jobs works again")
        for job in list(self.watched.values()):
            if job.job_id is None:
                self.unrecorded(job, listed)
            elif job.job_id not in listed:
                self.job_ended(job)
            elif job.run_ended:  # the job is about to go: free its place soon
                self.next_poll = time.monotonic() + SQUEUE_SOON
            else:
                info = listed[job.job_id]
                if self.store.slurm_state(job.run_id, job.job_id, info.node):
                    self.event(job.run_id, f"running on {info.node} (Slurm job {job.job_id})" if info.node else
                               f"pending in Slurm (job {job.job_id}, {info.state.lower()}: {info.reason})")
        watched = {job.job_id for job in self.watched.values()}
        for info in listed.values():
            if info.job_id not in watched:  # a run's second job, or a job of a run that has ended
                run = self.store.run(self.jobs.run_of(info.name))
                self.scancel(run["id"] if run else None, info.job_id,
                             f"cancelled Slurm job {info.job_id}, which is not its run's current job "
                             f"(the run is {run['status'] if run else 'gone'})")

    def unrecorded(self, job: SlurmJob, listed: dict[str, JobInfo]) -> None:
        """A run an earlier head claimed for Slurm without recording a job: adopt its job if it
        submitted one, else queue the run again (no attempt is used up: nothing ran)."""
        mine = [i.job_id for i in listed.values() if self.jobs.run_of(i.name) == job.run_id]
        if mine:
            job.job_id = mine[0]
            self.store.slurm_submitted(job.run_id, job.job_id)
            self.event(job.run_id, f"re-attached to Slurm job {job.job_id} (submitted by an earlier worker "
                                   "that stopped before recording it)")
        else:
            del self.watched[job.run_id]
            self.store.release(job.run_id)
            self.event(job.run_id, "queued again: an earlier worker claimed it and stopped before submitting it")

    def job_ended(self, job: SlurmJob) -> None:
        """Slurm no longer lists the job: read its last events, then judge. A run still queued or
        running with this job ended before its run did: it is resubmitted, or fails."""
        del self.watched[job.run_id]
        self.ingest(job)
        run = self.store.run(job.run_id)
        how = self.jobs.how_ended(job.job_id)
        if run["status"] in ("queued", "running") and run["slurm_job_id"] == job.job_id:
            self.crashed(run, f"its Slurm job {job.job_id} ended before the run did ({how})")
        else:
            self.event(job.run_id, f"Slurm job {job.job_id} ended ({how})")

    def output_tail(self, run_id: int) -> str:
        return self.jobs.log_tail(run_id, ERROR_TAIL)

    # -- cancel, submit, stop
    def scancel(self, run_id: int | None, job_id: str, message: str) -> None:
        try:
            scancel([job_id])
        except SlurmError as e:
            self.event(run_id, f"{message}: {e}", "warning")
            return
        self.event(run_id, message)
        self.next_poll = min(self.next_poll, time.monotonic() + SQUEUE_SOON)

    def stop_cancelled(self) -> None:
        """scancel the jobs of cancelled runs (again every CANCEL_GRACE seconds while they live)."""
        for job in self.watched.values():
            if job.job_id is None or (job.cancel_at and time.monotonic() - job.cancel_at < CANCEL_GRACE):
                continue
            if self.store.run(job.run_id)["status"] == "cancelled":
                again = " again" if job.cancel_at else ""
                job.cancel_at, job.run_ended = time.monotonic(), True
                self.scancel(job.run_id, job.job_id, f"cancelled: scancel{again} of Slurm job {job.job_id}")

    def fill(self) -> None:
        while not self.stopping and len(self.watched) < self.max_jobs and time.monotonic() >= self.submit_after:
            run = self.store.claim("slurm")  # None when the queue is empty or paused
            if run is None:
                return
            self.submit(run)

    def submit(self, run: dict[str, Any]) -> None:
        run_id = run["id"]
        try:
            job_id = self.jobs.submit(run_id, json.loads(run["spec_json"]), self.store.last_round(run_id))
        except SlurmError as e:  # a refused job (a bad option, a full queue) says so and waits
            self.store.release(run_id)
            self.submit_after = time.monotonic() + SUBMIT_PAUSE
            self.event(run_id, f"not submitted, queued again; trying again in {SUBMIT_PAUSE:.0f} s: {e}", "error")
            return
        self.store.slurm_submitted(run_id, job_id)
        self.watch(run_id, job_id)
        self.event(run_id, f"submitted as Slurm job {job_id} (attempt {run['attempt']})")

    def shutdown(self) -> None:
        """Leave the jobs running: the next head re-attaches to them."""
        for job in list(self.watched.values()):
            self.ingest(job)
        say(f"stopping: {len(self.watched)} Slurm job(s) left running; the next worker re-attaches them")


# ---- settings and the lock -----------------------------------------------------------------------


def lock_path(db: Path) -> Path:
    return Path(db).parent / "worker.lock"


def acquire_lock(db: Path, wait: float = 2.0) -> int | None:
    """The exclusive lock that makes this process the store's worker; an fd, or None when another
    worker holds it. Retries briefly: readers take short shared locks to test it."""
    fd = open_fd(lock_path(db), os.O_RDWR | os.O_CREAT)  # a planted link is refused, never followed
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                return None
            time.sleep(0.05)
    os.ftruncate(fd, 0)
    os.write(fd, str(os.getpid()).encode())
    return fd


def lock_holder(db: Path) -> int | None:
    """The pid of the worker holding the lock (0 when it has not written it yet); None when free."""
    path = lock_path(db)
    if not path.exists() and not path.is_symlink():
        return None
    with os.fdopen(open_fd(path, os.O_RDONLY), "rb") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)  # shared: testers never block each other
        except BlockingIOError:
            text = f.read().decode(errors="replace").strip()
            return int(text) if text.isdigit() else 0
        fcntl.flock(f, fcntl.LOCK_UN)
        return None


# ---- entry points --------------------------------------------------------------------------------


def serve(db: Path, gpus: str = "auto", slots_per_gpu: int | str = "auto", max_attempts: int = 3) -> bool:
    """Be the store's worker until SIGTERM/SIGINT/SIGHUP; False if another worker serves it."""
    db = Path(db).resolve()
    db.parent.mkdir(parents=True, exist_ok=True)
    Store(db).close()  # created (or migrated) before the lock says a worker serves it: readers find it whole
    fd = acquire_lock(db)
    if fd is None:
        say(f"a worker is already running for {db} (pid {lock_holder(db)})")
        return False
    worker: Worker | None = None

    def on_signal(signum: int, frame: object) -> None:  # no printing here: it may interrupt a print
        if worker is not None:
            worker.stopping = True
        else:
            raise SystemExit(0)

    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, on_signal)
    store = Store(db)
    try:
        if store.settings().get("executor") == "slurm":
            options = SlurmOptions.from_json(store.settings().get("slurm_options"))
            worker = SlurmWorker(store, SlurmJobs(db, options), max_attempts)
            mine = {"worker_executor": "slurm", "worker_slots": json.dumps(["slurm"] * options.max_jobs)}
            how = f"Slurm executor, {options.describe()}"
        else:
            waiting = store.runs(status="queued") + store.runs(status="running")
            models = [json.loads(r["spec_json"]).get("model", "") for r in waiting]
            slots, choice = plan_slots(gpus, slots_per_gpu, models)
            worker = Worker(store, LocalExecutor(db, sum(s.gpu is None for s in slots)), slots, max_attempts)
            mine = {"worker_executor": "local", "worker_slots": json.dumps([s.label for s in slots]),
                    "worker_slots_choice": choice}
            how = f"slots {', '.join(s.label for s in slots)} ({choice})"
        store.set_settings({"worker_pid": str(os.getpid()), "worker_started": now(), "worker_heartbeat": now(),
                            "worker_disk_full": None, **mine})
        worker.event(None, f"worker {os.getpid()} started: {how}, max attempts {max_attempts}")
        if isinstance(worker, SlurmWorker):
            worker.attach()  # follow the jobs an earlier head left
        worker.serve()
        worker.event(None, f"worker {os.getpid()} stopped")
    finally:
        store.set_settings(dict.fromkeys(SETTINGS))
        store.close()
        os.close(fd)  # releases the lock
    return True


def choose_executor(db: Path, executor: str | None = None,
                    slurm: dict[str, Any] | None = None) -> tuple[str, SlurmOptions]:
    """The executor (local or slurm) and Slurm options of a worker start: those given, else those
    that the last start saved in the store's settings; saved in turn for the next start. `slurm`
    holds SlurmOptions fields (None: not given). WorkerError when they are wrong."""
    given = {k: v for k, v in (slurm or {}).items() if v is not None}
    unknown = set(given) - set(SlurmOptions.__dataclass_fields__)
    if unknown:
        raise WorkerError(f"unknown Slurm options {sorted(unknown)}")
    with Store(db) as store:
        saved = store.settings()
        name = executor or saved.get("executor") or "local"
        if name not in EXECUTORS:
            raise WorkerError(f"--executor {name!r}: allowed: {', '.join(EXECUTORS)}")
        if name == "local" and given:
            flags = ", ".join(f"--{k.replace('_', '-')}" for k in given)
            raise WorkerError(f"{flags}: options of --executor slurm, and this worker would run locally; "
                              "add --executor slurm")
        options = SlurmOptions.from_json(saved.get("slurm_options")).merged(given)
        if name == "slurm":
            try:
                check_slurm(db, options)
            except SlurmError as e:
                raise WorkerError(str(e)) from None
        store.set_settings({"executor": name, **({"slurm_options": options.to_json()} if name == "slurm" else {})})
    return name, options


def start_worker(db: Path, gpus: str = "auto", slots_per_gpu: int | str = "auto", detach: bool = True,
                 max_attempts: int = 3, executor: str | None = None, slurm: dict[str, Any] | None = None) -> bool:
    """Start the store's worker; False if one already serves it.

    Detached (the default), it runs in a new session with stdin closed and its output in
    `<db folder>/worker.log`, so closing the terminal, the SSH connection or the dashboard never
    stops it; this returns once it holds the lock. Not detached, this serves in the calling process
    (main thread: it installs signal handlers) until the worker is stopped.

    `executor` and `slurm` (SlurmOptions fields) default to what the last start saved in the store
    (choose_executor), so a start with neither (the dashboard's) runs as the last one did.
    """
    db = Path(db).resolve()
    parse_gpus(gpus)  # fail here, not in the background
    parse_slots(slots_per_gpu)
    if max_attempts < 1:
        raise WorkerError("--max-attempts must be an integer >= 1")
    if lock_holder(db) is not None:
        return False
    db.parent.mkdir(parents=True, exist_ok=True)
    if not detach:
        choose_executor(db, executor, slurm)
        return serve(db, gpus, slots_per_gpu, max_attempts)
    cmd = [sys.executable, "-m", "altui.execution.worker", "--db", str(db), "--gpus", gpus,
           "--slots-per-gpu", str(slots_per_gpu), "--max-attempts", str(max_attempts)]
    log_path = db.parent / "worker.log"
    with open_append(log_path) as log:  # never through a planted link; before any setting is saved
        choose_executor(db, executor, slurm)
        proc = subprocess.Popen(cmd, start_new_session=True, stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT, close_fds=True,
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))
    threading.Thread(target=proc.wait, daemon=True).start()  # no zombie if it ends while we live
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if lock_holder(db) == proc.pid:
            return True
        if proc.poll() is not None:  # another worker won a race, or it could not start
            if proc.returncode == 0:
                return False
            raise WorkerError(f"the worker exited with code {proc.returncode}; see {log_path}")
        time.sleep(0.1)
    raise WorkerError(f"the worker (pid {proc.pid}) did not start in {START_TIMEOUT:.0f} s; see {log_path}")


def stop_worker(db: Path, timeout: float = STOP_GRACE + 30) -> bool:
    """SIGTERM the store's worker and wait until it has stopped its runs and exited; False if none
    was running. Its runs requeue themselves and resume when a worker runs again."""
    db = Path(db).resolve()
    pid = lock_holder(db)
    deadline = time.monotonic() + timeout
    while pid == 0 and time.monotonic() < deadline:  # it is starting: wait for its pid
        time.sleep(0.1)
        pid = lock_holder(db)
    if pid is None:
        return False
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    while lock_holder(db) is not None:
        if time.monotonic() > deadline:
            raise WorkerError(f"the worker (pid {pid}) has not stopped after {timeout:.0f} s")
        time.sleep(0.2)
    return True


def worker_status(db: Path, store: Store | None = None) -> dict[str, Any] | None:
    """The store's worker: executor (local or slurm), slurm (its options, described), pid, started,
    heartbeat (ISO text), slots (device labels), slots_choice (how they were chosen), paused, disk_full
    (why it paused the queue, or None), log; None when no worker runs. Pass an open `store` to poll
    without reconnecting."""
    db = Path(db).resolve()
    pid = lock_holder(db)
    if pid is None:
        return None
    # the worker holding the lock creates the store if need be: reading it here creates nothing more
    with contextlib.nullcontext(store) if store else Store(db) as st:
        settings = st.settings()
        paused = st.paused()
    mine = settings.get("worker_pid") == str(pid)  # else the settings are an earlier worker's
    executor = settings.get("worker_executor", "local") if mine else None
    slurm = SlurmOptions.from_json(settings.get("slurm_options")) if executor == "slurm" else None
    return {
        "executor": executor,
        "slurm": slurm.describe() if slurm else None,
        "pid": pid,
        "started": settings.get("worker_started") if mine else None,
        "heartbeat": settings.get("worker_heartbeat") if mine else None,
        "slots": json.loads(settings["worker_slots"]) if mine and "worker_slots" in settings else [],
        "slots_choice": settings.get("worker_slots_choice") if mine else None,
        "paused": paused,
        "disk_full": settings.get("worker_disk_full") if mine else None,
        "log": str(db.parent / "worker.log"),
    }


def main(argv: list[str] | None = None) -> int:
    """`python -m altui.execution.worker --db PATH ...`: serve in this process (start_worker detaches it)."""
    parser = argparse.ArgumentParser(prog="python -m altui.execution.worker")
    parser.add_argument("--db", required=True, type=Path)
    parser.add_argument("--gpus", default="auto")
    parser.add_argument("--slots-per-gpu", default="auto")
    parser.add_argument("--max-attempts", type=int, default=3)
    args = parser.parse_args(argv)
    serve(args.db, args.gpus, args.slots_per_gpu, args.max_attempts)
    return 0


if __name__ == "__main__":
    sys.exit(main())

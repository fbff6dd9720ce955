"""The head of the Slurm executor, on the login node: `SlurmWorker`, the worker loop (a `Worker`) that
submits each claimed run as a Slurm job, ingests the events its job writes (altui/execution/events.py)
and follows the jobs in Slurm; `SlurmJob` is a run's current job as the head watches it.
Behaviour: docs/worker.md.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from altui.execution.events import EventsFileRefused, EventsReader, Ingested, events_path, ingest
from altui.execution.executors.slurm.jobs import JobInfo, RunSettingsError, SlurmJobs, scancel
from altui.execution.executors.slurm.options import SlurmError
from altui.execution.worker import CANCEL_GRACE, ERROR_TAIL, Worker, say
from altui.store import Store

SQUEUE_SECONDS = 5.0  # ask Slurm for its job states this often
SQUEUE_SOON = 1.0  # ... or this often while the job of a run that ended (or was cancelled) is listed
SUBMIT_PAUSE = 60.0  # after sbatch refused a job, submit nothing for this long
# sbatch refusals that a run's own resources cause (a GPU on a cluster without): they would recur
RECURRING_REFUSALS = ("Invalid generic resource", "Requested node configuration is not available",
                      "Invalid partition name", "Invalid qos specification", "Invalid account")


@dataclass
class SlurmJob:
    """A run's current job as the head watches it."""

    run_id: int
    job_id: str | None  # None: an earlier head claimed the run and stopped before recording its job
    reader: EventsReader
    cancel_at: float | None = None  # monotonic time of our last scancel
    run_ended: bool = False  # the run ended (or was cancelled) while Slurm still lists its job
    started: bool = False  # the job wrote its start line: its Python imported altui
    progressed: bool = False  # the job completed a round or saved part of one
    stopped: str | None = None  # why Slurm stopped the job, as its stopped line says ("time limit", "signal")
    refused: str | None = None  # why its events file is not read (not a regular file), as last said


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
        reader = EventsReader(events_path(self.store.run_dir(run_id)), run_id, self.planned_rounds(run_id))
        job = SlurmJob(run_id, job_id, reader)
        self.watched[run_id] = job
        return job

    def planned_rounds(self, run_id: int) -> int | None:
        """The run's planned rounds: its events file records no round beyond them."""
        run = self.store.run(run_id)
        try:
            rounds = json.loads(run["spec_json"]).get("rounds") if run else None
        except (ValueError, AttributeError):
            return None
        return rounds if isinstance(rounds, int) and not isinstance(rounds, bool) else None

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
        if self.disk_full is None or self.space_is_back():  # a full disk (of the store) pauses submitting
            self.fill()
        self.beat()
        self.stop_if_empty(bool(self.watched))

    # -- events
    def ingest(self, job: SlurmJob, final: bool = False) -> None:
        """Put the job's new events into the store; an end event ends the run. The reader's offset
        moves only once all of it is stored: a store error (a full disk, a lock held too long) leaves
        the lines to be read again at the next tick (`final`: the job has ended, see EventsReader)."""
        if job.job_id is None:
            return
        try:
            events = job.reader.read(final)
        except EventsFileRefused as e:  # a link, a FIFO, a folder: said once, never read
            if job.refused != str(e):
                job.refused = str(e)
                self.event(job.run_id, f"its events file is refused: {e}", "error")
            return
        job.refused = None
        with self.store.transaction():  # the batch, its warnings and the run's new state: all or nothing
            self.apply(job, ingest(self.store, job.run_id, events))
        job.reader.commit()

    def apply(self, job: SlurmJob, got: Ingested) -> None:
        """What a batch of events says beyond its rows: bad lines, the job's start, progress, end."""
        for text in got.bad or []:
            self.event(job.run_id, f"skipped a line that is not a valid event: {text}", "warning")
        job.progressed = job.progressed or job.job_id in (got.round_jobs or ())
        if got.stopped and got.stopped["job"] == job.job_id:
            job.stopped = got.stopped["reason"]
        if got.start and got.start["job"] == job.job_id:
            job.started = True
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
                if self.store.slurm_state(job.run_id, job.job_id, info.node, info.reason):
                    self.event(job.run_id, f"running on {info.node} (Slurm job {job.job_id})" if info.node else
                               f"pending in Slurm (job {job.job_id}, {info.state.lower()}: {info.reason})")
        watched = {job.job_id for job in self.watched.values()}
        for info in listed.values():
            if info.job_id not in watched:  # a run's second job, or a job of a run that has ended
                run = self.store.run(info.run_id)
                self.scancel(run["id"] if run else None, info.job_id,
                             f"cancelled Slurm job {info.job_id}, which is not its run's current job "
                             f"(the run is {run['status'] if run else 'gone'})")

    def unrecorded(self, job: SlurmJob, listed: dict[str, JobInfo]) -> None:
        """A run an earlier head claimed for Slurm without recording a job: adopt its job if it
        submitted one, else queue the run again (no attempt is used up: nothing ran)."""
        mine = [i.job_id for i in listed.values() if i.run_id == job.run_id]
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
        running with this job ended before its run did: it is resubmitted, or fails. The job stays
        watched until this is done: a store error on the way has the next poll judge it again."""
        self.ingest(job, final=True)
        run = self.store.run(job.run_id)
        how = self.jobs.how_ended(job.job_id)
        cannot = None if job.started else self.jobs.cannot_start(job.run_id, job.job_id)
        if run["status"] in ("queued", "running") and run["slurm_job_id"] == job.job_id and cannot:
            # the node's Python cannot import altui (or submitit): every job would end the same way
            why = (f"its Slurm job {job.job_id} could not start the run ({how}): the node's Python cannot "
                   f"import it: {cannot}; install altui where the compute nodes see it (docs/worker.md)")
            self.store.finish(job.run_id, "failed", f"{why}\n{self.output_tail(job.run_id)}")
            self.event(job.run_id, f"{why}; failed without another attempt", "error")
        elif run["status"] in ("queued", "running") and run["slurm_job_id"] == job.job_id:
            timeout = job.stopped == "time limit" or how.startswith("TIMEOUT")
            if timeout or how.startswith("PREEMPTED"):
                self.stopped_by_slurm(job, "its time limit" if timeout else "preemption", how)
            else:
                self.crashed(run, f"its Slurm job {job.job_id} ended before the run did ({how})")
        else:
            self.event(job.run_id, f"Slurm job {job.job_id} ended ({how})")
        del self.watched[job.run_id]

    def stopped_by_slurm(self, job: SlurmJob, by: str, how: str) -> None:
        """A job stopped by its time limit or by preemption: the run is resubmitted to resume after its
        last round, with no attempt used (submitit's checkpoint convention). A job that reached its
        time limit without completing a round or saving part of one shows that the run cannot progress
        in a job: it fails with that reason rather than be resubmitted for ever."""
        if by == "its time limit" and not job.progressed:
            # (the limit is the worker's --time or the experiment's slurm.time: scontrol show job says which)
            why = (f"its Slurm job {job.job_id} reached its time limit before it completed a round or saved "
                   f"part of one ({how}): an epoch of this run takes longer than a job may run, so no number "
                   "of jobs would finish it; give --time (or the experiment's slurm.time) room for start-up "
                   "and a few epochs")
            self.store.finish(job.run_id, "failed", why)
            self.event(job.run_id, why, "error")
            return
        self.store.finish(job.run_id, "queued", refund=True)
        self.event(job.run_id, f"its Slurm job {job.job_id} was stopped by {by} ({how}); resubmitted to resume "
                               f"at round {self.store.last_round(job.run_id) + 1}, no attempt used", "warning")

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
        while (not self.stopping and self.store_changed is None and len(self.watched) < self.max_jobs
               and time.monotonic() >= self.submit_after):
            run = self.store.claim("slurm")  # None when the queue is empty or paused
            if run is None:
                return
            self.submit(run)

    def submit(self, run: dict[str, Any]) -> None:
        run_id = run["id"]
        table = self.store.experiment_spec(run_id).get("slurm") or {}
        try:
            job_id = self.jobs.submit(run_id, run["name"], json.loads(run["spec_json"]),
                                      self.store.last_round(run_id), table)
        except SlurmError as e:
            if isinstance(e, RunSettingsError) or any(m in str(e) for m in RECURRING_REFUSALS):
                # the run's own settings: every submission would be refused the same way
                self.store.finish(run_id, "failed", f"not submitted: {e}")
                self.event(run_id, f"not submitted, failed: {e}", "error")
                return
            # a refused job (a full queue, a changed account) says so and waits
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

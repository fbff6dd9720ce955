"""A store's Slurm jobs as the head sees them: `SlurmJobs` submits a run's job through submitit (a
`SlurmRun`, job.py), lists the store's jobs (squeue), tells how one ended (scontrol, else sacct) and
reads its log; `scancel` cancels jobs.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from altui.execution.executors.slurm.job import SlurmRun
from altui.execution.executors.slurm.options import SlurmError, SlurmOptions, save_interval, slurm
from altui.store import make_run_folder, run_folder

# how a Python that cannot import altui (or submitit, or a dependency) says so, in a job's log
IMPORT_ERROR = re.compile(r"^(?:ModuleNotFoundError|ImportError): .*$", re.M)
# squeue states of a job that has not started (again) yet; any other listed state has a node
PENDING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"}


def store_tag(db: Path) -> str:
    """A short tag of the store's path: job names tell this store's jobs from others of the user."""
    return hashlib.sha1(str(Path(db).resolve()).encode()).hexdigest()[:8]


class RunSettingsError(SlurmError):
    """A run's own Slurm settings make no job: it would fail the same way at every submission."""


@dataclass(frozen=True)
class JobInfo:
    job_id: str
    run_id: int
    name: str
    state: str  # squeue's state: PENDING, RUNNING, COMPLETING, ...
    node: str | None  # None while pending
    reason: str


class SlurmJobs:
    """A store's Slurm jobs: submit (through submitit), list, explain an end, cancel.

    A job is named after its run (`altui:<experiment>/<method>/s<seed>`, what squeue and sacct show)
    and carries `altui-<store tag>-<run id>` as its comment (sbatch --comment), by which the head
    finds its store's jobs. Jobs submitted before names said the run carry that tag as their name."""

    def __init__(self, db: Path, options: SlurmOptions):
        self.db, self.options = Path(db).resolve(), options
        self.params = options.parameters()
        self.prefix = f"altui-{store_tag(self.db)}-"

    def tag(self, run_id: int) -> str:
        return f"{self.prefix}{run_id}"

    def run_of(self, tag: str) -> int | None:
        """The run id of one of this store's jobs, from its tag (comment, or an older job's name);
        None for another job."""
        rest = tag[len(self.prefix):] if tag.startswith(self.prefix) else ""
        return int(rest) if rest.isdigit() else None

    def submit(self, run_id: int, name: str, config: dict[str, Any], recorded: int,
               table: dict[str, Any] | None = None) -> str:
        """Submit the run's job, with its experiment's [experiment.slurm] `table` over the worker's
        options; its id. SlurmError with sbatch's message when Slurm refuses it, RunSettingsError
        when the run's own settings make no job."""
        import submitit

        options = self.options.for_run(table or {}, config.get("device"))
        try:
            params = options.parameters()
        except SlurmError as e:
            raise RunSettingsError(f"its [experiment.slurm] settings: {e}") from None
        try:
            run_dir = make_run_folder(self.db, run_id)  # never through a planted link
        except OSError as e:
            raise RunSettingsError(f"its run folder: {e}") from None
        device = "cuda" if options.gpus_per_job else "cpu"
        try:
            executor = submitit.SlurmExecutor(folder=run_dir / "slurm", max_num_timeout=0)
            extra = {**params.get("additional_parameters", {}), "comment": self.tag(run_id)}
            executor.update_parameters(**{**params, "additional_parameters": extra}, job_name=job_name(name))
            job = executor.submit(SlurmRun(run_id, str(run_dir), config, device, recorded,
                                           save_interval(params.get("time"))))
        except Exception as e:  # submitit raises its own errors, with sbatch's output in them
            raise SlurmError(f"sbatch failed: {str(e).strip()[-1000:]}") from None
        return job.job_id

    def jobs(self) -> dict[str, JobInfo]:
        """This store's jobs that Slurm still lists (pending, running, completing), by job id.
        SlurmError when squeue cannot answer: never take that for "every job ended"."""
        out = slurm(["squeue", "--me", "--noheader", "--array", "--format=%i|%T|%N|%r|%k|%j"])
        listed = {}
        for line in out.splitlines():  # the name last: it is the user's text and may hold "|"
            job_id, state, node, reason, comment, name = (line.split("|", 5) + [""] * 6)[:6]
            run_id = self.run_of(comment.strip())
            run_id = self.run_of(name) if run_id is None else run_id
            if run_id is not None:
                running = state not in PENDING and node.strip()
                listed[job_id] = JobInfo(job_id, run_id, name, state, node.strip() if running else None, reason)
        return listed

    def how_ended(self, job_id: str) -> str:
        """How a job that squeue no longer lists ended: its state (and exit code, reason) from
        scontrol while the controller remembers it, else from sacct where accounting runs."""
        try:
            text = slurm(["scontrol", "show", "job", "--oneliner", job_id])
            info = dict(kv.split("=", 1) for kv in text.split() if "=" in kv)
            state = info.get("JobState", "UNKNOWN")
            reason = info.get("Reason", "None")
            return f"{state}, exit code {info.get('ExitCode', '?')}" + (f", {reason}" if reason != "None" else "")
        except SlurmError:
            pass
        try:
            text = slurm(["sacct", "--noheader", "--parsable2", "--allocations", "--format=State,ExitCode",
                          "--jobs", job_id])
            state, _, code = (text.strip().splitlines() or ["UNKNOWN|"])[-1].partition("|")
            return f"{state}, exit code {code or '?'}"
        except SlurmError:
            return "no longer known to Slurm"

    def cannot_start(self, run_id: int, job_id: str) -> str | None:
        """The import error that ended a job before it started its run (its log's last one), if
        one did: the node's Python lacks altui, submitit or a dependency, which every job would meet."""
        path = run_folder(self.db, run_id) / "slurm" / f"{job_id}_0_log.out"
        try:
            text = path.read_text(errors="replace")[-20_000:]
        except OSError:
            return None
        found = IMPORT_ERROR.findall(text)
        return found[-1].strip() if found else None

    def log_tail(self, run_id: int, chars: int) -> str:
        """The end of the output of the run's latest job (submitit's log in its run folder)."""
        logs = sorted((run_folder(self.db, run_id) / "slurm").glob("*_log.out"), key=lambda p: p.stat().st_mtime)
        if not logs:
            return "(no Slurm job log)"
        with open(logs[-1], "rb") as f:
            f.seek(max(0, logs[-1].stat().st_size - chars))
            return f"{logs[-1].name}:\n" + f.read().decode(errors="replace")


def job_name(run_name: str) -> str:
    """The Slurm job name of a run: `altui:` and the run's name (sbatch's script line takes no blank,
    quote or newline; squeue's listing no "|")."""
    return "altui:" + "".join(c if c.isprintable() and c not in " |'\"" else "_" for c in run_name)[:200]


def scancel(job_ids: list[str]) -> None:
    """Cancel jobs (their runs' status is the store's business); SlurmError if scancel fails."""
    if job_ids:
        slurm(["scancel", *job_ids])


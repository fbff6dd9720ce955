"""The Slurm executor: one Slurm job per run, submitted through submitit.

The head (altui.execution.worker.SlurmWorker, on the login node) claims a queued run and `SlurmJobs.submit`
hands submitit a `SlurmRun` for it: submitit pickles it into `<run folder>/slurm/`, writes the sbatch
script and submits it. On the compute node, submitit unpickles it and calls it: the run goes through
`runner.execute_to_events`, which appends to the run's events file and never opens the store.
`SlurmJobs` also asks Slurm which jobs live (squeue), how one ended (scontrol, else sacct) and
cancels them (scancel). Options and behaviour: docs/worker.md.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

SLURM_TIMEOUT = 60.0  # seconds for one squeue/scancel/scontrol call (a busy controller is slow)
# squeue states of a job that has not started (again) yet; any other listed state has a node
PENDING = {"PENDING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD"}
MEM = re.compile(r"^\d+(\.\d+)?[KMGT]?B?$", re.I)
# submitit parameters that altui's own options set (the option to use instead)
OWN = {"partition": "--partition", "time": "--time", "gpus_per_node": "--gpus-per-job",
       "cpus_per_task": "--cpus-per-job", "mem": "--mem", "account": "--account", "qos": "--qos",
       "constraint": "--constraint", "job_name": "(altui names its jobs)", "num_gpus": "--gpus-per-job",
       "timeout_min": "--time", "mem_gb": "--mem", "gpus_per_task": "--gpus-per-job"}
LIST_PARAMETERS = ("setup", "teardown", "srun_args")  # repeat --slurm-arg setup=... for several lines


class SlurmError(RuntimeError):
    pass


def slurm_minutes(text: str) -> int:
    """Slurm's --time formats (minutes, minutes:seconds, hours:minutes:seconds, days-hours,
    days-hours:minutes, days-hours:minutes:seconds) as whole minutes, rounded up."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not m:
        raise SlurmError(f"--time {text!r}: allowed: minutes (90), hours:minutes:seconds (1:30:00) "
                         "or days-hours[:minutes[:seconds]] (2-00:00:00)")
    days, a, b, c = m.groups()
    if days is not None:  # days-hours[:minutes[:seconds]]
        seconds = int(days) * 86400 + int(a) * 3600 + int(b or 0) * 60 + int(c or 0)
    elif c is not None:  # hours:minutes:seconds
        seconds = int(a) * 3600 + int(b) * 60 + int(c)
    else:  # minutes[:seconds]
        seconds = int(a) * 60 + int(b or 0)
    if seconds <= 0:
        raise SlurmError(f"--time {text!r}: must be more than 0")
    return -(-seconds // 60)


@dataclass(frozen=True)
class SlurmOptions:
    """What `altui worker start --executor slurm` asks of Slurm; saved in the store's settings."""

    max_jobs: int = 8
    partition: str | None = None
    time: str | None = None  # as given: minutes or Slurm's [days-]hours:minutes:seconds
    gpus_per_job: int = 1
    cpus_per_job: int | None = None
    mem: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    slurm_args: tuple[str, ...] = ()  # KEY=VALUE, passed through to submitit

    @classmethod
    def from_json(cls, text: str | None) -> SlurmOptions:
        known = {f.name for f in fields(cls)}
        saved = {k: v for k, v in json.loads(text).items() if k in known} if text else {}
        if "slurm_args" in saved:
            saved["slurm_args"] = tuple(saved["slurm_args"])
        return cls(**saved)

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    def merged(self, given: dict[str, Any]) -> SlurmOptions:
        """These options with `given` ones (None: not given) in their place; an empty text clears an
        option, and `slurm_args` given replace the saved list ([""] clears it)."""
        changes = {}
        for key, value in given.items():
            if value is None:
                continue
            if key == "slurm_args":
                value = tuple(v for v in value if v.strip())
            elif isinstance(value, str) and not value.strip():
                value = None
            changes[key] = value
        return replace(self, **changes)

    def parameters(self) -> dict[str, Any]:
        """submitit SlurmExecutor parameters; raises SlurmError naming a bad option."""
        if self.max_jobs < 1:
            raise SlurmError(f"--max-jobs {self.max_jobs}: allowed: an integer >= 1")
        if self.gpus_per_job < 0:
            raise SlurmError(f"--gpus-per-job {self.gpus_per_job}: allowed: an integer >= 0 (0: CPU jobs)")
        if self.cpus_per_job is not None and self.cpus_per_job < 1:
            raise SlurmError(f"--cpus-per-job {self.cpus_per_job}: allowed: an integer >= 1")
        if self.mem is not None and not MEM.match(self.mem):
            raise SlurmError(f"--mem {self.mem!r}: allowed: a size as sbatch takes it, such as 16G or 4000M")
        params: dict[str, Any] = {
            "partition": self.partition, "time": slurm_minutes(self.time) if self.time else None,
            "gpus_per_node": self.gpus_per_job or None, "cpus_per_task": self.cpus_per_job, "mem": self.mem,
            "account": self.account, "qos": self.qos, "constraint": self.constraint,
            "stderr_to_stdout": True,  # one log per job: <run folder>/slurm/<job>_0_log.out
        }
        # time stays even as None: submitit's own default would be a 5-minute limit
        params = {k: v for k, v in params.items() if v is not None or k == "time"}
        extra: dict[str, Any] = {}
        for arg in self.slurm_args:
            key, value = pass_through(arg)
            if key in LIST_PARAMETERS:
                params[key] = [*params.get(key, []), value]
            elif key in submitit_defaults():
                params[key] = value
            else:
                extra[key.replace("_", "-")] = value
        if extra:
            params["additional_parameters"] = extra
        return params

    def describe(self) -> str:
        parts = [f"at most {self.max_jobs} jobs",
                 f"{self.gpus_per_job} GPU(s) per job" if self.gpus_per_job else "CPU jobs"]
        for name in ("partition", "time", "cpus_per_job", "mem", "account", "qos", "constraint"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"--{name.replace('_', '-')} {value}")
        parts += [f"--slurm-arg {a}" for a in self.slurm_args]
        return ", ".join(parts)


def submitit_defaults() -> dict[str, Any]:
    """submitit's SlurmExecutor parameters and their defaults."""
    from submitit.slurm.slurm import _get_default_parameters

    return _get_default_parameters()


def pass_through(arg: str) -> tuple[str, Any]:
    """`--slurm-arg KEY=VALUE` as a submitit parameter (typed as its default) or, for a key submitit
    does not know, a raw sbatch option; a bare KEY is an sbatch flag (such as `requeue`)."""
    key, eq, value = arg.partition("=")
    key = key.strip().lstrip("-").replace("-", "_")
    if not key or not re.fullmatch(r"\w+", key):
        raise SlurmError(f"--slurm-arg {arg!r}: allowed: KEY=VALUE, such as mail-type=END or exclude=node07")
    if key in OWN:
        raise SlurmError(f"--slurm-arg {arg!r}: use {OWN[key]} instead")
    if key == "additional_parameters":
        raise SlurmError(f"--slurm-arg {arg!r}: give each sbatch option as its own --slurm-arg KEY=VALUE")
    defaults = submitit_defaults()
    if key not in defaults:
        return key, value if eq else True
    default = defaults[key]
    if isinstance(default, bool) or key == "exclusive":
        if not eq or value.lower() in ("true", "1", "yes"):
            return key, True
        if value.lower() in ("false", "0", "no"):
            return key, False
        if key == "exclusive":  # exclusive=user, exclusive=mcs
            return key, value
        raise SlurmError(f"--slurm-arg {arg!r}: {key} takes true or false")
    if not eq:
        raise SlurmError(f"--slurm-arg {arg!r}: {key} needs a value: {key}=VALUE")
    if isinstance(default, int):
        try:
            return key, int(value)
        except ValueError:
            raise SlurmError(f"--slurm-arg {arg!r}: {key} takes an integer") from None
    return key, value


def store_tag(db: Path) -> str:
    """A short tag of the store's path: job names tell this store's jobs from others of the user."""
    return hashlib.sha1(str(Path(db).resolve()).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class JobInfo:
    job_id: str
    name: str
    state: str  # squeue's state: PENDING, RUNNING, COMPLETING, ...
    node: str | None  # None while pending
    reason: str


class SlurmRun:
    """What a job runs on its compute node (submitit pickles it by reference to this module)."""

    def __init__(self, run_id: int, run_dir: str, config: dict[str, Any], device: str, recorded: int):
        self.run_id, self.run_dir, self.config = run_id, run_dir, config
        self.device, self.recorded = device, recorded

    def __call__(self) -> str:
        from altui.execution.events import EventSink

        sink = EventSink(self.run_dir, os.environ.get("SLURM_JOB_ID"))
        try:  # the start first: the head sees the job run while Python imports torch
            sink.start(os.environ.get("SLURMD_NODENAME") or socket.gethostname(),
                       int(os.environ.get("SLURM_RESTART_COUNT") or 0))
            from altui.execution import runner

            def stop(signum: int, frame: object) -> None:
                # Slurm cancels, requeues or preempts (SIGTERM), or the time limit nears (submitit's
                # SIGUSR2): end now; the head resubmits, or Slurm restarts this job, from the checkpoint.
                why = "the job's time limit is near" if signum == signal.SIGUSR2 else "Slurm ends the job"
                raise runner.Stopped(f"{why}: {signal.Signals(signum).name}")

            signal.signal(signal.SIGTERM, stop)  # replaces submitit's handlers: no end is written
            signal.signal(signal.SIGUSR2, stop)
            cpus = os.environ.get("SLURM_CPUS_PER_TASK")
            if cpus and "OMP_NUM_THREADS" not in os.environ:
                import torch

                torch.set_num_threads(int(cpus))
            status = runner.execute_to_events(sink, self.run_id, self.config, self.device, self.recorded)
        finally:
            sink.close()
        atexit.register(exit_now)  # the run's end is durable; submitit writes its result before atexit
        return status


def exit_now() -> None:
    """End the job's process without Python's teardown, which takes seconds with torch loaded
    (2.5 s on an idle CPU, about 10 s on a busy one) while the job keeps its allocation and its place
    among --max-jobs. Runs first among atexit's handlers, after submitit has written its result."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class SlurmJobs:
    """A store's Slurm jobs: submit (through submitit), list, explain an end, cancel."""

    def __init__(self, db: Path, options: SlurmOptions):
        self.db, self.options = Path(db).resolve(), options
        self.params = options.parameters()
        self.prefix = f"altui-{store_tag(self.db)}-"

    @property
    def device(self) -> str:
        return "cuda" if self.options.gpus_per_job else "cpu"

    def job_name(self, run_id: int) -> str:
        return f"{self.prefix}{run_id}"

    def run_of(self, name: str) -> int | None:
        """The run id of one of this store's jobs, from its name; None for another job."""
        rest = name[len(self.prefix):] if name.startswith(self.prefix) else ""
        return int(rest) if rest.isdigit() else None

    def submit(self, run_id: int, config: dict[str, Any], recorded: int) -> str:
        """Submit the run's job; its id. SlurmError with sbatch's message when Slurm refuses it."""
        import submitit

        run_dir = self.db.parent / str(run_id)
        try:
            executor = submitit.SlurmExecutor(folder=run_dir / "slurm", max_num_timeout=0)
            executor.update_parameters(**self.params, job_name=self.job_name(run_id))
            job = executor.submit(SlurmRun(run_id, str(run_dir), config, self.device, recorded))
        except Exception as e:  # submitit raises its own errors, with sbatch's output in them
            raise SlurmError(f"sbatch failed: {str(e).strip()[-1000:]}") from None
        return job.job_id

    def jobs(self) -> dict[str, JobInfo]:
        """This store's jobs that Slurm still lists (pending, running, completing), by job id.
        SlurmError when squeue cannot answer: never take that for "every job ended"."""
        out = slurm(["squeue", "--me", "--noheader", "--array", "--format=%i|%j|%T|%N|%r"])
        listed = {}
        for line in out.splitlines():
            job_id, name, state, node, reason = (line.split("|") + [""] * 5)[:5]
            if self.run_of(name) is not None:
                running = state not in PENDING and node.strip()
                listed[job_id] = JobInfo(job_id, name, state, node.strip() if running else None, reason)
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

    def log_tail(self, run_id: int, chars: int) -> str:
        """The end of the output of the run's latest job (submitit's log in its run folder)."""
        logs = sorted((self.db.parent / str(run_id) / "slurm").glob("*_log.out"), key=lambda p: p.stat().st_mtime)
        if not logs:
            return "(no Slurm job log)"
        with open(logs[-1], "rb") as f:
            f.seek(max(0, logs[-1].stat().st_size - chars))
            return f"{logs[-1].name}:\n" + f.read().decode(errors="replace")


def slurm(cmd: list[str]) -> str:
    """Run a Slurm command; its output, or SlurmError with its message."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=SLURM_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SlurmError(f"{cmd[0]}: {e}") from None
    if done.returncode != 0:
        raise SlurmError(f"{' '.join(cmd)}: {(done.stderr or done.stdout).strip()}")
    return done.stdout


def scancel(job_ids: list[str]) -> None:
    """Cancel jobs (their runs' status is the store's business); SlurmError if scancel fails."""
    if job_ids:
        slurm(["scancel", *job_ids])


def check_slurm(db: Path, options: SlurmOptions) -> None:
    """Before a worker starts: the Slurm commands are here, and Slurm accepts a job with these options
    (`sbatch --test-only`, which submits nothing). SlurmError says what is wrong."""
    params = options.parameters()
    missing = [c for c in ("sbatch", "squeue", "scancel", "scontrol", "srun") if shutil.which(c) is None]
    if missing:
        raise SlurmError(f"--executor slurm: {', '.join(missing)} not found on PATH; start the worker on a "
                         "Slurm login node")
    from submitit.slurm.slurm import _make_sbatch_string  # the script submitit submits

    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "check.sh"
        script.write_text(_make_sbatch_string(command="true", folder=tmp, job_name="altui-check", **params))
        try:
            slurm(["sbatch", "--test-only", str(script)])
        except SlurmError as e:
            raise SlurmError(f"Slurm refuses jobs with these options ({options.describe()}): "
                             f"{str(e).split(': ', 1)[-1]}") from None

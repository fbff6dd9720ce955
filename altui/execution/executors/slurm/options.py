"""What the Slurm executor asks of Slurm, and whether Slurm accepts it: `SlurmOptions` (what
`altui worker start --executor slurm` sets, saved in the store's settings) as submitit's SlurmExecutor
parameters, `--slurm-arg KEY=VALUE` passed through (pass_through), Slurm's --time formats
(slurm_minutes); `slurm()` runs one Slurm command, and `check_slurm` tries the options before a worker
starts (`sbatch --test-only`). Options and behaviour: docs/worker.md.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from altui.spec.slurm import MEM, split_arg, time_seconds

SLURM_TIMEOUT = 60.0  # seconds for one squeue/scancel/scontrol call (a busy controller is slow)
# submitit parameters that altui's own options set (the option to use instead)
OWN = {"partition": "--partition", "time": "--time", "gpus_per_node": "--gpus-per-job",
       "cpus_per_task": "--cpus-per-job", "mem": "--mem", "account": "--account", "qos": "--qos",
       "constraint": "--constraint", "num_gpus": "--gpus-per-job",
       "timeout_min": "--time", "mem_gb": "--mem", "gpus_per_task": "--gpus-per-job"}
STARTUP_SECONDS = 30  # a job's start before its run works: Python, torch's import, the data set
MIN_WORK_SECONDS = 15  # the least time a job must leave its run: a short round of a small data set
LIST_PARAMETERS = ("setup", "teardown", "srun_args")  # repeat --slurm-arg setup=... for several lines


class SlurmError(RuntimeError):
    pass


def slurm_minutes(text: str) -> int:
    """Slurm's --time formats as whole minutes, rounded up (altui/spec/slurm.py: time_seconds)."""
    try:
        return -(-time_seconds(text) // 60)
    except ValueError as e:
        raise SlurmError(f"--time {text!r}: {e}") from None


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
        if params["time"] is not None:
            params["signal_delay_s"] = self.check_time(params["time"] * 60, params.get("signal_delay_s"))
        return params

    def check_time(self, limit: int, delay: int | None) -> int:
        """The stop signal's delay before a `limit` of seconds (as given, else one sized to the limit:
        submitit's 90 s would come before a short job got going); SlurmError when the limit leaves
        no time for a round after start-up and the signal."""
        delay = signal_delay(limit) if delay is None else delay
        work = limit - delay - STARTUP_SECONDS
        if work < MIN_WORK_SECONDS:
            raise SlurmError(
                f"--time {self.time}: a job of {limit} s leaves {max(work, 0)} s for the run after start-up "
                f"(about {STARTUP_SECONDS} s: Python, torch, the data) and the stop signal ({delay} s before "
                f"the limit), too short for a round; allowed: a limit of at least "
                f"{delay + STARTUP_SECONDS + MIN_WORK_SECONDS} s with that signal delay")
        return delay

    def for_run(self, table: dict[str, Any], device: str | None) -> SlurmOptions:
        """These options for one run: its experiment's [experiment.slurm] `table` over them, key by
        key (its `args` after the worker's --slurm-arg); a run with device "cpu" asks for no GPU
        unless its table sets `gpus`."""
        changes: dict[str, Any] = {k: table[k] for k in ("partition", "mem", "constraint", "qos", "account")
                                   if k in table}
        if "time" in table:
            changes["time"] = str(table["time"])
        if "cpus" in table:
            changes["cpus_per_job"] = table["cpus"]
        if "gpus" in table:
            changes["gpus_per_job"] = table["gpus"]
        elif device == "cpu":
            changes["gpus_per_job"] = 0
        if table.get("args"):
            changes["slurm_args"] = (*self.slurm_args, *table["args"])
        return replace(self, **changes)

    def describe(self) -> str:
        parts = [f"at most {self.max_jobs} jobs",
                 f"{self.gpus_per_job} GPU(s) per job" if self.gpus_per_job else "CPU jobs"]
        for name in ("partition", "time", "cpus_per_job", "mem", "account", "qos", "constraint"):
            value = getattr(self, name)
            if value is not None:
                parts.append(f"--{name.replace('_', '-')} {value}")
        parts += [f"--slurm-arg {a}" for a in self.slurm_args]
        return ", ".join(parts)


def signal_delay(limit: int) -> int:
    """Seconds before a time limit of `limit` seconds that Slurm sends the stop signal (SIGUSR2): a
    sixth of the limit, from 10 s (time to write the stop) to submitit's default of 90 s."""
    return int(min(90, max(10, limit // 6)))


def save_interval(minutes: int | None) -> float:
    """Seconds between saves of a round in progress, at epoch ends: a quarter of the job's limit, so
    that a stop at the limit loses at most about that much of a round (10 min with no --time: the
    partition's default limit, unknown here)."""
    return 600.0 if minutes is None else max(10.0, minutes * 60 / 4)


def submitit_defaults() -> dict[str, Any]:
    """submitit's SlurmExecutor parameters and their defaults."""
    from submitit.slurm.slurm import _get_default_parameters

    return _get_default_parameters()


def pass_through(arg: str) -> tuple[str, Any]:
    """`--slurm-arg KEY=VALUE` as a submitit parameter (typed as its default) or, for a key submitit
    does not know, a raw sbatch option; a bare KEY is an sbatch flag (such as `requeue`)."""
    try:
        key, value, eq = split_arg(arg)  # also refuses options that conflict with how altui drives jobs
    except ValueError as e:
        raise SlurmError(f"--slurm-arg {arg!r}: {e}") from None
    if key in OWN:
        raise SlurmError(f"--slurm-arg {arg!r}: use {OWN[key]} instead")
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


def slurm(cmd: list[str]) -> str:
    """Run a Slurm command; its output, or SlurmError with its message."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=SLURM_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SlurmError(f"{cmd[0]}: {e}") from None
    if done.returncode != 0:
        raise SlurmError(f"{' '.join(cmd)}: {(done.stderr or done.stdout).strip()}")
    return done.stdout


def check_slurm(db: Path, options: SlurmOptions) -> str | None:
    """Before a worker starts: the Slurm commands are here, and Slurm accepts a job with these options
    (`sbatch --test-only`, which submits nothing). SlurmError says what is wrong. A cluster that
    refuses GPU jobs but takes CPU ones is accepted, with a note (returned) that only runs with
    device = "cpu" (which ask for no GPU) or a table with `gpus = 0` can run there."""
    options.parameters()
    missing = [c for c in ("sbatch", "squeue", "scancel", "scontrol", "srun") if shutil.which(c) is None]
    if missing:
        raise SlurmError(f"--executor slurm: {', '.join(missing)} not found on PATH; start the worker on a "
                         "Slurm login node")
    try:
        test_only(options)
    except SlurmError as e:
        refused = SlurmError(f"Slurm refuses jobs with these options ({options.describe()}): "
                             f"{str(e).split(': ', 1)[-1]}")
        if not options.gpus_per_job:
            raise refused from None
        try:  # a cluster without GPUs (or without them in this partition): CPU runs still can run
            test_only(replace(options, gpus_per_job=0))
        except SlurmError:
            raise refused from None
        return (f"note: Slurm refuses jobs with {options.gpus_per_job} GPU(s) here ({str(e).split(': ', 1)[-1]}); "
                "runs with device = \"cpu\" ask for none and run, others are refused at submission "
                "(--gpus-per-job 0 runs every run on the CPU)")
    return None


def test_only(options: SlurmOptions) -> None:
    """`sbatch --test-only` of the script submitit would submit with these options."""
    from submitit.slurm.slurm import _make_sbatch_string  # the script submitit submits

    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "check.sh"
        script.write_text(_make_sbatch_string(command="true", folder=tmp, job_name="altui-check",
                                              **options.parameters()))
        slurm(["sbatch", "--test-only", str(script)])

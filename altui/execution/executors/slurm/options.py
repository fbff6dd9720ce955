"""What the Slurm executor asks of Slurm, and whether Slurm accepts it: `SlurmOptions` (what
`altui worker start --executor slurm` sets, saved in the store's settings) as submitit's SlurmExecutor
parameters, `--slurm-arg KEY=VALUE` passed through (pass_through), Slurm's --time formats
(slurm_minutes); `slurm()` runs one Slurm command, and `check_slurm` tries the options before a worker
starts (`sbatch --test-only`). Options and behaviour: docs/worker.md.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

SLURM_TIMEOUT = 60.0  # seconds for one squeue/scancel/scontrol call (a busy controller is slow)
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


def slurm(cmd: list[str]) -> str:
    """Run a Slurm command; its output, or SlurmError with its message."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=SLURM_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise SlurmError(f"{cmd[0]}: {e}") from None
    if done.returncode != 0:
        raise SlurmError(f"{' '.join(cmd)}: {(done.stderr or done.stdout).strip()}")
    return done.stdout


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

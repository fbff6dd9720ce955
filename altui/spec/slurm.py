"""An experiment's own Slurm settings (`[experiment.slurm]`, docs/worker.md) and the checks of Slurm
option values that the spec and the Slurm executor share: Slurm's --time formats, --mem sizes, and
the sbatch options that altui sets itself or cannot drive its jobs with. Imports nothing of altui.
"""

from __future__ import annotations

import re
from typing import Any

TIME_FORMATS = ("minutes (90), hours:minutes:seconds (1:30:00) or days-hours[:minutes[:seconds]] "
                "(2-00:00:00)")
MEM = re.compile(r"^\d+(\.\d+)?[KMGT]?B?$", re.I)
ARG_KEY = re.compile(r"\w+")

# sbatch options (as submitit names them) that conflict with how altui drives its jobs, and why
REFUSED = {
    "array": "altui submits one job per run; an array would run the same run several times at once",
    "signal": "altui asks Slurm for its own signal before the time limit (its delay: signal_delay_s=SECONDS); "
              "another signal ends the job before altui can save its round",
    "requeue": "altui decides itself whether a job stopped by its time limit or by preemption is requeued "
               "(docs/worker.md: time limits and preemption)",
    "no_requeue": "altui decides itself whether a job stopped by its time limit or by preemption is requeued "
                  "(docs/worker.md: time limits and preemption)",
    "comment": "altui tags each job with --comment to find its store's jobs",
    "output": "altui reads each job's log at <run folder>/slurm/<job>_0_log.out",
    "error": "altui reads each job's log at <run folder>/slurm/<job>_0_log.out",
    "job_name": "altui names each job after its run",
    "additional_parameters": "give each sbatch option as its own KEY=VALUE",
}
# submitit parameters that a key of [experiment.slurm] sets (the key to use instead)
TABLE_OWN = {"partition": "partition", "time": "time", "timeout_min": "time", "gpus_per_node": "gpus",
             "num_gpus": "gpus", "gpus_per_task": "gpus", "cpus_per_task": "cpus", "mem": "mem", "mem_gb": "mem",
             "account": "account", "qos": "qos", "constraint": "constraint"}
# [experiment.slurm]: key -> what it takes
TABLE_KEYS = {"partition": "a string", "time": f"{TIME_FORMATS}, as a string or whole minutes",
              "gpus": "an integer >= 0 (0: a CPU job)", "cpus": "an integer >= 1", "mem": "a size such as 16G or 4000M",
              "constraint": "a string", "qos": "a string", "account": "a string",
              "args": 'a list of "KEY=VALUE" sbatch options, such as ["mail-type=FAIL", "exclude=node07"]'}


def time_seconds(text: str) -> int:
    """Slurm's --time formats (minutes, minutes:seconds, hours:minutes:seconds, days-hours,
    days-hours:minutes, days-hours:minutes:seconds) in seconds; ValueError says what is allowed."""
    m = re.fullmatch(r"(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?", text.strip())
    if not m:
        raise ValueError(f"allowed: {TIME_FORMATS}")
    days, a, b, c = m.groups()
    if days is not None:  # days-hours[:minutes[:seconds]]
        seconds = int(days) * 86400 + int(a) * 3600 + int(b or 0) * 60 + int(c or 0)
    elif c is not None:  # hours:minutes:seconds
        seconds = int(a) * 3600 + int(b) * 60 + int(c)
    else:  # minutes[:seconds]
        seconds = int(a) * 60 + int(b or 0)
    if seconds <= 0:
        raise ValueError("must be more than 0")
    return seconds


def split_arg(arg: str) -> tuple[str, str, bool]:
    """`KEY=VALUE` (or a bare KEY, an sbatch flag) as (key in submitit's spelling, value, has "=");
    ValueError when it is neither, or names an option altui cannot drive its jobs with."""
    key, eq, value = arg.partition("=")
    key = key.strip().lstrip("-").replace("-", "_")
    if not key or not ARG_KEY.fullmatch(key):
        raise ValueError("allowed: KEY=VALUE, such as mail-type=END or exclude=node07")
    if key in REFUSED:
        raise ValueError(f"refused: {REFUSED[key]}")
    return key, value, bool(eq)


def table_issues(table: Any) -> list[tuple[str, str]]:
    """What is wrong with an [experiment.slurm] table, as (key, message); key "" for the table."""
    if not isinstance(table, dict):
        return [("", "expected a table: [experiment.slurm] with keys " + ", ".join(TABLE_KEYS))]
    issues = []
    for key, value in table.items():
        if key not in TABLE_KEYS:
            issues.append((key, f"unknown key {key!r}; allowed: {', '.join(TABLE_KEYS)}"))
        elif (error := value_issue(key, value)) is not None:  # said what is allowed, or is to say it
            said = "allowed:" in error or "refused:" in error or "instead" in error
            issues.append((key, error if said else f"{error}; allowed: {TABLE_KEYS[key]}"))
    return issues


def value_issue(key: str, value: Any) -> str | None:
    """What is wrong with one value of [experiment.slurm], or None."""
    if key in ("gpus", "cpus"):
        if isinstance(value, bool) or not isinstance(value, int) or value < (0 if key == "gpus" else 1):
            return f"{value!r} is not allowed"
        return None
    if key == "time":
        if isinstance(value, int) and not isinstance(value, bool):
            return None if value > 0 else f"{value!r} is not more than 0"
        if not isinstance(value, str):
            return f"expected a string or an integer, got {value!r}"
        try:
            time_seconds(value)
        except ValueError as e:
            return f"{value!r}: {e}"
        return None
    if key == "args":
        if not isinstance(value, list) or not all(isinstance(a, str) for a in value):
            return f"expected a list of strings, got {value!r}"
        for arg in value:
            try:
                name, _, _ = split_arg(arg)
            except ValueError as e:
                return f"{arg!r}: {e}"
            if name in TABLE_OWN:
                return f"{arg!r}: set the table's own key {TABLE_OWN[name]!r} instead"
        return None
    if not isinstance(value, str) or not value.strip() or not value.isprintable():
        return f"expected a non-empty string, got {value!r}"
    if key == "mem" and not MEM.match(value):
        return f"{value!r} is not a size"
    return None

"""Plain helpers of the worker's tests (test_worker, test_disk_full, test_slurm, test_events): the
settings of tiny `digits` runs, experiments files, the `altui` command, and the store's runner
processes. Imported as `from worker_helpers import ...` (pytest puts this folder on sys.path)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from altui.execution.daemon import WorkerError, lock_holder, stop_worker

ALTUI = str(Path(sys.executable).parent / "altui")

BASE = {
    "dataset": "digits", "model": "cnn5", "device": "cpu", "seeds": [0], "rounds": 2, "initial": 20,
    "budget": 20, "epochs": 1, "milestones": [1], "pool_subset": 200,
}
# Rounds long enough to kill a run in the middle of one (a round also evaluates and acquires, so a few
# epochs are enough). Four rounds: a run killed in round 2 still acquires after it resumes, and one
# seen in round 0 or 1 is still running a moment later.
SLOW = {"rounds": 4, "epochs": 3, "milestones": [2]}


def toml_value(v: Any) -> str:
    if isinstance(v, str):
        return f'"{v}"'
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return str(v).lower() if isinstance(v, bool) else str(v)


def write_spec(path: Path, experiments: dict[str, dict[str, Any]]) -> Path:
    """An experiments file: BASE in [defaults], one [[experiment]] per name (Entropy+init unless set)."""
    lines = ["[defaults]", *(f"{k} = {toml_value(v)}" for k, v in BASE.items())]
    for name, fields in experiments.items():
        fields = {"methods": ["Entropy+init"], **fields}
        lines += ["", "[[experiment]]", f'name = "{name}"']
        lines += [f"{k} = {toml_value(v)}" for k, v in fields.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


def runner_pids(db: Path) -> list[int]:
    """Live runner processes of this store (found by their command line)."""
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            args = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"altui.execution.runner" in args and str(db).encode() in args:
            pids.append(int(proc.name))
    return pids


def altui(db: Path, env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([ALTUI, "--db", str(db), *args], env=env, capture_output=True, text=True,
                          timeout=timeout)


def ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"{result.args}: {result.returncode}\n{result.stdout}\n{result.stderr}"
    return result.stdout


def kill9(pid: int) -> None:
    if pid > 0:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def new_store(tmp_path: Path) -> Path:
    """Where a test's store goes: <tmp>/runs/altui.db, its folder made."""
    path = tmp_path / "runs" / "altui.db"
    path.parent.mkdir(parents=True)
    return path


def stop_store_worker(db: Path) -> None:
    """Stop the store's worker; kill -9 it when it does not stop."""
    try:
        stop_worker(db, timeout=40)
    except WorkerError:
        kill9(lock_holder(db) or 0)


def fill_disk(filler: Path) -> None:
    """Write `filler` until its disk holds not one byte more (not even a log line fits)."""
    with open(filler, "wb", buffering=0) as f:
        for chunk in (1 << 16, 1 << 12, 1):
            try:
                while f.write(b"\0" * chunk):
                    pass
            except OSError:
                pass

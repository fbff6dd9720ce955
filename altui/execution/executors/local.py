"""The local executor: each run a subprocess of the worker on this machine."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from altui.execution.executors import UNKNOWN_EXIT, Handle
from altui.execution.slots import Slot
from altui.files import open_append
from altui.store import make_run_folder, now

RUNNER_MODULES = {"altui.execution.runner", "altui.runner"}  # the second: runs started before the layout


def is_runner(pid: int, run_id: int) -> bool:
    """Whether `pid` is the runner process of `run_id`. Reading its command line guards against
    pids reused after a reboot (and a zombie has none)."""
    proc = Path(f"/proc/{pid}/cmdline")
    if not Path("/proc/self").exists():  # no procfs (macOS): the pid is all we know
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    try:
        args = proc.read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return False
    if not RUNNER_MODULES & set(args) or "--run" not in args[:-1]:
        return False
    return args[args.index("--run") + 1] == str(run_id)


class LocalExecutor:
    """Each run a subprocess of the worker: `python -m altui.execution.runner --db DB --run ID --device D`,
    output appended to `<db folder>/<run id>/output.log`."""

    def __init__(self, db: Path, cpu_slots: int = 1):
        self.db = db
        # CPU slots share the cores: give each its share, unless the user chose (OMP_NUM_THREADS)
        self.cpu_threads = max(1, (os.cpu_count() or 1) // cpu_slots) if cpu_slots > 1 else None

    def env(self, slot: Slot) -> dict[str, str]:
        env = dict(os.environ, PYTHONUNBUFFERED="1", CUDA_VISIBLE_DEVICES=slot.gpu or "")
        env.setdefault("CUDA_DEVICE_ORDER", "PCI_BUS_ID")  # GPU ids as nvidia-smi numbers them
        if slot.gpu is None and self.cpu_threads:
            env.setdefault("OMP_NUM_THREADS", str(self.cpu_threads))
        return env

    def submit(self, run_id: int, slot: Slot) -> Handle:
        run_dir = make_run_folder(self.db, run_id)  # never through a planted link
        cmd = [sys.executable, "-m", "altui.execution.runner", "--db", str(self.db), "--run", str(run_id),
               "--device", slot.device]
        with open_append(run_dir / "output.log") as log:
            log.write(f"--- {now()} worker {os.getpid()}: starting run {run_id} on {slot.label}\n".encode())
            log.flush()
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                    env=self.env(slot), close_fds=True)
        return Handle(run_id, slot, proc.pid, proc)

    def poll(self, handle: Handle) -> int | None:
        if handle.process is not None:
            return handle.process.poll()
        return None if handle.pid and is_runner(handle.pid, handle.run_id) else UNKNOWN_EXIT

    def kill(self, handle: Handle, force: bool = False) -> None:
        if handle.process is None and not (handle.pid and is_runner(handle.pid, handle.run_id)):
            return  # an adopted process that is gone: its pid may be another process's now
        if handle.pid:
            try:
                os.kill(handle.pid, signal.SIGKILL if force else signal.SIGTERM)
            except ProcessLookupError:
                pass

    def adopt(self, run: dict[str, Any], slot: Slot | None) -> Handle | None:
        pid = run["pid"]
        return Handle(run["id"], slot, pid) if pid and is_runner(pid, run["id"]) else None

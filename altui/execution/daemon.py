"""The worker daemon: its lock, its start (detached) and stop, its status, and its entry point.

One worker serves a store: it holds an exclusive flock on `<db folder>/worker.lock` while it lives and
records itself in the store's `settings` table (worker_pid, worker_started, worker_heartbeat,
worker_slots). `serve` runs the queue loop in this process: a `Worker` (altui/execution/worker.py)
with local slots, or with `--executor slurm` the Slurm head, `SlurmWorker`
(altui/execution/executors/slurm/head.py). `start_worker` detaches it as
`python -m altui.execution.daemon`. Behaviour and operation: docs/worker.md.
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
from pathlib import Path
from typing import Any

from altui.execution.executors.local import LocalExecutor
from altui.execution.executors.slurm.head import SlurmWorker
from altui.execution.executors.slurm.jobs import SlurmJobs
from altui.execution.executors.slurm.options import SlurmError, SlurmOptions, check_slurm
from altui.execution.slots import WorkerError, check_gpus, parse_gpus, parse_slots, plan_slots
from altui.execution.worker import STOP_GRACE, Worker, say
from altui.files import open_append, open_fd
from altui.store import Store, StoreError, now

START_TIMEOUT = 30.0  # start_worker waits this long for the new worker to hold the lock
EXECUTORS = ("local", "slurm")
SETTINGS = ("worker_pid", "worker_started", "worker_heartbeat", "worker_slots", "worker_slots_choice",
            "worker_executor", "worker_disk_full")


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


def lock_note(fd: int, note: str) -> None:
    """A line after the pid in the lock file, for `worker status`: the store changed under the worker."""
    data = f"{os.getpid()}\n{' '.join(note.split())}".encode()
    os.pwrite(fd, data, 0)
    os.ftruncate(fd, len(data))


def lock_text(db: Path) -> tuple[int | None, str | None]:
    """The pid of the worker holding the lock (0 when it has not written it yet; None when free) and
    the note it left there (None: none)."""
    path = lock_path(db)
    if not path.exists() and not path.is_symlink():
        return None, None
    with os.fdopen(open_fd(path, os.O_RDONLY), "rb") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)  # shared: testers never block each other
        except BlockingIOError:
            pid, _, note = f.read(65536).decode(errors="replace").partition("\n")
            return (int(pid) if pid.strip().isdigit() else 0), (note.strip() or None)
        fcntl.flock(f, fcntl.LOCK_UN)
        return None, None


def lock_holder(db: Path) -> int | None:
    """The pid of the worker holding the lock (0 when it has not written it yet); None when free."""
    return lock_text(db)[0]


# ---- entry points --------------------------------------------------------------------------------


def serve(db: Path, gpus: str = "auto", slots_per_gpu: int | str = "auto", max_attempts: int = 3,
          exit_when_empty: bool = False) -> bool:
    """Be the store's worker until SIGTERM/SIGINT/SIGHUP (or, `exit_when_empty`, until no run is
    queued or running); False if another worker serves it."""
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
        worker.exit_when_empty = exit_when_empty
        worker.on_store_changed = lambda note: lock_note(fd, note)
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
                note = check_slurm(db, options)
                if note:
                    print(note, file=sys.stderr)
            except SlurmError as e:
                raise WorkerError(str(e)) from None
        store.set_settings({"executor": name, **({"slurm_options": options.to_json()} if name == "slurm" else {})})
    return name, options


def start_worker(db: Path, gpus: str = "auto", slots_per_gpu: int | str = "auto", detach: bool = True,
                 max_attempts: int = 3, executor: str | None = None, slurm: dict[str, Any] | None = None,
                 exit_when_empty: bool = False) -> bool:
    """Start the store's worker; False if one already serves it.

    Detached (the default), it runs in a new session with stdin closed and its output in
    `<db folder>/worker.log`, so closing the terminal, the SSH connection or the dashboard never
    stops it; this returns once it holds the lock. Not detached, this serves in the calling process
    (main thread: it installs signal handlers) until the worker is stopped.

    `executor` and `slurm` (SlurmOptions fields) default to what the last start saved in the store
    (choose_executor), so a start with neither (the dashboard's) runs as the last one did.
    `exit_when_empty`: the worker ends once no run is queued or running (a head in a batch job).
    """
    db = Path(db).resolve()
    ids = parse_gpus(gpus)  # fail here, not in the background
    parse_slots(slots_per_gpu)
    if ids and (executor or "local") != "slurm":
        check_gpus(ids)
    if max_attempts < 1:
        raise WorkerError("--max-attempts must be an integer >= 1")
    if lock_holder(db) is not None:
        return False
    db.parent.mkdir(parents=True, exist_ok=True)
    if not detach:
        choose_executor(db, executor, slurm)
        return serve(db, gpus, slots_per_gpu, max_attempts, exit_when_empty)
    cmd = [sys.executable, "-m", "altui.execution.daemon", "--db", str(db), "--gpus", gpus,
           "--slots-per-gpu", str(slots_per_gpu), "--max-attempts", str(max_attempts),
           *(["--exit-when-empty"] if exit_when_empty else [])]
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
    (why it paused the queue, or None), log, store_changed (the worker's note that the store's file was
    deleted or replaced under it: it serves none; None); None when no worker runs. Never creates a
    store. Pass an open `store` to poll without reconnecting."""
    db = Path(db).resolve()
    pid, note = lock_text(db)
    if pid is None:
        return None
    settings: dict[str, str] = {}
    paused = False
    with contextlib.suppress(StoreError):  # never created here: a store deleted under its worker stays so
        with contextlib.nullcontext(store) if store else Store(db, create=False) as st:
            settings = st.settings()
            paused = st.paused()
    mine = settings.get("worker_pid") == str(pid) and note is None  # else an earlier worker's, or another store's
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
        "store_changed": note,  # the store's file changed under the worker: it serves none
    }


def main(argv: list[str] | None = None) -> int:
    """`python -m altui.execution.daemon --db PATH ...`: serve in this process (start_worker detaches it)."""
    parser = argparse.ArgumentParser(prog="python -m altui.execution.daemon")
    parser.add_argument("--db", required=True, type=Path)
    parser.add_argument("--gpus", default="auto")
    parser.add_argument("--slots-per-gpu", default="auto")
    parser.add_argument("--max-attempts", type=int, default=3)
    parser.add_argument("--exit-when-empty", action="store_true")
    args = parser.parse_args(argv)
    serve(args.db, args.gpus, args.slots_per_gpu, args.max_attempts, args.exit_when_empty)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The worker daemon: claims queued runs and runs each in its own process, one per slot.

One worker serves a store: it holds an exclusive flock on `<db folder>/worker.lock` while it lives and
records itself in the store's `settings` table (worker_pid, worker_started, worker_heartbeat,
worker_slots). Runs go through an `Executor`; `LocalExecutor` starts them as local subprocesses
(`python -m altui.runner`), and a Slurm executor can take its place later.

Recovery: a `running` run that this worker does not own is adopted when its runner process is still
alive (a worker killed with -9 leaves its runs running), and otherwise is treated as crashed: requeued
to resume after its last recorded round, or failed once it has used `max_attempts` starts.
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
from typing import Any, Protocol

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
SETTINGS = ("worker_pid", "worker_started", "worker_heartbeat", "worker_slots", "worker_slots_choice")
UNKNOWN_EXIT = -1000  # the exit code of an adopted process, which is not our child


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


# ---- executors -----------------------------------------------------------------------------------


@dataclass
class Handle:
    """A run's process as an executor started (or adopted) it."""

    run_id: int
    slot: Slot | None  # None: adopted with no free slot of its device
    pid: int | None
    process: Any = None  # executor-specific (a Popen for LocalExecutor; None when adopted)
    term_at: float | None = None  # monotonic time of our SIGTERM
    killed: bool = False  # SIGKILL sent


class Executor(Protocol):
    def submit(self, run_id: int, slot: Slot) -> Handle: ...

    def poll(self, handle: Handle) -> int | None:
        """None while the run's process lives, else its exit code (or UNKNOWN_EXIT)."""
        ...

    def kill(self, handle: Handle, force: bool = False) -> None:
        """SIGTERM (the run requeues itself, or stays cancelled), or SIGKILL with force."""
        ...

    def adopt(self, run: dict[str, Any], slot: Slot | None) -> Handle | None:
        """A handle on a `running` run's live process that another worker started, else None."""
        ...


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
    if "altui.runner" not in args or "--run" not in args[:-1]:
        return False
    return args[args.index("--run") + 1] == str(run_id)


class LocalExecutor:
    """Each run a subprocess of the worker: `python -m altui.runner --db DB --run ID --device D`,
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
        run_dir = self.db.parent / str(run_id)
        run_dir.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "altui.runner", "--db", str(self.db), "--run", str(run_id),
               "--device", slot.device]
        with open(run_dir / "output.log", "ab") as log:
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


# ---- the worker loop -----------------------------------------------------------------------------


def say(message: str) -> None:
    """A line in worker.log (stdout of a detached worker)."""
    print(f"{now()} {message}", flush=True)


def output_tail(store: Store, run_id: int) -> str:
    path = store.run_dir(run_id) / "output.log"
    try:
        with open(path, "rb") as f:
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

    def serve(self) -> None:
        """Loop until `stopping` is set (by a signal), then stop the runs and return."""
        while not self.stopping:
            try:
                self.tick()
            except Exception:  # a daemon outlives a bad moment (locked or full disk); runs go on
                say(f"error in the worker loop, retrying in {ERROR_PAUSE:.0f} s:\n{traceback.format_exc()}")
                time.sleep(ERROR_PAUSE)
            time.sleep(POLL_SECONDS)
        self.shutdown()

    def tick(self) -> None:
        self.reap()
        self.stop_cancelled()
        if time.monotonic() >= self.next_recover:
            self.recover()
        self.fill()
        if time.monotonic() >= self.next_beat:
            self.next_beat = time.monotonic() + HEARTBEAT_SECONDS
            self.store.set_settings({"worker_heartbeat": now()})

    def event(self, run_id: int | None, message: str, level: str = "info") -> None:
        say(f"run {run_id}: {message}" if run_id is not None else message)
        self.store.log(run_id, message, level)

    # -- slots
    def free_slot(self, label: str | None = None) -> Slot | None:
        """A slot no run occupies; with `label`, only one of that device."""
        used = {h.slot for h in self.active.values()}
        free = [s for s in self.slots if s not in used and (label is None or s.label == label)]
        return free[0] if free else None

    def fill(self) -> None:
        while not self.stopping and (slot := self.free_slot()) is not None:
            run = self.store.claim(slot.label)  # None when the queue is empty or paused
            if run is None:
                return
            self.launch(run, slot)

    def launch(self, run: dict[str, Any], slot: Slot) -> None:
        try:
            handle = self.executor.submit(run["id"], slot)
        except OSError as e:
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
        run = self.store.run(run_id)
        if run["status"] != "running":  # the runner recorded its end: done, failed, cancelled, queued
            exit_code = "unknown" if code == UNKNOWN_EXIT else code
            self.event(run_id, f"process ended: {run['status']} (exit code {exit_code})")
        elif self.stopping:
            self.store.finish(run_id, "queued")
            self.event(run_id, "requeued: the worker is stopping", "warning")
        else:  # killed, out of memory, or died before it could record anything
            why = "its process ended" + (f" with exit code {code}" if code != UNKNOWN_EXIT else "")
            self.crashed(run, why)

    def crashed(self, run: dict[str, Any], why: str) -> None:
        """Requeue a run whose process died; resume after its last round. Fail it once it has used
        max_attempts starts, keeping the tail of its output.log."""
        run_id, attempt = run["id"], run["attempt"]
        if attempt >= self.max_attempts:
            tail = output_tail(self.store, run_id)
            error = f"{why}; failed after {attempt} attempts. output.log ends:\n{tail}"
            self.store.finish(run_id, "failed", error)
            self.event(run_id, f"{why}; failed after {attempt} of {self.max_attempts} attempts", "error")
        else:
            self.store.finish(run_id, "queued")
            last = self.store.last_round(run_id)
            self.event(run_id, f"{why}; requeued to resume at round {last + 1} "
                               f"(attempt {attempt} of {self.max_attempts})", "warning")

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
            if run["id"] in self.active:
                continue
            handle = self.executor.adopt(run, self.free_slot(run["device"]))
            if handle is not None:
                self.active[run["id"]] = handle
                self.event(run["id"], f"adopted its live process {run['pid']} (left by an earlier worker)")
                continue
            run = self.store.run(run["id"])  # read again: it may have ended just before its process did
            if run["status"] != "running":
                continue
            if run["pid"] is not None:
                self.crashed(run, f"its process {run['pid']} is gone")
            elif self.stale(run):  # no pid: a foreground run, or one claimed just before a crash
                self.crashed(run, f"no heartbeat since {run['heartbeat_at']}")

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


# ---- settings and the lock -----------------------------------------------------------------------


def lock_path(db: Path) -> Path:
    return Path(db).parent / "worker.lock"


def acquire_lock(db: Path, wait: float = 2.0) -> int | None:
    """The exclusive lock that makes this process the store's worker; an fd, or None when another
    worker holds it. Retries briefly: readers take short shared locks to test it."""
    fd = os.open(lock_path(db), os.O_RDWR | os.O_CREAT, 0o644)
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
    if not path.exists():
        return None
    with open(path, "rb") as f:
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
        waiting = store.runs(status="queued") + store.runs(status="running")
        models = [json.loads(r["spec_json"]).get("model", "") for r in waiting]
        slots, choice = plan_slots(gpus, slots_per_gpu, models)
        labels = [s.label for s in slots]
        store.set_settings({"worker_pid": str(os.getpid()), "worker_started": now(),
                               "worker_heartbeat": now(), "worker_slots": json.dumps(labels),
                               "worker_slots_choice": choice})
        cpu_slots = sum(s.gpu is None for s in slots)
        worker = Worker(store, LocalExecutor(db, cpu_slots), slots, max_attempts)
        worker.event(None, f"worker {os.getpid()} started: slots {', '.join(s.label for s in slots)} "
                           f"({choice}), max attempts {max_attempts}")
        worker.serve()
        worker.event(None, f"worker {os.getpid()} stopped")
    finally:
        store.set_settings(dict.fromkeys(SETTINGS))
        store.close()
        os.close(fd)  # releases the lock
    return True


def start_worker(db: Path, gpus: str = "auto", slots_per_gpu: int | str = "auto", detach: bool = True,
                 max_attempts: int = 3) -> bool:
    """Start the store's worker; False if one already serves it.

    Detached (the default), it runs in a new session with stdin closed and its output in
    `<db folder>/worker.log`, so closing the terminal, the SSH connection or the dashboard never
    stops it; this returns once it holds the lock. Not detached, this serves in the calling process
    (main thread: it installs signal handlers) until the worker is stopped.
    """
    db = Path(db).resolve()
    parse_gpus(gpus)  # fail here, not in the background
    parse_slots(slots_per_gpu)
    if max_attempts < 1:
        raise WorkerError("--max-attempts must be an integer >= 1")
    if not detach:
        return serve(db, gpus, slots_per_gpu, max_attempts)
    if lock_holder(db) is not None:
        return False
    db.parent.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "altui.worker", "--db", str(db), "--gpus", gpus,
           "--slots-per-gpu", str(slots_per_gpu), "--max-attempts", str(max_attempts)]
    log_path = db.parent / "worker.log"
    with open(log_path, "ab") as log:
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
    """The store's worker: pid, started, heartbeat (ISO text), slots (device labels), slots_choice
    (how they were chosen), paused, log; None when no worker runs. Pass an open `store` to poll without reconnecting."""
    db = Path(db).resolve()
    pid = lock_holder(db)
    if pid is None:
        return None
    with contextlib.nullcontext(store) if store else Store(db) as st:
        settings = st.settings()
        paused = st.paused()
    mine = settings.get("worker_pid") == str(pid)  # else the settings are an earlier worker's
    return {
        "pid": pid,
        "started": settings.get("worker_started") if mine else None,
        "heartbeat": settings.get("worker_heartbeat") if mine else None,
        "slots": json.loads(settings["worker_slots"]) if mine and "worker_slots" in settings else [],
        "slots_choice": settings.get("worker_slots_choice") if mine else None,
        "paused": paused,
        "log": str(db.parent / "worker.log"),
    }


def main(argv: list[str] | None = None) -> int:
    """`python -m altui.worker --db PATH ...`: serve in this process (start_worker detaches it)."""
    parser = argparse.ArgumentParser(prog="python -m altui.worker")
    parser.add_argument("--db", required=True, type=Path)
    parser.add_argument("--gpus", default="auto")
    parser.add_argument("--slots-per-gpu", default="auto")
    parser.add_argument("--max-attempts", type=int, default=3)
    args = parser.parse_args(argv)
    serve(args.db, args.gpus, args.slots_per_gpu, args.max_attempts)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""One run in its own process: settings from the store -> altui.al loop -> rows in the store.

A round's checkpoint is written first (temporary name, then an atomic rename); the transaction that
records the round's rows commits after it. A run resumes from its last recorded round. The rows and
the checkpoint are built and read by altui/execution/records.py, which a Slurm job's events file
(events.py, through execute_to_events) shares.

A run stops when it is cancelled (its heartbeat thread sees it within seconds), and on SIGTERM or
SIGHUP where the caller asks for it (stop_on_signals): then it goes back to the queue. A full disk
sends it back to the queue too (DiskFull), without counting the attempt.
"""

from __future__ import annotations

import _thread
import argparse
import contextlib
import json
import math
import signal
import sqlite3
import sys
import threading
import traceback
from collections.abc import Iterator
from dataclasses import asdict, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from altui.al.config import ConfigError, RunConfig
from altui.al.loop import run as run_loop
from altui.al.sink import EpochStats, ResumeState, RoundResult, Sink
from altui.execution.records import (
    RunError,
    channel_rows,
    gamma_rows,
    load_checkpoint,
    load_partial,
    pick_rows,
    round_row,
    save_checkpoint,
    teacher_row,
)
from altui.files import EXIT_DISK_FULL, LinkRefused, is_disk_full
from altui.store import Store, StoreError, checkpoint_file, partial_file, runs_folder

if TYPE_CHECKING:
    from altui.execution.events import EventSink

HEARTBEAT_SECONDS = 2.0
ERROR_TAIL = 4000  # characters of a traceback kept in runs.error


class Stopped(Exception):
    """The run was asked to stop: cancelled, or a signal (its worker or its terminal is going away)."""

    def __init__(self, signum: int | None = None):
        super().__init__(f"signal {signum}" if signum else "cancelled")
        self.signum = signum


class DiskFull(Exception):
    """The disk of the store or of the run's folder is full: the run went back to the queue, its
    attempt not counted, and resumes after its last recorded round once there is space."""


@contextlib.contextmanager
def stop_on_signals(*signums: int) -> Iterator[list[int]]:
    """Turn these signals into Stopped in the main thread while the block runs; yields the list of
    the signals received. A signal that is ignored (SIGHUP under nohup) stays ignored: that is what
    the user asked for."""
    received: list[int] = []

    def raise_stopped(signum: int, frame: object) -> None:
        received.append(signum)
        raise Stopped(signum)

    previous = {}
    for signum in signums:
        if signal.getsignal(signum) != signal.SIG_IGN:
            previous[signum] = signal.signal(signum, raise_stopped)
    try:
        yield received
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


class StoreSink:
    """Writes what the loop reports into the store, and passes it on to an optional observer. It
    stops the loop (Stopped) at its next report once `cancelled` is set."""

    def __init__(self, store: Store, run_id: int, observer: Sink | None = None,
                 cancelled: threading.Event | None = None):
        self.store, self.run_id, self.observer = store, run_id, observer
        self.cancelled = cancelled or threading.Event()

    def check(self) -> None:
        if self.cancelled.is_set():
            raise Stopped()

    def log(self, message: str, level: str = "info") -> None:
        self.check()
        self.store.log(self.run_id, message, level)
        if self.observer:
            self.observer.log(message, level)

    def started(self, provenance: dict[str, Any]) -> None:
        self.check()
        changed = self.store.set_provenance(self.run_id, provenance)
        if changed:
            self.log(f"this attempt runs differently from the last: {'; '.join(changed)}", "warning")

    def epoch_done(self, stats: EpochStats) -> None:
        self.check()
        if not math.isfinite(stats.train_loss):  # the store keeps finite numbers only
            raise RunError(f"training diverged: the training loss is {stats.train_loss} in round {stats.round}, "
                           f"epoch {stats.epoch}; lower lr or weight_decay")
        row = asdict(stats)
        del row["epochs"]
        self.store.add_epoch(self.run_id, row)
        if self.observer:
            self.observer.epoch_done(stats)

    def round_done(self, result: RoundResult, state: ResumeState) -> None:
        self.check()
        if not math.isfinite(result.test_loss):
            raise RunError(f"training diverged: the test loss is {result.test_loss} in round {result.round}; "
                           "lower lr or weight_decay")
        path = self.store.checkpoint_path(self.run_id, result.round)
        save_checkpoint(state, path)  # creates the run's folder (a planted link refused)
        self.store.add_round(self.run_id, round_row(result), channel_rows(result), pick_rows(result),
                             gamma_rows(result), teacher_row(result))
        previous = self.store.checkpoint_path(self.run_id, result.round - 1)
        previous.unlink(missing_ok=True)  # only the last round's checkpoint is needed to resume
        if self.observer:
            self.observer.round_done(result, state)


def load_resume(store: Store, run_id: int) -> ResumeState | None:
    last = store.last_round(run_id)
    return None if last < 0 else load_checkpoint(run_id, last, store.checkpoint_path(run_id, last))


def execute(db_path: str | Path, run_id: int, device: str | None = None, observer: Sink | None = None,
            interrupt_status: str = "cancelled") -> str:
    """Run (or resume) one run that the caller has marked running; returns its final status.

    A heartbeat thread keeps runs.heartbeat_at fresh and stops the loop when the run is cancelled.
    Ctrl-C (KeyboardInterrupt) leaves the run `interrupt_status` unless it was cancelled; a signal
    that the caller turned into Stopped (stop_on_signals) sends it back to the queue, its attempt
    not counted. An exception fails the run: runs.error holds the message of a RunError or
    ConfigError (bad settings, data, checkpoint), else the traceback's tail. A full disk raises
    DiskFull once the run is back in the queue.
    """
    store = Store(db_path, create=False)
    cancelled = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(db_path, run_id, cancelled), daemon=True)
    try:
        _remove_partial_checkpoints(store, run_id)
        cfg = RunConfig.from_dict(json.loads(store.run(run_id)["spec_json"]))
        if device:
            cfg = replace(cfg, device=device)
        beat.start()
        resume = load_resume(store, run_id)
        if resume is None or resume.next_round < cfg.rounds:
            with _interruptible(cancelled):
                run_loop(cfg, StoreSink(store, run_id, observer, cancelled), resume)
        status = store.finish(run_id, "done")  # stays cancelled if cancelled meanwhile
    except (KeyboardInterrupt, Exception) as exc:  # one run's failure must not take the queue down
        try:
            status = _record_end(store, run_id, exc, interrupt_status)
        except Exception as e:
            if is_disk_full(e):
                _disk_full(store, run_id, e)  # raises DiskFull
            raise
    finally:
        cancelled.set()  # ends the heartbeat
        if beat.is_alive():
            beat.join(timeout=5)
        store.close()
    return status


def _record_end(store: Store, run_id: int, exc: BaseException, interrupt_status: str) -> str:
    """Record how a run that did not finish ended; returns its status. A full disk is raised on."""
    if isinstance(exc, (KeyboardInterrupt, Stopped)):
        status = "cancelled" if store.run(run_id)["status"] == "cancelled" else (
            "queued" if isinstance(exc, Stopped) else interrupt_status)
        if status == "queued":
            store.release(run_id)  # its worker or terminal is going away: no attempt is used up
        else:
            status = store.finish(run_id, status)
        store.log(run_id, f"stopped ({exc or 'Ctrl-C'}): {status}; completed rounds are kept", "warning")
        return status
    if is_disk_full(exc):
        raise exc
    known = isinstance(exc, (RunError, ConfigError, StoreError, LinkRefused))  # the message says it all
    error = str(exc) if known else "".join(traceback.format_exception(exc))[-ERROR_TAIL:]
    status = store.finish(run_id, "failed", error)
    store.log(run_id, f"failed: {' '.join(str(exc).split())}", "error")
    return status


@contextlib.contextmanager
def _interruptible(cancelled: threading.Event) -> Iterator[None]:
    """While the loop runs (in the main thread), a cancel seen by the heartbeat interrupts it at
    once, even in the middle of an epoch: the heartbeat simulates SIGUSR1, whose handler raises
    Stopped. The handler acts only on a cancel and only inside this block, so an interrupt that
    arrives late (or a stray SIGUSR1) never stops anything else."""
    if threading.current_thread() is not threading.main_thread():
        yield  # the loop still stops at its next report (StoreSink.check)
        return
    live = True

    def on_cancel(signum: int, frame: object) -> None:
        if live and cancelled.is_set():
            raise Stopped()

    previous = signal.signal(signal.SIGUSR1, on_cancel)
    try:
        yield
    finally:
        live = False
        signal.signal(signal.SIGUSR1, previous)


def _remove_partial_checkpoints(store: Store, run_id: int) -> None:
    """A process killed while it wrote a checkpoint leaves its temporary file: never read, removed.
    (Not in a planted link's target: such a run folder is refused before anything is written.)"""
    for folder in (runs_folder(store.path), store.run_dir(run_id)):
        if folder.is_symlink():
            raise LinkRefused(folder)
    for tmp in store.run_dir(run_id).glob("round-*.tmp"):
        tmp.unlink(missing_ok=True)


def _disk_full(store: Store, run_id: int, exc: Exception) -> None:
    """Back to the queue, attempt not counted (a worker pauses its queue until there is space).
    Writing that may fail too on a full disk: the worker then releases the run itself."""
    with contextlib.suppress(sqlite3.Error, OSError):
        store.release(run_id)
    with contextlib.suppress(sqlite3.Error, OSError):
        store.log(run_id, f"the disk is full ({exc}): queued again, to resume after its last recorded round",
                  "warning")
    raise DiskFull(f"the disk of {store.path.parent} is full ({' '.join(str(exc).split())}); run {run_id} is "
                   "queued again and resumes after its last recorded round once there is space") from exc


def _heartbeat(db_path: str | Path, run_id: int, cancelled: threading.Event) -> None:
    """Every few seconds: refresh the run's heartbeat; when it is cancelled, stop the loop. The loop
    checks `cancelled` at each report; _interruptible's handler stops it sooner. (Not SIGINT, as
    before: under `nohup cmd &` it is ignored, and then interrupt_main does nothing.)"""
    with Store(db_path, create=False) as store:
        while not cancelled.wait(HEARTBEAT_SECONDS):
            try:
                status = store.heartbeat(run_id)
            except sqlite3.Error:  # a locked or full disk: the run goes on, the next beat retries
                continue
            if status == "cancelled":
                cancelled.set()
                if callable(signal.getsignal(signal.SIGUSR1)):  # set by _interruptible
                    _thread.interrupt_main(signal.SIGUSR1)
                return


def execute_to_events(sink: EventSink, run_id: int, config: dict[str, Any], device: str | None,
                      recorded: int = -1) -> str:
    """Run (or resume) one run without the store, as a Slurm job does on its compute node: events go
    to the run's events file through `sink` (altui/execution/events.py), which the head ingests. Resumes after
    the last round that the file or the store (`recorded`, as the head saw it at submission) records.

    Returns done or failed, having written the run's end. A stop (Stopped, KeyboardInterrupt: Slurm
    cancels, requeues or preempts the job) writes no end: the head judges from the store and Slurm.
    """
    from altui.execution.events import recorded_round

    try:
        cfg = RunConfig.from_dict(config)
        if device:
            cfg = replace(cfg, device=device)
        last = max(recorded, recorded_round(sink.run_dir))
        resume = None if last < 0 else load_checkpoint(run_id, last, checkpoint_file(sink.run_dir, last))
        within = load_partial(partial_file(sink.run_dir), last + 1)  # a round that outlasted a job
        if resume is None or resume.next_round < cfg.rounds:
            run_loop(cfg, sink, resume, within, sink.epoch_saved)
        sink.end("done")
        return "done"
    except (KeyboardInterrupt, Stopped) as stop:
        sink.log(f"stopped ({stop or 'interrupted'}); completed rounds are kept", "warning")
        raise
    except Exception as exc:  # a bug or a bad setting: the run fails, as in execute()
        sink.log(f"failed: {exc}", "error")
        sink.end("failed", traceback.format_exc()[-ERROR_TAIL:])
        return "failed"


def main(argv: list[str] | None = None) -> int:
    """Entry point of a worker's run subprocess: `python -m altui.execution.runner --db PATH --run ID`."""
    parser = argparse.ArgumentParser(prog="python -m altui.execution.runner")
    parser.add_argument("--db", required=True)
    parser.add_argument("--run", type=int, required=True)
    parser.add_argument("--device")
    args = parser.parse_args(argv)

    with stop_on_signals(signal.SIGTERM):
        try:
            status = execute(args.db, args.run, args.device, interrupt_status="queued")
        except DiskFull as e:
            with contextlib.suppress(OSError):  # output.log may be on the full disk
                print(e, file=sys.stderr)
            return EXIT_DISK_FULL
    return 0 if status in ("done", "cancelled", "queued") else 1


if __name__ == "__main__":
    sys.exit(main())
